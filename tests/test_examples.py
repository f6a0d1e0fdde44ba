"""Run every script in examples/ in --quick mode, as a user would, and check what it reports.

Each example runs in a fresh interpreter (``sys.executable``) with ``--out-dir`` set to a
temporary folder; the tests check the PNGs it writes and that the numbers it prints are sane.
"""

import importlib.util
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
NUMBER = r"(-?\d+\.\d+)"

pytestmark = pytest.mark.slow


def run_example(name, out_dir):
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py"), "--quick", "--out-dir", str(out_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=EXAMPLES.parent,
    )
    assert result.returncode == 0, f"{name} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def find_numbers(pattern, text):
    """The groups of the first line matching ``pattern``, as floats."""
    match = re.search(pattern, text, flags=re.MULTILINE)
    assert match is not None, f"pattern {pattern!r} not found in:\n{text}"
    return tuple(float(group) for group in match.groups())


def assert_pngs(out_dir, names):
    for name in names:
        path = out_dir / name
        assert path.is_file(), f"{path} was not written"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"


def test_linear_ica(tmp_path):
    out = run_example("linear_ica", tmp_path)
    assert_pngs(tmp_path, ["linear_ica_sources.png", "linear_ica_training.png"])
    mcc_nica, amari_nica = find_numbers(rf"^nica\s+{NUMBER}\s+{NUMBER}$", out)
    mcc_fastica, amari_fastica = find_numbers(rf"^FastICA\s+{NUMBER}\s+{NUMBER}$", out)
    assert mcc_nica > 0.95
    assert 0.0 <= amari_nica < 0.1
    assert mcc_fastica > 0.95
    assert 0.0 <= amari_fastica < 0.1


def test_toy_densities(tmp_path):
    out = run_example("toy_densities", tmp_path)
    assert_pngs(tmp_path, ["toy_densities.png"])
    for name in ("two_moons", "mixture_of_gaussians", "sine"):
        (held_out,) = find_numbers(rf"^{name}\s+\d+\s+\d+\.\d+\s+{NUMBER}$", out)
        # Standardised 2-D data: a standard Gaussian scores -2.84 nats; the fits must not be
        # far worse, even in the quick mode.
        assert -4.0 < held_out < 1.0, (name, held_out)


def test_nonlinear_walkthrough(tmp_path):
    out = run_example("nonlinear_walkthrough", tmp_path)
    assert_pngs(tmp_path, ["nonlinear_walkthrough_sources.png", "nonlinear_walkthrough_training.png"])
    (mcc_nica,) = find_numbers(rf"^\s*NonlinearICA\s+{NUMBER}$", out)
    (mcc_fastica,) = find_numbers(rf"^\s*FastICA\s+{NUMBER}$", out)
    assert 0.7 < mcc_nica <= 1.0
    assert 0.5 < mcc_fastica <= 1.0
    assert "not identifiable" in out


def test_identifiability_walkthrough(tmp_path):
    out = run_example("identifiability_walkthrough", tmp_path)
    assert_pngs(tmp_path, ["identifiability_sources.png", "identifiability_scales.png"])
    mcc, fast = find_numbers(rf"ConditionalNonlinearICA: {NUMBER}\s+FastICA: {NUMBER}", out)
    assert mcc > fast and mcc > 0.85
    line = next(row for row in out.splitlines() if row.startswith("correlation of learned"))
    correlations = [float(v) for v in line.split(":")[1].split(",")]
    assert min(correlations) > 0.8  # the per-segment scales are recovered


# examples/real_signals.py, when its data package is installed


def daphnet_available():
    spec = importlib.util.find_spec("aeon")
    if spec is None or not spec.submodule_search_locations:
        return False
    root = pathlib.Path(list(spec.submodule_search_locations)[0])
    return (root / "datasets" / "data" / "Daphnet_S06R02E0" / "S06R02E0.csv").is_file()


@pytest.mark.slow
@pytest.mark.skipif(
    not daphnet_available(), reason='needs the Daphnet recording shipped in aeon: pip install "aeon>=1.0,<1.7"'
)
def test_real_signals_example(tmp_path):
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "real_signals.py"), "--quick",
         "--out-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300, cwd=EXAMPLES.parent,
    )  # fmt: skip
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    path = tmp_path / "real_signals.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = result.stdout
    match = re.search(r"^data\s+(\d+) samples x (\d+) channels", out, flags=re.MULTILINE)
    assert match is not None and match.groups() == ("7040", "9"), out
    # Every density model's held-out log p(x), and log p(x | u) for the models of u, in one unit:
    # the baselines beside the two nica models.
    (gaussian,) = find_numbers(rf"^Gaussian \(full covariance\)\s+-\s+\d+\.\d\s+{NUMBER}\s+-$", out)
    (mixture,) = find_numbers(rf"^GaussianMixture \(\d+ components, BIC\)\s+-\s+\d+\.\d\s+{NUMBER}\s+-$", out)
    (per_segment,) = find_numbers(rf"^Gaussian per segment\s+-\s+\d+\.\d\s+-\s+{NUMBER}$", out)
    assert mixture >= gaussian - 1.0 and per_segment > gaussian  # the segments carry information
    for name in ("linear", "nonlinear"):
        marginal, conditional = find_numbers(
            rf"^{name}: ConditionalNonlinearICA\(.*\)\s+\d+\s+\S+\s+{NUMBER}\s+{NUMBER}$", out
        )
        assert np.isfinite(marginal) and np.isfinite(conditional) and conditional > gaussian
        (nonstationarity,) = find_numbers(rf"^{name}\s+nonstationarity\s+{NUMBER}", out)
        assert nonstationarity >= 0.0
        (accuracy,) = find_numbers(rf"^{name}\s+segment of a held-out sample identified.*: {NUMBER} %$", out)
        assert 0.0 <= accuracy <= 100.0
    assert re.search(r"^FastICA\s+nonstationarity( \d+\.\d{3}){9}$", out, flags=re.MULTILINE), out
    (mcc,) = find_numbers(rf"^nonlinear components matched to linear: .*\(MCC {NUMBER}\)$", out)
    assert 0.0 <= mcc <= 1.0
