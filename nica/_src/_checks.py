"""Argument checks shared by every layer of nica: NumPy only, no JAX and no other nica module.

Each check refuses misuse before any JAX tracing with an error that names the argument, says
what was expected and what arrived.  A scalar argument is described by a list of *constraints*
(any one of which it may satisfy), as scikit-learn's parameter tables describe
hyperparameters; :func:`check_parameter` checks one value, :func:`check_parameters` a whole
table (an estimator's hyperparameters, checked once in ``fit``).  A refused value raises
:class:`InvalidParameterError`, both a ``ValueError`` and a ``TypeError`` as in scikit-learn,
so callers may catch either.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "InvalidParameterError",
    "Interval",
    "Options",
    "OptionsFrom",
    "Boolean",
    "Satisfies",
    "check_parameter",
    "check_parameters",
    "check_int",
    "check_real",
    "check_bool",
    "check_option",
    "check_static",
    "refuse_unusable",
    "unique_labels",
    "labels_known",
]


class InvalidParameterError(ValueError, TypeError):
    """A refused argument value (a ``ValueError`` and a ``TypeError``, as in scikit-learn)."""


def _is_bool(value) -> bool:
    return isinstance(value, (bool, np.bool_))


class Interval(NamedTuple):
    """Integers (``kind=int``) or finite reals (``kind=float``) between ``low`` and ``high``
    (either may be None), each bound included when ``closed`` says so (``"left"``,
    ``"right"``, ``"both"`` or ``"neither"``)."""

    kind: type
    low: float | None = None
    high: float | None = None
    closed: str = "both"

    def accepts(self, value) -> bool:
        if _is_bool(value):
            return False
        if self.kind is int:
            if not isinstance(value, numbers.Integral):
                return False
        elif not isinstance(value, numbers.Real) or not math.isfinite(value):
            return False
        low_ok = self.low is None or (value >= self.low if self.closed in ("left", "both") else value > self.low)
        high_ok = self.high is None or (value <= self.high if self.closed in ("right", "both") else value < self.high)
        return low_ok and high_ok

    def describe(self) -> str:
        what = "an integer" if self.kind is int else "a finite number"
        if self.low is not None and self.high is not None:
            left = "[" if self.closed in ("left", "both") else "("
            right = "]" if self.closed in ("right", "both") else ")"
            return f"{'an integer' if self.kind is int else 'a number'} in {left}{self.low}, {self.high}{right}"
        if self.low is not None:
            return f"{what} {'>=' if self.closed in ('left', 'both') else '>'} {self.low}"
        if self.high is not None:
            return f"{what} {'<=' if self.closed in ('right', 'both') else '<'} {self.high}"
        return what

    def convert(self, value):
        return int(value) if self.kind is int else float(value)


class Options(NamedTuple):
    """One of a few values (strings, ``None``, ``False``), compared by equality and type."""

    values: tuple

    def accepts(self, value) -> bool:
        return any(type(value) is type(v) and value == v for v in self.values)

    def describe(self) -> str:
        return f"one of {self.values}" if len(self.values) > 1 else repr(self.values[0])

    def convert(self, value):
        return value


class Boolean(NamedTuple):
    """A Python or NumPy bool."""

    def accepts(self, value) -> bool:
        return _is_bool(value)

    def describe(self) -> str:
        return "a bool"

    def convert(self, value):
        return bool(value)


class OptionsFrom(NamedTuple):
    """One of the values ``values()`` returns when checked (a registry's names, which may grow)."""

    values: Callable[[], tuple]

    def accepts(self, value) -> bool:
        return Options(tuple(self.values())).accepts(value)

    def describe(self) -> str:
        return Options(tuple(self.values())).describe()

    def convert(self, value):
        return value


class Satisfies(NamedTuple):
    """Anything ``predicate`` accepts, described by ``description``."""

    predicate: Callable[[Any], bool]
    description: str

    def accepts(self, value) -> bool:
        return bool(self.predicate(value))

    def describe(self) -> str:
        return self.description

    def convert(self, value):
        return value


def check_parameter(value, name: str, constraints: Iterable, *, owner: str | None = None):
    """``value`` if it satisfies one of ``constraints`` (converted: ``int``, ``float`` or
    ``bool``), else :class:`InvalidParameterError`: ``"{name} must be {expected}; got {value!r}."``."""
    constraints = tuple(constraints)
    for constraint in constraints:
        if constraint.accepts(value):
            return constraint.convert(value)
    expected = " or ".join(c.describe() for c in constraints)
    where = f"{owner}: " if owner else ""
    raise InvalidParameterError(f"{where}{name} must be {expected}; got {value!r}.")


def check_parameters(table: Mapping[str, Iterable], params: Mapping[str, Any], *, owner: str | None = None) -> dict:
    """Every entry of ``params`` that ``table`` names, checked (in the table's order); returns
    the converted values."""
    return {
        name: check_parameter(params[name], name, constraints, owner=owner)
        for name, constraints in table.items()
        if name in params
    }


def check_int(value, name: str, minimum: int = 1, maximum: int | None = None, *, owner: str | None = None) -> int:
    """An integer (not a bool) in ``[minimum, maximum]``."""
    return check_parameter(value, name, [Interval(int, minimum, maximum)], owner=owner)


def check_count(value, name: str, minimum: int = 1) -> int:
    """A count of rows to build: an integer ``>= minimum`` (so refused below it), at most ``2**31 - 1``
    (refused before any allocation, not by NumPy's or JAX's out-of-memory error)."""
    return check_int(check_int(value, name, minimum), name, minimum, 2**31 - 1)


def check_real(
    value,
    name: str,
    low: float | None = None,
    high: float | None = None,
    *,
    closed: str = "neither",
    owner: str | None = None,
) -> float:
    """A finite real number (not a bool) between ``low`` and ``high`` (bounds excluded unless
    ``closed`` says otherwise)."""
    return check_parameter(value, name, [Interval(float, low, high, closed)], owner=owner)


def check_bool(value, name: str, *, owner: str | None = None) -> bool:
    """A Python or NumPy bool."""
    return check_parameter(value, name, [Boolean()], owner=owner)


def check_option(value, name: str, options: Iterable, *, owner: str | None = None):
    """One of ``options``."""
    return check_parameter(value, name, [Options(tuple(options))], owner=owner)


def check_static(obj, kind: str):
    """Refuse an activation, prior or objective that ``jax.jit`` cannot take as a static argument."""
    try:
        hash(obj)
    except TypeError as error:
        raise TypeError(
            f"{kind} {type(obj).__name__} is not hashable ({error}): nica passes {kind}s to "
            "jax.jit as static arguments, so a custom one must be hashable; declare it with "
            "@dataclasses.dataclass(frozen=True), as the built-in ones are."
        ) from None
    return obj


def refuse_unusable(obj, kind: str, base: type, names: Iterable[str], factories: Iterable[str] = ()) -> TypeError:
    """The error for an object that is neither one of the registered ``names`` nor an instance of
    ``base``: a class, a factory function not called, or anything else."""
    names = sorted(names)
    if isinstance(obj, type) and issubclass(obj, base):
        return TypeError(f"{kind} must be an instance; got the class {obj.__name__}: pass {obj.__name__}(...).")
    if callable(obj) and getattr(obj, "__name__", None) in {*names, *factories}:
        return TypeError(
            f"{kind} must be an nica.{kind}s object; got the function {obj.__name__}: call it, {obj.__name__}(...)."
        )
    return TypeError(f"{kind} must be a string in {names} or an nica.{kind}s object; got {type(obj).__name__}.")


def _label_kinds(y) -> list[str]:
    def kind(v):
        if _is_bool(v):
            return "bool"
        if isinstance(v, (str, np.str_, bytes)):
            return "string"
        if isinstance(v, (numbers.Number, np.number)):
            return "number"
        return type(v).__name__

    return sorted({kind(v) for v in np.asarray(y, dtype=object).ravel()})


def unique_labels(y, name: str = "y"):
    """``np.unique(y, return_counts=True)`` for discrete labels, refusing labels that cannot be
    sorted (a mix of numbers and strings, ``None``) with a message naming ``name``."""
    try:
        return np.unique(y, return_counts=True)
    except TypeError:
        raise ValueError(
            f"{name} must hold labels of one kind, all numbers or all strings, that can be "
            f"sorted; got labels of the kinds {_label_kinds(y)}."
        ) from None


def labels_known(y, classes, name: str = "y"):
    """``np.isin(y, classes)``, refusing labels that cannot be compared with the fitted ones."""
    try:
        return np.isin(y, classes)
    except TypeError:
        raise ValueError(
            f"{name} holds labels of kinds {_label_kinds(y)} that cannot be compared with "
            f"the segment labels seen during fit ({_label_kinds(classes[:1])[0]}s such as "
            f"{classes[:3].tolist()})."
        ) from None
