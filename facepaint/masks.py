"""Face masks (SPEC section 1): the binary mask M, the soft mask, the latent mask and beta.

Two back-ends give M as the union of the configured face parts:
- `annotations`: the CelebAMask-HQ part PNGs (ground truth; only for the dataset itself).
- `bisenet`: facexlib's 19-class BiSeNet face parser (for any photo), batched, on GPU when there is
  one. Its classes are mapped to part names by name, never by raw index.

From M (at the training resolution, binarized at 0.5):
- soft mask  M_soft = G_sigma * M, in [0, 1]: the alpha matte of pixel blending (`soft_mask`, made
  where it is used; sigma is `masks.sigma`, which the trained artifact records).
- latent mask: M averaged over each latent cell (factor x factor pixels) and binarized at 0.5; with
  the image side a multiple of the factor, it commutes with horizontal flips.
- beta = mean(M), the face ratio that gates the text adapter.

Parser vs annotations. Whenever the parser runs on an image that also has CelebAMask-HQ part
annotations (the `bisenet` backend on the dataset; the `annotations` backend with
`masks.bisenet_weights` set), the table's `iou_annotations` column holds the IoU of the parser's
union mask against the annotation union at the training resolution (NaN where one of them is missing):
how far the masks of the paper's setting are from the ground truth.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter
from tqdm.auto import tqdm

from facepaint import celebamask, check_fields, check_number
from facepaint.celebamask import check_parts
from facepaint.images import MAX_PIXELS, ImageError, load_mask, load_rgb, worker_context
from facepaint.models import ModelLoadError, facexlib_cache, facexlib_weights, pick_device
from facepaint.report import StageReport

BACKENDS = ("annotations", "bisenet")

# facexlib's BiSeNet class order (face-parsing.PyTorch / CelebAMask-HQ training); differs from the
# order of celebamask.PART_NAMES, hence the mapping by name.
BISENET_CLASSES = (
    "background",
    "skin",
    "l_brow",
    "r_brow",
    "l_eye",
    "r_eye",
    "eye_g",
    "l_ear",
    "r_ear",
    "ear_r",
    "nose",
    "mouth",
    "u_lip",
    "l_lip",
    "neck",
    "neck_l",
    "cloth",
    "hair",
    "hat",
)
BISENET_URL = "https://github.com/xinntao/facexlib/releases/download/v0.2.0/parsing_bisenet.pth"
BISENET_FILE = "parsing_bisenet.pth"
BISENET_SIZE = 512  # the parser's input side
# px at the model's resolution: G_sigma's kernel spans 6 sigma, so beyond this the soft mask is a blur of the
# whole 512 px crop (and gaussian_filter's cost grows with sigma)
MAX_SIGMA = 100.0
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class MaskConfig:  # params.yaml `masks`
    backend: str  # annotations | bisenet
    parts: tuple  # CelebAMask-HQ part names whose union is M
    resolution: int  # side of M and of the training images
    sigma: float  # Gaussian std of M_soft in pixels at `resolution`. Not used by the masks stage (its table
    #               holds M); M_soft is made from M where it is used: blending and evaluation, which read
    #               sigma from the trained artifact (train records it there)
    latent_factor: int  # the VAE's downsampling factor (8 for SD)
    bisenet_weights: str | None  # path to parsing_bisenet.pth; None: facexlib's cache/download
    batch_size: int
    device: str
    half: bool  # BiSeNet in fp16 on GPU
    channels_last: bool  # BiSeNet's convolutions in NHWC on GPU (facepaint.speed)
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
        check_number("masks.sigma", self.sigma, 0, MAX_SIGMA)
        check_number("masks.max_unusable_fraction", self.max_unusable_fraction, 0, 1)


@dataclass
class FaceMask:
    mask: np.ndarray  # bool (R, R): M
    latent: np.ndarray  # bool (R/f, R/f): M_latent
    beta: float  # mean(M)


# ------------------------------------------------------------------------------------ mask algebra


def resize_binary(mask: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """A mask (bool, or float in [0, 1]) resized bilinearly to size x size (or size = (width, height)) and
    binarized at 0.5."""
    w, h = (size, size) if isinstance(size, (int, np.integer)) else size
    m = np.asarray(mask, dtype=np.float32)
    if m.shape != (h, w):
        m = np.asarray(Image.fromarray(m, mode="F").resize((w, h), Image.Resampling.BILINEAR))
    return m >= 0.5


def soft_mask(mask: np.ndarray, sigma: float) -> np.ndarray:
    """G_sigma * M as float32 in [0, 1]; exactly 0 farther than 3 sigma from the face."""
    m = mask.astype(np.float32)
    if sigma == 0:
        return m
    return np.clip(gaussian_filter(m, sigma=sigma, mode="nearest", truncate=3.0), 0.0, 1.0)


def latent_mask(mask: np.ndarray, factor: int) -> np.ndarray:
    """M averaged over factor x factor cells, binarized at 0.5."""
    h, w = mask.shape
    if h % factor or w % factor:
        raise ValueError(f"mask side {h}x{w} is not a multiple of the latent factor {factor}")
    cells = mask.reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))
    return cells >= 0.5


def face_mask(mask: np.ndarray, resolution: int, latent_factor: int) -> FaceMask:
    """M, M_latent and beta from a face mask at any resolution (M_soft is made where it is used: `soft_mask`)."""
    m = resize_binary(mask, resolution)
    return FaceMask(mask=m, latent=latent_mask(m, latent_factor), beta=float(m.mean()))


def encode_png(mask: np.ndarray) -> bytes:
    """bool masks -> 1-bit PNG; float masks in [0,1] -> 8-bit PNG (1/255 steps)."""
    if mask.dtype == bool:
        im = Image.fromarray(mask.astype(np.uint8) * 255, mode="L").convert("1")
    else:
        im = Image.fromarray(np.round(np.clip(mask, 0, 1) * 255).astype(np.uint8), mode="L")
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """Inverse of encode_png: 1-bit PNGs give bool arrays, 8-bit ones float32 in [0, 1]. ImageError for
    anything else than a PNG (a corrupt table cell) or one over images.MAX_PIXELS."""
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as im:
            if im.width * im.height > MAX_PIXELS:
                raise ImageError(f"mask PNG of {im.width}x{im.height} is over {MAX_PIXELS} pixels")
            if im.mode == "1":
                return np.asarray(im.convert("L")) > 0
            return np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    except ImageError:
        raise
    except Exception as e:  # PIL raises many types for a corrupt PNG; each means "unreadable"
        raise ImageError(f"corrupt mask PNG: {type(e).__name__}: {e}") from None


def parts_union_from_labels(labels: np.ndarray, parts, classes=BISENET_CLASSES) -> np.ndarray:
    """Union of the named parts in a parser label map (class index per pixel), mapped by name."""
    idx = [classes.index(p) for p in parts if p in classes]
    return np.isin(labels, idx)


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


# --------------------------------------------------------------------------------------- BiSeNet


def default_bisenet_path() -> Path:
    """Where facexlib's own downloader keeps the weights (site-packages/facexlib/weights)."""
    return facexlib_cache(BISENET_FILE)


