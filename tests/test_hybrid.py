"""The hybrid objective (exact likelihood + α · cross-entropy of the segment label's posterior).

Oracles: autodiff of a brute-force joint objective (per-sample Jacobians and ``slogdet`` for the
likelihood, one ``conditional_log_prob`` per segment and a log-softmax for the posterior),
mapped by the same relations as the likelihood alone (``[G, g] W̄ᵀW̄`` for the relative
gradient, ``[G, g] W̄ᵀ`` for the equivariant one); SciPy for the posterior of a fitted model.
"""

import copy
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats
from scipy.special import log_softmax
from sklearn.exceptions import ConvergenceWarning

import nica
from nica import priors
from nica import gradients, objectives
from nica.datasets import make_segmented_mixture

from test_conditional import brute_sources_and_log_det
from test_core import assert_layers_close, relative_from_definition
from test_equivariant import algebra_from_definition

N_SEGMENTS = 3


def problem(seed=0, n=8, d=3, n_layers=2):
    rng = np.random.default_rng(seed)
    params = tuple(
        nica.Layer(jnp.asarray(np.eye(d) + 0.4 * rng.standard_normal((d, d))), jnp.asarray(0.5 * rng.standard_normal(d)))
        for _ in range(n_layers)
    )
    X = jnp.asarray(rng.laplace(size=(n, d)))
    u = jnp.asarray(np.arange(n) % N_SEGMENTS)
    theta = {"log_scale": jnp.asarray(0.5 * rng.standard_normal((N_SEGMENTS, d))),
             "loc": jnp.asarray(0.5 * rng.standard_normal((N_SEGMENTS, d)))}
    return params, X, u, theta


def brute_joint(params, theta, X, u, act, prior, alpha):
    """Mean NLL (per-sample ``jax.jacfwd`` and ``slogdet``) + α · mean cross-entropy of ``u``
    given ``x`` (the posterior from one ``conditional_log_prob`` per segment)."""
    S, log_det = brute_sources_and_log_det(params, X, act)
    nll = -jnp.mean(prior.conditional_log_prob(theta, S, u) + log_det)
    per_segment = jnp.stack([prior.conditional_log_prob(theta, S, jnp.full(u.shape, m)) for m in range(N_SEGMENTS)],
                            axis=1)
    log_post = per_segment - jax.nn.logsumexp(per_segment, axis=1, keepdims=True)
    return nll - alpha * jnp.mean(log_post[jnp.arange(u.shape[0]), u])


# jitted (α traced): one compilation, faster than running op by op
brute_joint_grad = jax.jit(jax.value_and_grad(brute_joint, argnums=(0, 1)), static_argnums=(4, 5))


def library(method, *args, contrastive_weight):
    """The gradient form ``method`` of the hybrid objective ``likelihood + α · cross-entropy``."""
    objective = objectives.likelihood() + contrastive_weight * objectives.label_cross_entropy()
    fn = jax.jit(gradients.get(method).value_and_gradient, static_argnums=(2, 3, 6))
    return fn(*args, objective)


@pytest.mark.parametrize("method", ["relative", "equivariant", "euclidean"])
def test_hybrid_gradients_match_autodiff_of_the_joint_objective(method):
    """float64, with bias: the layers' direction is the brute-force joint gradient ``[G, g]``
    mapped by ``W̄ᵀW̄`` (relative) or ``W̄ᵀ`` (equivariant) or left as is (Euclidean); the prior's
    gradient is autodiff's; the loss is the joint objective without ``−Σ log|det W|``."""
    params, X, u, theta = problem()
    act, prior, alpha = nica.activations.tanh_linear(), priors.segment_conditional("laplace", N_SEGMENTS), 7.0
    joint, (G_layers, G_theta) = brute_joint_grad(params, theta, X, u, act, prior, alpha)
    _, (G0, _) = brute_joint_grad(params, theta, X, u, act, prior, 0.0)  # the likelihood alone
    mapping = {"relative": relative_from_definition, "equivariant": algebra_from_definition,
               "euclidean": lambda p, G: list(G)}[method]

    loss, layers, theta_grads = library(method, params, X, act, prior, theta, u, contrastive_weight=alpha)
    assert_layers_close(layers, mapping(params, G_layers), rtol=1e-8, atol=1e-11)
    for key in theta:
        np.testing.assert_allclose(theta_grads[key], G_theta[key], rtol=1e-8, atol=1e-12)
    log_det_w = sum(jnp.linalg.slogdet(W)[1] for W, _ in params)
    assert float(loss) == pytest.approx(float(joint + log_det_w), rel=1e-10)
    # the term matters: the likelihood's own direction is far from the joint one
    assert not np.allclose(np.asarray(G0[0].W), np.asarray(G_layers[0].W), rtol=1e-2)
    if method == "euclidean":  # and the autodiff baseline computes the same joint gradient
        _, auto, _ = library("autodiff", params, X, act, prior, theta, u, contrastive_weight=alpha)
        assert_layers_close(auto, list(G_layers), rtol=1e-8, atol=1e-11)


