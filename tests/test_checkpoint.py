"""Checkpoints and resuming a fit (float64, small synthetic data)."""

import datetime

import joblib
import numpy as np
import jax
import optax
import pytest

import nica
from nica._src import checkpoint as _checkpoint

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(0)
    S = rng.laplace(size=(600, 3))
    H = S @ rng.uniform(-1, 1, (3, 3)).T
    return np.where(H > 0, H, 0.2 * H) @ rng.uniform(-1, 1, (3, 3)).T


def model(**kw):
    settings = dict(n_layers=2, max_iter=8, batch_size=64, learning_rate=3e-3, n_iter_no_change=3,
                    random_state=0)
    settings.update(kw)
    return nica.NonlinearICA(**settings)


class Interrupt(KeyboardInterrupt):
    pass


def interrupt_after_checkpoints(monkeypatch, n):
    """The process 'dies' right after the n-th checkpoint written during the fit."""
    real = _checkpoint.Checkpointer.epoch_start
    calls = {"written": 0}

    def epoch_start(self, estimator, *args):
        before = self.last_iter
        real(self, estimator, *args)
        if self.last_iter is not None and before is not None and self.last_iter != before:
            calls["written"] += 1
            if calls["written"] == n:
                raise Interrupt

    monkeypatch.setattr(_checkpoint.Checkpointer, "epoch_start", epoch_start)
    return calls


def assert_same_fit(a, b):
    assert a.n_iter_ == b.n_iter_ and a.best_iter_ == b.best_iter_
    np.testing.assert_array_equal(a.loss_curve_, b.loss_curve_)
    np.testing.assert_array_equal(a.validation_scores_, b.validation_scores_)
    for la, lb in zip(a.params_, b.params_):
        np.testing.assert_array_equal(la.W, lb.W)
        np.testing.assert_array_equal(la.b, lb.b)
    np.testing.assert_array_equal(a.prior_params_["loc"] if isinstance(a.prior_params_, dict) else 0,
                                  b.prior_params_["loc"] if isinstance(b.prior_params_, dict) else 0)


@pytest.mark.parametrize("kw", [
    dict(),                                              # logistic-mixture prior, early stopping, plateau
    dict(prior="gaussian", early_stopping=False, n_iter_no_change=2, tol=1e9),  # rate cuts, train loss
    dict(averaging=0.5),                                 # the running average in the optimizer state
])
def test_interrupted_and_resumed_fit_equals_the_uninterrupted_fit(X, tmp_path, monkeypatch, kw):
    path = tmp_path / "fit.joblib"
    full = model(**kw).fit(X)

    calls = interrupt_after_checkpoints(monkeypatch, 2)
    with pytest.raises(Interrupt):
        model(checkpoint_path=path, checkpoint_every=2, **kw).fit(X)
    monkeypatch.undo()
    assert calls["written"] == 2
    saved = joblib.load(path)
    assert saved.n_iter_ == 4 and len(saved.loss_curve_) == 4  # epochs 1-4 done, 5 was running
    assert saved._resume["epochs_left"] == full.max_iter - 4
    # the checkpoint is a usable model at its best epoch so far
    assert np.isfinite(saved.score(X)) and 1 <= saved.best_iter_ <= 4

    resumed = saved.set_params(warm_start=True).fit(X)
    assert "_resume" not in resumed.__dict__
    assert_same_fit(resumed, full)
    # the file written at the end is the finished fit
    final = joblib.load(path)
    assert "_resume" not in final.__dict__
    assert_same_fit(final, full)


def test_checkpoint_keeps_the_optimizer_state_and_the_epoch_count(X, tmp_path, monkeypatch):
    path = tmp_path / "fit.joblib"
    interrupt_after_checkpoints(monkeypatch, 1)
    with pytest.raises(Interrupt):
        model(checkpoint_path=path, checkpoint_every=3, max_iter=20).fit(X)
    monkeypatch.undo()
    saved = joblib.load(path)
    assert saved.n_iter_ == 3
    counts = [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(saved._state.opt_state)
              if np.asarray(leaf).dtype.kind == "i"]
    steps_per_epoch = (X.shape[0] - 60) // 64
    assert any(int(c) == 3 * steps_per_epoch for c in counts)  # Adam's step count: 3 epochs
    # a resumed fit continues the count rather than restarting it
    first_epochs = list(saved.loss_curve_)
    resumed = saved.set_params(warm_start=True, max_iter=20).fit(X)
    assert 3 < resumed.n_iter_ <= 20 and resumed.loss_curve_[:3] == first_epochs


def test_timedelta_checkpoints_and_a_resume_on_other_data(X, tmp_path):
    path = tmp_path / "fit.joblib"
    fitted = model(checkpoint_path=str(path), checkpoint_every=datetime.timedelta(microseconds=1)).fit(X)
    assert "_resume" not in joblib.load(path).__dict__ and joblib.load(path).n_iter_ == fitted.n_iter_

    # a resume record made on other data: a plain warm start, with a warning
    saved = joblib.load(path)
    saved._resume = {"format": 1, "data": _checkpoint.data_fingerprint(X[:10])}
    with pytest.warns(UserWarning, match="data differ"):
        saved.set_params(warm_start=True, max_iter=2).fit(X)
    assert saved.n_iter_ == fitted.n_iter_ + 2


def test_warm_start_continues_the_optimizer_state_and_epoch_count(X):
    first = model(max_iter=3, warm_start=True, early_stopping=False).fit(X)
    before = [np.array(leaf) for leaf in jax.tree_util.tree_leaves(first._state.opt_state)]
    first.fit(X)
    after = [np.array(leaf) for leaf in jax.tree_util.tree_leaves(first._state.opt_state)]
    counts = [(b, a) for b, a in zip(before, after) if b.dtype.kind == "i"]
    assert counts and all(int(a) == 2 * int(b) for b, a in counts)
    assert first.n_iter_ == 6 and len(first.loss_curve_) == 6


