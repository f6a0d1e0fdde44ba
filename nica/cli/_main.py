"""The ``nica`` command's parser and entry point: every error one line on stderr, exit status 2
(130 when interrupted), never a traceback.

Ctrl-C.  The console script starts in ``nica_launcher``, which handles SIGINT before anything
heavy is imported; :func:`console` runs :func:`main` and ends the process with ``os._exit``
once stdout and stderr are flushed: an interpreter torn down while JAX's threads still run can
crash (a segmentation fault after an interruption), and nothing is left to do by then.  While
:func:`main` runs, SIGINT raises ``KeyboardInterrupt`` and is counted
(:class:`~nica._src.interrupts.CountingInterrupts`): one that Python swallowed on the way (in a
garbage-collection callback) still ends the command with status 130.  A fit holds it to the
start of the next epoch, after its checkpoint (:class:`~nica._src.interrupts.DeferredInterrupts`).

Start-up.  This module imports neither JAX nor scikit-learn nor SciPy: the parser's choices of
components are the registries' names without their modules (:func:`~nica._src._registry.known_names`),
and the commands (:mod:`nica.cli._commands`) are imported once the command line is read and its
first files are checked, so ``--help`` and every bad command line are answered at once.  A
command that runs turns on JAX's persistent compilation cache first (:func:`_use_compilation_cache`).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import re
import shlex
import signal
import sys
import warnings

import nica
from nica._src._registry import known_names
from nica._src.interrupts import CountingInterrupts
from nica.cli._files import (
    CLIError,
    check_data_file,
    check_fit_outputs,
    check_input,
    file_identity,
    os_reason,
    strict_int,
)

__all__ = ["build_parser", "main", "console", "interruption_message", "EXIT_ERROR", "EXIT_INTERRUPTED"]
__all__ += ["COMPILATION_CACHE_VARIABLE"]

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
# the compilation cache's folder, or "off" (when neither option is given)
COMPILATION_CACHE_VARIABLE = "NICA_COMPILATION_CACHE"
_OFF = ("off", "0", "no", "false", "none")
# {command: its function in nica.cli._commands}, imported once a command runs (JAX and the rest)
_COMMANDS = {
    "demo": "cmd_demo",
    "fit": "cmd_fit",
    "transform": "cmd_transform",
    "inverse-transform": "cmd_inverse_transform",
    "score": "cmd_score",
    "sample": "cmd_sample",
}


_DURATION_UNITS = {"s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}


def checkpoint_every_option(text):
    """``--checkpoint-every``: a number of epochs (``5``) or a duration (``30s``, ``10min``, ``2h``)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([a-z]*)\s*", text)
    if match and not match.group(2) and "." not in match.group(1) and int(match.group(1)) >= 1:
        return int(match.group(1))
    if match and match.group(2) in _DURATION_UNITS and float(match.group(1)) > 0:
        return datetime.timedelta(seconds=float(match.group(1)) * _DURATION_UNITS[match.group(2)])
    raise argparse.ArgumentTypeError(f"expected a number of epochs (5) or a duration (30s, 10min, 2h); got {text!r}")


