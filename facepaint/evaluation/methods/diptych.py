"""Diptych Prompting, the SPEC's fourth baseline, as a face editor (Shin et al. 2024, arXiv 2411.15466, CVPR 2025).

The publication turns subject-driven generation into inpainting: a diptych whose left panel holds the reference
and whose right panel is to be inpainted, a diptych text prompt, FLUX.1-dev with the alimama-creative inpainting
ControlNet, and a "reference attention enhancement" that scales up the attention from the right panel to the left
one. Here the reference is the photo itself (by default its face on white, as the official code whitens the
reference's background) and the right panel is inpainted whole under the edit prompt, as in the official code
(`mask: face` [ours] masks only the face M in a copy of the photo instead). The output is the right panel cut out
and resized back to the photo's resolution R.

What comes from where (the official code is chaehunshin/DiptychPrompting, `diptych_prompting_inference.py`,
commit 7a5099b, line numbers below; the paper's own text was not readable here beyond its abstract):
- prompt template, word for word (`DIPTYCH_PROMPT`, its lines 342-344). `subject` names the subject; for faces that
  name is our choice (a setting).
- precision (`dtype`): its code loads FLUX.1-dev (transformer, VAE, CLIP, T5) and the ControlNet in bf16 (lines
  296-303); so does this method by default, whatever `evaluate.dtype` the SD1.5 methods use (the CPU runs fp32,
  as everywhere in this project). diffusers documents that FLUX in fp16 differs (its T5 overflows there).
- layout (`mask: right_panel`, its code, lines 329-352): two square panels side by side, each `panel` (768) plus
  `pixel_offset` (8) on every side, i.e. a 1568 x 784 diptych. The reference is resized (bicubic) to the whole
  784 px left panel; the right panel is black and masked whole, margins included; the result is the right panel
  with the margin cropped off (lines 375-376), the inner 768 px: a slight zoom of the reference's frame.
  `mask: face` is [ours] (face editing): the photo is resized to the inner `panel` size with its edge pixels
  replicated over the margin, in both panels, and only M is masked in the right panel (no dilation), the rest of
  the right panel being context the ControlNet sees; cropping the margin then gives back exactly the photo's frame.
- reference (`remove_background`, its code: true, lines 313-326 and 349): its code segments the reference with
  Grounded-SAM (IDEA-Research/grounding-dino-tiny finds the subject by its name, threshold 0.3; the first box goes
  to facebook/sam-vit-base; the mask is refined to its largest outer contour, filled) and puts it on white. Those
  two models are not among this project's weights, so [ours] the segmentation is the face mask M (resized to the
  panel, binarized at 0.5), refined as its code refines SAM's mask (largest outer contour, filled, `_segment`):
  the face on white. M holds face parts only, so the hair is whitened too.
- reference attention enhancement (`ReferenceAttentionProcessor`, lines 176-280 and 354-357). In every attention
  layer of the FLUX transformer (all 19 double-stream and 38 single-stream blocks, not the ControlNet's), at every
  step and for both classifier-free-guidance branches and all heads, the softmax attention weights of right-panel
  image queries on left-panel image keys are multiplied by lambda after the softmax, without renormalising; text
  tokens and all other query/key pairs are untouched. The scores, their softmax and the scaling are taken in the
  model's dtype (bf16), as its code takes them.
- sampling (lines 284-291 and 359-373): 30 steps, FLUX.1-dev's distilled guidance 3.5, true classifier-free
  guidance 3.5 with the negative prompt "", ControlNet conditioning scale 0.95, lambda 1.3, seed 42 (the
  evaluation passes its own). The pipeline is the alimama one (`pipeline_flux_controlnet_inpaint.py`): start from
  pure noise, condition the ControlNet on the masked diptych, decode the whole diptych; nothing is pasted back (no
  latent blending), so the background passes through FLUX and its VAE. (It samples the masked image's VAE latents
  from the global RNG; we use the edit's generator.)

The alimama ControlNet vs diffusers (installed diffusers 0.42.1). The published checkpoint
(alimama-creative/FLUX.1-dev-Controlnet-Inpainting-Beta: config.json + one 4.28 GB bf16
diffusion_pytorch_model.safetensors) was written by alimama's own copy of the model class, whose config has
`extra_condition_channels: 4`: its `controlnet_x_embedder` is Linear(64 + 4, 3072), because its control input is
the packed VAE latents of the masked image (16 channels x 2 x 2 = 64) plus the packed keep-mask (1 x 2 x 2 = 4).
diffusers' `FluxControlNetModel` has no such field (it ignores the key) and builds Linear(64, 3072), so loading the
checkpoint fails on that weight's shape; and diffusers' `FluxControlNetInpaintPipeline` feeds the ControlNet the
VAE latents of a control *image* (no mask) and does img2img-style latent blending, which is not how this ControlNet
was trained or used. Hence two small subclasses of diffusers' classes, ours:
- `FluxInpaintControlNetModel(FluxControlNetModel)`: adds `extra_condition_channels`, widening only
  `controlnet_x_embedder`; its forward is diffusers' unchanged.
- `DiptychPipeline(FluxControlNetInpaintPipeline)`: diffusers' components, loading and helpers, with a `__call__`
  that conditions and samples as alimama's pipeline does (control = pack(cat(VAE(masked image), 1 - mask)), masked
  pixels set to -1, mask resized to the latent grid by nearest neighbour, true CFG with a negative prompt) and passes
  the diptych's token grid to the attention processor.

Loading: `load_diptych(flux, controlnet, settings, device=..., torch_dtype=...)`, each a diffusers directory or a
hub id, safetensors only. Anything missing raises `MethodUnavailable` naming the files and how to get them, within
about a second offline. `save_tiny_flux` / `save_tiny_flux_controlnet` write tiny random models of the same
architecture in the same layout, which the tests load through the same code.

Importing this module imports diffusers' FLUX classes (seconds): import it where the method is built.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import FluxControlNetInpaintPipeline, FluxControlNetModel
from diffusers.configuration_utils import register_to_config
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.controlnets.controlnet import zero_module
from diffusers.models.embeddings import apply_rotary_emb
from diffusers.models.transformers.transformer_flux import FluxAttnProcessor, _get_qkv_projections
from diffusers.pipelines.flux.pipeline_flux_controlnet_inpainting import calculate_shift, retrieve_timesteps
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from facepaint.common.checks import check_fields
from facepaint.evaluation.methods.base import LABELS, EditInput, Method, MethodUnavailable
from facepaint.method.models import TINY_TEXT, hub_unreachable, pick_dtype
from facepaint.method.speed import DTYPES

FLUX_DEV = "black-forest-labs/FLUX.1-dev"
INPAINT_CONTROLNET = "alimama-creative/FLUX.1-dev-Controlnet-Inpainting-Beta"

# The official code's diptych prompt, word for word; `subject` is e.g. "bear plushie" there.
DIPTYCH_PROMPT = (
    "A diptych with two side-by-side images of same {subject}. On the left, a photo of {subject}. "
    "On the right, replicate this {subject} exactly but as {target}"
)
MASKS = ("right_panel", "face")  # evaluate.diptych.mask: the official code's layout | ours (see the docstring)
T5_MAX_TOKENS = 512  # FLUX.1-dev's T5 tokenizer length (model_max_length of its tokenizer_2)

# Published configs (their config.json), so the full-size architecture can be built without a download.
FLUX_TRANSFORMER = dict(
    patch_size=1,
    in_channels=64,
    num_layers=19,
    num_single_layers=38,
    attention_head_dim=128,
    num_attention_heads=24,
    joint_attention_dim=4096,
    pooled_projection_dim=768,
    guidance_embeds=True,
    axes_dims_rope=(16, 56, 56),
)
INPAINT_CONTROLNET_CONFIG = dict(  # alimama's Beta config.json (its "_name_or_path" records a 768 px training run)
    patch_size=1,
    in_channels=64,
    num_layers=6,
    num_single_layers=0,
    attention_head_dim=128,
    num_attention_heads=24,
    joint_attention_dim=4096,
    pooled_projection_dim=768,
    guidance_embeds=True,
    axes_dims_rope=(16, 56, 56),
    extra_condition_channels=4,
)
FLUX_SCHEDULER = dict(  # FLUX.1-dev scheduler/scheduler_config.json (FlowMatchEulerDiscreteScheduler)
    base_image_seq_len=256,
    base_shift=0.5,
    max_image_seq_len=4096,
    max_shift=1.15,
    num_train_timesteps=1000,
    shift=3.0,
    use_dynamic_shifting=True,
)

# Tiny versions of the same architectures. The VAE keeps FLUX's 16 latent channels and 8x downsampling (so the
# 2 x 2 packing gives the transformer's 64 input features); the rotary axes add up to the head width.
TINY_TRANSFORMER = dict(
    FLUX_TRANSFORMER,
    num_layers=1,
    num_single_layers=1,
    attention_head_dim=16,
    num_attention_heads=2,
    joint_attention_dim=32,  # = tiny T5 d_model
    pooled_projection_dim=TINY_TEXT["hidden_size"],  # CLIP's pooled output
    axes_dims_rope=(4, 6, 6),
)
TINY_CONTROLNET = dict(
    INPAINT_CONTROLNET_CONFIG,
    **{k: TINY_TRANSFORMER[k] for k in ("attention_head_dim", "num_attention_heads", "joint_attention_dim")},
    pooled_projection_dim=TINY_TRANSFORMER["pooled_projection_dim"],
    axes_dims_rope=TINY_TRANSFORMER["axes_dims_rope"],
    num_layers=1,
)
TINY_VAE = dict(  # FLUX.1-dev vae/config.json at tiny widths
    in_channels=3,
    out_channels=3,
    latent_channels=16,
    block_out_channels=(8, 8, 16, 16),
    layers_per_block=1,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    norm_num_groups=4,
    act_fn="silu",
    sample_size=32,
    scaling_factor=0.3611,
    shift_factor=0.1159,
    use_quant_conv=False,
    use_post_quant_conv=False,
    force_upcast=True,
)
TINY_T5 = dict(  # google/t5-v1_1-xxl's structure (gated GELU, relative attention) at tiny widths
    d_model=TINY_TRANSFORMER["joint_attention_dim"],
    d_kv=8,
    d_ff=64,
    num_layers=2,
    num_heads=4,
    relative_attention_num_buckets=8,
    relative_attention_max_distance=32,
    feed_forward_proj="gated-gelu",
    dropout_rate=0.0,
    tie_word_embeddings=False,
    pad_token_id=0,
    eos_token_id=1,
    decoder_start_token_id=0,
)

# What each part of a diffusers FLUX.1-dev directory must hold: globs, "a|b" = either of them.
FLUX_FILES = {
    "": ("model_index.json",),
    "transformer": ("config.json", "diffusion_pytorch_model*.safetensors"),
    "vae": ("config.json", "diffusion_pytorch_model*.safetensors"),
    "text_encoder": ("config.json", "model*.safetensors"),
    "text_encoder_2": ("config.json", "model*.safetensors"),
    "tokenizer": ("tokenizer_config.json", "vocab.json|tokenizer.json", "merges.txt|tokenizer.json"),
    "tokenizer_2": ("tokenizer_config.json", "tokenizer.json|spiece.model"),
    "scheduler": ("scheduler_config.json",),
}
CONTROLNET_FILES = {"": ("config.json", "diffusion_pytorch_model*.safetensors")}


# ------------------------------------------------------------------------------------ attention


def diptych_token_panels(grid: tuple[int, int], seq_len: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(sequence indices of the right panel's image tokens, bool (seq_len,) of the left panel's image tokens).

    FLUX's joint attention runs over [text tokens, image tokens]; the image tokens are the last h * w, row by row,
    over the whole diptych (h, w = its height and width / 16), so a token's column says its panel."""
    h, w = grid
    if w % 2 or h * w > seq_len:
        raise ValueError(f"diptych token grid {grid} needs an even width and at most {seq_len} tokens")
    first = seq_len - h * w
    column = torch.arange(h * w, device=device) % w
    right = first + torch.nonzero(column >= w // 2).flatten()
    left = torch.zeros(seq_len, dtype=torch.bool, device=device)
    left[first:] = column < w // 2
    return right, left


class ReferenceAttentionProcessor(FluxAttnProcessor):
    """diffusers' FLUX attention with Diptych Prompting's reference attention enhancement.

    For the queries of right-panel image tokens, the attention weights softmax(q k^T / sqrt(d)) on left-panel image
    keys are multiplied by `scale` (lambda) after the softmax and not renormalised, exactly as the official code
    does; every other query keeps diffusers' attention output. With scale 1 it *is* diffusers' processor (the same
    call). The token grid comes with each call through `joint_attention_kwargs={"diptych_grid": (h, w)}`, which
    FLUX's blocks hand to their attention modules. Right-panel rows are computed `chunk` queries at a time: the
    explicit weights of 2,401 queries x 5,314 keys x 24 heads are ~1 GB per image per 1,024 queries at 784 px."""

    def __init__(self, scale: float, chunk: int = 1024):
        super().__init__()
        if scale <= 0:
            raise ValueError(f"attention scale must be > 0, got {scale}")
        self.scale, self.chunk = float(scale), chunk

    def __call__(
        self,
        attn,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: torch.Tensor | None = None,
        diptych_grid: tuple[int, int] | None = None,
    ):
        if self.scale == 1.0:
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)
        if diptych_grid is None:
            raise ValueError(
                "the reference attention needs the diptych's token grid: call the transformer with "
                "joint_attention_kwargs={'diptych_grid': (height // 16, width // 16)}"
            )
        if attention_mask is not None:
            raise ValueError("the reference attention takes no attention mask (FLUX.1-dev's pipelines pass none)")
        query, key, value = self.project(attn, hidden_states, encoder_hidden_states, image_rotary_emb)
        out = dispatch_attention_fn(query, key, value, backend=self._attention_backend)  # (B, S, H, D)
        right, left = diptych_token_panels(diptych_grid, query.shape[1], query.device)
        out = out.clone()
        for rows in right.split(self.chunk):
            weights = self.weights(query[:, rows], key, left)
            out[:, rows] = torch.einsum("bhqk,bkhd->bqhd", weights, value).to(out.dtype)
        out = out.flatten(2, 3).to(query.dtype)
        if encoder_hidden_states is None:  # single-stream block: its caller projects
            return out
        text, image = out.split_with_sizes([encoder_hidden_states.shape[1], hidden_states.shape[1]], dim=1)
        return attn.to_out[1](attn.to_out[0](image.contiguous())), attn.to_add_out(text.contiguous())

    @staticmethod
    def project(attn, hidden_states, encoder_hidden_states, image_rotary_emb):
        """Query, key and value (B, S, H, D) over [text, image], normalised and rotated as diffusers' does."""
        query, key, value, text_query, text_key, text_value = _get_qkv_projections(
            attn, hidden_states, encoder_hidden_states
        )
        query, key, value = (x.unflatten(-1, (-1, attn.head_dim)) for x in (query, key, value))
        query, key = attn.norm_q(query), attn.norm_k(key)
        if attn.added_kv_proj_dim is not None:
            text_query, text_key, text_value = (
                x.unflatten(-1, (-1, attn.head_dim)) for x in (text_query, text_key, text_value)
            )
            query = torch.cat([attn.norm_added_q(text_query), query], dim=1)
            key = torch.cat([attn.norm_added_k(text_key), key], dim=1)
            value = torch.cat([text_value, value], dim=1)
        if image_rotary_emb is not None:
            query = apply_rotary_emb(query, image_rotary_emb, sequence_dim=1)
            key = apply_rotary_emb(key, image_rotary_emb, sequence_dim=1)
        return query, key, value

    def weights(self, query: torch.Tensor, key: torch.Tensor, left: torch.Tensor) -> torch.Tensor:
        """(B, H, q, S) attention weights of `query` (B, q, H, D) on all keys, the columns of left-panel keys
        multiplied by the scale, all in the query's dtype as the official code computes them (bf16 there)."""
        weights = (torch.einsum("bqhd,bkhd->bhqk", query, key) * query.shape[-1] ** -0.5).softmax(dim=-1)
        weights[..., left] *= self.scale
        return weights


