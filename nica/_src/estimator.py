"""scikit-learn estimators: thin shells that validate, convert and call the core; the fitted state stays on the device and is exposed as NumPy views."""

from __future__ import annotations

import contextlib
import functools
import numbers
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.experimental import multihost_utils
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.decomposition import FastICA
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import _num_samples, check_is_fitted, validate_data

from nica._src import activations as _activations
from nica._src import priors as _priors
from nica._src.contrastive import check_contrastive_weight
from nica._src.priors import mlp_conditional, segment_conditional
from nica._src.gradients import VALUE_AND_GRADIENT
from nica._src.network import (
    Layer,
    _forward,
    _inverse,
    _marginal_log_likelihood_without_det,
    init_params,
)
from nica._src.training import (
    _SCHEDULE_OPTIONS,
    _SCORE_BATCH,
    FitProgress,
    TrainState,
    _batched_log_likelihood,
    _check_int,
    _label_log_posterior,
    _log_abs_det,
    _place,
    _place_rows,
    _match_average_slot,
    _set_rate_scale,
    _validation_rows,
    _with_rate_scale,
    fit_to_data,
    init_train_state,
    make_mesh,
)
from nica._src import validation as _validation
from nica._src import checkpoint as _checkpoint

__all__ = ["NonlinearICA", "ConditionalNonlinearICA"]

_WHITEN_OPTIONS = ("auto", "standardize", "unit-variance", False)
# whiten="auto": PCA whitening (an O(D³) eigendecomposition and a D×D matrix) up to this many
# features, per-feature standardization (O(n·D)) above.
_AUTO_WHITEN_MAX_FEATURES = 1024
# gradient="auto": the equivariant form while its D×D×D transport per layer costs at most about
# as much as the step's own products (n_features up to a few times the batch).
_AUTO_EQUIVARIANT_BATCH_RATIO = 4
# init="fastica" (the default for linear ICA): the FastICA fixed-point iteration on the whitened
# rows (all of them, like the whitening) gives the starting rotation; it is an initialisation,
# capped and not required to converge, and the likelihood fit refines it.
_INIT_OPTIONS = ("auto", "fastica", "random")
# averaging="auto": the time constant, in epochs, of the running average of the parameters that
# is validated, kept and returned (0: the last iterate).  NonlinearICA: off (not measured there);
# ConditionalNonlinearICA with more than one layer: half an epoch (chosen on data seeds 100-104,
# see the benchmarks page: no validation jumps, higher MCC at every depth, about twice the epochs).
_AUTO_AVERAGING = 0.0
_AUTO_AVERAGING_CONDITIONAL = 0.5
# learning_rate="auto": Adam's rate from a random start, and from the FastICA start.
_AUTO_RATE = 1e-2
_AUTO_RATE_FROM_FASTICA = 1e-3
_FASTICA_INIT_MAX_ITER = 200
_FASTICA_INIT_TOL = 1e-4
# FastICA's fixed point depends on its random start (64 logistic sources: held-out MCC from 0.940
# to 0.956 over starts); of this many starts the one with the largest log-cosh contrast is kept,
# which was also the best separated one (contrast and MCC correlated at 0.96-1.00 over 8 starts).
_FASTICA_INIT_STARTS = 3
# E[log cosh(ν)] for a standard normal ν: the reference value of the log-cosh contrast.
_LOGCOSH_GAUSSIAN = 0.37456720749
_PARALLEL_OPTIONS = (None, "data", "model")


def _precision(dtype):
    """Run JAX in float64 for float64 data (without touching the global configuration)."""
    if np.dtype(dtype) == np.float64:
        return jax.enable_x64(True)
    return contextlib.nullcontext()


@functools.lru_cache(maxsize=64)
def _optimizer_from_name(name: str, learning_rate: float):
    factory = getattr(optax, name, None)
    if not callable(factory):
        raise ValueError(
            f"optimizer={name!r} is not an optax optimizer; use a name such as 'adam' or 'sgd', "
            "an optax factory (optax.adam) or an optax.GradientTransformation."
        )
    return factory(learning_rate)


def _fetch(a):
    """``a`` as a NumPy array; an array split over several processes (model parallel on
    several hosts) is gathered first, a collective that every process runs."""
    if isinstance(a, jax.Array) and not a.is_fully_addressable and not a.is_fully_replicated:
        return multihost_utils.process_allgather(a, tiled=True)
    return np.asarray(a)


def _to_numpy(tree):
    """NumPy views of a pytree of arrays (no copy of CPU device buffers, one host copy otherwise)."""
    return jax.tree_util.tree_map(_fetch, tree)


def _device(data, mesh=None):
    return None if data is None else tuple(_place_rows(A, mesh) for A in data)


def _check_n_samples(n_samples):
    if not isinstance(n_samples, numbers.Integral) or isinstance(n_samples, bool) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer; got {n_samples!r}.")
    return int(n_samples)


def _check_moments_finite(moments, X):
    """Data so large that its variance overflows (|x| above about 1e150 in float64) cannot be
    whitened; say so instead of failing inside an eigendecomposition."""
    if not np.all(np.isfinite(moments)):
        raise ValueError(
            f"X has values too large to whiten in {X.dtype} (largest |x| = {float(np.max(np.abs(X))):.3g}: "
            "its variance overflows); rescale X, e.g. divide it by its largest absolute value."
        )


def _logcosh_contrast(Y):
    """FastICA's log-cosh contrast of the columns of ``Y`` (each scaled to unit variance):
    ``Σᵢ (E log cosh yᵢ − E log cosh ν)²`` with ν standard normal; larger is less Gaussian."""
    Y = Y / np.maximum(Y.std(axis=0), np.finfo(Y.dtype).tiny)
    # log cosh y = |y| + log1p(exp(−2|y|)) − log 2, without overflow
    a = np.abs(Y)
    G = np.mean(a + np.log1p(np.exp(-2.0 * a)) - np.log(2.0), axis=0)
    return float(np.sum((G - _LOGCOSH_GAUSSIAN) ** 2))


