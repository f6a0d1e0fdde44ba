"""Conditional priors (eq. 4) and ConditionalNonlinearICA against independent oracles."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.integrate import trapezoid
from scipy.optimize import linear_sum_assignment
from scipy.special import log_softmax, logsumexp
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.utils.estimator_checks import parametrize_with_checks

import nica
from nica import priors
from nica.datasets import make_segmented_mixture
from nica.metrics import mean_corr_coef

from test_core import assert_layers_close, relative_from_definition
from test_equivariant import algebra_from_definition

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

SCIPY_BASE = {
    "gaussian": stats.norm(),
    "laplace": stats.laplace(scale=1 / np.sqrt(2)),
    "logistic": stats.logistic(),
    "hypsecant": stats.hypsecant(scale=2 / np.pi),
}


@parametrize_with_checks([nica.ConditionalNonlinearICA(n_layers=2, max_iter=4)])
def test_sklearn_compatible(estimator, check):
    check(estimator)


# ---------------------------------------------------------------------------------------------
# the functional pieces


def random_theta(prior, seed, n_components):
    """Non-trivial prior parameters of the right structure."""
    rng = np.random.default_rng(seed)
    theta = prior.init_params(jax.random.key(seed), n_components, jnp.float64)
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a + 0.4 * rng.standard_normal(a.shape)), theta)


@pytest.mark.parametrize("base", list(SCIPY_BASE))
def test_segment_conditional_log_prob_matches_scipy(base):
    prior = priors.segment_conditional(base, n_segments=4)
    theta = random_theta(prior, 0, 3)
    S = np.random.default_rng(1).standard_normal((20, 3))
    u = np.arange(20) % 4
    scale, loc = np.exp(np.asarray(theta["log_scale"]))[u], np.asarray(theta["loc"])[u]
    expected = SCIPY_BASE[base].logpdf((S - loc) / scale).sum(axis=1) - np.log(scale).sum(axis=1)
    np.testing.assert_allclose(prior.conditional_log_prob(theta, jnp.asarray(S), jnp.asarray(u)), expected,
                               rtol=1e-12)


def test_mlp_conditional_is_a_normalized_density_for_every_u():
    prior = priors.mlp_conditional("logistic", n_aux=2, hidden_units=5)
    theta = random_theta(prior, 2, 1)
    s = np.linspace(-60, 60, 20001)
    for u in [(0.0, 0.0), (1.5, -2.0), (-3.0, 0.7)]:
        U = jnp.tile(jnp.asarray(u)[None, :], (s.size, 1))
        density = np.exp(np.asarray(prior.conditional_log_prob(theta, jnp.asarray(s)[:, None], U)))
        assert trapezoid(density, s) == pytest.approx(1.0, abs=1e-6)


def test_conditional_sample_follows_the_conditional_density():
    prior = priors.segment_conditional("hypsecant", n_segments=3)
    theta = random_theta(prior, 3, 2)
    u = jnp.full((30000,), 2, jnp.int32)
    draws = np.asarray(prior.conditional_sample(theta, jax.random.key(0), u, 2, jnp.float64))
    scale, loc = np.exp(np.asarray(theta["log_scale"][2])), np.asarray(theta["loc"][2])
    for i in range(2):
        reference = stats.hypsecant(loc=loc[i], scale=scale[i] * 2 / np.pi)
        assert stats.kstest(draws[:, i], reference.cdf).pvalue > 1e-3


def test_conditional_prior_needs_u():
    prior = priors.segment_conditional("laplace", n_segments=2)
    with pytest.raises(ValueError, match="needs the auxiliary variable"):
        prior.conditional_log_prob(prior.init_params(jax.random.key(0), 2), jnp.zeros((3, 2)))


def brute_sources_and_log_det(params, X, act):
    """Sources from a per-sample network and ``slogdet`` of its ``jax.jacfwd`` per row (written
    from docs/theory.rst, 'The model')."""

    def g(x):
        z = x
        for k, (W, b) in enumerate(params):
            y = W @ z + b
            z = act.fn(y) if k < len(params) - 1 else y
        return y

    return jax.vmap(g)(X), jnp.linalg.slogdet(jax.vmap(jax.jacfwd(g))(X))[1]


def brute_conditional_nll(params, theta, X, u, act, prior):
    """Mean NLL from the per-sample network, jax.jacfwd and slogdet."""
    S, log_det = brute_sources_and_log_det(params, X, act)
    return -jnp.mean(prior.conditional_log_prob(theta, S, u) + log_det)


# its gradient with respect to the layers and the prior's parameters (jitted: faster to compile
# once than to run op by op)
brute_conditional_grad = jax.jit(jax.grad(brute_conditional_nll, argnums=(0, 1)), static_argnums=(4, 5))


@jax.jit
def brute_flow(params, X):
    """Sources and ``slogdet`` of ``jax.jacfwd`` per row, for a tanh_linear network."""
    return brute_sources_and_log_det(params, X, nica.activations.tanh_linear())


def mixture_log_density(theta, z):
    """``log Σ_k π_k f((z − μ_k)/σ_k)/σ_k`` per entry of ``z`` (rows × components), from
    scipy's logistic and the formula of priors.LogisticMixture."""
    log_w, loc, scale = log_softmax(theta["logits"], axis=-1), theta["loc"], np.exp(theta["log_scale"])
    terms = log_w + stats.logistic.logpdf((z[..., None] - loc) / scale) - np.log(scale)
    return logsumexp(terms, axis=-1)


