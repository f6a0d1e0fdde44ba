"""Activations (``nica/_src/activations.py``) against closed forms and autodiff.

The property tests run on every registered activation (``activations.names()``, each built by
``activations.get(name)``), so a newly registered one is held to the same oracles, and on two
non-default hyperparameters (a small slope makes the inverse's Newton iteration work hardest).
"""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from support import UnhashableActivation

from nica import activations

ACTIVATIONS = [pytest.param(activations.get(name), id=name) for name in activations.names()] + [
    pytest.param(activations.smooth_leaky_relu(alpha=0.05), id="smooth_leaky_relu-alpha-0.05"),
    pytest.param(activations.tanh_linear(beta=0.01), id="tanh_linear-beta-0.01"),
]
WIDE = np.concatenate([-np.logspace(-6, 4, 300), [0.0], np.logspace(-6, 4, 300)])


@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_inverse_round_trip_over_a_wide_range(act, dtype):
    x = jnp.asarray(WIDE, dtype)
    y = act.fn(x)
    x_back = act.inverse(y)
    assert y.dtype == dtype and x_back.dtype == dtype
    assert bool(jnp.all(jnp.isfinite(y))) and bool(jnp.all(jnp.isfinite(x_back)))
    eps = float(jnp.finfo(dtype).eps)
    # Converged to floating-point tolerance: a few ulps of σ(x), mapped back through 1/σ'.
    slope = np.exp(np.asarray(act.log_derivative(x), np.float64))
    tol = 8 * eps * np.maximum(1.0, np.abs(np.asarray(y, np.float64))) / slope
    assert np.all(np.abs(np.asarray(x_back, np.float64) - WIDE.astype(dtype)) <= tol)
    np.testing.assert_allclose(act.fn(x_back), y, rtol=8 * eps, atol=8 * eps)


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_log_derivative_matches_autodiff(act):
    x = jnp.linspace(-30.0, 30.0, 2001)
    x = x[jnp.abs(x) > 1e-9]  # leaky_relu has a kink at 0
    expected = jnp.log(jax.vmap(jax.grad(act.fn))(x))
    np.testing.assert_allclose(act.log_derivative(x), expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(act.derivative(x), jnp.exp(expected), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("alpha", [0.3, 0.05])
def test_smooth_leaky_relu_derivatives_are_the_closed_forms_at_zero_too(alpha):
    """Autodiff of ``σ`` and of ``log σ'`` against ``σ' = α + (1 − α)·s`` and
    ``(log σ')' = (1 − α)·s(1 − s) / σ'`` (``s`` the logistic sigmoid), at 0 exactly as well:
    both are written with ``|x|`` and ``max(x, 0)``, whose kinks at 0 must cancel."""
    act = activations.smooth_leaky_relu(alpha)
    x = jnp.concatenate([jnp.linspace(-40.0, 40.0, 1601), jnp.array([0.0, -0.0, 1e-300, -1e-300])])
    s = 1.0 / (1.0 + np.exp(-np.asarray(x)))
    slope = alpha + (1 - alpha) * s
    np.testing.assert_allclose(jax.vmap(jax.grad(act.fn))(x), slope, rtol=1e-13)
    e = np.exp(-np.abs(np.asarray(x)))  # s(1 − s) = e / (1 + e)², accurate in both tails
    np.testing.assert_allclose(
        jax.vmap(jax.grad(act.log_derivative))(x), (1 - alpha) * e / (1 + e) ** 2 / slope, rtol=1e-12
    )
    np.testing.assert_allclose(act.fn(x), alpha * x + (1 - alpha) * np.logaddexp(0.0, np.asarray(x)), rtol=1e-14)


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_log_derivative_is_finite_in_float32_far_out(act):
    x = jnp.asarray(WIDE, jnp.float32)
    ld = act.log_derivative(x)
    assert ld.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(ld)))


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_activation_is_strictly_increasing(act):
    x = jnp.linspace(-50.0, 50.0, 10001)
    assert bool(jnp.all(jnp.diff(act.fn(x)) > 0))
    np.testing.assert_array_equal(act(x), act.fn(x))  # calling the object is fn


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_activations_are_hashable_and_jit_static(act):
    """Equal settings hash equal (a static argument of jit compiles once), and the inverse runs
    under jit with the activation as a static argument."""
    twin = copy.deepcopy(act)
    assert twin is not act and twin == act and hash(twin) == hash(act)
    f = jax.jit(lambda x, a: a.inverse(x), static_argnums=1)
    np.testing.assert_allclose(f(act.fn(jnp.array([1.5])), act), [1.5], rtol=1e-12)