class _UsageError(Exception):
    """A bad command line (reported on one line, without argparse's usage block)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise _UsageError(f"{message} (see '{self.prog} --help')")


def _int_option(minimum, maximum=None, name=None):
    def parse(text):
        value = strict_int(text)
        if value is None or value < minimum or (maximum is not None and value > maximum):
            if name is not None:
                raise argparse.ArgumentTypeError(f"{name}; got {text!r}")
            bound = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer {bound}")
        return value

    parse.__name__ = "integer"
    return parse


_seed = _int_option(0, 2**32 - 1)


def _objective_term(text):
    """``--objective-term NAME=WEIGHT``: ``(name, weight)`` with ``NAME`` a registered objective
    term and ``WEIGHT`` a finite number >= 0 (default 1)."""
    name, _, weight = text.partition("=")
    name = name.strip()
    if name not in known_names("objective"):
        raise argparse.ArgumentTypeError(f"unknown objective term {name!r}; expected one of {known_names('objective')}")
    try:
        value = float(weight) if weight.strip() else 1.0
    except ValueError:
        value = float("nan")
    if not (value >= 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"the weight of {name!r} must be a finite number >= 0; got {weight!r}")
    return name, value


def _add_compilation_cache_options(parser):
    """The options of every command that computes: where JAX's compiled programs are kept."""
    choice = parser.add_argument_group("compilation cache").add_mutually_exclusive_group()
    choice.add_argument(
        "--compilation-cache",
        metavar="DIR",
        help="keep JAX's compiled programs in DIR, for the next runs to reuse (default: "
        f"${COMPILATION_CACHE_VARIABLE} if set, else $XDG_CACHE_HOME/nica/jax or ~/.cache/nica/jax)",
    )
    choice.add_argument(
        "--no-compilation-cache",
        action="store_true",
        help=f"compile everything anew and keep nothing ({COMPILATION_CACHE_VARIABLE}=off does the same)",
    )


