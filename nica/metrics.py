"""Metrics of source recovery: mean correlation coefficient and Amari distance."""

from nica._src.metrics import amari_distance, make_mcc_scorer, mean_corr_coef

__all__ = ["amari_distance", "make_mcc_scorer", "mean_corr_coef"]
