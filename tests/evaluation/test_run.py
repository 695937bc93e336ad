"""facepaint.evaluation.run and the evaluate stage over it: pairs, samples, per-image metrics, aggregation, the
shared path of evaluate_methods and evaluate_variants, the real-photo blending check, and the stage end to end.
(The tables and figures: test_tables.py, test_plots.py; what the stages write: test_outputs.py.)"""

import json
import math
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest
import torch

from facepaint.common.io import read_parquet, read_parquet_metadata
from facepaint.evaluation import run as ev
from facepaint.evaluation.msagan import GanConfig, asks_for
from facepaint.method.blend import sigma_pixels, soft_mask
from facepaint.method.options import SamplingOptions
from tests.helpers import config


def ecfg(**changes) -> ev.EvalConfig:
    """The demo's evaluate params with `changes`."""
    return config("evaluate", ev.EvalConfig, **changes)


def sampling(**changes) -> SamplingOptions:
    """The demo's sampling params (how the evaluation's edits sample and blend) with `changes`."""
    return config("sampling", SamplingOptions, **changes)


@pytest.fixture(scope="module")
def BUILD(baselines):
    e = ecfg()
    return dict(
        device="cpu",
        dtype="fp32",
        baselines=baselines,
        brushnet=e.brushnet,
        diptych=e.diptych,
        blended_latent=e.blended_latent,
        blended_diffusion=e.blended_diffusion,
    )


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


def test_config_validation():
    with pytest.raises(SystemExit, match="unknown"):
        ecfg(methods=["ours", "dalle"])
    with pytest.raises(SystemExit, match=r"unknown key\(s\) \['steps'\] in section 'evaluate'"):
        ecfg(steps=2)  # how the edits sample is params.yaml `sampling`'s


# ------------------------------------------------------------------------------------- real photos


@pytest.mark.fixture
def test_blending_on_real_photos_keeps_every_zero_alpha_pixel(fixture_root, tiny_artifact, BUILD):
    """Real CelebA-HQ photos, tiny model: blended outputs have PSNR = inf where M_soft == 0, the
    unblended ones do not."""
    from facepaint.data.masks import annotation_union
    from facepaint.evaluation.methods.registry import build_methods
    from facepaint.method.masks import face_mask

    options = sampling(steps=2, sigma=8.0)  # 1 px at 64 px

    ids = sorted(int(x) for x in (fixture_root / "ids.txt").read_text().split())[:3]
    samples = []
    for i in ids:
        from facepaint.common.images import load_rgb, resize_rgb

        image = resize_rgb(load_rgb(fixture_root / "CelebA-HQ-img" / f"{i}.jpg").image, 64)
        union, _ = annotation_union(fixture_root, i, tiny_artifact.conditions.parts)
        fm = face_mask(union, 64, 8)
        samples.append(ev.Sample(i, image, fm.mask, soft_mask(fm.mask, sigma_pixels(options.sigma, 64)), fm.beta))
    pairs = pd.DataFrame({"id": ids, "prompt": ["a smiling woman with blond hair"] * 3, "seed": [1, 2, 3]})
    methods, _ = build_methods(["ours", "ours_no_blend"], tiny_artifact.path, options, **BUILD)
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
    methods, _ = build_methods(["ours", "sd15_inpaint"], tiny_artifact.path, sampling(steps=2), **BUILD)

    from facepaint.evaluation.methods.base import Method

    class Broken(Method):
        name, label = "broken", "broken"

        def edit(self, x):
            raise RuntimeError("out of memory")

    methods = {"broken": Broken(), **methods}
    pairs = pd.DataFrame({"id": [0], "prompt": ["a man"], "seed": [0]})
    res = ev.run([s], pairs, methods, ecfg(warmup=0), torch.device("cpu"), progress=False)
    assert "out of memory" in res.failed["broken"] and set(res.summary) == {"ours", "sd15_inpaint"}


# ------------------------------------------------------------------------- the stages' shared path


