"""The latent cache: VAE latents of every training image and of its masked image, for both
horizontal flips (the training augmentation), in fp16 safetensors shards the trainer streams.

Per image and flip f in (none, horizontal):
- x = image resized to the mask resolution, in [-1, 1] (SPEC: mean 0.5, std 0.5)
- masked = x * (1 - M): the face set to 0 (mid-grey), as diffusers' inpainting pipeline does
- latent = E(x) * scaling_factor, masked_latent = E(masked) * scaling_factor

We store the mean of the VAE posterior, not a sample: SD's VAE posterior std is orders of magnitude
below the latent scale and the diffusion noise dominates, and the cache stays deterministic.

Shard `shard-NNNNN.safetensors` tensors:
  ids (N,) int64 | latents (N, 2, 4, h, w) fp16 | masked_latents (N, 2, 4, h, w) fp16 |
  latent_mask (N, 1, h, w) uint8 (unflipped; flip it with the image) | beta (N,) float32
`index.json` lists the shards and the settings that produced them; it is written last.
facepaint.data.training_set reads the cache back for training.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from facepaint.common.checks import check_fields, check_number
from facepaint.common.images import ImageError, decode_png, load_rgb, worker_context
from facepaint.common.io import atomic_path, write_json
from facepaint.common.report import StageReport
from facepaint.data.faces import as_dataset
from facepaint.method.models import pick_device, pick_dtype

FLIPS = ("none", "horizontal")
PRECISIONS = ("fp32", "bf16", "fp16")  # the VAE's on a GPU (`models.pick_dtype`)
INDEX = "index.json"


@dataclass
class LatentConfig:  # params.yaml `latents`
    batch_size: int  # images per VAE call (x 4: two flips, image and masked image)
    shard_size: int  # images per shard file
    precision: str  # VAE compute precision on GPU: fp32 | bf16 | fp16 (CPU: fp32)
    channels_last: bool  # the VAE's convolutions in NHWC on GPU (facepaint.method.speed)
    device: str
    workers: int
    max_unusable_fraction: float

    # Settings that change speed, not the cache (see the stage's per-key DVC params).
    SPEED_KNOBS: ClassVar[tuple[str, ...]] = ("batch_size", "workers", "channels_last")

    def __post_init__(self):
        check_fields(self, "latents")
        for name in ("batch_size", "shard_size"):
            check_number(f"latents.{name}", getattr(self, name), 1, whole=True)
        check_number("latents.workers", self.workers, 0, whole=True)
        check_number("latents.max_unusable_fraction", self.max_unusable_fraction, 0, 1)
        if self.precision not in PRECISIONS:
            raise ValueError(f"latents.precision must be one of {PRECISIONS}, got {self.precision!r}")


def vae_downsampling(vae) -> int:
    return 2 ** (len(vae.config.block_out_channels) - 1)


class _Images(torch.utils.data.Dataset):
    def __init__(self, root, masks: pd.DataFrame, resolution: int):
        self.dataset, self.masks, self.resolution = as_dataset(root), masks.reset_index(drop=True), resolution

    def __len__(self):
        return len(self.masks)

    def __getitem__(self, i):
        row = self.masks.iloc[i]
        image_id = int(row["id"])
        try:
            loaded = load_rgb(
                self.dataset.image_path(image_id), require_square=True, draft_size=self.resolution
            )
        except ImageError as e:
            return {"id": image_id, "error": str(e)}
        im = loaded.image
        if im.size != (self.resolution,) * 2:
            im = im.resize((self.resolution,) * 2, Image.Resampling.LANCZOS)
        x = torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 127.5 - 1.0
        m = torch.from_numpy(decode_png(row["mask"]).astype(np.float32))[None]
        lat = torch.from_numpy(decode_png(row["latent"]).astype(np.uint8))[None]
        if m.shape[-1] != self.resolution:
            return {"id": image_id, "error": f"mask is {m.shape[-1]} px, expected {self.resolution}"}
        return {"id": image_id, "error": None, "x": x, "mask": m, "latent_mask": lat, "beta": float(row["beta"])}


def _as_list(batch):
    return batch


@torch.inference_mode()
def encode_batch(
    vae, x: torch.Tensor, mask: torch.Tensor, memory_format=torch.contiguous_format
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,3,R,R) in [-1,1] and (B,1,R,R) binary -> latents and masked latents, (B, 2 flips, 4, h, w)."""
    masked = x * (1.0 - mask)
    both = torch.cat([x, masked])
    both = torch.stack([both, both.flip(-1)], dim=1).flatten(0, 1)  # (2B*2, 3, R, R), flips interleaved
    both = both.contiguous(memory_format=memory_format)
    z = vae.encode(both).latent_dist.mean * vae.config.scaling_factor
    z = z.unflatten(0, (2, x.shape[0], 2))  # (image|masked, B, flip, 4, h, w)
    return z[0], z[1]


