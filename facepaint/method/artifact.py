"""The trained artifact: what fine-tuning changed, and the conditions inference must reproduce.

A directory with
- `kv.safetensors`       every UNet cross-attention `attn2.to_k` / `attn2.to_v` weight (fp32),
- `adapter.safetensors`  the face-aware text adapter (`w1.weight`, `w2.weight`),
- `facepaint.json`       `conditions` (below), the training params and data version, and `version`: a
                         digest of the two weight files (the model version everything else names).

`conditions` is everything inference must do as training did: the base model (a `model` params
section that `models.load_components` rebuilds), the training resolution, adapter_scale (the SPEC's
lambda), the face parts and mask backend that made M, and the latent factor. Settings training does not
depend on are not recorded: the soft mask's sigma is a sampling option (facepaint.method.options), and an
older artifact's recorded `sigma` is ignored.
`Artifact.conditions` is the one accessor the editor and the evaluation read them through; an
artifact without them (an older format) is refused with a message, never filled in with defaults.

About 80 MB for SD1.5 (19.2M + 1.2M fp32 parameters) instead of the 3.4 GB UNet. `apply_artifact`
loads it into base components; the frozen rest of the UNet is the base model's own.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from facepaint.common.errors import FacepaintError
from facepaint.common.io import atomic_dir
from facepaint.method.adapter import FaceAdapter
from facepaint.method.models import Components, ModelConfig

FORMAT = 2  # of facepaint.json (2: `conditions`)
WEIGHTS_FORMAT = 1  # of the two safetensors files (their bytes make the version digest, so it stays put)
KV_FILE, ADAPTER_FILE, INFO_FILE = "kv.safetensors", "adapter.safetensors", "facepaint.json"
KV_SUFFIXES = ("attn2.to_k.weight", "attn2.to_v.weight", "attn2.to_k.bias", "attn2.to_v.bias")


@dataclass(frozen=True)
class Conditions:
    """What inference must reproduce of training (recorded by `train`, read by the editor and evaluate)."""

    model: ModelConfig  # the base model whose UNet the k/v weights belong to
    resolution: int  # side of the training images and of M
    adapter_scale: float  # the SPEC's lambda in E_hat = E + adapter_scale * beta * A(E)
    parts: tuple[str, ...]  # the face parts whose union is M
    mask_backend: str  # what made the training masks: annotations | bisenet | mesh
    latent_factor: int  # M_latent = M pooled over latent_factor x latent_factor cells

    def as_dict(self) -> dict:
        return {**asdict(self), "parts": list(self.parts)}

    @classmethod
    def from_dict(cls, d: dict, where: str = "conditions") -> Conditions:
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in d]
        if missing:
            raise ArtifactError(
                f"{where} lacks {', '.join(missing)}: the artifact was made by another facepaint "
                f"version; retrain it (`dvc repro train`)"
            )
        return cls(
            model=ModelConfig(**d["model"]),
            resolution=int(d["resolution"]),
            adapter_scale=float(d["adapter_scale"]),
            parts=tuple(d["parts"]),
            mask_backend=str(d["mask_backend"]),
            latent_factor=int(d["latent_factor"]),
        )


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
        return Conditions.from_dict(self.info.get("conditions") or {}, f"{where}: conditions")

    @property
    def version(self) -> str:
        return self.info["version"]

    def make_adapter(self) -> FaceAdapter:
        dim = self.adapter["w1.weight"].shape[1]
        adapter = FaceAdapter(dim)
        adapter.load_state_dict(self.adapter)
        return adapter.eval().requires_grad_(False)


def _digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()[:12]


def save_artifact(
    path: str | os.PathLike, unet, adapter: FaceAdapter, conditions: Conditions, extra: dict | None = None
) -> Artifact:
    """Write the artifact directory atomically (see the module docstring); `extra`: more JSON-able
    provenance (training params, data version)."""
    unet = getattr(unet, "_orig_mod", unet)  # torch.compile wrapper
    kv = {n: p.detach().float().cpu().contiguous() for n, p in kv_parameters(unet).items()}
    ad = {k: v.detach().float().cpu().contiguous() for k, v in adapter.state_dict().items()}
    with atomic_dir(path) as tmp:
        save_file(kv, str(tmp / KV_FILE), metadata={"format": str(WEIGHTS_FORMAT)})
        save_file(ad, str(tmp / ADAPTER_FILE), metadata={"format": str(WEIGHTS_FORMAT)})
        info = {
            "format": FORMAT,
            "version": _digest(tmp / KV_FILE, tmp / ADAPTER_FILE),
            "conditions": conditions.as_dict(),
            **(extra or {}),
        }
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=2, default=str) + "\n")
    return Artifact(kv, ad, info, Path(path))


def load_artifact(path: str | os.PathLike) -> Artifact:
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

    def read(name: str, load):
        try:
            return load(path / name)
        except Exception as e:  # json's errors, safetensors_rust.SafetensorError (derives from Exception only)
            raise ArtifactError(
                f"model artifact file {path / name} is unreadable ({type(e).__name__}: {e}): the artifact is "
                f"corrupt or was not completely copied; copy it again or retrain it (`dvc repro train`)"
            ) from None

    info = read(INFO_FILE, lambda f: json.loads(f.read_text()))
    if not isinstance(info, dict):
        raise ArtifactError(f"{path / INFO_FILE} holds {type(info).__name__}, not the artifact's description")
    kv = read(KV_FILE, lambda f: load_file(str(f)))
    adapter = read(ADAPTER_FILE, lambda f: load_file(str(f)))
    if info.get("version") is not None and _digest(path / KV_FILE, path / ADAPTER_FILE) != info["version"]:
        raise ArtifactError(
            f"model artifact {path}: {KV_FILE} and {ADAPTER_FILE} do not match the version {info['version']!r} "
            f"that {INFO_FILE} records (their digest): a weight file is corrupt or was replaced. Copy the "
            f"artifact again or retrain it (`dvc repro train`)"
        )
    if info.get("format") != FORMAT:
        raise ArtifactError(
            f"{path / INFO_FILE}: format {info.get('format')!r}, this facepaint reads format {FORMAT}: "
            f"retrain it with this version (`dvc repro train`)"
        )
    if set(adapter) != {"w1.weight", "w2.weight"}:
        raise ArtifactError(f"{path / ADAPTER_FILE} holds {sorted(adapter)}, expected w1.weight and w2.weight")
    artifact = Artifact(kv, adapter, info, path)
    _ = artifact.conditions  # refuse an artifact whose conditions are incomplete now, not at the first edit
    return artifact


def read_conditions(path: str | os.PathLike) -> Conditions:
    """The conditions of the artifact at `path` from its description alone (no weights read): what an app
    shows before the model loads. ArtifactError as `load_artifact` gives for a missing or unreadable file."""
    f = Path(path) / INFO_FILE
    try:
        info = json.loads(f.read_text())
    except (OSError, ValueError) as e:
        raise ArtifactError(f"model artifact file {f} is unreadable ({type(e).__name__}: {e})") from None
    if not isinstance(info, dict) or not isinstance(info.get("conditions"), dict):
        raise ArtifactError(f"{f} does not describe a facepaint artifact (no conditions)")
    return Conditions.from_dict(info["conditions"], where=str(f))


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
