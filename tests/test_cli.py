"""The ``nica`` command line: round trips through files, clear one-line errors, the demo."""

import subprocess
import sys

import numpy as np
import pytest

import nica
from nica.cli import load_model, main
from nica.datasets import make_segmented_mixture

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


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


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("aux", [None, "u.csv", "labels.csv"])
def test_fit_transform_score_sample_round_trip(files, capsys, aux):
    d, data = files
    model_path = d / f"model_{aux}.joblib"
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
        S = np.loadtxt(out_path, delimiter=",") if ext == "csv" else (np.load(out_path)["X"] if ext == "npz" else np.load(out_path))
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


def test_fit_passes_the_gradient_option(files, capsys):
    d, data = files
    model_path = d / "model_equivariant.joblib"
    code, out, _ = run(["fit", d / "X.npy", "--model", model_path, "--max-iter", 3, "--n-layers", 2,
                        "--random-state", 0, "--gradient", "equivariant"], capsys)
    assert code == 0 and "fitted" in out
    model = load_model(model_path)
    assert model.gradient == "equivariant"
    direct = nica.NonlinearICA(n_layers=2, max_iter=3, random_state=0, gradient="equivariant").fit(data.X_train)
    relative = nica.NonlinearICA(n_layers=2, max_iter=3, random_state=0, gradient="relative").fit(data.X_train)
    np.testing.assert_allclose(model.transform(data.X_train), direct.transform(data.X_train), rtol=1e-12, atol=1e-12)
    assert np.max(np.abs(model.transform(data.X_train) - relative.transform(data.X_train))) > 1e-6


def test_fit_passes_the_averaging(files, capsys):
    d, data = files
    model_path = d / "model_averaged.joblib"
    code, out, _ = run(["fit", d / "X.npy", "--model", model_path, "--max-iter", 3, "--n-layers", 2,
                        "--random-state", 0, "--averaging", 5], capsys)
    assert code == 0 and "fitted" in out
    model = load_model(model_path)
    assert model.averaging == 5   # over 5 epochs of 2 steps: averaging=0.5 would be the last step itself
    kw = dict(n_layers=2, max_iter=3, random_state=0)
    direct = nica.NonlinearICA(averaging=5.0, **kw).fit(data.X_train)
    last = nica.NonlinearICA(**kw).fit(data.X_train)   # "auto": the last iterate for NonlinearICA
    np.testing.assert_allclose(model.transform(data.X_train), direct.transform(data.X_train), rtol=1e-12, atol=1e-12)
    assert np.max(np.abs(model.transform(data.X_train) - last.transform(data.X_train))) > 1e-6


def test_fit_passes_the_contrastive_weight(files, capsys):
    d, data = files
    model_path = d / "model_mle.joblib"
    code, out, _ = run(["fit", d / "X.npy", "--aux", d / "u.csv", "--model", model_path, "--max-iter", 3,
                        "--n-layers", 2, "--random-state", 0, "--contrastive-weight", 0], capsys)
    assert code == 0 and "fitted" in out
    model = load_model(model_path)
    assert model.contrastive_weight == 0 and model.contrastive_weight_ == 0
    kw = dict(n_layers=2, max_iter=3, random_state=0)
    direct = nica.ConditionalNonlinearICA(contrastive_weight=0.0, **kw).fit(data.X_train, data.u_train)
    hybrid = nica.ConditionalNonlinearICA(**kw).fit(data.X_train, data.u_train)  # "auto": alpha = 2
    assert hybrid.contrastive_weight_ == 2.0
    np.testing.assert_allclose(model.transform(data.X_train), direct.transform(data.X_train), rtol=1e-12, atol=1e-12)
    assert np.max(np.abs(model.transform(data.X_train) - hybrid.transform(data.X_train))) > 1e-6


@pytest.mark.parametrize(
    "argv, message",
    [
        (["transform", "{d}/model_None.joblib", "{d}/missing.npy", "-o", "{d}/o.npy"], "no such file"),
        (["transform", "{d}/X.npy", "{d}/X.npy", "-o", "{d}/o.npy"], "not a nica model"),
        (["transform", "{d}/model_None.joblib", "{d}/bad.csv", "-o", "{d}/o.npy"], "non-numeric value 'x' in row 2, column 3"),
        (["transform", "{d}/model_None.joblib", "{d}/two.npy", "-o", "{d}/o.npy"], "has 2 features but the model was fitted on 3"),
        (["transform", "{d}/model_None.joblib", "{d}/cube.npy", "-o", "{d}/o.npy"], "must hold a 2-D array"),
        (["transform", "{d}/model_None.joblib", "{d}/X.txt", "-o", "{d}/o.npy"], "expected .npy, .npz or .csv"),
        (["transform", "{d}/model_None.joblib", "{d}/X.npy", "-o", "{d}/o.txt"], "unsupported output file"),
        (["fit", "{d}/X.npy", "--aux", "{d}/short.csv", "--model", "{d}/m.joblib"], "--aux has 2 rows"),
        (["fit", "{d}/nan.npy", "--model", "{d}/m.joblib"], "NaN"),
        (["fit", "{d}/X.npy", "--model", "{d}/m.joblib", "--contrastive-weight", "1"], "--contrastive-weight needs --aux"),
        (["score", "{d}/model_u.csv.joblib", "{d}/X.npy", "--aux", "{d}/unseen.csv"], "not seen during fit"),
        (["sample", "{d}/model_None.joblib", "-n", "0", "-o", "{d}/o.npy"], "n_samples must be a positive integer"),
    ],
)
def test_errors_are_one_clear_line(files, capsys, argv, message):
    d, data = files
    (d / "bad.csv").write_text("a,b,c\n1,2,3\n4,5,x\n")
    np.save(d / "two.npy", np.ones((4, 2)))
    np.save(d / "cube.npy", np.ones((2, 2, 2)))
    (d / "X.txt").write_text("1 2 3\n")
    (d / "short.csv").write_text("0\n1\n")
    np.save(d / "nan.npy", np.full((5, 3), np.nan))
    np.savetxt(d / "unseen.csv", np.full(data.X_train.shape[0], 99), fmt="%d")
    for needed in ["model_None.joblib", "model_u.csv.joblib"]:
        if not (d / needed).exists():
            aux = [] if needed == "model_None.joblib" else ["--aux", str(d / "u.csv")]
            assert main(["fit", str(d / "X.npy"), "--model", str(d / needed), "--max-iter", "2"] + aux) == 0
    capsys.readouterr()
    code, out, err = run([a.format(d=d) for a in argv], capsys)
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and err.startswith("nica: error: ")
    assert "Traceback" not in err + out


def test_console_entry_point_and_demo(tmp_path):
    figure = tmp_path / "demo.png"
    proc = subprocess.run([sys.executable, "-m", "nica", "demo", "--quick", "--figure", str(figure)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "held-out MCC" in proc.stdout and "FastICA" in proc.stdout
    mcc = float(proc.stdout.split("ConditionalNonlinearICA:")[1].split()[0])
    fast = float(proc.stdout.split("FastICA:")[1].split()[0])
    assert mcc > fast  # even the quick demo beats linear ICA on a nonlinear mixture
    assert figure.stat().st_size > 10_000
    bad = subprocess.run([sys.executable, "-m", "nica", "transform", "a.joblib", "b.npy", "-o", "c.npy"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("nica: error:") and "Traceback" not in bad.stderr
