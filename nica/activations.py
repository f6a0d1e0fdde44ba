"""Elementwise invertible activations (SPEC §3): ``smooth_leaky_relu``, ``tanh_linear``, ``leaky_relu``."""

from nica._src.activations import (
    Activation,
    LeakyReLU,
    SmoothLeakyReLU,
    TanhLinear,
    get,
    leaky_relu,
    smooth_leaky_relu,
    tanh_linear,
)

__all__ = ["Activation", "SmoothLeakyReLU", "TanhLinear", "LeakyReLU",
           "smooth_leaky_relu", "tanh_linear", "leaky_relu", "get"]
