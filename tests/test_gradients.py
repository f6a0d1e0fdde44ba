"""Gradient forms (``nica/_src/gradients.py``) against autodiff of a brute-force likelihood
(per-sample Jacobians and ``slogdet``, ``tests/oracles.py``), in float64 on tiny shapes.

Each built-in form against its definition: the relative gradient ``[G, g] W̄ᵀW̄``, the
equivariant one ``[G, g] W̄ᵀ``, the ordinary ones ``[G, g]``, on every registered activation and
prior (``activations.names()``, ``priors.names()``).  Every registered form
(``gradients.names()``) against the form-free oracles: it vanishes at a maximum-likelihood
solution built in closed form, it is a descent direction, and it keeps float32.
"""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oracles import (
    DEFINITIONS,
    assert_layers_close,
    augmented,
    brute_network,
    brute_nll,
    brute_nll_grad,
    conditional_problem,
    prior_argument_cases,
    random_data,
    random_params,
    random_theta,
)
from strategies import FUZZ, arrays

import nica
from nica import activations, gradients, objectives, priors

ACTIVATIONS = activations.names()
PRIORS = priors.names()
FORMS = gradients.names()
PUBLIC = {name: getattr(nica, f"{name}_gradient") for name in DEFINITIONS}
# the cheap forms agree with autodiff to 1e-9; the ordinary gradients (an explicit inverse, or
# per-sample slogdet) to 1e-8
TOLERANCE = {
    "relative": dict(rtol=1e-9, atol=1e-10),
    "equivariant": dict(rtol=1e-9, atol=1e-10),
    "euclidean": dict(rtol=1e-8, atol=1e-10),
    "autodiff": dict(rtol=1e-8, atol=1e-10),
}
D = 3


@functools.partial(jax.jit, static_argnums=(2, 3))
def _oracle_and_built_in_forms(params, X, act, pr, theta):
    """Autodiff of the brute-force NLL and every built-in form's ``(layers, prior gradients)`` of
    the likelihood, in one compiled program (one compilation per case instead of five)."""
    oracle = brute_nll_grad(params, X, act, pr, theta, None)
    forms = {
        name: gradients.get(name).value_and_gradient(params, X, act, pr, theta, None, objectives.likelihood())[1:]
        for name in DEFINITIONS
    }
    return oracle, forms


def assert_every_built_in_form_matches_its_definition(params, X, act, pr, theta=()):
    """Each built-in form against its definition applied to autodiff of the brute-force NLL, and
    the prior's own gradient against autodiff's.  (The public functions compute these through
    the same ``value_and_gradient``: they are checked against the definitions with a
    conditional prior below.)"""
    (G_layers, G_theta), forms = _oracle_and_built_in_forms(params, X, act, pr, theta)
    for name, definition in DEFINITIONS.items():
        layers, theta_grads = forms[name]
        assert_layers_close(layers, definition(params, G_layers), **TOLERANCE[name])
        assert jax.tree_util.tree_structure(theta_grads) == jax.tree_util.tree_structure(theta)
        jax.tree_util.tree_map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-12), theta_grads, G_theta
        )


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("n_layers", [1, 2, 4])
@pytest.mark.parametrize("bias", [True, False])
def test_every_built_in_form_matches_its_definition_for_every_activation(activation, n_layers, bias):
    params = random_params(7 + n_layers, n_layers=n_layers, bias=bias)
    X = random_data(7 + n_layers)
    assert_every_built_in_form_matches_its_definition(params, X, activations.get(activation), priors.hypsecant())


@pytest.mark.parametrize("prior", PRIORS)
def test_every_built_in_form_matches_its_definition_for_every_prior(prior):
    """A learned prior at random parameters: its Euclidean gradient comes back beside the
    layers' direction.  (The prior enters the gradient only through its score at the sources,
    the activation only through its log-derivative: the two are checked separately.)"""
    params = random_params(3, n_layers=3)
    X = random_data(3)
    pr = priors.get(prior)
    assert_every_built_in_form_matches_its_definition(
        params, X, activations.smooth_leaky_relu(), pr, random_theta(pr, 3, D)
    )


