"""Edit speed and memory: seconds per edit at batch 1, images/s at batch 8, peak memory, with and
without the inference optimisations.

    python bench/edit.py                          # CPU: params.yaml's demo values (tiny model, 128 px, 10 and
                                                  # 5 steps), finishes in about a minute
    python bench/edit.py --profile paper --steps 1 --batch 2 --repeats 1 --variants optimized
                                                  # CPU: the full SD1.5 architecture at 512 px; ~40 s per
                                                  # 1-step edit on 2 cores (VAE + UNet), ~5 min in all
    python bench/edit.py                          # CUDA: the paper profile (SD1.5 inpainting at 512 px, 50
                                                  # and 25 steps, batch 1 and 8) with the pass/fail targets
    python bench/edit.py --ablate                 # also `optimized` minus one optimisation at a time
    python bench/edit.py --compile / --no-compile # torch.compile the UNet (default: on CUDA only)
    python bench/edit.py --group                  # the 4000x3000 group photo case only (below)
    python bench/edit.py --group --profile paper --steps 1 2 --repeats 1     # CPU, full-size: ~10 min
    python bench/edit.py --group --detector-weights detection_Resnet50_Final.pth   # GPU (RetinaFace)

Settings. Everything comes from params.yaml with the overrides of `--profile` (default `paper` on CUDA,
none on the CPU, i.e. params.yaml's own demo values; `--profile none` forces those): the model
architecture (`model`; `pretrained` is built as `random`, the same architecture with random weights:
nothing is downloaded, and speed and memory do not depend on the weights' values), the resolution
(`masks.resolution`), the face parts and mask back-end, the adapter scale (`train.adapter_scale`) and
how an edit samples and blends (`sampling`, a `SamplingOptions`: scheduler, guidance scale, strength,
negative prompt, the soft mask's sigma in pixels of a 512 px crop). The benchmark's own variations are
explicit overrides: the step counts (`sampling.steps` and half of it, or `--steps`), `--resolution`, the
throughput batch (`--batch`, 8), and each variant's `Speed` (below).

The editor is the public API on random components: the components are built once and shared by the
variants (an `Inpainter` sets their dtype, attention and memory layout itself), the adapter is a
FaceAdapter of the text encoder's width with random (non-zero) weights, so its cost is included, and
an artifact of these components (k/v and adapter, `Conditions` from the params above) is saved to a
temporary directory and loaded; each variant is `FaceEditor(Inpainter(components, adapter, ...,
speed_options=variant), artifact)`.

Variants: each optimisation is a field of `facepaint.method.speed.Speed` (the editor's `speed_options`):
- `baseline`: dtype fp32, attention "classic" (diffusers' `AttnProcessor`: explicit softmax(QK^T)V),
  channels_last off (NCHW), compile off (eager UNet).
- `optimized`: Speed's defaults plus torch.compile on CUDA: half precision on CUDA (Speed's fp16;
  `--dtype bf16` for bf16; fp32 on the CPU), attention "sdpa" (PyTorch SDPA via `AttnProcessor2_0`),
  channels_last on CUDA and off on the CPU (Speed's channels_last=None), the UNet compiled on CUDA
  (`--compile` / `--no-compile`). The json records each variant's resolved `Inpainter.runtime`.
- with `--ablate`: `optimized` with one of them toggled each: `-half` (CUDA), `-sdpa` (classic
  attention), `-channels_last` (CUDA) or `+channels_last` (CPU), `-compile` (when compiled).

What is timed, after one warm-up call per (variant, steps, batch) (which also compiles):
- batch 1: `FaceEditor.edit` end to end on a photo at the model's resolution with a given face mask
  (crop, prompt encoding, adapter, classifier-free guidance sampling, VAE decode, soft mask, pixel
  blend); seconds per edit is the median of `--repeats` calls.
- batch `--batch` (8): `FaceEditor.edit_batch` on 8 photos (seeds 0..7): each photo's crop and mask,
  the prompt encoded once and conditioned by the adapter with each photo's face ratio, one call of the
  diffusers inpainting pipeline for the 8 crops, then each photo's soft mask and pixel blend;
  images/s = 8 / median seconds.
Timing: CUDA events on a GPU, perf_counter on the CPU. Peak memory: torch.cuda.max_memory_allocated
(weights included) on a GPU; on the CPU the process's peak resident set during the timed calls
(sampled every 2 ms from /proc: weights included, and memory the allocator kept from earlier rows).
FLOPs: model FLOPs of one edit's networks counted on the meta device (`edit_flops`); TFLOP/s and MFU
(against the GPU's dense bf16 peak, bench/common.py) per row.

The group case (`--group`, issue 13): a 4000x3000 composite of 4 CelebAMask-HQ fixture faces (about 300 px
wide, rolled by up to 20 degrees; needs ../shared/fixtures/celebamask-hq-mini or --fixture) with the
faces' annotated masks as the user's mask, edited through `FaceEditor.edit` (`optimized` variant) at each
step count: seconds per photo and per face, and the face pipeline's overhead timed on its own: detection
(RetinaFace with --detector-weights, else MediaPipe), alignment, mask cutting and crops
(`editor.helper.prepare`) plus paste-back (`editor.helper.paste`), as a share of a 25-step edit. Then the face
pipeline alone for MediaPipe and OpenCV's cascade side by side (`face_pipelines`, issue 21: detection + landmarks
+ the face mesh masks + paste-back, target under 0.5 s per 12 MP photo with 4 faces on 2 cores). When 25 is not
among the step counts, the 25-step edit is extrapolated from the two smallest (fixed cost + 25 x the cost
of a step), and the json says so.

Targets (issue 6, GPU, full-size model at 512 px): <= 0.6 s per edit at 50 steps with guidance, and
<= 4 GiB peak memory at batch 1; the table's `target` column says pass/fail only then.
Prints a table and writes bench/results/edit-<device>.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import statistics
import sys
import tempfile
import threading
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import (
    add_profile_argument,
    bench_params,
    device_name,
    forward_flops,
    full_size,
    model_config,
    peak_tflops,
    random_components,
    versions,
    write_result,
)
from facepaint.data.masks import MaskConfig
from facepaint.editing.editor import FaceEditor
from facepaint.method.adapter import FaceAdapter
from facepaint.method.artifact import Artifact, Conditions, load_artifact, save_artifact
from facepaint.method.blend import sigma_pixels
from facepaint.method.generate import Inpainter
from facepaint.method.models import Components, ModelConfig, pick_device
from facepaint.method.options import SamplingOptions
from facepaint.method.speed import Speed
from facepaint.method.train import TrainConfig
from stages.common import section

TARGET_SECONDS = 0.6  # per 512 x 512 edit, 50 steps, classifier-free guidance, batch 1
TARGET_PEAK_GIB = 4.0  # batch 1
TARGET_RESOLUTION, TARGET_STEPS = 512, 50  # what the targets are stated for
GIB = 2**30
PROMPT = "a smiling woman with blond hair and eyeglasses"


# ------------------------------------------------------------------------------------------- inputs


def photo_like(resolution: int, seed: int) -> np.ndarray:
    """A random uint8 R x R x 3 image with photo-like statistics: smooth low-frequency colour fields plus grain."""
    rng = np.random.default_rng(seed)
    low = rng.uniform(0, 255, (8, 8, 3)).astype(np.uint8)
    smooth = np.asarray(Image.fromarray(low).resize((resolution, resolution), Image.Resampling.BICUBIC), np.float32)
    return np.clip(smooth + rng.normal(0, 8, smooth.shape), 0, 255).astype(np.uint8)


def face_ellipse(resolution: int) -> np.ndarray:
    """A centred elliptical face mask (bool R x R), 0.5 R wide and 0.66 R tall: CelebA-HQ-like proportions."""
    y, x = np.mgrid[:resolution, :resolution] + 0.5
    c = resolution / 2
    return ((x - c) / (0.25 * resolution)) ** 2 + ((y - c) / (0.33 * resolution)) ** 2 <= 1


# ------------------------------------------------------------------------------------------ variants


def variants(gpu: bool, dtype: str | None, compile_unet: bool, ablate: bool) -> dict[str, Speed]:
    """{name: the editor's Speed}. `optimized` is Speed's defaults (`dtype` when given) plus `compile_unet`;
    channels_last=None resolves to on with CUDA, off on the CPU (the json records it resolved)."""
    base = Speed(dtype="fp32", attention="classic", channels_last=False, compile=False)
    opt = Speed(**({"dtype": dtype} if dtype else {}), compile=compile_unet)
    out = {"baseline": base, "optimized": opt}
    if ablate:
        if gpu and opt.dtype != "fp32":  # the CPU runs fp32 whatever the dtype
            out["optimized-half"] = dataclasses.replace(opt, dtype="fp32")
        if opt.attention != "classic":
            out["optimized-sdpa"] = dataclasses.replace(opt, attention="classic")
        cl = gpu if opt.channels_last is None else opt.channels_last
        out[f"optimized{'-' if cl else '+'}channels_last"] = dataclasses.replace(opt, channels_last=not cl)
        if opt.compile != "off":
            out["optimized-compile"] = dataclasses.replace(opt, compile=False)
    return out


def random_adapter(comps: Components, seed: int) -> FaceAdapter:
    """A FaceAdapter of the text encoder's width with non-zero W2, so that A(E) is really computed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        adapter = FaceAdapter(comps.text_encoder.config.hidden_size)
        torch.nn.init.normal_(adapter.w2.weight, std=0.02)
    return adapter


def bench_artifact(path: Path, comps: Components, adapter: FaceAdapter, conditions: Conditions) -> Artifact:
    """An artifact of the in-memory components (their k/v and the adapter), saved and loaded back: what
    FaceEditor reads its conditions from. The components are not reloaded from it."""
    save_artifact(path, comps.unet, adapter, conditions, extra={"bench": "random weights, bench/edit.py"})
    return load_artifact(path)


def build_editor(
    comps: Components, adapter: FaceAdapter, artifact: Artifact, speed: Speed, device: torch.device, **helper
) -> FaceEditor:
    """FaceEditor on the shared components with the speed options `speed`, at the artifact's conditions;
    `helper`: FaceHelper's keyword arguments (detector_weights, ...). The scheduler is a sampling option of
    each edit."""
    from facepaint.method.face_helper import FaceHelper

    c = artifact.conditions
    inpainter = Inpainter(comps, adapter, c.adapter_scale, c.resolution, device=device, speed_options=speed)
    return FaceEditor(inpainter, artifact, helper=FaceHelper(c.resolution, c.parts, device=str(device), **helper))


# ------------------------------------------------------------------------------------- measurement


class CpuPeak:
    """The process's peak resident set size while inside, sampled from /proc/self/statm (Linux)."""

    def __init__(self, interval: float = 0.002):
        self.interval, self.peak, self._stop = interval, None, threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def _rss(self) -> int | None:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * self._page
        except OSError:
            return None

    def _run(self):
        while not self._stop.is_set():
            r = self._rss()
            if r is not None:
                self._max = max(self._max, r)
            time.sleep(self.interval)

    def __enter__(self):
        self._start = self._rss()
        if self._start is None:
            return self
        self._max = self._start
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if self._start is not None:
            self._stop.set()
            self._thread.join()
            self.peak = self._max


def measure(fn, device: torch.device, repeats: int) -> tuple[float, float | None, list[float]]:
    """(median seconds, peak bytes, all seconds) of `fn()` over `repeats` calls (after the caller's warm-up)."""
    gpu = device.type == "cuda"
    times, peak = [], None
    if gpu:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1000)
        peak = torch.cuda.max_memory_allocated(device)
    else:
        with CpuPeak() as mem:
            for _ in range(repeats):
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
        peak = mem.peak
    return statistics.median(times), peak, times


