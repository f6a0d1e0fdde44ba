"""The command line's files: paths checked before any long computation, data files read and
written (``.npy``, ``.npz``, ``.csv``), and every failure as one :class:`CLIError` line."""

from __future__ import annotations

import contextlib
import csv
import os
import re
import stat
import warnings

import numpy as np

from nica._src.io import check_writable, write_atomically

__all__ = [
    "CLIError",
    "DATA_EXTENSIONS",
    "os_reason",
    "check_input",
    "check_output",
    "check_distinct",
    "write_file",
    "split_key",
    "read_array",
    "as_text",
    "write_array",
    "labels_from_text",
    "as_float",
    "describe_position",
    "warn_if_not_finite",
    "strict_int",
    "file_identity",
    "check_data_file",
    "check_fit_outputs",
]

DATA_EXTENSIONS = (".npy", ".npz", ".csv")
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")


class CLIError(Exception):
    """An error to report as one line, without a traceback."""


# ---------------------------------------------------------------------------------------------
# paths


def os_reason(exc):
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


def check_input(path, what):
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
        raise CLIError(f"cannot read {what} {path!r}: {os_reason(exc)}") from None
    if stat.S_ISDIR(info.st_mode):
        raise CLIError(f"cannot read {what} {path!r}: it is a directory, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise CLIError(f"cannot read {what} {path!r}: not a regular file")
    if not os.access(path, os.R_OK):
        raise CLIError(f"cannot read {what} {path!r}: permission denied")
    if info.st_size == 0:
        raise CLIError(f"{what} {path!r} is empty")


def check_output(path, what, extensions=None, *, make_dirs=False):
    """Fail now, before any long computation, if ``path`` cannot be written: the checks of
    ``nica._src.io.check_writable`` (only a regular file is replaced: a FIFO, a device, a
    directory or a symbolic link to one is refused; the folder, its permissions and the length
    of the name), then the extension."""
    try:
        check_writable(path, what, make_dirs=make_dirs)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    ext = os.path.splitext(path)[1].lower()
    if extensions is not None and ext not in extensions:
        expected = ", ".join(extensions[:-1]) + " or " + extensions[-1]
        raise CLIError(f"unsupported {what} {path!r}: expected {expected}")


def check_distinct(output, inputs, what):
    """Refuse to overwrite an input (the model or data being read) with an output."""
    for name, path in inputs:
        if path is None or not os.path.exists(output):
            continue
        with contextlib.suppress(OSError):
            if os.path.samefile(output, split_key(path)[0]):
                raise CLIError(f"{what} {output!r} is the {name} being read; choose another name")


def write_file(path, write, what):
    """Write through ``write(binary_handle)`` atomically (``nica._src.io.write_atomically``): an
    interrupted or failed write leaves ``path`` as it was; a failure of the file system is a
    :class:`CLIError` naming the ``what`` at ``path``."""
    try:
        write_atomically(path, write, name=what)
    except ValueError as exc:  # refused by check_writable
        raise CLIError(str(exc)) from None
    except OSError as exc:
        raise CLIError(f"cannot write {what} {path!r}: {os_reason(exc)}") from None


# ---------------------------------------------------------------------------------------------
# data files

_KEY = re.compile(r"^(.*\.npz):([^:/\\]*)$", re.IGNORECASE)


def split_key(path):
    match = _KEY.match(path)
    return (match.group(1), match.group(2)) if match else (path, None)


def describe_position(array, mask):
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
        raise CLIError(
            f"{name} file {path!r} holds pickled Python objects, not a NumPy array (nica does not unpickle data files)"
        )
    raise CLIError(f"{name} file {path!r} is not a NumPy .npy or .npz file")


def check_data_file(path, name="data"):
    """:func:`read_array`'s checks before it reads: a data file's extension, and a readable
    file; returns ``(path, key, extension)`` (``file.npz:key`` split)."""
    path, key = split_key(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in DATA_EXTENSIONS:
        raise CLIError(f"unsupported {name} file {path!r}: expected .npy, .npz or .csv")
    check_input(path, f"{name} file")
    return path, key, ext


def read_array(path, *, numeric=True, name="data"):
    """Read a ``.npy``, ``.npz`` or ``.csv`` file into an array.

    Numeric data come back 2-D (samples × features), finite and of a real dtype; with
    ``numeric=False`` (auxiliary variables) a ``.csv`` file comes back as text, 1-D for one
    column, for the caller to convert (``labels_from_text``).
    """
    path, key, ext = check_data_file(path, name)
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
        raise CLIError(f"cannot read {name} file {path!r}: {os_reason(exc)}") from None
    except Exception as exc:  # zipfile.BadZipFile, zlib.error, EOFError, ValueError, ...: corrupt
        detail = " ".join(str(exc).split())[:200]
        if "allow_pickle" in detail:
            raise CLIError(
                f"{name} file {path!r} holds Python objects (dtype object), not numbers; "
                "nica does not unpickle data files"
            ) from None
        raise CLIError(
            f"cannot read {name} file {path!r}: corrupt or truncated "
            f"({type(exc).__name__}{': ' + detail if detail else ''})"
        ) from None
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
            raise CLIError(f"{name} file {path!r} contains NaN or infinity (first at {describe_position(array, bad)})")
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
        raise CLIError(
            f"{name} file {path!r} must hold one value (or row of values) per sample; got shape {array.shape}"
        )
    if array.shape[0] == 0 or array.size == 0:
        raise CLIError(f"{name} file {path!r} holds no values (shape {array.shape})")
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array)
        if bad.any():
            raise CLIError(f"{name} file {path!r} contains NaN or infinity (first at {describe_position(array, bad)})")
    return array


# Numbers as nica reads them from text: ASCII decimal notation, an optional sign, the digits 0-9
# with an optional point and an optional exponent, or inf, infinity, nan (any case); whitespace
# around them is ignored.  Python's float() also takes '1_5' (15) and the digits of other
# scripts ('١٢', full-width '１'): those are refused, not read as numbers.
_DECIMAL = re.compile(
    r"[+-]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:e[+-]?[0-9]+)?|inf|infinity|nan)", re.ASCII | re.IGNORECASE
)
_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)
_NOTATION = (
    "the digits 0-9 with an optional sign, decimal point and exponent, or inf, nan; no '_' digit "
    "separators, no digits of other scripts"
)


