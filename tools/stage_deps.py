"""Write (or check) every `dvc.yaml` stage's code deps and params, so they are complete by construction.

A change to any module a stage runs reruns that stage, and nothing else does.

    python -m tools.stage_deps           # rewrite dvc.yaml's code deps and params from the stage modules
    python -m tools.stage_deps --check   # exit 1 naming what differs (tests/test_dvc.py runs this)

Code deps of stage NAME: `stages/NAME.py` and every project module it imports, directly or through other
project modules, at import time or lazily inside a function, with each package's `__init__.py`. The
walk reads the import statements (ast), so it over-approximates one run (a branch that is never taken
still counts): the safe side, since a missing dep keeps a stale result while an extra one only reruns.
A stage module may declare `BOOKKEEPING`, module names whose code cannot change its outputs (the MLflow
run tracking of `tracking.runs`, which writes only to the tracking store and is never fatal); the walk
does not enter them, so editing the tracking code does not retrain a model.
A stage module may also declare `LOADS`, project modules it imports by name (importlib), which no import
statement shows: the walk starts from them too (the params stage loads every section's config class so).
Params of stage NAME: the `PARAMS` tuple of `stages/NAME.py`, the params.yaml keys its outputs depend on
(per key where a section holds speed knobs that cannot change them).
The order edge: every stage but the params stage (GATE) depends on its output, `data/params.ok`, so that DVC runs
the check of the whole params.yaml first and a refused params.yaml stops `dvc repro` before any stage's outputs
are removed (stages/params.py says why the file's content never changes). This writes that dep too.
Other data deps (the files a stage reads) and outs stay hand-written in dvc.yaml.

We wrote this ourselves: DVC has no import tracking, and `modulefinder` follows only what a module
imports at load time, not the lazy imports inside functions that this project uses to keep start-up fast.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("facepaint", "stages", "tracking", "tools", "flows")  # first-party top-level packages
# Files a module uses by path, not by import (MLflow logs pyfunc_model.py as the model's code).
USED_BY_PATH = {"tracking/registry.py": ("tracking/pyfunc_model.py",)}
GATE = "params"  # the stage that checks the whole params.yaml; every other stage depends on its output
GATE_OUT = "data/params.ok"  # stages.common.PARAMS_CHECKED (tests/test_dvc.py checks they agree)


def module_file(name: str, repo: Path = REPO) -> Path | None:
    """The file of the first-party module `name` (a module or a package's __init__), or None."""
    parts = name.split(".")
    if parts[0] not in PACKAGES:
        return None
    base = repo.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _package(path: Path, repo: Path) -> str:
    """The package a module file belongs to (for a package's __init__.py, the package itself)."""
    return ".".join(path.relative_to(repo).parts[:-1])


def imported_names(path: Path, repo: Path = REPO) -> set[str]:
    """Every module name an import statement anywhere in `path` can load: for `import a.b` a and a.b, for
    `from a.b import c` a, a.b and a.b.c (when c is a module)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                pkg = _package(path, repo).split(".")
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join([*pkg, base] if base else pkg)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            parts = target.split(".")
            names.update(".".join(parts[: i + 1]) for i in range(len(parts)))
    return names


def code_deps(stage: str, repo: Path = REPO) -> list[str]:
    """The project files stage `stage` can run (see the module docstring), sorted, relative to `repo`."""
    start = repo / "stages" / f"{stage}.py"
    if not start.is_file():
        raise FileNotFoundError(f"{start} not found: every dvc.yaml stage NAME runs `python -m stages.NAME`")
    skip = stage_bookkeeping(stage)
    seen: set[Path] = set()
    todo = [start, repo / "stages" / "__init__.py"]
    for name in stage_loads(stage):
        found = module_file(name, repo)
        if found is None:
            raise FileNotFoundError(f"stages/{stage}.py LOADS {name}, which is no project module")
        todo.append(found)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_names(path, repo):
            if any(name == b or name.startswith(b + ".") for b in skip):
                continue
            found = module_file(name, repo)
            if found is not None and found not in seen:
                todo.append(found)
        for extra in USED_BY_PATH.get(str(path.relative_to(repo)), ()):
            todo.append(repo / extra)
    return sorted(str(p.relative_to(repo)) for p in seen)


def stage_bookkeeping(stage: str) -> tuple[str, ...]:
    """The modules stage `stage` declares cannot change its outputs (its module's BOOKKEEPING)."""
    return tuple(getattr(importlib.import_module(f"stages.{stage}"), "BOOKKEEPING", ()))


def stage_loads(stage: str) -> tuple[str, ...]:
    """The project modules stage `stage` imports by name (its module's LOADS)."""
    return tuple(getattr(importlib.import_module(f"stages.{stage}"), "LOADS", ()))


def stage_params(stage: str) -> list[str]:
    """The params.yaml keys stage `stage` declares (its module's PARAMS)."""
    module = importlib.import_module(f"stages.{stage}")
    params = getattr(module, "PARAMS", None)
    if params is None:
        raise AttributeError(f"stages/{stage}.py declares no PARAMS (the params.yaml keys its outputs depend on)")
    return list(params)


def is_code(dep: str) -> bool:
    return dep.endswith(".py") and dep.split("/")[0] in PACKAGES


def expected(repo: Path = REPO) -> dict[str, dict[str, list[str]]]:
    """{stage: {"code": [...], "params": [...]}} for every stage of repo/dvc.yaml."""
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    return {name: {"code": code_deps(name, repo), "params": stage_params(name)} for name in stages}


def differences(repo: Path = REPO) -> list[str]:
    """What dvc.yaml lacks or has too much of, one line each (empty when it is up to date)."""
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    out = []
    for name, want in expected(repo).items():
        deps = [d if isinstance(d, str) else next(iter(d)) for d in stages[name].get("deps", [])]
        have = {d for d in deps if is_code(d)}
        for dep in sorted(set(want["code"]) - have):
            out.append(f"stage {name}: runs {dep} but does not depend on it")
        for dep in sorted(have - set(want["code"])):
            out.append(f"stage {name}: depends on {dep}, which it does not import")
        params = [p if isinstance(p, str) else next(iter(p)) for p in stages[name].get("params", [])]
        if params != want["params"]:
            out.append(f"stage {name}: params {params}, its module declares {want['params']}")
        if name != GATE and GATE_OUT not in deps:
            out.append(f"stage {name}: does not depend on {GATE_OUT}, so it may run before the {GATE} stage's check")
    if GATE not in stages:
        out.append(f"dvc.yaml has no {GATE} stage (stages/{GATE}.py: the check of the whole params.yaml)")
    elif "params.yaml" not in stages[GATE].get("deps", []) or GATE_OUT not in _paths(stages[GATE].get("outs", [])):
        out.append(f"stage {GATE}: must depend on params.yaml (the whole file) and write {GATE_OUT}")
    return out


def _paths(entries: list) -> list[str]:
    return [e if isinstance(e, str) else next(iter(e)) for e in entries]


def rewrite(text: str, want: dict[str, dict[str, list[str]]]) -> str:
    """dvc.yaml's text with each stage's code deps (first in `deps`, sorted) and `params` replaced;
    everything else (data deps, outs, comments, order) kept as written."""
    lines, out, i, stage = text.splitlines(), [], 0, None
    while i < len(lines):
        line = lines[i]
        if line.startswith("  ") and not line.startswith("   ") and line.rstrip().endswith(":"):
            stage = line.strip()[:-1]
        if stage in want and line.rstrip() in ("    deps:", "    params:"):
            key = line.strip()[:-1]
            block = []
            i += 1
            while i < len(lines) and lines[i].startswith("      "):
                block.append(lines[i])
                i += 1
            data = [b for b in block if not _is_code_line(b)]
            if stage != GATE and f"      - {GATE_OUT}" not in data:
                data.insert(0, f"      - {GATE_OUT}")
            items = [f"      - {d}" for d in want[stage]["code"]] + data
            if key == "params":
                items = [f"      - {p}" for p in want[stage]["params"]]
            out += [line, *items]
            continue
        out.append(line)
        i += 1
    return "\n".join(out) + "\n"


def _is_code_line(line: str) -> bool:
    item = line.strip()
    return item.startswith("- ") and is_code(item[2:].strip())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report what differs (exit 1 if anything)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    if args.check:
        diff = differences()
        for line in diff:
            print(line)
        if diff:
            print("run `python -m tools.stage_deps` to rewrite dvc.yaml's code deps and params")
        return 1 if diff else 0
    path, want = REPO / "dvc.yaml", expected()
    path.write_text(rewrite(path.read_text(), want))
    print(f"{path.relative_to(REPO)}: code deps and params of {len(want)} stages written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
