"""Throughput of the faces stage (a folder of photos -> aligned training crops) and how its crops are framed.

    python bench/faces.py                  # the CelebA-HQ fixture (../shared) made into messy folders
    python bench/faces.py --n 60 --device cuda --detector retinaface --mask-backend bisenet

Two folders are built from real photos with tools/photo_folder.py and tools/composites.py: `portraits` (n
CelebA-HQ portraits re-encoded, shrunk, EXIF-rotated, nested WEBP, pasted rolled onto larger canvases: one face
each) and `groups` (n / 4 photos of 2400 x 1600 with 4 faces each). Each is run through the stage's own code
(facepaint.data.faces.extract_faces with a FaceHelper of params.yaml's `faces` settings, overridable here),
after a warm-up photo, and measured: photos/s, faces/s, and for the portraits the eye-centre distance of each
crop from CelebA-HQ's own framing of the same portrait (px at 512), since a training crop should be framed as
the dataset the model knows. Without ../shared, skimage's astronaut stands in (framed by its hand-placed
landmarks). Prints a table and writes bench/results/faces-<device>.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import versions, write_result  # noqa: E402
from facepaint.data.faces import FacesConfig, extract_faces, scan_folder  # noqa: E402
from facepaint.method.face_helper import FaceHelper  # noqa: E402
from facepaint.method.models import pick_device  # noqa: E402
from stages.common import load_params, section  # noqa: E402
from tools.photo_folder import eye_error, photo_folder  # noqa: E402

FIXTURE = REPO.parent / "shared" / "fixtures" / "celebamask-hq-mini"


def portraits(n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """n (portrait, its eye centres): the fixture's annotated portraits, else the astronaut framed by hand."""
    out = []
    if FIXTURE.is_dir():
        from tools.composites import portrait_landmarks

        for p in sorted((FIXTURE / "CelebA-HQ-img").glob("*.jpg"), key=lambda p: int(p.stem)):
            im = np.asarray(Image.open(p).convert("RGB"))
            lm, _, _ = portrait_landmarks(FIXTURE, int(p.stem), im.shape[0])
            if lm is not None:
                out.append((im, lm[:2]))
            if len(out) == n:
                return out
    import cv2
    from skimage import data

    from facepaint.method.alignment import TEMPLATE_512

    landmarks = np.array([(202.5, 100.5), (246.5, 103.0), (224.0, 126.0), (202.0, 141.5), (245.0, 142.5)])
    m, _ = cv2.estimateAffinePartial2D(landmarks, TEMPLATE_512, method=cv2.LMEDS)
    framed = cv2.warpAffine(data.astronaut(), m, (512, 512), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    return (out * (n // max(len(out), 1) + 1))[:n] if out else [(framed, TEMPLATE_512[:2].copy())] * n


def groups(out: Path, n: int) -> None:
    from tools.composites import composite

    out.mkdir(parents=True, exist_ok=True)
    if not FIXTURE.is_dir():
        return
    ids = sorted(int(p.stem) for p in (FIXTURE / "CelebA-HQ-img").glob("*.jpg"))
    for k in range(n):
        photo, _ = composite(FIXTURE, ids[4 * k : 4 * k + 4], canvas=(2400, 1600), seed=k)
        Image.fromarray(photo).save(out / f"group_{k:03d}.jpg", quality=92)


def run(folder: Path, out: Path, cfg: FacesConfig, helper) -> tuple[dict, object]:
    scanned = scan_folder(folder)
    warm = out / "warm"
    extract_faces(replace(scanned, photos=scanned.photos[:1]), warm, cfg, helper, progress=False)
    start = time.perf_counter()
    df, report = extract_faces(scanned, out / "run", cfg, helper, progress=False)
    t = time.perf_counter() - start
    n = len(scanned.photos)
    return {"photos": n, "faces": len(df), "unusable": len(report.unusable), "seconds": round(t, 2),
            "photos_per_s": round(n / t, 2), "faces_per_s": round(len(df) / t, 2)}, df  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=48, help="portraits (groups: n / 4 photos of 4 faces)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--detector", default=None, help="override of faces.detector")
    ap.add_argument("--mask-backend", default=None, help="override of faces.mask_backend")
    ap.add_argument("--size", type=int, default=None, help="override of faces.size (the paper profile's: 512)")
    ap.add_argument("--bisenet-weights", default=None, help="BiSeNet's weights, or `random` (its speed, not masks)")
    ap.add_argument("--out", default=None, help="json path (default bench/results/faces-<device>.json)")
    args = ap.parse_args()
    device = pick_device(args.device)
    params = load_params(REPO / "params.yaml")
    given = (("detector", args.detector), ("mask_backend", args.mask_backend), ("size", args.size))
    cfg = section(params, "faces", FacesConfig, device=str(device), **{k: v for k, v in given if v})
    parts = params["masks"]["parts"]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights = args.bisenet_weights
        if weights == "random":
            import torch
            from facexlib.parsing.bisenet import BiSeNet

            from facepaint.method.masks import BISENET_CLASSES

            weights = tmp / "bisenet.pth"
            torch.save(BiSeNet(num_class=len(BISENET_CLASSES)).state_dict(), weights)
        helper = FaceHelper(
            cfg.size, parts, detector=cfg.detector, mask_backend=cfg.mask_backend, bisenet_weights=weights,
            device=str(device),
        )  # fmt: skip
        truths = photo_folder(tmp / "portraits", portraits(args.n), seed=0, broken=False)
        rows["portraits"], df = run(tmp / "portraits", tmp / "p", cfg, helper)
        errors = np.array(
            [
                eye_error(np.reshape(df[df.photo == t.photo].iloc[0].matrix, (2, 3)), t, cfg.size)
                for t in truths
                if (df.photo == t.photo).any()
            ]  # fmt: skip
        )
        rows["portraits"]["eye_error_px_at_512"] = {
            "mean": round(float(errors.mean()), 2), "median": round(float(np.median(errors)), 2),
            "p95": round(float(np.percentile(errors, 95)), 2), "max": round(float(errors.max()), 2),
        }  # fmt: skip
        groups(tmp / "groups", max(1, args.n // 4))
        if any((tmp / "groups").iterdir()):
            rows["groups 2400x1600"], _ = run(tmp / "groups", tmp / "g", cfg, helper)
    detector = helper.face_detector().name
    print(f"\nfaces stage on {device} (detector {detector}, mask {helper.mask_backend}, crops {cfg.size} px)")
    print(f"{'folder':<18} {'photos':>6} {'faces':>6} {'s':>7} {'photos/s':>9} {'faces/s':>8}  eye error px@512")
    for name, r in rows.items():
        e = r.get("eye_error_px_at_512")
        err = f"mean {e['mean']} median {e['median']} p95 {e['p95']} max {e['max']}" if e else ""
        print(
            f"{name:<18} {r['photos']:>6} {r['faces']:>6} {r['seconds']:>7} {r['photos_per_s']:>9} "
            f"{r['faces_per_s']:>8}  {err}"
        )
    data = str(FIXTURE) if FIXTURE.is_dir() else "skimage astronaut"
    result = {"device": str(device), "detector": detector, "mask": helper.mask_backend, "size": cfg.size,
              "data": data, "rows": rows, **versions()}  # fmt: skip
    write_result(result, "faces", device, args.out)


if __name__ == "__main__":
    main()
