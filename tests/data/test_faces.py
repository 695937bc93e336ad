"""facepaint.data.faces: a folder of a user's photos (nested, mixed formats, EXIF rotation, captions, masks,
broken files) read and cropped through the editing pipeline's face helper; the CelebAMask-HQ index and its
hashes. Real photos: the public-domain astronaut here, the CelebA-HQ fixture where it is present."""

import json

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facepaint.common.report import DatasetError
from facepaint.data import celebamask
from facepaint.data.faces import (
    Dataset,
    FacesConfig,
    extract_faces,
    index_celebamask,
    read_captions,
    scan_folder,
)
from facepaint.method.alignment import TEMPLATE_512
from facepaint.method.face_helper import FaceHelper
from tests.method import astronaut
from tools.photo_folder import eye_error, photo_folder

PARTS = ("skin", "l_brow", "r_brow", "l_eye", "r_eye", "nose", "mouth", "u_lip", "l_lip")
SIZE = 256
CFG = FacesConfig(
    size=SIZE, per_photo="all", detector="mediapipe", mask_backend="mesh", min_face=64, device="cpu",
    max_unusable_fraction=0.5,
)  # fmt: skip


def framed_astronaut() -> tuple[np.ndarray, np.ndarray]:
    """The astronaut framed as CelebA-HQ frames its faces (its hand-placed landmarks onto TEMPLATE_512), and
    where that framing puts its eye centres."""
    m, _ = cv2.estimateAffinePartial2D(astronaut.LANDMARKS, TEMPLATE_512, method=cv2.LMEDS)
    framed = cv2.warpAffine(astronaut.photo(), m, (512, 512), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    return framed, TEMPLATE_512[:2].copy()


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    """The astronaut written six ways (tools/photo_folder.py) plus broken files, and its extraction."""
    root = tmp_path_factory.mktemp("photos")
    truths = photo_folder(root, [framed_astronaut()] * 6, seed=0)
    out = tmp_path_factory.mktemp("faces")
    helper = FaceHelper(SIZE, PARTS, detector=CFG.detector, mask_backend=CFG.mask_backend, device="cpu")
    df, report = extract_faces(scan_folder(root), out, CFG, helper, progress=False)
    return root, truths, out, df, report


def test_the_scan_pairs_photos_with_their_captions_and_masks(tmp_path):
    for rel in ["a.jpg", "a.txt", "b.PNG", "b_mask.png", "sub/deeper/c.webp", "sub/deeper/c.txt", ".hidden.jpg",
                ".cache/d.jpg", "e_mask.png", "notes.md", "eval_prompts.txt"]:  # fmt: skip
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    f = scan_folder(tmp_path)
    assert [p.as_posix() for p in f.photos] == ["a.jpg", "b.PNG", "sub/deeper/c.webp"]
    assert {k.as_posix(): v.as_posix() for k, v in f.captions.items()} == {
        "a.jpg": "a.txt",
        "sub/deeper/c.webp": "sub/deeper/c.txt",
    }
    assert {k.as_posix(): v.as_posix() for k, v in f.masks.items()} == {"b.PNG": "b_mask.png"}
    assert [p.as_posix() for p in f.ignored] == ["e_mask.png", "notes.md"]  # a mask without its photo
    assert f.prompts.as_posix() == "eval_prompts.txt"


def test_a_folder_without_photos_or_no_folder_is_a_clear_error(tmp_path):
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(DatasetError, match="no photo found under"):
        scan_folder(tmp_path)
    with pytest.raises(DatasetError, match="is not a folder"):
        scan_folder(tmp_path / "absent")


def test_captions_are_the_lines_of_the_txt(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("\ufeffa photo of Ann\n\n  a  photo of Ann \nAnn, smiling\n", encoding="utf-8")
    assert read_captions(p) == ["a photo of Ann", "Ann, smiling"]
    p.write_bytes(b"caf\xe9\n")
    with pytest.raises(Exception, match="not UTF-8 text"):
        read_captions(p)


def test_every_photo_not_used_is_reported_by_name_with_why(messy):
    _, _, _, _, report = messy
    d = report.as_dict()
    assert {p["id"]: p["reason"].split(":")[0] for p in d["unusable"]} == {
        "broken.jpg": "corrupt or unreadable image",
        "thumbnail.png": "too small",
        "landscape.png": "no face found",
    }
    assert "landscape_mask.png" in next(p["reason"] for p in d["unusable"] if p["id"] == "landscape.png")
    assert d["counts"] == {"photos": 9, "usable": 6, "unusable": 3, "missing": 0, "warnings": 0}
    assert "README.md, orphan.txt" in d["notes"][0]
    json.dumps(d)


def test_each_face_is_a_crop_framed_as_celeba_hq_frames_it(messy):
    """Re-encoded, shrunk, EXIF-rotated, nested WEBP, pasted rolled onto larger canvases: every crop puts the eyes
    within 6 px (at 512) of where CelebA-HQ's framing puts them."""
    root, truths, out, df, _ = messy
    assert df["id"].tolist() == list(range(6)) and df["group"].is_unique  # one face per photo here
    errors = {}
    for t in truths:
        row = df[df.photo == t.photo].iloc[0]
        errors[t.kind] = eye_error(np.reshape(row.matrix, (2, 3)), t, SIZE)
        crop = np.asarray(Image.open(out / "crops" / f"{row.id}.png"))
        assert crop.shape == (SIZE, SIZE, 3)
    assert max(errors.values()) < 6, errors
    assert set(df.aligned_by) == {"landmarks"} and set(df.mask_from) == {"mesh"}


def test_a_photo_turned_by_exif_is_cropped_upright(messy):
    root, truths, out, df, _ = messy
    t = next(t for t in truths if t.kind == "exif_rotated")
    row = df[df.photo == t.photo].iloc[0]
    plain = df[df.photo == next(t.photo for t in truths if t.kind == "png")].iloc[0]
    a, b = (np.asarray(Image.open(out / "crops" / f"{r.id}.png"), np.float32) for r in (row, plain))
    assert np.abs(a - b).mean() < 4  # the same upright face (JPEG vs PNG)


def test_captions_and_masks_are_recorded_per_crop(messy):
    _, _, out, df, _ = messy
    first = df[df.photo == "person_000.png"].iloc[0]
    assert list(first.captions) == ["a photo of person 0", "person 0, portrait, smiling"]
    assert list(df[df.photo == "person_001.jpg"].iloc[0].captions) == []
    m = np.asarray(Image.open(out / "masks" / f"{first.id}.png")) > 0
    assert m.shape == (SIZE, SIZE) and 0.15 < m.mean() < 0.6  # the face, not the frame
    ds = Dataset(out, "folder")
    assert ds.image_path(3) == out / "crops" / "3.png" and ds.mask_path(3) == out / "masks" / "3.png"


def test_several_faces_give_several_crops_or_the_largest(tmp_path):
    photo, faces, _, _ = astronaut.heads()
    (tmp_path / "in").mkdir()
    Image.fromarray(photo).save(tmp_path / "in" / "group.png")
    helper = FaceHelper(SIZE, PARTS, detector="mediapipe", mask_backend="mesh", device="cpu")
    df, _ = extract_faces(scan_folder(tmp_path / "in"), tmp_path / "out", CFG, helper, progress=False)
    assert len(df) == 3 and df.face.tolist() == [0, 1, 2] and set(df.group) == {0}
    cfg = FacesConfig(**{**CFG.__dict__, "per_photo": "largest"})
    df, _ = extract_faces(scan_folder(tmp_path / "in"), tmp_path / "out2", cfg, helper, progress=False)
    assert len(df) == 1 and df.face.tolist() == [2]  # GROUP's third head is the largest (scale 1.1)


def test_the_users_mask_is_the_crops_m(tmp_path):
    photo = astronaut.photo()
    Image.fromarray(photo).save(tmp_path / "eileen.jpg", quality=95)
    Image.fromarray(astronaut.face_mask().astype(np.uint8) * 255).save(tmp_path / "eileen_mask.png")
    helper = FaceHelper(SIZE, PARTS, detector="mediapipe", mask_backend="mesh", device="cpu")
    df, _ = extract_faces(scan_folder(tmp_path), tmp_path / "out", CFG, helper, progress=False)
    row = df.iloc[0]
    assert "eileen_mask.png" in row.mask_from and str(tmp_path) not in row.mask_from
    m = np.asarray(Image.open(tmp_path / "out" / "masks" / "0.png")) > 0
    warped = cv2.warpAffine(
        astronaut.face_mask().astype(np.uint8), np.reshape(row.matrix, (2, 3)), (SIZE, SIZE), flags=cv2.INTER_NEAREST
    ).astype(bool)
    assert (m & warped).sum() / (m | warped).sum() > 0.95


def test_celebamask_index_hashes_what_later_stages_read(demo_copy):
    df, meta = index_celebamask(demo_copy)
    assert df.image_sha.notna().all() and df.parts_sha.notna().all() and len(meta["attributes_sha"]) == 64
    i = int(df.id.iloc[0])
    img = celebamask.image_path(demo_copy, i)
    Image.open(img).rotate(90).save(img)
    part = next((demo_copy / celebamask.MASK_DIR).rglob(f"{int(df.id.iloc[1]):05d}_*.png"))
    part.write_bytes(part.read_bytes() + b"\0")
    again, meta2 = index_celebamask(demo_copy)
    changed = df.merge(again, on="id", suffixes=("", "_new"))
    assert (changed.image_sha != changed.image_sha_new).sum() == 1
    assert (changed.parts_sha != changed.parts_sha_new).sum() == 1
    assert meta2 == meta
    img.unlink()
    third, _ = index_celebamask(demo_copy)
    assert third.set_index("id").image_sha.isna()[i]


def test_faces_config_is_checked():
    with pytest.raises(ValueError, match="faces.per_photo"):
        FacesConfig(**{**CFG.__dict__, "per_photo": "first"})
    with pytest.raises(ValueError, match="multiple of 8"):
        FacesConfig(**{**CFG.__dict__, "size": 100})
    with pytest.raises(ValueError, match="data.layout"):
        Dataset("x", "ffhq")


@pytest.mark.fixture
def test_fixture_portraits_in_a_messy_folder_are_framed_as_celeba_hq(fixture_root, tmp_path):
    """12 CelebA-HQ portraits re-encoded, shrunk, rotated by EXIF, pasted rolled onto larger canvases: the
    training crops' eye centres against CelebA-HQ's own framing (the annotated eyes), px at 512."""
    from tools.composites import portrait_landmarks

    portraits = []
    for i in sorted(int(p.stem) for p in (fixture_root / celebamask.IMAGE_DIR).glob("*.jpg")):
        im = np.asarray(Image.open(celebamask.image_path(fixture_root, i)).convert("RGB"))
        lm, _, _ = portrait_landmarks(fixture_root, i, im.shape[0])
        if lm is not None:  # its eyes annotated
            portraits.append((im, lm[:2]))
        if len(portraits) == 12:
            break
    truths = photo_folder(tmp_path / "photos", portraits, seed=1, broken=False)
    helper = FaceHelper(SIZE, PARTS, detector="mediapipe", mask_backend="mesh", device="cpu")
    df, report = extract_faces(scan_folder(tmp_path / "photos"), tmp_path / "out", CFG, helper, progress=False)
    assert not report.unusable
    errors = pd.Series(
        {t.photo: eye_error(np.reshape(df[df.photo == t.photo].iloc[0].matrix, (2, 3)), t, SIZE) for t in truths}
    )
    print(f"eye-centre error vs CelebA-HQ framing, px at 512: mean {errors.mean():.1f}, max {errors.max():.1f}")
    assert errors.mean() < 12 and errors.max() < 25, errors
