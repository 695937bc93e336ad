"""The web app: `facepaint app` (Gradio) around `FaceEditor`.

    facepaint app --model data/model     # http://127.0.0.1:7860

The page: upload a photo (or pick a demo portrait); the faces found are drawn on it with their indices
(and the automatic mask: BiSeNet's when its weights are there, else the face mesh's outline); correct or
draw the mask with a brush (white = face) or upload a mask image; write a prompt, set the options and run.
The result appears beside the input with a before/after slider, and the PNG that `EditResult.save` wrote
(carrying its provenance) can be downloaded.

Every action is an API endpoint (`gradio_client`): `/detect` (the faces of a photo), `/load_mask` (a
mask image into the mask editor), `/random_seed` and `/edit` (see docs/editing.md, "The web app").

How it is built:
- The handlers' logic lives in `App`, plain Python without Gradio (tested directly); `build_app` only lays
  out the page and wires the events, and imports Gradio itself, so importing this module costs nothing.
- A `FaceEditor` is loaded once per model and options (`editor_for`, cached for the process) and runs one
  edit at a time (a diffusers pipeline is not re-entrant); the queue runs `concurrency` events at once.
- Uploads reach the handlers as the raw uploaded files (`raw_upload`): they are decoded by
  `images.load_rgb` (truncated and non-image files, decompression bombs refused with a reason) after a
  header check against the app's pixel limit. Every expected problem (a bad upload, no face, a mask of
  the wrong aspect ratio, an out-of-range option) is a message in the page, never a traceback, and the
  server goes on serving.
- Numbers are checked (finite, whole where they must be, within limits) before any model runs.
- The base model's safety checker runs on every edit when the model ships one; a flagged result is a message
  in the page, with no image. Turning it off is the operator's choice at launch (`--no-safety-checker`), not a
  checkbox of the page.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import re
import tempfile
import threading
import time
import uuid
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from facepaint.apps.releases import DEFAULT_MODEL, release_uri, release_uris, releases, resolve
from facepaint.common.errors import FacepaintError
from facepaint.common.images import ImageError, check_image_file, load_rgb, resize_binary
from facepaint.common.limits import MAX_BYTES, MAX_PIXELS, MAX_STEPS, check_prompt
from facepaint.editing.editor import EditChoices, FaceEditor, parse_edit_options
from facepaint.editing.safety import UnsafeResultError
from facepaint.method.detection import Face, FaceError
from facepaint.method.face_helper import MASK_BACKENDS, EditError, fit_mask
from facepaint.method.masks import default_bisenet_path
from facepaint.method.models import ModelLoadError
from facepaint.method.options import SamplingOptions

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
PORT = 7860
DEMO_PHOTOS = "data/demo/CelebA-HQ-img"  # the demo stage's portraits, offered as examples when present
N_EXAMPLES = 6
# The input limits are facepaint.common.limits' (every entry point's); an operator may lower max_pixels and
# max_steps (AppConfig). Gradio refuses a file over MAX_FILE_SIZE before it reaches a handler (its "mb" is MiB).
MAX_FILE_SIZE = f"{MAX_BYTES // 2**20}mb"
MAX_SEED = 2**32 - 1  # the random-seed button's range
SAMPLING, CHOICES = SamplingOptions(), EditChoices()  # the edit options' defaults
EDITOR_CANVAS = 1024  # px: the mask editor's square canvas (the photo is scaled into it; M is scaled back)
PREVIEW_SIDE = 1536  # px: the longest side of the images shown in the page (the PNG download is full size)
USER_ERRORS = (FacepaintError, ValueError)  # ImageError, EditError, FaceError, ModelLoadError, ArtifactError


# ----------------------------------------------------------------------------------------- the editors

_editors: dict[tuple, FaceEditor] = {}
_run_locks: dict[tuple, threading.Lock] = {}
_editors_lock = threading.Lock()


def editor_for(
    model: str,
    *,
    bisenet_weights=None,
    detector_weights=None,
    face_models=None,
    mask_backend: str = "auto",
    device: str = "auto",
    safety_checker: bool = True,
) -> FaceEditor:
    """The FaceEditor of an artifact directory, loaded on first use and then shared by every request."""
    key = (str(model), str(bisenet_weights), str(detector_weights), str(face_models), mask_backend, device,
           bool(safety_checker))  # fmt: skip
    with _editors_lock:
        if key not in _editors:
            log.info("loading the editor for %s", model)
            _editors[key] = FaceEditor.from_artifact(
                model,
                device=device,
                bisenet_weights=bisenet_weights,
                detector_weights=detector_weights,
                face_models=face_models,
                mask_backend=mask_backend,
                safety_checker=safety_checker,
            )
            _run_locks[key] = threading.Lock()
        return _editors[key]


def _run_lock(editor: FaceEditor) -> threading.Lock:
    with _editors_lock:
        return next(_run_locks[k] for k, e in _editors.items() if e is editor)


# ------------------------------------------------------------------------------------- inputs checked


def edit_options(values: dict, max_steps: int = MAX_STEPS) -> tuple[SamplingOptions, EditChoices]:
    """The page's values (form numbers, text, checkboxes) as the edit's options, parsed by the one parser of
    user values (`parse_edit_options`); ValueError naming the option before any model runs."""
    options, choices = parse_edit_options(values)
    if options.steps > max_steps:
        raise ValueError(f"steps must be from 1 to {max_steps} in this app, got {options.steps}")
    return options, choices


def read_upload(path, max_pixels: int, what: str = "photo") -> tuple[np.ndarray, str, list[str]]:
    """(uint8 RGB array, file name, decoding notes) of an uploaded image: its header checked against the
    app's pixel limit first, then decoded by `load_rgb`. ImageError with the file's name and the reason."""
    path = Path(path)
    name = path.name
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
    except Exception:  # not an image, or a bomb PIL refuses to open: load_rgb below says which
        w = h = 0
    if w * h > max_pixels:
        raise ImageError(
            f"{what} {name} is {w}x{h} ({w * h / 1e6:.1f} megapixels), over this app's limit of "
            f"{max_pixels / 1e6:g} megapixels: scale it down first"
        )
    try:
        loaded = load_rgb(path)
    except ImageError as e:
        raise ImageError(f"{what} {name}: {_plain(e, path)}") from None
    return np.asarray(loaded.image), name, list(loaded.notes)


def _plain(error, *paths) -> str:
    """An error's message with the server's upload paths shown as the uploaded files' names."""
    message = str(error)
    for p in paths:
        if p is not None:
            message = message.replace(str(p), Path(p).name)
    return message


