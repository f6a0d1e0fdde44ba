"""The relative gradient in the group's coordinates (``equivariant_gradient``) and ``transport``.

Oracles: the definition ``H̄ = [G, g] W̄ᵀ`` with ``G, g`` from autodiff of a brute-force
likelihood (per-sample Jacobians and ``slogdet``), and the equivariance property itself: an
invertible affine change of the input, met by the matching change of the first layer, must
leave every later output of training unchanged.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import nica
from nica import activations, priors

from test_core import ACTIVATIONS, PRIORS, assert_layers_close, brute_nll, random_data, random_params


def algebra_from_definition(params, G_g):
    """``[G, g] W̄ᵀ`` with ``W̄ = [[W, b], [0, 1]]``: the augmented matrix's first ``D`` rows."""
    out = []
    for (W, b), (G, g) in zip(params, G_g):
        d = W.shape[0]
        if b is None:
            out.append((G @ W.T, None))
            continue
        Wbar = jnp.zeros((d + 1, d + 1)).at[:d, :d].set(W).at[:d, d].set(b).at[d, d].set(1.0)
        H = jnp.concatenate([G, g[:, None]], axis=1) @ Wbar.T  # (d, d + 1)
        out.append((H[:, :d], H[:, d]))
    return out


@pytest.mark.parametrize("n_layers", [1, 2, 4])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("prior", PRIORS)
def test_equivariant_gradient_matches_definition(n_layers, activation, prior):
    params = random_params(20 + n_layers, n_layers=n_layers)
    X = random_data(20 + n_layers)
    act, pr = activations.get(activation), priors.get(prior)
    expected = algebra_from_definition(params, jax.grad(brute_nll)(params, X, act, pr))
    got = nica.equivariant_gradient(params, X, activation=activation, prior=prior)
    assert_layers_close(got, expected)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("n_samples", [2, 40])
def test_transport_of_equivariant_gradient_is_the_relative_gradient(bias, n_samples):
    params = random_params(31, n_layers=3, bias=bias)
    X = random_data(31, n_samples=n_samples)
    H = nica.equivariant_gradient(params, X)
    assert_layers_close(nica.transport(H, params), nica.relative_gradient(params, X))


def test_transport_is_the_augmented_product_and_checks_lengths():
    params = random_params(32, n_layers=2)
    rng = np.random.default_rng(0)
    updates = tuple(nica.Layer(jnp.asarray(rng.standard_normal((3, 3))), jnp.asarray(rng.standard_normal(3)))
                    for _ in params)
    for (U, u), (W, b), (TW, Tb) in zip(updates, params, nica.transport(updates, params)):
        Wbar = np.block([[np.asarray(W), np.asarray(b)[:, None]], [np.zeros((1, 3)), np.ones((1, 1))]])
        expected = np.concatenate([np.asarray(U), np.asarray(u)[:, None]], axis=1) @ Wbar
        np.testing.assert_allclose(TW, expected[:, :3], rtol=1e-12)
        np.testing.assert_allclose(Tb, expected[:, 3], rtol=1e-12)
    with pytest.raises(ValueError, match="2 layers but params has 1"):
        nica.transport(updates, params[:1])
    with pytest.raises(ValueError, match=r"layer 0: the update's W has shape \(2, 2\)"):
        nica.transport((nica.Layer(jnp.zeros((2, 2)), jnp.zeros(2)), updates[1]), params)
    with pytest.raises(ValueError, match="layer 1: the update's b is None but the layer's b is an array"):
        nica.transport((updates[0], nica.Layer(updates[1].W, None)), params)


def _trajectory_with(opt, params, X, gradient, steps):
    """The parameters after ``steps`` full-batch steps of ``make_train_step``."""
    step = jax.jit(nica.make_train_step(opt, gradient=gradient))
    state = nica.init_train_state(opt, params)
    for _ in range(steps):
        state, _ = step(state, X)
    return state.params


def _adam_trajectory(params, X, gradient):
    """Full-batch Adam: the optimizer whose per-coordinate state breaks equivariance."""
    return _trajectory_with(optax.adam(3e-2), params, X, gradient, steps=15)


@pytest.mark.parametrize("gradient, equivariant", [("equivariant", True), ("relative", False)])
def test_adam_on_the_group_coordinates_is_equivariant(gradient, equivariant):
    """Train on X and on X' = X Aᵀ + c from the matching first layer W₁A⁻¹, b₁ − W₁A⁻¹c: the
    equivariant route gives the same network outputs on every sample; Adam fed the relative
    gradient in weight coordinates does not (the control, so the test can fail)."""
    params = random_params(40, n_layers=2)
    X = random_data(40, n_samples=64)
    rng = np.random.default_rng(1)
    A = jnp.asarray(rng.standard_normal((3, 3)) * 2.0 + 3.0 * np.eye(3))
    c = jnp.asarray(rng.standard_normal(3))
    X2 = X @ A.T + c[None, :]
    W1, b1 = params[0]
    W1_moved = W1 @ jnp.linalg.inv(A)
    params2 = (nica.Layer(W1_moved, b1 - W1_moved @ c),) + params[1:]
    np.testing.assert_allclose(nica.forward(params2, X2), nica.forward(params, X), atol=1e-10)  # same start
    out = nica.forward(_adam_trajectory(params, X, gradient), X)
    out2 = nica.forward(_adam_trajectory(params2, X2, gradient), X2)
    assert np.max(np.abs(out - nica.forward(params, X))) > 0.1  # it did train
    if equivariant:
        np.testing.assert_allclose(out2, out, atol=1e-8)
    else:
        assert np.max(np.abs(out2 - out)) > 1e-3


def test_sgd_steps_agree_with_the_relative_gradient():
    """For plain SGD the update is linear, so both routes take the same step."""
    params = random_params(41, n_layers=3)
    X = random_data(41, n_samples=32)
    opt = optax.sgd(1e-2)
    a = _trajectory_with(opt, params, X, "relative", steps=10)
    b = _trajectory_with(opt, params, X, "equivariant", steps=10)
    assert_layers_close(b, a, rtol=1e-9, atol=1e-11)


def test_float32_stays_float32():
    params = nica.init_params(jax.random.key(0), 4, 2, dtype=jnp.float32)
    X = jax.random.normal(jax.random.key(1), (10, 4), jnp.float32)
    H = nica.equivariant_gradient(params, X)
    leaves = jax.tree_util.tree_leaves((H, nica.transport(H, params)))
    assert {leaf.dtype for leaf in leaves} == {jnp.dtype("float32")}


@pytest.mark.parametrize("Estimator", [nica.NonlinearICA, nica.ConditionalNonlinearICA])
def test_estimators_train_with_the_equivariant_gradient(Estimator):
    data = nica.datasets.make_segmented_mixture(n_segments=4, n_per_segment=200, n_components=3,
                                                n_layers=2, random_state=0)
    fit_args = (data.X_train,) if Estimator is nica.NonlinearICA else (data.X_train, data.u_train)
    score_args = (data.X_test,) if Estimator is nica.NonlinearICA else (data.X_test, data.u_test)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        models = [Estimator(n_layers=2, gradient="equivariant", max_iter=30, random_state=0).fit(*fit_args)
                  for _ in range(2)]
        initial = Estimator(n_layers=2, gradient="equivariant", max_iter=1, random_state=0).fit(*fit_args)
    for a, b in zip(models[0].params_, models[1].params_):  # deterministic
        np.testing.assert_array_equal(a.W, b.W)
    assert models[0].score(*score_args) > initial.score(*score_args) + 0.1
    assert np.isfinite(models[0].score(*score_args))
