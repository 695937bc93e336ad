"""One photo's round trip (facepaint.method.face_helper): `FaceHelper.prepare` (detect, align, the user's mask as the
authority region by region, or the automatic mask), `FaceHelper.paste` and `photo_mask`, and the pieces under
them: `territory`, `hold`, `group_regions`, `paste` and `composite`, on composites of real portraits (the
fixture's and the public-domain astronaut's)."""

import warnings

import numpy as np
import pytest

from facepaint.method.alignment import align, crop_footprint, warp_back, warp_crop
from facepaint.method.blend import soft_mask
from facepaint.method.detection import Face
from facepaint.method.face_helper import EditError, FaceHelper, composite, group_regions, hold, paste, territory
from facepaint.method.masks import BISENET_CLASSES
from tests.helpers import box_mask, tiny_conditions
from tests.method import astronaut
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


def test_hold_widens_a_crop_until_the_mask_region_is_inside():
    face = Face((40, 40, 80, 80), 1)
    m = align(face, 32)
    mask = box_mask(200, 200, 50, 70, 50, 70)  # well inside the face's crop
    assert hold(m, mask, 32)[1] == 0.0
    mask[20:140, 30:150] = True  # reaches far past the crop
    wide, factor = hold(m, mask, 32)
    assert factor > 1
    ys, xs = np.nonzero(mask)
    for x, y in ((xs.min() - 0.5, ys.min() - 0.5), (xs.max() + 0.5, ys.max() + 0.5)):
        u, v = wide[:, :2] @ (x, y) + wide[:, 2] + 0.5
        assert 0.04 * 32 - 1e-6 <= u <= 32 * 0.96 + 1e-6 and 0.04 * 32 - 1e-6 <= v <= 32 * 0.96 + 1e-6
    assert np.isclose(np.hypot(*wide[:, 0]), np.hypot(*m[:, 0]) / factor)  # the same turn, a smaller scale


def test_group_regions_keeps_the_parts_of_one_face_together():
    import cv2

    mask = np.zeros((300, 600), np.uint8)
    mask[100:120, 100:130] = mask[100:120, 160:190] = mask[160:175, 120:170] = 1  # eyes and a mouth, apart
    mask[100:200, 450:550] = 1  # another face, far away
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    groups = group_regions(stats, list(range(1, n)))
    far = labels[150, 500]
    assert sorted(map(sorted, groups)) == sorted([sorted(set(range(1, n)) - {far}), [far]])
    # missed faces side by side, 50 px apart (half their size): each in its own crop, a dab beside one goes with it
    mask = np.zeros((300, 600), np.uint8)
    mask[100:200, 100:200] = mask[100:200, 250:350] = mask[140:146, 210:216] = 1
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    groups = group_regions(stats, list(range(1, n)))
    a, b, dab = labels[150, 150], labels[150, 300], labels[142, 212]
    assert sorted(map(sorted, groups)) == sorted([sorted([a, dab]), [b]])


# ------------------------------------------------------------------------------------------- FaceHelper


class Given:
    """A detector that returns the faces it is given (to put a missed face, or a false box, where a test wants)."""

    name = "given"

    def __init__(self, faces):
        self.faces = faces

    def detect(self, photo, min_face=0):
        return list(self.faces)


def given_helper(faces) -> FaceHelper:
    h = FaceHelper(RES, PARTS, device="cpu")
    h._detector = Given(faces)
    return h


def regions(mask):
    import cv2

    n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    return [labels == c for c in range(1, n)]


def job_mask(job, shape):
    (x0, y0, x1, y1), own = job.photo_mask
    full = np.zeros(shape, bool)
    full[y0:y1, x0:x1] = own
    return full


