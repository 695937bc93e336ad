"""MSaGAN: a spatial-attention GAN for one face attribute, trained with a guide-mask loss (SPEC section 6.2).

SaGAN (Zhang et al., ECCV 2018) edits a 128 px face towards a target value of one attribute with two generator
networks: an attribute manipulation network (the photo and the target value in, an attribute image out) and a
spatial attention network (the photo in, a mask b out); the output is b x attribute image + (1 - b) x photo, so
pixels outside the attention stay the photo's. Its discriminator judges real/fake (a WGAN-GP critic) and
classifies the attribute. MSaGAN merges the generator into one editing network whose encoder and decoder counts
are its ExDy variants and adds a loss between the attention mask and a guide mask, the union of the attribute
region's CelebAMask-HQ part masks (Mouth_Slightly_Open: upper lip, mouth, lower lip):

- E2D2: an encoder and a decoder each for the attribute image and the mask (SaGAN's generator);
- E2D1: two encoders (photo + target; photo), their features concatenated, one decoder of 3 + 1 channels;
- E1D2: one encoder (photo + target), two decoders (attribute image; mask);
- E1D1: one encoder, one decoder of 3 + 1 channels.

Encoder: a 7x7 convolution to 32 channels, three 4x4 stride-2 convolutions to 256 (instance norm, ReLU), four
residual blocks (batch norm); decoder: three 4x4 stride-2 transposed convolutions back to 32, a 7x7 one to the
output (tanh for the image, sigmoid for the mask): SaGAN's networks as its public PyTorch reimplementation
(elvisyjlin/SpatialAttentionGAN) builds them. Discriminator: six 4x4 stride-2 convolutions (32 to 1024,
LeakyReLU 0.2), a 3x3 critic head and a 2x2 sigmoid attribute head.

Losses (`losses`), with x the photo, c its attribute (0/1), c' = 1 - c the target:
- critic: mean D(G(x, c')) - mean D(x) + lambda_gp x the gradient penalty on random interpolates, plus the
  attribute's binary cross-entropy on real photos;
- generator: -mean D(G(x, c')) + cross-entropy of the fake's attribute towards c' + lambda_cycle x L1(G(G(x, c'),
  c), x) + lambda_self x L1(G(x, c), x) + lambda_mask x the mask loss;
- the mask loss (`mask_loss`), on the attention masks of the edit and of the edit-then-restore pass: `sde`, the set
  difference error mean(max(guide - b, 0)) (MSaGAN's choice: it penalises the part of the guide mask the attention
  leaves out, so a too small mask grows; our reading of its equation); `mae`, `mse` (its ablation); `none`.
SaGAN's code's values: Adam 2e-4 (0.5, 0.999), 3 critic steps per generator step, lambda_gp 10, lambda_cycle 20,
lambda_self 100, the classification weights 1. The MSaGAN publication's own loss weights are not in our copy:
lambda_mask is [ours] (`gan.lambda_mask`).

Weights start as SaGAN's code starts them, N(0, 0.02) with zero biases (`init: sagan`), or from PyTorch's defaults
(`init: pytorch`, the demo's: on its 40 drawings the critic's attribute head learns sooner and generalises
better, 85% against 75% held-out accuracy after 150 steps). The evaluation's MSaGAN (methods/msagan_edit.py)
edits the pairs whose prompt asks for the attribute (`asks_for`, PROMPT_WORDS).

Training (`train_gan`) is deterministic on a CPU given its seed and resumes bit-identically from a checkpoint:
all randomness (weights, batch order, interpolation weights) comes from one torch.Generator whose state is saved.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from facepaint.common.checks import MAX_SEED, check_fields, check_number

VARIANTS = ("E1D1", "E1D2", "E2D1", "E2D2")
MASK_LOSSES = ("sde", "mae", "mse", "none")
INITS = ("sagan", "pytorch")
# The face parts whose union is an attribute's guide mask. Mouth_Slightly_Open is the publication's; the others
# are [ours] (the region a change of that attribute touches).
GUIDE_PARTS = {
    "Mouth_Slightly_Open": ("u_lip", "mouth", "l_lip"),
    "Smiling": ("u_lip", "mouth", "l_lip"),
    "Eyeglasses": ("eye_g", "l_eye", "r_eye"),
    "Blond_Hair": ("hair",),
}
# The words of an evaluation prompt that ask for the attribute (whole words, any case): the evaluation's MSaGAN
# edits the pairs whose prompt has one (facepaint.data.captions.eval_prompt writes "smiling", "glasses", "blond").
PROMPT_WORDS = {
    "Mouth_Slightly_Open": ("open mouth", "mouth open", "mouth slightly open", "parted lips"),
    "Smiling": ("smiling", "smile", "smiles"),
    "Eyeglasses": ("glasses", "eyeglasses", "spectacles"),
    "Blond_Hair": ("blond", "blonde"),
}


def asks_for(prompt: str, attribute: str) -> bool:
    """Whether `prompt` asks for `attribute` (one of PROMPT_WORDS' phrases as whole words)."""
    import re

    return any(re.search(rf"\b{re.escape(w)}\b", prompt, re.IGNORECASE) for w in PROMPT_WORDS[attribute])


@dataclass
class GanConfig:  # params.yaml `gan`
    attribute: str  # the one attribute it edits (GUIDE_PARTS)
    variant: str  # E1D1 | E1D2 | E2D1 | E2D2 (SaGAN's structure)
    mask_loss: str  # sde (MSaGAN's) | mae | mse | none (SaGAN)
    lambda_mask: float  # [ours]
    lambda_cycle: float  # SaGAN's code: 20
    lambda_self: float  # SaGAN's code: 100
    lambda_gp: float  # 10
    lambda_cls: float  # 1
    d_iters: int  # critic steps per generator step (3)
    lr: float  # 2e-4
    beta1: float  # 0.5
    beta2: float  # 0.999
    image_size: int  # 128
    channels: int  # the first layer's channels, doubled at each stride (SaGAN's code: 32; the demo's fewer)
    batch_size: int  # 16
    epochs: int  # 8
    max_steps: int | None  # generator steps; overrides epochs when set (the demo's)
    checkpoint_every: int  # generator steps between checkpoints (0: only at the end)
    seed: int
    init: str  # sagan: N(0, 0.02) weights, zero biases (SaGAN's code) | pytorch: PyTorch's default initialisation
    device: str

    SPEED_KNOBS = ("device", "checkpoint_every")

    def __post_init__(self):
        check_fields(self, "gan")
        if self.attribute not in GUIDE_PARTS:
            raise ValueError(f"gan.attribute must be one of {sorted(GUIDE_PARTS)}, got {self.attribute!r}")
        if self.variant not in VARIANTS:
            raise ValueError(f"gan.variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.mask_loss not in MASK_LOSSES:
            raise ValueError(f"gan.mask_loss must be one of {MASK_LOSSES}, got {self.mask_loss!r}")
        for name in ("lambda_mask", "lambda_cycle", "lambda_self", "lambda_gp", "lambda_cls"):
            check_number(f"gan.{name}", getattr(self, name), 0, 1e6)
        check_number("gan.lr", self.lr, 1e-8, 1)
        check_number("gan.beta1", self.beta1, 0, 0.999999)
        check_number("gan.beta2", self.beta2, 0, 0.999999)
        for name in ("d_iters", "batch_size", "epochs"):
            check_number(f"gan.{name}", getattr(self, name), 1, 1_000_000, whole=True)
        if self.image_size not in (64, 128, 256):
            raise ValueError(
                f"gan.image_size must be 64, 128 or 256 (six stride-2 critic layers), got {self.image_size}"
            )
        check_number("gan.channels", self.channels, 1, 256, whole=True)
        if self.max_steps is not None:
            check_number("gan.max_steps", self.max_steps, 1, 10_000_000, whole=True)
        check_number("gan.checkpoint_every", self.checkpoint_every, 0, 10_000_000, whole=True)
        check_number("gan.seed", self.seed, 0, MAX_SEED, whole=True)
        if self.init not in INITS:
            raise ValueError(f"gan.init must be one of {INITS}, got {self.init!r}")


# ------------------------------------------------------------------------------------------ networks


class _Residual(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(ch, ch, 3, 1, 1), nn.BatchNorm2d(ch), nn.ReLU(), nn.Conv2d(ch, ch, 3, 1, 1), nn.BatchNorm2d(ch)
        )

    def forward(self, x):
        return x + self.body(x)


def _encoder(in_ch: int, ch: int) -> nn.Sequential:
    layers = [nn.Conv2d(in_ch, ch, 7, 1, 3), nn.InstanceNorm2d(ch), nn.ReLU()]
    for _ in range(3):
        layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1), nn.InstanceNorm2d(ch * 2), nn.ReLU()]
        ch *= 2
    return nn.Sequential(*layers, *(_Residual(ch) for _ in range(4)))


