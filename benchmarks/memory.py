"""Peak memory and time of one training step (gradient + Adam) at growing dimension.

The paper's Figure 4 on the machine it runs on, for a full optax training step rather than a
bare gradient: float32, ``L = 2`` square layers, a batch of ``B = 100`` standard-normal rows,
``smooth_leaky_relu`` and ``laplace``, Adam, the state ``(params, Adam's mu and nu)`` donated
to the step so that XLA updates it in place.  Three ways to get the direction:

* ``relative``: nica's relative gradient (docs/theory.rst), ``O(L·B·D²)`` time and, beyond the
  state, only the gradients (one ``D×D`` per layer) and ``(B, D)`` activations;
* ``euclidean``: the ordinary gradient with an explicit inverse, ``O(D³)`` per layer;
* ``autodiff``: per-sample Jacobians and ``slogdet``, ``O(B·D³)`` time and ``B·D²`` memory.

Every ``(method, D)`` point runs in a fresh interpreter (``--child``), which

1. compiles the step ahead of time for the shapes alone
   (``jax.jit(step, donate_argnums=0).lower(...).compile()``, nothing allocated) and records
   XLA's memory analysis (what XLA plans to hold at once); if the plan exceeds
   ``--memory-limit-gb`` (default: the smaller of 20 GB and 85 % of the memory available when
   the script starts; 8 GB at most for autodiff) or 90 % of the memory available now, it stops
   there and the point is reported as skipped, with the plan;
2. builds the state on the device (``W ~ N(0, 1/D)`` drawn by a jitted ``jax.random.normal``,
   zero biases, ``optax.adam(1e-3).init``) and a batch ``X``;
3. resets the kernel's peak-RSS mark (``/proc/self/clear_refs``) and runs a few steps of the
   compiled executable, each timed with ``block_until_ready``; the state returned by one step
   is donated to the next;
4. prints one JSON line: the peak RSS during the steps (``VmHWM``), the process's peak RSS
   over its whole life (``getrusage``: Python, JAX, state creation, compilation, steps), the
   RSS before the steps, the times and XLA's analysis.

A baseline child imports JAX, nica and optax and runs a tiny step: its RSS is the cost of the
runtime, subtracted to give the memory attributable to the training step.  The euclidean and
autodiff baselines are not run where their last measured step time extrapolated as ``D³``
exceeds ``--max-step-seconds`` (their XLA plan is still compiled and reported); points
predicted to take over 10 s run 2 steps (relative) or 1 step (the baselines).

Target (the issue): at ``D = 20,000`` the peak resident memory of the process is within
1.5× of parameters + gradients + Adam state, i.e. ``4·L·D²`` floats = 12.8 GB.  The script
prints PASS or MISS with the measured numbers; it asserts nothing about time or memory.

Command lines (from the repository root)::

    python benchmarks/memory.py --quick     # D ≤ 1024, under a minute
    python benchmarks/memory.py             # D up to 20,000: about 5-10 minutes, ~14 GB RSS

Outputs (``--quick`` adds ``_quick`` to the names)::

    benchmarks/results/memory.json          every point, the baseline, the target check
    docs/images/memory.png                  peak memory and step time against D
"""

from __future__ import annotations

if __package__ in (None, ""):  # run as ``python benchmarks/memory.py``
    import _bootstrap  # noqa: F401

import argparse
import json
import resource
import sys
import time
from pathlib import Path

from benchmarks import _harness
from benchmarks._common import mem_available_bytes as _mem_available_bytes  # shared /proc and XLA helpers
from benchmarks._common import proc_status_bytes as _proc_status_bytes
from benchmarks._common import release_free_memory as _release_free_memory
from benchmarks._common import reset_peak_rss as _reset_peak_rss
from benchmarks._common import run_json_child
from benchmarks._common import xla_memory as _xla_memory
from benchmarks._harness import Target

METHODS = ("relative", "euclidean", "autodiff")
FULL_DIMS = {
    "relative": (500, 1000, 2000, 5000, 10000, 20000),
    "euclidean": (500, 1000, 2000, 5000, 10000, 20000),
    "autodiff": (250, 500, 1000, 2000, 5000),
}
QUICK_DIMS = {
    "relative": (256, 1024),
    "euclidean": (256, 512),
    "autodiff": (64, 128),
}
TARGET_DIM = 20000
TARGET_RATIO = 1.5
AUTODIFF_MAX_BYTES = 8e9  # never run autodiff where XLA plans more than this
TIME_EXPONENT = {"relative": 2.0, "euclidean": 3.0, "autodiff": 3.0}
ACTIVATION = "smooth_leaky_relu"
PRIOR = "laplace"
LEARNING_RATE = 1e-3
FLOAT_BYTES = 4


