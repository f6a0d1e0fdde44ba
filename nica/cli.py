"""The ``nica`` command line.

::

    nica demo [--quick] [--figure PATH]
    nica fit DATA [--aux U] --model OUT [estimator options] [--checkpoint FILE] [--resume FILE]
    nica transform MODEL DATA -o OUT
    nica inverse-transform MODEL DATA -o OUT
    nica score MODEL DATA [--aux U] [-o OUT]
    nica sample MODEL [-n N] -o OUT [--aux U | --label L]

Data files are ``.npy``, ``.npz`` (the array named ``X``, or the only one; ``file.npz:key``
picks another) or ``.csv`` (comma-separated numbers, an optional header line).  Every error,
whatever its cause (a bad option, a missing, unreadable or corrupt file, an unknown label, a
model written by another nica version, running out of memory), prints one line on stderr and
exits with status 2 (130 when interrupted); nothing prints a traceback.  Outputs are written to
a temporary file that replaces the destination only once complete.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import re
import stat
import sys
import tempfile
import time
import warnings

import numpy as np

_MODEL_FORMAT = "nica-model"
_MODEL_FORMAT_VERSION = 1  # the layout of the saved dictionary; files without the field are 1
_DATA_EXTENSIONS = (".npy", ".npz", ".csv")
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_EXIT_ERROR = 2
_EXIT_INTERRUPTED = 130


class CLIError(Exception):
    """An error to report as one line, without a traceback."""


# ---------------------------------------------------------------------------------------------
# paths


def _os_reason(exc):
    """The operating system's words for an OSError (``Permission denied``, ...)."""
    return exc.strerror or str(exc) or type(exc).__name__


def _blocking_file(path):
    """The nearest existing ancestor of ``path`` when it is not a directory, else None."""
    parent = os.path.dirname(os.path.abspath(path))
    while parent and not os.path.exists(parent):
        up = os.path.dirname(parent)
        if up == parent:
            return None
        parent = up
    return parent if parent and not os.path.isdir(parent) else None


def _check_input(path, what):
    """A readable, non-empty regular file at ``path``, or a CLIError that says what is wrong."""
    if not path:
        raise CLIError(f"no {what} given (an empty path)")
    try:
        info = os.stat(path)
    except FileNotFoundError:
        blocker = _blocking_file(path)
        if blocker is not None:
            raise CLIError(f"cannot read {what} {path!r}: {blocker!r} is a file, not a directory") from None
        if os.path.islink(path):
            raise CLIError(f"cannot read {what} {path!r}: a broken symbolic link") from None
        raise CLIError(f"cannot read {what} {path!r}: no such file") from None
    except NotADirectoryError:
        blocker = _blocking_file(path) or os.path.dirname(path)
        raise CLIError(f"cannot read {what} {path!r}: {blocker!r} is a file, not a directory") from None
    except OSError as exc:
        raise CLIError(f"cannot read {what} {path!r}: {_os_reason(exc)}") from None
    if stat.S_ISDIR(info.st_mode):
        raise CLIError(f"cannot read {what} {path!r}: it is a directory, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise CLIError(f"cannot read {what} {path!r}: not a regular file")
    if not os.access(path, os.R_OK):
        raise CLIError(f"cannot read {what} {path!r}: permission denied")
    if info.st_size == 0:
        raise CLIError(f"{what} {path!r} is empty")


def _check_output(path, what, extensions=None, *, make_dirs=False):
    """Fail now, before any long computation, if ``path`` cannot be written."""
    if not path:
        raise CLIError(f"no {what} given (an empty path)")
    if os.path.isdir(path):
        raise CLIError(f"cannot write {what} {path!r}: it is a directory")
    ext = os.path.splitext(path)[1].lower()
    if extensions is not None and ext not in extensions:
        expected = ", ".join(extensions[:-1]) + " or " + extensions[-1]
        raise CLIError(f"unsupported {what} {path!r}: expected {expected}")
    target = os.path.realpath(path)
    parent = os.path.dirname(target)
    blocker = _blocking_file(target)
    if blocker is not None:
        raise CLIError(f"cannot write {what} {path!r}: {blocker!r} is a file, not a directory")
    if not os.path.isdir(parent):
        if not make_dirs:
            raise CLIError(f"cannot write {what} {path!r}: directory {os.path.dirname(path) or parent!r} does not exist")
        while not os.path.isdir(parent):
            parent = os.path.dirname(parent)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CLIError(f"cannot write {what} {path!r}: permission denied in directory {parent!r}")
    if os.path.exists(target) and not os.access(target, os.W_OK):
        raise CLIError(f"cannot write {what} {path!r}: the existing file is read-only")


def _check_distinct(output, inputs, what):
    """Refuse to overwrite an input (the model or data being read) with an output."""
    for name, path in inputs:
        if path is None or not os.path.exists(output):
            continue
        with contextlib.suppress(OSError):
            if os.path.samefile(output, _split_key(path)[0]):
                raise CLIError(f"{what} {output!r} is the {name} being read; choose another name")


def _file_mode(target):
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _write_atomically(path, write, what):
    """Write through ``write(binary_handle)`` to a temporary file, then rename it onto ``path``.

    An interrupted or failed write leaves ``path`` as it was (no truncated output).
    """
    target = os.path.realpath(path)
    directory = os.path.dirname(target)
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".part", dir=directory)
    except OSError as exc:
        raise CLIError(f"cannot write {what} {path!r}: {_os_reason(exc)}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        with contextlib.suppress(OSError):
            os.chmod(tmp, _file_mode(target))
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise CLIError(f"cannot write {what} {path!r}: {_os_reason(exc)}") from None
        raise


# ---------------------------------------------------------------------------------------------
# data files

_KEY = re.compile(r"^(.*\.npz):([^:/\\]*)$", re.IGNORECASE)


def _split_key(path):
    match = _KEY.match(path)
    return (match.group(1), match.group(2)) if match else (path, None)


def _describe_position(array, mask):
    index = np.argwhere(mask)[0]
    if array.ndim == 1:
        return f"row {index[0] + 1}"
    return f"row {index[0] + 1}, column {index[1] + 1}"


def _load_numpy(path, key, name):
    """The array in a ``.npy`` file or ``.npz`` archive (recognised by content, not extension)."""
    with open(path, "rb") as handle:
        magic = handle.read(6)
    if magic == _NPY_MAGIC:
        if key is not None:
            raise CLIError(f"{name} file {path!r} holds one array, not an archive: drop ':{key}'")
        return np.load(path, allow_pickle=False)
    if magic[:4] in _ZIP_MAGICS:
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.keys())
            if not names:
                raise CLIError(f"{name} file {path!r} is an empty archive")
            if key is None:
                key = "X" if "X" in names else (names[0] if len(names) == 1 else None)
            if key is None or key not in names:
                raise CLIError(f"{path!r} holds arrays {names}; name one as {path}:NAME")
            array = archive[key]
        if not isinstance(array, np.ndarray):
            raise CLIError(f"{name} file {path!r}: member {key!r} is not a NumPy array")
        return array
    if magic[:1] == b"\x80":
        raise CLIError(f"{name} file {path!r} holds pickled Python objects, not a NumPy array "
                       "(nica does not unpickle data files)")
    raise CLIError(f"{name} file {path!r} is not a NumPy .npy or .npz file")