@pytest.fixture(scope="module")
def shared(demo_project, tiny_artifact):
    """The demo's 3 pairs evaluated by evaluate_methods (ours and ours_no_blend) at the demo's sigma (4 px of a
    512 px crop: 0.5 px at the tiny model's 64 px) and at sigma 16 (2 px), and by evaluate_variants (the same
    artifact as the one variant) at the demo's sigma."""
    root, data = demo_project / "data/demo", demo_project / "data"
    tables = read_parquet(data / "masks.parquet"), read_parquet(data / "captions.parquet")
    cfg = ecfg(n_pairs=3, warmup=0, methods=["ours", "ours_no_blend"], metrics=["psnr"])
    narrow, wide = sampling(steps=2), sampling(steps=2, sigma=16.0)
    return dict(
        narrow=ev.evaluate_methods(root, *tables, tiny_artifact.path, cfg, narrow, progress=False),
        wide=ev.evaluate_methods(root, *tables, tiny_artifact.path, cfg, wide, progress=False),
        variants=ev.evaluate_variants(root, *tables, {"masked": tiny_artifact.path}, cfg, narrow, progress=False),
        sigma=narrow.sigma,
    )


def test_methods_and_variants_are_evaluated_on_the_same_pairs_and_samples(shared):
    """The ablation compares its variants on exactly the evaluate stage's pairs: the same photos, prompts and
    seeds, the same M and M_soft (of `sampling.sigma`, in pixels of a 512 px crop), hence the same edits."""
    methods, variants = shared["narrow"], shared["variants"]
    assert len(methods.pairs) == 3 and methods.pairs.equals(variants.pairs)
    assert methods.resolution == variants.resolution == 64
    assert len(methods.samples) == len(variants.samples) == 3
    for a, b in zip(methods.samples, variants.samples):
        assert a.id == b.id and a.beta == b.beta
        assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask) and np.array_equal(a.soft, b.soft)
        assert np.array_equal(a.soft, soft_mask(a.mask, shared["sigma"] * 64 / 512)) and (a.soft[~a.mask] > 0).any()
    cols = ["id", "prompt", "seed"]
    ours = methods.result.table.query("method == 'ours'")[cols].reset_index(drop=True)
    assert ours.equals(variants.result.table.query("method == 'masked'")[cols].reset_index(drop=True))
    assert list(ours["prompt"]) == list(methods.pairs["prompt"]) and list(ours["seed"]) == list(methods.pairs["seed"])
    for a, b in zip(methods.result.outputs["ours"], variants.result.outputs["masked"]):
        assert np.array_equal(a, b)  # one artifact, one seed, one sampling: one edit


def test_sigma_changes_the_blended_background_only(shared):
    """`sampling.sigma` is the blend's: a wider M_soft changes ours' background metrics; ours_no_blend (the
    same generation, not blended) and its background outside M do not change."""
    narrow, wide = shared["narrow"], shared["wide"]
    assert narrow.pairs.equals(wide.pairs)
    for a, b in zip(narrow.samples, wide.samples):
        assert np.array_equal(a.mask, b.mask) and (b.soft > 0).sum() > (a.soft > 0).sum()
    for a, b in zip(narrow.result.outputs["ours_no_blend"], wide.result.outputs["ours_no_blend"]):
        assert np.array_equal(a, b)
    by = {name: e.result.table.set_index(["method", "id"]) for name, e in (("narrow", narrow), ("wide", wide))}
    for col in ("psnr_bg", "psnr_dilated", "psnr_full"):
        assert by["narrow"].loc["ours_no_blend", col].equals(by["wide"].loc["ours_no_blend", col]), col
        assert narrow.result.summary["ours_no_blend"][col] == wide.result.summary["ours_no_blend"][col], col
    assert (by["narrow"].loc["ours", "psnr_bg"] != by["wide"].loc["ours", "psnr_bg"]).all()
    assert narrow.result.summary["ours"]["psnr_bg"] != wide.result.summary["ours"]["psnr_bg"]
    for e in (narrow, wide):  # blended either way: nothing changes where M_soft == 0
        assert (
            e.result.summary["ours"]["changed_outside_soft"]
            == 0
            < e.result.summary["ours_no_blend"]["changed_outside_soft"]
        )


