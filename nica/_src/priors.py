"""Source priors (docs/theory.rst, "Priors" and "Learned source densities").

A prior is a small frozen (hashable, picklable) object with pure functions:

* ``log_density(s)``: elementwise ``log p(s)``,
* ``log_prob(S)``: ``Σ_i log p(s_i)`` over the last axis, shape ``(n_samples,)``, the first
  term of eq. (3),
* ``score(s)``: elementwise ``d log p(s) / ds``,
* ``sample(key, shape, dtype)``: independent draws.

A prior with learned parameters (:class:`LogisticMixture`, the conditional priors) keeps them
outside the object, in a pytree ``prior_params`` made by ``init_params`` and trained beside the
network: ``conditional_log_prob(prior_params, S, u=None)`` and
``conditional_sample(prior_params, key, u, n_components)`` are the interface every prior
implements, so callers never branch.

Every density is written in a numerically stable form (no overflow for large ``|s|``).
"""

from __future__ import annotations

import dataclasses
import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np

from nica._src.validation import check_implements, check_static, refuse_unusable

__all__ = ["Prior", "Gaussian", "Laplace", "Logistic", "HypSecant", "LogisticMixture",
           "SegmentConditional", "MLPConditional", "gaussian", "laplace", "logistic", "hypsecant",
           "logistic_mixture", "segment_conditional", "mlp_conditional", "get"]

_LOG_2PI = math.log(2.0 * math.pi)
_SQRT2 = math.sqrt(2.0)
_LOG_WEIGHTS_TOLERANCE = 1e-4  # |log Σ exp(log_weights)| allowed: float32 rounding, not a mistake


def _check_count(value, name):
    if not isinstance(value, numbers.Integral) or isinstance(value, (bool, np.bool_)) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}.")


def _check_flag(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool; got {value!r}.")


def _check_shape(shape):
    try:
        shape = tuple(shape)
    except TypeError:
        raise TypeError(f"shape must be a tuple of non-negative integers; got {shape!r}.") from None
    if not all(isinstance(n, numbers.Integral) and not isinstance(n, (bool, np.bool_)) and n >= 0 for n in shape):
        raise ValueError(f"shape must be a tuple of non-negative integers; got {shape!r}.")
    return tuple(int(n) for n in shape)


def _as_aux_array(u):
    """``u`` as an array (JAX arrays and tracers as they are; text or objects refused)."""
    if isinstance(u, jax.Array):
        return u
    arr = np.asarray(u)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"u must be a numeric array; got dtype {arr.dtype}.")
    return jnp.asarray(arr)


def _check_base(base):
    if not isinstance(base, Prior):
        raise TypeError(f"base must be an nica.priors object; got {type(base).__name__} (use priors.get).")
    if isinstance(base, _LocationScaleConditional):
        raise ValueError(f"base must be a factorized prior family; got the conditional {type(base).__name__}.")


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
        return self._standard_sample(key, _check_shape(shape), dtype)

    # The conditional interface (eq. 4).  A factorized prior has no parameters of its own and
    # ignores the auxiliary variable, so callers never need to branch.

    def init_params(self, key, n_components, dtype=jnp.float32):
        """The prior's own learnable parameters: none for a fixed factorized prior."""
        return ()

    def param_log_density(self, prior_params, s):
        """Elementwise ``log p(s)`` with the prior's parameters (ignored by a fixed prior).

        ``s`` has the components on its last axis."""
        return self.log_density(s)

    def param_sample(self, prior_params, key, shape, dtype=jnp.float32):
        """Independent draws of ``shape`` (components on the last axis) with the prior's parameters."""
        return self.sample(key, shape, dtype)

    def conditional_log_prob(self, prior_params, S, u=None):
        """``Σ_i log p_i(s_i | u)``; a factorized prior ignores ``u``."""
        return jnp.sum(self.param_log_density(prior_params, S), axis=-1)

    def conditional_sample(self, prior_params, key, u, n_components, dtype=jnp.float32):
        """Draws ``s ~ p(s | u)``, one row per row of ``u``."""
        return self.param_sample(prior_params, key, (jnp.shape(u)[0], n_components), dtype)


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


