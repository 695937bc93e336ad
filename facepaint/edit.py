"""Editing a photo (SPEC section 4): faces, aligned crops, generation, pixel-level blending.

    photo (any size) -> faces (facepaint.faces: detected, numbered left to right, selected by `faces=`)
      -> each face aligned to the training data's framing at the model's resolution (a similarity
         transform) -> M per face (BiSeNet on the aligned crop, or the user's whole-photo mask cut per face;
         the mask alone when no face is detected: `mask_job`) -> `Inpainter.generate`, every face of every
         photo in one batch (facepaint.generate) -> `paste_back`: each decoded crop and its soft mask
         through the inverse transform, I_blend = I_result * M_soft + I * (1 - M_soft) at full resolution
         -> the PNG with its provenance (`provenance`, `save_png`)

Each step is a plain function; `FaceEditor` only ties them to a trained artifact: its conditions
(`Artifact.conditions`: resolution, face parts, sigma, adapter_scale), an `Inpainter` built from them, the
face detector and the face parser, loaded on first use.

Why it is built this way:
- Faces are aligned and edited at the model's resolution because the model was trained on CelebA-HQ
  faces, upright and filling a 512 px frame; the rest of a large photo never goes through the VAE.
- M_soft is computed in crop space with the Gaussian std the model was trained with (at the model's
  resolution) and warped back, so it is exactly 0 outside the warped crop. The blend copies the input's
  bytes wherever every face's M_soft is 0 (`np.where`, not arithmetic), so those pixels are bit-identical
  to the input by construction, with the watermark on or off (the watermark only touches pixels where
  M = 1). `blend=False` is the ablation: each decoded crop is pasted whole.
- How an edit runs (steps, guidance, strength, seed, blending...) has one home, `EditOptions`; which
  faces, `FACE_DEFAULTS`: their defaults are those of `FaceEditor.edit`, `facepaint edit` and the MLflow
  pyfunc model. They are our choices: the SPEC states no inference settings (50 DDIM steps at guidance
  7.5 is SD1.5's usual).
- The output PNG carries its provenance (prompt, seed, model, artifact version, detector, faces and
  their regions) in a text chunk named "facepaint"; `read_provenance` reads it back. It is also signed: a
  C2PA manifest over the whole file (`png_bytes`, `facepaint.signing`; `facepaint verify` checks it).
- The base model's safety checker, when it ships one (SD1.5 does), runs on the decoded crops of every edit
  (facepaint.safety says why the crops); a photo with a flagged face raises `UnsafeResultError` and is never
  returned. `safety_checker=False` turns it off; the provenance says "ran", "off" or "not shipped with the model".
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import numbers
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

import facepaint
from facepaint import MAX_SEED, FacepaintError, check_number, signing
from facepaint import faces as faces_mod
from facepaint import watermark as wm
from facepaint.artifact import Artifact, apply_artifact, load_artifact
from facepaint.faces import Face, FaceError
from facepaint.generate import Inpainter, per_image
from facepaint.images import ImageError, load_rgb
from facepaint.io import atomic_path
from facepaint.masks import (
    BISENET_CLASSES,
    BISENET_SIZE,
    MAX_SIGMA,
    BiSeNetParser,
    parts_union_from_labels,
    resize_binary,
    soft_mask,
)
from facepaint.models import ModelLoadError, load_components, pick_device, pick_dtype
from facepaint.safety import NOT_SHIPPED, OFF, RAN, SafetyChecker, UnsafeResultError, unsafe_message
from facepaint.speed import Speed

PROVENANCE_KEY = "facepaint"
PADDING = 0.25  # crop margin per side for a face given by a mask alone, x its longer side (our choice)
MAX_PADDING = 10.0  # a crop margin of 10 face sizes per side is already the whole photo for any portrait
MIN_FACE = 64.0  # px: a detected face narrower than this is skipped (our choice: the model sees it upscaled 4x+)
MAX_STEPS = 1000  # SD1.5's noise schedule has 1000 timesteps: more denoising steps than that only repeat them
MAX_GUIDANCE = 100.0  # SD1.5 is used at 1-20; far above that the guided noise prediction only saturates
# Which faces of a photo are edited (`FaceEditor.edit`'s faces= and min_face=): defaults of the CLI and pyfunc.
FACE_DEFAULTS = {"faces": "all", "min_face": MIN_FACE}
MASK_HINT = (
    "For `facepaint edit`, give the weights with --bisenet-weights PATH, or skip the face parser by "
    "passing a face mask with --mask PATH (white = face; `mask=` in the Python API)."
)


class EditError(FacepaintError):
    """A photo that cannot be edited (no face, a mask that does not fit it); the message names the photo."""


def check_options(steps: int, strength: float) -> None:
    """ValueError unless `steps` is a whole number up to MAX_STEPS, `strength` a number in (0, 1] and at least
    one denoising step runs (`strength` of `steps` are run)."""
    if isinstance(strength, bool) or not isinstance(strength, numbers.Real):
        raise ValueError(f"strength must be a number in (0, 1], got {strength!r}")
    if not 0 < strength <= 1:
        raise ValueError(f"strength must be in (0, 1], got {strength}")
    check_number("steps", steps, whole=True)  # not NaN, 2.5 or text
    if steps < 1 or (steps <= MAX_STEPS and steps * strength < 1):
        raise ValueError(f"steps x strength must be at least 1 (one denoising step), got {steps} x {strength}")
    check_number("steps", steps, 1, MAX_STEPS, whole=True)


MAX_MIN_FACE = 100_000.0  # px: wider than the face of any photo load_rgb accepts
FACE_LIMITS = {"padding": MAX_PADDING, "sigma": MAX_SIGMA, "min_face": MAX_MIN_FACE}  # upper limits


def check_face_options(**options) -> None:
    """ValueError naming the option unless each one given (padding, sigma, min_face) is a finite number from
    0 to its FACE_LIMITS: padding x the face size, sigma px at the model's resolution, min_face px."""
    for name, value in options.items():
        check_number(name, value, 0, FACE_LIMITS[name])


