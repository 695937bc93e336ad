"""facepaint.evaluation.outputs: what the evaluate and ablation stages write from an Evaluation, here one of two
stand-in methods on constructed photos (no model): every file, metrics.json's "unavailable" (never a number),
the settings recorded beside the per-image table."""

import json
import math
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from facepaint.common.io import read_parquet_metadata
from facepaint.evaluation import outputs
from facepaint.evaluation import run as ev
from facepaint.evaluation.methods.base import Method
from facepaint.method.blend import soft_mask
from facepaint.method.options import SamplingOptions
from tests.helpers import config


class FaceOnly(Method):
    """Changes the face (M) only: the background is kept exactly."""

    name = label = "face only"

    def edit(self, x):
        out = x.image.copy()
        out[x.mask] = 255 - out[x.mask]
        return out


class Everywhere(Method):
    """Changes every pixel a little."""

    name = label = "everywhere"

    def edit(self, x):
        return np.clip(x.image.astype(int) + 3, 0, 255).astype(np.uint8)


def evaluation(methods: dict, cfg) -> ev.Evaluation:
    rng = np.random.default_rng(0)
    samples = []
    for i in (3, 6):
        mask = np.zeros((32, 32), bool)
        mask[8:24, 10:22] = True
        image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        samples.append(ev.Sample(i, image, mask, soft_mask(mask, 1.0), float(mask.mean())))
    pairs = pd.DataFrame({"id": [3, 6], "prompt": ["a man", "a woman"], "seed": [42000, 42001]})
    result = ev.run(samples, pairs, methods, cfg, torch.device("cpu"), progress=False)
    return ev.Evaluation(
        pairs,
        samples,
        result,
        32,
        "CPU (test)",
        unavailable_methods={"brushnet": "BrushNet is unavailable: no weights here"},
        unavailable_metrics={"fid": "Inception weights missing", "lpips": "VGG weights missing"},
        notes=["only 2 usable test images"],
    )


@pytest.fixture
def cfg():
    return config(
        "evaluate",
        ev.EvalConfig,
        n_pairs=2,
        warmup=0,
        grid_photos=1,
        profile_radius=3,
        background_dilation=1,
        metrics=["fid", "psnr", "lpips"],
    )


def test_write_evaluation_writes_every_output_and_records_its_settings(cfg, tmp_path):
    e = evaluation({"ours": FaceOnly(), "sd15_inpaint": Everywhere()}, cfg)
    sampling = config("sampling", SamplingOptions, sigma=8.0)
    metrics = outputs.write_evaluation(e, cfg, sampling, "abc123", tmp_path)
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    for name in ("background_distributions", "boundary_profile", "samples"):
        with Image.open(tmp_path / "plots" / f"{name}.png") as im:
            assert im.format == "PNG", name
    assert not (tmp_path / "plots" / "background_maps.png").exists()  # Fig. 5 needs ours with and without blending
    assert metrics["pairs"] == 2 and metrics["artifact"] == "abc123" and metrics["resolution"] == 32
    assert metrics["definitions"] == ev.DEFINITIONS and metrics["notes"] == ["only 2 usable test images"]
    assert metrics["unavailable_methods"] == e.unavailable_methods and metrics["failed_methods"] == {}
    ours, plain = metrics["methods"]["ours"], metrics["methods"]["sd15_inpaint"]
    # inf in strict JSON; the metrics that could not be had are "unavailable", never a number
    assert ours["psnr_bg"] == "inf" and ours["psnr_bg_inf"] == 2 and isinstance(plain["psnr_bg"], float)
    for s in (ours, plain):
        assert s["fid"] == "unavailable" and all(s[f"lpips_{r}"] == "unavailable" for r in ev.REGIONS)
        assert "pickscore" not in s  # not asked for
    per_image = pd.read_parquet(tmp_path / "per_image.parquet")
    assert len(per_image) == 4 and list(per_image["seed"]) == [42000, 42001] * 2
    meta = read_parquet_metadata(tmp_path / "per_image.parquet")
    assert meta == {
        "evaluate": json.loads(json.dumps(asdict(cfg))),
        "sampling": asdict(sampling),
        "artifact": "abc123",
    }
    profile = pd.read_csv(tmp_path / "profile.csv")
    assert list(profile.columns) == ["distance", "ours", "sd15_inpaint"] and list(profile["distance"]) == list(
        range(-3, 4)
    )
    assert (profile.loc[profile["distance"] > 0, "ours"] == 0).all()  # the face-only edit stops at the boundary
    table = (tmp_path / "table.md").read_text()
    assert "| SD1.5 inpaint | n/a |" in table and "BrushNet: not available" in table
    assert "## Table 1" in table and "LPIPS: unavailable: VGG weights missing" in table


def test_without_fid_asked_for_there_is_no_fid_entry(cfg, tmp_path):
    cfg.metrics = ["psnr"]
    e = evaluation({"ours": FaceOnly()}, cfg)
    e.unavailable_metrics = {}
    metrics = outputs.write_evaluation(e, cfg, SamplingOptions(), "v", tmp_path)
    assert "fid" not in metrics["methods"]["ours"] and not any(
        v == "unavailable" for v in metrics["methods"]["ours"].values()
    )