def _peak_over_state(result):
    """Peak RSS of the process over parameters + gradients + Adam at ``TARGET_DIM``."""
    point = next((p for p in result["points"]["relative"] if p["dim"] == TARGET_DIM), None)
    if point is None or point.get("status") != "ok":
        return None
    return point["rss_process_peak_bytes"] / point["state_bytes"]


TARGETS = (Target(f"peak RSS / (params + grads + Adam) at D={TARGET_DIM}", _peak_over_state, "<=", TARGET_RATIO),)


# --------------------------------------------------------------------------------------------
# helpers shared by parent and children (no JAX import at module level: the parent stays small)
# (the /proc and XLA helpers live in _common.py)


def state_bytes(dim, n_layers):
    """Parameters + gradients + Adam's two moments: ``4·L·(D² + D)`` float32 numbers."""
    return 4 * n_layers * (dim * dim + dim) * FLOAT_BYTES


# --------------------------------------------------------------------------------------------
# the children


def _compile(method, dim, batch, n_layers):
    """Compile the donated training step for these shapes (nothing is allocated)."""
    import jax
    import jax.numpy as jnp
    import optax

    import nica

    optimizer = optax.adam(LEARNING_RATE)
    matrix = jax.ShapeDtypeStruct((dim, dim), jnp.float32)
    vector = jax.ShapeDtypeStruct((dim,), jnp.float32)
    params = tuple(nica.Layer(matrix, vector) for _ in range(n_layers))
    state = jax.eval_shape(lambda p: nica.init_train_state(optimizer, p), params)
    X = jax.ShapeDtypeStruct((batch, dim), jnp.float32)
    step = nica.make_train_step(optimizer, activation=ACTIVATION, prior=PRIOR, gradient=method)
    start = time.perf_counter()
    compiled = jax.jit(step, donate_argnums=0).lower(state, X).compile()
    return compiled, time.perf_counter() - start


def plan_child(method, dim, batch, n_layers):
    """Compile only (nothing allocated): XLA's memory analysis of the step."""
    compiled, seconds = _compile(method, dim, batch, n_layers)
    return {"xla_memory": _xla_memory(compiled), "compile_s": seconds}


def baseline_child(batch, n_layers):
    """RSS of a process that imports JAX, nica and optax and runs one tiny compiled step."""
    result = run_child("relative", 8, batch, n_layers, n_steps=1, limit_bytes=1e9)
    return {
        "rss_baseline_bytes": result["rss_before_steps_bytes"] - result["inputs_bytes"],
        "rss_process_peak_bytes": result["rss_process_peak_bytes"],
    }


def run_child(method, dim, batch, n_layers, n_steps, limit_bytes):
    """Compile; unless XLA plans more than ``limit_bytes`` (or 90 % of the memory available
    now), build the state, run ``n_steps`` donated steps and measure RSS and time."""
    import jax
    import jax.numpy as jnp
    import optax

    import nica

    rss_import = _proc_status_bytes("VmRSS")
    compiled, compile_s = _compile(method, dim, batch, n_layers)
    plan = _xla_memory(compiled)
    predicted = plan["total_bytes"] if plan else 0
    available = _mem_available_bytes()
    if predicted > limit_bytes:
        return {
            "skipped": f"XLA plans {predicted / 1e9:.3g} GB > {limit_bytes / 1e9:.3g} GB limit",
            "xla_memory": plan,
            "compile_s": compile_s,
        }
    if available is not None and predicted > 0.9 * available:
        return {
            "skipped": f"XLA plans {predicted / 1e9:.3g} GB but only {available / 1e9:.3g} GB are available now",
            "xla_memory": plan,
            "compile_s": compile_s,
        }
    optimizer = optax.adam(LEARNING_RATE)

    @jax.jit
    def init(key):
        keys = jax.random.split(key, n_layers + 1)
        params = tuple(
            nica.Layer(jax.random.normal(k, (dim, dim), jnp.float32) * dim**-0.5, jnp.zeros((dim,), jnp.float32))
            for k in keys[:n_layers]
        )
        return (nica.init_train_state(optimizer, params), jax.random.normal(keys[-1], (batch, dim), jnp.float32))

    start = time.perf_counter()
    state, X = jax.block_until_ready(init(jax.random.key(0)))
    init_s = time.perf_counter() - start
    _release_free_memory()
    rss_before = _proc_status_bytes("VmRSS")
    reset = _reset_peak_rss()
    times = []
    for _ in range(n_steps):
        start = time.perf_counter()
        state, loss = compiled(state, X)
        jax.block_until_ready((state, loss))
        times.append(time.perf_counter() - start)
    peak = _proc_status_bytes("VmHWM") if reset else None
    finite = bool(jnp.isfinite(loss))
    return {
        "rss_after_import_bytes": rss_import,
        "rss_before_steps_bytes": rss_before,
        "rss_step_peak_bytes": peak,
        "rss_process_peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "inputs_bytes": (3 * n_layers * (dim * dim + dim) + batch * dim) * FLOAT_BYTES,
        "xla_memory": plan,
        "compile_s": compile_s,
        "init_s": init_s,
        "times_s": times,
        "loss_finite": finite,
        "device": str(jax.devices()[0]),
    }


