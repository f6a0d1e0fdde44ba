"""Gradients of the mean negative log-likelihood: relative and the two baselines.

The derivation is in docs/theory.rst, sections 'The relative gradient' and 'The equivariant form'.

Notation: ``ℓ`` is the mean NLL of a batch (including ``−Σ_k log|det W_k|``), ``ℓ_data`` the same
without the log-det terms, ``G_k = ∂ℓ/∂W_k`` and ``g_k = ∂ℓ/∂b_k`` the Euclidean gradient, and
``δ_k = ∂ℓ_data/∂Y_k`` the back-propagated errors of layer ``k`` (shape ``(B, D)``, the ``1/B``
of the mean included).

The relative gradient (paper eq. 13, with biases through the augmented matrix
``W̄ = [[W, b], [0, 1]]`` of appendix F) is ``[ΔW, Δb] = [G, g] W̄ᵀ W̄``:

    ΔW = G Wᵀ W + g (bᵀ W)
    Δb = G Wᵀ b + g (1 + bᵀ b)

Because ``−W⁻ᵀ Wᵀ W = −W`` and ``−W⁻ᵀ Wᵀ b = −b`` (eq. 14), the log-det part costs nothing, and
because ``Z Wᵀ = Y − b`` is known from the forward pass, the data part needs only two extra
``(B×D)·(D×D)`` products per layer (eq. 15):

    ΔW = δᵀ ((Y − b) W) + g ⊗ (bᵀ W) − W          with g = Σ_rows δ
    Δb = δᵀ ((Y − b) b) + g (1 + bᵀ b)  − b

and, as ``Y − b`` and ``b`` enter only through ``Y = (Y − b) + 1bᵀ``, more simply
``ΔW = δᵀ (Y W) − W`` and ``Δb = δᵀ (Y b) + g − b``.

No inverse, no determinant and (for ``B ≤ 2D``) no ``D×D×D`` product.  The ``−b`` term is the
bias correction that nica adds to the authors' code (docs/theory.rst, 'The bias correction').

The same direction in the group's own coordinates.  ``[ΔW, Δb] = H̄ W̄`` with

    H̄ = [G, g] W̄ᵀ = [G Wᵀ + g bᵀ, g] = [δᵀ Y − I, g]

(again ``−W⁻ᵀ Wᵀ = −I`` and ``Y = Z Wᵀ + 1bᵀ``): a ``D×D`` matrix in the Lie algebra of the
affine group, Cardoso and Laheld's relative gradient, whose step ``W̄ ← (I − ηH̄) W̄`` is the
multiplicative update.  Computing ``H̄`` costs one ``(B×D)ᵀ·(B×D)`` product; :func:`transport`
maps an update ``Ū`` made from it back to the weights as ``Ū W̄`` (one ``D×D×D`` product).  For
plain SGD the two routes give the same step; an optimizer with per-coordinate state (Adam) fed
``H̄`` instead of ``H̄ W̄`` keeps the update equivariant: the first layer's trajectory does not
depend on an invertible affine change of the input (``gradient="equivariant"``).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from nica._src import activations as _activations
from nica._src.contrastive import label_cross_entropy
from nica._src.network import Layer, _validated, forward_trace, prior_arguments

__all__ = ["relative_gradient", "equivariant_gradient", "transport", "euclidean_gradient",
           "autodiff_gradient", "backpropagated_errors"]


def backpropagated_errors(params, X, activation, prior, prior_params=(), u=None, contrastive_weight=0.0):
    """Forward pass plus back-propagation of ``ℓ_data``.

    Returns ``(loss_data, deltas, inputs, preacts, prior_grads)`` where
    ``deltas[k] = ∂ℓ_data/∂Y_k`` (mean over the batch included) and ``prior_grads`` is the
    Euclidean gradient of ``ℓ_data`` with respect to the prior's own parameters (empty for a
    factorized prior).  Only the error signals are differentiated, so no weight gradient (and no
    ``D×D`` outer product) is formed here: forward ``L`` products, backward ``L − 1``.

    ``contrastive_weight`` (a static Python float ``α``; a segment-conditional prior when
    ``α > 0``): ``ℓ_data`` becomes the hybrid objective's data part, ``ℓ_data + α·CE`` with
    ``CE`` the mean cross-entropy of ``u`` given ``x`` (``nica._src.contrastive``).  ``CE``
    has no log-determinant, so every gradient form below stays valid with the summed errors
    ``δ = δ_NLL + α·δ_CE``: the relative gradient is linear in ``δ`` and its ``−W`` comes from
    the log-determinant alone.  With ``α = 0`` nothing is added (a Python-level branch).
    """

    def data_loss(perturbations, prior_params):
        S, inputs, preacts, log_det_act = forward_trace(params, X, activation, perturbations)
        loss = -jnp.mean(prior.conditional_log_prob(prior_params, S, u) + log_det_act)
        if contrastive_weight:
            loss = loss + contrastive_weight * label_cross_entropy(prior, prior_params, S, u)
        return loss, (inputs, preacts)

    zeros = [jnp.zeros_like(X) for _ in params]
    (loss, (inputs, preacts)), (deltas, prior_grads) = jax.value_and_grad(
        data_loss, argnums=(0, 1), has_aux=True
    )(zeros, prior_params)
    return loss, deltas, inputs, preacts, prior_grads


def _relative_layer(layer: Layer, delta, Z, Y):
    """``[ΔW, Δb]`` of one layer from its errors ``δ``, input ``Z`` and pre-activation ``Y``.

    Since ``Y = Z Wᵀ + 1 bᵀ`` and ``g = δᵀ 1``, the cheap form folds the bias terms into the
    products: ``δᵀ(Y W) = G WᵀW + g (bᵀW)`` and ``δᵀ(Y b) = G Wᵀb + g (bᵀb)``, so

        ΔW = δᵀ (Y W) − W,        Δb = δᵀ (Y b) + g − b,

    which costs ``2·B·D²``.  Forming ``G = δᵀ Z`` and then ``G (Wᵀ W)`` costs ``B·D² + 2·D³``,
    cheaper only when ``B > 2D``; the grouping is chosen from the static shapes.
    """
    W, b = layer
    batch, dim = Z.shape
    if batch > 2 * dim:
        G = delta.T @ Z
        dW = G @ (W.T @ W) - W
        if b is None:
            return Layer(dW, None)
        g = jnp.sum(delta, axis=0)
        return Layer(dW + jnp.outer(g, b @ W), G @ (W.T @ b) + g * (1.0 + b @ b) - b)
    dW = delta.T @ (Y @ W) - W
    if b is None:
        return Layer(dW, None)
    return Layer(dW, delta.T @ (Y @ b) + jnp.sum(delta, axis=0) - b)


def relative_value_and_gradient(params, X, activation, prior, prior_params=(), u=None,
                               contrastive_weight=0.0):
    """``(ℓ_data, relative gradient of the layers, Euclidean gradient of the prior parameters)``."""
    loss, deltas, inputs, preacts, prior_grads = backpropagated_errors(
        params, X, activation, prior, prior_params, u, contrastive_weight
    )
    grads = tuple(
        _relative_layer(layer, d, Z, Y) for layer, d, Z, Y in zip(params, deltas, inputs, preacts)
    )
    return loss, grads, prior_grads


def _algebra_layer(layer: Layer, delta, Y):
    """``H̄ = [δᵀ Y − I, g]`` of one layer: the relative gradient before right-multiplication by ``W̄``."""
    H = delta.T @ Y - jnp.eye(Y.shape[1], dtype=Y.dtype)
    return Layer(H, None if layer.b is None else jnp.sum(delta, axis=0))


def equivariant_value_and_gradient(params, X, activation, prior, prior_params=(), u=None,
                                  contrastive_weight=0.0):
    """``(ℓ_data, H̄ per layer, Euclidean gradient of the prior parameters)``; see :func:`transport`."""
    loss, deltas, _, preacts, prior_grads = backpropagated_errors(
        params, X, activation, prior, prior_params, u, contrastive_weight
    )
    grads = tuple(_algebra_layer(layer, d, Y) for layer, d, Y in zip(params, deltas, preacts))
    return loss, grads, prior_grads


def _transport_layer(update: Layer, layer: Layer) -> Layer:
    U, u = update
    W, b = layer
    if b is None:
        return Layer(U @ W, None)
    return Layer(U @ W, U @ b + u)


def transport(updates, params):
    """Map updates in the group's coordinates back to the weights: ``[U, u] ↦ [U W, U b + u]``.

    ``[U, u] W̄`` with ``W̄ = [[W, b], [0, 1]]``, per layer: ``transport(equivariant_gradient(p, X),
    p)`` is ``relative_gradient(p, X)``, and applied to an optimizer's update made from
    :func:`equivariant_gradient` it gives the equivariant (multiplicative) step.  Linear in
    ``updates``, one ``D×D×D`` product per layer, pure and jit-able.

    Parameters
    ----------
    updates : tuple of Layer
        ``Layer(U, u)`` per layer (``u`` is ``None`` where the layer has no bias).
    params : tuple of Layer
        The weights the updates are for (the ones :func:`equivariant_gradient` was taken at).

    Returns
    -------
    tuple of Layer

    Examples
    --------
    >>> import jax, numpy as np
    >>> import nica
    >>> params = nica.init_params(jax.random.key(0), 3, 2)
    >>> X = jax.random.laplace(jax.random.key(1), (10, 3))
    >>> moved = nica.transport(nica.equivariant_gradient(params, X), params)
    >>> bool(np.allclose(moved[0].W, nica.relative_gradient(params, X)[0].W, atol=1e-5))
    True
    """
    for name, tree in (("updates", updates), ("params", params)):
        if not isinstance(tree, (tuple, list)) or not all(isinstance(layer, (tuple, list)) and len(layer) == 2
                                                          for layer in tree):
            raise TypeError(f"{name} must be a tuple of nica.Layer(W, b); got {type(tree).__name__}.")
    if len(updates) != len(params):
        raise ValueError(f"updates has {len(updates)} layers but params has {len(params)}.")
    updates, params = [Layer(*u) for u in updates], [Layer(*p) for p in params]
    for k, (u, p) in enumerate(zip(updates, params)):
        if jnp.shape(u.W) != jnp.shape(p.W):
            raise ValueError(f"layer {k}: the update's W has shape {jnp.shape(u.W)} but the layer's W has "
                             f"shape {jnp.shape(p.W)}.")
        if (u.b is None) != (p.b is None):
            raise ValueError(f"layer {k}: the update's b is {'None' if u.b is None else 'an array'} but the "
                             f"layer's b is {'None' if p.b is None else 'an array'}.")
    return tuple(_transport_layer(u, p) for u, p in zip(updates, params))


def euclidean_value_and_gradient(params, X, activation, prior, prior_params=(), u=None,
                                contrastive_weight=0.0):
    """``(ℓ_data, ordinary gradient, prior gradient)`` with ``−W⁻ᵀ`` from an explicit inverse."""
    loss, deltas, inputs, _, prior_grads = backpropagated_errors(
        params, X, activation, prior, prior_params, u, contrastive_weight
    )
    grads = []
    for layer, d, Z in zip(params, deltas, inputs):
        G = d.T @ Z - jnp.linalg.inv(layer.W).T  # ∂(−log|det W|)/∂W = −W⁻ᵀ, explicit inverse
        grads.append(Layer(G, None if layer.b is None else jnp.sum(d, axis=0)))
    return loss, tuple(grads), prior_grads


def autodiff_value_and_gradient(params, X, activation, prior, prior_params=(), u=None, contrastive_weight=0.0):
    """``(ℓ_data, ordinary gradient, prior gradient)`` by differentiating per-sample Jacobians
    (of the hybrid objective when ``contrastive_weight > 0``, as in :func:`backpropagated_errors`)."""

    def single(p, x):
        return forward_trace(p, x[None, :], activation)[0][0]

    def nll(p, prior_params):
        S, _, _, log_det_act = forward_trace(p, X, activation)
        J = jax.vmap(jax.jacfwd(single, argnums=1), in_axes=(None, 0))(p, X)  # (B, D, D)
        log_det = jnp.linalg.slogdet(J)[1]
        log_prior = prior.conditional_log_prob(prior_params, S, u)
        data_loss = -jnp.mean(log_prior + log_det_act)
        loss = -jnp.mean(log_prior + log_det)
        if contrastive_weight:
            contrastive = contrastive_weight * label_cross_entropy(prior, prior_params, S, u)
            loss, data_loss = loss + contrastive, data_loss + contrastive
        return loss, jax.lax.stop_gradient(data_loss)

    (_, data_loss), (grads, prior_grads) = jax.value_and_grad(nll, argnums=(0, 1), has_aux=True)(
        params, prior_params
    )
    return data_loss, grads, prior_grads


VALUE_AND_GRADIENT = {
    "relative": relative_value_and_gradient,
    "equivariant": equivariant_value_and_gradient,
    "euclidean": euclidean_value_and_gradient,
    "autodiff": autodiff_value_and_gradient,
}


@partial(jax.jit, static_argnames=("activation", "prior"))
def _relative_gradient(params, X, activation, prior, prior_params, u):
    return relative_value_and_gradient(params, X, activation, prior, prior_params, u)[1:]


@partial(jax.jit, static_argnames=("activation", "prior"))
def _equivariant_gradient(params, X, activation, prior, prior_params, u):
    return equivariant_value_and_gradient(params, X, activation, prior, prior_params, u)[1:]


@partial(jax.jit, static_argnames=("activation", "prior"))
def _euclidean_gradient(params, X, activation, prior, prior_params, u):
    return euclidean_value_and_gradient(params, X, activation, prior, prior_params, u)[1:]


@partial(jax.jit, static_argnames=("activation", "prior"))
def _autodiff_gradient(params, X, activation, prior, prior_params, u):
    return autodiff_value_and_gradient(params, X, activation, prior, prior_params, u)[1:]


def _dispatch(impl, params, X, activation, prior, prior_params, u):
    """Check the arguments and run ``impl``: the layers' gradient, or the pair ``(layers' gradient,
    prior's gradient)`` when ``prior_params`` were passed."""
    X = _validated(params, X)
    where = impl.__name__.lstrip("_")
    if X.shape[0] == 0:
        raise ValueError(f"{where} averages over the rows of X: X needs at least one row; got shape {X.shape}.")
    pair = prior_params is not None
    prior, prior_params, u = prior_arguments(prior, prior_params, u, params, X, where)
    grads, prior_grads = impl(tuple(params), X, _activations.get(activation), prior, prior_params, u)
    return (grads, prior_grads) if pair else grads


