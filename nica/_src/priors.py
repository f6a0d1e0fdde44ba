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

__all__ = ["Prior", "Gaussian", "Laplace", "Logistic", "HypSecant", "SegmentConditional",
           "MLPConditional", "gaussian", "laplace", "logistic", "hypsecant", "segment_conditional",
           "mlp_conditional", "get"]

_LOG_2PI = math.log(2.0 * math.pi)
_SQRT2 = math.sqrt(2.0)


class Prior:
    """Base class of nica's factorized priors: subclasses define ``log_density``, ``score``,
    ``_standard_sample`` and ``variance``."""

    name: str = "prior"
    variance: float = 1.0

    def log_density(self, s):  # pragma: no cover - abstract
        """Elementwise ``log p(s)``.

        Parameters
        ----------
        s : array

        Returns
        -------
        array of the same shape
        """
        raise NotImplementedError

    def score(self, s):  # pragma: no cover - abstract
        """Elementwise score ``d log p(s) / ds``.

        Parameters
        ----------
        s : array

        Returns
        -------
        array of the same shape
        """
        raise NotImplementedError

    def _standard_sample(self, key, shape, dtype):  # pragma: no cover - abstract
        raise NotImplementedError

    def log_prob(self, S):
        """Sum of :meth:`log_density` over the last axis (the components): shape ``S.shape[:-1]``."""
        return jnp.sum(self.log_density(S), axis=-1)

    def sample(self, key, shape, dtype=jnp.float32):
        """Independent draws of the given shape, as a JAX array of ``dtype``."""
        return self._standard_sample(key, tuple(shape), dtype)

    # The conditional interface (eq. 4).  A factorized prior has no parameters of its own and
    # ignores the auxiliary variable, so callers never need to branch.

    def init_params(self, key, n_components, dtype=jnp.float32):
        """The prior's own learnable parameters: none for a factorized prior."""
        return ()

    def conditional_log_prob(self, prior_params, S, u=None):
        """``Σ_i log p_i(s_i | u)``; a factorized prior ignores ``prior_params`` and ``u``."""
        return self.log_prob(S)

    def conditional_sample(self, prior_params, key, u, n_components, dtype=jnp.float32):
        """Draws ``s ~ p(s | u)``, one row per row of ``u``."""
        return self.sample(key, (jnp.shape(u)[0], n_components), dtype)


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


# ---------------------------------------------------------------------------------------------
# conditional priors, eq. (4): a base family whose per-component scale and location depend on u


def _scaled_log_prob(base, S, log_scale, loc):
    z = (S - loc) * jnp.exp(-log_scale)
    return jnp.sum(base.log_density(z) - log_scale, axis=-1)


class _LocationScaleConditional(Prior):
    """Shared part of the conditional priors: ``base`` rescaled and shifted by parameters that
    depend on ``u``; subclasses give ``_scale_and_loc(prior_params, u)``."""

    base: Prior

    @property
    def variance(self):
        return self.base.variance

    def _scale_and_loc(self, prior_params, u):  # pragma: no cover - abstract
        raise NotImplementedError

    def conditional_log_prob(self, prior_params, S, u=None):
        """``Σ_i log p_i(s_i | u)`` with the scales and locations given by ``u``."""
        if u is None:
            raise ValueError("A conditional prior needs the auxiliary variable u; got None.")
        return _scaled_log_prob(self.base, S, *self._scale_and_loc(prior_params, u))

    def conditional_sample(self, prior_params, key, u, n_components, dtype=jnp.float32):
        """Draws ``s ~ p(s | u)``, one row per row of ``u``."""
        log_scale, loc = self._scale_and_loc(prior_params, u)
        eps = self.base.sample(key, log_scale.shape, dtype)
        return eps * jnp.exp(log_scale) + loc


