"""The values the face options take (detectors, mask backends, padding, min_face) and the face selection's
parser, light to import: `facepaint --help` builds its parser from them without torch, and the face helper,
the editor and the faces stage share them."""

from __future__ import annotations

DETECTORS = ("auto", "retinaface", "mediapipe", "opencv")  # facepaint.method.detection.make_detector's kinds
MASK_BACKENDS = ("auto", "bisenet", "mesh")  # auto: bisenet when its weights are given or cached, else mesh
PADDING = 0.25  # crop margin per side for a face given by a mask alone, x its longer side (our choice)
MAX_PADDING = 10.0  # a crop margin of 10 face sizes per side is already the whole photo for any portrait
MIN_FACE = 64.0  # px: a detected face narrower than this is skipped (our choice: the model sees it upscaled 4x+)
MAX_MIN_FACE = 100_000.0  # px: wider than the face of any photo load_rgb accepts


def parse_selection(spec) -> str | list[int]:
    """`--faces`: "all", "largest", or face indices ("0,2", [0, 2])."""
    if isinstance(spec, str) and spec.strip().lower() in ("all", "largest"):
        return spec.strip().lower()
    try:
        items = spec.split(",") if isinstance(spec, str) else list(spec)  # TypeError: None, a number
        idx = [int(str(i).strip()) for i in items]
    except (TypeError, ValueError):
        raise ValueError(f"faces must be 'all', 'largest' or indices like '0,2', got {spec!r}") from None
    if not idx or min(idx) < 0 or len(set(idx)) != len(idx):
        raise ValueError(f"faces must be distinct indices >= 0, got {spec!r}")
    return idx
