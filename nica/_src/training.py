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
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from nica._src import activations as _activations
from nica._src import priors as _priors
from nica._src.contrastive import check_contrastive_weight
from nica._src.gradients import VALUE_AND_GRADIENT, transport
from nica._src.network import _params_dtype, check_data, check_params
from nica._src.validation import check_aux, check_prior_params

__all__ = ["TrainState", "init_train_state", "make_train_step", "make_epoch", "make_mesh",
           "shard_params"]

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
