"""Several prior families for one conditional fit: each is fitted in turn, the one whose model
gives the validation rows the highest exact log-likelihood is kept.

The exact log-likelihood ``log p(x | u)`` of held-out rows is comparable across prior families
and objectives (the hybrid objective's validation score is not: it subtracts a weighted
cross-entropy), so it is what chooses.  Every candidate is fitted as the estimator would fit it
alone: same settings, same ``random_state`` (the same whitening, validation rows and shuffles).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import clone

from nica._src import priors as _priors

__all__ = ["is_candidate_list", "check_candidates", "fit_candidates"]


def is_candidate_list(prior) -> bool:
    """Whether ``prior`` lists several families (a list or a tuple) rather than naming one."""
    return isinstance(prior, (list, tuple))


def check_candidates(estimator, *, continuing: bool) -> list:
    """The candidate families of ``estimator.prior`` resolved (``ValueError``/``TypeError`` on a
    list that cannot be fitted as asked), before anything is fitted."""
    candidates = list(estimator.prior)
    if len(candidates) < 2:
        raise ValueError(
            f"prior as a list needs at least two candidate families to choose from; got {estimator.prior!r}."
        )
    resolved = [_priors.get(candidate) for candidate in candidates]
    for candidate, prior in zip(candidates, resolved):
        if prior.conditional:
            raise ValueError(
                f"each candidate prior must be a factorized family (the base under the segment "
                f"modulation); got the conditional {type(prior).__name__} ({candidate!r})."
            )
    if continuing:
        raise ValueError(
            "a list of candidate priors is chosen by one fit from scratch: warm_start and "
            "partial_fit continue a single family; set prior to the chosen one first, e.g. "
            "model.set_params(prior=model.prior_.base, warm_start=True)."
        )
    if not estimator.early_stopping:
        raise ValueError(
            "a list of candidate priors is chosen on the validation rows, which early_stopping=True "
            "sets aside; got early_stopping=False."
        )
    if estimator.checkpoint_path is not None:
        raise ValueError(
            "checkpoint_path holds one fit in progress; with a list of candidate priors, fit the "
            "chosen family alone to write checkpoints."
        )
    return candidates


def _validation_log_likelihood(model) -> float:
    """The validation log-likelihood of the parameters the fitted ``model`` kept."""
    values = model.validation_log_likelihoods_
    if not values or not model.best_iter_:
        return -np.inf
    value = float(values[min(model.best_iter_, len(values)) - 1])
    return value if np.isfinite(value) else -np.inf


def fit_candidates(estimator, X, y, candidates):
    """Fit a copy of ``estimator`` with each candidate prior, keep the best in ``estimator``.

    The kept copy's fitted attributes are moved into ``estimator`` (its ``prior`` stays the
    list); ``candidate_scores_`` holds each candidate's validation log-likelihood, in order.
    """
    params = estimator.get_params(deep=False)
    best, scores = None, []
    for candidate in candidates:
        model = clone(estimator).set_params(prior=candidate)
        model.fit(X, y)
        scores.append(_validation_log_likelihood(model))
        if best is None or scores[-1] > scores[best[0]]:
            best = (len(scores) - 1, model)
    assert best is not None
    for name in [name for name in vars(estimator) if name not in params]:
        delattr(estimator, name)  # a refit forgets the previous fit's attributes
    for name, value in vars(best[1]).items():
        if name not in params:
            setattr(estimator, name, value)
    estimator.candidate_scores_ = scores
    return estimator
