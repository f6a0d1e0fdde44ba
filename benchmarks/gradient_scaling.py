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
  the relative and with the ordinary gradient, started from the same 10 initial points
  (``benchmarks/_gd_comparison.py``).

Command lines (from the repository root)::

    python benchmarks/gradient_scaling.py --quick            # smoke run, < 1 minute
    python benchmarks/gradient_scaling.py                    # full run, about 10 min on 2 cores
    python benchmarks/gradient_scaling.py --max-dim 16384    # full run extended to D = 16384

Outputs (``--out-dir``, default the repository root; ``--quick`` adds ``_quick`` to every
file name so it never overwrites the full results; ``--out`` puts the two JSON files elsewhere)::

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

if __package__ in (None, ""):  # run as ``python benchmarks/gradient_scaling.py``
    import _bootstrap  # noqa: F401

import argparse
import json
import math
import resource
import sys
import time
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import nica
from benchmarks import _harness
from benchmarks._common import proc_status_bytes as _proc_status_bytes
from benchmarks._common import release_free_memory as _release_free_memory
from benchmarks._common import reset_peak_rss as _reset_peak_rss
from benchmarks._common import run_json_child, time_interleaved
from benchmarks._common import xla_memory as _xla_memory
from benchmarks._gd_comparison import plot_gd, run_gd
from benchmarks._harness import Target

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
HEADLINE = {"floor": (512, 2048), "relative": (512, 2048), "euclidean": (512, 2048), "autodiff": (512,)}
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
        "Same subprocess: getrusage(RUSAGE_SELF).ru_maxrss over its whole life, i.e. including XLA compilation."
    ),
    "rss_baseline_bytes": (
        "Same subprocess: RSS after importing jax and nica and building the inputs, before "
        "compiling (the baseline of a process that only imports jax and builds the inputs)."
    ),
}


# --------------------------------------------------------------------------------------------
# targets (the issue's; printed PASS or MISS on the median times, never asserted)


def _median_s(results, method, dim):
    """The median time of ``method`` at ``dim`` in ``results`` (``{method: [point, ...]}``), or
    ``None`` where it was not timed."""
    point = next((p for p in results[method] if p["dim"] == dim and p["status"] == "ok"), None)
    return None if point is None else point["median_s"]


def _time_ratio(numerator, denominator, dim):
    def measured(result):
        top, bottom = (_median_s(result["results"], m, dim) for m in (numerator, denominator))
        return None if top is None or bottom is None else top / bottom

    return measured


def _relative_ms(dim):
    def measured(result):
        seconds = _median_s(result["results"], "relative", dim)
        return None if seconds is None else 1e3 * seconds

    return measured


SLOPE_SPAN = (1024, 8192)


def _relative_slope(result):
    """Least-squares slope of log time against log D for the relative gradient over
    ``SLOPE_SPAN`` (``None`` unless both ends were timed)."""
    low, high = SLOPE_SPAN
    span = [p for p in result["results"]["relative"] if p["status"] == "ok" and low <= p["dim"] <= high]
    if not {low, high} <= {p["dim"] for p in span}:
        return None
    return float(np.polyfit(np.log([p["dim"] for p in span]), np.log([p["median_s"] for p in span]), 1)[0])


