"""Random misuse with hypothesis: arrays of random shapes and dtypes (ints, bools, complex,
objects, text, float16), NaN and infinity, empty, 1-D and 3-D arrays, label arrays of mixed
types, for the estimators, the metrics, the data sets and the functional core.  Every call
ends in a ValueError/TypeError or in a correct, finite result, and a failed call leaves a
fitted estimator as it was.

Example counts are small and shapes are drawn from short lists so that the few valid inputs
reuse compiled programs (each new shape would compile anew); the fitted estimators are shared.
"""

import copy
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sklearn.base import clone

import nica
from nica.datasets import apply_mixing
from nica.metrics import amari_distance, mean_corr_coef

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

N, D = 200, 3
TINY = dict(n_layers=2, max_iter=2, batch_size=64, random_state=0)  # as tests/test_misuse.py
FUZZ = settings(max_examples=12, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

KINDS = ["float64", "float32", "float16", "int64", "uint8", "bool", "complex128", "object", "str"]


@st.composite
def arrays(draw, shapes, kinds=KINDS, max_abs=1e100):
    """An array of one of ``shapes`` and ``kinds``: floats with NaN and infinity sometimes,
    objects mixing numbers, text and None, short strings.  A small pattern is tiled to the
    shape, so that large shapes cost nothing to draw."""
    shape, kind = draw(st.sampled_from(shapes)), draw(st.sampled_from(kinds))
    size = int(np.prod(shape))
    finite = st.floats(-max_abs, max_abs, allow_nan=False)
    special = st.sampled_from([np.nan, np.inf, -np.inf])
    if kind.startswith(("float", "complex")):
        elements = st.one_of(finite, finite, finite, special)
    elif kind in ("int64", "uint8"):
        elements = st.integers(0, 255)
    elif kind == "bool":
        elements = st.booleans()
    elif kind == "str":
        elements = st.text(max_size=3)
    else:
        elements = st.one_of(st.integers(-5, 5), finite, st.text(max_size=2), st.none())
    pattern = draw(st.lists(elements, min_size=1, max_size=7))
    if kind.startswith(("float", "int", "uint")) and all(np.isfinite(pattern)) and np.ptp(pattern) == 0:
        pattern = pattern + [pattern[0] + 1]  # a constant pattern is still a valid input; vary it
    flat = np.resize(np.array(pattern, dtype=object), size)
    if kind == "object":
        return flat.reshape(shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 1e100 as float16 is inf: fine, it is fuzz
        return flat.astype(kind).reshape(shape)


def params_of(model):
    return [np.array(leaf) for leaf in jax.tree_util.tree_leaves((model.params_, model.prior_params_))]


def assert_same(before, after):
    assert len(before) == len(after)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)


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


# ---------------------------------------------------------------------------------------------
# the estimators


FIT_SHAPES = [(N, D), (N, D), (0, D), (N, 0), (N,), (1, D), (N, D, 1), ()]


@settings(FUZZ, max_examples=10)
@given(data=arrays(FIT_SHAPES, kinds=[k for k in KINDS if k != "float32"]))
def test_fit_on_random_arrays(fitted, data):
    """A clean error that leaves the fitted estimator as it was, or a fit with finite results.
    (float32 data fits in float32: a second set of compiled programs, tested elsewhere.)"""
    before = params_of(fitted)
    for method in ("fit", "partial_fit"):
        model = copy.deepcopy(fitted)  # fitted, and free to change
        try:
            getattr(model, method)(data)
        except (ValueError, TypeError):
            assert_same(before, params_of(model))
            continue
        assert np.isfinite(model.transform(data[:2])).all()  # two rows: programs compiled once
        assert np.isfinite(model.score_samples(data[:2])).all()


AFTER_FIT_SHAPES = [(2, D), (2, D), (0, D), (2, D - 1), (D,), (2, D, 1), ()]


@FUZZ
@given(data=arrays(AFTER_FIT_SHAPES))
def test_fitted_methods_on_random_arrays(fitted, fitted_conditional, data):
    before, before_c = params_of(fitted), params_of(fitted_conditional)
    for model in (fitted, fitted_conditional):
        for method in (model.transform, model.inverse_transform, model.score_samples):
            try:
                out = method(data)
            except (ValueError, TypeError):
                continue
            # accepted: 2-D numbers of the right width, finite (|x| <= 1e100 here)
            assert data.ndim == 2 and data.shape[1] == D and np.isfinite(data.astype(float)).all()
            assert out.shape[0] == data.shape[0] and np.isfinite(out).all()
    assert_same(before, params_of(fitted))
    assert_same(before_c, params_of(fitted_conditional))


LABELS = st.one_of(st.integers(-3, 3), st.text(max_size=2), st.floats(-3, 3, allow_nan=False),
                   st.booleans(), st.none())


@settings(FUZZ, max_examples=8)
@given(values=st.lists(LABELS, min_size=4, max_size=4))
def test_conditional_fit_on_mixed_labels(fitted_conditional, X, u, values):
    """Four labels of random types, one per segment: a clean error for a mix that cannot be
    sorted, else the same fit as with 0..3 (labels are only names)."""
    assume(len(set(map(repr, values))) == 4)
    y = np.array(values, dtype=object)[u]
    before = params_of(fitted_conditional)
    model = clone(fitted_conditional).set_params(aux_type="discrete")
    try:
        model.fit(X, y)
    except (ValueError, TypeError):
        with pytest.raises((ValueError, TypeError)):
            fitted_conditional.fit(X, y)
        assert_same(before, params_of(fitted_conditional))
        return
    assert model.classes_.size == 4 and set(model.classes_.tolist()) == set(values)
    assert np.isfinite(model.score_samples(X, y)).all()
    assert np.isfinite(model.sample(3, y=y[:3])).all()


@FUZZ
@given(values=st.lists(LABELS, min_size=1, max_size=6))
def test_conditional_scoring_on_random_labels(fitted_conditional, X, values):
    """Labels the model knows are scored; unknown or incomparable ones are a clean error."""
    y = np.resize(np.array(values, dtype=object), 8)
    before = params_of(fitted_conditional)
    try:
        out = fitted_conditional.score_samples(X[:8], y)
    except (ValueError, TypeError):
        assert_same(before, params_of(fitted_conditional))
        return
    assert all(v in range(4) for v in y)  # only labels 0..3 (or True/False, equal to 1/0) pass
    assert out.shape == (8,) and np.isfinite(out).all()


def test_dataframes_with_odd_columns(fitted, X):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    model = clone(fitted).fit(frame)
    np.testing.assert_array_equal(model.feature_names_in_, ["a", "b", "c"])
    with pytest.raises(ValueError, match="feature names"):
        model.transform(frame.rename(columns={"a": "z"}))
    numeric = pd.DataFrame({"a": X[:, 0], "b": X[:, 1] > 0, "c": (3 * X[:, 2]).astype(int)})
    assert np.isfinite(clone(fitted).fit(numeric).transform(numeric)).all()  # bool, int columns
    before = params_of(model)
    for odd, error, match in [
        (frame.assign(b=pd.array([1, None] * (N // 2), dtype="Int64")), ValueError, "NaN"),
        (frame.assign(b=pd.Categorical(["x", "y"] * (N // 2))), ValueError, "could not convert"),
        (frame.assign(b=["x"] * N), ValueError, "could not convert"),
        (frame.assign(a=X[:, 0] + 1j), ValueError, "Complex data"),
        (frame.assign(a=pd.date_range("2020", periods=N)), TypeError, "DateTime64DType"),
        (pd.DataFrame(X, columns=["a", "a", "b"]), ValueError, "unique column names"),
        (pd.DataFrame(X, columns=[0, "b", 2.5]), TypeError, "Feature names are only supported if all"),
        (frame["a"], ValueError, "Expected a 2-dimensional container"),
    ]:
        with pytest.raises(error, match=match):
            model.fit(odd)
        assert_same(before, params_of(model))


# ---------------------------------------------------------------------------------------------
# the metrics and data sets


METRIC_SHAPES = [(20, 2), (20, 3), (1, 2), (0, 2), (20,), (20, 2, 1), (), (2, 2)]


@settings(max_examples=40, deadline=None, derandomize=True)
@given(a=arrays(METRIC_SHAPES, max_abs=1e300), b=arrays(METRIC_SHAPES, max_abs=1e300),
       method=st.sampled_from(["pearson", "spearman"]))
def test_mean_corr_coef_on_random_arrays(a, b, method):
    try:
        mcc = mean_corr_coef(a, b, method=method)
    except (ValueError, TypeError):
        return
    assert 0.0 <= mcc <= 1.0


@settings(max_examples=40, deadline=None, derandomize=True)
@given(W=arrays([(2, 2), (3, 3), (2, 3), (0, 0), (2,)], max_abs=1e300),
       A=arrays([(2, 2), (3, 3)], max_abs=1e300))
def test_amari_distance_on_random_arrays(W, A):
    try:
        distance = amari_distance(W, A)
    except (ValueError, TypeError):
        return
    assert 0.0 <= distance <= 1.0


@settings(max_examples=25, deadline=None, derandomize=True)
@given(S=arrays([(5, 2), (0, 2), (5,), (5, 2, 1)], max_abs=1e100), A=arrays([(2, 2), (3, 3)], max_abs=1e100))
def test_apply_mixing_on_random_arrays(S, A):
    try:
        X = apply_mixing(S, [A, A])
    except (ValueError, TypeError):
        return
    assert X.shape == S.shape and X.dtype == np.float64
    assert np.isfinite(X).all() or np.abs(S.astype(float)).max() * np.abs(A.astype(float)).max() ** 2 > 1e300


# ---------------------------------------------------------------------------------------------
# the functional core


@FUZZ
@given(data=arrays([(2, D), (2, D), (0, D), (2, D - 1), (D,), (2, D, 1)], max_abs=1e3))
def test_forward_inverse_and_likelihood_on_random_arrays(data):
    """A clean error, or (float32 data for float32 parameters) a result whose rows are finite
    wherever the input rows are: values are not inspected, NaN propagates only to its row."""
    params = nica.init_params(jax.random.key(0), D, 2, dtype=jnp.float32)
    for fn in (nica.forward, nica.inverse, nica.log_likelihood, nica.relative_gradient):
        try:
            out = fn(params, data)
        except (ValueError, TypeError):
            continue
        assert data.dtype == np.float32 and data.shape[1:] == (D,)
        rows_ok = np.isfinite(data).all(axis=1)
        if fn is nica.relative_gradient:
            assert all(np.isfinite(leaf).all() for leaf in jax.tree_util.tree_leaves(out)) or not rows_ok.all()
        else:
            assert np.isfinite(np.asarray(out)[rows_ok]).all()
