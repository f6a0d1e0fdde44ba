"""The metrics (``nica/_src/metrics.py``, ``nica/_src/disentanglement.py``) against independent
oracles (np.corrcoef, scipy's spearmanr, brute force over permutations, hand values, exact
rational arithmetic, numpy's lstsq and SVD, a hand-written neighbour search, DCI as loops), their
refusals of bad inputs, random arrays (hypothesis) refused with the predicted error or giving a
value in [0, 1], and the scorers inside GridSearchCV."""

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

from nica.metrics import (
    R2Scores,
    SourceEvaluation,
    SourceMatching,
    align_sources,
    amari_distance,
    dci,
    dci_from_importance,
    evaluate_sources,
    make_mcc_scorer,
    make_source_scorer,
    match_sources,
    mean_corr_coef,
    source_r2,
    weak_mcc,
)

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


# =============================================================================================
# The matching, alignment, weak MCC, R², DCI, the report and the scorers (nica/_src/metrics.py
# and nica/_src/disentanglement.py), each against an independent computation in float64.


def brute_force_assignment(C):
    """Every injective matching of the smaller side of |C| (via itertools), the best one as
    ``{true source: estimate}`` and its total."""
    A = np.abs(C)
    d1, d2 = A.shape
    if d1 <= d2:
        pairs = ([(i, p[i]) for i in range(d1)] for p in itertools.permutations(range(d2), d1))
    else:
        pairs = ([(p[j], j) for j in range(d2)] for p in itertools.permutations(range(d1), d2))
    best = max(pairs, key=lambda ps: sum(A[i, j] for i, j in ps))
    return dict(best), sum(A[i, j] for i, j in best)


def noisy_mixture(seed, n=300, d1=3, d2=3):
    rng = np.random.default_rng(seed)
    S_true = rng.laplace(size=(n, d1))
    S_est = np.tanh(S_true @ rng.normal(size=(d1, d2))) + 0.5 * rng.normal(size=(n, d2))
    return S_true, S_est


# --- match_sources


@pytest.mark.parametrize("d1, d2", [(2, 2), (4, 4), (3, 5), (5, 3)])
def test_match_sources_against_corrcoef_spearmanr_and_brute_force(d1, d2):
    from scipy.stats import spearmanr

    S_true, S_est = noisy_mixture(d1 + 10 * d2, d1=d1, d2=d2)
    for method, corr in [
        ("pearson", np.corrcoef(S_true, S_est, rowvar=False)[:d1, d1:]),
        ("spearman", spearmanr(S_true, S_est).statistic[:d1, d1:]),
    ]:
        m = match_sources(S_true, S_est, method=method)
        assert isinstance(m, SourceMatching)
        np.testing.assert_allclose(m.corr, corr, rtol=0, atol=1e-12)  # signed
        best, total = brute_force_assignment(corr)
        assert {int(i): int(j) for i, j in zip(m.rows, m.cols)} == best  # a unique optimum here
        assert np.all(np.diff(m.rows) > 0)
        np.testing.assert_array_equal(m.matched, m.corr[m.rows, m.cols])
        assert np.abs(m.matched).sum() == pytest.approx(total, abs=1e-12)
        # the MCC is exactly the mean of the matched absolute correlations
        assert mean_corr_coef(S_true, S_est, method=method) == float(np.abs(m.matched).mean())


def test_match_sources_unpacks_and_keeps_signs():
    S = np.random.default_rng(0).laplace(size=(200, 3))
    corr, rows, cols, matched = match_sources(S, S[:, [1, 2, 0]] * np.array([-2.0, 1.0, -0.5]))
    np.testing.assert_array_equal(rows, [0, 1, 2])
    np.testing.assert_array_equal(cols, [2, 0, 1])
    np.testing.assert_allclose(matched, [-1.0, -1.0, 1.0], atol=1e-12)
    assert corr.shape == (3, 3)


def test_match_sources_refuses_like_mean_corr_coef():
    with pytest.raises(ValueError, match="method must be one of"):
        match_sources(np.eye(3), np.eye(3), method="kendall")
    with pytest.raises(ValueError, match=r"S_true and S_est must have the same number of samples .* 10 and 11"):
        match_sources(np.ones((10, 2)), np.ones((11, 2)))
    with pytest.raises(TypeError, match="S_est must be an array of real numbers"):
        match_sources(np.ones((10, 2)), np.full((10, 2), "a"))


