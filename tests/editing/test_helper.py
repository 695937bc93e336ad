"""Faces in users' photos (facepaint.editing.alignment): detection on composites of real portraits, alignment,
selection and paste-back."""

import math

import numpy as np
import pytest
import torch

from facepaint.editing.alignment import TEMPLATE_512, align, matrix_roll, warp_crop
from facepaint.editing.detection import (
    CascadeDetector,
    Face,
    FaceError,
    RetinaFaceDetector,
    make_detector,
    select_faces,
)
from facepaint.editing.helper import composite, paste, territory
from facepaint.method.blend import soft_mask
from facepaint.method.models import ModelLoadError
from tools.composites import composite as make_composite
from tools.composites import match, portrait_landmarks


def transform(points, matrix):
    return np.asarray(points, np.float64) @ matrix[:, :2].T + matrix[:, 2]


def test_landmark_alignment_recovers_the_roll_of_real_faces(fixture_root):
    """Landmarks from the fixture's part masks (eye and nose centres, mouth corners), carried through each
    composite's known transform: the alignment undoes the applied roll (to within 0.05 degrees of the
    alignment of the untouched portrait) and leaves every face upright within 2.5 degrees (what is left is
    the portrait's own tilt against the template: CelebA-HQ aligned its faces with other landmarks)."""
    recovered, upright, eye_err, n = 0.0, 0.0, [], 0
    for seed in range(6):
        ids = [int(x) for x in (fixture_root / "ids.txt").read_text().split()][seed * 4 : seed * 4 + 4]
        _, truths = make_composite(fixture_root, ids[: 1 + seed % 4], canvas=(1200, 800), seed=seed)
        for t in truths:
            if t.landmarks is None:
                continue
            m = align(Face((*t.landmarks.min(0), *t.landmarks.max(0)), 1.0, tuple(map(tuple, t.landmarks))), 512)
            own, _, _ = portrait_landmarks(fixture_root, t.portrait, 512)
            m0 = align(Face((*own.min(0), *own.max(0)), 1.0, tuple(map(tuple, own))), 512)
            recovered = max(recovered, abs(matrix_roll(m) + t.roll - matrix_roll(m0)))
            upright = max(upright, abs(matrix_roll(m) + t.roll))
            eye_err.append(np.abs(transform(t.landmarks[:2], m) - TEMPLATE_512[:2]).mean())
            n += 1
    print(
        f"{n} faces rolled by up to 30 deg: applied roll recovered within {recovered:.3f} deg, upright within "
        f"{upright:.2f} deg, eyes {np.mean(eye_err):.1f} px from the template's at 512 px"
    )
    assert n >= 12
    assert recovered < 0.05
    assert upright < 2.5
    assert np.mean(eye_err) < 12


def test_box_alignment_turns_the_crop_by_the_detectors_roll():
    face = Face((100, 100, 200, 200), 1.0, None, roll=20.0)
    m = align(face, 512)
    assert matrix_roll(m) == pytest.approx(-20.0)
    # the box side maps to BOX_FRAME's share of the crop
    assert math.hypot(*m[:, 0]) * face.size == pytest.approx(512 * 0.6445, rel=1e-3)


@pytest.mark.parametrize("seed", range(16))
def test_the_offline_detector_finds_the_faces_of_composites(fixture_root, seed, detection_tally):
    """OpenCV's cascade (turned +-15 and +-30 degrees) on 2400x1600 composites of 1 to 4 fixture faces scaled
    to 10-100% and rolled by up to +-30 degrees: the faces at least 120 px wide are tallied here and the rate
    is checked over all 16 photos (>= 90%) by `detection_tally`."""
    ids = [int(x) for x in (fixture_root / "ids.txt").read_text().split()]
    rng = np.random.default_rng(seed)
    chosen = [int(i) for i in rng.choice(ids, size=1 + seed % 4, replace=False)]
    photo, truths = make_composite(fixture_root, chosen, canvas=(2400, 1600), seed=100 + seed, scale=(0.25, 1.0))
    faces = CascadeDetector().detect(photo, min_face=60)
    found, false = match(faces, truths)
    big = [k for k, t in enumerate(truths) if t.width >= 120]
    detection_tally["faces"] += len(big)
    detection_tally["found"] += sum(k in found for k in big)
    detection_tally["false"] += len(false)
    detection_tally["photos"] += 1


@pytest.fixture(scope="module")
def detection_tally():
    tally = {"faces": 0, "found": 0, "false": 0, "photos": 0}
    yield tally
    if tally["photos"] == 16:
        rate = tally["found"] / max(tally["faces"], 1)
        print(
            f"\ncascade: {tally['found']}/{tally['faces']} faces >= 120 px found ({rate:.0%}), "
            f"{tally['false']} false positives in {tally['photos']} photos"
        )
        assert tally["faces"] >= 10 and rate >= 0.9, tally


def test_selection_by_index_largest_and_size():
    faces = [Face((0, 0, 50, 50), 1), Face((100, 0, 300, 200), 1), Face((400, 0, 500, 100), 1)]
    assert select_faces(faces, "all", 0) == ([0, 1, 2], [])
    assert select_faces(faces, "largest", 0) == ([1], [])
    assert select_faces(faces, "0,2", 0) == ([0, 2], [])
    keep, warn = select_faces(faces, "all", 64)
    assert keep == [1, 2] and len(warn) == 1 and "face 0" in warn[0] and "50 px" in warn[0]
    with pytest.raises(FaceError, match=r"face index \[3\] does not exist: photo.jpg has faces 0-2"):
        select_faces(faces, [0, 3], 0, "photo.jpg")
    with pytest.raises(ValueError, match="indices"):
        select_faces(faces, "left", 0)


