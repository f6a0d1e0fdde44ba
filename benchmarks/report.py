"""Write the tables of ``docs/benchmarks.md`` from the committed results.

A generated table sits in the page between two marker comments, the prose around it being the
page's own::

    <!-- generated: step_overhead/threads -->
    | threads | relative | ... |
    <!-- end generated -->

Each benchmark module's ``tables(load)`` turns its results in ``benchmarks/results/`` into its
tables, by marker name.  Commands (from the repository root)::

    python -m benchmarks.report            # rewrite every generated table in place
    python -m benchmarks.report --check    # compare only: exit status 1, naming each table that differs
"""

from __future__ import annotations

if __package__ in (None, ""):  # run as ``python benchmarks/report.py``
    import _bootstrap  # noqa: F401

import argparse
import difflib
import functools
import importlib
import json
import re
import sys
from pathlib import Path

from benchmarks._harness import REPO_ROOT, RESULTS

PAGE = REPO_ROOT / "docs" / "benchmarks.md"
# the benchmark modules, in the order of the page
MODULES = (
    "gradient_scaling",
    "step_overhead",
    "estimator",
    "conditioning",
    "memory",
    "estimator_memory",
    "devices",
    "distributed",
    "density",
    "identifiability",
    "defaults",
    "hybrid",
    "real_signals",
    "startup",
    "epoch_time",
)
MARKED = re.compile(r"(<!-- generated: (?P<name>[^ ]+) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.S)


def generated_tables(results=RESULTS):
    """Every table the benchmark modules make from the results in ``results``, by marker name."""

    @functools.cache
    def load(name):
        path = Path(results) / f"{name}.json"
        if not path.exists():
            raise FileNotFoundError(f"a table needs {path}, which does not exist")
        return json.loads(path.read_text())

    tables = {}
    for module_name in MODULES:
        module = importlib.import_module(f"benchmarks.{module_name}")
        for name, table in module.tables(load).items():
            if name in tables:
                raise ValueError(f"two benchmark modules make a table named {name!r}; expected one")
            tables[name] = table.rstrip("\n") + "\n"
    return tables


def render(page, tables):
    """``page`` with every marked table replaced by its generated text.

    Raises
    ------
    ValueError
        When a marker names no generated table, or a generated table has no marker.
    """
    marked = [match.group("name") for match in MARKED.finditer(page)]
    unknown = sorted(set(marked) - set(tables))
    unplaced = sorted(set(tables) - set(marked))
    if unknown or unplaced:
        raise ValueError(
            f"expected one marker per generated table; markers without a table: {unknown}, "
            f"tables without a marker: {unplaced}"
        )
    return MARKED.sub(lambda match: match.group(1) + tables[match.group("name")] + match.group(4), page)


def differences(page, tables):
    """The tables whose text in ``page`` differs from the generated one, each with a diff."""
    found = []
    for match in MARKED.finditer(page):
        name, body = match.group("name"), match.group("body")
        wanted = tables.get(name)
        if wanted is not None and body != wanted:
            diff = difflib.unified_diff(body.splitlines(), wanted.splitlines(), "page", "generated", lineterm="", n=0)
            found.append((name, "\n".join(diff)))
    return found


def check(page_path=PAGE, results=RESULTS):
    """The problems of the page's generated tables: a list of messages, empty when all agree."""
    page = Path(page_path).read_text(encoding="utf-8")
    tables = generated_tables(results)
    try:
        render(page, tables)
    except ValueError as error:
        return [str(error)]
    return [
        f"{page_path}: table {name!r} differs from what its results give:\n{diff}"
        for name, diff in differences(page, tables)
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit status 1 when a table differs")
    parser.add_argument("--page", type=Path, default=PAGE)
    parser.add_argument("--results", type=Path, default=RESULTS, help="the folder of the result JSON files")
    args = parser.parse_args(argv)
    if args.check:
        problems = check(args.page, args.results)
        for problem in problems:
            print(problem, file=sys.stderr)
        print(f"{args.page}: {len(problems)} table(s) differ" if problems else f"{args.page}: every table agrees")
        return 1 if problems else 0
    page = args.page.read_text(encoding="utf-8")
    new = render(page, generated_tables(args.results))
    if new != page:
        args.page.write_text(new, encoding="utf-8")
    print(f"{args.page}: {'rewritten' if new != page else 'unchanged'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
