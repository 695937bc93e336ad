"""What every stage shares: reading params.yaml into typed configs, and the per-stage report."""
from __future__ import annotations

import dataclasses
import logging
import os
import sys
from pathlib import Path

import yaml

from facepaint.report import StageReport

PARAMS = Path("params.yaml")
REPORTS = Path("data/reports")

log = logging.getLogger("facepaint")


def load_params(path: str | os.PathLike = PARAMS) -> dict:
    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"{path} not found: run stages from the project root (where dvc.yaml is)")
    with open(path) as f:
        return yaml.safe_load(f) or {}


def section(params: dict, name: str, cls):
    """params[name] as the dataclass `cls`; unknown keys are an error that names them."""
    raw = params.get(name) or {}
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise SystemExit(f"params.yaml: unknown key(s) {unknown} in section '{name}'; known: {sorted(known)}")
    try:
        return cls(**raw)
    except (TypeError, ValueError) as e:
        raise SystemExit(f"params.yaml, section '{name}': {e}") from None


def data_root(params: dict) -> Path:
    root = (params.get("data") or {}).get("root")
    if not root:
        raise SystemExit("params.yaml: data.root is not set (the CelebAMask-HQ directory, e.g. data/demo)")
    return Path(root)


def report_path(stage: str) -> Path:
    return REPORTS / f"{stage}.json"


def finish(report: StageReport, max_fraction: float, param: str = "max_unusable_fraction") -> None:
    """Write the stage's report, print its summary, and fail if too much was unusable."""
    path = report_path(report.stage)
    report.write(path)
    print(report.summary(), f"(details: {path})")
    report.check(max_fraction, param, path)


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def cli(main):
    """Run a stage's main(); expected failures print one clear line instead of a traceback."""
    from facepaint.celebamask import DatasetError
    from facepaint.models import ModelLoadError

    setup_logging()
    try:
        main()
    except (DatasetError, ModelLoadError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