TARGETS = (
    Target("relative time / matmul floor at D=2048", _time_ratio("relative", "floor", 2048), "<=", 1.2),
    Target("euclidean time / relative time at D=2048", _time_ratio("euclidean", "relative", 2048), ">=", 10.0),
    Target("autodiff time / relative time at D=512", _time_ratio("autodiff", "relative", 512), ">=", 300.0),
    Target(f"log-log slope of relative time, D={SLOPE_SPAN[0]}..{SLOPE_SPAN[1]}", _relative_slope, "<=", 2.2),
    *(
        Target(f"relative time at D={dim} vs the authors' {ms:g} ms, in ms", _relative_ms(dim), "<=", ms)
        for dim, ms in AUTHORS_REFERENCE_MS.items()
    ),
)

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
    return jax.jit(partial(gradient, activation=nica.activations.get(ACTIVATION), prior=nica.priors.get(PRIOR)))


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

    weights = tuple(normal(dim, dim, scale=dim**-0.5) for _ in range(n_layers))
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
        return 0, (
            f"skipped: predicted {predicted_s:.3g} s per call > {settings['max_call_s']:g} s limit (--max-call-seconds)"
        )
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
            compiled, point["compile_s"], point["xla_memory"] = compile_function(method, dim, batch, n_layers)
            if point["xla_memory"] is not None:
                point["predicted_bytes"] = point["xla_memory"]["total_bytes"]
            else:  # no analysis on this backend: the Jacobians, B·D² floats, four times over
                point["predicted_bytes"] = 16 * batch * dim * dim if method == "autodiff" else 0
            point["predicted_s"] = predict_seconds(method, dim, fastest[method])
            n_calls, reason = plan_repeats(method, dim, point["predicted_s"], settings)
            if point["predicted_bytes"] > settings["memory_limit_bytes"]:
                reason = (
                    f"skipped: predicted {point['predicted_bytes'] / 1e9:.3g} GB > "
                    f"{settings['memory_limit_bytes'] / 1e9:.3g} GB limit "
                    "(--memory-limit-gb)"
                )
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
            samples, _ = time_interleaved({m: (planned[m][1], args[m], planned[m][2]) for m in group}, sorted(group))
            del args
            for method in group:
                point, _, n_calls, warm_up = planned.pop(method)
                point.update(
                    times_s=samples[method],
                    warm_up_call=warm_up,
                    n_repeats=n_calls,
                    interleaved_with=[m for m in group if m != method],
                    median_s=float(np.median(samples[method])),
                    min_s=float(np.min(samples[method])),
                )
                # the floor's 2·(4L − 1)·B·D² flops over the median time: the rate at which
                # the method gets the unavoidable work done
                point["floor_gflop_per_s"] = floor_flops(dim, batch, n_layers) / point["median_s"] / 1e9
                fastest[method][dim] = point["min_s"]
                log(
                    f"  D={dim:6d} {method:9s} median {point['median_s'] * 1e3:10.3f} ms "
                    f"(min {point['min_s'] * 1e3:.3f}, n={n_calls}, "
                    f"compile {point['compile_s']:.2f} s)"
                )
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
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--rss-child",
        method,
        str(dim),
        "--batch",
        str(settings["batch"]),
        "--n-layers",
        str(settings["n_layers"]),
    ]
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
            log(
                f"  D={point['dim']:6d} {method:9s} RSS during call +{shown}"
                + (f" ({point['rss']['error']})" if "error" in point["rss"] else "")
            )


# --------------------------------------------------------------------------------------------
# summary and the page's tables


def summary_table(results, dims):
    """A fixed-width table: times (ms), ratios and memory (MB) per dimension."""

    def ms(method, dim):
        seconds = _median_s(results, method, dim)
        return None if seconds is None else seconds * 1e3

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

    header = (
        f"{'D':>6} {'floor ms':>10} {'relative':>10} {'rel/flr':>8} {'euclid.':>10} "
        f"{'autodiff':>11} {'euc/rel':>8} {'auto/rel':>9} | {'XLA MB rel':>10} "
        f"{'euc':>8} {'auto':>9} | {'RSS MB rel':>10} {'euc':>8} {'auto':>8}"
    )
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
            f"{fmt(mb('autodiff', dim, 'rss'), 8, 1)}"
        )
    return "\n".join(lines)


def _sig3(value):
    """``value`` to three significant digits, trailing zeros kept (``2.30``, ``20.9``, ``114``)."""
    return f"{value:.{max(0, 2 - math.floor(math.log10(value)))}f}"


def _time(seconds):
    return f"{_sig3(seconds)} s" if seconds >= 1 else f"{_sig3(1e3 * seconds)} ms"


def _megabytes(n_bytes):
    mb = n_bytes / 1e6
    return f"{mb / 1e3:.2f} GB" if mb >= 1e3 else f"{mb:.1f} MB" if mb < 100 else f"{mb:.0f} MB"