def test_stage_end_to_end_on_the_demo(demo_project, tiny_artifact, monkeypatch, tmp_path):
    """All outputs are written; the demo profile's settings leave out what needs downloaded weights (FID, LPIPS,
    PickScore, Paint-by-Example): off in the demo profile, with the reason, never a number nor "unavailable"."""

    from stages import evaluate as stage

    monkeypatch.chdir(demo_project)  # its data/gan/model: the gan stage's 2-step MSaGAN
    cfg = ecfg(n_pairs=3, warmup=0, background_dilation=1, grid_photos=2, profile_radius=4, fid_reference_size=4)
    options = sampling(steps=2)
    out = tmp_path / "evaluate"
    stage.run(demo_project / "data/demo", cfg, options, model=tiny_artifact.path, out=out, progress=False)
    for f in (
        "metrics.json",
        "per_image.parquet",
        "table.md",
        "profile.csv",
        "plots/background_distributions.png",
        "plots/boundary_profile.png",
        "plots/samples.png",
        "plots/background_maps.png",  # the publication's Fig. 5: ours and ours_no_blend both ran
    ):
        assert (out / f).is_file(), f
    saved = json.loads((out / "metrics.json").read_text())
    # every method of the publication's Table 2 ran on the demo's tiny models through the real loading code
    table2 = {"ours", "ours_no_blend", "sd15_inpaint", "blended_latent_diffusion", "brushnet", "diptych_prompting"}
    assert saved["pairs"] == 3 and table2 | {"blended_latent_diffusion_9ch"} <= set(saved["methods"])
    assert saved["unavailable_methods"] == {} and saved["failed_methods"] == {}
    # the two editors outside the paper's comparison ran too: MSaGAN on the pairs that ask for its attribute
    assert "blended_diffusion" in saved["methods"] and "pixel space" in saved["method_notes"]["blended_diffusion"]
    attribute = config("gan", GanConfig).attribute
    asking = [p for p in pd.read_parquet(out / "per_image.parquet").query("method == 'ours'")["prompt"]
              if asks_for(p, attribute)]  # fmt: skip
    if asking:
        assert (
            saved["methods"]["msagan"]["pairs"] == len(asking) and "takes no text" in saved["method_notes"]["msagan"]
        )
    else:
        assert attribute in saved["skipped_methods"]["msagan"]
    assert set(saved["off_methods"]) == {"paint_by_example"} and set(saved["off_metrics"]) == {
        "fid",
        "lpips",
        "pickscore",
    }
    ours = saved["methods"]["ours"]
    # the headline background (outside M) sees the blend's seam; where M_soft == 0 nothing changed
    assert isinstance(ours["psnr_bg"], float) and ours["psnr_bg_inf"] < 3 and ours["changed_outside_soft"] == 0
    for name, why in saved["unavailable_metrics"].items():
        assert len(why) > 20
        for m in saved["methods"].values():
            values = [v for k, v in m.items() if k.startswith(name)]
            assert values and all(v == "unavailable" for v in values), (name, m)
    assert saved["methods"]["ours"]["changed_outside_soft"] == 0
    for name in saved["off_metrics"]:
        for m in saved["methods"].values():
            values = [v for k, v in m.items() if k.startswith(name)]
            assert values and all(v == "off in the demo profile" for v in values), (name, m)
    table = (out / "table.md").read_text()
    assert "Blended Latent Diffusion" in table and "- Paint-by-Example: off in the demo profile" in table
    per_image = pd.read_parquet(out / "per_image.parquet")
    assert len(per_image) == sum(m["pairs"] for m in saved["methods"].values())
    meta = read_parquet_metadata(out / "per_image.parquet")  # the settings that made it
    assert meta["sampling"] == asdict(options) and meta["evaluate"]["n_pairs"] == 3


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
        warmup=0,
        background_dilation=1,
        fid_reference_size=6,
        methods=["ours", "sd15_inpaint"],
        metrics=["fid", "psnr"],
    )
    options = sampling(steps=2)
    first = stage.run(
        demo_project / "data/demo", cfg, options, model=tiny_artifact.path, out=tmp_path / "a", progress=False
    )
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
    second = stage.run(
        demo_project / "data/demo", cfg, options, model=tiny_artifact.path, out=tmp_path / "b", progress=False
    )
    assert calls["n"] - n_first == 3 * 2  # the reference statistics came from the cache
    assert {k: v["fid"] for k, v in second["methods"].items()} == fids
