"""Aligning faces to the model's framing (facepaint.method.alignment): the similarity from landmarks or a
box, the warps photo -> crop -> photo, and the roll of a parser's eye line."""

import math

import numpy as np
import pytest

from facepaint.method.alignment import (
    TEMPLATE_512,
    align,
    crop_footprint,
    eye_roll,
    matrix_roll,
    similarity,
    square,
    warp_back,
    warp_crop,
    warp_mask_to_crop,
)
from facepaint.method.detection import Face
from facepaint.method.masks import BISENET_CLASSES
from tests.helpers import box_mask, textured
from tests.method import astronaut
from tools.composites import composite as make_composite
from tools.composites import portrait_landmarks


def transform(points, matrix):
    return np.asarray(points, np.float64) @ matrix[:, :2].T + matrix[:, 2]


def landmark_face(landmarks) -> Face:
    lm = np.asarray(landmarks, np.float64)
    return Face((*lm.min(0), *lm.max(0)), 1.0, tuple(map(tuple, lm)))


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
            m = align(landmark_face(t.landmarks), 512)
            own, _, _ = portrait_landmarks(fixture_root, t.portrait, 512)
            m0 = align(landmark_face(own), 512)
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


@pytest.mark.parametrize("roll", [-30.0, -12.5, 0.0, 7.0, 30.0])
@pytest.mark.parametrize("scale", [0.3, 1.0, 2.5])
def test_landmark_alignment_recovers_the_roll_of_the_astronaut(scale, roll):
    """The astronaut's hand-placed landmarks through a known similarity (scaled, rolled, moved): the alignment
    undoes the roll and the scale (to within 0.05 degrees and 0.1% of the untouched portrait's alignment), puts
    the eyes within 12 px of the template's at 512 px, and the aligned crop is the untouched portrait's."""
    lm = astronaut.LANDMARKS
    m0 = align(landmark_face(lm), 512)
    moved = similarity(roll, scale, (256, 256), (700, 500))
    m = align(landmark_face(transform(lm, moved)), 512)
    assert abs(matrix_roll(m) + roll - matrix_roll(m0)) < 0.05
    assert math.hypot(*m[:, 0]) * scale == pytest.approx(math.hypot(*m0[:, 0]), rel=1e-3)
    assert np.abs(transform(transform(lm, moved)[:2], m) - TEMPLATE_512[:2]).mean() < 12
    assert abs(matrix_roll(m0)) < 5  # the portrait's own small tilt
    # the photo -> crop maps agree: each landmark lands on the same crop pixel
    assert np.abs(transform(transform(lm, moved), m) - transform(lm, m0)).max() < 1e-6


def test_box_alignment_turns_the_crop_by_the_detectors_roll():
    face = Face((100, 100, 200, 200), 1.0, None, roll=20.0)
    m = align(face, 512)
    assert matrix_roll(m) == pytest.approx(-20.0)
    # the box side maps to BOX_FRAME's share of the crop
    assert math.hypot(*m[:, 0]) * face.size == pytest.approx(512 * 0.6445, rel=1e-3)


def test_warps_photo_to_crop_and_back():
    """A square crop is the photo's square resized; warped back it covers the square again (interior pixels
    within bilinear error of the photo, 0 outside the crop); masks are warped as arrays are."""
    photo = textured(120, 160, seed=3)
    m = square(40, 20, 64, 64)  # a 1:1 crop: the crop is the photo's square exactly
    assert np.array_equal(warp_crop(photo, m, 64), photo[20:84, 40:104])
    region = crop_footprint(m, 64, (160, 120))
    assert region == (38, 18, 106, 86)  # the square (40, 20)-(104, 84) and a margin for bilinear sampling
    back = warp_back(warp_crop(photo, m, 64), m, region)
    assert back.shape == (68, 68, 3) and np.array_equal(back[2:66, 2:66], photo[20:84, 40:104])
    ring = np.ones((68, 68), bool)
    ring[2:66, 2:66] = False
    assert (back[ring] == 0).all()  # outside the crop

    turned = similarity(25.0, 0.5, (80, 60), (15.5, 15.5))  # rolled, 2 photo px per crop px
    crop = warp_crop(photo, turned, 32)
    region = crop_footprint(turned, 32, (160, 120))
    back = warp_back(crop, turned, region).astype(int)
    inside = warp_back(np.ones((32, 32), np.float32), turned, region) > 0.999
    x0, y0, x1, y1 = region
    err = np.abs(back - photo[y0:y1, x0:x1].astype(int))[inside]
    assert inside.sum() > 0.5 * 64 * 64 and np.median(err) < 25  # a photo at half resolution and back
    mask = box_mask(120, 160, 40, 80, 60, 100)
    in_crop = warp_mask_to_crop(mask, turned, 32)
    as_image = warp_crop(mask.astype(np.uint8) * 255, turned, 32) > 127  # area-averaged first: may differ at edges
    assert 0.8 * 20 * 20 < in_crop.sum() < 1.2 * 20 * 20 and (in_crop != as_image).sum() <= 0.05 * in_crop.sum()
    assert warp_mask_to_crop(mask, similarity(0, 1, (0, 0), (500, 500)), 32).sum() == 0  # crop off the photo


def test_eye_roll_is_the_angle_of_the_line_through_the_eyes():
    """A parser's labels with two eye blobs: the roll of the line through their centres (counter-clockwise as
    displayed, whichever eye is on the left); None when an eye is missing or the eyes are not side by side."""
    left, right = BISENET_CLASSES.index("l_eye"), BISENET_CLASSES.index("r_eye")

    def labels(a, b, first=left, second=right):
        out = np.zeros((512, 512), np.uint8)
        for (x, y), k in ((a, first), (b, second)):
            out[y - 4 : y + 5, x - 6 : x + 7] = k
        return out

    assert eye_roll(labels((190, 240), (320, 240)), BISENET_CLASSES) == pytest.approx(0.0)
    assert eye_roll(labels((190, 260), (320, 200)), BISENET_CLASSES) == pytest.approx(
        math.degrees(math.atan2(60, 130))
    )  # the right eye higher: rolled counter-clockwise
    assert eye_roll(labels((320, 200), (190, 260), right, left), BISENET_CLASSES) == pytest.approx(
        math.degrees(math.atan2(60, 130))
    )  # the parser's left/right labels do not matter
    no_right = labels((190, 240), (320, 240))
    no_right[no_right == right] = 0
    assert eye_roll(no_right, BISENET_CLASSES) is None
    assert eye_roll(labels((250, 200), (251, 300)), BISENET_CLASSES) is None  # one above the other
