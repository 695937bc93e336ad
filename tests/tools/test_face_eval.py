"""tools/face_eval.py: the detector comparison's figures on a small part of the real fixture (12 portraits and
one small composite for MediaPipe, 3 portraits for the cascade), its table and preview, and the alignment
error's arithmetic on known points."""

from __future__ import annotations

import math

import numpy as np
import pytest

from facepaint.method.alignment import TEMPLATE_512
from facepaint.method.detection import Face
from tools.composites import to_canvas
from tools.face_eval import PREVIEW, eye_errors, floor_errors, iou, measure, table

SMALL = (((1200, 800), 7, 4),)  # one composite: 4 fixture faces


@pytest.fixture(scope="module")
def mediapipe_run(fixture_root, tmp_path_factory):
    preview = tmp_path_factory.mktemp("face_eval")
    result = measure(fixture_root, portraits=12, composites=SMALL, detectors=("mediapipe",), preview=preview)
    return result, preview


def faces_found(result, name: str) -> tuple[int, int]:
    """(found, faces) over the portraits and the composites' faces >= 64 px."""
    p, c = result[name]["portraits"]["found_64"], result[name]["composites"]["found_64"]
    return p["found"] + c["found"], p["faces"] + c["faces"]


def test_mediapipe_finds_nine_in_ten_faces(mediapipe_run):
    result, _ = mediapipe_run
    found, faces = faces_found(result, "mediapipe")
    assert faces >= 14 and found / faces >= 0.9, result["mediapipe"]


def test_mediapipe_has_few_false_positives(mediapipe_run):
    result, _ = mediapipe_run
    p, c = result["mediapipe"]["portraits"], result["mediapipe"]["composites"]
    false = p["false_per_photo"] * p["photos"] + c["false_per_photo"] * c["photos"]
    assert round(false) <= 1, (p, c)


def test_mediapipe_mesh_mask_matches_the_annotated_face(mediapipe_run):
    result, _ = mediapipe_run
    mesh = result["mediapipe"]["portraits"]["mesh_iou"]
    assert mesh["n"] >= 11 and mesh["mean"] > 0.7 and mesh["p5"] > 0.5, mesh


def test_mediapipe_aligns_the_annotated_eyes_onto_the_template(mediapipe_run):
    result, _ = mediapipe_run
    p, c = result["mediapipe"]["portraits"]["eye_px"], result["mediapipe"]["composites"]["eye_px"]
    assert p["n"] >= 20 and p["mean"] < 10, p
    assert c["n"] >= 6 and c["mean"] < 10, c


def test_the_table_and_preview(mediapipe_run):
    result, preview = mediapipe_run
    text = table(result)
    assert "mediapipe-blazeface" in text and "mesh IoU" in text and "opencv" not in text.split("\n")[0]
    from PIL import Image

    img = Image.open(preview / PREVIEW)
    assert img.size[0] == 1200 and img.size[1] > 800  # the photo under a legend band


def test_the_cascade_column(fixture_root):
    """The cascade on 3 portraits: the mesh on its box gives the face, and the box framing aligns the eyes."""
    result = measure(fixture_root, portraits=3, composites=(), detectors=("opencv",))
    p = result["opencv"]["portraits"]
    assert p["found_64"]["found"] == 3 and p["mesh_iou"]["mean"] > 0.7 and p["eye_px"]["mean"] < 15, p
    assert result["opencv"]["mask"] == "FaceMesh on the detector's box"


def test_eye_errors_measure_the_distance_to_the_template():
    """A face whose landmarks are the known points, moved by any similarity, aligns them onto themselves: the
    error is how far the known eyes lie from the template's; a box shifted by d px at 512 moves them by d."""
    assert np.allclose(floor_errors(TEMPLATE_512), 0, atol=1e-6)
    a = math.radians(20)
    m = np.array([[0.5 * math.cos(a), 0.5 * math.sin(a), 700], [-0.5 * math.sin(a), 0.5 * math.cos(a), 300]])
    known = to_canvas(TEMPLATE_512, m)
    face = Face((0, 0, 1, 1), 1.0, tuple(map(tuple, known)))
    assert np.allclose(eye_errors(face, known), 0, atol=1e-6)
    shifted = Face((0, 0, 1, 1), 1.0, tuple(map(tuple, known + [3.0 * 0.5, 0])))  # 3 px at 512 (scale 0.5)
    assert np.allclose(eye_errors(shifted, known), 3.0, atol=1e-6)
    a, b = np.zeros((4, 4), bool), np.zeros((4, 4), bool)
    a[:2], b[1:3] = True, True
    assert iou(a, b) == pytest.approx(1 / 3) and iou(a, a) == 1.0
