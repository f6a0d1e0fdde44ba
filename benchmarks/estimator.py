"""Training throughput and time to converge of ``nica.NonlinearICA``: relative vs euclidean vs autodiff.

For each dimension ``D`` (64 and 784 by default) the script generates one synthetic nonlinear
ICA data set, then, on the same data and the same initialisation (same ``random_state``):

* **Two forms of the relative gradient.**  ``"relative"`` hands ``[G, g] W̄ᵀW̄`` (docs/theory.rst,
  'The relative gradient') to the optimizer as a gradient; ``"equivariant"`` hands it
  ``H̄ = [G, g] W̄ᵀ`` (the same direction in the group's coordinates) and applies the
  optimizer's update ``Ū`` as ``Ū W̄`` (``nica.equivariant_gradient``, ``nica.transport``).
  With plain SGD the two steps are identical, so ``"equivariant"`` is fitted with Adam only.
  Both are checked against the euclidean fit.
* **Throughput** (samples/s) of one training step per ``gradient`` ("relative", "equivariant",
  "euclidean", "autodiff"): ``nica.make_train_step`` scanned over pre-cut mini-batches in one jitted call
  (``jax.lax.scan``, as the estimator's epoch does), compiled ahead of time
  (``jax.jit(...).lower(...).compile()``), called once to warm up, then timed over
  ``--repeats`` calls with ``block_until_ready``.  This is the library's floor; the estimator's
  own throughput (epochs of ``fit``, with shuffling, the per-epoch validation and host syncs) is
  reported next to it from the timed fits below.
* **Time to converge**: wall time of ``NonlinearICA(gradient=g, optimizer=opt).fit`` with early
  stopping, for ``g`` in relative/euclidean and ``opt`` in adam/sgd, after the screening fits
  of the learning-rate grid on the same shapes, so no compilation is timed.  Stored per fit: ``n_iter_``, ``best_iter_``, the
  held-out log-likelihood per epoch (``validation_scores_``, the estimator's 10 % validation
  split) against wall-clock seconds, ``loss_curve_`` and the final ``score`` on a separate test
  set drawn from the same model.  The clock of epoch ``k`` is ``k * fit_seconds / n_iter_``:
  every epoch does the same work, so the fit's time is spread evenly over its epochs.
* **The check** (printed as PASS or MISS with the numbers, never asserted): the relative fit
  reaches the euclidean fit's best held-out log-likelihood (within ``--ll-tolerance`` nats per
  dimension) in less wall-clock time than the euclidean fit does.
* **Autodiff** is only timed for a few steps: its fit would follow the euclidean fit epoch by
  epoch (both are the ordinary gradient of the same likelihood), so its time to converge is
  predicted as the euclidean fit's epochs times its measured time per epoch.  Its cost per sample
  is ``O(D³)`` whatever the batch, so above ``D = 128`` it is timed on ``--autodiff-batch-size``
  samples per step (a ``B = 256`` step at ``D = 784`` takes more than a minute on 2 cores and
  holds ``B·D²`` floats per Jacobian batch).

Learning rates.  No single rate suits both directions: the relative and the euclidean directions
have different scales away from orthogonal weights, and the largest stable rate differs between
them.  So, for Adam and for plain SGD alike, each gradient gets the best rate of one grid
(``--adam-lrs``, default ``1e-3 3e-3 1e-2``; ``--sgd-lrs``), chosen the same way for both: every
rate is fit for a few screening epochs, the rate with the best held-out log-likelihood is refit
with early stopping, and if that refit diverges the next smaller rate is fit as well and the
better of the two is kept.  Every screening result is in the JSON.  The screening fits also
compile every epoch, so no timed refit includes compilation.

Threads.  The euclidean gradient's matrix inverse runs on OpenBLAS's own thread pool, which
fights XLA's threads and made that fit several times slower and noisier in earlier runs; the
script sets ``OPENBLAS_NUM_THREADS=1`` before NumPy loads unless the variable is already set
(it is recorded in the JSON).

Data.  ``D ≤ 64``: ``nica.datasets.make_segmented_mixture(n_segments=1, n_components=D,
n_layers=2)``, the segment-modulated benchmark recipe with one segment (Laplace sources with
scales ``U(0.5, 3)``, two ``U(-1, 1)`` unit-column mixing matrices redrawn until their condition
number is below the 25th percentile of 10,000 reference draws, leaky ReLU of slope 0.2 between
them).  Above ``D = 64`` that threshold costs 10,000 SVDs of ``D × D`` matrices (about half an hour at
``D = 784`` on 2 cores), so the same sources and leaky-ReLU network are used with mixing
matrices ``U diag(σ) Vᵀ``, ``U`` and ``V`` Haar-random orthogonal and ``σ`` geometrically spaced
with condition number ``CONDITION_NUMBER`` (10).  Both are cast to float32, so training runs in
float32.  The true model's held-out log-likelihood is reported as a reference (the network's
smooth activation cannot represent the leaky-ReLU kinks exactly, so it stays well above the fits).
Sizes (``FULL_CONFIG``): 10,000 training and 10,000 test samples per dimension, batch 256,
early-stopping patience ``--n-iter-no-change`` = 10 epochs, at most 2,000 epochs at ``D = 64``
and 25 at ``D = 784`` (the time budget; a fit that hits the cap is reported as such).

Command lines (from the repository root)::

    python benchmarks/estimator.py --quick      # D = 16 and 64, small data, < 1 minute
    python benchmarks/estimator.py              # D = 64 and 784, about 10-15 minutes on 2 cores

Outputs (``--out-dir``, default the repository root; ``--quick`` adds ``_quick`` to every file
name so it never overwrites the full results; ``--out`` puts the JSON elsewhere)::

    benchmarks/results/estimator.json              settings, machine, throughput, fits, curves, checks
    docs/images/estimator_convergence.png          held-out log-likelihood vs wall-clock seconds
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy and JAX load OpenBLAS (docstring)

if __package__ in (None, ""):  # run as ``python benchmarks/estimator.py``
    import _bootstrap  # noqa: F401

import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

import nica  # noqa: E402
from benchmarks import _harness  # noqa: E402
from benchmarks._harness import Target  # noqa: E402

N_LAYERS = 2
ACTIVATION = "smooth_leaky_relu"
PRIOR = "laplace"
GRADIENTS = ("relative", "equivariant", "euclidean", "autodiff")
OPTIMIZERS = ("adam", "sgd")
# Fitted per optimizer.  With plain SGD "equivariant" takes exactly the "relative" step (the
# optimizer is linear; tests/test_equivariant.py checks it), so it is fitted with Adam only.
FITTED_GRADIENTS = {"adam": ("relative", "equivariant", "euclidean"), "sgd": ("relative", "euclidean")}
CHECKED_GRADIENTS = ("relative", "equivariant")  # each compared with the euclidean fit
SLOPE = 0.2  # leaky-ReLU slope of the mixing network (benchmark recipe)
SCALE_RANGE = (0.5, 3.0)  # source scales (benchmark recipe)
RECIPE_MAX_DIM = 64  # largest D generated with make_segmented_mixture (see docstring)
CONDITION_NUMBER = 10.0  # condition number of each mixing matrix above RECIPE_MAX_DIM
AUTODIFF_FULL_BATCH_MAX_DIM = 128

# Per-dimension sizes: samples in the training set (the test set has as many), the epoch cap of
# every fit, and the screening epochs of the SGD learning-rate grid.
FULL_CONFIG = {
    64: {"n_samples": 10_000, "max_iter": 2000, "screen_epochs": 20},
    784: {"n_samples": 10_000, "max_iter": 25, "screen_epochs": 3},
}
QUICK_CONFIG = {
    16: {"n_samples": 2_000, "max_iter": 15, "screen_epochs": 3},
    64: {"n_samples": 2_000, "max_iter": 15, "screen_epochs": 3},
}


def _throughput_ratio(gradient):
    """Step throughput of ``gradient`` over the euclidean one's, per dimension."""

    def measured(result):
        out = {}
        for dim, entry in result["results"].items():
            tp = {g: entry["throughput"].get(g, {}).get("samples_per_second_median") for g in (gradient, "euclidean")}
            out[f"D={dim}"] = tp[gradient] / tp["euclidean"] if all(tp.values()) else None
        return out

    return measured