# --- align_sources


@pytest.mark.parametrize("scale", ["least_squares", "std"])
@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_align_sources_undoes_permutation_sign_scale_and_shift(scale, method):
    S = np.random.default_rng(1).laplace(size=(400, 4))
    S_est = S[:, [2, 0, 3, 1]] * np.array([-3.0, 0.5, 2.0, -0.01]) + np.array([1.0, -2.0, 0.0, 5.0])
    np.testing.assert_allclose(align_sources(S, S_est, method=method, scale=scale), S, rtol=0, atol=1e-10)


def test_align_sources_least_squares_is_lstsq_on_the_matched_estimate():
    S_true, S_est = noisy_mixture(2, d1=3, d2=4)
    best, _ = brute_force_assignment(np.corrcoef(S_true, S_est, rowvar=False)[:3, 3:])
    aligned = align_sources(S_true, S_est)
    for i, j in best.items():
        design = np.column_stack([S_est[:, j], np.ones(len(S_est))])
        coef = np.linalg.lstsq(design, S_true[:, i], rcond=None)[0]
        np.testing.assert_allclose(aligned[:, i], design @ coef, rtol=0, atol=1e-10)


def test_align_sources_std_matches_mean_std_and_sign():
    S_true, S_est = noisy_mixture(3)
    corr = np.corrcoef(S_true, S_est, rowvar=False)[:3, 3:]
    best, _ = brute_force_assignment(corr)
    aligned = align_sources(S_true, S_est, scale="std")
    for i, j in best.items():
        z = (S_est[:, j] - S_est[:, j].mean()) / S_est[:, j].std()
        expected = S_true[:, i].mean() + np.sign(corr[i, j]) * S_true[:, i].std() * z
        np.testing.assert_allclose(aligned[:, i], expected, rtol=0, atol=1e-10)


def test_align_sources_spearman_least_squares_uses_the_pearson_slope():
    # A monotone map: the Spearman matching is the permutation, the slope the Pearson one.
    S = np.random.default_rng(4).laplace(size=(300, 2))
    S_est = np.exp(S[:, ::-1] / 3)
    aligned = align_sources(S, S_est, method="spearman")
    for i, j in [(0, 1), (1, 0)]:
        design = np.column_stack([S_est[:, j], np.ones(300)])
        expected = design @ np.linalg.lstsq(design, S[:, i], rcond=None)[0]
        np.testing.assert_allclose(aligned[:, i], expected, rtol=0, atol=1e-10)


def test_align_sources_rectangular_constant_and_extreme_scales():
    S = np.random.default_rng(5).laplace(size=(200, 3))
    # fewer estimates: the unmatched true source's column is NaN
    aligned = align_sources(S, -S[:, [2, 0]])
    assert np.isnan(aligned[:, 1]).all()
    np.testing.assert_allclose(aligned[:, [0, 2]], S[:, [0, 2]], atol=1e-10)
    # more estimates: the extra one is dropped
    assert align_sources(S, np.column_stack([S, np.ones(200)])).shape == (200, 3)
    # a constant estimate gives the true source's mean
    const = align_sources(S[:, :1], np.full((200, 1), 0.1))
    np.testing.assert_allclose(const[:, 0], S[:, 0].mean(), atol=1e-12)
    # powers of two near the float64 limits: no overflow
    np.testing.assert_allclose(align_sources(1e300 * S, 1e-300 * S[:, ::-1]) / 1e300, S, atol=1e-10)


def test_align_sources_errors():
    with pytest.raises(ValueError, match=r"scale must be one of \('least_squares', 'std'\); got 'lstsq'"):
        align_sources(np.eye(3), np.eye(3), scale="lstsq")
    with pytest.raises(ValueError, match="method must be one of"):
        align_sources(np.eye(3), np.eye(3), method="kendall")
    with pytest.raises(ValueError, match=r"S_est must be 2-D"):
        align_sources(np.eye(3), np.ones(3))


# --- weak_mcc


def whitening(A):
    """Symmetric inverse square root of the covariance of ``A`` (numpy eigh)."""
    A = A - A.mean(axis=0)
    evals, evecs = np.linalg.eigh(A.T @ A / len(A))
    return evecs @ np.diag(evals**-0.5) @ evecs.T


