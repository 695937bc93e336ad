"""One photo's round trip through the model, the way facexlib's FaceRestoreHelper does it for GFPGAN:

    photo -> `FaceHelper.prepare`: detect (facepaint.editing.detection) -> select (all | largest | indices,
             narrower than min_face skipped with a warning) -> align each face to the training data's framing at
             the model's resolution (facepaint.editing.alignment) -> M per face (BiSeNet on the aligned crop, or
             the user's whole-photo mask cut per face; the mask alone when no face is detected) -> `Prepared`
          -> [the editor generates each crop]
          -> `FaceHelper.paste`: each decoded crop and its soft mask through the inverse transform onto the
             photo, composited (`composite`) -> the edited photo, M_soft and M at full resolution

Why it is built this way:
- Faces are aligned and edited at the model's resolution because the model was trained on CelebA-HQ faces,
  upright and filling the frame; the rest of a large photo never goes through the VAE.
- The user's mask is the authority where it is given: cut per detected face (each pixel to the face whose
  centre is nearest, `territory`), and a masked region that no detected face covers is edited as one face.
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
from facepaint.editing import alignment
from facepaint.editing.detection import DETECTORS, Face, FaceError, make_detector, parse_selection, select_faces
from facepaint.method.blend import pixel_blend, soft_mask
from facepaint.method.masks import BISENET_CLASSES, BISENET_SIZE, BiSeNetParser, face_crop, parts_union_from_labels
from facepaint.method.models import ModelLoadError

PADDING = 0.25  # crop margin per side for a face given by a mask alone, x its longer side (our choice)
MAX_PADDING = 10.0  # a crop margin of 10 face sizes per side is already the whole photo for any portrait
MIN_FACE = 64.0  # px: a detected face narrower than this is skipped (our choice: the model sees it upscaled 4x+)
MAX_MIN_FACE = 100_000.0  # px: wider than the face of any photo load_rgb accepts
MASK_HINT = (
    "For `facepaint edit`, give the weights with --bisenet-weights PATH, or skip the face parser by "
    "passing a face mask with --mask PATH (white = face; `mask=` in the Python API)."
)


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


@dataclass(eq=False)
class Prepared:
    """A photo ready for the model (`FaceEditor.prepare`): the photo, the faces found in it and, for each face
    to edit, its aligned crop and mask at the model's resolution. `FaceEditor.edit_batch` takes these in place
    of photos."""

    photo: np.ndarray  # uint8 H x W x 3: the input as decoded
    name: str  # the photo's name in messages ("<array>" for an array)
    notes: list[str]  # decoding, detection and selection notes
    source: str  # where M came from: "bisenet", the mask's path, or "array"
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
    download). The detector and the parser are loaded on first use, on `device`."""

    def __init__(
        self,
        resolution: int,
        parts,
        *,
        padding: float = PADDING,
        detector: str = "auto",
        detector_weights=None,
        bisenet_weights=None,
        device: str = "auto",
    ):
        check_number("padding", padding, 0, MAX_PADDING)
        if detector not in DETECTORS:
            raise ValueError(f"detector must be one of {DETECTORS}, got {detector!r}")
        self.resolution, self.parts, self.padding = resolution, tuple(parts), padding
        self.detector_kind, self.detector_weights, self.bisenet_weights = detector, detector_weights, bisenet_weights
        self.device = str(device)
        self._parser = self._detector = None

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
            self._detector, notes = make_detector(self.detector_kind, self.detector_weights, self.device)
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
        M per face comes from BiSeNet on the aligned crop (`mask` None) or from the user's mask (a path or
        an array of the photo's aspect ratio, white = the faces to edit; cut per face, a face it does not
        cover is left alone). With a mask and no face detected, the masked region is edited as one face.
        `prompts`: one per selected face, in order (None: the edit's prompt for all). Raises ImageError,
        EditError, FaceError or ValueError for a photo that cannot be edited, before any generation."""
        from facepaint.method.generate import per_image  # the editor's module: loaded with it

        photo, name, notes = read_photo(image)
        h, w = photo.shape[:2]
        check_number("min_face", min_face, 0, MAX_MIN_FACE)
        parse_selection(faces)  # a malformed selection fails before detection
        if mask is None:
            m, source = None, "bisenet"
            self.face_parser()  # missing weights fail before detection
        elif isinstance(mask, (str, os.PathLike)):
            m, source = load_mask(mask, (w, h)), str(mask)
        else:
            m, source = fit_mask(mask, (w, h)), "array"
        if m is not None and not m.any():
            raise EditError(
                f"no face found in {name}: the mask ({source}) is empty; pass a mask with the face in white"
            )
        found, detector = self.detect(photo, min_face)
        if not found:
            if m is None:
                raise EditError(
                    f"no face found in {name} (detector {detector}, faces of at least {min_face:g} px); "
                    f"pass a mask with the face in white (--mask), or lower --min-face"
                )
            notes.append(f"no face detected ({detector}); the masked region is edited as one face")
            job = self.mask_job(photo, m, name, notes)
            job.prompt = None if prompts is None else per_image(prompts, 1, "prompts", str)[0]
            return Prepared(photo, name, notes, source, detector, [], [job])
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
            job = self._face_job(photo, m, found, i, notes)
            if job is not None:
                job.prompt = prompt
                jobs.append(job)
        if not jobs and m is not None:  # the mask is the user's word: it marks a face the detector missed
            notes.append(
                f"the mask covers none of the {len(found)} detected face(s) selected; "
                "the masked region is edited as one face"
            )
            job = self.mask_job(photo, m, name, notes)
            job.prompt = face_prompts[0] if face_prompts and face_prompts[0] else None
            return Prepared(photo, name, notes, source, detector, found, [job])
        if not jobs:
            why = "; ".join(skipped + notes[before:]) or "no face selected"
            raise EditError(f"no face to edit in {name}: {why}")
        return Prepared(photo, name, notes, source, detector, found, jobs)

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

    def _face_job(self, photo, m, found: list[Face], i: int, notes: list[str]) -> FaceJob | None:
        """Align face `i` and find its mask; None (with a note) when it has no face pixels to edit."""
        res, face = self.resolution, found[i]
        aligned_by = "landmarks" if face.landmarks is not None else "box"
        matrix = alignment.align(face, res)
        own = None
        if m is None:
            labels = self._parse_crop(photo, matrix)
            roll = None if face.landmarks is not None else alignment.eye_roll(labels, BISENET_CLASSES)
            if roll is not None and abs(roll) > 2.0:  # box-only: turn upright by the parser's eye line
                face = dataclasses.replace(face, roll=face.roll + roll)
                matrix, aligned_by = alignment.align(face, res), "box+eyes"
                labels = self._parse_crop(photo, matrix)
            crop_mask = resize_binary(parts_union_from_labels(labels, self.parts), res)
            crop_mask &= territory(found, i, matrix, res)
            if not crop_mask.any():
                notes.append(f"face {i} at {[round(v) for v in face.box]}: the parser found no face parts; skipped")
                return None
        else:
            own = owned(found, i, matrix, res, m)
            crop_mask = alignment.warp_mask_to_crop(m, matrix, res) & territory(found, i, matrix, res)
            if not own[1].any() or not crop_mask.any():
                notes.append(f"face {i} at {[round(v) for v in face.box]} is not covered by the mask: left alone")
                return None
        image = alignment.warp_crop(photo, matrix, res)
        return FaceJob(i, face, aligned_by, matrix, image, crop_mask, float(crop_mask.mean()), own)

    def _parse_crop(self, photo: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        """The parser's labels of the aligned crop, at the parser's 512 px."""
        k = BISENET_SIZE / self.resolution
        crop = alignment.warp_crop(photo, alignment.rescale(matrix, k), BISENET_SIZE)
        return self.face_parser().labels(crop[None])[0]

    def mask_job(self, photo: np.ndarray, m: np.ndarray, name: str, notes: list[str]) -> FaceJob:
        """The face given by a whole-photo mask alone (no detection): the padded square around M, unrotated
        (`face_crop`). EditError when no face is left at the model's resolution."""
        if not m.any():
            raise EditError(f"no face found in {name}: the face mask is empty")
        res = self.resolution
        x0, y0, side = face_crop(m, self.padding)
        crop = (slice(y0, y0 + side), slice(x0, x0 + side))
        if m.sum() > m[crop].sum():
            notes.append(
                f"the face mask is wider than the photo's short side; only the {side} px square at ({x0}, {y0}) "
                "is edited"
            )
        matrix = alignment.square(x0, y0, side, res)
        crop_mask = resize_binary(m[crop], res)
        if not crop_mask.any():
            raise EditError(
                f"no face found in {name}: the face mask vanishes at the model's resolution "
                f"({res} px for a {side} px crop)"
            )
        inside = np.zeros(m.shape, bool)
        inside[crop] = m[crop]
        region = (x0, y0, x0 + side, y0 + side)
        image = alignment.warp_crop(photo, matrix, res)
        return FaceJob(None, None, "mask", matrix, image, crop_mask, float(crop_mask.mean()), (region, inside[crop]))

    def photo_mask(self, prepared: Prepared) -> np.ndarray:
        """M of the prepared faces in photo pixels (each face's crop mask warped back): the automatic mask."""
        h, w = prepared.photo.shape[:2]
        m = np.zeros((h, w), bool)
        for job in prepared.jobs:
            region = alignment.crop_footprint(job.matrix, self.resolution, (w, h), support=job.crop_mask)
            x0, y0, x1, y1 = region
            if x1 > x0 and y1 > y0:
                m[y0:y1, x0:x1] |= alignment.warp_back(job.crop_mask.astype(np.float32), job.matrix, region) > 0.5
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


def owned(
    faces: list[Face], i: int, matrix: np.ndarray, resolution: int, mask: np.ndarray
) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """(region, bool array of the region): the pixels of the photo-size `mask` under face `i`'s crop that
    belong to it (as `territory`): a whole-photo mask cut into per-face masks. Only the mask's own pixels
    are examined, so this costs what the face costs, not what the photo does."""
    h, w = mask.shape
    region = alignment.crop_footprint(matrix, resolution, (w, h))
    x0, y0, x1, y1 = region
    out = mask[y0:y1, x0:x1].copy()
    ys, xs = np.nonzero(out)
    if len(xs) == 0:
        return region, out
    x, y = (xs + x0).astype(np.float32), (ys + y0).astype(np.float32)
    u = matrix[0, 0] * x + matrix[0, 1] * y + matrix[0, 2]
    v = matrix[1, 0] * x + matrix[1, 1] * y + matrix[1, 2]
    keep = (u > -0.5) & (u < resolution - 0.5) & (v > -0.5) & (v < resolution - 0.5)
    if len(faces) > 1:
        keep &= _nearest(faces, i, x, y)
    out[ys[~keep], xs[~keep]] = False
    return region, out


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
    m = alignment.warp_back((soft > 0.5 if mask is None else mask).astype(np.float32), matrix, region) > 0.5
    cover = alignment.warp_back(np.ones((n, n), np.float32), matrix, region) if whole else None
    return Pasted(region, image, s, m, cover)


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