def relative_gradient(params, X, *, activation="smooth_leaky_relu", prior="laplace", prior_params=None,
                      u=None):
    """Relative gradient ``[G, g] W̄ᵀ W̄`` of the mean NLL, per layer (see :ref:`theory-relative-gradient`).

    Computed in the cheap form: per layer a forward product, back-propagation and two extra
    ``(B×D)·(D×D)`` products, about ``(4L − 1)·B·D²`` multiply-adds in all, with no inverse or
    determinant.  Use it in place of a gradient with any optax optimizer.

    Parameters
    ----------
    params : tuple of Layer
    X : array of shape (n_samples, n_features)
        A batch of observations, same floating dtype as ``params``.
    activation : str or Activation, default="smooth_leaky_relu"
    prior : str or Prior, default="laplace"
    prior_params : pytree, optional
        The prior's own parameters (``prior.init_params(key, n_features, dtype)`` or a fitted
        estimator's ``prior_params_``); needed by a prior with learned parameters or a
        conditional one.  When given, the result is the pair ``(layers, prior_grads)``.
    u : array, optional
        The auxiliary variable of a conditional prior, one entry per row of ``X`` (see
        :func:`~nica.log_likelihood`).

    Returns
    -------
    layers : tuple of Layer
        ``Layer(ΔW, Δb)`` per layer (``Δb`` is ``None`` where the layer has no bias).
    prior_grads : pytree
        Only when ``prior_params`` were passed: the Euclidean gradient of the mean NLL with
        respect to them (same structure), the second member of the returned pair.

    Examples
    --------
    >>> import jax, optax
    >>> import nica
    >>> params = nica.init_params(jax.random.key(0), 3, 2)
    >>> X = jax.random.laplace(jax.random.key(1), (100, 3))
    >>> opt = optax.adam(1e-3)
    >>> state = opt.init(params)
    >>> updates, state = opt.update(nica.relative_gradient(params, X), state, params)
    >>> params = optax.apply_updates(params, updates)

    A conditional prior: the optimizer acts on the pair ``(params, prior_params)``, as in
    :class:`~nica.TrainState`.

    >>> from nica import priors
    >>> prior = priors.segment_conditional("laplace", n_segments=2)
    >>> theta = prior.init_params(jax.random.key(2), 3, params[0].W.dtype)
    >>> u = jax.numpy.arange(100) % 2
    >>> state = opt.init((params, theta))
    >>> grads = nica.relative_gradient(params, X, prior=prior, prior_params=theta, u=u)
    >>> updates, state = opt.update(grads, state, (params, theta))
    >>> params, theta = optax.apply_updates((params, theta), updates)
    """
    return _dispatch(_relative_gradient, params, X, activation, prior, prior_params, u)