def cca_by_svd(T, E):
    """Canonical correlations and directions from the SVD of the whitened cross-covariance."""
    Wt, We = whitening(T), whitening(E)
    cross = ((T - T.mean(0)) @ Wt).T @ ((E - E.mean(0)) @ We) / len(T)
    U, rho, Vt = np.linalg.svd(cross)
    k = min(T.shape[1], E.shape[1])
    return rho[:k], Wt @ U[:, :k], We @ Vt[:k].T


EXACT = {"tol": 1e-20, "max_iter": 10_000}  # the power method run to rounding


@pytest.mark.parametrize("seed, d1, d2", [(0, 2, 2), (1, 3, 3), (2, 3, 4), (3, 4, 3)])
def test_weak_mcc_in_sample_is_the_mean_canonical_correlation(seed, d1, d2):
    S_true, S_est = noisy_mixture(seed, d1=d1, d2=d2)
    rho, _, _ = cca_by_svd(S_true, S_est)
    assert weak_mcc(S_true, S_est, **EXACT) == pytest.approx(rho.mean(), abs=1e-10)


@pytest.mark.parametrize("seed, d1, d2", [(0, 2, 2), (1, 3, 3), (2, 3, 4), (3, 4, 3)])
def test_weak_mcc_held_out_applies_the_training_directions(seed, d1, d2):
    S_true, S_est = noisy_mixture(seed, n=400, d1=d1, d2=d2)
    train, test = slice(0, 300), slice(300, 400)
    _, a, b = cca_by_svd(S_true[train], S_est[train])
    expected = brute_force_mcc(S_true[test] @ a, S_est[test] @ b)
    got = weak_mcc(S_true[train], S_est[train], S_true[test], S_est[test], **EXACT)
    assert got == pytest.approx(expected, abs=1e-10)


def test_weak_mcc_known_canonical_correlations():
    # Orthonormal centred directions z: S_est = (z_0..2 diag(rho) + z_3..5 diag(sqrt(1 - rho^2))) M
    # has canonical correlations rho with S_true = z_0..2 for any invertible M.
    rng = np.random.default_rng(6)
    rho = np.array([0.9, 0.6, 0.3])
    Z = rng.standard_normal((500, 6))
    Z, _ = np.linalg.qr(Z - Z.mean(axis=0))  # orthonormal and centred
    S_true = Z[:, :3]
    S_est = (S_true * rho + Z[:, 3:] * np.sqrt(1 - rho**2)) @ rng.normal(size=(3, 3))
    assert weak_mcc(S_true, S_est, **EXACT) == pytest.approx(rho.mean(), abs=1e-10)


@pytest.mark.parametrize("d_est", [3, 5])
def test_weak_mcc_is_one_for_invertible_linear_mixing_where_strong_mcc_is_not(d_est):
    rng = np.random.default_rng(7)
    S = rng.laplace(size=(1000, 3))
    S_est = S @ rng.normal(size=(3, d_est))  # full column rank: S is a linear function of S_est
    assert mean_corr_coef(S[500:], S_est[500:]) < 0.9
    assert weak_mcc(S[:500], S_est[:500], S[500:], S_est[500:]) == pytest.approx(1.0, abs=1e-10)
    assert weak_mcc(S, S_est, method="spearman") == pytest.approx(1.0, abs=1e-10)


def test_weak_mcc_extreme_scales():
    S = np.random.default_rng(8).laplace(size=(200, 2))
    assert weak_mcc(1e300 * S, 1e-300 * (S @ np.array([[1.0, 2.0], [-1.0, 1.0]]))) == pytest.approx(1.0, abs=1e-10)


