"""Values of an estimator file's header as JSON: the encoder and decoder of constructor
parameters and fitted attributes (:mod:`nica._src.persistence`).

A value is a JSON number, string, boolean, null or list, or an object tagged with a ``kind``:
``array`` (the name of an array stored beside the header), ``scalar`` (a NumPy scalar),
``tuple``, ``dict``, ``dtype``, ``path``, ``timedelta``, ``random_state`` (a NumPy
``RandomState``'s state), ``component`` (an activation, prior or objective term by its registered
name and its fields), ``objective_sum``, ``conditional_prior`` and ``optax`` (an optax factory by
name).  Anything else cannot be encoded (:class:`Unsavable`); decoding makes nothing but these
(no class is looked up by a name the file gives, except a registered component's or an optax
factory's), and refuses anything else (:class:`Corrupt`).
"""

from __future__ import annotations

import dataclasses
import datetime
import inspect
import pathlib

import jax
import numpy as np
import optax

from nica._src import activations as _activations
from nica._src import conditional as _conditional
from nica._src import objectives as _objectives
from nica._src import priors as _priors

__all__ = ["Unsavable", "Corrupt", "Unregistered", "Encoder", "Decoder", "typed", "ARRAY_KINDS"]

_COMPONENTS = (
    ("activation", _activations, _activations.Activation),
    ("prior", _priors, _priors.Prior),
    ("objective", _objectives, _objectives.Objective),
)
_CONDITIONAL_PRIORS = {cls.__name__: cls for cls in (_conditional.SegmentConditional, _conditional.MLPConditional)}
_NUMERIC = "biuf"
ARRAY_KINDS = "biufSU"


class Unsavable(Exception):
    """What makes a value unsavable (the caller names the parameter or attribute)."""


class Corrupt(Exception):
    """What is wrong with a header (the caller names the file)."""


class Unregistered(Exception):
    """A component name the header uses that this process has not registered."""


class Encoder:
    """Encodes values; the arrays met go to ``arrays`` (named after where they were met)."""

    RESERVED = ("__header__",)

    def __init__(self) -> None:
        self.arrays: dict = {}

    def array(self, value, name):
        a = np.asarray(value)
        as_object = a.dtype == object
        if as_object:
            if not all(isinstance(x, str) for x in a.flat):
                raise Unsavable("an object array that does not hold only strings")
            a = a.astype(str)
        if a.dtype.kind not in ARRAY_KINDS or a.dtype.fields is not None:
            raise Unsavable(f"an array of dtype {a.dtype}")
        key, n = name, 1
        while key in self.arrays or key in self.RESERVED:
            key, n = f"{name}~{n}", n + 1
        self.arrays[key] = a
        return {"kind": "array", "name": key, **({"object": True} if as_object else {})}

    def value(self, v, name):
        if v is None or type(v) in (bool, int, float, str):
            return v
        if isinstance(v, np.generic):
            if v.dtype.kind not in _NUMERIC:
                raise Unsavable(f"a NumPy scalar of dtype {v.dtype}")
            return {"kind": "scalar", "dtype": v.dtype.name, "value": v.item()}
        if isinstance(v, (np.ndarray, jax.Array)):
            return self.array(v, name)
        if type(v) is list:
            return [self.value(x, f"{name}.{i}") for i, x in enumerate(v)]
        if type(v) is tuple:
            return {"kind": "tuple", "items": [self.value(x, f"{name}.{i}") for i, x in enumerate(v)]}
        if type(v) is dict:
            items = [[self.value(k, f"{name}.key"), self.value(x, f"{name}.{k}")] for k, x in v.items()]
            return {"kind": "dict", "items": items}
        if isinstance(v, np.dtype) and v.kind in _NUMERIC:
            return {"kind": "dtype", "name": v.name}
        if isinstance(v, pathlib.PurePath):
            return {"kind": "path", "path": str(v)}
        if type(v) is datetime.timedelta:
            return {"kind": "timedelta", "days": v.days, "seconds": v.seconds, "microseconds": v.microseconds}
        if type(v) is np.random.RandomState:
            return {"kind": "random_state", "state": self.value(v.get_state(), f"{name}.state")}
        if inspect.isfunction(v) and getattr(optax, v.__name__, None) is v:
            return {"kind": "optax", "name": v.__name__}
        if isinstance(v, _objectives.WeightedSum):
            terms = [[self.value(w, name), self.component(t, name)] for w, t in v.weighted_terms]
            return {"kind": "objective_sum", "terms": terms}
        if type(v) in _CONDITIONAL_PRIORS.values():
            return {"kind": "conditional_prior", "class": type(v).__name__, "fields": self.fields(v, name)}
        if any(isinstance(v, base) for _, _, base in _COMPONENTS):
            return self.component(v, name)
        raise Unsavable(f"a {type(v).__name__}")

    def fields(self, v, name):
        return {f.name: self.value(getattr(v, f.name), f"{name}.{f.name}") for f in _init_fields(v)}

    def component(self, v, name):
        """An activation, prior or objective term: the registered name that rebuilds it, and its fields."""
        registry, module, _ = next(entry for entry in _COMPONENTS if isinstance(v, entry[2]))
        raw = {f.name: getattr(v, f.name) for f in _init_fields(v)}
        for registered in module.names():
            try:
                default = module.get(registered)
                rebuilt = dataclasses.replace(default, **raw) if raw else default
            except Exception:  # a factory or field check of the user's that refuses: not this name
                continue
            if type(rebuilt) is type(v) and rebuilt == v:
                return {"kind": "component", "registry": registry, "name": registered, "fields": self.fields(v, name)}
        raise Unsavable(
            f"a {type(v).__name__} that no name registered in nica.{registry}s rebuilds (register its class "
            f"with nica.{registry}s.register and pass the name or an object of it)"
        )


