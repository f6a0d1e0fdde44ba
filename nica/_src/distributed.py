"""One fit over several processes (several hosts): data parallelism on ``jax.distributed``.

After ``jax.distributed.initialize`` (or :func:`initialize_distributed`, which forwards to it
and chooses gloo collectives on CPUs) in every process, ``jax.devices()`` lists the devices of
every process, and a mesh over them (:func:`nica.make_mesh`, what ``parallel="data"`` builds)
spans the processes.  A fit on such a mesh takes each process's own rows and trains on their
union, in the order of the process indices:

* :func:`gather_rows` gathers every process's rows to every process (one collective of the
  data's bytes, whatever their dtype; labels of any width of string too), so that the
  whitening, the validation split, the labels, the initialisation and the early-stopping
  decisions are computed from the same global data in every process, identically;
* each training step's mini-batch is then split by rows over the devices of every process, and
  the gradient is summed over them (XLA's collectives: gloo on CPUs, NCCL on GPUs), so the
  fitted parameters are the same in every process, and the same as a one-process fit on the
  concatenated rows with the same batches (up to the order of floating-point sums);
* only process 0 writes files (checkpoints, and the command line's model).

Each process keeps the union of the rows in its host memory for the fit: the collectives split
the arithmetic of every step, not the data.

Failures never leave the others waiting: an error that only some processes raise before the
training starts (their own data refused, a checkpoint they cannot read) is announced to all by
:func:`together`, and every process raises; a process that dies during training breaks the
collectives of the others, which then raise :class:`PeerFailure` (the next collective after
the death), and JAX's coordination service ends any process still waiting after its heartbeat
timeout.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

from nica._src.sharding import fetch, to_numpy

__all__ = [
    "initialize_distributed",
    "spans_processes",
    "gather_rows",
    "together",
    "check_agree",
    "tree_digest",
    "is_writer",
    "PeerFailure",
    "peer_failure",
    "gather_fit_data",
]


class PeerFailure(RuntimeError):
    """Another process of a multi-process fit stopped (it died, or raised an error that only it
    saw), so the collectives of this one cannot go on."""


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    **kwargs: Any,
) -> None:
    """Join a multi-process JAX job: ``jax.distributed.initialize`` with gloo collectives on CPUs.

    Call it once in every process, before any other JAX work.  The arguments are those of
    :func:`jax.distributed.initialize` (all of them optional on Slurm, Open MPI and TPU pods,
    where JAX finds them in the environment; ``coordinator_address`` also from
    ``JAX_COORDINATOR_ADDRESS``).  JAX's CPU backend has no cross-process collectives unless
    one is chosen, so this selects gloo for it (what a CPU-only job needs; GPUs use NCCL
    whatever this says).

    Afterwards ``NonlinearICA(parallel="data").fit(X_local)`` and
    ``ConditionalNonlinearICA(parallel="data").fit(X_local, y_local)``, called in every
    process with that process's rows, fit one model to the union of the rows.

    Parameters
    ----------
    coordinator_address : str, optional
        ``host:port`` of process 0, which runs the coordination service.
    num_processes : int, optional
    process_id : int, optional
        This process's index, ``0 <= process_id < num_processes``.
    **kwargs
        Passed to :func:`jax.distributed.initialize` (``initialization_timeout``,
        ``heartbeat_timeout_seconds``, ``local_device_ids``, ...).

    Examples
    --------
    On each of two machines (or in two terminals of one)::

        import nica
        nica.initialize_distributed("10.0.0.1:1234", num_processes=2, process_id=RANK)
        model = nica.NonlinearICA(parallel="data").fit(X_of_this_process)
    """
    if num_processes is not None and (isinstance(num_processes, bool) or not isinstance(num_processes, int)):
        raise TypeError(f"num_processes must be an int; got {num_processes!r}.")
    if process_id is not None and (isinstance(process_id, bool) or not isinstance(process_id, int)):
        raise TypeError(f"process_id must be an int; got {process_id!r}.")
    if num_processes is not None and num_processes < 1:
        raise ValueError(f"num_processes must be at least 1; got {num_processes}.")
    if num_processes is not None and process_id is not None and not 0 <= process_id < num_processes:
        raise ValueError(f"process_id must be in [0, num_processes={num_processes}); got {process_id}.")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address, num_processes, process_id, **kwargs)


def spans_processes(mesh) -> bool:
    """Whether ``mesh`` (or ``None``) holds devices of another process than this one."""
    if mesh is None or jax.process_count() == 1:
        return False
    return any(device.process_index != jax.process_index() for device in mesh.devices.flat)


def is_writer() -> bool:
    """Whether this process writes the files of a multi-process fit (process 0; any process
    of a one-process job)."""
    return jax.process_index() == 0


_PEER_ERROR = re.compile(r"gloo|connection reset|connection closed|socket closed|peer|heartbeat", re.IGNORECASE)


def peer_failure(error: BaseException) -> PeerFailure | None:
    """The :class:`PeerFailure` that a collective's ``error`` means (another process is gone),
    or ``None`` for any other error."""
    if isinstance(error, PeerFailure):
        return error
    if jax.process_count() == 1 or not isinstance(error, (ValueError, RuntimeError)):
        return None
    if not _PEER_ERROR.search(str(error)):
        return None
    return PeerFailure(
        f"Another process of this {jax.process_count()}-process fit stopped (this is process "
        f"{jax.process_index()}), so the fit cannot go on; see the other processes' output for "
        f"why. The collective reported: {str(error).splitlines()[0][:300]}"
    )


def _allgather(values: np.ndarray) -> np.ndarray:
    """``values`` of every process, stacked in the order of the process indices."""
    try:
        return np.asarray(multihost_utils.process_allgather(values, tiled=False))
    except (ValueError, RuntimeError) as error:
        failure = peer_failure(error)
        if failure is None:
            raise
        raise failure from error


def together(fn: Callable[[], Any], what: str) -> Any:
    """``fn()`` in every process; when it raises in some, every process raises: those with the
    error re-raise it, the others a :class:`PeerFailure` naming the processes that failed (so
    nobody waits in a collective for a process that has left)."""
    try:
        result, error = fn(), None
    except Exception as caught:  # re-raised below, after the others have heard of it
        result, error = None, caught
    failed = np.flatnonzero(_allgather(np.asarray([error is not None], dtype=np.int32))[:, 0])
    if error is not None:
        raise error
    if failed.size:
        raise PeerFailure(
            f"{what} failed in process(es) {failed.tolist()} of {jax.process_count()} (see their "
            f"errors), so this process (process {jax.process_index()}) stops too."
        )
    return result


def tree_digest(tree, digest_size: int) -> str:
    """A BLAKE2b hex digest of the C-ordered bytes of every array leaf of ``tree``, in order."""
    digest = hashlib.blake2b(digest_size=digest_size)
    for leaf in jax.tree_util.tree_leaves(tree):
        digest.update(np.ascontiguousarray(leaf).reshape(-1).view(np.uint8).data)
    return digest.hexdigest()


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:7], "little")


def check_agree(description: str, what: str) -> None:
    """Raise ``ValueError`` in every process unless ``description`` (a str) is the same in all."""
    digests = _allgather(np.asarray([_digest(description)], dtype=np.int64))[:, 0]
    if np.any(digests != digests[0]):
        groups = {int(d): np.flatnonzero(digests == d).tolist() for d in digests}
        raise ValueError(
            f"Every process of a multi-process fit must give the same {what}; the processes "
            f"{list(groups.values())} gave different ones (this process, {jax.process_index()}, "
            f"gave {description})."
        )


def _as_plain(A: np.ndarray, name: str) -> np.ndarray:
    """``A`` as an array of numbers, booleans or fixed-width strings (an object array of
    labels converted), so that its bytes say what it holds."""
    if A.dtype.kind == "O":
        converted = np.asarray(A.tolist())
        if converted.dtype.kind in "OV" or converted.shape != A.shape:
            raise TypeError(
                f"{name} of a multi-process fit must hold numbers or strings (they are sent to "
                f"the other processes); got objects such as {type(A.flat[0]).__name__ if A.size else '?'}."
            )
        A = converted
    if A.dtype.kind not in "biufcUS":
        raise TypeError(f"{name} of a multi-process fit must hold numbers or strings; got dtype {A.dtype}.")
    return np.ascontiguousarray(A)


def gather_rows(arrays: Sequence[np.ndarray | None], names: Sequence[str]) -> tuple:
    """Every process's rows of each of ``arrays`` (``None`` in every process, or arrays with the
    same trailing shape and dtype kind everywhere), concatenated in the order of the process
    indices; the same result in every process.  Strings are widened to the widest any process
    has.  Refused in every process alike when they disagree."""
    out: list[np.ndarray | None] = []
    for A, name in zip(arrays, names):
        if A is None:
            check_agree("None", f"kind of {name} (given or None)")
            out.append(None)
            continue
        A = _as_plain(np.asarray(A), name)
        if A.ndim == 0:
            raise ValueError(f"{name} must have rows; got a scalar.")
        kind = A.dtype.kind
        check_agree(
            f"{name} of dtype {A.dtype.str if kind not in 'US' else 'str'} and shape (n, *{A.shape[1:]})",
            f"dtype and columns of {name}",
        )
        sizes = _allgather(np.asarray([A.shape[0], A.dtype.itemsize], dtype=np.int64))
        if kind in "US":  # the widest string any process has
            chars = int(sizes[:, 1].max()) // np.dtype((A.dtype.type, 1)).itemsize
            A = A.astype(np.dtype((A.dtype.type, chars)))
        rows, cells = sizes[:, 0], int(np.prod(A.shape[1:], dtype=np.int64))
        raw = np.zeros((int(rows.max()), cells * A.dtype.itemsize), np.uint8)
        raw[: A.shape[0]] = A.reshape(A.shape[0], cells).view(np.uint8)
        gathered = _allgather(raw)
        parts = [gathered[p, : rows[p]] for p in range(len(rows))]
        if not out and all(np.array_equal(part, parts[0]) for part in parts[1:]):
            warnings.warn(
                f"Every process of this {len(parts)}-process fit passed the same {rows[0]} rows of "
                f"{name}; each passes its own rows and the fit is on their union, here "
                f"{len(parts)} copies of them. Pass each process its share (for instance "
                f"{name}[jax.process_index()::jax.process_count()]).",
                UserWarning,
                stacklevel=5,
            )
        joined = np.concatenate(parts)
        out.append(np.ascontiguousarray(joined).view(A.dtype).reshape(-1, *A.shape[1:]))
    return tuple(out)


def gather_fit_data(state, key, X, u, validation):
    """``fit_to_data`` on a mesh over several processes: the union of every process's rows of
    ``X``, ``u`` and the validation set (see nica._src.distributed); the state and the key must
    be the same in every process."""

    def local(A):
        return None if A is None else np.asarray(fetch(A))

    def read():
        arrays = [local(X), local(u)]
        parts = validation if isinstance(validation, tuple) and len(validation) in (1, 2) else (validation,)
        return arrays + [local(A) for A in (tuple(parts) + (None,))[:2]]

    X, u, X_val, u_val = gather_rows(together(read, "Reading fit_to_data's data"), ["X", "u", "X_val", "u_val"])
    digest = tree_digest((to_numpy(state), np.asarray(jax.random.key_data(key))), 16)
    check_agree(f"a state and key hashed to {digest}", "state and key (the fit starts from one state)")
    if X_val is not None:
        validation = (X_val, u_val)
    return X, u, validation
