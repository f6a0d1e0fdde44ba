"""Training: a pure optax step and a jitted epoch over shuffled mini-batches.

The step hands the relative gradient (or, for comparison, the Euclidean or autodiff gradient)
to any optax ``GradientTransformation`` exactly as if it were a gradient.  The epoch runs every
step of one pass over the data inside one ``jax.lax.scan``, so the host synchronises only at
epoch ends.

Several devices.  Both accept a :class:`jax.sharding.Mesh` whose axes are named ``"data"``
and/or ``"model"`` (:func:`make_mesh` builds a one-axis mesh):

* ``"data"`` (data parallel): each mini-batch is split by rows over the axis, parameters and
  optimizer state are replicated.  The relative gradient's data term ``δᵀ((Y − b) W)`` is a sum
  over rows, so XLA's SPMD partitioner computes it as per-device partial sums and one
  all-reduce of the ``D×D`` result per layer and step; every device then applies the same
  optimizer update.
* ``"model"`` (model parallel): every layer's ``W`` is split by rows, ``b`` likewise, and so
  are the optimizer's moment estimates, which mirror the parameters; each device holds
  ``1/n_devices`` of every ``D×D`` array.  The mini-batch is replicated; the partitioner
  gathers the ``(B, D)`` activations between layers and reduces ``(B, D)`` partial products.

A mesh with both axes combines the two.  The mathematics is unchanged: on a mesh the step
computes the same update as on one device, up to the order of floating-point sums.
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from nica._src import activations as _activations
from nica._src import priors as _priors
from nica._src.contrastive import check_contrastive_weight, observation_log_posterior
from nica._src.gradients import VALUE_AND_GRADIENT, transport
from nica._src.network import (
    _log_likelihood_without_det,
    _params_dtype,
    check_data,
    check_params,
    log_abs_det_weights,
)
from nica._src.validation import check_aux, check_prior_params, optimizer_state_fits

__all__ = ["TrainState", "init_train_state", "make_train_step", "make_epoch", "make_mesh",
           "shard_params", "fit_to_data", "FitHistory", "FitProgress"]

DATA_AXIS = "data"
MODEL_AXIS = "model"


class TrainState(NamedTuple):
    """The carry of a training loop.

    The optimizer acts on the pair ``(params, prior_params)``: relative gradients for the
    network's layers, Euclidean gradients for the prior's own parameters (empty for a
    factorized prior).  Build it with :func:`init_train_state`.

    Attributes
    ----------
    params : tuple of Layer
        The network.
    prior_params : pytree
        The prior's own parameters; ``()`` for a factorized prior.
    opt_state : optax.OptState
        The optimizer's state for the pair ``(params, prior_params)``.
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
    _check_optimizer(optimizer)
    check_params(params)
    return TrainState(params, prior_params, optimizer.init((params, prior_params)))


# --------------------------------------------------------------------------------------------
# device meshes and shardings


def make_mesh(parallel="data", devices=None) -> Mesh:
    """A one-axis device mesh for data-parallel or model-parallel training.

    Parameters
    ----------
    parallel : {"data", "model"}, default="data"
        The name of the mesh axis, which says what is split over the devices: the rows of each
        mini-batch (``"data"``) or the rows of every layer matrix (``"model"``).
    devices : sequence of jax.Device, optional
        Default: ``jax.devices()``, every device of the default backend (on several hosts,
        every device of every process).

    Returns
    -------
    jax.sharding.Mesh
        Axis type ``Auto``: XLA's SPMD partitioner inserts the collectives.

    Examples
    --------
    >>> import nica
    >>> mesh = nica.make_mesh("data")
    >>> mesh.axis_names
    ('data',)
    """
    if parallel not in (DATA_AXIS, MODEL_AXIS):
        raise ValueError(f"parallel must be 'data' or 'model'; got {parallel!r}.")
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("devices must hold at least one jax.Device; got an empty sequence.")
    return jax.make_mesh((len(devices),), (parallel,), axis_types=(AxisType.Auto,),
                         devices=devices)


def _check_mesh(mesh):
    if mesh is None:
        return None
    if not isinstance(mesh, Mesh):
        raise TypeError(f"mesh must be a jax.sharding.Mesh or None; got {type(mesh).__name__}.")
    unknown = [name for name in mesh.axis_names if name not in (DATA_AXIS, MODEL_AXIS)]
    if unknown:
        raise ValueError(
            f"mesh axes must be named {DATA_AXIS!r} and/or {MODEL_AXIS!r}; got {mesh.axis_names}."
        )
    if any(axis_type != AxisType.Auto for axis_type in mesh.axis_types):
        raise ValueError(
            f"mesh axes must have AxisType.Auto (nica.make_mesh builds such meshes); got {mesh.axis_types}."
        )
    return mesh


def _data_shards(mesh) -> int:
    return 1 if mesh is None else int(mesh.shape.get(DATA_AXIS, 1))


def _leaf_spec(path, leaf, mesh) -> PartitionSpec:
    """Rows of every ``Layer``'s ``W`` and ``b`` over ``"model"``; everything else replicated."""
    if MODEL_AXIS not in mesh.axis_names or not path:
        return PartitionSpec()
    last = path[-1]
    shape = jnp.shape(leaf)
    if not (isinstance(last, jax.tree_util.GetAttrKey) and (last.name, len(shape)) in (("W", 2), ("b", 1))):
        return PartitionSpec()
    shards = mesh.shape[MODEL_AXIS]
    if shape[0] % shards:
        raise ValueError(
            f"Model-parallel training splits the layers' rows evenly over the {shards} devices "
            f"on the {MODEL_AXIS!r} mesh axis; n_features={shape[0]} is not a multiple of {shards}."
        )
    return PartitionSpec(MODEL_AXIS, None) if len(shape) == 2 else PartitionSpec(MODEL_AXIS)