@pytest.mark.parametrize(
    "args, kwargs, error, match",
    [
        (
            (np.ones((10, 2)), np.ones((10, 2)), np.ones((5, 2))),
            {},
            ValueError,
            "S_true_test was given but S_est_test is None",
        ),
        (
            (np.ones((10, 2)), np.ones((10, 2)), None, np.ones((5, 2))),
            {},
            ValueError,
            "S_est_test was given but S_true_test is None",
        ),
        (
            (np.ones((10, 2)), np.ones((10, 2)), np.ones((5, 3)), np.ones((5, 2))),
            {},
            ValueError,
            r"S_true_test must have as many components \(columns\) as S_true, got 3 and 2",
        ),
        (
            (np.ones((10, 2)), np.ones((10, 2)), np.ones((5, 2)), np.ones((4, 2))),
            {},
            ValueError,
            "S_true_test and S_est_test must have the same number of samples .* 5 and 4",
        ),
        (
            (np.ones((10, 2)), np.ones((10, 2)), np.ones((5, 2)), np.full((5, 2), np.nan)),
            {},
            ValueError,
            "S_est_test must contain only finite values",
        ),
        ((np.ones((2, 3)), np.ones((2, 4))), {}, ValueError, "at least 3 samples .* CCA with 3 components, got 2"),
        ((np.eye(3), np.eye(3)), {"max_iter": 0}, ValueError, "max_iter must be an integer >= 1; got 0"),
        ((np.eye(3), np.eye(3)), {"tol": -1.0}, ValueError, "tol must be a finite number >= 0.0; got -1.0"),
        ((np.eye(3), np.eye(3)), {"method": "kendall"}, ValueError, "method must be one of"),
        ((None, np.eye(3)), {}, TypeError, "S_true must be an array of real numbers, got None"),
    ],
)
def test_weak_mcc_errors(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        weak_mcc(*args, **kwargs)


# --- source_r2


def lstsq_r2(Y_fit, E_fit, Y_eval, E_eval):
    """R² per column of an affine least-squares fit, by numpy.linalg.lstsq."""
    coef = np.linalg.lstsq(np.column_stack([E_fit, np.ones(len(E_fit))]), Y_fit, rcond=None)[0]
    pred = np.column_stack([E_eval, np.ones(len(E_eval))]) @ coef
    return 1 - ((Y_eval - pred) ** 2).sum(0) / ((Y_eval - Y_eval.mean(0)) ** 2).sum(0)


def knn_by_hand(Y_fit, E_fit, E_eval, k):
    """Mean of the k nearest fitting rows in estimates standardized on the fitting rows."""
    mean, std = E_fit.mean(0), E_fit.std(0)
    std[std == 0] = 1.0
    A, B = (E_fit - mean) / std, (E_eval - mean) / std
    dist = ((B[:, None, :] - A[None, :, :]) ** 2).sum(-1)
    nearest = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return Y_fit[nearest].mean(axis=1)


def r2_by_hand(Y, P):
    return 1 - ((Y - P) ** 2).sum(0) / ((Y - Y.mean(0)) ** 2).sum(0)


@pytest.mark.parametrize("d1, d2", [(3, 3), (2, 4), (4, 2)])
def test_source_r2_linear_against_lstsq(d1, d2):
    S_true, S_est = noisy_mixture(d1 * d2, n=300, d1=d1, d2=d2)
    r2 = source_r2(S_true, S_est)
    assert isinstance(r2, R2Scores) and r2.per_source.shape == (d1,)
    np.testing.assert_allclose(r2.per_source, lstsq_r2(S_true, S_est, S_true, S_est), rtol=0, atol=1e-10)
    assert r2.mean == pytest.approx(r2.per_source.mean(), abs=1e-15)
    held = source_r2(S_true[:200], S_est[:200], S_true[200:], S_est[200:])
    expected = lstsq_r2(S_true[:200], S_est[:200], S_true[200:], S_est[200:])
    np.testing.assert_allclose(held.per_source, expected, rtol=0, atol=1e-10)


def test_source_r2_knn_against_a_hand_written_neighbour_search():
    from sklearn.model_selection import KFold

    S_true, S_est = noisy_mixture(11, n=120)
    # cross-validated: the same folds, each predicted by hand from the others
    expected = np.empty_like(S_true)
    for fit, held in KFold(4, shuffle=True, random_state=3).split(S_est):
        expected[held] = knn_by_hand(S_true[fit], S_est[fit], S_est[held], 7)
    got = source_r2(S_true, S_est, regressor="knn", n_neighbors=7, n_splits=4, random_state=3)
    np.testing.assert_allclose(got.per_source, r2_by_hand(S_true, expected), rtol=0, atol=1e-10)
    # held out: fitted on the first 90 rows
    pred = knn_by_hand(S_true[:90], S_est[:90], S_est[90:], 5)
    got = source_r2(S_true[:90], S_est[:90], S_true[90:], S_est[90:], regressor="knn")
    np.testing.assert_allclose(got.per_source, r2_by_hand(S_true[90:], pred), rtol=0, atol=1e-10)


def test_source_r2_closed_forms():
    rng = np.random.default_rng(12)
    S = rng.laplace(size=(400, 3))
    # an invertible affine mixing is undone exactly by the linear regression, in and out of sample
    M = rng.normal(size=(3, 3))
    assert source_r2(S, S @ M + 1.0).mean == pytest.approx(1.0, abs=1e-10)
    held = source_r2(S[:300], S[:300] @ M + 1.0, S[300:], S[300:] @ M + 1.0)
    np.testing.assert_allclose(held.per_source, 1.0, rtol=0, atol=1e-10)
    # a constant true source scores 0 (as its correlation does in the MCC), not NaN
    S_const = np.column_stack([S[:, 0], np.full(400, 0.1)])
    for regressor in ("linear", "knn"):
        assert source_r2(S_const, S[:, :2], regressor=regressor).per_source[1] == 0.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"regressor": "kernel"}, r"regressor must be one of \('linear', 'knn'\); got 'kernel'"),
        ({"n_neighbors": 0}, "n_neighbors must be an integer >= 1; got 0"),
        ({"n_splits": 1}, "n_splits must be an integer >= 2; got 1"),
        ({"random_state": -1}, "random_state must be an integer in"),
        ({"regressor": "knn", "n_splits": 31}, "n_splits must be at most the number of samples, 30; got 31"),
        (
            {"regressor": "knn", "n_neighbors": 25},
            "n_neighbors must be at most the 24 rows of the smallest training fold",
        ),
    ],
)
def test_source_r2_errors(kwargs, match):
    S = np.random.default_rng(0).laplace(size=(30, 2))
    with pytest.raises(ValueError, match=match):
        source_r2(S, S, **kwargs)


