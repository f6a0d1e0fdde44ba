"""The benchmark harness (``benchmarks/_harness.py``) and the page it writes: the generated tables
of ``docs/benchmarks.md`` agree with the committed results, the machine description has one set
of keys, the JSON writer and the PASS/MISS evaluation of a targets table do what they say, and
every benchmark module plugs into the harness.  Nothing here runs a benchmark or times anything.
"""

import importlib
import inspect
import json
import subprocess
import sys

import numpy as np
import pytest

from benchmarks import _harness, report
from benchmarks._harness import Target

ROOT = _harness.REPO_ROOT


# ---------------------------------------------------------------------------------------------
# the page


def test_docs_tables_agree_with_the_committed_results():
    problems = report.check()
    assert not problems, "\n\n".join(problems) + "\n\n(rewrite them: python -m benchmarks.report)"


PAGE = """# A page

Prose.

<!-- generated: demo/table -->
| a | b |
|---|---|
| 1 | 2 |
<!-- end generated -->

More prose.
"""


def test_render_replaces_only_the_marked_table():
    table = "| a | b |\n|---|---|\n| 1 | 3 |\n"
    page = report.render(PAGE, {"demo/table": table})
    assert page == PAGE.replace("| 1 | 2 |", "| 1 | 3 |")
    assert report.render(page, {"demo/table": table}) == page


def test_differences_name_the_table_that_differs():
    assert report.differences(PAGE, {"demo/table": "| a | b |\n|---|---|\n| 1 | 2 |\n"}) == []
    ((name, diff),) = report.differences(PAGE, {"demo/table": "| a | b |\n|---|---|\n| 1 | 3 |\n"})
    assert name == "demo/table"
    assert "-| 1 | 2 |" in diff and "+| 1 | 3 |" in diff


def test_render_refuses_unmatched_markers_and_tables():
    with pytest.raises(ValueError, match="markers without a table: \\['demo/table'\\]"):
        report.render(PAGE, {})
    with pytest.raises(ValueError, match="tables without a marker: \\['other'\\]"):
        report.render(PAGE, {"demo/table": "| a |\n", "other": "| b |\n"})


def test_check_reports_a_differing_table(tmp_path):
    page = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    start = page.index("<!-- generated: devices/throughput -->")
    changed = page[:start] + page[start:].replace("| 1 | data | ", "| 1 | data | 1", 1)
    (tmp_path / "benchmarks.md").write_text(changed, encoding="utf-8")
    problems = report.check(tmp_path / "benchmarks.md")
    assert len(problems) == 1 and "'devices/throughput'" in problems[0]


# ---------------------------------------------------------------------------------------------
# the harness


def test_machine_info_has_the_same_keys_everywhere():
    machine = _harness.machine_info()
    assert set(machine) == {
        "cpu_model",
        "cpu_count",
        "cpus_available",
        "memory_bytes",
        "platform",
        "python",
        "numpy",
        "jax",
        "jaxlib",
        "optax",
        "nica",
        "backend",
        "device_kind",
        "device_count",
        "environment",
        "git",
        "load_average_at_start",
    }
    assert set(machine["environment"]) == set(_harness.THREAD_VARIABLES)
    assert machine["cpu_count"] >= 1 and machine["device_count"] >= 1
    assert machine["numpy"] == np.__version__
    json.dumps(machine)  # JSON-able as it is


def test_write_result_heads_the_record_and_keeps_numbers_on_one_line(tmp_path):
    machine = {"cpu_model": "test"}
    record = {
        "times_s": [0.5, 1.0, np.float32(2.0)],
        "n": np.int64(3),
        "nested": {"rows": [{"x": 1}, {"x": 2}]},
        "empty": [],
        "names": ["a", "b"],
    }
    path = _harness.write_result(
        tmp_path / "sub" / "demo.json", record, benchmark="demo", argv=["--quick"], machine=machine
    )
    text = path.read_text()
    written = json.loads(text)
    assert list(written)[:4] == ["benchmark", "created", "command", "machine"]
    assert written["benchmark"] == "demo"
    assert written["command"] == "python benchmarks/demo.py --quick"
    assert written["machine"]["cpu_model"] == "test" and "load_average_at_end" in written["machine"]
    assert "load_average_at_end" not in machine  # the caller's dict is left alone
    assert written["times_s"] == [0.5, 1.0, 2.0] and written["n"] == 3
    assert written["nested"] == {"rows": [{"x": 1}, {"x": 2}]} and written["empty"] == []
    assert '"times_s": [0.5, 1.0, 2.0]' in text  # a list of numbers stays on one line
    assert '"names": [\n' in text  # other lists are indented
    assert list(tmp_path.glob("sub/*")) == [path]  # no temporary file left


def test_write_result_keeps_the_record_s_own_command(tmp_path):
    path = _harness.write_result(
        tmp_path / "demo.json", {"command": "python benchmarks/demo.py --full"}, benchmark="demo", argv=[], machine={}
    )
    assert json.loads(path.read_text())["command"] == "python benchmarks/demo.py --full"


