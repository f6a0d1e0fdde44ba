"""Ctrl-C and kill -9 (``nica/_src/interrupts.py``, the ``nica`` process's ending in
``nica/cli/_main.py`` and ``nica_launcher``).

The handlers first, in this process; then a fit interrupted at an epoch's start; then the soak:
SIGINTs at random moments of real ``nica fit`` processes (import, compile, epochs, checkpoint
writes) and ``kill -9`` of processes writing checkpoints."""

import gc
import os
import pathlib
import random
import resource
import shlex
import signal
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest
from support import assert_same_fit, default_sigint

import nica
from nica._src.estimator import base
from nica._src.interrupts import CountingInterrupts, DeferredInterrupts
from nica._src.io import write_atomically
from nica.cli import load_model, main

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

ROOT = pathlib.Path(__file__).resolve().parent.parent
LAUNCH = "from nica_launcher import main; main()"  # what the console script runs

# ---------------------------------------------------------------------------------------------
# the handlers


@pytest.fixture
def python_handler():
    """SIGINT handled by Python's default handler during the test (as in a fresh process)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_held_interrupt_is_raised_at_the_safe_point(python_handler):
    with DeferredInterrupts() as interrupts:
        signal.raise_signal(signal.SIGINT)
        sum(range(1000))  # Python code runs on: nothing raised
        assert interrupts.pending
        with pytest.raises(KeyboardInterrupt):
            interrupts.deliver()
        assert not interrupts.pending
        interrupts.deliver()  # nothing held: nothing raised
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_second_interrupt_is_raised_at_once_and_one_held_at_the_end(python_handler):
    with pytest.raises(KeyboardInterrupt), DeferredInterrupts():
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)
        sum(range(1000))
        pytest.fail("the second SIGINT was not raised")
    with pytest.raises(KeyboardInterrupt), DeferredInterrupts():
        signal.raise_signal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt), DeferredInterrupts():  # in place of an error meanwhile
        signal.raise_signal(signal.SIGINT)
        raise ValueError("an error while a Ctrl-C was held")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_ignored_interrupt_and_other_threads_are_left_alone():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with DeferredInterrupts() as deferred, CountingInterrupts():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            signal.raise_signal(signal.SIGINT)
            deferred.deliver()
    finally:
        signal.signal(signal.SIGINT, previous)
    seen = []

    def in_a_thread():
        with DeferredInterrupts() as interrupts:
            interrupts.deliver()
            seen.append(signal.getsignal(signal.SIGINT))

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join()
    assert seen == [signal.getsignal(signal.SIGINT)]


class _RaisesInDel:
    def __del__(self):
        signal.raise_signal(signal.SIGINT)
        sum(range(1000))  # the handler runs here, inside __del__, where Python cannot raise


def test_an_interrupt_python_swallows_is_raised_at_the_next_safe_point(python_handler, capsys):
    """A KeyboardInterrupt raised inside __del__ (or a garbage-collection callback) reaches
    sys.unraisablehook: not printed, and raised again when a fit starts (or at check())."""
    hook = sys.unraisablehook
    with CountingInterrupts() as interrupts:
        assert sys.unraisablehook != hook
        _RaisesInDel()
        assert interrupts.missed()
        with pytest.raises(KeyboardInterrupt):
            with DeferredInterrupts():  # a fit checks when it starts
                pytest.fail("the fit started")
        assert not interrupts.missed()
        _RaisesInDel()
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()
        interrupts.check()
    assert sys.unraisablehook is hook
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert "Exception ignored" not in capsys.readouterr().err


def test_a_garbage_collection_callback_does_not_lose_an_interrupt(python_handler, capsys):
    def callback(phase, info):
        if phase == "start" and not fired:
            fired.append(phase)
            signal.raise_signal(signal.SIGINT)
            sum(range(1000))

    fired = []
    gc.callbacks.append(callback)
    try:
        with CountingInterrupts() as interrupts:
            gc.collect()
            with pytest.raises(KeyboardInterrupt):
                interrupts.check()
    finally:
        gc.callbacks.remove(callback)
    assert fired and "Exception ignored" not in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# a fit: Ctrl-C at an epoch's start, after that epoch's checkpoint


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(0)
    S = rng.laplace(size=(400, 3))
    return np.tanh(S @ rng.uniform(-1, 1, (3, 3)).T) + 0.1 * S


def _signal_after_epoch(monkeypatch, epoch):
    """A SIGINT as epoch ``epoch`` ends (before the loop validates and goes on): it arrives
    while the fit runs, as a Ctrl-C during that epoch would be handled once the epoch returns."""
    real = base.fit_to_data

    def fit_to_data(*args, callback, **kwargs):
        def signalling(event, progress):
            if event == "epoch_end" and progress.epoch == epoch:
                sent.append(epoch)
                signal.raise_signal(signal.SIGINT)
            callback(event, progress)

        return real(*args, callback=signalling, **kwargs)

    sent = []
    monkeypatch.setattr(base, "fit_to_data", fit_to_data)
    return sent


KW = dict(n_layers=2, batch_size=64, learning_rate=3e-3, random_state=0)


@pytest.mark.parametrize("every", [1, 3])
def test_ctrl_c_saves_the_epoch_it_stops_at(X, tmp_path, monkeypatch, python_handler, every):
    """Held from the end of epoch 5; raised at epoch 6's start, once the checkpoint of epochs
    1-5 is written (also between two of checkpoint_every's checkpoints); resumed, the fit equals
    the uninterrupted one."""
    full = nica.NonlinearICA(max_iter=9, **KW).fit(X)
    path = tmp_path / "fit.nica"
    sent = _signal_after_epoch(monkeypatch, 5)
    with pytest.raises(KeyboardInterrupt):
        nica.NonlinearICA(max_iter=9, checkpoint_path=path, checkpoint_every=every, **KW).fit(X)
    monkeypatch.undo()
    assert sent == [5]
    saved = nica.load(path)
    assert saved.n_iter_ == 5 and saved.epochs_left_ == 4
    assert_same_fit(saved.set_params(warm_start=True).fit(X), full)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.nica"]


def test_ctrl_c_in_the_last_epoch_keeps_the_resumable_checkpoint(X, tmp_path, monkeypatch, python_handler):
    """Held until the epochs end: raised before the final write, so the checkpoint of the last
    epoch's start stays, and resumes."""
    full = nica.NonlinearICA(max_iter=4, **KW).fit(X)
    _signal_after_epoch(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        nica.NonlinearICA(max_iter=4, checkpoint_path=tmp_path / "fit.nica", **KW).fit(X)
    monkeypatch.undo()
    saved = nica.load(tmp_path / "fit.nica")
    assert saved.n_iter_ == 3 and saved.epochs_left_ == 1
    assert_same_fit(saved.set_params(warm_start=True).fit(X), full)


def test_ctrl_c_without_checkpoints_stops_at_the_next_epoch(X, monkeypatch, python_handler):
    model = nica.NonlinearICA(max_iter=50, **KW)
    _signal_after_epoch(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        model.fit(X)
    assert model.n_iter_ == 2 and np.isfinite(model.score(X))  # the best parameters of epochs 1-2


# ---------------------------------------------------------------------------------------------
# the console script: Ctrl-C while the command line is imported (nica_launcher)


def test_the_console_script_starts_outside_the_package_and_imports_nothing_heavy():
    assert 'nica = "nica_launcher:main"' in (ROOT / "pyproject.toml").read_text()
    heavy = "('nica', 'jax', 'jaxlib', 'numpy', 'scipy', 'sklearn')"
    script = f"import sys, nica_launcher\nprint(sorted(m for m in sys.modules if m.split('.')[0] in {heavy}))"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60, preexec_fn=default_sigint
    )
    assert (proc.returncode, proc.stdout) == (0, "[]\n"), proc.stderr


# what ``nica.cli._main`` does as it is imported, in a stand-in package: the real imports are too
# fast and too slow to hit reliably with a timed signal (the soak below hits them at random)
IMPORTS = {
    "interrupted": "import os, signal, time\nos.kill(os.getpid(), signal.SIGINT)\ntime.sleep(30)\n",
    "turned into an ImportError": (
        "import os, signal, time\ntry:\n    os.kill(os.getpid(), signal.SIGINT)\n    time.sleep(30)\n"
        "except KeyboardInterrupt:  # as an extension module's start-up does\n"
        "    raise ImportError('Encountered an error while initializing the extension.') from None\n"
    ),
    "swallowed": (
        "import signal\nclass InDel:\n    def __del__(self):\n        signal.raise_signal(signal.SIGINT)\n"
        "        sum(range(1000))\nInDel()\ndef console(argv):\n    print('the command ran')\n"
    ),
}


@pytest.mark.parametrize("case", list(IMPORTS) + ["a real ImportError"])
def test_ctrl_c_while_the_command_line_is_imported(tmp_path, case):
    package = tmp_path / "nica" / "cli"
    package.mkdir(parents=True)
    (tmp_path / "nica" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "_main.py").write_text(IMPORTS.get(case, "raise ImportError('a missing library')\n"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))
    # in tmp_path, -S (no site-packages): the real package is not found first
    argv = [sys.executable, "-S", "-c", LAUNCH]
    proc = subprocess.run(
        argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, preexec_fn=default_sigint
    )
    if case in IMPORTS:
        assert (proc.returncode, proc.stdout, proc.stderr) == (130, "", "nica: interrupted\n")
    else:  # not an interruption: not hidden
        assert proc.returncode == 1 and "ImportError: a missing library" in proc.stderr


# ---------------------------------------------------------------------------------------------
# the soak: real processes


FIT_OPTIONS = ["--n-layers", "2", "--batch-size", "16", "--max-iter", "40", "--random-state", "0"]
CONCURRENCY = 4
N_SIGINT, N_SIGKILL, N_REAL_SIGKILL = 30, 30, 2


def _environment(tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    # the reference run compiles; the trials read its programs (a shorter compile phase)
    env["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path / "jax-cache")
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    return env


def _fit_argv(data, folder):
    """``nica fit`` as the console script starts it (ConvergenceWarning lines silenced: the
    only line on stderr is then the interruption's)."""
    return [sys.executable, "-W", "ignore::UserWarning", "-c", LAUNCH, "fit", str(data)] + [
        "--model",
        str(folder / "m.nica"),
        "--checkpoint",
        str(folder / "ck.nica"),
        "--checkpoint-every",
        "1",
        *FIT_OPTIONS,
    ]


def _identity(path):
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _handles_sigint(pid, stderr):
    """Whether ``nica_launcher`` handles SIGINT in process ``pid``: it has sent stderr to a
    temporary file (while it imports the command line, a moment that a poll can miss now that
    the import is light), or it is past that, running a command (JAX's extension is loaded:
    the command line imports JAX only then)."""
    try:
        if os.readlink(f"/proc/{pid}/fd/2") != os.path.realpath(stderr):
            return True
        with open(f"/proc/{pid}/maps") as maps:
            return any("jaxlib" in line for line in maps)
    except OSError:
        return False


class Trial:
    def __init__(self, folder, argv, env, watch, when, sig):
        self.folder, self.argv, self.env, self.watch, self.when, self.sig = folder, argv, env, watch, when, sig
        self.writes, self.last, self.sent_at, self.status, self.ready = 0, None, None, None, None

    def start(self):
        self.folder.mkdir(exist_ok=True)
        self.err = open(self.folder / "stderr", "w")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stdout=subprocess.DEVNULL, stderr=self.err, preexec_fn=default_sigint
        )

    def poll(self, now):
        if self.ready is None and _handles_sigint(self.proc.pid, self.folder / "stderr"):
            self.ready = now
        identity = _identity(self.watch)
        if identity is not None and identity != self.last:
            self.writes, self.last = self.writes + 1, identity
            if self.when[0] == "writes" and self.writes == self.when[1]:
                self.due = now + self.when[2]
        due = getattr(self, "due", None)
        if self.when[0] == "time":  # from the moment the process handles SIGINT (before: Python's own)
            due = None if self.ready is None else self.ready + self.when[1]
        elif self.when[0] == "started":
            due = self.started + self.when[1]
        if self.sent_at is None and due is not None and now >= due and self.proc.poll() is None:
            self.proc.send_signal(self.sig)
            self.sent_at = now - self.started
        self.status = self.proc.poll()
        if self.status is not None:
            self.err.close()
            self.stderr = (self.folder / "stderr").read_text()
            return True
        return False


def _run(trials):
    """Run the trials ``CONCURRENCY`` at a time."""
    waiting, running = list(trials), []
    while waiting or running:
        while waiting and len(running) < CONCURRENCY:
            running.append(waiting.pop(0))
            running[-1].start()
        now = time.monotonic()
        running = [trial for trial in running if not trial.poll(now)]
        time.sleep(0.002)
    return trials


@pytest.fixture(scope="module")
def soak(tmp_path_factory):
    """The data, the environment and one uninterrupted fit (its model, and how long it took to
    write its first checkpoint)."""
    tmp = tmp_path_factory.mktemp("soak")
    rng = np.random.default_rng(0)
    S = rng.laplace(size=(300, 2))
    np.save(tmp / "X.npy", S @ np.array([[1.0, 0.5], [0.3, 1.0]]).T)
    env = _environment(tmp)
    reference = Trial(tmp / "reference", _fit_argv(tmp / "X.npy", tmp / "reference"), env, None, ("never", 0), None)
    reference.watch = reference.folder / "ck.nica"
    first_write = []
    reference.start()
    while not reference.poll(time.monotonic()):
        if reference.writes and not first_write:
            first_write.append(time.monotonic() - reference.ready)
        time.sleep(0.002)
    assert reference.status == 0 and reference.stderr == "", reference.stderr
    return dict(
        folder=tmp,
        data=tmp / "X.npy",
        env=env,
        model=load_model(reference.folder / "m.nica"),
        first_write=first_write[0],
    )


def _check_interrupted(trial, soak, outcomes, capsys):
    """One interrupted process: status 130, one line, and what it says it saved is so."""
    folder, reference = trial.folder, soak["model"]
    if trial.status == 0:  # the command finished before the signal was sent or handled (a loaded
        # machine runs the tiny fit past the moment drawn): then it did its whole work, silently
        assert trial.stderr == "", trial.stderr
        assert_same_fit(load_model(folder / "m.nica"), reference)
        outcomes["finished first"] = outcomes.get("finished first", 0) + 1
        return "finished first"
    assert trial.status == 130, (trial.status, trial.sent_at, trial.stderr)
    lines = trial.stderr.splitlines()
    assert len(lines) == 1 and trial.stderr.endswith("\n"), trial.stderr
    line = lines[0]
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".part")]
    if "resume it with: " in line:
        outcome = "checkpoint"
        assert f"saved in checkpoint '{folder / 'ck.nica'}'" in line
        saved = nica.load(folder / "ck.nica")
        if saved.epochs_left_ == 0:  # interrupted once the fit had finished and saved its last checkpoint
            assert_same_fit(saved, reference)
        else:
            command = shlex.split(line.split("resume it with: ", 1)[1])
            assert command[:2] == ["nica", "fit"]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                assert main(command[1:]) == 0  # the exact command printed
            capsys.readouterr()
            assert_same_fit(load_model(folder / "m.nica"), reference)
    elif "the model was saved to" in line:
        outcome = "model"
        assert_same_fit(load_model(folder / "m.nica"), reference)
    elif line.startswith("nica: interrupted before the first checkpoint was written"):
        outcome = "before the first checkpoint"
        assert not (folder / "ck.nica").exists() and not (folder / "m.nica").exists()
    else:
        outcome = "while starting"
        assert line == "nica: interrupted", line
        assert not (folder / "ck.nica").exists()
    outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcome


# The writer killed by the kill -9 soak: the real atomic write (nica/_src/io.py, loaded alone so
# that the process starts in milliseconds), writing two real checkpoint files' bytes in turn,
# slowly (a kill lands inside a write), with a real checkpoint's name.
WRITER = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("nica_io", sys.argv[1])
io = importlib.util.module_from_spec(spec)
spec.loader.exec_module(io)
payloads = [open(name, "rb").read() for name in sys.argv[3:]]

def writer(data):
    def write(stream):
        for i in range(0, len(data), 2048):
            stream.write(data[i : i + 2048])
            time.sleep(0.0005)
    return write

n = 0
while True:
    io.write_atomically(sys.argv[2], writer(payloads[n % len(payloads)]), make_dirs=False, name="checkpoint_path")
    n += 1
"""


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="the soak reads /proc")
def test_soak_sigint_and_kill(soak, capsys):
    """30 SIGINTs of ``nica fit`` at random moments (a fixed seed): from the start (import,
    start-up, compile) or just after the k-th checkpoint write (epochs, checkpoint writes).
    Every one ends with status 130 and one line; a checkpoint it names loads, and the command
    it prints resumes the fit to the uninterrupted fit's result.  Then kill -9 of processes
    writing checkpoints (30 writers of the real atomic write, 4 real fits): the checkpoint
    is whole or absent, and the next write leaves no temporary file."""
    start = time.monotonic()
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    rng = random.Random(20261207)
    folder, env = soak["folder"], soak["env"]
    trials = []
    for i in range(N_SIGINT):
        trial_folder = folder / f"int{i}"
        if i % 2 == 0:  # spread over the start: import, reading, compile (4 at a time run slower)
            when = ("time", rng.uniform(0.0, soak["first_write"]))
        else:  # epochs and checkpoint writes
            when = ("writes", rng.randint(1, 3), rng.uniform(0.0, 0.02))
        argv = _fit_argv(soak["data"], trial_folder)
        trials.append(Trial(trial_folder, argv, env, trial_folder / "ck.nica", when, signal.SIGINT))
    outcomes: dict = {}
    for trial in _run(trials):
        outcome = _check_interrupted(trial, soak, outcomes, capsys)
        if trial.when[0] == "writes":
            assert outcome in ("checkpoint", "model", "finished first"), (trial.when, trial.stderr)
    # most signals land while the command works (every one of them ends with 130 and one line)
    assert outcomes.get("finished first", 0) <= N_SIGINT // 5, outcomes
    interrupted = time.monotonic() - start

    # kill -9: the real fits first (killed just after their k-th checkpoint), then the writers
    kills = []
    for i in range(N_REAL_SIGKILL):
        trial_folder = folder / f"kill-fit{i}"
        when = ("writes", rng.randint(1, 3), rng.uniform(0.0, 0.01))
        kills.append(
            Trial(
                trial_folder, _fit_argv(soak["data"], trial_folder), env, trial_folder / "ck.nica", when, signal.SIGKILL
            )
        )
    payloads = [soak["folder"] / "reference" / "ck.nica", soak["folder"] / "reference" / "m.nica"]
    contents = {p.read_bytes() for p in payloads}
    for i in range(N_SIGKILL):
        trial_folder = folder / f"kill{i}"
        argv = [sys.executable, "-c", WRITER, str(ROOT / "nica" / "_src" / "io.py"), str(trial_folder / "ck.nica")]
        when = ("started", rng.uniform(0.02, 0.4))
        kills.append(
            Trial(trial_folder, argv + [str(p) for p in payloads], env, trial_folder / "ck.nica", when, signal.SIGKILL)
        )
    written = 0
    for trial in _run(kills):
        if trial.status == 0 and trial.argv[2] != WRITER:
            # a real fit that ended before its k-th checkpoint was seen, or between the last look
            # at it and the kill (a loaded machine): then it did its whole work, silently
            assert trial.stderr == "", trial.stderr
            assert_same_fit(load_model(trial.folder / "m.nica"), soak["model"])
            continue
        assert trial.status == -signal.SIGKILL, (trial.status, trial.stderr)
        path = trial.folder / "ck.nica"
        if path.exists():  # whole: one of the files written, and it loads
            written += 1
            if trial.argv[2] == WRITER:
                assert path.read_bytes() in contents
            assert nica.load(path).n_iter_ >= 1
        data = next(iter(contents))
        write_atomically(path, lambda stream: stream.write(data), make_dirs=False, name="checkpoint_path")
        assert sorted(p.name for p in trial.folder.iterdir() if p.name != "stderr") == ["ck.nica"] + (
            ["m.nica"] if (trial.folder / "m.nica").exists() else []
        )
        assert nica.load(path).n_iter_ >= 1
    assert written >= N_REAL_SIGKILL
    duration = time.monotonic() - start
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = children.ru_utime + children.ru_stime - children_before.ru_utime - children_before.ru_stime
    with capsys.disabled():
        print(
            f"\nsoak: {N_SIGINT} SIGINTs {outcomes} in {interrupted:.1f} s; {N_REAL_SIGKILL + N_SIGKILL} "
            f"kill -9 ({written} left a checkpoint) in {duration - interrupted:.1f} s; "
            f"{duration:.1f} s in all, {cpu:.1f} s of the processes' CPU"
        )
