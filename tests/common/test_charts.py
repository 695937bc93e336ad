"""facepaint.common.charts: a line chart's series, smoothing and panels, written atomically."""

import numpy as np
from PIL import Image

from facepaint.common.charts import line_chart


def test_panels_give_each_series_its_own_axis(tmp_path):
    """Series of scales 0.01 and 100 in one axis flatten the small one; panels stack one axis per series."""
    x = np.arange(50)
    series = {"small": 0.01 * np.sin(x), "large": 100 * np.cos(x), "third": x}
    one = line_chart(x, series, tmp_path / "one.png", "t", "step", "loss")
    stacked = line_chart(x, series, tmp_path / "panels.png", "t", "step", "loss", panels=True)
    w1, h1 = Image.open(one).size
    w2, h2 = Image.open(stacked).size
    assert w1 == w2 and h2 > h1  # three panels, one above the other

    def blue_rows(path, rows):  # the rows where the first series (C0, blue) is drawn
        image = np.asarray(Image.open(path).convert("RGB")).astype(int)[rows]
        ys = np.nonzero(((image[..., 2] - image[..., 0]) > 80).sum(axis=1) > 2)[0]
        return ys.max() - ys.min() if len(ys) else 0

    # the small series spans its own panel (on one axis beside the large one it would be a flat line)
    assert blue_rows(stacked, slice(0, h2 // 3)) > h2 // 3 * 0.4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.png", "panels.png"]  # no temporary left


def test_one_axis_draws_every_series_with_a_legend(tmp_path):
    x = np.arange(10)
    path = line_chart(x, {"a": x, "b": x[::-1]}, tmp_path / "c.png", "t", "step", "loss", smooth=3)
    image = np.asarray(Image.open(path).convert("RGB")).astype(int)
    blue = ((image[..., 2] - image[..., 0]) > 80).sum()  # C0 (blue) and C1 (orange) lines
    orange = ((image[..., 0] - image[..., 2]) > 80).sum()
    assert blue > 50 and orange > 50