def brute_log_prior(kind, theta, S, u):
    """``Σ_i log p_i(s_i | u)`` per row in NumPy and SciPy, from the priors' docstrings alone."""
    theta = jax.tree_util.tree_map(np.asarray, theta)
    S, u = np.asarray(S), np.asarray(u) if u is not None else None
    if kind == "mixture":
        return mixture_log_density(theta, S).sum(axis=1)
    if kind == "mlp":  # one tanh hidden layer gives [log-scales, locations]
        out = np.tanh(u @ theta["W1"] + theta["b1"]) @ theta["W2"] + theta["b2"]
        log_scale, loc = np.split(out, 2, axis=1)
    else:
        log_scale, loc = theta["log_scale"][u], theta["loc"][u]
    z = (S - loc) / np.exp(log_scale)
    log_base = mixture_log_density(theta["base"], z) if kind == "segment-mixture" else SCIPY_BASE[
        {"segment": "laplace", "mlp": "gaussian"}[kind]].logpdf(z)
    return (log_base - log_scale).sum(axis=1)


KINDS = ["segment", "mlp", "mixture", "segment-mixture"]


def conditional_problem(kind, n_layers, seed=0, n=7, d=3):
    """Random layers, data, a prior of the given kind, random parameters for it and ``u``."""
    rng = np.random.default_rng(seed + n_layers)
    params = tuple(
        nica.Layer(jnp.asarray(np.eye(d) + 0.4 * rng.standard_normal((d, d))), jnp.asarray(0.5 * rng.standard_normal(d)))
        for _ in range(n_layers)
    )
    X = jnp.asarray(rng.laplace(size=(n, d)))
    u = jnp.asarray(np.arange(n) % 3)
    if kind == "segment":
        prior = priors.segment_conditional("laplace", 3)
    elif kind == "segment-mixture":
        prior = priors.segment_conditional(priors.logistic_mixture(2), 3)
    elif kind == "mlp":
        prior, u = priors.mlp_conditional("gaussian", n_aux=2, hidden_units=4), jnp.asarray(rng.standard_normal((n, 2)))
    else:
        prior, u = priors.logistic_mixture(3), None
    return params, X, prior, random_theta(prior, 5 + seed, d), u


ALL_GRADIENTS = ("relative", "equivariant", "euclidean", "autodiff")


