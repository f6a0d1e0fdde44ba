"""The training step and the jitted epoch (``nica/_src/training.py``): one step against an optax
step made by hand from autodiff of a brute-force likelihood, the objective and its deprecated
``contrastive_weight``, the checks that run before (and while) tracing, and the memory of a
compiled step and epoch (from ``memory_analysis``, nothing timed)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from oracles import (
    DEFINITIONS,
    assert_layers_close,
    brute_nll,
    brute_nll_grad,
    conditional_problem,
    epoch_permutation,
    transport_by_hand,
)

import nica
from nica import objectives, priors
from nica._src.training import init_train_state, make_epoch, make_train_step

D = 3


@pytest.mark.parametrize(
    "kind, gradient",
    [("segment", "relative"), ("segment", "equivariant"), ("segment", "euclidean"), ("mlp", "relative")],
)
def test_train_step_with_a_conditional_prior_is_one_optax_step(kind, gradient):
    """``make_train_step`` with a conditional prior against an optax step made by hand from the
    autodiff gradient of the brute-force likelihood, mapped to the chosen direction.  Adam with
    a large ``eps`` is neither linear nor scale-invariant, so a mis-scaled, misrouted or
    untransported direction changes the result."""
    params, X, prior, theta, u = conditional_problem(kind, 2 if kind == "segment" else 1)
    act = nica.activations.tanh_linear()
    opt = optax.adam(0.05, eps=0.5)
    step = jax.jit(nica.make_train_step(opt, activation=act, prior=prior, gradient=gradient))
    new_state, loss = step(nica.init_train_state(opt, params, theta), X, u)

    G_layers, G_theta = brute_nll_grad(params, X, act, prior, theta, u)
    direction = tuple(nica.Layer(jnp.asarray(W), jnp.asarray(b)) for W, b in DEFINITIONS[gradient](params, G_layers))
    updates, opt_state = opt.update((direction, G_theta), opt.init((params, theta)), (params, theta))
    if gradient == "equivariant":
        updates = (transport_by_hand(updates[0], params), updates[1])
    expected_params, expected_theta = optax.apply_updates((params, theta), updates)

    assert_layers_close(new_state.params, expected_params, rtol=1e-8, atol=1e-11)
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-12), new_state.prior_params, expected_theta
    )
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-12), new_state.opt_state, opt_state
    )
    log_det_w = sum(jnp.linalg.slogdet(W)[1] for W, _ in params)  # the loss leaves out −Σ log|det W|
    assert float(loss) == pytest.approx(float(brute_nll(params, X, act, prior, theta, u) + log_det_w), rel=1e-10)


def test_the_step_takes_an_objective_and_the_deprecated_contrastive_weight():
    """The hybrid objective's loss adds α · cross-entropy (> 0); ``contrastive_weight=α`` builds
    the same step bit for bit, with a ``FutureWarning``, and α = 0 is the likelihood's step."""
    params, X, prior, theta, u = conditional_problem("segment", 2, seed=1)
    opt = optax.adam(0.05)
    state = nica.init_train_state(opt, params, theta)
    plain = jax.jit(nica.make_train_step(opt, activation="tanh_linear", prior=prior))(state, X, u)
    hybrid_objective = objectives.likelihood() + 2.0 * objectives.label_cross_entropy()
    hybrid = jax.jit(nica.make_train_step(opt, activation="tanh_linear", prior=prior, objective=hybrid_objective))(
        state, X, u
    )
    assert float(hybrid[1]) > float(plain[1])
    with pytest.warns(FutureWarning, match="contrastive_weight is deprecated"):
        zero = jax.jit(nica.make_train_step(opt, activation="tanh_linear", prior=prior, contrastive_weight=0.0))(
            state, X, u
        )
    jax.tree_util.tree_map(np.testing.assert_array_equal, plain, zero)
    with pytest.warns(FutureWarning, match="contrastive_weight is deprecated"):
        old = jax.jit(nica.make_train_step(opt, activation="tanh_linear", prior=prior, contrastive_weight=2.0))(
            state, X, u
        )
    jax.tree_util.tree_map(np.testing.assert_array_equal, hybrid, old)


