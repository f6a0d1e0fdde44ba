"""Data sets: synthetic nonlinear-ICA benchmarks, 2-D toy densities and real density data."""

from nica._src.datasets import (
    apply_mixing,
    load_digits_density,
    load_power,
    make_segmented_mixture,
    make_toy_density,
)

__all__ = [
    "apply_mixing",
    "load_digits_density",
    "load_power",
    "make_segmented_mixture",
    "make_toy_density",
]
