"""One photo's round trip (facepaint.editing.helper): `FaceHelper.prepare` (detect, align, cut the user's mask
per face), `FaceHelper.paste` and `photo_mask`, and the pieces under them: `territory`, `owned`, `paste` and
`composite`, on composites of real portraits (the fixture's and the public-domain astronaut's)."""

import numpy as np
import pytest

from facepaint.editing.alignment import align, crop_footprint, warp_back, warp_crop
from facepaint.editing.detection import Face
from facepaint.editing.helper import FaceHelper, composite, owned, paste, territory
from facepaint.method.blend import soft_mask
from facepaint.method.masks import BISENET_CLASSES
from tests.editing import astronaut
from tests.helpers import box_mask, tiny_conditions
from tools.composites import composite as make_composite

RES = 64
PARTS = tiny_conditions(RES).parts


def iou(a, b) -> float:
    return (a & b).sum() / max((a | b).sum(), 1)


def to_photo(matrix, u, v):
    """Crop pixel coordinates -> photo coordinates."""
    import cv2

    inv = cv2.invertAffineTransform(matrix)
    return inv[0, 0] * u + inv[0, 1] * v + inv[0, 2], inv[1, 0] * u + inv[1, 1] * v + inv[1, 2]


# ------------------------------------------------------------------------------------------ paste back


def assert_paste_back_keeps_the_rest(photo, faces):
    """Each face edited (noise) in its aligned crop and pasted back: every pixel where all warped soft masks
    are 0 is bit-identical; inside, the result is the blend against the input."""
    rng = np.random.default_rng(0)
    size = photo.shape[1::-1]
    pasted = []
    for i, f in enumerate(faces):
        m = align(f, RES)
        crop = warp_crop(photo, m, RES)
        mask = np.zeros((RES, RES), bool)
        mask[16:52, 18:46] = True
        mask &= territory(faces, i, m, RES)
        assert crop.shape == (RES, RES, 3)
        gen = rng.integers(0, 256, (RES, RES, 3), dtype=np.uint8)
        pasted.append(paste(gen, soft_mask(mask, 2.0), mask, m, size))
    out, soft, union = composite(photo, pasted)
    assert out.shape == photo.shape and soft.shape == photo.shape[:2]
    assert np.array_equal(out[soft == 0], photo[soft == 0])
    assert (out[soft > 0.5] != photo[soft > 0.5]).any(axis=-1).mean() > 0.9
    assert union.sum() > 0 and (soft[union] > 0).all()
    assert (soft == 0).mean() > 0.5  # most of the photo is background


def test_pasting_back_keeps_every_pixel_outside_the_soft_masks(fixture_root):
    """Three fixture faces on an odd-sized canvas."""
    ids = [int(x) for x in (fixture_root / "ids.txt").read_text().split()][10:13]
    photo, truths = make_composite(fixture_root, ids, canvas=(1001, 777), seed=3, scale=(0.6, 1.0))
    faces = [Face((*t.landmarks.min(0), *t.landmarks.max(0)), 1.0, tuple(map(tuple, t.landmarks))) for t in truths]
    assert_paste_back_keeps_the_rest(photo, faces)


def test_pasting_back_keeps_every_pixel_outside_the_soft_masks_on_the_astronaut():
    """The astronaut's head scaled (from 0.4 to 1.3), rolled and pasted three times onto a larger odd-sized
    canvas."""
    places = [(0.4, 15.0, (200, 250)), (1.3, -25.0, (600, 300)), (0.8, 0.0, (450, 620))]
    photo, faces, _, _ = astronaut.heads(places, canvas=(1001, 777), seed=3)
    assert_paste_back_keeps_the_rest(photo, faces)


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


