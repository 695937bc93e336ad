"""Faces in a user's photo: detection, alignment to the training data's framing, and paste-back.

    photo -> detector (`RetinaFaceDetector`: boxes + 5 landmarks; `CascadeDetector`: OpenCV's bundled
    frontal-face cascade, boxes and a coarse roll, offline) -> `Face`s in a stable left-to-right order
    -> `select_faces` (all | largest | indices, min size) -> `align`: a similarity transform photo -> crop
    at the model's resolution (landmarks: least squares onto the 5-point template; box only: a square
    around the box scaled as CelebA-HQ frames its faces, turned by the detector's roll)
    -> [edit in crop space] -> `warp_back`: the decoded crop and its soft mask through the inverse
    transform onto the photo's pixels (only the region they cover) -> `composite`.

Why it is built this way (facexlib's detect -> align -> parse -> paste pipeline, as GFPGAN uses it):
- The model was trained on CelebA-HQ, whose faces are aligned upright at a fixed scale. The standard
  5-point template (FFHQ's, which facexlib uses at 512 px) is that framing: on 192 faces of the
  CelebAMask-HQ fixture the annotated eye centres lie on average 3.7 px (x) and 5.2 px (y) from its eye
  points at 512 px (`tools/face_frame.py`), so a face aligned onto it looks to the model like its training data.
- Box-only detections (no landmarks) are framed with `BOX_FRAME`, measured the same way: the cascade's
  box on the fixture portraits, as a fraction of the CelebA-HQ frame.
- A frontal cascade finds faces rolled by up to about 15 degrees; `CascadeDetector` also runs on the
  photo turned by +-`roll_step` degrees (and twice that), so faces rolled by up to about 40 degrees are
  found, and the turn that found a face is its roll estimate.
- Paste-back: each face's soft mask is computed in crop space (the sigma the model was trained with,
  at the model's resolution) and warped back bilinearly; it is exactly 0 outside the warped crop. Where
  faces are close and their warped soft masks overlap, each pixel takes the face whose soft mask is
  largest there (ties: the lower index), blended against the original photo, so the result does not
  depend on the order faces are processed in. Every pixel where all soft masks are 0 is copied from
  the input (bit-identical).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facepaint import FacepaintError
from facepaint.models import ModelLoadError, facexlib_cache, facexlib_weights, pick_device

# The standard 5-point face template at 512 px (left eye, right eye, nose tip, left and right mouth
# corners, left = the photo's left), as facexlib's FaceRestoreHelper uses it for FFHQ-aligned 512 px faces.
TEMPLATE_512 = np.array(
    [
        [192.98138, 239.94708],
        [318.90277, 240.1936],
        [256.63416, 314.01935],
        [201.26117, 371.41043],
        [313.08905, 371.15118],
    ],
    np.float64,
)

# How CelebA-HQ frames a face relative to OpenCV's frontal-face cascade box (measured on the 200 fixture
# portraits by `tools/face_frame.py`): the frame's side is box side / `side`, and the frame's centre is the
# box centre plus (dx, dy) x the frame's side.
# 196 of the 200 portraits detected; 10-90% spread: side 0.595-0.706, dx -0.010-0.011, dy -0.066 to -0.042.
BOX_FRAME = {"side": 0.6445, "dx": -0.0005, "dy": -0.0518}

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


# ----------------------------------------------------------------------------------------- detectors


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


# ------------------------------------------------------------------------------------------ selection


def parse_selection(spec) -> str | list[int]:
    """`--faces`: "all", "largest", or face indices ("0,2", [0, 2])."""
    if isinstance(spec, str) and spec.strip().lower() in ("all", "largest"):
        return spec.strip().lower()
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    try:
        idx = [int(str(i).strip()) for i in items]
    except ValueError:
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


# ------------------------------------------------------------------------------------------ alignment


def similarity(angle_deg: float, scale: float, src: tuple[float, float], dst: tuple[float, float]) -> np.ndarray:
    """2x3 matrix of the similarity that maps `src` to `dst`, scaling by `scale` and turning the content
    by `angle_deg` (counter-clockwise as displayed, y pointing down)."""
    a = math.radians(angle_deg)
    c, s = scale * math.cos(a), scale * math.sin(a)
    lin = np.array([[c, s], [-s, c]])
    return np.hstack([lin, (np.asarray(dst) - lin @ np.asarray(src))[:, None]])


def matrix_roll(matrix: np.ndarray) -> float:
    """The turn (degrees, counter-clockwise) that `matrix` applies to the content."""
    return math.degrees(math.atan2(matrix[0, 1], matrix[0, 0]))


def align(face: Face, resolution: int, frame: dict | None = None) -> np.ndarray:
    """The 2x3 similarity photo -> crop (`resolution` px square) that puts `face` where CelebA-HQ puts its
    faces: landmarks onto the 5-point template (least squares), or the box by `frame` (BOX_FRAME) turned
    upright by the detector's roll."""
    if face.landmarks is not None:
        src = np.asarray(face.landmarks, np.float64)
        dst = TEMPLATE_512 * (resolution / 512)
        # least-squares similarity (Umeyama without reflection): the closed form for 2-D points
        ms, md = src.mean(0), dst.mean(0)
        s0, d0 = src - ms, dst - md
        a = (s0 * d0).sum()
        b = (s0[:, 0] * d0[:, 1] - s0[:, 1] * d0[:, 0]).sum()
        var = (s0**2).sum()
        if var <= 0:
            raise FaceError(f"degenerate landmarks {face.landmarks}")
        c, s = a / var, b / var
        lin = np.array([[c, -s], [s, c]])
        return np.hstack([lin, (md - lin @ ms)[:, None]])
    frame = frame or BOX_FRAME
    cx, cy = face.centre
    side = face.size / frame["side"]
    # the frame centre is offset from the box centre along the face's own axes
    a = math.radians(face.roll)
    ox, oy = frame["dx"] * side, frame["dy"] * side
    fx = cx + ox * math.cos(a) + oy * math.sin(a)
    fy = cy - ox * math.sin(a) + oy * math.cos(a)
    return similarity(-face.roll, resolution / side, (fx, fy), (resolution / 2, resolution / 2))


