"""The metrics (``nica/_src/metrics.py``) against independent oracles (np.corrcoef, brute force,
hand values, exact rational arithmetic), their refusals of bad inputs, and random arrays
(hypothesis) refused with the predicted error or giving a value in [0, 1]."""

import fractions
import itertools
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.decomposition import FastICA
from sklearn.model_selection import cross_val_score
from strategies import arrays

from nica.metrics import amari_distance, make_mcc_scorer, mean_corr_coef

# --- oracles


def brute_force_mcc(S_true, S_est):
    """Best mean |Pearson correlation| over every injective matching, via np.corrcoef."""
    d1, d2 = S_true.shape[1], S_est.shape[1]
    full = np.corrcoef(S_true, S_est, rowvar=False)
    C = np.abs(full[:d1, d1:])
    if d1 <= d2:
        return max(np.mean([C[i, p[i]] for i in range(d1)]) for p in itertools.permutations(range(d2), d1))
    return max(np.mean([C[p[j], j] for j in range(d2)]) for p in itertools.permutations(range(d1), d2))


def brute_force_amari(W, A):
    """Amari distance written as explicit loops over the entries of |W A|."""
    P = np.abs(np.asarray(W) @ np.asarray(A))
    d = P.shape[0]
    total = 0.0
    for i in range(d):
        row_max = max(P[i, j] for j in range(d))
        total += sum(P[i, j] / row_max for j in range(d)) - 1.0
    for j in range(d):
        col_max = max(P[i, j] for i in range(d))
        total += sum(P[i, j] / col_max for i in range(d)) - 1.0
    return total / (2 * d * (d - 1))


def sources_with_correlations(C, n_samples, rng):
    """S_true (n, d1) and S_est (n, d2) whose Pearson correlation matrix is exactly C.

    Columns are built from orthonormal, centred directions z_k: true source i is z_i, estimate
    j is sum_i C_ij z_i + sqrt(1 - sum_i C_ij^2) z_{d1 + j}.
    """
    d1, d2 = C.shape
    Z = rng.standard_normal((n_samples, d1 + d2))
    Z -= Z.mean(axis=0)
    Z, _ = np.linalg.qr(Z)
    S_true = Z[:, :d1]
    residual = np.sqrt(1.0 - np.sum(C**2, axis=0))
    S_est = S_true @ C + Z[:, d1:] * residual
    return S_true, S_est


# --- mean_corr_coef


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_mcc_invariant_to_permutation_sign_and_scale(method):
    rng = np.random.default_rng(0)
    S = rng.laplace(size=(500, 4))
    S_est = S[:, [2, 0, 3, 1]] * np.array([-3.0, 0.5, 2.0, -0.01]) + np.array([1.0, -2.0, 0.0, 5.0])
    assert mean_corr_coef(S, S_est, method=method) == pytest.approx(1.0, abs=1e-12)


def test_mcc_returns_python_float():
    rng = np.random.default_rng(1)
    S = rng.normal(size=(50, 2))
    assert type(mean_corr_coef(S, S)) is float


def test_mcc_independent_noise_is_near_zero():
    rng = np.random.default_rng(2)
    S = rng.laplace(size=(5000, 5))
    noise = rng.normal(size=(5000, 5))
    assert 0.0 <= mean_corr_coef(S, noise) < 0.1


