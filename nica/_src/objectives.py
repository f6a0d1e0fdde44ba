r"""Training objectives as values (docs/theory.rst, "The hybrid objective").

An objective is a small frozen (hashable) object that gives the loss of every row of a batch
from what the network's forward pass produced: the sources ``S``, the rows' log-determinant
``log_det`` and the auxiliary variable ``u``, with the prior and its parameters.  The training
step, the epoch and the fit loop take an objective as a value, as flowjax's loops take a
``loss_fn``, so a new term is one class and one registry line, not an argument threaded through
every layer.

Objectives compose: ``likelihood() + 2.0 * label_cross_entropy()`` is the hybrid objective

.. math::

    J(\theta) = \operatorname{mean}_b[-\log p(x_b \mid u_b)]
                + \alpha \operatorname{mean}_b[-\log p(u_b \mid x_b)],

whose terms are kept by name (:meth:`Objective.terms`), so that the fit's history, its progress
bar and the plots can say what they show.

What the relative gradient needs of a term.  The gradient forms (:mod:`nica.gradients`) see a
term's dependence on the network through ``S`` and the activations' part of ``log_det``, and add
the weights' part, ``−c·Σ_k log|det W_k|``, in closed form (the ``−c·W`` of the relative
gradient).  So a term may depend on ``log_det`` only as ``−c · log_det`` with ``c`` its
:attr:`~Objective.log_det_weight` (the likelihood: ``c = 1``; a term that does not use it: 0).
"""

from __future__ import annotations

import abc
import dataclasses
from typing import ClassVar

import jax.numpy as jnp

from nica._src._checks import check_real
from nica._src._registry import Registry, names_doc, register_doc
from nica._src.conditional import SegmentConditional

__all__ = [
    "Objective",
    "Likelihood",
    "LabelCrossEntropy",
    "WeightedSum",
    "likelihood",
    "label_cross_entropy",
    "get",
    "register",
    "names",
]


class Objective(abc.ABC):
    """Base class of training objectives: a loss per row, averaged over a batch.

    A term is a frozen dataclass that defines :meth:`row_losses` (and, where it needs a kind of
    prior, :meth:`check_prior`); sums and weights of terms are :class:`WeightedSum` objects,
    made with ``+`` and ``*``.

    Attributes
    ----------
    name : str
        The term's name, as the fit's history records it.
    log_det_weight : float
        ``c`` of the module docstring: how much of ``−log|det J|`` the loss contains.
    """

    name: ClassVar[str] = "objective"
    log_det_weight: ClassVar[float] = 0.0

    @abc.abstractmethod
    def row_losses(self, prior, prior_params, S, log_det, u):  # pragma: no cover - abstract
        """The loss of each row, in nats.

        Parameters
        ----------
        prior : Prior
            The model's prior (resolved object).
        prior_params : pytree
            Its parameters.
        S : array of shape (n_samples, n_components)
            The sources of the rows, ``g(x)``.
        log_det : array of shape (n_samples,)
            The rows' log-determinant of the network's Jacobian (during training: its
            activations' part only; see the module docstring).
        u : array or None
            The auxiliary variable of the rows.

        Returns
        -------
        array of shape (n_samples,)
        """

    def check_prior(self, prior) -> None:
        """Refuse a prior this objective cannot use (``ValueError``); any prior by default.

        Parameters
        ----------
        prior : Prior
        """
        return None

    def terms(self) -> tuple:
        """The weighted terms, ``((weight, term), ...)``: ``((1.0, self),)`` for a single term.

        Returns
        -------
        tuple of (float, Objective)
        """
        return ((1.0, self),)

    def total_log_det_weight(self) -> float:
        """``Σ weight · log_det_weight`` over the terms: the coefficient of ``−Σ_k log|det W_k|``.

        Returns
        -------
        float
        """
        return sum(weight * term.log_det_weight for weight, term in self.terms())

    def mean_loss(self, prior, prior_params, S, log_det, u):
        """``Σ weight · mean(row_losses)`` over the terms: the batch's loss (a scalar).

        Parameters
        ----------
        prior, prior_params, S, log_det, u
            As for :meth:`row_losses`.

        Returns
        -------
        scalar array
        """
        total = None
        for weight, term in self.terms():
            value = jnp.mean(term.row_losses(prior, prior_params, S, log_det, u))
            value = value if weight == 1.0 else weight * value
            total = value if total is None else total + value
        return total

    @property
    def label(self) -> str:
        """A short description: ``"nll"``, ``"nll + 2·label_cross_entropy"``."""
        return " + ".join(term.name if weight == 1.0 else f"{weight:g}·{term.name}" for weight, term in self.terms())

    def __add__(self, other):
        if not isinstance(other, Objective):
            return NotImplemented
        return _combine(self.terms() + other.terms())

    def __mul__(self, weight):
        if isinstance(weight, Objective):
            return NotImplemented
        weight = check_real(weight, "an objective's weight", 0.0, closed="left")
        return _combine(tuple((weight * w, term) for w, term in self.terms()))

    __rmul__ = __mul__


def _combine(weighted_terms):
    """One objective from weighted terms: equal terms merged, terms of weight 0 dropped beside
    others (``likelihood() + 0 * label_cross_entropy()`` is the likelihood), a single term of
    weight 1 returned as itself."""
    merged: dict = {}
    for weight, term in weighted_terms:
        merged[term] = merged.get(term, 0.0) + weight
    kept = tuple((weight, term) for term, weight in merged.items() if weight != 0.0)
    if not kept:  # only zero weights: a (degenerate) objective all the same
        kept = tuple((weight, term) for term, weight in merged.items())
    if len(kept) == 1 and kept[0][0] == 1.0:
        return kept[0][1]
    return WeightedSum(kept)


