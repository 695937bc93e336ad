"""The BrushNet baseline (Ju et al. 2024, SPEC section 5): TencentARC's public SD1.5 segmentation-mask
checkpoint run on a frozen SD1.5-architecture text-to-image model (by default its public script's base, Realistic
Vision V6.0 B1, with its UniPC sampler), written here from the published architecture.

    photo, M -> masked image (photo x (1 - M): the face black) -> VAE posterior sample x 0.18215
             -> conditioning (1, 5, h, w) = [masked-image latent (4), 1 - M at latent size (1)]
    each step: BrushNetModel(noisy latent, t, conditioning) -> zero-conv features x conditioning_scale
               -> added inside the frozen UNet (`unet_forward`) -> classifier-free guidance -> scheduler step
    -> VAE decode -> the decoded image as it is (headline row), or BrushNet's blurred blend (`blur_blend`)

What BrushNet is, read from TencentARC/BrushNet (its diffusers fork: src/diffusers/models/brushnet.py,
the BrushNet branches of models/unets/unet_2d_condition.py and unet_2d_blocks.py,
pipelines/brushnet/pipeline_brushnet.py, examples/brushnet/test_brushnet.py and evaluate_brushnet.py);
the checkpoint's config.json is the one that nullquant/ComfyUI-BrushNet ships as brushnet/brushnet.json
(both SD1.5 checkpoints have this config: `BrushNetModel.from_unet` of SD1.5's UNet made both):
- A full copy of the UNet without its attention: DownBlock2D x 4, a mid block of two resnets
  (`MidBlock2D` in the fork: one resnet + `num_layers` = 1 more, no attention), UpBlock2D x 4 with
  layers_per_block + 1 resnets. No conv_in: `conv_in_condition` (3x3) takes 4 + 5 = 9 channels,
  [noisy latent, masked-image latent, mask]. Time embedding as the UNet's. No text input is used.
- Zero-initialised 1x1 convolutions on every intermediate output: `brushnet_down_blocks` (conv_in's
  output, each down resnet, each downsampler: 12 for SD1.5), `brushnet_mid_block` (1),
  `brushnet_up_blocks` (each up resnet, each upsampler: 15). The SD1.5 checkpoint holds 322 tensors.
- Where the features are added in the frozen UNet: to conv_in's output (after it was stored as the
  first skip connection, so the skip itself stays unchanged); after each down layer (resnet + its
  cross-attention) and after each downsampler (the skips are the summed states); after the whole mid
  block; after each up layer (resnet + attention) and after each upsampler.
- The mask channel is 1 where the photo is KEPT and 0 in the hole (the pipeline's
  `mask.sum(1) < 0` on the [-1, 1] mask image; training: "hole denoted as 0, reserved as 1"), brought
  to latent size by `F.interpolate` (nearest). The masked image is the photo with the hole set to
  black (`init_image * (1 - mask)` in the example scripts); its latent is a posterior *sample*.
- Every feature is multiplied by `brushnet_conditioning_scale` (1.0 in all their scripts; the
  evaluation script's `--paintingnet_conditioning_scale` never reaches the pipeline). guess_mode off.
- "blended" (examples' `blended = False` by default, `--blended` in the evaluation script): after
  decoding, the mask is blurred (cv2.GaussianBlur, 21 x 21, sigma 0 -> 3.5), widened as
  1 - (1 - M)(1 - blur), and the photo is pasted back outside it; the float result is cast to uint8
  (truncated). Reproduced by `blur_blend`; off for the headline row.

How its public script runs it (examples/brushnet/test_brushnet.py, TencentARC/BrushNet at 0f9d9e5), which is
how the evaluation runs it by default (params.yaml `evaluate.brushnet`, `BrushNetSettings`):
- Base (l. 8): data/ckpt/realisticVisionV60B1_v51VAE, Realistic Vision V6.0 B1 with the V5.1 VAE, an SD1.5
  fine-tune from Civitai (same architecture) that their README lists in the checkpoint folder (`BASE_SOURCE`);
  runwayml/stable-diffusion-v1-5 is the commented-out alternative (l. 9). `evaluate.baselines.brushnet_base`.
  (Their evaluate_brushnet.py defaults to runwayml/stable-diffusion-v1-5 instead, l. 153, same sampler.)
- Sampler (l. 31): `UniPCMultistepScheduler.from_config(pipe.scheduler.config)`, i.e. UniPC with its own
  defaults (order 2, bh2, predict_x0) over the base's scheduler config (`public_scheduler`); 50 steps (l. 50),
  the pipeline's default guidance 7.5 and negative prompt None -> "" (pipeline_brushnet.py l. 841-842, 378-381),
  eta unused by UniPC, conditioning scale 1.0 (l. 23), fp16 (l. 25-27: evaluate.dtype fp16 on GPU), seed
  1234 for its one image (l. 44).
- Input (l. 37-42): the mask is 1 where the sum of its RGB is > 255; the photo is blacked out there
  (init_image x (1 - mask)) and the pipeline turns the mask image into the keep-mask (`condition`);
  `blended = False` (l. 15): the decoded image as it is.

Our choices, where their code leaves one or where it differs from this project:
- `evaluate.brushnet.scheduler: sampling` [ours] runs it with the evaluation's `sampling` instead
  (`generate.make_scheduler`: ddim | dpm, its steps, guidance and negative prompt) and `base: sd15_t2i`
  on SD1.5, the environment every other SD1.5 row samples in; not the default.
- Seeding: their pipeline draws the starting noise from the generator and the VAE posterior sample
  from torch's global RNG; here both come from the edit's generator, in that order, so an edit is a
  function of its seed (the evaluation's per-pair seed, shared by every method, not their fixed 1234).
- Their pipeline encodes the masked image once per guidance half (the image batch is doubled before
  `vae.encode(...).latent_dist.sample()`), so the two halves get different posterior samples; here one
  sample conditions both.
- strength < 1 (their pipeline has none: it always starts from noise): the photo's latent (posterior
  mean) noised to the first step run, as diffusers' inpainting pipeline does. At 1.0 it is theirs.
- Their pipeline can mark a UNet for FreeU or use other embeddings; `unet_forward` supports exactly the
  SD1.5 UNet (no class/addition embeddings, no FreeU) and says so otherwise.
"""

