"""Metrics for source recovery: the matching behind the mean correlation coefficient (strong and
weak, after CCA), source alignment and the Amari distance.

Pure NumPy/SciPy/scikit-learn, independent of the JAX core, so they can check the model from the
outside.
Rows are samples and columns are components everywhere.  The formulas are in docs/theory.rst,
section 'Metrics'.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import linear_sum_assignment
from scipy.stats import rankdata
from sklearn.cross_decomposition import CCA

from nica._src._checks import check_int, check_option, check_real

__all__ = [
    "check_scored",
    "SourceMatching",
    "align_sources",
    "amari_distance",
    "make_mcc_scorer",
    "match_sources",
    "mean_corr_coef",
    "weak_mcc",
    # module-public, for nica._src.disentanglement and nica._src.plotting
    "CORR_METHODS",
    "as_real_array",
    "check_finite",
    "check_paired_sources",
    "check_sources",
    "check_test_sources",
    "match_components",
]

CORR_METHODS = ("pearson", "spearman")


def as_real_array(x, name) -> np.ndarray:
    """Convert ``x`` to a float64 NumPy array, or raise a TypeError naming ``name``."""
    if x is None:
        raise TypeError(f"{name} must be an array of real numbers, got None.")
    arr = np.asarray(x)
    if arr.dtype.kind in "biuf":
        return arr.astype(np.float64, copy=False)
    if arr.dtype.kind == "O":
        try:
            return arr.astype(np.float64)
        except (TypeError, ValueError):
            pass
    raise TypeError(f"{name} must be an array of real numbers, got an array of dtype {arr.dtype}.")


def check_finite(arr, name):
    if not np.all(np.isfinite(arr)):
        n_bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name} must contain only finite values, got {n_bad} NaN or infinite entries.")


def check_sources(S, name) -> np.ndarray:
    """Validate one ``(n_samples, n_components)`` array of sources."""
    arr = as_real_array(S, name)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D with shape (n_samples, n_components), got an array of shape {arr.shape}.")
    if arr.shape[0] < 2:
        raise ValueError(f"{name} must have at least 2 samples (rows) to compute correlations, got shape {arr.shape}.")
    if arr.shape[1] < 1:
        raise ValueError(f"{name} must have at least 1 component (column), got shape {arr.shape}.")
    check_finite(arr, name)
    return arr


def check_paired_sources(S_true, S_est, names=("S_true", "S_est")) -> tuple[np.ndarray, np.ndarray]:
    """Validate two arrays of sources for the same samples (:func:`check_sources`, then the rows)."""
    S_true = check_sources(S_true, names[0])
    S_est = check_sources(S_est, names[1])
    if S_true.shape[0] != S_est.shape[0]:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same number of samples (rows), got {S_true.shape[0]} and "
            f"{S_est.shape[0]}."
        )
    return S_true, S_est


def check_test_sources(
    S_true, S_est, S_true_test, S_est_test, names=("S_true", "S_est")
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Validate a training pair and an optional held-out pair (both given or neither, with the
    training pair's numbers of columns); returns the four arrays, the last two None if absent."""
    S_true, S_est = check_paired_sources(S_true, S_est, names)
    test_names = (f"{names[0]}_test", f"{names[1]}_test")
    if (S_true_test is None) != (S_est_test is None):
        given, missing = test_names if S_est_test is None else test_names[::-1]
        raise ValueError(f"{given} was given but {missing} is None; give both held-out arrays or neither.")
    if S_true_test is None:
        return S_true, S_est, None, None
    S_true_test, S_est_test = check_paired_sources(S_true_test, S_est_test, test_names)
    for train, test, name, test_name in (
        (S_true, S_true_test, names[0], test_names[0]),
        (S_est, S_est_test, names[1], test_names[1]),
    ):
        if test.shape[1] != train.shape[1]:
            raise ValueError(
                f"{test_name} must have as many components (columns) as {name}, got {test.shape[1]} and "
                f"{train.shape[1]}."
            )
    return S_true, S_est, S_true_test, S_est_test


_SAFE_EXPONENT = 400  # magnitudes within 2**±400 square and sum without overflow or underflow


def _safe_exponents(arr, axis=None):
    """Exponents of the powers of two that bring ``arr`` (per column with ``axis=0``, kept as a
    row) within ``2**±400`` of 1 wherever its largest magnitude is beyond; 0 elsewhere."""
    peak = np.max(np.abs(arr), axis=axis, keepdims=axis is not None)
    exponent = np.frexp(np.where(peak > 0, peak, 1.0))[1]
    return np.where(np.abs(exponent) > _SAFE_EXPONENT, exponent, 0)


