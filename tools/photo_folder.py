"""A messy folder of real photos, as a user's own would be, for the folder layout's tests and benchmark.

    truths = photo_folder(out, portraits, seed=0)

Each portrait (uint8 square RGB whose eye centres are known: CelebA-HQ's or the astronaut's framing) is written
in one of several ways, in turn: re-encoded as PNG; shrunk and re-encoded as a low-quality JPEG; pasted, scaled
and rolled, onto a larger textured canvas (portrait or landscape); stored on its side with an EXIF orientation
tag that turns it upright; as WEBP in a nested folder. Some get a `NAME.txt` with two caption lines, one a
`NAME_mask.png`. Beside them: a truncated JPEG, a 20 px thumbnail, a landscape without a face, a text file that
is no caption, and a caption without its photo. `Truth` says where each portrait's eye centres went (photo
pixels, as the photo is displayed), so a test can compare a training crop's framing with the portrait's.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from facepaint.method.alignment import similarity
from tools.composites import paste_portrait, texture

KINDS = ("png", "small_jpeg", "canvas", "exif_rotated", "nested_webp", "landscape_canvas")
BROKEN = {
    "broken.jpg": "truncated JPEG",
    "thumbnail.png": "20 px: too small for a face",
    "landscape.png": "no face",
}


@dataclass
class Truth:
    photo: str  # path relative to the folder
    eyes: np.ndarray  # 2 x 2: left and right eye centres in the photo (displayed) pixels
    portrait_eyes: np.ndarray  # 2 x 2: the same in the portrait's pixels (its own framing)
    side: int  # the portrait's side
    kind: str


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def photo_folder(
    out, portraits: list[tuple[np.ndarray, np.ndarray]], seed: int = 0, broken: bool = True
) -> list[Truth]:
    """Write the folder at `out` from `portraits`, each (uint8 S x S x 3, its 2 x 2 eye centres in its pixels).
    Returns where each portrait's eyes went."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    truths = []
    for i, (portrait, eyes) in enumerate(portraits):
        kind = KINDS[i % len(KINDS)]
        side = portrait.shape[0]
        eyes = np.asarray(eyes, np.float64)
        name = f"person_{i:03d}"
        if kind == "png":
            rel, m = f"{name}.png", np.array([[1.0, 0, 0], [0, 1.0, 0]])
            Image.fromarray(portrait).save(out / rel)
        elif kind == "small_jpeg":
            k = 0.6
            rel, m = f"{name}.jpg", np.array([[k, 0, 0], [0, k, 0]])
            small = Image.fromarray(portrait).resize((round(side * k),) * 2, Image.Resampling.LANCZOS)
            small.save(out / rel, quality=70)
        elif kind in ("canvas", "landscape_canvas"):
            size = (
                (round(side * 1.6), round(side * 2.2)) if kind == "canvas" else (round(side * 2.6), round(side * 1.7))
            )
            scale = float(rng.uniform(0.5, 0.8))
            roll = float(rng.uniform(-20, 20))
            half = side * scale / 2 * 1.45  # room for the rolled square
            centre = (float(rng.uniform(half, size[0] - half)), float(rng.uniform(half, size[1] - half)))
            m = similarity(roll, scale, (side / 2, side / 2), centre)
            canvas = texture(size, rng)
            paste_portrait(canvas, portrait, m)
            rel = f"{name}.jpg"
            Image.fromarray(canvas).save(out / rel, quality=92)
        elif kind == "exif_rotated":
            # stored turned 90 degrees clockwise, with EXIF orientation 8 ("rotate 90 CW to view"): viewers and
            # facepaint show it upright, as the portrait
            rel, m = f"{name}.jpg", np.array([[1.0, 0, 0], [0, 1.0, 0]])
            stored = Image.fromarray(portrait).transpose(Image.Transpose.ROTATE_270)
            exif = Image.Exif()
            exif[0x0112] = 8
            stored.save(out / rel, quality=92, exif=exif.tobytes())
        else:  # nested_webp
            rel, m = f"holiday/2024/{name}.webp", np.array([[1.0, 0, 0], [0, 1.0, 0]])
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(portrait).save(out / rel, quality=90)
        if i % 3 == 0:
            stem = (out / rel).with_suffix("")
            stem.with_suffix(".txt").write_text(f"a photo of person {i}\nperson {i}, portrait, smiling\n")
        truths.append(Truth(rel, _apply(m, eyes), eyes, side, kind))
    if broken:
        good = io.BytesIO()
        Image.fromarray(portraits[0][0]).save(good, format="JPEG", quality=90)
        (out / "broken.jpg").write_bytes(good.getvalue()[: len(good.getvalue()) // 3])
        Image.fromarray(portraits[0][0]).resize((20, 20)).save(out / "thumbnail.png")
        Image.fromarray(texture((640, 400), rng)).save(out / "landscape.png")
        (out / "README.md").write_text("photos of the team\n")
        (out / "orphan.txt").write_text("a caption whose photo was deleted\n")
    return truths


def eye_error(crop_matrix: np.ndarray, truth: Truth, size: int) -> float:
    """Mean distance (px at 512) between the eye centres of a training crop (`crop_matrix`: photo -> crop of
    side `size`) and where the portrait's own framing puts them (the portrait scaled to `size`)."""
    ours = _apply(np.asarray(crop_matrix, np.float64), truth.eyes)
    framing = truth.portrait_eyes * size / truth.side
    return float(np.linalg.norm(ours - framing, axis=1).mean() * 512 / size)