from __future__ import annotations

import inspect
import json
import os
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.unets.unet_2d_blocks import DownBlock2D, UNetMidBlock2D, UpBlock2D
from torch import nn

from facepaint.common.checks import check_fields, check_number
from facepaint.common.limits import MAX_STEPS
from facepaint.evaluation.methods.base import LABELS, EditInput, Method, MethodUnavailable, check_input
from facepaint.method.generate import encode_prompts, make_scheduler
from facepaint.method.models import (
    SD15_T2I,
    T2I_FILES,
    T2I_VOCABULARY,
    Components,
    ModelLoadError,
    hub_unreachable,
    load_t2i_components,
    missing_t2i_files,
    pick_device,
)
from facepaint.method.options import MAX_GUIDANCE, SamplingOptions

# TencentARC's config.json of the SD1.5 BrushNet checkpoints (without _class_name, _diffusers_version,
# _name_or_path): BrushNetModel.from_unet(SD1.5's UNet). Building it from this dict gives the checkpoint's
# exact key names and shapes (tests/test_brushnet.py pins them).
SD15_BRUSHNET = dict(
    in_channels=4,
    conditioning_channels=5,
    flip_sin_to_cos=True,
    freq_shift=0,
    down_block_types=("DownBlock2D",) * 4,
    mid_block_type="MidBlock2D",
    up_block_types=("UpBlock2D",) * 4,
    only_cross_attention=False,
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    downsample_padding=1,
    mid_block_scale_factor=1,
    act_fn="silu",
    norm_num_groups=32,
    norm_eps=1e-5,
    cross_attention_dim=768,
    transformer_layers_per_block=1,
    encoder_hid_dim=None,
    encoder_hid_dim_type=None,
    attention_head_dim=8,
    num_attention_heads=None,
    use_linear_projection=False,
    class_embed_type=None,
    addition_embed_type=None,
    addition_time_embed_dim=None,
    num_class_embeds=None,
    upcast_attention=False,
    resnet_time_scale_shift="default",
    projection_class_embeddings_input_dim=None,
    brushnet_conditioning_channel_order="rgb",
    conditioning_embedding_out_channels=(16, 32, 96, 256),
    global_pool_conditions=False,
    addition_embed_type_num_heads=64,
)
# The same architecture at the widths of facepaint.method.models.TINY_UNET_T2I, so its features fit that UNet.
TINY_BRUSHNET = dict(
    SD15_BRUSHNET,
    layers_per_block=1,
    block_out_channels=(32, 32, 64, 64),
    norm_num_groups=8,
    cross_attention_dim=32,
    attention_head_dim=4,
)

CHECKPOINT = "segmentation_mask_brushnet_ckpt"
FILES = ("config.json", "diffusion_pytorch_model.safetensors")
SOURCE = (
    "TencentARC's Google Drive folder https://drive.google.com/drive/folders/1fqmS1CEOvXCxNWFrsSYd_jHYXxrydh1n "
    "(linked from github.com/TencentARC/BrushNet's README, section 'Data Download')"
)
BLUR_KERNEL = 21  # their blended option's cv2.GaussianBlur kernel (at 512 px); sigma 0 -> 3.5
# The base its public script runs (test_brushnet.py l. 8), in diffusers' layout
BASE = "realisticVisionV60B1_v51VAE"
BASE_SOURCE = (
    f"Realistic Vision V6.0 B1 (Civitai) as the diffusers folder {BASE}: BrushNet's README lists it in its "
    f"checkpoint folder ({SOURCE}); TencentARC also publish that folder on Hugging Face: "
    f"`huggingface-cli download TencentARC/BrushEdit --include 'base_model/{BASE}/*' --local-dir DIR` "
    f"and pass DIR/base_model/{BASE} (their BrushEdit app loads it from there)"
)
BASES = ("brushnet_base", "sd15_t2i")  # evaluate.baselines entries BrushNet can run on
SCHEDULERS = ("unipc", "sampling")  # its public script's UniPC | [ours] the evaluation's sampling section


# Their diffusers fork (0.27.0.dev0) ends UniPC's schedule at the sigma of t = 0
# (src/diffusers/schedulers/scheduling_unipc_multistep.py l. 273); current diffusers defaults to 0 there
# (final_sigmas_type "zero") and names the fork's behaviour "sigma_min". Its other defaults are the fork's.
FORK_UNIPC = dict(final_sigmas_type="sigma_min")


