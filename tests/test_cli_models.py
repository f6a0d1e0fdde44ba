"""The command line's model files and auxiliary variables (``nica/cli/_models.py``): a model
file is nica's file format (``nica.save``), read without unpickling anything, and refused with
one clear line when it is not such a file (tests/test_persistence.py tries the format itself);
segment labels and continuous values given as ``--label`` or an ``--aux`` file are read for the
model they are meant for.  Every bad input is one line on stderr and exit status 2."""

import json
import os
import pickle

import joblib
import numpy as np
import pytest
from support import N, assert_one_line_error, run, write_bytes

import nica
from nica._src import persistence
from nica.cli import load_model

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture
def env(cli_env):
    """The session's files and tiny models (tests/conftest.py)."""
    return cli_env


def with_header(source, target, **changes):
    """A copy of the model file ``source`` at ``target`` with fields of its header changed."""
    with np.load(source, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    header = json.loads(arrays["__header__"].tobytes())
    header.update(changes)
    arrays["__header__"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez(target, **arrays)
    os.replace(f"{target}.npz", target)  # np.savez adds .npz to a name without it
    return target


def old_model_file(path, estimator, **entries):
    """A model file as earlier nica versions wrote it: a joblib pickle of a dict."""
    joblib.dump(
        {"format": "nica-model", "format_version": 1, "version": "0.2.0", "estimator": estimator, **entries}, path
    )
    return path


# ---------------------------------------------------------------------------------------------
# bad model files


PICKLED = (
    "is a pickle (such as a model file or checkpoint of an earlier nica, or a joblib file), not a nica "
    "estimator file: nica no longer unpickles models and checkpoints, because unpickling runs code stored in "
    "the file. If you trust the file (you wrote it), convert it once in Python: nica.save(nica.load("
)


def make_bad_model(d, case):
    p = d / f"model_{case}.nica"
    good = (d / "m.nica").read_bytes()
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
        return d / "X.npy", f"model file '{d}/X.npy' is not a nica estimator file; nica.save, 'nica fit --model'"
    if case == "data_archive":
        np.savez(d / "X_archive.npz", X=np.zeros((3, 3)))
        return d / "X_archive.npz", "is not a nica estimator file (a NumPy archive without nica's header)"
    if case == "csv_file":
        return d / "X.csv", "is not a nica estimator file"
    if case == "random_bytes":
        return write_bytes(p, np.random.default_rng(1).bytes(300)), "is not a nica estimator file"
    if case == "old_model_file":
        return old_model_file(p, load_model(d / "m.nica")), f"model file '{p}' {PICKLED}'{p}', allow_pickle=True)"
    if case == "other_pickle":
        return write_bytes(p, pickle.dumps({"a": 1})), PICKLED
    if case == "compressed_joblib":
        joblib.dump({"a": 1}, p, compress=3)
        return p, "is a compressed joblib file (a pickle), not a nica estimator file"
    if case == "truncated":
        return write_bytes(p, good[: len(good) // 2]), "is truncated or corrupt (BadZipFile"
    if case == "truncated_header":
        return write_bytes(p, good[:40]), "is truncated or corrupt (BadZipFile"
    if case == "garbage_after_header":
        return write_bytes(p, good[:120] + b"\xff" * 200), "is truncated or corrupt"
    if case == "newer_minor":
        major, minor = (int(part) for part in nica.__version__.split(".")[:2])
        newer = f"{major}.{minor + 1}.0"
        return with_header(d / "m.nica", p, nica_version=newer), (
            f"was written by nica {newer}, newer than this nica {nica.__version__}: upgrade nica to read it"
        )
    if case == "newer_format":
        return with_header(d / "m.nica", p, format_version=99), (
            f"is in nica estimator format 99, written by nica {nica.__version__}; this is nica "
            f"{nica.__version__}, which reads format 1: upgrade nica to read it"
        )
    if case == "bad_version":
        return with_header(d / "m.nica", p, nica_version="banana"), "nica_version 'banana' is not a version"
    if case == "other_class":
        return with_header(d / "m.nica", p, **{"class": "str"}), (
            "holds a 'str'; nica reads only NonlinearICA and ConditionalNonlinearICA"
        )
    if case == "unfitted":
        nica.save(nica.NonlinearICA(), p)
        return p, f"model file '{p}' holds an unfitted NonlinearICA"
    raise AssertionError(case)


MODEL_CASES = [
    "missing",
    "directory",
    "under_file",
    "empty",
    "data_file",
    "data_archive",
    "csv_file",
    "random_bytes",
    "old_model_file",
    "other_pickle",
    "compressed_joblib",
    "truncated",
    "truncated_header",
    "garbage_after_header",
    "newer_minor",
    "newer_format",
    "bad_version",
    "other_class",
    "unfitted",
]


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
    assert persistence.file_kind(env / "m.nica") == "npz"
    with np.load(env / "m.nica", allow_pickle=False) as archive:
        header = json.loads(archive["__header__"].tobytes())
    assert header["format"] == "nica-estimator"
    assert header["format_version"] == 1
    assert header["nica_version"] == nica.__version__
    assert header["class"] == "NonlinearICA"


def test_an_old_model_file_converts_as_its_refusal_says(env, capsys):
    """The refusal names the conversion; the converted file gives what the old one held."""
    fitted = load_model(env / "m.nica")
    old = old_model_file(env / "old.nica", fitted)
    code, out, err = run(["transform", old, env / "X.npy", "-o", env / "o0.npy"], capsys)
    assert_one_line_error(code, out, err, f"nica.save(nica.load('{old}', allow_pickle=True), 'model.nica')")
    nica.save(nica.load(old, allow_pickle=True), env / "converted.nica")
    code, _, err = run(["transform", env / "converted.nica", env / "X.npy", "-o", env / "o0.npy"], capsys)
    assert code == 0 and err == ""
    np.testing.assert_array_equal(np.load(env / "o0.npy"), fitted.transform(np.load(env / "X.npy")))


@pytest.mark.parametrize("written", ["0.1.0", "0.2.99", "0.0.3"])
def test_a_file_of_an_older_or_patch_release_loads(env, capsys, written):
    """The format has its own version: a file of the same format loads whatever patch release or
    older nica wrote it."""
    with_header(env / "m.nica", env / f"v{written}.nica", nica_version=written)
    code, _, err = run(["transform", env / f"v{written}.nica", env / "X.npy", "-o", env / "o1.npy"], capsys)
    assert code == 0 and err == ""
    np.testing.assert_array_equal(np.load(env / "o1.npy"), load_model(env / "m.nica").transform(np.load(env / "X.npy")))


def test_running_version_is_named(env, capsys, monkeypatch):
    monkeypatch.setattr(persistence, "VERSION", "0.1.4")
    code, out, err = run(["transform", env / "m.nica", env / "X.npy", "-o", env / "out.npy"], capsys)
    assert_one_line_error(
        code, out, err, f"was written by nica {nica.__version__}, newer than this nica 0.1.4: upgrade nica to read it"
    )


class Boom:
    """Unpickling this makes a folder: a file that runs code when unpickled."""

    def __init__(self, folder):
        self.folder = folder

    def __reduce__(self):
        return (os.mkdir, (str(self.folder),))


def test_a_pickle_is_never_unpickled(env, capsys):
    """Whatever it holds (here nica's old header), a pickle is refused before any of it runs."""
    boom = env / "unpickled_dir"
    old_model_file(env / "boom.nica", Boom(boom))
    code, out, err = run(["sample", env / "boom.nica", "-o", env / "out.npy"], capsys)
    assert_one_line_error(code, out, err, PICKLED)
    assert not boom.exists()


def test_an_object_array_is_never_unpickled(env, capsys):
    """An archive with nica's header and a pickled object array listed in it."""
    boom = env / "unpickled_dir_2"
    with np.load(env / "m.nica", allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    header = json.loads(arrays["__header__"].tobytes())
    header["arrays"].append("boom")
    arrays["__header__"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    with open(env / "boom_array.nica", "wb") as handle:
        np.savez(handle, boom=np.array([Boom(boom)], dtype=object), **arrays)
    code, out, err = run(["transform", env / "boom_array.nica", env / "X.npy", "-o", env / "out.npy"], capsys)
    assert_one_line_error(
        code,
        out,
        err,
        f"model file '{env}/boom_array.nica' holds pickled Python objects (an object array); nica never unpickles them",
    )
    assert not boom.exists()


# ---------------------------------------------------------------------------------------------
# labels and values for a model: --label and --aux


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (
            ["sample", "{d}/ms.nica", "--label", "s10"],
            "--label 's10' is not one of the model's 10 segment labels ('s0', 's1'",
        ),
        (["sample", "{d}/ms.nica", "--label", "s1x"], "--label 's1x' is not one of"),
        (["sample", "{d}/ms.nica", "--label", ""], "--label '' is not one of"),
        (["sample", "{d}/ms.nica", "--label", "S1"], "--label 'S1' is not one of"),
        (
            ["sample", "{d}/mi.nica", "--label", "2.5"],
            "a number that is not an integer; the model's segment labels are integers",
        ),
        (["sample", "{d}/mi.nica", "--label", "3.0"], "--label '3.0' is a number that is not an integer"),
        (["sample", "{d}/mi.nica", "--label", "1e0"], "--label '1e0' is a number that is not an integer"),
        (["sample", "{d}/mi.nica", "--label", "nan"], "--label 'nan' is a number that is not an integer"),
        (["sample", "{d}/mi.nica", "--label", "abc"], "--label 'abc' is not an integer"),
        (
            ["sample", "{d}/mi.nica", "--label", "4"],
            "--label '4' is not one of the model's 4 segment labels (0, 1, 2, 3)",
        ),
        (["sample", "{d}/mi.nica", "--label", "99999999999999999999999"], "is not one of"),
        (
            ["sample", "{d}/mi.nica", "--aux", "{d}/labels.csv"],
            "holds text labels but the model's segment labels are numbers",
        ),
        (
            ["sample", "{d}/mi.nica", "--aux", "{d}/halves.csv"],
            "holds non-integer values but the model's segment labels are integers",
        ),
        (
            ["sample", "{d}/mc.nica", "--label", "0.5"],
            "has 1 value(s) but the model's auxiliary variable has 2 dimension(s)",
        ),
        (["sample", "{d}/mc.nica", "--label", "0.5,abc"], "--label '0.5,abc' is not a number"),
        (["sample", "{d}/mc.nica", "--label", "0.5,inf"], "--label '0.5,inf' is not finite"),
        (["sample", "{d}/mc.nica", "--aux", "{d}/labels.csv"], "holds the non-numeric value 's0'"),
        (["score", "{d}/mi.nica", "{d}/X.npy", "--aux", "{d}/labels.csv"], "holds text labels"),
        (["score", "{d}/ms.nica", "{d}/X.npy", "--aux", "{d}/short.csv"], "--aux has 2 rows but the data have 40"),
    ],
)
def test_labels_and_values_that_do_not_fit_the_model(env, capsys, argv, fragment):
    np.savetxt(env / "halves.csv", np.array([0.5, 1.0]), fmt="%.1f")
    (env / "short.csv").write_text("0\n1\n")
    if argv[0] == "sample":
        argv = argv + ["-o", "{d}/out.npy"]
    code, out, err = run([a.format(d=env) for a in argv], capsys)
    assert_one_line_error(code, out, err, fragment)
    assert not (env / "out.npy").exists()


@pytest.mark.parametrize(
    "model, label, value",
    [
        ("ms", "s1", "s1"),
        ("ms", " s9 ", "s9"),
        ("mi", "3", 3),
        ("mi", "+2", 2),
        ("mc", "0.5,-1", np.array([0.5, -1.0])),
    ],
)
def test_sample_label_draws_from_that_segment(env, capsys, model, label, value):
    code, _, err = run(
        ["sample", env / f"{model}.nica", "--label", label, "-n", "4", "--random-state", "3", "-o", env / "draw.npy"],
        capsys,
    )
    assert code == 0, err
    expected = load_model(env / f"{model}.nica").sample(4, y=value, random_state=3)
    np.testing.assert_array_equal(np.load(env / "draw.npy"), expected)


def test_sample_aux_file_of_integer_labels_as_floats(env, capsys):
    """Integer labels written by np.savetxt's default format (3.000e+00) are the labels 3."""
    np.savetxt(env / "float_ints.csv", np.array([3.0, 0.0, 2.0]))
    code, _, err = run(
        ["sample", env / "mi.nica", "--aux", env / "float_ints.csv", "--random-state", "1", "-o", env / "d.npy"], capsys
    )
    assert code == 0, err
    expected = load_model(env / "mi.nica").sample(y=np.array([3, 0, 2]), random_state=1)
    np.testing.assert_array_equal(np.load(env / "d.npy"), expected)


def test_score_aux_labels_compared_whole(env, capsys):
    """Labels are matched on their full text: 's1' and 's10' are different segments."""
    code, out, err = run(
        ["score", env / "ms.nica", env / "X.npy", "--aux", env / "labels.csv", "-o", env / "ll.npy"], capsys
    )
    assert code == 0, err
    labels = np.array([f"s{i % 10}" for i in range(N)])
    expected = load_model(env / "ms.nica").score_samples(np.load(env / "X.npy"), labels)
    np.testing.assert_array_equal(np.load(env / "ll.npy"), expected)