@pytest.mark.parametrize("n_samples", [2, 6, 7, 40])  # both groupings: B ≤ 2D and B > 2D
@pytest.mark.parametrize("bias", [True, False])
def test_relative_gradient_both_groupings_and_no_bias(n_samples, bias):
    params = random_params(5, n_layers=3, bias=bias)
    X = random_data(5, n_samples=n_samples)
    act, pr = activations.smooth_leaky_relu(), priors.laplace()
    expected = DEFINITIONS["relative"](params, brute_nll_grad(params, X, act, pr, (), None)[0])
    assert_layers_close(nica.relative_gradient(params, X, activation=act, prior=pr), expected)


def test_bias_correction_term_is_present():
    """With non-zero biases, leaving out the −b (as the authors' code does) is wrong.

    See docs/theory.rst, 'The bias correction'.
    """
    params = random_params(6, n_layers=2)
    X = random_data(6)
    act, pr = activations.tanh_linear(), priors.logistic()
    expected = DEFINITIONS["relative"](params, brute_nll_grad(params, X, act, pr, (), None)[0])
    got = nica.relative_gradient(params, X, activation=act, prior=pr)
    for (_, b), (_, db_got), (_, db_exp) in zip(params, got, expected):
        np.testing.assert_allclose(db_got, db_exp, rtol=1e-9, atol=1e-10)
        assert np.max(np.abs((db_got + b) - db_exp)) > 1e-3  # the authors' version differs


KINDS = [
    ("segment", 2, tuple(DEFINITIONS)),
    ("mlp", 1, tuple(DEFINITIONS)),
    ("segment-mixture", 1, ("relative", "euclidean")),
]  # fewer compilations


@pytest.mark.parametrize("kind, n_layers, methods", KINDS, ids=[kind for kind, _, _ in KINDS])
def test_every_built_in_form_with_a_conditional_prior_matches_its_definition(kind, n_layers, methods):
    """``prior_params`` and ``u`` of a conditional prior: the layers' direction against its
    definition, and every prior gradient against ``jax.grad`` of the brute-force likelihood."""
    params, X, prior, theta, u = conditional_problem(kind, n_layers)
    act = activations.tanh_linear()
    G_layers, G_theta = brute_nll_grad(params, X, act, prior, theta, u)
    for method in methods:
        got, got_theta = PUBLIC[method](params, X, activation=act, prior=prior, prior_params=theta, u=u)
        assert_layers_close(got, DEFINITIONS[method](params, G_layers), rtol=1e-8, atol=1e-11)
        assert jax.tree_util.tree_structure(got_theta) == jax.tree_util.tree_structure(theta)
        jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-12), got_theta, G_theta)


def test_a_fixed_prior_with_empty_prior_params_gives_the_pair():
    params, X, _, _, _ = conditional_problem("segment", 2)
    plain = nica.relative_gradient(params, X, prior="hypsecant")
    layers, prior_grads = nica.relative_gradient(params, X, prior="hypsecant", prior_params=())
    assert prior_grads == ()
    assert_layers_close(layers, plain, rtol=0, atol=0)


