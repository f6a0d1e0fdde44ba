"""The hybrid objective (``ConditionalNonlinearICA(contrastive_weight=α)``) against exact maximum
likelihood (``α = 0``, the default) on the segment-modulated recipe.

``make_segmented_mixture(n_segments=40, n_per_segment=1000, n_components=5, n_layers=L,
random_state=s)``; one fit per cell of ``ConditionalNonlinearICA(n_layers=K,
contrastive_weight=α, random_state=0)`` with every other setting at its default (``K`` is
``--n-layers``: 3, the default before the hybrid objective became the default, or 6, today's); held-out MCC ``mean_corr_coef(S_test, transform(X_test))``, the held-out
exact log-likelihood (``score``) and the fit time.

Data seeds 100–104 were used to choose ``α`` and the rate ``learning_rate="auto"`` takes with
it; seeds 0–4 are the reporting seeds.  Each cell records the largest rise of an epoch's
validation score above the best so far (``max_val_nll_rise``; the monitored hybrid objective)
and of the exact validation NLL (``max_val_exact_nll_rise``, cells measured since it is recorded).

Usage::

    python benchmarks/hybrid.py --seeds 100 101 102 103 104 --weights 0 5 20 --layers 4
    python benchmarks/hybrid.py --seeds 0 1 2 3 4 --weights 0 20 --layers 3 4
    python benchmarks/hybrid.py --n-layers 6 --seeds 100 101 102 103 104 --weights 0 2 5 20 --layers 4
    python benchmarks/hybrid.py --n-layers 6 --weights 2 --learning-rates 5e-3 1e-2 --layers 4 \
        --seeds 100 101 102 103 104 --random-states 0 1          # the rate (also --source, --n-components)

Each cell is appended to ``results/hybrid_partial.jsonl`` as it finishes (an interrupted run
resumes; delete that file to measure afresh); ``results/hybrid.json`` collects every cell measured
so far with per-(layers, α, seed group) means.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import cpu_model, max_rise  # noqa: E402

import nica  # noqa: E402
from nica.datasets import make_segmented_mixture  # noqa: E402
from nica.metrics import mean_corr_coef  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
PARTIAL = os.path.join(RESULTS, "hybrid_partial.jsonl")
OUT = os.path.join(RESULTS, "hybrid.json")


def measure(seed, layers, weight, n_layers=3, learning_rate="auto", random_state=0, source="laplace",
            n_components=5, optimizer="adam", averaging=0.0):
    data = make_segmented_mixture(n_segments=40, n_per_segment=1000, n_components=n_components,
                                  n_layers=layers, source=source, random_state=seed)
    model = nica.ConditionalNonlinearICA(n_layers=n_layers, random_state=random_state,
                                         contrastive_weight=weight, learning_rate=learning_rate,
                                         optimizer=optimizer, averaging=averaging)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(data.X_train, data.u_train)
    seconds = time.perf_counter() - start
    return {
        "seed": seed, "mixing_layers": layers, "contrastive_weight": weight, "n_layers": n_layers,
        "mcc": float(mean_corr_coef(data.S_test, model.transform(data.X_test))),
        "test_log_likelihood": float(model.score(data.X_test, data.u_test)),
        "label_accuracy": float(np.mean(model.predict(data.X_test) == data.u_test)),
        "fit_seconds": seconds, "n_iter": int(model.n_iter_), "best_iter": int(model.best_iter_),
        "learning_rate": float(model.learning_rate_), "random_state": random_state, "source": source,
        "n_components": n_components, "optimizer": optimizer, "max_val_nll_rise": max_rise(model.validation_scores_),
        "max_val_exact_nll_rise": max_rise(model.validation_log_likelihoods_),
        "averaging": averaging,
    }


def cell_key(c):
    # cells measured before these settings were recorded: random_state 0, Laplace, D = 5 and
    # Adam at 1e-2 (the "auto" rate from a random start then), no parameter averaging
    return (c["seed"], c["mixing_layers"], c["contrastive_weight"], c.get("n_layers", 3),
            c.get("learning_rate", 1e-2), c.get("random_state", 0), c.get("source", "laplace"),
            c.get("n_components", 5), c.get("optimizer", "adam"), c.get("averaging", 0.0))


def load_partial():
    if not os.path.exists(PARTIAL):
        return []
    with open(PARTIAL) as f:
        return [json.loads(line) for line in f if line.strip()]


def summarise(cells):
    groups = {}
    for c in cells:
        split = "choice (100-104)" if c["seed"] >= 100 else "reporting (0-4)"
        _, layers, weight, n_layers, rate, _, source, d, opt, averaging = cell_key(c)
        groups.setdefault((source, d, layers, n_layers, weight, rate, opt, averaging, split), []).append(c)
    out = []
    for (source, d, layers, n_layers, weight, rate, opt, averaging, split), cs in sorted(groups.items()):
        mcc = np.array([c["mcc"] for c in cs])
        rises = [c["max_val_nll_rise"] for c in cs if "max_val_nll_rise" in c]
        out.append({"source": source, "n_components": d, "mixing_layers": layers, "n_layers": n_layers,
                    "contrastive_weight": weight, "learning_rate": rate, "optimizer": opt,
                    "averaging": averaging, "seeds": split,
                    "n": len(cs), "mcc_mean": float(mcc.mean()), "mcc_std": float(mcc.std()),
                    "fit_seconds_mean": float(np.mean([c["fit_seconds"] for c in cs])),
                    "n_iter_mean": float(np.mean([c["n_iter"] for c in cs])),
                    "max_val_nll_rise": max(rises) if rises else None,
                    "fits_rising_over_half_a_nat": sum(r > 0.5 for r in rises) if rises else None})
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[100, 101, 102, 103, 104])
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 5.0, 20.0])
    parser.add_argument("--layers", type=int, nargs="+", default=[4], help="mixing layers of the data")
    parser.add_argument("--n-layers", type=int, default=3, help="layers of the fitted network")
    parser.add_argument("--learning-rates", type=float, nargs="+", default=[1e-2],
                        help="Adam's rate (the default before the rate study: 1e-2)")
    parser.add_argument("--random-states", type=int, nargs="+", default=[0])
    parser.add_argument("--source", choices=("laplace", "gaussian"), default="laplace")
    parser.add_argument("--n-components", type=int, default=5)
    parser.add_argument("--optimizers", nargs="+", default=["adam"], help="optax optimizer names")
    parser.add_argument("--averaging", type=float, nargs="+", default=[0.0],
                        help="time constants (epochs) of the parameter average; 0: the last iterate")
    args = parser.parse_args()
    os.makedirs(RESULTS, exist_ok=True)
    cells = load_partial()
    done = {cell_key(c) for c in cells}
    for layers in args.layers:
        for seed in args.seeds:
            for weight in args.weights:
                for rate, opt, avg in [(rate, opt, avg) for rate in args.learning_rates for opt in args.optimizers
                                       for avg in args.averaging]:
                    for r in args.random_states:
                        settings = {"seed": seed, "mixing_layers": layers, "contrastive_weight": weight,
                                    "n_layers": args.n_layers, "learning_rate": rate, "random_state": r,
                                    "source": args.source, "n_components": args.n_components, "optimizer": opt,
                                    "averaging": avg}
                        if cell_key(settings) in done:
                            continue
                        cell = measure(seed, layers, weight, args.n_layers, rate, r, args.source,
                                       args.n_components, opt, avg)
                        print(json.dumps(cell), flush=True)
                        cells.append(cell)
                        with open(PARTIAL, "a") as f:
                            f.write(json.dumps(cell) + "\n")
                        write(cells)
    write(cells)


def write(cells):
    with open(OUT, "w") as f:
        json.dump({"cpu": cpu_model(), "jax": __import__("jax").__version__,
                   "summary": summarise(cells), "cells": cells}, f, indent=1)


if __name__ == "__main__":
    main()
