"""The command line's commands (``nica/cli/_commands.py``): ``fit``, ``transform``,
``inverse-transform``, ``score``, ``sample`` and ``demo`` give the results of the estimators
called in-process with the same options; checkpoints resume; what a command refuses (the
estimators' own errors included) is one line on stderr and exit status 2."""

import subprocess
import sys

import numpy as np
import pytest
from support import (
    FIT_FAST,
    D,
    assert_one_line_error,
    assert_same_fit,
    interrupt_after_checkpoints,
    run,
)

import nica
import nica.cli._commands as cli_commands
from nica.cli import load_model, main
from nica.datasets import make_segmented_mixture

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture
def env(cli_env):
    """The session's files and tiny models (tests/conftest.py)."""
    return cli_env


# ---------------------------------------------------------------------------------------------
# round trips through files, against the estimators in-process


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    data = make_segmented_mixture(n_segments=4, n_per_segment=150, n_components=3, n_layers=2, random_state=0)
    np.save(d / "X.npy", data.X_train)
    np.savez(d / "X.npz", X=data.X_train, other=np.zeros(3))
    np.savetxt(d / "X.csv", data.X_train, delimiter=",", header="a,b,c", comments="")
    np.savetxt(d / "u.csv", data.u_train, fmt="%d")
    np.savetxt(d / "labels.csv", np.array([f"s{k}" for k in data.u_train]), fmt="%s")
    return d, data


@pytest.mark.parametrize("aux", [None, "u.csv", "labels.csv"])
def test_fit_transform_score_sample_round_trip(files, capsys, aux):
    d, data = files
    model_path = d / f"model_{aux}.nica"
    argv = ["fit", d / "X.csv", "--model", model_path, "--max-iter", 3, "--n-layers", 2, "--random-state", 0]
    if aux:
        argv += ["--aux", d / aux]
    code, out, err = run(argv, capsys)
    assert code == 0 and "fitted" in out
    model = load_model(model_path)
    expected_type = nica.NonlinearICA if aux is None else nica.ConditionalNonlinearICA
    assert type(model) is expected_type
    # the same fit in-process gives the same model
    direct = expected_type(n_layers=2, max_iter=3, random_state=0)
    direct.fit(data.X_train, *([] if aux is None else [np.loadtxt(d / aux, dtype=str if aux == "labels.csv" else int)]))
    for ext in ["npy", "npz", "csv"]:
        out_path = d / f"S.{ext}"
        code, _, _ = run(["transform", model_path, d / f"X.{ext}", "-o", out_path], capsys)
        assert code == 0
        S = (
            np.loadtxt(out_path, delimiter=",")
            if ext == "csv"
            else (np.load(out_path)["X"] if ext == "npz" else np.load(out_path))
        )
        np.testing.assert_allclose(S, direct.transform(data.X_train), rtol=1e-12, atol=1e-12)
    code, _, _ = run(["inverse-transform", model_path, d / "S.npy", "-o", d / "Xback.npy"], capsys)
    assert code == 0
    np.testing.assert_allclose(np.load(d / "Xback.npy"), data.X_train, rtol=1e-8, atol=1e-8)
    score_argv = ["score", model_path, d / "X.npy", "-o", d / "ll.npy"] + (["--aux", d / aux] if aux else [])
    code, out, _ = run(score_argv, capsys)
    assert code == 0 and "mean log-likelihood" in out
    y = None if aux is None else np.loadtxt(d / aux, dtype=str if aux == "labels.csv" else int)
    expected_ll = direct.score_samples(data.X_train) if y is None else direct.score_samples(data.X_train, y)
    np.testing.assert_allclose(np.load(d / "ll.npy"), expected_ll, rtol=1e-12)
    sample_argv = ["sample", model_path, "-n", 5, "-o", d / "draws.npy", "--random-state", 1]
    if aux == "labels.csv":
        sample_argv += ["--label", "s2"]
    code, _, err = run(sample_argv, capsys)
    assert code == 0, err
    assert np.load(d / "draws.npy").shape == (5, 3)


def test_n_components_from_fit_to_inverse_transform(files, capsys):
    """``--n-components K``: K sources out of transform, K columns into inverse-transform (the
    projection the in-process model gives), a wrong width refused in one line."""
    d, data = files
    model_path = d / "model_reduced.nica"
    argv = ["fit", d / "X.npy", "--model", model_path, "--n-components", 2] + FIT_FAST
    assert run(argv, capsys)[0] == 0
    direct = nica.NonlinearICA(n_components=2, max_iter=1, n_layers=1, batch_size=64, random_state=0)
    direct.fit(data.X_train)
    assert run(["transform", model_path, d / "X.npy", "-o", d / "S2.npy"], capsys)[0] == 0
    np.testing.assert_allclose(np.load(d / "S2.npy"), direct.transform(data.X_train), rtol=1e-12, atol=1e-12)
    assert run(["inverse-transform", model_path, d / "S2.npy", "-o", d / "X2.npy"], capsys)[0] == 0
    np.testing.assert_allclose(np.load(d / "X2.npy"), direct.inverse_transform(np.load(d / "S2.npy")), atol=1e-12)
    assert_one_line_error(
        *run(["inverse-transform", model_path, d / "X.npy", "-o", d / "X3.npy"], capsys),
        "has 3 columns but the model has 2 sources",
    )
    assert_one_line_error(*run(argv[:4] + ["--n-components", 5] + FIT_FAST, capsys), "n_components=5 must be at most")


