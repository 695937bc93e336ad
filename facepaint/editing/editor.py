"""Editing a photo (SPEC section 4): `FaceEditor` conducts one edit with a trained artifact.

    validate the options -> `FaceHelper.prepare` (facepaint.method.face_helper: detect, select, align and mask each
    face at the model's resolution) -> `Inpainter.generate` (facepaint.method.generate: every face of every
    photo in one batch) -> the base model's safety checker (facepaint.editing.safety) -> `FaceHelper.paste`
    (the crops and their soft masks warped back, I_blend = I_result * M_soft + I * (1 - M_soft) at full
    resolution) -> the watermark -> the provenance (facepaint.editing.provenance) -> `EditResult`

How an edit samples is a `SamplingOptions` (facepaint.method.options, shared with the evaluation); what it
edits and delivers (faces, min_face, seed, blend, watermark) is an `EditChoices` (facepaint.editing.choices, light
to import for the command line's parser). Both are keyword arguments of `edit` and `edit_batch` (`steps=30,
faces="largest"`), and `parse_edit_options` reads both from a user's values for the command line, the web app
and the MLflow pyfunc model.

- Every pixel outside every edited face's soft mask is bit-identical to the input, with the watermark on or
  off (the watermark only touches pixels where M = 1). `blend=False` is the ablation: each decoded crop is
  pasted whole.
- When the base model ships a safety checker (SD1.5 does), it runs on the decoded crops of every edit; a
  photo with a flagged face raises `UnsafeResultError` and is never returned. `safety_checker=False` turns it
  off; the provenance says "ran", "off" or "not shipped with the model".
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from facepaint.common.checks import MAX_SEED, check_number
from facepaint.common.limits import check_prompt
from facepaint.editing import watermark as wm

# re-exported: light, for the parser
from facepaint.editing.choices import CHOICES, SAMPLING, EditChoices, parse_edit_options, split_options  # noqa: F401
from facepaint.editing.provenance import png_bytes, provenance, save_png
from facepaint.editing.safety import NOT_SHIPPED, OFF, RAN, SafetyChecker, UnsafeResultError, unsafe_message
from facepaint.method import alignment
from facepaint.method.artifact import Artifact, apply_artifact, load_artifact
from facepaint.method.blend import sigma_pixels
from facepaint.method.face_helper import FaceHelper
from facepaint.method.generate import Inpainter, per_image
from facepaint.method.models import load_components, pick_device, pick_dtype
from facepaint.method.options import SamplingOptions
from facepaint.method.speed import Speed


@dataclass
class FaceResult:
    """One edited face of a photo (photo pixels; `mask` and `soft` cover `region` only)."""

    index: int | None  # the detected face's index (None: the face given by the mask alone)
    box: tuple[float, float, float, float] | None  # the detector's box (None: the mask alone)
    score: float | None
    landmarks: tuple | None  # 5 x (x, y) or None
    matrix: np.ndarray  # 2x3 similarity photo -> crop (the alignment; its inverse pasted the crop back)
    aligned_by: str  # landmarks | box | box+eyes | mask
    region: tuple[int, int, int, int]  # x0, y0, x1, y1: where this face's soft mask (or crop) landed
    mask: np.ndarray  # bool region-sized: M
    soft: np.ndarray  # float32 region-sized: M_soft warped back
    generated: np.ndarray  # uint8 R x R x 3: I_result, the decoded crop
    prompt: str
    beta: float
    mask_from: str = ""  # where M came from: bisenet, mesh, or the user's mask (and which region of it)

    @classmethod
    def of(cls, job, pasted, generated: np.ndarray, prompt: str) -> FaceResult:
        """The result of one prepared face (helper.FaceJob) pasted back (helper.Pasted)."""
        face = job.face
        box, score, landmarks = (None, None, None) if face is None else (face.box, face.score, face.landmarks)
        return cls(job.index, box, score, landmarks, job.matrix, job.aligned_by, pasted.region, pasted.mask,
                   pasted.soft, generated, prompt, job.beta, job.mask_from)  # fmt: skip

    def describe(self) -> dict:
        return {
            "index": self.index,
            "box": None if self.box is None else [round(float(v), 2) for v in self.box],
            "score": None if self.score is None else round(float(self.score), 4),
            "landmarks": None if self.landmarks is None else [[round(float(v), 2) for v in p] for p in self.landmarks],
            "aligned_by": self.aligned_by,
            "roll": round(-alignment.matrix_roll(self.matrix), 2),
            "region": list(self.region),
            "prompt": self.prompt,
            "beta": self.beta,
            "mask_from": self.mask_from,
        }


@dataclass
class EditResult:
    image: np.ndarray  # uint8 H x W x 3: the edited photo, at the input's (EXIF-oriented) size
    original: np.ndarray  # uint8 H x W x 3: the input as decoded
    mask: np.ndarray  # bool H x W: M, the union of the edited faces' masks
    soft: np.ndarray  # float32 H x W: M_soft, the union (max) of the faces' warped soft masks
    region: tuple[int, int, int, int]  # x0, y0, x1, y1 around every edited face's region
    faces: list[FaceResult]  # per edited face, in index order
    provenance: dict
    notes: list[str] = field(default_factory=list)

    @property
    def generated(self) -> np.ndarray:
        """The first face's decoded crop (`faces[i].generated` for the others)."""
        return self.faces[0].generated

    def save(self, path: str | os.PathLike, *, sign: bool = True, c2pa_dir=None) -> Path:
        """Write the edited photo as a PNG carrying its provenance and its signed C2PA manifest (atomically;
        `png_bytes`)."""
        return save_png(self.image, path, self.provenance, sign=sign, c2pa_dir=c2pa_dir)

    def png(self, *, sign: bool = True, c2pa_dir=None) -> bytes:
        """The PNG file `save` writes, as bytes."""
        return png_bytes(self.image, self.provenance, sign=sign, c2pa_dir=c2pa_dir)


