"""The built-in demo dataset: drawn portraits written in exactly the CelebAMask-HQ layout.

`generate` draws crude but recognisable frontal portraits (background, hair, head, ears, neck,
clothes, brows, eyes, nose, lips, and optional glasses, beards, hats, earrings, necklaces, make-up)
and writes, like the official release::

    CelebA-HQ-img/{id}.jpg                                   size x size JPEG
    CelebAMask-HQ-mask-anno/{id // 2000}/{id:05d}_{part}.png mask_size x mask_size, mode L, 0/255
    CelebAMask-HQ-attribute-anno.txt                         count, 40 names, "{id}.jpg  -1 1 ..."

How the masks are made, and the conventions they follow (checked against real CelebAMask-HQ):
- Every shape is painted twice with the same coordinates: in colour into the image and with its
  part label into a label map, in back-to-front order. A part's mask is `label == part`, so a part
  hidden by another is not in its mask and masks of different parts never overlap.
- The skin mask has holes where the brows, eyes, nose, lips and inner mouth sit; ears and neck are
  their own parts. There is no beard class: beards, stubble and make-up are painted over the skin
  and stay skin. Glasses (eye_g) are the frames (and dark lenses of sunglasses, which then hide the
  eyes). `mouth` is the inner mouth, present only when the mouth is open.
- 'l_'/'r_' are the person's left/right: l_eye, l_brow and l_ear lie on the image's right half.
- The label map is drawn at image size and reduced to mask_size by per-block majority; a part that
  would vanish in the reduction keeps its strongest pixel, so a drawn part always has a mask file,
  and a part with no visible pixel has none (no eye_g file without glasses, as in the real data).

The 40 attributes are sampled first and the drawing follows them. Drawn: 5_o_Clock_Shadow,
Arched_Eyebrows, Bald, Bangs, Big_Lips, Big_Nose, Black_Hair, Blond_Hair, Blurry, Brown_Hair,
Bushy_Eyebrows, Eyeglasses, Goatee, Gray_Hair, Heavy_Makeup, Male, Mouth_Slightly_Open, Mustache,
Narrow_Eyes, No_Beard, Pale_Skin, Receding_Hairline, Rosy_Cheeks, Sideburns, Smiling,
Straight_Hair, Wavy_Hair, Wearing_Earrings, Wearing_Hat, Wearing_Lipstick, Wearing_Necklace,
Wearing_Necktie, Young. The others (Attractive, Bags_Under_Eyes, Chubby, Double_Chin,
High_Cheekbones, Oval_Face, Pointy_Nose) are always -1.

Deterministic: image i depends only on (seed, i, size) through `np.random.default_rng([seed, i])`,
so the same config writes byte-identical files and a larger demo extends a smaller one.
"""
from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from facepaint.celebamask import ATTRIBUTE_FILE, ATTRIBUTES, PART_NAMES, image_path, part_mask_path

LABELS = {part: i + 1 for i, part in enumerate(PART_NAMES)}  # label-map values; 0 = background
DRAWN_ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Bald", "Bangs", "Big_Lips", "Big_Nose", "Black_Hair",
    "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Eyeglasses", "Goatee", "Gray_Hair",
    "Heavy_Makeup", "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard", "Pale_Skin",
    "Receding_Hairline", "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair",
    "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie",
    "Young",
)


@dataclass
class DemoConfig:
    n_images: int = 60
    size: int = 256  # image side in pixels (square JPEG)
    mask_size: int = 128  # part masks are written at this side, like the official 1024 images / 512 masks
    seed: int = 0
    jpeg_quality: int = 95

    def __post_init__(self):
        for name, low, high in (("n_images", 1, None), ("size", 64, None), ("mask_size", 16, None),
                                ("seed", 0, None), ("jpeg_quality", 1, 100)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"demo.{name} must be an integer, got {value!r}")
            if value < low or (high is not None and value > high):
                bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
                raise ValueError(f"demo.{name} must be {bounds}, got {value}")


@dataclass
class Portrait:
    """One rendered portrait: the image, its label map (values in LABELS, 0 = background, same size
    as the image) and its 40 attributes (+1/-1)."""

    image: Image.Image
    labels: np.ndarray
    attributes: dict[str, int]

    def masks(self, mask_size: int | None = None) -> dict[str, np.ndarray]:
        """Binary (0/255 uint8) masks of the visible parts, at mask_size (default: image size)."""
        labels = self.labels if mask_size is None else reduce_labels(self.labels, mask_size)
        return {part: np.where(labels == k, 255, 0).astype(np.uint8)
                for part, k in LABELS.items() if (labels == k).any()}


# ----------------------------------------------------------------------------- the whole dataset