def test_source_r2_knn_held_out_needs_enough_training_rows():
    S = np.random.default_rng(0).laplace(size=(30, 2))
    with pytest.raises(ValueError, match="n_neighbors must be at most the 4 rows of the training samples, got 5"):
        source_r2(S[:4], S[:4], S[4:], S[4:], regressor="knn")


# --- DCI


def dci_by_hand(R):
    """Disentanglement and completeness written as loops over an importance matrix (a
    logarithm of base 1, a single factor or code, gives 1)."""
    n_codes, n_factors = R.shape
    total = sum(R[i, j] for i in range(n_codes) for j in range(n_factors))

    def one_minus_entropy(values):
        mass = sum(values)
        entropy = -sum(v / mass * np.log(v / mass) for v in values if v > 0)
        return 1.0 if len(values) == 1 else 1.0 - entropy / np.log(len(values))

    D = sum(sum(R[i]) / total * one_minus_entropy(list(R[i])) for i in range(n_codes) if sum(R[i]) > 0)
    C = sum(sum(R[:, j]) / total * one_minus_entropy(list(R[:, j])) for j in range(n_factors) if sum(R[:, j]) > 0)
    return D, C


def test_dci_from_importance_identity_and_uniform():
    for R in (np.eye(4), 3.0 * np.eye(4)[[2, 0, 3, 1]]):
        scores = dci_from_importance(R)
        assert (scores.disentanglement, scores.completeness) == (1.0, 1.0)
        np.testing.assert_array_equal(scores.code_disentanglement, np.ones(4))
        assert scores.informativeness is None and scores.factor_informativeness is None
    scores = dci_from_importance(np.ones((4, 3)))
    assert scores.disentanglement == pytest.approx(0.0, abs=1e-15)
    assert scores.completeness == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize(
    "R",
    [
        [[0.9, 0.1], [0.2, 0.8]],  # D_0 = 1 - H(0.9, 0.1) / log 2, ...
        [[0.5, 0.5, 0.0], [0.0, 0.2, 0.7], [0.1, 0.0, 0.0], [0.3, 0.3, 0.3]],
        [[1.0, 0.0], [0.0, 0.0], [0.0, 2.0]],  # a code of zero importance
        [[0.2, 0.3, 0.5]],  # one code: completeness 1 wherever a factor has importance
    ],
)
def test_dci_from_importance_against_loops(R):
    R = np.asarray(R, dtype=np.float64)
    scores = dci_from_importance(R)
    D, C = dci_by_hand(R)
    assert scores.disentanglement == pytest.approx(D, abs=1e-12)
    assert scores.completeness == pytest.approx(C, abs=1e-12)
    np.testing.assert_array_equal(scores.importance, R)


