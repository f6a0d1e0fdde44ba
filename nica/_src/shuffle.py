"""The order in which an epoch visits its rows, drawn on the host from a JAX key.

A sort on the device costs about 0.2 µs a row on a CPU (``jax.random.permutation`` of 40,960
rows: 18 ms, more than all the steps of an epoch of a small model); NumPy draws the same-sized
permutation in under a millisecond (``benchmarks/epoch_time.py``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["shuffle_order", "traced_shuffle_order"]


def _raw_key(key):
    """The ``uint32`` data of a JAX random key: a typed key's ``key_data``, a raw key as it is."""
    return jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key


def _key_bits(key) -> list:
    """The bits of a JAX random key (a typed key or a raw ``uint32`` one) as Python ints."""
    return np.asarray(_raw_key(key)).ravel().tolist()


def shuffle_order(key, n_rows: int, n_padded: int | None = None) -> np.ndarray:
    """The order in which an epoch visits ``n_padded`` padded rows (``n_rows`` of them data):
    a uniform permutation of the data rows, drawn on the host by NumPy's default generator
    seeded with the bits of ``key`` (``np.random.default_rng(bits).permutation(n_rows)``),
    followed by the padding rows in order."""
    n_rows = int(n_rows)
    n_padded = n_rows if n_padded is None else int(n_padded)
    order = np.random.default_rng(_key_bits(key)).permutation(n_rows)
    return np.concatenate([order, np.arange(n_rows, n_padded)]).astype(np.int32)


def traced_shuffle_order(key, n_rows, n_padded: int):
    """:func:`shuffle_order` inside a trace (a traced key or row count): the same order, drawn
    by a host callback."""
    return jax.pure_callback(
        lambda bits, n: shuffle_order(np.asarray(bits), int(n), n_padded),
        jax.ShapeDtypeStruct((n_padded,), jnp.int32),
        _raw_key(key),
        n_rows,
        vmap_method="sequential",
    )
