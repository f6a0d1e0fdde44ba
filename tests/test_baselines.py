"""The benchmark baselines of ``benchmarks/_baselines.py`` against independent oracles: the Bayes
classifier of the true sources for time-contrastive learning, and closed-form Gaussian
likelihoods for the iVAE's ELBO with an affine decoder."""

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import logsumexp

from benchmarks._baselines import fit_ivae, fit_tcl, ivae_elbo
from nica.datasets import make_segmented_mixture
from nica.metrics import mean_corr_coef


def bayes_cross_entropy(S, u, scales):
    """``−mean log p(u | s)`` of the true sources under the true per-segment Laplace scales
    (unit-variance Laplace times ``λ``: scale ``λ/√2``), uniform label prior."""
    b = scales / np.sqrt(2.0)
    log_p = np.sum(-np.abs(S[:, None, :]) / b[None] - np.log(2.0 * b[None]), axis=-1)
    log_post = log_p - logsumexp(log_p, axis=1, keepdims=True)
    return -np.mean(log_post[np.arange(len(u)), u])


def test_tcl_classifies_segments_and_recovers_linear_sources():
    n_segments = 10
    data = make_segmented_mixture(n_segments=n_segments, n_per_segment=300, n_components=3, n_layers=1, random_state=0)
    untrained = fit_tcl(data.X_train, data.u_train, n_layers=1, random_state=0, max_epochs=0)
    fit = fit_tcl(
        data.X_train, data.u_train, n_layers=1, random_state=0, learning_rate=5e-2, max_epochs=40, patience=10
    )
    ce = fit.cross_entropy(data.X_test, data.u_test)
    bayes = bayes_cross_entropy(data.S_test, data.u_test, data.scales)
    chance = np.log(n_segments)
    np.testing.assert_allclose(untrained.cross_entropy(data.X_test, data.u_test), chance, rtol=1e-6)
    # Between the Bayes classifier of the true sources and chance, most of the way to the former.
    assert bayes - 0.05 < ce < bayes + 0.25 * (chance - bayes), (ce, bayes, chance)
    mcc = mean_corr_coef(data.S_test, fit.transform(data.X_test))
    mcc_untrained = mean_corr_coef(data.S_test, untrained.transform(data.X_test))
    assert mcc > 0.97 and mcc > mcc_untrained + 0.1, (mcc, mcc_untrained)


def _affine_gaussian(params, X, u, n_segments, min_var):
    """Closed forms, float64, for an iVAE whose encoder and decoder are single affine maps:
    the per-row ELBO and the exact ``log p(x | u)`` on the standardized scale."""
    ((We, be),) = [(np.asarray(W, np.float64), np.asarray(b, np.float64)) for W, b in params["encoder"]]
    ((Wd, bd),) = [(np.asarray(W, np.float64), np.asarray(b, np.float64)) for W, b in params["decoder"]]
    var = min_var + np.exp(np.asarray(params["decoder_log_var"], np.float64))
    mu_tab = np.asarray(params["prior_mean"], np.float64)
    s_tab = np.exp(np.asarray(params["prior_log_var"], np.float64))
    H = np.concatenate([X, np.eye(n_segments)[u]], axis=1) @ We + be
    k = Wd.shape[0]
    m, v = H[:, :k], np.exp(H[:, k:])
    A = Wd.T  # x = A z + bd + noise
    elbo, exact = [], []
    for x, ui, mi, vi in zip(X, u, m, v):
        # E_q log N(x; A z + bd, diag var) = log N(x; A m + bd, var) − ½ Σ_j (A diag(v) Aᵀ)_jj / var_j
        r = x - A @ mi - bd
        rec = -0.5 * np.sum(r**2 / var + np.log(2 * np.pi * var)) - 0.5 * np.sum((A**2 @ vi) / var)
        # KL between Gaussians written with full matrices
        Sp, Sq, dmu = np.diag(s_tab[ui]), np.diag(vi), mu_tab[ui] - mi
        kl = 0.5 * (
            np.trace(np.linalg.solve(Sp, Sq))
            + dmu @ np.linalg.solve(Sp, dmu)
            - k
            + np.linalg.slogdet(Sp)[1]
            - np.linalg.slogdet(Sq)[1]
        )
        elbo.append(rec - kl)
        C = A @ Sp @ A.T + np.diag(var)
        e = x - A @ mu_tab[ui] - bd
        exact.append(-0.5 * (e @ np.linalg.solve(C, e) + np.linalg.slogdet(2 * np.pi * C)[1]))
    return np.array(elbo), np.array(exact)