def as_float(cell):
    """The number ``cell`` writes in ASCII decimal notation (surrounding whitespace ignored), or
    None for any other text."""
    text = cell.strip()
    return float(text) if _DECIMAL.fullmatch(text) else None


def _python_float(cell):
    """``float(cell)``, or None: what Python reads as a number (a wider set than ``as_float``)."""
    try:
        return float(cell)
    except ValueError:
        return None


def _read_csv(path, *, numeric):
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        rows, lines = [], []  # the rows that hold a value, and the line of the file each ends on
        for row in reader:
            if row and any(cell.strip() for cell in row):
                rows.append(row)
                lines.append(reader.line_num)
    if not rows:
        raise CLIError(f"CSV file {path!r} holds no values")

    def numeric_row(row):
        return all(_python_float(cell) is not None for cell in row)

    # A first line with no number is a header, except for label files whose every line is text.
    # (Anything Python reads as a number counts here, so that a first line of numbers in another
    # notation is refused below, not dropped as a header.)
    if all(_python_float(cell) is None for cell in rows[0]) and (numeric or any(map(numeric_row, rows[1:]))):
        rows, lines = rows[1:], lines[1:]
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
            value = as_float(cell)
            if value is None:
                where = f"in row {i + 1}, column {j + 1} (line {lines[i]} of the file)"
                if _python_float(cell) is not None:
                    raise CLIError(
                        f"CSV file {path!r}: {cell!r} {where} is not a number in ASCII decimal notation, "
                        f"the only notation nica reads ({_NOTATION})"
                    )
                hint = " (nica reads comma-separated values)" if re.search(r"\d[\s;|]+[-+.\d]", cell) else ""
                raise CLIError(f"CSV file {path!r}: non-numeric value {cell!r} {where}{hint}")
            out[i, j] = value
    return out


