"""Checkpoints and resuming a fit (``nica/_src/checkpoint.py``; float64, small synthetic data).
Checkpoints are nica's file format, read with ``nica.load`` (tests/test_persistence.py tries the
format itself).  The command line's ``--checkpoint`` and ``--resume``: tests/test_cli_commands.py."""

import datetime
import os
import stat
import time

import jax
import numpy as np
import optax
import pytest
from support import Interrupt, assert_same_fit, interrupt_after_checkpoints

import nica
from nica._src import checkpoint as _checkpoint
from nica._src import fitting as _fitting
from nica._src.io import STALE_SECONDS

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(0)
    S = rng.laplace(size=(600, 3))
    H = S @ rng.uniform(-1, 1, (3, 3)).T
    return np.where(H > 0, H, 0.2 * H) @ rng.uniform(-1, 1, (3, 3)).T


def model(**kw):
    settings = dict(n_layers=2, max_iter=8, batch_size=64, learning_rate=3e-3, n_iter_no_change=3, random_state=0)
    settings.update(kw)
    return nica.NonlinearICA(**settings)


@pytest.mark.parametrize(
    "kw",
    [
        dict(),  # logistic-mixture prior, early stopping, plateau
        dict(prior="gaussian", early_stopping=False, n_iter_no_change=2, tol=1e9),  # rate cuts, train loss
        dict(averaging=0.5),  # the running average in the optimizer state
    ],
)
def test_interrupted_and_resumed_fit_equals_the_uninterrupted_fit(X, tmp_path, monkeypatch, kw):
    path = tmp_path / "fit.nica"
    full = model(**kw).fit(X)

    calls = interrupt_after_checkpoints(monkeypatch, 2)
    with pytest.raises(Interrupt):
        model(checkpoint_path=path, checkpoint_every=2, **kw).fit(X)
    monkeypatch.undo()
    assert calls["written"] == 2
    saved = nica.load(path)
    assert saved.n_iter_ == 4 and len(saved.loss_curve_) == 4  # epochs 1-4 done, 5 was running
    assert saved._resume["epochs_left"] == full.max_iter - 4
    # the checkpoint is a usable model at its best epoch so far
    assert np.isfinite(saved.score(X)) and 1 <= saved.best_iter_ <= 4

    resumed = saved.set_params(warm_start=True).fit(X)
    assert "_resume" not in resumed.__dict__
    assert_same_fit(resumed, full)
    # the file written at the end is the finished fit
    final = nica.load(path)
    assert "_resume" not in final.__dict__
    assert_same_fit(final, full)


def test_checkpoint_keeps_the_optimizer_state_and_the_epoch_count(X, tmp_path, monkeypatch):
    path = tmp_path / "fit.nica"
    interrupt_after_checkpoints(monkeypatch, 1)
    with pytest.raises(Interrupt):
        model(checkpoint_path=path, checkpoint_every=3, max_iter=20).fit(X)
    monkeypatch.undo()
    saved = nica.load(path)
    assert saved.n_iter_ == 3
    counts = [
        np.asarray(leaf)
        for leaf in jax.tree_util.tree_leaves(saved._state.opt_state)
        if np.asarray(leaf).dtype.kind == "i"
    ]
    steps_per_epoch = (X.shape[0] - 60) // 64
    assert any(int(c) == 3 * steps_per_epoch for c in counts)  # Adam's step count: 3 epochs
    # a resumed fit continues the count rather than restarting it
    first_epochs = list(saved.loss_curve_)
    resumed = saved.set_params(warm_start=True, max_iter=20).fit(X)
    assert 3 < resumed.n_iter_ <= 20 and resumed.loss_curve_[:3] == first_epochs


def test_timedelta_checkpoints_and_a_resume_on_other_data(X, tmp_path):
    path = tmp_path / "fit.nica"
    fitted = model(checkpoint_path=str(path), checkpoint_every=datetime.timedelta(microseconds=1)).fit(X)
    assert "_resume" not in nica.load(path).__dict__ and nica.load(path).n_iter_ == fitted.n_iter_

    # a resume record made on other data: a plain warm start, with a warning
    saved = nica.load(path)
    saved._resume = {
        **dict.fromkeys(_checkpoint._RESUME_KEYS),
        "format": 2,
        "data": _checkpoint.data_fingerprint(X[:10]),
    }
    with pytest.warns(UserWarning, match=r"the data differ from those the checkpoint was made on \(\(10, 3\) rows"):
        saved.set_params(warm_start=True, max_iter=2).fit(X)
    assert saved.n_iter_ == fitted.n_iter_ + 2


def test_a_resume_record_of_another_format_is_a_warm_start_with_a_warning(X, tmp_path):
    """E.g. a checkpoint of an earlier nica, loaded with allow_pickle=True (format 1: sums of the data)."""
    fitted = model(max_iter=2).fit(X)
    fitted._resume = {"format": 1, "data": {"shape": (600, 3)}}
    with pytest.warns(
        UserWarning, match=r"^NonlinearICA: the checkpoint's resume record has format 1, not 2; continuing"
    ):
        fitted.set_params(warm_start=True, checkpoint_path=tmp_path / "fit.nica").fit(X)
    assert fitted.n_iter_ == 4 and "_resume" not in fitted.__dict__