def public_scheduler(config):
    """The scheduler its public script samples with (test_brushnet.py l. 31, evaluate_brushnet.py l. 182):
    `UniPCMultistepScheduler.from_config(pipe.scheduler.config)`, `config` being the base's scheduler config,
    as their fork's UniPC computes it (`FORK_UNIPC`)."""
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler.from_config({**config, **FORK_UNIPC})


class BrushNetFeatures(NamedTuple):
    """What BrushNet adds to the frozen UNet, in the UNet's order (already x conditioning_scale)."""

    down: list[torch.Tensor]  # conv_in's output, then each down layer and downsampler
    mid: torch.Tensor  # the mid block's output
    up: list[torch.Tensor]  # each up layer and upsampler


def _zero_conv(channels: int) -> nn.Conv2d:
    conv = nn.Conv2d(channels, channels, kernel_size=1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class BrushNetModel(ModelMixin, ConfigMixin):
    """BrushNet's branch (see the module docstring): the UNet without attention, fed the noisy latent and the
    5-channel conditioning, whose zero-conv outputs are added inside the frozen UNet.

    The constructor takes every field of TencentARC's config.json, so `from_pretrained` reads their folder
    as it is. Fields that only matter to attention blocks (BrushNet has none) are accepted and unused;
    fields that would add modules the SD1.5 checkpoint does not have must keep their SD1.5 values."""

    @register_to_config
    def __init__(
        self,
        in_channels: int = 4,
        conditioning_channels: int = 5,
        flip_sin_to_cos: bool = True,
        freq_shift: int = 0,
        down_block_types: tuple[str, ...] = ("DownBlock2D",) * 4,
        mid_block_type: str = "MidBlock2D",
        up_block_types: tuple[str, ...] = ("UpBlock2D",) * 4,
        block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280),
        layers_per_block: int = 2,
        downsample_padding: int = 1,
        mid_block_scale_factor: float = 1,
        act_fn: str = "silu",
        norm_num_groups: int = 32,
        norm_eps: float = 1e-5,
        resnet_time_scale_shift: str = "default",
        brushnet_conditioning_channel_order: str = "rgb",
        # used by attention blocks only, which BrushNet does not have (kept: they are in the config)
        only_cross_attention: bool = False,
        cross_attention_dim: int = 768,
        transformer_layers_per_block: int = 1,
        attention_head_dim: int = 8,
        num_attention_heads: int | None = None,
        use_linear_projection: bool = False,
        upcast_attention: bool = False,
        addition_embed_type_num_heads: int = 64,
        conditioning_embedding_out_channels: tuple[int, ...] = (16, 32, 96, 256),  # unused in their code too
        # extra embeddings and pooling: None / False in the SD1.5 checkpoints, not implemented here
        encoder_hid_dim: int | None = None,
        encoder_hid_dim_type: str | None = None,
        class_embed_type: str | None = None,
        addition_embed_type: str | None = None,
        addition_time_embed_dim: int | None = None,
        num_class_embeds: int | None = None,
        projection_class_embeddings_input_dim: int | None = None,
        global_pool_conditions: bool = False,
    ):
        super().__init__()
        unsupported = {
            k: v
            for k, v in dict(
                encoder_hid_dim=encoder_hid_dim,
                encoder_hid_dim_type=encoder_hid_dim_type,
                class_embed_type=class_embed_type,
                addition_embed_type=addition_embed_type,
                addition_time_embed_dim=addition_time_embed_dim,
                num_class_embeds=num_class_embeds,
                projection_class_embeddings_input_dim=projection_class_embeddings_input_dim,
                global_pool_conditions=global_pool_conditions or None,
            ).items()
            if v is not None
        }
        if resnet_time_scale_shift != "default" or brushnet_conditioning_channel_order != "rgb":
            unsupported.update(
                resnet_time_scale_shift=resnet_time_scale_shift,
                brushnet_conditioning_channel_order=brushnet_conditioning_channel_order,
            )
        n = len(block_out_channels)
        if (
            tuple(down_block_types) != ("DownBlock2D",) * n
            or tuple(up_block_types) != ("UpBlock2D",) * n
            or mid_block_type != "MidBlock2D"
        ):
            unsupported.update(down_block_types=down_block_types, mid_block_type=mid_block_type)
        if unsupported:
            raise ValueError(
                f"BrushNetModel implements the SD1.5 BrushNet architecture (brushnet.SD15_BRUSHNET); "
                f"this config asks for {unsupported}, which the SD1.5 checkpoints do not use"
            )
        c0, temb = block_out_channels[0], block_out_channels[0] * 4
        resnet = dict(
            temb_channels=temb,
            resnet_eps=norm_eps,
            resnet_act_fn=act_fn,
            resnet_groups=norm_num_groups,
            resnet_time_scale_shift=resnet_time_scale_shift,
        )

        # input and time embedding (the UNet's, with a 9-channel input convolution)
        self.conv_in_condition = nn.Conv2d(in_channels + conditioning_channels, c0, kernel_size=3, padding=1)
        self.time_proj = Timesteps(c0, flip_sin_to_cos, freq_shift)
        self.time_embedding = TimestepEmbedding(c0, temb, act_fn=act_fn)

        # down: one zero conv per output (conv_in, each resnet, each downsampler)
        self.down_blocks = nn.ModuleList()
        self.brushnet_down_blocks = nn.ModuleList([_zero_conv(c0)])
        channels = c0
        for i, out in enumerate(block_out_channels):
            last = i == n - 1
            self.down_blocks.append(
                DownBlock2D(
                    in_channels=channels,
                    out_channels=out,
                    num_layers=layers_per_block,
                    add_downsample=not last,
                    downsample_padding=downsample_padding,
                    **resnet,
                )
            )
            self.brushnet_down_blocks.extend(_zero_conv(out) for _ in range(layers_per_block + (not last)))
            channels = out

        # mid: two resnets, no attention (the fork's MidBlock2D)
        self.mid_block = UNetMidBlock2D(
            in_channels=channels,
            num_layers=1,
            add_attention=False,
            output_scale_factor=mid_block_scale_factor,
            **resnet,
        )
        self.brushnet_mid_block = _zero_conv(channels)

        # up: layers_per_block + 1 resnets per block, one zero conv per resnet and per upsampler
        self.up_blocks = nn.ModuleList()
        self.brushnet_up_blocks = nn.ModuleList()
        reversed_channels = list(reversed(block_out_channels))
        prev = reversed_channels[0]
        for i, out in enumerate(reversed_channels):
            last = i == n - 1
            self.up_blocks.append(
                UpBlock2D(
                    in_channels=reversed_channels[min(i + 1, n - 1)],
                    prev_output_channel=prev,
                    out_channels=out,
                    num_layers=layers_per_block + 1,
                    add_upsample=not last,
                    resolution_idx=i,
                    **resnet,
                )
            )
            self.brushnet_up_blocks.extend(_zero_conv(out) for _ in range(layers_per_block + 1 + (not last)))
            prev = out

    def forward(
        self, sample: torch.Tensor, timestep, cond: torch.Tensor, conditioning_scale: float = 1.0
    ) -> BrushNetFeatures:
        """The features for the frozen UNet. sample: (B, 4, h, w) the (scaled) noisy latent; cond: (B, 5, h, w)
        the masked-image latent and the keep-mask (`condition`)."""
        # 1. time
        emb = self.time_embedding(_time_proj(self.time_proj, timestep, sample))
        # 2. down, keeping every output (they are also the up path's skip connections)
        h = self.conv_in_condition(torch.cat([sample, cond], dim=1))
        outputs = [h]
        for block in self.down_blocks:
            h, states = _down_block(block, h, emb)
            outputs += states
        if len(outputs) != len(self.brushnet_down_blocks):
            raise RuntimeError(f"BrushNet: {len(outputs)} down outputs for {len(self.brushnet_down_blocks)} convs")
        down = [conv(x) * conditioning_scale for conv, x in zip(self.brushnet_down_blocks, outputs)]
        # 3. mid
        h = self.mid_block(h, emb)
        mid = self.brushnet_mid_block(h) * conditioning_scale
        # 4. up
        ups = []
        for block in self.up_blocks:
            k = len(block.resnets)
            skips, outputs = outputs[-k:], outputs[:-k]
            size = outputs[-1].shape[2:] if outputs else None  # their fork always passes the skip's size
            h, states = _up_block(block, h, skips, emb, upsample_size=size)
            ups += states
        if len(ups) != len(self.brushnet_up_blocks):
            raise RuntimeError(f"BrushNet: {len(ups)} up outputs for {len(self.brushnet_up_blocks)} convs")
        up = [conv(x) * conditioning_scale for conv, x in zip(self.brushnet_up_blocks, ups)]
        return BrushNetFeatures(down, mid, up)