# ---------------------------------------------------------------------------------------------
# bad arguments: refused before tracing, and the same checks while tracing under jit


def _params(dtype=jnp.float32):
    return nica.init_params(jax.random.key(0), D, 2, dtype=dtype)


XJ = jax.random.normal(jax.random.key(1), (8, D), jnp.float32)


def test_train_step_refuses_bad_arguments_before_tracing():
    opt = optax.adam(1e-2)
    params = _params()
    state = nica.init_train_state(opt, params)
    step = nica.make_train_step(opt)
    for bad_opt, hint in (
        ("adam", r" \(build one: optax.adam\(1e-3\)\); got str"),
        (None, "; got NoneType"),
        (3, "; got int"),
    ):
        with pytest.raises(TypeError, match=f"optimizer must be an optax.GradientTransformation{hint}"):
            nica.make_train_step(bad_opt)
        with pytest.raises(TypeError, match=f"optimizer must be an optax.GradientTransformation{hint}"):
            nica.init_train_state(bad_opt, params)
    with pytest.raises(TypeError, match="params must be a non-empty tuple"):
        nica.init_train_state(opt, 3)
    with pytest.raises(ValueError, match="gradient must be one of"):
        nica.make_train_step(opt, gradient="natural")
    with pytest.raises(ValueError, match="segment-conditional prior"):
        nica.make_train_step(opt, prior="laplace", objective=objectives.likelihood() + objectives.label_cross_entropy())
    with pytest.raises(ValueError, match="give objective or contrastive_weight, not both"):
        nica.make_train_step(opt, objective=objectives.likelihood(), contrastive_weight=1.0)
    for bad in (-1.0, float("nan"), "5", True):
        with (
            pytest.raises(ValueError, match=f"contrastive_weight must be a finite number >= 0; got {bad!r}"),
            pytest.warns(FutureWarning),
        ):
            nica.make_train_step(opt, prior=priors.segment_conditional("laplace", 2), contrastive_weight=bad)
    for fn in (step, jax.jit(step)):  # the same checks eagerly and while tracing
        with pytest.raises(TypeError, match="state must be an nica.TrainState"):
            fn(tuple(state), XJ)
        with pytest.raises(ValueError, match="X must be 2-D"):
            fn(state, XJ[0])
        with pytest.raises(ValueError, match="X has 2 features but the network expects 3"):
            fn(state, XJ[:, :2])
        with pytest.raises(TypeError, match="floating-point array; got dtype int32"):
            fn(state, XJ.astype(jnp.int32))
        with pytest.raises(ValueError, match=r"the step averages over the rows of X: X needs at least one row"):
            fn(state, XJ[:0])
        with pytest.raises(ValueError, match="u is only used by a conditional prior"):
            fn(state, XJ, jnp.zeros(8, jnp.int32))
    learned = nica.make_train_step(opt, prior=priors.logistic_mixture())
    with pytest.raises(ValueError, match=r"state.prior_params do not match prior=LogisticMixture"):
        learned(state, XJ)


def test_train_step_with_segment_ids_out_of_range():
    opt = optax.adam(1e-2)
    prior = priors.segment_conditional("laplace", 4)
    state = nica.init_train_state(opt, _params(), prior.init_params(jax.random.key(0), D))
    step = nica.make_train_step(opt, prior=prior)
    good = jnp.arange(8) % 4
    jitted = jax.jit(step)
    assert np.isfinite(jitted(state, XJ, good)[1])
    for bad in (good + 1, good - 1):
        with pytest.raises(ValueError, match=r"segment ids from -?\d to \d, outside \[0, 4\)"):
            step(state, XJ, bad)
        # under jit the values are not known while tracing: a NaN loss, never another segment's
        assert np.isnan(jitted(state, XJ, bad)[1])
    with pytest.raises(ValueError, match="pass the auxiliary variable u"):
        step(state, XJ)
    with pytest.raises(ValueError, match="1-D array of integer segment ids"):
        step(state, XJ, good.astype(jnp.float32))
    with pytest.raises(ValueError, match=r"u must have one entry per row of X \(8\)"):
        step(state, XJ, good[:3])
    mlp = priors.mlp_conditional("laplace", 2)
    state = nica.init_train_state(opt, _params(), mlp.init_params(jax.random.key(0), D))
    with pytest.raises(ValueError, match=r"needs u as a real array of shape \(n_samples, 2\)"):
        nica.make_train_step(opt, prior=mlp)(state, XJ, jnp.ones((8, 3)))


