"""The synthetic data sets (``nica/_src/synthetic.py``): the segment-modulated benchmark recipe
(docs/theory.rst, 'The benchmark recipe') checked property by property, the mixing against
hand computation and its inverse by hand, the 2-D toy densities; their refusals of bad
arguments, and random arrays (hypothesis) given to ``apply_mixing``."""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from scipy.stats import kurtosis
from strategies import arrays

from nica.datasets import apply_mixing, make_segmented_mixture, make_toy_density


@pytest.fixture(scope="module")
def small():
    return make_segmented_mixture(n_segments=10, n_per_segment=1000, n_components=3, n_layers=3, random_state=0)


@pytest.fixture(scope="module")
def default():
    """The recipe's defaults: 40 segments x 1000, D = 5, L = 2, Laplace."""
    return make_segmented_mixture(random_state=1)


def invert_by_hand(X, mixing, slope):
    """Undo x = A_L sigma(... sigma(A_1 s)) layer by layer with np.linalg.solve."""
    H = X
    for index in reversed(range(len(mixing))):
        H = np.linalg.solve(mixing[index], H.T).T
        if index > 0:
            H = np.where(H >= 0, H, H / slope)
    return H


# --- make_segmented_mixture


def test_shapes_dtypes_and_fields(default):
    n, d = 40 * 1000, 5
    for name in ("X_train", "S_train", "X_test", "S_test"):
        assert default[name].shape == (n, d)
        assert default[name].dtype == np.float64
    assert default.scales.shape == (40, d)
    assert len(default.mixing) == 2
    assert all(A.shape == (d, d) and A.dtype == np.float64 for A in default.mixing)
    assert default.slope == 0.2 and default.activation == "leaky_relu"
    assert isinstance(default.DESCR, str) and "Segment" in default.DESCR
    assert set(default) == {
        "X_train", "S_train", "u_train", "X_test", "S_test", "u_test",
        "mixing", "scales", "condition_threshold", "slope", "activation", "DESCR",
    }  # fmt: skip


def test_segment_labels(default):
    expected = np.repeat(np.arange(40), 1000)
    for u in (default.u_train, default.u_test):
        assert np.issubdtype(u.dtype, np.integer)
        np.testing.assert_array_equal(u, expected)


def test_scales_in_range():
    data = make_segmented_mixture(
        n_segments=50, n_per_segment=2, n_components=4, scale_range=(1.5, 2.0), random_state=2
    )
    assert np.all((data.scales >= 1.5) & (data.scales <= 2.0))


@pytest.mark.parametrize("split", ["train", "test"])
def test_per_segment_std_matches_scales(small, split):
    S, u = small[f"S_{split}"], small[f"u_{split}"]
    for m in range(small.scales.shape[0]):
        segment = S[u == m]
        np.testing.assert_allclose(segment.std(axis=0), small.scales[m], rtol=0.15)
        np.testing.assert_allclose(segment.mean(axis=0) / small.scales[m], 0.0, atol=0.15)


def test_held_out_is_fresh_but_shares_mixing_and_scales(small):
    np.testing.assert_allclose(apply_mixing(small.S_test, small.mixing, small.slope), small.X_test, rtol=0, atol=0)
    np.testing.assert_allclose(apply_mixing(small.S_train, small.mixing, small.slope), small.X_train, rtol=0, atol=0)
    assert not np.allclose(small.S_train, small.S_test)
    # the held-out sources invert through the same mixing
    np.testing.assert_allclose(invert_by_hand(small.X_test, small.mixing, small.slope), small.S_test, atol=1e-9)


@pytest.mark.parametrize("n_layers", [1, 2, 4])
def test_mixing_is_invertible_by_hand(n_layers):
    data = make_segmented_mixture(
        n_segments=5,
        n_per_segment=200,
        n_components=4,
        n_layers=n_layers,
        slope=0.3,
        random_state=3,
    )
    np.testing.assert_allclose(invert_by_hand(data.X_train, data.mixing, 0.3), data.S_train, atol=1e-9)


