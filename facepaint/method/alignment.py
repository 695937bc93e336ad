"""Alignment: a similarity transform from the photo to the model's square crop, and back.

    `Face` (facepaint.method.detection) -> `align`: a similarity transform photo -> crop at the model's
    resolution (landmarks: least squares onto the 5-point template; box only: a square around the box
    scaled as CelebA-HQ frames its faces, turned by the detector's roll) -> `warp_crop` -> [edit in crop
    space] -> `warp_back`: a crop-space array through the inverse transform onto the photo's pixels (only
    the region it covers; facepaint.method.face_helper composites the faces).

Why it is built this way:
- The model was trained on CelebA-HQ, whose faces are aligned upright at a fixed scale. The standard
  5-point template (FFHQ's, which facexlib uses at 512 px) is that framing: on 192 faces of the
  CelebAMask-HQ fixture the annotated eye centres lie on average 3.7 px (x) and 5.2 px (y) from its eye
  points at 512 px (`tools/face_frame.py`), so a face aligned onto it looks to the model like its training data.
- Box-only detections (no landmarks) are framed with `BOX_FRAME`, measured the same way: the cascade's
  box on the fixture portraits, as a fraction of the CelebA-HQ frame.
- A face much larger than the crop is shrunk by area averaging before the warp (bilinear sampling alone
  would alias), and a crop pasted onto a small face likewise.
"""

from __future__ import annotations

import math

import numpy as np

from facepaint.method.detection import Face, FaceError

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


# ----------------------------------------------------------------------------------------- detectors


# ------------------------------------------------------------------------------------------ selection


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