def test_mcc_hand_computed_case_prefers_off_diagonal_matching():
    # |corr| matrix [[0.6, 0.5], [0.5, 0.1]]: the diagonal (and the greedy choice, which takes
    # 0.6 first) gives (0.6 + 0.1) / 2 = 0.35; the optimal one-to-one matching is the
    # off-diagonal, (0.5 + 0.5) / 2 = 0.5. Signs must not matter.
    C = np.array([[0.6, -0.5], [0.5, 0.1]])
    S_true, S_est = sources_with_correlations(C, 200, np.random.default_rng(3))
    np.testing.assert_allclose(np.corrcoef(S_true, S_est, rowvar=False)[:2, 2:], C, atol=1e-12)
    assert mean_corr_coef(S_true, S_est) == pytest.approx(0.5, abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("d1, d2", [(2, 2), (4, 4), (5, 5), (3, 5), (5, 3)])
def test_mcc_matches_brute_force(seed, d1, d2):
    rng = np.random.default_rng(seed)
    S_true = rng.laplace(size=(300, d1))
    # correlated estimates so that the matching is non-trivial
    S_est = np.tanh(S_true @ rng.normal(size=(d1, d2))) + 0.5 * rng.normal(size=(300, d2))
    assert mean_corr_coef(S_true, S_est) == pytest.approx(brute_force_mcc(S_true, S_est), abs=1e-12)


def test_mcc_spearman_matches_brute_force_on_ranks():
    from scipy.stats import rankdata

    rng = np.random.default_rng(4)
    S_true = rng.laplace(size=(200, 4))
    S_est = np.exp(S_true @ rng.normal(size=(4, 4)) / 3)
    expected = brute_force_mcc(rankdata(S_true, axis=0), rankdata(S_est, axis=0))
    assert mean_corr_coef(S_true, S_est, method="spearman") == pytest.approx(expected, abs=1e-12)


def test_mcc_spearman_invariant_to_monotone_transforms_pearson_is_not():
    rng = np.random.default_rng(5)
    S = rng.laplace(size=(2000, 3))
    S_est = np.column_stack([np.exp(S[:, 1]), -(S[:, 2] ** 3), S[:, 0]])
    assert mean_corr_coef(S, S_est, method="spearman") == pytest.approx(1.0, abs=1e-12)
    assert mean_corr_coef(S, S_est, method="pearson") < 0.95


def test_mcc_rectangular_matches_min_number_of_components():
    rng = np.random.default_rng(6)
    S = rng.laplace(size=(400, 3))
    extra = rng.normal(size=(400, 2))
    # every true source is found among five estimates
    assert mean_corr_coef(S, np.column_stack([extra[:, 0], S[:, 2], S[:, 0], extra[:, 1], -S[:, 1]])) == pytest.approx(
        1.0
    )
    # two estimates, both exact copies of true sources: only two pairs are averaged
    assert mean_corr_coef(S, S[:, [2, 0]]) == pytest.approx(1.0)


def test_mcc_constant_column_counts_as_zero_not_nan():
    rng = np.random.default_rng(7)
    x = rng.normal(size=100)
    S_true = np.column_stack([x, np.full(100, 0.1)])  # 0.1 is not exact in binary: mean rounds
    S_est = np.column_stack([rng.normal(size=100), 2 * x])
    for method in ("pearson", "spearman"):
        value = mean_corr_coef(S_true, S_est, method=method)
        assert np.isfinite(value)
        assert value == pytest.approx(0.5, abs=1e-12)


def test_mcc_accepts_lists_and_integers():
    assert mean_corr_coef([[1, 2], [2, 1], [3, 5]], [[2, 4], [4, 2], [6, 10]]) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "S_true, S_est, error, match",
    [
        (np.zeros(10), np.zeros((10, 2)), ValueError, r"S_true must be 2-D .* shape \(10,\)"),
        (
            np.zeros((10, 2)),
            np.zeros((10, 2, 1)),
            ValueError,
            r"S_est must be 2-D .* shape \(10, 2, 1\)",
        ),
        (np.ones((10, 2)), np.ones((11, 2)), ValueError, "same number of samples .* 10 and 11"),
        (np.ones((1, 2)), np.ones((1, 2)), ValueError, "at least 2 samples"),
        (np.ones((10, 0)), np.ones((10, 2)), ValueError, "at least 1 component"),
        (
            np.full((10, 2), np.nan),
            np.ones((10, 2)),
            ValueError,
            "S_true must contain only finite .* 20 NaN",
        ),
        (
            np.ones((10, 2)),
            np.array([[np.inf, 1.0]] * 10),
            ValueError,
            "S_est must contain only finite",
        ),
        (
            np.array([["a", "b"], ["c", "d"]]),
            np.ones((2, 2)),
            TypeError,
            "S_true must be an array of real numbers",
        ),
        (np.ones((10, 2)), np.ones((10, 2), dtype=complex), TypeError, "S_est .* dtype complex128"),
        (None, np.ones((10, 2)), TypeError, "S_true .* got None"),
        (
            np.array([[1, "a"]] * 5, dtype=object),
            np.ones((5, 2)),
            TypeError,
            "S_true must be an array of real numbers, got an array of dtype object",
        ),
        (np.ones((10, 2)) + 1j, np.ones((10, 2)), TypeError, "S_true must be an array of real numbers"),
    ],
)
def test_mcc_input_errors(S_true, S_est, error, match):
    with pytest.raises(error, match=match):
        mean_corr_coef(S_true, S_est)


@pytest.mark.parametrize("method", ["kendall", "Pearson", None, 1])
def test_mcc_bad_method(method):
    with pytest.raises(ValueError, match="method must be one of .*pearson.*spearman"):
        mean_corr_coef(np.eye(3), np.eye(3), method=method)


# --- scorer


class _FixedTransform:
    """Stand-in estimator whose transform returns a stored array."""

    def __init__(self, S_est):
        self.S_est = S_est

    def transform(self, X):
        return self.S_est


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_scorer_equals_mean_corr_coef_on_transform(method):
    rng = np.random.default_rng(8)
    S = rng.laplace(size=(300, 3))
    S_est = np.exp(S @ rng.normal(size=(3, 3)) / 4)
    scorer = make_mcc_scorer(method)
    assert scorer(_FixedTransform(S_est), None, S) == mean_corr_coef(S, S_est, method=method)


