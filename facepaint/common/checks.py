"""Checking settings and user input: the one place numbers and typed configs are validated.

- `check_number`: a finite number (a whole one where it must be) within a range, or a ValueError naming it.
- `check_fields`: each field of a config dataclass against its annotation (params.yaml sections).
- `parse_fields`: text or JSON values from a user (a command line, a web form, an HTTP request) turned into a
  dataclass's field types, then constructed (so the dataclass's own checks run): the one parser of user input
  that the CLI, the web app and the MLflow pyfunc model share.
"""

import dataclasses
import math
import numbers
import types
import typing

# ------------------------------------------------------------------------------- checking settings

MAX_SEED = 2**63 - 1  # seeds seed torch.Generator and numpy: a non-negative 64-bit integer


def check_number(key: str, value, lo=None, hi=None, *, whole: bool = False) -> None:
    """ValueError naming `key` unless `value` is a finite number (a whole one when `whole`) from `lo` to `hi`
    (None: unbounded). True and False are not numbers here, nor is text."""
    kind = "a whole number" if whole else "a number"
    if lo is not None and hi is not None:
        span = f" from {lo} to {hi}"
    else:
        span = f" >= {lo}" if lo is not None else f" <= {hi}" if hi is not None else ""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral if whole else numbers.Real):
        raise ValueError(f"{key} must be {kind}{span}, got {value!r}")
    if not _finite(value):
        raise ValueError(f"{key} must be a finite number{span}, got {value}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ValueError(f"{key} must be {kind}{span}, got {value}")


def check_fields(config, section: str, skip: tuple[str, ...] = ()) -> None:
    """Check each field of the dataclass `config` against its annotation (int, float, str, bool, list or
    tuple, dict, `X | None`): TypeError naming `section.field` for a value of another type (True is not a
    number, 8.0 not a whole number, the text "5e-5" not a number), ValueError for a NaN or infinite float.
    Run first in a config's __post_init__, so that its own checks compare numbers with numbers. `skip`:
    fields the config checks itself. `section` "": the field alone is named (options a user gives by name)."""
    kinds = _field_kinds(type(config))
    for f in dataclasses.fields(config):
        allowed = kinds.get(f.name)
        if f.name in skip or not allowed:
            continue
        value = getattr(config, f.name)
        name = f"{section}.{f.name}" if section else f.name
        if not any(_is_kind(value, k) for k in allowed):
            hint = ""
            if isinstance(value, str):
                try:
                    float(value)
                    hint = " (YAML reads 5e-5 as text: write numbers with a decimal point, 5.0e-5)"
                except ValueError:
                    pass
            wanted = " or ".join(_KIND_NAMES[k] for k in allowed)
            raise TypeError(f"{name} must be {wanted}, got {value!r}{hint}")
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and not _finite(value):
            raise ValueError(f"{name} must be a finite number, got {value}")


def _finite(value) -> bool:
    """math.isfinite, and False for an int too large for a float (10**400 is no usable setting either)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


_KIND_NAMES = {
    "int": "a whole number",
    "float": "a number",
    "str": "a string",
    "bool": "true or false",
    "seq": "a list",
    "map": "a mapping",
    "none": "null",
}


def _is_kind(value, kind: str) -> bool:
    if kind in ("int", "float"):
        base = numbers.Integral if kind == "int" else numbers.Real
        return isinstance(value, base) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool) or type(value).__name__ == "bool_"
    if kind == "str":
        return isinstance(value, str)
    if kind == "seq":
        return isinstance(value, (list, tuple))
    if kind == "map":
        return isinstance(value, dict)
    return value is None


def _field_kinds(cls) -> dict[str, tuple[str, ...]]:
    """{field: the kinds its annotation allows}; a field with another annotation is not listed (not checked)."""
    cached = _FIELD_KINDS.get(cls)
    if cached is not None:
        return cached
    simple = {int: "int", float: "float", str: "str", bool: "bool", list: "seq", tuple: "seq", dict: "map"}
    simple[type(None)] = "none"
    kinds = {}
    for name, hint in typing.get_type_hints(cls).items():
        parts = (
            typing.get_args(hint)
            if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
            else (hint,)
        )
        mapped = tuple(simple.get(typing.get_origin(p) or p) for p in parts)
        if all(mapped):
            kinds[name] = mapped
    _FIELD_KINDS[cls] = kinds
    return kinds


_FIELD_KINDS: dict[type, dict[str, tuple[str, ...]]] = {}


# ------------------------------------------------------------------------------------------ mappings


def settings(cls, raw, where: str):
    """`raw` (a params.yaml mapping) as the dataclass `cls`, unknown and missing keys named (`where`: the
    section, e.g. "evaluate.brushnet"). An instance of `cls` is returned as it is."""
    if isinstance(raw, cls):
        return raw
    fields = [f.name for f in dataclasses.fields(cls)]
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be a mapping of {fields}, got {raw!r}")
    unknown, missing = sorted(map(str, set(raw) - set(fields))), sorted(set(fields) - set(raw))
    if unknown or missing:
        raise ValueError(f"{where}: unknown key(s) {unknown}, missing key(s) {missing}; keys: {fields}")
    return cls(**raw)


# ---------------------------------------------------------------------------------------- user input

_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def parse_fields(cls, raw, base=None):
    """An instance of the dataclass `cls` from user values: `raw` maps field names to what a user typed or
    sent (text from a command line or an HTTP request, floats from a web form's number box, JSON values), each
    converted to its field's annotated type; fields not in `raw` keep `base`'s value (an instance of `cls`) or
    the field's default. The instance's own checks (ranges) then run. ValueError naming the field for a value
    that cannot be converted ("2.5" steps, "yes please" for a switch, NaN where a whole number is wanted) or
    for a key that is not a field.

    Why not `cls(**raw)`: `bool("false")` is True, `int(2.5)` is 2, and a web form sends 30.0 for 30."""
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(map(str, set(raw) - set(names)))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown}; options: {names}")
    kinds = _field_kinds(cls)
    values = {} if base is None else {n: getattr(base, n) for n in names}
    for name, value in raw.items():
        allowed = kinds.get(name)
        values[name] = value if allowed is None else _convert(name, value, allowed)
    return cls(**values)


def _convert(name: str, value, kinds: tuple[str, ...]):
    """`value` as the first of `kinds` (see `_field_kinds`) it can be read as, or a ValueError naming `name`."""
    if value is None and "none" in kinds:
        return None
    if isinstance(value, str) and "str" not in kinds:
        value = value.strip()
    for kind in kinds:
        converted = _as_kind(value, kind)
        if converted is not _NO:
            return converted
    wanted = " or ".join(_KIND_NAMES[k] for k in kinds)
    if "int" in kinds and _as_kind(value, "float") is not _NO:
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    raise ValueError(f"{name} must be {wanted}, got {value!r}")


_NO = object()


def _as_kind(value, kind: str):
    """`value` read as `kind`, or _NO."""
    if kind == "bool":
        if isinstance(value, bool) or type(value).__name__ == "bool_":
            return bool(value)
        text = str(value).strip().lower() if isinstance(value, (str, int)) else None
        return True if text in _TRUE else False if text in _FALSE else _NO
    if kind in ("int", "float"):
        if isinstance(value, bool) or type(value).__name__ == "bool_":
            return _NO
        if isinstance(value, str):
            try:
                value = int(value)
            except ValueError:
                try:
                    value = float(value)
                except ValueError:
                    return _NO
        if not isinstance(value, numbers.Real):
            return _NO
        if kind == "float":
            return float(value) if _finite(value) or not isinstance(value, numbers.Integral) else _NO
        if isinstance(value, numbers.Integral):
            return int(value)
        return int(value) if math.isfinite(value) and float(value).is_integer() else _NO
    if kind == "str":
        return value if isinstance(value, str) else _NO
    if kind == "none":
        return None if value is None else _NO
    return value if _is_kind(value, kind) else _NO
