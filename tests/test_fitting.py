"""The fit loop (``nica/_src/fitting.py``: ``nica.fit_to_data``), the state it trains
(``nica/_src/fit_state.py``) and what it reports (``nica/_src/history.py``: ``FitHistory``,
and the ``FitProgress`` snapshots its callback sees): small float32 fits whose monitored scores
are recomputed at the returned parameters with ``nica.log_likelihood``, the running average
replayed step by step in float64, what the loop does with each early-stopping decision, and its
argument checks."""

import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from oracles import epoch_permutation, linear_problem
from sklearn.exceptions import ConvergenceWarning

import nica
from nica._src import fit_state as _fit_state
from nica._src import fitting as _fitting

MIX = jnp.array([[1.0, 0.4], [0.2, 1.0]])
ADAM = optax.adam(1e-2)  # module-level optimizers: the fits share their compiled epochs
SLOW = optax.adam(1e-3)


def data(seed, n=256):
    return jax.random.laplace(jax.random.key(seed), (n, 2)) @ MIX.T


def start(optimizer, seed=1):
    return nica.init_train_state(optimizer, nica.init_params(jax.random.key(seed), 2, 2))


def leaves(tree):
    return [np.array(a) for a in jax.tree_util.tree_leaves(tree)]


def test_the_best_validation_score_is_the_log_likelihood_of_the_returned_parameters_on_the_given_rows():
    X, X_val = data(0), 3.0 * data(5, n=128)  # a validation set unlike X: it must be the one used
    state, history = nica.fit_to_data(
        start(ADAM),
        X,
        optimizer=ADAM,
        key=jax.random.key(2),
        batch_size=64,
        max_epochs=6,
        validation=X_val,
        log_det_offset=0.5,
    )
    assert history.n_epochs == 6 == len(history.loss_curve) == len(history.validation_scores)
    assert history.best_score == max(history.validation_scores)
    assert history.validation_scores[history.best_epoch - 1] == history.best_score
    assert history.validation_log_likelihoods == history.validation_scores  # exact likelihood: the same
    recomputed = (
        float(jnp.mean(nica.log_likelihood(state.params, X_val, activation="smooth_leaky_relu", prior="laplace"))) + 0.5
    )
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
    with pytest.warns(FutureWarning, match="contrastive_weight is deprecated"):
        state, history = nica.fit_to_data(
            state,
            X,
            u,
            optimizer=ADAM,
            key=jax.random.key(2),
            prior=prior,
            batch_size=64,
            max_epochs=4,
            validation=(X_val, u_val),
            contrastive_weight=2.0,
            log_det_offset=0.5,
        )
    ll, score = np.asarray(history.validation_log_likelihoods), np.asarray(history.validation_scores)
    assert ll.shape == score.shape == (history.n_epochs,) and np.all(ll > score)
    assert history.objective == "nll + 2·label_cross_entropy"
    recomputed = (
        float(
            jnp.mean(
                nica.log_likelihood(
                    state.params,
                    X_val,
                    activation="smooth_leaky_relu",
                    prior=prior,
                    prior_params=state.prior_params,
                    u=u_val,
                )
            )
        )
        + 0.5
    )
    assert recomputed == pytest.approx(ll[history.best_epoch - 1], rel=1e-5, abs=1e-5)


def test_patience_stops_a_fit_that_never_improves_by_tol_after_the_schedules_rate_cuts():
    X = data(0)
    kw = dict(
        optimizer=SLOW,
        key=jax.random.key(2),
        batch_size=64,
        max_epochs=50,
        tol=1e9,
        patience=2,
        validation_fraction=None,
    )  # no validation set: the training loss is monitored
    _, history = nica.fit_to_data(start(SLOW), X, schedule="constant", **kw)
    assert history.converged and not history.diverged
    assert history.validation_scores == [] and history.best_score == -min(history.loss_curve)
    assert history.n_epochs == 3 and history.rate_scale == 1.0  # the best epoch 1, then 2 without change
    _, history = nica.fit_to_data(start(SLOW), X, schedule="plateau", **kw)
    assert history.converged and history.n_epochs == 7  # two rate cuts of 0.2, then the stop
    assert history.rate_scale == pytest.approx(0.04)


