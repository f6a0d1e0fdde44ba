"""Misuse of the ``nica`` command line: every bad input is one clear line on stderr and exit
status 2 (130 when interrupted), never a traceback and never a silently wrong result.

The bad inputs are tried per subcommand; docs/cli.rst ("Errors") tabulates them.
"""

import errno
import os
import subprocess
import sys
import zipfile

import joblib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import nica
import nica.cli._commands as cli_commands
import nica.cli._main as cli_main
from nica.cli import CLIError, load_model, main, read_array

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

N, D = 40, 3
FIT_FAST = ["--max-iter", "1", "--n-layers", "1", "--batch-size", "64", "--random-state", "0"]


# ---------------------------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Good files, and four tiny fitted models: plain, labels s0..s9, integer labels, continuous u."""
    d = tmp_path_factory.mktemp("misuse")
    rng = np.random.default_rng(0)
    X = rng.laplace(size=(N, D))
    np.save(d / "X.npy", X)
    np.savetxt(d / "X.csv", X, delimiter=",", fmt="%.17g")
    np.savetxt(d / "labels.csv", np.array([f"s{i % 10}" for i in range(N)]), fmt="%s")
    np.savetxt(d / "ints.csv", np.arange(N) % 4, fmt="%d")
    np.savetxt(d / "cont.csv", rng.normal(size=(N, 2)), delimiter=",", fmt="%.17g")
    for model, aux in [("m.nica", None), ("ms.nica", "labels.csv"), ("mi.nica", "ints.csv"),
                       ("mc.nica", "cont.csv")]:  # max_iter reached: a one-line warning each
        argv = ["fit", str(d / "X.npy"), "--model", str(d / model)] + FIT_FAST
        assert main(argv + ([] if aux is None else ["--aux", str(d / aux)])) == 0
    (d / "plain.txt").write_text("a regular file\n")
    (d / "adir").mkdir()
    return d


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, out, err, *fragments, status=2):
    assert code == status, (code, err)
    assert "Traceback" not in out + err
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), err
    assert lines[0].startswith("nica: error: ") or lines[0] == "nica: interrupted", err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def write_bytes(path, data):
    path.write_bytes(data)
    return path


def model_payload(path, **entries):
    """A model file with a chosen header (the layout save_model writes)."""
    joblib.dump(entries, path)
    return path


# ---------------------------------------------------------------------------------------------
# bad data files: the same cases for every subcommand that reads DATA


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
    "missing", "directory", "under_file", "empty", "truncated_npz", "corrupt_zip_member", "truncated_npy",
    "garbage_npy", "pickle_npy", "object_npy", "huge_header", "ndim3", "ndim0", "no_rows", "nan", "inf_csv",
    "longdouble_overflow", "complex", "text_npy", "structured", "datetime", "non_numeric_csv", "semicolon_csv",
    "ragged_csv", "header_only_csv", "latin1_csv", "nul_csv", "wrong_extension", "npz_no_X", "npz_bad_key",
    "npz_not_array", "npz_empty",
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


@pytest.mark.parametrize("command", ["transform", "inverse-transform", "score"])
def test_wrong_number_of_features(env, capsys, command):
    np.save(env / "two.npy", np.ones((5, 2)))
    code, out, err = run(data_argv(command, env, env / "two.npy"), capsys)
    assert_one_line_error(code, out, err, "has 2 features but the model was fitted on 3")


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


def test_npy_named_npz_is_read_by_content(env, capsys):
    np.save(env / "really_npy.npy", np.load(env / "X.npy"))
    os.replace(env / "really_npy.npy", env / "really_npy.npz")
    assert run(["transform", env / "m.nica", env / "really_npy.npz", "-o", env / "c.npy"], capsys)[0] == 0
    code, out, err = run(["transform", env / "m.nica", f"{env / 'really_npy.npz'}:X", "-o", env / "c.npy"], capsys)
    assert_one_line_error(code, out, err, "holds one array, not an archive")


# ---------------------------------------------------------------------------------------------
# bad model files


