"""The ``nica`` command line.

::

    nica demo [--quick] [--figure PATH]
    nica fit DATA [--aux U] --model OUT [estimator options]
    nica transform MODEL DATA -o OUT
    nica inverse-transform MODEL DATA -o OUT
    nica score MODEL DATA [--aux U] [-o OUT]
    nica sample MODEL -n N -o OUT [--aux U | --label L]

Data files are ``.npy``, ``.npz`` (the array named ``X``, or the only one; ``file.npz:key``
picks another) or ``.csv`` (comma-separated numbers, an optional header line).  Errors print one
line on stderr and exit with status 2; nothing prints a traceback.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
import warnings

import numpy as np

_MODEL_FORMAT = "nica-model"


class CLIError(Exception):
    """An error to report as one line, without a traceback."""


# ---------------------------------------------------------------------------------------------
# files


def _split_key(path):
    if ".npz:" in path:
        path, key = path.rsplit(":", 1)
        return path, key
    return path, None


def read_array(path, *, numeric=True, name="data"):
    """Read a ``.npy``, ``.npz`` or ``.csv`` file into an array (2-D for numeric data)."""
    path, key = _split_key(path)
    if not os.path.isfile(path):
        raise CLIError(f"cannot read {name} file {path!r}: no such file")
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".npy":
            array = np.load(path, allow_pickle=False)
        elif ext == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                names = list(archive.keys())
                if key is None:
                    key = "X" if "X" in names else (names[0] if len(names) == 1 else None)
                if key is None or key not in names:
                    raise CLIError(f"{path!r} holds arrays {names}; name one as {path}:NAME")
                array = archive[key]
        elif ext == ".csv":
            array = _read_csv(path, numeric=numeric)
        else:
            raise CLIError(f"unsupported {name} file {path!r}: expected .npy, .npz or .csv")
    except CLIError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise CLIError(f"cannot read {name} file {path!r}: {exc}") from None
    if numeric:
        if array.dtype.kind not in "biuf":
            raise CLIError(f"{name} file {path!r} is not numeric (dtype {array.dtype})")
        if array.ndim == 1:
            array = array[:, None]
        if array.ndim != 2:
            raise CLIError(f"{name} file {path!r} must hold a 2-D array (samples × features); got shape {array.shape}")
    return array


def _read_csv(path, *, numeric):
    with open(path, newline="") as handle:
        rows = [row for row in csv.reader(handle) if row]
    if not rows:
        raise CLIError(f"CSV file {path!r} is empty")

    def as_float(cell):
        try:
            return float(cell)
        except ValueError:
            return None

    def numeric_row(row):
        return all(as_float(cell) is not None for cell in row)

    # A first line with no number is a header, except for label files whose every line is text.
    if all(as_float(cell) is None for cell in rows[0]) and (numeric or any(map(numeric_row, rows[1:]))):
        rows = rows[1:]
    if not rows:
        raise CLIError(f"CSV file {path!r} has a header but no data")
    width = len(rows[0])
    for i, row in enumerate(rows):
        if len(row) != width:
            raise CLIError(f"CSV file {path!r}: row {i + 1} has {len(row)} columns, expected {width}")
    if not numeric:
        values = [[cell.strip() for cell in row] for row in rows]
        array = np.array(values)
        converted = np.array([[as_float(c) for c in row] for row in values], dtype=object)
        if not any(v is None for v in converted.ravel()):
            array = converted.astype(float)
        return array[:, 0] if width == 1 else array
    out = np.empty((len(rows), width))
    for i, row in enumerate(rows):
        for j, cell in enumerate(row):
            value = as_float(cell)
            if value is None:
                raise CLIError(f"CSV file {path!r}: non-numeric value {cell!r} in row {i + 1}, column {j + 1}")
            out[i, j] = value
    return out


def write_array(path, array):
    """Write an array to ``.npy``, ``.npz`` (as ``X``) or ``.csv``."""
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".npy":
            np.save(path, array)
        elif ext == ".npz":
            np.savez(path, X=array)
        elif ext == ".csv":
            np.savetxt(path, np.atleast_2d(array.T).T, delimiter=",", fmt="%.17g")
        else:
            raise CLIError(f"unsupported output file {path!r}: expected .npy, .npz or .csv")
    except OSError as exc:
        raise CLIError(f"cannot write {path!r}: {exc}") from None


def save_model(path, estimator):
    import joblib

    import nica

    try:
        joblib.dump({"format": _MODEL_FORMAT, "version": nica.__version__, "estimator": estimator}, path)
    except OSError as exc:
        raise CLIError(f"cannot write model file {path!r}: {exc}") from None


def load_model(path):
    import joblib

    if not os.path.isfile(path):
        raise CLIError(f"cannot read model file {path!r}: no such file")
    try:
        payload = joblib.load(path)
    except Exception as exc:  # joblib raises many kinds on a file that is not a model
        raise CLIError(f"cannot read model file {path!r}: not a nica model ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != _MODEL_FORMAT:
        raise CLIError(f"{path!r} is not a nica model file")
    return payload["estimator"]


# ---------------------------------------------------------------------------------------------
# commands


def _check_features(model, X, path):
    if X.shape[1] != model.n_features_in_:
        raise CLIError(
            f"{path!r} has {X.shape[1]} features but the model was fitted on {model.n_features_in_}"
        )


def _model_data(args):
    model = load_model(args.model)
    X = read_array(args.data)
    _check_features(model, X, args.data)
    return model, X


def cmd_fit(args):
    import nica

    X = read_array(args.data)
    common = dict(
        n_layers=args.n_layers, activation=args.activation, prior=args.prior,
        learning_rate=args.learning_rate, batch_size=args.batch_size, max_iter=args.max_iter,
        whiten=False if args.whiten == "none" else args.whiten, gradient=args.gradient,
        random_state=args.random_state, verbose=args.verbose,
    )
    if args.aux is not None:
        u = read_array(args.aux, numeric=False, name="aux")
        if u.ndim == 2 and u.shape[1] == 1:
            u = u[:, 0]
        if u.shape[0] != X.shape[0]:
            raise CLIError(f"--aux has {u.shape[0]} rows but {args.data!r} has {X.shape[0]}")
        model = nica.ConditionalNonlinearICA(**common).fit(X, u)
    else:
        model = nica.NonlinearICA(**common).fit(X)
    save_model(args.model, model)
    print(f"fitted {type(model).__name__} on {X.shape[0]} samples × {X.shape[1]} features "
          f"in {model.n_iter_} epochs; saved to {args.model}")


def cmd_transform(args):
    model, X = _model_data(args)
    write_array(args.output, model.transform(X))


def cmd_inverse_transform(args):
    model, S = _model_data(args)
    write_array(args.output, model.inverse_transform(S))


def _read_aux(args, model, n_samples=None):
    if getattr(args, "aux", None) is None:
        return None
    u = read_array(args.aux, numeric=False, name="aux")
    if u.ndim == 2 and u.shape[1] == 1:
        u = u[:, 0]
    if n_samples is not None and u.shape[0] != n_samples:
        raise CLIError(f"--aux has {u.shape[0]} rows but the data have {n_samples}")
    if model.aux_type_ == "discrete" and u.dtype.kind == "f" and model.classes_.dtype.kind in "iu":
        if not np.all(u == np.round(u)):
            raise CLIError("--aux holds non-integer values but the model's segment labels are integers")
        u = u.astype(model.classes_.dtype)
    return u


def cmd_score(args):
    model, X = _model_data(args)
    if hasattr(model, "aux_type_"):
        ll = model.score_samples(X, _read_aux(args, model, X.shape[0]))
    else:
        if args.aux is not None:
            raise CLIError("--aux given but the model has no auxiliary variable")
        ll = model.score_samples(X)
    if args.output:
        write_array(args.output, ll)
    print(f"mean log-likelihood: {float(np.mean(ll)):.6f} nats per sample ({X.shape[0]} samples)")


def cmd_sample(args):
    model = load_model(args.model)
    if hasattr(model, "aux_type_"):
        if args.label is not None:
            label = np.asarray(args.label).astype(model.classes_.dtype) if model.aux_type_ == "discrete" \
                else float(args.label)
            X = model.sample(args.n_samples, y=label, random_state=args.random_state)
        else:
            X = model.sample(args.n_samples, y=_read_aux(args, model), random_state=args.random_state)
    else:
        if args.aux is not None or args.label is not None:
            raise CLIError("--aux/--label given but the model has no auxiliary variable")
        X = model.sample(args.n_samples, random_state=args.random_state)
    write_array(args.output, X)


def cmd_demo(args):
    """Segment-modulated nonlinear mixture → ConditionalNonlinearICA, MCC beside FastICA's."""
    import matplotlib

    matplotlib.use("Agg")
    from sklearn.decomposition import FastICA

    import nica
    from nica.datasets import make_segmented_mixture
    from nica.metrics import mean_corr_coef

    n_per_segment = 250 if args.quick else 1000
    n_components, n_layers = 5, 2
    print(f"nica demo: {n_components} sources, 40 segments × {n_per_segment} points, "
          f"mixed by a {n_layers}-layer leaky-ReLU network (the segment-modulated benchmark recipe)")
    data = make_segmented_mixture(n_segments=40, n_per_segment=n_per_segment, n_components=n_components,
                                  n_layers=n_layers, random_state=args.seed)
    X_train, X_test = data.X_train.astype(np.float32), data.X_test.astype(np.float32)
    start = time.perf_counter()
    model = nica.ConditionalNonlinearICA(**DEMO_SETTINGS, max_iter=60 if args.quick else 1000,
                                         random_state=args.seed, verbose=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_iter in --quick mode
        model.fit(X_train, data.u_train)
    fit_seconds = time.perf_counter() - start
    S_est = model.transform(X_test)
    mcc = mean_corr_coef(data.S_test, S_est)
    fast = mean_corr_coef(data.S_test, FastICA(random_state=args.seed).fit(data.X_train).transform(data.X_test))
    print(f"held-out MCC  ConditionalNonlinearICA: {mcc:.3f}   FastICA: {fast:.3f}")
    print(f"fit: {model.n_iter_} epochs in {fit_seconds:.1f} s; held-out log-likelihood "
          f"{model.score(X_test, data.u_test):.3f} nats/sample")
    from nica.plotting import plot_sources

    fig = plot_sources(data.S_test, S_est)
    os.makedirs(os.path.dirname(os.path.abspath(args.figure)), exist_ok=True)
    fig.savefig(args.figure, dpi=110)
    print(f"figure: {args.figure}")


# Hyperparameters recommended for the segment-modulated benchmark (docs/benchmarks.md).
DEMO_SETTINGS = dict(n_layers=4, whiten="unit-variance", learning_rate=1e-2, n_iter_no_change=30)


# ---------------------------------------------------------------------------------------------


def build_parser():
    parser = argparse.ArgumentParser(prog="nica", description="Nonlinear ICA with the relative gradient.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="fit a built-in synthetic nonlinear mixture and report MCC")
    demo.add_argument("--quick", action="store_true", help="smaller data and fewer epochs")
    demo.add_argument("--figure", default="nica_demo.png", help="where to write the figure")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=cmd_demo)

    fit = sub.add_parser("fit", help="fit a model to DATA and save it")
    fit.add_argument("data")
    fit.add_argument("--aux", help="auxiliary variable u (segment labels or values): fits ConditionalNonlinearICA")
    fit.add_argument("--model", required=True, help="output model file")
    fit.add_argument("--n-layers", type=int, default=3)
    fit.add_argument("--activation", default="smooth_leaky_relu",
                     choices=["smooth_leaky_relu", "tanh_linear", "leaky_relu"])
    fit.add_argument("--prior", default="laplace", choices=["laplace", "gaussian", "logistic", "hypsecant"])
    fit.add_argument("--learning-rate", type=float, default=1e-3)
    fit.add_argument("--batch-size", type=int, default=256)
    fit.add_argument("--max-iter", type=int, default=200)
    fit.add_argument("--whiten", default="standardize", choices=["standardize", "unit-variance", "none"])
    fit.add_argument("--gradient", default="relative", choices=["relative", "equivariant", "euclidean", "autodiff"],
                     help="relative: the O(B·D²) relative gradient (docs/theory.rst); "
                          "equivariant: the optimizer in the group's coordinates, "
                          "usually better with Adam while n_features <= batch size (docs/benchmarks.md)")
    fit.add_argument("--random-state", type=int, default=None)
    fit.add_argument("--verbose", type=int, default=0)
    fit.set_defaults(func=cmd_fit)

    for name, func, help_text in [("transform", cmd_transform, "sources of DATA"),
                                  ("inverse-transform", cmd_inverse_transform, "observations from sources")]:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("model")
        p.add_argument("data")
        p.add_argument("-o", "--output", required=True)
        p.set_defaults(func=func)

    score = sub.add_parser("score", help="exact log-likelihood of DATA")
    score.add_argument("model")
    score.add_argument("data")
    score.add_argument("--aux")
    score.add_argument("-o", "--output", help="write per-sample log-likelihoods here")
    score.set_defaults(func=cmd_score)

    sample = sub.add_parser("sample", help="draw samples from a fitted model")
    sample.add_argument("model")
    sample.add_argument("-n", "--n-samples", type=int, default=1)
    sample.add_argument("-o", "--output", required=True)
    sample.add_argument("--aux", help="one auxiliary value per sample")
    sample.add_argument("--label", help="one segment label (or value) for all samples")
    sample.add_argument("--random-state", type=int, default=None)
    sample.set_defaults(func=cmd_sample)
    return parser


def main(argv=None):
    """Entry point of the ``nica`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warning
        return _run(args)


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    print(f"nica: warning: {' '.join(str(message).split())}", file=sys.stderr)


def _run(args):
    try:
        args.func(args)
    except CLIError as exc:
        print(f"nica: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, TypeError) as exc:  # the estimators' own clear messages, on one line
        print(f"nica: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
