"""Test configuration: float64 everywhere and strict JAX rank promotion.

Correctness is checked in float64 (speed is a benchmark matter, in float32).  Implicit rank
promotion raises, so ``(n,)`` vs ``(n, 1)`` mistakes fail loudly.
"""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
