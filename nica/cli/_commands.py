"""The command line's commands: ``fit``, ``transform``, ``inverse-transform``, ``score``,
``sample`` and ``demo``."""

from __future__ import annotations

import contextlib
import importlib
import os
import time
import warnings

import jax
import numpy as np
from sklearn.decomposition import FastICA

import nica
from nica._src.distributed import is_writer
from nica._src.interrupts import DeferredInterrupts
from nica.cli._files import (
    DATA_EXTENSIONS,
    CLIError,
    check_distinct,
    check_fit_outputs,
    check_output,
    file_identity,
    labels_from_text,
    read_array,
    warn_if_not_finite,
    write_array,
    write_file,
)
from nica.cli._models import (
    continuous_from_text,
    label_from_text,
    load_model,
    read_aux,
    read_estimator_file,
    save_model,
)
from nica.datasets import make_segmented_mixture
from nica.metrics import mean_corr_coef
from nica.plotting import plot_sources

# Extension modules that JAX loads only when it first lowers a program (its MLIR dialects),
# loaded with this module instead: nica.cli._main imports it with SIGINT held, and a
# KeyboardInterrupt raised inside an extension module's C++ start-up aborts the process.
_FIRST_LOWERING_MODULES = ("jaxlib.mlir.dialects.mhlo",)
for _name in _FIRST_LOWERING_MODULES:
    with contextlib.suppress(ImportError):
        importlib.import_module(_name)

__all__ = [
    "cmd_fit",
    "cmd_transform",
    "cmd_inverse_transform",
    "cmd_score",
    "cmd_sample",
    "cmd_demo",
    "load_checkpoint",
    "DEMO_SETTINGS",
]


def _check_features(model, X, path, sources=False):
    if sources:  # inverse-transform: one column per source (n_components_, fewer with --n-components)
        n_sources = getattr(model, "n_components_", model.n_features_in_)
        if X.shape[1] != n_sources:
            raise CLIError(f"{path!r} has {X.shape[1]} columns but the model has {n_sources} sources")
        return
    if X.shape[1] != model.n_features_in_:
        raise CLIError(f"{path!r} has {X.shape[1]} features but the model was fitted on {model.n_features_in_}")


def _model_data(args, sources=False):
    model = load_model(args.model)
    X = read_array(args.data)
    _check_features(model, X, args.data, sources)
    return model, X


def _check_outputs(args, inputs):
    check_output(args.output, "output file", DATA_EXTENSIONS)
    check_distinct(args.output, inputs, "output file")


def load_checkpoint(path):
    """A fit to resume: a checkpoint written by ``--checkpoint`` or a model file written by
    ``--model`` (both nica's file format, read without unpickling anything)."""
    return read_estimator_file(path, "checkpoint file")


def _objective(terms):
    """The likelihood plus the ``(name, weight)`` terms of ``--objective-term``."""
    objective = nica.objectives.likelihood()
    for name, weight in terms:
        objective = objective + weight * nica.objectives.get(name)
    return objective


def _join_job(args):
    """``nica fit --distributed``: join the multi-process job (before any JAX work); whether
    this fit is one."""
    given = {"--coordinator": args.coordinator, "--num-processes": args.num_processes, "--process-id": args.process_id}
    if not args.distributed and all(value is None for value in given.values()):
        if args.rows is not None:
            raise CLIError("--rows needs --distributed (it says which rows of DATA this process fits)")
        return False
    for option in ("--num-processes", "--process-id"):
        if given[option] is not None and given[option] < (1 if option == "--num-processes" else 0):
            raise CLIError(f"{option} must be at least {1 if option == '--num-processes' else 0}; got {given[option]}")
    try:
        nica.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    except (RuntimeError, ValueError) as exc:
        raise CLIError(f"--distributed: cannot join the job: {' '.join(str(exc).split())[:400]}") from None
    return True


def _own_rows(A, args):
    """``--rows share``: this process's share of the rows of ``A``."""
    if args.rows != "share":
        return A
    bounds = np.linspace(0, A.shape[0], jax.process_count() + 1).astype(int)
    return A[bounds[jax.process_index()] : bounds[jax.process_index() + 1]]


def cmd_fit(args):
    check_fit_outputs(args)
    distributed = _join_job(args)
    try:
        _fit(args, distributed)
    except nica.PeerFailure as exc:
        raise CLIError(str(exc)) from None


