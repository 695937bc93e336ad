"""The retrain flow (flows/retrain.py) under Prefect's test harness (a temporary local server: conftest.py):
retries, the lock, the command line, and the demo pipeline for real."""

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flows import retrain as rt
from flows import watch as wt

REPO = Path(__file__).resolve().parents[2]


def test_failures_are_classified():
    assert isinstance(rt.classify("train", 1, "...\nERROR: Connection reset by peer\n"), rt.TransientError)
    assert isinstance(rt.classify("latents", 1, "Unable to acquire lock on data/latents"), rt.TransientError)
    real = rt.classify("masks", 1, "error: masks: 9 of 60 items are unusable (15.0% > 5.0%)")
    assert isinstance(real, rt.PipelineError) and "stage masks failed (exit 1)" in str(real)
    assert isinstance(rt.classify("train", 1, "RuntimeError: CUDA out of memory"), rt.PipelineError)


def fake_project(tmp_path) -> Path:
    (tmp_path / "data/evaluate").mkdir(parents=True)
    (tmp_path / "data/evaluate/metrics.json").write_text(json.dumps({"methods": {"ours": {"psnr_bg": 30.0}}}))
    (tmp_path / "data/register.json").write_text(
        json.dumps({"registered": True, "version": 2, "promoted": False, "reason": "PSNR fails"})
    )
    return tmp_path


@pytest.fixture
def fast_retries(monkeypatch):
    monkeypatch.setattr(rt, "run_stage", rt.run_stage.with_options(retry_delay_seconds=0))
    monkeypatch.setattr(rt, "pipeline_stages", lambda root: ["split", "train"])


def test_a_transient_failure_is_retried(harness, fast_retries, monkeypatch, tmp_path):
    calls = []

    def flaky(stage, project):
        calls.append(stage)
        if stage == "train" and calls.count("train") < 3:
            raise rt.TransientError("stage train failed: Connection reset by peer")
        return "ok"

    monkeypatch.setattr(rt, "dvc_repro", flaky)
    summary = rt.retrain(str(fake_project(tmp_path)))
    assert calls == ["split", "train", "train", "train"]
    assert summary["register"]["version"] == 2 and summary["metrics"]["psnr_bg"] == 30.0
    assert not (tmp_path / rt.LOCK).exists() or not rt.FileLock(str(tmp_path / rt.LOCK)).is_locked


def test_a_real_failure_is_not_retried(harness, fast_retries, monkeypatch, tmp_path):
    calls = []

    def broken(stage, project):
        calls.append(stage)
        raise rt.PipelineError("stage split failed (exit 1): attribute file not found")

    monkeypatch.setattr(rt, "dvc_repro", broken)
    state = rt.retrain(str(fake_project(tmp_path)), return_state=True)
    assert state.is_failed() and calls == ["split"]
    with pytest.raises(rt.PipelineError, match="attribute file not found"):
        state.result()


def test_two_runs_never_overlap(harness, fast_retries, monkeypatch, tmp_path):
    monkeypatch.setattr(rt, "dvc_repro", lambda stage, project: "ok")
    project = fake_project(tmp_path)
    with rt.retrain_lock(project):
        state = rt.retrain(str(project), return_state=True)
        assert state.is_failed()
        holder = f"pid {os.getpid()} on {socket.gethostname()}, started "  # who holds it, in the message
        with pytest.raises(rt.AlreadyRunning, match=f"another retrain of .* is running: {holder}"):
            state.result()
    assert rt.retrain(str(project))["register"]["version"] == 2  # free again once the other run is done
    assert (project / rt.LOCK).read_text() == ""  # released: nobody named


HOLD = """
import sys, time
from pathlib import Path
from flows.retrain import AlreadyRunning, retrain_lock

root = Path(sys.argv[1])
try:
    with retrain_lock(root):
        print("holding", flush=True)
        with open(root / "runs", "a") as f:
            f.write("run\\n")
        deadline = time.monotonic() + float(sys.argv[2])
        while not (root / "refused").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    print("ran")
except AlreadyRunning as e:
    (root / "refused").write_text(str(e))
    print("refused:", e)
"""


