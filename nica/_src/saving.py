"""Saving and loading fitted estimators: :func:`nica.save` and :func:`nica.load`, in nica's file
format (:mod:`nica._src.persistence`: arrays and a JSON header, never a pickle)."""

from __future__ import annotations

import inspect
import os
import warnings

import joblib

from nica._src import persistence
from nica._src.estimator import ConditionalNonlinearICA, NonlinearICA
from nica._src.estimator.inference import precision
from nica._src.fit_state import init_fit_state, is_fit_state
from nica._src.training import TrainState, init_train_state

__all__ = ["save", "load", "CLASSES", "read_estimator"]

CLASSES = {cls.__name__: cls for cls in (NonlinearICA, ConditionalNonlinearICA)}


def save(estimator, path) -> None:
    """Save an estimator to a file that :func:`nica.load` reads back without unpickling.

    The file is one NumPy ``.npz`` archive: a JSON header (the format and its version, the nica
    version, the class, the constructor parameters, the fitted attributes) and the arrays (the
    pre-processing, the network's layers, the prior's parameters, the optimizer state).
    Components are stored by their registered names and fields (an activation, a prior, an
    objective term; an optax factory or optimizer name), so the file holds no code.  It is
    written under a temporary name in the same folder and renamed onto ``path``, so an
    interruption leaves the old file as it was.  ``nica fit --model`` and ``checkpoint_path``
    write the same format.

    Parameters
    ----------
    estimator : NonlinearICA or ConditionalNonlinearICA
        Fitted or not.  Its parameters must be names, numbers or registered components: an
        ``optax.GradientTransformation`` or a user's function as ``optimizer``, or an
        activation, prior or objective whose class is not registered, is refused with a
        ``TypeError`` naming the parameter (pickle such an estimator with :func:`joblib.dump`
        instead, to be loaded only where the file is trusted).
    path : str or path-like
        The file (any name; ``.nica`` is customary).  Its folder must exist.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import nica
    >>> X = np.random.default_rng(0).laplace(size=(300, 2))
    >>> model = nica.NonlinearICA(n_layers=1, max_iter=2, random_state=0).fit(X)
    >>> path = os.path.join(tempfile.mkdtemp(), "model.nica")
    >>> nica.save(model, path)
    >>> loaded = nica.load(path)
    >>> bool(np.array_equal(loaded.transform(X), model.transform(X)))
    True
    """
    persistence.write(estimator, path)


def read_estimator(path, what="file"):
    """The estimator saved at ``path`` (:func:`nica.load` without pickles; ``what`` names the
    file in the messages)."""
    return persistence.read(path, CLASSES, what)


def load(path, *, allow_pickle=False):
    """Load an estimator saved by :func:`nica.save`, ``nica fit --model`` or ``checkpoint_path``.

    Nothing in the file is unpickled, so a crafted file cannot run code: the arrays are read
    with ``numpy.load(allow_pickle=False)`` and the structures (the network, the prior's
    parameters, the optimizer state) are rebuilt from the estimator's own settings, which the
    stored arrays must match in number, shape and dtype.  A checkpoint written during a fit
    loads with what resumes it (``fit`` with ``warm_start=True`` and the same data).

    Parameters
    ----------
    path : str or path-like
        The file.
    allow_pickle : bool, default=False
        Also read a pickle: a model file or checkpoint of an earlier nica (written with
        joblib), or an estimator saved with :func:`joblib.dump`.  Unpickling runs code stored
        in the file: use it only for files you trust, for instance once to convert them,
        ``nica.save(nica.load("old.joblib", allow_pickle=True), "model.nica")``.  An
        estimator pickled by an earlier nica is brought to this version's layout: the
        constructor parameters added since take their defaults, and an optimizer state of an
        older layout is made anew (as a warm start would make it), with a ``UserWarning``.

    Returns
    -------
    NonlinearICA or ConditionalNonlinearICA

    Raises
    ------
    ValueError
        When the file is not such a file: a pickle (unless ``allow_pickle``), another kind of
        file, a truncated or corrupt one, one whose header was modified or whose arrays do not
        match it, one in a newer format or written by a newer nica, or one holding another
        class.  The message names the file and what is wrong.
    OSError
        When the file cannot be read (missing, a directory, permission denied).

    Examples
    --------
    >>> import nica
    >>> model = nica.load("model.nica")  # doctest: +SKIP
    """
    if allow_pickle and persistence.file_kind(path) in ("pickle", "joblib"):
        return _unpickle(path)
    return read_estimator(path)


def _unpickle(path):
    loaded = joblib.load(path)
    if isinstance(loaded, dict) and "estimator" in loaded:  # the command line's earlier model files
        loaded = loaded["estimator"]
    if not isinstance(loaded, tuple(CLASSES.values())):
        raise ValueError(
            f"file {os.fspath(path)!r} holds a {type(loaded).__name__}, not a NonlinearICA or a ConditionalNonlinearICA"
        )
    return _upgrade(loaded, path)


def _upgrade(estimator, path):
    """An estimator pickled by an earlier nica in this version's layout (see :func:`load`)."""
    for name, parameter in inspect.signature(type(estimator).__init__).parameters.items():
        if parameter.default is not inspect.Parameter.empty:
            estimator.__dict__.setdefault(name, parameter.default)
    state = estimator.__dict__.get("_state")
    if state is not None and not is_fit_state(TrainState(*state).opt_state):
        state = TrainState(*state)
        with precision(estimator._dtype):
            made = init_train_state(estimator._resolve_optimizer(), state.params, state.prior_params)
            estimator._state = init_fit_state(made, estimator.gradient_, averaged=estimator._averaging() > 0)
        warnings.warn(
            f"{type(estimator).__name__} of {os.fspath(path)!r}: its optimizer state has the layout of an earlier "
            "nica and was made anew (as a warm start would); the fitted model is unchanged.",
            UserWarning,
            stacklevel=3,
        )
    return estimator
