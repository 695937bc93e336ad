"""faces: the dataset's index; for a folder of photos (data.layout: folder), each face aligned and cropped as an
edit crops it.

Inputs:  data.root, data.layout, params `faces`, masks.parts and masks.bisenet_weights (the automatic M)
Outputs: data/faces/index.parquet (the images: SHA-256 of each file a later stage reads; a folder's faces: photo,
         face, group, alignment, mask source), data/faces/labels.parquet (CelebA: the attribute file's SHA-256;
         a folder: each face's captions and the evaluation prompts), data/faces/crops and data/faces/masks (a
         folder's aligned crops and their M; empty for CelebAMask-HQ), data/reports/faces.json (every photo not
         used, and why)
Run:     dvc repro faces        (or: python -m stages.faces)

Every later stage depends on these, not on data.root: they hold the SHA-256 of every file it reads
(facepaint.data.faces), so it reruns exactly when one changed: the images' stages on the index, the captions on
the labels (a caption edit reruns no latents).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pandas as pd

from facepaint.common.io import atomic_dir, write_parquet
from facepaint.common.report import StageReport
from facepaint.data.faces import (
    CROPS,
    INDEX,
    LABELS,
    MASKS,
    FacesConfig,
    extract_faces,
    index_celebamask,
    read_captions,
    scan_folder,
)
from stages.common import FACES, cli, data_layout, data_root, finish, keys, load_params, section

# The params.yaml keys this stage's outputs depend on (dvc.yaml lists exactly these): not the device.
PARAMS = (
    "data.root",
    "data.layout",
    *keys("faces", FacesConfig, except_=("device",)),
    "masks.parts",
    "masks.bisenet_weights",
)


def run(
    root: Path,
    layout: str,
    cfg: FacesConfig,
    parts,
    bisenet_weights=None,
    out: Path = FACES,
    progress: bool = True,
    face_models=None,
) -> pd.DataFrame:
    with atomic_dir(out) as tmp:
        if layout == "folder":
            from facepaint.method.face_helper import FaceHelper

            if Path(out).resolve().is_relative_to(Path(root).resolve()):
                raise SystemExit(f"data.root ({root}) holds the faces stage's output {out}: name the photos' folder")
            folder = scan_folder(root)  # a missing or empty folder fails before any model loads
            helper = FaceHelper(
                cfg.size,
                parts,
                detector=cfg.detector,
                mask_backend=cfg.mask_backend,
                bisenet_weights=bisenet_weights,
                face_models=face_models,
                device=cfg.device,
            )
            df, report = extract_faces(folder, tmp, cfg, helper, progress=progress)
            finish(report, cfg.max_unusable_fraction)  # too many unusable photos: nothing is written
            if df.empty:
                raise SystemExit(f"faces: no face found in any of the {len(folder.photos)} photos of {root}")
            prompts = read_captions(root / folder.prompts) if folder.prompts else None
            meta = {"layout": layout, "root": str(root), "faces": asdict(cfg), "parts": list(parts)}
            print(
                f"faces: {len(df)} faces from {df['group'].nunique()} of {len(folder.photos)} photos "
                f"({(df.captions.map(len) > 0).sum()} with captions, masks from {_counts(df.mask_from)}), "
                f"aligned by {_counts(df.aligned_by)}"
            )
            labels, labels_meta = df[["id", "captions"]], {**meta, "eval_prompts": prompts}
            df = df.drop(columns=["captions"])
        else:
            df, labels_meta = index_celebamask(root)
            meta = {k: v for k, v in labels_meta.items() if k != "attributes_sha"}
            report = StageReport("faces", total=len(df), counted="listed")
            report.missing = df.loc[df.image_sha.isna(), "id"].tolist()
            finish(report, 1.0)
            print(f"faces: CelebAMask-HQ layout, {df.image_sha.notna().sum()} images indexed (nothing copied)")
            labels = df[["id"]]
            (tmp / CROPS).mkdir()
            (tmp / MASKS).mkdir()
        write_parquet(df, tmp / INDEX, metadata=meta)
        write_parquet(labels, tmp / LABELS, metadata=labels_meta)
    return df


def _counts(col: pd.Series) -> str:
    kinds = col.str.replace(r" \(region .*\)$", "", regex=True).where(
        col.isin(["bisenet", "mesh", "landmarks", "box", "box+eyes", "mask"]), "the user's mask"
    )
    return ", ".join(f"{k} {n}" for k, n in kinds.value_counts().items())


def main() -> None:
    params = load_params()
    masks = params.get("masks") or {}
    run(
        data_root(params),
        data_layout(params),
        section(params, "faces", FacesConfig),
        masks.get("parts") or (),
        masks.get("bisenet_weights"),
    )


if __name__ == "__main__":
    cli(main)
