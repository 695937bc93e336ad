"""What an edited PNG says about itself, and the bytes every edit leaves the system as.

The provenance (the prompt, the sampling options and the editor's choices, where the faces and their masks
came from, the edited region, and the editor's model, artifact, conditions and runtime) rides in a PNG text
chunk named "facepaint" (`read_provenance` reads it back) and in a C2PA manifest signed over the whole file
(facepaint.editing.signing; `facepaint verify` checks it). `facepaint edit`, `EditResult.save`, the web app's
download and the MLflow pyfunc model all write `png_bytes`.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

import facepaint
from facepaint.common.io import atomic_path
from facepaint.editing import signing
from facepaint.editing.signing import PROVENANCE_KEY  # noqa: F401  (re-exported: where it was)


def provenance(prepared, faces: list[dict], cut: str, options, choices, editor: dict, batch: int) -> dict:
    """The provenance of one edited photo: `prepared` (helper.Prepared: its name, mask source, detector), one
    dict per edited face (index, box, score, landmarks, alignment, prompt, beta, region), the prompt's text
    cut at 77 tokens, the `SamplingOptions` and `EditChoices` it ran with, and the editor's part
    (`FaceEditor.describe`). The top-level prompt, beta and region are the first face's (the only one's, for a
    one-face photo)."""
    return {
        "prompt": faces[0]["prompt"],
        "prompt_cut": cut,
        **asdict(options),
        "seed": choices.seed,
        "blend": choices.blend,
        "watermark": choices.watermark,
        "mask": prepared.source,
        "detector": prepared.detector,
        "beta": faces[0]["beta"],
        "region": faces[0]["region"],
        "faces": faces,
        "source": prepared.name,
        "facepaint": facepaint.__version__,
        **{k: v for k, v in editor.items() if k != "runtime"},
        "runtime": {**editor["runtime"], "batch": batch},
    }


def png_bytes(
    image: np.ndarray, provenance: dict, *, sign: bool = True, c2pa_dir=None, title: str = "edited.png"
) -> bytes:
    """The edited photo as PNG bytes: the provenance in a text chunk and, unless `sign` is False, a C2PA
    manifest signed with the key in `c2pa_dir` (`facepaint.editing.signing`: made on first use; None: the default
    directory). Every way an edit leaves the system (`facepaint edit`, `EditResult.save`, the app's download,
    the pyfunc model) writes these bytes. SigningError when it cannot sign: never an unsigned file instead."""
    info = PngInfo()
    info.add_text(PROVENANCE_KEY, json.dumps(provenance))
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", pnginfo=info)
    if not sign:
        return buf.getvalue()
    return signing.sign_png(buf.getvalue(), provenance, key=c2pa_dir, title=title)


def save_png(
    image: np.ndarray, path: str | os.PathLike, provenance: dict, *, sign: bool = True, c2pa_dir=None
) -> Path:
    data = png_bytes(image, provenance, sign=sign, c2pa_dir=c2pa_dir, title=Path(path).name)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def read_provenance(path: str | os.PathLike) -> dict:
    """The provenance `facepaint edit` wrote into a PNG. Raises ValueError when there is none."""
    with Image.open(path) as im:
        raw = getattr(im, "text", {}).get(PROVENANCE_KEY)
    if raw is None:
        raise ValueError(f"{path} carries no facepaint provenance (it was not written by `facepaint edit`)")
    return json.loads(raw)
