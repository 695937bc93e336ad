"""The evaluate stage: pairs, aggregation, figures, the real-photo blending check, and end to end."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from facepaint import evaluate as ev
from tests.helpers import config


def ecfg(**changes) -> ev.EvalConfig:
    """The demo's evaluate params with `changes`."""
    return config("evaluate", ev.EvalConfig, **changes)


@pytest.fixture(scope="module")
def BUILD(baselines):
    e = ecfg()
    return dict(device="cpu", dtype="fp32", baselines=baselines, brushnet=e.brushnet, diptych=e.diptych)


def captions_table():
    ids = list(range(30))
    return pd.DataFrame(
        {
            "id": ids,
            "split": ["test" if i % 3 == 0 else "train" for i in ids],
            "eval_prompt": [f"prompt {i}" if i % 3 == 0 else None for i in ids],
        }
    )


def test_pairs_are_seeded_test_images_with_prompts():
    pairs, notes = ev.draw_pairs(captions_table(), range(30), 5, 42)
    assert len(pairs) == 5 and notes == [] and all(i % 3 == 0 for i in pairs["id"])
    assert list(pairs["prompt"]) == [f"prompt {i}" for i in pairs["id"]]
    again, _ = ev.draw_pairs(captions_table().sample(frac=1, random_state=1), range(30), 5, 42)
    assert again.equals(pairs)
    other, _ = ev.draw_pairs(captions_table(), range(30), 5, 7)
    assert list(other["id"]) != list(pairs["id"])
    few, notes = ev.draw_pairs(captions_table(), [0, 3, 4], 5, 42)  # only usable (masked) ids count
    assert sorted(few["id"]) == [0, 3] and "only 2" in notes[0]
    assert pairs["seed"].is_unique


def sample(h=32, face=(8, 24)):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (h, h, 3), dtype=np.uint8)
    mask = np.zeros((h, h), bool)
    mask[face[0] : face[1], face[0] : face[1]] = True
    from facepaint.method.blend import soft_mask

    return ev.Sample(0, image, mask, soft_mask(mask, 1.0), float(mask.mean()))


def test_image_metrics_regions_on_a_constructed_example():
    s = sample()
    face_only = s.image.copy()
    face_only[s.mask] = 0  # changed only inside M
    r = ev.image_metrics(s, face_only, dilation=2)
    assert math.isinf(r["psnr_bg"]) and math.isinf(r["psnr_outside_soft"]) and math.isfinite(r["psnr_full"])
    assert math.isinf(r["psnr_dilated"]) and r["changed_outside_soft"] == 0
    # A change one pixel outside M (where M_soft > 0, as a blend leaves it): the headline background
    # (outside M) sees it, the dilated background and the M_soft == 0 region do not.
    seam = s.image.copy()
    ring = np.zeros_like(s.mask)
    ring[7, 8:24] = True  # the row just above the face
    assert not s.mask[ring].any() and (s.soft[ring] > 0).all()
    seam[ring] = 255 - seam[ring]
    r = ev.image_metrics(s, seam, dilation=2)
    assert math.isfinite(r["psnr_bg"]) and math.isinf(r["psnr_dilated"]) and math.isinf(r["psnr_outside_soft"])
    everywhere = np.clip(s.image.astype(int) + 1, 0, 255).astype(np.uint8)
    r = ev.image_metrics(s, everywhere, dilation=2)
    assert all(math.isfinite(r[f"psnr_{k}"]) for k in ev.REGIONS) and r["changed_outside_soft"] > 0


def test_lpips_is_taken_in_every_region():
    s = sample()
    calls = []

    def lpips(a, b, region=None):
        calls.append(None if region is None else int(region.sum()))
        return 0.5

    r = ev.image_metrics(s, s.image, dilation=2, lpips=lpips)
    assert {f"lpips_{k}" for k in ev.REGIONS} <= set(r)
    assert calls[0] == (~s.mask).sum() and calls[-1] is None and len(set(calls)) == 4


def test_summary_counts_exact_images_instead_of_averaging_inf():
    t = pd.DataFrame(
        {
            "method": ["a", "a", "a", "b"],
            "psnr_bg": [math.inf, 30.0, 32.0, 20.0],
            "psnr_full": [40.0, 30.0, 20.0, 20.0],
            "psnr_outside_soft": [math.inf, math.inf, math.inf, 25.0],
            "lpips_bg": [0.1, 0.2, 0.3, 0.4],
            "changed_outside_soft": [0, 0, 0, 7],
            "seconds": [1.0, 3.0, 2.0, 2.0],
            "peak_mem_mib": [None, None, None, None],
            "clock": ["cpu"] * 4,
        }
    )
    s = ev.summarise(t)
    assert s["a"]["psnr_bg"] == 31.0 and s["a"]["psnr_bg_std"] == 1.0 and s["a"]["psnr_bg_inf"] == 1
    assert s["a"]["psnr_full"] == 30.0 and s["a"]["psnr_full_std"] == pytest.approx(np.std([40, 30, 20]))
    assert math.isinf(s["a"]["psnr_outside_soft"]) and s["a"]["psnr_outside_soft_inf"] == 3
    assert s["a"]["lpips_bg"] == pytest.approx(0.2) and s["a"]["lpips_bg_std"] == pytest.approx(
        np.std([0.1, 0.2, 0.3])
    )
    assert s["b"]["changed_outside_soft"] == 7 and s["a"]["seconds_per_edit"] == 2.0