def test_train_step_weight_zero_is_the_likelihood_step_and_checks_the_weight():
    params, X, u, theta = problem(1)
    prior = priors.segment_conditional("laplace", N_SEGMENTS)
    opt = optax.adam(0.05)
    state = nica.init_train_state(opt, params, theta)
    plain = jax.jit(nica.make_train_step(opt, activation="tanh_linear", prior=prior))(state, X, u)
    hybrid_objective = objectives.likelihood() + 2.0 * objectives.label_cross_entropy()
    hybrid = jax.jit(nica.make_train_step(opt, activation="tanh_linear", prior=prior, objective=hybrid_objective))(
        state, X, u)
    assert float(hybrid[1]) > float(plain[1])  # the loss adds α · cross-entropy (> 0)
    with pytest.raises(ValueError, match="segment-conditional prior"):
        nica.make_train_step(opt, prior="laplace", objective=hybrid_objective)
    # the deprecated contrastive_weight=α still builds the same step, with a FutureWarning
    with pytest.warns(FutureWarning, match="contrastive_weight is deprecated"):
        zero = jax.jit(nica.make_train_step(opt, activation="tanh_linear", prior=prior, contrastive_weight=0.0))(
            state, X, u)
    jax.tree_util.tree_map(np.testing.assert_array_equal, plain, zero)
    with pytest.warns(FutureWarning):
        old = jax.jit(nica.make_train_step(opt, activation="tanh_linear", prior=prior, contrastive_weight=2.0))(
            state, X, u)
    jax.tree_util.tree_map(np.testing.assert_array_equal, hybrid, old)
    for bad in (-1.0, float("nan"), "5", True):
        with pytest.raises(ValueError, match="contrastive_weight"), pytest.warns(FutureWarning):
            nica.make_train_step(opt, prior=prior, contrastive_weight=bad)
    with pytest.raises(ValueError, match="an objective's weight"):
        objectives.likelihood() + (-1.0) * objectives.label_cross_entropy()


def test_label_log_posterior_matches_scipy():
    _, _, _, theta = problem(2)
    S = np.random.default_rng(3).laplace(size=(6, 3))
    prior = priors.segment_conditional("laplace", N_SEGMENTS)
    got = prior.label_log_posterior(theta, jnp.asarray(S))
    scale, loc = np.exp(np.asarray(theta["log_scale"])), np.asarray(theta["loc"])
    per_segment = np.stack([stats.laplace.logpdf(S, loc[m], scale[m] / np.sqrt(2)).sum(axis=1) for m in range(N_SEGMENTS)], axis=1)
    np.testing.assert_allclose(got, log_softmax(per_segment, axis=1), rtol=1e-10, atol=1e-12)


@pytest.fixture(scope="module")
def hybrid_fit():
    data = make_segmented_mixture(n_segments=4, n_per_segment=60, n_components=2, n_layers=1, random_state=0)
    labels = np.array(["a", "b", "c", "d"])[data.u_train]
    model = nica.ConditionalNonlinearICA(n_layers=2, max_iter=1, contrastive_weight=5.0, random_state=0)
    with pytest.warns(Warning):  # max_iter=1 does not converge
        model.fit(data.X_train, labels)
    return model, data, labels


