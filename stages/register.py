"""register: the evaluated model becomes a version of the registered MLflow model (alias
`challenger`); the gate in params promotes it to `champion` when its metrics are no worse than the
current champion's. The decision and its reasons are tags on the version.

Inputs:  data/model (the artifact), data/evaluate/metrics.json, params `register`
Outputs: data/register.json (version, promoted or not, why)
Run:     dvc repro register     (or: python -m stages.register)

The artifact is logged as an MLflow pyfunc model (once per artifact version, into the pipeline run
that train opened) and that model is registered, once: a rerun finds the version it made (see
tracking.registry.register). The store is MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here. The registry
is this stage's whole job, so when the store cannot be reached (or refuses) the stage fails with a
RegistryError that quotes the store's error, and data/register.json keeps its previous content; the retrain
flow retries a failure that reads as transient (a refused connection, a timeout, a 5xx, a locked
database: flows/retrain.py TRANSIENT) with back-off. With tracking off (FACEPAINT_TRACKING=off) it
succeeds and records why nothing was registered. Serve the champion with
`facepaint edit --model models:/facepaint@champion ...`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from facepaint.common.checks import check_fields
from facepaint.common.errors import FacepaintError
from facepaint.common.io import write_json
from facepaint.method.artifact import load_artifact
from stages.common import EVALUATE, MODEL, REGISTER, cli, load_params, section

PARAMS = ("register",)  # the params.yaml keys this stage's outputs depend on (dvc.yaml lists exactly these)


class RegistryError(FacepaintError):
    """The registry could not be reached or refused the registration; the message quotes the store's error."""


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
        except Exception as e:  # MlflowException, sqlalchemy's and requests' errors: the registry is the job
            raise RegistryError(
                f"model registry at {runs.tracking_uri()}: artifact {artifact.version} not registered as "
                f"{cfg.model_name} ({type(e).__name__}: {str(e)[:2000]}). If the store was down or overloaded, run "
                f"`dvc repro register` again once it is back (the retrain flow retries such failures with back-off); "
                f"this artifact's version is registered once however often it runs"
            ) from e
        run = runs.Tracker().start(artifact_version=artifact.version)
        run.tag(
            {"facepaint.registered_version": str(outcome["version"]), "facepaint.promoted": str(outcome["promoted"])}
        )
        run.end()
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