@dataclass(frozen=True)
class EditOptions:
    """How one edit runs; the defaults of `FaceEditor.edit`, `facepaint edit` and the pyfunc model."""

    steps: int = 50  # denoising steps
    guidance_scale: float = 7.5  # classifier-free guidance
    strength: float = 1.0  # how far the face is noised (1: entirely)
    negative_prompt: str = ""
    seed: int = 0
    blend: bool = True  # pixel-level blending (False: the decoded crop pasted as it is, the ablation)
    watermark: bool = False  # an invisible mark on the edited face pixels only

    def __post_init__(self):
        check_options(self.steps, self.strength)
        check_number("guidance_scale", self.guidance_scale, 0, MAX_GUIDANCE)
        check_number("seed", self.seed, 0, MAX_SEED, whole=True)
        if not isinstance(self.negative_prompt, str):
            raise ValueError(f"negative_prompt must be text, got {self.negative_prompt!r}")
        for name in ("blend", "watermark"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")


DEFAULTS = EditOptions()


# --------------------------------------------------------------------------------- pixels and masks


def read_photo(image) -> tuple[np.ndarray, str, list[str]]:
    """(uint8 H x W x 3 RGB, a name for messages, decoding notes) from a path, bytes, PIL image or array.
    Files are decoded by `images.load_rgb` (EXIF rotation, any colour mode, decompression bombs refused)."""
    if isinstance(image, (str, os.PathLike, bytes, bytearray)):
        name = "<bytes>" if isinstance(image, (bytes, bytearray)) else str(image)
        try:
            loaded = load_rgb(image)
        except ImageError as e:
            raise ImageError(f"{name}: {e}") from None
        return np.asarray(loaded.image), name, list(loaded.notes)
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB")), "<image>", []
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"an image array must be uint8 (H, W, 3) RGB, got {arr.dtype} {arr.shape}")
    return arr, "<array>", []


def fit_mask(mask: np.ndarray, size: tuple[int, int], what: str = "mask") -> np.ndarray:
    """A mask array (bool, or float in [0, 1]) of any size with the photo's aspect ratio, as M for a photo
    of size = (width, height)."""
    mask = np.asarray(mask)
    if mask.ndim != 2 or 0 in mask.shape:
        raise ValueError(f"{what} must be a 2-D array (H, W), got shape {mask.shape}")
    if mask.dtype != bool and mask.dtype.kind not in "uif":
        raise ValueError(f"{what} must hold bools or numbers (white = face), got dtype {mask.dtype}")
    if mask.dtype.kind == "f" and not np.isfinite(mask).all():
        raise ValueError(f"{what} holds NaN or infinite values: give 0 (keep) to 1 (edit) per pixel")
    (mh, mw), (w, h) = mask.shape, size
    if abs(mw * h - mh * w) > 0.01 * max(mw * h, mh * w):
        raise EditError(f"{what} is {mw}x{mh} but the photo is {w}x{h}: the mask must have the photo's aspect ratio")
    return resize_binary(mask, size)


