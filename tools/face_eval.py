"""Compare the face detectors side by side on real photos with known faces: MediaPipe (BlazeFace + FaceMesh,
`facepaint.method.detection.MediaPipeDetector`) and OpenCV's frontal-face cascade (`CascadeDetector`).

    python -m tools.face_eval [--root ../shared/fixtures/celebamask-hq-mini] [--json out.json] [--preview DIR]
                              [--portraits N] [--composites N] [--detectors mediapipe,opencv] [--raise 0.15,0.25]

The photos (the CelebAMask-HQ fixture never leaves ../shared; nothing is written but the JSON and the preview):
- portraits: every fixture image, a 512 px CelebA-HQ frame holding one face. Its known face: the annotated
  skin's centre and width, the part masks' eye centres (`tools.composites.portrait_landmarks`), and the
  annotated face = the union of the part masks skin, brows, eyes, nose, mouth and lips (`FACE_PARTS`,
  params.yaml's masks.parts; `facepaint.data.masks.annotation_union`);
- composites (`tools.composites.composite`): 10 textured 2400x1600 canvases with 6-8 fixture portraits each and
  3 of 4000x3000 with 8, scaled by 0.1-1.0 and rolled by up to +-30 degrees, each face's centre, width and
  landmarks known through its transform (`COMPOSITES`).
Each detector runs on each photo with `min_face` 40 px (the detectors' default), and a detection is matched to
a known face when its box centre lies within half the face's width of it (`tools.composites.match`; lenient:
a box much smaller than the face near its centre, the cascade's chin or eye, matches too, and its alignment
error shows it).

What is measured, per detector:
1. detection rate: the known faces found among those at least 64 px wide (the editor's default --min-face)
   and at least 40 px (a face's width: its annotated skin's); false positives per photo: detections that match no
   known face (on a portrait, every face beyond the one matched; a background person counts too);
2. mesh mask IoU against the annotated face on the portraits (mean, median, 5th percentile, over those where
   the face was found and the mesh confirms it): for MediaPipe the outline its detector returns,
   `polygon_mask(face.outline)`; for the cascade `FaceMesh.best` run on the cascade's box and roll and its
   `face_outline` filled, which is what the editor's `mesh` mask is with a box-only detector (a face whose mesh
   logit is under the threshold gets no mask there: counted as "mesh refused");
3. alignment error: for each found face with annotated eyes, `align(face, 512)` (landmarks onto the 5-point
   template for MediaPipe, the box by BOX_FRAME and the roll for the cascade) applied to the annotated eye
   centres, and their distance to TEMPLATE_512's eye points, in px at 512 (mean, median and 95th percentile over
   the eyes). The "truth 5 pts" column aligns the annotated 5 points themselves (eye centres, nose and mouth
   corners from the part masks): a reference for how far the template's points lie from the annotation's
   (about 9 px; a detector whose landmarks follow the template's definitions can do better);
4. time per photo: the median wall time of `detect` (the cascade searches 5 turns of the photo; the composites'
   two sizes apart).

`--raise 0.15,0.25,...` also prints the portraits' mesh IoU with the outline's forehead raised by each value
(`mediapipe.face_outline(raise_by=)`; FOREHEAD_RAISE was chosen this way; for MediaPipe the mesh is run again
on its face's box and roll to get the points). `--preview DIR` writes
DIR/face_eval_preview.png: the first composite with the known faces (blue cross and circle of the skin's
width), MediaPipe's boxes (green), outlines (yellow) and 5 landmarks (magenta), and the cascade's boxes (red).
The whole run takes about 8 minutes on 2 CPU cores, most of it the cascade; tests/tools/test_face_eval.py runs
`measure` on a small subset.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from facepaint.method.alignment import TEMPLATE_512, align
from facepaint.method.detection import Face
from tools.composites import Truth, composite, match, portrait_landmarks

FACE_PARTS = ("skin", "l_brow", "r_brow", "l_eye", "r_eye", "nose", "mouth", "u_lip", "l_lip")
MIN_FACE = 40.0  # px: what the detectors are asked to find (their default)
WIDTHS = (64, 40)  # detection rates for known faces at least this wide
DETECTORS = ("mediapipe", "opencv")
# (canvas (w, h), seed, faces): the composites
COMPOSITES = tuple(((2400, 1600), s, 6 + s % 3) for s in range(10)) + tuple(
    ((4000, 3000), 100 + s, 8) for s in range(3)
)
RESOLUTION = 512  # alignment errors are in px of a 512 px crop
PREVIEW = "face_eval_preview.png"


def fixture_ids(root: Path) -> list[int]:
    return [int(x) for x in (root / "ids.txt").read_text().split()]


def make_detectors(names) -> dict:
    from facepaint.method.detection import CascadeDetector, MediaPipeDetector

    made = {}
    for name in names:
        if name not in DETECTORS:
            raise ValueError(f"detector must be one of {DETECTORS}, got {name!r}")
        made[name] = MediaPipeDetector() if name == "mediapipe" else CascadeDetector()
    return made


def portrait_truth(root: Path, image_id: int, side: int) -> Truth:
    """The portrait's one known face (skin centre and width, 5 annotated points or None)."""
    lms, centre, width = portrait_landmarks(root, image_id, side)
    if centre is None:  # no skin mask: the frame's centre and half its width
        centre, width = (side / 2, side / 2), side * 0.5
    return Truth(image_id, np.array([[1.0, 0, 0], [0, 1.0, 0]]), 0.0, centre, width, lms, side)


