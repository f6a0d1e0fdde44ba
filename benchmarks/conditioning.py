"""Why Adam on the relative gradient loses to the euclidean one at D = 64: progress per epoch and cond(W).

``benchmarks/estimator.py`` found that at D = 64 the relative fit with Adam stops well below the
euclidean fit's held-out log-likelihood.  This script looks at progress *per epoch* (so CPU
contention does not matter) on the same data (``estimator.make_data(64, 10,000, seed 0)``, the
segment-modulated benchmark recipe with one segment, float32), for a grid of optimizers,
learning rates and pre-processing, every run for a fixed number of epochs (no early stopping, same initialisation):

* the held-out (10 % validation split) log-likelihood every 50 epochs and its best value;
* the condition number of each fitted ``W_k``.

The relative direction is the euclidean one multiplied by ``W̄ᵀW̄`` (docs/theory.rst), a positive
definite metric: it cannot stop anywhere the euclidean gradient would not.  The first runs hand
it to Adam as if it were a gradient (``gradient="relative"``); the last runs hand Adam the same
direction in the group's coordinates (``gradient="equivariant"``: ``H̄ = [G, g] W̄ᵀ``, update
applied as ``Ū W̄``), which separates the direction from where Adam keeps its per-coordinate
statistics.  Nothing is asserted; the script prints a table (read in ``docs/benchmarks.md``).

Command (from the repository root; about 150 s on 2 cores)::

    OPENBLAS_NUM_THREADS=1 python benchmarks/conditioning.py
    OPENBLAS_NUM_THREADS=1 python benchmarks/conditioning.py --quick   # 20 epochs: about 30 s

Output: ``benchmarks/results/conditioning[_quick].json`` (``--out``: elsewhere).
"""

from __future__ import annotations

if __package__ in (None, ""):  # run as ``python benchmarks/conditioning.py``
    import _bootstrap  # noqa: F401

import time
import warnings
from pathlib import Path

import numpy as np

from benchmarks import _harness
from benchmarks import estimator as estimator_benchmark  # the same data (and threads) as estimator.py

# (name, gradient, optimizer name or (optax factory name, kwargs), learning rate, whiten)
RUNS = [
    ("relative adam 1e-3", "relative", "adam", 1e-3, "standardize"),
    ("euclidean adam 1e-3", "euclidean", "adam", 1e-3, "standardize"),
    ("relative adam 3e-3", "relative", "adam", 3e-3, "standardize"),
    ("euclidean adam 3e-3", "euclidean", "adam", 3e-3, "standardize"),
    ("relative adam 1e-2", "relative", "adam", 1e-2, "standardize"),
    ("euclidean adam 1e-2", "euclidean", "adam", 1e-2, "standardize"),
    ("relative adam 3e-3 unit-variance", "relative", "adam", 3e-3, "unit-variance"),
    ("euclidean adam 3e-3 unit-variance", "euclidean", "adam", 3e-3, "unit-variance"),
    ("relative sgd+momentum 1e-3", "relative", "momentum", 1e-3, "standardize"),
    ("euclidean sgd+momentum 1e-2", "euclidean", "momentum", 1e-2, "standardize"),
    # the same direction with Adam's statistics in the group's coordinates (nica.transport)
    ("equivariant adam 1e-3", "equivariant", "adam", 1e-3, "standardize"),
    ("equivariant adam 3e-3", "equivariant", "adam", 3e-3, "standardize"),
    ("equivariant adam 1e-2", "equivariant", "adam", 1e-2, "standardize"),
    ("equivariant adam 3e-3 unit-variance", "equivariant", "adam", 3e-3, "unit-variance"),
]
TARGETS = ()  # a diagnosis, with nothing to pass or miss


