"""Synthetic data sets: the segment-modulated nonlinear-ICA benchmark and 2-D toy densities."""

from nica._src.datasets import apply_mixing, make_segmented_mixture, make_toy_density

__all__ = ["apply_mixing", "make_segmented_mixture", "make_toy_density"]