def test_backpropagated_errors_are_the_autodiff_of_the_data_loss():
    """``δ_k = ∂ℓ_data/∂Y_k``: autodiff of the brute-force mean NLL without ``−Σ log|det W_k|``
    with respect to a perturbation of each layer's pre-activation; the layers' inputs and
    pre-activations are the brute-force network's."""
    params = random_params(12, n_layers=3)
    X = random_data(12, n_samples=6)
    act, pr = activations.tanh_linear(), priors.logistic()

    def data_loss(perturbations):
        Z, log_det, inputs, preacts = X, 0.0, [], []
        for k, (W, b) in enumerate(params):
            inputs.append(Z)
            Y = Z @ W.T + b[None, :] + perturbations[k]
            preacts.append(Y)
            if k < len(params) - 1:
                log_det = log_det + jnp.sum(jnp.log(jax.vmap(jax.vmap(jax.grad(act.fn)))(Y)), axis=1)
                Z = act.fn(Y)
        return -jnp.mean(jnp.sum(pr.log_density(Y), axis=1) + log_det), (inputs, preacts)

    zeros = [jnp.zeros_like(X) for _ in params]
    (loss, (inputs, preacts)), errors = jax.value_and_grad(data_loss, has_aux=True)(zeros)
    bp = nica.backpropagated_errors(params, X, activation=act, prior=pr)
    assert float(bp.loss) == pytest.approx(float(loss), rel=1e-12)
    for got, want in [(bp.errors, errors), (bp.inputs, inputs), (bp.preactivations, preacts)]:
        assert len(got) == len(params)
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    assert bp.prior_grads == ()
    S = jax.vmap(lambda x: brute_network(params, x, act))(X)
    np.testing.assert_allclose(preacts[-1], S, rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# every registered form (built-in or not): the form-free oracles


@functools.lru_cache
def _jitted_form(name):
    return jax.jit(gradients.get(name).value_and_gradient, static_argnums=(2, 3, 6))


def form_gradient(name, params, X, activation, prior):
    """``(loss, layers' direction, prior gradients)`` of the likelihood by the registered form
    ``name`` (on checked arguments), jitted once per form."""
    return _jitted_form(name)(
        params, X, activations.get(activation), priors.get(prior), (), None, objectives.likelihood()
    )


def gaussian_ml_solution(X, rotation, bias):
    """The maximum-likelihood linear model of ``X`` under a standard Gaussian prior, in closed
    form: ``s = W x + b`` with ``W C Wᵀ = I`` and ``b = −W μ`` (``C`` the covariance of ``X``
    about ``μ`` with ``1/n``), so ``W = Q C^{-1/2}`` for any orthogonal ``Q``; without a bias
    ``μ = 0`` and ``C`` is the second moment.  The NLL ``mean ½|Wx + b|² − log|det W|`` has
    ``∂/∂W = W C − W⁻ᵀ = 0`` and ``∂/∂b = W μ + b = 0`` there."""
    X = np.asarray(X)
    mu = X.mean(axis=0) if bias else np.zeros(X.shape[1])
    C = (X - mu).T @ (X - mu) / X.shape[0]
    evals, evecs = np.linalg.eigh(C)
    W = rotation @ evecs @ np.diag(evals**-0.5) @ evecs.T
    return (nica.Layer(jnp.asarray(W), jnp.asarray(-W @ mu) if bias else None),)


@pytest.mark.parametrize("name", FORMS)
@settings(max_examples=10, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**16), bias=st.booleans())
def test_every_form_vanishes_at_the_maximum_likelihood_solution(name, seed, bias):
    """A stationary point built in closed form (linear model, Gaussian prior): the direction is
    zero there (to round-off), and not after a 5 % change of scale (the control)."""
    rng = np.random.default_rng(seed)
    X = jnp.asarray(rng.laplace(size=(12, D)) @ (np.eye(D) + 0.5 * rng.standard_normal((D, D))) + rng.normal(size=D))
    rotation, _ = np.linalg.qr(rng.standard_normal((D, D)))
    params = gaussian_ml_solution(X, rotation, bias)
    moved = (nica.Layer(1.05 * params[0].W, params[0].b),)
    at_optimum = jax.tree_util.tree_leaves(form_gradient(name, params, X, "tanh_linear", "gaussian")[1])
    assert max(float(np.max(np.abs(leaf))) for leaf in at_optimum) < 1e-10
    elsewhere = jax.tree_util.tree_leaves(form_gradient(name, moved, X, "tanh_linear", "gaussian")[1])
    assert max(float(np.max(np.abs(leaf))) for leaf in elsewhere) > 1e-3


