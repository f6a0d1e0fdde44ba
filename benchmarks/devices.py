"""Training throughput on 1, 2 and 4 devices, data parallel and model parallel.

Each device count runs in a fresh interpreter (``--child``).  On a machine without
accelerators the devices are forced CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=N``): they are N XLA devices that share the
same CPU cores, so no speed-up is expected; the run shows that the sharded program runs and what
its partitioning costs.  With ``--platform gpu`` (or ``tpu``) the child uses the first N real
devices of that platform instead, where the throughput does scale.

Protocol per point: float32, ``L = 2``, ``smooth_leaky_relu``, ``laplace``, Adam; a training
set of ``n_batches × B`` standard-normal rows (``B = 256``, divisible by every device count) is
placed replicated on the mesh; :func:`nica.make_epoch` with the mesh runs one
untimed epoch (compilation and warm-up), then ``--epochs`` timed epochs, each synchronised with
``block_until_ready``.  Throughput = rows per second of the fastest epoch.  The child also
reports the largest difference between its parameters after the run and those of the same run
on one device without a mesh, and the relative difference of the last epoch's mean loss.  In
float32 these are not zero: the devices sum the batch in a different order, and Adam divides
each gradient entry by its own running scale, so an entry that is zero up to rounding (the
Laplace prior's score is ``±√2``, and its sums over a batch often cancel) gets an update of
the order of the learning rate on either side.  In float64 the estimators' four-device fits
match the one-device fits to about 1e-15 (``tests/test_sharding.py``).

Command lines (from the repository root)::

    python benchmarks/devices.py --quick          # D = 256, under a minute
    python benchmarks/devices.py                  # D = 512 and 2048, a few minutes on 2 cores
    python benchmarks/devices.py --platform gpu   # real devices, where there are several

Outputs (``--quick`` adds ``_quick``; ``--out`` puts the JSON elsewhere)::

    benchmarks/results/devices.json
    docs/images/devices.png
"""

from __future__ import annotations

if __package__ in (None, ""):  # run as ``python benchmarks/devices.py``
    import _bootstrap  # noqa: F401

import argparse
import json
import os
import sys
import time
from pathlib import Path

from benchmarks import _harness
from benchmarks._common import run_json_child

DEVICE_COUNTS = (1, 2, 4)
MODES = ("data", "model")
FULL = {"dims": (512, 2048), "n_batches": 8, "epochs": 3}
QUICK = {"dims": (256,), "n_batches": 8, "epochs": 2}
BATCH = 256
N_LAYERS = 2
# none: forced CPU devices share the same cores (no speed-up expected), and no target was set
# for real devices
TARGETS = ()


