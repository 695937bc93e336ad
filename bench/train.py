"""Training throughput with cached latents: samples/s, peak memory and model FLOPs utilisation (MFU).

    python bench/train.py                      # CPU: scaled-down (tiny UNet, batch 4, 16x16 latents), ~1-2 min
    python bench/train.py --full               # the paper's config: full SD1.5 inpainting UNet, batch 16,
                                               # 64x64 latents (512 px); the default on a GPU. Very slow on a CPU
    python bench/train.py --variants bf16,bf16+compile     # only some variants (see VARIANTS below)
    python bench/train.py --peak-tflops 989    # the GPU's dense bf16 peak, when the table does not know it

What one step is: exactly the body of facepaint.train.train()'s loop, with its own functions: draw_step
(flip, caption, timestep and noise draws on the CPU), gathering the batch from the host cache (pinned on
CUDA) and copying it to the device, the DDPM add_noise, tokenising the captions and the frozen CLIP text
encoder forward (so the text encoder's cost IS included, as in training: the cache holds latents, not
text embeddings; its cost alone is the `text encoder only` row), FaceModel forward under autocast,
facepaint.loss.masked_mse, backward, grad-norm clipping, AdamW (two parameter groups) and
zero_grad(set_to_none=True). The cache is synthetic (random latents, masked latents, binary latent
masks, face ratios), the models have random weights (facepaint.models.sd15_random_components /
tiny_components): speed does not depend on the values. Differences from train(): no accelerate wrapper
(single process: its autocast / backward / clip_grad_norm_ are torch.autocast, loss.backward() and
torch.nn.utils.clip_grad_norm_ there) and no logging / checkpoints.

Timing: `--warmup` steps (they include torch.compile's compilation, reported as warm-up s), then `--steps`
steps between two device synchronisations; samples/s = batch x steps / time. Peak memory: CUDA's
max_memory_allocated since the variant's model was moved to the device (weights, AdamW state,
activations); n/a on a CPU (the process high-water RSS is in the json).

FLOPs: counted with torch.utils.flop_counter.FlopCounterMode on the meta device (no weights, no time),
batch 1, for the text encoder forward, the FaceModel forward and its backward (activation gradients
through the whole UNet after the first cross-attention, weight gradients only for k/v and the adapter).
Model FLOPs per sample = the three together; gradient-checkpointing's recomputation is not counted
(MFU, not hardware utilisation). MFU = FLOPs per sample x samples/s / the GPU's dense bf16 peak
(PEAK_BF16_TFLOPS; --peak-tflops overrides); n/a on a CPU. The full config's FLOPs per sample are
always computed and printed, so a CPU run already gives the numerator.

Variants (join with +): bf16 | fp32 (autocast or not; the CPU trains in fp32 in train()), classic
(diffusers' AttnProcessor instead of SDPA), ckpt (gradient checkpointing), channels-last, unfused-adamw
(AdamW's default implementation instead of fused=True, which train() uses on CUDA), frozen-bf16 (the
frozen UNet weights stored in bf16, the trainable k/v kept as fp32 master weights; needs bf16), compile
(torch.compile(model) as train() does). Target (issue 6): >= 150 samples/s on an H100 in bf16, with the
full config; the pass column is shown only for that config on a GPU.
Prints a table and writes bench/results/train-<device>.json.
"""
from __future__ import annotations

import argparse
import copy
import gc
import json
import platform
import resource
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from facepaint.loss import masked_mse  # noqa: E402
from facepaint.models import Components, pick_device, sd15_random_components, tiny_components  # noqa: E402
from facepaint.train import FaceModel, TrainConfig, TrainData, draw_step, setup_trainable  # noqa: E402

TARGET_SAMPLES_PER_S = 150.0  # issue 6: H100, bf16, batch 16, full SD1.5 inpainting UNet
# Dense (no sparsity) bf16 tensor-core peaks, TFLOP/s, from the vendors' data sheets; first match wins.
PEAK_BF16_TFLOPS = [("H200", 989.4), ("GH200", 989.4), ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.4),
                    ("H800", 989.4), ("A100", 312.0), ("A800", 312.0), ("L40S", 362.1), ("RTX A6000", 154.8),
                    ("A6000", 154.8), ("L4", 121.0), ("A10G", 70.0), ("A10", 125.0)]