def _speedup(optimizer, gradient):
    """How many times sooner than the euclidean fit the ``gradient`` fit reaches the euclidean
    fit's best held-out log-likelihood (less the tolerance), per dimension: 0 when it never
    does, ``None`` when a fit is missing."""

    def measured(result):
        out = {}
        for dim, entry in result["results"].items():
            check = entry["checks"][optimizer].get(gradient, {})
            if "target" not in check:
                out[f"D={dim}"] = None
            elif check["relative_seconds_to_target"] is None:
                out[f"D={dim}"] = 0.0
            else:
                out[f"D={dim}"] = check["euclidean_seconds_to_target"] / check["relative_seconds_to_target"]
        return out

    return measured


TARGETS = (
    *(
        Target(f"{g} step throughput / euclidean's", _throughput_ratio(g), ">", 1.0)
        for g in ("relative", "equivariant")
    ),
    *(
        Target(
            f"{optimizer} {g}: reaches the euclidean fit's best held-out log-likelihood, times sooner",
            _speedup(optimizer, g),
            ">",
            1.0,
        )
        for optimizer in ("adam", "sgd")
        for g in ("relative", "equivariant")
        if g in FITTED_GRADIENTS[optimizer]
    ),
)


def default_config(dim, quick):
    """Sizes for a dimension not in the tables: scale the epoch cap with the cost of an epoch."""
    table = QUICK_CONFIG if quick else FULL_CONFIG
    if dim in table:
        return dict(table[dim])
    if quick:
        return {"n_samples": 2_000, "max_iter": 15, "screen_epochs": 3}
    return {"n_samples": 10_000, "max_iter": 2000 if dim <= 128 else 25, "screen_epochs": 20 if dim <= 128 else 3}


# ------------------------------------------------------------------------------------------------
# data