def make_bad_model(d, case):
    p = d / f"model_{case}.nica"
    good = (d / "m.nica").read_bytes()
    fitted = load_model(d / "m.nica")
    if case == "missing":
        return d / "missing.nica", "no such file"
    if case == "directory":
        (d / "dir.nica").mkdir(exist_ok=True)
        return d / "dir.nica", "is a directory"
    if case == "under_file":
        return d / "plain.txt" / "m.nica", "is a file, not a directory"
    if case == "empty":
        return write_bytes(p, b""), "is empty"
    if case == "data_file":
        return d / "X.npy", "is not a nica model file"
    if case == "csv_file":
        return d / "X.csv", "is not a nica model file"
    if case == "random_bytes":
        return write_bytes(p, np.random.default_rng(1).bytes(300)), "is not a nica model file"
    if case == "other_pickle":
        return model_payload(p, a=1, b=[2, 3]), "is not a nica model file"
    if case == "truncated":
        return write_bytes(p, good[: len(good) // 2]), "truncated or corrupt"
    if case == "truncated_header":
        return write_bytes(p, good[:40]), "truncated or corrupt"
    if case == "garbage_after_header":
        return write_bytes(p, good[:120] + b"\xff" * 200), "truncated or corrupt"
    if case == "newer_minor":
        major, minor = (int(part) for part in nica.__version__.split(".")[:2])
        newer = f"{major}.{minor + 1}.0"
        return model_payload(p, format="nica-model", format_version=1, version=newer, estimator=fitted), \
            f"written by nica {newer} but this is nica " + nica.__version__
    if case == "older_minor":
        return model_payload(p, format="nica-model", version="0.0.3", estimator=fitted), "written by nica 0.0.3"
    if case == "newer_format":
        return model_payload(p, format="nica-model", format_version=99, version=nica.__version__,
                             estimator=fitted), "uses model format 99"
    if case == "no_version":
        return model_payload(p, format="nica-model", estimator=fitted), "does not say which nica version"
    if case == "bad_version":
        return model_payload(p, format="nica-model", version="banana", estimator=fitted), "version tag 'banana'"
    if case == "not_an_estimator":
        return model_payload(p, format="nica-model", version=nica.__version__, estimator="hello"), \
            "not a nica estimator"
    if case == "unfitted":
        return model_payload(p, format="nica-model", version=nica.__version__, estimator=nica.NonlinearICA()), \
            "unfitted NonlinearICA"
    raise AssertionError(case)


MODEL_CASES = ["missing", "directory", "under_file", "empty", "data_file", "csv_file", "random_bytes",
               "other_pickle", "truncated", "truncated_header", "garbage_after_header", "newer_minor",
               "older_minor", "newer_format", "no_version", "bad_version", "not_an_estimator", "unfitted"]


def model_argv(command, d, model):
    if command == "score":
        return ["score", model, d / "X.npy"]
    if command == "sample":
        return ["sample", model, "-n", "3", "-o", d / "out.npy"]
    return [command, model, d / "X.npy", "-o", d / "out.npy"]


@pytest.mark.parametrize("command", ["transform", "inverse-transform", "score", "sample"])
@pytest.mark.parametrize("case", MODEL_CASES)
def test_bad_model_file(env, capsys, command, case):
    model, fragment = make_bad_model(env, case)
    code, out, err = run(model_argv(command, env, model), capsys)
    assert_one_line_error(code, out, err, fragment)
    assert not (env / "out.npy").exists()


def test_model_file_records_format_and_version(env):
    payload = joblib.load(env / "m.nica")
    assert payload["format"] == "nica-model"
    assert payload["format_version"] == 1
    assert payload["version"] == nica.__version__


def test_model_without_format_version_still_loads(env, capsys):
    """The layout written before the format revision was recorded still loads."""
    fitted = load_model(env / "m.nica")
    model_payload(env / "old_layout.nica", format="nica-model", version=nica.__version__, estimator=fitted)
    code, _, err = run(["transform", env / "old_layout.nica", env / "X.npy", "-o", env / "o1.npy"], capsys)
    assert code == 0 and err == ""
    np.testing.assert_array_equal(np.load(env / "o1.npy"), fitted.transform(np.load(env / "X.npy")))


def test_patch_version_difference_is_a_warning(env, capsys):
    fitted = load_model(env / "m.nica")
    major, minor = nica.__version__.split(".")[:2]
    model_payload(env / "patch.nica", format="nica-model", format_version=1, version=f"{major}.{minor}.99",
                  estimator=fitted)
    code, _, err = run(["transform", env / "patch.nica", env / "X.npy", "-o", env / "o2.npy"], capsys)
    assert code == 0
    assert err.count("\n") == 1 and err.startswith("nica: warning: ")
    assert f"written by nica {major}.{minor}.99; this is nica {nica.__version__}" in err


def test_running_version_is_named(env, capsys, monkeypatch):
    written = nica.__version__
    monkeypatch.setattr(nica, "__version__", "7.3.1")
    code, out, err = run(["transform", env / "m.nica", env / "X.npy", "-o", env / "out.npy"], capsys)
    assert_one_line_error(code, out, err, f"written by nica {written} but this is nica 7.3.1",
                          "refit the model with nica 7.3.1")


def test_a_file_that_is_not_a_model_is_never_unpickled(env, capsys):
    """A pickle without nica's header is refused before any of it runs."""
    import pickle

    class Boom:
        def __reduce__(self):
            return (os.mkdir, (str(env / "unpickled_dir"),))

    (env / "boom.nica").write_bytes(pickle.dumps({"estimator": Boom()}))
    code, out, err = run(["sample", env / "boom.nica", "-o", env / "out.npy"], capsys)
    assert_one_line_error(code, out, err, "is not a nica model file")
    assert not (env / "unpickled_dir").exists()


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
    for argv in (["transform", env / "m.nica", env / "X.npy", "-o", target],
                 ["fit", env / "X.npy", "--model", target.with_suffix(".nica")] + FIT_FAST,
                 ["demo", "--figure", target.with_suffix(".png")]):
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
# fit


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--model", "{d}/adir"], "is a directory"),
        (["--model", "{d}/plain.txt/m.nica"], "is a file, not a directory"),
        (["--model", "{d}/nowhere/m.nica"], "does not exist"),
        (["--model", "{d}/m.npy"], "names a data file"),
        (["--model", ""], "no model file given"),
        (["--model", "{d}/new.nica", "--aux", "{d}/short.csv"], "--aux has 2 rows"),
        (["--model", "{d}/new.nica", "--aux", "{d}/missing.csv"], "no such file"),
        (["--model", "{d}/new.nica", "--aux", "{d}/aux_nan.npy"], "NaN or infinity"),
        (["--model", "{d}/new.nica", "--aux", "{d}/aux_nan.csv"], "contains NaN or infinity (first at row 3)"),
        (["--model", "{d}/new.nica", "--aux", "{d}/aux_bytes.npy"], "not UTF-8 text"),
        (["--model", "{d}/new.nica", "--aux", "{d}/aux3d.npy"], "one value (or row of values) per sample"),
        (["--model", "{d}/new.nica", "--aux", "{d}/aux_complex.npy"], "complex"),
        (["--model", "{d}/new.nica", "--aux", "{d}/aux_empty.csv"], "is empty"),
        (["--model", "{d}/new.nica", "--aux", "{d}/aux_rows.npy"], "--aux has 41 rows"),
        (["--model", "{d}/new.nica", "--max-iter", "0"], "max_iter must be an integer >= 1"),
        (["--model", "{d}/new.nica", "--n-layers", "0"], "n_layers must be an integer >= 1"),
        (["--model", "{d}/new.nica", "--batch-size", "-4"], "batch_size must be an integer >= 1"),
        (["--model", "{d}/new.nica", "--learning-rate", "nan"], "learning_rate must be a finite number"),
        (["--model", "{d}/new.nica", "--learning-rate", "fast"], "invalid float value"),
        (["--model", "{d}/new.nica", "--random-state", "-1"], "between 0 and 4294967295"),
        (["--model", "{d}/new.nica", "--prior", "cauchy"], "invalid choice"),
        (["--model", "{d}/new.nica", "--whiten", "yes"], "invalid choice"),
        ([], "the following arguments are required: --model"),
    ],
)
def test_fit_misuse(env, capsys, extra, fragment):
    (env / "short.csv").write_text("0\n1\n")
    np.save(env / "aux_nan.npy", np.r_[np.nan, np.zeros(N - 1)])
    np.save(env / "aux3d.npy", np.zeros((N, 2, 2)))
    (env / "aux_nan.csv").write_text("0.5\n1.5\nnan\n" + "2.5\n" * (N - 3))
    np.save(env / "aux_bytes.npy", np.array([b"\xff\xfe", b"ok"] * (N // 2)))
    np.save(env / "aux_complex.npy", np.zeros(N, dtype=complex))
    (env / "aux_empty.csv").write_text("")
    np.save(env / "aux_rows.npy", np.zeros(N + 1))
    argv = ["fit", env / "X.npy", "--max-iter", "1", "--n-layers", "1"] + [a.format(d=env) for a in extra]
    code, out, err = run(argv, capsys)
    assert_one_line_error(code, out, err, fragment)
    assert not (env / "new.nica").exists()


def test_fit_refuses_to_overwrite_its_data(env, capsys):
    """--model naming the data (here through a symbolic link) is refused; the data survive."""
    np.save(env / "precious.npy", np.load(env / "X.npy"))
    (env / "alias.nica").symlink_to(env / "precious.npy")
    code, out, err = run(["fit", env / "precious.npy", "--model", env / "alias.nica"] + FIT_FAST, capsys)
    assert_one_line_error(code, out, err, "is the data file being read")
    np.testing.assert_array_equal(np.load(env / "precious.npy"), np.load(env / "X.npy"))
    code, out, err = run(["fit", env / "precious.npy", "--model", env / "precious.npy"] + FIT_FAST, capsys)
    assert_one_line_error(code, out, err, "names a data file")


def test_labels_that_name_the_same_integer_stay_distinct(env, capsys):
    """'1' and '01' are two labels, not one: they are kept as text, compared whole."""
    np.savetxt(env / "l01.csv", np.array(["1", "01", "2", "1"] * (N // 4)), fmt="%s")
    code, _, err = run(["fit", env / "X.npy", "--aux", env / "l01.csv", "--model", env / "m01.nica"] + FIT_FAST,
                       capsys)
    assert code == 0, err
    model = load_model(env / "m01.nica")
    assert model.classes_.tolist() == ["01", "1", "2"]
    code, _, err = run(["sample", env / "m01.nica", "--label", "01", "-n", "2", "--random-state", "0", "-o",
                        env / "d01.npy"], capsys)
    assert code == 0, err
    np.testing.assert_array_equal(np.load(env / "d01.npy"), model.sample(2, y="01", random_state=0))


def test_fit_reads_integer_labels_as_integers(env):
    model = load_model(env / "mi.nica")
    assert model.classes_.dtype.kind == "i" and model.classes_.tolist() == [0, 1, 2, 3]
    text = load_model(env / "ms.nica")
    assert text.classes_.tolist() == [f"s{k}" for k in range(10)]


# ---------------------------------------------------------------------------------------------
# sample: labels and counts


@pytest.mark.parametrize(
    "model, extra, fragment",
    [
        ("ms", ["--label", "s10"], "--label 's10' is not one of the model's 10 segment labels ('s0', 's1'"),
        ("ms", ["--label", "s1x"], "is not one of"),
        ("ms", ["--label", ""], "is not one of"),
        ("ms", ["--label", "S1"], "is not one of"),
        ("ms", ["--label", "s1", "--aux", "{d}/labels.csv"], "not allowed with argument"),
        ("ms", ["--aux", "{d}/unseen.csv"], "not seen during fit"),
        ("ms", ["--aux", "{d}/labels.csv", "-n", "7"], "leave -n out"),
        ("ms", ["--aux", "{d}/missing.csv"], "no such file"),
        ("mi", ["--label", "2.5"], "a number that is not an integer; the model's segment labels are integers"),
        ("mi", ["--label", "3.0"], "not an integer"),
        ("mi", ["--label", "1e0"], "not an integer"),
        ("mi", ["--label", "nan"], "not an integer"),
        ("mi", ["--label", "abc"], "is not an integer"),
        ("mi", ["--label", "4"], "--label '4' is not one of the model's 4 segment labels (0, 1, 2, 3)"),
        ("mi", ["--label", "99999999999999999999999"], "is not one of"),
        ("mi", ["--aux", "{d}/labels.csv"], "holds text labels but the model's segment labels are numbers"),
        ("mi", ["--aux", "{d}/halves.csv"], "non-integer values"),
        ("mc", ["--label", "0.5"], "has 1 value(s) but the model's auxiliary variable has 2 dimension(s)"),
        ("mc", ["--label", "0.5,abc"], "is not a number"),
        ("mc", ["--label", "0.5,inf"], "not finite"),
        ("mc", [], "the model's auxiliary variable is continuous"),
        ("mc", ["--aux", "{d}/labels.csv"], "non-numeric value 's0'"),
        ("m", ["--label", "1"], "the model has no auxiliary variable"),
        ("m", ["--aux", "{d}/ints.csv"], "the model has no auxiliary variable"),
        ("m", ["-n", "0"], "n_samples must be a positive integer; got '0'"),
        ("m", ["-n", "-5"], "n_samples must be a positive integer; got '-5'"),
        ("m", ["-n", "2.5"], "n_samples must be a positive integer; got '2.5'"),
        ("m", ["-n", "many"], "n_samples must be a positive integer"),
        ("m", ["-n", "1000000000000"], "out of memory: 1000000000000 samples × 3 features need about"),
        ("ms", ["-n", "1000000000000", "--label", "s1"], "out of memory"),
        ("m", ["--random-state", "-1"], "between 0 and 4294967295"),
        ("m", ["--random-state", "4294967296"], "between 0 and 4294967295"),
    ],
)
def test_sample_misuse(env, capsys, model, extra, fragment):
    np.savetxt(env / "unseen.csv", np.array(["s1", "s10", "s2"]), fmt="%s")
    np.savetxt(env / "halves.csv", np.array([0.5, 1.0]), fmt="%.1f")
    argv = ["sample", env / f"{model}.nica", "-o", env / "out.npy"] + [a.format(d=env) for a in extra]
    code, out, err = run(argv, capsys)
    assert_one_line_error(code, out, err, fragment)
    assert not (env / "out.npy").exists()


@pytest.mark.parametrize("model, label, value", [("ms", "s1", "s1"), ("ms", " s9 ", "s9"), ("mi", "3", 3),
                                                 ("mi", "+2", 2), ("mc", "0.5,-1", np.array([0.5, -1.0]))])
def test_sample_label_draws_from_that_segment(env, capsys, model, label, value):
    code, _, err = run(["sample", env / f"{model}.nica", "--label", label, "-n", "4", "--random-state", "3",
                        "-o", env / "draw.npy"], capsys)
    assert code == 0, err
    expected = load_model(env / f"{model}.nica").sample(4, y=value, random_state=3)
    np.testing.assert_array_equal(np.load(env / "draw.npy"), expected)


def test_sample_count_beyond_memory_is_refused_before_drawing(env, capsys, monkeypatch):
    monkeypatch.setattr(cli_commands, "_available_memory", lambda: 2**20)
    code, out, err = run(["sample", env / "m.nica", "-n", "100000", "-o", env / "out.npy"], capsys)
    assert_one_line_error(code, out, err, "out of memory", "GiB is available")
    monkeypatch.setattr(cli_commands, "_available_memory", lambda: None)  # unknown: no guess, the draw goes ahead
    code, _, err = run(["sample", env / "m.nica", "-n", "5", "-o", env / "five.npy"], capsys)
    assert code == 0 and np.load(env / "five.npy").shape == (5, D), err


def test_sample_aux_file_of_integer_labels_as_floats(env, capsys):
    """Integer labels written by np.savetxt's default format (3.000e+00) are the labels 3."""
    np.savetxt(env / "float_ints.csv", np.array([3.0, 0.0, 2.0]))
    code, _, err = run(["sample", env / "mi.nica", "--aux", env / "float_ints.csv", "--random-state", "1",
                        "-o", env / "d.npy"], capsys)
    assert code == 0, err
    expected = load_model(env / "mi.nica").sample(y=np.array([3, 0, 2]), random_state=1)
    np.testing.assert_array_equal(np.load(env / "d.npy"), expected)


# ---------------------------------------------------------------------------------------------
# score


@pytest.mark.parametrize(
    "model, extra, fragment",
    [
        ("ms", ["--aux", "{d}/short.csv"], "--aux has 2 rows but the data have 40"),
        ("ms", ["--aux", "{d}/unseen40.csv"], "not seen during fit: ['s10']"),
        ("ms", ["--aux", "{d}/auxdir.csv"], "is a directory"),
        ("mi", ["--aux", "{d}/labels.csv"], "holds text labels"),
        ("mc", [], "y is required"),
        ("mc", ["--aux", "{d}/ints.csv"], "1 auxiliary dimensions but the model was fitted with 2"),
        ("m", ["--aux", "{d}/ints.csv"], "--aux given but the model has no auxiliary variable"),
        ("m", ["-o", "{d}/ll.txt"], "unsupported output file"),
        ("m", ["--label", "s1"], "unrecognized arguments: --label s1"),
    ],
)
def test_score_misuse(env, capsys, model, extra, fragment):
    (env / "short.csv").write_text("0\n1\n")
    (env / "auxdir.csv").mkdir(exist_ok=True)
    np.savetxt(env / "unseen40.csv", np.array([f"s{10 if i == 5 else i % 10}" for i in range(N)]), fmt="%s")
    code, out, err = run(["score", env / f"{model}.nica", env / "X.npy"] + [a.format(d=env) for a in extra],
                         capsys)
    assert_one_line_error(code, out, err, fragment)


def test_score_aux_labels_compared_whole(env, capsys):
    """Labels are matched on their full text: 's1' and 's10' are different segments."""
    code, out, err = run(["score", env / "ms.nica", env / "X.npy", "--aux", env / "labels.csv", "-o",
                          env / "ll.npy"], capsys)
    assert code == 0, err
    labels = np.array([f"s{i % 10}" for i in range(N)])
    expected = load_model(env / "ms.nica").score_samples(np.load(env / "X.npy"), labels)
    np.testing.assert_array_equal(np.load(env / "ll.npy"), expected)


# ---------------------------------------------------------------------------------------------
# demo and the command line itself


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["demo", "--figure", "{d}/plain.txt/fig.png"], "is a file, not a directory"),
        (["demo", "--figure", "{d}/plain.txt/sub/fig.png"], "is a file, not a directory"),
        (["demo", "--figure", "{d}/adir"], "is a directory"),
        (["demo", "--figure", "{d}/fig_dir.png"], "is a directory"),
        (["demo", "--figure", "{d}/fig.xyz"], "unsupported --figure"),
        (["demo", "--figure", ""], "no figure file given"),
        (["demo", "--seed", "-1"], "between 0 and 4294967295"),
        (["demo", "--seed", "x"], "argument --seed"),
        (["demo", "--fast"], "unrecognized arguments: --fast"),
        ([], "the following arguments are required: command"),
        (["fitt"], "invalid choice: 'fitt'"),
        (["transform"], "the following arguments are required: model, data, -o/--output"),
        (["inverse-transform", "{d}/m.nica"], "the following arguments are required: data, -o/--output"),
        (["sample", "{d}/m.nica"], "the following arguments are required: -o/--output"),
        (["score"], "the following arguments are required: model, data"),
    ],
)
def test_demo_and_usage_misuse(env, capsys, argv, fragment):
    (env / "fig_dir.png").mkdir(exist_ok=True)
    code, out, err = run([a.format(d=env) for a in argv], capsys)
    assert_one_line_error(code, out, err, fragment)


def test_help_and_version_return_zero(capsys):
    code, out, _ = run(["--version"], capsys)
    assert code == 0 and out.strip() == f"nica {nica.__version__}"
    code, out, _ = run(["sample", "--help"], capsys)
    assert code == 0 and "--label" in out


# ---------------------------------------------------------------------------------------------
# failures of the machine, not the input: out of memory, interrupts, anything unforeseen


class _OOM(RuntimeError):
    pass


@pytest.mark.parametrize(
    "exc, fragment, status",
    [
        (MemoryError(), "out of memory", 2),
        (MemoryError("Unable to allocate 8.00 TiB"), "out of memory", 2),
        (_OOM("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1.00GiB.\nBufferAssignment:\n  x"),
         "out of memory (RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1.00GiB.)", 2),
        (RuntimeError("CUDA_ERROR_OUT_OF_MEMORY: out of memory"), "out of memory", 2),
        (KeyboardInterrupt(), "nica: interrupted", 130),
        (PermissionError(errno.EACCES, "Permission denied", "/x/y.npy"), "'/x/y.npy': Permission denied", 2),
        (OSError(errno.EIO, "Input/output error"), "Input/output error", 2),
        (ZeroDivisionError("division by zero"), "unexpected ZeroDivisionError: division by zero", 2),
        (KeyError("X"), "unexpected KeyError", 2),
        (ValueError("a\nmulti-line\n\nmessage"), "a multi-line message", 2),
        (BrokenPipeError(errno.EPIPE, "Broken pipe"), "output pipe was closed", 2),
    ],
)
def test_unforeseen_failures_are_one_line(env, capsys, monkeypatch, exc, fragment, status):
    def failing(args):
        raise exc

    monkeypatch.setattr(cli_main, "cmd_transform", failing)
    code, out, err = run(["transform", env / "m.nica", env / "X.npy", "-o", env / "out.npy"], capsys)
    assert_one_line_error(code, out, err, fragment, status=status)


def test_jax_out_of_memory_is_one_line(env, capsys, monkeypatch):
    import jax

    try:
        exc = jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 99 bytes.\ndetails")
    except TypeError:  # pragma: no cover - a jaxlib whose error type cannot be built by hand
        pytest.skip("JaxRuntimeError cannot be constructed here")

    def failing(model, X):
        raise exc

    monkeypatch.setattr(nica.NonlinearICA, "transform", failing)
    code, out, err = run(["transform", env / "m.nica", env / "X.npy", "-o", env / "out.npy"], capsys)
    assert_one_line_error(code, out, err, "out of memory", "--batch-size")


def test_interrupt_while_parsing_is_one_line(capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_main, "build_parser", interrupted)
    code, out, err = run(["transform", "a", "b", "-o", "c"], capsys)
    assert_one_line_error(code, out, err, "interrupted", status=130)


def test_console_script_failures_have_no_traceback(env):
    """The reported cases, through a real process: one line, status 2, no traceback."""
    np.savez(env / "whole.npz", X=np.load(env / "X.npy"))
    (env / "truncated.npz").write_bytes((env / "whole.npz").read_bytes()[:300])
    cases = [
        (["transform", env / "m.nica", env / "truncated.npz", "-o", env / "o.npy"], "corrupt or truncated"),
        (["demo", "--quick", "--figure", env / "plain.txt" / "demo.png"], "is a file, not a directory"),
        (["sample", env / "ms.nica", "--label", "s10", "-o", env / "o.npy"], "'s10' is not one of"),
    ]
    script = (
        "import sys\nfrom nica.cli import main\n"
        "argvs = [a.split('\\x1f') for a in sys.argv[1:]]\n"
        "for argv in argvs:\n    print('status', main(argv), flush=True)\n"
        "    sys.stderr.write('--\\n'); sys.stderr.flush()\n"
    )
    proc = subprocess.run([sys.executable, "-c", script] + ["\x1f".join(map(str, a)) for a, _ in cases],
                          capture_output=True, text=True, timeout=240)
    assert "Traceback" not in proc.stderr + proc.stdout
    chunks = proc.stderr.split("--\n")[:-1]
    assert proc.stdout.split() == ["status", "2"] * len(cases)
    for chunk, (_, fragment) in zip(chunks, cases):
        assert chunk.count("\n") == 1 and chunk.startswith("nica: error: ") and fragment in chunk, chunk
    entry = subprocess.run([sys.executable, "-m", "nica", "transform", env / "m.nica", env / "truncated.npz",
                            "-o", env / "o.npy"], capture_output=True, text=True, timeout=120)
    assert entry.returncode == 2 and "Traceback" not in entry.stderr
    assert entry.stderr.count("\n") == 1 and "corrupt or truncated" in entry.stderr


# ---------------------------------------------------------------------------------------------
# fuzzing the data readers


DTYPES = [np.float64, np.float32, np.float16, np.longdouble, np.int8, np.int64, np.uint16, np.bool_,
          np.complex64, "<U3", "|S2", "datetime64[s]", ">f4"]


def _expected_numeric(array):
    """What read_array should return for ``array`` saved to .npy, or None if it must refuse it."""
    if array.dtype.kind not in "biuf" or array.ndim not in (1, 2):
        return None
    out = array[:, None] if array.ndim == 1 else array
    if out.shape[0] == 0 or out.shape[1] == 0:
        return None
    if out.dtype.kind == "f":
        with np.errstate(over="ignore"):
            as64 = out.astype(np.float64)
        if not np.all(np.isfinite(as64)):
            return None
        if out.dtype.itemsize > 8:
            out = as64
    return out


def _check_reader(path, expected=None, numeric=True):
    try:
        got = read_array(str(path), numeric=numeric)
    except CLIError as exc:
        message = str(exc)
        assert "\n" not in message and message
        assert expected is None, f"refused a valid array: {message}"
        return None
    if numeric:
        assert got.ndim == 2 and got.dtype.kind in "biuf" and got.shape[0] > 0 and got.shape[1] > 0
        if got.dtype.kind == "f":
            assert np.all(np.isfinite(got))
    if expected is not None:
        assert got.dtype == expected.dtype and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)
    return got


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400), ext=st.sampled_from([".npy", ".npz", ".csv"]),
       prefix=st.sampled_from([b"", b"\x93NUMPY\x01\x00", b"PK\x03\x04", b"\x80\x04", b"1,2\n"]),
       numeric=st.booleans())
