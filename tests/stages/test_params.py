"""The params stage (stages/params.py): params.yaml checked as a whole before any other stage runs, and the
dvc.yaml edges that make DVC run it first."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from stages import params as check
from stages.common import PARAMS_CHECKED, profile_overrides, set_key
from tools import stage_deps

REPO = Path(__file__).resolve().parents[2]
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
PROFILES = sorted(p.stem for p in (REPO / "profiles").glob("*.yaml"))
DVC = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


@pytest.fixture(scope="module")
def classes():
    """The config classes, loaded for real (stand-ins only ever load in a process of their own)."""
    return check.config_classes()


def edited(**changes) -> dict:
    """A deep copy of params.yaml with `changes` ("section.key": value; None deletes the key) applied."""
    params = json.loads(json.dumps(PARAMS))
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = params
        for part in parents:
            node = node.setdefault(part, {})
        if value is None:
            del node[last]
        else:
            node[last] = value
    return params


def with_profiles(*names: str) -> dict:
    params = json.loads(json.dumps(PARAMS))
    for name in names:
        for key, value in profile_overrides(name, params).items():
            set_key(params, key, value)
    return params


# ------------------------------------------------------------------------------------------ the check


def test_params_yaml_is_valid(classes):
    assert check.problems(PARAMS, classes) == []


@pytest.mark.parametrize("names", [(name,) for name in PROFILES] + [tuple(PROFILES)], ids=lambda n: "+".join(n))
def test_every_profile_applied_is_valid(names, classes):
    """What `dvc exp run $(python profiles/flags.py NAME...)` makes of params.yaml passes the check."""
    assert check.problems(with_profiles(*names), classes) == []


@pytest.mark.parametrize(
    "changes, named",
    [
        ({"bogus": {"x": 1}}, "bogus: unknown section"),
        ({"train.bogus_key": 1}, "train.bogus_key: unknown key"),
        ({"evaluate.diptych.bogus": 1}, "evaluate.diptych.bogus: unknown key"),
        ({"register.gate.bogus": 1.0}, "register.gate.bogus: unknown key"),
        ({"masks.half": None}, "masks.half: missing"),
        ({"retrain": None}, "retrain: section missing"),
        ({"train.checkpoint_every": "ten"}, "train.checkpoint_every must be a whole number, got 'ten'"),
        ({"train.lr_kv": "5e-5"}, "train.lr_kv must be a number"),
        ({"demo.size": True}, "demo.size must be an integer"),
        ({"data.root": 3}, "data.root must be a string"),
        ({"retrain.cron": 5}, "retrain.cron must be a string"),
        ({"sampling.sigma": -3.0}, "sampling.sigma must be a number from 0"),
        ({"train.adam_beta2": 1.0}, "train.adam_beta2 must be in [0, 1)"),
        ({"evaluate.methods": ["ours", "bogus"]}, "evaluate: unknown method(s)/metric(s) ['bogus']"),
        ({"train": [1, 2]}, "train: must be a mapping of batch_size"),
    ],
)
def test_the_check_refuses_naming_the_key(changes, named, classes):
    """An unknown section, an unknown key (nested ones too), a missing key, a wrong type, a value out of
    range: each named as section.key."""
    found = check.problems(edited(**changes), classes)
    assert any(named in p for p in found), found


def test_every_problem_is_listed_at_once(classes):
    params = edited(**{"train.bogus_key": 1, "train.checkpoint_every": "ten", "sampling.sigma": -1.0, "x": {}})
    found = check.problems(params, classes)
    assert len(found) == 4, found  # train's unknown key hides its bad value only when the key is unknown
    with pytest.raises(check.ParamsError, match=r"4 problem\(s\)(.|\n)*train.bogus_key"):
        check.check(params, classes)


def test_sections_are_read_with_the_classes_the_check_uses():
    """Each `section(params, "NAME", Cls)` in a stage or a flow names the class SECTIONS gives NAME (so a stage
    that changes its config class cannot leave the check on the old one)."""
    read = {}
    for path in [*(REPO / "stages").glob("*.py"), *(REPO / "flows").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", None) == "section"
                and len(node.args) >= 3
                and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[2], ast.Name)
            ):
                read.setdefault(node.args[1].value, set()).add(node.args[2].id)
    assert read, "no section() calls found"
    for name, classes in read.items():
        spec = check.SECTIONS[name]
        assert classes == {spec.split(":")[1] if isinstance(spec, str) else spec.__name__}, name
    assert set(check.SECTIONS) == set(PARAMS)


def test_a_stand_in_works_while_modules_load_and_refuses_any_use_after():
    torch = check._StandIn("torch")
    check._STATE["loading"] = True
    try:

        class Model(torch.nn.Module):  # subclassing, attributes, calls, decorators, unions
            dtype = torch.float16 | None

            @torch.no_grad()
            def forward(self):
                pass

        table = {"fp16": torch.float16}
    finally:
        check._STATE["loading"] = False
    assert issubclass(Model, object) and table["fp16"] is torch.float16
    for use in (lambda: torch.float32, lambda: torch.float16(), lambda: bool(torch.float16), lambda: 1 in [torch]):
        with pytest.raises(check.StandInUsed):
            use()
    with pytest.raises(check.StandInUsed):
        torch.float16 == "fp16"  # noqa: B015 (never equal, never silently unequal)


# ----------------------------------------------------------------------------------- the stage itself


def run_stage(cwd: Path, *args: str, pythonpath: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run(
        [sys.executable, "-m", "stages.params", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_the_stage_loads_no_torch_and_writes_its_constant_output(tmp_path):
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    code = (
        "import sys, time; t = time.perf_counter(); from stages import params; params.main([]); "
        "print(round(time.perf_counter() - t, 2), type(sys.modules['torch']).__name__)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    seconds, torch = proc.stdout.split()[-2:]
    assert torch == "_StandInModule", proc.stdout  # checked without loading torch
    assert float(seconds) < 10, proc.stdout  # about 1-2 s on 2 CPU cores
    assert (tmp_path / PARAMS_CHECKED).read_text() == check.OK_TEXT  # the same bytes, whatever params.yaml holds
    with_comment = "# a comment\n" + (REPO / "params.yaml").read_text().replace("seed: 0", "seed: 7", 1)
    (tmp_path / "params.yaml").write_text(with_comment)
    assert run_stage(tmp_path).returncode == 0
    assert (tmp_path / PARAMS_CHECKED).read_text() == check.OK_TEXT


def test_the_stage_fails_naming_the_key_and_writes_nothing(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(edited(**{"train.bogus_key": 1})))
    start = time.perf_counter()
    proc = run_stage(tmp_path)
    assert proc.returncode == 1 and time.perf_counter() - start < 15, proc.stderr
    assert "train.bogus_key: unknown key" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / PARAMS_CHECKED).exists()
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    proc = run_stage(tmp_path, "--profile", "paper", "--profile", "ablation")  # a check only: nothing written
    assert proc.returncode == 0 and not (tmp_path / PARAMS_CHECKED).exists(), proc.stderr


@pytest.mark.slow  # ~11 s: a copy of the tree and a stage process
def test_a_check_that_needs_torch_is_run_with_the_real_libraries(tmp_path):
    """If a config's check uses a stand-in (here: CaptionConfig calls torch), the stage checks again with the
    real libraries instead of answering from a stand-in."""
    for top in ("facepaint", "stages", "tools", "flows", "tracking", "profiles"):
        shutil.copytree(REPO / top, tmp_path / top, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    captions = tmp_path / "facepaint" / "data" / "captions.py"
    text = captions.read_text().replace("import pandas as pd\n", "import pandas as pd\nimport torch\n", 1)
    text = text.replace('check_fields(self, "captions")', 'check_fields(self, "captions")\n        torch.zeros(1)', 1)
    captions.write_text(text)
    proc = run_stage(tmp_path, pythonpath=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "checking again with the real libraries (StandInUsed: torch.zeros" in proc.stderr, proc.stderr
    assert (tmp_path / PARAMS_CHECKED).read_text() == check.OK_TEXT


# ------------------------------------------------------------------------------------ the dvc.yaml edges


def test_every_stage_runs_after_the_check():
    """The params stage comes first, depends on the whole params.yaml and writes data/params.ok to git; every
    other stage depends on that file, so DVC runs the check before it."""
    assert stage_deps.GATE_OUT == str(PARAMS_CHECKED)
    assert list(DVC)[0] == "params"  # first in file order too (the retrain flow runs the stages in that order)
    gate = DVC["params"]
    assert "params.yaml" in gate["deps"] and "params" not in gate
    assert gate["outs"] == [{str(PARAMS_CHECKED): {"cache": False}}]
    for name, stage in DVC.items():
        if name != "params":
            assert str(PARAMS_CHECKED) in stage["deps"], name
    assert set(check.LOADS) <= {d.removesuffix(".py").replace("/", ".") for d in gate["deps"]}


def test_a_stage_without_the_edge_is_caught_and_rewritten(tmp_path):
    for d in ("facepaint", "stages", "tracking", "tools", "flows"):
        shutil.copytree(REPO / d, tmp_path / d, ignore=shutil.ignore_patterns("__pycache__"))
    text = (REPO / "dvc.yaml").read_text()
    train = text.index("\n  train:\n")
    broken = text[:train] + text[train:].replace("      - data/params.ok\n", "", 1)
    (tmp_path / "dvc.yaml").write_text(broken)
    assert stage_deps.differences(tmp_path) == [
        "stage train: does not depend on data/params.ok, so it may run before the params stage's check"
    ]
    assert stage_deps.rewrite(broken, stage_deps.expected(tmp_path)) == text


# ------------------------------------------------------------------------------------ dvc repro, for real


@pytest.mark.slow
def test_dvc_repro_refuses_a_typo_before_touching_any_output(tmp_path):
    """The whole demo pipeline in a copy (a few minutes; a smaller evaluation than the demo's), then
    `train.bogus_key: 1` or `train.checkpoint_every: ten` (a key train does not track): `dvc repro` fails naming
    it, within seconds, and train's outputs are still there."""
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    project = tmp_path / "project"
    for f in files:
        if (REPO / f).is_file() and not f.startswith("data/"):
            (project / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, project / f)
    (project / "dvc.lock").unlink(missing_ok=True)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["evaluate"].update(n_pairs=2, methods=["ours"], metrics=["psnr"])
    params["sampling"]["steps"] = 2
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "FACEPAINT_TRACKING": "off"}
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)

    def repro() -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "dvc", "repro"], cwd=project, env=env, capture_output=True, text=True
        )

    first = repro()
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    kept = [
        project / "data" / "model",
        project / "data" / "train" / "log.csv",
        project / "data" / "train" / "metrics.json",
    ]
    assert all(p.exists() for p in kept)
    again = repro()
    assert "Running stage" not in again.stdout, again.stdout  # nothing reruns
    for key, value in (("bogus_key", 1), ("checkpoint_every", "ten")):
        bad = json.loads(json.dumps(params))
        bad["train"][key] = value
        (project / "params.yaml").write_text(yaml.safe_dump(bad, sort_keys=False))
        start = time.perf_counter()
        proc = repro()
        took = time.perf_counter() - start
        assert proc.returncode != 0 and f"train.{key}" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
        assert took < 60, took  # about 5 s here; the bound leaves room for a loaded machine
        assert all(p.exists() for p in kept), [str(p) for p in kept if not p.exists()]
        assert "Running stage 'train'" not in proc.stdout