def test_write_result_refuses_what_json_cannot_hold(tmp_path):
    with pytest.raises(TypeError, match="expected JSON-able values .* got object"):
        _harness.write_result(tmp_path / "demo.json", {"x": object()}, benchmark="demo", argv=[], machine={})


def test_jsonl_rows_round_trip(tmp_path):
    path = tmp_path / "cells.jsonl"
    assert _harness.read_jsonl(path) == []
    _harness.append_jsonl(path, {"key": "a", "value": 1})
    _harness.append_jsonl(path, {"key": "b", "value": 2})
    assert _harness.read_jsonl(path) == [{"key": "a", "value": 1}, {"key": "b", "value": 2}]


RESULT = {"time": {"relative": 2.0, "floor": 1.0}, "mcc": {"a": 0.9, "b": 0.8, "c": None}}
TARGETS = (
    Target("ratio at most 2", lambda r: r["time"]["relative"] / r["time"]["floor"], "<=", 2.0),
    Target("ratio below 2", lambda r: r["time"]["relative"] / r["time"]["floor"], "<", 2.0),
    Target("ratio at least 3", lambda r: r["time"]["relative"] / r["time"]["floor"], ">=", 3.0),
    Target("ratio above 1", lambda r: r["time"]["relative"] / r["time"]["floor"], ">", 1.0),
    Target("mcc", lambda r: r["mcc"], ">=", 0.85),
    Target("not measured", lambda r: None, "<=", 1.0),
)


def test_evaluate_checks_each_comparison():
    checks = _harness.evaluate(TARGETS, RESULT)
    assert [(c["name"], c["status"]) for c in checks] == [
        ("ratio at most 2", "PASS"),
        ("ratio below 2", "MISS"),
        ("ratio at least 3", "MISS"),
        ("ratio above 1", "PASS"),
        ("mcc (a)", "PASS"),
        ("mcc (b)", "MISS"),
        ("mcc (c)", "N/A"),
        ("not measured", "N/A"),
    ]
    assert checks[0] == {
        "name": "ratio at most 2",
        "measured": 2.0,
        "comparison": "<=",
        "threshold": 2.0,
        "status": "PASS",
    }


def test_evaluate_refuses_an_unknown_comparison():
    with pytest.raises(ValueError, match="expected a comparison among .* got '=='"):
        _harness.evaluate([Target("x", lambda r: 1.0, "==", 1.0)], {})


def test_report_targets_prints_a_verdict_per_check():
    lines = []
    checks = _harness.report_targets(TARGETS[:2], RESULT, write=lines.append)
    assert [c["status"] for c in checks] == ["PASS", "MISS"]
    assert lines[1:] == ["  [PASS] ratio at most 2: 2 (target <= 2)", "  [MISS] ratio below 2: 2 (target < 2)"]


def test_markdown_table():
    table = _harness.markdown_table(["a", "b"], [[1, ""], ["x", "−2"]])
    assert table == "| a | b |\n|---|---|\n| 1 | |\n| x | −2 |"
    assert _harness.signed("-0.50 ± 0.01") == "−0.50 ± 0.01"


def test_the_code_digest_ignores_docstrings_and_comments_only(tmp_path):
    module = tmp_path / "mod.py"

    def digest(source):
        module.write_text(source)
        return _harness._code_digest(tmp_path)

    base = digest('"""Module."""\n\ndef f(x):\n    """Doc."""\n    return x + 1\n')
    assert digest('"""Other words."""\n\n# a comment\ndef f(x):\n    """More doc."""\n    return x + 1\n') == base
    assert digest('"""Module."""\n\ndef f(x):\n    """Doc."""\n    return x + 2\n') != base


def test_the_defaults_fingerprint_is_short_and_stable():
    fingerprint = _harness.defaults_fingerprint()
    assert len(fingerprint) == 12 and int(fingerprint, 16) >= 0
    _harness.defaults_fingerprint.cache_clear()
    assert _harness.defaults_fingerprint() == fingerprint


# ---------------------------------------------------------------------------------------------
# the benchmark modules


@pytest.mark.parametrize("name", report.MODULES)
def test_every_benchmark_plugs_into_the_harness(name, capsys):
    module = importlib.import_module(f"benchmarks.{name}")
    assert isinstance(module.TARGETS, tuple) and all(isinstance(t, Target) for t in module.TARGETS)
    assert list(inspect.signature(module.main).parameters) == ["argv"]
    assert callable(module.tables)
    with pytest.raises(SystemExit) as exit_:
        module.main(["--help"])
    assert exit_.value.code == 0
    assert "--quick" in capsys.readouterr().out


@pytest.mark.parametrize("command", [["benchmarks/memory.py", "--help"], ["-m", "benchmarks.memory", "--help"]])
def test_a_benchmark_runs_as_a_script_and_as_a_module(command):
    done = subprocess.run([sys.executable, *command], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "--quick" in done.stdout and "--out FILE" in done.stdout