def test_fit_passes_the_gradient_option(files, capsys):
    d, data = files
    model_path = d / "model_equivariant.nica"
    code, out, _ = run(
        [
            "fit",
            d / "X.npy",
            "--model",
            model_path,
            "--max-iter",
            3,
            "--n-layers",
            2,
            "--random-state",
            0,
            "--gradient",
            "equivariant",
        ],
        capsys,
    )
    assert code == 0 and "fitted" in out
    model = load_model(model_path)
    assert model.gradient == "equivariant"
    direct = nica.NonlinearICA(n_layers=2, max_iter=3, random_state=0, gradient="equivariant").fit(data.X_train)
    relative = nica.NonlinearICA(n_layers=2, max_iter=3, random_state=0, gradient="relative").fit(data.X_train)
    np.testing.assert_allclose(model.transform(data.X_train), direct.transform(data.X_train), rtol=1e-12, atol=1e-12)
    assert np.max(np.abs(model.transform(data.X_train) - relative.transform(data.X_train))) > 1e-6


def test_fit_passes_the_averaging(files, capsys):
    d, data = files
    model_path = d / "model_averaged.nica"
    code, out, _ = run(
        [
            "fit",
            d / "X.npy",
            "--model",
            model_path,
            "--max-iter",
            3,
            "--n-layers",
            2,
            "--random-state",
            0,
            "--averaging",
            5,
        ],
        capsys,
    )
    assert code == 0 and "fitted" in out
    model = load_model(model_path)
    assert model.averaging == 5  # over 5 epochs of 2 steps: averaging=0.5 would be the last step itself
    kw = dict(n_layers=2, max_iter=3, random_state=0)
    direct = nica.NonlinearICA(averaging=5.0, **kw).fit(data.X_train)
    last = nica.NonlinearICA(**kw).fit(data.X_train)  # "auto": the last iterate for NonlinearICA
    np.testing.assert_allclose(model.transform(data.X_train), direct.transform(data.X_train), rtol=1e-12, atol=1e-12)
    assert np.max(np.abs(model.transform(data.X_train) - last.transform(data.X_train))) > 1e-6


def test_fit_passes_the_contrastive_weight(files, capsys):
    d, data = files
    model_path = d / "model_mle.nica"
    code, out, _ = run(
        [
            "fit",
            d / "X.npy",
            "--aux",
            d / "u.csv",
            "--model",
            model_path,
            "--max-iter",
            3,
            "--n-layers",
            2,
            "--random-state",
            0,
            "--contrastive-weight",
            0,
        ],
        capsys,
    )
    assert code == 0 and "fitted" in out
    model = load_model(model_path)
    assert model.contrastive_weight == 0 and model.contrastive_weight_ == 0
    kw = dict(n_layers=2, max_iter=3, random_state=0)
    direct = nica.ConditionalNonlinearICA(contrastive_weight=0.0, **kw).fit(data.X_train, data.u_train)
    hybrid = nica.ConditionalNonlinearICA(**kw).fit(data.X_train, data.u_train)  # "auto": alpha = 2
    assert hybrid.contrastive_weight_ == 2.0
    np.testing.assert_allclose(model.transform(data.X_train), direct.transform(data.X_train), rtol=1e-12, atol=1e-12)
    assert np.max(np.abs(model.transform(data.X_train) - hybrid.transform(data.X_train))) > 1e-6


@pytest.mark.parametrize("command", ["transform", "inverse-transform", "score"])
def test_wrong_number_of_features(env, capsys, command):
    np.save(env / "two.npy", np.ones((5, 2)))
    output = [] if command == "score" else ["-o", env / "out.npy"]
    code, out, err = run([command, env / "m.nica", env / "two.npy"] + output, capsys)
    expected = (  # inverse-transform reads one column per source
        "has 2 columns but the model has 3 sources"
        if command == "inverse-transform"
        else "has 2 features but the model was fitted on 3"
    )
    assert_one_line_error(code, out, err, expected)
    assert not (env / "out.npy").exists()


