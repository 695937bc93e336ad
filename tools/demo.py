"""The demo dataset: drawn portraits in the CelebAMask-HQ layout, so that `dvc repro` needs no download.

Each portrait is a frontal cartoon face: background, hair (unless Bald), head (skin) with ears, neck,
cloth, brows, eyes, nose, lips, and the inner mouth when smiling. Drawn so that they are visible:
Male, Black/Blond/Brown/Gray_Hair, Bald, Smiling, Eyeglasses, beard / Mustache (men), Wearing_Hat,
Wearing_Lipstick, Heavy_Makeup, Wearing_Earrings, Young and Pale_Skin. Every other attribute is -1.
Written like the official release::

    CelebA-HQ-img/{id}.jpg                                   size x size JPEG (quality 95)
    CelebAMask-HQ-mask-anno/{id // 2000}/{id:05d}_{part}.png mask_size x mask_size, mode L, 0/255
    CelebAMask-HQ-attribute-anno.txt                         count line, 40 names, "{id}.jpg  -1 1 ..."

Conventions (those of the real masks; tests/test_tools_demo.py checks each):
- Every shape is painted twice with the same coordinates, back to front: in colour into the image and
  with its part label into a label map. A part's mask is `labels == part`, so masks never overlap and
  a hidden part is not in its mask. Beards, wrinkles and make-up are colour only, painted where the
  label is skin, so they stay skin (CelebAMask-HQ has no beard class).
- 'l_'/'r_' are the person's left/right: l_eye, l_brow and l_ear lie on the image's right half.
- The skin has holes where the brows, eyes, nose, lips and mouth are painted over it.
- The label map is drawn at image size and reduced to mask_size by per-block majority. A drawn part
  lost in the reduction keeps one pixel, so a drawn part always has a mask file and an undrawn one
  never has (no eye_g file without glasses). Regenerating in place removes stale mask files.
- Image i depends only on (seed, i, size) through np.random.default_rng([seed, i]), and its attributes
  only on (seed, i): the same config writes byte-identical files, and more images extend fewer.

Why so small: the pipeline only needs plausible face masks (the union of the face parts in params.yaml
`masks.parts`) and attributes that the captions describe and the image shows. Realism is not the point.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter

from facepaint.common.checks import MAX_SEED, check_number
from facepaint.data.celebamask import ATTRIBUTE_FILE, ATTRIBUTES, PART_NAMES, image_path, part_mask_path

LABELS = {part: i + 1 for i, part in enumerate(PART_NAMES)}  # label-map values; 0 = background
JPEG_QUALITY = 95

HAIR = {
    "Black_Hair": (30, 24, 22),
    "Brown_Hair": (105, 66, 38),
    "Blond_Hair": (226, 192, 120),
    "Gray_Hair": (172, 170, 166),
}
PALE_SKIN = ((250, 228, 214), (242, 216, 200))
OTHER_SKIN = ((228, 188, 158), (206, 160, 124), (178, 132, 98), (138, 96, 68), (104, 70, 50))
LIPSTICK = ((186, 28, 52), (204, 72, 112), (140, 30, 62))
EYE_SHADOW = ((120, 80, 150), (70, 100, 160), (140, 90, 70))
IRIS = ((90, 60, 36), (60, 100, 140), (80, 110, 70), (50, 36, 28))


@dataclass
class DemoConfig:
    """params.yaml section `demo`. No defaults on purpose: params.yaml is the one place for them."""

    n_images: int
    size: int  # image side, px
    mask_size: int  # part-mask side, px (the official release: 1024 images, 512 masks)
    seed: int

    def __post_init__(self):
        for name in ("n_images", "size", "mask_size", "seed"):
            value = getattr(self, name)
            # bool is an int subclass, but `size: true` in YAML is a typo, not 1
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"demo.{name} must be an integer, got {value!r}")  # noqa: TRY004 (the API says so)
            check_number(f"demo.{name}", value, whole=True)  # not 10**400 either
        if self.n_images < 1:
            raise ValueError(f"demo.n_images must be >= 1, got {self.n_images}")
        if self.size < 64:
            raise ValueError(f"demo.size must be >= 64, got {self.size}")
        if not 16 <= self.mask_size <= self.size:
            raise ValueError(f"demo.mask_size must be in [16, demo.size = {self.size}], got {self.mask_size}")
        check_number("demo.seed", self.seed, 0, MAX_SEED, whole=True)


@dataclass
class Portrait:
    image: Image.Image  # RGB, size x size
    labels: np.ndarray  # uint8 (size, size): 0 = background, else LABELS[part]
    attributes: dict[str, int]  # all 40 ATTRIBUTES, +1 / -1


def _attributes(rng: np.random.Generator) -> dict[str, int]:
    """The attributes, sampled before any drawing so they do not depend on the image size."""
    male = rng.random() < 0.5
    bald = male and rng.random() < 0.25
    hair = None if bald else list(HAIR)[rng.choice(4, p=[0.3, 0.25, 0.3, 0.15])]
    lipstick = not male and rng.random() < 0.6
    on = {
        "Male": male,
        "Bald": bald,
        "Smiling": rng.random() < 0.5,
        "Eyeglasses": rng.random() < 0.3,
        # the captions never put facial hair on a woman, so neither does the drawing
        "No_Beard": not (male and rng.random() < 0.4),
        "Mustache": male and rng.random() < 0.35,
        "Wearing_Hat": not bald and rng.random() < 0.15,  # a hat on a bald head would hide the baldness
        "Wearing_Lipstick": lipstick,
        "Heavy_Makeup": lipstick and rng.random() < 0.5,
        "Wearing_Earrings": rng.random() < (0.05 if male else 0.45),
        "Young": hair != "Gray_Hair" and rng.random() < 0.7,
        "Pale_Skin": rng.random() < 0.2,
    }
    if hair:
        on[hair] = True
    return {name: 1 if on.get(name) else -1 for name in ATTRIBUTES}  # Attractive and the rest: -1


def _shade(colour, f: float) -> tuple[int, int, int]:
    return tuple(int(min(255, c * f)) for c in colour)


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    return tuple(int(255 * c) for c in colorsys.hsv_to_rgb(h, s, v))


def _box(x: float, y: float, rx: float, ry: float) -> tuple[float, float, float, float]:
    """The bounding box of the ellipse centred at (x, y) with radii rx, ry."""
    return x - rx, y - ry, x + rx, y + ry


class _Canvas:
    """An image and its label map, painted together. Coordinates (and line widths) are fractions of
    the side, so one portrait looks the same at every size."""

    def __init__(self, size: int, background):
        self.size = size
        self.image = Image.new("RGB", (size, size), background)
        self.labels = Image.new("L", (size, size), 0)
        self._draws = (ImageDraw.Draw(self.image), ImageDraw.Draw(self.labels))

    def _px(self, xy, kw):
        for key in ("width", "radius"):
            if key in kw:
                kw[key] = max(1, round(kw[key] * self.size))
        return [v * self.size for v in xy], kw

    def paint(self, part: str, shape: str, xy, colour, outline: bool = False, **kw):
        """ImageDraw.<shape>: `colour` into the image, the part's label into the map."""
        xy, kw = self._px(xy, kw)
        for draw, fill in zip(self._draws, (colour, LABELS[part])):
            getattr(draw, shape)(xy, **({"outline": fill} if outline else {"fill": fill}), **kw)

    def tint(self, shape: str, xy, colour, alpha, **kw):
        """Colour only, blended in where the label is skin: what is painted this way stays skin."""
        xy, kw = self._px(xy, kw)
        stencil = Image.new("L", self.image.size, 0)
        getattr(ImageDraw.Draw(stencil), shape)(xy, fill=255, **kw)
        a = (np.asarray(stencil) / 255.0 * alpha * (np.asarray(self.labels) == LABELS["skin"]))[..., None]
        img = np.asarray(self.image, dtype=np.float64) * (1 - a) + np.asarray(colour, dtype=np.float64) * a
        self.image.paste(Image.fromarray(img.round().astype(np.uint8)))  # in place: the ImageDraw stays valid


