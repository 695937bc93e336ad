"""The retrain flow: the DVC pipeline stage by stage as Prefect tasks, then the registry outcome.

    python -m flows.retrain                 # one run now (no server needed: Prefect runs it in-process)

On a schedule, `python -m flows.serve` serves it with the watch flow (flows/watch.py) on the cron schedules
of params `retrain` (`RetrainConfig`, read by `schedule`).

Retries. A stage that fails for a transient reason (the network, a storage or lock timeout, a busy
GPU; see TRANSIENT) is retried with exponential back-off; a real failure (bad data, a bug, a
training error) is not: retrying it would only repeat it. DVC makes a retry cheap: finished stages
are skipped and a killed train stage resumes from its checkpoint.

Never twice at once. The served deployment (flows/serve.py) has a concurrency limit of 1 (a second scheduled
run is cancelled, not queued behind the first), and every run holds a lock file in the project, so a run
started by hand cannot overlap a scheduled one either. The lock is an flock, which the OS releases when
its holder dies however it dies (SIGKILL, a crash), and the file names its holder (pid, host, start
time): a second run is refused with that name, and a run that finds a holder named although nobody
holds the lock knows the previous run was killed, says so, and proceeds. (A `dvc repro` that the killed
run had started may still be finishing; DVC's own lock then makes the next stage fail as transient.)
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from filelock import FileLock, Timeout
from prefect import flow, get_run_logger, task
from prefect.tasks import exponential_backoff

from facepaint.common.checks import check_fields
from stages.common import EVALUATE, REGISTER, load_params, section

LOCK = ".facepaint-retrain.lock"
# Failures worth another try: networks, remote storage, locks, a GPU busy with someone else's job.
TRANSIENT = re.compile(
    r"connection (reset|refused|aborted)|timed? ?out|temporar(y|ily)|name resolution|503|502|429|"
    r"unable to acquire lock|is locked|resource busy|cuda error: (busy|all cuda-capable devices are busy)",
    re.IGNORECASE,
)


class TransientError(RuntimeError):
    """A stage failure that may well succeed when tried again."""


class PipelineError(RuntimeError):
    """A stage failure that another try would repeat (bad input, a bug, a training error)."""


class AlreadyRunning(RuntimeError):
    """Another retrain holds the project's lock."""


def _holder(text: str) -> str:
    try:
        h = json.loads(text)
        return f"pid {h['pid']} on {h['host']}, started {h['started']}"
    except (ValueError, TypeError, KeyError):
        return "a process that has not written its name yet"


def _named_holder(path: Path, wait: float = 2.0) -> str:
    """The live holder of the lock at `path`, named. A holder writes its name just after it takes the lock, so a
    process refused in between waits (up to `wait` seconds) for the name rather than report a nameless one."""
    deadline = time.monotonic() + wait
    while True:
        said = _holder(path.read_text())
        if not said.startswith("a process that") or time.monotonic() > deadline:
            return said
        time.sleep(0.02)


@contextlib.contextmanager
def retrain_lock(root: Path):
    """Hold the project's retrain lock; yields the holder a killed earlier run left named in the file (None
    when the last run released it). Raises AlreadyRunning naming the live holder."""
    path = root / LOCK
    left = []

    def claim(fd: int) -> None:  # called with the lock held, on the lock file's descriptor
        left.append(os.pread(fd, 4096, 0).decode(errors="replace").strip())
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S %z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)

    lock = FileLock(str(path), timeout=0, on_acquired=claim)
    try:
        lock.acquire()
    except Timeout:
        raise AlreadyRunning(f"another retrain of {root} is running: {_named_holder(path)} holds {path}") from None
    try:
        yield _holder(left[0]) if left and left[0] else None
    finally:
        os.truncate(path, 0)  # released cleanly: nobody is named
        lock.release()


def classify(stage: str, returncode: int, output: str) -> Exception:
    tail = "\n".join(output.strip().splitlines()[-15:])
    cls = TransientError if TRANSIENT.search(output) else PipelineError
    return cls(f"stage {stage} failed (exit {returncode}):\n{tail}")


def retry_transient(task, task_run, state) -> bool:
    """Prefect retry condition: only TransientError is retried."""
    try:
        state.result()
    except TransientError:
        return True
    except Exception:
        return False
    return False


def pipeline_stages(project: Path) -> list[str]:
    """The stages of dvc.yaml, in file order (which is dependency order)."""
    return list(yaml.safe_load((project / "dvc.yaml").read_text())["stages"])


def dvc_repro(stage: str, project: Path) -> str:
    """`dvc repro --single-item STAGE` in the project; its output, or a classified exception."""
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", "repro", "--single-item", stage], cwd=project, capture_output=True, text=True
    )
    output = proc.stdout + proc.stderr
    if proc.returncode:
        raise classify(stage, proc.returncode, output)
    return output


@task(
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=30),
    retry_jitter_factor=0.2,
    retry_condition_fn=retry_transient,
    task_run_name="dvc repro {stage}",
)
def run_stage(stage: str, project: str) -> str:
    out = dvc_repro(stage, Path(project))
    get_run_logger().info("%s: %s", stage, "up to date" if "didn't change" in out else "reproduced")
    return out


@flow(name="facepaint-retrain", log_prints=True)
def retrain(project: str = ".") -> dict:
    """Reproduce the pipeline, then report the evaluation and the registry decision."""
    log = get_run_logger()
    root = Path(project).resolve()
    with retrain_lock(root) as killed:
        if killed:
            log.warning(
                "the previous retrain (%s) was killed without releasing %s; the OS released its lock, proceeding",
                killed,
                root / LOCK,
            )
        for stage in pipeline_stages(root):
            run_stage(stage, str(root))
    summary = {
        "metrics": json.loads((root / EVALUATE / "metrics.json").read_text())["methods"].get("ours", {}),
        "register": json.loads((root / REGISTER).read_text()),
    }
    reg = summary["register"]
    if reg.get("registered"):
        log.info(
            "model version %s: %s (%s)",
            reg["version"],
            "promoted to champion" if reg["promoted"] else "not promoted",
            reg["reason"],
        )
    else:
        log.warning("not registered: %s", reg.get("reason"))
    return summary


@dataclass
class RetrainConfig:  # params.yaml `retrain`
    cron: str  # the scheduled retrain
    watch_cron: str  # how often the watch flow checks whether the data changed

    def __post_init__(self):
        check_fields(self, "retrain")


def schedule(project: Path = Path(".")) -> RetrainConfig:
    return section(load_params(project / "params.yaml"), "retrain", RetrainConfig)


if __name__ == "__main__":
    if sys.argv[1:]:  # `serve` moved to its own module: never a retrain run for an argument meant for it
        sys.exit(f"usage: python -m flows.retrain (no arguments; got {sys.argv[1:]}); to serve: python -m flows.serve")
    print(json.dumps(retrain(), indent=2, default=str))
