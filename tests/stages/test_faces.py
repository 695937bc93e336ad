"""The faces stage and the stages after it on a folder of photos (data.layout: folder): the index, the split by
photo, the captions from NAME.txt (or the neutral fallback) and the evaluation prompts; nothing written when too
many photos are unusable; every later stage depends on data/faces, not on data.root."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from facepaint.common.io import read_parquet, read_parquet_metadata
from facepaint.common.report import DatasetError
from facepaint.data.captions import CaptionConfig, folder_captions
from facepaint.data.faces import INDEX, LABELS, FacesConfig
from facepaint.data.split import SplitConfig
from stages import captions as captions_stage
from stages import faces as faces_stage
from stages import split as split_stage
from tests.method import astronaut

PARTS = ("skin", "l_brow", "r_brow", "l_eye", "r_eye", "nose", "mouth", "u_lip", "l_lip")
CFG = FacesConfig(size=128, per_photo="all", detector="mediapipe", mask_backend="mesh", min_face=40, device="cpu",
                  max_unusable_fraction=0.5)  # fmt: skip
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Four photos: two with one face (one captioned), one group of three heads, one without a face."""
    root = tmp_path_factory.mktemp("photos")
    Image.fromarray(astronaut.photo()).save(root / "eileen.jpg", quality=95)
    (root / "eileen.txt").write_text("a photo of an astronaut\nEileen Collins, smiling\n")
    Image.fromarray(astronaut.photo()[::-1, ::-1].copy()).rotate(180).save(root / "again.png")
    group, _, _, _ = astronaut.heads()
    (root / "crew").mkdir()
    Image.fromarray(group).save(root / "crew" / "three.png")
    Image.fromarray(np.full((300, 400, 3), 90, np.uint8)).save(root / "wall.png")
    (root / "eval_prompts.txt").write_text("a photo of a person with red hair\n")
    return root


