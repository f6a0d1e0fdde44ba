"""NonlinearICA (``nica/_src/estimator/nonlinear.py``) and what the shared estimator machinery
(``base.py``: hyperparameters, warm starts, the fit; ``inference.py``: the fitted state,
transform, the exact likelihood, sampling) does for it, against independent oracles: the
change-of-variables formula by ``jax.jacfwd``, quadrature of the density, the closed-form
linear-Gaussian model, the functional core on ``params_``.

Misuse: every bad ``X``, hyperparameter and count is refused (before any JAX work for the
hyperparameters) with the argument named, and a refused call leaves a fitted estimator as it
was; random arrays (hypothesis) are refused with the predicted error or give finite results.
(scikit-learn compatibility: tests/test_sklearn.py; the defaults beside FastICA:
tests/test_defaults.py.)
"""

import copy
import re
import tracemalloc
import warnings
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from oracles import linear_problem
from scipy import stats
from scipy.integrate import trapezoid
from sklearn.base import clone
from sklearn.decomposition import FastICA
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.utils.validation import check_is_fitted
from strategies import FUZZ, KINDS, arrays, validation_refusal
from support import (
    BAD_HYPERPARAMETER_IDS,
    BAD_HYPERPARAMETERS,
    BAD_X,
    TINY,
    assert_same,
    assert_unchanged,
    params_of,
    snapshot,
)

import nica
from nica import priors
from nica._src.estimator import inference as inference_module
from nica.metrics import mean_corr_coef

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

N, D = 200, 3  # the misuse data: fits of a few epochs, shared by the misuse and fuzz tests


@pytest.fixture(scope="module")
def X():
    return np.random.default_rng(0).laplace(size=(N, D))


@pytest.fixture(scope="module")
def fitted(X):
    return nica.NonlinearICA(**TINY).fit(X)


@pytest.fixture(scope="module")
def nonlinear_data():
    rng = np.random.default_rng(0)
    S = rng.laplace(size=(1500, 3))
    A1, A2 = rng.uniform(-1, 1, (3, 3)), rng.uniform(-1, 1, (3, 3))
    H = S @ A1.T
    X = np.where(H > 0, H, 0.2 * H) @ A2.T
    return X


def small_model(**kw):
    defaults = dict(n_layers=2, max_iter=15, batch_size=128, learning_rate=3e-3, random_state=0)
    defaults.update(kw)
    return nica.NonlinearICA(**defaults)


def test_fit_transform_equals_fit_then_transform(nonlinear_data):
    a = small_model().fit_transform(nonlinear_data)
    b = small_model().fit(nonlinear_data).transform(nonlinear_data)
    np.testing.assert_array_equal(a, b)


def test_same_random_state_gives_identical_parameters(nonlinear_data):
    m1, m2 = small_model().fit(nonlinear_data), small_model().fit(nonlinear_data)
    m3 = small_model(random_state=1).fit(nonlinear_data)
    assert m1.gradient_ == "equivariant"  # "auto" for 3 features: the equivariant form is deterministic
    for l1, l2 in zip(m1.params_, m2.params_):
        np.testing.assert_array_equal(l1.W, l2.W)
        np.testing.assert_array_equal(l1.b, l2.b)
    assert not np.allclose(m1.params_[0].W, m3.params_[0].W)


def test_training_improves_held_out_likelihood(nonlinear_data):
    X_train, X_test = nonlinear_data[:1200], nonlinear_data[1200:]
    untrained = small_model(max_iter=1, learning_rate=1e-6).fit(X_train)
    trained = small_model(max_iter=60).fit(X_train)
    assert trained.score(X_test) > untrained.score(X_test) + 0.2
    assert trained.loss_curve_[-1] < trained.loss_curve_[0]
    assert len(trained.validation_scores_) == trained.n_iter_ == len(trained.loss_curve_)
    assert 1 <= trained.best_iter_ <= trained.n_iter_
    assert trained.validation_scores_[trained.best_iter_ - 1] == max(trained.validation_scores_)


@pytest.mark.parametrize("whiten", ["standardize", "unit-variance", False])
def test_score_samples_is_a_normalized_density_in_input_units(whiten):
    """∫ exp(score_samples) = 1 over the plane: the pre-processing's log-det is accounted for."""
    rng = np.random.default_rng(3)
    X = rng.laplace(size=(800, 2)) @ np.array([[3.0, 1.0], [0.5, 0.7]]).T + np.array([4.0, -2.0])
    model = small_model(whiten=whiten, max_iter=20, prior="logistic").fit(X)
    # the logistic prior's tails reach well past the data: integrate over a wide box
    lo, hi = X.min(axis=0) - 40, X.max(axis=0) + 40
    gx, gy = np.linspace(lo[0], hi[0], 900), np.linspace(lo[1], hi[1], 900)
    grid = np.stack(np.meshgrid(gx, gy), axis=-1).reshape(-1, 2)
    density = np.exp(model.score_samples(grid)).reshape(900, 900)
    mass = trapezoid(trapezoid(density, gx, axis=1), gy)
    assert mass == pytest.approx(1.0, abs=0.02)


