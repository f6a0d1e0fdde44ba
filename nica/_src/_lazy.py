"""Public names imported on first use (PEP 562): ``import nica`` and the command line start
without JAX, SciPy or scikit-learn.

A public module keeps a table ``{public name: the module that defines it}`` and defines::

    __getattr__, __dir__ = _lazy.attach(__name__, _LAZY, __all__)

and repeats the same imports in an ``if TYPE_CHECKING:`` block, so that type checkers, IDEs and
``tests/test_layout.py`` (which checks the block against the table) see them.  A name is
imported once, on first access, then kept in the module's namespace like an ordinary import.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable, Mapping

__all__ = ["attach", "load", "listing"]


def load(module_name: str, name: str, table: Mapping[str, str]) -> object:
    """The attribute ``name`` of the module ``module_name``, imported from the module
    ``table[name]`` (the submodule itself when that is ``module_name.name``) and kept in
    ``module_name``'s namespace; ``AttributeError`` for a name not in ``table``."""
    try:
        source = table[name]
    except KeyError:
        raise AttributeError(f"module {module_name!r} has no attribute {name!r}") from None
    imported = importlib.import_module(source)
    value = imported if source == f"{module_name}.{name}" else getattr(imported, name)
    setattr(sys.modules[module_name], name, value)
    return value


def listing(module_name: str, public: Iterable[str]) -> list[str]:
    """``dir()`` of a module with lazy names: what it holds already and its public names."""
    return sorted(set(vars(sys.modules[module_name])) | set(public))


def attach(module_name: str, table: Mapping[str, str], public: Iterable[str]):
    """``(__getattr__, __dir__)`` of the module ``module_name``: its names of ``table`` imported
    on first access (:func:`load`), and its ``dir()`` (:func:`listing` of ``public``)."""
    public = list(public)

    def __getattr__(name: str) -> object:
        return load(module_name, name, table)

    def __dir__() -> list[str]:
        return listing(module_name, public)

    return __getattr__, __dir__
