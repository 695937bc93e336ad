"""The pyfunc model, the model registry and its promotion gate.

The pyfunc model is logged "from code" (`pyfunc_model.py`: MLflow stores that file, not a pickle) with
the artifact directory as its MLflow artifact; the `register` stage logs it once per artifact version.

Registry gate. Every evaluated model becomes a version of the registered model with alias
`challenger`. `gate` compares its evaluation metrics with the current `champion`'s (FID must not
rise, background PSNR must not drop, PickScore must not drop by more than a margin: params `register`);
when it passes, the version becomes `champion`. The decision and its reasons are recorded as tags
on the version. A metric that is unavailable for either model cannot be compared; that rule is
recorded as not checked rather than passed or failed.

A version reads on its own: its description (markdown, `describe`) says what model it is, trained from which
base model on which data, by which run, its headline metrics as a table and the gate's decision; its tags hold
every evaluation metric, one tag each (`metric.psnr_bg` = `38.09435666704747`, exact: the gate reads them back,
`version_metrics`), with the metrics' definitions in `facepaint.metric_definitions`. Versions registered before
(one JSON tag, `facepaint.metrics`) are still read.
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
    LOCK_ARTIFACT,
    LOCK_TAG,
    MODEL_URI_TAG,
    _mlflow,
    find_run,
    log_versions,
    tracking_uri,
)

CHAMPION, CHALLENGER = "champion", "challenger"
METRIC_TAG = "metric."  # a version's tag per evaluation metric: metric.<name> = value
DEFINITIONS_TAG = "facepaint.metric_definitions"  # what the metrics mean (the gate compares only like with like)
OLD_METRICS_TAG = "facepaint.metrics"  # before: every metric in one JSON tag (still read: version_metrics)

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
    # left out of `dataframe_split`. image and prompt are required, but by the model (`read_request`: "the
    # request lacks the column(s) ['image']"), not by the schema: MLflow's answer to a missing required column
    # dumps the request's DataFrame, image bytes included, twice before the reason.
    from mlflow.types.schema import ColSpec, Schema

    signature.inputs = Schema([ColSpec(c.type, c.name, required=False) for c in signature.inputs.inputs])
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


@dataclass(frozen=True)
class Release:
    """A registered model version that has aliases: what the app offers to serve, once however many aliases
    point to it."""

    name: str
    version: int
    aliases: tuple[str, ...]  # champion first, then the others by name
    latest: bool  # the model's newest version
    artifact: str | None = None  # the facepaint artifact version it holds (its tag), when recorded

    @property
    def uri(self) -> str:
        return f"models:/{self.name}@{self.aliases[0]}"


def releases() -> list[Release]:
    """Every registered model version that has an alias, once (the version holding `champion` first, then by
    alias): what the app offers to serve. [] when there is no store yet (a default sqlite store that does not
    exist is not created by asking). Raises on store errors."""
    from mlflow import MlflowClient

    uri = tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return []
    _mlflow()
    client = MlflowClient()
    out = []
    for model in sorted(client.search_registered_models(), key=lambda m: m.name):
        by_version: dict[int, list[str]] = {}
        for alias, version in (getattr(model, "aliases", None) or {}).items():
            by_version.setdefault(int(version), []).append(alias)
        if not by_version:
            continue
        versions = {int(v.version): v for v in client.search_model_versions(f"name='{model.name}'")}
        newest = max(versions, default=None)
        found = []
        for version, aliases in by_version.items():
            tags = getattr(versions.get(version), "tags", None) or {}
            ordered = tuple(sorted(aliases, key=lambda a: (a != CHAMPION, a)))
            found.append(Release(model.name, version, ordered, version == newest, tags.get(ARTIFACT_TAG)))
        out += sorted(found, key=lambda r: (r.aliases[0] != CHAMPION, r.aliases[0]))
    return out


def resolve_model(ref: str) -> str:
    """A `models:/name@alias` (or any MLflow model URI) -> the local artifact directory inside it, whose
    facepaint.json is checked as every artifact's is (facepaint.method.artifact.read_conditions) before it is
    returned."""
    mlflow = _mlflow()
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=ref))
    found = [p.parent for p in local.rglob("facepaint.json")]
    if not found:
        raise FileNotFoundError(f"{ref} holds no facepaint artifact (no facepaint.json under {local})")
    from facepaint.method.artifact import read_conditions

    read_conditions(found[0])  # a release is not trusted: its facepaint.json is checked (ArtifactError naming the key)
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
            said = [str(v) for v in (challenger.get(key), champion.get(key)) if _number(v) is None]
            off = any(v.startswith("off") for v in said)  # switched off by the settings: never attempted
            reasons.append(f"{label} not checked ({'off' if off else 'unavailable'})")
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
    passes; record the metrics (one tag each), decision and reasons as version tags and describe the version
    (`describe`). Returns the outcome.

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
        champion_metrics = version_metrics(champ.tags)
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
    tags = metric_tags(metrics)
    stale = [k for k in client.get_model_version(name, version).tags if k.startswith(METRIC_TAG) and k not in tags]
    for key in stale:  # a metric an earlier, interrupted run recorded and this one has not
        client.delete_model_version_tag(name, version, key)
    info = artifact_info(model_uri)
    if info and info.get("version"):
        tags[ARTIFACT_TAG] = str(info["version"])
    tags["facepaint.gate"] = "promoted" if decision.promote else "refused"
    tags["facepaint.gate_reason"] = decision.text
    tags["facepaint.previous_champion"] = str(champion_version or "")
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    mv = client.get_model_version(name, version)
    text = describe(name, version, metrics, rules, decision, champion_version, info, _run_of(client, mv.run_id))
    client.update_model_version(name, version, description=text)
    if not client.get_registered_model(name).description:  # the model's own description, written once
        client.update_registered_model(name, description=MODEL_DESCRIPTION)
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


# ------------------------------------------------------------------------------ a version, readable

MODEL_DESCRIPTION = (
    "facepaint: a text-driven face editor. Stable Diffusion 1.5 inpainting with a trained face adapter and "
    "cross-attention K/V weights; only the face inside its soft mask is regenerated.\n\n"
    "Every evaluated model is a version with alias `challenger`; the promotion gate (params.yaml `register.gate`) "
    "moves `champion` to it when its metrics are no worse. Each version's description says what it was trained "
    "from, on which data and by which run, with its headline metrics; its `metric.*` tags hold every metric.\n\n"
    'Serve: `facepaint edit photo.jpg --prompt "..." --model models:/facepaint@champion --out out.png`'
)

# the evaluation's headline figures (Table 2 of data/evaluate/table.md), in the description's table
HEADLINE = (
    ("fid", "FID (lower is better)"),
    ("psnr_bg", "PSNR dB, background outside M (higher is better)"),
    ("lpips_bg", "LPIPS, background outside M (lower is better)"),
    ("pickscore", "PickScore (higher is better)"),
    ("seconds_per_edit", "seconds per edit"),
    ("peak_mem_mib", "peak GPU memory MiB"),
)


def metric_tags(metrics: dict) -> dict[str, str]:
    """The metrics as version tags, one per metric (`metric.psnr_bg` = `38.09435666704747`: exact, so that the
    gate reads back what it was given); the definitions in DEFINITIONS_TAG."""
    out = {}
    for key, value in metrics.items():
        if key == "definitions":
            if value is not None:
                out[DEFINITIONS_TAG] = str(value)
        else:
            out[f"{METRIC_TAG}{key}"] = value if isinstance(value, str) else json.dumps(value)
    return out


def version_metrics(tags: dict) -> dict:
    """A version's metrics from its tags: the `metric.*` tags (and the definitions), or, for a version registered
    before them, the one JSON tag OLD_METRICS_TAG."""

    def value(text: str):
        try:
            return json.loads(text)
        except ValueError:
            return text  # "unavailable", "inf", "cpu"

    out = {k.removeprefix(METRIC_TAG): value(v) for k, v in tags.items() if k.startswith(METRIC_TAG)}
    if not out:
        return json.loads(tags.get(OLD_METRICS_TAG) or "{}")
    if DEFINITIONS_TAG in tags:
        out["definitions"] = tags[DEFINITIONS_TAG]
    return out


def artifact_info(model_uri: str) -> dict | None:
    """The facepaint.json of the artifact inside a logged pyfunc model (what was trained, from which base, on
    which data), fetched alone; None when it cannot be read (the description then says less)."""
    try:
        from mlflow import MlflowClient
        from mlflow.models import Model

        mlflow = _mlflow()
        inside = Model.load(model_uri).flavors["python_function"]["artifacts"]["artifact"]["path"]
        root = model_uri
        if model_uri.startswith("models:/m-") and "@" not in model_uri and model_uri.count("/") == 1:
            root = MlflowClient().get_logged_model(model_uri.removeprefix("models:/")).artifact_location
        local = mlflow.artifacts.download_artifacts(artifact_uri=f"{root.rstrip('/')}/{inside}/facepaint.json")
        return json.loads(Path(local).read_text())
    except Exception:  # an older layout, a model that is not facepaint's: describe without it
        return None


def _run_of(client, run_id: str | None):
    from mlflow.exceptions import MlflowException

    if not run_id:
        return None
    try:
        return client.get_run(run_id)
    except MlflowException:
        return None


def _show(value, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}{unit}"
    return f"{value}{unit}"


def describe(
    name: str,
    version,
    metrics: dict,
    rules: Gate,
    decision: Decision,
    champion_version,
    info: dict | None,
    run=None,
) -> str:
    """The version's description (markdown): what model, trained from which base model on which data, by which
    run, its headline metrics as a table, the gate's decision."""
    # the first line is plain text: the registered model's page shows it, cut short and unrendered
    what = f"artifact {info.get('version')}, " if info else ""
    lines = [
        f"{name} version {version} ({what}facepaint's text-driven face editor): Stable Diffusion 1.5 inpainting "
        f"with a trained face adapter and cross-attention K/V weights.",
        "",
    ]
    if info:
        conditions = info.get("conditions") or {}
        base = conditions.get("model") or {}
        if base.get("source") == "pretrained":
            revision = f" at revision `{base['revision']}`" if base.get("revision") else ""
            trained_from = f"`{base.get('pretrained')}`{revision}"
        else:
            trained_from = (
                f"the {base.get('source')} random model (`{base.get('source')}-random(seed={base.get('seed')})`, "
                f"a stand-in for `{base.get('pretrained')}`)"
            )
        lines.append(f"- **Trained from:** {trained_from}, at {conditions.get('resolution')} px")
        data = info.get("data") or {}
        if data:
            training = f"- **Training data:** version `{data.get('version')}` ({data.get('images')} images)"
            if info.get("steps") is not None:
                training += f"; {info['steps']} steps, final loss {_show(info.get('final_loss'))}"
            lines.append(training)
        else:
            lines.append("- **Training data:** not recorded in the artifact")
    else:
        lines.append("- **Trained from / data:** unknown (the model's facepaint.json could not be read)")
    if run is not None:
        tags = run.data.tags
        commit = tags.get("git.commit", "")[:12] or "unknown"
        dirty = " (uncommitted changes)" if tags.get("git.dirty") == "true" else ""
        lock = ""
        if LOCK_TAG in tags:
            lock = f", dvc.lock md5 `{tags[LOCK_TAG]}` (every file's hash: the run's artifact `{LOCK_ARTIFACT}`)"
        lines.append(f"- **Run:** {run.info.run_name} (`{run.info.run_id}`), git commit `{commit}`{dirty}{lock}")
    if decision.promote:
        verdict = "promoted to champion"
    else:
        verdict = f"not promoted (the champion stays version {champion_version})"
    lines.append(f"- **Gate:** {verdict}: {decision.text}")
    lines += ["", f"| metric (method `{rules.method}`) | value |", "|---|---|"]
    for key, label in HEADLINE:
        value = _show(metrics.get(key))
        if key.startswith("psnr") and isinstance(metrics.get(f"{key}_std"), (int, float)):
            value += f" ± {metrics[f'{key}_std']:.4g}"
        if key == "seconds_per_edit" and metrics.get("clock"):
            value += f" ({metrics['clock']})"
        lines.append(f"| {label} | {value} |")
    lines.append("")
    if metrics.get("definitions"):
        lines.append(f"Definitions: {metrics['definitions']}. ")
    lines[-1] += "Every metric is a tag of this version (`metric.*`)."
    return "\n".join(lines)


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
        log_versions(mlflow, {ARTIFACT_TAG: artifact_version})
        uri = log_pyfunc(artifact_dir)
        mlflow.set_tag(MODEL_URI_TAG, uri)
    return uri
