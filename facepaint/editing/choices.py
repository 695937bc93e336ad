"""What an edit changes and delivers (`EditChoices`), the values the face options take (detectors, mask
backends, padding, min_face) and the one parser of a user's edit options (`parse_edit_options`), light to import:
`facepaint --help` builds its parser from them, and `facepaint edit` checks its options, without torch.

The modules that use them (detection, helper, editor) import them from here, and re-export them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from facepaint.common.checks import MAX_SEED, check_number, parse_fields
from facepaint.method.options import SamplingOptions

DETECTORS = ("auto", "retinaface", "mediapipe", "opencv")  # facepaint.editing.detection.make_detector's kinds
MASK_BACKENDS = ("auto", "bisenet", "mesh")  # auto: bisenet when its weights are given or cached, else mesh
PADDING = 0.25  # crop margin per side for a face given by a mask alone, x its longer side (our choice)
MAX_PADDING = 10.0  # a crop margin of 10 face sizes per side is already the whole photo for any portrait
MIN_FACE = 64.0  # px: a detected face narrower than this is skipped (our choice: the model sees it upscaled 4x+)
MAX_MIN_FACE = 100_000.0  # px: wider than the face of any photo load_rgb accepts


def parse_selection(spec) -> str | list[int]:
    """`--faces`: "all", "largest", or face indices ("0,2", [0, 2])."""
    if isinstance(spec, str) and spec.strip().lower() in ("all", "largest"):
        return spec.strip().lower()
    try:
        items = spec.split(",") if isinstance(spec, str) else list(spec)  # TypeError: None, a number
        idx = [int(str(i).strip()) for i in items]
    except (TypeError, ValueError):
        raise ValueError(f"faces must be 'all', 'largest' or indices like '0,2', got {spec!r}") from None
    if not idx or min(idx) < 0 or len(set(idx)) != len(idx):
        raise ValueError(f"faces must be distinct indices >= 0, got {spec!r}")
    return idx


@dataclass(frozen=True)
class EditChoices:
    """What an edit changes and delivers, besides how it samples (the defaults of `FaceEditor.edit`,
    `facepaint edit`, the web app and the pyfunc model)."""

    faces: str | list = "all"  # all | largest | indices ("0,2" or [0, 2]), left to right (`facepaint detect`)
    min_face: float = MIN_FACE  # px: narrower detected faces are skipped, with a warning
    seed: int = 0
    blend: bool = True  # pixel-level blending (False: the decoded crop pasted as it is, the ablation)
    watermark: bool = False  # an invisible mark on the edited face pixels only

    def __post_init__(self):
        parse_selection(self.faces)
        check_number("min_face", self.min_face, 0, MAX_MIN_FACE)
        check_number("seed", self.seed, 0, MAX_SEED, whole=True)
        for name in ("blend", "watermark"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")


SAMPLING = {f.name for f in dataclasses.fields(SamplingOptions)}
CHOICES = {f.name for f in dataclasses.fields(EditChoices)}


def _by_type(options: dict) -> tuple[dict, dict]:
    """(the options of SamplingOptions, those of EditChoices); ValueError naming an option that is neither."""
    unknown = sorted(set(options) - SAMPLING - CHOICES)
    if unknown:
        raise ValueError(f"unknown option(s) {unknown}; options: {sorted(SAMPLING | CHOICES)}")
    return {k: v for k, v in options.items() if k in SAMPLING}, {k: v for k, v in options.items() if k in CHOICES}


def split_options(options: dict, sampling: SamplingOptions | None = None) -> tuple[SamplingOptions, EditChoices]:
    """Keyword options (fields of SamplingOptions and of EditChoices) as the two; `sampling` the base of the
    first (default: the product's defaults). ValueError for an option that is neither."""
    sampled, chosen = _by_type(options)
    return dataclasses.replace(sampling or SamplingOptions(), **sampled), EditChoices(**chosen)


def parse_edit_options(raw: dict) -> tuple[SamplingOptions, EditChoices]:
    """A user's values (text from a command line or an HTTP request, a web form's numbers, JSON) for any of
    the options of SamplingOptions and EditChoices, converted and checked (`common.checks.parse_fields`); the
    others at their defaults. ValueError naming the option that cannot be used."""
    sampled, chosen = _by_type(raw)
    return parse_fields(SamplingOptions, sampled), parse_fields(EditChoices, chosen)
