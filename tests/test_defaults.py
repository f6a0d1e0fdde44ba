"""The learned source density and the defaults a user gets from ``fit(X)``.

Oracles: the logistic-mixture density written here in NumPy/SciPy from its formula
(``scipy.stats.logistic``), quadrature for the normalisation, finite differences for the
gradients, a Kolmogorov–Smirnov test against the mixture's CDF for sampling, known generators
for the separation tests, and scikit-learn's ``FastICA`` side by side.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats
from sklearn.decomposition import FastICA

import nica
from nica.metrics import amari_distance, mean_corr_coef


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


# ---------------------------------------------------------------------------------------------
# the learned density


@given(seed=st.integers(0, 2**31 - 1), n_mixtures=st.integers(1, 5))
@settings(max_examples=6, deadline=None)
def test_logistic_mixture_matches_its_formula_and_integrates_to_one(seed, n_mixtures):
    rng = np.random.default_rng(seed)
    theta = random_mixture_params(rng, 2, n_mixtures)
    prior = nica.priors.logistic_mixture(n_mixtures)
    s = rng.normal(scale=3.0, size=(50, 2))
    with jax.enable_x64(True):
        log_density = np.asarray(prior.param_log_density(as_jax(theta), jnp.asarray(s)))
        total = np.asarray(prior.conditional_log_prob(as_jax(theta), jnp.asarray(s)))
    for i in range(2):
        np.testing.assert_allclose(np.exp(log_density[:, i]), numpy_mixture_pdf(theta, s[:, i], i),
                                   rtol=1e-9, atol=1e-300)
        mass, _ = integrate.quad(lambda x: numpy_mixture_pdf(theta, np.array([x]), i)[0], -np.inf, np.inf,
                                 limit=200)
        assert mass == pytest.approx(1.0, abs=1e-7)
        with jax.enable_x64(True):
            mass_model, _ = integrate.quad(
                lambda x: float(jnp.exp(prior.param_log_density(as_jax(theta), jnp.full((1, 2), x))[0, i])),
                -np.inf, np.inf, limit=200)
        assert mass_model == pytest.approx(1.0, abs=1e-7)
    np.testing.assert_allclose(total, log_density.sum(axis=1), rtol=1e-12)


def test_logistic_mixture_gradients_match_finite_differences():
    rng = np.random.default_rng(0)
    theta = random_mixture_params(rng, 3, 3)
    prior = nica.priors.logistic_mixture(3)
    S = rng.normal(size=(7, 3))
    with jax.enable_x64(True):
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
    prior = nica.priors.logistic_mixture(4)
    with jax.enable_x64(True):
        draws = np.asarray(prior.conditional_sample(as_jax(theta), jax.random.key(0), jnp.zeros((20000, 0)), 3,
                                                    jnp.float64))
    assert draws.shape == (20000, 3) and draws.dtype == np.float64
    for i in range(3):
        result = stats.kstest(draws[:, i], lambda x: numpy_mixture_cdf(theta, x, i))
        assert result.pvalue > 1e-3
    # and a wrong density is rejected by the same test (the test has power)
    wrong = {k: v.copy() for k, v in theta.items()}
    wrong["loc"] = wrong["loc"] + 0.3
    assert stats.kstest(draws[:, 0], lambda x: numpy_mixture_cdf(wrong, x, 0)).pvalue < 1e-3


def test_logistic_mixture_initial_shape_has_unit_variance():
    prior = nica.priors.logistic_mixture(5)
    with jax.enable_x64(True):
        theta = {k: np.asarray(v) for k, v in prior.init_params(jax.random.key(0), 2, jnp.float64).items()}
    mean, _ = integrate.quad(lambda x: x * numpy_mixture_pdf(theta, np.array([x]), 0)[0], -np.inf, np.inf)
    var, _ = integrate.quad(lambda x: x**2 * numpy_mixture_pdf(theta, np.array([x]), 0)[0], -np.inf, np.inf)
    assert mean == pytest.approx(0.0, abs=1e-8) and var == pytest.approx(1.0, rel=1e-6)


def test_learned_prior_refuses_parameter_free_calls():
    prior = nica.priors.logistic_mixture()
    with pytest.raises(TypeError, match="learned parameters"):
        prior.log_prob(jnp.zeros((2, 2)))
    with pytest.raises(TypeError, match="learned parameters"):
        prior.sample(jax.random.key(0), (2, 2))
    with pytest.raises(ValueError, match="n_mixtures"):
        nica.priors.logistic_mixture(0)
    conditional = nica.priors.segment_conditional("laplace", 3)
    with pytest.raises(TypeError, match="depends on u"):
        conditional.log_prob(jnp.zeros((2, 2)))
    with pytest.raises(TypeError, match="depends on u"):
        conditional.sample(jax.random.key(0), (2, 2))
    assert nica.priors.get("logistic_mixture") == nica.priors.logistic_mixture()
    hash(prior)  # frozen: usable as a static argument of jit


def test_conditional_prior_with_a_learned_base_matches_its_formula():
    """eq. (4) with a learned shape: p(s_i | u) = p_base((s_i − μ_ui)/σ_ui)/σ_ui."""
    rng = np.random.default_rng(2)
    prior = nica.priors.segment_conditional(nica.priors.logistic_mixture(3), 4)
    with jax.enable_x64(True):
        theta = prior.init_params(jax.random.key(0), 2, jnp.float64)
        assert set(theta) == {"log_scale", "loc", "base"}
        base = random_mixture_params(rng, 2, 3)
        theta = {"log_scale": jnp.asarray(rng.normal(scale=0.3, size=(4, 2))),
                 "loc": jnp.asarray(rng.normal(size=(4, 2))), "base": as_jax(base)}
        S = rng.normal(size=(30, 2))
        u = rng.integers(0, 4, size=30)
        got = np.asarray(prior.conditional_log_prob(theta, jnp.asarray(S), jnp.asarray(u)))
        draws = prior.conditional_sample(theta, jax.random.key(1), jnp.zeros(500, jnp.int32), 2, jnp.float64)
    ls, loc = np.asarray(theta["log_scale"])[u], np.asarray(theta["loc"])[u]
    z = (S - loc) / np.exp(ls)
    expected = sum(np.log(numpy_mixture_pdf(base, z[:, i], i)) - ls[:, i] for i in range(2))
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    assert draws.shape == (500, 2) and np.all(np.isfinite(np.asarray(draws)))


# ---------------------------------------------------------------------------------------------
# linear ICA with the defaults


def linear_problem(kind, n=6000, d=4, seed=0):
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        S = rng.uniform(-1, 1, size=(n, d))
    elif kind == "bimodal":
        S = rng.choice([-1.0, 1.0], size=(n, d)) + 0.3 * rng.normal(size=(n, d))
    else:
        S = rng.laplace(size=(n, d))
    U, _ = np.linalg.qr(rng.normal(size=(d, d)))
    V, _ = np.linalg.qr(rng.normal(size=(d, d)))
    A = U @ np.diag(np.logspace(0, -2, d)) @ V.T  # condition number 100
    X = S @ A.T + rng.normal(size=d)
    half = n // 2
    return X[:half], X[half:], S[half:], A


@pytest.mark.parametrize("kind", ["uniform", "bimodal", "laplace"])
def test_defaults_unmix_sub_and_super_gaussian_linear_mixtures(kind):
    """The textbook failure of a fixed super-Gaussian prior is gone with the learned density."""
    X_train, X_test, S_test, _ = linear_problem(kind)
    model = nica.NonlinearICA(n_layers=1, random_state=0).fit(X_train)
    assert mean_corr_coef(S_test, model.transform(X_test)) >= 0.99
    if kind != "laplace":  # the control: the old fixed Laplace prior cannot separate these
        fixed = nica.NonlinearICA(n_layers=1, prior="laplace", random_state=0).fit(X_train)
        assert mean_corr_coef(S_test, fixed.transform(X_test)) < 0.95


def test_linear_model_is_a_drop_in_for_fastica():
    X_train, X_test, S_test, A = linear_problem("laplace", d=3)
    model = nica.NonlinearICA(n_layers=1, random_state=0).fit(X_train)
    ref = FastICA(whiten="unit-variance", random_state=0).fit(X_train)
    for name in ("components_", "mixing_", "mean_"):
        assert getattr(model, name).shape == getattr(ref, name).shape
    S = model.transform(X_test)
    np.testing.assert_allclose((X_test - model.mean_) @ model.components_.T, S, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(S @ model.mixing_.T + model.mean_, X_test, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(model.inverse_transform(S), X_test, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(model.mixing_ @ model.components_, np.eye(3), atol=1e-10)
    # the same unmixing as FastICA, up to permutation and scale
    ours, theirs = amari_distance(model.components_, A), amari_distance(ref.components_, A)
    assert ours < 0.05 and theirs < 0.05 and ours <= theirs + 0.01
    assert mean_corr_coef(S_test, S) >= mean_corr_coef(S_test, ref.transform(X_test)) - 0.005
    deep = nica.NonlinearICA(n_layers=2, max_iter=2).fit(X_train)
    with pytest.raises(AttributeError, match="n_layers=1"):
        deep.components_


def test_linear_ica_starts_at_the_fastica_rotation():
    """init="auto" is FastICA's rotation for linear ICA: before any training (a step of 1e-12)
    it already separates the generator's sources, which a random orthogonal start does not."""
    X_train, X_test, S_test, _ = linear_problem("laplace", d=4)
    frozen = dict(n_layers=1, learning_rate=1e-12, max_iter=1, early_stopping=False, random_state=0)
    start = nica.NonlinearICA(**frozen).fit(X_train)
    assert start.init_ == "fastica"
    assert mean_corr_coef(S_test, start.transform(X_test)) >= 0.99
    random = nica.NonlinearICA(init="random", **frozen).fit(X_train)
    assert random.init_ == "random"
    assert mean_corr_coef(S_test, random.transform(X_test)) < 0.9
    assert nica.NonlinearICA(n_layers=2, max_iter=1).fit(X_train).init_ == "random"
    assert nica.NonlinearICA(n_layers=1, whiten="standardize", max_iter=1).fit(X_train).init_ == "random"
    with pytest.raises(ValueError, match=r"init must be one of .*got 'pca'"):
        nica.NonlinearICA(init="pca").fit(X_train)


