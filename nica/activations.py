"""Elementwise invertible activations: ``smooth_leaky_relu``, ``tanh_linear``, ``leaky_relu``.

Their formulas are in :ref:`theory-activations`.  A new activation is a subclass of
:class:`Activation` and one :func:`register` line.
"""

from nica._src.activations import (
    Activation,
    LeakyReLU,
    SmoothLeakyReLU,
    TanhLinear,
    get,
    leaky_relu,
    names,
    register,
    smooth_leaky_relu,
    tanh_linear,
)

__all__ = [
    "Activation",
    "SmoothLeakyReLU",
    "TanhLinear",
    "LeakyReLU",
    "smooth_leaky_relu",
    "tanh_linear",
    "leaky_relu",
    "get",
    "register",
    "names",
]
