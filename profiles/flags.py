"""Print a params profile as `dvc exp run` flags: one `-S section.key=value` per override.

    dvc exp run $(python profiles/flags.py paper) -S data.root=/path/to/CelebAMask-HQ

The profile (profiles/<name>.yaml) is a flat mapping of dotted params.yaml keys to values; every
key must already exist in params.yaml (a typo is an error, not a silently ignored flag).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent


def flags(name: str, params_path: Path = HERE.parent / "params.yaml") -> list[str]:
    profile = yaml.safe_load((HERE / f"{name}.yaml").read_text()) or {}
    params = yaml.safe_load(params_path.read_text())
    out = []
    for key, value in profile.items():
        node = params
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise SystemExit(f"profiles/{name}.yaml: {key} is not a key of params.yaml")
            node = node[part]
        text = value if isinstance(value, str) else json.dumps(value)
        out.append(f"-S {key}={text}")
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(f"usage: python profiles/flags.py PROFILE   (one of: {', '.join(p.stem for p in HERE.glob('*.yaml'))})")
    print(" ".join(flags(sys.argv[1])))
