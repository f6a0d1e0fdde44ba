"""The ``nica`` command's parser and entry point (``nica/cli/_main.py``): every error, a bad
command line or a failure of the machine (out of memory, an interruption, anything unforeseen),
is one line on stderr and exit status 2 (130 when interrupted), never a traceback; ``--help``
and ``--version`` return 0."""

import errno
import shlex
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from support import assert_one_line_error, interrupt_after_checkpoints, params_of, run

import nica
import nica.cli._commands as cli_commands
import nica.cli._main as cli_main
from nica._src import checkpoint as _checkpoint
from nica.cli import load_model, main

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture
def env(cli_env):
    """The session's files and tiny models (tests/conftest.py)."""
    return cli_env


@pytest.mark.parametrize(
    "argv, fragment",
    [
        ([], "the following arguments are required: command"),
        (["fitt"], "invalid choice: 'fitt'"),
        (["transform"], "the following arguments are required: model, data, -o/--output"),
        (["inverse-transform", "{d}/m.nica"], "the following arguments are required: data, -o/--output"),
        (["sample", "{d}/m.nica"], "the following arguments are required: -o/--output"),
        (["score"], "the following arguments are required: model, data"),
        (["fit", "{d}/X.npy"], "the following arguments are required: --model"),
        (["demo", "--seed", "-1"], "between 0 and 4294967295"),
        (["demo", "--seed", "x"], "argument --seed"),
        (["demo", "--fast"], "unrecognized arguments: --fast"),
        (["fit", "{d}/X.npy", "--model", "{d}/new.nica", "--learning-rate", "fast"], "invalid float value"),
        (["fit", "{d}/X.npy", "--model", "{d}/new.nica", "--random-state", "-1"], "between 0 and 4294967295"),
        (["fit", "{d}/X.npy", "--model", "{d}/new.nica", "--prior", "cauchy"], "invalid choice"),
        (["fit", "{d}/X.npy", "--model", "{d}/new.nica", "--whiten", "yes"], "invalid choice"),
        (["fit", "{d}/X.npy", "--model", "{d}/new.nica", "--checkpoint-every", "0"], "expected a number of epochs"),
        (
            ["fit", "{d}/X.npy", "--model", "{d}/new.nica", "--checkpoint-every", "10 parsecs"],
            "expected a number of epochs (5) or a duration (30s, 10min, 2h); got '10 parsecs'",
        ),
        (["fit", "{d}/X.npy", "--model", "{d}/new.nica", "--objective-term", "mse=1"], "unknown objective term 'mse'"),
        (
            ["fit", "{d}/X.npy", "--model", "{d}/new.nica", "--objective-term", "nll=-1"],
            "the weight of 'nll' must be a finite number >= 0; got '-1'",
        ),
        (
            ["sample", "{d}/ms.nica", "-o", "{d}/out.npy", "--label", "s1", "--aux", "{d}/labels.csv"],
            "not allowed with argument",
        ),
        (["sample", "{d}/m.nica", "-o", "{d}/out.npy", "-n", "0"], "n_samples must be a positive integer; got '0'"),
        (["sample", "{d}/m.nica", "-o", "{d}/out.npy", "-n", "-5"], "n_samples must be a positive integer; got '-5'"),
        (["sample", "{d}/m.nica", "-o", "{d}/out.npy", "-n", "2.5"], "n_samples must be a positive integer; got '2.5'"),
        (["sample", "{d}/m.nica", "-o", "{d}/out.npy", "-n", "many"], "n_samples must be a positive integer"),
        (["sample", "{d}/m.nica", "-o", "{d}/out.npy", "--random-state", "-1"], "between 0 and 4294967295"),
        (["sample", "{d}/m.nica", "-o", "{d}/out.npy", "--random-state", "4294967296"], "between 0 and 4294967295"),
        (["score", "{d}/m.nica", "{d}/X.npy", "--label", "s1"], "unrecognized arguments: --label s1"),
    ],
)
def test_a_bad_command_line_is_one_line(env, capsys, argv, fragment):
    code, out, err = run([a.format(d=env) for a in argv], capsys)
    assert_one_line_error(code, out, err, fragment)
    assert not (env / "new.nica").exists() and not (env / "out.npy").exists()


