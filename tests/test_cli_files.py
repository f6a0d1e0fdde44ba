"""The command line's files (``nica/cli/_files.py``): data files read (``.npy``, ``.npz``,
``.csv``) or refused, label files read as text, and paths checked before any work and written
atomically.  Every bad file is one line on stderr and exit status 2, through every command that
reads it (docs/cli.rst, "Errors", tabulates the cases); random bytes and arrays fuzz the readers.
"""

import csv
import errno
import os
import re
import stat
import time
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from support import FIT_FAST, D, N, assert_one_line_error, run, write_bytes

from nica._src import fitting as _fitting
from nica._src.io import STALE_SECONDS
from nica.cli import CLIError, load_model, read_array
from nica.cli import _commands as _cli_commands
from nica.cli._files import as_float, labels_from_text

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture
def env(cli_env):
    """The session's files and tiny models (tests/conftest.py)."""
    return cli_env


# ---------------------------------------------------------------------------------------------
# bad data files: the same cases for every command that reads DATA


def _npy_header_only(path, shape):
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": "<f8", "fortran_order": False, "shape": shape})
        handle.write(b"\0" * 64)


def make_bad_data(d, case):
    """(path argument, expected fragment) for one bad data file."""
    p = d / f"bad_{case}"
    if case == "missing":
        return d / "missing.npy", "no such file"
    if case == "directory":
        (d / "dir.npy").mkdir(exist_ok=True)
        return d / "dir.npy", "is a directory"
    if case == "under_file":
        return d / "plain.txt" / "X.npy", "is a file, not a directory"
    if case == "empty":
        return write_bytes(p.with_suffix(".npy"), b""), "is empty"
    if case == "truncated_npz":
        np.savez(p.with_suffix(".npz"), X=np.ones((50, D)))
        data = p.with_suffix(".npz").read_bytes()
        return write_bytes(p.with_suffix(".npz"), data[: len(data) // 2]), "corrupt or truncated"
    if case == "corrupt_zip_member":
        np.savez_compressed(p.with_suffix(".npz"), X=np.ones((50, D)))
        data = bytearray(p.with_suffix(".npz").read_bytes())
        data[60:70] = b"\xff" * 10  # inside the deflated member
        return write_bytes(p.with_suffix(".npz"), bytes(data)), "corrupt or truncated"
    if case == "truncated_npy":
        np.save(p.with_suffix(".npy"), np.ones((50, D)))
        return write_bytes(p.with_suffix(".npy"), p.with_suffix(".npy").read_bytes()[:200]), "corrupt or truncated"
    if case == "garbage_npy":
        return write_bytes(p.with_suffix(".npy"), b"hello, this is not numpy\n" * 4), "not a NumPy .npy or .npz file"
    if case == "pickle_npy":
        return write_bytes(p.with_suffix(".npy"), b"\x80\x04K\x01."), "pickled Python objects"
    if case == "object_npy":
        np.save(p.with_suffix(".npy"), np.array([[1, "a", None]], dtype=object), allow_pickle=True)
        return p.with_suffix(".npy"), "dtype object"
    if case == "huge_header":
        _npy_header_only(p.with_suffix(".npy"), (10**8, 10**8))
        return p.with_suffix(".npy"), "does not fit in memory"
    if case == "ndim3":
        np.save(p.with_suffix(".npy"), np.ones((4, 2, 3)))
        return p.with_suffix(".npy"), "must hold a 2-D array"
    if case == "ndim0":
        np.save(p.with_suffix(".npy"), np.float64(1.0))
        return p.with_suffix(".npy"), "must hold a 2-D array"
    if case == "no_rows":
        np.save(p.with_suffix(".npy"), np.ones((0, D)))
        return p.with_suffix(".npy"), "holds no samples"
    if case == "nan":
        X = np.ones((5, D))
        X[3, 1] = np.nan
        np.save(p.with_suffix(".npy"), X)
        return p.with_suffix(".npy"), "NaN or infinity (first at row 4, column 2)"
    if case == "inf_csv":
        return write_bytes(p.with_suffix(".csv"), b"1,2,3\n4,inf,6\n"), "NaN or infinity"
    if case == "longdouble_overflow":
        np.save(p.with_suffix(".npy"), np.full((3, D), np.longdouble(10) ** 400))
        return p.with_suffix(".npy"), "NaN or infinity"
    if case == "complex":
        np.save(p.with_suffix(".npy"), np.ones((5, D), dtype=complex))
        return p.with_suffix(".npy"), "complex"
    if case == "text_npy":
        np.save(p.with_suffix(".npy"), np.array([["a", "b", "c"]]))
        return p.with_suffix(".npy"), "text"
    if case == "structured":
        np.save(p.with_suffix(".npy"), np.zeros(4, dtype=[("a", float), ("b", int)]))
        return p.with_suffix(".npy"), "structured"
    if case == "datetime":
        np.save(p.with_suffix(".npy"), np.array([["2020-01-01"] * D], dtype="datetime64[D]"))
        return p.with_suffix(".npy"), "dates or times"
    if case == "non_numeric_csv":
        return write_bytes(p.with_suffix(".csv"), b"a,b,c\n1,2,3\n4,5,x\n"), "non-numeric value 'x' in row 2, column 3"
    if case == "underscore_csv":  # Python's float() reads '1_5' as 15
        return write_bytes(p.with_suffix(".csv"), b"1,2,3\n4,1_5,6\n"), "'1_5' in row 2, column 2 (line 2 of the file)"
    if case == "unicode_digits_csv":  # Arabic-Indic digits, which float() reads as 12
        return write_bytes(p.with_suffix(".csv"), "1,2,3\n4,\u0661\u0662,6\n".encode()), "is not a number in ASCII"
    if case == "semicolon_csv":
        return write_bytes(p.with_suffix(".csv"), b"1;2;3\n4;5;6\n"), "comma-separated"
    if case == "ragged_csv":
        return write_bytes(p.with_suffix(".csv"), b"1,2,3\n4,5\n"), "row 2 has 2 columns, expected 3"
    if case == "header_only_csv":
        return write_bytes(p.with_suffix(".csv"), b"a,b,c\n"), "header but no data"
    if case == "latin1_csv":
        return write_bytes(p.with_suffix(".csv"), "x\xe9,y,z\n1,2,3\n".encode("latin-1")), "not a UTF-8 text file"
    if case == "nul_csv":
        return write_bytes(p.with_suffix(".csv"), b"1,2,3\n4,\x00,6\n"), "bad_nul_csv.csv"
    if case == "wrong_extension":
        return write_bytes(p.with_suffix(".txt"), b"1 2 3\n"), "expected .npy, .npz or .csv"
    if case == "npz_no_X":
        np.savez(p.with_suffix(".npz"), a=np.ones((3, D)), b=np.ones((3, D)))
        return p.with_suffix(".npz"), "name one as"
    if case == "npz_bad_key":
        np.savez(p.with_suffix(".npz"), X=np.ones((3, D)))
        return f"{p.with_suffix('.npz')}:nope", "name one as"
    if case == "npz_not_array":
        with zipfile.ZipFile(p.with_suffix(".npz"), "w") as archive:
            archive.writestr("X", b"just bytes")
        return p.with_suffix(".npz"), "is not a NumPy array"
    if case == "npz_empty":
        with zipfile.ZipFile(p.with_suffix(".npz"), "w"):
            pass
        return p.with_suffix(".npz"), "empty archive"
    raise AssertionError(case)


DATA_CASES = [
    "missing",
    "directory",
    "under_file",
    "empty",
    "truncated_npz",
    "corrupt_zip_member",
    "truncated_npy",
    "garbage_npy",
    "pickle_npy",
    "object_npy",
    "huge_header",
    "ndim3",
    "ndim0",
    "no_rows",
    "nan",
    "inf_csv",
    "longdouble_overflow",
    "complex",
    "text_npy",
    "structured",
    "datetime",
    "non_numeric_csv",
    "underscore_csv",
    "unicode_digits_csv",
    "semicolon_csv",
    "ragged_csv",
    "header_only_csv",
    "latin1_csv",
    "nul_csv",
    "wrong_extension",
    "npz_no_X",
    "npz_bad_key",
    "npz_not_array",
    "npz_empty",
]


def data_argv(command, d, data):
    if command == "fit":
        return ["fit", data, "--model", d / "new.nica"] + FIT_FAST
    if command == "score":
        return ["score", d / "m.nica", data]
    return [command, d / "m.nica", data, "-o", d / "out.npy"]


@pytest.mark.parametrize("command", ["fit", "transform", "inverse-transform", "score"])
@pytest.mark.parametrize("case", DATA_CASES)
def test_bad_data_file(env, capsys, command, case):
    data, fragment = make_bad_data(env, case)
    code, out, err = run(data_argv(command, env, data), capsys)
    assert_one_line_error(code, out, err, fragment)
    assert not (env / "new.nica").exists() and not (env / "out.npy").exists()


@pytest.mark.parametrize(
    "make, dtype_name",
    [
        (lambda X: X.astype(np.float16), "float16"),
        (lambda X: X.astype(np.float32), "float32"),
        (lambda X: np.round(X * 10).astype(np.int16), "int16"),
        (lambda X: X > 0, "bool"),
        (lambda X: X.astype(">f8"), "big-endian"),
        (lambda X: np.asfortranarray(X), "Fortran order"),
        (lambda X: X.astype(np.longdouble), "long double"),
    ],
)
# ---------------------------------------------------------------------------------------------
# odd but valid data files


def test_other_real_dtypes_give_the_correct_result(env, capsys, make, dtype_name):
    """float16, integers, booleans, byte order, memory order: read, not refused or mangled."""
    X = make(np.load(env / "X.npy"))
    np.save(env / "odd.npy", X)
    code, out, err = run(["transform", env / "m.nica", env / "odd.npy", "-o", env / "odd_S.npy"], capsys)
    assert code == 0, err
    expected = load_model(env / "m.nica").transform(np.asarray(X, dtype=np.float64))
    np.testing.assert_allclose(np.load(env / "odd_S.npy"), expected, rtol=1e-6, atol=1e-6)


def test_csv_variants_give_the_correct_result(env, capsys):
    """A header line, a UTF-8 byte-order mark, blank lines, CRLF: the same sources as the .npy."""
    X = np.load(env / "X.npy")
    body = "\r\n".join(",".join(f"{v:.17g}" for v in row) for row in X)
    (env / "variant.csv").write_text("\ufeffa,b,c\r\n\r\n" + body + "\r\n\r\n", encoding="utf-8")
    assert run(["transform", env / "m.nica", env / "variant.csv", "-o", env / "v.npy"], capsys)[0] == 0
    assert run(["transform", env / "m.nica", env / "X.npy", "-o", env / "ref.npy"], capsys)[0] == 0
    np.testing.assert_array_equal(np.load(env / "v.npy"), np.load(env / "ref.npy"))


NOTATION = (
    "is not a number in ASCII decimal notation, the only notation nica reads (the digits 0-9 with an optional "
    "sign, decimal point and exponent, or inf, nan; no '_' digit separators, no digits of other scripts)"
)


@pytest.mark.parametrize(
    "text, cell, row, column, line",
    [
        ("a,b\n1,2\n3,1_5\n", "1_5", 2, 2, 3),  # a digit separator: not 15
        ("\u0661\u0662,2\n3,4\n", "\u0661\u0662", 1, 1, 1),  # Arabic-Indic digits: not 12, nor a header
        ("1,2\n\n3,\uff11\n", "\uff11", 2, 2, 3),  # a full-width 1, after a blank line
        ("1,2\n3, \u0663.5e1 \n", " \u0663.5e1 ", 2, 2, 2),
        ("1,2\n3,\u00bd\n", None, 2, 2, 2),  # '½' is not a number to Python either: non-numeric
    ],
    ids=["underscore", "arabic-indic", "full-width", "mixed", "vulgar fraction"],
)
def test_csv_numbers_are_read_in_ascii_decimal_notation_only(tmp_path, text, cell, row, column, line):
    """What Python's float() reads beyond ASCII decimal notation ('1_5', other scripts' digits)
    is refused with the file, the row, the column and the line of the file, not read as a number."""
    path = tmp_path / "x.csv"
    path.write_text(text, encoding="utf-8")
    where = f"in row {row}, column {column} (line {line} of the file)"
    if cell is None:
        expected = f"CSV file {str(path)!r}: non-numeric value '\u00bd' {where}"
    else:
        expected = f"CSV file {str(path)!r}: {cell!r} {where} {NOTATION}"
    with pytest.raises(CLIError, match=f"^{re.escape(expected)}$"):
        read_array(str(path))


def test_ascii_decimal_notation_is_read_as_before(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,b,c\n+1.5e-3, .5 ,5.\n-2,1E+2,0\n", encoding="utf-8")
    np.testing.assert_array_equal(read_array(str(path)), [[1.5e-3, 0.5, 5.0], [-2.0, 100.0, 0.0]])
    assert [as_float(t) for t in ("1_5", "\u0661", "\uff11", "0x10", " 2.5 ", "-Infinity", "+inf")] == [
        None,
        None,
        None,
        None,
        2.5,
        -np.inf,
        np.inf,
    ]
    assert np.isnan(as_float("NaN"))


@pytest.mark.parametrize(
    "cells, expected",
    [
        (["1", "2", "1"], np.array([1, 2, 1])),
        (["1", "1_5", "2"], np.array(["1", "1_5", "2"])),  # text labels: '1_5' is not 15
        (["\u0661", "\u0662", "1"], np.array(["\u0661", "\u0662", "1"])),  # '\u0661' is not 1
        (["0.5", "2"], np.array([0.5, 2.0])),
        (["0.5", "\uff12"], np.array(["0.5", "\uff12"])),
    ],
)
def test_labels_are_numbers_only_in_ascii_decimal_notation(cells, expected):
    got = labels_from_text(np.array(cells), "labels.csv")
    assert got.dtype.kind == expected.dtype.kind
    np.testing.assert_array_equal(got, expected)


def test_npy_named_npz_is_read_by_content(env, capsys):
    np.save(env / "really_npy.npy", np.load(env / "X.npy"))
    os.replace(env / "really_npy.npy", env / "really_npy.npz")
    assert run(["transform", env / "m.nica", env / "really_npy.npz", "-o", env / "c.npy"], capsys)[0] == 0
    code, out, err = run(["transform", env / "m.nica", f"{env / 'really_npy.npz'}:X", "-o", env / "c.npy"], capsys)
    assert_one_line_error(code, out, err, "holds one array, not an archive")


# ---------------------------------------------------------------------------------------------
# bad output paths


def make_bad_output(d, case):
    if case == "directory":
        return d / "adir", "is a directory"
    if case == "under_file":
        return d / "plain.txt" / "o.npy", "is a file, not a directory"
    if case == "missing_directory":
        return d / "nowhere" / "o.npy", "does not exist"
    if case == "extension":
        return d / "o.txt", "unsupported output file"
    if case == "empty_path":
        return "", "no output file given"
    if case == "is_the_data":
        return d / "X.npy", "is the data file being read"
    raise AssertionError(case)


OUTPUT_CASES = ["directory", "under_file", "missing_directory", "extension", "empty_path", "is_the_data"]


@pytest.mark.parametrize("command", ["transform", "inverse-transform", "score", "sample"])
@pytest.mark.parametrize("case", OUTPUT_CASES)
def test_bad_output_path(env, capsys, command, case):
    output, fragment = make_bad_output(env, case)
    if command == "sample" and case == "is_the_data":
        output, fragment = env / "labels.csv", "is the aux file being read"
        argv = ["sample", env / "ms.nica", "--aux", env / "labels.csv", "-o", output]
    elif command == "sample":
        argv = ["sample", env / "m.nica", "-n", "2", "-o", output]
    else:
        argv = [command, env / "m.nica", env / "X.npy", "-o", output]
    before = {p.name: p.stat().st_mtime_ns for p in env.iterdir() if p.is_file()}
    code, out, err = run(argv, capsys)
    assert_one_line_error(code, out, err, fragment)
    after = {p.name: p.stat().st_mtime_ns for p in env.iterdir() if p.is_file()}
    assert after == before  # nothing written, nothing overwritten


def test_unwritable_directory(env, capsys, monkeypatch):
    """Permission denied is found before any work (simulated: the tests may run as root)."""
    target = env / "locked" / "o.npy"
    target.parent.mkdir(exist_ok=True)
    locked = os.path.realpath(target.parent)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if os.path.realpath(p) == locked else real_access(p, mode))
    for argv in (
        ["transform", env / "m.nica", env / "X.npy", "-o", target],
        ["fit", env / "X.npy", "--model", target.with_suffix(".nica")] + FIT_FAST,
        ["demo", "--figure", target.with_suffix(".png")],
    ):
        code, out, err = run(argv, capsys)
        assert_one_line_error(code, out, err, "permission denied in directory")


def _permissions_bind(directory):
    """False where file modes do not bind this process (root with its usual capabilities)."""
    probe = directory / "probe"
    probe.write_text("x")
    probe.chmod(0)
    try:
        return not os.access(probe, os.R_OK)
    finally:
        probe.chmod(0o644)
        probe.unlink()


def test_read_only_file_and_unreadable_input(env, capsys):
    if not _permissions_bind(env):
        pytest.skip("file modes do not bind this process (root)")
    ro = env / "ro.npy"
    np.save(ro, np.zeros(1))
    ro.chmod(0o444)
    secret = env / "secret.npy"
    np.save(secret, np.load(env / "X.npy"))
    secret.chmod(0)
    try:
        code, out, err = run(["transform", env / "m.nica", env / "X.npy", "-o", ro], capsys)
        assert_one_line_error(code, out, err, "read-only")
        code, out, err = run(["transform", env / "m.nica", secret, "-o", env / "o.npy"], capsys)
        assert_one_line_error(code, out, err, "permission denied")
        code, out, err = run(["transform", secret, env / "X.npy", "-o", env / "o.npy"], capsys)
        assert_one_line_error(code, out, err, "cannot read model file", "permission denied")
    finally:
        ro.chmod(0o644)
        secret.chmod(0o644)


def test_failed_write_leaves_the_old_output(env, capsys, monkeypatch):
    """A write that fails half way (a full disk) is one line; the previous output survives."""
    out_path = env / "kept.npy"
    np.save(out_path, np.arange(3.0))

    def full_disk(handle, array, *args, **kwargs):
        handle.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", full_disk)
    code, out, err = run(["transform", env / "m.nica", env / "X.npy", "-o", out_path], capsys)
    assert_one_line_error(code, out, err, "cannot write output file", "No space left on device")
    monkeypatch.undo()
    np.testing.assert_array_equal(np.load(out_path), np.arange(3.0))
    assert not [p for p in env.iterdir() if p.name.endswith(".part")]


def test_outputs_keep_new_file_permissions(env, capsys):
    umask = os.umask(0o022)
    try:
        assert run(["transform", env / "m.nica", env / "X.npy", "-o", env / "perm.npy"], capsys)[0] == 0
    finally:
        os.umask(umask)
    assert (env / "perm.npy").stat().st_mode & 0o777 == 0o644


# ---------------------------------------------------------------------------------------------
# outputs that are not regular files, names too long, temporary files: before any work


@pytest.fixture
def nothing_runs(monkeypatch):
    """No fit, no demo data, nothing renamed into place: a refusal must come first."""

    def forbidden(*args, **kwargs):
        raise AssertionError("work started (or a file was written) before the output was checked")

    monkeypatch.setattr(_fitting, "compile_epoch", forbidden)
    monkeypatch.setattr(_cli_commands, "make_segmented_mixture", forbidden)
    monkeypatch.setattr(os, "replace", forbidden)


OUTPUT_OPTIONS = {  # command line with OUT where the output goes, the extension it takes, what it is
    "transform": (["transform", "{d}/m.nica", "{d}/X.npy", "-o", "OUT"], ".npy", "output file"),
    "score": (["score", "{d}/m.nica", "{d}/X.npy", "-o", "OUT"], ".csv", "output file"),
    "sample": (["sample", "{d}/m.nica", "-n", "2", "-o", "OUT"], ".npz", "output file"),
    "fit --model": (["fit", "{d}/X.npy", "--model", "OUT", *FIT_FAST], ".nica", "model file"),
    "fit --checkpoint": (
        ["fit", "{d}/X.npy", "--model", "{t}/m.nica", "--checkpoint", "OUT", *FIT_FAST],
        ".joblib",
        "checkpoint file",
    ),
    "demo --figure": (["demo", "--quick", "--figure", "OUT"], ".png", "figure file"),
}


def output_argv(env, tmp_path, option, out):
    argv = OUTPUT_OPTIONS[option][0]
    return [str(out) if a == "OUT" else a.format(d=env, t=tmp_path) for a in argv]


@pytest.mark.parametrize("option", list(OUTPUT_OPTIONS))
@pytest.mark.parametrize("kind", ["fifo", "link_to_fifo", "character_device"])
def test_an_output_that_is_not_a_regular_file_is_refused_and_left_as_it_is(
    env, tmp_path, capsys, nothing_runs, option, kind
):
    """Writing would replace a FIFO (or /dev/null, run as root) with a regular file."""
    _, ext, what = OUTPUT_OPTIONS[option]
    pipe = tmp_path / f"pipe{ext}"
    os.mkfifo(pipe)
    (tmp_path / f"link{ext}").symlink_to(pipe)
    out, fragment = {
        "fifo": (pipe, "it is a FIFO (named pipe), not a regular file; nica writes only regular files"),
        "link_to_fifo": (tmp_path / f"link{ext}", f"it is a symbolic link to '{pipe}', which is a FIFO (named pipe)"),
        "character_device": ("/dev/null", "it is a character device, not a regular file"),
    }[kind]
    code, stdout, err = run(output_argv(env, tmp_path, option, out), capsys)
    assert_one_line_error(code, stdout, err, f"cannot write {what} {str(out)!r}: {fragment}")
    assert stat.S_ISFIFO(os.lstat(pipe).st_mode) and (tmp_path / f"link{ext}").is_symlink()
    assert stat.S_ISCHR(os.lstat("/dev/null").st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([pipe.name, f"link{ext}"])


@pytest.mark.parametrize("option", list(OUTPUT_OPTIONS))
def test_an_output_name_too_long_for_its_temporary_file_is_refused_before_any_work(
    env, tmp_path, capsys, nothing_runs, option
):
    _, ext, what = OUTPUT_OPTIONS[option]
    name = "o" * (os.pathconf(tmp_path, "PC_NAME_MAX") - 4 - len(ext)) + ext  # fits; its temporary name does not
    code, out, err = run(output_argv(env, tmp_path, option, tmp_path / name), capsys)
    assert_one_line_error(code, out, err, f"cannot write {what} ", f"the file name is {len(name)} bytes long and its")
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_checkpoint_folder_is_refused_before_fitting(env, tmp_path, capsys, monkeypatch, nothing_runs):
    """Simulated with os.access (the tests may run as root)."""
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if os.fspath(p) == str(locked) else real_access(p, mode))
    code, out, err = run(output_argv(env, tmp_path, "fit --checkpoint", locked / "ck.joblib"), capsys)
    assert_one_line_error(code, out, err, f"cannot write checkpoint file '{locked}/ck.joblib': permission denied")


def test_a_stale_temporary_file_is_removed_by_the_next_write(env, tmp_path, capsys):
    """A run killed outright (kill -9) leaves its temporary file; the next write of the same
    output removes it once stale (here: not modified for longer than STALE_SECONDS)."""
    stale = tmp_path / ".out.npy.0123abcd-4242.abcdefgh.part"
    stale.write_bytes(b"half an output")
    old = time.time() - STALE_SECONDS - 60
    os.utime(stale, (old, old))
    code, _, err = run(["transform", env / "m.nica", env / "X.npy", "-o", tmp_path / "out.npy"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npy"]


def test_an_interrupted_write_leaves_the_old_output_and_no_temporary_file(env, tmp_path, capsys, monkeypatch):
    out_path = tmp_path / "kept.npy"
    np.save(out_path, np.arange(3.0))

    def interrupted(handle, array, *args, **kwargs):
        handle.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "save", interrupted)
    code, out, err = run(["transform", env / "m.nica", env / "X.npy", "-o", out_path], capsys)
    assert_one_line_error(code, out, err, status=130)
    monkeypatch.undo()
    np.testing.assert_array_equal(np.load(out_path), np.arange(3.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.npy"]


# ---------------------------------------------------------------------------------------------
# label files, read as text


def test_labels_that_name_the_same_integer_stay_distinct(env, capsys):
    """'1' and '01' are two labels, not one: they are kept as text, compared whole."""
    np.savetxt(env / "l01.csv", np.array(["1", "01", "2", "1"] * (N // 4)), fmt="%s")
    code, _, err = run(["fit", env / "X.npy", "--aux", env / "l01.csv", "--model", env / "m01.nica"] + FIT_FAST, capsys)
    assert code == 0, err
    model = load_model(env / "m01.nica")
    assert model.classes_.tolist() == ["01", "1", "2"]
    code, _, err = run(
        ["sample", env / "m01.nica", "--label", "01", "-n", "2", "--random-state", "0", "-o", env / "d01.npy"], capsys
    )
    assert code == 0, err
    np.testing.assert_array_equal(np.load(env / "d01.npy"), model.sample(2, y="01", random_state=0))


def test_fit_reads_integer_labels_as_integers(env):
    model = load_model(env / "mi.nica")
    assert model.classes_.dtype.kind == "i" and model.classes_.tolist() == [0, 1, 2, 3]
    text = load_model(env / "ms.nica")
    assert text.classes_.tolist() == [f"s{k}" for k in range(10)]


# ---------------------------------------------------------------------------------------------
# paths of other files: the model to write, the aux file, the figure


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["fit", "{d}/X.npy", "--model", "{d}/adir"], "is a directory"),
        (["fit", "{d}/X.npy", "--model", "{d}/plain.txt/m.nica"], "is a file, not a directory"),
        (["fit", "{d}/X.npy", "--model", "{d}/nowhere/m.nica"], "does not exist"),
        (["fit", "{d}/X.npy", "--model", ""], "no model file given"),
        (["fit", "{d}/X.npy", "--model", "{d}/new.nica", "--aux", "{d}/missing.csv"], "no such file"),
        (["fit", "{d}/X.npy", "--model", "{d}/new.nica", "--aux", "{d}/aux_nan.npy"], "NaN or infinity"),
        (
            ["fit", "{d}/X.npy", "--model", "{d}/new.nica", "--aux", "{d}/aux_nan.csv"],
            "contains NaN or infinity (first at row 3)",
        ),
        (["fit", "{d}/X.npy", "--model", "{d}/new.nica", "--aux", "{d}/aux_bytes.npy"], "not UTF-8 text"),
        (
            ["fit", "{d}/X.npy", "--model", "{d}/new.nica", "--aux", "{d}/aux3d.npy"],
            "one value (or row of values) per sample",
        ),
        (["fit", "{d}/X.npy", "--model", "{d}/new.nica", "--aux", "{d}/aux_complex.npy"], "complex"),
        (["fit", "{d}/X.npy", "--model", "{d}/new.nica", "--aux", "{d}/aux_empty.csv"], "is empty"),
        (["score", "{d}/ms.nica", "{d}/X.npy", "--aux", "{d}/auxdir.csv"], "is a directory"),
        (["score", "{d}/m.nica", "{d}/X.npy", "-o", "{d}/ll.txt"], "unsupported output file"),
        (["sample", "{d}/ms.nica", "-o", "{d}/out.npy", "--aux", "{d}/missing.csv"], "no such file"),
        (["demo", "--figure", "{d}/plain.txt/fig.png"], "is a file, not a directory"),
        (["demo", "--figure", "{d}/plain.txt/sub/fig.png"], "is a file, not a directory"),
        (["demo", "--figure", "{d}/adir"], "is a directory"),
        (["demo", "--figure", "{d}/fig_dir.png"], "is a directory"),
        (["demo", "--figure", ""], "no figure file given"),
    ],
)
def test_bad_model_aux_and_figure_paths(env, capsys, argv, fragment):
    np.save(env / "aux_nan.npy", np.r_[np.nan, np.zeros(N - 1)])
    np.save(env / "aux3d.npy", np.zeros((N, 2, 2)))
    (env / "aux_nan.csv").write_text("0.5\n1.5\nnan\n" + "2.5\n" * (N - 3))
    np.save(env / "aux_bytes.npy", np.array([b"\xff\xfe", b"ok"] * (N // 2)))
    np.save(env / "aux_complex.npy", np.zeros(N, dtype=complex))
    (env / "aux_empty.csv").write_text("")
    (env / "auxdir.csv").mkdir(exist_ok=True)
    (env / "fig_dir.png").mkdir(exist_ok=True)
    code, out, err = run([a.format(d=env) for a in argv], capsys)
    assert_one_line_error(code, out, err, fragment)
    assert not (env / "new.nica").exists() and not (env / "out.npy").exists()


# ---------------------------------------------------------------------------------------------
# fuzzing the data readers


DTYPES = [
    np.float64,
    np.float32,
    np.float16,
    np.longdouble,
    np.int8,
    np.int64,
    np.uint16,
    np.bool_,
    np.complex64,
    "<U3",
    "|S2",
    "datetime64[s]",
    ">f4",
]


def _expected_numeric(array):
    """What read_array should return for ``array`` saved to .npy, or the fragment of the
    message that must refuse it (a str)."""
    kind = array.dtype.kind
    if kind == "c":
        return "is not numeric: complex values"
    if kind in "US":
        return "is not numeric: it holds text"
    if kind in "Mm":
        return "is not numeric: it holds dates or times"
    if array.ndim not in (1, 2):
        return "must hold a 2-D array (samples × features)"
    out = array[:, None] if array.ndim == 1 else array
    if out.shape[0] == 0:
        return "holds no samples"
    if out.shape[1] == 0:
        return "holds no features"
    if kind == "f":
        with np.errstate(over="ignore"):
            as64 = out.astype(np.float64)
        bad = ~np.isfinite(as64)
        if bad.any():
            row, column = np.argwhere(bad)[0]
            return f"contains NaN or infinity (first at row {row + 1}, column {column + 1})"
        if out.dtype.itemsize > 8:
            out = as64
    return out


def _check_reader(path, expected=None, numeric=True):
    """``read_array(path)``: refused with one line that names the file (and contains
    ``expected`` when that is a str), or read as ``expected`` (an array) or as a valid array."""
    try:
        got = read_array(str(path), numeric=numeric)
    except CLIError as exc:
        message = str(exc)
        assert "\n" not in message and repr(str(path)) in message, message
        assert expected is None or isinstance(expected, str), f"refused a valid array: {message}"
        if isinstance(expected, str):
            assert expected in message, (expected, message)
        return None
    assert not isinstance(expected, str), f"accepted what must be refused ({expected})"
    if numeric:
        assert got.ndim == 2 and got.dtype.kind in "biuf" and got.shape[0] > 0 and got.shape[1] > 0
        if got.dtype.kind == "f":
            assert np.all(np.isfinite(got))
    if expected is not None:
        assert got.shape == expected.shape and (got.dtype == expected.dtype or not numeric)
        np.testing.assert_array_equal(got, expected)
    return got


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.binary(max_size=400),
    ext=st.sampled_from([".npy", ".npz", ".csv"]),
    prefix=st.sampled_from([b"", b"\x93NUMPY\x01\x00", b"PK\x03\x04", b"\x80\x04", b"1,2\n"]),
    numeric=st.booleans(),
)
def test_fuzz_random_bytes(fuzz_dir, data, ext, prefix, numeric):
    path = fuzz_dir / f"bytes{ext}"
    path.write_bytes(prefix + data)
    _check_reader(path, numeric=numeric)


@settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    array=st.sampled_from(DTYPES).flatmap(
        lambda dtype: hnp.arrays(dtype, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
    )
)
def test_fuzz_random_arrays_npy(fuzz_dir, array):
    path = fuzz_dir / "array.npy"
    np.save(path, array)
    expected = _expected_numeric(array)
    got = _check_reader(path, expected)
    assert (got is None) == isinstance(expected, str)


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    array=hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=4),
        elements=st.floats(allow_nan=True, allow_infinity=True, width=64),
    ),
    header=st.booleans(),
)
def test_fuzz_random_arrays_csv(fuzz_dir, array, header):
    """%.17g round-trips every double; NaN and infinity are refused with their position."""
    path = fuzz_dir / "array.csv"
    text = ",".join(f"c{j}" for j in range(array.shape[1])) + "\n" if header else ""
    text += "".join(",".join(f"{v:.17g}" for v in row) + "\n" for row in array)
    path.write_text(text)
    expected = _expected_numeric(array)
    got = _check_reader(path, expected)
    assert (got is None) == isinstance(expected, str)


def _as_float(cell):
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _expected_labels(path):
    """A label file as documented: the rows read as CSV (UTF-8, a byte-order mark dropped), blank
    rows skipped, a first line with no number a header when a later line has one, every cell
    stripped; the fragment of the refusal when nothing is left (a str)."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    if not rows:
        return "holds no values"
    if not any(map(_as_float, rows[0])) and any(all(map(_as_float, row)) for row in rows[1:]):
        rows = rows[1:]
    if not rows:
        return "has a header but no data"
    return np.char.strip(np.array([row[0].strip() for row in rows], dtype=str))  # NumPy drops trailing NULs


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cells=st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=6), min_size=1, max_size=6)
)
def test_fuzz_label_csv(fuzz_dir, cells):
    """Any text as a one-column label file: read back as written (stripped, blank rows and a
    header line dropped), or refused in one line naming the file when nothing is left."""
    path = fuzz_dir / "labels.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([[c] for c in cells])
    _check_reader(path, _expected_labels(path), numeric=False)
