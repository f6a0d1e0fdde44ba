"""One fit on one process against the same fit on two processes (jax.distributed, gloo).

For each size, a fresh interpreter fits ``NonlinearICA`` alone on every row (``parallel=None``,
one CPU device), and then two fresh interpreters, joined by :func:`nica.initialize_distributed`
on ``localhost``, fit the same model with ``parallel="data"``, each passing half of the rows:
the same global data, batches and epochs.  Protocol per child: float32 data (Laplace sources
mixed by a random rotation with scales in [0.5, 2], a fixed seed), ``n_layers=2``,
``batch_size`` as the size says, ``learning_rate=1e-3`` (the default rate when this was
written, 1e-2 at every D, diverged at D = 256 in float32), a first fit of one epoch (compilation,
reported apart), then the timed fit of ``--epochs`` epochs (``tol=0``, no early stop; the
compiled programs are reused).  Each process reports its wall
time; the job's time is the slower process's.

What the two-process time is made of: each training step of a data-parallel fit computes its
half of the batch and then sums the gradient over the processes with one all-reduce (every
gradient packed into one buffer).  Each process of the two-process job also times that
all-reduce alone, as many times as the fit ran steps, on a buffer of the same size (a ``lax.scan``
of ``psum``\\s under ``shard_map``): the collectives' share of the fit.  The rest is compute
(and the per-epoch validation, the same work in both processes).  Also reported: the largest
difference between the parameters fitted by the job and alone (float32, different orders of
the sums) and whether both processes hold the same parameters bit for bit.

Command lines (from the repository root)::

    python benchmarks/distributed.py --quick   # D = 16 and 64, about two minutes on 2 cores
    python benchmarks/distributed.py           # D = 16, 64 and 256, about five minutes

Outputs (``--quick`` adds ``_quick``; ``--out`` puts the JSON elsewhere)::

    benchmarks/results/distributed.json
    docs/images/distributed.png
"""

from __future__ import annotations

if __package__ in (None, ""):  # run as ``python benchmarks/distributed.py``
    import _bootstrap  # noqa: F401

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import _harness
from benchmarks._harness import Target

# (n_features, batch_size, n_rows)
FULL = {"sizes": ((16, 256, 40_000), (64, 512, 40_000), (256, 1024, 40_000), (256, 8192, 160_000)), "epochs": 10}
QUICK = {"sizes": ((16, 256, 20_000), (64, 512, 20_000)), "epochs": 5}
N_LAYERS = 2
# not the default: the default rate when the results were measured, 1e-2 at every D, diverged
# in its first epoch at D = 256 in float32, alone as on two processes (now 1e-2*sqrt(64/D))
LEARNING_RATE = 1e-3
RATIO = 1.3  # two processes no slower than 1.3x one


def _ratios(result):
    return {f"D = {p['n_features']}, B = {p['batch_size']}": p.get("ratio") for p in result["points"]}


TARGETS = (Target(f"2-process fit time / 1-process fit time (<= {RATIO})", _ratios, "<=", RATIO),)