def test_a_masked_face_the_detector_missed_is_edited_in_its_own_crop_with_a_warning():
    photo, faces, mask, _ = astronaut.heads()
    helper = given_helper([faces[0], faces[2]])  # the middle face is missed
    with pytest.warns(UserWarning, match=r"the mask's region at \[\d+, \d+, \d+, \d+\] is edited in its own crop"):
        prepared = helper.prepare(photo, mask)
    assert [job.index for job in prepared.jobs] == [0, 1, None]  # indices of the faces found
    missed = prepared.jobs[2]
    assert missed.aligned_by == "mask" and "region at" in missed.mask_from
    cx, cy = np.round(faces[1].centre).astype(int)
    (middle,) = [r for r in regions(mask) if r[cy, cx]]
    assert np.array_equal(job_mask(missed, mask.shape), middle)  # the whole middle face
    union = np.zeros(mask.shape, bool)
    for job in prepared.jobs:
        union |= job_mask(job, mask.shape)
    assert np.array_equal(union, mask)  # every masked pixel is edited, and nothing else
    _, _, m, _ = helper.paste(prepared, [np.zeros((RES, RES, 3), np.uint8)] * 3, 1.0)
    assert np.array_equal(m, mask)


def test_a_false_box_over_a_face_does_not_split_its_mask():
    """A false detection over the chin of the middle face (as the cascade made on real photos): the face's mask
    region stays whole in one crop, and the false box edits nothing."""
    photo, faces, mask, _ = astronaut.heads()
    x0, y0, x1, y1 = faces[1].box
    chin = Face((x0, (y0 + y1) / 2, x1, y1 + (y1 - y0)), 0.9)  # the lower half of the face and below
    helper = given_helper([faces[0], chin, faces[1], faces[2]])
    prepared = helper.prepare(photo, mask)
    found = [prepared.faces.index(f) for f in faces]
    assert sorted(job.index for job in prepared.jobs) == sorted(found)  # no job for the chin box
    whole = regions(mask)
    assert len(whole) == 3
    for job in prepared.jobs:  # each job edits one whole face region, and each region is edited once
        assert sum(np.array_equal(job_mask(job, mask.shape), r) for r in whole) == 1
    assert len({id(job) for job in prepared.jobs}) == 3


def test_a_mask_over_none_of_the_selected_faces_is_an_error():
    photo, faces, mask, _ = astronaut.heads()
    left_only = mask.copy()
    left_only[:, 240:] = False
    helper = given_helper(faces)
    largest = max(range(3), key=lambda i: faces[i].width)
    assert largest != 0
    with pytest.raises(EditError, match=r"covers none of the selected faces .*faces='largest'"):
        helper.prepare(photo, left_only, faces="largest")
    with pytest.warns(UserWarning, match=r"covers face 1, which faces=\[0\] does not select: left unedited"):
        prepared = helper.prepare(photo, mask, faces="0")
    assert [job.index for job in prepared.jobs] == [0]  # face 2's region is left too


