"""The conditional model's auxiliary variable ``u`` (passed as ``y``): how ``aux_type="auto"``
reads it, segment labels checked and encoded, continuous values checked.  NumPy and
scikit-learn only; the estimator calls these before any JAX work.

The rules, each with a message that names what arrived and the fix:

* ``aux_type="auto"`` reads floats as a continuous ``u`` unless every value is a whole number
  (scikit-learn's :func:`~sklearn.utils.multiclass.type_of_target`); integers, bools, strings
  and whole-number floats are segment labels.
* Labels are names of one kind: all numbers, all bools or all strings.  NumPy would turn
  ``[True, 1]`` into ``[1, 1]`` and ``["1", 1]`` into ``["1", "1"]``, merging labels that
  differ, so a mix is refused before NumPy sees it.
* Each segment gets its own scale and location, which a segment of one row cannot estimate:
  labels with more segments than half the rows, or a segment of one row, warn (a time index
  passed as labels is the usual cause).
* A label ``fit`` never saw has no scale or location: refused, with the fix for
  cross-validation (a splitter that puts every segment in every training fold).
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np
from sklearn.utils.multiclass import type_of_target

from nica._src._checks import labels_known, unique_labels

__all__ = [
    "resolve_aux_type",
    "check_label_kinds",
    "fit_labels",
    "encode_labels",
    "as_continuous",
    "UNSEEN_IN_SCORE",
    "UNSEEN_IN_A_CONTINUED_FIT",
]

# the fix named when a label fit never saw arrives, by where it arrives
UNSEEN_IN_SCORE = (
    "a segment fit never saw has no scale or location to score it with. In cross-validation, "
    "split so that every training fold holds every segment: a splitter stratified by the "
    "labels, e.g. GridSearchCV(model, grid, cv=StratifiedKFold(3)).fit(X, y) "
    "(sklearn.model_selection.StratifiedKFold stratifies on y), not cv=3, which cuts "
    "segment-ordered rows into blocks of whole segments"
)
UNSEEN_IN_A_CONTINUED_FIT = (
    "partial_fit and a warm-started fit keep the segment labels of the first fit: pass every "
    "label in the first chunk (or fit anew with warm_start=False)"
)


def resolve_aux_type(y, aux_type):
    """``aux_type`` with ``"auto"`` resolved: continuous for floats that are not all whole
    numbers, else discrete labels."""
    if aux_type != "auto":
        return aux_type
    continuous = y.dtype.kind == "f" and type_of_target(y).startswith("continuous")
    return "continuous" if continuous else "discrete"


def _kind_of_type(kind: type) -> str:
    if issubclass(kind, (bool, np.bool_)):
        return "bool"
    if issubclass(kind, (str, np.str_, bytes, np.bytes_)):
        return "string"
    if issubclass(kind, (numbers.Number, np.number)):
        return "number"
    return kind.__name__


def check_label_kinds(y, name="y"):
    """Refuse labels of more than one kind (bools, numbers, strings, ``None``, ...) in ``y`` as
    given, before NumPy converts a list (``[True, 1]`` to ``[1, 1]``): one ``ValueError`` that
    names the kinds found.  A NumPy array of one dtype other than object is of one kind."""
    if y is None or (isinstance(y, np.ndarray) and y.dtype != object):
        return
    try:
        values = np.asarray(y, dtype=object)
    except ValueError:  # a ragged nesting: scikit-learn's own check names it
        return
    kinds = sorted({_kind_of_type(kind) for kind in set(map(type, values.ravel().tolist()))})
    if len(kinds) > 1:
        raise ValueError(
            f"{name} must hold labels of one kind (all numbers, all bools or all strings); got labels "
            f"of the kinds {kinds}. NumPy would turn [True, 1] into [1, 1] and ['1', 1] into "
            "['1', '1'], merging labels that differ: convert the labels to one kind first."
        )


def fit_labels(y, *, stacklevel, warn_small=True):
    """``(classes, counts)`` of the segment labels ``y`` (1-D); with ``warn_small``, a
    ``UserWarning`` when the segments are too small to estimate (more segments than half the
    rows, or a segment of one row; ``stacklevel`` as :func:`warnings.warn` counts it from this
    function)."""
    if y.ndim != 1:
        raise ValueError(
            f"Discrete auxiliary labels y must be 1-D (one segment label per sample); got shape {y.shape}."
        )
    classes, counts = unique_labels(y)
    n_segments, n_samples, singles = classes.size, y.shape[0], int(np.sum(counts == 1))
    if warn_small and n_segments > 1 and (2 * n_segments > n_samples or singles):
        warnings.warn(
            f"y has {n_segments} segment labels for {n_samples} rows ({singles} segment(s) of a "
            "single row): each segment gets its own scale and location, which one or two rows "
            "cannot estimate (a one-row segment's likelihood is unbounded). If y is a time index "
            "or another continuous variable, pass aux_type='continuous'; to use it for segments, "
            "pass one label per window of rows, e.g. y // window.",
            UserWarning,
            stacklevel=stacklevel,
        )
    return classes, counts


def encode_labels(y, classes, fix=UNSEEN_IN_SCORE):
    """The segment codes (int32, indices into ``classes``) of the labels ``y`` (1-D, or a
    column); a label not in ``classes`` is refused with ``fix`` in the message."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.ravel()
    if y.ndim != 1:
        raise ValueError(f"Segment labels y must be 1-D; got shape {y.shape}.")
    known = labels_known(y, classes)
    if not known.all():
        unseen = unique_labels(y[~known])[0]
        raise ValueError(
            f"y contains {unseen.size} segment label(s) not seen during fit: "
            f"{unseen[:10].tolist()}; the model knows {classes.size} labels "
            f"({classes[:10].tolist()}{', ...' if classes.size > 10 else ''}): {fix}."
        )
    return np.searchsorted(classes, y).astype(np.int32)


def as_continuous(y):
    """A continuous auxiliary variable as a 2-D float64 array ``(n_samples, n_aux)``, checked:
    numeric, 1-D or 2-D, finite."""
    y = np.asarray(y)
    if y.dtype.kind not in "biuf":
        raise ValueError(f"A continuous auxiliary variable y must be numeric; got dtype {y.dtype}.")
    if y.ndim not in (1, 2):
        raise ValueError(
            f"A continuous auxiliary variable y must be 1-D or 2-D (n_samples, n_aux); got shape {y.shape}."
        )
    U = y.reshape(y.shape[0], -1).astype(np.float64)
    if not np.all(np.isfinite(U)):
        raise ValueError("The auxiliary variable y contains NaN or infinity.")
    return U