def test_fit_refuses_to_overwrite_its_data(env, capsys):
    """--model naming the data (here through a symbolic link) is refused; the data survive."""
    np.save(env / "precious.npy", np.load(env / "X.npy"))
    (env / "alias.nica").symlink_to(env / "precious.npy")
    code, out, err = run(["fit", env / "precious.npy", "--model", env / "alias.nica"] + FIT_FAST, capsys)
    assert_one_line_error(code, out, err, "is the data file being read")
    np.testing.assert_array_equal(np.load(env / "precious.npy"), np.load(env / "X.npy"))
    code, out, err = run(["fit", env / "precious.npy", "--model", env / "precious.npy"] + FIT_FAST, capsys)
    assert_one_line_error(code, out, err, "names a data file")


def test_sample_count_beyond_memory_is_refused_before_drawing(env, capsys, monkeypatch):
    monkeypatch.setattr(cli_commands, "_available_memory", lambda: 2**20)
    code, out, err = run(["sample", env / "m.nica", "-n", "100000", "-o", env / "out.npy"], capsys)
    assert_one_line_error(code, out, err, "out of memory", "GiB is available")
    monkeypatch.setattr(cli_commands, "_available_memory", lambda: None)  # unknown: no guess, the draw goes ahead
    code, _, err = run(["sample", env / "m.nica", "-n", "5", "-o", env / "five.npy"], capsys)
    assert code == 0 and np.load(env / "five.npy").shape == (5, D), err


# ---------------------------------------------------------------------------------------------
# what the commands refuse


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--model", "{d}/m.npy"], "names a data file"),
        (["--model", "{d}/new.nica", "--aux", "{d}/short.csv"], "--aux has 2 rows"),
        (["--model", "{d}/new.nica", "--aux", "{d}/aux_rows.npy"], "--aux has 41 rows"),
        (["--model", "{d}/new.nica", "--max-iter", "0"], "max_iter must be an integer in [1, 2147483647]"),
        (["--model", "{d}/new.nica", "--n-layers", "0"], "n_layers must be an integer >= 1"),
        (["--model", "{d}/new.nica", "--batch-size", "-4"], "batch_size must be an integer >= 1"),
        (["--model", "{d}/new.nica", "--learning-rate", "nan"], "learning_rate must be a finite number"),
        (["--model", "{d}/new.nica", "--contrastive-weight", "1"], "--contrastive-weight needs --aux"),
        (
            [
                "--model",
                "{d}/new.nica",
                "--aux",
                "{d}/ints.csv",
                "--contrastive-weight",
                "1",
                "--objective-term",
                "label_cross_entropy=1",
            ],
            "--objective-term and --contrastive-weight cannot be given together",
        ),
        (
            ["--model", "{d}/new.nica", "--aux", "{d}/ints.csv", "--checkpoint-every", "5"],
            "--checkpoint-every needs --checkpoint FILE",
        ),
        (["--model", "{d}/new.nica", "--checkpoint", "{d}/new.nica"], "--checkpoint and --model name the same file"),
        (["--model", "{d}/new.nica", "--checkpoint-every", "5"], "--checkpoint-every needs --checkpoint FILE"),
        (
            ["--model", "{d}/new.nica", "--resume", "{d}/X.npy"],
            "X.npy' is not a nica estimator file; nica.save, 'nica fit --model' and checkpoint_path write those",
        ),
        (["--model", "{d}/new.nica", "--resume", "{d}/missing.nica"], "no such file"),
        (["--model", "{d}/new.nica", "--resume", "{d}/ms.nica"], "the model was fitted with --aux"),
    ],
)
def test_fit_misuse(env, capsys, extra, fragment):
    (env / "short.csv").write_text("0\n1\n")
    np.save(env / "aux_rows.npy", np.zeros(41))
    argv = ["fit", env / "X.npy", "--max-iter", "1", "--n-layers", "1"] + [a.format(d=env) for a in extra]
    code, out, err = run(argv, capsys)
    assert_one_line_error(code, out, err, fragment)
    assert not (env / "new.nica").exists() and not (env / "ck.nica").exists()


def test_a_checkpoint_linked_to_the_model_file_is_the_same_file(env, tmp_path, capsys):
    (tmp_path / "ck.nica").symlink_to(tmp_path / "out.nica")  # a link to the model file to be written
    argv = ["fit", env / "X.npy", "--model", tmp_path / "out.nica", "--checkpoint", tmp_path / "ck.nica"]
    code, out, err = run(argv, capsys)
    assert_one_line_error(code, out, err, "--checkpoint and --model name the same file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.nica"]


