"""Face-focused fine-tuning (SPEC section 3): only the UNet's cross-attention k/v and the face-aware
text adapter learn, under the mask-weighted noise-prediction loss.

One training step, for a global batch of B cached training images:
1. per image: a horizontal flip with p = flip_p (the cache holds both flips' latents), and one of its
   ~10 caption candidates;
2. t ~ U{0..T-1}, eps ~ N(0, I); z_t = the base model's DDPM schedule applied to the image latent;
3. UNet input = [z_t, M_latent, masked-image latent] (9 channels, diffusers' inpainting order);
4. E = frozen CLIP(caption), E_hat = E + adapter_scale * beta * A(E)  (facepaint.method.adapter.condition);
5. loss = mean((M_latent + alpha) * (eps_theta - eps)^2)       (facepaint.method.loss.masked_mse);
6. AdamW, two parameter groups (k/v at lr_kv, adapter at lr_adapter), grad-norm clipping.

Reproducibility and resume. Every random draw of step s (flips, captions, timesteps, noise, caption
dropout) comes from a generator seeded by (seed, s), drawn on the CPU for the whole global batch, and
the image order of epoch e from a generator seeded by (seed, e). So a run resumed from the checkpoint
of step s draws exactly what the uninterrupted run drew, on any device and any number of processes;
together with the restored weights, AdamW state and LR schedule, the resumed run ends bit-identical
to an uninterrupted one on the same hardware (tested with a real SIGKILL). A checkpoint also keeps
the global torch RNG state, for anything else that draws from it.

Checkpoints are directories `step-NNNNNNNN/` written atomically (temp dir, then rename):
`trainable.safetensors` (k/v + adapter, fp32), `optimizer.pt` and `lr_scheduler.pt` (loaded with
torch.load(weights_only=True)), `rng.pt`, `state.json` (step, the fingerprint of params + data + base
model, the log so far, the sha256 of each other file). A checkpoint whose fingerprint differs from the
current run's (params or data changed) is not resumed from; the run starts fresh and says so. One that
does not read back whole (a truncated or corrupt file, a digest that differs) is removed with a warning
naming the file, and the one before it is resumed from (`keep_checkpoints` >= 2 keeps one to fall back
on). We write these ourselves rather than use accelerate's save_state because that saves the whole
3.4 GB UNet and unpickles its RNG file.

Multi-GPU: the same code runs under `accelerate launch` (DDP). The global batch is split across
processes; each process takes its slice of the same per-step draws.

Speed knobs (params; bench/train.py measures each on and off, facepaint.method.speed explains them):
mixed precision (bf16/fp16 autocast; the frozen text encoder runs in that dtype), `half_frozen` (the
frozen UNet weights stored in that dtype: same result as autocast's casts, half the memory), SDPA
attention, channels_last, fused AdamW, torch.compile, gradient checkpointing (memory for speed), and
`cache_on_device`: the latent cache (~2.7 GB at the full 20,000-image, 512 px scale) lives on the GPU,
so a batch is gathered there by index with no host-to-device copy of latents. Captions are tokenised
once each (memoised), and the only host sync in the loop is the loss read every `log_every` steps.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from facepaint.common.checks import MAX_SEED, check_fields, check_number
from facepaint.common.errors import FacepaintError
from facepaint.common.io import atomic_dir
from facepaint.method.adapter import FaceAdapter, condition
from facepaint.method.artifact import Conditions, freeze_all_but_kv, kv_parameters, save_artifact
from facepaint.method.loss import WEIGHTINGS, masked_mse
from facepaint.method.models import Components, ModelConfig
from facepaint.method.speed import (
    check_attention,
    compile_mode,
    compiled,
    half_frozen,
    set_attention,
    to_channels_last,
)

log = logging.getLogger("facepaint.train")

PRECISIONS = ("no", "fp16", "bf16")
# diffusers.optimization.SchedulerType's names (checked here without importing diffusers; a test compares them)
LR_SCHEDULERS = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "piecewise_constant",
)


@dataclass
class TrainConfig:  # params.yaml `train`
    batch_size: int  # global batch (split across processes under accelerate launch)
    epochs: int
    max_steps: int | None  # when set, overrides epochs
    lr_kv: float
    lr_adapter: float
    weight_decay: float
    adam_beta1: float
    adam_beta2: float
    adam_eps: float
    max_grad_norm: float
    lr_scheduler: str  # a diffusers.optimization scheduler name (constant, cosine, ...)
    warmup_steps: int
    alpha: float  # background weight of the loss
    loss_weighting: str  # masked: w = M_latent + alpha (the SPEC) | uniform: w = 1 (the plain-MSE ablation)
    adapter_scale: float  # the SPEC's lambda
    flip_p: float
    caption_dropout: float  # probability of an empty caption (keeps CFG sharp; the SPEC uses none)
    mixed_precision: str  # no | fp16 | bf16; the CPU always trains in fp32
    gradient_checkpointing: bool
    compile: bool | str  # false | true (= "default") | a torch.compile mode, see facepaint.method.speed
    attention: str  # sdpa | classic
    channels_last: bool
    half_frozen: bool  # frozen UNet weights in the autocast dtype (with mixed precision on a GPU)
    fused_adamw: bool  # on CUDA
    cache_on_device: bool  # the latent cache on the training device (GPU)
    checkpoint_every: int  # steps; 0 = only at the end
    keep_checkpoints: int
    log_every: int
    seed: int

    # Settings that change speed and memory, not what is learned (up to float rounding): a checkpoint
    # made with other values of these is still resumed from, and the stage does not rerun for them.
    SPEED_KNOBS: ClassVar[tuple[str, ...]] = (
        "compile",
        "gradient_checkpointing",
        "attention",
        "channels_last",
        "half_frozen",
        "fused_adamw",
        "cache_on_device",
    )
    # When checkpoints are written: changes neither the weights nor the logged curve.
    CHECKPOINTING: ClassVar[tuple[str, ...]] = ("checkpoint_every", "keep_checkpoints")

    def __post_init__(self):
        check_fields(self, "train")
        if self.loss_weighting not in WEIGHTINGS:
            raise ValueError(f"train.loss_weighting must be one of {WEIGHTINGS}, got {self.loss_weighting!r}")
        if self.mixed_precision not in PRECISIONS:
            raise ValueError(f"train.mixed_precision must be one of {PRECISIONS}, got {self.mixed_precision!r}")
        for name in ("batch_size", "epochs", "log_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"train.max_steps must be >= 1 or null, got {self.max_steps}")
        if not 0 <= self.flip_p <= 1 or not 0 <= self.caption_dropout <= 1:
            raise ValueError("train.flip_p and train.caption_dropout are probabilities in [0, 1]")
        for name in ("warmup_steps", "checkpoint_every"):
            check_number(f"train.{name}", getattr(self, name), 0, whole=True)
        check_number("train.seed", self.seed, 0, MAX_SEED, whole=True)
        # learning rates and AdamW's ranges (torch would refuse them only once the model has loaded), alpha, lambda
        for name in ("lr_kv", "lr_adapter", "weight_decay", "adam_eps", "alpha", "adapter_scale"):
            check_number(f"train.{name}", getattr(self, name), 0)
        for name in ("adam_beta1", "adam_beta2"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise ValueError(f"train.{name} must be in [0, 1), got {value}")
        check_number("train.max_grad_norm", self.max_grad_norm, 0)  # 0: no clipping
        if self.lr_scheduler not in LR_SCHEDULERS:
            raise ValueError(f"train.lr_scheduler must be one of {LR_SCHEDULERS}, got {self.lr_scheduler!r}")
        try:
            self.compile = compile_mode(self.compile)
            check_attention(self.attention)
        except ValueError as e:
            raise ValueError(f"train.{e}") from None

    def fingerprint_fields(self) -> dict:
        """What changes the trained weights (not logging/checkpoint cadence or speed-only knobs)."""
        d = asdict(self)
        for k in (*self.CHECKPOINTING, "log_every", *self.SPEED_KNOBS):
            d.pop(k)
        return d


# ------------------------------------------------------------------------------------------- data


@dataclass
class TrainData:
    """The latent cache and captions of the training images, in host memory."""

    ids: torch.Tensor  # (N,) int64
    latents: torch.Tensor  # (N, 2 flips, 4, h, w) fp16
    masked_latents: torch.Tensor  # (N, 2, 4, h, w) fp16
    latent_mask: torch.Tensor  # (N, 1, h, w) uint8, unflipped
    beta: torch.Tensor  # (N,) float32
    captions: list[list[str]]  # candidates per image
    resolution: int
    version: str  # digest of the cache index and the captions
    masks: dict  # the settings that made the masks (facepaint.data.masks.mask_metadata, via the cache's index)

    def __len__(self):
        return len(self.ids)


def _generator(*key) -> torch.Generator:
    """A CPU generator seeded from a tuple key, e.g. (seed, "step", 12): independent streams."""
    digest = hashlib.sha256(repr(key).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


@functools.lru_cache(maxsize=2)
def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The image order of `epoch` (computed once per epoch, not once per step; do not modify it)."""
    return torch.randperm(n, generator=_generator(seed, "epoch", epoch))