def test_dci_from_importance_hand_value():
    # R = [[1, 1], [0, 2]]: code 0 splits evenly (D_0 = 0), code 1 is pure (D_1 = 1), weights
    # 1/2 each: D = 0.5. Factor 0 comes from code 0 only (C_0 = 1), factor 1 from both in
    # (1/3, 2/3): C_1 = 1 - H(1/3, 2/3)/log 2, weights 1/4 and 3/4.
    scores = dci_from_importance([[1.0, 1.0], [0.0, 2.0]])
    np.testing.assert_allclose(scores.code_disentanglement, [0.0, 1.0], atol=1e-15)
    h = -(np.log(1 / 3) / 3 + 2 * np.log(2 / 3) / 3) / np.log(2)
    np.testing.assert_allclose(scores.factor_completeness, [1.0, 1.0 - h], atol=1e-15)
    assert scores.disentanglement == pytest.approx(0.5, abs=1e-15)
    assert scores.completeness == pytest.approx(0.25 + 0.75 * (1.0 - h), abs=1e-15)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    R=st.lists(st.lists(st.floats(0.0, 10.0), min_size=3, max_size=3), min_size=2, max_size=4),
    seed=st.integers(0, 100),
)
def test_dci_from_importance_in_unit_interval_and_invariant(R, seed):
    """Scores in [0, 1], unchanged by permuting codes or factors and by a common scale."""
    R = np.asarray(R)
    if not np.any(R > 0):
        with pytest.raises(ValueError, match="importance must have a positive entry"):
            dci_from_importance(R)
        return
    rng = np.random.default_rng(seed)
    scores = dci_from_importance(R)
    assert 0.0 <= scores.disentanglement <= 1.0 and 0.0 <= scores.completeness <= 1.0
    moved = dci_from_importance(7.0 * R[rng.permutation(R.shape[0])][:, rng.permutation(3)])
    assert moved.disentanglement == pytest.approx(scores.disentanglement, abs=1e-12)
    assert moved.completeness == pytest.approx(scores.completeness, abs=1e-12)


@pytest.mark.parametrize(
    "R, error, match",
    [
        ([[1.0, -0.5]], ValueError, "importance must be non-negative, got 1 negative entries"),
        (np.zeros((2, 2)), ValueError, "importance must have a positive entry, got all zeros"),
        ([[np.nan, 1.0]], ValueError, "importance must contain only finite values"),
        ([1.0, 2.0], ValueError, r"importance must be a non-empty 2-D array .* got shape \(2,\)"),
        (np.ones((0, 3)), ValueError, "non-empty 2-D"),
        ([["a"]], TypeError, "importance must be an array of real numbers"),
    ],
)
def test_dci_from_importance_errors(R, error, match):
    with pytest.raises(error, match=match):
        dci_from_importance(R)


def test_dci_uses_gradient_boosting_importances_and_held_out_r2():
    from sklearn.ensemble import GradientBoostingRegressor

    rng = np.random.default_rng(13)
    factors = rng.uniform(size=(300, 2))
    codes = np.column_stack([np.exp(factors[:, 1]), factors[:, 0] + 0.1 * factors[:, 1], rng.normal(size=300)])
    scores = dci(factors[:200], codes[:200], factors[200:], codes[200:], n_estimators=20)
    R = np.zeros((3, 2))
    r2 = np.zeros(2)
    for j in range(2):
        model = GradientBoostingRegressor(n_estimators=20, max_depth=3, random_state=0).fit(
            codes[:200], factors[:200, j]
        )
        R[:, j] = model.feature_importances_
        r2[j] = r2_by_hand(factors[200:, j], model.predict(codes[200:]))
    np.testing.assert_allclose(scores.importance, R, rtol=0, atol=1e-12)
    D, C = dci_by_hand(R)
    assert scores.disentanglement == pytest.approx(D, abs=1e-12)
    assert scores.completeness == pytest.approx(C, abs=1e-12)
    np.testing.assert_allclose(scores.factor_informativeness, r2, rtol=0, atol=1e-12)
    assert scores.informativeness == pytest.approx(r2.mean(), abs=1e-12)


