"""The functional core against independent oracles, in float64 on tiny shapes.

The oracle is a brute-force model written here from the equations of docs/theory.rst ('The
model') alone: a per-sample network, its full Jacobian from ``jax.jacfwd`` and ``slogdet``.  It never calls nica's likelihood,
log-derivatives or gradients.  Besides: a maximum-likelihood solution built in closed form (a
linear model with a Gaussian prior), where every gradient must vanish, and the relative gradient
equal to nica's own autodiff gradient mapped by ``W̄ᵀW̄``.
"""

import itertools
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nica
from nica import activations, priors

ACTIVATIONS = ["smooth_leaky_relu", "tanh_linear", "leaky_relu"]
PRIORS = ["gaussian", "laplace", "logistic", "hypsecant"]
D = 3


def random_params(seed, n_features=D, n_layers=2, bias=True):
    """Well-conditioned but non-orthogonal weights and clearly non-zero biases."""
    rng = np.random.default_rng(seed)
    layers = []
    for _ in range(n_layers):
        W = np.eye(n_features) + 0.4 * rng.standard_normal((n_features, n_features))
        b = 0.7 * rng.standard_normal(n_features) if bias else None
        layers.append(nica.Layer(jnp.asarray(W), None if b is None else jnp.asarray(b)))
    return tuple(layers)


def random_data(seed, n_samples=5, n_features=D):
    return jnp.asarray(np.random.default_rng(seed + 100).laplace(size=(n_samples, n_features)))


def brute_network(params, x, act):
    """s = g(x) for one sample, written from docs/theory.rst, 'The model'."""
    z = x
    for k, (W, b) in enumerate(params):
        y = W @ z if b is None else W @ z + b
        if k < len(params) - 1:
            z = act.fn(y)
    return y


def brute_log_likelihood(params, X, act, prior):
    S = jax.vmap(lambda x: brute_network(params, x, act))(X)
    J = jax.vmap(jax.jacfwd(lambda x: brute_network(params, x, act)))(X)
    return prior.log_prob(S) + jnp.linalg.slogdet(J)[1]


def brute_nll(params, X, act, prior):
    return -jnp.mean(brute_log_likelihood(params, X, act, prior))


def relative_from_definition(params, G_g):
    """[ΔW, Δb] = [G, g] W̄ᵀ W̄ with W̄ = [[W, b], [0, 1]] (docs/theory.rst, 'The relative gradient';
    paper appendix F)."""
    out = []
    for (W, b), (G, g) in zip(params, G_g):
        d = W.shape[0]
        if b is None:
            out.append((G @ W.T @ W, None))
            continue
        Wbar = jnp.zeros((d + 1, d + 1)).at[:d, :d].set(W).at[:d, d].set(b).at[d, d].set(1.0)
        Gbar = jnp.concatenate([G, g[:, None]], axis=1)  # (d, d + 1): no update for last row
        R = Gbar @ Wbar.T @ Wbar
        out.append((R[:, :d], R[:, d]))
    return out


def assert_layers_close(got, expected, rtol=1e-9, atol=1e-10):
    assert len(got) == len(expected)
    for (gW, gb), (eW, eb) in zip(got, expected):
        np.testing.assert_allclose(gW, eW, rtol=rtol, atol=atol)
        if eb is None:
            assert gb is None
        else:
            np.testing.assert_allclose(gb, eb, rtol=rtol, atol=atol)


# ---------------------------------------------------------------------------------------------
# likelihood and invertibility


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("prior", PRIORS)
@pytest.mark.parametrize("n_layers", [1, 3])
def test_log_likelihood_matches_brute_force(activation, prior, n_layers):
    params = random_params(1, n_layers=n_layers)
    X = random_data(1)
    act, pr = activations.get(activation), priors.get(prior)
    got = nica.log_likelihood(params, X, activation=activation, prior=prior)
    assert got.shape == (X.shape[0],) and got.dtype == jnp.float64
    np.testing.assert_allclose(got, brute_log_likelihood(params, X, act, pr), rtol=1e-10)


@partial(jax.jit, static_argnames="act")
def brute_flow(params, X, act):
    """``(S, slogdet)`` per row from the brute-force network and its ``jax.jacfwd`` Jacobian."""
    g = partial(brute_network, params, act=act)
    return jax.vmap(g)(X), jnp.linalg.slogdet(jax.vmap(jax.jacfwd(g))(X))


@settings(max_examples=8, deadline=None, derandomize=True)
@given(n_features=st.integers(1, 4), n_layers=st.integers(1, 3), n_samples=st.integers(1, 4),
       bias=st.booleans(), activation=st.sampled_from(ACTIVATIONS), seed=st.integers(0, 2**16))
