"""The package's layout rules (CONTRIBUTING.md, "The layout"), read from the source with ``ast``:
imports point one way along the layers below, no import is placed inside a function, no module
takes a private name from another, and modules stay short.

The public modules import their names on first use (``nica/_src/_lazy.py``: a module-level
``__getattr__`` and a table ``_LAZY``); their ``if TYPE_CHECKING:`` block holds the same imports
as ordinary statements, so these rules check them, and :func:`test_lazy_tables_match_their_imports`
checks that the table and the block agree."""

import ast
import importlib
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "nica"
# From the bottom up: a module may import modules of its own layer or of layers below it.
LAYERS = [
    [
        "nica._src",
        "nica._src._version",
        "nica._src._lazy",
        "nica._src._checks",
        "nica._src._registry",
        "nica._src.io",
        "nica._src.interrupts",
        "nica._src.metrics",
        "nica._src.disentanglement",
        "nica._src.synthetic",
        "nica._src.real_data",
        "nica._src.compilation_cache",
        "nica._src.shuffle",
    ],
    ["nica._src.activations"],
    ["nica._src.priors"],
    ["nica._src.conditional"],
    ["nica._src.network"],
    ["nica._src.objectives"],
    ["nica._src.transforms"],
    ["nica._src.gradients"],
    ["nica._src.sharding"],
    ["nica._src.distributed"],
    ["nica._src.training"],
    ["nica._src.stopping", "nica._src.fit_state", "nica._src.history"],
    ["nica._src.fitting"],
    ["nica._src.encoding"],
    ["nica._src.persistence"],
    ["nica._src.checkpoint", "nica._src.plotting"],
    [
        "nica._src.estimator.preprocessing",
        "nica._src.estimator.inference",
        "nica._src.estimator.labels",
        "nica._src.estimator.selection",
        "nica._src.estimator.placement",
    ],
    ["nica._src.estimator.base"],
    ["nica._src.estimator.nonlinear", "nica._src.estimator.conditional"],
    ["nica._src.estimator"],
    ["nica._src.saving"],
    [
        "nica.activations",
        "nica.priors",
        "nica.objectives",
        "nica.gradients",
        "nica.transforms",
        "nica.datasets",
        "nica.metrics",
        "nica.plotting",
    ],
    ["nica"],
    ["nica.cli._files"],
    ["nica.cli._models"],
    ["nica.cli._commands"],
    ["nica.cli._main"],
    ["nica.cli", "nica.__main__"],
]
MAX_LINES = 650  # "a few hundred lines"; about 600 at most
# Third-party modules imported inside the functions that use them, so that importing nica (and
# starting the command line) does not load them: matplotlib, and the scikit-learn regressors
# that only the disentanglement metrics need (about 0.3 s of start-up together).
LAZY = ("matplotlib", "sklearn.ensemble", "sklearn.neighbors")
# nica modules one module imports inside a function, on purpose: the command line's parser
# answers --help and bad command lines before its commands (JAX, scikit-learn, SciPy) are
# imported; they are imported once a command runs.
DEFERRED = {"nica.cli._main": ("nica.cli._commands",)}


def _module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
LAYER_OF = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _is_type_checking_block(node):
    return isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _imports(path):
    """``(line, imported module, names, at module level)`` for every import of ``path`` (those of
    a module-level ``if TYPE_CHECKING:`` block are at module level: they name the lazy ones)."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    top |= {id(inner) for node in tree.body if _is_type_checking_block(node) for inner in node.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, [], id(node) in top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.lineno, node.module, [alias.name for alias in node.names], id(node) in top))
    return found


def _nica_module(imported, names):
    """The nica modules an import statement loads: ``from nica._src import network`` loads
    ``nica._src.network``, ``from nica._src.network import Layer`` loads ``nica._src.network``."""
    if not imported.startswith("nica"):
        return []
    submodules = [f"{imported}.{name}" for name in names if f"{imported}.{name}" in MODULES]
    return submodules or [imported]


def test_every_module_has_a_layer():
    assert sorted(set(MODULES) - set(LAYER_OF)) == []
    assert sorted(set(LAYER_OF) - set(MODULES)) == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down_and_sit_at_module_level(module):
    for line, imported, names, top in _imports(MODULES[module]):
        lazy = any(imported == name or imported.startswith(name + ".") for name in LAZY)
        deferred = set(_nica_module(imported, names)) <= set(DEFERRED.get(module, ())) and imported.startswith("nica")
        assert top or lazy or deferred, f"{module}:{line} imports {imported} inside a function or block"
        for target in _nica_module(imported, names):
            if target in (module, "nica") and module != "nica":
                # `import nica` from a submodule is the package itself: allowed only above it
                assert LAYER_OF[module] > LAYER_OF["nica"], f"{module}:{line} imports the top-level package"
                continue
            assert target in LAYER_OF, f"{module}:{line} imports {target}, which has no layer"
            assert LAYER_OF[target] <= LAYER_OF[module], f"{module}:{line} imports {target} from a higher layer"


def test_deferred_imports_are_used():
    for module, targets in DEFERRED.items():
        inner = {
            t for _, imported, names, top in _imports(MODULES[module]) if not top for t in _nica_module(imported, names)
        }
        assert inner == set(targets), f"{module} defers {sorted(inner)}, not {sorted(targets)}"


LAZY_MODULES = sorted(name for name, path in MODULES.items() if "\n_LAZY = " in path.read_text())


def test_the_public_modules_with_lazy_names():
    assert LAZY_MODULES == ["nica", "nica.cli"]


@pytest.mark.parametrize("module", LAZY_MODULES)
def test_lazy_tables_match_their_imports(module):
    """``_LAZY`` names each lazy name's module as the ``if TYPE_CHECKING:`` block imports it (a
    submodule ``from nica import metrics``: ``nica.metrics``), and nothing else is imported there."""
    tree = ast.parse(MODULES[module].read_text())
    blocks = [node for node in tree.body if _is_type_checking_block(node)]
    assert len(blocks) == 1, f"{module} has {len(blocks)} module-level TYPE_CHECKING blocks"
    declared = {}
    for node in blocks[0].body:
        assert isinstance(node, ast.ImportFrom) and node.module, f"{module}:{node.lineno}: not a 'from ... import'"
        for alias in node.names:
            assert alias.asname is None, f"{module}:{node.lineno}: {alias.name} renamed"
            submodule = f"{node.module}.{alias.name}"
            declared[alias.name] = submodule if submodule in MODULES else node.module
    assert importlib.import_module(module)._LAZY == declared


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_private_name_crosses_a_module_boundary(module):
    for line, imported, names, _ in _imports(MODULES[module]):
        if imported.startswith("nica") and imported != module:
            private = [name for name in names if name.startswith("_") and f"{imported}.{name}" not in MODULES]
            assert not private, f"{module}:{line} imports private {private} from {imported}"


def test_benchmarks_and_examples_use_public_names_only():
    for path in sorted((ROOT / "benchmarks").glob("*.py")) + sorted((ROOT / "examples").glob("*.py")):
        for line, imported, names, _ in _imports(path):
            assert "._src" not in imported and not imported.startswith("nica._"), f"{path.name}:{line}: {imported}"
            if imported.startswith("nica"):
                assert not [n for n in names if n.startswith("_")], f"{path.name}:{line}: {names}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_short(module):
    n_lines = len(MODULES[module].read_text().splitlines())
    assert n_lines <= MAX_LINES, f"{module} has {n_lines} lines"