def _param_shardings(tree, mesh):
    return jax.tree_util.tree_map_with_path(
        lambda path, leaf: NamedSharding(mesh, _leaf_spec(path, leaf, mesh)), tree
    )


def _row_sharding(mesh) -> NamedSharding:
    """Rows of a batch over ``"data"`` (replicated on a mesh without that axis)."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS if DATA_AXIS in mesh.axis_names else None))


def _constrain(tree, shardings):
    return jax.lax.with_sharding_constraint(tree, shardings)


def shard_params(tree, mesh):
    """Place parameters, a :class:`TrainState` or gradients on a device mesh.

    The ``W`` and ``b`` of every :class:`~nica.Layer` in ``tree`` (including the optimizer's
    moment estimates, which mirror the parameters) are split by rows over the mesh axis
    ``"model"`` when the mesh has one; every other array (prior parameters, step counts) and
    everything on a mesh without that axis is replicated on every device.

    Parameters
    ----------
    tree : pytree
        Arrays (JAX or NumPy), e.g. ``params`` or a :class:`TrainState`.
    mesh : jax.sharding.Mesh
        Axes named ``"data"`` and/or ``"model"`` (:func:`make_mesh`).

    Returns
    -------
    pytree of jax.Array
        Same structure, each array placed with its :class:`jax.sharding.NamedSharding`.

    Examples
    --------
    >>> import jax
    >>> import nica
    >>> mesh = nica.make_mesh("model")
    >>> params = nica.shard_params(nica.init_params(jax.random.key(0), 4, 2), mesh)
    >>> params[0].W.sharding.spec == jax.sharding.PartitionSpec("model", None)
    True
    """
    mesh = _check_mesh(mesh)
    return jax.device_put(tree, _param_shardings(tree, mesh))


# --------------------------------------------------------------------------------------------
# the step and the epoch


def _check_optimizer(optimizer):
    if not isinstance(optimizer, optax.GradientTransformation):
        hint = f" (build one: optax.{optimizer}(1e-3))" if isinstance(optimizer, str) else ""
        raise TypeError(f"optimizer must be an optax.GradientTransformation{hint}; "
                        f"got {type(optimizer).__name__}.")
    return optimizer


def _check_step_inputs(state, X, u, prior):
    """Static checks of one step's inputs (shapes, dtypes, pytree structure), so that they also
    run when the step is traced under ``jax.jit``; concrete segment ids are range-checked by the
    prior itself."""
    if not isinstance(state, TrainState):
        raise TypeError(f"state must be an nica.TrainState (from init_train_state(optimizer, params, "
                        f"prior_params)); got {type(state).__name__}.")
    n_features, _ = check_params(state.params)
    dtype = _params_dtype(state.params)
    X = check_data(X, n_features, dtype)
    if X.shape[0] == 0:
        raise ValueError(f"The step averages over the rows of X: X needs at least one row; got shape {X.shape}.")
    check_aux(prior, u, X.shape[0], "the step")  # its shape and dtype (and concrete segment ids)
    check_prior_params(prior, state.prior_params, n_features, jnp.dtype(dtype), name="state.prior_params",
                       hint=" and pass them to init_train_state")
    return X


def _check_gradient(gradient: str) -> Callable:
    try:
        return VALUE_AND_GRADIENT[gradient]
    except (KeyError, TypeError):
        raise ValueError(
            f"gradient must be one of {sorted(VALUE_AND_GRADIENT)}; got {gradient!r}."
        ) from None


def make_train_step(optimizer, *, activation="smooth_leaky_relu", prior="laplace", gradient="relative",
                    mesh=None, contrastive_weight=0.0):
    """Build a pure training step ``step(state, X, u=None) -> (state, loss)``.

    Parameters
    ----------
    optimizer : optax.GradientTransformation
        Any optax optimizer; it receives the relative gradient as if it were a gradient.
    activation : str or Activation, default="smooth_leaky_relu"
    prior : str or Prior, default="laplace"
        A factorized prior, or a conditional one (then pass ``u`` to the step).
    gradient : {"relative", "equivariant", "euclidean", "autodiff"}, default="relative"
        Which direction to hand to the optimizer for the layers.  ``"equivariant"``: the
        relative gradient in the group's coordinates (:func:`~nica.equivariant_gradient`); the
        optimizer's update is mapped back to the weights with :func:`~nica.transport` (one
        ``D×D×D`` product per layer).  Same step as ``"relative"`` for plain SGD; for Adam the
        update is equivariant (an optimizer that reads the parameters, such as weight decay,
        sees the weights, and its term is transported too).  ``"euclidean"`` and
        ``"autodiff"`` are the paper's baselines (same likelihood, O(D³) per layer).
    mesh : jax.sharding.Mesh, optional
        Train on several devices (module docstring): the batch is constrained to be split by
        rows over the axis ``"data"``, the gradients and the new state to the layout of
        :func:`shard_params`.  Place the state with :func:`shard_params` before the first call.
        ``None``: no sharding annotations (one device).
    contrastive_weight : float, default=0.0
        ``α >= 0``.  With a segment-conditional prior, ``α > 0`` trains the hybrid objective
        ``mean NLL + α · mean cross-entropy of u given x`` (the label posterior with a uniform
        label prior, ``nica._src.contrastive``): the two terms' back-propagated errors are
        summed before the cheap relative form, so the step stays ``O(L·B·D²)`` plus
        ``B × n_segments × D`` for the posterior.  ``0``: the exact likelihood alone (the step
        is then the same computation as without the argument).

    Returns
    -------
    step : callable
        ``step(state: TrainState, X, u=None) -> (TrainState, loss)`` where ``loss`` is the
        batch's mean NLL without the ``−Σ log|det W|`` term (training never computes
        determinants), plus ``α`` times the mean cross-entropy when ``α > 0``.  Pure and
        jit-able.

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
    _check_optimizer(optimizer)
    value_and_gradient = _check_gradient(gradient)
    equivariant = gradient == "equivariant"
    activation = _activations.get(activation)
    prior = _priors.get(prior)
    mesh = _check_mesh(mesh)
    contrastive_weight = check_contrastive_weight(contrastive_weight, prior)
    hybrid = {"contrastive_weight": contrastive_weight} if contrastive_weight > 0 else {}
    averaged = isinstance(optimizer, _RateScaledAveraged)  # fit_to_data(averaging > 0)

    def step(state: TrainState, X, u=None):
        X = _check_step_inputs(state, X, u, prior)
        if mesh is not None:
            X = _constrain(X, _row_sharding(mesh))
            u = None if u is None else _constrain(u, _row_sharding(mesh))
        loss, grads, prior_grads = value_and_gradient(
            state.params, X, activation, prior, state.prior_params, u, **hybrid
        )
        if mesh is not None:  # summed over the batch rows: an all-reduce over "data"
            grads = _constrain(grads, _param_shardings(grads, mesh))
        trainable = (state.params, state.prior_params)
        updates, opt_state = optimizer.update((grads, prior_grads), state.opt_state, trainable)
        if equivariant:
            updates = (transport(updates[0], state.params), updates[1])
        params, prior_params = optax.apply_updates(trainable, updates)
        if averaged:  # after the update as applied (the equivariant transport included)
            opt_state = _advance_average(opt_state, (params, prior_params))
        new_state = TrainState(params, prior_params, opt_state)
        if mesh is not None:
            new_state = _constrain(new_state, _param_shardings(new_state, mesh))
        return new_state, loss

    return step