def test_a_stray_stroke_beside_a_face_goes_with_it_and_a_missed_face_does_not():
    """Strokes of paint over no face box but inside a face's crop (a dab beside the chin, a line over the hair)
    are edited in that face's crop, with no warning; a face-sized region beside it is not a stray stroke: its
    own crop, with the warning."""
    photo, faces, mask, _ = astronaut.heads()
    cx, cy = np.round(faces[1].centre).astype(int)
    (middle,) = [r for r in regions(mask) if r[cy, cx]]
    ys, xs = np.nonzero(middle)
    x, y = xs.max() + 4, cy  # 4 px right of the face's mask region, outside its box
    top, width = ys.min() - 6, round(0.6 * faces[1].width)  # over the hair, above the box
    painted = mask.copy()
    painted[y : y + 4, x : x + 4] = True
    painted[top - 3 : top, cx - width // 2 : cx + width // 2] = True
    assert x > faces[1].box[2] and top < faces[1].box[1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepared = given_helper(faces).prepare(photo, painted, min_face=0)
    (job,) = [j for j in prepared.jobs if j.index == 1]
    assert np.array_equal(job_mask(job, painted.shape), middle | (painted & ~mask)) and "3 regions" in job.mask_from
    assert len(prepared.jobs) == 3
    with pytest.warns(UserWarning, match="is edited in its own crop"):
        prepared = given_helper([faces[0], faces[2]]).prepare(photo, mask)  # the middle face: not a stray stroke
    assert [job.index for job in prepared.jobs] == [0, 1, None]


def test_a_mask_wider_than_the_photos_short_side_is_edited_whole():
    """No face detected and a region wider than a panorama is tall: its square reaches past the photo's edges,
    so every masked pixel is still edited (and pasted back), and nothing else."""
    photo = np.random.default_rng(0).integers(0, 256, (200, 700, 3), np.uint8)
    mask = np.zeros((200, 700), bool)
    mask[60:150, 100:600] = True
    with pytest.warns(UserWarning, match=r"region at \[100, 60, 600, 150\] is edited in its own crop"):
        prepared = given_helper([]).prepare(photo, mask)
    (job,) = prepared.jobs
    assert np.array_equal(job_mask(job, mask.shape), mask) and any(
        "past the photo's edges" in n for n in prepared.notes
    )
    out, soft, m, _ = given_helper([]).paste(prepared, [np.zeros((RES, RES, 3), np.uint8)], 1.0)
    assert (
        np.array_equal(m, mask)
        and (out[100:110, 300:400] == 0).all()
        and np.array_equal(out[soft == 0], photo[soft == 0])
    )


def test_hold_reads_the_mask_like_every_pixel_on_a_turned_crop():
    rng = np.random.default_rng(0)
    face = Face((60, 50, 110, 100), 1, roll=25.0)
    m = align(face, 32)
    mask = rng.random((220, 240)) > 0.999  # scattered pixels reaching past the crop
    wide, factor = hold(m, mask, 32)
    assert factor > 1
    ys, xs = np.nonzero(mask)
    reach = 0.0
    for dx in (-0.5, 0.5):  # every corner of every pixel
        for dy in (-0.5, 0.5):
            u = wide[0, 0] * (xs + dx) + wide[0, 1] * (ys + dy) + wide[0, 2] + 0.5
            v = wide[1, 0] * (xs + dx) + wide[1, 1] * (ys + dy) + wide[1, 2] + 0.5
            reach = max(reach, np.abs(u - 16).max(), np.abs(v - 16).max())
    assert np.isclose(reach, 16 * (1 - 2 * 0.04))  # inside by the margin, and no wider than needed


def test_a_face_crop_is_widened_to_hold_its_whole_mask_region():
    """A mask that takes in the hair and more: the face's crop grows until all of it is inside, not cut."""
    photo, faces, _, _ = astronaut.heads()
    x0, y0, x1, y1 = [round(v) for v in faces[1].box]
    big = np.zeros(photo.shape[:2], bool)
    big[max(0, y0 - 60) : y1 + 60, x0 - 60 : x1 + 60] = True
    prepared = given_helper(faces).prepare(photo, big)
    (job,) = prepared.jobs
    assert job.index == 1 and np.array_equal(job_mask(job, big.shape), big)
    assert any("widened" in n for n in prepared.notes)


def test_the_automatic_mask_without_parser_weights_is_the_face_mesh(monkeypatch, tmp_path):
    """No BiSeNet weights: MediaPipe finds the astronaut's three heads and the face mesh's outline is each face's
    mask; it covers the hand-painted face ellipse and little else."""
    monkeypatch.setattr("facepaint.method.face_helper.default_bisenet_path", lambda: tmp_path / "absent.pth")
    helper = FaceHelper(RES, PARTS, device="cpu")
    photo, _, mask, _ = astronaut.heads()
    prepared = helper.prepare(photo)
    assert helper.mask_backend == "mesh" and prepared.source == "mesh"
    assert prepared.detector == "mediapipe-blazeface" and len(prepared.jobs) == 3
    assert all(job.mask_from == "mesh" and job.aligned_by == "landmarks" for job in prepared.jobs)
    auto = helper.photo_mask(prepared)
    assert (auto & mask).sum() / mask.sum() > 0.9  # the painted face is inside the mesh's
    assert iou(auto, mask) > 0.6  # the mesh's reaches the hairline; the painted ellipse stops at the brows


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
