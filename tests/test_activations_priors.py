"""Activations and priors against closed forms, autodiff and numerical integration."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from nica import activations, priors

ACTIVATIONS = [activations.smooth_leaky_relu(), activations.tanh_linear(), activations.leaky_relu(),
               activations.smooth_leaky_relu(alpha=0.05), activations.tanh_linear(beta=0.01)]
PRIORS = [priors.gaussian(), priors.laplace(), priors.logistic(), priors.hypsecant()]
WIDE = np.concatenate([-np.logspace(-6, 4, 300), [0.0], np.logspace(-6, 4, 300)])


@pytest.mark.parametrize("act", ACTIVATIONS, ids=repr)
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


@pytest.mark.parametrize("act", ACTIVATIONS, ids=repr)
def test_log_derivative_matches_autodiff(act):
    x = jnp.linspace(-30.0, 30.0, 2001)
    x = x[jnp.abs(x) > 1e-9]  # leaky_relu has a kink at 0
    expected = jnp.log(jax.vmap(jax.grad(act.fn))(x))
    np.testing.assert_allclose(act.log_derivative(x), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("act", ACTIVATIONS, ids=repr)
def test_log_derivative_is_finite_in_float32_far_out(act):
    x = jnp.asarray(WIDE, jnp.float32)
    ld = act.log_derivative(x)
    assert ld.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(ld)))


@pytest.mark.parametrize("act", ACTIVATIONS, ids=repr)
def test_activation_is_strictly_increasing(act):
    x = jnp.linspace(-50.0, 50.0, 10001)
    assert bool(jnp.all(jnp.diff(act.fn(x)) > 0))


def test_activation_closed_forms():
    x = np.linspace(-5, 5, 11)
    np.testing.assert_allclose(activations.smooth_leaky_relu(0.3).fn(x), 0.3 * x + 0.7 * np.log1p(np.exp(x)))
    np.testing.assert_allclose(activations.tanh_linear(0.1).fn(x), np.tanh(x) + 0.1 * x)
    np.testing.assert_allclose(activations.leaky_relu(0.2).fn(x), np.where(x >= 0, x, 0.2 * x))
    np.testing.assert_allclose(activations.leaky_relu(0.2).inverse(np.where(x >= 0, x, 0.2 * x)), x)


@pytest.mark.parametrize("factory, kw", [(activations.smooth_leaky_relu, {"alpha": 1.5}),
                                          (activations.tanh_linear, {"beta": 0.0}),
                                          (activations.leaky_relu, {"slope": -1.0})])
def test_activation_hyperparameters_validated(factory, kw):
    with pytest.raises(ValueError, match=next(iter(kw))):
        factory(**kw)


def test_activations_are_hashable_and_jit_static():
    act = activations.tanh_linear(0.2)
    assert hash(act) == hash(activations.tanh_linear(0.2))
    f = jax.jit(lambda x, a: a.inverse(x), static_argnums=1)
    np.testing.assert_allclose(f(act.fn(jnp.array([1.5])), act), [1.5], rtol=1e-12)


# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prior", PRIORS, ids=repr)
def test_prior_integrates_to_one_with_stated_variance(prior):
    density = lambda s: math.exp(float(prior.log_density(jnp.asarray(s))))  # noqa: E731
    mass, _ = integrate.quad(density, -np.inf, np.inf)
    second, _ = integrate.quad(lambda s: s * s * density(s), -np.inf, np.inf)
    assert mass == pytest.approx(1.0, abs=1e-8)
    assert second == pytest.approx(prior.variance, rel=1e-7)


def test_prior_variances_follow_spec():
    assert [p.variance for p in PRIORS] == [1.0, 1.0, pytest.approx(math.pi**2 / 3), 1.0]


@pytest.mark.parametrize("prior", PRIORS, ids=repr)
def test_score_matches_autodiff(prior):
    s = jnp.linspace(-40.0, 40.0, 801)
    s = s[jnp.abs(s) > 1e-9]  # Laplace is not differentiable at 0
    np.testing.assert_allclose(prior.score(s), jax.vmap(jax.grad(prior.log_density))(s), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("prior", PRIORS, ids=repr)
def test_log_density_is_stable_far_out(prior):
    s = jnp.asarray(WIDE * 10, jnp.float32)
    ld = prior.log_density(s)
    assert ld.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(ld)))


# The densities of docs/theory.rst ('Priors') as scipy.stats distributions: an independent oracle.
SCIPY_EQUIVALENT = {
    "gaussian": stats.norm(),
    "laplace": stats.laplace(scale=1 / math.sqrt(2)),
    "logistic": stats.logistic(),
    "hypsecant": stats.hypsecant(scale=2 / math.pi),  # ½ sech(πs/2)
}


@pytest.mark.parametrize("prior", PRIORS, ids=repr)
def test_log_density_matches_scipy(prior):
    s = np.linspace(-60.0, 60.0, 1201)
    np.testing.assert_allclose(prior.log_density(jnp.asarray(s)), SCIPY_EQUIVALENT[prior.name].logpdf(s),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("prior", PRIORS, ids=repr)
def test_samples_follow_the_density(prior):
    draws = np.asarray(prior.sample(jax.random.key(0), (20000,), jnp.float64))
    reference = SCIPY_EQUIVALENT[prior.name]
    assert stats.kstest(draws, reference.cdf).pvalue > 1e-3
    assert np.var(draws) == pytest.approx(prior.variance, rel=0.06)


@pytest.mark.parametrize("prior", PRIORS, ids=repr)
def test_float32_samples_are_finite(prior):
    draws = prior.sample(jax.random.key(1), (100000,), jnp.float32)
    assert draws.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(draws)))


def test_log_prob_sums_components():
    S = jnp.asarray(np.random.default_rng(0).standard_normal((6, 4)))
    for prior in PRIORS:
        lp = prior.log_prob(S)
        assert lp.shape == (6,)
        np.testing.assert_allclose(lp, jnp.sum(prior.log_density(S), axis=1))
