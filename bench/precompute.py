"""Throughput of the precompute stages: face masks/s (annotations and BiSeNet back-ends) and latents/s.

    python bench/precompute.py                 # CPU: params.yaml's demo values (128 px masks and latents)
                                               # and scaled-down counts, finishes in minutes
    python bench/precompute.py --profile paper # the paper's sizes (512 px, batch 32, 8 workers); the
                                               # default on a GPU
    python bench/precompute.py --data DIR      # a CelebAMask-HQ copy (default: the shared fixture, else a
                                               # generated demo set; `--data demo` always generates one)

Settings. Everything comes from params.yaml with the overrides of `--profile` (default `paper` on CUDA,
none on the CPU, i.e. params.yaml's own demo values; `--profile none` forces those): the masks
stage's MaskConfig (`masks`: back-end, parts, resolution, latent factor, batch size, workers, BiSeNet's
half / channels_last), the latents stage's LatentConfig (`latents`) and the VAE's seed (`model`). The
benchmark's own variations are explicit overrides: `--batch` and `--workers` (both stages' batch_size
and workers), the device, the BiSeNet back-end with random weights, and each speed setting below. The
generated demo set is params' `demo` with `--n` images at 512 px (the official masks' side and
BiSeNet's input).

Measures the stage code end to end (decode, parse or encode, pack), after one warm-up batch, for each
setting of the stages' speed params: BiSeNet in fp32 / fp16 / fp16 + channels_last (MaskConfig.half,
.channels_last) and the VAE in fp32 / bf16 / bf16 + channels_last (LatentConfig.precision,
.channels_last; plus the profile's own precision when it is another); on a CPU only fp32 runs (the
stages use fp32 there). The `profile` column marks the rows that run as the profile configures the
stage. BiSeNet runs with random weights: its speed does not depend on their values. Latents are cached
at the masks' resolution from the annotation masks table, by a tiny VAE and by the full-size SD1.5 VAE
(random weights). `latents/s` counts training images cached per second; each is 4 VAE encodes (two
flips x image and masked image). Model FLOPs per item are counted on the meta device
(torch.utils.flop_counter) and printed with the achieved TFLOP/s: at 512 px one cached image is
4 x 1.117 TFLOP of VAE encoder, so the issue's 100 latents/s means 447 TFLOP/s.
Targets (issue 6, H100, 512 px): >= 100 latents/s and >= 200 BiSeNet masks/s.
Prints a table and writes bench/results/precompute-<device>.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import (
    add_profile_argument,
    bench_params,
    device_name,
    forward_flops,
    model_config,
    random_components,
    versions,
    write_result,
)
from facepaint.data import celebamask
from facepaint.data.latents import LatentConfig, compute_latents
from facepaint.data.masks import MaskConfig, compute_masks
from facepaint.method.masks import BISENET_CLASSES, BISENET_SIZE, BiSeNetParser
from facepaint.method.models import pick_device
from stages.common import section

TARGET_LATENTS, TARGET_MASKS, TARGET_PX = 100, 200, 512  # issue 6, H100, 512 px
FIXTURE = Path(os.environ.get("FACEPAINT_FIXTURE", REPO.parent / "shared" / "fixtures" / "celebamask-hq-mini"))
DEMO_SIZE = BISENET_SIZE  # the generated set's image and mask side (512: the official masks', BiSeNet's input)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device):
    sync(device)
    t = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - t


def model_flops(params: dict, px: int = TARGET_PX) -> dict[str, float]:
    """FLOPs per item: one BiSeNet parse (always at its 512 px input); one VAE encode of the full-size
    SD1.5 VAE at `px` and one cached training image (4 encodes)."""
    from facexlib.parsing.bisenet import BiSeNet

    with torch.device("meta"):
        net = BiSeNet(num_class=len(BISENET_CLASSES)).eval()
        vae = random_components(model_config(params, source="random"), parts=("vae",)).vae
        x, image = torch.empty(1, 3, BISENET_SIZE, BISENET_SIZE), torch.empty(1, 3, px, px)
    encode = forward_flops(lambda: vae.encode(image))
    return {"bisenet_mask": forward_flops(lambda: net(x)), "vae_encode": encode, "latent_image": 4 * encode}


def dataset(data: str | None, n: int, params: dict, tmp: Path) -> tuple[Path, list[int]]:
    """The CelebAMask-HQ root to read and its present ids: `data`, else the shared fixture, else (or with
    data "demo") a generated demo set of n images (params `demo` at DEMO_SIZE px)."""
    if data == "demo" or (data is None and not FIXTURE.is_dir()):
        from tools.demo import DemoConfig, generate

        root = tmp / "demo"
        generate(
            root, section(params, "demo", DemoConfig, n_images=n, size=DEMO_SIZE, mask_size=DEMO_SIZE), progress=False
        )
    else:
        root = Path(data) if data else FIXTURE
    attrs = celebamask.read_attributes(root / celebamask.ATTRIBUTE_FILE)
    ids = celebamask.scan(root, attrs).present.tolist()
    return root, ids


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--data", help="CelebAMask-HQ root, or `demo` to generate one (default: the ../shared fixture, else generated)"
    )
    ap.add_argument("--device", default="auto")
    add_profile_argument(ap)
    ap.add_argument("--n", type=int, default=None, help="images per measurement (default 512 GPU, 64 CPU)")
    ap.add_argument("--batch", type=int, default=None, help="override of masks.batch_size and latents.batch_size")
    ap.add_argument("--workers", type=int, default=None, help="override of masks.workers and latents.workers")
    ap.add_argument("--out", default=None, help="json path (default bench/results/precompute-<device>.json)")
    args = ap.parse_args()
    device = pick_device(args.device)
    gpu = device.type == "cuda"
    params, profile = bench_params(args.profile, device)
    overrides = {k: v for k, v in (("batch_size", args.batch), ("workers", args.workers)) if v is not None}
    mcfg = section(params, "masks", MaskConfig, device=str(device), **overrides)
    lcfg = section(params, "latents", LatentConfig, device=str(device), **overrides)
    n = args.n or (512 if gpu else 64)
    res = mcfg.resolution
    flops = model_flops(params)  # at the targets' 512 px
    flops_here = flops if res == TARGET_PX else model_flops(params, res)
    rows = []  # (metric, what, px, n, per second, the profile's speed settings?, model FLOPs per item or None)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root, ids = dataset(args.data, n, params, tmp)
        ids = (ids * (n // len(ids) + 1))[:n]  # repeat the set when n exceeds it

        acfg = replace(mcfg, backend="annotations")
        compute_masks(root, ids[: acfg.batch_size], acfg, progress=False)  # warm-up
        table, t = timed(lambda: compute_masks(root, ids, acfg, progress=False)[0], device)
        rows.append(("masks/s", "annotations", res, n, n / t, True, None))

        weights = tmp / "bisenet.pth"
        from facexlib.parsing.bisenet import BiSeNet

        torch.save(BiSeNet(num_class=len(BISENET_CLASSES)).state_dict(), weights)
        nb = n if gpu else min(n, 16)  # BiSeNet at 512 px is ~1 s per image on 2 CPU cores
        # (half, channels_last); both are GPU-only, the CPU runs fp32
        settings = [(False, False), (True, False), (True, True)] if gpu else [(False, False)]
        for half, cl in settings:
            bcfg = replace(mcfg, backend="bisenet", bisenet_weights=str(weights), half=half, channels_last=cl)
            parser = BiSeNetParser(weights, str(device), half=half, channels_last=cl)
            compute_masks(root, ids[: bcfg.batch_size], bcfg, progress=False, parser=parser)
            _, t = timed(
                lambda bcfg=bcfg, parser=parser: compute_masks(root, ids[:nb], bcfg, progress=False, parser=parser),
                device,
            )
            label = (
                "bisenet " + ("fp16" if parser.dtype == torch.float16 else "fp32") + (" channels_last" if cl else "")
            )
            configured = not gpu or (half, cl) == (mcfg.half, mcfg.channels_last)
            rows.append(("masks/s", label, res, nb, nb / t, configured, flops["bisenet_mask"]))
            del parser

        # Latents at the masks' resolution, from the annotation masks table, with the stage's own code.
        precisions = [("fp32", False), ("bf16", False), ("bf16", True)] if gpu else [("fp32", False)]
        if gpu and (lcfg.precision, lcfg.channels_last) not in precisions:
            precisions.append((lcfg.precision, lcfg.channels_last))
        runs = [("tiny VAE", "tiny", "fp32", False)] + [("SD1.5 VAE", "random", p, cl) for p, cl in precisions]
        for name, source, precision, cl in runs:
            vae = random_components(model_config(params, source=source), parts=("vae",)).vae
            encode = None if source == "tiny" else flops_here["vae_encode"]
            nl = len(table) if (gpu or source == "tiny") else min(len(table), 2)  # full VAE: ~6 s/image on CPU
            run_cfg = replace(lcfg, precision=precision, channels_last=cl)
            compute_latents(
                root, table.iloc[: min(run_cfg.batch_size, nl)], vae, tmp / "warm", run_cfg, res, progress=False
            )
            _, t = timed(
                lambda run_cfg=run_cfg, vae=vae, nl=nl: compute_latents(
                    root, table.iloc[:nl], vae, tmp / "lat", run_cfg, res, progress=False
                ),
                device,
            )
            label = name + (f" {precision}" + (" channels_last" if cl else "") if gpu else "")
            configured = not gpu or (precision, cl) == (lcfg.precision, lcfg.channels_last)
            rows.append(("latents/s", label, res, nl, nl / t, configured, encode and 4 * encode))
            rows.append(("VAE encodes/s", label, res, nl, 4 * nl / t, configured, encode))
            del vae

    dev_name = device_name(device)
    print(
        f"\nprecompute throughput on {dev_name}, profile {profile or 'none (params.yaml)'}, data: {root}, "
        f"batch {mcfg.batch_size} masks / {lcfg.batch_size} latents, workers {mcfg.workers} / {lcfg.workers}"
    )
    print(f"{'metric':<14} {'back-end / model':<34} {'px':>5} {'n':>5} {'per s':>9} {'TFLOP/s':>8} {'profile':>7}")
    table_rows = []
    for metric, what, px, count, rate, configured, per_item in rows:
        tf = None if per_item is None else per_item * rate / 1e12  # model FLOPs only for the full-size models
        table_rows.append(
            {
                "metric": metric,
                "what": what,
                "px": px,
                "n": count,
                "per_s": round(rate, 3),
                "tflops_per_s": None if tf is None else round(tf, 3),
                "profile_settings": configured,
            }
        )
        print(
            f"{metric:<14} {what:<34} {px:>5} {count:>5} {rate:>9.2f} {'-' if tf is None else format(tf, '.2f'):>8} "
            f"{'yes' if configured else '':>7}"
        )
    print(
        f"model FLOPs at {TARGET_PX} px: BiSeNet {flops['bisenet_mask'] / 1e9:.1f} GFLOP per mask; VAE encoder "
        f"{flops['vae_encode'] / 1e12:.3f} TFLOP per encode, {flops['latent_image'] / 1e12:.3f} TFLOP per cached "
        f"image (x4); targets (H100, {TARGET_PX} px): >= {TARGET_LATENTS} latents/s "
        f"(= {TARGET_LATENTS * flops['latent_image'] / 1e12:.0f} TFLOP/s), >= {TARGET_MASKS} BiSeNet masks/s"
    )
    result = {
        "device": dev_name,
        "versions": versions(),
        "profile": profile,
        "data": str(root),
        "resolution": res,
        "masks": {k: getattr(mcfg, k) for k in MaskConfig.SPEED_KNOBS},
        "latents": {k: getattr(lcfg, k) for k in LatentConfig.SPEED_KNOBS},
        "flops_per_item_512px": flops,
        "targets": {
            "latents_per_s": TARGET_LATENTS,
            "bisenet_masks_per_s": TARGET_MASKS,
            "on": f"H100, {TARGET_PX} px",
        },
        "results": table_rows,
    }
    write_result(result, "precompute", device, args.out)


if __name__ == "__main__":
    main()
