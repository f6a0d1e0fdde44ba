"""NonlinearICA as a scikit-learn citizen, and its likelihood against independent oracles."""

import io
import pickle
import warnings

import joblib
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.sparse
from scipy import stats
from scipy.integrate import trapezoid
from sklearn.base import clone
from sklearn.decomposition import FastICA
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import nica
from nica.datasets import make_segmented_mixture
from nica.metrics import amari_distance, mean_corr_coef

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@parametrize_with_checks([nica.NonlinearICA(n_layers=2, max_iter=5),
                          nica.NonlinearICA(n_layers=1, max_iter=3, whiten="unit-variance", bias=False,
                                            early_stopping=False, prior="gaussian")])
def test_sklearn_compatible(estimator, check):
    check(estimator)


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


# ---------------------------------------------------------------------------------------------
# behaviour


def test_linear_ica_recovers_sources_like_fastica():
    d = make_segmented_mixture(n_segments=1, n_per_segment=4000, n_components=3, n_layers=1, random_state=1)
    model = nica.NonlinearICA(n_layers=1, max_iter=200, learning_rate=1e-2, random_state=0).fit(d.X_train)
    mcc = mean_corr_coef(d.S_test, model.transform(d.X_test))
    # The overall linear unmixing, pre-processing included: S = X P^T W^T (+ const).
    W_total = model.network_params_[0].W @ model.whitening_
    np.testing.assert_allclose(model.params_[0].W, W_total, rtol=1e-12)  # the folded first layer
    fast = FastICA(random_state=0, whiten="unit-variance").fit(d.X_train)
    assert mcc > 0.99
    assert amari_distance(W_total, d.mixing[0]) < 0.05
    assert amari_distance(W_total, d.mixing[0]) < amari_distance(fast.components_, d.mixing[0]) + 0.02


def test_fit_transform_equals_fit_then_transform(nonlinear_data):
    a = small_model().fit_transform(nonlinear_data)
    b = small_model().fit(nonlinear_data).transform(nonlinear_data)
    np.testing.assert_array_equal(a, b)


def test_same_random_state_gives_identical_parameters(nonlinear_data):
    m1, m2 = small_model().fit(nonlinear_data), small_model().fit(nonlinear_data)
    m3 = small_model(random_state=1).fit(nonlinear_data)
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


@pytest.mark.parametrize("whiten,n_layers", [("unit-variance", 2), ("standardize", 2), (False, 2),
                                              ("unit-variance", 1), (False, 1)])
def test_params_are_the_whole_model_for_the_functional_core(nonlinear_data, whiten, n_layers):
    """params_ maps raw inputs to sources: the core's log_likelihood and forward on params_ give
    score_samples and transform (float64, 1e-8), whatever the pre-processing; it is the
    network_params_ with x ↦ P(x − mean_) composed into the first layer."""
    model = small_model(whiten=whiten, n_layers=n_layers).fit(nonlinear_data)
    X = nonlinear_data[:200]
    with jax.enable_x64(True):
        ll = nica.log_likelihood(model.params_, jnp.asarray(X), activation=model.activation_,
                                 prior=model.prior_, prior_params=model.prior_params_)
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
    np.testing.assert_allclose(model.inverse_transform(model.transform(nonlinear_data)), nonlinear_data,
                               rtol=1e-8, atol=1e-8)


def test_sample_follows_the_model_density():
    """Linear-Gaussian model: samples must have the model's closed-form covariance."""
    rng = np.random.default_rng(4)
    X = rng.standard_normal((3000, 3)) @ np.array([[2.0, 0, 0], [1.0, 1.0, 0], [0.5, -0.5, 0.3]]).T
    model = nica.NonlinearICA(n_layers=1, prior="gaussian", whiten=False, max_iter=300,
                              learning_rate=1e-2, random_state=0).fit(X)
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