def _fit(args, distributed):
    resumed = None if args.resume is None else load_checkpoint(args.resume)
    _note_checkpoint(args, resumed)
    X = _own_rows(read_array(args.data), args)
    given = dict(
        n_layers=args.n_layers,
        activation=args.activation,
        prior=args.prior,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        max_iter=args.max_iter,
        whiten=False if args.whiten == "none" else args.whiten,
        n_components=args.n_components,
        gradient=args.gradient,
        init=args.init,
        n_init=args.n_init,
        schedule=args.schedule,
        averaging=args.averaging,
        random_state=args.random_state,
        verbose=args.verbose,
        parallel="data" if distributed else None,
    )
    common = {name: value for name, value in given.items() if value is not None}  # else the default
    if args.contrastive_weight is not None:
        if args.aux is None:
            raise CLIError(
                "--contrastive-weight needs --aux (segment labels): it weighs the cross-entropy of the label posterior"
            )
        common["contrastive_weight"] = args.contrastive_weight
    if args.objective_term:
        if args.contrastive_weight is not None:
            raise CLIError(
                "--objective-term and --contrastive-weight cannot be given together: add "
                "--objective-term label_cross_entropy=ALPHA instead"
            )
        common["objective"] = _objective(args.objective_term)
    if args.checkpoint is not None:
        common["checkpoint_path"] = args.checkpoint
    if args.checkpoint_every is not None:
        if args.checkpoint is None and (resumed is None or getattr(resumed, "checkpoint_path", None) is None):
            raise CLIError("--checkpoint-every needs --checkpoint FILE")
        common["checkpoint_every"] = args.checkpoint_every
    if resumed is not None:
        # the fit continues (warm_start): a checkpoint's interrupted fit runs its epochs left,
        # a finished fit max_iter more; options given here take effect as with warm_start
        if hasattr(resumed, "aux_type_") != (args.aux is not None):
            raise CLIError(
                "--resume: the model was fitted "
                + ("with" if args.aux is None else "without")
                + " --aux; give the same kind of data"
            )
        model = resumed.set_params(warm_start=True, **common)
        if args.aux is not None:
            u = _own_rows(read_array(args.aux, numeric=False, name="aux"), args)
            if u.dtype.kind in "US":
                u = labels_from_text(u, args.aux)
            model.fit(X, u)
        else:
            model.fit(X)
    elif args.aux is not None:
        u = _own_rows(read_array(args.aux, numeric=False, name="aux"), args)
        if u.dtype.kind in "US":
            u = labels_from_text(u, args.aux)
        if u.shape[0] != X.shape[0]:
            raise CLIError(f"--aux has {u.shape[0]} rows but {args.data!r} has {X.shape[0]}")
        model = nica.ConditionalNonlinearICA(**common).fit(X, u)
    else:
        model = nica.NonlinearICA(**common).fit(X)
    job = ""
    if distributed:
        job = f" (this process's rows; process {jax.process_index()} of {jax.process_count()})"
    with DeferredInterrupts():  # the fit has finished: a Ctrl-C now lets the model file be written
        if is_writer():
            save_model(args.model, model)
        args.model_saved = True
    saved = f"saved to {args.model}" if is_writer() else f"process 0 saved it to {args.model}"
    print(
        f"fitted {type(model).__name__} on {X.shape[0]} samples × {X.shape[1]} features{job} in {model.n_iter_} epochs; {saved}"
    )


def _note_checkpoint(args, resumed):
    """Before the fit: the checkpoint file it writes as it is now, and the checkpoint it resumes
    (a fit in progress), for :func:`nica.cli._main.interruption_message`."""
    checkpoint = args.checkpoint if args.checkpoint is not None else getattr(resumed, "checkpoint_path", None)
    checkpoint = None if checkpoint is None else os.fspath(checkpoint)
    args.fit_checkpoint = checkpoint, file_identity(checkpoint)
    args.resumed_checkpoint = args.resume if getattr(resumed, "epochs_left_", 0) else None


def cmd_transform(args):
    model, X = _model_data(args)
    _check_outputs(args, [("model file", args.model), ("data file", args.data)])
    S = model.transform(X)
    warn_if_not_finite(S, "sources")
    write_array(args.output, S)


def cmd_inverse_transform(args):
    model, S = _model_data(args, sources=True)
    _check_outputs(args, [("model file", args.model), ("data file", args.data)])
    X = model.inverse_transform(S)
    warn_if_not_finite(X, "observations")
    write_array(args.output, X)


def cmd_score(args):
    model, X = _model_data(args)
    if args.output is not None:
        _check_outputs(args, [("model file", args.model), ("data file", args.data), ("aux file", args.aux)])
    if hasattr(model, "aux_type_"):
        ll = model.score_samples(X, read_aux(args, model, X.shape[0]))
    else:
        if args.aux is not None:
            raise CLIError("--aux given but the model has no auxiliary variable")
        ll = model.score_samples(X)
    warn_if_not_finite(ll, "log-likelihoods")
    if args.output is not None:
        write_array(args.output, ll)
    print(f"mean log-likelihood: {float(np.mean(ll)):.6f} nats per sample ({X.shape[0]} samples)")


# Sampling holds a few arrays of the output's size at once (sources, each layer's inverse, the
# host copy, the un-whitened result); an allocation that fails inside XLA on a CPU aborts the
# process, so a count that cannot fit is refused before any is drawn.
_SAMPLE_COPIES = 6