def test_a_diverged_fit_restores_the_best_parameters_and_says_so():
    X = data(0)
    optimizer = optax.sgd(1e30)
    state = start(optimizer)
    initial = leaves(state.params)  # the state's arrays are donated to the first epoch
    state, history = nica.fit_to_data(state, X, optimizer=optimizer, key=jax.random.key(2), batch_size=64, max_epochs=5)
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
            events.append(
                all(np.array_equal(a, b) for a, b in zip(leaves(progress.state.params), leaves(progress.best[0])))
            )
        elif event == "epoch_start" and progress.epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        nica.fit_to_data(
            start(ADAM), X, optimizer=ADAM, key=jax.random.key(2), batch_size=64, max_epochs=5, callback=callback
        )
    assert events == [
        ("epoch_start", 0),
        ("epoch_end", 1),
        ("epoch_start", 1),
        ("epoch_end", 2),
        ("epoch_start", 2),
        ("interrupted", 2),
        True,
    ]


def test_validation_fraction_holds_out_rows_drawn_with_the_key():
    X = data(0)
    key = jax.random.key(2)
    state, history = nica.fit_to_data(
        start(ADAM), X, optimizer=ADAM, key=key, batch_size=64, max_epochs=2, validation_fraction=0.1
    )
    _, split_key = jax.random.split(key)  # as documented: the key is split once for the split
    rows = jax.random.permutation(split_key, X.shape[0])[:26]
    held_out = float(
        jnp.mean(nica.log_likelihood(state.params, X[rows], activation="smooth_leaky_relu", prior="laplace"))
    )
    assert held_out == pytest.approx(history.best_score, rel=1e-5, abs=1e-5)


# ---------------------------------------------------------------------------------------------
# parameter averaging


def laplace_rows(seed, n):
    return np.random.default_rng(seed).laplace(size=(n, 2)) @ np.asarray(MIX).T


@pytest.mark.parametrize("gradient", ["relative", "equivariant"])
def test_the_returned_parameters_are_the_running_average_of_the_steps_recomputed_by_hand(gradient):
    """One epoch of ``fit_to_data(averaging=τ)`` against the plain step replayed with the
    epoch's own shuffle, the average kept in NumPy: ``a_t = a_{t−1} + (1 − d_t)(p_t − a_{t−1})``
    with ``d_t = min(1 − 1/(τ · steps), (1 + t)/(10 + t))``, from ``a_0 = p_0``.  The equivariant
    form transports the optimizer's update, so the average must follow the parameters as
    updated, not the optimizer's output."""
    tau, batch, n = 0.7, 16, 200
    X, X_val = jnp.asarray(laplace_rows(0, n)), jnp.asarray(laplace_rows(1, 64))
    optimizer = optax.adam(3e-2)
    params = nica.init_params(jax.random.key(1), 2, 2, dtype=jnp.float64)
    params = jax.tree_util.tree_map(np.asarray, params)  # host copies: the fit donates its state
    state0 = nica.init_train_state(optimizer, jax.tree_util.tree_map(jnp.array, params))
    key = jax.random.key(2)
    state, history = nica.fit_to_data(
        state0,
        X,
        optimizer=optimizer,
        key=key,
        batch_size=batch,
        max_epochs=1,
        validation=X_val,
        averaging=tau,
        gradient=gradient,
    )
    assert history.best_epoch == 1

    # the replay: the loop splits the key once per epoch and shuffles with the second half
    _, epoch_key = jax.random.split(key)
    steps = n // batch
    order = epoch_permutation(epoch_key, n)[: steps * batch].reshape(steps, batch)
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
    recomputed = float(
        jnp.mean(nica.log_likelihood(state.params, X_val, activation="smooth_leaky_relu", prior="laplace"))
    )
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


# ---------------------------------------------------------------------------------------------
# the loop's reaction to a spike (the policy itself: tests/test_stopping.py)


