"""Checkpoints of a fit in progress, and resuming from them.

``NonlinearICA(checkpoint_path=..., checkpoint_every=...)`` saves the estimator itself in nica's
file format (:mod:`nica._src.persistence`, what :func:`nica.save` writes: arrays and a JSON
header, no pickle) every ``checkpoint_every`` epochs, or once that much time has passed (a
:class:`datetime.timedelta`), at the start of the next epoch, and once more when the fit ends.
``checkpoint_path`` is checked when the fit starts, before any epoch
(:func:`nica._src.io.check_writable`: a regular file, or none yet, in a folder that exists and
can be written, with a name the file system takes), and so is the estimator (its parameters must
be names, numbers or registered components, which the format can describe).  A file is written
under a temporary name in the same folder and then renamed over ``checkpoint_path``, so an
interruption never leaves a half-written checkpoint (nor, once the next checkpoint is written, a
temporary file).

A checkpoint written during the fit is an ordinary fitted estimator: its parameters are the
best ones so far (by the monitored score, as the fit would restore), so ``nica.load(path)`` can
score, transform and sample at once.  It also carries what the fit needs to continue exactly
where it was (``_resume``): the parameters of the last epoch, the optimizer state, the random
key of the next epoch's shuffle, the state of the random generator that drew the validation
split, the early-stopping counters, the number of epochs left and the ``max_iter`` the fit ran
under, and a hash of the training data.  Calling ``fit`` on it with ``warm_start=True`` and the
same data runs the remaining epochs; the result equals the uninterrupted fit's (same
floating-point operations in the same order on the same machine).  A ``max_iter`` changed since
the checkpoint was written moves the end of the interrupted fit: it runs up to the new
``max_iter`` epochs in all.  The checkpoint written when the fit ends has no ``_resume``:
``warm_start`` then continues as from any fitted model (``max_iter`` more epochs).
"""

from __future__ import annotations

import datetime
import hashlib
import numbers
import os
import pickle
import time
import warnings

import jax
import numpy as np

from nica._src import persistence
from nica._src.distributed import is_writer, tree_digest
from nica._src.io import check_writable
from nica._src.training import TrainState

__all__ = [
    "check_checkpoint_params",
    "Checkpointer",
    "resume_state",
    "resume_epochs",
    "describe_resume",
    "data_fingerprint",
]

# 2: the data's content hash, and the max_iter the fit ran under (1: sums of the data)
_RESUME_FORMAT = 2
_RESUME_KEYS = (
    "params",
    "prior_params",
    "key",
    "best_score",
    "no_change",
    "reductions",
    "epochs_left",
    "max_iter",
    "rng_state",
    "data",
)


def check_checkpoint_params(estimator):
    """Validate ``checkpoint_path`` and ``checkpoint_every`` (absent on estimators without
    checkpoints); returns ``(path or None, every)``."""
    path = getattr(estimator, "checkpoint_path", None)
    every = getattr(estimator, "checkpoint_every", 1)
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"checkpoint_path must be None, a str or a path-like; got {path!r} of type {type(path).__name__}."
        )
    if path is not None:
        path = os.fspath(path)
        if path == "" or os.path.isdir(path):
            raise ValueError(f"checkpoint_path must name a file, not a folder; got {path!r}.")
        # before any epoch: a folder that is missing or read-only, a FIFO or a device, a name
        # too long for the file system (the temporary file's included)
        check_writable(path, "checkpoint_path")
    if isinstance(every, datetime.timedelta):
        if every.total_seconds() <= 0:
            raise ValueError(f"checkpoint_every must be a positive timedelta; got {every!r}.")
    elif isinstance(every, numbers.Integral) and not isinstance(every, (bool, np.bool_)):
        if every < 1:
            raise ValueError(f"checkpoint_every must be an integer >= 1 (epochs); got {every!r}.")
    else:
        raise TypeError(
            "checkpoint_every must be an int (epochs) or a datetime.timedelta (time "
            f"between checkpoints); got {every!r} of type {type(every).__name__}."
        )
    if path is not None:
        try:
            pickle.dumps(estimator.optimizer)
        except Exception as error:
            raise TypeError(
                f"checkpoint_path needs an optimizer that can be pickled with the estimator; "
                f"{estimator.optimizer!r} cannot ({type(error).__name__}: {error}).  Pass an optax name "
                "or factory (optax.adam), or a callable object or module-level function that builds "
                "the transformation from the learning rate (optax chains and schedules are closures)."
            ) from None
    if path is not None and getattr(estimator, "n_init", 1) != 1:
        raise ValueError(
            f"checkpoint_path needs n_init=1 (a checkpoint holds one run in progress); got n_init={estimator.n_init!r}."
        )
    return path, every


def data_fingerprint(X, U=None) -> dict:
    """The training data's identity, to tell a resume on other data: shape, dtype and a BLAKE2b
    hash of the C-ordered bytes of ``X`` (and of ``U``, the encoded auxiliary variable, when
    given), so that permuted rows or columns, or any changed value, count as other data."""
    digest = hashlib.blake2b(digest_size=32)
    fingerprint: dict = {}
    for name, A in (("X", X), ("U", U)):
        if A is None:
            continue
        A = np.ascontiguousarray(A)
        digest.update(f"{name}:{A.shape}:{A.dtype.str};".encode())
        digest.update(A.reshape(-1).view(np.uint8).data)
        fingerprint[name] = {"shape": tuple(int(s) for s in A.shape), "dtype": str(A.dtype)}
    fingerprint["blake2b"] = digest.hexdigest()
    return fingerprint


