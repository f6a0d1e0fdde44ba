"""Plots (matplotlib): source recovery, components over time, correlation matrices, training
curves, 2-D densities, gradient timings."""

from nica._src.plotting import (
    plot_components,
    plot_correlation_matrix,
    plot_density_2d,
    plot_gradient_scaling,
    plot_sources,
    plot_training_curves,
)

__all__ = [
    "plot_components",
    "plot_correlation_matrix",
    "plot_density_2d",
    "plot_gradient_scaling",
    "plot_sources",
    "plot_training_curves",
]