def test_composite_without_blending_needs_whole_crops_and_pastes_them():
    photo = np.full((60, 80, 3), 100, np.uint8)
    m = align(Face((20, 10, 50, 40), 1), 16)
    mask = box_mask(16, 16, 4, 12, 4, 12)
    with pytest.raises(ValueError, match="paste\\(..., whole=True\\)"):
        composite(photo, [paste(np.zeros((16, 16, 3), np.uint8), soft_mask(mask, 1.0), mask, m, (80, 60))], False)
    whole = paste(np.zeros((16, 16, 3), np.uint8), soft_mask(mask, 1.0), mask, m, (80, 60), whole=True)
    out, _, _ = composite(photo, [whole], False)
    x0, y0, x1, y1 = whole.region
    outside = np.ones((60, 80), bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(out[outside], photo[outside])
    assert (out[y0:y1, x0:x1][whole.cover > 0.5] == 0).all()  # the crop pasted whole, past the soft mask


# ----------------------------------------------------------------------------------- several faces


TWO = [Face((0, 0, 100, 100), 1), Face((100, 0, 200, 100), 1)]  # side by side, the same size: x = 100 between


def test_territory_gives_each_crop_pixel_to_the_nearest_face():
    m = align(TWO[0], 32)
    assert territory(TWO[:1], 0, m, 32).all()  # alone: the whole crop
    mine = territory(TWO, 0, m, 32)
    v, u = np.mgrid[0:32, 0:32].astype(np.float64)
    x, _ = to_photo(m, u, v)
    assert np.array_equal(mine[np.abs(x - 100) > 0.5], (x < 100)[np.abs(x - 100) > 0.5])
    assert 0 < mine.mean() < 1
    theirs = territory(TWO, 1, align(TWO[1], 32), 32)
    assert theirs[:, 0].sum() == 0 and theirs[:, -1].all()  # face 1's crop: its left edge is face 0's


def test_owned_cuts_a_whole_photo_mask_into_per_face_masks():
    mask = box_mask(100, 200, 20, 90, 10, 190)  # one mask over both faces
    cuts = [owned(TWO, i, align(f, 32), 32, mask) for i, f in enumerate(TWO)]
    full = []
    for (x0, y0, x1, y1), own in cuts:
        assert own.shape == (y1 - y0, x1 - x0)
        f = np.zeros(mask.shape, bool)
        f[y0:y1, x0:x1] = own
        full.append(f)
    assert not (full[0] & full[1]).any() and not ((full[0] | full[1]) & ~mask).any()
    # each pixel to the nearest face; column 100, as near to both, to the lower index
    assert full[0][:, 101:].sum() == 0 and full[1][:, :101].sum() == 0
    assert np.array_equal(full[0] | full[1], mask)  # both crops cover the whole mask here
    region, alone = owned(TWO[:1], 0, align(TWO[0], 32), 32, mask)
    assert alone.sum() > full[0].sum()  # alone, face 0 owns all of the mask under its crop
    assert owned(TWO, 0, align(TWO[0], 32), 32, np.zeros_like(mask))[1].sum() == 0


# ------------------------------------------------------------------------------------------- FaceHelper


@pytest.fixture(scope="module")
def helper():
    return FaceHelper(RES, PARTS, detector="opencv", device="cpu")


def test_prepare_cuts_the_users_mask_per_detected_face_and_paste_keeps_the_rest(helper):
    """The astronaut's heads with the faces painted: each detected face aligned at the model's resolution with
    its part of the mask; pasted back (noise as the edit), the pixels outside the soft masks are the input's,
    M is the user's mask exactly, and `photo_mask` (M warped back from the crops) is close to it."""
    photo, _, mask, _ = astronaut.heads()
    prepared = helper.prepare(photo, mask)
    assert prepared.detector == "opencv-haar" and prepared.source == "array" and len(prepared.faces) == 3
    assert [job.index for job in prepared.jobs] == [0, 1, 2]
    for job in prepared.jobs:
        assert job.image.shape == (RES, RES, 3) and job.crop_mask.shape == (RES, RES)
        assert job.aligned_by == "box" and job.beta == pytest.approx(job.crop_mask.mean()) and 0.1 < job.beta < 0.7
    assert iou(helper.photo_mask(prepared), mask) > 0.95  # M to each crop and back: resampled at its edge only

    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 256, (RES, RES, 3), dtype=np.uint8) for _ in prepared.jobs]
    out, soft, m, pasted = helper.paste(prepared, noise, 1.0)
    assert np.array_equal(m, mask) and len(pasted) == 3
    assert np.array_equal(out[soft == 0], photo[soft == 0]) and (soft[mask] > 0).all()
    assert (out[soft > 0.5] != photo[soft > 0.5]).any(axis=-1).mean() > 0.9
    wider, wider_soft, _, _ = helper.paste(prepared, noise, 3.0)  # sigma in pixels of the crop
    assert (wider_soft > 0).sum() > (soft > 0).sum() and not np.array_equal(wider, out)
    raw, _, _, _ = helper.paste(prepared, noise, 1.0, blend=False)  # the ablation: each crop pasted whole
    changed = (raw != photo).any(axis=2)
    assert (changed & (soft == 0)).any()
    for job in prepared.jobs:
        x0, y0, x1, y1 = crop_footprint(job.matrix, RES, photo.shape[1::-1])
        changed[y0:y1, x0:x1] = False
    assert not changed.any()  # nothing outside the crops


def test_prepare_without_a_mask_parses_each_aligned_face(random_bisenet_weights):
    """No mask: the parser labels each face's aligned crop (a stub: skin in the middle of the 512 px crop, as
    a trained parser would) and `photo_mask` is that, warped back onto the photo around each face."""
    helper = FaceHelper(RES, PARTS, detector="opencv", bisenet_weights=random_bisenet_weights, device="cpu")
    seen = []

    def skin_in_a_box(batch):
        seen.append(batch.shape)
        labels = np.full(batch.shape[:3], BISENET_CLASSES.index("hair"), np.uint8)
        labels[:, 128:384, 160:352] = BISENET_CLASSES.index("skin")
        return labels

    helper.face_parser().labels = skin_in_a_box
    photo, faces, mask, _ = astronaut.heads()
    prepared = helper.prepare(photo)
    assert prepared.source == "bisenet" and len(prepared.jobs) == 3
    assert seen and all(s == (1, 512, 512, 3) for s in seen)  # the aligned crop at the parser's 512 px
    expected = np.zeros((RES, RES), bool)
    expected[16:48, 20:44] = True
    for job in prepared.jobs:
        assert np.array_equal(job.crop_mask, expected)
    auto = helper.photo_mask(prepared)
    assert auto.shape == photo.shape[:2]
    assert iou(auto, mask) > 0.5  # the stub's box around each face, as the painted ellipse is
    for face, job in zip(faces, prepared.jobs):  # each face's box warped back, and nothing else
        nose = np.round(face.landmarks[2]).astype(int)
        assert auto[nose[1], nose[0]]
        region = crop_footprint(job.matrix, RES, photo.shape[1::-1], support=expected)
        x0, y0, x1, y1 = region
        back = warp_back(expected.astype(np.float32), job.matrix, region) > 0.5
        assert np.array_equal(auto[y0:y1, x0:x1], back)
        auto[y0:y1, x0:x1] = False
    assert not auto.any()
