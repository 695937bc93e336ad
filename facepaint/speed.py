"""Speed knobs shared by training, editing and the precompute stages. Each is a plain param of the
config that uses it (TrainConfig, FaceEditor, MaskConfig, LatentConfig), on by default where it helps;
bench/ measures each one on and off.

- attention: "sdpa" = torch's scaled_dot_product_attention through diffusers' AttnProcessor2_0
  (flash / memory-efficient kernels on a GPU; diffusers' default on torch >= 2) | "classic" =
  diffusers' AttnProcessor, an explicit softmax(QK^T)V that materialises the attention matrix
  (the reference, and the slow baseline of the benchmarks).
- channels_last: NHWC memory layout for the convolutions (cuDNN's tensor-core kernels want it).
- compile: a torch.compile mode ("default", "reduce-overhead" = CUDA graphs, "max-autotune",
  "max-autotune-no-cudagraphs") or "off". true / false in params.yaml mean "default" / "off".
- half_frozen: the frozen Linear / Conv weights stored in the autocast dtype. Autocast casts them to
  that dtype before every matmul anyway, so the result is the same while the weights take half the
  memory and the per-step casts disappear; norms and everything trainable stay fp32.
"""
from __future__ import annotations

import torch
from torch import nn

ATTENTION = ("sdpa", "classic")
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def compile_mode(value) -> str:
    """A compile param as a mode name: true -> "default", false/None -> "off"; ValueError otherwise."""
    if value is True:
        return "default"
    if value is False or value is None:
        return "off"
    if value not in COMPILE_MODES:
        raise ValueError(f"compile must be true, false or one of {COMPILE_MODES}, got {value!r}")
    return value


def check_attention(value: str) -> str:
    if value not in ATTENTION:
        raise ValueError(f"attention must be one of {ATTENTION}, got {value!r}")
    return value


def set_attention(model, kind: str) -> None:
    """Give every attention layer of a diffusers model (UNet, VAE) the processor `kind`."""
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    check_attention(kind)
    model.set_attn_processor(AttnProcessor2_0() if kind == "sdpa" else AttnProcessor())


def to_channels_last(model: nn.Module) -> nn.Module:
    """Convolution weights in NHWC; inputs follow (or pass them in channels_last too)."""
    return model.to(memory_format=torch.channels_last)


def compiled(module: nn.Module, mode, dynamic: bool | None = False):
    """torch.compile(module) in `mode` (see compile_mode), or the module itself when "off".

    dynamic=False: one static-shape graph per input shape (a batch of 1 and of 8 get one each),
    which is what the fixed shapes of training and editing want."""
    mode = compile_mode(mode)
    if mode == "off":
        return module
    return torch.compile(module, mode=None if mode == "default" else mode, dynamic=dynamic)


def half_frozen(model: nn.Module, dtype: torch.dtype) -> int:
    """Store the frozen weights and biases of `model`'s Linear and Conv layers in `dtype` (bf16/fp16);
    trainable parameters and norm layers keep their dtype. Returns how many tensors were converted."""
    n = 0
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d, nn.Conv1d)):
            for p in module.parameters(recurse=False):
                if not p.requires_grad and p.dtype != dtype and p.is_floating_point():
                    p.data = p.data.to(dtype)
                    n += 1
    return n