@dataclass
class StepDraws:
    """Every random choice of one step, for the whole global batch."""

    index: torch.Tensor  # (B,) rows of TrainData
    flip: torch.Tensor  # (B,) bool
    caption: list[str]
    timesteps: torch.Tensor  # (B,) int64
    noise: torch.Tensor  # (B, 4, h, w) float32


def draw_step(data: TrainData, cfg: TrainConfig, step: int, steps_per_epoch: int, num_timesteps: int) -> StepDraws:
    epoch, k = divmod(step, steps_per_epoch)
    index = epoch_order(len(data), cfg.seed, epoch)[k * cfg.batch_size : (k + 1) * cfg.batch_size]
    g = _generator(cfg.seed, "step", step)
    b = len(index)
    flip = torch.rand(b, generator=g) < cfg.flip_p
    pick = torch.rand(b, generator=g)
    drop = torch.rand(b, generator=g) < cfg.caption_dropout
    timesteps = torch.randint(0, num_timesteps, (b,), generator=g)
    noise = torch.randn((b, *data.latents.shape[2:]), generator=g)
    captions = []
    for i, p, d in zip(index.tolist(), pick.tolist(), drop.tolist()):
        cands = data.captions[i]
        captions.append("" if d else cands[min(int(p * len(cands)), len(cands) - 1)])
    return StepDraws(index, flip, captions, timesteps, noise)


