"""nica.fit_to_data: the estimators' fit loop over the functional core (small float32 fits)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import nica
from nica._src import fitting as _fitting

MIX = jnp.array([[1.0, 0.4], [0.2, 1.0]])
ADAM = optax.adam(1e-2)   # module-level optimizers: the fits share their compiled epochs
SLOW = optax.adam(1e-3)


def data(seed, n=256):
    return jax.random.laplace(jax.random.key(seed), (n, 2)) @ MIX.T


def start(optimizer, seed=1):
    return nica.init_train_state(optimizer, nica.init_params(jax.random.key(seed), 2, 2))


def leaves(tree):
    return [np.array(a) for a in jax.tree_util.tree_leaves(tree)]


def test_the_best_validation_score_is_the_log_likelihood_of_the_returned_parameters_on_the_given_rows():
    X, X_val = data(0), 3.0 * data(5, n=128)   # a validation set unlike X: it must be the one used
    state, history = nica.fit_to_data(start(ADAM), X, optimizer=ADAM, key=jax.random.key(2), batch_size=64,
                                      max_epochs=6, validation=X_val, log_det_offset=0.5)
    assert history.n_epochs == 6 == len(history.loss_curve) == len(history.validation_scores)
    assert history.best_score == max(history.validation_scores)
    assert history.validation_scores[history.best_epoch - 1] == history.best_score
    assert history.validation_log_likelihoods == history.validation_scores   # exact likelihood: the same
    recomputed = float(jnp.mean(nica.log_likelihood(state.params, X_val, activation="smooth_leaky_relu",
                                                    prior="laplace"))) + 0.5
    assert recomputed == pytest.approx(history.best_score, rel=1e-5, abs=1e-5)
    # the state comes back in the optimizer's own form (make_train_step(ADAM) continues from it)
    own = ADAM.init((state.params, state.prior_params))
    assert jax.tree_util.tree_structure(state.opt_state) == jax.tree_util.tree_structure(own)


def test_with_the_hybrid_objective_the_exact_log_likelihood_is_recorded_beside_the_monitored_score():
    """``contrastive_weight > 0``: ``validation_scores`` is the hybrid objective (what early
    stopping keeps), ``validation_log_likelihoods`` the exact log-likelihood of the same epochs,
    recomputed here with ``nica.log_likelihood`` at the returned (best) parameters."""
    prior = nica.priors.segment_conditional("laplace", n_segments=2)
    X, u = data(0), jnp.arange(256) % 2
    X_val, u_val = data(5, n=128), jnp.arange(128) % 2
    params = nica.init_params(jax.random.key(1), 2, 2)
    state = nica.init_train_state(ADAM, params, prior.init_params(jax.random.key(3), 2, params[0].W.dtype))
    state, history = nica.fit_to_data(state, X, u, optimizer=ADAM, key=jax.random.key(2), prior=prior,
                                      batch_size=64, max_epochs=4, validation=(X_val, u_val),
                                      contrastive_weight=2.0, log_det_offset=0.5)
    ll, score = np.asarray(history.validation_log_likelihoods), np.asarray(history.validation_scores)
    assert ll.shape == score.shape == (history.n_epochs,) and np.all(ll > score)
    recomputed = float(jnp.mean(nica.log_likelihood(state.params, X_val, activation="smooth_leaky_relu", prior=prior,
                                                    prior_params=state.prior_params, u=u_val))) + 0.5
    assert recomputed == pytest.approx(ll[history.best_epoch - 1], rel=1e-5, abs=1e-5)


def test_patience_stops_a_fit_that_never_improves_by_tol_after_the_schedules_rate_cuts():
    X = data(0)
    kw = dict(optimizer=SLOW, key=jax.random.key(2), batch_size=64, max_epochs=50, tol=1e9, patience=2,
              validation_fraction=None)   # no validation set: the training loss is monitored
    _, history = nica.fit_to_data(start(SLOW), X, schedule="constant", **kw)
    assert history.converged and not history.diverged
    assert history.validation_scores == [] and history.best_score == -min(history.loss_curve)
    assert history.n_epochs == 3 and history.rate_scale == 1.0   # the best epoch 1, then 2 without change
    _, history = nica.fit_to_data(start(SLOW), X, schedule="plateau", **kw)
    assert history.converged and history.n_epochs == 7           # two rate cuts of 0.2, then the stop
    assert history.rate_scale == pytest.approx(0.04)


def test_a_diverged_fit_restores_the_best_parameters_and_says_so():
    X = data(0)
    optimizer = optax.sgd(1e30)
    state = start(optimizer)
    initial = leaves(state.params)   # the state's arrays are donated to the first epoch
    state, history = nica.fit_to_data(state, X, optimizer=optimizer, key=jax.random.key(2), batch_size=64,
                                      max_epochs=5)
    assert history.diverged and not history.converged
    assert history.n_epochs == 1 and history.best_epoch == 0 and history.loss_curve == []
    for a, b in zip(leaves(state.params), initial):
        np.testing.assert_array_equal(a, b)
    assert all(np.isfinite(a).all() for a in leaves(state))


def test_the_callback_sees_each_epoch_and_an_interruption_leaves_the_best_state():
    X = data(0)
    events = []

    def callback(event, progress):
        events.append((event, progress.epoch))
        if event == "interrupted":
            events.append(all(np.array_equal(a, b) for a, b in zip(leaves(progress.state.params),
                                                                   leaves(progress.best[0]))))
        elif event == "epoch_start" and progress.epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        nica.fit_to_data(start(ADAM), X, optimizer=ADAM, key=jax.random.key(2), batch_size=64, max_epochs=5,
                         callback=callback)
    assert events == [("epoch_start", 0), ("epoch_end", 1), ("epoch_start", 1), ("epoch_end", 2),
                      ("epoch_start", 2), ("interrupted", 2), True]


def test_validation_fraction_holds_out_rows_drawn_with_the_key():
    X = data(0)
    key = jax.random.key(2)
    state, history = nica.fit_to_data(start(ADAM), X, optimizer=ADAM, key=key, batch_size=64, max_epochs=2,
                                      validation_fraction=0.1)
    _, split_key = jax.random.split(key)   # as documented: the key is split once for the split
    rows = jax.random.permutation(split_key, X.shape[0])[:26]
    held_out = float(jnp.mean(nica.log_likelihood(state.params, X[rows], activation="smooth_leaky_relu",
                                                  prior="laplace")))
    assert held_out == pytest.approx(history.best_score, rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("kw, error, match", [
    (dict(max_epochs=0), ValueError, "max_epochs must be an integer >= 1; got 0"),
    (dict(batch_size="64"), ValueError, "batch_size must be an integer >= 1; got '64'"),
    (dict(patience=1.5), ValueError, "patience must be an integer >= 1; got 1.5"),
    (dict(tol=-1.0), ValueError, "tol must be a finite number >= 0; got -1.0"),
    (dict(schedule="cosine"), ValueError, "schedule must be one of"),
    (dict(validation_fraction=1.0), ValueError, "validation_fraction must be in"),
    (dict(validation=np.zeros((4, 3), np.float32)), ValueError, "validation X has 3 features"),
    (dict(validation=(np.zeros((4, 2), np.float32), np.zeros(4), None)), ValueError, "a tuple of 3 items"),
    (dict(optimizer="adam"), TypeError, "optax.adam"),
    (dict(optimizer=optax.sgd(1e-2)), ValueError, "state.opt_state does not fit optimizer"),
    (dict(key=0), TypeError, "key must be one JAX random key"),
    (dict(callback="print"), TypeError, "callback must be callable"),
    (dict(gradient="natural"), ValueError, "gradient must be one of"),
    (dict(log_det_offset=np.nan), ValueError, "log_det_offset must be a finite number"),
    (dict(rate_scale=0.0), ValueError, "rate_scale must be a finite number > 0"),
    (dict(u=np.zeros(256, np.int32)), ValueError, "u is only used by a conditional prior"),
])
def test_bad_arguments_are_refused_before_anything_is_compiled(monkeypatch, kw, error, match):
    def no_epoch(*args, **kwargs):
        raise AssertionError("an epoch was built before the arguments were checked")

    monkeypatch.setattr(_fitting, "compile_epoch", no_epoch)
    args = dict(optimizer=ADAM, key=jax.random.key(2), batch_size=64, max_epochs=3)
    args.update(kw)
    u = args.pop("u", None)
    with pytest.raises(error, match=match):
        nica.fit_to_data(start(ADAM), data(0), u, **args)