def _decoder(in_ch: int, out_ch: int, width: int) -> nn.Sequential:
    layers, ch = [], in_ch
    for out in (width * 4, width * 2, width):
        layers += [nn.ConvTranspose2d(ch, out, 4, 2, 1), nn.InstanceNorm2d(out), nn.ReLU()]
        ch = out
    return nn.Sequential(*layers, nn.ConvTranspose2d(ch, out_ch, 7, 1, 3))


class Generator(nn.Module):
    """The editing network of `variant`: (photo in [-1, 1] (B, 3, S, S), target (B,) in {0, 1}) -> (the edited
    photo = b x attribute image + (1 - b) x photo, the attention mask b (B, 1, S, S) in [0, 1])."""

    def __init__(self, variant: str = "E2D2", channels: int = 32):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        self.variant = variant
        two_enc, two_dec = variant[1] == "2", variant[3] == "2"
        self.enc_a = _encoder(4, channels)  # photo + the target as a constant plane
        self.enc_m = _encoder(3, channels) if two_enc else None  # photo only: where to edit (SaGAN's SAN)
        feat = channels * 8 * (2 if two_enc else 1)
        if two_dec:
            self.dec_a, self.dec_m = _decoder(feat, 3, channels), _decoder(feat, 1, channels)
        else:
            self.dec = _decoder(feat, 4, channels)

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        plane = target.to(x.dtype).view(-1, 1, 1, 1).expand(-1, 1, *x.shape[-2:])
        h = self.enc_a(torch.cat([x, plane], 1))
        if self.enc_m is not None:
            h = torch.cat([h, self.enc_m(x)], 1)
        if self.variant[3] == "2":
            attr, logit = self.dec_a(h), self.dec_m(h)
        else:
            attr, logit = self.dec(h).split([3, 1], 1)
        attr, b = torch.tanh(attr), torch.sigmoid(logit)
        return attention_blend(attr, b, x), b