def _unusable(estimator, message):
    """Warn that the resume record cannot be used (the fit continues as a warm start) and drop it."""
    # the user's call to fit: two frames above the estimator's own warnings (resume_state, this)
    stacklevel = getattr(estimator, "_warning_stacklevel", 4) + 1
    warnings.warn(f"{type(estimator).__name__}: {message}", UserWarning, stacklevel=stacklevel)
    estimator.__dict__.pop("_resume", None)


def resume_state(estimator, X, U=None):
    """The ``_resume`` record of a loaded checkpoint, or None (with a warning when it is
    unusable).  The record is removed from the estimator, except when the fit is refused
    (:func:`resume_epochs`: a ``max_iter`` the interrupted fit has reached already), which
    leaves the estimator as it was."""
    resume = estimator.__dict__.get("_resume")
    if resume is None:
        return None
    found = resume.get("format") if isinstance(resume, dict) else None
    if found != _RESUME_FORMAT:
        _unusable(
            estimator,
            f"the checkpoint's resume record has format {found!r}, not {_RESUME_FORMAT}; continuing as a warm start.",
        )
        return None
    missing = [key for key in _RESUME_KEYS if key not in resume]
    if missing:
        _unusable(estimator, f"the checkpoint's resume record lacks {missing}; continuing as a warm start.")
        return None
    fingerprint = data_fingerprint(X, U)
    if fingerprint != resume["data"]:
        then = resume["data"].get("X", {}).get("shape") if isinstance(resume["data"], dict) else None
        _unusable(
            estimator,
            f"the data differ from those the checkpoint was made on ({then} rows x features then, "
            f"{fingerprint['X']['shape']} now, or other values); it cannot resume that fit exactly and "
            "continues as a warm start (max_iter more epochs, a new validation split).",
        )
        return None
    resume_epochs(estimator, resume)  # refused before anything changes
    return estimator.__dict__.pop("_resume")


def describe_resume(resume) -> str:
    """What identifies a resume record (or its absence) in a line: the processes of a
    multi-process fit compare it, so that they all resume the same interrupted fit."""
    if resume is None:
        return "no interrupted fit"
    digest = tree_digest((resume["params"], resume["prior_params"], resume["key"]), 8)
    return (
        f"an interrupted fit with {resume['epochs_left']} of max_iter={resume['max_iter']} epochs left, best "
        f"score {resume['best_score']!r}, parameters {digest}, data {resume['data']['blake2b'][:16]}"
    )


def resume_epochs(estimator, resume):
    """The epochs a resumed fit runs: those left of the interrupted fit, moved by the change of
    ``max_iter`` since the checkpoint was written (the fit ends at ``max_iter`` epochs in all,
    counted from where it started); a ``ValueError`` when the new ``max_iter`` is reached already."""
    done = int(resume["max_iter"]) - int(resume["epochs_left"])  # epochs this fit has run
    epochs = int(estimator.max_iter) - done
    if epochs < 1:
        raise ValueError(
            f"max_iter={estimator.max_iter} is reached already: the checkpoint's interrupted fit has run "
            f"{done} of its max_iter={resume['max_iter']} epochs. Use the checkpoint as it is (it holds the "
            f"best parameters so far), or resume with a max_iter above {done}."
        )
    return epochs


def _as_numpy(tree):
    return jax.tree_util.tree_map(lambda a: np.array(a, copy=True), tree)


class Checkpointer:
    """Writes the checkpoints of one call to ``fit``."""

    def __init__(self, path, every, rng_state, fingerprint, stop_at):
        self.path = path
        self.every = every
        self.rng_state = rng_state
        self.fingerprint = fingerprint
        self.stop_at = stop_at  # the epoch count at which the fit ends (max_iter reached)
        self.last_time = time.monotonic()
        self.last_iter = None

    def due(self, n_iter):
        if self.last_iter is None:
            self.last_iter = n_iter  # the fit (or resume) starts here: nothing new to save
            return False
        if n_iter == self.last_iter:
            return False
        if isinstance(self.every, datetime.timedelta):
            return time.monotonic() - self.last_time >= self.every.total_seconds()
        return n_iter - self.last_iter >= self.every

    def epoch_start(self, estimator, state, key, best, best_score, no_change, reductions):
        """At the start of an epoch: save if due.  ``state`` is the live training state,
        ``best`` the best ``(params, prior_params)`` so far."""
        if not self.due(estimator.n_iter_):
            return
        resume = {
            "format": _RESUME_FORMAT,
            "params": _as_numpy(state.params),
            "prior_params": _as_numpy(state.prior_params),
            "key": np.asarray(jax.random.key_data(key)),
            "best_score": float(best_score),
            "no_change": int(no_change),
            "reductions": int(reductions),
            "epochs_left": int(self.stop_at - estimator.n_iter_),
            "max_iter": int(estimator.max_iter),
            "rng_state": self.rng_state,
            "data": self.fingerprint,
        }
        live = estimator._state
        estimator._state = TrainState(*_as_numpy(best), _as_numpy(state.opt_state))
        estimator._resume = resume
        try:
            self.write(estimator)
        finally:
            estimator._state = live
            del estimator._resume
        self.last_iter, self.last_time = estimator.n_iter_, time.monotonic()

    def write(self, estimator):
        """Save ``estimator`` to the checkpoint file (atomically, in nica's file format); in a
        fit over several processes, process 0 writes it."""
        if is_writer():
            persistence.write(estimator, self.path, name="checkpoint_path")
