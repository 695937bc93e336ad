"""The input limits of every entry point: `facepaint edit`, the Python API (`FaceEditor`), the web app and the
MLflow pyfunc model (`mlflow models serve`). One set, defined here; each is checked before anything is decoded,
loaded or generated, so an input over a limit costs a header read, not a worker's memory.

- MAX_PIXELS: a photo, a mask or a layer of the app's mask editor, from its header (a 182 KB PNG can declare
  62 megapixels: decoding it took a serving worker from 1.5 to 6.7 GB). 24 MP is a 6000x4000 camera picture.
- MAX_BYTES: the bytes of one image file or request image (25 MiB: a 24 MP JPEG at the highest quality is ~12 MB).
- MAX_PROMPT_CHARS: a prompt or negative prompt. CLIP reads 77 tokens (~300 characters) and warns when it
  truncates; the provenance and the C2PA manifest carry the whole text, and c2pa refuses a long manifest after
  the generation (a 375 KB prompt failed there), so a prompt is refused up front.
- MAX_STEPS: denoising steps of one edit (a serving policy: one edit must not hold a worker for minutes;
  SD1.5's schedule has 1000 timesteps, the paper samples 50).
- MAX_ROWS: photos in one request to the served model.
"""

from __future__ import annotations

MAX_PIXELS = 24_000_000
MAX_BYTES = 25 * 2**20
MAX_PROMPT_CHARS = 2000
MAX_STEPS = 200
MAX_ROWS = 16


class LimitError(ValueError):
    """An input over one of the limits above; the message names the input, its size and the limit."""


def check_prompt(value, key: str = "prompt") -> str:
    """`value` if it is a prompt: text of at most MAX_PROMPT_CHARS characters. ValueError naming `key` for
    anything else (None, a number or a list is not edited as its printed form)."""
    if not isinstance(value, str):
        raise ValueError(f"{key} must be text, got {type(value).__name__} {_short(value)}")
    if len(value) > MAX_PROMPT_CHARS:
        raise LimitError(
            f"{key} is {len(value):,} characters, over the limit of {MAX_PROMPT_CHARS:,} (CLIP reads only the "
            "first 77 tokens, about 300 characters): shorten it"
        )
    return value


def check_pixels(width: int, height: int, what: str) -> None:
    """LimitError naming `what` when an image of `width` x `height` is over MAX_PIXELS."""
    if width * height > MAX_PIXELS:
        raise LimitError(
            f"{what} is {width}x{height} ({width * height / 1e6:.1f} megapixels), over the limit of "
            f"{MAX_PIXELS / 1e6:g} megapixels: scale it down first"
        )


def check_bytes(size: int, what: str) -> None:
    """LimitError naming `what` when `size` bytes are over MAX_BYTES."""
    if size > MAX_BYTES:
        raise LimitError(f"{what} is {size / 2**20:.1f} MiB, over the limit of {MAX_BYTES / 2**20:g} MiB")


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
