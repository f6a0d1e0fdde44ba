"""Both estimators as scikit-learn citizens: scikit-learn's own estimator checks, ``clone``,
pipelines, grid search (scored by held-out log-likelihood), ``set_params``, and pickling with
``pickle`` and ``joblib`` (what ``nica fit --model`` and checkpoints rely on)."""

import io
import pickle

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import nica
from nica.datasets import make_segmented_mixture

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@parametrize_with_checks(
    [
        nica.NonlinearICA(n_layers=2, max_iter=5),
        nica.NonlinearICA(
            n_layers=1, max_iter=3, whiten="unit-variance", bias=False, early_stopping=False, prior="gaussian"
        ),
        nica.ConditionalNonlinearICA(n_layers=2, max_iter=4),
    ]
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def nonlinear_data():
    rng = np.random.default_rng(0)
    S = rng.laplace(size=(1500, 3))
    A1, A2 = rng.uniform(-1, 1, (3, 3)), rng.uniform(-1, 1, (3, 3))
    H = S @ A1.T
    return np.where(H > 0, H, 0.2 * H) @ A2.T


def small_model(**kw):
    defaults = dict(n_layers=2, max_iter=15, batch_size=128, learning_rate=3e-3, random_state=0)
    defaults.update(kw)
    return nica.NonlinearICA(**defaults)


@pytest.fixture(scope="module")
def segmented():
    return make_segmented_mixture(n_segments=8, n_per_segment=250, n_components=2, n_layers=2, random_state=0)


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
    by_hand = [
        np.mean(
            [
                small_model(max_iter=4, n_layers=n_layers).fit(nonlinear_data[train]).score(nonlinear_data[test])
                for train, test in KFold(2).split(nonlinear_data)
            ]
        )
        for n_layers in (1, 2)
    ]
    np.testing.assert_allclose(search.cv_results_["mean_test_score"], by_hand, rtol=1e-12)
    assert search.best_params_["n_layers"] == (1, 2)[int(np.argmax(by_hand))]
    assert search.best_estimator_.n_layers == search.best_params_["n_layers"]


def test_clone_and_grid_search_with_aux(segmented):
    cv = KFold(2, shuffle=True, random_state=0)  # every fold must see every segment
    search = GridSearchCV(
        nica.ConditionalNonlinearICA(n_layers=2, max_iter=3, learning_rate=3e-3, batch_size=128, random_state=0),
        {"learn_location": [True, False]},
        cv=cv,
    )
    search.fit(segmented.X_train, segmented.u_train)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert clone(search.best_estimator_).get_params()["max_iter"] == 3


def test_set_params_with_an_unknown_name():
    with pytest.raises(ValueError, match="Invalid parameter 'bogus' for estimator NonlinearICA"):
        nica.NonlinearICA().set_params(bogus=1)
    with pytest.raises(ValueError, match="Invalid parameter 'bogus' for estimator ConditionalNonlinearICA"):
        nica.ConditionalNonlinearICA().set_params(bogus=1)