@functools.lru_cache(maxsize=64)
def make_epoch(optimizer, activation, prior, gradient: str, batch_size: int, mesh=None,
               contrastive_weight=0.0):
    """A jitted epoch ``epoch(state, X, u, key) -> (state, mean_loss)``.

    Shuffles the rows of ``X`` (and of the auxiliary variable ``u``, or ``None``) with ``key``,
    cuts them into ``len(X) // batch_size`` full mini-batches (the remainder, different each
    epoch, is left for later epochs; a set smaller than one batch is used whole) and scans the
    training step over them.  Each step gathers its own rows of ``X``, so no shuffled copy of
    the data is made: the memory is the data, the state (donated, updated in place) and one
    step's temporaries.  ``mean_loss`` is the mean batch loss.  Cached on its (hashable)
    arguments so repeated fits reuse the compiled code.

    With a ``mesh`` (see :func:`make_train_step`), place the state with :func:`shard_params`
    and ``X`` and ``u`` replicated on the mesh (``jax.device_put(X, NamedSharding(mesh,
    PartitionSpec()))``); the order of the batches is the one-device order, so the result
    matches a one-device epoch up to floating-point summation order.  ``batch_size`` must then
    be a multiple of the number of devices on the ``"data"`` axis; a set smaller than one batch
    is used whole, rounded down to such a multiple.

    ``contrastive_weight``: the hybrid objective's ``α`` (see :func:`make_train_step`); the
    mean loss then includes ``α`` times the mean cross-entropy.
    """
    mesh = _check_mesh(mesh)
    shards = _data_shards(mesh)
    if batch_size % shards:
        raise ValueError(
            f"batch_size={batch_size} must be a multiple of the {shards} devices on the "
            f"{DATA_AXIS!r} mesh axis (data-parallel batches are split evenly)."
        )
    step = make_train_step(optimizer, activation=activation, prior=prior, gradient=gradient,
                           mesh=mesh, contrastive_weight=contrastive_weight)

    def epoch(state, X, u, key):
        n = X.shape[0]
        b = min(batch_size, n)
        b -= b % shards
        if b == 0:
            raise ValueError(
                f"Data-parallel training over {shards} devices needs at least {shards} samples; "
                f"got {n}."
            )
        n_batches = n // b
        order = jax.random.permutation(key, n)[: n_batches * b].reshape(n_batches, b)

        def body(state, rows):
            return step(state, X[rows], None if u is None else u[rows])

        state, losses = jax.lax.scan(body, state, order)
        return state, jnp.mean(losses)

    return jax.jit(epoch, donate_argnums=(0,))


# --------------------------------------------------------------------------------------------
# the fit loop: epochs, validation, early stopping, the rate schedule, divergence

# The rate schedule: at a plateau (or after a spike), the rate is multiplied by this factor, at
# most _MAX_RATE_REDUCTIONS times before the fit stops.
_RATE_FACTOR = 0.2
_MAX_RATE_REDUCTIONS = 2
# The spike guard: a validation NLL this many nats per sample above the best so far restores the
# best parameters and lowers the rate.  Half the 0.5 nats a fit should never rise by: the first
# sizeable rise lowers the rate before a larger one (segment recipe, seeds 1 and 2, six settings:
# largest rise 0.40 with the guard at 0.5, 0.30 with it at 0.2; mean MCC 0.004 lower, more epochs).
_SPIKE_NATS = 0.25
_SCHEDULE_OPTIONS = ("plateau", "constant")
# Rows per batch when the loop scores the validation set.
_SCORE_BATCH = 8192


class _RateScaled(optax.GradientTransformationExtraArgs):
    """An optimizer already followed by the schedule's rate scale (:func:`_with_rate_scale`);
    its state is ``(inner_state, scale_state)``.  :func:`fit_to_data` takes it, and a state made
    for it, as they are (the estimators keep their state in this form)."""

    __slots__ = ()


def _scale_transform():
    return optax.inject_hyperparams(optax.scale)(step_size=1.0)


