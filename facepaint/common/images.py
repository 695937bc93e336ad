"""Reading images safely: clear errors for corrupt files, any colour mode in, RGB out.

Photos arrive as truncated JPEGs, CMYK scans, grayscale, RGBA PNGs, EXIF-rotated phone pictures and
the occasional decompression bomb. `load_rgb` turns each into an RGB image or an `ImageError` whose
message says what is wrong; the stages report it with the image's id. Only the decoders of FORMATS are
tried: PIL's others (PSD, ICNS, FLI, SGI, QOI, ... and EPS, which runs Ghostscript) never see the bytes of
a photo, and whatever a decoder raises on a corrupt file (IndexError, struct.error, EOFError, ...) is an
ImageError. tests/test_bad_input.py checks this on arbitrary bytes, truncated files and every colour mode.

Also here: a photo given as a path, bytes, PIL image or array (`read_photo`), binary masks resized
(`resize_binary`) and stored as PNG bytes in the stages' tables (`encode_png`, `decode_png`).
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facepaint.common.errors import FacepaintError
from facepaint.common.limits import MAX_BYTES, MAX_PIXELS

# Images over the limits (facepaint.common.limits: 24 megapixels, 25 MiB) are refused from their header and
# size, before decoding (PIL warns above 89M pixels and fails above 179M by default); a CelebA-HQ portrait is 1 MP.
# The decoders a photo or mask goes through: the formats of photos and of the CelebAMask-HQ release
# (PIL's JPEG decoder also opens MPO, the JPEG variant some phone cameras write).
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
UNSUPPORTED = "not a JPEG, PNG, WEBP, GIF, BMP or TIFF image"


class ImageError(FacepaintError):
    """An image that cannot be used; the message is the reason (the caller adds the id or path)."""


@dataclass
class LoadedImage:
    image: Image.Image  # RGB
    original_size: tuple[int, int]  # (width, height) as stored, before EXIF rotation
    notes: list[str] = field(default_factory=list)  # conversions applied, e.g. "converted from CMYK"


def load_rgb(
    path_or_bytes, *, min_size: int = 1, require_square: bool = False, draft_size: int | None = None
) -> LoadedImage:
    """Decode an image fully and return it as RGB.

    - Truncated or corrupt files raise ImageError (PIL would otherwise pad truncated JPEGs with grey
      when LOAD_TRUNCATED_IMAGES is set; it is never set here).
    - EXIF orientation is applied; grayscale, palette, CMYK, 16-bit and alpha images are converted to
      RGB (alpha is composited on white) and the conversion is noted.
    - `draft_size`: let the JPEG decoder scale down by a power of two while staying at or above this
      size (much faster for 1024 -> 512; the result is then resized by the caller).
    """
    name = str(path_or_bytes) if isinstance(path_or_bytes, (str, os.PathLike)) else "<bytes>"
    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, (bytes, bytearray)) else path_or_bytes
    try:
        if isinstance(path_or_bytes, (bytes, bytearray)):
            size = len(path_or_bytes)
        else:
            size = os.path.getsize(src) if isinstance(src, (str, os.PathLike)) else 0
        _check_limits(size=size)
        with Image.open(src, formats=FORMATS) as im:
            w, h = im.size  # from the header: nothing is decoded before this check
            _check_limits(w, h)
            if draft_size and im.format == "JPEG" and min(w, h) > draft_size:
                im.draft("RGB", (draft_size * w // min(w, h), draft_size * h // min(w, h)))
            im.load()
            notes = []
            if getattr(im, "is_animated", False):
                notes.append(f"animated {im.format}: its first frame is used")
            orientation = _orientation(im)
            oriented = ImageOps.exif_transpose(im)
            if orientation not in (None, 1):
                notes.append(f"EXIF orientation {orientation} applied")
            rgb = _to_rgb(oriented, notes)
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"file not found: {name}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"refused as a possible decompression bomb: {e}") from None
    except UnidentifiedImageError:
        raise ImageError(f"corrupt or unreadable image: {UNSUPPORTED}") from None
    except (OSError, SyntaxError, ValueError) as e:
        # PIL raises OSError for truncated data ("image file is truncated")
        raise ImageError(f"corrupt or unreadable image: {e}") from None
    except Exception as e:  # a decoder's own failure on corrupt data (IndexError, EOFError, struct.error, ...)
        raise ImageError(f"corrupt or unreadable image: {type(e).__name__}: {e}") from None

    width, height = rgb.size
    if min(width, height) < min_size:
        raise ImageError(f"too small: {width}x{height} (at least {min_size}x{min_size} is needed)")
    if require_square and width != height:
        raise ImageError(f"not square: {width}x{height} (CelebA-HQ images are square; crop it to a square first)")
    return LoadedImage(rgb, (w, h), notes)


def check_image_file(path_or_bytes) -> tuple[int, int]:
    """(width, height) of an image file or bytes from its header, after the limits on its bytes and pixels:
    ImageError otherwise (or for a file that is not an image). Nothing is decoded: an entry point checks its
    inputs so before it loads a model."""
    try:
        if isinstance(path_or_bytes, (bytes, bytearray)):
            size, src = len(path_or_bytes), io.BytesIO(path_or_bytes)
        else:
            size, src = os.path.getsize(path_or_bytes), path_or_bytes
        _check_limits(size=size)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(src, formats=FORMATS) as im:
                w, h = im.size
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"file not found: {path_or_bytes}") from None
    except UnidentifiedImageError:
        raise ImageError(f"corrupt or unreadable image: {UNSUPPORTED}") from None
    except Exception as e:  # a header PIL cannot read (including one past its own bomb limit)
        raise ImageError(f"corrupt or unreadable image: {type(e).__name__}: {e}") from None
    _check_limits(w, h)
    return w, h


def _check_limits(width: int = 0, height: int = 0, size: int = 0) -> None:
    """ImageError for an image over the limits: `size` bytes, or `width` x `height` pixels read from its header
    (the module's MAX_BYTES and MAX_PIXELS, facepaint.common.limits', so that a test can lower them)."""
    if size > MAX_BYTES:
        raise ImageError(f"the file is {size / 2**20:.1f} MiB, over the limit of {MAX_BYTES / 2**20:g} MiB")
    if width * height > MAX_PIXELS:
        raise ImageError(
            f"{width}x{height} ({width * height / 1e6:.1f} megapixels) is over the limit of "
            f"{MAX_PIXELS / 1e6:g} megapixels (refused before decoding: scale it down first)"
        )


def _orientation(im: Image.Image):
    try:
        return im.getexif().get(0x0112)
    except Exception:  # malformed EXIF is not worth failing over
        return None


def _to_rgb(im: Image.Image, notes: list[str]) -> Image.Image:
    mode = im.mode
    if mode == "RGB":
        return im.copy()
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        notes.append(f"converted from {mode} (alpha composited on white)")
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if arr.max() > 255 else 255.0
        im = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    notes.append(f"converted from {mode}")
    return im.convert("RGB")


def resize_rgb(image: Image.Image, size: int) -> np.ndarray:
    """A square RGB image resized to size x size (Lanczos), as uint8 HxWx3."""
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.uint8)


def load_mask(path: str | os.PathLike) -> np.ndarray:
    """A binary part mask (any mode; nonzero = part) as a bool HxW array. Raises ImageError."""
    try:
        with Image.open(path, formats=FORMATS) as im:
            if im.width * im.height > MAX_PIXELS:
                raise ImageError(f"part mask {Path(path).name} is {im.width}x{im.height}, over {MAX_PIXELS} pixels")
            im.load()
            arr = np.asarray(im.convert("L"))
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"part mask not found: {path}") from None
    except UnidentifiedImageError:
        raise ImageError(f"corrupt part mask {Path(path).name}: {UNSUPPORTED}") from None
    except Exception as e:  # OSError for truncated data; a decoder's own failure on corrupt data
        raise ImageError(f"corrupt part mask {Path(path).name}: {e}") from None
    return arr >= 128


def worker_context(workers: int, preload: tuple[str, ...] = ()):
    """How DataLoader workers start: from a clean forkserver process rather than by forking the
    caller. Forking a process that runs other threads (a Prefect flow, an MLflow or web server, a
    notebook's kernel) can leave the child with a held lock and kill it; the forkserver never has them.
    The server imports torch and `preload` (the caller's module, whose dataset the workers unpickle) once, so
    each worker forks ready instead of importing torch itself (about 1 s per worker per DataLoader on a small
    CPU)."""
    if workers <= 0:
        return None
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "numpy", "PIL.Image", *preload])
    return ctx


def resize_binary(mask: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """A mask (bool, or float in [0, 1]) resized bilinearly to size x size (or size = (width, height)) and
    binarized at 0.5."""
    w, h = (size, size) if isinstance(size, (int, np.integer)) else size
    m = np.asarray(mask, dtype=np.float32)
    if m.shape != (h, w):
        m = np.asarray(Image.fromarray(m, mode="F").resize((w, h), Image.Resampling.BILINEAR))
    return m >= 0.5


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


def read_photo(image) -> tuple[np.ndarray, str, list[str]]:
    """(uint8 H x W x 3 RGB, a name for messages, decoding notes) from a path, bytes, PIL image or array.
    Files are decoded by `images.load_rgb` (EXIF rotation, any colour mode, decompression bombs refused)."""
    if isinstance(image, (str, os.PathLike, bytes, bytearray)):
        name = "<bytes>" if isinstance(image, (bytes, bytearray)) else str(image)
        try:
            loaded = load_rgb(image)
        except ImageError as e:
            raise ImageError(f"{name}: {e}") from None
        return np.asarray(loaded.image), name, list(loaded.notes)
    if isinstance(image, Image.Image):
        _check_decoded(*image.size, "<image>")
        return np.asarray(image.convert("RGB")), "<image>", []
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"an image array must be uint8 (H, W, 3) RGB, got {arr.dtype} {arr.shape}")
    _check_decoded(arr.shape[1], arr.shape[0], "<array>")
    return arr, "<array>", []


def _check_decoded(width: int, height: int, name: str) -> None:
    """The pixel limit for an image given already decoded (the Python API's PIL image or array): the edit's
    work grows with it as with a file's."""
    try:
        _check_limits(width, height)
    except ImageError as e:
        raise ImageError(f"{name}: {e}") from None