def haar_orthogonal(rng, dim):
    """A Haar-distributed random orthogonal matrix (QR of a Gaussian matrix, signs fixed)."""
    Q, R = np.linalg.qr(rng.standard_normal((dim, dim)))
    return Q * np.sign(np.diag(R))


def conditioned_matrix(rng, dim, condition_number):
    """``U diag(σ) Vᵀ`` with Haar ``U``, ``V`` and ``σ`` geometric from ``√κ`` down to ``1/√κ``."""
    sigma = np.geomspace(np.sqrt(condition_number), 1.0 / np.sqrt(condition_number), dim)
    return (haar_orthogonal(rng, dim) * sigma) @ haar_orthogonal(rng, dim).T


def true_log_likelihood(S, scales, mixing, slope):
    """Exact log-likelihood of ``x = A_L σ(… σ(A_1 s))`` for sources ``S`` (one segment).

    ``log p(x) = Σ_i log p_i(s_i) − Σ_l log|det A_l| − Σ_{l<L} Σ_i log σ'(h_{l,i})``, with
    ``s_i`` Laplace of standard deviation ``scales[i]`` and ``h_l`` the pre-activations.
    """
    b = np.asarray(scales) / np.sqrt(2.0)  # Laplace scale parameter of each source
    ll = np.sum(-np.log(2.0 * b) - np.abs(S) / b, axis=1)
    ll -= sum(np.linalg.slogdet(A)[1] for A in mixing)
    H = S
    for A in mixing[:-1]:
        H = H @ A.T
        ll -= np.log(slope) * np.sum(H < 0, axis=1)
        H = np.where(H >= 0, H, slope * H)
    return ll


def make_data(dim, n_samples, seed):
    """Training and test observations (float32) and a description of how they were made."""
    if dim <= RECIPE_MAX_DIM:
        data = nica.datasets.make_segmented_mixture(
            n_segments=1,
            n_per_segment=n_samples,
            n_components=dim,
            n_layers=N_LAYERS,
            scale_range=SCALE_RANGE,
            slope=SLOPE,
            random_state=seed,
        )
        X_train, X_test, S_test = data.X_train, data.X_test, data.S_test
        scales, mixing = data.scales[0], data.mixing
        recipe = (
            f"nica.datasets.make_segmented_mixture(n_segments=1, n_per_segment={n_samples}, "
            f"n_components={dim}, n_layers={N_LAYERS}, random_state={seed}) "
            "(segment-modulated benchmark recipe)"
        )
    else:
        rng = np.random.RandomState(seed)
        scales = rng.uniform(*SCALE_RANGE, size=dim)
        mixing = [conditioned_matrix(rng, dim, CONDITION_NUMBER) for _ in range(N_LAYERS)]
        noise = lambda: rng.laplace(0.0, 1.0 / np.sqrt(2.0), size=(n_samples, dim))  # noqa: E731
        S_train, S_test = scales * noise(), scales * noise()
        X_train = nica.datasets.apply_mixing(S_train, mixing, SLOPE)
        X_test = nica.datasets.apply_mixing(S_test, mixing, SLOPE)
        recipe = (
            f"Benchmark-recipe sources (one segment, Laplace, scales U{SCALE_RANGE}) and "
            f"leaky-ReLU network (slope {SLOPE}, {N_LAYERS} matrices), but each mixing matrix is "
            f"U diag(sigma) V^T with Haar-orthogonal U, V and geometric sigma of condition "
            f"number {CONDITION_NUMBER:g}, instead of the 10,000-SVD condition threshold"
        )
    return {
        "X_train": X_train.astype(np.float32),
        "X_test": X_test.astype(np.float32),
        "info": {
            "recipe": recipe,
            "n_train": int(X_train.shape[0]),
            "n_test": int(X_test.shape[0]),
            "dtype": "float32",
            "mixing_condition_numbers": [float(np.linalg.cond(A)) for A in mixing],
            "true_test_log_likelihood": float(np.mean(true_log_likelihood(S_test, scales, mixing, SLOPE))),
        },
    }


# ------------------------------------------------------------------------------------------------
# throughput of the training step


def compile_steps(gradient, X, batch_size, n_steps, seed):
    """``n_steps`` Adam steps of ``nica.make_train_step`` scanned in one call, compiled ahead of time.

    Returns ``(call, compile_seconds)``; ``call()`` runs the steps from the same initial state on
    the first ``n_steps * batch_size`` rows of ``X`` and blocks until the result is ready.
    """
    dim = X.shape[1]
    optimizer = optax.adam(1e-3)
    step = nica.make_train_step(optimizer, activation=ACTIVATION, prior=PRIOR, gradient=gradient)

    def run(state, batches):
        return jax.lax.scan(step, state, batches)

    params = nica.init_params(jax.random.key(seed), dim, N_LAYERS, dtype=jnp.float32)
    state = nica.init_train_state(optimizer, params)
    batches = jnp.asarray(X[: n_steps * batch_size].reshape(n_steps, batch_size, dim))
    start = time.perf_counter()
    compiled = jax.jit(run).lower(state, batches).compile()
    compile_seconds = time.perf_counter() - start
    return (lambda: jax.block_until_ready(compiled(state, batches))), compile_seconds


