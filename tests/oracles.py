"""Independent oracles shared by the tests of the functional core (``test_network``,
``test_gradients``, ``test_objectives``, ``test_training``, ``test_transforms``,
``test_conditional_priors``).

Everything here is written from the equations of docs/theory.rst alone ('The model', 'The
relative gradient', 'The equivariant form'): a per-sample network, its full Jacobian from
``jax.jacfwd`` and ``slogdet``, and the maps ``[G, g] ↦ [G, g] W̄ᵀW̄`` and ``[G, g] ↦ [G, g] W̄ᵀ``
written with the augmented matrix ``W̄ = [[W, b], [0, 1]]``.  Nothing here calls nica's
likelihood, log-derivatives or gradients.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats
from scipy.special import log_softmax, logsumexp

import nica
from nica import priors

D = 3


def random_params(seed, n_features=D, n_layers=2, bias=True):
    """Well-conditioned but non-orthogonal weights and clearly non-zero biases (float64)."""
    rng = np.random.default_rng(seed)
    layers = []
    for _ in range(n_layers):
        W = np.eye(n_features) + 0.4 * rng.standard_normal((n_features, n_features))
        b = 0.7 * rng.standard_normal(n_features) if bias else None
        layers.append(nica.Layer(jnp.asarray(W), None if b is None else jnp.asarray(b)))
    return tuple(layers)


def epoch_permutation(key, n):
    """The documented shuffle of an epoch over ``n`` data rows: NumPy's default generator
    seeded with the key's bits, ``permutation(n)``."""
    return np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist()).permutation(n)


def random_data(seed, n_samples=5, n_features=D):
    """Laplace rows (float64)."""
    return jnp.asarray(np.random.default_rng(seed + 100).laplace(size=(n_samples, n_features)))


def random_theta(prior, seed, n_components):
    """Non-trivial prior parameters of the right structure (float64): the prior's initial ones
    plus Gaussian noise, so that no parameter sits at a special value."""
    rng = np.random.default_rng(seed)
    theta = prior.init_params(jax.random.key(seed), n_components, jnp.float64)
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a + 0.4 * rng.standard_normal(a.shape)), theta)


def brute_network(params, x, act):
    """``s = g(x)`` for one sample: ``y_k = W_k z_{k−1} + b_k``, ``z_k = σ(y_k)`` for ``k < L``."""
    z = x
    for k, (W, b) in enumerate(params):
        y = W @ z if b is None else W @ z + b
        if k < len(params) - 1:
            z = act.fn(y)
    return y


def brute_sources_and_log_det(params, X, act):
    """Sources from the per-sample network and ``slogdet`` of its ``jax.jacfwd`` per row."""
    g = partial(brute_network, params, act=act)
    return jax.vmap(g)(X), jnp.linalg.slogdet(jax.vmap(jax.jacfwd(g))(X))[1]


@partial(jax.jit, static_argnames="act")
def brute_flow(params, X, act):
    """``(S, (sign, log|det|))`` per row from the brute-force network and its Jacobian."""
    g = partial(brute_network, params, act=act)
    return jax.vmap(g)(X), jnp.linalg.slogdet(jax.vmap(jax.jacfwd(g))(X))


def brute_log_likelihood(params, X, act, prior, theta=(), u=None):
    """``log p(x | u)`` per row: the prior's ``conditional_log_prob`` of the brute-force sources
    plus ``slogdet`` of the brute-force Jacobian."""
    S, log_det = brute_sources_and_log_det(params, X, act)
    return prior.conditional_log_prob(theta, S, u) + log_det


def brute_nll(params, X, act, prior, theta=(), u=None):
    """Mean negative log-likelihood, from :func:`brute_log_likelihood`."""
    return -jnp.mean(brute_log_likelihood(params, X, act, prior, theta, u))


# the gradient with respect to the layers and the prior's parameters (jitted: one compilation
# per shape, faster than running op by op)
brute_nll_grad = jax.jit(jax.grad(brute_nll, argnums=(0, 4)), static_argnums=(2, 3))


def augmented(W, b):
    """``W̄ = [[W, b], [0, 1]]`` (``b = 0`` for a layer without bias)."""
    d = W.shape[0]
    b = jnp.zeros(d) if b is None else b
    return jnp.zeros((d + 1, d + 1)).at[:d, :d].set(W).at[:d, d].set(b).at[d, d].set(1.0)


def relative_from_definition(params, G_g):
    """``[ΔW, Δb] = [G, g] W̄ᵀ W̄`` per layer (paper appendix F); ``G Wᵀ W`` without bias."""
    out = []
    for (W, b), (G, g) in zip(params, G_g):
        d = W.shape[0]
        if b is None:
            out.append((G @ W.T @ W, None))
            continue
        Wbar = augmented(W, b)
        R = jnp.concatenate([G, g[:, None]], axis=1) @ Wbar.T @ Wbar  # (d, d + 1)
        out.append((R[:, :d], R[:, d]))
    return out


def algebra_from_definition(params, G_g):
    """``H̄ = [G, g] W̄ᵀ`` per layer, the relative gradient in the group's coordinates."""
    out = []
    for (W, b), (G, g) in zip(params, G_g):
        d = W.shape[0]
        if b is None:
            out.append((G @ W.T, None))
            continue
        H = jnp.concatenate([G, g[:, None]], axis=1) @ augmented(W, b).T  # (d, d + 1)
        out.append((H[:, :d], H[:, d]))
    return out


def euclidean_from_definition(params, G_g):
    """``[G, g]`` itself (the ordinary gradient)."""
    return [(G, g) for G, g in G_g]


