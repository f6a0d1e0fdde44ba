"""Hypothesis strategies shared by the fuzz tests of the estimators, the metrics, the data sets
and the functional core: arrays of random shapes and dtypes (ints, bools, complex, objects,
text, float16), with NaN and infinity.

Example counts are small and shapes are drawn from short lists, so that the few valid inputs
reuse compiled programs (each new shape would compile anew).  Every fuzz test predicts, from
the documented checks, which error (type and message fragment naming the argument) an input
must raise, or that it is valid; none passes on just any exception.
"""

import re
import warnings

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

KINDS = ["float64", "float32", "float16", "int64", "uint8", "bool", "complex128", "object", "str"]

FUZZ = settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Labels of random types, for the conditional estimator.
LABELS = st.one_of(st.integers(-3, 3), st.text(max_size=2), st.floats(-3, 3, allow_nan=False), st.booleans(), st.none())


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


def as_float64(data):
    """``data`` converted to float64 as NumPy (and so scikit-learn's ``check_array``) converts it:
    ``(array, None)``, or ``(None, message)`` when NumPy refuses (text that is not a number).
    Complex data is returned as it is (the callers refuse it first)."""
    if data.dtype.kind == "c":
        return data, None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.asarray(data, dtype=np.float64), None
    except (TypeError, ValueError) as error:
        return None, str(error)


def validation_refusal(data, estimator, *, min_samples=1, n_features=None):
    """What scikit-learn's ``validate_data`` (as the estimators call it: float64 or float32,
    2-D, finite) raises for the NumPy array ``data``, as ``(type, regex)``, or None when it
    accepts it, in the order of ``check_array``'s checks: complex, conversion to float, 2-D,
    finite, rows, columns, then the width a fitted ``estimator`` (its name) expects."""
    if data.dtype.kind == "c":
        return ValueError, "Complex data not supported"
    converted, error = as_float64(data)
    if error is not None:
        return ValueError, re.escape(error)
    if data.ndim == 0:
        return ValueError, "Expected 2D array, got scalar array instead"
    if data.ndim == 1:
        return ValueError, "Expected 2D array, got 1D array instead"
    if data.ndim > 2:
        return ValueError, f"Found array with dim {data.ndim}, while dim <= 2 is required by {estimator}"
    if not np.isfinite(converted).all():
        return ValueError, "Input X contains (NaN|infinity)"
    if data.shape[0] < min_samples:
        return ValueError, re.escape(
            f"Found array with {data.shape[0]} sample(s) (shape={data.shape}) while a "
            f"minimum of {min_samples} is required by {estimator}"
        )
    if data.shape[1] < 1:
        return ValueError, re.escape(
            f"Found array with 0 feature(s) (shape={data.shape}) while a minimum of 1 is required by {estimator}"
        )
    if n_features is not None and data.shape[1] != n_features:
        return ValueError, f"X has {data.shape[1]} features, but {estimator} is expecting {n_features} features"
    return None
