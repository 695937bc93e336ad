"""captions: ~10 caption candidates per image from its attributes, and each test image's evaluation prompt.

Inputs:  data.root (attribute file), data/split.parquet, params `captions`
Outputs: data/captions.parquet (id, split, candidates: list<string>, eval_prompt)
Run:     dvc repro captions     (or: python -m stages.captions)
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pandas as pd

from facepaint.common.io import read_parquet, write_parquet
from facepaint.data import celebamask
from facepaint.data.captions import CaptionConfig, build_captions
from stages.common import CAPTIONS, SPLIT, cli, data_root, load_params, section

PARAMS = (
    "data.root",
    "captions",
)  # the params.yaml keys this stage's outputs depend on (dvc.yaml lists exactly these)


def run(root: Path, cfg: CaptionConfig, split: Path = SPLIT, out: Path = CAPTIONS) -> pd.DataFrame:
    attrs = celebamask.read_attributes(root / celebamask.ATTRIBUTE_FILE)
    present = read_parquet(split).query("present").set_index("id")["split"]
    df = build_captions(attrs.table, present, cfg)
    write_parquet(df, out, metadata={"root": str(root), "captions": asdict(cfg)})
    n = df["candidates"].map(len)
    print(
        f"captions: {len(df)} images, {n.mean():.1f} candidates each (min {n.min()}), "
        f"{df['eval_prompt'].notna().sum()} evaluation prompts"
    )
    return df


def main() -> None:
    params = load_params()
    run(data_root(params), section(params, "captions", CaptionConfig))


if __name__ == "__main__":
    cli(main)
