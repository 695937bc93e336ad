"""What an edit changes and delivers (`EditChoices`) and the one parser of a user's edit options
(`parse_edit_options`), light to import: `facepaint --help` builds its parser from them (and the face options of
facepaint.method.face_options, re-exported here), and `facepaint edit` checks its options, without torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from facepaint.common.checks import MAX_SEED, check_number, parse_fields
from facepaint.method.face_options import (  # noqa: F401  re-exported: the CLI's parser takes them from here
    DETECTORS,
    MASK_BACKENDS,
    MAX_MIN_FACE,
    MAX_PADDING,
    MIN_FACE,
    PADDING,
    parse_selection,
)
from facepaint.method.options import SamplingOptions


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