def test_pickle_and_joblib_round_trip(nonlinear_data):
    model = small_model(max_iter=5).fit(nonlinear_data)
    for loaded in [pickle.loads(pickle.dumps(model)), joblib.load(_joblib_bytes(model))]:
        np.testing.assert_array_equal(loaded.transform(nonlinear_data), model.transform(nonlinear_data))
        np.testing.assert_array_equal(loaded.score_samples(nonlinear_data), model.score_samples(nonlinear_data))
        np.testing.assert_array_equal(loaded.sample(3, random_state=0), model.sample(3, random_state=0))


def test_float64_model_pickled_loads_as_float64_without_x64(nonlinear_data, tmp_path):
    """The pickle holds NumPy arrays, so a process that never enabled 64-bit JAX still gets
    float64 results (a pickled float64 jax.Array would be truncated to float32 there)."""
    import subprocess
    import sys

    model = small_model(max_iter=3).fit(nonlinear_data)
    joblib.dump(model, tmp_path / "model.joblib")
    np.save(tmp_path / "X.npy", nonlinear_data)
    code = (
        "import joblib, numpy as np, jax; assert not jax.config.jax_enable_x64; "
        f"m = joblib.load(r'{tmp_path / 'model.joblib'}'); X = np.load(r'{tmp_path / 'X.npy'}'); "
        f"np.save(r'{tmp_path / 'S.npy'}', m.transform(X)); print(m.params_[0].W.dtype)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "float64"
    S = np.load(tmp_path / "S.npy")
    assert S.dtype == np.float64
    np.testing.assert_array_equal(S, model.transform(nonlinear_data))


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
    model.partial_fit(nonlinear_data)   # the optimizer restarts at the best parameters
    assert model.n_iter_ == 4 and np.isfinite(model.score(nonlinear_data))


def _joblib_bytes(obj):
    buffer = io.BytesIO()
    joblib.dump(obj, buffer)
    buffer.seek(0)
    return buffer


def test_clone_pipeline_and_grid_search(nonlinear_data):
    model = small_model(max_iter=4)
    cloned = clone(model)
    assert cloned.get_params() == model.get_params() and not hasattr(cloned, "params_")
    pipe = make_pipeline(StandardScaler(), small_model(max_iter=4)).fit(nonlinear_data)
    assert pipe.transform(nonlinear_data).shape == nonlinear_data.shape
    assert list(pipe.get_feature_names_out()) == ["nonlinearica0", "nonlinearica1", "nonlinearica2"]
    search = GridSearchCV(small_model(max_iter=4), {"n_layers": [1, 2]}, cv=2).fit(nonlinear_data)
    # GridSearchCV scores by held-out log-likelihood (the estimator's score): the same folds by hand
    by_hand = [np.mean([small_model(max_iter=4, n_layers=n_layers).fit(nonlinear_data[train]).score(nonlinear_data[test])
                        for train, test in KFold(2).split(nonlinear_data)])
               for n_layers in (1, 2)]
    np.testing.assert_allclose(search.cv_results_["mean_test_score"], by_hand, rtol=1e-12)
    assert search.best_params_["n_layers"] == (1, 2)[int(np.argmax(by_hand))]
    assert search.best_estimator_.n_layers == search.best_params_["n_layers"]


def test_any_optax_optimizer(nonlinear_data):
    """An optax factory (called with ``learning_rate``) and a ready transformation of the same
    optimizer give the same fit (a clip that never triggers is the identity); a name builds
    another optimizer, which gives another fit; each trains."""
    kw = dict(max_iter=3, learning_rate=1e-2, early_stopping=False)
    factory = small_model(optimizer=optax.adam, **kw).fit(nonlinear_data)
    ready = small_model(optimizer=optax.chain(optax.clip_by_global_norm(1e6), optax.adam(1e-2)), **kw).fit(nonlinear_data)
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


def test_divergence_stops_restores_best_and_warns(nonlinear_data):
    with pytest.warns(ConvergenceWarning, match=r"diverged.*learning_rate=1000000\.0"):
        model = small_model(optimizer="sgd", learning_rate=1e6, max_iter=30).fit(nonlinear_data)
    assert model.n_iter_ < 30
    assert all(np.isfinite(leaf).all() for layer in model.params_ for leaf in layer)
    assert np.isfinite(model.score_samples(nonlinear_data)).all()


def test_max_iter_reached_warns(nonlinear_data):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        with pytest.raises(ConvergenceWarning, match="max_iter=2"):
            small_model(max_iter=2).fit(nonlinear_data)


def test_early_stopping_converges_without_warning(nonlinear_data):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = small_model(max_iter=500, n_iter_no_change=3, tol=0.05).fit(nonlinear_data)
    assert model.n_iter_ < 500 and model.n_iter_ - model.best_iter_ <= 3


def test_warm_start_and_partial_fit(nonlinear_data):
    model = small_model(max_iter=3, warm_start=True).fit(nonlinear_data)
    first = model.params_[0].W.copy()
    model.fit(nonlinear_data)
    assert model.n_iter_ == 6 and len(model.loss_curve_) == 6
    assert not np.allclose(first, model.params_[0].W)

    streaming = small_model()
    chunks = np.array_split(nonlinear_data, 5)
    before = None
    for epoch in range(3):
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


# ---------------------------------------------------------------------------------------------
# errors


@pytest.mark.parametrize(
    "X, error, match",
    [
        (np.array([[1.0, np.nan], [2.0, 3.0], [0.0, 1.0]]), ValueError, "NaN"),
        (np.array([[1.0, np.inf], [2.0, 3.0], [0.0, 1.0]]), ValueError, "infinity"),
        (np.empty((0, 3)), ValueError, "0 sample"),
        (np.ones(5), ValueError, "Expected 2D array"),
        (np.ones((4, 2)) + 1j, ValueError, "Complex data not supported"),
        (np.array([["a", "b"], ["c", "d"], ["e", "f"]]), ValueError, "could not convert"),
        (scipy.sparse.csr_matrix(np.eye(3)), TypeError, "Sparse data was passed"),
    ],
)
def test_bad_training_data(X, error, match):
    with pytest.raises(error, match=match):
        small_model().fit(X)


def test_bad_data_after_fit(nonlinear_data):
    model = small_model(max_iter=2).fit(nonlinear_data)
    for method in [model.transform, model.inverse_transform, model.score_samples, model.score]:
        with pytest.raises(ValueError, match="X has 2 features, but NonlinearICA is expecting 3"):
            method(nonlinear_data[:, :2])
        with pytest.raises(ValueError, match="NaN"):
            method(np.full((2, 3), np.nan))
    with pytest.raises(ValueError, match="n_samples must be an integer >= 1"):
        model.sample(0)
    with pytest.raises(NotFittedError):
        small_model().transform(nonlinear_data)


@pytest.mark.parametrize(
    "params, error, match",
    [
        ({"n_layers": 0}, ValueError, "n_layers must be an integer >= 1; got 0"),
        ({"learning_rate": -1.0}, ValueError, "learning_rate must be a finite number > 0"),
        ({"validation_fraction": 1.5}, ValueError, r"validation_fraction must be a number in \(0, 1\)"),
        ({"gradient": "natural"}, ValueError, "gradient must be one of"),
        ({"whiten": "pca"}, ValueError, "whiten must be one of"),
        ({"activation": "relu"}, ValueError, "Unknown activation 'relu'"),
        ({"prior": "cauchy"}, ValueError, "Unknown prior 'cauchy'"),
        ({"optimizer": "not_an_optimizer"}, ValueError, "not an optax optimizer"),
        ({"optimizer": 3}, TypeError, "optimizer must be"),
        ({"batch_size": 2.5}, ValueError, "batch_size must be an integer"),
    ],
)
def test_bad_hyperparameters(nonlinear_data, params, error, match):
    with pytest.raises(error, match=match):
        small_model(**params).fit(nonlinear_data)