def canvas_box(size: tuple[int, int], canvas: int = EDITOR_CANVAS) -> tuple[int, int, int, int]:
    """(x0, y0, w, h): where a photo of size = (width, height) lies in the mask editor's square canvas,
    scaled to fit and centred."""
    w, h = size
    k = canvas / max(w, h)
    cw, ch = max(1, round(w * k)), max(1, round(h * k))
    return (canvas - cw) // 2, (canvas - ch) // 2, cw, ch


def to_canvas(image: np.ndarray, canvas: int = EDITOR_CANVAS) -> np.ndarray:
    """A photo (H x W x 3) or a mask layer (H x W x 4) scaled into the editor's canvas (`canvas_box`); the
    margin is grey for a photo, transparent for a layer."""
    h, w = image.shape[:2]
    x0, y0, cw, ch = canvas_box((w, h), canvas)
    fill = (128, 128, 128) if image.shape[2] == 3 else (0, 0, 0, 0)
    out = np.empty((canvas, canvas, image.shape[2]), np.uint8)
    out[:] = fill
    resample = Image.Resampling.BILINEAR if image.shape[2] == 3 else Image.Resampling.NEAREST
    out[y0 : y0 + ch, x0 : x0 + cw] = np.asarray(Image.fromarray(image).resize((cw, ch), resample))
    return out


@dataclass
class MaskStart:
    """A mask the app put into the mask editor (BiSeNet's, or an uploaded image): what the canvas was given
    and the same mask at the photo's size, exactly, so that an uncorrected mask is used at full resolution
    and a corrected one loses nothing where it was not touched."""

    canvas: np.ndarray  # bool canvas x canvas
    mask: np.ndarray  # bool H x W
    source: str  # the automatic mask ("bisenet", "mesh") or "upload NAME"


def to_canvas_mask(mask: np.ndarray, canvas: int = EDITOR_CANVAS) -> np.ndarray:
    """A photo-sized M laid out on the editor's square canvas (`canvas_box`)."""
    h, w = mask.shape
    x0, y0, cw, ch = canvas_box((w, h), canvas)
    out = np.zeros((canvas, canvas), bool)
    out[y0 : y0 + ch, x0 : x0 + cw] = resize_binary(mask, (cw, ch))
    return out


def from_canvas_mask(painted: np.ndarray, size: tuple[int, int], canvas: int = EDITOR_CANVAS) -> np.ndarray:
    """M at a photo's size = (width, height) from the editor's painted pixels: a canvas-sized array as
    `canvas_box` laid the photo out; another size must have the photo's aspect ratio (a client's own layer)."""
    if painted.shape == (canvas, canvas):
        x0, y0, cw, ch = canvas_box(size, canvas)
        return resize_binary(painted[y0 : y0 + ch, x0 : x0 + cw], size)
    return fit_mask(painted, size, "the mask editor's layer")


def mask_editor_value(
    photo: np.ndarray, mask: np.ndarray | None = None, canvas: int = EDITOR_CANVAS
) -> tuple[dict, np.ndarray | None]:
    """(the mask editor's value for a photo and a mask to start from, that mask on the canvas). Both are
    given at the canvas's size: Gradio's ImageEditor misplaces the layers it is given with a background
    smaller than its canvas, and a painted layer comes back at the canvas's size."""
    on_canvas = None if mask is None or not mask.any() else to_canvas_mask(mask, canvas)
    layers = [] if on_canvas is None else [mask_layer(on_canvas)]
    return {"background": to_canvas(photo, canvas), "layers": layers, "composite": None}, on_canvas


def painted_layers(value) -> np.ndarray | None:
    """The union of the mask editor's layers' painted pixels (white strokes: opaque enough and light), at the
    first layer's size; None when nothing is painted."""
    if not value:
        return None
    union = None
    for layer in value.get("layers") or []:
        a = np.asarray(layer)
        if a.ndim != 3 or a.shape[2] != 4:
            continue
        painted = (a[..., 3] >= 32) & (a[..., :3].astype(np.float32).mean(-1) >= 128)
        if union is None:
            union = painted
        elif painted.shape == union.shape:
            union |= painted
        else:  # layers of another size: resized onto the first's
            union |= resize_binary(painted, union.shape[::-1])
    return union if union is not None and union.any() else None