# ------------------------------------------------------------------------- the frozen UNet with features


def _time_proj(time_proj: Timesteps, timestep, sample: torch.Tensor) -> torch.Tensor:
    """Sinusoidal timestep features for the batch of `sample`, in its dtype (as diffusers' UNet does)."""
    t = timestep if torch.is_tensor(timestep) else torch.tensor([timestep], device=sample.device)
    t = t.reshape(-1).to(sample.device).expand(sample.shape[0])
    return time_proj(t).to(dtype=sample.dtype)


def _layers(block):
    """(resnet, its attention or None) pairs of a diffusers down/up block."""
    if getattr(block, "s1", None) is not None:
        raise NotImplementedError(
            "facepaint.evaluation.methods.brushnet.unet_forward does not implement FreeU; disable it"
        )
    attentions = getattr(block, "attentions", None) or [None] * len(block.resnets)
    return zip(block.resnets, attentions)


def _attend(attn, h, context):
    return h if attn is None else attn(h, encoder_hidden_states=context, return_dict=False)[0]


def _down_block(block, h, temb, context=None, adds=None):
    """A diffusers (CrossAttn)DownBlock2D, with `next(adds)` added after each layer and after the downsampler
    (BrushNet's injection points) when `adds` is given. Returns (h, the block's skip states)."""
    states = []
    for resnet, attn in _layers(block):
        h = _attend(attn, resnet(h, temb), context)
        if adds is not None:
            h = h + next(adds)
        states.append(h)
    if block.downsamplers is not None:
        for downsampler in block.downsamplers:
            h = downsampler(h)
        if adds is not None:
            h = h + next(adds)
        states.append(h)
    return h, states