def test_forward_and_log_det_is_the_slogdet_of_the_jacobian(n_features, n_layers, n_samples, bias, activation,
                                                            seed):
    """Per row, ``log|det ∂g/∂x|`` is ``jnp.linalg.slogdet`` of ``jax.jacfwd`` of the brute-force
    network, and ``S`` its output, on random shapes."""
    params = random_params(seed, n_features=n_features, n_layers=n_layers, bias=bias)
    X = random_data(seed, n_samples=n_samples, n_features=n_features) * 2.0
    S, log_det = nica.forward_and_log_det(params, X, activation=activation)
    assert S.shape == X.shape and log_det.shape == (n_samples,) and log_det.dtype == jnp.float64
    expected_S, (sign, expected) = brute_flow(params, X, activations.get(activation))
    assert np.all(np.asarray(sign) != 0)
    np.testing.assert_allclose(log_det, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(S, expected_S, rtol=1e-12, atol=1e-12)


@settings(max_examples=8, deadline=None, derandomize=True)
@given(n_features=st.integers(1, 4), n_layers=st.integers(1, 3), n_samples=st.integers(1, 4),
       bias=st.booleans(), activation=st.sampled_from(ACTIVATIONS), seed=st.integers(0, 2**16))
def test_inverse_and_log_det_is_the_slogdet_of_the_inverse_jacobian(n_features, n_layers, n_samples, bias,
                                                                    activation, seed):
    """Per row, ``log|det ∂g⁻¹/∂s|`` is ``slogdet`` of ``jax.jacfwd`` through the inverse network
    itself (autodiff of the solves and activation inverses), and ``X`` is ``inverse``'s output."""
    from nica._src.network import inverse_jit as _inverse

    params = random_params(seed, n_features=n_features, n_layers=n_layers, bias=bias)
    S = random_data(seed, n_samples=n_samples, n_features=n_features) * 2.0
    act = activations.get(activation)
    X, log_det = nica.inverse_and_log_det(params, S, activation=activation)
    assert X.shape == S.shape and log_det.shape == (n_samples,) and log_det.dtype == jnp.float64
    one_row = lambda s: _inverse(tuple(params), s[None, :], act)[0]  # noqa: E731
    sign, expected = jnp.linalg.slogdet(jax.vmap(jax.jacfwd(one_row))(S))
    assert np.all(np.asarray(sign) != 0)
    np.testing.assert_allclose(log_det, expected, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(X, nica.inverse(params, S, activation=activation), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("n_layers", [1, 2, 4])
@pytest.mark.parametrize("bias", [True, False])
def test_inverse_of_forward_is_identity(activation, n_layers, bias):
    params = random_params(2, n_features=4, n_layers=n_layers, bias=bias)
    X = random_data(2, n_samples=50, n_features=4) * 3.0
    S = nica.forward(params, X, activation=activation)
    np.testing.assert_allclose(S, jax.vmap(lambda x: brute_network(params, x, activations.get(activation)))(X))
    np.testing.assert_allclose(nica.inverse(params, S, activation=activation), X, rtol=1e-9, atol=1e-9)


def test_inverse_is_differentiable():
    params = random_params(3)
    S = random_data(3)
    act = "smooth_leaky_relu"
    jac = jax.jacfwd(lambda s: nica.inverse(params, s[None, :], activation=act)[0])(S[0])
    x = nica.inverse(params, S[:1], activation=act)[0]
    J_forward = jax.jacfwd(lambda x: brute_network(params, x, activations.get(act)))(x)
    np.testing.assert_allclose(jac @ J_forward, np.eye(D), atol=1e-8)


# ---------------------------------------------------------------------------------------------
# gradients


@pytest.mark.parametrize("n_layers", [1, 2, 3, 4])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("prior", PRIORS)
def test_relative_gradient_matches_definition(n_layers, activation, prior):
    params = random_params(n_layers, n_layers=n_layers)
    X = random_data(n_layers)
    act, pr = activations.get(activation), priors.get(prior)
    grads = jax.grad(brute_nll)(params, X, act, pr)
    expected = relative_from_definition(params, grads)
    got = nica.relative_gradient(params, X, activation=activation, prior=prior)
    assert_layers_close(got, expected)


@pytest.mark.parametrize("n_samples", [2, 6, 7, 40])  # both groupings: B ≤ 2D and B > 2D
@pytest.mark.parametrize("bias", [True, False])
def test_relative_gradient_both_groupings_and_no_bias(n_samples, bias):
    params = random_params(5, n_layers=3, bias=bias)
    X = random_data(5, n_samples=n_samples)
    act, pr = activations.smooth_leaky_relu(), priors.laplace()
    expected = relative_from_definition(params, jax.grad(brute_nll)(params, X, act, pr))
    got = nica.relative_gradient(params, X, activation=act, prior=pr)
    assert_layers_close(got, expected)


def test_bias_correction_term_is_present():
    """With non-zero biases, leaving out the −b (as the authors' code does) is wrong.

    See docs/theory.rst, 'The bias correction'.
    """
    params = random_params(6, n_layers=2)
    X = random_data(6)
    act, pr = activations.tanh_linear(), priors.logistic()
    expected = relative_from_definition(params, jax.grad(brute_nll)(params, X, act, pr))
    got = nica.relative_gradient(params, X, activation=act, prior=pr)
    for (W, b), (_, db_got), (_, db_exp) in zip(params, got, expected):
        np.testing.assert_allclose(db_got, db_exp, rtol=1e-9, atol=1e-10)
        assert np.max(np.abs((db_got + b) - db_exp)) > 1e-3  # the authors' version differs


@pytest.mark.parametrize("method", ["euclidean", "autodiff"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("n_layers", [1, 2, 4])
@pytest.mark.parametrize("bias", [True, False])
def test_ordinary_gradients_match_autodiff_of_brute_force(method, activation, n_layers, bias):
    params = random_params(7 + n_layers, n_layers=n_layers, bias=bias)
    X = random_data(7)
    act, pr = activations.get(activation), priors.hypsecant()
    expected = [(G, g) for G, g in jax.grad(brute_nll)(params, X, act, pr)]
    fn = {"euclidean": nica.euclidean_gradient, "autodiff": nica.autodiff_gradient}[method]
    got = fn(params, X, activation=act, prior=pr)
    assert_layers_close(got, expected, rtol=1e-8, atol=1e-10)


GRADIENTS = {"relative": nica.relative_gradient, "equivariant": nica.equivariant_gradient,
             "euclidean": nica.euclidean_gradient, "autodiff": nica.autodiff_gradient}


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
    W = rotation @ evecs @ np.diag(evals ** -0.5) @ evecs.T
    return (nica.Layer(jnp.asarray(W), jnp.asarray(-W @ mu) if bias else None),)


@settings(max_examples=10, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**16), bias=st.booleans())
def test_every_gradient_vanishes_at_the_maximum_likelihood_solution(seed, bias):
    """A stationary point built in closed form (linear model, Gaussian prior): every gradient
    is zero there (to round-off), and not after a 5 % change of scale (the control)."""
    rng = np.random.default_rng(seed)
    X = jnp.asarray(rng.laplace(size=(12, D)) @ (np.eye(D) + 0.5 * rng.standard_normal((D, D))) + rng.normal(size=D))
    rotation, _ = np.linalg.qr(rng.standard_normal((D, D)))
    params = gaussian_ml_solution(X, rotation, bias)
    moved = (nica.Layer(1.05 * params[0].W, params[0].b),)
    for name, fn in GRADIENTS.items():
        at_optimum = jax.tree_util.tree_leaves(fn(params, X, activation="tanh_linear", prior="gaussian"))
        assert max(float(np.max(np.abs(leaf))) for leaf in at_optimum) < 1e-10, name
        elsewhere = jax.tree_util.tree_leaves(fn(moved, X, activation="tanh_linear", prior="gaussian"))
        assert max(float(np.max(np.abs(leaf))) for leaf in elsewhere) > 1e-3, name


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
    jaxpr = jax.make_jaxpr(
        lambda p, x: nica.relative_gradient(p, x, activation="smooth_leaky_relu", prior="laplace")
    )(params, X).jaxpr
    names = {eqn.primitive.name for eqn in _primitives(jaxpr)}
    assert not names & {"lu", "cholesky", "triangular_solve", "eig", "eigh", "qr", "svd"}, names
    big = [_matmul_flops(e) for e in _primitives(jaxpr)
           if e.primitive.name == "dot_general" and _matmul_flops(e) >= B * d * d]
    assert len(big) == 4 * n_layers - 1
    assert max(big) == B * d * d  # nothing of D×D×D size


# ---------------------------------------------------------------------------------------------
# composability, dtypes, errors


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


def test_float32_stays_float32():
    params = nica.init_params(jax.random.key(0), 4, 2, dtype=jnp.float32)
    assert params[0].W.dtype == jnp.float32
    assert nica.init_params(jax.random.key(0), 4, 2)[0].W.dtype == jnp.float64  # x64 is on here
    X = jax.random.normal(jax.random.key(1), (10, 4), jnp.float32)
    for out in [nica.forward(params, X), nica.inverse(params, X), nica.log_likelihood(params, X)]:
        assert out.dtype == jnp.float32
    for fn in [nica.relative_gradient, nica.euclidean_gradient, nica.autodiff_gradient]:
        assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(fn(params, X))} == {jnp.dtype("float32")}


def test_init_params_is_orthogonal_and_deterministic():
    p1 = nica.init_params(jax.random.key(3), 5, 3, dtype=jnp.float64)
    p2 = nica.init_params(jax.random.key(3), 5, 3, dtype=jnp.float64)
    p3 = nica.init_params(jax.random.key(3), 5, 2, bias=False, dtype=jnp.float64)
    for (W, b), (W2, _) in zip(p1, p2):
        np.testing.assert_allclose(W @ W.T, np.eye(5), atol=1e-12)
        np.testing.assert_array_equal(W, W2)
        np.testing.assert_array_equal(b, 0.0)
    assert all(layer.b is None for layer in p3)


def test_init_params_above_4096_features_is_a_permuted_block_orthogonal_matrix():
    """Large D: exactly orthogonal without an O(D³) QR; blocks of ≤ 1,024, rows and columns permuted."""
    n = 4100
    (W, b), = nica.init_params(jax.random.key(0), n, 1, dtype=jnp.float64)
    W = np.asarray(W)
    np.testing.assert_allclose(W @ W.T, np.eye(n), atol=1e-12)
    nonzero = W != 0
    assert nonzero.sum(axis=1).max() <= 1024 and nonzero.sum(axis=0).max() <= 1024
    assert nonzero.sum() == sum(m * m for m in [820] * 5)   # 5 blocks of 820: nothing else is set
    # rows and columns are permuted: the diagonal blocks of W itself are not the structure
    assert 0 < nonzero[:820, :820].sum() < 820 * 820
    W2, _ = nica.init_params(jax.random.key(0), n, 1, dtype=jnp.float64)[0]
    np.testing.assert_array_equal(W, W2)


@pytest.mark.parametrize(
    "params, X, error, match",
    [
        ((nica.Layer(jnp.ones((3, 2)), jnp.zeros(3)),), jnp.ones((4, 3)), ValueError, "square"),
        (random_params(0), jnp.ones((4, 5)), ValueError, "has 5 features but the network expects 3"),
        (random_params(0), jnp.ones((3,)), ValueError, "must be 2-D"),
        ((random_params(0)[0], random_params(0, n_features=4)[0]), jnp.ones((4, 3)), ValueError, "same size"),
        ((nica.Layer(jnp.eye(3), jnp.zeros(2)),), jnp.ones((4, 3)), ValueError, r"b must have shape \(3,\)"),
        (random_params(0), jnp.ones((4, 3), jnp.float32), TypeError, "dtype float32 but the parameters are float64"),
        (random_params(0), jnp.ones((4, 3), jnp.int32), TypeError, "floating-point"),
        ((), jnp.ones((4, 3)), TypeError, "non-empty tuple"),
        ((jnp.eye(3), jnp.zeros(3)), jnp.ones((4, 3)), TypeError, "nica.Layer"),
    ],
)
def test_bad_input_raises_clear_errors(params, X, error, match):
    for fn in [nica.forward, nica.log_likelihood, nica.relative_gradient]:
        with pytest.raises(error, match=match):
            fn(params, X)


def test_unknown_names_raise():
    params, X = random_params(0), random_data(0)
    with pytest.raises(ValueError, match="Unknown activation 'relu'"):
        nica.forward(params, X, activation="relu")
    with pytest.raises(ValueError, match="Unknown prior 'cauchy'"):
        nica.log_likelihood(params, X, prior="cauchy")
    with pytest.raises(TypeError, match="activation must be"):
        nica.forward(params, X, activation=3)


def test_mixed_bias_layers_rejected():
    a, b = random_params(0, n_layers=2)
    with pytest.raises(ValueError, match="every layer has a bias or none"):
        nica.forward((a, nica.Layer(b.W, None)), random_data(0))


def test_relative_gradient_is_the_autodiff_gradient_times_the_metric():
    """``nica.relative_gradient`` equals ``[G, g] W̄ᵀW̄`` with ``[G, g]`` from
    ``nica.autodiff_gradient`` (per-sample Jacobians and ``slogdet``), exactly, for every
    activation and prior; a positive inner product would also pass for a mis-scaled gradient."""
    for seed, (act, pr) in enumerate(itertools.product(ACTIVATIONS, PRIORS)):
        params = random_params(seed, n_layers=2)
        X = random_data(seed)
        rel = nica.relative_gradient(params, X, activation=act, prior=pr)
        auto = nica.autodiff_gradient(params, X, activation=act, prior=pr)
        assert_layers_close(rel, relative_from_definition(params, auto), rtol=1e-9, atol=1e-10)