def editor_mask(
    value, size: tuple[int, int], start: MaskStart | None = None, canvas: int = EDITOR_CANVAS
) -> tuple[np.ndarray | None, str] | None:
    """(M at the photo's size = (width, height), where it came from) from the mask editor; M None means the
    automatic mask, uncorrected (the edit makes it itself). `start`: the mask the app put into the editor;
    where the canvas still shows it, its full-resolution pixels are kept, and only the strokes added or erased
    are scaled back from the canvas. None when nothing is painted."""
    painted = painted_layers(value)
    if painted is None:
        return None
    if start is None or painted.shape != start.canvas.shape or start.mask.shape != size[::-1]:
        return from_canvas_mask(painted, size, canvas), "drawn in the app"
    if np.array_equal(painted, start.canvas):
        return (None, start.source) if start.source in MASK_BACKENDS else (start.mask, start.source)
    added = from_canvas_mask(painted & ~start.canvas, size, canvas)
    erased = from_canvas_mask(start.canvas & ~painted, size, canvas)
    return (start.mask & ~erased) | added, f"{start.source}, corrected in the app"


def grey_mask(image: np.ndarray) -> np.ndarray:
    """An uploaded mask image (RGB uint8) as floats in [0, 1]: white = face."""
    return np.asarray(Image.fromarray(image).convert("L"), dtype=np.float32) / 255.0


def mask_layer(mask: np.ndarray) -> np.ndarray:
    """M as a layer of the mask editor: RGBA, white and half opaque on the face, transparent elsewhere."""
    layer = np.zeros((*mask.shape, 4), np.uint8)
    layer[mask] = (255, 255, 255, 160)
    return layer


def shrink(image: np.ndarray, side: int = PREVIEW_SIDE) -> np.ndarray:
    """An image for display: scaled down so its longer side is at most `side` (the downloads stay full size)."""
    h, w = image.shape[:2]
    if max(h, w) <= side:
        return image
    k = side / max(h, w)
    return np.asarray(
        Image.fromarray(image).resize((max(1, round(w * k)), max(1, round(h * k))), Image.Resampling.LANCZOS)
    )


def draw_faces(photo: np.ndarray, faces: list[Face], mask: np.ndarray | None = None) -> np.ndarray:
    """The photo with each face's box and index (and the mask tinted green, when given)."""
    out = photo
    if mask is not None:
        tinted = photo.astype(np.float32)
        tinted[mask] = 0.55 * tinted[mask] + 0.45 * np.array([40, 220, 80], np.float32)
        out = tinted.astype(np.uint8)
    im = Image.fromarray(out)
    draw = ImageDraw.Draw(im)
    h, w = photo.shape[:2]
    line = max(2, round(max(w, h) / 300))
    for i, f in enumerate(faces):
        box = [round(v) for v in f.box]
        size = max(14, round(f.width / 4))
        draw.rectangle(box, outline=(255, 40, 40), width=line)
        draw.text((box[0] + 2 * line, box[1] + line), str(i), fill=(255, 230, 0), font_size=size, stroke_width=2)
        for x, y in f.landmarks or ():
            draw.ellipse([x - line, y - line, x + line, y + line], fill=(40, 255, 40))
    return np.asarray(im)


def automatic_mask(editor: FaceEditor, photo: np.ndarray, faces, min_face: float) -> np.ndarray:
    """The automatic M of the selected faces (BiSeNet's or the face mesh's), in photo pixels (each aligned face's
    mask warped back)."""
    helper = editor.helper
    return helper.photo_mask(helper.prepare(photo, None, faces=faces, min_face=min_face))


