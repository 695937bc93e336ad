"""The editing methods the evaluation compares (SPEC sections 4-6), each behind one interface:
`Method.edit(EditInput) -> uint8 (R, R, 3)` on a square photo at the model's resolution R.

    ours                          the artifact's base model + k/v + adapter, decoded, pixel-blended with M_soft
    ours_no_blend                 the same generation (same seed), the decoded image as it is (the blending ablation)
    sd15_inpaint                  the base model, no artifact, plain CLIP embeddings, decoded (diffusers' pipeline)
    blended_latent_diffusion      Blended Latent Diffusion as published: the 4-channel SD1.5 text-to-image model,
                                  the latents outside the mask replaced after every step (diffusers' inpainting
                                  pipeline does exactly this for a 4-channel UNet), decoded
    blended_latent_diffusion_9ch  an extra row: the same latent replacement (`LatentBlend`) on the 9-channel
                                  inpainting model that ours starts from
    brushnet                      BrushNet on the 4-channel SD1.5 (facepaint.brushnet), decoded as it is
    diptych_prompting             Diptych Prompting on FLUX.1-dev + an inpainting ControlNet (facepaint.diptych)
    paint_by_example              diffusers' PaintByExamplePipeline, conditioned on an exemplar face instead of text

Where each baseline's weights come from is params.yaml `evaluate.baselines` (`Baselines`): the paper
profile names the public checkpoints; the demo names tiny random models of the same architectures that the
demo stage saves in the same layouts, so the demo runs every method through the real loading code. A
method whose weights cannot be loaded is unavailable, with the files to supply; it never gets a number.

The SD1.5 inpainting methods are one class, `Inpaint`: a `facepaint.generate.Inpainter` (the generation
of `facepaint edit`, so the prompt and the negative prompt go through `adapter.condition` exactly as
there) with or without `pixel_blend`. Ours samples with the training's latent mask
(`generate.face_inpaint_pipeline`); sd15_inpaint with diffusers' own pipeline, as its public code
does. The base model is loaded once; "ours" loads the artifact's k/v into its UNet in place, so when a
base method is built beside it the base methods get a deep copy of the UNet (one more UNet in memory:
1.7 GB in fp16 for SD1.5, 3.4 GB in fp32). VAE and text encoder are shared.

Blended Latent Diffusion (Avrahami et al. 2023): after every denoising step the latents outside the
latent mask are replaced by the photo's latents noised to the next step's level with the same noise the
sampler started from (clean after the last step); the whole latent is then decoded: no pixel blend, the
background passes through the VAE. On the 9-channel variant the latent mask is the SPEC's M_latent
(`masks.latent_mask`), the photo's latents the VAE posterior mean.

`measure` times one edit: CUDA events and peak memory on a GPU, CPU time on the CPU. Warm up first
(one untimed edit), as the evaluate stage does.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, replace
from functools import cache, partial

import numpy as np
import torch
from PIL import Image

from facepaint import FacepaintError, check_fields
from facepaint.artifact import apply_artifact, load_artifact
from facepaint.edit import check_options, pixel_blend
from facepaint.generate import SCHEDULERS, Inpainter, make_scheduler
from facepaint.masks import latent_mask
from facepaint.models import (
    ModelConfig,
    ModelLoadError,
    hub_unreachable,
    load_components,
    load_t2i_components,
    pick_device,
    pick_dtype,
)
from facepaint.speed import Speed

LABELS = {
    "ours": "ours",
    "ours_no_blend": "ours (no blending)",
    "sd15_inpaint": "SD1.5 inpaint",
    "blended_latent_diffusion": "Blended Latent Diffusion",
    "blended_latent_diffusion_9ch": "Blended Latent Diffusion (9-channel inpainting UNet)",
    "paint_by_example": "Paint-by-Example",
    "brushnet": "BrushNet",
    "diptych_prompting": "Diptych Prompting",
}


class MethodUnavailable(FacepaintError):
    """A method that cannot be built here (weights or integration missing); the message says how to supply it."""


@dataclass(eq=False)
class EditInput:
    image: np.ndarray  # uint8 (R, R, 3): the test photo at the model's resolution
    mask: np.ndarray  # bool (R, R): M
    soft: np.ndarray  # float32 (R, R): M_soft in [0, 1], the blending alpha
    beta: float  # face ratio mean(M)
    prompt: str
    seed: int
    exemplar: np.ndarray | None = None  # uint8 (H, W, 3): Paint-by-Example's reference face (another photo's)


@dataclass
class InferenceConfig:
    """How every method samples (the evaluate stage fills it from params `evaluate`)."""

    steps: int
    guidance_scale: float
    scheduler: str
    strength: float
    negative_prompt: str


def _check_input(x: EditInput, resolution: int) -> None:
    r = resolution
    if x.image.shape != (r, r, 3) or x.image.dtype != np.uint8 or x.mask.shape != (r, r) or x.soft.shape != (r, r):
        raise ValueError(
            f"expected a uint8 ({r}, {r}, 3) photo with ({r}, {r}) masks, got {x.image.dtype} "
            f"{x.image.shape}, mask {x.mask.shape}, soft {x.soft.shape}"
        )


class Method:
    """One editing method; `edit` returns the edited photo, uint8 (R, R, 3)."""

    name: str
    label: str

    def edit(self, x: EditInput) -> np.ndarray:
        raise NotImplementedError

    def modules(self) -> list[torch.nn.Module]:
        """The networks an edit runs (for the memory the method would need alone on the GPU)."""
        return []


class Inpaint(Method):
    """An Inpainter's generation on the square photo, pixel-blended with M_soft when `blend`: the same
    `generate` and `pixel_blend` that `facepaint edit` runs on its crop."""

    def __init__(self, name: str, inpainter: Inpainter, cfg: InferenceConfig, blend: bool):
        self.name, self.label, self.inpainter, self.cfg, self.blend = name, LABELS[name], inpainter, cfg, blend

    def edit(self, x: EditInput) -> np.ndarray:
        _check_input(x, self.inpainter.resolution)
        c = self.cfg
        generated, _ = self.inpainter.generate(
            [x.image],
            [x.mask],
            [x.beta],
            x.prompt,
            c.negative_prompt,
            steps=c.steps,
            guidance_scale=c.guidance_scale,
            strength=c.strength,
            seeds=x.seed,
        )
        return pixel_blend(x.image, generated[0], x.soft) if self.blend else generated[0]

    def modules(self):
        return self.inpainter.modules()


# --------------------------------------------------------------------------- Blended Latent Diffusion


@dataclass
class LatentBlend:
    """Blended Latent Diffusion's step as a diffusers `callback_on_step_end`: after denoising step i the
    latents where `keep` (outside the latent mask) become `init` noised to step i+1's level, or `init`
    itself after the last step."""

    init: torch.Tensor  # (1, 4, h, w) the photo's latents
    noise: torch.Tensor  # (1, 4, h, w) the noise the sampler started from
    keep: torch.Tensor  # bool (1, 1, h, w): True outside the face

    def __call__(self, pipe, i: int, t, callback_kwargs: dict) -> dict:
        latents = callback_kwargs["latents"]
        timesteps = pipe.scheduler.timesteps[-pipe.num_timesteps :]  # those run (strength < 1 skips the first)
        target = (
            self.init
            if i + 1 == len(timesteps)
            else pipe.scheduler.add_noise(self.init, self.noise, timesteps[i + 1 : i + 2])
        )
        return {"latents": torch.where(self.keep, target.to(latents.dtype), latents)}


@cache  # one class, defined on first use: importing diffusers' pipelines takes seconds
def _blended_latent_pipeline():
    from diffusers import StableDiffusionInpaintPipeline
    from diffusers.utils.torch_utils import randn_tensor

    class BlendedLatentInpaintPipeline(StableDiffusionInpaintPipeline):
        """SD inpainting with `LatentBlend` after every step (the 9-channel UNet keeps its mask inputs)."""

        def __call__(self, *, image, mask_image, height, width, generator, **kwargs):
            device, dtype = self._execution_device, self.text_encoder.dtype
            pixels = self.image_processor.preprocess(image, height=height, width=width)
            init = self.vae.encode(pixels.to(device, self.vae.dtype)).latent_dist.mean * self.vae.config.scaling_factor
            keep = ~latent_mask(np.asarray(mask_image) > 127, self.vae_scale_factor)
            # The pipeline's first draw from `generator` is its starting noise (strength 1): draw the same.
            state = generator.get_state()
            noise = randn_tensor(init.shape, generator=generator, device=device, dtype=dtype)
            generator.set_state(state)
            blend = LatentBlend(init.to(dtype), noise, torch.from_numpy(keep)[None, None].to(device))
            return super().__call__(
                image=image,
                mask_image=mask_image,
                height=height,
                width=width,
                generator=generator,
                callback_on_step_end=blend,
                **kwargs,
            )

    return BlendedLatentInpaintPipeline


# --------------------------------------------------------------------------------- Paint-by-Example


class PaintByExample(Method):
    """diffusers' PaintByExamplePipeline (its own SD1.4-based weights), decoded as it is.

    The exemplar is a face from another photo, which the caller supplies in `EditInput.exemplar`
    (Paint-by-Example takes no text; the input's own face would make the edit a reconstruction); the
    evaluate stage passes the face of the next pair's photo. `strength` and the negative prompt do
    not apply."""

    name, label = "paint_by_example", LABELS["paint_by_example"]

    def __init__(self, ref: str, cfg: InferenceConfig, device: torch.device, torch_dtype: torch.dtype):
        from diffusers import PaintByExamplePipeline

        try:
            reason = hub_unreachable(ref)  # fails in a second instead of minutes of retries
            if reason:
                raise OSError(reason)
            pipe = PaintByExamplePipeline.from_pretrained(  # safetensors only: never a pickled .bin
                ref, torch_dtype=torch_dtype, safety_checker=None, use_safetensors=True
            )
        except Exception as e:  # hub, cache and file errors come in many types; each means "not here"
            raise MethodUnavailable(
                f"Paint-by-Example weights '{ref}' could not be loaded ({type(e).__name__}: {str(e)[:200]}). On a "
                f"machine with internet run `huggingface-cli download {ref}` (and copy its HF_HOME "
                f"cache here), or download it with --local-dir DIR and pass that directory as paint_by_example."
            ) from e
        pipe.scheduler = make_scheduler(cfg.scheduler, pipe.scheduler.config)
        self.pipe, self.cfg, self.device = pipe.to(device), cfg, device
        self.pipe.set_progress_bar_config(disable=True)

    def edit(self, x: EditInput) -> np.ndarray:
        if x.exemplar is None:
            raise ValueError(
                "Paint-by-Example needs an exemplar face (EditInput.exemplar, a face from another "
                "photo); none was given"
            )
        r = x.image.shape[0]
        _check_input(x, r)
        out = self.pipe(
            example_image=Image.fromarray(x.exemplar),
            image=Image.fromarray(x.image),
            mask_image=Image.fromarray(x.mask.astype(np.uint8) * 255),
            height=r,
            width=r,
            num_inference_steps=self.cfg.steps,
            guidance_scale=self.cfg.guidance_scale,
            generator=torch.Generator(self.device).manual_seed(x.seed),
            output_type="np",
        ).images[0]
        return np.clip(np.rint(out * 255), 0, 255).astype(np.uint8)

    def modules(self):
        return [self.pipe.vae, self.pipe.unet, self.pipe.image_encoder]


# ----------------------------------------------------------------------------------------- building


@dataclass
class Baselines:  # params.yaml `evaluate.baselines`: each a Hugging Face id or a local directory
    sd15_t2i: str  # SD1.5 text-to-image (4-channel UNet): Blended Latent Diffusion as published, BrushNet's base
    brushnet: str  # TencentARC's SD1.5 BrushNet, segmentation-mask checkpoint (config.json + safetensors)
    flux: str  # FLUX.1-dev (diffusers layout): Diptych Prompting's base
    flux_controlnet: str  # alimama's FLUX.1-dev inpainting ControlNet (Beta)
    paint_by_example: str  # Paint-by-Example's pipeline

    def __post_init__(self):
        check_fields(self, "evaluate.baselines")


@dataclass(frozen=True)
class DiptychSettings:
    """How Diptych Prompting samples; no defaults (the project keeps them in params.yaml). The official code's
    values are in the comments; see the module docstring for what is the publication's and what is ours."""

    steps: int  # 30
    guidance_scale: float  # 3.5: FLUX.1-dev's distilled guidance embedding
    true_guidance_scale: float  # 3.5: real classifier-free guidance with `negative_prompt` (<= 1 turns it off)
    negative_prompt: str  # ""
    controlnet_conditioning_scale: float  # 0.95
    attention_scale: float  # lambda = 1.3: right-panel -> left-panel attention weights are multiplied by it
    panel: int  # 768: the photo's size inside each panel
    pixel_offset: int  # 8: margin around each panel, cropped off the result
    subject: str  # the subject's name in the prompt; the publication's is the reference's class name
    remove_background: bool  # the publication: True (reference on white); for faces we use False (the photo)
    max_sequence_length: int  # 512: T5 tokens, FLUX.1-dev's and every FLUX pipeline's (alimama's included)

    def __post_init__(self):
        check_fields(self, "evaluate.diptych")
        if self.steps < 1:
            raise ValueError(f"diptych steps must be >= 1, got {self.steps}")
        if self.attention_scale <= 0:
            raise ValueError(f"diptych attention_scale (lambda) must be > 0, got {self.attention_scale}")
        if self.guidance_scale < 0 or self.true_guidance_scale < 0 or self.controlnet_conditioning_scale < 0:
            raise ValueError(
                "diptych guidance_scale, true_guidance_scale and controlnet_conditioning_scale must be >= 0"
            )
        if self.panel < 1 or self.pixel_offset < 0 or (self.panel + 2 * self.pixel_offset) % 16:
            raise ValueError(
                f"diptych panel + 2 * pixel_offset must be a positive multiple of 16 (FLUX packs 2 x 2 latents of "
                f"an 8x VAE), got panel={self.panel}, pixel_offset={self.pixel_offset}; the publication uses 768 and 8"
            )
        if not 1 <= self.max_sequence_length <= 512:
            raise ValueError(
                f"diptych max_sequence_length must be in [1, 512] (FLUX's T5), got {self.max_sequence_length}"
            )
        if not self.subject.strip():
            raise ValueError("diptych subject must name the subject, e.g. 'person'")

    @property
    def side(self) -> int:
        """A panel's side in pixels, margin included (784 in the publication)."""
        return self.panel + 2 * self.pixel_offset


@dataclass(frozen=True)
class BrushNetSettings:  # params.yaml `evaluate.brushnet`: BrushNet's own options (facepaint.brushnet)
    conditioning_scale: float  # multiplies every BrushNet feature (1.0 in all its scripts)
    blur_blend: bool  # its "blended" option (blurred-mask paste-back); off for the headline row

    def __post_init__(self):
        check_fields(self, "evaluate.brushnet")
        if not self.conditioning_scale >= 0:
            raise ValueError(f"evaluate.brushnet.conditioning_scale must be >= 0, got {self.conditioning_scale}")


def settings(cls, raw, where: str):
    """`raw` (a params.yaml mapping) as the dataclass `cls`, unknown and missing keys named."""
    if isinstance(raw, cls):
        return raw
    fields = [f.name for f in dataclasses.fields(cls)]
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be a mapping of {fields}, got {raw!r}")
    unknown, missing = sorted(map(str, set(raw) - set(fields))), sorted(set(fields) - set(raw))
    if unknown or missing:
        raise ValueError(f"{where}: unknown key(s) {unknown}, missing key(s) {missing}; keys: {fields}")
    return cls(**raw)


def _unavailable(name: str, e: Exception) -> str:
    return f"{LABELS[name]}'s weights could not be loaded: {e}"


def build_methods(
    names: list[str],
    artifact_path,
    cfg: InferenceConfig,
    *,
    base_model: ModelConfig | None = None,
    device="auto",
    dtype: str,
    baselines: Baselines,
    brushnet: BrushNetSettings,
    diptych: DiptychSettings,
) -> tuple[dict[str, Method], dict[str, str]]:
    """(the methods that could be built, in the order of `names`; {name: reason} for the unavailable ones).

    `base_model`: None for the artifact's own (its conditions); all methods run at the artifact's
    resolution. A base model that cannot be loaded raises (`models.ModelLoadError`): ours cannot run
    without it. `baselines`: where the other baselines' weights are; one that cannot be loaded makes its
    method unavailable, with the reason; `brushnet` and `diptych` are those two baselines' own settings."""
    unknown = sorted(set(names) - set(LABELS))
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; known: {list(LABELS)}")
    check_options(cfg.steps, cfg.strength)
    if cfg.scheduler not in SCHEDULERS:
        raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {cfg.scheduler!r}")
    baselines = settings(Baselines, baselines, "evaluate.baselines")
    dev = pick_device(device)
    torch_dtype = pick_dtype(dtype, dev)
    artifact = load_artifact(artifact_path)
    trained = artifact.conditions
    built, unavailable = {}, {}
    inpainter = partial(
        Inpainter,
        resolution=trained.resolution,
        device=dev,
        scheduler=cfg.scheduler,
        speed_options=Speed(dtype=dtype),
    )

    # The 9-channel inpainting model: ours and the baselines that start from the same model
    ours = [n for n in ("ours", "ours_no_blend") if n in names]
    plain = [n for n in ("sd15_inpaint", "blended_latent_diffusion_9ch") if n in names]
    if ours or plain:
        comps = load_components(base_model or trained.model, torch_dtype=torch_dtype)
        base = replace(comps, unet=copy.deepcopy(comps.unet)) if ours and plain else comps
        if ours:
            ip = inpainter(comps, apply_artifact(comps, artifact), trained.adapter_scale)
            built.update({n: Inpaint(n, ip, cfg, blend=n == "ours") for n in ours})
        if "sd15_inpaint" in names:  # diffusers' own pipeline: the baseline's public behaviour
            from diffusers import StableDiffusionInpaintPipeline

            plain_ip = inpainter(base, None, 0.0, pipeline_class=StableDiffusionInpaintPipeline)
            built["sd15_inpaint"] = Inpaint("sd15_inpaint", plain_ip, cfg, blend=False)
        if "blended_latent_diffusion_9ch" in names:
            ip = inpainter(base, None, 0.0, pipeline_class=_blended_latent_pipeline())
            built["blended_latent_diffusion_9ch"] = Inpaint("blended_latent_diffusion_9ch", ip, cfg, blend=False)

    # The 4-channel text-to-image SD1.5: Blended Latent Diffusion as published
    if "blended_latent_diffusion" in names:
        from diffusers import StableDiffusionInpaintPipeline

        try:
            t2i = load_t2i_components(baselines.sd15_t2i, torch_dtype)
        except ModelLoadError as e:
            unavailable["blended_latent_diffusion"] = _unavailable("blended_latent_diffusion", e)
        else:  # diffusers' inpainting pipeline replaces the latents outside the mask itself for 4 channels
            ip = inpainter(t2i, None, 0.0, pipeline_class=StableDiffusionInpaintPipeline)
            built["blended_latent_diffusion"] = Inpaint("blended_latent_diffusion", ip, cfg, blend=False)
    # BrushNet on the same 4-channel SD1.5, Diptych Prompting on FLUX.1-dev (their modules import this one)
    if "brushnet" in names:
        from facepaint.brushnet import load_brushnet

        b = settings(BrushNetSettings, brushnet, "evaluate.brushnet")
        try:
            built["brushnet"] = load_brushnet(
                baselines.sd15_t2i,
                baselines.brushnet,
                cfg,
                trained.resolution,
                dev,
                torch_dtype,
                blur_blend=b.blur_blend,
                conditioning_scale=b.conditioning_scale,
            )
        except MethodUnavailable as e:
            unavailable["brushnet"] = str(e)
    if "diptych_prompting" in names:
        from facepaint.diptych import load_diptych

        d = settings(DiptychSettings, diptych, "evaluate.diptych")
        try:
            built["diptych_prompting"] = load_diptych(
                baselines.flux, baselines.flux_controlnet, d, device=dev, torch_dtype=torch_dtype
            )
        except MethodUnavailable as e:
            unavailable["diptych_prompting"] = str(e)
    if "paint_by_example" in names:
        try:
            built["paint_by_example"] = PaintByExample(baselines.paint_by_example, cfg, dev, torch_dtype)
        except MethodUnavailable as e:
            unavailable["paint_by_example"] = str(e)
    return {n: built[n] for n in names if n in built}, unavailable


# ---------------------------------------------------------------------------------------- measuring


def _weights_mib(modules) -> float:
    tensors = {id(t): t for m in modules for t in (*m.parameters(), *m.buffers())}
    return sum(t.numel() * t.element_size() for t in tensors.values()) / 2**20


def measure(method: Method, x: EditInput, device) -> tuple[np.ndarray, dict]:
    """(output, {"seconds", "wall_seconds", "peak_mem_mib", "weights_mib", "clock"}) of one edit.

    weights_mib: the parameters and buffers of the networks the method runs (shared ones counted once).
    CUDA: seconds between CUDA events around the edit; peak_mem_mib = the method's own weights + what the
    edit allocated beyond what was resident before it (max_memory_allocated after a reset), i.e. the
    peak it would reach alone on the GPU, whatever other methods are loaded beside it
    (`peak_mem_total_mib` is the raw figure). CPU: seconds = process CPU time (all threads, so it can
    exceed the wall time), peak_mem_mib None."""
    device, weights = pick_device(device), _weights_mib(method.modules())
    wall = time.perf_counter()
    if device.type != "cuda":
        cpu = time.process_time()
        out = method.edit(x)
        return out, {
            "seconds": time.process_time() - cpu,
            "wall_seconds": time.perf_counter() - wall,
            "peak_mem_mib": None,
            "weights_mib": weights,
            "clock": "cpu",
        }
    with torch.cuda.device(device):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        resident = torch.cuda.memory_allocated()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        out = method.edit(x)
        end.record()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    return out, {
        "seconds": start.elapsed_time(end) / 1000,
        "wall_seconds": time.perf_counter() - wall,
        "peak_mem_mib": weights + (peak - resident) / 2**20,
        "peak_mem_total_mib": peak / 2**20,
        "weights_mib": weights,
        "clock": "cuda",
    }