def square(x0: float, y0: float, side: float, resolution: int) -> np.ndarray:
    """The 2x3 matrix that resizes the photo's square (x0, y0, side) onto the `resolution` px crop (pixel
    centres at integer coordinates, as OpenCV samples)."""
    k = resolution / side
    return np.array([[k, 0.0, (0.5 - x0) * k - 0.5], [0.0, k, (0.5 - y0) * k - 0.5]])


def rescale(matrix: np.ndarray, k: float) -> np.ndarray:
    """`matrix` (photo -> crop) for the same crop resized by `k` (pixel centres kept aligned)."""
    out = matrix * k
    out[:, 2] += 0.5 * (k - 1)
    return out


def offset(matrix: np.ndarray, x0: float, y0: float) -> np.ndarray:
    """`matrix` (photo -> crop) for a part of the photo whose top-left pixel is (x0, y0)."""
    shifted = matrix.copy()
    shifted[:, 2] += matrix[:, :2] @ np.array([x0, y0], np.float64)
    return shifted


def matrix_scale(matrix: np.ndarray) -> float:
    """Crop pixels per photo pixel."""
    return math.hypot(matrix[0, 0], matrix[1, 0])


def warp_crop(photo: np.ndarray, matrix: np.ndarray, resolution: int) -> np.ndarray:
    """The aligned crop: `photo` through `matrix` onto a `resolution` px square (edges replicated). A face
    larger than the crop is first shrunk by area averaging (bilinear sampling alone would alias)."""
    import cv2

    k = matrix_scale(matrix)
    if k < 0.75:  # shrink the part of the photo under the crop with INTER_AREA, then warp at ~1:1
        x0, y0, x1, y1 = crop_footprint(matrix, resolution, (photo.shape[1], photo.shape[0]))
        if x1 > x0 and y1 > y0:
            sub = photo[y0:y1, x0:x1]
            w, h = max(1, round((x1 - x0) * k)), max(1, round((y1 - y0) * k))
            small = cv2.resize(sub, (w, h), interpolation=cv2.INTER_AREA)
            sx, sy = (x1 - x0) / w, (y1 - y0) / h  # photo pixels per small pixel
            pre = np.array([[sx, 0.0, x0 + 0.5 * sx - 0.5], [0.0, sy, y0 + 0.5 * sy - 0.5]])  # small -> photo
            matrix = np.hstack([matrix[:, :2] @ pre[:, :2], (matrix[:, :2] @ pre[:, 2] + matrix[:, 2])[:, None]])
            photo = small
    return cv2.warpAffine(
        photo, matrix, (resolution, resolution), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def warp_mask_to_crop(mask: np.ndarray, matrix: np.ndarray, resolution: int) -> np.ndarray:
    """A photo-size bool mask seen in the crop (bilinear, > 0.5); only the part under the crop is read."""
    import cv2

    x0, y0, x1, y1 = crop_footprint(matrix, resolution, (mask.shape[1], mask.shape[0]))
    if x1 <= x0 or y1 <= y0:
        return np.zeros((resolution, resolution), bool)
    sub = mask[y0:y1, x0:x1].astype(np.float32)
    return cv2.warpAffine(sub, offset(matrix, x0, y0), (resolution, resolution), flags=cv2.INTER_LINEAR) > 0.5


def crop_footprint(
    matrix: np.ndarray, resolution: int, size: tuple[int, int], support=None
) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the photo pixels (clipped to size = (w, h)) that the crop, or the part of it where
    `support` (R x R bool) is set, maps back onto, with a 1 px margin for bilinear sampling."""
    import cv2

    inv = cv2.invertAffineTransform(matrix)
    if support is not None:
        ys, xs = np.nonzero(support)
        if len(xs) == 0:
            return 0, 0, 0, 0
        u0, u1, v0, v1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    else:
        u0, v0, u1, v1 = 0, 0, resolution, resolution
    corners = np.array([[u0, v0, 1], [u1, v0, 1], [u0, v1, 1], [u1, v1, 1]], np.float64) - [0.5, 0.5, 0]
    pts = corners @ inv.T
    w, h = size
    x0, y0 = np.floor(pts.min(0)).astype(int) - 1
    x1, y1 = np.ceil(pts.max(0)).astype(int) + 2
    return int(max(0, x0)), int(max(0, y0)), int(min(w, x1)), int(min(h, y1))


def warp_back(crop: np.ndarray, matrix: np.ndarray, region: tuple[int, int, int, int]) -> np.ndarray:
    """An R x R (x C) crop-space array seen on the photo's pixels inside `region` (bilinear; 0 outside the
    crop). A crop that lands on fewer photo pixels than it has (a small face) is first shrunk by area
    averaging."""
    import cv2

    k = matrix_scale(matrix)
    if k > 1.34:
        n = crop.shape[0]
        m = max(1, round(n / k))
        crop = cv2.resize(crop, (m, m), interpolation=cv2.INTER_AREA)
        matrix = rescale(matrix, m / n)
    x0, y0, x1, y1 = region
    return cv2.warpAffine(
        crop,
        offset(matrix, x0, y0),
        (x1 - x0, y1 - y0),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


def _nearest(faces: list[Face], i: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Where face `i`'s centre is the nearest (distance over face size; ties to the lower index)."""

    def dist(f):
        return np.hypot(x - np.float32(f.centre[0]), y - np.float32(f.centre[1])) / np.float32(max(f.size, 1.0))

    mine, keep = dist(faces[i]), np.ones(x.shape, bool)
    for j, f in enumerate(faces):
        if j != i:
            d = dist(f)
            keep &= (mine < d) | ((mine == d) & (i < j))
    return keep


