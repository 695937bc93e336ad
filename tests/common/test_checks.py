"""User values read into typed options (facepaint.common.checks.parse_fields): the one parser behind the CLI,
the web app and the pyfunc model (facepaint.editing.editor.parse_edit_options)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from facepaint.common.checks import check_number, parse_fields


@dataclass(frozen=True)
class Options:
    steps: int = 50
    scale: float = 7.5
    blend: bool = True
    name: str = "ddim"
    label: str | None = None
    faces: str | list = "all"

    def __post_init__(self):  # the class's own checks, run after the conversion
        check_number("steps", self.steps, 1, 1000, whole=True)
        check_number("scale", self.scale, 0, 100)


def test_text_is_converted_to_each_fields_type():
    o = parse_fields(Options, {"steps": "30", "scale": "5", "blend": "false", "name": "dpm", "faces": "0,2"})
    assert o == Options(steps=30, scale=5.0, blend=False, name="dpm", faces="0,2")
    assert type(o.steps) is int and type(o.scale) is float and o.blend is False
    assert parse_fields(Options, {"steps": " 7 ", "scale": "2.5e1"}) == Options(steps=7, scale=25.0)
    assert parse_fields(Options, {"name": " dpm "}).name == " dpm "  # text fields are kept as given


def test_form_and_json_numbers():
    """A web form's number box sends 30.0 for 30; JSON sends ints for floats."""
    o = parse_fields(Options, {"steps": 30.0, "scale": 5})
    assert o.steps == 30 and type(o.steps) is int and o.scale == 5.0 and type(o.scale) is float
    assert parse_fields(Options, {"steps": "30.0"}).steps == 30


@pytest.mark.parametrize(
    "text, expected",
    [("false", False), ("False", False), (" no ", False), ("0", False), ("off", False), (0, False), (False, False)]
    + [("true", True), ("TRUE", True), ("yes", True), ("1", True), ("on", True), (1, True), (True, True)],
)
def test_switches(text, expected):
    assert parse_fields(Options, {"blend": text}).blend is expected


@pytest.mark.parametrize("value", ["maybe", "", 2, -1, 0.5, 1.0, None, [True]])
def test_a_switch_is_not_anything_truthy(value):
    with pytest.raises(ValueError, match="blend must be true or false"):
        parse_fields(Options, {"blend": value})


@pytest.mark.parametrize("value", [2.5, "2.5", 30.000001, "1e-3"])
def test_a_fraction_is_no_whole_number(value):
    """int(2.5) would be 2: the parser refuses it instead, naming the field."""
    with pytest.raises(ValueError, match=f"steps must be a whole number, got {value!r}"):
        parse_fields(Options, {"steps": value})


@pytest.mark.parametrize("value", [math.nan, "nan", math.inf, "-inf", "inf"])
def test_nan_and_infinity(value):
    with pytest.raises(ValueError, match="steps must be a whole number"):
        parse_fields(Options, {"steps": value})  # a whole number: not converted at all
    with pytest.raises(ValueError, match="scale must be a finite number"):
        parse_fields(Options, {"scale": value})  # a float: converted, then refused by the class's own check


@pytest.mark.parametrize(
    "raw, reason",
    [
        ({"steps": "many"}, "steps must be a whole number, got 'many'"),
        ({"steps": True}, "steps must be a whole number, got True"),  # a bool is no number
        ({"steps": [3]}, r"steps must be a whole number, got \[3\]"),
        ({"scale": "five"}, "scale must be a number, got 'five'"),
        ({"scale": 10**400}, "scale must be a number"),  # too large for a float
        ({"name": 3}, "name must be a string, got 3"),
        ({"faces": 3}, "faces must be a string or a list, got 3"),
        ({"steps": "0"}, "steps must be a whole number from 1 to 1000, got 0"),  # converted, then the range
        ({"scale": "-1"}, "scale must be a number from 0 to 100, got -1.0"),
    ],
)
def test_values_that_cannot_be_used_name_the_field(raw, reason):
    with pytest.raises(ValueError, match=reason):
        parse_fields(Options, raw)


def test_unknown_keys_are_refused_with_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['padding', 'stpes'\]; options: \['steps', "):
        parse_fields(Options, {"stpes": 30, "padding": 1, "steps": 30})


def test_none_and_lists():
    assert parse_fields(Options, {"label": None}).label is None
    assert parse_fields(Options, {"label": "x"}).label == "x"
    assert parse_fields(Options, {"faces": [0, 2]}).faces == [0, 2]
    with pytest.raises(ValueError, match="name must be a string, got None"):
        parse_fields(Options, {"name": None})


def test_fields_not_given_keep_the_base_or_the_default():
    base = Options(steps=10, scale=3.0, blend=False)
    assert parse_fields(Options, {}) == Options()
    assert parse_fields(Options, {"scale": "4"}, base) == Options(steps=10, scale=4.0, blend=False)
    assert parse_fields(Options, {}, base) == base
