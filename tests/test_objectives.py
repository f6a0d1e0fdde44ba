"""Training objectives (``nica/_src/objectives.py``): the likelihood, the label cross-entropy
and their weighted sums, against autodiff of brute-force objectives (per-sample Jacobians and
``slogdet`` for the likelihood, one ``conditional_log_prob`` per segment and a log-softmax for
the label posterior), mapped by each gradient form's definition.

Every registered term (``objectives.names()``) is held to the oracle of what the relative
gradient needs of a term: ``likelihood() + w · term`` gets the relative gradient of the whole
objective.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from oracles import DEFINITIONS, assert_layers_close, brute_sources_and_log_det, relative_from_definition

import nica
from nica import gradients, objectives, priors

N_SEGMENTS = 3


def problem(seed=0, n=8, d=3, n_layers=2):
    """Layers with bias, rows, segment labels and segment-conditional prior parameters (float64)."""
    rng = np.random.default_rng(seed)
    params = tuple(
        nica.Layer(
            jnp.asarray(np.eye(d) + 0.4 * rng.standard_normal((d, d))), jnp.asarray(0.5 * rng.standard_normal(d))
        )
        for _ in range(n_layers)
    )
    X = jnp.asarray(rng.laplace(size=(n, d)))
    u = jnp.asarray(np.arange(n) % N_SEGMENTS)
    theta = {
        "log_scale": jnp.asarray(0.5 * rng.standard_normal((N_SEGMENTS, d))),
        "loc": jnp.asarray(0.5 * rng.standard_normal((N_SEGMENTS, d))),
    }
    return params, X, u, theta


def brute_joint(params, theta, X, u, act, prior, alpha):
    """Mean NLL (per-sample ``jax.jacfwd`` and ``slogdet``) + α · mean cross-entropy of ``u``
    given ``x`` (the posterior from one ``conditional_log_prob`` per segment)."""
    S, log_det = brute_sources_and_log_det(params, X, act)
    nll = -jnp.mean(prior.conditional_log_prob(theta, S, u) + log_det)
    per_segment = jnp.stack(
        [prior.conditional_log_prob(theta, S, jnp.full(u.shape, m)) for m in range(N_SEGMENTS)], axis=1
    )
    log_post = per_segment - jax.nn.logsumexp(per_segment, axis=1, keepdims=True)
    return nll - alpha * jnp.mean(log_post[jnp.arange(u.shape[0]), u])


# jitted (α traced): one compilation, faster than running op by op
brute_joint_grad = jax.jit(jax.value_and_grad(brute_joint, argnums=(0, 1)), static_argnums=(4, 5))


@functools.lru_cache
def _jitted_form(name):
    return jax.jit(gradients.get(name).value_and_gradient, static_argnums=(2, 3, 6))


def library(method, params, X, act, prior, theta, u, objective):
    """``(loss, layers' direction, prior gradients)`` of ``objective`` by the gradient form ``method``."""
    return _jitted_form(method)(params, X, act, prior, theta, u, objective)


def test_every_built_in_form_of_the_hybrid_objective_matches_autodiff():
    """float64, with bias: the layers' direction is the brute-force joint gradient ``[G, g]``
    mapped by each form's definition (``W̄ᵀW̄``, ``W̄ᵀ``, nothing); the prior's gradient is
    autodiff's; the loss is the joint objective without ``−Σ log|det W|``."""
    params, X, u, theta = problem()
    act, prior, alpha = nica.activations.tanh_linear(), priors.segment_conditional("laplace", N_SEGMENTS), 7.0
    objective = objectives.likelihood() + alpha * objectives.label_cross_entropy()
    joint, (G_layers, G_theta) = brute_joint_grad(params, theta, X, u, act, prior, alpha)
    _, (G0, _) = brute_joint_grad(params, theta, X, u, act, prior, 0.0)  # the likelihood alone
    # the term matters: the likelihood's own direction is far from the joint one
    assert not np.allclose(np.asarray(G0[0].W), np.asarray(G_layers[0].W), rtol=1e-2)
    log_det_w = sum(jnp.linalg.slogdet(W)[1] for W, _ in params)
    for method, definition in DEFINITIONS.items():
        loss, layers, theta_grads = library(method, params, X, act, prior, theta, u, objective)
        assert_layers_close(layers, definition(params, G_layers), rtol=1e-8, atol=1e-11)
        for key in theta:
            np.testing.assert_allclose(theta_grads[key], G_theta[key], rtol=1e-8, atol=1e-12)
        assert float(loss) == pytest.approx(float(joint + log_det_w), rel=1e-10)


@pytest.mark.parametrize("name", objectives.names())
def test_every_registered_term_gets_the_relative_gradient_of_the_whole_objective(name):
    """``likelihood() + 0.7 · term`` for each registered term (with a segment-conditional prior,
    which every term accepts): the relative gradient is ``[G, g] W̄ᵀW̄`` of autodiff of the mean
    of ``−log p(x | u) + 0.7 · term.row_losses`` evaluated on the brute-force sources and
    log-determinant, and the prior's gradient is autodiff's."""
    params, X, u, theta = problem(4)
    act, prior = nica.activations.smooth_leaky_relu(), priors.segment_conditional("laplace", N_SEGMENTS)
    term = objectives.get(name)
    objective = objectives.likelihood() + 0.7 * term

    def brute(params, theta):
        S, log_det = brute_sources_and_log_det(params, X, act)
        nll = -(prior.conditional_log_prob(theta, S, u) + log_det)
        return jnp.mean(nll + 0.7 * term.row_losses(prior, theta, S, log_det, u))

    value, (G_layers, G_theta) = jax.value_and_grad(brute, argnums=(0, 1))(params, theta)
    loss, layers, theta_grads = library("relative", params, X, act, prior, theta, u, objective)
    assert_layers_close(layers, relative_from_definition(params, G_layers), rtol=1e-8, atol=1e-11)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-12), theta_grads, G_theta)
    log_det_w = sum(jnp.linalg.slogdet(W)[1] for W, _ in params)
    assert float(loss) == pytest.approx(float(value + objective.total_log_det_weight() * log_det_w), rel=1e-10)