def _init_fields(v):
    return [f for f in dataclasses.fields(v) if f.init] if dataclasses.is_dataclass(v) else []


class Decoder:
    """Decodes values, the arrays named from ``arrays``."""

    def __init__(self, arrays):
        self.arrays = arrays

    def array(self, name, what):
        if not isinstance(name, str) or name not in self.arrays:
            raise Corrupt(f"{what} names no array of the file ({name!r})")
        return self.arrays[name]

    def value(self, v):
        if v is None or type(v) in (bool, int, float, str):
            return v
        if type(v) is list:
            return [self.value(x) for x in v]
        if type(v) is not dict:
            raise Corrupt(f"a value of type {type(v).__name__}")
        kind = v.get("kind")
        try:
            decode = getattr(self, f"_{kind}") if kind in _KINDS else None
            if decode is None:
                raise Corrupt(f"a value of the unknown kind {kind!r}")
            return decode(v)
        except (Corrupt, Unregistered):
            raise
        except Exception as error:  # a value of the right kind that does not make what it says
            raise Corrupt(f"a {kind} value that cannot be made ({type(error).__name__}: {error})") from None

    def _array(self, v):
        a = self.array(v["name"], "an array value")
        return a.astype(object) if v.get("object") is True else a

    def _scalar(self, v):
        dtype = np.dtype(typed(v["dtype"], str))
        if dtype.kind not in _NUMERIC or type(v["value"]) not in (bool, int, float):
            raise Corrupt(f"a scalar of dtype {dtype}")
        return dtype.type(v["value"])

    def _tuple(self, v):
        return tuple(self.value(x) for x in typed(v["items"], list))

    def _dict(self, v):
        return {self.value(k): self.value(x) for k, x in (typed(item, list, 2) for item in typed(v["items"], list))}

    def _dtype(self, v):
        dtype = np.dtype(typed(v["name"], str))
        if dtype.kind not in _NUMERIC:
            raise Corrupt(f"a dtype {dtype}")
        return dtype

    def _path(self, v):
        return pathlib.Path(typed(v["path"], str))

    def _timedelta(self, v):
        return datetime.timedelta(
            days=typed(v["days"], int), seconds=typed(v["seconds"], int), microseconds=typed(v["microseconds"], int)
        )

    def _random_state(self, v):
        rng = np.random.RandomState()
        rng.set_state(self.value(v["state"]))
        return rng

    def _optax(self, v):
        name = typed(v["name"], str)
        factory = getattr(optax, name, None) if name.isidentifier() and not name.startswith("_") else None
        if not inspect.isfunction(factory):
            raise Corrupt(f"optax has no factory {name!r}")
        return factory

    def _objective_sum(self, v):
        terms = tuple(
            (self.value(w), self._component(t)) for w, t in (typed(item, list, 2) for item in typed(v["terms"], list))
        )
        return _objectives.WeightedSum(terms)

    def _conditional_prior(self, v):
        cls = _CONDITIONAL_PRIORS.get(v["class"])
        if cls is None:
            raise Corrupt(f"the unknown conditional prior {v['class']!r}")
        return cls(**self._fields(v))

    def _component(self, v):
        if type(v) is not dict or v.get("kind") != "component":
            raise Corrupt("an objective term that is not a component")
        entry = next((e for e in _COMPONENTS if e[0] == v.get("registry")), None)
        if entry is None:
            raise Corrupt(f"a component of the unknown registry {v.get('registry')!r}")
        registry, module, base = entry
        name = typed(v["name"], str)
        if name not in module.names():
            raise Unregistered(
                f"names the {registry} {name!r}, which is not registered in this process: register it "
                f"(nica.{registry}s.register) before loading"
            )
        fields = self._fields(v)
        made = module.get(name)
        made = dataclasses.replace(made, **fields) if fields else made
        if not isinstance(made, base):
            raise Corrupt(f"{registry} {name!r} makes a {type(made).__name__}")
        return made

    def _fields(self, v):
        fields = v["fields"]
        if type(fields) is not dict or not all(isinstance(k, str) and k.isidentifier() for k in fields):
            raise Corrupt("fields that are not a JSON object of names")
        return {k: self.value(x) for k, x in fields.items()}


_KINDS = frozenset(
    "array scalar tuple dict dtype path timedelta random_state optax objective_sum conditional_prior component".split()
)


def typed(v, kind, length=None):
    """``v`` if it is a ``kind`` (of ``length``), else what is wrong with the header."""
    if type(v) is not kind or (length is not None and len(v) != length):
        raise Corrupt(f"{v!r} where a {kind.__name__}{'' if length is None else f' of {length}'} belongs")
    return v
