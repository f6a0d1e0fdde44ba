"""Linear ICA sanity check: a one-layer NonlinearICA recovers a linear Laplace mixture
===================================================================================

With ``n_layers=1`` the network is a single affine map ``s = W x + b`` and the exact
likelihood (eq. 3 of Gresele et al., 2020) is that of classical maximum-likelihood ICA, so on
a linear mixture of Laplace sources it must recover the sources up to permutation, sign and
scale, as FastICA does. The example draws such a mixture (``make_segmented_mixture`` with one
segment and one mixing matrix), fits ``NonlinearICA(n_layers=1)`` and
``sklearn.decomposition.FastICA`` on the training half, and prints for each, on the held-out
half,

* the mean correlation coefficient (MCC) between true and estimated sources, and
* the Amari distance of the total unmixing matrix to the true mixing ``A``: for nica
  ``model.components_`` (the whitening included, with FastICA's meaning), for FastICA
  ``FastICA().components_``.

It saves ``linear_ica_sources.png`` (true vs recovered sources, ``nica.plotting.plot_sources``)
and ``linear_ica_training.png`` (``nica.plotting.plot_training_curves``).

Run from the repository root::

    python examples/linear_ica.py [--quick] [--out-dir DIR] [--seed N]

``--quick`` uses fewer samples (a few seconds); PNGs go to ``docs/images/examples/`` unless
``--out-dir`` says otherwise.
"""

import argparse
import pathlib
import time

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.decomposition import FastICA  # noqa: E402

import nica  # noqa: E402
from nica.datasets import make_segmented_mixture  # noqa: E402
from nica.metrics import amari_distance, mean_corr_coef  # noqa: E402
from nica.plotting import plot_sources, plot_training_curves  # noqa: E402

DEFAULT_OUT_DIR = pathlib.Path(__file__).resolve().parent.parent / "docs" / "images" / "examples"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small data, a few seconds")
    parser.add_argument(
        "--out-dir",
        type=pathlib.Path,
        default=DEFAULT_OUT_DIR,
        help=f"where to write the PNGs (default: {DEFAULT_OUT_DIR})",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and the models")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    n_samples = 2000 if args.quick else 10000
    n_components = 5

    data = make_segmented_mixture(
        n_segments=1,
        n_per_segment=n_samples,
        n_components=n_components,
        n_layers=1,
        source="laplace",
        random_state=args.seed,
    )
    A = data.mixing[0]
    print(
        f"Linear Laplace mixture: {n_samples} training and {n_samples} held-out samples, "
        f"D = {n_components}, condition number of A {np.linalg.cond(A):.2f}."
    )

    start = time.perf_counter()
    model = nica.NonlinearICA(n_layers=1, prior="laplace", random_state=args.seed).fit(data.X_train)
    seconds = time.perf_counter() - start
    W_total = model.components_
    mcc_nica = mean_corr_coef(data.S_test, model.transform(data.X_test))
    amari_nica = amari_distance(W_total, A)

    fastica = FastICA(whiten="unit-variance", random_state=args.seed).fit(data.X_train)
    mcc_fastica = mean_corr_coef(data.S_test, fastica.transform(data.X_test))
    amari_fastica = amari_distance(fastica.components_, A)

    print(
        f"NonlinearICA(n_layers=1): {model.n_iter_} epochs in {seconds:.1f} s, "
        f"held-out log-likelihood {model.score(data.X_test):.3f} nats/sample"
    )
    print(f"{'method':<12} {'MCC':>7} {'Amari':>7}")
    print(f"{'nica':<12} {mcc_nica:7.4f} {amari_nica:7.4f}")
    print(f"{'FastICA':<12} {mcc_fastica:7.4f} {amari_fastica:7.4f}")

    fig = plot_sources(data.S_test, model.transform(data.X_test))
    fig.suptitle(
        f"Linear ICA with NonlinearICA(n_layers=1), held-out data: MCC = {mcc_nica:.3f}, Amari = {amari_nica:.3f}"
    )
    path = args.out_dir / "linear_ica_sources.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")

    fig = plot_training_curves(model)
    path = args.out_dir / "linear_ica_training.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
