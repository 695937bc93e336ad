"""The faces stage's work: the index of the dataset every later stage reads, whatever its layout (`data.layout`).

- `celebamask`: data.root in the official CelebAMask-HQ layout (facepaint.data.celebamask). Nothing is copied:
  the index lists every image of the attribute file with the SHA-256 of its file and of its part masks, and its
  metadata the attribute file's, so that a later stage, which reads them from data.root, reruns exactly when
  what it reads changed (DVC sees the index, not data.root).
- `folder`: any folder of photos (nested folders, any size and framing, JPEG/PNG/WEBP/BMP/TIFF/GIF, EXIF
  rotation), as kohya-ss sd-scripts and OneTrainer take them: `NAME.ext`, an optional `NAME.txt` (caption
  candidates, one per line) and an optional `NAME_mask.png` (white = the face to learn; any image format).
  Every photo goes through the editing pipeline's face helper (facepaint.method.face_helper: detection,
  alignment to the training data's template, M from the user's mask or the automatic mask), so a training crop
  is framed exactly as an edit-time crop. Each face found (or the largest: `faces.per_photo`) becomes one
  training image: `crops/{id}.png` at `faces.size`, its M `masks/{id}.png`, and a row of the index naming the
  photo, the face, how it was aligned and where M came from. A photo that cannot be used (unreadable, too
  small, no face) is reported by name and the stage goes on within `faces.max_unusable_fraction`.

Ids are numbered 0, 1, ... over the photos in sorted path order and their faces left to right; the split keeps
the faces of one photo together (`group`).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from facepaint.common.checks import check_fields, check_number
from facepaint.common.errors import FacepaintError
from facepaint.common.images import ImageError, encode_png, load_mask
from facepaint.common.io import sha256_file
from facepaint.common.report import DatasetError, StageReport
from facepaint.data import celebamask
from facepaint.method.face_options import DETECTORS, MASK_BACKENDS, MAX_MIN_FACE

LAYOUTS = ("celebamask", "folder")
PER_PHOTO = ("all", "largest")
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
MASK_SUFFIX = "_mask"  # NAME_mask.png: the user's mask of NAME.jpg
CAPTION_SUFFIX = ".txt"  # NAME.txt: caption candidates of NAME.jpg, one per line
INDEX = "index.parquet"  # the images (and what later stages read of them, by SHA-256)
LABELS = "labels.parquet"  # what they are labelled with: CelebA attributes (their file's SHA-256) or captions
EVAL_PROMPTS = "eval_prompts.txt"  # at the folder's top: the evaluation's prompts, one per line (optional)
CROPS, MASKS = "crops", "masks"
MAX_CAPTION_CHARS = 2000  # a caption line longer than this is cut (CLIP reads 77 tokens anyway)


@dataclass
class FacesConfig:  # params.yaml `faces`
    size: int  # side of the aligned crops written for the folder layout (px)
    per_photo: str  # all: every face of a photo is a training image | largest: only the largest
    detector: str  # auto | retinaface | mediapipe | opencv (facepaint.method.detection)
    mask_backend: str  # M of a photo without NAME_mask.png: auto | bisenet | mesh (as `facepaint edit`)
    min_face: float  # px: faces narrower than this are skipped, with a warning naming the photo
    device: str
    max_unusable_fraction: float  # of the photos; more fails the stage

    def __post_init__(self):
        check_fields(self, "faces")
        check_number("faces.size", self.size, 64, 4096, whole=True)
        if self.size % 8:
            raise ValueError(f"faces.size must be a multiple of 8 (the VAE's factor), got {self.size}")
        if self.per_photo not in PER_PHOTO:
            raise ValueError(f"faces.per_photo must be one of {PER_PHOTO}, got {self.per_photo!r}")
        if self.detector not in DETECTORS:
            raise ValueError(f"faces.detector must be one of {DETECTORS}, got {self.detector!r}")
        if self.mask_backend not in MASK_BACKENDS:
            raise ValueError(f"faces.mask_backend must be one of {MASK_BACKENDS}, got {self.mask_backend!r}")
        check_number("faces.min_face", self.min_face, 0, MAX_MIN_FACE)
        check_number("faces.max_unusable_fraction", self.max_unusable_fraction, 0, 1)


# ------------------------------------------------------------------------------------------- the dataset


@dataclass(frozen=True)
class Dataset:
    """Where the pipeline's images and their own masks are: `root` in CelebAMask-HQ's layout, or (`folder`) the
    faces stage's output folder, its aligned crops and their masks."""

    root: Path
    layout: str = "celebamask"

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"data.layout must be one of {LAYOUTS}, got {self.layout!r}")

    def image_path(self, image_id: int) -> Path:
        if self.layout == "folder":
            return Path(self.root) / CROPS / f"{int(image_id)}.png"
        return celebamask.image_path(self.root, image_id)

    def mask_path(self, image_id: int) -> Path:
        """The folder layout's M of a crop (the user's mask, or the automatic one: the index's `mask_from`)."""
        return Path(self.root) / MASKS / f"{int(image_id)}.png"


