"""Throughput of the precompute stages: face masks/s (annotations and BiSeNet back-ends) and latents/s.

    python bench/precompute.py                 # CPU: scaled-down sizes so it finishes in minutes
    python bench/precompute.py --full          # the paper's sizes (512 px, full SD1.5 VAE); for a GPU
    python bench/precompute.py --data DIR      # a CelebAMask-HQ copy (default: the shared fixture,
                                               # else a generated demo set)

Measures the stage code end to end (decode, parse or encode, pack), after one warm-up batch, for each
setting of the stages' speed params: BiSeNet in fp32 / fp16 / fp16 + channels_last (MaskConfig.half,
.channels_last) and the VAE in fp32 / bf16 / bf16 + channels_last (LatentConfig.precision,
.channels_last); on a CPU only fp32 runs (the stages use fp32 there). BiSeNet runs with random weights:
its speed does not depend on their values. `latents/s` counts training images cached per second; each
is 4 VAE encodes (two flips x image and masked image). Model FLOPs per item are counted on the meta
device (torch.utils.flop_counter) and printed with the achieved TFLOP/s: at 512 px one cached image
is 4 x 1.117 TFLOP of VAE encoder, so the issue's 100 latents/s means 447 TFLOP/s.
Targets (issue 6, H100, 512 px): >= 100 latents/s and >= 200 BiSeNet masks/s.
Prints a table and writes bench/results/precompute-<device>.json.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import device_name, forward_flops, versions, write_result
from facepaint import celebamask
from facepaint.latents import LatentConfig, compute_latents
from facepaint.masks import BiSeNetParser, MaskConfig, compute_masks
from facepaint.models import pick_device, sd15_random_components, tiny_components

TARGET_LATENTS, TARGET_MASKS = 100, 200  # issue 6, H100, 512 px
FIXTURE = REPO.parent / "shared" / "fixtures" / "celebamask-hq-mini"


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device):
    sync(device)
    t = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - t


def model_flops() -> dict[str, float]:
    """FLOPs per item at 512 px: one BiSeNet parse; one cached training image (4 VAE encodes)."""
    from facexlib.parsing.bisenet import BiSeNet

    with torch.device("meta"):
        net = BiSeNet(num_class=19).eval()
        vae = sd15_random_components(0, parts=("vae",)).vae
        x = torch.empty(1, 3, 512, 512)
    encode = forward_flops(lambda: vae.encode(x))
    return {"bisenet_mask": forward_flops(lambda: net(x)), "vae_encode": encode, "latent_image": 4 * encode}


def dataset(args, tmp: Path) -> tuple[Path, list[int]]:
    root = Path(args.data) if args.data else (FIXTURE if FIXTURE.is_dir() else None)
    if root is None:
        from facepaint.demo import DemoConfig, generate

        root = tmp / "demo"
        generate(root, DemoConfig(n_images=args.n, size=512, mask_size=512), progress=False)
    attrs = celebamask.read_attributes(root / celebamask.ATTRIBUTE_FILE)
    ids = celebamask.scan(root, attrs).present.tolist()
    return root, ids


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="CelebAMask-HQ root (default: ../shared fixture, else generated)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--full", action="store_true", help="paper sizes: 512 px masks and latents, full SD1.5 VAE")
    ap.add_argument("--n", type=int, default=None, help="images per measurement")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=None, help="json path (default bench/results/precompute-<device>.json)")
    args = ap.parse_args()
    device = pick_device(args.device)
    gpu = device.type == "cuda"
    full = args.full or gpu
    n = args.n or (512 if gpu else 64)
    batch = args.batch or (32 if gpu else 8)
    res = 512 if full else 128
    rows = []

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        args.n = n
        root, ids = dataset(args, tmp)
        ids = (ids * (n // len(ids) + 1))[:n]  # repeat the set when n exceeds it

        cfg = MaskConfig(resolution=512, sigma=4.0, batch_size=batch, workers=args.workers, device=str(device))
        compute_masks(root, ids[:batch], cfg, progress=False)  # warm-up
        table, t = timed(lambda: compute_masks(root, ids, cfg, progress=False)[0], device)
        rows.append(("masks/s", "annotations", 512, n, n / t))

        weights = tmp / "bisenet.pth"
        from facexlib.parsing.bisenet import BiSeNet

        torch.save(BiSeNet(num_class=19).state_dict(), weights)
        nb = n if full else min(n, 16)  # BiSeNet at 512 px is ~1 s per image on 2 CPU cores
        # (half, channels_last): the stage's default is the last; both are GPU-only, the CPU runs fp32
        settings = [(False, False), (True, False), (True, True)] if gpu else [(False, False)]
        for half, cl in settings:
            bcfg = MaskConfig(backend="bisenet", bisenet_weights=str(weights), resolution=512, batch_size=batch,
                              workers=args.workers, device=str(device), max_unusable_fraction=1.0, half=half,
                              channels_last=cl)
            parser = BiSeNetParser(weights, str(device), half=half, channels_last=cl)
            compute_masks(root, ids[:batch], bcfg, progress=False, parser=parser)
            _, t = timed(lambda bcfg=bcfg, parser=parser: compute_masks(root, ids[:nb], bcfg, progress=False,
                                                                        parser=parser), device)
            label = "bisenet " + ("fp16" if parser.dtype == torch.float16 else "fp32") + (" channels_last" if cl else "")
            rows.append(("masks/s", label, 512, nb, nb / t))
            del parser

        # Latents: the table at the latent resolution, with the stage's own code.
        lt = table if res == 512 else compute_masks(root, ids, MaskConfig(resolution=res, sigma=1.0, batch_size=batch,
                                                                           workers=args.workers), progress=False)[0]
        runs = [("tiny VAE", tiny_components, "fp32", False)]
        runs += [("SD1.5 VAE", sd15_random_components, p, cl)
                 for p, cl in ([("fp32", False), ("bf16", False), ("bf16", True)] if gpu else [("fp32", False)])]
        for name, build, precision, cl in runs:
            vae = build(0, parts=("vae",)).vae
            nl = len(lt) if (gpu or name == "tiny VAE") else min(len(lt), 2)  # full VAE: ~6 s/image on CPU
            lcfg = LatentConfig(batch_size=batch, shard_size=10**6, precision=precision, device=str(device),
                                workers=args.workers, channels_last=cl)
            compute_latents(root, lt.iloc[: min(batch, nl)], vae, tmp / "warm", lcfg, res, progress=False)
            _, t = timed(lambda lcfg=lcfg, vae=vae, nl=nl: compute_latents(root, lt.iloc[:nl], vae, tmp / "lat", lcfg,
                                                                           res, progress=False), device)
            label = name + (f" {precision}" + (" channels_last" if cl else "") if gpu else "")
            rows.append(("latents/s", label, res, nl, nl / t))
            rows.append(("VAE encodes/s", label, res, nl, 4 * nl / t))
            del vae

    dev_name = device_name(device)
    print(f"\nprecompute throughput on {dev_name}, data: {root}")
    flops = model_flops()
    per_item = {"masks/s": flops["bisenet_mask"], "latents/s": flops["latent_image"], "VAE encodes/s": flops["vae_encode"]}
    print(f"{'metric':<14} {'back-end / model':<34} {'px':>5} {'n':>5} {'per s':>9} {'TFLOP/s':>8}")
    table_rows = []
    for metric, what, px, count, rate in rows:
        # model FLOPs only where the row runs the full-size model at 512 px
        tf = per_item[metric] * rate / 1e12 if (px == 512 and "annotations" not in what and "tiny" not in what) else None
        table_rows.append({"metric": metric, "what": what, "px": px, "n": count, "per_s": round(rate, 3),
                               "tflops_per_s": None if tf is None else round(tf, 3)})
        print(f"{metric:<14} {what:<34} {px:>5} {count:>5} {rate:>9.2f} {'-' if tf is None else format(tf, '.2f'):>8}")
    print(f"model FLOPs at 512 px: BiSeNet {flops['bisenet_mask'] / 1e9:.1f} GFLOP per mask; VAE encoder "
          f"{flops['vae_encode'] / 1e12:.3f} TFLOP per encode, {flops['latent_image'] / 1e12:.3f} TFLOP per cached "
          f"image (x4); targets (H100): >= {TARGET_LATENTS} latents/s (= {TARGET_LATENTS * flops['latent_image'] / 1e12:.0f} "
          f"TFLOP/s), >= {TARGET_MASKS} BiSeNet masks/s")
    result = {
        "device": dev_name, "versions": versions(),
        "data": str(root), "batch": batch, "workers": args.workers,
        "flops_per_item_512px": flops, "targets": {"latents_per_s": TARGET_LATENTS, "bisenet_masks_per_s": TARGET_MASKS,
                                                   "on": "H100, 512 px"},
        "results": table_rows,
    }
    write_result(result, "precompute", device, args.out)


if __name__ == "__main__":
    main()