def child(n_devices, dims, n_batches, epochs, platform_name):
    """Throughput of every (mode, D) on ``n_devices`` devices; one JSON line on stdout."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from jax.sharding import NamedSharding, PartitionSpec

    import nica

    devices = jax.devices(platform_name)[:n_devices]
    if len(devices) < n_devices:
        raise SystemExit(f"asked for {n_devices} {platform_name} devices, found {len(devices)}")
    optimizer = optax.adam(1e-3)
    activation = nica.activations.get("smooth_leaky_relu")
    prior = nica.priors.get("laplace")
    results = []
    for dim in dims:
        X_host = np.random.default_rng(0).standard_normal((n_batches * BATCH, dim), np.float32)

        def fresh_state():
            params = tuple(
                nica.Layer(
                    jnp.asarray(
                        np.random.default_rng(k).standard_normal((dim, dim), np.float32) * np.float32(dim**-0.5)
                    ),
                    jnp.zeros((dim,), jnp.float32),
                )
                for k in range(N_LAYERS)
            )
            return nica.init_train_state(optimizer, params)

        def train(mesh):
            epoch = nica.make_epoch(optimizer, activation, prior, "relative", BATCH, mesh)
            state = fresh_state()
            if mesh is None:
                state = jax.device_put(state, devices[0])
                X = jax.device_put(X_host, devices[0])
            else:
                state = nica.shard_params(state, mesh)
                X = jax.device_put(X_host, NamedSharding(mesh, PartitionSpec()))
            key = jax.random.key(0)
            start = time.perf_counter()
            state, loss = jax.block_until_ready(epoch(state, X, None, key))  # compiles
            first = time.perf_counter() - start
            times = []
            for i in range(epochs):
                start = time.perf_counter()
                state, loss = jax.block_until_ready(epoch(state, X, None, jax.random.key(i + 1)))
                times.append(time.perf_counter() - start)
            return state, float(loss), first, times

        reference, reference_loss, _, _ = train(None) if n_devices > 1 else (None,) * 4
        for mode in MODES:
            mesh = nica.make_mesh(mode, devices)
            state, loss, first, times = train(mesh)
            record = {
                "mode": mode,
                "dim": dim,
                "n_devices": n_devices,
                "first_epoch_s": first,
                "epoch_times_s": times,
                "rows_per_epoch": n_batches * BATCH,
                "samples_per_s": n_batches * BATCH / min(times),
                "steps_per_s": n_batches / min(times),
                "final_epoch_loss": loss,
                "per_device_state_bytes": sum(
                    shard.data.nbytes
                    for leaf in jax.tree_util.tree_leaves(state)
                    for shard in leaf.addressable_shards
                    if shard.device == devices[0]
                ),
            }
            if reference is not None:
                record["loss_rel_diff_vs_one_device"] = abs(loss - reference_loss) / abs(reference_loss)
                record["max_abs_diff_vs_one_device"] = max(
                    float(jnp.max(jnp.abs(np.asarray(a) - np.asarray(b))))
                    for a, b in zip(
                        jax.tree_util.tree_leaves(reference.params), jax.tree_util.tree_leaves(state.params)
                    )
                )
            results.append(record)
    return {"n_devices": n_devices, "devices": [str(d) for d in devices], "points": results}


def run_child(n_devices, settings, platform_name, timeout_s=1200):
    env = dict(os.environ)
    if platform_name == "cpu":
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={n_devices}").strip()
        env["JAX_PLATFORMS"] = "cpu"
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        str(n_devices),
        "--platform",
        platform_name,
        "--dims",
        *map(str, settings["dims"]),
        "--n-batches",
        str(settings["n_batches"]),
        "--epochs",
        str(settings["epochs"]),
    ]
    result = run_json_child(command, timeout_s, stderr_chars=600, env=env)
    return {"n_devices": n_devices, **result} if "error" in result else result


def plot(runs, path, platform_name):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [p for run in runs for p in run.get("points", [])]
    dims = sorted({p["dim"] for p in points})
    fig, axes = plt.subplots(1, len(dims), figsize=(5 * len(dims), 3.8), squeeze=False)
    for ax, dim in zip(axes[0], dims):
        for mode, marker in zip(MODES, "os"):
            ps = sorted((p for p in points if p["dim"] == dim and p["mode"] == mode), key=lambda p: p["n_devices"])
            ax.plot(
                [p["n_devices"] for p in ps], [p["samples_per_s"] for p in ps], marker + "-", label=f"{mode} parallel"
            )
        one = [p["samples_per_s"] for p in points if p["dim"] == dim and p["n_devices"] == 1]
        if one:
            ax.plot(DEVICE_COUNTS, [max(one) * n for n in DEVICE_COUNTS], "k:", lw=1, label="linear scaling")
        ax.set(
            xlabel="devices",
            ylabel="training rows / s",
            xticks=DEVICE_COUNTS,
            title=f"D = {dim}, B = {BATCH}, L = {N_LAYERS} ({platform_name})",
        )
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    if platform_name == "cpu":
        fig.suptitle("forced CPU devices sharing the same cores: no speed-up expected", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = _harness.parser(__doc__, "D = 256, under a minute", "OUT/benchmarks/results/devices[_quick].json")
    parser.add_argument("--platform", default="cpu", choices=("cpu", "gpu", "tpu"))
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=_harness.REPO_ROOT,
        help="root of the outputs: JSON under OUT/benchmarks/results, PNG under OUT/docs/images",
    )
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dims", type=int, nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--n-batches", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        print(json.dumps(child(args.child, args.dims, args.n_batches, args.epochs, args.platform)))
        return

    settings = QUICK if args.quick else FULL
    start = time.perf_counter()
    runs = []
    for n_devices in DEVICE_COUNTS:
        run = run_child(n_devices, settings, args.platform)
        runs.append(run)
        if "error" in run:
            print(f"{n_devices} device(s): error: {run['error']}", flush=True)
            continue
        for p in run["points"]:
            diff = p.get("max_abs_diff_vs_one_device")
            diff_s = (
                ""
                if diff is None
                else f", vs 1 device: max |Δparams| {diff:.1e}, loss rel. diff {p['loss_rel_diff_vs_one_device']:.1e}"
            )
            print(
                f"{n_devices} device(s) {p['mode']:5s} D={p['dim']:5d}: "
                f"{p['samples_per_s']:9.0f} rows/s ({p['steps_per_s']:.2f} steps/s, "
                f"first epoch {p['first_epoch_s']:.2f} s incl. compile, state on device 0 "
                f"{p['per_device_state_bytes'] / 1e6:.1f} MB{diff_s})",
                flush=True,
            )
    wall = time.perf_counter() - start

    print("")
    print(f"{'mode':6s} {'D':>5s} " + " ".join(f"{n:>2d} dev rows/s" for n in DEVICE_COUNTS) + "   speed-up 4 vs 1")
    points = [p for run in runs for p in run.get("points", [])]
    for mode in MODES:
        for dim in settings["dims"]:
            rates = {p["n_devices"]: p["samples_per_s"] for p in points if p["mode"] == mode and p["dim"] == dim}
            cells = " ".join(f"{rates[n]:13.0f}" if n in rates else f"{'-':>13s}" for n in DEVICE_COUNTS)
            speedup = rates[4] / rates[1] if 1 in rates and 4 in rates else float("nan")
            print(f"{mode:6s} {dim:5d} {cells}   {speedup:.2f}x")
    print(f"wall time {wall:.0f} s")
    if args.platform == "cpu":
        print(f"note: forced CPU devices share this machine's {os.cpu_count()} cores; no speed-up is expected here.")

    json_path = _harness.output_path(args, args.out_dir / "benchmarks" / "results", "devices")
    png_path = args.out_dir / "docs" / "images" / f"devices{'_quick' if args.quick else ''}.png"
    record = {
        "description": __doc__.splitlines()[0],
        "platform": args.platform,
        "forced_cpu_devices": args.platform == "cpu",
        "batch": BATCH,
        "n_layers": N_LAYERS,
        "settings": settings,
        "runs": runs,
        "wall_time_s": wall,
    }
    # the machine is described now, after the children (the parent imports JAX only here)
    _harness.write_result(json_path, record, benchmark="devices", argv=argv)
    plot(runs, png_path, args.platform)
    print(f"wrote {json_path} and {png_path}")


# ---------------------------------------------------------------------------------------------
# the page's table (docs/benchmarks.md)


def tables(load):
    """Throughput per device count and mode at the full run's two sizes, and the state per
    device at the larger."""
    result = load("devices")
    small, large = result["settings"]["dims"]
    points = {(p["n_devices"], p["mode"], p["dim"]): p for run in result["runs"] for p in run.get("points", [])}
    rows = [
        [
            str(n),
            mode,
            f"{points[n, mode, small]['samples_per_s']:,.0f}",
            f"{points[n, mode, large]['samples_per_s']:,.0f}",
            f"{points[n, mode, large]['per_device_state_bytes'] / 1e6:.0f} MB",
        ]
        for n in DEVICE_COUNTS
        for mode in MODES
    ]
    header = [
        "devices",
        "mode",
        f"D = {small} (samples/s)",
        f"D = {large} (samples/s)",
        f"state per device at D = {large}",
    ]
    return {"devices/throughput": _harness.markdown_table(header, rows)}


if __name__ == "__main__":
    main()
