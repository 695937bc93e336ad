"""Pixel-level blending (SPEC section 4): I_blend = I_result * M_soft + I * (1 - M_soft), M_soft = G_sigma * M.

The one home of the soft mask's sigma is `SamplingOptions.sigma` (facepaint.method.options), in pixels of a
512 px face crop, the SPEC's resolution (the paper does not state it; 4 px is our choice). A model trained at
another resolution R blends with `sigma_pixels(sigma, R)` = sigma x R / 512 pixels, so the seam is the same
fraction of the face at every resolution (the demo's 128 px model: 1 px). Training never reads it: the loss
uses M_latent (facepaint.method.masks), so changing sigma re-evaluates a model without retraining it.

Both the editor (facepaint.editing, on each aligned face crop) and the evaluation (facepaint.evaluation, on
each square test photo) call these two functions, at the model's resolution.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

SIGMA_REFERENCE = 512  # px: the face-crop side that SamplingOptions.sigma is measured at


def sigma_pixels(sigma: float, resolution: int) -> float:
    """The soft mask's std in pixels of a `resolution` px crop, for `sigma` in pixels of a 512 px crop."""
    return sigma * resolution / SIGMA_REFERENCE


def soft_mask(mask: np.ndarray, sigma_px: float) -> np.ndarray:
    """G_sigma * M as float32 in [0, 1] (`sigma_px` in the mask's own pixels, see `sigma_pixels`); exactly 0
    farther than 3 sigma from the face."""
    m = mask.astype(np.float32)
    if sigma_px == 0:
        return m
    return np.clip(gaussian_filter(m, sigma=sigma_px, mode="nearest", truncate=3.0), 0.0, 1.0)


def pixel_blend(original: np.ndarray, result: np.ndarray, soft: np.ndarray) -> np.ndarray:
    """I_blend = I_result * M_soft + I * (1 - M_soft), rounded to uint8; where M_soft == 0 the
    original's bytes are copied, so those pixels are bit-identical by construction."""
    s = soft[..., None].astype(np.float32)
    mixed = result.astype(np.float32) * s + original.astype(np.float32) * (1 - s)
    return np.where(s > 0, np.clip(np.rint(mixed), 0, 255).astype(np.uint8), original)