CAPTIONS = ["a photo of a smiling woman with long blond hair", "a man with a beard and glasses",
            "a young woman wearing red lipstick, looking at the camera", "an old man with grey hair, neutral face"]
TOKENS = ("bf16", "fp32", "classic", "ckpt", "channels-last", "unfused-adamw", "frozen-bf16", "compile")
VARIANTS = ["bf16", "fp32", "bf16+classic", "bf16+ckpt", "bf16+channels-last", "bf16+unfused-adamw",
            "bf16+frozen-bf16", "bf16+compile", "bf16+frozen-bf16+compile"]


@dataclass
class Variant:
    name: str
    bf16: bool = True
    classic: bool = False
    ckpt: bool = False
    channels_last: bool = False
    fused_adamw: bool = True
    frozen_bf16: bool = False
    compile: bool = False

    @classmethod
    def parse(cls, name: str) -> "Variant":
        toks = name.split("+")
        bad = [t for t in toks if t not in TOKENS]
        if bad:
            raise SystemExit(f"unknown variant token(s) {bad} in {name!r}; choose from {TOKENS}")
        v = cls(name, bf16="fp32" not in toks, classic="classic" in toks, ckpt="ckpt" in toks,
                channels_last="channels-last" in toks, fused_adamw="unfused-adamw" not in toks,
                frozen_bf16="frozen-bf16" in toks, compile="compile" in toks)
        if v.frozen_bf16 and not v.bf16:
            raise SystemExit(f"{name}: frozen-bf16 needs bf16 autocast (fp32 matmuls cannot take bf16 weights)")
        return v


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


# ------------------------------------------------------------------------------------------ FLOPs

