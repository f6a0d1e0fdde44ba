"""Full-batch gradient descent with the relative and with the ordinary gradient (the paper's
Figure 1, right): part of ``benchmarks/gradient_scaling.py``, which runs it after its timings.

1000 points of a 2-D, 2-layer nonlinear mixture (``make_segmented_mixture``), a 2-layer network,
10 shared initial points; plain descent ``θ ← θ − η·∇`` at every rate of a grid, then the
curves at the largest rate stable for both methods (:func:`run_gd`).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

import nica

GRADIENTS = {"relative": nica.relative_gradient, "euclidean": nica.euclidean_gradient}
ACTIVATION = "smooth_leaky_relu"  # as the timings of gradient_scaling.py
PRIOR = "laplace"
DTYPE = jnp.float32


def gd_data(n_points=1000, random_state=0):
    """2-D nonlinear mixture of two Laplace sources (2 mixing layers), standardized."""
    data = nica.datasets.make_segmented_mixture(
        n_segments=1, n_per_segment=n_points, n_components=2, n_layers=2, random_state=random_state
    )
    X = data.X_train
    return jnp.asarray((X - X.mean(axis=0)) / X.std(axis=0), DTYPE)


def gd_initial_params(seed, n_features=2, n_layers=2, spread=0.5, bias_scale=0.1):
    """A non-orthogonal starting point: ``W = Q·diag(exp(spread·ε))``, ``b = bias_scale·ε'``.

    ``Q`` comes from ``nica.init_params`` (orthogonal); at an orthogonal ``W`` with zero ``b``
    the relative and the ordinary gradient coincide (``WᵀW = I``), so the columns are
    rescaled and the biases drawn to make the comparison informative.
    """
    key_init, key_scale = jax.random.split(jax.random.key(seed))
    layers = []
    for layer, key in zip(
        nica.init_params(key_init, n_features, n_layers, dtype=DTYPE), jax.random.split(key_scale, n_layers)
    ):
        key_w, key_b = jax.random.split(key)
        scales = jnp.exp(spread * jax.random.normal(key_w, (n_features,), DTYPE))
        layers.append(
            nica.Layer(layer.W * scales[None, :], bias_scale * jax.random.normal(key_b, (n_features,), DTYPE))
        )
    return tuple(layers)


@partial(jax.jit, static_argnames=("method", "n_epochs"))
def gd_curves(initial, X, learning_rate, method, n_epochs):
    """Plain full-batch descent ``θ ← θ − η·∇`` from a stack of initial points.

    Returns the mean NLL before every epoch and after the last, shape
    ``(n_starts, n_epochs + 1)``.
    """
    gradient = GRADIENTS[method]

    def nll(params):
        return -jnp.mean(nica.log_likelihood(params, X, activation=ACTIVATION, prior=PRIOR))

    def epoch(params, _):
        step = gradient(params, X, activation=ACTIVATION, prior=PRIOR)
        return jax.tree.map(lambda p, g: p - learning_rate * g, params, step), nll(params)

    def one_start(params):
        params, history = jax.lax.scan(epoch, params, None, length=n_epochs)
        return jnp.append(history, nll(params))

    return jax.vmap(one_start)(initial)


def is_stable(curve, tolerance=1e-4):
    """Finite everywhere and never increasing by more than ``tolerance`` (nats) in an epoch."""
    curve = np.asarray(curve)
    return bool(np.all(np.isfinite(curve)) and np.max(np.diff(curve)) <= tolerance)


def _json_curves(curves):
    """Curves as nested lists to 7 significant digits (float32), non-finite values as ``None``
    (JSON has no NaN)."""
    return [[float(f"{v:.7g}") if np.isfinite(v) else None for v in curve] for curve in curves]


def run_gd(settings, log):
    """Sweep learning rates, pick the largest rate stable for both methods, record curves."""
    X = gd_data()
    starts = [gd_initial_params(seed) for seed in range(settings["gd_starts"])]
    initial = jax.tree.map(lambda *leaves: jnp.stack(leaves), *starts)
    n_epochs = settings["gd_epochs"]
    methods = ("relative", "euclidean")
    sweep = {method: {} for method in methods}
    curves = {method: {} for method in methods}
    for learning_rate in settings["gd_rates"]:
        for method in methods:
            history = np.asarray(gd_curves(initial, X, learning_rate, method, n_epochs), dtype=float)
            curves[method][learning_rate] = history
            stable = [is_stable(c) for c in history]
            finals = history[:, -1]
            sweep[method][str(learning_rate)] = {
                "n_stable": int(sum(stable)),
                "n_non_finite": int(np.sum(~np.all(np.isfinite(history), axis=1))),
                "final_nll_mean": float(np.mean(finals)) if np.all(np.isfinite(finals)) else None,
                "final_nll_min": float(np.nanmin(finals)) if np.any(np.isfinite(finals)) else None,
            }
            mean = sweep[method][str(learning_rate)]["final_nll_mean"]
            log(
                f"  lr={learning_rate:<6g} {method:9s} stable {sum(stable):2d}/{len(stable)}  "
                f"final NLL mean {'non-finite' if mean is None else f'{mean:.4f}'}"
            )
    n_starts = len(starts)

    def largest_stable(method):
        ok = [lr for lr in settings["gd_rates"] if sweep[method][str(lr)]["n_stable"] == n_starts]
        return max(ok) if ok else None

    per_method = {method: largest_stable(method) for method in methods}
    if settings["gd_lr"] is not None:
        common = settings["gd_lr"]
        if common not in settings["gd_rates"]:
            for method in methods:
                curves[method][common] = np.asarray(gd_curves(initial, X, common, method, n_epochs), dtype=float)
    else:
        both = [lr for lr in settings["gd_rates"] if all(sweep[m][str(lr)]["n_stable"] == n_starts for m in methods)]
        common = max(both) if both else min(settings["gd_rates"])
    notes = []
    for method in methods:
        unstable = sum(not is_stable(c) for c in curves[method][common])
        if unstable:
            notes.append(
                f"{method}: {unstable}/{n_starts} runs unstable at the common rate "
                f"{common:g} (non-finite or NLL increasing)"
            )
    return {
        "experiment": "full-batch gradient descent, relative vs ordinary (euclidean) gradient",
        "data": (
            "nica.datasets.make_segmented_mixture(n_segments=1, n_per_segment=1000, "
            "n_components=2, n_layers=2, random_state=0).X_train, standardized per column"
        ),
        "model": {"n_features": 2, "n_layers": 2, "activation": ACTIVATION, "prior": PRIOR, "dtype": "float32"},
        "initial_points": (
            f"{n_starts} starts, seeds 0..{n_starts - 1}: gd_initial_params "
            "(init_params orthogonal W with columns scaled by exp(0.5·N(0,1)), "
            "biases 0.1·N(0,1)); both methods start from the same points"
        ),
        "update": "params ← params − learning_rate · gradient (no momentum, no schedule)",
        "n_epochs": n_epochs,
        "loss": "mean negative nica.log_likelihood over the 1000 points, before each epoch and after the last",
        "stability_criterion": "all NLL values finite and no epoch increases the NLL by more than 1e-4 nats",
        "learning_rate_sweep": sweep,
        "largest_stable_rate": per_method,
        "learning_rate": common,
        "learning_rate_choice": (
            "given by --gd-lr"
            if settings["gd_lr"] is not None
            else "the largest swept rate at which all runs of both methods are stable (the same rate for both methods)"
        ),
        "notes": notes,
        "curves": {method: _json_curves(curves[method][common]) for method in methods},
        "curves_at_largest_stable_rate": {
            method: (None if per_method[method] is None else _json_curves(curves[method][per_method[method]]))
            for method in methods
        },
    }


def plot_gd(gd, path):
    """NLL vs epoch, 10 thin lines per method (the paper's Figure 1, right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"relative": "C0", "euclidean": "C1"}
    labels = {"relative": "relative gradient", "euclidean": "ordinary gradient"}
    panels = [("same learning rate", {m: gd["learning_rate"] for m in colors}, gd["curves"])]
    per_method = gd["largest_stable_rate"]
    if any(per_method[m] not in (None, gd["learning_rate"]) for m in colors):
        panels.append(("largest stable rate per method", per_method, gd["curves_at_largest_stable_rate"]))
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    for ax, (title, rates, curves) in zip(axes[0], panels):
        for method in colors:
            if curves[method] is None:
                continue
            for i, curve in enumerate(curves[method]):
                ax.plot(
                    np.arange(len(curve)),
                    np.array(curve, dtype=float),
                    color=colors[method],
                    lw=0.7,
                    alpha=0.8,
                    label=f"{labels[method]} (lr {rates[method]:g})" if i == 0 else None,
                )
        ax.set(
            xlabel="epoch",
            ylabel="negative log-likelihood (mean, nats)",
            title=f"Full-batch descent, 10 starts: {title}",
        )
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
