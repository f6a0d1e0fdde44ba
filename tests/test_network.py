"""The invertible MLP and its exact likelihood (``nica/_src/network.py``) against independent
oracles, in float64 on tiny shapes: a per-sample network written from docs/theory.rst ('The
model'), its full Jacobian from ``jax.jacfwd`` and ``slogdet`` (``tests/oracles.py``).

The likelihood and invertibility tests run on every registered activation and prior
(``activations.names()``, ``priors.names()``), so a newly registered component is held to the
same oracles.  Misuse: every bad argument of the core's functions is refused before any JAX
tracing, with an error naming the argument.
"""

import dataclasses
import re
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oracles import (
    brute_flow,
    brute_log_likelihood,
    brute_network,
    conditional_problem,
    mixture_log_density,
    prior_argument_cases,
    random_data,
    random_params,
    random_theta,
)
from scipy import stats
from strategies import FUZZ, arrays
from support import UnhashableActivation

import nica
from nica import activations, priors

ACTIVATIONS = activations.names()
PRIORS = priors.names()
D = 3


# ---------------------------------------------------------------------------------------------
# likelihood and invertibility


@partial(jax.jit, static_argnums=(2, 3))
def _log_likelihood_and_oracle(params, X, act, pr, theta):
    """``nica.log_likelihood`` (jit-able: its checks run on shapes) and the brute-force one, in
    one compiled program."""
    return (
        nica.log_likelihood(params, X, activation=act, prior=pr, prior_params=theta),
        brute_log_likelihood(params, X, act, pr, theta),
    )


def assert_log_likelihood_matches_brute_force(params, X, act, pr):
    theta = random_theta(pr, 1, D)  # () for a fixed density
    got, expected = _log_likelihood_and_oracle(params, X, act, pr, theta)
    assert got.shape == (X.shape[0],) and got.dtype == jnp.float64
    np.testing.assert_allclose(got, expected, rtol=1e-10)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("n_layers", [1, 3])
def test_log_likelihood_matches_brute_force_for_every_activation(activation, n_layers):
    assert_log_likelihood_matches_brute_force(
        random_params(1, n_layers=n_layers), random_data(1), activations.get(activation), priors.logistic()
    )


@pytest.mark.parametrize("prior", PRIORS)
@pytest.mark.parametrize("n_layers", [1, 3])
def test_log_likelihood_matches_brute_force_for_every_prior(prior, n_layers):
    """A learned prior at random parameters.  (The prior enters the likelihood only through the
    sources, the activation only through the log-determinant: they are checked separately.)"""
    assert_log_likelihood_matches_brute_force(
        random_params(1, n_layers=n_layers), random_data(1), activations.smooth_leaky_relu(), priors.get(prior)
    )


@settings(max_examples=8, deadline=None, derandomize=True)
@given(
    n_features=st.integers(1, 4),
    n_layers=st.integers(1, 3),
    n_samples=st.integers(1, 4),
    bias=st.booleans(),
    activation=st.sampled_from(ACTIVATIONS),
    seed=st.integers(0, 2**16),
)
def test_forward_and_log_det_is_the_slogdet_of_the_jacobian(n_features, n_layers, n_samples, bias, activation, seed):
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
@given(
    n_features=st.integers(1, 4),
    n_layers=st.integers(1, 3),
    n_samples=st.integers(1, 4),
    bias=st.booleans(),
    activation=st.sampled_from(ACTIVATIONS),
    seed=st.integers(0, 2**16),
)
def test_inverse_and_log_det_is_the_slogdet_of_the_inverse_jacobian(
    n_features, n_layers, n_samples, bias, activation, seed
):
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


def test_a_custom_frozen_dataclass_activation_works():
    @dataclasses.dataclass(frozen=True)
    class Identity(activations.Activation):
        def fn(self, x):
            return x

        def inverse(self, y):
            return y

        def log_derivative(self, x):
            return jnp.zeros_like(x)

    params, X = _params(), XJ
    np.testing.assert_allclose(
        nica.inverse(params, nica.forward(params, X, activation=Identity()), activation=Identity()), X, atol=1e-5
    )


# ---------------------------------------------------------------------------------------------
# the likelihood with a prior's own parameters and an auxiliary variable


def brute_log_prior(kind, theta, S, u):
    """``Σ_i log p_i(s_i | u)`` per row in NumPy and SciPy, from the priors' docstrings alone."""
    theta = jax.tree_util.tree_map(np.asarray, theta)
    S, u = np.asarray(S), np.asarray(u) if u is not None else None
    if kind == "mixture":
        return mixture_log_density(theta, S).sum(axis=1)
    if kind == "mlp":  # one tanh hidden layer gives [log-scales, locations]
        out = np.tanh(u @ theta["W1"] + theta["b1"]) @ theta["W2"] + theta["b2"]
        log_scale, loc = np.split(out, 2, axis=1)
    else:
        log_scale, loc = theta["log_scale"][u], theta["loc"][u]
    z = (S - loc) / np.exp(log_scale)
    if kind == "segment-mixture":
        log_base = mixture_log_density(theta["base"], z)
    else:
        log_base = {"segment": stats.laplace(scale=1 / np.sqrt(2)), "mlp": stats.norm()}[kind].logpdf(z)
    return (log_base - log_scale).sum(axis=1)