def demo_examples(folder, n: int = N_EXAMPLES) -> list[str]:
    """The first `n` portraits of the demo dataset (by numeric id), when the folder exists."""
    if not folder or not Path(folder).is_dir():
        return []
    photos = [p for p in Path(folder).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png") and p.is_file()]
    photos.sort(key=lambda p: (int(p.stem) if p.stem.isdigit() else math.inf, p.name))
    return [str(p.resolve()) for p in photos[:n]]


def mask_status(bisenet_weights, face_models=None) -> tuple[Path | None, str | None, str]:
    """(the BiSeNet weights to use or None, the automatic mask the app offers: "bisenet", "mesh" or None, a line
    for the page saying which and how to change it). BiSeNet (the paper's parser) when its weights are given or
    cached; else the face mesh's outline (MediaPipe's model files, fetched once); else none (paint the face)."""
    from facepaint.method import mediapipe

    brush = "drawn in green; correct it with the brush."
    bisenet, why_not = None, ""
    if bisenet_weights:
        path = Path(bisenet_weights)
        if path.is_file():
            bisenet = path
        else:
            why_not = f"`--bisenet-weights {path}` does not exist. "
    elif default_bisenet_path().is_file():
        bisenet = default_bisenet_path()
    if bisenet is not None:
        return bisenet, "bisenet", f"Automatic face mask: BiSeNet with `{bisenet}`, {brush}"
    try:
        mediapipe.model_dir(face_models)
    except ModelLoadError as e:
        return (
            None,
            None,
            (
                f"**Automatic face mask unavailable**: {why_not}no BiSeNet weights (`--bisenet-weights PATH`), and "
                f"the face mesh's model files are missing: {e} Meanwhile paint the face white in the mask editor, or "
                "upload a mask image (white = face)."
            ),
        )
    return (
        None,
        "mesh",
        (
            f"{why_not}Automatic face mask: the face mesh's outline (MediaPipe), {brush} BiSeNet, the paper's face "
            "parser, is used instead when the app is started with `--bisenet-weights PATH`."
        ),
    )


# ---------------------------------------------------------------------------------------- the handlers


@dataclass
class AppConfig:
    model: str = DEFAULT_MODEL  # an artifact directory or `models:/facepaint@champion`
    bisenet_weights: str | None = None
    detector_weights: str | None = None
    face_models: str | None = None  # a folder of MediaPipe's model files (None: the cache, fetched once)
    device: str = "auto"
    max_pixels: int = MAX_PIXELS
    max_file_size: str | int = MAX_FILE_SIZE
    examples: str | None = DEMO_PHOTOS  # a folder of demo portraits (None: no examples)
    workdir: str | None = None  # where edited PNGs are written (default: a new temporary folder)
    releases: bool = True  # also offer the registered releases (models:/name@alias) of the MLflow store, if any
    max_steps: int = MAX_STEPS  # denoising steps an edit may ask for
    safety_checker: bool = True  # the base model's checker on every edit (off: --no-safety-checker, the operator's)


def demo_notice(model_dir: str) -> str | None:
    """What to tell a user about the artifact at `model_dir` when its base model has random weights (the demo's:
    its edits are noise), from its description alone; None for pretrained weights or an unreadable artifact
    (whose error the first edit reports)."""
    from facepaint.method.artifact import ArtifactError, read_conditions

    try:
        return read_conditions(model_dir).model.demo_notice
    except (ArtifactError, ValueError, TypeError):
        return None


class App:
    """What the page does, without Gradio: each method takes the components' values and returns theirs,
    raising a FacepaintError or ValueError with a message for the user."""

    def __init__(self, config: AppConfig):
        self.config = config
        self.model = resolve(config.model)  # a models:/ URI fails here, once, with its reason
        if not Path(self.model).is_dir():
            raise ValueError(f"model {self.model} is not an artifact directory (run `dvc repro` or pass --model)")
        # the models a page may choose: --model, then the registered releases (resolved when first chosen)
        found, self.releases_note = releases() if config.releases else ([], "registered releases not offered")
        # a release named by --model is listed once, by its label ("... (version 1; also challenger)")
        first = next((r for r in found if release_uri(config.model) in release_uris(r)), config.model)
        self.choices = [first] + [r for r in found if r != first]
        self._resolved = {first: self.model, config.model: self.model}
        self._resolving = threading.Lock()
        self.demo_notice = demo_notice(self.model)
        self.bisenet, self.auto_mask, self.mask_notice = mask_status(config.bisenet_weights, config.face_models)
        self.workdir = Path(config.workdir or tempfile.mkdtemp(prefix="facepaint-app-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.examples = demo_examples(config.examples)

    def model_dir(self, choice: str | None = None) -> str:
        """The artifact directory of one of the app's `choices` (None: --model's); a registered release is
        fetched from the store the first time it is chosen. ValueError for a model the app does not offer."""
        choice = self.choices[0] if choice in (None, "", self.config.model) else str(choice)
        # a release's URI alone ("models:/facepaint@challenger") is its labelled entry
        choice = next((c for c in self.choices if release_uri(choice) in release_uris(c)), choice)
        if choice not in self.choices:
            raise ValueError(f"model {choice!r} is not offered by this app: choose one of {self.choices}")
        with self._resolving:
            if choice not in self._resolved:
                self._resolved[choice] = resolve(choice)
            return self._resolved[choice]

    def editor(self, choice: str | None = None) -> FaceEditor:
        return editor_for(
            self.model_dir(choice),
            bisenet_weights=self.bisenet,
            detector_weights=self.config.detector_weights,
            face_models=self.config.face_models,
            mask_backend=self.auto_mask or "auto",
            device=self.config.device,
            safety_checker=self.config.safety_checker,
        )

    def detect(self, photo_path, faces="all", min_face=CHOICES.min_face, model=None):
        """(overlay image, mask editor value, faces as JSON, status, MaskStart or None): the faces of the photo,
        numbered; the automatic mask (of `model`, one of `choices`) when there is one. Raises for a
        photo that cannot be used."""
        if photo_path is None:
            return None, None, [], "Upload a photo (or pick a demo portrait) to start.", None
        choices = edit_options({"faces": (faces or "all").strip(), "min_face": min_face})[1]
        faces, min_face = choices.faces, choices.min_face
        self.model_dir(model)  # an unknown model fails before the photo is read
        photo, name, notes = read_upload(photo_path, self.config.max_pixels)
        editor = self.editor(model)
        with _run_lock(editor):  # the detector and parser are the editor's: one request at a time uses them
            found, detector = editor.helper.detect(photo, min_face)
            auto, why = None, None
            if self.auto_mask is not None:
                try:
                    auto = automatic_mask(editor, photo, faces, min_face)
                except USER_ERRORS as e:
                    why = _plain(e, photo_path).replace("<array>", name)
        h, w = photo.shape[:2]
        lines = [
            f"**{name}**: {w}x{h}, {len(found)} face(s) of at least {min_face:g} px found by {detector}"
            + (" (numbered on the overlay, left to right)." if found else ".")
        ]
        if self.auto_mask is not None:
            lines.append(
                f"No automatic mask: {why}"
                if auto is None
                else "The automatic mask is in green and in the mask editor: correct it with the brush."
            )
        else:
            lines.append("Paint the face white in the mask editor, or upload a mask image.")
        if not found:
            lines.append("With no face detected, the masked region is edited as one face.")
        lines += [f"Note: {n}" for n in notes]
        overlay = shrink(draw_faces(photo, found, auto))
        value, on_canvas = mask_editor_value(photo, auto)
        start = None if on_canvas is None else MaskStart(on_canvas, auto, self.auto_mask)
        return overlay, value, [f.to_json() for f in found], "\n\n".join(lines), start

    def load_mask(self, photo_path, mask_path):
        """(mask editor value, status, MaskStart): an uploaded mask image as the editor's layer, to be corrected."""
        if mask_path is None:
            raise ValueError("no mask image was uploaded")
        if photo_path is None:
            raise ValueError("upload the photo first, then its mask")
        photo, _, _ = read_upload(photo_path, self.config.max_pixels)
        image, name, _ = read_upload(mask_path, self.config.max_pixels, "mask")
        h, w = photo.shape[:2]
        m = fit_mask(grey_mask(image), (w, h), f"mask {name}")
        if not m.any():
            raise EditError(f"mask {name} is empty: the face must be white")
        status = f"Mask **{name}** is in the mask editor: correct it with the brush (white = face) or the eraser."
        value, on_canvas = mask_editor_value(photo, m)
        return value, status, MaskStart(on_canvas, m, f"upload {name}")

    def edit(self, request: EditRequest, progress=None):
        """((before, after), the PNG's path, its provenance, status) of the page's `request`. The mask: what is
        painted in the mask editor (`editor_mask`, `request.start` what the app put there), else the uploaded
        mask image, else BiSeNet's (when available). `progress(fraction or (step, steps), desc=...)`: Gradio's."""
        started, r = time.perf_counter(), request
        options, choices = edit_options(r.options(), self.config.max_steps)
        prompt = check_prompt(r.prompt or "", "prompt").strip()
        if not prompt:
            raise ValueError("write a prompt: what the face should look like")
        self.model_dir(r.model)  # an unknown model fails before any photo is read
        if r.photo_path is None:
            raise ValueError("upload a photo first")
        name = Path(r.photo_path).name
        photo, _, _ = read_upload(r.photo_path, self.config.max_pixels)  # the limit, and a clear decoding error
        mask, source = self.mask_of(r, photo.shape[1::-1])
        # not `progress or ...`: a gr.Progress has a __len__ (0 until it tracks an iterable), so it is falsy
        report = progress if progress is not None else (lambda *a, **k: None)
        report(0.02, desc="loading the model")
        editor = self.editor(r.model)
        total = max(1, int(options.steps * options.strength))
        report(0.05, desc="finding the faces")
        try:
            with _run_lock(editor):
                prepared = editor.helper.prepare(photo, mask, faces=choices.faces, min_face=choices.min_face)
                (result,) = editor.edit_batch(
                    [prepared],
                    prompt,
                    options=options,
                    on_step=lambda i: report((i, total), desc=f"denoising step {i}/{total}", unit="steps"),
                    **asdict(choices),
                )
        except (EditError, ImageError, FaceError, UnsafeResultError) as e:  # they name the photo "<array>"
            raise type(e)(str(e).replace("<array>", name)) from None
        report(0.98, desc="writing the PNG")
        result.provenance.update(source=name, mask=source)
        choice = release_uri(self.config.model if r.model in (None, "") else r.model)  # as model_dir took it
        if choice.startswith(("models:/", "runs:/")):  # a registered release (the only other choices)
            result.provenance["release"] = choice
        out = self.workdir / uuid.uuid4().hex / f"{Path(name).stem}-facepaint.png"
        out.parent.mkdir(parents=True)
        result.save(out)
        edited = [f.index for f in result.faces]
        what = (
            "the masked region, as one face,"
            if edited == [None]
            else "face(s) " + ", ".join(str(i) for i in edited if i is not None)
        )
        status = f"Edited {what} of **{name}** in {time.perf_counter() - started:.1f} s (seed {choices.seed})."
        status += "".join(f"\n\nNote: {n.replace('<array>', name)}" for n in result.notes)
        return (shrink(result.original), shrink(result.image)), str(out), result.provenance, status

    def mask_of(self, r: EditRequest, size: tuple[int, int]) -> tuple[np.ndarray | None, str]:
        """(M at the photo's size or None for BiSeNet's, where it came from) for a request."""
        from_editor = editor_mask(r.editor_value, size, r.start)
        if from_editor is not None:
            return from_editor
        if r.mask_path is not None:
            image, mask_name, _ = read_upload(r.mask_path, self.config.max_pixels, "mask")
            mask = fit_mask(grey_mask(image), size, f"mask {mask_name}")
            if not mask.any():
                raise EditError(f"mask {mask_name} is empty: the face must be white")
            return mask, f"upload {mask_name}"
        if self.auto_mask is not None:
            return None, self.auto_mask
        raise EditError(
            "no face mask: the automatic mask is unavailable (see the line above the photo). Paint the face white "
            "in the mask editor, or upload a mask image."
        )


@dataclass
class EditRequest:
    """What the page sends to edit: one field per input component, in the order of the `/edit` API endpoint
    (`build_app` lays the components out under these names)."""

    photo_path: str | None  # the uploaded photo's path on the server
    editor_value: dict | None  # the mask editor's value (background, layers)
    mask_path: str | None  # an uploaded mask image's path
    faces: str | None
    min_face: float | None
    prompt: str | None
    negative_prompt: str | None
    seed: float | None
    steps: float | None
    guidance_scale: float | None
    strength: float | None
    blend: bool
    watermark: bool
    start: MaskStart | None = None  # the mask the app put into the mask editor (a gr.State)
    model: str | None = None  # one of the app's `choices` (None: --model's)

    def options(self) -> dict:
        """The edit's options as the page gave them (for `edit_options`)."""
        given = {
            "faces": (self.faces or "all").strip(),
            "min_face": self.min_face,
            "negative_prompt": (self.negative_prompt or "").strip(),
            "seed": self.seed,
            "steps": self.steps,
            "guidance_scale": self.guidance_scale,
            "strength": self.strength,
            "blend": bool(self.blend),
            "watermark": bool(self.watermark),
        }
        for name in ("min_face", "seed", "steps", "guidance_scale", "strength"):
            if given[name] is None:
                raise ValueError(f"{name} is missing: give a number")
        return given


EDIT_INPUTS = [f.name for f in dataclasses.fields(EditRequest)]  # the /edit endpoint's parameters, in order


# ------------------------------------------------------------------------------------------ the page


def build_app(
    model: str = DEFAULT_MODEL,
    *,
    bisenet_weights=None,
    detector_weights=None,
    face_models=None,
    device: str = "auto",
    max_pixels: int = MAX_PIXELS,
    max_file_size: str | int = MAX_FILE_SIZE,
    examples: str | None = DEMO_PHOTOS,
    workdir=None,
    safety_checker: bool = True,
):
    """The Gradio Blocks of the app (not launched; `launch` queues and serves it). Raises ValueError for a
    model that is not there. `safety_checker` False: the operator turned the base model's checker off."""
    import gradio as gr

    app = App(
        AppConfig(
            model=str(model),
            bisenet_weights=None if bisenet_weights is None else str(bisenet_weights),
            detector_weights=None if detector_weights is None else str(detector_weights),
            face_models=None if face_models is None else str(face_models),
            device=device,
            max_pixels=max_pixels,
            max_file_size=max_file_size,
            examples=examples,
            workdir=None if workdir is None else str(workdir),
            safety_checker=safety_checker,
        )
    )
    with gr.Blocks(title="facepaint", analytics_enabled=False, fill_width=True) as demo:
        wire(app, layout(app))
    demo.facepaint = app  # the handlers' object (tests, `launch`)
    return demo


def layout(app: App) -> dict:
    """The page's components, by name: every field of `EditRequest`, the outputs and the buttons. At 1400x1000 the
    photo, the mask editor and the result (with the prompt, the Edit button and the status under it) are in one
    view; the options are in an accordion under the Edit button."""
    import gradio as gr

    ui = {}
    checker = "" if app.config.safety_checker else " The base model's safety checker is off (--no-safety-checker)."
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            gr.Markdown(
                "## facepaint\nEdit the faces in a photo with a text prompt: only the face is regenerated, every "
                f"pixel outside its soft mask stays as it was. Model: `{app.model}`. Photos up to "
                f"{app.config.max_pixels / 1e6:g} megapixels and {app.config.max_file_size}." + checker
            )
        with gr.Column(scale=1, min_width=260):
            ui["model"] = gr.Dropdown(
                choices=app.choices,
                value=app.choices[0],
                label="Model",
                info=f"--model, or a registered release ({app.releases_note})",
                interactive=len(app.choices) > 1,
                elem_id="model",
            )
    if app.demo_notice:
        gr.Markdown(f"**Demo model.** {app.demo_notice[0].upper()}{app.demo_notice[1:]}.", elem_id="demo-notice")
    gr.Markdown(app.mask_notice, elem_id="mask-notice")
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=280):
            ui["photo_path"] = raw_upload(
                gr.Image(
                    label="Photo",
                    type="filepath",
                    image_mode=None,
                    sources=["upload", "clipboard"],
                    height=290,
                    elem_id="photo",
                )
            )
            ui["overlay"] = gr.Image(
                label="Faces found (numbered)", interactive=False, format="png", height=290, elem_id="overlay"
            )
            ui["faces_found"] = gr.JSON(label="Faces found", visible=False)
            ui["start"] = gr.State(None)  # the MaskStart of the mask the app put into the mask editor
        with gr.Column(scale=4, min_width=420):
            gr.Markdown(
                "**Face mask**: paint the face white with the brush, remove with the eraser; or upload a **mask "
                "image** (white = face, the photo's aspect ratio) below the editor to start from it.",
                elem_id="mask-help",
            )
            white = ("#ffffff", 0.6)
            ui["editor_value"] = readable_layers(
                gr.ImageEditor(
                    label="Face mask",
                    type="numpy",
                    image_mode="RGBA",
                    format="png",
                    sources=[],
                    transforms=[],
                    brush=gr.Brush(colors=[white], default_color=white, color_mode="fixed"),
                    layers=False,
                    canvas_size=(EDITOR_CANVAS, EDITOR_CANVAS),
                    height=580,
                    elem_id="mask-editor",
                )
            )
            ui["mask_path"] = raw_upload(
                gr.Image(
                    label="Mask image",
                    type="filepath",
                    image_mode=None,
                    sources=["upload"],
                    height=130,
                    elem_id="mask-file",
                )
            )
        with gr.Column(scale=3, min_width=420):
            ui["result"] = gr.ImageSlider(
                label="Before and after",
                format="png",
                interactive=False,
                height=400,
                buttons=["fullscreen"],  # no download of an unsigned PNG: "Edited PNG" below is the signed file
                elem_id="result",
            )
            ui["prompt"] = gr.Textbox(
                label="Prompt", placeholder="a photo of a smiling woman with blond hair", lines=2, elem_id="prompt"
            )
            ui["run"] = gr.Button("Edit", variant="primary", elem_id="run")
            ui["status"] = gr.Markdown(
                "Upload a photo (or pick a demo portrait) to start.",
                label="Status",
                container=True,
                min_height=100,  # room for the progress bar and its text over the last message
                elem_id="status",
            )
            ui["result_file"] = gr.File(label="Edited PNG (signed, with its provenance)", elem_id="result-file")
            with gr.Accordion("Options", open=False, elem_id="options"):
                options_panel(ui)
            with gr.Accordion("Provenance", open=False, elem_id="provenance-panel"):
                ui["provenance"] = gr.JSON(label="Provenance", elem_id="provenance")
    if app.examples:
        gr.Examples([[p] for p in app.examples], inputs=[ui["photo_path"]], label="Demo portraits")
    return ui


def options_panel(ui: dict) -> None:
    """The edit's options, their defaults `SamplingOptions`' and `EditChoices`'."""
    import gradio as gr

    ui["negative_prompt"] = gr.Textbox(label="Negative prompt", value=SAMPLING.negative_prompt, elem_id="negative")
    with gr.Row():
        ui["faces"] = gr.Textbox(
            label="Faces to edit",
            value=CHOICES.faces,
            info="all, largest, or indices like 0,2 (as numbered on the faces found)",
            elem_id="faces",
        )
        ui["min_face"] = gr.Number(label="Smallest face (px)", value=CHOICES.min_face, elem_id="min-face")
    with gr.Row():
        ui["seed"] = gr.Number(label="Seed", value=CHOICES.seed, precision=None, elem_id="seed")
        ui["dice"] = gr.Button("Random seed", size="sm", elem_id="random-seed")
    with gr.Row():
        ui["steps"] = gr.Number(label="Steps", value=SAMPLING.steps, elem_id="steps", info=f"1 to {MAX_STEPS}")
        ui["guidance_scale"] = gr.Number(label="Guidance scale", value=SAMPLING.guidance_scale, elem_id="guidance")
    ui["strength"] = gr.Slider(0.01, 1.0, value=SAMPLING.strength, step=0.01, label="Strength", elem_id="strength")
    with gr.Row():
        ui["blend"] = gr.Checkbox(label="Pixel-level blending", value=CHOICES.blend, elem_id="blend")
        ui["watermark"] = gr.Checkbox(label="Invisible watermark", value=CHOICES.watermark, elem_id="watermark")


SHOW_RESULT = """() => {
  const result = document.querySelector('#result');
  const box = result && result.getBoundingClientRect();
  if (box && (box.top < 0 || box.bottom > window.innerHeight)) {
    result.scrollIntoView({block: 'start', behavior: 'smooth'});
  }
}"""


def wire(app: App, ui: dict) -> None:
    """The page's events, each an API endpoint (/detect, /load_mask, /random_seed, /edit) but the model
    dropdown's, whose change detects again (another model may mask differently: its resolution).

    Every message goes to the one status area (no pop-ups). The API's `/edit` raises gr.Error for a client; the
    page's Edit button runs the same edit through its own listener, which says the error in the status instead
    (a raised error would leave an "Error" badge on every output). Progress (the denoising steps) shows on the
    status and on the result while an edit runs."""
    import inspect

    import gradio as gr

    def detect(photo_path, faces, min_face, model):
        try:
            return app.detect(photo_path, faces, min_face, model)
        except Exception as e:  # the page shows the reason; the previous photo's outputs are cleared
            return None, None, [], f"**Cannot use this photo**: {message(e, photo_path)}", None

    def load_mask(photo_path, mask_path):
        try:
            value, status, start = app.load_mask(photo_path, mask_path)
        except Exception as e:  # the unusable mask image is removed, the editor keeps what it had
            return gr.skip(), None, f"**Cannot use this mask**: {message(e, photo_path, mask_path)}", gr.skip()
        return value, gr.skip(), status, start  # the mask image stays where it was put

    def edit(*values):  # EDIT_INPUTS' values, then Gradio's progress tracker (the signature below): the API's
        *fields, progress = values
        request = EditRequest(*fields)
        try:
            return app.edit(request, progress=progress)
        except Exception as e:
            text = message(e, request.photo_path, request.mask_path)
            raise gr.Error(text, title="Cannot edit", print_exception=False) from None

    def edit_in_page(*values):  # the Edit button's: an error is the status's message, the last result stays
        *fields, progress = values
        request = EditRequest(*fields)
        try:
            return app.edit(request, progress=progress)
        except Exception as e:
            text = message(e, request.photo_path, request.mask_path)
            return gr.skip(), gr.skip(), gr.skip(), f"**Cannot edit**: {text}"

    # Gradio names the API's parameters after the handler's and passes its tracker to a `gr.Progress()` default:
    # (*values) alone would make them param_0..param_14, (progress=gr.Progress(), *values) too
    named = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in EDIT_INPUTS]
    for handler in (edit, edit_in_page):
        tracker = inspect.Parameter("progress", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=gr.Progress())
        handler.__signature__ = inspect.Signature([*named, tracker])

    def random_seed():
        return random.randint(0, MAX_SEED)

    found = [ui[k] for k in ("overlay", "editor_value", "faces_found", "status", "start")]
    detect_inputs = [ui[k] for k in ("photo_path", "faces", "min_face", "model")]
    ui["photo_path"].change(detect, detect_inputs, found, api_name="detect", show_progress_on=[ui["status"]])
    # another photo uploaded: a mask image of the previous one no longer applies (not on `change`, which the
    # page also fires after the upload's value comes back, that is after a mask image may have been put there)
    for event in (ui["photo_path"].upload, ui["photo_path"].clear):
        event(lambda: None, None, ui["mask_path"], api_name=False, queue=False, show_progress="hidden")
    ui["model"].change(detect, detect_inputs, found, api_name=False, show_progress_on=[ui["status"]])
    mask_outputs = [ui[k] for k in ("editor_value", "mask_path", "status", "start")]
    ui["mask_path"].upload(
        load_mask,
        [ui["photo_path"], ui["mask_path"]],
        mask_outputs,
        api_name="load_mask",
        show_progress_on=[ui["status"]],
    )
    ui["dice"].click(random_seed, None, ui["seed"], api_name="random_seed")
    outputs = [ui[k] for k in ("result", "result_file", "provenance", "status")]
    inputs = [ui[name] for name in EDIT_INPUTS]
    progress_on = [ui["status"], ui["result"]]
    ui["run"].click(edit_in_page, inputs, outputs, api_name=False, show_progress_on=progress_on)
    # the result, its progress and the status brought into view at once (the options may be open, the page scrolled)
    ui["run"].click(None, None, None, js=SHOW_RESULT, api_name=False, queue=False)
    # the API's /edit (gradio_client): the same inputs and outputs, on a trigger the page does not show
    api_trigger = gr.Button(visible=False, elem_id="edit-api")
    api_trigger.click(edit, inputs, outputs, api_name="edit", show_progress_on=progress_on)


# Instances with their own preprocess, not subclasses: Gradio writes a .pyi stub beside the module that
# defines a component subclass.
def raw_upload(component):
    """A gr.Image that hands the handler the uploaded file as it is (decoded by `load_rgb`, which says why
    a file cannot be used), instead of opening it with PIL first."""
    import gradio as gr

    def preprocess(payload):
        if payload is None:
            return None
        if payload.path is None:
            raise gr.Error("the upload has no file", print_exception=False)
        return str(payload.path)

    component.preprocess = preprocess
    return component


def editor_images(component, payload) -> list[tuple[str, object]]:
    """(what, a file path or bytes) of every image in a gr.ImageEditor's payload (background, layers, composite),
    as sent: uploaded files, or the bytes of the component's blob storage; before Gradio decodes any."""
    if payload is None:
        return []
    source = payload
    if getattr(payload, "id", None) is not None:
        source = component.blob_storage.get(payload.id)
        if source is None:
            return []
    found = [("background", source.background), ("composite", source.composite)]
    found += [(f"layer {i}", layer) for i, layer in enumerate(source.layers or [])]
    return [(what, bytes(f) if isinstance(f, memoryview) else getattr(f, "path", f)) for what, f in found if f]


def readable_layers(component):
    """A gr.ImageEditor whose unreadable layers are a message, not a server error."""
    import gradio as gr

    inner = component.preprocess

    def preprocess(payload):
        for what, image in editor_images(component, payload):  # the limits, from each image's header
            try:
                check_image_file(image)
            except ImageError as e:
                raise gr.Error(f"the mask editor's {what} cannot be used: {e}", print_exception=False) from None
        try:
            return inner(payload)
        except Exception as e:
            raise gr.Error(f"the mask editor's image cannot be read: {e}", print_exception=False) from None

    component.preprocess = preprocess
    return component


def in_page_terms(text: str) -> str:
    """A message of the library said in the page's terms: the faces are numbered on the page's "Faces found"
    image, not by a shell command."""
    return re.sub(
        r"\(run `facepaint detect [^`]*` to see them\)",
        '(the faces found are numbered on the "Faces found" image; "Faces to edit" is under Options)',
        text,
    )


def message(e: Exception, *paths) -> str:
    """What the page says about an error: its message for expected ones, its type too for others (whose
    traceback goes to the server's log only)."""
    import gradio as gr

    if isinstance(e, USER_ERRORS):
        return in_page_terms(_plain(e, *paths))
    if isinstance(e, gr.Error):
        return e.message
    log.error("unexpected error", exc_info=e)
    return f"{type(e).__name__}: {_plain(e, *paths)} (the server's log has the details)"


def launch(
    model: str = DEFAULT_MODEL,
    *,
    host: str = HOST,
    port: int = PORT,
    share: bool = False,
    concurrency: int = 1,
    bisenet_weights=None,
    detector_weights=None,
    face_models=None,
    device: str = "auto",
    max_pixels: int = MAX_PIXELS,
    max_file_size: str | int = MAX_FILE_SIZE,
    examples: str | None = DEMO_PHOTOS,
    block: bool = True,
    safety_checker: bool = True,
):
    """Build, queue and serve the app (blocking unless `block` is False: then returns the Blocks). The
    editor starts loading at once, in the background, so the first request does not wait for all of it."""
    if concurrency < 1:
        raise ValueError(f"--concurrency must be at least 1, got {concurrency}")
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be at least 1, got {max_pixels}")
    demo = build_app(
        model,
        bisenet_weights=bisenet_weights,
        detector_weights=detector_weights,
        face_models=face_models,
        device=device,
        max_pixels=max_pixels,
        max_file_size=max_file_size,
        examples=examples,
        safety_checker=safety_checker,
    )
    app: App = demo.facepaint
    threading.Thread(target=_preload, args=(app,), daemon=True).start()
    from starlette.middleware import Middleware

    demo.queue(default_concurrency_limit=concurrency, max_size=64)
    demo.launch(
        server_name=host,
        server_port=port,
        share=share,
        max_file_size=max_file_size,
        allowed_paths=[str(Path(p).parent) for p in app.examples[:1]],
        prevent_thread_lock=not block,
        ssr_mode=False,
        quiet=not block,
        app_kwargs={"middleware": [Middleware(LocalFilesOnly)]},
    )
    return demo


class LocalFilesOnly:
    """ASGI middleware: Gradio's file route (`/gradio_api/file=...`) asked for an http(s) URL is refused (403)
    before Gradio fetches it itself (safehttpx, which for a host resolving to a private or loopback address asks
    Google's DNS-over-HTTPS): the app serves its own files and makes no outbound request for a visitor."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and "/file=" in scope["path"]:  # the path is percent-decoded
            target = scope["path"].split("/file=", 1)[1].lstrip("/").lower()
            if target.startswith(("http:", "https:")):
                from starlette.responses import PlainTextResponse

                refusal = PlainTextResponse("File not allowed: this app serves its own files only.", status_code=403)
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _preload(app: App) -> None:
    try:
        app.editor()
    except (ModelLoadError, FacepaintError, OSError, ValueError) as e:  # shown again on the first request
        log.warning("the editor could not be loaded: %s", e)
