"""The package's layout rules (CONTRIBUTING.md, "The layout"), read from the source with ``ast``:
imports point one way along the layers below, no import is placed inside a function, no module
takes a private name from another, and modules stay short."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "nica"
# From the bottom up: a module may import modules of its own layer or of layers below it.
LAYERS = [
    [
        "nica._src",
        "nica._src._checks",
        "nica._src._registry",
        "nica._src.io",
        "nica._src.interrupts",
        "nica._src.metrics",
        "nica._src.disentanglement",
        "nica._src.synthetic",
        "nica._src.real_data",
    ],
    ["nica._src.activations"],
    ["nica._src.priors"],
    ["nica._src.conditional"],
    ["nica._src.network"],
    ["nica._src.objectives"],
    ["nica._src.transforms"],
    ["nica._src.gradients"],
    ["nica._src.sharding"],
    ["nica._src.training"],
    ["nica._src.stopping", "nica._src.fit_state", "nica._src.history"],
    ["nica._src.fitting"],
    ["nica._src.encoding"],
    ["nica._src.persistence"],
    ["nica._src.checkpoint", "nica._src.plotting"],
    ["nica._src.estimator.preprocessing", "nica._src.estimator.inference", "nica._src.estimator.labels"],
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


def _module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
LAYER_OF = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _imports(path):
    """``(line, imported module, names, at module level)`` for every import of ``path``."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
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
        assert top or lazy, f"{module}:{line} imports {imported} inside a function or block"
        for target in _nica_module(imported, names):
            if target in (module, "nica") and module != "nica":
                # `import nica` from a submodule is the package itself: allowed only above it
                assert LAYER_OF[module] > LAYER_OF["nica"], f"{module}:{line} imports the top-level package"
                continue
            assert target in LAYER_OF, f"{module}:{line} imports {target}, which has no layer"
            assert LAYER_OF[target] <= LAYER_OF[module], f"{module}:{line} imports {target} from a higher layer"


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
