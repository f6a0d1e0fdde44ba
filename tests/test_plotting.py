"""Tests of nica.plotting: every function renders under Agg and returns the expected Figure."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402

import nica  # noqa: E402
from nica.datasets import make_toy_density  # noqa: E402
from nica.metrics import mean_corr_coef  # noqa: E402
from nica.plotting import (  # noqa: E402
    plot_components,
    plot_correlation_matrix,
    plot_density_2d,
    plot_gradient_scaling,
    plot_sources,
    plot_training_curves,
)

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _render(fig):
    """Draw the figure for real (Agg), so layout and rasterization errors surface."""
    assert isinstance(fig, Figure)
    fig.canvas.draw()
    return fig


@pytest.fixture(scope="module")
def moons():
    return make_toy_density("two_moons", n_samples=400, random_state=0)


@pytest.fixture(scope="module")
def model_2d(moons):
    return nica.NonlinearICA(n_layers=2, max_iter=3, random_state=0).fit(moons)


# --- plot_sources


def _noisy_permuted(rng, n=600, d=3):
    S = rng.laplace(size=(n, d))
    perm = rng.permutation(d)
    S_est = S[:, perm] * np.array([-2.0, 1.0, 0.5])[:d] + 0.3 * rng.normal(size=(n, d))
    return S, S_est, perm


def test_plot_sources_titles_carry_matched_correlations():
    rng = np.random.default_rng(0)
    S, S_est, perm = _noisy_permuted(rng)
    fig = _render(plot_sources(S, S_est))
    assert len(fig.axes) == 3
    # Oracle: true source i is estimate j where perm[j] == i, |corr| from np.corrcoef.
    for i, ax in enumerate(fig.axes):
        j = int(np.flatnonzero(perm == i)[0])
        c = abs(np.corrcoef(S[:, i], S_est[:, j])[0, 1])
        assert ax.get_title() == f"source {i} vs estimate {j}\n|corr| = {c:.3f}"
    assert fig.get_suptitle() == f"MCC (pearson) = {mean_corr_coef(S, S_est):.3f}"


def test_plot_sources_spearman_and_max_components():
    rng = np.random.default_rng(1)
    S = rng.laplace(size=(500, 4))
    S_est = np.exp(S[:, ::-1])  # monotone: Spearman correlation exactly 1
    fig = _render(plot_sources(S, S_est, method="spearman", max_components=2))
    assert len(fig.axes) == 2
    assert all(ax.get_title().endswith("|corr| = 1.000") for ax in fig.axes)
    assert fig.get_suptitle() == "MCC (spearman) = 1.000"


def test_plot_sources_grid_shapes():
    rng = np.random.default_rng(2)
    S = rng.laplace(size=(200, 5))
    fig = _render(plot_sources(S, S))
    assert len(fig.axes) == 5  # a 3 x 2 grid with the spare panel removed


def test_plot_sources_into_given_axes():
    rng = np.random.default_rng(3)
    S = rng.laplace(size=(200, 2))
    fig, axes = plt.subplots(1, 3)
    out = _render(plot_sources(S, S, axes=axes))
    assert out is fig
    assert axes[0].get_title().startswith("source 0 vs estimate 0")
    assert axes[2].get_title() == ""  # extra axes untouched
    with pytest.raises(ValueError, match="at least 2 Axes"):
        plot_sources(S, S, axes=axes[:1])


@pytest.mark.parametrize("max_components", [0, -1, 1.5, True])
def test_plot_sources_rejects_bad_max_components(max_components):
    S = np.random.default_rng(0).laplace(size=(50, 2))
    with pytest.raises(ValueError, match="max_components"):
        plot_sources(S, S, max_components=max_components)


def test_plot_sources_validates_sources_like_mcc():
    S = np.random.default_rng(0).laplace(size=(50, 2))
    with pytest.raises(ValueError, match="same number of samples"):
        plot_sources(S, S[:10])
    with pytest.raises(ValueError, match="method"):
        plot_sources(S, S, method="kendall")


# --- plot_components


def _band_limits(ax):
    """The lowest and highest point of the shaded band of a panel (its one PolyCollection)."""
    (band,) = [c for c in ax.collections if type(c).__name__ in ("PolyCollection", "FillBetweenPolyCollection")]
    vertices = np.concatenate([path.vertices for path in band.get_paths()])
    return vertices[:, 1].min(), vertices[:, 1].max()


def test_plot_components_draws_each_component_and_its_per_segment_band():
    rng = np.random.default_rng(0)
    u = np.repeat([5, 3, 9], 200)  # labels in any order, not 0..M-1
    sd = {5: np.array([1.0, 4.0]), 3: np.array([3.0, 1.0]), 9: np.array([0.5, 2.0])}
    S = rng.normal(size=(600, 2)) * np.array([sd[label] for label in u]) + 1.0
    fig = _render(plot_components(S, u, t=np.arange(600) / 10.0))
    assert len(fig.axes) == 2
    for k, ax in enumerate(fig.axes):
        line, lower, upper = ax.get_lines()  # the trace, then the band's edges over it
        np.testing.assert_array_equal(line.get_ydata(), S[:, k])
        np.testing.assert_allclose(
            upper.get_ydata() - lower.get_ydata(), 4 * np.array([sd[label][k] for label in u]), rtol=0.2
        )
        np.testing.assert_allclose(line.get_xdata(), np.arange(600) / 10.0)
        # Oracle: each segment's mean and standard deviation from its rows, computed directly.
        means = [S[u == label, k].mean() for label in (5, 3, 9)]
        stds = [S[u == label, k].std() for label in (5, 3, 9)]
        low, high = _band_limits(ax)
        assert low == pytest.approx(min(m - 2 * s for m, s in zip(means, stds)))
        assert high == pytest.approx(max(m + 2 * s for m, s in zip(means, stds)))
        assert ax.get_title() == f"component {k}: per-segment scale {min(stds):.3g} to {max(stds):.3g}"


def test_plot_components_given_scales_in_the_order_of_the_sorted_labels():
    S = np.random.default_rng(1).normal(size=(300, 2))
    u = np.repeat([2, 0, 1], 100)
    scales = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])  # labels 0, 1, 2
    fig = _render(plot_components(S, u, scales=scales))
    for k, ax in enumerate(fig.axes):
        means = {label: S[u == label, k].mean() for label in (0, 1, 2)}
        low, high = _band_limits(ax)
        assert high == pytest.approx(max(means[label] + 2 * scales[label, k] for label in (0, 1, 2)))
        assert low == pytest.approx(min(means[label] - 2 * scales[label, k] for label in (0, 1, 2)))
        assert (
            ax.get_title() == f"component {k}: per-segment scale {scales[:, k].min():.3g} to {scales[:, k].max():.3g}"
        )


def test_plot_components_without_segments_and_into_given_axes():
    S = np.random.default_rng(2).laplace(size=(100, 3))
    fig = _render(plot_components(S, max_components=2))
    assert len(fig.axes) == 2 and fig.get_suptitle() == "2 of 3 components"
    assert all(not ax.collections and ax.get_title() == f"component {k}" for k, ax in enumerate(fig.axes))
    fig, axes = plt.subplots(1, 4)
    out = _render(plot_components(S, np.repeat([0, 1], 50), axes=axes))
    assert out is fig and all(ax.get_lines() for ax in axes[:3]) and not axes[3].get_lines()
    with pytest.raises(ValueError, match="at least 3 Axes"):
        plot_components(S, axes=axes[:2])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"u": np.zeros(99)}, "u must have one label per row"),
        ({"t": np.zeros(5)}, "t must have one entry per row"),
        ({"scales": np.ones((2, 3))}, "scales were given without u"),
        ({"u": np.repeat([0, 1], 50), "scales": np.ones((3, 3))}, "one positive finite scale per segment"),
        ({"u": np.repeat([0, 1], 50), "scales": -np.ones((2, 3))}, "one positive finite scale per segment"),
        ({"max_components": 0}, "max_components"),
    ],
)
def test_plot_components_validates_inputs(kwargs, match):
    S = np.random.default_rng(3).laplace(size=(100, 3))
    with pytest.raises(ValueError, match=match):
        plot_components(S, **kwargs)
    with pytest.raises(ValueError, match="S must be 2-D"):
        plot_components(S[:, 0])


# --- plot_correlation_matrix


def _framed_cells(ax):
    """``{(row, column)}`` of the cells framed by a Rectangle patch."""
    from matplotlib.patches import Rectangle

    cells = set()
    for patch in ax.patches:
        assert isinstance(patch, Rectangle) and (patch.get_width(), patch.get_height()) == (1.0, 1.0)
        x, y = patch.get_xy()
        cells.add((round(y + 0.5), round(x + 0.5)))
    return cells


def test_plot_correlation_matrix_draws_abs_corrcoef_and_frames_the_matching():
    rng = np.random.default_rng(4)
    S, S_est, perm = _noisy_permuted(rng, n=400, d=3)
    fig = _render(plot_correlation_matrix(S, S_est))
    ax = fig.axes[0]
    image = ax.images[0]
    np.testing.assert_allclose(image.get_array(), np.abs(np.corrcoef(S, S_est, rowvar=False)[:3, 3:]), atol=1e-12)
    assert image.get_clim() == (0.0, 1.0)
    # Oracle: true source i is estimate j where perm[j] == i.
    pairs = {(i, int(np.flatnonzero(perm == i)[0])) for i in range(3)}
    assert _framed_cells(ax) == pairs
    texts = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}
    assert texts == {(i, j): f"{abs(np.corrcoef(S[:, i], S_est[:, j])[0, 1]):.2f}" for i, j in pairs}
    assert ax.get_title() == f"|pearson correlation|, MCC = {mean_corr_coef(S, S_est):.3f}"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("estimated source", "true source")
    assert len(fig.axes) == 2  # the image and its colour bar


def test_plot_correlation_matrix_spearman_rectangular_into_given_axes():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(5)
    S = rng.laplace(size=(300, 2))
    S_est = np.column_stack([rng.normal(size=300), np.exp(S[:, 1]), -(S[:, 0] ** 3)])
    fig, ax = plt.subplots()
    assert _render(plot_correlation_matrix(S, S_est, method="spearman", ax=ax)) is fig
    np.testing.assert_allclose(ax.images[0].get_array(), np.abs(spearmanr(S, S_est).statistic[:2, 2:]), atol=1e-12)
    assert _framed_cells(ax) == {(0, 2), (1, 1)}
    assert sorted(t.get_text() for t in ax.texts) == ["1.00", "1.00"]
    assert ax.get_title() == "|spearman correlation|, MCC = 1.000"


def test_plot_correlation_matrix_validates_like_mcc():
    S = np.random.default_rng(0).laplace(size=(50, 2))
    with pytest.raises(ValueError, match="S_true and S_est must have the same number of samples"):
        plot_correlation_matrix(S, S[:10])
    with pytest.raises(ValueError, match="method must be one of"):
        plot_correlation_matrix(S, S, method="kendall")
    with pytest.raises(TypeError, match="S_est must be an array of real numbers"):
        plot_correlation_matrix(S, np.full((50, 2), "x"))


# --- plot_training_curves


def test_plot_training_curves(model_2d):
    fig = _render(plot_training_curves(model_2d))
    assert len(fig.axes) == 1
    lines = fig.axes[0].get_lines()
    train, val, best = lines
    np.testing.assert_allclose(train.get_ydata(), model_2d.loss_curve_)
    np.testing.assert_allclose(val.get_ydata(), -np.asarray(model_2d.validation_scores_))
    np.testing.assert_array_equal(train.get_xdata(), np.arange(1, len(model_2d.loss_curve_) + 1))
    assert best.get_xdata()[0] == model_2d.best_iter_


def test_plot_training_curves_without_validation(moons):
    model = nica.NonlinearICA(n_layers=1, max_iter=2, early_stopping=False, random_state=0).fit(moons)
    fig, ax = plt.subplots()
    assert _render(plot_training_curves(model, ax=ax)) is fig
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels[0] == "train NLL" and "validation NLL" not in labels


def test_plot_training_curves_needs_fitted_model():
    with pytest.raises(NotFittedError, match="This NonlinearICA instance is not fitted yet"):
        plot_training_curves(nica.NonlinearICA())


# --- plot_density_2d


def test_plot_density_2d(model_2d, moons):
    fig = _render(plot_density_2d(model_2d, moons, resolution=30))
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    mesh = ax.collections[0]
    density = np.asarray(mesh.get_array()).reshape(30, 30)
    assert np.all(np.isfinite(density)) and np.all(density >= 0)
    # Default bounds: the data range with a 10% margin.
    lo, hi = moons.min(axis=0), moons.max(axis=0)
    np.testing.assert_allclose(ax.get_xlim(), [lo[0] - 0.1 * (hi[0] - lo[0]), hi[0] + 0.1 * (hi[0] - lo[0])])


def test_plot_density_2d_density_matches_score_samples(model_2d):
    bounds = ((-2.0, 2.0), (-1.0, 1.0))
    fig = _render(plot_density_2d(model_2d, bounds=bounds, resolution=5))
    density = np.asarray(fig.axes[0].collections[0].get_array()).reshape(5, 5)
    gx, gy = np.meshgrid(np.linspace(-2, 2, 5), np.linspace(-1, 1, 5))
    expected = np.exp(model_2d.score_samples(np.column_stack([gx.ravel(), gy.ravel()]))).reshape(5, 5)
    np.testing.assert_allclose(density, expected, rtol=1e-10)
    assert fig.axes[0].get_xlim() == (-2.0, 2.0)


def test_plot_density_2d_bounds_from_samples(model_2d):
    fig, ax = plt.subplots()
    assert _render(plot_density_2d(model_2d, resolution=10, ax=ax)) is fig
    assert len(ax.collections) == 1  # no data points without X


def test_plot_density_2d_rejects_non_2d_model():
    X = np.random.default_rng(0).laplace(size=(200, 3))
    model = nica.NonlinearICA(n_layers=1, max_iter=1, random_state=0).fit(X)
    with pytest.raises(ValueError, match="2 features, got a model fitted on 3"):
        plot_density_2d(model)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"resolution": 1}, "resolution"),
        ({"resolution": 10.0}, "resolution"),
        ({"bounds": ((1.0, 0.0), (0.0, 1.0))}, "bounds"),
        ({"bounds": (0.0, 1.0)}, "bounds"),
        ({"bounds": ((0.0, np.inf), (0.0, 1.0))}, "bounds"),
        ({"X": np.zeros((10, 3))}, "shape"),
    ],
)
def test_plot_density_2d_validates_inputs(model_2d, kwargs, match):
    with pytest.raises(ValueError, match=match):
        plot_density_2d(model_2d, **kwargs)


def test_plot_density_2d_needs_fitted_model():
    with pytest.raises(NotFittedError, match="This NonlinearICA instance is not fitted yet"):
        plot_density_2d(nica.NonlinearICA())


# --- plot_gradient_scaling


def test_plot_gradient_scaling():
    results = {
        "relative": ([100, 10, 1000], [1e-3, 1e-4, 2e-2]),
        "euclidean": (np.array([10, 100]), np.array([1e-4, 3e-3])),
    }
    fig = _render(plot_gradient_scaling(results))
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"relative", "euclidean"}
    np.testing.assert_array_equal(lines["relative"].get_xdata(), [10, 100, 1000])  # sorted
    np.testing.assert_array_equal(lines["relative"].get_ydata(), [1e-4, 1e-3, 2e-2])


@pytest.mark.parametrize(
    "results, match",
    [
        ({}, "non-empty dict"),
        ([([1], [1])], "non-empty dict"),
        ({"a": ([1, 2], [1.0])}, "equal"),
        ({"a": ([1, 2], [1.0, 0.0])}, "positive"),
        ({"a": ([0, 2], [1.0, 1.0])}, "positive"),
        ({"a": 3}, "pair"),
    ],
)
def test_plot_gradient_scaling_validates_inputs(results, match):
    with pytest.raises(ValueError, match=match):
        plot_gradient_scaling(results)
