"""Editing a photo (SPEC section 4): face mask, square crop, generation, pixel-level blending.

    photo (any size) -> face mask M (BiSeNet, or the user's) -> square crop around the face (`prepare`)
      -> crop and M at the model's resolution -> `Inpainter.generate` (facepaint.generate)
      -> decoded crop resized back -> I_blend = I_result * M_soft + I * (1 - M_soft) at full resolution
         (`paste_back`) -> the PNG with its provenance (`provenance`, `save_png`)

Each step is a plain function; `FaceEditor` only ties them to a trained artifact: its conditions
(`Artifact.conditions`: resolution, face parts, sigma, adapter_scale), an `Inpainter` built from them and
the face parser, loaded on first use.

Why it is built this way:
- The face is cropped with padding and edited at the model's resolution because the model was
  trained on CelebA-HQ faces that fill a 512 px frame; the rest of a large photo never goes through
  the VAE.
- M_soft is computed at the photo's resolution inside the crop only (its Gaussian std is the one the
  model was trained with, given at the model's resolution and scaled by crop side / resolution), so it
  is exactly 0 outside the crop. The blend copies the input's bytes wherever M_soft == 0 (`np.where`,
  not arithmetic), so those pixels are bit-identical to the input by construction, with the watermark
  on or off (the watermark only touches pixels where M = 1). `blend=False` is the ablation: the decoded
  crop is pasted as it is.
- How an edit runs (steps, guidance, strength, seed, blending...) has one home, `EditOptions`: its
  defaults are those of `FaceEditor.edit`, `facepaint edit` and the MLflow pyfunc model. They are our
  choices: the SPEC states no inference settings (50 DDIM steps at guidance 7.5 is SD1.5's usual).
- The output PNG carries its provenance (prompt, seed, model, artifact version, edited region) in a
  text chunk named "facepaint"; `read_provenance` reads it back.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

import facepaint
from facepaint import FacepaintError
from facepaint import watermark as wm
from facepaint.artifact import Artifact, apply_artifact, load_artifact
from facepaint.generate import Inpainter, per_image
from facepaint.images import ImageError, load_rgb, resize_rgb
from facepaint.io import atomic_path
from facepaint.masks import BISENET_SIZE, BiSeNetParser, parts_union_from_labels, resize_binary, soft_mask
from facepaint.models import ModelLoadError, load_components, pick_device, pick_dtype
from facepaint.speed import Speed

PROVENANCE_KEY = "facepaint"
PADDING = 0.25  # crop margin per side, x the face's longer side (our choice: keeps hair and chin in frame)
MASK_HINT = (
    "For `facepaint edit`, give the weights with --bisenet-weights PATH, or skip the face parser by "
    "passing a face mask with --mask PATH (white = face; `mask=` in the Python API)."
)


class EditError(FacepaintError):
    """A photo that cannot be edited (no face, a mask that does not fit it); the message names the photo."""


def check_options(steps: int, strength: float) -> None:
    """ValueError unless at least one denoising step runs (`strength` of `steps` are run)."""
    if not 0 < strength <= 1:
        raise ValueError(f"strength must be in (0, 1], got {strength}")
    if steps < 1 or steps * strength < 1:
        raise ValueError(f"steps x strength must be at least 1 (one denoising step), got {steps} x {strength}")


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
        if not math.isfinite(self.guidance_scale):
            raise ValueError(f"guidance_scale must be a finite number, got {self.guidance_scale}")


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
    if mask.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array (H, W), got shape {mask.shape}")
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
class Prepared:
    """A photo ready for the model (`prepare`): the photo, its face mask M, and the square crop around the
    face at the model's resolution. `FaceEditor.edit_batch` takes these in place of photos."""

    photo: np.ndarray  # uint8 H x W x 3: the input as decoded
    name: str  # the photo's name in messages ("<array>" for an array)
    notes: list[str]  # decoding and cropping notes
    mask: np.ndarray  # bool H x W: M (kept inside the crop when the face is wider than the photo's short side)
    source: str  # where M came from: "bisenet", the mask's path, or "array"
    x0: int
    y0: int
    side: int  # the square crop (x0, y0, side) at the photo's resolution
    image: np.ndarray  # uint8 R x R x 3: the crop at the model's resolution
    crop_mask: np.ndarray  # bool R x R: M of the crop at the model's resolution
    beta: float  # the face ratio mean(crop_mask)

    @property
    def region(self) -> tuple[int, int, int, int]:
        return self.x0, self.y0, self.x0 + self.side, self.y0 + self.side

    @property
    def crop(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y0 + self.side), slice(self.x0, self.x0 + self.side)