def territory(faces: list[Face], i: int, matrix: np.ndarray, resolution: int) -> np.ndarray:
    """R x R bool: the crop pixels of face `i` that are nearer to its centre than to any other face's
    (distances in units of each face's size), so a neighbour that reaches into this crop is not edited
    as part of this face."""
    import cv2

    if len(faces) <= 1:
        return np.ones((resolution, resolution), bool)
    inv = cv2.invertAffineTransform(matrix).astype(np.float32)
    v, u = np.mgrid[0:resolution, 0:resolution].astype(np.float32)
    return _nearest(faces, i, inv[0, 0] * u + inv[0, 1] * v + inv[0, 2], inv[1, 0] * u + inv[1, 1] * v + inv[1, 2])


def owned(
    faces: list[Face], i: int, matrix: np.ndarray, resolution: int, mask: np.ndarray
) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """(region, bool array of the region): the pixels of the photo-size `mask` under face `i`'s crop that
    belong to it (as `territory`): a whole-photo mask cut into per-face masks. Only the mask's own pixels
    are examined, so this costs what the face costs, not what the photo does."""
    h, w = mask.shape
    region = crop_footprint(matrix, resolution, (w, h))
    x0, y0, x1, y1 = region
    out = mask[y0:y1, x0:x1].copy()
    ys, xs = np.nonzero(out)
    if len(xs) == 0:
        return region, out
    x, y = (xs + x0).astype(np.float32), (ys + y0).astype(np.float32)
    u = matrix[0, 0] * x + matrix[0, 1] * y + matrix[0, 2]
    v = matrix[1, 0] * x + matrix[1, 1] * y + matrix[1, 2]
    keep = (u > -0.5) & (u < resolution - 0.5) & (v > -0.5) & (v < resolution - 0.5)
    if len(faces) > 1:
        keep &= _nearest(faces, i, x, y)
    out[ys[~keep], xs[~keep]] = False
    return region, out