class _RateScaledAveraged(_RateScaled):
    """A :class:`_RateScaled` optimizer whose state also holds a running average of the
    parameters (:class:`_ParamAverage`): ``(inner_state, scale_state, average_state)``.  The
    training step advances the average after each update (:func:`_advance_average`)."""

    __slots__ = ()


class _ParamAverage(NamedTuple):
    """An exponential moving average of ``(params, prior_params)`` over the training steps.

    ``decay`` is the long-run per-step decay (``0``: the average is the parameters); over the
    first steps after a (re)start the decay is ``min(decay, (1 + t) / (10 + t))`` at step ``t``,
    so that the average forgets its starting point quickly."""

    count: jax.Array
    decay: jax.Array
    average: Any


def _average_transform():
    """The slot of the parameter average in a chained optimizer state: it leaves the updates as
    they are; the step advances it from the parameters as updated."""

    def init(params):
        dtype = jax.tree_util.tree_leaves(params)[0].dtype
        return _ParamAverage(jnp.zeros([], jnp.int32), jnp.zeros([], dtype), _device_copy(params))

    def update(updates, state, params=None):
        del params
        return updates, state

    return optax.GradientTransformation(init, update)


def _advance_average(opt_state, new_params):
    slot = opt_state[2]
    count = slot.count + 1
    t = count.astype(slot.decay.dtype)
    decay = jnp.minimum(slot.decay, (1 + t) / (10 + t))
    average = jax.tree_util.tree_map(lambda a, p: a + (1 - decay) * (p - a), slot.average, new_params)
    return (*opt_state[:2], _ParamAverage(count, slot.decay, average))


@functools.lru_cache(maxsize=64)
def _with_rate_scale(optimizer, averaged=False):
    """``optimizer`` followed by a scale kept in the optimizer state, so that the fit loop can
    lower the rate between epochs (plateaus, spikes) without recompiling anything; with
    ``averaged``, also the slot of a running average of the parameters."""
    if isinstance(optimizer, _RateScaled):  # already chained (fit_to_data checked ``averaged``)
        return optimizer
    if averaged:
        chained = optax.chain(optimizer, _scale_transform(), _average_transform())
        return _RateScaledAveraged(chained.init, chained.update)
    chained = optax.chain(optimizer, _scale_transform())
    return _RateScaled(chained.init, chained.update)


def _rate_scale(opt_state):
    return float(opt_state[1].hyperparams["step_size"])


def _set_rate_scale(opt_state, value):
    inner = opt_state[1]
    old = inner.hyperparams["step_size"]
    hyper = {**inner.hyperparams, "step_size": jnp.full_like(old, value)}
    return (opt_state[0], inner._replace(hyperparams=hyper), *opt_state[2:])


def _average_slot(opt_state):
    """The :class:`_ParamAverage` slot of a chained optimizer state, or ``None`` without one."""
    if len(opt_state) > 2 and isinstance(opt_state[2], _ParamAverage):
        return opt_state[2]
    return None


def _averaged_params(state):
    """The parameters the fit loop monitors: the running average when the state has one."""
    slot = _average_slot(state.opt_state)
    return (state.params, state.prior_params) if slot is None else slot.average


def _set_average_decay(opt_state, decay):
    slot = _average_slot(opt_state)
    if slot is None:
        return opt_state
    return (*opt_state[:2], slot._replace(decay=jnp.full_like(slot.decay, decay)))


def _restart_average(opt_state, params):
    """The average restarted at ``params`` (a copy), keeping its decay."""
    slot = _average_slot(opt_state)
    if slot is None:
        return opt_state
    return (*opt_state[:2], _ParamAverage(jnp.zeros_like(slot.count), slot.decay, _device_copy(params)))


def _match_average_slot(opt_state, params, averaged):
    """A chained optimizer state with the average's slot added (at ``params``) or removed, as
    ``averaged`` asks (a warm start after ``averaging`` changed, or a new chain)."""
    has_average = _average_slot(opt_state) is not None
    if averaged and not has_average:
        return (*opt_state, _average_transform().init(params))
    if not averaged and has_average:
        return tuple(opt_state[:2])
    return opt_state


def _average_decay(averaging, n_train, batch_size):
    """The per-step decay of an average whose time constant is ``averaging`` epochs."""
    if averaging <= 0:
        return 0.0
    steps = max(1, n_train // max(1, min(batch_size, n_train)))
    return 1.0 - 1.0 / max(1.0, averaging * steps)


@jax.jit
def _log_abs_det(params):
    return log_abs_det_weights(params)


def _device_copy(tree):
    """A copy on the device(s) of a pytree of arrays, with the same shardings: it survives the
    donation of the original to the next epoch, and never passes through host memory."""
    return jax.tree_util.tree_map(lambda a: jnp.array(a, copy=True), tree)


@jax.jit
def _finite(tree):
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(tree)
                              if jnp.issubdtype(leaf.dtype, jnp.inexact)]))


def _all_finite(tree) -> bool:
    # Checked on the device, in one call: no host copy of the state each epoch.
    return bool(_finite(tree))


def _place(tree, mesh):
    """Arrays on the device, or laid out on ``mesh`` as :func:`shard_params` does; arrays
    already placed so are returned as they are (no copy)."""
    return jax.tree_util.tree_map(jnp.asarray, tree) if mesh is None else shard_params(tree, mesh)


def _place_rows(A, mesh):
    """A data array on the device, or replicated on every device of ``mesh``."""
    if A is None:
        return None
    if mesh is None:
        return jnp.asarray(A)
    return jax.device_put(A, NamedSharding(mesh, PartitionSpec()))


