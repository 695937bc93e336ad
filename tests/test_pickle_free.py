"""No code of the project unpickles: loading a pickle runs whatever code its author put in it, so a weights
file, a checkpoint or a table from elsewhere must never be read that way.

An `ast` scan of every .py file of the project (facepaint/, stages/, flows/, tracking/, tools/, bench/,
profiles/; not tests/ or the virtual environment) refuses, naming file:line:
- `torch.load(...)` without `weights_only=True` (a literal True: a variable cannot be checked here);
- `pickle`/`cloudpickle`/`dill` `.load`/`.loads`/`.Unpickler` and `joblib.load`;
- `numpy.load(...)` with `allow_pickle` other than a literal False (numpy's default is False);
- `pandas.read_pickle`;
- `X.from_pretrained(...)` of a class with weights (not a tokenizer, processor, scheduler or config) without
  `use_safetensors=True` or a `**` expansion (checked where it is built): diffusers and transformers fall back
  to a pickled `.bin` when a folder has no safetensors.
Calls are resolved through the module's imports (`import numpy as np`, `from torch import load`, ...).
Third-party code is not scanned: facexlib's own `init_parsing_model`/`init_detection_model` unpickle, which
is why facepaint.method.masks and facepaint.method.detection load those weights themselves with `weights_only=True`.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("facepaint", "stages", "flows", "tracking", "tools", "bench")  # each must be scanned
SKIP = {"tests", ".venv", "data", "mlruns", "__pycache__", "build", "dist"}  # directory names never scanned

UNPICKLERS = {
    f"{module}.{name}"
    for module in ("pickle", "_pickle", "cloudpickle", "dill")
    for name in ("load", "loads", "Unpickler")
} | {"joblib.load", "pandas.read_pickle"}
NO_WEIGHTS = re.compile(r"Tokenizer|Processor|Scheduler|FeatureExtractor|Config", re.IGNORECASE)
# Conventional aliases, for a name used without an import in the same file.
CONVENTIONS = {"np": "numpy", "pd": "pandas"}


def project_files(root: Path = REPO) -> list[Path]:
    """Every .py file of the project but the tests, the venv, data and hidden or build directories."""
    return sorted(
        p
        for p in root.rglob("*.py")
        if not any(
            part in SKIP or part.startswith(".") or part.endswith(".egg-info")
            for part in p.relative_to(root).parts[:-1]
        )
    )


def _aliases(tree: ast.AST) -> dict[str, str]:
    """Local name -> the dotted name it stands for, from every import in the module (function-level too)."""
    names = dict(CONVENTIONS)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.asname:
                    names[a.asname] = a.name
                else:
                    top = a.name.split(".")[0]
                    names[top] = top
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                names[a.asname or a.name] = f"{node.module}.{a.name}"
    return names


def _dotted(func: ast.expr, aliases: dict[str, str]) -> str | None:
    """`a.b.c` for a call's function (its root resolved through the imports), None for anything else."""
    attrs = []
    while isinstance(func, ast.Attribute):
        attrs.append(func.attr)
        func = func.value
    if not isinstance(func, ast.Name):
        return None
    return ".".join([aliases.get(func.id, func.id), *reversed(attrs)])


def _keyword_is(call: ast.Call, name: str, value) -> bool:
    """True when the call passes `name=<the literal value>` (a variable or **kwargs does not count)."""
    return any(k.arg == name and isinstance(k.value, ast.Constant) and k.value.value is value for k in call.keywords)


def unpickling_calls(source: str, filename: str = "<source>") -> list[str]:
    """'file:line: what' for each call of `source` that may unpickle."""
    tree = ast.parse(source, filename)
    aliases = _aliases(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func, aliases)
        if name is None:
            continue
        why = None
        if name == "torch.load" and not _keyword_is(node, "weights_only", True):
            why = "torch.load without weights_only=True"
        elif name in UNPICKLERS:
            why = f"{name} unpickles"
        elif name == "numpy.load" and any(k.arg in ("allow_pickle", None) for k in node.keywords):
            if not _keyword_is(node, "allow_pickle", False):
                why = "numpy.load with allow_pickle (other than a literal False)"
        elif name.endswith(".from_pretrained") and not NO_WEIGHTS.search(name.rsplit(".", 2)[-2]):
            if not _keyword_is(node, "use_safetensors", True) and not any(k.arg is None for k in node.keywords):
                why = "from_pretrained without use_safetensors=True (a folder without safetensors loads a pickle)"
        if why:
            found.append(f"{filename}:{node.lineno}: {why}")
    return found