def measure_throughput(X, dim, settings, log):
    """Step throughput (samples/s) of the three gradients at ``dim``.

    Every function is compiled and called once first; the timed calls are then interleaved
    (relative, euclidean, autodiff, relative, ...) so that a change of load on a shared machine
    affects all of them alike.  Autodiff gets fewer steps and calls, and above
    ``AUTODIFF_FULL_BATCH_MAX_DIM`` a smaller batch (module docstring).
    """
    B = settings["batch_size"]
    plans, results = {}, {}
    for gradient in GRADIENTS:
        plan = {"batch_size": B, "steps_per_call": settings["throughput_steps"], "repeats": settings["repeats"]}
        if gradient == "autodiff":
            small = dim <= AUTODIFF_FULL_BATCH_MAX_DIM
            plan.update(steps_per_call=2 if small else 1, repeats=min(settings["repeats"], 3 if small else 2))
            if not small:
                plan["batch_size"] = min(B, settings["autodiff_batch_size"])
                plan["note"] = (
                    f"timed on {plan['batch_size']} samples per step: its cost per sample, "
                    f"O(D^3), does not depend on the batch, and a {B}-sample step would take "
                    f"about {B}/{plan['batch_size']} times as long"
                )
            memory_gb = 8 * plan["batch_size"] * dim * dim * 4 / 1e9  # a generous 8 Jacobian-sized arrays
            if memory_gb > settings["memory_limit_gb"]:
                results[gradient] = {
                    "skipped": f"predicted memory {memory_gb:.1f} GB > --memory-limit-gb {settings['memory_limit_gb']}"
                }
                log(f"  throughput {gradient:9s} skipped: {results[gradient]['skipped']}")
                continue
        plan["call"], plan["compile_seconds"] = compile_steps(
            gradient, X, plan["batch_size"], plan["steps_per_call"], settings["seed"]
        )
        plan["call"]()  # warm-up
        plan["call_seconds"] = []
        plans[gradient] = plan
    for _ in range(max(plan["repeats"] for plan in plans.values())):
        for plan in plans.values():
            if len(plan["call_seconds"]) < plan["repeats"]:
                start = time.perf_counter()
                plan["call"]()
                plan["call_seconds"].append(time.perf_counter() - start)
    for gradient, plan in plans.items():
        seconds = plan["call_seconds"]
        samples = plan["steps_per_call"] * plan["batch_size"]
        result = {k: v for k, v in plan.items() if k not in ("call", "repeats")}
        result.update(
            samples_per_second_median=samples / float(np.median(seconds)),
            samples_per_second_best=samples / min(seconds),
            step_seconds_median=float(np.median(seconds)) / plan["steps_per_call"],
        )
        if gradient == "autodiff":
            result["predicted_step_seconds_at_batch_size"] = B / result["samples_per_second_median"]
        results[gradient] = result
        log(
            f"  throughput {gradient:9s} B={plan['batch_size']:4d}: {result['samples_per_second_median']:12,.0f} "
            f"samples/s (step {1e3 * result['step_seconds_median']:9.2f} ms, compile {plan['compile_seconds']:.1f} s)"
        )
    return results


# ------------------------------------------------------------------------------------------------
# fits


def make_model(gradient, optimizer, learning_rate, max_iter, settings):
    """The estimator every fit uses; only the compared options change between contenders."""
    return nica.NonlinearICA(
        n_layers=N_LAYERS,
        activation=ACTIVATION,
        prior=PRIOR,
        gradient=gradient,
        optimizer=optimizer,
        learning_rate=learning_rate,
        batch_size=settings["batch_size"],
        max_iter=max_iter,
        n_iter_no_change=settings["n_iter_no_change"],
        random_state=settings["seed"],
    )


def run_fit(data, gradient, optimizer, learning_rate, max_iter, settings):
    """Fit once, timed; return the record (curves, epochs, held-out scores, warnings)."""
    model = make_model(gradient, optimizer, learning_rate, max_iter, settings)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        start = time.perf_counter()
        model.fit(data["X_train"])
        seconds = time.perf_counter() - start
    scores = [float(v) for v in model.validation_scores_]
    epoch_seconds = seconds / model.n_iter_
    n_train = data["X_train"].shape[0]
    n_fit = n_train - max(1, int(round(model.validation_fraction * n_train)))
    samples_per_epoch = (n_fit // settings["batch_size"]) * settings["batch_size"]
    diverged = len(scores) < model.n_iter_  # a diverged epoch records no validation score
    return {
        "gradient": gradient,
        "optimizer": optimizer,
        "learning_rate": learning_rate,
        "max_iter": max_iter,
        "fit_seconds": seconds,
        "n_iter": int(model.n_iter_),
        "best_iter": int(model.best_iter_),
        "early_stopped": bool(not diverged and model.n_iter_ < max_iter),
        "diverged": bool(diverged),
        "warnings": [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)],
        "seconds_per_epoch": epoch_seconds,
        "fit_samples_per_second": samples_per_epoch / epoch_seconds,
        "seconds_to_best": model.best_iter_ * epoch_seconds,
        "best_validation_score": max(scores) if scores else None,
        "test_score": float(model.score(data["X_test"])),
        "epoch_end_seconds": [(k + 1) * epoch_seconds for k in range(len(scores))],
        "validation_scores": scores,
        "loss_curve": [float(v) for v in model.loss_curve_],
    }


