"""masks: face mask M, latent mask and beta for every present image.

Inputs:  data.root, data/split.parquet, params `masks` (backend annotations | bisenet | mesh)
Outputs: data/masks.parquet (id, beta, mask, latent as PNG bytes, width, height, iou_annotations; the
         settings that made it in the Parquet metadata), data/reports/masks.json (unusable images and
         why), data/masks_metrics.json (DVC metrics: beta; `parser`, the automatic back-end that ran
         ("bisenet", "mediapipe-facemesh" or null); and `iou_parser_vs_annotations`, the IoU of that
         parser's masks against the CelebAMask-HQ annotations where both exist, or why it is unavailable)
Run:     dvc repro masks        (or: python -m stages.masks)

The paper's setting is `masks.backend: bisenet` (profiles/paper.yaml): M is the parser's, for training,
evaluation and blending alike, as `facepaint edit` makes it. `masks.backend: mesh` takes M from MediaPipe's
face mesh instead (offline, no weights to supply). The demo uses the annotations (no parser weights here);
setting `masks.bisenet_weights` there runs BiSeNet too, for the IoU only.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from facepaint.common.io import read_parquet, write_json, write_parquet
from facepaint.data.faces import as_dataset
from facepaint.data.masks import MaskConfig, compute_masks, iou_summary, make_parser, mask_metadata, parser_name
from stages.common import MASKS, MASKS_METRICS, SPLIT, cli, dataset, finish, keys, load_params, section

# The params.yaml keys this stage's outputs depend on (dvc.yaml lists exactly these): not its speed knobs.
PARAMS = ("data.root", "data.layout", *keys("masks", MaskConfig, except_=MaskConfig.SPEED_KNOBS))


def run(
    root,  # a Dataset (stages.common.dataset), or the CelebAMask-HQ root
    cfg: MaskConfig,
    split: Path = SPLIT,
    out: Path = MASKS,
    metrics: Path = MASKS_METRICS,
    progress: bool = True,
) -> pd.DataFrame:
    ids = read_parquet(split).query("present")["id"].to_numpy()
    # The parser (the automatic back-end): the bisenet or mesh backend's masks; BiSeNet with the annotations
    # backend only when its weights are given (for the IoU). Loaded before any image is read.
    parser = make_parser(cfg)
    df, report = compute_masks(root, ids, cfg, progress=progress, parser=parser)
    finish(report, cfg.max_unusable_fraction)
    name = parser_name(parser)
    why_not = (
        "no automatic mask back-end ran (masks.backend: annotations and no masks.bisenet_weights; "
        "masks.backend: mesh runs the face mesh offline)"
    )
    iou = iou_summary(df, name, why_not)
    if len(df):
        print(f"masks: beta mean {df.beta.mean():.3f} (min {df.beta.min():.3f}, max {df.beta.max():.3f})")
    print(f"masks: IoU of the {name or 'parser'}'s masks vs the annotations:", iou)
    write_parquet(df, out, metadata={"root": str(as_dataset(root).root), "masks": mask_metadata(cfg, parser)})
    beta = {"mean": float(df.beta.mean()), "min": float(df.beta.min()), "max": float(df.beta.max())} if len(df) else {}
    # iou_parser_vs_annotations keeps its name (its readers): "parser" is whichever automatic back-end ran
    write_json(
        {"backend": cfg.backend, "parser": name, "images": len(df), "beta": beta, "iou_parser_vs_annotations": iou},
        metrics,
    )
    return df


def main() -> None:
    params = load_params()
    run(dataset(params), section(params, "masks", MaskConfig))


if __name__ == "__main__":
    cli(main)