def _batched_log_likelihood(params, prior_params, X, u, activation, prior, log_det):
    """Exact per-row log-likelihood, ``log_det`` (``Σ log|det W_k|``, computed once) added to
    every term; in batches of ``_SCORE_BATCH`` rows."""
    parts = [
        _log_likelihood_without_det(params, X[i:i + _SCORE_BATCH], activation, prior, prior_params,
                                    None if u is None else u[i:i + _SCORE_BATCH])
        for i in range(0, X.shape[0], _SCORE_BATCH)
    ]
    return jnp.concatenate(parts) + jnp.asarray(log_det, parts[0].dtype)


def _label_log_posterior(params, prior_params, X, activation, prior):
    """``log p(u | x)`` of the rows of ``X``, in batches: shape ``(n_samples, n_segments)``."""
    return jnp.concatenate([
        observation_log_posterior(params, X[i:i + _SCORE_BATCH], activation, prior, prior_params)
        for i in range(0, X.shape[0], _SCORE_BATCH)
    ])


def _contrastive_penalty(params, prior_params, X, u, activation, prior, weight):
    """``α`` times the mean cross-entropy of the segment labels ``u`` given the rows ``X``."""
    log_post = _label_log_posterior(params, prior_params, X, activation, prior)
    return -weight * float(jnp.mean(jnp.take_along_axis(log_post, u[:, None], axis=1)))


class FitHistory(NamedTuple):
    """What :func:`fit_to_data` did, epoch by epoch.

    Attributes
    ----------
    loss_curve : list of float
        The training NLL of each epoch, in nats per sample: the mean batch loss of the epoch,
        the network's ``−Σ log|det W_k|`` at the epoch's end and ``−log_det_offset`` included
        (with ``contrastive_weight > 0``, plus ``α`` times the mean cross-entropy).
    validation_scores : list of float
        The mean validation log-likelihood of each epoch (``+ log_det_offset``; with
        ``contrastive_weight > 0``, minus ``α`` times the validation cross-entropy); empty
        without a validation set.
    n_epochs : int
        Epochs run (an epoch that diverged included).
    best_epoch : int
        The epoch (1-based) whose parameters were kept: the best monitored score; ``0`` when no
        epoch improved on the start.
    best_score : float
        The best monitored score: validation log-likelihood, or minus the training loss
        without a validation set (``-inf`` when no epoch finished with a finite score).
    converged : bool
        Stopped by the early-stopping rule (``patience`` epochs without an improvement of more
        than ``tol``, after the schedule's rate reductions).
    diverged : bool
        A non-finite loss, score or parameter stopped the fit; the best parameters were restored
        (epoch ``best_epoch``) with a restarted optimizer.
    rate_scale : float
        The schedule's final multiplier of the optimizer's updates (``1.0`` unless it lowered
        the rate); pass it back as ``rate_scale`` to continue at that rate.
    validation_log_likelihoods : list of float
        The mean validation log-likelihood of each epoch (``+ log_det_offset``), the exact
        likelihood also when ``contrastive_weight > 0`` (then ``validation_scores`` holds the
        monitored hybrid objective); empty without a validation set.
    """

    loss_curve: list
    validation_scores: list
    n_epochs: int
    best_epoch: int
    best_score: float
    converged: bool
    diverged: bool
    rate_scale: float
    validation_log_likelihoods: list


class FitProgress(NamedTuple):
    """A snapshot of :func:`fit_to_data`'s loop, handed to its ``callback``.

    Attributes
    ----------
    epoch : int
        Epochs run so far in this call.
    state : TrainState
        The current training state (for ``"interrupted"``: the best parameters with a restarted
        optimizer, the state the fit leaves).  Its arrays are donated to the next epoch: copy
        them (``np.asarray``) to keep them.  With the rate scale chained after the optimizer
        (``opt_state = (optimizer's state, scale state)``, and with ``averaging > 0`` a third
        slot holding the running average of the parameters).
    key : jax.Array
        The key the next epoch's shuffle is split from.
    best : tuple
        ``(params, prior_params)`` of the best score so far (with ``averaging > 0``, the
        averaged parameters that were scored).
    best_score : float
        The best monitored score so far.
    no_change : int
        Epochs since the last improvement of more than ``tol``.
    reductions : int
        Rate reductions made so far by the ``"plateau"`` schedule.
    history : FitHistory
        The history so far.
    """

    epoch: int
    state: TrainState
    key: Any
    best: tuple
    best_score: float
    no_change: int
    reductions: int
    history: FitHistory


_CALLBACK_EVENTS = ("epoch_start", "epoch_end", "interrupted")


def _check_int(value, name, minimum=1):
    if not isinstance(value, numbers.Integral) or isinstance(value, (bool, np.bool_)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}.")
    return int(value)


def _check_real(value, name, minimum=None):
    ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) and math.isfinite(value)
    if not ok or (minimum is not None and value < minimum):
        bound = f" >= {minimum}" if minimum is not None else ""
        raise ValueError(f"{name} must be a finite number{bound}; got {value!r}.")
    return float(value)


def _check_key(key):
    if isinstance(key, jax.Array):
        if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ():
            return key
        if key.dtype == jnp.uint32 and key.shape == (2,):
            return key
    raise TypeError(f"key must be a JAX random key (jax.random.key(seed)); got {key!r}.")


def _validation_rows(validation_fraction, n_samples, context=""):
    """The number of rows ``validation_fraction`` holds out of ``n_samples``, ``ceil(fraction ·
    n)`` as scikit-learn's ``train_test_split`` holds them out; refused when no training row
    would be left (``context`` starts the message)."""
    n_val = math.ceil(validation_fraction * n_samples)
    if n_samples - n_val < 1:
        raise ValueError(f"{context}validation_fraction={validation_fraction} needs at least one training row "
                         f"beside the validation rows; got {n_samples} samples.")
    return n_val


