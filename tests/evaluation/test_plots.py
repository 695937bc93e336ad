"""facepaint.evaluation.plots: how far each method changes the photo around the mask boundary, and the figures
(written as PNG)."""

import numpy as np
import pandas as pd
from PIL import Image

from facepaint.evaluation import plots
from facepaint.evaluation.run import Sample
from facepaint.method.blend import soft_mask


def sample(h=32, face=(8, 24)) -> Sample:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (h, h, 3), dtype=np.uint8)
    mask = np.zeros((h, h), bool)
    mask[face[0] : face[1], face[0] : face[1]] = True
    return Sample(0, image, mask, soft_mask(mask, 1.0), float(mask.mean()))


def test_boundary_profile_shows_where_the_change_stops():
    s = sample()
    inside = s.image.copy()
    inside[s.mask] = 255 - inside[s.mask]
    prof = plots.boundary_profile([s], {"m": [inside]}, radius=4)
    by = prof.set_index("distance")["mean_abs_change"]
    assert list(by.index) == list(range(-4, 5))
    assert (by.loc[1:] == 0).all() and (by.loc[:0] > 0).all()


def test_figures_are_written_as_png(tmp_path):
    s = sample()
    edited = s.image.copy()
    edited[s.mask] = 0
    table = pd.DataFrame({"method": ["ours", "sd15_inpaint"], "psnr_bg": [np.inf, 30.0], "lpips_bg": [0.0, 0.1]})
    summary = {"masked": {"psnr_bg": 30.0, "psnr_bg_std": 1.0}, "uniform": {"psnr_bg": 29.0, "psnr_bg_std": 0.5}}
    profile = plots.boundary_profile([s], {"ours": [edited]}, radius=4)
    plots.plot_distributions(table, tmp_path / "a.png")
    plots.plot_profile(profile, s, {"ours": edited}, tmp_path / "b.png")
    plots.sample_grid([s], ["a prompt"], {"ours": [edited]}, tmp_path / "c.png")
    plots.plot_metrics(summary, tmp_path / "d.png")
    for name in "abcd":
        with Image.open(tmp_path / f"{name}.png") as im:
            assert im.format == "PNG" and min(im.size) > 100, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png", "c.png", "d.png"]  # no temporary left