def _times_table(result):
    """Time of one gradient and RSS increase of one call, at every D with an RSS measurement."""
    rows = []
    for dim in result["settings"]["rss_dims"]:
        points = {m: next(p for p in result["results"][m] if p["dim"] == dim) for m in METHODS}
        ok = {m: p for m, p in points.items() if p["status"] == "ok"}
        floor, relative, euclidean = (ok[m]["median_s"] for m in ("floor", "relative", "euclidean"))
        autodiff = ok.get("autodiff")
        if autodiff is not None:
            auto_cells = [_time(autodiff["median_s"]), f"{autodiff['median_s'] / relative:.0f}×"]
        elif points["autodiff"]["predicted_bytes"] > result["settings"]["memory_limit_bytes"]:
            auto_cells = [f"skipped ({points['autodiff']['predicted_bytes'] / 1e9:.0f} GB predicted)", ""]
        else:
            auto_cells = ["skipped", ""]
        rss = [_megabytes(ok[m]["rss"]["rss_call_delta_bytes"]) if m in ok else "" for m in ("relative", "autodiff")]
        rows.append(
            [
                str(dim),
                _time(floor),
                _time(relative),
                f"{relative / floor:.2f}",
                _time(euclidean),
                auto_cells[0],
                f"{euclidean / relative:.1f}×",
                auto_cells[1],
                *rss,
            ]
        )
    header = [
        "D",
        "floor",
        "relative",
        "relative / floor",
        "euclidean",
        "autodiff",
        "euclidean / relative",
        "autodiff / relative",
        "RSS increase, relative",
        "RSS increase, autodiff",
    ]
    return _harness.markdown_table(header, rows)


# how the page words each target, and what it adds to a verdict (by target name)
_PAGE_WORDING = {
    "relative time / matmul floor at D=2048": "relative ≤ 1.2× the matmul floor at D = 2048",
    "euclidean time / relative time at D=2048": "relative ≥ 10× faster than euclidean at D = 2048",
    "autodiff time / relative time at D=512": "relative ≥ 300× faster than autodiff at D = 512",
    "log-log slope of relative time, D=1024..8192": "log-log slope of relative time, D = 1024 … 8192, ≤ 2.2",
    "relative time at D=1000 vs the authors' 9.5 ms, in ms": "faster than the authors' JAX code at D = 1000 (9.5 ms)",
    "relative time at D=2000 vs the authors' 43 ms, in ms": "faster than the authors' JAX code at D = 2000 (43 ms)",
}
_PAGE_NOTES = {
    "euclidean time / relative time at D=2048": "(out of reach here: see below)",
    "autodiff time / relative time at D=512": "on this run",
}


def _targets_table(result):
    """The targets, measured and judged as the script prints them."""
    results = result["results"]
    rows = []
    for target, check in zip(TARGETS, _harness.evaluate(TARGETS, result)):
        value = check["measured"]
        if target.name.startswith("relative time / matmul floor"):
            point = next(p for p in results["relative"] if p["dim"] == 2048)
            measured = (
                f"{value:.2f}× ({_sig3(1e3 * point['median_s'])} vs "
                f"{_sig3(1e3 * _median_s(results, 'floor', 2048))} ms, "
                f"{point['n_repeats']} interleaved calls)"
            )
        elif target.name.startswith("log-log slope"):
            n_points = sum(SLOPE_SPAN[0] <= p["dim"] <= SLOPE_SPAN[1] for p in results["relative"])
            measured = f"{value:.2f} (least squares over {n_points} points)"
        elif target.name.startswith("relative time at D="):
            measured = f"{_sig3(value)} ms"
        else:
            measured = f"{value:.{1 if value < 100 else 0}f}×"
        status = "PASS" if check["status"] == "PASS" else f"**{check['status']}**"
        note = _PAGE_NOTES.get(target.name)
        rows.append([_PAGE_WORDING[target.name], measured, status + (f" {note}" if note else "")])
    return _harness.markdown_table(["target", "measured", ""], rows)


def tables(load):
    """The page's tables of the sweep: times and memory per D, and the targets."""
    result = load("gradient_scaling")
    return {"gradient_scaling/times": _times_table(result), "gradient_scaling/targets": _targets_table(result)}


# --------------------------------------------------------------------------------------------
# plots


