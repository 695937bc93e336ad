"""Shared test fixtures: the real CelebAMask-HQ mini fixture (when ../shared is there), generated
demo data, tiny models, and the gates for slow, GPU and fixture tests. Shared helper functions are in
tests/helpers.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import config, tiny_conditions

REPO = Path(__file__).resolve().parents[1]
# Unit tests do not log to MLflow (each training run would log a model); tests/tracking/
# turns it on for itself against a temporary store.
os.environ.setdefault("FACEPAINT_TRACKING", "off")
# The licensed fixture lives beside the project and is never copied into it.
FIXTURE = Path(os.environ.get("FACEPAINT_FIXTURE", REPO.parent / "shared" / "fixtures" / "celebamask-hq-mini"))


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_configure(config):
    # the property tests' example counts (tests/test_bad_input.py): all of them with --runslow, a third by default
    os.environ.setdefault("FACEPAINT_FUZZ_SCALE", "1" if config.getoption("--runslow") else "0.34")


def pytest_itemcollected(item):
    """A test that reads the fixture is a fixture test, marked or not: `-m fixture` selects it."""
    if "fixture_root" in getattr(item, "fixturenames", ()) and "fixture" not in item.keywords:
        item.add_marker(pytest.mark.fixture)


def pytest_collection_modifyitems(config, items):
    skip_slow = pytest.mark.skip(reason="slow: run with --runslow")
    skip_fixture = pytest.mark.skip(reason=f"real CelebAMask-HQ fixture absent at {FIXTURE} (set FACEPAINT_FIXTURE)")
    for item in items:
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(skip_slow)
        if "fixture" in item.keywords and not has_fixture():
            item.add_marker(skip_fixture)


@pytest.fixture(scope="session", autouse=True)
def c2pa_key_dir(tmp_path_factory) -> Path:
    """Every test (and every process it starts) signs its edited PNGs with a key made in a temporary directory
    (facepaint.editing.signing: $FACEPAINT_C2PA_DIR), never with the user's ~/.config/facepaint/c2pa one."""
    d = tmp_path_factory.mktemp("c2pa")
    os.environ["FACEPAINT_C2PA_DIR"] = str(d)
    return d


def has_fixture() -> bool:
    return (FIXTURE / "CelebAMask-HQ-attribute-anno.txt").is_file()


@pytest.fixture(scope="session")
def fixture_root() -> Path:
    """The real 200-image CelebAMask-HQ fixture; a test (or fixture) that asks for it is skipped, with the
    reason, where it is absent (every user's clone: its licence forbids copying it into the project)."""
    if not has_fixture():
        pytest.skip(f"real CelebAMask-HQ fixture absent at {FIXTURE} (set FACEPAINT_FIXTURE)")
    return FIXTURE


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    """A small generated dataset in the CelebAMask-HQ layout (read-only: copy it to modify it)."""
    from tools.demo import DemoConfig, generate

    root = tmp_path_factory.mktemp("demo") / "data"
    generate(root, config("demo", DemoConfig, n_images=12, size=128, mask_size=64, seed=0), progress=False)
    return root


@pytest.fixture
def demo_copy(demo_root, tmp_path) -> Path:
    """A private copy of the demo dataset that a test may break."""
    import shutil

    dst = tmp_path / "dataset"
    shutil.copytree(demo_root, dst)
    return dst


@pytest.fixture(scope="session")
def demo_project(tmp_path_factory) -> Path:
    """A project directory with the data stages run on a small demo set (64 px, 24 images): the
    inputs of the train stage (data/latents, data/captions.parquet), the gan stage's MSaGAN (2 steps: the
    evaluation's `msagan`) and a params.yaml for them."""
    import yaml

    from facepaint.data.captions import CaptionConfig
    from facepaint.data.latents import LatentConfig
    from facepaint.data.masks import MaskConfig
    from facepaint.data.split import SplitConfig
    from facepaint.evaluation.msagan import GanConfig
    from facepaint.method.models import ModelConfig
    from stages import captions, demo, gan, latents, masks, split
    from stages.common import section
    from tools.demo import DemoConfig

    project = tmp_path_factory.mktemp("project")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["demo"].update(n_images=24, size=64, mask_size=64)
    params["masks"].update(resolution=64, min_size=32, workers=0)
    params["latents"].update(workers=0)
    params["gan"].update(max_steps=2)
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    cwd = os.getcwd()
    os.chdir(project)
    try:
        demo.run(section(params, "demo", DemoConfig), progress=False)
        split.run(Path("data/demo"), section(params, "split", SplitConfig))
        masks.run(Path("data/demo"), section(params, "masks", MaskConfig), progress=False)
        captions.run(Path("data/demo"), section(params, "captions", CaptionConfig))
        latents.run(
            Path("data/demo"),
            section(params, "model", ModelConfig),
            section(params, "latents", LatentConfig),
            progress=False,
        )
        gan.run(Path("data/demo"), section(params, "gan", GanConfig), progress=False)
    finally:
        os.chdir(cwd)
    return project