def equivariant_gradient(params, X, *, activation="smooth_leaky_relu", prior="laplace", prior_params=None,
                         u=None):
    """The relative gradient in the group's coordinates, ``H̄ = [G, g] W̄ᵀ``, per layer.

    ``H̄ = [δᵀ Y − I, g]``: one ``(B×D)ᵀ·(B×D)`` product per layer beyond back-propagation, no
    inverse or determinant.  :func:`relative_gradient` is ``transport(H̄, params)``.  Hand ``H̄``
    to an optax optimizer and its update ``Ū`` to :func:`transport` before applying it: with plain
    SGD the step is the relative-gradient step; with Adam (or any optimizer with per-coordinate
    state) the optimizer's statistics live in coordinates that do not change under an invertible
    affine change of the input, so the first layer's trajectory is equivariant, and in the
    benchmarks (``docs/benchmarks.md``) Adam makes much faster progress per step than it does on
    ``relative_gradient``.  The transport costs one ``D×D×D`` product per layer: cheaper than
    ``relative_gradient``'s extra products when ``D < B``, more when ``D > B``.

    Parameters
    ----------
    params : tuple of Layer
    X : array of shape (n_samples, n_features)
    activation : str or Activation, default="smooth_leaky_relu"
    prior : str or Prior, default="laplace"
    prior_params : pytree, optional
        The prior's own parameters (``prior.init_params(key, n_features, dtype)`` or a fitted
        estimator's ``prior_params_``); needed by a prior with learned parameters or a
        conditional one.  When given, the result is the pair ``(layers, prior_grads)``.
    u : array, optional
        The auxiliary variable of a conditional prior, one entry per row of ``X`` (see
        :func:`~nica.log_likelihood`).

    Returns
    -------
    layers : tuple of Layer
        ``Layer(H, h)`` per layer, ``H`` of shape ``(D, D)`` (``h`` is ``None`` without bias).
    prior_grads : pytree
        Only when ``prior_params`` were passed: the Euclidean gradient of the mean NLL with
        respect to them (same structure), the second member of the returned pair.

    Examples
    --------
    >>> import jax, optax
    >>> import nica
    >>> params = nica.init_params(jax.random.key(0), 3, 2)
    >>> X = jax.random.laplace(jax.random.key(1), (100, 3))
    >>> opt = optax.adam(1e-3)
    >>> state = opt.init(params)
    >>> updates, state = opt.update(nica.equivariant_gradient(params, X), state, params)
    >>> params = optax.apply_updates(params, nica.transport(updates, params))
    """
    return _dispatch(_equivariant_gradient, params, X, activation, prior, prior_params, u)