def edit_one(editor: FaceEditor, photo, mask, steps: int, options: SamplingOptions):
    """One edit through the public API: crop, prompt encoding + adapter, CFG sampling, decode, blend."""
    return editor.edit(photo, PROMPT, mask=mask, options=options, steps=steps, seed=0).image


def edit_batch(editor: FaceEditor, photos, masks, steps: int, options: SamplingOptions):
    """`len(photos)` edits through the public batch API: one pipeline call for all of them."""
    results = editor.edit_batch(
        photos, PROMPT, masks=masks, options=options, steps=steps, seeds=list(range(len(photos)))
    )
    return [r.image for r in results]


# -------------------------------------------------------------------------------------- group photo


GROUP_SIZE, GROUP_FACES, GROUP_STEPS = (4000, 3000), 4, 25


def bench_group(
    editor: FaceEditor, fixture: Path, steps_list: list[int], repeats: int, device, options: SamplingOptions
) -> dict:
    """The 4000x3000, 4-face case: seconds per photo and per face, and the face pipeline's overhead."""
    from tools.composites import composite, truth_mask

    ids = [int(x) for x in (fixture / "ids.txt").read_text().split()][:GROUP_FACES]
    photo, truths = composite(fixture, ids, canvas=GROUP_SIZE, seed=0, scale=(1.1, 1.3), max_roll=20)
    mask = truth_mask(fixture, truths, GROUP_SIZE, editor.conditions.parts)
    widths = [round(t.width) for t in truths]
    t0 = time.perf_counter()
    found, detector = editor.helper.detect(photo)
    detect_s = time.perf_counter() - t0
    prep_s, _, _ = measure(lambda: editor.helper.prepare(photo, mask), torch.device("cpu"), repeats)
    prepared = editor.helper.prepare(photo, mask)
    n = len(prepared.jobs)
    fake = [job.image for job in prepared.jobs]  # paste-back's cost does not depend on the pixels
    sigma_px = sigma_pixels(options.sigma, editor.conditions.resolution)
    paste_s, _, _ = measure(lambda: editor.helper.paste(prepared, fake, sigma_px, True), torch.device("cpu"), repeats)
    overhead = prep_s + paste_s
    per_steps = {}
    for steps in steps_list:
        fn = partial(lambda st: editor.edit(photo, PROMPT, mask=mask, options=options, steps=st, seed=0), steps)
        if device.type == "cuda":
            fn()  # warm-up (the CPU has nothing to warm up: a full-size CPU call takes minutes)
        sec, peak, _ = measure(fn, device, repeats)
        per_steps[steps] = {
            "seconds_per_photo": round(sec, 3),
            "seconds_per_face": round(sec / n, 3),
            "generation_seconds": round(sec - overhead, 3),
            "peak_gib": None if peak is None else round(peak / GIB, 3),
        }
        print(f"  group photo {steps:>3} steps: {sec:8.2f} s/photo, {sec / n:7.2f} s/face", flush=True)
    if GROUP_STEPS in per_steps:
        full25, how = per_steps[GROUP_STEPS]["seconds_per_photo"], "measured"
    else:
        a, b = sorted(per_steps)[:2] if len(per_steps) > 1 else (None, None)
        if a is None:
            full25, how = None, "not estimated: give two step counts or 25"
        else:
            ga, gb = per_steps[a]["generation_seconds"], per_steps[b]["generation_seconds"]
            step = (gb - ga) / (b - a)
            full25 = overhead + (ga - a * step) + GROUP_STEPS * step
            how = f"extrapolated from {a} and {b} steps: {ga - a * step:.2f} s fixed + {step:.2f} s per step"
    share = None if full25 is None else overhead / full25
    print(
        f"group photo {GROUP_SIZE[0]}x{GROUP_SIZE[1]}: {len(found)} faces found by {detector} (widths {widths} px), "
        f"{n} edited; detection {detect_s:.2f} s, prepare (detect + align + masks + crops) {prep_s:.2f} s, "
        f"paste-back {paste_s:.2f} s; overhead {overhead:.2f} s"
        + ("" if share is None else f" = {100 * share:.1f}% of a {GROUP_STEPS}-step edit ({full25:.1f} s, {how})")
    )
    pipelines = face_pipelines(photo, truths, mask, editor.conditions, sigma_px, repeats)
    return {
        "size": list(GROUP_SIZE),
        "face_pipelines": pipelines,
        "faces_found": len(found),
        "faces_edited": n,
        "face_widths_px": widths,
        "detector": detector,
        "detect_seconds": round(detect_s, 3),
        "prepare_seconds": round(prep_s, 3),
        "paste_back_seconds": round(paste_s, 3),
        "overhead_seconds": round(overhead, 3),
        "edit_25_steps_seconds": None if full25 is None else round(full25, 2),
        "edit_25_steps": how,
        "overhead_share_of_25_step_edit": None if share is None else round(share, 4),
        "target_share": 0.10,
        "by_steps": per_steps,
    }


