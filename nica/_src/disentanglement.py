"""Metrics beyond the MCC: R² of regressions from the estimated to the true sources, DCI, a report
of every metric at once and scorers for each.  NumPy and scikit-learn only, like
:mod:`nica._src.metrics` on which it builds; rows are samples, columns components."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from nica._src._checks import Interval, Options, check_bool, check_int, check_option, check_parameter
from nica._src.metrics import (
    as_real_array,
    check_finite,
    check_scored,
    check_test_sources,
    match_sources,
    mean_corr_coef,
    weak_mcc,
)

__all__ = [
    "DCIScores",
    "R2Scores",
    "SourceEvaluation",
    "dci",
    "dci_from_importance",
    "evaluate_sources",
    "make_source_scorer",
    "source_r2",
]

_REGRESSORS = ("linear", "knn")
_SCORER_METRICS = ("mcc", "mcc_spearman", "weak_mcc", "r2_linear", "r2_nonlinear")
_SEED = [Interval(int, 0, 2**32 - 1), Options((None,))]


def _r2_columns(Y, P) -> np.ndarray:
    """Per column ``1 - SS_res / SS_tot`` of predictions ``P`` of ``Y``; 0 for a constant column."""
    ss_res = np.sum((Y - P) ** 2, axis=0)
    ss_tot = np.sum((Y - Y.mean(axis=0)) ** 2, axis=0)
    constant = np.ptp(Y, axis=0) == 0
    return np.where(constant, 0.0, 1.0 - ss_res / np.where(constant, 1.0, ss_tot))


class R2Scores(NamedTuple):
    """R² of a regression of each true source on the estimated sources.

    Attributes
    ----------
    per_source : ndarray of shape (n_components_true,)
        The R² of each true source.
    mean : float
        Their mean, the overall R².
    """

    per_source: np.ndarray
    mean: float


def _check_regression(regressor, n_neighbors, n_splits, random_state, n_train, held_out):
    """Validate the options of :func:`source_r2` against the number of training rows."""
    check_option(regressor, "regressor", _REGRESSORS)
    n_neighbors = check_int(n_neighbors, "n_neighbors", 1)
    n_splits = check_int(n_splits, "n_splits", 2)
    check_parameter(random_state, "random_state", _SEED)
    if regressor == "knn":
        if not held_out and n_splits > n_train:
            raise ValueError(f"n_splits must be at most the number of samples, {n_train}; got {n_splits}.")
        smallest_fit = n_train if held_out else n_train - math.ceil(n_train / n_splits)
        if n_neighbors > smallest_fit:
            where = "the training samples" if held_out else f"the smallest training fold of {n_splits}-fold CV"
            raise ValueError(f"n_neighbors must be at most the {smallest_fit} rows of {where}, got {n_neighbors}.")


def _regression_r2(S_true, S_est, S_true_test, S_est_test, regressor, n_neighbors, n_splits, random_state):
    if regressor == "linear":
        model = LinearRegression()
    else:
        from sklearn.neighbors import KNeighborsRegressor  # lazily: start-up time

        model = make_pipeline(StandardScaler(), KNeighborsRegressor(n_neighbors=n_neighbors))
    if S_true_test is not None:
        Y, P = S_true_test, model.fit(S_est, S_true).predict(S_est_test)
    elif regressor == "linear":
        Y, P = S_true, model.fit(S_est, S_true).predict(S_est)
    else:
        folds = KFold(n_splits=n_splits, shuffle=True, random_state=random_state)
        Y, P = S_true, cross_val_predict(model, S_est, S_true, cv=folds)
    per_source = _r2_columns(Y, np.asarray(P, dtype=np.float64).reshape(Y.shape))
    return R2Scores(per_source, float(per_source.mean()))


def source_r2(
    S_true: ArrayLike,
    S_est: ArrayLike,
    S_true_test: ArrayLike | None = None,
    S_est_test: ArrayLike | None = None,
    *,
    regressor: str = "linear",
    n_neighbors: int = 5,
    n_splits: int = 5,
    random_state: int | None = 0,
) -> R2Scores:
    r"""R² of a regression of each true source on all the estimated sources.

    Each true source :math:`s_i` is predicted by :math:`\hat y_i` from the whole vector of
    estimates :math:`\hat s`, and scored by

    .. math::

        R^2_i = 1 - \frac{\sum_n (s_{ni} - \hat y_{ni})^2}{\sum_n (s_{ni} - \bar s_i)^2},

    over the evaluated samples (:math:`\bar s_i` their mean); a constant true source gets 0.
    ``regressor="linear"`` is an affine least-squares fit
    (:class:`~sklearn.linear_model.LinearRegression`); ``"knn"`` the mean of the
    ``n_neighbors`` nearest training rows in the standardized estimates (``StandardScaler``
    then ``KNeighborsRegressor``), which measures recovery up to any smooth invertible map.
    With a held-out pair the regressor is fitted on the training pair and scored on the
    held-out one (where R² may be negative). Without one, the linear R² is in-sample and the
    k-NN R² cross-validated: :func:`~sklearn.model_selection.cross_val_predict` with
    ``KFold(n_splits, shuffle=True, random_state=random_state)``, scored on all rows.

    Parameters
    ----------
    S_true : array-like of shape (n_samples, n_components_true)
        True sources (training part).
    S_est : array-like of shape (n_samples, n_components_est)
        Estimated sources of the same samples.
    S_true_test : array-like of shape (n_samples_test, n_components_true) or None, default=None
        True sources of a held-out part, with ``S_est_test``; both or neither.
    S_est_test : array-like of shape (n_samples_test, n_components_est) or None, default=None
        Estimated sources of the held-out samples.
    regressor : {"linear", "knn"}, default="linear"
        The regression, as above.
    n_neighbors : int, default=5
        Neighbours of the k-NN regression (scikit-learn's default).
    n_splits : int, default=5
        Folds of the k-NN cross-validation (without a held-out pair).
    random_state : int or None, default=0
        Seed of the folds' shuffle.

    Returns
    -------
    r2 : R2Scores
        ``(per_source, mean)``.

    Raises
    ------
    TypeError
        If an input is not numeric.
    ValueError
        As :func:`~nica.metrics.weak_mcc` for the arrays; if an option is invalid, or (k-NN)
        ``n_neighbors`` exceeds the rows a model is fitted on or ``n_splits`` the samples.

    Examples
    --------
    >>> import numpy as np
    >>> from nica.metrics import source_r2
    >>> rng = np.random.default_rng(0)
    >>> S = rng.laplace(size=(600, 2))
    >>> S_est = np.exp(S[:, ::-1] / 2)                # permuted, nonlinearly distorted
    >>> linear = source_r2(S, S_est)
    >>> knn = source_r2(S, S_est, regressor="knn")
    >>> bool(knn.mean > 0.9 > 0.6 > linear.mean)
    True
    """
    S_true, S_est, S_true_test, S_est_test = check_test_sources(S_true, S_est, S_true_test, S_est_test)
    _check_regression(regressor, n_neighbors, n_splits, random_state, S_true.shape[0], S_true_test is not None)
    return _regression_r2(S_true, S_est, S_true_test, S_est_test, regressor, n_neighbors, n_splits, random_state)


class DCIScores(NamedTuple):
    """Disentanglement, completeness and informativeness (Eastwood & Williams, 2018).

    Attributes
    ----------
    disentanglement : float
        :math:`D`, in [0, 1].
    completeness : float
        :math:`C`, in [0, 1].
    informativeness : float or None
        Mean held-out (or in-sample) R² of the factors; None from
        :func:`dci_from_importance`.
    code_disentanglement : ndarray of shape (n_codes,)
        :math:`D_i` of each code (0 for a code of zero importance).
    factor_completeness : ndarray of shape (n_factors,)
        :math:`C_j` of each factor (0 for a factor of zero importance).
    factor_informativeness : ndarray of shape (n_factors,) or None
        R² of each factor; None from :func:`dci_from_importance`.
    importance : ndarray of shape (n_codes, n_factors)
        The importance matrix :math:`R`.
    """

    disentanglement: float
    completeness: float
    informativeness: float | None
    code_disentanglement: np.ndarray
    factor_completeness: np.ndarray
    factor_informativeness: np.ndarray | None
    importance: np.ndarray


def _check_importance(importance) -> np.ndarray:
    R = as_real_array(importance, "importance")
    if R.ndim != 2 or R.size == 0:
        raise ValueError(f"importance must be a non-empty 2-D array (n_codes, n_factors), got shape {R.shape}.")
    check_finite(R, "importance")
    if np.any(R < 0):
        raise ValueError(f"importance must be non-negative, got {int(np.sum(R < 0))} negative entries.")
    if not np.any(R > 0):
        raise ValueError("importance must have a positive entry, got all zeros.")
    return R


def _one_minus_entropy(R, axis) -> np.ndarray:
    """``1 - H(p)`` of each slice of ``R`` normalized along ``axis``, with logarithms in base
    ``R.shape[axis]`` (1 for a base of 1); 0 for an all-zero slice."""
    total = R.sum(axis=axis, keepdims=True)
    if R.shape[axis] == 1:
        return (total > 0).astype(np.float64).squeeze(axis)
    P = R / np.where(total > 0, total, 1.0)
    plogp = np.where(P > 0, P * np.log(np.where(P > 0, P, 1.0)), 0.0)
    score = 1.0 + plogp.sum(axis=axis) / math.log(R.shape[axis])
    return np.where(total.squeeze(axis) > 0, np.clip(score, 0.0, 1.0), 0.0)


def dci_from_importance(importance: ArrayLike) -> DCIScores:
    r"""Disentanglement and completeness of an importance matrix (Eastwood & Williams, 2018).

    :math:`R_{ij} \ge 0` is the importance of code :math:`i` for predicting factor :math:`j`,
    for :math:`n_c` codes and :math:`n_f` factors. With :math:`P_{ij} = R_{ij} / \sum_k
    R_{ik}` (each code's importances over the factors) and :math:`\tilde P_{ij} = R_{ij} /
    \sum_k R_{kj}` (each factor's over the codes),

    .. math::

        D_i = 1 + \sum_j P_{ij} \log_{n_f} P_{ij}, \qquad
        D = \sum_i \rho_i D_i, \quad \rho_i = \frac{\sum_j R_{ij}}{\sum_{kl} R_{kl}},

        C_j = 1 + \sum_i \tilde P_{ij} \log_{n_c} \tilde P_{ij}, \qquad
        C = \sum_j w_j C_j, \quad w_j = \frac{\sum_i R_{ij}}{\sum_{kl} R_{kl}},

    with :math:`0 \log 0 = 0`. :math:`D_i = 1` when code :math:`i` matters for one factor only
    and 0 when it matters equally for all; :math:`C_j` likewise for the codes that capture
    factor :math:`j`. A code (factor) of zero importance has :math:`D_i = 0` (:math:`C_j = 0`)
    and weight 0; with a single factor (code) the logarithm's base is 1 and every :math:`D_i`
    (:math:`C_j`) of positive importance is 1.

    Parameters
    ----------
    importance : array-like of shape (n_codes, n_factors)
        Non-negative importances, at least one positive.

    Returns
    -------
    scores : DCIScores
        With ``informativeness`` and ``factor_informativeness`` None.

    Raises
    ------
    TypeError
        If ``importance`` is not numeric.
    ValueError
        If it is not a non-empty 2-D array of finite, non-negative values with a positive one.

    Examples
    --------
    >>> import numpy as np
    >>> from nica.metrics import dci_from_importance
    >>> print(dci_from_importance(np.eye(3)).disentanglement)
    1.0
    >>> print(round(dci_from_importance(np.ones((3, 3))).completeness, 12))
    0.0
    """
    return _dci_scores(_check_importance(importance))


def _dci_scores(R, informativeness=None) -> DCIScores:
    """:class:`DCIScores` of a checked importance matrix (all zeros give zeros)."""
    code_d, factor_c = _one_minus_entropy(R, axis=1), _one_minus_entropy(R, axis=0)
    total = R.sum() if np.any(R > 0) else 1.0
    disentanglement = float(np.sum(R.sum(axis=1) / total * code_d))
    completeness = float(np.sum(R.sum(axis=0) / total * factor_c))
    mean = None if informativeness is None else float(informativeness.mean())
    return DCIScores(disentanglement, completeness, mean, code_d, factor_c, informativeness, R)


def dci(
    factors: ArrayLike,
    codes: ArrayLike,
    factors_test: ArrayLike | None = None,
    codes_test: ArrayLike | None = None,
    *,
    n_estimators: int = 100,
    max_depth: int = 3,
    random_state: int | None = 0,
) -> DCIScores:
    """DCI scores of codes (estimated sources) against labelled factors (true sources).

    For each factor :math:`j` a :class:`~sklearn.ensemble.GradientBoostingRegressor`
    (``n_estimators`` trees of depth ``max_depth``, scikit-learn's other defaults) predicts it
    from all the codes on the training pair; its ``feature_importances_`` (the impurity
    reduction due to each code, normalized to sum to 1) are column :math:`j` of the importance
    matrix :math:`R`, from which :func:`dci_from_importance` gives disentanglement and
    completeness. Informativeness is the R² of these regressors, per factor and averaged,
    (see :func:`~nica.metrics.source_r2` for the formula) on the held-out pair, or in-sample
    (optimistic) without one.

    Parameters
    ----------
    factors : array-like of shape (n_samples, n_factors)
        The true factors (sources) of the training part, numeric labels or values.
    codes : array-like of shape (n_samples, n_codes)
        The codes (estimated sources) of the same samples.
    factors_test : array-like of shape (n_samples_test, n_factors) or None, default=None
        Factors of a held-out part, with ``codes_test``; both or neither.
    codes_test : array-like of shape (n_samples_test, n_codes) or None, default=None
        Codes of the held-out samples.
    n_estimators : int, default=100
        Boosting stages of each regressor.
    max_depth : int, default=3
        Depth of their trees.
    random_state : int or None, default=0
        Seed of the regressors (they permute the codes at each split).

    Returns
    -------
    scores : DCIScores

    Raises
    ------
    TypeError
        If an input is not numeric.
    ValueError
        As :func:`~nica.metrics.weak_mcc` for the arrays (named ``factors`` and ``codes``), or
        if an option is invalid.

    Examples
    --------
    >>> import numpy as np
    >>> from nica.metrics import dci
    >>> rng = np.random.default_rng(0)
    >>> S = rng.uniform(size=(400, 3))
    >>> scores = dci(S[:300], np.exp(S[:300, ::-1]), S[300:], np.exp(S[300:, ::-1]))
    >>> bool(scores.disentanglement > 0.9 and scores.completeness > 0.9 and scores.informativeness > 0.9)
    True
    """
    n_estimators = check_int(n_estimators, "n_estimators", 1)
    max_depth = check_int(max_depth, "max_depth", 1)
    check_parameter(random_state, "random_state", _SEED)
    names = ("factors", "codes")
    factors, codes, factors_test, codes_test = check_test_sources(factors, codes, factors_test, codes_test, names)
    if factors_test is None or codes_test is None:  # in-sample
        factors_test, codes_test = factors, codes
    R = np.zeros((codes.shape[1], factors.shape[1]))
    predictions = np.zeros_like(factors_test)
    from sklearn.ensemble import GradientBoostingRegressor  # lazily: start-up time

    for j in range(factors.shape[1]):
        model = GradientBoostingRegressor(n_estimators=n_estimators, max_depth=max_depth, random_state=random_state)
        model.fit(codes, factors[:, j])
        R[:, j] = model.feature_importances_
        predictions[:, j] = model.predict(codes_test)
    # All-zero importances (every factor constant, no split helpful) give D = C = 0.
    return _dci_scores(R, _r2_columns(factors_test, predictions))


def _plain(value):
    """``value`` as plain Python data, for :meth:`SourceEvaluation.as_dict`."""
    if isinstance(value, DCIScores):
        return {name: _plain(v) for name, v in value._asdict().items()}
    return value.tolist() if isinstance(value, np.ndarray) else value


@dataclass(frozen=True, eq=False, repr=False)
class SourceEvaluation:
    """Every metric of source recovery at once, as :func:`evaluate_sources` computes them.

    Printing it (``str`` or ``repr``) shows a table: one row per metric, its overall value and
    one column per true source (up to 8).

    Attributes
    ----------
    mcc_pearson : float
        Strong MCC, Pearson (:func:`~nica.metrics.mean_corr_coef`).
    mcc_spearman : float
        Strong MCC, Spearman.
    weak_mcc : float
        MCC after CCA (:func:`~nica.metrics.weak_mcc`).
    r2_linear : float
        Mean R² of the linear regression (:func:`~nica.metrics.source_r2`).
    r2_nonlinear : float
        Mean R² of the k-NN regression.
    corr_pearson : ndarray of shape (n_components_true,)
        Each true source's matched absolute Pearson correlation; NaN where it has no match.
    corr_spearman : ndarray of shape (n_components_true,)
        The same, Spearman.
    r2_linear_per_source : ndarray of shape (n_components_true,)
        Linear R² of each true source.
    r2_nonlinear_per_source : ndarray of shape (n_components_true,)
        k-NN R² of each true source.
    held_out : bool
        Whether the metrics were computed on a held-out pair.
    n_samples : int
        Samples the metrics were computed on.
    dci : DCIScores or None, default=None
        DCI scores, when asked for.
    """

    mcc_pearson: float
    mcc_spearman: float
    weak_mcc: float
    r2_linear: float
    r2_nonlinear: float
    corr_pearson: np.ndarray
    corr_spearman: np.ndarray
    r2_linear_per_source: np.ndarray
    r2_nonlinear_per_source: np.ndarray
    held_out: bool
    n_samples: int
    dci: DCIScores | None = None

    def as_dict(self) -> dict:
        """The fields as plain Python data.

        Returns
        -------
        values : dict
            ``{field name: value}`` in the fields' order: arrays as lists (NaN where a source
            has no match), ``dci`` as a dict of its fields (or None).
        """
        return {field.name: _plain(getattr(self, field.name)) for field in fields(self)}

    def __str__(self) -> str:
        shown = min(len(self.corr_pearson), 8)
        where = "held-out" if self.held_out else "training (in-sample)"
        header = f"{'':<16}{'overall':>9}" + "".join(f"{f'source {i}':>10}" for i in range(shown))
        lines = [f"Source recovery on {self.n_samples} {where} samples", header]
        rows = [
            ("MCC Pearson", self.mcc_pearson, self.corr_pearson),
            ("MCC Spearman", self.mcc_spearman, self.corr_spearman),
            ("weak MCC (CCA)", self.weak_mcc, None),
            ("R2 linear", self.r2_linear, self.r2_linear_per_source),
            ("R2 k-NN", self.r2_nonlinear, self.r2_nonlinear_per_source),
        ]
        for label, overall, per_source in rows:
            cells = [] if per_source is None else ["-" if np.isnan(v) else f"{v:.3f}" for v in per_source[:shown]]
            lines.append(f"{label:<16}{overall:>9.3f}" + "".join(f"{c:>10}" for c in cells))
        if len(self.corr_pearson) > shown:
            lines.append(f"({len(self.corr_pearson) - shown} more sources not shown)")
        if self.dci is not None:
            d, c, i = self.dci[:3]
            lines.append(f"DCI: disentanglement {d:.3f}, completeness {c:.3f}, informativeness (R2) {i:.3f}")
        return "\n".join(lines)

    __repr__ = __str__


def _per_true_source(matching, n_true) -> np.ndarray:
    values = np.full(n_true, np.nan)
    values[matching.rows] = np.abs(matching.matched)
    return values


def evaluate_sources(
    S_true: ArrayLike,
    S_est: ArrayLike,
    *,
    S_true_test: ArrayLike | None = None,
    S_est_test: ArrayLike | None = None,
    with_dci: bool = False,
    n_neighbors: int = 5,
    n_splits: int = 5,
    random_state: int | None = 0,
) -> SourceEvaluation:
    """Strong and weak MCC, linear and nonlinear R² and optionally DCI, in one report.

    Everything is computed on the held-out pair when given, the fitted parts (the CCA of the
    weak MCC, the regressions of the R², the regressors of DCI) on the training pair; without
    a held-out pair everything is computed on the training pair (in-sample, except the
    cross-validated k-NN R²). The strong MCCs match the evaluated pair only.

    Parameters
    ----------
    S_true : array-like of shape (n_samples, n_components_true)
        True sources (training part).
    S_est : array-like of shape (n_samples, n_components_est)
        Estimated sources of the same samples.
    S_true_test : array-like of shape (n_samples_test, n_components_true) or None, default=None
        True sources of a held-out part, with ``S_est_test``; both or neither.
    S_est_test : array-like of shape (n_samples_test, n_components_est) or None, default=None
        Estimated sources of the held-out samples.
    with_dci : bool, default=False
        Also compute :func:`~nica.metrics.dci` (a gradient-boosting fit per true source, the
        slowest part).
    n_neighbors : int, default=5
        Neighbours of the nonlinear (k-NN) R², as in :func:`~nica.metrics.source_r2`.
    n_splits : int, default=5
        Its folds without a held-out pair.
    random_state : int or None, default=0
        Seed of the folds and of the DCI regressors.

    Returns
    -------
    report : SourceEvaluation
        ``print(report)`` shows the table; ``report.as_dict()`` gives plain data.

    Raises
    ------
    TypeError
        If an input is not numeric.
    ValueError
        As :func:`~nica.metrics.weak_mcc` and :func:`~nica.metrics.source_r2`, all checked
        before anything is computed.

    Examples
    --------
    >>> import numpy as np
    >>> from nica.metrics import evaluate_sources
    >>> rng = np.random.default_rng(0)
    >>> S = rng.laplace(size=(1000, 3))
    >>> S_est = np.exp(S[:, [2, 0, 1]] / 2) + 0.01 * rng.normal(size=(1000, 3))  # monotone, noisy
    >>> report = evaluate_sources(S[:500], S_est[:500], S_true_test=S[500:], S_est_test=S_est[500:],
    ...                           with_dci=True)
    >>> print(report)  # doctest: +NORMALIZE_WHITESPACE
    Source recovery on 500 held-out samples
                      overall  source 0  source 1  source 2
    MCC Pearson         0.741     0.755     0.675     0.794
    MCC Spearman        1.000     1.000     1.000     1.000
    weak MCC (CCA)      0.739
    R2 linear           0.359     0.556     0.020     0.502
    R2 k-NN             0.889     0.899     0.938     0.831
    DCI: disentanglement 0.999, completeness 0.999, informativeness (R2) 0.997
    >>> round(report.as_dict()["mcc_spearman"], 3)
    1.0
    """
    S_true, S_est, S_true_test, S_est_test = check_test_sources(S_true, S_est, S_true_test, S_est_test)
    held_out = S_true_test is not None
    with_dci = check_bool(with_dci, "with_dci")
    _check_regression("knn", n_neighbors, n_splits, random_state, S_true.shape[0], held_out)
    train_test = (S_true, S_est, S_true_test, S_est_test)
    weak = weak_mcc(*train_test)  # first: it checks that there are enough samples for the CCA
    Y, E = (S_true, S_est) if S_true_test is None or S_est_test is None else (S_true_test, S_est_test)
    pearson, spearman = (match_sources(Y, E, method) for method in ("pearson", "spearman"))
    options = (n_neighbors, n_splits, random_state)
    linear = _regression_r2(*train_test, "linear", *options)
    nonlinear = _regression_r2(*train_test, "knn", *options)
    return SourceEvaluation(
        mcc_pearson=float(np.abs(pearson.matched).mean()),
        mcc_spearman=float(np.abs(spearman.matched).mean()),
        weak_mcc=weak,
        r2_linear=linear.mean,
        r2_nonlinear=nonlinear.mean,
        corr_pearson=_per_true_source(pearson, S_true.shape[1]),
        corr_spearman=_per_true_source(spearman, S_true.shape[1]),
        r2_linear_per_source=linear.per_source,
        r2_nonlinear_per_source=nonlinear.per_source,
        held_out=held_out,
        n_samples=Y.shape[0],
        dci=dci(*train_test, random_state=random_state) if with_dci else None,
    )


def make_source_scorer(metric: str = "mcc") -> Callable:
    """Scikit-learn scorer of a source-recovery metric, for model selection.

    Like :func:`~nica.metrics.make_mcc_scorer`: the scorer is called as ``scorer(estimator, X,
    S_true)``, takes ``S_est = estimator.transform(X)`` and compares it with the true sources
    passed as ``y`` (see there for which estimators this suits). Within cross-validation the
    metric sees only the scoring fold, so its own fitted parts are fitted there: the weak MCC
    is that fold's in-sample CCA, the linear R² its in-sample fit, the nonlinear R² a 5-fold
    cross-validation within the fold.

    Parameters
    ----------
    metric : {"mcc", "mcc_spearman", "weak_mcc", "r2_linear", "r2_nonlinear"}, default="mcc"
        :func:`~nica.metrics.mean_corr_coef` (Pearson or Spearman),
        :func:`~nica.metrics.weak_mcc`, or the mean R² of :func:`~nica.metrics.source_r2`
        (``regressor="linear"`` or ``"knn"``), each with its defaults.

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y) -> float``; greater is better.

    Raises
    ------
    ValueError
        If ``metric`` is unknown.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.decomposition import FastICA
    >>> from sklearn.model_selection import cross_val_score
    >>> from nica.metrics import make_source_scorer
    >>> S = np.random.default_rng(0).laplace(size=(900, 2))
    >>> X = S @ np.array([[1.0, 0.5], [0.3, 1.0]]).T
    >>> scores = cross_val_score(FastICA(whiten="unit-variance", random_state=0), X, S,
    ...                          scoring=make_source_scorer("weak_mcc"), cv=3)
    >>> bool(np.all(scores > 0.99))
    True
    """
    check_option(metric, "metric", _SCORER_METRICS)

    def source_scorer(estimator, X, y):
        check_scored(estimator, y, metric)
        S_est = estimator.transform(X)
        if metric in ("mcc", "mcc_spearman"):
            return mean_corr_coef(y, S_est, method="spearman" if metric == "mcc_spearman" else "pearson")
        if metric == "weak_mcc":
            return weak_mcc(y, S_est)
        return source_r2(y, S_est, regressor="linear" if metric == "r2_linear" else "knn").mean

    source_scorer.__name__ = source_scorer.__qualname__ = f"{metric}_scorer"
    return source_scorer
