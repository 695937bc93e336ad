"""MLflow, and only MLflow: the orchestration layer's bookkeeping (the method in `facepaint/` never
imports it). Every MLflow call of the project lives in this package:

- runs.py          one MLflow run per pipeline run (params, metrics, loss curve, code and data versions)
- registry.py      the pyfunc model, the model registry and its promotion gate, `models:/` URIs
- pyfunc_model.py  the pyfunc model's code (logged as "models from code": MLflow stores this file)

Nothing is imported here, so `tracking.runs` (used by train and evaluate) does not pull in the registry.

MLflow's usage telemetry is off: importing mlflow otherwise starts a thread that fetches its telemetry
configuration from config.mlflow-telemetry.io and posts usage events, on every training run. MLflow decides once,
when it is imported (mlflow/telemetry/utils.py `is_telemetry_disabled`: MLFLOW_DISABLE_TELEMETRY, DO_NOT_TRACK),
so it is set here, before any module of this package imports it; a user's own setting wins. The `mlflow` commands
of docs/operations.md (`mlflow ui`, `mlflow models serve`) do not run this: the page sets the variable for them.
"""

import os

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
