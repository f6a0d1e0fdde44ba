"""``NonlinearICA`` at D = 20,000: fit, stream and score on one 24 GB machine, with peak memory.

``benchmarks/memory.py`` measures the bare training step.  This script measures the estimator
around it, in one process, on float32 data of ``--dim`` features (default 20,000):

1. **data**: ``--n-samples`` training rows and ``--n-test`` held-out rows of Laplace sources
   with scales ``U(0.5, 3)`` mixed by a random orthogonal matrix (``nica.init_params``'s) and a
   leaky ReLU of slope 0.2; the training rows are also written to a ``.npy`` file that is then
   opened memory-mapped (``np.load(..., mmap_mode="r")``);
2. **fit**: ``NonlinearICA(n_layers=2, batch_size=100, learning_rate=1e-4, max_iter=--epochs)``
   with early stopping (10 % validation split, scored every epoch);
3. **partial_fit**: one more epoch streamed from the memory-mapped file, chunk by chunk;
4. **score_samples** on the held-out rows (in batches, one log-determinant for all of them).

Before each phase the kernel's peak-RSS mark is reset (``/proc/self/clear_refs``), so each phase
reports its own peak resident memory (``VmHWM``) besides its wall time; the largest of them is the
run's peak after start-up.  The reference is parameters + gradients + Adam state,
``4·L·(D² + D)`` float32 numbers (12.8 GB at ``D = 20,000``), and the machine's memory.  Nothing
is asserted; the script prints the numbers and whether the whole run stayed within
``--budget-gb`` (default 24 GB, the machine the issue names).

Commands (from the repository root)::

    python benchmarks/estimator_memory.py                 # D = 20,000: ~15 minutes on 2 cores, ~17 GB
    python benchmarks/estimator_memory.py --quick         # D = 1,000, under a minute

Outputs: ``benchmarks/results/estimator_memory[_quick].json`` (``--out``: elsewhere).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy loads, as in estimator.py

if __package__ in (None, ""):  # run as ``python benchmarks/estimator_memory.py``
    import _bootstrap  # noqa: F401

import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks import _harness  # noqa: E402
from benchmarks._common import proc_status_bytes, reset_peak_rss  # noqa: E402
from benchmarks._harness import Target  # noqa: E402
from benchmarks.memory import state_bytes  # noqa: E402

N_LAYERS = 2
GB = 1e9
TARGETS = (
    Target(
        "peak RSS over the run / --budget-gb",
        lambda result: result["results"]["peak_rss_gb"] / result["reference_gb"]["budget"],
        "<=",
        1.0,
    ),
)


def make_data(dim, n_samples, seed):
    import jax
    import jax.numpy as jnp

    import nica

    rng = np.random.default_rng(seed)
    scales = rng.uniform(0.5, 3.0, dim).astype(np.float32)
    ((W, _),) = nica.init_params(jax.random.key(seed), dim, 1, bias=False, dtype=jnp.float32)
    # W is an argument, not a closed-over constant (XLA would copy a 1.6 GB constant around)
    mix = jax.jit(lambda S, W: jax.nn.leaky_relu(S @ W.T, 0.2))
    S = (rng.laplace(size=(n_samples, dim)) * scales).astype(np.float32)
    return np.asarray(mix(S, W))


def phase(name, record, fn):
    """Run ``fn`` with a fresh peak-RSS mark; store its time and peak in ``record[name]``."""
    reset = reset_peak_rss()
    start = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - start
    record[name] = {
        "seconds": seconds,
        "peak_rss_gb": proc_status_bytes("VmHWM") / GB if reset else None,
        "rss_after_gb": proc_status_bytes("VmRSS") / GB,
    }
    print(f"{name:13s} {seconds:8.1f} s   peak RSS {record[name]['peak_rss_gb']:.2f} GB", flush=True)
    return out


def main(argv=None):
    parser = _harness.parser(
        __doc__, "D = 1,000, small data, under a minute", "OUT/benchmarks/results/estimator_memory[_quick].json"
    )
    parser.add_argument("--dim", type=int, default=None)
    parser.add_argument("--n-samples", type=int, default=1100, help="training rows (10 %% validation)")
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--chunk", type=int, default=500, help="rows per partial_fit call")
    parser.add_argument("--budget-gb", type=float, default=24.0)
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=_harness.REPO_ROOT,
        help="root of the outputs: the JSON under OUT/benchmarks/results",
    )
    args = parser.parse_args(argv)
    dim = args.dim or (1000 if args.quick else 20000)

    import nica

    machine = _harness.machine_info()
    record = {
        "settings": {
            "dim": dim,
            "n_layers": N_LAYERS,
            "n_samples": args.n_samples,
            "n_test": args.n_test,
            "epochs": args.epochs,
            "chunk": args.chunk,
            "batch_size": 100,
            "learning_rate": 1e-4,
            "dtype": "float32",
            "whiten": "standardize",
            "early_stopping": True,
        },
        "reference_gb": {
            "params_grads_adam": state_bytes(dim, N_LAYERS) / GB,
            "params": state_bytes(dim, N_LAYERS) / 4 / GB,
            "budget": args.budget_gb,
        },
        "phases": {},
    }
    phases = record["phases"]
    print(f"D = {dim}: parameters + gradients + Adam = {record['reference_gb']['params_grads_adam']:.2f} GB")

    data = phase("data", phases, lambda: make_data(dim, args.n_samples + args.n_test, 0))
    X_train, X_test = data[: args.n_samples], data[args.n_samples :]
    del data
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "X_train.npy"
        np.save(path, X_train)
        del X_train
        X_mm = np.load(path, mmap_mode="r")
        model = nica.NonlinearICA(
            n_layers=N_LAYERS,
            batch_size=100,
            learning_rate=1e-4,
            max_iter=args.epochs,
            early_stopping=True,
            random_state=0,
        )
        phase("fit", phases, lambda: model.fit(X_mm))

        def stream():
            for start in range(0, len(X_mm), args.chunk):
                model.partial_fit(X_mm[start : start + args.chunk])

        phase("partial_fit", phases, stream)
        ll = phase("score_samples", phases, lambda: model.score_samples(X_test))

    # The phases cover the whole run after start-up, so the largest phase peak is the run's peak
    # (getrusage's ru_maxrss is reset by the same clear_refs, so it cannot serve here).
    peak = max(p["peak_rss_gb"] or 0.0 for p in phases.values())
    record["results"] = {
        "n_iter": model.n_iter_,
        "loss_curve": model.loss_curve_,
        "validation_scores": model.validation_scores_,
        "held_out_mean_log_likelihood": float(np.mean(ll)),
        "all_scores_finite": bool(np.isfinite(ll).all()),
        "peak_rss_gb": peak,
        "peak_phase": max(phases, key=lambda k: phases[k]["peak_rss_gb"] or 0.0),
        "peak_over_params_grads_adam": peak / record["reference_gb"]["params_grads_adam"],
        "within_budget": peak <= args.budget_gb,
    }
    record["wall_seconds"] = sum(p["seconds"] for p in phases.values())
    r = record["results"]
    print(
        f"peak RSS {peak:.2f} GB ({r['peak_phase']}) = {r['peak_over_params_grads_adam']:.2f}× params+grads+Adam; "
        f"{'within' if r['within_budget'] else 'OVER'} the {args.budget_gb:g} GB budget; "
        f"held-out mean log-likelihood {r['held_out_mean_log_likelihood']:.2f} (finite: {r['all_scores_finite']})"
    )
    record["checks"] = _harness.report_targets(TARGETS, record)
    out = _harness.write_result(
        _harness.output_path(args, args.out_dir / "benchmarks" / "results", "estimator_memory"),
        record,
        benchmark="estimator_memory",
        argv=argv,
        machine=machine,
    )
    print(f"wrote {out}")


def tables(load):
    """None: the page quotes this run's numbers in its prose."""
    return {}


if __name__ == "__main__":
    main()
