"""The blend's soft mask (facepaint.method.blend): M_soft = G_sigma * M, sigma in pixels of a 512 px crop."""

import numpy as np
import pytest

from facepaint.method.blend import SIGMA_REFERENCE, sigma_pixels, soft_mask


def square(side: int, lo: int, hi: int) -> np.ndarray:
    m = np.zeros((side, side), dtype=bool)
    m[lo:hi, lo:hi] = True
    return m


def test_soft_mask_properties():
    m = square(64, 16, 48)
    s = soft_mask(m, 2.0)  # sigma in the mask's own pixels
    assert s.dtype == np.float32 and s.min() >= 0 and s.max() <= 1
    assert s[32, 32] == pytest.approx(1.0, abs=1e-6)  # deep inside
    assert s[0, 0] == 0.0 and s[16 - 7, 32] == 0.0  # farther than 3 sigma (6 px): exactly zero
    assert s[16 - 5, 32] > 0  # within reach of the blur
    assert s[16, 32] == pytest.approx(0.5, abs=0.12)  # the edge is about half
    assert np.allclose(s, s[:, ::-1]) and np.allclose(s, s.T)
    assert np.array_equal(soft_mask(m, 0), m.astype(np.float32))


def test_sigma_pixels_scales_with_the_resolution():
    assert SIGMA_REFERENCE == 512
    assert sigma_pixels(4.0, 512) == pytest.approx(4.0)  # the reference: 4 px of a 512 px crop
    assert sigma_pixels(4.0, 128) == pytest.approx(1.0)  # the demo's 128 px model: 1 px (the old masks.sigma 1.0)
    assert sigma_pixels(4.0, 64) == pytest.approx(0.5)
    assert sigma_pixels(8.0, 64) == pytest.approx(1.0)  # a 64 px model needs 8.0 for a 1 px blend
    assert sigma_pixels(0.0, 128) == 0.0


def test_the_seam_is_the_same_fraction_of_the_face_at_every_resolution():
    """sigma 4.0 reaches 3 sigma = 12 px beyond the face at 512 px and 3 px at 128 px: a quarter of the side each
    way, so the soft mask at 128 px is the one at 512 px seen at a quarter of the size."""
    big, small = square(512, 128, 384), square(128, 32, 96)
    s512, s128 = soft_mask(big, sigma_pixels(4.0, 512)), soft_mask(small, sigma_pixels(4.0, 128))
    assert np.array_equal(s128, soft_mask(small, 1.0))
    # exactly zero beyond 3 sigma, nonzero within it
    assert s512[128 - 13, 256] == 0.0 and s512[128 - 11, 256] > 0
    assert s128[32 - 4, 64] == 0.0 and s128[32 - 2, 64] > 0
    # a row across the edge at 128 px matches the 512 px row averaged over each 4 px
    row512 = s512[256, 96:160].reshape(-1, 4).mean(axis=1)
    assert np.abs(s128[64, 24:40] - row512).max() < 0.03