def read_array(path, *, numeric=True, name="data"):
    """Read a ``.npy``, ``.npz`` or ``.csv`` file into an array.

    Numeric data come back 2-D (samples × features), finite and of a real dtype; with
    ``numeric=False`` (auxiliary variables) a ``.csv`` file comes back as text, 1-D for one
    column, for the caller to convert (``_labels_from_text``).
    """
    path, key = _split_key(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in _DATA_EXTENSIONS:
        raise CLIError(f"unsupported {name} file {path!r}: expected .npy, .npz or .csv")
    _check_input(path, f"{name} file")
    try:
        if ext == ".csv":
            array = _read_csv(path, numeric=numeric)
        else:
            array = _load_numpy(path, key, name)
    except CLIError:
        raise
    except MemoryError:
        raise CLIError(f"cannot read {name} file {path!r}: it does not fit in memory") from None
    except UnicodeDecodeError:
        raise CLIError(f"cannot read {name} file {path!r}: not a UTF-8 text file") from None
    except csv.Error as exc:
        raise CLIError(f"cannot read {name} file {path!r}: malformed CSV ({exc})") from None
    except OSError as exc:
        raise CLIError(f"cannot read {name} file {path!r}: {_os_reason(exc)}") from None
    except Exception as exc:  # zipfile.BadZipFile, zlib.error, EOFError, ValueError, ...: corrupt
        detail = " ".join(str(exc).split())[:200]
        if "allow_pickle" in detail:
            raise CLIError(f"{name} file {path!r} holds Python objects (dtype object), not numbers; "
                           "nica does not unpickle data files") from None
        raise CLIError(f"cannot read {name} file {path!r}: corrupt or truncated "
                       f"({type(exc).__name__}{': ' + detail if detail else ''})") from None
    return _check_numeric(array, path, name) if numeric else _check_aux(array, path, name)


def _dtype_problem(dtype):
    kind = dtype.kind
    if kind == "c":
        return f"complex values (dtype {dtype}) are not supported"
    if kind in "US":
        return f"it holds text (dtype {dtype}), not numbers"
    if kind == "V":
        return f"it holds a structured array (dtype {dtype}); save a plain numeric array"
    if kind in "Mm":
        return f"it holds dates or times (dtype {dtype}), not numbers"
    if kind not in "biuf":
        return f"unsupported dtype {dtype}"
    return None


def _check_numeric(array, path, name):
    problem = _dtype_problem(array.dtype)
    if problem:
        raise CLIError(f"{name} file {path!r} is not numeric: {problem}")
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise CLIError(f"{name} file {path!r} must hold a 2-D array (samples × features); got shape {array.shape}")
    if array.shape[0] == 0:
        raise CLIError(f"{name} file {path!r} holds no samples (shape {array.shape})")
    if array.shape[1] == 0:
        raise CLIError(f"{name} file {path!r} holds no features (shape {array.shape})")
    if array.dtype.kind == "f" and array.dtype.itemsize > 8:  # long double: what the estimators see
        with np.errstate(over="ignore"):
            array = array.astype(np.float64)
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array)
        if bad.any():
            raise CLIError(f"{name} file {path!r} contains NaN or infinity (first at {_describe_position(array, bad)})")
    return array


def _check_aux(array, path, name):
    if array.dtype.kind in "US":
        array = np.char.strip(array) if array.dtype.kind == "U" else array
    else:
        problem = _dtype_problem(array.dtype)
        if problem:
            raise CLIError(f"{name} file {path!r}: {problem}")
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim not in (1, 2):
        raise CLIError(f"{name} file {path!r} must hold one value (or row of values) per sample; "
                       f"got shape {array.shape}")
    if array.shape[0] == 0 or array.size == 0:
        raise CLIError(f"{name} file {path!r} holds no values (shape {array.shape})")
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array)
        if bad.any():
            raise CLIError(f"{name} file {path!r} contains NaN or infinity (first at {_describe_position(array, bad)})")
    return array


