"""Blended Diffusion (Avrahami et al., CVPR 2022) as its public code runs it (omriav/blended-diffusion,
optimization/image_editor.py and arguments.py): pixel-space diffusion, no VAE, so no VAE loss anywhere.

The model: guided-diffusion's unconditional 256x256 ImageNet UNet (`guided_unet`), its linear 1000-step
schedule respaced to `timestep_respacing` steps (guided-diffusion's `space_timesteps`: evenly strided, rounded),
learned sigmas; CLIP ViT-B/16 (OpenAI's weights, through open_clip). An edit of photo x (in [-1, 1]), mask m
(the face, nearest-resized and binarised as its code does) and prompt d, for each of `batch_size` x
`iterations_num` samples:

1. x_T': the photo noised (q_sample) to step T' = steps - skip_timesteps - 1 with fresh Gaussian noise.
2. For i = T' ... 0: one UNet pass (with gradients) gives eps, the variance interpolation v and
   x0_hat = (x_i - sqrt(1 - abar_i) eps) / sqrt(abar_i); the posterior mean and learned-range variance Sigma as
   guided-diffusion's p_mean_variance (clip_denoised false). The guidance, as its cond_fn: with
   fac = sqrt(1 - abar_i), x_in = fac x0_hat + (1 - fac) x_i; loss = clip_guidance_lambda x CLIP loss(x_in x m)
   + range_lambda x sum(mean((x0_hat - clamp(x0_hat, -1, 1))^2)); the mean moves by -Sigma grad_x loss
   (condition_mean). The CLIP loss: the masked image average-pooled to CLIP's input size and tiled `aug_num`
   times, all copies but the first augmented (kornia RandomAffine(15 degrees, translate 0.1, border padding) and
   RandomPerspective(0.7), each with p 0.7: its "extending augmentations"), the spherical distance
   2 arcsin(|a - b| / 2)^2 between the normalised CLIP embeddings of each copy and of d, averaged over the copies
   of a sample and summed over samples. x_{i-1} = mean + exp(log Sigma / 2) z (no noise at i = 0).
3. Background blending after every step (its postprocess_fn): x_{i-1} <- x_{i-1} m + q_sample(x, i) (1 - m), the
   photo noised with fresh noise to step i, the step just taken (its code's level; the paper writes i - 1).
4. The result: the last step's x0_hat, the photo restored outside m (`enforce_background`, its default), cut
   to 8 bits as its code saves it (torchvision's to_pil_image: truncated, not rounded).

Its code ranks the `batch_size` x `iterations_num` results by the unaugmented CLIP distance of the masked result
(resized to CLIP's size, unnormalised, as its `unaugmented_clip_distance`); this method returns the best-ranked
([ours]: the authors rank and pick by eye). Its background-preservation loss (MSE + LPIPS outside the mask) is off
by default in its code and is not offered here.

[ours], for the comparison: the test photo (at the evaluation's resolution R) is resized to the model's size with
Lanczos, as its code resizes its input, edited, resized back to R and pixel-blended with M_soft like ours, so its
background figures are those of the same crop and blend as the other methods.

Where the library stops: diffusers' DDPMScheduler has no hook for classifier guidance on the posterior mean and
clips the first step's log variance differently from guided-diffusion, so the sampler (`Respaced`) is ours, in
float64 like guided-diffusion's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from facepaint.common.checks import MAX_SEED, check_fields, check_number
from facepaint.evaluation.methods.base import EditInput, Method, MethodUnavailable, check_input
from facepaint.evaluation.methods.guided_unet import ARCHS, GuidedCheckpointError, GuidedUNetArch, load_guided_unet
from facepaint.evaluation.methods.open_clip_model import CLIP_MEAN, CLIP_STD, clip_image_size, load_clip
from facepaint.method.blend import pixel_blend


@dataclass
class BlendedDiffusionSettings:  # params.yaml evaluate.blended_diffusion (its code's defaults there)
    timestep_respacing: int  # 100
    skip_timesteps: int  # 25
    clip_guidance_lambda: float  # 1000
    range_lambda: float  # 50
    aug_num: int  # 8
    batch_size: int  # 4
    iterations_num: int  # 8
    enforce_background: bool  # true
    model: str  # the UNet's architecture (guided_unet.ARCHS): uncond_256 (the checkpoint's) | tiny (the demo's)

    def __post_init__(self):
        check_fields(self, "evaluate.blended_diffusion")
        if self.model not in ARCHS:
            raise ValueError(f"evaluate.blended_diffusion.model must be one of {sorted(ARCHS)}, got {self.model!r}")
        n = "evaluate.blended_diffusion."
        check_number(n + "timestep_respacing", self.timestep_respacing, 2, 1000, whole=True)
        check_number(n + "skip_timesteps", self.skip_timesteps, 0, self.timestep_respacing - 1, whole=True)
        check_number(n + "clip_guidance_lambda", self.clip_guidance_lambda, 0, 1e9)
        check_number(n + "range_lambda", self.range_lambda, 0, 1e9)
        check_number(n + "aug_num", self.aug_num, 1, 256, whole=True)
        check_number(n + "batch_size", self.batch_size, 1, 64, whole=True)
        check_number(n + "iterations_num", self.iterations_num, 1, 1000, whole=True)


# ---------------------------------------------------------------------------------------------- the sampler


def space_timesteps(num_timesteps: int, count: int) -> list[int]:
    """guided-diffusion's respacing of one section: `count` steps evenly strided over [0, num_timesteps - 1],
    each rounded (the stride accumulated in floating point, as its code does)."""
    if not 1 <= count <= num_timesteps:
        raise ValueError(f"cannot take {count} of {num_timesteps} steps")
    stride = 1 if count <= 1 else (num_timesteps - 1) / (count - 1)
    cur, steps = 0.0, []
    for _ in range(count):
        steps.append(round(cur))
        cur += stride
    return steps


class Respaced:
    """guided-diffusion's linear schedule (betas 1e-4 ... 0.02 over 1000 steps) respaced to `count` steps: the
    kept steps' betas are 1 - abar_t / abar_prev, so that abar at each kept step is the original's."""

    def __init__(self, count: int, num_timesteps: int = 1000):
        betas = np.linspace(1000 / num_timesteps * 1e-4, 1000 / num_timesteps * 0.02, num_timesteps, dtype=np.float64)
        abar_full = np.cumprod(1.0 - betas)
        self.timestep_map = space_timesteps(num_timesteps, count)
        last, new = 1.0, []
        for t in self.timestep_map:
            new.append(1 - abar_full[t] / last)
            last = abar_full[t]
        b = np.array(new)
        self.betas = b
        self.abar = np.cumprod(1.0 - b)
        abar_prev = np.append(1.0, self.abar[:-1])
        self.sqrt_abar, self.sqrt_1m_abar = np.sqrt(self.abar), np.sqrt(1 - self.abar)
        self.sqrt_recip_abar, self.sqrt_recipm1_abar = np.sqrt(1 / self.abar), np.sqrt(1 / self.abar - 1)
        post_var = b * (1 - abar_prev) / (1 - self.abar)
        self.post_log_var_clipped = np.log(np.append(post_var[1], post_var[1:]))
        self.coef1 = b * np.sqrt(abar_prev) / (1 - self.abar)
        self.coef2 = (1 - abar_prev) * np.sqrt(1 - b) / (1 - self.abar)
        self.num_timesteps = count

    def q_sample(self, x0: torch.Tensor, i: int, noise: torch.Tensor) -> torch.Tensor:
        return float(self.sqrt_abar[i]) * x0 + float(self.sqrt_1m_abar[i]) * noise

    def p_mean_variance(self, unet, x: torch.Tensor, i: int) -> dict[str, torch.Tensor]:
        """The UNet's prediction at respaced step i: {mean, log_variance, variance, pred_xstart}."""
        t = torch.full((len(x),), float(self.timestep_map[i]), device=x.device)
        out = unet(x.to(unet.dtype), t).sample.float()
        eps, v = out[:, :3], out[:, 3:]
        min_log, max_log = float(self.post_log_var_clipped[i]), math.log(self.betas[i])
        frac = (v + 1) / 2
        log_var = frac * max_log + (1 - frac) * min_log
        x0 = float(self.sqrt_recip_abar[i]) * x - float(self.sqrt_recipm1_abar[i]) * eps
        mean = float(self.coef1[i]) * x0 + float(self.coef2[i]) * x
        return {"mean": mean, "log_variance": log_var, "variance": log_var.exp(), "pred_xstart": x0}


