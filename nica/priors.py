"""Source priors (SPEC §4): factorized ``gaussian``, ``laplace``, ``logistic``, ``hypsecant``, and
conditional ``segment_conditional`` (discrete u) and ``mlp_conditional`` (continuous u)."""

from nica._src.priors import (
    Gaussian,
    HypSecant,
    Laplace,
    Logistic,
    MLPConditional,
    Prior,
    SegmentConditional,
    gaussian,
    get,
    hypsecant,
    laplace,
    logistic,
    mlp_conditional,
    segment_conditional,
)

__all__ = ["Prior", "Gaussian", "Laplace", "Logistic", "HypSecant", "SegmentConditional",
           "MLPConditional", "gaussian", "laplace", "logistic", "hypsecant", "segment_conditional",
           "mlp_conditional", "get"]