def render(image_id: int, seed: int, size: int) -> Portrait:
    """Draw portrait `image_id` at size x size (see the module docstring)."""
    rng = np.random.default_rng([seed, image_id])
    attrs = _attributes(rng)
    on = {name for name, v in attrs.items() if v == 1}
    male, smiling = "Male" in on, "Smiling" in on
    # The look (geometry and colours), drawn from rng before anything that depends on the size.
    cx, cy = 0.5 + rng.uniform(-0.02, 0.02), 0.47 + rng.uniform(-0.015, 0.015)  # the head's centre
    rx, ry = rng.uniform(0.2, 0.22) + 0.012 * male, rng.uniform(0.27, 0.3)  # and radii
    tones = PALE_SKIN if "Pale_Skin" in on else OTHER_SKIN
    skin = tuple(int(np.clip(v, 0, 255)) for v in np.add(tones[rng.integers(len(tones))], rng.integers(-8, 9, 3)))
    hair_name = next((h for h in HAIR if h in on), None)
    hair = HAIR[hair_name] if hair_name else (60, 45, 35)  # (for the brows and beard of the bald)
    background, cloth, hat = (
        _hsv(rng.random(), 0.25, 0.88),
        _hsv(rng.random(), 0.55, 0.6),
        _hsv(rng.random(), 0.7, 0.7),
    )
    frame = ((20, 20, 22), (90, 50, 30), (160, 160, 170))[rng.integers(3)]
    lips = LIPSTICK[rng.integers(3)] if "Wearing_Lipstick" in on else _shade((200, 110, 105), skin[0] / 255)
    shadow, iris = EYE_SHADOW[rng.integers(3)], IRIS[rng.integers(4)]
    hairline = cy - rng.uniform(0.4, 0.5) * ry
    ey, nose_y, my = cy - 0.08 * ry, cy + 0.22 * ry, cy + 0.5 * ry  # eyes, nose tip, mouth
    w, h = (0.345 * rx, 0.03) if smiling else (0.3 * rx, 0.016)  # lips' half-width and half-height
    sides = ((-1, "r"), (1, "l"))  # sign +1: the image's right, the person's left

    c = _Canvas(size, background)
    # Back to front. Hair behind the head first (long for women, short for men): only its rim shows.
    if hair_name and not male:
        c.paint("hair", "ellipse", _box(cx, cy - 0.24 * ry, 1.25 * rx, 0.84 * ry), hair)
        c.paint("hair", "rectangle", (cx - 1.25 * rx, cy - 0.2 * ry, cx + 1.25 * rx, cy + 1.25 * ry), hair)
    elif hair_name:
        c.paint("hair", "ellipse", _box(cx, cy - 0.155 * ry, 1.08 * rx, 0.905 * ry), hair)
    neck = _shade(skin, 0.9)
    c.paint("neck", "rectangle", (cx - 0.42 * rx, cy + 0.5 * ry, cx + 0.42 * rx, cy + 1.5 * ry), neck)
    c.paint("cloth", "ellipse", _box(cx, cy + 1.96 * ry, 2.1 * rx, 0.64 * ry), cloth)
    c.paint(
        "neck", "polygon", (cx - 0.42 * rx, cy + 1.3 * ry, cx + 0.42 * rx, cy + 1.3 * ry, cx, cy + 1.65 * ry), neck
    )
    for sign, lr in sides:  # the head covers the inner half of each ear
        c.paint(
            f"{lr}_ear",
            "ellipse",
            _box(cx + sign * 0.98 * rx, cy + 0.125 * ry, 0.14 * rx, 0.175 * ry),
            _shade(skin, 0.95),
        )
    c.paint("skin", "ellipse", _box(cx, cy, rx, ry), skin)
    for sign, _ in sides if "Wearing_Earrings" in on else ():
        c.paint("ear_r", "ellipse", _box(cx + sign * 0.98 * rx, cy + 0.33 * ry, 0.014, 0.014), (230, 190, 60))
    if hair_name:  # the front: a cap down to the hairline
        c.paint("hair", "chord", _box(cx, hairline, 1.05 * rx, hairline - cy + 1.08 * ry), hair, start=180, end=360)

    for sign, lr in sides:
        ex = cx + sign * 0.4 * rx
        for r, colour in ((0.04, (245, 245, 240)), (0.015, iris), (0.006, (10, 10, 10))):  # white, iris, pupil
            c.paint(f"{lr}_eye", "ellipse", _box(ex, ey, r, min(r, 0.018)), colour)
        c.paint(f"{lr}_eye", "ellipse", _box(ex, ey, 0.04, 0.018), (40, 30, 30), outline=True, width=0.004)
        by = ey - 0.055  # a brow arches up, its outer end lower than its inner one
        c.paint(
            f"{lr}_brow",
            "line",
            (ex - sign * 0.045, by + 0.004, ex, by - 0.006, ex + sign * 0.048, by + 0.008),
            _shade(hair, 0.7),
            width=0.012,
            joint="curve",
        )
    nose = _shade(skin, 0.88)
    c.paint(
        "nose",
        "polygon",
        (cx - 0.008, ey + 0.005, cx + 0.008, ey + 0.005, cx + 0.026, nose_y, cx - 0.026, nose_y),
        nose,
    )
    c.paint("nose", "ellipse", _box(cx, nose_y - 0.002, 0.032, 0.012), nose)
    for sign, _ in sides:  # nostrils
        c.paint("nose", "ellipse", _box(cx + sign * 0.016, nose_y, 0.007, 0.004), _shade(skin, 0.5))

    c.paint("l_lip", "ellipse", _box(cx, my, w, h), lips)
    c.paint("u_lip", "chord", _box(cx, my, w, h), _shade(lips, 0.9), start=180, end=360)
    if smiling:  # an open smile: the inner mouth (dark, teeth on top) under a thin upper lip
        c.paint("mouth", "chord", _box(cx, my - 0.3 * h, 0.82 * w, 0.8 * h), (90, 20, 30), start=0, end=180)
        c.paint("mouth", "chord", _box(cx, my - 0.3 * h, 0.7 * w, 0.35 * h), (240, 238, 230), start=0, end=180)
    else:
        c.paint("u_lip", "line", (cx - 0.9 * w, my, cx + 0.9 * w, my), _shade(lips, 0.55), width=0.003)
    if "Eyeglasses" in on:  # the frames only: clear lenses leave the eyes visible (and labelled)
        for sign, _ in sides:
            ex = cx + sign * 0.4 * rx
            c.paint(
                "eye_g",
                "rounded_rectangle",
                _box(ex, ey, 0.058, 0.036),
                frame,
                outline=True,
                width=0.008,
                radius=0.015,
            )
            c.paint(
                "eye_g", "line", (ex + sign * 0.058, ey - 0.012, cx + sign * 0.99 * rx, ey - 0.006), frame, width=0.007
            )
        c.paint(
            "eye_g", "line", (cx - 0.4 * rx + 0.058, ey - 0.01, cx + 0.4 * rx - 0.058, ey - 0.01), frame, width=0.007
        )
    if "Wearing_Hat" in on:  # a beanie over the hairline
        band = cy - 0.5 * ry
        c.paint("hat", "chord", _box(cx, band, 1.13 * rx, 0.72 * ry), hat, start=180, end=360)
        c.paint("hat", "rectangle", (cx - 1.16 * rx, band - 0.02, cx + 1.16 * rx, band + 0.035), _shade(hat, 0.8))

    # Colour-only touches on the skin, after every part is placed (so they never cover one).
    if "Bald" in on:  # a shine on the scalp
        c.tint("ellipse", _box(cx - 0.15 * rx, cy - 0.775 * ry, 0.35 * rx, 0.175 * ry), (255, 255, 255), 0.25)
    for sign, _ in sides if "Heavy_Makeup" in on else ():  # eye shadow and blush
        c.tint("ellipse", _box(cx + sign * 0.4 * rx, ey - 0.017, 0.047, 0.023), shadow, 0.6)
        c.tint("ellipse", _box(cx + sign * 0.55 * rx, cy + 0.22 * ry, 0.045, 0.025), (225, 95, 110), 0.3)
    if "Young" not in on:  # wrinkles: forehead lines, nose-to-mouth folds, lines under the eyes
        line = _shade(skin, 0.65)
        for y in (cy - 0.36 * ry, cy - 0.29 * ry):
            c.tint("arc", _box(cx, y, 0.35 * rx, 0.02), line, 0.8, start=200, end=340, width=0.004)
        for sign, _ in sides:
            c.tint("line", (cx + sign * 0.045, nose_y, cx + sign * (w + 0.012), my + 0.012), line, 0.8, width=0.004)
            c.tint(
                "arc",
                _box(cx + sign * 0.4 * rx, ey + 0.0125, 0.035, 0.0225),
                line,
                0.6,
                start=30,
                end=150,
                width=0.003,
            )
    # Facial hair as stubble: per-pixel noise, drawn last from rng because its amount depends on the size.
    texture = 0.9 * (rng.random((size, size)) > 0.25)
    beard = _shade(hair, 0.75)  # darker than the hair: a blond beard on fair skin still shows
    if attrs["No_Beard"] == -1:  # jaw and chin, up to just below the nose
        c.tint("chord", _box(cx, cy, rx, ry), beard, texture, start=8, end=172)
    if "Mustache" in on:
        c.tint("ellipse", (cx - 1.05 * w, my - h - 0.024, cx + 1.05 * w, my - h + 0.006), beard, texture)

    # A slight blur softens the jagged edges of PIL's shapes; the label map stays crisp.
    image = c.image.filter(ImageFilter.GaussianBlur(size / 512))
    return Portrait(image=image, labels=np.array(c.labels, dtype=np.uint8), attributes=attrs)


