"""Editing a photo (SPEC section 4): face mask, inpainting with the adapter, pixel-level blending.

    photo (any size) -> face mask M (BiSeNet, or the user's) -> square crop around the face
      -> crop and M at the model's resolution -> SD1.5 inpainting, text conditioned by the adapter
      -> decoded crop resized back -> I_blend = I_result * M_soft + I * (1 - M_soft) at full resolution

Why it is built this way:
- The face is cropped with padding and edited at the model's resolution because the model was
  trained on CelebA-HQ faces that fill a 512 px frame; the rest of a large photo never goes through
  the VAE.
- M_soft is computed at the photo's resolution inside the crop only (its Gaussian std is given at the
  model's resolution and scaled by crop side / resolution), so it is exactly 0 outside the crop. The
  blend copies the input's bytes wherever M_soft == 0 (`np.where`, not arithmetic), so those pixels
  are bit-identical to the input by construction, with the watermark on or off (the watermark only
  touches pixels where M = 1). `blend=False` is the ablation: the decoded crop is pasted as it is.
- The prompt and the empty negative prompt are both conditioned by `adapter.condition` with the
  crop's face ratio beta, exactly as in training; the pipeline receives the embeddings.
- The output PNG carries its provenance (prompt, seed, model, artifact version, edited region) in a
  text chunk named "facepaint"; `read_provenance` reads it back.
"""
from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo

import facepaint
from facepaint import watermark as wm
from facepaint.adapter import FaceAdapter, condition
from facepaint.artifact import apply_artifact, load_artifact
from facepaint.celebamask import FACE_PARTS
from facepaint.images import ImageError, load_rgb, resize_rgb
from facepaint.io import atomic_path
from facepaint.masks import BISENET_SIZE, BiSeNetParser, parts_union_from_labels, resize_binary, soft_mask
from facepaint.models import Components, ModelLoadError, load_components, pick_device, pick_dtype

SCHEDULERS = ("ddim", "dpm")
PROVENANCE_KEY = "facepaint"
MASK_HINT = ("For `facepaint edit`, give the weights with --bisenet-weights PATH, or skip the face parser by "
             "passing a face mask with --mask PATH (white = face; `mask=` in the Python API).")


def make_scheduler(name: str, config):
    """The sampling scheduler `name` (ddim | dpm) from a base model's scheduler config.

    SD's latents span about +-4: clipping the predicted x0 to [-1, 1] (DDPM's default when a config
    lacks the key) would wreck them, so clip_sample is always off."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    if name not in SCHEDULERS:
        raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {name!r}")
    cls = DDIMScheduler if name == "ddim" else DPMSolverMultistepScheduler
    return cls.from_config({**config, "clip_sample": False})


class EditError(Exception):
    """A photo that cannot be edited (no face, a mask that does not fit it); the message names the photo."""


# --------------------------------------------------------------------------------- pixels and masks

def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A mask (bool, or float in [0, 1]) resized bilinearly to size = (width, height), binarized at 0.5."""
    m = np.asarray(mask, dtype=np.float32)
    if m.shape != (size[1], size[0]):
        m = np.asarray(Image.fromarray(m).resize(size, Image.Resampling.BILINEAR))
    return m >= 0.5