# ----------------------------------------------------------------------------------- the models


class FluxInpaintControlNetModel(FluxControlNetModel):
    """diffusers' FLUX ControlNet whose control input carries `extra_condition_channels` more features than the
    latents: alimama's inpainting ControlNet (4 = its 1-channel mask packed 2 x 2). Only `controlnet_x_embedder`
    widens (Linear(in_channels + extra, inner)); everything else, forward included, is diffusers'. With 0 it is
    diffusers' model. The published config.json names the class "FluxControlNetModel" and sets the field; this
    class loads it as it is."""

    @register_to_config
    def __init__(
        self,
        patch_size: int = 1,
        in_channels: int = 64,
        num_layers: int = 19,
        num_single_layers: int = 38,
        attention_head_dim: int = 128,
        num_attention_heads: int = 24,
        joint_attention_dim: int = 4096,
        pooled_projection_dim: int = 768,
        guidance_embeds: bool = False,
        axes_dims_rope: tuple[int, ...] = (16, 56, 56),
        num_mode: int | None = None,
        conditioning_embedding_channels: int | None = None,
        extra_condition_channels: int = 0,
    ):
        super().__init__(
            patch_size=patch_size,
            in_channels=in_channels,
            num_layers=num_layers,
            num_single_layers=num_single_layers,
            attention_head_dim=attention_head_dim,
            num_attention_heads=num_attention_heads,
            joint_attention_dim=joint_attention_dim,
            pooled_projection_dim=pooled_projection_dim,
            guidance_embeds=guidance_embeds,
            axes_dims_rope=list(axes_dims_rope),
            num_mode=num_mode,
            conditioning_embedding_channels=conditioning_embedding_channels,
        )
        if extra_condition_channels:
            if conditioning_embedding_channels is not None:
                raise ValueError(
                    "extra_condition_channels applies to latent control inputs, not to an input_hint_block"
                )
            width = in_channels + extra_condition_channels
            self.controlnet_x_embedder = zero_module(torch.nn.Linear(width, self.inner_dim))


