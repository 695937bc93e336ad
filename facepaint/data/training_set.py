"""The training set as training takes it: the latent cache (facepaint.data.latents) and each cached image's
caption candidates (facepaint.data.captions), in host memory (facepaint.method.train.TrainData), with a
version digest of both that the trainer's resume fingerprint and the artifact record."""

from __future__ import annotations

import hashlib
import json

import torch

from facepaint.common.io import read_parquet
from facepaint.data.latents import iter_shards, read_index
from facepaint.method.train import TrainData


def load_training_set(latents_dir, captions_path) -> TrainData:
    """The latent cache under `latents_dir` and the caption candidates of its images (the captions stage's
    table), in host memory, for facepaint.method.train. FileNotFoundError saying which stage to rerun when the
    two do not fit together."""
    index = read_index(latents_dir)
    shards = list(iter_shards(latents_dir))
    if not shards:
        raise FileNotFoundError(f"{latents_dir} holds no training images: check data/reports/latents.json")
    cat = {
        k: torch.cat([s[k] for s in shards]) for k in ("ids", "latents", "masked_latents", "latent_mask", "beta")
    }
    caps = read_parquet(captions_path, columns=["id", "candidates"]).set_index("id")["candidates"]
    missing = [int(i) for i in cat["ids"].tolist() if i not in caps.index]
    if missing:
        raise FileNotFoundError(
            f"{captions_path} has no captions for {len(missing)} cached training image(s), "
            f"e.g. {missing[:5]}: rerun the captions stage (`dvc repro captions`)"
        )
    captions = [list(caps.at[int(i)]) or [""] for i in cat["ids"].tolist()]
    masks = index.get("masks") or {}
    lacking = [k for k in ("backend", "parts", "resolution", "latent_factor") if k not in masks]
    if lacking:
        raise FileNotFoundError(
            f"{latents_dir}/index.json does not record the masks' {', '.join(lacking)}: it was "
            f"made by another facepaint version; rerun the latents stage (`dvc repro latents`)"
        )
    digest = hashlib.sha256(json.dumps(index, sort_keys=True).encode())
    digest.update(json.dumps(captions).encode())
    return TrainData(
        cat["ids"],
        cat["latents"],
        cat["masked_latents"],
        cat["latent_mask"],
        cat["beta"].float(),
        captions,
        int(index["resolution"]),
        digest.hexdigest()[:16],
        masks,
    )
