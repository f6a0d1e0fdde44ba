"""The label posterior of a segment-conditional model and the hybrid objective built on it.

For the segment-conditional prior (eq. 4) and a uniform prior over the ``M`` segment labels,
Bayes' rule on the fitted model gives the posterior of the label of an observation:

    log p(u | x) = log p(g(x) | u) − logsumexp_{u'} log p(g(x) | u')

The log-determinant of the Jacobian (and any whitening) does not depend on ``u`` and cancels,
so the posterior needs one run of the network and ``M`` evaluations of the prior: ``B × M × D``
for a batch of ``B`` rows.  It is the classifier that time-contrastive learning trains (a
multinomial logistic regression on the sources), here made from the same network and the same
per-segment scales and locations as the likelihood.

The *hybrid objective* adds its cross-entropy to the negative log-likelihood:

    J(θ) = mean_b [−log p(x_b | u_b)] + α · mean_b [−log p(u_b | x_b)]

a weighted sum of a generative and a discriminative log-likelihood of the same model.  Its
relative gradient keeps the cheap form of the likelihood's: the cross-entropy has no
log-determinant, so it only adds its back-propagated errors to the likelihood's before
``δᵀ(Y W) − W`` (see :func:`nica._src.gradients.backpropagated_errors`).
"""

from __future__ import annotations

import math
import numbers
from functools import partial

import jax
import jax.numpy as jnp

from nica._src import priors as _priors
from nica._src.network import forward_trace

__all__ = ["segment_log_posterior", "label_cross_entropy", "observation_log_posterior",
           "check_contrastive_weight"]


def _check_segment_prior(prior):
    if not isinstance(prior, _priors.SegmentConditional):
        raise ValueError(
            "The label posterior and the contrastive term need a segment-conditional prior "
            f"(priors.segment_conditional, discrete u); got prior={prior!r}."
        )
    return prior


def segment_log_posterior(prior, prior_params, S):
    """``log p(u | x)`` for every segment ``u``, uniform label prior, from the sources ``S = g(x)``.

    Parameters
    ----------
    prior : SegmentConditional
    prior_params : dict
        ``prior``'s parameters (``log_scale``, ``loc``, and the base family's own).
    S : array of shape (n_samples, n_components)

    Returns
    -------
    jax.Array of shape (n_samples, n_segments)
        Rows are log-probabilities (``logsumexp`` over a row is 0).
    """
    prior = _check_segment_prior(prior)
    log_scale = prior_params["log_scale"]
    loc = prior_params["loc"] if prior.learn_location else jnp.zeros_like(log_scale)
    per_segment = _priors._scaled_log_prob(prior.base, prior_params.get("base", ()), S[:, None, :],
                                           log_scale[None, :, :], loc[None, :, :])  # (B, M)
    return jax.nn.log_softmax(per_segment, axis=1)


def label_cross_entropy(prior, prior_params, S, u):
    """Mean cross-entropy ``−mean_b log p(u_b | x_b)`` of the labels ``u`` given the sources."""
    log_post = segment_log_posterior(prior, prior_params, S)
    return -jnp.mean(jnp.take_along_axis(log_post, jnp.asarray(u)[:, None], axis=1))


@partial(jax.jit, static_argnames=("activation", "prior"))
def observation_log_posterior(params, X, activation, prior, prior_params):
    """``log p(u | x)`` per row of ``X`` and segment: one run of the network, then
    :func:`segment_log_posterior` (jitted; ``activation`` and ``prior`` resolved objects)."""
    return segment_log_posterior(prior, prior_params, forward_trace(params, X, activation)[0])


def check_contrastive_weight(contrastive_weight, prior=None):
    """``contrastive_weight`` as a float: real, finite and ``>= 0``; ``> 0`` needs a
    segment-conditional prior (when ``prior`` is given)."""
    w = contrastive_weight
    if isinstance(w, bool) or not isinstance(w, numbers.Real) or not math.isfinite(w) or w < 0:
        raise ValueError(f"contrastive_weight must be a finite real number >= 0; got {w!r}.")
    if w > 0 and prior is not None:
        _check_segment_prior(prior)
    return float(w)
