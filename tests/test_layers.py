"""The layering the layout shows: `facepaint/` is the method and works with MLflow, Prefect and DVC made
unimportable; the orchestration (`stages/`, `flows/`, `tracking/`) and the tools (`tools/`, `bench/`)
sit on top of it, never under it; stages do not import each other."""

import ast
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ORCHESTRATION = ("mlflow", "prefect", "dvc", "tracking", "stages", "flows", "tools", "bench")
# The one place the method reaches up, lazily: `facepaint edit --model models:/...` resolves a registry URI
# through tracking (tested below: without MLflow it is a clear error, and every other path still works).
ALLOWED = {("facepaint/cli.py", "tracking.registry")}


def imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_the_method_imports_no_orchestration_or_tool():
    found = []
    for path in sorted((REPO / "facepaint").glob("*.py")):
        rel = str(path.relative_to(REPO))
        for name in imports(path):
            if name.split(".")[0] in ORCHESTRATION and (rel, name) not in ALLOWED:
                found.append(f"{rel} imports {name}")
    assert found == []


def test_stages_do_not_import_each_other():
    """A stage gets another stage's paths from stages.common, not by importing that stage (and its torch)."""
    found = []
    for path in sorted((REPO / "stages").glob("*.py")):
        for name in imports(path):
            if name.startswith("stages.") and name != "stages.common":
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


def test_the_method_works_with_mlflow_prefect_and_dvc_unimportable(tiny_artifact, tmp_path):
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
modules = sorted(m.name for m in pkgutil.iter_modules(facepaint.__path__, "facepaint."))
for name in modules:
    importlib.import_module(name)
from facepaint.cli import main
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
    assert len(out["modules"]) >= 20 and "facepaint.method.generate" in out["modules"]
    assert out["edit"] == 0 and (tmp_path / "out.png").is_file()
    assert out["registry"] == 1 and not (tmp_path / "out2.png").exists()
    assert "is an MLflow model URI, but MLflow cannot be imported" in proc.stderr


def test_the_blocker_really_blocks(tmp_path):
    """The guard can fail: in the same environment the orchestration itself cannot run."""
    proc = run_blocked("import tracking.runs\ntracking.runs._mlflow()", tmp_path)
    assert proc.returncode != 0 and "No module named 'mlflow'" in proc.stderr
    assert run_blocked("import flows.retrain", tmp_path).returncode != 0  # prefect
    ok = run_blocked("import torch, diffusers, transformers, facexlib, pandas; print('ok')", tmp_path)
    assert ok.returncode == 0 and ok.stdout.strip() == "ok", ok.stderr[-2000:]


# ----------------------------------------------------------------------------------- the module map


def readme_layout() -> str:
    text = (REPO / "README.md").read_text()
    return text[text.index("### Layout") : text.index("### Settings")]


def test_the_readme_module_map_names_every_module_and_no_other():
    """Each directory's bullet in the README's Layout names exactly the modules that directory holds."""
    import re

    layout = readme_layout()
    for folder in ("facepaint", "stages", "flows", "tracking", "tools", "bench", "profiles"):
        m = re.search(rf"^- `{folder}/`(.*?)(?=^- `|\Z)", layout, flags=re.S | re.M)
        assert m, f"the README's Layout has no bullet for {folder}/"
        named = set(re.findall(r"`(\w+\.(?:py|yaml))`", m.group(1)))
        on_disk = {
            p.name for p in (REPO / folder).iterdir() if p.suffix in (".py", ".yaml") and p.name != "__init__.py"
        }
        assert named == on_disk, (folder, sorted(on_disk - named), sorted(named - on_disk))


def test_the_package_docstring_lists_every_module():
    import re

    import facepaint

    lines = "\n".join(re.findall(r"^- (.*)$", facepaint.__doc__, flags=re.M))
    listed = set(re.findall(r"(\w+)\.py", lines))
    on_disk = {p.stem for p in (REPO / "facepaint").glob("*.py") if p.name != "__init__.py"}
    assert listed == on_disk, (sorted(on_disk - listed), sorted(listed - on_disk))