class FaceEditor:
    """Text-driven face editing with a trained artifact (see the module docstring).

    `inpainter` must run at the artifact's resolution and adapter_scale (`from_artifact` builds it so).
    `helper` finds, aligns and masks the faces (`helper.prepare`, `helper.detect`; default: a FaceHelper at
    the artifact's resolution and face parts; `from_artifact` passes it FaceHelper's options).
    `safety_checker`: True runs the base model's checker on every edit when the model ships one (loaded here,
    on the inpainter's device and dtype); False turns it off (with a warning); or a `SafetyChecker` to use."""

    def __init__(
        self,
        inpainter: Inpainter,
        artifact: Artifact,
        *,
        helper: FaceHelper | None = None,
        watermark_key=wm.DEFAULT_KEY,
        safety_checker: bool | SafetyChecker = True,
    ):
        c = artifact.conditions
        if (inpainter.resolution, inpainter.adapter_scale) != (c.resolution, c.adapter_scale):
            raise ValueError(
                f"the inpainter runs at {inpainter.resolution} px with adapter_scale "
                f"{inpainter.adapter_scale}, the artifact was trained at {c.resolution} px with "
                f"{c.adapter_scale}: build it with FaceEditor.from_artifact"
            )
        # None: off, or the model ships none (`safety_state` says which)
        self.safety, self.safety_state = safety(safety_checker, c.model, inpainter)
        self.inpainter, self.artifact, self.conditions, self.watermark_key = inpainter, artifact, c, watermark_key
        self.helper = helper or FaceHelper(c.resolution, c.parts, device=str(inpainter.device))

    @classmethod
    def from_artifact(
        cls, path, *, device="auto", speed_options=Speed(), safety_checker=True, watermark_key=wm.DEFAULT_KEY, **helper
    ) -> FaceEditor:
        """Load a trained artifact directory and its base model (`speed_options.dtype` on a GPU, fp32 on the
        CPU). `helper`: FaceHelper's keyword arguments (padding, detector, detector_weights, bisenet_weights,
        mask_backend, face_models), checked before any loading."""
        FaceHelper(1, (), **helper)  # bad helper options fail here, before the model loads
        artifact = load_artifact(path)
        c = artifact.conditions
        dev = pick_device(device)
        comps = load_components(c.model, torch_dtype=pick_dtype(speed_options.dtype, dev))
        adapter = apply_artifact(comps, artifact)
        inpainter = Inpainter(comps, adapter, c.adapter_scale, c.resolution, device=dev, speed_options=speed_options)
        helper = FaceHelper(c.resolution, c.parts, device=str(dev), **helper)
        return cls(inpainter, artifact, helper=helper, watermark_key=watermark_key, safety_checker=safety_checker)

    def describe(self) -> dict:
        """The editor's part of every result's provenance."""
        c = self.conditions
        return {
            "model": c.model.name,
            "artifact_version": self.artifact.version,
            "artifact_path": None if self.artifact.path is None else str(self.artifact.path),
            "adapter_scale": c.adapter_scale,
            "resolution": c.resolution,
            "parts": list(c.parts),
            "padding": self.helper.padding,
            "safety_checker": self.safety_state,  # ran (on every result) | off | not shipped with the model
            "runtime": self.inpainter.runtime,
        }

    def edit(self, image, prompt, *, mask=None, options: SamplingOptions | None = None, **kwargs) -> EditResult:
        """Edit the faces in `image` (a path, bytes, a PIL image or a uint8 H x W x 3 array) to match `prompt`
        (one prompt for every face, or a list: one per selected face). `mask`: see `FaceHelper.prepare`.
        `kwargs`: fields of `SamplingOptions` (steps, guidance_scale, scheduler, strength, negative_prompt,
        sigma; over `options`) and of `EditChoices` (faces, min_face, seed, blend, watermark). All faces go
        through the model in one batch. Raises `UnsafeResultError` when the safety checker flags a face."""
        sampling, choices = split_options(kwargs, options)
        prompts = list(prompt) if isinstance(prompt, (list, tuple)) else None
        for i, p in enumerate(prompts or [prompt]):  # checked before the photo is read
            check_prompt(p, "prompt" if prompts is None else f"prompt {i}")
        prepared = self.helper.prepare(image, mask, faces=choices.faces, min_face=choices.min_face, prompts=prompts)
        (result,) = self.edit_batch([prepared], "" if prompts else prompt, options=sampling, **asdict(choices))
        return result

    def edit_batch(
        self, images, prompts, *, masks=None, seeds=None, negative_prompts=None, options=None, on_step=None, **kwargs
    ) -> list[EditResult]:
        """`edit` for N photos with one pipeline call (the UNet runs each step once for every face of every photo).

        `prompts`, and optionally `seeds` and `negative_prompts`: one per photo, or a single value for all
        (default: the options' seed and negative prompt); a photo's prompt applies to each of its faces
        (unless it was prepared with per-face prompts). `masks`: None (BiSeNet for every photo) or one per
        photo (None, a path or an array each). An item of `images` may be a `Prepared` photo (its mask must
        then be None). A photo that cannot be edited raises before anything is generated, its message
        starting with "image i of N" (i counted from 0) when N > 1. Each face's noise comes from its own
        generator seeded with its photo's seed, so each result is `edit` of that photo with that seed, up to
        float rounding (on the tiny test model at most a few 1/255 steps). `on_step(i)`: after each
        denoising step.

        A face the safety checker flags raises `UnsafeResultError` for the whole call, naming each flagged
        photo and face; it carries the other photos' results (`error.results`, None for a flagged photo)."""
        # 1. Check the options and the per-photo values
        sampling, choices = split_options(kwargs, options)
        n = len(images)
        if n == 0:
            raise ValueError("edit_batch needs at least one image")
        prompts = per_image(prompts, n, "prompts", str)
        negatives = per_image(
            sampling.negative_prompt if negative_prompts is None else negative_prompts, n, "negative_prompts", str
        )
        for what, texts in (("prompt", prompts), ("negative_prompt", negatives)):
            for i, text in enumerate(texts):
                check_prompt(text, what if n == 1 else f"{what} of image {i}")
        seeds = [int(s) for s in per_image(choices.seed if seeds is None else seeds, n, "seeds", (int, np.integer))]
        for s in seeds:
            check_number("seeds", s, 0, MAX_SEED, whole=True)
        masks = [None] * n if masks is None else per_image(masks, n, "masks", type(None))
        # 2. Find, align and mask every face first: a bad photo fails before any generation
        photos = self.helper.prepare_all(images, masks, faces=choices.faces, min_face=choices.min_face)
        # 3. Generate every face of every photo in one batch
        flat = [(p, job, job.prompt or prompts[p]) for p, pr in enumerate(photos) for job in pr.jobs]
        generated, cuts = self.inpainter.generate(
            [job.image for _, job, _ in flat],
            [job.crop_mask for _, job, _ in flat],
            [job.beta for _, job, _ in flat],
            [prompt for _, _, prompt in flat],
            sampling,
            seeds=[seeds[p] for p, _, _ in flat],
            negative_prompts=[negatives[p] for p, _, _ in flat],
            on_step=on_step,
        )
        # 4. The safety checker on every generated face, one call for all (facepaint.editing.safety)
        unsafe = [False] * len(flat) if self.safety is None else self.safety.flags(generated)
        flagged = [(p, [job.index for (q, job, _), bad in zip(flat, unsafe) if q == p and bad]) for p in range(n)]
        flagged = [(p, faces) for p, faces in flagged if faces]
        # 5. Paste each photo's faces back, mark and describe them (a flagged photo: None, never returned)
        results, k, described = [], 0, self.describe()
        for p, prepared in enumerate(photos):
            count, k = len(prepared.jobs), k + len(prepared.jobs)
            if any(p == q for q, _ in flagged):
                results.append(None)
                continue
            mine = dataclasses.replace(choices, seed=seeds[p])
            opts = dataclasses.replace(sampling, negative_prompt=negatives[p])
            parts = (generated[k - count : k], [f[2] for f in flat[k - count : k]], cuts[k - count])
            results.append(self._result(prepared, *parts, opts, mine, described, n))
        if flagged:
            raise UnsafeResultError(unsafe_message(flagged, [pr.name for pr in photos]), flagged, results)
        return results

    def _result(self, prepared, generated, prompts, cut, sampling, choices, described, batch) -> EditResult:
        """One photo's edited faces pasted back, marked and described."""
        sigma_px = sigma_pixels(sampling.sigma, self.conditions.resolution)
        out, soft, m, pasted = self.helper.paste(prepared, generated, sigma_px, choices.blend)
        if choices.watermark:
            out = wm.embed(out, m & (soft > 0), self.watermark_key)
        faces = [FaceResult.of(*item) for item in zip(prepared.jobs, pasted, generated, prompts)]
        regions = [f.region for f in faces if f.region[2] > f.region[0]]
        region = tuple(f(r[i] for r in regions) for i, f in enumerate((min, min, max, max)))
        info = provenance(prepared, [f.describe() for f in faces], cut, sampling, choices, described, batch)
        return EditResult(out, prepared.photo, m, soft, region, faces, info, list(prepared.notes))


def safety(safety_checker, model, inpainter: Inpainter) -> tuple[SafetyChecker | None, str]:
    """(the checker to run on every edit or None, the provenance's word for it: ran | off | not shipped with
    the model). `safety_checker`: True (the base model's, loaded on the inpainter's device and dtype, when
    it ships one), False (off, with a warning) or a SafetyChecker."""
    if not isinstance(safety_checker, (bool, np.bool_, SafetyChecker)):
        raise ValueError(f"safety_checker must be True, False or a SafetyChecker, got {safety_checker!r}")
    if not safety_checker:
        warnings.warn(
            "the base model's safety checker is off (safety_checker=False, --no-safety-checker): edited "
            "results are not checked",
            stacklevel=3,
        )
        return None, OFF
    if not isinstance(safety_checker, SafetyChecker):  # None when the base model ships none
        safety_checker = SafetyChecker.of(model, inpainter.device, inpainter.pipe.vae.dtype)
    return safety_checker, RAN if safety_checker is not None else NOT_SHIPPED