def plot_scaling(results, settings, path):
    """Log-log time vs D (with the authors' reference points) and memory vs D."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    styles = {
        "floor": ("0.4", "matmul floor (4L−1 products)", "--", "."),
        "relative": ("C0", "relative gradient", "-", "o"),
        "euclidean": ("C1", "ordinary gradient (explicit inverse)", "-", "s"),
        "autodiff": ("C3", "autodiff (Jacobian + slogdet)", "-", "^"),
    }
    fig, (ax_time, ax_mem) = plt.subplots(1, 2, figsize=(12, 4.8))
    for method in METHODS:
        color, label, line, marker = styles[method]
        ok = [p for p in results[method] if p["status"] == "ok"]
        if ok:
            ax_time.plot(
                [p["dim"] for p in ok],
                [p["median_s"] * 1e3 for p in ok],
                line,
                color=color,
                marker=marker,
                ms=4,
                label=label,
            )
        xla = [p for p in ok if p.get("xla_memory")]
        if xla:
            ax_mem.plot(
                [p["dim"] for p in xla],
                [p["xla_memory"]["total_bytes"] / 1e6 for p in xla],
                line,
                color=color,
                marker=marker,
                ms=4,
                label=f"{method}: XLA arg+out+temp",
            )
        skipped = [p for p in results[method] if p["status"] != "ok" and p.get("xla_memory")]
        if skipped and method == "autodiff":
            ax_mem.plot(
                [p["dim"] for p in skipped],
                [p["xla_memory"]["total_bytes"] / 1e6 for p in skipped],
                ":",
                color=color,
                marker="x",
                ms=5,
                label="autodiff: XLA, not run",
            )
        rss = [p for p in ok if p.get("rss", {}).get("rss_call_delta_bytes")]
        if rss and method != "floor":
            ax_mem.plot(
                [p["dim"] for p in rss],
                [max(p["rss"]["rss_call_delta_bytes"], 1) / 1e6 for p in rss],
                "none",
                color=color,
                marker=marker,
                mfc="none",
                ms=7,
                label=f"{method}: measured RSS increase",
            )
    dims = [d for d in AUTHORS_REFERENCE_MS]
    ax_time.plot(
        dims,
        [AUTHORS_REFERENCE_MS[d] for d in dims],
        "*",
        color="k",
        ms=10,
        label="authors' relative gradient (reference)",
    )
    ax_time.set(
        xscale="log",
        yscale="log",
        xlabel="dimension D",
        ylabel="time per gradient evaluation (ms)",
        title=f"One gradient, B={settings['batch']}, L={settings['n_layers']}, float32",
    )
    ax_time.legend(fontsize=8, loc="upper left")
    ax_mem.axhline(settings["memory_limit_bytes"] / 1e6, color="0.5", lw=0.8, label="memory limit (--memory-limit-gb)")
    ax_mem.set(
        xscale="log",
        yscale="log",
        xlabel="dimension D",
        ylabel="memory (MB)",
        title="Memory of one gradient evaluation",
    )
    ax_mem.legend(fontsize=7, loc="upper left")
    for ax in (ax_time, ax_mem):
        low, high = ax.get_xlim()
        ticks = [4**k for k in range(1, 10) if low <= 4**k <= high]
        ax.grid(True, which="both", alpha=0.3)
        ax.set_xticks(ticks, [str(d) for d in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------------------------
# command line


def parse_args(argv=None):
    parser = _harness.parser(
        __doc__,
        "smoke run (D ≤ 512, 3 repeats, autodiff ≤ 128, 100 GD epochs); writes *_quick files",
        "OUT/benchmarks/results/gradient_scaling[_quick].json; gd_comparison[_quick].json beside it",
    )
    parser.add_argument(
        "--max-dim",
        type=int,
        default=None,
        help="largest D (default 8192, quick 512); above 8192 powers of two are added, e.g. --max-dim 16384",
    )
    parser.add_argument(
        "--autodiff-max-dim",
        type=int,
        default=None,
        help="largest D for autodiff (default: memory and time limits decide; quick 128)",
    )
    parser.add_argument(
        "--euclidean-max-dim",
        type=int,
        default=None,
        help="largest D for euclidean (default: all; one call at D = 16384 takes minutes on 2 cores)",
    )
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per point (default 7, quick 3)")
    parser.add_argument(
        "--point-budget",
        type=float,
        default=None,
        help="seconds of timed calls per point before repeats are reduced (default 60, quick 2)",
    )
    parser.add_argument(
        "--max-call-seconds",
        type=float,
        default=None,
        help="skip an autodiff point whose predicted single call takes longer (default 30, quick 2)",
    )
    parser.add_argument(
        "--memory-limit-gb",
        type=float,
        default=None,
        help="skip a point whose predicted memory is larger (default: half the machine's RAM)",
    )
    parser.add_argument("--batch", type=int, default=100, help="batch size B (default 100)")
    parser.add_argument("--n-layers", type=int, default=2, help="layers L (default 2)")
    parser.add_argument("--no-rss", action="store_true", help="skip the subprocess RSS measurements")
    parser.add_argument("--skip-gd", action="store_true", help="skip the gradient-descent comparison")
    parser.add_argument(
        "--gd-epochs", type=int, default=None, help="epochs of full-batch descent (default 300, quick 100)"
    )
    parser.add_argument(
        "--gd-lr",
        type=float,
        default=None,
        help="learning rate for both methods (default: largest swept rate stable for both)",
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=_harness.REPO_ROOT,
        help="root of the outputs: JSON under OUT/benchmarks/results, PNG under "
        "OUT/docs/images (default: the repository root)",
    )
    parser.add_argument("--rss-child", nargs=2, metavar=("METHOD", "D"), help=argparse.SUPPRESS)
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
    ram = _harness.total_memory_bytes()
    limit_gb = args.memory_limit_gb if args.memory_limit_gb is not None else (ram / 2 / 1e9 if ram else 8.0)
    autodiff_cap = args.autodiff_max_dim if args.autodiff_max_dim is not None else (128 if quick else None)
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
        "point_budget_s": args.point_budget if args.point_budget is not None else (2.0 if quick else 60.0),
        "max_call_s": args.max_call_seconds if args.max_call_seconds is not None else (2.0 if quick else 30.0),
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
    json_path = _harness.output_path(args, args.out_dir / "benchmarks" / "results", "gradient_scaling")
    images_dir = args.out_dir / "docs" / "images"
    log = _harness.log

    machine = _harness.machine_info()
    log(
        f"nica gradient scaling{' (quick)' if settings['quick'] else ''}: "
        f"{machine['cpu_model']}, {machine['cpus_available']} cores, jax {machine['jax']}, "
        f"{machine['backend']} ({machine['device_kind']}), {machine['device_count']} device(s), "
        f"load {machine['load_average_at_start']}"
    )
    log("timing (median of the timed calls, after compile and one warm-up call):")
    results = run_timings(settings["dims"], settings, log)
    phase_s = {"timing": time.perf_counter() - start}
    if settings["rss_dims"]:
        log("peak RSS of one call in a fresh process:")
        rss_start = time.perf_counter()
        run_rss(results, settings["rss_dims"], settings, log)
        phase_s["rss"] = time.perf_counter() - rss_start

    gd = None
    if not args.skip_gd:
        log(f"full-batch gradient descent, {settings['gd_epochs']} epochs, 10 starts:")
        gd_start = time.perf_counter()
        gd = run_gd(settings, log)
        gd["wall_time_s"] = phase_s["gd"] = time.perf_counter() - gd_start
        _harness.write_result(
            json_path.with_name(f"gd_comparison{suffix}.json"),
            gd,
            benchmark="gradient_scaling",
            argv=argv,
            machine=machine,
        )
        plot_gd(gd, images_dir / f"gd_comparison{suffix}.png")

    record = {
        "settings": settings,
        "measures": MEASURES,
        "floor_definition": floor_products.__doc__.strip().split("\n\n")[0],
        "authors_reference_ms": {str(d): ms for d, ms in AUTHORS_REFERENCE_MS.items()},
        "results": results,
        "phase_wall_time_s": phase_s,
        "wall_time_s": time.perf_counter() - start,
    }
    log("")
    log(summary_table(results, settings["dims"]))
    log("")
    record["checks"] = _harness.report_targets(TARGETS, record)
    _harness.write_result(json_path, record, benchmark="gradient_scaling", argv=argv, machine=machine)
    plot_scaling(results, settings, images_dir / f"gradient_scaling{suffix}.png")
    if gd is not None:
        rates = ", ".join(f"{m} {r:g}" if r is not None else f"{m} none" for m, r in gd["largest_stable_rate"].items())
        finals = {m: np.nanmean(np.array([c[-1] for c in gd["curves"][m]], dtype=float)) for m in gd["curves"]}
        log(
            f"gradient descent: learning rate {gd['learning_rate']:g} for both "
            f"(largest stable per method: {rates}); final mean NLL relative "
            f"{finals['relative']:.4f}, ordinary {finals['euclidean']:.4f}"
        )
        for note in gd["notes"]:
            log(f"  note: {note}")
    phases = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in phase_s.items())
    log(f"wrote {json_path} and the PNGs under {images_dir}; wall time {time.perf_counter() - start:.0f} s ({phases})")


if __name__ == "__main__":
    main()
