"""MLflow run tracking: one run per pipeline run, never fatal.

Store. `MLFLOW_TRACKING_URI` when set (a shared server), else an embedded, real one:
`sqlite:///mlflow.db` in the project directory (the registry needs a database) with artifacts in
`mlruns/`. `mlflow ui --backend-store-uri sqlite:///mlflow.db` shows it.

One MLflow run per pipeline run. `train` opens a run and tags it with the artifact version it wrote;
`evaluate` and `register` find that run by the tag and log into it, so params, per-step training
metrics, evaluation metrics, plots, the logged model and the registered version sit in one run. Each
run also carries the code and data versions, without burying its metrics under them: three tags (`git.commit`,
`git.dirty`, `dvc.lock_md5`: the digest of `dvc.lock`) and one artifact, `dvc/lock.json`, with every stage of
`dvc.lock` as DVC wrote it (each dep's and out's md5, size and file count, the params' values); see
`code_and_data_versions` and `lock_record`.

Never fatal for `train` and `evaluate`. Tracking is their bookkeeping: if the store cannot be reached,
the first failure is warned about once, every later call is skipped, the stage still writes its own
outputs, and when its run ends it warns with the list of what was not recorded. (`register`, whose whole
job is the registry, fails instead: stages/register.py.) A server that is down or hangs holds a stage for
at most about half a minute: `HTTP_BOUNDS` below replaces MLflow's defaults (120 s per request, 7 retries
with exponential back-off: up to ~20 minutes per call) unless the environment sets those variables.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import subprocess
import warnings
from pathlib import Path

log = logging.getLogger("facepaint.tracking")

DEFAULT_URI = "sqlite:///mlflow.db"
EXPERIMENT = "facepaint"
ARTIFACT_TAG = "facepaint.artifact_version"
MODEL_URI_TAG = "facepaint.model_uri"
# MLflow's HTTP client settings (its environment variables), used unless the environment sets them
HTTP_BOUNDS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",  # seconds per request
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",  # 1 s, then 2 s between the tries
}


def enabled() -> bool:
    """FACEPAINT_TRACKING=off turns tracking off (the unit tests do; a pipeline run tracks)."""
    return os.environ.get("FACEPAINT_TRACKING", "on").lower() not in ("off", "0", "false", "no")


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def _mlflow():
    import mlflow

    for name, value in HTTP_BOUNDS.items():
        os.environ.setdefault(name, value)
    mlflow.set_tracking_uri(tracking_uri())
    return mlflow


# ------------------------------------------------------------------------------------ versions


LOCK_ARTIFACT = "dvc/lock.json"  # the run's copy of dvc.lock (lock_record)
LOCK_TAG = "dvc.lock_md5"


def pipeline_outputs(root: str | os.PathLike = ".") -> list[str]:
    """What `dvc repro` writes into the git tree: `dvc.lock` and every out, metric and plot dvc.yaml declares (the
    files and folders, relative to `root`)."""
    import yaml

    try:
        spec = yaml.safe_load((Path(root) / "dvc.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return ["dvc.lock"]
    paths = ["dvc.lock"]
    entries = [
        p
        for stage in (spec.get("stages") or {}).values()
        for k in ("outs", "metrics", "plots")
        for p in stage.get(k) or []
    ]
    for entry in [*entries, *(spec.get("plots") or [])]:
        paths.append(next(iter(entry)) if isinstance(entry, dict) else str(entry))
    return [p.rstrip("/") for p in paths]


def _changed_paths(root: Path) -> list[str] | None:
    """The tracked paths that differ from HEAD (staged or not; both names of a rename); None when git cannot say."""
    proc = subprocess.run(
        ["git", "status", "--porcelain=v1", "-z", "--untracked-files=no"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=10,
    )
    if proc.returncode:
        return None
    fields, paths = proc.stdout.split("\0"), []
    i = 0
    while i < len(fields):
        entry = fields[i]
        if entry:
            paths.append(entry[3:])
            if entry[0] in "RC":  # a rename or copy: its source follows
                i += 1
                paths.append(fields[i])
        i += 1
    return paths


def code_and_data_versions(root: str | os.PathLike = ".") -> dict[str, str]:
    """The run's version tags: the git commit, whether the tree was dirty, and the md5 of `dvc.lock` (its every
    hash is in the run's artifact LOCK_ARTIFACT: `lock_record`).

    Dirty means code or settings differ from the commit: a changed `dvc.lock` or pipeline output (what `dvc repro`
    writes, `pipeline_outputs`) does not count, since the tree after a repro on another machine differs there
    by the floats of its CPU, and the outputs' versions are in `dvc.lock_md5` and the artifact."""
    root = Path(root)
    tags = {}
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        changed = _changed_paths(root) if commit.returncode == 0 else None
        if changed is not None:
            tags["git.commit"] = commit.stdout.strip()
            outputs = pipeline_outputs(root)
            code = [p for p in changed if not any(p == o or p.startswith(o + "/") for o in outputs)]
            tags["git.dirty"] = str(bool(code)).lower()
    except (OSError, subprocess.SubprocessError):
        pass
    lock = root / "dvc.lock"
    if lock.is_file():
        tags[LOCK_TAG] = hashlib.md5(lock.read_bytes()).hexdigest()
    return tags


def lock_record(root: str | os.PathLike = ".") -> dict | None:
    """`dvc.lock` as the run's artifact LOCK_ARTIFACT (None without one): its md5 (the run's tag LOCK_TAG) and
    every stage as DVC wrote it: cmd, each dep and out with its md5 (size, file count), the params' values."""
    lock = Path(root) / "dvc.lock"
    if not lock.is_file():
        return None
    import yaml

    data = lock.read_bytes()
    content = yaml.safe_load(data) or {}
    return {
        "file": "dvc.lock",
        "md5": hashlib.md5(data).hexdigest(),
        "schema": content.get("schema"),
        "stages": content.get("stages", {}),
    }


def log_versions(mlflow, tags: dict | None = None, root: str | os.PathLike = ".") -> None:
    """Into the active run: the version tags (code_and_data_versions) with `tags`, and dvc.lock as LOCK_ARTIFACT."""
    mlflow.set_tags({**code_and_data_versions(root), **(tags or {})})
    record = lock_record(root)
    if record is not None:
        mlflow.log_dict(record, LOCK_ARTIFACT)


# --------------------------------------------------------------------------------------- tracker


class Tracker:
    """A safe handle on one MLflow run: every method is a no-op after the first failure (warned once), and
    `missed` lists what was not recorded (`end` warns with it)."""

    def __init__(self):
        self.run_id: str | None = None
        self.off = not enabled()  # FACEPAINT_TRACKING=off: nothing is expected to be recorded
        self.disabled = self.off
        self.missed: list[str] = []

    def _call(self, what: str, fn, *args, **kwargs):
        if self.disabled:
            if not self.off:
                self.missed.append(what)
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # tracking must never fail a stage
            self.disabled = True
            self.missed.append(what)
            warnings.warn(
                f"MLflow tracking at {tracking_uri()} failed ({what}: {type(e).__name__}: {str(e)[:200]}); "
                f"the stage goes on without tracking",
                stacklevel=3,
            )
            return None

    def start(
        self,
        artifact_version: str | None = None,
        run_name: str | None = None,
        params: dict | None = None,
        tags: dict | None = None,
    ) -> Tracker:
        """Open a new run, or resume the run tagged with `artifact_version` when there is one."""

        def start():
            mlflow = _mlflow()
            mlflow.set_experiment(EXPERIMENT)
            run_id = find_run(artifact_version) if artifact_version else None
            run = mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name)
            self.run_id = run.info.run_id
            all_tags = dict(tags or {})
            if artifact_version:
                all_tags[ARTIFACT_TAG] = artifact_version
            log_versions(mlflow, all_tags)
            if params:
                mlflow.log_params(_flatten(params))

        self._call("start run", start)
        return self

    def tag(self, tags: dict) -> None:
        self._call("set tags", lambda: _mlflow().set_tags(tags))

    def metrics(self, values: dict, step: int | None = None) -> None:
        numeric = {
            k: float(v)
            for k, v in _flatten(values).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        }
        self._call("log metrics", lambda: _mlflow().log_metrics(numeric, step=step))

    def history(self, rows: list[dict], step_key: str = "step") -> None:
        def log_all():
            mlflow = _mlflow()
            for row in rows:
                mlflow.log_metrics(
                    {f"train.{k}": float(v) for k, v in row.items() if k != step_key}, step=int(row[step_key])
                )

        self._call("log history", log_all)

    def artifacts(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        path = Path(path)
        fn = _mlflow().log_artifacts if path.is_dir() else _mlflow().log_artifact
        self._call(f"log {path}", lambda: fn(str(path), artifact_path))

    def end(self) -> None:
        if self.run_id and not self.disabled:
            self._call("end run", lambda: _mlflow().end_run())
        if self.missed:
            run = f"run {self.run_id}" if self.run_id else "no run"
            warnings.warn(
                f"MLflow tracking at {tracking_uri()} ({run}): not recorded: {'; '.join(self.missed)}. The "
                f"stage's own outputs are complete; to record these, rerun it when the store is back "
                f"(`dvc repro --force STAGE`)",
                stacklevel=2,
            )


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v if not isinstance(v, (list, tuple)) else json.dumps(v)
    return out


def find_run(artifact_version: str) -> str | None:
    """The newest run tagged with this artifact version, if any."""
    mlflow = _mlflow()
    exp = mlflow.get_experiment_by_name(EXPERIMENT)
    if exp is None:
        return None
    runs = mlflow.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.`{ARTIFACT_TAG}` = '{artifact_version}'",
        order_by=["start_time DESC"],
        max_results=1,
        output_format="list",
    )
    return runs[0].info.run_id if runs else None
