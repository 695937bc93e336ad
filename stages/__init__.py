"""Thin DVC entry points: each module reads its params.yaml section into the core's typed config,
calls the core library, and writes its outputs atomically. `python -m stages.<name>` runs one."""
