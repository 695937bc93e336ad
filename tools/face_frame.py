"""Measure how CelebA-HQ frames a face relative to OpenCV's cascade box (alignment.BOX_FRAME).

    python -m tools.face_frame [--root ../shared/fixtures/celebamask-hq-mini]

Runs the cascade detector on every portrait (each is one CelebA-HQ frame), keeps the largest face near the
centre, and prints the median box side / frame side and the median offset of the frame's centre from the
box centre (in frame sides), with their spread; and how far the fixture's annotated eye centres lie from
the 5-point template's eyes. The printed dict is what facepaint.method.alignment.BOX_FRAME holds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from facepaint.method.alignment import TEMPLATE_512
from facepaint.method.detection import CascadeDetector
from tools.composites import portrait_landmarks


def measure(root: Path) -> dict:
    detector = CascadeDetector(roll_step=0.0)
    ids = [int(x) for x in (root / "ids.txt").read_text().split()]
    sides, dxs, dys, eyes, missed = [], [], [], [], 0
    for image_id in ids:
        photo = np.asarray(Image.open(root / "CelebA-HQ-img" / f"{image_id}.jpg").convert("RGB"))
        n = photo.shape[0]
        faces = [f for f in detector.detect(photo, min_face=n * 0.2) if abs(f.centre[0] - n / 2) < n / 4]
        lms, _, _ = portrait_landmarks(root, image_id, n)
        if lms is not None:
            eyes.append(lms[:2] * 512 / n - TEMPLATE_512[:2])
        if not faces:
            missed += 1
            continue
        f = max(faces, key=lambda f: f.size)
        sides.append(f.size / n)
        dxs.append((n / 2 - f.centre[0]) / n)
        dys.append((n / 2 - f.centre[1]) / n)
    eyes = np.abs(np.array(eyes)).mean(0)
    q = lambda v: np.percentile(v, [10, 50, 90]).round(4).tolist()  # noqa: E731
    return {
        "portraits": len(ids),
        "detected": len(sides),
        "missed": missed,
        "side": q(sides),
        "dx": q(dxs),
        "dy": q(dys),
        "BOX_FRAME": {
            "side": round(float(np.median(sides)), 4),
            "dx": round(float(np.median(dxs)), 4),
            "dy": round(float(np.median(dys)), 4),
        },
        "eye_offset_px_at_512": {"x": round(float(eyes[:, 0].mean()), 2), "y": round(float(eyes[:, 1].mean()), 2)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("../shared/fixtures/celebamask-hq-mini"))
    for k, v in measure(parser.parse_args().root).items():
        print(f"{k}: {v}")


if __name__ == "__main__":
    main()
