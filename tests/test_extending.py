"""Extending nica without editing it: a new activation, factorized prior, objective term and
gradient form, each one class defined here and one registry line, used through the functional
core, the estimators and the command line (CONTRIBUTING.md, "Where a change goes").

Each component is checked against an independent oracle (autodiff of the definition) before it
is used, so a test here fails when the registry or the estimators drop what was registered.
Registered when this file is imported, the components are also seen by the registry-parametrised
oracle tests of the files collected after it (tests/test_gradients.py, test_network.py,
test_objectives.py, test_priors.py, ...): a new component must pass the same oracles as the
built-in ones.  Every worker of pytest-xdist imports the files in the same order, so every
worker collects the same tests.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.integrate import trapezoid

import nica
from nica import activations, gradients, objectives, priors
from nica.cli import build_parser, main

# ---------------------------------------------------------------------------------------------
# the four components, one class each, and their registry lines


@dataclasses.dataclass(frozen=True)
class SoftsignLinear(activations.Activation):
    """``σ(x) = x + x/(1 + |x|)``: strictly increasing onto ℝ, with ``σ'(x) = 1 + 1/(1 + |x|)²`` in
    ``(1, 2]``.  Its slope is bounded above and away from zero, as every activation's must be for
    a deep network to stay well conditioned (``x + x³/3``, whose slope grows without bound, makes
    a four-layer network lose eight digits in ``inverse(forward(X))``)."""

    def fn(self, x):
        return x + x / (1.0 + jnp.abs(x))

    def log_derivative(self, x):
        return jnp.log1p((1.0 + jnp.abs(x)) ** -2)

    def inverse(self, y):  # x = (y − 2 + √(y² + 4))/2 for y ≥ 0, rewritten without cancellation (odd)
        return y / (1.0 + 2.0 / (jnp.abs(y) + jnp.sqrt(y**2 + 4.0)))


@dataclasses.dataclass(frozen=True)
class UnitLogistic(priors.Prior):
    """The logistic density rescaled to unit variance."""

    def log_density(self, s):
        k = math.pi / math.sqrt(3.0)
        z = jnp.abs(k * s)
        return -z - 2.0 * jnp.log1p(jnp.exp(-z)) + math.log(k)

    def _standard_sample(self, key, shape, dtype):
        return jax.random.logistic(key, shape, dtype) * (math.sqrt(3.0) / math.pi)


@dataclasses.dataclass(frozen=True)
class SourcePower(objectives.Objective):
    """``Σ_i s_i²`` per row: a penalty on the sources' power."""

    name = "source_power"

    def row_losses(self, prior, prior_params, S, log_det, u):
        return jnp.sum(S**2, axis=1)


@dataclasses.dataclass(frozen=True)
class DefinitionRelative(gradients.GradientForm):
    """The relative gradient by its definition ``[G, g] W̄ᵀ W̄``, with ``G`` from an explicit inverse."""

    name = "definition_relative"

    def layer_gradients(self, params, backprop, log_det_weight):
        out = []
        for layer, delta, Z in zip(params, backprop.errors, backprop.inputs):
            G = delta.T @ Z - log_det_weight * jnp.linalg.inv(layer.W).T
            W, b = layer
            if b is None:  # a layer without bias: W̄ = W
                out.append(nica.Layer(G @ W.T @ W, None))
                continue
            g = jnp.sum(delta, axis=0)
            out.append(nica.Layer(G @ W.T @ W + jnp.outer(g, b @ W), G @ W.T @ b + g * (1.0 + b @ b)))
        return tuple(out)


activations.register("example_softsign_linear", SoftsignLinear)
priors.register("example_unit_logistic", UnitLogistic)
objectives.register("example_source_power", SourcePower)
gradients.register("example_definition_relative", DefinitionRelative)

# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(0)
    S = rng.logistic(size=(400, 3))
    return np.tanh(S @ np.array([[1.0, 0.4, 0.0], [0.2, 1.0, 0.3], [0.0, 0.5, 1.0]]).T) + 0.3 * S


def _autodiff_loss(params, X, activation, prior, weight):
    """The mean of ``−log p(x) + weight · Σ s²`` by brute force: per-row Jacobians and slogdet."""

    def g(x):
        return nica.forward(params, x[None, :], activation=activation)[0]

    S = jax.vmap(g)(X)
    J = jax.vmap(jax.jacfwd(g))(X)
    nll = -(jnp.sum(prior.log_density(S), axis=1) + jnp.linalg.slogdet(J)[1])
    return jnp.mean(nll + weight * jnp.sum(S**2, axis=1))


def test_each_component_matches_its_oracle():
    x = jnp.linspace(-4.0, 4.0, 41)
    act = activations.get("example_softsign_linear")
    np.testing.assert_allclose(act.inverse(act.fn(x)), x, atol=1e-12)
    np.testing.assert_allclose(act.log_derivative(x), jnp.log(jax.vmap(jax.grad(act.fn))(x)), atol=1e-12)
    prior = priors.get("example_unit_logistic")
    grid = np.linspace(-30, 30, 200001)
    density = np.exp(np.asarray(prior.log_density(jnp.asarray(grid))))
    assert abs(trapezoid(density, grid) - 1) < 1e-6 and abs(trapezoid(grid**2 * density, grid) - 1) < 1e-5