def _available_memory():
    """Bytes of memory available now (Linux's MemAvailable), or None when unknown."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _check_sample_memory(n_samples, model):
    itemsize = np.dtype(getattr(model, "_dtype", np.float64)).itemsize
    need = n_samples * model.n_features_in_ * itemsize * _SAMPLE_COPIES
    available = _available_memory()
    if available is not None and need > available:
        raise CLIError(
            f"out of memory: {n_samples} samples × {model.n_features_in_} features need about "
            f"{need / 2**30:.3g} GiB, {available / 2**30:.3g} GiB is available; draw fewer "
            "(several runs with different --random-state draw more)"
        )


def cmd_sample(args):
    if args.aux is not None and args.label is not None:  # also refused by the parser
        raise CLIError(
            "--aux and --label cannot be given together: --aux gives one value per sample, --label one for all samples"
        )
    model = load_model(args.model)
    _check_outputs(args, [("model file", args.model), ("aux file", args.aux)])
    n_samples = 1 if args.n_samples is None else args.n_samples
    _check_sample_memory(n_samples, model)
    if hasattr(model, "aux_type_"):
        if args.label is not None:
            label = (
                label_from_text(args.label, model)
                if model.aux_type_ == "discrete"
                else continuous_from_text(args.label, model)
            )
            X = model.sample(n_samples, y=label, random_state=args.random_state)
        elif args.aux is not None:
            u = read_aux(args, model)
            if args.n_samples is not None and args.n_samples != u.shape[0]:
                raise CLIError(
                    f"-n {args.n_samples} but --aux {args.aux!r} has {u.shape[0]} rows "
                    "(one sample is drawn per row; leave -n out)"
                )
            X = model.sample(u.shape[0], y=u, random_state=args.random_state)
        else:
            if model.aux_type_ == "continuous":
                raise CLIError(
                    "the model's auxiliary variable is continuous: give --aux (one value per "
                    "sample) or --label (one value for all samples)"
                )
            X = model.sample(n_samples, random_state=args.random_state)
    else:
        if args.aux is not None or args.label is not None:
            raise CLIError("--aux/--label given but the model has no auxiliary variable")
        X = model.sample(n_samples, random_state=args.random_state)
    warn_if_not_finite(X, "samples")
    write_array(args.output, X)


def _figure_formats():
    from matplotlib.backend_bases import FigureCanvasBase  # imported when used: matplotlib slows start-up

    return FigureCanvasBase.get_supported_filetypes()


def cmd_demo(args):
    """Segment-modulated nonlinear mixture → ConditionalNonlinearICA, MCC beside FastICA's."""
    import matplotlib  # imported when used: matplotlib slows start-up

    matplotlib.use("Agg")
    check_output(args.figure, "figure file", make_dirs=True)
    formats = _figure_formats()
    ext = os.path.splitext(args.figure)[1].lower().lstrip(".")
    if ext not in formats:
        raise CLIError(
            f"unsupported --figure {args.figure!r}: expected one of {', '.join('.' + f for f in sorted(formats))}"
        )

    n_per_segment = 250 if args.quick else 1000
    n_components, n_layers = 5, 2
    print(
        f"nica demo: {n_components} sources, 40 segments × {n_per_segment} points, "
        f"mixed by a {n_layers}-layer leaky-ReLU network (the segment-modulated benchmark recipe)"
    )
    data = make_segmented_mixture(
        n_segments=40, n_per_segment=n_per_segment, n_components=n_components, n_layers=n_layers, random_state=args.seed
    )
    X_train, X_test = data.X_train.astype(np.float32), data.X_test.astype(np.float32)
    start = time.perf_counter()
    model = nica.ConditionalNonlinearICA(
        **DEMO_SETTINGS, max_iter=60 if args.quick else 1000, random_state=args.seed, verbose=1
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_iter in --quick mode
        model.fit(X_train, data.u_train)
    fit_seconds = time.perf_counter() - start
    S_est = model.transform(X_test)
    mcc = mean_corr_coef(data.S_test, S_est)
    fast = mean_corr_coef(data.S_test, FastICA(random_state=args.seed).fit(data.X_train).transform(data.X_test))
    print(f"held-out MCC  ConditionalNonlinearICA: {mcc:.3f}   FastICA: {fast:.3f}")
    print(
        f"fit: {model.n_iter_} epochs in {fit_seconds:.1f} s; held-out log-likelihood "
        f"{model.score(X_test, data.u_test):.3f} nats/sample"
    )
    fig = plot_sources(data.S_test, S_est)
    write_file(args.figure, lambda handle: fig.savefig(handle, dpi=110, format=ext), "figure file")
    print(f"figure: {args.figure}")


# The demo uses the estimator's defaults (docs/benchmarks.md, "Defaults"), nothing hand-picked.
DEMO_SETTINGS: dict = {}
