"""One photo's round trip through the model, the way facexlib's FaceRestoreHelper does it for GFPGAN:

    photo -> `FaceHelper.prepare`: detect (facepaint.method.detection) -> select (all | largest | indices,
             narrower than min_face skipped with a warning) -> align each face to the training data's framing at
             the model's resolution (facepaint.method.alignment) -> M per face: automatic (`mask_backend`:
             BiSeNet on the aligned crop, or the face mesh's outline), or the user's mask, region by region
             (`_user_jobs`) -> `Prepared`
          -> [the editor generates each crop]
          -> `FaceHelper.paste`: each decoded crop and its soft mask through the inverse transform onto the
             photo, composited (`composite`) -> the edited photo, M_soft and M at full resolution

Why it is built this way:
- Faces are aligned and edited at the model's resolution because the model was trained on CelebA-HQ faces,
  upright and filling the frame; the rest of a large photo never goes through the VAE.
- The automatic mask is BiSeNet's (the paper's) when its weights are there, else the `mesh` mask: MediaPipe's
  face mesh outline (facepaint.method.mediapipe), which needs no weights to be supplied. Each face keeps only
  the pixels nearer to it than to another face (`territory`).
- The user's mask is the authority where it is given: every pixel it marks is edited, and nothing else. It is
  split into connected regions, never within one: a region goes to the detected face whose box holds most of
  it, and that face's crop is widened until it holds the whole region; a region over no detected face (or
  near such regions) is edited in its own padded square, with a warning naming it. `faces=` selects faces: a
  region over an unselected face is left with a warning, and a mask over none of the selected faces is an error.
- M_soft is made in crop space (facepaint.method.blend, the sigma of the sampling options at the model's
  resolution) and warped back, so it is exactly 0 outside the warped crop. Where faces are close and their
  soft masks overlap, each pixel takes the face whose soft mask is largest there (ties: the lower index),
  blended against the original, so the result does not depend on the order faces are processed in. Every
  pixel where all soft masks are 0 is copied from the input (`np.where`, bit-identical).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from dataclasses import dataclass

import numpy as np

from facepaint.common.checks import check_number
from facepaint.common.errors import FacepaintError
from facepaint.common.images import ImageError, load_rgb, read_photo, resize_binary
from facepaint.method import alignment
from facepaint.method.blend import pixel_blend, soft_mask
from facepaint.method.detection import Face, FaceError, make_detector, select_faces
from facepaint.method.face_options import (  # re-exported
    DETECTORS,
    MASK_BACKENDS,
    MAX_MIN_FACE,
    MAX_PADDING,
    MIN_FACE,
    PADDING,
    parse_selection,
)
from facepaint.method.masks import (
    BISENET_CLASSES,
    BISENET_SIZE,
    BiSeNetParser,
    default_bisenet_path,
    face_crop,
    parts_union_from_labels,
)
from facepaint.method.models import ModelLoadError

MASK_HINT = (
    "For `facepaint edit`, give the weights with --bisenet-weights PATH, use the face mesh's mask "
    "(--mask-backend mesh: no weights to supply), or pass a face mask with --mask PATH (white = face; `mask=` "
    "in the Python API)."
)
CROP_MARGIN = 0.04  # a face's crop is widened until its mask region is this far (x the crop) inside its edges
STRAY = 0.25  # a mask region over no face box, inside a face's crop and of at most this x its width^2 pixels,
# is edited with that face (a stroke over the hair, a dab beside the chin); a missed face's region is larger
GROUP_REACH = 1.0  # a small mask region over no face this close (x a larger one's size) is edited with it


class EditError(FacepaintError):
    """A photo that cannot be edited (no face, a mask that does not fit it); the message names the photo."""


def fit_mask(mask: np.ndarray, size: tuple[int, int], what: str = "mask") -> np.ndarray:
    """A mask array (bool, or float in [0, 1]) of any size with the photo's aspect ratio, as M for a photo
    of size = (width, height)."""
    mask = np.asarray(mask)
    if mask.ndim != 2 or 0 in mask.shape:
        raise ValueError(f"{what} must be a 2-D array (H, W), got shape {mask.shape}")
    if mask.dtype != bool and mask.dtype.kind not in "uif":
        raise ValueError(f"{what} must hold bools or numbers (white = face), got dtype {mask.dtype}")
    if mask.dtype.kind == "f" and not np.isfinite(mask).all():
        raise ValueError(f"{what} holds NaN or infinite values: give 0 (keep) to 1 (edit) per pixel")
    (mh, mw), (w, h) = mask.shape, size
    if abs(mw * h - mh * w) > 0.01 * max(mw * h, mh * w):
        raise EditError(f"{what} is {mw}x{mh} but the photo is {w}x{h}: the mask must have the photo's aspect ratio")
    return resize_binary(mask, size)


def load_mask(path: str | os.PathLike, size: tuple[int, int]) -> np.ndarray:
    """A face mask image (any size with the photo's aspect ratio, any mode; white = face) as M for a photo
    of size = (width, height)."""
    try:
        grey = np.asarray(load_rgb(path).image.convert("L"), dtype=np.float32) / 255.0
    except ImageError as e:
        raise ImageError(f"mask {path}: {e}") from None
    return fit_mask(grey, size, f"mask {path}")


@dataclass(eq=False)
class FaceJob:
    """One face of a photo, ready for the model: where it is, how it was aligned, its crop and mask."""

    index: int | None  # the detected face's index (left to right), None for a face given by the mask alone
    face: Face | None  # the detection (None: the mask alone)
    aligned_by: (
        str  # "landmarks", "box" (a box-only detector's roll), "box+eyes" (roll from the parser's eyes), "mask"
    )
    matrix: np.ndarray  # 2x3 similarity photo -> crop
    image: np.ndarray  # uint8 R x R x 3: the aligned crop
    crop_mask: np.ndarray  # bool R x R: M in the crop
    beta: float  # the face ratio mean(crop_mask)
    photo_mask: tuple | None = None  # (region, bool array): the user's mask of this face in photo pixels
    prompt: str | None = None  # a per-face prompt given to `prepare`
    mask_from: str = ""  # where M came from: "bisenet", "mesh", or the user's mask (and which region of it)


@dataclass(eq=False)
class Prepared:
    """A photo ready for the model (`FaceEditor.prepare`): the photo, the faces found in it and, for each face
    to edit, its aligned crop and mask at the model's resolution. `FaceEditor.edit_batch` takes these in place
    of photos."""

    photo: np.ndarray  # uint8 H x W x 3: the input as decoded
    name: str  # the photo's name in messages ("<array>" for an array)
    notes: list[str]  # decoding, detection and selection notes
    source: str  # where M came from: "bisenet", "mesh", the mask's path, or "array"
    detector: str | None  # the detector that found `faces` (None: not run)
    faces: list[Face]  # every face found, in index order
    jobs: list[FaceJob]  # the faces to edit

    @property
    def size(self) -> tuple[int, int]:
        return self.photo.shape[1], self.photo.shape[0]


class FaceHelper:
    """Detects, selects, aligns and masks the faces of one photo at the model's `resolution` (`prepare`),
    and pastes the edited crops back (`paste`). `parts`: the face parts whose union is M (the artifact's);
    `padding`: the crop margin of a face given by a mask alone; `detector`, `detector_weights`: the face
    detector (`detection.make_detector`); `bisenet_weights`: the face parser's (None: facexlib's cache or
    download); `mask_backend`: the automatic mask (MASK_BACKENDS); `face_models`: the folder of MediaPipe's
    model files (None: the cache, fetched once). The detector and the mask models are loaded on first use, on
    `device`."""

    def __init__(
        self,
        resolution: int,
        parts,
        *,
        padding: float = PADDING,
        detector: str = "auto",
        detector_weights=None,
        bisenet_weights=None,
        mask_backend: str = "auto",
        face_models=None,
        device: str = "auto",
    ):
        check_number("padding", padding, 0, MAX_PADDING)
        if detector not in DETECTORS:
            raise ValueError(f"detector must be one of {DETECTORS}, got {detector!r}")
        if mask_backend not in MASK_BACKENDS:
            raise ValueError(f"mask_backend must be one of {MASK_BACKENDS}, got {mask_backend!r}")
        self.resolution, self.parts, self.padding = resolution, tuple(parts), padding
        self.detector_kind, self.detector_weights, self.bisenet_weights = detector, detector_weights, bisenet_weights
        self.mask_choice, self.face_models = mask_backend, face_models
        self.device = str(device)
        self._parser = self._detector = self._mesh = None

    @property
    def mask_backend(self) -> str:
        """The automatic mask that runs: "bisenet" (the paper's) when chosen, or with auto when its weights are
        given or in facexlib's cache; else "mesh"."""
        if self.mask_choice != "auto":
            return self.mask_choice
        return "bisenet" if self.bisenet_weights or default_bisenet_path().is_file() else "mesh"

    def face_mesh(self):
        """MediaPipe's face mesh (the `mesh` mask of faces whose detector gave no outline), loaded on first use."""
        if self._mesh is None:
            from facepaint.method import mediapipe

            self._mesh = mediapipe.FaceMesh(mediapipe.model_dir(self.face_models))
        return self._mesh

    def face_parser(self) -> BiSeNetParser:
        """The BiSeNet face parser, loaded on first use; missing weights say how to pass a mask instead."""
        if self._parser is None:
            try:
                self._parser = BiSeNetParser(self.bisenet_weights, self.device)
            except ModelLoadError as e:
                raise ModelLoadError(f"{e} {MASK_HINT}") from e
        return self._parser

    def face_detector(self):
        """The face detector (`detection.make_detector`), built on first use."""
        if self._detector is None:
            self._detector, notes = make_detector(
                self.detector_kind, self.detector_weights, self.device, self.face_models
            )
            for note in notes:
                warnings.warn(note, stacklevel=2)
        return self._detector

    def detect(self, image, min_face: float = MIN_FACE) -> tuple[list[Face], str]:
        """(the faces in a photo (path, bytes, PIL image or array), in the index order of `faces=`, the
        detector's name)."""
        photo = image if isinstance(image, np.ndarray) and image.ndim == 3 else read_photo(image)[0]
        det = self.face_detector()
        return det.detect(photo, min_face), det.name

    # 1. photo -> faces to edit
    def prepare(self, image, mask=None, *, faces="all", min_face: float = MIN_FACE, prompts=None) -> Prepared:
        """Read the photo, find its faces, select them (`faces`: "all", "largest" or indices; faces narrower
        than `min_face` px are skipped with a warning naming them) and align each to the model's framing.
        M per face is automatic (`mask` None: `mask_backend`) or the user's mask (a path or an array of the
        photo's aspect ratio, white = the faces to edit), which is the authority: every region it marks is
        edited (`_user_jobs`). `prompts`: one per selected face, in order (None: the edit's prompt for all).
        Raises ImageError, EditError, FaceError or ValueError for a photo that cannot be edited, before any
        generation."""
        from facepaint.method.generate import per_image  # the editor's module: loaded with it

        photo, name, notes = read_photo(image)
        h, w = photo.shape[:2]
        check_number("min_face", min_face, 0, MAX_MIN_FACE)
        parse_selection(faces)  # a malformed selection fails before detection
        if mask is None:
            m, source = None, self.mask_backend
            if source == "bisenet":
                self.face_parser()  # missing weights fail before detection
            else:
                self.face_mesh()
        elif isinstance(mask, (str, os.PathLike)):
            m, source = load_mask(mask, (w, h)), str(mask)
        else:
            m, source = fit_mask(mask, (w, h)), "array"
        if m is not None and not m.any():
            raise EditError(
                f"no face found in {name}: the mask ({source}) is empty; pass a mask with the face in white"
            )
        found, detector = self.detect(photo, min_face)
        if m is not None:
            jobs = self._user_jobs(photo, m, found, faces, min_face, name, source, notes)
            if prompts is not None:
                given = per_image(prompts, len(jobs), "prompts (one per edited face)", str)
                for job, prompt in zip(jobs, given):
                    job.prompt = prompt
            return Prepared(photo, name, notes, source, detector, found, jobs)
        if not found:
            raise EditError(
                f"no face found in {name} (detector {detector}, faces of at least {min_face:g} px); "
                f"pass a mask with the face in white (--mask), or lower --min-face"
            )
        chosen, skipped = select_faces(found, faces, min_face, name)
        face_prompts = [None] * len(chosen)
        if prompts is not None:  # one per selected face, in selection order, before faces are skipped for size
            order, _ = select_faces(found, faces, 0, name)
            given = per_image(prompts, len(order), "prompts (one per selected face)", str)
            face_prompts = [given[order.index(i)] for i in chosen]
        for message in skipped:  # a warning (the CLI prints "warning: ..."), not only a note in the result
            warnings.warn(f"{name}: {message}", stacklevel=3)
        before = len(notes)
        jobs = []
        for i, prompt in zip(chosen, face_prompts):
            job = self._face_job(photo, found, i, notes, photo_mask=None)
            if job is not None:
                job.prompt = prompt
                jobs.append(job)
        if not jobs:
            why = "; ".join(skipped + notes[before:]) or "no face selected"
            raise EditError(f"no face to edit in {name}: {why}")
        return Prepared(photo, name, notes, source, detector, found, jobs)

    def _user_jobs(self, photo, m, found: list[Face], faces, min_face: float, name, source, notes) -> list[FaceJob]:
        """The faces a user's mask edits. Each connected region of `m` goes to the detected face whose box holds
        most of it (none: it is a region over no face); a face's crop holds all of its regions. A stray stroke
        over no face box (inside a face's crop, at most STRAY x its width^2 pixels) goes with that face; other
        regions over no face (with the small ones near them, `group_regions`) are edited in their own padded
        square, with a warning naming them.
        With `faces` a selection: a region over an unselected face is left with a warning, and a mask over
        none of the selected faces is an EditError. A face narrower than `min_face` that the mask marks is
        edited, with a warning."""
        import cv2

        n, labels, stats, _ = cv2.connectedComponentsWithStats(m.astype(np.uint8), connectivity=8)
        h, w = m.shape
        owner = np.full(n, -1)
        if found:
            counts = np.zeros((n, len(found)), np.int64)
            for j, f in enumerate(found):
                x0, y0 = max(0, int(f.box[0])), max(0, int(f.box[1]))
                x1, y1 = min(w, int(np.ceil(f.box[2]))), min(h, int(np.ceil(f.box[3])))
                if x1 > x0 and y1 > y0:
                    counts[:, j] = np.bincount(labels[y0:y1, x0:x1].ravel(), minlength=n)
            counts[0] = 0
            has = counts.max(1) > 0
            owner[has] = counts[has].argmax(1)
        sel = parse_selection(faces)
        chosen = select_faces(found, faces, 0, name)[0] if found else []
        where = lambda c: [int(v) for v in (*stats[c, :2], *(stats[c, :2] + stats[c, 2:4]))]  # noqa: E731
        per_face, loose, left = {i: [] for i in chosen}, [], []
        for c in range(1, n):
            j = int(owner[c])
            if j < 0:
                loose.append(c)
            elif j in per_face:
                per_face[j].append(c)
            else:
                left.append(c)
        if loose and per_face:  # a stray stroke inside a selected face's crop is edited with that face
            frames = {i: alignment.align(found[i], self.resolution) for i in per_face}
            for c in list(loose):
                x, y, cw, ch = (float(v) for v in stats[c, :4])
                corners = np.array([[x, y, 1], [x + cw, y, 1], [x, y + ch, 1], [x + cw, y + ch, 1]])
                near = []
                for i, matrix in frames.items():
                    uv = corners @ matrix.T
                    lo, hi = CROP_MARGIN * self.resolution, (1 - CROP_MARGIN) * self.resolution
                    small = stats[c, 4] <= STRAY * found[i].width ** 2
                    if small and (uv >= lo).all() and (uv <= hi).all():
                        near.append((float(np.abs(uv - self.resolution / 2).max()), i))
                if near:
                    per_face[min(near)[1]].append(c)
                    loose.remove(c)
        if sel != "all" and not any(per_face.values()):
            picked = ", ".join(f"{i} at {[round(v) for v in found[i].box]}" for i in chosen) or "none"
            raise EditError(
                f"the mask ({source}) covers none of the selected faces of {name} (faces={sel!r}: {picked}); "
                "select the faces the mask covers, or paint the selected ones"
            )
        for c in left:
            warnings.warn(
                f"{name}: the mask's region at {where(c)} covers face {int(owner[c])}, which faces={sel!r} does not "
                "select: left unedited",
                stacklevel=4,
            )
        jobs = []
        for i, comps in per_face.items():
            if not comps:
                notes.append(f"face {i} at {[round(v) for v in found[i].box]} is not covered by the mask: left alone")
                continue
            face = found[i]
            if face.width < min_face:
                warnings.warn(
                    f"{name}: face {i} is {face.width:.0f} px wide, under --min-face {min_face:g}; edited because "
                    "the mask marks it",
                    stacklevel=4,
                )
            own = _regions(labels, stats, comps)
            job = self._face_job(photo, found, i, notes, photo_mask=own)
            job.mask_from = f"{source} ({len(comps)} region{'s' if len(comps) > 1 else ''})"
            jobs.append(job)
        for group in group_regions(stats, loose):
            own = _regions(labels, stats, group)
            x0, y0 = stats[group, :2].min(0)
            x1, y1 = (stats[group, :2] + stats[group, 2:4]).max(0)
            job = self.mask_job(photo, own, name, notes)
            job.mask_from = f"{source} (region at {[int(x0), int(y0), int(x1), int(y1)]})"
            why = f"no face of at least {min_face:g} px was detected" if not found else "it covers no detected face"
            warnings.warn(
                f"{name}: the mask's region at {[int(x0), int(y0), int(x1), int(y1)]} is edited in its own crop: "
                f"{why}",
                stacklevel=4,
            )
            jobs.append(job)
        return jobs

    def prepare_all(self, images, masks, *, faces="all", min_face: float = MIN_FACE) -> list[Prepared]:
        """`prepare` for each photo and its mask (None, a path or an array); an item that is already a
        `Prepared` photo is taken as it is (its mask must be None). Errors name "image i of N" when N > 1."""
        n, out = len(images), []
        for i, (image, mask) in enumerate(zip(images, masks)):
            if isinstance(image, Prepared):
                if mask is not None:
                    raise ValueError(f"image {i} of {n} is already prepared (its mask is chosen); give mask None")
                out.append(image)
                continue
            try:
                out.append(self.prepare(image, mask, faces=faces, min_face=min_face))
            except (ImageError, EditError, FaceError, ValueError) as e:
                if n == 1:
                    raise
                raise type(e)(f"image {i} of {n}: {e}") from e
        return out

    def _face_job(self, photo, found: list[Face], i: int, notes: list[str], photo_mask=None) -> FaceJob | None:
        """Align face `i` and find its mask: the user's (`photo_mask`, photo-size bool: the crop is widened until
        it holds all of it) or the automatic one; None (with a note) when the automatic one is empty."""
        res, face = self.resolution, found[i]
        aligned_by = "landmarks" if face.landmarks is not None else "box"
        matrix = alignment.align(face, res)
        if photo_mask is not None:
            matrix, widened = hold(matrix, photo_mask, res)
            if widened:
                notes.append(f"face {i}'s crop is widened {widened:.2f}x to hold the whole mask region it edits")
            region = alignment.crop_footprint(matrix, res, (photo.shape[1], photo.shape[0]))
            x0, y0, x1, y1 = region
            crop_mask = alignment.warp_mask_to_crop(photo_mask, matrix, res)
            image = alignment.warp_crop(photo, matrix, res)
            job = FaceJob(i, face, aligned_by, matrix, image, crop_mask, float(crop_mask.mean()),
                          (region, photo_mask[y0:y1, x0:x1]))  # fmt: skip
            return job
        if self.mask_backend == "mesh":
            outline = face.outline
            if outline is None:  # a detector without the mesh (RetinaFace, the cascade): the mesh on its box
                points, logit = self.face_mesh().best(photo, face.box, face.roll)
                from facepaint.method import mediapipe

                outline = mediapipe.face_outline(points) if logit >= self.face_mesh().threshold else None
            if outline is None:
                notes.append(f"face {i} at {[round(v) for v in face.box]}: the face mesh found no face; skipped")
                return None
            from facepaint.method.mediapipe import polygon_mask

            crop_mask = polygon_mask(outline, (res, res), matrix) & territory(found, i, matrix, res)
            source = "mesh"
        else:
            labels = self._parse_crop(photo, matrix)
            roll = None if face.landmarks is not None else alignment.eye_roll(labels, BISENET_CLASSES)
            if roll is not None and abs(roll) > 2.0:  # box-only: turn upright by the parser's eye line
                face = dataclasses.replace(face, roll=face.roll + roll)
                matrix, aligned_by = alignment.align(face, res), "box+eyes"
                labels = self._parse_crop(photo, matrix)
            crop_mask = resize_binary(parts_union_from_labels(labels, self.parts), res)
            crop_mask &= territory(found, i, matrix, res)
            source = "bisenet"
        if not crop_mask.any():
            box = [round(v) for v in face.box]
            notes.append(f"face {i} at {box}: the {source} mask found no face pixels; skipped")
            return None
        image = alignment.warp_crop(photo, matrix, res)
        return FaceJob(i, face, aligned_by, matrix, image, crop_mask, float(crop_mask.mean()), None, None, source)

    def _parse_crop(self, photo: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        """The parser's labels of the aligned crop, at the parser's 512 px."""
        k = BISENET_SIZE / self.resolution
        crop = alignment.warp_crop(photo, alignment.rescale(matrix, k), BISENET_SIZE)
        return self.face_parser().labels(crop[None])[0]

    def mask_job(self, photo: np.ndarray, m: np.ndarray, name: str, notes: list[str]) -> FaceJob:
        """The face given by a whole-photo mask alone (no detection): the padded square around M, unrotated
        (`face_crop`); when M is wider than the photo's short side, a square that holds all of it, reaching past
        the photo's edges (replicated there), so every masked pixel is edited. EditError when no face is left at
        the model's resolution."""
        if not m.any():
            raise EditError(f"no face found in {name}: the face mask is empty")
        res, (h, w) = self.resolution, m.shape
        x0, y0, side = face_crop(m, self.padding)
        crop = (slice(y0, y0 + side), slice(x0, x0 + side))
        if m.sum() > m[crop].sum():  # wider than the photo's short side: a square centred on M, past the edges
            ys, xs = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
            bx0, bx1, by0, by1 = int(xs[0]), int(xs[-1]) + 1, int(ys[0]), int(ys[-1]) + 1
            side = int(np.ceil(max(bx1 - bx0, by1 - by0) * (1 + 2 * CROP_MARGIN / (1 - 2 * CROP_MARGIN))))
            x0, y0 = (bx0 + bx1 - side) // 2, (by0 + by1 - side) // 2
            notes.append(
                f"the face mask is wider than the photo's short side; it is edited in a {side} px square reaching "
                "past the photo's edges"
            )
        matrix = alignment.square(x0, y0, side, res)
        region = (max(0, x0), max(0, y0), min(w, x0 + side), min(h, y0 + side))
        rx0, ry0, rx1, ry1 = region
        square = np.zeros((side, side), bool)  # M over the square (nothing past the photo's edges)
        square[ry0 - y0 : ry1 - y0, rx0 - x0 : rx1 - x0] = m[ry0:ry1, rx0:rx1]
        crop_mask = resize_binary(square, res)
        if not crop_mask.any():
            raise EditError(
                f"no face found in {name}: the face mask vanishes at the model's resolution "
                f"({res} px for a {side} px crop)"
            )
        image = alignment.warp_crop(photo, matrix, res)
        return FaceJob(None, None, "mask", matrix, image, crop_mask, float(crop_mask.mean()),
                       (region, m[ry0:ry1, rx0:rx1].copy()), None, "mask")  # fmt: skip

    def photo_mask(self, prepared: Prepared) -> np.ndarray:
        """M of the prepared faces in photo pixels (each face's crop mask warped back): the automatic mask."""
        h, w = prepared.photo.shape[:2]
        m = np.zeros((h, w), bool)
        for job in prepared.jobs:
            region = alignment.crop_footprint(job.matrix, self.resolution, (w, h), support=job.crop_mask)
            x0, y0, x1, y1 = region
            if x1 > x0 and y1 > y0:
                m[y0:y1, x0:x1] |= mask_back(job.crop_mask, job.matrix, (w, h), region)
        return m

    # 2. edited crops -> photo
    def paste(self, prepared: Prepared, generated: list[np.ndarray], sigma_px: float, blend: bool = True):
        """(the edited photo, M_soft (the union over faces), M (the union), [Pasted per face]): each decoded crop
        and its soft mask (G_sigma * M in crop space, `sigma_px` pixels at the model's resolution) warped back
        onto the photo and composited (`composite`: every pixel outside all soft masks is the input's).
        `blend` False pastes each decoded crop whole (the ablation of pixel-level blending)."""
        photo = prepared.photo
        size = (photo.shape[1], photo.shape[0])
        pasted = []
        for job, gen in zip(prepared.jobs, generated):
            p = paste(gen, soft_mask(job.crop_mask, sigma_px), job.crop_mask, job.matrix, size, whole=not blend)
            if job.photo_mask is not None and p.region[2] > p.region[0] and p.region[3] > p.region[1]:
                # the user's own mask of this face, exactly, where the warped-back one would be resampled
                (mx0, my0, mx1, my1), own = job.photo_mask
                x0, y0, x1, y1 = p.region
                p.mask = np.zeros((y1 - y0, x1 - x0), bool)
                ix0, iy0, ix1, iy1 = max(x0, mx0), max(y0, my0), min(x1, mx1), min(y1, my1)
                if ix1 > ix0 and iy1 > iy0:  # the two regions' overlap, copied without a photo-size array
                    p.mask[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = own[
                        iy0 - my0 : iy1 - my0, ix0 - mx0 : ix1 - mx0
                    ]
            pasted.append(p)
        out, soft, m = composite(photo, pasted, blend)
        return out, soft, m, pasted


# ------------------------------------------------------------------------------ several faces, one photo


def hold(matrix: np.ndarray, mask: np.ndarray, resolution: int, margin: float = CROP_MARGIN):
    """(`matrix` photo -> crop, widened about the crop's centre until every pixel of the photo-size `mask` lies
    at least `margin` x the crop inside its edges; the widening factor, 0.0 when none was needed)."""
    rows = np.flatnonzero(mask.any(1))
    if not len(rows):
        return matrix, 0.0
    # an affine map is extreme at a row's first or last pixel: those alone, of the rows that have any
    sub = mask[rows[0] : rows[-1] + 1]
    cols = np.flatnonzero(sub.any(0))
    sub = sub[:, cols[0] : cols[-1] + 1]
    has = sub.any(1)
    first = sub.argmax(1)[has]
    last = sub.shape[1] - 1 - sub[:, ::-1].argmax(1)[has]
    ys = (np.flatnonzero(has) + rows[0]).astype(np.float64)
    xs = np.concatenate([first, last]).astype(np.float64) + cols[0]
    ys = np.concatenate([ys, ys])
    # the pixels' outer corners, so the whole pixel is inside
    px = np.concatenate([xs - 0.5, xs + 0.5, xs - 0.5, xs + 0.5])
    py = np.concatenate([ys - 0.5, ys - 0.5, ys + 0.5, ys + 0.5])
    u = matrix[0, 0] * px + matrix[0, 1] * py + matrix[0, 2] + 0.5
    v = matrix[1, 0] * px + matrix[1, 1] * py + matrix[1, 2] + 0.5
    c, room = resolution / 2, resolution * (0.5 - margin)
    reach = max(np.abs(u - c).max(), np.abs(v - c).max())
    if reach <= room:
        return matrix, 0.0
    f = room / reach
    shrink = np.array([[f, 0.0], [0.0, f]])
    out = np.hstack([shrink @ matrix[:, :2], (shrink @ (matrix[:, 2] + 0.5 - c) + c - 0.5)[:, None]])
    return out, 1 / f


def _regions(labels: np.ndarray, stats: np.ndarray, comps: list[int]) -> np.ndarray:
    """The photo-size bool mask of connected components `comps` (read only inside their boxes: a 12 MP photo)."""
    x0, y0 = stats[comps, :2].min(0)
    x1, y1 = (stats[comps, :2] + stats[comps, 2:4]).max(0)
    own = np.zeros(labels.shape, bool)
    own[y0:y1, x0:x1] = np.isin(labels[y0:y1, x0:x1], comps)
    return own


def group_regions(
    stats: np.ndarray, comps: list[int], reach: float = GROUP_REACH, stray: float = STRAY
) -> list[list[int]]:
    """Mask regions (connected components, `stats` as OpenCV gives them) over no face, grouped: a small region
    (at most `stray` x a larger one's longer side squared, in pixels) within `reach` x that side of it goes with
    it (the eyes and mouth of one face painted apart, a dab beside a painted face); regions of like size stay
    apart (faces the detector missed, side by side, each get a crop of their own)."""
    parent = {c: c for c in comps}

    def root(c):
        while parent[c] != c:
            c = parent[c]
        return c

    by_area = sorted(comps, key=lambda c: -int(stats[c, 4]))
    for k, c in enumerate(by_area):
        cx, cy, cw, ch = stats[c, :4]
        best = None
        for big in by_area[:k]:  # the larger ones
            bx, by, bw, bh = stats[big, :4]
            side = max(bw, bh)
            gap = max(bx - (cx + cw), cx - (bx + bw), by - (cy + ch), cy - (by + bh), 0)
            if stats[c, 4] <= stray * side**2 and gap <= reach * side and (best is None or gap < best[0]):
                best = (gap, big)
        if best is not None:
            parent[root(c)] = root(best[1])
    groups: dict[int, list[int]] = {}
    for c in comps:
        groups.setdefault(root(c), []).append(c)
    return list(groups.values())


def _nearest(faces: list[Face], i: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Where face `i`'s centre is the nearest (distance over face size; ties to the lower index)."""

    def dist(f):
        return np.hypot(x - np.float32(f.centre[0]), y - np.float32(f.centre[1])) / np.float32(max(f.size, 1.0))

    mine, keep = dist(faces[i]), np.ones(x.shape, bool)
    for j, f in enumerate(faces):
        if j != i:
            d = dist(f)
            keep &= (mine < d) | ((mine == d) & (i < j))
    return keep


def territory(faces: list[Face], i: int, matrix: np.ndarray, resolution: int) -> np.ndarray:
    """R x R bool: the crop pixels of face `i` that are nearer to its centre than to any other face's
    (distances in units of each face's size), so a neighbour that reaches into this crop is not edited
    as part of this face."""
    import cv2

    if len(faces) <= 1:
        return np.ones((resolution, resolution), bool)
    inv = cv2.invertAffineTransform(matrix).astype(np.float32)
    v, u = np.mgrid[0:resolution, 0:resolution].astype(np.float32)
    return _nearest(faces, i, inv[0, 0] * u + inv[0, 1] * v + inv[0, 2], inv[1, 0] * u + inv[1, 1] * v + inv[1, 2])


@dataclass
class Pasted:
    """One face warped back onto the photo: its region (x0, y0, x1, y1) and region-sized arrays."""

    region: tuple[int, int, int, int]
    image: np.ndarray  # uint8 h x w x 3: the decoded crop warped back
    soft: np.ndarray  # float32 h x w: its soft mask warped back (0 outside the crop)
    mask: np.ndarray  # bool h x w: M warped back (or the photo's own mask of the face, when given)
    cover: np.ndarray | None = None  # float32 h x w: > 0 where the crop lands (only for a pasted whole crop)


def paste(
    generated: np.ndarray, soft: np.ndarray, mask: np.ndarray | None, matrix: np.ndarray, size, whole: bool = False
) -> Pasted:
    """Warp one face's decoded crop, soft mask and M (R x R; None: `soft` > 0.5) back onto a photo of
    size = (w, h): over the region where the soft mask is > 0, or (`whole`) where the crop lands."""
    n = generated.shape[0]
    region = alignment.crop_footprint(matrix, n, size, support=None if whole else soft > 0)
    if region[2] <= region[0] or region[3] <= region[1]:
        z = np.zeros((0, 0), np.float32)
        return Pasted(region, np.zeros((0, 0, 3), np.uint8), z, z.astype(bool), z if whole else None)
    image = alignment.warp_back(np.ascontiguousarray(generated), matrix, region)
    s = alignment.warp_back(soft.astype(np.float32), matrix, region)
    s[s < 1e-6] = 0.0  # bilinear round-off far from the face
    m = mask_back(soft > 0.5 if mask is None else mask, matrix, size, region)
    cover = alignment.warp_back(np.ones((n, n), np.float32), matrix, region) if whole else None
    return Pasted(region, image, s, m, cover)


def mask_back(crop_mask: np.ndarray, matrix: np.ndarray, size, region=None) -> np.ndarray:
    """An R x R bool crop mask on the photo's pixels (bilinear, > 0.5), sampled over the footprint of its own
    pixels and returned inside `region` (None: that footprint). Always warped over the same footprint (the
    resampling's fixed-point rounding depends on the offset), so `FaceHelper.photo_mask` and `paste` agree to
    the pixel."""
    own = alignment.crop_footprint(matrix, crop_mask.shape[0], size, support=crop_mask)
    region = own if region is None else region
    x0, y0, x1, y1 = region
    out = np.zeros((max(0, y1 - y0), max(0, x1 - x0)), bool)
    ox0, oy0, ox1, oy1 = own
    ix0, iy0, ix1, iy1 = max(x0, ox0), max(y0, oy0), min(x1, ox1), min(y1, oy1)
    if ix1 > ix0 and iy1 > iy0:
        m = alignment.warp_back(crop_mask.astype(np.float32), matrix, own) > 0.5
        out[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = m[iy0 - oy0 : iy1 - oy0, ix0 - ox0 : ix1 - ox0]
    return out


def composite(
    photo: np.ndarray, pasted: list[Pasted], blend: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(the edited photo, the union soft mask (max over faces), the union M) at the photo's size.

    Each pixel is taken from the face whose warped soft mask is largest there (ties: the earlier face) and
    blended against the original photo: I_blend = I_result * s + I * (1 - s). Where every soft mask is 0
    the input's bytes are copied. `blend=False` (the ablation: no pixel-level blending) pastes each face's
    whole warped crop (`paste(..., whole=True)`) where it lands, the crop that covers a pixel most taking it."""
    out = photo.copy()
    best = np.zeros(photo.shape[:2], np.float32)  # the winning weight so far
    soft_union = np.zeros(photo.shape[:2], np.float32)
    m_union = np.zeros(photo.shape[:2], bool)
    for p in pasted:
        x0, y0, x1, y1 = p.region
        if x1 <= x0 or y1 <= y0:
            continue
        sl = (slice(y0, y1), slice(x0, x1))
        weight = p.soft if blend else p.cover
        if weight is None:
            raise ValueError("composite(blend=False) needs crops pasted whole: paste(..., whole=True)")
        wins = weight > best[sl]
        mixed = pixel_blend(photo[sl], p.image, p.soft) if blend else p.image
        out[sl] = np.where(wins[..., None], mixed, out[sl])
        best[sl] = np.maximum(best[sl], weight)
        soft_union[sl] = np.maximum(soft_union[sl], p.soft)
        m_union[sl] |= p.mask
    return out, soft_union, m_union
