"""The state the fit loop trains: the user's optimizer chained, by name, with the
transformations the loop controls (``optax.named_chain`` of ``"optimizer"``, ``"rate_scale"``,
``"form"`` — what the gradient form chains, the equivariant transport — and, with averaging,
``"average"``).  The loop reads and sets those states by name, never by position; the step
knows nothing of them.
"""

from __future__ import annotations

import collections
import functools

import jax
import jax.numpy as jnp
import optax

from nica._src import gradients as _gradients
from nica._src.training import TrainState, opt_state_fits
from nica._src.transforms import (
    ParamAverageState,
    RateScaleState,
    average_params,
    scale_by_rate,
)

__all__ = [
    "fit_optimizer",
    "is_fit_state",
    "with_entry",
    "rate_scale_of",
    "with_rate_scale",
    "with_average_decay",
    "device_copy",
    "restart_average",
    "match_averaging",
    "init_fit_state",
    "monitored_params",
    "opt_state_fits",
]


@functools.lru_cache(maxsize=64)
def fit_optimizer(optimizer, gradient, averaged: bool) -> optax.GradientTransformation:
    """``optax.named_chain`` of ``optimizer``, the rate scale, what ``gradient``'s form chains and
    (``averaged``) the parameter average; cached, so that repeated fits reuse compiled code."""
    form = _gradients.get(gradient)
    elements = [("optimizer", optimizer), ("rate_scale", scale_by_rate()), ("form", form.update_transform())]
    if averaged:
        elements.append(("average", average_params()))
    return optax.named_chain(*elements)


def is_fit_state(opt_state) -> bool:
    """Whether ``opt_state`` is the optimizer state of :func:`fit_optimizer` (the loop's chain)."""
    return isinstance(opt_state, dict) and {"optimizer", "rate_scale", "form"} <= set(opt_state)


def with_entry(opt_state, name, value):
    """A copy of a named-chain state with ``name`` set (or removed, for ``value=None``), its
    type and the order of its entries kept."""
    new = type(opt_state)(opt_state)
    if value is None:
        new.pop(name, None)
    else:
        new[name] = value
    return new


def rate_scale_of(opt_state) -> float:
    """The rate scale of a fit state's optimizer state."""
    return float(opt_state["rate_scale"].rate_scale)


def with_rate_scale(opt_state, value):
    """A fit state's optimizer state with the rate scale set to ``value``."""
    old = opt_state["rate_scale"].rate_scale
    return with_entry(opt_state, "rate_scale", RateScaleState(jnp.full_like(old, value)))


def with_average_decay(opt_state, decay):
    """A fit state's optimizer state with the average's long-run decay set (no average: as it is)."""
    average = opt_state.get("average")
    if average is None:
        return opt_state
    return with_entry(opt_state, "average", average._replace(decay=jnp.full_like(average.decay, decay)))


def device_copy(tree):
    """A copy on the device(s) of a pytree of arrays, with the same shardings: it survives the
    donation of the original to the next epoch, and never passes through host memory."""
    return jax.tree_util.tree_map(lambda a: jnp.array(a, copy=True), tree)


def restart_average(opt_state, params):
    """The average restarted at ``params`` (a copy), keeping its decay."""
    average = opt_state.get("average")
    if average is None:
        return opt_state
    return with_entry(
        opt_state, "average", ParamAverageState(jnp.zeros_like(average.steps), average.decay, device_copy(params))
    )


def match_averaging(opt_state, params, averaged: bool):
    """A fit state's optimizer state with the average added (at ``params``) or removed, as
    ``averaged`` asks (a warm start after the averaging changed)."""
    if averaged and "average" not in opt_state:
        return with_entry(opt_state, "average", average_params().init(params))
    if not averaged:
        return with_entry(opt_state, "average", None)
    return opt_state


def init_fit_state(state: TrainState, gradient, *, rate_scale=1.0, averaged=False) -> TrainState:
    """``state`` (made for an optimizer) as a fit state of :func:`fit_optimizer`, at ``rate_scale``:
    the optimizer's state as it is, the other entries initialised as the chain would."""
    trainable = (state.params, state.prior_params)
    opt_state = collections.OrderedDict(
        optimizer=state.opt_state,
        rate_scale=scale_by_rate(rate_scale).init(trainable),
        form=_gradients.get(gradient).update_transform().init(trainable),
    )
    return TrainState(*trainable, match_averaging(opt_state, trainable, averaged))


def monitored_params(state):
    """The parameters the loop monitors: the running average when the state has one."""
    average = state.opt_state.get("average")
    return (state.params, state.prior_params) if average is None else average.average
