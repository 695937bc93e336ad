"""Print a params profile as `dvc exp run` flags: one `-S section.key=value` per override.

    dvc exp run $(python profiles/flags.py paper) -S data.root=/path/to/CelebAMask-HQ

The profile (profiles/<name>.yaml) is a flat mapping of dotted params.yaml keys to values; every
key must already exist in params.yaml (a typo is an error, not a silently ignored flag). The stages
and the benchmarks apply the same overrides with `stages.common.load_params(profile=NAME)`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from stages.common import profile_overrides

HERE = Path(__file__).resolve().parent


def flags(name: str, params_path: Path = HERE.parent / "params.yaml") -> list[str]:
    params = yaml.safe_load(params_path.read_text())
    return [
        f"-S {key}={value if isinstance(value, str) else json.dumps(value)}"
        for key, value in profile_overrides(name, params, HERE).items()
    ]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(
            f"usage: python profiles/flags.py PROFILE   (one of: {', '.join(p.stem for p in HERE.glob('*.yaml'))})"
        )
    print(" ".join(flags(sys.argv[1])))