def test_pasting_back_keeps_every_pixel_outside_the_soft_masks(fixture_root):
    """Three faces on an odd-sized canvas, each edited (noise) in its aligned crop: every pixel where all
    warped soft masks are 0 is bit-identical; inside, the result is the blend against the input."""
    ids = [int(x) for x in (fixture_root / "ids.txt").read_text().split()][10:13]
    photo, truths = make_composite(fixture_root, ids, canvas=(1001, 777), seed=3, scale=(0.6, 1.0))
    faces = [Face((*t.landmarks.min(0), *t.landmarks.max(0)), 1.0, tuple(map(tuple, t.landmarks))) for t in truths]
    rng = np.random.default_rng(0)
    pasted = []
    for i, f in enumerate(faces):
        m = align(f, 64)
        crop = warp_crop(photo, m, 64)
        mask = np.zeros((64, 64), bool)
        mask[16:52, 18:46] = True
        mask &= territory(faces, i, m, 64)
        assert crop.shape == (64, 64, 3)
        gen = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        pasted.append(paste(gen, soft_mask(mask, 2.0), mask, m, (1001, 777)))
    out, soft, union = composite(photo, pasted)
    assert out.shape == photo.shape and soft.shape == photo.shape[:2]
    assert np.array_equal(out[soft == 0], photo[soft == 0])
    assert (out[soft > 0.5] != photo[soft > 0.5]).any(axis=-1).mean() > 0.9
    assert union.sum() > 0 and (soft[union] > 0).all()


def test_close_faces_each_pixel_goes_to_the_face_whose_soft_mask_is_largest():
    """Two faces whose soft masks overlap: the composite equals the per-pixel argmax of the soft masks
    (ties to the first), blended against the original, whatever the order they are given in."""
    photo = np.full((100, 160, 3), 100, np.uint8)
    faces = [Face((30, 30, 80, 80), 1), Face((70, 30, 120, 80), 1)]
    pasted = []
    for k, f in enumerate(faces):
        m = align(f, 32)
        mask = np.zeros((32, 32), bool)
        mask[4:28, 2:30] = True
        pasted.append(paste(np.full((32, 32, 3), 50 + 100 * k, np.uint8), soft_mask(mask, 3.0), mask, m, (160, 100)))
    out, soft, _ = composite(photo, pasted)
    full = []
    for p in pasted:
        s, im = np.zeros(photo.shape[:2], np.float32), photo.astype(np.float32).copy()
        x0, y0, x1, y1 = p.region
        s[y0:y1, x0:x1], im[y0:y1, x0:x1] = p.soft, p.image
        full.append((s, im))
    both = (full[0][0] > 0) & (full[1][0] > 0)
    assert both.sum() > 50  # they do overlap
    owner = np.where(full[1][0] > full[0][0], 1, 0)
    s = np.where(owner == 1, full[1][0], full[0][0])
    im = np.where((owner == 1)[..., None], full[1][1], full[0][1])
    expect = np.where(
        (s > 0)[..., None], np.clip(np.rint(im * s[..., None] + photo * (1 - s[..., None])), 0, 255), photo
    )
    assert np.array_equal(out, expect.astype(np.uint8))
    assert np.array_equal(composite(photo, pasted[::-1])[0][~both], out[~both])


def test_retinaface_loads_through_the_real_loader(tmp_path):
    """facexlib's RetinaFace architecture, random weights saved as its checkpoint (with the 'module.' prefix
    of the published file): loaded weights-only, it returns boxes with 5 landmarks in photo pixels."""
    from facexlib.detection.retinaface import RetinaFace

    torch.manual_seed(0)
    net = RetinaFace("resnet50", device="cpu")
    path = tmp_path / "detection_Resnet50_Final.pth"
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, path)
    det = RetinaFaceDetector(path, device="cpu", threshold=0.0, max_side=160)
    faces = det.detect(np.zeros((240, 320, 3), np.uint8))
    assert faces and all(f.landmarks is not None and len(f.landmarks) == 5 for f in faces)
    xs = [f.centre[0] for f in faces]
    assert xs == sorted(xs)  # left to right
    assert max(f.box[2] for f in faces) > 160  # rescaled from the 160 px search to the photo's 320 px


def test_missing_or_wrong_detector_weights_say_what_to_do(tmp_path):
    with pytest.raises(ModelLoadError, match=r"detection_Resnet50_Final.pth.*--detector-weights.*--detector opencv"):
        RetinaFaceDetector(tmp_path / "nope.pth")
    bad = tmp_path / "bad.pth"
    torch.save({"x": torch.zeros(1)}, bad)
    with pytest.raises(ModelLoadError, match="does not hold RetinaFace"):
        RetinaFaceDetector(bad)
    det, notes = make_detector("auto")
    assert det.name == "opencv-haar" and "RetinaFace weights not found" in notes[0]
    with pytest.raises(ValueError, match="detector must be one of"):
        make_detector("yolo")
