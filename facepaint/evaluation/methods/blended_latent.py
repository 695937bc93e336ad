"""Blended Latent Diffusion (Avrahami et al. 2023) on the 9-channel inpainting UNet: the extra row
`blended_latent_diffusion_9ch`. (As published, on the 4-channel text-to-image SD1.5, it is diffusers' own
inpainting pipeline, which does exactly this for a 4-channel UNet: facepaint.evaluation.methods.registry.)

After every denoising step the latents outside the latent mask are replaced by the photo's latents noised to
the next step's level with the same noise the sampler started from (clean after the last step); the whole
latent is then decoded: no pixel blend, the background passes through the VAE. Here the latent mask is the
SPEC's M_latent (`facepaint.method.masks.latent_mask`), the photo's latents the VAE posterior mean.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import torch

from facepaint.method.masks import latent_mask


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
