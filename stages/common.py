"""What every stage shares: where the pipeline's files live, reading params.yaml (and a profile's
overrides) into the core's typed configs, the per-stage report, and the stage command line.

Paths. Every file a stage reads or writes is named once, here; `dvc.yaml` declares the same paths as
the stages' deps and outs (tests/test_dvc.py checks that they agree). A stage imports its inputs' paths
from here, never from another stage (which would import that stage's core modules, torch included).

Params. `params.yaml` is the one home of every setting: the configs in `facepaint/` have no default
values (or, for `sampling`, the product's defaults, which the pipeline does not use), so a key missing from
params.yaml is an error naming it, and an unknown key is an error too.
A profile (`profiles/<name>.yaml`) is a flat mapping of dotted keys that overrides params.yaml: the
same overrides `dvc exp run $(python profiles/flags.py NAME)` applies.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from pathlib import Path

import yaml

from facepaint.common.report import StageReport

PARAMS = Path("params.yaml")
PROFILES = Path(__file__).resolve().parents[1] / "profiles"

# The pipeline's files, by the stage that writes them (dvc.yaml's outs).
PARAMS_CHECKED = Path("data/params.ok")  # constant; every stage depends on it, to run after the params check
DEMO = Path("data/demo")
DEMO_MODELS = Path("data/demo_models")  # tiny random baseline models (tools/demo_models.py)
FACES = Path("data/faces")  # the dataset index (and, for a folder of photos, its aligned crops)
SPLIT = Path("data/split.parquet")
MASKS = Path("data/masks.parquet")
MASKS_METRICS = Path("data/masks_metrics.json")
CAPTIONS = Path("data/captions.parquet")
LATENTS = Path("data/latents")
MODEL = Path("data/model")  # the trained artifact
TRAIN_LOG = Path("data/train/log.csv")
TRAIN_METRICS = Path("data/train/metrics.json")
CHECKPOINTS = Path("data/checkpoints")
EVALUATE = Path("data/evaluate")
ABLATION = Path("data/ablation")
FID_STATS = Path("data/fid_stats")
REGISTER = Path("data/register.json")
REPORTS = Path("data/reports")

log = logging.getLogger("facepaint")


# ------------------------------------------------------------------------------------------ params


def load_params(path: str | os.PathLike = PARAMS, profile: str | None = None) -> dict:
    """params.yaml as a dict, with the overrides of `profiles/<profile>.yaml` applied when given."""
    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"{path} not found: run stages from the project root (where dvc.yaml is)")
    with open(path) as f:
        params = yaml.safe_load(f) or {}
    if profile:
        for key, value in profile_overrides(profile, params).items():
            set_key(params, key, value)
    return params


def profile_overrides(name: str, params: dict, profiles: Path = PROFILES) -> dict:
    """The dotted-key overrides of profile `name`; every key must exist in `params` (a typo is an error)."""
    path = profiles / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in profiles.glob("*.yaml")))
        raise SystemExit(f"profile {name!r} not found ({path}); profiles: {known}")
    overrides = yaml.safe_load(path.read_text()) or {}
    for key in overrides:
        node = params
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise SystemExit(f"profiles/{name}.yaml: {key} is not a key of params.yaml")
            node = node[part]
    return overrides


def set_key(params: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    node = params
    for part in parents:
        node = node[part]
    node[last] = value


def section(params: dict, name: str, cls, **overrides):
    """params[name] (with `overrides` applied) as the dataclass `cls`. Unknown and missing keys are
    errors that name them; so are values the config's own validation refuses."""
    given = params.get(name) or {}
    if not isinstance(given, dict):
        raise SystemExit(f"params.yaml: section '{name}' must be a mapping of its keys, got {given!r}")
    raw = {**given, **overrides}
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(map(str, set(raw) - fields))
    if unknown:
        raise SystemExit(f"params.yaml: unknown key(s) {unknown} in section '{name}'; known: {sorted(fields)}")
    # every field, also one with a default in code (SamplingOptions' are the product's): params.yaml is the
    # pipeline's one home of its settings
    missing = sorted(fields - set(raw))
    if missing:
        raise SystemExit(
            f"params.yaml: section '{name}' lacks {', '.join(f'{name}.{k}' for k in missing)}; "
            f"every setting lives in params.yaml (see the repository's copy)"
        )
    try:
        return cls(**raw)
    except (TypeError, ValueError) as e:
        raise SystemExit(f"params.yaml, section '{name}': {e}") from None


def keys(name: str, cls, *, except_: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The dotted params keys `name.<field>` of `cls` but `except_`: a stage's per-key DVC params when some
    keys of a section cannot change its outputs (speed knobs, logging cadence)."""
    fields = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(except_) - set(fields))
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {unknown}")
    return tuple(f"{name}.{k}" for k in fields if k not in except_)


def data_root(params: dict) -> Path:
    root = (params.get("data") or {}).get("root")
    if not root:
        raise SystemExit("params.yaml: data.root is not set (the CelebAMask-HQ directory, e.g. data/demo)")
    return Path(root)


def data_layout(params: dict) -> str:
    """params.yaml `data.layout`: celebamask (data.root in CelebAMask-HQ's layout) or folder (a folder of photos)."""
    return (params.get("data") or {}).get("layout", "celebamask")


def dataset(params: dict):
    """The images the stages after `faces` read: data.root itself (celebamask), or the faces stage's crops."""
    from facepaint.data.faces import Dataset

    layout = data_layout(params)
    return Dataset(FACES, "folder") if layout == "folder" else Dataset(data_root(params), layout)


# ------------------------------------------------------------------------------------------ reports


def report_path(stage: str) -> Path:
    return REPORTS / f"{stage}.json"


def finish(report: StageReport, max_fraction: float, param: str = "max_unusable_fraction") -> None:
    """Write the stage's report, print its summary, and fail if too much was unusable."""
    path = report_path(report.stage)
    report.write(path)
    print(report.summary(), f"(details: {path})")
    report.check(max_fraction, param, path)


# ---------------------------------------------------------------------------------------------- cli


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def cli(main):
    """Run a stage's main(); expected failures print one clear line instead of a traceback."""
    from facepaint.common.errors import FacepaintError

    setup_logging()
    try:
        main()
    except (FacepaintError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