def euclidean_gradient(params, X, *, activation="smooth_leaky_relu", prior="laplace", prior_params=None,
                       u=None):
    """Ordinary gradient ``(G, g)`` of the mean NLL, with ``−W⁻ᵀ`` from an explicit inverse.

    The paper's "ordinary gradient" baseline (Figure 1): back-propagation for the data terms and
    an ``O(D³)`` matrix inverse per layer for the log-determinant.

    Parameters
    ----------
    params : tuple of Layer
    X : array of shape (n_samples, n_features)
    activation : str or Activation, default="smooth_leaky_relu"
    prior : str or Prior, default="laplace"
    prior_params : pytree, optional
        The prior's own parameters (``prior.init_params(key, n_features, dtype)`` or a fitted
        estimator's ``prior_params_``); needed by a prior with learned parameters or a
        conditional one.  When given, the result is the pair ``(layers, prior_grads)``.
    u : array, optional
        The auxiliary variable of a conditional prior, one entry per row of ``X`` (see
        :func:`~nica.log_likelihood`).

    Returns
    -------
    layers : tuple of Layer
        ``Layer(G, g)`` per layer.
    prior_grads : pytree
        Only when ``prior_params`` were passed: the Euclidean gradient of the mean NLL with
        respect to them (same structure), the second member of the returned pair.

    Examples
    --------
    >>> import jax
    >>> import nica
    >>> params = nica.init_params(jax.random.key(0), 3, 2)
    >>> X = jax.random.laplace(jax.random.key(1), (10, 3))
    >>> nica.euclidean_gradient(params, X)[0].W.shape
    (3, 3)
    """
    return _dispatch(_euclidean_gradient, params, X, activation, prior, prior_params, u)


