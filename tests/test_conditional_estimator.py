"""ConditionalNonlinearICA (``nica/_src/estimator/conditional.py``): the conditional model
``p(x | u)`` against independent oracles (SciPy densities, ``jax.jacfwd`` of the whole map,
quadrature, the functional core on ``params_``), its label posterior and hybrid objective,
continuous ``u``, partial fits and warm starts.

Misuse: every bad ``X``, ``y`` and hyperparameter is refused with the argument named, and a
refused call leaves a fitted model (parameters, pre-processing, labels) as it was; random arrays
and labels of random types (hypothesis) are refused with the predicted error or give finite
results.  (What the estimators share is also tested through NonlinearICA in
tests/test_nonlinear.py; scikit-learn compatibility: tests/test_sklearn.py.)
"""

import copy
import inspect
import re
import warnings
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.integrate import trapezoid
from scipy.optimize import linear_sum_assignment
from scipy.special import log_softmax, logsumexp
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.utils.validation import check_is_fitted
from strategies import FUZZ, LABELS, arrays, validation_refusal
from support import (
    BAD_HYPERPARAMETER_IDS,
    BAD_HYPERPARAMETERS,
    BAD_X,
    TINY,
    Interrupt,
    assert_same,
    assert_unchanged,
    interrupt_after_checkpoints,
    params_of,
    snapshot,
)

import nica
from nica import priors
from nica._src.estimator import inference as inference_module
from nica.datasets import make_segmented_mixture
from nica.metrics import mean_corr_coef

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

N, D = 200, 3  # the misuse data: fits of a few epochs, shared by the misuse and fuzz tests


@pytest.fixture(scope="module")
def X():
    return np.random.default_rng(0).laplace(size=(N, D))