def _logistic_log_density(z):
    """``log f(z)`` of the standard logistic, stable for large ``|z|``."""
    a = jnp.abs(z)
    return -a - 2.0 * jnp.log1p(jnp.exp(-a))


@dataclasses.dataclass(frozen=True)
class Logistic(Prior):
    """Standard logistic, ``p(s) = e^{−s}/(1 + e^{−s})²`` (scale 1, variance π²/3)."""

    name = "logistic"
    variance = math.pi**2 / 3.0

    def log_density(self, s):
        return _logistic_log_density(s)

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


class _NeedsParams:
    """Mixin for priors whose density depends on learned parameters (or on ``u``): the
    parameter-free methods refuse clearly instead of evaluating some arbitrary shape."""

    def _required_keys(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_prior_params(self, prior_params):
        """Refuse prior parameters that are not this prior's (e.g. ``()`` or another prior's)."""
        keys = self._required_keys()
        if not isinstance(prior_params, dict) or not set(keys) <= set(prior_params):
            got = (f"a dict with keys {sorted(prior_params)}" if isinstance(prior_params, dict)
                   else type(prior_params).__name__)
            raise TypeError(
                f"{type(self).__name__} needs its prior_params, a dict with keys {sorted(keys)} from "
                f"init_params(key, n_components) or a fitted estimator's prior_params_; got {got}."
            )
        return prior_params

    def _refuse(self, what):
        raise TypeError(
            f"{type(self).__name__} has learned parameters: {what} needs them. Use "
            f"param_log_density(prior_params, s) / conditional_log_prob(prior_params, S) / "
            f"conditional_sample(prior_params, key, u, n_components), with prior_params from "
            f"init_params(key, n_components) or a fitted estimator's prior_params_."
        )

    def log_density(self, s):
        self._refuse("log_density(s)")

    def log_prob(self, S):
        self._refuse("log_prob(S)")

    def score(self, s):
        self._refuse("score(s)")

    def sample(self, key, shape, dtype=jnp.float32):
        self._refuse("sample(key, shape)")


@dataclasses.dataclass(frozen=True)
class LogisticMixture(_NeedsParams, Prior):
    r"""A learned source density: per component, a mixture of ``n_mixtures`` logistics.

    .. math::

        p_i(s) = \sum_{k=1}^{K} \pi_{ik}\, \frac{1}{\sigma_{ik}}
                 f\!\left(\frac{s - \mu_{ik}}{\sigma_{ik}}\right),
        \qquad f(z) = \frac{e^{-z}}{(1 + e^{-z})^2},
        \qquad \pi_{i\cdot} = \operatorname{softmax}(a_{i\cdot}),

    normalised in closed form, with weights (logits ``a``), locations ``μ`` and log-scales
    ``log σ`` learned for each source by exact likelihood beside the network (ordinary
    gradients).  It can be super-Gaussian (peaked, heavy-tailed), sub-Gaussian (flat, bounded
    looking), skewed or multimodal, so that sources of either kind are separated; a fixed
    super-Gaussian prior cannot separate sub-Gaussian sources.  Sampling is exact (a component,
    then a logistic draw).  The cost is ``O(B·D·K)`` per step, negligible next to the
    network's ``O(L·B·D²)``.

    The parameters live outside the object (``init_params``), so the parameter-free methods
    (``log_prob(S)``, ``sample``) raise; use ``conditional_log_prob(prior_params, S)`` and
    ``conditional_sample``.  The initial shape (``init_params``) is a smooth unit-variance
    density close to a logistic.

    Parameters
    ----------
    n_mixtures : int, default=4
        Number of logistic components ``K`` per source.  Two already model sub-Gaussian
        (bimodal or flat), super-Gaussian (a scale mixture) and skewed sources, which is what
        separation needs; four model sharp-edged (uniform-like) and heavy-tailed densities
        well enough that linear ICA with 64 sources from 5,000 rows is as accurate as FastICA
        (with two: MCC 0.986 against 0.996).  Started far from the solution, a mixture with
        more than two components can also fit the multimodal marginal of two bimodal sources
        still mixed at 45°, a spurious optimum; the estimators' FastICA start (linear ICA)
        avoids it (docs/benchmarks.md, "Defaults").
    """

    n_mixtures: int = 4
    name = "logistic_mixture"

    def __post_init__(self):
        _check_count(self.n_mixtures, "n_mixtures")

    def init_params(self, key, n_components, dtype=jnp.float32):
        """``{"logits", "loc", "log_scale"}``, each of shape ``(n_components, n_mixtures)``.

        Deterministic (``key`` is not used): equal weights, locations evenly spread over
        ``[−c, c]`` and one common scale of half their spacing, rescaled so that the density
        has unit variance.
        """
        K = self.n_mixtures
        if K == 1:
            loc = jnp.zeros((1,), dtype)
            scale = math.sqrt(3.0) / math.pi
        else:
            spacing = 2.0 * _INIT_HALF_WIDTH / (K - 1)
            loc = jnp.linspace(-_INIT_HALF_WIDTH, _INIT_HALF_WIDTH, K, dtype=dtype)
            scale = _INIT_SCALE_PER_SPACING * spacing
            # rescale so that the mixture has unit variance: mean(μ²) + σ²π²/3 = 1
            total = float(jnp.mean(loc.astype(jnp.float32) ** 2)) + scale**2 * math.pi**2 / 3.0
            loc = loc / math.sqrt(total)
            scale = scale / math.sqrt(total)
        shape = (n_components, K)
        return {
            "logits": jnp.zeros(shape, dtype),
            "loc": jnp.broadcast_to(loc, shape).astype(dtype),
            "log_scale": jnp.full(shape, math.log(scale), dtype),
        }

    def _required_keys(self):
        return ("logits", "loc", "log_scale")

    def param_log_density(self, prior_params, s):
        self._check_prior_params(prior_params)
        lead = (1,) * (jnp.ndim(s) - 1)  # explicit broadcasting over the leading (sample) axes
        log_w, loc, log_scale = (jnp.reshape(a, lead + jnp.shape(a)) for a in (
            jax.nn.log_softmax(prior_params["logits"], axis=-1), prior_params["loc"],
            prior_params["log_scale"]))
        z = (s[..., None] - loc) * jnp.exp(-log_scale)  # (..., D, K)
        return jax.nn.logsumexp(log_w + _logistic_log_density(z) - log_scale, axis=-1)

    def param_sample(self, prior_params, key, shape, dtype=jnp.float32):
        self._check_prior_params(prior_params)
        shape = _check_shape(shape)
        key_component, key_noise = jax.random.split(key)
        k = jax.random.categorical(key_component, prior_params["logits"], axis=-1, shape=shape)

        def chosen(table):  # each draw's component's entry of a (D, K) table
            return jnp.take_along_axis(jnp.broadcast_to(table, (*shape, self.n_mixtures)), k[..., None], -1)[..., 0]

        eps = jax.random.logistic(key_noise, shape, dtype)
        return (chosen(prior_params["loc"]) + jnp.exp(chosen(prior_params["log_scale"])) * eps).astype(dtype)


_INIT_HALF_WIDTH = 1.0        # initial locations evenly spread over [−1, 1] (before rescaling)
_INIT_SCALE_PER_SPACING = 0.5  # initial logistic scale, in units of the spacing of the locations


def logistic_mixture(n_mixtures=4) -> LogisticMixture:
    """A learned source density: per source, a mixture of ``n_mixtures`` logistics.

    The shape of each source's density (weights, locations, scales) is fitted with the network
    by exact likelihood, so sub-Gaussian (uniform, bimodal), super-Gaussian and skewed sources
    are all modelled; see :class:`LogisticMixture`.

    Parameters
    ----------
    n_mixtures : int, default=4

    Returns
    -------
    LogisticMixture

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from nica import priors
    >>> prior = priors.logistic_mixture(4)
    >>> theta = prior.init_params(jax.random.key(0), n_components=3)
    >>> theta["loc"].shape
    (3, 4)
    >>> prior.conditional_log_prob(theta, jnp.zeros((5, 3))).shape
    (5,)
    """
    _check_count(n_mixtures, "n_mixtures")
    return LogisticMixture(int(n_mixtures))


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


def _scaled_log_prob(base, base_params, S, log_scale, loc):
    z = (S - loc) * jnp.exp(-log_scale)
    return jnp.sum(base.param_log_density(base_params, z) - log_scale, axis=-1)


class _LocationScaleConditional(_NeedsParams, Prior):
    """Shared part of the conditional priors: ``base`` rescaled and shifted by parameters that
    depend on ``u``; subclasses give ``_scale_and_loc(prior_params, u)``."""

    base: Prior

    @property
    def variance(self):
        return self.base.variance

    def _scale_and_loc(self, prior_params, u):  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_u(self, u):
        """``u`` as an array, refused (``ValueError``) unless it suits this prior."""
        return _as_aux_array(u)

    def conditional_log_prob(self, prior_params, S, u=None):
        """``Σ_i log p_i(s_i | u)`` with the scales and locations given by ``u``."""
        if u is None:
            raise ValueError("A conditional prior needs the auxiliary variable u; got None.")
        log_scale, loc = self._scale_and_loc(self._check_prior_params(prior_params), u)
        if jnp.ndim(S) != 2 or jnp.shape(S) != jnp.shape(log_scale):
            raise ValueError(f"S must have shape (n_samples, n_components) = {jnp.shape(log_scale)} "
                             f"to match u and prior_params; got shape {jnp.shape(S)}.")
        return _scaled_log_prob(self.base, prior_params.get("base", ()), S, log_scale, loc)

    def conditional_sample(self, prior_params, key, u, n_components, dtype=jnp.float32):
        """Draws ``s ~ p(s | u)``, one row per row of ``u``."""
        log_scale, loc = self._scale_and_loc(self._check_prior_params(prior_params), u)
        eps = self.base.param_sample(prior_params.get("base", ()), key, log_scale.shape, dtype)
        return eps * jnp.exp(log_scale) + loc

    def _with_base_params(self, params, key, n_components, dtype):
        """Add the base family's own learned parameters (its shape), shared by every ``u``."""
        base_params = self.base.init_params(key, n_components, dtype)
        if jax.tree_util.tree_leaves(base_params):
            params["base"] = base_params
        return params

    def _refuse(self, what):
        raise TypeError(
            f"{type(self).__name__} depends on u: {what} is not defined; use "
            "conditional_log_prob(prior_params, S, u) / conditional_sample(prior_params, key, u, n)."
        )


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

    def __post_init__(self):
        _check_base(self.base)
        _check_count(self.n_segments, "n_segments")
        _check_flag(self.learn_location, "learn_location")

    def _required_keys(self):
        return ("log_scale", "loc") if self.learn_location else ("log_scale",)

    def init_params(self, key, n_components, dtype=jnp.float32):
        shape = (self.n_segments, n_components)
        params = {"log_scale": jnp.zeros(shape, dtype)}
        if self.learn_location:
            params["loc"] = jnp.zeros(shape, dtype)
        return self._with_base_params(params, key, n_components, dtype)

    def _scale_and_loc(self, prior_params, u):
        u = self._check_u(u)
        # An id outside [0, n_segments) reads NaN (a NaN loss, never another segment's
        # parameters): out-of-range gathers would otherwise be clamped, negative ids wrapped.
        u = jnp.where((u >= 0) & (u < self.n_segments), u, self.n_segments)

        def gather(table):
            return table.at[u].get(mode="fill", fill_value=jnp.nan)

        log_scale = gather(prior_params["log_scale"])
        loc = gather(prior_params["loc"]) if self.learn_location else jnp.zeros_like(log_scale)
        return log_scale, loc

    def _check_u(self, u):
        """Segment ids: a 1-D integer array; values in ``[0, n_segments)`` when concrete."""
        u = _as_aux_array(u)
        if u.ndim != 1 or not jnp.issubdtype(u.dtype, jnp.integer):
            raise ValueError(
                f"{type(self).__name__} needs u as a 1-D array of integer segment ids in "
                f"[0, {self.n_segments}); got shape {u.shape} and dtype {u.dtype}."
            )
        if not isinstance(u, jax.core.Tracer) and u.size:
            low, high = int(jnp.min(u)), int(jnp.max(u))
            if low < 0 or high >= self.n_segments:
                raise ValueError(f"u holds segment ids from {low} to {high}, outside [0, {self.n_segments}) "
                                 f"for this {type(self).__name__} with n_segments={self.n_segments}.")
        return u

    def marginal_log_prob(self, prior_params, S, log_weights=None):
        r"""The segment mixture: ``log Σ_u π_u p(s | u)`` per row, the prior term of the marginal
        likelihood over the segment labels.

        .. math::

            \log p(s) = \operatorname{logsumexp}_u \Big(\log \pi_u
                         + \sum_i \log p_i(s_i \mid u)\Big)

        Only this term depends on ``u``: the marginal log-likelihood of observations is
        ``marginal_log_prob(prior_params, S, log_weights) + log_det`` with ``S, log_det`` from
        one run of :func:`nica.forward_and_log_det`.  Every segment is scored at once (memory
        ``n_segments × n_samples × n_components``).

        Parameters
        ----------
        prior_params : dict
            This prior's parameters (``init_params`` or a fitted estimator's ``prior_params_``).
        S : array of shape (n_samples, n_components)
            Sources.
        log_weights : array of shape (n_segments,), optional
            ``log π_u``, the segments' log-probabilities (a fitted
            :class:`~nica.ConditionalNonlinearICA`'s ``segment_log_weights_``); they must sum
            to one after exponentiation (checked when the values are known, ``-inf`` allowed).
            Default: equal weights, ``−log n_segments``.

        Returns
        -------
        jax.Array of shape (n_samples,)

        Examples
        --------
        >>> import jax, jax.numpy as jnp
        >>> from nica import priors
        >>> prior = priors.segment_conditional("laplace", n_segments=3)
        >>> theta = prior.init_params(jax.random.key(0), n_components=2)
        >>> prior.marginal_log_prob(theta, jnp.zeros((5, 2)), jnp.log(jnp.array([0.5, 0.25, 0.25]))).shape
        (5,)
        """
        prior_params = self._check_prior_params(prior_params)
        log_scale = prior_params["log_scale"]
        n_components = jnp.shape(log_scale)[1]
        if jnp.ndim(S) != 2 or jnp.shape(S)[1] != n_components:
            raise ValueError(f"S must have shape (n_samples, {n_components}) to match prior_params; "
                             f"got shape {jnp.shape(S)}.")
        S = jnp.asarray(S)
        if log_weights is None:
            log_weights = jnp.full((self.n_segments,), -math.log(self.n_segments), S.dtype)
        log_weights = self._check_log_weights(log_weights).astype(S.dtype)
        loc = prior_params["loc"] if self.learn_location else jnp.zeros_like(log_scale)
        per_segment = _scaled_log_prob(self.base, prior_params.get("base", ()), S[None, :, :],
                                       log_scale[:, None, :], loc[:, None, :])  # (n_segments, n_samples)
        return jax.nn.logsumexp(per_segment + log_weights[:, None], axis=0)

    def _check_log_weights(self, log_weights):
        """A real vector of ``n_segments`` log-probabilities (normalised when concrete)."""
        if not isinstance(log_weights, jax.Array):
            arr = np.asarray(log_weights)
            if arr.dtype.kind not in "biuf":
                raise TypeError(f"log_weights must be a float array of shape ({self.n_segments},); got dtype "
                                f"{arr.dtype}.")
            log_weights = jnp.asarray(arr)
        if jnp.shape(log_weights) != (self.n_segments,) or not jnp.issubdtype(log_weights.dtype, jnp.floating):
            raise ValueError(f"log_weights must be a float array of shape ({self.n_segments},), one "
                             f"log-probability per segment; got shape {jnp.shape(log_weights)} and "
                             f"dtype {log_weights.dtype}.")
        if not isinstance(log_weights, jax.core.Tracer):
            total = float(jax.nn.logsumexp(log_weights))
            if not abs(total) <= _LOG_WEIGHTS_TOLERANCE:
                raise ValueError(f"log_weights must be log-probabilities: exp(log_weights) sums to "
                                 f"{math.exp(total) if total < 700 else math.inf:.6g}, not 1.")
        return log_weights


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

    def __post_init__(self):
        _check_base(self.base)
        _check_count(self.n_aux, "n_aux")
        _check_count(self.hidden_units, "hidden_units")
        _check_flag(self.learn_location, "learn_location")

    def _required_keys(self):
        return ("W1", "b1", "W2", "b2")

    def init_params(self, key, n_components, dtype=jnp.float32):
        n_out = 2 * n_components if self.learn_location else n_components
        key, base_key = jax.random.split(key)
        params = {
            "W1": jax.random.normal(key, (self.n_aux, self.hidden_units), dtype) / math.sqrt(self.n_aux),
            "b1": jnp.zeros((self.hidden_units,), dtype),
            "W2": jnp.zeros((self.hidden_units, n_out), dtype),
            "b2": jnp.zeros((n_out,), dtype),
        }
        return self._with_base_params(params, base_key, n_components, dtype)

    def _check_u(self, u):
        """A real array of shape ``(n_samples, n_aux)``."""
        u = _as_aux_array(u)
        if u.ndim != 2 or u.shape[1] != self.n_aux or not jnp.issubdtype(u.dtype, jnp.number) \
                or jnp.issubdtype(u.dtype, jnp.complexfloating):
            raise ValueError(f"{type(self).__name__} needs u as a real array of shape (n_samples, "
                             f"{self.n_aux}); got shape {u.shape} and dtype {u.dtype}.")
        return u

    def _scale_and_loc(self, prior_params, u):
        u = self._check_u(u)
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
    _check_count(n_segments, "n_segments")
    _check_flag(learn_location, "learn_location")
    return SegmentConditional(get(base), int(n_segments), bool(learn_location))


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
    _check_count(n_aux, "n_aux")
    _check_count(hidden_units, "hidden_units")
    _check_flag(learn_location, "learn_location")
    return MLPConditional(get(base), int(n_aux), int(hidden_units), bool(learn_location))


_REGISTRY = {"gaussian": gaussian, "laplace": laplace, "logistic": logistic, "hypsecant": hypsecant,
             "logistic_mixture": logistic_mixture}


def get(prior) -> Prior:
    """Return a :class:`Prior` from an object or one of the registered names.

    Parameters
    ----------
    prior : str or Prior
        ``"gaussian"``, ``"laplace"``, ``"logistic"``, ``"hypsecant"``, ``"logistic_mixture"``
        (a learned density with the default number of mixture components) or a prior object.

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
        check_static(prior, "prior")
        return check_implements(prior, Prior, "prior",
                                [("log_density", "param_log_density", "conditional_log_prob")])
    if isinstance(prior, str):
        try:
            return _REGISTRY[prior]()
        except KeyError:
            raise ValueError(
                f"Unknown prior {prior!r}; expected one of {sorted(_REGISTRY)} "
                "or an nica.priors object."
            ) from None
    raise refuse_unusable(prior, "prior", Prior, _REGISTRY, ("segment_conditional", "mlp_conditional"))
