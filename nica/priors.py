"""Source priors: fixed factorized ``gaussian``, ``laplace``, ``logistic``, ``hypsecant``; the
learned density ``logistic_mixture``; and conditional ``segment_conditional`` (discrete u) and
``mlp_conditional`` (continuous u).  A new factorized prior is a subclass of :class:`Prior` and
one :func:`register` line."""

from nica._src.conditional import (
    ConditionalPrior,
    MLPConditional,
    SegmentConditional,
    mlp_conditional,
    segment_conditional,
)
from nica._src.priors import (
    Gaussian,
    HypSecant,
    Laplace,
    LearnedPrior,
    Logistic,
    LogisticMixture,
    Prior,
    gaussian,
    get,
    hypsecant,
    laplace,
    logistic,
    logistic_mixture,
    names,
    register,
)

__all__ = [
    "Prior",
    "LearnedPrior",
    "ConditionalPrior",
    "Gaussian",
    "Laplace",
    "Logistic",
    "HypSecant",
    "LogisticMixture",
    "SegmentConditional",
    "MLPConditional",
    "gaussian",
    "laplace",
    "logistic",
    "hypsecant",
    "logistic_mixture",
    "segment_conditional",
    "mlp_conditional",
    "get",
    "register",
    "names",
]