# --------------------------------------------------------------------------------------------
# the parent


def _child(args, timeout_s):
    command = [sys.executable, str(Path(__file__).resolve()), "--child", *map(str, args)]
    return run_json_child(command, timeout_s, stderr_chars=400)


def predict_seconds(method, dim, measured):
    """Extrapolate the fastest step at the largest measured ``D`` with the method's exponent."""
    if not measured:
        return None
    last_dim, last_s = max(measured.items())
    return last_s * (dim / last_dim) ** TIME_EXPONENT[method]


def run(settings, log):
    batch, n_layers = settings["batch"], settings["n_layers"]
    baseline = _child(("baseline", 0, batch, n_layers, 1), settings["timeout_s"])
    log(f"baseline (python + jax + nica + optax, tiny step): {baseline.get('rss_baseline_bytes', 0) / 1e6:.0f} MB RSS")
    points = {method: [] for method in METHODS}
    fastest = {method: {} for method in METHODS}
    for method in METHODS:
        for dim in settings["dims"][method]:
            point = {"dim": dim, "state_bytes": state_bytes(dim, n_layers)}
            points[method].append(point)
            limit = settings["memory_limit_bytes"]
            if method == "autodiff":
                limit = min(limit, AUTODIFF_MAX_BYTES)
            predicted_s = predict_seconds(method, dim, fastest[method])
            point["predicted_step_s"] = predicted_s
            if method != "relative" and predicted_s is not None and predicted_s > settings["max_step_s"]:
                # compile only, for XLA's memory plan of the point that is not run
                plan = _child(("plan", method, dim, batch, n_layers), settings["timeout_s"])
                point["xla_memory"] = plan.get("xla_memory")
                point["status"] = (
                    f"skipped: predicted {predicted_s:.3g} s per step (D³ from "
                    f"the last point) > {settings['max_step_s']:g} s "
                    "(--max-step-seconds)"
                )
                log(f"  {method:9s} D={dim:6d} {point['status']}")
                continue
            n_steps = settings["steps"]
            if predicted_s is not None and predicted_s > 10:
                n_steps = 2 if method == "relative" else 1
            result = _child(("run", method, dim, batch, n_layers, n_steps, limit), settings["timeout_s"])
            if "error" in result or "skipped" in result:
                point.update(result)
                point["status"] = f"error: {result['error']}" if "error" in result else f"skipped: {result['skipped']}"
                log(f"  {method:9s} D={dim:6d} {point['status']}")
                continue
            point.update(result)
            point["status"] = "ok"
            predicted = result["xla_memory"]["total_bytes"] if result["xla_memory"] else 0
            point["min_step_s"] = min(result["times_s"])
            base = baseline.get("rss_baseline_bytes") or 0
            point["rss_step_above_baseline_bytes"] = result["rss_step_peak_bytes"] - base
            point["peak_over_state"] = result["rss_process_peak_bytes"] / point["state_bytes"]
            point["peak_above_baseline_over_state"] = (result["rss_process_peak_bytes"] - base) / point["state_bytes"]
            fastest[method][dim] = point["min_step_s"]
            log(
                f"  {method:9s} D={dim:6d} step {point['min_step_s'] * 1e3:10.1f} ms  "
                f"peak RSS {result['rss_process_peak_bytes'] / 1e9:7.3f} GB "
                f"(steps {result['rss_step_peak_bytes'] / 1e9:.3f}, XLA plans "
                f"{predicted / 1e9:.3f}; params+grads+Adam {point['state_bytes'] / 1e9:.3f} GB, "
                f"ratio {point['peak_over_state']:.2f})"
            )
    return baseline, points