def test_predict_proba_is_the_posterior_from_transform_and_the_prior(hybrid_fit):
    model, data, _ = hybrid_fit
    S = model.transform(data.X_test)
    scale, loc = np.exp(model.prior_params_["log_scale"]), model.prior_params_["loc"]
    per_segment = np.stack([stats.laplace.logpdf(S, loc[m], scale[m] / np.sqrt(2)).sum(axis=1) for m in range(4)], axis=1)
    expected = np.exp(log_softmax(per_segment, axis=1))
    proba = model.predict_proba(data.X_test)
    np.testing.assert_allclose(proba, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(model.predict(data.X_test), model.classes_[np.argmax(expected, axis=1)])


def test_the_monitored_score_is_the_validation_hybrid_objective(hybrid_fit):
    """With one epoch the kept parameters are the scored ones: the validation score is the
    validation rows' mean log-likelihood − α · their mean cross-entropy (the split drawn as
    the estimator draws it), while ``score`` stays the exact log-likelihood."""
    model, data, labels = hybrid_fit
    rng = np.random.RandomState(0)
    rng.randint(np.iinfo(np.int32).max)
    n = data.X_train.shape[0]
    val = rng.permutation(n)[:max(1, int(round(0.1 * n)))]
    X_val, y_val = data.X_train[val], labels[val]
    proba = model.predict_proba(X_val)
    cross_entropy = -np.mean(np.log(proba[np.arange(len(val)), np.searchsorted(model.classes_, y_val)]))
    ll = model.score(X_val, y_val)
    assert model.validation_scores_[0] == pytest.approx(ll - 5.0 * cross_entropy, rel=1e-4, abs=1e-4)
    assert ll == pytest.approx(np.mean(model.score_samples(X_val, y_val)))


def test_contrastive_weight_refuses_continuous_u_and_bad_values():
    X = np.random.default_rng(0).standard_normal((40, 2))
    with pytest.raises(ValueError, match="discrete auxiliary variable"):
        nica.ConditionalNonlinearICA(n_layers=1, max_iter=1, contrastive_weight=1.0).fit(X, np.linspace(0, 1, 40))
    with pytest.raises(ValueError, match="discrete auxiliary variable"):
        nica.ConditionalNonlinearICA(aux_type="continuous", contrastive_weight=1.0).fit(X, np.arange(40) % 2)
    with pytest.raises(ValueError, match="contrastive_weight"):
        nica.ConditionalNonlinearICA(contrastive_weight=-1.0).fit(X, np.arange(40) % 2)



def test_predict_proba_needs_discrete_labels(hybrid_fit):
    model = copy.copy(hybrid_fit[0])
    model.aux_type_ = "continuous"  # as a model fitted with a continuous u (no second fit)
    with pytest.raises(ValueError, match="discrete segment labels"):
        model.predict_proba(hybrid_fit[1].X_test)


def test_contrastive_weight_auto_is_two_for_labels_and_zero_for_continuous_u():
    """``"auto"``: the hybrid objective (α = 2) for segment labels, the exact likelihood for a
    continuous u; the fit with "auto" on labels is the fit with α = 2, not the one with α = 0."""
    data = make_segmented_mixture(n_segments=4, n_per_segment=60, n_components=2, n_layers=1, random_state=3)
    kw = dict(n_layers=2, max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        auto = nica.ConditionalNonlinearICA(**kw).fit(data.X_train, data.u_train)
        two = nica.ConditionalNonlinearICA(contrastive_weight=2.0, **kw).fit(data.X_train, data.u_train)
        zero = nica.ConditionalNonlinearICA(contrastive_weight=0.0, **kw).fit(data.X_train, data.u_train)
        continuous = nica.ConditionalNonlinearICA(**kw).fit(data.X_train, data.u_train + 0.5)
    assert auto.contrastive_weight == "auto" and auto.contrastive_weight_ == 2.0
    assert zero.contrastive_weight_ == 0.0 and continuous.contrastive_weight_ == 0.0
    assert continuous.aux_type_ == "continuous"
    np.testing.assert_array_equal(auto.transform(data.X_test), two.transform(data.X_test))
    assert np.max(np.abs(auto.transform(data.X_test) - zero.transform(data.X_test))) > 1e-6
    with pytest.raises(ValueError, match="contrastive_weight must be a finite number >= 0 or 'auto'"):
        nica.ConditionalNonlinearICA(contrastive_weight="big").fit(data.X_train, data.u_train)
    # a warm start cannot switch a continuous-u model to the hybrid objective
    continuous.set_params(warm_start=True, contrastive_weight=1.0)
    with pytest.raises(ValueError, match="discrete auxiliary variable"):
        continuous.fit(data.X_train, data.u_train + 0.5)


def test_the_hybrid_fit_records_the_exact_validation_log_likelihood_beside_its_monitored_score():
    """``validation_log_likelihoods_`` is the exact validation log-likelihood of each epoch: the
    monitored score itself with α = 0, and with α = 2 the hybrid objective's
    ``validation_scores_`` plus α times the validation cross-entropy (so strictly above it)."""
    data = make_segmented_mixture(n_segments=4, n_per_segment=60, n_components=2, n_layers=1, random_state=3)
    kw = dict(n_layers=2, max_iter=4, random_state=0, tol=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        hybrid = nica.ConditionalNonlinearICA(**kw).fit(data.X_train, data.u_train)
        mle = nica.ConditionalNonlinearICA(contrastive_weight=0.0, **kw).fit(data.X_train, data.u_train)
    assert mle.validation_log_likelihoods_ == mle.validation_scores_
    ll, score = np.asarray(hybrid.validation_log_likelihoods_), np.asarray(hybrid.validation_scores_)
    assert ll.shape == score.shape == (hybrid.n_iter_,)
    assert np.all(ll > score)
