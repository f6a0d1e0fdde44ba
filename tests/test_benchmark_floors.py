"""The speed benchmarks' floors do the work they claim: XLA's own flop count of each compiled
floor equals ``4L − 1`` products of ``2·B·D²`` flops, as many as the relative gradient's.

A floor that XLA can shorten (two identical products computed once, as the step benchmark's
chain once allowed) makes every ratio against it too high; these tests fail on such a floor.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import gradient_scaling, step_overhead
from benchmarks._common import flop_count

DIM, BATCH = 256, 20


def products(fn, *args):
    """XLA's flop count of ``jit(fn)`` compiled for ``args``, in ``(B×D)·(D×D)`` products."""
    flops = flop_count(jax.jit(fn).lower(*args).compile())
    if flops is None:
        pytest.skip("this backend reports no flop count")
    return flops / (2 * BATCH * DIM**2)


@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_step_chain_does_every_product(n_layers):
    weights, params, X = step_overhead.inputs(DIM, BATCH, n_layers)
    floor = 4 * n_layers - 1
    # elementwise work adds a little to the count (about 1/D of a product per layer and
    # elementwise op); a missing or an extra product moves it by a whole one
    assert products(step_overhead.chain, weights, X) == pytest.approx(floor, abs=0.1)
    assert products(step_overhead.chain_plain, weights, X) == pytest.approx(floor, abs=0.1)
    relative = products(step_overhead.FUNCTIONS["relative"], params, X)
    assert floor <= relative < floor + 0.5


def test_step_chain_stand_in_differs_from_the_output():
    """The last layer's error is not the output itself (which made two products one)."""
    weights, _, X = step_overhead.inputs(DIM, BATCH, 1)
    (dW,) = step_overhead.chain(weights, X)
    Z = X @ weights[0].T
    delta = jnp.sign(Z) / BATCH
    np.testing.assert_allclose(dW, delta.T @ (Z @ weights[0]), rtol=1e-4, atol=1e-5)
    assert not np.allclose(dW, Z.T @ (Z @ weights[0]), rtol=1e-2)


@pytest.mark.parametrize("n_layers", [1, 2])
def test_sweep_floor_does_every_product(n_layers):
    args = gradient_scaling.make_inputs("floor", DIM, BATCH, n_layers)
    count = products(gradient_scaling.floor_products, *args)
    assert count == pytest.approx(4 * n_layers - 1, abs=0.1)
    assert gradient_scaling.floor_flops(DIM, BATCH, n_layers) == (4 * n_layers - 1) * 2 * BATCH * DIM**2
