"""The estimators' pre-processing and starting point: whitening (an affine map with a known
log-determinant, folded into every likelihood) and the FastICA rotation that linear ICA starts
from.  NumPy and scikit-learn only; the estimators call these before any JAX work."""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
from sklearn.decomposition import FastICA
from sklearn.exceptions import ConvergenceWarning

__all__ = [
    "WHITEN_OPTIONS",
    "Whitening",
    "discarded_log_density",
    "fit_whitening",
    "fastica_rotation",
    "logcosh_contrast",
]

WHITEN_OPTIONS = ("auto", "standardize", "unit-variance", False)
# init="fastica" (the default for linear ICA): the FastICA fixed-point iteration on the whitened
# rows (all of them, like the whitening) gives the starting rotation; it is an initialisation,
# capped and not required to converge, and the likelihood fit refines it.
_FASTICA_INIT_MAX_ITER = 200
_FASTICA_INIT_TOL = 1e-4
# FastICA's fixed point depends on its random start (64 logistic sources: held-out MCC from 0.940
# to 0.956 over starts); of this many starts the one with the largest log-cosh contrast is kept,
# which was also the best separated one (contrast and MCC correlated at 0.96-1.00 over 8 starts).
_FASTICA_INIT_STARTS = 3
# E[log cosh(ν)] for a standard normal ν: the reference value of the log-cosh contrast.
_LOGCOSH_GAUSSIAN = 0.37456720749


class Whitening(NamedTuple):
    """The affine pre-processing ``z = P (x − mean)``: ``P`` a full matrix (``matrix``) or a
    diagonal (``scale``, the other ``None``), and ``log_det = log|det P|``.

    With ``n_components = k`` below the number of features ``D``, ``P = Λₖ^{-1/2} Vₖᵀ`` keeps
    the ``k`` principal directions (``k×D``), ``log_det = −½ Σᵢ≤ₖ log λᵢ``, and the discarded
    directions ``discarded`` (``D×(D−k)``, orthonormal) get an isotropic Gaussian of variance
    ``noise_variance`` (the mean of their eigenvalues), as in probabilistic PCA.
    """

    mean: np.ndarray
    matrix: np.ndarray | None
    scale: np.ndarray | None
    log_det: float
    discarded: np.ndarray | None = None
    noise_variance: float = 0.0


def _check_moments_finite(moments, X):
    """Data so large that its variance overflows (|x| above about 1e150 in float64) cannot be
    whitened; say so instead of failing inside an eigendecomposition."""
    if not np.all(np.isfinite(moments)):
        raise ValueError(
            f"X has values too large to whiten in {X.dtype} (largest |x| = {float(np.max(np.abs(X))):.3g}: "
            "its variance overflows); rescale X, e.g. divide it by its largest absolute value."
        )


def _constant_columns(X, mean, std):
    """The columns whose spread is rounding of their mean (scale-free: data in any unit alike)."""
    eps, tiny = np.finfo(X.dtype).eps, np.finfo(X.dtype).tiny
    return std <= eps * np.maximum(np.abs(mean), tiny / eps)


def _degenerate_warning(X, rank, kept, constant, stacklevel):
    """Warn that ``X`` has fewer directions that vary (``rank``) than the model keeps: their
    density is unbounded, so the likelihood grows without limit along the flat ones."""
    n, d = X.shape
    why = f"{n} rows for {d} features" if n <= d else f"{kept - rank} direction(s) of (numerically) zero variance"
    cols = np.flatnonzero(constant).tolist()
    where = f"; constant column(s) {cols[:10]}{' ...' if len(cols) > 10 else ''}" if cols else ""
    fix = f"pass n_components={max(rank, 1)} to keep the directions that vary, or " if rank < kept else ""
    warnings.warn(
        f"X is degenerate: {why}{where}, so only {rank} of the {kept} directions the model keeps vary. The "
        f"likelihood is unbounded along the others and the fitted model is unreliable; {fix}remove the "
        "constant or redundant columns.",
        UserWarning,
        stacklevel=stacklevel,
    )