def test_scorer_in_cross_validation_with_fastica():
    rng = np.random.default_rng(9)
    S = rng.laplace(size=(900, 2))
    X = S @ np.array([[1.0, 0.5], [0.3, 1.0]]).T
    scores = cross_val_score(FastICA(whiten="unit-variance", random_state=0), X, S, scoring=make_mcc_scorer(), cv=3)
    assert scores.shape == (3,)
    assert np.all(scores > 0.99)


def test_scorer_errors():
    with pytest.raises(ValueError, match="method must be one of"):
        make_mcc_scorer("kendall")
    with pytest.raises(ValueError, match="method must be one of"):
        make_mcc_scorer(3)
    with pytest.raises(TypeError, match="The MCC scorer scores an estimator with a transform method; got object"):
        make_mcc_scorer()(object(), np.eye(3), np.eye(3))
    with pytest.raises(ValueError, match="true sources as y"):
        make_mcc_scorer()(_FixedTransform(np.eye(3)), None, None)


# --- amari_distance


def test_amari_hand_computed():
    # |P| = |I @ [[1, 1], [0, 1]]| = [[1, 1], [0, 1]].
    # rows: (1 + 1)/1 - 1 = 1 and (0 + 1)/1 - 1 = 0; columns: (1 + 0)/1 - 1 = 0 and
    # (1 + 1)/1 - 1 = 1. Total 2, divided by 2 d (d - 1) = 4: 0.5.
    assert amari_distance(np.eye(2), np.array([[1.0, 1.0], [0.0, 1.0]])) == pytest.approx(0.5)
    # |P| = ones(d, d) is the worst case: every row and column term is d - 1, so 1.
    assert amari_distance(np.ones((4, 4)), np.eye(4)) == pytest.approx(1.0)


@pytest.mark.parametrize("d", [2, 3, 6])
def test_amari_zero_for_scaled_permutation_of_inverse(d):
    rng = np.random.default_rng(d)
    A = rng.uniform(-1, 1, size=(d, d))
    perm = np.eye(d)[rng.permutation(d)]
    scaling = np.diag(rng.uniform(0.1, 5, size=d) * rng.choice([-1, 1], size=d))
    W = perm @ scaling @ np.linalg.inv(A)
    assert amari_distance(W, A) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("d", [2, 3, 7])
def test_amari_matches_brute_force_and_is_in_unit_interval(seed, d):
    rng = np.random.default_rng(100 * seed + d)
    W, A = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    value = amari_distance(W, A)
    assert type(value) is float
    assert 0.0 < value <= 1.0
    assert value == pytest.approx(brute_force_amari(W, A), abs=1e-12)


def test_amari_invariant_to_signed_permutation_of_w():
    # Permuting or flipping rows of P permutes the row terms and leaves each column's
    # multiset of |p_ij| unchanged. (Rescaling rows is not an invariance away from the
    # optimum: it changes the column maxima.)
    rng = np.random.default_rng(10)
    W, A = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    left = np.eye(4)[[3, 1, 0, 2]] @ np.diag([1.0, -1.0, 1.0, -1.0])
    assert amari_distance(left @ W, A) == pytest.approx(amari_distance(W, A), abs=1e-12)


def test_amari_one_by_one_is_zero():
    assert amari_distance([[3.0]], [[-0.5]]) == 0.0


@pytest.mark.parametrize(
    "W, A, error, match",
    [
        (np.eye(2), np.ones((2, 3)), ValueError, r"A must be a non-empty square .* \(2, 3\)"),
        (np.ones(4), np.eye(2), ValueError, r"W must be a non-empty square .* \(4,\)"),
        (np.ones((0, 0)), np.ones((0, 0)), ValueError, "non-empty square"),
        (np.eye(2), np.eye(3), ValueError, r"same shape, got \(2, 2\) and \(3, 3\)"),
        (
            np.array([[np.nan, 0.0], [0.0, 1.0]]),
            np.eye(2),
            ValueError,
            "W must contain only finite",
        ),
        (np.array([[1.0, 0.0], [0.0, 0.0]]), np.eye(2), ValueError, "all-zero row or column"),
        (
            np.array([["a", "b"], ["c", "d"]]),
            np.eye(2),
            TypeError,
            "W must be an array of real numbers",
        ),
        (np.eye(3), np.eye(3) + 1j, TypeError, "A must be an array of real numbers, got an array of dtype complex128"),
        (np.zeros((2, 2)), np.eye(2), ValueError, "all-zero row or column"),
    ],
)
def test_amari_input_errors(W, A, error, match):
    with pytest.raises(error, match=match):
        amari_distance(W, A)