@pytest.fixture(scope="module")
def u():
    return np.repeat(np.arange(4), N // 4)


@pytest.fixture(scope="module")
def fitted_conditional(X, u):
    return nica.ConditionalNonlinearICA(**TINY).fit(X, u)


# ---------------------------------------------------------------------------------------------
# the model against independent oracles


SCIPY_BASE = {
    "gaussian": stats.norm(),
    "laplace": stats.laplace(scale=1 / np.sqrt(2)),
    "logistic": stats.logistic(),
    "hypsecant": stats.hypsecant(scale=2 / np.pi),
}


@pytest.fixture(scope="module")
def segmented():
    return make_segmented_mixture(n_segments=8, n_per_segment=250, n_components=2, n_layers=2, random_state=0)


def small_model(**kw):
    defaults = dict(n_layers=2, max_iter=15, learning_rate=3e-3, batch_size=128, random_state=0)
    defaults.update(kw)
    return nica.ConditionalNonlinearICA(**defaults)


@pytest.fixture(scope="module")
def shuffled():
    """240 rows of four segments, shuffled so that every chunk of 80 holds every segment."""
    data = make_segmented_mixture(n_segments=4, n_per_segment=60, n_components=2, n_layers=2, random_state=2)
    order = np.random.default_rng(0).permutation(240)
    return data.X_train[order], data.u_train[order], data.X_test, data.u_test


FAST = dict(n_layers=2, batch_size=40, early_stopping=False, random_state=0)  # one compiled epoch for all


def leaves(model):
    return [np.array(a) for a in jax.tree_util.tree_leaves((model.params_, model.prior_params_))]


def test_partial_fit_is_one_epoch_per_chunk_and_fixes_the_labels_on_the_first_call(shuffled):
    X, u, X_test, u_test = shuffled
    chunks = np.array_split(np.arange(240), 3)
    model = nica.ConditionalNonlinearICA(**FAST).partial_fit(X[chunks[0]], u[chunks[0]])
    assert model.gradient_ == "equivariant"  # "auto" for 2 features: deterministic, and it trains (below)
    # the first call is one epoch of a fresh fit on that chunk
    one_epoch = nica.ConditionalNonlinearICA(**FAST, max_iter=1).fit(X[chunks[0]], u[chunks[0]])
    for a, b in zip(leaves(model), leaves(one_epoch)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(model.classes_, [0, 1, 2, 3])
    weights = np.log(np.bincount(u[chunks[0]]) / 80)
    start_score = model.score(X_test, u_test)
    for _ in range(4):
        for rows in chunks[1:] + chunks[:1]:
            before = leaves(model)
            model.partial_fit(X[rows], u[rows])
            assert not np.allclose(before[0], leaves(model)[0])
    assert model.n_iter_ == 13 and len(model.loss_curve_) == 13
    np.testing.assert_allclose(model.segment_log_weights_, weights)  # still the first chunk's
    assert model.score(X_test, u_test) > start_score + 0.1
    before = leaves(model)
    with pytest.raises(ValueError, match=r"segment label\(s\) not seen during fit: \[7\]"):
        model.partial_fit(X[:5], np.array([0, 1, 7, 2, 3]))
    for a, b in zip(before, leaves(model)):
        np.testing.assert_array_equal(a, b)


def test_warm_start_continues_from_the_fitted_state(shuffled):
    """With a vanishing rate, a warm-started fit stays at the fitted parameters, while a cold fit
    goes back to the initialisation (far from them): the warm fit did start from the state."""
    X, u, _, _ = shuffled
    model = nica.ConditionalNonlinearICA(**FAST, max_iter=3, warm_start=True).fit(X, u)
    fitted = leaves(model)
    model.set_params(learning_rate=1e-12)
    model.fit(X, u)
    assert model.n_iter_ == 6 and len(model.loss_curve_) == 6
    for a, b in zip(fitted, leaves(model)):
        np.testing.assert_allclose(b, a, atol=1e-8)
    cold = clone(model).set_params(warm_start=False).fit(X, u)
    assert cold.n_iter_ == 3
    assert max(np.max(np.abs(a - b)) for a, b in zip(fitted, leaves(cold))) > 1e-3


@pytest.mark.parametrize("whiten", ["unit-variance", False])
def test_inverse_transform_inverts_transform(shuffled, whiten):
    X, u, X_test, _ = shuffled
    model = nica.ConditionalNonlinearICA(**FAST, max_iter=2, whiten=whiten, activation="tanh_linear").fit(X, u)
    S = model.transform(X_test)
    assert np.max(np.abs(S - X_test)) > 0.1  # not the identity
    np.testing.assert_allclose(model.inverse_transform(S), X_test, rtol=1e-9, atol=1e-9)


def test_explicit_aux_type_overrides_the_inference(shuffled):
    """Relabelled segments and shifted continuous values give the same model: the labels'
    values do not matter to a discrete u, a shift is standardised away from a continuous one."""
    X, u, _, _ = shuffled
    halves = u * 0.5 + 0.25  # floats that "auto" reads as continuous
    auto = nica.ConditionalNonlinearICA(**FAST, max_iter=1).fit(X, halves)
    assert auto.aux_type_ == "continuous"
    discrete = nica.ConditionalNonlinearICA(**FAST, max_iter=1, aux_type="discrete").fit(X, halves)
    assert discrete.aux_type_ == "discrete" and isinstance(discrete.prior_, priors.SegmentConditional)
    np.testing.assert_array_equal(discrete.classes_, [0.25, 0.75, 1.25, 1.75])
    integer_labels = nica.ConditionalNonlinearICA(**FAST, max_iter=1).fit(X, u)
    assert integer_labels.aux_type_ == "discrete"
    for a, b in zip(leaves(discrete), leaves(integer_labels)):
        np.testing.assert_array_equal(a, b)

    continuous = nica.ConditionalNonlinearICA(**FAST, max_iter=1, aux_type="continuous").fit(X, u)
    assert continuous.aux_type_ == "continuous" and isinstance(continuous.prior_, priors.MLPConditional)
    shifted = nica.ConditionalNonlinearICA(**FAST, max_iter=1).fit(X, u + 0.5)  # floats: continuous
    assert shifted.aux_type_ == "continuous"
    np.testing.assert_allclose(continuous.aux_mean_ + 0.5, shifted.aux_mean_)
    for a, b in zip(leaves(continuous), leaves(shifted)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(
        continuous.score_samples(X[:5], u[:5]), shifted.score_samples(X[:5], u[:5] + 0.5), rtol=1e-12
    )


def test_params_are_the_whole_model_for_the_functional_core(segmented):
    """The conditional model's params_, prior_ and prior_params_ in the core's log_likelihood
    (u as segment codes) give score_samples(X, y); the core's segment mixture on the sources
    of one forward pass gives the marginal score_samples(X) (float64, 1e-8)."""
    model = small_model(whiten="unit-variance").fit(segmented.X_train, segmented.u_train)
    X, y = segmented.X_test[::10], segmented.u_test[::10]
    u = np.searchsorted(model.classes_, y).astype(np.int32)
    with jax.enable_x64(True):
        ll = nica.log_likelihood(
            model.params_,
            jnp.asarray(X),
            activation=model.activation_,
            prior=model.prior_,
            prior_params=model.prior_params_,
            u=jnp.asarray(u),
        )
        S, log_det = nica.forward_and_log_det(model.params_, jnp.asarray(X), activation=model.activation_)
        marginal = model.prior_.marginal_log_prob(model.prior_params_, S, model.segment_log_weights_) + log_det
    np.testing.assert_allclose(ll, model.score_samples(X, y), rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(marginal, model.score_samples(X), rtol=1e-8, atol=1e-8)


def test_score_samples_matches_brute_force(segmented):
    model = small_model(whiten="unit-variance").fit(segmented.X_train, segmented.u_train)
    X, u = segmented.X_test[::50], segmented.u_test[::50]
    theta = jax.tree_util.tree_map(jnp.asarray, model.prior_params_)

    def whole_map(x):
        z = model.whitening_ @ (x - model.mean_)
        for k, (W, b) in enumerate(model.network_params_):
            y = W @ z + b
            z = model.activation_.fn(y) if k < len(model.network_params_) - 1 else y
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
        assert trapezoid(trapezoid(density, g, axis=1), g) == pytest.approx(1.0, abs=0.02)


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
    with pytest.raises(NotFittedError, match="not fitted yet"):
        small_model().sample(3, y=0)


# ---------------------------------------------------------------------------------------------
# the label posterior and the hybrid objective


@pytest.fixture(scope="module")
def hybrid_fit():
    data = make_segmented_mixture(n_segments=4, n_per_segment=60, n_components=2, n_layers=1, random_state=0)
    labels = np.array(["a", "b", "c", "d"])[data.u_train]
    model = nica.ConditionalNonlinearICA(n_layers=2, max_iter=1, contrastive_weight=5.0, random_state=0)
    with pytest.warns(ConvergenceWarning, match="max_iter=1"):
        model.fit(data.X_train, labels)
    return model, data, labels


def test_predict_proba_is_the_posterior_from_transform_and_the_prior(hybrid_fit):
    model, data, _ = hybrid_fit
    S = model.transform(data.X_test)
    scale, loc = np.exp(model.prior_params_["log_scale"]), model.prior_params_["loc"]
    per_segment = np.stack(
        [stats.laplace.logpdf(S, loc[m], scale[m] / np.sqrt(2)).sum(axis=1) for m in range(4)], axis=1
    )
    expected = np.exp(log_softmax(per_segment, axis=1))
    proba = model.predict_proba(data.X_test)
    np.testing.assert_allclose(proba, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(model.predict(data.X_test), model.classes_[np.argmax(expected, axis=1)])


def test_the_monitored_score_is_the_validation_hybrid_objective(hybrid_fit):
    """With one epoch the kept parameters are the scored ones: the validation score is the
    validation rows' mean log-likelihood − α · their mean cross-entropy (the split drawn as
    the estimator draws it), while ``score`` stays the exact log-likelihood."""
    model, data, labels = hybrid_fit
    rng = np.random.RandomState(0)
    rng.randint(np.iinfo(np.int32).max)
    n = data.X_train.shape[0]
    val = rng.permutation(n)[: max(1, int(round(0.1 * n)))]
    X_val, y_val = data.X_train[val], labels[val]
    proba = model.predict_proba(X_val)
    cross_entropy = -np.mean(np.log(proba[np.arange(len(val)), np.searchsorted(model.classes_, y_val)]))
    ll = model.score(X_val, y_val)
    assert model.validation_scores_[0] == pytest.approx(ll - 5.0 * cross_entropy, rel=1e-4, abs=1e-4)
    assert ll == pytest.approx(np.mean(model.score_samples(X_val, y_val)))


def test_predict_proba_needs_discrete_labels(hybrid_fit):
    model = copy.copy(hybrid_fit[0])
    model.aux_type_ = "continuous"  # as a model fitted with a continuous u (no second fit)
    with pytest.raises(ValueError, match="discrete segment labels"):
        model.predict_proba(hybrid_fit[1].X_test)


def test_contrastive_weight_auto_is_two_for_labels_and_zero_for_continuous_u():
    """``"auto"``: the hybrid objective (α = 2) for segment labels, the exact likelihood for a
    continuous u; the fit with "auto" on labels is the fit with α = 2, not the one with α = 0."""
    data = make_segmented_mixture(n_segments=4, n_per_segment=60, n_components=2, n_layers=1, random_state=3)
    kw = dict(n_layers=2, max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        auto = nica.ConditionalNonlinearICA(**kw).fit(data.X_train, data.u_train)
        two = nica.ConditionalNonlinearICA(contrastive_weight=2.0, **kw).fit(data.X_train, data.u_train)
        zero = nica.ConditionalNonlinearICA(contrastive_weight=0.0, **kw).fit(data.X_train, data.u_train)
        continuous = nica.ConditionalNonlinearICA(**kw).fit(data.X_train, data.u_train + 0.5)
    assert auto.contrastive_weight == "auto" and auto.contrastive_weight_ == 2.0
    # the exact validation log-likelihood is recorded beside the monitored score: the score
    # itself with α = 0; with α = 2 the hybrid objective plus α times the cross-entropy, above it
    assert zero.validation_log_likelihoods_ == zero.validation_scores_
    ll, score = np.asarray(auto.validation_log_likelihoods_), np.asarray(auto.validation_scores_)
    assert ll.shape == score.shape == (auto.n_iter_,) and np.all(ll > score)
    assert zero.contrastive_weight_ == 0.0 and continuous.contrastive_weight_ == 0.0
    assert continuous.aux_type_ == "continuous"
    np.testing.assert_array_equal(auto.transform(data.X_test), two.transform(data.X_test))
    assert np.max(np.abs(auto.transform(data.X_test) - zero.transform(data.X_test))) > 1e-6
    with pytest.raises(ValueError, match="contrastive_weight must be a finite number >= 0 or 'auto'"):
        nica.ConditionalNonlinearICA(contrastive_weight="big").fit(data.X_train, data.u_train)
    # a warm start cannot switch a continuous-u model to the hybrid objective
    continuous.set_params(warm_start=True, contrastive_weight=1.0)
    with pytest.raises(ValueError, match="discrete auxiliary variable"):
        continuous.fit(data.X_train, data.u_train + 0.5)


def test_averaging_is_taken_and_a_warm_start_under_another_averaging_continues():
    data = make_segmented_mixture(n_segments=4, n_per_segment=200, n_components=2, n_layers=2, random_state=0)
    model = nica.ConditionalNonlinearICA(n_layers=2, averaging=0.5, max_iter=3, random_state=0)
    assert clone(model).get_params()["averaging"] == 0.5
    with pytest.warns(ConvergenceWarning, match="max_iter=3"):
        model.fit(data.X_train, data.u_train)
    # a warm start under another averaging continues (the average's slot added or dropped)
    for tau in (0.0, 1.0):
        with pytest.warns(ConvergenceWarning, match="max_iter=3"):
            model.set_params(warm_start=True, averaging=tau).fit(data.X_train, data.u_train)
    assert model.n_iter_ == 9 and np.isfinite(model.score(data.X_test, data.u_test))


def test_divergence_stops_restores_the_best_parameters_and_warns(X, u):
    """A rate far too large: the epoch that diverges (a NaN loss) ends the fit, is not recorded,
    and the best network and prior parameters so far are restored, with a warning naming the
    rate.  (NonlinearICA: tests/test_nonlinear.py; the loop: tests/test_fitting.py.)"""
    model = nica.ConditionalNonlinearICA(
        n_layers=2,
        max_iter=5,
        batch_size=64,
        optimizer="sgd",
        learning_rate=1e6,
        gradient="relative",
        early_stopping=False,
        random_state=0,
    )
    with pytest.warns(
        ConvergenceWarning,
        match=r"diverged at epoch (\d+) .*learning_rate=1000000\.0; stopped and "
        r"restored the parameters of epoch \d+",
    ) as record:
        model.fit(X, u)
    diverged_at = int(re.search(r"epoch (\d+)", str(record[-1].message)).group(1))
    assert model.n_iter_ == diverged_at < 5 and model.best_iter_ < diverged_at
    assert len(model.loss_curve_) == diverged_at - 1  # the non-finite epoch is not recorded
    assert all(np.isfinite(leaf).all() for leaf in jax.tree_util.tree_leaves((model.params_, model.prior_params_)))
    assert np.isfinite(model.score_samples(X, u)).all()


# ---------------------------------------------------------------------------------------------
# misuse: data and hyperparameters


@pytest.mark.parametrize("name, bad, error, match", BAD_X, ids=[case[0] for case in BAD_X])
def test_fit_refuses_bad_X_and_a_failed_fit_changes_nothing(fitted_conditional, u, name, bad, error, match):
    before = snapshot(fitted_conditional)
    n = len(bad) if hasattr(bad, "__len__") and not hasattr(bad, "tocsr") else N
    with pytest.raises(error, match=match):
        fitted_conditional.fit(bad, u[:n] if n <= N else u)
    assert_unchanged(fitted_conditional, before)


FITTED_BAD_X = [case for case in BAD_X if case[0] not in ("no columns",)] + [
    (
        "wrong width",
        np.ones((4, D - 1)),
        ValueError,
        "X has 2 features, but ConditionalNonlinearICA is expecting 3 features",
    ),
    (
        "too wide",
        np.ones((4, D + 1)),
        ValueError,
        "X has 4 features, but ConditionalNonlinearICA is expecting 3 features",
    ),
]


@pytest.mark.parametrize("name, bad, error, match", FITTED_BAD_X, ids=[case[0] for case in FITTED_BAD_X])
def test_fitted_methods_refuse_bad_X(fitted_conditional, name, bad, error, match):
    before = snapshot(fitted_conditional)
    model = fitted_conditional
    for method in (
        model.transform,
        model.inverse_transform,
        model.score_samples,
        model.score,
        model.predict_proba,
        model.predict,
    ):
        if method.__name__ in ("score_samples", "score") and name in ("None", "scalar"):
            # the marginal score counts the rows first: scikit-learn's _num_samples refuses
            error_, match_ = TypeError, f"Expected sequence or array-like, got {type(bad)}"
        else:
            error_, match_ = error, match
        with pytest.raises(error_, match=match_):
            method(bad)
    assert_unchanged(fitted_conditional, before)


def test_unfitted_methods_raise_not_fitted(X):
    model = nica.ConditionalNonlinearICA()
    for call in (
        lambda: model.transform(X),
        lambda: model.inverse_transform(X),
        lambda: model.score_samples(X),
        lambda: model.sample(2),
        lambda: model.sample(3, y=0),
        lambda: model.predict_proba(X),
    ):
        with pytest.raises(NotFittedError, match="This ConditionalNonlinearICA instance is not fitted yet"):
            call()
    with pytest.raises(AttributeError, match="This ConditionalNonlinearICA instance is not fitted yet; components_"):
        model.components_


def test_the_fitted_check_copies_nothing_to_the_host(fitted_conditional):
    """check_is_fitted, and the warm-start decision of fit/partial_fit, never read params_."""
    with mock.patch.object(inference_module, "to_numpy", side_effect=AssertionError("host copy")):
        check_is_fitted(fitted_conditional)
        assert fitted_conditional.__sklearn_is_fitted__()
        assert fitted_conditional._continue_fit(True)
    assert not nica.ConditionalNonlinearICA().__sklearn_is_fitted__()


@pytest.mark.parametrize("params, error, match", BAD_HYPERPARAMETERS, ids=BAD_HYPERPARAMETER_IDS)
def test_bad_hyperparameters_are_refused(X, u, params, error, match):
    with pytest.raises(error, match=match):
        nica.ConditionalNonlinearICA(**{**TINY, **params}).fit(X, u)


@pytest.mark.parametrize(
    "params, error, match",
    [
        (
            {"aux_type": "ordinal"},
            ValueError,
            r"aux_type must be one of \('auto', 'discrete', 'continuous'\); got 'ordinal'",
        ),
        ({"hidden_units": 0}, ValueError, r"hidden_units must be an integer in \[1, 2147483647\]; got 0"),
        ({"hidden_units": 2**70}, ValueError, rf"hidden_units must be an integer in \[1, 2147483647\]; got {2**70}\."),
        ({"learn_location": "yes"}, TypeError, "learn_location must be a bool; got 'yes'"),
        (
            {"contrastive_weight": -1.0},
            ValueError,
            "contrastive_weight must be a finite number >= 0 or 'auto'; got -1.0",
        ),
        (
            {"contrastive_weight": "big"},
            ValueError,
            "contrastive_weight must be a finite number >= 0 or 'auto'; got 'big'",
        ),
        (
            {"objective": nica.objectives.likelihood(), "contrastive_weight": 1.0},
            ValueError,
            "give objective or contrastive_weight, not both",
        ),
    ],
)
def test_bad_conditional_hyperparameters(X, u, params, error, match):
    with pytest.raises(error, match=match):
        nica.ConditionalNonlinearICA(**{**TINY, **params}).fit(X, u)


def test_conditional_prior_objects_are_refused_with_the_way_out(X, u):
    conditional = priors.segment_conditional("laplace", 2)
    with pytest.raises(ValueError, match=r"got the conditional SegmentConditional: .*pass prior=Laplace\(\)"):
        nica.ConditionalNonlinearICA(**TINY, prior=conditional).fit(X, u)
    with pytest.raises(ValueError, match="got the conditional MLPConditional"):
        nica.ConditionalNonlinearICA(**TINY, prior=priors.mlp_conditional("gaussian", 1)).fit(X, u)


def test_the_contrastive_term_needs_discrete_labels():
    X = np.random.default_rng(0).standard_normal((40, 2))
    with pytest.raises(ValueError, match="discrete auxiliary variable"):
        nica.ConditionalNonlinearICA(n_layers=1, max_iter=1, contrastive_weight=1.0).fit(X, np.linspace(0, 1, 40))
    with pytest.raises(ValueError, match="discrete auxiliary variable"):
        nica.ConditionalNonlinearICA(aux_type="continuous", contrastive_weight=1.0).fit(X, np.arange(40) % 2)


@pytest.mark.parametrize("n_samples", [0, -1, 2.5, True, "3", None])
def test_sample_refuses_bad_counts(fitted_conditional, n_samples):
    message = f"n_samples must be an integer >= 1; got {re.escape(repr(n_samples))}"
    with pytest.raises(ValueError, match=message):
        fitted_conditional.sample(n_samples)
    with pytest.raises(ValueError, match=message):
        fitted_conditional.sample(n_samples, y=0)


@pytest.mark.parametrize("n_samples", [2**31, 2**70])
def test_sample_refuses_counts_no_array_can_hold(fitted_conditional, n_samples):
    message = rf"n_samples must be an integer in \[1, 2147483647\]; got {n_samples}"
    with pytest.raises(ValueError, match=message):
        fitted_conditional.sample(n_samples)
    with pytest.raises(ValueError, match=message):
        fitted_conditional.sample(n_samples, y=0)


def test_predict_proba_of_one_row(fitted_conditional):
    X = np.random.default_rng(3).normal(size=(1, fitted_conditional.n_features_in_))
    proba = fitted_conditional.predict_proba(X)
    assert proba.shape == (1, fitted_conditional.classes_.size)
    assert np.all(np.isfinite(proba)) and np.isclose(proba.sum(), 1.0)
    assert fitted_conditional.predict(X).shape == (1,)


# ---------------------------------------------------------------------------------------------
# misuse: the auxiliary variable y


BAD_Y_FIT = [  # (name, y, error, message fragment)
    ("None", None, ValueError, "requires y to be passed"),
    ("too short", np.arange(10), ValueError, "inconsistent numbers of samples"),
    ("scalar", 3, TypeError, "at least 1 dimension"),
    ("empty", [], ValueError, "0 sample"),
    ("NaN", np.r_[np.nan, np.arange(N - 1.0)], ValueError, "Input y contains NaN"),
    ("infinity", np.r_[np.inf, np.arange(N - 1.0)], ValueError, "Input y contains infinity"),
    ("complex", np.arange(N) + 1j, ValueError, "Complex data not supported"),
    ("3-D", np.zeros((N, 1, 1)), ValueError, "dim 3"),
    ("2-D text labels", np.c_[np.arange(N), np.arange(N)].astype(str), ValueError, "must be 1-D"),
    (
        "numbers and text",
        np.array([1, "a"] * (N // 2), dtype=object),
        ValueError,
        r"labels of one kind .* got labels of the kinds \['number', 'string'\]",
    ),
    ("bools and numbers", [True, 1, False, 0] * (N // 4), ValueError, r"of the kinds \['bool', 'number'\]"),
    ("text and numbers in a list", ["1", 1] * (N // 2), ValueError, r"of the kinds \['number', 'string'\]"),
    ("None entries", np.array([1, None] * (N // 2), dtype=object), ValueError, r"\['NoneType', 'number'\]"),
    (
        "text as continuous",
        np.array(["a", "b"] * (N // 2)),
        ValueError,
        "continuous auxiliary variable y must be numeric",
    ),
]


@pytest.mark.parametrize("name, y, error, match", BAD_Y_FIT, ids=[case[0] for case in BAD_Y_FIT])
def test_conditional_fit_refuses_bad_y_and_changes_nothing(fitted_conditional, X, name, y, error, match):
    before = snapshot(fitted_conditional)
    attrs = (fitted_conditional.aux_type_, fitted_conditional.classes_.copy())
    model = fitted_conditional
    if name == "text as continuous":
        model.set_params(aux_type="continuous")
    try:
        with pytest.raises(error, match=match):
            model.fit(X, y)
    finally:
        model.set_params(aux_type="auto")
    assert_unchanged(fitted_conditional, before)
    assert fitted_conditional.aux_type_ == attrs[0]
    np.testing.assert_array_equal(fitted_conditional.classes_, attrs[1])


BAD_Y_AFTER_FIT = [
    (
        "unseen labels",
        np.arange(N) % 4 + 10,
        ValueError,
        r"4 segment label\(s\) not seen during fit: \[10, 11, 12, 13\]",
    ),
    ("fractional labels", np.arange(N) % 4 + 0.5, ValueError, "not seen during fit"),
    ("NaN label", np.r_[np.nan, np.arange(N - 1) % 4], ValueError, r"not seen during fit: \[nan\]"),
    ("text among numbers", np.array([0, "a"] * (N // 2), dtype=object), ValueError, r"\['number', 'string'\]"),
    ("bools among numbers", [True, 0, 1, 2] * (N // 4), ValueError, r"of the kinds \['bool', 'number'\]"),
    ("None labels", np.array([None] * N, dtype=object), ValueError, "labels of one kind"),
    ("wrong length", np.arange(5), ValueError, r"one entry per sample \(200\)"),
    ("2-D", np.zeros((N, 2), int), ValueError, "Segment labels y must be 1-D"),
]


@pytest.mark.parametrize("name, y, error, match", BAD_Y_AFTER_FIT, ids=[case[0] for case in BAD_Y_AFTER_FIT])
def test_conditional_score_and_sample_refuse_bad_y(fitted_conditional, X, name, y, error, match):
    with pytest.raises(error, match=match):
        fitted_conditional.score_samples(X, y)
    if name not in ("wrong length",):
        with pytest.raises(error, match=match):
            fitted_conditional.sample(y=y)


def test_continuous_u_after_fit():
    """The checks of a continuous u, on the state a fit with a 2-D u leaves (no fit needed)."""
    model = nica.ConditionalNonlinearICA()
    model.aux_type_, model.aux_mean_, model.aux_scale_ = "continuous", np.zeros(2), np.ones(2)
    for y, match in [
        (np.zeros((N, 3)), "y has 3 auxiliary dimensions but the model was fitted with 2"),
        (np.full((N, 2), np.nan), "NaN or infinity"),
        (np.zeros((N, 2, 1)), "must be 1-D or 2-D"),
        (np.array([["a", "b"]] * N), "must be numeric; got dtype <U1"),
        (np.zeros((5, 2)), r"one entry per sample \(200\)"),
    ]:
        with pytest.raises(ValueError, match=match):
            model._encode_aux(y, N, np.float64)


def test_warm_start_of_the_conditional_model(X, u):
    model = nica.ConditionalNonlinearICA(**TINY, warm_start=True).fit(X, u)
    model.set_params(learn_location=False)
    with pytest.warns(UserWarning, match=r"learn_location \(True -> False\) changed"):
        model.fit(X, u)
    assert "loc" not in model.prior_params_ and model.n_iter_ == 2
    before = snapshot(model)
    model.set_params(prior="gaussian", aux_type="continuous")
    with (
        pytest.warns(
            UserWarning, match=r"prior \(Laplace\(\) -> Gaussian\(\)\), aux_type \('discrete' -> 'continuous'\)"
        ),
        pytest.raises(ValueError, match="Input y contains NaN"),
    ):
        model.fit(X, np.full(N, np.nan))
    assert_unchanged(model, before)


def test_y_is_required_to_fit(X):
    with pytest.raises(TypeError, match=r"fit\(\) missing 1 required positional argument: 'y'"):
        nica.ConditionalNonlinearICA(**TINY).fit(X)


# ---------------------------------------------------------------------------------------------
# how y is read: a time index, labels of several kinds, partial_fit's first chunk


def small_segments(n_segments, n_samples, singles):
    return re.escape(
        f"y has {n_segments} segment labels for {n_samples} rows ({singles} segment(s) of a single row): each "
        "segment gets its own scale and location, which one or two rows cannot estimate (a one-row segment's "
        "likelihood is unbounded). If y is a time index or another continuous variable, pass "
        "aux_type='continuous'; to use it for segments, pass one label per window of rows, e.g. y // window."
    )


def user_warnings(record):
    return [str(w.message) for w in record if w.category is UserWarning]


@pytest.mark.parametrize(
    "y, aux_type, expected",
    [
        (np.arange(N) * 1.0, "auto", ("discrete", small_segments(N, N, N))),  # whole-number floats: labels
        (np.arange(N), "discrete", ("discrete", small_segments(N, N, N))),
        (np.arange(N) // 2, "auto", ("discrete", None)),  # 100 segments of 2 rows: not more than half the rows
        (np.r_[np.arange(N - 1) // 50, 99], "auto", ("discrete", small_segments(5, N, 1))),  # one stray label
        (np.arange(N) * 0.01, "auto", ("continuous", None)),  # a time index in seconds: continuous
        ((np.arange(N) * 0.01) // 0.5, "auto", ("discrete", None)),  # the fix: windows of 50 rows
        (np.arange(N) * 1.0, "continuous", ("continuous", None)),  # the other fix
    ],
    ids=["whole floats", "explicit discrete", "pairs", "stray label", "seconds", "windows", "continuous"],
)
def test_a_time_index_given_as_labels_warns_with_the_fix(X, y, aux_type, expected):
    """aux_type="auto" reads floats that are not all whole numbers as continuous; labels with more
    segments than half the rows, or a segment of one row, warn with the count and the fix."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        model = nica.ConditionalNonlinearICA(**TINY, aux_type=aux_type).fit(X, y)
    assert model.aux_type_ == expected[0]
    found = user_warnings(record)
    if expected[1] is None:
        assert found == []
    else:
        assert len(found) == 1 and re.fullmatch(expected[1], found[0])
        assert [w.filename for w in record if w.category is UserWarning] == [__file__]  # the user's call


def test_partial_fit_does_not_judge_segments_by_the_first_chunk(X):
    """A chunk holds a part of each segment: its segment sizes do not warn."""
    u = np.r_[np.arange(N - 1) // 50, 99]  # a label with one row in the chunk
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        model = nica.ConditionalNonlinearICA(**TINY).partial_fit(X, u)
    assert user_warnings(record) == [] and model.classes_.size == 5


@pytest.mark.parametrize(
    "y, kinds",
    [
        ([True, 1, False, 0] * (N // 4), ["bool", "number"]),  # NumPy: [1, 1, 0, 0], two classes
        (np.array([True, 2, False, 3] * (N // 4), dtype=object), ["bool", "number"]),
        (["1", 1, "a", 2] * (N // 4), ["number", "string"]),  # NumPy: ['1', '1', 'a', '2']
        ([np.bool_(True), np.int64(1)] * (N // 2), ["bool", "number"]),
    ],
    ids=["list", "object array", "text and numbers", "NumPy scalars"],
)
def test_labels_of_several_kinds_are_refused(fitted_conditional, X, y, kinds):
    """True and 1 (or '1' and 1) are different labels, which NumPy would merge: refused in fit,
    score_samples and sample, naming the kinds; a refused fit leaves the model as it was."""
    before = snapshot(fitted_conditional)
    with pytest.raises(ValueError, match=f"^{mixed(kinds)}$"):
        fitted_conditional.fit(X, y)
    assert_unchanged(fitted_conditional, before)
    with pytest.raises(ValueError, match=f"^{mixed(kinds)}$"):
        nica.ConditionalNonlinearICA(**TINY).partial_fit(X, y)
    with pytest.raises(ValueError, match=f"^{mixed(kinds)}$"):
        fitted_conditional.score_samples(X, y)
    with pytest.raises(ValueError, match=f"^{mixed(kinds)}$"):
        fitted_conditional.sample(y=y[:4])
    # one kind is fine: bools are labels of their own
    model = nica.ConditionalNonlinearICA(**TINY).fit(X, [True, False] * (N // 2))
    np.testing.assert_array_equal(model.classes_, [False, True])


def first_chunk(kept, n_rows):
    return re.escape(
        f"partial_fit's first chunk fits the whitening that every later chunk keeps, so it needs more rows than "
        f"the {kept} directions the model keeps; got {n_rows} rows. Pass a first chunk of at least {kept + 1} rows "
        "(later chunks may be of any size), or whiten=False."
    )


@pytest.mark.parametrize("n_layers", [1, 2])
def test_partial_fit_refuses_a_first_chunk_too_small_to_whiten(X, u, n_layers):
    """The first chunk fixes the whitening for good: no more rows than the directions it keeps
    is refused (with one layer it was FastICA's raw shape error); later chunks may be small."""
    model = nica.ConditionalNonlinearICA(**{**TINY, "n_layers": n_layers})
    for rows in (1, D):
        with pytest.raises(ValueError, match=f"^{first_chunk(D, rows)}$"):
            model.partial_fit(X[:rows], u[:rows])
        assert not model.__sklearn_is_fitted__()
    with pytest.raises(ValueError, match=f"^{first_chunk(2, 2)}$"):
        clone(model).set_params(n_components=2).partial_fit(X[:2], u[:2])
    clone(model).set_params(n_components=2).partial_fit(X[:3], u[:3])  # 3 rows: 2 directions vary
    clone(model).set_params(whiten=False).partial_fit(X[:1], u[:1])  # nothing to whiten
    model.partial_fit(X[: D + 1], u[: D + 1])
    model.partial_fit(X[:1], u[:1])  # later chunks: any size
    assert model.n_iter_ == 2


# ---------------------------------------------------------------------------------------------
# model selection: labels unseen in fit, and a splitter stratified by the labels


def unseen_in_score(unseen, known):
    return re.escape(
        f"y contains {len(unseen)} segment label(s) not seen during fit: {unseen}; the model knows "
        f"{len(known)} labels ({known}): a segment fit never saw has no scale or location to score it with. "
        "In cross-validation, split so that every training fold holds every segment: a splitter stratified "
        "by the labels, e.g. GridSearchCV(model, grid, cv=StratifiedKFold(3)).fit(X, y) "
        "(sklearn.model_selection.StratifiedKFold stratifies on y), not cv=3, which cuts segment-ordered "
        "rows into blocks of whole segments."
    )


def test_unseen_labels_are_refused_with_the_fix(fitted_conditional, X, u):
    with pytest.raises(ValueError, match=f"^{unseen_in_score([7, 9], [0, 1, 2, 3])}$"):
        fitted_conditional.score(X[:4], [0, 7, 9, 7])
    with pytest.raises(ValueError, match=f"^{unseen_in_score([7], [0, 1, 2, 3])}$"):
        fitted_conditional.score_samples(X[:2], [7, 0])
    # a continued fit keeps the labels of the first: the message says so
    model = copy.deepcopy(fitted_conditional)
    with pytest.raises(ValueError, match=r"not seen during fit: \[7\].*partial_fit and a warm-started fit keep"):
        model.partial_fit(X[:2], [7, 0])


@pytest.fixture(scope="module")
def segment_ordered():
    """Four segments of 60 rows, in order (as a recording is)."""
    data = make_segmented_mixture(n_segments=4, n_per_segment=60, n_components=2, n_layers=1, random_state=0)
    assert np.all(np.diff(data.u_train) >= 0)
    return data.X_train, data.u_train


GRID_MODEL = dict(n_layers=1, max_iter=2, batch_size=64, early_stopping=False, random_state=0)


def test_grid_search_with_a_stratified_splitter_scores_every_fold(segment_ordered):
    """StratifiedKFold stratifies on y, the labels: every training fold holds every segment, so
    every fold scores a finite conditional log-likelihood and the search chooses by them."""
    X, u = segment_ordered
    search = GridSearchCV(
        nica.ConditionalNonlinearICA(**GRID_MODEL), {"learning_rate": [1e-3, 1e-2]}, cv=StratifiedKFold(3)
    ).fit(X, u)
    scores = np.array([search.cv_results_[f"split{k}_test_score"] for k in range(3)])
    assert scores.shape == (3, 2) and np.isfinite(scores).all()
    assert search.best_params_["learning_rate"] == [1e-3, 1e-2][int(np.argmax(scores.mean(axis=0)))]
    fold = next(StratifiedKFold(3).split(X, u))[0]
    np.testing.assert_array_equal(np.unique(u[fold]), [0, 1, 2, 3])


def test_grid_search_with_cv_3_on_segment_ordered_rows_says_why_it_fails(segment_ordered):
    """cv=3 cuts the ordered rows into blocks of 80: the first test fold holds segment 0, which
    its training rows lack, the last segment 3.  GridSearchCV turns the refusal into NaN scores
    with a warning for each: it carries the message and the fix."""
    X, u = segment_ordered
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        search = GridSearchCV(nica.ConditionalNonlinearICA(**GRID_MODEL), {"learning_rate": [1e-3]}, cv=3).fit(X, u)
    scores = [search.cv_results_[f"split{k}_test_score"][0] for k in range(3)]
    assert np.isnan(scores[0]) and np.isfinite(scores[1]) and np.isnan(scores[2])
    assert np.isnan(search.cv_results_["mean_test_score"]).all()
    failed = [str(w.message) for w in record if "Scoring failed" in str(w.message)]
    assert len(failed) == 2
    assert re.search(unseen_in_score([0], [1, 2, 3]), failed[0])
    assert re.search(unseen_in_score([3], [0, 1, 2]), failed[1])


# ---------------------------------------------------------------------------------------------
# the progress bar says what the curve is


def last_postfix(err):
    """The last postfix of the progress bar (``key=value, ...`` after the rate), as floats."""
    last = re.findall(r"(?:s/it|it/s), ([^\]]+)\]", err)[-1]
    return {key: float(value) for key, value in re.findall(r"([a-z_]+)=(-?[\d.]+)", last)}


@pytest.mark.parametrize("weight", [0.0, 2.0])
def test_the_progress_bar_names_each_term_of_the_objective(capsys, weight):
    """verbose=1: the likelihood shows train_nll and val_nll; the hybrid objective is named in the
    bar's label and shows train_objective, the exact val_nll, val_label_cross_entropy and
    val_objective, each the value the fitted attributes record for the last epoch."""
    data = make_segmented_mixture(n_segments=4, n_per_segment=60, n_components=2, n_layers=1, random_state=0)
    model = nica.ConditionalNonlinearICA(n_layers=1, max_iter=2, contrastive_weight=weight, random_state=0, verbose=1)
    model.fit(data.X_train, data.u_train)
    err = capsys.readouterr().err
    shown = last_postfix(err)
    assert shown["val_nll"] == pytest.approx(-model.validation_log_likelihoods_[-1], abs=1e-4)
    assert shown["val_nll"] == pytest.approx(model.validation_terms_["nll"][-1], abs=1e-4)
    if weight == 0:
        assert model.objective_.label == "nll" and "ConditionalNonlinearICA:" in err
        assert sorted(shown) == ["train_nll", "val_nll"]
        assert shown["train_nll"] == pytest.approx(model.loss_curve_[-1], abs=1e-4)
        return
    assert model.objective_.label == "nll + 2·label_cross_entropy"
    assert "ConditionalNonlinearICA (nll + 2*label_cross_entropy):" in err
    assert sorted(shown) == ["train_objective", "val_label_cross_entropy", "val_nll", "val_objective"]
    assert shown["train_objective"] == pytest.approx(model.loss_curve_[-1], abs=1e-4)
    ce = model.validation_terms_["label_cross_entropy"][-1]
    assert shown["val_label_cross_entropy"] == pytest.approx(ce, abs=1e-4)
    assert shown["val_objective"] == pytest.approx(-model.validation_scores_[-1], abs=1e-4)
    assert -model.validation_scores_[-1] == pytest.approx(model.validation_terms_["nll"][-1] + 2 * ce)


# ---------------------------------------------------------------------------------------------
# random arrays and labels of random types


AFTER_FIT_SHAPES = [(2, D), (2, D), (0, D), (2, D - 1), (D,), (2, D, 1), ()]


@FUZZ
@given(data=arrays(AFTER_FIT_SHAPES))
def test_fitted_methods_on_random_arrays(fitted_conditional, data):
    """The predicted error, or (2-D numbers of the right width, finite: |x| <= 1e100 here) a
    finite result for every row; the marginal score counts the rows first."""
    before = params_of(fitted_conditional)
    model = fitted_conditional
    refusal = validation_refusal(data, "ConditionalNonlinearICA", n_features=D)
    for method in (model.transform, model.inverse_transform, model.score_samples):
        expected = refusal
        if method.__name__ == "score_samples" and data.ndim == 0:
            expected = TypeError, "Input should have at least 1 dimension"
        if expected is not None:
            with pytest.raises(expected[0], match=expected[1]):
                method(data)
            continue
        out = method(data)
        assert out.shape[0] == data.shape[0] and np.isfinite(out).all()
    assert_same(before, params_of(fitted_conditional))


def _kind(label):
    if label is None:
        return "NoneType"
    return "bool" if isinstance(label, bool) else "string" if isinstance(label, str) else "number"


def _kinds(labels):
    return sorted({_kind(v) for v in labels})


def _sortable(labels):
    """Whether NumPy can sort ``labels`` (an object array of one kind): one element, or numbers
    only, or strings only."""
    return len(labels) <= 1 or _kinds(labels) in (["number"], ["string"])


UNSORTABLE = r"y must hold labels of one kind, all numbers or all strings, that can be sorted; got labels of the kinds"


def mixed(kinds):
    """The refusal of labels of several kinds, before NumPy merges True with 1."""
    return re.escape(
        f"y must hold labels of one kind (all numbers, all bools or all strings); got labels of the kinds {kinds}. "
        "NumPy would turn [True, 1] into [1, 1] and ['1', 1] into ['1', '1'], merging labels that differ: "
        "convert the labels to one kind first."
    )


@settings(FUZZ, max_examples=8)
@given(values=st.lists(LABELS, min_size=4, max_size=4))
def test_conditional_fit_on_mixed_labels(fitted_conditional, X, u, values):
    """Four labels of random types, one per segment: refused, naming y and the kinds, when they
    are of several kinds (bools with numbers: True and 1 would merge; numbers with text; None),
    else the same fit as with 0..3 (labels are only names; equal numbers such as 1 and 1.0 are
    one label)."""
    assume(len(set(map(repr, values))) == 4)
    y = np.array(values, dtype=object)[u]
    before = params_of(fitted_conditional)
    model = clone(fitted_conditional).set_params(aux_type="discrete")
    if len(_kinds(values)) > 1:
        for estimator in (model, fitted_conditional):
            with pytest.raises(ValueError, match=mixed(_kinds(values))):
                estimator.fit(X, y)
            with pytest.raises(ValueError, match=mixed(_kinds(values))):
                estimator.fit(X, y.tolist())  # a list too, which NumPy would convert
        assert_same(before, params_of(fitted_conditional))
        return
    model.fit(X, y)
    assert model.classes_.size == len(set(values)) and set(model.classes_.tolist()) == set(values)
    assert np.isfinite(model.score_samples(X, y)).all()
    assert np.isfinite(model.sample(3, y=y[:3])).all()


@FUZZ
@given(values=st.lists(LABELS, min_size=1, max_size=6))
def test_conditional_scoring_on_random_labels(fitted_conditional, X, values):
    """Labels of one kind that the model knows (0..3, floats equal to them, or bools, which NumPy
    compares as 0 and 1) are scored; the others are refused, naming y: labels of several kinds,
    unseen labels, or labels that cannot be sorted."""
    y = np.resize(np.array(values, dtype=object), 8)
    before = params_of(fitted_conditional)
    if len(_kinds(y)) > 1:
        with pytest.raises(ValueError, match=mixed(_kinds(y))):
            fitted_conditional.score_samples(X[:8], y)
        assert_same(before, params_of(fitted_conditional))
        return
    unseen = [v for v in y if v is None or isinstance(v, str) or v not in (0, 1, 2, 3)]
    if unseen:
        n_unseen = len(set(unseen)) if _sortable(unseen) else None
        match = UNSORTABLE if n_unseen is None else rf"y contains {n_unseen} segment label\(s\) not seen during fit"
        with pytest.raises(ValueError, match=match):
            fitted_conditional.score_samples(X[:8], y)
        assert_same(before, params_of(fitted_conditional))
        return
    out = fitted_conditional.score_samples(X[:8], y)
    assert out.shape == (8,) and np.isfinite(out).all()


def test_n_components_keeps_the_principal_subspace_and_scores_the_whole_space(segmented):
    """Two sensors more than sources: the conditional model unmixes the kept subspace, and its
    likelihood is the kept subspace's (segment marginal) plus the discarded directions'
    isotropic Gaussian, computed here by hand from the eigenvectors."""
    rng = np.random.default_rng(0)
    lift = rng.normal(size=(2, 4))
    X = segmented.X_train @ lift + 1e-2 * rng.normal(size=(len(segmented.X_train), 4))
    model = small_model(n_components=2).fit(X, segmented.u_train)
    assert model.transform(X).shape == (len(X), 2) and model.sample(5, random_state=0).shape == (5, 4)
    eigval, eigvec = np.linalg.eigh(np.cov(X, rowvar=False, bias=True))
    R = (X - model.mean_) @ eigvec[:, :2]
    sigma2 = np.mean(eigval[:2])
    gaussian = stats.multivariate_normal(np.zeros(2), sigma2 * np.eye(2)).logpdf(R)
    assert model.noise_variance_ == pytest.approx(sigma2, rel=1e-8)
    # the kept part: the same network on the whitened rows, through the functional core
    Z = (X - model.mean_) @ model.whitening_.T
    core = nica.log_likelihood(
        model.network_params_,
        Z,
        activation=model.activation_,
        prior=model.prior_,
        prior_params=model.prior_params_,
        u=model._encode_aux(segmented.u_train, len(X), X.dtype),  # noqa: SLF001 - the encoded labels
    )
    expected = np.asarray(core) + np.log(abs(np.linalg.det(model.whitening_ @ eigvec[:, 2:]))) + gaussian
    np.testing.assert_allclose(model.score_samples(X, segmented.u_train), expected, rtol=1e-8)


# ---------------------------------------------------------------------------------------------
# checkpoints (NonlinearICA's machinery, tests/test_checkpoint.py): resumed with the auxiliary
# variable


@pytest.fixture(scope="module")
def checkpoint_data():
    data = make_segmented_mixture(n_segments=4, n_per_segment=100, n_components=2, n_layers=1, random_state=0)
    continuous = np.random.default_rng(1).normal(size=(data.X_train.shape[0], 2))
    return data.X_train, {"discrete": data.u_train, "continuous": continuous}


CHECKPOINTED = dict(n_layers=2, max_iter=6, batch_size=32, learning_rate=3e-3, n_iter_no_change=3, random_state=0)


@pytest.mark.parametrize("aux", ["discrete", "continuous"])
def test_interrupted_and_resumed_conditional_fit_equals_the_uninterrupted_fit(
    checkpoint_data, tmp_path, monkeypatch, aux
):
    X, y = checkpoint_data[0], checkpoint_data[1][aux]
    full = nica.ConditionalNonlinearICA(**CHECKPOINTED).fit(X, y)
    path = tmp_path / "fit.nica"
    calls = interrupt_after_checkpoints(monkeypatch, 2)
    with pytest.raises(Interrupt):
        nica.ConditionalNonlinearICA(checkpoint_path=path, checkpoint_every=2, **CHECKPOINTED).fit(X, y)
    monkeypatch.undo()
    assert calls["written"] == 2
    saved = nica.load(path)
    assert saved.n_iter_ == 4 and saved.epochs_left_ == CHECKPOINTED["max_iter"] - 4 and saved.aux_type_ == aux
    assert np.isfinite(saved.score(X, y))  # a usable model at its best epoch so far
    resumed = saved.set_params(warm_start=True).fit(X, y)
    assert (resumed.n_iter_, resumed.best_iter_) == (full.n_iter_, full.best_iter_)
    for curve in ("loss_curve_", "validation_scores_", "validation_log_likelihoods_"):
        np.testing.assert_array_equal(getattr(resumed, curve), getattr(full, curve))
    assert_same(params_of(resumed), params_of(full))  # the network and the prior (scales, MLP)
    final = nica.load(path)  # the finished fit: resumes nothing
    assert final.epochs_left_ == 0 and final.n_iter_ == full.n_iter_


def test_a_checkpoint_resumed_with_other_labels_is_a_warm_start(checkpoint_data, tmp_path, monkeypatch):
    X, y = checkpoint_data[0], checkpoint_data[1]["discrete"]
    path = tmp_path / "fit.nica"
    interrupt_after_checkpoints(monkeypatch, 1)
    with pytest.raises(Interrupt):
        nica.ConditionalNonlinearICA(checkpoint_path=path, checkpoint_every=2, **CHECKPOINTED).fit(X, y)
    monkeypatch.undo()
    saved = nica.load(path)
    with pytest.warns(UserWarning, match="data differ"):
        saved.set_params(warm_start=True, max_iter=1).fit(X, y[::-1])  # the same labels, other rows
    assert saved.n_iter_ == 3 and saved.epochs_left_ == 0


def test_conditional_checkpoint_parameters(checkpoint_data, tmp_path):
    X, y = checkpoint_data[0], checkpoint_data[1]["discrete"]
    params = nica.ConditionalNonlinearICA().get_params()
    assert params["checkpoint_path"] is None and params["checkpoint_every"] == 1
    names = list(inspect.signature(nica.ConditionalNonlinearICA).parameters)  # as NonlinearICA's: after warm_start
    assert names[names.index("warm_start") + 1 : names.index("warm_start") + 3] == [
        "checkpoint_path",
        "checkpoint_every",
    ]
    with pytest.raises(ValueError, match="needs n_init=1"):
        nica.ConditionalNonlinearICA(checkpoint_path=tmp_path / "a.nica", n_init=2).fit(X, y)
    with pytest.raises(ValueError, match="checkpoint_every must be an integer >= 1"):
        nica.ConditionalNonlinearICA(checkpoint_path=tmp_path / "a.nica", checkpoint_every=0).fit(X, y)
    nica.ConditionalNonlinearICA(checkpoint_path=tmp_path / "b.nica", **CHECKPOINTED).partial_fit(X, y)
    assert not (tmp_path / "b.nica").exists()  # partial_fit writes no checkpoints