@pytest.mark.parametrize(
    "kw, error, match",
    [
        (dict(checkpoint_path=3), TypeError, "checkpoint_path must be None, a str or a path-like"),
        (dict(checkpoint_path=""), ValueError, "must name a file"),
        (dict(checkpoint_path="/no/such/folder/fit.joblib"), ValueError, "does not exist"),
        (dict(checkpoint_every=0), ValueError, "checkpoint_every must be an integer >= 1"),
        (dict(checkpoint_every=1.5), TypeError, "checkpoint_every must be an int"),
        (dict(checkpoint_every=True), TypeError, "checkpoint_every must be an int"),
        (dict(checkpoint_every=datetime.timedelta(0)), ValueError, "positive timedelta"),
        (dict(checkpoint_path="fit.nica", n_init=2), ValueError, "needs n_init=1"),
        (
            dict(checkpoint_path="fit.nica", optimizer=optax.chain(optax.adam(1e-3))),
            TypeError,
            "needs an optimizer that can be pickled",
        ),
    ],
)
def test_bad_checkpoint_parameters(X, kw, error, match):
    with pytest.raises(error, match=match):
        model(**kw).fit(X)


def test_checkpoint_path_must_not_be_a_folder(X, tmp_path):
    with pytest.raises(ValueError, match="not a folder"):
        model(checkpoint_path=tmp_path).fit(X)


def test_no_temporary_files_left(X, tmp_path):
    model(checkpoint_path=tmp_path / "a.nica", max_iter=3).fit(X)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nica"]


def test_an_optax_factory_resumes_exactly(X, tmp_path, monkeypatch):
    path = tmp_path / "fit.nica"
    full = model(optimizer=optax.sgd, learning_rate=0.05, max_iter=6).fit(X)
    interrupt_after_checkpoints(monkeypatch, 1)
    with pytest.raises(Interrupt):
        model(optimizer=optax.sgd, learning_rate=0.05, max_iter=6, checkpoint_path=path, checkpoint_every=3).fit(X)
    monkeypatch.undo()
    saved = nica.load(path)
    assert saved.optimizer is optax.sgd
    resumed = saved.set_params(warm_start=True).fit(X)
    assert_same_fit(resumed, full)


# ---------------------------------------------------------------------------------------------
# a new max_iter when resuming


@pytest.fixture
def interrupted(X, tmp_path, monkeypatch):
    """A checkpoint of a fit with max_iter=6, written at epoch 3 (then the process 'died')."""
    path = tmp_path / "fit.nica"
    interrupt_after_checkpoints(monkeypatch, 1)
    with pytest.raises(Interrupt):
        model(max_iter=6, checkpoint_path=path, checkpoint_every=3, n_iter_no_change=100).fit(X)
    monkeypatch.undo()
    return path


@pytest.mark.parametrize("max_iter", [4, 6, 9])
def test_a_resumed_fit_runs_to_the_max_iter_set_now(X, interrupted, max_iter):
    """The resumed fit ends as an uninterrupted fit with the new max_iter would (epochs 1-3 were
    run under max_iter=6, which bounds nothing else)."""
    full = model(max_iter=max_iter, n_iter_no_change=100).fit(X)
    saved = nica.load(interrupted)
    assert saved.n_iter_ == 3 and saved.epochs_left_ == 3
    resumed = saved.set_params(warm_start=True, max_iter=max_iter).fit(X)
    assert resumed.n_iter_ == max_iter
    assert_same_fit(resumed, full)


def test_a_max_iter_reached_already_is_refused_and_changes_nothing(X, interrupted):
    saved = nica.load(interrupted)
    before = saved.network_params_[0].W.copy()
    with pytest.raises(ValueError) as refused:
        saved.set_params(warm_start=True, max_iter=3).fit(X)
    assert str(refused.value) == (
        "max_iter=3 is reached already: the checkpoint's interrupted fit has run 3 of its max_iter=6 epochs. "
        "Use the checkpoint as it is (it holds the best parameters so far), or resume with a max_iter above 3."
    )
    assert saved.epochs_left_ == 3 and saved.n_iter_ == 3
    np.testing.assert_array_equal(saved.network_params_[0].W, before)
    assert saved.set_params(max_iter=5).fit(X).n_iter_ == 5  # the record is still there


# ---------------------------------------------------------------------------------------------
# data fingerprints


def test_the_data_fingerprint_tells_permuted_rows_and_columns_and_the_auxiliary_variable(X):
    base = _checkpoint.data_fingerprint(X)
    assert base == _checkpoint.data_fingerprint(X.copy()) == _checkpoint.data_fingerprint(np.asfortranarray(X))
    assert base["X"] == {"shape": (600, 3), "dtype": "float64"} and len(base["blake2b"]) == 64
    swapped_rows, swapped_columns = X.copy(), X.copy()
    swapped_rows[[0, 1]] = X[[1, 0]]
    swapped_columns[:, [0, 1]] = X[:, [1, 0]]
    changed = X.copy()
    changed[599, 2] = np.nextafter(changed[599, 2], np.inf)
    others = [swapped_rows, swapped_columns, X[::-1], changed, X.astype(np.float32)]
    assert all(_checkpoint.data_fingerprint(A)["blake2b"] != base["blake2b"] for A in others)
    u = np.arange(600) % 4
    with_u = _checkpoint.data_fingerprint(X, u)
    assert with_u != base and with_u != _checkpoint.data_fingerprint(X, u[::-1])
    assert with_u == _checkpoint.data_fingerprint(X, u.copy())