ADAM_STATE = (
    "state.opt_state does not fit optimizer: it is not the state of the optimizer given to {where} "
    "(it holds EmptyState; optimizer.init gives ScaleByAdamState, EmptyState). Make the state with "
    "that optimizer: init_train_state(optimizer, params, prior_params), i.e. "
    "optimizer.init((params, prior_params))."
)


@pytest.mark.parametrize("gradient", ["relative", "equivariant"])
def test_a_state_made_by_another_optimizer_is_refused_before_optax_sees_it(gradient):
    """Adam's step given SGD's state (optax's own error: 'EmptyState' has no attribute 'mu')."""
    adam = optax.adam(1e-2)
    sgd_state = nica.init_train_state(optax.sgd(1e-2), _params())
    step = nica.make_train_step(adam, gradient=gradient)
    for fn in (step, jax.jit(step)):  # eagerly and while tracing
        with pytest.raises(ValueError) as refused:
            fn(sgd_state, XJ)
        assert str(refused.value) == ADAM_STATE.format(where="make_train_step")
    epoch = make_epoch(adam, "smooth_leaky_relu", "laplace", gradient, 4)
    with pytest.raises(ValueError) as refused:
        epoch(sgd_state, XJ, None, jax.random.key(0))
    assert str(refused.value) == ADAM_STATE.format(where="make_epoch")
    # Adam's state, but made for parameters of another shape
    wider = nica.init_train_state(adam, nica.init_params(jax.random.key(0), D + 1, 2, dtype=jnp.float32))
    with pytest.raises(ValueError, match="it holds ScaleByAdamState, EmptyState with other shapes than optimizer.init"):
        step(nica.TrainState(_params(), (), wider.opt_state), XJ)
    new_state, loss = step(nica.init_train_state(adam, _params()), XJ)  # its own state: a step
    assert np.isfinite(float(loss))


def test_arrays_donated_to_an_epoch_are_refused_by_name():
    """The epoch donates its state (updated in place); using the old arrays again is a clear
    error rather than JAX's 'Array has been deleted'."""
    opt = optax.sgd(1e-2)
    params = _params()
    state = nica.init_train_state(opt, params)
    new_state, _ = make_epoch(opt, "smooth_leaky_relu", "laplace", "relative", 4)(state, XJ, None, jax.random.key(0))
    assert params[0].W.is_deleted() and not new_state.params[0].W.is_deleted()
    donated = "is an array that has been deleted: it was donated to a jitted function that reuses its memory"
    with pytest.raises(ValueError, match=rf"^state\.params\[0\]\.W {donated}"):
        nica.make_train_step(opt)(state, XJ)
    with pytest.raises(ValueError, match=rf"^params\[0\]\.W {donated}"):
        nica.init_train_state(opt, params)
    nica.make_train_step(opt)(new_state, XJ)  # the state the epoch returned


# ---------------------------------------------------------------------------------------------
# memory of a compiled step and epoch


def _compiled_step(gradient, dim, batch=100, n_layers=2):
    """An Adam step with donated state, compiled for float32 shapes (nothing is allocated)."""
    opt = optax.adam(1e-3)
    matrix = jax.ShapeDtypeStruct((dim, dim), jnp.float32)
    vector = jax.ShapeDtypeStruct((dim,), jnp.float32)
    params = tuple(nica.Layer(matrix, vector) for _ in range(n_layers))
    state = jax.eval_shape(lambda p: init_train_state(opt, p), params)
    step = jax.jit(make_train_step(opt, gradient=gradient), donate_argnums=0)
    return step.lower(state, jax.ShapeDtypeStruct((batch, dim), jnp.float32)).compile()


