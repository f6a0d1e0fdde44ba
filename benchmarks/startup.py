"""Start-up: how long a fresh process takes to import nica, to answer ``nica --help``, and to
run a small ``nica fit`` with and without the persistent compilation cache.

Each command runs in a fresh Python process, ``--repeats`` times, interleaved (one run of each
command per round, in a new random order each round, so that a change of load on the machine
falls on all of them alike); the wall-clock time of each run is stored and the medians are
compared.  The commands:

* ``python -c pass``: the interpreter alone;
* ``import nica``: the package, its public names imported on first use;
* ``nica --help`` and ``nica fit --help``: the console script's entry (``nica_launcher``) up to
  argparse's answer;
* ``import jax``, ``import sklearn``, ``import scipy.stats``: what ``import nica`` loaded before
  its names were lazy, for comparison;
* ``nica fit`` of a small data set (1,000 × 3, 2 layers, 3 epochs) with
  ``--no-compilation-cache`` (every program compiled) and with a warm cache (the programs read
  back from the folder an untimed run filled).

The checks (PASS / MISS, never asserted): ``import nica`` ≤ 1 s, ``nica --help`` ≤ 0.5 s, and
the warm fit faster than the uncached one.

Usage::

    python benchmarks/startup.py            # 7 rounds: about two minutes on 2 cores
    python benchmarks/startup.py --quick    # 3 rounds

Output: ``benchmarks/results/startup[_quick].json`` (``--out``: elsewhere).
"""

from __future__ import annotations

if __package__ in (None, ""):  # run as ``python benchmarks/startup.py``
    import _bootstrap  # noqa: F401

import os  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from benchmarks import _harness  # noqa: E402
from benchmarks._harness import Target  # noqa: E402

LAUNCH = "from nica_launcher import main; main()"  # what the ``nica`` console script runs
FIT = ["--n-layers", "2", "--max-iter", "3", "--batch-size", "100", "--random-state", "0"]
# {name: the process's arguments after the interpreter}; {data}, {out}, {cache}: the run's files
COMMANDS = {
    "python -c pass": ["-c", "pass"],
    "import nica": ["-c", "import nica"],
    "nica --help": ["-c", LAUNCH, "--help"],
    "nica fit --help": ["-c", LAUNCH, "fit", "--help"],
    "import jax": ["-c", "import jax"],
    "import sklearn": ["-c", "import sklearn"],
    "import scipy.stats": ["-c", "import scipy.stats"],
    "nica fit, no cache": ["-c", LAUNCH, "fit", "{data}", "--model", "{out}", *FIT, "--no-compilation-cache"],
    "nica fit, warm cache": ["-c", LAUNCH, "fit", "{data}", "--model", "{out}", *FIT, "--compilation-cache", "{cache}"],
}


def _median(result, name):
    return result["median_seconds"][name]


TARGETS = (
    Target("import nica (s)", lambda result: _median(result, "import nica"), "<=", 1.0),
    Target("nica --help (s)", lambda result: _median(result, "nica --help"), "<=", 0.5),
    Target(
        "nica fit: warm cache / no cache",
        lambda result: _median(result, "nica fit, warm cache") / _median(result, "nica fit, no cache"),
        "<",
        1.0,
    ),
)


def _run(argv, files):
    """Seconds of one fresh process running ``argv`` (its files filled in); stops on a failure."""
    command = [sys.executable, *(part.format(**files) for part in argv)]
    environment = dict(os.environ, PYTHONPATH=str(_harness.REPO_ROOT), PYTHONWARNINGS="ignore")
    environment.pop("JAX_COMPILATION_CACHE_DIR", None)
    environment.pop("NICA_COMPILATION_CACHE", None)
    start = time.perf_counter()
    done = subprocess.run(command, env=environment, capture_output=True, text=True, cwd=files["folder"])
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")
    return seconds


def _write_data(path):
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, numpy as np\n"
            "np.save(sys.argv[1], np.random.default_rng(0).laplace(size=(1000, 3)) @ [[1, .5, 0], [0, 1, .3], [.2, 0, 1]])",
            str(path),
        ],
        check=True,
    )


def main(argv=None):
    parser = _harness.parser(__doc__, "3 rounds", "benchmarks/results/startup[_quick].json")
    parser.add_argument("--repeats", type=int, default=7, help="rounds (one run of each command per round)")
    args = parser.parse_args(argv)
    repeats = 3 if args.quick else args.repeats
    machine = _harness.machine_info()
    samples = {name: [] for name in COMMANDS}
    order = random.Random(0)
    with tempfile.TemporaryDirectory() as folder:
        files = {
            "folder": folder,
            "data": str(Path(folder) / "X.npy"),
            "out": str(Path(folder) / "m.nica"),
            "cache": str(Path(folder) / "cache"),
        }
        _write_data(files["data"])
        for name in COMMANDS:  # untimed: files in the OS cache, the compilation cache filled
            _run(COMMANDS[name], files)
        for round_ in range(repeats):
            names = list(COMMANDS)
            order.shuffle(names)
            for name in names:
                samples[name].append(_run(COMMANDS[name], files))
            _harness.log(f"round {round_ + 1}/{repeats} done")
        n_cached = len(os.listdir(files["cache"]))
    result = {
        "settings": {"repeats": repeats, "fit_options": FIT, "fit_data": [1000, 3]},
        "commands": {name: " ".join(argv) for name, argv in COMMANDS.items()},
        "samples_seconds": samples,
        "median_seconds": {name: statistics.median(values) for name, values in samples.items()},
        "cached_programs": n_cached,
    }
    for name, value in result["median_seconds"].items():
        _harness.log(f"{name:24s} {value:7.3f} s (median of {repeats})")
    result["checks"] = _harness.report_targets(TARGETS, result)
    path = _harness.output_path(args, _harness.RESULTS, "startup")
    _harness.write_result(path, result, benchmark="startup", argv=argv, machine=machine)
    _harness.log(f"wrote {path}")


def tables(load):
    """The medians of every command."""
    result = load("startup")
    rows = [
        [f"`{name}`", f"{result['median_seconds'][name]:.2f} s", f"{min(values):.2f} s"]
        for name, values in result["samples_seconds"].items()
    ]
    return {
        "startup/times": _harness.markdown_table(
            ["command (a fresh process)", f"median of {result['settings']['repeats']}", "min"], rows
        )
    }


if __name__ == "__main__":
    main()