def test_fastica_start_keeps_the_start_with_the_largest_contrast(monkeypatch):
    """Of its several FastICA starts, init="fastica" keeps the fixed point with the largest
    log-cosh contrast Σᵢ (E log cosh yᵢ − E log cosh ν)², here recomputed naively with the
    Gaussian reference value by quadrature."""
    import nica._src.estimator.preprocessing as est_module

    fitted = []

    class RecordingFastICA(FastICA):
        def fit(self, X, y=None):
            super().fit(X)
            fitted.append(self.components_.copy())
            return self

    monkeypatch.setattr(est_module, "FastICA", RecordingFastICA)
    X_train, _, _, _ = linear_problem("laplace", d=6)
    frozen = dict(n_layers=1, learning_rate=1e-12, max_iter=1, early_stopping=False, random_state=3)
    model = nica.NonlinearICA(**frozen).fit(X_train)
    assert len(fitted) >= 2
    gauss = integrate.quad(lambda x: np.log(np.cosh(x)) * stats.norm.pdf(x), -30, 30)[0]
    Z = (X_train - X_train.mean(axis=0)) @ model.whitening_.T

    def contrast(W):
        Y = Z @ W.T
        Y = Y / Y.std(axis=0)
        return np.sum((np.log(np.cosh(Y)).mean(axis=0) - gauss) ** 2)

    best = fitted[int(np.argmax([contrast(W) for W in fitted]))]
    np.testing.assert_allclose(model.network_params_[0].W, best, rtol=1e-9, atol=1e-9)


