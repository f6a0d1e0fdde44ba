"""Source priors: fixed factorized ``gaussian``, ``laplace``, ``logistic``, ``hypsecant``; the
learned density ``logistic_mixture``; and conditional ``segment_conditional`` (discrete u) and
``mlp_conditional`` (continuous u)."""

from nica._src.priors import (
    Gaussian,
    HypSecant,
    Laplace,
    Logistic,
    LogisticMixture,
    MLPConditional,
    Prior,
    SegmentConditional,
    gaussian,
    get,
    hypsecant,
    laplace,
    logistic,
    logistic_mixture,
    mlp_conditional,
    segment_conditional,
)

__all__ = ["Prior", "Gaussian", "Laplace", "Logistic", "HypSecant", "LogisticMixture",
           "SegmentConditional", "MLPConditional", "gaussian", "laplace", "logistic", "hypsecant",
           "logistic_mixture", "segment_conditional", "mlp_conditional", "get"]
