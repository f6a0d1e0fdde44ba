"""Cost of one log-likelihood gradient, and full-batch descent with relative vs ordinary gradient.

Reproduces three figures of Gresele et al. (NeurIPS 2020) on the machine it runs on:

* Figure 1 (left): wall time of one gradient evaluation against the dimension ``D`` for the
  relative gradient (``nica.relative_gradient``), the ordinary gradient with an explicit
  inverse (``nica.euclidean_gradient``, ``O(D³)`` per layer) and brute-force automatic
  differentiation (``nica.autodiff_gradient``, per-sample Jacobians and ``slogdet``,
  ``O(B·D³)`` time and ``B·D²`` memory), next to the *matmul floor*: a jitted function doing
  only the ``4L − 1`` matrix products that any gradient step must do (docs/theory.rst, 'Cost').
* Figure 4: memory of one gradient evaluation, as XLA's compiled memory analysis and as the
  peak resident set size measured in a fresh process.
* Figure 1 (right): mean negative log-likelihood per epoch of full-batch gradient descent with
  the relative and with the ordinary gradient, started from the same 10 initial points.

Command lines (from the repository root)::

    python benchmarks/gradient_scaling.py --quick            # smoke run, < 1 minute
    python benchmarks/gradient_scaling.py                    # full run, about 10 min on 2 cores
    python benchmarks/gradient_scaling.py --max-dim 16384    # full run extended to D = 16384

Outputs (``--out-dir``, default the repository root; ``--quick`` adds ``_quick`` to every
file name so it never overwrites the full results)::

    benchmarks/results/gradient_scaling.json     timings, memory, checks, machine
    benchmarks/results/gd_comparison.json        NLL curves, learning-rate sweep
    docs/images/gradient_scaling.png             time vs D and memory vs D (log-log)
    docs/images/gd_comparison.png                NLL vs epoch, 10 thin lines per method

Timing protocol: float32, batch ``B = 100`` of standard-normal observations, ``L = 2`` layers
with ``N(0, 1/D)`` weights, ``smooth_leaky_relu`` and ``laplace``; each function is compiled
ahead of time (``jax.jit(...).lower(...).compile()``, compile time recorded but not timed),
called once to warm up (unless a call is predicted to take over a second), then called ``n``
times with ``block_until_ready`` and Python's garbage collector off; the JSON keeps every
sample, the median and the minimum.  At each ``D`` the floor, the relative and the euclidean
gradient are timed interleaved: one call of each per round, in a new random order each round
(a method with fewer repeats leaves the rounds early), so that a change of load on the machine
falls on all three alike; autodiff is timed on its own afterwards.  The three get 30 calls at
their headline points (``D = 512`` and ``D = 2048``, where the targets compare medians), 7
elsewhere.  (Autodiff is not interleaved: after one of its calls, which allocates hundreds of
megabytes, the others run cold; with it in the rounds the euclidean gradient at ``D = 256``
took 16 ms against 6.)  Slow points get fewer repeats (never fewer than 5 at the headline
points), and a point is skipped, with the reason recorded, when its predicted memory (XLA's
memory analysis) exceeds ``--memory-limit-gb`` (default half the RAM) or, for autodiff only,
its predicted single-call time (the last measured time extrapolated as ``D³``) exceeds
``--max-call-seconds``.

The script prints a summary table and checks the performance targets, printing PASS or MISS
with the measured values; it never asserts anything about timings.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import resource
import sys
import time
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import numpy as np

import jax
import jax.numpy as jnp

import nica

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_model  # shared /proc and XLA helpers
from _common import proc_status_bytes as _proc_status_bytes
from _common import release_free_memory as _release_free_memory
from _common import reset_peak_rss as _reset_peak_rss
from _common import run_json_child, time_interleaved
from _common import xla_memory as _xla_memory

REPO_ROOT = Path(__file__).resolve().parents[1]

FULL_DIMS = (16, 32, 64, 128, 256, 512, 1000, 1024, 2000, 2048, 4096, 8192)
QUICK_DIMS = (16, 64, 128, 256, 512)
METHODS = ("floor", "relative", "euclidean", "autodiff")
GRADIENTS = {
    "relative": nica.relative_gradient,
    "euclidean": nica.euclidean_gradient,
    "autodiff": nica.autodiff_gradient,
}
# Exponent used to extrapolate a method's time from its last measured dimension (its
# asymptotic cost in D for a fixed batch; autodiff is O(B·D³), euclidean O(D³) per layer).
TIME_EXPONENT = {"floor": 2.0, "relative": 2.0, "euclidean": 3.0, "autodiff": 3.0}
HEADLINE = {"floor": (512, 2048), "relative": (512, 2048), "euclidean": (512, 2048),
            "autodiff": (512,)}
# The authors' relative-gradient times with their JAX code on a 2-core CPU machine (ms).
AUTHORS_REFERENCE_MS = {1000: 9.5, 2000: 43.0}
WARM_UP_BELOW_S = 1.0
INTERLEAVED = ("floor", "relative", "euclidean")  # timed in shared rounds at each D
TIME_SKIPPABLE = ("autodiff",)
RSS_METHODS = ("relative", "euclidean", "autodiff")
ACTIVATION = "smooth_leaky_relu"
PRIOR = "laplace"
DTYPE = jnp.float32

MEASURES = {
    "xla_memory": (
        "XLA's compiled memory analysis, Compiled.memory_analysis(): argument + output + temp "
        "bytes of the jitted function (what XLA plans to allocate; excludes the Python/JAX "
        "runtime and library workspaces XLA does not plan, e.g. LAPACK scratch)."
    ),
    "rss_call_delta_bytes": (
        "Measured in a fresh subprocess: peak resident set size during the first execution of "
        "the compiled function minus the resident set size just before it (inputs already "
        "built, function already compiled, gc.collect() and malloc_trim(0) done, peak reset "
        "through /proc/self/clear_refs). Includes the outputs and all temporaries, also "
        "those XLA does not plan; excludes compilation."
    ),
    "rss_call_peak_bytes": (
        "Same subprocess: absolute peak RSS during that execution (Python, JAX, inputs and the "
        "call), comparable with the paper's Figure 4, which reports process memory."
    ),
    "rss_process_peak_bytes": (
        "Same subprocess: getrusage(RUSAGE_SELF).ru_maxrss over its whole life, i.e. including "
        "XLA compilation."
    ),
    "rss_baseline_bytes": (
        "Same subprocess: RSS after importing jax and nica and building the inputs, before "
        "compiling (the baseline of a process that only imports jax and builds the inputs)."
    ),
}


# --------------------------------------------------------------------------------------------
# the functions being timed


def floor_products(weights, inputs, errors, residuals):
    """The ``4L − 1`` matrix products one gradient step cannot avoid (docs/theory.rst, 'Cost').

    Per layer ``k``: the forward product ``Z_k Wₖᵀ``, the back-propagation product
    ``δ_k W_k`` (every layer but the first), ``R_k W_k`` with ``R_k = Y_k − b_k`` and
    ``δ_kᵀ (R_k W_k)``, a ``(D×B)·(B×D)`` product whose ``D×D`` result is written.  Every
    product is returned, so XLA cannot eliminate any of them.

    Parameters
    ----------
    weights : tuple of arrays of shape (D, D)
    inputs, errors, residuals : tuple of arrays of shape (B, D)
        Stand-ins for ``Z_k``, ``δ_k`` and ``R_k`` (random arrays of the right shapes).

    Returns
    -------
    tuple of arrays
        The ``4L − 1`` products.
    """
    products = []
    for k, (W, Z, delta, R) in enumerate(zip(weights, inputs, errors, residuals)):
        products.append(Z @ W.T)  # forward: Y_k − b_k
        if k > 0:
            products.append(delta @ W)  # back-propagation to layer k − 1
        RW = R @ W
        products.append(RW)
        products.append(delta.T @ RW)  # the D×D data term of ΔW_k
    return tuple(products)


def floor_flops(dim, batch, n_layers):
    """Floating-point operations of :func:`floor_products`: ``2·(4L − 1)·B·D²``."""
    return 2 * (4 * n_layers - 1) * batch * dim * dim


def make_function(method):
    """The jitted function timed for ``method`` (activation and prior fixed, so static)."""
    if method == "floor":
        return jax.jit(floor_products)
    gradient = GRADIENTS[method]
    return jax.jit(partial(gradient, activation=nica.activations.get(ACTIVATION),
                           prior=nica.priors.get(PRIOR)))


def input_specs(method, dim, batch, n_layers):
    """Shapes and dtypes of ``method``'s arguments, for compiling without allocating."""
    matrix = jax.ShapeDtypeStruct((dim, dim), DTYPE)
    vector = jax.ShapeDtypeStruct((dim,), DTYPE)
    rows = jax.ShapeDtypeStruct((batch, dim), DTYPE)
    if method == "floor":
        return ((matrix,) * n_layers, (rows,) * n_layers, (rows,) * n_layers, (rows,) * n_layers)
    return (tuple(nica.Layer(matrix, vector) for _ in range(n_layers)), rows)