def _up_block(block, h, skips, temb, context=None, upsample_size=None, adds=None):
    """A diffusers (CrossAttn)UpBlock2D, with `next(adds)` added after each layer and after the upsampler when
    `adds` is given. Returns (h, each layer's and the upsampler's output before any addition)."""
    skips, states = list(skips), []
    for resnet, attn in _layers(block):
        h = _attend(attn, resnet(torch.cat([h, skips.pop()], dim=1), temb), context)
        states.append(h)
        if adds is not None:
            h = h + next(adds)
    if block.upsamplers is not None:
        for upsampler in block.upsamplers:
            h = upsampler(h, upsample_size)
        states.append(h)
        if adds is not None:
            h = h + next(adds)
    return h, states


def _check_sd15_unet(unet) -> None:
    c = unet.config
    extras = {
        k: c.get(k)
        for k in ("class_embed_type", "num_class_embeds", "addition_embed_type", "encoder_hid_dim_type")
        if c.get(k) is not None
    }
    if c.get("time_cond_proj_dim") is not None or c.get("center_input_sample"):
        extras.update(time_cond_proj_dim=c.get("time_cond_proj_dim"), center_input_sample=c.get("center_input_sample"))
    if extras or c.in_channels != 4:
        raise ValueError(
            f"brushnet.unet_forward runs SD1.5's 4-channel text-to-image UNet; this UNet has "
            f"in_channels={c.in_channels} and {extras or 'no extra embeddings'}"
        )


def feature_counts(unet) -> tuple[int, int]:
    """(down, up): how many BrushNet features the UNet's injection points take (12, 15 for SD1.5)."""
    down = 1 + sum(len(b.resnets) + (b.downsamplers is not None) for b in unet.down_blocks)
    up = sum(len(b.resnets) + (b.upsamplers is not None) for b in unet.up_blocks)
    return down, up


def unet_forward(unet, sample, timestep, context, features: BrushNetFeatures | None = None) -> torch.Tensor:
    """The noise prediction of a diffusers UNet2DConditionModel (SD1.5 text-to-image) with BrushNet's
    `features` added where BrushNet's fork adds them (module docstring). Without features it is the UNet's
    own forward, operation for operation (tests/test_brushnet.py checks it)."""
    _check_sd15_unet(unet)
    if features is not None:
        want = feature_counts(unet)
        if (len(features.down), len(features.up)) != want:
            raise ValueError(
                f"BrushNet gives {len(features.down)} down and {len(features.up)} up features; this UNet takes "
                f"{want[0]} and {want[1]}: the BrushNet checkpoint does not belong to this base model"
            )
    # 1. time
    emb = unet.time_embedding(_time_proj(unet.time_proj, timestep, sample))
    if unet.time_embed_act is not None:
        emb = unet.time_embed_act(emb)
    # 2. down: conv_in's output is stored as the first skip before BrushNet's feature is added
    h = unet.conv_in(sample)
    skips = [h]
    down = None if features is None else iter(features.down)
    if down is not None:
        h = h + next(down)
    for block in unet.down_blocks:
        h, states = _down_block(block, h, emb, context, down)
        skips += states
    # 3. mid, then BrushNet's mid feature on its output
    if getattr(unet.mid_block, "has_cross_attention", False):
        h = unet.mid_block(h, emb, encoder_hidden_states=context)
    else:
        h = unet.mid_block(h, emb)
    if features is not None:
        h = h + features.mid
    # 4. up (the upsample size is forwarded only when the latent is not a multiple of the total factor)
    forward_size = any(d % 2**unet.num_upsamplers for d in sample.shape[-2:])
    up = None if features is None else iter(features.up)
    for i, block in enumerate(unet.up_blocks):
        k = len(block.resnets)
        res, skips = skips[-k:], skips[:-k]
        size = skips[-1].shape[2:] if forward_size and i < len(unet.up_blocks) - 1 else None
        h, _ = _up_block(block, h, res, emb, context, size, up)
    # 5. out
    if unet.conv_norm_out is not None:
        h = unet.conv_act(unet.conv_norm_out(h))
    return unet.conv_out(h)


# ----------------------------------------------------------------------------------- conditioning


def _to_pixels(image: np.ndarray, device, dtype) -> torch.Tensor:
    """uint8 (R, R, 3) -> (1, 3, R, R) in [-1, 1], as diffusers' VaeImageProcessor normalises."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255.0
    return (2.0 * x - 1.0).to(device, dtype)


def condition(vae, image: np.ndarray, mask: np.ndarray, generator: torch.Generator) -> torch.Tensor:
    """BrushNet's conditioning (1, 5, h, w): the latent of the photo with the face black (a posterior sample
    x the VAE's scaling factor) and the keep-mask 1 - M brought to latent size by nearest interpolation."""
    keep = ~np.asarray(mask, bool)
    masked = (np.asarray(image) * keep[..., None]).astype(np.uint8)
    latent = vae.encode(_to_pixels(masked, vae.device, vae.dtype)).latent_dist.sample(generator)
    latent = latent * vae.config.scaling_factor
    keep_t = torch.from_numpy(keep)[None, None].to(latent.device, latent.dtype)
    return torch.cat([latent, F.interpolate(keep_t, size=latent.shape[-2:])], dim=1)