def test_fid_reference_leaves_out_the_evaluated_pairs():
    test_ids = range(0, 60, 3)
    pairs, _ = ev.draw_pairs(captions_table(), range(30), 5, 42)
    ref = ev.fid_reference_ids(test_ids, pairs["id"], 100, 42)
    assert not set(ref) & set(pairs["id"]) and len(ref) == 20 - len(set(pairs["id"]) & set(test_ids))
    assert ev.fid_reference_ids(test_ids, pairs["id"], 4, 42) == ref[:4]


def test_boundary_profile_shows_where_the_change_stops():
    s = sample()
    inside = s.image.copy()
    inside[s.mask] = 255 - inside[s.mask]
    prof = ev.boundary_profile([s], {"m": [inside]}, radius=4)
    by = prof.set_index("distance")["mean_abs_change"]
    assert (by.loc[1:] == 0).all() and (by.loc[:0] > 0).all()


def test_markdown_table_marks_unavailable_and_lists_published_numbers():
    summary = {
        m: {
            "psnr_bg": psnr,
            "psnr_bg_std": 0.5,
            "psnr_bg_inf": 2,
            "psnr_full": 31.2,
            "psnr_full_std": 1.0,
            "psnr_full_inf": 0,
            "changed_outside_soft": 0,
            "seconds_per_edit": 1.5,
            "clock": "cpu",
            "peak_mem_mib": None,
        }
        for m, psnr in (("ours", 36.25), ("ours_no_blend", math.inf))
    }
    md = ev.markdown_table(
        summary, {}, {"brushnet": "no weights"}, {"fid": "Inception weights missing"}, {}, "CPU", 8, 2
    )
    assert "| ours | n/a | 36.250 ± 0.500 (+2 exact) | n/a |" in md
    assert "| ours (no blending) | n/a | inf (all 2 exact) |" in md
    assert "BrushNet: not available: no weights" in md and "FID: unavailable: Inception weights missing" in md
    assert "| BrushNet | n/a |" in md
    assert "63.981" in md and "35.04 ± 0.63" in md and "34.59 ± 0.58" in md  # Tables 2 and 1 as published
    assert "outside M dilated 2 px" in md and "31.200 ± 1.000" in md


def test_config_validation():
    with pytest.raises(SystemExit, match="unknown"):
        ecfg(methods=["ours", "dalle"])


# ------------------------------------------------------------------------------------- real photos


@pytest.mark.fixture
def test_blending_on_real_photos_keeps_every_zero_alpha_pixel(fixture_root, tiny_artifact, BUILD):
    """Real CelebA-HQ photos, tiny model: blended outputs have PSNR = inf where M_soft == 0, the
    unblended ones do not."""
    from facepaint.data.masks import annotation_union
    from facepaint.evaluation.methods.registry import build_methods
    from facepaint.method.blend import soft_mask
    from facepaint.method.masks import face_mask

    ids = sorted(int(x) for x in (fixture_root / "ids.txt").read_text().split())[:3]
    samples = []
    for i in ids:
        from facepaint.common.images import load_rgb, resize_rgb

        image = resize_rgb(load_rgb(fixture_root / "CelebA-HQ-img" / f"{i}.jpg").image, 64)
        union, _ = annotation_union(fixture_root, i, tiny_artifact.conditions.parts)
        fm = face_mask(union, 64, 8)
        samples.append(ev.Sample(i, image, fm.mask, soft_mask(fm.mask, tiny_artifact.conditions.sigma), fm.beta))
    pairs = pd.DataFrame({"id": ids, "prompt": ["a smiling woman with blond hair"] * 3, "seed": [1, 2, 3]})
    methods, _ = build_methods(["ours", "ours_no_blend"], tiny_artifact.path, ecfg(steps=2).inference(), **BUILD)
    res = ev.run(samples, pairs, methods, ecfg(warmup=0, background_dilation=2), torch.device("cpu"), progress=False)
    t = res.table.set_index("method")
    assert res.failed == {}
    assert np.isinf(t.loc["ours", "psnr_outside_soft"]).all() and (t.loc["ours", "changed_outside_soft"] == 0).all()
    assert np.isfinite(t.loc["ours_no_blend", "psnr_outside_soft"]).all()
    assert (t.loc["ours_no_blend", "changed_outside_soft"] > 0).all()
    s = res.summary
    assert s["ours"]["psnr_bg"] > s["ours_no_blend"]["psnr_bg"] or s["ours"]["psnr_bg_inf"] == 3