def _as_float(cell):
    try:
        return float(cell)
    except ValueError:
        return None


def _read_csv(path, *, numeric):
    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    if not rows:
        raise CLIError(f"CSV file {path!r} holds no values")

    def numeric_row(row):
        return all(_as_float(cell) is not None for cell in row)

    # A first line with no number is a header, except for label files whose every line is text.
    if all(_as_float(cell) is None for cell in rows[0]) and (numeric or any(map(numeric_row, rows[1:]))):
        rows = rows[1:]
    if not rows:
        raise CLIError(f"CSV file {path!r} has a header but no data")
    width = len(rows[0])
    for i, row in enumerate(rows):
        if len(row) != width:
            raise CLIError(f"CSV file {path!r}: row {i + 1} has {len(row)} columns, expected {width}")
    if not numeric:
        array = np.array([[cell.strip() for cell in row] for row in rows], dtype=str)
        return array[:, 0] if width == 1 else array
    out = np.empty((len(rows), width))
    for i, row in enumerate(rows):
        for j, cell in enumerate(row):
            value = _as_float(cell)
            if value is None:
                hint = " (nica reads comma-separated values)" if re.search(r"\d[\s;|]+[-+.\d]", cell) else ""
                raise CLIError(f"CSV file {path!r}: non-numeric value {cell!r} in row {i + 1}, column {j + 1}{hint}")
            out[i, j] = value
    return out


def _as_text(u, path):
    """Text labels as ``str`` (``bytes`` labels decoded as UTF-8)."""
    if u.dtype.kind != "S":
        return u
    try:
        return np.char.decode(u, "utf-8")
    except UnicodeDecodeError:
        raise CLIError(f"aux file {path!r} holds bytes that are not UTF-8 text") from None


def _labels_from_text(text, path, *, distinct=True):
    """Labels read as text: int64 when every cell is an integer, float64 when every cell is a
    number, else the text itself, compared whole (no width is imposed on later labels).

    With ``distinct``, texts that name the same integer (``1`` and ``01``) stay text: they are
    different labels, not to be merged.
    """
    text = _as_text(text, path)
    ints = []
    for cell in text.ravel():
        try:
            ints.append(int(cell))
        except ValueError:
            break
    else:
        if not distinct or len(set(ints)) == len(set(text.ravel().tolist())):
            with contextlib.suppress(OverflowError):
                return np.array(ints, dtype=np.int64).reshape(text.shape)
        if distinct:
            return text
    floats = [_as_float(cell) for cell in text.ravel()]
    if all(value is not None for value in floats):
        values = np.array(floats, dtype=np.float64).reshape(text.shape)
        bad = ~np.isfinite(values)
        if bad.any():
            raise CLIError(f"aux file {path!r} contains NaN or infinity (first at {_describe_position(values, bad)})")
        return values
    return text


def write_array(path, array):
    """Write an array to ``.npy``, ``.npz`` (as ``X``) or ``.csv``."""
    _check_output(path, "output file", _DATA_EXTENSIONS)
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        _write_atomically(path, lambda handle: np.save(handle, array), "output file")
    elif ext == ".npz":
        _write_atomically(path, lambda handle: np.savez(handle, X=array), "output file")
    else:
        _write_atomically(path, lambda handle: np.savetxt(handle, np.atleast_2d(array.T).T, delimiter=",",
                                                          fmt="%.17g"), "output file")


def _warn_if_not_finite(array, what):
    bad = ~np.isfinite(array)
    if bad.any():
        warnings.warn(f"{int(bad.sum())} of the {array.size} values of the {what} are NaN or infinite "
                      "(inputs far outside the range of the training data?)", RuntimeWarning, stacklevel=2)


# ---------------------------------------------------------------------------------------------
# model files


def save_model(path, estimator):
    """Save a fitted estimator with a format tag and the nica version that wrote it."""
    import joblib

    import nica

    payload = {"format": _MODEL_FORMAT, "format_version": _MODEL_FORMAT_VERSION,
               "version": nica.__version__, "estimator": estimator}
    _check_output(path, "model file")
    _write_atomically(path, lambda handle: joblib.dump(payload, handle), "model file")


