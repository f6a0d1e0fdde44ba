"""Gradient forms: how the back-propagated errors become the layers' update direction
(``"relative"``, ``"equivariant"``, ``"euclidean"``, ``"autodiff"``).  A new form is a subclass
of :class:`GradientForm` and one :func:`register` line; it is built on
:func:`nica.backpropagated_errors`."""

from nica._src.gradients import (
    AutodiffGradient,
    EquivariantGradient,
    EuclideanGradient,
    GradientForm,
    RelativeGradient,
    get,
    names,
    register,
)

__all__ = [
    "GradientForm",
    "RelativeGradient",
    "EquivariantGradient",
    "EuclideanGradient",
    "AutodiffGradient",
    "get",
    "register",
    "names",
]