def main(argv=None):
    parser = _harness.parser(
        __doc__, "20 epochs a run unless --epochs is given", "OUT/benchmarks/results/conditioning[_quick].json"
    )
    parser.add_argument("--epochs", type=int, default=None, help="epochs of every run (default 300, quick 20)")
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=_harness.REPO_ROOT,
        help="root of the outputs: the JSON under OUT/benchmarks/results",
    )
    args = parser.parse_args(argv)
    epochs = args.epochs or (20 if args.quick else 300)

    import optax

    import nica

    data = estimator_benchmark.make_data(64, 10000, 0)
    X = data["X_train"]
    record = {
        "settings": {
            "dim": 64,
            "n_samples": 10000,
            "epochs": epochs,
            "n_layers": 2,
            "batch_size": 256,
            "seed": 0,
            "dtype": "float32",
        },
        "runs": [],
    }
    machine = _harness.machine_info()
    print(f"{'run':36s} {'best held-out ll':>16s}  {'cond(W_1)':>9s} {'cond(W_2)':>9s}  every 50 epochs")
    for name, gradient, opt, lr, whiten in RUNS:
        optimizer = optax.sgd(lr, momentum=0.9) if opt == "momentum" else opt
        model = nica.NonlinearICA(
            n_layers=2,
            gradient=gradient,
            optimizer=optimizer,
            learning_rate=lr,
            whiten=whiten,
            batch_size=256,
            max_iter=epochs,
            n_iter_no_change=epochs + 1,
            random_state=0,
        )
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(X)
        seconds = time.perf_counter() - start
        scores = [float(v) for v in model.validation_scores_]
        conds = [float(np.linalg.cond(layer.W)) for layer in model.network_params_]
        run = {
            "name": name,
            "gradient": gradient,
            "optimizer": opt,
            "learning_rate": lr,
            "whiten": whiten,
            "epochs": model.n_iter_,
            "best_validation_score": max(scores),
            "best_epoch": model.best_iter_,
            "validation_scores": scores,
            "condition_numbers": conds,
            "fit_seconds": seconds,
        }
        record["runs"].append(run)
        every = " ".join(f"{scores[i]:.1f}" for i in range(49, len(scores), 50))
        print(f"{name:36s} {max(scores):16.2f}  {conds[0]:9.1f} {conds[1]:9.1f}  {every}", flush=True)
    out = _harness.write_result(
        _harness.output_path(args, args.out_dir / "benchmarks" / "results", "conditioning"),
        record,
        benchmark="conditioning",
        argv=argv,
        machine=machine,
    )
    print(f"wrote {out}")


# ---------------------------------------------------------------------------------------------
# the page's table (docs/benchmarks.md)

_OPTIMIZER_NAMES = {"adam": "Adam", "momentum": "SGD + momentum 0.9"}
_NOTES = {"relative adam 1e-2": " (oscillates)"}  # what the page adds to a run's best score


def tables(load):
    """Best held-out log-likelihood and condition numbers of each run, the gradients of one
    optimizer setting together; bold: the best of each setting (SGD's runs each have their own
    rate, and form one setting)."""
    groups = {}
    for run in load("conditioning")["runs"]:
        rate = None if run["optimizer"] == "momentum" else run["learning_rate"]
        groups.setdefault((run["optimizer"], rate, run["whiten"]), []).append(run)
    order = {"relative": 0, "euclidean": 1, "equivariant": 2}
    rows = []
    for (optimizer, _, whiten), runs in groups.items():
        best = max(run["best_validation_score"] for run in runs)
        for run in sorted(runs, key=lambda run: order[run["gradient"]]):
            rate = f"{run['learning_rate']:.0e}".replace("e-0", "e-")
            label = (
                f"{run['gradient']}, {_OPTIMIZER_NAMES[optimizer]}{',' if optimizer == 'momentum' else ''} {rate}"
                + (f', `whiten="{whiten}"`' if whiten != "standardize" else "")
            )
            score = _harness.signed(f"{run['best_validation_score']:.2f}")
            score = f"**{score}**" if run["best_validation_score"] == best else score
            rows.append([label, score + _NOTES.get(run["name"], ""), *(f"{c:.1f}" for c in run["condition_numbers"])])
    return {"conditioning/runs": _harness.markdown_table(["run", "best held-out ll", "cond(W₁)", "cond(W₂)"], rows)}


if __name__ == "__main__":
    main()