def _power_of_two_scaled(arr, axis=None):
    """``arr`` divided by a power of two near its largest magnitude (per column with ``axis=0``)
    wherever that magnitude is beyond ``2**±400``; unchanged otherwise.

    Only exponents change, so the scale-invariant metrics are unchanged, but squares and
    products of values near the float64 limits no longer overflow or underflow (a column of
    entries like 1e300 gets its correlation instead of NaN).
    """
    return np.ldexp(arr, -_safe_exponents(arr, axis))


def _cross_correlation(A, B):
    """``C[i, j] = corr(A[:, i], B[:, j])``, with 0 wherever a column is constant."""
    A = A - A.mean(axis=0)
    B = B - B.mean(axis=0)
    norm_a = np.sqrt(np.sum(A * A, axis=0))
    norm_b = np.sqrt(np.sum(B * B, axis=0))
    # A constant column has no correlation with anything; test constancy exactly on the centred
    # data's range so that rounding in the mean cannot turn it into noise.
    norm_a[np.ptp(A, axis=0) == 0] = np.inf
    norm_b[np.ptp(B, axis=0) == 0] = np.inf
    C = (A.T @ B) / np.outer(norm_a, norm_b)
    return np.clip(C, -1.0, 1.0)


class SourceMatching(NamedTuple):
    r"""The one-to-one matching of true to estimated sources behind the MCC.

    Returned by :func:`match_sources`; a named tuple, so ``corr, rows, cols, matched =
    match_sources(S_true, S_est)`` unpacks it.

    Attributes
    ----------
    corr : ndarray of shape (n_components_true, n_components_est)
        Signed correlations, ``corr[i, j]`` between true source ``i`` and estimate ``j``
        (Pearson, or Pearson of the column-wise ranks for Spearman); 0 where a column is
        constant.
    rows : ndarray of int, shape (n_pairs,)
        The matched true sources, increasing; ``n_pairs = min(n_components_true,
        n_components_est)``, so ``rows`` is ``arange(n_components_true)`` unless there are
        fewer estimates than true sources.
    cols : ndarray of int, shape (n_pairs,)
        The estimate matched to true source ``rows[k]`` is ``cols[k]``.
    matched : ndarray of shape (n_pairs,)
        The matched signed correlations ``corr[rows, cols]``, one per matched true source; the
        MCC is ``np.abs(matched).mean()``.
    """

    corr: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    matched: np.ndarray


def _match(S_true, S_est, method) -> tuple[SourceMatching, np.ndarray, np.ndarray]:
    """Validate (method, then the arrays), then match: ``(SourceMatching, S_true, S_est)``, the
    arrays as float64."""
    check_option(method, "method", CORR_METHODS)
    S_true, S_est = check_paired_sources(S_true, S_est)
    A, B = (rankdata(S, axis=0) if method == "spearman" else S for S in (S_true, S_est))
    C = _cross_correlation(_power_of_two_scaled(A, axis=0), _power_of_two_scaled(B, axis=0))
    rows, cols = linear_sum_assignment(np.abs(C), maximize=True)
    return SourceMatching(C, rows, cols, C[rows, cols]), S_true, S_est


def match_sources(S_true: ArrayLike, S_est: ArrayLike, method: str = "pearson") -> SourceMatching:
    r"""The correlation matrix and the one-to-one matching behind :func:`mean_corr_coef`.

    With :math:`C_{ij} = \operatorname{corr}(s_i, \hat s_j)`, the assignment :math:`\pi`
    maximises :math:`\sum_i |C_{i\pi(i)}|` over one-to-one matchings
    (:func:`scipy.optimize.linear_sum_assignment` on :math:`|C|`).

    Parameters
    ----------
    S_true : array-like of shape (n_samples, n_components_true)
        True sources, rows are samples.
    S_est : array-like of shape (n_samples, n_components_est)
        Estimated sources for the same samples, in any order, sign and scale.
    method : {"pearson", "spearman"}, default="pearson"
        Correlation used for :math:`C`; ``"spearman"`` is the Pearson correlation of the
        column-wise ranks (:func:`scipy.stats.rankdata`, ties get their average rank).

    Returns
    -------
    matching : SourceMatching
        ``(corr, rows, cols, matched)``: the signed correlation matrix, the matched true
        sources and their estimates, and the matched signed correlations.

    Raises
    ------
    TypeError
        If an input is not numeric.
    ValueError
        As :func:`mean_corr_coef`.

    Examples
    --------
    >>> import numpy as np
    >>> from nica.metrics import match_sources
    >>> rng = np.random.default_rng(0)
    >>> S = rng.laplace(size=(1000, 3))
    >>> m = match_sources(S, -2.0 * S[:, [2, 0, 1]])
    >>> m.cols, np.round(m.matched, 6)
    (array([1, 2, 0]), array([-1., -1., -1.]))
    """
    return _match(S_true, S_est, method)[0]