def test_score_samples_matches_brute_force_change_of_variables(nonlinear_data):
    """log p(x) = log p_S(g(P(x − μ))) + log|det ∂/∂x| by jax.jacfwd of the whole map."""
    model = small_model(whiten="unit-variance").fit(nonlinear_data)
    X = nonlinear_data[:20]
    act, prior = model.activation_, model.prior_

    def whole_map(x):
        z = model.whitening_ @ (x - model.mean_)
        for k, (W, b) in enumerate(model.network_params_):
            y = W @ z + b
            z = act.fn(y) if k < len(model.network_params_) - 1 else y
        return z

    with jax.enable_x64(True):
        S = jax.vmap(whole_map)(jnp.asarray(X))
        J = jax.vmap(jax.jacfwd(whole_map))(jnp.asarray(X))
        expected = prior.conditional_log_prob(model.prior_params_, S) + jnp.linalg.slogdet(J)[1]
    np.testing.assert_allclose(model.score_samples(X), expected, rtol=1e-10)
    np.testing.assert_allclose(model.transform(X), S, rtol=1e-10, atol=1e-12)
    assert model.score(X) == pytest.approx(float(np.mean(expected)))


@pytest.mark.parametrize(
    "whiten,n_layers", [("unit-variance", 2), ("standardize", 2), (False, 2), ("unit-variance", 1), (False, 1)]
)
def test_params_are_the_whole_model_for_the_functional_core(nonlinear_data, whiten, n_layers):
    """params_ maps raw inputs to sources: the core's log_likelihood and forward on params_ give
    score_samples and transform (float64, 1e-8), whatever the pre-processing; it is the
    network_params_ with x ↦ P(x − mean_) composed into the first layer."""
    model = small_model(whiten=whiten, n_layers=n_layers).fit(nonlinear_data)
    X = nonlinear_data[:200]
    with jax.enable_x64(True):
        ll = nica.log_likelihood(
            model.params_,
            jnp.asarray(X),
            activation=model.activation_,
            prior=model.prior_,
            prior_params=model.prior_params_,
        )
        S = nica.forward(model.params_, jnp.asarray(X), activation=model.activation_)
    np.testing.assert_allclose(ll, model.score_samples(X), rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(S, model.transform(X), rtol=1e-8, atol=1e-8)
    first, net = model.params_[0], model.network_params_[0]
    b = np.zeros(3) if net.b is None else net.b
    np.testing.assert_allclose(first.W, net.W @ model.whitening_, rtol=1e-12)
    np.testing.assert_allclose(first.b, b - net.W @ model.whitening_ @ model.mean_, rtol=1e-10, atol=1e-12)
    for folded, layer in zip(model.params_[1:], model.network_params_[1:]):
        np.testing.assert_array_equal(folded.W, layer.W)
        np.testing.assert_array_equal(folded.b, layer.b)
    if n_layers == 1:
        np.testing.assert_allclose(first.W, model.components_, rtol=1e-12)


def test_inverse_transform_inverts_transform(nonlinear_data):
    model = small_model(activation="tanh_linear", whiten="unit-variance").fit(nonlinear_data)
    np.testing.assert_allclose(
        model.inverse_transform(model.transform(nonlinear_data)), nonlinear_data, rtol=1e-8, atol=1e-8
    )


def test_sample_follows_the_model_density():
    """Linear-Gaussian model: samples must have the model's closed-form covariance."""
    rng = np.random.default_rng(4)
    X = rng.standard_normal((3000, 3)) @ np.array([[2.0, 0, 0], [1.0, 1.0, 0], [0.5, -0.5, 0.3]]).T
    model = nica.NonlinearICA(
        n_layers=1, prior="gaussian", whiten=False, max_iter=300, learning_rate=1e-2, random_state=0
    ).fit(X)
    W, b = model.network_params_[0]
    cov_model = np.linalg.inv(W.T @ W)  # s = W x + b ~ N(0, I)  ⇒  x ~ N(−W⁻¹b, (WᵀW)⁻¹)
    mean_model = model.mean_ - np.linalg.solve(W, b)  # linear ICA folds b into mean_
    draws = model.sample(40000, random_state=0)
    assert draws.shape == (40000, 3) and draws.dtype == np.float64
    np.testing.assert_allclose(np.cov(draws, rowvar=False), cov_model, atol=0.08)
    np.testing.assert_allclose(draws.mean(axis=0), mean_model, atol=0.05)
    np.testing.assert_array_equal(model.sample(5, random_state=1), model.sample(5, random_state=1))
    # and the model matches the data it was fitted on
    np.testing.assert_allclose(cov_model, np.cov(X, rowvar=False), rtol=0.1, atol=0.1)
    # Kolmogorov–Smirnov on a projection, against the closed-form marginal
    proj = draws @ np.array([1.0, -1.0, 2.0])
    sd = np.sqrt(np.array([1.0, -1.0, 2.0]) @ cov_model @ np.array([1.0, -1.0, 2.0]))
    assert stats.kstest(proj, stats.norm(mean_model @ np.array([1.0, -1.0, 2.0]), sd).cdf).pvalue > 1e-3


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_preserved(nonlinear_data, dtype):
    X = nonlinear_data.astype(dtype)
    model = small_model(max_iter=3).fit(X)
    assert model.params_[0].W.dtype == dtype
    for out in [model.transform(X), model.inverse_transform(X), model.score_samples(X), model.sample(4)]:
        assert out.dtype == dtype


def test_fitted_parameters_are_views_of_the_device_state_not_host_copies(nonlinear_data):
    """At D = 20,000 a host copy of the state would be 9.6 GB: network_params_ must not make one
    on a CPU (params_ computes its first layer, the pre-processing folded in)."""
    model = small_model(max_iter=3, warm_start=True).fit(nonlinear_data.astype(np.float32))
    device_W = model._state.params[0].W
    assert isinstance(device_W, jax.Array)
    if jax.default_backend() == "cpu":
        assert model.network_params_[0].W.ctypes.data == device_W.unsafe_buffer_pointer()
    assert not model.network_params_[0].W.flags.writeable
    # a warm start donates the state to its epochs: the old buffers are reused, not copied
    model.fit(nonlinear_data.astype(np.float32))
    assert device_W.is_deleted()
    assert np.isfinite(model.score(nonlinear_data.astype(np.float32)))


def test_interrupted_fit_leaves_a_usable_estimator_at_the_best_parameters(nonlinear_data, monkeypatch):
    from nica._src import fitting as training_module  # the fit loop (nica.fit_to_data)

    real, calls = training_module.log_abs_det, []

    def interrupt_at_third_epoch(params):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(params)

    monkeypatch.setattr(training_module, "log_abs_det", interrupt_at_third_epoch)
    model = small_model(max_iter=10, early_stopping=False)
    with pytest.raises(KeyboardInterrupt):
        model.fit(nonlinear_data)
    monkeypatch.undo()
    assert model.n_iter_ == 3 and model.best_iter_ == 2
    assert np.isfinite(model.transform(nonlinear_data)).all()
    model.partial_fit(nonlinear_data)  # the optimizer restarts at the best parameters
    assert model.n_iter_ == 4 and np.isfinite(model.score(nonlinear_data))


def test_any_optax_optimizer(nonlinear_data):
    """An optax factory (called with ``learning_rate``) and a ready transformation of the same
    optimizer give the same fit (a clip that never triggers is the identity); a name builds
    another optimizer, which gives another fit; each trains."""
    kw = dict(max_iter=3, learning_rate=1e-2, early_stopping=False)
    factory = small_model(optimizer=optax.adam, **kw).fit(nonlinear_data)
    ready = small_model(optimizer=optax.chain(optax.clip_by_global_norm(1e6), optax.adam(1e-2)), **kw).fit(
        nonlinear_data
    )
    sgd = small_model(optimizer="sgd", **kw).fit(nonlinear_data)
    for a, b in zip(jax.tree_util.tree_leaves(ready.params_), jax.tree_util.tree_leaves(factory.params_)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    assert np.max(np.abs(sgd.params_[0].W - factory.params_[0].W)) > 1e-3
    for model in (factory, ready, sgd):
        assert model.loss_curve_[-1] < model.loss_curve_[0]


def test_gradient_options_reach_similar_likelihood(nonlinear_data):
    """Different directions, same objective: the ordinary gradient ends within 0.2 nats of the
    relative one, after training gained more than a nat over the start (so that the tolerance
    can tell them apart from a fit that did nothing).  "autodiff" follows the "euclidean" path
    (next test)."""
    kw = dict(max_iter=40, optimizer="sgd", learning_rate=0.02, early_stopping=False)
    X, X_test = nonlinear_data[:600], nonlinear_data[600:]
    start = small_model(**{**kw, "max_iter": 1, "learning_rate": 1e-12}).fit(X).score(X_test)
    relative = small_model(gradient="relative", **kw).fit(X)
    euclidean = small_model(gradient="euclidean", **kw).fit(X)
    assert relative.score(X_test) > start + 1.0
    for model in (relative, euclidean):
        assert model.loss_curve_[-1] < model.loss_curve_[0]
    assert euclidean.score(X_test) == pytest.approx(relative.score(X_test), abs=0.2)


def test_euclidean_and_autodiff_options_follow_the_same_path(nonlinear_data):
    """Both compute the ordinary gradient: identical training up to round-off."""
    kw = dict(max_iter=5, optimizer="sgd", learning_rate=0.01, early_stopping=False)
    a = small_model(gradient="euclidean", **kw).fit(nonlinear_data[:300])
    b = small_model(gradient="autodiff", **kw).fit(nonlinear_data[:300])
    np.testing.assert_allclose(a.params_[0].W, b.params_[0].W, rtol=1e-7, atol=1e-9)


def test_max_iter_reached_warns(nonlinear_data):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        with pytest.raises(ConvergenceWarning, match="NonlinearICA reached max_iter=2 epochs without converging"):
            small_model(max_iter=2).fit(nonlinear_data)


def test_early_stopping_converges_without_warning(nonlinear_data):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = small_model(max_iter=500, n_iter_no_change=3, tol=0.05).fit(nonlinear_data)
    assert model.n_iter_ < 500 and model.n_iter_ - model.best_iter_ <= 3


def test_warm_start_and_partial_fit(nonlinear_data):
    """A warm start continues the epochs, the parameters and the optimizer's state (Adam's step
    count doubles); partial_fit runs one epoch per chunk."""
    model = small_model(max_iter=3, warm_start=True, early_stopping=False).fit(nonlinear_data)
    first = model.params_[0].W.copy()
    before = [np.array(leaf) for leaf in jax.tree_util.tree_leaves(model._state.opt_state)]
    model.fit(nonlinear_data)
    after = [np.array(leaf) for leaf in jax.tree_util.tree_leaves(model._state.opt_state)]
    counts = [(b, a) for b, a in zip(before, after) if b.dtype.kind == "i"]
    assert counts and all(int(a) == 2 * int(b) for b, a in counts)
    assert model.n_iter_ == 6 and len(model.loss_curve_) == 6
    assert not np.allclose(first, model.params_[0].W)

    streaming = small_model()
    chunks = np.array_split(nonlinear_data, 5)
    before = None
    for _ in range(3):
        for chunk in chunks:
            streaming.partial_fit(chunk)
        if before is None:
            before = streaming.score(nonlinear_data)
    assert streaming.n_iter_ == 15
    assert streaming.score(nonlinear_data) > before
    with pytest.raises(ValueError, match="features"):
        streaming.partial_fit(nonlinear_data[:, :2])


def test_verbose_shows_progress(nonlinear_data, capsys):
    small_model(max_iter=2, verbose=1).fit(nonlinear_data)
    err = capsys.readouterr().err
    assert "NonlinearICA" in err and "train_nll" in err and "val_nll" in err
    small_model(max_iter=2).fit(nonlinear_data)
    assert capsys.readouterr().err == ""


def test_partial_fit_streams_a_memory_mapped_file(tmp_path):
    rng = np.random.default_rng(0)
    S = rng.laplace(size=(40_000, 8))
    X = np.tanh(S @ rng.normal(size=(8, 8))) + 0.1 * S
    path = tmp_path / "X.npy"
    np.save(path, X)
    mapped = np.load(path, mmap_mode="r")
    chunk = 2000
    kw = dict(n_layers=2, batch_size=200, learning_rate=1e-2, random_state=0)

    streamed = nica.NonlinearICA(**kw).partial_fit(mapped[:chunk])  # compiles; fits the whitening
    streamed.partial_fit(mapped[chunk : 2 * chunk])  # compiles what a continued fit adds (not streaming memory)
    tracemalloc.start()
    for start in range(2 * chunk, len(mapped), chunk):
        streamed.partial_fit(mapped[start : start + chunk])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    chunk_bytes = chunk * X.shape[1] * X.itemsize
    assert peak < min(4 * chunk_bytes, X.nbytes / 4)  # a few chunks at most, never the file

    in_memory = nica.NonlinearICA(**kw)
    for start in range(0, len(X), chunk):
        in_memory.partial_fit(X[start : start + chunk])
    for a, b in zip(jax.tree_util.tree_leaves(in_memory.params_), jax.tree_util.tree_leaves(streamed.params_)):
        np.testing.assert_array_equal(a, b)
    assert streamed.n_iter_ == len(X) // chunk
    np.testing.assert_array_equal(streamed.score_samples(mapped), in_memory.score_samples(X))


def test_divergence_stops_restores_the_best_parameters_and_warns(X):
    """A rate far too large: the epoch that diverges (a NaN loss) ends the fit, is not recorded,
    and the best parameters so far are restored, with a warning naming the rate.  (The loop's
    own test: tests/test_fitting.py; the conditional model: tests/test_conditional_estimator.py.)"""
    model = nica.NonlinearICA(
        n_layers=2,
        max_iter=5,
        batch_size=64,
        optimizer="sgd",
        learning_rate=1e6,
        gradient="equivariant",
        early_stopping=False,
        random_state=0,
    )
    with pytest.warns(
        ConvergenceWarning,
        match=r"diverged at epoch (\d+) .*learning_rate=1000000\.0; stopped and "
        r"restored the parameters of epoch \d+",
    ) as record:
        model.fit(X)
    diverged_at = int(re.search(r"epoch (\d+)", str(record[-1].message)).group(1))
    assert model.n_iter_ == diverged_at < 5 and model.best_iter_ < diverged_at
    assert len(model.loss_curve_) == diverged_at - 1  # the non-finite epoch is not recorded
    assert all(np.isfinite(leaf).all() for leaf in jax.tree_util.tree_leaves((model.params_, model.prior_params_)))
    assert np.isfinite(model.score_samples(X)).all()


def test_n_init_keeps_the_most_likely_initialisation():
    X_train, _, _, _ = linear_problem("laplace", n=2000, d=3)
    kw = dict(n_layers=2, max_iter=15, random_state=0)
    single = nica.NonlinearICA(**kw).fit(X_train)
    multi = nica.NonlinearICA(n_init=3, **kw).fit(X_train)
    assert len(multi.init_scores_) == 3 and len(single.init_scores_) == 1
    # the first initialisation is the single fit's; the one kept has the best validation score
    assert multi.init_scores_[0] == pytest.approx(single.init_scores_[0], rel=1e-12)
    assert max(multi.validation_scores_) == pytest.approx(max(multi.init_scores_), rel=1e-12)
    assert max(multi.init_scores_) >= single.init_scores_[0]


# ---------------------------------------------------------------------------------------------
# warm starts: a changed hyperparameter takes effect or starts anew, with a warning


def _quiet_fit(model, *args):
    """fit, failing on any UserWarning but the max_iter ConvergenceWarning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(*args)


def test_warm_start_with_a_structural_change_starts_anew_with_a_warning(X):
    model = nica.NonlinearICA(**TINY, warm_start=True).fit(X)
    _quiet_fit(model, X)  # nothing changed: continues silently
    assert model.n_iter_ == 4
    model.set_params(n_layers=3, bias=False, prior="gaussian")
    with pytest.warns(
        UserWarning,
        match=r"n_layers \(2 -> 3\), bias \(True -> False\), prior "
        r"\(LogisticMixture\(n_mixtures=\d+\) -> Gaussian\(\)\) changed .*starts anew",
    ):
        model.fit(X)
    assert len(model.params_) == 3 and model.network_params_[0].b is None and model.prior_ == priors.gaussian()
    assert model.n_iter_ == 2  # a new fit: its own epochs only
    model.set_params(n_layers=2, bias=True, prior="logistic_mixture", whiten="standardize")
    with pytest.warns(UserWarning, match=r"n_layers \(3 -> 2\), bias .*whiten \('unit-variance' -> 'standardize'\)"):
        model.fit(X)
    assert model.whiten_ == "standardize" and model.n_iter_ == 2
    # partial_fit follows the same rule; the warning comes before the data are read, and a
    # refused chunk leaves the model as it was
    before = snapshot(model)
    model.set_params(n_layers=1)
    with pytest.warns(UserWarning, match=r"n_layers \(2 -> 1\)"), pytest.raises(ValueError, match="NaN"):
        model.partial_fit(np.full((4, D), np.nan))
    assert_unchanged(model, before)


def test_warm_start_with_a_new_gradient_or_optimizer_restarts_the_optimizer(X):
    model = nica.NonlinearICA(**TINY, warm_start=True).fit(X)
    assert model.gradient_ == "equivariant"  # "auto" for 3 features
    W = np.array(model.params_[0].W)
    model.set_params(gradient="relative")
    with pytest.warns(UserWarning, match=r"gradient \('equivariant' -> 'relative'\) .*restarted optimizer"):
        model.fit(X)
    assert model.gradient_ == "relative" and model.n_iter_ == 4  # continued: 2 + 2 epochs
    assert not np.allclose(W, model.params_[0].W)
    # an optimizer with another state: the decision fit makes first (the epochs as above)
    model.set_params(optimizer="sgd")
    with pytest.warns(UserWarning, match="the optimizer changed"):
        assert model._continue_fit(True)
    assert jax.tree_util.tree_structure(model._state.opt_state["optimizer"]) == jax.tree_util.tree_structure(
        model._check_hyperparameters().optimizer.init((model._state.params, model._state.prior_params))
    )
    np.testing.assert_array_equal(W.shape, model.params_[0].W.shape)
    model.set_params(learning_rate=1e-3)  # SGD's state still fits: the new rate just takes effect
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        assert model._continue_fit(True)


# ---------------------------------------------------------------------------------------------
# misuse: data


@pytest.mark.parametrize("name, bad, error, match", BAD_X, ids=[case[0] for case in BAD_X])
def test_fit_refuses_bad_X_and_a_failed_fit_changes_nothing(fitted, name, bad, error, match):
    before = snapshot(fitted)
    with pytest.raises(error, match=match):
        fitted.fit(bad)
    with pytest.raises(error, match=match):
        fitted.partial_fit(bad)
    assert_unchanged(fitted, before)


FITTED_BAD_X = [case for case in BAD_X if case[0] not in ("no columns",)] + [
    ("wrong width", np.ones((4, D - 1)), ValueError, "X has 2 features, but NonlinearICA is expecting 3 features"),
    ("too wide", np.ones((4, D + 1)), ValueError, "X has 4 features, but NonlinearICA is expecting 3 features"),
]


@pytest.mark.parametrize("name, bad, error, match", FITTED_BAD_X, ids=[case[0] for case in FITTED_BAD_X])
def test_fitted_methods_refuse_bad_X(fitted, name, bad, error, match):
    before = snapshot(fitted)
    for method in (fitted.transform, fitted.inverse_transform, fitted.score_samples, fitted.score):
        with pytest.raises(error, match=match):
            method(bad)
    assert_unchanged(fitted, before)


def test_fit_needs_two_rows(fitted, X):
    before = snapshot(fitted)
    with pytest.raises(ValueError, match=r"Found array with 1 sample\(s\) .* a minimum of 2 is required"):
        fitted.fit(X[:1])
    assert_unchanged(fitted, before)


def test_a_validation_split_that_leaves_no_training_row_is_refused(X):
    """ceil(0.95 · 10) = 10 rows would be held out of 10: refused before anything is trained."""
    with pytest.raises(ValueError, match="validation_fraction=0.95 needs at least one training row.*got 10"):
        nica.NonlinearICA(validation_fraction=0.95).fit(X[:10])


def test_data_too_large_to_whiten_is_refused_clearly():
    X = np.random.default_rng(0).laplace(size=(100, 3)) * 1e160
    for whiten in ("unit-variance", "standardize"):
        with pytest.raises(
            ValueError,
            match=r"X has values too large to whiten in float64 \(largest \|x\| = .*e\+16\d"
            r": its variance overflows\); rescale X",
        ):
            nica.NonlinearICA(n_layers=1, whiten=whiten, max_iter=1).fit(X)


def test_unfitted_methods_raise_not_fitted(X):
    model = nica.NonlinearICA()
    for call in (
        lambda: model.transform(X),
        lambda: model.inverse_transform(X),
        lambda: model.score_samples(X),
        lambda: model.sample(2),
    ):
        with pytest.raises(NotFittedError, match="This NonlinearICA instance is not fitted yet"):
            call()
    with pytest.raises(AttributeError, match="This NonlinearICA instance is not fitted yet; components_"):
        model.components_
    with pytest.raises(NotFittedError, match="not fitted yet"):
        model.epochs_left_


def test_the_fitted_check_copies_nothing_to_the_host(fitted):
    """check_is_fitted, and the warm-start decision of fit/partial_fit, never read params_."""
    with mock.patch.object(inference_module, "to_numpy", side_effect=AssertionError("host copy")):
        check_is_fitted(fitted)
        assert fitted.__sklearn_is_fitted__()
        assert fitted._continue_fit(True)
    assert not nica.NonlinearICA().__sklearn_is_fitted__()


def test_fit_converts_other_numeric_dtypes_as_scikit_learn_does(X):
    for data in [X.astype(np.float16), (3 * X).astype(np.int64), X > 0, X.tolist()]:
        model = nica.NonlinearICA(**TINY).fit(data)  # the fixture's compiled programs
        assert model.transform(data).dtype == np.float64
        assert np.isfinite(model.transform(data)).all()


# ---------------------------------------------------------------------------------------------
# misuse: hyperparameters (all refused before any data or JAX work) and counts


@pytest.mark.parametrize("params, error, match", BAD_HYPERPARAMETERS, ids=BAD_HYPERPARAMETER_IDS)
def test_bad_hyperparameters_are_refused_and_a_fitted_model_stays_as_it_was(fitted, X, params, error, match):
    before = snapshot(fitted)
    with pytest.raises(error, match=match):
        nica.NonlinearICA(**{**TINY, **params}).fit(X)
    # a fitted estimator given a bad value refuses it in fit and partial_fit, and stays as it was
    old = fitted.get_params()
    try:
        fitted.set_params(**params)
        for call in (lambda: fitted.fit(X), lambda: fitted.partial_fit(X)):
            with pytest.raises(error, match=match):
                call()
    finally:
        fitted.set_params(**old)
    assert_unchanged(fitted, before)


@pytest.mark.parametrize("name", ["max_iter", "n_init"])
def test_counts_too_large_to_run_are_refused(fitted, X, name):
    """2**70 epochs or starts: refused before any work (not tqdm's OverflowError, not a hang);
    the bound is 2**31 - 1."""
    before = snapshot(fitted)
    message = re.escape(f"{name} must be an integer in [1, 2147483647]; got {2**70}.")
    with pytest.raises(ValueError, match=f"^{message}$"):
        nica.NonlinearICA(**{**TINY, name: 2**70}).fit(X)
    with pytest.raises(ValueError, match=f"^{message}$"):
        clone(fitted).set_params(**{name: 2**70}).partial_fit(X)
    assert nica.NonlinearICA(**{**TINY, name: 2**31 - 1}).get_params()[name] == 2**31 - 1
    assert_unchanged(fitted, before)


def test_huge_patience_and_batch_size_mean_never_and_everything(X):
    """n_iter_no_change=2**70 never stops early and batch_size=2**70 is one batch of every row:
    both run as they say, with no bound needed."""
    model = nica.NonlinearICA(**{**TINY, "n_iter_no_change": 2**70, "batch_size": 2**70}).fit(X)
    reference = nica.NonlinearICA(**{**TINY, "batch_size": N}).fit(X)
    assert model.n_iter_ == 2
    np.testing.assert_array_equal(model.transform(X), reference.transform(X))


def overflow(method, rows, n, dtype, where):
    return re.escape(
        f"{method} gave NaN or infinite values for {len(rows)} of the {n} rows (rows {rows}) although the input "
        f"is finite: the values overflow the model's {dtype} arithmetic ({where}). Fit the model on float64 data "
        "(it computes in the dtype of the data it was fitted on), or rescale the data, e.g. fit and transform "
        "X / c for a constant c."
    )


def test_values_that_overflow_a_float32_model_warn_with_the_rows_and_the_fix(X):
    """Finite inputs beyond float32's range give NaN or infinity in a float32 model: transform,
    inverse_transform and score_samples warn (a RuntimeWarning at the caller's line naming the
    rows and the fix); the other rows are as computed alone; a float64 model does not overflow."""
    model = nica.NonlinearICA(**TINY).fit(X.astype(np.float32))
    big = np.vstack([X[:2], [[1e39, 1.0, 1.0]]])  # float64, finite
    beyond = "the input has values beyond the largest float32, 3.4e+38"
    for method in ("transform", "score_samples"):
        with pytest.warns(RuntimeWarning, match=f"^{overflow(method, [2], 3, 'float32', beyond)}$") as record:
            out = getattr(model, method)(big)
        assert [w.filename for w in record] == [__file__]
        assert not np.isfinite(out[2]).all()
        np.testing.assert_array_equal(out[:2], getattr(model, method)(big[:2]))
    S = np.vstack([model.transform(X[:1]), np.full((1, D), 1e38, np.float32)])
    with pytest.warns(
        RuntimeWarning, match=f"^{overflow('inverse_transform', [1], 2, 'float32', 'largest |input| 1e+38')}$"
    ):
        out = model.inverse_transform(S)
    assert np.isfinite(out[0]).all() and not np.isfinite(out[1]).all()
    wide = nica.NonlinearICA(**TINY).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning where nothing overflows
        model.transform(X[:5])
        assert np.isfinite(wide.transform(big)).all() and np.isfinite(wide.score_samples(big)).all()


def test_a_conditional_prior_object_is_refused_with_the_way_out(X):
    with pytest.raises(
        ValueError,
        match=r"NonlinearICA's prior must be a factorized family .*got the conditional "
        r"SegmentConditional: .*use ConditionalNonlinearICA\(prior=Laplace\(\)\)",
    ):
        nica.NonlinearICA(**TINY, prior=priors.segment_conditional("laplace", 2)).fit(X)


@pytest.mark.parametrize("n_samples", [0, -1, 2.5, True, "3", None])
def test_sample_refuses_bad_counts(fitted, n_samples):
    with pytest.raises(ValueError, match=f"n_samples must be an integer >= 1; got {re.escape(repr(n_samples))}"):
        fitted.sample(n_samples)


@pytest.mark.parametrize("n_samples", [2**31, 10**12, 2**70])
def test_sample_refuses_counts_no_array_can_hold_before_any_work(fitted, n_samples):
    # before: JAX's OOM (10**12) or a TypeError from inside MLIR (2**70)
    with pytest.raises(ValueError, match=rf"n_samples must be an integer in \[1, 2147483647\]; got {n_samples}"):
        fitted.sample(n_samples)


def test_sample_refuses_a_bad_random_state(fitted):
    with pytest.raises(ValueError, match="'x' cannot be used to seed"):
        fitted.sample(2, random_state="x")


# ---------------------------------------------------------------------------------------------
# random arrays and data frames


FIT_SHAPES = [(N, D), (N, D), (0, D), (N, 0), (N,), (1, D), (N, D, 1), ()]


@settings(FUZZ, max_examples=10)
@given(data=arrays(FIT_SHAPES, kinds=[k for k in KINDS if k != "float32"]))
def test_fit_on_random_arrays(fitted, data):
    """The error scikit-learn's checks predict, leaving the fitted estimator as it was, or a fit
    with finite results.  (float32 data fits in float32: a second set of compiled programs,
    tested in test_dtype_is_preserved.)"""
    before = params_of(fitted)
    for method, min_samples in (("fit", 2), ("partial_fit", 1)):
        model = copy.deepcopy(fitted)  # fitted, and free to change
        refusal = validation_refusal(data, "NonlinearICA", min_samples=min_samples)
        if refusal is not None:
            with pytest.raises(refusal[0], match=refusal[1]):
                getattr(model, method)(data)
            assert_same(before, params_of(model))
            continue
        getattr(model, method)(data)
        assert np.isfinite(model.transform(data[:2])).all()  # two rows: programs compiled once
        assert np.isfinite(model.score_samples(data[:2])).all()


AFTER_FIT_SHAPES = [(2, D), (2, D), (0, D), (2, D - 1), (D,), (2, D, 1), ()]


@FUZZ
@given(data=arrays(AFTER_FIT_SHAPES))
def test_fitted_methods_on_random_arrays(fitted, data):
    """The predicted error, or (2-D numbers of the right width, finite: |x| <= 1e100 here) a
    finite result for every row."""
    before = params_of(fitted)
    refusal = validation_refusal(data, "NonlinearICA", n_features=D)
    for method in (fitted.transform, fitted.inverse_transform, fitted.score_samples):
        if refusal is not None:
            with pytest.raises(refusal[0], match=refusal[1]):
                method(data)
            continue
        out = method(data)
        assert out.shape[0] == data.shape[0] and np.isfinite(out).all()
    assert_same(before, params_of(fitted))


def test_dataframes_with_odd_columns(fitted, X):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    model = clone(fitted).fit(frame)
    np.testing.assert_array_equal(model.feature_names_in_, ["a", "b", "c"])
    with pytest.raises(ValueError, match="feature names"):
        model.transform(frame.rename(columns={"a": "z"}))
    numeric = pd.DataFrame({"a": X[:, 0], "b": X[:, 1] > 0, "c": (3 * X[:, 2]).astype(int)})
    assert np.isfinite(clone(fitted).fit(numeric).transform(numeric)).all()  # bool, int columns
    before = params_of(model)
    for odd, error, match in [
        (frame.assign(b=pd.array([1, None] * (N // 2), dtype="Int64")), ValueError, "NaN"),
        (frame.assign(b=pd.Categorical(["x", "y"] * (N // 2))), ValueError, "could not convert"),
        (frame.assign(b=["x"] * N), ValueError, "could not convert"),
        (frame.assign(a=X[:, 0] + 1j), ValueError, "Complex data"),
        (frame.assign(a=pd.date_range("2020", periods=N)), TypeError, "DateTime64DType"),
        (pd.DataFrame(X, columns=["a", "a", "b"]), ValueError, "unique column names"),
        (pd.DataFrame(X, columns=[0, "b", 2.5]), TypeError, "Feature names are only supported if all"),
        (frame["a"], ValueError, "Expected a 2-dimensional container"),
    ]:
        with pytest.raises(error, match=match):
            model.fit(odd)
        assert_same(before, params_of(model))


# ---------------------------------------------------------------------------------------------
# n_components: more sensors than sources


def sensors_of_sources(n=2000, seed=1, noise=1e-2):
    """Four independent non-Gaussian sources seen by six sensors (with a little sensor noise)."""
    rng = np.random.default_rng(seed)
    S = np.c_[rng.laplace(size=n), rng.uniform(-1, 1, size=n), rng.exponential(size=n), rng.standard_t(5, size=n)]
    return S, S @ rng.normal(size=(6, 4)).T + noise * rng.normal(size=(n, 6))


def test_n_components_unmixes_more_sensors_than_sources_like_fastica():
    S, X = sensors_of_sources()
    model = nica.NonlinearICA(n_layers=1, n_components=4, random_state=0).fit(X)
    fastica = FastICA(n_components=4, random_state=0).fit(X)
    S_hat = model.transform(X)
    assert S_hat.shape == (2000, 4) and model.n_components_ == 4 and model.get_feature_names_out().shape == (4,)
    assert model.components_.shape == (4, 6) and model.mixing_.shape == (6, 4)
    np.testing.assert_allclose(S_hat, (X - model.mean_) @ model.components_.T, atol=1e-8)
    assert mean_corr_coef(S, S_hat) >= mean_corr_coef(S, fastica.transform(X)) - 0.005
    # inverse_transform maps back into the kept subspace: PCA's projection, computed by hand
    eigval, eigvec = np.linalg.eigh(np.cov(X, rowvar=False, bias=True))
    V = eigvec[:, -4:]
    projection = X.mean(0) + (X - X.mean(0)) @ V @ V.T
    np.testing.assert_allclose(model.inverse_transform(S_hat), projection, atol=1e-8)
    assert model.noise_variance_ == pytest.approx(np.mean(eigval[:2]), rel=1e-8)
    with pytest.raises(ValueError, match=r"X has 6 features, but NonlinearICA.inverse_transform is expecting 4"):
        model.inverse_transform(X)
    with pytest.raises(AttributeError, match="n_components_=4 of 6 features: use network_params_"):
        model.params_


def test_n_components_density_integrates_to_one_over_the_whole_space():
    """score_samples with a discarded direction is a density on R^2 (the network's density on the
    kept line times a Gaussian across it): its integral over a grid is one, and sample draws
    from it (the discarded direction's variance is noise_variance_)."""
    rng = np.random.default_rng(2)
    s = rng.laplace(size=1500)
    X = np.c_[s + 0.3 * rng.normal(size=1500), 0.5 * s - 0.3 * rng.normal(size=1500)]
    model = nica.NonlinearICA(n_layers=2, n_components=1, max_iter=30, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X)
    g = np.linspace(-25, 25, 801)
    xx, yy = np.meshgrid(g, g, indexing="ij")
    density = np.exp(model.score_samples(np.c_[xx.ravel(), yy.ravel()])).reshape(xx.shape)
    assert trapezoid(trapezoid(density, g, axis=1), g) == pytest.approx(1.0, abs=2e-3)
    drawn = model.sample(20000, random_state=0)
    across = (drawn - model.mean_) @ np.linalg.eigh(np.cov(X, rowvar=False))[1][:, 0]  # the discarded direction
    assert drawn.shape == (20000, 2) and np.var(across) == pytest.approx(model.noise_variance_, rel=0.05)
    assert model.score(drawn) == pytest.approx(model.score(X), abs=0.15)


def test_n_components_larger_than_the_features_is_refused_and_a_change_starts_anew():
    S, X = sensors_of_sources(n=300)
    with pytest.raises(ValueError, match=r"n_components=7 must be at most the number of features, got X with 6"):
        nica.NonlinearICA(n_components=7).fit(X)
    model = nica.NonlinearICA(n_layers=1, n_components=4, max_iter=2, warm_start=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X)
        with pytest.warns(UserWarning, match=r"n_components \(4 -> 6\) changed"):
            model.set_params(n_components=None).fit(X)
    assert model.n_components_ == 6 and model.transform(X).shape == (300, 6)


def test_rank_deficient_data_warns_naming_n_components():
    S, X = sensors_of_sources(n=400, noise=0.0)
    with pytest.warns(UserWarning, match=r"only 4 of the 6 directions .* pass n_components=4"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            nica.NonlinearICA(n_layers=1, max_iter=2, random_state=0).fit(X)


def test_partial_fit_refuses_a_first_chunk_too_small_to_whiten():
    X = np.random.default_rng(0).laplace(size=(50, 3))
    model = nica.NonlinearICA(n_layers=1, random_state=0)
    with pytest.raises(ValueError, match=r"first chunk .* more rows than the 3 directions .*got 3 rows"):
        model.partial_fit(X[:3])
    assert not hasattr(model, "n_features_in_") or not model.__sklearn_is_fitted__()
    model.partial_fit(X[:4]).partial_fit(X[4:6])  # a first chunk of 4 rows, then any size
    assert model.transform(X).shape == (50, 3)
