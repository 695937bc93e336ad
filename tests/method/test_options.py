"""facepaint.method.options: SamplingOptions (defaults, checks naming the option, parsing a user's values) and
check_steps."""

import dataclasses
import math

import pytest

from facepaint.method.options import MAX_GUIDANCE, MAX_SIGMA, MAX_STEPS, SCHEDULERS, SamplingOptions, check_steps
from tests.helpers import config


def test_defaults_are_the_products():
    """50 DDIM steps at guidance 7.5, the whole face regenerated, no negative prompt, sigma 4 px of a 512 px
    crop; frozen, so a shared instance cannot be changed by one caller."""
    o = SamplingOptions()
    assert dataclasses.astuple(o) == (50, 7.5, "ddim", 1.0, "", 4.0)
    assert [f.name for f in dataclasses.fields(o)] == [
        "steps",
        "guidance_scale",
        "scheduler",
        "strength",
        "negative_prompt",
        "sigma",
    ]
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.steps = 10
    assert SCHEDULERS == ("ddim", "dpm") and MAX_STEPS == 200 and MAX_GUIDANCE == 100.0


def test_params_yaml_sampling_section_is_a_sampling_options():
    """The evaluation's values (params.yaml `sampling`) are checked as the product's are."""
    demo = config("sampling", SamplingOptions)
    assert isinstance(demo, SamplingOptions) and demo.scheduler in SCHEDULERS
    assert config("sampling", SamplingOptions, steps=7).steps == 7


def test_the_limits_themselves_are_accepted():
    for o in (
        SamplingOptions(steps=1),
        SamplingOptions(steps=MAX_STEPS),
        SamplingOptions(guidance_scale=0.0),
        SamplingOptions(guidance_scale=MAX_GUIDANCE),
        SamplingOptions(scheduler="dpm"),
        SamplingOptions(steps=10, strength=0.1),  # one denoising step
        SamplingOptions(sigma=0.0),
        SamplingOptions(sigma=MAX_SIGMA),
        SamplingOptions(negative_prompt="blurry, low quality"),
    ):
        assert isinstance(o, SamplingOptions)


@pytest.mark.parametrize(
    "field, value, error, message",
    [
        ("steps", 0, ValueError, r"^steps must be a whole number from 1 to 200, got 0"),
        ("steps", -3, ValueError, r"^steps must be a whole number from 1 to 200, got -3"),
        ("steps", MAX_STEPS + 1, ValueError, r"^steps must be a whole number from 1 to 200, got 201"),
        ("steps", 2.5, TypeError, r"steps must be a whole number, got 2\.5"),
        ("steps", True, TypeError, r"steps must be a whole number, got True"),
        ("steps", "10", TypeError, r"steps must be a whole number, got '10'"),
        ("guidance_scale", -0.5, ValueError, r"^guidance_scale must be a number from 0 to 100\.0, got -0\.5"),
        ("guidance_scale", MAX_GUIDANCE + 1, ValueError, r"^guidance_scale must be a number from 0 to 100\.0"),
        ("guidance_scale", math.nan, ValueError, r"guidance_scale must be a finite number"),
        ("guidance_scale", math.inf, ValueError, r"guidance_scale must be a finite number"),
        ("scheduler", "euler", ValueError, r"^scheduler must be one of \('ddim', 'dpm'\), got 'euler'"),
        ("scheduler", "DDIM", ValueError, r"^scheduler must be one of"),
        ("strength", 0.0, ValueError, r"^strength must be in \(0, 1\], got 0\.0"),
        ("strength", 1.5, ValueError, r"^strength must be in \(0, 1\], got 1\.5"),
        ("strength", -1.0, ValueError, r"^strength must be in \(0, 1\]"),
        ("sigma", -1.0, ValueError, r"^sigma must be a number from 0 to 100\.0, got -1\.0"),
        ("sigma", MAX_SIGMA + 1, ValueError, r"^sigma must be a number from 0 to 100\.0"),
        ("negative_prompt", None, TypeError, r"negative_prompt must be a string, got None"),
    ],
)
def test_values_out_of_range_are_refused_naming_the_option(field, value, error, message):
    with pytest.raises(error, match=message):
        SamplingOptions(**{field: value})


