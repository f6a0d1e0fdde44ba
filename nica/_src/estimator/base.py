"""What both estimators share: the hyperparameter table, pre-processing, the fit (its starts,
warm starts and checkpoints over :func:`nica.fit_to_data`), and the fitted state.

The estimators are thin scikit-learn shells: ``fit`` checks the hyperparameters once against
the class's ``_parameter_constraints`` table, pre-processes the data, builds the objective and
calls the fit loop; the fitted state stays on the device and is exposed as NumPy views.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state

from nica._src import activations as _activations
from nica._src import checkpoint as _checkpoint
from nica._src import gradients as _gradients
from nica._src import persistence
from nica._src import priors as _priors
from nica._src._checks import Boolean, Interval, Options, OptionsFrom, check_parameters
from nica._src.distributed import check_agree
from nica._src.estimator.inference import FittedState, precision
from nica._src.estimator.placement import Placement
from nica._src.estimator.preprocessing import (
    WHITEN_OPTIONS,
    fastica_rotation,
    fit_whitening,
)
from nica._src.fit_state import (
    init_fit_state,
    is_fit_state,
    match_averaging,
    opt_state_fits,
)
from nica._src.fitting import fit_to_data, scoring_rows, validation_rows
from nica._src.history import FitProgress
from nica._src.interrupts import DeferredInterrupts
from nica._src.network import Layer, init_params
from nica._src.sharding import place_rows
from nica._src.stopping import SCHEDULES
from nica._src.training import PaddedRows, TrainState, init_train_state, pad_rows, training_rows

__all__ = ["BaseRelativeGradientICA", "precision", "AUTO_RATE"]

# whiten="auto": PCA whitening (an O(D³) eigendecomposition and a D×D matrix) up to this many
# features, per-feature standardization (O(n·D)) above.
_AUTO_WHITEN_MAX_FEATURES = 1024
# gradient="auto": the equivariant form while its D×D×D transport per layer costs at most about
# as much as the step's own products (n_features up to a few times the batch).
_AUTO_EQUIVARIANT_BATCH_RATIO = 4
_INIT_OPTIONS = ("auto", "fastica", "random")
# learning_rate="auto": Adam's rate from a random start, and from the FastICA start.
AUTO_RATE = 1e-2
_AUTO_RATE_FROM_FASTICA = 1e-3
# ... from a random start above 64 sources, AUTO_RATE·sqrt(64/D) (AUTO_RATE diverged at D = 256)
_AUTO_RATE_WIDTH = 64
_PARALLEL_OPTIONS = (None, "data", "model")


@functools.lru_cache(maxsize=64)
def _optimizer_from_name(name: str, learning_rate: float):
    factory = getattr(optax, name, None)
    if not callable(factory):
        raise ValueError(
            f"optimizer={name!r} is not an optax optimizer; use a name such as 'adam' or 'sgd', "
            "an optax factory (optax.adam) or an optax.GradientTransformation."
        )
    return factory(learning_rate)


@functools.lru_cache(maxsize=64)
def _probe_optimizer(optimizer):
    """Initialise and update ``optimizer`` on a tiny parameter pair, abstractly (no computation)."""
    params = ((Layer(jnp.eye(2), jnp.zeros(2)),), {"loc": jnp.zeros((2, 2))})
    state = jax.eval_shape(optimizer.init, params)
    jax.eval_shape(optimizer.update, params, state, params)


def _check_optimizer(optimizer, spec):
    """``optimizer`` (or, if callable, what it returns) as an optax ``GradientTransformation``
    that works on nica's parameter pairs ``(params, prior_params)``; ``spec`` is what the user
    passed, for the messages."""
    if callable(optimizer) and not isinstance(optimizer, optax.GradientTransformation):
        try:
            optimizer = optimizer()
        except Exception as error:  # the factory a user named or passed failed: say which
            if isinstance(error, (ValueError, TypeError)) and str(error).startswith("optimizer"):
                raise  # nica's own messages name the parameter already
            raise TypeError(f"optimizer={spec!r} could not be built: {type(error).__name__}: {error}") from None
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(
            f"optimizer must be an optax.GradientTransformation (e.g. optax.adam(1e-2)); "
            f"got {type(optimizer).__name__}."
        )
    try:
        _probe_optimizer(optimizer)
    except Exception as error:  # any failure of a user's transformation, named and re-raised
        raise TypeError(
            f"optimizer={spec!r} does not work as an optax optimizer: initialising or updating it "
            f"on a parameter pytree raised {type(error).__name__}: {str(error)[:200]}"
        ) from None
    return optimizer


class Setup(NamedTuple):
    """The resolved objects of a fit: activation, (base) prior and optimizer."""

    activation: Any
    prior: Any
    optimizer: optax.GradientTransformation


class _Run(NamedTuple):
    """One start of a fit (``n_init`` keeps the best)."""

    best_score: float
    converged: bool
    diverged: bool
    state: TrainState
    loss_curve: list
    validation_scores: list
    validation_log_likelihoods: list
    validation_terms: dict
    n_iter: int
    best_iter: int


class BaseRelativeGradientICA(FittedState, Placement, ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Shared machinery of nica's estimators; not public (use :class:`~nica.NonlinearICA` or
    :class:`~nica.ConditionalNonlinearICA`)."""

    _warning_stacklevel = 4  # ConvergenceWarnings point at the user's call to fit

    # The hyperparameters' constraints, checked once at the start of fit and partial_fit (a value
    # may satisfy any one of its list); objects (activation, prior, optimizer, objective) are
    # resolved by their registries instead.
    _parameter_constraints: dict = {
        "n_layers": [Interval(int, 1)],
        "bias": [Boolean()],
        "learning_rate": [Interval(float, 0, None, "neither"), Options(("auto",))],
        "batch_size": [Interval(int, 1)],
        # counts bounded by fitting.MAX_COUNT (2**31 - 1): beyond it a fit could not run anyway,
        # and the progress bar and the list of starts would fail or hang on the count
        "max_iter": [Interval(int, 1, 2**31 - 1)],
        "tol": [Interval(float, 0, None, "left")],
        "early_stopping": [Boolean()],
        "validation_fraction": [Interval(float, 0, 1, "neither")],
        "n_iter_no_change": [Interval(int, 1)],
        "schedule": [Options(SCHEDULES)],
        "averaging": [Interval(float, 0, None, "left"), Options(("auto",))],
        "n_init": [Interval(int, 1, 2**31 - 1)],
        "init": [Options(_INIT_OPTIONS)],
        "gradient": [OptionsFrom(lambda: ("auto", *_gradients.names()))],
        "whiten": [Options(WHITEN_OPTIONS)],
        "n_components": [Interval(int, 1), Options((None,))],
        "warm_start": [Boolean()],
        "verbose": [Boolean(), Interval(int, 0)],
        "parallel": [Options(_PARALLEL_OPTIONS)],
    }

    # ----------------------------------------------------------------------------------------
    # hyperparameters (checked before any data or JAX work)

    def _check_hyperparameters(self) -> Setup:
        check_parameters(self._parameter_constraints, self.get_params(deep=False))
        if self.parallel == "data" and self.batch_size % jax.device_count():
            raise ValueError(
                f"batch_size={self.batch_size} must be a multiple of the number of devices "
                f"({jax.device_count()}) with parallel='data': each batch is split evenly over "
                "the devices."
            )
        if self.n_components is not None and self.whiten not in ("auto", "unit-variance"):
            raise ValueError(
                f"n_components={self.n_components} needs PCA whitening (whiten='unit-variance' or 'auto'), "
                f"which chooses the directions kept; got whiten={self.whiten!r}."
            )
        _checkpoint.check_checkpoint_params(self)
        self._check_objective()
        prior = _priors.get(self.prior)
        if prior.conditional:
            raise ValueError(
                f"{type(self).__name__}'s prior must be a factorized family (a name or a factorized "
                f"nica.priors object); got the conditional {type(prior).__name__}: "
                f"{self._conditional_prior_hint(prior)}."
            )
        optimizer = _check_optimizer(self._resolve_optimizer, self.optimizer)
        return Setup(_activations.get(self.activation), prior, optimizer)

    def _conditional_prior_hint(self, prior):  # pragma: no cover - overridden
        raise NotImplementedError

    def _check_objective(self):  # pragma: no cover - overridden
        raise NotImplementedError

    def _averaging(self):
        """The running average's time constant in epochs (``averaging="auto"`` resolved)."""
        return self._auto_averaging() if isinstance(self.averaging, str) else float(self.averaging)

    def _auto_averaging(self):  # pragma: no cover - overridden
        raise NotImplementedError

    def _base_learning_rate(self):
        """The rate the optimizer is built with; ``"auto"`` builds it with ``AUTO_RATE`` and
        scales the first steps by ``_initial_rate_scale``."""
        return AUTO_RATE if isinstance(self.learning_rate, str) else float(self.learning_rate)

    def _initial_rate_scale(self):
        """``learning_rate="auto"``: a tenth of the rate when the fit refines a FastICA start
        (there, larger steps add noise to a solution that is already close), the whole rate
        otherwise.  A ready optax transformation takes no rate and is left as it is."""
        auto = isinstance(self.learning_rate, str)
        ready = isinstance(self.optimizer, optax.GradientTransformation)
        if auto and not ready and self.init_ == "fastica":
            return _AUTO_RATE_FROM_FASTICA / AUTO_RATE
        if auto and not ready:  # Adam's D×D step grows with D: sqrt(64/D) of the rate above 64 sources
            return min(1.0, (_AUTO_RATE_WIDTH / self.n_components_) ** 0.5)
        return 1.0

    def _resolve_optimizer(self):
        opt = self.optimizer
        if isinstance(opt, str):
            return _optimizer_from_name(opt, self._base_learning_rate())
        if isinstance(opt, optax.GradientTransformation):
            return opt
        if callable(opt):
            result = opt(self._base_learning_rate())
            if not isinstance(result, optax.GradientTransformation):
                raise TypeError(
                    "optimizer factory must return an optax.GradientTransformation; "
                    f"{opt!r}(learning_rate) returned {type(result).__name__}."
                )
            return result
        raise TypeError(
            "optimizer must be an optax name, an optax factory or an optax.GradientTransformation; "
            f"got {type(opt).__name__}."
        )

    def _resolve_whiten(self, n_features):
        if self.whiten == "auto" and self.n_components is not None:
            return "unit-variance"  # the principal directions choose what is kept
        if self.whiten == "auto":
            return "unit-variance" if n_features <= _AUTO_WHITEN_MAX_FEATURES else "standardize"
        return self.whiten

    def _resolve_init(self):
        if self.init == "auto":
            linear_whitened = self.n_layers == 1 and self.whiten_ == "unit-variance"
            return "fastica" if linear_whitened else "random"
        return self.init

    def _resolve_gradient(self, n_features):
        if self.gradient == "auto":
            small = n_features <= _AUTO_EQUIVARIANT_BATCH_RATIO * int(self.batch_size)
            return "equivariant" if small else "relative"
        return self.gradient

    # ----------------------------------------------------------------------------------------
    # warm starts

    def _warm_start_changes(self, prior):
        """The hyperparameters changed since the fitted state was made that it cannot continue
        under (a new network or pre-processing is needed): their names, with old and new values."""
        changed = []

        def compare(name, old, new):
            if old != new:
                changed.append(f"{name} ({old!r} -> {new!r})")

        compare("n_layers", len(self._state.params), int(self.n_layers))
        compare("bias", self._state.params[0].b is not None, bool(self.bias))
        compare("whiten", self.whiten_, self._resolve_whiten(self.n_features_in_))
        compare("n_components", self._n_sources(), self._resolve_n_components(self.n_features_in_))
        compare("prior", self.prior_.base if self.prior_.conditional else self.prior_, prior)
        return changed

    def _continue_fit(self, warm):
        """Whether ``fit`` (``warm=self.warm_start``) or ``partial_fit`` (``warm=True``) continues
        from the fitted state; hyperparameters changed since are never silently ignored.

        A change the fitted network or pre-processing cannot follow (``n_layers``, ``bias``,
        ``whiten``, ``prior``; ``learn_location``, ``hidden_units``, ``aux_type`` for the
        conditional model) starts a new fit, with a ``UserWarning``.  A new ``gradient``, or an
        optimizer whose state has another structure, keeps the network and restarts the
        optimizer, with a ``UserWarning``.  Everything else (``activation``, ``learning_rate``,
        ``max_iter``, ...) takes effect as it is.
        """
        if not (warm and self.__sklearn_is_fitted__()):
            return False
        setup = self._check_hyperparameters()
        name = type(self).__name__
        changed = self._warm_start_changes(setup.prior)
        if changed:
            warnings.warn(
                f"{name}: {', '.join(changed)} changed since the fitted state was made, which "
                "cannot continue under the new value(s); this fit starts anew.",
                UserWarning,
                stacklevel=3,
            )
            return False
        gradient = self._resolve_gradient(self._n_sources())
        state = TrainState(*self._state)
        trainable = (state.params, state.prior_params)
        with precision(self._dtype):
            fits = is_fit_state(state.opt_state) and opt_state_fits(
                setup.optimizer, state.opt_state["optimizer"], trainable
            )
            if gradient != self.gradient_ or not fits:
                what = f"gradient ({self.gradient_!r} -> {gradient!r})" if gradient != self.gradient_ else "optimizer"
                warnings.warn(
                    f"{name}: the {what} changed since the fitted state was made; the fit "
                    "continues from the fitted network with a restarted optimizer.",
                    UserWarning,
                    stacklevel=3,
                )
                self.gradient_ = gradient
                self._state = init_fit_state(
                    init_train_state(setup.optimizer, *trainable), gradient, averaged=self._averaging() > 0
                )
        return True

    # ----------------------------------------------------------------------------------------
    # pre-processing: an affine map with a known log-determinant

    def _resolve_n_components(self, n_features):
        """The number of sources: ``n_components``, or every feature; more than the features
        is refused (it cannot be whitened to)."""
        if self.n_components is None:
            return n_features
        if self.n_components > n_features:
            raise ValueError(
                f"n_components={self.n_components} must be at most the number of features, got X with "
                f"{n_features} features."
            )
        return int(self.n_components)

    def _check_first_chunk(self, X):
        """partial_fit's first chunk fits the whitening that every later chunk keeps: refuse one
        with no more rows than the directions the whitening keeps (it cannot estimate them)."""
        n_samples, n_features = X.shape
        kept = self._resolve_n_components(n_features)
        if self._resolve_whiten(n_features) and n_samples <= kept:
            raise ValueError(
                f"partial_fit's first chunk fits the whitening that every later chunk keeps, so it "
                f"needs more rows than the {kept} directions the model keeps; got {n_samples} rows. "
                f"Pass a first chunk of at least {kept + 1} rows (later chunks may be of any size), "
                "or whiten=False."
            )

    def _fit_preprocessing(self, X):
        self.n_components_ = self._resolve_n_components(X.shape[1])
        self.whiten_ = self._resolve_whiten(X.shape[1])
        reduced = self.n_components_ < X.shape[1]
        whitening = fit_whitening(
            X, self.whiten_, self.n_components_ if reduced else None, stacklevel=self._warning_stacklevel + 1
        )
        self.mean_ = whitening.mean
        self._whitening_matrix, self._whitening_scale = whitening.matrix, whitening.scale
        self._log_det_whitening = whitening.log_det
        self._discarded, self.noise_variance_ = whitening.discarded, whitening.noise_variance

    # ----------------------------------------------------------------------------------------
    # fitting

    def _fit(self, X, U, setup: Setup, *, reset, epochs, validate, warn_max_iter=True, checkpoint=False):
        """Fit (``reset``) or continue fitting on ``X`` (and the encoded ``U``): every start of
        ``n_init`` from ``random_state``, the best kept; checkpoints and their resumption."""
        # Checkpoints (fit only): a loaded checkpoint's resume record replays the interrupted fit.
        # (over several processes, each reads the checkpoint it was given, and they must agree)
        distributed, resume = self._distributed(), None
        if checkpoint and not reset:
            resume = self._collectively("Reading the checkpoint", _checkpoint.resume_state, self, X, U)
        if distributed:
            check_agree(_checkpoint.describe_resume(resume), "checkpoint to resume from")
        self.__dict__.pop("_resume", None)
        rng = check_random_state(self.random_state)
        if resume is not None:
            rng = np.random.RandomState()
            rng.set_state(resume["rng_state"])
            epochs = _checkpoint.resume_epochs(self, resume)  # the epochs left, to the max_iter now set
        checkpointer = None
        if checkpoint:
            checkpointer = self._collectively(
                "Checking checkpoint_path", self._checkpointer, X, U, rng, resume, reset, epochs
            )
        if reset:
            self._dtype = X.dtype
            self._fit_preprocessing(X)
            self.gradient_ = self._resolve_gradient(self.n_components_)
            self.init_ = self._resolve_init()
            self.learning_rate_ = self._base_learning_rate() * self._initial_rate_scale()
        X = np.asarray(X, dtype=self._dtype)
        # the discarded directions' density (n_components < n_features) is fixed during a fit:
        # the recorded log-likelihoods add its mean over the validation rows (the training rows
        # without validation), so that validation_log_likelihoods_ agree with score()
        R = self._discarded_log_density(X)
        X = self._preprocess(X)
        with precision(self._dtype):
            seeds = [rng.randint(np.iinfo(np.int32).max)]
            mesh = self._mesh()
            train, val = self._split((X, U, R), rng) if validate else ((X, U, R), None)
            score_offset = self._log_det_whitening + float(np.mean((train if val is None else val)[2]))
            train, val = train[:2], None if val is None else val[:2]
            seeds += [rng.randint(np.iinfo(np.int32).max) for _ in range((int(self.n_init) if reset else 1) - 1)]
            # padded to buckets of row counts (on the host): one compilation serves every fold
            train = _device(train, training_rows(len(train[0]), int(self.batch_size)), mesh)
            val = None if val is None else _device(val, scoring_rows(len(val[0]))[1], mesh)
            if reset:
                self.__dict__.pop("_state", None)  # a refit does not hold the old state meanwhile
                self.prior_ = self._build_prior(setup.prior)
            self.activation_ = setup.activation
            self.objective_ = self._build_objective(self.prior_)
            best, scores = None, []
            # Ctrl-C: held to the next epoch's start (after its checkpoint) or to the end of the
            # epochs, then raised; never lost in a garbage-collection callback (nica._src.interrupts)
            with DeferredInterrupts() as interrupts:
                for seed in seeds:
                    state, key = self._start(seed, X, setup, reset, resume)
                    run = self._run_epochs(
                        setup.optimizer, state, train, val, key, epochs, checkpointer, resume, score_offset, interrupts
                    )
                    scores.append(run.best_score)
                    if best is None or run.best_score > best.best_score:
                        best = None  # free the previous best first
                        best = run
            assert best is not None  # n_init >= 1 starts
            self._state, self.loss_curve_, self.validation_scores_ = best.state, best.loss_curve, best.validation_scores
            self.validation_terms_ = best.validation_terms
            self.validation_log_likelihoods_, self.n_iter_, self.best_iter_ = (
                best.validation_log_likelihoods,
                best.n_iter,
                best.best_iter,
            )
            if reset or resume is not None:
                self.init_scores_ = scores
            self._warn(best, warn_max_iter)
            if (reset or resume is not None) and self.n_layers == 1:
                self._fold_linear_bias()
        self._n_features_out = self._n_sources()
        if checkpointer is not None:
            checkpointer.write(self)  # the finished fit (no resume record)
        return self

    def _checkpointer(self, X, U, rng, resume, reset, epochs):
        path, every = _checkpoint.check_checkpoint_params(self)
        if path is None:
            return None
        persistence.check_params(self)  # a checkpoint must be savable: refused before any epoch
        return _checkpoint.Checkpointer(
            path,
            every,
            resume["rng_state"] if resume else rng.get_state(),
            _checkpoint.data_fingerprint(X, U),
            stop_at=(0 if reset else self.n_iter_) + epochs,
        )

    def _start(self, seed, X, setup, reset, resume):
        """The state a start of the fit begins from (on the device) and its shuffling key."""
        key, init_key, prior_key = jax.random.split(jax.random.key(seed), 3)
        averaged = self._averaging() > 0
        if reset:
            params = init_params(init_key, X.shape[1], self.n_layers, bias=self.bias, dtype=self._dtype)
            if self.init_ == "fastica":
                W = jnp.asarray(fastica_rotation(X, seed), dtype=params[0].W.dtype)
                params = (params[0]._replace(W=W),) + tuple(params[1:])
            prior_params = self.prior_.init_params(prior_key, X.shape[1], self._dtype)
            state = init_fit_state(
                init_train_state(setup.optimizer, params, prior_params),
                self.gradient_,
                rate_scale=self._initial_rate_scale(),
                averaged=averaged,
            )
            self.loss_curve_, self.validation_scores_, self.n_iter_, self.best_iter_ = [], [], 0, 0
            self.validation_log_likelihoods_, self.validation_terms_ = [], {}
        else:
            state = TrainState(*self._state)  # (the average's entry as averaging now asks)
            state = state._replace(
                opt_state=match_averaging(state.opt_state, (state.params, state.prior_params), averaged)
            )
            if resume is not None:  # the checkpoint's last epoch, and its next shuffle
                resume["best"] = (state.params, state.prior_params)
                state = TrainState(resume["params"], resume["prior_params"], state.opt_state)
                key = jax.random.wrap_key_data(resume["key"])
            else:  # a warm start: fresh shuffles, not the first fit's again
                key = jax.random.fold_in(key, self.n_iter_)
        # On the device from here on; the epochs donate it (updated in place), so the only other
        # copies kept are the best epoch's parameters and, with n_init > 1, the best start's state.
        self._state = state = self._on_device(state)
        return state, key

    def _warn(self, run: _Run, warn_max_iter):
        if run.diverged:
            warnings.warn(
                f"Training diverged at epoch {run.n_iter} (non-finite loss or parameters) with "
                f"learning_rate={getattr(self, 'learning_rate_', self.learning_rate)!r}; stopped and restored the "
                f"parameters of epoch {self.best_iter_}. Try a smaller learning_rate.",
                ConvergenceWarning,
                stacklevel=self._warning_stacklevel,
            )
        elif not run.converged and warn_max_iter:
            warnings.warn(
                f"{type(self).__name__} reached max_iter={self.max_iter} epochs without converging "
                f"(tol={self.tol}, n_iter_no_change={self.n_iter_no_change}); consider increasing "
                "max_iter.",
                ConvergenceWarning,
                stacklevel=self._warning_stacklevel,
            )

    def _fold_linear_bias(self):
        """Linear ICA: move the bias into ``mean_`` so that ``transform(X) == (X - mean_) @
        components_.T`` exactly as in scikit-learn's FastICA (the model is unchanged:
        ``(X − m) Cᵀ + b = (X − (m − C⁻¹b)) Cᵀ``)."""
        layer = self._state.params[0]
        if layer.b is None:
            return
        # the new mean is the input whose sources are zero: m − P⁻¹W⁻¹b
        shift_z = np.linalg.solve(np.asarray(layer.W, np.float64), np.asarray(layer.b, np.float64))
        self.mean_ = self._postprocess(-shift_z[None, :])[0]
        params = (Layer(layer.W, jnp.zeros_like(layer.b)),)
        state = TrainState(params, self._state.prior_params, self._state.opt_state)
        self._state = self._on_device(state, fitting=False)  # a fitted model's devices (this process's)

    def _build_prior(self, base_prior):
        return base_prior

    def _build_objective(self, prior):  # pragma: no cover - overridden
        raise NotImplementedError

    def _split(self, data, rng):
        """``(train, validation)``: scikit-learn's shuffled split, ``ceil(validation_fraction · n)``
        rows held out, as ``MLPClassifier(early_stopping=True)`` holds them out."""
        n = data[0].shape[0]
        validation_rows(self.validation_fraction, n, context="early_stopping with ")
        train_rows, val_rows = train_test_split(np.arange(n), test_size=self.validation_fraction, random_state=rng)
        take = lambda idx: tuple(None if A is None else A[idx] for A in data)  # noqa: E731
        return take(train_rows), take(val_rows)

    def _run_epochs(
        self,
        optimizer,
        state,
        train,
        val,
        key,
        epochs,
        checkpointer=None,
        resume=None,
        score_offset=0.0,
        interrupts=None,
    ) -> _Run:
        """Run the epochs with :func:`nica.fit_to_data`; the fitted attributes follow the loop as
        it goes (a checkpoint, or an interrupted fit, sees them up to date), and an interrupted
        fit (e.g. KeyboardInterrupt) leaves a usable estimator at the best parameters seen.
        ``score_offset`` turns the validation log-likelihood of the pre-processed rows into the
        units of ``X`` (the whitening's log-determinant and the discarded directions' density).
        ``state`` is a fit state (the rate scale reached is kept in it, so that a warm start
        continues at that rate)."""
        n_start = self.n_iter_
        n_loss, n_val = len(self.loss_curve_), len(self.validation_scores_)
        n_ll = len(self.validation_log_likelihoods_)
        n_terms = {name: len(values) for name, values in self.validation_terms_.items()}

        def record(history):
            self.n_iter_ = n_start + history.n_epochs
            self.loss_curve_[n_loss:] = history.loss_curve
            self.validation_scores_[n_val:] = history.validation_scores
            self.validation_log_likelihoods_[n_ll:] = history.validation_log_likelihoods
            for name, values in (history.validation_terms or {}).items():
                self.validation_terms_.setdefault(name, [])[n_terms.get(name, 0) :] = values
            if history.best_epoch:
                self.best_iter_ = n_start + history.best_epoch

        def callback(event, progress):
            record(progress.history)
            if event == "interrupted":
                self._state = progress.state
            elif event == "epoch_start":
                if checkpointer is not None:
                    checkpoint = (self, progress.state, progress.key, progress.best, progress.best_score)
                    checkpoint += (progress.no_change, progress.reductions)
                    checkpointer.epoch_start(*checkpoint)
                    if interrupts is not None and interrupts.pending and checkpointer.last_iter != self.n_iter_:
                        every, checkpointer.every = checkpointer.every, 1  # Ctrl-C held: save this epoch first
                        try:
                            checkpointer.epoch_start(*checkpoint)
                        finally:
                            checkpointer.every = every
                if interrupts is not None:
                    interrupts.deliver()  # a held Ctrl-C raises here, the fit at an epoch's start

        if resume is not None:  # a checkpoint's loop state (nica._src.checkpoint)
            resume = FitProgress(
                0, state, key, resume["best"], resume["best_score"], resume["no_change"], resume["reductions"], None
            )
        state, history = fit_to_data(
            state,
            train,
            optimizer=optimizer,
            key=key,
            activation=self.activation_,
            prior=self.prior_,
            gradient=self.gradient_,
            batch_size=int(self.batch_size),
            max_epochs=epochs,
            validation_fraction=None,
            validation=val,
            patience=int(self.n_iter_no_change),
            tol=self.tol,
            schedule=self.schedule,
            log_det_offset=score_offset,
            averaging=self._averaging(),
            mesh=self._mesh(),
            show_progress=type(self).__name__ if self.verbose else False,
            callback=callback,
            resume=resume,
            objective=self.objective_,
            donate_state=True,  # the estimator owns its state: trained in place, no second copy
        )
        record(history)
        self._state = state
        return _Run(
            history.best_score,
            history.converged,
            history.diverged,
            state,
            self.loss_curve_,
            self.validation_scores_,
            self.validation_log_likelihoods_,
            self.validation_terms_,
            self.n_iter_,
            self.best_iter_,
        )


def _device(data, n_padded, mesh=None):
    rows = pad_rows(*data, n_padded)
    return PaddedRows(place_rows(rows.X, mesh), place_rows(rows.u, mesh), rows.n)
