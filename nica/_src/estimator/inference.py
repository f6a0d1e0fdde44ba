"""The fitted state of nica's estimators and what is computed from it: the parameters as NumPy
views, the pre-processing, transform, inverse_transform, the exact likelihood and sampling."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from nica._src.estimator.preprocessing import discarded_log_density
from nica._src.fitting import SCORE_BATCH, scoring_rows
from nica._src.network import (
    Layer,
    forward_jit,
    inverse_jit,
    log_abs_det,
    log_likelihood_without_det,
    marginal_log_likelihood_without_det,
)
from nica._src.sharding import fetch, place_rows, to_numpy
from nica._src.training import map_row_blocks, pad_rows, segment_block_rows

__all__ = ["FittedState", "precision"]


_PACKAGE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _outside_package_stacklevel() -> int:
    """The ``stacklevel`` that points :func:`warnings.warn`, called by the caller of this
    function, at the first frame outside nica (the user's call, however deep nica's own)."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE + os.sep):
        frame, level = frame.f_back, level + 1
    return level


def _warn_if_overflowed(out, X, method, dtype):
    """A ``RuntimeWarning`` when ``out`` (one row per row of ``X``, the finite input as the
    model computes with it) has NaN or infinite rows: the values overflowed the model's
    arithmetic.  It names the rows and the fix, and points at the user's call."""
    bad = ~np.isfinite(out.reshape(out.shape[0], -1)).all(axis=1)
    if not bad.any():
        return
    dtype = np.dtype(dtype)
    if np.isfinite(X).all():
        where = f"largest |input| {float(np.max(np.abs(X))):.3g}"
    else:
        where = f"the input has values beyond the largest {dtype.name}, {float(np.finfo(dtype).max):.3g}"
    first = np.flatnonzero(bad)[:10].tolist()
    warnings.warn(
        f"{method} gave NaN or infinite values for {int(bad.sum())} of the {bad.size} rows "
        f"(rows {first}{' ...' if bad.sum() > 10 else ''}) although the input is finite: the "
        f"values overflow the model's {dtype.name} arithmetic ({where}). Fit the model on "
        "float64 data (it computes in the dtype of the data it was fitted on), or rescale the "
        "data, e.g. fit and transform X / c for a constant c.",
        RuntimeWarning,
        stacklevel=_outside_package_stacklevel(),
    )


# Rows are computed in blocks of at most SCORE_BATCH rows (one block's temporaries at a time),
# padded to a bucket of row counts (nica._src.fitting.scoring_rows): every row count of a bucket
# shares one compiled function.


@functools.partial(jax.jit, static_argnames=("activation", "prior", "block"))
def _log_likelihood_rows(params, prior_params, X, U, n, activation, prior, block):
    def rows(X, U):
        return log_likelihood_without_det(params, X, activation, prior, prior_params, U)

    return map_row_blocks(rows, n, block, X, U)


@functools.partial(jax.jit, static_argnames=("activation", "prior", "block"))
def _marginal_rows(params, prior_params, log_weights, X, n, activation, prior, block):
    def rows(X):
        return marginal_log_likelihood_without_det(params, X, activation, prior, prior_params, log_weights)

    return map_row_blocks(rows, n, block, X)


@functools.partial(jax.jit, static_argnames=("activation", "block", "inverse"))
def _map_rows(params, X, n, activation, block, inverse):
    def rows(X):
        return (inverse_jit if inverse else forward_jit)(params, X, activation)

    return map_row_blocks(rows, n, block, X)


def precision(dtype):
    """Run JAX in float64 for float64 data (without touching the global configuration)."""
    if np.dtype(dtype) == np.float64:
        return jax.enable_x64(True)
    return contextlib.nullcontext()