def test_a_resume_on_permuted_rows_is_a_warm_start_with_a_warning(X, interrupted):
    saved = nica.load(interrupted)
    with pytest.warns(UserWarning, match="the data differ from those the checkpoint was made on"):
        saved.set_params(warm_start=True, max_iter=2).fit(X[::-1])
    assert saved.n_iter_ == 5


# ---------------------------------------------------------------------------------------------
# what a checkpoint cannot hold: refused before any epoch


class DecayedAdam:
    """A picklable optimizer factory with a schedule (as a user would write one)."""

    def __call__(self, learning_rate):
        return optax.adam(optax.exponential_decay(learning_rate, transition_steps=8, decay_rate=0.9))


def test_a_user_optimizer_factory_cannot_be_checkpointed(X, tmp_path, no_epoch):
    """nica's format stores names and numbers; a user's factory would have to be unpickled."""
    optimizer = DecayedAdam()
    with pytest.raises(TypeError) as refused:
        model(optimizer=optimizer, checkpoint_path=tmp_path / "fit.nica").fit(X)
    assert str(refused.value) == (
        f"cannot save NonlinearICA in nica's file format: its parameter optimizer={optimizer!r} is a DecayedAdam, "
        "which the format cannot describe without pickle; give optimizer an optax name ('adam') or an optax "
        "factory (optax.adam) (or pickle the estimator with joblib.dump, to be loaded only where the file is "
        "trusted)."
    )
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# the checkpoint's file: checked when the fit starts, before any epoch


@pytest.fixture
def no_epoch(monkeypatch):
    def compile_epoch(*args, **kwargs):
        raise AssertionError("an epoch was compiled before checkpoint_path was checked")

    monkeypatch.setattr(_fitting, "compile_epoch", compile_epoch)


def test_a_fifo_or_a_link_to_one_is_refused_before_any_epoch(X, tmp_path, no_epoch):
    pipe = tmp_path / "pipe.joblib"
    os.mkfifo(pipe)
    (tmp_path / "link.joblib").symlink_to(pipe)
    with pytest.raises(ValueError) as refused:
        model(checkpoint_path=pipe).fit(X)
    assert str(refused.value) == (
        f"cannot write checkpoint_path '{pipe}': it is a FIFO (named pipe), not a regular file; "
        "nica writes only regular files"
    )
    with pytest.raises(
        ValueError, match=f"'{tmp_path}/link.joblib': it is a symbolic link to '{pipe}', which is a FIFO"
    ):
        model(checkpoint_path=tmp_path / "link.joblib").fit(X)
    assert stat.S_ISFIFO(os.lstat(pipe).st_mode) and (tmp_path / "link.joblib").is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.joblib", "pipe.joblib"]


def test_dev_null_is_refused_by_the_check():
    """Only the check is called (it writes nothing): run as root, a fit would replace /dev/null."""
    with pytest.raises(ValueError, match="^cannot write checkpoint_path '/dev/null': it is a character device"):
        _checkpoint.check_checkpoint_params(model(checkpoint_path="/dev/null"))
    assert stat.S_ISCHR(os.lstat("/dev/null").st_mode)


def test_an_unwritable_folder_is_refused_before_any_epoch(X, tmp_path, monkeypatch, no_epoch):
    """Simulated with os.access (the tests may run as root, whom file modes do not bind)."""
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if os.fspath(p) == str(tmp_path) else real_access(p, mode))
    with pytest.raises(
        ValueError, match=f"^cannot write checkpoint_path '.*': permission denied in directory '{tmp_path}'$"
    ):
        model(checkpoint_path=tmp_path / "fit.nica").fit(X)


def test_a_name_too_long_for_the_temporary_file_is_refused_before_any_epoch(X, tmp_path, no_epoch):
    name = "c" * (os.pathconf(tmp_path, "PC_NAME_MAX") - 4)  # fits, but its temporary file's name does not
    with pytest.raises(
        ValueError, match=f"cannot write checkpoint_path .*: the file name is {len(name)} bytes long and"
    ):
        model(checkpoint_path=tmp_path / name).fit(X)
    assert list(tmp_path.iterdir()) == []


def test_a_killed_writers_temporary_file_is_removed_by_the_next_checkpoint(X, tmp_path):
    stale = tmp_path / ".fit.nica.0123abcd-4242.abcdefgh.part"  # left by a writer killed outright
    stale.write_bytes(b"half a checkpoint")
    old = time.time() - STALE_SECONDS - 60
    os.utime(stale, (old, old))
    model(checkpoint_path=tmp_path / "fit.nica", max_iter=2).fit(X)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.nica"]
