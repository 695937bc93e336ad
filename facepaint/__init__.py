"""facepaint: text-driven face editing with SD1.5 inpainting, face masks and pixel-level blending.

The method. It imports nothing of DVC, Prefect or MLflow (tests/test_layers.py runs it without them);
`stages/`, `flows/` and `tracking/` orchestrate it. Where each step of SPEC.md lives:

- celebamask.py  dataset layout, attribute and part names, validating reader
- split.py       the seeded train/test split
- masks.py       face masks M (annotations or BiSeNet), soft and latent masks, beta
- captions.py    caption candidates and evaluation prompts from attributes
- models.py      SD1.5 model loading (pretrained inpainting and text-to-image, tiny or full-size random)
- latents.py     the VAE latent cache for training
- adapter.py     the face-aware text adapter A(E) = W2 SiLU(W1 E), E_hat = E + adapter_scale * beta * A(E)
- loss.py        the mask-weighted noise-prediction loss
- train.py       k/v + adapter fine-tuning, checkpoints and resume
- artifact.py    the trained artifact (k/v + adapter, its Conditions) and applying it
- generate.py    the Inpainter: pipeline, speed options, batched generation
- faces.py       face detection (RetinaFace, OpenCV's cascade), selection, alignment, paste-back of several faces
- edit.py        read, find and align faces, mask, generate, paste back, blend, provenance (FaceEditor)
- speed.py       speed knobs shared by training and editing
- methods.py     the evaluation's methods (ours and the SD1.5 baselines), their settings and timing
- brushnet.py    the BrushNet baseline (our model class for TencentARC's checkpoint) and its loading
- diptych.py     the Diptych Prompting baseline (FLUX.1-dev + inpainting ControlNet) and its loading
- metrics.py     PSNR, LPIPS, FID, PickScore
- evaluate.py    pairs, per-image metrics, table and figures
- watermark.py   an invisible mark confined to the edited face
- signing.py     the signed C2PA manifest on every edited PNG (a local key made on first use), `facepaint verify`
- safety.py      the base model's safety checker on every edit
- cli.py         the `facepaint` command (`facepaint edit ...`, `detect ...`, `verify ...`, `app`)
- app.py         the web app (Gradio): photo, faces and mask overlay, mask brush, edit, before/after, download; its API
- images.py, io.py, report.py   safe image reading, atomic writes, per-stage reports
"""

import dataclasses
import math
import numbers
import types
import typing

__version__ = "0.1.0"


class FacepaintError(Exception):
    """Base of facepaint's own errors. Each message names the file or value at fault and what to do, so
    the command lines print it as one `error:` line instead of a traceback."""


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
    fields the config checks itself."""
    kinds = _field_kinds(type(config))
    for f in dataclasses.fields(config):
        allowed = kinds.get(f.name)
        if f.name in skip or not allowed:
            continue
        value = getattr(config, f.name)
        if not any(_is_kind(value, k) for k in allowed):
            hint = ""
            if isinstance(value, str):
                try:
                    float(value)
                    hint = " (YAML reads 5e-5 as text: write numbers with a decimal point, 5.0e-5)"
                except ValueError:
                    pass
            wanted = " or ".join(_KIND_NAMES[k] for k in allowed)
            raise TypeError(f"{section}.{f.name} must be {wanted}, got {value!r}{hint}")
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and not _finite(value):
            raise ValueError(f"{section}.{f.name} must be a finite number, got {value}")


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
