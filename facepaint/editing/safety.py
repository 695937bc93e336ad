"""The base model's safety checker on every edit: diffusers' `StableDiffusionSafetyChecker`, which
SD1.5's directory ships with its CLIPImageProcessor (loaded by `models.load_safety_checker`).

`FaceEditor` runs `SafetyChecker.flags` on the decoded face crops of every edit, in one call for the batch,
before anything is pasted back; a photo with a flagged face is never returned or written
(`UnsafeResultError`). `safety_checker=False` turns it off, as diffusers' `safety_checker=None` does.

Why the crops and not the final photo:
- the crop is what the model generated: a whole SD image at the model's resolution, framed like the images the
  checker was made for (SD's own pipelines check each generated image). Everything else in the final photo is
  the user's own pixels, which the editor does not judge;
- the crop holds every generated pixel the photo receives (the blend takes a subset of it; `blend=False`
  pastes it whole), so a checked crop covers the edit whatever the blend;
- the final photo would be shrunk to the checker's 224 px whole: a 300 px face in a 4000 px photo becomes
  17 px there, and the checker would hardly see the edit at all.
diffusers' checker replaces a flagged image with a black one and returns it; here nothing is returned: the
caller gets an error naming the photo and face, and the other photos of a batch (`UnsafeResultError.results`).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from PIL import Image

from facepaint.common.errors import FacepaintError
from facepaint.method.models import SAFETY_OFF_HINT, ModelConfig, load_safety_checker

# What the provenance says under "safety_checker"
RAN, OFF, NOT_SHIPPED = "ran", "off", "not shipped with the model"


class UnsafeResultError(FacepaintError):
    """The base model's safety checker flagged an edited result, which is therefore not returned.

    `flagged`: (photo index in the batch, [the flagged faces' indices, None for a face given by its mask alone]);
    `results`: per photo of the batch, its EditResult, or None where a face was flagged (what `edit_batch`
    would have returned for the others)."""

    def __init__(self, message: str, flagged: list[tuple[int, list]] = (), results: list = ()):
        super().__init__(message)
        self.flagged, self.results = list(flagged), list(results)


class _NoBlackImageWarning(logging.Filter):
    """diffusers' checker logs that it returns a black image; here a flagged result is refused instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Potential NSFW content" not in record.getMessage()


class SafetyChecker:
    """The base model's safety checker and its image processor, on a device and dtype."""

    def __init__(self, model, processor, device, dtype: torch.dtype | None = None):
        self.device = torch.device(device)
        self.model = model.to(self.device, **({} if dtype is None else {"dtype": dtype})).eval()
        self.processor = processor
        self.dtype = next(self.model.parameters()).dtype

    @classmethod
    def of(cls, cfg: ModelConfig, device, dtype: torch.dtype | None = None) -> SafetyChecker | None:
        """The checker the base model `cfg` ships, or None when it ships none."""
        loaded = load_safety_checker(cfg, dtype)
        return None if loaded is None else cls(*loaded, device, dtype)

    @torch.inference_mode()
    def flags(self, images) -> list[bool]:
        """For each uint8 H x W x 3 image, whether the checker flags it (one forward for all of them), called as
        diffusers' pipelines call it: the processor's pixel values from PIL images."""
        images = list(images)
        pixels = self.processor([Image.fromarray(np.asarray(i)) for i in images], return_tensors="pt").pixel_values
        quiet = _NoBlackImageWarning()
        log = logging.getLogger(type(self.model).__module__)
        log.addFilter(quiet)
        try:
            # `images` is what the checker blacks out in place: placeholders, the crops themselves are not touched
            _, flagged = self.model(clip_input=pixels.to(self.device, self.dtype), images=[np.zeros(1)] * len(images))
        finally:
            log.removeFilter(quiet)
        return [bool(f) for f in flagged]


def unsafe_message(flagged: list[tuple[int, list]], names: list[str]) -> str:
    """The error for the flagged photos (batch index, face indices) of a batch of photos named `names`."""
    n = len(names)
    parts = []
    for p, faces in flagged:
        which = ", ".join("the masked region" if f is None else f"face {f}" for f in faces)
        parts.append(f"{names[p]} ({which})" if n == 1 else f"image {p} of {n}, {names[p]} ({which})")
    return (
        f"the base model's safety checker flagged the edited result of {'; '.join(parts)}: it is withheld (not "
        f"returned or written). Try another prompt or seed, or {SAFETY_OFF_HINT} (facepaint edit and facepaint app)."
    )
