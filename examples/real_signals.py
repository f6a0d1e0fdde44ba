"""Nonlinear ICA of a real multichannel recording: nine accelerometer channels of the Daphnet data
===============================================================================================

Data: recording S06R02E0 of the Daphnet freezing-of-gait data set (Roggen, Plotnik & Hausdorff,
UCI, https://doi.org/10.24432/C56K78, CC BY 4.0): three tri-axial accelerometers (ankle,
thigh, trunk) worn by a person with Parkinson's disease during walking tasks, 64 Hz, 7,040
samples (110 s), integer readings in milli-g. A copy ships inside the ``aeon`` wheel, versions
1.0 to 1.6 (deprecated there, to be removed in aeon 1.7)::

    pip install nica[signals]        # or: pip install "aeon>=1.0,<1.7"

The example reads that CSV file directly and never imports aeon (nor downloads anything); it
exits with a message when the file is not there.

Method: the segment-modulated nonstationarity of nonlinear ICA (Hyvärinen & Morioka's TCL, and
the identifiable model of eq. 4): the recording is cut into segments of 2 s, the segment index
``u = t // 128`` is the auxiliary variable, and ``nica.ConditionalNonlinearICA`` fits sources
that are independent given ``u`` with a learned scale (and location) per segment and
component. The readings are dequantized (``+ U[0, 1)``) so that a density makes sense; the model
standardizes each channel itself. A random 20 % of the samples (of every segment) is held out
to score the fit: the exact conditional log-likelihood ``log p(x | u)`` per sample, in the
units of the dequantized readings, of a linear model (1 layer) and a nonlinear one (3 layers).

Saves ``real_signals.png``: the standardized channels and the recovered components over 20 s,
and the learned per-segment scales of the components (the nonstationarity the model uses).
The figure of the full run, committed with the documentation:

.. figure:: /images/examples/real_signals.png
   :alt: Daphnet channels, recovered components and learned per-segment scales (full run)

Run from the repository root::

    python examples/real_signals.py [--quick] [--out-dir DIR] [--seed N]

``--quick`` stops after 30 epochs (seconds); PNGs go to ``docs/images/examples/`` unless
``--out-dir`` says otherwise.
"""

import argparse
import importlib.util
import pathlib
import time
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

import nica  # noqa: E402

DEFAULT_OUT_DIR = pathlib.Path(__file__).resolve().parent.parent / "docs" / "images" / "examples"
DAPHNET_CSV = ("datasets", "data", "Daphnet_S06R02E0", "S06R02E0.csv")
INSTALL = 'pip install nica[signals]   (or: pip install "aeon>=1.0,<1.7")'
# sphinx_gallery_thumbnail_path = "images/examples/real_signals.png"
SAMPLING_HZ = 64
SEGMENT_LENGTH = 2 * SAMPLING_HZ  # samples per segment
WINDOW_SECONDS = (40, 60)  # the stretch drawn in the figure


def find_daphnet_csv():
    """The Daphnet CSV inside the installed aeon package, or None (aeon is not imported)."""
    spec = importlib.util.find_spec("aeon")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = pathlib.Path(list(spec.submodule_search_locations)[0]).joinpath(*DAPHNET_CSV)
    return path if path.is_file() else None


