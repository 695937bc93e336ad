"""The layering the tree shows, enforced.

- Inside `facepaint/`, subpackages import one way only: common -> method -> data -> evaluation, and
  method -> editing -> apps (`LAYERS` lists what each may import); the package itself imports nothing.
- No import cycle anywhere among the project's modules (facepaint, stages, flows, tracking, tools, bench),
  counting imports inside functions too: the same walk that generates dvc.yaml's code deps
  (tools/stage_deps.py), so a cycle there would make every module of it a dep of every stage that reaches one.
- `facepaint/` works with MLflow, Prefect and DVC made unimportable; the orchestration (`stages/`,
  `flows/`, `tracking/`) and the tools (`tools/`, `bench/`) sit on top of it; stages do not import each other.
- docs/layout.md's module map and the package docstring name every module (tools/module_map.py writes the map).
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROJECT = ("facepaint", "stages", "flows", "tracking", "tools", "bench")
COPIED = (*PROJECT, "profiles")
ORCHESTRATION = ("mlflow", "prefect", "dvc", "tracking", "stages", "flows", "tools", "bench")
# What each subpackage of facepaint/ may import (itself included).
LAYERS = {
    "common": {"common"},
    "method": {"common", "method"},
    "data": {"common", "method", "data"},
    "evaluation": {"common", "method", "data", "evaluation"},
    "editing": {"common", "method", "editing"},
    "apps": {"common", "method", "editing", "apps"},
}
# The one place the package reaches up, lazily: an app serving a registered release (`models:/...`) resolves it
# through tracking (tested below: without MLflow it is a clear error, and every other path still works).
ALLOWED = {("facepaint/apps/releases.py", "tracking.registry")}


def project_files(repo: Path = REPO) -> list[Path]:
    return sorted(p for top in PROJECT for p in (repo / top).rglob("*.py") if "__pycache__" not in p.parts)


def module_name(path: Path, repo: Path = REPO) -> str:
    parts = path.relative_to(repo).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module an import statement anywhere in `path` names (inside functions too); for `from a import
    b`, both a and a.b (b may be a module)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def layer_violations(repo: Path = REPO) -> list[str]:
    """Each import inside facepaint/ that goes against LAYERS or reaches the orchestration, one line each."""
    found = []
    for path in sorted((repo / "facepaint").rglob("*.py")):
        rel = str(path.relative_to(repo))
        parts = path.relative_to(repo / "facepaint").parts
        mine = parts[0] if len(parts) > 1 else None  # None: facepaint/__init__.py
        for name in sorted(imports(path)):
            top, *rest = name.split(".")
            allowed = any(rel == f and (name == m or name.startswith(m + ".")) for f, m in ALLOWED)
            if top in ORCHESTRATION and not allowed:
                found.append(f"{rel} imports {name} (the orchestration)")
            elif top == "facepaint" and rest and rest[0] in LAYERS:
                if mine is None or rest[0] not in LAYERS[mine]:
                    found.append(f"{rel} imports {name}: {mine or 'the package'} may not import {rest[0]}")
    return found


def import_graph(repo: Path = REPO) -> dict[str, set[str]]:
    """{module: the project modules it imports} (a package's __init__ is its module)."""
    files = project_files(repo)
    known = {module_name(p, repo) for p in files}
    return {module_name(p, repo): {n for n in imports(p) if n in known and n != module_name(p, repo)} for p in files}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_subpackages_import_one_way_only():
    assert layer_violations() == []


def test_no_import_cycle_among_project_modules():
    assert cycles(import_graph()) == []


def test_the_package_itself_imports_nothing():
    """facepaint/__init__.py is a dep of every stage: it holds the version and the map, no code to import."""
    assert imports(REPO / "facepaint" / "__init__.py") == set()


def test_every_subpackage_is_a_layer():
    subpackages = {p.parent.name for p in (REPO / "facepaint").glob("*/__init__.py")}
    assert subpackages == set(LAYERS)


def _copy_package(tmp_path: Path) -> Path:
    import shutil

    for top in COPIED:
        if (REPO / top).is_dir():
            shutil.copytree(REPO / top, tmp_path / top, ignore=shutil.ignore_patterns("__pycache__", "results"))
    return tmp_path


def test_the_checks_catch_an_upward_import_and_a_cycle(tmp_path):
    """The guards can fail: in a copy of the project, the evaluation importing the editor (the seam that made a
    change to C2PA signing rerun the evaluation) and a module of `common` importing one of `method` are
    reported; so is a cycle made by a lazy import inside a function."""
    repo = _copy_package(tmp_path)
    run = repo / "facepaint" / "evaluation" / "run.py"
    run.write_text(run.read_text() + "\n\ndef _x():\n    from facepaint.editing.editor import FaceEditor  # noqa\n")
    io = repo / "facepaint" / "common" / "io.py"
    io.write_text(io.read_text() + "\n\ndef _y():\n    import facepaint.method.models  # noqa\n")
    found = layer_violations(repo)
    assert any("evaluation/run.py imports facepaint.editing.editor" in f for f in found), found
    assert any("common/io.py imports facepaint.method.models" in f for f in found), found
    assert ["facepaint.common.io", "facepaint.method.models"] not in cycles(import_graph(repo))  # upward, no cycle
    models = repo / "facepaint" / "method" / "models.py"
    models.write_text(models.read_text() + "\n\ndef _z():\n    from facepaint.common import io  # noqa\n")
    assert ["facepaint.common.io", "facepaint.method.models"] in cycles(import_graph(repo))


def test_stages_do_not_import_each_other():
    """A stage gets another stage's paths from stages.common, not by importing that stage (and its torch)."""
    found = []
    for path in sorted((REPO / "stages").glob("*.py")):
        for name in imports(path):
            if name.startswith("stages.") and name.split(".")[1] != "common":
                found.append(f"{path.name} imports {name}")
    assert found == []


BLOCKED = ("mlflow", "prefect", "dvc")


def without_orchestration(tmp_path: Path) -> Path:
    """A site-packages of links to every installed distribution but MLflow's, Prefect's and DVC's (and
    theirs: dvc_data, mlflow_skinny...): in it those are not installed at all, so libraries that probe for
    them (accelerate, transformers) see them absent, exactly as on a machine without them."""
    import torch

    site = Path(torch.__file__).resolve().parents[1]
    out = tmp_path / "site"
    if out.is_dir():
        return out
    out.mkdir()
    for entry in site.iterdir():
        if not entry.name.lower().replace("-", "_").startswith(BLOCKED) and not entry.name.endswith(".pth"):
            (out / entry.name).symlink_to(entry)
    return out


def run_blocked(code: str, cwd: Path) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter without site-packages (-S) but the filtered copy and the repository."""
    site = without_orchestration(cwd)
    return subprocess.run(
        [sys.executable, "-S", "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": f"{site}:{REPO}", "PATH": "", "HF_HUB_OFFLINE": "1", "HOME": str(cwd)},
    )


@pytest.mark.slow  # ~12 s of subprocesses; test_layers' static walk checks the same imports in the default run
def test_the_package_works_with_mlflow_prefect_and_dvc_unimportable(tiny_artifact, tmp_path):
    """Every module of facepaint/ imports, and `facepaint edit` edits a photo, with the orchestration's
    libraries made unimportable; a registry URI then says what is missing."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)).save(tmp_path / "photo.png")
    mask = np.zeros((80, 96), np.uint8)
    mask[20:60, 30:70] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    code = f"""
import importlib, json, pkgutil, sys
import facepaint
modules = sorted(m.name for m in pkgutil.walk_packages(facepaint.__path__, "facepaint."))
for name in modules:
    importlib.import_module(name)
from facepaint.apps.cli import main
edit = main(["edit", "photo.png", "--prompt", "a smiling man", "--out", "out.png", "--mask", "mask.png",
             "--model", {str(tiny_artifact.path)!r}, "--steps", "2"])
registry = main(["edit", "photo.png", "--prompt", "a man", "--out", "out2.png", "--mask", "mask.png",
                 "--model", "models:/facepaint@champion"])
import importlib.util
blocked = all(importlib.util.find_spec(name) is None for name in ("mlflow", "prefect", "dvc"))
print(json.dumps({{"modules": modules, "edit": edit, "registry": registry, "blocked": blocked,
                  "loaded": sorted(m for m in sys.modules if m.split(".")[0] in ("mlflow", "prefect", "dvc"))}}))
"""
    proc = run_blocked(code, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["blocked"] and out["loaded"] == []
    on_disk = {module_name(p) for p in (REPO / "facepaint").rglob("*.py")} - {"facepaint"}
    assert set(out["modules"]) == on_disk and "facepaint.method.generate" in out["modules"]
    assert out["edit"] == 0 and (tmp_path / "out.png").is_file()
    assert out["registry"] == 1 and not (tmp_path / "out2.png").exists()
    assert "is an MLflow model URI, but MLflow cannot be imported" in proc.stderr


@pytest.mark.slow  # the guard above can fail (slow with it)
def test_the_blocker_really_blocks(tmp_path):
    """The guard can fail: in the same environment the orchestration itself cannot run."""
    proc = run_blocked("import tracking.runs\ntracking.runs._mlflow()", tmp_path)
    assert proc.returncode != 0 and "No module named 'mlflow'" in proc.stderr
    assert run_blocked("import flows.retrain", tmp_path).returncode != 0  # prefect
    ok = run_blocked("import torch, diffusers, transformers, facexlib, pandas; print('ok')", tmp_path)
    assert ok.returncode == 0 and ok.stdout.strip() == "ok", ok.stderr[-2000:]


# ----------------------------------------------------------------------------------- the module map


def test_the_layout_pages_module_map_is_the_generated_one():
    """docs/layout.md's module map is what `python -m tools.module_map` writes from the modules' docstrings: every
    module of facepaint/, stages/, flows/, tracking/, tools/, bench/ and profiles/, each with its docstring's
    first sentence, and no other."""
    proc = subprocess.run(
        [sys.executable, "-m", "tools.module_map", "--check"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_module_map_check_fails_on_a_missing_module(tmp_path):
    from tools import module_map

    repo = _copy_package(tmp_path)
    (repo / "docs").mkdir(exist_ok=True)
    (repo / module_map.PAGE).write_text((REPO / module_map.PAGE).read_text())
    assert module_map.differences(repo) == []
    (repo / "facepaint" / "method" / "extra.py").write_text('"""A module nobody listed."""\n')
    assert any("`extra.py` A module nobody listed" in d for d in module_map.differences(repo))


@pytest.mark.parametrize("line", [line for line in (REPO / "facepaint" / "__init__.py").read_text().splitlines()])
def test_the_package_docstring_names_only_subpackages_that_exist(line):
    if line.startswith("- ") and "/" in line.split()[1]:
        assert (REPO / "facepaint" / line.split()[1]).is_dir(), line


def test_the_package_docstring_names_every_subpackage():
    import facepaint

    named = {line.split()[1].rstrip("/") for line in facepaint.__doc__.splitlines() if line.startswith("- ")}
    assert named == set(LAYERS)