def child(process_id, n_processes, port, n_features, batch_size, n_rows, epochs):
    """One process of a size's run; one JSON line on stdout."""
    import jax
    import numpy as np

    import nica

    if n_processes > 1:
        nica.initialize_distributed(f"localhost:{port}", n_processes, process_id, initialization_timeout=120)
    rng = np.random.default_rng(0)
    S = rng.laplace(size=(n_rows, n_features)).astype(np.float32)
    # a well-conditioned mixing (a random rotation, scales in [0.5, 2]), so that every size
    # trains stably in float32 and the two runs can be compared epoch for epoch
    Q = np.linalg.qr(rng.normal(size=(n_features, n_features)))[0]
    X = S @ (Q * rng.uniform(0.5, 2.0, size=n_features)).astype(np.float32)
    own = np.array_split(X, n_processes)[process_id]
    model = nica.NonlinearICA(
        n_layers=N_LAYERS,
        batch_size=batch_size,
        learning_rate=LEARNING_RATE,
        random_state=0,
        tol=0.0,
        n_iter_no_change=10**6,
        parallel="data" if n_processes > 1 else None,
    )
    start = time.perf_counter()
    model.set_params(max_iter=1).fit(own)
    first = time.perf_counter() - start
    start = time.perf_counter()
    model.set_params(max_iter=epochs).fit(own)
    fit = time.perf_counter() - start
    leaves = [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(model.network_params_)]
    record = {"first_fit_s": first, "fit_s": fit, "n_iter": model.n_iter_, "params": [a.tolist() for a in leaves]}
    if n_processes > 1:
        record["allreduce_s"] = _allreduce_seconds(model, n_rows, batch_size, epochs, sum(a.size for a in leaves))
        record["compute_s"] = _compute_seconds(model, own, n_features, batch_size // n_processes, epochs)
    print(json.dumps(record))


def _compute_seconds(model, own, n_features, batch_size, epochs):
    """This process's share of the fit's arithmetic alone: the training epochs on its own rows
    (the validation split's share left out) in batches of its share of a step, with the model's
    activation, prior and gradient form, on its own device, without any collective (both
    processes run it at the same time, as in the fit)."""
    import jax
    import numpy as np
    import optax

    import nica

    optimizer = optax.adam(LEARNING_RATE)
    epoch = nica.make_epoch(optimizer, model.activation_, model.prior_, model.gradient_, batch_size)
    X = jax.numpy.asarray(own[: len(own) - -(-len(own) // 10)])
    params = nica.init_params(jax.random.key(0), n_features, N_LAYERS, dtype=np.float32)
    prior_params = model.prior_.init_params(jax.random.key(1), n_features, np.float32)
    state = nica.init_train_state(optimizer, params, prior_params)
    state, _ = jax.block_until_ready(epoch(state, X, None, jax.random.key(0)))
    start = time.perf_counter()
    for i in range(epochs):
        state, _ = jax.block_until_ready(epoch(state, X, None, jax.random.key(i + 1)))
    return time.perf_counter() - start


def _allreduce_seconds(model, n_rows, batch_size, epochs, n_params):
    """The fit's all-reduces alone: one per step, on a buffer of the gradient's size (the
    network's parameters, the prior's and the loss), timed after a first compiled run."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import PartitionSpec

    import nica

    mesh = nica.make_mesh("data")
    n_prior = sum(np.size(a) for a in jax.tree_util.tree_leaves(model.prior_params_))
    size = n_params + n_prior + 1
    n_train = n_rows - -(-n_rows // 10)  # the rows the validation split leaves
    steps = epochs * (n_train // batch_size)

    def local(x):
        def body(carry, _):
            return jax.lax.pcast(jax.lax.psum(carry, "data") * 0.5, "data", to="varying"), None

        return jax.lax.scan(body, x, None, length=steps)[0]

    run = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=PartitionSpec("data"), out_specs=PartitionSpec("data")))
    x = jax.device_put(
        jnp.ones((mesh.size, size), jnp.float32), jax.sharding.NamedSharding(mesh, PartitionSpec("data"))
    )
    jax.block_until_ready(run(x))
    start = time.perf_counter()
    jax.block_until_ready(run(x))
    return time.perf_counter() - start


def _free_port():
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def run_size(size, epochs, timeout_s=1200):
    """The one-process and the two-process run of one size."""
    n_features, batch_size, n_rows = size
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)  # one CPU device per process

    def start(process_id, n_processes, port):
        command = [sys.executable, str(Path(__file__).resolve()), "--child", str(process_id), str(n_processes)]
        command += [str(port), str(n_features), str(batch_size), str(n_rows), str(epochs)]
        # output to files, not pipes: a process blocked on a full pipe would hold the other
        # processes of its job at their exit (JAX's shutdown waits for every process)
        stdout, stderr = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
        return subprocess.Popen(command, env=env, stdout=stdout, stderr=stderr, text=True), stdout, stderr

    def results(procs):
        out = []
        for proc, stdout, stderr in procs:
            proc.wait(timeout=timeout_s)
            stdout.seek(0)
            stderr.seek(0)
            if proc.returncode != 0:
                return {"error": f"exit status {proc.returncode}: {stderr.read().strip()[-600:]}"}
            out.append(json.loads(stdout.read().strip().splitlines()[-1]))
        return out

    alone = results([start(0, 1, 0)])
    port = _free_port()
    job = results([start(i, 2, port) for i in range(2)])
    point = {"n_features": n_features, "batch_size": batch_size, "n_rows": n_rows, "epochs": epochs}
    if isinstance(alone, dict) or isinstance(job, dict):
        return {**point, "error": (alone if isinstance(alone, dict) else job)["error"]}
    import numpy as np

    same = all(np.array_equal(a, b) for a, b in zip(job[0]["params"], job[1]["params"]))
    diff = max(
        float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(alone[0]["params"], job[0]["params"])
    )
    fit_2 = max(p["fit_s"] for p in job)
    allreduce = max(p["allreduce_s"] for p in job)
    compute = max(p["compute_s"] for p in job)
    return {
        **point,
        "one_process_fit_s": alone[0]["fit_s"],
        "one_process_first_fit_s": alone[0]["first_fit_s"],
        "two_process_fit_s": fit_2,
        "two_process_first_fit_s": max(p["first_fit_s"] for p in job),
        "two_process_allreduce_s": allreduce,
        "two_process_compute_s": compute,
        "two_process_rest_s": fit_2 - compute,
        "ratio": fit_2 / alone[0]["fit_s"],
        "epochs_run": [alone[0]["n_iter"], job[0]["n_iter"], job[1]["n_iter"]],
        "same_params_in_both_processes": same,
        "max_abs_param_diff_vs_one_process": diff,
    }


def plot(points, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [p for p in points if "error" not in p]
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    labels = [f"D = {p['n_features']}\nB = {p['batch_size']}" for p in points]
    x = range(len(points))
    ax.bar([i - 0.2 for i in x], [p["one_process_fit_s"] for p in points], 0.4, label="one process (one device)")
    ax.bar(
        [i + 0.2 for i in x],
        [p["two_process_compute_s"] for p in points],
        0.4,
        label="two processes: their steps alone",
    )
    ax.bar(
        [i + 0.2 for i in x],
        [p["two_process_rest_s"] for p in points],
        0.4,
        bottom=[p["two_process_compute_s"] for p in points],
        label="two processes: the rest (all-reduces, waits, validation)",
    )
    ax.set(xticks=list(x), xticklabels=labels, ylabel="fit time (s)")
    epochs = points[0]["epochs"] if points else 0
    ax.set_title(
        f"NonlinearICA(n_layers={N_LAYERS}, learning_rate={LEARNING_RATE:g}), {epochs} epochs, float32, CPU", fontsize=9
    )
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = _harness.parser(__doc__, "D = 16 and 64 on 20,000 rows", "benchmarks/results/distributed[_quick].json")
    parser.add_argument("--child", nargs=7, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return
    settings = QUICK if args.quick else FULL
    machine = _harness.machine_info()
    start = time.perf_counter()
    points = []
    for size in settings["sizes"]:
        point = run_size(size, settings["epochs"])
        points.append(point)
        if "error" in point:
            _harness.log(f"D={size[0]} B={size[1]}: error: {point['error']}")
            continue
        _harness.log(
            f"D={point['n_features']:4d} B={point['batch_size']:5d} {point['n_rows']} rows: one process "
            f"{point['one_process_fit_s']:.2f} s, two {point['two_process_fit_s']:.2f} s "
            f"(steps alone {point['two_process_compute_s']:.2f} s, all-reduces alone "
            f"{point['two_process_allreduce_s']:.2f} s) = {point['ratio']:.2f}x; "
            f"same parameters in both: {point['same_params_in_both_processes']}, "
            f"max |diff| vs one process {point['max_abs_param_diff_vs_one_process']:.1e}"
        )
    record = {
        "description": __doc__.splitlines()[0],
        "n_layers": N_LAYERS,
        "settings": settings,
        "points": points,
        "wall_time_s": time.perf_counter() - start,
    }
    record["checks"] = _harness.report_targets(TARGETS, record)
    json_path = _harness.output_path(args, _harness.RESULTS, "distributed")
    png_path = _harness.IMAGES / f"distributed{'_quick' if args.quick else ''}.png"
    _harness.write_result(json_path, record, benchmark="distributed", argv=argv, machine=machine)
    plot(points, png_path)
    _harness.log(f"wrote {json_path} and {png_path}")


def tables(load):
    """Fit time alone and on two processes, with the all-reduces' share."""
    result = load("distributed")
    rows = [
        [
            f"{p['n_features']}",
            f"{p['batch_size']}",
            f"{p['n_rows']:,}",
            f"{p['one_process_fit_s']:.2f} s",
            f"{p['two_process_fit_s']:.2f} s",
            f"{p['two_process_compute_s']:.2f} s",
            f"{p['two_process_allreduce_s']:.2f} s",
            f"{p['ratio']:.2f}×",
            f"{p['max_abs_param_diff_vs_one_process']:.0e}",
        ]
        for p in result["points"]
        if "error" not in p
    ]
    header = ["D", "batch", "rows", "1 process", "2 processes", "their steps alone", "all-reduces alone", "ratio"]
    header.append("largest Δ params")
    return {"distributed/times": _harness.markdown_table(header, rows)}


if __name__ == "__main__":
    main()