def prepare(
    photo: np.ndarray,
    m: np.ndarray,
    resolution: int,
    padding: float,
    *,
    name: str = "<array>",
    notes: list[str] | None = None,
    source: str = "array",
) -> Prepared:
    """Crop the square around the face M of `photo` (padding x the face's size per side) and bring crop and
    M to the model's `resolution`. EditError when no face is left at that resolution."""
    notes = list(notes or [])
    if not m.any():
        raise EditError(f"no face found in {name}: the face mask is empty")
    x0, y0, side = face_crop(m, padding)
    crop = (slice(y0, y0 + side), slice(x0, x0 + side))
    if m.sum() > m[crop].sum():
        notes.append(
            f"the face mask is wider than the photo's short side; only the {side} px square at ({x0}, {y0}) is edited"
        )
        inside = np.zeros_like(m)
        inside[crop] = m[crop]
        m = inside
    mask_r = resize_binary(m[crop], resolution)
    if not mask_r.any():
        raise EditError(
            f"no face found in {name}: the face mask vanishes at the model's resolution "
            f"({resolution} px for a {side} px crop)"
        )
    image_r = resize_rgb(Image.fromarray(photo[crop]), resolution)
    return Prepared(photo, name, notes, m, source, x0, y0, side, image_r, mask_r, float(mask_r.mean()))