def plot(points, path, n_layers, baseline_bytes=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax_mem, ax_time) = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = {"relative": "C0", "euclidean": "C1", "autodiff": "C3"}
    all_dims = sorted({p["dim"] for ps in points.values() for p in ps})
    grid = np.geomspace(min(all_dims), max(all_dims), 50)
    state = np.array([state_bytes(d, n_layers) for d in grid]) / 1e9
    ax_mem.plot(grid, state, "k--", lw=1, label="params + grads + Adam")
    ax_mem.fill_between(grid, state, TARGET_RATIO * state, color="0.85", label="target: ≤ 1.5×")
    if baseline_bytes:
        ax_mem.axhline(baseline_bytes / 1e9, color="0.5", ls=":", lw=1, label="Python + JAX runtime (baseline)")
    for method, ps in points.items():
        ok = [p for p in ps if p.get("status") == "ok"]
        if ok:
            ax_mem.plot(
                [p["dim"] for p in ok],
                [p["rss_process_peak_bytes"] / 1e9 for p in ok],
                "o-",
                color=colors[method],
                label=f"{method}: peak RSS",
            )
            ax_time.plot(
                [p["dim"] for p in ok], [p["min_step_s"] for p in ok], "o-", color=colors[method], label=method
            )
        planned = [p for p in ps if p.get("xla_memory") and p.get("status") != "ok"]
        if planned:
            ax_mem.plot(
                [p["dim"] for p in planned],
                [p["xla_memory"]["total_bytes"] / 1e9 for p in planned],
                "x",
                color=colors[method],
                ms=8,
                label=f"{method}: XLA plan, not run",
            )
    ax_mem.set(
        xscale="log",
        yscale="log",
        xlabel="D",
        ylabel="GB",
        title="Peak memory of a training step (float32, L=2, B=100, Adam)",
    )
    ax_time.set(xscale="log", yscale="log", xlabel="D", ylabel="seconds per step", title="Time of a training step")
    ax_mem.legend(fontsize=7)
    ax_time.legend(fontsize=8)
    for ax in (ax_mem, ax_time):
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def summary(points, baseline, log):
    log("")
    log(
        f"{'method':9s} {'D':>6s} {'step ms':>10s} {'peak RSS GB':>12s} {'XLA plan GB':>12s} "
        f"{'P+G+Adam GB':>12s} {'ratio':>6s} {'(peak-base)/PGA':>16s}"
    )
    for method, ps in points.items():
        for p in ps:
            plan = (p.get("xla_memory") or {}).get("total_bytes")
            plan_s = f"{plan / 1e9:12.3f}" if plan else f"{'-':>12s}"
            if p.get("status") == "ok":
                log(
                    f"{method:9s} {p['dim']:6d} {p['min_step_s'] * 1e3:10.1f} "
                    f"{p['rss_process_peak_bytes'] / 1e9:12.3f} {plan_s} "
                    f"{p['state_bytes'] / 1e9:12.3f} {p['peak_over_state']:6.2f} "
                    f"{p['peak_above_baseline_over_state']:16.2f}"
                )
            else:
                log(
                    f"{method:9s} {p['dim']:6d} {'-':>10s} {'-':>12s} {plan_s} "
                    f"{p['state_bytes'] / 1e9:12.3f}  {p.get('status')}"
                )
    log(f"baseline process (python + jax + nica): {(baseline.get('rss_baseline_bytes') or 0) / 1e9:.3f} GB")


