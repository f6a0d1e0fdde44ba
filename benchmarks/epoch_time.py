"""Where a small model's epoch goes: the shuffle, and the fits it slows.

At small ``D`` an epoch's steps are cheap (``D = 5``, one layer, a batch of 256: about 10 µs a
step on this machine), and drawing the epoch's order of the rows can cost more than all of them.
The script measures both halves, each in one run:

* **The shuffle**, interleaved (one call of each contender in turn, ``--rounds`` times): a
  uniform permutation of ``N`` rows on the device, jitted, as the epochs drew it before (the
  ``before`` result: ``jax.random.permutation`` of the padded rows and a stable sort that
  moves the padding last), against the order they draw now (``np.random.default_rng(bits of
  the key).permutation(n)`` on the host, as :func:`nica.make_epoch` documents it), for ``N`` =
  4,608, 40,960 and 409,600 rows.  Medians and their ratio.
* **The fits** it slows, with the library as installed: ``NonlinearICA(n_layers=1)`` (linear
  ICA, defaults) beside ``sklearn.decomposition.FastICA`` and, when ``python-picard`` is
  installed, ``picard.Picard()``, on the linear recipe of ``benchmarks/defaults.py`` (Laplace
  and uniform sources, ``cond(A) = 100``, 5,000 rows, ``D`` = 4, 16, 64, data seed 10); and
  ``ConditionalNonlinearICA()`` (defaults) on the segment recipe, 40 segments of 1,000 rows,
  ``D = 5`` with 4 mixing layers and ``D = 10`` with 3, data seeds 10 and 11 (``--seeds``;
  the reporting seeds of ``benchmarks/defaults.py``, used to choose nothing) and
  ``random_state`` 0..4 (``--random-states``): the held-out MCC, the epochs, the time per
  epoch and the fit time.  Every fit is timed after a first fit of the same shapes
  (compilation, reported apart).

Targets (printed, never asserted): the conditional fits' median time ≤ 20 s at ``D = 5`` and
≤ 40 s at ``D = 10`` with a mean held-out MCC ≥ 0.87 and ≥ 0.93; linear ICA ≤ 10× FastICA's
time.

To compare two versions of the library, run the script with each installed (``--tag`` names
the result file: ``results/epoch_time_<tag>.json``); the script needs only the public API, so
it runs on an older checkout too.

Usage::

    python benchmarks/epoch_time.py --tag after        # about 15 minutes on 2 cores
    python benchmarks/epoch_time.py --quick            # seconds: the shuffle, D = 4 only
"""

from __future__ import annotations

if __package__ in (None, ""):  # run as ``python benchmarks/epoch_time.py``
    import _bootstrap  # noqa: F401

import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

import nica
from benchmarks import _harness
from benchmarks._harness import Target
from benchmarks.defaults import linear_cell
from nica.datasets import make_segmented_mixture
from nica.metrics import mean_corr_coef

SIZES = (4608, 40960, 409600)


def device_order(key, n, n_padded):
    """The device shuffle the epochs used before: a permutation of the padded rows, the
    padding moved last by a stable sort."""
    import jax
    import jax.numpy as jnp

    order = jax.random.permutation(key, n_padded)
    return order[jnp.argsort(order >= n, stable=True)]


def _conditional(key, reduce, size):
    def measured(result):
        rows = _groups(result["conditional"]).get(size)
        return float(reduce([r[key] for r in rows])) if rows else None

    return measured


def _fastica_ratio(result):
    return {f"{r['kind']} D={r['n_features']}": r["time_nica_s"] / r["time_fastica_s"] for r in result["linear"]}


