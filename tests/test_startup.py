"""Start-up: ``import nica`` and the command line's ``--help`` and argument errors load neither
JAX, scikit-learn nor SciPy (the public names are imported on first use, ``nica/_src/_lazy.py``);
every public name still resolves; pickles still load; and the command line keeps JAX's compiled
programs in a persistent cache that a second process reuses (``nica/_src/compilation_cache.py``).
No timings: ``benchmarks/startup.py`` measures them."""

import inspect
import json
import os
import pathlib
import pickle
import pydoc
import re
import subprocess
import sys

import numpy as np
import pytest

import nica
import nica.cli
from nica._src import compilation_cache
from nica._src._registry import BUILTIN_NAMES, known_names
from nica.cli import main

ROOT = pathlib.Path(__file__).resolve().parent.parent
LAUNCH = "from nica_launcher import main; main()"  # what the console script runs
HEAVY = ("jax", "jaxlib", "sklearn", "scipy", "matplotlib")
PUBLIC_MODULES = [nica, *(getattr(nica, name) for name in nica.__all__ if inspect.ismodule(getattr(nica, name)))]
SHOW_HEAVY = f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"


def _python(script, *argv, cwd=None, timeout=300):
    """``python -c script argv...`` in a process of its own."""
    environment = dict(os.environ, PYTHONPATH=str(ROOT))
    environment.pop("JAX_COMPILATION_CACHE_DIR", None)
    return subprocess.run(
        [sys.executable, "-c", script, *argv],
        env=environment,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _nica(argv, env=None, cwd=None):
    """The ``nica`` command in a process of its own, as the console script starts it."""
    environment = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    environment.pop("JAX_COMPILATION_CACHE_DIR", None)
    for name, value in (env or {}).items():
        if value is None:
            environment.pop(name)
    return subprocess.run(
        [sys.executable, "-c", LAUNCH, *map(str, argv)],
        env=environment,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


# ---------------------------------------------------------------------------------------------
# nothing heavy at start-up


def test_import_nica_loads_neither_jax_nor_sklearn_nor_scipy():
    proc = _python(f"import sys\nimport nica\nprint(nica.__version__)\n{SHOW_HEAVY}")
    assert (proc.returncode, proc.stdout) == (0, f"{nica.__version__}\n[]\n"), proc.stderr


def test_help_and_argument_errors_load_nothing_heavy(tmp_path):
    """Every command's ``--help``, ``--version`` and a bad command line (an unknown option or
    choice, a missing argument, a missing or misnamed file) are answered before JAX is imported."""
    np.save(tmp_path / "X.npy", np.zeros((3, 2)))
    commands = ["demo", "fit", "transform", "inverse-transform", "score", "sample"]
    cases = [["--help"], ["--version"], ["fitt"], *([command, "--help"] for command in commands)]
    cases += [
        ["fit", "X.npy"],  # no --model
        ["fit", "X.npy", "--model", "m.nica", "--prior", "nope"],
        ["fit", "X.npy", "--model", "m.nica", "--objective-term", "nope=1"],
        ["fit", "X.npy", "--model", "m.nica", "--bogus"],
        ["fit", "missing.npy", "--model", "m.nica"],
        ["fit", "X.npy", "--model", "m.npy"],
        ["fit", "X.npy", "--model", "m.nica", "--resume", "missing.nica"],
        ["transform", "missing.nica", "X.npy", "-o", "S.npy"],
        ["sample", "missing.nica", "-o", "S.npy"],
        ["demo", "--seed", "-1"],
    ]
    script = (
        "import contextlib, io, json, sys\nfrom nica.cli._main import main\nfound = []\n"
        f"for argv in {cases!r}:\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:\n"
        "        status = main(argv)\n"
        f"    found.append((argv, status, err.getvalue(), sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))\n"
        "print(json.dumps(found))"
    )
    proc = _python(script, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert [argv for argv, *_ in results] == cases
    for argv, status, err, heavy in results:
        assert heavy == [], f"nica {' '.join(argv)} imported {heavy}"
        assert status == (0 if "--help" in argv or "--version" in argv else 2), (argv, err)
        assert status == 0 or (err.startswith("nica: error: ") and err.count("\n") == 1), (argv, err)


def test_the_console_script_answers_help_without_jax():
    """The real entry (``nica_launcher``) and the interpreter's own record of what it imported."""
    environment = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", LAUNCH, "fit", "--help"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and "--compilation-cache" in proc.stdout, proc.stderr
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in proc.stderr.splitlines() if "|" in line}
    assert "nica" in imported and not imported & set(HEAVY)


# ---------------------------------------------------------------------------------------------
# the public names


@pytest.mark.parametrize("module", PUBLIC_MODULES + [nica.cli], ids=lambda module: module.__name__)
def test_every_public_name_resolves_and_is_listed(module):
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{module.__name__}.{name}"
    assert set(module.__all__) <= set(dir(module))


@pytest.mark.parametrize("module", [nica, nica.cli], ids=lambda module: module.__name__)
def test_an_unknown_name_is_an_attribute_error(module):
    with pytest.raises(AttributeError, match=rf"^module '{module.__name__}' has no attribute 'not_a_name'$"):
        module.not_a_name
    assert not hasattr(module, "not_a_name")


def test_the_lazy_names_are_the_objects_of_their_modules():
    from nica import NonlinearICA
    from nica._src.estimator import NonlinearICA as defined
    from nica.metrics import mean_corr_coef

    assert NonlinearICA is defined and nica.NonlinearICA is defined
    assert nica.metrics.mean_corr_coef is mean_corr_coef
    assert "NonlinearICA" in vars(nica)  # kept once imported


def test_help_lists_the_public_names():
    text = pydoc.render_doc(nica, renderer=pydoc.plaintext)
    assert "NonlinearICA" in text and "enable_compilation_cache" in text


def test_the_version_is_the_projects():
    declared = re.search(r'^version = "([^"]+)"$', (ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    assert declared is not None and nica.__version__ == declared.group(1)


def test_pickles_load_in_a_fresh_process(cli_env, tmp_path):
    """Pickles name the classes by their modules in ``nica._src``: they load in a process that
    has not imported nica, and the unpickled model computes as the original."""
    model = nica.load(cli_env / "m.nica")
    X = np.load(cli_env / "X.npy")[:20]
    (tmp_path / "models.pkl").write_bytes(pickle.dumps([model, nica.ConditionalNonlinearICA(n_layers=3)]))
    np.save(tmp_path / "X.npy", X)
    script = (
        "import pickle, sys\nimport numpy as np\n"
        "fitted, unfitted = pickle.loads(open('models.pkl', 'rb').read())\n"
        "np.save('S.npy', fitted.transform(np.load('X.npy')))\n"
        "print(type(fitted).__module__, type(unfitted).__name__, unfitted.n_layers)"
    )
    proc = _python(script, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["nica._src.estimator.nonlinear", "ConditionalNonlinearICA", "3"]
    np.testing.assert_allclose(np.load(tmp_path / "S.npy"), model.transform(X), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# the registries' names without their modules


def test_the_builtin_names_are_those_nica_registers():
    """``BUILTIN_NAMES`` (what the command line offers before JAX is loaded) against the
    registries, in a process where nothing else was registered."""
    script = (
        "import json\nimport nica\n"
        "print(json.dumps({kind: getattr(nica, kind + 's').names() for kind in "
        "('activation', 'prior', 'gradient', 'objective')}))"
    )
    proc = _python(script)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {kind: list(names) for kind, names in BUILTIN_NAMES.items()}


def test_known_names_are_the_registered_ones_once_loaded():
    for kind in BUILTIN_NAMES:
        assert known_names(kind) == getattr(nica, kind + "s").names()


# ---------------------------------------------------------------------------------------------
# the persistent compilation cache


def _entries(folder):
    return sorted(path.name for path in pathlib.Path(folder).iterdir()) if os.path.isdir(folder) else []


def test_a_second_process_reuses_the_compiled_programs(cli_env, tmp_path):
    cache = tmp_path / "cache"
    argv = ["transform", cli_env / "m.nica", cli_env / "X.npy", "--compilation-cache", cache]
    first = _nica(argv + ["-o", tmp_path / "S1.npy"])
    assert first.returncode == 0, first.stderr
    written = _entries(cache)
    assert written  # the programs the command compiled
    second = _nica(argv + ["-o", tmp_path / "S2.npy"])
    assert second.returncode == 0, second.stderr
    assert _entries(cache) == written  # all read back: nothing compiled anew
    np.testing.assert_array_equal(np.load(tmp_path / "S1.npy"), np.load(tmp_path / "S2.npy"))


def test_where_the_command_line_keeps_its_cache(cli_env, tmp_path):
    """By default under ``$XDG_CACHE_HOME``; ``$NICA_COMPILATION_CACHE`` names another folder;
    ``--no-compilation-cache`` (or ``NICA_COMPILATION_CACHE=off``) keeps nothing."""
    argv = ["transform", cli_env / "m.nica", cli_env / "X.npy", "-o", tmp_path / "S.npy"]
    home = {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
    proc = _nica(argv + ["--no-compilation-cache"], env={**home, "NICA_COMPILATION_CACHE": None})
    assert proc.returncode == 0 and not (tmp_path / "xdg").exists(), proc.stderr
    proc = _nica(argv, env={**home, "NICA_COMPILATION_CACHE": None})
    assert proc.returncode == 0 and _entries(tmp_path / "xdg" / "nica" / "jax"), proc.stderr
    proc = _nica(argv, env={**home, "NICA_COMPILATION_CACHE": str(tmp_path / "named")})
    assert proc.returncode == 0 and _entries(tmp_path / "named"), proc.stderr


def test_an_unusable_cache_folder_is_a_warning(cli_env, capsys):
    blocked = cli_env / "plain.txt" / "cache"  # under a regular file: cannot be made
    argv = ["transform", cli_env / "m.nica", cli_env / "X.npy", "-o", cli_env / "out.npy"]
    try:
        status = main([str(a) for a in argv] + ["--compilation-cache", str(blocked)])
        err = capsys.readouterr().err
    finally:
        (cli_env / "out.npy").unlink(missing_ok=True)
    assert status == 0 and err.startswith("nica: warning: the compilation cache is off") and err.count("\n") == 1


def test_the_default_folder_follows_xdg_cache_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compilation_cache.default_cache_dir() == tmp_path / "nica" / "jax"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert compilation_cache.default_cache_dir() == tmp_path / "home" / ".cache" / "nica" / "jax"


def test_enable_compilation_cache_in_a_library_process(tmp_path):
    script = (
        "import sys\nimport jax, jax.numpy as jnp\nimport nica\n"
        "folder = nica.enable_compilation_cache(sys.argv[1])\n"
        "jax.jit(lambda x: jnp.tanh(x) @ x.T)(jnp.ones((3, 3))).block_until_ready()\n"
        "print(folder)"
    )
    proc = _python(script, str(tmp_path / "cache"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(tmp_path / "cache") and _entries(tmp_path / "cache")
