"""Conditional priors (eq. 4) and ConditionalNonlinearICA against independent oracles."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.optimize import linear_sum_assignment
from scipy.special import logsumexp
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.utils.estimator_checks import parametrize_with_checks

import nica
from nica import priors
from nica._src.gradients import VALUE_AND_GRADIENT
from nica.datasets import make_segmented_mixture
from nica.metrics import mean_corr_coef

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

SCIPY_BASE = {
    "gaussian": stats.norm(),
    "laplace": stats.laplace(scale=1 / np.sqrt(2)),
    "logistic": stats.logistic(),
    "hypsecant": stats.hypsecant(scale=2 / np.pi),
}


@parametrize_with_checks([nica.ConditionalNonlinearICA(n_layers=2, max_iter=4)])
def test_sklearn_compatible(estimator, check):
    check(estimator)


# ---------------------------------------------------------------------------------------------
# the functional pieces


def random_theta(prior, seed, n_components):
    """Non-trivial prior parameters of the right structure."""
    rng = np.random.default_rng(seed)
    theta = prior.init_params(jax.random.key(seed), n_components, jnp.float64)
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a + 0.4 * rng.standard_normal(a.shape)), theta)


@pytest.mark.parametrize("base", list(SCIPY_BASE))
def test_segment_conditional_log_prob_matches_scipy(base):
    prior = priors.segment_conditional(base, n_segments=4)
    theta = random_theta(prior, 0, 3)
    S = np.random.default_rng(1).standard_normal((20, 3))
    u = np.arange(20) % 4
    scale, loc = np.exp(np.asarray(theta["log_scale"]))[u], np.asarray(theta["loc"])[u]
    expected = SCIPY_BASE[base].logpdf((S - loc) / scale).sum(axis=1) - np.log(scale).sum(axis=1)
    np.testing.assert_allclose(prior.conditional_log_prob(theta, jnp.asarray(S), jnp.asarray(u)), expected,
                               rtol=1e-12)


def test_mlp_conditional_is_a_normalized_density_for_every_u():
    prior = priors.mlp_conditional("logistic", n_aux=2, hidden_units=5)
    theta = random_theta(prior, 2, 1)
    s = np.linspace(-60, 60, 20001)
    for u in [(0.0, 0.0), (1.5, -2.0), (-3.0, 0.7)]:
        U = jnp.tile(jnp.asarray(u)[None, :], (s.size, 1))
        density = np.exp(np.asarray(prior.conditional_log_prob(theta, jnp.asarray(s)[:, None], U)))
        assert np.trapezoid(density, s) == pytest.approx(1.0, abs=1e-6)


def test_conditional_sample_follows_the_conditional_density():
    prior = priors.segment_conditional("hypsecant", n_segments=3)
    theta = random_theta(prior, 3, 2)
    u = jnp.full((30000,), 2, jnp.int32)
    draws = np.asarray(prior.conditional_sample(theta, jax.random.key(0), u, 2, jnp.float64))
    scale, loc = np.exp(np.asarray(theta["log_scale"][2])), np.asarray(theta["loc"][2])
    for i in range(2):
        reference = stats.hypsecant(loc=loc[i], scale=scale[i] * 2 / np.pi)
        assert stats.kstest(draws[:, i], reference.cdf).pvalue > 1e-3


def test_conditional_prior_needs_u():
    prior = priors.segment_conditional("laplace", n_segments=2)
    with pytest.raises(ValueError, match="needs the auxiliary variable"):
        prior.conditional_log_prob(prior.init_params(jax.random.key(0), 2), jnp.zeros((3, 2)))


def brute_conditional_nll(params, theta, X, u, act, prior):
    """Mean NLL from a per-sample network, jax.jacfwd and slogdet (written from docs/theory.rst,
    'The model')."""

    def g(x):
        z = x
        for k, (W, b) in enumerate(params):
            y = W @ z + b
            z = act.fn(y) if k < len(params) - 1 else y
        return y

    S = jax.vmap(g)(X)
    log_det = jnp.linalg.slogdet(jax.vmap(jax.jacfwd(g))(X))[1]
    return -jnp.mean(prior.conditional_log_prob(theta, S, u) + log_det)


@pytest.mark.parametrize("kind", ["segment", "mlp"])
@pytest.mark.parametrize("n_layers", [1, 3])
def test_conditional_gradients_match_autodiff(kind, n_layers):
    """Layers: relative gradient [G, g] W̄ᵀW̄; prior parameters: the plain Euclidean gradient."""
    rng = np.random.default_rng(n_layers)
    d, n = 3, 7
    params = tuple(
        nica.Layer(jnp.asarray(np.eye(d) + 0.4 * rng.standard_normal((d, d))), jnp.asarray(0.5 * rng.standard_normal(d)))
        for _ in range(n_layers)
    )
    X = jnp.asarray(rng.laplace(size=(n, d)))
    if kind == "segment":
        prior, u = priors.segment_conditional("laplace", 3), jnp.asarray(np.arange(n) % 3)
    else:
        prior, u = priors.mlp_conditional("gaussian", n_aux=2, hidden_units=4), jnp.asarray(rng.standard_normal((n, 2)))
    theta = random_theta(prior, 5, d)
    act = nica.activations.tanh_linear()
    G_layers, G_theta = jax.grad(brute_conditional_nll, argnums=(0, 1))(params, theta, X, u, act, prior)
    loss, rel, rel_theta = VALUE_AND_GRADIENT["relative"](params, X, act, prior, theta, u)
    for (W, b), (G, g), (dW, db) in zip(params, G_layers, rel):
        Wbar = jnp.zeros((d + 1, d + 1)).at[:d, :d].set(W).at[:d, d].set(b).at[d, d].set(1.0)
        R = jnp.concatenate([G, g[:, None]], axis=1) @ Wbar.T @ Wbar
        np.testing.assert_allclose(dW, R[:, :d], rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(db, R[:, d], rtol=1e-9, atol=1e-11)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12), rel_theta, G_theta)
    for method in ["euclidean", "autodiff"]:
        _, grads, grads_theta = VALUE_AND_GRADIENT[method](params, X, act, prior, theta, u)
        jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-11),
                               (grads, grads_theta), (tuple(G_layers), G_theta))
    full = brute_conditional_nll(params, theta, X, u, act, prior)
    log_det_w = sum(jnp.linalg.slogdet(W)[1] for W, _ in params)
    assert float(loss) == pytest.approx(float(full + log_det_w), rel=1e-10)


# ---------------------------------------------------------------------------------------------
# the estimator


@pytest.fixture(scope="module")
def segmented():
    return make_segmented_mixture(n_segments=8, n_per_segment=250, n_components=2, n_layers=2, random_state=0)


def small_model(**kw):
    defaults = dict(n_layers=2, max_iter=15, learning_rate=3e-3, batch_size=128, random_state=0)
    defaults.update(kw)
    return nica.ConditionalNonlinearICA(**defaults)


def test_score_samples_matches_brute_force(segmented):
    model = small_model(whiten="unit-variance").fit(segmented.X_train, segmented.u_train)
    X, u = segmented.X_test[::50], segmented.u_test[::50]
    theta = jax.tree_util.tree_map(jnp.asarray, model.prior_params_)

    def whole_map(x):
        z = model.whitening_ @ (x - model.mean_)
        for k, (W, b) in enumerate(model.params_):
            y = W @ z + b
            z = model.activation_.fn(y) if k < len(model.params_) - 1 else y
        return z

    with jax.enable_x64(True):
        S = jax.vmap(whole_map)(jnp.asarray(X))
        log_det = jnp.linalg.slogdet(jax.vmap(jax.jacfwd(whole_map))(jnp.asarray(X)))[1]
    scale = np.exp(np.asarray(theta["log_scale"]))[u]
    loc = np.asarray(theta["loc"])[u]
    log_prior = SCIPY_BASE["laplace"].logpdf((np.asarray(S) - loc) / scale).sum(1) - np.log(scale).sum(1)
    np.testing.assert_allclose(model.score_samples(X, u), log_prior + np.asarray(log_det), rtol=1e-10)


def test_marginal_score_is_the_mixture_over_segments(segmented):
    model = small_model().fit(segmented.X_train, segmented.u_train)
    X = segmented.X_test[:40]
    per_segment = np.stack([model.score_samples(X, np.full(40, k)) for k in model.classes_])
    weights = np.bincount(segmented.u_train) / segmented.u_train.size
    expected = logsumexp(per_segment + np.log(weights)[:, None], axis=0)
    np.testing.assert_allclose(model.score_samples(X), expected, rtol=1e-12)


def test_conditional_density_is_normalized_for_each_segment():
    rng = np.random.default_rng(0)
    u = np.repeat(np.arange(3), 300)
    S = rng.laplace(size=(900, 2)) * np.array([0.5, 1.0, 2.0])[u][:, None]
    X = S @ np.array([[1.0, 0.4], [0.2, 1.0]]).T + 3.0
    model = small_model(max_iter=20).fit(X, u)
    g = np.linspace(-40, 40, 700)
    grid = np.stack(np.meshgrid(g, g), axis=-1).reshape(-1, 2)
    for k in range(3):
        density = np.exp(model.score_samples(grid, np.full(grid.shape[0], k))).reshape(700, 700)
        assert np.trapezoid(np.trapezoid(density, g, axis=1), g) == pytest.approx(1.0, abs=0.02)


def test_learned_segment_scales_track_the_true_ones():
    data = make_segmented_mixture(n_segments=20, n_per_segment=500, n_components=3, n_layers=1, random_state=3)
    model = small_model(n_layers=1, max_iter=150, learning_rate=1e-2).fit(data.X_train, data.u_train)
    S_est = model.transform(data.X_test)
    C = np.abs(np.corrcoef(data.S_test.T, S_est.T)[:3, 3:])
    rows, cols = linear_sum_assignment(-C)
    assert C[rows, cols].mean() > 0.97
    learned = np.exp(model.prior_params_["log_scale"])  # (n_segments, n_components), source units
    for i, j in zip(rows, cols):
        r = np.corrcoef(np.log(data.scales[:, i]), np.log(learned[:, j]))[0, 1]
        assert r > 0.95


def test_conditional_model_unmixes_a_nonlinear_mixture_better_than_fastica():
    from sklearn.decomposition import FastICA

    data = make_segmented_mixture(n_segments=20, n_per_segment=500, n_components=3, n_layers=2, random_state=1)
    model = small_model(n_layers=2, max_iter=150, learning_rate=5e-3).fit(data.X_train, data.u_train)
    mcc = mean_corr_coef(data.S_test, model.transform(data.X_test))
    fast = mean_corr_coef(data.S_test, FastICA(random_state=0).fit(data.X_train).transform(data.X_test))
    assert mcc > 0.85 and mcc > fast + 0.05


def test_string_labels_and_unseen_labels(segmented):
    labels = np.array([f"seg{k}" for k in segmented.u_train])
    model = small_model(max_iter=3).fit(segmented.X_train, labels)
    assert model.aux_type_ == "discrete" and list(model.classes_[:2]) == ["seg0", "seg1"]
    ll = model.score_samples(segmented.X_test[:5], [f"seg{k}" for k in segmented.u_test[:5]])
    same = small_model(max_iter=3).fit(segmented.X_train, segmented.u_train)
    np.testing.assert_allclose(ll, same.score_samples(segmented.X_test[:5], segmented.u_test[:5]))
    with pytest.raises(ValueError, match=r"segment label\(s\) not seen during fit: \['seg99'\]"):
        model.score(segmented.X_test[:3], ["seg0", "seg99", "seg1"])
    with pytest.raises(ValueError, match="one entry per sample"):
        model.score_samples(segmented.X_test[:3], ["seg0"])


def test_y_is_required_to_fit():
    with pytest.raises(ValueError, match="requires y to be passed"):
        small_model().fit(np.random.default_rng(0).normal(size=(20, 2)), None)
    with pytest.raises(TypeError):
        small_model().fit(np.random.default_rng(0).normal(size=(20, 2)))


@pytest.mark.parametrize("n_aux", [1, 2])
def test_continuous_auxiliary_variable(n_aux):
    rng = np.random.default_rng(n_aux)
    u = rng.uniform(-1, 1, size=(1500, n_aux))
    scale = np.exp(1.2 * u[:, :1])  # the sources' scale varies smoothly with u
    S = rng.laplace(size=(1500, 2)) * scale
    X = S @ np.array([[1.0, 0.5], [-0.3, 1.0]]).T
    y = u.ravel() if n_aux == 1 else u
    model = small_model(n_layers=1, max_iter=60, learning_rate=1e-2).fit(X, y)
    assert model.aux_type_ == "continuous"
    factorized = nica.NonlinearICA(n_layers=1, max_iter=60, learning_rate=1e-2, random_state=0).fit(X)
    assert model.score(X, y) > factorized.score(X) + 0.1  # u carries information about scale
    with pytest.raises(ValueError, match="y is required"):
        model.score_samples(X)
    draws = model.sample(7, y=y[0] if n_aux == 1 else u[0], random_state=0)
    assert draws.shape == (7, 2)


def test_sample_given_a_segment(segmented):
    model = small_model(max_iter=10).fit(segmented.X_train, segmented.u_train)
    draws = model.sample(20000, y=3, random_state=0)
    S = model.transform(draws)
    scale = np.exp(model.prior_params_["log_scale"][3])
    loc = model.prior_params_["loc"][3]
    for i in range(2):
        reference = stats.laplace(loc=loc[i], scale=scale[i] / np.sqrt(2))
        assert stats.kstest(S[:, i], reference.cdf).pvalue > 1e-3
    assert model.sample(5, random_state=0).shape == (5, 2)
    assert model.sample(y=[0, 1, 2], random_state=0).shape == (3, 2)
    with pytest.raises(NotFittedError):
        small_model().sample(3, y=0)


def test_clone_and_grid_search_with_aux(segmented):
    cv = KFold(2, shuffle=True, random_state=0)  # every fold must see every segment
    search = GridSearchCV(small_model(max_iter=3), {"learn_location": [True, False]}, cv=cv)
    search.fit(segmented.X_train, segmented.u_train)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert clone(search.best_estimator_).get_params()["max_iter"] == 3


@pytest.mark.parametrize("params, match", [({"aux_type": "ordinal"}, "aux_type must be one of"),
                                           ({"hidden_units": 0}, "hidden_units must be an integer")])
def test_bad_hyperparameters(segmented, params, match):
    with pytest.raises(ValueError, match=match):
        small_model(**params).fit(segmented.X_train, segmented.u_train)
