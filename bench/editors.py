"""Seconds per edit and peak memory of the evaluation's two non-latent editors, and MSaGAN's training throughput.

    python bench/editors.py                      # every case on the CPU (about 15 minutes on 2 cores)
    python bench/editors.py --device cuda        # on a GPU: Blended Diffusion's full sampling too
    python bench/editors.py --cases bd-tiny,gan-demo
    python bench/editors.py --device cuda --dtype fp16 --cases bd-full   # in the evaluation's GPU precision

Cases (random weights through the real loaders: nothing is downloaded; speed and memory do not depend on the
weights' values):
- bd-tiny     Blended Diffusion with the demo's tiny guided-diffusion UNet and tiny CLIP, params.yaml's
              evaluate.blended_diffusion (the demo's steps), one edit at the demo's 128 px
- bd-full     the full-size models: guided-diffusion's 256 px unconditional UNet (553 M parameters) and CLIP
              ViT-B/16, the public code's schedule (100 steps, 25 skipped); one sample (batch_size 1,
              iterations_num 1) of its code's 4 x 8: on the CPU only `--bd-cpu-steps` of the 75 steps (the
              figure is per step; its code's whole edit is 75 steps x 4 samples x 8 iterations)
- msagan-demo / msagan-paper   one MSaGAN edit at the demo's size (64 px, 8 channels) / MSaGAN's (128 px, 32)
- gan-demo / gan-paper         MSaGAN training steps (3 critic steps + 1 generator step) at the demo's size
              (batch 8) / MSaGAN's (128 px, 32 channels, batch 16), on random photos: steps/s and images/s

Each case runs in its own process after one untimed warm-up, so that its peak memory is its own: the process's
peak resident set (ru_maxrss) on the CPU, torch.cuda.max_memory_allocated on a GPU. Prints a table and writes
bench/results/editors-<device>.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CASES = ("bd-tiny", "bd-full", "msagan-demo", "msagan-paper", "gan-demo", "gan-paper")


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _edit_input(resolution: int):
    import numpy as np
    from PIL import Image
    from skimage import data

    from facepaint.evaluation.methods.base import EditInput
    from facepaint.method.blend import soft_mask

    image = np.asarray(Image.fromarray(data.astronaut()).resize((resolution, resolution), Image.LANCZOS))
    mask = np.zeros((resolution, resolution), bool)
    r = resolution
    mask[r // 10 : r // 2, r * 3 // 10 : r * 7 // 10] = True  # the astronaut's face
    return EditInput(image, mask, soft_mask(mask, r / 128), float(mask.mean()), "a photo of a smiling woman", 0)


def _params():
    from stages.common import load_params

    return load_params(REPO / "params.yaml")


def case_bd(name: str, device, args) -> dict:
    import torch

    from facepaint.evaluation.methods.blended_diffusion import load_blended_diffusion
    from facepaint.evaluation.methods.guided_unet import ARCHS, save_random_guided_checkpoint
    from facepaint.evaluation.methods.open_clip_model import TINY_CLIP, save_random_open_clip, vit_b16_config
    from facepaint.evaluation.run import EvalConfig
    from stages.common import section

    cfg = section(_params(), "evaluate", EvalConfig).blended_diffusion
    if name == "bd-full":  # a GPU runs one of its code's 8 iterations of 4 samples; the CPU a few steps of one
        cuda = device.type == "cuda"
        steps = 75 if cuda else args.bd_cpu_steps
        cfg = replace(cfg, model="uncond_256", timestep_respacing=100, skip_timesteps=100 - steps,
                      batch_size=4 if cuda else 1, iterations_num=1)  # fmt: skip
    arch, clip_cfg = ARCHS[cfg.model], (vit_b16_config() if name == "bd-full" else TINY_CLIP)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        save_random_guided_checkpoint(Path(tmp) / "gd.pt", arch, 0)
        save_random_open_clip(Path(tmp) / "clip", clip_cfg, 0)
        saved = time.perf_counter() - t0
        t0 = time.perf_counter()
        dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
        if device.type != "cuda":
            dtype = torch.float32
        method = load_blended_diffusion(str(Path(tmp) / "gd.pt"), str(Path(tmp) / "clip"), cfg, 128, device, dtype)
        loaded = time.perf_counter() - t0
    x = _edit_input(128)
    steps = cfg.timestep_respacing - cfg.skip_timesteps
    edited = method.edit(x)  # the warm-up
    out = {"save_s": saved, "load_s": loaded, **_timed(lambda: method.edit(x), device, warm=True), "dtype": str(dtype),
           "changed_inside_mean": float(abs(edited[x.mask].astype(float) - x.image[x.mask]).mean()),
           "steps": steps, "samples": cfg.batch_size * cfg.iterations_num, "unet_px": arch.image_size}  # fmt: skip
    out["s_per_step"] = out["s_per_edit"] / steps / cfg.iterations_num
    if name == "bd-full":  # its code's whole edit: 75 steps x 4 samples x 8 iterations
        out["code_edit_s_estimate"] = out["s_per_edit"] * (75 / steps) * (4 / cfg.batch_size) * 8
    return out


def _gan_cfg(name: str):
    from facepaint.evaluation.msagan import GanConfig
    from stages.common import section

    cfg = section(_params(), "gan", GanConfig)
    if name.endswith("paper"):
        cfg = replace(cfg, image_size=128, channels=32, batch_size=16, init="sagan")
    return cfg


def case_msagan(name: str, device, args) -> dict:
    from facepaint.evaluation.methods.msagan_edit import MSaGANEdit
    from facepaint.evaluation.msagan import networks

    cfg = _gan_cfg(name)
    G = networks(cfg)[0].to(device).eval()
    method = MSaGANEdit(G, cfg, 128, device)
    x = _edit_input(128)
    return {**_timed(lambda: method.edit(x), device), "gan_px": cfg.image_size, "channels": cfg.channels}


def case_gan(name: str, device, args) -> dict:
    import torch

    from facepaint.evaluation.msagan import GanData, train_gan

    cfg = _gan_cfg(name)
    n, s = cfg.batch_size * 4, cfg.image_size
    g = torch.Generator().manual_seed(0)
    data = GanData(torch.rand(n, 3, s, s, generator=g) * 2 - 1, (torch.arange(n) % 2).float(),
                   (torch.rand(n, 1, s, s, generator=g) > 0.8).float())  # fmt: skip
    steps = args.gan_steps
    cfg = replace(cfg, max_steps=1, checkpoint_every=0, device=str(device))
    train_gan(data, cfg, progress=False)  # warm-up
    _sync(device)
    cfg = replace(cfg, max_steps=steps)
    t0 = time.perf_counter()
    train_gan(data, cfg, progress=False)
    _sync(device)
    sec = (time.perf_counter() - t0) / steps
    imgs = cfg.batch_size * (cfg.d_iters + 1)
    return {"s_per_step": sec, "steps_per_s": 1 / sec, "images_per_s": imgs / sec, "batch": cfg.batch_size,
            "gan_px": s, "channels": cfg.channels, **_peak(device)}  # fmt: skip


def _timed(fn, device, warm: bool = False) -> dict:
    if not warm:
        fn()  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return {"s_per_edit": time.perf_counter() - t0, **_peak(device)}


def _peak(device) -> dict:
    import torch

    if device.type == "cuda":
        return {"peak_gib": torch.cuda.max_memory_allocated() / 2**30, "peak_kind": "cuda allocated"}
    return {"peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "peak_kind": "process RSS"}


def _child(name: str, device: str, args, queue) -> None:
    import torch

    from facepaint.method.models import pick_device

    torch.manual_seed(0)
    dev = pick_device(device)
    fn = case_bd if name.startswith("bd") else case_msagan if name.startswith("msagan") else case_gan
    try:
        queue.put({"case": name, **fn(name, dev, args)})
    except Exception as e:  # noqa: BLE001 - one case's failure is reported, the others run
        queue.put({"case": name, "error": f"{type(e).__name__}: {e}"})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--bd-cpu-steps", type=int, default=2, help="steps of bd-full on the CPU")
    ap.add_argument("--gan-steps", type=int, default=3, help="timed training steps per gan case")
    ap.add_argument(
        "--dtype",
        default="fp32",
        choices=("fp32", "fp16", "bf16"),
        help="Blended Diffusion's UNet and CLIP on a GPU (the evaluation's evaluate.dtype); the CPU: fp32",
    )
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    names = [c for c in args.cases.split(",") if c]
    unknown = sorted(set(names) - set(CASES))
    if unknown:
        ap.error(f"unknown case(s) {unknown}; cases: {', '.join(CASES)}")
    import torch

    from bench.common import device_name, versions, write_result
    from facepaint.method.models import pick_device

    dev = pick_device(args.device)
    ctx = mp.get_context("spawn")
    rows = []
    for name in names:
        queue = ctx.Queue()
        proc = ctx.Process(target=_child, args=(name, args.device, args, queue))
        proc.start()
        proc.join()
        row = queue.get() if not queue.empty() else {"case": name, "error": f"exit code {proc.exitcode}"}
        rows.append(row)
        print(json.dumps(row, default=lambda v: round(v, 4) if isinstance(v, float) else str(v)), flush=True)
    print(f"\n{'case':<14}{'s / edit':>10}{'s / step':>10}{'images/s':>10}{'peak GiB':>10}  ({device_name(dev)})")
    for r in rows:
        if "error" in r:
            print(f"{r['case']:<14}  failed: {r['error']}")
            continue
        cells = "".join(
            f"{r[k]:>10.3f}" if k in r else f"{'':>10}"
            for k in ("s_per_edit", "s_per_step", "images_per_s", "peak_gib")
        )
        print(f"{r['case']:<14}{cells}")
    write_result({"device": device_name(dev), "threads": torch.get_num_threads(), "versions": versions(),
                  "cases": rows}, "editors", dev, args.out)  # fmt: skip


if __name__ == "__main__":
    main()