@pytest.mark.parametrize("kind, n_layers, methods", [
    ("segment", 2, ALL_GRADIENTS), ("mlp", 1, ALL_GRADIENTS),
    ("mixture", 1, ("relative",)), ("segment-mixture", 1, ("relative", "euclidean")),  # fewer compilations
])
def test_log_likelihood_and_every_gradient_with_prior_params_match_autodiff(kind, n_layers, methods):
    """The public core with ``prior_params`` (and ``u``): the log-likelihood against a NumPy/SciPy
    prior term plus ``slogdet`` of ``jax.jacfwd``; the relative gradient against ``[G, g] W̄ᵀW̄``,
    the equivariant one against ``[G, g] W̄ᵀ``, the ordinary ones against ``[G, g]``, and every
    prior gradient against ``jax.grad`` of the brute-force likelihood."""
    params, X, prior, theta, u = conditional_problem(kind, n_layers)
    act = nica.activations.tanh_linear()
    S, log_det = brute_flow(params, X)
    ll = nica.log_likelihood(params, X, activation=act, prior=prior, prior_params=theta, u=u)
    np.testing.assert_allclose(ll, brute_log_prior(kind, theta, S, u) + np.asarray(log_det), rtol=1e-10)

    G_layers, G_theta = brute_conditional_grad(params, theta, X, u, act, prior)
    expected = {
        "relative": relative_from_definition(params, G_layers),
        "equivariant": algebra_from_definition(params, G_layers),
        "euclidean": list(G_layers),
        "autodiff": list(G_layers),
    }
    for method in methods:
        layers, fn = expected[method], getattr(nica, f"{method}_gradient")
        got, got_theta = fn(params, X, activation=act, prior=prior, prior_params=theta, u=u)
        assert_layers_close(got, layers, rtol=1e-8, atol=1e-11)
        assert jax.tree_util.tree_structure(got_theta) == jax.tree_util.tree_structure(theta)
        jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-12), got_theta, G_theta)


def test_a_fixed_prior_with_empty_prior_params_gives_the_pair():
    params, X, _, _, _ = conditional_problem("segment", 2)
    plain = nica.relative_gradient(params, X, prior="hypsecant")
    layers, prior_grads = nica.relative_gradient(params, X, prior="hypsecant", prior_params=())
    assert prior_grads == ()
    assert_layers_close(layers, plain, rtol=0, atol=0)
    np.testing.assert_array_equal(nica.log_likelihood(params, X, prior="hypsecant", prior_params=()),
                                  nica.log_likelihood(params, X, prior="hypsecant"))


def transport_by_hand(updates, params):
    """``[U, u] W̄`` with ``W̄ = [[W, b], [0, 1]]``, per layer, as a block product."""
    out = []
    for (U, u), (W, b) in zip(updates, params):
        d = W.shape[0]
        Wbar = np.block([[np.asarray(W), np.asarray(b)[:, None]], [np.zeros((1, d)), np.ones((1, 1))]])
        M = np.concatenate([np.asarray(U), np.asarray(u)[:, None]], axis=1) @ Wbar
        out.append(nica.Layer(jnp.asarray(M[:, :d]), jnp.asarray(M[:, d])))
    return tuple(out)


@pytest.mark.parametrize("kind, gradient", [("segment", "relative"), ("segment", "equivariant"),
                                            ("segment", "euclidean"), ("mlp", "relative")])
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

    G_layers, G_theta = brute_conditional_grad(params, theta, X, u, act, prior)
    direction = {"relative": relative_from_definition, "equivariant": algebra_from_definition,
                 "euclidean": lambda p, G: list(G)}[gradient](params, G_layers)
    direction = tuple(nica.Layer(jnp.asarray(W), jnp.asarray(b)) for W, b in direction)
    updates, opt_state = opt.update((direction, G_theta), opt.init((params, theta)), (params, theta))
    if gradient == "equivariant":
        updates = (transport_by_hand(updates[0], params), updates[1])
    expected_params, expected_theta = optax.apply_updates((params, theta), updates)

    assert_layers_close(new_state.params, expected_params, rtol=1e-8, atol=1e-11)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-12),
                           new_state.prior_params, expected_theta)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-12),
                           new_state.opt_state, opt_state)
    log_det_w = sum(jnp.linalg.slogdet(W)[1] for W, _ in params)  # the loss leaves out −Σ log|det W|
    assert float(loss) == pytest.approx(float(brute_conditional_nll(params, theta, X, u, act, prior) + log_det_w),
                                        rel=1e-10)


BASES = ["gaussian", "laplace", "logistic", "hypsecant", "logistic_mixture"]


@settings(max_examples=8, deadline=None, derandomize=True)
@given(n_segments=st.sampled_from([1, 3]), base=st.sampled_from(BASES), learn_location=st.booleans(),
       seed=st.integers(0, 2**16))
