"""Conditional priors (``nica/_src/conditional.py``, eq. 4): the segment-conditional and MLP
priors, the label posterior and the segment mixture, against SciPy, quadrature, NumPy loops and
Kolmogorov–Smirnov tests."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oracles import mixture_log_density, random_theta
from scipy import stats
from scipy.integrate import trapezoid
from scipy.special import log_softmax, logsumexp

import nica
from nica import priors

SCIPY_BASE = {
    "gaussian": stats.norm(),
    "laplace": stats.laplace(scale=1 / np.sqrt(2)),
    "logistic": stats.logistic(),
    "hypsecant": stats.hypsecant(scale=2 / np.pi),
}


@pytest.mark.parametrize("base", list(SCIPY_BASE))
def test_segment_conditional_log_prob_matches_scipy(base):
    prior = priors.segment_conditional(base, n_segments=4)
    theta = random_theta(prior, 0, 3)
    S = np.random.default_rng(1).standard_normal((20, 3))
    u = np.arange(20) % 4
    scale, loc = np.exp(np.asarray(theta["log_scale"]))[u], np.asarray(theta["loc"])[u]
    expected = SCIPY_BASE[base].logpdf((S - loc) / scale).sum(axis=1) - np.log(scale).sum(axis=1)
    np.testing.assert_allclose(prior.conditional_log_prob(theta, jnp.asarray(S), jnp.asarray(u)), expected, rtol=1e-12)


@pytest.mark.parametrize("base", priors.names())
def test_every_prior_is_a_base_rescaled_and_shifted_per_segment(base):
    """Any registered factorized prior as the base: ``p(s_i | u) = p_base((s_i − μ_ui)/σ_ui)/σ_ui``
    with the base's own (learned) parameters under ``"base"``, and ``learn_location=False``
    keeps ``μ = 0``."""
    rng = np.random.default_rng(2)
    S = rng.standard_normal((12, 2))
    u = np.arange(12) % 3
    for learn_location in (True, False):
        prior = priors.segment_conditional(base, 3, learn_location=learn_location)
        theta = random_theta(prior, 3, 2)
        base_prior = priors.get(base)
        assert ("base" in theta) == bool(jax.tree_util.tree_leaves(base_prior.init_params(jax.random.key(0), 2)))
        scale = np.exp(np.asarray(theta["log_scale"]))[u]
        loc = np.asarray(theta["loc"])[u] if learn_location else 0.0
        z = jnp.asarray((S - loc) / scale)
        expected = np.asarray(base_prior.conditional_log_prob(theta.get("base", ()), z)) - np.log(scale).sum(axis=1)
        np.testing.assert_allclose(
            prior.conditional_log_prob(theta, jnp.asarray(S), jnp.asarray(u)), expected, rtol=1e-12
        )


def test_mlp_conditional_is_a_normalized_density_for_every_u():
    prior = priors.mlp_conditional("logistic", n_aux=2, hidden_units=5)
    theta = random_theta(prior, 2, 1)
    s = np.linspace(-60, 60, 20001)
    for u in [(0.0, 0.0), (1.5, -2.0), (-3.0, 0.7)]:
        U = jnp.tile(jnp.asarray(u)[None, :], (s.size, 1))
        density = np.exp(np.asarray(prior.conditional_log_prob(theta, jnp.asarray(s)[:, None], U)))
        assert trapezoid(density, s) == pytest.approx(1.0, abs=1e-6)


def test_conditional_sample_follows_the_conditional_density():
    prior = priors.segment_conditional("hypsecant", n_segments=3)
    theta = random_theta(prior, 3, 2)
    u = jnp.full((30000,), 2, jnp.int32)
    draws = np.asarray(prior.conditional_sample(theta, jax.random.key(0), u, 2, jnp.float64))
    scale, loc = np.exp(np.asarray(theta["log_scale"][2])), np.asarray(theta["loc"][2])
    for i in range(2):
        reference = stats.hypsecant(loc=loc[i], scale=scale[i] * 2 / np.pi)
        assert stats.kstest(draws[:, i], reference.cdf).pvalue > 1e-3


def test_conditional_prior_with_a_learned_base_matches_its_formula():
    """eq. (4) with a learned shape: p(s_i | u) = p_base((s_i − μ_ui)/σ_ui)/σ_ui."""
    rng = np.random.default_rng(2)
    prior = priors.segment_conditional(priors.logistic_mixture(3), 4)
    theta = prior.init_params(jax.random.key(0), 2, jnp.float64)
    assert set(theta) == {"log_scale", "loc", "base"}
    base = {
        "logits": rng.normal(size=(2, 3)),
        "loc": rng.normal(scale=1.5, size=(2, 3)),
        "log_scale": rng.normal(scale=0.5, size=(2, 3)),
    }
    theta = {
        "log_scale": jnp.asarray(rng.normal(scale=0.3, size=(4, 2))),
        "loc": jnp.asarray(rng.normal(size=(4, 2))),
        "base": {k: jnp.asarray(v) for k, v in base.items()},
    }
    S = rng.normal(size=(30, 2))
    u = rng.integers(0, 4, size=30)
    got = np.asarray(prior.conditional_log_prob(theta, jnp.asarray(S), jnp.asarray(u)))
    draws = prior.conditional_sample(theta, jax.random.key(1), jnp.zeros(500, jnp.int32), 2, jnp.float64)
    ls, loc = np.asarray(theta["log_scale"])[u], np.asarray(theta["loc"])[u]
    z = (S - loc) / np.exp(ls)
    expected = (mixture_log_density(base, z) - ls).sum(axis=1)
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    assert draws.shape == (500, 2) and np.all(np.isfinite(np.asarray(draws)))


@pytest.mark.parametrize("n_components", [3, 40])  # summed per component, and broadcast (above 32)
def test_label_log_posterior_matches_scipy(n_components):
    rng = np.random.default_rng(2)
    theta = {
        "log_scale": jnp.asarray(0.5 * rng.standard_normal((3, n_components))),
        "loc": jnp.asarray(0.5 * rng.standard_normal((3, n_components))),
    }
    S = np.random.default_rng(3).laplace(size=(6, n_components))
    prior = priors.segment_conditional("laplace", 3)
    got = prior.label_log_posterior(theta, jnp.asarray(S))
    scale, loc = np.exp(np.asarray(theta["log_scale"])), np.asarray(theta["loc"])
    per_segment = np.stack(
        [stats.laplace.logpdf(S, loc[m], scale[m] / np.sqrt(2)).sum(axis=1) for m in range(3)], axis=1
    )
    np.testing.assert_allclose(got, log_softmax(per_segment, axis=1), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        prior.marginal_log_prob(theta, jnp.asarray(S)), logsumexp(per_segment, axis=1) - np.log(3), rtol=1e-10
    )


BASES = ["gaussian", "laplace", "logistic", "hypsecant", "logistic_mixture"]


@settings(max_examples=8, deadline=None, derandomize=True)
@given(
    n_segments=st.sampled_from([1, 3]),
    base=st.sampled_from(BASES),
    learn_location=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_marginal_log_prob_is_the_mixture_over_segments(n_segments, base, learn_location, seed):
    """``marginal_log_prob`` against a loop over the segments in NumPy and SciPy:
    ``log Σ_u π_u Π_i p_base((s_i − μ_ui)/σ_ui)/σ_ui``."""
    n_samples, n_components = 5, 2  # few shapes: each new shape compiles anew
    prior = priors.segment_conditional(base, n_segments, learn_location=learn_location)
    theta = random_theta(prior, seed, n_components)
    rng = np.random.default_rng(seed)
    S = 2.0 * rng.standard_normal((n_samples, n_components))
    log_weights = np.log(rng.dirichlet(np.ones(n_segments)))
    th = jax.tree_util.tree_map(np.asarray, theta)
    per_segment = []
    for k in range(n_segments):
        log_scale = th["log_scale"][k]
        z = (S - (th["loc"][k] if learn_location else 0.0)) / np.exp(log_scale)
        log_base = mixture_log_density(th["base"], z) if base == "logistic_mixture" else SCIPY_BASE[base].logpdf(z)
        per_segment.append((log_base - log_scale).sum(axis=1))
    per_segment = np.stack(per_segment)
    expected = logsumexp(per_segment + log_weights[:, None], axis=0)
    np.testing.assert_allclose(
        prior.marginal_log_prob(theta, jnp.asarray(S), jnp.asarray(log_weights)), expected, rtol=1e-10
    )
    equal_weights = logsumexp(per_segment, axis=0) - np.log(n_segments)
    np.testing.assert_allclose(prior.marginal_log_prob(theta, jnp.asarray(S)), equal_weights, rtol=1e-10)


def test_the_marginal_likelihood_from_one_forward_pass():
    """``marginal_log_prob`` plus ``forward_and_log_det``'s log-determinant is the mixture of the
    conditional log-likelihoods, ``log Σ_u π_u p(x | u)``, each from ``log_likelihood``."""
    rng = np.random.default_rng(2)
    params = tuple(
        nica.Layer(
            jnp.asarray(np.eye(3) + 0.4 * rng.standard_normal((3, 3))), jnp.asarray(0.5 * rng.standard_normal(3))
        )
        for _ in range(2)
    )
    X = jnp.asarray(rng.laplace(size=(7, 3)))
    prior = priors.segment_conditional("laplace", 3)
    theta = random_theta(prior, 5, 3)
    log_weights = np.log([0.2, 0.5, 0.3])
    S, log_det = nica.forward_and_log_det(params, X, activation="tanh_linear")
    conditional = [
        nica.log_likelihood(
            params, X, activation="tanh_linear", prior=prior, prior_params=theta, u=jnp.full(X.shape[0], k)
        )
        for k in range(3)
    ]
    expected = logsumexp(np.stack(conditional) + log_weights[:, None], axis=0)
    np.testing.assert_allclose(prior.marginal_log_prob(theta, S, log_weights) + log_det, expected, rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# bad arguments


@pytest.mark.parametrize(
    "factory, kwargs, error, match",
    [
        (priors.segment_conditional, {"n_segments": True}, ValueError, "n_segments must be an integer >= 1; got True"),
        (priors.segment_conditional, {"n_segments": 0}, ValueError, "n_segments must be an integer >= 1; got 0"),
        (priors.segment_conditional, {"learn_location": "no"}, TypeError, "learn_location must be a bool; got 'no'"),
        (
            priors.segment_conditional,
            {"base": priors.segment_conditional()},
            ValueError,
            "base must be a factorized prior family; got the conditional SegmentConditional",
        ),
        (priors.segment_conditional, {"base": "cauchy"}, ValueError, "Unknown prior 'cauchy'"),
        (
            priors.SegmentConditional,
            {"base": "laplace", "n_segments": 2},
            TypeError,
            "base must be an nica.priors object; got str",
        ),
        (priors.mlp_conditional, {"n_aux": 0}, ValueError, "n_aux must be an integer >= 1; got 0"),
        (priors.mlp_conditional, {"hidden_units": "32"}, ValueError, "hidden_units must be an integer >= 1; got '32'"),
        (
            priors.mlp_conditional,
            {"base": priors.mlp_conditional()},
            ValueError,
            "base must be a factorized prior family; got the conditional MLPConditional",
        ),
    ],
)
def test_factories_refuse_bad_arguments(factory, kwargs, error, match):
    with pytest.raises(error, match=match):
        factory(**kwargs)


def test_numpy_integer_counts_are_accepted():
    assert priors.segment_conditional("laplace", np.int64(3)).n_segments == 3
    assert priors.mlp_conditional("laplace", np.int64(2), hidden_units=np.int64(4)).hidden_units == 4


def test_conditional_priors_refuse_parameter_free_calls_and_need_u():
    segment = priors.segment_conditional("laplace", 3)
    for call, what in [
        (lambda: segment.log_prob(jnp.zeros((2, 2))), r"log_prob\(S\)"),
        (lambda: segment.sample(jax.random.key(0), (2, 2)), r"sample\(key, shape\)"),
        (lambda: segment.param_log_density({}, jnp.zeros(2)), r"param_log_density\(prior_params, s\)"),
    ]:
        with pytest.raises(TypeError, match=rf"SegmentConditional depends on u: {what} is not defined"):
            call()
    with pytest.raises(ValueError, match="A conditional prior needs the auxiliary variable u; got None"):
        segment.conditional_log_prob(segment.init_params(jax.random.key(0), 2), jnp.zeros((3, 2)))


def test_prior_methods_refuse_bad_arguments():
    key = jax.random.key(0)
    X = jnp.zeros((8, 3))
    segment = priors.segment_conditional("laplace", 4)
    theta = segment.init_params(key, 3)
    with pytest.raises(
        TypeError, match=r"SegmentConditional needs its prior_params, .*got a dict with keys \['logits'\]"
    ):
        segment.conditional_log_prob({"logits": theta["log_scale"]}, X, jnp.zeros(8, int))
    with pytest.raises(ValueError, match=r"u holds segment ids from 4 to 4, outside \[0, 4\)"):
        segment.conditional_sample(theta, key, jnp.full(8, 4), 3)
    with pytest.raises(ValueError, match=r"S must have shape \(n_samples, n_components\) = \(5, 3\)"):
        segment.conditional_log_prob(theta, X, jnp.zeros(5, int))
    with pytest.raises(TypeError, match="u must be a numeric array; got dtype <U1"):
        segment.conditional_log_prob(theta, X, np.array(["a"] * 8))
    with pytest.raises(
        ValueError,
        match=r"needs u as a 1-D array of integer segment ids in \[0, 4\); got shape \(8,\) "
        r"and dtype float",
    ):
        segment.check_aux(jnp.zeros(8))
    mlp = priors.mlp_conditional("laplace", 2)
    with pytest.raises(
        ValueError,
        match=r"MLPConditional needs u as a real array of shape \(n_samples, 2\); got "
        r"shape \(8, 3\)",
    ):
        mlp.check_aux(jnp.ones((8, 3)))


def test_the_segment_marginal_refuses_bad_weights_and_sources():
    prior = priors.segment_conditional("laplace", 3)
    theta = prior.init_params(jax.random.key(0), 2, jnp.float32)
    S = jnp.zeros((4, 2), jnp.float32)
    with pytest.raises(ValueError, match=r"log_weights must be log-probabilities: exp\(log_weights\) sums to 4.946"):
        prior.marginal_log_prob(theta, S, jnp.array([0.5, 0.5, 0.5]))  # probabilities, not their logs
    with pytest.raises(ValueError, match=r"log_weights must be a float array of shape \(3,\)"):
        prior.marginal_log_prob(theta, S, jnp.log(jnp.array([0.5, 0.5])))
    with pytest.raises(ValueError, match=r"log_weights must be a float array of shape \(3,\).*dtype int"):
        prior.marginal_log_prob(theta, S, np.array([0, 0, 0]))
    with pytest.raises(TypeError, match=r"log_weights must be a float array of shape \(3,\); got dtype <U1"):
        prior.marginal_log_prob(theta, S, np.array(["a", "b", "c"]))
    with pytest.raises(
        ValueError, match=r"S must have shape \(n_samples, 2\) to match prior_params; got shape \(4, 3\)"
    ):
        prior.marginal_log_prob(theta, jnp.zeros((4, 3)))
    with pytest.raises(TypeError, match="SegmentConditional needs its prior_params"):
        prior.marginal_log_prob((), S)
    # a segment of weight zero is allowed, and under jit the values are not checked
    zero = jnp.log(jnp.array([0.0, 0.5, 0.5]))
    np.testing.assert_allclose(
        jax.jit(prior.marginal_log_prob)(theta, S, zero), prior.marginal_log_prob(theta, S, zero)
    )


def test_segment_ids_closed_over_by_a_jitted_function_are_range_checked():
    """Concrete ids that a jitted function closes over are checked as they are, not traced."""
    prior = priors.segment_conditional("laplace", 3)
    u = jnp.array([0, 1, 2, 1])
    assert int(jax.jit(lambda: prior.check_aux(u).sum())()) == 4
    bad = jnp.array([0, 3])
    with pytest.raises(ValueError, match=r"u holds segment ids from 0 to 3, outside \[0, 3\)"):
        jax.jit(lambda: prior.check_aux(bad).sum())()