def make_inputs(method, dim, batch, n_layers, seed=0):
    """Concrete float32 arguments for ``method``, drawn with NumPy (nothing to compile).

    As in the paper: standard-normal observations ``X`` and random weights, here with entries
    ``N(0, 1/D)`` (well conditioned with high probability) and zero biases; for the floor,
    random stand-ins of the right shapes.  Timings do not depend on the values.
    """
    rng = np.random.default_rng(seed)

    def normal(*shape, scale=1.0):
        return jnp.asarray(rng.standard_normal(shape, dtype=np.float32) * np.float32(scale))

    weights = tuple(normal(dim, dim, scale=dim ** -0.5) for _ in range(n_layers))
    if method == "floor":
        rows = [tuple(normal(batch, dim) for _ in range(n_layers)) for _ in range(3)]
        args = (weights, *rows)
    else:
        params = tuple(nica.Layer(W, jnp.zeros((dim,), DTYPE)) for W in weights)
        args = (params, normal(batch, dim))
    return jax.block_until_ready(args)


def compile_function(method, dim, batch, n_layers):
    """Compile ``method`` for the given shapes; return ``(compiled, seconds, xla_memory)``."""
    start = time.perf_counter()
    compiled = make_function(method).lower(*input_specs(method, dim, batch, n_layers)).compile()
    seconds = time.perf_counter() - start
    return compiled, seconds, xla_memory(compiled)