# ------------------------------------------------------------------------------------------ model


class FaceModel(nn.Module):
    """The trainable system: the UNet (k/v trainable) and the adapter; one module so DDP wraps both."""

    def __init__(self, unet, adapter: FaceAdapter, adapter_scale: float):
        super().__init__()
        self.unet, self.adapter, self.adapter_scale = unet, adapter, adapter_scale

    def forward(self, x, timesteps, embeddings, beta):
        e_hat = condition(embeddings, beta, self.adapter, self.adapter_scale)
        return self.unet(x, timesteps, encoder_hidden_states=e_hat).sample

    def trainable_state(self) -> dict[str, torch.Tensor]:
        state = {f"unet.{n}": p for n, p in kv_parameters(self.unet).items()}
        state.update({f"adapter.{n}": p for n, p in self.adapter.named_parameters()})
        return state


def trainable_counts(unet, adapter: FaceAdapter) -> dict[str, int]:
    kv = sum(p.numel() for p in unet.parameters() if p.requires_grad)
    ad = sum(p.numel() for p in adapter.parameters() if p.requires_grad)
    return {
        "kv": kv,
        "adapter": ad,
        "total": kv + ad,
        "frozen": sum(p.numel() for p in unet.parameters() if not p.requires_grad),
    }


def setup_trainable(components: Components, seed: int) -> tuple[FaceAdapter, dict[str, int]]:
    """Freeze everything but the UNet k/v; build the adapter at the text encoder's width, its W1
    initialised from `seed` (not from whatever state the global RNG is in)."""
    freeze_all_but_kv(components.unet)
    if components.vae is not None:
        components.vae.requires_grad_(False)
    components.text_encoder.requires_grad_(False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        adapter = FaceAdapter(components.text_encoder.config.hidden_size)
    return adapter, trainable_counts(components.unet, adapter)


# ---------------------------------------------------------------------------------------- one step


def autocast_dtype(mixed_precision: str) -> torch.dtype | None:
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(mixed_precision)


def build_model(
    components: Components, cfg: TrainConfig, device, amp_dtype: torch.dtype | None = None
) -> tuple[FaceModel, dict[str, int]]:
    """The FaceModel on `device`, only k/v and the adapter trainable, with cfg's speed knobs applied
    (attention, gradient checkpointing, half_frozen when `amp_dtype` is the autocast dtype, channels_last)."""
    adapter, counts = setup_trainable(components, cfg.seed)
    unet = components.unet
    set_attention(unet, cfg.attention)
    if cfg.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()
    model = FaceModel(unet, adapter, cfg.adapter_scale).to(device)
    if cfg.half_frozen and amp_dtype is not None:
        half_frozen(unet, amp_dtype)
    if cfg.channels_last:
        to_channels_last(model)
    return model, counts


def build_optimizer(model: FaceModel, cfg: TrainConfig, device, total_steps: int):
    """AdamW with two parameter groups (k/v at lr_kv, adapter at lr_adapter) and its LR schedule.
    Build it after the model is on its device: fused AdamW needs the parameters there."""
    from diffusers.optimization import get_scheduler

    groups = [
        {"params": [p for p in model.unet.parameters() if p.requires_grad], "lr": cfg.lr_kv},
        {"params": list(model.adapter.parameters()), "lr": cfg.lr_adapter},
    ]
    fused = {"fused": True} if (cfg.fused_adamw and torch.device(device).type == "cuda") else {}
    optimizer = torch.optim.AdamW(
        groups, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_eps, weight_decay=cfg.weight_decay, **fused
    )
    lr_scheduler = get_scheduler(
        cfg.lr_scheduler, optimizer, num_warmup_steps=cfg.warmup_steps, num_training_steps=total_steps
    )
    return optimizer, lr_scheduler


@dataclass
class StepBatch:
    """One step's inputs on the training device."""

    latents: torch.Tensor  # (b, 4, h, w) float32, the drawn flip
    masked: torch.Tensor  # (b, 4, h, w) float32
    mask: torch.Tensor  # (b, 1, h, w) float32 M_latent, flipped with the image
    beta: torch.Tensor  # (b,)
    timesteps: torch.Tensor  # (b,) int64
    noise: torch.Tensor  # (b, 4, h, w) float32
    input_ids: torch.Tensor  # (b, 77) int64 caption tokens


class Batches:
    """StepDraws -> StepBatch. The latent cache is moved to the device once (`on_device`; else it is
    pinned on a GPU machine) and gathered there by index; each caption is tokenised once (memoised:
    the ~10 captions of an image come back every epoch)."""

    def __init__(self, data: TrainData, tokenizer, device, on_device: bool = True):
        self.device = torch.device(device)
        cuda = self.device.type == "cuda"
        cache = {"lat": data.latents, "masked": data.masked_latents, "mask": data.latent_mask, "beta": data.beta}
        if on_device:
            self.tensors = {k: v.to(self.device) for k, v in cache.items()}
        else:
            self.tensors = {k: v.pin_memory() if cuda else v for k, v in cache.items()}
        self.tokenizer, self._ids = tokenizer, {}

    def tokens(self, captions: list[str]) -> torch.Tensor:
        tok = self.tokenizer
        for c in captions:
            if c not in self._ids:
                self._ids[c] = tok(
                    c, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt"
                ).input_ids[0]
        return torch.stack([self._ids[c] for c in captions]).to(self.device, non_blocking=True)

    def __call__(self, d: StepDraws, rows: slice = slice(None)) -> StepBatch:
        """The slice `rows` of the global batch drawn in `d` (a process's share under DDP)."""
        dev, t = self.device, self.tensors
        src = t["lat"].device
        idx, flip = d.index[rows].to(src), d.flip[rows].to(src)
        which = flip.long()
        m = t["mask"][idx].to(dev, non_blocking=True).float()
        m = torch.where(flip.to(dev).view(-1, 1, 1, 1), m.flip(-1), m)
        return StepBatch(
            latents=t["lat"][idx, which].to(dev, non_blocking=True).float(),
            masked=t["masked"][idx, which].to(dev, non_blocking=True).float(),
            mask=m,
            beta=t["beta"][idx].to(dev, non_blocking=True),
            timesteps=d.timesteps[rows].to(dev),
            noise=d.noise[rows].to(dev, non_blocking=True),
            input_ids=self.tokens(d.caption[rows]),
        )


def step_loss(model, text_encoder, noise_sched, b: StepBatch, cfg: TrainConfig, autocast=contextlib.nullcontext):
    """Steps 2-5 of the module docstring: noise, the 9-channel input, E_hat, the mask-weighted loss.
    `autocast`: a context manager factory (accelerate's Accelerator.autocast, or torch.autocast bound)."""
    noisy = noise_sched.add_noise(b.latents, b.noise, b.timesteps)
    if noise_sched.config.prediction_type == "v_prediction":
        a = noise_sched.alphas_cumprod.to(b.timesteps.device)[b.timesteps].view(-1, 1, 1, 1)
        target = a.sqrt() * b.noise - (1 - a).sqrt() * b.latents
    else:
        target = b.noise
    with torch.no_grad():
        emb = text_encoder(b.input_ids)[0].float()
    x = torch.cat([noisy, b.mask, b.masked], dim=1)
    if cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast():
        pred = model(x, b.timesteps, emb, b.beta)
    return masked_mse(pred, target, b.mask, cfg.alpha, cfg.loss_weighting)


# ------------------------------------------------------------------------------------- checkpoints


def _checkpoints(ckpt_dir: Path) -> list[Path]:
    if not ckpt_dir.is_dir():
        return []
    return sorted(p for p in ckpt_dir.glob("step-*") if (p / "state.json").is_file())


CHECKPOINT_FILES = ("trainable.safetensors", "optimizer.pt", "lr_scheduler.pt", "rng.pt")  # and state.json


class CheckpointError(FacepaintError):
    """A checkpoint that does not read back whole; the message names the file."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _torch_save(obj, path: Path) -> None:
    # through a Python file: torch.save(obj, path) reports a full disk as "unexpected pos", with no errno
    with open(path, "wb") as f:
        torch.save(obj, f)


def save_checkpoint(
    ckpt_dir: Path,
    step: int,
    model: FaceModel,
    optimizer,
    lr_scheduler,
    fingerprint: str,
    history: list[dict],
    keep: int,
) -> Path:
    path = ckpt_dir / f"step-{step:08d}"
    with atomic_dir(path) as tmp:
        save_file(
            {k: v.detach().float().cpu().contiguous() for k, v in model.trainable_state().items()},
            str(tmp / "trainable.safetensors"),
        )
        _torch_save(optimizer.state_dict(), tmp / "optimizer.pt")
        _torch_save(lr_scheduler.state_dict(), tmp / "lr_scheduler.pt")
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        _torch_save(rng, tmp / "rng.pt")
        state = {"step": step, "fingerprint": fingerprint, "history": history}
        state["sha256"] = {name: _sha256(tmp / name) for name in CHECKPOINT_FILES}
        (tmp / "state.json").write_text(json.dumps(state))
    for old in _checkpoints(ckpt_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return path


def read_checkpoint(path: Path) -> dict:
    """Every file of the checkpoint at `path`, read and checked against the digests in its state.json; a
    CheckpointError naming the file that is missing, truncated or corrupt."""

    def read(name: str, load):
        try:
            return load(path / name)
        except Exception as e:  # json, safetensors and torch each raise their own kinds
            raise CheckpointError(f"checkpoint file {path / name} is unreadable ({type(e).__name__}: {e})") from e

    def state_of(f: Path) -> dict:
        state = json.loads(f.read_text())
        missing = [k for k in ("step", "fingerprint", "history") if k not in state]
        if missing:
            raise KeyError(f"no {', '.join(missing)}")
        return state

    state = read("state.json", state_of)
    for name, digest in (state.get("sha256") or {}).items():  # checkpoints made before digests have none
        if read(name, _sha256) != digest:
            raise CheckpointError(
                f"checkpoint file {path / name} is corrupt or truncated: its sha256 differs from the one "
                f"{path / 'state.json'} recorded when it was written"
            )
    return {
        "state": state,
        "weights": read("trainable.safetensors", lambda f: load_file(str(f))),
        "optimizer": read("optimizer.pt", lambda f: torch.load(f, map_location="cpu", weights_only=True)),
        "lr_scheduler": read("lr_scheduler.pt", lambda f: torch.load(f, weights_only=True)),
        "rng": read("rng.pt", lambda f: torch.load(f, weights_only=True)),
    }


def load_checkpoint(path: Path, model: FaceModel, optimizer, lr_scheduler) -> tuple[int, list[dict]]:
    ckpt = read_checkpoint(path)  # all of it, before anything is changed
    weights = ckpt["weights"]
    own = model.trainable_state()
    if set(weights) != set(own):
        raise RuntimeError(f"checkpoint {path} holds other parameters than this model; delete it to start fresh")
    with torch.no_grad():
        for k, p in own.items():
            p.copy_(weights[k].to(p.device, p.dtype))
    optimizer.load_state_dict(ckpt["optimizer"])
    lr_scheduler.load_state_dict(ckpt["lr_scheduler"])
    rng = ckpt["rng"]
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return ckpt["state"]["step"], ckpt["state"]["history"]


def find_resumable(ckpt_dir: Path, fingerprint: str) -> Path | None:
    """The newest checkpoint made with the same fingerprint that reads back whole. An unreadable one is
    removed with a warning naming its bad file, and the one before it is tried (the resumed run repeats the
    steps in between, drawing exactly what they drew). When the newest readable one was made with another
    fingerprint, all are stale and removed."""
    found = _checkpoints(ckpt_dir)
    for path in reversed(found):
        try:
            state = read_checkpoint(path)["state"]
        except CheckpointError as e:
            log.warning("%s; removing checkpoint %s and resuming from the one before it, if any", e, path.name)
            shutil.rmtree(path, ignore_errors=True)
            continue
        if state["fingerprint"] == fingerprint:
            return path
        break
    else:
        return None
    log.warning("checkpoints in %s were made with other params, data or base model; starting fresh", ckpt_dir)
    for p in found:
        shutil.rmtree(p, ignore_errors=True)
    return None


# ------------------------------------------------------------------------------------------- train


@dataclass
class TrainResult:
    artifact: object  # facepaint.method.artifact.Artifact (None on non-main processes)
    history: list[dict] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)


def _accelerator(cfg: TrainConfig, device: str):
    from accelerate import Accelerator

    cpu = device == "cpu" or not torch.cuda.is_available()
    return Accelerator(cpu=cpu, mixed_precision="no" if cpu else cfg.mixed_precision)


def conditions(model: ModelConfig, data: TrainData, cfg: TrainConfig) -> Conditions:
    """What the artifact records for inference: the base model, the data's resolution and masks, and the
    adapter scale this run trains with."""
    m = data.masks
    return Conditions(
        model=model,
        resolution=data.resolution,
        adapter_scale=cfg.adapter_scale,
        parts=tuple(m["parts"]),
        mask_backend=m["backend"],
        latent_factor=int(m["latent_factor"]),
    )


def train(
    components: Components,
    data: TrainData,
    cfg: TrainConfig,
    trained_with: Conditions,
    out_dir,
    ckpt_dir,
    device: str = "auto",
    progress: bool = True,
    stop_after: int | None = None,
) -> TrainResult:
    """Fine-tune and write the artifact (recording `trained_with`, see `conditions`) to `out_dir`; resume
    from `ckpt_dir` when it holds a checkpoint of the same run. `stop_after` ends the run after that many
    steps of this call (tests)."""
    from diffusers import DDPMScheduler

    # 1. Check the run and size it
    out_dir, ckpt_dir = Path(out_dir), Path(ckpt_dir)
    if trained_with.resolution != data.resolution or trained_with.adapter_scale != cfg.adapter_scale:
        raise ValueError(
            f"conditions {trained_with} do not match the data ({data.resolution} px) or "
            f"train.adapter_scale ({cfg.adapter_scale}): build them with facepaint.method.train.conditions"
        )
    acc = _accelerator(cfg, device)
    world = acc.num_processes
    if cfg.batch_size % world:
        raise ValueError(f"train.batch_size ({cfg.batch_size}) must be divisible by the number of processes ({world})")
    steps_per_epoch = len(data) // cfg.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"only {len(data)} training images for a batch of {cfg.batch_size}: lower train.batch_size")
    total = cfg.max_steps or cfg.epochs * steps_per_epoch

    # 2. The model on its device (fused AdamW needs it there before the optimizer is built), the optimizer
    noise_sched = DDPMScheduler.from_config(components.scheduler.config)
    amp = autocast_dtype(acc.mixed_precision)
    model, counts = build_model(components, cfg, acc.device, amp)
    te = components.text_encoder
    optimizer, lr_scheduler = build_optimizer(model, cfg, acc.device, total)

    # 3. Resume from a checkpoint of this very run (same params, data, base model and processes)
    fingerprint = run_fingerprint(cfg, trained_with, data, world)
    start, history = _resume(acc, ckpt_dir, fingerprint, model, optimizer, lr_scheduler, total)
    model, optimizer = acc.prepare(model, optimizer)
    model = compiled(model, cfg.compile, dynamic=None)
    dev = acc.device
    te.to(dev, amp or torch.float32).eval()
    batches = Batches(data, components.tokenizer, dev, on_device=cfg.cache_on_device)
    local = cfg.batch_size // world
    sl = slice(acc.process_index * local, (acc.process_index + 1) * local)
    end = total if stop_after is None else min(total, start + stop_after)

    def checkpoint(step: int) -> None:
        model_ = acc.unwrap_model(model)
        save_checkpoint(ckpt_dir, step, model_, optimizer, lr_scheduler, fingerprint, history, cfg.keep_checkpoints)

    # 4. The steps
    bar = tqdm(total=total, initial=start, desc="train", unit="step", disable=not (progress and acc.is_main_process))
    running, t_last, n_since = torch.zeros((), device=dev), time.perf_counter(), 0
    for step in range(start, end):
        d = draw_step(data, cfg, step, steps_per_epoch, noise_sched.config.num_train_timesteps)
        loss = step_loss(model, te, noise_sched, batches(d, sl), cfg, acc.autocast)
        acc.backward(loss)
        if cfg.max_grad_norm:
            acc.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], cfg.max_grad_norm)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        running += loss.detach()
        n_since += 1
        done = step + 1
        if done % cfg.log_every == 0 or done == end:
            mean_loss = acc.reduce(running / n_since, reduction="mean").item()  # the only host sync
            now = time.perf_counter()
            lrs = lr_scheduler.get_last_lr()
            history.append(
                {
                    "step": done,
                    "epoch": round(done / steps_per_epoch, 4),
                    "loss": mean_loss,
                    "lr_kv": lrs[0],
                    "lr_adapter": lrs[1],
                    "samples_per_s": n_since * cfg.batch_size / (now - t_last),
                    "step_time_s": (now - t_last) / n_since,
                }
            )
            bar.set_postfix(loss=f"{mean_loss:.4f}", sps=f"{history[-1]['samples_per_s']:.1f}")
            running.zero_()
            t_last, n_since = now, 0
        bar.update(1)
        if cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < total:
            acc.wait_for_everyone()
            if acc.is_main_process:
                checkpoint(done)
    bar.close()
    acc.wait_for_everyone()
    if end < total:  # stopped early on request: leave a checkpoint to resume from
        if acc.is_main_process:
            checkpoint(end)
        return TrainResult(None, history)

    # 5. The artifact (the checkpoints of a completed run are no longer needed)
    final = acc.unwrap_model(model)
    final = getattr(final, "_orig_mod", final)
    return _finish(acc, final, data, cfg, trained_with, out_dir, ckpt_dir, history, counts, total)


def run_fingerprint(cfg: TrainConfig, trained_with: Conditions, data: TrainData, world: int) -> str:
    """What makes a checkpoint resumable by this run: the params that change the weights, the base model,
    the training set's version and the number of processes."""
    run = {
        "train": cfg.fingerprint_fields(),
        "model": asdict(trained_with.model),
        "data": data.version,
        "world": world,
    }
    return hashlib.sha256(json.dumps(run, sort_keys=True).encode()).hexdigest()[:16]


def _resume(acc, ckpt_dir: Path, fingerprint: str, model, optimizer, lr_scheduler, total: int):
    """(first step, history so far): from the checkpoint the main process chose (every process loads it), or
    (0, []) when there is none of this run."""
    resume = find_resumable(ckpt_dir, fingerprint) if acc.is_main_process else None
    acc.wait_for_everyone()
    if acc.num_processes > 1:  # every process resumes from the checkpoint the main process chose
        from accelerate.utils import broadcast_object_list

        resume = broadcast_object_list([resume])[0]
    if resume is None:
        return 0, []
    start, history = load_checkpoint(resume, model, optimizer, lr_scheduler)
    if acc.is_main_process:
        log.info("resuming from %s (step %d of %d)", resume, start, total)
    return start, history


def _finish(acc, final, data, cfg, trained_with, out_dir, ckpt_dir, history, counts, total) -> TrainResult:
    """Write the artifact of a completed run of `total` steps (main process), remove its checkpoints, end the
    run."""
    steps_per_epoch = len(data) // cfg.batch_size
    tail = [r["loss"] for r in history[-5:]]
    metrics = {
        "steps": total,
        "epochs": round(total / steps_per_epoch, 3),
        "train_images": len(data),
        "final_loss": sum(tail) / len(tail) if tail else math.nan,
        "samples_per_s": _median([r["samples_per_s"] for r in history]),
        "trainable_parameters": counts,
        "processes": acc.num_processes,
    }
    artifact = None
    if acc.is_main_process:
        artifact = save_artifact(
            out_dir,
            final.unet,
            final.adapter,
            trained_with,
            extra={
                "train": asdict(cfg),
                "data": {"version": data.version, "images": len(data)},
                "masks": data.masks,
                "steps": total,
                "final_loss": metrics["final_loss"],
            },
        )
        for p in _checkpoints(ckpt_dir):  # the run is complete; its checkpoints are no longer needed
            shutil.rmtree(p, ignore_errors=True)
    acc.wait_for_everyone()
    acc.end_training()
    return TrainResult(artifact, history, metrics)


def _median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else math.nan


def history_frame(history: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(
        history, columns=["step", "epoch", "loss", "lr_kv", "lr_adapter", "samples_per_s", "step_time_s"]
    )
