"""The fit loop (:func:`fit_to_data`): epochs, validation, early stopping, the rate schedule,
divergence, with a callback and exact resumption.

The loop trains with the user's optimizer chained by name with the transformations it controls
(:mod:`nica._src.fit_state`); the policy after each epoch is an :class:`~nica.EarlyStopping`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh
from jax.typing import ArrayLike
from tqdm.auto import tqdm

from nica._src import activations as _activations
from nica._src import gradients as _gradients
from nica._src import priors as _priors
from nica._src._checks import Interval, Options, Satisfies, check_parameters
from nica._src.activations import Activation
from nica._src.distributed import gather_fit_data, peer_failure, spans_processes
from nica._src.fit_state import (
    device_copy,
    fit_optimizer,
    init_fit_state,
    is_fit_state,
    match_averaging,
    monitored_params,
    rate_scale_of,
    restart_average,
    with_average_decay,
    with_rate_scale,
)
from nica._src.gradients import GradientForm
from nica._src.history import FitHistory, FitProgress
from nica._src.network import (
    check_data,
    check_key,
    log_abs_det,
)
from nica._src.objectives import Objective
from nica._src.priors import Prior
from nica._src.sharding import check_mesh, place, place_rows, to_numpy
from nica._src.shuffle import shuffle_order
from nica._src.stopping import SCHEDULES, EarlyStopping, StoppingStatus
from nica._src.training import (
    SCORE_BATCH,
    PaddedRows,
    TrainState,
    check_batch,
    check_opt_state,
    check_optimizer,
    compile_epoch,
    objective_argument,
    pad_rows,
    scoring_rows,
    term_values,
    training_rows,
)
from nica._src.transforms import (
    average_decay,
)

__all__ = [
    "fit_to_data",
    "FitHistory",
    "FitProgress",
    "validation_rows",
    "SCORE_BATCH",
    "MAX_COUNT",
    "term_values",
    "scoring_rows",
]

# The most epochs a fit may ask for (the estimators bound max_iter, n_init and hidden_units
# alike): a count beyond it cannot be run anyway, and larger ones overflow the progress bar.
MAX_COUNT = 2**31 - 1


@jax.jit
def _finite(tree):
    return jnp.all(
        jnp.stack(
            [
                jnp.all(jnp.isfinite(leaf))
                for leaf in jax.tree_util.tree_leaves(tree)
                if jnp.issubdtype(leaf.dtype, jnp.inexact)
            ]
        )
    )


# --------------------------------------------------------------------------------------------
# validation scores: each term of the objective on the validation rows, in batches


def _score(objective, values) -> float:
    """Minus the objective from its terms' values (higher is better)."""
    total = 0.0
    for (weight, _), value in zip(objective.terms(), values):
        total += value if weight == 1.0 else weight * value
    return -total


def _own_copy(tree):
    """A device copy of the JAX arrays of ``tree`` (same shardings; other leaves as they are)."""
    return jax.tree_util.tree_map(lambda a: jnp.array(a, copy=True) if isinstance(a, jax.Array) else a, tree)


# --------------------------------------------------------------------------------------------
# arguments


_FIT_PARAMETERS: dict[str, list] = {
    "batch_size": [Interval(int, 1)],
    "max_epochs": [Interval(int, 1, MAX_COUNT)],
    "patience": [Interval(int, 1)],
    "tol": [Interval(float, 0, None, "left")],
    "schedule": [Options(SCHEDULES)],
    "log_det_offset": [Interval(float)],
    "rate_scale": [Interval(float, 0, None, "neither")],
    "averaging": [Interval(float, 0, None, "left")],
    "show_progress": [Satisfies(lambda v: isinstance(v, (bool, np.bool_, str)), "a bool or a str (the bar's label)")],
    "callback": [Satisfies(callable, "callable"), Options((None,))],
    "resume": [
        Satisfies(lambda v: isinstance(v, FitProgress), "an nica.FitProgress (a callback's snapshot)"),
        Options((None,)),
    ],
    "early_stopping": [Satisfies(lambda v: isinstance(v, EarlyStopping), "an nica.EarlyStopping"), Options((None,))],
    "donate_state": [Satisfies(lambda v: isinstance(v, (bool, np.bool_)), "a bool")],
}


