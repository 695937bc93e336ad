"""The trained artifact: what fine-tuning changed, and the conditions inference must reproduce.

A directory with
- `kv.safetensors`       every UNet cross-attention `attn2.to_k` / `attn2.to_v` weight (fp32),
- `adapter.safetensors`  the face-aware text adapter (`w1.weight`, `w2.weight`),
- `facepaint.json`       `conditions` (below), the training params and data version, and `version`: a
                         digest of the two weight files and the conditions (the model version everything else
                         names; `version_digest`).

`conditions` is everything inference must do as training did: the base model (a `model` params
section that `models.load_components` rebuilds), the training resolution, adapter_scale (the SPEC's
lambda), the face parts and mask backend that made M, and the latent factor. Settings training does not
depend on are not recorded: the soft mask's sigma is a sampling option (facepaint.method.options).
`Artifact.conditions` is the one accessor the editor and the evaluation read them through; an
artifact without them, or of an older format (2: its version was the weights' digest alone), is refused with a
message saying to retrain it, never filled in with defaults.

facepaint.json is not trusted: every reader (`load_artifact`, `read_conditions`, hence the editor, the apps, the
MLflow pyfunc model and a registry release) checks it against its schema (`check_info`) before any weights load,
and `load_artifact` checks that the recorded version is the digest of the weights and of the conditions, so an
edited file is refused with a message naming the file, the key and what is expected, never run. The schema:
- `format` 3; `version` 12 hex digits; `conditions` (`Conditions.__post_init__`: known keys only, each typed
  and in range, `model` a mapping of ModelConfig's fields checked by ModelConfig);
- the provenance `train` records (`PROVENANCE`: train, data, masks (mappings), steps, final_loss) and `notes`
  (a mapping: whatever else `save_artifact`'s `extra` held), typed; no other key.
Strict JSON only: NaN and Infinity literals, a repeated key, or a file over MAX_INFO_BYTES are refused.

About 80 MB for SD1.5 (19.2M + 1.2M fp32 parameters) instead of the 3.4 GB UNet. `apply_artifact`
loads it into base components; the frozen rest of the UNet is the base model's own.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load as load_weights
from safetensors.torch import save_file

from facepaint.common.checks import check_fields, check_number, settings
from facepaint.common.errors import FacepaintError
from facepaint.common.io import atomic_dir
from facepaint.method.adapter import FaceAdapter
from facepaint.method.masks import BISENET_CLASSES
from facepaint.method.models import Components, ModelConfig

FORMAT = 3  # of facepaint.json (2: `conditions`; 3: the version digest covers the conditions too)
WEIGHTS_FORMAT = 1  # of the two safetensors files (their bytes are part of the version digest, so it stays put)
KV_FILE, ADAPTER_FILE, INFO_FILE = "kv.safetensors", "adapter.safetensors", "facepaint.json"
KV_SUFFIXES = ("attn2.to_k.weight", "attn2.to_v.weight", "attn2.to_k.bias", "attn2.to_v.bias")

# The schema of facepaint.json (see the module docstring and `check_info`).
MAX_INFO_BYTES = 1 << 20  # a facepaint.json is a few kB
RESOLUTION_RANGE = (64, 2048)  # px, a multiple of VAE_FACTOR: 64 is the tests' tiny model, 512 the paper's
VAE_FACTOR = 8  # SD's VAE downsamples by 8 (generate.Inpainter refuses another multiple)
ADAPTER_SCALE_RANGE = (0, 10)  # lambda: the paper's is 0.3 (Infinity writes a black face)
LATENT_FACTOR_RANGE = (1, 64)
MASK_BACKENDS = ("annotations", "bisenet", "mesh")  # = facepaint.data.masks.BACKENDS (a layer above; tested)
FACE_PARTS = tuple(c for c in BISENET_CLASSES if c != "background")  # = celebamask.PART_NAMES (tested)
MAX_TEXT = 4096  # characters of model.pretrained (a hub id or a local directory) and model.revision
VARIANT = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # model.variant, e.g. fp16
PROVENANCE = ("train", "data", "masks", "steps", "final_loss")  # what `train` records besides the conditions
NOTES = "notes"  # save_artifact's other `extra` keys
INFO_KEYS = ("format", "version", "conditions", *PROVENANCE, NOTES)


@dataclass(frozen=True)
class Conditions:
    """What inference must reproduce of training (recorded by `train`, read by the editor and evaluate)."""

    model: ModelConfig  # the base model whose UNet the k/v weights belong to
    resolution: int  # side of the training images and of M
    adapter_scale: float  # the SPEC's lambda in E_hat = E + adapter_scale * beta * A(E)
    parts: tuple[str, ...]  # the face parts whose union is M
    mask_backend: str  # what made the training masks: annotations | bisenet | mesh
    latent_factor: int  # M_latent = M pooled over latent_factor x latent_factor cells

    def __post_init__(self):
        """Each field's type and range (TypeError / ValueError naming `conditions.<field>`): what `train` records
        is checked before a run, and what an artifact says before anything is loaded at it."""
        check_fields(self, "conditions", skip=("resolution", "adapter_scale", "latent_factor"))
        if not isinstance(self.model, ModelConfig):
            raise TypeError(f"conditions.model must be a ModelConfig, got {self.model!r}")
        _check_model_names(self.model)
        lo, hi = RESOLUTION_RANGE
        check_number("conditions.resolution", self.resolution, lo, hi, whole=True)
        if self.resolution % VAE_FACTOR:
            raise ValueError(
                f"conditions.resolution must be a multiple of {VAE_FACTOR} (the VAE's factor), got {self.resolution}"
            )
        check_number("conditions.adapter_scale", self.adapter_scale, *ADAPTER_SCALE_RANGE)
        object.__setattr__(self, "adapter_scale", float(self.adapter_scale))
        bad = [p for p in self.parts if not isinstance(p, str) or p not in FACE_PARTS]
        if bad or not self.parts:
            raise ValueError(
                f"conditions.parts must be a non-empty list of face parts ({', '.join(FACE_PARTS)}), "
                f"got {list(self.parts)!r:.200}"
            )
        object.__setattr__(self, "parts", tuple(self.parts))
        if self.mask_backend not in MASK_BACKENDS:
            raise ValueError(f"conditions.mask_backend must be one of {MASK_BACKENDS}, got {self.mask_backend!r:.80}")
        check_number("conditions.latent_factor", self.latent_factor, *LATENT_FACTOR_RANGE, whole=True)
        if self.resolution % self.latent_factor:
            raise ValueError(
                f"conditions.latent_factor must divide conditions.resolution ({self.resolution}), "
                f"got {self.latent_factor}"
            )

    def as_dict(self) -> dict:
        return {**asdict(self), "parts": list(self.parts)}

    def canonical(self) -> bytes:
        """The conditions as canonical JSON (sorted keys, no spaces, ASCII): what the version digest covers."""
        text = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
        return text.encode("ascii")

    @classmethod
    def from_dict(cls, d, where: str = "the artifact's info") -> Conditions:
        """The conditions `d` (facepaint.json's `conditions`) checked (see `__post_init__`), or ArtifactError
        starting with `where` (the file) and naming the key: an unknown or missing one, or a bad value."""
        names = [f.name for f in dataclasses.fields(cls)]
        if not isinstance(d, dict):
            raise ArtifactError(f"{where}: conditions must be a mapping of {', '.join(names)}, got {d!r:.80}")
        unknown = sorted(map(str, set(d) - set(names)))
        if unknown:
            raise ArtifactError(
                f"{where}: unknown key(s) {', '.join(f'conditions.{k}' for k in unknown)}; conditions has "
                f"{', '.join(names)}: the file was edited or made by another facepaint version"
            )
        missing = [n for n in names if n not in d]
        if missing:
            raise ArtifactError(
                f"{where}: conditions lacks {', '.join(missing)}: the artifact was made by another facepaint "
                f"version; retrain it (`dvc repro train`)"
            )
        try:
            return cls(
                model=settings(ModelConfig, d["model"], "conditions.model"),
                resolution=d["resolution"],
                adapter_scale=d["adapter_scale"],
                parts=d["parts"],
                mask_backend=d["mask_backend"],
                latent_factor=d["latent_factor"],
            )
        except (TypeError, ValueError) as e:
            said = str(e)
            if said.startswith("model."):  # ModelConfig's own checks name the params.yaml section
                said = f"conditions.{said}"
            raise ArtifactError(f"{where}: {said}") from None


def _check_model_names(model: ModelConfig) -> None:
    """What ModelConfig's own checks leave open, for a base model an artifact names: a pretrained model is named
    (a hub id or a directory, without control characters), a revision is a name, a variant a word like fp16."""
    texts = {"pretrained": model.pretrained, "revision": model.revision}
    for key, text in texts.items():
        if text is not None and (len(text) > MAX_TEXT or any(ord(c) < 32 or ord(c) == 127 for c in text)):
            raise ValueError(
                f"conditions.model.{key} must be a name or path of at most {MAX_TEXT} printable characters, "
                f"got {text!r:.80}"
            )
    if model.source == "pretrained" and not model.pretrained.strip():
        raise ValueError(
            f"conditions.model.pretrained must name the base model (source: pretrained), got {model.pretrained!r}"
        )
    if model.revision is not None and not model.revision.strip():
        raise ValueError("conditions.model.revision must be a revision's name or null, got ''")
    if model.variant is not None and not VARIANT.fullmatch(model.variant):
        raise ValueError(f"conditions.model.variant must be null or a word like fp16, got {model.variant!r:.80}")


class ArtifactError(FacepaintError):
    """An artifact directory that cannot be used; the message names the file and what to do."""


def is_kv(name: str) -> bool:
    """A cross-attention key/value projection parameter (the only trainable part of the UNet)."""
    return name.endswith(KV_SUFFIXES)


def kv_parameters(unet) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in unet.named_parameters() if is_kv(n)}


def freeze_all_but_kv(unet) -> dict[str, torch.nn.Parameter]:
    """Freeze the UNet except every `attn2.to_k` / `attn2.to_v`; return those parameters."""
    unet.requires_grad_(False)
    kv = kv_parameters(unet)
    if not kv:
        raise ValueError("this UNet has no cross-attention attn2.to_k / attn2.to_v projections")
    for p in kv.values():
        p.requires_grad_(True)
    return kv


@dataclass
class Artifact:
    kv: dict[str, torch.Tensor]
    adapter: dict[str, torch.Tensor]
    info: dict
    path: Path | None = None

    @property
    def conditions(self) -> Conditions:
        """The conditions training ran under (see the module docstring): the one accessor inference uses."""
        where = f"{self.path / INFO_FILE}" if self.path else "the artifact's info"
        return Conditions.from_dict(self.info.get("conditions"), where)

    @property
    def version(self) -> str:
        return self.info["version"]

    def make_adapter(self) -> FaceAdapter:
        dim = self.adapter["w1.weight"].shape[1]
        adapter = FaceAdapter(dim)
        adapter.load_state_dict(self.adapter)
        return adapter.eval().requires_grad_(False)


def version_digest(kv: bytes, adapter: bytes, conditions: Conditions) -> str:
    """The artifact's version: 12 hex digits of the SHA-256 of the two weight files' bytes and the conditions'
    canonical JSON (`Conditions.canonical`), each preceded by its length. Another weight or another condition is
    another version; facepaint.json's layout (indentation, key order) and its provenance are not part of it."""
    h = hashlib.sha256()
    for part in (kv, adapter, conditions.canonical()):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()[:12]


# ------------------------------------------------------------------------------------ facepaint.json


def check_info(info, where: str) -> Conditions:
    """facepaint.json's content `info` checked against its schema (the module docstring): its conditions, or
    ArtifactError starting with `where` (the file), naming the key and what is expected. Reads no weights."""
    if not isinstance(info, dict):
        raise ArtifactError(f"{where} holds {type(info).__name__}, not the artifact's description")
    fmt = info.get("format")
    if type(fmt) is not int or fmt != FORMAT:
        raise ArtifactError(
            f"{where}: format {fmt!r:.40}, this facepaint reads format {FORMAT}: "
            f"retrain it with this version (`dvc repro train`)"
        )
    unknown = sorted(map(str, set(info) - set(INFO_KEYS)))
    if unknown:
        raise ArtifactError(
            f"{where}: unknown key(s) {', '.join(unknown)}; facepaint.json has {', '.join(INFO_KEYS)} (the "
            f"conditions inference reads are under conditions): the file was edited or is not facepaint's"
        )
    missing = [k for k in ("version", "conditions") if k not in info]
    if missing:
        raise ArtifactError(f"{where} lacks {', '.join(missing)}: the file was edited or is not facepaint's")
    version = info["version"]
    if not isinstance(version, str) or not re.fullmatch(r"[0-9a-f]{12}", version):
        raise ArtifactError(f"{where}: version must be 12 hex digits (the artifact's digest), got {version!r:.40}")
    conditions = Conditions.from_dict(info["conditions"], where)
    try:
        for key in ("train", "data", "masks", NOTES):
            if key in info and not isinstance(info[key], dict):
                raise ValueError(f"{key} must be a mapping, got {info[key]!r:.80}")
        data = info.get("data") or {}
        if "version" in data and not isinstance(data["version"], str):
            raise ValueError(f"data.version must be a string, got {data['version']!r:.80}")
        if "images" in data:
            check_number("data.images", data["images"], 0, whole=True)
        if "steps" in info:
            check_number("steps", info["steps"], 0, whole=True)
        if info.get("final_loss") is not None:  # null: no loss was logged, or it was not finite
            check_number("final_loss", info["final_loss"])
    except ValueError as e:
        raise ArtifactError(f"{where}: {e}") from None
    return conditions


def read_info(file: str | os.PathLike) -> dict:
    """facepaint.json's content, parsed as strict JSON, or ArtifactError naming the file: a file larger than
    MAX_INFO_BYTES, not UTF-8, not JSON, with NaN or Infinity (which JSON has no literal for: the key is named)
    or a key given twice. Not yet checked against the schema (`check_info`)."""
    f = Path(file)

    def refuse(why: str):
        return ArtifactError(
            f"model artifact file {f} is unreadable ({why}): the artifact is corrupt, was edited or was not "
            f"completely copied; copy it again or retrain it (`dvc repro train`)"
        )

    try:
        with open(f, "rb") as stream:
            raw = stream.read(MAX_INFO_BYTES + 1)
    except OSError as e:
        raise refuse(f"{type(e).__name__}: {e}") from None
    if len(raw) > MAX_INFO_BYTES:
        raise refuse(f"over {MAX_INFO_BYTES} bytes, when a facepaint.json is a few kB")
    constants = []

    def constant(literal: str):
        constants.append(literal)
        return _NonJSON(literal)

    def unique(pairs):
        keys = [k for k, _ in pairs]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice:
            raise ValueError(f"key {twice[0]!r} given twice")
        return dict(pairs)

    try:
        info = json.loads(raw.decode("utf-8"), parse_constant=constant, object_pairs_hook=unique)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise refuse(f"{type(e).__name__}: {e}") from None
    if constants:
        where = _path_to(info, _NonJSON) or "a value"
        raise refuse(f"{where} is {constants[0]}, which JSON has no literal for: a number must be finite")
    return info


class _NonJSON(str):
    """A NaN or Infinity literal as Python's json reads it (parse_constant), so that its key can be named."""


def _path_to(value, kind, path: str = "") -> str | None:
    """The key path (conditions.adapter_scale, parts[2]) of the first `kind` instance inside `value`, or None."""
    if isinstance(value, kind):
        return path
    if isinstance(value, dict):
        items = ((f"{path}.{k}" if path else str(k), v) for k, v in value.items())
    elif isinstance(value, list):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for where, item in items:
        found = _path_to(item, kind, where)
        if found is not None:
            return found
    return None


def _jsonable(value):
    """`value` (save_artifact's `extra`) as strict JSON values: a NaN or infinite float becomes null (JSON has no
    literal for it, and facepaint.json is read strictly), tuples lists; anything else as json's default=str."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def save_artifact(
    path: str | os.PathLike, unet, adapter: FaceAdapter, conditions: Conditions, extra: dict | None = None
) -> Artifact:
    """Write the artifact directory atomically (see the module docstring); `extra`: more JSON-able
    provenance: `PROVENANCE` keys (training params, data version, ...) are recorded as they are, any other under
    `notes`. A NaN or infinite number in it is written as null. What is written passes `check_info`."""
    unet = getattr(unet, "_orig_mod", unet)  # torch.compile wrapper
    kv = {n: p.detach().float().cpu().contiguous() for n, p in kv_parameters(unet).items()}
    ad = {k: v.detach().float().cpu().contiguous() for k, v in adapter.state_dict().items()}
    extra = _jsonable(dict(extra or {}))
    taken = [k for k in ("format", "version", "conditions") if k in extra]
    if taken:
        raise ValueError(f"save_artifact: extra must not set {', '.join(taken)} (the artifact's own keys)")
    notes = {k: v for k, v in extra.items() if k not in PROVENANCE}
    with atomic_dir(path) as tmp:
        save_file(kv, str(tmp / KV_FILE), metadata={"format": str(WEIGHTS_FORMAT)})
        save_file(ad, str(tmp / ADAPTER_FILE), metadata={"format": str(WEIGHTS_FORMAT)})
        info = {
            "format": FORMAT,
            "version": version_digest((tmp / KV_FILE).read_bytes(), (tmp / ADAPTER_FILE).read_bytes(), conditions),
            "conditions": conditions.as_dict(),
            **{k: v for k, v in extra.items() if k in PROVENANCE},
            **({NOTES: notes} if notes else {}),
        }
        text = json.dumps(info, indent=2, default=str, allow_nan=False) + "\n"
        check_info(json.loads(text), str(Path(path) / INFO_FILE))  # what is written loads
        (tmp / INFO_FILE).write_text(text)
    return Artifact(kv, ad, info, Path(path))


def load_artifact(path: str | os.PathLike) -> Artifact:
    """The artifact directory `path`, checked: facepaint.json against its schema first (`check_info`: nothing
    else is read before), then the weight files, then the recorded version against their digest and the
    conditions'. ArtifactError naming the file (and the key) otherwise."""
    path = Path(path)
    if not path.is_dir():
        raise ArtifactError(
            f"model artifact {path} is not a directory: train one with `dvc repro train` "
            f"or pass the directory the train stage wrote (data/model)"
        )
    missing = [f for f in (KV_FILE, ADAPTER_FILE, INFO_FILE) if not (path / f).is_file()]
    if missing:
        raise ArtifactError(
            f"model artifact {path} lacks {', '.join(missing)}; it is not a facepaint artifact "
            f"or was not completely copied"
        )
    info = read_info(path / INFO_FILE)
    conditions = check_info(info, str(path / INFO_FILE))  # before any weights are read

    def read(name: str) -> tuple[bytes, dict[str, torch.Tensor]]:
        try:
            raw = (path / name).read_bytes()
            return raw, load_weights(raw)
        except Exception as e:  # OSError, safetensors_rust.SafetensorError (derives from Exception only)
            raise ArtifactError(
                f"model artifact file {path / name} is unreadable ({type(e).__name__}: {e}): the artifact is "
                f"corrupt or was not completely copied; copy it again or retrain it (`dvc repro train`)"
            ) from None

    kv_raw, kv = read(KV_FILE)
    adapter_raw, adapter = read(ADAPTER_FILE)
    if version_digest(kv_raw, adapter_raw, conditions) != info["version"]:
        raise ArtifactError(
            f"model artifact {path}: {KV_FILE}, {ADAPTER_FILE} and the conditions in {INFO_FILE} do not match the "
            f"version {info['version']!r} that {INFO_FILE} records (their digest): a weight file is corrupt or "
            f"was replaced, or {INFO_FILE} was edited. Copy the artifact again or retrain it (`dvc repro train`)"
        )
    if set(adapter) != {"w1.weight", "w2.weight"}:
        raise ArtifactError(f"{path / ADAPTER_FILE} holds {sorted(adapter)}, expected w1.weight and w2.weight")
    return Artifact(kv, adapter, info, path)


def read_conditions(path: str | os.PathLike) -> Conditions:
    """The conditions of the artifact at `path` from its description alone (no weights read), facepaint.json
    checked as `load_artifact` checks it: what an app shows before the model loads, and how a registry release
    is checked when it is fetched. ArtifactError as `load_artifact` gives for a missing, unreadable or invalid
    file (the version is checked against the weights only when they load)."""
    f = Path(path) / INFO_FILE
    if not f.is_file():
        raise ArtifactError(f"model artifact {path} lacks {INFO_FILE}; it is not a facepaint artifact")
    return check_info(read_info(f), str(f))


def apply_artifact(components: Components, artifact: Artifact) -> FaceAdapter:
    """Load the artifact's k/v weights into `components.unet` (in place) and return its adapter."""
    unet = components.unet
    own = kv_parameters(unet)
    if set(own) != set(artifact.kv):
        only_art = sorted(set(artifact.kv) - set(own))[:3]
        only_unet = sorted(set(own) - set(artifact.kv))[:3]
        raise ArtifactError(
            f"the artifact's k/v weights do not fit the base UNet {components.name} "
            f"(artifact only: {only_art}, UNet only: {only_unet}): was it trained on another base model?"
        )
    with torch.no_grad():
        for name, p in own.items():
            w = artifact.kv[name]
            if w.shape != p.shape:
                raise ArtifactError(f"{name}: artifact shape {tuple(w.shape)}, base UNet {tuple(p.shape)}")
            p.copy_(w.to(p.dtype))
    te_dim = getattr(getattr(components.text_encoder, "config", None), "hidden_size", None)
    adapter = artifact.make_adapter()
    if te_dim is not None and te_dim != adapter.dim:
        raise ArtifactError(f"the artifact's adapter is {adapter.dim}-wide, the text encoder {te_dim}-wide")
    return adapter
