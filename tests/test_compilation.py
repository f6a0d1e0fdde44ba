"""Compile once per setting: the epochs, the validation and the scoring paths take rows padded
to buckets of row counts (``nica/_src/training.py``: ``bucket_rows``), so fits and scores on
nearby row counts (the folds of a cross-validation) reuse one compilation.  Counted with JAX's
compilation events (``jax.monitoring``), never with a timer."""

import contextlib
import warnings

import jax
import numpy as np
import optax
import pytest
from oracles import epoch_permutation
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV

import nica
from nica._src.fitting import scoring_rows
from nica._src.training import bucket_rows, make_epoch, training_rows

BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"
SETTINGS = dict(n_layers=2, max_iter=3, batch_size=64, random_state=0)


@pytest.fixture(autouse=True)
def no_persistent_cache():
    """Every program is compiled here, none loaded from a persistent cache (which would hide it
    from the count)."""
    previous = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    try:
        yield
    finally:
        jax.config.update("jax_enable_compilation_cache", previous)


@contextlib.contextmanager
def compilations():
    """The backend compilations (one entry each) made inside the block."""
    seen: list[str] = []

    def listener(event, duration, **kwargs):
        if event == BACKEND_COMPILE:
            seen.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield seen
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def data(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.laplace(size=(n, 3)) @ np.array([[1.0, 0.4, 0.0], [0.2, 1.0, 0.3], [0.0, 0.5, 1.0]])


def test_the_counter_sees_a_compilation():
    with compilations() as seen:
        jax.jit(lambda x: x * 3.0 + 1.0)(np.zeros(7))
    assert len(seen) == 1


def test_buckets():
    assert [bucket_rows(n, 1) for n in (1, 7, 8, 9, 10, 11, 17, 33)] == [1, 7, 8, 10, 10, 12, 20, 40]
    assert training_rows(599, 64) == training_rows(600, 64) == 640
    assert training_rows(50, 64) == 50  # smaller than a batch: used whole, not padded
    assert scoring_rows(100) == scoring_rows(101) == (112, 112)
    assert scoring_rows(20_000) == (8192, 24_576)
    for n in range(1, 3000, 7):  # at most 25 % more rows than whole units hold
        assert n <= bucket_rows(n, 16) <= 1.25 * 16 * -(-n // 16)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_a_fit_on_one_row_fewer_compiles_nothing():
    X = data(667)
    nica.NonlinearICA(**SETTINGS).fit(X)
    with compilations() as seen:
        model = nica.NonlinearICA(**SETTINGS).fit(X[:666])
    assert seen == []
    assert np.all(np.isfinite(model.score_samples(X[:5])))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_scoring_and_transforming_nearby_row_counts_compiles_once():
    X = data(400)
    model = nica.NonlinearICA(**SETTINGS).fit(X)
    model.score_samples(X[:100])
    model.transform(X[:100])
    model.inverse_transform(X[:100])
    with compilations() as seen:
        ll = model.score_samples(X[:101])
        S = model.transform(X[:101])
        back = model.inverse_transform(S)
        model.score(X[:103])
    assert seen == []
    # the padding changes nothing: the rows are those of one call on all of them
    np.testing.assert_allclose(ll, model.score_samples(X)[:101], rtol=1e-12)
    np.testing.assert_allclose(back, X[:101], rtol=1e-9, atol=1e-9)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_the_conditional_model_scores_nearby_row_counts_with_one_compilation():
    X, u = data(400), np.repeat(np.arange(4), 100)
    model = nica.ConditionalNonlinearICA(**SETTINGS).fit(X, u)
    model.predict_proba(X[:100])
    model.score_samples(X[:100], u[:100])
    with compilations() as seen:
        proba = model.predict_proba(X[:101])
        labels = model.predict(X[:103])
        ll = model.score_samples(X[:101], u[:101])
    assert seen == []
    np.testing.assert_allclose(proba, model.predict_proba(X)[:101], rtol=1e-12)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert np.array_equal(labels, model.predict(X)[:103])
    np.testing.assert_allclose(ll, model.score_samples(X, u)[:101], rtol=1e-12)


def test_a_grid_search_compiles_once_per_setting():
    """A 3-fold GridSearchCV over 2 settings: every compilation happens at a setting's first fold
    (fit and score); the other folds (667, 667 and 666 training rows) compile nothing."""
    starts: list[int] = []

    class Counted(nica.NonlinearICA):
        def fit(self, X, y=None):
            starts.append(len(seen))
            return super().fit(X, y)

    X = data(1000, seed=1)
    # learning rates no other test uses: each setting has its own optimizer, hence its own epoch
    grid = {"learning_rate": [0.0123, 0.00456]}
    with compilations() as seen, warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        GridSearchCV(Counted(**SETTINGS), grid, cv=3, refit=False).fit(X)
    assert len(starts) == 6  # setting-major: folds 0, 1, 2 of the first setting, then the second's
    per_fit = np.diff([*starts, len(seen)])
    assert per_fit[0] > 0 and per_fit[3] > 0  # the epochs of the two optimizers
    assert per_fit.tolist()[1:3] == [0, 0] and per_fit.tolist()[4:] == [0, 0]


def test_a_padded_epoch_is_the_epoch_of_the_rows_it_holds():
    """``n_rows`` with rows padded beforehand: the same epoch as the unpadded call; nearby row
    counts share the compiled epoch; a set of a bucket's size is shuffled by the documented
    permutation (nothing padded, no step skipped)."""
    opt = optax.sgd(1e-2)
    epoch = make_epoch(opt, "tanh_linear", "laplace", "relative", 16)
    X = np.asarray(jax.random.laplace(jax.random.key(0), (75, 3)))
    key = jax.random.key(1)
    states = [nica.init_train_state(opt, nica.init_params(jax.random.key(2), 3, 2)) for _ in range(4)]

    a, loss_a = epoch(states[0], X, None, key)
    padded = np.zeros((training_rows(75, 16), 3))
    padded[:75] = X
    b, loss_b = epoch(states[1], padded, None, key, n_rows=75)
    np.testing.assert_array_equal(a.params[0].W, b.params[0].W)
    assert float(loss_a) == float(loss_b)
    with compilations() as seen:
        epoch(states[2], X[:70], None, key)  # 70 and 75 rows: one bucket (80 rows)
    assert seen == []

    c, loss_c = epoch(states[3], X[:64], None, key)  # 4 batches: a bucket's size
    step = jax.jit(nica.make_train_step(opt, activation="tanh_linear", prior="laplace"))
    replay = nica.init_train_state(opt, nica.init_params(jax.random.key(2), 3, 2))
    losses = []
    for rows in epoch_permutation(key, 64).reshape(4, 16):
        replay, batch_loss = step(replay, X[rows])
        losses.append(float(batch_loss))
    np.testing.assert_allclose(c.params[0].W, replay.params[0].W, rtol=1e-12, atol=1e-14)
    assert float(loss_c) == pytest.approx(np.mean(losses), rel=1e-12)