# the speed targets this script measures (the rest are in benchmarks/defaults.py)
_TIME = "ConditionalNonlinearICA(), 40 segments of 1,000 rows, D = {}, {} mixing layers: median fit time, s"
_MCC = "ConditionalNonlinearICA(), 40 segments of 1,000 rows, D = {}, {} mixing layers: mean held-out MCC"
TARGETS = (
    Target(_TIME.format(5, 4), _conditional("time_s", np.median, (5, 4)), "<=", 20.0),
    Target(_MCC.format(5, 4), _conditional("mcc", np.mean, (5, 4)), ">=", 0.87),
    Target(_TIME.format(10, 3), _conditional("time_s", np.median, (10, 3)), "<=", 40.0),
    Target(_MCC.format(10, 3), _conditional("mcc", np.mean, (10, 3)), ">=", 0.93),
    Target("NonlinearICA(n_layers=1): fit time / FastICA's", _fastica_ratio, "<=", 10.0),
)


def host_order(key, n, n_padded):
    """The order the epochs draw now: NumPy's generator seeded with the key's bits (what
    ``nica.make_epoch`` documents), the padding after it."""
    import jax

    order = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist()).permutation(n)
    return np.concatenate([order, np.arange(n, n_padded)]).astype(np.int32)


def shuffle_times(rounds, sizes):
    import jax

    rows = []
    for n in sizes:
        device = jax.jit(device_order, static_argnums=2)
        key = jax.random.key(0)
        device(key, n, n).block_until_ready()  # compiled before timing
        times = {"device": [], "host": []}
        for r in range(rounds):
            k = jax.random.fold_in(key, r)
            for name in ("device", "host") if r % 2 == 0 else ("host", "device"):
                t0 = time.perf_counter()
                if name == "device":
                    device(k, n, n).block_until_ready()
                else:
                    host_order(k, n, n)
                times[name].append(time.perf_counter() - t0)
        med = {name: float(np.median(v)) for name, v in times.items()}
        rows.append({"rows": n, "device_ms": 1e3 * med["device"], "host_ms": 1e3 * med["host"], "samples": times})
        _harness.log(
            f"shuffle of {n:,} rows: device {1e3 * med['device']:.2f} ms, host {1e3 * med['host']:.2f} ms "
            f"({med['device'] / med['host']:.1f}x)"
        )
    return rows


def timed(fit):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t0 = time.perf_counter()
        model = fit()
        return model, time.perf_counter() - t0


def linear_fits(dims, seed=10, n=5000, cond=100):
    """``benchmarks/defaults.py``'s linear cell, measured twice: the first fit compiles, the
    second is the one reported."""
    rows = []
    for d in dims:
        for kind in ("laplace", "uniform"):
            first = linear_cell(kind, d, cond, n, seed)
            row = {**linear_cell(kind, d, cond, n, seed), "first_fit_s": first["time_nica_s"]}
            rows.append(row)
            picard = f", Picard {row['time_picard_s']:.3f} s" if "time_picard_s" in row else ""
            _harness.log(
                f"linear {kind} D={d}: nica {row['time_nica_s']:.2f} s ({row['epochs']} epochs, MCC "
                f"{row['mcc_nica']:.4f}), FastICA {row['time_fastica_s']:.3f} s{picard}"
            )
    return rows


def conditional_fits(sizes, seeds, random_states):
    rows = []
    for d, n_layers in sizes:
        for seed in seeds:
            data = make_segmented_mixture(
                n_segments=40, n_per_segment=1000, n_components=d, n_layers=n_layers, random_state=seed
            )
            _, first = timed(
                lambda: nica.ConditionalNonlinearICA(random_state=0, max_iter=2).fit(data.X_train, data.u_train)
            )
            for r in random_states:
                model, t = timed(lambda: nica.ConditionalNonlinearICA(random_state=r).fit(data.X_train, data.u_train))
                row = {
                    "n_features": d,
                    "mixing_layers": n_layers,
                    "seed": seed,
                    "random_state": r,
                    "time_s": t,
                    "epochs": model.n_iter_,
                    "ms_per_epoch": 1e3 * t / model.n_iter_,
                    "mcc": mean_corr_coef(data.S_test, model.transform(data.X_test)),
                    "compile_fit_s": first,
                }
                rows.append(row)
                _harness.log(
                    f"conditional D={d} L={n_layers} seed={seed} random_state={r}: {t:.1f} s, "
                    f"{model.n_iter_} epochs ({row['ms_per_epoch']:.1f} ms each), MCC {row['mcc']:.3f}"
                )
    return rows