def eye_errors(face: Face, landmarks: np.ndarray) -> np.ndarray:
    """The 2 distances (px at 512) from the known eye centres, through `align(face, 512)`, to the template's."""
    m = align(face, RESOLUTION)
    eyes = np.asarray(landmarks, np.float64)[:2] @ m[:, :2].T + m[:, 2]
    return np.linalg.norm(eyes - TEMPLATE_512[:2] * (RESOLUTION / 512), axis=1)


def floor_errors(landmarks: np.ndarray) -> list[float]:
    """`eye_errors` of the known 5 points aligned themselves: how far CelebA-HQ's framing is from the template."""
    return list(eye_errors(Face((0, 0, 1, 1), 1.0, tuple(map(tuple, landmarks))), landmarks))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def mesh_points(mesh, photo: np.ndarray, face: Face) -> np.ndarray | None:
    """The face mesh run on the face's box and roll (as the editor does for a box-only detector); None when the
    mesh does not confirm a face there."""
    points, logit = mesh.best(photo, face.box, face.roll)
    return points if logit >= mesh.threshold else None


def timed_detect(detector, photo: np.ndarray, min_face: float) -> tuple[list[Face], float]:
    t = time.perf_counter()
    faces = detector.detect(photo, min_face)
    return faces, time.perf_counter() - t


def _stats(values, q: float) -> dict:
    v = np.asarray(values, np.float64)
    if not len(v):
        return {"n": 0, "mean": None, "median": None, f"p{q:g}": None}
    return {
        "n": int(len(v)),
        "mean": round(float(v.mean()), 4),
        "median": round(float(np.median(v)), 4),
        f"p{q:g}": round(float(np.percentile(v, q)), 4),
    }


def _rate(found_widths, all_widths, lo: float) -> dict:
    n = sum(w >= lo for w in all_widths)
    n, k = int(n), int(sum(w >= lo for w in found_widths))
    return {"found": k, "faces": n, "rate": round(k / n, 4) if n else None}