def test_marginal_log_prob_is_the_mixture_over_segments(n_segments, base, learn_location, seed):
    """``marginal_log_prob`` against a loop over the segments in NumPy and SciPy:
    ``log Σ_u π_u Π_i p_base((s_i − μ_ui)/σ_ui)/σ_ui``."""
    n_samples, n_components = 5, 2  # few shapes: each new shape compiles anew
    prior = priors.segment_conditional(base, n_segments, learn_location=learn_location)
    theta = random_theta(prior, seed, n_components)
    rng = np.random.default_rng(seed)
    S = 2.0 * rng.standard_normal((n_samples, n_components))
    log_weights = np.log(rng.dirichlet(np.ones(n_segments)))
    th = jax.tree_util.tree_map(np.asarray, theta)
    per_segment = []
    for k in range(n_segments):
        log_scale = th["log_scale"][k]
        z = (S - (th["loc"][k] if learn_location else 0.0)) / np.exp(log_scale)
        log_base = mixture_log_density(th["base"], z) if base == "logistic_mixture" else SCIPY_BASE[base].logpdf(z)
        per_segment.append((log_base - log_scale).sum(axis=1))
    per_segment = np.stack(per_segment)
    expected = logsumexp(per_segment + log_weights[:, None], axis=0)
    np.testing.assert_allclose(prior.marginal_log_prob(theta, jnp.asarray(S), jnp.asarray(log_weights)), expected,
                               rtol=1e-10)
    equal_weights = logsumexp(per_segment, axis=0) - np.log(n_segments)
    np.testing.assert_allclose(prior.marginal_log_prob(theta, jnp.asarray(S)), equal_weights, rtol=1e-10)