def validation_rows(validation_fraction, n_samples, context=""):
    """The number of rows ``validation_fraction`` holds out of ``n_samples``, ``ceil(fraction ·
    n)`` as scikit-learn's ``train_test_split`` holds them out; refused when no training row
    would be left (``context`` starts the message)."""
    n_val = math.ceil(validation_fraction * n_samples)
    if n_samples - n_val < 1:
        raise ValueError(
            f"{context}validation_fraction={validation_fraction} needs at least one training row "
            f"beside the validation rows; got {n_samples} samples."
        )
    return n_val


def _check_validation(validation, validation_fraction, n_features, dtype, prior, n_samples):
    """``(X_val, u_val)`` checked, or the fraction to hold out (``None``: no validation)."""
    if isinstance(validation, PaddedRows):  # (the estimators: rows already padded to scoring_rows)
        X_val = check_data(validation.X, n_features, dtype, name="validation X")
        u_val = _priors.check_aux(prior, validation.u, X_val.shape[0], "fit_to_data with the validation set")
        return PaddedRows(X_val, u_val, validation.n), None
    if validation is not None:
        if isinstance(validation, tuple):
            if len(validation) not in (1, 2):
                raise ValueError(
                    f"validation must be X_val or a pair (X_val, u_val); got a tuple of {len(validation)} items."
                )
            X_val, u_val = (validation + (None,))[:2]
        else:
            X_val, u_val = validation, None
        X_val = check_data(X_val, n_features, dtype, name="validation X")
        if X_val.shape[0] == 0:
            raise ValueError("validation X needs at least one row; got none.")
        u_val = _priors.check_aux(prior, u_val, X_val.shape[0], "fit_to_data with the validation set")
        return (X_val, u_val), None
    vf = validation_fraction
    if vf is None or (isinstance(vf, numbers.Real) and not isinstance(vf, (bool, np.bool_)) and vf == 0):
        return None, None
    if not isinstance(vf, numbers.Real) or isinstance(vf, (bool, np.bool_)) or not 0.0 < vf < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), or 0 or None for no validation set; got {vf!r}.")
    return None, validation_rows(vf, n_samples)


def _stopping_policy(early_stopping, patience, tol, schedule):
    if early_stopping is None:
        return EarlyStopping(patience, tol, schedule)
    if (patience, tol, schedule) != (10, 1e-4, "plateau"):
        raise ValueError(
            "give early_stopping or patience/tol/schedule, not both (early_stopping=nica.EarlyStopping("
            "patience=..., tol=..., schedule=...))."
        )
    return early_stopping


class _Loop(NamedTuple):
    """What the loop needs besides the state: checked, resolved and placed."""

    epoch: Any
    optimizer: optax.GradientTransformation
    train: PaddedRows
    val: PaddedRows | None
    activation: Any
    prior: Any
    objective: Any
    stopping: EarlyStopping
    mesh: Any
    log_det_offset: float
    decay: float


# --------------------------------------------------------------------------------------------
# fit_to_data