def compute_latents(
    root, masks: pd.DataFrame, vae, out_dir, cfg: LatentConfig, resolution: int, progress: bool = True
) -> tuple[dict, StageReport]:
    """Encode every row of `masks` (id, mask, latent, beta) and write shards + index.json to out_dir."""
    out_dir = Path(out_dir)
    factor = vae_downsampling(vae)
    if resolution % factor:
        raise ValueError(f"resolution {resolution} is not a multiple of the VAE's downsampling {factor}")
    device = pick_device(cfg.device)
    dtype = pick_dtype(cfg.precision, device)
    vae = vae.to(device).eval()
    if vae.dtype != dtype:  # (a dtype in .to() makes diffusers warn even when it changes nothing)
        vae = vae.to(dtype)
    memory_format = torch.channels_last if (cfg.channels_last and device.type == "cuda") else torch.contiguous_format
    vae = vae.to(memory_format=memory_format)
    report = StageReport("latents", total=len(masks))
    loader = torch.utils.data.DataLoader(
        _Images(root, masks, resolution),
        batch_size=cfg.batch_size,
        collate_fn=_as_list,
        num_workers=cfg.workers,
        pin_memory=device.type == "cuda",
        multiprocessing_context=worker_context(cfg.workers, (__name__,)),
    )
    shards, pending = [], {k: [] for k in ("ids", "latents", "masked_latents", "latent_mask", "beta")}

    def flush(final: bool = False):
        """Write full shards of exactly `shard_size` images (and, when final, the remainder)."""
        if not pending["ids"]:
            return
        rows = {k: torch.cat(v) for k, v in pending.items()}
        for v in pending.values():
            v.clear()
        n, start = len(rows["ids"]), 0
        while n - start >= cfg.shard_size or (final and start < n):
            stop = min(start + cfg.shard_size, n)
            name = f"shard-{len(shards):05d}.safetensors"
            with atomic_path(out_dir / name) as tmp:
                save_file({k: v[start:stop].contiguous() for k, v in rows.items()}, str(tmp))
            shards.append({"file": name, "count": stop - start})
            start = stop
        for k, v in rows.items():
            if start < n:
                pending[k].append(v[start:])

    bar = tqdm(total=len(masks), desc="latents", unit="img", disable=not progress)
    for batch in loader:
        good = []
        for item in batch:
            if item["error"]:
                report.add_unusable(item["id"], item["error"])
            else:
                good.append(item)
        if good:
            x = torch.stack([it["x"] for it in good]).to(device, dtype, non_blocking=True)
            m = torch.stack([it["mask"] for it in good]).to(device, dtype, non_blocking=True)
            lat, masked = encode_batch(vae, x, m, memory_format)
            pending["ids"].append(torch.tensor([it["id"] for it in good], dtype=torch.int64))
            pending["latents"].append(lat.to("cpu", torch.float16))
            pending["masked_latents"].append(masked.to("cpu", torch.float16))
            pending["latent_mask"].append(torch.stack([it["latent_mask"] for it in good]))
            pending["beta"].append(torch.tensor([it["beta"] for it in good], dtype=torch.float32))
            flush()
        bar.update(len(batch))
    flush(final=True)
    bar.close()
    h = resolution // factor
    index = {
        "count": sum(s["count"] for s in shards),
        "shards": shards,
        "flips": list(FLIPS),
        "latent_shape": [vae.config.latent_channels, h, h],
        "resolution": resolution,
        "scaling_factor": vae.config.scaling_factor,
        "stored": "posterior mean x scaling_factor, fp16",
        "settings": {k: v for k, v in asdict(cfg).items() if k not in cfg.SPEED_KNOBS},
    }
    return index, report


def write_index(index: dict, out_dir) -> None:
    write_json(index, Path(out_dir) / INDEX)


def read_index(out_dir) -> dict:
    path = Path(out_dir) / INDEX
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run the latents stage first (`dvc repro latents`)")
    return json.loads(path.read_text())


def iter_shards(out_dir):
    """Yield each shard's tensors (dict) in order; memory-maps one shard at a time."""
    index = read_index(out_dir)
    for shard in index["shards"]:
        yield load_file(str(Path(out_dir) / shard["file"]))