def test_the_marginal_likelihood_from_one_forward_pass():
    """``marginal_log_prob`` plus ``forward_and_log_det``'s log-determinant is the mixture of the
    conditional log-likelihoods, ``log Σ_u π_u p(x | u)``, each from ``log_likelihood``."""
    params, X, prior, theta, _ = conditional_problem("segment", 2)
    log_weights = np.log([0.2, 0.5, 0.3])
    S, log_det = nica.forward_and_log_det(params, X, activation="tanh_linear")
    conditional = [nica.log_likelihood(params, X, activation="tanh_linear", prior=prior, prior_params=theta,
                                       u=jnp.full(X.shape[0], k)) for k in range(3)]
    expected = logsumexp(np.stack(conditional) + log_weights[:, None], axis=0)
    np.testing.assert_allclose(prior.marginal_log_prob(theta, S, log_weights) + log_det, expected, rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# the estimator


@pytest.fixture(scope="module")
def segmented():
    return make_segmented_mixture(n_segments=8, n_per_segment=250, n_components=2, n_layers=2, random_state=0)


def small_model(**kw):
    defaults = dict(n_layers=2, max_iter=15, learning_rate=3e-3, batch_size=128, random_state=0)
    defaults.update(kw)
    return nica.ConditionalNonlinearICA(**defaults)


@pytest.fixture(scope="module")
def shuffled():
    """240 rows of four segments, shuffled so that every chunk of 80 holds every segment."""
    data = make_segmented_mixture(n_segments=4, n_per_segment=60, n_components=2, n_layers=2, random_state=2)
    order = np.random.default_rng(0).permutation(240)
    return data.X_train[order], data.u_train[order], data.X_test, data.u_test


FAST = dict(n_layers=2, batch_size=40, early_stopping=False, random_state=0)  # one compiled epoch for all


def leaves(model):
    return [np.array(a) for a in jax.tree_util.tree_leaves((model.params_, model.prior_params_))]


def test_partial_fit_is_one_epoch_per_chunk_and_fixes_the_labels_on_the_first_call(shuffled):
    X, u, X_test, u_test = shuffled
    chunks = np.array_split(np.arange(240), 3)
    model = nica.ConditionalNonlinearICA(**FAST).partial_fit(X[chunks[0]], u[chunks[0]])
    # the first call is one epoch of a fresh fit on that chunk
    one_epoch = nica.ConditionalNonlinearICA(**FAST, max_iter=1).fit(X[chunks[0]], u[chunks[0]])
    for a, b in zip(leaves(model), leaves(one_epoch)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(model.classes_, [0, 1, 2, 3])
    weights = np.log(np.bincount(u[chunks[0]]) / 80)
    start_score = model.score(X_test, u_test)
    for _ in range(4):
        for rows in chunks[1:] + chunks[:1]:
            before = leaves(model)
            model.partial_fit(X[rows], u[rows])
            assert not np.allclose(before[0], leaves(model)[0])
    assert model.n_iter_ == 13 and len(model.loss_curve_) == 13
    np.testing.assert_allclose(model.segment_log_weights_, weights)  # still the first chunk's
    assert model.score(X_test, u_test) > start_score + 0.1
    before = leaves(model)
    with pytest.raises(ValueError, match=r"segment label\(s\) not seen during fit: \[7\]"):
        model.partial_fit(X[:5], np.array([0, 1, 7, 2, 3]))
    for a, b in zip(before, leaves(model)):
        np.testing.assert_array_equal(a, b)


def test_warm_start_continues_from_the_fitted_state(shuffled):
    """With a vanishing rate, a warm-started fit stays at the fitted parameters, while a cold fit
    goes back to the initialisation (far from them): the warm fit did start from the state."""
    X, u, _, _ = shuffled
    model = nica.ConditionalNonlinearICA(**FAST, max_iter=3, warm_start=True).fit(X, u)
    fitted = leaves(model)
    model.set_params(learning_rate=1e-12)
    model.fit(X, u)
    assert model.n_iter_ == 6 and len(model.loss_curve_) == 6
    for a, b in zip(fitted, leaves(model)):
        np.testing.assert_allclose(b, a, atol=1e-8)
    cold = clone(model).set_params(warm_start=False).fit(X, u)
    assert cold.n_iter_ == 3
    assert max(np.max(np.abs(a - b)) for a, b in zip(fitted, leaves(cold))) > 1e-3


@pytest.mark.parametrize("whiten", ["unit-variance", False])
def test_inverse_transform_inverts_transform(shuffled, whiten):
    X, u, X_test, _ = shuffled
    model = nica.ConditionalNonlinearICA(**FAST, max_iter=2, whiten=whiten, activation="tanh_linear").fit(X, u)
    S = model.transform(X_test)
    assert np.max(np.abs(S - X_test)) > 0.1  # not the identity
    np.testing.assert_allclose(model.inverse_transform(S), X_test, rtol=1e-9, atol=1e-9)


def test_explicit_aux_type_overrides_the_inference(shuffled):
    """Relabelled segments and shifted continuous values give the same model: the labels'
    values do not matter to a discrete u, a shift is standardised away from a continuous one."""
    X, u, _, _ = shuffled
    halves = u * 0.5 + 0.25  # floats that "auto" reads as continuous
    auto = nica.ConditionalNonlinearICA(**FAST, max_iter=1).fit(X, halves)
    assert auto.aux_type_ == "continuous"
    discrete = nica.ConditionalNonlinearICA(**FAST, max_iter=1, aux_type="discrete").fit(X, halves)
    assert discrete.aux_type_ == "discrete" and isinstance(discrete.prior_, priors.SegmentConditional)
    np.testing.assert_array_equal(discrete.classes_, [0.25, 0.75, 1.25, 1.75])
    integer_labels = nica.ConditionalNonlinearICA(**FAST, max_iter=1).fit(X, u)
    assert integer_labels.aux_type_ == "discrete"
    for a, b in zip(leaves(discrete), leaves(integer_labels)):
        np.testing.assert_array_equal(a, b)

    continuous = nica.ConditionalNonlinearICA(**FAST, max_iter=1, aux_type="continuous").fit(X, u)
    assert continuous.aux_type_ == "continuous" and isinstance(continuous.prior_, priors.MLPConditional)
    shifted = nica.ConditionalNonlinearICA(**FAST, max_iter=1).fit(X, u + 0.5)  # floats: continuous
    assert shifted.aux_type_ == "continuous"
    np.testing.assert_allclose(continuous.aux_mean_ + 0.5, shifted.aux_mean_)
    for a, b in zip(leaves(continuous), leaves(shifted)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(continuous.score_samples(X[:5], u[:5]), shifted.score_samples(X[:5], u[:5] + 0.5),
                               rtol=1e-12)


def test_params_are_the_whole_model_for_the_functional_core(segmented):
    """The conditional model's params_, prior_ and prior_params_ in the core's log_likelihood
    (u as segment codes) give score_samples(X, y); the core's segment mixture on the sources
    of one forward pass gives the marginal score_samples(X) (float64, 1e-8)."""
    model = small_model(whiten="unit-variance").fit(segmented.X_train, segmented.u_train)
    X, y = segmented.X_test[::10], segmented.u_test[::10]
    u = np.searchsorted(model.classes_, y).astype(np.int32)
    with jax.enable_x64(True):
        ll = nica.log_likelihood(model.params_, jnp.asarray(X), activation=model.activation_,
                                 prior=model.prior_, prior_params=model.prior_params_, u=jnp.asarray(u))
        S, log_det = nica.forward_and_log_det(model.params_, jnp.asarray(X), activation=model.activation_)
        marginal = model.prior_.marginal_log_prob(model.prior_params_, S, model.segment_log_weights_) + log_det
    np.testing.assert_allclose(ll, model.score_samples(X, y), rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(marginal, model.score_samples(X), rtol=1e-8, atol=1e-8)


def test_score_samples_matches_brute_force(segmented):
    model = small_model(whiten="unit-variance").fit(segmented.X_train, segmented.u_train)
    X, u = segmented.X_test[::50], segmented.u_test[::50]
    theta = jax.tree_util.tree_map(jnp.asarray, model.prior_params_)

    def whole_map(x):
        z = model.whitening_ @ (x - model.mean_)
        for k, (W, b) in enumerate(model.network_params_):
            y = W @ z + b
            z = model.activation_.fn(y) if k < len(model.network_params_) - 1 else y
        return z

    with jax.enable_x64(True):
        S = jax.vmap(whole_map)(jnp.asarray(X))
        log_det = jnp.linalg.slogdet(jax.vmap(jax.jacfwd(whole_map))(jnp.asarray(X)))[1]
    scale = np.exp(np.asarray(theta["log_scale"]))[u]
    loc = np.asarray(theta["loc"])[u]
    log_prior = SCIPY_BASE["laplace"].logpdf((np.asarray(S) - loc) / scale).sum(1) - np.log(scale).sum(1)
    np.testing.assert_allclose(model.score_samples(X, u), log_prior + np.asarray(log_det), rtol=1e-10)


def test_marginal_score_is_the_mixture_over_segments(segmented):
    model = small_model().fit(segmented.X_train, segmented.u_train)
    X = segmented.X_test[:40]
    per_segment = np.stack([model.score_samples(X, np.full(40, k)) for k in model.classes_])
    weights = np.bincount(segmented.u_train) / segmented.u_train.size
    expected = logsumexp(per_segment + np.log(weights)[:, None], axis=0)
    np.testing.assert_allclose(model.score_samples(X), expected, rtol=1e-12)


def test_conditional_density_is_normalized_for_each_segment():
    rng = np.random.default_rng(0)
    u = np.repeat(np.arange(3), 300)
    S = rng.laplace(size=(900, 2)) * np.array([0.5, 1.0, 2.0])[u][:, None]
    X = S @ np.array([[1.0, 0.4], [0.2, 1.0]]).T + 3.0
    model = small_model(max_iter=20).fit(X, u)
    g = np.linspace(-40, 40, 700)
    grid = np.stack(np.meshgrid(g, g), axis=-1).reshape(-1, 2)
    for k in range(3):
        density = np.exp(model.score_samples(grid, np.full(grid.shape[0], k))).reshape(700, 700)
        assert trapezoid(trapezoid(density, g, axis=1), g) == pytest.approx(1.0, abs=0.02)


def test_learned_segment_scales_track_the_true_ones():
    data = make_segmented_mixture(n_segments=20, n_per_segment=500, n_components=3, n_layers=1, random_state=3)
    model = small_model(n_layers=1, max_iter=150, learning_rate=1e-2).fit(data.X_train, data.u_train)
    S_est = model.transform(data.X_test)
    C = np.abs(np.corrcoef(data.S_test.T, S_est.T)[:3, 3:])
    rows, cols = linear_sum_assignment(-C)
    assert C[rows, cols].mean() > 0.97
    learned = np.exp(model.prior_params_["log_scale"])  # (n_segments, n_components), source units
    for i, j in zip(rows, cols):
        r = np.corrcoef(np.log(data.scales[:, i]), np.log(learned[:, j]))[0, 1]
        assert r > 0.95


def test_conditional_model_unmixes_a_nonlinear_mixture_better_than_fastica():
    from sklearn.decomposition import FastICA

    data = make_segmented_mixture(n_segments=20, n_per_segment=500, n_components=3, n_layers=2, random_state=1)
    model = small_model(n_layers=2, max_iter=150, learning_rate=5e-3).fit(data.X_train, data.u_train)
    mcc = mean_corr_coef(data.S_test, model.transform(data.X_test))
    fast = mean_corr_coef(data.S_test, FastICA(random_state=0).fit(data.X_train).transform(data.X_test))
    assert mcc > 0.85 and mcc > fast + 0.05


def test_string_labels_and_unseen_labels(segmented):
    labels = np.array([f"seg{k}" for k in segmented.u_train])
    model = small_model(max_iter=3).fit(segmented.X_train, labels)
    assert model.aux_type_ == "discrete" and list(model.classes_[:2]) == ["seg0", "seg1"]
    ll = model.score_samples(segmented.X_test[:5], [f"seg{k}" for k in segmented.u_test[:5]])
    same = small_model(max_iter=3).fit(segmented.X_train, segmented.u_train)
    np.testing.assert_allclose(ll, same.score_samples(segmented.X_test[:5], segmented.u_test[:5]))
    with pytest.raises(ValueError, match=r"segment label\(s\) not seen during fit: \['seg99'\]"):
        model.score(segmented.X_test[:3], ["seg0", "seg99", "seg1"])
    with pytest.raises(ValueError, match="one entry per sample"):
        model.score_samples(segmented.X_test[:3], ["seg0"])


def test_y_is_required_to_fit():
    with pytest.raises(ValueError, match="requires y to be passed"):
        small_model().fit(np.random.default_rng(0).normal(size=(20, 2)), None)
    with pytest.raises(TypeError):
        small_model().fit(np.random.default_rng(0).normal(size=(20, 2)))


@pytest.mark.parametrize("n_aux", [1, 2])
def test_continuous_auxiliary_variable(n_aux):
    rng = np.random.default_rng(n_aux)
    u = rng.uniform(-1, 1, size=(1500, n_aux))
    scale = np.exp(1.2 * u[:, :1])  # the sources' scale varies smoothly with u
    S = rng.laplace(size=(1500, 2)) * scale
    X = S @ np.array([[1.0, 0.5], [-0.3, 1.0]]).T
    y = u.ravel() if n_aux == 1 else u
    model = small_model(n_layers=1, max_iter=60, learning_rate=1e-2).fit(X, y)
    assert model.aux_type_ == "continuous"
    factorized = nica.NonlinearICA(n_layers=1, max_iter=60, learning_rate=1e-2, random_state=0).fit(X)
    assert model.score(X, y) > factorized.score(X) + 0.1  # u carries information about scale
    with pytest.raises(ValueError, match="y is required"):
        model.score_samples(X)
    draws = model.sample(7, y=y[0] if n_aux == 1 else u[0], random_state=0)
    assert draws.shape == (7, 2)


def test_sample_given_a_segment(segmented):
    model = small_model(max_iter=10).fit(segmented.X_train, segmented.u_train)
    draws = model.sample(20000, y=3, random_state=0)
    S = model.transform(draws)
    scale = np.exp(model.prior_params_["log_scale"][3])
    loc = model.prior_params_["loc"][3]
    for i in range(2):
        reference = stats.laplace(loc=loc[i], scale=scale[i] / np.sqrt(2))
        assert stats.kstest(S[:, i], reference.cdf).pvalue > 1e-3
    assert model.sample(5, random_state=0).shape == (5, 2)
    assert model.sample(y=[0, 1, 2], random_state=0).shape == (3, 2)
    with pytest.raises(NotFittedError):
        small_model().sample(3, y=0)


def test_clone_and_grid_search_with_aux(segmented):
    cv = KFold(2, shuffle=True, random_state=0)  # every fold must see every segment
    search = GridSearchCV(small_model(max_iter=3), {"learn_location": [True, False]}, cv=cv)
    search.fit(segmented.X_train, segmented.u_train)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert clone(search.best_estimator_).get_params()["max_iter"] == 3


@pytest.mark.parametrize("params, match", [({"aux_type": "ordinal"}, "aux_type must be one of"),
                                           ({"hidden_units": 0}, "hidden_units must be an integer")])
def test_bad_hyperparameters(segmented, params, match):
    with pytest.raises(ValueError, match=match):
        small_model(**params).fit(segmented.X_train, segmented.u_train)