@pytest.mark.parametrize("name", FORMS)
def test_every_form_is_a_descent_direction_of_the_objective(name):
    """The form's direction, mapped to the weights by what it chains after the optimizer (the
    transport for the equivariant form), has a positive inner product with the Euclidean
    gradient ``[G, g]`` of the brute-force NLL, whatever metric the form uses; and its loss is
    the NLL without ``−Σ log|det W_k|``."""
    params = random_params(13, n_layers=2)
    X = random_data(13, n_samples=9)
    act, pr = activations.smooth_leaky_relu(), priors.logistic()
    loss, layers, prior_grads = form_gradient(name, params, X, "smooth_leaky_relu", "logistic")
    tx = gradients.get(name).update_transform()
    (direction, _), _ = tx.update((layers, ()), tx.init((params, ())), (params, ()))
    G_layers, _ = brute_nll_grad(params, X, act, pr, (), None)
    inner = sum(
        float(jnp.vdot(d, G)) for d, G in zip(jax.tree_util.tree_leaves(direction), jax.tree_util.tree_leaves(G_layers))
    )
    assert inner > 0
    log_det_w = sum(float(jnp.linalg.slogdet(W)[1]) for W, _ in params)
    assert float(loss) == pytest.approx(float(brute_nll(params, X, act, pr)) + log_det_w, rel=1e-10)
    assert prior_grads == ()


@pytest.mark.parametrize("name", FORMS)
def test_every_form_keeps_float32(name):
    params = nica.init_params(jax.random.key(0), 4, 2, dtype=jnp.float32)
    X = jax.random.normal(jax.random.key(1), (10, 4), jnp.float32)
    leaves = jax.tree_util.tree_leaves(form_gradient(name, params, X, "smooth_leaky_relu", "laplace"))
    assert {leaf.dtype for leaf in leaves} == {jnp.dtype("float32")}
    if name in PUBLIC:
        assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(PUBLIC[name](params, X))} == {jnp.dtype("float32")}


# ---------------------------------------------------------------------------------------------
# cost: no inverse, no determinant, exactly (4L − 1) matrix-matrix products


def _primitives(jaxpr):
    """Every equation of a jaxpr, nested jaxprs (jit, custom_jvp, while, ...) included."""
    for eqn in jaxpr.eqns:
        yield eqn
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                sub = getattr(sub, "jaxpr", sub)  # ClosedJaxpr -> Jaxpr
                if hasattr(sub, "eqns"):
                    yield from _primitives(sub)


def _matmul_flops(eqn):
    lhs, out = eqn.invars[0].aval.shape, eqn.outvars[0].aval.shape
    ((lc, _), _) = eqn.params["dimension_numbers"]
    contracted = int(np.prod([lhs[i] for i in lc]))
    return contracted * int(np.prod(out))


@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_relative_gradient_cost_is_4L_minus_1_products(n_layers):
    B, d = 8, 16  # B < D: the cheap grouping
    params = random_params(10, n_features=d, n_layers=n_layers)
    X = random_data(10, n_samples=B, n_features=d)
    jaxpr = jax.make_jaxpr(lambda p, x: nica.relative_gradient(p, x, activation="smooth_leaky_relu", prior="laplace"))(
        params, X
    ).jaxpr
    names = {eqn.primitive.name for eqn in _primitives(jaxpr)}
    assert not names & {"lu", "cholesky", "triangular_solve", "eig", "eigh", "qr", "svd"}, names
    big = [
        _matmul_flops(e)
        for e in _primitives(jaxpr)
        if e.primitive.name == "dot_general" and _matmul_flops(e) >= B * d * d
    ]
    assert len(big) == 4 * n_layers - 1
    assert max(big) == B * d * d  # nothing of D×D×D size


# ---------------------------------------------------------------------------------------------
# composability and the equivariant form's trajectories