def eye_roll(labels: np.ndarray, classes) -> float | None:
    """The roll (degrees, counter-clockwise as displayed) of the line through the centres of a parser's two
    eye classes, or None when either eye is missing."""
    centres = []
    for name in ("l_eye", "r_eye"):
        ys, xs = np.nonzero(labels == classes.index(name))
        if len(xs) < 4:
            return None
        centres.append((xs.mean(), ys.mean()))
    (xa, ya), (xb, yb) = sorted(centres)
    if xb - xa < 2:
        return None
    return math.degrees(math.atan2(-(yb - ya), xb - xa))


@dataclass
class Pasted:
    """One face warped back onto the photo: its region (x0, y0, x1, y1) and region-sized arrays."""

    region: tuple[int, int, int, int]
    image: np.ndarray  # uint8 h x w x 3: the decoded crop warped back
    soft: np.ndarray  # float32 h x w: its soft mask warped back (0 outside the crop)
    mask: np.ndarray  # bool h x w: M warped back (or the photo's own mask of the face, when given)
    cover: np.ndarray | None = None  # float32 h x w: > 0 where the crop lands (only for a pasted whole crop)


def paste(
    generated: np.ndarray, soft: np.ndarray, mask: np.ndarray | None, matrix: np.ndarray, size, whole: bool = False
) -> Pasted:
    """Warp one face's decoded crop, soft mask and M (R x R; None: `soft` > 0.5) back onto a photo of
    size = (w, h): over the region where the soft mask is > 0, or (`whole`) where the crop lands."""
    n = generated.shape[0]
    region = crop_footprint(matrix, n, size, support=None if whole else soft > 0)
    if region[2] <= region[0] or region[3] <= region[1]:
        z = np.zeros((0, 0), np.float32)
        return Pasted(region, np.zeros((0, 0, 3), np.uint8), z, z.astype(bool), z if whole else None)
    image = warp_back(np.ascontiguousarray(generated), matrix, region)
    s = warp_back(soft.astype(np.float32), matrix, region)
    s[s < 1e-6] = 0.0  # bilinear round-off far from the face
    m = warp_back((soft > 0.5 if mask is None else mask).astype(np.float32), matrix, region) > 0.5
    cover = warp_back(np.ones((n, n), np.float32), matrix, region) if whole else None
    return Pasted(region, image, s, m, cover)


def composite(
    photo: np.ndarray, pasted: list[Pasted], blend: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(the edited photo, the union soft mask (max over faces), the union M) at the photo's size.

    Each pixel is taken from the face whose warped soft mask is largest there (ties: the earlier face) and
    blended against the original photo: I_blend = I_result * s + I * (1 - s). Where every soft mask is 0
    the input's bytes are copied. `blend=False` (the ablation: no pixel-level blending) pastes each face's
    whole warped crop (`paste(..., whole=True)`) where it lands, the crop that covers a pixel most taking it."""
    from facepaint.edit import pixel_blend

    out = photo.copy()
    best = np.zeros(photo.shape[:2], np.float32)  # the winning weight so far
    soft_union = np.zeros(photo.shape[:2], np.float32)
    m_union = np.zeros(photo.shape[:2], bool)
    for p in pasted:
        x0, y0, x1, y1 = p.region
        if x1 <= x0 or y1 <= y0:
            continue
        sl = (slice(y0, y1), slice(x0, x1))
        weight = p.soft if blend else p.cover
        if weight is None:
            raise ValueError("composite(blend=False) needs crops pasted whole: paste(..., whole=True)")
        wins = weight > best[sl]
        mixed = pixel_blend(photo[sl], p.image, p.soft) if blend else p.image
        out[sl] = np.where(wins[..., None], mixed, out[sl])
        best[sl] = np.maximum(best[sl], weight)
        soft_union[sl] = np.maximum(soft_union[sl], p.soft)
        m_union[sl] |= p.mask
    return out, soft_union, m_union
