"""captions: ~10 caption candidates per image from its attributes, and each test image's evaluation prompt.

Inputs:  data.root's attribute file (celebamask) or data/faces/labels.parquet (a folder's captions),
         data/split.parquet, params `captions`
Outputs: data/captions.parquet (id, split, candidates: list<string>, eval_prompt)
Run:     dvc repro captions     (or: python -m stages.captions)
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pandas as pd

from facepaint.common.io import read_parquet, read_parquet_metadata, write_parquet
from facepaint.data import celebamask
from facepaint.data.captions import CaptionConfig, build_captions, folder_captions
from facepaint.data.faces import LABELS
from stages.common import CAPTIONS, FACES, SPLIT, cli, data_layout, data_root, load_params, section

PARAMS = (
    "data.root",
    "data.layout",
    "captions",
)  # the params.yaml keys this stage's outputs depend on (dvc.yaml lists exactly these)


def run(
    root: Path, cfg: CaptionConfig, split: Path = SPLIT, out: Path = CAPTIONS, layout: str = "celebamask", faces=FACES
) -> pd.DataFrame:
    present = read_parquet(split).query("present").set_index("id")["split"]
    if layout == "folder":  # the photos' own captions (NAME.txt), or the one neutral fallback: no attribute invented
        labels = read_parquet(faces / LABELS)
        prompts = read_parquet_metadata(faces / LABELS).get("eval_prompts")
        df = folder_captions(labels, present, cfg, prompts)
        own = int((labels["captions"].map(len) > 0).sum())
        print(
            f"captions: {own} of {len(df)} faces have their photo's captions, the others {cfg.fallback!r}; "
            f"evaluation prompts from {'eval_prompts.txt' if prompts else 'the held-out captions'}"
        )
    else:
        attrs = celebamask.read_attributes(root / celebamask.ATTRIBUTE_FILE)
        df = build_captions(attrs.table, present, cfg)
    write_parquet(df, out, metadata={"root": str(root), "layout": layout, "captions": asdict(cfg)})
    n = df["candidates"].map(len)
    print(
        f"captions: {len(df)} images, {n.mean():.1f} candidates each (min {n.min()}), "
        f"{df['eval_prompt'].notna().sum()} evaluation prompts"
    )
    return df


def main() -> None:
    params = load_params()
    run(data_root(params), section(params, "captions", CaptionConfig), layout=data_layout(params))


if __name__ == "__main__":
    cli(main)
