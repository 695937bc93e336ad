"""The pyfunc model, the model registry and its promotion gate.

The pyfunc model is logged "from code" (`pyfunc_model.py`: MLflow stores that file, not a pickle) with
the artifact directory as its MLflow artifact; the `register` stage logs it once per artifact version.

Registry gate. Every evaluated model becomes a version of the registered model with alias
`challenger`. `gate` compares its evaluation metrics with the current `champion`'s (FID must not
rise, background PSNR must not drop, PickScore must not drop by more than a margin: params `register`);
when it passes, the version becomes `champion`. The decision and its reasons are recorded as tags
on the version. A metric that is unavailable for either model cannot be compared; that rule is
recorded as not checked rather than passed or failed.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from tracking.runs import (
    ARTIFACT_TAG,
    EXPERIMENT,
    MODEL_URI_TAG,
    _mlflow,
    code_and_data_versions,
    find_run,
    tracking_uri,
)

CHAMPION, CHALLENGER = "champion", "challenger"

# ---------------------------------------------------------------------------------- pyfunc model


def log_pyfunc(artifact_dir: str | os.PathLike) -> str:
    """The artifact directory as an MLflow pyfunc model (models-from-code: no pickled objects), in the
    active run. Its params are the fields of `SamplingOptions` and `EditChoices` (facepaint.method.options,
    facepaint.editing.editor) with their defaults."""
    from dataclasses import asdict

    import pandas as pd
    from mlflow.models import infer_signature

    from facepaint.editing.editor import EditChoices
    from facepaint.method.options import SamplingOptions

    mlflow = _mlflow()
    example = pd.DataFrame(
        {
            "image": [_example_png()],
            "prompt": ["a photo of a smiling woman with blond hair"],
            "mask": [_example_png(mask=True)],
        }
    )
    signature = infer_signature(
        example,
        pd.DataFrame({"image": [b"png bytes"], "provenance": ["{}"]}),
        params={**asdict(SamplingOptions()), **asdict(EditChoices())},
    )
    # the mask is optional in a request (without it the face parser makes it): a column that may be
    # left out of `dataframe_split`
    from mlflow.types.schema import ColSpec, Schema

    signature.inputs = Schema([ColSpec(c.type, c.name, required=c.name != "mask") for c in signature.inputs.inputs])
    from unittest import mock

    from mlflow.models import utils as model_utils

    # MLflow checks an input example by loading the model and predicting it: a full-size edit (minutes on a
    # CPU, most of the train stage at full size). pyfunc.log_model has no switch for it, so its check is
    # replaced, for this call only, by the same parsing and schema enforcement plus our request check
    # (`check_serving_input`): the example is checked without the model. MLflow only warns when the check
    # fails; here a failing or skipped check is an error (mock.patch.object also fails on a renamed function).
    checked = []

    def check(model_uri, serving_input):
        try:
            check_serving_input(model_uri, serving_input)
        except Exception as e:
            checked.append(e)
            raise
        checked.append(None)

    with mock.patch.object(model_utils, "_validate_serving_input", check):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(Path(__file__).with_name("pyfunc_model.py")),
            artifacts=model_artifacts(artifact_dir),
            signature=signature,
            input_example=example,
            pip_requirements=pip_requirements(),
        )
    if checked != [None]:
        raise RuntimeError(
            f"the logged model's input example was not checked ({checked[0] if checked else 'MLflow did not ask'})"
        )
    return info.model_uri


def check_serving_input(model_uri: str, serving_input) -> None:
    """The input example of the model saved at `model_uri` checked as the scoring server would take it (its
    JSON parsed, the signature's schema and params enforced) and as the model would (`read_request`: columns,
    params, every image and mask decoded), without loading the model or generating. Raises what a request
    would get."""
    from mlflow.models import Model
    from mlflow.pyfunc import _validate_prediction_input
    from mlflow.pyfunc.scoring_server import _parse_json_data

    from tracking.pyfunc_model import read_request

    meta = Model.load(model_uri)
    parsed = _parse_json_data(serving_input, meta, meta.get_input_schema())
    data, params = _validate_prediction_input(
        parsed.data, parsed.params, meta.get_input_schema(), meta.get_params_schema()
    )
    rows, _ = read_request(data, params)
    if not rows:
        raise ValueError(f"the input example of {model_uri} has no rows")


def model_artifacts(artifact_dir) -> dict[str, str]:
    """What the pyfunc model carries: the trained artifact and MediaPipe's face model files (the offline detector
    and the face mesh mask), so a served model does not fetch them; without them (no pip access here) it would
    fetch them when first loaded, and the log says so."""
    from facepaint.method import mediapipe
    from facepaint.method.models import ModelLoadError

    out = {"artifact": str(artifact_dir)}
    try:
        out["face_models"] = str(mediapipe.model_dir())
    except ModelLoadError as e:
        import warnings

        warnings.warn(f"the logged model will fetch MediaPipe's face models when first loaded: {e}", stacklevel=2)
    return out


def pip_requirements() -> list[str]:
    """The model's pip requirements, explicit: the project's runtime dependencies pinned to the installed
    versions. MLflow's inference of them loads the model in a subprocess (120 s timeout; at full size it
    timed out and fell back to `cloudpickle` alone, a model that cannot be served in a fresh environment)."""
    import re
    from importlib.metadata import PackageNotFoundError, requires, version

    out = []
    for req in requires("facepaint") or []:
        if "extra ==" in req:
            continue  # test-only extras
        name = re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0]
        try:
            out.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            out.append(req.split(";")[0].strip())
    return out


def _example_png(mask: bool = False) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    yy, xx = np.mgrid[0:64, 0:64]
    face = ((yy - 32) ** 2 + (xx - 32) ** 2) < 18**2
    arr = (face * 255).astype(np.uint8) if mask else np.stack([face * 200 + 30, yy * 3, xx * 3], -1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def releases() -> list[str]:
    """Every alias of every registered model as a `models:/name@alias` URI (each model's champion first, then
    its other aliases by name): what the app offers to serve. [] when there is no store yet (a default sqlite
    store that does not exist is not created by asking). Raises on store errors."""
    from mlflow import MlflowClient

    uri = tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return []
    _mlflow()
    out = []
    for model in sorted(MlflowClient().search_registered_models(), key=lambda m: m.name):
        aliases = sorted(getattr(model, "aliases", None) or {}, key=lambda a: (a != CHAMPION, a))
        out += [f"models:/{model.name}@{alias}" for alias in aliases]
    return out


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

    method: str  # whose metrics in metrics.json are compared
    fid_max_increase: float
    psnr_max_drop: float  # dB, background PSNR
    pickscore_max_drop: float


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
    if challenger.get("definitions") != champion.get("definitions"):
        return Decision(
            False,
            [
                f"not comparable: the champion's metrics were computed under other definitions "
                f"({champion.get('definitions')!r}, now {challenger.get('definitions')!r}); the champion stays. "
                f"Evaluate the champion's artifact with this code, or promote by hand "
                f"(MlflowClient().set_registered_model_alias(name, 'champion', version))"
            ],
        )
    checks = (
        ("fid", "FID", lambda c, o: c <= o + rules.fid_max_increase, f"may rise by {rules.fid_max_increase}"),
        (
            "psnr_bg",
            "background PSNR",
            lambda c, o: c >= o - rules.psnr_max_drop,
            f"may drop by {rules.psnr_max_drop} dB",
        ),
        (
            "pickscore",
            "PickScore",
            lambda c, o: c >= o - rules.pickscore_max_drop,
            f"may drop by {rules.pickscore_max_drop}",
        ),
    )
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


def register(model_uri: str, metrics: dict, rules: Gate, name: str) -> dict:
    """Register `model_uri` as a version (alias challenger), apply the gate, promote to champion when it
    passes; record the metrics, decision and reasons as version tags. Returns the outcome.

    Once per model: a rerun for the same `model_uri` (a retried register, or one killed part-way) finds the
    version it made, by its source, and finishes it instead of adding another version."""
    mlflow = _mlflow()
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    made = sorted(int(v.version) for v in client.search_model_versions(f"name='{name}'") if v.source == model_uri)
    version = str(made[0]) if made else mlflow.register_model(model_uri, name).version
    client.set_registered_model_alias(name, CHALLENGER, version)
    try:
        champ = client.get_model_version_by_alias(name, CHAMPION)
        champion_metrics = json.loads(champ.tags.get("facepaint.metrics", "{}"))
        champion_version = champ.version
    except MlflowException as e:
        if e.error_code not in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST"):
            raise  # the store failing is not "no champion yet"
        champ, champion_metrics, champion_version = None, None, None
    if champ is not None and str(champion_version) == str(version):  # promoted by an interrupted earlier run
        decision = Decision(True, [champ.tags.get("facepaint.gate_reason") or "already the champion"])
        champion_version = champ.tags.get("facepaint.previous_champion") or None
    else:
        decision = gate(metrics, champion_metrics, rules)
    client.set_model_version_tag(name, version, "facepaint.metrics", json.dumps(metrics))
    client.set_model_version_tag(name, version, "facepaint.gate", "promoted" if decision.promote else "refused")
    client.set_model_version_tag(name, version, "facepaint.gate_reason", decision.text)
    client.set_model_version_tag(name, version, "facepaint.previous_champion", str(champion_version or ""))
    if decision.promote:
        client.set_registered_model_alias(name, CHAMPION, version)
    return {
        "name": name,
        "version": int(version),
        "promoted": decision.promote,
        "reason": decision.text,
        "previous_champion": None if champion_version is None else int(champion_version),
        "champion": int(version)
        if decision.promote
        else (None if champion_version is None else int(champion_version)),
    }


def model_uri_of(artifact_version: str) -> str | None:
    """The pyfunc model logged by the run of this artifact version, if tracking recorded one."""
    run_id = find_run(artifact_version)
    if run_id is None:
        return None
    return _mlflow().get_run(run_id).data.tags.get(MODEL_URI_TAG)


def log_model(artifact_version: str, artifact_dir: str | os.PathLike) -> str:
    """The pyfunc model of this artifact version, logged once into its pipeline run (opened when the
    train stage ran without tracking): the URI recorded there, else a new log. Raises on store errors."""
    uri = model_uri_of(artifact_version)
    if uri is not None:
        return uri
    mlflow = _mlflow()
    mlflow.set_experiment(EXPERIMENT)
    run_id = find_run(artifact_version)
    with mlflow.start_run(run_id=run_id, run_name=None if run_id else f"facepaint {artifact_version}"):
        mlflow.set_tags({**code_and_data_versions(), ARTIFACT_TAG: artifact_version})
        uri = log_pyfunc(artifact_dir)
        mlflow.set_tag(MODEL_URI_TAG, uri)
    return uri
