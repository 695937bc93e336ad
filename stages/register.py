"""register: the evaluated model becomes a version of the registered MLflow model (alias
`challenger`); the gate in params promotes it to `champion` when its metrics are no worse than the
current champion's. The decision and its reasons are tags on the version.

Inputs:  data/model (the artifact), data/evaluate/metrics.json, params `register`
Outputs: data/register.json (version, promoted or not, why)
Run:     dvc repro register     (or: python -m stages.register)

The artifact is logged as an MLflow pyfunc model (once per artifact version, into the pipeline run
that train opened) and that model is registered. The store is MLFLOW_TRACKING_URI, else
sqlite:///mlflow.db here. When it cannot be reached the stage warns, writes why into
data/register.json and succeeds: the pipeline's results stand. Serve the champion with
`facepaint edit --model models:/facepaint@champion ...`.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

from facepaint import check_fields
from facepaint.artifact import load_artifact
from facepaint.io import write_json
from stages.common import EVALUATE, MODEL, REGISTER, cli, load_params, section

PARAMS = ("register",)  # the params.yaml keys this stage's outputs depend on (dvc.yaml lists exactly these)


@dataclass
class RegisterConfig:  # params.yaml `register`
    model_name: str  # the registered model
    gate: dict  # tracking.registry.Gate's fields

    def __post_init__(self):
        check_fields(self, "register")
        if not self.model_name.strip():
            raise ValueError("register.model_name must name the registered model, e.g. facepaint")
        for key, value in self.gate.items():  # the gate's names are checked by Gate(**gate) in `run`
            if key == "method":
                if not isinstance(value, str):
                    raise ValueError(f"register.gate.method must name an evaluated method, e.g. ours; got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
                # a NaN threshold would fail every comparison, a text one fail the registry after training
                raise ValueError(f"register.gate.{key} must be a number (.inf: no limit), got {value!r}")


def run(
    cfg: RegisterConfig, model: Path = MODEL, metrics: Path = EVALUATE / "metrics.json", out: Path = REGISTER
) -> dict:
    from tracking import registry, runs

    try:
        rules = registry.Gate(**cfg.gate)
    except TypeError as e:
        raise SystemExit(
            f"params.yaml, register.gate: {e} (fields: method, fid_max_increase, psnr_max_drop, pickscore_max_drop)"
        ) from None
    artifact = load_artifact(model)
    evaluated = json.loads(Path(metrics).read_text())
    if evaluated.get("artifact") != artifact.version:
        raise SystemExit(
            f"{metrics} evaluates artifact {evaluated.get('artifact')}, {model} is {artifact.version}: "
            f"rerun the evaluate stage first (`dvc repro evaluate`)"
        )
    scores = evaluated["methods"].get(rules.method)
    if scores is None:
        raise SystemExit(f"{metrics} has no results for register.gate.method = {rules.method!r}")
    # what the numbers mean (regions, FID reference): the gate compares only like with like
    scores = {**scores, "definitions": evaluated.get("definitions")}
    outcome = {"artifact": artifact.version, "tracking_uri": runs.tracking_uri()}
    if not runs.enabled():
        outcome.update(registered=False, reason="tracking is off (FACEPAINT_TRACKING)")
    else:
        try:
            uri = registry.log_model(artifact.version, model)
            outcome.update(registered=True, **registry.register(uri, scores, rules, cfg.model_name))
            run = runs.Tracker().start(artifact_version=artifact.version)
            run.tag(
                {
                    "facepaint.registered_version": str(outcome["version"]),
                    "facepaint.promoted": str(outcome["promoted"]),
                }
            )
            run.end()
        except Exception as e:  # the registry is bookkeeping: never fail the pipeline over it
            warnings.warn(f"model registry at {runs.tracking_uri()} failed: {type(e).__name__}: {e}", stacklevel=1)
            outcome.update(registered=False, reason=f"{type(e).__name__}: {str(e)[:300]}")
    write_json(outcome, out)
    if outcome["registered"]:
        print(
            f"register: {cfg.model_name} version {outcome['version']} is challenger; "
            f"{'promoted to champion' if outcome['promoted'] else 'not promoted'}: {outcome['reason']}"
        )
    else:
        print(f"register: not registered ({outcome['reason']})")
    return outcome


def main() -> None:
    run(section(load_params(), "register", RegisterConfig))


if __name__ == "__main__":
    cli(main)
