"""Data sets: synthetic nonlinear-ICA benchmarks, 2-D toy densities and real density data."""

from nica._src.real_data import load_digits_density, load_power
from nica._src.synthetic import apply_mixing, make_segmented_mixture, make_toy_density

__all__ = [
    "apply_mixing",
    "load_digits_density",
    "load_power",
    "make_segmented_mixture",
    "make_toy_density",
]