def as_dataset(root) -> Dataset:
    """A Dataset as it is, or a path as the CelebAMask-HQ dataset under it."""
    return root if isinstance(root, Dataset) else Dataset(Path(root))


# ------------------------------------------------------------------------------------------ hashing


def _sha_of_files(paths: list[Path]) -> str | None:
    """One SHA-256 over the names and bytes of the files that exist among `paths` (None: none exists)."""
    h, found = hashlib.sha256(), False
    for p in paths:
        if p.is_file():
            found = True
            h.update(p.name.encode() + b"\0" + bytes.fromhex(sha256_file(p)))
    return h.hexdigest() if found else None


def index_celebamask(root: str | os.PathLike, workers: int = 4) -> tuple[pd.DataFrame, dict]:
    """(one row per id of the attribute file or image folder: id, image_sha (None: no image), parts_sha (None:
    no part mask); metadata with the attribute file's SHA-256). Reads every byte the later stages read."""
    root = Path(root)
    attr_file = root / celebamask.ATTRIBUTE_FILE
    if not attr_file.is_file():
        raise DatasetError(
            f"attribute file not found: {attr_file}. data.root must point at a CelebAMask-HQ copy holding "
            f"{celebamask.ATTRIBUTE_FILE} (data.layout: celebamask), or set data.layout: folder for a folder of photos"
        )
    attrs = celebamask.read_attributes(attr_file)
    ids = sorted(set(attrs.ids.tolist()) | celebamask.present_image_ids(root))

    def one(i: int) -> tuple[int, str | None, str | None]:
        image = celebamask.image_path(root, i)
        parts = [celebamask.part_mask_path(root, i, p) for p in celebamask.PART_NAMES]
        return i, (sha256_file(image) if image.is_file() else None), _sha_of_files(parts)

    with ThreadPoolExecutor(max(1, workers)) as pool:
        rows = list(pool.map(one, ids))
    df = pd.DataFrame(rows, columns=["id", "image_sha", "parts_sha"]).astype({"id": "int64"})
    return df, {"layout": "celebamask", "root": str(root), "attributes_sha": sha256_file(attr_file)}


# -------------------------------------------------------------------------------------- the folder layout


@dataclass
class Folder:
    """What a folder holds: its photos (relative paths, sorted) and each one's mask and caption file."""

    root: Path
    photos: list[Path]
    masks: dict[Path, Path]  # photo -> its NAME_mask file
    captions: dict[Path, Path]  # photo -> its NAME.txt
    ignored: list[Path]  # files that are none of these (a mask or caption without its photo, other types)
    prompts: Path | None = None  # eval_prompts.txt at the top: the evaluation's prompts, one per line


