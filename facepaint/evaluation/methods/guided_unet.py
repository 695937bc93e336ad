"""guided-diffusion's unconditional UNet (openai/guided-diffusion, the 256x256 ImageNet model that Blended
Diffusion starts from) as a diffusers `UNet2DModel`, and the conversion of its checkpoint's keys.

Its architecture, in guided-diffusion's own flag names (`GuidedUNetArch`, params.yaml
`evaluate.blended_diffusion.model`): `num_channels` channels times `channel_mult` per level, `num_res_blocks`
residual blocks per level, self-attention at the resolutions `attention_resolutions` with `num_head_channels`
channels per head; fixed, as Blended Diffusion's code sets them: learned sigmas (6 output channels: the noise and
the variance interpolation), scale-shift norm (the time embedding scales and shifts the second group norm of each
residual block), residual blocks for down- and upsampling (average pooling, nearest upsampling), no class.

diffusers has this block structure (`ResnetBlock2D` with `time_embedding_norm="scale_shift"` and up/down,
`AttnDownBlock2D`/`AttnUpBlock2D` with `downsample_type="resnet"`) but no converter for guided-diffusion's
checkpoints (its consistency-model script converts a relative whose attention splits q, k and v differently),
so `convert_guided_state_dict` is ours: it names every key of the guided-diffusion layout for an architecture
and maps it; guided-diffusion's "legacy" attention stores q, k, v interleaved per head ([q_h, k_h, v_h] for each
head h), which the conversion unpacks into diffusers' separate projections.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from facepaint.common.checks import check_fields, check_number
from facepaint.common.errors import FacepaintError


class GuidedCheckpointError(FacepaintError):
    """A guided-diffusion checkpoint that is missing or does not match the architecture."""


@dataclass
class GuidedUNetArch:  # guided-diffusion's flags; params.yaml evaluate.blended_diffusion.model names one of ARCHS
    image_size: int
    num_channels: int
    num_res_blocks: int
    channel_mult: list[int]
    attention_resolutions: list[int]
    num_head_channels: int

    def __post_init__(self):
        check_fields(self, "evaluate.blended_diffusion.model")
        check_number("evaluate.blended_diffusion.model.image_size", self.image_size, 8, 1024, whole=True)
        check_number("evaluate.blended_diffusion.model.num_res_blocks", self.num_res_blocks, 1, 8, whole=True)
        if self.num_channels % 32 or not 32 <= self.num_channels <= 1024:
            raise ValueError(
                f"evaluate.blended_diffusion.model.num_channels must be a multiple of 32 (group norm) in [32, 1024], "
                f"got {self.num_channels}"
            )
        if not self.channel_mult or any(not isinstance(m, int) or m < 1 for m in self.channel_mult):
            raise ValueError(f"evaluate.blended_diffusion.model.channel_mult must be positive integers, "
                             f"got {self.channel_mult}")  # fmt: skip
        if self.image_size % 2 ** (len(self.channel_mult) - 1):
            raise ValueError(
                f"evaluate.blended_diffusion.model.image_size {self.image_size} must be divisible by "
                f"2^(levels - 1) = {2 ** (len(self.channel_mult) - 1)}"
            )
        for ch in self.widths:
            if ch % self.num_head_channels:
                raise ValueError(
                    f"evaluate.blended_diffusion.model.num_head_channels {self.num_head_channels} must divide every "
                    f"level's width {self.widths}"
                )

    @property
    def widths(self) -> list[int]:
        return [self.num_channels * m for m in self.channel_mult]

    def attends(self, level: int) -> bool:
        """Whether `level` (0 = full resolution) has self-attention."""
        return self.image_size // 2**level in self.attention_resolutions


# The architecture of 256x256_diffusion_uncond.pt, as Blended Diffusion's code builds it (channel_mult: guided-
# diffusion's default for 256 px)
UNCOND_256 = GuidedUNetArch(
    image_size=256,
    num_channels=256,
    num_res_blocks=2,
    channel_mult=[1, 1, 2, 2, 4, 4],
    attention_resolutions=[32, 16, 8],
    num_head_channels=64,
)

# The demo's: a tiny UNet of the same design at 64 px (the demo stage saves a random one in the checkpoint's layout)
TINY = GuidedUNetArch(
    image_size=64,
    num_channels=32,
    num_res_blocks=1,
    channel_mult=[1, 2, 2],
    attention_resolutions=[16],
    num_head_channels=32,
)
ARCHS = {"uncond_256": UNCOND_256, "tiny": TINY}


def unet_config(arch: GuidedUNetArch) -> dict:
    """The UNet2DModel config of `arch`."""
    levels = range(len(arch.channel_mult))
    down = ["AttnDownBlock2D" if arch.attends(lv) else "ResnetDownsampleBlock2D" for lv in levels]
    up = ["AttnUpBlock2D" if arch.attends(lv) else "ResnetUpsampleBlock2D" for lv in reversed(levels)]
    return {
        "sample_size": arch.image_size,
        "in_channels": 3,
        "out_channels": 6,  # learned sigmas: the noise, then the variance interpolation
        "layers_per_block": arch.num_res_blocks,
        "block_out_channels": arch.widths,
        "down_block_types": down,
        "up_block_types": up,
        "attention_head_dim": arch.num_head_channels,
        "attn_norm_num_groups": 32,  # diffusers' mid block drops its attention's norm under scale-shift otherwise
        "resnet_time_scale_shift": "scale_shift",
        "downsample_type": "resnet",
        "upsample_type": "resnet",
        "flip_sin_to_cos": True,  # guided-diffusion's embedding is [cos, sin]
        "freq_shift": 0,
        "norm_num_groups": 32,
        "norm_eps": 1e-5,
        "act_fn": "silu",
        "dropout": 0.0,
    }


def build_unet(arch: GuidedUNetArch):
    from diffusers import UNet2DModel

    return UNet2DModel(**unet_config(arch))


# ----------------------------------------------------------------------------------------- the key mapping


def _resblock(old: str, new: str) -> dict[str, str]:
    pairs = {"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj",
             "out_layers.0": "norm2", "out_layers.3": "conv2", "skip_connection": "conv_shortcut"}  # fmt: skip
    return {f"{old}.{o}": f"{new}.{n}" for o, n in pairs.items()}


def module_map(arch: GuidedUNetArch) -> tuple[dict[str, str], dict[str, str]]:
    """({guided-diffusion module: diffusers module} of residual blocks and convolutions, {the same} of attention
    blocks), in guided-diffusion's module order."""
    plain = {"time_embed.0": "time_embedding.linear_1", "time_embed.2": "time_embedding.linear_2",
             "input_blocks.0.0": "conv_in", "out.0": "conv_norm_out", "out.2": "conv_out"}  # fmt: skip
    attn: dict[str, str] = {}
    levels = len(arch.channel_mult)
    k = 1
    for lv in range(levels):
        for j in range(arch.num_res_blocks):
            plain.update(_resblock(f"input_blocks.{k}.0", f"down_blocks.{lv}.resnets.{j}"))
            if arch.attends(lv):
                attn[f"input_blocks.{k}.1"] = f"down_blocks.{lv}.attentions.{j}"
            k += 1
        if lv < levels - 1:
            plain.update(_resblock(f"input_blocks.{k}.0", f"down_blocks.{lv}.downsamplers.0"))
            k += 1
    plain.update(_resblock("middle_block.0", "mid_block.resnets.0"))
    attn["middle_block.1"] = "mid_block.attentions.0"
    plain.update(_resblock("middle_block.2", "mid_block.resnets.1"))
    k = 0
    for u, lv in enumerate(reversed(range(levels))):
        for j in range(arch.num_res_blocks + 1):
            plain.update(_resblock(f"output_blocks.{k}.0", f"up_blocks.{u}.resnets.{j}"))
            sub = 1
            if arch.attends(lv):
                attn[f"output_blocks.{k}.1"] = f"up_blocks.{u}.attentions.{j}"
                sub = 2
            if j == arch.num_res_blocks and lv > 0:
                plain.update(_resblock(f"output_blocks.{k}.{sub}", f"up_blocks.{u}.upsamplers.0"))
            k += 1
    return plain, attn


