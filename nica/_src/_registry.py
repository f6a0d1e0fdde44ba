"""The one list of names of a kind of component (activations, priors, objectives, gradient
forms): a name maps to a factory that builds the component with its default settings.

Everything that offers a choice of names (the estimators' checks, the command line's choices,
the docs' lists, the tests' parametrisation) reads the registry, so adding a component is one
class and one :meth:`Registry.register` line.

The registries live in modules that import JAX.  The command line builds its parser before
importing them (``nica --help`` at once): :func:`known_names` gives a registry's names when its
module is loaded, and :data:`BUILTIN_NAMES`, the names nica itself registers, otherwise
(``tests/test_startup.py`` checks that table against the registries).
"""

from __future__ import annotations

from collections.abc import Callable

from nica._src._checks import check_static, refuse_unusable

__all__ = ["Registry", "BUILTIN_NAMES", "known_names", "register_doc", "names_doc"]

# {kind: the names nica registers itself, sorted}
BUILTIN_NAMES = {
    "activation": ("leaky_relu", "smooth_leaky_relu", "tanh_linear"),
    "prior": ("gaussian", "hypsecant", "laplace", "logistic", "logistic_mixture"),
    "gradient": ("autodiff", "equivariant", "euclidean", "relative"),
    "objective": ("label_cross_entropy", "nll"),
}
_MADE: dict[str, Registry] = {}  # {kind: its registry}, once the module that makes it is loaded


class Registry:
    """Named factories of ``base`` objects.

    Parameters
    ----------
    kind : str
        What the components are called in messages (``"activation"``, ``"prior"``, ...).
    base : type
        The base class every component is an instance of.
    factories : tuple of str
        Names of factory functions of this kind that are not registered names themselves
        (``segment_conditional``), so that passing one uncalled gets a helpful message.
    """

    def __init__(self, kind: str, base: type, factories: tuple = ()):
        self.kind = kind
        self.base = base
        self.factories = factories
        self._factories: dict[str, Callable] = {}
        _MADE[kind] = self

    def register(self, name: str, factory: Callable, *, overwrite: bool = False) -> Callable:
        """Make ``name`` build ``factory()``; returns ``factory`` (so it can decorate a class)."""
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"a {self.kind} name must be an identifier string; got {name!r}.")
        if not callable(factory):
            raise TypeError(f"the factory of {self.kind} {name!r} must be callable; got {type(factory).__name__}.")
        if name in self._factories and not overwrite and self._factories[name] is not factory:
            raise ValueError(f"{self.kind} {name!r} is registered already; pass overwrite=True to replace it.")
        self._factories[name] = factory
        return factory

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._factories)

    def get(self, spec):
        """``spec`` itself if it is a (hashable) ``base`` object, the registered default for a name."""
        if isinstance(spec, self.base):
            return check_static(spec, self.kind)
        if isinstance(spec, str):
            try:
                factory = self._factories[spec]
            except KeyError:
                raise ValueError(
                    f"Unknown {self.kind} {spec!r}; expected one of {self.names()} or an nica.{self.kind}s object."
                ) from None
            return factory()
        raise refuse_unusable(spec, self.kind, self.base, self._factories, self.factories)


def known_names(kind: str) -> list[str]:
    """The names of ``kind`` registered in this process (with those registered since nica's
    own) if its registry is made already, else the built-in ones (:data:`BUILTIN_NAMES`),
    without importing its module."""
    registry = _MADE.get(kind)
    return registry.names() if registry is not None else list(BUILTIN_NAMES[kind])


def register_doc(kind: str, accepted_by: str, returns: str, example: str) -> str:
    """The docstring of a module's ``register``: ``kind`` is what is named (``"an activation"``),
    ``accepted_by`` what then accepts the name, ``returns`` what ``factory()`` returns, and
    ``example`` the doctest lines (indented by four spaces)."""
    return f"""Make ``name`` stand for ``factory()`` wherever {kind} is named.

    {accepted_by} then accept it.

    Parameters
    ----------
    name : str
        An identifier not registered yet (unless ``overwrite``).
    factory : callable
        Called without arguments, returns {returns}.
    overwrite : bool, default=False
        Replace a registered name.

    Returns
    -------
    callable
        ``factory`` itself, so that ``register`` can decorate a class.

    Examples
    --------
{example}"""


def names_doc(kind: str, example: str) -> str:
    """The docstring of a module's ``names``: the registered ``kind`` names, with ``example``."""
    return f"""The registered {kind} names, sorted.

    Returns
    -------
    list of str

    Examples
    --------
{example}"""