def _gaussian_kernel(size: int) -> np.ndarray:
    """cv2.getGaussianKernel(size, 0): sigma = 0.3 ((size - 1) / 2 - 1) + 0.8, normalised to sum 1."""
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    x = np.arange(size) - (size - 1) / 2
    k = np.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


def blur_blend(original: np.ndarray, result: np.ndarray, mask: np.ndarray, kernel: int = BLUR_KERNEL) -> np.ndarray:
    """BrushNet's own "blended" output: M blurred with cv2.GaussianBlur(kernel x kernel, sigma 0) (edges
    reflected as cv2's default), alpha = 1 - (1 - M)(1 - blur), photo x (1 - alpha) + result x alpha cast to
    uint8 by truncation as their script does. alpha is exactly 0 more than kernel // 2 pixels from M, so the
    photo's bytes are kept there."""
    from scipy.ndimage import correlate1d

    m = np.asarray(mask, np.float64)
    k = _gaussian_kernel(kernel)
    blurred = correlate1d(correlate1d(m * 255, k, axis=0, mode="mirror"), k, axis=1, mode="mirror") / 255
    alpha = (1 - (1 - m) * (1 - blurred))[..., None]
    return (original * (1 - alpha) + result * alpha).astype(np.uint8)


# ----------------------------------------------------------------------------------------- the method


