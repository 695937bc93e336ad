import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from facepaint.editing import watermark as wm


def photo(h=200, w=160, seed=0):
    """Smooth structure plus sensor-like noise, as uint8 RGB."""
    rng = np.random.default_rng(seed)
    smooth = gaussian_filter(rng.normal(128, 60, (h, w, 3)), sigma=(6, 6, 0))
    return np.clip(smooth + rng.normal(0, 3, (h, w, 3)), 0, 255).astype(np.uint8)


def face(h=200, w=160):
    m = np.zeros((h, w), bool)
    m[50:150, 40:120] = True
    return m


def test_pattern_is_keyed_and_reproducible():
    p = wm.pattern((30, 40), key="a")
    assert p.shape == (30, 40) and set(np.unique(p)) == {-1, 1}
    assert np.array_equal(p, wm.pattern((30, 40), key="a"))
    assert not np.array_equal(p, wm.pattern((30, 40), key="b"))
    assert np.array_equal(wm.pattern((5, 5), key=7), wm.pattern((5, 5), key="7"))


def test_embed_touches_only_masked_pixels_by_at_most_the_amplitude():
    img, m = photo(), face()
    marked = wm.embed(img, m)
    assert np.array_equal(marked[~m], img[~m])
    delta = marked.astype(int) - img.astype(int)
    assert np.abs(delta).max() == wm.AMPLITUDE and (delta[m] != 0).mean() > 0.99
    white = np.full_like(img, 255)  # saturated pixels clip instead of wrapping around
    assert wm.embed(white, m)[m].min() == 255 - wm.AMPLITUDE and wm.embed(white, m).max() == 255
    with pytest.raises(ValueError, match="does not match"):
        wm.embed(img, m[:-1])


def test_detection_separates_marked_from_unmarked():
    img, m = photo(), face()
    marked = wm.embed(img, m, key="k")
    assert wm.detect(marked, m, key="k") > 20
    assert wm.is_marked(marked, m, key="k") and wm.is_marked(
        marked, None, key="k"
    )  # whole image: diluted, still found
    assert abs(wm.detect(img, m, key="k")) < wm.THRESHOLD
    assert abs(wm.detect(marked, m, key="other")) < wm.THRESHOLD
    # Unmarked scores are about standard normal: no false alarm over many keys.
    scores = np.array([wm.detect(img, m, key=k) for k in range(200)])
    assert abs(scores.mean()) < 0.3 and 0.7 < scores.std() < 1.3 and np.abs(scores).max() < wm.THRESHOLD
    assert wm.detect(np.zeros_like(img), m) == 0.0  # no texture at all: no evidence either way
