"""MLflow, and only MLflow: the orchestration layer's bookkeeping (the method in `facepaint/` never
imports it). Every MLflow call of the project lives in this package:

- runs.py          one MLflow run per pipeline run (params, metrics, loss curve, code and data versions)
- registry.py      the pyfunc model, the model registry and its promotion gate, `models:/` URIs
- pyfunc_model.py  the pyfunc model's code (logged as "models from code": MLflow stores this file)

Nothing is imported here, so `tracking.runs` (used by train and evaluate) does not pull in the registry.
"""