def reduce_labels(labels: np.ndarray, mask_size: int) -> np.ndarray:
    """The label map at mask_size x mask_size: each pixel takes the label covering most of its block
    (ties: the lower label). A present part that would vanish keeps the pixel it covers most (taken
    from background or from a part that can spare it), so a drawn part always keeps a mask."""
    if labels.shape == (mask_size, mask_size):
        return labels.copy()
    present = np.unique(labels)
    # float coverage (mode F), so that even a part far smaller than a block knows where it is
    cover = np.stack(
        [
            np.asarray(
                Image.fromarray((labels == k).astype(np.float32)).resize((mask_size, mask_size), Image.Resampling.BOX)
            )
            for k in present
        ]
    )
    out = present[cover.argmax(axis=0)].astype(np.uint8)
    for i, k in enumerate(present):
        if k == 0 or (out == k).any():
            continue
        for flat in np.argsort(-cover[i], axis=None, kind="stable"):
            owner = out.flat[flat]
            if owner == 0 or (out == owner).sum() > 1:
                out.flat[flat] = k
                break
    return out


def generate(root, cfg: DemoConfig, progress: bool = True) -> pd.DataFrame:
    """Write cfg.n_images portraits, their part masks and the attribute file under root.

    Returns the attribute table (index `id` int64, the 40 ATTRIBUTES as int8 columns), the same
    table that facepaint.data.celebamask.read_attributes reads back from the file.
    """
    from tqdm import tqdm

    root = Path(root)
    rows = []
    for image_id in tqdm(range(cfg.n_images), desc="demo portraits", unit="img", disable=not progress):
        portrait = render(image_id, cfg.seed, cfg.size)
        path = image_path(root, image_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        portrait.image.save(path, format="JPEG", quality=JPEG_QUALITY)
        labels = reduce_labels(portrait.labels, cfg.mask_size)
        for part, k in LABELS.items():
            mask_file = part_mask_path(root, image_id, part)
            if (labels == k).any():
                mask_file.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.where(labels == k, 255, 0).astype(np.uint8)).save(mask_file)
            else:  # not visible: no file, also none left over from an earlier run
                mask_file.unlink(missing_ok=True)
        rows.append([portrait.attributes[name] for name in ATTRIBUTES])

    lines = [str(cfg.n_images), " ".join(ATTRIBUTES)]
    lines += [f"{i}.jpg  " + " ".join(str(v) for v in row) for i, row in enumerate(rows)]
    (root / ATTRIBUTE_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return pd.DataFrame(
        np.asarray(rows, dtype=np.int8),
        columns=list(ATTRIBUTES),
        index=pd.Index(range(cfg.n_images), dtype="int64", name="id"),
    )
