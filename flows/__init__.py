"""Prefect flows: they only schedule and gate. `dvc repro` and the core library work without them."""
