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


# ---------------------------------------------------------------------------------------------
# benchmarks/real_signals.py on the small files it ships (benchmarks/data/; no optional package)

REAL_DATA = ROOT / "benchmarks" / "data"


@pytest.fixture(scope="module")
def real_signals():
    return importlib.import_module("benchmarks.real_signals")


@pytest.mark.parametrize("name", ["power", "daphnet"])  # BasicMotions is not shipped: no licence found
def test_real_signals_shipped_sources_are_independent_recordings(real_signals, name):
    raw, labels = real_signals.raw_sources(name, REAL_DATA)
    spec = real_signals.DATASETS[name]
    assert raw.dtype == np.float32 and raw.shape == (spec["test_rows"], 5) and len(labels) == 5
    assert (REAL_DATA / f"{name}.npz").stat().st_size < 300_000
    S = real_signals.standardized_sources(name, raw)
    np.testing.assert_allclose(S.mean(axis=0), 0.0, atol=1e-10)
    np.testing.assert_allclose(S.std(axis=0), 1.0, rtol=1e-10)
    # Readings of different months, moments or cases: weakly correlated.  The bound leaves room
    # for chance correlations of strongly autocorrelated signals over a few thousand rows
    # (Daphnet at 64 Hz: 0.25 over these 3,840 rows, 0.16 over the whole recording).
    corr = np.corrcoef(S.T)[~np.eye(5, dtype=bool)]
    assert np.abs(corr).max() < 0.3


def test_real_signals_windows_and_held_out_rows(real_signals):
    raw, _ = real_signals.raw_sources("daphnet", REAL_DATA)
    S = real_signals.standardized_sources("daphnet", raw, n_rows=1000)  # whole windows of 128 only
    assert S.shape == (896, 5)
    u = np.arange(896) // 128
    mask = real_signals.held_out_rows(u, seed=1)
    np.testing.assert_array_equal(np.bincount(u[mask]), np.full(7, 26))  # round(0.2 * 128) per window
    np.testing.assert_array_equal(real_signals.held_out_rows(u, seed=1), mask)
    assert not np.array_equal(real_signals.held_out_rows(u, seed=2), mask)
    data = real_signals.make_data("daphnet", S, 2, seed=1)
    np.testing.assert_array_equal(data["S_test"], S[mask])
    np.testing.assert_array_equal(data["S_train"], S[~mask])
    np.testing.assert_array_equal(data["u_test"], u[mask])
    np.testing.assert_array_equal(data["u_train"], u[~mask])


@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_real_signals_mixing_is_the_synthetic_recipe_and_invertible(real_signals, n_layers):
    from nica.datasets import apply_mixing, make_segmented_mixture

    raw, _ = real_signals.raw_sources("power", REAL_DATA)
    S = real_signals.standardized_sources("power", raw)
    data = real_signals.make_data("power", S, n_layers, seed=3)
    recipe = make_segmented_mixture(n_segments=1, n_per_segment=1, n_components=5, n_layers=n_layers, random_state=3)
    assert len(data["mixing"]) == n_layers
    for A, B in zip(data["mixing"], recipe.mixing):
        np.testing.assert_array_equal(A, B)
        np.testing.assert_allclose(np.linalg.norm(A, axis=0), 1.0)  # unit-norm columns
        assert np.linalg.cond(A) <= recipe.condition_threshold
    np.testing.assert_allclose(data["X_train"], apply_mixing(data["S_train"], data["mixing"]), rtol=1e-12)
    np.testing.assert_allclose(real_signals.unmix(data["X_test"], data["mixing"]), data["S_test"], atol=1e-9)
    residual = data["X_train"] - data["S_train"] @ np.linalg.lstsq(data["S_train"], data["X_train"], rcond=None)[0]
    assert (np.abs(residual).max() < 1e-9) == (n_layers == 1)  # nonlinear beyond one layer


def test_real_signals_targets(real_signals):
    def entry(mcc):
        return {"mcc_pearson_mean": mcc}

    result = {
        "summary": [
            {"dataset": "power", "n_layers": 1, "conditional": entry(0.90), "linear_ica": entry(0.903)},
            {"dataset": "daphnet", "n_layers": 1, "conditional": entry(0.90), "linear_ica": entry(0.91)},
            {"dataset": "power", "n_layers": 2, "conditional": entry(0.90)},
            {"dataset": "power", "n_layers": 3, "conditional": entry(0.80), "fastica": entry(0.66)},
        ]
    }
    checks = [(c["name"].split(": ")[0] + " " + c["name"].split("(")[-1], c["status"]) for c in
              _harness.evaluate(real_signals.TARGETS, result)]  # fmt: skip
    assert checks == [
        ("L=1 power)", "PASS"),
        ("L=1 daphnet)", "MISS"),
        ("L=2 power)", "PASS"),
        ("L=3 power)", "MISS"),
    ]


def test_real_signals_quick_run_on_the_shipped_files(real_signals, tmp_path):
    argv = ["--quick", "--data-dir", str(REAL_DATA), "--datasets", "daphnet", "--rows", "1280",
            "--max-iter", "2", "--out", str(tmp_path / "real.json"), "--out-dir", str(tmp_path),
            "--figure-dir", str(tmp_path)]  # fmt: skip
    real_signals.main(argv)
    result = json.loads((tmp_path / "real.json").read_text())
    assert {"benchmark", "created", "command", "machine", "settings", "datasets", "cells", "summary", "checks"} <= set(
        result
    )
    assert result["settings"]["seeds"] == [1] and result["settings"]["reserved_seed"] == 0
    described = result["datasets"]["daphnet"]
    assert (described["rows"], described["window"], described["windows"]) == (1280, 128, 10)
    contenders = [c for c in real_signals.CONTENDERS if c != "picard" or real_signals.picard_available()]
    assert [cell["contender"] for cell in result["cells"]] == contenders
    for cell in result["cells"]:
        assert {"dataset", "n_layers", "seed", "rows", "settings", "fit_seconds", "compile_seconds", "n_iter",
                "warnings", "corr_pearson", *real_signals.METRICS} <= set(cell)  # fmt: skip
        assert all(-1.0 <= cell[m] <= 1.0 for m in real_signals.METRICS[:3])
    raw = next(cell for cell in result["cells"] if cell["contender"] == "raw")
    assert raw["weak_mcc"] > 0.99  # one mixing layer: the observations are a linear map of the sources
    assert [check["name"].split(":")[0] for check in result["checks"]] == ["L=1"]
    assert (tmp_path / "real_signals_quick.png").read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "real_signals_partial.jsonl").exists()  # --quick is not resumed
    tables = real_signals.tables(lambda name: result)
    assert tables["real_signals/results"].count("\n") == len(contenders) + 1