@pytest.fixture(scope="session")
def random_bisenet_weights(tmp_path_factory) -> Path:
    """A 19-class BiSeNet weights file with random values (the real ones cannot be downloaded here)."""
    import torch
    from facexlib.parsing.bisenet import BiSeNet

    path = tmp_path_factory.mktemp("weights") / "parsing_bisenet.pth"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        torch.save(BiSeNet(num_class=19).state_dict(), path)
    return path


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory):
    """A 'trained' tiny artifact (64 px): k/v moved away from the base model and
    an adapter with non-zero W2, so every part of it changes an edit. Returns facepaint's Artifact."""
    from tools.tiny_artifact import save_tiny_trained_artifact

    return save_tiny_trained_artifact(tmp_path_factory.mktemp("art") / "model", tiny_conditions(64))


@pytest.fixture(scope="session")
def demo_models(tmp_path_factory) -> Path:
    """The demo stage's tiny random baseline models (tools/demo_models.py) in their public layouts."""
    from tools import demo_models as writer

    out = tmp_path_factory.mktemp("demo_models")
    writer.write(out, 0)
    return out


@pytest.fixture(scope="session")
def baselines(demo_models):
    """evaluate.baselines of params.yaml with the demo models' paths under `demo_models`."""
    from facepaint.evaluation.run import EvalConfig

    b = config("evaluate", EvalConfig).baselines
    for field, value in vars(b).items():
        if isinstance(value, str) and value.startswith("data/demo_models/"):
            setattr(b, field, str(demo_models / value.removeprefix("data/demo_models/")))
    return b


# The offline process: runs each snippet it is sent (one JSON line) in a fresh namespace and answers with what the
# snippet printed; the libraries' imports (5-8 s a process) are paid once per test session.
OFFLINE_WORKER = r"""
import contextlib, io, json, sys, traceback
answer = sys.stdout
for line in sys.stdin:
    out, error = io.StringIO(), None
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(json.loads(line), "<offline snippet>", "exec"), {"__name__": "__offline__"})
    except BaseException:
        error = traceback.format_exc()
    answer.write(json.dumps({"stdout": out.getvalue(), "error": error}) + "\n")
    answer.flush()
"""


@pytest.fixture(scope="session")
def offline_process(tmp_path_factory):
    """One Python process as on a machine without internet: HF_HUB_OFFLINE, an empty HF cache, no PATH."""
    import subprocess
    import sys

    tmp = tmp_path_factory.mktemp("offline")
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp / "hf"), "PATH": ""}
    with open(tmp / "stderr.txt", "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", OFFLINE_WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
            text=True, env=env, cwd=REPO,
        )  # fmt: skip
    yield proc, tmp / "stderr.txt"
    proc.stdin.close()
    proc.wait(timeout=30)


@pytest.fixture
def offline(offline_process):
    """Run Python `code` as on a machine without internet (HF_HUB_OFFLINE, an empty HF cache) and return what it
    printed; fails the test when the code raises. (One process serves the session's snippets, each in a fresh
    namespace; what a snippet imports stays imported, as the libraries' offline switches are read at import.)"""
    import json
    import queue
    import threading

    proc, stderr = offline_process

    def run(code: str) -> str:
        answers: queue.Queue = queue.Queue()
        proc.stdin.write(json.dumps(code) + "\n")
        proc.stdin.flush()
        threading.Thread(target=lambda: answers.put(proc.stdout.readline()), daemon=True).start()
        try:
            line = answers.get(timeout=120)
        except queue.Empty:
            proc.kill()
            pytest.fail(f"the offline process did not answer in 120 s; its stderr: {stderr.read_text()[-2000:]}")
        assert line, f"the offline process ended; its stderr: {stderr.read_text()[-2000:]}"
        answer = json.loads(line)
        assert answer["error"] is None, answer["error"][-2000:]
        return answer["stdout"]

    return run
