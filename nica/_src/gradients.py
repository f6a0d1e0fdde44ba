"""Gradients of a training objective: the relative gradient and the baselines, as *gradient forms*.

The derivation is in docs/theory.rst, sections 'The relative gradient' and 'The equivariant form'.

Notation: ``ℓ`` is the objective's mean loss over a batch (for the likelihood, the mean NLL
including ``−Σ_k log|det W_k|``), ``ℓ_data`` the same without the weights' log-det terms,
``G_k = ∂ℓ/∂W_k`` and ``g_k = ∂ℓ/∂b_k`` the Euclidean gradient, ``δ_k = ∂ℓ_data/∂Y_k`` the
back-propagated errors of layer ``k`` (shape ``(B, D)``, the ``1/B`` of the mean included), and
``c`` the objective's weight of ``−Σ_k log|det W_k|`` (1 for the likelihood).

The relative gradient (paper eq. 13, with biases through the augmented matrix
``W̄ = [[W, b], [0, 1]]`` of appendix F) is ``[ΔW, Δb] = [G, g] W̄ᵀ W̄``:

    ΔW = G Wᵀ W + g (bᵀ W)
    Δb = G Wᵀ b + g (1 + bᵀ b)

Because ``−W⁻ᵀ Wᵀ W = −W`` and ``−W⁻ᵀ Wᵀ b = −b`` (eq. 14), the log-det part costs nothing, and
because ``Z Wᵀ = Y − b`` is known from the forward pass, the data part needs only two extra
``(B×D)·(D×D)`` products per layer (eq. 15):

    ΔW = δᵀ ((Y − b) W) + g ⊗ (bᵀ W) − c W          with g = Σ_rows δ
    Δb = δᵀ ((Y − b) b) + g (1 + bᵀ b)  − c b

and, as ``Y − b`` and ``b`` enter only through ``Y = (Y − b) + 1bᵀ``, more simply
``ΔW = δᵀ (Y W) − c W`` and ``Δb = δᵀ (Y b) + g − c b``.

No inverse, no determinant and (for ``B ≤ 2D``) no ``D×D×D`` product.  The ``−b`` term is the
bias correction that nica adds to the authors' code (docs/theory.rst, 'The bias correction').

The same direction in the group's own coordinates.  ``[ΔW, Δb] = H̄ W̄`` with

    H̄ = [G, g] W̄ᵀ = [G Wᵀ + g bᵀ, g] = [δᵀ Y − c I, g]

a ``D×D`` matrix in the Lie algebra of the affine group, Cardoso and Laheld's relative gradient,
whose step ``W̄ ← (I − ηH̄) W̄`` is the multiplicative update.  Computing ``H̄`` costs one
``(B×D)ᵀ·(B×D)`` product; :func:`~nica.transport` maps an update made from it back to the
weights (one ``D×D×D`` product).  For plain SGD the two routes give the same step; an optimizer
with per-coordinate state (Adam) fed ``H̄`` keeps the update equivariant.

A gradient form is a :class:`GradientForm`: it turns the back-propagated errors into the
layers' update direction (and may chain a stateless transformation after the optimizer, as the
equivariant form chains the transport).  A new form is one class and one registry line.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Sequence
from functools import partial
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike

from nica._src import activations as _activations
from nica._src import objectives as _objectives
from nica._src._registry import Registry, names_doc, register_doc
from nica._src.activations import Activation
from nica._src.network import Layer, forward_trace, prior_arguments, validated
from nica._src.objectives import Objective
from nica._src.priors import Prior
from nica._src.transforms import append_stateless, equivariant_transport

__all__ = [
    "Backprop",
    "backpropagated_errors",
    "GradientForm",
    "RelativeGradient",
    "EquivariantGradient",
    "EuclideanGradient",
    "AutodiffGradient",
    "relative_gradient",
    "equivariant_gradient",
    "euclidean_gradient",
    "autodiff_gradient",
    "get",
    "register",
    "names",
    "resolve_objective",
]

LIKELIHOOD = _objectives.Likelihood()


class Backprop(NamedTuple):
    """What one forward pass and back-propagation of ``ℓ_data`` give (:func:`backpropagated_errors`).

    Attributes
    ----------
    loss : scalar
        ``ℓ_data``, the objective's mean loss without the weights' log-determinants.
    errors : list of array
        ``δ_k = ∂ℓ_data/∂Y_k`` per layer, shape ``(B, D)`` (the ``1/B`` of the mean included).
    inputs : list of array
        Each layer's input ``z_{k−1}``.
    preactivations : list of array
        Each layer's pre-activation ``y_k``.
    prior_grads : pytree
        The Euclidean gradient of ``ℓ_data`` with respect to the prior's own parameters.
    """

    loss: Any
    errors: list
    inputs: list
    preactivations: list
    prior_grads: Any


def _backprop(params, X, activation, prior, prior_params, u, objective) -> Backprop:
    def data_loss(perturbations, prior_params):
        S, inputs, preacts, log_det_act = forward_trace(params, X, activation, perturbations)
        return objective.mean_loss(prior, prior_params, S, log_det_act, u), (inputs, preacts)

    zeros = [jnp.zeros_like(X) for _ in params]
    (loss, (inputs, preacts)), (deltas, prior_grads) = jax.value_and_grad(data_loss, argnums=(0, 1), has_aux=True)(
        zeros, prior_params
    )
    return Backprop(loss, deltas, inputs, preacts, prior_grads)


def resolve_objective(objective, prior):
    """``objective`` as an :class:`~nica.objectives.Objective` (``None``: the likelihood),
    refused unless ``prior`` suits it."""
    objective = LIKELIHOOD if objective is None else _objectives.get(objective)
    objective.check_prior(prior)
    return objective


def backpropagated_errors(
    params: Sequence[Layer],
    X: ArrayLike,
    *,
    activation: str | Activation = "smooth_leaky_relu",
    prior: str | Prior = "laplace",
    prior_params: Any = None,
    u: ArrayLike | None = None,
    objective: str | Objective | None = None,
) -> Backprop:
    """Forward pass plus back-propagation of the objective's data part (appendix D's trick).

    Only the error signals ``δ_k = ∂ℓ_data/∂Y_k`` are differentiated (autodiff of the loss with
    respect to a zero perturbation of each pre-activation), so no weight gradient and no
    ``D×D`` outer product is formed: forward ``L`` products, backward ``L − 1``.  Every gradient
    form is built on it; so can a new one.  Pure and jit-able.

    Parameters
    ----------
    params : tuple of Layer
    X : array of shape (n_samples, n_features)
    activation : str or Activation, default="smooth_leaky_relu"
    prior : str or Prior, default="laplace"
    prior_params : pytree, optional
        The prior's own parameters (see :func:`~nica.log_likelihood`).
    u : array, optional
        The auxiliary variable of a conditional prior.
    objective : str or Objective, optional
        Default: the likelihood (:func:`nica.objectives.likelihood`).

    Returns
    -------
    Backprop
        ``(loss, errors, inputs, preactivations, prior_grads)``.

    Examples
    --------
    >>> import jax
    >>> import nica
    >>> params = nica.init_params(jax.random.key(0), 3, 2)
    >>> X = jax.random.laplace(jax.random.key(1), (10, 3))
    >>> bp = nica.backpropagated_errors(params, X)
    >>> len(bp.errors), bp.errors[0].shape
    (2, (10, 3))
    """
    X = validated(params, X)
    prior, prior_params, u = prior_arguments(prior, prior_params, u, params, X, "backpropagated_errors")
    objective = resolve_objective(objective, prior)
    return _backprop(tuple(params), X, _activations.get(activation), prior, prior_params, u, objective)


def _log_det_term(c, M):
    """``c·M`` (``M`` itself for ``c = 1``: the likelihood's term, with no multiplication)."""
    return M if c == 1.0 else c * M


class GradientForm(abc.ABC):
    """Base class of the gradient forms: the layers' update direction from the errors.

    A subclass is a frozen dataclass with a ``name`` that defines :meth:`layer_gradients`
    (or, for a form that does not start from the back-propagated errors, overrides
    :meth:`value_and_gradient`), and, if the optimizer's update must be post-processed,
    :meth:`update_transform`.
    """

    name: ClassVar[str] = "gradient"

    def value_and_gradient(self, params, X, activation, prior, prior_params, u, objective):
        """``(ℓ_data, layers' direction, Euclidean gradient of the prior parameters)`` on checked
        arguments (resolved objects), jit-able."""
        bp = _backprop(params, X, activation, prior, prior_params, u, objective)
        return bp.loss, self.layer_gradients(params, bp, objective.total_log_det_weight()), bp.prior_grads

    @abc.abstractmethod
    def layer_gradients(self, params, backprop: Backprop, log_det_weight: float):  # pragma: no cover
        """One :class:`~nica.Layer` per layer from :class:`Backprop` and ``c``."""

    def update_transform(self) -> optax.GradientTransformation:
        """A stateless transformation chained after the optimizer (the identity by default)."""
        return optax.identity()

    def wrap_optimizer(self, optimizer):
        """``optimizer`` followed by :meth:`update_transform`, keeping ``optimizer``'s state
        (``optimizer`` itself where there is nothing to chain)."""
        transform = self.update_transform()
        if type(self).update_transform is GradientForm.update_transform:
            return optimizer
        return append_stateless(optimizer, transform)


@dataclasses.dataclass(frozen=True)
class RelativeGradient(GradientForm):
    """``[ΔW, Δb] = [G, g] W̄ᵀ W̄`` in the cheap form ``δᵀ(Y W) − c W``, ``δᵀ(Y b) + g − c b``.

    Forming ``G = δᵀ Z`` and then ``G (Wᵀ W)`` costs ``B·D² + 2·D³`` instead of ``2·B·D²``,
    cheaper only when ``B > 2D``; the grouping is chosen from the static shapes.
    """

    name: ClassVar[str] = "relative"

    def layer_gradients(self, params, backprop, log_det_weight):
        return tuple(
            self._layer(layer, d, Z, Y, log_det_weight)
            for layer, d, Z, Y in zip(params, backprop.errors, backprop.inputs, backprop.preactivations)
        )

    @staticmethod
    def _layer(layer: Layer, delta, Z, Y, c):
        W, b = layer
        batch, dim = Z.shape
        if batch > 2 * dim:
            G = delta.T @ Z
            dW = G @ (W.T @ W) - _log_det_term(c, W)
            if b is None:
                return Layer(dW, None)
            g = jnp.sum(delta, axis=0)
            return Layer(dW + jnp.outer(g, b @ W), G @ (W.T @ b) + g * (1.0 + b @ b) - _log_det_term(c, b))
        dW = delta.T @ (Y @ W) - _log_det_term(c, W)
        if b is None:
            return Layer(dW, None)
        return Layer(dW, delta.T @ (Y @ b) + jnp.sum(delta, axis=0) - _log_det_term(c, b))


@dataclasses.dataclass(frozen=True)
class EquivariantGradient(GradientForm):
    """``H̄ = [δᵀ Y − c I, g]`` per layer; the optimizer's update is transported back to the
    weights (:func:`nica.transforms.equivariant_transport`)."""

    name: ClassVar[str] = "equivariant"

    def layer_gradients(self, params, backprop, log_det_weight):
        grads = []
        for layer, delta, Y in zip(params, backprop.errors, backprop.preactivations):
            H = delta.T @ Y - _log_det_term(log_det_weight, jnp.eye(Y.shape[1], dtype=Y.dtype))
            grads.append(Layer(H, None if layer.b is None else jnp.sum(delta, axis=0)))
        return tuple(grads)

    def update_transform(self):
        return equivariant_transport()


@dataclasses.dataclass(frozen=True)
class EuclideanGradient(GradientForm):
    """The ordinary gradient ``(G, g)``, with ``−c W⁻ᵀ`` from an explicit inverse (``O(D³)``)."""

    name: ClassVar[str] = "euclidean"

    def layer_gradients(self, params, backprop, log_det_weight):
        grads = []
        for layer, d, Z in zip(params, backprop.errors, backprop.inputs):
            G = d.T @ Z - _log_det_term(log_det_weight, jnp.linalg.inv(layer.W).T)  # ∂(−log|det W|)/∂W = −W⁻ᵀ
            grads.append(Layer(G, None if layer.b is None else jnp.sum(d, axis=0)))
        return tuple(grads)


@dataclasses.dataclass(frozen=True)
class AutodiffGradient(GradientForm):
    """The ordinary gradient by differentiating every per-sample Jacobian's ``slogdet``
    (``B×D×D`` memory, ``O(B·D³)`` time)."""

    name: ClassVar[str] = "autodiff"

    def value_and_gradient(self, params, X, activation, prior, prior_params, u, objective):
        def single(p, x):
            return forward_trace(p, x[None, :], activation)[0][0]

        def loss(p, prior_params):
            S, _, _, log_det_act = forward_trace(p, X, activation)
            J = jax.vmap(jax.jacfwd(single, argnums=1), in_axes=(None, 0))(p, X)  # (B, D, D)
            log_det = jnp.linalg.slogdet(J)[1]
            data_loss = objective.mean_loss(prior, prior_params, S, log_det_act, u)
            return objective.mean_loss(prior, prior_params, S, log_det, u), jax.lax.stop_gradient(data_loss)

        (_, data_loss), (grads, prior_grads) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(
            params, prior_params
        )
        return data_loss, grads, prior_grads

    def layer_gradients(self, params, backprop, log_det_weight):  # pragma: no cover - not used
        raise NotImplementedError("the autodiff form differentiates the whole objective (value_and_gradient)")


_REGISTRY = Registry("gradient", GradientForm)
_REGISTRY.register("relative", RelativeGradient)
_REGISTRY.register("equivariant", EquivariantGradient)
_REGISTRY.register("euclidean", EuclideanGradient)
_REGISTRY.register("autodiff", AutodiffGradient)


def get(gradient) -> GradientForm:
    """Return a :class:`GradientForm` from an object or a registered name.

    Parameters
    ----------
    gradient : str or GradientForm
        ``"relative"``, ``"equivariant"``, ``"euclidean"``, ``"autodiff"`` (:func:`names`), or a form.

    Returns
    -------
    GradientForm

    Examples
    --------
    >>> from nica import gradients
    >>> gradients.get("relative")
    RelativeGradient()
    """
    if isinstance(gradient, str) and gradient not in _REGISTRY.names():
        raise ValueError(f"gradient must be one of {_REGISTRY.names()}; got {gradient!r}.")
    return _REGISTRY.get(gradient)


def register(name: str, factory, *, overwrite: bool = False):
    return _REGISTRY.register(name, factory, overwrite=overwrite)


register.__doc__ = register_doc(
    "a gradient form",
    "The estimators' ``gradient``, the step's and the fit loop's ``gradient`` and the command line's ``--gradient``",
    "a :class:`GradientForm`",
    """\
    >>> import dataclasses
    >>> from nica import gradients
    >>> @dataclasses.dataclass(frozen=True)
    ... class HalfRelative(gradients.RelativeGradient):     # half the relative gradient
    ...     name = "half_relative_example"
    ...     def layer_gradients(self, params, backprop, log_det_weight):
    ...         full = super().layer_gradients(params, backprop, log_det_weight)
    ...         return tuple(layer._replace(W=layer.W / 2, b=layer.b / 2) for layer in full)
    >>> _ = gradients.register("half_relative_example", HalfRelative)
    >>> "half_relative_example" in gradients.names()
    True
""",
)


def names() -> list[str]:
    return _REGISTRY.names()


names.__doc__ = names_doc(
    "gradient form",
    """\
    >>> from nica import gradients
    >>> [n for n in gradients.names() if n in ("autodiff", "equivariant", "euclidean", "relative")]
    ['autodiff', 'equivariant', 'euclidean', 'relative']
""",
)


# ---------------------------------------------------------------------------------------------
# the public gradient functions: one checked entry point, one jitted kernel


@partial(jax.jit, static_argnames=("form", "activation", "prior", "objective"))
def _gradient(form, params, X, activation, prior, prior_params, u, objective):
    return form.value_and_gradient(params, X, activation, prior, prior_params, u, objective)[1:]


def _dispatch(name, params, X, activation, prior, prior_params, u, objective):
    """Check the arguments and run the form ``name``: the layers' gradient, or the pair
    ``(layers' gradient, prior's gradient)`` when ``prior_params`` were passed."""
    X = validated(params, X)
    where = f"{name}_gradient"
    if X.shape[0] == 0:
        raise ValueError(f"{where} averages over the rows of X: X needs at least one row; got shape {X.shape}.")
    pair = prior_params is not None
    prior, prior_params, u = prior_arguments(prior, prior_params, u, params, X, where)
    objective = resolve_objective(objective, prior)
    grads, prior_grads = _gradient(
        get(name), tuple(params), X, _activations.get(activation), prior, prior_params, u, objective
    )
    return (grads, prior_grads) if pair else grads


_COMMON_PARAMETERS = """
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
    objective : str or Objective, optional
        The objective whose gradient is taken (:mod:`nica.objectives`); default: the mean
        negative log-likelihood.

    Returns
    -------
    layers : tuple of Layer
        {layers}
    prior_grads : pytree
        Only when ``prior_params`` were passed: the Euclidean gradient of the objective with
        respect to them (same structure), the second member of the returned pair.
"""


def _document(summary, layers, examples):
    return summary.rstrip() + "\n" + _COMMON_PARAMETERS.format(layers=layers) + "\n" + examples


def relative_gradient(
    params: Sequence[Layer],
    X: ArrayLike,
    *,
    activation: str | Activation = "smooth_leaky_relu",
    prior: str | Prior = "laplace",
    prior_params: Any = None,
    u: ArrayLike | None = None,
    objective: str | Objective | None = None,
) -> Any:
    return _dispatch("relative", params, X, activation, prior, prior_params, u, objective)


def equivariant_gradient(
    params: Sequence[Layer],
    X: ArrayLike,
    *,
    activation: str | Activation = "smooth_leaky_relu",
    prior: str | Prior = "laplace",
    prior_params: Any = None,
    u: ArrayLike | None = None,
    objective: str | Objective | None = None,
) -> Any:
    return _dispatch("equivariant", params, X, activation, prior, prior_params, u, objective)


def euclidean_gradient(
    params: Sequence[Layer],
    X: ArrayLike,
    *,
    activation: str | Activation = "smooth_leaky_relu",
    prior: str | Prior = "laplace",
    prior_params: Any = None,
    u: ArrayLike | None = None,
    objective: str | Objective | None = None,
) -> Any:
    return _dispatch("euclidean", params, X, activation, prior, prior_params, u, objective)


def autodiff_gradient(
    params: Sequence[Layer],
    X: ArrayLike,
    *,
    activation: str | Activation = "smooth_leaky_relu",
    prior: str | Prior = "laplace",
    prior_params: Any = None,
    u: ArrayLike | None = None,
    objective: str | Objective | None = None,
) -> Any:
    return _dispatch("autodiff", params, X, activation, prior, prior_params, u, objective)


relative_gradient.__doc__ = _document(
    """Relative gradient ``[G, g] W̄ᵀ W̄`` of the mean NLL, per layer (see :ref:`theory-relative-gradient`).

    Computed in the cheap form: per layer a forward product, back-propagation and two extra
    ``(B×D)·(D×D)`` products, about ``(4L − 1)·B·D²`` multiply-adds in all, with no inverse or
    determinant.  Use it in place of a gradient with any optax optimizer.
""",
    "``Layer(ΔW, Δb)`` per layer (``Δb`` is ``None`` where the layer has no bias).",
    """
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
""",
)

equivariant_gradient.__doc__ = _document(
    """The relative gradient in the group's coordinates, ``H̄ = [G, g] W̄ᵀ``, per layer.

    ``H̄ = [δᵀ Y − I, g]``: one ``(B×D)ᵀ·(B×D)`` product per layer beyond back-propagation, no
    inverse or determinant.  :func:`relative_gradient` is ``transport(H̄, params)``.  Hand ``H̄``
    to an optax optimizer and its update ``Ū`` to :func:`~nica.transport` (or chain
    :func:`nica.transforms.equivariant_transport` after the optimizer) before applying it: with
    plain SGD the step is the relative-gradient step; with Adam (or any optimizer with
    per-coordinate state) the optimizer's statistics live in coordinates that do not change
    under an invertible affine change of the input, so the first layer's trajectory is
    equivariant, and in the benchmarks (``docs/benchmarks.md``) Adam makes much faster progress
    per step than it does on ``relative_gradient``.  The transport costs one ``D×D×D`` product
    per layer: cheaper than ``relative_gradient``'s extra products when ``D < B``, more when
    ``D > B``.
""",
    "``Layer(H, h)`` per layer, ``H`` of shape ``(D, D)`` (``h`` is ``None`` without bias).",
    """
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
""",
)

euclidean_gradient.__doc__ = _document(
    """Ordinary gradient ``(G, g)`` of the mean NLL, with ``−W⁻ᵀ`` from an explicit inverse.

    The paper's "ordinary gradient" baseline (Figure 1): back-propagation for the data terms and
    an ``O(D³)`` matrix inverse per layer for the log-determinant.
""",
    "``Layer(G, g)`` per layer.",
    """
    Examples
    --------
    >>> import jax
    >>> import nica
    >>> params = nica.init_params(jax.random.key(0), 3, 2)
    >>> X = jax.random.laplace(jax.random.key(1), (10, 3))
    >>> nica.euclidean_gradient(params, X)[0].W.shape
    (3, 3)
""",
)

autodiff_gradient.__doc__ = _document(
    """Ordinary gradient ``(G, g)`` of the mean NLL by brute-force automatic differentiation.

    Builds every per-sample Jacobian of the network (``B×D×D`` memory) and differentiates its
    ``slogdet``: ``O(B·D³)`` time.  The paper's "autodiff" baseline (Figure 1).
""",
    "``Layer(G, g)`` per layer.",
    """
    Examples
    --------
    >>> import jax
    >>> import nica
    >>> params = nica.init_params(jax.random.key(0), 3, 2)
    >>> X = jax.random.laplace(jax.random.key(1), (10, 3))
    >>> nica.autodiff_gradient(params, X)[1].b.shape
    (3,)
""",
)