class BrushNet(Method):
    """BrushNet on the frozen SD1.5 text-to-image model: `edit` returns the decoded image as it is, or with
    BrushNet's blurred blending when `blur_blend` (module docstring). Prompts are plain CLIP embeddings.
    `scheduler`: "unipc" samples with its public script's UniPC (`public_scheduler`), "sampling" with
    `options.scheduler`; steps, guidance, negative prompt and strength are `options`' either way."""

    name, label = "brushnet", LABELS["brushnet"]

    def __init__(
        self,
        components: Components,
        brushnet: BrushNetModel,
        options: SamplingOptions,
        resolution: int,
        *,
        device="auto",
        blur_blend: bool = False,
        conditioning_scale: float = 1.0,
        scheduler: str = "unipc",
    ):
        if scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {scheduler!r}")
        f = 2 ** (len(components.vae.config.block_out_channels) - 1)
        if resolution % f:
            raise ValueError(f"resolution must be a multiple of {f} (the VAE's factor), got {resolution}")
        _check_sd15_unet(components.unet)
        want = feature_counts(components.unet)
        have = (len(brushnet.brushnet_down_blocks), len(brushnet.brushnet_up_blocks))
        if have != want:
            raise ValueError(
                f"the BrushNet checkpoint has {have[0]} down and {have[1]} up zero convs; the base UNet takes "
                f"{want[0]} and {want[1]}: they are not the same architecture (an SD1.5 BrushNet needs an SD1.5 base)"
            )
        self.device = pick_device(device)
        self.options, self.resolution, self.vae_scale_factor = options, resolution, f
        self.blur_blend, self.conditioning_scale, self.sampler = blur_blend, conditioning_scale, scheduler
        self.vae, self.unet, self.text_encoder = (
            m.to(self.device).eval() for m in (components.vae, components.unet, components.text_encoder)
        )
        self.tokenizer, self.scheduler_config = components.tokenizer, components.scheduler.config
        if (
            brushnet.dtype != self.unet.dtype
        ):  # (loaded in the base's dtype already: a no-op cast makes diffusers warn)
            brushnet = brushnet.to(dtype=self.unet.dtype)
        self.brushnet = brushnet.to(self.device).eval()
        self.base = components.name

    def modules(self) -> list[torch.nn.Module]:
        return [self.vae, self.unet, self.text_encoder, self.brushnet]

    def make_scheduler(self):
        """A fresh scheduler for one edit, from the base's scheduler config."""
        if self.sampler == "unipc":
            return public_scheduler(self.scheduler_config)
        return make_scheduler(self.options.scheduler, self.scheduler_config)

    def edit(self, x: EditInput) -> np.ndarray:
        check_input(x, self.resolution)
        out = self.generate(x.image, x.mask, x.prompt, self.options.negative_prompt, x.seed)
        return blur_blend(x.image, out, x.mask) if self.blur_blend else out

    @torch.inference_mode()
    def generate(
        self, image: np.ndarray, mask: np.ndarray, prompt: str, negative_prompt: str, seed: int
    ) -> np.ndarray:
        """The decoded BrushNet inpainting of `image` where `mask` (uint8 (R, R, 3)), not blended."""
        c, dev, dtype = self.options, self.device, self.unet.dtype
        # 1. Encode the prompts (plain CLIP, no adapter); the guidance batch is [negative, prompt]
        cfg_on = c.guidance_scale > 1
        texts = [negative_prompt, prompt] if cfg_on else [prompt]
        context, cut = encode_prompts(self.text_encoder, self.tokenizer, texts)
        if cut[-1]:
            warnings.warn(f"prompt longer than CLIP's 77 tokens; this part has no effect: {cut[-1]!r}", stacklevel=3)
        context = context.to(dtype)
        # 2. Timesteps (strength < 1 skips the first ones, as diffusers' img2img/inpainting pipelines do)
        scheduler = self.make_scheduler()
        scheduler.set_timesteps(c.steps, device=dev)
        start = c.steps - min(int(c.steps * c.strength), c.steps)
        timesteps = scheduler.timesteps[start * scheduler.order :]
        if start and hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(start * scheduler.order)
        # 3. Noise, then the conditioning, both from the edit's generator
        from diffusers.utils.torch_utils import randn_tensor

        generator = torch.Generator(dev).manual_seed(int(seed))
        h = self.resolution // self.vae_scale_factor
        noise = randn_tensor((1, self.unet.config.in_channels, h, h), generator=generator, device=dev, dtype=dtype)
        cond = condition(self.vae, image, mask, generator).to(dtype)
        if start:
            photo = self.vae.encode(_to_pixels(image, dev, self.vae.dtype)).latent_dist.mean
            latents = scheduler.add_noise(photo.to(dtype) * self.vae.config.scaling_factor, noise, timesteps[:1])
        else:
            latents = noise * scheduler.init_noise_sigma
        cond = torch.cat([cond] * len(texts))
        step_kwargs = {"generator": generator} if "generator" in inspect.signature(scheduler.step).parameters else {}
        # 4. Denoise: BrushNet's features into the frozen UNet, classifier-free guidance, scheduler step
        for t in timesteps:
            x = scheduler.scale_model_input(torch.cat([latents] * len(texts)), t)
            features = self.brushnet(x, t, cond, self.conditioning_scale)
            eps = unet_forward(self.unet, x, t, context, features)
            if cfg_on:
                uncond, text = eps.chunk(2)
                eps = uncond + c.guidance_scale * (text - uncond)
            latents = scheduler.step(eps, t, latents, **step_kwargs, return_dict=False)[0]
        # 5. Decode
        decoded = self.vae.decode(latents.to(self.vae.dtype) / self.vae.config.scaling_factor).sample
        out = (decoded / 2 + 0.5).clamp(0, 1)[0].permute(1, 2, 0).float().cpu().numpy()
        return np.clip(np.rint(out * 255), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------- loading


def _unavailable(what: str) -> MethodUnavailable:
    return MethodUnavailable(f"BrushNet is unavailable: {what}")


def _checkpoint_problem(ref: str, subfolder: str | None) -> str | None:
    """Why the BrushNet checkpoint `ref` (+ subfolder) cannot be read now, or None (checked in about a second)."""
    where = os.path.join(ref, subfolder) if subfolder else ref
    get = (
        f"download the folder {CHECKPOINT} (it holds {' and '.join(FILES)}) from {SOURCE} and pass that "
        f"directory as the BrushNet checkpoint"
    )
    if os.path.isdir(ref):
        missing = [f for f in FILES if not os.path.isfile(os.path.join(where, f))]
        if missing:
            return f"the checkpoint directory {where} lacks {', '.join(missing)}; {get}"
        return None
    if ref.startswith((".", "/", "~")) or ref.count("/") != 1:
        return f"the BrushNet checkpoint {ref!r} is neither a directory nor a Hugging Face id; {get}"
    reason = hub_unreachable(ref)
    if reason:
        return (
            f"the BrushNet checkpoint {ref}{f' (subfolder {subfolder})' if subfolder else ''} cannot be loaded: "
            f"{reason}; {get} (or copy the HF_HOME cache of a machine that downloaded it)"
        )
    return None


def _base_problem(ref: str) -> str | None:
    """Why the SD1.5 text-to-image base `ref` cannot be loaded now, or None (checked in about a second)."""
    if os.path.isdir(ref):
        missing = missing_t2i_files(ref)
        what = f"the base model directory {ref} lacks {', '.join(missing)}" if missing else None
    elif ref.startswith((".", "/", "~")) or ref.count("/") != 1:
        files = ", ".join((*T2I_FILES, *(" + ".join(group) for group in T2I_VOCABULARY)))
        what = f"the base model directory {ref} does not exist (it must hold {files})"
    else:
        reason = hub_unreachable(ref)
        what = f"the base model {ref} cannot be loaded: {reason}" if reason else None
    if what:
        return (
            f"{what}; its public script's base is {BASE_SOURCE}; for SD1.5 run `huggingface-cli download "
            f"{SD15_T2I} --local-dir DIR` on a machine with internet and pass DIR"
        )
    return None


def _checkpoint_files(ref: str, subfolder: str | None) -> tuple[Path, Path]:
    if os.path.isdir(ref):
        where = Path(ref, subfolder) if subfolder else Path(ref)
        return where / FILES[0], where / FILES[1]
    from huggingface_hub import hf_hub_download

    return tuple(Path(hf_hub_download(ref, f, subfolder=subfolder)) for f in FILES)


def load_brushnet_model(
    ref: str, subfolder: str | None = None, torch_dtype: torch.dtype | None = None
) -> BrushNetModel:
    """The BrushNet checkpoint as TencentARC ships it (config.json + diffusion_pytorch_model.safetensors in a
    directory, or a hub id + subfolder), loaded with exact key and shape match: a file that is not an SD1.5
    BrushNet raises ModelLoadError naming what differs, instead of loading half of it."""
    from safetensors.torch import load_file

    problem = _checkpoint_problem(ref, subfolder)
    if problem:
        raise _unavailable(problem)
    config_path, weights_path = _checkpoint_files(ref, subfolder)
    config = json.loads(config_path.read_text())
    known = set(inspect.signature(BrushNetModel.__init__).parameters) - {"self"}
    unknown = sorted(k for k in config if not k.startswith("_") and k not in known)
    if unknown:
        raise ModelLoadError(f"{config_path}: fields {unknown} are not in TencentARC's BrushNet config; is it one?")
    with torch.device("meta"):  # no random init of ~0.5 B parameters that the checkpoint replaces
        model = BrushNetModel.from_config(config)
    state = load_file(weights_path)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    shapes = [k for k in set(expected) & set(state) if tuple(state[k].shape) != expected[k]]
    if missing or extra or shapes:
        raise ModelLoadError(
            f"{weights_path} does not match the BrushNet of {config_path}: missing {missing[:5]} "
            f"({len(missing)}), unexpected {extra[:5]} ({len(extra)}), other shapes {sorted(shapes)[:5]}"
        )
    model.load_state_dict(state, strict=True, assign=True)
    return model.to(dtype=torch_dtype or torch.float32).eval()


def load_brushnet(
    base: str,
    brushnet: str,
    options: SamplingOptions,
    resolution: int,
    device="auto",
    torch_dtype: torch.dtype | None = None,
    *,
    subfolder: str | None = None,
    blur_blend: bool = False,
    conditioning_scale: float = 1.0,
    scheduler: str = "unipc",
) -> BrushNet:
    """The BrushNet method: `base` an SD1.5 text-to-image model (hub id, e.g. models.SD15_T2I, or a diffusers
    directory), `brushnet` the segmentation-mask checkpoint (a directory holding config.json and
    diffusion_pytorch_model.safetensors, or a hub id with `subfolder`). Anything missing raises
    MethodUnavailable naming the files and where to get them, after about a second offline."""
    problems = [p for p in (_checkpoint_problem(brushnet, subfolder), _base_problem(base)) if p]
    if problems:
        raise _unavailable("; and ".join(problems))
    try:
        components = load_t2i_components(base, torch_dtype=torch_dtype)
    except ModelLoadError as e:
        raise _unavailable(str(e)) from e
    model = load_brushnet_model(brushnet, subfolder, torch_dtype or components.unet.dtype)
    return BrushNet(
        components,
        model,
        options,
        resolution,
        device=device,
        blur_blend=blur_blend,
        conditioning_scale=conditioning_scale,
        scheduler=scheduler,
    )


def save_tiny_brushnet(
    path: str | os.PathLike, seed: int = 0, feature_std: float = 0.05, full_size: bool = False
) -> Path:
    """A tiny random BrushNet (`TINY_BRUSHNET`, fits models.TINY_UNET_T2I; `full_size`: `SD15_BRUSHNET`, for the
    paper-size tests) saved in TencentARC's layout: config.json + diffusion_pytorch_model.safetensors. Its zero
    convs get N(0, feature_std) weights (a trained checkpoint's are not zero), so it changes what the UNet
    predicts."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed * 1000 + 7)
        model = BrushNetModel(**(SD15_BRUSHNET if full_size else TINY_BRUSHNET))
        with torch.no_grad():
            for conv in (*model.brushnet_down_blocks, model.brushnet_mid_block, *model.brushnet_up_blocks):
                conv.weight.normal_(std=feature_std)
    model.save_pretrained(path, safe_serialization=True)
    return Path(path)


@dataclass(frozen=True)
class BrushNetSettings:  # params.yaml `evaluate.brushnet`: BrushNet's own options (see the module docstring)
    base: str  # the evaluate.baselines entry of its base: brushnet_base (its script's Realistic Vision) | sd15_t2i
    scheduler: str  # unipc: its script's (`public_scheduler`, `steps`, `guidance_scale`, negative prompt "") |
    # sampling: [ours] the evaluation's sampling section (scheduler, steps, guidance, negative prompt, strength)
    steps: int  # with unipc: its script's num_inference_steps (50)
    guidance_scale: float  # with unipc: its pipeline's default (7.5; its script passes none)
    conditioning_scale: float  # multiplies every BrushNet feature (1.0 in all its scripts)
    blur_blend: bool  # its "blended" option (blurred-mask paste-back); off for the headline row

    def __post_init__(self):
        check_fields(self, "evaluate.brushnet")
        if self.base not in BASES:
            raise ValueError(f"evaluate.brushnet.base must be one of {BASES}, got {self.base!r}")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"evaluate.brushnet.scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}")
        check_number("evaluate.brushnet.steps", self.steps, 1, MAX_STEPS, whole=True)
        check_number("evaluate.brushnet.guidance_scale", self.guidance_scale, 0, MAX_GUIDANCE)
        if not self.conditioning_scale >= 0:
            raise ValueError(f"evaluate.brushnet.conditioning_scale must be >= 0, got {self.conditioning_scale}")

    def options(self, sampling: SamplingOptions) -> SamplingOptions:
        """What BrushNet samples with: the evaluation's `sampling` as it is with scheduler `sampling`; with
        `unipc` its script's steps and guidance, negative prompt "" (its None) and strength 1 (its pipeline
        always starts from noise). The scheduler itself is the method's (`BrushNet.make_scheduler`)."""
        if self.scheduler == "sampling":
            return sampling
        script = dict(steps=self.steps, guidance_scale=self.guidance_scale, negative_prompt="", strength=1.0)
        return replace(sampling, **script)
