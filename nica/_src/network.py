"""The invertible MLP and its exact likelihood (docs/theory.rst, 'The model'; paper eqs. 2–4 and 9).

Conventions, fixed once for all of nica:

* rows are samples: ``X`` has shape ``(n_samples, n_features)``, ``D = n_features``;
* ``forward`` maps observations to sources, ``s = g(x)``;
* layer ``k`` acts as ``y_k = W_k z_{k−1} + b_k`` exactly as in the paper (column vectors), so a
  batch computes ``Y = Z @ W.T + b``; ``z_k = σ(y_k)`` for ``k < L`` and ``s = y_L``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike, DTypeLike

from nica._src import activations as _activations
from nica._src import priors as _priors
from nica._src._checks import check_bool, check_int
from nica._src.activations import Activation
from nica._src.priors import Prior

__all__ = [
    "Layer",
    "init_params",
    "forward",
    "inverse",
    "forward_and_log_det",
    "inverse_and_log_det",
    "log_likelihood",
    "check_params",
    "check_data",
    "check_key",
    "params_dtype",
    "validated",
    "prior_arguments",
    "forward_trace",
    "inverse_trace",
    "log_abs_det_weights",
    "log_abs_det",
    "forward_jit",
    "inverse_jit",
    "log_likelihood_without_det",
    "marginal_log_likelihood_without_det",
]


class Layer(NamedTuple):
    """One square layer ``y = W z + b``.

    Attributes
    ----------
    W : array of shape (D, D)
        The weight matrix, acting on column vectors as in the paper.
    b : array of shape (D,) or None
        The bias; ``None`` for a layer without bias (``init_params(..., bias=False)``).
    """

    W: jax.Array
    b: jax.Array | None


# --------------------------------------------------------------------------------------------
# validation (runs on static shapes, so it works eagerly and under jit alike)


def check_params(params) -> tuple[int, int]:
    """Validate a parameter pytree; return ``(n_features, n_layers)``.

    Raises a ``ValueError`` (or ``TypeError``) saying what was expected and what arrived.
    """
    if isinstance(params, Layer) or not isinstance(params, (tuple, list)) or len(params) == 0:
        raise TypeError(f"params must be a non-empty tuple of nica.Layer(W, b); got {type(params).__name__}.")
    n_features = None
    for k, layer in enumerate(params):
        if not isinstance(layer, Layer):
            raise TypeError(f"params[{k}] must be an nica.Layer(W, b); got {type(layer).__name__}.")
        W_shape = jnp.shape(layer.W)
        if len(W_shape) != 2 or W_shape[0] != W_shape[1]:
            raise ValueError(f"params[{k}].W must be a square (D, D) matrix; got shape {W_shape}.")
        if n_features is None:
            n_features = W_shape[0]
        elif W_shape[0] != n_features:
            raise ValueError(
                f"All layers must have the same size: params[0].W is {n_features}x{n_features} "
                f"but params[{k}].W is {W_shape[0]}x{W_shape[1]}."
            )
        if layer.b is not None and jnp.shape(layer.b) != (n_features,):
            raise ValueError(
                f"params[{k}].b must have shape ({n_features},) to match W; got shape {jnp.shape(layer.b)}."
            )
        if (layer.b is None) != (params[0].b is None):
            raise ValueError("Either every layer has a bias or none does; params mix the two.")
    dtypes = {_leaf_dtype(leaf) for leaf in jax.tree_util.tree_leaves(params)}
    if len(dtypes) != 1 or not jnp.issubdtype(next(iter(dtypes)), jnp.floating):
        raise TypeError(f"params must all share one floating dtype; got {sorted(map(str, dtypes))}.")
    return int(jnp.shape(params[0].W)[0]), len(params)


def _leaf_dtype(leaf):
    """The dtype of an array-like leaf (JAX or NumPy array, tracer, ShapeDtypeStruct, scalar)."""
    dtype = getattr(leaf, "dtype", None)
    return np.dtype(dtype) if dtype is not None else np.asarray(leaf).dtype


def _as_numeric_array(X, name) -> jax.Array:
    """``X`` as an array: JAX arrays and tracers as they are, anything else through NumPy first,
    so that text, objects and ragged lists are refused with a message naming ``name`` (and not
    with an error from inside JAX)."""
    if isinstance(X, jax.Array):
        return X
    try:
        arr = np.asarray(X)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a rectangular array of numbers; got {type(X).__name__} ({error}).") from None
    if arr.dtype.kind not in "biufc":
        raise TypeError(f"{name} must be a floating-point array; got dtype {arr.dtype}.")
    return jnp.asarray(arr)


def check_data(X, n_features: int, dtype, name: str = "X") -> jax.Array:
    """Validate a data batch against the parameters; return it as a JAX array.

    Shapes and dtypes only: the values are not inspected (no host synchronisation, and the same
    checks run under :func:`jax.jit`), so NaN or infinite entries propagate to the rows they are
    in, as in any JAX function.
    """
    X = _as_numeric_array(X, name)
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D with shape (n_samples, {n_features}); got shape {X.shape}.")
    if X.shape[1] != n_features:
        raise ValueError(f"{name} has {X.shape[1]} features but the network expects {n_features}.")
    if not jnp.issubdtype(X.dtype, jnp.floating):
        raise TypeError(f"{name} must be a floating-point array; got dtype {X.dtype}.")
    if X.dtype != dtype:
        raise TypeError(
            f"{name} has dtype {X.dtype} but the parameters are {dtype}; cast one of them "
            "(nica never changes dtypes silently)."
        )
    return X


def prior_arguments(prior, prior_params, u, params, X, where):
    """Resolve ``prior`` and check ``prior_params`` and ``u`` for the functions of the core that
    take them (:func:`log_likelihood`, :func:`forward_and_log_det`'s users, the gradients).

    ``prior_params=None`` stands for a prior without learned parameters (``()``); a prior that
    has some (:func:`~nica.priors.logistic_mixture`, the conditional priors) is refused without
    them.  Returns ``(prior, prior_params, u)``, ``u`` as an array (``None`` for a factorized
    prior)."""
    prior = _priors.get(prior)
    n_features = jnp.shape(params[0].W)[0]
    dtype = params_dtype(params)
    conditional = prior.conditional
    if prior_params is None:
        if jax.tree_util.tree_leaves(_priors.prior_params_template(prior, n_features, np.dtype(dtype))):
            what = "depends on u and has learned parameters" if conditional else "has learned parameters"
            raise ValueError(
                f"{where} needs prior_params for prior {type(prior).__name__}, which {what}: pass "
                f"prior_params=prior.init_params(key, n_features, dtype) (or a fitted estimator's "
                f"prior_params_){' and the auxiliary variable u' if conditional else ''}."
            )
        prior_params = ()
    _priors.check_prior_params(
        prior, prior_params, n_features, dtype, check_dtype=True, hint=" (or take a fitted estimator's prior_params_)"
    )
    u = _priors.check_aux(prior, u, X.shape[0], where)
    return prior, prior_params, u


def params_dtype(params):
    """The floating dtype of a network's parameters."""
    return jnp.result_type(params[0].W)


def validated(params, X, name="X") -> jax.Array:
    """``X`` checked against the network ``params`` (both checked), as a JAX array."""
    n_features, _ = check_params(params)
    return check_data(X, n_features, params_dtype(params), name)


def check_key(key):
    """A JAX PRNG key: a typed key (``jax.random.key``) or a raw ``uint32[2]`` one (``PRNGKey``)."""
    dtype = getattr(key, "dtype", None)
    if dtype is None:
        ok = False
    elif jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        ok = jnp.shape(key) == ()
    else:
        ok = np.dtype(dtype) == np.uint32 and jnp.shape(key) == (2,)
    if not ok:
        got = type(key).__name__ if dtype is None else f"an array of dtype {dtype} and shape {jnp.shape(key)}"
        raise TypeError(f"key must be one JAX random key, e.g. jax.random.key(0); got {got}.")
    return key


# --------------------------------------------------------------------------------------------
# initialisation


_HAAR_MAX_FEATURES = 4096  # above this, orthogonal W is built from blocks (see init_params)
_BLOCK_SIZE = 1024


@partial(jax.jit, static_argnames=("n", "dtype"))
def _random_orthogonal(key, n, dtype):
    if n <= _HAAR_MAX_FEATURES:
        return jax.random.orthogonal(key, n, dtype=dtype)  # Haar: QR of a Gaussian, O(n³)
    n_blocks = -(-n // _BLOCK_SIZE)
    sizes = [n // n_blocks + (i < n % n_blocks) for i in range(n_blocks)]
    block_key, row_key, col_key = jax.random.split(key, 3)
    rows, cols = jax.random.permutation(row_key, n), jax.random.permutation(col_key, n)
    # Block k maps the columns cols[start:start+m] to the rows rows[start:start+m]; all blocks
    # are written by one scatter into one D×D buffer (n·1024 entries, not D²).
    r, c, v, start = [], [], [], 0
    for k, m in zip(jax.random.split(block_key, n_blocks), sizes):
        r.append(jnp.repeat(rows[start : start + m], m))
        c.append(jnp.tile(cols[start : start + m], m))
        v.append(jax.random.orthogonal(k, m, dtype=dtype).ravel())
        start += m
    return (
        jnp.zeros((n, n), dtype).at[jnp.concatenate(r), jnp.concatenate(c)].set(jnp.concatenate(v), unique_indices=True)
    )


def init_params(
    key: jax.Array, n_features: int, n_layers: int, *, bias: bool = True, dtype: DTypeLike | None = None
) -> tuple[Layer, ...]:
    """Well-conditioned initial parameters: random orthogonal ``W`` and zero ``b``.

    Up to 4,096 features each ``W`` is Haar-distributed (the QR decomposition of a Gaussian
    matrix, ``O(D³)``: about five minutes per layer at ``D = 20,000`` on two CPU cores).  Above,
    it is a block-diagonal matrix of Haar-distributed blocks of at most 1,024 rows, with rows
    and columns randomly permuted: still exactly orthogonal (condition number 1), in
    ``O(D²·1024)`` time.

    Parameters
    ----------
    key : jax.random key
        Randomness, explicit as always in JAX.
    n_features : int
        ``D``, the size of every (square) layer.
    n_layers : int
        ``L``; ``n_layers=1`` is linear ICA.
    bias : bool, default=True
        Whether layers have a bias; without one ``Layer.b`` is ``None``.
    dtype : dtype, optional
        Floating dtype of the parameters.  Default: JAX's default float, i.e. float32, or
        float64 when ``jax_enable_x64`` is on.

    Returns
    -------
    tuple of Layer

    Examples
    --------
    >>> import jax
    >>> import nica
    >>> params = nica.init_params(jax.random.key(0), n_features=3, n_layers=2)
    >>> len(params), params[0].W.shape, params[0].b.shape
    (2, (3, 3), (3,))
    """
    n_features, n_layers = check_int(n_features, "n_features"), check_int(n_layers, "n_layers")
    check_bool(bias, "bias")
    check_key(key)
    if dtype is None:
        dtype = jax.dtypes.canonicalize_dtype(jnp.float64)
    try:
        dtype = jnp.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be a floating dtype such as jnp.float32; got {dtype!r}.") from None
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"dtype must be a floating dtype; got {dtype}.")
    keys = jax.random.split(key, n_layers)
    return tuple(
        Layer(
            W=_random_orthogonal(k, n_features, jnp.dtype(dtype)),
            b=jnp.zeros((n_features,), dtype) if bias else None,
        )
        for k in keys
    )


# --------------------------------------------------------------------------------------------
# forward pass, inverse, likelihood


def _affine(layer: Layer, Z):
    Y = Z @ layer.W.T
    return Y if layer.b is None else Y + layer.b[None, :]


def forward_trace(params, X, activation, perturbations=None):
    """Forward pass that also returns what the gradients need.

    Returns ``(S, inputs, preacts, log_det_act)``: the sources, each layer's input ``z_{k−1}``,
    each layer's pre-activation ``y_k``, and ``Σ_{k<L} Σ_i log σ'(y_{k,i})`` per sample.
    ``perturbations`` (one ``(B, D)`` array per layer, added to ``y_k``) lets autodiff return
    ``∂ℓ/∂y_k``, the back-propagated errors, without forming any weight gradient (appendix D's
    accumulator trick).
    """
    Z = X
    inputs, preacts = [], []
    log_det_act = jnp.zeros(X.shape[:1], X.dtype)
    last = len(params) - 1
    for k, layer in enumerate(params):
        inputs.append(Z)
        Y = _affine(layer, Z)
        if perturbations is not None:
            Y = Y + perturbations[k]
        preacts.append(Y)
        if k < last:
            log_det_act = log_det_act + jnp.sum(activation.log_derivative(Y), axis=-1)
            Z = activation.fn(Y)
    return Y, inputs, preacts, log_det_act


def log_abs_det_weights(params):
    """``Σ_k log|det W_k|`` (uses ``slogdet``; for reporting likelihoods, never for training)."""
    return sum(jnp.linalg.slogdet(layer.W)[1] for layer in params)


@jax.jit
def log_abs_det(params):
    """:func:`log_abs_det_weights`, jitted (one compilation per network shape)."""
    return log_abs_det_weights(params)


@partial(jax.jit, static_argnames=("activation",))
def forward_jit(params, X, activation):
    """:func:`forward` on checked arguments (``activation`` an object), jitted."""
    return forward_trace(params, X, activation)[0]


def inverse_trace(params, S, activation):
    """Inverse pass ``X = g⁻¹(S)`` that also returns ``Σ_{k<L} Σ_i log σ'(y_{k,i})`` per sample,
    from the pre-activations it recovers on the way (the forward pass's own activation term)."""
    Y = S
    log_det_act = jnp.zeros(S.shape[:1], S.dtype)
    for k in range(len(params) - 1, -1, -1):
        layer = params[k]
        R = Y if layer.b is None else Y - layer.b[None, :]
        Z = jnp.linalg.solve(layer.W, R.T).T  # z = W⁻¹ (y − b)
        if k > 0:
            Y = activation.inverse(Z)  # the pre-activation y_{k−1}
            log_det_act = log_det_act + jnp.sum(activation.log_derivative(Y), axis=-1)
        else:
            Y = Z
    return Y, log_det_act


@partial(jax.jit, static_argnames=("activation",))
def inverse_jit(params, S, activation):
    """:func:`inverse` on checked arguments (``activation`` an object), jitted."""
    return inverse_trace(params, S, activation)[0]


@partial(jax.jit, static_argnames=("activation", "prior"))
def log_likelihood_without_det(params, X, activation, prior, prior_params=(), u=None):
    """Every term of the log-likelihood but ``Σ log|det W_k|`` (which does not depend on X)."""
    S, _, _, log_det_act = forward_trace(params, X, activation)
    return prior.conditional_log_prob(prior_params, S, u) + log_det_act  # eq. (3), or eq. (4) given u


@partial(jax.jit, static_argnames=("activation", "prior"))
def marginal_log_likelihood_without_det(params, X, activation, prior, prior_params, log_weights):
    """The same for the marginal over segment labels: one forward pass, then the prior's segment
    mixture ``log Σ_u π_u p(s | u)`` (``prior`` a :class:`~nica.priors.SegmentConditional`)."""
    S, _, _, log_det_act = forward_trace(params, X, activation)
    return prior.marginal_log_prob(prior_params, S, log_weights) + log_det_act


def forward_and_log_det_trace(params, X, activation):
    """``(S, log|det J_g(x)|)`` per row: the activations' terms from the forward pass plus
    ``Σ_k log|det W_k|`` (the same for every row)."""
    S, _, _, log_det_act = forward_trace(params, X, activation)
    return S, log_det_act + log_abs_det_weights(params)


_forward_and_log_det = jax.jit(forward_and_log_det_trace, static_argnames=("activation",))


@partial(jax.jit, static_argnames=("activation", "prior"))
def _log_likelihood(params, X, activation, prior, prior_params=(), u=None):
    S, log_det = forward_and_log_det_trace(params, X, activation)
    return prior.conditional_log_prob(prior_params, S, u) + log_det  # eq. (3), or eq. (4) given u


def forward(params: Sequence[Layer], X: ArrayLike, *, activation: str | Activation = "smooth_leaky_relu") -> jax.Array:
    """Map observations to sources, ``S = g(X)`` (row-wise).

    Parameters
    ----------
    params : tuple of Layer
        The network.
    X : array of shape (n_samples, n_features)
        Observations; same floating dtype as ``params``.
    activation : str or Activation, default="smooth_leaky_relu"
        Elementwise activation between layers.

    Returns
    -------
    S : jax.Array of shape (n_samples, n_features)

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> import nica
    >>> params = nica.init_params(jax.random.key(0), 2, 2)
    >>> nica.forward(params, jnp.ones((4, 2)), activation="tanh_linear").shape
    (4, 2)
    """
    X = validated(params, X)
    return forward_jit(tuple(params), X, _activations.get(activation))


def inverse(params: Sequence[Layer], S: ArrayLike, *, activation: str | Activation = "smooth_leaky_relu") -> jax.Array:
    """Map sources back to observations, ``X = g⁻¹(S)``.

    Each layer is undone with a linear solve (``O(D³)`` once per call) and the exact inverse of
    the activation.

    Parameters
    ----------
    params : tuple of Layer
    S : array of shape (n_samples, n_features)
    activation : str or Activation, default="smooth_leaky_relu"

    Returns
    -------
    X : jax.Array of shape (n_samples, n_features)

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> import nica
    >>> params = nica.init_params(jax.random.key(0), 3, 2)
    >>> X = jax.random.normal(jax.random.key(1), (5, 3))
    >>> bool(jnp.allclose(nica.inverse(params, nica.forward(params, X)), X, atol=1e-4))
    True
    """
    S = validated(params, S, name="S")
    return inverse_jit(tuple(params), S, _activations.get(activation))


def forward_and_log_det(
    params: Sequence[Layer], X: ArrayLike, *, activation: str | Activation = "smooth_leaky_relu"
) -> tuple[jax.Array, jax.Array]:
    """Map observations to sources and return the log-determinant of the map's Jacobian, per row.

    The flow interface of distrax and flowjax (``bijector.forward_and_log_det``): ``S = g(X)``
    and ``log|det ∂g/∂x|`` at every row,

    ``log|det J_g(x)| = Σ_{k<L} Σ_i log σ'(y_{k,i}) + Σ_k log|det W_k|``,

    so that the log-likelihood under any prior is ``prior.conditional_log_prob(prior_params,
    S, u) + log_det`` (this is how :func:`log_likelihood` computes it).  The network runs once;
    the weights' log-determinants use ``slogdet`` (an ``O(D³)`` LU per layer, once per call,
    not per row).  For the marginal likelihood of a segment-conditional model, pass ``S`` to
    :meth:`nica.priors.SegmentConditional.marginal_log_prob` and add ``log_det``.

    Parameters
    ----------
    params : tuple of Layer
        The network.
    X : array of shape (n_samples, n_features)
        Observations; same floating dtype as ``params``.
    activation : str or Activation, default="smooth_leaky_relu"
        Elementwise activation between layers.

    Returns
    -------
    S : jax.Array of shape (n_samples, n_features)
        The sources, as :func:`forward` gives them.
    log_det : jax.Array of shape (n_samples,)
        ``log|det ∂g/∂x|`` at each row.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> import nica
    >>> params = nica.init_params(jax.random.key(0), 2, 1)   # one orthogonal layer
    >>> S, log_det = nica.forward_and_log_det(params, jnp.ones((3, 2)))
    >>> S.shape, log_det.shape, bool(jnp.allclose(log_det, 0.0, atol=1e-5))
    ((3, 2), (3,), True)
    """
    X = validated(params, X)
    return _forward_and_log_det(tuple(params), X, _activations.get(activation))


@partial(jax.jit, static_argnames=("activation",))
def _inverse_and_log_det(params, S, activation):
    X, log_det_act = inverse_trace(params, S, activation)
    # the inverse's Jacobian is the inverse of the forward one at X: log|det| changes sign
    return X, -(log_det_act + log_abs_det_weights(params))


def inverse_and_log_det(
    params: Sequence[Layer], S: ArrayLike, *, activation: str | Activation = "smooth_leaky_relu"
) -> tuple[jax.Array, jax.Array]:
    """Map sources to observations and return the log-determinant of that map's Jacobian, per row.

    The other direction of :func:`forward_and_log_det` (distrax's and flowjax's
    ``inverse_and_log_det``): ``X = g⁻¹(S)`` and ``log|det ∂g⁻¹/∂s| = −log|det J_g(x)|`` at
    ``x = g⁻¹(s)``, so that a sample drawn from the prior has log-density
    ``prior_log_prob(S) − log_det`` under the model, from the one inverse pass (the activations'
    terms are read off the pre-activations it recovers).

    Parameters
    ----------
    params : tuple of Layer
        The network.
    S : array of shape (n_samples, n_features)
        Sources; same floating dtype as ``params``.
    activation : str or Activation, default="smooth_leaky_relu"
        Elementwise activation between layers.

    Returns
    -------
    X : jax.Array of shape (n_samples, n_features)
        The observations, as :func:`inverse` gives them.
    log_det : jax.Array of shape (n_samples,)
        ``log|det ∂g⁻¹/∂s|`` at each row.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> import nica
    >>> params = nica.init_params(jax.random.key(0), 3, 2)
    >>> S = jax.random.normal(jax.random.key(1), (4, 3))
    >>> X, log_det = nica.inverse_and_log_det(params, S)
    >>> bool(jnp.allclose(log_det, -nica.forward_and_log_det(params, X)[1], atol=1e-5))
    True
    """
    S = validated(params, S, name="S")
    return _inverse_and_log_det(tuple(params), S, _activations.get(activation))


def log_likelihood(
    params: Sequence[Layer],
    X: ArrayLike,
    *,
    activation: str | Activation = "smooth_leaky_relu",
    prior: str | Prior = "laplace",
    prior_params: Any = None,
    u: ArrayLike | None = None,
) -> jax.Array:
    """Exact per-sample log-likelihood: eq. (3), or eq. (4) given an auxiliary variable ``u``.

    ``log p(x | u) = Σ_i log p_i(s_i | u) + Σ_{k<L} Σ_i log σ'(y_{k,i}) + Σ_k log|det W_k|``
    with ``(s, log|det J|)`` from :func:`forward_and_log_det`.  A fixed factorized prior
    (``"laplace"``, ...) needs neither ``prior_params`` nor ``u``; a prior with learned
    parameters (:func:`~nica.priors.logistic_mixture`) needs its ``prior_params``; a conditional
    prior (:func:`~nica.priors.segment_conditional`, :func:`~nica.priors.mlp_conditional`) needs
    both; a fitted estimator's prior is ``prior=est.prior_, prior_params=est.prior_params_``.
    For the marginal over segment labels, see
    :meth:`nica.priors.SegmentConditional.marginal_log_prob`.

    Parameters
    ----------
    params : tuple of Layer
    X : array of shape (n_samples, n_features)
    activation : str or Activation, default="smooth_leaky_relu"
    prior : str or Prior, default="laplace"
    prior_params : pytree, optional
        The prior's own parameters, as ``prior.init_params(key, n_features, dtype)`` makes them
        (same structure, shapes and dtype as ``params``).  Default: none, for a prior that has
        none; a prior with learned parameters is refused without them.
    u : array, optional
        The auxiliary variable of a conditional prior, one entry per row of ``X``: integer
        segment ids of shape ``(n_samples,)``, or real values of shape ``(n_samples, n_aux)``.
        Refused for a factorized prior.

    Returns
    -------
    jax.Array of shape (n_samples,)

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> import nica
    >>> from nica import priors
    >>> params = nica.init_params(jax.random.key(0), 2, 1)   # orthogonal W: |det W| = 1
    >>> ll = nica.log_likelihood(params, jnp.zeros((1, 2)), prior="gaussian")
    >>> round(float(ll[0]), 4)
    -1.8379
    >>> prior = priors.segment_conditional("gaussian", n_segments=3)
    >>> theta = prior.init_params(jax.random.key(1), 2, params[0].W.dtype)
    >>> nica.log_likelihood(params, jnp.zeros((4, 2)), prior=prior, prior_params=theta,
    ...                     u=jnp.array([0, 1, 2, 0])).shape
    (4,)
    """
    X = validated(params, X)
    prior, prior_params, u = prior_arguments(prior, prior_params, u, params, X, "log_likelihood")
    return _log_likelihood(tuple(params), X, _activations.get(activation), prior, prior_params, u)