@pytest.mark.parametrize("kind, n_layers", [("segment", 2), ("mlp", 1), ("mixture", 1), ("segment-mixture", 1)])
def test_log_likelihood_with_prior_params_matches_numpy_and_scipy(kind, n_layers):
    """The log-likelihood against a NumPy/SciPy prior term plus ``slogdet`` of ``jax.jacfwd``."""
    params, X, prior, theta, u = conditional_problem(kind, n_layers)
    act = activations.tanh_linear()
    S, (_, log_det) = brute_flow(params, X, act)
    ll = nica.log_likelihood(params, X, activation=act, prior=prior, prior_params=theta, u=u)
    np.testing.assert_allclose(ll, brute_log_prior(kind, theta, S, u) + np.asarray(log_det), rtol=1e-10)


def test_a_fixed_prior_takes_empty_prior_params():
    params, X, _, _, _ = conditional_problem("segment", 2)
    np.testing.assert_array_equal(
        nica.log_likelihood(params, X, prior="hypsecant", prior_params=()),
        nica.log_likelihood(params, X, prior="hypsecant"),
    )


# ---------------------------------------------------------------------------------------------
# initialisation and dtypes


def test_init_params_is_orthogonal_and_deterministic():
    p1 = nica.init_params(jax.random.key(3), 5, 3, dtype=jnp.float64)
    p2 = nica.init_params(jax.random.key(3), 5, 3, dtype=jnp.float64)
    p3 = nica.init_params(jax.random.key(3), 5, 2, bias=False, dtype=jnp.float64)
    for (W, b), (W2, _) in zip(p1, p2):
        np.testing.assert_allclose(W @ W.T, np.eye(5), atol=1e-12)
        np.testing.assert_array_equal(W, W2)
        np.testing.assert_array_equal(b, 0.0)
    assert all(layer.b is None for layer in p3)
    assert nica.init_params(jax.random.PRNGKey(0), 2, 1)[0].W.shape == (2, 2)  # a raw key is accepted


def test_init_params_above_4096_features_is_a_permuted_block_orthogonal_matrix():
    """Large D: exactly orthogonal without an O(D³) QR; blocks of ≤ 1,024, rows and columns permuted."""
    n = 4100
    ((W, b),) = nica.init_params(jax.random.key(0), n, 1, dtype=jnp.float64)
    W = np.asarray(W)
    np.testing.assert_allclose(W @ W.T, np.eye(n), atol=1e-12)
    nonzero = W != 0
    assert nonzero.sum(axis=1).max() <= 1024 and nonzero.sum(axis=0).max() <= 1024
    assert nonzero.sum() == sum(m * m for m in [820] * 5)  # 5 blocks of 820: nothing else is set
    # rows and columns are permuted: the diagonal blocks of W itself are not the structure
    assert 0 < nonzero[:820, :820].sum() < 820 * 820
    W2, _ = nica.init_params(jax.random.key(0), n, 1, dtype=jnp.float64)[0]
    np.testing.assert_array_equal(W, W2)


def test_float32_stays_float32():
    params = nica.init_params(jax.random.key(0), 4, 2, dtype=jnp.float32)
    assert params[0].W.dtype == jnp.float32
    assert nica.init_params(jax.random.key(0), 4, 2)[0].W.dtype == jnp.float64  # x64 is on here
    X = jax.random.normal(jax.random.key(1), (10, 4), jnp.float32)
    outs = [
        nica.forward(params, X),
        nica.inverse(params, X),
        nica.log_likelihood(params, X),
        *nica.forward_and_log_det(params, X),
        *nica.inverse_and_log_det(params, X),
    ]
    assert {out.dtype for out in outs} == {jnp.dtype("float32")}


# ---------------------------------------------------------------------------------------------
# bad arguments (float32: the checks run before any compilation)


def _params(dtype=jnp.float32):
    return nica.init_params(jax.random.key(0), D, 2, dtype=dtype)


XJ = jax.random.normal(jax.random.key(1), (8, D), jnp.float32)


