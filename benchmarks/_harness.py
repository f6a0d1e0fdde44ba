"""The harness every benchmark script plugs into: command line, machine, JSON output, targets.

A benchmark is a module of this package with

* ``main(argv=None)``: its command line, built on :func:`parser` (the options every script
  takes, ``--quick`` and ``--out``, then its own), run as ``python benchmarks/NAME.py`` or
  ``python -m benchmarks.NAME``;
* ``TARGETS``: a tuple of :class:`Target`, what its PASS/MISS lines check on its result
  (:func:`report_targets`; printed, never asserted);
* ``tables(load)``: the markdown tables of ``docs/benchmarks.md`` that come from its committed
  results, by marker name (``benchmarks/report.py`` writes them into the page).

Results are written with :func:`write_result`: indented JSON whose lists of numbers stay on one
line, headed by the benchmark's name, the time, the command line and :func:`machine_info`.

Standard library only at import time (no NumPy or JAX): a parent process that only spawns
measuring children stays small, and a script can set thread variables before NumPy loads.
"""

from __future__ import annotations

import argparse
import ast
import functools
import hashlib
import json
import numbers
import os
import platform
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "benchmarks" / "results"
IMAGES = REPO_ROOT / "docs" / "images"
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS")


# ---------------------------------------------------------------------------------------------
# command line