def build_parser():
    """The argument parser of the ``nica`` command (also used to document it)."""
    parser = _Parser(prog="nica", description="Nonlinear ICA with the relative gradient.")
    parser.add_argument("--version", action="version", version=f"nica {nica.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="fit a built-in synthetic nonlinear mixture and report MCC")
    demo.add_argument("--quick", action="store_true", help="smaller data and fewer epochs")
    demo.add_argument("--figure", default="nica_demo.png", help="where to write the figure")
    demo.add_argument("--seed", type=_seed, default=0)

    fit = sub.add_parser(
        "fit",
        help="fit a model to DATA and save it",
        description="Fit a model to DATA and save it.  An option left out takes the estimator's default.",
    )
    fit.add_argument("data")
    fit.add_argument("--aux", help="auxiliary variable u (segment labels or values): fits ConditionalNonlinearICA")
    fit.add_argument("--model", required=True, help="output model file")
    fit.add_argument("--n-layers", type=int)
    fit.add_argument(
        "--contrastive-weight",
        type=float,
        metavar="ALPHA",
        help="with --aux: weight of the label posterior's cross-entropy in the hybrid "
        "objective (default 'auto': 2 for segment labels, 0 for a continuous u; "
        "0: exact maximum likelihood)",
    )
    fit.add_argument(
        "--objective-term",
        type=_objective_term,
        action="append",
        metavar="NAME=WEIGHT",
        help="add WEIGHT times the objective term NAME to the likelihood (repeatable; one of "
        f"{', '.join(known_names('objective'))}); the objective is then the likelihood plus "
        "these terms (with --aux, instead of the default hybrid objective)",
    )
    fit.add_argument("--activation", choices=known_names("activation"))
    fit.add_argument("--prior", choices=known_names("prior"))
    fit.add_argument(
        "--learning-rate",
        type=float,
        help="default: 1e-3 when linear ICA starts at FastICA's rotation, 1e-2 otherwise "
        "(times sqrt(64/D) above 64 sources)",
    )
    fit.add_argument("--batch-size", type=int)
    fit.add_argument("--max-iter", type=int)
    fit.add_argument("--whiten", choices=["auto", "standardize", "unit-variance", "none"])
    fit.add_argument(
        "--n-components",
        type=int,
        metavar="K",
        help="number of sources, for more sensors than sources: the PCA whitening keeps the K "
        "directions of largest variance (default: every feature)",
    )
    fit.add_argument(
        "--gradient",
        choices=["auto", *known_names("gradient")],
        help="relative: the O(B·D²) relative gradient (docs/theory.rst); "
        "equivariant: the optimizer in the group's coordinates, "
        "usually better with Adam while n_features <= batch size (docs/benchmarks.md)",
    )
    fit.add_argument(
        "--init",
        choices=["auto", "fastica", "random"],
        help="starting point of the first layer (auto: FastICA's rotation for linear ICA)",
    )
    fit.add_argument("--n-init", type=int, help="number of initialisations; the most likely is kept")
    fit.add_argument("--schedule", choices=["plateau", "constant"])
    fit.add_argument(
        "--averaging",
        type=float,
        metavar="TAU",
        help="validate and keep a running average of the parameters over TAU epochs "
        "(default 'auto': 0.5 with --aux and more than one layer, else 0: the "
        "last iterate)",
    )
    fit.add_argument("--random-state", type=_seed, default=None)
    fit.add_argument("--verbose", type=int)
    fit.add_argument(
        "--checkpoint",
        metavar="FILE",
        help="save the fit in progress here (a nica estimator file, no pickle) every --checkpoint-every; "
        "'nica fit DATA --resume FILE --model OUT' continues it",
    )
    fit.add_argument(
        "--checkpoint-every",
        type=checkpoint_every_option,
        metavar="EVERY",
        help="epochs (5, default 1) or time (30s, 10min, 2h) between checkpoints",
    )
    fit.add_argument(
        "--resume",
        metavar="FILE",
        help="continue the fit saved in FILE (a --checkpoint file, or a --model file) on DATA; "
        "an interrupted fit runs its epochs left and ends as it would have",
    )

    job = fit.add_argument_group(
        "several processes",
        "one fit over several processes or hosts (jax.distributed): every process runs this command "
        "on its own rows, trains with parallel='data' on their union, and process 0 writes --model and "
        "--checkpoint (on a file system every process sees, for --resume)",
    )
    job.add_argument(
        "--distributed",
        action="store_true",
        help="join the job; its coordinator, size and this process's index as JAX finds them (Slurm, "
        "Open MPI, JAX_COORDINATOR_ADDRESS) or as given below",
    )
    job.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address (implies --distributed)")
    job.add_argument("--num-processes", type=int, metavar="N", help="processes in the job (implies --distributed)")
    job.add_argument("--process-id", type=int, metavar="I", help="this process's index, 0..N-1 (implies --distributed)")
    job.add_argument(
        "--rows",
        choices=["all", "share"],
        help="all (default): DATA (and --aux) are this process's own rows; share: every process reads the "
        "same files and fits its share of their rows, [I*n/N, (I+1)*n/N)",
    )

    for name, help_text in [("transform", "sources of DATA"), ("inverse-transform", "observations from sources")]:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("model")
        p.add_argument("data")
        p.add_argument("-o", "--output", required=True)

    score = sub.add_parser("score", help="exact log-likelihood of DATA")
    score.add_argument("model")
    score.add_argument("data")
    score.add_argument("--aux")
    score.add_argument("-o", "--output", help="write per-sample log-likelihoods here")

    sample = sub.add_parser("sample", help="draw samples from a fitted model")
    sample.add_argument("model")
    sample.add_argument(
        "-n",
        "--n-samples",
        type=_int_option(1, name="n_samples must be a positive integer"),
        default=None,
        help="how many samples (default 1; with --aux, one per row of U)",
    )
    sample.add_argument("-o", "--output", required=True)
    given_u = sample.add_mutually_exclusive_group()
    given_u.add_argument("--aux", help="one auxiliary value per sample")
    given_u.add_argument("--label", help="one segment label (or value) for all samples")
    sample.add_argument("--random-state", type=_seed, default=None)
    for command in sub.choices.values():
        _add_compilation_cache_options(command)
    return parser


def main(argv=None):
    """The ``nica`` command, in this process; returns the exit status.

    0 on success; 2 on any error, reported as one line ``nica: error: ...`` on stderr (never
    a traceback); 130 when interrupted (Ctrl-C), reported as one line that says what was saved
    (for ``fit``: the checkpoint and the command that resumes it).  ``--help`` and
    ``--version`` return 0.
    """
    args = None
    with CountingInterrupts() as interrupts:
        try:
            try:
                args = build_parser().parse_args(argv)
            except _UsageError as exc:
                status = _fail(str(exc))
            except SystemExit as exc:  # --help and --version print, then exit
                status = exc.code if isinstance(exc.code, int) else 0
            else:
                with warnings.catch_warnings():
                    warnings.showwarning = _one_line_warning
                    status = _run(args, interrupts)
            interrupts.check()  # a Ctrl-C whose KeyboardInterrupt Python swallowed on the way
        except KeyboardInterrupt:
            interrupts.acknowledge()
            interrupts.ignore_further()  # one line, not cut by another Ctrl-C
            return _interrupted(args)
    return status


def console(argv=None):
    """The ``nica`` process (the console script, through ``nica_launcher``, and ``python -m
    nica``): :func:`main` on ``argv`` (default ``sys.argv[1:]``), then the process ends at once
    with its status: stdout and stderr flushed, then ``os._exit``, without the interpreter's
    teardown (which can crash while JAX's threads run).  Never returns."""
    try:
        status = main(argv)
    except KeyboardInterrupt:  # at the very start or end of main, outside its handler
        status = _interrupted(None)
    end_process(status)


def interruption_message(args):
    """The line an interrupted command ends with (``args`` None: interrupted before the command
    line was read).  For ``fit``: the checkpoint that holds the fit so far and the command that
    resumes it, or that nothing was saved."""
    if args is None or getattr(args, "command", None) != "fit":
        return "nica: interrupted"
    if getattr(args, "model_saved", False):
        return f"nica: interrupted after the fit had finished; the model was saved to {args.model!r}"
    noted = getattr(args, "fit_checkpoint", None)  # None: interrupted before the fit's files were checked
    checkpoint, before = noted if noted is not None else (args.checkpoint, None)
    saved = None
    if noted is not None and checkpoint is not None and file_identity(checkpoint) not in (None, before):
        saved = checkpoint  # written by this fit
    elif getattr(args, "resumed_checkpoint", None) is not None and os.path.isfile(args.resumed_checkpoint):
        saved = args.resumed_checkpoint  # the fit in progress this one resumed, still as it was
    if saved is not None:
        command = ["nica", "fit", args.data, *(["--aux", args.aux] if args.aux is not None else [])]
        command += ["--resume", saved, "--model", args.model]
        return (
            f"nica: interrupted; the fit so far is saved in checkpoint {saved!r}; resume it with: {shlex.join(command)}"
        )
    if checkpoint is not None:
        return f"nica: interrupted before the first checkpoint was written to {checkpoint!r}; nothing was saved"
    return "nica: interrupted; nothing was saved (--checkpoint FILE saves a fit in progress, to resume it later)"


def end_process(status):
    """Flush stdout and stderr, then end the process with ``status`` (``os._exit``); a further
    Ctrl-C is ignored meanwhile."""
    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # closed, or a closed pipe
            stream.flush()
    os._exit(status)


def _one_line(text, limit=600):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _say(line):
    with contextlib.suppress(OSError, ValueError):  # stderr itself closed
        print(line, file=sys.stderr)


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    _say(f"nica: warning: {_one_line(message)}")


def _fail(message):
    _say(f"nica: error: {_one_line(message)}")
    return EXIT_ERROR


def _interrupted(args):
    _say(interruption_message(args))
    return EXIT_INTERRUPTED


def _is_out_of_memory(exc):
    text = str(exc)
    return isinstance(exc, MemoryError) or "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower()


def _silence_stdout():
    # After a closed pipe, the interpreter's last flush of stdout would fail again at exit.
    with contextlib.suppress(OSError, ValueError, AttributeError):
        fileno = sys.stdout.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fileno)
        os.close(devnull)