def scan_folder(root: str | os.PathLike) -> Folder:
    """The photos under `root` (nested folders; hidden files and folders skipped), each with its `NAME_mask.*`
    and `NAME.txt` beside it. DatasetError when `root` is not a folder or holds no photo."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(
            f"data.root {root} is not a folder: with data.layout: folder it must be a folder of photos "
            f"(NAME.jpg, optional NAME.txt captions and NAME_mask.png masks)"
        )
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files += [Path(dirpath, f).relative_to(root) for f in filenames if not f.startswith(".")]
    files.sort(key=lambda p: p.as_posix())
    images = {p for p in files if p.suffix.lower() in PHOTO_SUFFIXES}
    mask_files = {p for p in images if p.stem.endswith(MASK_SUFFIX)}
    photos = sorted(images - mask_files, key=lambda p: p.as_posix())
    by_stem = {p.with_suffix(""): p for p in photos}
    prompts = Path(EVAL_PROMPTS) if Path(EVAL_PROMPTS) in files else None
    masks, captions, ignored = {}, {}, []
    for m in sorted(mask_files, key=lambda p: p.as_posix()):
        photo = by_stem.get(m.with_name(m.stem[: -len(MASK_SUFFIX)]))
        if photo is None or photo in masks:
            ignored.append(m)
        else:
            masks[photo] = m
    for p in files:
        if p.suffix.lower() == CAPTION_SUFFIX and p.with_suffix("") in by_stem:
            captions[by_stem[p.with_suffix("")]] = p
        elif p not in images and p != prompts:
            ignored.append(p)
    if not photos:
        raise DatasetError(
            f"no photo found under {root} (looked for {', '.join(PHOTO_SUFFIXES)} in it and its subfolders); "
            f"data.layout: folder takes a folder of photos"
        )
    return Folder(root, photos, masks, captions, sorted(ignored, key=lambda p: p.as_posix()), prompts)


def read_captions(path: str | os.PathLike) -> list[str]:
    """The caption candidates of a `NAME.txt`: its non-empty lines, stripped, in order, duplicates dropped.
    ImageError (the photo's problem) when it is not UTF-8 text."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise ImageError(f"caption file {path} is not UTF-8 text ({e.reason}); save it as UTF-8") from None
    lines = [" ".join(line.split())[:MAX_CAPTION_CHARS] for line in text.splitlines()]
    return list(dict.fromkeys(line for line in lines if line))


def _eyes(job, size: int) -> list[float]:
    """The detected eye centres in crop pixels (left x, y, right x, y; NaN when the detector gave none)."""
    face = job.face
    if face is None or face.landmarks is None:
        return [np.nan] * 4
    pts = np.asarray(face.landmarks[:2], dtype=np.float64)
    crop = pts @ job.matrix[:, :2].T + job.matrix[:, 2]
    return crop.ravel().tolist()


def extract_faces(
    folder: Folder, out: str | os.PathLike, cfg: FacesConfig, helper, progress: bool = True
) -> tuple[pd.DataFrame, StageReport]:
    """Align every face of every photo of `folder` with `helper` (a FaceHelper at `cfg.size`) and write
    `out/crops/{id}.png` and `out/masks/{id}.png`. Returns (the index: id, photo, face, group, width, height,
    aligned_by, mask_from, captions, image_sha, mask_sha, eyes (4 floats, crop pixels), matrix (the 2 x 3
    photo -> crop similarity, row-major)) and the report: every
    photo not used, and why, by name; notes for ignored files and skipped faces."""
    from tqdm.auto import tqdm

    out = Path(out)
    (out / CROPS).mkdir(parents=True, exist_ok=True)
    (out / MASKS).mkdir(parents=True, exist_ok=True)
    report = StageReport("faces", total=len(folder.photos), counted="photos")
    if folder.ignored:
        report.notes.append(
            f"{len(folder.ignored)} file(s) ignored (not a photo, or a mask/caption without its photo): "
            + ", ".join(p.as_posix() for p in folder.ignored[:20])
            + (" ..." if len(folder.ignored) > 20 else "")
        )
    rows, next_id = [], 0
    for group, rel in enumerate(tqdm(folder.photos, desc="faces", unit="photo", disable=not progress)):
        name = rel.as_posix()
        try:
            captions = read_captions(folder.root / folder.captions[rel]) if rel in folder.captions else []
            mask = folder.root / folder.masks[rel] if rel in folder.masks else None
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                prepared = helper.prepare(
                    folder.root / rel, mask, faces=cfg.per_photo, min_face=min(cfg.min_face, MAX_MIN_FACE)
                )
        except (FacepaintError, ValueError) as e:  # ImageError, EditError, FaceError; a mask of another shape
            report.add_unusable(name, _reason(e, name, rel, folder.root, cfg, helper))
            continue
        for w in caught:
            text = _short(str(w.message), folder.root).removeprefix(f"{folder.root / rel}: ").removeprefix(f"{name}: ")
            report.add_warning(name, text.replace("--min-face", "faces.min_face"))
        h, w_ = prepared.photo.shape[:2]
        for job in prepared.jobs:
            crop_png = out / CROPS / f"{next_id}.png"
            Image.fromarray(job.image).save(crop_png, optimize=False, compress_level=4)
            mask_png = out / MASKS / f"{next_id}.png"
            mask_png.write_bytes(encode_png(job.crop_mask))
            rows.append(
                {
                    "id": next_id,
                    "photo": name,
                    "face": -1 if job.index is None else int(job.index),
                    "group": group,
                    "width": w_,
                    "height": h,
                    "aligned_by": job.aligned_by,
                    "mask_from": _short(job.mask_from or prepared.source, folder.root),
                    "captions": captions,
                    "image_sha": sha256_file(crop_png),
                    "mask_sha": sha256_file(mask_png),
                    "eyes": _eyes(job, cfg.size),
                    "matrix": np.asarray(job.matrix, np.float64).ravel().tolist(),
                }
            )
            next_id += 1
    columns = ["id", "photo", "face", "group", "width", "height", "aligned_by", "mask_from", "captions"]
    df = pd.DataFrame(rows, columns=[*columns, "image_sha", "mask_sha", "eyes", "matrix"])
    return df.astype({"id": "int64", "face": "int64", "group": "int64"}), report


def _reason(e: Exception, name: str, rel: Path, root: Path, cfg: FacesConfig, helper) -> str:
    """Why a photo is not used, in the report's terms: a kind first (grouped by the report), then the detail and
    what to do, without the photo's name (the report's `id` is the name)."""
    text = _short(str(e), root)
    for prefix in (f"{name}: ", f"{root / rel}: "):
        text = text.removeprefix(prefix)
    if isinstance(e, ImageError) and "mask" not in text.split(":", 1)[0]:
        return text if ":" in text else f"unreadable image: {text}"
    if text.startswith("no face found") and not text.startswith("no face found in the mask"):
        try:
            w, h = Image.open(root / rel).size
        except Exception:  # it was decoded a moment ago; the size is only for the message
            w = h = None
        if w is not None and min(w, h) < cfg.min_face:
            return f"too small: {w}x{h} px, under faces.min_face ({cfg.min_face:g} px)"
        detector = getattr(helper.face_detector(), "name", cfg.detector)
        return (
            f"no face found: detector {detector}, faces of at least {cfg.min_face:g} px; add "
            f"{rel.stem}{MASK_SUFFIX}.png (white = the face) beside it, or lower faces.min_face"
        )
    return text


def _short(text: str, root: Path) -> str:
    """A message with the folder's absolute path left out (the report names files relative to data.root)."""
    return text.replace(str(root) + os.sep, "").replace(str(root), ".")


def load_crop_mask(dataset: Dataset, image_id: int) -> np.ndarray:
    """M of a folder crop, as the faces stage wrote it."""
    return load_mask(dataset.mask_path(image_id))
