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
    python benchmarks/hybrid.py --quick    # one cell: seed 100, 2 mixing layers, α = 2, 6 layers (20 s)

Each cell is appended to ``results/hybrid_partial.jsonl`` (beside ``--out``'s file, when given)
as it finishes (an interrupted run resumes; delete that file to measure afresh);
``results/hybrid.json`` collects every cell measured so far with per-(layers, α, seed group)
means.  ``--quick`` neither reads nor writes the partial file, and writes ``hybrid_quick.json``.
"""

from __future__ import annotations

if __package__ in (None, ""):  # run as ``python benchmarks/hybrid.py``
    import _bootstrap  # noqa: F401

import json
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

import nica
from benchmarks import _harness
from benchmarks._common import max_rise
from benchmarks._harness import Target
from nica.datasets import make_segmented_mixture
from nica.metrics import mean_corr_coef


def _largest_rise(result):
    rises = [c["max_val_nll_rise"] for c in result["cells"] if "max_val_nll_rise" in c]
    return max(rises) if rises else None


TARGETS = (Target("largest rise of an epoch's validation score above the best so far, nats", _largest_rise, "<=", 0.5),)


def measure(
    seed,
    layers,
    weight,
    n_layers=3,
    learning_rate="auto",
    random_state=0,
    source="laplace",
    n_components=5,
    optimizer="adam",
    averaging=0.0,
):
    data = make_segmented_mixture(
        n_segments=40, n_per_segment=1000, n_components=n_components, n_layers=layers, source=source, random_state=seed
    )
    model = nica.ConditionalNonlinearICA(
        n_layers=n_layers,
        random_state=random_state,
        contrastive_weight=weight,
        learning_rate=learning_rate,
        optimizer=optimizer,
        averaging=averaging,
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(data.X_train, data.u_train)
    seconds = time.perf_counter() - start
    return {
        "seed": seed,
        "mixing_layers": layers,
        "contrastive_weight": weight,
        "n_layers": n_layers,
        "mcc": float(mean_corr_coef(data.S_test, model.transform(data.X_test))),
        "test_log_likelihood": float(model.score(data.X_test, data.u_test)),
        "label_accuracy": float(np.mean(model.predict(data.X_test) == data.u_test)),
        "fit_seconds": seconds,
        "n_iter": int(model.n_iter_),
        "best_iter": int(model.best_iter_),
        "learning_rate": float(model.learning_rate_),
        "random_state": random_state,
        "source": source,
        "n_components": n_components,
        "optimizer": optimizer,
        "max_val_nll_rise": max_rise(model.validation_scores_),
        "max_val_exact_nll_rise": max_rise(model.validation_log_likelihoods_),
        "averaging": averaging,
    }


def cell_key(c):
    # cells measured before these settings were recorded: random_state 0, Laplace, D = 5 and
    # Adam at 1e-2 (the "auto" rate from a random start then), no parameter averaging
    return (
        c["seed"],
        c["mixing_layers"],
        c["contrastive_weight"],
        c.get("n_layers", 3),
        c.get("learning_rate", 1e-2),
        c.get("random_state", 0),
        c.get("source", "laplace"),
        c.get("n_components", 5),
        c.get("optimizer", "adam"),
        c.get("averaging", 0.0),
    )


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
        out.append(
            {
                "source": source,
                "n_components": d,
                "mixing_layers": layers,
                "n_layers": n_layers,
                "contrastive_weight": weight,
                "learning_rate": rate,
                "optimizer": opt,
                "averaging": averaging,
                "seeds": split,
                "n": len(cs),
                "mcc_mean": float(mcc.mean()),
                "mcc_std": float(mcc.std()),
                "fit_seconds_mean": float(np.mean([c["fit_seconds"] for c in cs])),
                "n_iter_mean": float(np.mean([c["n_iter"] for c in cs])),
                "max_val_nll_rise": max(rises) if rises else None,
                "fits_rising_over_half_a_nat": sum(r > 0.5 for r in rises) if rises else None,
            }
        )
    return out


def main(argv=None):
    parser = _harness.parser(
        __doc__,
        "seed 100, 2 mixing layers, α = 2, a 6-layer network unless given; not resumed",
        "benchmarks/results/hybrid[_quick].json",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="data seeds (default 100 101 102 103 104)")
    parser.add_argument("--weights", type=float, nargs="+", default=None, help="α (default 0 5 20)")
    parser.add_argument("--layers", type=int, nargs="+", default=None, help="mixing layers of the data (default 4)")
    parser.add_argument("--n-layers", type=int, default=None, help="layers of the fitted network (default 3)")
    parser.add_argument(
        "--learning-rates",
        type=float,
        nargs="+",
        default=[1e-2],
        help="Adam's rate (the default before the rate study: 1e-2)",
    )
    parser.add_argument("--random-states", type=int, nargs="+", default=[0])
    parser.add_argument("--source", choices=("laplace", "gaussian"), default="laplace")
    parser.add_argument("--n-components", type=int, default=5)
    parser.add_argument("--optimizers", nargs="+", default=["adam"], help="optax optimizer names")
    parser.add_argument(
        "--averaging",
        type=float,
        nargs="+",
        default=[0.0],
        help="time constants (epochs) of the parameter average; 0: the last iterate",
    )
    args = parser.parse_args(argv)
    quick = {"seeds": [100], "weights": [2.0], "layers": [2], "n_layers": 6}
    full = {"seeds": [100, 101, 102, 103, 104], "weights": [0.0, 5.0, 20.0], "layers": [4], "n_layers": 3}
    for name, default in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    out = _harness.output_path(args, _harness.RESULTS, "hybrid")
    partial = None if args.quick else out.parent / "hybrid_partial.jsonl"
    machine = _harness.machine_info()
    cells = _harness.read_jsonl(partial) if partial else []
    done = {cell_key(c) for c in cells}
    for layers in args.layers:
        for seed in args.seeds:
            for weight in args.weights:
                for rate, opt, avg in [
                    (rate, opt, avg)
                    for rate in args.learning_rates
                    for opt in args.optimizers
                    for avg in args.averaging
                ]:
                    for r in args.random_states:
                        settings = {
                            "seed": seed,
                            "mixing_layers": layers,
                            "contrastive_weight": weight,
                            "n_layers": args.n_layers,
                            "learning_rate": rate,
                            "random_state": r,
                            "source": args.source,
                            "n_components": args.n_components,
                            "optimizer": opt,
                            "averaging": avg,
                        }
                        if cell_key(settings) in done:
                            continue
                        cell = measure(
                            seed, layers, weight, args.n_layers, rate, r, args.source, args.n_components, opt, avg
                        )
                        print(json.dumps(cell), flush=True)
                        cells.append(cell)
                        if partial:
                            _harness.append_jsonl(partial, cell)
                        write(out, cells, argv, machine)
    result = write(out, cells, argv, machine)
    _harness.report_targets(TARGETS, result)
    print("wrote", out)


def write(path, cells, argv, machine):
    """Write every cell measured so far, with their summary; return the record."""
    record = {"summary": summarise(cells), "cells": cells}
    _harness.write_result(path, record, benchmark="hybrid", argv=argv, machine=machine)
    return record


# ---------------------------------------------------------------------------------------------
# the page's tables (docs/benchmarks.md): the choice seeds only (100-104), Laplace D = 5 unless said


def _settings(c):
    """A cell's settings, the defaults of the cells measured before they were recorded filled in."""
    _, layers, weight, n_layers, rate, random_state, source, d, optimizer, averaging = cell_key(c)
    return {
        "mixing_layers": layers,
        "contrastive_weight": weight,
        "n_layers": n_layers,
        "learning_rate": rate,
        "random_state": random_state,
        "source": source,
        "n_components": d,
        "optimizer": optimizer,
        "averaging": averaging,
    }


def _select(cells, **settings):
    return [c for c in cells if c["seed"] >= 100 and all(_settings(c)[k] == v for k, v in settings.items())]


def _mean_sd(values, ddof):
    """``mean ± sd`` of the MCCs (the sd with ``ddof``, as each table has it), the mean alone
    for one value."""
    values = np.asarray(values)
    return f"{values.mean():.3f}" if values.size == 1 else f"{values.mean():.3f} ± {values.std(ddof=ddof):.3f}"


def _weights_table(cells):
    """The weight study: α and the network's depth, ``random_state=0``; its cells were measured
    before a cell recorded its rate (the rate study's later cells at the same settings are in
    the next table).  Bold: the default chosen, α = 2 with 6 layers."""
    groups = {}
    for c in _select(
        cells, source="laplace", n_components=5, random_state=0, learning_rate=1e-2, optimizer="adam", averaging=0.0
    ):
        if "learning_rate" not in c:
            groups.setdefault((c["mixing_layers"], c.get("n_layers", 3), c["contrastive_weight"]), []).append(c)
    rows = []
    for (layers, n_layers, weight), group in sorted(groups.items(), key=lambda item: (-item[0][0], *item[0][1:])):
        group = sorted(group, key=lambda c: c["seed"])
        seeds = [c["seed"] for c in group]
        mcc = [c["mcc"] for c in group]
        chosen = (n_layers, weight) == (6, 2.0)
        values = " ".join(f"{m:.3f}".lstrip("0") for m in mcc)
        if seeds != [100, 101, 102, 103, 104]:
            values += f" ({seeds[0]}–{seeds[-1]})" if len(seeds) > 1 else f" ({seeds[0]})"
        mean = f"**{np.mean(mcc):.3f}**" if chosen else f"{np.mean(mcc):.3f}"
        if len(seeds) == 5:  # the sd of the five seeds (population sd)
            mean += f" ± {np.std(mcc):.3f}"
        alpha = f"{weight:g}" + (" (the old default)" if (n_layers, weight) == (3, 0.0) else "")
        rows.append([layers, n_layers, f"**{alpha}**" if chosen else alpha, values, mean])
    return _harness.markdown_table(
        ["mixing layers", "network layers", "α", "MCC per seed (100–104)", "mean ± sd"], rows
    )


def _matched(first, second):
    """The fits of ``first`` and ``second`` with the same data seed and ``random_state``."""
    index = {(c["seed"], _settings(c)["random_state"]): c for c in second}
    pairs = [
        (c, index[c["seed"], _settings(c)["random_state"]])
        for c in first
        if (c["seed"], _settings(c)["random_state"]) in index
    ]
    return sorted(pairs, key=lambda pair: (pair[0]["seed"], _settings(pair[0])["random_state"]))


def _by_data(cells):
    groups = {}
    for c in cells:
        s = _settings(c)
        groups.setdefault((s["source"], s["n_components"], s["mixing_layers"]), []).append(c)
    return sorted(groups.items(), key=lambda item: (("laplace", "gaussian").index(item[0][0]), *item[0][1:]))


def _largest_rise(fits):
    rises = [c["max_val_nll_rise"] for c in fits if "max_val_nll_rise" in c]
    return f"{max(rises):.2f}" if rises else ""


def _rate_table(cells):
    """The hybrid objective's rate: Adam 5e-3 against 1e-2 on the fits both rates ran."""
    hybrid = dict(contrastive_weight=2.0, n_layers=6, optimizer="adam", averaging=0.0)
    rows = []
    for (source, d, layers), group in _by_data(_select(cells, learning_rate=5e-3, **hybrid)):
        faster = _select(cells, learning_rate=1e-2, source=source, n_components=d, mixing_layers=layers, **hybrid)
        pairs = _matched(group, faster)
        low, high = [pair[0] for pair in pairs], [pair[1] for pair in pairs]
        rows.append(
            [
                source,
                d,
                layers,
                len(pairs),
                _mean_sd([c["mcc"] for c in low], ddof=1),
                _mean_sd([c["mcc"] for c in high], ddof=1),
                _largest_rise(low),
                _largest_rise(high),
            ]
        )
    header = [
        "source",
        "D",
        "mixing layers",
        "fits",
        "MCC, 5e-3",
        "MCC, 1e-2",
        "largest rise, 5e-3",
        "largest rise, 1e-2",
    ]
    return _harness.markdown_table(header, rows)


def _averaging_table(cells):
    """The parameter average (τ = 0.5) against the last iterate, on the same data sets and
    ``random_state``; the last-iterate fits are those of the rate study that recorded their rise."""
    hybrid = dict(contrastive_weight=2.0, n_layers=6, optimizer="adam", learning_rate=1e-2)
    rows = []
    for (source, d, layers), group in _by_data(_select(cells, averaging=0.5, **hybrid)):
        last = [
            c
            for c in _select(cells, averaging=0.0, source=source, n_components=d, mixing_layers=layers, **hybrid)
            if "max_val_nll_rise" in c
        ]
        pairs = _matched(last, group)
        before, after = [pair[0] for pair in pairs], [pair[1] for pair in pairs]
        epochs = [int(np.median([c["n_iter"] for c in fits])) for fits in (before, after)]  # whole epochs, rounded down
        rows.append(
            [
                source,
                d,
                layers,
                len(pairs),
                _mean_sd([c["mcc"] for c in before], ddof=0),
                f"**{_mean_sd([c['mcc'] for c in after], ddof=0)}**",
                f"{_largest_rise(before)} → {_largest_rise(after)}",
                f"{epochs[0]} → {epochs[1]}",
            ]
        )
    header = [
        "source",
        "D",
        "mixing layers",
        "fits",
        "MCC, last iterate",
        "MCC, averaged (τ = 0.5)",
        "largest rise",
        "median epochs",
    ]
    return _harness.markdown_table(header, rows)


def tables(load):
    """The choice of α, of the rate and of the parameter average."""
    cells = load("hybrid")["cells"]
    return {
        "hybrid/weights": _weights_table(cells),
        "hybrid/rate": _rate_table(cells),
        "hybrid/averaging": _averaging_table(cells),
    }


if __name__ == "__main__":
    main()