def _check_validation(validation, validation_fraction, n_features, dtype, prior, n_samples):
    """``(X_val, u_val)`` checked, or the fraction to hold out (``None``: no validation)."""
    if validation is not None:
        if isinstance(validation, tuple):
            if len(validation) not in (1, 2):
                raise ValueError("validation must be X_val or a pair (X_val, u_val); got a tuple of "
                                 f"{len(validation)} items.")
            X_val, u_val = (validation + (None,))[:2]
        else:
            X_val, u_val = validation, None
        X_val = check_data(X_val, n_features, dtype, name="validation X")
        if X_val.shape[0] == 0:
            raise ValueError("validation X needs at least one row; got none.")
        u_val = check_aux(prior, u_val, X_val.shape[0], "fit_to_data with the validation set")
        return (X_val, u_val), None
    if validation_fraction is None or (isinstance(validation_fraction, numbers.Real)
                                       and not isinstance(validation_fraction, (bool, np.bool_))
                                       and validation_fraction == 0):
        return None, None
    vf = validation_fraction
    if not isinstance(vf, numbers.Real) or isinstance(vf, (bool, np.bool_)) or not 0.0 < vf < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), or 0 or None for no validation set; got {vf!r}.")
    return None, _validation_rows(vf, n_samples)


def fit_to_data(state, X, u=None, *, optimizer, key, activation="smooth_leaky_relu", prior="laplace",
                gradient="relative", batch_size=256, max_epochs=100, validation_fraction=0.1,
                validation=None, patience=10, tol=1e-4, schedule="plateau", contrastive_weight=0.0,
                log_det_offset=0.0, rate_scale=1.0, averaging=0.0, mesh=None, show_progress=False,
                callback=None, resume=None):
    """Train by exact maximum likelihood: epochs, validation, early stopping, a rate schedule.

    The loop of :class:`~nica.NonlinearICA` and :class:`~nica.ConditionalNonlinearICA` over the
    functional core.  Each epoch shuffles the training rows with ``key`` and runs the step of
    :func:`make_train_step` over full mini-batches (one jitted ``lax.scan``), then computes the
    exact training NLL (the epoch's mean batch loss with the network's ``−Σ log|det W_k|``) and,
    with a validation set, the mean validation log-likelihood.  The best parameters by that
    score (or by the training loss without a validation set) are kept and returned.

    * Early stopping: after ``patience`` epochs without an improvement of more than ``tol``,
      ``schedule="plateau"`` multiplies the rate by 0.2 (at most twice; the next plateau
      stops), ``"constant"`` stops at once.  For the schedule, ``optimizer`` is chained with a
      scale of its updates (``optax.inject_hyperparams(optax.scale)``), so lowering the rate
      recompiles nothing; the state returned has ``optimizer``'s own state again.
    * Spikes: a score more than 0.25 nats per sample below the best restores the best
      parameters with a restarted optimizer and lowers the rate (every schedule).
    * Divergence: a non-finite loss, score or parameter stops the fit and restores the best
      parameters with a restarted optimizer (``history.diverged``; no warning is issued).
    * An exception inside the loop (``KeyboardInterrupt`` included) propagates; ``callback``
      first receives ``"interrupted"`` with the best parameters, as the fit would have left
      them.  The arrays of ``state`` are donated to the first epoch (updated in place).

    Parameters
    ----------
    state : TrainState
        The start, from :func:`init_train_state` with ``optimizer``.
    X : array of shape (n_samples, n_features)
        Training rows, of the parameters' dtype (pre-processed as you like: the loss is in the
        units the network sees; ``log_det_offset`` adds a fixed pre-processing's
        log-determinant).
    u : array of shape (n_samples,) or (n_samples, n_aux), optional
        The auxiliary variable of a conditional prior (``None`` for a factorized one).
    optimizer : optax.GradientTransformation
        The optimizer ``state`` was initialised with.
    key : jax.Array
        A random key (:func:`jax.random.key`): with ``validation_fraction``, split once to draw
        the validation rows; then split once per epoch for its shuffle.
    activation : str or Activation, default="smooth_leaky_relu"
    prior : str or Prior, default="laplace"
    gradient : {"relative", "equivariant", "euclidean", "autodiff"}, default="relative"
        As for :func:`make_train_step`.
    batch_size : int, default=256
        Rows per step (a training set smaller than one batch is used whole).
    max_epochs : int, default=100
    validation_fraction : float in (0, 1), 0 or None, default=0.1
        The fraction of the rows of ``X`` held out (``ceil(validation_fraction · n)`` rows,
        drawn with ``key``) to monitor; ``0`` or
        ``None``: monitor the training loss.  Ignored when ``validation`` is given.
    validation : array or tuple, optional
        A validation set used as given: ``X_val``, or ``(X_val, u_val)`` for a conditional
        prior.  All of ``X`` is then trained on.
    patience : int, default=10
        Epochs without an improvement of more than ``tol`` that make a plateau (the
        estimators' ``n_iter_no_change``).
    tol : float, default=1e-4
        The improvement, in nats per sample, that resets the count.
    schedule : {"plateau", "constant"}, default="plateau"
    contrastive_weight : float, default=0.0
        The hybrid objective's ``α`` (:func:`make_train_step`); with ``α > 0`` the monitored
        validation score is the log-likelihood minus ``α`` times the mean cross-entropy of the
        segment labels, the objective being optimised.
    log_det_offset : float, default=0.0
        Added to every per-sample log-likelihood (subtracted from the loss): for instance the
        log-determinant of a fixed whitening applied to the data beforehand, so that the
        numbers are in the units of the raw data.
    rate_scale : float, default=1.0
        The rate multiplier the fit starts with (``history.rate_scale`` of an earlier call
        continues at its rate).
    averaging : float, default=0.0
        ``τ >= 0``: with ``τ > 0`` the loop keeps an exponential moving average of the
        parameters over the steps (Polyak averaging) with a time constant of ``τ`` epochs
        (per-step decay ``1 − 1/(τ · steps per epoch)``, shorter over the first steps after a
        start), and validates, keeps and returns that average instead of the last iterate.
        The step's noise then no longer reaches the monitored score.  ``0``: the last iterate.
    mesh : jax.sharding.Mesh, optional
        Train on several devices (:func:`make_train_step`); the state, the data and the best
        parameters are placed on it.
    show_progress : bool or str, default=False
        A tqdm progress bar with the training and validation NLL; a str labels it.
    callback : callable, optional
        ``callback(event, progress)`` with ``event`` one of ``"epoch_start"`` (before each
        epoch), ``"epoch_end"`` (after each epoch and what the schedule did; not after an
        epoch that diverged) and
        ``"interrupted"`` (an exception is about to propagate), and ``progress`` a
        :class:`FitProgress`.  For logging, custom checkpoints, or a state to keep when the fit
        is interrupted.
    resume : FitProgress, optional
        Continue an interrupted fit exactly: the best parameters and score, the epochs without
        improvement and the rate reductions of a snapshot taken at ``"epoch_start"`` (pass its
        ``state`` and ``key`` too, and the same ``validation``).

    Returns
    -------
    state : TrainState
        The best parameters (by the monitored score; with ``averaging > 0`` the best average)
        with the last optimizer state; after a divergence, the best parameters with a restarted
        optimizer.
    history : FitHistory
        Losses, scores, the best epoch, and why the fit stopped.

    See Also
    --------
    NonlinearICA : the estimator over this loop (whitening, initialisation, ``n_init``).

    Examples
    --------
    >>> import jax, optax
    >>> import nica
    >>> X = jax.random.laplace(jax.random.key(0), (512, 2)) @ jax.numpy.array([[1.0, 0.4], [0.2, 1.0]])
    >>> optimizer = optax.adam(1e-2)
    >>> state = nica.init_train_state(optimizer, nica.init_params(jax.random.key(1), 2, 2))
    >>> state, history = nica.fit_to_data(state, X, optimizer=optimizer, key=jax.random.key(2),
    ...                                   batch_size=64, max_epochs=5)
    >>> history.n_epochs, len(history.validation_scores)
    (5, 5)
    >>> bool(history.best_score == max(history.validation_scores))
    True
    """
    # every argument checked before any JAX work
    if not isinstance(state, TrainState):
        raise TypeError(f"state must be an nica.TrainState (from init_train_state(optimizer, params, "
                        f"prior_params)); got {type(state).__name__}.")
    _check_optimizer(optimizer)
    key = _check_key(key)
    _check_gradient(gradient)
    activation = _activations.get(activation)
    prior = _priors.get(prior)
    mesh = _check_mesh(mesh)
    batch_size = _check_int(batch_size, "batch_size")
    max_epochs = _check_int(max_epochs, "max_epochs")
    patience = _check_int(patience, "patience")
    tol = _check_real(tol, "tol", minimum=0)
    log_det_offset = _check_real(log_det_offset, "log_det_offset")
    rate_scale = _check_real(rate_scale, "rate_scale")
    averaging = _check_real(averaging, "averaging", minimum=0)
    if not rate_scale > 0:
        raise ValueError(f"rate_scale must be > 0; got {rate_scale!r}.")
    if not (isinstance(schedule, str) and schedule in _SCHEDULE_OPTIONS):
        raise ValueError(f"schedule must be one of {_SCHEDULE_OPTIONS}; got {schedule!r}.")
    contrastive_weight = check_contrastive_weight(contrastive_weight, prior)
    if not isinstance(show_progress, (bool, np.bool_, str)):
        raise TypeError(f"show_progress must be a bool or a str (the bar's label); got {show_progress!r}.")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None; got {type(callback).__name__}.")
    if resume is not None and not isinstance(resume, FitProgress):
        raise TypeError(f"resume must be an nica.FitProgress (a callback's snapshot); got {type(resume).__name__}.")
    n_features, _ = check_params(state.params)
    dtype = _params_dtype(state.params)
    X = check_data(X, n_features, dtype)
    if X.shape[0] == 0:
        raise ValueError(f"X needs at least one row; got shape {X.shape}.")
    u = check_aux(prior, u, X.shape[0], "fit_to_data")
    check_prior_params(prior, state.prior_params, n_features, jnp.dtype(dtype), name="state.prior_params",
                       hint=" and pass them to init_train_state")
    val, n_val = _check_validation(validation, validation_fraction, n_features, dtype, prior, X.shape[0])
    chained = isinstance(optimizer, _RateScaled)  # the estimators' form: the state has the scale
    if chained and isinstance(optimizer, _RateScaledAveraged) != (averaging > 0):
        raise ValueError(f"averaging={averaging} does not match the chained optimizer (built "
                         f"{'with' if isinstance(optimizer, _RateScaledAveraged) else 'without'} the average).")
    if not chained and not optimizer_state_fits(optimizer, state):
        raise ValueError("state.opt_state does not fit optimizer: build the state with "
                         "init_train_state(optimizer, params, prior_params) and the same optimizer.")

    if n_val is not None:  # the validation rows, drawn with the key
        key, split_key = jax.random.split(key)
        order = jax.random.permutation(split_key, X.shape[0])
        val = (X[order[:n_val]], None if u is None else u[order[:n_val]])
        X, u = X[order[n_val:]], None if u is None else u[order[n_val:]]
    train = (_place_rows(X, mesh), _place_rows(u, mesh))
    val = None if val is None else (_place_rows(val[0], mesh), _place_rows(val[1], mesh))

    scaled = _with_rate_scale(optimizer, averaging > 0)
    if not chained:
        trainable = (state.params, state.prior_params)
        opt_state = _match_average_slot((state.opt_state, _scale_transform().init(trainable)), trainable,
                                        averaging > 0)
        state = TrainState(*trainable, _set_rate_scale(opt_state, rate_scale))
    decay = _average_decay(averaging, train[0].shape[0], batch_size)
    state = state._replace(opt_state=_set_average_decay(state.opt_state, decay))
    state = _place(state, mesh)
    epoch_fn = make_epoch(scaled, activation, prior, gradient, batch_size, mesh, contrastive_weight)
    state, history = _fit_loop(
        epoch_fn, scaled, state, train, val, key, max_epochs, activation=activation, prior=prior,
        mesh=mesh, patience=patience, tol=tol, schedule=schedule, contrastive_weight=contrastive_weight,
        log_det_offset=log_det_offset, show_progress=show_progress, callback=callback, resume=resume)
    if not chained:
        state = state._replace(opt_state=state.opt_state[0])
    return state, history