@pytest.mark.parametrize(
    "model, extra, fragment",
    [
        ("ms", ["--aux", "{d}/unseen.csv"], "not seen during fit"),
        ("ms", ["--aux", "{d}/labels.csv", "-n", "7"], "leave -n out"),
        ("mc", [], "the model's auxiliary variable is continuous"),
        ("m", ["--label", "1"], "the model has no auxiliary variable"),
        ("m", ["--aux", "{d}/ints.csv"], "the model has no auxiliary variable"),
        ("m", ["-n", "1000000000000"], "out of memory: 1000000000000 samples × 3 features need about"),
        ("ms", ["-n", "1000000000000", "--label", "s1"], "out of memory"),
    ],
)
def test_sample_misuse(env, capsys, model, extra, fragment):
    np.savetxt(env / "unseen.csv", np.array(["s1", "s10", "s2"]), fmt="%s")
    argv = ["sample", env / f"{model}.nica", "-o", env / "out.npy"] + [a.format(d=env) for a in extra]
    code, out, err = run(argv, capsys)
    assert_one_line_error(code, out, err, fragment)
    assert not (env / "out.npy").exists()


@pytest.mark.parametrize(
    "model, extra, fragment",
    [
        ("ms", ["--aux", "{d}/unseen40.csv"], "not seen during fit: ['s10']"),
        ("mc", [], "y is required"),
        ("mc", ["--aux", "{d}/ints.csv"], "1 auxiliary dimensions but the model was fitted with 2"),
        ("m", ["--aux", "{d}/ints.csv"], "--aux given but the model has no auxiliary variable"),
    ],
)
def test_score_misuse(env, capsys, model, extra, fragment):
    np.savetxt(env / "unseen40.csv", np.array([f"s{10 if i == 5 else i % 10}" for i in range(40)]), fmt="%s")
    code, out, err = run(["score", env / f"{model}.nica", env / "X.npy"] + [a.format(d=env) for a in extra], capsys)
    assert_one_line_error(code, out, err, fragment)


def test_demo_refuses_a_figure_format_matplotlib_cannot_write(env, capsys):
    code, out, err = run(["demo", "--figure", env / "fig.xyz"], capsys)
    assert_one_line_error(code, out, err, "unsupported --figure", ".png")


# ---------------------------------------------------------------------------------------------
# checkpoints


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(0)
    S = rng.laplace(size=(600, 3))
    H = S @ rng.uniform(-1, 1, (3, 3)).T
    return np.where(H > 0, H, 0.2 * H) @ rng.uniform(-1, 1, (3, 3)).T


def test_cli_fit_checkpoint_and_resume(X, tmp_path, capsys, monkeypatch):
    np.save(tmp_path / "X.npy", X)
    options = [
        "--n-layers",
        "2",
        "--max-iter",
        "6",
        "--batch-size",
        "64",
        "--learning-rate",
        "3e-3",
        "--random-state",
        "0",
    ]
    assert main(["fit", str(tmp_path / "X.npy"), "--model", str(tmp_path / "full.nica")] + options) == 0
    full = load_model(tmp_path / "full.nica")

    interrupt_after_checkpoints(monkeypatch, 1)
    code = main(
        [
            "fit",
            str(tmp_path / "X.npy"),
            "--model",
            str(tmp_path / "m.nica"),
            "--checkpoint",
            str(tmp_path / "ckpt.nica"),
            "--checkpoint-every",
            "3",
        ]
        + options
    )
    monkeypatch.undo()
    assert code == 130 and not (tmp_path / "m.nica").exists()
    assert nica.load(tmp_path / "ckpt.nica").n_iter_ == 3
    capsys.readouterr()
    assert (
        main(
            [
                "fit",
                str(tmp_path / "X.npy"),
                "--resume",
                str(tmp_path / "ckpt.nica"),
                "--model",
                str(tmp_path / "m.nica"),
            ]
        )
        == 0
    )
    assert "in 6 epochs" in capsys.readouterr().out
    assert_same_fit(load_model(tmp_path / "m.nica"), full)

    # a model file resumes too (a warm start: max_iter more epochs)
    assert (
        main(
            [
                "fit",
                str(tmp_path / "X.npy"),
                "--resume",
                str(tmp_path / "full.nica"),
                "--model",
                str(tmp_path / "more.nica"),
                "--max-iter",
                "2",
            ]
        )
        == 0
    )
    assert load_model(tmp_path / "more.nica").n_iter_ == 8


# ---------------------------------------------------------------------------------------------
# the demo, through the installed entry point


def test_the_demo_beats_linear_ica_and_writes_its_figure(tmp_path):
    figure = tmp_path / "demo.png"
    proc = subprocess.run(
        [sys.executable, "-m", "nica", "demo", "--quick", "--figure", str(figure)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "held-out MCC" in proc.stdout and "FastICA" in proc.stdout
    mcc = float(proc.stdout.split("ConditionalNonlinearICA:")[1].split()[0])
    fast = float(proc.stdout.split("FastICA:")[1].split()[0])
    assert mcc > fast  # even the quick demo beats linear ICA on a nonlinear mixture
    assert figure.stat().st_size > 10_000
