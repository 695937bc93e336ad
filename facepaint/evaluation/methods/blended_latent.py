"""Blended Latent Diffusion (Avrahami et al., SIGGRAPH 2023): both of the evaluation's rows.

`blended_latent_diffusion` (`BlendedLatent`): BLD as its public code runs it by default, written here from
omriav/blended-latent-diffusion, scripts/text_editing_SD2.py (commit 09565c5; its README runs it with
diffusers 0.19.3). What that script does, line by line (its line numbers):
- model: `--model_path` defaults to stabilityai/stable-diffusion-2-1-base (l. 26-29), a 4-channel text-to-image
  model loaded as a StableDiffusionPipeline in fp16 (l. 51-57). The publication names no base for its comparison:
  params.yaml `evaluate.blended_latent.base` picks the `evaluate.baselines` entry (sd21_base, its code's; sd15_t2i,
  our SD1.5 variant).
- scheduler: its own DDIMScheduler(beta_start=0.00085, beta_end=0.012, scaled_linear, clip_sample=False,
  set_alpha_to_one=False) (l. 58-64), not the model's: steps_offset 0 and "leading" spacing, so 50 steps are
  t = 980, 960, ..., 0; eta 0 (`step` without it, l. 137). `public_scheduler`.
- sampling: 50 steps, guidance 7.5 (l. 74-75), classifier-free guidance always, the unconditional prompt ""
  (l. 97-104); the prompts through the tokenizer padded to 77 and the text encoder's last hidden state (l. 87-94:
  for SD2.1 that model has 23 of OpenCLIP-H's 24 layers, the penultimate layer).
- start: `latents = torch.randn(...)` from the generator (l. 106-110): pure noise, NOT the photo noised, and
  the loop runs only `timesteps[int(len(timesteps) * blending_percentage):]`, 0.25 by default (l. 35-39,
  77, 114-116): at 50 steps the first 12 are skipped and the first step denoises pure noise at t = 740.
- each step: the UNet on [latents] * 2, guidance, `scheduler.step` to the previous timestep (l. 118-137); THEN
  the blend (l. 139-143): the photo's latents noised to the current step's t (not the next one's) with
  `torch.randn_like(latents)`, fresh noise at every step, replace the latents outside the mask:
  `latents * mask + add_noise(source, randn, t) * (1 - mask)`. After the last step (t = 0) the background is
  the photo's latents at t = 0's noise level, not the clean latents.
- photo: resized to 512 x 512 (bilinear), x / 127.5 - 1, the VAE posterior MEAN x 0.18215 (l. 81-84, 157-164).
- mask: resized to the 64 x 64 latent grid by PIL's nearest neighbour, binarised at 0.5 (l. 166-175); 1 = edit.
- output: `vae.decode(latents / 0.18215)`, (x / 2 + 0.5).clamp(0, 1), x 255 rounded (l. 145-152): the whole
  latent is decoded, nothing is pasted back in pixel space (the background passes through the VAE).

Where this implementation differs from that script (all kept out of the schedule):
- seeding: the script seeds torch's default generator once (`generator=torch.manual_seed(42)` as a default
  argument) and draws the starting noise from it and every step's noise with `randn_like` (the default RNG); here
  one generator per edit, seeded with the edit's seed, draws the starting noise and then one noise per step in
  the same order, so an edit is a function of its seed.
- resolution: the evaluation's R (512 in the paper profile, the script's fixed size); the latent grid is R / 8.
- dtype: params.yaml `evaluate.dtype` (fp16 on a GPU, as the script; fp32 on the CPU); one image per edit (the
  script makes a batch of 4 for one prompt).
- `renoise: fixed` (not the script's; a setting for comparisons) reuses the starting noise at every step.

`blended_latent_diffusion_9ch` (`LatentBlend`, `blended_latent_pipeline`): an extra row of ours with no
counterpart in the public code (whose scripts run only 4-channel text-to-image models: SD2.1, SDXL, LDM): a
latent replacement on the 9-channel SD1.5 inpainting UNet that ours starts from, inside diffusers' inpainting
pipeline and with its schedule, not the public code's. After every denoising step the latents outside the latent
mask are replaced by the photo's latents noised to the next step's level with the same noise the sampler started
from (clean after the last step); the whole latent is then decoded: no pixel blend, the background passes
through the VAE. Its latent mask is the SPEC's M_latent (`facepaint.method.masks.latent_mask`), the photo's
latents the VAE posterior mean.

`save_sd21_base` writes a random SD2.1-base-architecture model (tiny for the demo and tests, or full size) in
the hub's diffusers layout, which `facepaint.method.models.load_t2i_components` loads as it loads the real one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from facepaint.common.checks import check_fields, check_number
from facepaint.evaluation.methods.base import LABELS, EditInput, Method, check_input
from facepaint.method.generate import encode_prompts
from facepaint.method.masks import latent_mask
from facepaint.method.models import (
    SD15_SCHEDULE,
    SD15_TEXT,
    SD15_UNET,
    SD15_VAE,
    TINY_TEXT,
    TINY_UNET_T2I,
    TINY_VAE,
    Components,
    clip_vocabulary,
    pick_device,
)

SD21_BASE = "stabilityai/stable-diffusion-2-1-base"
# The hub's stable-diffusion-2-1-base configs (unet/, text_encoder/, scheduler/ config.json), as overrides of
# SD1.5's: the UNet takes OpenCLIP-H's 1024-wide states, with 5, 10, 20, 20 heads of 64 (diffusers' misnamed
# `attention_head_dim`) and linear projections in its transformers; the text encoder is OpenCLIP ViT-H/14's text
# tower without its last layer (23 of 24: the penultimate layer's states, then the final layer norm), GELU; the
# VAE is SD1.5's; PNDM schedule config as SD1.5's, epsilon prediction at 512 px. Its tokenizer pads with "!".
SD21_UNET = dict(
    SD15_UNET, in_channels=4, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20), use_linear_projection=True
)
SD21_TEXT = dict(
    SD15_TEXT,
    hidden_size=1024,
    intermediate_size=4096,
    num_hidden_layers=23,
    num_attention_heads=16,
    hidden_act="gelu",
    projection_dim=512,
)
SD21_SCHEDULE = dict(SD15_SCHEDULE, prediction_type="epsilon", skip_prk_steps=True)
SD21_PAD = "!"
# The same structure at tiny widths (the demo and the tests): per-block head counts, linear projections, GELU.
TINY_SD21_UNET = dict(TINY_UNET_T2I, attention_head_dim=(2, 2, 4, 4), use_linear_projection=True)
TINY_SD21_TEXT = dict(TINY_TEXT, hidden_act="gelu", num_hidden_layers=3, projection_dim=16)

# The public code's fixed values (scripts/text_editing_SD2.py): the DDIM it builds, the VAE scale it hard-codes.
PUBLIC_DDIM = dict(
    beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False
)
LATENT_SCALE = 0.18215
BASES = ("sd21_base", "sd15_t2i")  # the evaluate.baselines entries BLD may run on
RENOISE = ("fresh", "fixed")


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
def blended_latent_pipeline():
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


# ------------------------------------------------------------------------ the public code's BLD (4-channel)


@dataclass(frozen=True)
class BlendedLatentSettings:  # params.yaml `evaluate.blended_latent` (see the module docstring)
    base: str  # the evaluate.baselines entry of its model: sd21_base (its code's default) | sd15_t2i
    blending_start: float  # the fraction of the steps skipped (its code's 0.25); the loop starts from pure noise
    renoise: str  # fresh: new noise for the background at every step (its code) | fixed: the starting noise
    steps: int  # DDIM steps before the skip (its code's 50)
    guidance_scale: float  # classifier-free guidance (its code's 7.5)

    def __post_init__(self):
        check_fields(self, "evaluate.blended_latent")
        if self.base not in BASES:
            raise ValueError(f"evaluate.blended_latent.base must be one of {BASES}, got {self.base!r}")
        if self.renoise not in RENOISE:
            raise ValueError(f"evaluate.blended_latent.renoise must be one of {RENOISE}, got {self.renoise!r}")
        check_number("evaluate.blended_latent.blending_start", self.blending_start, 0, 0.99)
        check_number("evaluate.blended_latent.steps", self.steps, 1, 1000, whole=True)
        check_number("evaluate.blended_latent.guidance_scale", self.guidance_scale, 0)


def public_scheduler():
    """The DDIM scheduler that scripts/text_editing_SD2.py builds (l. 58-64): its own, not the model's."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(**PUBLIC_DDIM)