def fit_mask(mask: np.ndarray, size: tuple[int, int], what: str = "mask") -> np.ndarray:
    """A mask array (bool, or float in [0, 1]) of any size with the photo's aspect ratio, as M for a photo
    of size = (width, height)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array (H, W), got shape {mask.shape}")
    (mh, mw), (w, h) = mask.shape, size
    if abs(mw * h - mh * w) > 0.01 * max(mw * h, mh * w):
        raise EditError(f"{what} is {mw}x{mh} but the photo is {w}x{h}: the mask must have the photo's aspect ratio")
    return resize_mask(mask, size)


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


def check_options(steps: int, strength: float) -> None:
    """ValueError unless at least one denoising step runs (`strength` of `steps` are run)."""
    if not 0 < strength <= 1:
        raise ValueError(f"strength must be in (0, 1], got {strength}")
    if steps < 1 or steps * strength < 1:
        raise ValueError(f"steps x strength must be at least 1 (one denoising step), got {steps} x {strength}")


# ------------------------------------------------------------------------------------------ prompts

def encode_prompt(text_encoder, tokenizer, prompt: str) -> tuple[torch.Tensor, str]:
    """CLIP embeddings E (1, 77, d) of `prompt`, and the text cut off beyond the 77-token window ('' if none)."""
    n = tokenizer.model_max_length
    ids = tokenizer(prompt, padding="max_length", max_length=n, truncation=True, return_tensors="pt").input_ids
    words = tokenizer(prompt, add_special_tokens=False, truncation=False, verbose=False).input_ids
    cut = tokenizer.decode(words[n - 2:]) if len(words) > n - 2 else ""
    return text_encoder(ids.to(text_encoder.device))[0], cut


# ------------------------------------------------------------------------------------------- result

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
    """Text-driven face editing with a trained artifact (or any components, adapter and scale).

    `pipeline_class`: a StableDiffusionInpaintPipeline subclass to sample with (the evaluation's
    Blended Latent Diffusion baseline); default the plain one."""

    def __init__(self, components: Components, adapter: FaceAdapter | None, scale: float, resolution: int, *,
                 device="auto", scheduler: str = "ddim", bisenet_weights=None, parts=FACE_PARTS,
                 sigma: float = 4.0, padding: float = 0.25, watermark_key=wm.DEFAULT_KEY,
                 model_name: str | None = None, artifact_version: str | None = None, artifact_path=None,
                 pipeline_class=None):
        from diffusers import StableDiffusionInpaintPipeline

        if resolution % 8:
            raise ValueError(f"resolution must be a multiple of 8 (the VAE's factor), got {resolution}")
        if padding < 0 or sigma < 0:
            raise ValueError(f"padding and sigma must be >= 0, got padding={padding}, sigma={sigma}")
        self.device = pick_device(device)
        self.adapter = None if adapter is None else adapter.to(self.device).eval()
        self.scale, self.resolution = scale, resolution
        self.scheduler, self.sigma, self.padding, self.parts = scheduler, sigma, padding, tuple(parts)
        self.bisenet_weights, self.watermark_key = bisenet_weights, watermark_key
        self.model_name = model_name or components.name
        self.artifact_version, self.artifact_path = artifact_version, artifact_path and str(artifact_path)
        sched = make_scheduler(scheduler, components.scheduler.config)
        self.pipe = (pipeline_class or StableDiffusionInpaintPipeline)(
            vae=components.vae, text_encoder=components.text_encoder, tokenizer=components.tokenizer,
            unet=components.unet, scheduler=sched,
            safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        ).to(self.device)
        self.pipe.set_progress_bar_config(disable=True)
        self._parser = None

    @classmethod
    def from_artifact(cls, path: str | os.PathLike, device="auto", dtype: str = "fp16", **options) -> "FaceEditor":
        """Load a trained artifact directory and its base model (half precision on a GPU, fp32 on the CPU)."""
        artifact = load_artifact(path)
        masks = artifact.info.get("masks", {})  # the soft mask and face parts the model was trained with
        options.setdefault("sigma", masks.get("sigma", 4.0))
        options.setdefault("parts", tuple(masks.get("parts", FACE_PARTS)))
        dev = pick_device(device)
        comps = load_components(artifact.model, torch_dtype=pick_dtype(dtype, dev))
        adapter = apply_artifact(comps, artifact)
        return cls(comps, adapter, artifact.scale, artifact.resolution, device=dev, model_name=artifact.model.name,
                   artifact_version=artifact.version, artifact_path=path, **options)

    # -------------------------------------------------------------------------------- face mask
    def face_parser(self) -> BiSeNetParser:
        """The BiSeNet face parser, loaded on first use; missing weights say how to pass a mask instead."""
        if self._parser is None:
            try:
                self._parser = BiSeNetParser(self.bisenet_weights, str(self.device))
            except ModelLoadError as e:
                raise ModelLoadError(f"{e} {MASK_HINT}") from e
        return self._parser

    def parse_face(self, photo: np.ndarray) -> np.ndarray:
        """M for a uint8 RGB photo of any size: BiSeNet at 512 x 512, the union of the face parts, resized back."""
        h, w = photo.shape[:2]
        small = np.array(Image.fromarray(photo).resize((BISENET_SIZE, BISENET_SIZE), Image.Resampling.BILINEAR))
        labels = self.face_parser().labels(small[None])[0]
        return resize_mask(parts_union_from_labels(labels, self.parts), (w, h))

    def _face_mask(self, photo: np.ndarray, mask, name: str) -> tuple[np.ndarray, str]:
        """(M at the photo's size, where it came from); EditError when it holds no face."""
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
        return m, source

    # ------------------------------------------------------------------------------------- edit
    def edit(self, image, prompt: str, *, mask=None, negative_prompt: str = "", steps: int = 50,
             guidance_scale: float = 7.5, seed: int = 0, strength: float = 1.0, blend: bool = True,
             watermark: bool = False) -> EditResult:
        """Edit the face in `image` (a path, bytes, a PIL image or a uint8 H x W x 3 array) to match `prompt`.

        `mask`: None (BiSeNet), a mask image path, or an array (bool, or float in [0, 1]) of any size with
        the photo's aspect ratio. Files are decoded by `images.load_rgb` (EXIF rotation, any colour mode,
        decompression bombs refused); alpha is composited on white.
        """
        check_options(steps, strength)
        photo, name, notes = _read_photo(image)
        h, w = photo.shape[:2]
        m, source = self._face_mask(photo, mask, name)
        x0, y0, side = face_crop(m, self.padding)
        crop = (slice(y0, y0 + side), slice(x0, x0 + side))
        if m.sum() > m[crop].sum():
            notes.append(f"the face mask is wider than the photo's short side; only the {side} px square "
                         f"at ({x0}, {y0}) is edited")
            inside = np.zeros_like(m)
            inside[crop] = m[crop]
            m = inside
        mask_r = resize_binary(m[crop], self.resolution)
        if not mask_r.any():
            raise EditError(f"no face found in {name}: the face mask vanishes at the model's resolution "
                            f"({self.resolution} px for a {side} px crop)")
        beta = float(mask_r.mean())
        generated, cut = self.generate(resize_rgb(Image.fromarray(photo[crop]), self.resolution), mask_r, beta,
                                        prompt, negative_prompt, steps, guidance_scale, strength, seed)
        decoded = resize_rgb(Image.fromarray(generated), side)

        soft = np.zeros((h, w), np.float32)
        soft[crop] = soft_mask(m[crop], self.sigma * side / self.resolution)
        out = photo.copy()
        out[crop] = pixel_blend(photo[crop], decoded, soft[crop]) if blend else decoded
        if watermark:
            out = wm.embed(out, m & (soft > 0), self.watermark_key)
        provenance = {
            "prompt": prompt, "negative_prompt": negative_prompt, "prompt_cut": cut, "seed": seed, "steps": steps,
            "guidance_scale": guidance_scale, "strength": strength, "scheduler": self.scheduler, "blend": blend,
            "watermark": watermark, "sigma": self.sigma, "padding": self.padding, "mask": source,
            "beta": beta, "model": self.model_name, "artifact_version": self.artifact_version,
            "artifact_path": self.artifact_path, "adapter_scale": self.scale, "resolution": self.resolution,
            "region": [x0, y0, x0 + side, y0 + side], "source": name, "facepaint": facepaint.__version__,
        }
        return EditResult(out, photo, m, soft, (x0, y0, x0 + side, y0 + side), generated, provenance, notes)

    @torch.inference_mode()
    def generate(self, image: np.ndarray, mask: np.ndarray, beta: float, prompt: str, negative_prompt: str = "",
                 steps: int = 50, guidance_scale: float = 7.5, strength: float = 1.0, seed: int = 0):
        """I_result for a square photo already at the model's resolution (uint8 R x R x 3, bool R x R
        mask): the decoded inpainting, not blended, and the prompt text cut at 77 tokens."""
        embeds, cuts = [], []
        for what, text in (("prompt", prompt), ("negative prompt", negative_prompt)):
            e, cut = encode_prompt(self.pipe.text_encoder, self.pipe.tokenizer, text)
            if cut:
                warnings.warn(f"{what} {text[:40]!r}... is longer than CLIP's 77 tokens; this part was cut "
                              f"and has no effect: {cut!r}", stacklevel=3)
            embeds.append(condition(e, beta, self.adapter, self.scale))
            cuts.append(cut)
        out = self.pipe(
            prompt_embeds=embeds[0], negative_prompt_embeds=embeds[1], image=Image.fromarray(image),
            mask_image=Image.fromarray(mask.astype(np.uint8) * 255), height=self.resolution, width=self.resolution,
            num_inference_steps=steps, guidance_scale=guidance_scale, strength=strength,
            generator=torch.Generator(self.device).manual_seed(seed), output_type="np",
        ).images[0]
        return np.clip(np.rint(out * 255), 0, 255).astype(np.uint8), cuts[0]


def _read_photo(image) -> tuple[np.ndarray, str, list[str]]:
    """(uint8 H x W x 3 RGB, a name for messages, decoding notes) from a path, bytes, PIL image or array."""
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