def test_fuzz_random_bytes(fuzz_dir, data, ext, prefix, numeric):
    path = fuzz_dir / f"bytes{ext}"
    path.write_bytes(prefix + data)
    _check_reader(path, numeric=numeric)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(array=st.sampled_from(DTYPES).flatmap(
    lambda dtype: hnp.arrays(dtype, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))))
def test_fuzz_random_arrays_npy(fuzz_dir, array):
    path = fuzz_dir / "array.npy"
    np.save(path, array)
    expected = _expected_numeric(array)
    got = _check_reader(path, expected)
    assert (got is None) == (expected is None)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(array=hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=4),
                        elements=st.floats(allow_nan=True, allow_infinity=True, width=64)),
       header=st.booleans())
def test_fuzz_random_arrays_csv(fuzz_dir, array, header):
    """%.17g round-trips every double; NaN and infinity are refused with their position."""
    path = fuzz_dir / "array.csv"
    text = ",".join(f"c{j}" for j in range(array.shape[1])) + "\n" if header else ""
    text += "".join(",".join(f"{v:.17g}" for v in row) + "\n" for row in array)
    path.write_text(text)
    expected = array if np.all(np.isfinite(array)) else None
    got = _check_reader(path, expected)
    assert (got is None) == (expected is None)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cells=st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=6),
                      min_size=1, max_size=6))
