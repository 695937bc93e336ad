"""Fault injection (issue 15): a SIGKILL at any point of a stage, a full disk during a write, a truncated or
corrupt checkpoint or artifact, a tracking server that is down or hangs, a registration cut short.

Every test prints what it injected and what happened: `pytest -s tests/test_faults.py` gives the figures,
and `--runslow` adds the kill of each of masks, captions, latents, train, evaluate and register followed by
`dvc repro`, and the real train, evaluate and register stages against a dead and a hanging tracking server.
(The retrain flow's lock, a holder killed mid-run and two triggers at once: tests/flows/test_retrain.py.)

How the faults are made:
- SIGKILL: from outside after a seeded random delay within the stage's measured runtime, or at a chosen point
  by HOOK (below), which runs the stage with facepaint.common.io's rename into place of one output replaced by: cut
  the temporary to half its size (as if killed while writing it), then SIGKILL. For a directory that point is
  between atomic_dir's two renames, the previous version set aside and the new one not yet in place.
- ENOSPC: facepaint.common.io's temporary files are links to /dev/full, so the kernel fails the write (Python's,
  pyarrow's, PIL's and matplotlib's writers, torch.save through a Python file). safetensors writes its own
  temporary and renames it over the target, so its writer is replaced by one that writes half and raises
  safetensors' own error for a full disk ("... (os error 28)").
- Corruption: a file cut to half, overwritten with random bytes, or one byte flipped.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
import yaml

from facepaint.common import io as fio
from facepaint.common.io import DiskFullError, atomic_path, write_json, write_parquet
from facepaint.method.models import ModelConfig
from facepaint.method.train import TrainConfig
from tests.helpers import config, tiny_conditions

REPO = Path(__file__).resolve().parents[1]
DVC = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
KILLED = ("masks", "captions", "latents", "train", "evaluate", "register")
MODEL = config("model", ModelConfig)
SEED = 15  # the kill delays' seed (issue 15)

# Run a stage (argv[1], e.g. stages.masks) with one fault (env FAULT, at FAULT_AT). See the module docstring.
HOOK = r"""
import os, runpy, signal, sys, tempfile
from pathlib import Path
from types import SimpleNamespace

import facepaint.common.io as fio