def bisenet_weights_path(weights: str | os.PathLike | None) -> Path:
    """The weights file to use: the configured path, or facexlib's cached/downloaded file."""
    hint = (
        f"Download {BISENET_FILE} from {BISENET_URL} and point masks.bisenet_weights at it (or copy it to "
        f"{default_bisenet_path()}), or use masks.backend: annotations (CelebAMask-HQ part masks)."
    )
    return facexlib_weights("BiSeNet", BISENET_FILE, BISENET_URL, weights, hint)


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class BiSeNetParser:
    """facexlib's BiSeNet: RGB uint8 images in, per-pixel class labels (BISENET_CLASSES) out."""

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        device: str = "auto",
        half: bool = True,
        channels_last: bool = True,
    ):
        from facexlib.parsing.bisenet import BiSeNet

        self.weights = bisenet_weights_path(weights)
        # weights_only: never unpickle arbitrary objects from a downloaded file.
        state = torch.load(self.weights, map_location="cpu", weights_only=True)
        net = BiSeNet(num_class=len(BISENET_CLASSES))
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ModelLoadError(
                f"{self.weights} does not hold 19-class BiSeNet weights ({BISENET_URL}): {str(e)[:300]}"
            ) from e
        self.device = pick_device(device)
        self.dtype = torch.float16 if (half and self.device.type == "cuda") else torch.float32
        self.net = net.eval().to(self.device, self.dtype)
        # NHWC convolutions on a GPU (tensor-core kernels); the CPU keeps NCHW
        self.memory_format = (
            torch.channels_last if (channels_last and self.device.type == "cuda") else torch.contiguous_format
        )
        self.net = self.net.to(memory_format=self.memory_format)
        self.mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)

    @torch.inference_mode()
    def labels(self, batch: np.ndarray) -> np.ndarray:
        """(B, 512, 512, 3) uint8 RGB -> (B, 512, 512) uint8 labels."""
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device, non_blocking=True)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        x = ((x - self.mean) / self.std).to(self.dtype).contiguous(memory_format=self.memory_format)
        logits = self.net(x)[0]
        return logits.argmax(dim=1).to(torch.uint8).cpu().numpy()