def test_fuzz_label_csv(fuzz_dir, cells):
    """Any text as a one-column label file: refused in one line, or read back as written."""
    path = fuzz_dir / "labels.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        import csv

        csv.writer(handle).writerows([[c] for c in cells])
    got = _check_reader(path, numeric=False)
    if got is not None:
        assert got.ndim in (1, 2) and got.shape[0] >= 1


def test_ctrl_c_during_a_fit(tmp_path):
    """A real SIGINT in the middle of fitting: 'nica: interrupted', status 130, no model file."""
    import signal
    import time

    np.save(tmp_path / "big.npy", np.random.default_rng(0).laplace(size=(100_000, 4)))
    # A child inherits an ignored SIGINT (as under a background shell job); a handled one is
    # reset to the default at exec, which Python turns into KeyboardInterrupt.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        err_file = open(tmp_path / "err.txt", "w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "nica", "fit", tmp_path / "big.npy", "--model", tmp_path / "big.nica",
             "--max-iter", "100000", "--verbose", "1"], stdout=subprocess.DEVNULL, stderr=err_file)
    finally:
        signal.signal(signal.SIGINT, previous)
    with err_file:
        deadline = time.monotonic() + 120
        while "NonlinearICA" not in (tmp_path / "err.txt").read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "err.txt").read_text()
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 130
    err = (tmp_path / "err.txt").read_text()
    assert "Traceback" not in err
    assert err.splitlines()[-1] == "nica: interrupted"
    assert not (tmp_path / "big.nica").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
