"""Speed knobs shared by training, editing and the precompute stages. Each is a plain param of the
config that uses it (TrainConfig, MaskConfig, LatentConfig: their SPEED_KNOBS; `Speed` for editing),
on by default where it helps; bench/ measures each one on and off.

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

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it runs: `Speed` and its checks stay light (`facepaint --help`)
    import torch
    from torch import nn

ATTENTION = ("sdpa", "classic")
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
DTYPES = ("fp16", "bf16", "fp32")


@dataclass(frozen=True)
class Speed:
    """How an editor runs (`Inpainter`, `FaceEditor.from_artifact`, `facepaint edit`): the same image up
    to float rounding whatever the choice, half precision excepted (it changes an image visibly).

    - dtype: fp16 | bf16 | fp32 for the UNet, VAE and text encoder on a GPU (the CPU always runs fp32).
    - attention: sdpa | classic, for the UNet and the VAE (see `set_attention`).
    - channels_last: NHWC UNet and VAE weights; None = on with CUDA (cuDNN's tensor-core convolutions
      want it), off on the CPU (no consistent gain in bench/edit.py's CPU runs).
    - compile: torch.compile the UNet with static shapes: False / "off", True / "default", or a mode of
      COMPILE_MODES. The first edit at each batch size compiles (tens of seconds on a GPU).
    These defaults are the fast settings; bench/edit.py measures each against its slow alternative."""

    dtype: str = "fp16"
    attention: str = "sdpa"
    channels_last: bool | None = None
    compile: bool | str = False

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        check_attention(self.attention)
        if self.channels_last is not None and not isinstance(self.channels_last, bool):
            raise ValueError(f"channels_last must be True, False or None (on with CUDA), got {self.channels_last!r}")
        object.__setattr__(self, "compile", compile_mode(self.compile))


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
    import torch

    return model.to(memory_format=torch.channels_last)


def compiled(module: nn.Module, mode, dynamic: bool | None = False):
    """torch.compile(module) in `mode` (see compile_mode), or the module itself when "off".

    dynamic=False: one static-shape graph per input shape (a batch of 1 and of 8 get one each),
    which is what the fixed shapes of training and editing want."""
    mode = compile_mode(mode)
    if mode == "off":
        return module
    import torch

    return torch.compile(module, mode=None if mode == "default" else mode, dynamic=dynamic)


def half_frozen(model: nn.Module, dtype: torch.dtype) -> int:
    """Store the frozen weights and biases of `model`'s Linear and Conv layers in `dtype` (bf16/fp16);
    trainable parameters and norm layers keep their dtype. Returns how many tensors were converted."""
    from torch import nn

    n = 0
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d, nn.Conv1d)):
            for p in module.parameters(recurse=False):
                if not p.requires_grad and p.dtype != dtype and p.is_floating_point():
                    p.data = p.data.to(dtype)
                    n += 1
    return n
