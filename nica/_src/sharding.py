"""Device meshes and shardings: data-parallel and model-parallel training on one process.

Both the step and the epoch accept a :class:`jax.sharding.Mesh` whose axes are named ``"data"``
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

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.flatten_util import ravel_pytree
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

__all__ = [
    "DATA_AXIS",
    "MODEL_AXIS",
    "make_mesh",
    "check_mesh",
    "data_shards",
    "param_shardings",
    "row_sharding",
    "constrain_rows",
    "constrain_params",
    "is_data_mesh",
    "mean_over_rows",
    "shard_params",
    "place",
    "place_rows",
    "fetch",
    "to_numpy",
]

DATA_AXIS = "data"
MODEL_AXIS = "model"


def make_mesh(parallel: str = "data", devices: Sequence[jax.Device] | None = None) -> Mesh:
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
    return jax.make_mesh((len(devices),), (parallel,), axis_types=(AxisType.Auto,), devices=devices)


def check_mesh(mesh):
    """``mesh`` checked: ``None``, or a :class:`~jax.sharding.Mesh` with axes named ``"data"``
    and/or ``"model"`` of type ``Auto``."""
    if mesh is None:
        return None
    if not isinstance(mesh, Mesh):
        raise TypeError(f"mesh must be a jax.sharding.Mesh or None; got {type(mesh).__name__}.")
    unknown = [name for name in mesh.axis_names if name not in (DATA_AXIS, MODEL_AXIS)]
    if unknown:
        raise ValueError(f"mesh axes must be named {DATA_AXIS!r} and/or {MODEL_AXIS!r}; got {mesh.axis_names}.")
    if any(axis_type != AxisType.Auto for axis_type in mesh.axis_types):
        raise ValueError(
            f"mesh axes must have AxisType.Auto (nica.make_mesh builds such meshes); got {mesh.axis_types}."
        )
    return mesh


def data_shards(mesh) -> int:
    """The number of devices on the ``"data"`` axis (1 without a mesh or without that axis)."""
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


def param_shardings(tree, mesh):
    """The :class:`~jax.sharding.NamedSharding` of every leaf of ``tree`` (see :func:`shard_params`)."""
    return jax.tree_util.tree_map_with_path(lambda path, leaf: NamedSharding(mesh, _leaf_spec(path, leaf, mesh)), tree)


def row_sharding(mesh) -> NamedSharding:
    """Rows of a batch over ``"data"`` (replicated on a mesh without that axis)."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS if DATA_AXIS in mesh.axis_names else None))


def constrain_rows(A, mesh):
    """``A`` (a batch, or ``None``) constrained to be split by rows over ``mesh``'s ``"data"``
    axis; unchanged without a mesh (one device)."""
    if mesh is None or A is None:
        return A
    return jax.lax.with_sharding_constraint(A, row_sharding(mesh))


def is_data_mesh(mesh) -> bool:
    """Whether ``mesh`` splits only the rows of the batch (one axis, ``"data"``, of several devices)."""
    return mesh is not None and tuple(mesh.axis_names) == (DATA_AXIS,) and mesh.size > 1


def mean_over_rows(fn, mesh):
    """``fn(replicated, X, u)``, a pytree of means over the rows of the batch ``X`` (and ``u``,
    or ``None``), computed by each device of a data mesh on its own rows and averaged with one
    all-reduce of all of it packed into one buffer; ``replicated`` (a pytree: the parameters)
    is the same on every device.  The same value as ``fn`` on the whole batch, up to the order of
    the sums, for rows split evenly.  One buffer, because each all-reduce between processes is
    a network round trip (about a millisecond with gloo on CPUs), whatever its size.
    (Each term must be a mean over the rows plus terms that do not depend on them.)"""
    rows = PartitionSpec(DATA_AXIS)

    def local(replicated, X, u):
        # varying over the devices: a gradient with respect to them is each device's own (no
        # all-reduce of its own per leaf), summed in the one below
        replicated = jax.lax.pcast(replicated, DATA_AXIS, to="varying")
        flat, unravel = ravel_pytree(fn(replicated, X, u))
        return unravel(jax.lax.pmean(flat, DATA_AXIS))

    def mean(replicated, X, u):
        specs = (PartitionSpec(), rows, None if u is None else rows)
        return jax.shard_map(local, mesh=mesh, in_specs=specs, out_specs=PartitionSpec())(replicated, X, u)

    return mean


def constrain_params(tree, mesh):
    """``tree`` constrained to the layout of :func:`shard_params`; unchanged without a mesh."""
    if mesh is None:
        return tree
    return jax.lax.with_sharding_constraint(tree, param_shardings(tree, mesh))


def shard_params(tree: Any, mesh: Mesh) -> Any:
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
    mesh = check_mesh(mesh)
    return jax.device_put(tree, param_shardings(tree, mesh))


def place(tree, mesh):
    """Arrays on the device, or laid out on ``mesh`` as :func:`shard_params` does; arrays
    already placed so are returned as they are (no copy)."""
    return jax.tree_util.tree_map(jnp.asarray, tree) if mesh is None else shard_params(tree, mesh)


def place_rows(A, mesh):
    """A data array on the device, or replicated on every device of ``mesh`` (``None`` as it is)."""
    if A is None:
        return None
    if mesh is None:
        return jnp.asarray(A)
    return jax.device_put(A, NamedSharding(mesh, PartitionSpec()))


def fetch(a):
    """``a`` as a NumPy array; an array split over several processes (model parallel on
    several hosts) is gathered first, a collective that every process runs; one replicated on
    every process is read from this process's own copy."""
    if isinstance(a, jax.Array) and not a.is_fully_addressable:
        if a.is_fully_replicated:
            return np.asarray(a.addressable_data(0))
        return multihost_utils.process_allgather(a, tiled=True)
    return np.asarray(a)


def to_numpy(tree):
    """NumPy views of a pytree of arrays (no copy of CPU device buffers, one host copy otherwise)."""
    return jax.tree_util.tree_map(fetch, tree)