def stopped_by(fit):
    """Why a fit ended: "divergence", "patience" (early stopping) or "max_iter"."""
    return "divergence" if fit["diverged"] else ("patience" if fit["early_stopped"] else "max_iter")


def describe(fit):
    state = stopped_by(fit)
    best = fit["best_validation_score"]
    return (
        f"lr={fit['learning_rate']:g}: {fit['fit_seconds']:7.1f} s, {fit['n_iter']:3d} epochs "
        f"({state}), best epoch {fit['best_iter']:3d}, held-out "
        f"{'n/a' if best is None else f'{best:.3f}'}, test {fit['test_score']:.3f}"
    )


def fit_tuned(data, optimizer, settings, log):
    """Relative and euclidean fits with ``optimizer``, each at its best rate of the grid
    (module docstring)."""
    fits, screening = {}, []
    grid = sorted(settings[f"{optimizer}_lrs"])
    for gradient in FITTED_GRADIENTS[optimizer]:
        screened = []
        for lr in grid:  # also compiles the epoch of every rate, so the refits below are warm
            result = run_fit(data, gradient, optimizer, lr, settings["screen_epochs"], settings)
            screened.append(result)
            screening.append(
                {
                    k: result[k]
                    for k in (
                        "gradient",
                        "learning_rate",
                        "n_iter",
                        "diverged",
                        "best_validation_score",
                        "fit_seconds",
                        "validation_scores",
                    )
                }
            )
        usable = [r for r in screened if r["best_validation_score"] is not None]
        if not usable:
            log(f"  {optimizer:4s} {gradient:9s} every rate of the grid diverged in its first epoch")
            fits[gradient] = None
            continue
        chosen = max(usable, key=lambda r: r["best_validation_score"])["learning_rate"]
        log(
            f"  {optimizer:4s} {gradient:9s} screening ({settings['screen_epochs']} epochs): "
            + ", ".join(
                f"{r['learning_rate']:g}: "
                + ("diverged" if r["best_validation_score"] is None else f"{r['best_validation_score']:.2f}")
                for r in screened
            )
            + f" -> lr={chosen:g}"
        )
        fit = run_fit(data, gradient, optimizer, chosen, settings["max_iter"], settings)
        log(f"  {optimizer:4s} {gradient:9s} {describe(fit)}")
        smaller = [lr for lr in grid if lr < chosen]
        if fit["diverged"] and smaller:
            fallback = run_fit(data, gradient, optimizer, smaller[-1], settings["max_iter"], settings)
            log(f"  {optimizer:4s} {gradient:9s} refit diverged, next smaller rate: {describe(fallback)}")
            better = max(
                (fit, fallback),
                key=lambda r: -np.inf if r["best_validation_score"] is None else r["best_validation_score"],
            )
            other = fallback if better is fit else fit
            better = dict(better, alternative=other)
            fit = better
        fit["selection"] = f"best of grid {grid} after {settings['screen_epochs']} screening epochs" + (
            ", then the better of it and the next smaller rate (the refit diverged)" if "alternative" in fit else ""
        )
        fits[gradient] = fit
    return fits, screening


# ------------------------------------------------------------------------------------------------
# checks


def first_time_reaching(fit, target):
    """Wall-clock seconds at the end of the first epoch whose held-out score is ≥ ``target``."""
    for seconds, score in zip(fit["epoch_end_seconds"], fit["validation_scores"]):
        if score >= target:
            return seconds
    return None


def compare(fits, dim, tolerance_per_dim, gradient="relative"):
    """Does the ``gradient`` fit reach the euclidean fit's best held-out score, faster?"""
    rel, euc = fits.get(gradient), fits.get("euclidean")
    if rel is None or euc is None or euc["best_validation_score"] is None:
        return {"status": "MISS", "reason": "a fit is missing or diverged in its first epoch"}
    tolerance = tolerance_per_dim * dim
    target = euc["best_validation_score"] - tolerance
    t_rel, t_euc = first_time_reaching(rel, target), first_time_reaching(euc, target)
    passed = t_rel is not None and t_rel < t_euc
    return {
        "gradient": gradient,
        "status": "PASS" if passed else "MISS",
        "target": target,
        "tolerance": tolerance,
        "relative_best": rel["best_validation_score"],
        "euclidean_best": euc["best_validation_score"],
        "relative_seconds_to_target": t_rel,
        "euclidean_seconds_to_target": t_euc,
        "speedup": (t_euc / t_rel) if passed else None,
        "relative_test_score": rel["test_score"],
        "euclidean_test_score": euc["test_score"],
        "relative_fit_seconds": rel["fit_seconds"],
        "relative_stopped_by": stopped_by(rel),
        "euclidean_stopped_by": stopped_by(euc),
        "euclidean_fit_seconds": euc["fit_seconds"],
    }