def parser(doc, quick_help, default_out):
    """The command line every benchmark starts from: ``--quick`` and ``--out``.

    Parameters
    ----------
    doc : str
        The script's docstring; its first paragraph describes the command.
    quick_help : str
        What ``--quick`` measures.
    default_out : str
        Where the result goes without ``--out`` (said in the help).

    Returns
    -------
    argparse.ArgumentParser
        To which the script adds its own options.
    """
    command = argparse.ArgumentParser(
        description=doc.strip().split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    command.add_argument("--quick", action="store_true", help=quick_help)
    command.add_argument(
        "--out", type=Path, default=None, metavar="FILE", help=f"the result JSON (default: {default_out})"
    )
    return command


def output_path(args, directory, stem):
    """``args.out``, or ``directory/stem.json`` (``stem_quick.json`` with ``--quick``)."""
    if args.out is not None:
        return Path(args.out)
    return Path(directory) / f"{stem}{'_quick' if args.quick else ''}.json"


def command_line(script, argv=None):
    """How the script was called, as one would type it from the repository root."""
    argv = sys.argv[1:] if argv is None else list(argv)
    return " ".join(["python", f"benchmarks/{script}.py", *map(shlex.quote, map(str, argv))])


def log(message):
    """Print at once (the scripts run for long, often with their output in a file)."""
    print(message, flush=True)


# ---------------------------------------------------------------------------------------------
# the machine


def machine_info():
    """The machine and the software a result was measured with: the same keys in every result.

    Returns
    -------
    dict
        ``cpu_model``, ``cpu_count``, ``cpus_available`` (this process's affinity),
        ``memory_bytes``, ``platform``, ``python``, the versions of ``numpy``, ``jax``,
        ``jaxlib``, ``optax`` and ``nica``, JAX's ``backend``, ``device_kind`` and
        ``device_count``, the thread variables (``environment``), the ``git`` commit and
        whether the tree was dirty, and ``load_average_at_start`` (now); a value that cannot
        be read is ``None``.  Imports NumPy, JAX and nica: call it where that is harmless
        (after spawning measuring children, for a script whose parent stays small).
    """
    import jax
    import numpy

    import nica

    device = jax.devices()[0]
    return {
        "cpu_model": _cpu_model() or platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_bytes": total_memory_bytes(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "jax": jax.__version__,
        "jaxlib": _package_version("jaxlib"),
        "optax": _package_version("optax"),
        "nica": nica.__version__,
        "backend": jax.default_backend(),
        "device_kind": getattr(device, "device_kind", str(device)),
        "device_count": jax.device_count(),
        "environment": {name: os.environ.get(name) for name in THREAD_VARIABLES},
        "git": _git_describe(),
        "load_average_at_start": _load_average(),
    }


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def total_memory_bytes():
    """Physical memory from ``os.sysconf`` (``None`` where unavailable)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _package_version(name):
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _load_average():
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def _git_describe():
    try:
        run = functools.partial(subprocess.run, cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        commit = run(["git", "rev-parse", "HEAD"]).stdout.strip()
        dirty = run(["git", "status", "--porcelain", "--untracked-files=no"]).stdout.strip()
        return {"commit": commit or None, "dirty": bool(dirty)}
    except (OSError, subprocess.SubprocessError):
        return None


# ---------------------------------------------------------------------------------------------
# JSON output


def write_result(path, record, *, benchmark, argv=None, machine=None):
    """Write a benchmark's result, headed by what it is and where it was measured.

    Parameters
    ----------
    path : path-like
        The JSON file (its folder is created).
    record : dict
        The result.  Its own ``command`` or ``machine``, if any, are kept (a re-evaluation
        that keeps the command of the run it evaluates).
    benchmark : str
        The script's name, as in ``benchmarks/<benchmark>.py``.
    argv : list of str, optional
        The script's arguments (default: ``sys.argv[1:]``).
    machine : dict, optional
        :func:`machine_info` taken earlier (at the start of the run); taken now if omitted.
        Its ``load_average_at_end`` is set now.

    Returns
    -------
    pathlib.Path
    """
    header = {
        "benchmark": benchmark,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(benchmark, argv),
        "machine": dict(machine if machine is not None else machine_info(), load_average_at_end=_load_average()),
    }
    return dump_json(path, {**header, **record})


def dump_json(path, value):
    """Indented JSON (one space a level) with every list of numbers on one line, written
    atomically (a half-written file never replaces a good one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(_dumps(value) + "\n")
    os.replace(tmp, path)
    return path


_LIST_MARK = "\x1flist {}\x1f"


def _dumps(value):
    lists = []

    def mark(item):
        if isinstance(item, dict):
            return {key: mark(v) for key, v in item.items()}
        if isinstance(item, (list, tuple)):
            if item and all(v is None or isinstance(v, numbers.Number) for v in item):
                lists.append(json.dumps(list(item), default=_plain))
                return _LIST_MARK.format(len(lists) - 1)
            return [mark(v) for v in item]
        return item

    text = json.dumps(mark(value), indent=1, default=_plain)
    return re.sub(r'"\\u001flist (\d+)\\u001f"', lambda match: lists[int(match.group(1))], text)


def _plain(value):
    """NumPy scalars and arrays as Python numbers and lists."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"expected JSON-able values (numbers, strings, lists, dicts), got {type(value).__name__}")


def read_json(path, default=None):
    """The JSON value in ``path``, or ``default`` when there is no such file."""
    path = Path(path)
    if not path.exists():
        return default
    return json.loads(path.read_text())


def read_jsonl(path):
    """The rows of a JSON-lines file (a resumable run's cache); ``[]`` when there is none."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_jsonl(path, row):
    """Append one row to a JSON-lines file, at once (an interrupted run keeps it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        handle.write(json.dumps(row) + "\n")


# ---------------------------------------------------------------------------------------------
# targets


class Target(NamedTuple):
    """One check of a result: ``measured(result) <comparison> threshold``.

    Attributes
    ----------
    name : str
        What is checked, as printed.
    measured : callable
        ``measured(result)``: the number checked, ``None`` where it was not measured, or a
        dict ``{label: number or None}`` for one check per label (a dimension, a contender).
    comparison : str
        ``"<"``, ``"<="``, ``">="`` or ``">"``.
    threshold : float
    """

    name: str
    measured: Callable[[dict], Any]
    comparison: str
    threshold: float


_COMPARE = {"<": float.__lt__, "<=": float.__le__, ">=": float.__ge__, ">": float.__gt__}


def evaluate(targets, result):
    """Check ``result`` against ``targets``.

    Returns
    -------
    list of dict
        One per check: ``name``, ``measured``, ``comparison``, ``threshold`` and ``status``
        (``"PASS"``, ``"MISS"``, or ``"N/A"`` where nothing was measured).
    """
    checks = []
    for target in targets:
        if target.comparison not in _COMPARE:
            raise ValueError(
                f"target {target.name!r}: expected a comparison among {sorted(_COMPARE)}, got {target.comparison!r}"
            )
        values = target.measured(result)
        labelled = values.items() if isinstance(values, dict) else [(None, values)]
        for label, value in labelled:
            if value is None:
                status = "N/A"
            else:
                passed = _COMPARE[target.comparison](float(value), float(target.threshold))
                status = "PASS" if passed else "MISS"
            checks.append(
                {
                    "name": target.name if label is None else f"{target.name} ({label})",
                    "measured": value,
                    "comparison": target.comparison,
                    "threshold": target.threshold,
                    "status": status,
                }
            )
    return checks


def report_targets(targets, result, write=log):
    """Print a PASS/MISS line for each check of ``result`` (never asserted); return the checks."""
    checks = evaluate(targets, result)
    if checks:
        write("checks (printed, never asserted):")
    for check in checks:
        measured = "not measured" if check["measured"] is None else f"{check['measured']:.4g}"
        write(
            f"  [{check['status']}] {check['name']}: {measured} (target {check['comparison']} {check['threshold']:g})"
        )
    return checks


# ---------------------------------------------------------------------------------------------
# what nica's defaults resolve to


@functools.lru_cache(maxsize=1)
def defaults_fingerprint():
    """A short hash of what nica's defaults resolve to, for the resume keys of cached cells.

    It covers nica's version, both estimators' default parameters (``get_params()``) and the
    code of the installed ``nica`` package (every ``.py`` file, parsed, its docstrings
    dropped): any code change, a module constant behind an ``"auto"`` setting included,
    measures the cells again; an edit of docstrings or comments alone does not.
    """
    import nica

    state = {
        "version": nica.__version__,
        "NonlinearICA": nica.NonlinearICA().get_params(),
        "ConditionalNonlinearICA": nica.ConditionalNonlinearICA().get_params(),
        "code": _code_digest(Path(nica.__file__).parent),
    }
    text = json.dumps(state, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _code_digest(root):
    """SHA-256 of the syntax trees of the ``.py`` files under ``root``, without docstrings."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if (
                isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                and body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:]
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(ast.dump(tree).encode() + b"\0")
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# markdown


def markdown_table(header, rows):
    """A markdown table: ``header`` and each row a sequence of cells (an empty cell is ``| |``)."""

    def line(cells):
        return "|" + "|".join(f" {cell} " if str(cell) else " " for cell in cells) + "|"

    return "\n".join([line(header), "|" + "---|" * len(header), *map(line, rows)])


def signed(text):
    """A formatted number with a typographic minus (``−``) for the page."""
    return text.replace("-", "−")
