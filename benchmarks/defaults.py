"""What a user gets from ``fit(X)`` with the defaults, beside FastICA, on fresh data.

Linear ICA: ``NonlinearICA(n_layers=1)`` with every other setting at its default, against
``sklearn.decomposition.FastICA(whiten="unit-variance")``, on sources of six kinds (Laplace,
logistic, Student-t(5), uniform, bimodal ±1 + 0.3·N(0, 1), half uniform / half Laplace) mixed by
``A = U diag(σ) Vᵀ`` with random orthogonal ``U, V`` and singular values spaced log-evenly so that
``cond(A)`` is the given condition number, plus a random offset.  Held-out MCC (Pearson) and
Amari distance on a fresh set of the same size, fit times side by side (one process, the same
threads).

Nonlinear: the segment-modulated recipe (docs/theory.rst, "The benchmark recipe"),
``ConditionalNonlinearICA()`` and ``NonlinearICA()`` with defaults beside FastICA.

Stability: for every fit with a validation set, the largest rise of an epoch's validation NLL
above the best so far (target ≤ 0.5 nats per sample; larger rises are restored by the spike
guard but are reported here all the same).

The defaults were chosen on data seeds 1 and 2 (linear: D ∈ {4, 16, 64}, 5,000 rows; the
segment recipe); the seeds reported here (``--seeds``, default 10 11) were not used to choose
anything.

Usage::

    python benchmarks/defaults.py                 # the whole grid: about 1.5 hours on 2 cores
    python benchmarks/defaults.py --only linear   # one half (writes defaults_linear.json)
    python benchmarks/defaults.py --quick         # D = 4 only, one seed: about a minute

Each measured cell is appended to ``results/defaults_partial.jsonl`` as it finishes, so an
interrupted run resumes where it stopped; delete that file to measure afresh.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np
from sklearn.decomposition import FastICA
from sklearn.exceptions import ConvergenceWarning

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import cpu_model  # noqa: E402

import nica  # noqa: E402
from nica.datasets import make_segmented_mixture  # noqa: E402
from nica.metrics import amari_distance, mean_corr_coef  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
IMAGES = os.path.join(HERE, "..", "docs", "images")

KINDS = ("laplace", "logistic", "student_t5", "uniform", "bimodal", "half_sub_half_super")


def sources(kind, n, d, rng):
    if kind == "laplace":
        return rng.laplace(size=(n, d))
    if kind == "logistic":
        return rng.logistic(size=(n, d))
    if kind == "student_t5":
        return rng.standard_t(5, size=(n, d))
    if kind == "uniform":
        return rng.uniform(-1, 1, size=(n, d))
    if kind == "bimodal":
        return rng.choice([-1.0, 1.0], size=(n, d)) + 0.3 * rng.normal(size=(n, d))
    if kind == "half_sub_half_super":
        h = d // 2
        return np.hstack([rng.uniform(-1, 1, size=(n, h)), rng.laplace(size=(n, d - h))])
    raise ValueError(kind)


def mixing(d, condition_number, rng):
    U, _ = np.linalg.qr(rng.normal(size=(d, d)))
    V, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return U @ np.diag(np.logspace(0, -np.log10(condition_number), d)) @ V.T


def max_rise(model):
    scores = np.asarray(model.validation_scores_)
    if scores.size < 2:
        return 0.0
    return float(np.max(np.maximum.accumulate(scores)[:-1] - scores[1:]).clip(min=0.0))


def linear_cell(kind, d, cond, n, seed):
    rng = np.random.default_rng(seed)
    A = mixing(d, cond, rng)
    S = sources(kind, 2 * n, d, rng)
    X = S @ A.T + rng.normal(size=d)
    X_train, X_test, S_test = X[:n], X[n:], S[n:]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        t0 = time.perf_counter()
        model = nica.NonlinearICA(n_layers=1, random_state=0).fit(X_train)
        t_nica = time.perf_counter() - t0
        t0 = time.perf_counter()
        ref = FastICA(whiten="unit-variance", random_state=0, max_iter=1000).fit(X_train)
        t_fastica = time.perf_counter() - t0
    return {
        "kind": kind, "n_features": d, "condition_number": cond, "n_samples": n, "seed": seed,
        "mcc_nica": mean_corr_coef(S_test, model.transform(X_test)),
        "mcc_fastica": mean_corr_coef(S_test, ref.transform(X_test)),
        "amari_nica": amari_distance(model.components_, A),
        "amari_fastica": amari_distance(ref.components_, A),
        "time_nica_s": t_nica, "time_fastica_s": t_fastica, "epochs": model.n_iter_,
        "max_val_nll_rise": max_rise(model),
        "warnings": sorted({type(w.message).__name__ for w in caught}),
    }


def nonlinear_cell(d, n_layers, seed, n_per_segment):
    data = make_segmented_mixture(n_segments=40, n_per_segment=n_per_segment, n_components=d,
                                  n_layers=n_layers, random_state=seed)
    out = {"n_features": d, "mixing_layers": n_layers, "seed": seed}
    for name, make in (("conditional", lambda: nica.ConditionalNonlinearICA(random_state=0)),
                       ("factorized", lambda: nica.NonlinearICA(random_state=0))):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            t0 = time.perf_counter()
            model = make()
            model.fit(data.X_train, data.u_train) if name == "conditional" else model.fit(data.X_train)
            out[f"time_{name}_s"] = time.perf_counter() - t0
        out[f"mcc_{name}"] = mean_corr_coef(data.S_test, model.transform(data.X_test))
        out[f"max_val_nll_rise_{name}"] = max_rise(model)
        out[f"epochs_{name}"] = model.n_iter_
    ref = FastICA(whiten="unit-variance", random_state=0, max_iter=1000).fit(data.X_train)
    out["mcc_fastica"] = mean_corr_coef(data.S_test, ref.transform(data.X_test))
    return out


def _cached(path):
    """Rows already measured by an interrupted run (one JSON object per line), by cell key."""
    rows = {}
    if path and os.path.exists(path):
        with open(path) as fh:
            for line in fh:
                if line.strip():
                    row = json.loads(line)
                    rows[row["key"]] = row
    return rows


def _measure(cache, path, key, compute):
    if key in cache:
        return cache[key]
    row = {"key": key, **compute()}
    with open(path, "a") as fh:
        fh.write(json.dumps(row) + "\n")
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, nargs="+", default=[10, 11])
    parser.add_argument("--only", choices=("linear", "nonlinear"), default=None,
                        help="run one half of the benchmark (the JSON then holds that half only)")
    args = parser.parse_args(argv)
    if args.quick:
        grid = [(d, c, n) for d in (4,) for c in (10, 1000) for n in (5000,)]
        seeds, nonlinear = args.seeds[:1], [(5, 2)]
        n_per_segment = 300
    else:
        grid = [(d, c, n) for n in (5000, 50000) for d in (4, 16, 64) for c in (10, 100, 1000)]
        seeds, nonlinear = args.seeds, [(5, 2), (5, 3), (5, 4), (10, 2), (10, 3)]
        n_per_segment = 1000
    if args.only == "linear":
        nonlinear = []
    elif args.only == "nonlinear":
        grid = []
    os.makedirs(RESULTS, exist_ok=True)
    name = "defaults_quick" if args.quick else "defaults"
    # every measured row is appended here at once, so that an interrupted run resumes where it
    # stopped (delete the file to measure afresh)
    partial = os.path.join(RESULTS, name + "_partial.jsonl")
    cache = _cached(partial)
    linear = []
    for d, cond, n in grid:
        for kind in KINDS:
            for seed in seeds:
                row = _measure(cache, partial, f"linear/{kind}/{d}/{cond}/{n}/{seed}",
                               lambda: linear_cell(kind, d, cond, n, seed))
                linear.append(row)
                print(f"linear {kind:20s} D={d:3d} cond={cond:5d} n={n:6d} seed={seed}: "
                      f"MCC {row['mcc_nica']:.4f} vs FastICA {row['mcc_fastica']:.4f} "
                      f"({row['mcc_nica'] - row['mcc_fastica']:+.4f}); {row['time_nica_s']:.1f} s vs "
                      f"{row['time_fastica_s']:.2f} s; rise {row['max_val_nll_rise']:.2f}", flush=True)
    nonlin = []
    for d, n_layers in nonlinear:
        for seed in seeds:
            row = _measure(cache, partial, f"nonlinear/{d}/{n_layers}/{seed}/{n_per_segment}",
                           lambda: nonlinear_cell(d, n_layers, seed, n_per_segment))
            nonlin.append(row)
            print(f"nonlinear D={d} L={n_layers} seed={seed}: conditional {row['mcc_conditional']:.3f} "
                  f"factorized {row['mcc_factorized']:.3f} FastICA {row['mcc_fastica']:.3f} "
                  f"({row['time_conditional_s']:.1f} s)", flush=True)
    result = {
        "benchmark": "defaults", "quick": args.quick, "seeds": seeds, "chosen_on_seeds": [1, 2],
        "machine": cpu_model(), "nica_version": nica.__version__, "linear": linear, "nonlinear": nonlin,
    }
    suffix = f"_{args.only}" if args.only else ""
    path = os.path.join(RESULTS, name + suffix + ".json")
    with open(path, "w") as fh:
        json.dump(result, fh, indent=1)
    print("wrote", path)

if __name__ == "__main__":
    main()
