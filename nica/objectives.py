"""Training objectives as values: the likelihood, the label cross-entropy, and their weighted
sums (``likelihood() + 2 * label_cross_entropy()``, the hybrid objective).  A new term is a
subclass of :class:`Objective` and one :func:`register` line."""

from nica._src.objectives import (
    LabelCrossEntropy,
    Likelihood,
    Objective,
    WeightedSum,
    get,
    label_cross_entropy,
    likelihood,
    names,
    register,
)

__all__ = [
    "Objective",
    "Likelihood",
    "LabelCrossEntropy",
    "WeightedSum",
    "likelihood",
    "label_cross_entropy",
    "get",
    "register",
    "names",
]