def _run(args, interrupts):
    try:
        try:
            _check_first_files(args)
            command = _command(args.command)  # JAX is imported here first, SIGINT held meanwhile
            _use_compilation_cache(args)
            command(args)
        except Exception:
            interrupts.check()  # a Ctrl-C that an extension's code turned into another error
            raise
    except CLIError as exc:
        return _fail(str(exc))
    except BrokenPipeError:
        _silence_stdout()
        return _fail("the output pipe was closed before nica finished writing")
    except MemoryError:
        return _fail(
            "out of memory: the data or model do not fit (try fewer samples, a smaller --batch-size, or float32 data)"
        )
    except (ValueError, TypeError) as exc:  # the estimators' own clear messages, on one line
        return _fail(str(exc))
    except OSError as exc:
        where = f"{exc.filename!r}: " if exc.filename else ""
        return _fail(f"{where}{os_reason(exc)}")
    except Exception as exc:  # the last resort: still one line, naming what went wrong
        if _is_out_of_memory(exc):
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return _fail(
                f"out of memory ({_one_line(first, 200)}): try fewer samples, a smaller --batch-size, or float32 data"
            )
        return _fail(f"unexpected {type(exc).__name__}: {exc}")
    return 0


def _command(name):
    """The function that runs the command ``name``: its module, and with it JAX, scikit-learn
    and the rest of nica, is imported here, once a command runs (``--help`` and a bad command
    line are answered before).

    SIGINT is blocked meanwhile (where threads' signal masks exist): a Ctrl-C then is delivered
    once the imports are done, to the command line's handler, instead of raising
    ``KeyboardInterrupt`` inside an extension module's start-up, where JAX's C++ aborts the
    process on it."""
    block = getattr(signal, "pthread_sigmask", None)
    previous = block(signal.SIG_BLOCK, {signal.SIGINT}) if block is not None else None
    try:
        import nica.cli._commands as commands  # (the submodule, not the package that holds this one)
    finally:
        if block is not None and signal.SIGINT not in previous:
            block(signal.SIG_UNBLOCK, {signal.SIGINT})  # a Ctrl-C held meanwhile is handled here
    return getattr(commands, _COMMANDS[name])