def test_what_is_off_is_off_in_metrics_json_never_unavailable_nor_a_number(cfg, tmp_path):
    """The demo profile's settings (PSNR only, no Paint-by-Example) for a demo model: the other metrics' columns
    read "off in the demo profile", each with its reason beside "unavailable_metrics", in metrics.json and
    table.md; for a model that is not a demo's they read "off"."""
    cfg.metrics = ["psnr"]
    e = evaluation({"ours": FaceOnly()}, cfg)
    e.unavailable_methods, e.unavailable_metrics = {}, {}
    e.off_metrics = ev.switched_off(cfg.metrics, ev.METRICS, "metrics", demo=True)
    e.off_methods = ev.switched_off(["ours"], ["ours", "paint_by_example"], "methods", demo=True)
    metrics = outputs.write_evaluation(e, cfg, SamplingOptions(), "v", tmp_path)
    assert set(metrics["off_metrics"]) == {"fid", "lpips", "pickscore"} and metrics["unavailable_metrics"] == {}
    assert set(metrics["off_methods"]) == {"paint_by_example"}
    ours = metrics["methods"]["ours"]
    assert ours["fid"] == ours["pickscore"] == "off in the demo profile"
    assert all(ours[f"lpips_{r}"] == "off in the demo profile" for r in ev.REGIONS)
    assert isinstance(ours["psnr_full"], float)
    table = (tmp_path / "table.md").read_text()
    assert "- LPIPS: off in the demo profile: not in params.yaml evaluate.metrics" in table
    assert "- Paint-by-Example: off in the demo profile" in table and "unavailable" not in table

    e.off_metrics = ev.switched_off(cfg.metrics, ev.METRICS, "metrics", demo=False)
    assert outputs.evaluation_metrics(e, cfg, "v")["methods"]["ours"]["fid"] == "off"


def test_switched_off_names_what_the_settings_leave_out_and_never_psnr():
    needs = {"fid": "Inception"}
    demo = ev.switched_off(["psnr", "lpips"], ev.METRICS, "metrics", demo=True, needs=needs)
    assert demo == {
        "fid": "off in the demo profile: not in params.yaml evaluate.metrics; it needs Inception; "
        "profiles/paper.yaml turns it on",
        "pickscore": "off in the demo profile: not in params.yaml evaluate.metrics; profiles/paper.yaml turns it on",
    }
    assert ev.switched_off([], ev.METRICS, "metrics", demo=False) == {
        m: "off: not in params.yaml evaluate.metrics" for m in ("fid", "lpips", "pickscore")
    }
    assert ev.off_status(demo["fid"]) == "off in the demo profile" and ev.off_status("off: x") == "off"
    assert ev.switched_off(ev.METRICS, ev.METRICS, "metrics", demo=True) == {}


def test_write_ablation_and_its_off_note(cfg, tmp_path):
    e = evaluation({"masked": FaceOnly(), "uniform": Everywhere()}, cfg)
    e.unavailable_metrics = {"lpips": "VGG weights missing"}
    params = {"variants": ["masked", "uniform"], "grid_photos": 1}
    metrics = outputs.write_ablation(e, params, {"masked": "v1", "uniform": "v2"}, tmp_path)
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    assert metrics["variants"] == ["masked", "uniform"] and metrics["artifacts"] == {"masked": "v1", "uniform": "v2"}
    assert metrics["methods"]["masked"]["psnr_bg"] == "inf" and not math.isinf(
        metrics["methods"]["uniform"]["psnr_bg"]
    )
    assert metrics["unavailable_metrics"] == e.unavailable_metrics and metrics["pairs"] == 2
    assert read_parquet_metadata(tmp_path / "per_image.parquet") == {"ablation": params}
    for name in ("samples", "metrics"):
        with Image.open(tmp_path / "plots" / f"{name}.png") as im:
            assert im.format == "PNG", name
    table = (tmp_path / "table.md").read_text()
    assert "ours, masked loss" in table and "ours, uniform loss" in table and "lpips: unavailable" in table
    e.unavailable_metrics, e.off_metrics = {}, {"lpips": "off in the demo profile: not in params.yaml"}
    metrics = outputs.write_ablation(e, params, {"masked": "v1", "uniform": "v2"}, tmp_path)
    assert (
        metrics["off_metrics"] == e.off_metrics
        and metrics["methods"]["masked"]["lpips_bg"] == "off in the demo profile"
    )
    assert "- lpips: off in the demo profile" in (tmp_path / "table.md").read_text()

    outputs.write_ablation_off("off: a note", tmp_path)
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"variants": [], "note": "off: a note"}
    assert (tmp_path / "table.md").read_text() == "# Loss ablation\n\noff: a note\n"
    assert pd.read_parquet(tmp_path / "per_image.parquet").empty
    with Image.open(tmp_path / "plots" / "off.png") as im:  # the plots page shows why there is no chart
        assert im.format == "PNG" and im.width > 400
