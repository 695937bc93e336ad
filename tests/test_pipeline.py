"""End to end: the stages on the demo profile, and the wiring between dvc.yaml, params.yaml and stages/."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from facepaint.common.images import decode_png
from facepaint.common.io import read_parquet, read_parquet_metadata
from facepaint.data.latents import iter_shards, read_index

REPO = Path(__file__).resolve().parents[1]


def load_yaml(name):
    return yaml.safe_load((REPO / name).read_text())


def test_one_name_per_concept():
    """Each dvc.yaml stage runs stages/<name>.py, depends on it, and its params are its own section (plus
    the shared data, model and sampling sections, and keys of other sections that it reads, declared one key
    at a time: the train and evaluate settings that the loss ablation trains and evaluates its variants
    with; the face parts and BiSeNet weights the faces stage masks a folder's crops with, whose home is `masks`)."""
    stages = load_yaml("dvc.yaml")["stages"]
    params = load_yaml("params.yaml")
    shared = {"data", "model", "sampling"}
    borrowed = {"ablation": {"train", "evaluate"}, "faces": {"masks"}}
    for name, stage in stages.items():
        assert stage["cmd"] == f"python -m stages.{name}"
        assert (REPO / "stages" / f"{name}.py").is_file()
        assert f"stages/{name}.py" in stage["deps"]
        sections = {p.split(".")[0] for p in stage.get("params", [])}
        whole = {p for p in stage.get("params", []) if "." not in p}
        assert not whole & borrowed.get(name, set()), f"{name} borrows whole sections {whole}: declare the keys"
        assert sections - shared - borrowed.get(name, set()) <= {name}, (name, sections)
        if name in params:
            assert name in sections, f"stage {name} does not declare its params section"
    # ...and a flow's section shares the flow module's name (flows/retrain.py reads `retrain`).
    flows = {p.stem for p in (REPO / "flows").glob("*.py")}
    assert set(params) - shared <= set(stages) | flows, "a params section without a stage or flow"


def test_demo_pipeline_in_process(tmp_path, monkeypatch):
    """Every stage's main() with the repo's params.yaml (the demo profile), in a scratch directory."""
    monkeypatch.chdir(tmp_path)
    params = load_yaml("params.yaml")
    params["demo"]["n_images"] = 24  # smaller than the default demo to keep the test quick
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    from stages import captions, demo, latents, masks, split

    for stage in (demo, split, masks, captions, latents):
        stage.main()

    s = read_parquet("data/split.parquet")
    assert len(s) == 24 and (s.split == "train").sum() == 16 and s.present.all()
    m = read_parquet("data/masks.parquet")
    assert sorted(m.id) == list(range(24))
    res = params["masks"]["resolution"]
    assert decode_png(m.iloc[0]["mask"]).shape == (res, res)
    meta = read_parquet_metadata("data/masks.parquet")["masks"]
    assert meta["resolution"] == res and meta["parts"] == params["masks"]["parts"] and "sigma" not in meta
    assert "sigma" not in read_index("data/latents")["masks"]  # nothing of the blend reaches training
    c = read_parquet("data/captions.parquet")
    assert len(c) == 24 and c.candidates.map(len).min() >= 5
    assert c[c.split == "test"].eval_prompt.notna().all() and c[c.split == "train"].eval_prompt.isna().all()
    index = read_index("data/latents")
    train = set(s[s.split == "train"].id)
    ids = [i for shard in iter_shards("data/latents") for i in shard["ids"].tolist()]
    assert set(ids) == train and index["count"] == 16
    assert index["latent_shape"] == [4, res // 8, res // 8]
    for stage in ("split", "masks", "latents"):
        report = json.loads(Path(f"data/reports/{stage}.json").read_text())
        assert report["counts"]["unusable"] == 0 and report["counts"]["missing"] == 0


def test_unknown_param_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("data: {root: x}\nmasks: {sigmaa: 3}\n")
    from stages import masks

    with pytest.raises(SystemExit, match="unknown key.*sigmaa.*section 'masks'"):
        masks.main()


def test_stage_cli_prints_one_line_for_dataset_errors(tmp_path):
    (tmp_path / "params.yaml").write_text(
        "data: {root: nowhere}\nsplit: {seed: 42, train_parts: 2, test_parts: 1, max_malformed_fraction: 0.01}\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "stages.split"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO), "PATH": ""},
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: attribute file not found: nowhere/")
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_dvc_repro_in_a_fresh_copy(tmp_path):
    """`dvc repro` on a copy of the committed project: the README's main command."""
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    dst = tmp_path / "project"
    for f in files:
        (dst / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / f, dst / f)
    subprocess.run(["git", "init", "-q"], cwd=dst, check=True)
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run(dvc + ["repro"], cwd=dst, check=True, capture_output=True)
    assert (dst / "data/latents/index.json").is_file()
    again = subprocess.run(dvc + ["repro"], cwd=dst, check=True, capture_output=True, text=True)
    assert "didn't change" in again.stdout or "up to date" in again.stdout


def test_a_missing_param_is_a_clear_error(tmp_path, monkeypatch):
    """No hidden defaults: a key missing from params.yaml is named, not filled in."""
    monkeypatch.chdir(tmp_path)
    params = load_yaml("params.yaml")
    del params["masks"]["min_size"], params["masks"]["latent_factor"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    from stages import masks

    with pytest.raises(SystemExit, match="section 'masks' lacks masks.latent_factor, masks.min_size"):
        masks.main()


def test_a_missing_sampling_param_is_an_error_not_the_products_default(tmp_path, monkeypatch):
    """SamplingOptions has defaults (the product's); the pipeline still takes every value from params.yaml."""
    monkeypatch.chdir(tmp_path)
    params = load_yaml("params.yaml")
    del params["sampling"]["sigma"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    from facepaint.method.options import SamplingOptions
    from stages.common import load_params, section

    with pytest.raises(SystemExit, match="section 'sampling' lacks sampling.sigma"):
        section(load_params(), "sampling", SamplingOptions)


def test_a_profile_overrides_params_and_refuses_unknown_keys(tmp_path):
    from stages.common import load_params, profile_overrides

    paper = load_params(REPO / "params.yaml", profile="paper")
    assert paper["masks"]["resolution"] == 512 and paper["model"]["source"] == "pretrained"
    assert paper["train"]["lr_kv"] == load_yaml("params.yaml")["train"]["lr_kv"]  # not overridden: one home
    (tmp_path / "typo.yaml").write_text("masks.sigmaa: 3\n")
    with pytest.raises(SystemExit, match="masks.sigmaa is not a key of params.yaml"):
        profile_overrides("typo", load_yaml("params.yaml"), tmp_path)
