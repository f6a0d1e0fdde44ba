"""Training: a pure optax step and a jitted epoch over shuffled mini-batches.

The step hands the relative gradient (or, for comparison, the Euclidean or autodiff gradient)
to any optax ``GradientTransformation`` exactly as if it were a gradient.  The epoch runs every
step of one pass over the data inside one ``jax.lax.scan``, so the host synchronises only at
epoch ends.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from nica._src import activations as _activations
from nica._src import priors as _priors
from nica._src.gradients import VALUE_AND_GRADIENT

__all__ = ["TrainState", "init_train_state", "make_train_step", "make_epoch"]


class TrainState(NamedTuple):
    """The carry of a training loop.

    The optimizer acts on the pair ``(params, prior_params)``: relative gradients for the
    network's layers, Euclidean gradients for the prior's own parameters (empty for a
    factorized prior).  Build it with :func:`init_train_state`.
    """

    params: tuple
    prior_params: Any
    opt_state: optax.OptState


def init_train_state(optimizer, params, prior_params=()) -> TrainState:
    """A :class:`TrainState` with the optimizer initialised on ``(params, prior_params)``.

    Parameters
    ----------
    optimizer : optax.GradientTransformation
    params : tuple of Layer
    prior_params : pytree, default=()
        The prior's parameters (``prior.init_params(...)``); empty for factorized priors.

    Returns
    -------
    TrainState
    """
    return TrainState(params, prior_params, optimizer.init((params, prior_params)))


def _check_gradient(gradient: str) -> Callable:
    try:
        return VALUE_AND_GRADIENT[gradient]
    except (KeyError, TypeError):
        raise ValueError(
            f"gradient must be one of {sorted(VALUE_AND_GRADIENT)}; got {gradient!r}."
        ) from None


def make_train_step(optimizer, *, activation="smooth_leaky_relu", prior="laplace", gradient="relative"):
    """Build a pure training step ``step(state, X, u=None) -> (state, loss)``.

    Parameters
    ----------
    optimizer : optax.GradientTransformation
        Any optax optimizer; it receives the relative gradient as if it were a gradient.
    activation : str or Activation, default="smooth_leaky_relu"
    prior : str or Prior, default="laplace"
        A factorized prior, or a conditional one (then pass ``u`` to the step).
    gradient : {"relative", "euclidean", "autodiff"}, default="relative"
        Which direction to hand to the optimizer for the layers.  ``"euclidean"`` and
        ``"autodiff"`` are the paper's baselines (same likelihood, O(D³) per layer).

    Returns
    -------
    step : callable
        ``step(state: TrainState, X, u=None) -> (TrainState, loss)`` where ``loss`` is the
        batch's mean NLL without the ``−Σ log|det W|`` term (training never computes
        determinants).  Pure and jit-able.

    Examples
    --------
    >>> import jax, optax
    >>> import nica
    >>> params = nica.init_params(jax.random.key(0), 4, 2)
    >>> opt = optax.adam(1e-2)
    >>> step = jax.jit(nica.make_train_step(opt, prior="laplace"))
    >>> state = nica.init_train_state(opt, params)
    >>> X = jax.random.laplace(jax.random.key(1), (128, 4), dtype=params[0].W.dtype)
    >>> state, loss = step(state, X)
    >>> loss.shape
    ()
    """
    value_and_gradient = _check_gradient(gradient)
    activation = _activations.get(activation)
    prior = _priors.get(prior)

    def step(state: TrainState, X, u=None):
        loss, grads, prior_grads = value_and_gradient(
            state.params, X, activation, prior, state.prior_params, u
        )
        trainable = (state.params, state.prior_params)
        updates, opt_state = optimizer.update((grads, prior_grads), state.opt_state, trainable)
        params, prior_params = optax.apply_updates(trainable, updates)
        return TrainState(params, prior_params, opt_state), loss

    return step


@functools.lru_cache(maxsize=64)
def make_epoch(optimizer, activation, prior, gradient: str, batch_size: int):
    """A jitted epoch ``epoch(state, X, u, key) -> (state, mean_loss)``.

    Shuffles the rows of ``X`` (and of the auxiliary variable ``u``, or ``None``) with ``key``,
    cuts them into ``len(X) // batch_size`` full mini-batches (the remainder, different each
    epoch, is left for later epochs; a set smaller than one batch is used whole) and scans the
    training step over them.  ``mean_loss`` is the mean batch loss.  Cached on its (hashable)
    arguments so repeated fits reuse the compiled code; the ``state`` buffers are donated.
    """
    step = make_train_step(optimizer, activation=activation, prior=prior, gradient=gradient)

    def epoch(state, X, u, key):
        n = X.shape[0]
        b = min(batch_size, n)
        n_batches = n // b
        order = jax.random.permutation(key, n)[: n_batches * b]

        def batched(A):
            return None if A is None else A[order].reshape((n_batches, b) + A.shape[1:])

        def body(state, batch):
            return step(state, *batch)

        state, losses = jax.lax.scan(body, state, (batched(X), batched(u)))
        return state, jnp.mean(losses)

    return jax.jit(epoch, donate_argnums=(0,))
