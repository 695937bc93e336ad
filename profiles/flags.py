"""Print params profiles as `dvc exp run` flags: one `-S section.key=value` per override.

    dvc exp run $(python profiles/flags.py paper) -S data.root=/path/to/CelebAMask-HQ
    dvc exp run $(python profiles/flags.py paper ablation)      # several profiles: later ones win

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


def flags(*names: str, params_path: Path = HERE.parent / "params.yaml") -> list[str]:
    params = yaml.safe_load(params_path.read_text())
    overrides = {}
    for name in names:
        overrides.update(profile_overrides(name, params, HERE))
    # compact JSON: `$(python profiles/flags.py ...)` splits words at spaces, so a flag must hold none
    return [
        f"-S {key}={value if isinstance(value, str) else json.dumps(value, separators=(',', ':'))}"
        for key, value in overrides.items()
    ]


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(
            "usage: python profiles/flags.py PROFILE [PROFILE ...]   "
            f"(of: {', '.join(sorted(p.stem for p in HERE.glob('*.yaml')))})"
        )
    print(" ".join(flags(*sys.argv[1:])))
