"""What the fit loop reports: its history (:class:`FitHistory`, returned by
:func:`nica.fit_to_data`) and the snapshots handed to its callback (:class:`FitProgress`, also
what an interrupted fit resumes from)."""

from __future__ import annotations

from typing import Any, NamedTuple

from nica._src.training import TrainState

__all__ = ["FitHistory", "FitProgress"]


class FitHistory(NamedTuple):
    """What :func:`fit_to_data` did, epoch by epoch.

    Attributes
    ----------
    loss_curve : list of float
        The training objective of each epoch, in nats per sample: the mean batch loss of the
        epoch with the network's ``−Σ log|det W_k|`` at the epoch's end and ``−log_det_offset``
        (weighted as the objective weighs the log-determinant) included.  For the likelihood,
        the training NLL.
    validation_scores : list of float
        The monitored validation score of each epoch: minus the objective on the validation set
        (for the likelihood, the mean validation log-likelihood ``+ log_det_offset``); empty
        without a validation set.
    n_epochs : int
        Epochs run (an epoch that diverged included).
    best_epoch : int
        The epoch (1-based) whose parameters were kept: the best monitored score; ``0`` when no
        epoch improved on the start.
    best_score : float
        The best monitored score: validation score, or minus the training loss without a
        validation set (``-inf`` when no epoch finished with a finite score).
    converged : bool
        Stopped by the early-stopping rule (``patience`` epochs without an improvement of more
        than ``tol``, after the schedule's rate reductions).
    diverged : bool
        A non-finite loss, score or parameter stopped the fit; the best parameters were restored
        (epoch ``best_epoch``) with a restarted optimizer.
    rate_scale : float
        The schedule's final multiplier of the optimizer's updates (``1.0`` unless it lowered
        the rate); pass it back as ``rate_scale`` to continue at that rate.
    validation_log_likelihoods : list of float
        The exact mean validation log-likelihood of each epoch (``+ log_det_offset``), whatever
        the objective; empty without a validation set.
    validation_terms : dict of str to list of float
        Each term of the objective on the validation set, by its ``name``,
        epoch by epoch, in nats per sample (the likelihood's term is the NLL, ``log_det_offset``
        included); empty without a validation set.
    objective : str
        The objective's ``label`` (``nica.objectives.likelihood().label`` is ``"nll"``), what ``loss_curve``
        and ``validation_scores`` measure.
    """

    loss_curve: list
    validation_scores: list
    n_epochs: int
    best_epoch: int
    best_score: float
    converged: bool
    diverged: bool
    rate_scale: float
    validation_log_likelihoods: list
    validation_terms: dict | None = None
    objective: str = "nll"


class FitProgress(NamedTuple):
    """A snapshot of :func:`fit_to_data`'s loop, handed to its ``callback``.

    Attributes
    ----------
    epoch : int
        Epochs run so far in this call.
    state : TrainState
        The current training state (for ``"interrupted"``: the best parameters with a restarted
        optimizer, the state the fit leaves).  Its arrays are donated to the next epoch: copy
        them (``np.asarray``) to keep them.  Its optimizer state is the loop's named chain
        (:func:`fit_to_data`): ``opt_state["optimizer"]`` is the optimizer's own state,
        ``opt_state["rate_scale"]`` the schedule's multiplier and, with ``averaging > 0``,
        ``opt_state["average"]`` the running average of the parameters.
    key : jax.Array
        The key the next epoch's shuffle is split from.
    best : tuple
        ``(params, prior_params)`` of the best score so far (with ``averaging > 0``, the
        averaged parameters that were scored).
    best_score : float
        The best monitored score so far.
    no_change : int
        Epochs since the last improvement of more than ``tol``.
    reductions : int
        Rate reductions made so far by the ``"plateau"`` schedule.
    history : FitHistory or None
        The history so far (``None`` in a snapshot made to resume from a checkpoint).
    """

    epoch: int
    state: TrainState
    key: Any
    best: tuple
    best_score: float
    no_change: int
    reductions: int
    history: FitHistory | None