def blending_timesteps(scheduler, steps: int, blending_start: float) -> torch.Tensor:
    """The timesteps the loop runs: `steps` set on `scheduler`, the first int(steps x blending_start) skipped."""
    scheduler.set_timesteps(steps)
    return scheduler.timesteps[int(len(scheduler.timesteps) * blending_start) :]


def edit_mask(mask: np.ndarray, size: int) -> torch.Tensor:
    """float (1, 1, size, size): 1 where the face M is, the public code's `_read_mask` (PIL nearest, >= 0.5)."""
    small = np.asarray(Image.fromarray(np.asarray(mask, np.uint8) * 255).resize((size, size), Image.NEAREST)) / 255
    return torch.from_numpy((small >= 0.5).astype(np.float32))[None, None]


def blend(scheduler, latents: torch.Tensor, source: torch.Tensor, mask: torch.Tensor, noise: torch.Tensor, t):
    """The public code's blend after the step at `t` (l. 139-143): the photo's latents noised to t replace the
    latents outside the mask."""
    return latents * mask + scheduler.add_noise(source, noise, t) * (1 - mask)


class BlendedLatent(Method):
    """Blended Latent Diffusion as scripts/text_editing_SD2.py runs it (module docstring), on a 4-channel
    text-to-image model's components; `edit` returns the decoded image as it is."""

    name, label = "blended_latent_diffusion", LABELS["blended_latent_diffusion"]

    def __init__(self, components: Components, settings: BlendedLatentSettings, resolution: int, *, device="auto"):
        f = 2 ** (len(components.vae.config.block_out_channels) - 1)
        if resolution % f:
            raise ValueError(f"resolution must be a multiple of {f} (the VAE's factor), got {resolution}")
        if components.unet.config.in_channels != 4:
            raise ValueError(f"BLD runs a 4-channel text-to-image UNet, got {components.unet.config.in_channels}")
        self.settings, self.resolution, self.latent_size = settings, resolution, resolution // f
        self.device = pick_device(device)
        self.vae, self.unet, self.text_encoder = (
            m.to(self.device).eval() for m in (components.vae, components.unet, components.text_encoder)
        )
        self.tokenizer, self.base = components.tokenizer, components.name

    def modules(self) -> list[torch.nn.Module]:
        return [self.vae, self.unet, self.text_encoder]

    def edit(self, x: EditInput) -> np.ndarray:
        check_input(x, self.resolution)
        return self.generate(x.image, x.mask, x.prompt, x.seed)

    @torch.inference_mode()
    def generate(self, image: np.ndarray, mask: np.ndarray, prompt: str, seed: int) -> np.ndarray:
        """uint8 (R, R, 3): `image` edited where `mask` by the public code's loop (module docstring)."""
        s, dev, dtype = self.settings, self.device, self.unet.dtype
        pixels = torch.from_numpy(np.array(image, copy=True)).float() / 127.5 - 1
        pixels = pixels.permute(2, 0, 1)[None].to(dev, self.vae.dtype)
        source = (self.vae.encode(pixels).latent_dist.mean * LATENT_SCALE).to(dtype)
        m = edit_mask(mask, self.latent_size).to(dev, dtype)
        context, _ = encode_prompts(self.text_encoder, self.tokenizer, ["", prompt])  # [unconditional, prompt]
        context = context.to(dtype)
        scheduler = public_scheduler()
        timesteps = blending_timesteps(scheduler, s.steps, s.blending_start)
        generator = torch.Generator(dev).manual_seed(int(seed))
        shape = (1, self.unet.config.in_channels, self.latent_size, self.latent_size)
        latents = torch.randn(shape, generator=generator, device=dev, dtype=dtype)  # pure noise (l. 106-110)
        start = latents
        for t in timesteps:
            x = scheduler.scale_model_input(torch.cat([latents] * 2), timestep=t)
            uncond, text = self.unet(x, t, encoder_hidden_states=context).sample.chunk(2)
            eps = uncond + s.guidance_scale * (text - uncond)
            latents = scheduler.step(eps, t, latents).prev_sample
            noise = torch.randn(shape, generator=generator, device=dev, dtype=dtype) if s.renoise == "fresh" else start
            latents = blend(scheduler, latents, source, m, noise, t)
        decoded = self.vae.decode(latents.to(self.vae.dtype) / LATENT_SCALE).sample
        out = (decoded / 2 + 0.5).clamp(0, 1)[0].permute(1, 2, 0).float().cpu().numpy()
        return np.rint(out * 255).astype(np.uint8)