def test_spike_guard_restores_the_best_parameters_and_lowers_the_rate():
    """A rate far too large makes the validation NLL jump (an estimator's fit over the loop);
    the epoch after a spike restarts from the best parameters at a lower rate."""
    X, _, _, _ = linear_problem("laplace", n=3000, d=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = nica.NonlinearICA(n_layers=2, learning_rate=1.0, max_iter=15, schedule="constant", random_state=0).fit(
            X
        )
    scores = np.asarray(model.validation_scores_)
    running_best = np.maximum.accumulate(scores)
    spike_nats = nica.EarlyStopping().spike_nats
    spikes = np.flatnonzero(scores[1:] < running_best[:-1] - spike_nats) + 1
    assert spikes.size > 0  # the rate is large enough to spike: the test exercises the guard
    # the epoch after a spike restarted from the best parameters at a lower rate: it is back
    # above the pre-spike level instead of carrying on from the spiked parameters
    for i in spikes[spikes + 1 < scores.size]:
        assert scores[i + 1] > scores[i] + spike_nats
    assert np.all(np.isfinite(scores))
    assert max(scores) == pytest.approx(scores[model.best_iter_ - 1])
    assert np.isfinite(model.score(X))


# ---------------------------------------------------------------------------------------------
# the fit state: the user's optimizer chained by name with what the loop controls


def test_the_fit_optimizer_is_a_named_chain_read_and_set_by_name():
    params = nica.init_params(jax.random.key(0), 2, 1)
    trainable = (params, ())
    tx = _fit_state.fit_optimizer(ADAM, "equivariant", True)
    assert _fit_state.fit_optimizer(ADAM, "equivariant", True) is tx  # cached: compiled code is reused
    opt_state = tx.init(trainable)
    assert list(opt_state) == ["optimizer", "rate_scale", "form", "average"] and _fit_state.is_fit_state(opt_state)
    assert list(_fit_state.fit_optimizer(ADAM, "relative", False).init(trainable)) == [
        "optimizer",
        "rate_scale",
        "form",
    ]
    state = _fit_state.init_fit_state(nica.init_train_state(ADAM, params), "relative", rate_scale=0.5, averaged=True)
    assert _fit_state.rate_scale_of(state.opt_state) == 0.5
    assert jax.tree_util.tree_structure(state.opt_state["optimizer"]) == jax.tree_util.tree_structure(
        ADAM.init(trainable)
    )
    lowered = _fit_state.with_rate_scale(state.opt_state, 0.1)
    assert _fit_state.rate_scale_of(lowered) == pytest.approx(0.1) and _fit_state.rate_scale_of(state.opt_state) == 0.5
    assert list(lowered) == list(state.opt_state)  # the order of the entries is kept
    without = _fit_state.match_averaging(state.opt_state, trainable, False)
    assert "average" not in without and "average" in _fit_state.match_averaging(without, trainable, True)
    np.testing.assert_array_equal(_fit_state.monitored_params(state)[0][0].W, params[0].W)  # the average starts there
    assert float(_fit_state.with_average_decay(state.opt_state, 0.9)["average"].decay) == pytest.approx(0.9)


def test_opt_state_fits_tells_an_optimizer_state_that_belongs_to_another_optimizer():
    params = nica.init_params(jax.random.key(0), 2, 1)
    trainable = (params, ())
    assert _fit_state.opt_state_fits(ADAM, ADAM.init(trainable), trainable)
    assert not _fit_state.opt_state_fits(ADAM, optax.sgd(1e-2, momentum=0.9).init(trainable), trainable)
    wider = (nica.init_params(jax.random.key(0), 3, 1), ())
    assert not _fit_state.opt_state_fits(ADAM, ADAM.init(wider), trainable)


# ---------------------------------------------------------------------------------------------
# bad arguments


@pytest.mark.parametrize(
    "kw, error, match",
    [
        (dict(max_epochs=0), ValueError, r"max_epochs must be an integer in \[1, 2147483647\]; got 0"),
        (dict(max_epochs=2**70), ValueError, rf"max_epochs must be an integer in \[1, 2147483647\]; got {2**70}\."),
        (dict(batch_size="64"), ValueError, "batch_size must be an integer >= 1; got '64'"),
        (dict(patience=1.5), ValueError, "patience must be an integer >= 1; got 1.5"),
        (dict(tol=-1.0), ValueError, "tol must be a finite number >= 0; got -1.0"),
        (dict(schedule="cosine"), ValueError, "schedule must be one of"),
        (dict(validation_fraction=1.0), ValueError, "validation_fraction must be in"),
        (dict(validation=np.zeros((4, 3), np.float32)), ValueError, "validation X has 3 features"),
        (dict(validation=(np.zeros((4, 2), np.float32), np.zeros(4), None)), ValueError, "a tuple of 3 items"),
        (dict(optimizer="adam"), TypeError, "optax.adam"),
        (
            dict(optimizer=optax.sgd(1e-2)),
            ValueError,
            r"state.opt_state does not fit optimizer: it is not the state of the optimizer given to "
            r"fit_to_data \(it holds ScaleByAdamState, EmptyState; optimizer.init gives EmptyState\)",
        ),
        (dict(key=0), TypeError, "key must be one JAX random key"),
        (dict(callback="print"), ValueError, "callback must be callable or None; got 'print'"),
        (dict(gradient="natural"), ValueError, "gradient must be one of"),
        (dict(log_det_offset=np.nan), ValueError, "log_det_offset must be a finite number"),
        (dict(rate_scale=0.0), ValueError, "rate_scale must be a finite number > 0"),
        (dict(averaging=-1.0), ValueError, "averaging must be a finite number >= 0; got -1.0"),
        (
            dict(early_stopping=nica.EarlyStopping(), patience=3),
            ValueError,
            "give early_stopping or patience/tol/schedule, not both",
        ),
        (dict(early_stopping="auto"), ValueError, "early_stopping must be an nica.EarlyStopping or None; got 'auto'"),
        (dict(u=np.zeros(256, np.int32)), ValueError, "u is only used by a conditional prior"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_compiled(monkeypatch, kw, error, match):
    def no_epoch(*args, **kwargs):
        raise AssertionError("an epoch was built before the arguments were checked")

    monkeypatch.setattr(_fitting, "compile_epoch", no_epoch)
    args = dict(optimizer=ADAM, key=jax.random.key(2), batch_size=64, max_epochs=3)
    args.update(kw)
    u = args.pop("u", None)
    with pytest.raises(error, match=match):
        nica.fit_to_data(start(ADAM), data(0), u, **args)


def test_huge_patience_and_batch_size_run_as_they_say():
    """patience=2**70 never stops early, batch_size=2**70 is one batch of every row: no bound."""
    args = dict(optimizer=ADAM, key=jax.random.key(2), max_epochs=2, validation_fraction=None)
    _, history = nica.fit_to_data(start(ADAM), data(0), batch_size=2**70, patience=2**70, **args)
    _, whole = nica.fit_to_data(start(ADAM), data(0), batch_size=256, **args)
    assert history.n_epochs == 2 and history.loss_curve == whole.loss_curve


@pytest.mark.parametrize(
    "objective, label, keys",
    [
        (None, "fit_to_data:", ["train_nll", "val_nll"]),
        (2.0 * nica.objectives.likelihood(), "fit_to_data (2*nll):", ["train_objective", "val_nll", "val_objective"]),
    ],
)
def test_the_progress_bar_says_what_each_number_is(capsys, objective, label, keys):
    """The bar names the objective when it is not the likelihood alone; its postfix holds the
    training objective (train_nll only for the likelihood), the exact validation NLL and the
    validation objective, the numbers the history records for the last epoch."""
    args = dict(optimizer=ADAM, key=jax.random.key(2), batch_size=64, max_epochs=2, objective=objective)
    _, history = nica.fit_to_data(start(ADAM), data(0), show_progress=True, **args)
    err = capsys.readouterr().err
    assert label in err
    last = re.findall(r"(?:s/it|it/s), ([^\]]+)\]", err)[-1]
    shown = {key: float(value) for key, value in re.findall(r"([a-z_]+)=(-?[\d.]+)", last)}
    assert sorted(shown) == keys
    assert shown[keys[0]] == pytest.approx(history.loss_curve[-1], abs=1e-4)
    assert shown["val_nll"] == pytest.approx(-history.validation_log_likelihoods[-1], abs=1e-4)
    assert shown.get("val_objective", shown["val_nll"]) == pytest.approx(-history.validation_scores[-1], abs=1e-4)


def test_the_callers_arrays_stay_valid_and_the_same_state_fits_again_identically():
    """fit_to_data trains its own copy: the epochs donate only that, so the parameters and the
    state given can be used again (once JAX's 'Array has been deleted')."""
    params = nica.init_params(jax.random.key(1), 2, 2)
    state = nica.init_train_state(ADAM, params)
    before = leaves(state)
    args = dict(optimizer=ADAM, key=jax.random.key(2), batch_size=64, max_epochs=2)
    first, _ = nica.fit_to_data(state, data(0), **args)
    assert not any(leaf.is_deleted() for leaf in jax.tree_util.tree_leaves(state))
    for a, b in zip(before, leaves(state)):
        np.testing.assert_array_equal(a, b)
    assert np.isfinite(np.asarray(nica.log_likelihood(params, data(0), prior="laplace"))).all()
    again, _ = nica.fit_to_data(state, data(0), **args)
    for a, b in zip(leaves(first), leaves(again)):
        np.testing.assert_array_equal(a, b)


def test_donate_state_trains_the_given_arrays_in_place():
    """For a state too large to hold twice: no copy; the arrays given are deleted, and passing
    them again is a clear error.  The result is the copying fit's, bit for bit."""
    args = dict(optimizer=ADAM, key=jax.random.key(2), batch_size=64, max_epochs=2)
    copied, _ = nica.fit_to_data(start(ADAM), data(0), **args)
    state = start(ADAM)
    donated, _ = nica.fit_to_data(state, data(0), donate_state=True, **args)
    for a, b in zip(leaves(copied), leaves(donated)):
        np.testing.assert_array_equal(a, b)
    assert state.params[0].W.is_deleted()
    with pytest.raises(ValueError, match=r"^state\.params\[0\]\.W is an array that has been deleted"):
        nica.fit_to_data(state, data(0), **args)
    with pytest.raises(ValueError, match="donate_state must be a bool; got 'yes'"):
        nica.fit_to_data(start(ADAM), data(0), donate_state="yes", **args)


def test_a_state_whose_arrays_were_donated_is_refused_by_name():
    state = start(ADAM)
    nica.make_epoch(ADAM, "smooth_leaky_relu", "laplace", "relative", 64)(state, data(0), None, jax.random.key(0))
    with pytest.raises(ValueError, match=r"^state\.params\[0\]\.W is an array that has been deleted: it was donated"):
        nica.fit_to_data(state, data(0), optimizer=ADAM, key=jax.random.key(2), batch_size=64, max_epochs=2)


def test_repeated_spike_restarts_keep_the_best_parameters(monkeypatch):
    """Every epoch a 'spike' (the guard's threshold made negative): each restart at the best
    parameters must not hand the next epoch (which donates its input) the kept best copy."""
    rng = np.random.default_rng(0)
    S = rng.laplace(size=(600, 3))
    H = S @ rng.uniform(-1, 1, (3, 3)).T
    X = np.where(H > 0, H, 0.2 * H) @ rng.uniform(-1, 1, (3, 3)).T
    update = nica.EarlyStopping.update

    def a_spike_after_the_first_epoch(self, status, score, epoch):
        if status.best_epoch == 0:
            return update(self, status, score, epoch)
        return status._replace(no_change=status.no_change + 1), nica.Decision(False, "spike")

    monkeypatch.setattr(nica.EarlyStopping, "update", a_spike_after_the_first_epoch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fitted = nica.NonlinearICA(
            n_layers=2, max_iter=5, batch_size=64, learning_rate=3e-3, n_iter_no_change=3, random_state=0
        ).fit(X)
    assert fitted.best_iter_ == 1 and fitted.n_iter_ == 5
    assert np.isfinite(fitted.score(X))
