"""An artifact's facepaint.json is not trusted, wherever it comes from: `facepaint edit --model`, the editor, a
registry release. Each refuses a bad one with one message naming the file and the key, before any weights load
(facepaint.method.artifact.check_info; the values themselves: tests/method/test_artifact.py)."""

import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import facepaint.editing.editor as editor_module
import facepaint.method.artifact as artifact_module
from facepaint.method.artifact import ArtifactError

# case: (the edit of the parsed facepaint.json or, for a str, the text replacing `"adapter_scale": 0.3`; said)
BAD = {
    "resolution 1000000": (lambda c: c.update(resolution=1000000), "conditions.resolution must be a whole number"),
    "resolution 0": (lambda c: c.update(resolution=0), "conditions.resolution must be a whole number from 64 to 2048"),
    "resolution -64": (lambda c: c.update(resolution=-64), "conditions.resolution must be a whole number"),
    'resolution "abc"': (lambda c: c.update(resolution="abc"), "conditions.resolution must be a whole number"),
    "adapter_scale Infinity": ('"adapter_scale": Infinity', "conditions.adapter_scale is Infinity"),
    "adapter_scale NaN": ('"adapter_scale": NaN', "conditions.adapter_scale is NaN"),
    "model as a string": (lambda c: c.update(model="tiny"), "conditions.model must be a mapping"),
    "an unknown key": (lambda c: c.update(colour="red"), "unknown key(s) conditions.colour"),
    "a missing key": (lambda c: c.pop("parts"), "conditions lacks parts"),
}


def bad_copy(artifact_dir: Path, where: Path, case: str) -> Path:
    """A copy of the artifact with facepaint.json broken as BAD[case] says."""
    path = Path(shutil.copytree(artifact_dir, where))
    f = path / "facepaint.json"
    edit = BAD[case][0]
    if isinstance(edit, str):
        f.write_text(f.read_text().replace('"adapter_scale": 0.3', edit))
    else:
        info = json.loads(f.read_text())
        edit(info["conditions"])
        f.write_text(json.dumps(info, indent=2))
    return path


@pytest.fixture
def nothing_loads(monkeypatch):
    """The list of weights loaded: the artifact's weight files and the base model (which fail loudly)."""
    loaded = []

    def refuse(what):
        def load(*args, **kwargs):
            loaded.append(what)
            raise AssertionError(f"the test's guard: {what} loaded")

        return load

    monkeypatch.setattr(artifact_module, "load_weights", refuse("a weight file"))
    monkeypatch.setattr(editor_module, "load_components", refuse("the base model"))
    return loaded


@pytest.mark.parametrize("case", list(BAD))
def test_facepaint_edit_refuses_a_bad_artifact_naming_the_key(case, tiny_artifact, tmp_path, capsys, nothing_loads):
    from facepaint.apps.cli import main

    bad = bad_copy(tiny_artifact.path, tmp_path / "model", case)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "photo.png")
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "out.png"
    capsys.readouterr()
    start = time.perf_counter()
    code = main(
        ["edit", str(tmp_path / "photo.png"), "--prompt", "a face", "--out", str(out), "--model", str(bad)]
        + ["--mask", str(tmp_path / "mask.png"), "--steps", "1"]
    )
    seconds = time.perf_counter() - start
    err = capsys.readouterr().err
    said = BAD[case][1]
    assert code != 0 and said in err and str(bad / "facepaint.json") in err, err
    assert "Traceback" not in err and not out.exists() and nothing_loads == [], err
    line = [x for x in err.splitlines() if said in x][0]
    print(f"\n{case}: exit {code} in {seconds:.2f} s: {line.replace(str(tmp_path), '…')}")


@pytest.mark.parametrize("case", list(BAD))
def test_the_editor_refuses_a_bad_artifact_before_its_base_model_loads(case, tiny_artifact, tmp_path, nothing_loads):
    """FaceEditor.from_artifact: the web app's and the MLflow pyfunc model's way in."""
    bad = bad_copy(tiny_artifact.path, tmp_path / "model", case)
    with pytest.raises(ArtifactError, match=re.escape(BAD[case][1])):
        editor_module.FaceEditor.from_artifact(bad, device="cpu")
    assert nothing_loads == []


def test_a_registry_release_is_checked_when_fetched(tiny_artifact, tmp_path, monkeypatch):
    """tracking.registry.resolve_model (what `--model models:/facepaint@champion` goes through), with MLflow's own
    download of a local release: a bad facepaint.json is an ArtifactError naming the key; a good one resolves."""
    from tracking.registry import resolve_model

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    good = Path(shutil.copytree(tiny_artifact.path, tmp_path / "good" / "artifacts" / "model"))
    assert resolve_model((tmp_path / "good").as_uri()) == str(good)
    bad_copy(tiny_artifact.path, tmp_path / "bad" / "artifacts" / "model", "resolution 1000000")
    with pytest.raises(ArtifactError, match=r"facepaint\.json: conditions\.resolution must be a whole number"):
        resolve_model((tmp_path / "bad").as_uri())


def test_the_app_reads_no_demo_notice_from_a_bad_artifact(tiny_artifact, tmp_path):
    """The web app reads the demo notice from facepaint.json alone (read_conditions): a bad file gives none (the
    model's load then reports it), not a traceback."""
    from facepaint.apps.web import demo_notice

    assert demo_notice(str(tiny_artifact.path))  # the tiny model is a demo model
    assert demo_notice(str(bad_copy(tiny_artifact.path, tmp_path / "model", "model as a string"))) is None