def _fit_loop(epoch_fn, optimizer, state, train, val, key, epochs, *, activation, prior, mesh, patience,
              tol, schedule, contrastive_weight, log_det_offset, show_progress, callback, resume):
    """The loop of :func:`fit_to_data` on checked, placed arguments; ``optimizer`` and the
    state carry the rate scale.

    Memory: the state (parameters and optimizer state) lives on the device and is donated to
    each epoch; besides it only the best epoch's parameters are kept, as a device copy (no host
    copy, no copy of the optimizer state).  With averaging the optimizer state holds one more
    copy of the parameters, the running average (the one monitored and kept).  The optimizer
    state kept is the last one, as scikit-learn's MLP keeps its solver state when it restores
    the best coefficients; a fit that diverged, or was interrupted, restarts the optimizer at
    the best parameters.
    """
    monitor_validation = val is not None
    loss_curve, validation_scores, validation_log_likelihoods = [], [], []
    best_score, best_epoch, n_epochs = -np.inf, 0, 0
    best = _device_copy(_averaged_params(state))
    no_change, converged, diverged = 0, False, False
    reductions = 0
    rate = _rate_scale(state.opt_state)
    slot = _average_slot(state.opt_state)  # a running average of the parameters, or None
    averaged = slot is not None
    decay = float(slot.decay) if averaged else 0.0
    label = show_progress if isinstance(show_progress, str) else "fit_to_data"
    bar = tqdm(range(epochs), desc=label, disable=not show_progress, leave=False)
    if resume is not None:  # an interrupted fit's loop state
        best = _place(resume.best, mesh)
        best_score, no_change, reductions = resume.best_score, resume.no_change, resume.reductions

    def history():
        return FitHistory(loss_curve, validation_scores, n_epochs, best_epoch, best_score, converged,
                          diverged, rate, validation_log_likelihoods)

    def report(event, state):
        if callback is not None:
            callback(event, FitProgress(n_epochs, state, key, best, best_score, no_change, reductions,
                                        history()))

    def restart_at(params, rate):
        # a copy: the next epoch donates the state, and ``best`` must outlive it
        opt_state = _set_average_decay(_set_rate_scale(optimizer.init(params), rate), decay)
        return _place(TrainState(*_device_copy(params), opt_state), mesh)

    try:
        for _ in bar:
            report("epoch_start", state)
            key, epoch_key = jax.random.split(key)
            state, data_loss = epoch_fn(state, *train, epoch_key)
            n_epochs += 1
            log_det = float(_log_abs_det(state.params))
            loss = float(data_loss) - log_det - log_det_offset
            if not np.isfinite(loss) or not _all_finite(state):
                diverged = True
                break
            loss_curve.append(loss)
            postfix = {"train_nll": f"{loss:.4f}"}
            monitored = _averaged_params(state)
            if monitor_validation:
                if averaged:
                    log_det = float(_log_abs_det(monitored[0]))
                val_ll = _batched_log_likelihood(*monitored, *val, activation, prior, log_det)
                score = float(jnp.mean(val_ll)) + log_det_offset
                log_likelihood = score
                if contrastive_weight > 0:  # the hybrid objective: monitor what is optimised
                    score -= _contrastive_penalty(*monitored, *val, activation, prior, contrastive_weight)
                if not np.isfinite(score):
                    diverged = True
                    break
                validation_scores.append(score)
                validation_log_likelihoods.append(log_likelihood)
                postfix["val_nll"] = f"{-score:.4f}"
            else:
                score = -loss
            bar.set_postfix(postfix)
            stop = False
            if score < best_score - _SPIKE_NATS:
                # A spike: back to the best parameters, with a fresh optimizer and a lower rate.
                rate *= _RATE_FACTOR
                state = restart_at(best, rate)
                no_change += 1
            else:
                no_change = 0 if score > best_score + tol else no_change + 1
                if score > best_score:
                    best_score, best_epoch = score, n_epochs
                    best = None  # free the old copy first: at most one extra copy of the parameters
                    best = _device_copy(monitored)
                if no_change >= patience:
                    if schedule == "plateau" and reductions < _MAX_RATE_REDUCTIONS:
                        reductions += 1
                        rate *= _RATE_FACTOR
                        state = TrainState(state.params, state.prior_params, _set_rate_scale(state.opt_state, rate))
                        no_change = 0
                    else:
                        converged = stop = True
            report("epoch_end", state)
            if stop:
                break
    except BaseException:
        # Interrupted (e.g. KeyboardInterrupt) inside an epoch, whose input was donated: hand
        # the best parameters seen to the callback, then re-raise.
        # (Between dropping the old best copy and making the new one, the state is that copy.)
        report("interrupted", restart_at(best, rate) if best is not None else state)
        raise
    finally:
        bar.close()

    if diverged:
        state = restart_at(best, rate)
    elif monitor_validation or averaged:
        # the kept parameters; an average continues from them
        state = TrainState(*best, _restart_average(state.opt_state, best))
    return state, history()