class _RelativeGradientICA(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Shared machinery of nica's estimators; not public (use :class:`NonlinearICA` or
    :class:`ConditionalNonlinearICA`)."""

    _warning_stacklevel = 4  # ConvergenceWarnings point at the user's call to fit

    # ----------------------------------------------------------------------------------------
    # validation of hyperparameters (before any data or JAX work)

    def _check_hyperparameters(self):
        def positive_int(name, minimum=1):
            _check_int(getattr(self, name), name, minimum)

        def positive_real(name, allow_zero=False):
            value = getattr(self, name)
            ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
            if not ok or value < 0 or (value == 0 and not allow_zero):
                bound = ">= 0" if allow_zero else "> 0"
                raise ValueError(f"{name} must be a finite number {bound}; got {value!r}.")

        positive_int("n_layers")
        positive_int("n_init")
        positive_int("batch_size")
        positive_int("max_iter")
        positive_int("n_iter_no_change")
        if not (isinstance(self.learning_rate, str) and self.learning_rate == "auto"):
            positive_real("learning_rate")
        positive_real("tol", allow_zero=True)
        vf = self.validation_fraction
        if not isinstance(vf, numbers.Real) or isinstance(vf, bool) or not 0.0 < vf < 1.0:
            raise ValueError(f"validation_fraction must be in (0, 1); got {vf!r}.")
        if not (isinstance(self.gradient, str) and (self.gradient == "auto" or self.gradient in VALUE_AND_GRADIENT)):
            raise ValueError(
                f"gradient must be one of {['auto'] + sorted(VALUE_AND_GRADIENT)}; got {self.gradient!r}."
            )
        if self.whiten not in _WHITEN_OPTIONS or self.whiten is True:
            raise ValueError(f"whiten must be one of {_WHITEN_OPTIONS}; got {self.whiten!r}.")
        if not (isinstance(self.schedule, str) and self.schedule in _SCHEDULE_OPTIONS):
            raise ValueError(f"schedule must be one of {_SCHEDULE_OPTIONS}; got {self.schedule!r}.")
        if not (isinstance(self.averaging, str) and self.averaging == "auto"):
            positive_real("averaging", allow_zero=True)
        if not (isinstance(self.init, str) and self.init in _INIT_OPTIONS):
            raise ValueError(f"init must be one of {_INIT_OPTIONS}; got {self.init!r}.")
        for name in ("bias", "early_stopping", "warm_start"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(f"{name} must be a bool; got {getattr(self, name)!r}.")
        parallel = self.parallel
        if not (parallel is None or isinstance(parallel, str) and parallel in _PARALLEL_OPTIONS):
            raise ValueError(f"parallel must be one of {_PARALLEL_OPTIONS}; got {parallel!r}.")
        if parallel == "data" and self.batch_size % jax.device_count():
            raise ValueError(
                f"batch_size={self.batch_size} must be a multiple of the number of devices "
                f"({jax.device_count()}) with parallel='data': each batch is split evenly over "
                "the devices."
            )
        _validation.check_verbose(self.verbose)
        _checkpoint.check_checkpoint_params(self)
        prior = _validation.check_estimator_prior(_priors.get(self.prior), type(self).__name__)
        optimizer = _validation.check_optimizer(self._resolve_optimizer, self.optimizer)
        return _activations.get(self.activation), prior, _with_rate_scale(optimizer, self._averaging() > 0)

    def _averaging(self):
        """The running average's time constant in epochs (``averaging="auto"`` resolved)."""
        return _AUTO_AVERAGING if isinstance(self.averaging, str) else float(self.averaging)

    def _base_learning_rate(self):
        """The rate the optimizer is built with; ``"auto"`` builds it with ``_AUTO_RATE`` and
        scales the first steps by ``_initial_rate_scale``."""
        return _AUTO_RATE if isinstance(self.learning_rate, str) else float(self.learning_rate)

    def _initial_rate_scale(self):
        """``learning_rate="auto"``: a tenth of the rate when the fit refines a FastICA start
        (there, larger steps add noise to a solution that is already close), the whole rate
        otherwise.  A ready optax transformation takes no rate and is left as it is."""
        auto = isinstance(self.learning_rate, str)
        ready = isinstance(self.optimizer, optax.GradientTransformation)
        if auto and not ready and self.init_ == "fastica":
            return _AUTO_RATE_FROM_FASTICA / _AUTO_RATE
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

    def __sklearn_is_fitted__(self):
        # Cheap: never the params_ property, which would copy every parameter to the host.
        return "_state" in self.__dict__

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
        _, prior, optimizer = self._check_hyperparameters()
        name = type(self).__name__
        changed = _validation.warm_start_changes(self, prior)
        if changed:
            warnings.warn(f"{name}: {', '.join(changed)} changed since the fitted state was made, which "
                          "cannot continue under the new value(s); this fit starts anew.", UserWarning,
                          stacklevel=3)
            return False
        gradient = self._resolve_gradient(self.n_features_in_)
        state = TrainState(*self._state)
        with _precision(self._dtype):
            if gradient != self.gradient_ or not _validation.optimizer_state_fits(optimizer, state):
                what = f"gradient ({self.gradient_!r} -> {gradient!r})" if gradient != self.gradient_ else "optimizer"
                warnings.warn(f"{name}: the {what} changed since the fitted state was made; the fit "
                              "continues from the fitted network with a restarted optimizer.", UserWarning,
                              stacklevel=3)
                self.gradient_ = gradient
                trainable = (state.params, state.prior_params)
                self._state = TrainState(*trainable, optimizer.init(trainable))
        return True

    # ----------------------------------------------------------------------------------------
    # pre-processing: an affine map with a known log-determinant

    def _resolve_whiten(self, n_features):
        if self.whiten == "auto":
            return "unit-variance" if n_features <= _AUTO_WHITEN_MAX_FEATURES else "standardize"
        return self.whiten

    def _resolve_init(self):
        if self.init == "auto":
            linear_whitened = self.n_layers == 1 and self.whiten_ == "unit-variance"
            return "fastica" if linear_whitened else "random"
        return self.init

    def _fastica_start(self, params, Z, seed):
        """``params`` with the first layer's weights replaced by the FastICA rotation of the
        pre-processed rows ``Z`` (symmetric fixed point, log-cosh contrast): of
        ``_FASTICA_INIT_STARTS`` random starts drawn with ``seed``, the fixed point with the
        largest contrast ``Σᵢ (E log cosh yᵢ − E log cosh ν)²``, FastICA's own objective."""
        Z = np.asarray(Z)
        starts = np.random.RandomState(seed).randint(np.iinfo(np.int32).max, size=_FASTICA_INIT_STARTS)
        best, best_contrast = None, -np.inf
        for start in starts:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                ica = FastICA(whiten=False, fun="logcosh", max_iter=_FASTICA_INIT_MAX_ITER,
                              tol=_FASTICA_INIT_TOL, random_state=int(start)).fit(Z)
            contrast = _logcosh_contrast(Z @ ica.components_.T)
            if contrast > best_contrast:
                best, best_contrast = ica.components_, contrast
        W = jnp.asarray(best, dtype=params[0].W.dtype)
        return (params[0]._replace(W=W),) + tuple(params[1:])

    def _resolve_gradient(self, n_features):
        if self.gradient == "auto":
            small = n_features <= _AUTO_EQUIVARIANT_BATCH_RATIO * int(self.batch_size)
            return "equivariant" if small else "relative"
        return self.gradient

    def _fit_preprocessing(self, X):
        n_features = X.shape[1]
        self.whiten_ = whiten = self._resolve_whiten(n_features)
        self.mean_ = X.mean(axis=0) if whiten else np.zeros(n_features, X.dtype)
        # A diagonal P (standardize, none) is applied as a vector: O(n·D), not O(n·D²) or O(D³).
        self._whitening_scale = None
        if whiten == "standardize":
            with np.errstate(over="ignore", invalid="ignore"):
                std = X.std(axis=0)
            _check_moments_finite(std, X)
            std = np.where(std > np.finfo(X.dtype).eps * np.maximum(1.0, np.abs(self.mean_)), std, 1.0)
            scale = 1.0 / std
        elif whiten == "unit-variance":
            with np.errstate(over="ignore", invalid="ignore"):
                cov = np.atleast_2d(np.cov(X, rowvar=False, bias=True))
            _check_moments_finite(cov, X)
            eigval, eigvec = np.linalg.eigh(cov)
            floor = np.finfo(X.dtype).eps * max(float(eigval.max()), 1.0) * n_features
            P = (eigvec / np.sqrt(np.maximum(eigval, floor))).T
            self._whitening_matrix = P.astype(X.dtype)
            self._log_det_whitening = float(np.linalg.slogdet(P)[1])
            return
        else:
            scale = np.ones(n_features)
        self._whitening_scale = scale.astype(X.dtype)
        self._whitening_matrix = None
        self._log_det_whitening = float(np.sum(np.log(scale)))

    @property
    def whitening_(self):
        """Pre-processing matrix ``P`` (the network sees ``(X - mean_) @ whitening_.T``); for the
        diagonal options it is built on access, the estimator itself keeps only its diagonal."""
        if self._whitening_matrix is not None:
            return self._whitening_matrix
        return np.diag(self._whitening_scale)

    def _preprocess(self, X):
        scale = getattr(self, "_whitening_scale", None)
        if scale is not None:
            return ((X - self.mean_) * scale).astype(self._dtype, copy=False)
        return ((X - self.mean_) @ self._whitening_matrix.T).astype(self._dtype, copy=False)

    def _postprocess(self, Z):
        scale = getattr(self, "_whitening_scale", None)
        if scale is not None:
            return (Z / scale + self.mean_).astype(self._dtype, copy=False)
        return (np.linalg.solve(self._whitening_matrix, Z.T).T + self.mean_).astype(self._dtype, copy=False)

    # ----------------------------------------------------------------------------------------
    # fitting

    def _train(self, X, U, setup, *, reset, epochs, validate, warn_max_iter=True, checkpoint=False):
        activation, base_prior, optimizer = setup
        # Checkpoints (fit only): a loaded checkpoint's resume record replays the interrupted fit.
        resume = None if reset or not checkpoint else _checkpoint.resume_state(self, X, U)
        self.__dict__.pop("_resume", None)
        rng = check_random_state(self.random_state)
        if resume is not None:
            rng = np.random.RandomState()
            rng.set_state(resume["rng_state"])
            epochs = resume["epochs_left"]
        checkpoint_path, checkpoint_every = _checkpoint.check_checkpoint_params(self)
        checkpointer = None
        if checkpoint and checkpoint_path is not None:
            checkpointer = _checkpoint.Checkpointer(
                checkpoint_path, checkpoint_every, resume["rng_state"] if resume else rng.get_state(),
                _checkpoint.data_fingerprint(X), stop_at=(0 if reset else self.n_iter_) + epochs)
        if reset:
            self._dtype = X.dtype
            self._fit_preprocessing(X)
            self.gradient_ = self._resolve_gradient(X.shape[1])
            self.init_ = self._resolve_init()
            self.learning_rate_ = self._base_learning_rate() * self._initial_rate_scale()
        X = self._preprocess(np.asarray(X, dtype=self._dtype))
        n_init = int(self.n_init) if reset else 1
        with _precision(self._dtype):
            seeds = [rng.randint(np.iinfo(np.int32).max)]
            mesh = self._mesh()
            train, val = self._split((X, U), rng) if validate else ((X, U), None)
            seeds += [rng.randint(np.iinfo(np.int32).max) for _ in range(n_init - 1)]
            train, val = _device(train, mesh), _device(val, mesh)
            if reset:
                self.__dict__.pop("_state", None)  # a refit does not hold the old state meanwhile
                prior = self._build_prior(base_prior)
            else:
                prior = self.prior_
            self.activation_, self.prior_ = activation, prior
            best_run, scores = None, []
            for seed in seeds:
                key, init_key, prior_key = jax.random.split(jax.random.key(seed), 3)
                if reset:
                    params = init_params(init_key, X.shape[1], self.n_layers, bias=self.bias, dtype=self._dtype)
                    if self.init_ == "fastica":
                        params = self._fastica_start(params, X, seed)
                    prior_params = prior.init_params(prior_key, X.shape[1], self._dtype)
                    state = init_train_state(optimizer, params, prior_params)
                    state = state._replace(opt_state=_set_rate_scale(state.opt_state, self._initial_rate_scale()))
                    self.loss_curve_, self.validation_scores_, self.n_iter_, self.best_iter_ = [], [], 0, 0
                    self.validation_log_likelihoods_ = []
                else:
                    state = TrainState(*self._state)  # (the average's slot as averaging now asks)
                    state = state._replace(opt_state=_match_average_slot(
                        state.opt_state, (state.params, state.prior_params), self._averaging() > 0))
                    if resume is not None:  # the checkpoint's last epoch, and its next shuffle
                        resume["best"] = (state.params, state.prior_params)
                        state = TrainState(resume["params"], resume["prior_params"], state.opt_state)
                        key = jax.random.wrap_key_data(resume["key"])
                    else:  # a warm start: fresh shuffles, not the first fit's again
                        key = jax.random.fold_in(key, self.n_iter_)
                # On the device from here on; the epochs donate it (updated in place), so the
                # only other copies kept are the best epoch's parameters (see _run_epochs) and,
                # with n_init > 1, the best initialisation's state.
                self._state = state = self._on_device(state)
                status = self._run_epochs(optimizer, state, train, val, key, epochs,
                                          checkpointer=checkpointer, resume=resume)
                scores.append(status["best_score"])
                if best_run is None or status["best_score"] > best_run[0]["best_score"]:
                    best_run = None  # free the previous best first
                    best_run = (status, self._state, self.loss_curve_, self.validation_scores_,
                                self.validation_log_likelihoods_, self.n_iter_, self.best_iter_)
            (status, self._state, self.loss_curve_, self.validation_scores_, self.validation_log_likelihoods_,
             self.n_iter_, self.best_iter_) = best_run
            if reset or resume is not None:
                self.init_scores_ = scores
            self._warn(status, warn_max_iter)
            if (reset or resume is not None) and self.n_layers == 1:
                self._fold_linear_bias()
        self._n_features_out = self.n_features_in_
        if checkpointer is not None:
            checkpointer.write(self)  # the finished fit (no resume record)
        return self

    def _warn(self, status, warn_max_iter):
        if status["diverged"]:
            warnings.warn(
                f"Training diverged at epoch {status['diverged_at']} (non-finite loss or parameters) with "
                f"learning_rate={getattr(self, 'learning_rate_', self.learning_rate)!r}; stopped and restored the parameters of "
                f"epoch {self.best_iter_}. Try a smaller learning_rate.",
                ConvergenceWarning,
                stacklevel=self._warning_stacklevel,
            )
        elif not status["converged"] and warn_max_iter:
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
        self._state = self._on_device(TrainState(params, self._state.prior_params, self._state.opt_state))

    def _build_prior(self, base_prior):
        return base_prior

    def _objective_kwargs(self):
        """Extra arguments of ``fit_to_data`` for the training objective (none: the likelihood)."""
        return {}

    def _mesh(self):
        """The device mesh for ``parallel`` (every device of the default backend), or None."""
        return None if self.parallel is None else make_mesh(self.parallel)

    def _to_device(self, A):
        return _place_rows(A, self._mesh())

    def _split(self, data, rng):
        """``(train, validation)``: scikit-learn's shuffled split, ``ceil(validation_fraction · n)``
        rows held out, as ``MLPClassifier(early_stopping=True)`` holds them out."""
        n = data[0].shape[0]
        _validation_rows(self.validation_fraction, n, context="early_stopping with ")
        train_rows, val_rows = train_test_split(np.arange(n), test_size=self.validation_fraction, random_state=rng)
        take = lambda idx: tuple(None if A is None else A[idx] for A in data)  # noqa: E731
        return take(train_rows), take(val_rows)

    def _run_epochs(self, optimizer, state, train, val, key, epochs, checkpointer=None, resume=None):
        """Run the epochs with :func:`nica.fit_to_data`; leave the best (validation) or last
        parameters in ``self._state`` and the curves in the fitted attributes, which follow the
        loop as it goes (a checkpoint, or an interrupted fit, sees them up to date).

        ``optimizer`` and ``state`` carry the schedule's rate scale (``_with_rate_scale``), kept
        in the fitted state so that a warm start continues at the rate reached.  An interrupted
        fit (e.g. KeyboardInterrupt) leaves a usable estimator at the best parameters seen.

        Returns a dict: ``best_score``, ``converged``, ``diverged``, ``diverged_at``.
        """
        n_start = self.n_iter_
        n_loss, n_val = len(self.loss_curve_), len(self.validation_scores_)
        # (a model pickled before this attribute existed starts its list here)
        self.validation_log_likelihoods_ = list(getattr(self, "validation_log_likelihoods_", []))
        n_ll = len(self.validation_log_likelihoods_)

        def record(history):
            self.n_iter_ = n_start + history.n_epochs
            self.loss_curve_[n_loss:] = history.loss_curve
            self.validation_scores_[n_val:] = history.validation_scores
            self.validation_log_likelihoods_[n_ll:] = history.validation_log_likelihoods
            if history.best_epoch:
                self.best_iter_ = n_start + history.best_epoch

        def callback(event, progress):
            record(progress.history)
            if event == "interrupted":
                self._state = progress.state
            elif event == "epoch_start" and checkpointer is not None:
                checkpointer.epoch_start(self, progress.state, progress.key, progress.best,
                                         progress.best_score, progress.no_change, progress.reductions)

        if resume is not None:  # a checkpoint's loop state (nica._src.checkpoint)
            resume = FitProgress(0, state, key, resume["best"], resume["best_score"], resume["no_change"],
                                 resume["reductions"], None)
        state, history = fit_to_data(
            state, train[0], train[1], optimizer=optimizer, key=key, activation=self.activation_,
            prior=self.prior_, gradient=self.gradient_, batch_size=int(self.batch_size), max_epochs=epochs,
            validation_fraction=None, validation=val, patience=int(self.n_iter_no_change), tol=self.tol,
            schedule=self.schedule, log_det_offset=self._log_det_whitening, averaging=self._averaging(),
            mesh=self._mesh(),
            show_progress=type(self).__name__ if self.verbose else False, callback=callback, resume=resume,
            **self._objective_kwargs())
        record(history)
        self._state = state
        return {"best_score": history.best_score, "converged": history.converged,
                "diverged": history.diverged, "diverged_at": self.n_iter_ if history.diverged else None}

    # ----------------------------------------------------------------------------------------
    # fitted parameters: views of the device state (no second copy in host memory on a CPU)

    @property
    def params_(self):
        """The whole fitted map from raw inputs to sources, as the functional core takes it.

        The layers of :attr:`network_params_` with the pre-processing ``x ↦ P (x − mean_)``
        (``P = whitening_``) composed into the first layer: ``W₁P`` and ``b₁ − W₁P·mean_``.
        So ``nica.log_likelihood(est.params_, X, activation=est.activation_, prior=est.prior_,
        prior_params=est.prior_params_)`` is ``est.score_samples(X)`` (the conditional model
        takes ``u`` as well) and ``nica.forward(est.params_, X, ...)`` is ``est.transform(X)``.
        The first layer always has a bias here (the mean moves into it).  The first layer is
        computed on access (an ``O(D²)`` host array, ``O(D³)`` with PCA whitening); the other
        layers, and every layer when ``whiten=False``, are read-only views of the fitted state.
        """
        layers = self.network_params_
        if not self.whiten_ and not np.any(self.mean_):  # no pre-processing (linear ICA may move its bias into mean_)
            return layers
        first = layers[0]
        W = np.asarray(first.W)
        scale = getattr(self, "_whitening_scale", None)
        WP = W * scale[None, :] if scale is not None else W @ self._whitening_matrix
        b = -(WP @ self.mean_.astype(W.dtype, copy=False))
        if first.b is not None:
            b = b + np.asarray(first.b)
        return (Layer(WP.astype(W.dtype, copy=False), b.astype(W.dtype, copy=False)),) + tuple(layers[1:])

    @property
    def network_params_(self):
        """The network's layers as NumPy arrays (read-only views of the fitted state): the map
        from pre-processed inputs ``P (x − mean_)`` to sources, in the coordinates training
        works in.  :attr:`params_` is the same network with the pre-processing folded in."""
        return _to_numpy(self._state.params)

    @property
    def prior_params_(self):
        """The prior's own parameters as NumPy arrays (empty for a factorized prior)."""
        return _to_numpy(self._state.prior_params)

    @property
    def components_(self):
        """Linear ICA (``n_layers=1``) only: the whole unmixing matrix, pre-processing included,
        with scikit-learn FastICA's meaning: ``transform(X) == (X - mean_) @ components_.T``."""
        return self._linear_unmixing()

    @property
    def mixing_(self):
        """Linear ICA (``n_layers=1``) only: the pseudo-inverse of ``components_``, as in
        FastICA: ``inverse_transform(S) == S @ mixing_.T + mean_``."""
        return np.linalg.pinv(self._linear_unmixing())

    def _linear_unmixing(self):
        if "_state" not in self.__dict__:
            raise AttributeError(f"This {type(self).__name__} instance is not fitted yet; components_ "
                                 "and mixing_ exist after fit.")
        if len(self._state.params) != 1:
            raise AttributeError(
                "components_ and mixing_ are defined for linear ICA (n_layers=1) only; this model has "
                f"{len(self._state.params)} layers and is not a matrix."
            )
        return np.asarray(self.network_params_[0].W) @ self.whitening_

    def _on_device(self, state):
        """``state`` on the device, or sharded over the ``parallel`` mesh; arrays already placed
        so are returned as they are (no copy)."""
        with _precision(self._dtype):
            return _place(state, self._mesh())

    def _device_state(self):
        """The fitted state on the device(s) (after unpickling it arrives as NumPy arrays)."""
        self._state = self._on_device(self._state)
        return self._state

    def __getstate__(self):
        # Pickle NumPy arrays, not device buffers: a float64 model then loads as float64 in a
        # process that has not enabled JAX's 64-bit mode, and on any machine.
        state = super().__getstate__()
        if state.get("_state") is not None:
            state = {**state, "_state": _to_numpy(state["_state"])}
        return state

    # ----------------------------------------------------------------------------------------
    # inference

    def _log_likelihood_batched(self, params, prior_params, X, U, log_det=None, log_weights=None):
        """Exact log-likelihood of pre-processed rows, in batches (without the whitening term);
        with ``log_weights`` (segment log-probabilities) the marginal over the segment labels,
        from one forward pass.

        ``Σ log|det W_k|`` is computed once (an ``O(D³)`` LU per layer), not once per batch.
        """
        if log_det is None:
            log_det = float(_log_abs_det(params))
        if log_weights is not None:
            # every segment at once: rows per batch shrink with the segments (same memory)
            step = max(256, _SCORE_BATCH // int(log_weights.shape[0]))
            parts = [
                _marginal_log_likelihood_without_det(params, X[i:i + step], self.activation_,
                                                     self.prior_, prior_params, log_weights)
                for i in range(0, X.shape[0], step)
            ]
            return jnp.concatenate(parts) + jnp.asarray(log_det, parts[0].dtype)
        return _batched_log_likelihood(params, prior_params, X, U, self.activation_, self.prior_, log_det)

    def _validated(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        return np.asarray(X, dtype=self._dtype)

    def _jax_params(self):
        state = self._device_state()
        return state.params, state.prior_params

    def transform(self, X):
        """Estimated sources ``S = g(X)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        S : ndarray of shape (n_samples, n_features)
        """
        X = self._preprocess(self._validated(X))
        with _precision(self._dtype):
            return _fetch(_forward(self._jax_params()[0], self._to_device(X), self.activation_))

    def inverse_transform(self, X):
        """Observations ``g⁻¹(S)`` from sources.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Sources, e.g. the output of :meth:`transform`.

        Returns
        -------
        X_original : ndarray of shape (n_samples, n_features)
        """
        S = self._validated(X)
        with _precision(self._dtype):
            Z = _fetch(_inverse(self._jax_params()[0], self._to_device(S), self.activation_))
        return self._postprocess(Z)

    def _score_samples(self, X, U, log_weights=None):
        X = self._preprocess(self._validated(X))
        with _precision(self._dtype):
            params, prior_params = self._jax_params()
            if log_weights is not None:
                log_weights = jnp.asarray(log_weights, self._dtype)
            ll = self._log_likelihood_batched(params, prior_params, self._to_device(X),
                                              self._to_device(U), log_weights=log_weights)
            return _fetch(ll) + self._dtype.type(self._log_det_whitening)

    def _sample(self, U, n_samples, random_state):
        seed = check_random_state(random_state).randint(np.iinfo(np.int32).max)
        with _precision(self._dtype):
            params, prior_params = self._jax_params()
            u = jnp.zeros((n_samples, 0)) if U is None else self._to_device(U)
            S = self.prior_.conditional_sample(prior_params, jax.random.key(seed), u,
                                               self.n_features_in_, self._dtype)
            Z = _fetch(_inverse(params, self._to_device(S), self.activation_))
        return self._postprocess(Z)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


class NonlinearICA(_RelativeGradientICA):
    """Nonlinear ICA / density estimation by exact maximum likelihood (factorized prior, eq. 3).

    An invertible MLP ``s = g(x)`` with ``n_layers`` square layers and invertible elementwise
    activations maps observations to sources with independent components, each following
    ``prior``.  It is fit by exact maximum likelihood, the log-determinant of the Jacobian
    included, with the relative gradient (Gresele et al., NeurIPS 2020): a step costs
    ``O(L·B·D²)``, like back-propagation.

    Parameters
    ----------
    n_layers : int, default=3
        Number of square layers ``L``; ``n_layers=1`` is linear ICA.
    activation : str or Activation, default="smooth_leaky_relu"
        ``"smooth_leaky_relu"``, ``"tanh_linear"``, ``"leaky_relu"`` or an
        :mod:`nica.activations` object.
    prior : str or Prior, default="logistic_mixture"
        The source density.  ``"logistic_mixture"`` (default): a learned density per source, a
        mixture of four logistics fitted with the network by exact likelihood
        (:func:`nica.priors.logistic_mixture`), so that sub-Gaussian (uniform, bimodal) and
        super-Gaussian sources are both separated; it adds ``12·D`` parameters and ``O(B·D)``
        work per step.  Fixed densities: ``"laplace"``, ``"gaussian"``, ``"logistic"``,
        ``"hypsecant"``, or any :mod:`nica.priors` object.
    bias : bool, default=True
        Whether layers have biases.
    optimizer : str, callable or optax.GradientTransformation, default="adam"
        An optax optimizer name (built with ``learning_rate``), an optax factory such as
        ``optax.sgd`` (called with ``learning_rate``), or a ready ``GradientTransformation``
        (then ``learning_rate`` is not used).  Use a name or factory if the estimator must be
        pickled: optax transformations are closures.
    learning_rate : float or "auto", default="auto"
        Step size handed to the optimizer factory (the initial one with ``schedule="plateau"``).
        ``"auto"``: 1e-3 when the fit refines the FastICA start (``init_ == "fastica"``), where
        larger steps mostly add noise to a solution that is already close (64 logistic sources:
        mean MCC 0.953 at 1e-3 against 0.950 at 1e-2 on the data seeds that chose it, and a
        validation NLL that rises by 0.05 instead of 0.3 nats after its best epoch), and 1e-2 from a random start.  The rate used
        is ``learning_rate_``.
    batch_size : int, default=256
        Mini-batch size; each epoch uses ``n_train // batch_size`` full shuffled batches.
    max_iter : int, default=1000
        Maximum number of epochs; a ``ConvergenceWarning`` says when it is reached first.
    tol : float, default=1e-4
        Minimum improvement (in nats per sample) of the monitored score that counts.
    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the data, monitor its exact log-likelihood, stop when
        it has not improved for ``n_iter_no_change`` epochs and restore the best parameters.
        Otherwise the training loss is monitored and the last parameters are kept.
    validation_fraction : float, default=0.1
        Fraction of the data held out when ``early_stopping=True``: ``ceil(validation_fraction
        · n_samples)`` shuffled rows, split as :func:`sklearn.model_selection.train_test_split`
        splits them (with ``random_state``).
    n_iter_no_change : int, default=10
        Patience, in epochs.
    schedule : {"plateau", "constant"}, default="plateau"
        ``"plateau"``: when the monitored score has not improved by ``tol`` for
        ``n_iter_no_change`` epochs, the rate is multiplied by 0.2, at most twice; the next
        plateau ends the fit.  ``"constant"``: the first plateau ends the fit.  With either, a
        validation NLL more than 0.25 nats per sample above the best so far (a spike) restores
        the best parameters, restarts the optimizer there and multiplies the rate by 0.2.
    averaging : float or "auto", default="auto"
        ``τ >= 0``: validate, keep and return an exponential moving average of the parameters
        over the training steps (Polyak averaging) with a time constant of ``τ`` epochs,
        instead of the last iterate (:func:`nica.fit_to_data`).  The average removes the
        step-to-step noise of the optimizer from the monitored score and from the fitted model,
        so the validation curve has no jumps and training runs on while the average still
        improves (typically more epochs).  ``"auto"``: ``0`` (the last iterate) here;
        :class:`ConditionalNonlinearICA` uses half an epoch with more than one layer.
    n_init : int, default=1
        Number of initialisations, as in :class:`~sklearn.mixture.GaussianMixture`: each is
        trained in full (same validation split) and the one with the best validation
        log-likelihood is kept (``init_scores_`` holds every one's).  Costs ``n_init`` fits.
    init : {"auto", "fastica", "random"}, default="auto"
        Starting point of the first layer.  ``"random"``: random orthogonal weights
        (:func:`nica.init_params`).  ``"fastica"``: the first layer starts at the FastICA
        rotation of the pre-processed data (scikit-learn's symmetric fixed point with the
        log-cosh contrast, at most 200 iterations; of three random starts drawn from
        ``random_state``, the fixed point with the largest contrast; computed on every row given
        to ``fit``, like the whitening); the likelihood fit then refines it.  ``"auto"``: ``"fastica"`` for linear ICA
        (``n_layers=1``) on PCA-whitened data, ``"random"`` otherwise.  From a random rotation,
        gradient steps leave the near-Gaussian mixtures of many sources slowly and early
        stopping can end the fit there (64 uniform sources: MCC 0.31 against FastICA's 0.996);
        from the FastICA start the defaults are within 0.005 of FastICA's MCC in almost every
        case measured (``docs/benchmarks.md``, "Defaults").
    gradient : {"auto", "relative", "equivariant", "euclidean", "autodiff"}, default="auto"
        Update direction handed to the optimizer.  ``"auto"``: ``"equivariant"`` while
        ``n_features <= 4 * batch_size`` (its per-layer ``D×D×D`` transport then costs at most
        about as much as the step's own products), ``"relative"`` above.  ``"equivariant"`` is the relative gradient
        in the group's coordinates (:func:`nica.equivariant_gradient`), the optimizer's update
        mapped back with :func:`nica.transport`: the same step as ``"relative"`` for plain SGD,
        and with Adam much faster progress per epoch in our benchmarks (``docs/benchmarks.md``);
        it adds one ``D×D×D`` product per layer and step, cheaper than ``"relative"`` while
        ``n_features < batch_size``.  ``"euclidean"`` and ``"autodiff"`` are the paper's slow
        baselines, for comparison only.
    whiten : {"auto", "standardize", "unit-variance", False}, default="auto"
        Pre-processing applied before the network: centering and PCA whitening to unit
        variance (as FastICA), centering and per-feature standardization, or none at all.
        ``"auto"``: ``"unit-variance"`` up to 1,024 features (it costs an ``O(D³)``
        eigendecomposition and a ``D×D`` matrix), ``"standardize"`` above.  It is an affine map whose log-determinant is
        included in every likelihood, so scores stay in the units of ``X``.
    warm_start : bool, default=False
        Continue from the previous solution (parameters, optimizer state and pre-processing)
        when ``fit`` is called again.  A hyperparameter changed in between is never ignored:
        a change the fitted network or pre-processing cannot follow (``n_layers``, ``bias``,
        ``whiten``, ``prior``; for :class:`ConditionalNonlinearICA` also ``learn_location``,
        ``hidden_units`` and an explicit ``aux_type``) starts a new fit, with a
        ``UserWarning``; a new ``gradient``, or an ``optimizer`` whose state has another
        structure, keeps the network and restarts the optimizer, with a ``UserWarning``;
        anything else (``learning_rate``, ``activation``, ``max_iter``, ...) takes effect as
        it is, and ``n_init`` applies to new fits only.  Later ``partial_fit`` calls follow
        the same rule.  A checkpoint loaded with ``joblib.load`` resumes its interrupted fit
        (see ``checkpoint_path``).
    checkpoint_path : str, path-like or None, default=None
        Save the estimator to this file (with :func:`joblib.dump`) during ``fit``, every
        ``checkpoint_every``, and once more when the fit ends; each file is written under a
        temporary name and renamed, so an interruption never leaves a half-written one.  A
        checkpoint is a fitted estimator holding the best parameters so far (``best_iter_``);
        it also records the last epoch's parameters, the optimizer state, the next shuffle's
        random key, the validation split's random state and the early-stopping counters, so
        that ``joblib.load(path).set_params(warm_start=True).fit(X)`` with the same ``X``
        runs the epochs left of the interrupted fit (up to ``max_iter`` in all) and ends as
        the uninterrupted fit would have, epoch for epoch.  On other data it continues as an
        ordinary warm start, with a ``UserWarning``.  The file written when the fit ends
        resumes nothing: ``warm_start`` then runs ``max_iter`` more epochs.  Needs
        ``n_init=1``; ``partial_fit`` writes no checkpoints.  The command line:
        ``nica fit --checkpoint FILE`` and ``nica fit --resume FILE``.
    checkpoint_every : int or datetime.timedelta, default=1
        How often ``checkpoint_path`` is written: every this many epochs (an int), or at the
        end of the first epoch that ends once this much time has passed since the last
        checkpoint (a :class:`datetime.timedelta`, e.g. ``timedelta(minutes=10)``).
    random_state : int, RandomState instance or None, default=None
        Controls initialization, the validation split and batch shuffling.
    verbose : int, default=0
        ``verbose >= 1`` shows a progress bar over epochs with training and validation NLL.
    parallel : {None, "data", "model"}, default=None
        Train (and score) on every device of JAX's default backend (``jax.devices()``):
        ``"data"`` splits each mini-batch by rows over the devices and replicates the
        parameters (``batch_size`` must be a multiple of the number of devices; the fit equals
        the one-device fit up to floating-point summation order); ``"model"`` splits every
        layer matrix, its bias and the optimizer state by rows over the devices, for ``D`` too
        large for one device's memory.  Each device holds the whole pre-processed training
        array.  ``None``: one device.  See ``docs/scaling.md``.

    Attributes
    ----------
    params_ : tuple of Layer
        The whole fitted model as NumPy arrays: the network with the pre-processing composed
        into its first layer, a map from raw inputs to sources that the functional core takes
        as it is (``nica.log_likelihood(est.params_, X, activation=est.activation_,
        prior=est.prior_, prior_params=est.prior_params_)`` equals ``est.score_samples(X)``).
        (Earlier development versions held the network alone here; that is now
        ``network_params_``.)
    network_params_ : tuple of Layer
        The network alone, acting on pre-processed data ``(X - mean_) @ whitening_.T``: read-only
        views of the state the estimator keeps on the device (on a CPU no second copy is made);
        copy them (``np.array(W)``) to modify them.
    activation_ : Activation
        The resolved activation object.
    prior_ : Prior
        The resolved prior object.
    mean_ : ndarray of shape (n_features,)
        Mean removed by the pre-processing (zeros when ``whiten=False``).  For linear ICA
        (``n_layers=1``) the layer's bias is folded into it after ``fit``, so that
        ``transform(X) == (X - mean_) @ components_.T`` as in FastICA.
    components_ : ndarray of shape (n_features, n_features)
        ``n_layers=1`` only: the whole unmixing matrix (pre-processing included), FastICA's
        ``components_``.
    mixing_ : ndarray of shape (n_features, n_features)
        ``n_layers=1`` only: its inverse, FastICA's ``mixing_``.
    whiten_, gradient_, init_ : str
        The resolved ``whiten``, ``gradient`` and ``init`` options.
    learning_rate_ : float
        The resolved initial learning rate.
    init_scores_ : list of float
        Best validation log-likelihood of each of the ``n_init`` initialisations.
    whitening_ : ndarray of shape (n_features, n_features)
        Pre-processing matrix ``P``: the network sees ``(X - mean_) @ whitening_.T``.
    loss_curve_ : list of float
        Training NLL per epoch (mean batch loss of the epoch, log-determinants at the epoch's
        end), in nats per sample in the units of ``X``.
    validation_scores_ : list of float
        Mean held-out log-likelihood per epoch (empty without early stopping).
    validation_log_likelihoods_ : list of float
        The same, the exact held-out log-likelihood, also where ``validation_scores_`` holds
        another monitored objective (:class:`ConditionalNonlinearICA`'s hybrid objective).
    n_iter_ : int
        Epochs run.
    best_iter_ : int
        Epoch of the best monitored score (the parameters kept with early stopping).
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when ``X`` has string feature names.

    See Also
    --------
    sklearn.decomposition.FastICA : linear ICA.

    Examples
    --------
    >>> import numpy as np
    >>> from nica import NonlinearICA
    >>> rng = np.random.default_rng(0)
    >>> S = rng.laplace(size=(2000, 2))
    >>> X = np.tanh(S @ np.array([[1.0, 0.5], [0.3, 1.0]]).T) + 0.1 * S
    >>> model = NonlinearICA(n_layers=2, max_iter=20, random_state=0).fit(X)
    >>> model.transform(X).shape
    (2000, 2)
    >>> bool(np.isfinite(model.score(X)))
    True
    """

    def __init__(
        self,
        n_layers=3,
        *,
        activation="smooth_leaky_relu",
        prior="logistic_mixture",
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
        self.warm_start = warm_start
        self.checkpoint_path = checkpoint_path
        self.checkpoint_every = checkpoint_every
        self.random_state = random_state
        self.verbose = verbose
        self.parallel = parallel

    def fit(self, X, y=None):
        """Fit the network by exact maximum likelihood.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Observations (float32 data is fitted in float32, anything else in float64).
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        self : NonlinearICA
        """
        setup = self._check_hyperparameters()
        reset = not self._continue_fit(self.warm_start)
        X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=2, reset=reset)
        self._train(X, None, setup, reset=reset, epochs=self.max_iter, validate=self.early_stopping,
                    checkpoint=True)
        return self

    def partial_fit(self, X, y=None):
        """One epoch over a chunk of data (for data that arrive in pieces or do not fit in memory).

        The first call fits the pre-processing on its chunk and initializes the network; later
        calls continue from the current parameters and optimizer state (hyperparameters changed
        in between: as with ``warm_start``).  No validation split.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : Ignored

        Returns
        -------
        self : NonlinearICA
        """
        setup = self._check_hyperparameters()
        reset = not self._continue_fit(True)
        X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=1, reset=reset)
        self._train(X, None, setup, reset=reset, epochs=1, validate=False, warn_max_iter=False)
        return self

    def score_samples(self, X):
        """Exact log-likelihood of each sample, in the units of ``X`` (eq. 3).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        log_likelihood : ndarray of shape (n_samples,)
        """
        return self._score_samples(X, None)

    def score(self, X, y=None):
        """Mean exact log-likelihood per sample (higher is better; used by ``GridSearchCV``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : Ignored

        Returns
        -------
        float
        """
        return float(np.mean(self.score_samples(X)))

    def sample(self, n_samples=1, random_state=None):
        """Draw samples from the fitted density: sources from the prior, mapped through ``g⁻¹``.

        Parameters
        ----------
        n_samples : int, default=1
        random_state : int, RandomState instance or None, default=None

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        """
        check_is_fitted(self)
        return self._sample(None, _check_n_samples(n_samples), random_state)


# ConditionalNonlinearICA(contrastive_weight="auto"): the hybrid objective's weight for discrete
# labels (0, the exact likelihood, for a continuous u), and the network depth of the estimator.
# Chosen on data seeds 100-104 (and 1, 2 for Gaussian sources) of the segment recipe, D = 5 and
# 10, 2-4 mixing layers: a 6-layer network with alpha = 2 (held-out MCC at 4 mixing layers 0.856
# against 0.691 for 3 layers and alpha = 0, 0.729 for 6 layers and alpha = 0; alpha = 5: 0.844,
# alpha = 20: 0.817), 0.939 at 3 mixing layers (0.863).
_AUTO_CONTRASTIVE_WEIGHT = 2.0

_CONTINUOUS_CONTRASTIVE = (
    "contrastive_weight > 0 needs a discrete auxiliary variable (segment labels): the hybrid "
    "objective's cross-entropy is over the segments, and no analogue for a continuous u is "
    "implemented; use contrastive_weight=0.")


class ConditionalNonlinearICA(_RelativeGradientICA):
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
    prior : str or Prior, default="laplace"
        The base family of each conditional source density.  ``"logistic_mixture"`` learns
        the family's shape too (shared by every ``u``, modulated per ``u`` by the scale and
        location).
    learn_location : bool, default=True
        Learn a per-``u`` location as well as a per-``u`` log-scale.
    aux_type : {"auto", "discrete", "continuous"}, default="auto"
        How ``y`` is read.  ``"auto"``: continuous if ``y`` holds floats that
        :func:`sklearn.utils.multiclass.type_of_target` calls continuous, otherwise discrete
        labels (ints, strings, ...).
    hidden_units : int, default=32
        Width of the network of ``u`` that gives the prior's parameters (continuous ``u`` only).
    contrastive_weight : float or "auto", default="auto"
        ``α >= 0``, discrete ``u`` only; ``"auto"``: ``α = 2`` for discrete labels and ``0``
        (the exact likelihood) for a continuous ``u`` (the resolved value is
        ``contrastive_weight_``).  ``α > 0`` fits the *hybrid* objective, the mean
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
        likelihood.
    averaging : float or "auto", default="auto"
        The time constant, in epochs, of the running average of the parameters that is
        validated, kept and returned (as in :class:`NonlinearICA`); ``"auto"``: half an epoch
        with more than one layer, ``0`` (the last iterate) for one layer.  Chosen on data seeds
        100–104 of the segment benchmark (see the benchmarks page): without it the hybrid
        objective's validation score jumped by up to 0.5 nats between epochs; with it by at
        most about 0.1, and the held-out MCC was higher at every depth tried, for about twice
        the epochs.
    bias, optimizer, learning_rate, batch_size, max_iter, tol, early_stopping, \