def test_jit_and_optax_compose():
    params = random_params(11, n_layers=2)
    X = random_data(11, n_samples=64)
    step_grad = jax.jit(nica.relative_gradient, static_argnames=("activation", "prior"))
    act, pr = activations.smooth_leaky_relu(), priors.laplace()
    np.testing.assert_allclose(
        step_grad(params, X, activation=act, prior=pr)[0].W,
        nica.relative_gradient(params, X, activation=act, prior=pr)[0].W,
    )
    opt = optax.sgd(0.05)
    state = opt.init(params)
    before = -jnp.mean(nica.log_likelihood(params, X, activation=act, prior=pr))
    for _ in range(20):
        updates, state = opt.update(step_grad(params, X, activation=act, prior=pr), state, params)
        params = optax.apply_updates(params, updates)
    after = -jnp.mean(nica.log_likelihood(params, X, activation=act, prior=pr))
    assert after < before - 0.05


def _trajectory_with(opt, params, X, gradient, steps):
    """The parameters after ``steps`` full-batch steps of ``make_train_step``."""
    step = jax.jit(nica.make_train_step(opt, gradient=gradient))
    state = nica.init_train_state(opt, params)
    for _ in range(steps):
        state, _ = step(state, X)
    return state.params


@pytest.mark.parametrize("gradient, equivariant", [("equivariant", True), ("relative", False)])
def test_adam_on_the_group_coordinates_is_equivariant(gradient, equivariant):
    """Train on X and on X' = X Aᵀ + c from the matching first layer W₁A⁻¹, b₁ − W₁A⁻¹c: the
    equivariant route gives the same network outputs on every sample; Adam fed the relative
    gradient in weight coordinates does not (the control, so the test can fail)."""
    params = random_params(40, n_layers=2)
    X = random_data(40, n_samples=64)
    rng = np.random.default_rng(1)
    A = jnp.asarray(rng.standard_normal((3, 3)) * 2.0 + 3.0 * np.eye(3))
    c = jnp.asarray(rng.standard_normal(3))
    X2 = X @ A.T + c[None, :]
    W1, b1 = params[0]
    W1_moved = W1 @ jnp.linalg.inv(A)
    params2 = (nica.Layer(W1_moved, b1 - W1_moved @ c),) + params[1:]
    np.testing.assert_allclose(nica.forward(params2, X2), nica.forward(params, X), atol=1e-10)  # same start
    adam = optax.adam(3e-2)  # per-coordinate state: what breaks equivariance in weight coordinates
    out = nica.forward(_trajectory_with(adam, params, X, gradient, steps=15), X)
    out2 = nica.forward(_trajectory_with(adam, params2, X2, gradient, steps=15), X2)
    assert np.max(np.abs(out - nica.forward(params, X))) > 0.1  # it did train
    if equivariant:
        np.testing.assert_allclose(out2, out, atol=1e-8)
    else:
        assert np.max(np.abs(out2 - out)) > 1e-3


def test_sgd_steps_agree_with_the_relative_gradient():
    """For plain SGD the update is linear, so both routes take the same step."""
    params = random_params(41, n_layers=3)
    X = random_data(41, n_samples=32)
    opt = optax.sgd(1e-2)
    a = _trajectory_with(opt, params, X, "relative", steps=10)
    b = _trajectory_with(opt, params, X, "equivariant", steps=10)
    assert_layers_close(b, a, rtol=1e-9, atol=1e-11)


def test_the_augmented_matrix_oracle():
    """The oracles' ``W̄`` itself: ``[[W, b], [0, 1]]`` acts on ``[z, 1]`` as the layer does."""
    W, b = random_params(3, n_layers=1)[0]
    z = jnp.asarray([0.3, -1.2, 2.0])
    np.testing.assert_allclose(augmented(W, b) @ jnp.append(z, 1.0), jnp.append(W @ z + b, 1.0), rtol=1e-14)


# ---------------------------------------------------------------------------------------------
# bad arguments (float32: refused before any compilation)


def _params(dtype=jnp.float32):
    return nica.init_params(jax.random.key(0), D, 2, dtype=dtype)


XJ = jax.random.normal(jax.random.key(1), (8, D), jnp.float32)