def convert_guided_state_dict(state: dict[str, torch.Tensor], arch: GuidedUNetArch) -> dict[str, torch.Tensor]:
    """A guided-diffusion UNet state dict -> the UNet2DModel's of unet_config(arch). Raises GuidedCheckpointError
    naming the keys that are missing or left over (another architecture's checkpoint)."""
    plain, attn = module_map(arch)
    out, used = {}, set()
    for old, new in plain.items():
        for suffix in ("weight", "bias"):
            key = f"{old}.{suffix}"
            if key in state:
                out[f"{new}.{suffix}"] = state[key]
                used.add(key)
    for old, new in attn.items():
        norm_w, norm_b = f"{old}.norm.weight", f"{old}.norm.bias"
        qkv_w, qkv_b = f"{old}.qkv.weight", f"{old}.qkv.bias"
        proj_w, proj_b = f"{old}.proj_out.weight", f"{old}.proj_out.bias"
        if not all(k in state for k in (norm_w, norm_b, qkv_w, qkv_b, proj_w, proj_b)):
            continue  # reported as missing below
        width = state[norm_w].shape[0]
        heads = width // arch.num_head_channels
        w = state[qkv_w].reshape(heads, 3, width // heads, width)  # legacy order: per head, q then k then v
        b = state[qkv_b].reshape(heads, 3, width // heads)
        out[f"{new}.group_norm.weight"], out[f"{new}.group_norm.bias"] = state[norm_w], state[norm_b]
        for i, name in enumerate(("to_q", "to_k", "to_v")):
            out[f"{new}.{name}.weight"] = w[:, i].reshape(width, width).contiguous()
            out[f"{new}.{name}.bias"] = b[:, i].reshape(width).contiguous()
        out[f"{new}.to_out.0.weight"] = state[proj_w].reshape(width, width)
        out[f"{new}.to_out.0.bias"] = state[proj_b]
        used.update((norm_w, norm_b, qkv_w, qkv_b, proj_w, proj_b))
    left = sorted(set(state) - used)
    subs = ("norm", "qkv", "proj_out")
    expected = {f"{m}.{s}" for m in plain for s in ("weight", "bias")}
    expected |= {f"{m}.{sub}.{s}" for m in attn for sub in subs for s in ("weight", "bias")}
    missing = sorted(
        k for k in expected - set(state) if ".skip_connection." not in k
    )  # 1x1 skips: only if widths change
    if left or missing:
        raise GuidedCheckpointError(
            f"the checkpoint does not match evaluate.blended_diffusion.model {arch}: "
            f"{len(missing)} missing keys {missing[:4]}, {len(left)} unexpected keys {left[:4]}; check that the file "
            "is guided-diffusion's 256x256_diffusion_uncond.pt (or the model settings match the file)"
        )
    return out


def load_guided_unet(path: str | os.PathLike, arch: GuidedUNetArch, dtype=torch.float32):
    """The UNet2DModel of a guided-diffusion checkpoint file (a plain state dict, as openai publishes it)."""
    path = Path(path)
    if not path.is_file():
        raise GuidedCheckpointError(
            f"guided-diffusion checkpoint {path} not found: download 256x256_diffusion_uncond.pt (openai/"
            "guided-diffusion's unconditional ImageNet model, as Blended Diffusion's README says) and set "
            "evaluate.baselines.guided_diffusion to its path"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same error for the user
        raise GuidedCheckpointError(f"{path} is not a readable PyTorch checkpoint: {e}") from e
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise GuidedCheckpointError(f"{path} is not a state dict of tensors (a guided-diffusion UNet checkpoint)")
    converted = convert_guided_state_dict(state, arch)  # before building: a wrong file fails in a second
    unet = build_unet(arch)
    result = unet.load_state_dict(converted, strict=False)
    if result.missing_keys or result.unexpected_keys:  # a mapping defect, or 1x1 skips the widths need
        raise GuidedCheckpointError(
            f"{path}: after conversion {len(result.missing_keys)} weights are missing {result.missing_keys[:4]} and "
            f"{len(result.unexpected_keys)} left over {result.unexpected_keys[:4]}"
        )
    if dtype != torch.float32:
        unet = unet.to(dtype)
    return unet.eval().requires_grad_(False)


def to_guided_state_dict(state: dict[str, torch.Tensor], arch: GuidedUNetArch) -> dict[str, torch.Tensor]:
    """The inverse of convert_guided_state_dict: a UNet2DModel state dict in guided-diffusion's layout (for the demo's
    and the tests' random checkpoints, saved as openai saves theirs)."""
    plain, attn = module_map(arch)
    out = {}
    for old, new in plain.items():
        for suffix in ("weight", "bias"):
            if f"{new}.{suffix}" in state:
                out[f"{old}.{suffix}"] = state[f"{new}.{suffix}"]
    for old, new in attn.items():
        width = state[f"{new}.group_norm.weight"].shape[0]
        heads, ch = width // arch.num_head_channels, arch.num_head_channels
        w = torch.stack([state[f"{new}.{n}.weight"].reshape(heads, ch, width) for n in ("to_q", "to_k", "to_v")], 1)
        b = torch.stack([state[f"{new}.{n}.bias"].reshape(heads, ch) for n in ("to_q", "to_k", "to_v")], 1)
        out[f"{old}.norm.weight"], out[f"{old}.norm.bias"] = (
            state[f"{new}.group_norm.weight"],
            state[f"{new}.group_norm.bias"],
        )
        out[f"{old}.qkv.weight"] = w.reshape(3 * width, width, 1).contiguous()
        out[f"{old}.qkv.bias"] = b.reshape(3 * width).contiguous()
        out[f"{old}.proj_out.weight"] = state[f"{new}.to_out.0.weight"].reshape(width, width, 1)
        out[f"{old}.proj_out.bias"] = state[f"{new}.to_out.0.bias"]
    return out


def save_random_guided_checkpoint(path: str | os.PathLike, arch: GuidedUNetArch, seed: int) -> Path:
    """A randomly initialised UNet of `arch`, its zero-initialised output layers included as diffusers initialises
    them, saved as a guided-diffusion checkpoint (a plain state dict) at `path`."""
    from facepaint.common.io import atomic_path

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = build_unet(arch)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(to_guided_state_dict(unet.state_dict(), arch), tmp)
    return path