def test_metrics_survive_extreme_scales_and_other_real_dtypes():
    S = np.random.default_rng(0).laplace(size=(50, 3))
    assert mean_corr_coef(1e300 * S, 1e-300 * S[:, ::-1]) == pytest.approx(1.0)
    assert mean_corr_coef(S > 0, S) > 0.5 and mean_corr_coef(S.astype(np.float16), S) > 0.99
    assert amari_distance(1e200 * np.eye(3), 1e200 * np.eye(3)) == 0.0


# ---------------------------------------------------------------------------------------------
# random arrays


METRIC_SHAPES = [(20, 2), (20, 3), (1, 2), (0, 2), (20,), (20, 2, 1), (), (2, 2)]


def as_real(x, name):
    """``x`` as float64 as the metrics convert it, or the ``(type, message)`` that refuses it."""
    if x.dtype.kind in "biuf":
        return x.astype(np.float64)
    if x.dtype.kind == "O":
        try:
            return x.astype(np.float64)
        except (TypeError, ValueError):
            pass
    return TypeError, f"{name} must be an array of real numbers, got an array of dtype {x.dtype}"


def sources_refusal(x, name):
    """What refuses ``x`` as sources (``(type, message)``), or None."""
    arr = as_real(x, name)
    if isinstance(arr, tuple):
        return arr
    if arr.ndim != 2:
        return ValueError, f"{name} must be 2-D with shape (n_samples, n_components), got an array of shape {arr.shape}"
    if arr.shape[0] < 2:
        return ValueError, f"{name} must have at least 2 samples (rows) to compute correlations"
    if arr.shape[1] < 1:
        return ValueError, f"{name} must have at least 1 component (column)"
    if not np.isfinite(arr).all():
        return ValueError, f"{name} must contain only finite values, got {np.size(arr) - np.isfinite(arr).sum()} NaN"
    return None


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    a=arrays(METRIC_SHAPES, max_abs=1e300),
    b=arrays(METRIC_SHAPES, max_abs=1e300),
    method=st.sampled_from(["pearson", "spearman"]),
)
def test_mean_corr_coef_on_random_arrays(a, b, method):
    """The predicted error naming S_true or S_est (each checked in turn: dtype, 2-D, rows,
    columns, finite; then the rows compared), or a value in [0, 1]."""
    refusal = sources_refusal(a, "S_true") or sources_refusal(b, "S_est")
    if refusal is None and a.shape[0] != b.shape[0]:
        refusal = ValueError, f"S_true and S_est must have the same number of samples (rows), got {a.shape[0]} and"
    if refusal is not None:
        with pytest.raises(refusal[0], match=re.escape(refusal[1])):
            mean_corr_coef(a, b, method=method)
        return
    assert 0.0 <= mean_corr_coef(a, b, method=method) <= 1.0


def square_refusal(x, name):
    arr = as_real(x, name)
    if isinstance(arr, tuple):
        return arr
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] == 0:
        return ValueError, f"{name} must be a non-empty square 2-D matrix, got an array of shape {arr.shape}"
    if not np.isfinite(arr).all():
        return ValueError, f"{name} must contain only finite values"
    return None


def exactly_singular(W, A):
    """Whether ``W A``, in exact rational arithmetic, has an all-zero row or column."""
    W = [[fractions.Fraction(float(v)) for v in row] for row in W]
    A = [[fractions.Fraction(float(v)) for v in row] for row in A]
    d = len(W)
    P = [[sum(W[i][k] * A[k][j] for k in range(d)) for j in range(d)] for i in range(d)]
    return any(all(v == 0 for v in row) for row in P) or any(all(P[i][j] == 0 for i in range(d)) for j in range(d))


@settings(max_examples=40, deadline=None, derandomize=True)
@given(W=arrays([(2, 2), (3, 3), (2, 3), (0, 0), (2,)], max_abs=1e300), A=arrays([(2, 2), (3, 3)], max_abs=1e300))
def test_amari_distance_on_random_arrays(W, A):
    """The predicted error naming W or A (dtype, square, finite; then the shapes compared; then a
    product with an all-zero row or column, decided in exact arithmetic), or a value in [0, 1]."""
    refusal = square_refusal(W, "W") or square_refusal(A, "A")
    if refusal is None and W.shape != A.shape:
        refusal = ValueError, f"W and A must have the same shape, got {W.shape} and {A.shape}"
    if refusal is None and exactly_singular(as_real(W, "W"), as_real(A, "A")):
        refusal = ValueError, "W @ A has an all-zero row or column, so the Amari distance is undefined"
    if refusal is not None:
        with pytest.raises(refusal[0], match=re.escape(refusal[1])):
            amari_distance(W, A)
        return
    assert 0.0 <= amari_distance(W, A) <= 1.0