class FittedState:
    """Mixin of the estimators: the fitted state ``_state`` (a :class:`~nica.TrainState` on the
    device), the pre-processing ``mean_``/``whitening_`` and everything computed from them."""

    # set by fit (declared for the type checker)
    _state: Any
    _dtype: Any
    activation_: Any
    prior_: Any
    mean_: np.ndarray
    whiten_: Any
    _whitening_matrix: np.ndarray | None
    _whitening_scale: np.ndarray | None
    _log_det_whitening: float
    n_features_in_: int
    noise_variance_: float

    def _n_sources(self) -> int:
        """The network's width: ``n_components_`` (models pickled before it existed: every feature)."""
        return int(getattr(self, "n_components_", self.n_features_in_))

    def _discarded_log_density(self, X):
        """Each row's log-density along the directions the whitening discarded (zeros when it
        keeps them all): an isotropic Gaussian of variance ``noise_variance_``."""
        discarded = getattr(self, "_discarded", None)
        if discarded is None:
            return np.zeros(X.shape[0], dtype=X.dtype)
        return discarded_log_density(X, self.mean_, discarded, self.noise_variance_).astype(X.dtype, copy=False)

    def __sklearn_is_fitted__(self):
        # Cheap: never the params_ property, which would copy every parameter to the host.
        return "_state" in self.__dict__

    # ----------------------------------------------------------------------------------------
    # pre-processing

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
        P = self._whitening_matrix
        if P.shape[0] != P.shape[1]:  # n_components < n_features: back to the kept subspace
            return (Z @ np.linalg.pinv(P).T + self.mean_).astype(self._dtype, copy=False)
        return (np.linalg.solve(P, Z.T).T + self.mean_).astype(self._dtype, copy=False)

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
        With ``n_components < n_features`` the map is not square and has no density of its own:
        use :attr:`network_params_` on ``(X - mean_) @ whitening_.T``.
        """
        if self._n_sources() != self.n_features_in_:
            raise AttributeError(
                f"params_ is the square map of the functional core; this model keeps n_components_="
                f"{self._n_sources()} of {self.n_features_in_} features: use network_params_ on "
                "(X - mean_) @ whitening_.T."
            )
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
        return to_numpy(self._state.params)

    @property
    def prior_params_(self):
        """The prior's own parameters as NumPy arrays (empty for a factorized prior)."""
        return to_numpy(self._state.prior_params)

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
            raise AttributeError(
                f"This {type(self).__name__} instance is not fitted yet; components_ and mixing_ exist after fit."
            )
        if len(self._state.params) != 1:
            raise AttributeError(
                "components_ and mixing_ are defined for linear ICA (n_layers=1) only; this model has "
                f"{len(self._state.params)} layers and is not a matrix."
            )
        return np.asarray(self.network_params_[0].W) @ self.whitening_

    def _to_device(self, A):
        return place_rows(A, self._inference_mesh())

    def _device_state(self):
        """The fitted state on the device(s) (after unpickling it arrives as NumPy arrays)."""
        self._state = self._on_device(self._state, fitting=False)
        return self._state

    def __getstate__(self):
        # Pickle NumPy arrays, not device buffers: a float64 model then loads as float64 in a
        # process that has not enabled JAX's 64-bit mode, and on any machine.
        state = super().__getstate__()
        if state.get("_state") is not None:
            state = {**state, "_state": to_numpy(state["_state"])}
        return state

    # ----------------------------------------------------------------------------------------
    # inference

    def _padded(self, X, U=None, largest=SCORE_BATCH):
        """Host rows (and ``U``) padded to :func:`~nica._src.fitting.scoring_rows`, on the
        device: ``(X, U, n, block)``."""
        block, padded = scoring_rows(X.shape[0], largest)
        rows = pad_rows(X, U, padded)
        return self._to_device(rows.X), self._to_device(rows.u), rows.n, block

    def _map_rows(self, X, inverse=False):
        """``forward`` (or ``inverse``) of host rows, in blocks, as a NumPy array."""
        X, _, n, block = self._padded(X)
        return fetch(_map_rows(self._jax_params()[0], X, n, self.activation_, block, inverse))[:n]

    def _log_likelihood_batched(self, params, prior_params, X, U, log_det=None, log_weights=None):
        """Exact log-likelihood of pre-processed host rows, in blocks (without the whitening
        term), as a NumPy array; with ``log_weights`` (segment log-probabilities) the marginal
        over the segment labels, from one forward pass.

        ``Σ log|det W_k|`` is computed once (an ``O(D³)`` LU per layer), not once per block.
        """
        if log_det is None:
            log_det = float(log_abs_det(params))
        if log_weights is not None:
            # every segment at once: rows per block shrink with the segments (same memory)
            X, _, n, block = self._padded(X, None, segment_block_rows(log_weights.shape[0]))
            rows = _marginal_rows(params, prior_params, log_weights, X, n, self.activation_, self.prior_, block)
        else:
            X, U, n, block = self._padded(X, U)
            rows = _log_likelihood_rows(params, prior_params, X, U, n, self.activation_, self.prior_, block)
        rows = fetch(rows)[:n]
        return rows + rows.dtype.type(log_det)

    def _validated(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        with np.errstate(over="ignore"):  # beyond a float32 model's range: the methods warn
            return np.asarray(X, dtype=self._dtype)

    def _validated_sources(self, S):
        """Sources for ``inverse_transform``: ``n_components_`` columns (the features' checks
        when every feature is a source)."""
        check_is_fitted(self)
        if self._n_sources() == self.n_features_in_:
            return self._validated(S)
        S = check_array(S, dtype=[np.float64, np.float32])
        if S.shape[1] != self._n_sources():
            raise ValueError(
                f"X has {S.shape[1]} features, but {type(self).__name__}.inverse_transform is expecting "
                f"{self._n_sources()} sources (n_components_) as input."
            )
        return np.asarray(S, dtype=self._dtype)

    def _jax_params(self):
        state = self._device_state()
        return state.params, state.prior_params

    def transform(self, X: ArrayLike) -> np.ndarray:
        """Estimated sources ``S = g(X)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        S : ndarray of shape (n_samples, n_components)
        """
        X = self._validated(X)
        with precision(self._dtype), np.errstate(over="ignore", invalid="ignore"):
            S = self._map_rows(self._preprocess(X))
        _warn_if_overflowed(S, X, "transform", self._dtype)
        return S

    def inverse_transform(self, X: ArrayLike) -> np.ndarray:
        """Observations ``g⁻¹(S)`` from sources.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_components)
            Sources, e.g. the output of :meth:`transform`.

        Returns
        -------
        X_original : ndarray of shape (n_samples, n_features)
        """
        S = self._validated_sources(X)
        with precision(self._dtype):
            Z = self._map_rows(S, inverse=True)
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported below
            X_original = self._postprocess(Z)
        _warn_if_overflowed(X_original, S, "inverse_transform", self._dtype)
        return X_original

    def _score_samples(self, X, U, log_weights=None):
        """The log-likelihood of each row, with a ``RuntimeWarning`` where it overflowed."""
        X = self._validated(X)
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported below
            discarded = self._discarded_log_density(X)
            Z = self._preprocess(X)
        with precision(self._dtype), np.errstate(over="ignore", invalid="ignore"):
            params, prior_params = self._jax_params()
            if log_weights is not None:
                log_weights = jnp.asarray(log_weights, self._dtype)
            ll = self._log_likelihood_batched(params, prior_params, Z, U, log_weights=log_weights)
            ll = ll + self._dtype.type(self._log_det_whitening) + discarded
        _warn_if_overflowed(ll, X, "score_samples", self._dtype)
        return ll

    def _sample(self, U, n_samples, random_state):
        seed = check_random_state(random_state).randint(np.iinfo(np.int32).max)
        with precision(self._dtype):
            params, prior_params = self._jax_params()
            u = jnp.zeros((n_samples, 0)) if U is None else self._to_device(U)
            S = self.prior_.conditional_sample(prior_params, jax.random.key(seed), u, self._n_sources(), self._dtype)
            Z = fetch(inverse_jit(params, self._to_device(S), self.activation_))
        X = self._postprocess(Z)
        discarded = getattr(self, "_discarded", None)
        if discarded is not None:  # the isotropic Gaussian of the discarded directions
            noise = np.random.RandomState(seed).standard_normal((n_samples, discarded.shape[1]))
            X = X + (np.sqrt(self.noise_variance_) * noise @ discarded.T).astype(self._dtype, copy=False)
        return X

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
