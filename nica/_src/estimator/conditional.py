"""``ConditionalNonlinearICA``: identifiable nonlinear ICA with an auxiliary variable (eq. 4)."""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import numpy as np
from numpy.typing import ArrayLike
from sklearn.utils import check_random_state
from sklearn.utils.validation import _num_samples, check_is_fitted, validate_data

from nica._src import objectives as _objectives
from nica._src._checks import Boolean, Interval, Options, check_count
from nica._src.conditional import MLPConditional, mlp_conditional, segment_conditional
from nica._src.estimator.base import BaseRelativeGradientICA
from nica._src.estimator.inference import precision
from nica._src.estimator.labels import (
    UNSEEN_IN_A_CONTINUED_FIT,
    UNSEEN_IN_SCORE,
    as_continuous,
    check_label_kinds,
    encode_labels,
    fit_labels,
    resolve_aux_type,
)
from nica._src.estimator.selection import check_candidates, fit_candidates, is_candidate_list
from nica._src.network import forward_trace
from nica._src.priors import LearnedPrior
from nica._src.sharding import fetch
from nica._src.training import map_row_blocks, segment_block_rows

__all__ = ["ConditionalNonlinearICA"]

# averaging="auto" with more than one layer: half an epoch (chosen on data seeds 100-104, see the
# benchmarks page: no validation jumps, higher MCC at every depth, about twice the epochs).
_AUTO_AVERAGING_CONDITIONAL = 0.5


@partial(jax.jit, static_argnames=("activation", "prior", "block"))
def _observation_log_posterior(params, X, n, activation, prior, prior_params, block):
    """``log p(u | x)`` per row of the padded ``X`` (the first ``n`` rows are real) and segment:
    one run of the network, then the prior's label posterior, block by block (jitted;
    ``activation`` and ``prior`` resolved objects; every row count of a bucket shares it)."""

    def rows(X):
        return prior.label_log_posterior(prior_params, forward_trace(params, X, activation)[0])

    return map_row_blocks(rows, n, block, X)


# ConditionalNonlinearICA(contrastive_weight="auto"): the hybrid objective's weight for discrete
# labels (0, the exact likelihood, for a continuous u), and the network depth of the estimator.
# Chosen on data seeds 100-104 (and 1, 2 for Gaussian sources) of the segment recipe, D = 5 and
# 10, 2-4 mixing layers: a 6-layer network with alpha = 2 (held-out MCC at 4 mixing layers 0.856
# against 0.691 for 3 layers and alpha = 0, 0.729 for 6 layers and alpha = 0; alpha = 5: 0.844,
# alpha = 20: 0.817), 0.939 at 3 mixing layers (0.863).
_AUTO_CONTRASTIVE_WEIGHT = 2.0
# A learned base (e.g. "logistic_mixture") gets alpha = 0: on the real-signal benchmark's choice
# seed 0 (POWER, ConditionalNonlinearICA(prior="logistic_mixture")), held-out MCC 0.976 with
# alpha = 0 against 0.899 with alpha = 2 at one mixing layer (28 s against 115 s), 0.966 against
# 0.966 at two (98 s against 590 s): its label posterior scores every segment with the mixture.

_CONTINUOUS_CONTRASTIVE = (
    "contrastive_weight > 0 needs a discrete auxiliary variable (segment labels): the hybrid "
    "objective's cross-entropy is over the segments, and no analogue for a continuous u is "
    "implemented; use contrastive_weight=0."
)