def attention_blend(attribute_image: torch.Tensor, b: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """SaGAN's output: b x attribute image + (1 - b) x photo."""
    return b * attribute_image + (1 - b) * x


class Discriminator(nn.Module):
    """(B, 3, S, S) -> (the critic's scores (B, 1, S/64, S/64), the attribute's probability (B,))."""

    def __init__(self, image_size: int = 128, channels: int = 32):
        super().__init__()
        layers, ch = [], 3
        for out in (channels * 2**k for k in range(6)):
            layers += [nn.Conv2d(ch, out, 4, 2, 1), nn.LeakyReLU(0.2)]
            ch = out
        self.body = nn.Sequential(*layers)
        self.critic = nn.Conv2d(ch, 1, 3, 1, 1)
        self.cls = nn.Conv2d(ch, 1, image_size // 64, 1, 0)

    def forward(self, x):
        h = self.body(x)
        return self.critic(h), torch.sigmoid(self.cls(h)).flatten()


def networks(cfg: GanConfig) -> tuple[Generator, Discriminator]:
    """The untrained generator and critic of `cfg`, initialised from `cfg.seed` (`cfg.init`)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        G, D = Generator(cfg.variant, cfg.channels), Discriminator(cfg.image_size, cfg.channels)
        if cfg.init == "sagan":
            G.apply(init_weights)
            D.apply(init_weights)
    return G, D


def init_weights(module: nn.Module) -> None:
    """N(0, 0.02) convolutions, zero biases (SaGAN's code)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        nn.init.zeros_(module.bias)


# --------------------------------------------------------------------------------------------- losses


def mask_loss(kind: str, b: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
    """The attention mask `b` against the guide mask (both (B, 1, S, S) in [0, 1]): `sde` mean(max(guide - b, 0)),
    `mae` mean|guide - b|, `mse` mean((guide - b)^2), `none` 0."""
    if kind == "sde":
        return (guide - b).clamp(min=0).mean()
    if kind == "mae":
        return (guide - b).abs().mean()
    if kind == "mse":
        return ((guide - b) ** 2).mean()
    if kind == "none":
        return b.new_zeros(())
    raise ValueError(f"mask loss must be one of {MASK_LOSSES}, got {kind!r}")


def gradient_penalty(D: Discriminator, real, fake, alpha) -> torch.Tensor:
    mix = ((1 - alpha) * real + alpha * fake).requires_grad_(True)
    out, _ = D(mix)
    (grad,) = torch.autograd.grad(out.sum(), mix, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def critic_loss(G, D, cfg: GanConfig, x, c, alpha) -> tuple[torch.Tensor, dict]:
    with torch.no_grad():
        fake, _ = G(x, 1 - c)
    d_real, p_real = D(x)
    d_fake, _ = D(fake)
    wasserstein = d_fake.mean() - d_real.mean()
    cls = F.binary_cross_entropy(p_real, c)
    gp = gradient_penalty(D, x, fake, alpha)
    loss = wasserstein + cfg.lambda_cls * cls + cfg.lambda_gp * gp
    return loss, {"d_wasserstein": wasserstein.item(), "d_cls": cls.item(), "d_gp": gp.item()}


def generator_loss(G, D, cfg: GanConfig, x, c, guide) -> tuple[torch.Tensor, dict]:
    fake, b = G(x, 1 - c)
    restored, b_back = G(fake, c)
    same, _ = G(x, c)
    d_fake, p_fake = D(fake)
    adv = -d_fake.mean()
    cls = F.binary_cross_entropy(p_fake, 1 - c)
    cycle = F.l1_loss(restored, x)
    self_rec = F.l1_loss(same, x)
    m = mask_loss(cfg.mask_loss, b, guide) + mask_loss(cfg.mask_loss, b_back, guide)
    loss = adv + cfg.lambda_cls * cls + cfg.lambda_cycle * cycle + cfg.lambda_self * self_rec + cfg.lambda_mask * m
    return loss, {"g_adv": adv.item(), "g_cls": cls.item(), "g_cycle": cycle.item(), "g_self": self_rec.item(),
                  "g_mask": m.item()}  # fmt: skip


# ---------------------------------------------------------------------------------------------- training


@dataclass
class GanData:
    """The training set in memory: photos (N, 3, S, S) in [-1, 1], attribute (N,) in {0, 1}, guide (N, 1, S, S)."""

    x: torch.Tensor
    c: torch.Tensor
    guide: torch.Tensor


def checkpoint_path(folder: str | os.PathLike) -> Path:
    return Path(folder) / "gan-checkpoint.pt"


def fingerprint(data: GanData) -> str:
    """SHA-256 of the training tensors."""
    import hashlib

    h = hashlib.sha256()
    for t in (data.x, data.c, data.guide):
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def _state(G, D, g_opt, d_opt, step: int, gen: torch.Generator, order: torch.Tensor, pos: int, key: dict) -> dict:
    return {"G": G.state_dict(), "D": D.state_dict(), "g_opt": g_opt.state_dict(), "d_opt": d_opt.state_dict(),
            "step": step, "rng": gen.get_state(), "order": order, "pos": pos, "config": key}  # fmt: skip


def train_gan(
    data: GanData,
    cfg: GanConfig,
    checkpoints: str | os.PathLike | None = None,
    stop_after: int | None = None,
    progress: bool = True,
    log=None,
) -> tuple[Generator, Discriminator, int]:
    """Train (or resume from `checkpoints`' checkpoint, when its config matches) for max_steps generator steps
    (else epochs x N / batch). `stop_after`: stop after that many steps of this call (a simulated interruption).
    `log(step, losses)` gets each step's losses. Returns (G, D, the steps done in all)."""
    from tqdm.auto import tqdm

    n = len(data.x)
    if n < cfg.batch_size:
        raise ValueError(f"gan: {n} training images, fewer than gan.batch_size ({cfg.batch_size})")
    total = cfg.max_steps or max(1, cfg.epochs * n // (cfg.batch_size * cfg.d_iters))
    device = torch.device("cpu" if cfg.device in ("auto", "cpu") and not torch.cuda.is_available() else
                          ("cuda" if cfg.device == "auto" else cfg.device))  # fmt: skip
    gen = torch.Generator().manual_seed(cfg.seed)
    G, D = networks(cfg)
    G, D = G.to(device), D.to(device)
    g_opt = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    d_opt = torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    step, order, pos = 0, torch.randperm(n, generator=gen), 0
    ckpt = checkpoint_path(checkpoints) if checkpoints else None
    key = {**asdict(cfg), "data": fingerprint(data)}  # a checkpoint resumes only the same settings and data
    if ckpt is not None and ckpt.is_file():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        if state["config"] == key:
            G.load_state_dict(state["G"])
            D.load_state_dict(state["D"])
            g_opt.load_state_dict(state["g_opt"])
            d_opt.load_state_dict(state["d_opt"])
            step, order, pos = state["step"], state["order"], state["pos"]
            gen.set_state(state["rng"])

    def batch():
        nonlocal order, pos
        if pos + cfg.batch_size > n:
            order, pos = torch.randperm(n, generator=gen), 0
        idx = order[pos : pos + cfg.batch_size]
        pos += cfg.batch_size
        return data.x[idx].to(device), data.c[idx].to(device), data.guide[idx].to(device)

    G.train()
    D.train()
    done_here = 0
    bar = tqdm(total=total, initial=step, desc=f"gan ({cfg.variant}, {cfg.mask_loss})", unit="step",
               disable=not progress)  # fmt: skip
    while step < total and (stop_after is None or done_here < stop_after):
        for _ in range(cfg.d_iters):
            x, c, _ = batch()
            alpha = torch.rand(len(x), 1, 1, 1, generator=gen).to(device)
            d_loss, d_logs = critic_loss(G, D, cfg, x, c, alpha)
            d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            d_opt.step()
        x, c, guide = batch()
        for p in D.parameters():
            p.requires_grad_(False)
        g_loss, g_logs = generator_loss(G, D, cfg, x, c, guide)
        g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        g_opt.step()
        for p in D.parameters():
            p.requires_grad_(True)
        step += 1
        done_here += 1
        bar.update()
        if log is not None:
            log(step, {**d_logs, **g_logs})
        if ckpt is not None and (step == total or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0)):
            save_checkpoint(_state(G, D, g_opt, d_opt, step, gen, order, pos, key), ckpt)
    if ckpt is not None and (stop_after is not None):
        save_checkpoint(_state(G, D, g_opt, d_opt, step, gen, order, pos, key), ckpt)
    bar.close()
    return G, D, step


def save_checkpoint(state: dict, path: Path) -> None:
    from facepaint.common.io import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


@torch.no_grad()
def attribute_accuracy(D: Discriminator, x: torch.Tensor, c: torch.Tensor, batch: int = 64) -> float:
    """The critic's attribute head on real photos: the fraction classified right (probability > 0.5)."""
    D.eval()
    dev = next(D.parameters()).device
    p = torch.cat([D(x[i : i + batch].to(dev))[1].cpu() for i in range(0, len(x), batch)])
    return float(((p > 0.5).float() == c).float().mean())


def to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    """uint8 (S, S, 3) images -> (N, 3, S, S) float in [-1, 1]."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1


# -------------------------------------------------------------------------------------------- the data


def load_gan_data(root, ids, attributes, cfg: GanConfig) -> tuple[GanData, list[tuple[int, str]]]:
    """The photos of `ids` (a CelebAMask-HQ `root` or Dataset) at `cfg.image_size`, their attribute (0/1) and
    guide masks (the union of GUIDE_PARTS[attribute]'s part masks; an absent part is empty, as in CelebAMask-HQ
    where a closed mouth has no mouth file). Returns the data and (id, why) for each photo it could not read."""
    from facepaint.common.images import ImageError, load_mask, load_rgb, resize_binary, resize_rgb
    from facepaint.data import celebamask
    from facepaint.data.faces import as_dataset

    ds = as_dataset(root)
    if ds.layout != "celebamask":
        raise ValueError("MSaGAN trains on CelebA attributes: data.layout must be celebamask")
    s, parts = cfg.image_size, GUIDE_PARTS[cfg.attribute]
    images, labels, guides, skipped = [], [], [], []
    for i in ids:
        try:
            image = resize_rgb(load_rgb(ds.image_path(i)).image, s)
            guide = np.zeros((s, s), bool)
            for part in parts:
                path = celebamask.part_mask_path(ds.root, i, part)
                if path.is_file():
                    guide |= resize_binary(load_mask(path), s)
        except ImageError as e:
            skipped.append((int(i), str(e)))
            continue
        images.append(image)
        labels.append(float(attributes.loc[i, cfg.attribute] == 1))
        guides.append(guide)
    if not images:
        return GanData(torch.zeros(0, 3, s, s), torch.zeros(0), torch.zeros(0, 1, s, s)), skipped
    guide_t = torch.from_numpy(np.stack(guides)).float()[:, None]
    return GanData(to_tensor(images), torch.tensor(labels), guide_t), skipped
