"""Plots for source recovery, correlation matrices, training curves, 2-D densities and gradient
timings.

Matplotlib only, imported lazily inside each function so that ``import nica`` never loads it.
Every function draws into the axes it is given, or into a new figure when given none, and
returns the :class:`~matplotlib.figure.Figure`. Rows are samples, as everywhere in nica.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
from sklearn.utils.validation import check_is_fitted

from nica._src.metrics import as_real_array, check_sources, match_components, match_sources

__all__ = [
    "plot_components",
    "plot_correlation_matrix",
    "plot_density_2d",
    "plot_gradient_scaling",
    "plot_sources",
    "plot_training_curves",
]

_DENSITY_SAMPLES = 5000  # samples drawn from the model to choose default bounds


def _new_axes(n_panels, axes, panel_size=(3.0, 3.0)):
    """Return ``(figure, flat list of n_panels axes)``, making a grid when ``axes`` is None."""
    if axes is None:
        import matplotlib.pyplot as plt

        ncols = math.ceil(math.sqrt(n_panels))
        nrows = math.ceil(n_panels / ncols)
        fig, grid = plt.subplots(
            nrows,
            ncols,
            figsize=(panel_size[0] * ncols, panel_size[1] * nrows),
            squeeze=False,
            layout="constrained",
        )
        flat = list(grid.ravel())
        for ax in flat[n_panels:]:
            ax.remove()
        return fig, flat[:n_panels]
    flat = list(np.ravel(np.asarray(axes, dtype=object)))
    if len(flat) < n_panels:
        raise ValueError(f"axes must hold at least {n_panels} Axes for {n_panels} panels, got {len(flat)}.")
    return flat[0].figure, flat[:n_panels]


def _single_axes(ax, figsize):
    if ax is None:
        import matplotlib.pyplot as plt

        return plt.subplots(figsize=figsize, layout="constrained")
    return ax.figure, ax


def plot_sources(S_true, S_est, *, max_components=None, method="pearson", axes=None):
    r"""Scatter each true source against its matched estimate.

    Components are matched one-to-one exactly as in :func:`nica.metrics.mean_corr_coef`
    (maximum total :math:`|\operatorname{corr}|`, Hungarian algorithm). Panel ``k`` shows true
    source ``i`` against its estimate ``j`` with their :math:`|\operatorname{corr}|` in the
    title; the figure's title gives the MCC over all matched pairs. Estimates are plotted as
    they are, so a sign flip shows as a descending cloud.

    Parameters
    ----------
    S_true : array-like of shape (n_samples, n_components_true)
        True sources.
    S_est : array-like of shape (n_samples, n_components_est)
        Estimated sources for the same samples, e.g. ``model.transform(X)``.
    max_components : int or None, default=None
        Draw only the first ``max_components`` matched pairs (in the order of the true
        sources); the MCC in the title still uses all of them. ``None`` draws every pair.
    method : {"pearson", "spearman"}, default="pearson"
        Correlation used for matching and titles, as in :func:`~nica.metrics.mean_corr_coef`.
    axes : array-like of matplotlib Axes or None, default=None
        Axes to draw into, at least one per panel (extra ones are left untouched). ``None``
        makes a new, roughly square grid.

    Returns
    -------
    fig : matplotlib.figure.Figure
        The figure holding the panels; its suptitle is set only when ``axes`` is None.

    Raises
    ------
    ValueError
        If the sources are invalid (see :func:`~nica.metrics.mean_corr_coef`), if
        ``max_components`` is not a positive integer, or if too few ``axes`` are given.

    Examples
    --------
    >>> import numpy as np
    >>> from nica.plotting import plot_sources
    >>> rng = np.random.default_rng(0)
    >>> S = rng.laplace(size=(500, 3))
    >>> S_est = -S[:, [2, 0, 1]] + 0.1 * rng.normal(size=(500, 3))
    >>> fig = plot_sources(S, S_est)
    >>> len(fig.axes)
    3
    >>> print(fig.axes[0].get_title())
    source 0 vs estimate 1
    |corr| = 0.998
    >>> import matplotlib.pyplot as plt
    >>> plt.close(fig)
    """
    rows, cols, matched = match_components(S_true, S_est, method)
    if max_components is not None:
        if (
            isinstance(max_components, (bool, np.bool_))
            or not isinstance(max_components, numbers.Integral)
            or max_components < 1
        ):
            raise ValueError(f"max_components must be a positive integer or None, got {max_components!r}.")
    n_panels = len(rows) if max_components is None else min(len(rows), int(max_components))
    S_true = np.asarray(S_true, dtype=np.float64)
    S_est = np.asarray(S_est, dtype=np.float64)
    new_figure = axes is None
    fig, flat = _new_axes(n_panels, axes)
    # Many points: small, translucent and rasterized so that vector outputs stay small.
    alpha = float(np.clip(2000.0 / S_true.shape[0], 0.05, 0.6))
    for ax, i, j, c in zip(flat, rows, cols, matched):
        ax.scatter(S_true[:, i], S_est[:, j], s=2, alpha=alpha, linewidths=0, rasterized=True)
        ax.set_title(f"source {i} vs estimate {j}\n|corr| = {c:.3f}", fontsize="medium")
        ax.set_xlabel(f"true source {i}")
        ax.set_ylabel(f"estimate {j}")
    if new_figure:
        fig.suptitle(f"MCC ({method}) = {matched.mean():.3f}")
    return fig


def plot_components(S, u=None, *, scales=None, t=None, max_components=None, axes=None):
    r"""Draw each component over time, with the scale it has in each segment.

    For sources without ground truth (``model.transform(X)`` of a recording): one panel per
    component, stacked, the rows of ``S`` in time order.  With segment labels ``u``, a band is
    shaded around each component: over the rows of a segment it spans the component's mean
    in that segment :math:`\pm 2` times its scale there, by default the component's standard
    deviation in the segment (``scales`` replaces it, e.g. a model's learned per-segment
    scales), its edges drawn over the trace, so that the nonstationarity a segment-conditional model uses shows as a band
    that widens and narrows.  Each panel's title gives the range of the scales over the
    segments.

    Parameters
    ----------
    S : array-like of shape (n_samples, n_components)
        Components, rows in time order.
    u : array-like of shape (n_samples,) or None, default=None
        The segment label of each row (any labels; a segment may recur).  ``None`` draws the
        components alone.
    scales : array-like of shape (n_segments, n_components) or None, default=None
        The scale of each component in each segment, rows in the order of ``np.unique(u)``
        (the order of a fitted ``ConditionalNonlinearICA``'s ``classes_``); positive.
        ``None``: the standard deviation of the component over the segment's rows.
    t : array-like of shape (n_samples,) or None, default=None
        The time of each row on the horizontal axis; ``None`` numbers the rows.
    max_components : int or None, default=None
        Draw only the first ``max_components`` components; ``None`` draws all.
    axes : array-like of matplotlib Axes or None, default=None
        Axes to draw into, at least one per panel.  ``None`` makes a new figure, one panel a
        row, sharing the time axis.

    Returns
    -------
    fig : matplotlib.figure.Figure
        The figure holding the panels; its suptitle is set only when ``axes`` is None.

    Raises
    ------
    TypeError
        If ``S``, ``u``'s length, ``scales`` or ``t`` are not numeric.
    ValueError
        If ``S`` is not a finite 2-D array with at least 2 rows, if ``u`` or ``t`` do not have
        one entry per row, if ``scales`` does not have one positive finite row per segment and
        one column per component, if ``scales`` is given without ``u``, if
        ``max_components`` is not a positive integer, or if too few ``axes`` are given.

    Examples
    --------
    >>> import numpy as np
    >>> from nica.plotting import plot_components
    >>> rng = np.random.default_rng(0)
    >>> u = np.repeat(np.arange(4), 100)
    >>> S = rng.normal(size=(400, 2)) * np.array([[1.0, 3.0], [2.0, 1.0], [1.0, 1.0], [3.0, 2.0]])[u]
    >>> fig = plot_components(S, u)
    >>> len(fig.axes)
    2
    >>> print(fig.axes[0].get_title())
    component 0: per-segment scale 0.97 to 3
    >>> import matplotlib.pyplot as plt
    >>> plt.close(fig)
    """
    S = check_sources(S, "S")
    n, d = S.shape
    if max_components is not None and (
        isinstance(max_components, (bool, np.bool_))
        or not isinstance(max_components, numbers.Integral)
        or max_components < 1
    ):
        raise ValueError(f"max_components must be a positive integer or None, got {max_components!r}.")
    n_panels = d if max_components is None else min(d, int(max_components))
    t = np.arange(n) if t is None else np.asarray(t)
    if t.shape != (n,):
        raise ValueError(f"t must have one entry per row of S, shape ({n},); got shape {t.shape}.")
    band = None
    if u is None:
        if scales is not None:
            raise ValueError("scales were given without u; the scales of segments need the segment labels u.")
    else:
        u = np.asarray(u)
        if u.shape != (n,):
            raise ValueError(f"u must have one label per row of S, shape ({n},); got shape {u.shape}.")
        labels, segment = np.unique(u, return_inverse=True)
        counts = np.bincount(segment, minlength=labels.size)[:, None]
        means = np.zeros((labels.size, d))
        np.add.at(means, segment, S)
        means /= counts
        if scales is None:
            squares = np.zeros((labels.size, d))
            np.add.at(squares, segment, (S - means[segment]) ** 2)
            scales = np.sqrt(squares / counts)
        else:
            scales = as_real_array(scales, "scales")
            if scales.shape != (labels.size, d) or not np.all(np.isfinite(scales) & (scales > 0)):
                raise ValueError(
                    f"scales must hold one positive finite scale per segment and component, shape "
                    f"({labels.size}, {d}) for the {labels.size} labels of u; got shape {scales.shape}."
                )
        band = (means[segment], scales[segment], scales)
    new_figure = axes is None
    if new_figure:
        import matplotlib.pyplot as plt

        fig, grid = plt.subplots(
            n_panels, 1, figsize=(10.0, 1.0 + 1.3 * n_panels), sharex=True, squeeze=False, layout="constrained"
        )
        flat = list(grid[:, 0])
    else:
        fig, flat = _new_axes(n_panels, axes)
    for k, ax in enumerate(flat):
        title = f"component {k}"
        if band is not None:
            centre, half, per_segment = band
            lower, upper = centre[:, k] - 2.0 * half[:, k], centre[:, k] + 2.0 * half[:, k]
            ax.fill_between(t, lower, upper, color="tab:orange", alpha=0.3, linewidth=0)
            title += f": per-segment scale {per_segment[:, k].min():.3g} to {per_segment[:, k].max():.3g}"
        ax.plot(t, S[:, k], lw=0.6, color="tab:blue", rasterized=n > 5000)
        if band is not None:  # the band's edges over the trace, visible where it is dense
            ax.plot(t, lower, t, upper, lw=0.8, color="tab:orange")
        ax.set_title(title, fontsize="medium")
    flat[-1].set_xlabel("time" if u is None else "time (shaded: segment mean ± 2 × per-segment scale)")
    if new_figure:
        fig.suptitle(f"{n_panels} of {d} components" if n_panels < d else f"{d} components")
    return fig


def plot_correlation_matrix(S_true, S_est, *, method="pearson", ax=None):
    r"""Draw :math:`|\operatorname{corr}(s_i, \hat s_j)|` as an image, the matched pairs framed.

    Row ``i`` is true source ``i``, column ``j`` estimate ``j`` (colour scale from 0 to 1).
    The pairs of the one-to-one matching of :func:`nica.metrics.mean_corr_coef`
    (:func:`nica.metrics.match_sources`) are framed in red with their value written in; the
    title gives the MCC, their mean.

    Parameters
    ----------
    S_true : array-like of shape (n_samples, n_components_true)
        True sources.
    S_est : array-like of shape (n_samples, n_components_est)
        Estimated sources for the same samples.
    method : {"pearson", "spearman"}, default="pearson"
        Correlation drawn and matched, as in :func:`~nica.metrics.mean_corr_coef`.
    ax : matplotlib Axes or None, default=None
        Axes to draw into; ``None`` makes a new figure.

    Returns
    -------
    fig : matplotlib.figure.Figure
        The figure, with a colour bar beside the image.

    Raises
    ------
    TypeError
        If the sources are not numeric.
    ValueError
        If the sources or ``method`` are invalid (see :func:`~nica.metrics.mean_corr_coef`).

    Examples
    --------
    >>> import numpy as np
    >>> from nica.plotting import plot_correlation_matrix
    >>> rng = np.random.default_rng(0)
    >>> S = rng.laplace(size=(500, 3))
    >>> fig = plot_correlation_matrix(S, -S[:, [2, 0, 1]] + 0.1 * rng.normal(size=(500, 3)))
    >>> print(fig.axes[0].get_title())
    |pearson correlation|, MCC = 0.998
    >>> import matplotlib.pyplot as plt
    >>> plt.close(fig)
    """
    matching = match_sources(S_true, S_est, method)
    from matplotlib.patches import Rectangle

    C = np.abs(matching.corr)
    n_true, n_est = C.shape
    fig, ax = _single_axes(ax, figsize=(1.0 + 0.6 * n_est, 0.6 + 0.6 * n_true))
    image = ax.imshow(C, vmin=0.0, vmax=1.0, cmap="viridis", interpolation="nearest")
    for i, j in zip(matching.rows, matching.cols):
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1.0, 1.0, fill=False, edgecolor="red", linewidth=2))
        ax.text(j, i, f"{C[i, j]:.2f}", ha="center", va="center", color="black" if C[i, j] > 0.6 else "white")
    ax.set_xticks(np.arange(n_est))
    ax.set_yticks(np.arange(n_true))
    ax.set_xlabel("estimated source")
    ax.set_ylabel("true source")
    ax.set_title(f"|{method} correlation|, MCC = {np.abs(matching.matched).mean():.3f}")
    fig.colorbar(image, ax=ax, label="|corr|")
    return fig


def plot_training_curves(model, *, ax=None):
    """Plot the training and validation objective of a fitted model per epoch.

    Draws ``model.loss_curve_`` (the training objective) and, when the model was fitted with
    early stopping, ``-model.validation_scores_`` (the held-out objective), both in nats per
    sample, and marks ``model.best_iter_``, the epoch whose parameters were kept.  For the
    likelihood (``model.objective_.label == "nll"``) the curves are the NLL; for another
    objective (:class:`~nica.ConditionalNonlinearICA`'s hybrid objective) they are labelled with
    it and the exact held-out NLL (``-model.validation_log_likelihoods_``) is drawn beside them.

    Parameters
    ----------
    model : fitted estimator
        An estimator with ``loss_curve_`` (and optionally ``validation_scores_`` and
        ``best_iter_``), such as :class:`nica.NonlinearICA`. Epochs are numbered from 1.
    ax : matplotlib Axes or None, default=None
        Axes to draw into; ``None`` makes a new figure.

    Returns
    -------
    fig : matplotlib.figure.Figure

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If ``model`` has no ``loss_curve_`` (a subclass of ValueError).
    ValueError
        If ``loss_curve_`` is empty or ``validation_scores_`` is longer than it.

    Examples
    --------
    >>> import warnings
    >>> from nica import NonlinearICA
    >>> from nica.datasets import make_toy_density
    >>> from nica.plotting import plot_training_curves
    >>> X = make_toy_density("two_moons", n_samples=500, random_state=0)
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")   # max_iter=3 does not converge
    ...     model = NonlinearICA(n_layers=2, max_iter=3, random_state=0).fit(X)
    >>> fig = plot_training_curves(model)
    >>> [line.get_label() for line in fig.axes[0].get_lines()]
    ['train NLL', 'validation NLL', 'best epoch (3)']
    >>> import matplotlib.pyplot as plt
    >>> plt.close(fig)
    """
    check_is_fitted(model, "loss_curve_")
    train = np.asarray(model.loss_curve_, dtype=np.float64)
    if train.ndim != 1 or train.size == 0:
        raise ValueError(f"model.loss_curve_ must be a non-empty 1-D sequence, got shape {train.shape}.")
    val = np.asarray(getattr(model, "validation_scores_", None) or [], dtype=np.float64)
    if val.size > train.size:
        raise ValueError(
            f"model.validation_scores_ has {val.size} entries but model.loss_curve_ has only "
            f"{train.size}; expected one validation score per epoch at most."
        )
    fig, ax = _single_axes(ax, figsize=(6.0, 4.0))
    objective = getattr(getattr(model, "objective_", None), "label", "nll")
    what = "NLL" if objective == "nll" else objective
    ax.plot(np.arange(1, train.size + 1), train, label=f"train {what}")
    if val.size:
        ax.plot(np.arange(1, val.size + 1), -val, label=f"validation {what}")
        exact = np.asarray(getattr(model, "validation_log_likelihoods_", None) or [], dtype=np.float64)
        if objective != "nll" and exact.size == val.size:
            ax.plot(np.arange(1, exact.size + 1), -exact, linestyle=":", label="validation NLL")
    best = getattr(model, "best_iter_", None)
    if best:  # 0 or None: no epoch to mark
        ax.axvline(best, color="0.4", linestyle="--", linewidth=1, label=f"best epoch ({best})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("negative log-likelihood (nats / sample)" if objective == "nll" else "objective (nats / sample)")
    ax.set_title(f"{type(model).__name__} training")
    ax.legend()
    return fig


def _check_bounds(bounds):
    try:
        arr = np.asarray(bounds, dtype=np.float64)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.shape != (2, 2) or not np.all(np.isfinite(arr)) or np.any(arr[:, 0] >= arr[:, 1]):
        raise ValueError(
            "bounds must be ((x_min, x_max), (y_min, y_max)) with finite x_min < x_max and "
            f"y_min < y_max, got {bounds!r}."
        )
    return arr


def plot_density_2d(model, X=None, *, bounds=None, resolution=200, ax=None):
    """Plot the density ``exp(model.score_samples(x))`` of a fitted 2-D model on a grid.

    Parameters
    ----------
    model : fitted estimator
        A density model with ``score_samples`` fitted on 2 features, such as
        :class:`nica.NonlinearICA`.
    X : array-like of shape (n_samples, 2) or None, default=None
        Data drawn over the density as small dots, e.g. held-out samples.
    bounds : ((x_min, x_max), (y_min, y_max)) or None, default=None
        Extent of the grid. ``None`` takes the range of ``X`` with a 10% margin on each side, or
        when ``X`` is None the 0.5–99.5 percentiles of 5000 samples from ``model.sample``.
    resolution : int, default=200
        Grid points per axis (at least 2); the model is evaluated ``resolution**2`` times.
    ax : matplotlib Axes or None, default=None
        Axes to draw into; ``None`` makes a new figure.

    Returns
    -------
    fig : matplotlib.figure.Figure

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If ``model`` is not fitted (a subclass of ValueError).
    ValueError
        If the model was not fitted on exactly 2 features, or ``X``, ``bounds`` or
        ``resolution`` is invalid.

    Examples
    --------
    >>> import warnings
    >>> from nica import NonlinearICA
    >>> from nica.datasets import make_toy_density
    >>> from nica.plotting import plot_density_2d
    >>> X = make_toy_density("two_moons", n_samples=500, random_state=0)
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")   # max_iter=3 does not converge
    ...     model = NonlinearICA(n_layers=2, max_iter=3, random_state=0).fit(X)
    >>> fig = plot_density_2d(model, X, resolution=50)
    >>> len(fig.axes)
    1
    >>> import matplotlib.pyplot as plt
    >>> plt.close(fig)
    """
    check_is_fitted(model)
    n_features = getattr(model, "n_features_in_", None)
    if n_features != 2:
        raise ValueError(f"plot_density_2d needs a model fitted on 2 features, got a model fitted on {n_features}.")
    if isinstance(resolution, (bool, np.bool_)) or not isinstance(resolution, numbers.Integral) or resolution < 2:
        raise ValueError(f"resolution must be an integer >= 2, got {resolution!r}.")
    if X is not None:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != 2 or X.shape[0] < 1 or not np.all(np.isfinite(X)):
            raise ValueError(f"X must be a finite array of shape (n_samples, 2), got an array of shape {X.shape}.")
    if bounds is not None:
        bounds = _check_bounds(bounds)
    else:
        if X is not None:
            lo, hi = X.min(axis=0), X.max(axis=0)
        else:
            samples = model.sample(_DENSITY_SAMPLES, random_state=0)
            lo, hi = np.percentile(samples, [0.5, 99.5], axis=0)
        margin = 0.1 * np.maximum(hi - lo, 1e-3)
        bounds = np.column_stack([lo - margin, hi + margin])

    xs = np.linspace(bounds[0, 0], bounds[0, 1], resolution)
    ys = np.linspace(bounds[1, 0], bounds[1, 1], resolution)
    grid_x, grid_y = np.meshgrid(xs, ys)
    grid = np.column_stack([grid_x.ravel(), grid_y.ravel()])
    density = np.exp(np.asarray(model.score_samples(grid), dtype=np.float64)).reshape(grid_x.shape)

    fig, ax = _single_axes(ax, figsize=(4.5, 4.5))
    ax.pcolormesh(grid_x, grid_y, density, shading="auto", cmap="viridis", rasterized=True)
    if X is not None:
        ax.scatter(X[:, 0], X[:, 1], s=1.5, c="white", alpha=0.5, linewidths=0, rasterized=True)
    ax.set_xlim(bounds[0])
    ax.set_ylim(bounds[1])
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    return fig


def plot_gradient_scaling(results, *, ax=None):
    """Log-log plot of time per step against dimension, one line per method.

    Parameters
    ----------
    results : dict of str to (dims, seconds)
        For each method (e.g. ``"relative"``, ``"euclidean"``, ``"autodiff"``) the dimensions
        ``D`` and the measured seconds, two 1-D sequences of equal length with positive values.
    ax : matplotlib Axes or None, default=None
        Axes to draw into; ``None`` makes a new figure.

    Returns
    -------
    fig : matplotlib.figure.Figure

    Raises
    ------
    ValueError
        If ``results`` is empty or a method's dims and seconds are not positive, finite and
        of equal length.

    Examples
    --------
    >>> from nica.plotting import plot_gradient_scaling
    >>> fig = plot_gradient_scaling({"relative": ([10, 100, 1000], [1e-4, 1e-3, 2e-2]),
    ...                              "euclidean": ([10, 100, 1000], [1e-4, 3e-3, 9e-1])})
    >>> fig.axes[0].get_xscale(), fig.axes[0].get_yscale()
    ('log', 'log')
    >>> import matplotlib.pyplot as plt
    >>> plt.close(fig)
    """
    if not isinstance(results, dict) or not results:
        raise ValueError(
            f"results must be a non-empty dict {{method: (dims, seconds)}}, got {type(results).__name__} {results!r}."
        )
    curves = {}
    for method, value in results.items():
        try:
            dims, seconds = value
            dims = np.asarray(dims, dtype=np.float64)
            seconds = np.asarray(seconds, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(
                f"results[{method!r}] must be a pair (dims, seconds) of numeric sequences, got {value!r}."
            ) from None
        if dims.ndim != 1 or dims.shape != seconds.shape or dims.size == 0:
            raise ValueError(
                f"results[{method!r}]: dims and seconds must be non-empty 1-D sequences of equal "
                f"length, got shapes {dims.shape} and {seconds.shape}."
            )
        for name, arr in (("dims", dims), ("seconds", seconds)):
            if not np.all(np.isfinite(arr) & (arr > 0)):
                raise ValueError(
                    f"results[{method!r}]: {name} must be finite and positive for a log-log plot, got {arr.tolist()}."
                )
        order = np.argsort(dims)
        curves[method] = (dims[order], seconds[order])

    fig, ax = _single_axes(ax, figsize=(5.5, 4.0))
    for method, (dims, seconds) in curves.items():
        ax.loglog(dims, seconds, marker="o", label=str(method))
    ax.set_xlabel("dimension D")
    ax.set_ylabel("time (s)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return fig