def match_components(S_true, S_est, method="pearson"):
    """:func:`match_sources` as ``(rows, cols, |matched|)``, the matched absolute correlations
    (their mean is the MCC)."""
    matching = match_sources(S_true, S_est, method)
    return matching.rows, matching.cols, np.abs(matching.matched)


_ALIGN_SCALES = ("least_squares", "std")


def align_sources(
    S_true: ArrayLike, S_est: ArrayLike, method: str = "pearson", scale: str = "least_squares"
) -> np.ndarray:
    r"""The estimated sources permuted, sign-flipped, scaled and shifted onto the true ones.

    True source :math:`i` matched to estimate :math:`j` (as in :func:`match_sources`) gets

    .. math::

        \tilde s_i = \bar s_i + a_i\,(\hat s_j - \bar{\hat s}_j), \qquad
        a_i = \begin{cases}
            \operatorname{cov}(s_i, \hat s_j) / \operatorname{var}(\hat s_j)
                & \texttt{scale="least\_squares"}, \\
            \operatorname{sign}(C_{ij})\, \operatorname{std}(s_i) / \operatorname{std}(\hat s_j)
                & \texttt{scale="std"},
        \end{cases}

    where bars are means over the samples. ``"least_squares"`` is the affine least-squares fit
    of :math:`s_i` from :math:`\hat s_j` (so :math:`a_i = \rho\,\operatorname{std}(s_i) /
    \operatorname{std}(\hat s_j)` with :math:`\rho` the Pearson correlation, whatever
    ``method``); ``"std"`` gives :math:`\tilde s_i` the mean and standard deviation of
    :math:`s_i` and the sign of the correlation :math:`C_{ij}` that ``method`` measures.

    Parameters
    ----------
    S_true : array-like of shape (n_samples, n_components_true)
        True sources.
    S_est : array-like of shape (n_samples, n_components_est)
        Estimated sources for the same samples.
    method : {"pearson", "spearman"}, default="pearson"
        Correlation used for the matching (and for the sign with ``scale="std"``).
    scale : {"least_squares", "std"}, default="least_squares"
        How the scale :math:`a_i` is chosen, as above.

    Returns
    -------
    S_aligned : ndarray of shape (n_samples, n_components_true)
        Column ``i`` is the estimate matched to true source ``i``, aligned to it. Columns of
        true sources left without a match (only when there are fewer estimates than true
        sources) are NaN; estimates left without a match are dropped. A constant estimate,
        or one uncorrelated with its match, gives the constant :math:`\bar s_i`.

    Raises
    ------
    TypeError
        If an input is not numeric.
    ValueError
        As :func:`mean_corr_coef`, or if ``scale`` is unknown.

    Examples
    --------
    >>> import numpy as np
    >>> from nica.metrics import align_sources
    >>> rng = np.random.default_rng(0)
    >>> S = rng.laplace(size=(1000, 3))
    >>> S_est = 1.0 - 2.0 * S[:, [2, 0, 1]]       # permuted, flipped, rescaled, shifted
    >>> bool(np.allclose(align_sources(S, S_est), S))
    True
    """
    check_option(method, "method", CORR_METHODS)
    check_option(scale, "scale", _ALIGN_SCALES)
    matching, S_true, S_est = _match(S_true, S_est, method)
    # Each column by its own power of two (exact), so that squares cannot overflow.
    k_true, k_est = _safe_exponents(S_true, axis=0)[0], _safe_exponents(S_est, axis=0)[0]
    T, E = np.ldexp(S_true, -k_true), np.ldexp(S_est, -k_est)
    if scale == "std":
        coef = np.sign(matching.corr)
    else:
        coef = matching.corr if method == "pearson" else _cross_correlation(T, E)
    T_mean, E_centred = T.mean(axis=0), E - E.mean(axis=0)
    std_true = np.where(np.ptp(T, axis=0) == 0, 0.0, np.std(T, axis=0))
    std_est = np.where(np.ptp(E, axis=0) == 0, np.inf, np.std(E, axis=0))
    aligned = np.full((S_true.shape[0], S_true.shape[1]), np.nan)
    for i, j in zip(matching.rows, matching.cols):
        slope = coef[i, j] * std_true[i] / std_est[j]
        aligned[:, i] = np.ldexp(T_mean[i] + slope * E_centred[:, j], k_true[i])
    return aligned