@pytest.fixture(autouse=True)
def elsewhere(tmp_path, monkeypatch):
    """The stages write their reports under data/reports of the working directory: not the project's."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def faces(folder, tmp_path_factory):
    import os

    out, here = tmp_path_factory.mktemp("data") / "faces", os.getcwd()
    os.chdir(out.parent)
    try:
        df = faces_stage.run(folder, "folder", CFG, PARTS, out=out, progress=False)
    finally:
        os.chdir(here)
    return out, df


def test_the_index_names_each_face_its_photo_and_group(faces):
    out, df = faces
    assert df.groupby("photo").size().to_dict() == {"again.png": 1, "crew/three.png": 3, "eileen.jpg": 1}
    assert df.groupby("photo").group.nunique().eq(1).all() and df.group.nunique() == 3
    assert read_parquet_metadata(out / INDEX)["layout"] == "folder" and "captions" not in df
    meta = read_parquet_metadata(out / LABELS)
    assert meta["layout"] == "folder" and meta["eval_prompts"] == ["a photo of a person with red hair"]
    assert sorted(p.name for p in (out / "crops").iterdir()) == [f"{i}.png" for i in sorted(df.id)]


def test_the_split_keeps_a_photos_faces_together(faces, tmp_path):
    out, df = faces
    for seed in range(6):
        split = split_stage.run_folder(SplitConfig(seed, 1, 1, 0.0), faces=out, out=tmp_path / f"s{seed}.parquet")
        by_photo = split.merge(df[["id", "photo"]]).groupby("photo").split.nunique()
        assert by_photo.eq(1).all()
        assert split.present.all() and set(split.id) == set(df.id)


def test_captions_are_the_photos_own_or_the_fallback_and_prompts_from_the_file(faces, tmp_path):
    out, df = faces
    split = pd.DataFrame({"id": df.id, "split": "test", "present": True})
    split.to_parquet(tmp_path / "split.parquet")
    cfg = CaptionConfig(n_candidates=10, seed=42, fallback="a photo of a person")
    caps = captions_stage.run(
        Path("unused"), cfg, split=tmp_path / "split.parquet", out=tmp_path / "c.parquet", layout="folder", faces=out
    ).set_index("id")
    eileen = int(df[df.photo == "eileen.jpg"].id.iloc[0])
    assert list(caps.loc[eileen, "candidates"]) == ["a photo of an astronaut", "Eileen Collins, smiling"]
    others = caps.drop(index=eileen)
    assert all(list(c) == ["a photo of a person"] for c in others.candidates)  # no attribute invented
    assert set(caps.eval_prompt) == {"a photo of a person with red hair"}


def test_without_a_prompts_file_a_test_face_is_evaluated_on_its_held_out_caption():
    index = pd.DataFrame({"id": [0, 1, 2], "captions": [["a photo of Ann", "Ann"], [], ["Bo"]]})
    splits = pd.Series(["test", "test", "train"], index=pd.Index([0, 1, 2], name="id"))
    cfg = CaptionConfig(n_candidates=10, seed=42, fallback="a photo of a person")
    t = folder_captions(index, splits, cfg).set_index("id")
    assert t.eval_prompt.tolist() == ["a photo of Ann", "a photo of a person", None]
    t = folder_captions(index, splits, cfg, ["p1", "p2"]).set_index("id")
    assert t.eval_prompt.tolist() == ["p1", "p2", None]


def test_too_many_unusable_photos_fail_and_write_nothing(folder, tmp_path):
    strict = FacesConfig(**{**CFG.__dict__, "max_unusable_fraction": 0.1})  # the wall is 1 of 4 photos
    out = tmp_path / "faces"
    with pytest.raises(DatasetError, match=r"faces: 1 of 4 items are unusable .* wall.png: no face found"):
        faces_stage.run(folder, "folder", strict, PARTS, out=out, progress=False)
    assert not out.exists()


def test_a_folder_that_holds_the_output_is_refused(folder, tmp_path):
    with pytest.raises(SystemExit, match="holds the faces stage's output"):
        faces_stage.run(tmp_path, "folder", CFG, PARTS, out=tmp_path / "data" / "faces", progress=False)


def test_every_stage_after_faces_depends_on_its_output_not_on_data_roots_folders():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert "${data.root}" in stages["faces"]["deps"] and "data/faces/index.parquet" in str(stages["faces"]["outs"])
    readers = ["split", "masks", "captions", "latents", "evaluate", "ablation"]
    for name in readers:
        deps = stages[name]["deps"]
        assert "data/faces/index.parquet" in deps or "data/faces/labels.parquet" in deps, name
        assert not [d for d in deps if "${data.root}" in str(d)], name
        assert "data.layout" in stages[name]["params"], name
    assert not [s for s in stages if s not in ("params", "demo", "faces") and "${data.root}" in str(stages[s])]


def test_celebamask_layout_indexes_without_copying(demo_copy, tmp_path):
    out = tmp_path / "faces"
    df = faces_stage.run(demo_copy, "celebamask", CFG, PARTS, out=out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["crops", INDEX, LABELS, "masks"]
    assert not any((out / "crops").iterdir()) and not any((out / "masks").iterdir())  # nothing copied
    assert read_parquet(out / INDEX).equals(df) and df.image_sha.notna().all()
    assert len(read_parquet_metadata(out / LABELS)["attributes_sha"]) == 64


def test_a_caption_edit_changes_the_labels_and_not_the_index(folder, faces, tmp_path):
    """So DVC reruns the captions and training, and not the masks or latents, which depend on the index."""
    import shutil

    out, _ = faces
    copy = tmp_path / "photos"
    shutil.copytree(folder, copy)
    (copy / "eileen.txt").write_text("a photo of an astronaut in orange\n")
    again = tmp_path / "faces"
    faces_stage.run(copy, "folder", CFG, PARTS, out=again, progress=False)
    assert read_parquet(again / INDEX).equals(read_parquet(out / INDEX))
    assert read_parquet_metadata(again / INDEX) == {**read_parquet_metadata(out / INDEX), "root": str(copy)}
    assert not read_parquet(again / LABELS).equals(read_parquet(out / LABELS))


def test_the_masks_stage_takes_each_crops_m_as_the_faces_stage_made_it(faces):
    from facepaint.common.images import decode_png, load_mask, resize_binary
    from facepaint.data.faces import Dataset
    from facepaint.data.masks import MaskConfig, compute_masks

    out, df = faces
    cfg = MaskConfig(backend="annotations", parts=list(PARTS), resolution=64, latent_factor=8, bisenet_weights=None,
                     batch_size=2, device="cpu", half=False, channels_last=False, workers=0, min_size=32,
                     max_unusable_fraction=0.0)  # fmt: skip
    table, report = compute_masks(Dataset(out, "folder"), df.id.tolist(), cfg, progress=False)
    assert not report.unusable and len(table) == len(df)
    for _, row in table.iterrows():
        made = resize_binary(load_mask(out / "masks" / f"{row.id}.png"), 64)
        assert (decode_png(row["mask"]) == made).mean() > 0.99
