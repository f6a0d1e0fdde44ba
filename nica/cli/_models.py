"""The command line's model files (a fitted estimator saved with a format tag and nica's
version, inspected before it is unpickled), checkpoints, and auxiliary variables read for a model."""

from __future__ import annotations

import re
import warnings

import joblib
import numpy as np
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

import nica
from nica._src.io import pickle_opening
from nica.cli._files import (
    CLIError,
    as_float,
    as_text,
    check_input,
    check_output,
    labels_from_text,
    os_reason,
    read_array,
    write_file,
)

__all__ = [
    "MODEL_FORMAT",
    "save_model",
    "load_model",
    "model_header",
    "joblib_load",
    "read_aux",
    "label_from_text",
    "continuous_from_text",
    "strict_int",
]

MODEL_FORMAT = "nica-model"
_VALUE_OPCODES = (
    "SHORT_BINUNICODE",
    "BINUNICODE",
    "BINUNICODE8",
    "UNICODE",
    "BININT",
    "BININT1",
    "BININT2",
    "INT",
    "LONG1",
)
_MODEL_FORMAT_VERSION = 1  # the layout of the saved dictionary; files without the field are 1


def save_model(path, estimator):
    """Save a fitted estimator with a format tag and the nica version that wrote it."""
    payload = {
        "format": MODEL_FORMAT,
        "format_version": _MODEL_FORMAT_VERSION,
        "version": nica.__version__,
        "estimator": estimator,
    }
    check_output(path, "model file")
    write_file(path, lambda handle: joblib.dump(payload, handle), "model file")


def _parse_version(text):
    match = re.match(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?", text) if isinstance(text, str) else None
    return None if match is None else tuple(int(g or 0) for g in match.groups())


def model_header(path):
    """``format``, ``format_version`` and ``version`` of a model file, read from the opening
    opcodes of its pickle without unpickling anything (so that a file from another version is
    named as such, and a file that is not a model is never unpickled).

    Returns ``(header, complete)``; ``complete`` is False when the pickle stops early.
    """
    opening, complete = pickle_opening(path)
    values = [arg for name, arg in opening if name in _VALUE_OPCODES]
    header = {}
    for key, value in zip(values, values[1:]):
        if key in ("format", "format_version", "version") and key not in header:
            header[key] = value
    return header, complete


def _check_model_version(header, path):
    running = nica.__version__
    written = header.get("version")
    fmt = header.get("format_version", 1)
    if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt > _MODEL_FORMAT_VERSION or fmt < 1:
        raise CLIError(
            f"model file {path!r} uses model format {fmt!r} (written by nica {written}); "
            f"this is nica {running}, which reads format {_MODEL_FORMAT_VERSION}"
        )
    w, r = _parse_version(written), _parse_version(running)
    if w is None:
        raise CLIError(f"model file {path!r} does not say which nica version wrote it (version tag {written!r})")
    if w[:2] != r[:2]:
        raise CLIError(
            f"model file {path!r} was written by nica {written} but this is nica {running}: "
            f"refit the model with nica {running} or use nica {w[0]}.{w[1]}.x to read it"
        )
    if w != r:
        warnings.warn(
            f"model file {path!r} was written by nica {written}; this is nica {running} "
            "(a patch release: the model is read as it is)",
            UserWarning,
            stacklevel=3,
        )


def joblib_load(path, what, described):
    """``joblib.load(path)``, every failure a :class:`CLIError` about the ``what`` (e.g. "model
    file") at ``path``; ``described`` names it in the truncated-or-corrupt message."""
    try:
        return joblib.load(path)
    except MemoryError:
        raise CLIError(f"cannot read {what} {path!r}: it does not fit in memory") from None
    except OSError as exc:
        raise CLIError(f"cannot read {what} {path!r}: {os_reason(exc)}") from None
    except Exception as exc:  # EOFError, UnpicklingError, zlib.error, AttributeError, ...
        detail = " ".join(str(exc).split())[:200]
        raise CLIError(
            f"{described} is truncated or corrupt ({type(exc).__name__}{': ' + detail if detail else ''})"
        ) from None


def load_model(path):
    """Load a model saved by :func:`save_model`, checking its format and nica version."""
    check_input(path, "model file")
    try:
        header, complete = model_header(path)
    except OSError as exc:
        raise CLIError(f"cannot read model file {path!r}: {os_reason(exc)}") from None
    if header.get("format") != MODEL_FORMAT:
        raise CLIError(f"{path!r} is not a nica model file (save one with 'nica fit ... --model FILE')")
    if not complete:
        raise CLIError(f"model file {path!r} is truncated or corrupt")
    _check_model_version(header, path)
    payload = joblib_load(path, "model file", f"model file {path!r} (nica {header.get('version')})")
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT or "estimator" not in payload:
        raise CLIError(f"{path!r} is not a nica model file")
    estimator = payload["estimator"]
    if not isinstance(estimator, (nica.NonlinearICA, nica.ConditionalNonlinearICA)):
        raise CLIError(f"model file {path!r} holds a {type(estimator).__name__}, not a nica estimator")
    try:
        check_is_fitted(estimator)
    except NotFittedError:
        raise CLIError(f"model file {path!r} holds an unfitted {type(estimator).__name__}") from None
    return estimator


# ---------------------------------------------------------------------------------------------
# auxiliary variables and labels


def _known_labels(classes, limit=8):
    shown = ", ".join(repr(c.item() if hasattr(c, "item") else c) for c in classes[:limit])
    return f"{shown}{', ...' if len(classes) > limit else ''}"


def strict_int(text):
    if not re.fullmatch(r"\s*[-+]?\d+\s*", text):
        return None
    return int(text)


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