def mean_corr_coef(S_true: ArrayLike, S_est: ArrayLike, method: str = "pearson") -> float:
    r"""Mean correlation coefficient (MCC) between true and estimated sources.

    With :math:`C_{ij} = |\operatorname{corr}(s_i, \hat s_j)|`, the components are matched
    one-to-one by the assignment :math:`\pi` that maximises :math:`\sum_i C_{i\pi(i)}`
    (Hungarian algorithm, :func:`scipy.optimize.linear_sum_assignment`), and the MCC is the
    mean of the matched entries. It is 1 exactly when every true source is recovered up to
    permutation, sign and scale (``method="pearson"``) or up to permutation and strictly
    monotone transformations (``method="spearman"``).

    Parameters
    ----------
    S_true : array-like of shape (n_samples, n_components_true)
        True sources, rows are samples.
    S_est : array-like of shape (n_samples, n_components_est)
        Estimated sources for the same samples, in any order, sign and scale.
    method : {"pearson", "spearman"}, default="pearson"
        Correlation used for :math:`C`. ``"spearman"`` is the Pearson correlation of the
        column-wise ranks (:func:`scipy.stats.rankdata`, ties get their average rank).

    Returns
    -------
    mcc : float
        Mean of the matched absolute correlations, in [0, 1].

    Raises
    ------
    TypeError
        If an input is not numeric.
    ValueError
        If an input is not 2-D, has fewer than 2 samples, contains NaN or inf, if the two
        inputs have different numbers of samples, or if ``method`` is unknown.

    Notes
    -----
    If the numbers of components differ, only ``min(n_components_true, n_components_est)``
    pairs are matched (a rectangular assignment) and averaged; unmatched components of the
    larger set do not count. A constant column has correlation 0 with every other column
    (never NaN).

    See Also
    --------
    match_sources : the correlation matrix and the matching.
    weak_mcc : the MCC after a linear alignment (CCA).

    Examples
    --------
    >>> import numpy as np
    >>> from nica.metrics import mean_corr_coef
    >>> rng = np.random.default_rng(0)
    >>> S = rng.laplace(size=(1000, 3))
    >>> S_est = -2.0 * S[:, [2, 0, 1]]          # permuted, flipped and rescaled
    >>> print(round(mean_corr_coef(S, S_est), 6))
    1.0
    >>> noise = rng.normal(size=(1000, 3))
    >>> mean_corr_coef(S, noise) < 0.15
    True
    """
    return float(np.abs(match_sources(S_true, S_est, method).matched).mean())


