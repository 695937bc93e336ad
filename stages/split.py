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

from facepaint.common.io import read_parquet, write_parquet
from facepaint.common.report import StageReport
from facepaint.data import celebamask
from facepaint.data.faces import INDEX
from facepaint.data.split import SplitConfig, split_ids
from stages.common import FACES, SPLIT, cli, data_layout, data_root, finish, load_params, section

PARAMS = (
    "data.root",
    "data.layout",
    "split",
)  # the params.yaml keys this stage's outputs depend on (dvc.yaml lists exactly these)


def run_folder(cfg: SplitConfig, faces: Path = FACES, out: Path = SPLIT) -> pd.DataFrame:
    """A folder's faces split by photo (the faces stage's `group`): the faces of one photo are all train or all
    test, so no photo is both learnt and evaluated on."""
    index = read_parquet(faces / INDEX)
    groups = split_ids(index["group"].unique(), cfg)
    df = pd.DataFrame({"id": index["id"].to_numpy(), "split": index["group"].map(groups).to_numpy()})
    df["present"] = True
    finish(StageReport("split", total=len(df), counted="faces"), cfg.max_malformed_fraction, "max_malformed_fraction")
    n = df.groupby("split").size().to_dict()
    photos = pd.Series(groups).value_counts().to_dict()
    print(
        f"split: {n.get('train', 0)} train / {n.get('test', 0)} test faces "
        f"(from {photos.get('train', 0)} / {photos.get('test', 0)} photos)"
    )
    if not n.get("test") or not n.get("train"):
        print(f"split: warning: {len(groups)} photo(s) give no {'test' if not n.get('test') else 'train'} face")
    write_parquet(df, out, metadata={"layout": "folder", "split": asdict(cfg)})
    return df


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
    cfg = section(params, "split", SplitConfig)
    run_folder(cfg) if data_layout(params) == "folder" else run(data_root(params), cfg)


if __name__ == "__main__":
    cli(main)