def measure(
    root: str | Path,
    portraits: int | list[int] | None = None,
    composites=COMPOSITES,
    detectors=DETECTORS,
    min_face: float = MIN_FACE,
    raises=(),
    preview: str | Path | None = None,
    progress: bool = False,
) -> dict:
    """The figures of the module docstring for each detector (a dict per detector name, plus "reference": the
    truth-landmark alignment floor, and "config"). `portraits`: the fixture ids to use (a count: the first ones;
    None: all); `composites`: (canvas, seed, faces) specs; `raises`: forehead raises for the mesh IoU sweep;
    `preview`: a folder for the preview PNG of the first composite."""
    from facepaint.data.masks import annotation_union
    from facepaint.method import mediapipe

    root = Path(root)
    ids = fixture_ids(root)
    chosen = ids if portraits is None else (ids[:portraits] if isinstance(portraits, int) else list(portraits))
    dets = make_detectors(detectors)
    mp = dets.get("mediapipe")
    mesh = mp.facemesh if mp is not None else mediapipe.FaceMesh(mediapipe.model_dir())
    tally = {
        name: {
            "p_found": [],  # widths of the portraits' faces found
            "p_false": [],
            "iou": [],
            "refused": 0,
            "sweep": {r: [] for r in raises},
            "p_eyes": [],
            "p_time": [],
            "c_found": [],
            "c_found64": [],
            "c_false": [],
            "c_eyes": [],
            "c_eyes64": [],
            "c_time": {},
        }
        for name in dets
    }
    ref = {"p_eyes": [], "c_eyes": [], "c_eyes64": []}
    p_widths, c_widths, per_portrait, per_composite = [], [], [], []

    for n, image_id in enumerate(chosen):
        photo = np.asarray(Image.open(root / "CelebA-HQ-img" / f"{image_id}.jpg").convert("RGB"))
        side = photo.shape[0]
        truth = portrait_truth(root, image_id, side)
        face_mask, _ = annotation_union(root, image_id, FACE_PARTS)
        if face_mask.shape != photo.shape[:2]:
            face_mask = np.asarray(Image.fromarray(face_mask).resize(photo.shape[1::-1], Image.NEAREST))
        p_widths.append(truth.width)
        if truth.landmarks is not None:
            ref["p_eyes"] += floor_errors(truth.landmarks)
        record = {"id": image_id, "width": round(float(truth.width), 1)}
        for name, det in dets.items():
            t = tally[name]
            faces, dt = timed_detect(det, photo, min_face)
            t["p_time"].append(dt)
            found, false = match(faces, [truth])
            t["p_false"].append(len(false))
            entry = {"found": bool(found), "false": len(false), "seconds": round(dt, 3)}
            if found:
                face = faces[found[0]]
                t["p_found"].append(truth.width)
                points = None
                if face.outline is not None:
                    outline = np.asarray(face.outline)
                    if raises:
                        points = mesh_points(mesh, photo, face)
                else:
                    points = mesh_points(mesh, photo, face)
                    outline = None if points is None else mediapipe.face_outline(points)
                if outline is None:
                    t["refused"] += 1
                else:
                    entry["iou"] = round(iou(mediapipe.polygon_mask(outline, face_mask.shape), face_mask), 4)
                    t["iou"].append(entry["iou"])
                for r in raises:
                    if points is not None:
                        m = mediapipe.polygon_mask(mediapipe.face_outline(points, r), face_mask.shape)
                        t["sweep"][r].append(iou(m, face_mask))
                if truth.landmarks is not None:
                    e = eye_errors(face, truth.landmarks)
                    t["p_eyes"] += list(e)
                    entry["eye_px"] = round(float(e.mean()), 2)
            record[name] = entry
        per_portrait.append(record)
        if progress and (n + 1) % 20 == 0:
            print(f"  {n + 1}/{len(chosen)} portraits", flush=True)

    for k, (canvas, seed, count) in enumerate(composites):
        rng = np.random.default_rng(seed)
        faces_ids = [int(i) for i in rng.choice(ids, size=count, replace=False)]
        photo, truths = composite(root, faces_ids, canvas=tuple(canvas), seed=seed, scale=(0.1, 1.0), max_roll=30.0)
        size = f"{canvas[0]}x{canvas[1]}"
        c_widths += [tr.width for tr in truths]
        for tr in truths:
            if tr.landmarks is not None:
                e = floor_errors(tr.landmarks)
                ref["c_eyes"] += e
                if tr.width >= WIDTHS[0]:
                    ref["c_eyes64"] += e
        widths = [round(float(tr.width), 1) for tr in truths]
        record = {"canvas": size, "seed": seed, "ids": faces_ids, "widths": widths}
        drawn = {}
        for name, det in dets.items():
            t = tally[name]
            faces, dt = timed_detect(det, photo, min_face)
            t["c_time"].setdefault(size, []).append(dt)
            found, false = match(faces, truths)
            t["c_false"].append(len(false))
            for ti, fi in found.items():
                tr = truths[ti]
                t["c_found"].append(tr.width)
                if tr.landmarks is not None:
                    e = list(eye_errors(faces[fi], tr.landmarks))
                    t["c_eyes"] += e
                    if tr.width >= WIDTHS[0]:
                        t["c_eyes64"] += e
            record[name] = {"found": sorted(found), "false": len(false), "seconds": round(dt, 3)}
            drawn[name] = faces
        per_composite.append(record)
        if preview is not None and k == 0:
            draw_preview(photo, truths, drawn, Path(preview) / PREVIEW)
        if progress:
            print(f"  composite {k + 1}/{len(composites)} ({size})", flush=True)

    out = {
        "config": {
            "root": str(root),
            "portraits": len(chosen),
            "composites": [[list(c), s, n] for c, s, n in composites],
            "min_face": min_face,
            "face_parts": list(FACE_PARTS),
        },
        "reference": {
            "portrait_eye_px": _stats(ref["p_eyes"], 95),
            "composite_eye_px": _stats(ref["c_eyes"], 95),
            "composite_eye_px_64": _stats(ref["c_eyes64"], 95),
        },
        "per_portrait": per_portrait,
        "per_composite": per_composite,
    }
    for name, t in tally.items():
        summary = {
            "detector": dets[name].name,
            "mask": "detector's outline" if name == "mediapipe" else "FaceMesh on the detector's box",
            "portraits": {
                "photos": len(chosen),
                **{f"found_{w}": _rate(t["p_found"], p_widths, w) for w in WIDTHS},
                "false_per_photo": round(sum(t["p_false"]) / max(len(chosen), 1), 4),
                "mesh_iou": {**_stats(t["iou"], 5), "refused": t["refused"]},
                "eye_px": _stats(t["p_eyes"], 95),
                "median_s": round(float(np.median(t["p_time"])), 4) if t["p_time"] else None,
            },
            "composites": {
                "photos": len(composites),
                **{f"found_{w}": _rate(t["c_found"], c_widths, w) for w in WIDTHS},
                "found_under_40": {
                    "found": sum(w < 40 for w in t["c_found"]),
                    "faces": sum(w < 40 for w in c_widths),
                },
                "false_per_photo": round(sum(t["c_false"]) / max(len(composites), 1), 4),
                "eye_px": _stats(t["c_eyes"], 95),
                "eye_px_64": _stats(t["c_eyes64"], 95),
                "median_s": {size: round(float(np.median(v)), 4) for size, v in t["c_time"].items()},
            },
        }
        if raises:
            summary["portraits"]["mesh_iou_by_raise"] = {str(r): _stats(v, 5) for r, v in t["sweep"].items()}
        out[name] = summary
    return out