def _hold(project: Path, seconds: float) -> subprocess.Popen:
    """A process that takes the retrain lock the way the flow does and holds it for `seconds` (or until another
    was refused)."""
    cmd = [sys.executable, "-c", HOLD, str(project), str(seconds)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_two_triggers_at_once_give_one_run(tmp_path):
    """Two processes started together both try to start a run: one runs, the other is refused, naming it."""
    procs = [_hold(tmp_path, 120) for _ in range(2)]
    said = sorted(p.communicate(timeout=180)[0].strip().splitlines()[-1] for p in procs)
    assert said[0] == "ran" and said[1].startswith("refused: another retrain"), said
    assert (tmp_path / "runs").read_text() == "run\n"
    assert any(f"pid {p.pid} on {socket.gethostname()}" in said[1] for p in procs), said


SLOW_CLAIM = """
import fcntl, json, os, socket, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(0.4)  # the window between taking the lock and writing one's name
os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "now"}).encode(), 0)
time.sleep(30)
"""


def test_a_refusal_in_the_instant_before_the_holder_writes_its_name_still_names_it(tmp_path):
    """The holder takes the lock, then writes its name: a run refused in between waits for the name (CI once
    saw 'a process that has not written its name yet' where two triggers raced)."""
    holder = subprocess.Popen([sys.executable, "-c", SLOW_CLAIM, str(tmp_path / rt.LOCK)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"locked"
        with pytest.raises(rt.AlreadyRunning, match=f"pid {holder.pid} on {socket.gethostname()}"):
            with rt.retrain_lock(tmp_path):
                pass
    finally:
        holder.kill()
        holder.wait()


def test_a_run_killed_holding_the_lock_does_not_block_the_next(harness, fast_retries, monkeypatch, tmp_path, caplog):
    """SIGKILL a process holding the retrain lock: the OS releases the lock (flock); the next run sees the dead
    holder's name left in the file, says so, and runs."""
    monkeypatch.setattr(rt, "dvc_repro", lambda stage, project: "ok")
    monkeypatch.setattr(rt, "get_run_logger", lambda: logging.getLogger("facepaint.retrain"))
    project = fake_project(tmp_path)
    holder = _hold(project, 600)
    assert holder.stdout.readline().strip() == "holding"
    assert json.loads((project / rt.LOCK).read_text())["pid"] == holder.pid
    with pytest.raises(rt.AlreadyRunning, match=f"pid {holder.pid} on"):  # alive: refused, named
        rt.retrain(str(project), return_state=True).result()
    holder.send_signal(signal.SIGKILL)
    assert holder.wait() == -signal.SIGKILL and json.loads((project / rt.LOCK).read_text())["pid"] == holder.pid
    with caplog.at_level("WARNING", logger="facepaint.retrain"):
        assert rt.retrain(str(project))["register"]["version"] == 2
    said = [r.getMessage() for r in caplog.records if r.name == "facepaint.retrain"]
    assert any(f"previous retrain (pid {holder.pid} on" in m and "was killed" in m for m in said), said
    assert (project / rt.LOCK).read_text() == ""
    print(f"\nretrain lock: holder pid {holder.pid} SIGKILLed; next run proceeded: {said[0]}")


def test_the_command_line_refuses_arguments(monkeypatch, tmp_path):
    """`python -m flows.retrain` takes no arguments: the old `python -m flows.retrain serve` (now `python -m
    flows.serve`) is refused with a pointer there, before any retrain runs (in an empty directory here, so that
    a run, were it started, could not touch the project)."""
    import runpy

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["flows.retrain", "serve"])
    with pytest.raises(SystemExit) as e:
        runpy.run_path(str(REPO / "flows" / "retrain.py"), run_name="__main__")  # as python -m runs it
    assert "no arguments; got ['serve']" in str(e.value.code) and "python -m flows.serve" in str(e.value.code)
    assert not (tmp_path / rt.LOCK).exists()  # no run started


# ---------------------------------------------------------------------------------- the demo, for real


@pytest.fixture(scope="module")
def small_project(tmp_path_factory):
    """A copy of the committed project with a small demo (24 images, 64 px, few steps)."""
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    dst = tmp_path_factory.mktemp("flow") / "project"
    for f in files:
        if (REPO / f).is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, dst / f)
    for f in ("dvc.lock", "data/register.json"):
        (dst / f).unlink(missing_ok=True)
    params = yaml.safe_load((dst / "params.yaml").read_text())
    params["demo"].update(n_images=24, size=64, mask_size=64)
    params["masks"].update(resolution=64, min_size=32)
    params["train"].update(batch_size=4, max_steps=4, checkpoint_every=2)
    params["sampling"].update(steps=2, sigma=8.0)  # sigma in pixels of a 512 px crop: 1 px at 64 px
    params["evaluate"].update(
        n_pairs=2,
        warmup=0,
        background_dilation=1,
        profile_radius=4,
        methods=["ours", "ours_no_blend", "sd15_inpaint"],
        metrics=["psnr"],
    )
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(["git", "init", "-q"], cwd=dst, check=True)
    return dst


@pytest.mark.slow  # ~100 s on 2 cores: every stage in its own process; the flow's logic is tested above with stubs
def test_retrain_flow_runs_the_demo_pipeline_and_the_watch_sees_new_data(harness, small_project, monkeypatch):
    monkeypatch.setenv("FACEPAINT_TRACKING", "on")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{small_project / 'mlflow.db'}")
    summary = rt.retrain(str(small_project))
    reg = summary["register"]
    assert reg["registered"] and reg["promoted"] and reg["version"] == 1 and reg["reason"] == "no champion yet"
    assert summary["metrics"]["changed_outside_soft"] == 0
    assert wt.data_changes(wt.changed_stages(str(small_project))) == {}
    img = small_project / "data/demo/CelebA-HQ-img/3.jpg"  # a changed photo in the dataset
    img.write_bytes((small_project / "data/demo/CelebA-HQ-img/4.jpg").read_bytes())
    calls = []
    monkeypatch.setattr(wt, "retrain", lambda project: calls.append(project) or {"stub": True})
    out = wt.watch(str(small_project))
    assert out["retrained"] and "split" in out["changes"] and calls == [str(small_project)]