def weak_mcc(
    S_true: ArrayLike,
    S_est: ArrayLike,
    S_true_test: ArrayLike | None = None,
    S_est_test: ArrayLike | None = None,
    *,
    method: str = "pearson",
    max_iter: int = 500,
    tol: float = 1e-06,
) -> float:
    r"""Weak MCC: the MCC after a linear alignment by canonical correlation analysis (CCA).

    A CCA with :math:`k = \min(n_\text{true}, n_\text{est})` components
    (:class:`sklearn.cross_decomposition.CCA`, columns standardized) is fitted on the training
    pair: it finds directions :math:`a_m, b_m` such that the canonical variates
    :math:`u_m = \hat s^\top a_m` and :math:`v_m = s^\top b_m` have the largest correlations
    :math:`\rho_1 \ge \dots \ge \rho_k`, each pair uncorrelated with the previous ones on each
    side. The weak MCC is :func:`mean_corr_coef` between the true variates :math:`v` and the
    estimated variates :math:`u` of the held-out pair, computed with the directions fitted on
    the training pair. Without a held-out pair it is computed in-sample, on the training
    pair; there the variates of different pairs are uncorrelated, so it equals the mean
    canonical correlation :math:`\frac1k \sum_m \rho_m` (Pearson).

    It is 1 when the estimates are any invertible linear mixture of the true sources (the
    "weak" identifiability of identifiable VAEs and ICE-BeeM, up to a linear map), where the
    strong MCC of :func:`mean_corr_coef` asks for a permutation with signs and scales.

    Parameters
    ----------
    S_true : array-like of shape (n_samples, n_components_true)
        True sources of the training part.
    S_est : array-like of shape (n_samples, n_components_est)
        Estimated sources of the same samples.
    S_true_test : array-like of shape (n_samples_test, n_components_true) or None, default=None
        True sources of a held-out part, with ``S_est_test``; both or neither.
    S_est_test : array-like of shape (n_samples_test, n_components_est) or None, default=None
        Estimated sources of the held-out samples.
    method : {"pearson", "spearman"}, default="pearson"
        Correlation of the MCC between the canonical variates.
    max_iter : int, default=500
        Most iterations of the power method for each canonical pair (scikit-learn's default).
    tol : float, default=1e-06
        Its tolerance on the squared change of the weights (scikit-learn's default), which
        gives the canonical correlations to about ``tol``.

    Returns
    -------
    weak_mcc : float
        In [0, 1].

    Raises
    ------
    TypeError
        If an input is not numeric, or ``max_iter`` or ``tol`` is not a number.
    ValueError
        As :func:`mean_corr_coef` for each pair; if only one held-out array is given or a
        held-out array has another number of columns than its training array; if the
        training pair has fewer than ``k`` samples; or if ``method``, ``max_iter`` (an integer
        >= 1) or ``tol`` (>= 0) is invalid.

    Examples
    --------
    >>> import numpy as np
    >>> from nica.metrics import mean_corr_coef, weak_mcc
    >>> rng = np.random.default_rng(0)
    >>> S = rng.laplace(size=(2000, 3))
    >>> S_est = S @ rng.normal(size=(3, 3))     # a linear mixture: not recovered strongly
    >>> mean_corr_coef(S[1000:], S_est[1000:]) < 0.9
    True
    >>> print(round(weak_mcc(S[:1000], S_est[:1000], S[1000:], S_est[1000:]), 6))
    1.0
    """
    check_option(method, "method", CORR_METHODS)
    max_iter = check_int(max_iter, "max_iter", 1)
    tol = check_real(tol, "tol", 0.0, None, closed="left")
    S_true, S_est, S_true_test, S_est_test = check_test_sources(S_true, S_est, S_true_test, S_est_test)
    k = min(S_true.shape[1], S_est.shape[1])
    if S_true.shape[0] < k:
        raise ValueError(
            f"S_true and S_est must have at least {k} samples (rows) for a CCA with {k} components, got "
            f"{S_true.shape[0]}."
        )
    if S_true_test is None or S_est_test is None:  # in-sample
        S_true_test, S_est_test = S_true, S_est
    # Columns scaled by exact powers of two (the same for both parts): the CCA is unchanged.
    k_true, k_est = _safe_exponents(S_true, axis=0), _safe_exponents(S_est, axis=0)
    cca = CCA(n_components=k, max_iter=max_iter, tol=tol)
    cca.fit(np.ldexp(S_est, -k_est), np.ldexp(S_true, -k_true))
    U_est, U_true = cca.transform(np.ldexp(S_est_test, -k_est), np.ldexp(S_true_test, -k_true))
    return mean_corr_coef(U_true, U_est, method=method)


def _check_square(M, name) -> np.ndarray:
    arr = as_real_array(M, name)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty square 2-D matrix, got an array of shape {arr.shape}.")
    check_finite(arr, name)
    return arr