def _check_first_files(args):
    """The first checks of files the command makes, made once more before its module (and JAX)
    is imported: a missing or unwritable file is reported at once, by the same line.  Only what
    the command checks before it reads a file: a model that fails to load is reported before a
    missing data file, as the command does."""
    if args.command == "fit":
        check_fit_outputs(args)
        if args.resume is not None:
            check_input(args.resume, "checkpoint file")
        else:
            check_data_file(args.data)
    elif args.command != "demo":
        check_input(args.model, "model file")


def _use_compilation_cache(args):
    """Turn on JAX's persistent compilation cache (:func:`nica.enable_compilation_cache`) in
    ``--compilation-cache``, else in ``$NICA_COMPILATION_CACHE``, else in the default folder;
    not with ``--no-compilation-cache`` or ``NICA_COMPILATION_CACHE=off``, nor when JAX's own
    ``JAX_COMPILATION_CACHE_DIR`` is set (JAX then uses that folder).  A folder that cannot be
    made leaves the cache off, with a warning."""
    if getattr(args, "no_compilation_cache", False):
        return
    folder = getattr(args, "compilation_cache", None)
    if folder is None:
        setting = os.environ.get(COMPILATION_CACHE_VARIABLE, "").strip()
        if setting.lower() in _OFF or (not setting and os.environ.get("JAX_COMPILATION_CACHE_DIR")):
            return
        folder = setting or None
    try:
        nica.enable_compilation_cache(folder)
    except OSError as exc:
        where = f"{exc.filename!r}: " if exc.filename else ""
        warnings.warn(f"the compilation cache is off ({where}{os_reason(exc)})", stacklevel=2)


if __name__ == "__main__":  # pragma: no cover
    console()