def paste_back(
    job: Prepared, generated: np.ndarray, sigma: float, resolution: int, blend: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(the edited photo, M_soft at the photo's size): the decoded crop resized back and blended into the
    photo with M_soft, sigma given at the model's `resolution` (or pasted as it is without `blend`)."""
    photo, m, crop, side = job.photo, job.mask, job.crop, job.side
    decoded = resize_rgb(Image.fromarray(generated), side)
    soft = np.zeros(m.shape, np.float32)
    soft[crop] = soft_mask(m[crop], sigma * side / resolution)
    out = photo.copy()
    out[crop] = pixel_blend(photo[crop], decoded, soft[crop]) if blend else decoded
    return out, soft


def provenance(job: Prepared, prompt: str, cut: str, options: EditOptions, editor: dict, batch: int) -> dict:
    """What the edited PNG says about itself: the prompt and options, where the face mask came from, the
    edited region, and the editor's model, artifact, conditions and runtime (`FaceEditor.describe`)."""
    return {
        "prompt": prompt,
        "negative_prompt": options.negative_prompt,
        "prompt_cut": cut,
        "seed": options.seed,
        "steps": options.steps,
        "guidance_scale": options.guidance_scale,
        "strength": options.strength,
        "blend": options.blend,
        "watermark": options.watermark,
        "mask": job.source,
        "beta": job.beta,
        "region": list(job.region),
        "source": job.name,
        "facepaint": facepaint.__version__,
        **{k: v for k, v in editor.items() if k != "runtime"},
        "runtime": {**editor["runtime"], "batch": batch},
    }


@dataclass
class EditResult:
    image: np.ndarray  # uint8 H x W x 3: the edited photo, at the input's (EXIF-oriented) size
    original: np.ndarray  # uint8 H x W x 3: the input as decoded
    mask: np.ndarray  # bool H x W: M, the face mask that was edited
    soft: np.ndarray  # float32 H x W: M_soft, exactly 0 outside `region`
    region: tuple[int, int, int, int]  # the square crop (x0, y0, x1, y1) that went through the model
    generated: np.ndarray  # uint8 R x R x 3: I_result, the decoded crop at the model's resolution
    provenance: dict
    notes: list[str] = field(default_factory=list)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the edited photo as a PNG carrying its provenance (atomically)."""
        return save_png(self.image, path, self.provenance)


def save_png(image: np.ndarray, path: str | os.PathLike, provenance: dict) -> Path:
    info = PngInfo()
    info.add_text(PROVENANCE_KEY, json.dumps(provenance))
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG", pnginfo=info)
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
    ):
        c = artifact.conditions
        if (inpainter.resolution, inpainter.adapter_scale) != (c.resolution, c.adapter_scale):
            raise ValueError(
                f"the inpainter runs at {inpainter.resolution} px with adapter_scale "
                f"{inpainter.adapter_scale}, the artifact was trained at {c.resolution} px with "
                f"{c.adapter_scale}: build it with FaceEditor.from_artifact"
            )
        sigma = c.sigma if sigma is None else sigma
        if not padding >= 0 or not sigma >= 0:
            raise ValueError(f"padding and sigma must be >= 0, got padding={padding}, sigma={sigma}")
        self.inpainter, self.artifact, self.conditions = inpainter, artifact, c
        self.padding, self.sigma, self.bisenet_weights, self.watermark_key = (
            padding,
            sigma,
            bisenet_weights,
            watermark_key,
        )
        self._parser = None

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
        CPU). `options`: FaceEditor's keyword arguments (padding, sigma, bisenet_weights, watermark_key)."""
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
            "scheduler": ip.scheduler,
            "runtime": ip.runtime,
        }

    # -------------------------------------------------------------------------------- face mask
    def face_parser(self) -> BiSeNetParser:
        """The BiSeNet face parser, loaded on first use; missing weights say how to pass a mask instead."""
        if self._parser is None:
            try:
                self._parser = BiSeNetParser(self.bisenet_weights, str(self.inpainter.device))
            except ModelLoadError as e:
                raise ModelLoadError(f"{e} {MASK_HINT}") from e
        return self._parser

    def parse_face(self, photo: np.ndarray) -> np.ndarray:
        """M for a uint8 RGB photo of any size: BiSeNet at 512 x 512, the union of the artifact's face parts,
        resized back."""
        h, w = photo.shape[:2]
        small = np.array(Image.fromarray(photo).resize((BISENET_SIZE, BISENET_SIZE), Image.Resampling.BILINEAR))
        labels = self.face_parser().labels(small[None])[0]
        return resize_binary(parts_union_from_labels(labels, self.conditions.parts), (w, h))

    def prepare(self, image, mask=None) -> Prepared:
        """Read the photo, find its face mask M (BiSeNet when `mask` is None, else a mask image path or an
        array of the photo's aspect ratio) and crop it (`prepare`). Raises ImageError, EditError or
        ValueError for a photo that cannot be edited, before any generation."""
        photo, name, notes = read_photo(image)
        h, w = photo.shape[:2]
        if mask is None:
            m, source = self.parse_face(photo), "bisenet"
        elif isinstance(mask, (str, os.PathLike)):
            m, source = load_mask(mask, (w, h)), str(mask)
        else:
            m, source = fit_mask(mask, (w, h)), "array"
        if not m.any():
            how = "the face parser found no face parts" if source == "bisenet" else f"the mask ({source}) is empty"
            raise EditError(f"no face found in {name}: {how}; pass a mask with the face in white")
        return prepare(photo, m, self.conditions.resolution, self.padding, name=name, notes=notes, source=source)

    # ------------------------------------------------------------------------------------- edit
    def edit(self, image, prompt: str, *, mask=None, **options) -> EditResult:
        """Edit the face in `image` (a path, bytes, a PIL image or a uint8 H x W x 3 array) to match `prompt`.
        `mask`: see `prepare`. `options`: fields of `EditOptions` (steps, guidance_scale, strength,
        negative_prompt, seed, blend, watermark), its defaults otherwise. `edit_batch` of this one photo."""
        return self.edit_batch([image], prompt, masks=[mask], **options)[0]

    def edit_batch(
        self, images, prompts, *, masks=None, seeds=None, negative_prompts=None, **options
    ) -> list[EditResult]:
        """`edit` for N photos with one pipeline call (the UNet runs each step once for all N faces).

        `prompts`, and optionally `seeds` and `negative_prompts`: one per photo, or a single value for all
        (default: the options' seed and negative prompt). `masks`: None (BiSeNet for every photo) or one
        per photo (None, a path or an array each). An item of `images` may be a `Prepared` photo (its mask
        must then be None). A photo that cannot be edited raises before anything is generated, its message
        starting with "image i of N" (i counted from 0) when N > 1. Photo i's noise comes from its own
        generator seeded with seeds[i], so each result is `edit` of that photo with that seed, up to float
        rounding (on the tiny test model at most a few 1/255 steps)."""
        opts = dataclasses.replace(DEFAULTS, **options)
        n = len(images)
        if n == 0:
            raise ValueError("edit_batch needs at least one image")
        prompts = per_image(prompts, n, "prompts", str)
        negatives = per_image(
            opts.negative_prompt if negative_prompts is None else negative_prompts, n, "negative_prompts", str
        )
        seeds = [int(s) for s in per_image(opts.seed if seeds is None else seeds, n, "seeds", (int, np.integer))]
        masks = [None] * n if masks is None else per_image(masks, n, "masks", type(None))
        # 1. Find and crop every face first: a bad photo fails before any generation
        jobs = []
        for i, (image, mask) in enumerate(zip(images, masks)):
            if isinstance(image, Prepared):
                if mask is not None:
                    raise ValueError(f"image {i} of {n} is already prepared (its mask is chosen); give mask None")
                jobs.append(image)
                continue
            try:
                jobs.append(self.prepare(image, mask))
            except (ImageError, EditError, ValueError) as e:
                if n == 1:
                    raise
                raise type(e)(f"image {i} of {n}: {e}") from e
        # 2. Generate all crops in one batch
        generated, cuts = self.inpainter.generate(
            [j.image for j in jobs],
            [j.crop_mask for j in jobs],
            [j.beta for j in jobs],
            prompts,
            negatives,
            steps=opts.steps,
            guidance_scale=opts.guidance_scale,
            strength=opts.strength,
            seeds=seeds,
        )
        # 3. Blend each into its photo, mark it, describe it
        described, results = self.describe(), []
        for job, gen, prompt, negative, cut, seed in zip(jobs, generated, prompts, negatives, cuts, seeds):
            out, soft = paste_back(job, gen, self.sigma, self.conditions.resolution, opts.blend)
            if opts.watermark:
                out = wm.embed(out, job.mask & (soft > 0), self.watermark_key)
            job_opts = dataclasses.replace(opts, seed=seed, negative_prompt=negative)
            results.append(
                EditResult(
                    out,
                    job.photo,
                    job.mask,
                    soft,
                    job.region,
                    gen,
                    provenance(job, prompt, cut, job_opts, described, n),
                    list(job.notes),
                )
            )
        return results