# ------------------------------------------------------------------------------------------ the checker


@pytest.mark.parametrize(
    "source",
    [
        "import torch\ntorch.load('w.pth')",
        "import torch\ntorch.load('w.pth', map_location='cpu', weights_only=False)",
        "import torch\nflag = True\ntorch.load('w.pth', weights_only=flag)",
        "import torch\ntorch.load('w.pth', **options)",
        "import torch as T\nT.load('w.pth')",
        "from torch import load\nload('w.pth')",
        "def f():\n    from torch import load as fetch\n    return fetch('w.pth')",
        "import pickle\npickle.load(open('x', 'rb'))",
        "import pickle\npickle.loads(b'')",
        "import pickle\npickle.Unpickler(f).load()",
        "from pickle import loads\nloads(b'')",
        "import cloudpickle\ncloudpickle.loads(b'')",
        "import cloudpickle\ncloudpickle.load(f)",
        "import dill\ndill.load(f)",
        "import dill as d\nd.loads(b'')",
        "import joblib\njoblib.load('m.joblib')",
        "import numpy as np\nnp.load('a.npy', allow_pickle=True)",
        "import numpy\nnumpy.load('a.npz', allow_pickle=True)",
        "from numpy import load\nload('a.npy', allow_pickle=True)",
        "np.load('a.npy', allow_pickle=True)",  # the conventional alias, imported elsewhere
        "import pandas as pd\npd.read_pickle('t.pkl')",
        "import pandas\npandas.read_pickle('t.pkl')",
        "from pandas import read_pickle\nread_pickle('t.pkl')",
        "from transformers import AutoModel\nAutoModel.from_pretrained('x')",
        "import diffusers\ndiffusers.UNet2DConditionModel.from_pretrained('x', use_safetensors=False)",
    ],
)
def test_checker_catches(source):
    found = unpickling_calls(source, "example.py")
    assert len(found) == 1, (source, found)
    assert found[0].startswith(f"example.py:{source.count(chr(10)) + 1}: ")


@pytest.mark.parametrize(
    "source",
    [
        "import torch\ntorch.load('w.pth', map_location='cpu', weights_only=True)",
        "import numpy as np\nnp.load('a.npy')",
        "import numpy as np\nnp.load('a.npy', allow_pickle=False)",
        "import json\njson.load(f)",
        "import yaml\nyaml.safe_load(f)",
        "from safetensors.torch import load_file\nload_file('w.safetensors')",
        "import pandas as pd\npd.read_parquet('t.parquet')",
        "model.load_state_dict(state)",
        "def load(x):\n    return x\nload(1)",
        "from transformers import AutoModel\nAutoModel.from_pretrained('x', use_safetensors=True)",
        "cls.from_pretrained(ref, **weights)",  # checked where `weights` is built
        "from transformers import CLIPTokenizer\nCLIPTokenizer.from_pretrained('x')",
    ],
)
def test_checker_allows(source):
    assert unpickling_calls(source, "example.py") == []


# ------------------------------------------------------------------------------------------ the project


def test_project_is_pickle_free():
    files = project_files()
    scanned = {p.relative_to(REPO).parts[0] for p in files}
    assert set(PACKAGES) <= scanned, f"not scanned: {sorted(set(PACKAGES) - scanned)}"
    assert not any(p.relative_to(REPO).parts[0] in ("tests", ".venv") for p in files)
    found = [hit for p in files for hit in unpickling_calls(p.read_text(), str(p.relative_to(REPO)))]
    assert not found, (
        "code that may unpickle (load safetensors, or torch.load(..., weights_only=True)):\n" + "\n".join(found)
    )