def generate(root: str | Path, cfg: DemoConfig, progress: bool = True) -> pd.DataFrame:
    """Write cfg.n_images portraits with part masks and the attribute file under root.

    Returns the attribute table written (index `id`, the 40 ATTRIBUTES as int8 -1/+1 columns), the
    same table `facepaint.celebamask.read_attributes` reads back. Mask files of parts not visible
    in an image are removed if an earlier run left them, so regenerating in place stays consistent.
    """
    from tqdm import tqdm

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for image_id in tqdm(range(cfg.n_images), desc="demo portraits", unit="img", disable=not progress):
        portrait = render(image_id, cfg.seed, cfg.size)
        path = image_path(root, image_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        portrait.image.save(path, format="JPEG", quality=cfg.jpeg_quality, optimize=False, progressive=False)
        labels = reduce_labels(portrait.labels, cfg.mask_size)
        for part, k in LABELS.items():
            mask_file = part_mask_path(root, image_id, part)
            visible = labels == k
            if visible.any():
                mask_file.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.where(visible, 255, 0).astype(np.uint8), mode="L").save(mask_file, format="PNG")
            else:
                mask_file.unlink(missing_ok=True)
        rows.append([portrait.attributes[name] for name in ATTRIBUTES])

    table = pd.DataFrame(np.asarray(rows, dtype=np.int8).reshape(-1, len(ATTRIBUTES)),
                         index=pd.Index(range(cfg.n_images), dtype="int64", name="id"), columns=list(ATTRIBUTES))
    lines = [str(cfg.n_images), " ".join(ATTRIBUTES)]
    lines += [f"{image_id}.jpg  " + " ".join(str(int(v)) for v in row) for image_id, row in zip(table.index, rows)]
    (root / ATTRIBUTE_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return table


def reduce_labels(labels: np.ndarray, mask_size: int) -> np.ndarray:
    """A label map brought to mask_size x mask_size: each output pixel takes the label covering most
    of its block (ties: the lower label). A part present in `labels` that would vanish keeps the one
    pixel where it covers most, so small drawn parts (earrings, thin frames) always keep a mask."""
    if labels.shape == (mask_size, mask_size):
        return labels.copy()
    present = np.unique(labels)
    cover = np.stack([
        np.asarray(Image.fromarray(np.where(labels == k, 255, 0).astype(np.uint8)).resize(
            (mask_size, mask_size), Image.Resampling.BOX))
        for k in present
    ])
    out = present[cover.argmax(axis=0)].astype(np.uint8)
    counts = {int(k): int((out == k).sum()) for k in present}
    for i, k in enumerate(present):
        if k and counts[int(k)] == 0:
            order = np.argsort(-cover[i].ravel(), kind="stable")
            for flat in order[:64]:  # the strongest pixel whose owner can spare it
                owner = int(out.flat[flat])
                if owner == 0 or counts[owner] > 1:
                    out.flat[flat] = k
                    counts[owner] -= 1
                    counts[int(k)] = 1
                    break
    return out


# ----------------------------------------------------------------------------- traits

HAIR_COLOURS = {  # attribute, base colour, brow colour
    "black": ("Black_Hair", (28, 22, 22), (25, 20, 20)),
    "brown": ("Brown_Hair", (96, 62, 36), (62, 40, 28)),
    "blond": ("Blond_Hair", (222, 188, 118), (150, 112, 66)),
    "gray": ("Gray_Hair", (168, 166, 162), (112, 108, 104)),
    "auburn": (None, (150, 62, 32), (100, 50, 32)),
}
SKIN_TONES = (  # (colour, pale)
    ((250, 226, 212), True), ((246, 218, 200), True),
    ((236, 196, 170), False), ((226, 184, 152), False), ((212, 164, 128), False),
    ((192, 144, 106), False), ((166, 116, 82), False), ((132, 90, 64), False), ((98, 66, 48), False),
)
EYE_COLOURS = ((92, 60, 36), (60, 40, 26), (70, 110, 150), (80, 120, 80), (110, 110, 120), (40, 28, 22))
LIPSTICKS = ((178, 24, 46), (200, 70, 110), (128, 30, 60), (214, 86, 78), (160, 40, 40))
FRAME_COLOURS = ((20, 20, 22), (70, 42, 28), (190, 160, 90), (170, 172, 180), (120, 30, 40))


@dataclass
class _Traits:
    male: bool
    hair: str  # bald | short | long
    hair_colour: str | None
    wavy: bool
    bangs: bool
    receding: bool
    sideburns: bool
    side_locks: bool
    hat: str | None  # beanie | brim | cap
    glasses: str | None  # clear | sun
    smile: bool
    mouth_open: bool
    beard: str  # none | stubble | mustache | goatee | goatee_mustache | full
    lipstick: bool
    makeup: bool
    rosy: bool
    skin: tuple
    pale: bool
    big_lips: bool
    narrow_eyes: bool
    bushy: bool
    arched: bool
    earrings: str | None  # stud | hoop | drop
    necklace: bool
    necktie: bool
    big_nose: bool
    blurry: bool
    young: bool


def _pick(rng, options, p):
    return options[int(rng.choice(len(options), p=np.asarray(p, dtype=float) / sum(p)))]


def _sample_traits(rng: np.random.Generator) -> _Traits:
    male = bool(rng.random() < 0.5)
    hair = _pick(rng, ("bald", "short", "long"), (0.12, 0.74, 0.14) if male else (0.0, 0.16, 0.84))
    colour = None
    if hair != "bald":
        colour = _pick(rng, ("black", "brown", "blond", "gray", "auburn"),
                       (0.32, 0.32, 0.16, 0.12, 0.08) if male else (0.27, 0.28, 0.31, 0.06, 0.08))
    wavy = hair != "bald" and bool(rng.random() < (0.45 if hair == "long" else 0.3))
    receding = male and hair == "short" and bool(rng.random() < 0.2)
    bangs = hair != "bald" and not receding and bool(rng.random() < (0.12 if male else 0.33))
    sideburns = male and hair == "short" and bool(rng.random() < 0.35)
    hat = None
    if hair != "bald" and rng.random() < 0.14:
        hat = _pick(rng, ("beanie", "brim", "cap"), (1, 1, 1))
    glasses = None
    if rng.random() < 0.4:
        glasses = "sun" if rng.random() < 0.2 else "clear"
    smile = bool(rng.random() < 0.5)
    mouth_open = bool(rng.random() < (0.7 if smile else 0.25))
    beard = "none"
    if male:
        beard = _pick(rng, ("none", "stubble", "mustache", "goatee", "goatee_mustache", "full"),
                      (0.35, 0.15, 0.15, 0.08, 0.07, 0.20))
    lipstick = not male and bool(rng.random() < 0.7)
    makeup = lipstick and bool(rng.random() < 0.5)
    rosy = bool(rng.random() < (0.05 if male else 0.2))
    young = colour != "gray" and bool(rng.random() < 0.85)
    # skin tone: never close to the hair colour, so hair and skin stay distinguishable
    hair_rgb = np.asarray(HAIR_COLOURS[colour][1] if colour else (0, 0, 0), dtype=float)
    tones = [t for t in SKIN_TONES if colour is None or np.linalg.norm(np.asarray(t[0]) - hair_rgb) > 70]
    pale_wanted = bool(rng.random() < 0.15)
    candidates = [t for t in tones if t[1] == pale_wanted] or tones
    skin, pale = candidates[int(rng.integers(len(candidates)))]
    skin = tuple(int(np.clip(c + rng.integers(-6, 7), 0, 255)) for c in skin)
    earrings = None
    if rng.random() < (0.05 if male else 0.45):
        earrings = _pick(rng, ("stud", "hoop", "drop"), (1, 1, 1))
    necktie = male and bool(rng.random() < 0.15)
    necklace = not necktie and bool(rng.random() < (0.05 if male else 0.3))
    return _Traits(
        male=male, hair=hair, hair_colour=colour, wavy=wavy, bangs=bangs, receding=receding,
        sideburns=sideburns,
        side_locks=hair == "long" and earrings is None and bool(rng.random() < 0.6),
        hat=hat, glasses=glasses, smile=smile, mouth_open=mouth_open, beard=beard,
        lipstick=lipstick, makeup=makeup, rosy=rosy, skin=skin, pale=pale,
        big_lips=bool(rng.random() < (0.12 if male else 0.25)),
        narrow_eyes=glasses != "sun" and bool(rng.random() < 0.15),
        bushy=bool(rng.random() < (0.4 if male else 0.1)),
        arched=bool(rng.random() < (0.1 if male else 0.5)),
        earrings=earrings, necklace=necklace, necktie=necktie,
        big_nose=bool(rng.random() < 0.15), blurry=bool(rng.random() < 0.05), young=young,
    )


def _attributes(t: _Traits) -> dict[str, int]:
    on = {
        "Male": t.male, "Bald": t.hair == "bald", "Bangs": t.bangs,
        "Wavy_Hair": t.hair != "bald" and t.wavy, "Straight_Hair": t.hair != "bald" and not t.wavy,
        "Receding_Hairline": t.receding, "Sideburns": t.sideburns, "Wearing_Hat": t.hat is not None,
        "Eyeglasses": t.glasses is not None, "Smiling": t.smile, "Mouth_Slightly_Open": t.mouth_open,
        "5_o_Clock_Shadow": t.beard == "stubble",
        "Mustache": t.beard in ("mustache", "goatee_mustache", "full"),
        "Goatee": t.beard in ("goatee", "goatee_mustache"),
        "No_Beard": t.beard in ("none", "stubble"),
        "Wearing_Lipstick": t.lipstick, "Heavy_Makeup": t.makeup, "Rosy_Cheeks": t.rosy,
        "Pale_Skin": t.pale, "Big_Lips": t.big_lips, "Narrow_Eyes": t.narrow_eyes,
        "Bushy_Eyebrows": t.bushy, "Arched_Eyebrows": t.arched,
        "Wearing_Earrings": t.earrings is not None, "Wearing_Necklace": t.necklace,
        "Wearing_Necktie": t.necktie, "Big_Nose": t.big_nose, "Blurry": t.blurry, "Young": t.young,
    }
    if t.hair_colour and HAIR_COLOURS[t.hair_colour][0]:
        on[HAIR_COLOURS[t.hair_colour][0]] = True
    return {name: 1 if on.get(name, False) else -1 for name in ATTRIBUTES}


# ----------------------------------------------------------------------------- drawing helpers

class _Canvas:
    """An RGB image and a label map drawn with the same shapes, so the masks match the pixels."""

    def __init__(self, background: Image.Image):
        self.size = background.size[0]
        self.rgb = background
        self.lab = Image.new("L", background.size, 0)
        self._d = ImageDraw.Draw(self.rgb)
        self._dl = ImageDraw.Draw(self.lab)

    def polygon(self, part, points, colour):
        points = [(float(x), float(y)) for x, y in points]
        self._d.polygon(points, fill=colour)
        self._dl.polygon(points, fill=LABELS[part])

    def ellipse(self, part, box, colour):
        self._d.ellipse(_box(box), fill=colour)
        self._dl.ellipse(_box(box), fill=LABELS[part])

    def ring(self, part, box, colour, width, radius=None):
        """An ellipse outline, or a rounded-rectangle outline when radius is given."""
        width = max(1, int(round(width)))
        if radius is None:
            self._d.ellipse(_box(box), outline=colour, width=width)
            self._dl.ellipse(_box(box), outline=LABELS[part], width=width)
        else:
            self._d.rounded_rectangle(_box(box), radius=radius, outline=colour, width=width)
            self._dl.rounded_rectangle(_box(box), radius=radius, outline=LABELS[part], width=width)

    def line(self, part, points, colour, width):
        points = [(float(x), float(y)) for x, y in points]
        width = max(1, int(round(width)))
        self._d.line(points, fill=colour, width=width, joint="curve")
        self._dl.line(points, fill=LABELS[part], width=width, joint="curve")

    def layer(self) -> tuple[Image.Image, ImageDraw.ImageDraw]:
        """A blank alpha layer to draw a tint shape in (see `tint`)."""
        layer = Image.new("L", self.rgb.size, 0)
        return layer, ImageDraw.Draw(layer)

    def tint(self, alpha: Image.Image, colour, parts, blur: float = 0.0):
        """Blend colour into the image where alpha is set and the label is one of parts.
        The label map is unchanged (make-up, beards, texture)."""
        if blur > 0:
            alpha = alpha.filter(ImageFilter.GaussianBlur(blur))
        lut = [0] * 256
        for part in parts:
            lut[LABELS[part]] = 255
        alpha = ImageChops.multiply(alpha, self.lab.point(lut))
        self.rgb.paste(tuple(int(c) for c in colour), (0, 0) + self.rgb.size, alpha)


def _box(box):
    x0, y0, x1, y1 = (float(v) for v in box)
    return (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def _shade(colour, factor, add=0):
    return tuple(int(np.clip(c * factor + add, 0, 255)) for c in colour)


def _mix(a, b, w):
    return tuple(int(round(x * (1 - w) + y * w)) for x, y in zip(a, b))


def _hsv(rng, s=(0.15, 0.7), v=(0.25, 0.95)):
    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(*s), rng.uniform(*v))
    return (int(r * 255), int(g * 255), int(b * 255))


def _pts(xs, ys):
    return list(zip(np.asarray(xs, dtype=float).tolist(), np.asarray(ys, dtype=float).tolist()))


@lru_cache(maxsize=4)
def _grid(size: int):
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    return x, y


# ----------------------------------------------------------------------------- one portrait

def render(image_id: int, seed: int = 0, size: int = 256) -> Portrait:
    """Draw portrait `image_id` of the demo dataset with this seed at size x size pixels."""
    rng = np.random.default_rng([seed, image_id])
    t = _sample_traits(rng)
    S = float(size)
    rng_draw = np.random.default_rng([seed, image_id, 1])  # geometry and texture, apart from traits
    canvas = _Canvas(_background(rng_draw, size))
    f = _Face(t, rng_draw, S)
    f.draw(canvas)
    image = _finish(canvas, f, rng_draw)
    if t.blurry:
        image = image.filter(ImageFilter.GaussianBlur(S / 110))
    return Portrait(image=image, labels=np.asarray(canvas.lab).copy(), attributes=_attributes(t))


def _background(rng, size) -> Image.Image:
    kind = _pick(rng, ("solid", "vgrad", "hgrad", "blotch"), (0.25, 0.3, 0.15, 0.3))
    c0 = _hsv(rng, v=(0.1, 0.97))
    if kind == "solid":
        return Image.new("RGB", (size, size), c0)
    c1 = _hsv(rng, v=(0.1, 0.97))
    if kind == "blotch":
        small = rng.random((4, 4, 1)) * (np.asarray(c1, float) - np.asarray(c0, float)) + np.asarray(c0, float)
        return Image.fromarray(small.astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC)
    ramp = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None, None]
    img = np.asarray(c0, np.float32) * (1 - ramp) + np.asarray(c1, np.float32) * ramp  # (size, 1, 3)
    img = np.broadcast_to(img, (size, size, 3))
    if kind == "hgrad":
        img = img.transpose(1, 0, 2)
    return Image.fromarray(np.ascontiguousarray(img).astype(np.uint8))


