"""Priors (``nica/_src/priors.py``): the fixed factorized densities and the learned logistic
mixture, against quadrature, autodiff, finite differences, SciPy's closed forms and
Kolmogorov–Smirnov tests of their samplers.

The property tests run on every registered prior (``priors.names()``, each built by
``priors.get(name)``), through the parametrised interface every prior provides
(``init_params``, ``param_log_density``, ``conditional_sample``), so the learned density is
checked at its initial parameters and a newly registered prior is held to the same oracles.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from nica import priors

PRIORS = priors.names()
WIDE = np.concatenate([-np.logspace(-6, 4, 300), [0.0], np.logspace(-6, 4, 300)])
GRID = np.linspace(-60.0, 60.0, 240001)  # the densities' mass outside is below 1e-20


def one_component(name, dtype=jnp.float64):
    """The prior ``name`` and its initial parameters for one component."""
    prior = priors.get(name)
    return prior, prior.init_params(jax.random.key(0), 1, dtype)


def density(prior, theta, s):
    """``p(s)`` of the single component at the points ``s`` (NumPy, float64)."""
    s = jnp.asarray(np.asarray(s, np.float64))[..., None]
    return np.exp(np.asarray(prior.param_log_density(theta, s))[..., 0])


@pytest.mark.parametrize("name", PRIORS)
def test_density_integrates_to_one_with_the_stated_variance(name):
    prior, theta = one_component(name)
    p = lambda s: float(density(prior, theta, s))  # noqa: E731
    mass, _ = integrate.quad(p, -np.inf, np.inf, limit=200)
    second, _ = integrate.quad(lambda s: s * s * p(s), -np.inf, np.inf, limit=200)
    assert mass == pytest.approx(1.0, abs=1e-8)
    assert second == pytest.approx(prior.variance, rel=1e-7)


@pytest.mark.parametrize("name", PRIORS)
def test_score_matches_autodiff(name):
    """The closed-form score of a fixed density is autodiff's; a learned density refuses the
    parameter-free ``score`` (its parameters live outside the object)."""
    prior, theta = one_component(name)
    s = jnp.linspace(-40.0, 40.0, 801)
    s = s[jnp.abs(s) > 1e-9]  # Laplace is not differentiable at 0
    if isinstance(prior, priors.LearnedPrior):
        with pytest.raises(TypeError, match=rf"{type(prior).__name__} has learned parameters: score\(s\) needs them"):
            prior.score(s)
        return
    np.testing.assert_allclose(prior.score(s), jax.vmap(jax.grad(prior.log_density))(s), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", PRIORS)
def test_log_density_is_stable_far_out_in_float32(name):
    prior, theta = one_component(name, jnp.float32)
    ld = prior.param_log_density(theta, jnp.asarray(WIDE * 10, jnp.float32)[:, None])
    assert ld.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(ld)))


@pytest.mark.parametrize("name", PRIORS)
def test_samples_follow_the_density(name):
    """Kolmogorov–Smirnov against the CDF integrated from the density itself (the density is
    checked against SciPy below), and the stated variance."""
    prior, theta = one_component(name)
    draws = np.asarray(prior.conditional_sample(theta, jax.random.key(0), jnp.zeros((20000, 0)), 1, jnp.float64))
    assert draws.shape == (20000, 1) and draws.dtype == np.float64
    cdf = integrate.cumulative_trapezoid(density(prior, theta, GRID), GRID, initial=0.0)
    assert stats.kstest(draws[:, 0], lambda x: np.interp(x, GRID, cdf / cdf[-1])).pvalue > 1e-3
    assert np.var(draws) == pytest.approx(prior.variance, rel=0.06)


@pytest.mark.parametrize("name", PRIORS)
def test_float32_samples_are_finite(name):
    prior, theta = one_component(name, jnp.float32)
    draws = prior.conditional_sample(theta, jax.random.key(1), jnp.zeros((100000, 0)), 1, jnp.float32)
    assert draws.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(draws)))


@pytest.mark.parametrize("name", PRIORS)
def test_log_prob_sums_components(name):
    prior = priors.get(name)
    theta = prior.init_params(jax.random.key(0), 4, jnp.float64)
    S = jnp.asarray(np.random.default_rng(0).standard_normal((6, 4)))
    lp = prior.conditional_log_prob(theta, S)
    assert lp.shape == (6,)
    np.testing.assert_allclose(lp, jnp.sum(prior.param_log_density(theta, S), axis=1))
    if not isinstance(prior, priors.LearnedPrior):
        np.testing.assert_array_equal(prior.log_prob(S), lp)  # the parameter-free form agrees


# The densities of docs/theory.rst ('Priors') as scipy.stats distributions: an independent oracle.
SCIPY_EQUIVALENT = {
    "gaussian": stats.norm(),
    "laplace": stats.laplace(scale=1 / math.sqrt(2)),
    "logistic": stats.logistic(),
    "hypsecant": stats.hypsecant(scale=2 / math.pi),  # ½ sech(πs/2)
}


@pytest.mark.parametrize("name", list(SCIPY_EQUIVALENT))
def test_log_density_matches_scipy(name):
    s = np.linspace(-60.0, 60.0, 1201)
    np.testing.assert_allclose(
        priors.get(name).log_density(jnp.asarray(s)), SCIPY_EQUIVALENT[name].logpdf(s), rtol=1e-12, atol=1e-12
    )


def test_prior_variances_follow_spec():
    assert [priors.get(n).variance for n in ("gaussian", "laplace", "logistic", "hypsecant")] == [
        1.0,
        1.0,
        pytest.approx(math.pi**2 / 3),
        1.0,
    ]


# ---------------------------------------------------------------------------------------------
# the learned density: oracles written here in NumPy/SciPy from its formula


def random_mixture_params(rng, n_components, n_mixtures):
    return {
        "logits": rng.normal(size=(n_components, n_mixtures)),
        "loc": rng.normal(scale=1.5, size=(n_components, n_mixtures)),
        "log_scale": rng.normal(scale=0.5, size=(n_components, n_mixtures)),
    }


def numpy_mixture_pdf(theta, s, i):
    """Density of source ``i`` at the points ``s``, straight from the formula."""
    w = np.exp(theta["logits"][i] - np.max(theta["logits"][i]))
    w /= w.sum()
    scale = np.exp(theta["log_scale"][i])
    return sum(w[k] * stats.logistic.pdf(s, loc=theta["loc"][i, k], scale=scale[k]) for k in range(w.size))


def numpy_mixture_cdf(theta, s, i):
    w = np.exp(theta["logits"][i] - np.max(theta["logits"][i]))
    w /= w.sum()
    scale = np.exp(theta["log_scale"][i])
    return sum(w[k] * stats.logistic.cdf(s, loc=theta["loc"][i, k], scale=scale[k]) for k in range(w.size))


def as_jax(theta):
    return {k: jnp.asarray(v) for k, v in theta.items()}


@given(seed=st.integers(0, 2**31 - 1), n_mixtures=st.integers(1, 5))
@settings(max_examples=6, deadline=None, derandomize=True)
def test_logistic_mixture_matches_its_formula_and_integrates_to_one(seed, n_mixtures):
    rng = np.random.default_rng(seed)
    theta = random_mixture_params(rng, 2, n_mixtures)
    prior = priors.logistic_mixture(n_mixtures)
    s = rng.normal(scale=3.0, size=(50, 2))
    log_density = np.asarray(prior.param_log_density(as_jax(theta), jnp.asarray(s)))
    total = np.asarray(prior.conditional_log_prob(as_jax(theta), jnp.asarray(s)))
    for i in range(2):
        np.testing.assert_allclose(
            np.exp(log_density[:, i]), numpy_mixture_pdf(theta, s[:, i], i), rtol=1e-9, atol=1e-300
        )
        mass, _ = integrate.quad(lambda x: numpy_mixture_pdf(theta, np.array([x]), i)[0], -np.inf, np.inf, limit=200)
        assert mass == pytest.approx(1.0, abs=1e-7)
        mass_model, _ = integrate.quad(
            lambda x: float(jnp.exp(prior.param_log_density(as_jax(theta), jnp.full((1, 2), x))[0, i])),
            -np.inf,
            np.inf,
            limit=200,
        )
        assert mass_model == pytest.approx(1.0, abs=1e-7)
    np.testing.assert_allclose(total, log_density.sum(axis=1), rtol=1e-12)


def test_logistic_mixture_gradients_match_finite_differences():
    rng = np.random.default_rng(0)
    theta = random_mixture_params(rng, 3, 3)
    prior = priors.logistic_mixture(3)
    S = rng.normal(size=(7, 3))

    def f(th, S):
        return jnp.sum(prior.conditional_log_prob(th, S))

    g_theta, g_S = jax.grad(f, argnums=(0, 1))(as_jax(theta), jnp.asarray(S))
    eps = 1e-6
    for name in theta:
        for idx in [(0, 0), (1, 2), (2, 1)]:
            plus = {k: v.copy() for k, v in theta.items()}
            minus = {k: v.copy() for k, v in theta.items()}
            plus[name][idx] += eps
            minus[name][idx] -= eps
            numeric = (float(f(as_jax(plus), jnp.asarray(S))) - float(f(as_jax(minus), jnp.asarray(S)))) / (2 * eps)
            assert float(g_theta[name][idx]) == pytest.approx(numeric, rel=1e-6, abs=1e-8)
    for idx in [(0, 0), (3, 1), (6, 2)]:
        plus, minus = S.copy(), S.copy()
        plus[idx] += eps
        minus[idx] -= eps
        numeric = (float(f(as_jax(theta), jnp.asarray(plus))) - float(f(as_jax(theta), jnp.asarray(minus)))) / (2 * eps)
        assert float(g_S[idx]) == pytest.approx(numeric, rel=1e-6, abs=1e-8)


def test_logistic_mixture_samples_follow_the_density():
    rng = np.random.default_rng(1)
    theta = random_mixture_params(rng, 3, 4)
    prior = priors.logistic_mixture(4)
    draws = np.asarray(
        prior.conditional_sample(as_jax(theta), jax.random.key(0), jnp.zeros((20000, 0)), 3, jnp.float64)
    )
    assert draws.shape == (20000, 3) and draws.dtype == np.float64
    for i in range(3):
        result = stats.kstest(draws[:, i], lambda x: numpy_mixture_cdf(theta, x, i))
        assert result.pvalue > 1e-3
    # and a wrong density is rejected by the same test (the test has power)
    wrong = {k: v.copy() for k, v in theta.items()}
    wrong["loc"] = wrong["loc"] + 0.3
    assert stats.kstest(draws[:, 0], lambda x: numpy_mixture_cdf(wrong, x, 0)).pvalue < 1e-3


def test_logistic_mixture_initial_shape_has_unit_variance():
    prior = priors.logistic_mixture(5)
    theta = {k: np.asarray(v) for k, v in prior.init_params(jax.random.key(0), 2, jnp.float64).items()}
    mean, _ = integrate.quad(lambda x: x * numpy_mixture_pdf(theta, np.array([x]), 0)[0], -np.inf, np.inf)
    var, _ = integrate.quad(lambda x: x**2 * numpy_mixture_pdf(theta, np.array([x]), 0)[0], -np.inf, np.inf)
    assert mean == pytest.approx(0.0, abs=1e-8) and var == pytest.approx(1.0, rel=1e-6)


def test_learned_prior_refuses_parameter_free_calls():
    prior = priors.logistic_mixture()
    for call, what in [
        (lambda: prior.log_prob(jnp.zeros((2, 2))), r"log_prob\(S\)"),
        (lambda: prior.log_density(jnp.zeros(2)), r"log_density\(s\)"),
        (lambda: prior.sample(jax.random.key(0), (2, 2)), r"sample\(key, shape\)"),
    ]:
        with pytest.raises(TypeError, match=rf"LogisticMixture has learned parameters: {what} needs them"):
            call()
    assert priors.get("logistic_mixture") == priors.logistic_mixture() == priors.LogisticMixture(n_mixtures=4)
    assert hash(prior) == hash(priors.logistic_mixture(4))  # frozen: usable as a static argument of jit


# ---------------------------------------------------------------------------------------------
# bad arguments


class _Incomplete(priors.Prior):
    """A custom prior that defines no density."""


class _NoSampler(priors.Prior):
    """A custom prior with a density but no ``_standard_sample``."""

    def log_density(self, s):
        return -0.5 * s**2 - 0.5 * math.log(2 * math.pi)


@pytest.mark.parametrize(
    "factory, kwargs, error, match",
    [
        (priors.logistic_mixture, {"n_mixtures": 2.0}, ValueError, "n_mixtures must be an integer >= 1; got 2.0"),
        (priors.logistic_mixture, {"n_mixtures": 0}, ValueError, "n_mixtures must be an integer >= 1; got 0"),
        (priors.LogisticMixture, {"n_mixtures": 0}, ValueError, "n_mixtures must be an integer >= 1; got 0"),
        (priors.get, {"prior": None}, TypeError, r"prior must be a string in \[.*'gaussian'"),
        (priors.get, {"prior": "cauchy"}, ValueError, r"Unknown prior 'cauchy'; expected one of \[.*'laplace'"),
        (priors.get, {"prior": priors.laplace}, TypeError, "got the function laplace: call it"),
        (priors.get, {"prior": priors.segment_conditional}, TypeError, "got the function segment_conditional"),
        (priors.get, {"prior": priors.Laplace}, TypeError, "got the class Laplace"),
        (_Incomplete, {}, TypeError, "Can't instantiate abstract class _Incomplete"),
    ],
)
def test_factories_and_get_refuse_bad_arguments(factory, kwargs, error, match):
    with pytest.raises(error, match=match):
        factory(**kwargs)


def test_prior_methods_refuse_bad_arguments():
    key = jax.random.key(0)
    with pytest.raises(TypeError, match="shape must be a tuple of non-negative integers; got 3"):
        priors.laplace().sample(key, 3)
    with pytest.raises(ValueError, match=r"shape must be a tuple of non-negative integers; got \(2, -1\)"):
        priors.laplace().sample(key, (2, -1))
    with pytest.raises(NotImplementedError, match=r"_NoSampler does not define _standard_sample\(key, shape, dtype\)"):
        _NoSampler().sample(key, (2,))
    mixture = priors.logistic_mixture()
    with pytest.raises(
        TypeError,
        match=r"LogisticMixture needs its prior_params, a dict with keys "
        r"\['loc', 'log_scale', 'logits'\] .*; got tuple",
    ):
        mixture.conditional_log_prob((), jnp.zeros((8, 3)))
    with pytest.raises(ValueError, match=r"u is only used by a conditional prior; prior=Laplace\(\) is factorized"):
        priors.laplace().check_aux(jnp.zeros(8, int))