def test_checkpoint_every_takes_epochs_or_a_duration():
    import datetime

    assert cli_main.checkpoint_every_option("5") == 5
    assert cli_main.checkpoint_every_option(" 30s ") == datetime.timedelta(seconds=30)
    assert cli_main.checkpoint_every_option("1.5h") == datetime.timedelta(hours=1.5)
    assert cli_main.checkpoint_every_option("10min") == datetime.timedelta(minutes=10)


def test_help_and_version_return_zero(capsys):
    code, out, _ = run(["--version"], capsys)
    assert code == 0 and out.strip() == f"nica {nica.__version__}"
    code, out, _ = run(["sample", "--help"], capsys)
    assert code == 0 and "--label" in out


class _OOM(RuntimeError):
    pass


@pytest.mark.parametrize(
    "exc, fragment, status",
    [
        (MemoryError(), "out of memory", 2),
        (MemoryError("Unable to allocate 8.00 TiB"), "out of memory", 2),
        (
            _OOM("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1.00GiB.\nBufferAssignment:\n  x"),
            "out of memory (RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1.00GiB.)",
            2,
        ),
        (RuntimeError("CUDA_ERROR_OUT_OF_MEMORY: out of memory"), "out of memory", 2),
        (KeyboardInterrupt(), "nica: interrupted", 130),
        (PermissionError(errno.EACCES, "Permission denied", "/x/y.npy"), "'/x/y.npy': Permission denied", 2),
        (OSError(errno.EIO, "Input/output error"), "Input/output error", 2),
        (ZeroDivisionError("division by zero"), "unexpected ZeroDivisionError: division by zero", 2),
        (KeyError("X"), "unexpected KeyError", 2),
        (ValueError("a\nmulti-line\n\nmessage"), "a multi-line message", 2),
        (BrokenPipeError(errno.EPIPE, "Broken pipe"), "output pipe was closed", 2),
    ],
)
def test_unforeseen_failures_are_one_line(env, capsys, monkeypatch, exc, fragment, status):
    def failing(args):
        raise exc

    monkeypatch.setattr(cli_commands, "cmd_transform", failing)
    code, out, err = run(["transform", env / "m.nica", env / "X.npy", "-o", env / "out.npy"], capsys)
    assert_one_line_error(code, out, err, fragment, status=status)


def test_jax_out_of_memory_is_one_line(env, capsys, monkeypatch):
    import jax

    try:
        exc = jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 99 bytes.\ndetails")
    except TypeError:  # pragma: no cover - a jaxlib whose error type cannot be built by hand
        pytest.skip("JaxRuntimeError cannot be constructed here")

    def failing(model, X):
        raise exc

    monkeypatch.setattr(nica.NonlinearICA, "transform", failing)
    code, out, err = run(["transform", env / "m.nica", env / "X.npy", "-o", env / "out.npy"], capsys)
    assert_one_line_error(code, out, err, "out of memory", "--batch-size")


def test_interrupt_while_parsing_is_one_line(capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_main, "build_parser", interrupted)
    code, out, err = run(["transform", "a", "b", "-o", "c"], capsys)
    assert_one_line_error(code, out, err, "interrupted", status=130)


