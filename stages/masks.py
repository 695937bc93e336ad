"""masks: face mask M, latent mask and beta for every present image.

Inputs:  data.root, data/split.parquet, params `masks` (backend annotations | bisenet)
Outputs: data/masks.parquet (id, beta, mask, latent as PNG bytes, width, height; the settings that
         made it in the Parquet metadata), data/reports/masks.json (unusable images and why)
Run:     dvc repro masks        (or: python -m stages.masks)
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from facepaint.io import read_parquet, write_parquet
from facepaint.masks import BiSeNetParser, MaskConfig, compute_masks, mask_metadata
from stages.common import MASKS, SPLIT, cli, data_root, finish, keys, load_params, section

# The params.yaml keys this stage's outputs depend on (dvc.yaml lists exactly these): not its speed
# knobs, and not masks.sigma (the table holds M; the soft mask is made where it is used).
PARAMS = ("data.root", *keys("masks", MaskConfig, except_=(*MaskConfig.SPEED_KNOBS, "sigma")))


def run(root: Path, cfg: MaskConfig, split: Path = SPLIT, out: Path = MASKS, progress: bool = True) -> pd.DataFrame:
    ids = read_parquet(split).query("present")["id"].to_numpy()
    parser = (
        BiSeNetParser(cfg.bisenet_weights, cfg.device, cfg.half, cfg.channels_last)
        if cfg.backend == "bisenet"
        else None
    )
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