def test_ivae_elbo_matches_closed_forms_and_the_fit_tightens_it():
    """Linear-Gaussian data; an iVAE with affine encoder and decoder, before and after fitting:
    its Monte-Carlo ELBO equals the closed-form one, which is below the exact closed-form
    ``log p(x | u)`` of the same parameters; fitted, the bound is tight and close to the
    generating model's likelihood."""
    n_segments, per, d = 5, 200, 2
    rng = np.random.default_rng(0)
    scales = rng.uniform(0.3, 2.0, size=(n_segments, d))
    u = np.repeat(np.arange(n_segments), per)
    Z = rng.normal(size=(len(u), d)) * scales[u]
    A = np.array([[1.0, 0.5], [-0.3, 1.2]])
    X = Z @ A.T + 0.1 * rng.normal(size=Z.shape)
    C = [A @ np.diag(scales[m] ** 2) @ A.T + 0.01 * np.eye(d) for m in range(n_segments)]
    true_ll = np.mean(
        [-0.5 * (x @ np.linalg.solve(C[m], x) + np.linalg.slogdet(2 * np.pi * C[m])[1]) for x, m in zip(X, u)]
    )

    settings = dict(
        latent_dim=d, random_state=0, n_hidden_layers=0, decoder_var=None, learning_rate=3e-2, batch_size=50
    )
    untrained = fit_ivae(X, u, **settings, max_epochs=0)
    fit = fit_ivae(X, u, **settings, max_epochs=150, patience=15)
    gaps = []
    for model in (untrained, fit):
        Xs = ((X.astype(np.float32) - model.mean) / model.std).astype(np.float64)
        elbo, exact = _affine_gaussian(model.params, Xs, u, n_segments, model.min_var)
        elbo, exact = elbo - np.sum(np.log(model.std)), exact - np.sum(np.log(model.std))  # raw scale
        assert np.all(elbo <= exact + 1e-6)
        np.testing.assert_allclose(np.mean(model.elbo(X, u, n_samples=2000)), np.mean(elbo), atol=0.02)
        gaps.append(np.mean(exact - elbo))
    assert gaps[0] > 0.2 and gaps[1] < 0.1, gaps
    assert true_ll - 0.25 < np.mean(elbo) < true_ll + 0.05, (np.mean(elbo), true_ll)
    assert fit.params["prior_log_var"].std() > 0.1  # the KL was checked away from N(0, I) priors
    # The Laplace prior's closed-form E_q log p(z | u) (a folded normal) against NumPy draws of z:
    # the two priors' ELBOs differ by that term alone (same noise, same reconstruction).
    Xs = (X[::40].astype(np.float32) - fit.mean) / fit.std
    kw = dict(n_segments=n_segments, decoder_var=None, min_var=fit.min_var, n_samples=1)
    diff = ivae_elbo(
        fit.params, jnp.asarray(Xs), jnp.asarray(u[::40]), jax.random.key(0), prior="laplace", **kw
    ) - ivae_elbo(fit.params, jnp.asarray(Xs), jnp.asarray(u[::40]), jax.random.key(0), prior="gaussian", **kw)
    ((We, be),) = fit.params["encoder"]
    H = np.concatenate([Xs, np.eye(n_segments)[u[::40]]], axis=1) @ np.asarray(We, np.float64) + np.asarray(be)
    m, sd = H[:, :d], np.exp(0.5 * H[:, d:])
    mu, s = np.asarray(fit.params["prior_mean"])[u[::40]], np.exp(np.asarray(fit.params["prior_log_var"]))[u[::40]]
    z = m + sd * np.random.default_rng(1).normal(size=(20_000,) + m.shape)
    b = np.sqrt(s / 2)
    laplace = np.mean(np.sum(-np.abs(z - mu) / b - np.log(2 * b), axis=-1), axis=0)
    gauss = np.sum(-0.5 * (np.log(2 * np.pi * s) + (sd**2 + (m - mu) ** 2) / s), axis=-1)
    np.testing.assert_allclose(np.asarray(diff), laplace - gauss, atol=0.03)
    # Deterministic from random_state (split, initialisation, batch order, reparameterisation noise).
    first, second = (fit_ivae(X, u, **settings, max_epochs=3) for _ in range(2))
    np.testing.assert_array_equal(first.transform(X, u), second.transform(X, u))
