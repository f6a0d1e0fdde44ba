"""Parameter averaging in the fit loop (``fit_to_data(averaging=τ)``, the estimators'
``averaging``): the average is recomputed here step by step from the plain training step, in
float64, and the monitored score is recomputed at the returned parameters."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.base import clone

import nica
from nica.datasets import make_segmented_mixture

MIX = np.array([[1.0, 0.4], [0.2, 1.0]])


def laplace_rows(seed, n):
    return np.random.default_rng(seed).laplace(size=(n, 2)) @ MIX.T


def leaves(tree):
    return [np.asarray(a) for a in jax.tree_util.tree_leaves(tree)]


@pytest.mark.parametrize("gradient", ["relative", "equivariant"])
def test_the_returned_parameters_are_the_running_average_of_the_steps_recomputed_by_hand(gradient):
    """One epoch of ``fit_to_data(averaging=τ)`` against the plain step replayed with the
    epoch's own shuffle, the average kept in NumPy: ``a_t = a_{t−1} + (1 − d_t)(p_t − a_{t−1})``
    with ``d_t = min(1 − 1/(τ · steps), (1 + t)/(10 + t))``, from ``a_0 = p_0``.  The equivariant
    form transports the optimizer's update, so the average must follow the parameters as
    updated, not the optimizer's output."""
    tau, batch, n = 0.7, 16, 200
    with jax.enable_x64(True):
        X, X_val = jnp.asarray(laplace_rows(0, n)), jnp.asarray(laplace_rows(1, 64))
        optimizer = optax.adam(3e-2)
        params = nica.init_params(jax.random.key(1), 2, 2, dtype=jnp.float64)
        params = jax.tree_util.tree_map(np.asarray, params)   # host copies: the fit donates its state
        state0 = nica.init_train_state(optimizer, jax.tree_util.tree_map(jnp.array, params))
        key = jax.random.key(2)
        state, history = nica.fit_to_data(state0, X, optimizer=optimizer, key=key, batch_size=batch,
                                          max_epochs=1, validation=X_val, averaging=tau, gradient=gradient)
        assert history.best_epoch == 1

        # the replay: the loop splits the key once per epoch and shuffles with the second half
        _, epoch_key = jax.random.split(key)
        steps = n // batch
        order = np.asarray(jax.random.permutation(epoch_key, n))[: steps * batch].reshape(steps, batch)
        step = jax.jit(nica.make_train_step(optimizer, gradient=gradient))
        replay = nica.init_train_state(optimizer, jax.tree_util.tree_map(jnp.array, params))
        average = leaves((params, ()))
        long_run = 1.0 - 1.0 / (tau * steps)
        for t, rows in enumerate(order, start=1):
            replay, _ = step(replay, X[rows])
            d = min(long_run, (1 + t) / (10 + t))
            average = [a + (1 - d) * (p - a) for a, p in zip(average, leaves((replay.params, ())))]
        for got, want in zip(leaves(state.params), average):
            np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-13)
        # ... and not the last iterate, which the replay ends on
        assert not np.allclose(leaves(state.params)[0], leaves(replay.params)[0], rtol=1e-6)
        # the monitored score is the exact log-likelihood of what is returned
        recomputed = float(jnp.mean(nica.log_likelihood(state.params, X_val, activation="smooth_leaky_relu",
                                                        prior="laplace")))
        assert recomputed == pytest.approx(history.best_score, rel=1e-12)
        # the state is handed back in the optimizer's own form
        own = optimizer.init((state.params, state.prior_params))
        assert jax.tree_util.tree_structure(state.opt_state) == jax.tree_util.tree_structure(own)


def test_averaging_zero_is_the_last_iterate_bit_for_bit():
    X = jnp.asarray(laplace_rows(3, 256), jnp.float32)
    optimizer = optax.adam(1e-2)
    state0 = nica.init_train_state(optimizer, nica.init_params(jax.random.key(1), 2, 2, dtype=jnp.float32))
    kw = dict(optimizer=optimizer, key=jax.random.key(4), batch_size=64, max_epochs=3)
    a, ha = nica.fit_to_data(state0, X, **kw)
    state0 = nica.init_train_state(optimizer, nica.init_params(jax.random.key(1), 2, 2, dtype=jnp.float32))
    b, hb = nica.fit_to_data(state0, X, averaging=0.0, **kw)
    for x, y in zip(leaves(a), leaves(b)):
        np.testing.assert_array_equal(x, y)
    assert ha.validation_scores == hb.validation_scores


def test_the_estimators_take_averaging_and_refuse_bad_values():
    data = make_segmented_mixture(n_segments=4, n_per_segment=200, n_components=2, n_layers=2, random_state=0)
    model = nica.ConditionalNonlinearICA(n_layers=2, averaging=0.5, max_iter=3, random_state=0)
    assert clone(model).get_params()["averaging"] == 0.5
    with pytest.warns(Warning):   # max_iter reached
        model.fit(data.X_train, data.u_train)
    # a warm start under another averaging continues (the average's slot added or dropped)
    for tau in (0.0, 1.0):
        with pytest.warns(Warning):
            model.set_params(warm_start=True, averaging=tau).fit(data.X_train, data.u_train)
    assert model.n_iter_ == 9 and np.isfinite(model.score(data.X_test, data.u_test))
    for bad in (-0.5, "often", float("nan"), True):
        with pytest.raises(ValueError, match="averaging"):
            nica.NonlinearICA(averaging=bad).fit(data.X_train)
    with pytest.raises(ValueError, match="averaging"):
        nica.fit_to_data(nica.init_train_state(optax.adam(1e-2), nica.init_params(jax.random.key(0), 2, 1)),
                         np.asarray(data.X_train, np.float32), optimizer=optax.adam(1e-2), key=jax.random.key(0),
                         averaging=-1.0)
