"""Metrics for source recovery: mean correlation coefficient and Amari distance.

Pure NumPy/SciPy, independent of the JAX core, so they can check the model from the outside.
Rows are samples and columns are components everywhere.  The formulas are in docs/theory.rst,
section 'Metrics'.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import linear_sum_assignment
from scipy.stats import rankdata

from nica._src._checks import check_option

__all__ = ["amari_distance", "make_mcc_scorer", "mean_corr_coef", "match_components"]

_CORR_METHODS = ("pearson", "spearman")


def _as_float_array(x, name) -> np.ndarray:
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


def _check_finite(arr, name):
    if not np.all(np.isfinite(arr)):
        n_bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name} must contain only finite values, got {n_bad} NaN or infinite entries.")


def _check_sources(S, name) -> np.ndarray:
    """Validate one ``(n_samples, n_components)`` array of sources."""
    arr = _as_float_array(S, name)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D with shape (n_samples, n_components), got an array of shape {arr.shape}.")
    if arr.shape[0] < 2:
        raise ValueError(f"{name} must have at least 2 samples (rows) to compute correlations, got shape {arr.shape}.")
    if arr.shape[1] < 1:
        raise ValueError(f"{name} must have at least 1 component (column), got shape {arr.shape}.")
    _check_finite(arr, name)
    return arr


_SAFE_EXPONENT = 400  # magnitudes within 2**±400 square and sum without overflow or underflow


def _power_of_two_scaled(arr, axis=None):
    """``arr`` divided by a power of two near its largest magnitude (per column with ``axis=0``)
    wherever that magnitude is beyond ``2**±400``; unchanged otherwise.

    Only exponents change, so the scale-invariant metrics are unchanged, but squares and
    products of values near the float64 limits no longer overflow or underflow (a column of
    entries like 1e300 gets its correlation instead of NaN).
    """
    peak = np.max(np.abs(arr), axis=axis, keepdims=axis is not None)
    exponent = np.frexp(np.where(peak > 0, peak, 1.0))[1]
    exponent = np.where(np.abs(exponent) > _SAFE_EXPONENT, exponent, 0)
    return np.ldexp(arr, -exponent)


def _abs_cross_correlation(A, B):
    """``C[i, j] = |corr(A[:, i], B[:, j])|``, with 0 wherever a column is constant."""
    A = A - A.mean(axis=0)
    B = B - B.mean(axis=0)
    norm_a = np.sqrt(np.sum(A * A, axis=0))
    norm_b = np.sqrt(np.sum(B * B, axis=0))
    # A constant column has no correlation with anything; test constancy exactly on the centred
    # data's range so that rounding in the mean cannot turn it into noise.
    norm_a[np.ptp(A, axis=0) == 0] = np.inf
    norm_b[np.ptp(B, axis=0) == 0] = np.inf
    C = np.abs(A.T @ B) / np.outer(norm_a, norm_b)
    return np.clip(C, 0.0, 1.0)


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
    _, _, matched = match_components(S_true, S_est, method)
    return float(matched.mean())


def match_components(S_true, S_est, method="pearson"):
    """Validate, then match components one-to-one as :func:`mean_corr_coef` does.

    Returns
    -------
    rows, cols : ndarray of int, shape (min(n_components_true, n_components_est),)
        True source ``rows[k]`` is matched to estimate ``cols[k]``; ``rows`` is increasing.
    matched : ndarray of float, same shape
        The matched absolute correlations ``C[rows, cols]``; their mean is the MCC.
    """
    check_option(method, "method", _CORR_METHODS)
    S_true = _check_sources(S_true, "S_true")
    S_est = _check_sources(S_est, "S_est")
    if S_true.shape[0] != S_est.shape[0]:
        raise ValueError(
            f"S_true and S_est must have the same number of samples (rows), got {S_true.shape[0]} and {S_est.shape[0]}."
        )
    if method == "spearman":
        S_true = rankdata(S_true, axis=0)
        S_est = rankdata(S_est, axis=0)
    C = _abs_cross_correlation(_power_of_two_scaled(S_true, axis=0), _power_of_two_scaled(S_est, axis=0))
    rows, cols = linear_sum_assignment(C, maximize=True)
    return rows, cols, C[rows, cols]


def _check_square(M, name) -> np.ndarray:
    arr = _as_float_array(M, name)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty square 2-D matrix, got an array of shape {arr.shape}.")
    _check_finite(arr, name)
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
    check_option(method, "method", _CORR_METHODS)

    def mcc_scorer(estimator, X, y):
        if not callable(getattr(estimator, "transform", None)):
            raise TypeError(
                f"The MCC scorer scores an estimator with a transform method; got "
                f"{type(estimator).__name__}, which has none."
            )
        if y is None:
            raise ValueError("The MCC scorer needs the true sources as y (n_samples, n_components), got None.")
        return mean_corr_coef(y, estimator.transform(X), method=method)

    mcc_scorer.__name__ = mcc_scorer.__qualname__ = f"mcc_scorer_{method}"
    return mcc_scorer
