"""Factorized source priors (SPEC §4): ``gaussian``, ``laplace``, ``logistic``, ``hypsecant``."""

from nica._src.priors import (
    Gaussian,
    HypSecant,
    Laplace,
    Logistic,
    Prior,
    gaussian,
    get,
    hypsecant,
    laplace,
    logistic,
)

__all__ = ["Prior", "Gaussian", "Laplace", "Logistic", "HypSecant",
           "gaussian", "laplace", "logistic", "hypsecant", "get"]