def test_dci_separates_disentangled_from_entangled_codes():
    rng = np.random.default_rng(14)
    factors = rng.uniform(size=(400, 3))
    clean = dci(factors, np.exp(factors[:, [2, 0, 1]]), n_estimators=30)
    rotation = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    mixed = dci(factors, factors @ rotation, n_estimators=30)
    assert clean.disentanglement > 0.95 and clean.completeness > 0.95 and clean.informativeness > 0.95
    assert mixed.disentanglement < 0.6 and mixed.completeness < 0.6


def test_dci_errors_name_factors_and_codes():
    F = np.random.default_rng(0).uniform(size=(20, 2))
    with pytest.raises(ValueError, match="factors and codes must have the same number of samples"):
        dci(F, F[:10])
    with pytest.raises(ValueError, match="codes_test was given but factors_test is None"):
        dci(F, F, None, F)
    with pytest.raises(ValueError, match="n_estimators must be an integer >= 1; got 0"):
        dci(F, F, n_estimators=0)
    with pytest.raises(ValueError, match="max_depth must be an integer >= 1"):
        dci(F, F, max_depth=1.5)


# --- evaluate_sources


def test_evaluate_sources_equals_the_single_metrics():
    S_true, S_est = noisy_mixture(15, n=400)
    train, test = slice(0, 300), slice(300, 400)
    report = evaluate_sources(
        S_true[train], S_est[train], S_true_test=S_true[test], S_est_test=S_est[test], with_dci=True
    )
    assert isinstance(report, SourceEvaluation) and report.held_out and report.n_samples == 100
    assert report.mcc_pearson == mean_corr_coef(S_true[test], S_est[test])
    assert report.mcc_spearman == mean_corr_coef(S_true[test], S_est[test], method="spearman")
    assert report.weak_mcc == weak_mcc(S_true[train], S_est[train], S_true[test], S_est[test])
    pair = (S_true[train], S_est[train], S_true[test], S_est[test])
    np.testing.assert_array_equal(report.r2_linear_per_source, source_r2(*pair).per_source)
    np.testing.assert_array_equal(report.r2_nonlinear_per_source, source_r2(*pair, regressor="knn").per_source)
    assert report.r2_linear == source_r2(*pair).mean
    best, _ = brute_force_assignment(np.corrcoef(S_true[test], S_est[test], rowvar=False)[:3, 3:])
    corr = np.corrcoef(S_true[test], S_est[test], rowvar=False)
    np.testing.assert_allclose(report.corr_pearson, [abs(corr[i, 3 + best[i]]) for i in range(3)], atol=1e-12)
    assert report.dci.disentanglement == dci(*pair).disentanglement


def test_evaluate_sources_in_sample_and_rectangular():
    S_true, S_est = noisy_mixture(16, n=200, d1=3, d2=2)
    report = evaluate_sources(S_true, S_est)
    assert not report.held_out and report.n_samples == 200 and report.dci is None
    assert np.isnan(report.corr_pearson).sum() == 1  # one true source has no estimate
    assert report.mcc_pearson == pytest.approx(np.nanmean(report.corr_pearson), abs=1e-15)
    assert report.r2_nonlinear == source_r2(S_true, S_est, regressor="knn").mean
    assert report.weak_mcc == weak_mcc(S_true, S_est)


def test_evaluate_sources_prints_a_table_and_gives_plain_data():
    import dataclasses
    import json

    S_true, S_est = noisy_mixture(17, n=200, d1=3, d2=2)
    report = evaluate_sources(S_true, S_est, with_dci=True)
    text = str(report)
    assert repr(report) == text
    lines = text.splitlines()
    assert lines[0] == "Source recovery on 200 training (in-sample) samples"
    assert lines[1].split() == ["overall", "source", "0", "source", "1", "source", "2"]
    pearson = lines[2].split()
    assert pearson[:3] == ["MCC", "Pearson", f"{report.mcc_pearson:.3f}"]
    assert pearson[3:] == ["-" if np.isnan(v) else f"{v:.3f}" for v in report.corr_pearson]
    assert lines[4].split() == ["weak", "MCC", "(CCA)", f"{report.weak_mcc:.3f}"]
    assert lines[-1].startswith(f"DCI: disentanglement {report.dci.disentanglement:.3f}")
    values = report.as_dict()
    assert list(values) == [f.name for f in dataclasses.fields(SourceEvaluation)]
    assert values["r2_linear"] == report.r2_linear
    assert type(values["corr_pearson"]) is list
    np.testing.assert_array_equal(values["corr_pearson"], report.corr_pearson)  # NaN included
    assert values["dci"]["importance"] == report.dci.importance.tolist()
    json.dumps(values)  # plain data
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.mcc_pearson = 1.0


