"""What the three benchmarks share: their settings (params.yaml with a profile's overrides, and the
model architecture they build with random weights), the device's name and dense bf16 peak (for MFU),
the library versions, and writing the result json."""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
from pathlib import Path

import torch

from facepaint.method.models import Components, ModelConfig, load_components
from stages.common import load_params, section

REPO = Path(__file__).resolve().parents[1]
PAPER = "paper"  # profiles/paper.yaml: the full-size paper configuration


# ---------------------------------------------------------------------------------------- settings


def add_profile_argument(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "--profile",
        default=None,
        help="profiles/<name>.yaml applied over params.yaml, or `none` for params.yaml's own (demo) "
        f"values; default: {PAPER} on CUDA, none on the CPU",
    )


def bench_params(profile: str | None, device: torch.device) -> tuple[dict, str | None]:
    """(params.yaml with `profile`'s overrides, the profile's name or None). `profile` None picks the
    default: the paper's profile on CUDA, params.yaml's demo values on the CPU; "none" forces the latter."""
    if profile is None:
        profile = PAPER if device.type == "cuda" else None
    elif profile.lower() == "none":
        profile = None
    return load_params(REPO / "params.yaml", profile=profile), profile


def model_config(params: dict, **overrides) -> ModelConfig:
    """The params' `model` section as the architecture a benchmark builds: `pretrained` becomes `random`
    (the same SD1.5 inpainting architecture with random weights, model.seed): nothing is downloaded, and
    speed and memory do not depend on the weights' values. `tiny` stays tiny."""
    cfg = section(params, "model", ModelConfig, **overrides)
    return dataclasses.replace(cfg, source="random") if cfg.source == "pretrained" else cfg


def full_size(cfg: ModelConfig) -> bool:
    """Whether `cfg` builds the full-size SD1.5 architecture (not the tiny test model)."""
    return cfg.source != "tiny"


def random_components(cfg: ModelConfig, parts) -> Components:
    """The named parts of the architecture `cfg` (see model_config), randomly initialised; under
    torch.device("meta") they take no memory and no time (for counting FLOPs)."""
    if cfg.source == "pretrained":
        raise ValueError("benchmarks build random weights: pass model_config(params), not the pretrained config")
    return load_components(cfg, parts=parts)


# ---------------------------------------------------------------------------------------- hardware

# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s from the vendors' data sheets; the first match
# of the device name wins (so "H100 PCIe" before "H100").
PEAK_BF16_TFLOPS = [
    ("H200", 989.4),
    ("GH200", 989.4),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.4),
    ("H800", 989.4),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.1),
    ("RTX A6000", 154.8),
    ("A6000", 154.8),
    ("L4", 121.0),
    ("A10G", 70.0),
    ("A10", 125.0),
]


def peak_tflops(device_name: str, override: float | None = None) -> float | None:
    """The dense bf16 peak of the device called `device_name`, `override` when given, None if unknown."""
    if override:
        return override
    for key, tf in PEAK_BF16_TFLOPS:
        if key.lower() in device_name.lower():
            return tf
    return None


def forward_flops(fn) -> int:
    """Model FLOPs of calling `fn()` without gradients (run it on the meta device: no weights, no time)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc, torch.no_grad():
        fn()
    return fc.get_total_flops()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({torch.get_num_threads()} threads, {platform.processor() or platform.machine()})"


def versions() -> dict:
    import accelerate
    import diffusers
    import numpy
    import transformers

    v = {
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        v.update(cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    return v


def write_result(result: dict, name: str, device: torch.device, out: str | None = None) -> Path:
    """Write `result` to `out`, default bench/results/<name>-<cpu|cuda>.json, and say where."""
    path = (
        Path(out) if out else REPO / "bench" / "results" / f"{name}-{'cuda' if device.type == 'cuda' else 'cpu'}.json"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"written {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    return path
