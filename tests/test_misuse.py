"""Misuse of the Python API: every bad input is a ValueError or TypeError that names the
argument, said before any JAX tracing, or a correct result; never a bare library error or a
silently wrong answer.  docs/reliability.rst tabulates the inputs tried here (and, with random
inputs, in tests/test_fuzz.py).

Fits use 200x3 data and at most a few epochs; two fitted estimators are shared per module.
"""

import dataclasses
import re
import warnings
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.sparse
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.utils.validation import check_is_fitted

import nica
from nica import activations, priors
from nica._src.estimator import inference as estimator_module
from nica.datasets import apply_mixing, make_segmented_mixture, make_toy_density
from nica.metrics import amari_distance, make_mcc_scorer, mean_corr_coef

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

N, D = 200, 3
TINY = dict(n_layers=2, max_iter=2, batch_size=64, random_state=0)


@pytest.fixture(scope="module")
def X():
    return np.random.default_rng(0).laplace(size=(N, D))


@pytest.fixture(scope="module")
def u():
    return np.repeat(np.arange(4), N // 4)


@pytest.fixture(scope="module")
def fitted(X):
    return nica.NonlinearICA(**TINY).fit(X)


@pytest.fixture(scope="module")
def fitted_conditional(X, u):
    return nica.ConditionalNonlinearICA(**TINY).fit(X, u)


def snapshot(model):
    return [np.array(leaf) for leaf in jax.tree_util.tree_leaves((model.params_, model.prior_params_))] + [
        np.array(model.mean_), model.n_features_in_]


def assert_unchanged(model, before):
    after = snapshot(model)
    assert len(after) == len(before)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------------------------
# the estimators: data


class _Unhashable(activations.Activation):
    """A custom activation that cannot be a static argument of jit."""

    __hash__ = None

    def fn(self, x):
        return x

    def inverse(self, y):
        return y

    def log_derivative(self, x):
        return jnp.zeros_like(x)


class _Incomplete(priors.Prior):
    """A custom prior that defines no density."""


BAD_X = [  # (name, X, error, message fragment)
    ("NaN", np.array([[1.0, np.nan, 0.0]] * 4), ValueError, "NaN"),
    ("infinity", np.array([[1.0, np.inf, 0.0]] * 4), ValueError, "infinity"),
    ("no rows", np.empty((0, D)), ValueError, "0 sample"),
    ("no columns", np.empty((5, 0)), ValueError, "0 feature"),
    ("1-D", np.ones(5), ValueError, "Expected 2D array"),
    ("3-D", np.ones((4, D, 1)), ValueError, "dim 3"),
    ("scalar", 3.0, ValueError, "Expected 2D array"),
    ("None", None, ValueError, "Expected 2D array"),
    ("complex", np.ones((4, D)) + 1j, ValueError, "Complex data not supported"),
    ("text", np.array([["a", "b", "c"]] * 4), ValueError, "could not convert"),
    ("object with None", np.array([[1.0, None, 2.0]] * 4, dtype=object), ValueError, "NaN"),
    ("ragged list", [[1.0, 2.0, 3.0], [1.0]], ValueError, "inhomogeneous"),
    ("sparse", scipy.sparse.csr_matrix(np.eye(D)), TypeError, "Sparse data was passed"),
]


@pytest.mark.parametrize("name, bad, error, match", BAD_X, ids=[case[0] for case in BAD_X])
def test_fit_refuses_bad_X_and_a_failed_fit_changes_nothing(fitted, fitted_conditional, u, name, bad, error, match):
    before, before_c = snapshot(fitted), snapshot(fitted_conditional)
    with pytest.raises(error, match=match):
        fitted.fit(bad)
    with pytest.raises(error, match=match):
        fitted.partial_fit(bad)
    n = len(bad) if hasattr(bad, "__len__") and not scipy.sparse.issparse(bad) else N
    with pytest.raises(error, match=match):
        fitted_conditional.fit(bad, u[:n] if n <= N else u)
    assert_unchanged(fitted, before)
    assert_unchanged(fitted_conditional, before_c)


@pytest.mark.parametrize("name, bad, error, match",
                         [case for case in BAD_X if case[0] not in ("no columns",)]
                         + [("wrong width", np.ones((4, D - 1)), ValueError, "has 2 features, but"),
                            ("too wide", np.ones((4, D + 1)), ValueError, "has 4 features, but")],
                         ids=[case[0] for case in BAD_X if case[0] != "no columns"] + ["wrong width", "too wide"])
def test_fitted_methods_refuse_bad_X(fitted, fitted_conditional, name, bad, error, match):
    before, before_c = snapshot(fitted), snapshot(fitted_conditional)
    for model in (fitted, fitted_conditional):
        methods = [model.transform, model.inverse_transform, model.score_samples, model.score]
        for method in methods:
            if model is fitted_conditional and method.__name__.startswith("score") and name in ("None", "scalar"):
                # the marginal score counts the rows first: scikit-learn's _num_samples refuses
                error_, match_ = TypeError, "Expected sequence or array-like|Singleton array"
            else:
                error_, match_ = error, match
            with pytest.raises(error_, match=match_):
                method(bad)
    assert_unchanged(fitted, before)
    assert_unchanged(fitted_conditional, before_c)


def test_fit_needs_two_rows(fitted, X):
    before = snapshot(fitted)
    with pytest.raises(ValueError, match="1 sample.* a minimum of 2 is required"):
        fitted.fit(X[:1])
    assert_unchanged(fitted, before)


def test_a_validation_split_that_leaves_no_training_row_is_refused(X):
    """ceil(0.95 · 10) = 10 rows would be held out of 10: refused before anything is trained."""
    with pytest.raises(ValueError, match="validation_fraction=0.95 needs at least one training row.*got 10"):
        nica.NonlinearICA(validation_fraction=0.95).fit(X[:10])


def test_unfitted_methods_raise_not_fitted(X):
    for model in (nica.NonlinearICA(), nica.ConditionalNonlinearICA()):
        for call in (lambda: model.transform(X), lambda: model.inverse_transform(X),
                     lambda: model.score_samples(X), lambda: model.sample(2)):
            with pytest.raises(NotFittedError):
                call()
        with pytest.raises(AttributeError, match="not fitted yet"):
            model.components_


def test_the_fitted_check_copies_nothing_to_the_host(fitted, fitted_conditional):
    """check_is_fitted, and the warm-start decision of fit/partial_fit, never read params_."""
    with mock.patch.object(estimator_module, "to_numpy", side_effect=AssertionError("host copy")):
        for model in (fitted, fitted_conditional):
            check_is_fitted(model)
            assert model.__sklearn_is_fitted__()
            assert model._continue_fit(True)
    assert not nica.NonlinearICA().__sklearn_is_fitted__()


def test_fit_converts_other_numeric_dtypes_as_scikit_learn_does(X):
    for data in [X.astype(np.float16), (3 * X).astype(np.int64), X > 0, X.tolist()]:
        model = nica.NonlinearICA(**TINY).fit(data)  # the fixture's compiled programs
        assert model.transform(data).dtype == np.float64
        assert np.isfinite(model.transform(data)).all()


# ---------------------------------------------------------------------------------------------
# the estimators: hyperparameters (all refused before any data or JAX work)


BAD_HYPERPARAMETERS = [  # (params, error, message fragment)
    ({"n_layers": 0}, ValueError, "n_layers must be an integer >= 1; got 0"),
    ({"n_layers": "3"}, ValueError, "n_layers must be an integer >= 1; got '3'"),
    ({"n_layers": True}, ValueError, "n_layers must be an integer >= 1; got True"),
    ({"learning_rate": float("nan")}, ValueError, "learning_rate must be a finite number > 0"),
    ({"learning_rate": "0.1"}, ValueError, "learning_rate must be a finite number > 0"),
    ({"tol": -1.0}, ValueError, "tol must be a finite number >= 0"),
    ({"batch_size": 0}, ValueError, "batch_size must be an integer >= 1"),
    ({"max_iter": 2.5}, ValueError, "max_iter must be an integer >= 1"),
    ({"n_iter_no_change": 0}, ValueError, "n_iter_no_change must be an integer >= 1"),
    ({"n_init": 0}, ValueError, "n_init must be an integer >= 1"),
    ({"validation_fraction": 1.0}, ValueError, r"validation_fraction must be a number in \(0, 1\)"),
    ({"gradient": "natural"}, ValueError, "gradient must be one of"),
    ({"whiten": True}, ValueError, "whiten must be one of"),
    ({"schedule": None}, ValueError, "schedule must be one of"),
    ({"bias": "yes"}, TypeError, "bias must be a bool; got 'yes'"),
    ({"early_stopping": None}, TypeError, "early_stopping must be a bool"),
    ({"warm_start": 1}, TypeError, "warm_start must be a bool"),
    ({"parallel": "both"}, ValueError, "parallel must be one of"),
    ({"verbose": "loud"}, ValueError, "verbose must be a bool or an integer >= 0; got 'loud'"),
    ({"verbose": -1}, ValueError, "verbose must be a bool or an integer >= 0; got -1"),
    ({"random_state": "a"}, ValueError, "cannot be used to seed"),
    ({"activation": "relu"}, ValueError, "Unknown activation 'relu'"),
    ({"activation": activations.SmoothLeakyReLU}, TypeError, "got the class SmoothLeakyReLU"),
    ({"activation": _Unhashable()}, TypeError, "activation _Unhashable is not hashable"),
    ({"prior": "cauchy"}, ValueError, "Unknown prior 'cauchy'"),
    ({"prior": priors.laplace}, TypeError, "got the function laplace: call it"),
    ({"optimizer": "sgdx"}, ValueError, "not an optax optimizer"),
    ({"optimizer": "chain"}, TypeError, "optimizer='chain' could not be built"),
    ({"optimizer": "GradientTransformation"}, TypeError, "could not be built"),
    ({"optimizer": 3}, TypeError, "optimizer must be"),
    ({"optimizer": lambda lr: 3}, TypeError, "must return an optax.GradientTransformation"),
    ({"optimizer": optax.lbfgs()}, TypeError, "does not work as an optax optimizer"),
]


@pytest.mark.parametrize("params, error, match", BAD_HYPERPARAMETERS,
                         ids=[f"{next(iter(p))}-{i}" for i, (p, _, _) in enumerate(BAD_HYPERPARAMETERS)])
def test_bad_hyperparameters_are_refused_by_both_estimators(fitted, fitted_conditional, X, u, params, error, match):
    before = snapshot(fitted)
    with pytest.raises(error, match=match):
        nica.NonlinearICA(**{**TINY, **params}).fit(X)
    with pytest.raises(error, match=match):
        nica.ConditionalNonlinearICA(**{**TINY, **params}).fit(X, u)
    # a fitted estimator given a bad value refuses it in fit and partial_fit, and stays as it was
    old = fitted.get_params()
    try:
        fitted.set_params(**params)
        for call in (lambda: fitted.fit(X), lambda: fitted.partial_fit(X)):
            with pytest.raises(error, match=match):
                call()
    finally:
        fitted.set_params(**old)
    assert_unchanged(fitted, before)


@pytest.mark.parametrize("params, error, match", [
    ({"aux_type": "ordinal"}, ValueError, "aux_type must be one of"),
    ({"hidden_units": 0}, ValueError, "hidden_units must be an integer >= 1"),
    ({"learn_location": "yes"}, TypeError, "learn_location must be a bool"),
])
def test_bad_conditional_hyperparameters(X, u, params, error, match):
    with pytest.raises(error, match=match):
        nica.ConditionalNonlinearICA(**{**TINY, **params}).fit(X, u)


def test_conditional_prior_objects_are_refused_with_the_way_out(X, u):
    conditional = priors.segment_conditional("laplace", 2)
    with pytest.raises(ValueError, match=r"got the conditional SegmentConditional: .*pass prior=Laplace\(\)"):
        nica.ConditionalNonlinearICA(**TINY, prior=conditional).fit(X, u)
    with pytest.raises(ValueError, match="got the conditional MLPConditional"):
        nica.ConditionalNonlinearICA(**TINY, prior=priors.mlp_conditional("gaussian", 1)).fit(X, u)
    with pytest.raises(ValueError, match="use ConditionalNonlinearICA"):
        nica.NonlinearICA(**TINY, prior=conditional).fit(X)


def test_set_params_with_an_unknown_name(fitted):
    with pytest.raises(ValueError, match="Invalid parameter 'bogus'"):
        fitted.set_params(bogus=1)


# ---------------------------------------------------------------------------------------------
# the estimators: sample and the auxiliary variable


@pytest.mark.parametrize("n_samples", [0, -1, 2.5, True, "3", None])
def test_sample_refuses_bad_counts(fitted, fitted_conditional, n_samples):
    with pytest.raises(ValueError, match="n_samples must be an integer >= 1"):
        fitted.sample(n_samples)
    with pytest.raises(ValueError, match="n_samples must be an integer >= 1"):
        fitted_conditional.sample(n_samples)
    with pytest.raises(ValueError, match="n_samples must be an integer >= 1"):
        fitted_conditional.sample(n_samples, y=0)


def test_sample_refuses_a_bad_random_state(fitted):
    with pytest.raises(ValueError, match="cannot be used to seed"):
        fitted.sample(2, random_state="x")


BAD_Y_FIT = [  # (name, y, error, message fragment)
    ("None", None, ValueError, "requires y to be passed"),
    ("too short", np.arange(10), ValueError, "inconsistent numbers of samples"),
    ("scalar", 3, TypeError, "at least 1 dimension"),
    ("empty", [], ValueError, "0 sample"),
    ("NaN", np.r_[np.nan, np.arange(N - 1.0)], ValueError, "Input y contains NaN"),
    ("infinity", np.r_[np.inf, np.arange(N - 1.0)], ValueError, "Input y contains infinity"),
    ("complex", np.arange(N) + 1j, ValueError, "Complex data not supported"),
    ("3-D", np.zeros((N, 1, 1)), ValueError, "dim 3"),
    ("2-D text labels", np.c_[np.arange(N), np.arange(N)].astype(str), ValueError, "must be 1-D"),
    ("numbers and text", np.array([1, "a"] * (N // 2), dtype=object), ValueError,
     r"labels of one kind, .* got labels of the kinds \['number', 'string'\]"),
    ("None entries", np.array([1, None] * (N // 2), dtype=object), ValueError, r"\['NoneType', 'number'\]"),
    ("text as continuous", np.array(["a", "b"] * (N // 2)), ValueError, "continuous auxiliary variable y must be numeric"),
]


@pytest.mark.parametrize("name, y, error, match", BAD_Y_FIT, ids=[case[0] for case in BAD_Y_FIT])
def test_conditional_fit_refuses_bad_y_and_changes_nothing(fitted_conditional, X, name, y, error, match):
    before = snapshot(fitted_conditional)
    attrs = (fitted_conditional.aux_type_, fitted_conditional.classes_.copy())
    model = fitted_conditional
    if name == "text as continuous":
        model.set_params(aux_type="continuous")
    try:
        with pytest.raises(error, match=match):
            model.fit(X, y)
    finally:
        model.set_params(aux_type="auto")
    assert_unchanged(fitted_conditional, before)
    assert fitted_conditional.aux_type_ == attrs[0]
    np.testing.assert_array_equal(fitted_conditional.classes_, attrs[1])


BAD_Y_AFTER_FIT = [
    ("unseen labels", np.arange(N) % 4 + 10, ValueError, r"4 segment label\(s\) not seen during fit: \[10, 11, 12, 13\]"),
    ("fractional labels", np.arange(N) % 4 + 0.5, ValueError, "not seen during fit"),
    ("NaN label", np.r_[np.nan, np.arange(N - 1) % 4], ValueError, r"not seen during fit: \[nan\]"),
    ("text among numbers", np.array([0, "a"] * (N // 2), dtype=object), ValueError, r"not seen during fit: \['a'\]"),
    ("None labels", np.array([None] * N, dtype=object), ValueError, "labels of one kind"),
    ("wrong length", np.arange(5), ValueError, r"one entry per sample \(200\)"),
    ("2-D", np.zeros((N, 2), int), ValueError, "Segment labels y must be 1-D"),
]


@pytest.mark.parametrize("name, y, error, match", BAD_Y_AFTER_FIT, ids=[case[0] for case in BAD_Y_AFTER_FIT])
def test_conditional_score_and_sample_refuse_bad_y(fitted_conditional, X, name, y, error, match):
    with pytest.raises(error, match=match):
        fitted_conditional.score_samples(X, y)
    if name not in ("wrong length",):
        with pytest.raises(error, match=match):
            fitted_conditional.sample(y=y)


def test_continuous_u_after_fit():
    """The checks of a continuous u, on the state a fit with a 2-D u leaves (no fit needed)."""
    model = nica.ConditionalNonlinearICA()
    model.aux_type_, model.aux_mean_, model.aux_scale_ = "continuous", np.zeros(2), np.ones(2)
    for y, match in [(np.zeros((N, 3)), "y has 3 auxiliary dimensions but the model was fitted with 2"),
                     (np.full((N, 2), np.nan), "NaN or infinity"),
                     (np.zeros((N, 2, 1)), "must be 1-D or 2-D"),
                     (np.array([["a", "b"]] * N), "must be numeric; got dtype <U1"),
                     (np.zeros((5, 2)), r"one entry per sample \(200\)")]:
        with pytest.raises(ValueError, match=match):
            model._encode_aux(y, N, np.float64)


# ---------------------------------------------------------------------------------------------
# warm start: a changed hyperparameter takes effect or starts anew, with a warning


def _quiet_fit(model, *args):
    """fit, failing on any UserWarning but the max_iter ConvergenceWarning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(*args)


def test_warm_start_with_a_structural_change_starts_anew_with_a_warning(X):
    model = nica.NonlinearICA(**TINY, warm_start=True).fit(X)
    _quiet_fit(model, X)  # nothing changed: continues silently
    assert model.n_iter_ == 4
    model.set_params(n_layers=3, bias=False, prior="gaussian")
    with pytest.warns(UserWarning, match=r"n_layers \(2 -> 3\), bias \(True -> False\), prior "
                                         r"\(LogisticMixture\(n_mixtures=\d+\) -> Gaussian\(\)\) changed .*starts anew"):
        model.fit(X)
    assert len(model.params_) == 3 and model.network_params_[0].b is None and model.prior_ == priors.gaussian()
    assert model.n_iter_ == 2  # a new fit: its own epochs only
    model.set_params(n_layers=2, bias=True, prior="logistic_mixture", whiten="standardize")
    with pytest.warns(UserWarning, match=r"n_layers \(3 -> 2\), bias .*whiten \('unit-variance' -> 'standardize'\)"):
        model.fit(X)
    assert model.whiten_ == "standardize" and model.n_iter_ == 2
    # partial_fit follows the same rule; the warning comes before the data are read, and a
    # refused chunk leaves the model as it was
    before = snapshot(model)
    model.set_params(n_layers=1)
    with pytest.warns(UserWarning, match=r"n_layers \(2 -> 1\)"), pytest.raises(ValueError, match="NaN"):
        model.partial_fit(np.full((4, D), np.nan))
    assert_unchanged(model, before)


def test_warm_start_with_a_new_gradient_or_optimizer_restarts_the_optimizer(X):
    model = nica.NonlinearICA(**TINY, warm_start=True).fit(X)
    assert model.gradient_ == "equivariant"  # "auto" for 3 features
    W = np.array(model.params_[0].W)
    model.set_params(gradient="relative")
    with pytest.warns(UserWarning, match=r"gradient \('equivariant' -> 'relative'\) .*restarted optimizer"):
        model.fit(X)
    assert model.gradient_ == "relative" and model.n_iter_ == 4  # continued: 2 + 2 epochs
    assert not np.allclose(W, model.params_[0].W)
    # an optimizer with another state: the decision fit makes first (the epochs as above)
    model.set_params(optimizer="sgd")
    with pytest.warns(UserWarning, match="the optimizer changed"):
        assert model._continue_fit(True)
    assert jax.tree_util.tree_structure(model._state.opt_state["optimizer"]) == jax.tree_util.tree_structure(
        model._check_hyperparameters().optimizer.init((model._state.params, model._state.prior_params)))
    np.testing.assert_array_equal(W.shape, model.params_[0].W.shape)
    model.set_params(learning_rate=1e-3)  # SGD's state still fits: the new rate just takes effect
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        assert model._continue_fit(True)


def test_warm_start_of_the_conditional_model(X, u):
    model = nica.ConditionalNonlinearICA(**TINY, warm_start=True).fit(X, u)
    model.set_params(learn_location=False)
    with pytest.warns(UserWarning, match=r"learn_location \(True -> False\) changed"):
        model.fit(X, u)
    assert "loc" not in model.prior_params_ and model.n_iter_ == 2
    before = snapshot(model)
    model.set_params(prior="gaussian", aux_type="continuous")
    with pytest.warns(UserWarning, match=r"prior \(Laplace\(\) -> Gaussian\(\)\), aux_type \('discrete' -> 'continuous'\)"), \
            pytest.raises(ValueError, match="Input y contains NaN"):
        model.fit(X, np.full(N, np.nan))
    assert_unchanged(model, before)


# ---------------------------------------------------------------------------------------------
# divergence (a NaN loss): the best parameters are restored, with a warning


@pytest.mark.parametrize("gradient, conditional", [("relative", False), ("relative", True), ("equivariant", True)],
                         ids=["NonlinearICA-relative", "ConditionalNonlinearICA-relative",
                              "ConditionalNonlinearICA-equivariant"])
def test_divergence_restores_the_best_parameters_and_warns(X, u, gradient, conditional):
    """NonlinearICA with the equivariant form is tests/test_estimator.py's divergence test."""
    cls = nica.ConditionalNonlinearICA if conditional else nica.NonlinearICA
    model = cls(n_layers=2, max_iter=5, batch_size=64, optimizer="sgd", learning_rate=1e6,
                gradient=gradient, early_stopping=False, random_state=0)
    args = (X, u) if conditional else (X,)
    with pytest.warns(ConvergenceWarning, match=r"diverged at epoch (\d+) .*learning_rate=1000000\.0; stopped and "
                                                r"restored the parameters of epoch \d+") as record:
        model.fit(*args)
    diverged_at = int(re.search(r"epoch (\d+)", str(record[-1].message)).group(1))
    assert model.n_iter_ == diverged_at < 5 and model.best_iter_ < diverged_at
    assert len(model.loss_curve_) == diverged_at - 1  # the non-finite epoch is not recorded
    assert all(np.isfinite(leaf).all() for leaf in jax.tree_util.tree_leaves((model.params_, model.prior_params_)))
    assert np.isfinite(model.score_samples(*args)).all()


# ---------------------------------------------------------------------------------------------
# the functional core


def _params(dtype=jnp.float32):
    return nica.init_params(jax.random.key(0), D, 2, dtype=dtype)


XJ = jax.random.normal(jax.random.key(1), (8, D), jnp.float32)


@pytest.mark.parametrize("args, kwargs, error, match", [
    ((jax.random.key(0), "3", 2), {}, TypeError, "n_features must be an integer >= 1; got '3'"),
    ((jax.random.key(0), 2.5, 2), {}, TypeError, "n_features must be an integer >= 1; got 2.5"),
    ((jax.random.key(0), True, 2), {}, TypeError, "n_features must be an integer >= 1; got True"),
    ((jax.random.key(0), 3, 0), {}, ValueError, "n_layers must be an integer >= 1; got 0"),
    ((jax.random.key(0), 3, None), {}, TypeError, "n_layers must be an integer >= 1; got None"),
    ((0, 3, 2), {}, TypeError, "key must be one JAX random key"),
    ((jax.random.split(jax.random.key(0)), 3, 2), {}, TypeError, "key must be one JAX random key"),
    ((jax.random.key(0), 3, 2), {"dtype": jnp.int32}, TypeError, "dtype must be a floating dtype"),
    ((jax.random.key(0), 3, 2), {"dtype": "banana"}, TypeError, "dtype must be a floating dtype"),
    ((jax.random.key(0), 3, 2), {"dtype": jnp.complex64}, TypeError, "dtype must be a floating dtype"),
    ((jax.random.key(0), 3, 2), {"bias": "no"}, TypeError, "bias must be a bool"),
])
def test_init_params_refuses_bad_arguments(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        nica.init_params(*args, **kwargs)


def test_init_params_accepts_a_raw_key():
    assert nica.init_params(jax.random.PRNGKey(0), 2, 1)[0].W.shape == (2, 2)


BAD_CORE_X = [
    (np.array([["a", "b", "c"]]), TypeError, "X must be a floating-point array; got dtype <U1"),
    (np.array([[1, None, 2]], dtype=object), TypeError, "got dtype object"),
    ([[1.0, 2.0, 3.0], [1.0]], ValueError, "X must be a rectangular array of numbers"),
    (XJ + 1j, TypeError, "floating-point array; got dtype complex64"),
    (XJ > 0, TypeError, "got dtype bool"),
    (XJ[0], ValueError, r"must be 2-D with shape \(n_samples, 3\); got shape \(3,\)"),
    (XJ[None], ValueError, "must be 2-D"),
    (XJ[:, :2], ValueError, "X has 2 features but the network expects 3"),
    (XJ.astype(jnp.float16), TypeError, "dtype float16 but the parameters are float32"),
]


@pytest.mark.parametrize("bad, error, match", BAD_CORE_X, ids=range(len(BAD_CORE_X)))
def test_core_functions_refuse_bad_X(bad, error, match):
    params = _params()
    calls = [nica.forward, nica.forward_and_log_det, nica.log_likelihood, nica.relative_gradient,
             nica.equivariant_gradient, nica.euclidean_gradient, nica.autodiff_gradient]
    for fn in calls:
        with pytest.raises(error, match=match):
            fn(params, bad)
    with pytest.raises(error, match=match.replace("X ", "S ").replace("X must", "S must")):
        nica.inverse(params, bad)


def test_core_functions_refuse_bad_params():
    with pytest.raises(TypeError, match="params must be a non-empty tuple"):
        nica.forward(None, XJ)
    with pytest.raises(TypeError, match=r"params\[0\] must be an nica.Layer"):
        nica.forward([{"W": 1}], XJ)
    with pytest.raises(TypeError, match="one floating dtype; got \\['<U1'\\]"):
        nica.forward((nica.Layer(np.array([["a"]]), None),), XJ[:, :1])


def test_core_functions_refuse_unusable_activations_and_priors():
    params = _params()
    with pytest.raises(TypeError, match="activation _Unhashable is not hashable"):
        nica.forward(params, XJ, activation=_Unhashable())
    with pytest.raises(TypeError, match="got the class TanhLinear"):
        nica.inverse(params, XJ, activation=activations.TanhLinear)
    with pytest.raises(TypeError, match="Can't instantiate abstract class _Incomplete"):
        _Incomplete()  # a prior that defines no density cannot even be built
    for prior, what in [(priors.logistic_mixture(), "which has learned parameters: pass prior_params="),
                        (priors.segment_conditional("laplace", 2), "which depends on u and has learned parameters")]:
        for fn in CORE_WITH_PRIOR:
            with pytest.raises(ValueError, match=rf"{fn.__name__} needs prior_params for prior {type(prior).__name__}, "
                                                 rf"{what}"):
                fn(params, XJ, prior=prior)


CORE_WITH_PRIOR = [nica.log_likelihood, nica.relative_gradient, nica.equivariant_gradient, nica.euclidean_gradient,
                   nica.autodiff_gradient]


def test_core_functions_take_prior_params_and_u_and_refuse_bad_ones():
    """Accepted when given (the values are tested in tests/test_conditional.py); refused when they
    do not fit the prior, before any tracing."""
    params = _params()
    segment = priors.segment_conditional("laplace", 4)
    theta = segment.init_params(jax.random.key(0), D, jnp.float32)
    good = jnp.arange(8) % 4
    mixture = priors.logistic_mixture(2)
    for fn in (nica.log_likelihood, nica.relative_gradient):  # float32 compilations are slow: two suffice
        out = fn(params, XJ, prior=segment, prior_params=theta, u=good)
        assert all(np.isfinite(leaf).all() for leaf in jax.tree_util.tree_leaves(out))
    assert nica.log_likelihood(params, XJ, prior=mixture,
                               prior_params=mixture.init_params(jax.random.key(0), D, jnp.float32)).shape == (8,)
    for fn in CORE_WITH_PRIOR:
        with pytest.raises(ValueError, match=rf"pass the auxiliary variable u \(one entry per row of X\) to {fn.__name__}"):
            fn(params, XJ, prior=segment, prior_params=theta)
        with pytest.raises(ValueError, match="u is only used by a conditional prior; prior=Laplace"):
            fn(params, XJ, u=good)
        with pytest.raises(ValueError, match=r"u must have one entry per row of X \(8\); got shape \(3,\)"):
            fn(params, XJ, prior=segment, prior_params=theta, u=good[:3])
        with pytest.raises(ValueError, match=r"u holds segment ids from 1 to 4, outside \[0, 4\)"):
            fn(params, XJ, prior=segment, prior_params=theta, u=good + 1)
        with pytest.raises(ValueError, match="1-D array of integer segment ids"):
            fn(params, XJ, prior=segment, prior_params=theta, u=good.astype(jnp.float32))
        with pytest.raises(ValueError, match=r"prior_params do not match prior=SegmentConditional for 3 features: "
                                             r"expected \{'loc': \(4, 3\), 'log_scale': \(4, 3\)\}"):
            fn(params, XJ, prior=segment, prior_params=segment.init_params(jax.random.key(0), 2, jnp.float32), u=good)
        with pytest.raises(ValueError, match="prior_params do not match prior=Laplace for 3 features: expected ()"):
            fn(params, XJ, prior_params=theta)
        with pytest.raises(TypeError, match="prior_params have dtype float64 but the network's parameters are float32"):
            fn(params, XJ, prior=segment, prior_params=jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), theta),
               u=good)
        with pytest.raises(ValueError, match=r"prior_params do not match prior=SegmentConditional .*got \(\)"):
            fn(params, XJ, prior=segment, prior_params=(), u=good)


def test_the_segment_marginal_refuses_bad_weights_and_sources():
    prior = priors.segment_conditional("laplace", 3)
    theta = prior.init_params(jax.random.key(0), 2, jnp.float32)
    S = jnp.zeros((4, 2), jnp.float32)
    with pytest.raises(ValueError, match=r"log_weights must be log-probabilities: exp\(log_weights\) sums to 4.946"):
        prior.marginal_log_prob(theta, S, jnp.array([0.5, 0.5, 0.5]))  # probabilities, not their logs
    with pytest.raises(ValueError, match=r"log_weights must be a float array of shape \(3,\)"):
        prior.marginal_log_prob(theta, S, jnp.log(jnp.array([0.5, 0.5])))
    with pytest.raises(ValueError, match=r"log_weights must be a float array of shape \(3,\).*dtype int"):
        prior.marginal_log_prob(theta, S, np.array([0, 0, 0]))
    with pytest.raises(TypeError, match=r"log_weights must be a float array of shape \(3,\); got dtype <U1"):
        prior.marginal_log_prob(theta, S, np.array(["a", "b", "c"]))
    with pytest.raises(ValueError, match=r"S must have shape \(n_samples, 2\) to match prior_params; got shape \(4, 3\)"):
        prior.marginal_log_prob(theta, jnp.zeros((4, 3)))
    with pytest.raises(TypeError, match="SegmentConditional needs its prior_params"):
        prior.marginal_log_prob((), S)
    # a segment of weight zero is allowed, and under jit the values are not checked
    zero = jnp.log(jnp.array([0.0, 0.5, 0.5]))
    np.testing.assert_allclose(jax.jit(prior.marginal_log_prob)(theta, S, zero), prior.marginal_log_prob(theta, S, zero))


def test_transport_refuses_bad_updates():
    params = _params()
    with pytest.raises(TypeError, match="updates must be a tuple of nica.Layer"):
        nica.transport(3, params)
    with pytest.raises(ValueError, match="updates has 1 layers but params has 2"):
        nica.transport(params[:1], params)


def test_train_step_refuses_bad_arguments_before_tracing():
    opt = optax.adam(1e-2)
    params = _params()
    state = nica.init_train_state(opt, params)
    step = nica.make_train_step(opt)
    for bad_opt in ("adam", None, 3):
        with pytest.raises(TypeError, match="optimizer must be an optax.GradientTransformation"):
            nica.make_train_step(bad_opt)
        with pytest.raises(TypeError, match="optimizer must be an optax.GradientTransformation"):
            nica.init_train_state(bad_opt, params)
    with pytest.raises(TypeError, match="params must be a non-empty tuple"):
        nica.init_train_state(opt, 3)
    with pytest.raises(ValueError, match="gradient must be one of"):
        nica.make_train_step(opt, gradient="natural")
    for fn in (step, jax.jit(step)):  # the same checks eagerly and while tracing
        with pytest.raises(TypeError, match="state must be an nica.TrainState"):
            fn(tuple(state), XJ)
        with pytest.raises(ValueError, match="must be 2-D"):
            fn(state, XJ[0])
        with pytest.raises(ValueError, match="X has 2 features but the network expects 3"):
            fn(state, XJ[:, :2])
        with pytest.raises(TypeError, match="floating-point array; got dtype int32"):
            fn(state, XJ.astype(jnp.int32))
        with pytest.raises(ValueError, match="u is only used by a conditional prior"):
            fn(state, XJ, jnp.zeros(8, jnp.int32))
    learned = nica.make_train_step(opt, prior=priors.logistic_mixture())
    with pytest.raises(ValueError, match=r"state.prior_params do not match prior=LogisticMixture"):
        learned(state, XJ)


def test_train_step_with_segment_ids_out_of_range():
    opt = optax.adam(1e-2)
    prior = priors.segment_conditional("laplace", 4)
    state = nica.init_train_state(opt, _params(), prior.init_params(jax.random.key(0), D))
    step = nica.make_train_step(opt, prior=prior)
    good = jnp.arange(8) % 4
    jitted = jax.jit(step)
    assert np.isfinite(jitted(state, XJ, good)[1])
    for bad in (good + 1, good - 1):
        with pytest.raises(ValueError, match=r"segment ids from -?\d to \d, outside \[0, 4\)"):
            step(state, XJ, bad)
        # under jit the values are not known while tracing: a NaN loss, never another segment's
        assert np.isnan(jitted(state, XJ, bad)[1])
    with pytest.raises(ValueError, match="pass the auxiliary variable u"):
        step(state, XJ)
    with pytest.raises(ValueError, match="1-D array of integer segment ids"):
        step(state, XJ, good.astype(jnp.float32))
    with pytest.raises(ValueError, match=r"u must have one entry per row of X \(8\)"):
        step(state, XJ, good[:3])
    mlp = priors.mlp_conditional("laplace", 2)
    state = nica.init_train_state(opt, _params(), mlp.init_params(jax.random.key(0), D))
    with pytest.raises(ValueError, match=r"needs u as a real array of shape \(n_samples, 2\)"):
        nica.make_train_step(opt, prior=mlp)(state, XJ, jnp.ones((8, 3)))


# ---------------------------------------------------------------------------------------------
# priors and activations


@pytest.mark.parametrize("factory, kwargs, error, match", [
    (activations.smooth_leaky_relu, {"alpha": "0.3"}, TypeError, r"alpha must be a number in \(0.0, 1.0\); got '0.3'"),
    (activations.smooth_leaky_relu, {"alpha": [0.3]}, TypeError, r"smooth_leaky_relu: alpha must be a number in"),
    (activations.smooth_leaky_relu, {"alpha": 1.0}, ValueError, r"alpha must be a number in \(0.0, 1.0\); got 1.0"),
    (activations.tanh_linear, {"beta": float("inf")}, ValueError, "tanh_linear: beta must be a finite number > 0.0; got inf"),
    (activations.tanh_linear, {"beta": float("nan")}, ValueError, "beta must be a finite number > 0.0; got nan"),
    (activations.leaky_relu, {"slope": True}, TypeError, "slope must be a finite number > 0.0; got True"),
    (activations.leaky_relu, {"slope": None}, TypeError, r"leaky_relu \(invertible only with a positive slope\): slope"),
    (activations.leaky_relu, {"slope": 0.0}, ValueError, "slope must be a finite number > 0.0; got 0.0"),
    (activations.get, {"activation": None}, TypeError, "activation must be a string in"),
    (activations.get, {"activation": activations.tanh_linear}, TypeError, "got the function tanh_linear: call it"),
    (priors.logistic_mixture, {"n_mixtures": 2.0}, ValueError, "n_mixtures must be an integer >= 1; got 2.0"),
    (priors.LogisticMixture, {"n_mixtures": 0}, ValueError, "n_mixtures must be an integer >= 1; got 0"),
    (priors.segment_conditional, {"n_segments": True}, ValueError, "n_segments must be an integer >= 1"),
    (priors.segment_conditional, {"n_segments": 0}, ValueError, "n_segments must be an integer >= 1"),
    (priors.segment_conditional, {"learn_location": "no"}, TypeError, "learn_location must be a bool"),
    (priors.segment_conditional, {"base": priors.segment_conditional()}, ValueError, "base must be a factorized prior"),
    (priors.mlp_conditional, {"n_aux": 0}, ValueError, "n_aux must be an integer >= 1"),
    (priors.mlp_conditional, {"hidden_units": "32"}, ValueError, "hidden_units must be an integer >= 1"),
    (priors.get, {"prior": None}, TypeError, r"prior must be a string in \[.*'gaussian'"),
    (priors.get, {"prior": priors.segment_conditional}, TypeError, "got the function segment_conditional"),
])
def test_prior_and_activation_factories_refuse_bad_arguments(factory, kwargs, error, match):
    with pytest.raises(error, match=match):
        factory(**kwargs)


def test_numpy_integer_counts_are_accepted():
    assert priors.segment_conditional("laplace", np.int64(3)).n_segments == 3
    assert priors.mlp_conditional("laplace", np.int64(2), hidden_units=np.int64(4)).hidden_units == 4


def test_prior_methods_refuse_bad_arguments():
    key = jax.random.key(0)
    with pytest.raises(TypeError, match="shape must be a tuple of non-negative integers; got 3"):
        priors.laplace().sample(key, 3)
    with pytest.raises(ValueError, match=r"got \(2, -1\)"):
        priors.laplace().sample(key, (2, -1))
    mixture = priors.logistic_mixture()
    with pytest.raises(TypeError, match=r"LogisticMixture needs its prior_params, a dict with keys"):
        mixture.conditional_log_prob((), XJ)
    segment = priors.segment_conditional("laplace", 4)
    theta = segment.init_params(key, D)
    with pytest.raises(TypeError, match=r"got a dict with keys \['logits'\]"):
        segment.conditional_log_prob({"logits": theta["log_scale"]}, XJ, jnp.zeros(8, int))
    with pytest.raises(ValueError, match=r"outside \[0, 4\)"):
        segment.conditional_sample(theta, key, jnp.full(8, 4), D)
    with pytest.raises(ValueError, match=r"S must have shape \(n_samples, n_components\) = \(5, 3\)"):
        segment.conditional_log_prob(theta, XJ, jnp.zeros(5, int))
    with pytest.raises(TypeError, match="u must be a numeric array; got dtype <U1"):
        segment.conditional_log_prob(theta, XJ, np.array(["a"] * 8))


def test_a_custom_frozen_dataclass_activation_works():
    @dataclasses.dataclass(frozen=True)
    class Identity(activations.Activation):
        def fn(self, x):
            return x

        def inverse(self, y):
            return y

        def log_derivative(self, x):
            return jnp.zeros_like(x)

    np.testing.assert_allclose(nica.inverse(_params(), nica.forward(_params(), XJ, activation=Identity()),
                                            activation=Identity()), XJ, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# metrics and data sets


def test_metrics_refuse_bad_inputs_and_survive_extreme_scales():
    S = np.random.default_rng(0).laplace(size=(50, 3))
    for bad, error, match in [(S + 1j, TypeError, "S_true must be an array of real numbers"),
                              (S[:, 0], ValueError, "S_true must be 2-D"),
                              (np.array([[1, "a"]] * 5, dtype=object), TypeError, "dtype object"),
                              (None, TypeError, "got None"),
                              (S[:1], ValueError, "at least 2 samples"),
                              (np.where(S > 2, np.nan, S), ValueError, "NaN or infinite")]:
        with pytest.raises(error, match=match):
            mean_corr_coef(bad, S[: len(bad)] if np.ndim(bad) == 2 else S)
    with pytest.raises(ValueError, match="same number of samples"):
        mean_corr_coef(S, S[:10])
    with pytest.raises(ValueError, match="method must be one of"):
        mean_corr_coef(S, S, method=None)
    assert mean_corr_coef(1e300 * S, 1e-300 * S[:, ::-1]) == pytest.approx(1.0)
    assert mean_corr_coef(S > 0, S) > 0.5 and mean_corr_coef(S.astype(np.float16), S) > 0.99
    assert amari_distance(1e200 * np.eye(3), 1e200 * np.eye(3)) == 0.0
    for W, A, error, match in [(np.eye(3) + 1j, np.eye(3), TypeError, "W must be an array of real numbers"),
                               (np.ones((2, 3)), np.ones((2, 3)), ValueError, "non-empty square"),
                               (np.eye(2), np.eye(3), ValueError, "same shape"),
                               (np.zeros((2, 2)), np.eye(2), ValueError, "all-zero row")]:
        with pytest.raises(error, match=match):
            amari_distance(W, A)
    with pytest.raises(ValueError, match="method must be one of"):
        make_mcc_scorer(3)
    with pytest.raises(TypeError, match="with a transform method; got object"):
        make_mcc_scorer()(object(), S, S)


def test_apply_mixing_refuses_bad_inputs():
    eye = np.eye(2)
    for S, mixing, error, match in [
        (np.full((2, 2), np.nan), [eye], ValueError, "S must contain only finite values"),
        (np.ones((2, 2)) + 1j, [eye], TypeError, "S must be an array of real numbers, got an array of dtype complex128"),
        (np.array([["a", "b"]]), [eye], TypeError, "dtype <U1"),
        (np.ones(2), [eye], ValueError, "S must be 2-D"),
        (np.ones((2, 2)), 3, TypeError, "mixing must be a sequence of matrices"),
        (np.ones((2, 2)), eye, TypeError, "wrap a single matrix in a list"),
        (np.ones((2, 2)), [], ValueError, "at least one matrix"),
        (np.ones((2, 2)), [np.full((2, 2), np.inf)], ValueError, r"mixing\[0\] must contain only finite values"),
        (np.ones((2, 2)), [np.ones((3, 3))], ValueError, r"mixing\[0\] must have shape \(2, 2\)"),
    ]:
        with pytest.raises(error, match=match):
            apply_mixing(S, mixing)
    np.testing.assert_array_equal(apply_mixing(np.ones((1, 2)), (A for A in [eye])), np.ones((1, 2)))


@pytest.mark.parametrize("call, error, match", [
    (lambda: make_segmented_mixture(2, 10, 0), ValueError, "n_components must be an integer >= 1"),
    (lambda: make_segmented_mixture(2.0, 10, 2), TypeError, "n_segments must be an integer"),
    (lambda: make_segmented_mixture(2, 10, 2, source=3), ValueError, "source must be one of"),
    (lambda: make_segmented_mixture(2, 10, 2, scale_range=(1,)), ValueError, "scale_range must be a pair"),
    (lambda: make_segmented_mixture(2, 10, 2, slope=None), ValueError, "slope must be a finite number > 0"),
    (lambda: make_segmented_mixture(2, 10, 2, random_state="a"), ValueError, "cannot be used to seed"),
    (lambda: make_toy_density(3), ValueError, "name must be one of"),
    (lambda: make_toy_density("sine", 1), ValueError, "n_samples must be an integer >= 2"),
    (lambda: make_toy_density("sine", 10, noise=-1), ValueError, "noise must be a finite non-negative number"),
])
def test_dataset_generators_refuse_bad_arguments(call, error, match):
    with pytest.raises(error, match=re.compile(match)):
        call()