def test_console_script_failures_have_no_traceback(env):
    """The reported cases, through a real process: one line, status 2, no traceback."""
    np.savez(env / "whole.npz", X=np.load(env / "X.npy"))
    (env / "truncated.npz").write_bytes((env / "whole.npz").read_bytes()[:300])
    cases = [
        (["transform", env / "m.nica", env / "truncated.npz", "-o", env / "o.npy"], "corrupt or truncated"),
        (["demo", "--quick", "--figure", env / "plain.txt" / "demo.png"], "is a file, not a directory"),
        (["sample", env / "ms.nica", "--label", "s10", "-o", env / "o.npy"], "'s10' is not one of"),
    ]
    script = (
        "import sys\nfrom nica.cli import main\n"
        "argvs = [a.split('\\x1f') for a in sys.argv[1:]]\n"
        "for argv in argvs:\n    print('status', main(argv), flush=True)\n"
        "    sys.stderr.write('--\\n'); sys.stderr.flush()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script] + ["\x1f".join(map(str, a)) for a, _ in cases],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert "Traceback" not in proc.stderr + proc.stdout
    chunks = proc.stderr.split("--\n")[:-1]
    assert proc.stdout.split() == ["status", "2"] * len(cases)
    for chunk, (_, fragment) in zip(chunks, cases):
        assert chunk.count("\n") == 1 and chunk.startswith("nica: error: ") and fragment in chunk, chunk
    entry = subprocess.run(
        [sys.executable, "-m", "nica", "transform", env / "m.nica", env / "truncated.npz", "-o", env / "o.npy"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert entry.returncode == 2 and "Traceback" not in entry.stderr
    assert entry.stderr.count("\n") == 1 and "corrupt or truncated" in entry.stderr


def test_ctrl_c_during_a_fit(tmp_path):
    """A real SIGINT in the middle of fitting: 'nica: interrupted', status 130, no model file."""
    import signal
    import time

    np.save(tmp_path / "big.npy", np.random.default_rng(0).laplace(size=(100_000, 4)))
    # A child inherits an ignored SIGINT (as under a background shell job); a handled one is
    # reset to the default at exec, which Python turns into KeyboardInterrupt.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        err_file = open(tmp_path / "err.txt", "w")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "nica",
                "fit",
                tmp_path / "big.npy",
                "--model",
                tmp_path / "big.nica",
                "--max-iter",
                "100000",
                "--verbose",
                "1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=err_file,
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    with err_file:
        deadline = time.monotonic() + 120
        while "NonlinearICA" not in (tmp_path / "err.txt").read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "err.txt").read_text()
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 130
    err = (tmp_path / "err.txt").read_text()
    assert "Traceback" not in err
    assert err.splitlines()[-1] == NOTHING_SAVED
    assert not (tmp_path / "big.nica").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


# ---------------------------------------------------------------------------------------------
# Ctrl-C: the line says what was saved; the process ends with os._exit (tests/test_interrupts.py
# sends real signals to real processes)

NOTHING_SAVED = "nica: interrupted; nothing was saved (--checkpoint FILE saves a fit in progress, to resume it later)"
CHECKPOINT_FIT = ["--n-layers", "2", "--max-iter", "4", "--batch-size", "16", "--random-state", "0"]
AUX_FILES = {None: None, "labels": "labels.csv", "continuous": "cont.csv"}


@pytest.fixture
def spaced(env, tmp_path):
    """The session's data and aux files in a folder whose name needs quoting in a shell."""
    folder = tmp_path / "a folder"
    folder.mkdir()
    for name in ("X.npy", "labels.csv", "cont.csv"):
        shutil.copy(env / name, folder / name)
    return folder


def assert_same_model(a, b):
    assert (a.n_iter_, a.best_iter_) == (b.n_iter_, b.best_iter_)
    np.testing.assert_array_equal(a.loss_curve_, b.loss_curve_)
    for x, y in zip(params_of(a), params_of(b), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("aux", list(AUX_FILES))
def test_an_interrupted_fit_names_its_checkpoint_and_the_command_that_resumes_it(spaced, capsys, monkeypatch, aux):
    """With and without --aux: the line names the checkpoint and the exact command (shell-quoted)
    that resumes the fit; run as printed, it ends as the uninterrupted fit."""
    data = [str(spaced / "X.npy")] + ([] if aux is None else ["--aux", str(spaced / AUX_FILES[aux])])
    assert main(["fit", *data, "--model", str(spaced / "full.nica"), *CHECKPOINT_FIT]) == 0
    capsys.readouterr()
    model, checkpoint = spaced / "m.nica", spaced / "ck.nica"
    interrupt_after_checkpoints(monkeypatch, 2)
    code = main(
        ["fit", *data, "--model", str(model), "--checkpoint", str(checkpoint), "--checkpoint-every", "1"]
        + CHECKPOINT_FIT
    )
    monkeypatch.undo()
    err = capsys.readouterr().err
    command = shlex.join(["nica", "fit", *data, "--resume", str(checkpoint), "--model", str(model)])
    assert code == 130 and not model.exists()
    assert (
        err
        == f"nica: interrupted; the fit so far is saved in checkpoint {str(checkpoint)!r}; resume it with: {command}\n"
    )
    assert "'" + str(spaced) in command  # quoted: the folder's name has a space
    assert main(shlex.split(command)[1:]) == 0
    assert_same_model(load_model(model), load_model(spaced / "full.nica"))


def test_an_interrupted_fit_without_a_checkpoint_says_nothing_was_saved(spaced, capsys, monkeypatch):
    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(nica.NonlinearICA, "fit", interrupted)
    argv = ["fit", spaced / "X.npy", "--model", spaced / "m.nica"] + CHECKPOINT_FIT
    assert run(argv, capsys) == (130, "", NOTHING_SAVED + "\n")
    code, _, err = run(argv + ["--checkpoint", spaced / "ck.nica"], capsys)
    assert code == 130 and not (spaced / "ck.nica").exists()
    assert (
        err
        == f"nica: interrupted before the first checkpoint was written to {str(spaced / 'ck.nica')!r}; nothing was saved\n"
    )


def test_a_resumed_fit_interrupted_before_its_next_checkpoint_names_the_one_it_resumed(spaced, capsys, monkeypatch):
    data, checkpoint = str(spaced / "X.npy"), spaced / "ck.nica"
    interrupt_after_checkpoints(monkeypatch, 1)
    argv = ["fit", data, "--model", spaced / "m.nica", "--checkpoint", checkpoint] + CHECKPOINT_FIT
    assert run(argv, capsys)[0] == 130
    before = checkpoint.read_bytes()

    def interrupted_at_once(self, *args):
        raise KeyboardInterrupt

    monkeypatch.setattr(_checkpoint.Checkpointer, "epoch_start", interrupted_at_once)
    code, _, err = run(["fit", data, "--resume", checkpoint, "--model", spaced / "m.nica"], capsys)
    assert code == 130 and checkpoint.read_bytes() == before
    assert err.startswith(f"nica: interrupted; the fit so far is saved in checkpoint {str(checkpoint)!r}; resume it")


def test_ctrl_c_while_the_model_is_saved_saves_it_first(spaced, capsys, monkeypatch):
    real = cli_commands.save_model

    def save_model(path, model):
        signal.raise_signal(signal.SIGINT)  # held until the file is written
        real(path, model)

    monkeypatch.setattr(cli_commands, "save_model", save_model)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code, out, err = run(["fit", spaced / "X.npy", "--model", spaced / "m.nica"] + CHECKPOINT_FIT, capsys)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert code == 130 and out == ""
    assert (
        err.splitlines()[-1]
        == f"nica: interrupted after the fit had finished; the model was saved to {str(spaced / 'm.nica')!r}"
    )
    assert load_model(spaced / "m.nica").n_iter_ == 4


class _InterruptedInDel:
    def __del__(self):
        signal.raise_signal(signal.SIGINT)  # Python cannot raise the KeyboardInterrupt here
        sum(range(1000))


def _swallowed(args):
    _InterruptedInDel()


def _turned_into_an_import_error(args):
    try:
        signal.raise_signal(signal.SIGINT)
        sum(range(1000))
    except KeyboardInterrupt:  # as an extension module's start-up does
        raise ImportError("Encountered an error while initializing the extension.") from None


@pytest.mark.parametrize("command", [_swallowed, _turned_into_an_import_error])
def test_a_ctrl_c_lost_on_the_way_still_ends_the_command(env, capsys, monkeypatch, command):
    monkeypatch.setattr(cli_commands, "cmd_transform", command)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code, out, err = run(["transform", env / "m.nica", env / "X.npy", "-o", env / "out.npy"], capsys)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert (code, out, err) == (130, "", "nica: interrupted\n")


def test_the_process_ends_without_the_interpreters_teardown():
    """console(): the status, stdout and stderr flushed, no atexit handler run (os._exit)."""
    script = "import atexit, sys\natexit.register(print, 'teardown')\nfrom nica.cli._main import console\nconsole(sys.argv[1:])"
    proc = subprocess.run([sys.executable, "-c", script, "--version"], capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stdout) == (0, f"nica {nica.__version__}\n")
    proc = subprocess.run([sys.executable, "-c", script, "fitt"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == "" and proc.stderr.startswith("nica: error: argument command")
