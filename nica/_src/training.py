"""Training: a pure optax step and a jitted epoch over shuffled mini-batches.

The step hands a gradient form's direction (the relative gradient, or for comparison the
Euclidean or autodiff gradient) of an objective to any optax ``GradientTransformation`` exactly
as if it were a gradient: ``optimizer.update``, then ``optax.apply_updates``, with no branch on
what the optimizer chains (the equivariant transport, a rate scale, parameter averaging:
:mod:`nica.transforms`).  The epoch runs every step of one pass over the data inside one
``jax.lax.scan``, so the host synchronises only at epoch ends.  Both take a device mesh
(:mod:`nica._src.sharding`).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from nica._src import activations as _activations
from nica._src import gradients as _gradients
from nica._src import objectives as _objectives
from nica._src import priors as _priors
from nica._src._checks import check_real
from nica._src.activations import Activation
from nica._src.distributed import spans_processes
from nica._src.gradients import GradientForm
from nica._src.network import Layer, check_data, check_params, forward_trace, params_dtype
from nica._src.objectives import Objective
from nica._src.priors import Prior
from nica._src.sharding import (
    DATA_AXIS,
    check_mesh,
    constrain_params,
    constrain_rows,
    data_shards,
    is_data_mesh,
    mean_over_rows,
)
from nica._src.shuffle import shuffle_order, traced_shuffle_order

__all__ = [
    "TrainState",
    "init_train_state",
    "make_train_step",
    "make_epoch",
    "build_step",
    "compile_epoch",
    "check_optimizer",
    "check_batch",
    "check_live",
    "opt_state_fits",
    "check_opt_state",
    "objective_argument",
    "PaddedRows",
    "bucket_rows",
    "training_rows",
    "block_rows",
    "pad_rows",
    "map_row_blocks",
    "PaddingEpoch",
    "SCORE_BATCH",
    "scoring_rows",
    "segment_block_rows",
    "term_values",
]

# Row buckets: arrays of rows are padded to a bucketed count, so that the jitted functions that
# take them (an epoch, the validation and scoring blocks) compile once per bucket rather than
# once per row count.  A count of ``k`` units is rounded up to three significant binary digits
# (1..8, 10, 12, 14, 16, 20, 24, 28, 32, 40, ...: at most 25 % more).
_BUCKET_BITS = 3
SCORE_BATCH = 8192  # the most rows per block when validation and scoring compute on rows
# The smallest block of rows that validation and scoring compute on (a set of n rows below the
# largest block is one block of bucket_rows(n, _MIN_BLOCK) rows).
_MIN_BLOCK = 16


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

    params: Sequence[Layer]
    prior_params: Any
    opt_state: optax.OptState


def check_optimizer(optimizer):
    """``optimizer`` if it is an optax ``GradientTransformation``, else a ``TypeError``."""
    if not isinstance(optimizer, optax.GradientTransformation):
        hint = f" (build one: optax.{optimizer}(1e-3))" if isinstance(optimizer, str) else ""
        raise TypeError(f"optimizer must be an optax.GradientTransformation{hint}; got {type(optimizer).__name__}.")
    return optimizer


def init_train_state(
    optimizer: optax.GradientTransformation, params: Sequence[Layer], prior_params: Any = ()
) -> TrainState:
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
    check_optimizer(optimizer)
    check_live(params, "params")
    check_live(prior_params, "prior_params")
    check_params(params)
    return TrainState(params, prior_params, optimizer.init((params, prior_params)))


def check_live(tree, name: str) -> None:
    """A ``ValueError`` naming the first array of ``tree`` that was deleted (donated to a jitted
    function, such as the epoch of :func:`make_epoch`, which reuses its input's memory), rather
    than JAX's ``Array has been deleted``; traced values are not looked at."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if isinstance(leaf, jax.Array) and not isinstance(leaf, jax.core.Tracer) and leaf.is_deleted():
            raise ValueError(
                f"{name}{jax.tree_util.keystr(path)} is an array that has been deleted: it was "
                "donated to a jitted function that reuses its memory (the epoch of make_epoch, "
                "and fit_to_data with donate_state=True, donate their state). Pass the state that "
                "call returned, or keep a copy made before it (jax.tree_util.tree_map(jnp.copy, state))."
            )


@functools.lru_cache(maxsize=64)
def _expected_state(optimizer, tree, shapes):
    """``optimizer.init``'s state structure and leaf shapes for parameters of that structure and
    those leaf shapes and dtypes (abstractly; cached: a repeated check traces nothing)."""
    trainable = jax.tree_util.tree_unflatten(tree, [jax.ShapeDtypeStruct(s, d) for s, d in shapes])
    expected_leaves, expected_tree = jax.tree_util.tree_flatten(jax.eval_shape(optimizer.init, trainable))
    return expected_tree, tuple(leaf.shape for leaf in expected_leaves)


def _abstract(trainable):
    leaves, tree = jax.tree_util.tree_flatten(trainable)
    return tree, tuple((tuple(np.shape(a)), np.dtype(jnp.result_type(a))) for a in leaves)


def opt_state_fits(optimizer, opt_state, trainable) -> bool:
    """Whether ``opt_state`` has the structure and shapes ``optimizer.init(trainable)`` would give
    (abstractly: nothing is computed)."""
    expected_tree, expected_shapes = _expected_state(optimizer, *_abstract(trainable))
    state_leaves, state_tree = jax.tree_util.tree_flatten(opt_state)
    same_tree = bool(state_tree == expected_tree)
    return same_tree and tuple(tuple(np.shape(a)) for a in state_leaves) == expected_shapes


def _state_kinds(opt_state) -> str:
    """The kinds of state an optimizer state holds (``ScaleByAdamState, EmptyState``)."""
    nodes = jax.tree_util.tree_leaves(opt_state, is_leaf=lambda node: hasattr(node, "_fields"))
    kinds = [type(node).__name__ for node in nodes]
    return ", ".join(dict.fromkeys(kinds)) or "nothing"


def check_opt_state(optimizer, opt_state, trainable, where: str) -> None:
    """A ``ValueError`` when ``opt_state`` is not a state of ``optimizer`` for ``trainable`` (a
    state made by another optimizer, or for other parameters), before optax would fail inside
    its update; ``where`` names the function the optimizer was given to."""
    if opt_state_fits(optimizer, opt_state, trainable):
        return
    tree, shapes = _abstract(trainable)
    expected = jax.eval_shape(
        optimizer.init, jax.tree_util.tree_unflatten(tree, [jax.ShapeDtypeStruct(s, d) for s, d in shapes])
    )
    arrived, wanted = _state_kinds(opt_state), _state_kinds(expected)
    what = (
        f"it holds {arrived}; optimizer.init gives {wanted}"
        if arrived != wanted
        else f"it holds {arrived} with other shapes than optimizer.init gives for these parameters"
    )
    raise ValueError(
        f"state.opt_state does not fit optimizer: it is not the state of the optimizer given to "
        f"{where} ({what}). Make the state with that optimizer: init_train_state(optimizer, "
        "params, prior_params), i.e. optimizer.init((params, prior_params))."
    )


def objective_argument(objective, contrastive_weight, prior):
    """The objective of ``objective=`` or, deprecated, of ``contrastive_weight=α``
    (``likelihood() + α · label_cross_entropy()``), checked against ``prior``."""
    if contrastive_weight is not None:
        if objective is not None:
            raise ValueError(
                "give objective or contrastive_weight, not both (contrastive_weight=α is "
                "objective=likelihood() + α * label_cross_entropy())."
            )
        warnings.warn(
            "contrastive_weight is deprecated in the functional core; pass objective="
            "nica.objectives.likelihood() + α * nica.objectives.label_cross_entropy().",
            FutureWarning,
            stacklevel=3,
        )
        weight = check_real(contrastive_weight, "contrastive_weight", 0, closed="left")
        objective = _objectives.likelihood() + weight * _objectives.label_cross_entropy() if weight > 0 else None
    return _gradients.resolve_objective(objective, prior)


def check_batch(state, X, u, prior, where: str) -> tuple[jax.Array, Any]:
    """Static checks of a state and the rows it is trained on (shapes, dtypes, pytree structure),
    so that they also run when a step is traced under ``jax.jit``; concrete segment ids are
    range-checked by the prior itself.  Returns ``X`` as a JAX array and ``u`` as the prior
    takes it; ``where`` names the caller in the messages."""
    if not isinstance(state, TrainState):
        raise TypeError(
            f"state must be an nica.TrainState (from init_train_state(optimizer, params, "
            f"prior_params)); got {type(state).__name__}."
        )
    check_live(state, "state")
    n_features, _ = check_params(state.params)
    dtype = params_dtype(state.params)
    X = check_data(X, n_features, dtype)
    if X.shape[0] == 0:
        raise ValueError(f"{where} averages over the rows of X: X needs at least one row; got shape {X.shape}.")
    u = _priors.check_aux(prior, u, X.shape[0], where)
    _priors.check_prior_params(
        prior,
        state.prior_params,
        n_features,
        jnp.dtype(dtype),
        name="state.prior_params",
        hint=" and pass them to init_train_state",
    )
    return X, u


def build_step(optimizer, form, activation, prior, objective, mesh, state_optimizer=None, caller="make_train_step"):
    """The step of :func:`make_train_step` with ``optimizer`` used as it is (nothing chained
    for the gradient form) and every other argument a checked, resolved object; with
    ``state_optimizer``, the state's optimizer state is checked to be one of its (while tracing
    under ``jit``; ``caller`` names the function it was given to)."""

    def value_and_gradient(trainable, X, u):
        return form.value_and_gradient(trainable[0], X, activation, prior, trainable[1], u, objective)

    def step(state: TrainState, X, u=None):
        X, _ = check_batch(state, X, u, prior, "the step")
        if state_optimizer is not None:
            check_opt_state(state_optimizer, state.opt_state, (state.params, state.prior_params), caller)
        X, u = constrain_rows(X, mesh), constrain_rows(u, mesh)
        trainable = (state.params, state.prior_params)
        # over several processes: each device's rows, then one all-reduce of everything (each
        # all-reduce between processes is a network round trip; on one process the
        # partitioner's own layout is faster, measured with benchmarks/devices.py)
        if is_data_mesh(mesh) and spans_processes(mesh):
            loss, grads, prior_grads = mean_over_rows(value_and_gradient, mesh)(trainable, X, u)
        else:
            loss, grads, prior_grads = value_and_gradient(trainable, X, u)
        grads = constrain_params(grads, mesh)  # summed over the batch rows: an all-reduce over "data"
        updates, opt_state = optimizer.update((grads, prior_grads), state.opt_state, trainable)
        params, prior_params = optax.apply_updates(trainable, updates)
        return constrain_params(TrainState(params, prior_params, opt_state), mesh), loss

    return step


def make_train_step(
    optimizer: optax.GradientTransformation,
    *,
    activation: str | Activation = "smooth_leaky_relu",
    prior: str | Prior = "laplace",
    gradient: str | GradientForm = "relative",
    mesh: Mesh | None = None,
    contrastive_weight: float | None = None,
    objective: str | Objective | None = None,
) -> Callable[..., tuple[TrainState, jax.Array]]:
    """Build a pure training step ``step(state, X, u=None) -> (state, loss)``.

    Parameters
    ----------
    optimizer : optax.GradientTransformation
        Any optax optimizer; it receives the gradient form's direction as if it were a gradient.
    activation : str or Activation, default="smooth_leaky_relu"
    prior : str or Prior, default="laplace"
        A factorized prior, or a conditional one (then pass ``u`` to the step).
    gradient : str or GradientForm, default="relative"
        Which direction to hand to the optimizer for the layers (:mod:`nica.gradients`):
        ``"relative"``, ``"equivariant"`` (the relative gradient in the group's coordinates,
        :func:`~nica.equivariant_gradient`, the optimizer's update mapped back to the weights
        with :func:`~nica.transport`, one ``D×D×D`` product per layer: the same step as
        ``"relative"`` for plain SGD, an equivariant one for Adam), ``"euclidean"`` and
        ``"autodiff"`` (the paper's baselines, same likelihood, O(D³) per layer), or a
        registered form.
    mesh : jax.sharding.Mesh, optional
        Train on several devices (``docs/scaling.md``): the batch is constrained to be split by
        rows over the axis ``"data"``, the gradients and the new state to the layout of
        :func:`~nica.shard_params`.  Place the state with :func:`~nica.shard_params` before the
        first call.  ``None``: no sharding annotations (one device).
    contrastive_weight : float, optional
        Deprecated: ``α`` gives ``objective=likelihood() + α * label_cross_entropy()``.
    objective : str or Objective, optional
        What the step minimises (:mod:`nica.objectives`); default: the mean negative
        log-likelihood.  ``likelihood() + α * label_cross_entropy()`` (a segment-conditional
        prior) is the hybrid objective: the terms' back-propagated errors are summed before the
        cheap relative form, so the step stays ``O(L·B·D²)`` plus ``B × n_segments × D`` for
        the label posterior.

    Returns
    -------
    step : callable
        ``step(state: TrainState, X, u=None) -> (TrainState, loss)`` where ``loss`` is the
        objective's mean over the batch without the ``−Σ log|det W|`` term (training never
        computes determinants).  Pure and jit-able.  Before any computation (while tracing,
        under ``jit``) it refuses with a ``ValueError`` a ``state.opt_state`` that is not
        ``optimizer``'s (made by another optimizer, or for other parameters) and a state with
        deleted (donated) arrays.

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
    check_optimizer(optimizer)
    form = _gradients.get(gradient)
    prior = _priors.get(prior)
    objective = objective_argument(objective, contrastive_weight, prior)
    return build_step(
        form.wrap_optimizer(optimizer),
        form,
        _activations.get(activation),
        prior,
        objective,
        check_mesh(mesh),
        state_optimizer=optimizer,
    )


def bucket_rows(n: int, unit: int) -> int:
    """``n`` rows rounded up to a bucket: ``⌈n / unit⌉`` units rounded up to three significant
    binary digits (at most 25 % more), times ``unit``; at least one unit."""
    k = max(1, -(-int(n) // int(unit)))
    shift = max(0, k.bit_length() - _BUCKET_BITS)
    return (-(-k >> shift) << shift) * int(unit)


def training_rows(n: int, batch_size: int) -> int:
    """The rows an epoch over ``n`` training rows is compiled for: a whole number of batches,
    :func:`bucket_rows` of ``n``; a set smaller than one batch (used whole) is not padded."""
    return int(n) if n < batch_size else bucket_rows(n, batch_size)


def block_rows(n: int, largest: int) -> int:
    """The rows of each block that validation or scoring computes ``n`` rows in: one block of
    ``bucket_rows(n, 16)`` rows for a small set, blocks of ``largest`` rows otherwise (so the
    memory is bounded by one block's)."""
    return max(1, min(int(largest), bucket_rows(n, _MIN_BLOCK)))


class PaddedRows(NamedTuple):
    """Rows padded to a fixed count: the first ``n`` rows of ``X`` (and of ``u``, or ``None``)
    are data, the rest zeros that every computation masks out or never draws."""

    X: Any
    u: Any
    n: int


def pad_rows(X, u, n_padded: int) -> PaddedRows:
    """``X`` and ``u`` (``None``, or one entry per row) with zero rows appended up to
    ``n_padded`` rows: NumPy arrays on the host (nothing compiled), JAX arrays on their device
    (a small copy, compiled once per size); arrays of ``n_padded`` rows as they are."""
    n = int(np.shape(X)[0])

    def pad(A):
        if A is None or n == n_padded or np.shape(A)[0] != n:  # (a u of another length: refused later)
            return A
        widths = [(0, n_padded - n)] + [(0, 0)] * (np.ndim(A) - 1)
        return jnp.pad(A, widths) if isinstance(A, jax.Array) else np.pad(np.asarray(A), widths)

    return PaddedRows(pad(X), pad(u), n)


def map_row_blocks(fn, n, block: int, *arrays):
    """Inside a trace: ``fn`` applied block by block (``block`` rows each) to the first
    ``⌈n / block⌉`` blocks of ``arrays`` (``None`` or arrays of the same padded number of rows,
    a multiple of ``block``; ``n`` may be traced), with ``fn``'s per-row outputs stacked for every
    padded row (zeros in the blocks past ``n``).  One block's temporaries at a time."""
    N = arrays[0].shape[0]

    def cut(start):
        return [None if A is None else jax.lax.dynamic_slice_in_dim(A, start, block) for A in arrays]

    shapes = jax.eval_shape(lambda *blocks: fn(*blocks), *cut(0))
    out = jax.tree_util.tree_map(lambda s: jnp.zeros((N, *s.shape[1:]), s.dtype), shapes)

    def body(i, out):
        start = i * block
        rows = fn(*cut(start))
        return jax.tree_util.tree_map(lambda o, r: jax.lax.dynamic_update_slice_in_dim(o, r, start, 0), out, rows)

    return jax.lax.fori_loop(0, (n + block - 1) // block, body, out)


def segment_block_rows(n_segments: int) -> int:
    """The most rows per block when every row is scored against each of ``n_segments``
    segments (the label posterior, the marginal over the segments): :data:`SCORE_BATCH` rows'
    memory shared among the segments, at least 256 rows."""
    return max(256, SCORE_BATCH // int(n_segments))


def scoring_rows(n: int, largest: int = SCORE_BATCH) -> tuple[int, int]:
    """``(block, padded)``: the rows of each block that validation and scoring compute ``n``
    rows in (at most ``largest``), and the rows to pad them to (a bucket of whole blocks), so
    that every row count of a bucket shares one compiled function."""
    block = block_rows(n, largest)
    return block, bucket_rows(n, block)


@functools.partial(jax.jit, static_argnames=("terms", "activation", "prior", "block"))
def _term_means(terms, params, prior_params, X, u, n, activation, prior, block):
    def rows(X, u):  # one forward pass for every term
        S, _, _, log_det_act = forward_trace(params, X, activation)
        return jnp.stack([term.row_losses(prior, prior_params, S, log_det_act, u) for term in terms], axis=-1)

    losses = map_row_blocks(rows, n, block, X, u)
    valid = jnp.arange(X.shape[0]) < n
    return jnp.sum(jnp.where(valid[:, None], losses, 0), axis=0) / n


def term_values(terms, params, prior_params, rows: PaddedRows, activation, prior, log_det, log_det_offset=0.0) -> list:
    """The mean loss of each objective term of ``terms`` on the ``rows.n`` rows of ``rows``
    (padded to :func:`scoring_rows`), in nats per sample, the weights' log-determinant
    ``log_det`` and ``log_det_offset`` included as the term weighs them; in blocks of at most
    :data:`SCORE_BATCH` rows (one compiled function per bucket of row counts)."""
    block, padded = scoring_rows(rows.n)
    if rows.X.shape[0] != padded:
        raise ValueError(f"term_values takes rows padded to {padded}; got {rows.X.shape[0]} for {rows.n} rows.")
    means = np.asarray(
        _term_means(tuple(terms), params, prior_params, rows.X, rows.u, rows.n, activation, prior, block)
    )
    values = []
    for term, value in zip(terms, means.tolist()):
        c = term.log_det_weight
        values.append(value - c * log_det - c * log_det_offset)
    return values


@functools.lru_cache(maxsize=64)
def compile_epoch(optimizer, form, activation, prior, objective, batch_size: int, mesh=None, state_optimizer=None):
    """The jitted epoch of :func:`make_epoch` with ``optimizer`` used as it is (nothing chained
    for the gradient form) and every argument a checked, resolved, hashable object; cached.
    ``state_optimizer``: as for :func:`build_step`."""
    shards = data_shards(mesh)
    if batch_size % shards:
        raise ValueError(
            f"batch_size={batch_size} must be a multiple of the {shards} devices on the "
            f"{DATA_AXIS!r} mesh axis (data-parallel batches are split evenly)."
        )
    step = build_step(optimizer, form, activation, prior, objective, mesh, state_optimizer, "make_epoch")

    def epoch(state, X, u, order, n_rows):
        # X, u: padded to N rows (training_rows(n_rows, batch_size)), of which the first n_rows
        # (traced) are data; order: shuffle_order(key, n_rows, N), drawn on the host
        N = X.shape[0]
        b = min(batch_size, N)
        b -= b % shards
        if b == 0:
            raise ValueError(f"Data-parallel training over {shards} devices needs at least {shards} samples; got {N}.")
        n_batches = n_rows // b  # the steps past it (padding only) are skipped
        batches = order[: (N // b) * b].reshape(N // b, b)

        def body(state, batch):
            i, rows = batch

            def run(state):
                return step(state, X[rows], None if u is None else u[rows])

            def skip(state):
                return state, jnp.zeros((), loss_dtype)

            return jax.lax.cond(i < n_batches, run, skip, state)

        loss_dtype = jax.eval_shape(step, state, X[:b], None if u is None else u[:b])[1].dtype
        state, losses = jax.lax.scan(body, state, (jnp.arange(N // b), batches))
        return state, jnp.sum(losses) / n_batches.astype(losses.dtype)

    return jax.jit(epoch, donate_argnums=(0,))


class PaddingEpoch:
    """The epoch of :func:`make_epoch` over a jitted one of :func:`compile_epoch`: ``X`` and
    ``u`` padded to :func:`training_rows` (unless ``n_rows`` says they are already) and the
    shuffle drawn from ``key`` (:func:`shuffle_order`) before the jitted epoch; ``lower``
    lowers it for arrays or ``jax.ShapeDtypeStruct`` of those rows."""

    def __init__(self, jitted, batch_size: int):
        self.jitted, self.batch_size = jitted, batch_size
        functools.update_wrapper(self, jitted)

    def _arguments(self, X, u, n_rows, pad):
        if n_rows is not None:
            return X, u, n_rows
        n_rows = int(np.shape(X)[0])
        return (*pad(X, u, training_rows(n_rows, self.batch_size))[:2], n_rows)

    def __call__(self, state, X, u, key, n_rows=None):
        X, u, n_rows = self._arguments(X, u, n_rows, pad_rows)
        N = np.shape(X)[0]
        if isinstance(key, jax.core.Tracer) or isinstance(n_rows, jax.core.Tracer):
            order = traced_shuffle_order(key, n_rows, N)
        else:
            order = shuffle_order(key, n_rows, N)
        return self.jitted(state, X, u, order, n_rows)

    def lower(self, state, X, u, key, n_rows=None):
        def pad(X, u, padded):
            def shape(A):
                return None if A is None else jax.ShapeDtypeStruct((padded, *np.shape(A)[1:]), A.dtype)

            return shape(X), shape(u)

        X, u, n_rows = self._arguments(X, u, n_rows, pad)
        order = jax.ShapeDtypeStruct((np.shape(X)[0],), jnp.int32)
        return self.jitted.lower(state, X, u, order, n_rows)


@functools.lru_cache(maxsize=64)
def make_epoch(
    optimizer: optax.GradientTransformation,
    activation: str | Activation,
    prior: str | Prior,
    gradient: str | GradientForm,
    batch_size: int,
    mesh: Mesh | None = None,
    contrastive_weight: float | None = None,
    *,
    objective: str | Objective | None = None,
) -> Callable[..., tuple[TrainState, jax.Array]]:
    """A jitted epoch ``epoch(state, X, u, key, n_rows=None) -> (state, mean_loss)``.

    Shuffles the rows of ``X`` (and of the auxiliary variable ``u``, or ``None``) with ``key``,
    cuts them into ``len(X) // batch_size`` full mini-batches (the remainder, different each
    epoch, is left for later epochs; a set smaller than one batch is used whole) and scans the
    training step of :func:`make_train_step` over them.  Each step gathers its own rows of
    ``X``, so no shuffled copy of the data is made: the memory is the data, the state (donated,
    updated in place: the arrays passed as ``state`` are deleted by the call, and using them
    again is a ``ValueError`` of the functions that take them; keep the state returned) and one
    step's temporaries.  ``mean_loss`` is the mean batch loss.  A ``state.opt_state`` that is
    not ``optimizer``'s is refused as by :func:`make_train_step`.
    Cached on its (hashable) arguments so repeated fits reuse the compiled code.

    One compilation serves every row count of a bucket: the rows are padded with zeros to a
    whole number of batches, rounded up to three significant binary digits (8, 10, 12, 14, 16,
    20, ... batches: at most 25 % more rows; a set smaller than one batch is not padded), and
    the epoch is compiled for that padded count with the number of data rows traced.  The
    shuffle is a uniform permutation of the data rows only, drawn on the host from ``key``
    (``np.random.default_rng(bits of key).permutation(n_rows)``, the padding after it: the
    same order for every padded count; a sort on the device would cost more than the steps
    of a small model), and the steps past ``len(X) // batch_size`` are skipped
    (``lax.cond``: the state is not touched by them).  Under a trace (a traced ``key``) the
    same order is drawn by a host callback.  Padding copies ``X`` once per call (on the host for a NumPy array; a
    small device copy, compiled once per size, for a JAX array); to pad once for many epochs,
    pass ``X`` and ``u`` with zero rows appended up to the bucket
    (``nica._src.training.training_rows(n, batch_size)`` rows) and ``n_rows=n``, the number of
    data rows at their start.

    With a ``mesh`` (see :func:`make_train_step`), place the state with :func:`~nica.shard_params`
    and ``X`` and ``u`` replicated on the mesh (``jax.device_put(X, NamedSharding(mesh,
    PartitionSpec()))``); the order of the batches is the one-device order, so the result
    matches a one-device epoch up to floating-point summation order.  ``batch_size`` must then
    be a multiple of the number of devices on the ``"data"`` axis; a set smaller than one batch
    is used whole, rounded down to such a multiple.

    Parameters
    ----------
    optimizer : optax.GradientTransformation
    activation : str or Activation
    prior : str or Prior
    gradient : str or GradientForm
        As for :func:`make_train_step`.
    batch_size : int
        Rows per step.
    mesh : jax.sharding.Mesh, optional
    contrastive_weight : float, optional
        Deprecated (see :func:`make_train_step`).
    objective : str or Objective, optional
        What the steps minimise (default: the likelihood).

    Returns
    -------
    callable
        ``epoch(state, X, u, key, n_rows=None) -> (state, mean_loss)``, jitted (after the
        padding), ``state`` donated.

    Examples
    --------
    >>> import jax, optax
    >>> import nica
    >>> opt = optax.adam(1e-2)
    >>> epoch = nica.make_epoch(opt, "smooth_leaky_relu", "laplace", "relative", batch_size=32)
    >>> state = nica.init_train_state(opt, nica.init_params(jax.random.key(0), 3, 2))
    >>> X = jax.random.laplace(jax.random.key(1), (100, 3), dtype=state.params[0].W.dtype)
    >>> state, loss = epoch(state, X, None, jax.random.key(2))
    >>> loss.shape
    ()
    """
    check_optimizer(optimizer)
    form = _gradients.get(gradient)
    prior = _priors.get(prior)
    objective = objective_argument(objective, contrastive_weight, prior)
    jitted = compile_epoch(
        form.wrap_optimizer(optimizer),
        form,
        _activations.get(activation),
        prior,
        objective,
        int(batch_size),
        check_mesh(mesh),
        optimizer,
    )
    return PaddingEpoch(jitted, int(batch_size))