def face_pipelines(photo, truths, mask, conditions, sigma_px: float, repeats: int) -> dict:
    """The face pipeline alone (no generation) on the group photo, per detector: detection + landmarks (+ the face
    mesh), the automatic `mesh` masks, alignment and crops (`helper.prepare`), and paste-back (`helper.paste`);
    and the same with the user's mask. The faces found and the false ones, against the composite's truths.
    Target (issue 21): under 0.5 s per 12 MP photo with 4 faces on 2 CPU cores."""
    from facepaint.method.face_helper import FaceHelper
    from tools.composites import match

    out = {}
    for kind in ("mediapipe", "opencv"):
        helper = FaceHelper(conditions.resolution, conditions.parts, detector=kind, mask_backend="mesh", device="cpu")
        helper.face_detector(), helper.face_mesh()  # loaded before the clock starts
        faces, name = helper.detect(photo)
        hit, false = match(faces, truths)
        row = {"detector": name, "faces": len(truths), "found": len(hit), "false": len(false)}
        for what, m in (("mesh_mask", None), ("user_mask", mask)):
            prep_s, _, _ = measure(partial(helper.prepare, photo, m), torch.device("cpu"), repeats)
            prepared = helper.prepare(photo, m)
            fake = [job.image for job in prepared.jobs]
            paste_s, _, _ = measure(
                partial(helper.paste, prepared, fake, sigma_px, True), torch.device("cpu"), repeats
            )
            row[what] = {
                "edited": len(prepared.jobs),
                "prepare_seconds": round(prep_s, 3),
                "paste_back_seconds": round(paste_s, 3),
                "total_seconds": round(prep_s + paste_s, 3),
                "target_met": prep_s + paste_s < 0.5,
            }
        out[kind] = row
    print(f"face pipeline on the {photo.shape[1]}x{photo.shape[0]} photo ({len(truths)} faces), no generation, "
          f"{torch.get_num_threads()} threads:")  # fmt: skip
    head = f"  {'detector':<22} {'found':>6} {'false':>6}  {'mesh masks: prep + paste = total':>34}"
    print(f"{head}  {'user mask: total':>17}")
    for row in out.values():
        a, b = row["mesh_mask"], row["user_mask"]
        print(
            f"  {row['detector']:<22} {row['found']:>3}/{row['faces']:<2} {row['false']:>6}  "
            f"{a['prepare_seconds']:>10.3f} + {a['paste_back_seconds']:.3f} = {a['total_seconds']:.3f} s "
            f"({'<' if a['target_met'] else '>='} 0.5)  {b['total_seconds']:>13.3f} s"
        )
    return out


