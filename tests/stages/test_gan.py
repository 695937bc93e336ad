"""The gan stage (stages/gan.py): what it writes, and the demo profile's run, whose critic must classify the
held-out demo faces' attribute better than chance (the majority class)."""

import json
from pathlib import Path

import pandas as pd
import pytest

from facepaint.data.split import SplitConfig
from facepaint.evaluation.msagan import GanConfig
from stages import gan, split
from tests.helpers import config
from tools.demo import DemoConfig, generate


def project(**demo) -> Path:
    """A demo dataset (params.yaml's `demo` with `demo` changes) and its split in the cwd (a temporary
    directory: stages write their reports there)."""
    generate(Path("data/demo"), config("demo", DemoConfig, **demo), progress=False)
    split.run(Path("data/demo"), config("split", SplitConfig))
    return Path("data/demo")


def test_it_writes_the_model_log_metrics_and_plot(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = project(n_images=24, size=64, mask_size=64)
    result = gan.run(root, config("gan", GanConfig, max_steps=2), progress=False)
    saved = json.loads(Path("data/gan/metrics.json").read_text())
    assert saved["steps"] == 2 and saved["attribute"] == config("gan", GanConfig).attribute
    assert {"test_accuracy", "test_accuracy_untrained", "chance"} <= set(saved)
    assert (Path("data/gan/model") / "generator.safetensors").is_file()
    meta = json.loads(Path("data/gan/model/gan.json").read_text())
    assert GanConfig(**meta["settings"]) == config("gan", GanConfig, max_steps=2)
    assert len(pd.read_csv("data/gan/log.csv")) == 2 and Path("data/gan/plots/loss.png").is_file()
    assert list(Path("data/gan_checkpoints").iterdir()) == []  # a finished run leaves nothing to resume
    assert result["test_images"] > 0


@pytest.mark.slow
def test_the_demo_profiles_run_classifies_the_attribute_above_chance(tmp_path, monkeypatch):
    """params.yaml's demo data and gan settings, as `dvc repro gan` runs them (about 2 minutes on 2 cores)."""
    monkeypatch.chdir(tmp_path)
    root = project()  # the demo's own
    result = gan.run(root, config("gan", GanConfig), progress=False)
    assert result["test_accuracy"] > result["chance"], result
    assert result["test_accuracy"] > result["test_accuracy_untrained"], result