@pytest.mark.parametrize("kw, error, match", [
    (dict(checkpoint_path=3), TypeError, "checkpoint_path must be None, a str or a path-like"),
    (dict(checkpoint_path=""), ValueError, "must name a file"),
    (dict(checkpoint_path="/no/such/folder/fit.joblib"), ValueError, "does not exist"),
    (dict(checkpoint_every=0), ValueError, "checkpoint_every must be an integer >= 1"),
    (dict(checkpoint_every=1.5), TypeError, "checkpoint_every must be an int"),
    (dict(checkpoint_every=True), TypeError, "checkpoint_every must be an int"),
    (dict(checkpoint_every=datetime.timedelta(0)), ValueError, "positive timedelta"),
    (dict(checkpoint_path="fit.joblib", n_init=2), ValueError, "needs n_init=1"),
    (dict(checkpoint_path="fit.joblib", optimizer=optax.chain(optax.adam(1e-3))), TypeError,
     "needs an optimizer that can be pickled"),
])
def test_bad_checkpoint_parameters(X, kw, error, match):
    with pytest.raises(error, match=match):
        model(**kw).fit(X)


def test_checkpoint_path_must_not_be_a_folder(X, tmp_path):
    with pytest.raises(ValueError, match="not a folder"):
        model(checkpoint_path=tmp_path).fit(X)


def test_no_temporary_files_left(X, tmp_path):
    model(checkpoint_path=tmp_path / "a.joblib", max_iter=3).fit(X)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.joblib"]


def test_cli_fit_checkpoint_and_resume(X, tmp_path, capsys, monkeypatch):
    from nica.cli import load_model, main

    np.save(tmp_path / "X.npy", X)
    options = ["--n-layers", "2", "--max-iter", "6", "--batch-size", "64", "--learning-rate", "3e-3",
               "--random-state", "0"]
    assert main(["fit", str(tmp_path / "X.npy"), "--model", str(tmp_path / "full.nica")] + options) == 0
    full = load_model(tmp_path / "full.nica")

    interrupt_after_checkpoints(monkeypatch, 1)
    code = main(["fit", str(tmp_path / "X.npy"), "--model", str(tmp_path / "m.nica"), "--checkpoint",
                 str(tmp_path / "ckpt.joblib"), "--checkpoint-every", "3"] + options)
    monkeypatch.undo()
    assert code == 130 and not (tmp_path / "m.nica").exists()
    assert joblib.load(tmp_path / "ckpt.joblib").n_iter_ == 3
    capsys.readouterr()
    assert main(["fit", str(tmp_path / "X.npy"), "--resume", str(tmp_path / "ckpt.joblib"),
                 "--model", str(tmp_path / "m.nica")]) == 0
    assert "in 6 epochs" in capsys.readouterr().out
    assert_same_fit(load_model(tmp_path / "m.nica"), full)

    # a model file resumes too (a warm start: max_iter more epochs)
    assert main(["fit", str(tmp_path / "X.npy"), "--resume", str(tmp_path / "full.nica"),
                 "--model", str(tmp_path / "more.nica"), "--max-iter", "2"]) == 0
    assert load_model(tmp_path / "more.nica").n_iter_ == 8


@pytest.mark.parametrize("argv, message", [
    (["--checkpoint-every", "0"], "expected a number of epochs"),
    (["--checkpoint-every", "10 parsecs"], "expected a number of epochs"),
    (["--checkpoint-every", "5"], "--checkpoint-every needs --checkpoint FILE"),
    (["--resume", "{d}/X.npy"], "is not a nica checkpoint"),
    (["--resume", "{d}/missing.joblib"], "no such file"),
])
def test_cli_checkpoint_errors(X, tmp_path, capsys, argv, message):
    from nica.cli import main

    np.save(tmp_path / "X.npy", X)
    code = main(["fit", str(tmp_path / "X.npy"), "--model", str(tmp_path / "m.nica"), "--max-iter", "1"]
                + [a.format(d=tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


class DecayedAdam:
    """A picklable optimizer factory with a schedule (as a user would write one)."""

    def __call__(self, learning_rate):
        return optax.adam(optax.exponential_decay(learning_rate, transition_steps=8, decay_rate=0.9))


def test_a_scheduled_optimizer_factory_resumes_exactly(X, tmp_path, monkeypatch):
    path = tmp_path / "fit.joblib"
    full = model(optimizer=DecayedAdam(), max_iter=6).fit(X)
    interrupt_after_checkpoints(monkeypatch, 1)
    with pytest.raises(Interrupt):
        model(optimizer=DecayedAdam(), max_iter=6, checkpoint_path=path, checkpoint_every=3).fit(X)
    monkeypatch.undo()
    resumed = joblib.load(path).set_params(warm_start=True).fit(X)
    assert_same_fit(resumed, full)


def test_repeated_spike_restarts_keep_the_best_parameters(X, monkeypatch):
    """Every epoch a 'spike' (the guard's threshold made negative): each restart at the best
    parameters must not hand the next epoch (which donates its input) the kept best copy."""
    update = nica.EarlyStopping.update

    def a_spike_after_the_first_epoch(self, status, score, epoch):
        if status.best_epoch == 0:
            return update(self, status, score, epoch)
        return status._replace(no_change=status.no_change + 1), nica.Decision(False, "spike")

    monkeypatch.setattr(nica.EarlyStopping, "update", a_spike_after_the_first_epoch)
    fitted = model(max_iter=5).fit(X)
    assert fitted.best_iter_ == 1 and fitted.n_iter_ == 5
    assert np.isfinite(fitted.score(X))
