"""The argument checks (``nica/_src/_checks.py``) and the registries' class
(``nica/_src/_registry.py``): what each check accepts, converts and refuses, with the message
that names the argument, and a registry's ``register``/``get``/``names`` on a fresh registry."""

import dataclasses
import math

import numpy as np
import pytest

from nica import activations, gradients, objectives, priors
from nica._src._checks import (
    Boolean,
    Interval,
    InvalidParameterError,
    Options,
    OptionsFrom,
    Satisfies,
    check_bool,
    check_int,
    check_option,
    check_parameter,
    check_parameters,
    check_real,
    check_static,
    labels_known,
    unique_labels,
)
from nica._src._registry import Registry

# ---------------------------------------------------------------------------------------------
# constraints and checks


@pytest.mark.parametrize(
    "constraint, accepted, refused, description",
    [
        (Interval(int, 1), [1, 7, np.int64(3)], [0, -1, 2.0, True, "1", None], "an integer >= 1"),
        (Interval(int, 0, 3), [0, 3], [-1, 4, np.bool_(True)], "an integer in [0, 3]"),
        (
            Interval(float, 0, None, "neither"),
            [1e-300, 2, 0.5],
            [0.0, -1.0, math.inf, math.nan, "1"],
            "a finite number > 0",
        ),
        (Interval(float, 0, None, "left"), [0.0, 3], [-1e-9, math.inf], "a finite number >= 0"),
        (Interval(float, 0, 1, "neither"), [0.5], [0.0, 1.0], "a number in (0, 1)"),
        (Interval(float, 0, 1, "right"), [1.0], [0.0], "a number in (0, 1]"),
        (Interval(float, None, 2, "neither"), [-5.0], [2.0], "a finite number < 2"),
        (Interval(float), [-1e300], [math.nan], "a finite number"),
        (Options(("a", None, False)), ["a", None, False], ["b", 0, "A"], "one of ('a', None, False)"),
        (Options(("auto",)), ["auto"], ["Auto"], "'auto'"),
        (Boolean(), [True, np.bool_(False)], [1, 0, "True", None], "a bool"),
        (Satisfies(callable, "a callable"), [len], [3], "a callable"),
    ],
)
def test_each_constraint_accepts_refuses_and_describes(constraint, accepted, refused, description):
    assert constraint.describe() == description
    for value in accepted:
        assert constraint.accepts(value), value
    for value in refused:
        assert not constraint.accepts(value), value


def test_options_compare_by_type_as_well_as_value():
    """``False`` is not ``0`` and ``1.0`` is not ``1``: an option is matched by type and value."""
    assert not Options((0,)).accepts(False) and not Options((1,)).accepts(1.0)
    assert OptionsFrom(lambda: ("x", "y")).accepts("y") and not OptionsFrom(lambda: ("x",)).accepts("y")


def test_options_from_reads_its_values_when_checked():
    values = ["a"]
    constraint = OptionsFrom(lambda: tuple(values))
    assert not constraint.accepts("b")
    values.append("b")
    assert constraint.accepts("b") and constraint.describe() == "one of ('a', 'b')"


def test_check_parameter_converts_and_names_the_argument():
    assert check_parameter(np.int64(3), "n", [Interval(int, 1)]) == 3
    assert type(check_parameter(np.int64(3), "n", [Interval(int, 1)])) is int
    assert type(check_parameter(np.float32(0.5), "x", [Interval(float, 0, 1)])) is float
    assert check_parameter(np.bool_(True), "flag", [Boolean()]) is True
    # the first constraint that accepts converts: "auto" stays a string
    assert check_parameter("auto", "rate", [Interval(float, 0), Options(("auto",))]) == "auto"
    with pytest.raises(InvalidParameterError, match=r"^rate must be a finite number > 0 or 'auto'; got 'fast'\.$"):
        check_parameter("fast", "rate", [Interval(float, 0, None, "neither"), Options(("auto",))])
    with pytest.raises(InvalidParameterError, match=r"^Owner: n must be an integer >= 1; got 0\.$"):
        check_parameter(0, "n", [Interval(int, 1)], owner="Owner")


def test_a_refused_value_is_both_a_value_error_and_a_type_error():
    """As in scikit-learn: callers may catch either."""
    for error in (ValueError, TypeError):
        with pytest.raises(error, match="n must be an integer >= 1; got 'x'"):
            check_int("x", "n")


def test_check_parameters_checks_a_table_in_its_order_and_skips_absent_names():
    table = {"a": [Interval(int, 1)], "b": [Boolean()], "c": [Options(("x",))]}
    assert check_parameters(table, {"a": np.int64(2), "b": np.bool_(True), "d": object()}) == {"a": 2, "b": True}
    with pytest.raises(InvalidParameterError, match="^a must be an integer >= 1; got 0"):
        check_parameters(table, {"c": "y", "a": 0})  # "a" comes first in the table


@pytest.mark.parametrize(
    "call, error_message",
    [
        (lambda: check_int(2.0, "k"), "k must be an integer >= 1; got 2.0"),
        (lambda: check_int(5, "k", 1, 4), r"k must be an integer in \[1, 4\]; got 5"),
        (lambda: check_real(0.0, "eta", 0), "eta must be a finite number > 0; got 0.0"),
        (lambda: check_real(1.0, "p", 0, 1), r"p must be a number in \(0, 1\); got 1.0"),
        (lambda: check_real(True, "p", 0, 1), r"p must be a number in \(0, 1\); got True"),
        (lambda: check_bool(1, "flag"), "flag must be a bool; got 1"),
        (lambda: check_option("c", "mode", ("a", "b")), r"mode must be one of \('a', 'b'\); got 'c'"),
    ],
)
def test_the_shorthand_checks_refuse_with_the_argument_named(call, error_message):
    with pytest.raises(InvalidParameterError, match=error_message):
        call()