@pytest.mark.parametrize("form", ["relative", "example_definition_relative"])
def test_an_objective_term_gets_the_relative_gradient_of_the_whole_objective(form):
    params = nica.init_params(jax.random.key(0), 3, 2)
    params = tuple(nica.Layer(layer.W * 1.3, layer.b + 0.1) for layer in params)
    Xj = jax.random.laplace(jax.random.key(1), (50, 3))
    objective = objectives.likelihood() + 0.5 * objectives.get("example_source_power")
    _, layers, _ = gradients.get(form).value_and_gradient(
        params, Xj, activations.get("example_softsign_linear"), priors.get("example_unit_logistic"), (), None, objective
    )
    G = jax.grad(_autodiff_loss)(params, Xj, SoftsignLinear(), UnitLogistic(), 0.5)
    for layer, grad, mine in zip(params, G, layers):  # the definition: [G, g] W̄ᵀ W̄
        W, b = layer
        np.testing.assert_allclose(mine.W, grad.W @ W.T @ W + jnp.outer(grad.b, b @ W), rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(mine.b, grad.W @ W.T @ b + grad.b * (1 + b @ b), rtol=1e-8, atol=1e-10)
    if form == "relative":  # the public function takes the objective too
        public = nica.relative_gradient(
            params, Xj, activation="example_softsign_linear", prior="example_unit_logistic", objective=objective
        )
        np.testing.assert_allclose(public[0].W, layers[0].W, rtol=1e-12)


def test_the_estimator_takes_every_registered_component(X):
    objective = objectives.likelihood() + 0.1 * objectives.get("example_source_power")
    model = nica.NonlinearICA(
        n_layers=2,
        activation="example_softsign_linear",
        prior="example_unit_logistic",
        objective=objective,
        gradient="example_definition_relative",
        max_iter=4,
        random_state=0,
    ).fit(X)
    assert model.activation_ == SoftsignLinear() and model.prior_ == UnitLogistic() and model.objective_ == objective
    assert model.gradient_ == "example_definition_relative"
    np.testing.assert_allclose(model.inverse_transform(model.transform(X)), X, atol=1e-8)
    # the exact likelihood of the fitted model, by the functional core with the registered names
    ll = nica.log_likelihood(model.params_, X, activation="example_softsign_linear", prior="example_unit_logistic")
    np.testing.assert_allclose(model.score_samples(X), ll, rtol=1e-10)
    # the validation scores are minus the objective: the likelihood and the new term, by name
    assert objective.label == "nll + 0.1·source_power"


def test_the_fit_loop_records_each_term_by_name(X):
    objective = objectives.likelihood() + 0.1 * objectives.get("example_source_power")
    params = nica.init_params(jax.random.key(2), 3, 2)
    opt = optax.adam(1e-2)
    X_train, X_val = jnp.asarray(X[:300]), jnp.asarray(X[300:])
    state, history = nica.fit_to_data(
        nica.init_train_state(opt, params),
        X_train,
        optimizer=opt,
        key=jax.random.key(3),
        activation="example_softsign_linear",
        prior="example_unit_logistic",
        objective=objective,
        validation=X_val,
        max_epochs=1,
        batch_size=50,
    )
    assert history.objective == objective.label and history.best_epoch == 1
    S = nica.forward(state.params, X_val, activation="example_softsign_linear")
    nll = -float(
        jnp.mean(
            nica.log_likelihood(
                state.params, X_val, activation="example_softsign_linear", prior="example_unit_logistic"
            )
        )
    )
    assert history.validation_terms["nll"][0] == pytest.approx(nll, rel=1e-10)
    assert history.validation_terms["source_power"][0] == pytest.approx(float(jnp.mean(jnp.sum(S**2, 1))), rel=1e-10)
    assert history.validation_scores[0] == pytest.approx(-(nll + 0.1 * history.validation_terms["source_power"][0]))
    assert history.validation_log_likelihoods[0] == pytest.approx(-nll)


def test_the_command_line_offers_and_uses_every_registered_component(X, tmp_path):
    data, model_file = tmp_path / "X.npy", tmp_path / "model.nica"
    options = [
        "--activation",
        "example_softsign_linear",
        "--prior",
        "example_unit_logistic",
        "--gradient",
        "example_definition_relative",
        "--objective-term",
        "example_source_power=0.1",
    ]
    args = build_parser().parse_args(["fit", str(data), "--model", str(model_file)] + options)
    assert (args.activation, args.prior, args.gradient) == (
        "example_softsign_linear",
        "example_unit_logistic",
        "example_definition_relative",
    )
    assert args.objective_term == [("example_source_power", 0.1)]
    np.save(data, X)
    assert main(["fit", str(data), "--model", str(model_file), "--n-layers", "2", "--max-iter", "2"] + options) == 0
    model = nica.load(model_file)
    assert model.activation_ == SoftsignLinear() and model.prior_ == UnitLogistic()
    assert model.objective_ == objectives.likelihood() + 0.1 * SourcePower()
    assert main(["fit", str(data), "--model", str(model_file), "--activation", "not_registered"]) == 2
