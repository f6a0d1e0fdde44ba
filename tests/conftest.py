"""Fixtures shared by several test files.  (The root conftest.py sets float64 and strict rank
promotion for every test.)"""

import numpy as np
import pytest
from support import FIT_FAST, D, N

from nica.cli import main


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