@dataclasses.dataclass(frozen=True)
class SegmentConditional(_LocationScaleConditional):
    """``p(s_i | u) = p_base((s_i − μ_{u,i}) / σ_{u,i}) / σ_{u,i}`` for a segment label ``u``.

    Learned parameters: ``log_scale`` (and ``loc`` when ``learn_location``), each of shape
    ``(n_segments, n_components)``, initialised at zero (the base density).  ``u`` holds
    integer labels in ``[0, n_segments)``.  Build it with :func:`segment_conditional`.

    Parameters
    ----------
    base : Prior
        The family: each component is ``base`` rescaled and shifted per segment.
    n_segments : int
        Number of segment labels.
    learn_location : bool, default=True
        Learn ``loc`` as well as ``log_scale``.
    """

    base: Prior
    n_segments: int
    learn_location: bool = True
    name = "segment_conditional"

    def init_params(self, key, n_components, dtype=jnp.float32):
        shape = (self.n_segments, n_components)
        params = {"log_scale": jnp.zeros(shape, dtype)}
        if self.learn_location:
            params["loc"] = jnp.zeros(shape, dtype)
        return params

    def _scale_and_loc(self, prior_params, u):
        log_scale = prior_params["log_scale"][u]
        loc = prior_params["loc"][u] if self.learn_location else jnp.zeros_like(log_scale)
        return log_scale, loc


@dataclasses.dataclass(frozen=True)
class MLPConditional(_LocationScaleConditional):
    """Like :class:`SegmentConditional` for a continuous ``u`` of shape ``(n, n_aux)``: the
    log-scales and locations are a one-hidden-layer tanh network of ``u``.

    The output layer starts at zero, so training starts from the base density.  Build it with
    :func:`mlp_conditional`.

    Parameters
    ----------
    base : Prior
        The family of each component.
    n_aux : int
        Dimension of ``u``.
    hidden_units : int, default=32
        Width of the hidden layer.
    learn_location : bool, default=True
        Learn locations as well as log-scales.
    """

    base: Prior
    n_aux: int
    hidden_units: int = 32
    learn_location: bool = True
    name = "mlp_conditional"

    def init_params(self, key, n_components, dtype=jnp.float32):
        n_out = 2 * n_components if self.learn_location else n_components
        return {
            "W1": jax.random.normal(key, (self.n_aux, self.hidden_units), dtype) / math.sqrt(self.n_aux),
            "b1": jnp.zeros((self.hidden_units,), dtype),
            "W2": jnp.zeros((self.hidden_units, n_out), dtype),
            "b2": jnp.zeros((n_out,), dtype),
        }

    def _scale_and_loc(self, prior_params, u):
        p = prior_params
        hidden = jnp.tanh(u @ p["W1"] + p["b1"][None, :])
        out = hidden @ p["W2"] + p["b2"][None, :]
        if not self.learn_location:
            return out, jnp.zeros_like(out)
        log_scale, loc = jnp.split(out, 2, axis=-1)
        return log_scale, loc



def segment_conditional(base="laplace", n_segments=2, *, learn_location=True) -> SegmentConditional:
    """Conditional prior for segment labels (eq. 4): learned per-segment scales and locations.

    Parameters
    ----------
    base : str or Prior, default="laplace"
        The family: each component is ``base`` rescaled and shifted per segment.
    n_segments : int, default=2
    learn_location : bool, default=True

    Returns
    -------
    SegmentConditional

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from nica import priors
    >>> prior = priors.segment_conditional("laplace", n_segments=3)
    >>> theta = prior.init_params(jax.random.key(0), n_components=2)
    >>> prior.conditional_log_prob(theta, jnp.zeros((4, 2)), jnp.array([0, 1, 2, 0])).shape
    (4,)
    """
    if not isinstance(n_segments, int) or n_segments < 1:
        raise ValueError(f"n_segments must be a positive integer; got {n_segments!r}.")
    return SegmentConditional(get(base), n_segments, bool(learn_location))


def mlp_conditional(base="laplace", n_aux=1, *, hidden_units=32, learn_location=True) -> MLPConditional:
    """Conditional prior for a continuous auxiliary variable: scales and locations from a small MLP.

    Parameters
    ----------
    base : str or Prior, default="laplace"
    n_aux : int, default=1
        Dimension of ``u``.
    hidden_units : int, default=32
    learn_location : bool, default=True

    Returns
    -------
    MLPConditional

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from nica import priors
    >>> prior = priors.mlp_conditional("gaussian", n_aux=1)
    >>> theta = prior.init_params(jax.random.key(0), n_components=2)
    >>> prior.conditional_log_prob(theta, jnp.zeros((4, 2)), jnp.ones((4, 1))).shape
    (4,)
    """
    for name, value in (("n_aux", n_aux), ("hidden_units", hidden_units)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}.")
    return MLPConditional(get(base), n_aux, hidden_units, bool(learn_location))


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
