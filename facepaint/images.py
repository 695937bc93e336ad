"""Reading images safely: clear errors for corrupt files, any colour mode in, RGB out.

Photos arrive as truncated JPEGs, CMYK scans, grayscale, RGBA PNGs, EXIF-rotated phone pictures and
the occasional decompression bomb. `load_rgb` turns each into an RGB image or an `ImageError` whose
message says what is wrong; the stages report it with the image's id. Only the decoders of FORMATS are
tried: PIL's others (PSD, ICNS, FLI, SGI, QOI, ... and EPS, which runs Ghostscript) never see the bytes of
a photo, and whatever a decoder raises on a corrupt file (IndexError, struct.error, EOFError, ...) is an
ImageError. tests/test_bad_input.py checks this on arbitrary bytes, truncated files and every colour mode.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facepaint import FacepaintError

# Refuse images over 64 megapixels outright (PIL warns above 89M and fails above 179M by default);
# a CelebA-HQ portrait is 1 megapixel.
MAX_PIXELS = 64_000_000
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
        with Image.open(src, formats=FORMATS) as im:
            w, h = im.size  # from the header: nothing is decoded before this check
            if w * h > MAX_PIXELS:
                raise ImageError(
                    f"{w}x{h} is over {MAX_PIXELS // 1_000_000} megapixels (refused as a possible decompression bomb)"
                )
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


def worker_context(workers: int):
    """How DataLoader workers start: from a clean forkserver process rather than by forking the
    caller. Forking a process that runs other threads (a Prefect flow, an MLflow or web server, a
    notebook's kernel) can leave the child with a held lock and kill it; the forkserver never has them.
    The server imports torch and the stages' modules once (preload), so each worker forks ready instead
    of importing torch itself (about 1 s per worker per DataLoader on a small CPU)."""
    if workers <= 0:
        return None
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "numpy", "PIL.Image", "facepaint.masks", "facepaint.latents"])
    return ctx