def xla_memory(compiled):
    """Argument, output and temp bytes from XLA's memory analysis (``None`` if unavailable)."""
    try:
        return _xla_memory(compiled)
    except Exception:  # noqa: BLE001 - backends without the analysis
        return None


# --------------------------------------------------------------------------------------------
# timing sweep


def plan_repeats(method, dim, predicted_s, settings):
    """Number of timed calls, or a reason to skip the point.

    ``settings["repeats"]`` calls (``settings["headline_repeats"]`` for the interleaved methods
    at their headline points, where the targets compare their medians: with the run-to-run
    noise of a shared machine, ±30 % a call, seven calls do not settle a ratio) when they fit in
    ``settings["point_budget_s"]``, fewer (down to 5 at headline points, 3 elsewhere) when they
    do not.  Only autodiff points are skipped for time, when the predicted single call is longer
    than ``settings["max_call_s"]``; relative and euclidean run at every ``D`` (the figure's point).
    """
    headline = dim in HEADLINE[method]
    repeats = settings["repeats"]
    if headline and method in INTERLEAVED:
        repeats = max(repeats, settings["headline_repeats"])
    minimum = min(5 if headline else 3, repeats)
    if predicted_s is None:
        return repeats, None
    if method in TIME_SKIPPABLE and predicted_s > settings["max_call_s"]:
        return 0, (f"skipped: predicted {predicted_s:.3g} s per call > "
                   f"{settings['max_call_s']:g} s limit (--max-call-seconds)")
    fitting = int(settings["point_budget_s"] // max(predicted_s, 1e-9))
    return max(minimum, min(repeats, fitting)), None


def predict_seconds(method, dim, measured):
    """Extrapolate the fastest call at the largest measured ``D`` with the method's exponent."""
    if not measured:
        return None
    last_dim, last_s = max(measured.items())
    return last_s * (dim / last_dim) ** TIME_EXPONENT[method]


def run_timings(dims, settings, log):
    """Time every method at every dimension; return ``{method: [point, ...]}``.

    A point is a dict with ``dim`` and ``status`` (``"ok"`` or ``"skipped: <reason>"``), the
    compile time and XLA memory analysis where compiled, and for timed points every sample
    (``times_s``) with their median and minimum.
    """
    results = {method: [] for method in METHODS}
    fastest = {method: {} for method in METHODS}  # D -> fastest call, basis of predictions
    batch, n_layers = settings["batch"], settings["n_layers"]
    for dim in dims:
        planned = {}  # method -> (point, compiled, n_calls, warm_up): timed below
        for method in METHODS:
            point = {"dim": dim, "status": "ok"}
            results[method].append(point)
            cap = settings["method_max_dim"].get(method)
            if cap is not None and dim > cap:
                point["status"] = f"skipped: D > {cap} (--{method}-max-dim)"
                log(f"  D={dim:6d} {method:9s} {point['status']}")
                continue
            compiled, point["compile_s"], point["xla_memory"] = compile_function(
                method, dim, batch, n_layers)
            if point["xla_memory"] is not None:
                point["predicted_bytes"] = point["xla_memory"]["total_bytes"]
            else:  # no analysis on this backend: the Jacobians, B·D² floats, four times over
                point["predicted_bytes"] = 16 * batch * dim * dim if method == "autodiff" else 0
            point["predicted_s"] = predict_seconds(method, dim, fastest[method])
            n_calls, reason = plan_repeats(method, dim, point["predicted_s"], settings)
            if point["predicted_bytes"] > settings["memory_limit_bytes"]:
                reason = (f"skipped: predicted {point['predicted_bytes'] / 1e9:.3g} GB > "
                          f"{settings['memory_limit_bytes'] / 1e9:.3g} GB limit "
                          "(--memory-limit-gb)")
            if reason is not None:
                point["status"] = reason
                log(f"  D={dim:6d} {method:9s} {reason}")
                continue
            # one-time costs are negligible next to calls predicted to take over a second
            warm_up = point["predicted_s"] is None or point["predicted_s"] < WARM_UP_BELOW_S
            planned[method] = (point, compiled, n_calls, warm_up)
        # floor, relative and euclidean interleaved (their ratios are the targets); autodiff,
        # up to a thousand times slower, on its own afterwards
        together = [m for m in INTERLEAVED if m in planned]
        groups = [together] + [[m] for m in planned if m not in together]
        for group in groups:
            if not group:
                continue
            args = {m: make_inputs(m, dim, batch, n_layers) for m in group}
            for m in group:  # one-time costs are negligible next to calls of over a second
                if planned[m][3]:
                    jax.block_until_ready(planned[m][1](*args[m]))
            samples, _ = time_interleaved({m: (planned[m][1], args[m], planned[m][2]) for m in group},
                                          sorted(group))
            del args
            for method in group:
                point, _, n_calls, warm_up = planned.pop(method)
                point.update(times_s=samples[method], warm_up_call=warm_up, n_repeats=n_calls,
                             interleaved_with=[m for m in group if m != method],
                             median_s=float(np.median(samples[method])),
                             min_s=float(np.min(samples[method])))
                # the floor's 2·(4L − 1)·B·D² flops over the median time: the rate at which
                # the method gets the unavoidable work done
                point["floor_gflop_per_s"] = floor_flops(dim, batch, n_layers) / point["median_s"] / 1e9
                fastest[method][dim] = point["min_s"]
                log(f"  D={dim:6d} {method:9s} median {point['median_s'] * 1e3:10.3f} ms "
                    f"(min {point['min_s'] * 1e3:.3f}, n={n_calls}, "
                    f"compile {point['compile_s']:.2f} s)")
    return results


# --------------------------------------------------------------------------------------------
# resident-set-size measurement in a fresh process


def rss_child(method, dim, batch, n_layers):
    """Body of the ``--rss-child`` subprocess: print one JSON line of RSS measurements."""
    args = make_inputs(method, dim, batch, n_layers)
    baseline = _proc_status_bytes("VmRSS")
    compiled, _, _ = compile_function(method, dim, batch, n_layers)
    _release_free_memory()
    reset = _reset_peak_rss()
    before = _proc_status_bytes("VmRSS")
    jax.block_until_ready(compiled(*args))
    peak = _proc_status_bytes("VmHWM") if reset else None
    record = {
        "rss_baseline_bytes": baseline,
        "rss_before_call_bytes": before,
        "rss_call_peak_bytes": peak,
        "rss_call_delta_bytes": None if peak is None or before is None else peak - before,
        "rss_process_peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
    print(json.dumps(record))


def measure_rss(method, dim, settings, timeout_s):
    """Run :func:`rss_child` in a fresh interpreter and parse its JSON line."""
    command = [sys.executable, str(Path(__file__).resolve()), "--rss-child", method, str(dim),
               "--batch", str(settings["batch"]), "--n-layers", str(settings["n_layers"])]
    return run_json_child(command, timeout_s, stderr_chars=300)


def run_rss(results, rss_dims, settings, log):
    """Attach subprocess RSS measurements to every timed point whose ``D`` is in ``rss_dims``."""
    for method in RSS_METHODS:
        for point in results[method]:
            if point["status"] != "ok" or point["dim"] not in rss_dims:
                continue
            timeout = 120 + 20 * point["median_s"]
            point["rss"] = measure_rss(method, point["dim"], settings, timeout)
            delta = point["rss"].get("rss_call_delta_bytes")
            shown = "n/a" if delta is None else f"{delta / 1e6:.1f} MB"
            log(f"  D={point['dim']:6d} {method:9s} RSS during call +{shown}"
                + (f" ({point['rss']['error']})" if "error" in point["rss"] else ""))


# --------------------------------------------------------------------------------------------
# full-batch gradient descent (Figure 1, right)


def gd_data(n_points=1000, random_state=0):
    """2-D nonlinear mixture of two Laplace sources (2 mixing layers), standardized."""
    data = nica.datasets.make_segmented_mixture(
        n_segments=1, n_per_segment=n_points, n_components=2, n_layers=2,
        random_state=random_state)
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
    for layer, key in zip(nica.init_params(key_init, n_features, n_layers, dtype=DTYPE),
                          jax.random.split(key_scale, n_layers)):
        key_w, key_b = jax.random.split(key)
        scales = jnp.exp(spread * jax.random.normal(key_w, (n_features,), DTYPE))
        layers.append(nica.Layer(layer.W * scales[None, :],
                                 bias_scale * jax.random.normal(key_b, (n_features,), DTYPE)))
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
            history = np.asarray(gd_curves(initial, X, learning_rate, method, n_epochs),
                                 dtype=float)
            curves[method][learning_rate] = history
            stable = [is_stable(c) for c in history]
            finals = history[:, -1]
            sweep[method][str(learning_rate)] = {
                "n_stable": int(sum(stable)),
                "n_non_finite": int(np.sum(~np.all(np.isfinite(history), axis=1))),
                "final_nll_mean": float(np.mean(finals)) if np.all(np.isfinite(finals))
                else None,
                "final_nll_min": float(np.nanmin(finals)) if np.any(np.isfinite(finals))
                else None,
            }
            mean = sweep[method][str(learning_rate)]["final_nll_mean"]
            log(f"  lr={learning_rate:<6g} {method:9s} stable {sum(stable):2d}/{len(stable)}  "
                f"final NLL mean {'non-finite' if mean is None else f'{mean:.4f}'}")
    n_starts = len(starts)

    def largest_stable(method):
        ok = [lr for lr in settings["gd_rates"] if sweep[method][str(lr)]["n_stable"] == n_starts]
        return max(ok) if ok else None

    per_method = {method: largest_stable(method) for method in methods}
    if settings["gd_lr"] is not None:
        common = settings["gd_lr"]
        if common not in settings["gd_rates"]:
            for method in methods:
                curves[method][common] = np.asarray(
                    gd_curves(initial, X, common, method, n_epochs), dtype=float)
    else:
        both = [lr for lr in settings["gd_rates"]
                if all(sweep[m][str(lr)]["n_stable"] == n_starts for m in methods)]
        common = max(both) if both else min(settings["gd_rates"])
    notes = []
    for method in methods:
        unstable = sum(not is_stable(c) for c in curves[method][common])
        if unstable:
            notes.append(f"{method}: {unstable}/{n_starts} runs unstable at the common rate "
                         f"{common:g} (non-finite or NLL increasing)")
    return {
        "experiment": "full-batch gradient descent, relative vs ordinary (euclidean) gradient",
        "data": ("nica.datasets.make_segmented_mixture(n_segments=1, n_per_segment=1000, "
                 "n_components=2, n_layers=2, random_state=0).X_train, standardized per column"),
        "model": {"n_features": 2, "n_layers": 2, "activation": ACTIVATION, "prior": PRIOR,
                  "dtype": "float32"},
        "initial_points": (f"{n_starts} starts, seeds 0..{n_starts - 1}: gd_initial_params "
                           "(init_params orthogonal W with columns scaled by exp(0.5·N(0,1)), "
                           "biases 0.1·N(0,1)); both methods start from the same points"),
        "update": "params ← params − learning_rate · gradient (no momentum, no schedule)",
        "n_epochs": n_epochs,
        "loss": "mean negative nica.log_likelihood over the 1000 points, before each epoch "
                "and after the last",
        "stability_criterion": "all NLL values finite and no epoch increases the NLL by more "
                               "than 1e-4 nats",
        "learning_rate_sweep": sweep,
        "largest_stable_rate": per_method,
        "learning_rate": common,
        "learning_rate_choice": ("given by --gd-lr" if settings["gd_lr"] is not None else
                                 "the largest swept rate at which all runs of both methods are "
                                 "stable (the same rate for both methods)"),
        "notes": notes,
        "curves": {method: _json_curves(curves[method][common]) for method in methods},
        "curves_at_largest_stable_rate": {
            method: (None if per_method[method] is None
                     else _json_curves(curves[method][per_method[method]]))
            for method in methods},
    }


# --------------------------------------------------------------------------------------------
# checks, summary, machine


def _point(results, method, dim):
    for point in results[method]:
        if point["dim"] == dim and point["status"] == "ok":
            return point
    return None


# (name, D, numerator method, denominator method, comparison, bound): time ratios to check
RATIO_TARGETS = (
    ("relative time / matmul floor at D=2048", 2048, "relative", "floor", "<=", 1.2),
    ("euclidean time / relative time at D=2048", 2048, "euclidean", "relative", ">=", 10.0),
    ("autodiff time / relative time at D=512", 512, "autodiff", "relative", ">=", 300.0),
)
SLOPE_SPAN, SLOPE_BOUND = (1024, 8192), 2.2


def _ms(seconds):
    """``seconds`` as milliseconds, about four significant digits, no exponent."""
    ms = seconds * 1e3
    return f"{ms:.{max(0, 3 - int(math.floor(math.log10(ms))))}f} ms" if ms > 0 else "0 ms"


def _check(name, target, measured, passed, detail):
    """One check record: PASS or MISS, or N/A when ``measured`` is ``None``."""
    status = "N/A" if measured is None else ("PASS" if passed else "MISS")
    return {"name": name, "target": target, "measured": measured, "status": status,
            "detail": detail}


def evaluate_checks(results):
    """The issue's performance targets on the median times, each PASS, MISS or N/A."""
    checks = []
    for name, dim, numerator, denominator, comparison, bound in RATIO_TARGETS:
        top, bottom = _point(results, numerator, dim), _point(results, denominator, dim)
        target = f"{comparison} {bound:g}x"
        if top is None or bottom is None:
            checks.append(_check(name, target, None, None, f"D={dim} not measured for both"))
            continue
        ratio = top["median_s"] / bottom["median_s"]
        passed = ratio <= bound if comparison == "<=" else ratio >= bound
        checks.append(_check(name, target, ratio, passed,
                             f"{ratio:.{2 if ratio < 100 else 0}f}x ({numerator} "
                             f"{_ms(top['median_s'])}, {denominator} {_ms(bottom['median_s'])})"))

    low, high = SLOPE_SPAN
    name, target = f"log-log slope of relative time, D={low}..{high}", f"<= {SLOPE_BOUND:g}"
    span = [p for p in results["relative"] if p["status"] == "ok" and low <= p["dim"] <= high]
    if {low, high} <= {p["dim"] for p in span}:
        log_d = np.log([p["dim"] for p in span])
        log_t = np.log([p["median_s"] for p in span])
        slope = float(np.polyfit(log_d, log_t, 1)[0])
        ends = (log_t[np.argmax(log_d)] - log_t[np.argmin(log_d)]) / (log_d.max() - log_d.min())
        checks.append(_check(name, target, slope, slope <= SLOPE_BOUND,
                             f"least-squares slope {slope:.2f} over {len(span)} points "
                             f"(end-point slope {ends:.2f})"))
    else:
        checks.append(_check(name, target, None, None, f"D={low} and D={high} not both measured"))

    for dim, reference_ms in AUTHORS_REFERENCE_MS.items():
        name = f"relative time at D={dim} vs the authors' {reference_ms:g} ms"
        target = f"<= {reference_ms:g} ms"
        point = _point(results, "relative", dim)
        if point is None:
            checks.append(_check(name, target, None, None, f"D={dim} not measured"))
            continue
        ms = point["median_s"] * 1e3
        checks.append(_check(name, target, ms, ms <= reference_ms,
                             f"{_ms(point['median_s'])} ({ms / reference_ms:.2f}x the reference)"))
    return checks


def summary_table(results, dims):
    """A fixed-width table: times (ms), ratios and memory (MB) per dimension."""

    def ms(method, dim):
        point = _point(results, method, dim)
        return None if point is None else point["median_s"] * 1e3

    def mb(method, dim, key):
        for point in results[method]:
            if point["dim"] == dim:
                if key == "xla":
                    memory = point.get("xla_memory")
                    return None if memory is None else memory["total_bytes"] / 1e6
                value = point.get("rss", {}).get("rss_call_delta_bytes")
                return None if value is None else value / 1e6
        return None

    def fmt(value, width, digits=2):
        return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"

    header = (f"{'D':>6} {'floor ms':>10} {'relative':>10} {'rel/flr':>8} {'euclid.':>10} "
              f"{'autodiff':>11} {'euc/rel':>8} {'auto/rel':>9} | {'XLA MB rel':>10} "
              f"{'euc':>8} {'auto':>9} | {'RSS MB rel':>10} {'euc':>8} {'auto':>8}")
    lines = [header, "-" * len(header)]
    for dim in dims:
        f, r, e, a = (ms(m, dim) for m in ("floor", "relative", "euclidean", "autodiff"))
        lines.append(
            f"{dim:>6} {fmt(f, 10, 3)} {fmt(r, 10, 3)} {fmt(None if not (f and r) else r / f, 8)} "
            f"{fmt(e, 10, 2)} {fmt(a, 11, 1)} {fmt(None if not (e and r) else e / r, 8, 1)} "
            f"{fmt(None if not (a and r) else a / r, 9, 0)} | "
            f"{fmt(mb('relative', dim, 'xla'), 10, 1)} {fmt(mb('euclidean', dim, 'xla'), 8, 1)} "
            f"{fmt(mb('autodiff', dim, 'xla'), 9, 1)} | "
            f"{fmt(mb('relative', dim, 'rss'), 10, 1)} {fmt(mb('euclidean', dim, 'rss'), 8, 1)} "
            f"{fmt(mb('autodiff', dim, 'rss'), 8, 1)}")
    return "\n".join(lines)


def machine_info():
    """Platform, CPU model, cores, memory, JAX version and device, load average."""
    device = jax.devices()[0]
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        affinity = None
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model() or platform.processor(),
        "cpu_count": os.cpu_count(),
        "cpus_available": affinity,
        "memory_bytes": total_memory_bytes(),
        "jax": jax.__version__,
        "jaxlib": getattr(jax.lib, "__version__", None) or _package_version("jaxlib"),
        "numpy": np.__version__,
        "nica": nica.__version__,
        "device": (f"{device.platform} ({getattr(device, 'device_kind', device)}), "
                   f"{jax.device_count()} device(s)"),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def _package_version(name):
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # noqa: BLE001
        return None


def total_memory_bytes():
    """Physical memory from ``os.sysconf`` (``None`` where unavailable)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def write_json(record, path):
    """Indented JSON with every list of numbers kept on one line (readable, diff-friendly)."""
    text = json.dumps(record, indent=1)
    text = re.sub(r"\[\s*((?:-?[\d.eE+-]+|null)(?:,\s*(?:-?[\d.eE+-]+|null))*)\s*\]",
                  lambda match: "[" + " ".join(match.group(1).split()) + "]", text)
    path.write_text(text + "\n")


# --------------------------------------------------------------------------------------------
# plots


def plot_scaling(results, settings, path):
    """Log-log time vs D (with the authors' reference points) and memory vs D."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    styles = {"floor": ("0.4", "matmul floor (4L−1 products)", "--", "."),
              "relative": ("C0", "relative gradient", "-", "o"),
              "euclidean": ("C1", "ordinary gradient (explicit inverse)", "-", "s"),
              "autodiff": ("C3", "autodiff (Jacobian + slogdet)", "-", "^")}
    fig, (ax_time, ax_mem) = plt.subplots(1, 2, figsize=(12, 4.8))
    for method in METHODS:
        color, label, line, marker = styles[method]
        ok = [p for p in results[method] if p["status"] == "ok"]
        if ok:
            ax_time.plot([p["dim"] for p in ok], [p["median_s"] * 1e3 for p in ok], line,
                         color=color, marker=marker, ms=4, label=label)
        xla = [p for p in ok if p.get("xla_memory")]
        if xla:
            ax_mem.plot([p["dim"] for p in xla],
                        [p["xla_memory"]["total_bytes"] / 1e6 for p in xla], line, color=color,
                        marker=marker, ms=4, label=f"{method}: XLA arg+out+temp")
        skipped = [p for p in results[method] if p["status"] != "ok" and p.get("xla_memory")]
        if skipped and method == "autodiff":
            ax_mem.plot([p["dim"] for p in skipped],
                        [p["xla_memory"]["total_bytes"] / 1e6 for p in skipped], ":",
                        color=color, marker="x", ms=5, label="autodiff: XLA, not run")
        rss = [p for p in ok if p.get("rss", {}).get("rss_call_delta_bytes")]
        if rss and method != "floor":
            ax_mem.plot([p["dim"] for p in rss],
                        [max(p["rss"]["rss_call_delta_bytes"], 1) / 1e6 for p in rss], "none",
                        color=color, marker=marker, mfc="none", ms=7,
                        label=f"{method}: measured RSS increase")
    dims = [d for d in AUTHORS_REFERENCE_MS]
    ax_time.plot(dims, [AUTHORS_REFERENCE_MS[d] for d in dims], "*", color="k", ms=10,
                 label="authors' relative gradient (reference)")
    ax_time.set(xscale="log", yscale="log", xlabel="dimension D",
                ylabel="time per gradient evaluation (ms)",
                title=f"One gradient, B={settings['batch']}, L={settings['n_layers']}, float32")
    ax_time.legend(fontsize=8, loc="upper left")
    ax_mem.axhline(settings["memory_limit_bytes"] / 1e6, color="0.5", lw=0.8,
                   label="memory limit (--memory-limit-gb)")
    ax_mem.set(xscale="log", yscale="log", xlabel="dimension D", ylabel="memory (MB)",
               title="Memory of one gradient evaluation")
    ax_mem.legend(fontsize=7, loc="upper left")
    for ax in (ax_time, ax_mem):
        low, high = ax.get_xlim()
        ticks = [4 ** k for k in range(1, 10) if low <= 4 ** k <= high]
        ax.grid(True, which="both", alpha=0.3)
        ax.set_xticks(ticks, [str(d) for d in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


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
        panels.append(("largest stable rate per method", per_method,
                       gd["curves_at_largest_stable_rate"]))
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    for ax, (title, rates, curves) in zip(axes[0], panels):
        for method in colors:
            if curves[method] is None:
                continue
            for i, curve in enumerate(curves[method]):
                ax.plot(np.arange(len(curve)), np.array(curve, dtype=float),
                        color=colors[method], lw=0.7, alpha=0.8,
                        label=f"{labels[method]} (lr {rates[method]:g})" if i == 0 else None)
        ax.set(xlabel="epoch", ylabel="negative log-likelihood (mean, nats)",
               title=f"Full-batch descent, 10 starts: {title}")
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------------------------
# command line


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run (D ≤ 512, 3 repeats, autodiff ≤ 128, 100 GD epochs); "
                             "writes *_quick files")
    parser.add_argument("--max-dim", type=int, default=None,
                        help="largest D (default 8192, quick 512); above 8192 powers of two are "
                             "added, e.g. --max-dim 16384")
    parser.add_argument("--autodiff-max-dim", type=int, default=None,
                        help="largest D for autodiff (default: memory and time limits decide; "
                             "quick 128)")
    parser.add_argument("--euclidean-max-dim", type=int, default=None,
                        help="largest D for euclidean (default: all; one call at D = 16384 "
                             "takes minutes on 2 cores)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed calls per point (default 7, quick 3)")
    parser.add_argument("--point-budget", type=float, default=None,
                        help="seconds of timed calls per point before repeats are reduced "
                             "(default 60, quick 2)")
    parser.add_argument("--max-call-seconds", type=float, default=None,
                        help="skip an autodiff point whose predicted single call takes "
                             "longer (default 30, quick 2)")
    parser.add_argument("--memory-limit-gb", type=float, default=None,
                        help="skip a point whose predicted memory is larger (default: half the "
                             "machine's RAM)")
    parser.add_argument("--batch", type=int, default=100, help="batch size B (default 100)")
    parser.add_argument("--n-layers", type=int, default=2, help="layers L (default 2)")
    parser.add_argument("--no-rss", action="store_true",
                        help="skip the subprocess RSS measurements")
    parser.add_argument("--skip-gd", action="store_true",
                        help="skip the gradient-descent comparison")
    parser.add_argument("--gd-epochs", type=int, default=None,
                        help="epochs of full-batch descent (default 300, quick 100)")
    parser.add_argument("--gd-lr", type=float, default=None,
                        help="learning rate for both methods (default: largest swept rate "
                             "stable for both)")
    parser.add_argument("--out-dir", type=Path, default=REPO_ROOT,
                        help="root of the outputs: JSON under OUT/benchmarks/results, PNG under "
                             "OUT/docs/images (default: the repository root)")
    parser.add_argument("--rss-child", nargs=2, metavar=("METHOD", "D"),
                        help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def build_settings(args):
    """Resolve the defaults that depend on ``--quick``."""
    quick = args.quick
    max_dim = args.max_dim if args.max_dim is not None else (512 if quick else 8192)
    base = QUICK_DIMS if quick else FULL_DIMS
    dims = [d for d in base if d <= max_dim]
    power = 2 * base[-1]
    while power <= max_dim:
        dims.append(power)
        power *= 2
    ram = total_memory_bytes()
    limit_gb = args.memory_limit_gb if args.memory_limit_gb is not None else (
        ram / 2 / 1e9 if ram else 8.0)
    autodiff_cap = args.autodiff_max_dim if args.autodiff_max_dim is not None else (
        128 if quick else None)
    return {
        "quick": quick,
        "dims": dims,
        "batch": args.batch,
        "n_layers": args.n_layers,
        "activation": ACTIVATION,
        "prior": PRIOR,
        "dtype": "float32",
        "data": "X ~ N(0, 1) (B×D), W ~ N(0, 1/D) entrywise, b = 0, float32, NumPy seed 0",
        "repeats": args.repeats if args.repeats is not None else (3 if quick else 7),
        "headline_repeats": 3 if quick else 30,
        "point_budget_s": args.point_budget if args.point_budget is not None else (
            2.0 if quick else 60.0),
        "max_call_s": args.max_call_seconds if args.max_call_seconds is not None else (
            2.0 if quick else 30.0),
        "memory_limit_bytes": int(limit_gb * 1e9),
        "method_max_dim": {"autodiff": autodiff_cap, "euclidean": args.euclidean_max_dim},
        "rss_dims": [] if args.no_rss else [d for d in dims if d >= (512 if quick else 256)],
        "gd_epochs": args.gd_epochs if args.gd_epochs is not None else (100 if quick else 300),
        "gd_rates": [0.01, 0.03, 0.1, 0.3, 1.0],
        "gd_lr": args.gd_lr,
        "gd_starts": 10,
    }


def main(argv=None):
    args = parse_args(argv)
    if args.rss_child:
        method, dim = args.rss_child
        rss_child(method, int(dim), args.batch, args.n_layers)
        return
    start = time.perf_counter()
    settings = build_settings(args)
    suffix = "_quick" if settings["quick"] else ""
    results_dir = args.out_dir / "benchmarks" / "results"
    images_dir = args.out_dir / "docs" / "images"
    results_dir.mkdir(parents=True, exist_ok=True)

    def log(message):
        print(message, flush=True)

    machine = machine_info()
    log(f"nica gradient scaling{' (quick)' if settings['quick'] else ''}: "
        f"{machine['cpu_model']}, {machine['cpus_available']} cores, jax {machine['jax']}, "
        f"{machine['device']}, load {machine['load_average_at_start']}")
    log("timing (median of the timed calls, after compile and one warm-up call):")
    results = run_timings(settings["dims"], settings, log)
    phase_s = {"timing": time.perf_counter() - start}
    if settings["rss_dims"]:
        log("peak RSS of one call in a fresh process:")
        rss_start = time.perf_counter()
        run_rss(results, settings["rss_dims"], settings, log)
        phase_s["rss"] = time.perf_counter() - rss_start
    checks = evaluate_checks(results)
    machine["load_average_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None

    gd = None
    if not args.skip_gd:
        log(f"full-batch gradient descent, {settings['gd_epochs']} epochs, 10 starts:")
        gd_start = time.perf_counter()
        gd = run_gd(settings, log)
        gd["machine"] = machine
        gd["wall_time_s"] = phase_s["gd"] = time.perf_counter() - gd_start
        write_json(gd, results_dir / f"gd_comparison{suffix}.json")
        plot_gd(gd, images_dir / f"gd_comparison{suffix}.png")

    record = {
        "benchmark": "gradient_scaling",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine,
        "settings": settings,
        "measures": MEASURES,
        "floor_definition": floor_products.__doc__.strip().split("\n\n")[0],
        "authors_reference_ms": {str(d): ms for d, ms in AUTHORS_REFERENCE_MS.items()},
        "results": results,
        "checks": checks,
        "phase_wall_time_s": phase_s,
        "wall_time_s": time.perf_counter() - start,
    }
    write_json(record, results_dir / f"gradient_scaling{suffix}.json")
    plot_scaling(results, settings, images_dir / f"gradient_scaling{suffix}.png")

    log("")
    log(summary_table(results, settings["dims"]))
    log("")
    log("checks (targets of the issue; measured on this machine, never asserted):")
    for check in checks:
        log(f"  [{check['status']:4s}] {check['name']} (target {check['target']}): "
            f"{check['detail']}")
    if gd is not None:
        rates = ", ".join(f"{m} {r:g}" if r is not None else f"{m} none"
                          for m, r in gd["largest_stable_rate"].items())
        finals = {m: np.nanmean(np.array([c[-1] for c in gd["curves"][m]], dtype=float))
                  for m in gd["curves"]}
        log(f"gradient descent: learning rate {gd['learning_rate']:g} for both "
            f"(largest stable per method: {rates}); final mean NLL relative "
            f"{finals['relative']:.4f}, ordinary {finals['euclidean']:.4f}")
        for note in gd["notes"]:
            log(f"  note: {note}")
    phases = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in phase_s.items())
    log(f"wrote {results_dir}/gradient_scaling{suffix}.json and the PNGs under {images_dir}; "
        f"wall time {time.perf_counter() - start:.0f} s ({phases})")


if __name__ == "__main__":
    main()
