"""Training features as optax ``GradientTransformation``\\ s, each with its own ``NamedTuple`` state
(as in optax's ``transform.py``): chained after any optimizer, so that the training step is one
``optimizer.update`` with no branch on them.

* :func:`equivariant_transport`: maps an update made in the group's coordinates (from
  :func:`nica.equivariant_gradient`) back to the weights, ``[U, u] ↦ [U W, U b + u]``
  (:func:`transport`; docs/theory.rst, "The equivariant form").  Stateless.
* :func:`scale_by_rate`: multiplies the updates by a factor kept in the state
  (:class:`RateScaleState`), so that a fit loop can lower the rate between epochs without
  recompiling anything.
* :func:`average_params`: keeps an exponential moving average of the parameters as updated
  (Polyak averaging, :class:`ParamAverageState`), computed inside ``update`` from ``params``
  and the final ``updates``.

The transformations act on nica's trainable pair ``(layers, prior_params)`` as the training
step hands it over; :func:`equivariant_transport` also takes the layers alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from nica._src.network import Layer

__all__ = [
    "transport",
    "equivariant_transport",
    "append_stateless",
    "RateScaleState",
    "scale_by_rate",
    "ParamAverageState",
    "average_params",
    "average_decay",
]


def _transport_layer(update: Layer, layer: Layer) -> Layer:
    U, u = update
    W, b = layer
    if b is None or u is None:
        return Layer(U @ W, None)
    return Layer(U @ W, U @ b + u)


def transport(updates: Sequence[Layer], params: Sequence[Layer]) -> tuple[Layer, ...]:
    """Map updates in the group's coordinates back to the weights: ``[U, u] ↦ [U W, U b + u]``.

    ``[U, u] W̄`` with ``W̄ = [[W, b], [0, 1]]``, per layer: ``transport(equivariant_gradient(p, X),
    p)`` is ``relative_gradient(p, X)``, and applied to an optimizer's update made from
    :func:`~nica.equivariant_gradient` it gives the equivariant (multiplicative) step.  Linear in
    ``updates``, one ``D×D×D`` product per layer, pure and jit-able.

    Parameters
    ----------
    updates : tuple of Layer
        ``Layer(U, u)`` per layer (``u`` is ``None`` where the layer has no bias).
    params : tuple of Layer
        The weights the updates are for (the ones :func:`~nica.equivariant_gradient` was taken at).

    Returns
    -------
    tuple of Layer

    Examples
    --------
    >>> import jax, numpy as np
    >>> import nica
    >>> params = nica.init_params(jax.random.key(0), 3, 2)
    >>> X = jax.random.laplace(jax.random.key(1), (10, 3))
    >>> moved = nica.transport(nica.equivariant_gradient(params, X), params)
    >>> bool(np.allclose(moved[0].W, nica.relative_gradient(params, X)[0].W, atol=1e-5))
    True
    """
    for name, tree in (("updates", updates), ("params", params)):
        if not isinstance(tree, (tuple, list)) or not all(
            isinstance(layer, (tuple, list)) and len(layer) == 2 for layer in tree
        ):
            raise TypeError(f"{name} must be a tuple of nica.Layer(W, b); got {type(tree).__name__}.")
    if len(updates) != len(params):
        raise ValueError(f"updates has {len(updates)} layers but params has {len(params)}.")
    updates, params = [Layer(*u) for u in updates], [Layer(*p) for p in params]
    for k, (u, p) in enumerate(zip(updates, params)):
        if jnp.shape(u.W) != jnp.shape(p.W):
            raise ValueError(
                f"layer {k}: the update's W has shape {jnp.shape(u.W)} but the layer's W has shape {jnp.shape(p.W)}."
            )
        if (u.b is None) != (p.b is None):
            raise ValueError(
                f"layer {k}: the update's b is {'None' if u.b is None else 'an array'} but the "
                f"layer's b is {'None' if p.b is None else 'an array'}."
            )
    return tuple(_transport_layer(u, p) for u, p in zip(updates, params))


def _is_layers(tree) -> bool:
    return isinstance(tree, tuple) and len(tree) > 0 and all(isinstance(layer, Layer) for layer in tree)


def equivariant_transport() -> optax.GradientTransformation:
    """Map updates made in the group's coordinates back to the weights (stateless).

    Chain it after the optimizer that received :func:`~nica.equivariant_gradient`'s ``H̄``:
    the layers' updates ``Ū`` become ``Ū W̄`` (:func:`transport`), the prior parameters'
    updates pass unchanged.  ``params`` are needed in ``update``.

    Returns
    -------
    optax.GradientTransformation
        State: ``optax.EmptyState``.

    Examples
    --------
    >>> import jax, optax
    >>> import nica
    >>> params = nica.init_params(jax.random.key(0), 3, 2)
    >>> X = jax.random.laplace(jax.random.key(1), (64, 3))
    >>> opt = optax.chain(optax.adam(1e-3), nica.transforms.equivariant_transport())
    >>> state = opt.init(params)
    >>> updates, state = opt.update(nica.equivariant_gradient(params, X), state, params)
    >>> params = optax.apply_updates(params, updates)
    """

    def init(params):
        del params
        return optax.EmptyState()

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("equivariant_transport needs params in update (the weights the updates are for).")
        if _is_layers(params):
            return transport(updates, params), state
        return (transport(updates[0], params[0]), *updates[1:]), state

    return optax.GradientTransformation(init, update)


def append_stateless(
    inner: optax.GradientTransformation, transform: optax.GradientTransformation
) -> optax.GradientTransformation:
    """``inner`` followed by the stateless ``transform``, with ``inner``'s own state.

    So that a state made by ``inner.init`` (e.g. :func:`nica.init_train_state` with a plain
    optimizer) works with the combination.

    Parameters
    ----------
    inner : optax.GradientTransformation
    transform : optax.GradientTransformation
        Its state must not change (``optax.EmptyState``).

    Returns
    -------
    optax.GradientTransformation
    """

    def update(updates, state, params=None):
        updates, state = inner.update(updates, state, params)
        updates, _ = transform.update(updates, transform.init(params), params)
        return updates, state

    return optax.GradientTransformation(inner.init, update)


def _dtype(params):
    return jax.tree_util.tree_leaves(params)[0].dtype


class RateScaleState(NamedTuple):
    """State of :func:`scale_by_rate`.

    Attributes
    ----------
    rate_scale : jax.Array
        The scalar multiplier of the updates (of the parameters' dtype).
    """

    rate_scale: jax.Array


def scale_by_rate(rate_scale: float = 1.0) -> optax.GradientTransformation:
    """Multiply the updates by a factor kept in the state.

    Lowering the factor between epochs (``state._replace(rate_scale=...)``) changes the step
    size without rebuilding or recompiling the optimizer; the fit loop's plateau schedule and
    spike guard do so.

    Parameters
    ----------
    rate_scale : float, default=1.0
        The initial factor.

    Returns
    -------
    optax.GradientTransformation
        State: :class:`RateScaleState`.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from nica import transforms
    >>> tx = transforms.scale_by_rate(0.5)
    >>> updates, state = tx.update(jnp.ones(2), tx.init(jnp.zeros(2)))
    >>> updates.tolist(), float(state.rate_scale)
    ([0.5, 0.5], 0.5)
    """

    def init(params):
        return RateScaleState(jnp.asarray(rate_scale, _dtype(params)))

    def update(updates, state, params=None):
        del params
        return jax.tree_util.tree_map(lambda g: state.rate_scale * g, updates), state

    return optax.GradientTransformation(init, update)


class ParamAverageState(NamedTuple):
    """State of :func:`average_params`.

    Attributes
    ----------
    steps : jax.Array
        Steps since the average (re)started.
    decay : jax.Array
        The long-run per-step decay (``0``: the average is the parameters).
    average : pytree
        The running average of the parameters.
    """

    steps: jax.Array
    decay: jax.Array
    average: Any


def average_params(decay: float = 0.0) -> optax.GradientTransformation:
    """Keep an exponential moving average of the parameters as updated (Polyak averaging).

    After each update, ``average ← average + (1 − d_t)(params + updates − average)`` with
    ``d_t = min(decay, (1 + t)/(10 + t))`` at step ``t`` since the start, so that the average
    forgets its starting point quickly.  The updates pass unchanged; chain it last, so that it
    sees the updates as they are applied.

    Parameters
    ----------
    decay : float, default=0.0
        The long-run per-step decay, ``1 − 1/(time constant in steps)`` (:func:`average_decay`).

    Returns
    -------
    optax.GradientTransformation
        State: :class:`ParamAverageState`; ``params`` are needed in ``update``.

    Examples
    --------
    >>> import jax.numpy as jnp, optax
    >>> from nica import transforms
    >>> tx = optax.chain(optax.sgd(0.1), transforms.average_params(decay=0.9))
    >>> params = jnp.zeros(2)
    >>> state = tx.init(params)
    >>> updates, state = tx.update(jnp.ones(2), state, params)
    >>> state[1].average.shape
    (2,)
    """

    def init(params):
        dtype = _dtype(params)
        return ParamAverageState(
            jnp.zeros([], jnp.int32),
            jnp.asarray(decay, dtype),
            jax.tree_util.tree_map(lambda a: jnp.array(a, copy=True), params),
        )

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("average_params needs params in update (the parameters being updated).")
        new_params = optax.apply_updates(params, updates)
        steps = state.steps + 1
        t = steps.astype(state.decay.dtype)
        d = jnp.minimum(state.decay, (1 + t) / (10 + t))
        average = jax.tree_util.tree_map(lambda a, p: a + (1 - d) * (p - a), state.average, new_params)
        return updates, ParamAverageState(steps, state.decay, average)

    return optax.GradientTransformation(init, update)


def average_decay(time_constant: float, steps_per_epoch: int) -> float:
    """The per-step decay of an average whose time constant is ``time_constant`` epochs.

    Parameters
    ----------
    time_constant : float
        In epochs; ``<= 0`` gives 0 (no averaging).
    steps_per_epoch : int

    Returns
    -------
    float
    """
    if time_constant <= 0:
        return 0.0
    return 1.0 - 1.0 / max(1.0, time_constant * max(1, steps_per_epoch))