def autodiff_prediction(throughput, fits_by_optimizer):
    """Predicted autodiff fit time: the euclidean fit's epochs at autodiff's measured speed."""
    auto = throughput.get("autodiff", {})
    if "samples_per_second_median" not in auto:
        return {"skipped": auto.get("skipped", "autodiff not measured")}
    out = {}
    for optimizer, fits in fits_by_optimizer.items():
        euc = fits.get("euclidean")
        if euc is None:
            continue
        samples = euc["fit_samples_per_second"] * euc["seconds_per_epoch"] * euc["n_iter"]
        out[optimizer] = {
            "epochs": euc["n_iter"],
            "predicted_fit_seconds": samples / auto["samples_per_second_median"],
            "euclidean_fit_seconds": euc["fit_seconds"],
        }
    return out


# ------------------------------------------------------------------------------------------------
# output


def plot_convergence(results, path, quick):
    """Held-out log-likelihood against wall-clock seconds: rows are dimensions, columns optimizers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dims = list(results)
    colors = {"relative": "C0", "equivariant": "C2", "euclidean": "C3"}
    fig, axes = plt.subplots(len(dims), len(OPTIMIZERS), figsize=(11, 3.8 * len(dims)), squeeze=False)
    for row, dim in enumerate(dims):
        entry = results[dim]
        for col, optimizer in enumerate(OPTIMIZERS):
            ax = axes[row][col]
            fits = entry["fits"][optimizer]
            lows, highs = [], []
            for gradient in FITTED_GRADIENTS[optimizer]:
                fit = fits.get(gradient)
                if fit is None or not fit["validation_scores"]:
                    continue
                if "alternative" in fit and fit["alternative"]["validation_scores"]:
                    alt = fit["alternative"]
                    ax.plot(
                        alt["epoch_end_seconds"],
                        alt["validation_scores"],
                        color=colors[gradient],
                        lw=0.8,
                        ls=":",
                        label=f"{gradient} (lr={alt['learning_rate']:g}, not kept)",
                    )
                t, v = fit["epoch_end_seconds"], fit["validation_scores"]
                state = stopped_by(fit)
                ax.plot(
                    t,
                    v,
                    color=colors[gradient],
                    lw=1.6,
                    marker="." if len(t) < 40 else None,
                    label=f"{gradient} (lr={fit['learning_rate']:g}, {fit['n_iter']} epochs, {state})",
                )
                best = fit["best_iter"] - 1
                ax.plot(t[best], v[best], "o", color=colors[gradient], ms=6, mfc="none")
                lows.append(np.percentile(v, 10) if len(v) > 3 else min(v))
                highs.append(max(v))
            checks = entry["checks"][optimizer]
            check = checks.get("relative", {})
            if check.get("target") is not None:
                verdicts = ", ".join(f"{g}: {c['status']}" for g, c in checks.items())
                ax.axhline(
                    check["target"],
                    color="0.5",
                    lw=0.8,
                    ls="--",
                    label=f"euclidean best - {check['tolerance']:.2g} ({verdicts})",
                )
            true_ll = entry["data"]["true_test_log_likelihood"]
            if lows:
                low, high = min(lows), max(highs)
                pad = 0.08 * max(high - low, 1e-3)
                top = high + pad
                if low - pad < true_ll < top + 4 * pad:
                    ax.axhline(true_ll, color="k", lw=0.8, ls="-.", label="true model (test set)")
                    top = max(top, true_ll + pad)
                else:
                    ax.set_title(f"true model: {true_ll:.1f} (off scale)", fontsize=8, loc="right")
                ax.set_ylim(low - pad, top)
            ax.set_title(f"D = {dim}, {optimizer}", loc="left")
            ax.set_xlabel("wall-clock seconds of fit (compilation excluded)")
            ax.set_ylabel("held-out log-likelihood (nats/sample)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(
        "NonlinearICA: relative (weights' or group's coordinates) vs euclidean gradient"
        + (" (quick run)" if quick else "")
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def summary(results, log):
    """Print the throughput and convergence tables and the PASS/MISS checks."""
    log("\nThroughput (samples/s; step = jitted make_train_step scan, fit = NonlinearICA.fit epochs incl. validation)")
    log(f"{'D':>5} {'gradient':>11} {'batch':>6} {'step':>12} {'fit adam':>12} {'fit sgd':>12}")
    for dim, entry in results.items():
        for gradient in GRADIENTS:
            tp = entry["throughput"].get(gradient, {})
            step = tp.get("samples_per_second_median")
            fit_tp = []
            for optimizer in OPTIMIZERS:
                fit = entry["fits"][optimizer].get(gradient)
                fit_tp.append(f"{fit['fit_samples_per_second']:12,.0f}" if fit else f"{'-':>12}")
            log(
                f"{dim:>5} {gradient:>11} {tp.get('batch_size', '-'):>6} "
                f"{(f'{step:12,.0f}' if step else 'skipped'):>12} {fit_tp[0]} {fit_tp[1]}"
            )
    log(
        "\nTime to converge (early stopping on the 10% validation split; held-out = best validation "
        "log-likelihood, test = score on the test set)"
    )
    log(
        f"{'D':>5} {'opt':>5} {'gradient':>11} {'lr':>7} {'fit s':>8} {'epochs':>7} {'best':>5} "
        f"{'s/epoch':>8} {'held-out':>10} {'test':>10} {'stopped by':>11}"
    )
    for dim, entry in results.items():
        for optimizer in OPTIMIZERS:
            for gradient in FITTED_GRADIENTS[optimizer]:
                fit = entry["fits"][optimizer].get(gradient)
                if fit is None:
                    log(f"{dim:>5} {optimizer:>5} {gradient:>10}  (every rate diverged)")
                    continue
                state = stopped_by(fit)
                best = fit["best_validation_score"]
                log(
                    f"{dim:>5} {optimizer:>5} {gradient:>11} {fit['learning_rate']:7.0e} {fit['fit_seconds']:8.1f} "
                    f"{fit['n_iter']:7d} {fit['best_iter']:5d} {fit['seconds_per_epoch']:8.3f} "
                    f"{(f'{best:10.3f}' if best is not None else 'n/a'):>10} {fit['test_score']:10.3f} {state:>11}"
                )
            pred = entry["autodiff_prediction"].get(optimizer)
            if pred:
                log(
                    f"{dim:>5} {optimizer:>5} {'autodiff':>10} {'':>7} {pred['predicted_fit_seconds']:8.1f}"
                    f" {pred['epochs']:7d}   (predicted: euclidean's epochs at autodiff's step throughput)"
                )
        log(f"{'':>5} true model, test set: {entry['data']['true_test_log_likelihood']:.3f}")


def main(argv=None):
    parser = _harness.parser(
        __doc__, "D = 16 and 64, small data, few epochs (< 1 min)", "OUT/benchmarks/results/estimator[_quick].json"
    )
    parser.add_argument("--dims", type=int, nargs="+", help="dimensions (default 64 784; quick 16 64)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument(
        "--adam-lrs",
        type=float,
        nargs="+",
        default=[1e-3, 3e-3, 1e-2],
        help="Adam learning-rate grid; each gradient gets its best rate",
    )
    parser.add_argument(
        "--sgd-lrs",
        type=float,
        nargs="+",
        default=[1e-3, 3e-3, 1e-2, 3e-2, 1e-1],
        help="SGD learning-rate grid; each gradient gets its best rate",
    )
    parser.add_argument("--n-iter-no-change", type=int, default=10, help="early-stopping patience (epochs)")
    parser.add_argument(
        "--ll-tolerance", type=float, default=1e-3, help="'same held-out log-likelihood' tolerance, nats per dimension"
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per throughput point")
    parser.add_argument("--throughput-steps", type=int, default=20, help="training steps per timed call")
    parser.add_argument(
        "--autodiff-batch-size", type=int, default=16, help=f"autodiff's batch above D = {AUTODIFF_FULL_BATCH_MAX_DIM}"
    )
    parser.add_argument("--memory-limit-gb", type=float, default=4.0, help="skip autodiff above this")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=_harness.REPO_ROOT,
        help="root of the outputs: JSON under OUT/benchmarks/results, PNG under OUT/docs/images",
    )
    args = parser.parse_args(argv)

    start_all = time.perf_counter()
    dims = args.dims or (list(QUICK_CONFIG) if args.quick else list(FULL_CONFIG))
    json_path = _harness.output_path(args, args.out_dir / "benchmarks" / "results", "estimator")
    png_path = args.out_dir / "docs" / "images" / f"estimator_convergence{'_quick' if args.quick else ''}.png"
    log = _harness.log

    machine = _harness.machine_info()
    log(
        f"nica {nica.__version__}, jax {jax.__version__}, {machine['cpu_model']}, "
        f"{machine['cpus_available']} CPUs available, load {machine['load_average_at_start']}"
    )
    base = {
        "batch_size": args.batch_size,
        "adam_lrs": list(args.adam_lrs),
        "sgd_lrs": list(args.sgd_lrs),
        "n_iter_no_change": args.n_iter_no_change,
        "repeats": args.repeats,
        "throughput_steps": 2 if args.quick else args.throughput_steps,
        "autodiff_batch_size": args.autodiff_batch_size,
        "memory_limit_gb": args.memory_limit_gb,
        "seed": args.seed,
    }
    if args.quick:
        base["repeats"] = min(args.repeats, 3)
        base["sgd_lrs"] = [1e-3, 1e-2] if args.sgd_lrs == parser.get_default("sgd_lrs") else list(args.sgd_lrs)
        base["adam_lrs"] = [1e-3, 1e-2] if args.adam_lrs == parser.get_default("adam_lrs") else list(args.adam_lrs)
    results = {}
    for dim in dims:
        settings = dict(base, **default_config(dim, args.quick))
        log(
            f"\nD = {dim}: {settings['n_samples']} training samples, max_iter {settings['max_iter']}, "
            f"batch {settings['batch_size']}"
        )
        start = time.perf_counter()
        data = make_data(dim, settings["n_samples"], args.seed)
        data["info"]["seconds"] = time.perf_counter() - start
        log(
            f"  data: {data['info']['seconds']:.1f} s, mixing condition numbers "
            f"{[round(c, 1) for c in data['info']['mixing_condition_numbers']]}, "
            f"true test log-likelihood {data['info']['true_test_log_likelihood']:.3f}"
        )
        X_std = (data["X_train"] - data["X_train"].mean(0)) / data["X_train"].std(0)  # as whiten="standardize"
        throughput = measure_throughput(X_std.astype(np.float32), dim, settings, log)
        fits, screening = {}, {}
        for optimizer in OPTIMIZERS:
            fits[optimizer], screening[optimizer] = fit_tuned(data, optimizer, settings, log)
        results[dim] = {
            "settings": settings,
            "data": data["info"],
            "throughput": throughput,
            "fits": fits,
            "screening": screening,
            "checks": {
                opt: {
                    g: compare(fits[opt], dim, args.ll_tolerance, g)
                    for g in CHECKED_GRADIENTS
                    if g in FITTED_GRADIENTS[opt]
                }
                for opt in OPTIMIZERS
            },
            "autodiff_prediction": autodiff_prediction(throughput, fits),
            "seconds": time.perf_counter() - start,
        }
        log(f"  D = {dim} done in {results[dim]['seconds']:.0f} s")

    summary(results, log)
    plot_convergence(results, png_path, args.quick)
    output = {
        "quick": args.quick,
        "protocol": __doc__,
        "model": {
            "n_layers": N_LAYERS,
            "activation": ACTIVATION,
            "prior": PRIOR,
            "whiten": "standardize",
            "dtype": "float32",
        },
        "ll_tolerance_per_dimension": args.ll_tolerance,
        "results": {str(dim): entry for dim, entry in results.items()},
        "wall_seconds": time.perf_counter() - start_all,
    }
    log("")
    output["checks"] = _harness.report_targets(TARGETS, output)
    _harness.write_result(json_path, output, benchmark="estimator", argv=argv, machine=machine)
    log(f"\nwrote {json_path} and {png_path}; total {output['wall_seconds']:.0f} s")


# ------------------------------------------------------------------------------------------------
# the page's table (docs/benchmarks.md)


def _rate(learning_rate):
    return f"{learning_rate:.0e}".replace("e-0", "e-")


def _fit_cell(fit, fastest, best):
    """Rate, fit time, epochs and best held-out log-likelihood; bold: the fit that reached the
    euclidean best soonest (``fastest``), the best held-out value of the column (``best``)."""
    seconds = f"{fit['fit_seconds']:.1f} s"
    score = fit["best_validation_score"]
    score = "n/a" if score is None else _harness.signed(f"{score:.{2 if abs(score) < 100 else 1}f}")
    epochs = f"{fit['n_iter']}" + (" (max_iter)" if stopped_by(fit) == "max_iter" else "")
    return (
        f"{_rate(fit['learning_rate'])}, {f'**{seconds}**' if fastest else seconds}, {epochs}, "
        f"{f'**{score}**' if best else score}"
    )


def _predicted(seconds):
    """Three significant digits, and no decimals (``197``, ``83``, ``13,400``)."""
    return f"≈ {round(seconds, 2 - int(np.floor(np.log10(seconds))) if seconds >= 100 else 0):,.0f} s (predicted)"


def tables(load):
    """Throughput and the tuned fits of every gradient, at each dimension of the full run."""
    result = load("estimator")
    rows = []
    for dim, entry in result["results"].items():
        columns = {}
        for optimizer in OPTIMIZERS:
            fits = {g: f for g, f in entry["fits"][optimizer].items() if f is not None}
            passed = {g: c for g, c in entry["checks"][optimizer].items() if c.get("status") == "PASS"}
            fastest = max(passed, key=lambda g: passed[g]["speedup"], default=None)
            best = max(fits, key=lambda g: fits[g]["best_validation_score"] or -np.inf, default=None)
            cells = {
                g: "(same step as relative)"
                if g not in FITTED_GRADIENTS[optimizer]
                else "(every rate diverged)"
                if g not in fits
                else _fit_cell(fits[g], g == fastest, g == best)
                for g in GRADIENTS[:-1]
            }
            prediction = entry["autodiff_prediction"].get(optimizer)
            cells["autodiff"] = _predicted(prediction["predicted_fit_seconds"]) if prediction else "not measured"
            columns[optimizer] = cells
        for gradient in GRADIENTS:
            tp = entry["throughput"][gradient]
            if "skipped" in tp:
                throughput = "skipped"
            else:
                batch = "" if tp["batch_size"] == entry["settings"]["batch_size"] else f" (B = {tp['batch_size']})"
                throughput = f"{tp['samples_per_second_median']:,.0f}{batch}"
            rows.append([dim, gradient, throughput, *(columns[optimizer][gradient] for optimizer in OPTIMIZERS)])
    header = [
        "D",
        "gradient",
        "step throughput (samples/s)",
        "Adam: rate, fit time, epochs, held-out ll",
        "SGD: rate, fit time, epochs, held-out ll",
    ]
    return {"estimator/fits": _harness.markdown_table(header, rows)}


if __name__ == "__main__":
    main()