def load_mask(path: str | os.PathLike, size: tuple[int, int]) -> np.ndarray:
    """A face mask image (any size with the photo's aspect ratio, any mode; white = face) as M for a photo
    of size = (width, height)."""
    try:
        grey = np.asarray(load_rgb(path).image.convert("L"), dtype=np.float32) / 255.0
    except ImageError as e:
        raise ImageError(f"mask {path}: {e}") from None
    return fit_mask(grey, size, f"mask {path}")


def face_crop(mask: np.ndarray, padding: float) -> tuple[int, int, int]:
    """(x0, y0, side): the square around the mask's bounding box, `padding` x its longer side added on
    each side, centred on the box and shifted to lie inside the image (shrunk when the image is narrower)."""
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    bx0, bx1, by0, by1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    side = min(math.ceil(max(bx1 - bx0, by1 - by0) * (1 + 2 * padding)), w, h)
    x0 = int(np.clip(round((bx0 + bx1 - side) / 2), 0, w - side))
    y0 = int(np.clip(round((by0 + by1 - side) / 2), 0, h - side))
    return x0, y0, side


def pixel_blend(original: np.ndarray, result: np.ndarray, soft: np.ndarray) -> np.ndarray:
    """I_blend = I_result * M_soft + I * (1 - M_soft), rounded to uint8; where M_soft == 0 the
    original's bytes are copied, so those pixels are bit-identical by construction."""
    s = soft[..., None].astype(np.float32)
    mixed = result.astype(np.float32) * s + original.astype(np.float32) * (1 - s)
    return np.where(s > 0, np.clip(np.rint(mixed), 0, 255).astype(np.uint8), original)


@dataclass(eq=False)
class FaceJob:
    """One face of a photo, ready for the model: where it is, how it was aligned, its crop and mask."""

    index: int | None  # the detected face's index (left to right), None for a face given by the mask alone
    face: Face | None  # the detection (None: the mask alone)
    aligned_by: (
        str  # "landmarks", "box" (a box-only detector's roll), "box+eyes" (roll from the parser's eyes), "mask"
    )
    matrix: np.ndarray  # 2x3 similarity photo -> crop
    image: np.ndarray  # uint8 R x R x 3: the aligned crop
    crop_mask: np.ndarray  # bool R x R: M in the crop
    beta: float  # the face ratio mean(crop_mask)
    photo_mask: tuple | None = None  # (region, bool array): the user's mask of this face in photo pixels
    prompt: str | None = None  # a per-face prompt given to `prepare`


@dataclass(eq=False)
class Prepared:
    """A photo ready for the model (`FaceEditor.prepare`): the photo, the faces found in it and, for each face
    to edit, its aligned crop and mask at the model's resolution. `FaceEditor.edit_batch` takes these in place
    of photos."""

    photo: np.ndarray  # uint8 H x W x 3: the input as decoded
    name: str  # the photo's name in messages ("<array>" for an array)
    notes: list[str]  # decoding, detection and selection notes
    source: str  # where M came from: "bisenet", the mask's path, or "array"
    detector: str | None  # the detector that found `faces` (None: not run)
    faces: list[Face]  # every face found, in index order
    jobs: list[FaceJob]  # the faces to edit

    @property
    def size(self) -> tuple[int, int]:
        return self.photo.shape[1], self.photo.shape[0]


def mask_job(
    photo: np.ndarray, m: np.ndarray, resolution: int, padding: float, name: str, notes: list[str]
) -> FaceJob:
    """The face given by a whole-photo mask alone (no detection): the padded square around M, unrotated
    (`face_crop`). EditError when no face is left at the model's resolution."""
    if not m.any():
        raise EditError(f"no face found in {name}: the face mask is empty")
    x0, y0, side = face_crop(m, padding)
    crop = (slice(y0, y0 + side), slice(x0, x0 + side))
    if m.sum() > m[crop].sum():
        notes.append(
            f"the face mask is wider than the photo's short side; only the {side} px square at ({x0}, {y0}) is edited"
        )
    matrix = faces_mod.square(x0, y0, side, resolution)
    crop_mask = resize_binary(m[crop], resolution)
    if not crop_mask.any():
        raise EditError(
            f"no face found in {name}: the face mask vanishes at the model's resolution "
            f"({resolution} px for a {side} px crop)"
        )
    inside = np.zeros(m.shape, bool)
    inside[crop] = m[crop]
    region = (x0, y0, x0 + side, y0 + side)
    image = faces_mod.warp_crop(photo, matrix, resolution)
    return FaceJob(None, None, "mask", matrix, image, crop_mask, float(crop_mask.mean()), (region, inside[crop]))