# What each built-in gradient form returns, as a map of the Euclidean gradient ``[G, g]``.
DEFINITIONS = {
    "relative": relative_from_definition,
    "equivariant": algebra_from_definition,
    "euclidean": euclidean_from_definition,
    "autodiff": euclidean_from_definition,
}


def transport_by_hand(updates, params):
    """``[U, u] W̄`` per layer, as a NumPy block product."""
    out = []
    for (U, u), (W, b) in zip(updates, params):
        d = W.shape[0]
        Wbar = np.block([[np.asarray(W), np.asarray(b)[:, None]], [np.zeros((1, d)), np.ones((1, 1))]])
        M = np.concatenate([np.asarray(U), np.asarray(u)[:, None]], axis=1) @ Wbar
        out.append(nica.Layer(jnp.asarray(M[:, :d]), jnp.asarray(M[:, d])))
    return tuple(out)


def assert_layers_close(got, expected, rtol=1e-9, atol=1e-10):
    """Layer by layer, ``W`` and ``b`` (``None`` where expected)."""
    assert len(got) == len(expected)
    for (gW, gb), (eW, eb) in zip(got, expected):
        np.testing.assert_allclose(gW, eW, rtol=rtol, atol=atol)
        if eb is None:
            assert gb is None
        else:
            np.testing.assert_allclose(gb, eb, rtol=rtol, atol=atol)


def leaves(tree):
    """The leaves of a pytree as NumPy copies (safe to keep across donating calls)."""
    return [np.array(a) for a in jax.tree_util.tree_leaves(tree)]


def mixture_log_density(theta, z):
    """``log Σ_k π_k f((z − μ_k)/σ_k)/σ_k`` per entry of ``z`` (rows × components): the formula
    of ``priors.LogisticMixture`` with SciPy's logistic density."""
    log_w, loc, scale = log_softmax(theta["logits"], axis=-1), theta["loc"], np.exp(theta["log_scale"])
    terms = log_w + stats.logistic.logpdf((z[..., None] - loc) / scale) - np.log(scale)
    return logsumexp(terms, axis=-1)


def conditional_problem(kind, n_layers, seed=0, n=7, d=3):
    """Random layers, data, a prior of the given kind (``"segment"``, ``"segment-mixture"``,
    ``"mlp"``, ``"mixture"``), random parameters for it and ``u`` (float64)."""
    rng = np.random.default_rng(seed + n_layers)
    params = tuple(
        nica.Layer(
            jnp.asarray(np.eye(d) + 0.4 * rng.standard_normal((d, d))), jnp.asarray(0.5 * rng.standard_normal(d))
        )
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


def prior_argument_cases(segment, theta, good):
    """The prior arguments that do not fit, as ``(kwargs, error, message)``, for a function of the
    core called on 8 float32 rows of 3 features (``{fn}`` in a message: the function's name);
    shared by tests/test_network.py and tests/test_gradients.py."""
    return [
        (
            dict(prior=segment, prior_params=theta),
            ValueError,
            r"pass the auxiliary variable u \(one entry per row of X\) to {fn}",
        ),
        (dict(u=good), ValueError, r"u is only used by a conditional prior; prior=Laplace"),
        (
            dict(prior=segment, prior_params=theta, u=good[:3]),
            ValueError,
            r"u must have one entry per row of X \(8\); got shape \(3,\)",
        ),
        (
            dict(prior=segment, prior_params=theta, u=good + 1),
            ValueError,
            r"u holds segment ids from 1 to 4, outside \[0, 4\)",
        ),
        (
            dict(prior=segment, prior_params=theta, u=good.astype(jnp.float32)),
            ValueError,
            "1-D array of integer segment ids",
        ),
        (
            dict(prior=segment, prior_params=segment.init_params(jax.random.key(0), 2, jnp.float32), u=good),
            ValueError,
            r"prior_params do not match prior=SegmentConditional for 3 features: "
            r"expected \{{'loc': \(4, 3\), 'log_scale': \(4, 3\)\}}",
        ),
        (
            dict(prior_params=theta),
            ValueError,
            r"prior_params do not match prior=Laplace for 3 features: expected \(\)",
        ),
        (
            dict(prior=segment, prior_params=jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), theta), u=good),
            TypeError,
            "prior_params have dtype float64 but the network's parameters are float32",
        ),
        (
            dict(prior=segment, prior_params=(), u=good),
            ValueError,
            r"prior_params do not match prior=SegmentConditional .*got \(\)",
        ),
    ]


def linear_problem(kind, n=6000, d=4, seed=0):
    """A known linear generator: ``X = S Aᵀ + c`` with ``n`` rows of ``d`` independent sources of
    one ``kind`` (``"uniform"``, ``"bimodal"``, else Laplace) and ``A`` of condition number 100;
    returns the first half of ``X`` (training), the second half and its sources, and ``A``."""
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        S = rng.uniform(-1, 1, size=(n, d))
    elif kind == "bimodal":
        S = rng.choice([-1.0, 1.0], size=(n, d)) + 0.3 * rng.normal(size=(n, d))
    else:
        S = rng.laplace(size=(n, d))
    U, _ = np.linalg.qr(rng.normal(size=(d, d)))
    V, _ = np.linalg.qr(rng.normal(size=(d, d)))
    A = U @ np.diag(np.logspace(0, -2, d)) @ V.T  # condition number 100
    X = S @ A.T + rng.normal(size=d)
    half = n // 2
    return X[:half], X[half:], S[half:], A