class DiptychPipeline(FluxControlNetInpaintPipeline):
    """diffusers' FLUX ControlNet inpainting pipeline, sampling as the alimama inpainting ControlNet expects.

    diffusers' `__call__` gives the ControlNet the VAE latents of a control image and blends the photo's latents
    back outside the mask at every step (img2img-style); the alimama ControlNet instead takes the masked image's
    latents with the mask and its pipeline generates the whole image from noise, with true classifier-free guidance.
    This `__call__` is the latter, on diffusers' components and helpers; `joint_attention_kwargs` carries the
    diptych's token grid to `ReferenceAttentionProcessor`."""

    @torch.no_grad()
    def __call__(
        self,
        *,
        prompt: str,
        negative_prompt: str,
        image: Image.Image,
        mask_image: Image.Image,
        num_inference_steps: int,
        guidance_scale: float,
        true_guidance_scale: float,
        controlnet_conditioning_scale: float,
        generator: torch.Generator,
        max_sequence_length: int,
    ) -> np.ndarray:
        """The generated image, float32 (H, W, 3) in [0, 1]; white in `mask_image` = inpaint, black = keep."""
        # 1. Check inputs
        width, height = image.size
        multiple = self.vae_scale_factor * 2
        if height % multiple or width % multiple or mask_image.size != image.size:
            raise ValueError(
                f"image and mask must have one size, a multiple of {multiple}: got {image.size}, {mask_image.size}"
            )
        device, dtype = self._execution_device, self.transformer.dtype
        cfg = true_guidance_scale > 1

        # 2. Encode the prompts (the negative one for true classifier-free guidance): [negative, positive]
        embeds, pooled, text_ids = self.encode_prompt(
            prompt=prompt, prompt_2=None, device=device, max_sequence_length=max_sequence_length
        )
        if cfg:
            neg_embeds, neg_pooled, _ = self.encode_prompt(
                prompt=negative_prompt, prompt_2=None, device=device, max_sequence_length=max_sequence_length
            )
            embeds, pooled = torch.cat([neg_embeds, embeds]), torch.cat([neg_pooled, pooled])

        # 3. Starting noise, packed into 2 x 2 patches
        channels = self.transformer.config.in_channels // 4
        lat_h, lat_w = 2 * (height // multiple), 2 * (width // multiple)
        noise = randn_tensor((1, channels, lat_h, lat_w), generator=generator, device=device, dtype=dtype)
        latents = self._pack_latents(noise, 1, channels, lat_h, lat_w)
        image_ids = self._prepare_latent_image_ids(1, lat_h // 2, lat_w // 2, device, dtype)

        # 4. Control: VAE latents of the image with its masked pixels black (-1), and the keep-mask (1 = keep)
        pixels = self.image_processor.preprocess(image, height=height, width=width)
        mask = self.mask_processor.preprocess(mask_image, height=height, width=width)  # binarized, 1 = inpaint
        masked = pixels.masked_fill(mask > 0.5, -1.0).to(device, self.vae.dtype)
        masked_latents = self._encode_vae_image(masked, generator=generator).to(dtype)
        keep = 1 - torch.nn.functional.interpolate(mask, size=(lat_h, lat_w)).to(device, dtype)
        control = torch.cat([masked_latents, keep], dim=1)
        control = self._pack_latents(control, 1, channels + 1, lat_h, lat_w)
        control = control.expand(2 if cfg else 1, -1, -1)

        # 5. Timesteps: FLUX's shifted sigmas for this many image tokens
        sigmas = np.linspace(1.0, 1 / num_inference_steps, num_inference_steps)
        config = self.scheduler.config
        mu = calculate_shift(
            latents.shape[1], config.base_image_seq_len, config.max_image_seq_len, config.base_shift, config.max_shift
        )
        timesteps, _ = retrieve_timesteps(self.scheduler, num_inference_steps, device, sigmas=sigmas, mu=mu)

        # 6. Denoising loop
        attention = {"diptych_grid": (lat_h // 2, lat_w // 2)}
        with self.progress_bar(total=len(timesteps)) as progress:
            for t in timesteps:
                x = torch.cat([latents] * 2) if cfg else latents
                timestep = t.expand(x.shape[0]).to(x.dtype) / 1000
                guidance = torch.full((x.shape[0],), guidance_scale, device=device, dtype=torch.float32)
                blocks, single_blocks = self.controlnet(
                    hidden_states=x,
                    controlnet_cond=control,
                    conditioning_scale=controlnet_conditioning_scale,
                    timestep=timestep,
                    guidance=guidance if self.controlnet.config.guidance_embeds else None,
                    pooled_projections=pooled,
                    encoder_hidden_states=embeds,
                    txt_ids=text_ids,
                    img_ids=image_ids,
                    return_dict=False,
                )
                velocity = self.transformer(
                    hidden_states=x,
                    timestep=timestep,
                    guidance=guidance if self.transformer.config.guidance_embeds else None,
                    pooled_projections=pooled,
                    encoder_hidden_states=embeds,
                    controlnet_block_samples=blocks,
                    controlnet_single_block_samples=single_blocks,
                    txt_ids=text_ids,
                    img_ids=image_ids,
                    joint_attention_kwargs=attention,
                    return_dict=False,
                )[0]
                if cfg:
                    uncond, cond = velocity.chunk(2)
                    velocity = uncond + true_guidance_scale * (cond - uncond)
                latents = self.scheduler.step(velocity, t, latents, return_dict=False)[0]
                progress.update()

        # 7. Decode the whole diptych
        latents = self._unpack_latents(latents, height, width, self.vae_scale_factor)
        latents = latents / self.vae.config.scaling_factor + self.vae.config.shift_factor
        decoded = self.vae.decode(latents.to(self.vae.dtype), return_dict=False)[0]
        self.maybe_free_model_hooks()
        return self.image_processor.postprocess(decoded, output_type="np")[0]


# ---------------------------------------------------------------------------------- the method


@dataclass
class Diptych:
    """What the pipeline receives for one edit."""

    image: np.ndarray  # uint8 (side, 2 * side, 3): reference panel | right panel (black, or the photo: `face`)
    mask: np.ndarray  # bool (side, 2 * side): True = inpaint (the whole right panel, or M in it: `face`)
    prompt: str


def _resize(a: np.ndarray, size: int, resample) -> np.ndarray:
    return np.asarray(Image.fromarray(a).resize((size, size), resample))


def _segment(mask: np.ndarray) -> np.ndarray:
    """A binary segmentation refined as the official code refines SAM's mask (`refine_masks` with
    polygon_refinement=True, `mask_to_polygon`, `polygon_to_mask`): its largest outer contour, filled."""
    import cv2

    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return np.zeros(mask.shape, bool)
    polygon = max(contours, key=cv2.contourArea).reshape(-1, 2)
    return cv2.fillPoly(np.zeros(mask.shape, np.uint8), [polygon.astype(np.int32)], color=(255,)) > 0


def _on_white(image: np.ndarray, subject: np.ndarray) -> np.ndarray:
    """The official code's background removal: the subject's pixels on white (255)."""
    return np.where(subject[..., None], image, np.uint8(255))


class DiptychPrompting(Method):
    """Diptych Prompting as an editing method: the photo (its face on white) as the reference beside a right panel
    inpainted by FLUX.1-dev with the alimama ControlNet and the reference attention enhancement (`settings.mask`
    says what is inpainted); returns the right panel without its margin, at R x R."""

    name, label = "diptych_prompting", LABELS["diptych_prompting"]

    def __init__(self, pipe: DiptychPipeline, settings: DiptychSettings, device: torch.device):
        self.pipe, self.settings, self.device = pipe, settings, torch.device(device)
        pipe.transformer.set_attn_processor(ReferenceAttentionProcessor(settings.attention_scale))
        pipe.set_progress_bar_config(disable=True)

    def diptych(self, x: EditInput) -> Diptych:
        """The diptych for one edit. `mask: right_panel` (the official code): the photo resized to the whole
        panel (`side`) on the left, a black right panel masked whole. `mask: face` [ours]: the photo resized to
        `panel`, its edges replicated over the margin, in both panels, and M masked in the right panel only.
        With `remove_background` the reference's pixels outside the segmentation (`_segment` of M) are white."""
        s, r = self.settings, x.image.shape[0]
        if x.image.shape != (r, r, 3) or x.image.dtype != np.uint8 or x.mask.shape != (r, r):
            raise ValueError(
                f"expected a square uint8 (R, R, 3) photo and an (R, R) mask, got {x.image.dtype} {x.image.shape} "
                f"and {x.mask.shape}"
            )
        prompt = DIPTYCH_PROMPT.format(subject=s.subject, target=x.prompt)
        if s.mask == "right_panel":  # the official code's make_diptych and mask_image (its lines 329-352)
            reference = _resize(x.image, s.side, Image.BICUBIC)
            if s.remove_background:
                face = _resize(x.mask.astype(np.uint8) * 255, s.side, Image.BILINEAR) > 127  # binarized at 0.5
                reference = _on_white(reference, _segment(face))
            mask = np.zeros((s.side, 2 * s.side), bool)
            mask[:, s.side :] = True
            return Diptych(np.concatenate([reference, np.zeros_like(reference)], axis=1), mask, prompt)
        pad = ((s.pixel_offset,) * 2, (s.pixel_offset,) * 2)
        photo = np.pad(_resize(x.image, s.panel, Image.BICUBIC), (*pad, (0, 0)), mode="edge")
        face = _resize(x.mask.astype(np.uint8) * 255, s.panel, Image.BILINEAR) > 127  # binarized at 0.5
        face = np.pad(face, pad)
        reference = _on_white(photo, _segment(face)) if s.remove_background else photo
        return Diptych(
            np.concatenate([reference, photo], axis=1), np.concatenate([np.zeros_like(face), face], 1), prompt
        )

    def edit(self, x: EditInput) -> np.ndarray:
        s, d = self.settings, self.diptych(x)
        generated = self.pipe(
            prompt=d.prompt,
            negative_prompt=s.negative_prompt,
            image=Image.fromarray(d.image),
            mask_image=Image.fromarray(d.mask.astype(np.uint8) * 255),
            num_inference_steps=s.steps,
            guidance_scale=s.guidance_scale,
            true_guidance_scale=s.true_guidance_scale,
            controlnet_conditioning_scale=s.controlnet_conditioning_scale,
            generator=torch.Generator(self.device).manual_seed(x.seed),
            max_sequence_length=s.max_sequence_length,
        )
        o = s.pixel_offset
        right = generated[o : o + s.panel, s.side + o : s.side + o + s.panel]
        right = np.clip(np.rint(right * 255), 0, 255).astype(np.uint8)
        return _resize(right, x.image.shape[0], Image.BICUBIC)

    def modules(self):
        p = self.pipe
        return [p.transformer, p.controlnet, p.vae, p.text_encoder, p.text_encoder_2]


# ------------------------------------------------------------------------------------- loading


def _looks_local(ref: str) -> bool:
    return os.path.isdir(ref) or ref.startswith((".", "/", "~")) or ref.count("/") > 1


def _missing_files(root: Path, files: dict[str, tuple[str, ...]]) -> list[str]:
    """The entries of `files` ({subfolder: globs}) that `root` lacks, as paths relative to it."""
    return [
        str(Path(sub, pattern.replace("|", " or ")))
        for sub, patterns in files.items()
        for pattern in patterns
        if not any(next((root / sub).glob(alternative), None) for alternative in pattern.split("|"))
    ]


def _flux_help(ref: str) -> str:
    parts = "; ".join(
        f"{sub}/ ({', '.join(f.replace('|', ' or ') for f in files)})" for sub, files in FLUX_FILES.items() if sub
    )
    return (
        f"FLUX.1-dev in the diffusers layout is needed: model_index.json and {parts}. {FLUX_DEV} is gated: accept "
        f"its licence (FLUX.1 [dev] non-commercial) on https://huggingface.co/{FLUX_DEV} while logged in, run "
        f"`hf auth login`, then `hf download {FLUX_DEV} --exclude flux1-dev.safetensors --exclude ae.safetensors "
        f"--local-dir DIR` (about 34 GB; the two excluded root files are the original-format copies, not needed; "
        f"older huggingface_hub: `huggingface-cli download`) and pass DIR as the FLUX model (given: {ref!r})."
    )


def _controlnet_help(ref: str) -> str:
    return (
        f"the alimama FLUX inpainting ControlNet is needed: config.json and diffusion_pytorch_model.safetensors "
        f"(4.28 GB, FLUX.1 [dev] non-commercial licence): `hf download {INPAINT_CONTROLNET} --local-dir DIR` and "
        f"pass DIR as the ControlNet (given: {ref!r})."
    )


def _problem(ref: str, files, help_text) -> str | None:
    """Why `ref` cannot be loaded, checked without loading anything (a second offline), or None."""
    if _looks_local(ref):
        root = Path(ref).expanduser()
        if not root.is_dir():
            return f"{ref} is not a directory; {help_text(ref)}"
        missing = _missing_files(root, files)
        return f"{ref} lacks {', '.join(missing)}; {help_text(ref)}" if missing else None
    reason = hub_unreachable(ref)
    return f"{ref}: {reason}; {help_text(ref)}" if reason else None


def load_diptych(
    flux: str, controlnet: str, settings: DiptychSettings, *, device, torch_dtype: torch.dtype
) -> DiptychPrompting:
    """Diptych Prompting on FLUX.1-dev (`flux`: a diffusers directory or hub id, e.g. FLUX_DEV) and the alimama
    inpainting ControlNet (`controlnet`: a directory or hub id, e.g. INPAINT_CONTROLNET), safetensors only.

    Raises `MethodUnavailable` naming the missing files and how to get them; both models are checked before
    anything loads, so one message says everything that is missing."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from transformers import CLIPTextModel, CLIPTokenizer, T5EncoderModel, T5TokenizerFast

    problems = [_problem(flux, FLUX_FILES, _flux_help), _problem(controlnet, CONTROLNET_FILES, _controlnet_help)]
    problems = [p for p in problems if p]
    if problems:
        raise MethodUnavailable("Diptych Prompting cannot be built: " + " | ".join(problems))
    weights = dict(use_safetensors=True, torch_dtype=torch_dtype)
    try:
        parts = dict(
            transformer=FluxTransformer2DModel.from_pretrained(flux, subfolder="transformer", **weights),
            vae=AutoencoderKL.from_pretrained(flux, subfolder="vae", **weights),
            text_encoder=CLIPTextModel.from_pretrained(flux, subfolder="text_encoder", **weights),
            text_encoder_2=T5EncoderModel.from_pretrained(flux, subfolder="text_encoder_2", **weights),
            tokenizer=CLIPTokenizer.from_pretrained(flux, subfolder="tokenizer"),
            tokenizer_2=T5TokenizerFast.from_pretrained(flux, subfolder="tokenizer_2"),
            scheduler=FlowMatchEulerDiscreteScheduler.from_pretrained(flux, subfolder="scheduler"),
        )
    except Exception as e:  # hub, cache and file errors come in many types; each means "not usable here"
        raise MethodUnavailable(
            f"FLUX.1-dev could not be loaded from {flux!r} ({type(e).__name__}: {str(e)[:300]}); {_flux_help(flux)}"
        ) from e
    try:
        net = FluxInpaintControlNetModel.from_pretrained(controlnet, **weights)
    except Exception as e:
        raise MethodUnavailable(
            f"the ControlNet could not be loaded from {controlnet!r} ({type(e).__name__}: {str(e)[:300]}); "
            + _controlnet_help(controlnet)
        ) from e
    extra, width = net.config.extra_condition_channels, parts["transformer"].config.in_channels
    if extra != 4 or net.config.in_channels != width:
        raise MethodUnavailable(
            f"{controlnet!r} is not an inpainting ControlNet for this FLUX: it takes {net.config.in_channels} + "
            f"{extra} control features, Diptych Prompting needs {width} (masked-image latents) + 4 (mask), "
            f'i.e. config.json with "extra_condition_channels": 4 as {INPAINT_CONTROLNET} has'
        )
    for m in (parts["transformer"], parts["vae"], parts["text_encoder"], parts["text_encoder_2"], net):
        m.eval()
    pipe = DiptychPipeline(controlnet=net, **parts).to(device)
    return DiptychPrompting(pipe, settings, device)


# ----------------------------------------------------------------------------- tiny random models


def tiny_t5_tokenizer():
    """A T5 tokenizer (SentencePiece-style Unigram over single characters, ▁-prefixed characters and the prompt
    template's words), built offline; it saves as tokenizer.json, which `T5TokenizerFast.from_pretrained` loads
    as it loads FLUX.1-dev's tokenizer_2/."""
    import string

    from transformers import T5TokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    for c in string.ascii_letters + string.digits + ".,'-!?":
        pieces += [("▁" + c, -3.0), (c, -4.0)]
    words = {w.strip(".,").lower() for w in DIPTYCH_PROMPT.split() if "{" not in w}
    pieces += [("▁" + w, -1.0) for w in sorted(words) if len(w) > 1]
    return T5TokenizerFast(vocab=pieces, extra_ids=0, model_max_length=T5_MAX_TOKENS)


def save_tiny_flux(path: str | os.PathLike, seed: int) -> Path:
    """A tiny random FLUX.1-dev (the same classes and layout: transformer/, vae/, text_encoder/, text_encoder_2/,
    tokenizer/, tokenizer_2/, scheduler/, model_index.json; safetensors), seeded, saved at `path`."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from facepaint.method.models import clip_tokenizer

    tokenizer_2 = tiny_t5_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed * 1000 + 1)
        transformer = FluxTransformer2DModel(**TINY_TRANSFORMER)
        torch.manual_seed(seed * 1000 + 2)
        vae = AutoencoderKL(**TINY_VAE)
        torch.manual_seed(seed * 1000 + 3)
        text_encoder = CLIPTextModel(CLIPTextConfig(**TINY_TEXT))
        torch.manual_seed(seed * 1000 + 4)
        text_encoder_2 = T5EncoderModel(T5Config(vocab_size=len(tokenizer_2), **TINY_T5))
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**FLUX_SCHEDULER),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer(),
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )
    pipe.save_pretrained(path, safe_serialization=True)
    return Path(path)


def save_tiny_flux_controlnet(path: str | os.PathLike, seed: int) -> Path:
    """A tiny random alimama-style inpainting ControlNet for `save_tiny_flux`'s transformer, saved at `path` as the
    published one is (config.json naming "FluxControlNetModel", with extra_condition_channels 4; safetensors). Its
    zero-initialised output layers get small random weights too, so that the control input changes the result."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed * 1000 + 5)
        net = FluxInpaintControlNetModel(**TINY_CONTROLNET)
        for layer in (*net.controlnet_blocks, net.controlnet_x_embedder):
            torch.nn.init.normal_(layer.weight, std=0.05)
    net.save_pretrained(path, safe_serialization=True)
    # The published config.json: diffusers' class name, no keys of the fields it lacks (ours default to None).
    config = Path(path) / "config.json"
    saved = {k: v for k, v in json.loads(config.read_text()).items() if v is not None}
    config.write_text(json.dumps({**saved, "_class_name": "FluxControlNetModel"}, indent=2))
    return Path(path)


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
    subject: str  # the subject's name in the prompt; the official code's is the reference's class name
    remove_background: bool  # True: the reference on white (its code: Grounded-SAM; here [ours] M, `_segment`)
    max_sequence_length: int  # 512: T5 tokens, FLUX.1-dev's and every FLUX pipeline's (alimama's included)
    dtype: str  # bf16: the official code's, for every FLUX part; fp16 | bf16 | fp32 (the CPU runs fp32)
    mask: str  # right_panel: the official code's layout (whole right panel inpainted); face: [ours] only M

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
        if self.dtype not in DTYPES:
            raise ValueError(f"diptych dtype must be one of {DTYPES} (the official code: bf16), got {self.dtype!r}")
        if self.mask not in MASKS:
            raise ValueError(
                f"diptych mask must be one of {MASKS} (right_panel: the official code's), got {self.mask!r}"
            )

    def torch_dtype(self, device: torch.device) -> torch.dtype:
        """The dtype FLUX, its text encoders, its VAE and the ControlNet load in: `dtype`, fp32 on the CPU."""
        return pick_dtype(self.dtype, torch.device(device))

    @property
    def side(self) -> int:
        """A panel's side in pixels, margin included (784 in the publication)."""
        return self.panel + 2 * self.pixel_offset