def test_single_layer_is_linear():
    data = make_segmented_mixture(n_segments=4, n_per_segment=100, n_components=3, n_layers=1, random_state=4)
    (A,) = data.mixing
    np.testing.assert_allclose(data.X_train, data.S_train @ A.T, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(data.X_test, data.S_test @ A.T, rtol=1e-14, atol=1e-14)


def test_nonlinearity_between_layers_only():
    # With two layers, X = A_2 leaky_relu(A_1 s): solving A_2 gives a leaky-ReLU output,
    # which is not linear in S, and A_1 s is recovered by undoing the leaky ReLU.
    data = make_segmented_mixture(n_segments=4, n_per_segment=250, n_components=3, n_layers=2, random_state=5)
    A1, A2 = data.mixing
    Z = np.linalg.solve(A2, data.X_train.T).T
    H = data.S_train @ A1.T
    np.testing.assert_allclose(Z, np.where(H >= 0, H, 0.2 * H), atol=1e-10)
    assert np.any(H < 0)


def test_mixing_matrices_unit_columns_and_well_conditioned(default):
    for A in default.mixing:
        np.testing.assert_allclose(np.linalg.norm(A, axis=0), 1.0, rtol=1e-12)
        assert np.linalg.cond(A) <= default.condition_threshold


def test_condition_threshold_matches_independent_reference(default):
    # An independent 10,000-matrix sample with another generator: the call's threshold is
    # near its 25th percentile and every accepted matrix is below its 30th.
    rng = np.random.default_rng(12345)
    M = rng.uniform(-1, 1, size=(10_000, 5, 5))
    M /= np.sqrt(np.sum(M**2, axis=1, keepdims=True))
    conds = np.array([np.linalg.cond(m) for m in M])
    p25, p30 = np.percentile(conds, [25, 30])
    assert default.condition_threshold == pytest.approx(p25, rel=0.05)
    assert all(np.linalg.cond(A) <= p30 for A in default.mixing)


def test_laplace_and_gaussian_kurtosis():
    kwargs = dict(n_segments=40, n_per_segment=1000, n_components=2, n_layers=1, random_state=6)
    for source, excess in (("laplace", 3.0), ("gaussian", 0.0)):
        data = make_segmented_mixture(source=source, **kwargs)
        eps = data.S_train / data.scales[data.u_train]  # the unit-variance noise
        np.testing.assert_allclose(eps.var(axis=0), 1.0, atol=0.05)
        np.testing.assert_allclose(kurtosis(eps, axis=0), excess, atol=0.8 if source == "laplace" else 0.15)


def test_deterministic_given_random_state():
    kwargs = dict(n_segments=3, n_per_segment=50, n_components=3, n_layers=2)
    a = make_segmented_mixture(random_state=7, **kwargs)
    b = make_segmented_mixture(random_state=7, **kwargs)
    c = make_segmented_mixture(random_state=8, **kwargs)
    for name in ("X_train", "S_train", "X_test", "S_test", "scales"):
        np.testing.assert_array_equal(a[name], b[name])
        assert not np.allclose(a[name], c[name])
    for A, B in zip(a.mixing, b.mixing, strict=True):
        np.testing.assert_array_equal(A, B)
    assert a.condition_threshold == b.condition_threshold


def test_accepts_random_state_instance():
    rng = np.random.RandomState(9)
    a = make_segmented_mixture(n_segments=2, n_per_segment=10, n_components=2, random_state=rng)
    b = make_segmented_mixture(n_segments=2, n_per_segment=10, n_components=2, random_state=np.random.RandomState(9))
    np.testing.assert_array_equal(a.X_train, b.X_train)


def test_one_component():
    data = make_segmented_mixture(n_segments=2, n_per_segment=10, n_components=1, n_layers=2, random_state=0)
    assert data.X_train.shape == (20, 1)
    np.testing.assert_allclose(np.abs(data.mixing[0]), 1.0)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(n_segments=0), ValueError, "n_segments must be an integer >= 1; got 0"),
        (dict(n_per_segment=-5), ValueError, "n_per_segment must be an integer >= 1"),
        (dict(n_components=2.5), TypeError, "n_components must be an integer >= 1; got 2.5"),
        (dict(n_layers=0), ValueError, "n_layers must be an integer >= 1; got 0"),
        (dict(n_layers=True), TypeError, "n_layers must be an integer"),
        (
            dict(source="cauchy"),
            ValueError,
            r"source must be one of \('laplace', 'gaussian'\), got 'cauchy'",
        ),
        (dict(scale_range=(0.0, 1.0)), ValueError, "0 < low < high"),
        (dict(scale_range=(3.0, 0.5)), ValueError, "0 < low < high"),
        (dict(scale_range=(1.0, np.inf)), ValueError, "0 < low < high"),
        (dict(scale_range=(1.0,)), ValueError, "pair of numbers"),
        (dict(scale_range=("a", "b")), ValueError, "pair of numbers"),
        (dict(slope=0.0), ValueError, "slope must be a finite number > 0"),
        (dict(slope=-0.2), ValueError, "slope must be a finite number > 0"),
        (dict(activation="tanh"), ValueError, r"activation must be one of \('leaky_relu', 'xtanh'\), got 'tanh'"),
        (dict(repeat_matrix=1), TypeError, "repeat_matrix must be a bool, got 1"),
        (dict(n_components=0), ValueError, "n_components must be an integer >= 1; got 0"),
        (dict(n_segments=2.0), TypeError, "n_segments must be an integer >= 1; got 2.0"),
        (dict(source=3), ValueError, r"source must be one of \('laplace', 'gaussian'\), got 3"),
        (dict(slope=None), ValueError, "slope must be a finite number > 0"),
        (dict(random_state="a"), ValueError, "'a' cannot be used to seed"),
    ],
)
def test_make_segmented_mixture_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        make_segmented_mixture(**kwargs)


