"""A real face photo that every clone has: `skimage.data.astronaut()`, NASA's public-domain portrait of Eileen
Collins (512 x 512 RGB, shipped in scikit-image's wheel). The editing tests that need a real face and use the
licensed CelebAMask-HQ fixture (skipped where it is absent) have twins on it that always run.

`LANDMARKS` and `FACE` were placed by hand on the portrait (the landmarks aligned onto TEMPLATE_512 give a
crop framed as CelebA-HQ frames its faces); `heads` pastes its head, scaled and rolled, onto a textured canvas
with each face's landmarks and mask carried through the known transform (as tools/composites.py does for the
fixture's portraits)."""

from __future__ import annotations

import numpy as np

# 5 x (x, y) in TEMPLATE_512's order: left and right eye centres, nose tip, left and right mouth corners
LANDMARKS = np.array([(202.5, 100.5), (246.5, 103.0), (224.0, 126.0), (202.0, 141.5), (245.0, 142.5)], np.float64)
FACE = ((224, 122), (40, 48))  # the face (brows to chin, cheek to cheek) as an ellipse: centre, semi-axes
HEAD = (120, 20, 330, 230)  # x0, y0, x1, y1: the square around the head that `heads` pastes
# three heads on a 701 x 301 canvas (scale, roll in degrees counter-clockwise, centre): OpenCV's cascade finds
# each of them (faces about 90 px wide) and nothing else
GROUP = [(1.0, 10.0, (120, 150)), (0.9, -20.0, (350, 160)), (1.1, 5.0, (580, 145))]


def photo() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def face_mask() -> np.ndarray:
    """bool 512 x 512: the face ellipse `FACE` (what a user would paint)."""
    import cv2

    m = np.zeros((512, 512), np.uint8)
    cv2.ellipse(m, FACE[0], FACE[1], 0, 0, 360, 1, -1)
    return m.astype(bool)


def heads(places=GROUP, canvas=(701, 301), seed=5):
    """(photo, faces, mask, matrices): the portrait's `HEAD` square pasted at each (scale, roll, centre) of
    `places` onto a textured canvas of size (w, h); per head its `Face` (box around its landmarks, the
    landmarks) and its 2x3 similarity portrait -> canvas; `mask` the union of the face ellipses."""
    import cv2

    from facepaint.method.alignment import similarity
    from facepaint.method.detection import Face
    from tools.composites import paste_portrait, texture, to_canvas

    w, h = canvas
    out = texture(canvas, np.random.default_rng(seed))
    x0, y0, x1, y1 = HEAD
    head = photo()[y0:y1, x0:x1]
    face = face_mask().astype(np.float32)
    faces, matrices, mask = [], [], np.zeros((h, w), bool)
    for scale, roll, centre in places:
        m = similarity(roll, scale, ((x1 - x0 - 1) / 2, (y1 - y0 - 1) / 2), centre)  # the head square -> canvas
        paste_portrait(out, head, m)
        whole = m.copy()  # the whole portrait -> canvas
        whole[:, 2] -= m[:, :2] @ np.array([x0, y0], np.float64)
        lm = to_canvas(LANDMARKS, whole)
        faces.append(Face((*lm.min(0), *lm.max(0)), 1.0, tuple(map(tuple, lm))))
        matrices.append(whole)
        mask |= cv2.warpAffine(face, whole, (w, h), flags=cv2.INTER_LINEAR) > 0.5
    return out, faces, mask, matrices