def paste_back(photo: np.ndarray, jobs: list[FaceJob], generated: list[np.ndarray], sigma: float, blend: bool = True):
    """(the edited photo, M_soft (the union over faces), M (the union), [Pasted per face]): each decoded crop
    and its soft mask (G_sigma * M in crop space: the soft mask the model was trained with) warped back onto
    the photo and composited (`faces.composite`: every pixel outside all soft masks is the input's)."""
    size = (photo.shape[1], photo.shape[0])
    pasted = []
    for job, gen in zip(jobs, generated):
        p = faces_mod.paste(gen, soft_mask(job.crop_mask, sigma), job.crop_mask, job.matrix, size, whole=not blend)
        if job.photo_mask is not None and p.region[2] > p.region[0] and p.region[3] > p.region[1]:
            # the user's own mask of this face, exactly, where the warped-back one would be resampled
            (mx0, my0, mx1, my1), own = job.photo_mask
            x0, y0, x1, y1 = p.region
            p.mask = np.zeros((y1 - y0, x1 - x0), bool)
            ix0, iy0, ix1, iy1 = max(x0, mx0), max(y0, my0), min(x1, mx1), min(y1, my1)
            if ix1 > ix0 and iy1 > iy0:  # the two regions' overlap, copied without a photo-size array
                p.mask[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = own[iy0 - my0 : iy1 - my0, ix0 - mx0 : ix1 - mx0]
        pasted.append(p)
    out, soft, m = faces_mod.composite(photo, pasted, blend)
    return out, soft, m, pasted


def provenance(job: Prepared, faces: list[dict], cut: str, options: EditOptions, editor: dict, batch: int) -> dict:
    """What the edited PNG says about itself: the prompt and options, where the faces and their masks came
    from, the edited region, and the editor's model, artifact, conditions and runtime (`FaceEditor.describe`).
    `faces`: one dict per edited face (index, box, score, landmarks, alignment, prompt, beta, region); the
    top-level prompt, beta and region are the first face's (the only one's, for a one-face photo)."""
    return {
        "prompt": faces[0]["prompt"],
        "negative_prompt": options.negative_prompt,
        "prompt_cut": cut,
        "seed": options.seed,
        "steps": options.steps,
        "guidance_scale": options.guidance_scale,
        "strength": options.strength,
        "blend": options.blend,
        "watermark": options.watermark,
        "mask": job.source,
        "detector": job.detector,
        "beta": faces[0]["beta"],
        "region": faces[0]["region"],
        "faces": faces,
        "source": job.name,
        "facepaint": facepaint.__version__,
        **{k: v for k, v in editor.items() if k != "runtime"},
        "runtime": {**editor["runtime"], "batch": batch},
    }


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

    def describe(self) -> dict:
        return {
            "index": self.index,
            "box": None if self.box is None else [round(float(v), 2) for v in self.box],
            "score": None if self.score is None else round(float(self.score), 4),
            "landmarks": None if self.landmarks is None else [[round(float(v), 2) for v in p] for p in self.landmarks],
            "aligned_by": self.aligned_by,
            "roll": round(-faces_mod.matrix_roll(self.matrix), 2),
            "region": list(self.region),
            "prompt": self.prompt,
            "beta": self.beta,
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


def png_bytes(
    image: np.ndarray, provenance: dict, *, sign: bool = True, c2pa_dir=None, title: str = "edited.png"
) -> bytes:
    """The edited photo as PNG bytes: the provenance in a text chunk and, unless `sign` is False, a C2PA
    manifest signed with the key in `c2pa_dir` (`facepaint.signing`: made on first use; None: the default
    directory). Every way an edit leaves the system (`facepaint edit`, `EditResult.save`, the app's download,
    the pyfunc model) writes these bytes. SigningError when it cannot sign: never an unsigned file instead."""
    info = PngInfo()
    info.add_text(PROVENANCE_KEY, json.dumps(provenance))
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", pnginfo=info)
    if not sign:
        return buf.getvalue()
    return signing.sign_png(buf.getvalue(), provenance, key=c2pa_dir, title=title)


def save_png(
    image: np.ndarray, path: str | os.PathLike, provenance: dict, *, sign: bool = True, c2pa_dir=None
) -> Path:
    data = png_bytes(image, provenance, sign=sign, c2pa_dir=c2pa_dir, title=Path(path).name)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def read_provenance(path: str | os.PathLike) -> dict:
    """The provenance `facepaint edit` wrote into a PNG. Raises ValueError when there is none."""
    with Image.open(path) as im:
        raw = getattr(im, "text", {}).get(PROVENANCE_KEY)
    if raw is None:
        raise ValueError(f"{path} carries no facepaint provenance (it was not written by `facepaint edit`)")
    return json.loads(raw)


# ------------------------------------------------------------------------------------------- editor


class FaceEditor:
    """Text-driven face editing with a trained artifact: the plain steps above, under its conditions.

    `inpainter` must run at the artifact's resolution and adapter_scale (`from_artifact` builds it so).
    `sigma` overrides the artifact's soft-mask sigma (pixels at the model's resolution); `padding` is the
    crop margin; `bisenet_weights` the face parser's weights (None: facexlib's cache or download).
    `safety_checker`: True runs the base model's checker on every edit when the model ships one (loaded here,
    on the inpainter's device and dtype); False turns it off (with a warning); or a `SafetyChecker` to use.
    """

    def __init__(
        self,
        inpainter: Inpainter,
        artifact: Artifact,
        *,
        padding: float = PADDING,
        sigma: float | None = None,
        bisenet_weights=None,
        watermark_key=wm.DEFAULT_KEY,
        detector: str = "auto",
        detector_weights=None,
        min_face: float = MIN_FACE,
        safety_checker: bool | SafetyChecker = True,
    ):
        c = artifact.conditions
        if (inpainter.resolution, inpainter.adapter_scale) != (c.resolution, c.adapter_scale):
            raise ValueError(
                f"the inpainter runs at {inpainter.resolution} px with adapter_scale "
                f"{inpainter.adapter_scale}, the artifact was trained at {c.resolution} px with "
                f"{c.adapter_scale}: build it with FaceEditor.from_artifact"
            )
        sigma = c.sigma if sigma is None else sigma
        check_face_options(padding=padding, sigma=sigma, min_face=min_face)
        if detector not in faces_mod.DETECTORS:
            raise ValueError(f"detector must be one of {faces_mod.DETECTORS}, got {detector!r}")
        if not isinstance(safety_checker, (bool, np.bool_, SafetyChecker)):
            raise ValueError(f"safety_checker must be True, False or a SafetyChecker, got {safety_checker!r}")
        if isinstance(safety_checker, (bool, np.bool_)):
            if not safety_checker:
                warnings.warn(
                    "the base model's safety checker is off (safety_checker=False, --no-safety-checker): edited "
                    "results are not checked",
                    stacklevel=2,
                )
            # None when the base model ships none
            safety_checker = safety_checker and SafetyChecker.of(c.model, inpainter.device, inpainter.pipe.vae.dtype)
        self.safety = safety_checker or None  # None: off, or the model ships none (`safety_state` says which)
        self.safety_state = RAN if self.safety is not None else OFF if safety_checker is False else NOT_SHIPPED
        self.inpainter, self.artifact, self.conditions = inpainter, artifact, c
        self.padding, self.sigma, self.bisenet_weights, self.watermark_key = (
            padding,
            sigma,
            bisenet_weights,
            watermark_key,
        )
        self.detector_kind, self.detector_weights, self.min_face = detector, detector_weights, min_face
        self._parser = self._detector = None

    @classmethod
    def from_artifact(
        cls,
        path: str | os.PathLike,
        *,
        device="auto",
        scheduler: str = "ddim",
        speed_options: Speed = Speed(),
        **options,
    ) -> FaceEditor:
        """Load a trained artifact directory and its base model (`speed_options.dtype` on a GPU, fp32 on the
        CPU). `options`: FaceEditor's keyword arguments (padding, sigma, bisenet_weights, watermark_key,
        detector, detector_weights, min_face, safety_checker: False turns the base model's checker off)."""
        # before any loading; sigma None is the artifact's own
        check_face_options(
            **{k: v for k, v in options.items() if k in FACE_LIMITS and (v is not None or k != "sigma")}
        )
        artifact = load_artifact(path)
        c = artifact.conditions
        dev = pick_device(device)
        comps = load_components(c.model, torch_dtype=pick_dtype(speed_options.dtype, dev))
        adapter = apply_artifact(comps, artifact)
        inpainter = Inpainter(
            comps, adapter, c.adapter_scale, c.resolution, device=dev, scheduler=scheduler, speed_options=speed_options
        )
        return cls(inpainter, artifact, **options)

    def describe(self) -> dict:
        """The editor's part of every result's provenance."""
        c, ip = self.conditions, self.inpainter
        return {
            "model": c.model.name,
            "artifact_version": self.artifact.version,
            "artifact_path": None if self.artifact.path is None else str(self.artifact.path),
            "adapter_scale": c.adapter_scale,
            "resolution": c.resolution,
            "sigma": self.sigma,
            "parts": list(c.parts),
            "padding": self.padding,
            "min_face": self.min_face,
            "scheduler": ip.scheduler,
            "safety_checker": self.safety_state,  # ran (on every result) | off | not shipped with the model
            "runtime": ip.runtime,
        }

    # ------------------------------------------------------------------------------ faces and masks
    def face_parser(self) -> BiSeNetParser:
        """The BiSeNet face parser, loaded on first use; missing weights say how to pass a mask instead."""
        if self._parser is None:
            try:
                self._parser = BiSeNetParser(self.bisenet_weights, str(self.inpainter.device))
            except ModelLoadError as e:
                raise ModelLoadError(f"{e} {MASK_HINT}") from e
        return self._parser

    def face_detector(self):
        """The face detector (`faces.make_detector`), built on first use."""
        if self._detector is None:
            self._detector, notes = faces_mod.make_detector(
                self.detector_kind, self.detector_weights, str(self.inpainter.device)
            )
            for note in notes:
                warnings.warn(note, stacklevel=2)
        return self._detector

    def detect(self, image, min_face: float | None = None) -> tuple[list[Face], str]:
        """(the faces in a photo (path, bytes, PIL image or array), in the index order of `faces=`, the
        detector's name)."""
        photo = image if isinstance(image, np.ndarray) and image.ndim == 3 else read_photo(image)[0]
        det = self.face_detector()
        return det.detect(photo, self.min_face if min_face is None else min_face), det.name

    def parse_face(self, photo: np.ndarray) -> np.ndarray:
        """M for a uint8 RGB photo that is one face's frame: BiSeNet at 512 x 512, the union of the artifact's
        face parts, resized back."""
        h, w = photo.shape[:2]
        small = np.array(Image.fromarray(photo).resize((BISENET_SIZE, BISENET_SIZE), Image.Resampling.BILINEAR))
        labels = self.face_parser().labels(small[None])[0]
        return resize_binary(parts_union_from_labels(labels, self.conditions.parts), (w, h))

    def _parse_crop(self, photo: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        """The parser's labels of the aligned crop, at the parser's 512 px."""
        k = BISENET_SIZE / self.conditions.resolution
        crop = faces_mod.warp_crop(photo, faces_mod.rescale(matrix, k), BISENET_SIZE)
        return self.face_parser().labels(crop[None])[0]

    def prepare(self, image, mask=None, *, faces="all", min_face: float | None = None, prompts=None) -> Prepared:
        """Read the photo, find its faces, select them (`faces`: "all", "largest" or indices; faces narrower
        than `min_face` px are skipped with a warning naming them) and align each to the model's framing.
        M per face comes from BiSeNet on the aligned crop (`mask` None) or from the user's mask (a path or
        an array of the photo's aspect ratio, white = the faces to edit; cut per face, a face it does not
        cover is left alone). With a mask and no face detected, the masked region is edited as one face.
        `prompts`: one per selected face, in order (None: the edit's prompt for all). Raises ImageError,
        EditError, FaceError or ValueError for a photo that cannot be edited, before any generation."""
        photo, name, notes = read_photo(image)
        h, w = photo.shape[:2]
        res, min_face = self.conditions.resolution, self.min_face if min_face is None else min_face
        check_face_options(min_face=min_face)
        faces_mod.parse_selection(faces)  # a malformed selection fails before detection
        if mask is None:
            m, source = None, "bisenet"
            self.face_parser()  # missing weights fail before detection
        elif isinstance(mask, (str, os.PathLike)):
            m, source = load_mask(mask, (w, h)), str(mask)
        else:
            m, source = fit_mask(mask, (w, h)), "array"
        if m is not None and not m.any():
            raise EditError(
                f"no face found in {name}: the mask ({source}) is empty; pass a mask with the face in white"
            )
        found, detector = self.detect(photo, min_face)
        if not found:
            if m is None:
                raise EditError(
                    f"no face found in {name} (detector {detector}, faces of at least {min_face:g} px); "
                    f"pass a mask with the face in white (--mask), or lower --min-face"
                )
            notes.append(f"no face detected ({detector}); the masked region is edited as one face")
            job = mask_job(photo, m, res, self.padding, name, notes)
            job.prompt = None if prompts is None else per_image(prompts, 1, "prompts", str)[0]
            return Prepared(photo, name, notes, source, detector, [], [job])
        chosen, skipped = faces_mod.select_faces(found, faces, min_face, name)
        face_prompts = [None] * len(chosen)
        if prompts is not None:  # one per selected face, in selection order, before faces are skipped for size
            order, _ = faces_mod.select_faces(found, faces, 0, name)
            given = per_image(prompts, len(order), "prompts (one per selected face)", str)
            face_prompts = [given[order.index(i)] for i in chosen]
        for message in skipped:  # a warning (the CLI prints "warning: ..."), not only a note in the result
            warnings.warn(f"{name}: {message}", stacklevel=3)
        before = len(notes)
        jobs = []
        for i, prompt in zip(chosen, face_prompts):
            job = self._face_job(photo, m, found, i, name, notes)
            if job is not None:
                job.prompt = prompt
                jobs.append(job)
        if not jobs and m is not None:  # the mask is the user's word: it marks a face the detector missed
            notes.append(
                f"the mask covers none of the {len(found)} detected face(s) selected; "
                "the masked region is edited as one face"
            )
            job = mask_job(photo, m, res, self.padding, name, notes)
            job.prompt = face_prompts[0] if face_prompts and face_prompts[0] else None
            return Prepared(photo, name, notes, source, detector, found, [job])
        if not jobs:
            why = "; ".join(skipped + notes[before:]) or "no face selected"
            raise EditError(f"no face to edit in {name}: {why}")
        return Prepared(photo, name, notes, source, detector, found, jobs)

    def _face_job(self, photo, m, found: list[Face], i: int, name: str, notes: list[str]) -> FaceJob | None:
        """Align face `i` and find its mask; None (with a note) when it has no face pixels to edit."""
        res, face = self.conditions.resolution, found[i]
        aligned_by = "landmarks" if face.landmarks is not None else "box"
        matrix = faces_mod.align(face, res)
        own = None
        if m is None:
            labels = self._parse_crop(photo, matrix)
            roll = None if face.landmarks is not None else faces_mod.eye_roll(labels, BISENET_CLASSES)
            if roll is not None and abs(roll) > 2.0:  # box-only: turn upright by the parser's eye line
                face = dataclasses.replace(face, roll=face.roll + roll)
                matrix, aligned_by = faces_mod.align(face, res), "box+eyes"
                labels = self._parse_crop(photo, matrix)
            crop_mask = resize_binary(parts_union_from_labels(labels, self.conditions.parts), res)
            crop_mask &= faces_mod.territory(found, i, matrix, res)
            if not crop_mask.any():
                notes.append(f"face {i} at {[round(v) for v in face.box]}: the parser found no face parts; skipped")
                return None
        else:
            own = faces_mod.owned(found, i, matrix, res, m)
            crop_mask = faces_mod.warp_mask_to_crop(m, matrix, res) & faces_mod.territory(found, i, matrix, res)
            if not own[1].any() or not crop_mask.any():
                notes.append(f"face {i} at {[round(v) for v in face.box]} is not covered by the mask: left alone")
                return None
        image = faces_mod.warp_crop(photo, matrix, res)
        return FaceJob(i, face, aligned_by, matrix, image, crop_mask, float(crop_mask.mean()), own)

    # ------------------------------------------------------------------------------------- edit
    def edit(self, image, prompt, *, mask=None, faces="all", min_face: float | None = None, **options) -> EditResult:
        """Edit the faces in `image` (a path, bytes, a PIL image or a uint8 H x W x 3 array) to match `prompt`
        (one prompt for every face, or a list: one per selected face). `mask`, `faces`, `min_face`: see
        `prepare`. `options`: fields of `EditOptions` (steps, guidance_scale, strength, negative_prompt, seed,
        blend, watermark), its defaults otherwise. All faces go through the model in one batch. Raises
        `UnsafeResultError` when the base model's safety checker flags an edited face."""
        if isinstance(prompt, (list, tuple)):
            prepared = self.prepare(image, mask, faces=faces, min_face=min_face, prompts=list(prompt))
            return self.edit_batch([prepared], "", **options)[0]
        prepared = self.prepare(image, mask, faces=faces, min_face=min_face)
        return self.edit_batch([prepared], prompt, **options)[0]

    def edit_batch(
        self, images, prompts, *, masks=None, seeds=None, negative_prompts=None, faces="all", min_face=None, **options
    ) -> list[EditResult]:
        """`edit` for N photos with one pipeline call (the UNet runs each step once for every face of every
        photo).

        `prompts`, and optionally `seeds` and `negative_prompts`: one per photo, or a single value for all
        (default: the options' seed and negative prompt); a photo's prompt applies to each of its faces
        (unless it was prepared with per-face prompts). `masks`: None (BiSeNet for every photo) or one per
        photo (None, a path or an array each). An item of `images` may be a `Prepared` photo (its mask must
        then be None). A photo that cannot be edited raises before anything is generated, its message
        starting with "image i of N" (i counted from 0) when N > 1. Each face's noise comes from its own
        generator seeded with its photo's seed, so each result is `edit` of that photo with that seed, up to
        float rounding (on the tiny test model at most a few 1/255 steps).

        When the base model's safety checker flags a face, `UnsafeResultError` is raised for the whole call (so
        no caller can take a flagged result for a good one), naming each flagged photo and face; it carries
        the other photos' results (`error.results`, None for each flagged photo), which `facepaint edit`
        writes, as it goes on past any photo that fails."""
        opts = dataclasses.replace(DEFAULTS, **options)
        n = len(images)
        if n == 0:
            raise ValueError("edit_batch needs at least one image")
        prompts = per_image(prompts, n, "prompts", str)
        negatives = per_image(
            opts.negative_prompt if negative_prompts is None else negative_prompts, n, "negative_prompts", str
        )
        seeds = [int(s) for s in per_image(opts.seed if seeds is None else seeds, n, "seeds", (int, np.integer))]
        for s in seeds:
            check_number("seeds", s, 0, MAX_SEED, whole=True)
        masks = [None] * n if masks is None else per_image(masks, n, "masks", type(None))
        # 1. Find, align and mask every face first: a bad photo fails before any generation
        jobs = []
        for i, (image, mask) in enumerate(zip(images, masks)):
            if isinstance(image, Prepared):
                if mask is not None:
                    raise ValueError(f"image {i} of {n} is already prepared (its mask is chosen); give mask None")
                jobs.append(image)
                continue
            try:
                jobs.append(self.prepare(image, mask, faces=faces, min_face=min_face))
            except (ImageError, EditError, FaceError, ValueError) as e:
                if n == 1:
                    raise
                raise type(e)(f"image {i} of {n}: {e}") from e
        # 2. Generate every face of every photo in one batch
        flat = [
            (p, j, job.prompt or prompts[p], negatives[p], seeds[p])
            for p, pr in enumerate(jobs)
            for j, job in enumerate(pr.jobs)
        ]
        generated, cuts = self.inpainter.generate(
            [jobs[p].jobs[j].image for p, j, *_ in flat],
            [jobs[p].jobs[j].crop_mask for p, j, *_ in flat],
            [jobs[p].jobs[j].beta for p, j, *_ in flat],
            [f[2] for f in flat],
            [f[3] for f in flat],
            steps=opts.steps,
            guidance_scale=opts.guidance_scale,
            strength=opts.strength,
            seeds=[f[4] for f in flat],
        )
        # 3. The base model's safety checker on every generated face, one call for all (facepaint.safety)
        unsafe = [False] * len(flat) if self.safety is None else self.safety.flags(generated)
        flagged = [
            (p, [pr.jobs[j].index for (q, j, *_), bad in zip(flat, unsafe) if q == p and bad])
            for p, pr in enumerate(jobs)
        ]
        flagged = [(p, faces) for p, faces in flagged if faces]
        # 4. Paste each photo's faces back, mark them, describe them (a flagged photo: None, never returned)
        described, results, k = self.describe(), [], 0
        for p, prepared in enumerate(jobs):
            count = len(prepared.jobs)
            if any(p == q for q, _ in flagged):
                k += count
                results.append(None)
                continue
            gens, face_prompts, face_cuts = (
                generated[k : k + count],
                [f[2] for f in flat[k : k + count]],
                cuts[k : k + count],
            )
            k += count
            out, soft, m, pasted = paste_back(prepared.photo, prepared.jobs, gens, self.sigma, opts.blend)
            if opts.watermark:
                out = wm.embed(out, m & (soft > 0), self.watermark_key)
            face_results = [
                FaceResult(
                    job.index,
                    None if job.face is None else job.face.box,
                    None if job.face is None else job.face.score,
                    None if job.face is None else job.face.landmarks,
                    job.matrix,
                    job.aligned_by,
                    pt.region,
                    pt.mask,
                    pt.soft,
                    gen,
                    prompt,
                    job.beta,
                )
                for job, pt, gen, prompt in zip(prepared.jobs, pasted, gens, face_prompts)
            ]
            regions = [f.region for f in face_results if f.region[2] > f.region[0]]
            region = (
                min(r[0] for r in regions),
                min(r[1] for r in regions),
                max(r[2] for r in regions),
                max(r[3] for r in regions),
            )
            job_opts = dataclasses.replace(opts, seed=seeds[p], negative_prompt=negatives[p])
            cut = face_cuts[0]
            results.append(
                EditResult(
                    out,
                    prepared.photo,
                    m,
                    soft,
                    region,
                    face_results,
                    provenance(prepared, [f.describe() for f in face_results], cut, job_opts, described, n),
                    list(prepared.notes),
                )
            )
        if flagged:
            raise UnsafeResultError(unsafe_message(flagged, [pr.name for pr in jobs]), flagged, results)
        return results
