"""Blended Diffusion's CLIP (OpenAI's ViT-B/16) through open_clip: loading it, its input normalisation, and the
randomly initialised stand-ins the demo and the tests save in open_clip's folder layout.

Apart from `blended_diffusion` so that the demo data stage, which writes the stand-in, does not read (and rerun
for) the method's code."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from facepaint.evaluation.methods.base import MethodUnavailable

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
OPENAI_VIT_B16 = "hf-hub:timm/vit_base_patch16_clip_224.openai"  # open_clip's copy of OpenAI's ViT-B/16


def clip_image_size(clip) -> int:
    size = clip.visual.image_size
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def load_clip(spec: str, device, dtype=torch.float32):
    """(open_clip model, tokenizer) of `spec`: a directory with open_clip_config.json and its weights
    (open_clip's local-dir layout) or an `hf-hub:` id. MethodUnavailable when it cannot be loaded."""
    import open_clip

    name = spec if spec.startswith("hf-hub:") else f"local-dir:{Path(spec).resolve()}"
    if not spec.startswith("hf-hub:") and not (Path(spec) / "open_clip_config.json").is_file():
        raise MethodUnavailable(
            f"Blended Diffusion's CLIP: {spec} is not an open_clip model directory (open_clip_config.json and "
            f"open_clip_model.safetensors); download {OPENAI_VIT_B16.removeprefix('hf-hub:')} from the Hugging Face "
            "hub into a directory and set evaluate.baselines.clip_vit_b16 to it"
        )
    logging.disable(logging.INFO)  # open_clip narrates each step of the loading on the root logger
    try:
        model = open_clip.create_model(name, device="cpu", require_pretrained=True)
        tokenizer = open_clip.get_tokenizer(name)
    except Exception as e:  # noqa: BLE001 - network, missing file or format: unavailable with the reason
        raise MethodUnavailable(
            f"Blended Diffusion's CLIP ViT-B/16 could not be loaded from {spec}: {type(e).__name__}: {e}; download "
            f"{OPENAI_VIT_B16.removeprefix('hf-hub:')} into a directory and set evaluate.baselines.clip_vit_b16 to it"
        ) from e
    finally:
        logging.disable(logging.NOTSET)
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False), tokenizer


TINY_CLIP = {  # a CLIP of ViT-B/16's design, tiny (the demo's and the tests'), with the real BPE vocabulary
    "embed_dim": 32,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def vit_b16_config() -> dict:
    """open_clip's ViT-B-16 with OpenAI's QuickGELU (the architecture of Blended Diffusion's CLIP)."""
    import open_clip

    return {**open_clip.get_model_config("ViT-B-16"), "quick_gelu": True}


def save_random_open_clip(path: str | os.PathLike, model_cfg: dict, seed: int) -> Path:
    """A randomly initialised open_clip model of `model_cfg` in open_clip's local-dir layout (open_clip_config.json
    + open_clip_model.safetensors), as a Hugging Face hub copy of a CLIP is laid out."""
    import open_clip
    from safetensors.torch import save_file

    from facepaint.common.io import atomic_dir, write_json

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.CLIP(**model_cfg)
    preprocess = {"mean": list(CLIP_MEAN), "std": list(CLIP_STD)}
    with atomic_dir(Path(path)) as tmp:
        write_json({"model_cfg": model_cfg, "preprocess_cfg": preprocess}, tmp / "open_clip_config.json")
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp / "open_clip_model.safetensors")
    return Path(path)
