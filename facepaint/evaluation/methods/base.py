"""What every method of the evaluation is: `Method.edit(EditInput) -> uint8 (R, R, 3)` on a square test photo
at the model's resolution R, its label in the tables, and `measure`, which times one edit: CUDA events and
peak memory on a GPU, CPU time on the CPU (warm up first, with one untimed edit, as the evaluation does).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from facepaint.common.errors import FacepaintError
from facepaint.method.models import pick_device

LABELS = {
    "ours": "ours",
    "ours_no_blend": "ours (no blending)",
    "sd15_inpaint": "SD1.5 inpaint",
    "blended_latent_diffusion": "Blended Latent Diffusion",
    "blended_latent_diffusion_9ch": "Blended Latent Diffusion (9-channel inpainting UNet)",
    "paint_by_example": "Paint-by-Example",
    "brushnet": "BrushNet",
    "diptych_prompting": "Diptych Prompting",
    "blended_diffusion": "Blended Diffusion",
    "msagan": "MSaGAN",
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


def check_input(x: EditInput, resolution: int) -> None:
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
    note: str | None = None  # what a reader of the table must know of how it ran (its own size, no text, ...)

    def edit(self, x: EditInput) -> np.ndarray:
        raise NotImplementedError

    def applies(self, x: EditInput) -> bool:
        """Whether it edits this pair (MSaGAN: only pairs whose prompt asks for its attribute)."""
        return True

    def scope(self) -> str:
        """Why it edits no pair when `applies` is false for all of them."""
        return "it edits none of the pairs"

    def modules(self) -> list[torch.nn.Module]:
        """The networks an edit runs (for the memory the method would need alone on the GPU)."""
        return []


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