class _Face:
    """Geometry of one portrait (pixels) and the drawing, back to front."""

    def __init__(self, t: _Traits, rng: np.random.Generator, S: float):
        self.t, self.rng, self.S = t, rng, S
        k = rng.uniform(0.93, 1.07)
        self.cx = S * (0.5 + rng.uniform(-0.03, 0.03))
        self.cy = S * (0.47 + rng.uniform(-0.025, 0.025))
        self.a = S * 0.235 * k * (1.03 if t.male else 0.97)  # head half-width
        self.b = S * 0.31 * k * rng.uniform(0.97, 1.03)  # head half-height
        self.jaw = rng.uniform(0.05, 0.1) if t.male else rng.uniform(0.12, 0.2)
        a = self.a
        self.ey = self.cy + S * 0.01 + rng.uniform(-0.01, 0.01) * S
        self.edx = 0.43 * a  # eye centre distance from the midline
        self.ew = 0.22 * a  # eye half-width
        self.eh = (0.055 if t.narrow_eyes else 0.1) * a * rng.uniform(0.9, 1.1)  # eye upper half-height
        self.brow_y = self.ey - 0.3 * a * rng.uniform(0.92, 1.08)
        self.nose_len = (0.56 if t.big_nose else 0.48) * a
        self.nose_w = (0.2 if t.big_nose else 0.15) * a
        self.mouth_y = self.ey + 0.83 * a * rng.uniform(0.96, 1.04)
        self.mouth_w = 0.3 * a * rng.uniform(0.92, 1.08) * (1.1 if t.smile else 1.0)
        self.skin = t.skin
        self.hair_rgb = HAIR_COLOURS[t.hair_colour][1] if t.hair_colour else None
        if self.hair_rgb is not None:
            self.hair_rgb = _shade(self.hair_rgb, rng.uniform(0.9, 1.08))
        self.brow_rgb = HAIR_COLOURS[t.hair_colour][2] if t.hair_colour else (58, 44, 34)
        if t.bushy:
            self.brow_rgb = _shade(self.brow_rgb, 0.8)
        self.beard_rgb = _shade(self.hair_rgb or (52, 40, 32), 0.85)
        self.temple_y = self.brow_y - 0.035 * S
        self.hair_end = S * rng.uniform(0.86, 1.02)
        # a hat sits on the forehead; the hair above its lower edge is squashed under it
        self.hat_bottom = max(self.cy - self.b * rng.uniform(0.45, 0.55), self.brow_y - 0.04 * S) if t.hat else None

    # -- outline helpers
    def head_outline(self, grow=0.0, n=96):
        tt = np.linspace(0, 2 * np.pi, n, endpoint=False)
        s, c = np.sin(tt), np.cos(tt)
        x = self.cx + (self.a + grow) * c * (1 - self.jaw * np.clip(s, 0, None) ** 2)
        y = self.cy + (self.b + grow) * s
        return _pts(x, y)

    def head_x(self, y):
        """Half-width of the head outline at height y."""
        s = np.clip((y - self.cy) / self.b, -1, 1)
        return self.a * np.sqrt(1 - s ** 2) * (1 - self.jaw * np.clip(s, 0, None) ** 2)

    def wave(self, n, amp, freq):
        if not self.t.wavy:
            return np.zeros(n)
        phase = self.rng.uniform(0, 2 * np.pi)
        return amp * np.sin(np.linspace(0, freq * 2 * np.pi, n) + phase)

    # -- the drawing, back to front
    def draw(self, c: _Canvas):
        t = self.t
        if t.hair != "bald":
            self.hair_back(c)
        self.neck_and_clothes(c)
        if t.necklace:
            self.necklace(c)
        self.ears(c)
        c.polygon("skin", self.head_outline(), self.skin)
        self.skin_details(c)
        self.nose(c)
        for side in (1, -1):
            self.eye(c, side)
            self.brow(c, side)
        self.mouth(c)
        if t.hair != "bald":
            self.hair_front(c)
            self.hair_strands(c)
        if t.glasses:
            self.glasses(c)
        if t.earrings:
            self.earrings(c)
        if t.hat:
            self.hat(c)

    def _under_hat(self, ys):
        """Outline heights flattened at the hat's lower edge: under a hat the hair does not puff up."""
        return ys if self.hat_bottom is None else np.maximum(ys, self.hat_bottom)

    def hair_back(self, c):
        S, t, rng = self.S, self.t, self.rng
        if t.hair == "long":
            A, B, hc = self.a + 0.055 * S, self.b + 0.06 * S, self.cy - 0.01 * S
            tt = np.linspace(np.pi, 2 * np.pi, 48)
            r = 1 + (0.025 * np.sin(9 * tt + rng.uniform(0, 6)) if t.wavy else 0)
            top = _pts(self.cx + A * r * np.cos(tt), self._under_hat(hc + B * r * np.sin(tt)))
            flare = rng.uniform(0.02, 0.08) * S
            ys = np.linspace(hc, self.hair_end, 24)
            grow = flare * ((ys - hc) / (self.hair_end - hc)) ** 1.5
            right = _pts(self.cx + A + grow + self.wave(24, 0.018 * S, 3), ys)
            left = _pts(self.cx - A - grow + self.wave(24, 0.018 * S, 3), ys)[::-1]
            tips = []
            if t.wavy or rng.random() < 0.5:  # a ragged bottom edge
                xs = np.linspace(self.cx + A + flare, self.cx - A - flare, 9)
                tips = _pts(xs, self.hair_end - (np.arange(9) % 2) * 0.025 * S)
            c.polygon("hair", top + right + tips + left, self.hair_rgb)
        else:
            A, B, hc = self.a + 0.03 * S, self.b + 0.045 * S, self.cy - 0.01 * S
            tt = np.linspace(np.pi - 0.15, 2 * np.pi + 0.15, 48)
            r = 1 + (0.03 * np.abs(np.sin(8 * tt + rng.uniform(0, 6))) if t.wavy else 0)
            pts = _pts(self.cx + A * r * np.cos(tt), self._under_hat(hc + B * r * np.sin(tt)))
            c.polygon("hair", pts, self.hair_rgb)

    def neck_and_clothes(self, c):
        S, t, rng = self.S, self.t, self.rng
        cx = self.cx
        nw = self.a * (0.52 if t.male else 0.45)
        top = self.cy + 0.5 * self.b
        neck_rgb = _shade(self.skin, 0.86)
        c.polygon("neck", [(cx - nw, top), (cx + nw, top), (cx + nw * 1.2, S), (cx - nw * 1.2, S)], neck_rgb)
        shadow, d = c.layer()
        d.ellipse(_box((cx - nw * 1.3, self.cy + 0.75 * self.b, cx + nw * 1.3, self.cy + self.b + 0.05 * S)), fill=150)
        c.tint(shadow, _shade(self.skin, 0.55), ["neck"], blur=S / 60)
        cloth_top = S * rng.uniform(0.86, 0.9)
        cloth_rgb = _hsv(rng, v=(0.15, 0.9))
        half = S * rng.uniform(0.5, 0.62)
        c.ellipse("cloth", (cx - half, cloth_top, cx + half, cloth_top + 0.7 * S), cloth_rgb)
        style = "shirt" if t.necktie else _pick(rng, ("crew", "v", "scoop"), (1, 1, 1))
        if style == "v":
            c.polygon("neck", [(cx - nw * 1.05, cloth_top - 0.005 * S), (cx + nw * 1.05, cloth_top - 0.005 * S),
                               (cx, cloth_top + rng.uniform(0.06, 0.11) * S)], neck_rgb)
        elif style == "scoop":
            depth = rng.uniform(0.03, 0.07) * S
            c.ellipse("neck", (cx - nw * 1.15, cloth_top - depth, cx + nw * 1.15, cloth_top + depth), neck_rgb)
        elif style == "crew":
            c.ring("cloth", (cx - nw * 1.25, cloth_top - 0.03 * S, cx + nw * 1.25, cloth_top + 0.04 * S),
                   _shade(cloth_rgb, 0.75), 0.012 * S)
        if style == "shirt":
            collar = (238, 238, 232) if rng.random() < 0.6 else _hsv(rng, s=(0.05, 0.3), v=(0.6, 0.95))
            for side in (1, -1):
                c.polygon("cloth", [(cx, cloth_top + 0.05 * S), (cx + side * nw * 1.25, cloth_top - 0.02 * S),
                                    (cx + side * nw * 1.4, cloth_top + 0.03 * S)], collar)
            tie = _hsv(rng, s=(0.4, 0.9), v=(0.3, 0.8))
            w = 0.028 * S
            y0 = cloth_top + 0.035 * S
            c.polygon("cloth", [(cx - w * 0.6, y0), (cx + w * 0.6, y0), (cx + w * 0.5, y0 + 0.03 * S),
                                (cx - w * 0.5, y0 + 0.03 * S)], _shade(tie, 0.85))
            c.polygon("cloth", [(cx - w * 0.45, y0 + 0.03 * S), (cx + w * 0.45, y0 + 0.03 * S),
                                (cx + w, S), (cx - w, S)], tie)
        if rng.random() < 0.3:  # stripes
            layer, d = c.layer()
            step = rng.uniform(0.03, 0.06) * S
            for y in np.arange(cloth_top, S, step):
                d.line([(0, y), (S, y)], fill=255, width=max(1, int(step / 3)))
            c.tint(layer, _shade(cloth_rgb, 0.7, 30), ["cloth"])

    def necklace(self, c):
        S, rng = self.S, self.rng
        cx = self.cx
        colour = _pick(rng, ((214, 178, 80), (205, 205, 215), (240, 234, 222)), (1, 1, 1))
        y0 = self.cy + 0.88 * self.b
        sag = 0.1 * self.b + 0.05 * S
        half = self.a * 0.62
        xs = np.linspace(cx - half, cx + half, 25)
        ys = y0 + sag * (1 - ((xs - cx) / half) ** 2)
        c.line("neck_l", _pts(xs, ys), colour, 0.012 * S)
        r = 0.009 * S
        for x, y in zip(xs[::2], ys[::2]):
            c.ellipse("neck_l", (x - r, y - r, x + r, y + r), colour)
        r = 0.018 * S
        yb = y0 + sag + r * 0.8
        c.ellipse("neck_l", (cx - r, yb - r, cx + r, yb + r), _shade(colour, 0.85))

    def ears(self, c):
        S = self.S
        ear_rgb = _shade(self.skin, 0.93)
        for side, part in ((1, "l_ear"), (-1, "r_ear")):
            x = self.cx + side * self.a * 0.97
            y = self.ey + 0.05 * S
            w, h = 0.04 * S, 0.068 * S
            c.ellipse(part, (x - w, y - h, x + w, y + h), ear_rgb)
            layer, d = c.layer()
            d.arc(_box((x - w * 0.6, y - h * 0.6, x + w * 0.6, y + h * 0.6)), -90 if side > 0 else 90,
                  90 if side > 0 else 270, fill=200, width=max(1, int(0.008 * S)))
            c.tint(layer, _shade(self.skin, 0.65), [part], blur=S / 200)

    def skin_details(self, c):
        S, t, rng = self.S, self.t, self.rng
        cx, a = self.cx, self.a
        my, mw = self.mouth_y, self.mouth_w
        if t.beard in ("stubble", "full"):
            layer, d = c.layer()
            cheek = self.ey + 0.45 * a
            d.polygon(_pts(
                [cx - a * 1.1, cx - a * 1.1, cx - mw * 1.4, cx - mw * 0.4, cx + mw * 0.4, cx + mw * 1.4, cx + a * 1.1, cx + a * 1.1,
                 cx + a * 1.1, cx - a * 1.1],
                [self.ey - 0.02 * S, cheek, my - 0.06 * S, my - 0.055 * S, my - 0.055 * S, my - 0.06 * S, cheek, self.ey - 0.02 * S,
                 S, S]), fill=255)
            if t.beard == "stubble":
                speck = (rng.random((int(S), int(S))) < 0.35).astype(np.uint8) * 120
                layer = ImageChops.multiply(layer, Image.fromarray(speck))
                c.tint(layer, _shade(self.beard_rgb, 0.6), ["skin"], blur=0.6)
            else:
                c.tint(layer, self.beard_rgb, ["skin"], blur=S / 150)
                self._beard_texture(c, ["skin"], layer)
                # the beard hangs a little below the chin; beard pixels are skin in CelebAMask-HQ
                c.ellipse("skin", (cx - a * 0.45, self.cy + self.b - 0.06 * S, cx + a * 0.45, self.cy + self.b + 0.035 * S),
                          self.beard_rgb)
        if t.beard in ("goatee", "goatee_mustache"):
            layer, d = c.layer()
            d.ellipse(_box((cx - mw * 0.75, my + 0.005 * S, cx + mw * 0.75, self.cy + self.b + 0.03 * S)), fill=255)
            c.ellipse("skin", (cx - mw * 0.5, self.cy + self.b - 0.04 * S, cx + mw * 0.5, self.cy + self.b + 0.03 * S),
                      self.beard_rgb)
            c.tint(layer, self.beard_rgb, ["skin"], blur=S / 200)
            self._beard_texture(c, ["skin"], layer)
        if t.beard in ("mustache", "goatee_mustache", "full"):
            layer, d = c.layer()
            up = my - (0.03 if t.big_lips else 0.022) * S
            d.polygon(_pts([cx - mw * 1.15, cx - mw * 0.8, cx, cx + mw * 0.8, cx + mw * 1.15, cx + mw * 0.8, cx, cx - mw * 0.8],
                           [my + 0.02 * S, up - 0.03 * S, up - 0.035 * S, up - 0.03 * S, my + 0.02 * S, up, up - 0.005 * S, up]),
                      fill=255)
            c.tint(layer, _shade(self.beard_rgb, 0.9), ["skin"], blur=S / 300)
            self._beard_texture(c, ["skin"], layer)
        if not t.young:  # wrinkles: forehead lines and nasolabial folds
            layer, d = c.layer()
            w = max(1, int(0.005 * S))
            for i in range(2 + int(rng.integers(2))):
                y = self.brow_y - (0.045 + 0.022 * i) * S
                d.arc(_box((cx - a * 0.5, y, cx + a * 0.5, y + 0.06 * S)), 200, 340, fill=150, width=w)
            for side in (1, -1):
                x0 = cx + side * self.nose_w * 1.2
                d.line([(x0, self.ey + self.nose_len * 0.85), (cx + side * mw * 1.25, my + 0.01 * S)], fill=170, width=w)
            c.tint(layer, _shade(self.skin, 0.7), ["skin"], blur=S / 300)
        if t.rosy:
            layer, d = c.layer()
            for side in (1, -1):
                x, y = cx + side * a * 0.55, self.ey + 0.42 * a
                d.ellipse(_box((x - 0.06 * S, y - 0.035 * S, x + 0.06 * S, y + 0.035 * S)), fill=120)
            c.tint(layer, (235, 90, 100), ["skin"], blur=S / 50)
        if t.makeup:
            layer, d = c.layer()
            for side in (1, -1):
                x = cx + side * self.edx
                d.ellipse(_box((x - self.ew * 1.15, self.ey - self.eh * 2.4, x + self.ew * 1.15, self.ey + self.eh * 0.3)),
                          fill=150)
            shadow = _pick(rng, ((120, 70, 140), (90, 70, 60), (60, 90, 150), (150, 100, 80)), (1, 1, 1, 1))
            c.tint(layer, shadow, ["skin"], blur=S / 120)
        if t.hair == "bald":  # a highlight on the scalp
            layer, d = c.layer()
            d.ellipse(_box((cx - a * 0.4, self.cy - self.b * 0.95, cx + a * 0.2, self.cy - self.b * 0.7)), fill=90)
            c.tint(layer, (255, 255, 255), ["skin"], blur=S / 40)

    def _beard_texture(self, c, parts, region):
        S, rng = self.S, self.rng
        speck = (rng.random((int(S), int(S))) < 0.25).astype(np.uint8) * 90
        layer = ImageChops.multiply(region, Image.fromarray(speck))
        c.tint(layer, _shade(self.beard_rgb, 0.55), parts)

    def nose(self, c):
        S = self.S
        cx, ey, L, w = self.cx, self.ey, self.nose_len, self.nose_w
        bw = 0.014 * S
        xs = [bw * 0.9, bw, w * 0.55, w, w * 0.85, w * 0.35, 0.0]
        ys = [-0.01 * S, 0.5 * L, 0.8 * L, 0.93 * L, 1.0 * L, 1.03 * L, 1.05 * L]
        right = _pts(cx + np.asarray(xs), ey + np.asarray(ys))
        left = _pts(cx - np.asarray(xs[::-1][1:]), ey + np.asarray(ys[::-1][1:]))
        c.polygon("nose", right + left, _shade(self.skin, 0.96))
        layer, d = c.layer()  # shadow along one side of the bridge and under the tip
        d.line([(cx - bw, ey + 0.05 * L), (cx - bw * 1.1, ey + 0.6 * L), (cx - w * 0.7, ey + 0.9 * L)], fill=160,
               width=max(1, int(0.01 * S)))
        d.ellipse(_box((cx - w, ey + 0.92 * L, cx + w, ey + 1.06 * L)), fill=110)
        c.tint(layer, _shade(self.skin, 0.7), ["nose"], blur=S / 200)
        for side in (1, -1):  # nostrils
            x, y = cx + side * w * 0.45, ey + 0.97 * L
            c.ellipse("nose", (x - w * 0.22, y - w * 0.1, x + w * 0.22, y + w * 0.1), _shade(self.skin, 0.45))
        layer, d = c.layer()
        d.ellipse(_box((cx - w * 0.35, ey + 0.75 * L, cx + w * 0.25, ey + 0.9 * L)), fill=110)
        c.tint(layer, (255, 255, 255), ["nose"], blur=S / 150)

    def eye(self, c, side):
        S, t, rng = self.S, self.t, self.rng
        part = "l_eye" if side > 0 else "r_eye"  # the person's left eye is on the image's right
        ex, ey, ew, eh = self.cx + side * self.edx, self.ey, self.ew, self.eh
        u = np.linspace(-1, 1, 25)
        tilt = -0.006 * S * u * side  # outer corners slightly higher
        upper = ey - eh * (1 - u ** 2) ** 0.7 + tilt
        lower = ey + 0.7 * eh * (1 - u ** 2) ** 0.8 + tilt
        xs = ex + u * ew
        outline = _pts(xs, upper) + _pts(xs[::-1], lower[::-1])
        c.polygon(part, outline, (238, 236, 230))
        if not hasattr(self, "eye_rgb"):
            self.eye_rgb = EYE_COLOURS[int(rng.integers(len(EYE_COLOURS)))]
            self.gaze = rng.uniform(-0.15, 0.15) * ew
        ri = 0.42 * ew
        ix, iy = ex + self.gaze, ey + 0.1 * eh
        for r, colour in ((ri, self.eye_rgb), (ri * 0.45, (15, 12, 12))):
            layer, d = c.layer()
            d.ellipse(_box((ix - r, iy - r, ix + r, iy + r)), fill=255)
            c.tint(layer, colour, [part])
        layer, d = c.layer()
        r = ri * 0.22
        d.ellipse(_box((ix + ri * 0.25 - r, iy - ri * 0.35 - r, ix + ri * 0.25 + r, iy - ri * 0.35 + r)), fill=255)
        c.tint(layer, (255, 255, 255), [part])
        lid = 0.011 * S if t.makeup else 0.007 * S
        c.line(part, _pts(xs, upper), (35, 25, 25), lid)
        if t.makeup:  # winged liner
            c.line(part, [(xs[-1] if side > 0 else xs[0], upper[-1] if side > 0 else upper[0]),
                          (ex + side * ew * 1.18, ey - eh * 0.7)], (35, 25, 25), lid * 0.8)

    def brow(self, c, side):
        S, t = self.S, self.t
        part = "l_brow" if side > 0 else "r_brow"
        xb = self.cx + side * self.edx
        u = np.linspace(0, 1, 20)
        xs = xb + side * (-self.ew * 1.0 + u * self.ew * 2.2)
        peak = 0.68 if t.arched else 0.45
        arch = (0.024 if t.arched else 0.012) * S
        bump = np.sin(np.pi * u ** (math.log(0.5) / math.log(peak)))
        ys = self.brow_y - arch * bump + 0.012 * S * u ** 2
        th = (0.026 if t.bushy else 0.015) * S * (1.0 - 0.5 * u)
        c.polygon(part, _pts(xs, ys - th / 2) + _pts(xs[::-1], (ys + th / 2)[::-1]), self.brow_rgb)
        if t.bushy:
            layer, d = c.layer()
            for i in range(0, 20, 2):
                d.line([(xs[i], ys[i] + th[i] / 2), (xs[i] + side * 0.01 * S, ys[i] - th[i] / 2)], fill=255, width=1)
            c.tint(layer, _shade(self.brow_rgb, 0.6), [part])

    def mouth(self, c):
        S, t = self.S, self.t
        cx, my, mw = self.cx, self.mouth_y, self.mouth_w
        u = np.linspace(-1, 1, 31)
        xs = cx + u * mw
        smile = (0.024 if t.smile else 0.004) * S
        centre = my - smile * u ** 2 + smile * 0.5
        gap0 = 0.0
        if t.mouth_open:
            gap0 = (0.034 if t.smile else 0.018) * S
        gap = gap0 * (1 - u ** 2) ** 0.8
        upper_bottom = centre - 0.3 * gap
        lower_top = centre + 0.7 * gap
        uh = (0.026 if t.big_lips else 0.017) * S * (0.7 if t.smile and t.mouth_open else 1.0)
        lh = (0.034 if t.big_lips else 0.022) * S * (0.8 if t.smile and t.mouth_open else 1.0)
        prof = (1 - u ** 2) ** 0.5
        upper_top = upper_bottom - uh * prof * (1 - 0.3 * np.exp(-(u / 0.12) ** 2)) - uh * 0.15 * np.exp(-((np.abs(u) - 0.25) / 0.15) ** 2)
        lower_bottom = lower_top + lh * prof
        if t.lipstick:
            if not hasattr(self, "lip_rgb"):
                self.lip_rgb = LIPSTICKS[int(self.rng.integers(len(LIPSTICKS)))]
            lip = self.lip_rgb
        else:
            lip = _mix(self.skin, (178, 86, 86), 0.4)
        if t.mouth_open:
            c.polygon("mouth", _pts(xs, upper_bottom - 0.003 * S) + _pts(xs[::-1], (lower_top + 0.003 * S)[::-1]), (70, 18, 26))
            if t.smile:
                teeth = upper_bottom + 0.55 * gap
                inner = np.abs(u) < 0.8
                c.polygon("mouth", _pts(xs[inner], upper_bottom[inner]) + _pts(xs[inner][::-1], teeth[inner][::-1]),
                          (236, 232, 220))
        c.polygon("u_lip", _pts(xs, upper_top) + _pts(xs[::-1], upper_bottom[::-1]), _shade(lip, 0.92))
        c.polygon("l_lip", _pts(xs, lower_top) + _pts(xs[::-1], lower_bottom[::-1]), lip)
        if not t.mouth_open:
            c.line("u_lip", _pts(xs[2:-2], centre[2:-2]), _shade(lip, 0.55), max(1.0, 0.006 * S))
        layer, d = c.layer()  # highlight on the lower lip
        d.ellipse(_box((cx - mw * 0.35, lower_top[15] + lh * 0.25, cx + mw * 0.25, lower_top[15] + lh * 0.6)), fill=120)
        c.tint(layer, (255, 255, 255), ["l_lip"], blur=S / 250)

    def hair_front(self, c):
        S, t, rng = self.S, self.t, self.rng
        cx, cy, a = self.cx, self.cy, self.a
        A, B = a + 0.012 * S, self.b + 0.015 * S
        temple = self.temple_y + (0.03 * S if t.bangs else 0.0)
        tau = math.asin(np.clip((cy - temple) / B, -1, 1))
        tt = np.linspace(np.pi + tau, 2 * np.pi - tau, 40)
        r = 1 + (0.02 * np.sin(11 * tt + rng.uniform(0, 6)) if t.wavy else 0)
        arc = _pts(cx + A * r * np.cos(tt), cy + B * r * np.sin(tt))
        xr, xl = arc[-1][0], arc[0][0]
        n = 41
        xs = np.linspace(xr, xl, n)
        v = (xs - cx) / ((xr - xl) / 2)
        if t.bangs:
            fringe = self.brow_y - rng.uniform(0.02, 0.035) * S
            ys = fringe + (temple - fringe) * np.abs(v) ** 6
            ys = ys - (np.arange(n) % 2) * (0.02 * S if t.wavy or rng.random() < 0.5 else 0.006 * S)
        else:
            top = cy - self.b * (0.8 if t.receding else rng.uniform(0.55, 0.66))
            part_x = rng.uniform(-0.4, 0.4)  # a side parting lifts the hairline a little
            ys = top + (temple - top) * np.abs(v) ** (1.6 if t.receding else 3.0)
            ys -= 0.02 * S * np.exp(-((v - part_x) / 0.2) ** 2)
            if t.receding:  # an M-shaped hairline
                ys -= 0.05 * S * np.exp(-((np.abs(v) - 0.55) / 0.2) ** 2)
        c.polygon("hair", arc + _pts(xs, ys), self.hair_rgb)
        if t.sideburns:
            for side in (1, -1):
                xo = cx + side * self.head_x(self.ey + 0.06 * S)
                c.polygon("hair", [(xo + side * 0.01 * S, temple - 0.01 * S), (xo - side * 0.035 * S, temple),
                                   (xo - side * 0.03 * S, self.ey + 0.07 * S), (xo + side * 0.005 * S, self.ey + 0.08 * S)],
                          self.hair_rgb)
        if t.side_locks:
            n = 20
            for side in (1, -1):
                ys = np.linspace(temple - 0.03 * S, self.hair_end, n)
                inner_x = cx + side * (a - np.interp(ys, [temple, self.ey + 0.05 * S, self.mouth_y, S],
                                                     [0.05 * S, 0.04 * S, 0.005 * S, -0.06 * S]))
                outer_x = cx + side * (a + np.interp(ys, [temple, self.cy, S], [0.035 * S, 0.06 * S, 0.1 * S]))
                inner_x = inner_x + self.wave(n, 0.012 * S, 2.5)
                outer_x = outer_x + self.wave(n, 0.012 * S, 2.5)
                c.polygon("hair", _pts(inner_x, ys) + _pts(outer_x[::-1], ys[::-1]), self.hair_rgb)

    def hair_strands(self, c):
        S, rng, t = self.S, self.rng, self.t
        hi, lo = Image.new("L", c.rgb.size, 0), Image.new("L", c.rgb.size, 0)
        dh, dl = ImageDraw.Draw(hi), ImageDraw.Draw(lo)
        n = 140
        x0 = rng.uniform(self.cx - self.a - 0.1 * S, self.cx + self.a + 0.1 * S, n)
        y0 = rng.uniform(self.cy - self.b - 0.08 * S, self.hair_end, n)
        length = rng.uniform(0.05, 0.15, n) * S
        for i in range(n):
            dx = (x0[i] - self.cx) / (self.a + 0.1 * S)
            ys = y0[i] + np.linspace(0, length[i], 6)
            xs = x0[i] + dx * np.linspace(0, length[i], 6) * 0.4
            if t.wavy:
                xs = xs + 0.01 * S * np.sin(np.linspace(0, 2 * np.pi, 6) + i)
            (dh if i % 2 else dl).line(_pts(xs, ys), fill=255, width=1)
        c.tint(hi, _shade(self.hair_rgb, 1.25, 18), ["hair"], blur=0.4)
        c.tint(lo, _shade(self.hair_rgb, 0.6), ["hair"], blur=0.4)

    def glasses(self, c):
        S, t, rng = self.S, self.t, self.rng
        colour = FRAME_COLOURS[int(rng.integers(len(FRAME_COLOURS)))]
        shape = _pick(rng, ("round", "rect"), (1, 1))
        w = rng.uniform(0.014, 0.02) * S
        hw, hh = self.ew * rng.uniform(1.45, 1.6), max(self.eh * 2.3, 0.05 * S)
        yc = self.ey + 0.004 * S
        for side in (1, -1):
            ex = self.cx + side * self.edx
            box = (ex - hw, yc - hh, ex + hw, yc + hh)
            if t.glasses == "sun":
                if shape == "round":
                    c.ellipse("eye_g", box, (22, 22, 28))
                else:
                    c.polygon("eye_g", [(box[0], box[1]), (box[2], box[1]), (box[2], box[3]), (box[0], box[3])], (22, 22, 28))
            c.ring("eye_g", box, colour, w, radius=None if shape == "round" else hh * 0.5)
            outer = ex + side * hw
            c.line("eye_g", [(outer, yc - hh * 0.5), (self.cx + side * self.a * 0.99, yc - hh * 0.35)], colour, w * 0.8)
        inner = self.edx - hw
        c.line("eye_g", [(self.cx - inner - w * 0.5, yc - hh * 0.3), (self.cx, yc - hh * 0.45),
                         (self.cx + inner + w * 0.5, yc - hh * 0.3)], colour, w * 0.8)

    def earrings(self, c):
        S, t, rng = self.S, self.t, self.rng
        colour = _pick(rng, ((214, 178, 80), (205, 205, 215), (240, 234, 222), (180, 30, 60)), (1, 1, 1, 1))
        for side in (1, -1):
            x = self.cx + side * (self.a * 0.97 + 0.006 * S)
            y = self.ey + 0.05 * S + 0.06 * S
            if t.earrings == "stud":
                r = 0.014 * S
                c.ellipse("ear_r", (x - r, y - r, x + r, y + r), colour)
            elif t.earrings == "hoop":
                r = 0.032 * S
                c.ring("ear_r", (x - r, y, x + r, y + 2 * r), colour, 0.01 * S)
            else:
                c.line("ear_r", [(x, y), (x, y + 0.035 * S)], colour, 0.008 * S)
                r = 0.016 * S
                c.ellipse("ear_r", (x - r, y + 0.035 * S, x + r, y + 0.035 * S + 2 * r), colour)

    def hat(self, c):
        S, t, rng = self.S, self.t, self.rng
        cx, cy, a, b = self.cx, self.cy, self.a, self.b
        colour = _hsv(rng, s=(0.2, 0.8), v=(0.2, 0.85))
        band = _shade(colour, 0.7)
        bottom = self.hat_bottom
        if t.hat == "beanie":
            A, B = a + 0.03 * S, b + 0.06 * S
            tau = math.asin(np.clip((cy - bottom) / B, -1, 1))
            tt = np.linspace(np.pi + tau, 2 * np.pi - tau, 40)
            c.polygon("hat", _pts(cx + A * np.cos(tt), cy + B * np.sin(tt)), colour)
            c.polygon("hat", [(cx - A * math.cos(tau) - 0.005 * S, bottom - 0.055 * S), (cx + A * math.cos(tau) + 0.005 * S, bottom - 0.055 * S),
                              (cx + A * math.cos(tau) + 0.005 * S, bottom + 0.005 * S), (cx - A * math.cos(tau) - 0.005 * S, bottom + 0.005 * S)], band)
            if rng.random() < 0.5:
                r = 0.045 * S
                yt = cy - B - 0.01 * S
                c.ellipse("hat", (cx - r, yt - r, cx + r, yt + r), band)
        elif t.hat == "brim":
            top = cy - b - rng.uniform(0.06, 0.12) * S
            cw = a + 0.03 * S
            c.polygon("hat", [(cx - cw, bottom), (cx - cw * 0.9, top + 0.03 * S), (cx - cw * 0.6, top), (cx + cw * 0.6, top),
                              (cx + cw * 0.9, top + 0.03 * S), (cx + cw, bottom)], colour)
            c.polygon("hat", [(cx - cw * 0.99, bottom - 0.04 * S), (cx + cw * 0.99, bottom - 0.04 * S), (cx + cw, bottom), (cx - cw, bottom)], band)
            bw = a + rng.uniform(0.07, 0.15) * S
            c.ellipse("hat", (cx - bw, bottom - 0.03 * S, cx + bw, bottom + 0.025 * S), _shade(colour, 0.9))
        else:  # cap
            A, B = a + 0.02 * S, b + 0.04 * S
            tau = math.asin(np.clip((cy - bottom) / B, -1, 1))
            tt = np.linspace(np.pi + tau, 2 * np.pi - tau, 40)
            c.polygon("hat", _pts(cx + A * np.cos(tt), cy + B * np.sin(tt)), colour)
            vw = a * 0.75
            c.polygon("hat", _pts(cx + vw * np.linspace(-1, 1, 21),
                                  bottom - 0.01 * S + 0.045 * S * (1 - np.linspace(-1, 1, 21) ** 2)) +
                      [(cx + vw, bottom - 0.02 * S), (cx - vw, bottom - 0.02 * S)], band)


def _finish(c: _Canvas, f: _Face, rng) -> Image.Image:
    """Shading (rounder head, darker neck), a little noise and softening; labels are unchanged."""
    S = c.size
    img = np.asarray(c.rgb, dtype=np.float32)
    lab = np.asarray(c.lab)
    x, y = _grid(S)
    d = ((x - f.cx) / (f.a * 1.05)) ** 2 + ((y - f.cy) / (f.b * 1.05)) ** 2
    shade = np.clip(1.07 - 0.2 * d ** 1.5, 0.75, 1.07)
    face = np.isin(lab, [LABELS[p] for p in ("skin", "nose", "l_ear", "r_ear", "u_lip", "l_lip")])
    light = np.where(face, shade, 1.0)
    hairy = np.isin(lab, [LABELS["hair"], LABELS["hat"], LABELS["cloth"]])
    light = np.where(hairy, 1.08 - 0.22 * np.clip(np.abs(x - f.cx) / (0.5 * S), 0, 1), light)
    img *= light[..., None]
    img += rng.normal(0.0, 3.0, img.shape).astype(np.float32)
    out = Image.fromarray(np.clip(img + 0.5, 0, 255).astype(np.uint8))
    return out.filter(ImageFilter.GaussianBlur(S / 400))
