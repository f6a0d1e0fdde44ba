"""The one list of names of a kind of component (activations, priors, objectives, gradient
forms): a name maps to a factory that builds the component with its default settings.

Everything that offers a choice of names (the estimators' checks, the command line's choices,
the docs' lists, the tests' parametrisation) reads the registry, so adding a component is one
class and one :meth:`Registry.register` line.
"""

from __future__ import annotations

from collections.abc import Callable

from nica._src._checks import check_static, refuse_unusable

__all__ = ["Registry", "register_doc", "names_doc"]


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