def count_flops(build, latent: int) -> dict[str, float]:
    """Model FLOPs of one training sample (batch 1) on the meta device: text encoder forward,
    FaceModel forward (+ loss), backward."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        comps = build(0, parts=("unet", "text_encoder"))
        adapter, _ = setup_trainable(comps, 0)
        model = FaceModel(comps.unet, adapter, 0.3).train()
        ids = torch.zeros(1, 77, dtype=torch.long)
        x = torch.randn(1, 9, latent, latent)
        t = torch.zeros(1, dtype=torch.long)
        beta, target, mask = torch.rand(1), torch.randn(1, 4, latent, latent), torch.rand(1, 1, latent, latent)
    out = {}
    with FlopCounterMode(display=False) as fc:
        with torch.no_grad():
            emb = comps.text_encoder(ids)[0]
    out["text_encoder_fwd"] = fc.get_total_flops()
    with FlopCounterMode(display=False) as fc:
        loss = masked_mse(model(x, t, emb, beta), target, mask, 0.05)
    out["unet_fwd"] = fc.get_total_flops()
    with FlopCounterMode(display=False) as fc:
        loss.backward()
    out["unet_bwd"] = fc.get_total_flops()
    out["per_sample"] = sum(out.values())
    return out


# ---------------------------------------------------------------------------------------- one step

def synthetic_cache(n: int, latent: int, seed: int = 0) -> TrainData:
    """A TrainData with random cached latents, the layout TrainData.load gives."""
    g = torch.Generator().manual_seed(seed)
    lat = torch.randn(n, 2, 4, latent, latent, generator=g).half()
    masked = torch.randn(n, 2, 4, latent, latent, generator=g).half()
    mask = (torch.rand(n, 1, latent, latent, generator=g) < 0.3).to(torch.uint8)
    beta = mask.float().mean((1, 2, 3))
    caps = [[CAPTIONS[(i + j) % len(CAPTIONS)] for j in range(3)] for i in range(n)]
    return TrainData(torch.arange(n), lat, masked, mask, beta, caps, latent * 8, "synthetic")


class Step:
    """train()'s loop body for one variant (see the module docstring)."""

    def __init__(self, base: Components, v: Variant, cfg: TrainConfig, data: TrainData, device):
        from diffusers import DDPMScheduler
        from diffusers.optimization import get_scheduler

        self.v, self.cfg, self.data, self.dev, self.tok = v, cfg, data, device, base.tokenizer
        unet = copy.deepcopy(base.unet)
        comps = Components(unet=unet, text_encoder=base.text_encoder, tokenizer=base.tokenizer,
                           scheduler=base.scheduler)
        self.noise_sched = DDPMScheduler.from_config(base.scheduler.config)
        adapter, self.counts = setup_trainable(comps, cfg.seed)
        if v.classic:
            from diffusers.models.attention_processor import AttnProcessor

            unet.set_attn_processor(AttnProcessor())
        if v.ckpt:
            unet.enable_gradient_checkpointing()
        unet.train()
        model = FaceModel(unet, adapter, cfg.adapter_scale).to(device)
        if v.frozen_bf16:  # frozen weights in bf16; the k/v (requires_grad) stay fp32 master weights
            for p in unet.parameters():
                if not p.requires_grad:
                    p.data = p.data.to(torch.bfloat16)
        if v.channels_last:
            model.to(memory_format=torch.channels_last)
        groups = [{"params": [p for p in unet.parameters() if p.requires_grad], "lr": cfg.lr_kv},
                  {"params": list(adapter.parameters()), "lr": cfg.lr_adapter}]
        self.params = [p for g in groups for p in g["params"]]
        self.optimizer = torch.optim.AdamW(groups, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_eps,
                                           weight_decay=cfg.weight_decay, **({"fused": True} if v.fused_adamw else {}))
        self.lr_scheduler = get_scheduler(cfg.lr_scheduler, self.optimizer, num_warmup_steps=0, num_training_steps=10**6)
        self.model = torch.compile(model) if v.compile else model
        self.amp = torch.bfloat16 if v.bf16 else None
        self.te = base.text_encoder.to(device, self.amp or torch.float32).eval()
        self.alphas = self.noise_sched.alphas_cumprod.to(device)
        pin = device.type == "cuda"
        self.tensors = {k: (t.pin_memory() if pin else t) for k, t in dict(
            lat=data.latents, masked=data.masked_latents, mask=data.latent_mask, beta=data.beta).items()}
        self.steps_per_epoch = len(data) // cfg.batch_size
        self.running = torch.zeros((), device=device)

    def __call__(self, step: int):
        cfg, dev, tensors, noise_sched = self.cfg, self.dev, self.tensors, self.noise_sched
        d = draw_step(self.data, cfg, step, self.steps_per_epoch, noise_sched.config.num_train_timesteps)
        idx, flip = d.index, d.flip
        lat = tensors["lat"][idx, flip.long()].to(dev, non_blocking=True).float()
        masked = tensors["masked"][idx, flip.long()].to(dev, non_blocking=True).float()
        m = tensors["mask"][idx].to(dev, non_blocking=True).float()
        m = torch.where(flip.to(dev).view(-1, 1, 1, 1), m.flip(-1), m)
        beta = tensors["beta"][idx].to(dev, non_blocking=True)
        t = d.timesteps.to(dev)
        noise = d.noise.to(dev, non_blocking=True)
        noisy = noise_sched.add_noise(lat, noise, t)
        if noise_sched.config.prediction_type == "v_prediction":
            a = self.alphas[t].view(-1, 1, 1, 1)
            target = a.sqrt() * noise - (1 - a).sqrt() * lat
        else:
            target = noise
        tok = self.tok
        ids = tok(d.caption, padding="max_length", max_length=tok.model_max_length, truncation=True,
                  return_tensors="pt").input_ids.to(dev)
        with torch.no_grad():
            emb = self.te(ids)[0].float()
        x = torch.cat([noisy, m, masked], dim=1)
        if self.v.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=self.amp is not None):
            pred = self.model(x, t, emb, beta)
        loss = masked_mse(pred, target, m, cfg.alpha)
        loss.backward()
        if cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm)
        self.optimizer.step()
        self.lr_scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.running += loss.detach()


