"""Conditional priors (eq. 4): a factorized base family whose per-component scale and location
depend on an auxiliary variable ``u`` (docs/theory.rst, "Priors"), and the label posterior of
the segment-conditional model.

For a segment label ``u`` (:class:`SegmentConditional`), Bayes' rule on the model gives the
posterior of the label of an observation:

    log p(u | x) = log p(g(x) | u) − logsumexp_{u'} log p(g(x) | u')

(uniform label prior).  The log-determinant of the Jacobian and any whitening do not depend on
``u`` and cancel, so the posterior needs one run of the network and ``M`` evaluations of the
prior: ``B × M × D`` for a batch of ``B`` rows and ``M`` segments.  It is the classifier that
time-contrastive learning trains (a multinomial logistic regression on the sources), here made
from the same network and the same per-segment scales and locations as the likelihood; the
hybrid objective (:mod:`nica.objectives`) adds its cross-entropy to the likelihood.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from nica._src._checks import check_bool, check_int
from nica._src.priors import LearnedPrior, Prior, as_aux_array, get

__all__ = ["ConditionalPrior", "SegmentConditional", "MLPConditional", "segment_conditional", "mlp_conditional"]

_LOG_WEIGHTS_TOLERANCE = 1e-4  # |log Σ exp(log_weights)| allowed: float32 rounding, not a mistake


def _check_base(base):
    if not isinstance(base, Prior):
        raise TypeError(f"base must be an nica.priors object; got {type(base).__name__} (use priors.get).")
    if base.conditional:
        raise ValueError(f"base must be a factorized prior family; got the conditional {type(base).__name__}.")


def _scaled_log_prob(base, base_params, S, log_scale, loc):
    z = (S - loc) * jnp.exp(-log_scale)
    return jnp.sum(base.param_log_density(base_params, z) - log_scale, axis=-1)


# Up to this many components, every segment's log-density of a fixed (elementwise) base is summed
# from one (segments × rows) slab per component: rows contiguous, which XLA's CPU code vectorises
# (value and gradient at D = 5, 40 segments, 256 rows: 164 µs against 318 µs for the
# (rows × segments × components) broadcast; at D = 20: 483 against 578 µs).  Above it, the
# broadcast (an unrolled loop would grow the program with D).
_SLAB_COMPONENTS = 32


def _segment_log_probs(base, base_params, S, log_scale, loc):
    """``log p(s_n | segment k)`` for every segment ``k`` and row ``n``: shape ``(M, B)``."""
    if jax.tree_util.tree_leaves(base_params) or S.shape[1] > _SLAB_COMPONENTS:
        return _scaled_log_prob(base, base_params, S[None, :, :], log_scale[:, None, :], loc[:, None, :])
    inv_scale = jnp.exp(-log_scale)
    total = -jnp.sum(log_scale, axis=1)[:, None]
    for i in range(S.shape[1]):
        total = total + base.param_log_density(base_params, (S[None, :, i] - loc[:, i, None]) * inv_scale[:, i, None])
    return total


class ConditionalPrior(LearnedPrior):
    """Base class of the conditional priors: ``base`` rescaled and shifted by parameters that
    depend on ``u``.

    A subclass gives ``_scale_and_loc(prior_params, u)`` (the per-row log-scales and
    locations), :meth:`check_aux` (what ``u`` it takes), ``init_params`` and
    ``_required_keys``; the densities and the sampler follow.
    """

    base: Prior
    conditional: ClassVar[bool] = True

    @property
    def variance(self):
        return self.base.variance

    @abc.abstractmethod
    def _scale_and_loc(self, prior_params, u):  # pragma: no cover - abstract
        """``(log_scale, loc)``, each of shape ``(n_samples, n_components)``."""

    def check_aux(self, u):
        """``u`` as an array, refused (``ValueError``) unless it suits this prior."""
        return as_aux_array(u)

    def param_log_density(self, prior_params, s):
        self._refuse("param_log_density(prior_params, s)")

    def param_sample(self, prior_params, key, shape, dtype=jnp.float32):
        self._refuse("param_sample(prior_params, key, shape)")

    def conditional_log_prob(self, prior_params, S, u=None):
        """``Σ_i log p_i(s_i | u)`` with the scales and locations given by ``u``."""
        if u is None:
            raise ValueError("A conditional prior needs the auxiliary variable u; got None.")
        log_scale, loc = self._scale_and_loc(self._check_prior_params(prior_params), u)
        if jnp.ndim(S) != 2 or jnp.shape(S) != jnp.shape(log_scale):
            raise ValueError(
                f"S must have shape (n_samples, n_components) = {jnp.shape(log_scale)} "
                f"to match u and prior_params; got shape {jnp.shape(S)}."
            )
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
class SegmentConditional(ConditionalPrior):
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
    name: ClassVar[str] = "segment_conditional"

    def __post_init__(self):
        _check_base(self.base)
        check_int(self.n_segments, "n_segments")
        check_bool(self.learn_location, "learn_location")

    def _required_keys(self):
        return ("log_scale", "loc") if self.learn_location else ("log_scale",)

    def init_params(self, key, n_components, dtype=jnp.float32):
        shape = (self.n_segments, n_components)
        params = {"log_scale": jnp.zeros(shape, dtype)}
        if self.learn_location:
            params["loc"] = jnp.zeros(shape, dtype)
        return self._with_base_params(params, key, n_components, dtype)

    def _scale_and_loc(self, prior_params, u):
        u = self.check_aux(u)
        # An id outside [0, n_segments) reads NaN (a NaN loss, never another segment's
        # parameters): out-of-range gathers would otherwise be clamped, negative ids wrapped.
        u = jnp.where((u >= 0) & (u < self.n_segments), u, self.n_segments)

        def gather(table):
            return table.at[u].get(mode="fill", fill_value=jnp.nan)

        log_scale = gather(prior_params["log_scale"])
        loc = gather(prior_params["loc"]) if self.learn_location else jnp.zeros_like(log_scale)
        return log_scale, loc

    def check_aux(self, u):
        """Segment ids: a 1-D integer array; values in ``[0, n_segments)`` when concrete."""
        u = as_aux_array(u)
        if u.ndim != 1 or not jnp.issubdtype(u.dtype, jnp.integer):
            raise ValueError(
                f"{type(self).__name__} needs u as a 1-D array of integer segment ids in "
                f"[0, {self.n_segments}); got shape {u.shape} and dtype {u.dtype}."
            )
        if not isinstance(u, jax.core.Tracer) and u.size:
            with jax.ensure_compile_time_eval():  # concrete ids closed over by a jitted function too
                low, high = int(jnp.min(u)), int(jnp.max(u))
            if low < 0 or high >= self.n_segments:
                raise ValueError(
                    f"u holds segment ids from {low} to {high}, outside [0, {self.n_segments}) "
                    f"for this {type(self).__name__} with n_segments={self.n_segments}."
                )
        return u

    def label_log_posterior(self, prior_params, S):
        """``log p(u | x)`` for every segment ``u``, uniform label prior, from the sources ``S = g(x)``.

        Parameters
        ----------
        prior_params : dict
            This prior's parameters (``log_scale``, ``loc``, and the base family's own).
        S : array of shape (n_samples, n_components)

        Returns
        -------
        jax.Array of shape (n_samples, n_segments)
            Rows are log-probabilities (``logsumexp`` over a row is 0).

        Examples
        --------
        >>> import jax, jax.numpy as jnp
        >>> from nica import priors
        >>> prior = priors.segment_conditional("laplace", n_segments=3)
        >>> theta = prior.init_params(jax.random.key(0), n_components=2)
        >>> prior.label_log_posterior(theta, jnp.zeros((4, 2))).shape
        (4, 3)
        """
        log_scale = prior_params["log_scale"]
        loc = prior_params["loc"] if self.learn_location else jnp.zeros_like(log_scale)
        per_segment = _segment_log_probs(self.base, prior_params.get("base", ()), S, log_scale, loc)  # (M, B)
        return jax.nn.log_softmax(per_segment, axis=0).T

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
            raise ValueError(
                f"S must have shape (n_samples, {n_components}) to match prior_params; got shape {jnp.shape(S)}."
            )
        S = jnp.asarray(S)
        if log_weights is None:
            log_weights = jnp.full((self.n_segments,), -math.log(self.n_segments), S.dtype)
        log_weights = self._check_log_weights(log_weights).astype(S.dtype)
        loc = prior_params["loc"] if self.learn_location else jnp.zeros_like(log_scale)
        per_segment = _segment_log_probs(self.base, prior_params.get("base", ()), S, log_scale, loc)  # (M, B)
        return jax.nn.logsumexp(per_segment + log_weights[:, None], axis=0)

    def _check_log_weights(self, log_weights):
        """A real vector of ``n_segments`` log-probabilities (normalised when concrete)."""
        if not isinstance(log_weights, jax.Array):
            arr = np.asarray(log_weights)
            if arr.dtype.kind not in "biuf":
                raise TypeError(
                    f"log_weights must be a float array of shape ({self.n_segments},); got dtype {arr.dtype}."
                )
            log_weights = jnp.asarray(arr)
        if jnp.shape(log_weights) != (self.n_segments,) or not jnp.issubdtype(log_weights.dtype, jnp.floating):
            raise ValueError(
                f"log_weights must be a float array of shape ({self.n_segments},), one "
                f"log-probability per segment; got shape {jnp.shape(log_weights)} and "
                f"dtype {log_weights.dtype}."
            )
        if not isinstance(log_weights, jax.core.Tracer):
            total = float(jax.nn.logsumexp(log_weights))
            if not abs(total) <= _LOG_WEIGHTS_TOLERANCE:
                raise ValueError(
                    f"log_weights must be log-probabilities: exp(log_weights) sums to "
                    f"{math.exp(total) if total < 700 else math.inf:.6g}, not 1."
                )
        return log_weights


@dataclasses.dataclass(frozen=True)
class MLPConditional(ConditionalPrior):
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
    name: ClassVar[str] = "mlp_conditional"

    def __post_init__(self):
        _check_base(self.base)
        check_int(self.n_aux, "n_aux")
        check_int(self.hidden_units, "hidden_units")
        check_bool(self.learn_location, "learn_location")

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

    def check_aux(self, u):
        """A real array of shape ``(n_samples, n_aux)``."""
        u = as_aux_array(u)
        if (
            u.ndim != 2
            or u.shape[1] != self.n_aux
            or not jnp.issubdtype(u.dtype, jnp.number)
            or jnp.issubdtype(u.dtype, jnp.complexfloating)
        ):
            raise ValueError(
                f"{type(self).__name__} needs u as a real array of shape (n_samples, "
                f"{self.n_aux}); got shape {u.shape} and dtype {u.dtype}."
            )
        return u

    def _scale_and_loc(self, prior_params, u):
        u = self.check_aux(u)
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
    return SegmentConditional(
        get(base), check_int(n_segments, "n_segments"), check_bool(learn_location, "learn_location")
    )


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
    return MLPConditional(
        get(base),
        check_int(n_aux, "n_aux"),
        check_int(hidden_units, "hidden_units"),
        check_bool(learn_location, "learn_location"),
    )