def as_text(u, path):
    """Text labels as ``str`` (``bytes`` labels decoded as UTF-8)."""
    if u.dtype.kind != "S":
        return u
    try:
        return np.char.decode(u, "utf-8")
    except UnicodeDecodeError:
        raise CLIError(f"aux file {path!r} holds bytes that are not UTF-8 text") from None


def labels_from_text(text, path, *, distinct=True):
    """Labels read as text: int64 when every cell is an integer, float64 when every cell is a
    number (both in ASCII decimal notation, as :func:`as_float` reads them), else the text
    itself, compared whole (no width is imposed on later labels): ``'1_5'`` or ``'١٢'`` is a
    text label, never the number 15 or 12.

    With ``distinct``, texts that name the same integer (``1`` and ``01``) stay text: they are
    different labels, not to be merged.
    """
    text = as_text(text, path)
    ints = []
    for cell in text.ravel():
        if not _INTEGER.fullmatch(cell.strip()):  # ASCII digits only: '1_5' and '١٢' stay text
            break
        ints.append(int(cell))
    else:
        if not distinct or len(set(ints)) == len(set(text.ravel().tolist())):
            with contextlib.suppress(OverflowError):
                return np.array(ints, dtype=np.int64).reshape(text.shape)
        if distinct:
            return text
    floats = [as_float(cell) for cell in text.ravel()]
    if all(value is not None for value in floats):
        values = np.array(floats, dtype=np.float64).reshape(text.shape)
        bad = ~np.isfinite(values)
        if bad.any():
            raise CLIError(f"aux file {path!r} contains NaN or infinity (first at {describe_position(values, bad)})")
        return values
    return text


def write_array(path, array):
    """Write an array to ``.npy``, ``.npz`` (as ``X``) or ``.csv``."""
    check_output(path, "output file", DATA_EXTENSIONS)
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        write_file(path, lambda handle: np.save(handle, array), "output file")
    elif ext == ".npz":
        write_file(path, lambda handle: np.savez(handle, X=array), "output file")
    else:
        write_file(
            path, lambda handle: np.savetxt(handle, np.atleast_2d(array.T).T, delimiter=",", fmt="%.17g"), "output file"
        )


def warn_if_not_finite(array, what):
    bad = ~np.isfinite(array)
    if bad.any():
        warnings.warn(
            f"{int(bad.sum())} of the {array.size} values of the {what} are NaN or infinite "
            "(inputs far outside the range of the training data?)",
            RuntimeWarning,
            stacklevel=2,
        )


def strict_int(text):
    """The integer ``text`` writes in ASCII digits (an optional sign, spaces around), else None."""
    if not re.fullmatch(r"\s*[-+]?[0-9]+\s*", text):  # ASCII digits only
        return None
    return int(text)


def file_identity(path):
    """What tells a file apart from the one written before it (a rename makes a new inode)."""
    try:
        info = os.stat(path)
    except (OSError, ValueError, TypeError):
        return None
    return info.st_dev, info.st_ino, info.st_mtime_ns, info.st_size


def check_fit_outputs(args):
    """``nica fit``'s checks of its output files (``--model``, ``--checkpoint``), made before it
    reads anything."""
    if os.path.splitext(args.model)[1].lower() in DATA_EXTENSIONS:
        raise CLIError(
            f"--model {args.model!r} names a data file (.npy, .npz or .csv); "
            "give the model file another name, such as model.nica"
        )
    check_output(args.model, "model file")
    check_distinct(args.model, [("data file", args.data), ("aux file", args.aux)], "model file")
    if args.checkpoint is not None:
        check_output(args.checkpoint, "checkpoint file")
        check_distinct(args.checkpoint, [("data file", args.data), ("aux file", args.aux)], "checkpoint file")
        if os.path.realpath(args.checkpoint) == os.path.realpath(args.model):
            raise CLIError("--checkpoint and --model name the same file; give each a file of its own")