def amari_distance(W: ArrayLike, A: ArrayLike) -> float:
    r"""Normalised Amari distance between an unmixing matrix and the true mixing.

    With :math:`P = W A` of size :math:`d \times d`,

    .. math::

        d(W, A) = \frac{1}{2d(d-1)} \left[
            \sum_{i} \left( \frac{\sum_j |p_{ij}|}{\max_j |p_{ij}|} - 1 \right)
          + \sum_{j} \left( \frac{\sum_i |p_{ij}|}{\max_i |p_{ij}|} - 1 \right) \right],

    which lies in [0, 1] and is 0 exactly when :math:`P` is a scaled permutation matrix,
    i.e. when :math:`W` recovers the sources up to permutation, sign and scale.

    Parameters
    ----------
    W : array-like of shape (d, d)
        Estimated unmixing matrix, acting as ``s = W x`` (a batch computes ``X @ W.T``).
    A : array-like of shape (d, d)
        True mixing matrix, acting as ``x = A s``.

    Returns
    -------
    distance : float
        The normalised Amari distance, in [0, 1]. For ``d = 1`` it is 0.

    Raises
    ------
    TypeError
        If an input is not numeric.
    ValueError
        If ``W`` or ``A`` is not a non-empty square matrix, if their shapes differ, if they
        contain NaN or inf, or if ``W @ A`` has an all-zero row or column (the distance is
        then undefined).

    Examples
    --------
    >>> import numpy as np
    >>> from nica.metrics import amari_distance
    >>> A = np.array([[2.0, 1.0], [1.0, 1.0]])
    >>> W = np.array([[0.0, 3.0], [-1.0, 0.0]]) @ np.linalg.inv(A)   # scaled permutation of A^-1
    >>> print(round(amari_distance(W, A), 6))
    0.0
    >>> print(round(amari_distance(np.eye(2), np.array([[1.0, 1.0], [0.0, 1.0]])), 6))
    0.5
    """
    W = _check_square(W, "W")
    A = _check_square(A, "A")
    if W.shape != A.shape:
        raise ValueError(f"W and A must have the same shape, got {W.shape} and {A.shape}.")
    with np.errstate(over="ignore", invalid="ignore"):
        P = np.abs(W @ A)
    if not np.all(np.isfinite(P)):  # entries near the float64 limit: the same product, rescaled
        P = np.abs(_power_of_two_scaled(W) @ _power_of_two_scaled(A))
    d = P.shape[0]
    row_max = P.max(axis=1)
    col_max = P.max(axis=0)
    if np.any(row_max == 0) or np.any(col_max == 0):
        raise ValueError(
            "W @ A has an all-zero row or column, so the Amari distance is undefined; W @ A must be non-singular."
        )
    if d == 1:
        return 0.0
    rows = np.sum(P.sum(axis=1) / row_max - 1.0)
    cols = np.sum(P.sum(axis=0) / col_max - 1.0)
    return float((rows + cols) / (2.0 * d * (d - 1)))


def check_scored(estimator, y, what: str) -> None:
    """What a source scorer needs: an estimator with ``transform``, and the true sources as
    ``y``; ``what`` names the scorer in the messages."""
    if not callable(getattr(estimator, "transform", None)):
        raise TypeError(
            f"The {what} scorer scores an estimator with a transform method; got "
            f"{type(estimator).__name__}, which has none."
        )
    if y is None:
        raise ValueError(f"The {what} scorer needs the true sources as y (n_samples, n_components), got None.")


def make_mcc_scorer(method: str = "pearson") -> Callable:
    """Scikit-learn scorer of the mean correlation coefficient, for model selection.

    The returned scorer is called as ``scorer(estimator, X, S_true)`` and computes
    ``mean_corr_coef(S_true, estimator.transform(X), method=method)``: the true sources play
    the role of ``y``. Pass them as ``y`` to :class:`~sklearn.model_selection.GridSearchCV`,
    :func:`~sklearn.model_selection.cross_val_score` and the like; cross-validation splits
    them by rows together with ``X``. Estimators whose ``fit`` ignores ``y`` (such as
    ``nica.NonlinearICA`` or :class:`~sklearn.decomposition.FastICA`) are then trained
    without seeing the sources. Do not use it with an estimator whose ``fit`` interprets
    ``y`` (such as ``nica.ConditionalNonlinearICA``, for which ``y`` is the auxiliary
    variable); call :func:`mean_corr_coef` directly there.

    Parameters
    ----------
    method : {"pearson", "spearman"}, default="pearson"
        Passed to :func:`mean_corr_coef`.

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y) -> float``, the callable form of a scikit-learn scorer
        (accepted wherever ``scoring=`` is); greater is better.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.decomposition import FastICA
    >>> from sklearn.model_selection import cross_val_score
    >>> from nica.metrics import make_mcc_scorer
    >>> rng = np.random.default_rng(0)
    >>> S = rng.laplace(size=(900, 2))
    >>> X = S @ np.array([[1.0, 0.5], [0.3, 1.0]]).T
    >>> scores = cross_val_score(FastICA(whiten="unit-variance", random_state=0), X, S,
    ...                          scoring=make_mcc_scorer(), cv=3)
    >>> bool(np.all(scores > 0.99))
    True
    """
    check_option(method, "method", CORR_METHODS)

    def mcc_scorer(estimator, X, y):
        check_scored(estimator, y, "MCC")
        return mean_corr_coef(y, estimator.transform(X), method=method)

    mcc_scorer.__name__ = mcc_scorer.__qualname__ = f"mcc_scorer_{method}"
    return mcc_scorer