def test_the_identifiable_vae_recipe_xtanh_with_one_matrix_repeated():
    data = make_segmented_mixture(
        n_segments=6,
        n_per_segment=50,
        n_components=3,
        n_layers=3,
        source="gaussian",
        activation="xtanh",
        slope=0.1,
        repeat_matrix=True,
        random_state=4,
    )
    A = data.mixing[0]
    assert len(data.mixing) == 3 and data.activation == "xtanh" and "xtanh" in data.DESCR
    for M in data.mixing[1:]:
        np.testing.assert_array_equal(M, A)
        assert M is not A  # copies: changing one leaves the others alone
    xtanh = lambda h: np.tanh(h) + 0.1 * h  # noqa: E731
    by_hand = xtanh(xtanh(data.S_train @ A.T) @ A.T) @ A.T
    np.testing.assert_allclose(data.X_train, by_hand, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(apply_mixing(data.S_test, data.mixing, 0.1, "xtanh"), data.X_test, rtol=1e-12)
    # the default recipe draws independent matrices (and is unchanged by the new options)
    default = make_segmented_mixture(n_segments=6, n_per_segment=50, n_components=3, n_layers=3, random_state=4)
    explicit = make_segmented_mixture(
        n_segments=6,
        n_per_segment=50,
        n_components=3,
        n_layers=3,
        random_state=4,
        activation="leaky_relu",
        repeat_matrix=False,
    )
    np.testing.assert_array_equal(default.X_train, explicit.X_train)
    assert not np.allclose(default.mixing[0], default.mixing[1])


# --- apply_mixing


def test_apply_mixing_hand_computed():
    A1 = np.array([[1.0, 0.0], [0.0, -1.0]])
    A2 = np.array([[1.0, 1.0], [0.0, 1.0]])
    # A1 [1, 2] = [1, -2]; leaky_relu -> [1, -0.4]; A2 -> [0.6, -0.4]
    np.testing.assert_allclose(apply_mixing([[1.0, 2.0]], [A1, A2]), [[0.6, -0.4]])
    np.testing.assert_allclose(apply_mixing([[1.0, 2.0]], [A1, A2], slope=1.0), [[-1.0, -2.0]])


@pytest.mark.parametrize(
    "S, mixing, match",
    [
        (np.ones(3), [np.eye(3)], r"S must be 2-D .* shape \(3,\)"),
        (np.ones((4, 3)), [], "at least one matrix"),
        (
            np.ones((4, 3)),
            [np.eye(3), np.eye(2)],
            r"mixing\[1\] must have shape \(3, 3\) .* got shape \(2, 2\)",
        ),
        (np.full((2, 2), np.nan), [np.eye(2)], "S must contain only finite values; it holds NaN or infinity"),
        (np.ones((2, 2)), [np.full((2, 2), np.inf)], r"mixing\[0\] must contain only finite values"),
        (np.ones((4, 3)), [np.eye(3)], "slope must be a finite number > 0"),  # with slope=0 below
    ],
)
def test_apply_mixing_errors(S, mixing, match):
    with pytest.raises(ValueError, match=match):
        apply_mixing(S, mixing, slope=0 if "slope" in match else 0.2)


@pytest.mark.parametrize(
    "S, mixing, kwargs, match",
    [
        (
            np.ones((4, 3)),
            np.eye(3),
            {},
            r"mixing must be a sequence of matrices \(A_1, ..., A_L\); wrap a single "
            r"matrix in a list: \[A\]",
        ),
        (np.ones((2, 2)), 3, {}, r"mixing must be a sequence of matrices \(A_1, ..., A_L\); got int"),
        (np.ones((2, 2)) + 1j, [np.eye(2)], {}, "S must be an array of real numbers, got an array of dtype complex128"),
        (np.array([["a", "b"]]), [np.eye(2)], {}, "S must be an array of real numbers, got an array of dtype <U1"),
    ],
)
def test_apply_mixing_type_errors(S, mixing, kwargs, match):
    with pytest.raises(TypeError, match=match):
        apply_mixing(S, mixing, **kwargs)


def test_apply_mixing_refuses_an_unknown_activation_and_takes_any_iterable():
    with pytest.raises(ValueError, match=r"activation must be one of \('leaky_relu', 'xtanh'\), got 'relu'"):
        apply_mixing(np.ones((4, 3)), [np.eye(3)], activation="relu")
    np.testing.assert_array_equal(apply_mixing(np.ones((1, 2)), (A for A in [np.eye(2)])), np.ones((1, 2)))


# --- make_toy_density


@pytest.mark.parametrize("name", ["two_moons", "mixture_of_gaussians", "sine"])
def test_toy_density_shape_finite_standardised_deterministic(name):
    X = make_toy_density(name, n_samples=777, random_state=0)
    assert X.shape == (777, 2) and X.dtype == np.float64
    assert np.all(np.isfinite(X))
    np.testing.assert_allclose(X.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(X.std(axis=0), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(X, make_toy_density(name, n_samples=777, random_state=0))
    assert not np.allclose(X, make_toy_density(name, n_samples=777, random_state=1))


def test_mixture_of_gaussians_has_eight_equal_weight_components():
    X = make_toy_density("mixture_of_gaussians", n_samples=8000, noise=0.0, random_state=0)
    centres, counts = np.unique(np.round(X, 8), axis=0, return_counts=True)
    assert len(centres) == 8
    np.testing.assert_allclose(counts / 8000, 1 / 8, atol=0.02)
    # the centres lie on a circle around the origin (standardisation keeps it nearly round)
    radii = np.linalg.norm(centres - centres.mean(axis=0), axis=1)
    np.testing.assert_allclose(radii, radii.mean(), rtol=0.05)


def test_sine_without_noise_is_a_sine_curve():
    X = make_toy_density("sine", n_samples=2000, noise=0.0, random_state=0)
    # standardised coordinates are affine in (x1, sin x1): undo with the sample's own range
    x1 = np.interp(X[:, 0], (X[:, 0].min(), X[:, 0].max()), (-np.pi, np.pi))
    y = np.sin(x1)
    slope, intercept = np.polyfit(y, X[:, 1], 1)
    np.testing.assert_allclose(X[:, 1], slope * y + intercept, atol=0.02)


def test_two_moons_noise_is_used():
    tight = make_toy_density("two_moons", n_samples=1000, noise=0.0, random_state=0)
    loose = make_toy_density("two_moons", n_samples=1000, noise=0.3, random_state=0)
    assert not np.allclose(tight, loose)
    # the default noise is the documented 0.05
    np.testing.assert_array_equal(
        make_toy_density("two_moons", random_state=3),
        make_toy_density("two_moons", noise=0.05, random_state=3),
    )


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        (
            ("swiss_roll",),
            {},
            r"name must be one of \('two_moons', 'mixture_of_gaussians', 'sine'\), got 'swiss",
        ),
        (("sine",), dict(n_samples=1), "n_samples must be an integer >= 2; got 1"),
        (("sine",), dict(noise=-0.1), "noise must be a finite non-negative number"),
        (("sine",), dict(noise=np.nan), "noise must be a finite non-negative number"),
        ((3,), {}, r"name must be one of \('two_moons', 'mixture_of_gaussians', 'sine'\), got 3"),
    ],
)
def test_toy_density_errors(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_toy_density(*args, **kwargs)


# --- random arrays


def real_or_refusal(x, name):
    """``x`` as float64 as ``apply_mixing`` converts it, or the ``(type, message)`` that refuses it."""
    arr = x
    if arr.dtype.kind == "O":
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            pass
    if arr.dtype.kind not in "biuf":
        return TypeError, f"{name} must be an array of real numbers, got an array of dtype {arr.dtype}"
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        return ValueError, f"{name} must contain only finite values; it holds NaN or infinity"
    return arr


@settings(max_examples=25, deadline=None, derandomize=True)
@given(S=arrays([(5, 2), (0, 2), (5,), (5, 2, 1)], max_abs=1e100), A=arrays([(2, 2), (3, 3)], max_abs=1e100))
def test_apply_mixing_on_random_arrays(S, A):
    """The predicted error naming S or mixing[0] (numbers, finite, then S 2-D, then the shape of
    the matrix), or the mixed observations: finite unless the products overflow."""
    H = real_or_refusal(S, "S")
    refusal = H if isinstance(H, tuple) else None
    if refusal is None and H.ndim != 2:
        refusal = ValueError, f"S must be 2-D with shape (n_samples, n_components), got an array of shape {H.shape}"
    if refusal is None:
        M = real_or_refusal(A, "mixing[0]")
        refusal = M if isinstance(M, tuple) else None
        if refusal is None and M.shape != (H.shape[1], H.shape[1]):
            refusal = ValueError, f"mixing[0] must have shape {(H.shape[1], H.shape[1])} to act on S"
    if refusal is not None:
        with pytest.raises(refusal[0], match=re.escape(refusal[1])):
            apply_mixing(S, [A, A])
        return
    X = apply_mixing(S, [A, A])
    assert X.shape == S.shape and X.dtype == np.float64
    assert np.isfinite(X).all() or np.abs(S.astype(float)).max() * np.abs(A.astype(float)).max() ** 2 > 1e300


@pytest.mark.parametrize(
    "sizes, too_big",
    [
        (dict(n_segments=10**6, n_per_segment=10**6, n_components=5), "{'X_train': 5000000000000}"),
        (dict(n_segments=2**70, n_per_segment=2, n_components=2), "{'X_train': 4722366482869645213696}"),
        (dict(n_segments=2, n_per_segment=10, n_components=10**6), "{'mixing': 2000000000000}"),
        (dict(n_segments=2, n_per_segment=10, n_components=2, n_layers=10**9), "{'mixing': 4000000000}"),
    ],
)
def test_make_segmented_mixture_refuses_huge_sizes_before_allocating(sizes, too_big):
    # before: NumPy's MemoryError (7.28 TiB) or "Maximum allowed dimension exceeded"
    with pytest.raises(
        ValueError, match=re.escape(f"make_segmented_mixture would allocate {too_big} entries")
    ) as refused:
        make_segmented_mixture(**sizes, random_state=0)
    assert "at most 2147483647 per array are supported" in str(refused.value)


def test_make_toy_density_refuses_huge_sizes():
    with pytest.raises(ValueError, match=r"n_samples must be an integer in \[2, 2147483647\]; got 1000000000000"):
        make_toy_density("two_moons", n_samples=10**12)
