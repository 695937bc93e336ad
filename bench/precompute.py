"""Throughput of the precompute stages: face masks/s (annotations and BiSeNet back-ends) and latents/s.

    python bench/precompute.py                 # CPU: scaled-down sizes so it finishes in minutes
    python bench/precompute.py --full          # the paper's sizes (512 px, full SD1.5 VAE); for a GPU
    python bench/precompute.py --data DIR      # a CelebAMask-HQ copy (default: the shared fixture,
                                               # else a generated demo set)

Measures the stage code end to end (decode, parse or encode, pack), after one warm-up batch.
BiSeNet runs with random weights: its speed does not depend on their values. `latents/s` counts
training images cached per second; each is 4 VAE encodes (two flips x image and masked image).
Prints a table and writes bench/results/precompute-<device>.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from facepaint import celebamask  # noqa: E402
from facepaint.latents import LatentConfig, compute_latents  # noqa: E402
from facepaint.masks import BiSeNetParser, MaskConfig, compute_masks  # noqa: E402
from facepaint.models import pick_device, sd15_random_components, tiny_components  # noqa: E402

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
        bcfg = MaskConfig(backend="bisenet", bisenet_weights=str(weights), resolution=512, batch_size=batch,
                          workers=args.workers, device=str(device), max_unusable_fraction=1.0)
        parser = BiSeNetParser(weights, str(device), half=True)
        nb = n if full else min(n, 16)  # BiSeNet at 512 px is ~1 s per image on 2 CPU cores
        compute_masks(root, ids[:batch], bcfg, progress=False, parser=parser)
        _, t = timed(lambda: compute_masks(root, ids[:nb], bcfg, progress=False, parser=parser), device)
        rows.append(("masks/s", "bisenet" + (" fp16" if parser.dtype == torch.float16 else ""), 512, nb, nb / t))

        # Latents: the table at the latent resolution, with the stage's own code.
        lt = table if res == 512 else compute_masks(root, ids, MaskConfig(resolution=res, sigma=1.0, batch_size=batch,
                                                                           workers=args.workers), progress=False)[0]
        for name, build, precision in (("tiny VAE", tiny_components, "fp32"), ("SD1.5 VAE", sd15_random_components, "bf16")):
            vae = build(0, parts=("vae",)).vae
            nl = len(lt) if (gpu or name == "tiny VAE") else min(len(lt), 2)  # full VAE: ~6 s/image on CPU
            lcfg = LatentConfig(batch_size=batch, shard_size=10**6, precision=precision, device=str(device),
                                workers=args.workers)
            compute_latents(root, lt.iloc[: min(batch, nl)], vae, tmp / "warm", lcfg, res, progress=False)
            _, t = timed(lambda: compute_latents(root, lt.iloc[:nl], vae, tmp / "lat", lcfg, res, progress=False), device)
            label = name + (f" {precision}" if gpu else "")
            rows.append(("latents/s", label, res, nl, nl / t))
            rows.append(("VAE encodes/s", label, res, nl, 4 * nl / t))

    dev_name = torch.cuda.get_device_name(device) if gpu else f"CPU ({torch.get_num_threads()} threads, {platform.processor() or platform.machine()})"
    print(f"\nprecompute throughput on {dev_name}, data: {root}")
    print(f"{'metric':<14} {'back-end / model':<22} {'px':>5} {'n':>5} {'per s':>9}")
    for metric, what, px, count, rate in rows:
        print(f"{metric:<14} {what:<22} {px:>5} {count:>5} {rate:>9.2f}")
    result = {
        "device": dev_name, "torch": torch.__version__, "python": platform.python_version(),
        "data": str(root), "batch": batch, "workers": args.workers,
        "results": [dict(metric=m, what=w, px=p, n=c, per_s=round(r, 3)) for m, w, p, c, r in rows],
    }
    out = REPO / "bench" / "results" / f"precompute-{'cuda' if gpu else 'cpu'}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
