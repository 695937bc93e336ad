"""Face detection in a user's photo: `Face`s (box, score, 5 landmarks when the detector gives them) in a stable
left-to-right order, and which of them to edit.

    photo -> detector (`RetinaFaceDetector`: boxes + 5 landmarks; `CascadeDetector`: OpenCV's bundled
    frontal-face cascade, boxes and a coarse roll, offline) -> `order_faces` -> `select_faces` (all |
    largest | indices, faces narrower than min_face skipped with a warning)

A frontal cascade finds faces rolled by up to about 15 degrees; `CascadeDetector` also runs on the photo
turned by +-`roll_step` degrees (and twice that), so faces rolled by up to about 40 degrees are found, and
the turn that found a face is its roll estimate (facepaint.editing.alignment turns the crop upright by it).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facepaint.common.errors import FacepaintError
from facepaint.method.models import ModelLoadError, facexlib_cache, facexlib_weights, pick_device

RETINAFACE_FILE = "detection_Resnet50_Final.pth"
RETINAFACE_URL = f"https://github.com/xinntao/facexlib/releases/download/v0.1.0/{RETINAFACE_FILE}"
CASCADE_FILE = "haarcascade_frontalface_default.xml"
DETECTORS = ("auto", "retinaface", "opencv")


class FaceError(FacepaintError):
    """A face selection that cannot be honoured (an index that does not exist, no face found)."""


@dataclass(frozen=True)
class Face:
    """One detected face, in photo pixels."""

    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    score: float  # the detector's confidence (RetinaFace: probability; cascade: neighbour count)
    landmarks: tuple[tuple[float, float], ...] | None = None  # 5 x (x, y) as TEMPLATE_512, or None
    roll: float = 0.0  # degrees, counter-clockwise as the photo is displayed (box-only detectors)

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


def make_detector(kind: str = "auto", weights: str | os.PathLike | None = None, device: str = "auto"):
    """(detector, notes). auto: RetinaFace when its weights are given or cached, else the offline cascade
    (with a note saying how to get landmarks); retinaface: its weights or a ModelLoadError that says how
    to supply them; opencv: the cascade."""
    if kind not in DETECTORS:
        raise ValueError(f"detector must be one of {DETECTORS}, got {kind!r}")
    if kind == "retinaface" or (kind == "auto" and (weights or default_retinaface_path().is_file())):
        return RetinaFaceDetector(weights, device), []
    if kind == "auto":
        return CascadeDetector(), [
            f"RetinaFace weights not found ({default_retinaface_path()}): faces were found with OpenCV's "
            f"cascade (boxes without landmarks); pass --detector-weights {RETINAFACE_FILE} for landmark alignment"
        ]
    return CascadeDetector(), []


def parse_selection(spec) -> str | list[int]:
    """`--faces`: "all", "largest", or face indices ("0,2", [0, 2])."""
    if isinstance(spec, str) and spec.strip().lower() in ("all", "largest"):
        return spec.strip().lower()
    try:
        items = spec.split(",") if isinstance(spec, str) else list(spec)  # TypeError: None, a number
        idx = [int(str(i).strip()) for i in items]
    except (TypeError, ValueError):
        raise ValueError(f"faces must be 'all', 'largest' or indices like '0,2', got {spec!r}") from None
    if not idx or min(idx) < 0 or len(set(idx)) != len(idx):
        raise ValueError(f"faces must be distinct indices >= 0, got {spec!r}")
    return idx


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