@dataclasses.dataclass(frozen=True)
class WeightedSum(Objective):
    """``Σ weight · term``: build it with ``+`` and ``*`` on objectives.

    Parameters
    ----------
    weighted_terms : tuple of (float, Objective)
        The terms and their weights, in order.
    """

    weighted_terms: tuple

    name: ClassVar[str] = "weighted_sum"

    def __post_init__(self):
        for item in self.weighted_terms:
            if not (
                isinstance(item, tuple)
                and len(item) == 2
                and isinstance(item[1], Objective)
                and not isinstance(item[1], WeightedSum)
            ):
                raise TypeError(f"weighted_terms must hold (weight, term) pairs of single objectives; got {item!r}.")
            check_real(item[0], "an objective's weight", 0.0, closed="left")

    def terms(self) -> tuple:
        return self.weighted_terms

    def row_losses(self, prior, prior_params, S, log_det, u):
        """``Σ weight · row_losses`` of the terms."""
        total = None
        for weight, term in self.weighted_terms:
            value = weight * term.row_losses(prior, prior_params, S, log_det, u)
            total = value if total is None else total + value
        return total

    def check_prior(self, prior) -> None:
        for _, term in self.weighted_terms:
            term.check_prior(prior)


@dataclasses.dataclass(frozen=True)
class Likelihood(Objective):
    """The negative log-likelihood of each row, ``−log p(x | u)`` (eqs. 3 and 4).

    ``−(Σ_i log p_i(s_i | u) + log_det)``; during training ``log_det`` holds the activations'
    part of the log-determinant and the weights' part enters the relative gradient in closed
    form (``log_det_weight = 1``).
    """

    name: ClassVar[str] = "nll"
    log_det_weight: ClassVar[float] = 1.0

    def row_losses(self, prior, prior_params, S, log_det, u):
        return -(prior.conditional_log_prob(prior_params, S, u) + log_det)


@dataclasses.dataclass(frozen=True)
class LabelCrossEntropy(Objective):
    """The cross-entropy of the segment label given the observation, ``−log p(u | x)``.

    The model's own label posterior with a uniform label prior
    (:meth:`nica.priors.SegmentConditional.label_log_posterior`); it has no log-determinant,
    so the relative gradient keeps its cheap form.  Needs a segment-conditional prior.
    """

    name: ClassVar[str] = "label_cross_entropy"

    def row_losses(self, prior, prior_params, S, log_det, u):
        log_post = prior.label_log_posterior(prior_params, S)
        return -jnp.take_along_axis(log_post, jnp.asarray(u)[:, None], axis=1)[:, 0]

    def check_prior(self, prior) -> None:
        if not isinstance(prior, SegmentConditional):
            raise ValueError(
                "The label posterior and the contrastive term need a segment-conditional prior "
                f"(priors.segment_conditional, discrete u); got prior={prior!r}."
            )


def likelihood() -> Likelihood:
    """The exact negative log-likelihood, the objective of maximum-likelihood training.

    Returns
    -------
    Likelihood

    Examples
    --------
    >>> from nica import objectives
    >>> objectives.likelihood().label
    'nll'
    """
    return Likelihood()


def label_cross_entropy() -> LabelCrossEntropy:
    """The cross-entropy of the segment labels under the model's label posterior.

    Added to the likelihood with a weight, it makes the hybrid objective of
    :class:`~nica.ConditionalNonlinearICA` (``contrastive_weight``).

    Returns
    -------
    LabelCrossEntropy

    Examples
    --------
    >>> from nica import objectives
    >>> (objectives.likelihood() + 2 * objectives.label_cross_entropy()).label
    'nll + 2·label_cross_entropy'
    """
    return LabelCrossEntropy()


_REGISTRY = Registry("objective", Objective)
_REGISTRY.register("nll", likelihood)
_REGISTRY.register("label_cross_entropy", label_cross_entropy)


def get(objective) -> Objective:
    """Return an :class:`Objective` from an object or a registered term name.

    Parameters
    ----------
    objective : str or Objective
        A registered name (:func:`names`: ``"nll"``, ``"label_cross_entropy"``) or an
        objective object, returned unchanged.

    Returns
    -------
    Objective

    Examples
    --------
    >>> from nica import objectives
    >>> objectives.get("nll")
    Likelihood()
    """
    return _REGISTRY.get(objective)


def register(name: str, factory, *, overwrite: bool = False):
    return _REGISTRY.register(name, factory, overwrite=overwrite)


register.__doc__ = register_doc(
    "an objective term",
    "The command line's ``--objective-term NAME=WEIGHT`` and :func:`get`",
    "an :class:`Objective`",
    """\
    >>> import dataclasses, jax.numpy as jnp
    >>> from nica import objectives
    >>> @dataclasses.dataclass(frozen=True)
    ... class SourcePower(objectives.Objective):      # mean square of the sources
    ...     name = "source_power_example"
    ...     def row_losses(self, prior, prior_params, S, log_det, u):
    ...         return jnp.sum(S**2, axis=1)
    >>> _ = objectives.register("source_power_example", SourcePower)
    >>> (objectives.likelihood() + 0.1 * objectives.get("source_power_example")).label
    'nll + 0.1·source_power_example'
""",
)


def names() -> list[str]:
    return _REGISTRY.names()


names.__doc__ = names_doc(
    "objective term",
    """\
    >>> from nica import objectives
    >>> [n for n in objectives.names() if n in ("label_cross_entropy", "nll")]
    ['label_cross_entropy', 'nll']
""",
)