# -------------------------------------------------------------------------------------------- main


def edit_flops(model: ModelConfig, resolution: int, latent_factor: int) -> dict[str, float]:
    """Model FLOPs of one edit's parts at `resolution`, counted on the meta device (no weights, no time):
    the UNet forward for a guided step (batch 2: unconditional + conditional), one VAE encode (the
    masked image), one VAE decode, one text-encoder forward (there are two: prompt and negative)."""
    lat = resolution // latent_factor
    with torch.device("meta"):
        c = random_components(model, parts=("unet", "vae", "text_encoder"))
        d = c.text_encoder.config.hidden_size
        n = c.text_encoder.config.max_position_embeddings
        x, t, e = torch.empty(2, 9, lat, lat), torch.zeros(2, dtype=torch.long), torch.empty(2, n, d)
        img, z = torch.empty(1, 3, resolution, resolution), torch.empty(1, c.vae.config.latent_channels, lat, lat)
        ids = torch.zeros(1, n, dtype=torch.long)
    return {
        "unet_guided_step": forward_flops(lambda: c.unet(x, t, encoder_hidden_states=e)),
        "vae_encode": forward_flops(lambda: c.vae.encode(img)),
        "vae_decode": forward_flops(lambda: c.vae.decode(z)),
        "text_encoder": forward_flops(lambda: c.text_encoder(ids)),
    }


