"""masks: face mask M, latent mask and beta for every present image.

Inputs:  data.root, data/split.parquet, params `masks` (backend annotations | bisenet)
Outputs: data/masks.parquet (id, beta, mask, latent as PNG bytes, width, height, iou_annotations; the
         settings that made it in the Parquet metadata), data/reports/masks.json (unusable images and
         why), data/masks_metrics.json (DVC metrics: beta, and the IoU of the BiSeNet parser's masks
         against the CelebAMask-HQ annotations where both exist, or why it is unavailable)
Run:     dvc repro masks        (or: python -m stages.masks)

The paper's setting is `masks.backend: bisenet` (profiles/paper.yaml): M is the parser's, for training,
evaluation and blending alike, as `facepaint edit` makes it. The demo uses the annotations (no parser
weights here); setting `masks.bisenet_weights` there runs the parser too, for the IoU only.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from facepaint.common.io import read_parquet, write_json, write_parquet
from facepaint.data.masks import MaskConfig, compute_masks, iou_summary, mask_metadata
from facepaint.method.masks import BiSeNetParser
from stages.common import MASKS, MASKS_METRICS, SPLIT, cli, data_root, finish, keys, load_params, section

# The params.yaml keys this stage's outputs depend on (dvc.yaml lists exactly these): not its speed knobs.
PARAMS = ("data.root", *keys("masks", MaskConfig, except_=MaskConfig.SPEED_KNOBS))


def run(
    root: Path,
    cfg: MaskConfig,
    split: Path = SPLIT,
    out: Path = MASKS,
    metrics: Path = MASKS_METRICS,
    progress: bool = True,
) -> pd.DataFrame:
    ids = read_parquet(split).query("present")["id"].to_numpy()
    # The parser: the bisenet backend's masks; with annotations only when its weights are given (for the IoU).
    parse = cfg.backend == "bisenet" or cfg.bisenet_weights is not None
    parser = BiSeNetParser(cfg.bisenet_weights, cfg.device, cfg.half, cfg.channels_last) if parse else None
    df, report = compute_masks(root, ids, cfg, progress=progress, parser=parser)
    finish(report, cfg.max_unusable_fraction)
    iou = iou_summary(df, parse, "the parser did not run (masks.backend: annotations and no masks.bisenet_weights)")
    if len(df):
        print(f"masks: beta mean {df.beta.mean():.3f} (min {df.beta.min():.3f}, max {df.beta.max():.3f})")
    print("masks: IoU of the parser's masks vs the annotations:", iou)
    write_parquet(df, out, metadata={"root": str(root), "masks": mask_metadata(cfg, parser)})
    beta = {"mean": float(df.beta.mean()), "min": float(df.beta.min()), "max": float(df.beta.max())} if len(df) else {}
    write_json({"backend": cfg.backend, "images": len(df), "beta": beta, "iou_parser_vs_annotations": iou}, metrics)
    return df


def main() -> None:
    params = load_params()
    run(data_root(params), section(params, "masks", MaskConfig))


if __name__ == "__main__":
    cli(main)