def load_daphnet(path):
    """Channel names and the (n_samples, 9) readings of a TimeEval-format Daphnet CSV."""
    with open(path) as handle:
        header = handle.readline().strip().split(",")
    names = header[1:-1]  # timestamp first, is_anomaly last
    X = np.loadtxt(path, delimiter=",", skiprows=1, usecols=range(1, len(header) - 1))
    return names, X


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="at most 30 epochs, seconds")
    parser.add_argument(
        "--out-dir",
        type=pathlib.Path,
        default=DEFAULT_OUT_DIR,
        help=f"where to write the PNG (default: {DEFAULT_OUT_DIR})",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise, split and models")
    return parser.parse_args(argv)


def plot(names, X, S, u, log_scale, held_out_score, path):
    start, stop = (SAMPLING_HZ * s for s in WINDOW_SECONDS)
    t = np.arange(start, stop) / SAMPLING_HZ
    n_channels = X.shape[1]
    fig = plt.figure(figsize=(12, 11), layout="constrained")
    grid = fig.add_gridspec(n_channels + 3, 2)
    for k in range(n_channels):
        left, right = fig.add_subplot(grid[k, 0]), fig.add_subplot(grid[k, 1])
        left.plot(t, X[start:stop, k], lw=0.7, color="tab:blue")
        right.plot(t, S[start:stop, k], lw=0.7, color="tab:red")
        left.set_ylabel(names[k], rotation=0, ha="right", va="center", fontsize=8)
        right.set_ylabel(f"$s_{{{k + 1}}}$", rotation=0, ha="right", va="center")
        for ax in (left, right):
            ax.tick_params(labelsize=7)
            if k < n_channels - 1:
                ax.set_xticklabels([])
    fig.axes[0].set_title("channels (standardized)")
    fig.axes[1].set_title("recovered components, nonlinear model")
    for ax in fig.axes[-2:]:
        ax.set_xlabel("time (s)")
    heat = fig.add_subplot(grid[n_channels + 1 :, :])
    image = heat.imshow(
        log_scale.T,
        aspect="auto",
        cmap="viridis",
        interpolation="nearest",
        extent=(0, u.max() + 1, n_channels + 0.5, 0.5),
    )
    heat.set(
        xlabel=f"segment u ({SEGMENT_LENGTH / SAMPLING_HZ:.0f} s each)",
        ylabel="component",
        title="learned log-scale of each component per segment (the nonstationarity used)",
    )
    heat.set_yticks(range(1, n_channels + 1))
    fig.colorbar(image, ax=heat, label="log scale")
    fig.suptitle(
        f"Daphnet S06R02E0, 9 accelerometer channels: ConditionalNonlinearICA with "
        f"u = segment, held-out log p(x | u) = {held_out_score:.2f} nats"
    )
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    path = find_daphnet_csv()
    if path is None:
        print(
            "This example needs the Daphnet recording that ships inside the aeon package "
            f"(versions 1.0 to 1.6), which is not installed here.\nInstall it with:  {INSTALL}"
        )
        return 0
    args.out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    names, counts = load_daphnet(path)
    X = counts + rng.uniform(size=counts.shape)  # dequantize the integer readings
    u = np.arange(X.shape[0]) // SEGMENT_LENGTH
    held_out = rng.random(X.shape[0]) < 0.2
    print(
        f"data  {X.shape[0]} samples x {X.shape[1]} channels ({SAMPLING_HZ} Hz, "
        f"{X.shape[0] / SAMPLING_HZ:.1f} s), {u.max() + 1} segments of {SEGMENT_LENGTH} samples, "
        f"{held_out.sum()} held out"
    )

    settings = dict(
        activation="tanh_linear",
        prior="laplace",
        learning_rate=3e-3,
        batch_size=128,
        max_iter=30 if args.quick else 1000,
        n_iter_no_change=20,
        random_state=args.seed,
    )
    print(f"ConditionalNonlinearICA({', '.join(f'{k}={v!r}' for k, v in settings.items())})")
    print(f"{'model':<10} {'layers':>6} {'epochs':>6} {'seconds':>7}  held-out log-lik")
    models = {}
    for name, n_layers in [("linear", 1), ("nonlinear", 3)]:
        start = time.perf_counter()
        with warnings.catch_warnings():
            if args.quick:  # the quick run stops at max_iter on purpose
                warnings.simplefilter("ignore", ConvergenceWarning)
            model = nica.ConditionalNonlinearICA(n_layers=n_layers, **settings)
            model.fit(X[~held_out], u[~held_out])
        seconds = time.perf_counter() - start
        score = model.score(X[held_out], u[held_out])
        models[name] = (model, score)
        print(f"{name:<10} {n_layers:>6} {model.n_iter_:>6} {seconds:>7.1f}  held-out log-lik {score:.3f}")

    model, score = models["nonlinear"]
    S = model.transform(X)
    log_scale = np.asarray(model.prior_params_["log_scale"])
    order = np.argsort(-log_scale.std(axis=0))  # most modulated components first
    S, log_scale = S[:, order], log_scale[:, order]
    standardized = (X - X.mean(axis=0)) / X.std(axis=0)
    out = args.out_dir / "real_signals.png"
    plot(names, standardized, S, u, log_scale, score, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    main()