def test_the_likelihood_term_is_minus_the_log_likelihood_of_each_row():
    params, X, u, theta = problem(5)
    act, prior = nica.activations.tanh_linear(), priors.segment_conditional("gaussian", N_SEGMENTS)
    S, log_det = brute_sources_and_log_det(params, X, act)
    rows = objectives.likelihood().row_losses(prior, theta, S, log_det, u)
    expected = nica.log_likelihood(params, X, activation=act, prior=prior, prior_params=theta, u=u)
    np.testing.assert_allclose(rows, -expected, rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# objectives as values: sums, weights, labels


def test_weighted_sums_merge_equal_terms_drop_zero_weights_and_say_what_they_are():
    nll, ce = objectives.likelihood(), objectives.label_cross_entropy()
    hybrid = nll + 2 * ce
    assert isinstance(hybrid, objectives.WeightedSum) and hybrid.terms() == ((1.0, nll), (2.0, ce))
    assert hybrid.label == "nll + 2·label_cross_entropy" and (ce * 2 + nll).label == "2·label_cross_entropy + nll"
    assert 1.0 * nll is nll  # a single term of weight 1 is the term itself
    assert nll + 0 * ce == nll  # a term of weight 0 beside others is dropped
    assert (0.0 * nll).terms() == ((0.0, nll),)  # alone, it stays (a degenerate objective)
    assert (nll + nll).terms() == ((2.0, nll),)  # equal terms merged
    assert (hybrid + 0.5 * ce).terms() == ((1.0, nll), (2.5, ce))
    assert nll.total_log_det_weight() == 1.0 and ce.total_log_det_weight() == 0.0
    assert (3 * nll + ce).total_log_det_weight() == 3.0
    assert hash(hybrid) == hash(nll + 2.0 * ce) and hybrid == nll + 2.0 * ce  # a static argument of jit


def test_mean_loss_is_the_weighted_sum_of_the_terms_mean_row_losses():
    params, X, u, theta = problem(6)
    act, prior = nica.activations.tanh_linear(), priors.segment_conditional("laplace", N_SEGMENTS)
    S, log_det = brute_sources_and_log_det(params, X, act)
    nll, ce = objectives.likelihood(), objectives.label_cross_entropy()
    expected = jnp.mean(nll.row_losses(prior, theta, S, log_det, u)) + 3.0 * jnp.mean(
        ce.row_losses(prior, theta, S, log_det, u)
    )
    hybrid = nll + 3.0 * ce
    assert float(hybrid.mean_loss(prior, theta, S, log_det, u)) == pytest.approx(float(expected), rel=1e-12)
    np.testing.assert_allclose(
        hybrid.row_losses(prior, theta, S, log_det, u),
        nll.row_losses(prior, theta, S, log_det, u) + 3.0 * ce.row_losses(prior, theta, S, log_det, u),
    )


@pytest.mark.parametrize(
    "call, error, match",
    [
        (
            lambda: objectives.likelihood() + (-1.0) * objectives.label_cross_entropy(),
            ValueError,
            "an objective's weight must be a finite number >= 0.0; got -1.0",
        ),
        (lambda: objectives.likelihood() * float("nan"), ValueError, "an objective's weight must be a finite number"),
        (lambda: objectives.likelihood() + 3, TypeError, "unsupported operand"),
        (lambda: objectives.likelihood() * objectives.likelihood(), TypeError, "unsupported operand"),
        (
            lambda: objectives.WeightedSum(((1.0, "nll"),)),
            TypeError,
            r"weighted_terms must hold \(weight, term\) pairs of single objectives; got \(1.0, 'nll'\)",
        ),
        (
            lambda: objectives.WeightedSum(((-2.0, objectives.likelihood()),)),
            ValueError,
            "an objective's weight must be a finite number >= 0.0; got -2.0",
        ),
        (lambda: objectives.get("mse"), ValueError, r"Unknown objective 'mse'; expected one of \[.*'nll'"),
        (
            lambda: objectives.get(objectives.likelihood),
            TypeError,
            r"objective must be a string in \[.*'nll'.*\] or an nica.objectives object; got function",
        ),
        (
            lambda: objectives.label_cross_entropy().check_prior(priors.laplace()),
            ValueError,
            r"need a segment-conditional prior \(priors.segment_conditional, discrete u\); got prior=Laplace\(\)",
        ),
        (
            lambda: (objectives.likelihood() + objectives.label_cross_entropy()).check_prior(
                priors.mlp_conditional("laplace", 2)
            ),
            ValueError,
            "got prior=MLPConditional",
        ),
    ],
)
def test_bad_objectives_are_refused(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_the_gradient_functions_refuse_an_objective_that_does_not_suit_the_prior():
    params, X, _, _ = problem(7)
    with pytest.raises(ValueError, match="segment-conditional prior"):
        nica.relative_gradient(params, X, prior="laplace", objective=objectives.label_cross_entropy())
    assert objectives.likelihood().check_prior(priors.laplace()) is None  # the likelihood takes any prior
