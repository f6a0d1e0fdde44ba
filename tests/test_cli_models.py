"""The command line's model files and auxiliary variables (``nica/cli/_models.py``): a model
file records its format and nica's version and is inspected before it is unpickled; segment
labels and continuous values given as ``--label`` or an ``--aux`` file are read for the model
they are meant for.  Every bad input is one line on stderr and exit status 2."""

import os

import joblib
import numpy as np
import pytest
from support import N, assert_one_line_error, model_payload, run, write_bytes

import nica
from nica.cli import load_model

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture
def env(cli_env):
    """The session's files and tiny models (tests/conftest.py)."""
    return cli_env


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
        return model_payload(
            p, format="nica-model", format_version=1, version=newer, estimator=fitted
        ), f"written by nica {newer} but this is nica " + nica.__version__
    if case == "older_minor":
        return model_payload(p, format="nica-model", version="0.0.3", estimator=fitted), "written by nica 0.0.3"
    if case == "newer_format":
        return model_payload(
            p, format="nica-model", format_version=99, version=nica.__version__, estimator=fitted
        ), "uses model format 99"
    if case == "no_version":
        return model_payload(p, format="nica-model", estimator=fitted), "does not say which nica version"
    if case == "bad_version":
        return model_payload(p, format="nica-model", version="banana", estimator=fitted), "version tag 'banana'"
    if case == "not_an_estimator":
        return model_payload(
            p, format="nica-model", version=nica.__version__, estimator="hello"
        ), "not a nica estimator"
    if case == "unfitted":
        return model_payload(
            p, format="nica-model", version=nica.__version__, estimator=nica.NonlinearICA()
        ), "unfitted NonlinearICA"
    raise AssertionError(case)


MODEL_CASES = [
    "missing",
    "directory",
    "under_file",
    "empty",
    "data_file",
    "csv_file",
    "random_bytes",
    "other_pickle",
    "truncated",
    "truncated_header",
    "garbage_after_header",
    "newer_minor",
    "older_minor",
    "newer_format",
    "no_version",
    "bad_version",
    "not_an_estimator",
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
    model_payload(
        env / "patch.nica", format="nica-model", format_version=1, version=f"{major}.{minor}.99", estimator=fitted
    )
    code, _, err = run(["transform", env / "patch.nica", env / "X.npy", "-o", env / "o2.npy"], capsys)
    assert code == 0
    assert err.count("\n") == 1 and err.startswith("nica: warning: ")
    assert f"written by nica {major}.{minor}.99; this is nica {nica.__version__}" in err


def test_running_version_is_named(env, capsys, monkeypatch):
    written = nica.__version__
    monkeypatch.setattr(nica, "__version__", "7.3.1")
    code, out, err = run(["transform", env / "m.nica", env / "X.npy", "-o", env / "out.npy"], capsys)
    assert_one_line_error(
        code, out, err, f"written by nica {written} but this is nica 7.3.1", "refit the model with nica 7.3.1"
    )


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