def text_encoder_rate(base: Components, data: TrainData, cfg: TrainConfig, device, bf16: bool, steps: int) -> float:
    """samples/s of tokenising + the frozen text encoder alone (included in every training step)."""
    te = base.text_encoder.to(device, torch.bfloat16 if bf16 else torch.float32).eval()
    tok = base.tokenizer

    def run(s):
        d = draw_step(data, cfg, s, len(data) // cfg.batch_size, 1000)
        ids = tok(d.caption, padding="max_length", max_length=tok.model_max_length, truncation=True,
                  return_tensors="pt").input_ids.to(device)
        with torch.no_grad():
            return te(ids)[0].float()

    for s in range(2):
        run(s)
    sync(device)
    t0 = time.perf_counter()
    for s in range(steps):
        run(s)
    sync(device)
    return cfg.batch_size * steps / (time.perf_counter() - t0)


def peak_tflops(dev_name: str, override: float | None) -> float | None:
    if override:
        return override
    for key, tf in PEAK_BF16_TFLOPS:
        if key.lower() in dev_name.lower():
            return tf
    return None


def versions() -> dict:
    import accelerate
    import diffusers
    import transformers

    v = {"torch": torch.__version__, "diffusers": diffusers.__version__, "transformers": transformers.__version__,
         "accelerate": accelerate.__version__, "python": platform.python_version()}
    if torch.cuda.is_available():
        v.update(cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    return v


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--full", action="store_true",
                    help="full SD1.5 inpainting UNet, batch 16, 64x64 latents (default on a GPU; very slow on a CPU)")
    ap.add_argument("--batch", type=int, default=None, help="default 16 (full) or 4 (scaled-down)")
    ap.add_argument("--latent", type=int, default=None, help="latent side, default 64 (full) or 16 (scaled-down)")
    ap.add_argument("--variants", default=None,
                    help=f"comma-separated, tokens joined by + from {','.join(TOKENS)}; default: all "
                         f"(without compile on a CPU): {','.join(VARIANTS)}")
    ap.add_argument("--warmup", type=int, default=None, help="warm-up steps (default 3 GPU, 2 CPU)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 20 GPU, 5 CPU)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="the device's dense bf16 peak, for MFU")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    device = pick_device(args.device)
    gpu = device.type == "cuda"
    full = args.full or gpu
    if full and not gpu:
        print("warning: --full on a CPU: one full-size step at batch 16 takes minutes; consider --batch 1 "
              "--steps 1 --warmup 1 --variants fp32", file=sys.stderr)
    batch = args.batch or (16 if full else 4)
    latent = args.latent or (64 if full else 16)
    warmup = args.warmup if args.warmup is not None else (3 if gpu else 2)
    steps = args.steps or (20 if gpu else 5)
    names = args.variants.split(",") if args.variants else [n for n in VARIANTS if gpu or "compile" not in n]
    variants = [Variant.parse(n.strip()) for n in names if n.strip()]
    build = sd15_random_components if full else tiny_components
    config = "full SD1.5 inpainting UNet" if full else "scaled-down: tiny UNet"
    if gpu:
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 variant: what a GPU user would run
        torch.backends.cudnn.allow_tf32 = True

    flops_full = count_flops(sd15_random_components, 64)
    flops_run = flops_full if (full and latent == 64) else count_flops(build, latent)

    cfg = TrainConfig(batch_size=batch, seed=args.seed)
    data = synthetic_cache(batch * 4, latent, args.seed)
    t0 = time.perf_counter()
    base = build(args.seed, parts=("unet", "text_encoder", "tokenizer", "scheduler"))
    print(f"built {base.name} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)

    dev_name = torch.cuda.get_device_name(device) if gpu else \
        f"CPU ({torch.get_num_threads()} threads, {platform.processor() or platform.machine()})"
    peak = peak_tflops(dev_name, args.peak_tflops) if gpu or args.peak_tflops else None
    judge = gpu and full and batch == 16 and latent == 64

    rows = []
    for v in variants:
        row = dict(variant=v.name, **{k: x for k, x in asdict(v).items() if k != "name"})
        try:
            if gpu:
                gc.collect()
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            step = Step(base, v, cfg, data, device)
            sync(device)
            tw = time.perf_counter()
            for s in range(warmup):
                step(s)
            sync(device)
            row["warmup_s"] = time.perf_counter() - tw
            t1 = time.perf_counter()
            for s in range(warmup, warmup + steps):
                step(s)
            loss = (step.running / (warmup + steps)).item()  # syncs
            sync(device)
            dt = time.perf_counter() - t1
            row.update(samples_per_s=batch * steps / dt, step_ms=1000 * dt / steps, mean_loss=loss)
            if gpu:
                row.update(peak_alloc_gib=torch.cuda.max_memory_allocated(device) / 2**30,
                           peak_reserved_gib=torch.cuda.max_memory_reserved(device) / 2**30)
            row["tflops_per_s"] = flops_run["per_sample"] * row["samples_per_s"] / 1e12
            if peak:
                row["mfu"] = row["tflops_per_s"] / peak
            if judge:
                row["pass"] = row["samples_per_s"] >= TARGET_SAMPLES_PER_S
            del step
        except torch.OutOfMemoryError as e:
            row["error"] = "OOM"
            print(f"{v.name}: out of memory ({str(e).splitlines()[0]})", file=sys.stderr)
        except Exception as e:  # a variant that does not run here (e.g. compile without a compiler)
            row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]
            print(f"{v.name}: {row['error']}", file=sys.stderr)
        rows.append(row)
        print(f"  {v.name}: {row.get('samples_per_s', float('nan')):.2f} samples/s", file=sys.stderr)
    te_rate = text_encoder_rate(base, data, cfg, device, gpu, max(steps, 5))

    def fmt(x, f):
        return "n/a" if x is None else format(x, f)

    print(f"\ntraining throughput on {dev_name}: {config}, batch {batch}, {latent}x{latent} latents "
          f"({latent * 8} px), {warmup} warm-up + {steps} timed steps")
    print(f"model FLOPs per sample (this config): {flops_run['per_sample'] / 1e9:,.2f} GFLOP "
          f"(text encoder fwd {flops_run['text_encoder_fwd'] / 1e9:,.2f} + UNet fwd {flops_run['unet_fwd'] / 1e9:,.2f}"
          f" + bwd {flops_run['unet_bwd'] / 1e9:,.2f})")
    print(f"model FLOPs per sample (full config, SD1.5 at 512 px): {flops_full['per_sample'] / 1e12:.4f} TFLOP "
          f"(text encoder fwd {flops_full['text_encoder_fwd'] / 1e9:,.1f} G + UNet fwd {flops_full['unet_fwd'] / 1e9:,.1f} G"
          f" + bwd {flops_full['unet_bwd'] / 1e9:,.1f} G); {TARGET_SAMPLES_PER_S:.0f} samples/s = "
          f"{flops_full['per_sample'] * TARGET_SAMPLES_PER_S / 1e12:.0f} TFLOP/s")
    if peak:
        print(f"MFU against a dense bf16 peak of {peak:g} TFLOP/s")
    head = f"{'variant':<28} {'samples/s':>10} {'step ms':>9} {'warm-up s':>9} {'peak GiB':>9} {'TFLOP/s':>9} {'MFU':>7}"
    if judge:
        head += f" {'>=150/s':>8}"
    print(head)
    for r in rows:
        if "error" in r:
            print(f"{r['variant']:<28} {r['error']}")
            continue
        line = (f"{r['variant']:<28} {r['samples_per_s']:>10.2f} {r['step_ms']:>9.1f} {r['warmup_s']:>9.1f} "
                f"{fmt(r.get('peak_alloc_gib'), '.2f'):>9} {r['tflops_per_s']:>9.3g} "
                f"{fmt(r.get('mfu') and 100 * r['mfu'], '.1f'):>6}%")
        if judge:
            line += f" {'pass' if r['pass'] else 'FAIL':>8}"
        print(line.replace("n/a%", "n/a "))
    print(f"{'text encoder only':<28} {te_rate:>10.2f}   (tokenise + frozen CLIP forward; included in every step above)")

    ok = [r for r in rows if "error" not in r]
    best = max(ok, key=lambda r: r["samples_per_s"]) if ok else None
    result = {
        "device": dev_name, "versions": versions(),
        "settings": {"config": config, "full": full, "batch": batch, "latent": latent, "px": latent * 8,
                     "warmup_steps": warmup, "timed_steps": steps, "tf32_matmul": gpu, "seed": args.seed, "threads": torch.get_num_threads(),
                     "text_encoder": "included in every step (tokenise + frozen CLIP forward, as train() does)",
                     "train_config": asdict(cfg)},
        "flops_per_sample": {"this_config": flops_run, "full_config": flops_full,
                             "counted": "FlopCounterMode, meta device, batch 1; no recomputation"},
        "peak_bf16_tflops": peak,
        "target": {"samples_per_s": TARGET_SAMPLES_PER_S, "on": "H100, bf16, full config, batch 16",
                   "judged": judge, "best_variant": best and best["variant"],
                   "pass": (best["samples_per_s"] >= TARGET_SAMPLES_PER_S) if (judge and best) else None},
        "text_encoder_only_samples_per_s": te_rate,
        "max_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "results": rows,
    }
    out = REPO / "bench" / "results" / f"train-{'cuda' if gpu else 'cpu'}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"written {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
