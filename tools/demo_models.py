"""Tiny random models of the baselines' architectures, saved in their public weights' layouts.

So the demo's evaluation runs every baseline through the same loading code as the real weights.

    data/demo_models/sd15_t2i/         a diffusers SD1.5 text-to-image pipeline (4-channel UNet): BrushNet's
                                       frozen base (its script's Realistic Vision is an SD1.5 fine-tune: the
                                       demo's brushnet_base points here too), BLD's with blended_latent.base
    data/demo_models/sd21_base/        a diffusers SD2.1-base text-to-image pipeline: Blended Latent
                                       Diffusion's (its public code's default model)
    data/demo_models/brushnet/         BrushNet as TencentARC ships it (config.json + safetensors)
    data/demo_models/flux/             a diffusers FLUX.1-dev pipeline (Diptych Prompting's base)
    data/demo_models/flux_controlnet/  alimama's inpainting ControlNet layout (extra_condition_channels 4)
    data/demo_models/guided_diffusion.pt  a tiny guided-diffusion UNet (guided_unet.TINY) saved as openai saves
                                       256x256_diffusion_uncond.pt (Blended Diffusion's)
    data/demo_models/clip_vit_b16/     a tiny CLIP of ViT-B/16's design in open_clip's folder layout (Blended
                                       Diffusion's)

They are random: what they edit means nothing, and the demo's figures only show that the code runs. The
paper profile points `evaluate.baselines` at the public checkpoints instead.
"""

from __future__ import annotations

from pathlib import Path

from facepaint.evaluation.methods.blended_latent import save_sd21_base
from facepaint.evaluation.methods.brushnet import save_tiny_brushnet
from facepaint.evaluation.methods.diptych import save_tiny_flux, save_tiny_flux_controlnet
from facepaint.evaluation.methods.guided_unet import TINY, save_random_guided_checkpoint
from facepaint.evaluation.methods.open_clip_model import TINY_CLIP, save_random_open_clip
from facepaint.method.models import save_tiny_t2i


def write(out: Path, seed: int) -> list[str]:
    """Save every demo baseline model under `out`; returns their names."""
    save_tiny_t2i(out / "sd15_t2i", seed)
    save_sd21_base(out / "sd21_base", seed)
    save_tiny_brushnet(out / "brushnet", seed)
    save_tiny_flux(out / "flux", seed)
    save_tiny_flux_controlnet(out / "flux_controlnet", seed)
    save_random_guided_checkpoint(out / "guided_diffusion.pt", TINY, seed)
    save_random_open_clip(out / "clip_vit_b16", TINY_CLIP, seed)
    return ["sd15_t2i", "sd21_base", "brushnet", "flux", "flux_controlnet", "guided_diffusion.pt", "clip_vit_b16"]