def test_float32_step_has_no_batch_of_jacobians_at_d2048():
    dim, batch, n_layers = 2048, 100, 2
    stats = _compiled_step("relative", dim, batch, n_layers).memory_analysis()
    matrices = n_layers * dim * dim * 4  # bytes of one D×D float32 matrix per layer
    # the state (W, Adam's mu and nu) is donated: the outputs reuse its buffers
    assert stats.alias_size_in_bytes >= 3 * matrices
    # temporaries: the gradients (one D×D per layer) and (B, D) activations, nothing B×D×D
    assert stats.temp_size_in_bytes <= 1.25 * matrices
    assert stats.temp_size_in_bytes < batch * dim * dim * 4 / 10


def test_autodiff_step_does_build_a_batch_of_jacobians():
    """The bound above can fail: the autodiff baseline exceeds it by far."""
    dim, batch = 128, 100
    stats = _compiled_step("autodiff", dim, batch).memory_analysis()
    assert stats.temp_size_in_bytes > batch * dim * dim * 4


def test_epoch_makes_no_copy_of_the_data():
    opt = optax.adam(1e-3)
    dim = 256
    matrix, vector = jax.ShapeDtypeStruct((dim, dim), jnp.float32), jax.ShapeDtypeStruct((dim,), jnp.float32)
    state = jax.eval_shape(lambda p: init_train_state(opt, p), (nica.Layer(matrix, vector),) * 2)
    epoch = make_epoch(opt, nica.activations.get("smooth_leaky_relu"), nica.priors.get("laplace"), "relative", 100)

    def temp_bytes(n_samples):
        X = jax.ShapeDtypeStruct((n_samples, dim), jnp.float32)
        return epoch.lower(state, X, None, jax.random.key(0)).compile().memory_analysis().temp_size_in_bytes

    small, large = temp_bytes(1_000), temp_bytes(20_000)
    # only the shuffled row indices grow (a few bytes a row); a shuffled copy of X would add
    # 4·D = 1024 bytes a row
    assert large - small < 32 * 19_000


def test_an_epoch_is_the_steps_over_the_shuffled_batches():
    """One epoch against the step replayed on the epoch's own permutation (the remainder left
    out), and its loss the mean of the steps' losses.  The 70 rows are padded to 5 batches of
    16 (80 rows): the shuffle is a permutation of the 70 data rows, and the fifth step (padding
    only) is skipped.  Called inside ``jax.jit`` (a traced key), the epoch draws the same order."""
    opt = optax.sgd(1e-2)
    X = jax.random.laplace(jax.random.key(3), (70, 3))
    params = jax.tree_util.tree_map(np.asarray, nica.init_params(jax.random.key(4), 3, 2))  # the epoch donates
    act, prior = nica.activations.get("tanh_linear"), nica.priors.get("laplace")
    key = jax.random.key(5)
    start = init_train_state(opt, jax.tree_util.tree_map(jnp.array, params))
    state, loss = make_epoch(opt, act, prior, "relative", 16)(start, X, None, key)
    step = jax.jit(make_train_step(opt, activation=act, prior=prior))
    replay, losses = init_train_state(opt, jax.tree_util.tree_map(jnp.array, params)), []
    order = epoch_permutation(key, 70)
    for rows in order[:64].reshape(4, 16):
        replay, batch_loss = step(replay, X[rows])
        losses.append(float(batch_loss))
    assert_layers_close(state.params, replay.params, rtol=1e-12, atol=1e-14)
    assert float(loss) == pytest.approx(np.mean(losses), rel=1e-12)
    epoch = make_epoch(opt, act, prior, "relative", 16)
    traced, traced_loss = jax.jit(epoch)(init_train_state(opt, jax.tree_util.tree_map(jnp.array, params)), X, None, key)
    assert_layers_close(traced.params, state.params, rtol=1e-12, atol=1e-14)
    assert float(traced_loss) == pytest.approx(float(loss), rel=1e-12)
    with pytest.raises(TypeError, match=r"optimizer must be an optax.GradientTransformation \(build one: optax.sgd"):
        make_epoch("sgd", act, prior, "relative", 16)
