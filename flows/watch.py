"""Retrain only when the data changed: `dvc status` compares the content hashes of every stage's
dependencies (the dataset under data.root included) with those recorded in dvc.lock, so a new DVC
version of the dataset or new files under data.root show up as changed stages.

    python -m flows.watch                   # check once; retrains when something changed
Served on `retrain.watch_cron` by `python -m flows.serve` (flows/serve.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from prefect import flow, get_run_logger, task

from flows.retrain import retrain

# Stages whose changed inputs are data, not code or params: the watch flow reacts to these.
DATA_STAGES = ("split", "masks", "captions", "latents")


@task(retries=2, retry_delay_seconds=30)
def changed_stages(project: str) -> dict:
    """{stage: what changed} from `dvc status --json` (empty when the pipeline is up to date)."""
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", "status", "--json"], cwd=project, capture_output=True, text=True, check=True
    )
    return json.loads(proc.stdout or "{}")


def data_changes(status: dict) -> dict:
    """The part of a `dvc status` report that concerns data dependencies of the data stages."""
    out = {}
    for stage, changes in status.items():
        if stage.split(":")[-1] not in DATA_STAGES:
            continue
        for change in changes:
            deps = change.get("changed deps", {}) if isinstance(change, dict) else {}
            data = {p: why for p, why in deps.items() if not p.endswith(".py")}
            if data:
                out[stage] = data
    return out


@flow(name="facepaint-watch", log_prints=True)
def watch(project: str = ".") -> dict:
    log = get_run_logger()
    changes = data_changes(changed_stages(str(Path(project).resolve())))
    if not changes:
        log.info("no new data: nothing to do")
        return {"retrained": False, "changes": {}}
    log.info("data changed (%s): retraining", ", ".join(f"{s}: {list(c)}" for s, c in changes.items()))
    return {"retrained": True, "changes": changes, "result": retrain(project)}


if __name__ == "__main__":
    print(json.dumps(watch(), indent=2, default=str))
