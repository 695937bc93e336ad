"""split: seed-42 train/test split of every id in the attribute file.

Inputs:  data.root (CelebAMask-HQ layout: attribute file + CelebA-HQ-img/), params `split`
Outputs: data/split.parquet (id, split, present), data/reports/split.json
         (malformed attribute rows, ids listed but absent from this copy)
Run:     dvc repro split        (or: python -m stages.split)
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pandas as pd

from facepaint.common.io import write_parquet
from facepaint.common.report import StageReport
from facepaint.data import celebamask
from facepaint.data.split import SplitConfig, split_ids
from stages.common import SPLIT, cli, data_root, finish, load_params, section

PARAMS = ("data.root", "split")  # the params.yaml keys this stage's outputs depend on (dvc.yaml lists exactly these)


def run(root: Path, cfg: SplitConfig, out: Path = SPLIT) -> pd.DataFrame:
    attrs = celebamask.read_attributes(root / celebamask.ATTRIBUTE_FILE)
    sc = celebamask.scan(root, attrs)
    report = StageReport(
        "split", total=len(attrs.table) + len(attrs.problems), counted="listed", missing=sc.missing.tolist()
    )
    for p in attrs.problems:
        report.add_unusable(p.id, p.reason, p.line)
    report.notes += attrs.warnings
    if len(sc.unlisted):
        report.notes.append(
            f"{len(sc.unlisted)} image(s) have no attribute row and are ignored, e.g. {sc.unlisted[:5].tolist()}"
        )
    finish(report, cfg.max_malformed_fraction, "max_malformed_fraction")

    splits = split_ids(attrs.ids, cfg)
    df = pd.DataFrame({"id": splits.index.to_numpy(), "split": splits.to_numpy()})
    df["present"] = df["id"].isin(sc.present)
    counts = df.groupby(["split", "present"]).size().to_dict()
    print(
        f"split: {counts.get(('train', True), 0)} train / {counts.get(('test', True), 0)} test images present "
        f"(of {int((df.split == 'train').sum())} / {int((df.split == 'test').sum())} listed)"
    )
    write_parquet(df, out, metadata={"root": str(root), "split": asdict(cfg)})
    return df


def main() -> None:
    params = load_params()
    run(data_root(params), section(params, "split", SplitConfig))


if __name__ == "__main__":
    cli(main)