def test_activation_closed_forms():
    x = np.linspace(-5, 5, 11)
    np.testing.assert_allclose(activations.smooth_leaky_relu(0.3).fn(x), 0.3 * x + 0.7 * np.log1p(np.exp(x)))
    np.testing.assert_allclose(activations.tanh_linear(0.1).fn(x), np.tanh(x) + 0.1 * x)
    np.testing.assert_allclose(activations.leaky_relu(0.2).fn(x), np.where(x >= 0, x, 0.2 * x))
    np.testing.assert_allclose(activations.leaky_relu(0.2).inverse(np.where(x >= 0, x, 0.2 * x)), x)
    assert activations.get("tanh_linear") == activations.TanhLinear(beta=0.1)  # the registered defaults
    assert activations.get("smooth_leaky_relu") == activations.SmoothLeakyReLU(alpha=0.3)
    assert activations.get("leaky_relu") == activations.LeakyReLU(slope=0.2)


# ---------------------------------------------------------------------------------------------
# bad arguments


@pytest.mark.parametrize(
    "factory, kwargs, error, match",
    [
        (
            activations.smooth_leaky_relu,
            {"alpha": "0.3"},
            TypeError,
            r"alpha must be a number in \(0.0, 1.0\); got '0.3'",
        ),
        (activations.smooth_leaky_relu, {"alpha": [0.3]}, TypeError, r"smooth_leaky_relu: alpha must be a number in"),
        (activations.smooth_leaky_relu, {"alpha": 1.0}, ValueError, r"alpha must be a number in \(0.0, 1.0\); got 1.0"),
        (activations.smooth_leaky_relu, {"alpha": 1.5}, ValueError, r"alpha must be a number in \(0.0, 1.0\); got 1.5"),
        (
            activations.tanh_linear,
            {"beta": float("inf")},
            ValueError,
            "tanh_linear: beta must be a finite number > 0.0; got inf",
        ),
        (activations.tanh_linear, {"beta": float("nan")}, ValueError, "beta must be a finite number > 0.0; got nan"),
        (activations.tanh_linear, {"beta": 0.0}, ValueError, "beta must be a finite number > 0.0; got 0.0"),
        (activations.leaky_relu, {"slope": True}, TypeError, "slope must be a finite number > 0.0; got True"),
        (
            activations.leaky_relu,
            {"slope": None},
            TypeError,
            r"leaky_relu \(invertible only with a positive slope\): slope",
        ),
        (activations.leaky_relu, {"slope": 0.0}, ValueError, "slope must be a finite number > 0.0; got 0.0"),
        (activations.leaky_relu, {"slope": -1.0}, ValueError, "slope must be a finite number > 0.0; got -1.0"),
        (activations.LeakyReLU, {"slope": -1.0}, ValueError, "slope must be a finite number > 0.0; got -1.0"),
        (activations.get, {"activation": None}, TypeError, "activation must be a string in"),
        (
            activations.get,
            {"activation": "relu"},
            ValueError,
            r"Unknown activation 'relu'; expected one of \[.*'leaky_relu'",
        ),
        (activations.get, {"activation": activations.tanh_linear}, TypeError, "got the function tanh_linear: call it"),
        (activations.get, {"activation": activations.SmoothLeakyReLU}, TypeError, "got the class SmoothLeakyReLU"),
        (
            activations.get,
            {"activation": UnhashableActivation()},
            TypeError,
            "activation UnhashableActivation is not hashable",
        ),
    ],
)
def test_factories_and_get_refuse_bad_arguments(factory, kwargs, error, match):
    with pytest.raises(error, match=match):
        factory(**kwargs)


def test_an_activation_without_an_inverse_cannot_be_built():
    class NoInverse(activations.Activation):
        def fn(self, x):
            return x

        def log_derivative(self, x):
            return jnp.zeros_like(x)

    with pytest.raises(TypeError, match="Can't instantiate abstract class NoInverse"):
        NoInverse()