def flops_per_edit(f: dict, steps: int) -> float:
    return steps * f["unet_guided_step"] + f["vae_encode"] + f["vae_decode"] + 2 * f["text_encoder"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    add_profile_argument(ap)
    ap.add_argument("--resolution", type=int, default=None, help="px; default masks.resolution (512 paper, 128 demo)")
    ap.add_argument(
        "--steps",
        type=int,
        nargs="+",
        default=None,
        help="denoising step counts; default sampling.steps and half of it (50 25 paper, 10 5 demo)",
    )
    ap.add_argument(
        "--batch", type=int, default=None, help="the throughput batch (default 8; 2 for the full-size model on a CPU)"
    )
    ap.add_argument("--repeats", type=int, default=None, help="timed calls per row (default 5 CUDA, 3 CPU)")
    ap.add_argument(
        "--dtype",
        choices=("bf16", "fp16"),
        default=None,
        help=f"half precision of `optimized` on a GPU (default Speed's: {Speed().dtype})",
    )
    ap.add_argument(
        "--compile",
        dest="compile_unet",
        action="store_true",
        default=None,
        help="torch.compile the UNet in `optimized` (default: on CUDA only)",
    )
    ap.add_argument("--no-compile", dest="compile_unet", action="store_false")
    ap.add_argument("--variants", nargs="+", default=None, help="run only these variants (by name)")
    ap.add_argument("--ablate", action="store_true", help="also `optimized` minus each optimisation in turn")
    ap.add_argument("--seed", type=int, default=0, help="of the benchmark's random photos")
    ap.add_argument("--out", default=None, help="json path (default bench/results/edit-<device>.json)")
    ap.add_argument("--group", action="store_true", help="only the 4000x3000 photo with 4 faces (issue 13)")
    ap.add_argument("--fixture", type=Path, default=REPO.parent / "shared" / "fixtures" / "celebamask-hq-mini")
    ap.add_argument("--detector-weights", type=Path, default=None, help="RetinaFace weights for --group")
    args = ap.parse_args()

    device = pick_device(args.device)
    gpu = device.type == "cuda"
    params, profile = bench_params(args.profile, device)
    model = model_config(params)
    masks_cfg = section(params, "masks", MaskConfig)
    sampling = section(params, "sampling", SamplingOptions)
    adapter_scale = section(params, "train", TrainConfig).adapter_scale
    full = full_size(model)
    if full and not gpu and args.steps is None and not args.group:
        ap.error(
            "the full-size model on a CPU runs the 860M-parameter UNet and the 512 px VAE: a 1-step edit takes "
            "~40 s on 2 cores. Give small step counts, e.g. --steps 1 --batch 2 --repeats 1 --variants optimized"
        )
    if full and not gpu:
        warnings.warn(
            "full SD1.5 architecture on a CPU: each UNet forward takes seconds; this run takes minutes", stacklevel=1
        )
    res = args.resolution or masks_cfg.resolution
    steps_list = args.steps or sorted({sampling.steps, max(1, sampling.steps // 2)}, reverse=True)
    batch = args.batch or (2 if full and not gpu else 8)
    repeats = args.repeats or (5 if gpu else 3)
    # how every edit samples and blends (the evaluation's settings); the step count is the benchmark's variation
    options = sampling
    # the json's record of them: scheduler, guidance_scale, strength, negative_prompt, sigma (steps: `steps`)
    sampled = {k: v for k, v in dataclasses.asdict(sampling).items() if k != "steps"}
    compile_unet = gpu if args.compile_unet is None else args.compile_unet
    all_variants = variants(gpu, args.dtype, compile_unet, args.ablate)
    chosen = args.variants or list(all_variants)
    unknown = set(chosen) - set(all_variants)
    if unknown:
        ap.error(f"unknown variant(s) {sorted(unknown)}; choose from {list(all_variants)}")
    targets_apply = gpu and full and res == TARGET_RESOLUTION
    config = (
        "full: SD1.5 inpainting architecture (random weights)"
        if full
        else "scaled-down: tiny SD1.5-shaped model (random weights) -- NOT comparable with the targets"
    )

    flops = edit_flops(model, res, masks_cfg.latent_factor)
    dev_name = device_name(device)
    peak_tf = peak_tflops(dev_name) if gpu else None
    photo, mask = photo_like(res, args.seed), face_ellipse(res)
    photos = [photo_like(res, args.seed + i) for i in range(batch)]
    masks = [mask] * batch
    t0 = time.perf_counter()
    comps = random_components(model, parts=("vae", "unet", "text_encoder", "tokenizer", "scheduler"))
    adapter = random_adapter(comps, model.seed)
    print(f"built {comps.name} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    conditions = Conditions(
        model=model,
        resolution=res,
        adapter_scale=adapter_scale,
        parts=masks_cfg.parts,
        mask_backend=masks_cfg.backend,
        latent_factor=masks_cfg.latent_factor,
    )
    rows, notes, runtimes = [], [], {}
    tmp = tempfile.TemporaryDirectory(prefix="facepaint-bench-")
    artifact = bench_artifact(Path(tmp.name) / "artifact", comps, adapter, conditions)
    if args.group:
        if not (args.fixture / "ids.txt").is_file():
            ap.error(f"--group needs the CelebAMask-HQ fixture at {args.fixture} (--fixture PATH)")
        editor = build_editor(
            comps, adapter, artifact, all_variants["optimized"], device, detector_weights=args.detector_weights
        )
        steps_group = args.steps or [GROUP_STEPS]
        group = bench_group(editor, args.fixture, steps_group, args.repeats or (5 if gpu else 1), device, options)
        tmp.cleanup()
        result = {
            "device": dev_name,
            "device_type": device.type,
            "versions": versions(),
            "settings": {
                "profile": profile,
                "config": "full" if full else "scaled-down",
                "model": dataclasses.asdict(model),
                "resolution": res,
                **sampled,
                "runtime": dict(editor.inpainter.runtime),
                "threads": torch.get_num_threads(),
            },
            "group": group,
        }
        write_result(result, "edit-group", device, args.out)
        return
    for name in chosen:
        speed = all_variants[name]
        editor = build_editor(comps, adapter, artifact, speed, device)
        runtimes[name] = dict(editor.inpainter.runtime)
        for steps in steps_list:
            for b in (1, batch):
                fn = (
                    partial(edit_one, editor, photo, mask, steps, options)
                    if b == 1
                    else partial(edit_batch, editor, photos, masks, steps, options)
                )
                t0 = time.perf_counter()
                fn()  # warm-up (and compilation)
                if gpu:
                    torch.cuda.synchronize(device)
                warm = time.perf_counter() - t0
                sec, peak, times = measure(fn, device, repeats)
                row = {
                    "variant": name,
                    "steps": steps,
                    "batch": b,
                    "seconds_per_call": round(sec, 4),
                    "seconds_per_image": round(sec / b, 4),
                    "images_per_s": round(b / sec, 3),
                    "peak_bytes": peak,
                    "peak_gib": None if peak is None else round(peak / GIB, 3),
                    "warmup_seconds": round(warm, 2),
                    "times": [round(t, 4) for t in times],
                    "tflops_per_s": round(flops_per_edit(flops, steps) * b / sec / 1e12, 4),
                }
                if peak_tf:
                    row["mfu"] = round(row["tflops_per_s"] / peak_tf, 4)
                if targets_apply and b == 1:
                    ok = peak is not None and peak <= TARGET_PEAK_GIB * GIB
                    if steps == TARGET_STEPS:
                        ok = ok and sec <= TARGET_SECONDS
                    row["target_pass"] = bool(ok)
                rows.append(row)
                print(
                    f"  {name:<24} steps {steps:>3} batch {b:>2}: {sec / b:8.3f} s/image (warm-up {warm:.1f} s)",
                    flush=True,
                )
        del editor, fn
        gc.collect()
        if speed.compile != "off":
            torch._dynamo.reset()
        if gpu:
            torch.cuda.empty_cache()
    tmp.cleanup()  # the artifact is in memory (a finaliser removes the directory should a variant raise)

    mem_label = "peak GiB" if gpu else "RSS GiB"
    print(
        f"\nedit speed on {dev_name}; profile {profile or 'none (params.yaml)'}; {config}; {res} px, "
        f"{sampling.scheduler.upper()}, guidance {sampling.guidance_scale:g}, sigma {sampling.sigma:g} px at 512, "
        f"median of {repeats}"
    )
    header = (
        f"{'variant':<24} {'steps':>5} {'batch':>5} {'s/edit':>9} {'images/s':>9} {mem_label:>9} "
        f"{'TFLOP/s':>8} {'MFU':>6}"
    )
    print(header + (f"  {'target':<6}" if targets_apply else ""))
    for r in rows:
        mem = "-" if r["peak_gib"] is None else f"{r['peak_gib']:.3f}"
        line = (
            f"{r['variant']:<24} {r['steps']:>5} {r['batch']:>5} {r['seconds_per_image']:>9.3f} "
            f"{r['images_per_s']:>9.2f} {mem:>9} {r['tflops_per_s']:>8.3g} "
            f"{format(100 * r['mfu'], '.1f') + '%' if 'mfu' in r else 'n/a':>6}"
        )
        if "target_pass" in r:
            line += f"  {'pass' if r['target_pass'] else 'FAIL'}"
        print(line)
    print(
        f"model FLOPs per edit ({res} px): "
        + ", ".join(f"{n} steps {flops_per_edit(flops, n) / 1e12:.3g} TFLOP" for n in steps_list)
        + f" (UNet {flops['unet_guided_step'] / 1e9:.1f} GFLOP per guided step, VAE encode "
        f"{flops['vae_encode'] / 1e9:.1f} G + decode {flops['vae_decode'] / 1e9:.1f} G, text encoder 2 x "
        f"{flops['text_encoder'] / 1e9:.1f} G)" + (f"; MFU against {peak_tf:g} TFLOP/s dense bf16" if peak_tf else "")
    )
    if targets_apply:
        print(
            f"targets (batch 1): <= {TARGET_SECONDS} s per edit at {TARGET_STEPS} steps, <= {TARGET_PEAK_GIB} GiB peak"
        )
    else:
        notes.append(f"targets not evaluated: they apply to the full-size model at {TARGET_RESOLUTION} px on a GPU")
        print(
            f"(targets -- <= {TARGET_SECONDS} s/edit at {TARGET_STEPS} steps, <= {TARGET_PEAK_GIB} GiB peak -- "
            f"apply only to the full-size model at {TARGET_RESOLUTION} px on a GPU)"
        )
    if not gpu:
        notes.append("CPU memory is the process's peak resident set during the timed calls (weights included)")

    result = {
        "device": dev_name,
        "device_type": device.type,
        "versions": versions(),
        "settings": {
            "profile": profile,
            "config": "full" if full else "scaled-down",
            "model": dataclasses.asdict(model),
            "resolution": res,
            "steps": steps_list,
            "batch": batch,
            "repeats": repeats,
            **sampled,
            "conditions": conditions.as_dict(),
            "prompt": PROMPT,
            "seed": args.seed,
            "threads": torch.get_num_threads(),
            "variants": {k: {"speed": dataclasses.asdict(all_variants[k]), "runtime": runtimes[k]} for k in chosen},
        },
        "flops": {
            **flops,
            "per_edit": {n: flops_per_edit(flops, n) for n in steps_list},
            "counted": "FlopCounterMode, meta device",
        },
        "peak_bf16_tflops": peak_tf,
        "targets": {
            "seconds_per_edit_50_steps": TARGET_SECONDS,
            "peak_gib_batch1": TARGET_PEAK_GIB,
            "evaluated": targets_apply,
        },
        "notes": notes,
        "results": rows,
    }
    write_result(result, "edit", device, args.out)


if __name__ == "__main__":
    main()
