"""The functional core against independent oracles, in float64 on tiny shapes.

The oracle is a brute-force model written here from the equations of docs/theory.rst ('The
model') alone: a per-sample network, its full Jacobian from ``jax.jacfwd`` and ``slogdet``.  It never calls nica's likelihood,
log-derivatives or gradients.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

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


@pytest.mark.parametrize("prior", PRIORS)
def test_relative_gradient_vanishes_where_the_likelihood_is_stationary(prior):
    """Relative and Euclidean gradients share their zeros: ΔW̄ = ∇ W̄ᵀW̄ with W̄ invertible."""
    params = random_params(9, n_layers=2)
    X = random_data(9)
    rel = nica.relative_gradient(params, X, activation="tanh_linear", prior=prior)
    euc = nica.euclidean_gradient(params, X, activation="tanh_linear", prior=prior)
    # Euclidean direction recovered from the relative one by solving with W̄ᵀW̄.
    for (W, b), (dW, db), (G, g) in zip(params, rel, euc):
        d = W.shape[0]
        Wbar = np.zeros((d + 1, d + 1))
        Wbar[:d, :d], Wbar[:d, d], Wbar[d, d] = W, b, 1.0
        M = Wbar.T @ Wbar
        Gbar = np.linalg.solve(M.T, np.concatenate([dW, db[:, None]], axis=1).T).T
        np.testing.assert_allclose(Gbar[:, :d], G, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(Gbar[:, d], g, rtol=1e-8, atol=1e-10)


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


def test_autodiff_and_relative_agree_on_loss_landscape_direction():
    """Relative gradient is a descent direction: ⟨G, ΔW⟩ > 0 (W̄ᵀW̄ is positive definite)."""
    for seed, (act, pr) in enumerate(itertools.product(ACTIVATIONS, PRIORS)):
        params = random_params(seed, n_layers=2)
        X = random_data(seed)
        rel = nica.relative_gradient(params, X, activation=act, prior=pr)
        auto = nica.autodiff_gradient(params, X, activation=act, prior=pr)
        inner = sum(jnp.vdot(a, r) for a, r in zip(jax.tree_util.tree_leaves(auto), jax.tree_util.tree_leaves(rel)))
        assert inner > 0
