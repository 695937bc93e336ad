"""The loss ablation (facepaint.evaluation.ablation) and its stage: trains the variant the pipeline's model lacks,
evaluates every variant alike on the evaluate stage's pairs with params.yaml `sampling`, writes the metrics, table
and figures; off, it writes only a note."""

import json

import pandas as pd
import pytest

from facepaint.common.io import read_parquet
from facepaint.evaluation.ablation import OFF_NOTE, AblationConfig
from facepaint.evaluation.run import EvalConfig, draw_pairs
from facepaint.method.artifact import load_artifact
from facepaint.method.models import ModelConfig
from facepaint.method.options import SamplingOptions
from facepaint.method.train import TrainConfig
from stages import ablation
from tests.helpers import config


@pytest.fixture
def configs(tmp_path):
    return dict(
        model=config("model", ModelConfig),
        train_cfg=config("train", TrainConfig, max_steps=2, batch_size=4, loss_weighting="masked"),
        eval_cfg=config("evaluate", EvalConfig, n_pairs=2, warmup=0, metrics=["psnr"]),
        sampling=config("sampling", SamplingOptions, steps=2),
    )


def test_ablation_trains_the_other_variant_and_compares_both(demo_project, tiny_artifact, configs, monkeypatch):
    monkeypatch.chdir(demo_project)
    out = demo_project / "data/ablation"
    cfg = AblationConfig(variants=["masked", "uniform"], grid_photos=2)
    metrics = ablation.run(demo_project / "data/demo", cfg, **configs, trained=tiny_artifact.path, out=out)

    # the masked variant is the pipeline's own model; uniform was trained here, with the uniform loss only
    assert sorted(p.name for p in (out / "models").iterdir()) == ["uniform"]
    uniform = load_artifact(out / "models/uniform")
    assert uniform.info["train"]["loss_weighting"] == "uniform"
    assert {k: v for k, v in uniform.info["train"].items() if k != "loss_weighting"} == {
        k: v for k, v in vars(configs["train_cfg"]).items() if k != "loss_weighting"
    }
    assert metrics["artifacts"] == {"masked": tiny_artifact.version, "uniform": uniform.version}

    saved = json.loads((out / "metrics.json").read_text())
    assert saved["variants"] == ["masked", "uniform"] and set(saved["methods"]) == {"masked", "uniform"}
    table = pd.read_parquet(out / "per_image.parquet")
    by = {m: g for m, g in table.groupby("method")}
    assert len(table) == 2 * 2 and list(by["masked"]["id"]) == list(by["uniform"]["id"])  # the same pairs
    assert list(by["masked"]["seed"]) == list(by["uniform"]["seed"])  # and seeds
    # ... which are the evaluate stage's: drawn with its seed from the test images with a mask and a prompt
    e = configs["eval_cfg"]
    usable = read_parquet(demo_project / "data/masks.parquet")["id"]
    pairs, _ = draw_pairs(read_parquet(demo_project / "data/captions.parquet"), usable, e.n_pairs, e.seed)
    for variant in ("masked", "uniform"):
        assert by[variant][["id", "prompt", "seed"]].reset_index(drop=True).equals(pairs), variant
    for f in ("plots/samples.png", "plots/metrics.png", "table.md"):
        assert (out / f).stat().st_size > 0, f
    assert "ours, uniform loss" in (out / "table.md").read_text()
    # pixel-blended: outside M_soft both variants keep the photo
    assert (
        saved["methods"]["masked"]["changed_outside_soft"] == 0 == saved["methods"]["uniform"]["changed_outside_soft"]
    )

    # Off: a note (plots/off.png says it where `dvc plots show` looks), and no stale model or figure is left
    ablation.run(demo_project / "data/demo", AblationConfig([], 2), **configs, trained=tiny_artifact.path, out=out)
    assert json.loads((out / "metrics.json").read_text()) == {"variants": [], "note": OFF_NOTE}
    assert OFF_NOTE in (out / "table.md").read_text() and len(pd.read_parquet(out / "per_image.parquet")) == 0
    assert list((out / "models").iterdir()) == [] and [p.name for p in (out / "plots").iterdir()] == ["off.png"]


def test_config_refuses_unknown_or_repeated_variants():
    with pytest.raises(ValueError, match="distinct values"):
        AblationConfig(["masked", "plain"], 4)
    with pytest.raises(ValueError, match="distinct values"):
        AblationConfig(["masked", "masked"], 4)
