"""Synthetic data sets: the segment-modulated nonlinear-ICA benchmark and 2-D toy densities.

Pure NumPy, independent of the JAX core. Rows are samples; a mixing matrix ``A`` acts on a
column vector as ``x = A s``, so a batch computes ``H = S @ A.T``.
"""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.datasets import make_moons
from sklearn.utils import Bunch, check_random_state

from nica._src._checks import check_count, check_int, check_real

__all__ = ["apply_mixing", "make_segmented_mixture", "make_toy_density"]

_SOURCES = ("laplace", "gaussian")
_TOY_DENSITIES = ("two_moons", "mixture_of_gaussians", "sine")
_TOY_DEFAULT_NOISE = {"two_moons": 0.05, "mixture_of_gaussians": 0.2, "sine": 0.1}

# The benchmark recipe (docs/theory.rst, 'The benchmark recipe'): a mixing matrix is accepted
# when its condition number is at most this percentile of the condition numbers of this many
# reference matrices drawn the same way.
_N_REFERENCE_MATRICES = 10_000
_CONDITION_PERCENTILE = 25.0
_REFERENCE_CHUNK_ENTRIES = 2**24  # bounds the memory of the batched condition numbers
_MAX_ENTRIES = 2**31 - 1  # the most entries of one array make_segmented_mixture builds


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


def apply_mixing(S, mixing, slope: float = 0.2, activation: str = "leaky_relu") -> np.ndarray:
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
    slope = check_real(slope, "slope", 0, owner="the mixing (an invertible leaky ReLU needs a positive slope)")
    activation = _check_mixing_activation(activation)
    H = _as_real_array(S, "S")
    if H.ndim != 2:
        raise ValueError(f"S must be 2-D with shape (n_samples, n_components), got an array of shape {H.shape}.")
    if isinstance(mixing, np.ndarray) and mixing.ndim == 2:
        raise TypeError("mixing must be a sequence of matrices (A_1, ..., A_L); wrap a single matrix in a list: [A].")
    if isinstance(mixing, (str, bytes)) or not hasattr(mixing, "__iter__"):
        raise TypeError(f"mixing must be a sequence of matrices (A_1, ..., A_L); got {type(mixing).__name__}.")
    matrices = [_as_real_array(A, f"mixing[{index}]") for index, A in enumerate(mixing)]
    if not matrices:
        raise ValueError("mixing must contain at least one matrix, got an empty sequence.")
    dim = H.shape[1]
    for index, A in enumerate(matrices):
        if A.shape != (dim, dim):
            raise ValueError(
                f"mixing[{index}] must have shape {(dim, dim)} to act on S with {dim} components, got shape {A.shape}."
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
) -> Bunch:
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
    n_segments = check_int(n_segments, "n_segments")
    n_per_segment = check_int(n_per_segment, "n_per_segment")
    n_components = check_int(n_components, "n_components")
    n_layers = check_int(n_layers, "n_layers")
    sizes = {
        "X_train": n_segments * n_per_segment * n_components,
        "mixing": n_layers * n_components * n_components,
    }
    too_big = {name: size for name, size in sizes.items() if size > _MAX_ENTRIES}
    if too_big:
        raise ValueError(
            f"make_segmented_mixture would allocate {too_big} entries (X_train: n_segments * n_per_segment * "
            f"n_components; mixing: n_layers * n_components**2); at most {_MAX_ENTRIES} per array are supported; "
            f"got n_segments={n_segments}, n_per_segment={n_per_segment}, n_components={n_components}, "
            f"n_layers={n_layers}."
        )
    if not isinstance(source, str) or source not in _SOURCES:
        raise ValueError(f"source must be one of {_SOURCES}, got {source!r}.")
    try:
        low, high = (float(v) for v in scale_range)
    except (TypeError, ValueError):
        raise ValueError(f"scale_range must be a pair of numbers (low, high), got {scale_range!r}.") from None
    if not (np.isfinite(low) and np.isfinite(high) and 0 < low < high):
        raise ValueError(f"scale_range must satisfy 0 < low < high (finite), got {scale_range!r}.")
    slope = check_real(slope, "slope", 0, owner="the mixing (an invertible leaky ReLU needs a positive slope)")
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


def make_toy_density(name: str, n_samples: int = 1000, *, noise: float | None = None, random_state=None) -> np.ndarray:
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
    n_samples = check_count(n_samples, "n_samples", minimum=2)
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
