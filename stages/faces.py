"""faces: the dataset's index; for a folder of photos (data.layout: folder), each face aligned and cropped as an
edit crops it.

Inputs:  data.root, data.layout, params `faces`, masks.parts and masks.bisenet_weights (the automatic M)
Outputs: data/faces (index.parquet; for a folder also crops/{id}.png and masks/{id}.png),
         data/reports/faces.json (every photo not used, and why)
Run:     dvc repro faces        (or: python -m stages.faces)

Every later stage depends on data/faces, not on data.root: the index holds the SHA-256 of every file they read
(facepaint.data.faces), so they rerun exactly when one changed.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pandas as pd

from facepaint.common.io import atomic_dir, write_parquet
from facepaint.common.report import StageReport
from facepaint.data.faces import INDEX, FacesConfig, extract_faces, index_celebamask, read_captions, scan_folder
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
            meta = {
                "layout": layout,
                "root": str(root),
                "faces": asdict(cfg),
                "parts": list(parts),
                "eval_prompts": prompts,
            }
            print(
                f"faces: {len(df)} faces from {df['group'].nunique()} of {len(folder.photos)} photos "
                f"({(df.captions.map(len) > 0).sum()} with captions, masks from {_counts(df.mask_from)}), "
                f"aligned by {_counts(df.aligned_by)}"
            )
        else:
            df, meta = index_celebamask(root)
            report = StageReport("faces", total=len(df), counted="listed")
            report.missing = df.loc[df.image_sha.isna(), "id"].tolist()
            finish(report, 1.0)
            print(f"faces: CelebAMask-HQ layout, {df.image_sha.notna().sum()} images indexed (nothing copied)")
        write_parquet(df, tmp / INDEX, metadata=meta)
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
