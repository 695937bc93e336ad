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
from facepaint import speed
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

def encode_prompts(text_encoder, tokenizer, prompts) -> tuple[torch.Tensor, list[str]]:
    """CLIP embeddings E (N, 77, d) of N prompts, in one tokenizer call and one text-encoder call, and for
    each prompt the text cut off beyond the 77-token window ('' if none). A prompt repeated in the list
    is encoded once (a prompt broadcast to a batch costs one text-encoder row, and its embedding is the
    same whatever else is in the batch)."""
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not prompts:
        raise ValueError("encode_prompts needs at least one prompt")
    unique = list(dict.fromkeys(prompts))
    n = tokenizer.model_max_length
    ids = tokenizer(unique, padding="max_length", max_length=n, truncation=True, return_tensors="pt").input_ids
    words = tokenizer(unique, add_special_tokens=False, truncation=False, verbose=False).input_ids
    cut = {p: tokenizer.decode(w[n - 2:]) if len(w) > n - 2 else "" for p, w in zip(unique, words)}
    embeddings = text_encoder(ids.to(text_encoder.device))[0]
    if len(unique) < len(prompts):
        embeddings = embeddings[torch.tensor([unique.index(p) for p in prompts], device=embeddings.device)]
    return embeddings, [cut[p] for p in prompts]


def encode_prompt(text_encoder, tokenizer, prompt: str) -> tuple[torch.Tensor, str]:
    """CLIP embeddings E (1, 77, d) of `prompt`, and the text cut off beyond the 77-token window ('' if none)."""
    embeddings, cuts = encode_prompts(text_encoder, tokenizer, [prompt])
    return embeddings, cuts[0]


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

DTYPE_NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


@dataclass(eq=False)
class Prepared:
    """A photo ready for the model (`FaceEditor.prepare`): the photo, its face mask M, and the square
    crop around the face at the model's resolution. `edit_batch` takes these in place of photos."""

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


def _per_image(value, n: int, what: str, kind) -> list:
    """`value` as a list of n: one `kind` (str, int) broadcast to all, or a sequence of exactly n."""
    if isinstance(value, kind):
        return [value] * n
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise TypeError(f"{what} must be one value for all images or a list of {n}, got {type(value).__name__}")
    values = list(value)
    if len(values) != n:
        raise ValueError(f"{what}: expected one for all images or one per image ({n}), got {len(values)}")
    return values