def test_defaults_match_fastica_on_sixteen_uniform_sources():
    """Sixteen sub-Gaussian sources from 5,000 rows: from a random start the gradient stalls
    near the Gaussian mixture (MCC about 0.5 on some draws); the defaults are within 0.005 of
    FastICA."""
    X_train, X_test, S_test, _ = linear_problem("uniform", n=10000, d=16, seed=3)
    model = nica.NonlinearICA(n_layers=1, random_state=0).fit(X_train)
    ref = FastICA(whiten="unit-variance", random_state=0, max_iter=1000).fit(X_train)
    assert mean_corr_coef(S_test, model.transform(X_test)) >= mean_corr_coef(S_test, ref.transform(X_test)) - 0.005


def test_auto_options_resolve_by_size():
    X = np.random.default_rng(0).laplace(size=(200, 9))
    model = nica.NonlinearICA(n_layers=1, max_iter=2, batch_size=64).fit(X)
    assert model.whiten_ == "unit-variance" and model.gradient_ == "equivariant"
    model = nica.NonlinearICA(n_layers=1, max_iter=2, batch_size=2).fit(X)
    assert model.gradient_ == "relative"  # 9 features > 4 × batch of 2: the transport would dominate
    model = nica.NonlinearICA(n_layers=1, max_iter=2, whiten="standardize", gradient="relative").fit(X)
    assert model.whiten_ == "standardize" and model.gradient_ == "relative"
    with pytest.raises(ValueError, match="schedule"):
        nica.NonlinearICA(schedule="cosine").fit(X)
    with pytest.raises(ValueError, match="n_init"):
        nica.NonlinearICA(n_init=0).fit(X)