# ----------------------------------------------------------------------------------------------- output


def _fmt_rate(r: dict) -> str:
    return "-" if not r["faces"] else f"{r['found']}/{r['faces']} ({100 * r['found'] / r['faces']:.1f}%)"


def _fmt_stats(s: dict, q: str, digits: int = 2) -> str:
    return "-" if not s["n"] else f"{s['mean']:.{digits}f} / {s['median']:.{digits}f} / {s[q]:.{digits}f} (n {s['n']})"


def table(result: dict) -> str:
    """The printed comparison: a row per figure, a column per detector (and the truth-landmark floor)."""
    names = [n for n in DETECTORS if n in result]
    ref = result["reference"]
    heads = [result[n]["detector"] for n in names] + ["truth 5 pts"]
    rows = []

    def row(label, values, floor=""):
        rows.append((label, [*values, floor]))

    p = {n: result[n]["portraits"] for n in names}
    c = {n: result[n]["composites"] for n in names}
    sizes = sorted({s for n in names for s in c[n]["median_s"]}, key=lambda s: int(s.split("x")[0]))
    rows.append((f"portraits ({result['config']['portraits']} photos, 512 px, 1 face each)", None))
    row("  found (every face >= 64 px wide)", [_fmt_rate(p[n]["found_64"]) for n in names])
    row("  false positives per photo", [f"{p[n]['false_per_photo']:.3f}" for n in names])
    row("  mesh IoU mean / median / p5", [_fmt_stats(p[n]["mesh_iou"], "p5", 3) for n in names])
    row("  mesh refused (found, no mask)", [str(p[n]["mesh_iou"]["refused"]) for n in names])
    for r in next(iter(p.values())).get("mesh_iou_by_raise", {}):
        row(f"    IoU with forehead raise {r}", [_fmt_stats(p[n]["mesh_iou_by_raise"][r], "p5", 3) for n in names])
    row("  eye error px@512 mean / median / p95", [_fmt_stats(p[n]["eye_px"], "p95") for n in names],
        _fmt_stats(ref["portrait_eye_px"], "p95"))  # fmt: skip
    row("  time per photo (median)", [f"{p[n]['median_s'] * 1000:.0f} ms" for n in names])
    total = c[names[0]]["found_40"]["faces"] + c[names[0]]["found_under_40"]["faces"] if names else 0
    n_comp = len(result["config"]["composites"])
    rows.append((f"composites ({n_comp} photos, {total} faces, scale 0.1-1, roll +-30)", None))
    row("  found, faces >= 64 px", [_fmt_rate(c[n]["found_64"]) for n in names])
    row("  found, faces >= 40 px", [_fmt_rate(c[n]["found_40"]) for n in names])
    row("  found, faces < 40 px", [_fmt_rate(c[n]["found_under_40"]) for n in names])
    row("  false positives per photo", [f"{c[n]['false_per_photo']:.3f}" for n in names])
    row("  eye error px@512 mean / median / p95", [_fmt_stats(c[n]["eye_px"], "p95") for n in names],
        _fmt_stats(ref["composite_eye_px"], "p95"))  # fmt: skip
    row("    faces >= 64 px", [_fmt_stats(c[n]["eye_px_64"], "p95") for n in names],
        _fmt_stats(ref["composite_eye_px_64"], "p95"))  # fmt: skip
    for s in sizes:
        row(f"  time per photo {s} (median)", [f"{c[n]['median_s'][s]:.2f} s" if s in c[n]["median_s"] else "-"
                                                 for n in names])  # fmt: skip
    width = max(len(label) for label, _ in rows) + 2
    cols = [max(len(h), *(len(v[i]) for _, v in rows if v)) + 2 for i, h in enumerate(heads)]
    lines = [" " * width + "".join(h.ljust(w) for h, w in zip(heads, cols))]
    for label, values in rows:
        cells = "" if values is None else "".join(v.ljust(w) for v, w in zip(values, cols))
        lines.append(label.ljust(width) + cells)
    lines.append(
        "mesh IoU: vs the annotated face (" + ", ".join(FACE_PARTS) + "); "
        + "; ".join(f"{result[n]['detector']}: {result[n]['mask']}" for n in names)
        + ". eye error: align(face, 512) on the annotated eye centres vs TEMPLATE_512's eyes."
    )  # fmt: skip
    return "\n".join(line.rstrip() for line in lines)