@pytest.mark.parametrize(
    "args, kwargs, error, match",
    [
        ((jax.random.key(0), "3", 2), {}, TypeError, "n_features must be an integer >= 1; got '3'"),
        ((jax.random.key(0), 2.5, 2), {}, TypeError, "n_features must be an integer >= 1; got 2.5"),
        ((jax.random.key(0), True, 2), {}, TypeError, "n_features must be an integer >= 1; got True"),
        ((jax.random.key(0), 3, 0), {}, ValueError, "n_layers must be an integer >= 1; got 0"),
        ((jax.random.key(0), 3, None), {}, TypeError, "n_layers must be an integer >= 1; got None"),
        ((0, 3, 2), {}, TypeError, "key must be one JAX random key, e.g. jax.random.key\\(0\\); got int"),
        ((jax.random.split(jax.random.key(0)), 3, 2), {}, TypeError, "key must be one JAX random key"),
        ((jax.random.key(0), 3, 2), {"dtype": jnp.int32}, TypeError, "dtype must be a floating dtype; got int32"),
        (
            (jax.random.key(0), 3, 2),
            {"dtype": "banana"},
            TypeError,
            "dtype must be a floating dtype such as jnp.float32",
        ),
        ((jax.random.key(0), 3, 2), {"dtype": jnp.complex64}, TypeError, "dtype must be a floating dtype"),
        ((jax.random.key(0), 3, 2), {"bias": "no"}, TypeError, "bias must be a bool; got 'no'"),
    ],
)
def test_init_params_refuses_bad_arguments(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        nica.init_params(*args, **kwargs)


BAD_PARAMS = [  # (params, X, error, message fragment)
    (None, XJ, TypeError, "params must be a non-empty tuple of nica.Layer"),
    ((), XJ, TypeError, "params must be a non-empty tuple"),
    ([{"W": 1}], XJ, TypeError, r"params\[0\] must be an nica.Layer\(W, b\); got dict"),
    ((jnp.eye(3), jnp.zeros(3)), XJ, TypeError, r"params\[0\] must be an nica.Layer"),
    (
        (nica.Layer(jnp.ones((3, 2), jnp.float32), jnp.zeros(3, jnp.float32)),),
        XJ,
        ValueError,
        r"params\[0\].W must be a square \(D, D\) matrix; got shape \(3, 2\)",
    ),
    (
        (_params()[0], nica.init_params(jax.random.key(0), 4, 1, dtype=jnp.float32)[0]),
        XJ,
        ValueError,
        "All layers must have the same size: params.0..W is 3x3 but params.1..W is 4x4",
    ),
    (
        (nica.Layer(jnp.eye(3, dtype=jnp.float32), jnp.zeros(2, jnp.float32)),),
        XJ,
        ValueError,
        r"params\[0\].b must have shape \(3,\) to match W; got shape \(2,\)",
    ),
    ((_params()[0], nica.Layer(_params()[1].W, None)), XJ, ValueError, "Either every layer has a bias or none does"),
    (
        (nica.Layer(np.array([["a"]]), None),),
        XJ[:, :1],
        TypeError,
        r"params must all share one floating dtype; got \['<U1'\]",
    ),
    (
        (nica.Layer(jnp.eye(3), jnp.zeros(3, jnp.float32)),),
        XJ,
        TypeError,
        r"params must all share one floating dtype; got \['float32', 'float64'\]",
    ),
]


@pytest.mark.parametrize("params, X, error, match", BAD_PARAMS, ids=range(len(BAD_PARAMS)))
def test_core_functions_refuse_bad_params(params, X, error, match):
    for fn in (nica.forward, nica.inverse, nica.forward_and_log_det, nica.inverse_and_log_det, nica.log_likelihood):
        with pytest.raises(error, match=match):
            fn(params, X)


BAD_CORE_X = [
    (np.array([["a", "b", "c"]]), TypeError, "X must be a floating-point array; got dtype <U1"),
    (np.array([[1, None, 2]], dtype=object), TypeError, "X must be a floating-point array; got dtype object"),
    ([[1.0, 2.0, 3.0], [1.0]], ValueError, "X must be a rectangular array of numbers; got list"),
    (XJ + 1j, TypeError, "X must be a floating-point array; got dtype complex64"),
    (XJ > 0, TypeError, "X must be a floating-point array; got dtype bool"),
    (XJ.astype(jnp.int32), TypeError, "X must be a floating-point array; got dtype int32"),
    (XJ[0], ValueError, r"X must be 2-D with shape \(n_samples, 3\); got shape \(3,\)"),
    (XJ[None], ValueError, r"X must be 2-D with shape \(n_samples, 3\); got shape \(1, 8, 3\)"),
    (XJ[:, :2], ValueError, "X has 2 features but the network expects 3"),
    (jnp.ones((4, 5), jnp.float32), ValueError, "X has 5 features but the network expects 3"),
    (XJ.astype(jnp.float16), TypeError, "X has dtype float16 but the parameters are float32"),
    (XJ.astype(jnp.float64), TypeError, "X has dtype float64 but the parameters are float32; cast one of them"),
]


@pytest.mark.parametrize("bad, error, match", BAD_CORE_X, ids=range(len(BAD_CORE_X)))
def test_core_functions_refuse_bad_X(bad, error, match):
    params = _params()
    for fn in (nica.forward, nica.forward_and_log_det, nica.log_likelihood):
        with pytest.raises(error, match=match):
            fn(params, bad)
    for fn in (nica.inverse, nica.inverse_and_log_det):  # the argument is called S there
        with pytest.raises(error, match=match.replace("X ", "S ")):
            fn(params, bad)


def test_core_functions_refuse_unknown_or_unusable_activations_and_priors():
    params = _params()
    with pytest.raises(ValueError, match="Unknown activation 'relu'"):
        nica.forward(params, XJ, activation="relu")
    with pytest.raises(
        TypeError, match=r"activation must be a string in \[.*\] or an nica.activations object; got int"
    ):
        nica.forward(params, XJ, activation=3)
    with pytest.raises(TypeError, match="activation UnhashableActivation is not hashable"):
        nica.forward(params, XJ, activation=UnhashableActivation())
    with pytest.raises(TypeError, match="got the class TanhLinear"):
        nica.inverse(params, XJ, activation=activations.TanhLinear)
    with pytest.raises(ValueError, match="Unknown prior 'cauchy'"):
        nica.log_likelihood(params, XJ, prior="cauchy")
    for prior, what in [
        (priors.logistic_mixture(), "which has learned parameters: pass prior_params="),
        (priors.segment_conditional("laplace", 2), "which depends on u and has learned parameters"),
    ]:
        with pytest.raises(
            ValueError,
            match=rf"log_likelihood needs prior_params for prior {type(prior).__name__}, "
            rf"{what}",
        ):
            nica.log_likelihood(params, XJ, prior=prior)


def test_log_likelihood_takes_prior_params_and_u_and_refuses_bad_ones():
    """Accepted when given (the values are tested above); refused when they do not fit the
    prior, before any tracing.  tests/test_gradients.py tries the same on the gradients."""
    params = _params()
    segment = priors.segment_conditional("laplace", 4)
    theta = segment.init_params(jax.random.key(0), D, jnp.float32)
    good = jnp.arange(8) % 4
    mixture = priors.logistic_mixture(2)
    assert np.isfinite(nica.log_likelihood(params, XJ, prior=segment, prior_params=theta, u=good)).all()
    assert nica.log_likelihood(
        params, XJ, prior=mixture, prior_params=mixture.init_params(jax.random.key(0), D, jnp.float32)
    ).shape == (8,)
    for kwargs, error, match in prior_argument_cases(segment, theta, good):
        with pytest.raises(error, match=match.format(fn="log_likelihood")):
            nica.log_likelihood(params, XJ, **kwargs)


# ---------------------------------------------------------------------------------------------
# random arrays


def core_refusal(data, name):
    """The error the core must raise for ``data`` against float32 parameters of 3 features, as
    ``(type, message)``, or None when ``data`` is valid (the checks' order: numbers, 2-D, width,
    floating, dtype)."""
    kind = data.dtype.kind
    if kind not in "biufc":
        return TypeError, f"{name} must be a floating-point array; got dtype {data.dtype}"
    if data.ndim != 2:
        return ValueError, f"{name} must be 2-D with shape (n_samples, 3); got shape {data.shape}"
    if data.shape[1] != 3:
        return ValueError, f"{name} has {data.shape[1]} features but the network expects 3"
    if kind != "f":
        return TypeError, f"{name} must be a floating-point array; got dtype {data.dtype}"
    if data.dtype != np.float32:
        return TypeError, f"{name} has dtype {data.dtype} but the parameters are float32"
    return None


@FUZZ
@given(data=arrays([(2, D), (2, D), (0, D), (2, D - 1), (D,), (2, D, 1)], max_abs=1e3))
def test_core_functions_on_random_arrays(data):
    """The predicted error naming the argument, or (float32 data for float32 parameters) a result
    whose rows are finite wherever the input rows are: values are not inspected, NaN propagates
    only to its row."""
    params = nica.init_params(jax.random.key(0), D, 2, dtype=jnp.float32)
    for fn, name in (
        (nica.forward, "X"),
        (nica.inverse, "S"),
        (nica.log_likelihood, "X"),
        (nica.forward_and_log_det, "X"),
    ):
        refusal = core_refusal(data, name)
        if refusal is not None:
            with pytest.raises(refusal[0], match=re.escape(refusal[1])):
                fn(params, data)
            continue
        rows_ok = np.isfinite(data).all(axis=1)
        for out in jax.tree_util.tree_leaves(fn(params, data)):
            assert out.shape[0] == data.shape[0] and np.isfinite(np.asarray(out)[rows_ok]).all()
