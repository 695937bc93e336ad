"""The CelebAMask-HQ layout: paths, part names, attribute names, and a validating reader.

Layout under a dataset root (the official release; the demo generator writes the same)::

    CelebA-HQ-img/{id}.jpg                                  any square size (1024x1024 officially)
    CelebAMask-HQ-mask-anno/{id // 2000}/{id:05d}_{part}.png binary part masks (512x512 officially)
    CelebAMask-HQ-attribute-anno.txt                        count line, 40 names, one row per image

The attribute file lists every id of the dataset, while a partial download holds fewer images:
ids whose image is absent are "missing" (counted, listed, never fatal), see `scan`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from facepaint.common.report import DatasetError, Problem

IMAGE_DIR = "CelebA-HQ-img"
MASK_DIR = "CelebAMask-HQ-mask-anno"
ATTRIBUTE_FILE = "CelebAMask-HQ-attribute-anno.txt"
IDS_PER_MASK_FOLDER = 2000

# The 40 CelebA attributes, in the order of the official attribute file.
ATTRIBUTES = (
    "5_o_Clock_Shadow",
    "Arched_Eyebrows",
    "Attractive",
    "Bags_Under_Eyes",
    "Bald",
    "Bangs",
    "Big_Lips",
    "Big_Nose",
    "Black_Hair",
    "Blond_Hair",
    "Blurry",
    "Brown_Hair",
    "Bushy_Eyebrows",
    "Chubby",
    "Double_Chin",
    "Eyeglasses",
    "Goatee",
    "Gray_Hair",
    "Heavy_Makeup",
    "High_Cheekbones",
    "Male",
    "Mouth_Slightly_Open",
    "Mustache",
    "Narrow_Eyes",
    "No_Beard",
    "Oval_Face",
    "Pale_Skin",
    "Pointy_Nose",
    "Receding_Hairline",
    "Rosy_Cheeks",
    "Sideburns",
    "Smiling",
    "Straight_Hair",
    "Wavy_Hair",
    "Wearing_Earrings",
    "Wearing_Hat",
    "Wearing_Lipstick",
    "Wearing_Necklace",
    "Wearing_Necktie",
    "Young",
)

# CelebAMask-HQ part names (file suffixes). BiSeNet uses the same names in another order:
# always map by name (see facepaint.method.masks.BISENET_CLASSES).
PART_NAMES = (
    "skin",
    "nose",
    "eye_g",
    "l_eye",
    "r_eye",
    "l_brow",
    "r_brow",
    "l_ear",
    "r_ear",
    "mouth",
    "u_lip",
    "l_lip",
    "hair",
    "hat",
    "ear_r",
    "neck_l",
    "neck",
    "cloth",
)






@dataclass
class Attributes:
    """The parsed attribute file: one row per valid id, values +1 (present) / -1 (absent)."""

    table: pd.DataFrame  # index: id (int64, sorted); columns: ATTRIBUTES (int8)
    problems: list[Problem] = field(default_factory=list)  # malformed rows, skipped
    warnings: list[str] = field(default_factory=list)  # file-level oddities that are not fatal
    path: Path | None = None

    @property
    def ids(self) -> np.ndarray:
        return self.table.index.to_numpy()


def image_path(root: str | os.PathLike, image_id: int) -> Path:
    return Path(root) / IMAGE_DIR / f"{image_id}.jpg"


def part_mask_path(root: str | os.PathLike, image_id: int, part: str) -> Path:
    folder = str(image_id // IDS_PER_MASK_FOLDER)
    return Path(root) / MASK_DIR / folder / f"{image_id:05d}_{part}.png"


def check_parts(parts) -> tuple[str, ...]:
    """Validate configured part names against the CelebAMask-HQ names."""
    parts = tuple(parts)
    unknown = [p for p in parts if p not in PART_NAMES]
    if unknown or not parts:
        raise ValueError(f"unknown face part(s) {unknown or parts!r}; choose from {', '.join(PART_NAMES)}")
    return parts


def read_attributes(path: str | os.PathLike) -> Attributes:
    """Parse and validate a CelebAMask-HQ attribute file.

    A broken header is fatal (DatasetError naming the file and line). A broken row is skipped and
    returned as a Problem with its line number, so that the calling stage can report it and decide
    from its threshold whether to go on. Values must be -1/1; 0 is read as absent (some CelebA copies
    write 0/1).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(
            f"attribute file not found: {path}. data.root must point at a CelebAMask-HQ copy "
            f"holding {ATTRIBUTE_FILE} (or at the demo data the `demo` stage generates)."
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not a text file ({e}); expected the CelebAMask-HQ attribute file") from e
    lines = text.splitlines()
    if len(lines) < 2:
        raise DatasetError(
            f"{path}: expected a count line and a line of 40 attribute names, found {len(lines)} line(s)"
        )
    try:
        declared = int(lines[0].strip())
    except ValueError:
        raise DatasetError(f"{path}, line 1: expected the number of images, found {lines[0][:80]!r}") from None
    names = lines[1].split()
    unknown = [n for n in names if n not in ATTRIBUTES]
    missing = [n for n in ATTRIBUTES if n not in names]
    if unknown or missing or len(names) != len(ATTRIBUTES):
        raise DatasetError(
            f"{path}, line 2: expected the 40 CelebA attribute names; "
            f"unknown: {unknown[:5]}, missing: {missing[:5]}, found {len(names)} names"
        )

    problems: list[Problem] = []
    ids: list[int] = []
    rows: list[list[int]] = []
    seen: set[int] = set()
    n_rows = 0
    for lineno, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if not fields:
            continue
        n_rows += 1
        name = fields[0]
        stem, dot, ext = name.partition(".")
        if not (dot and ext.lower() in ("jpg", "jpeg", "png") and stem.isdigit()):
            problems.append(Problem(None, f"bad file name {name[:40]!r} (expected '<id>.jpg')", lineno))
            continue
        image_id = int(stem)
        if len(fields) != 1 + len(names):
            problems.append(
                Problem(image_id, f"expected {len(names)} attribute values, found {len(fields) - 1}", lineno)
            )
            continue
        try:
            values = [int(v) for v in fields[1:]]
        except ValueError:
            problems.append(Problem(image_id, "non-integer attribute value", lineno))
            continue
        bad = [v for v in values if v not in (-1, 0, 1)]
        if bad:
            problems.append(Problem(image_id, f"attribute value {bad[0]} is not -1 or 1", lineno))
            continue
        if image_id in seen:
            problems.append(Problem(image_id, "duplicate row for this id (the first one is kept)", lineno))
            continue
        seen.add(image_id)
        ids.append(image_id)
        rows.append([1 if v == 1 else -1 for v in values])

    if not ids:
        raise DatasetError(f"{path}: no valid attribute rows ({len(problems)} malformed)")
    warnings = []
    if declared != n_rows:
        warnings.append(f"{path}, line 1 declares {declared} images; the file has {n_rows} row(s)")
    table = pd.DataFrame(np.asarray(rows, dtype=np.int8), index=pd.Index(ids, dtype="int64", name="id"), columns=names)
    table = table[list(ATTRIBUTES)].sort_index()
    return Attributes(table=table, problems=problems, warnings=warnings, path=path)


def present_image_ids(root: str | os.PathLike) -> set[int]:
    """Ids of the images present under root/CelebA-HQ-img (one directory listing)."""
    folder = Path(root) / IMAGE_DIR
    if not folder.is_dir():
        raise DatasetError(
            f"image folder not found: {folder}. data.root must hold {IMAGE_DIR}/<id>.jpg (the CelebAMask-HQ layout)."
        )
    ids = set()
    with os.scandir(folder) as it:
        for entry in it:
            stem, dot, ext = entry.name.partition(".")
            if dot and ext.lower() == "jpg" and stem.isdigit():
                ids.add(int(stem))
    return ids


@dataclass
class Scan:
    """Which attribute ids have an image in this copy of the dataset."""

    present: np.ndarray  # sorted ids with attributes and an image
    missing: np.ndarray  # sorted ids listed in the attribute file whose image is absent
    unlisted: np.ndarray  # sorted ids with an image but no attribute row (ignored)


def scan(root: str | os.PathLike, attributes: Attributes) -> Scan:
    listed = attributes.ids
    on_disk = present_image_ids(root)
    has_image = np.fromiter((i in on_disk for i in listed), dtype=bool, count=len(listed))
    unlisted = sorted(on_disk - set(listed.tolist()))
    return Scan(present=listed[has_image], missing=listed[~has_image], unlisted=np.asarray(unlisted, dtype=np.int64))
