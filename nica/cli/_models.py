"""The command line's model files and checkpoints (nica's file format: :func:`nica.save`, read
without unpickling anything), and auxiliary variables read for a model."""

from __future__ import annotations

import numpy as np
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from nica._src import persistence, saving
from nica.cli._files import (
    CLIError,
    as_float,
    as_text,
    check_input,
    check_output,
    labels_from_text,
    os_reason,
    read_array,
    strict_int,
    write_file,
)

__all__ = [
    "save_model",
    "load_model",
    "read_estimator_file",
    "read_aux",
    "label_from_text",
    "continuous_from_text",
    "strict_int",
]


def save_model(path, estimator):
    """Save a fitted estimator in nica's file format (what :func:`nica.save` writes)."""
    check_output(path, "model file")
    try:
        payload = persistence.encode(estimator)
    except (TypeError, ValueError) as error:
        raise CLIError(str(error)) from None
    write_file(path, lambda handle: persistence.dump(payload, handle), "model file")


def read_estimator_file(path, what):
    """The fitted estimator in nica's file format at ``path``, every refusal a :class:`CLIError`
    naming the ``what`` ("model file", "checkpoint file"); nothing is unpickled."""
    check_input(path, what)
    try:
        estimator = saving.read_estimator(path, what)
    except ValueError as error:
        raise CLIError(str(error)) from None
    except MemoryError:
        raise CLIError(f"cannot read {what} {path!r}: it does not fit in memory") from None
    except OSError as error:
        raise CLIError(f"cannot read {what} {path!r}: {os_reason(error)}") from None
    try:
        check_is_fitted(estimator)
    except NotFittedError:
        raise CLIError(f"{what} {path!r} holds an unfitted {type(estimator).__name__}") from None
    return estimator


def load_model(path):
    """Load a model saved by :func:`save_model` (or :func:`nica.save`, or a checkpoint)."""
    return read_estimator_file(path, "model file")


# ---------------------------------------------------------------------------------------------
# auxiliary variables and labels


def _known_labels(classes, limit=8):
    shown = ", ".join(repr(c.item() if hasattr(c, "item") else c) for c in classes[:limit])
    return f"{shown}{', ...' if len(classes) > limit else ''}"


def _parse_bool(text):
    return {"true": True, "1": True, "false": False, "0": False}.get(text.strip().lower())


def label_from_text(text, model):
    """The element of ``model.classes_`` named by ``--label``: compared whole, never cut to the
    width of the stored labels."""
    classes = model.classes_
    kind = classes.dtype.kind
    what = f"the model's {classes.size} segment labels ({_known_labels(classes)})"
    text = text.strip()
    if kind in "iu":
        value = strict_int(text)
        if value is None:
            kind_of = "a number that is not an integer" if as_float(text) is not None else "not an integer"
            raise CLIError(
                f"--label {text!r} is {kind_of}; the model's segment labels are integers ({_known_labels(classes)})"
            )
        matches = (
            np.flatnonzero(classes == value)
            if np.iinfo(classes.dtype).min <= value <= np.iinfo(classes.dtype).max
            else np.array([], dtype=int)
        )
    elif kind == "b":
        value = _parse_bool(text)
        if value is None:
            raise CLIError(f"--label {text!r} is not one of {what}")
        matches = np.flatnonzero(classes == value)
    elif kind == "f":
        value = as_float(text)
        if value is None or not np.isfinite(value):
            raise CLIError(
                f"--label {text!r} is not a finite number; the model's segment labels are numbers "
                f"({_known_labels(classes)})"
            )
        matches = np.flatnonzero(classes == value)
    elif kind == "S":
        matches = [i for i, c in enumerate(classes) if c == text.encode("utf-8")]
    else:  # text (or objects): the whole string
        matches = [i for i, c in enumerate(classes) if str(c) == text]
    if len(matches) == 0:
        raise CLIError(f"--label {text!r} is not one of {what}")
    return classes[matches[0]]


def continuous_from_text(text, model):
    cells = text.split(",")
    values = [as_float(cell) for cell in cells]
    dims = int(model.aux_mean_.shape[0])
    if any(v is None for v in values):
        raise CLIError(
            f"--label {text!r} is not a number; the model's auxiliary variable is continuous "
            f"with {dims} dimension(s) (give {dims} comma-separated numbers)"
        )
    if not all(np.isfinite(values)):
        raise CLIError(f"--label {text!r} is not finite")
    if len(values) != dims:
        raise CLIError(
            f"--label {text!r} has {len(values)} value(s) but the model's auxiliary variable has {dims} dimension(s)"
        )
    return np.array(values) if dims > 1 else np.float64(values[0])


def _aux_for_model(u, model, path):
    """Convert an auxiliary variable read from a file to the kind of the model's labels."""
    if model.aux_type_ == "continuous":
        if u.dtype.kind in "US":
            converted = labels_from_text(u, path, distinct=False)
            if converted.dtype.kind not in "iuf":
                bad = str([c for c in converted.ravel() if as_float(c) is None][0])
                raise CLIError(
                    f"--aux file {path!r} holds the non-numeric value {bad!r}, but the model's "
                    "auxiliary variable is continuous"
                )
            u = converted
        return u.astype(np.float64)
    kind = model.classes_.dtype.kind
    if kind in "iubf":
        if u.dtype.kind in "US":
            converted = labels_from_text(u, path, distinct=False)
            if converted.dtype.kind not in "iuf":
                known = _known_labels(model.classes_)
                raise CLIError(
                    f"--aux file {path!r} holds text labels but the model's segment labels are numbers ({known})"
                )
            u = converted
        if kind in "iu" and u.dtype.kind == "f" and not np.all(u == np.round(u)):
            raise CLIError(f"--aux file {path!r} holds non-integer values but the model's segment labels are integers")
        return u
    if kind == "U" and u.dtype.kind == "S":
        return as_text(u, path)
    if kind == "S" and u.dtype.kind == "U":
        return np.char.encode(u, "utf-8")
    if kind in "US" and u.dtype.kind in "iu":
        return u.astype(str)
    return u


def read_aux(args, model, n_samples=None):
    if getattr(args, "aux", None) is None:
        return None
    u = read_array(args.aux, numeric=False, name="aux")
    if n_samples is not None and u.shape[0] != n_samples:
        raise CLIError(f"--aux has {u.shape[0]} rows but the data have {n_samples}")
    return _aux_for_model(u, model, args.aux)