def fit_whitening(X, whiten, n_components=None, *, stacklevel=2) -> Whitening:
    """The pre-processing ``whiten`` (a resolved option) fitted on ``X``.

    ``"unit-variance"``: centering and PCA whitening (as FastICA), keeping the ``n_components``
    principal directions when given; ``"standardize"``: centering and per-feature scaling;
    ``False``: nothing.  A diagonal ``P`` is kept as a vector, so that it is applied in
    ``O(n·D)``.  The floors below which a variance counts as zero are relative to the data's
    own scale (the largest eigenvalue, or the column's mean), so data in any unit is whitened
    alike.  Data with fewer directions that vary than the model keeps (constant or redundant
    columns, no more rows than features) get a ``UserWarning`` that says so and names the fix
    (``stacklevel`` as :func:`warnings.warn` counts it from this function).
    """
    n_features = X.shape[1]
    mean = X.mean(axis=0) if whiten else np.zeros(n_features, X.dtype)
    if whiten == "unit-variance":
        with np.errstate(over="ignore", invalid="ignore"):
            cov = np.atleast_2d(np.cov(X, rowvar=False, bias=True))
        _check_moments_finite(cov, X)
        eigval, eigvec = np.linalg.eigh(cov)  # ascending
        top = float(eigval[-1])
        floor = np.finfo(X.dtype).eps * top * n_features if top > 0 else np.finfo(X.dtype).tiny
        rank, kept = int(np.sum(eigval > floor)), n_features if n_components is None else n_components
        if rank < kept:
            std = np.sqrt(np.maximum(np.diag(cov), 0.0))
            _degenerate_warning(X, rank, kept, _constant_columns(X, mean, std), stacklevel + 1)
        if n_components is None or n_components == n_features:
            P = (eigvec / np.sqrt(np.maximum(eigval, floor))).T
            return Whitening(mean, P.astype(X.dtype), None, float(np.linalg.slogdet(P)[1]))
        k = n_components
        top_k = np.maximum(eigval[-k:][::-1], floor)  # the k largest, largest first
        P = (eigvec[:, -k:][:, ::-1] / np.sqrt(top_k)).T
        noise = max(float(np.mean(eigval[:-k])), floor)
        log_det = -0.5 * float(np.sum(np.log(top_k)))
        return Whitening(mean, P.astype(X.dtype), None, log_det, eigvec[:, :-k].astype(X.dtype), noise)
    if whiten == "standardize":
        with np.errstate(over="ignore", invalid="ignore"):
            std = X.std(axis=0)
        _check_moments_finite(std, X)
        constant = _constant_columns(X, mean, std)
        n_samples = X.shape[0]
        if constant.any() or n_samples <= n_features:
            rank = min(int(np.sum(~constant)), n_samples - 1)
            _degenerate_warning(X, rank, n_features, constant, stacklevel + 1)
        std = np.where(constant, 1.0, std)
        scale = 1.0 / std
    else:
        scale = np.ones(n_features)
    return Whitening(mean, None, scale.astype(X.dtype), float(np.sum(np.log(scale))))


def discarded_log_density(X, mean, discarded, noise_variance) -> np.ndarray:
    """The isotropic Gaussian log-density of each row's discarded part ``r = Vᵀ(x − mean)``
    (``V = discarded``, orthonormal columns): ``−½ (m log(2πσ²) + ‖r‖²/σ²)``, ``m`` columns."""
    R = (X - mean) @ discarded
    m = discarded.shape[1]
    return -0.5 * (m * np.log(2.0 * np.pi * noise_variance) + np.sum(R * R, axis=1) / noise_variance)


def logcosh_contrast(Y) -> float:
    """FastICA's log-cosh contrast of the columns of ``Y`` (each scaled to unit variance):
    ``Σᵢ (E log cosh yᵢ − E log cosh ν)²`` with ν standard normal; larger is less Gaussian."""
    Y = Y / np.maximum(Y.std(axis=0), np.finfo(Y.dtype).tiny)
    # log cosh y = |y| + log1p(exp(−2|y|)) − log 2, without overflow
    a = np.abs(Y)
    G = np.mean(a + np.log1p(np.exp(-2.0 * a)) - np.log(2.0), axis=0)
    return float(np.sum((G - _LOGCOSH_GAUSSIAN) ** 2))


def fastica_rotation(Z, seed) -> np.ndarray:
    """The FastICA rotation of the pre-processed rows ``Z`` (symmetric fixed point, log-cosh
    contrast): of ``_FASTICA_INIT_STARTS`` random starts drawn with ``seed``, the fixed point with
    the largest contrast ``Σᵢ (E log cosh yᵢ − E log cosh ν)²``, FastICA's own objective."""
    Z = np.asarray(Z)
    starts = np.random.RandomState(seed).randint(np.iinfo(np.int32).max, size=_FASTICA_INIT_STARTS)
    best, best_contrast = np.eye(Z.shape[1]), -np.inf
    for start in starts:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            ica = FastICA(
                whiten=False,
                fun="logcosh",
                max_iter=_FASTICA_INIT_MAX_ITER,
                tol=_FASTICA_INIT_TOL,
                random_state=int(start),
            ).fit(Z)
        contrast = logcosh_contrast(Z @ ica.components_.T)
        if contrast > best_contrast:
            best, best_contrast = ica.components_, contrast
    return best