def draw_preview(photo: np.ndarray, truths: list[Truth], faces: dict, path: Path) -> Path:
    """A copy of `photo` with the known faces (blue), MediaPipe's boxes (green), outlines (yellow) and landmarks
    (magenta), and the cascade's boxes (red), written as PNG to `path` (a legend band above the photo)."""
    import cv2

    img = np.ascontiguousarray(photo.copy())
    lw = max(2, round(max(img.shape[:2]) / 800))
    font, scale, thick = cv2.FONT_HERSHEY_SIMPLEX, 0.3 * lw, max(1, lw - 1)
    for t in truths:
        cx, cy = (round(v) for v in t.centre)
        cv2.circle(img, (cx, cy), round(t.width / 2), (40, 90, 255), lw)
        cv2.drawMarker(img, (cx, cy), (40, 90, 255), cv2.MARKER_CROSS, 6 * lw, lw)
    colours = {"mediapipe": (0, 220, 0), "opencv": (255, 30, 30)}
    for name, found in faces.items():
        for i, f in enumerate(found):
            x0, y0, x1, y1 = (round(v) for v in f.box)
            cv2.rectangle(img, (x0, y0), (x1, y1), colours.get(name, (255, 255, 255)), lw)
            if f.outline is not None:
                pts = np.round(np.asarray(f.outline)).astype(np.int32)
                cv2.polylines(img, [pts], True, (255, 230, 0), lw)
            if f.landmarks is not None:
                for x, y in f.landmarks:
                    cv2.circle(img, (round(x), round(y)), lw + 1, (255, 0, 255), -1)
            label = f"{'M' if name == 'mediapipe' else 'C'}{i} {f.roll:+.0f}"
            ty = y0 - 2 * lw if name == "mediapipe" else y1 + 10 * lw
            cv2.putText(img, label, (x0, ty), font, scale, colours.get(name, (255,) * 3), thick, cv2.LINE_AA)
    legend = [
        ("known face: skin centre and width", (40, 90, 255)),
        ("MediaPipe box, M<index> <roll>", colours["mediapipe"]),
        ("MediaPipe outline", (255, 230, 0)),
        ("MediaPipe landmarks", (255, 0, 255)),
        ("OpenCV cascade box, C<index> <roll>", colours["opencv"]),
    ]
    (_, th), _ = cv2.getTextSize(legend[0][0], font, scale, thick)
    step = int(th * 1.8)
    band = np.zeros((step * len(legend) + th, img.shape[1], 3), np.uint8)  # above the photo: hides no face
    for k, (text, colour) in enumerate(legend):
        cv2.putText(band, text, (6, step * (k + 1)), font, scale, colour, thick, cv2.LINE_AA)
    img = np.vstack([band, img])
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("../shared/fixtures/celebamask-hq-mini"))
    parser.add_argument("--json", type=Path, help="also write the figures (and per-photo records) here")
    parser.add_argument("--preview", type=Path, metavar="DIR", help=f"write DIR/{PREVIEW}")
    parser.add_argument("--portraits", type=int, help="only the first N portraits (default: all)")
    parser.add_argument("--composites", type=int, help=f"only the first N composites (default: {len(COMPOSITES)})")
    parser.add_argument("--detectors", default=",".join(DETECTORS), help="comma-separated, of " + ", ".join(DETECTORS))
    parser.add_argument("--min-face", type=float, default=MIN_FACE, help="px asked of the detectors (default 40)")
    parser.add_argument("--raise", dest="raises", default="", help="forehead raises for a mesh IoU sweep: 0.15,0.25")
    args = parser.parse_args(argv)
    if not (args.root / "ids.txt").is_file():
        parser.error(f"no fixture at {args.root} (ids.txt missing)")
    start = time.perf_counter()
    result = measure(
        args.root,
        portraits=args.portraits,
        composites=COMPOSITES[: args.composites] if args.composites is not None else COMPOSITES,
        detectors=[d.strip() for d in args.detectors.split(",") if d.strip()],
        min_face=args.min_face,
        raises=[float(r) for r in args.raises.split(",") if r.strip()],
        preview=args.preview,
        progress=True,
    )
    result["config"]["seconds"] = round(time.perf_counter() - start, 1)
    print(table(result))
    print(f"run time {result['config']['seconds']:.0f} s")
    if args.preview:
        print(f"preview: {args.preview / PREVIEW}")
    if args.json:
        plain = lambda o: o.item() if hasattr(o, "item") else str(o)  # noqa: E731  numpy scalars
        args.json.write_text(json.dumps(result, indent=1, default=plain))
        print(f"figures: {args.json}")


if __name__ == "__main__":
    main()