def test_a_failing_method_is_reported_and_the_others_finish(tiny_artifact, BUILD):
    from facepaint.evaluation.methods.registry import build_methods

    s = sample(h=64, face=(16, 48))
    methods, _ = build_methods(["ours", "sd15_inpaint"], tiny_artifact.path, ecfg(steps=2).inference(), **BUILD)

    from facepaint.evaluation.methods.base import Method

    class Broken(Method):
        name, label = "broken", "broken"

        def edit(self, x):
            raise RuntimeError("out of memory")

    methods = {"broken": Broken(), **methods}
    pairs = pd.DataFrame({"id": [0], "prompt": ["a man"], "seed": [0]})
    res = ev.run([s], pairs, methods, ecfg(warmup=0), torch.device("cpu"), progress=False)
    assert "out of memory" in res.failed["broken"] and set(res.summary) == {"ours", "sd15_inpaint"}


def test_stage_end_to_end_on_the_demo(demo_project, tiny_artifact, monkeypatch, tmp_path):
    """All outputs are written; metrics without weights say unavailable with a reason, never a number."""

    from stages import evaluate as stage

    monkeypatch.chdir(demo_project)
    cfg = ecfg(
        n_pairs=3, steps=2, warmup=0, background_dilation=1, grid_photos=2, profile_radius=4, fid_reference_size=4
    )
    out = tmp_path / "evaluate"
    stage.run(demo_project / "data/demo", cfg, model=tiny_artifact.path, out=out, progress=False)
    for f in (
        "metrics.json",
        "per_image.parquet",
        "table.md",
        "profile.csv",
        "plots/background_distributions.png",
        "plots/boundary_profile.png",
        "plots/samples.png",
    ):
        assert (out / f).is_file(), f
    saved = json.loads((out / "metrics.json").read_text())
    # every method of the publication's Table 2 ran on the demo's tiny models through the real loading code
    table2 = {"ours", "ours_no_blend", "sd15_inpaint", "blended_latent_diffusion", "brushnet", "diptych_prompting"}
    assert saved["pairs"] == 3 and table2 | {"blended_latent_diffusion_9ch"} <= set(saved["methods"])
    assert set(saved["unavailable_methods"]) <= {"paint_by_example"} and saved["failed_methods"] == {}
    ours = saved["methods"]["ours"]
    # the headline background (outside M) sees the blend's seam; where M_soft == 0 nothing changed
    assert isinstance(ours["psnr_bg"], float) and ours["psnr_bg_inf"] < 3 and ours["changed_outside_soft"] == 0
    for name, why in saved["unavailable_metrics"].items():
        assert len(why) > 20
        for m in saved["methods"].values():
            values = [v for k, v in m.items() if k.startswith(name)]
            assert values and all(v == "unavailable" for v in values), (name, m)
    assert saved["methods"]["ours"]["changed_outside_soft"] == 0
    table = (out / "table.md").read_text()
    assert "Blended Latent Diffusion" in table and "not available" in table
    per_image = pd.read_parquet(out / "per_image.parquet")
    assert len(per_image) == 3 * len(saved["methods"])


def test_stage_fid_path_with_an_injected_extractor(demo_project, tiny_artifact, monkeypatch, tmp_path):
    """The FID code path of the stage (reference statistics of real test images, their cache, one
    score per method) with a small pixel-statistics extractor standing in for Inception."""
    from facepaint.evaluation import metrics as m
    from stages import evaluate as stage

    calls = {"n": 0}

    def extractor(images):  # (N, 3, H, W) uint8 -> (N, 6): per-channel mean and std
        calls["n"] += len(images)
        x = images.float() / 255
        return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)

    real_fid = m.FID
    monkeypatch.setattr(m, "FID", lambda device=None, **k: real_fid(feature_extractor=extractor, device="cpu"))
    monkeypatch.chdir(demo_project)
    monkeypatch.setattr(stage, "FID_STATS", tmp_path / "fid_stats")
    cfg = ecfg(
        n_pairs=3,
        steps=2,
        warmup=0,
        background_dilation=1,
        fid_reference_size=6,
        methods=["ours", "sd15_inpaint"],
        metrics=["fid", "psnr"],
    )
    first = stage.run(demo_project / "data/demo", cfg, model=tiny_artifact.path, out=tmp_path / "a", progress=False)
    fids = {k: v["fid"] for k, v in first["methods"].items()}
    assert all(isinstance(v, float) and v >= 0 for v in fids.values()), fids
    assert len(list((tmp_path / "fid_stats").iterdir())) == 1 and "fid" not in first["unavailable_metrics"]
    # the reference: up to 6 test images that are not among the 3 evaluated pairs
    split = pd.read_parquet(demo_project / "data/split.parquet").query("split == 'test' and present")
    pairs = pd.read_parquet(tmp_path / "a/per_image.parquet")["id"].unique()
    n_ref = len(ev.fid_reference_ids(split["id"], pairs, 6, cfg.seed))
    assert n_ref == min(6, len(split) - 3) and n_ref >= 2
    n_first = calls["n"]  # the reference images + 3 outputs x 2 methods
    assert n_first == n_ref + 3 * 2
    second = stage.run(demo_project / "data/demo", cfg, model=tiny_artifact.path, out=tmp_path / "b", progress=False)
    assert calls["n"] - n_first == 3 * 2  # the reference statistics came from the cache
    assert {k: v["fid"] for k, v in second["methods"].items()} == fids