# ------------------------------------------------------------------------------------------------ CLIP


def spherical_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Its d_clip_loss: 2 arcsin(|a/|a| - b/|b|| / 2)^2, per row."""
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    return (a - b).norm(dim=-1).div(2).arcsin().pow(2).mul(2)


class Augmentations(torch.nn.Module):
    """Its ImageAugmentations: (B, 3, H, W) -> (B x n, 3, S, S): all average-pooled to S, the first B copies as
    they are, the others through kornia's RandomAffine + RandomPerspective (p 0.7 each)."""

    def __init__(self, size: int, n: int, p: float = 0.7):
        super().__init__()
        import kornia.augmentation as K

        self.n = n
        self.pool = torch.nn.AdaptiveAvgPool2d((size, size))
        self.augment = torch.nn.Sequential(
            K.RandomAffine(degrees=15, translate=0.1, p=p, padding_mode="border"), K.RandomPerspective(0.7, p=p)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tiled = self.pool(x).tile(self.n, 1, 1, 1)
        b = len(x)
        if self.n == 1:
            return tiled
        return torch.cat([tiled[:b], self.augment(tiled[b:])])


def clip_loss(clip, aug: Augmentations, x_in: torch.Tensor, mask: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """Its clip_loss: the masked images' augmented copies against the text; the mean over each sample's copies,
    summed over the samples."""
    copies = aug(x_in * mask).add(1).div(2)
    mean = torch.tensor(CLIP_MEAN, device=x_in.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x_in.device).view(1, 3, 1, 1)
    emb = clip.encode_image(((copies - mean) / std).to(_dtype(clip))).float()
    d = spherical_distance(emb, text)
    b = len(x_in)
    return sum(d[k::b].mean() for k in range(b))


def _dtype(module: torch.nn.Module) -> torch.dtype:
    return next(module.parameters()).dtype


# ---------------------------------------------------------------------------------------------- the method


def _to_tensor(image: np.ndarray, device) -> torch.Tensor:
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float().div(127.5).sub(1).to(device)


def _resize(image: np.ndarray, size: int, resample) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((size, size), resample))


class BlendedDiffusion(Method):
    name = "blended_diffusion"
    label = "Blended Diffusion"

    def __init__(self, unet, clip, tokenizer, settings: BlendedDiffusionSettings, resolution: int, device):
        self.unet, self.clip, self.tokenizer = unet, clip, tokenizer
        self.s, self.resolution, self.device = settings, resolution, torch.device(device)
        self.arch: GuidedUNetArch = ARCHS[settings.model]
        self.note = (
            f"pixel space at {self.arch.image_size} px (no VAE): the photo resized to it, edited, resized back to "
            f"{resolution} px and pixel-blended with M_soft [ours]; the best-ranked of {settings.batch_size} x "
            f"{settings.iterations_num} samples"
        )
        self.diffusion = Respaced(settings.timestep_respacing)
        self.aug = Augmentations(clip_image_size(clip), settings.aug_num)
        self.trace = None  # a list to record each step in: i, x_{i-1} before and after the blend, the blend's noise

    def modules(self):
        return [self.unet, self.clip]

    def edit(self, x: EditInput) -> np.ndarray:
        from PIL import Image

        check_input(x, self.resolution)
        size = self.arch.image_size
        photo = _resize(x.image, size, Image.LANCZOS)
        mask_img = _resize(x.mask.astype(np.uint8) * 255, size, Image.NEAREST)
        mask = torch.from_numpy(mask_img > 127).float()[None, None].to(self.device)
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(x.seed % (MAX_SEED + 1))
            edited = self.run(_to_tensor(photo, self.device), mask, x.prompt)
        # to 8 bits as its code saves the result (torchvision's to_pil_image of (x + 1) / 2 clamped: truncated)
        out = edited[0].permute(1, 2, 0).add(1).div(2).clamp(0, 1).mul(255).byte().cpu().numpy()
        back = _resize(out, self.resolution, Image.LANCZOS)
        return pixel_blend(x.image, back, x.soft)  # the blend ours uses, with M_soft

    def text_embedding(self, prompt: str) -> torch.Tensor:
        with torch.no_grad():
            return self.clip.encode_text(self.tokenizer([prompt]).to(self.device)).float()

    def run(self, init: torch.Tensor, mask: torch.Tensor, prompt: str) -> torch.Tensor:
        """The best-ranked of batch_size x iterations_num edits of `init` (1, 3, S, S) in [-1, 1]; (1, 3, S, S)."""
        text = self.text_embedding(prompt)
        best, best_d = None, math.inf
        for _ in range(self.s.iterations_num):
            results = self.sample(init, mask, text, prompt)
            for r in results:
                d = self.unaugmented_distance(r[None], mask, text)
                if d < best_d:
                    best, best_d = r[None], d
        return best

    @torch.no_grad()
    def unaugmented_distance(self, result: torch.Tensor, mask: torch.Tensor, text: torch.Tensor) -> float:
        """Its unaugmented_clip_distance: mask x the result in [0, 1] resized to CLIP's size (unnormalised)."""
        from torchvision.transforms.functional import resize

        img = mask * result.add(1).div(2).clamp(0, 1)
        size = clip_image_size(self.clip)
        emb = self.clip.encode_image(resize(img, [size, size]).to(_dtype(self.clip))).float()
        return float(spherical_distance(emb, text)[0])

    def sample(self, init: torch.Tensor, mask: torch.Tensor, text: torch.Tensor, prompt: str) -> torch.Tensor:
        """One batch of its p_sample_loop_progressive with cond_fn and the background blend; the enforced
        result (batch_size, 3, S, S)."""
        from tqdm.auto import tqdm

        s, diff, b = self.s, self.diffusion, self.s.batch_size
        init_b = init.tile(b, 1, 1, 1)
        start = diff.num_timesteps - s.skip_timesteps - 1
        x = diff.q_sample(init_b, start, torch.randn_like(init_b))
        pred = None
        for i in tqdm(range(start, -1, -1), desc="blended diffusion", unit="step", leave=False, disable=None):
            x = x.detach().requires_grad_(True)
            with torch.enable_grad():
                out = diff.p_mean_variance(self.unet, x, i)
                loss = torch.zeros((), device=x.device)
                if prompt and s.clip_guidance_lambda:
                    fac = float(diff.sqrt_1m_abar[i])
                    x_in = out["pred_xstart"] * fac + x * (1 - fac)
                    loss = loss + clip_loss(self.clip, self.aug, x_in, mask, text) * s.clip_guidance_lambda
                if prompt and s.range_lambda:
                    x0 = out["pred_xstart"]
                    loss = loss + (x0 - x0.clamp(-1, 1)).pow(2).mean([1, 2, 3]).sum() * s.range_lambda
                grad = -torch.autograd.grad(loss, x)[0] if loss.requires_grad else torch.zeros_like(x)
            with torch.no_grad():
                mean = out["mean"].detach() + out["variance"].detach() * grad
                noise = torch.randn_like(x)
                step = mean + (i != 0) * torch.exp(0.5 * out["log_variance"].detach()) * noise
                bg_noise = torch.randn_like(init_b)
                bg = diff.q_sample(init_b, i, bg_noise)  # its postprocess_fn: the photo noised to step i
                x = step * mask + bg * (1 - mask)
                if self.trace is not None:
                    self.trace.append({"i": i, "step": step.clone(), "blended": x.clone(), "noise": bg_noise.clone(),
                                       "pred_xstart": out["pred_xstart"].detach().clone()})  # fmt: skip
                pred = out["pred_xstart"].detach()
        if s.enforce_background:
            pred = init * (1 - mask) + pred * mask
        return pred


def load_blended_diffusion(
    checkpoint: str, clip_spec: str, settings: BlendedDiffusionSettings, resolution: int, device, dtype=torch.float32
) -> BlendedDiffusion:
    """Blended Diffusion with guided-diffusion's UNet from `checkpoint` (evaluate.baselines.guided_diffusion) and
    CLIP from `clip_spec` (evaluate.baselines.clip_vit_b16); MethodUnavailable when either cannot be loaded."""
    try:
        unet = load_guided_unet(checkpoint, ARCHS[settings.model], dtype)
    except GuidedCheckpointError as e:
        raise MethodUnavailable(f"Blended Diffusion's UNet: {e}") from e
    clip, tokenizer = load_clip(clip_spec, device, dtype)
    return BlendedDiffusion(unet.to(device), clip, tokenizer, settings, resolution, device)
