"""``NonlinearICA``: nonlinear ICA and density estimation with a factorized prior (eq. 3)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.utils.validation import check_is_fitted, validate_data

from nica._src import objectives as _objectives
from nica._src._checks import check_count
from nica._src.estimator.base import BaseRelativeGradientICA

__all__ = ["NonlinearICA"]

# averaging="auto": the time constant, in epochs, of the running average of the parameters that
# is validated, kept and returned (0: the last iterate).  NonlinearICA: off (not measured here;
# ConditionalNonlinearICA's is chosen on its benchmark).
_AUTO_AVERAGING = 0.0


class NonlinearICA(BaseRelativeGradientICA):
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
    objective : "auto", str or Objective, default="auto"
        What the fit minimises and monitors (:mod:`nica.objectives`): ``"auto"`` is the exact
        negative log-likelihood (``objectives.likelihood()``); another objective, e.g.
        ``likelihood() + 0.1 * my_term``, is trained with the same relative gradient (its terms'
        errors are summed) and monitored on the validation set, while :meth:`score` stays the
        exact log-likelihood.  The resolved objective is ``objective_``.
    bias : bool, default=True
        Whether layers have biases.
    optimizer : str, callable or optax.GradientTransformation, default="adam"
        An optax optimizer name (built with ``learning_rate``), an optax factory such as
        ``optax.sgd`` (called with ``learning_rate``), or a ready ``GradientTransformation``
        (then ``learning_rate`` is not used).  Use a name or an optax factory if the estimator
        must be saved (:func:`nica.save`, ``checkpoint_path``) or pickled: optax
        transformations are closures.
    learning_rate : float or "auto", default="auto"
        Step size handed to the optimizer factory (the initial one with ``schedule="plateau"``).
        ``"auto"``: 1e-3 when the fit refines the FastICA start (``init_ == "fastica"``), where
        larger steps mostly add noise to a solution that is already close (64 logistic sources:
        mean MCC 0.953 at 1e-3 against 0.950 at 1e-2 on the data seeds that chose it, and a
        validation NLL that rises by 0.05 instead of 0.3 nats after its best epoch), and 1e-2 from a random start,
        times ``sqrt(64 / D)`` above ``D = 64`` sources (Adam moves every entry of each
        ``D×D`` matrix by about the rate, a step that grows with ``D``: at ``D = 256`` the
        full rate diverged in its first epoch in float32).  The rate used is ``learning_rate_``.
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
        eigendecomposition and a ``D×D`` matrix), ``"standardize"`` above (and always
        ``"unit-variance"`` with ``n_components``).  It is an affine map whose log-determinant is
        included in every likelihood, so scores stay in the units of ``X``.  A warning names
        data with fewer directions that vary than the model keeps (constant or redundant
        columns, no more rows than features), whose likelihood is unbounded.
    n_components : int or None, default=None
        The number of sources, for more sensors than sources: the PCA whitening keeps the
        ``n_components`` directions of largest variance (as FastICA's whitening does) and the
        network unmixes those.  ``score_samples`` is then the exact log-likelihood of a density
        on the whole space: the network's density on the kept subspace times an isotropic
        Gaussian on the discarded directions, of variance ``noise_variance_`` (the mean of
        their eigenvalues), as in probabilistic PCA; ``sample`` draws from it and
        ``inverse_transform`` maps sources back into the kept subspace.  ``None``: every
        feature is a source.
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
        the same rule.  A checkpoint loaded with :func:`nica.load` resumes its interrupted fit
        (see ``checkpoint_path``), to ``max_iter`` epochs in all as ``max_iter`` is set then.
    checkpoint_path : str, path-like or None, default=None
        Save the estimator to this file (with :func:`nica.save`, a file that loads without
        unpickling anything) during ``fit``, every ``checkpoint_every``, and once more when the
        fit ends; each file is written under a temporary name and renamed, so an interruption
        never leaves a half-written one.  A checkpoint is a fitted estimator holding the best
        parameters so far (``best_iter_``); it also records the last epoch's parameters, the
        optimizer state, the next shuffle's random key, the validation split's random state, the
        early-stopping counters and a hash of the data, so that
        ``nica.load(path).set_params(warm_start=True).fit(X)`` with the same ``X`` runs the
        epochs left of the interrupted fit and ends as the uninterrupted fit would have, epoch
        for epoch.  The fit ends at ``max_iter`` epochs in all, counted from its start, with
        ``max_iter`` as it is when resuming: ``set_params(max_iter=...)`` before resuming moves
        the end (a ``max_iter`` the fit has passed already is refused with a ``ValueError``).
        On other data (another hash) it continues as an ordinary warm start, with a
        ``UserWarning``.  The file written when the fit ends resumes nothing: ``warm_start``
        then runs ``max_iter`` more epochs.  Needs ``n_init=1`` and parameters that
        :func:`nica.save` can describe (names, numbers, registered components; checked before
        the first epoch); ``partial_fit`` writes no checkpoints.  The command line:
        ``nica fit --checkpoint FILE`` and ``nica fit --resume FILE``.  A Ctrl-C
        (``KeyboardInterrupt``) during ``fit`` takes effect when the running epoch ends, once
        the checkpoint of that moment is written, so the file resumes the fit from there.
    checkpoint_every : int or datetime.timedelta, default=1
        How often ``checkpoint_path`` is written: every this many epochs (an int), or at the
        end of the first epoch that ends once this much time has passed since the last
        checkpoint (a :class:`datetime.timedelta`, e.g. ``timedelta(minutes=10)``).
    random_state : int, RandomState instance or None, default=None
        Controls initialization, the validation split and batch shuffling.
    verbose : int, default=0
        ``verbose >= 1`` shows a progress bar over epochs with the training objective and the
        validation terms by name (``train_nll``, ``val_nll`` for the likelihood).
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
    objective_ : Objective
        The resolved objective (what ``loss_curve_`` and ``validation_scores_`` measure; its
        ``label`` says so).
    mean_ : ndarray of shape (n_features,)
        Mean removed by the pre-processing (zeros when ``whiten=False``).  For linear ICA
        (``n_layers=1``) the layer's bias is folded into it after ``fit``, so that
        ``transform(X) == (X - mean_) @ components_.T`` as in FastICA.
    components_ : ndarray of shape (n_components, n_features)
        ``n_layers=1`` only: the whole unmixing matrix (pre-processing included), FastICA's
        ``components_``.
    mixing_ : ndarray of shape (n_features, n_components)
        ``n_layers=1`` only: its (pseudo-)inverse, FastICA's ``mixing_``.
    whiten_, gradient_, init_ : str
        The resolved ``whiten``, ``gradient`` and ``init`` options.
    n_components_ : int
        The number of sources (``n_components``, or ``n_features_in_``).
    noise_variance_ : float
        The variance of the isotropic Gaussian on the directions the whitening discarded
        (``0.0`` when it keeps them all).
    learning_rate_ : float
        The resolved initial learning rate.
    init_scores_ : list of float
        Best validation log-likelihood of each of the ``n_init`` initialisations.
    whitening_ : ndarray of shape (n_components, n_features)
        Pre-processing matrix ``P``: the network sees ``(X - mean_) @ whitening_.T``.
    loss_curve_ : list of float
        Training objective per epoch, the NLL for the likelihood (``objective_.label`` says
        which; mean batch loss of the epoch, log-determinants at the epoch's
        end), in nats per sample in the units of ``X``.
    validation_scores_ : list of float
        Mean held-out log-likelihood per epoch (empty without early stopping).
    validation_log_likelihoods_ : list of float
        The same, the exact held-out log-likelihood, also where ``validation_scores_`` holds
        another monitored objective (:class:`ConditionalNonlinearICA`'s hybrid objective).
    validation_terms_ : dict of str to list of float
        Each term of the objective on the validation rows, by name, per epoch, in nats per
        sample (the likelihood's term ``"nll"``; with the hybrid objective also
        ``"label_cross_entropy"``); empty without early stopping.
    n_iter_ : int
        Epochs run.
    epochs_left_ : int
        The epochs left of the interrupted fit a checkpoint was written in (``0`` otherwise).
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

    _parameter_constraints: dict = {**BaseRelativeGradientICA._parameter_constraints}

    def _conditional_prior_hint(self, prior):
        return (
            "a conditional prior needs an auxiliary variable: use "
            f"ConditionalNonlinearICA(prior={prior.base!r}) and pass u as y"
        )

    def _check_objective(self):
        if not (isinstance(self.objective, str) and self.objective == "auto"):
            _objectives.get(self.objective)

    def _build_objective(self, prior):
        if isinstance(self.objective, str) and self.objective == "auto":
            return _objectives.likelihood()
        objective = _objectives.get(self.objective)
        objective.check_prior(prior)
        return objective

    def _auto_averaging(self):
        return _AUTO_AVERAGING

    @property
    def epochs_left_(self):
        """The epochs an interrupted fit has left: for a model loaded from a checkpoint written
        during ``fit`` (``checkpoint_path``), ``fit`` with ``warm_start=True`` and the same data
        runs them and ends as the uninterrupted fit would have; ``0`` for a finished fit."""
        check_is_fitted(self)
        resume = self.__dict__.get("_resume")
        return 0 if resume is None else int(resume["epochs_left"])

    def fit(self, X: ArrayLike, y: None = None) -> NonlinearICA:
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
        (X,) = self._process_rows(
            lambda: (validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=2, reset=reset),), ["X"]
        )
        return self._fit(
            X, None, setup, reset=reset, epochs=self.max_iter, validate=self.early_stopping, checkpoint=True
        )

    def partial_fit(self, X: ArrayLike, y: None = None) -> NonlinearICA:
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
        (X,) = self._process_rows(
            lambda: (validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=1, reset=reset),), ["X"]
        )
        if reset:
            self._check_first_chunk(X)
        return self._fit(X, None, setup, reset=reset, epochs=1, validate=False, warn_max_iter=False)

    def score_samples(self, X: ArrayLike) -> np.ndarray:
        """Exact log-likelihood of each sample, in the units of ``X`` (eq. 3).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        log_likelihood : ndarray of shape (n_samples,)
        """
        return self._score_samples(X, None)

    def score(self, X: ArrayLike, y: None = None) -> float:
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

    def sample(self, n_samples: int = 1, random_state: Any = None) -> np.ndarray:
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
        return self._sample(None, check_count(n_samples, "n_samples"), random_state)