validation_fraction, n_iter_no_change, schedule, n_init, init, gradient, whiten, \
warm_start, random_state, verbose, parallel
        As in :class:`NonlinearICA`.

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
    classes_ : ndarray of shape (n_segments,)
        Segment labels seen in ``fit`` (discrete ``u``).
    segment_log_weights_ : ndarray of shape (n_segments,)
        Log-frequencies of the segments in the training data (discrete ``u``), used for the
        marginal likelihood and for sampling when no ``y`` is given.
    mean_, whitening_, loss_curve_, validation_scores_, n_iter_, best_iter_, n_features_in_, \
feature_names_in_, whiten_, gradient_, init_, learning_rate_, init_scores_, components_, mixing_, \
validation_log_likelihoods_
        As in :class:`NonlinearICA`.

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
        warm_start=False,
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
        self.warm_start = warm_start
        self.random_state = random_state
        self.verbose = verbose
        self.parallel = parallel

    _warning_stacklevel = 5  # one frame deeper than NonlinearICA (_fit_with_aux)

    def _check_hyperparameters(self):
        if self.aux_type not in ("auto", "discrete", "continuous"):
            raise ValueError(
                f"aux_type must be one of ('auto', 'discrete', 'continuous'); got {self.aux_type!r}."
            )
        if not isinstance(self.learn_location, (bool, np.bool_)):
            raise TypeError(f"learn_location must be a bool; got {self.learn_location!r}.")
        _check_int(self.hidden_units, "hidden_units")
        self._resolve_contrastive_weight(self.aux_type)
        return super()._check_hyperparameters()

    # ----------------------------------------------------------------------------------------
    # the auxiliary variable

    def _fit_aux(self, y):
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1 and y.dtype.kind not in "fc":
            y = y.ravel()
        aux_type = self.aux_type
        if aux_type == "auto":
            continuous = y.dtype.kind == "f" and type_of_target(y).startswith("continuous")
            aux_type = "continuous" if continuous else "discrete"
        self._resolve_contrastive_weight(aux_type)
        # Everything is checked before anything is set: a refused y leaves a fitted model as it was.
        if aux_type == "discrete":
            if y.ndim != 1:
                raise ValueError(
                    f"Discrete auxiliary labels y must be 1-D (one segment label per sample); got shape {y.shape}."
                )
            classes, counts = _validation.unique_labels(y)
            self.classes_, self.segment_log_weights_ = classes, np.log(counts / counts.sum())
        else:
            U = self._as_continuous(y)
            scale = U.std(axis=0)
            self.aux_mean_, self.aux_scale_ = U.mean(axis=0), np.where(scale > 0, scale, 1.0)
        self.aux_type_ = aux_type

    def _averaging(self):
        if isinstance(self.averaging, str):
            return _AUTO_AVERAGING_CONDITIONAL if int(self.n_layers) > 1 else 0.0
        return float(self.averaging)

    def _resolve_contrastive_weight(self, aux_type):
        """``contrastive_weight`` checked and resolved for ``aux_type`` (``"auto"``:
        ``_AUTO_CONTRASTIVE_WEIGHT`` for discrete labels, 0 otherwise); ``α > 0`` with a
        continuous ``u`` is refused."""
        if isinstance(self.contrastive_weight, str):
            if self.contrastive_weight != "auto":
                raise ValueError(f"contrastive_weight must be 'auto' or a finite real number >= 0; "
                                 f"got {self.contrastive_weight!r}.")
            return _AUTO_CONTRASTIVE_WEIGHT if aux_type == "discrete" else 0.0
        weight = check_contrastive_weight(self.contrastive_weight)
        if aux_type == "continuous" and weight > 0:
            raise ValueError(_CONTINUOUS_CONTRASTIVE)
        return weight

    def _as_continuous(self, y):
        y = np.asarray(y)
        if y.dtype.kind not in "biuf":
            raise ValueError(f"A continuous auxiliary variable y must be numeric; got dtype {y.dtype}.")
        if y.ndim not in (1, 2):
            raise ValueError(f"A continuous auxiliary variable y must be 1-D or 2-D (n_samples, n_aux); "
                             f"got shape {y.shape}.")
        U = y.reshape(y.shape[0], -1).astype(np.float64)
        if not np.all(np.isfinite(U)):
            raise ValueError("The auxiliary variable y contains NaN or infinity.")
        return U

    def _encode_aux(self, y, n_samples, dtype):
        """Segment codes (int32) or standardized continuous values (``dtype``), validated."""
        if y is None:
            raise ValueError(f"{type(self).__name__} needs the auxiliary variable: pass it as y.")
        y = np.asarray(y)
        if y.ndim == 0 or y.shape[0] != n_samples:
            raise ValueError(
                f"y must have one entry per sample ({n_samples}); got shape {np.shape(y)}."
            )
        if self.aux_type_ == "discrete":
            if y.ndim == 2 and y.shape[1] == 1:
                y = y.ravel()
            if y.ndim != 1:
                raise ValueError(f"Segment labels y must be 1-D; got shape {y.shape}.")
            known = _validation.labels_known(y, self.classes_)
            if not known.all():
                unseen = _validation.unique_labels(y[~known])[0]
                raise ValueError(
                    f"y contains {unseen.size} segment label(s) not seen during fit: "
                    f"{unseen[:10].tolist()}; the model knows {self.classes_.size} labels "
                    f"({self.classes_[:10].tolist()}{', ...' if self.classes_.size > 10 else ''})."
                )
            return np.searchsorted(self.classes_, y).astype(np.int32)
        U = self._as_continuous(y)
        if U.shape[1] != self.aux_mean_.shape[0]:
            raise ValueError(
                f"y has {U.shape[1]} auxiliary dimensions but the model was fitted with "
                f"{self.aux_mean_.shape[0]}."
            )
        return ((U - self.aux_mean_) / self.aux_scale_).astype(dtype)

    def _build_prior(self, base_prior):
        if self.aux_type_ == "discrete":
            return segment_conditional(base_prior, int(self.classes_.size),
                                       learn_location=bool(self.learn_location))
        return mlp_conditional(base_prior, int(self.aux_mean_.shape[0]),
                               hidden_units=int(self.hidden_units),
                               learn_location=bool(self.learn_location))

    def _objective_kwargs(self):
        weight = float(self.contrastive_weight_)
        return {"contrastive_weight": weight} if weight > 0 else {}

    def _label_log_posterior(self, params, prior_params, X):
        """``log p(u | x)`` of pre-processed rows, in batches: shape ``(n_samples, n_segments)``."""
        return _label_log_posterior(params, prior_params, X, self.activation_, self.prior_)

    # ----------------------------------------------------------------------------------------
    # fitting

    def _fit_with_aux(self, X, y, *, reset, epochs, validate, warn_max_iter, min_samples):
        setup = self._check_hyperparameters()
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], ensure_min_samples=min_samples,
                             multi_output=True, y_numeric=False, reset=reset)
        if reset:
            self._fit_aux(y)
        self.contrastive_weight_ = self._resolve_contrastive_weight(self.aux_type_)  # also on a warm start
        U = self._encode_aux(y, X.shape[0], X.dtype if reset else self._dtype)
        return self._train(X, U, setup, reset=reset, epochs=epochs, validate=validate,
                           warn_max_iter=warn_max_iter)

    def fit(self, X, y):
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
        reset = not self._continue_fit(self.warm_start)
        return self._fit_with_aux(X, y, reset=reset, epochs=self.max_iter, validate=self.early_stopping,
                                  warn_max_iter=True, min_samples=2)

    def partial_fit(self, X, y):
        """One epoch over a chunk of data; the first call also fixes the segment labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_aux)

        Returns
        -------
        self : ConditionalNonlinearICA
        """
        return self._fit_with_aux(X, y, reset=not self._continue_fit(True), epochs=1, validate=False,
                                  warn_max_iter=False, min_samples=1)

    # ----------------------------------------------------------------------------------------
    # likelihood and sampling

    def score_samples(self, X, y=None):
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

    def score(self, X, y=None):
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

    def predict_proba(self, X):
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
            raise ValueError("predict_proba needs a model fitted with discrete segment labels; this one "
                             "has a continuous auxiliary variable.")
        X = self._preprocess(self._validated(X))
        with _precision(self._dtype):
            params, prior_params = self._jax_params()
            log_post = self._label_log_posterior(params, prior_params, self._to_device(X))
            return np.exp(_fetch(log_post))

    def predict(self, X):
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

    def sample(self, n_samples=1, y=None, random_state=None):
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
            n = _check_n_samples(n_samples)
            U = rng.choice(self.classes_.size, size=n, p=np.exp(self.segment_log_weights_)).astype(np.int32)
        else:
            y = np.asarray(y)
            if y.ndim == 0 or (self.aux_type_ == "continuous" and y.ndim == 1
                               and self.aux_mean_.shape[0] > 1 and y.shape[0] == self.aux_mean_.shape[0]):
                y = np.repeat(y[None, ...], _check_n_samples(n_samples), axis=0)
            U = self._encode_aux(y, y.shape[0], self._dtype)
        return self._sample(U, U.shape[0], rng)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags
