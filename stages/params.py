"""params: params.yaml checked as a whole before any other stage runs: every section and key known, each value valid.

Inputs:  params.yaml, the whole file (a dep of this stage, not per-key params); the config class of each section
Outputs: data/params.ok, one constant line (in git, cache: false); every other stage depends on it
Run:     dvc repro params     (or: python -m stages.params; with --profile NAME, repeatable, it only checks what
         the profiles make of params.yaml, and writes nothing)

Why a stage. DVC reruns a stage only when a param it tracks changed (its `PARAMS`, dvc.yaml `params:`), and a
stage checks only the sections it reads, when it runs. So a key no stage tracks passed in silence: with
`train.bogus_key: 1` or `train.checkpoint_every: ten` (the checkpoint cadence is not a param of train: it cannot
change the model) `dvc repro` said "didn't change". This stage depends on the whole file, so any edit of it
reruns this check (about 2 s), and the check refuses an unknown section or key, a missing key, a value of the
wrong type or out of range, naming each (`train.bogus_key: unknown key ...`), all at once.

What DVC allows. DVC removes a stage's outputs before it runs the stage's command, unless an output is declared
`persist: true`: DVC then leaves it in place and the stage itself must clean up what is stale (train's
checkpoints are such an output). Nothing runs between "this stage changed" and that removal, so a stage cannot
refuse bad params before its old outputs are gone. Order can: every other stage depends on data/params.ok, so
this stage runs before all of them, and DVC runs stages in dependency order and stops at the first failure
(`--keep-going` skips the failed stage's dependents). A params.yaml this stage refuses fails `dvc repro` (and
`dvc exp run`, the retrain flow, which runs the stages in dvc.yaml's order) before any output is touched. Not
covered: `dvc repro --ignore-errors` (it goes on after a failure), `dvc repro -s STAGE` and
`python -m stages.STAGE` (they run one stage, which checks only its own sections).

Why the output never changes. The edge to data/params.ok is for order only: what a stage computes depends on its
own params and code, which DVC tracks per stage already. A digest of the params here would rerun every stage for
any change (a new learning rate would redo the masks), so the file holds one constant line and DVC reruns
exactly the stages whose tracked params or code changed, as before. It is in git; where it is missing (after a
refused params.yaml: DVC removed it before the check ran) this stage writes it again and nothing else reruns.

Speed. The config classes live in modules that import torch and diffusers at load time (about 12 s on 2 CPU
cores), and no check uses either. The stage loads those modules with the heavy libraries (HEAVY) replaced by
inert stand-ins (`light_imports`; the whole stage takes about 2 s): a stand-in may be subclassed, called,
decorated with and looked into while a module loads, and raises once the checks run. If a module cannot load
that way or a check touches a stand-in, the check runs again with the real libraries, so the verdict is always
the real code's.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.abc
import importlib.machinery
import subprocess
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from facepaint.common.checks import check_fields
from facepaint.common.errors import FacepaintError
from facepaint.common.io import atomic_path
from stages.common import PARAMS as PARAMS_FILE
from stages.common import PARAMS_CHECKED, cli, load_params, profile_overrides, set_key

PARAMS = ()  # no per-key params: dvc.yaml makes the whole params.yaml file a dep of this stage
OK_TEXT = "params.yaml passed stages/params.py; every stage depends on this file, so that it runs after the check\n"


@dataclass
class DataConfig:  # params.yaml `data` (stages.common.data_root and data_layout read it)
    root: str  # the dataset: a CelebAMask-HQ copy, or a folder of photos
    layout: str  # celebamask | folder (facepaint.data.faces.LAYOUTS)

    def __post_init__(self):
        check_fields(self, "data")
        if not self.root.strip():
            raise ValueError("data.root must name the dataset directory, e.g. data/demo")
        if self.layout not in ("celebamask", "folder"):
            raise ValueError(
                f"data.layout must be celebamask (the CelebAMask-HQ layout) or folder (a folder of photos), "
                f"got {self.layout!r}"
            )


# Every section of params.yaml and the config class that reads it ("module:Class": loaded by name, so that
# `light_imports` can leave the heavy libraries out); a section not here is an error. NESTED: the mappings inside
# a section that are configs of their own (their keys are named section.mapping.key).
SECTIONS = {
    "data": DataConfig,
    "demo": "tools.demo:DemoConfig",
    "faces": "facepaint.data.faces:FacesConfig",
    "split": "facepaint.data.split:SplitConfig",
    "masks": "facepaint.data.masks:MaskConfig",
    "captions": "facepaint.data.captions:CaptionConfig",
    "model": "facepaint.method.models:ModelConfig",
    "latents": "facepaint.data.latents:LatentConfig",
    "train": "facepaint.method.train:TrainConfig",
    "sampling": "facepaint.method.options:SamplingOptions",
    "evaluate": "facepaint.evaluation.run:EvalConfig",
    "ablation": "facepaint.evaluation.ablation:AblationConfig",
    "gan": "facepaint.evaluation.msagan:GanConfig",
    "register": "stages.register:RegisterConfig",
    "retrain": "flows.retrain:RetrainConfig",
}
NESTED = {
    "evaluate.baselines": "facepaint.evaluation.methods.registry:Baselines",
    "evaluate.brushnet": "facepaint.evaluation.methods.brushnet:BrushNetSettings",
    "evaluate.diptych": "facepaint.evaluation.methods.diptych:DiptychSettings",
    "evaluate.blended_latent": "facepaint.evaluation.methods.blended_latent:BlendedLatentSettings",
    "register.gate": "tracking.registry:Gate",
}
# The project modules this stage imports by name (no import statement shows them): tools/stage_deps.py makes
# them and what they import code deps of this stage, so a change to any config's checks reruns the check.
LOADS = tuple(sorted({v.split(":")[0] for v in (*SECTIONS.values(), *NESTED.values()) if isinstance(v, str)}))

# Third-party libraries the config modules import at load time and no config check uses.
HEAVY = (
    "accelerate",
    "cv2",
    "diffusers",
    "facexlib",
    "huggingface_hub",
    "mediapipe",
    "mlflow",
    "prefect",
    "safetensors",
    "torch",
    "torchmetrics",
    "torchvision",
    "transformers",
)


class ParamsError(FacepaintError):
    """params.yaml holds an unknown section or key, lacks a key, or has a value its config refuses."""


# ------------------------------------------------------------------------------------------ the check


def config_classes(light: bool = False) -> tuple[dict[str, type], dict[str, type]]:
    """({section: its config class}, {section.mapping: its config class}). `light`: load the config modules with
    the HEAVY libraries replaced by stand-ins (only in a process of its own: the stand-ins stay loaded)."""

    def load(spec):
        if not isinstance(spec, str):
            return spec
        module, name = spec.split(":")
        return getattr(importlib.import_module(module), name)

    with light_imports() if light else _nothing():
        sections = {name: load(spec) for name, spec in SECTIONS.items()}
        nested = {name: load(spec) for name, spec in NESTED.items()}
    return sections, nested


def problems(params, classes: tuple[dict[str, type], dict[str, type]] | None = None) -> list[str]:
    """What is wrong with `params` (params.yaml as a dict), one line each, naming `section.key`; [] if nothing.
    Every section's config class is constructed, so its own checks (types, ranges, choices) run."""
    sections, nested = classes or config_classes()
    if not isinstance(params, dict):
        return [f"params.yaml must be a mapping of sections ({', '.join(sections)}), got {params!r}"]
    found = [
        f"{name}: unknown section; the sections are {', '.join(sections)}" for name in params if name not in sections
    ]
    for name, cls in sections.items():
        if name not in params:
            found.append(f"{name}: section missing (every setting lives in params.yaml)")
            continue
        given, complete = _keys(name, params[name], cls, found)
        for where, inner in nested.items():
            section_name, _, key = where.partition(".")
            if section_name == name and key in given:
                given[key], inner_complete = _keys(where, given[key], inner, found)
                complete = complete and inner_complete
        if not complete:
            continue  # a config cannot be made without each of its keys
        try:  # the known keys' values are checked also where an unknown key sits beside them
            cls(**given)
        except (TypeError, ValueError) as e:
            found.append(_named(name, str(e), cls))
    return found


def _keys(where: str, given, cls, found: list[str]) -> tuple[dict, bool]:
    """The known keys of the mapping `given` that `cls` reads (a copy), and whether it has them all; its unknown
    and missing keys appended to `found`, named `where.key`."""
    fields = [f.name for f in dataclasses.fields(cls)]
    if not isinstance(given, dict):
        found.append(f"{where}: must be a mapping of {', '.join(fields)}; got {given!r}")
        return {}, False
    known = f"the keys of {where}: {', '.join(fields)}"
    found += [f"{where}.{key}: unknown key ({known})" for key in given if key not in fields]
    missing = [f"{where}.{key}: missing ({known})" for key in fields if key not in given]
    found += missing
    return {key: value for key, value in given.items() if key in fields}, not missing


def _named(section: str, message: str, cls) -> str:
    """A config's refusal, starting with the `section.key` it is about (SamplingOptions names its fields bare,
    as a user of `facepaint edit` gives them)."""
    first = message.split(" ", 1)[0]
    if first in {f.name for f in dataclasses.fields(cls)}:
        return f"{section}.{message}"
    if first.startswith(f"{section}.") or first.rstrip(":") == section:
        return message
    return f"{section}: {message}"


def check(params, classes=None, what: str = "params.yaml") -> None:
    """ParamsError listing every problem of `params` (see `problems`); `what`: what the message calls them."""
    found = problems(params, classes)
    if found:
        lines = "\n".join(f"  {p}" for p in found)
        raise ParamsError(f"{what}: {len(found)} problem(s):\n{lines}")


# ------------------------------------------------------------------------------ loading without torch


class StandInUsed(BaseException):  # noqa: N818 (not an error of the user's: the check reruns with the real libraries)
    """A config check used a HEAVY library's stand-in. A BaseException, so no `except Exception` swallows it."""


_STATE = {"loading": False}


class _StandIn:
    """Whatever a module takes from a HEAVY library while it loads (torch.nn.Module, diffusers' ModelMixin, a
    decorator, torch.float16): it can be looked into, called, subclassed and indexed; once the modules have
    loaded, any use of it raises StandInUsed. It is never true, equal, iterable or a number."""

    def __init__(self, name: str):
        object.__setattr__(self, "_name", name)

    def _use(self, what: str):
        if not _STATE["loading"]:
            raise StandInUsed(f"{what} of {self._name}")

    def __getattr__(self, attr: str):
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        self._use(f"attribute {attr}")
        value = _StandIn(f"{self._name}.{attr}")
        object.__setattr__(self, attr, value)
        return value

    def __setattr__(self, attr, value):
        self._use(f"setting {attr}")
        object.__setattr__(self, attr, value)

    def __call__(self, *args, **kwargs):
        self._use("a call")
        return _StandIn(f"{self._name}()")

    def __getitem__(self, key):
        self._use("indexing")
        return _StandIn(f"{self._name}[]")

    def __or__(self, other):
        self._use("a union")
        return self

    __ror__ = __or__

    def __mro_entries__(self, bases):
        self._use("subclassing")
        cls = self.__dict__.get("_class")
        if cls is None:
            cls = type(self._name.rsplit(".", 1)[-1], (), {"__module__": "stand-in"})
            object.__setattr__(self, "_class", cls)
        return (cls,)

    def _refuse(self, *args, **kwargs):
        raise StandInUsed(f"the value of {self._name}")

    __bool__ = __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __iter__ = __len__ = __contains__ = _refuse
    __int__ = __float__ = __index__ = __instancecheck__ = __subclasscheck__ = _refuse
    __hash__ = object.__hash__

    def __repr__(self):
        return f"<stand-in {self._name}>"


class _StandInModule(types.ModuleType):
    def __getattr__(self, attr: str):
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        if not _STATE["loading"]:
            raise StandInUsed(f"{self.__name__}.{attr}")
        value = _StandIn(f"{self.__name__}.{attr}")
        setattr(self, attr, value)
        return value


class _StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in HEAVY:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StandInModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


@contextmanager
def light_imports() -> Iterator[None]:
    """Within: a HEAVY library not loaded yet loads as a stand-in (see _StandIn); after: stand-ins raise on use."""
    finder = _StandInFinder()
    sys.meta_path.insert(0, finder)
    _STATE["loading"] = True
    try:
        yield
    finally:
        _STATE["loading"] = False
        sys.meta_path.remove(finder)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


# --------------------------------------------------------------------------------------------- stage


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", action="append", default=[], help="apply profiles/NAME.yaml first; only check")
    parser.add_argument("--real-imports", action="store_true", help="load the config modules with torch & co.")
    args = parser.parse_args(argv)
    params = load_params()
    for name in args.profile:
        for key, value in profile_overrides(name, params).items():
            set_key(params, key, value)
    try:
        what = f"params.yaml with profile(s) {', '.join(args.profile)}" if args.profile else "params.yaml"
        check(params, config_classes(light=not args.real_imports), what)
    except (StandInUsed, Exception) as e:
        if args.real_imports or isinstance(e, ParamsError):
            raise
        # a module needs a heavy library to load, or a check uses one: the real libraries decide
        print(f"params: checking again with the real libraries ({type(e).__name__}: {e})", file=sys.stderr)
        argv = [*(argv if argv is not None else sys.argv[1:]), "--real-imports"]
        sys.exit(subprocess.call([sys.executable, "-m", "stages.params", *argv]))
    if args.profile:
        print(f"params: params.yaml with profile(s) {', '.join(args.profile)} is valid (nothing written)")
        return
    with atomic_path(PARAMS_CHECKED) as tmp:
        tmp.write_text(OK_TEXT)
    print(f"params: {PARAMS_FILE} is valid: {len(SECTIONS)} sections, every key known")


if __name__ == "__main__":
    cli(main)