def test_check_steps_needs_at_least_one_denoising_step():
    """`strength` of `steps` are run: at least one must be, and steps is a whole number up to MAX_STEPS."""
    for steps, strength in ((1, 1.0), (10, 0.1), (MAX_STEPS, 1.0), (MAX_STEPS, 1 / MAX_STEPS), (4, 0.25)):
        assert check_steps(steps, strength) is None
    for steps, strength, message in (
        (10, 0.05, r"steps x strength must be at least 1 \(one denoising step\), got 10 x 0\.05"),
        (3, 0.3, r"steps x strength must be at least 1"),
        (0, 1.0, r"^steps must be a whole number from 1 to 200, got 0"),
        (MAX_STEPS + 1, 1.0, r"^steps must be a whole number from 1 to 200, got 201"),
        (5000, 0.0001, r"^steps must be a whole number from 1 to 200, got 5000"),  # the range, not the product
        (2.5, 1.0, r"^steps must be a whole number"),
        ("10", 1.0, r"^steps must be a whole number"),
        (10, 0.0, r"^strength must be in \(0, 1\]"),
        (10, 1.01, r"^strength must be in \(0, 1\]"),
        (10, math.nan, r"^strength must be a finite number"),
        (10, True, r"^strength must be a number"),
    ):
        with pytest.raises(ValueError, match=message):
            check_steps(steps, strength)


def test_parse_converts_a_users_text_to_the_fields_types():
    """Text from a command line or an HTTP request, each value read as its field's type and checked."""
    o = SamplingOptions.parse(
        {
            "steps": "30",
            "guidance_scale": "5",
            "scheduler": "dpm",
            "strength": " 0.5 ",
            "negative_prompt": " blurry ",
            "sigma": "8",
        }
    )
    assert o == SamplingOptions(
        steps=30, guidance_scale=5.0, scheduler="dpm", strength=0.5, negative_prompt=" blurry ", sigma=8.0
    )
    assert type(o.steps) is int and type(o.guidance_scale) is float and type(o.sigma) is float
    assert SamplingOptions.parse({}) == SamplingOptions()
    assert SamplingOptions.parse({"steps": "2e2"}).steps == MAX_STEPS


def test_parse_takes_form_numbers_and_json_values():
    """A web form's number box sends 30.0 for 30; JSON sends numbers as numbers."""
    o = SamplingOptions.parse({"steps": 30.0, "guidance_scale": 5, "strength": 1, "sigma": 0})
    assert (o.steps, o.guidance_scale, o.strength, o.sigma) == (30, 5.0, 1.0, 0.0)
    assert type(o.steps) is int and type(o.guidance_scale) is float


def test_parse_keeps_the_base_for_the_options_not_given():
    base = SamplingOptions(steps=12, scheduler="dpm", negative_prompt="blurry")
    assert SamplingOptions.parse({}, base=base) == base
    assert SamplingOptions.parse({"sigma": "0"}, base=base) == dataclasses.replace(base, sigma=0.0)
    assert SamplingOptions.parse({"steps": "20"}).scheduler == "ddim"  # no base: the product's defaults


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"steps": "2.5"}, r"^steps must be a whole number, got '2\.5'"),
        ({"steps": 2.5}, r"^steps must be a whole number, got 2\.5"),
        ({"steps": "many"}, r"^steps must be a whole number, got 'many'"),
        ({"steps": True}, r"^steps must be a whole number, got True"),
        ({"steps": "0"}, r"steps must be a whole number from 1 to 200, got 0"),  # converted, then range-checked
        ({"steps": "1001"}, r"^steps must be a whole number from 1 to 200"),
        ({"steps": "10", "strength": "0.05"}, r"steps x strength must be at least 1"),
        ({"guidance_scale": "loud"}, r"^guidance_scale must be a number, got 'loud'"),
        ({"guidance_scale": "200"}, r"^guidance_scale must be a number from 0 to 100\.0"),
        ({"guidance_scale": "nan"}, r"guidance_scale must be a finite number"),
        ({"strength": "2"}, r"^strength must be in \(0, 1\]"),
        ({"scheduler": "DPM"}, r"^scheduler must be one of"),
        ({"sigma": "-2"}, r"^sigma must be a number from 0 to 100\.0"),
        ({"negative_prompt": 3}, r"^negative_prompt must be a string, got 3"),
        ({"seed": "1"}, r"^unknown option\(s\) \['seed'\]; options: \['steps', 'guidance_scale'"),
        ({"--steps": "10"}, r"^unknown option\(s\) \['--steps'\]"),
    ],
)
def test_parse_refuses_a_value_naming_the_option(raw, message):
    with pytest.raises(ValueError, match=message):
        SamplingOptions.parse(raw)
