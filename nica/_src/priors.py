"""Factorized source priors (SPEC §4).

A prior is a small frozen (hashable, picklable) object with pure functions:

* ``log_density(s)``: elementwise ``log p(s)``,
* ``log_prob(S)``: ``Σ_i log p(s_i)`` over the last axis, shape ``(n_samples,)``, the first
  term of eq. (3),
* ``score(s)``: elementwise ``d log p(s) / ds``,
* ``sample(key, shape, dtype)``: independent draws.

Every density is written in a numerically stable form (no overflow for large ``|s|``).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

__all__ = ["Prior", "Gaussian", "Laplace", "Logistic", "HypSecant",
           "gaussian", "laplace", "logistic", "hypsecant", "get"]

_LOG_2PI = math.log(2.0 * math.pi)
_SQRT2 = math.sqrt(2.0)


class Prior:
    """Base class of nica's factorized priors: subclasses define ``log_density``, ``score``,
    ``_standard_sample`` and ``variance``."""

    name: str = "prior"
    variance: float = 1.0

    def log_density(self, s):  # pragma: no cover - abstract
        raise NotImplementedError

    def score(self, s):  # pragma: no cover - abstract
        raise NotImplementedError

    def _standard_sample(self, key, shape, dtype):  # pragma: no cover - abstract
        raise NotImplementedError

    def log_prob(self, S):
        """Sum of :meth:`log_density` over the last axis (the components): shape ``S.shape[:-1]``."""
        return jnp.sum(self.log_density(S), axis=-1)

    def sample(self, key, shape, dtype=jnp.float32):
        """Independent draws of the given shape, as a JAX array of ``dtype``."""
        return self._standard_sample(key, tuple(shape), dtype)


@dataclasses.dataclass(frozen=True)
class Gaussian(Prior):
    """Standard normal, ``p(s) = exp(−s²/2)/√(2π)``."""

    name = "gaussian"
    variance = 1.0

    def log_density(self, s):
        return -0.5 * s**2 - 0.5 * _LOG_2PI

    def score(self, s):
        return -s

    def _standard_sample(self, key, shape, dtype):
        return jax.random.normal(key, shape, dtype)


@dataclasses.dataclass(frozen=True)
class Laplace(Prior):
    """Unit-variance Laplace, ``p(s) = exp(−√2·|s|)/√2``."""

    name = "laplace"
    variance = 1.0

    def log_density(self, s):
        return -_SQRT2 * jnp.abs(s) - 0.5 * math.log(2.0)

    def score(self, s):
        return -_SQRT2 * jnp.sign(s)

    def _standard_sample(self, key, shape, dtype):
        return jax.random.laplace(key, shape, dtype) / _SQRT2


@dataclasses.dataclass(frozen=True)
class Logistic(Prior):
    """Standard logistic, ``p(s) = e^{−s}/(1 + e^{−s})²`` (scale 1, variance π²/3)."""

    name = "logistic"
    variance = math.pi**2 / 3.0

    def log_density(self, s):
        a = jnp.abs(s)
        return -a - 2.0 * jnp.log1p(jnp.exp(-a))

    def score(self, s):
        return -jnp.tanh(0.5 * s)

    def _standard_sample(self, key, shape, dtype):
        return jax.random.logistic(key, shape, dtype)


@dataclasses.dataclass(frozen=True)
class HypSecant(Prior):
    """Unit-variance hyperbolic secant, ``p(s) = ½ sech(πs/2)``."""

    name = "hypsecant"
    variance = 1.0

    def log_density(self, s):
        # log(½ sech z) = −|z| − log(1 + e^{−2|z|}) with z = πs/2.
        a = 0.5 * math.pi * jnp.abs(s)
        return -a - jnp.log1p(jnp.exp(-2.0 * a))

    def score(self, s):
        return -0.5 * math.pi * jnp.tanh(0.5 * math.pi * s)

    def _standard_sample(self, key, shape, dtype):
        # Inverse CDF: F(s) = (2/π)·arctan(exp(πs/2))  ⇒  s = (2/π)·log(tan(πu/2)).
        u = jax.random.uniform(key, shape, dtype, minval=jnp.finfo(dtype).tiny, maxval=1.0)
        return (2.0 / math.pi) * jnp.log(jnp.tan(0.5 * math.pi * u))


def gaussian() -> Gaussian:
    """Standard normal prior.

    Returns
    -------
    Gaussian

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from nica import priors
    >>> round(float(priors.gaussian().log_prob(jnp.zeros((1, 2)))[0]), 4)
    -1.8379
    """
    return Gaussian()


def laplace() -> Laplace:
    """Unit-variance Laplace prior (super-Gaussian; the usual ICA choice).

    Returns
    -------
    Laplace

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from nica import priors
    >>> priors.laplace().log_prob(jnp.zeros((3, 4))).shape
    (3,)
    """
    return Laplace()


def logistic() -> Logistic:
    """Standard logistic prior (scale 1, variance π²/3).

    Returns
    -------
    Logistic

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from nica import priors
    >>> round(float(priors.logistic().log_density(jnp.array(0.0))), 4)
    -1.3863
    """
    return Logistic()


def hypsecant() -> HypSecant:
    """Unit-variance hyperbolic-secant prior ``½ sech(πs/2)``.

    Returns
    -------
    HypSecant

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from nica import priors
    >>> round(float(priors.hypsecant().log_density(jnp.array(0.0))), 4)
    -0.6931
    """
    return HypSecant()


_REGISTRY = {"gaussian": gaussian, "laplace": laplace, "logistic": logistic, "hypsecant": hypsecant}


def get(prior) -> Prior:
    """Return a :class:`Prior` from an object or one of the names in SPEC §4.

    Parameters
    ----------
    prior : str or Prior
        ``"gaussian"``, ``"laplace"``, ``"logistic"``, ``"hypsecant"`` or a prior object.

    Returns
    -------
    Prior

    Examples
    --------
    >>> from nica import priors
    >>> priors.get("laplace")
    Laplace()
    """
    if isinstance(prior, Prior):
        return prior
    if isinstance(prior, str):
        try:
            return _REGISTRY[prior]()
        except KeyError:
            raise ValueError(
                f"Unknown prior {prior!r}; expected one of {sorted(_REGISTRY)} "
                "or an nica.priors object."
            ) from None
    raise TypeError(
        f"prior must be a string in {sorted(_REGISTRY)} or an nica.priors object; "
        f"got {type(prior).__name__}."
    )