def test_the_shorthand_checks_accept_and_convert():
    assert check_int(np.int32(4), "k", 1, 4) == 4
    assert check_real(1, "p", 0, 1, closed="right") == 1.0
    assert check_bool(np.bool_(False), "flag") is False
    assert check_option("b", "mode", ("a", "b")) == "b"


def test_check_static_refuses_an_unhashable_component():
    class Unhashable:
        __hash__ = None

    with pytest.raises(
        TypeError, match=r"activation Unhashable is not hashable .*dataclasses.dataclass\(frozen=True\)"
    ):
        check_static(Unhashable(), "activation")
    frozen = activations.tanh_linear(0.2)
    assert check_static(frozen, "activation") is frozen


def test_unique_labels_refuses_labels_that_cannot_be_sorted():
    classes, counts = unique_labels(np.array(["b", "a", "b"]))
    assert classes.tolist() == ["a", "b"] and counts.tolist() == [1, 2]
    with pytest.raises(
        ValueError, match=r"^u must hold labels of one kind, .*got labels of the kinds \['number', 'string'\]"
    ):
        unique_labels(np.array([1, "a"], dtype=object), "u")
    with pytest.raises(ValueError, match=r"\['NoneType', 'bool'\]"):
        unique_labels(np.array([True, None], dtype=object))
    assert labels_known(np.array([0, 2]), np.array([0, 1])).tolist() == [True, False]
    assert labels_known(np.array([0, "a", None], dtype=object), np.array([0, 1])).tolist() == [True, False, False]


# ---------------------------------------------------------------------------------------------
# the registries' class, on a registry of its own


class Shape:
    """A base class for the components of the test registry."""


@dataclasses.dataclass(frozen=True)
class Square(Shape):
    side: float = 1.0


def square():
    return Square()


@pytest.fixture
def registry():
    shapes = Registry("shape", Shape, factories=("make_polygon",))
    shapes.register("square", square)
    return shapes


def test_register_get_and_names(registry):
    assert registry.register("unit", Square) is Square  # usable as a decorator
    assert registry.names() == ["square", "unit"]  # sorted
    assert registry.get("square") == Square() and registry.get("unit") == Square()
    instance = Square(2.0)
    assert registry.get(instance) is instance  # an object is returned unchanged
    registry.register("square", square)  # the same factory again: allowed
    other = registry.register("square", Square, overwrite=True)
    assert other is Square and registry.get("square") == Square()


@pytest.mark.parametrize(
    "name, factory, error, message",
    [
        ("not an identifier", square, ValueError, "a shape name must be an identifier string; got 'not an identifier'"),
        (3, square, ValueError, "a shape name must be an identifier string; got 3"),
        ("round", 3, TypeError, "the factory of shape 'round' must be callable; got int"),
        ("square", lambda: Square(3.0), ValueError, "shape 'square' is registered already; pass overwrite=True"),
    ],
)
def test_register_refuses_bad_names_factories_and_silent_replacement(registry, name, factory, error, message):
    with pytest.raises(error, match=message):
        registry.register(name, factory)
    assert registry.names() == ["square"]


def make_polygon():
    return Square()


@pytest.mark.parametrize(
    "spec, error, message",
    [
        ("circle", ValueError, r"^Unknown shape 'circle'; expected one of \['square'\] or an nica.shapes object\.$"),
        (Square, TypeError, r"^shape must be an instance; got the class Square: pass Square\(\.\.\.\)\.$"),
        (
            square,
            TypeError,
            r"^shape must be an nica.shapes object; got the function square: call it, square\(\.\.\.\)\.$",
        ),
        (make_polygon, TypeError, "got the function make_polygon: call it"),  # a factory of the kind not registered
        (None, TypeError, r"^shape must be a string in \['square'\] or an nica.shapes object; got NoneType\.$"),
        (3.0, TypeError, "got float"),
    ],
)
def test_get_refuses_what_is_neither_a_name_nor_a_component(registry, spec, error, message):
    with pytest.raises(error, match=message):
        registry.get(spec)


def test_get_refuses_an_unhashable_component(registry):
    @dataclasses.dataclass  # not frozen: unhashable
    class Mutable(Shape):
        side: float = 1.0

    with pytest.raises(TypeError, match="shape Mutable is not hashable"):
        registry.get(Mutable())


@pytest.mark.parametrize("module", [activations, priors, objectives, gradients], ids=lambda m: m.__name__)
def test_each_public_registry_lists_sorted_identifiers_that_build_its_components(module):
    """Every registered name of the four kinds builds a hashable component of the kind."""
    names = module.names()
    assert names == sorted(names) and all(name.isidentifier() for name in names)
    base = {
        activations: activations.Activation,
        priors: priors.Prior,
        objectives: objectives.Objective,
        gradients: gradients.GradientForm,
    }[module]
    for name in names:
        component = module.get(name)
        assert isinstance(component, base) and hash(component) == hash(module.get(name))