def test_evaluate_sources_shows_at_most_eight_sources():
    S = np.random.default_rng(18).laplace(size=(100, 10))
    text = str(evaluate_sources(S, S))
    assert "source 7" in text and "source 8" not in text and "(2 more sources not shown)" in text


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"with_dci": 1}, ValueError, "with_dci must be a bool; got 1"),
        ({"n_neighbors": 0}, ValueError, "n_neighbors must be an integer >= 1"),
        ({"S_true_test": np.ones((5, 2))}, ValueError, "S_true_test was given but S_est_test is None"),
        ({"n_splits": 50}, ValueError, "n_splits must be at most the number of samples, 20"),
    ],
)
def test_evaluate_sources_errors(kwargs, error, match):
    S = np.random.default_rng(0).laplace(size=(20, 2))
    with pytest.raises(error, match=match):
        evaluate_sources(S, S, **kwargs)


def test_evaluate_sources_refuses_too_few_samples_for_the_cca_before_computing():
    with pytest.raises(ValueError, match="at least 3 samples .* CCA"):
        evaluate_sources(np.eye(2, 3), np.eye(2, 3), n_neighbors=1, n_splits=2)


# --- scorers

SCORER_FUNCTIONS = {
    "mcc": lambda S, E: mean_corr_coef(S, E),
    "mcc_spearman": lambda S, E: mean_corr_coef(S, E, method="spearman"),
    "weak_mcc": lambda S, E: weak_mcc(S, E),
    "r2_linear": lambda S, E: source_r2(S, E).mean,
    "r2_nonlinear": lambda S, E: source_r2(S, E, regressor="knn").mean,
}


@pytest.mark.parametrize("metric", sorted(SCORER_FUNCTIONS))
def test_source_scorer_equals_its_metric_on_transform(metric):
    S_true, S_est = noisy_mixture(19, n=200)
    assert make_source_scorer(metric)(_FixedTransform(S_est), None, S_true) == SCORER_FUNCTIONS[metric](S_true, S_est)


@pytest.mark.parametrize("metric", sorted(SCORER_FUNCTIONS))
def test_source_scorer_in_grid_search(metric):
    """Each fold's score is the metric of the held-out fold's sources, by a model fitted on the
    other folds (refitted here by hand on KFold(5), GridSearchCV's default split)."""
    from sklearn.model_selection import GridSearchCV, KFold

    rng = np.random.default_rng(20)
    S = rng.laplace(size=(600, 3))
    X = S @ rng.normal(size=(3, 3)).T
    grid = {"n_components": [2, 3]}
    search = GridSearchCV(FastICA(whiten="unit-variance", random_state=0), grid, scoring=make_source_scorer(metric))
    search.fit(X, S)
    for c, n_components in enumerate(grid["n_components"]):
        for k, (fit, held) in enumerate(KFold(5).split(X)):
            model = FastICA(n_components=n_components, whiten="unit-variance", random_state=0).fit(X[fit])
            expected = SCORER_FUNCTIONS[metric](S[held], model.transform(X[held]))
            assert search.cv_results_[f"split{k}_test_score"][c] == pytest.approx(expected, abs=1e-10)
    assert search.best_score_ > 0.8
    if metric.startswith("r2"):  # two components cannot predict the third source
        assert search.best_params_ == {"n_components": 3}


def test_source_scorer_errors():
    with pytest.raises(ValueError, match=r"metric must be one of \('mcc', 'mcc_spearman', 'weak_mcc'"):
        make_source_scorer("dci")
    with pytest.raises(TypeError, match="The weak_mcc scorer scores an estimator with a transform method; got object"):
        make_source_scorer("weak_mcc")(object(), np.eye(3), np.eye(3))
    with pytest.raises(ValueError, match="The r2_linear scorer needs the true sources as y"):
        make_source_scorer("r2_linear")(_FixedTransform(np.eye(3)), None, None)