class ConditionalNonlinearICA(BaseRelativeGradientICA):
    """Nonlinear ICA with an auxiliary variable: exact maximum likelihood of ``p(x | u)`` (eq. 4).

    The sources are conditionally independent given an observed auxiliary variable ``u``
    (passed as ``y``): a segment label, as in the segment-modulated (TCL) setting, or a
    continuous variable.  Each source follows the ``prior`` family with a scale (and location)
    that depends on ``u`` and is learned jointly with the network: the network's layers get the
    relative gradient, the prior's parameters the ordinary gradient, and both go to one optax
    optimizer.  Unlike the factorized model, this one is identifiable (Hyvärinen et al., 2019).

    Parameters
    ----------
    n_layers : int, default=6
        Number of square layers.  Six layers with the hybrid objective (below) separated
        deeper mixing than three (see the defaults section of the benchmarks page); shallow
        mixing does not need them, and each layer adds ``O(B·D²)`` to a step.
    activation : str or Activation, default="smooth_leaky_relu"
    prior : str, Prior or list of them, default="laplace"
        The base family of each conditional source density.  ``"logistic_mixture"`` learns
        the family's shape too (shared by every ``u``, modulated per ``u`` by the scale and
        location).  A list of families, e.g. ``["laplace", "logistic_mixture"]``: each is
        fitted in turn with the same settings and ``random_state``, and the model that gives
        the validation rows the highest exact log-likelihood is kept (``prior_``,
        ``candidate_scores_``); it needs ``early_stopping=True``, costs one fit per family and
        cannot be continued by ``warm_start``/``partial_fit`` or checkpointed.
    learn_location : bool, default=True
        Learn a per-``u`` location as well as a per-``u`` log-scale.
    aux_type : {"auto", "discrete", "continuous"}, default="auto"
        How ``y`` is read.  ``"auto"``: continuous if ``y`` holds floats that are not all
        whole numbers (:func:`sklearn.utils.multiclass.type_of_target` calls them continuous),
        otherwise discrete labels (ints, bools, strings, whole-number floats).  Labels are
        names of one kind: a mix (``True`` with ``1``, ``"1"`` with ``1``) is refused.  Labels
        with more segments than half the rows, or a segment of one row, warn: a time index
        given as labels makes one-row segments, whose scale and location cannot be estimated;
        pass ``aux_type="continuous"`` for it, or window labels (``y // window``) for segments.
    hidden_units : int, default=32
        Width of the network of ``u`` that gives the prior's parameters (continuous ``u`` only).
    contrastive_weight : float or "auto", default="auto"
        ``α >= 0``, discrete ``u`` only; ``"auto"``: ``α = 2`` for discrete labels and a
        fixed-shape ``prior``, ``0`` (the exact likelihood) for a continuous ``u`` or a learned
        base such as ``"logistic_mixture"`` (the resolved value is ``contrastive_weight_``).  ``α > 0`` fits the *hybrid* objective, the mean
        negative log-likelihood of ``x`` given ``u`` plus ``α`` times the mean cross-entropy of
        ``u`` given ``x``: a hybrid generative–discriminative maximum likelihood.  The second term is the model's
        own label posterior with a uniform label prior, ``log p(u | x) = log p(g(x) | u) −
        logsumexp_u' log p(g(x) | u')`` (the Jacobian cancels; the classifier that
        time-contrastive learning trains, made from the same network and per-segment scales and
        locations), so it costs one run of the network and ``n_samples × n_segments ×
        n_features`` per batch; the layers still get the cheap relative gradient (the two
        terms' back-propagated errors are summed first).  Why: the classification term prefers
        the basin of parameters in which the sources separate the segments, where the
        likelihood alone can settle in a worse local optimum with deep mixing.  What it costs:
        the fitted model is no longer the maximum-likelihood estimate (its likelihood is
        usually a little lower).  With ``early_stopping`` the monitored score is the validation
        hybrid objective (validation log-likelihood − α · validation cross-entropy), so the
        stopping rule matches what is optimised; ``loss_curve_``, ``validation_scores_`` and
        ``init_scores_`` then hold that objective (``validation_log_likelihoods_`` the exact
        validation log-likelihood of each epoch), while :meth:`score` and
        :meth:`score_samples` stay the exact log-likelihood.  No analogue is implemented for a
        continuous ``u`` (``α > 0`` then raises ``ValueError``).  ``0``: exact maximum
        likelihood.  Leave it at ``"auto"`` when ``objective`` is given.
    objective : "auto", str or Objective, default="auto"
        What the fit minimises and monitors (:mod:`nica.objectives`).  ``"auto"``: the
        likelihood plus ``contrastive_weight_`` times the label cross-entropy (above).  An
        objective, e.g. ``likelihood() + 5 * label_cross_entropy()`` or one with a term of your
        own, is used as given (``contrastive_weight_`` is then the weight of its
        ``label_cross_entropy`` term, 0 without one).  The resolved objective is ``objective_``.
    averaging : float or "auto", default="auto"
        The time constant, in epochs, of the running average of the parameters that is
        validated, kept and returned (as in :class:`NonlinearICA`); ``"auto"``: half an epoch
        with more than one layer, ``0`` (the last iterate) for one layer.  Chosen on data seeds
        100–104 of the segment benchmark (see the benchmarks page): without it the hybrid
        objective's validation score jumped by up to 0.5 nats between epochs; with it by at
        most about 0.1, and the held-out MCC was higher at every depth tried, for about twice
        the epochs.
    bias, optimizer, learning_rate, batch_size, max_iter, tol, early_stopping, \
validation_fraction, n_iter_no_change, schedule, n_init, init, gradient, whiten, n_components, \
warm_start, random_state, verbose, parallel
        As in :class:`NonlinearICA`.
    checkpoint_path : str, path-like or None, default=None
        As in :class:`NonlinearICA`: save the fit in progress to this file every
        ``checkpoint_every`` and once more when it ends, each written under a temporary name
        and renamed.  A checkpoint is a fitted estimator at the best parameters so far, with
        what the fit needs to continue exactly; it records the auxiliary variable too (its
        labels or standardisation, and a hash of the encoded ``u`` beside the data's), so that
        the loaded checkpoint with ``warm_start=True``, fitted on the same ``X`` and ``y``, runs
        the epochs left and ends as the uninterrupted fit would have, epoch for epoch; with
        another ``X`` or ``y`` it continues as an ordinary warm start, with a ``UserWarning``.
        Needs ``n_init=1``; ``partial_fit`` writes no checkpoints; a Ctrl-C during ``fit``
        takes effect when the running epoch ends, once its checkpoint is written.  The command
        line: ``nica fit DATA --aux U --checkpoint FILE`` and ``nica fit DATA --aux U --resume
        FILE``.
    checkpoint_every : int or datetime.timedelta, default=1
        As in :class:`NonlinearICA`: every this many epochs, or once this much time has passed.

    Attributes
    ----------
    params_, network_params_ : tuple of Layer
        As for :class:`NonlinearICA`: the whole model from raw inputs (pass ``u`` to
        :func:`nica.log_likelihood` as segment codes, ``np.searchsorted(classes_, y)``), and
        the network on pre-processed data.
    prior_params_ : dict of ndarray
        For discrete ``u``: ``log_scale`` (and ``loc``) of shape ``(n_segments, n_features)``,
        in the units of the sources.  For continuous ``u``: the weights of the prior network.
    activation_, prior_ :
        The resolved activation and (conditional) prior objects.
    aux_type_ : {"discrete", "continuous"}
    contrastive_weight_ : float
        The hybrid objective's weight ``α`` the last fit used (``contrastive_weight`` resolved).
    candidate_scores_ : list of float
        With a list of candidate priors only: each family's validation log-likelihood (nats
        per sample), in the order given; the highest was kept.
    objective_ : Objective
        The objective the last fit used (``objective`` resolved; its ``label`` says what
        ``loss_curve_`` and ``validation_scores_`` measure).
    classes_ : ndarray of shape (n_segments,)
        Segment labels seen in ``fit`` (discrete ``u``).
    segment_log_weights_ : ndarray of shape (n_segments,)
        Log-frequencies of the segments in the training data (discrete ``u``), used for the
        marginal likelihood and for sampling when no ``y`` is given.
    loss_curve_ : list of float
        The training objective per epoch, in nats per sample: ``objective_.label`` says which
        (``"nll"``, the training NLL, for the exact likelihood; ``"nll + 2·label_cross_entropy"``
        for the default hybrid objective with discrete labels).
    validation_scores_ : list of float
        Minus the validation objective per epoch (the monitored score); the exact validation
        log-likelihood is ``validation_log_likelihoods_``, each term of the objective by name
        ``validation_terms_`` (``"nll"``, ``"label_cross_entropy"``).
    mean_, whitening_, n_iter_, best_iter_, n_features_in_, \
feature_names_in_, whiten_, n_components_, noise_variance_, gradient_, init_, learning_rate_, init_scores_, \
components_, mixing_, \
validation_log_likelihoods_, validation_terms_, epochs_left_
        As in :class:`NonlinearICA`.

    Notes
    -----
    Model selection: :meth:`score` is the mean conditional log-likelihood, and a segment label
    ``fit`` never saw has no scale or location, so scoring it is a ``ValueError`` that names
    the labels.  Cross-validate with a splitter that puts every segment in every training fold,
    :class:`sklearn.model_selection.StratifiedKFold` with the labels as ``y``:
    ``GridSearchCV(model, grid, cv=StratifiedKFold(3)).fit(X, u)``.  ``cv=3`` cuts
    segment-ordered rows into blocks of whole segments: every fold then scores labels its
    training rows lacked, and ``GridSearchCV`` records NaN scores with a warning that carries
    the message.

    Examples
    --------
    >>> from nica import ConditionalNonlinearICA
    >>> from nica.datasets import make_segmented_mixture
    >>> from nica.metrics import mean_corr_coef
    >>> data = make_segmented_mixture(n_segments=10, n_per_segment=300, n_components=2,
    ...                               n_layers=1, random_state=0)
    >>> model = ConditionalNonlinearICA(n_layers=1, max_iter=30, learning_rate=1e-2, random_state=0)
    >>> model = model.fit(data.X_train, data.u_train)
    >>> bool(mean_corr_coef(data.S_test, model.transform(data.X_test)) > 0.9)
    True
    """

    def __init__(
        self,
        n_layers=6,
        *,
        activation="smooth_leaky_relu",
        prior="laplace",
        learn_location=True,
        aux_type="auto",
        hidden_units=32,
        contrastive_weight="auto",
        objective="auto",
        bias=True,
        optimizer="adam",
        learning_rate="auto",
        batch_size=256,
        max_iter=1000,
        tol=1e-4,
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=10,
        schedule="plateau",
        averaging="auto",
        n_init=1,
        init="auto",
        gradient="auto",
        whiten="auto",
        n_components=None,
        warm_start=False,
        checkpoint_path=None,
        checkpoint_every=1,
        random_state=None,
        verbose=0,
        parallel=None,
    ):
        self.n_layers = n_layers
        self.activation = activation
        self.prior = prior
        self.learn_location = learn_location
        self.aux_type = aux_type
        self.hidden_units = hidden_units
        self.contrastive_weight = contrastive_weight
        self.objective = objective
        self.bias = bias
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.tol = tol
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.schedule = schedule
        self.averaging = averaging
        self.n_init = n_init
        self.init = init
        self.gradient = gradient
        self.whiten = whiten
        self.n_components = n_components
        self.warm_start = warm_start
        self.checkpoint_path = checkpoint_path
        self.checkpoint_every = checkpoint_every
        self.random_state = random_state
        self.verbose = verbose
        self.parallel = parallel

    _warning_stacklevel = 5  # one frame deeper than NonlinearICA (_fit_with_aux)

    _parameter_constraints: dict = {
        **BaseRelativeGradientICA._parameter_constraints,
        "learn_location": [Boolean()],
        "aux_type": [Options(("auto", "discrete", "continuous"))],
        "hidden_units": [Interval(int, 1, 2**31 - 1)],
        "contrastive_weight": [Interval(float, 0, None, "left"), Options(("auto",))],
    }

    def _conditional_prior_hint(self, prior):
        return (
            f"{type(self).__name__} builds the conditional prior itself from its base family; pass "
            f"prior={prior.base!r} (and learn_location, hidden_units as parameters)"
        )

    def _check_objective(self):
        if isinstance(self.objective, str) and self.objective == "auto":
            self._resolve_contrastive_weight(self.aux_type)
            return
        _objectives.get(self.objective)
        if not (isinstance(self.contrastive_weight, str) and self.contrastive_weight == "auto"):
            raise ValueError(
                "give objective or contrastive_weight, not both: contrastive_weight=α is "
                "objective=likelihood() + α * label_cross_entropy()."
            )

    def _build_objective(self, prior):
        if isinstance(self.objective, str) and self.objective == "auto":
            weight = self.contrastive_weight_
            objective = (
                _objectives.likelihood() + weight * _objectives.label_cross_entropy()
                if weight > 0
                else _objectives.likelihood()
            )
        else:
            objective = _objectives.get(self.objective)
            self.contrastive_weight_ = sum(
                w for w, term in objective.terms() if term == _objectives.label_cross_entropy()
            )
        if self.aux_type_ == "continuous" and self.contrastive_weight_ > 0:
            raise ValueError(_CONTINUOUS_CONTRASTIVE)
        objective.check_prior(prior)
        return objective

    def _warm_start_changes(self, prior):
        changed = super()._warm_start_changes(prior)
        fitted = self.prior_
        if bool(self.learn_location) != fitted.learn_location:
            changed.append(f"learn_location ({fitted.learn_location!r} -> {bool(self.learn_location)!r})")
        if isinstance(fitted, MLPConditional) and int(self.hidden_units) != fitted.hidden_units:
            changed.append(f"hidden_units ({fitted.hidden_units!r} -> {int(self.hidden_units)!r})")
        if self.aux_type != "auto" and self.aux_type_ != self.aux_type:
            changed.append(f"aux_type ({self.aux_type_!r} -> {self.aux_type!r})")
        return changed

    # ----------------------------------------------------------------------------------------
    # the auxiliary variable

    def _fit_aux(self, y, *, first_chunk=False):
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1 and y.dtype.kind not in "fc":
            y = y.ravel()
        aux_type = resolve_aux_type(y, self.aux_type)
        self._resolve_contrastive_weight(aux_type)
        # Everything is checked before anything is set: a refused y leaves a fitted model as it was.
        if aux_type == "discrete":
            # a chunk's segment sizes say nothing of the stream's: no warning for partial_fit
            classes, counts = fit_labels(y, stacklevel=self._warning_stacklevel, warn_small=not first_chunk)
            self.classes_, self.segment_log_weights_ = classes, np.log(counts / counts.sum())
        else:
            U = as_continuous(y)
            scale = U.std(axis=0)
            self.aux_mean_, self.aux_scale_ = U.mean(axis=0), np.where(scale > 0, scale, 1.0)
        self.aux_type_ = aux_type

    def _auto_averaging(self):
        return _AUTO_AVERAGING_CONDITIONAL if int(self.n_layers) > 1 else 0.0

    def _resolve_contrastive_weight(self, aux_type, base=None):
        """``contrastive_weight`` checked and resolved for ``aux_type`` and the ``base`` family
        (``"auto"``: ``_AUTO_CONTRASTIVE_WEIGHT`` for discrete labels and a fixed-shape base, 0
        for a continuous ``u`` or a learned base); ``α > 0`` with a continuous ``u`` is refused."""
        if isinstance(self.contrastive_weight, str):
            if self.contrastive_weight != "auto":
                raise ValueError(
                    f"contrastive_weight must be 'auto' or a finite real number >= 0; got {self.contrastive_weight!r}."
                )
            learned = isinstance(base, LearnedPrior)
            return _AUTO_CONTRASTIVE_WEIGHT if aux_type == "discrete" and not learned else 0.0
        weight = float(self.contrastive_weight)
        if aux_type == "continuous" and weight > 0:
            raise ValueError(_CONTINUOUS_CONTRASTIVE)
        return weight

    def _encode_aux(self, y, n_samples, dtype, unseen_fix=UNSEEN_IN_SCORE):
        """Segment codes (int32) or standardized continuous values (``dtype``), validated."""
        if y is None:
            raise ValueError(f"{type(self).__name__} needs the auxiliary variable: pass it as y.")
        check_label_kinds(y)
        y = np.asarray(y)
        if y.ndim == 0 or y.shape[0] != n_samples:
            raise ValueError(f"y must have one entry per sample ({n_samples}); got shape {np.shape(y)}.")
        if self.aux_type_ == "discrete":
            return encode_labels(y, self.classes_, unseen_fix)
        U = as_continuous(y)
        if U.shape[1] != self.aux_mean_.shape[0]:
            raise ValueError(
                f"y has {U.shape[1]} auxiliary dimensions but the model was fitted with {self.aux_mean_.shape[0]}."
            )
        return ((U - self.aux_mean_) / self.aux_scale_).astype(dtype)

    def _build_prior(self, base_prior):
        if self.aux_type_ == "discrete":
            return segment_conditional(base_prior, int(self.classes_.size), learn_location=bool(self.learn_location))
        return mlp_conditional(
            base_prior,
            int(self.aux_mean_.shape[0]),
            hidden_units=int(self.hidden_units),
            learn_location=bool(self.learn_location),
        )

    def _label_log_posterior(self, params, prior_params, X):
        """``log p(u | x)`` of pre-processed host rows, in blocks: a NumPy array ``(n_samples, n_segments)``."""
        X, _, n, block = self._padded(X, None, segment_block_rows(self.classes_.size))
        return fetch(_observation_log_posterior(params, X, n, self.activation_, self.prior_, prior_params, block))[:n]

    # ----------------------------------------------------------------------------------------
    # fitting

    def _fit_with_aux(self, X, y, *, reset, epochs, validate, warn_max_iter, partial=False):
        setup = self._check_hyperparameters()

        def checked():
            check_label_kinds(y)  # before NumPy reads [True, 1] as [1, 1]
            return validate_data(
                self,
                X,
                y,
                dtype=[np.float64, np.float32],
                ensure_min_samples=1 if partial else 2,
                multi_output=True,
                y_numeric=False,
                reset=reset,
            )

        X, y = self._process_rows(checked, ["X", "y"])
        if reset:
            if partial:
                self._check_first_chunk(X)
            self._fit_aux(y, first_chunk=partial)
        self.contrastive_weight_ = self._resolve_contrastive_weight(self.aux_type_, setup.prior)  # also warm
        fix = UNSEEN_IN_SCORE if reset else UNSEEN_IN_A_CONTINUED_FIT
        U = self._encode_aux(y, X.shape[0], X.dtype if reset else self._dtype, fix)
        return self._fit(
            X,
            U,
            setup,
            reset=reset,
            epochs=epochs,
            validate=validate,
            warn_max_iter=warn_max_iter,
            checkpoint=not partial,
        )

    @property
    def epochs_left_(self):
        """As :attr:`NonlinearICA.epochs_left_`: the epochs left of the interrupted fit a
        checkpoint was written in (``0`` for a finished fit)."""
        check_is_fitted(self)
        resume = self.__dict__.get("_resume")
        return 0 if resume is None else int(resume["epochs_left"])

    def fit(self, X: ArrayLike, y: ArrayLike) -> ConditionalNonlinearICA:
        """Fit ``p(x | u)`` by exact maximum likelihood.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_aux)
            The auxiliary variable ``u``: segment labels (any hashable labels) or continuous
            values.

        Returns
        -------
        self : ConditionalNonlinearICA
        """
        if is_candidate_list(self.prior):
            continuing = bool(self.warm_start) and self.__sklearn_is_fitted__()
            return fit_candidates(self, X, y, check_candidates(self, continuing=continuing))
        reset = not self._continue_fit(self.warm_start)
        return self._fit_with_aux(
            X, y, reset=reset, epochs=self.max_iter, validate=self.early_stopping, warn_max_iter=True
        )

    def partial_fit(self, X: ArrayLike, y: ArrayLike) -> ConditionalNonlinearICA:
        """One epoch over a chunk of data; the first call also fixes the segment labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_aux)

        Returns
        -------
        self : ConditionalNonlinearICA
        """
        if is_candidate_list(self.prior):
            check_candidates(self, continuing=True)
        return self._fit_with_aux(
            X, y, reset=not self._continue_fit(True), epochs=1, validate=False, warn_max_iter=False, partial=True
        )

    # ----------------------------------------------------------------------------------------
    # likelihood and sampling

    def score_samples(self, X: ArrayLike, y: ArrayLike | None = None) -> np.ndarray:
        """Exact conditional log-likelihood ``log p(x | u)`` of each sample, in the units of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_aux), optional
            The auxiliary variable.  For discrete ``u`` it may be omitted: the result is then
            the marginal ``log Σ_u π_u p(x | u)`` with the training frequencies ``π_u`` (the
            network runs once; the prior's segment mixture,
            :meth:`nica.priors.SegmentConditional.marginal_log_prob`, scores every segment).

        Returns
        -------
        log_likelihood : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        n_samples = _num_samples(X)
        if y is not None:
            return self._score_samples(X, self._encode_aux(y, n_samples, self._dtype))
        if self.aux_type_ != "discrete":
            raise ValueError("y is required to score a model with a continuous auxiliary variable.")
        return self._score_samples(X, None, log_weights=self.segment_log_weights_)

    def score(self, X: ArrayLike, y: ArrayLike | None = None) -> float:
        """Mean exact log-likelihood per sample (conditional on ``y`` when given).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like, optional

        Returns
        -------
        float
        """
        return float(np.mean(self.score_samples(X, y)))

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """The model's posterior of the segment label, ``p(u | x)``, with a uniform label prior.

        ``p(u | x) ∝ p(g(x) | u)``: the Jacobian term is the same for every segment and
        cancels.  This is the classifier that ``contrastive_weight`` trains; it does not use
        the training frequencies ``segment_log_weights_``.  Discrete ``u`` only.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_segments)
            Columns in the order of ``classes_``; rows sum to one.
        """
        check_is_fitted(self)
        if self.aux_type_ != "discrete":
            raise ValueError(
                "predict_proba needs a model fitted with discrete segment labels; this one "
                "has a continuous auxiliary variable."
            )
        X = self._preprocess(self._validated(X))
        with precision(self._dtype):
            params, prior_params = self._jax_params()
            log_post = self._label_log_posterior(params, prior_params, X)
            return np.exp(log_post)

    def predict(self, X: ArrayLike) -> np.ndarray:
        """The most probable segment label of each row under :meth:`predict_proba`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Entries of ``classes_``.
        """
        proba = self.predict_proba(X)  # checks that the model is fitted first
        return self.classes_[np.argmax(proba, axis=1)]

    def sample(self, n_samples: int = 1, y: Any = None, random_state: Any = None) -> np.ndarray:
        """Draw ``x ~ p(x | u)``.

        Parameters
        ----------
        n_samples : int, default=1
            Ignored when ``y`` is an array (one sample per entry).
        y : label, array-like or None, default=None
            One label (or one continuous value) for all samples, one per sample, or ``None``
            (discrete ``u`` only) to draw segments with their training frequencies.
        random_state : int, RandomState instance or None, default=None

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        """
        check_is_fitted(self)
        rng = check_random_state(random_state)
        if y is None:
            if self.aux_type_ != "discrete":
                raise ValueError("y is required to sample from a model with a continuous auxiliary variable.")
            n = check_count(n_samples, "n_samples")
            U = rng.choice(self.classes_.size, size=n, p=np.exp(self.segment_log_weights_)).astype(np.int32)
        else:
            check_label_kinds(y)
            y = np.asarray(y)
            if y.ndim == 0 or (
                self.aux_type_ == "continuous"
                and y.ndim == 1
                and self.aux_mean_.shape[0] > 1
                and y.shape[0] == self.aux_mean_.shape[0]
            ):
                y = np.repeat(y[None, ...], check_count(n_samples, "n_samples"), axis=0)
            U = self._encode_aux(y, y.shape[0], self._dtype)
        return self._sample(U, U.shape[0], rng)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags
