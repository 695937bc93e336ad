"""Every MLflow call of facepaint: run tracking, the pyfunc model, the model registry and its gate.

The method modules (masks, train, edit, ...) never import MLflow; the stages, the flows and the
`facepaint edit --model models:/...` path import this module, lazily.

Store. `MLFLOW_TRACKING_URI` when set (a shared server), else an embedded, real one:
`sqlite:///mlflow.db` in the project directory (the registry needs a database) with artifacts in
`mlruns/`. `mlflow ui --backend-store-uri sqlite:///mlflow.db` shows it.

One MLflow run per pipeline run. `train` opens a run and tags it with the artifact version it wrote;
`evaluate` and `register` find that run by the tag and log into it, so params, per-step training
metrics, evaluation metrics, plots and the registered version sit in one run. Each run also carries
the code and data versions: the git commit (and whether the tree was dirty) and the hashes of every
stage in `dvc.lock`.

Never fatal. Tracking is bookkeeping: if the store cannot be reached, the first failure is warned
about once, every later call is skipped, and the stage still writes its own outputs.

Registry gate. Every evaluated model becomes a version of the registered model with alias
`challenger`. `gate` compares its evaluation metrics with the current `champion`'s (FID must not
rise, background PSNR must not drop, PickScore must not drop by more than a margin: params `register`);
when it passes, the version becomes `champion`. The decision and its reasons are recorded as tags
on the version. A metric that is unavailable for either model cannot be compared; that rule is
recorded as not checked rather than passed or failed.
"""
from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import warnings
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("facepaint.tracking")

DEFAULT_URI = "sqlite:///mlflow.db"
EXPERIMENT = "facepaint"
MODEL_NAME = "facepaint"
ARTIFACT_TAG = "facepaint.artifact_version"
MODEL_URI_TAG = "facepaint.model_uri"
CHAMPION, CHALLENGER = "champion", "challenger"


def enabled() -> bool:
    """FACEPAINT_TRACKING=off turns tracking off (the unit tests do; a pipeline run tracks)."""
    return os.environ.get("FACEPAINT_TRACKING", "on").lower() not in ("off", "0", "false", "no")


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def _mlflow():
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    return mlflow


# ------------------------------------------------------------------------------------ versions

def code_and_data_versions(root: str | os.PathLike = ".") -> dict[str, str]:
    """git commit (+ dirty flag) and the md5 of every dep/out of every stage in dvc.lock, as tags."""
    root = Path(root)
    tags = {}
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if commit.returncode == 0:
            tags["git.commit"] = commit.stdout.strip()
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                   capture_output=True, text=True, timeout=10)
            tags["git.dirty"] = str(bool(dirty.stdout.strip())).lower()
    except (OSError, subprocess.SubprocessError):
        pass
    lock = root / "dvc.lock"
    if lock.is_file():
        import yaml

        stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
        for stage, entry in stages.items():
            for kind in ("deps", "outs"):
                for item in entry.get(kind, []):
                    if "md5" in item:
                        tags[f"dvc.{stage}.{kind}.{item['path']}"] = item["md5"]
    return tags


# --------------------------------------------------------------------------------------- tracker

class Tracker:
    """A safe handle on one MLflow run: every method is a no-op after the first failure (warned once)."""

    def __init__(self):
        self.run_id: str | None = None
        self.disabled = not enabled()

    def _call(self, what: str, fn, *args, **kwargs):
        if self.disabled:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # tracking must never fail a stage
            self.disabled = True
            warnings.warn(f"MLflow tracking at {tracking_uri()} failed ({what}: {type(e).__name__}: {str(e)[:200]}); "
                          f"the stage goes on without tracking", stacklevel=3)
            return None

    def start(self, artifact_version: str | None = None, run_name: str | None = None, params: dict | None = None,
              tags: dict | None = None) -> "Tracker":
        """Open a new run, or resume the run tagged with `artifact_version` when there is one."""

        def start():
            mlflow = _mlflow()
            mlflow.set_experiment(EXPERIMENT)
            run_id = find_run(artifact_version) if artifact_version else None
            run = mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name)
            self.run_id = run.info.run_id
            all_tags = {**code_and_data_versions(), **(tags or {})}
            if artifact_version:
                all_tags[ARTIFACT_TAG] = artifact_version
            mlflow.set_tags(all_tags)
            if params:
                mlflow.log_params(_flatten(params))

        self._call("start run", start)
        return self

    def tag(self, tags: dict) -> None:
        self._call("set tags", lambda: _mlflow().set_tags(tags))

    def metrics(self, values: dict, step: int | None = None) -> None:
        numeric = {k: float(v) for k, v in _flatten(values).items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
        self._call("log metrics", lambda: _mlflow().log_metrics(numeric, step=step))

    def history(self, rows: list[dict], step_key: str = "step") -> None:
        def log_all():
            mlflow = _mlflow()
            for row in rows:
                mlflow.log_metrics({f"train.{k}": float(v) for k, v in row.items() if k != step_key},
                                   step=int(row[step_key]))

        self._call("log history", log_all)

    def artifacts(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        path = Path(path)
        fn = _mlflow().log_artifacts if path.is_dir() else _mlflow().log_artifact
        self._call(f"log {path}", lambda: fn(str(path), artifact_path))

    def model(self, artifact_dir: str | os.PathLike) -> str | None:
        """Log the trained artifact as an MLflow pyfunc model; returns its model URI."""
        return self._call("log model", lambda: log_pyfunc(artifact_dir))

    def end(self) -> None:
        if self.run_id and not self.disabled:
            self._call("end run", lambda: _mlflow().end_run())


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
    runs = mlflow.search_runs([exp.experiment_id], filter_string=f"tags.`{ARTIFACT_TAG}` = '{artifact_version}'",
                              order_by=["start_time DESC"], max_results=1, output_format="list")
    return runs[0].info.run_id if runs else None


# ---------------------------------------------------------------------------------- pyfunc model

def log_pyfunc(artifact_dir: str | os.PathLike) -> str:
    """The artifact directory as an MLflow pyfunc model (models-from-code: no pickled objects)."""
    import pandas as pd
    from mlflow.models import infer_signature

    mlflow = _mlflow()
    example = pd.DataFrame({"image": [_example_png()], "prompt": ["a photo of a smiling woman with blond hair"],
                            "mask": [_example_png(mask=True)]})
    signature = infer_signature(example, pd.DataFrame({"image": [b"png bytes"], "provenance": ["{}"]}),
                                params={"steps": 50, "guidance_scale": 7.5, "seed": 0, "strength": 1.0, "blend": True})
    info = mlflow.pyfunc.log_model(
        name="model", python_model=str(Path(__file__).with_name("pyfunc_model.py")),
        artifacts={"artifact": str(artifact_dir)}, signature=signature, input_example=example,
    )
    return info.model_uri


def _example_png(mask: bool = False) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    yy, xx = np.mgrid[0:64, 0:64]
    face = ((yy - 32) ** 2 + (xx - 32) ** 2) < 18 ** 2
    arr = (face * 255).astype(np.uint8) if mask else np.stack([face * 200 + 30, yy * 3, xx * 3], -1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def resolve_model(ref: str) -> str:
    """A `models:/name@alias` (or any MLflow model URI) -> the local artifact directory inside it."""
    mlflow = _mlflow()
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=ref))
    found = [p.parent for p in local.rglob("facepaint.json")]
    if not found:
        raise FileNotFoundError(f"{ref} holds no facepaint artifact (no facepaint.json under {local})")
    return str(found[0])


# --------------------------------------------------------------------------------------- registry

@dataclass
class Gate:
    """Promotion rules: the challenger's metrics against the champion's (params `register.gate`)."""

    method: str = "ours"  # whose metrics in metrics.json are compared
    fid_max_increase: float = 0.0
    psnr_max_drop: float = 0.0  # dB, background PSNR
    pickscore_max_drop: float = 0.5


@dataclass
class Decision:
    promote: bool
    reasons: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "; ".join(self.reasons)


def _number(v):
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if v == "inf":
        return math.inf
    return None  # "unavailable", missing


def gate(challenger: dict, champion: dict | None, rules: Gate) -> Decision:
    """Whether `challenger` (the evaluated method's metrics) may replace `champion` (None: no champion yet)."""
    if champion is None:
        return Decision(True, ["no champion yet"])
    checks = (("fid", "FID", lambda c, o: c <= o + rules.fid_max_increase, f"may rise by {rules.fid_max_increase}"),
              ("psnr_bg", "background PSNR", lambda c, o: c >= o - rules.psnr_max_drop, f"may drop by {rules.psnr_max_drop} dB"),
              ("pickscore", "PickScore", lambda c, o: c >= o - rules.pickscore_max_drop, f"may drop by {rules.pickscore_max_drop}"))
    ok, reasons, compared = True, [], 0
    for key, label, passes, allowance in checks:
        c, o = _number(challenger.get(key)), _number(champion.get(key))
        if c is None or o is None:
            reasons.append(f"{label} not checked (unavailable)")
            continue
        compared += 1
        good = passes(c, o)
        ok &= good
        reasons.append(f"{label} {c:.4g} vs champion {o:.4g} ({'ok' if good else 'fails'}: {allowance})")
    if compared == 0:
        return Decision(False, reasons + ["no metric could be compared: the champion stays"])
    return Decision(ok, reasons)


def register(model_uri: str, metrics: dict, rules: Gate, name: str = MODEL_NAME) -> dict:
    """Register `model_uri` as a new version (alias challenger), apply the gate, promote to champion
    when it passes; record the metrics, decision and reasons as version tags. Returns the outcome."""
    mlflow = _mlflow()
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    version = mlflow.register_model(model_uri, name).version
    client.set_registered_model_alias(name, CHALLENGER, version)
    try:
        champ = client.get_model_version_by_alias(name, CHAMPION)
        champion_metrics = json.loads(champ.tags.get("facepaint.metrics", "{}"))
        champion_version = champ.version
    except MlflowException:
        champ, champion_metrics, champion_version = None, None, None
    decision = gate(metrics, champion_metrics, rules)
    client.set_model_version_tag(name, version, "facepaint.metrics", json.dumps(metrics))
    client.set_model_version_tag(name, version, "facepaint.gate", "promoted" if decision.promote else "refused")
    client.set_model_version_tag(name, version, "facepaint.gate_reason", decision.text)
    if decision.promote:
        client.set_registered_model_alias(name, CHAMPION, version)
    return {"name": name, "version": int(version), "promoted": decision.promote, "reason": decision.text,
            "previous_champion": None if champion_version is None else int(champion_version),
            "champion": int(version) if decision.promote else (None if champion_version is None else int(champion_version))}


def model_uri_of(artifact_version: str) -> str | None:
    """The pyfunc model logged by the run of this artifact version, if tracking recorded one."""
    run_id = find_run(artifact_version)
    if run_id is None:
        return None
    return _mlflow().get_run(run_id).data.tags.get(MODEL_URI_TAG)