BAD_X = [  # the checks are the network's (tests/test_network.py tries every case), plus one row
    (np.array([["a", "b", "c"]]), TypeError, "X must be a floating-point array; got dtype <U1"),
    (XJ[0], ValueError, r"X must be 2-D with shape \(n_samples, 3\); got shape \(3,\)"),
    (XJ[:, :2], ValueError, "X has 2 features but the network expects 3"),
    (XJ.astype(jnp.float16), TypeError, "X has dtype float16 but the parameters are float32"),
    (XJ[:0], ValueError, r"_gradient averages over the rows of X: X needs at least one row; got shape \(0, 3\)"),
]


@pytest.mark.parametrize("bad, error, match", BAD_X, ids=range(len(BAD_X)))
def test_gradient_functions_refuse_bad_X(bad, error, match):
    params = _params()
    for fn in (*PUBLIC.values(), nica.backpropagated_errors):
        if "rows of X" in match and fn is nica.backpropagated_errors:
            continue  # the errors of no rows are empty, not an average
        with pytest.raises(error, match=match):
            fn(params, bad)


def test_gradient_functions_need_prior_params_and_refuse_bad_ones():
    params = _params()
    segment = priors.segment_conditional("laplace", 4)
    theta = segment.init_params(jax.random.key(0), D, jnp.float32)
    good = jnp.arange(8) % 4
    layers, theta_grads = nica.relative_gradient(params, XJ, prior=segment, prior_params=theta, u=good)
    assert all(np.isfinite(leaf).all() for leaf in jax.tree_util.tree_leaves((layers, theta_grads)))
    for fn in PUBLIC.values():
        for prior, what in [
            (priors.logistic_mixture(), "which has learned parameters: pass prior_params="),
            (segment, "which depends on u and has learned parameters"),
        ]:
            with pytest.raises(
                ValueError,
                match=rf"{fn.__name__} needs prior_params for prior "
                rf"{type(prior).__name__}, {what}",
            ):
                fn(params, XJ, prior=prior)
        for kwargs, error, match in prior_argument_cases(segment, theta, good):
            with pytest.raises(error, match=match.format(fn=fn.__name__)):
                fn(params, XJ, **kwargs)


def test_get_refuses_unknown_forms():
    with pytest.raises(ValueError, match=r"gradient must be one of \[.*'relative'.*\]; got 'natural'"):
        gradients.get("natural")
    with pytest.raises(TypeError, match=r"gradient must be an instance; got the class RelativeGradient"):
        gradients.get(gradients.RelativeGradient)


@FUZZ
@given(data=arrays([(2, D), (2, D), (0, D), (2, D - 1), (D,), (2, D, 1)], max_abs=1e3))
def test_relative_gradient_on_random_arrays(data):
    """The predicted error naming X, or (float32 data, at least one row) finite directions
    wherever every row is finite."""
    params = nica.init_params(jax.random.key(0), D, 2, dtype=jnp.float32)
    kind = data.dtype.kind
    if kind not in "biufc":
        refusal = TypeError, f"X must be a floating-point array; got dtype {data.dtype}"
    elif data.ndim != 2:
        refusal = ValueError, f"X must be 2-D with shape (n_samples, 3); got shape {data.shape}"
    elif data.shape[1] != D:
        refusal = ValueError, f"X has {data.shape[1]} features but the network expects 3"
    elif kind != "f":
        refusal = TypeError, f"X must be a floating-point array; got dtype {data.dtype}"
    elif data.dtype != np.float32:
        refusal = TypeError, f"X has dtype {data.dtype} but the parameters are float32"
    elif data.shape[0] == 0:
        refusal = ValueError, "relative_gradient averages over the rows of X: X needs at least one row"
    else:
        refusal = None
    if refusal is not None:
        with pytest.raises(refusal[0], match=re.escape(refusal[1])):
            nica.relative_gradient(params, data)
        return
    out = nica.relative_gradient(params, data)
    assert all(np.isfinite(leaf).all() for leaf in jax.tree_util.tree_leaves(out)) or not np.isfinite(data).all()
