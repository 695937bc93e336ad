"""Test photos with known faces: CelebA-HQ portraits scaled, rolled and pasted onto a large textured canvas.

    photo, truths = composite(root, ids, canvas=(2400, 1600), seed=0)

Each portrait (the whole CelebA-HQ frame: face, hair and its own background) is scaled to a random
size, turned by a random roll and pasted, through its own rotated square, onto a canvas of smooth
multi-scale noise and stripes (a textured background for the detector to ignore). `Truth` records where
each face went: the similarity portrait -> canvas, the face's centre and width (its annotated skin, in
canvas pixels) and 5 landmarks (eye centres, nose centre, mouth corners from the part masks, mapped
through the same transform), so tests and benchmarks can score detection and alignment without weights.
Used by tests/test_faces.py and bench/edit.py; the fixture itself never leaves ../shared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from facepaint.method.alignment import similarity


@dataclass
class Truth:
    portrait: int  # the CelebA-HQ id
    matrix: np.ndarray  # 2x3 similarity portrait -> canvas
    roll: float  # degrees, counter-clockwise as displayed
    centre: tuple[float, float]  # the annotated face's centre in canvas pixels
    width: float  # the annotated face's width (skin), canvas pixels
    landmarks: np.ndarray | None  # 5 x 2 in canvas pixels (TEMPLATE_512's order), None when unannotated
    side: int = 512  # the portrait's size in pixels


def texture(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """uint8 H x W x 3: smooth noise at several scales plus faint stripes (no faces in it)."""
    w, h = size
    out = np.zeros((h, w, 3), np.float32)
    for cells, amp in ((4, 70.0), (16, 40.0), (64, 25.0), (256, 12.0)):
        small = rng.random((max(2, cells * h // w), cells, 3)).astype(np.float32)
        out += amp * np.asarray(Image.fromarray((small * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC)) / 255
    yy, xx = np.mgrid[0:h, 0:w]
    out += 15 * np.sin((xx * math.cos(0.7) + yy * math.sin(0.7)) / 9.0)[..., None]
    return np.clip(out - out.mean() + 128, 0, 255).astype(np.uint8)


def part_centroid(anno: Path, image_id: int, part: str):
    path = anno / str(image_id // 2000) / f"{image_id:05d}_{part}.png"
    if not path.is_file():
        return None
    m = np.asarray(Image.open(path).convert("L")) > 127
    ys, xs = np.nonzero(m)
    return None if len(xs) == 0 else (xs, ys)


def portrait_landmarks(root: Path, image_id: int, side: int):
    """(5 x 2 landmarks, skin centre, skin width) in the portrait of `side` px, from the 512 px part masks."""
    anno = root / "CelebAMask-HQ-mask-anno"
    parts = {p: part_centroid(anno, image_id, p) for p in ("l_eye", "r_eye", "nose", "u_lip", "l_lip", "skin")}
    skin = parts["skin"]
    if skin is None:
        return None, None, None
    k = side / 512
    centre = (k * (skin[0].min() + skin[0].max() + 1) / 2, k * (skin[1].min() + skin[1].max() + 1) / 2)
    width = k * (skin[0].max() + 1 - skin[0].min())
    if any(parts[p] is None for p in ("l_eye", "r_eye", "nose")) or (
        parts["u_lip"] is None and parts["l_lip"] is None
    ):
        return None, centre, width
    eyes = sorted([(parts[p][0].mean(), parts[p][1].mean()) for p in ("l_eye", "r_eye")])
    nose = (parts["nose"][0].mean(), parts["nose"][1].mean())
    lips = [parts[p] for p in ("u_lip", "l_lip") if parts[p] is not None]
    xs, ys = np.concatenate([p[0] for p in lips]), np.concatenate([p[1] for p in lips])
    left, right = xs.argmin(), xs.argmax()
    pts = np.array([*eyes, nose, (xs[left], ys[left]), (xs[right], ys[right])], np.float64)
    return (pts + 0.5) * k, centre, width


def to_canvas(points, matrix: np.ndarray) -> np.ndarray:
    return np.asarray(points, np.float64) @ matrix[:, :2].T + matrix[:, 2]


def paste_portrait(canvas: np.ndarray, portrait: np.ndarray, matrix: np.ndarray) -> None:
    """Warp `portrait` by `matrix` onto `canvas` in place (its square only; the canvas shows elsewhere)."""
    import cv2

    h, w = canvas.shape[:2]
    warped = cv2.warpAffine(portrait, matrix, (w, h), flags=cv2.INTER_AREA if matrix[0, 0] < 1 else cv2.INTER_LINEAR)
    alpha = cv2.warpAffine(np.ones(portrait.shape[:2], np.float32), matrix, (w, h), flags=cv2.INTER_LINEAR)
    canvas[:] = np.clip(warped * alpha[..., None] + canvas * (1 - alpha[..., None]), 0, 255).astype(np.uint8)


def composite(
    root: str | Path,
    ids: list[int],
    canvas: tuple[int, int] = (2400, 1600),
    seed: int = 0,
    scale: tuple[float, float] = (0.1, 1.0),
    max_roll: float = 30.0,
) -> tuple[np.ndarray, list[Truth]]:
    """A canvas of size (w, h) with one portrait per id, each in its own cell of a grid (no overlaps), scaled
    by a random factor in `scale` (of the portrait's own size, capped to fit its cell) and rolled by up to
    +-`max_roll` degrees."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    w, h = canvas
    out = texture(canvas, rng)
    cols = math.ceil(math.sqrt(len(ids) * w / h))
    rows = math.ceil(len(ids) / cols)
    cw, ch = w / cols, h / rows
    truths = []
    for k, image_id in enumerate(ids):
        portrait = np.asarray(Image.open(root / "CelebA-HQ-img" / f"{image_id}.jpg").convert("RGB"))
        side = portrait.shape[0]
        roll = float(rng.uniform(-max_roll, max_roll))
        spread = abs(math.cos(math.radians(roll))) + abs(math.sin(math.radians(roll)))
        fit = min(cw, ch) / (side * spread)
        s = float(min(rng.uniform(*scale), fit))
        col, row = k % cols, k // cols
        free_x, free_y = cw - side * s * spread, ch - side * s * spread
        cx = col * cw + cw / 2 + rng.uniform(-0.5, 0.5) * max(free_x, 0)
        cy = row * ch + ch / 2 + rng.uniform(-0.5, 0.5) * max(free_y, 0)
        matrix = similarity(roll, s, (side / 2, side / 2), (cx, cy))
        paste_portrait(out, portrait, matrix)
        lms, centre, width = portrait_landmarks(root, image_id, side)
        truths.append(
            Truth(
                image_id,
                matrix,
                roll,
                tuple(to_canvas(centre if centre is not None else (side / 2, side / 2), matrix)),
                (width if width is not None else side * 0.5) * s,
                None if lms is None else to_canvas(lms, matrix),
                side,
            )
        )
    return out, truths


def match(faces, truths: list[Truth]) -> tuple[dict[int, int], list[int]]:
    """({truth index: face index} for each truth found, [face indices that match no truth]). A face matches a
    truth when its centre lies within 0.5 x the truth's width of the truth's centre."""
    found, used = {}, set()
    for t, truth in enumerate(truths):
        best = None
        for i, f in enumerate(faces):
            d = math.hypot(f.centre[0] - truth.centre[0], f.centre[1] - truth.centre[1])
            if i not in used and d < 0.5 * truth.width and (best is None or d < best[0]):
                best = (d, i)
        if best is not None:
            found[t] = best[1]
            used.add(best[1])
    return found, [i for i in range(len(faces)) if i not in used]


def truth_mask(root: str | Path, truths: list[Truth], size: tuple[int, int], parts) -> np.ndarray:
    """bool H x W: the union of the composite's faces' annotated `parts`, carried through each transform
    (what a user would paint as the faces to edit)."""
    import cv2

    from facepaint.data.masks import annotation_union

    w, h = size
    out = np.zeros((h, w), bool)
    for t in truths:
        m, _ = annotation_union(Path(root), t.portrait, parts)  # 512 px part masks
        k = t.side / m.shape[0]
        matrix = t.matrix.copy()
        matrix[:, :2] *= k
        out |= cv2.warpAffine(m.astype(np.float32), matrix, (w, h), flags=cv2.INTER_LINEAR) > 0.5
    return out