def _parse_version(text):
    match = re.match(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?", text) if isinstance(text, str) else None
    return None if match is None else tuple(int(g or 0) for g in match.groups())


def _model_header(path):
    """``format``, ``format_version`` and ``version`` of a model file, read from the opening
    opcodes of its pickle without unpickling anything (so that a file from another version is
    named as such, and a file that is not a model is never unpickled).

    Returns ``(header, complete)``; ``complete`` is False when the pickle stops early.
    """
    import pickletools

    values = []
    complete = True
    with open(path, "rb") as handle:
        try:
            for i, (op, arg, _) in enumerate(pickletools.genops(handle)):
                if op.name in ("GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "BUILD", "STOP") or i > 200:
                    break
                if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE",
                               "BININT", "BININT1", "BININT2", "INT", "LONG1"):
                    values.append(arg)
        except Exception:  # not a pickle, or one that ends early
            complete = False
    header = {}
    for key, value in zip(values, values[1:]):
        if key in ("format", "format_version", "version") and key not in header:
            header[key] = value
    return header, complete


def _check_model_version(header, path):
    import nica

    running = nica.__version__
    written = header.get("version")
    fmt = header.get("format_version", 1)
    if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt > _MODEL_FORMAT_VERSION or fmt < 1:
        raise CLIError(f"model file {path!r} uses model format {fmt!r} (written by nica {written}); "
                       f"this is nica {running}, which reads format {_MODEL_FORMAT_VERSION}")
    w, r = _parse_version(written), _parse_version(running)
    if w is None:
        raise CLIError(f"model file {path!r} does not say which nica version wrote it "
                       f"(version tag {written!r})")
    if w[:2] != r[:2]:
        raise CLIError(f"model file {path!r} was written by nica {written} but this is nica {running}: "
                       f"refit the model with nica {running} or use nica {w[0]}.{w[1]}.x to read it")
    if w != r:
        warnings.warn(f"model file {path!r} was written by nica {written}; this is nica {running} "
                      "(a patch release: the model is read as it is)", UserWarning, stacklevel=3)


def _joblib_load(path, what, described):
    """``joblib.load(path)``, every failure a :class:`CLIError` about the ``what`` (e.g. "model
    file") at ``path``; ``described`` names it in the truncated-or-corrupt message."""
    import joblib

    try:
        return joblib.load(path)
    except MemoryError:
        raise CLIError(f"cannot read {what} {path!r}: it does not fit in memory") from None
    except OSError as exc:
        raise CLIError(f"cannot read {what} {path!r}: {_os_reason(exc)}") from None
    except Exception as exc:  # EOFError, UnpicklingError, zlib.error, AttributeError, ...
        detail = " ".join(str(exc).split())[:200]
        raise CLIError(f"{described} is truncated or corrupt "
                       f"({type(exc).__name__}{': ' + detail if detail else ''})") from None


def load_model(path):
    """Load a model saved by :func:`save_model`, checking its format and nica version."""
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    import nica

    _check_input(path, "model file")
    try:
        header, complete = _model_header(path)
    except OSError as exc:
        raise CLIError(f"cannot read model file {path!r}: {_os_reason(exc)}") from None
    if header.get("format") != _MODEL_FORMAT:
        raise CLIError(f"{path!r} is not a nica model file (save one with 'nica fit ... --model FILE')")
    if not complete:
        raise CLIError(f"model file {path!r} is truncated or corrupt")
    _check_model_version(header, path)
    payload = _joblib_load(path, "model file", f"model file {path!r} (nica {header.get('version')})")
    if not isinstance(payload, dict) or payload.get("format") != _MODEL_FORMAT or "estimator" not in payload:
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


def _strict_int(text):
    if not re.fullmatch(r"\s*[-+]?\d+\s*", text):
        return None
    return int(text)


def _parse_bool(text):
    return {"true": True, "1": True, "false": False, "0": False}.get(text.strip().lower())


def _label_from_text(text, model):
    """The element of ``model.classes_`` named by ``--label``: compared whole, never cut to the
    width of the stored labels."""
    classes = model.classes_
    kind = classes.dtype.kind
    what = f"the model's {classes.size} segment labels ({_known_labels(classes)})"
    text = text.strip()
    if kind in "iu":
        value = _strict_int(text)
        if value is None:
            kind_of = "a number that is not an integer" if _as_float(text) is not None else "not an integer"
            raise CLIError(f"--label {text!r} is {kind_of}; the model's segment labels are integers "
                           f"({_known_labels(classes)})")
        matches = np.flatnonzero(classes == value) if np.iinfo(classes.dtype).min <= value <= np.iinfo(classes.dtype).max \
            else np.array([], dtype=int)
    elif kind == "b":
        value = _parse_bool(text)
        if value is None:
            raise CLIError(f"--label {text!r} is not one of {what}")
        matches = np.flatnonzero(classes == value)
    elif kind == "f":
        value = _as_float(text)
        if value is None or not np.isfinite(value):
            raise CLIError(f"--label {text!r} is not a finite number; the model's segment labels are numbers "
                           f"({_known_labels(classes)})")
        matches = np.flatnonzero(classes == value)
    elif kind == "S":
        matches = [i for i, c in enumerate(classes) if c == text.encode("utf-8")]
    else:  # text (or objects): the whole string
        matches = [i for i, c in enumerate(classes) if str(c) == text]
    if len(matches) == 0:
        raise CLIError(f"--label {text!r} is not one of {what}")
    return classes[matches[0]]


def _continuous_from_text(text, model):
    cells = text.split(",")
    values = [_as_float(cell) for cell in cells]
    dims = int(model.aux_mean_.shape[0])
    if any(v is None for v in values):
        raise CLIError(f"--label {text!r} is not a number; the model's auxiliary variable is continuous "
                       f"with {dims} dimension(s) (give {dims} comma-separated numbers)")
    if not all(np.isfinite(values)):
        raise CLIError(f"--label {text!r} is not finite")
    if len(values) != dims:
        raise CLIError(f"--label {text!r} has {len(values)} value(s) but the model's auxiliary variable "
                       f"has {dims} dimension(s)")
    return np.array(values) if dims > 1 else np.float64(values[0])


def _aux_for_model(u, model, path):
    """Convert an auxiliary variable read from a file to the kind of the model's labels."""
    if model.aux_type_ == "continuous":
        if u.dtype.kind in "US":
            converted = _labels_from_text(u, path, distinct=False)
            if converted.dtype.kind not in "iuf":
                bad = str([c for c in converted.ravel() if _as_float(c) is None][0])
                raise CLIError(f"--aux file {path!r} holds the non-numeric value {bad!r}, but the model's "
                               "auxiliary variable is continuous")
            u = converted
        return u.astype(np.float64)
    kind = model.classes_.dtype.kind
    if kind in "iubf":
        if u.dtype.kind in "US":
            converted = _labels_from_text(u, path, distinct=False)
            if converted.dtype.kind not in "iuf":
                known = _known_labels(model.classes_)
                raise CLIError(f"--aux file {path!r} holds text labels but the model's segment labels are "
                               f"numbers ({known})")
            u = converted
        if kind in "iu" and u.dtype.kind == "f" and not np.all(u == np.round(u)):
            raise CLIError(f"--aux file {path!r} holds non-integer values but the model's segment labels are integers")
        return u
    if kind == "U" and u.dtype.kind == "S":
        return _as_text(u, path)
    if kind == "S" and u.dtype.kind == "U":
        return np.char.encode(u, "utf-8")
    if kind in "US" and u.dtype.kind in "iu":
        return u.astype(str)
    return u


def _read_aux(args, model, n_samples=None):
    if getattr(args, "aux", None) is None:
        return None
    u = read_array(args.aux, numeric=False, name="aux")
    if n_samples is not None and u.shape[0] != n_samples:
        raise CLIError(f"--aux has {u.shape[0]} rows but the data have {n_samples}")
    return _aux_for_model(u, model, args.aux)


# ---------------------------------------------------------------------------------------------
# commands


def _check_features(model, X, path):
    if X.shape[1] != model.n_features_in_:
        raise CLIError(
            f"{path!r} has {X.shape[1]} features but the model was fitted on {model.n_features_in_}"
        )


def _model_data(args):
    model = load_model(args.model)
    X = read_array(args.data)
    _check_features(model, X, args.data)
    return model, X


def _check_outputs(args, inputs):
    _check_output(args.output, "output file", _DATA_EXTENSIONS)
    _check_distinct(args.output, inputs, "output file")


_DURATION_UNITS = {"s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}


def _checkpoint_every(text):
    """``--checkpoint-every``: a number of epochs (``5``) or a duration (``30s``, ``10min``, ``2h``)."""
    import datetime

    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([a-z]*)\s*", text)
    if match and not match.group(2) and "." not in match.group(1) and int(match.group(1)) >= 1:
        return int(match.group(1))
    if match and match.group(2) in _DURATION_UNITS and float(match.group(1)) > 0:
        return datetime.timedelta(seconds=float(match.group(1)) * _DURATION_UNITS[match.group(2)])
    raise argparse.ArgumentTypeError(f"expected a number of epochs (5) or a duration (30s, 10min, 2h); "
                                     f"got {text!r}")


def _pickled_class(path):
    """``(module, name)`` of the first class a pickle names (the saved object's own class, for
    ``joblib.dump(estimator)``), read from its opcodes without unpickling anything; None when
    the file is not such a pickle."""
    import pickletools

    strings = []
    with open(path, "rb") as handle:
        try:
            for i, (op, arg, _) in enumerate(pickletools.genops(handle)):
                if op.name == "GLOBAL":
                    return tuple(arg.split(" ", 1))
                if op.name == "STACK_GLOBAL":
                    return tuple(strings[-2:]) if len(strings) >= 2 else None
                if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"):
                    strings.append(arg)
                if op.name in ("INST", "OBJ", "REDUCE", "BUILD", "STOP") or i > 50:
                    return None
        except Exception:
            return None
    return None


def load_checkpoint(path):
    """A fit to resume: a checkpoint written by ``--checkpoint`` (the estimator saved with
    joblib) or a model file written by ``--model``."""
    import nica

    _check_input(path, "checkpoint file")
    header, _ = _model_header(path)
    if header.get("format") == _MODEL_FORMAT:
        return load_model(path)
    if _pickled_class(path) != ("nica._src.estimator", "NonlinearICA"):
        raise CLIError(f"{path!r} is not a nica checkpoint (write one with 'nica fit ... --checkpoint FILE') "
                       "or model file")
    estimator = _joblib_load(path, "checkpoint file", f"checkpoint file {path!r}")
    if not isinstance(estimator, nica.NonlinearICA) or "_state" not in estimator.__dict__:
        raise CLIError(f"checkpoint file {path!r} does not hold a fitted NonlinearICA")
    return estimator


def cmd_fit(args):
    import nica

    if os.path.splitext(args.model)[1].lower() in _DATA_EXTENSIONS:
        raise CLIError(f"--model {args.model!r} names a data file (.npy, .npz or .csv); "
                       "give the model file another name, such as model.nica")
    _check_output(args.model, "model file")
    _check_distinct(args.model, [("data file", args.data), ("aux file", args.aux)], "model file")
    if args.checkpoint is not None:
        _check_output(args.checkpoint, "checkpoint file")
        _check_distinct(args.checkpoint, [("data file", args.data), ("aux file", args.aux)], "checkpoint file")
        if os.path.abspath(args.checkpoint) == os.path.abspath(args.model):
            raise CLIError("--checkpoint and --model name the same file; the model file has another format")
    if args.aux is not None and (args.checkpoint is not None or args.checkpoint_every is not None):
        raise CLIError("--checkpoint is for models without --aux (NonlinearICA)")
    resumed = None if args.resume is None else load_checkpoint(args.resume)
    X = read_array(args.data)
    given = dict(
        n_layers=args.n_layers, activation=args.activation, prior=args.prior,
        learning_rate=args.learning_rate, batch_size=args.batch_size, max_iter=args.max_iter,
        whiten=False if args.whiten == "none" else args.whiten, gradient=args.gradient,
        init=args.init, n_init=args.n_init, schedule=args.schedule, averaging=args.averaging,
        random_state=args.random_state, verbose=args.verbose,
    )
    common = {name: value for name, value in given.items() if value is not None}  # else the default
    if args.contrastive_weight is not None:
        if args.aux is None:
            raise CLIError("--contrastive-weight needs --aux (segment labels): it weighs the "
                           "cross-entropy of the label posterior")
        common["contrastive_weight"] = args.contrastive_weight
    if args.checkpoint is not None:
        common["checkpoint_path"] = args.checkpoint
    if args.checkpoint_every is not None:
        if args.checkpoint is None and (resumed is None or getattr(resumed, "checkpoint_path", None) is None):
            raise CLIError("--checkpoint-every needs --checkpoint FILE")
        common["checkpoint_every"] = args.checkpoint_every
    if resumed is not None:
        # the fit continues (warm_start): a checkpoint's interrupted fit runs its epochs left,
        # a finished fit max_iter more; options given here take effect as with warm_start
        if hasattr(resumed, "aux_type_") != (args.aux is not None):
            raise CLIError("--resume: the model was fitted " + ("with" if args.aux is None else "without")
                           + " --aux; give the same kind of data")
        if hasattr(resumed, "aux_type_"):
            common.pop("checkpoint_path", None)
            common.pop("checkpoint_every", None)
        model = resumed.set_params(warm_start=True, **common)
        if args.aux is not None:
            u = read_array(args.aux, numeric=False, name="aux")
            if u.dtype.kind in "US":
                u = _labels_from_text(u, args.aux)
            model.fit(X, u)
        else:
            model.fit(X)
    elif args.aux is not None:
        u = read_array(args.aux, numeric=False, name="aux")
        if u.dtype.kind in "US":
            u = _labels_from_text(u, args.aux)
        if u.shape[0] != X.shape[0]:
            raise CLIError(f"--aux has {u.shape[0]} rows but {args.data!r} has {X.shape[0]}")
        model = nica.ConditionalNonlinearICA(**common).fit(X, u)
    else:
        model = nica.NonlinearICA(**common).fit(X)
    save_model(args.model, model)
    print(f"fitted {type(model).__name__} on {X.shape[0]} samples × {X.shape[1]} features "
          f"in {model.n_iter_} epochs; saved to {args.model}")


def cmd_transform(args):
    model, X = _model_data(args)
    _check_outputs(args, [("model file", args.model), ("data file", args.data)])
    S = model.transform(X)
    _warn_if_not_finite(S, "sources")
    write_array(args.output, S)


def cmd_inverse_transform(args):
    model, S = _model_data(args)
    _check_outputs(args, [("model file", args.model), ("data file", args.data)])
    X = model.inverse_transform(S)
    _warn_if_not_finite(X, "observations")
    write_array(args.output, X)


def cmd_score(args):
    model, X = _model_data(args)
    if args.output is not None:
        _check_outputs(args, [("model file", args.model), ("data file", args.data), ("aux file", args.aux)])
    if hasattr(model, "aux_type_"):
        ll = model.score_samples(X, _read_aux(args, model, X.shape[0]))
    else:
        if args.aux is not None:
            raise CLIError("--aux given but the model has no auxiliary variable")
        ll = model.score_samples(X)
    _warn_if_not_finite(ll, "log-likelihoods")
    if args.output is not None:
        write_array(args.output, ll)
    print(f"mean log-likelihood: {float(np.mean(ll)):.6f} nats per sample ({X.shape[0]} samples)")


# Sampling holds a few arrays of the output's size at once (sources, each layer's inverse, the
# host copy, the un-whitened result); an allocation that fails inside XLA on a CPU aborts the
# process, so a count that cannot fit is refused before any is drawn.
_SAMPLE_COPIES = 6


def _available_memory():
    """Bytes of memory available now (Linux's MemAvailable), or None when unknown."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _check_sample_memory(n_samples, model):
    itemsize = np.dtype(getattr(model, "_dtype", np.float64)).itemsize
    need = n_samples * model.n_features_in_ * itemsize * _SAMPLE_COPIES
    available = _available_memory()
    if available is not None and need > available:
        raise CLIError(f"out of memory: {n_samples} samples × {model.n_features_in_} features need about "
                       f"{need / 2**30:.3g} GiB, {available / 2**30:.3g} GiB is available; draw fewer "
                       "(several runs with different --random-state draw more)")


def cmd_sample(args):
    if args.aux is not None and args.label is not None:  # also refused by the parser
        raise CLIError("--aux and --label cannot be given together: --aux gives one value per sample, "
                       "--label one for all samples")
    model = load_model(args.model)
    _check_outputs(args, [("model file", args.model), ("aux file", args.aux)])
    n_samples = 1 if args.n_samples is None else args.n_samples
    _check_sample_memory(n_samples, model)
    if hasattr(model, "aux_type_"):
        if args.label is not None:
            label = _label_from_text(args.label, model) if model.aux_type_ == "discrete" \
                else _continuous_from_text(args.label, model)
            X = model.sample(n_samples, y=label, random_state=args.random_state)
        elif args.aux is not None:
            u = _read_aux(args, model)
            if args.n_samples is not None and args.n_samples != u.shape[0]:
                raise CLIError(f"-n {args.n_samples} but --aux {args.aux!r} has {u.shape[0]} rows "
                               "(one sample is drawn per row; leave -n out)")
            X = model.sample(u.shape[0], y=u, random_state=args.random_state)
        else:
            if model.aux_type_ == "continuous":
                raise CLIError("the model's auxiliary variable is continuous: give --aux (one value per "
                               "sample) or --label (one value for all samples)")
            X = model.sample(n_samples, random_state=args.random_state)
    else:
        if args.aux is not None or args.label is not None:
            raise CLIError("--aux/--label given but the model has no auxiliary variable")
        X = model.sample(n_samples, random_state=args.random_state)
    _warn_if_not_finite(X, "samples")
    write_array(args.output, X)


def _figure_formats():
    from matplotlib.backend_bases import FigureCanvasBase

    return FigureCanvasBase.get_supported_filetypes()


def cmd_demo(args):
    """Segment-modulated nonlinear mixture → ConditionalNonlinearICA, MCC beside FastICA's."""
    import matplotlib

    matplotlib.use("Agg")
    _check_output(args.figure, "figure file", make_dirs=True)
    formats = _figure_formats()
    ext = os.path.splitext(args.figure)[1].lower().lstrip(".")
    if ext not in formats:
        raise CLIError(f"unsupported --figure {args.figure!r}: expected one of "
                       f"{', '.join('.' + f for f in sorted(formats))}")

    from sklearn.decomposition import FastICA

    import nica
    from nica.datasets import make_segmented_mixture
    from nica.metrics import mean_corr_coef
    n_per_segment = 250 if args.quick else 1000
    n_components, n_layers = 5, 2
    print(f"nica demo: {n_components} sources, 40 segments × {n_per_segment} points, "
          f"mixed by a {n_layers}-layer leaky-ReLU network (the segment-modulated benchmark recipe)")
    data = make_segmented_mixture(n_segments=40, n_per_segment=n_per_segment, n_components=n_components,
                                  n_layers=n_layers, random_state=args.seed)
    X_train, X_test = data.X_train.astype(np.float32), data.X_test.astype(np.float32)
    start = time.perf_counter()
    model = nica.ConditionalNonlinearICA(**DEMO_SETTINGS, max_iter=60 if args.quick else 1000,
                                         random_state=args.seed, verbose=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_iter in --quick mode
        model.fit(X_train, data.u_train)
    fit_seconds = time.perf_counter() - start
    S_est = model.transform(X_test)
    mcc = mean_corr_coef(data.S_test, S_est)
    fast = mean_corr_coef(data.S_test, FastICA(random_state=args.seed).fit(data.X_train).transform(data.X_test))
    print(f"held-out MCC  ConditionalNonlinearICA: {mcc:.3f}   FastICA: {fast:.3f}")
    print(f"fit: {model.n_iter_} epochs in {fit_seconds:.1f} s; held-out log-likelihood "
          f"{model.score(X_test, data.u_test):.3f} nats/sample")
    from nica.plotting import plot_sources

    fig = plot_sources(data.S_test, S_est)
    _write_atomically(args.figure, lambda handle: fig.savefig(handle, dpi=110, format=ext), "figure file")
    print(f"figure: {args.figure}")


# The demo uses the estimator's defaults (docs/benchmarks.md, "Defaults"), nothing hand-picked.
DEMO_SETTINGS = dict()


# ---------------------------------------------------------------------------------------------


class _UsageError(Exception):
    """A bad command line (reported on one line, without argparse's usage block)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise _UsageError(f"{message} (see '{self.prog} --help')")


def _int_option(minimum, maximum=None, name=None):
    def parse(text):
        value = _strict_int(text)
        if value is None or value < minimum or (maximum is not None and value > maximum):
            if name is not None:
                raise argparse.ArgumentTypeError(f"{name}; got {text!r}")
            bound = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer {bound}")
        return value

    parse.__name__ = "integer"
    return parse


_seed = _int_option(0, 2**32 - 1)


def build_parser():
    """The argument parser of the ``nica`` command (also used to document it)."""
    import nica

    parser = _Parser(prog="nica", description="Nonlinear ICA with the relative gradient.")
    parser.add_argument("--version", action="version", version=f"nica {nica.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="fit a built-in synthetic nonlinear mixture and report MCC")
    demo.add_argument("--quick", action="store_true", help="smaller data and fewer epochs")
    demo.add_argument("--figure", default="nica_demo.png", help="where to write the figure")
    demo.add_argument("--seed", type=_seed, default=0)
    demo.set_defaults(func=cmd_demo)

    fit = sub.add_parser("fit", help="fit a model to DATA and save it",
                         description="Fit a model to DATA and save it.  An option left out takes the "
                                     "estimator's default.")
    fit.add_argument("data")
    fit.add_argument("--aux", help="auxiliary variable u (segment labels or values): fits ConditionalNonlinearICA")
    fit.add_argument("--model", required=True, help="output model file")
    fit.add_argument("--n-layers", type=int)
    fit.add_argument("--contrastive-weight", type=float, metavar="ALPHA",
                     help="with --aux: weight of the label posterior's cross-entropy in the hybrid "
                          "objective (default 'auto': 2 for segment labels, 0 for a continuous u; "
                          "0: exact maximum likelihood)")
    fit.add_argument("--activation", choices=["smooth_leaky_relu", "tanh_linear", "leaky_relu"])
    fit.add_argument("--prior", choices=["logistic_mixture", "laplace", "gaussian", "logistic", "hypsecant"])
    fit.add_argument("--learning-rate", type=float,
                     help="default: 1e-3 when linear ICA starts at FastICA's rotation, 1e-2 otherwise")
    fit.add_argument("--batch-size", type=int)
    fit.add_argument("--max-iter", type=int)
    fit.add_argument("--whiten", choices=["auto", "standardize", "unit-variance", "none"])
    fit.add_argument("--gradient", choices=["auto", "relative", "equivariant", "euclidean", "autodiff"],
                     help="relative: the O(B·D²) relative gradient (docs/theory.rst); "
                          "equivariant: the optimizer in the group's coordinates, "
                          "usually better with Adam while n_features <= batch size (docs/benchmarks.md)")
    fit.add_argument("--init", choices=["auto", "fastica", "random"],
                     help="starting point of the first layer (auto: FastICA's rotation for linear ICA)")
    fit.add_argument("--n-init", type=int, help="number of initialisations; the most likely is kept")
    fit.add_argument("--schedule", choices=["plateau", "constant"])
    fit.add_argument("--averaging", type=float, metavar="TAU",
                     help="validate and keep a running average of the parameters over TAU epochs "
                          "(default 'auto': 0.5 with --aux and more than one layer, else 0: the "
                          "last iterate)")
    fit.add_argument("--random-state", type=_seed, default=None)
    fit.add_argument("--verbose", type=int)
    fit.add_argument("--checkpoint", metavar="FILE",
                     help="save the fit in progress here (joblib) every --checkpoint-every; "
                          "'nica fit DATA --resume FILE --model OUT' continues it")
    fit.add_argument("--checkpoint-every", type=_checkpoint_every, metavar="EVERY",
                     help="epochs (5, default 1) or time (30s, 10min, 2h) between checkpoints")
    fit.add_argument("--resume", metavar="FILE",
                     help="continue the fit saved in FILE (a --checkpoint file, or a --model file) on DATA; "
                          "an interrupted fit runs its epochs left and ends as it would have")
    fit.set_defaults(func=cmd_fit)

    for name, func, help_text in [("transform", cmd_transform, "sources of DATA"),
                                  ("inverse-transform", cmd_inverse_transform, "observations from sources")]:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("model")
        p.add_argument("data")
        p.add_argument("-o", "--output", required=True)
        p.set_defaults(func=func)

    score = sub.add_parser("score", help="exact log-likelihood of DATA")
    score.add_argument("model")
    score.add_argument("data")
    score.add_argument("--aux")
    score.add_argument("-o", "--output", help="write per-sample log-likelihoods here")
    score.set_defaults(func=cmd_score)

    sample = sub.add_parser("sample", help="draw samples from a fitted model")
    sample.add_argument("model")
    sample.add_argument("-n", "--n-samples", type=_int_option(1, name="n_samples must be a positive integer"), default=None,
                        help="how many samples (default 1; with --aux, one per row of U)")
    sample.add_argument("-o", "--output", required=True)
    given_u = sample.add_mutually_exclusive_group()
    given_u.add_argument("--aux", help="one auxiliary value per sample")
    given_u.add_argument("--label", help="one segment label (or value) for all samples")
    sample.add_argument("--random-state", type=_seed, default=None)
    sample.set_defaults(func=cmd_sample)
    return parser


def main(argv=None):
    """Entry point of the ``nica`` console script; returns the exit status.

    0 on success; 2 on any error, reported as one line ``nica: error: ...`` on stderr (never
    a traceback); 130 when interrupted (Ctrl-C).  ``--help`` and ``--version`` return 0.
    """
    try:
        try:
            args = build_parser().parse_args(argv)
        except _UsageError as exc:
            return _fail(str(exc))
        except SystemExit as exc:  # --help and --version print, then exit
            return exc.code if isinstance(exc.code, int) else 0
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning
            return _run(args)
    except KeyboardInterrupt:
        return _interrupted()


def _one_line(text, limit=600):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _say(line):
    with contextlib.suppress(OSError, ValueError):  # stderr itself closed
        print(line, file=sys.stderr)


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    _say(f"nica: warning: {_one_line(message)}")


def _fail(message):
    _say(f"nica: error: {_one_line(message)}")
    return _EXIT_ERROR


def _interrupted():
    _say("nica: interrupted")
    return _EXIT_INTERRUPTED


def _is_out_of_memory(exc):
    text = str(exc)
    return isinstance(exc, MemoryError) or "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower()


def _silence_stdout():
    # After a closed pipe, the interpreter's last flush of stdout would fail again at exit.
    with contextlib.suppress(OSError, ValueError, AttributeError):
        fileno = sys.stdout.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fileno)
        os.close(devnull)


def _run(args):
    try:
        args.func(args)
    except KeyboardInterrupt:
        return _interrupted()
    except CLIError as exc:
        return _fail(str(exc))
    except BrokenPipeError:
        _silence_stdout()
        return _fail("the output pipe was closed before nica finished writing")
    except MemoryError:
        return _fail("out of memory: the data or model do not fit (try fewer samples, a smaller "
                     "--batch-size, or float32 data)")
    except (ValueError, TypeError) as exc:  # the estimators' own clear messages, on one line
        return _fail(str(exc))
    except OSError as exc:
        where = f"{exc.filename!r}: " if exc.filename else ""
        return _fail(f"{where}{_os_reason(exc)}")
    except Exception as exc:  # the last resort: still one line, naming what went wrong
        if _is_out_of_memory(exc):
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return _fail(f"out of memory ({_one_line(first, 200)}): try fewer samples, a smaller "
                         "--batch-size, or float32 data")
        return _fail(f"unexpected {type(exc).__name__}: {exc}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