fault, target = os.environ["FAULT"], os.environ["FAULT_AT"]


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def halve(path):
    path = Path(path)
    files = [path] if path.is_file() else sorted((f for f in path.rglob("*") if f.is_file()), key=os.path.getsize)
    for f in files[-1:]:  # a directory: its largest file
        os.truncate(f, os.path.getsize(f) // 2)


class KillingOs:  # facepaint.common.io's `os`: the rename that would put `target` in place kills the process instead
    def __getattr__(self, name):
        return getattr(os, name)

    def replace(self, src, dst):
        if Path(dst).name == target:
            halve(src)
            die()
        return os.replace(src, dst)


def mkstemp(**kw):  # the temporary of `target` is a link to /dev/full: its write fails with ENOSPC
    fd, name = tempfile.mkstemp(**kw)
    if kw.get("prefix") == f".{target}.":
        os.close(fd)
        os.unlink(name)
        os.symlink("/dev/full", name)
        fd = os.open(os.devnull, os.O_RDONLY)
    return fd, name


if fault == "kill":
    fio.os = KillingOs()
elif fault == "enospc":
    fio.tempfile = SimpleNamespace(mkstemp=mkstemp, mkdtemp=tempfile.mkdtemp)
elif fault == "kill-after-register":  # the registry has made the version; aliases and tags are not set yet
    import mlflow

    made = mlflow.register_model

    def register_model(*args, **kwargs):
        made(*args, **kwargs)
        die()

    mlflow.register_model = register_model
if sys.argv[1] == "-c":  # python -c HOOK -c CODE
    exec(sys.argv[2], {"__name__": "__main__"})
else:  # python -c HOOK stages.NAME
    sys.argv = sys.argv[1:]
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def _env(**extra) -> dict:
    """A stage subprocess's environment: the project importable, one thread (CPU sums depend on the count)."""
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", **extra}


def _temporaries(root: Path) -> list[str]:
    """What facepaint.common.io's atomic writers leave when killed: `.NAME.*.tmp` temporaries, `.NAME.*.old` aside."""
    found = [p for pattern in (".*.tmp", ".*.old") for p in root.rglob(pattern)]
    return sorted(str(p.relative_to(root)) for p in found)


def _damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncate":
        data = data[: len(data) // 2]
    elif how == "garbage":
        data = bytearray(random.Random(0).randbytes(len(data)))
    elif how == "flip":  # the last byte: tensor data, so the file still parses
        data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


@contextlib.contextmanager
def _one_thread():
    """As the stage subprocesses (OMP_NUM_THREADS=1): CPU reductions, hence the weights, depend on it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# ----------------------------------------------------------------------------------------------- full disk


def _no_space(monkeypatch, links=()) -> None:
    """facepaint.common.io's temporary files are links to /dev/full; so are the files `links` in its temporary dirs."""

    def mkstemp(**kw):
        fd, name = tempfile.mkstemp(**kw)
        os.close(fd)
        os.unlink(name)
        os.symlink("/dev/full", name)
        return os.open(os.devnull, os.O_RDONLY), name

    def mkdtemp(**kw):
        d = tempfile.mkdtemp(**kw)
        for name in links:
            os.symlink("/dev/full", os.path.join(d, name))
        return d

    monkeypatch.setattr(fio, "tempfile", SimpleNamespace(mkstemp=mkstemp, mkdtemp=mkdtemp))
    chmod = os.chmod  # never change /dev/full's mode through a link (atomic_path's chmod follows links)
    monkeypatch.setattr(os, "chmod", lambda p, *a, **k: None if os.path.islink(p) else chmod(p, *a, **k))


def _safetensors_no_space(monkeypatch, module, name: str = "save_file") -> None:
    """safetensors' writer in `module` writes half the file, then fails as it does on a full disk."""
    from safetensors import SafetensorError

    real = getattr(module, name)

    def save_file(tensors, filename, metadata=None):
        real(tensors, filename, metadata=metadata)
        os.truncate(filename, os.path.getsize(filename) // 2)
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(module, name, save_file)


@pytest.fixture(scope="module")
def tiny_training():
    """A tiny FaceModel with its optimizer and LR schedule (what a checkpoint holds)."""
    from facepaint.method.models import tiny_components
    from facepaint.method.train import build_model, build_optimizer

    cfg = config("train", TrainConfig)
    comps = tiny_components(seed=0, parts=("unet", "text_encoder"))
    model, _ = build_model(comps, cfg, torch.device("cpu"))
    optimizer, schedule = build_optimizer(model, cfg, torch.device("cpu"), 10)
    return SimpleNamespace(comps=comps, model=model, optimizer=optimizer, schedule=schedule)


def _write_csv(path, v):
    with atomic_path(path) as tmp:
        pd.DataFrame({"step": range(v * 10), "loss": 0.5}).to_csv(tmp, index=False)


def _write_png(path, v):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from facepaint.evaluation.plots import save_fig

    fig, ax = plt.subplots()
    ax.plot(range(v + 2))
    save_fig(fig, path)


def _write_checkpoint(t, path, v):
    from facepaint.method.train import save_checkpoint

    save_checkpoint(path.parent, int(path.name.split("-")[1]), t.model, t.optimizer, t.schedule, "f", [{"v": v}], 2)


def _write_artifact(t, path, v):
    from facepaint.method.artifact import save_artifact

    save_artifact(path, t.comps.unet, t.model.adapter, tiny_conditions(64), extra={"v": v})


def _write_fid_stats(path, v):
    import numpy as np

    from facepaint.evaluation.metrics import FID

    FID.save_stats(path, np.full(4, float(v)), np.eye(4), 10 * v)


def _safetensors_in(module_name: str):
    return lambda mp: _safetensors_no_space(mp, __import__(module_name, fromlist=["x"]))


# name: (output, writer(training, path, version), fault(monkeypatch))
WRITERS = {
    "json (write_json)": ("metrics.json", lambda t, p, v: write_json({"v": v}, p), _no_space),
    "parquet (write_parquet)": (
        "masks.parquet",
        lambda t, p, v: write_parquet(pd.DataFrame({"i": range(v)}), p),
        _no_space,
    ),
    "csv (train log, profile)": ("log.csv", lambda t, p, v: _write_csv(p, v), _no_space),
    "png (evaluate's figures)": ("plot.png", lambda t, p, v: _write_png(p, v), _no_space),
    "checkpoint: torch.save": ("step-00000004", _write_checkpoint, lambda mp: _no_space(mp, ["optimizer.pt"])),
    "checkpoint: safetensors": ("step-00000004", _write_checkpoint, _safetensors_in("facepaint.method.train")),
    "artifact: facepaint.json": ("model", _write_artifact, lambda mp: _no_space(mp, ["facepaint.json"])),
    "artifact: safetensors": ("model", _write_artifact, _safetensors_in("facepaint.method.artifact")),
    "FID statistics: safetensors": (
        "ref.safetensors",
        lambda t, p, v: _write_fid_stats(p, v),
        _safetensors_in("safetensors.numpy"),
    ),
}


def _snapshot(path: Path) -> dict:
    files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
    return {str(f.relative_to(path.parent)): f.read_bytes() for f in files}


@pytest.mark.parametrize("case", list(WRITERS))
def test_a_full_disk_names_the_path_and_keeps_the_previous_output(case, tiny_training, tmp_path, monkeypatch):
    name, write, fault = WRITERS[case]
    target = tmp_path / "out" / name
    target.parent.mkdir()
    write(tiny_training, target, 1)  # the previous output
    before = _snapshot(target)
    with monkeypatch.context() as mp:
        fault(mp)
        with pytest.raises(DiskFullError) as e:
            write(tiny_training, target, 2)
    said = str(e.value)
    assert f"cannot write {target}: the disk is full" in said and "previous version" in said, said
    assert _snapshot(target) == before  # byte for byte
    assert _temporaries(tmp_path) == [] and sorted(os.listdir(target.parent)) == [name]
    print(f"\nENOSPC {case}: {said[:150]}... -> previous {name} byte-identical ({len(before)} file(s)), no temporary")


def test_a_full_disk_in_the_latents_stage_keeps_the_previous_cache(demo_project, tmp_path, monkeypatch):
    """The latent shards (safetensors inside atomic_dir): the error names data/latents, the old cache stays."""
    import facepaint.data.latents
    from facepaint.data.latents import LatentConfig
    from stages import latents as stage

    monkeypatch.chdir(tmp_path)
    shutil.copytree(demo_project / "data/latents", tmp_path / "data/latents")
    before = _snapshot(tmp_path / "data/latents")
    _safetensors_no_space(monkeypatch, facepaint.data.latents)
    with pytest.raises(DiskFullError, match="cannot write data/latents: the disk is full") as e:
        stage.run(
            demo_project / "data/demo",
            MODEL,
            config("latents", LatentConfig, workers=0),
            split=demo_project / "data/split.parquet",
            masks=demo_project / "data/masks.parquet",
            progress=False,
        )
    assert _snapshot(tmp_path / "data/latents") == before and _temporaries(tmp_path) == []
    print(f"\nENOSPC latents stage: {str(e.value)[:120]}... -> data/latents byte-identical, no temporary")


def test_a_stage_on_a_full_disk_prints_one_error_line(demo_project, tmp_path):
    """`python -m stages.captions` with data/captions.parquet's write failing in the kernel (ENOSPC)."""
    project = _small_copy(demo_project, tmp_path)
    before = (project / "data/captions.parquet").read_bytes()
    proc = subprocess.run(
        [sys.executable, "-c", HOOK, "stages.captions"],
        cwd=project,
        env=_env(FAULT="enospc", FAULT_AT="captions.parquet"),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot write data/captions.parquet: the disk is full"), last
    assert (project / "data/captions.parquet").read_bytes() == before and _temporaries(project / "data") == []
    print(f"\nENOSPC stages.captions: exit 1, {last[:110]}...; previous captions.parquet intact, no temporary")


# --------------------------------------------------------------------------------------------- checkpoints

TRAIN8 = dict(batch_size=4, max_steps=8, checkpoint_every=2, keep_checkpoints=2, log_every=2)


def _train(project: Path, work: Path, stop_after: int | None = None):
    from stages import train as stage

    with _one_thread():
        return stage.run(
            MODEL,
            config("train", TrainConfig, **TRAIN8),
            latents=project / "data/latents",
            captions=project / "data/captions.parquet",
            out=work / "model",
            checkpoints=work / "checkpoints",
            log=work / "log.csv",
            metrics=work / "metrics.json",
            progress=False,
            stop_after=stop_after,
        )


@pytest.fixture(scope="module")
def stopped_run(demo_project, tmp_path_factory):
    """An uninterrupted 8-step run, and the same run stopped after 6 steps (checkpoints of steps 4 and 6)."""
    whole, stopped = tmp_path_factory.mktemp("whole"), tmp_path_factory.mktemp("stopped")
    _train(demo_project, whole)
    _train(demo_project, stopped, stop_after=6)
    assert sorted(p.name for p in (stopped / "checkpoints").iterdir()) == ["step-00000004", "step-00000006"]
    return whole, stopped


# kind: ((checkpoint, file, damage), ...), the step training resumes from (None: from scratch)
CHECKPOINT_DAMAGE = {
    "newest weights cut to half": ((6, "trainable.safetensors", "truncate"),),
    "newest optimizer state overwritten": ((6, "optimizer.pt", "garbage"),),
    "one byte of the newest weights flipped (still parses)": ((6, "trainable.safetensors", "flip"),),
    "newest state.json cut to half": ((6, "state.json", "truncate"),),
    "both checkpoints damaged": ((6, "trainable.safetensors", "truncate"), (4, "rng.pt", "truncate")),
}


@pytest.mark.parametrize("kind", list(CHECKPOINT_DAMAGE))
def test_a_damaged_checkpoint_resumes_from_the_previous_one(kind, stopped_run, demo_project, tmp_path, caplog):
    from safetensors.torch import load_file

    whole, stopped = stopped_run
    shutil.copytree(stopped / "checkpoints", tmp_path / "checkpoints")
    damaged = [tmp_path / "checkpoints" / f"step-{s:08d}" / f for s, f, _ in CHECKPOINT_DAMAGE[kind]]
    for path, (_, _, how) in zip(damaged, CHECKPOINT_DAMAGE[kind]):
        _damage(path, how)
    with caplog.at_level("INFO", logger="facepaint.train"):
        _train(demo_project, tmp_path)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    for path in damaged:
        assert any(str(path) in w for w in warnings), (path, warnings)
    resumed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("resuming from")]
    expect = None if len(damaged) > 1 else "step-00000004"
    assert resumed[0].split()[2].endswith(expect) if expect else resumed == [], resumed
    for f in ("kv.safetensors", "adapter.safetensors"):  # as if never interrupted, bit for bit
        a, b = load_file(str(whole / "model" / f)), load_file(str(tmp_path / "model" / f))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    cols = ["step", "loss", "lr_kv"]
    assert pd.read_csv(whole / "log.csv")[cols].equals(pd.read_csv(tmp_path / "log.csv")[cols])
    print(
        f"\ncheckpoint {kind}: warned {' | '.join(w.replace(f'{tmp_path}/', '')[:150] for w in warnings)}; "
        f"resumed from {expect or 'scratch'}; artifact and loss curve bit-identical to the uninterrupted run"
    )


# ------------------------------------------------------------------------------------------------ artifact

ARTIFACT_DAMAGE = {
    "kv.safetensors cut to half": ("kv.safetensors", "truncate"),
    "adapter.safetensors overwritten": ("adapter.safetensors", "garbage"),
    "one byte of kv.safetensors flipped (still parses)": ("kv.safetensors", "flip"),
    "facepaint.json cut to half": ("facepaint.json", "truncate"),
}


@pytest.mark.parametrize("kind", list(ARTIFACT_DAMAGE))
def test_a_damaged_artifact_is_an_error_naming_the_file(kind, tiny_artifact, tmp_path, capsys):
    from PIL import Image

    from facepaint.apps.cli import main
    from facepaint.editing.editor import FaceEditor
    from facepaint.method.artifact import ArtifactError, load_artifact
    from tests.helpers import box_mask, textured

    bad = Path(shutil.copytree(tiny_artifact.path, tmp_path / "model"))
    name, how = ARTIFACT_DAMAGE[kind]
    _damage(bad / name, how)
    with pytest.raises(ArtifactError) as e:
        load_artifact(bad)
    said = str(e.value)
    assert str(bad) in said and name in said, said
    with pytest.raises(ArtifactError, match=re.escape(name)):
        FaceEditor.from_artifact(bad, device="cpu")
    Image.fromarray(textured(64, 64)).save(tmp_path / "p.png")
    Image.fromarray(box_mask(64, 64, 16, 48, 16, 48).astype("uint8") * 255).save(tmp_path / "m.png")
    capsys.readouterr()
    code = main(
        ["edit", str(tmp_path / "p.png"), "--prompt", "a man", "--out", str(tmp_path / "o.png")]
        + ["--model", str(bad), "--mask", str(tmp_path / "m.png"), "--steps", "1"]
    )
    err = capsys.readouterr().err
    assert code != 0 and name in err and "Traceback" not in err and not (tmp_path / "o.png").exists(), err
    print(f"\nartifact {kind}: load_artifact, FaceEditor.from_artifact, facepaint edit (exit {code}): {said[:140]}...")


# ---------------------------------------------------------------------------------------------- tracking


@pytest.fixture
def dead_server() -> str:
    """An http:// tracking URI on a local port nobody listens on (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def hanging_server():
    """An http:// tracking URI whose server accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    server.settimeout(0.2)
    held, stop = [], threading.Event()

    def accept():
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


@pytest.fixture(params=["down", "hanging"])
def broken_store(request, monkeypatch):
    """Tracking on, against a server that is down or hangs; MLflow's HTTP tries bounded to 1 s and no retry
    here (tracking.runs.HTTP_BOUNDS' own 10 s x 3 tries are measured on the real stages by the slow test)."""
    uri = request.getfixturevalue("dead_server" if request.param == "down" else "hanging_server")
    monkeypatch.setenv("FACEPAINT_TRACKING", "on")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    return SimpleNamespace(kind=request.param, uri=uri)


def test_the_http_bounds_apply_unless_the_environment_sets_them(monkeypatch):
    from tracking import runs

    for name in runs.HTTP_BOUNDS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    runs._mlflow()
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "3"  # the user's own
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == runs.HTTP_BOUNDS["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]
    from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_MAX_RETRIES, MLFLOW_HTTP_REQUEST_TIMEOUT

    assert MLFLOW_HTTP_REQUEST_TIMEOUT.get() == 3 and MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() == 2


def test_train_and_evaluate_tracking_finish_and_say_what_was_not_recorded(broken_store, tmp_path):
    """The train and evaluate stages' MLflow logging (stages/train.py and stages/evaluate.py `track`)."""
    from facepaint.evaluation.run import EvalConfig
    from facepaint.method.options import SamplingOptions
    from stages import evaluate as evaluate_stage
    from stages import train as train_stage

    log, metrics = tmp_path / "log.csv", tmp_path / "metrics.json"
    log.write_text("step,loss\n2,0.5\n")
    write_json({"steps": 2}, metrics)
    result = SimpleNamespace(
        artifact=SimpleNamespace(version="0123456789ab"),
        history=[{"step": 2, "loss": 0.5}],
        metrics={"steps": 2, "final_loss": 0.5, "trainable_parameters": {"kv": 1}},
    )
    evaluated = {"methods": {"ours": {"psnr_bg": 30.0}}}
    start = time.perf_counter()
    with pytest.warns(UserWarning) as caught:
        train_stage.track(result, MODEL, config("train", TrainConfig), log, metrics)
        evaluate_stage.track(
            evaluated, config("evaluate", EvalConfig), config("sampling", SamplingOptions), tmp_path, "0123456789ab"
        )
    took = time.perf_counter() - start
    said = [str(w.message) for w in caught if "MLflow tracking" in str(w.message)]
    missed = [m for m in said if "not recorded" in m]
    assert len(said) == 4 and len(missed) == 2, said  # per stage: the failure once, then what was not recorded
    assert f"not recorded: start run; log history; log metrics; log {log}; log {metrics}." in missed[0]
    assert f"not recorded: start run; log metrics; log {tmp_path}." in missed[1]
    assert took < 10, took
    print(
        f"\ntracking {broken_store.kind} ({broken_store.uri}): train's and evaluate's tracking gave up in "
        f"{took:.1f} s; {missed[0][:200]}... | {missed[1][:120]}..."
    )


@pytest.fixture
def evaluated(tiny_artifact, tmp_path) -> Path:
    path = tmp_path / "metrics.json"
    write_json({"artifact": tiny_artifact.version, "methods": {"ours": {"psnr_bg": 30.0}}}, path)
    return path


def test_register_with_the_store_down_or_hanging_fails_as_transient(broken_store, tiny_artifact, evaluated, tmp_path):
    from flows.retrain import TransientError, classify
    from stages import register as stage
    from stages.register import RegisterConfig

    out = tmp_path / "register.json"
    start = time.perf_counter()
    with pytest.raises(stage.RegistryError) as e:
        stage.run(config("register", RegisterConfig), tiny_artifact.path, metrics=evaluated, out=out)
    took = time.perf_counter() - start
    said = str(e.value)
    assert said.startswith(f"model registry at {broken_store.uri}: artifact {tiny_artifact.version} not registered")
    assert isinstance(classify("register", 1, f"error: {said}\n"), TransientError)  # the flow retries it
    assert not out.exists() and took < 10
    print(f"\nregister, store {broken_store.kind}: failed in {took:.1f} s, classified transient: {said[:230]}...")


def test_register_with_tracking_off_succeeds_and_says_not_registered(tiny_artifact, evaluated, tmp_path, monkeypatch):
    from stages import register as stage
    from stages.register import RegisterConfig

    monkeypatch.setenv("FACEPAINT_TRACKING", "off")
    outcome = stage.run(config("register", RegisterConfig), tiny_artifact.path, evaluated, out=tmp_path / "r.json")
    assert outcome["registered"] is False and "FACEPAINT_TRACKING" in outcome["reason"]
    assert json.loads((tmp_path / "r.json").read_text()) == outcome


class Killed(BaseException):
    """Stands for a SIGKILL inside the process (the slow test kills the register stage for real)."""


def test_a_registration_cut_short_is_finished_once(tiny_artifact, tmp_path, monkeypatch):
    """Registering the same model again (a retried or killed register) reuses its version: no version 2, 3..."""
    from mlflow import MlflowClient

    from stages.register import RegisterConfig
    from tracking import registry

    monkeypatch.setenv("FACEPAINT_TRACKING", "on")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    cfg = config("register", RegisterConfig)
    rules, name, model = registry.Gate(**cfg.gate), cfg.model_name, str(tiny_artifact.path)
    metrics = {"psnr_bg": 30.0}
    with monkeypatch.context() as mp:  # cut short once the version exists, before its aliases and tags
        mp.setattr(MlflowClient, "set_registered_model_alias", lambda *a, **k: (_ for _ in ()).throw(Killed()))
        with pytest.raises(Killed):
            registry.register(model, metrics, rules, name)
    client = MlflowClient()
    assert [int(v.version) for v in client.search_model_versions(f"name='{name}'")] == [1]
    first = registry.register(model, metrics, rules, name)  # the rerun
    again = registry.register(model, metrics, rules, name)  # and one more: already the champion
    assert first == again and first["version"] == 1 and first["promoted"] and first["reason"] == "no champion yet"
    other = shutil.copytree(tiny_artifact.path, tmp_path / "other")  # another model gets the next version
    assert registry.register(str(other), {"psnr_bg": 29.0}, rules, name)["version"] == 2
    assert registry.register(model, metrics, rules, name)["version"] == 1
    versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
    assert versions == [1, 2] and int(client.get_model_version_by_alias(name, "champion").version) == 1
    print(f"\nregistry: cut short after the version was made, then 4 more registrations: versions {versions}")


# ----------------------------------------------------------------------------------- SIGKILL, fast part


def _small_copy(project: Path, dst: Path) -> Path:
    """The data stages' part of `project` (params, split, masks, captions) with its dataset linked."""
    (dst / "data").mkdir(parents=True)
    shutil.copy2(project / "params.yaml", dst / "params.yaml")
    os.symlink(project / "data/demo", dst / "data/demo")
    for name in ("split.parquet", "masks.parquet", "masks_metrics.json", "captions.parquet", "reports"):
        src = project / "data" / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst / "data" / name)
    return dst


def _outputs(stage: str) -> list[str]:
    """The stage's outputs as dvc.yaml declares them (outs, metrics, plots)."""
    s = DVC[stage]
    return [next(iter(o)) if isinstance(o, dict) else o for k in ("outs", "metrics", "plots") for o in s.get(k, [])]


def test_sigkill_of_masks_and_captions_leaves_nothing_partial(demo_project, tmp_path):
    """`stages.masks` killed at the rename of data/masks.parquet (its temporary cut to half), `stages.captions`
    killed after a seeded random delay; after each, nothing partial is in place, and the rerun's outputs are
    byte-identical to the uninterrupted run's (the demo_project fixture's) with no temporary left."""
    project = _small_copy(demo_project, tmp_path / "project")
    ref = {o: (demo_project / o).read_bytes() for o in (*_outputs("masks"), *_outputs("captions"))}

    def on_disk(outputs):
        return {
            o: "absent"
            if not (project / o).exists()
            else "complete"
            if (project / o).read_bytes() == ref[o]
            else "PARTIAL"
            for o in outputs
        }

    env = _env(FACEPAINT_TRACKING="off")
    for stage, how in (("masks", "write"), ("captions", "random")):
        outputs = _outputs(stage)
        start = time.perf_counter()
        if how == "write":
            proc = subprocess.run(
                [sys.executable, "-c", HOOK, f"stages.{stage}"],
                cwd=project,
                capture_output=True,
                env=_env(FACEPAINT_TRACKING="off", FAULT="kill", FAULT_AT=Path(outputs[0]).name),
            )
            code, when = proc.returncode, f"at the rename of {outputs[0]}"
        else:
            clean = subprocess.run(
                [sys.executable, "-m", f"stages.{stage}"], cwd=project, env=env, capture_output=True
            )
            assert clean.returncode == 0 and on_disk(outputs) == dict.fromkeys(outputs, "complete")
            runtime = time.perf_counter() - start
            delay = random.Random(SEED).uniform(0.3, 0.95) * runtime
            proc = subprocess.Popen(
                [sys.executable, "-m", f"stages.{stage}"],
                cwd=project,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            code, when = proc.wait(), f"after {delay:.2f} s of its {runtime:.2f} s"
        state, left = on_disk(outputs), _temporaries(project / "data")
        assert "PARTIAL" not in state.values(), state
        rerun = subprocess.run([sys.executable, "-m", f"stages.{stage}"], cwd=project, env=env, capture_output=True)
        assert rerun.returncode == 0 and on_disk(outputs) == dict.fromkeys(outputs, "complete")
        assert _temporaries(project / "data") == []
        print(
            f"\nSIGKILL {stage} {when} (exit {code}): on disk {state}, temporaries {left}; rerun: exit 0, "
            f"{len(outputs)} outputs byte-identical to the uninterrupted run, no temporary"
        )


def test_sigkill_between_the_renames_of_a_directory_swap_keeps_the_previous_one(tmp_path):
    """atomic_dir replaces a directory with two renames; killed between them, the previous version is aside
    and the next write of that path puts it back before anything else."""
    out = tmp_path / "latents"
    with fio.atomic_dir(out) as tmp:
        (tmp / "shard-00000.safetensors").write_bytes(b"old" * 100)
    code = f"""
from facepaint.common import io
with io.atomic_dir({str(out)!r}) as tmp:
    (tmp / "shard-00000.safetensors").write_bytes(b"new" * 100)
"""
    proc = subprocess.run(
        [sys.executable, "-c", HOOK, "-c", code],
        env=_env(FAULT="kill", FAULT_AT="latents"),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    aside = _temporaries(tmp_path)
    assert not out.exists() and any(a.endswith(".old") for a in aside), aside
    restored = []
    with fio.atomic_dir(out) as tmp:
        restored = sorted(os.listdir(out))  # put back before this write's block runs
        (tmp / "shard-00000.safetensors").write_bytes(b"newer")
    assert restored == ["shard-00000.safetensors"] and _temporaries(tmp_path) == []
    print(f"\nSIGKILL between atomic_dir's renames: left {aside}; the next write put the previous version back first")


# ---------------------------------------------------------------------------- SIGKILL, every stage (slow)

# What of the outputs is not deterministic (timings, the machine's description): left out of the comparison.
TIMINGS = {
    "data/train/log.csv": ["samples_per_s", "step_time_s"],
    "data/train/metrics.json": ["samples_per_s"],
    "data/evaluate/metrics.json": ["device", "seconds_per_edit"],
    "data/evaluate/per_image.parquet": ["seconds", "wall_seconds"],
    "data/evaluate/table.md": [],  # its seconds-per-edit column
}
# HOOK's kill point per stage: the rename into place of this output (a directory: between atomic_dir's renames)
WRITE_POINT = {
    "masks": "masks.parquet",
    "captions": "captions.parquet",
    "latents": "latents",
    "train": "model",
    "evaluate": "metrics.json",
    "register": "register_model",  # right after the registry made the version (HOOK's kill-after-register)
}
STORE = {"FACEPAINT_TRACKING": "on", "MLFLOW_TRACKING_URI": "sqlite:///mlflow.db"}


def _drop(obj, keys: set):
    if isinstance(obj, dict):
        return {k: _drop(v, keys) for k, v in obj.items() if k not in keys}
    return [_drop(v, keys) for v in obj] if isinstance(obj, list) else obj


def _content(project: Path, rel: str):
    """What is deterministic of the output file `rel`: its bytes, or for TIMINGS' files the rest of them."""
    path, skip = project / rel, TIMINGS.get(rel)
    if skip is None:
        return path.read_bytes()
    if path.suffix == ".json":
        return _drop(json.loads(path.read_text()), set(skip))
    if path.suffix in (".csv", ".parquet"):
        frame = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
        return frame.drop(columns=skip).to_json()
    return re.sub(r"\d+\.\d+ \((cpu|cuda)\)", "<seconds>", path.read_text())


def _files(project: Path, out: str) -> list[str]:
    path = project / out
    if not path.is_dir():
        return [out] if path.exists() else []
    return sorted(str(f.relative_to(project)) for f in path.rglob("*") if f.is_file() and not f.name.startswith("."))


def _state(work: Path, ref: Path, stage: str) -> dict:
    """Each output of `stage` in `work`: absent, or complete (the uninterrupted run's content), or PARTIAL."""
    from facepaint.method.train import read_checkpoint

    state = {}
    for out in _outputs(stage):
        if not (work / out).exists():
            state[out] = "absent"
        elif out == "data/checkpoints":  # kept between runs: each checkpoint must read back whole
            steps = sorted(p.name for p in (work / out).glob("step-*"))
            try:
                for s in steps:
                    read_checkpoint(work / out / s)
                state[out] = f"{len(steps)} complete checkpoint(s) {steps}" if steps else "complete"
            except Exception as e:
                state[out] = f"PARTIAL ({e})"
        else:
            files = _files(work, out)
            try:
                same = files == _files(ref, out) and all(_content(work, f) == _content(ref, f) for f in files)
            except Exception as e:  # unreadable: half-written
                same = e
            state[out] = "complete" if same is True else f"PARTIAL ({same or 'differs'})"
    return state


def _registry(project: Path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{project / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    versions = sorted(int(v.version) for v in client.search_model_versions("name='facepaint'"))
    return versions, int(client.get_model_version_by_alias("facepaint", "champion").version)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The project on a small demo (24 portraits at 64 px, 8 training steps, 3 methods on 2 pairs, PSNR), run
    uninterrupted with `dvc repro`, stage by stage (each timed: the kill delays are drawn within these)."""
    ref = tmp_path_factory.mktemp("faults") / "reference"
    listed = ["git", "ls-files", "--cached", "--others", "--exclude-standard"]  # the working tree's files
    files = subprocess.run(listed, cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if (REPO / f).is_file() and not f.startswith(("data/", "tests/", "bench/")):
            (ref / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, ref / f)
    (ref / "dvc.lock").unlink(missing_ok=True)
    params = yaml.safe_load((ref / "params.yaml").read_text())
    params["demo"].update(n_images=24, size=64, mask_size=64)
    params["masks"].update(resolution=64, min_size=32, workers=0)
    params["latents"].update(workers=0)
    params["train"].update(batch_size=4, max_steps=8, checkpoint_every=2)
    params["sampling"].update(steps=2, sigma=8.0)  # 8 px of a 512 px crop: 1 px at the model's 64 px
    params["evaluate"].update(n_pairs=2, warmup=0, background_dilation=1, profile_radius=4, metrics=["psnr"])
    params["evaluate"]["methods"] = ["ours", "ours_no_blend", "sd15_inpaint"]
    (ref / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(["git", "init", "-q"], cwd=ref, check=True)
    seconds = {}
    for stage in DVC:  # in dependency order
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "dvc", "repro", "--single-item", stage],
            cwd=ref,
            env=_env(**STORE),
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        seconds[stage] = time.perf_counter() - start  # with dvc's own second or so
    print(f"\nreference run (dvc repro), seconds per stage: { {s: round(t, 1) for s, t in seconds.items()} }")
    return ref, seconds


@pytest.mark.slow
@pytest.mark.parametrize("stage", KILLED)
def test_sigkill_then_dvc_repro_reproduces_the_uninterrupted_run(stage, reference, tmp_path):
    """Each stage killed twice in a copy of the finished reference project (its previous outputs in place):
    after a seeded random delay within its measured runtime, and at WRITE_POINT. After each kill nothing partial
    is in place; then `dvc repro` completes and every output equals the uninterrupted run's (bytes; TIMINGS'
    files but their timings); temporaries a kill left are gone after the stage's next run. Register runs on a
    store that has not registered this artifact yet, and must end with exactly one version."""
    ref, seconds = reference
    rng = random.Random(f"{SEED}-{stage}")
    for how in ("random", "write"):
        work = Path(shutil.copytree(ref, tmp_path / how, symlinks=True))
        if stage == "register":  # as before this artifact's first registration: no store, no DVC run cache
            for p in ("mlflow.db", "mlruns", "data/register.json", ".dvc/cache/runs"):
                shutil.rmtree(work / p) if (work / p).is_dir() else (work / p).unlink(missing_ok=True)
        start = time.perf_counter()
        if how == "random":
            for draw in range(3):  # a draw the stage outlives (its runtime varies) is drawn again, earlier
                delay = rng.uniform(0.1, 0.9 / 2**draw) * seconds[stage]
                proc = subprocess.Popen(
                    [sys.executable, "-m", f"stages.{stage}"],
                    cwd=work,
                    env=_env(**STORE),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                time.sleep(delay)
                proc.send_signal(signal.SIGKILL)
                if (code := proc.wait()) == -signal.SIGKILL:
                    break
            when = f"after {delay:.1f} s of ~{seconds[stage]:.1f} s (draw {draw + 1})"
        else:
            fault = "kill-after-register" if stage == "register" else "kill"
            proc = subprocess.run(
                [sys.executable, "-c", HOOK, f"stages.{stage}"],
                cwd=work,
                env=_env(**STORE, FAULT=fault, FAULT_AT=WRITE_POINT[stage]),
                capture_output=True,
                text=True,
            )
            code, when = proc.returncode, f"at {WRITE_POINT[stage]} ({time.perf_counter() - start:.1f} s)"
            assert code == -signal.SIGKILL, proc.stderr[-2000:]
        state, left = _state(work, ref, stage), _temporaries(work / "data")
        assert "PARTIAL" not in json.dumps(state), state
        start = time.perf_counter()
        repro = subprocess.run(
            [sys.executable, "-m", "dvc", "repro"], cwd=work, env=_env(**STORE), capture_output=True, text=True
        )
        took = time.perf_counter() - start
        assert repro.returncode == 0, repro.stdout[-3000:] + repro.stderr[-3000:]
        reran = re.findall(r"Running stage '(\w+)'", repro.stdout)
        restored = re.findall(r"Stage '(\w+)' is cached - skipping run, checking out outputs", repro.stdout)
        after = {s: _state(work, ref, s) for s in KILLED}
        assert all(v == "complete" for s in after.values() for v in s.values()), after
        remaining = _temporaries(work / "data")
        if remaining:  # dvc skipped the stage (its outputs were complete): its next run removes them
            subprocess.run([sys.executable, "-m", f"stages.{stage}"], cwd=work, env=_env(**STORE), check=True)
            assert _temporaries(work / "data") == []
        versions = ""
        if stage == "register":
            found, champion = _registry(work)
            assert found == [1] and champion == 1, found
            versions = f"; registry versions {found}, champion {champion}"
        print(
            f"\nSIGKILL {stage} {how} {when} (exit {code}): on disk {state}; temporaries {left}. dvc repro: exit 0 "
            f"in {took:.0f} s, reran {reran}, restored from its cache {restored}; every output as the uninterrupted "
            f"run's{versions}; temporaries after it {remaining or 'none'}"
            f"{', removed by the next run' if remaining else ''}"
        )


@pytest.mark.slow
def test_real_stages_with_the_tracking_server_down_or_hanging(reference, tmp_path, dead_server, hanging_server):
    """`python -m stages.train` and `stages.evaluate` finish with MLflow's HTTP settings left to
    tracking.runs.HTTP_BOUNDS, say what was not recorded, and write the uninterrupted run's outputs;
    `stages.register` fails with one error line that the retrain flow classifies as transient."""
    from flows.retrain import TransientError, classify

    ref, seconds = reference
    work = Path(shutil.copytree(ref, tmp_path / "work", symlinks=True))
    before = (work / "data/register.json").read_bytes()
    for kind, uri in (("down", dead_server), ("hanging", hanging_server)):
        env = _env(FACEPAINT_TRACKING="on", MLFLOW_TRACKING_URI=uri)
        for name in ("MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES"):
            env.pop(name, None)
        for stage in ("train", "evaluate", "register"):
            start = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-m", f"stages.{stage}"], cwd=work, env=env, capture_output=True, text=True
            )
            took = time.perf_counter() - start
            if stage == "register":
                last = proc.stderr.strip().splitlines()[-1]
                assert proc.returncode == 1 and last.startswith(f"error: model registry at {uri}"), proc.stderr[-2000:]
                assert isinstance(classify(stage, 1, proc.stdout + proc.stderr), TransientError)
                assert (work / "data/register.json").read_bytes() == before
                print(f"\ntracking {kind}: register exit 1 in {took:.0f} s, transient: {last[:200]}...")
                continue
            assert proc.returncode == 0, proc.stderr[-3000:]
            missed = [line for line in proc.stderr.splitlines() if "not recorded" in line]
            assert missed, proc.stderr[-2000:]
            assert all(v == "complete" for v in _state(work, ref, stage).values())
            print(
                f"\ntracking {kind}: {stage} exit 0 in {took:.0f} s (store up: {seconds[stage]:.0f} s), outputs as "
                f"the uninterrupted run's; {missed[0].split('UserWarning: ')[-1][:230]}..."
            )
