"""A "trained" tiny artifact for the tests and the benchmarks: the demo's tiny random model with every k/v weight
moved away from the base model and the face adapter's W2 drawn non-zero, so each part of the artifact changes an
edit (an untrained adapter's zero W2 would not).

    artifact = save_tiny_trained_artifact(path, tiny_conditions(params, 64))

Used by tests/conftest.py's `tiny_artifact` (and tests/helpers.py's `tiny_conditions`) and bench/serve_load.py."""

from __future__ import annotations

import os
from pathlib import Path


def tiny_conditions(params: dict, resolution: int):
    """The Conditions of a tiny-model artifact trained at `resolution` with `params` (params.yaml's sections)."""
    from facepaint.data.masks import MaskConfig
    from facepaint.method.artifact import Conditions
    from facepaint.method.models import ModelConfig
    from facepaint.method.train import TrainConfig
    from stages.common import section

    masks = section(params, "masks", MaskConfig)
    return Conditions(
        model=section(params, "model", ModelConfig),
        resolution=resolution,
        adapter_scale=section(params, "train", TrainConfig).adapter_scale,
        parts=masks.parts,
        mask_backend=masks.backend,
        latent_factor=masks.latent_factor,
    )


def save_tiny_trained_artifact(path: str | os.PathLike, conditions):
    """Save it at `path` with `conditions` (facepaint.method.artifact.Conditions); returns the saved Artifact."""
    import torch

    from facepaint.method.adapter import FaceAdapter
    from facepaint.method.artifact import freeze_all_but_kv, save_artifact
    from facepaint.method.models import tiny_components

    comps = tiny_components(seed=0, parts=("unet", "text_encoder"))
    kv = freeze_all_but_kv(comps.unet)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        adapter = FaceAdapter(comps.text_encoder.config.hidden_size)
        with torch.no_grad():
            for p in kv.values():
                p.add_(0.05)
            adapter.w2.weight.normal_()
    return save_artifact(Path(path), comps.unet, adapter, conditions)