def autodiff_gradient(params, X, *, activation="smooth_leaky_relu", prior="laplace", prior_params=None,
                      u=None):
    """Ordinary gradient ``(G, g)`` of the mean NLL by brute-force automatic differentiation.

    Builds every per-sample Jacobian of the network (``B×D×D`` memory) and differentiates its
    ``slogdet``: ``O(B·D³)`` time.  The paper's "autodiff" baseline (Figure 1).

    Parameters
    ----------
    params : tuple of Layer
    X : array of shape (n_samples, n_features)
    activation : str or Activation, default="smooth_leaky_relu"
    prior : str or Prior, default="laplace"
    prior_params : pytree, optional
        The prior's own parameters (``prior.init_params(key, n_features, dtype)`` or a fitted
        estimator's ``prior_params_``); needed by a prior with learned parameters or a
        conditional one.  When given, the result is the pair ``(layers, prior_grads)``.
    u : array, optional
        The auxiliary variable of a conditional prior, one entry per row of ``X`` (see
        :func:`~nica.log_likelihood`).

    Returns
    -------
    layers : tuple of Layer
        ``Layer(G, g)`` per layer.
    prior_grads : pytree
        Only when ``prior_params`` were passed: the Euclidean gradient of the mean NLL with
        respect to them (same structure), the second member of the returned pair.

    Examples
    --------
    >>> import jax
    >>> import nica
    >>> params = nica.init_params(jax.random.key(0), 3, 2)
    >>> X = jax.random.laplace(jax.random.key(1), (10, 3))
    >>> nica.autodiff_gradient(params, X)[1].b.shape
    (3,)
    """
    return _dispatch(_autodiff_gradient, params, X, activation, prior, prior_params, u)