def test_n_init_keeps_the_most_likely_initialisation():
    X_train, X_test, _, _ = linear_problem("laplace", n=2000, d=3)
    kw = dict(n_layers=2, max_iter=15, random_state=0)
    single = nica.NonlinearICA(**kw).fit(X_train)
    multi = nica.NonlinearICA(n_init=3, **kw).fit(X_train)
    assert len(multi.init_scores_) == 3 and len(single.init_scores_) == 1
    # the first initialisation is the single fit's; the one kept has the best validation score
    assert multi.init_scores_[0] == pytest.approx(single.init_scores_[0], rel=1e-12)
    assert max(multi.validation_scores_) == pytest.approx(max(multi.init_scores_), rel=1e-12)
    assert max(multi.init_scores_) >= single.init_scores_[0]


def test_spike_guard_restores_the_best_parameters_and_lowers_the_rate():
    """A rate far too large makes the validation NLL jump; the guard restores the best epoch."""
    X_train, _, _, _ = linear_problem("laplace", n=3000, d=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = nica.NonlinearICA(n_layers=2, learning_rate=1.0, max_iter=15, schedule="constant",
                                  random_state=0).fit(X_train)
    scores = np.asarray(model.validation_scores_)
    running_best = np.maximum.accumulate(scores)
    _SPIKE_NATS = nica.EarlyStopping().spike_nats

    spikes = np.flatnonzero(scores[1:] < running_best[:-1] - _SPIKE_NATS) + 1
    assert spikes.size > 0  # the rate is large enough to spike: the test exercises the guard
    # the epoch after a spike restarted from the best parameters at a lower rate: it is back
    # above the pre-spike level instead of carrying on from the spiked parameters
    for i in spikes[spikes + 1 < scores.size]:
        assert scores[i + 1] > scores[i] + _SPIKE_NATS
    assert np.all(np.isfinite(scores))
    assert max(scores) == pytest.approx(scores[model.best_iter_ - 1])
    kept = model.score(X_train)
    assert np.isfinite(kept)


def test_data_too_large_to_whiten_is_refused_clearly():
    X = np.random.default_rng(0).laplace(size=(100, 3)) * 1e160
    for whiten in ("unit-variance", "standardize"):
        with pytest.raises(ValueError, match=r"X has values too large to whiten .* rescale X"):
            nica.NonlinearICA(n_layers=1, whiten=whiten, max_iter=1).fit(X)