# ------------------------------------------------------------------------------------- the stage


class _Inputs(torch.utils.data.Dataset):
    """Decodes and validates one image (and its part masks) per item, in DataLoader workers."""

    def __init__(self, root, ids, cfg: MaskConfig, parse: bool):
        self.root, self.ids, self.cfg, self.parse = root, list(ids), cfg, parse

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        image_id = int(self.ids[i])
        cfg = self.cfg
        item = {"id": image_id, "error": None, "notes": []}
        try:
            size = BISENET_SIZE if self.parse else cfg.resolution
            loaded = load_rgb(
                celebamask.image_path(self.root, image_id), min_size=cfg.min_size, require_square=True, draft_size=size
            )
            item["notes"] += loaded.notes
            item["size"] = loaded.original_size
            if self.parse:
                im = loaded.image.resize((BISENET_SIZE, BISENET_SIZE), Image.Resampling.BILINEAR)
                item["pixels"] = np.asarray(im, dtype=np.uint8)
            if cfg.backend == "annotations":
                item["annotation"], notes = annotation_union(self.root, image_id, cfg.parts)
                item["notes"] += notes
            elif self.parse:  # the ground truth beside the parser's mask, where the dataset has it
                try:
                    item["annotation"], _ = annotation_union(self.root, image_id, cfg.parts)
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


def compute_masks(
    root, ids, cfg: MaskConfig, progress: bool = True, parser: BiSeNetParser | None = None
) -> tuple[pd.DataFrame, StageReport]:
    """Masks for `ids` under a CelebAMask-HQ `root`, and the report of what could not be used.

    Returns a DataFrame with one row per usable id: id, beta, mask (1-bit PNG of M), latent (1-bit PNG of
    M_latent), width and height of the original image, and iou_annotations (see the module docstring).
    `parser`: the BiSeNet to use (built from `cfg` for the bisenet backend when None); given with the
    annotations backend, it is run only for iou_annotations.
    """
    report = StageReport("masks", total=len(ids))
    if cfg.backend == "bisenet" and parser is None:
        parser = BiSeNetParser(cfg.bisenet_weights, cfg.device, cfg.half, cfg.channels_last)
    loader = torch.utils.data.DataLoader(
        _Inputs(root, ids, cfg, parse=parser is not None),
        batch_size=cfg.batch_size,
        shuffle=False,
        collate_fn=_as_list,
        num_workers=cfg.workers,
        persistent_workers=False,
        multiprocessing_context=worker_context(cfg.workers),
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
            labels = parser.labels(np.stack([it["pixels"] for it in good]))
            for it, lab in zip(good, labels):
                it["parsed"] = parts_union_from_labels(lab, cfg.parts)
        for it in good:
            union = it["parsed"] if cfg.backend == "bisenet" else it["annotation"]
            fm = face_mask(union, cfg.resolution, cfg.latent_factor)
            if not fm.mask.any():
                report.add_unusable(it["id"], "no face pixels: the face mask is empty (beta = 0)")
                continue
            both = "parsed" in it and it.get("annotation") is not None
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


def iou_summary(df: pd.DataFrame, parser_ran: bool, why_not: str = "") -> dict | str:
    """The parser-vs-annotations IoU over the table's images (a DVC metric), or why it is unavailable."""
    if not parser_ran:
        return f"unavailable: {why_not}"
    v = df["iou_annotations"].dropna()
    if not len(v):
        return "unavailable: no image has both a parser mask and CelebAMask-HQ part annotations"
    return {
        "images": int(len(v)),
        "without_annotations": int(len(df) - len(v)),
        "mean": float(v.mean()),
        "std": float(v.std(ddof=0)),
        "median": float(v.median()),
        "p05": float(v.quantile(0.05)),
        "min": float(v.min()),
    }


def mask_metadata(cfg: MaskConfig, parser: BiSeNetParser | None = None) -> dict:
    """The settings that made a masks table (stored in its Parquet metadata, carried into the latent
    cache's index and from there into the trained artifact): every field of `cfg` but the speed knobs
    and sigma (which the table does not depend on), and the parser's weights."""
    meta = {k: v for k, v in asdict(cfg).items() if k not in (*cfg.SPEED_KNOBS, "sigma")}
    meta["parts"] = list(cfg.parts)
    if cfg.backend == "bisenet" and parser is not None:  # M is the parser's (else it only gave iou_annotations)
        meta["bisenet_weights"] = str(parser.weights)
        meta["bisenet_sha256"] = file_sha256(parser.weights)
    meta["encoding"] = {"mask": "1-bit PNG", "latent": "1-bit PNG"}
    return meta
