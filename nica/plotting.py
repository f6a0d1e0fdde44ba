"""Plots (matplotlib): source recovery, correlation matrices, training curves, 2-D densities,
gradient timings."""

from nica._src.plotting import (
    plot_correlation_matrix,
    plot_density_2d,
    plot_gradient_scaling,
    plot_sources,
    plot_training_curves,
)

__all__ = [
    "plot_correlation_matrix",
    "plot_density_2d",
    "plot_gradient_scaling",
    "plot_sources",
    "plot_training_curves",
]