def _groups(rows):
    groups = {}
    for r in rows:
        groups.setdefault((r["n_features"], r["mixing_layers"]), []).append(r)
    return groups


def tables(load):
    """The shuffle's medians (``epoch_time_after``) and the fits before and after the change
    (``epoch_time_before`` and ``epoch_time_after``, side by side)."""
    before, after = load("epoch_time_before"), load("epoch_time_after")
    shuffle = _harness.markdown_table(
        ["rows", "device (jax.random.permutation + sort)", "host (NumPy)", "ratio"],
        [
            [
                f"{r['rows']:,}",
                f"{r['device_ms']:.2f} ms",
                f"{r['host_ms']:.2f} ms",
                f"{r['device_ms'] / r['host_ms']:.0f}x",
            ]
            for r in after["shuffle"]
        ],
    )
    rows = []
    for b, a in zip(before["linear"], after["linear"]):
        pic = f"{a['time_picard_s']:.3f} s" if "time_picard_s" in a else "—"
        rows.append(
            [
                f"linear, {a['kind']}, D = {a['n_features']}, {a['n_samples']:,} rows",
                f"{b['time_nica_s']:.2f} s ({b['epochs']} ep., {b['mcc_nica']:.4f})",
                f"{a['time_nica_s']:.2f} s ({a['epochs']} ep., {a['mcc_nica']:.4f})",
                f"{a['time_fastica_s']:.3f} s ({a['mcc_fastica']:.4f})",
                pic,
            ]
        )
    b_groups, a_groups = _groups(before["conditional"]), _groups(after["conditional"])
    for (d, n), a in a_groups.items():
        b = b_groups.get((d, n), [])

        def cell(rs):
            if not rs:
                return "—"
            med = lambda k: float(np.median([r[k] for r in rs]))  # noqa: E731
            mcc = float(np.mean([r["mcc"] for r in rs]))
            return f"{med('time_s'):.1f} s ({med('epochs'):.0f} ep. of {med('ms_per_epoch'):.0f} ms, {mcc:.3f})"

        rows.append([f"conditional, D = {d}, {n} mixing layers: median of {len(a)} fits", cell(b), cell(a), "—", "—"])
    fits = _harness.markdown_table(
        ["fit (defaults)", "before: time (epochs, MCC)", "after: time (epochs, MCC)", "FastICA (MCC)", "Picard"], rows
    )
    return {"epoch_time/shuffle": shuffle, "epoch_time/fits": fits}


def main(argv=None):
    parser = _harness.parser(__doc__, "the shuffle and the D = 4 linear fits only", "results/epoch_time[_TAG].json")
    parser.add_argument("--tag", default=None, help="a name for this version of the library (in the file name)")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--random-states", type=int, default=5)
    parser.add_argument(
        "--sizes", nargs="+", default=["5/4", "10/3"], metavar="D/L", help="conditional fits: sources/mixing layers"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[10, 11], help="data seeds of the conditional fits")
    args = parser.parse_args(argv)
    stem = "epoch_time" + (f"_{args.tag}" if args.tag else "")
    path = _harness.output_path(args, _harness.RESULTS, stem)
    result = {"shuffle": shuffle_times(args.rounds, SIZES[:2] if args.quick else SIZES)}
    result["linear"] = linear_fits((4,) if args.quick else (4, 16, 64))
    sizes = [tuple(int(v) for v in size.split("/")) for size in args.sizes]
    result["conditional"] = [] if args.quick else conditional_fits(sizes, args.seeds, range(args.random_states))
    for (d, n), rs in _groups(result["conditional"]).items():
        _harness.log(
            f"conditional D={d} L={n}: median {np.median([r['time_s'] for r in rs]):.1f} s, "
            f"mean MCC {np.mean([r['mcc'] for r in rs]):.3f}"
        )
    result["checks"] = _harness.report_targets(TARGETS, result)
    _harness.write_result(path, result, benchmark="epoch_time", argv=argv)
    _harness.log(f"wrote {path}")


if __name__ == "__main__":
    main()