def main(argv=None):
    parser = _harness.parser(__doc__, "small dimensions, < 1 minute", "OUT/benchmarks/results/memory[_quick].json")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--n-layers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per point")
    parser.add_argument("--memory-limit-gb", type=float, default=None)
    parser.add_argument(
        "--max-step-seconds",
        type=float,
        default=120.0,
        help="skip euclidean/autodiff points predicted slower than this",
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=_harness.REPO_ROOT,
        help="root of the outputs: JSON under OUT/benchmarks/results, PNG under OUT/docs/images",
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        kind, rest = args.child[0], args.child[1:]
        if kind == "baseline":
            result = baseline_child(int(rest[1]), int(rest[2]))
        elif kind == "plan":
            result = plan_child(rest[0], int(rest[1]), int(rest[2]), int(rest[3]))
        else:
            result = run_child(rest[0], int(rest[1]), int(rest[2]), int(rest[3]), int(rest[4]), float(rest[5]))
        print(json.dumps(result))
        return

    available = _mem_available_bytes() or 16e9
    limit = args.memory_limit_gb * 1e9 if args.memory_limit_gb else min(20e9, 0.85 * available)
    settings = {
        "dims": QUICK_DIMS if args.quick else FULL_DIMS,
        "batch": args.batch,
        "n_layers": args.n_layers,
        "steps": 2 if args.quick else args.steps,
        "memory_limit_bytes": limit,
        "max_step_s": args.max_step_seconds,
        "timeout_s": 900,
    }
    json_path = _harness.output_path(args, args.out_dir / "benchmarks" / "results", "memory")
    png_path = args.out_dir / "docs" / "images" / f"memory{'_quick' if args.quick else ''}.png"
    log = _harness.log

    start = time.perf_counter()
    log(
        f"memory benchmark: float32, L={args.n_layers}, B={args.batch}, Adam, donated state; "
        f"memory limit {limit / 1e9:.1f} GB"
    )
    baseline, points = run(settings, log)
    wall = time.perf_counter() - start
    summary(points, baseline, log)
    log(f"wall time {wall:.0f} s")

    record = {
        "description": __doc__.splitlines()[0],
        "settings": {k: v for k, v in settings.items() if k != "dims"},
        "dims": settings["dims"],
        "activation": ACTIVATION,
        "prior": PRIOR,
        "optimizer": f"optax.adam({LEARNING_RATE})",
        "mem_available_at_start_bytes": available,
        "baseline": baseline,
        "points": points,
        "wall_time_s": wall,
        "measures": {
            "rss_process_peak_bytes": "getrusage(RUSAGE_SELF).ru_maxrss of the child over its "
            "whole life: Python, JAX, state creation, compilation, steps.",
            "rss_step_peak_bytes": "VmHWM after resetting the mark just before the steps.",
            "rss_step_above_baseline_bytes": "rss_step_peak_bytes minus the baseline child's RSS.",
            "xla_memory": "Compiled.memory_analysis() of the donated step: argument + output + "
            "temp − alias bytes is what XLA plans to hold at once.",
            "state_bytes": "parameters + gradients + Adam mu + Adam nu: 4·L·(D² + D)·4 bytes.",
        },
    }
    record["checks"] = _harness.report_targets(TARGETS, record)
    # the machine is described now, after the children (the parent imports JAX only here)
    _harness.write_result(json_path, record, benchmark="memory", argv=argv)
    plot(points, png_path, args.n_layers, baseline.get("rss_baseline_bytes"))
    log(f"wrote {json_path} and {png_path}")


# ---------------------------------------------------------------------------------------------
# the page's table (docs/benchmarks.md)


def _gb(n_bytes):
    return f"{n_bytes / 1e9:.3f} GB" if n_bytes < 1e8 else f"{n_bytes / 1e9:.2f} GB"


def _peak(point):
    """A method's peak RSS at one D, or why it was not run; empty where it was not planned."""
    if point is None:
        return ""
    if point.get("status") != "ok":
        return "not run: " + point["status"].removeprefix("skipped: ")
    return _gb(point["rss_process_peak_bytes"])


def tables(load):
    """Step time and peak memory at every D of the relative gradient, with the baselines'."""
    result = load("memory")
    points = {method: {p["dim"]: p for p in ps} for method, ps in result["points"].items()}
    rows = []
    for dim, point in points["relative"].items():
        step = point["min_step_s"]
        rows.append(
            [
                f"{dim:,}",
                f"{1e3 * step:.1f} ms" if step < 1 else f"{step:.1f} s",
                _gb(point["rss_process_peak_bytes"]),
                _gb(point["xla_memory"]["total_bytes"]),
                _gb(point["state_bytes"]),
                _peak(points["euclidean"].get(dim)),
                _peak(points["autodiff"].get(dim)),
            ]
        )
    header = [
        "D",
        "relative: step (min)",
        "relative: peak RSS",
        "XLA's plan",
        "params + grads + Adam",
        "euclidean: peak RSS",
        "autodiff: peak RSS",
    ]
    return {"memory/steps": _harness.markdown_table(header, rows)}


if __name__ == "__main__":
    main()