class FaceEditor:
    """Text-driven face editing with a trained artifact (or any components, adapter and scale).

    `pipeline_class`: a StableDiffusionInpaintPipeline subclass to sample with (the evaluation's
    Blended Latent Diffusion baseline); default the plain one.

    Speed options (facepaint.speed; bench/edit.py measures each on and off). An image is the same
    with any of them up to float rounding (fp16/bf16 excepted: half precision changes it visibly).
    - dtype: None keeps the components' dtype (`from_artifact` loads them in its `dtype`: fp16 on a GPU);
      "fp16" | "bf16" | "fp32" casts the UNet, VAE and text encoder (always fp32 on the CPU).
    - attention: "sdpa" (torch's scaled_dot_product_attention: flash / memory-efficient kernels on a
      GPU; diffusers' default) | "classic" (explicit softmax(QK^T)V), for the UNet and the VAE.
    - channels_last: NHWC UNet and VAE weights (False: NCHW); None = on with CUDA (cuDNN's tensor-core
      convolutions want it), off on the CPU (no consistent gain in bench/edit.py's CPU runs).
    - compile: torch.compile the UNet with static shapes: False / "off", True / "default", or a mode of
      speed.COMPILE_MODES. The first edit at each batch size compiles (tens of seconds on a GPU).
    dtype, attention and channels_last change the given components in place (the pipeline runs their
    modules); the compiled UNet is the pipeline's own wrapper, `components.unet` stays eager.
    The settings are recorded in every result's provenance under "runtime".
    """

    def __init__(self, components: Components, adapter: FaceAdapter | None, scale: float, resolution: int, *,
                 device="auto", scheduler: str = "ddim", bisenet_weights=None, parts=FACE_PARTS,
                 sigma: float = 4.0, padding: float = 0.25, watermark_key=wm.DEFAULT_KEY,
                 model_name: str | None = None, artifact_version: str | None = None, artifact_path=None,
                 pipeline_class=None, dtype: str | None = None, attention: str = "sdpa",
                 channels_last: bool | None = None, compile: bool | str = False):
        from diffusers import StableDiffusionInpaintPipeline

        if resolution % 8:
            raise ValueError(f"resolution must be a multiple of 8 (the VAE's factor), got {resolution}")
        if padding < 0 or sigma < 0:
            raise ValueError(f"padding and sigma must be >= 0, got padding={padding}, sigma={sigma}")
        speed.check_attention(attention)
        if channels_last is not None and not isinstance(channels_last, bool):
            raise ValueError(f"channels_last must be True, False or None (on with CUDA), got {channels_last!r}")
        compile_mode = speed.compile_mode(compile)
        self.device = pick_device(device)
        torch_dtype = None if dtype is None else pick_dtype(dtype, self.device)
        channels_last = self.device.type == "cuda" if channels_last is None else channels_last

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
        pipe = self.pipe
        for module in (pipe.unet, pipe.vae, pipe.text_encoder):
            if torch_dtype is not None and module.dtype != torch_dtype:
                module.to(torch_dtype)
        for module in (pipe.unet, pipe.vae):
            speed.set_attention(module, attention)
            if channels_last:
                speed.to_channels_last(module)
            else:  # NCHW, also for components an earlier editor made channels_last
                module.to(memory_format=torch.contiguous_format)
        self.runtime = {"device": str(self.device), "dtype": DTYPE_NAMES.get(pipe.unet.dtype, str(pipe.unet.dtype)),
                        "attention": attention, "channels_last": channels_last, "compile": compile_mode}
        # static shapes: a batch of 1 and a batch of 8 each get their own graph
        pipe.unet = speed.compiled(pipe.unet, compile_mode, dynamic=False)
        self._parser = None

    @classmethod
    def from_artifact(cls, path: str | os.PathLike, device="auto", dtype: str = "fp16", **options) -> FaceEditor:
        """Load a trained artifact directory and its base model (half precision on a GPU, fp32 on the CPU).

        `options`: FaceEditor's keyword arguments (scheduler, attention, channels_last, compile, ...)."""
        artifact = load_artifact(path)
        masks = artifact.info.get("masks", {})  # the soft mask and face parts the model was trained with
        options.setdefault("sigma", masks.get("sigma", 4.0))
        options.setdefault("parts", tuple(masks.get("parts", FACE_PARTS)))
        dev = pick_device(device)
        comps = load_components(artifact.model, torch_dtype=pick_dtype(dtype, dev))
        adapter = apply_artifact(comps, artifact)
        return cls(comps, adapter, artifact.scale, artifact.resolution, device=dev, model_name=artifact.model.name,
                   artifact_version=artifact.version, artifact_path=path, dtype=dtype, **options)

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
    def prepare(self, image, mask=None) -> Prepared:
        """The first step of an edit: read the photo, find its face mask M, crop the square around the face
        and bring crop and M to the model's resolution. Raises (ImageError, EditError, ValueError) for a
        photo that cannot be edited, before any generation; see `edit` for `image` and `mask`."""
        photo, name, notes = _read_photo(image)
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
        image_r = resize_rgb(Image.fromarray(photo[crop]), self.resolution)
        return Prepared(photo, name, notes, m, source, x0, y0, side, image_r, mask_r, float(mask_r.mean()))

    def edit(self, image, prompt: str, *, mask=None, negative_prompt: str = "", steps: int = 50,
             guidance_scale: float = 7.5, seed: int = 0, strength: float = 1.0, blend: bool = True,
             watermark: bool = False) -> EditResult:
        """Edit the face in `image` (a path, bytes, a PIL image or a uint8 H x W x 3 array) to match `prompt`.

        `mask`: None (BiSeNet), a mask image path, or an array (bool, or float in [0, 1]) of any size with
        the photo's aspect ratio. Files are decoded by `images.load_rgb` (EXIF rotation, any colour mode,
        decompression bombs refused); alpha is composited on white. `edit_batch` of this one photo.
        """
        return self.edit_batch([image], prompt, masks=[mask], negative_prompts=negative_prompt, steps=steps,
                               guidance_scale=guidance_scale, seeds=seed, strength=strength, blend=blend,
                               watermark=watermark)[0]

    def edit_batch(self, images, prompts, *, masks=None, negative_prompts="", steps: int = 50,
                   guidance_scale: float = 7.5, seeds=0, strength: float = 1.0, blend: bool = True,
                   watermark: bool = False) -> list[EditResult]:
        """`edit` for N photos with one pipeline call (the UNet runs each step once for all N faces):
        prepare every photo, generate all crops in one batch (`generate_batch`), blend each into its photo.

        `prompts`, `negative_prompts`, `seeds`: one per photo, or a single str / int for all. `masks`:
        None (BiSeNet for every photo) or one per photo (None, a path or an array each). An item of
        `images` may be a `Prepared` photo (from `prepare`; its mask must then be None). A photo that
        cannot be edited raises before anything is generated, its message starting with "image i of N"
        (i counted from 0) when N > 1.

        Photo i's noise comes from its own generator seeded with seeds[i], so each result is `edit` of that
        photo with that seed, up to float rounding: batching changes the summation order inside the
        batched convolutions and matrix products (on the tiny test model at most a few 1/255 steps).
        """
        check_options(steps, strength)
        n = len(images)
        if n == 0:
            raise ValueError("edit_batch needs at least one image")
        prompts = _per_image(prompts, n, "prompts", str)
        negative_prompts = _per_image(negative_prompts, n, "negative_prompts", str)
        seeds = [int(s) for s in _per_image(seeds, n, "seeds", (int, np.integer))]
        masks = [None] * n if masks is None else _per_image(masks, n, "masks", type(None))
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
        generated, cuts = self.generate_batch([j.image for j in jobs], [j.crop_mask for j in jobs],
                                              [j.beta for j in jobs], prompts, negative_prompts, steps,
                                              guidance_scale, strength, seeds)
        settings = {"steps": steps, "guidance_scale": guidance_scale, "strength": strength, "blend": blend,
                    "watermark": watermark, "batch": n}
        return [self._finish(*args, settings)
                for args in zip(jobs, generated, prompts, negative_prompts, cuts, seeds)]

    def _finish(self, job: Prepared, generated: np.ndarray, prompt: str, negative_prompt: str, cut: str, seed: int,
                settings: dict) -> EditResult:
        """The last step of an edit: the decoded crop resized back, blended into the photo with M_soft
        (or pasted as it is without `blend`), the watermark, the provenance."""
        photo, m, crop, side = job.photo, job.mask, job.crop, job.side
        decoded = resize_rgb(Image.fromarray(generated), side)
        soft = np.zeros(m.shape, np.float32)
        soft[crop] = soft_mask(m[crop], self.sigma * side / self.resolution)
        out = photo.copy()
        out[crop] = pixel_blend(photo[crop], decoded, soft[crop]) if settings["blend"] else decoded
        if settings["watermark"]:
            out = wm.embed(out, m & (soft > 0), self.watermark_key)
        provenance = {
            "prompt": prompt, "negative_prompt": negative_prompt, "prompt_cut": cut, "seed": seed,
            "steps": settings["steps"], "guidance_scale": settings["guidance_scale"],
            "strength": settings["strength"], "scheduler": self.scheduler, "blend": settings["blend"],
            "watermark": settings["watermark"], "sigma": self.sigma, "padding": self.padding, "mask": job.source,
            "beta": job.beta, "model": self.model_name, "artifact_version": self.artifact_version,
            "artifact_path": self.artifact_path, "adapter_scale": self.scale, "resolution": self.resolution,
            "region": list(job.region), "source": job.name, "facepaint": facepaint.__version__,
            "runtime": {**self.runtime, "batch": settings["batch"]},
        }
        return EditResult(out, photo, m, soft, job.region, generated, provenance, list(job.notes))

    # ------------------------------------------------------------------------------- generation
    def generate(self, image: np.ndarray, mask: np.ndarray, beta: float, prompt: str, negative_prompt: str = "",
                 steps: int = 50, guidance_scale: float = 7.5, strength: float = 1.0, seed: int = 0):
        """I_result for a square photo already at the model's resolution (uint8 R x R x 3, bool R x R
        mask): the decoded inpainting, not blended, and the prompt text cut at 77 tokens.
        `generate_batch` of this one crop."""
        images, cuts = self.generate_batch([image], [mask], [beta], prompt, negative_prompt, steps, guidance_scale,
                                           strength, seed)
        return images[0], cuts[0]

    @torch.inference_mode()
    def generate_batch(self, images, masks, betas, prompts, negative_prompts="", steps: int = 50,
                       guidance_scale: float = 7.5, strength: float = 1.0, seeds=0):
        """I_result for N square photos already at the model's resolution (uint8 R x R x 3 each, bool R x R
        masks, face ratios beta) in ONE diffusers pipeline call. Returns (the N decoded inpaintings, not
        blended; each prompt's text cut at 77 tokens).

        The prompts and the negative prompts are encoded in one text-encoder call each (`encode_prompts`)
        and both conditioned by the adapter with each crop's own beta, exactly as in training. Crop i's
        noise comes from its own torch.Generator seeded with seeds[i] (`prompts`, `negative_prompts`,
        `seeds`: one per crop, or a single str / int for all), so it does not depend on the other crops.
        One crop is passed to the pipeline as before batching (one image, one generator), which keeps
        single-image pipelines such as the Blended Latent Diffusion baseline working."""
        n = len(images)
        if n == 0:
            raise ValueError("generate_batch needs at least one image")
        if len(masks) != n or len(betas) != n:
            raise ValueError(f"generate_batch: {n} images but {len(masks)} masks and {len(betas)} betas")
        prompts = _per_image(prompts, n, "prompts", str)
        negative_prompts = _per_image(negative_prompts, n, "negative_prompts", str)
        seeds = [int(s) for s in _per_image(seeds, n, "seeds", (int, np.integer))]
        r = self.resolution
        for i, (image, mask) in enumerate(zip(images, masks)):
            if np.shape(image) != (r, r, 3) or np.asarray(image).dtype != np.uint8 or np.shape(mask) != (r, r):
                raise ValueError(f"crop {i}: expected a uint8 ({r}, {r}, 3) image and an ({r}, {r}) mask at the "
                                 f"model's resolution, got {np.asarray(image).dtype} {np.shape(image)} and "
                                 f"{np.shape(mask)}")
        beta = [float(b) for b in betas]
        embeds, cuts = [], []
        for what, texts in (("prompt", prompts), ("negative prompt", negative_prompts)):
            e, cut = encode_prompts(self.pipe.text_encoder, self.pipe.tokenizer, texts)
            for text, c in dict(zip(texts, cut)).items():
                if c:
                    warnings.warn(f"{what} {text[:40]!r}... is longer than CLIP's 77 tokens; this part was cut "
                                  f"and has no effect: {c!r}", stacklevel=4)
            embeds.append(condition(e, beta[0] if n == 1 else beta, self.adapter, self.scale))
            cuts.append(cut)
        pil_images = [Image.fromarray(np.asarray(image)) for image in images]
        pil_masks = [Image.fromarray(np.asarray(mask).astype(np.uint8) * 255) for mask in masks]
        generators = [torch.Generator(self.device).manual_seed(s) for s in seeds]
        one = (lambda items: items[0]) if n == 1 else (lambda items: items)
        out = self.pipe(
            prompt_embeds=embeds[0], negative_prompt_embeds=embeds[1], image=one(pil_images),
            mask_image=one(pil_masks), height=r, width=r, num_inference_steps=steps, guidance_scale=guidance_scale,
            strength=strength, generator=one(generators), output_type="np",
        ).images
        return list(np.clip(np.rint(out * 255), 0, 255).astype(np.uint8)), cuts[0]


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
