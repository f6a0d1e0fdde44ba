"""Fixtures shared by several test files.  (The root conftest.py sets float64 and strict rank
promotion for every test.)"""

import os
import signal

import numpy as np
import pytest
from support import FIT_FAST, D, N

from nica.cli import main

# The command line keeps JAX's compiled programs under the home folder by default: never from the
# tests (and their child processes); tests/test_startup.py turns it on in temporary folders.
os.environ["NICA_COMPILATION_CACHE"] = "off"

# A test run started as a background job of a non-interactive shell (`cmd &`) inherits an ignored
# SIGINT, and so would every process the tests start: the Ctrl-C tests (tests/test_interrupts.py,
# tests/test_cli_main.py) need the default, so each test process takes Python's own handler back.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _sigint_as_it_was():
    """Each test leaves SIGINT's handler as it found it (a test that calls the command line
    in-process may change it; the next test's child processes would inherit an ignored SIGINT)."""
    handler = signal.getsignal(signal.SIGINT)
    yield
    if signal.getsignal(signal.SIGINT) is not handler and handler is not None:
        signal.signal(signal.SIGINT, handler)


@pytest.fixture(scope="session")
def cli_env(tmp_path_factory):
    """The command line's files, shared by tests/test_cli_*.py in a worker: data files and four
    tiny fitted models, plain (``m.nica``), text labels s0..s9 (``ms.nica``), integer labels
    (``mi.nica``) and a continuous u (``mc.nica``).

    Tests may add files here but never overwrite these, and never leave ``new.nica`` or
    ``out.npy`` behind (the misuse tests check that a refused command wrote neither).
    """
    d = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    X = rng.laplace(size=(N, D))
    np.save(d / "X.npy", X)
    np.savetxt(d / "X.csv", X, delimiter=",", fmt="%.17g")
    np.savetxt(d / "labels.csv", np.array([f"s{i % 10}" for i in range(N)]), fmt="%s")
    np.savetxt(d / "ints.csv", np.arange(N) % 4, fmt="%d")
    np.savetxt(d / "cont.csv", rng.normal(size=(N, 2)), delimiter=",", fmt="%.17g")
    for model, aux in [
        ("m.nica", None),
        ("ms.nica", "labels.csv"),
        ("mi.nica", "ints.csv"),
        ("mc.nica", "cont.csv"),
    ]:  # max_iter reached: a one-line warning each
        argv = ["fit", str(d / "X.npy"), "--model", str(d / model)] + FIT_FAST
        assert main(argv + ([] if aux is None else ["--aux", str(d / aux)])) == 0
    (d / "plain.txt").write_text("a regular file\n")
    (d / "adir").mkdir()
    return d
