"""Metrics of source recovery: strong and weak mean correlation coefficients, the matching and
alignment behind them, R² of regressions, DCI, a report of them all, scorers, and the Amari
distance."""

from nica._src.disentanglement import (
    DCIScores,
    R2Scores,
    SourceEvaluation,
    dci,
    dci_from_importance,
    evaluate_sources,
    make_source_scorer,
    source_r2,
)
from nica._src.metrics import (
    SourceMatching,
    align_sources,
    amari_distance,
    make_mcc_scorer,
    match_sources,
    mean_corr_coef,
    weak_mcc,
)

__all__ = [
    "mean_corr_coef",
    "match_sources",
    "SourceMatching",
    "align_sources",
    "weak_mcc",
    "source_r2",
    "R2Scores",
    "dci",
    "dci_from_importance",
    "DCIScores",
    "evaluate_sources",
    "SourceEvaluation",
    "amari_distance",
    "make_mcc_scorer",
    "make_source_scorer",
]