def fit_to_data(
    state: TrainState,
    X: ArrayLike,
    u: ArrayLike | None = None,
    *,
    optimizer: optax.GradientTransformation,
    key: jax.Array,
    activation: str | Activation = "smooth_leaky_relu",
    prior: str | Prior = "laplace",
    gradient: str | GradientForm = "relative",
    batch_size: int = 256,
    max_epochs: int = 100,
    validation_fraction: float | None = 0.1,
    validation: Any = None,
    patience: int = 10,
    tol: float = 1e-4,
    schedule: str = "plateau",
    contrastive_weight: float | None = None,
    log_det_offset: float = 0.0,
    rate_scale: float = 1.0,
    averaging: float = 0.0,
    mesh: Mesh | None = None,
    show_progress: bool | str = False,
    callback: Callable[[str, FitProgress], Any] | None = None,
    resume: FitProgress | None = None,
    objective: str | Objective | None = None,
    early_stopping: EarlyStopping | None = None,
    donate_state: bool = False,
) -> tuple[TrainState, FitHistory]:
    """Train by exact maximum likelihood (or another objective): epochs, validation, early
    stopping, a rate schedule.

    The loop of :class:`~nica.NonlinearICA` and :class:`~nica.ConditionalNonlinearICA` over the
    functional core.  Each epoch shuffles the training rows with ``key`` and runs the step of
    :func:`~nica.make_train_step` over full mini-batches (one jitted ``lax.scan``), then computes
    the training objective (the epoch's mean batch loss with the network's ``−Σ log|det W_k|``)
    and, with a validation set, the objective's terms on it.  The best parameters by the
    monitored score (minus the validation objective, or minus the training loss without a
    validation set) are kept and returned.

    * Early stopping (:class:`~nica.EarlyStopping`): after ``patience`` epochs without an
      improvement of more than ``tol``, ``schedule="plateau"`` multiplies the rate by 0.2 (at
      most twice; the next plateau stops), ``"constant"`` stops at once.  For the schedule,
      ``optimizer`` is chained with a scale of its updates (:func:`nica.transforms.scale_by_rate`),
      so lowering the rate recompiles nothing.
    * Spikes: a score more than 0.25 nats per sample below the best restores the best
      parameters with a restarted optimizer and lowers the rate (every schedule).
    * Divergence: a non-finite loss, score or parameter stops the fit and restores the best
      parameters with a restarted optimizer (``history.diverged``; no warning is issued).
    * Compilation: the training rows are padded with zeros to a bucket of row counts (as by
      :func:`~nica.make_epoch`: whole batches, rounded up to three significant binary digits),
      and the validation rows to whole blocks of at most :data:`SCORE_BATCH` rows (one block of
      ``16·⌈n/16⌉`` rows or so for a small set), so the epoch and the validation compile once
      per bucket: fits on 666 and 667 rows share them.  Padding rows are never drawn into a
      batch nor counted in a mean.  (Padding a JAX array, and drawing the validation rows, are
      small copies compiled once per row count.)
    * An exception inside the loop (``KeyboardInterrupt`` included) propagates; ``callback``
      first receives ``"interrupted"`` with the best parameters, as the fit would have left
      them.
    * The arrays given stay valid: the loop trains a copy of ``state`` (one more copy of the
      parameters and optimizer state on the device while it runs), so the parameters that made
      it can be used again after the call; only the loop's own copies are donated to the epochs
      (updated in place).  ``donate_state=True`` saves that copy for large models: the arrays
      of ``state`` are then donated to the first epoch and deleted, and passing them to nica
      again is a ``ValueError`` that says so.

    The loop trains with ``optax.named_chain(("optimizer", optimizer), ("rate_scale", ...),
    ("form", ...), ("average", ...))``: the rate scale, what the gradient form chains (the
    equivariant transport) and, with ``averaging > 0``, the running average of the parameters
    (:mod:`nica.transforms`).  A ``state`` made for ``optimizer`` is returned in that form (the
    optimizer's own state); a state in the chain's form (a callback's ``progress.state``, to
    resume) is returned in the chain's form.

    Parameters
    ----------
    state : TrainState
        The start, from :func:`~nica.init_train_state` with ``optimizer`` (or a callback's
        ``progress.state``, with ``resume``).
    X : array of shape (n_samples, n_features)
        Training rows, of the parameters' dtype (pre-processed as you like: the loss is in the
        units the network sees; ``log_det_offset`` adds a fixed pre-processing's
        log-determinant).
    u : array of shape (n_samples,) or (n_samples, n_aux), optional
        The auxiliary variable of a conditional prior (``None`` for a factorized one).
    optimizer : optax.GradientTransformation
        The optimizer ``state`` was initialised with.
    key : jax.Array
        A random key (:func:`jax.random.key`): with ``validation_fraction``, split once to draw
        the validation rows; then split once per epoch for its shuffle.
    activation : str or Activation, default="smooth_leaky_relu"
    prior : str or Prior, default="laplace"
    gradient : str or GradientForm, default="relative"
        As for :func:`~nica.make_train_step`.
    batch_size : int, default=256
        Rows per step (a training set smaller than one batch is used whole).
    max_epochs : int, default=100
    validation_fraction : float in (0, 1), 0 or None, default=0.1
        The fraction of the rows of ``X`` held out (``ceil(validation_fraction · n)`` rows,
        drawn with ``key``) to monitor; ``0`` or ``None``: monitor the training loss.  Ignored
        when ``validation`` is given.
    validation : array or tuple, optional
        A validation set used as given: ``X_val``, or ``(X_val, u_val)`` for a conditional
        prior.  All of ``X`` is then trained on.
    patience : int, default=10
        Epochs without an improvement of more than ``tol`` that make a plateau (the
        estimators' ``n_iter_no_change``).
    tol : float, default=1e-4
        The improvement, in nats per sample, that resets the count.
    schedule : {"plateau", "constant"}, default="plateau"
    contrastive_weight : float, optional
        Deprecated: ``α`` gives ``objective=likelihood() + α * label_cross_entropy()``.
    log_det_offset : float, default=0.0
        Added to every per-sample log-likelihood (subtracted from the loss): for instance the
        log-determinant of a fixed whitening applied to the data beforehand, so that the
        numbers are in the units of the raw data.
    rate_scale : float, default=1.0
        The rate multiplier the fit starts with (``history.rate_scale`` of an earlier call
        continues at its rate).
    averaging : float, default=0.0
        ``τ >= 0``: with ``τ > 0`` the loop keeps an exponential moving average of the
        parameters over the steps (Polyak averaging, :func:`nica.transforms.average_params`)
        with a time constant of ``τ`` epochs (per-step decay ``1 − 1/(τ · steps per epoch)``,
        shorter over the first steps after a start), and validates, keeps and returns that
        average instead of the last iterate.  The step's noise then no longer reaches the
        monitored score.  ``0``: the last iterate.
    mesh : jax.sharding.Mesh, optional
        Train on several devices (:func:`~nica.make_train_step`); the state, the data and the
        best parameters are placed on it.
    show_progress : bool or str, default=False
        A tqdm progress bar; a str labels it (followed by the objective's ``label``, ``·``
        written ``*``, when the objective is not the likelihood alone).  Each epoch it shows
        ``train_nll`` (the likelihood) or ``train_objective`` (another objective: what
        ``loss_curve`` holds), and with a validation set ``val_nll`` (the exact validation
        NLL, whatever the objective), ``val_<name>`` for each other term of the objective
        (``val_label_cross_entropy``) and ``val_objective`` (the validation objective, minus
        the monitored score; not for the likelihood alone, where it is ``val_nll``).
    callback : callable, optional
        ``callback(event, progress)`` with ``event`` one of ``"epoch_start"`` (before each
        epoch), ``"epoch_end"`` (after each epoch and what the schedule did; not after an
        epoch that diverged) and ``"interrupted"`` (an exception is about to propagate), and
        ``progress`` a :class:`FitProgress`.  For logging, custom checkpoints, or a state to
        keep when the fit is interrupted.
    resume : FitProgress, optional
        Continue an interrupted fit exactly: the best parameters and score, the epochs without
        improvement and the rate reductions of a snapshot taken at ``"epoch_start"`` (pass its
        ``state`` and ``key`` too, and the same ``validation``).
    objective : str or Objective, optional
        What is minimised and monitored (:mod:`nica.objectives`); default: the likelihood.
    early_stopping : EarlyStopping, optional
        The early-stopping policy; default ``EarlyStopping(patience, tol, schedule)`` (give
        either, not both).
    donate_state : bool, default=False
        Train ``state``'s own arrays in place (they are deleted by the call: keep the state
        returned) instead of a copy; for a state too large to hold twice.

    Returns
    -------
    state : TrainState
        The best parameters (by the monitored score; with ``averaging > 0`` the best average)
        with the last optimizer state; after a divergence, the best parameters with a restarted
        optimizer.
    history : FitHistory
        Losses, scores and each term of the objective, the best epoch, and why the fit stopped.

    See Also
    --------
    NonlinearICA : the estimator over this loop (whitening, initialisation, ``n_init``).

    Examples
    --------
    >>> import jax, optax
    >>> import nica
    >>> X = jax.random.laplace(jax.random.key(0), (512, 2)) @ jax.numpy.array([[1.0, 0.4], [0.2, 1.0]])
    >>> optimizer = optax.adam(1e-2)
    >>> state = nica.init_train_state(optimizer, nica.init_params(jax.random.key(1), 2, 2))
    >>> state, history = nica.fit_to_data(state, X, optimizer=optimizer, key=jax.random.key(2),
    ...                                   batch_size=64, max_epochs=5)
    >>> history.n_epochs, len(history.validation_scores)
    (5, 5)
    >>> bool(history.best_score == max(history.validation_scores))
    True
    """
    # every argument checked before any JAX work
    if not isinstance(state, TrainState):
        raise TypeError(
            f"state must be an nica.TrainState (from init_train_state(optimizer, params, "
            f"prior_params)); got {type(state).__name__}."
        )
    check_optimizer(optimizer)
    key = check_key(key)
    form = _gradients.get(gradient)
    activation = _activations.get(activation)
    prior = _priors.get(prior)
    mesh = check_mesh(mesh)
    args = check_parameters(
        _FIT_PARAMETERS,
        dict(
            batch_size=batch_size,
            max_epochs=max_epochs,
            patience=patience,
            tol=tol,
            schedule=schedule,
            log_det_offset=log_det_offset,
            rate_scale=rate_scale,
            averaging=averaging,
            show_progress=show_progress,
            callback=callback,
            resume=resume,
            early_stopping=early_stopping,
            donate_state=donate_state,
        ),
    )
    stopping = _stopping_policy(early_stopping, args["patience"], args["tol"], args["schedule"])
    objective = objective_argument(objective, contrastive_weight, prior)
    distributed = spans_processes(mesh)
    if distributed and not isinstance(X, PaddedRows):  # every process's rows: their union
        X, u, validation = gather_fit_data(state, key, X, u, validation)
    padded, n_rows = False, 0
    if isinstance(X, PaddedRows):  # (the estimators: rows already padded to training_rows)
        padded, n_rows, X, u = True, X.n, X.X, X.u
        if training_rows(n_rows, args["batch_size"]) != np.shape(X)[0]:
            raise ValueError(f"padded training rows must be training_rows(n, batch_size) rows; got {np.shape(X)[0]}.")
    X, aux = check_batch(state, X, u, prior, "fit_to_data")
    n_features, dtype = X.shape[1], X.dtype
    val, n_val = _check_validation(validation, validation_fraction, n_features, dtype, prior, X.shape[0])
    if padded and n_val is not None:
        raise ValueError("padded training rows take a validation set (validation=), not validation_fraction.")
    averaged = args["averaging"] > 0
    chained = is_fit_state(state.opt_state)
    trainable = (state.params, state.prior_params)
    check_opt_state(optimizer, state.opt_state["optimizer"] if chained else state.opt_state, trainable, "fit_to_data")
    if not args["donate_state"]:
        # the loop trains its own copy: the epochs donate their input, and the caller's arrays
        # (its parameters, the state it passed) stay valid
        state = _own_copy(state)
        trainable = (state.params, state.prior_params)

    if n_val is not None:  # the validation rows, drawn with the key
        key, split_key = jax.random.split(key)
        order = jax.random.permutation(split_key, X.shape[0])
        val = (X[order[:n_val]], None if aux is None else aux[order[:n_val]])
        X, aux = X[order[n_val:]], None if aux is None else aux[order[n_val:]]
    # padded to a bucket of row counts: the epoch and the validation compile once per bucket
    if not padded:
        n_rows = X.shape[0]
        X, aux, _ = pad_rows(X, aux, training_rows(n_rows, args["batch_size"]))
    if val is not None and not isinstance(val, PaddedRows):
        val = pad_rows(val[0], val[1], scoring_rows(val[0].shape[0])[1])
    train = PaddedRows(place_rows(X, mesh), place_rows(aux, mesh), n_rows)
    val = None if val is None else PaddedRows(place_rows(val.X, mesh), place_rows(val.u, mesh), val.n)

    tx = fit_optimizer(optimizer, form, averaged)
    if chained:
        state = TrainState(*trainable, match_averaging(state.opt_state, trainable, averaged))
    else:
        state = init_fit_state(state, form, rate_scale=args["rate_scale"], averaged=averaged)
    steps = max(1, n_rows // max(1, min(args["batch_size"], n_rows)))
    decay = average_decay(args["averaging"], steps)
    state = place(state._replace(opt_state=with_average_decay(state.opt_state, decay)), mesh)
    loop = _Loop(
        compile_epoch(tx, form, activation, prior, objective, args["batch_size"], mesh),
        tx,
        train,
        val,
        activation,
        prior,
        objective,
        stopping,
        mesh,
        args["log_det_offset"],
        decay,
    )
    state, history = _run(
        loop, state, key, args["max_epochs"], show_progress=show_progress, callback=callback, resume=resume
    )
    if not chained:
        state = state._replace(opt_state=state.opt_state["optimizer"])
    if distributed:  # each process's own copy (the same in all), not arrays of the job
        state = jax.tree_util.tree_map(jnp.asarray, to_numpy(state))
    return state, history


def _run(loop: _Loop, state, key, max_epochs, *, show_progress, callback, resume):
    """The loop of :func:`fit_to_data` on checked, placed arguments and a fit state.

    Memory: the state (parameters and optimizer state) lives on the device and is donated to
    each epoch; besides it only the best epoch's parameters are kept, as a device copy (no host
    copy, no copy of the optimizer state).  With averaging the optimizer state holds one more
    copy of the parameters, the running average (the one monitored and kept).  The optimizer
    state kept is the last one, as scikit-learn's MLP keeps its solver state when it restores
    the best coefficients; a fit that diverged, or was interrupted, restarts the optimizer at
    the best parameters.
    """
    objective, c = loop.objective, loop.objective.total_log_det_weight()
    terms = [term for _, term in objective.terms()]
    # the objective's terms, and the likelihood (recorded whatever the objective)
    scored = terms if _gradients.LIKELIHOOD in terms else [*terms, _gradients.LIKELIHOOD]
    loss_curve: list[float] = []
    validation_scores: list[float] = []
    validation_log_likelihoods: list[float] = []
    validation_terms: dict[str, list[float]] = {term.name: [] for term in terms}
    n_epochs, converged, diverged = 0, False, False
    status = StoppingStatus()
    best = device_copy(monitored_params(state))
    rate = rate_scale_of(state.opt_state)
    averaged = "average" in state.opt_state
    label = show_progress if isinstance(show_progress, str) else "fit_to_data"
    if objective.label != "nll":  # say what the curve is (ASCII: any terminal prints it)
        label = f"{label} ({objective.label.replace('·', '*')})"
    bar = tqdm(range(max_epochs), desc=label, disable=not show_progress, leave=False)
    if resume is not None:  # an interrupted fit's loop state
        best = place(resume.best, loop.mesh)
        status = StoppingStatus(resume.best_score, 0, resume.no_change, resume.reductions)

    def history():
        return FitHistory(
            loss_curve,
            validation_scores,
            n_epochs,
            status.best_epoch,
            status.best_score,
            converged,
            diverged,
            rate,
            validation_log_likelihoods,
            validation_terms,
            objective.label,
        )

    def report(event, state):
        if callback is not None:
            callback(
                event,
                FitProgress(
                    n_epochs, state, key, best, status.best_score, status.no_change, status.reductions, history()
                ),
            )

    def restart_at(params, rate):
        # a copy: the next epoch donates the state, and ``best`` must outlive it
        opt_state = with_average_decay(with_rate_scale(loop.optimizer.init(params), rate), loop.decay)
        return place(TrainState(*device_copy(params), opt_state), loop.mesh)

    try:
        for _ in bar:
            report("epoch_start", state)
            key, epoch_key = jax.random.split(key)
            order = place_rows(shuffle_order(epoch_key, loop.train.n, loop.train.X.shape[0]), loop.mesh)
            state, data_loss = loop.epoch(state, loop.train.X, loop.train.u, order, loop.train.n)
            n_epochs += 1
            log_det = float(log_abs_det(state.params))
            loss = (
                float(data_loss) - log_det - loop.log_det_offset
                if c == 1.0
                else float(data_loss) - c * log_det - c * loop.log_det_offset
            )
            if not np.isfinite(loss) or not bool(_finite(state)):
                diverged = True
                break
            loss_curve.append(loss)
            monitored = monitored_params(state)
            postfix = {f"train_{'nll' if objective.label == 'nll' else 'objective'}": f"{loss:.4f}"}
            if loop.val is not None:
                if averaged:
                    log_det = float(log_abs_det(monitored[0]))
                values = term_values(
                    scored,
                    monitored[0],
                    monitored[1],
                    loop.val,
                    loop.activation,
                    loop.prior,
                    log_det,
                    loop.log_det_offset,
                )
                score = _score(objective, values[: len(terms)])
                if not np.isfinite(score):
                    diverged = True
                    break
                nll = values[scored.index(_gradients.LIKELIHOOD)]
                validation_scores.append(score)
                validation_log_likelihoods.append(-nll)
                for term, value in zip(terms, values):
                    validation_terms[term.name].append(value)
                # the exact validation NLL, each other term of the objective by name, and
                # (for an objective other than the likelihood) the monitored objective itself
                postfix["val_nll"] = f"{nll:.4f}"
                for term, value in zip(terms, values):
                    if term != _gradients.LIKELIHOOD:
                        postfix[f"val_{term.name}"] = f"{value:.4f}"
                if objective.label != "nll":
                    postfix["val_objective"] = f"{-score:.4f}"
            else:
                score = -loss
            bar.set_postfix(postfix)
            status, decision = loop.stopping.update(status, score, n_epochs)
            if decision.improved:
                best = None  # free the old copy first: at most one extra copy of the parameters
                best = device_copy(monitored)
            if decision.action == "spike":
                # back to the best parameters, with a fresh optimizer and a lower rate
                rate *= loop.stopping.rate_factor
                state = restart_at(best, rate)
            elif decision.action == "reduce":
                rate *= loop.stopping.rate_factor
                state = state._replace(opt_state=with_rate_scale(state.opt_state, rate))
            converged = decision.action == "stop"
            report("epoch_end", state)
            if converged:
                break
    except BaseException as error:
        failure = peer_failure(error) if spans_processes(loop.mesh) else None
        if failure is not None:  # another process is gone, and the job's arrays with it
            raise failure from error
        # Interrupted (e.g. KeyboardInterrupt) inside an epoch, whose input was donated: hand
        # the best parameters seen to the callback, then re-raise.
        # (Between dropping the old best copy and making the new one, the state is that copy.)
        report("interrupted", restart_at(best, rate) if best is not None else state)
        raise
    finally:
        bar.close()

    if diverged:
        state = restart_at(best, rate)
    elif loop.val is not None or averaged:
        # the kept parameters; an average continues from them
        state = TrainState(best[0], best[1], restart_average(state.opt_state, best))
    return state, history()
