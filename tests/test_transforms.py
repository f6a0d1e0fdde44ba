"""Training features as optax transformations (``nica/_src/transforms.py``): the transport of
the equivariant form against the augmented-matrix product and the relative gradient, the rate
scale, and the parameter average against its recurrence written here in NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from oracles import assert_layers_close, random_data, random_params

import nica
from nica import transforms
from nica._src.transforms import append_stateless, average_decay


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("n_samples", [2, 40])
def test_transport_of_the_equivariant_gradient_is_the_relative_gradient(bias, n_samples):
    params = random_params(31, n_layers=3, bias=bias)
    X = random_data(31, n_samples=n_samples)
    H = nica.equivariant_gradient(params, X)
    assert_layers_close(nica.transport(H, params), nica.relative_gradient(params, X))


def test_transport_is_the_augmented_product():
    params = random_params(32, n_layers=2)
    rng = np.random.default_rng(0)
    updates = tuple(
        nica.Layer(jnp.asarray(rng.standard_normal((3, 3))), jnp.asarray(rng.standard_normal(3))) for _ in params
    )
    for (U, u), (W, b), (TW, Tb) in zip(updates, params, nica.transport(updates, params)):
        Wbar = np.block([[np.asarray(W), np.asarray(b)[:, None]], [np.zeros((1, 3)), np.ones((1, 1))]])
        expected = np.concatenate([np.asarray(U), np.asarray(u)[:, None]], axis=1) @ Wbar
        np.testing.assert_allclose(TW, expected[:, :3], rtol=1e-12)
        np.testing.assert_allclose(Tb, expected[:, 3], rtol=1e-12)
    no_bias = random_params(32, n_layers=2, bias=False)
    for (U, _), (W, _), (TW, Tb) in zip(
        updates, no_bias, nica.transport(tuple(nica.Layer(U, None) for U, _ in updates), no_bias)
    ):
        np.testing.assert_allclose(TW, np.asarray(U) @ np.asarray(W), rtol=1e-12)
        assert Tb is None


def test_transport_refuses_bad_updates():
    params = random_params(32, n_layers=2)
    updates = tuple(nica.Layer(jnp.ones((3, 3)), jnp.ones(3)) for _ in params)
    with pytest.raises(TypeError, match="updates must be a tuple of nica.Layer"):
        nica.transport(3, params)
    with pytest.raises(TypeError, match="params must be a tuple of nica.Layer"):
        nica.transport(updates, None)
    with pytest.raises(ValueError, match="updates has 2 layers but params has 1"):
        nica.transport(updates, params[:1])
    with pytest.raises(ValueError, match="updates has 1 layers but params has 2"):
        nica.transport(updates[:1], params)
    with pytest.raises(
        ValueError, match=r"layer 0: the update's W has shape \(2, 2\) but the layer's W has shape \(3, 3\)"
    ):
        nica.transport((nica.Layer(jnp.zeros((2, 2)), jnp.zeros(2)), updates[1]), params)
    with pytest.raises(ValueError, match="layer 1: the update's b is None but the layer's b is an array"):
        nica.transport((updates[0], nica.Layer(updates[1].W, None)), params)


def test_equivariant_transport_in_an_optax_chain():
    """Chained after SGD on the group's coordinates: the step is ``−η`` times the relative
    gradient, for the layers alone and for the pair ``(layers, prior_params)`` (whose second
    member passes unchanged); ``params`` are required."""
    params = random_params(33, n_layers=2)
    X = random_data(33, n_samples=16)
    H = nica.equivariant_gradient(params, X)
    tx = optax.chain(optax.sgd(0.1), transforms.equivariant_transport())
    updates, _ = tx.update(H, tx.init(params), params)
    expected = jax.tree_util.tree_map(lambda g: -0.1 * g, nica.relative_gradient(params, X))
    assert_layers_close(updates, expected, rtol=1e-12, atol=1e-14)
    theta = {"loc": jnp.ones(3)}
    (layers, theta_update), _ = tx.update((H, theta), tx.init((params, theta)), (params, theta))
    assert_layers_close(layers, expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(theta_update["loc"], -0.1 * np.ones(3))
    with pytest.raises(ValueError, match="equivariant_transport needs params in update"):
        transforms.equivariant_transport().update(H, optax.EmptyState())


def test_float32_stays_float32():
    params = nica.init_params(jax.random.key(0), 4, 2, dtype=jnp.float32)
    X = jax.random.normal(jax.random.key(1), (10, 4), jnp.float32)
    H = nica.equivariant_gradient(params, X)
    leaves = jax.tree_util.tree_leaves((H, nica.transport(H, params)))
    assert {leaf.dtype for leaf in leaves} == {jnp.dtype("float32")}


def test_scale_by_rate_multiplies_by_the_factor_in_its_state():
    tx = transforms.scale_by_rate(0.5)
    params = {"w": jnp.zeros(2, jnp.float32)}
    state = tx.init(params)
    assert isinstance(state, transforms.RateScaleState) and state.rate_scale.dtype == jnp.float32
    updates, state = tx.update({"w": jnp.array([2.0, -4.0], jnp.float32)}, state)
    np.testing.assert_array_equal(updates["w"], [1.0, -2.0])
    state = state._replace(rate_scale=jnp.asarray(0.25, jnp.float32))  # what the fit loop does at a plateau
    updates, _ = tx.update({"w": jnp.array([2.0, -4.0], jnp.float32)}, state)
    np.testing.assert_array_equal(updates["w"], [0.5, -1.0])


def test_average_params_follows_its_recurrence():
    """``a_t = a_{t−1} + (1 − d_t)(p_t − a_{t−1})`` with ``d_t = min(decay, (1 + t)/(10 + t))``,
    ``a_0 = p_0``, after SGD steps on a quadratic; the updates pass unchanged."""
    decay = 0.8
    tx = optax.chain(optax.sgd(0.05), transforms.average_params(decay))
    params = jnp.array([1.0, -2.0, 0.5])
    state = tx.init(params)
    average, p = np.asarray(params), np.asarray(params)
    for t in range(1, 30):
        grads = 2.0 * params + 1.0
        updates, state = tx.update(grads, state, params)
        np.testing.assert_allclose(updates, -0.05 * grads, rtol=1e-15)
        params = optax.apply_updates(params, updates)
        p = p - 0.05 * (2.0 * p + 1.0)
        d = min(decay, (1 + t) / (10 + t))
        average = average + (1 - d) * (p - average)
        assert int(state[1].steps) == t
        np.testing.assert_allclose(state[1].average, average, rtol=1e-12, atol=1e-14)
    assert not np.allclose(average, p)  # the average lags the last iterate
    with pytest.raises(ValueError, match="average_params needs params in update"):
        transforms.average_params(0.5).update(params, transforms.average_params(0.5).init(params))


def test_average_params_with_zero_decay_is_the_parameters():
    tx = optax.chain(optax.sgd(0.1), transforms.average_params(0.0))
    params = jnp.array([1.0, 2.0])
    state = tx.init(params)
    for _ in range(3):
        updates, state = tx.update(params, state, params)
        params = optax.apply_updates(params, updates)
        np.testing.assert_array_equal(state[1].average, params)


def test_average_decay_from_a_time_constant_in_epochs():
    assert average_decay(0.0, 10) == 0.0 and average_decay(-1.0, 10) == 0.0
    assert average_decay(2.0, 5) == pytest.approx(1 - 1 / 10)
    assert average_decay(0.05, 4) == 0.0  # a constant below one step: no averaging
    assert average_decay(1.0, 0) == 0.0  # at least one step per epoch


def test_append_stateless_keeps_the_inner_optimizer_state():
    """``inner`` then a stateless transform, with ``inner``'s own state: a state made by
    ``inner.init`` works with the combination."""
    params = random_params(34, n_layers=1)
    X = random_data(34, n_samples=8)
    inner = optax.adam(1e-2)
    combined = append_stateless(inner, transforms.equivariant_transport())
    state = inner.init(params)
    H = nica.equivariant_gradient(params, X)
    updates, new_state = combined.update(H, state, params)
    plain, plain_state = inner.update(H, state, params)
    assert_layers_close(updates, nica.transport(plain, params), rtol=1e-14, atol=1e-16)
    assert jax.tree_util.tree_structure(new_state) == jax.tree_util.tree_structure(plain_state)
    jax.tree_util.tree_map(np.testing.assert_array_equal, new_state, plain_state)
