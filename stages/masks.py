"""masks: face mask M, soft mask, latent mask and beta for every present image.

Inputs:  data.root, data/split.parquet, params `masks` (backend annotations | bisenet)
Outputs: data/masks.parquet (id, beta, mask, soft, latent as PNG bytes, width, height; the params
         that made it in the Parquet metadata), data/reports/masks.json (unusable images and why)
Run:     dvc repro masks        (or: python -m stages.masks)
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from facepaint.io import read_parquet, write_parquet
from facepaint.masks import BiSeNetParser, MaskConfig, compute_masks, mask_metadata
from stages.common import cli, data_root, finish, load_params, section
from stages.split import OUT as SPLIT

OUT = Path("data/masks.parquet")


def run(root: Path, cfg: MaskConfig, split: Path = SPLIT, out: Path = OUT, progress: bool = True) -> pd.DataFrame:
    ids = read_parquet(split).query("present")["id"].to_numpy()
    parser = BiSeNetParser(cfg.bisenet_weights, cfg.device, cfg.half, cfg.channels_last) if cfg.backend == "bisenet" else None
    df, report = compute_masks(root, ids, cfg, progress=progress, parser=parser)
    finish(report, cfg.max_unusable_fraction)
    if len(df):
        print(f"masks: beta mean {df.beta.mean():.3f} (min {df.beta.min():.3f}, max {df.beta.max():.3f})")
    write_parquet(df, out, metadata={"root": str(root), "masks": mask_metadata(cfg, parser)})
    return df


def main() -> None:
    params = load_params()
    run(data_root(params), section(params, "masks", MaskConfig))


if __name__ == "__main__":
    cli(main)