# ----------------------------------------------------------------------------- SD2.1-base, random weights


def sd21_tokenizer():
    """SD2.1's tokenizer, built offline: CLIP's BPE vocabulary (the same 49,408 tokens), 77 tokens, pad "!"."""
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocabulary()
    return CLIPTokenizer(
        vocab=dict(vocab), merges=[tuple(m.split()) for m in merges], model_max_length=77, pad_token=SD21_PAD
    )


def save_sd21_base(path: str | os.PathLike, seed: int = 0, full_size: bool = False) -> Path:
    """A diffusers StableDiffusionPipeline directory in stabilityai/stable-diffusion-2-1-base's layout
    (safetensors) with random weights: `TINY_SD21_UNET`, `TINY_VAE`, `TINY_SD21_TEXT` (`full_size`: SD2.1-base's
    own architecture, `SD21_UNET`, `SD15_VAE`, `SD21_TEXT`, 5 GB in fp32), its tokenizer and its PNDM schedule.
    `facepaint.method.models.load_t2i_components` loads it as it loads the hub's."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    unet_cfg, vae_cfg, text_cfg = (
        (SD21_UNET, SD15_VAE, SD21_TEXT) if full_size else (TINY_SD21_UNET, TINY_VAE, TINY_SD21_TEXT)
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed * 1000 + 21)
        vae = AutoencoderKL(**vae_cfg)
        unet = UNet2DConditionModel(**unet_cfg)
        text_encoder = CLIPTextModel(CLIPTextConfig(**text_cfg))
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=sd21_tokenizer(),
        unet=unet,
        scheduler=PNDMScheduler.from_config(SD21_SCHEDULE),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(path, safe_serialization=True)
    return Path(path)
