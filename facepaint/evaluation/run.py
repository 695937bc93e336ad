"""Evaluation (SPEC section 5): every method on the same image-prompt pairs, the paper's metrics.

    `evaluate_methods` (the evaluate stage: every method of `evaluate.methods` for one artifact, Table 2) and
    `evaluate_variants` (the ablation stage: `ours` for each loss variant's artifact) share one path:
    the pairs and their photos (`prepare`), the methods' edits timed and measured (`run`), the summary.
    facepaint.evaluation.outputs writes what each stage reports; .tables and .plots make its tables and figures.

Pairs. N test images drawn with a seed from the test split (ordered by SHA-256 of "<seed>:<id>", as
the split is, so the draw is the same on every machine and version), each with its canonical
evaluation prompt from the captions stage. Every method edits the same pairs with the same seeds, and
samples as params.yaml `sampling` says (facepaint.method.options.SamplingOptions, blended with its sigma).

Regions (`facepaint.evaluation.metrics`; the publication does not say which region its background figures use):
- `bg`, the headline background: the complement of the binary face mask M. The published background
  PSNR (35.04 dB with blending, 34.59 dB without) is finite, so it must include pixels that the soft
  mask M_soft changes; outside M is one region where they can be finite (M_soft reaches about 3 sigma past M),
  our choice ([ours]): nothing shows it is the publication's, so the other regions are reported beside it.
- `dilated`: outside M dilated by `background_dilation` pixels (keeps the blended seam out).
- `outside_soft`: where M_soft is exactly 0. A pixel-blended method returns the input there bit for
  bit (PSNR = inf), which `changed_outside_soft` counts.
- `full`: the whole image.
PSNR and LPIPS (VGG) are computed per image in each region.

Aggregates: mean and standard deviation over images (numpy's population std, ddof=0; the publication
gives mean +- std without saying which). An image whose region is reproduced exactly has PSNR = inf; it
is counted in `*_inf` and left out of the mean and std (a mean with inf in it says nothing).

Efficiency: seconds per edit (CUDA events around one edit on a GPU, CPU time without one) after
`warmup` untimed edits, and peak GPU memory, per method; the median over pairs is reported.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from facepaint.common.checks import MAX_SEED, check_fields, check_number, settings
from facepaint.common.errors import FacepaintError
from facepaint.common.images import decode_png, load_rgb, resize_binary, resize_rgb
from facepaint.common.io import sha256_file
from facepaint.data.faces import as_dataset
from facepaint.evaluation.methods.base import EditInput, measure
from facepaint.evaluation.methods.blended_diffusion import BlendedDiffusionSettings
from facepaint.evaluation.methods.blended_latent import BlendedLatentSettings
from facepaint.evaluation.methods.brushnet import BrushNetSettings
from facepaint.evaluation.methods.diptych import DiptychSettings
from facepaint.evaluation.methods.registry import METHODS, Baselines, build_methods
from facepaint.method.artifact import load_artifact
from facepaint.method.blend import sigma_pixels, soft_mask
from facepaint.method.masks import face_crop
from facepaint.method.models import pick_device
from facepaint.method.options import SamplingOptions
from facepaint.method.speed import DTYPES

METRICS = ("fid", "psnr", "lpips", "pickscore")
# What a metric or method left out of `evaluate.metrics` / `evaluate.methods` is reported as, instead of a number
# (never "unavailable", which says it was tried and its weights were missing): the demo profile leaves out those
# whose weights are downloads (its model is a demo model), and nothing is attempted for them.
OFF_IN_DEMO = "off in the demo profile"
OFF = "off"
# What the reported numbers mean; recorded in metrics.json so that figures made under other definitions are
# never compared with these (the registry's gate). Change it whenever a metric's region or reference changes.
DEFINITIONS = "2: background = outside M (headline), dilated, M_soft == 0; FID reference excludes the pairs"


@dataclass
class EvalConfig:  # params.yaml `evaluate` (how the methods sample: params.yaml `sampling`)
    n_pairs: int
    seed: int  # draws the pairs and seeds their edits
    methods: list
    metrics: list
    background_dilation: int  # pixels at the evaluation resolution
    fid_reference_size: int  # real test images whose Inception statistics FID compares against
    fid_batch_size: int  # images per Inception forward
    warmup: int  # untimed edits per method before timing
    grid_photos: int
    profile_radius: int  # pixels on each side of the mask boundary in the profile plot
    device: str
    dtype: str  # fp16 | bf16 | fp32 on a GPU; the CPU uses fp32
    baselines: dict  # where each baseline's weights are (facepaint.evaluation.methods.registry.Baselines)
    brushnet: dict  # BrushNet's options (facepaint.evaluation.methods.brushnet.BrushNetSettings)
    diptych: dict  # Diptych Prompting's sampling (facepaint.evaluation.methods.diptych.DiptychSettings)
    blended_latent: dict  # BLD's settings (facepaint.evaluation.methods.blended_latent.BlendedLatentSettings)
    blended_diffusion: dict  # Blended Diffusion's (facepaint.evaluation.methods.blended_diffusion)

    def __post_init__(self):
        # the mappings: `settings`
        check_fields(
            self, "evaluate", skip=("baselines", "brushnet", "diptych", "blended_latent", "blended_diffusion")
        )
        self.baselines = settings(Baselines, self.baselines, "evaluate.baselines")
        self.brushnet = settings(BrushNetSettings, self.brushnet, "evaluate.brushnet")
        self.diptych = settings(DiptychSettings, self.diptych, "evaluate.diptych")
        self.blended_latent = settings(BlendedLatentSettings, self.blended_latent, "evaluate.blended_latent")
        self.blended_diffusion = settings(
            BlendedDiffusionSettings, self.blended_diffusion, "evaluate.blended_diffusion"
        )
        self.methods, self.metrics = list(self.methods), list(self.metrics)
        unknown = [m for m in self.methods if m not in METHODS] + [m for m in self.metrics if m not in METRICS]
        if unknown:
            raise ValueError(
                f"evaluate: unknown method(s)/metric(s) {unknown}; methods: {METHODS}, metrics: {METRICS}"
            )
        if self.n_pairs < 1 or self.background_dilation < 0 or self.warmup < 0:
            raise ValueError("evaluate.n_pairs must be >= 1, background_dilation and warmup >= 0")
        for name in ("fid_reference_size", "fid_batch_size", "grid_photos", "profile_radius"):
            check_number(f"evaluate.{name}", getattr(self, name), 1, whole=True)
        check_number("evaluate.seed", self.seed, 0, MAX_SEED, whole=True)
        if self.dtype not in DTYPES:
            raise ValueError(f"evaluate.dtype must be one of {DTYPES}, got {self.dtype!r}")


# -------------------------------------------------------------------------------------------- pairs


def hash_order(ids, seed: int) -> list[int]:
    return sorted((int(i) for i in ids), key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).digest())


def draw_pairs(captions: pd.DataFrame, usable_ids, n: int, seed: int) -> tuple[pd.DataFrame, list[str]]:
    """N (id, prompt) pairs from the test split's usable images; notes say when fewer are available."""
    test = captions[(captions["split"] == "test") & captions["eval_prompt"].notna()]
    test = test[test["id"].isin(set(int(i) for i in usable_ids))].set_index("id")
    chosen = hash_order(test.index, seed)[:n]
    notes = (
        []
        if len(chosen) == n
        else [f"only {len(chosen)} usable test images with prompts: evaluating {len(chosen)} pairs, not {n}"]
    )
    pairs = pd.DataFrame({"id": chosen, "prompt": [test.at[i, "eval_prompt"] for i in chosen]})
    pairs["seed"] = [
        seed * 1000 + k for k in range(len(chosen))
    ]  # one sampling seed per pair, the same for all methods
    return pairs, notes


def fid_reference_ids(test_ids, exclude, size: int, seed: int) -> list[int]:
    """FID's reference set: up to `size` test images, in the seeded hash order, none of them in `exclude`
    (the evaluated pairs)."""
    excluded = {int(i) for i in exclude}
    return [i for i in hash_order(test_ids, seed) if i not in excluded][:size]


@dataclass
class Sample:
    id: int
    image: np.ndarray  # uint8 (R, R, 3)
    mask: np.ndarray  # bool (R, R)
    soft: np.ndarray  # float32 (R, R)
    beta: float


def load_sample(root, row: pd.Series, resolution: int, sigma: float) -> Sample:
    """A test photo at the evaluation `resolution` (the model's) with its face mask M from the masks table
    and M_soft = G_sigma * M (`sigma`: `SamplingOptions.sigma`, in pixels of a 512 px crop)."""
    image = resize_rgb(load_rgb(as_dataset(root).image_path(int(row["id"]))).image, resolution)
    mask = resize_binary(decode_png(row["mask"]), resolution)
    return Sample(int(row["id"]), image, mask, soft_mask(mask, sigma_pixels(sigma, resolution)), float(mask.mean()))


def switched_off(chosen, known, key: str, demo: bool, needs: dict | None = None) -> dict:
    """{name: why} for each of `known` that is not in `chosen` (params.yaml `evaluate.<key>`): not attempted, and
    reported as `OFF_IN_DEMO` for a demo model (the demo profile's choice), else `OFF`; `needs`: what each would
    download. PSNR is always computed (it needs no weights), so it is never off."""
    status = OFF_IN_DEMO if demo else OFF
    return {
        name: f"{status}: not in params.yaml evaluate.{key}"
        + (f"; it needs {needs[name]}" if needs and name in needs else "")
        + ("; profiles/paper.yaml turns it on" if demo else "")
        for name in known
        if name not in chosen and name != "psnr"
    }


def off_status(why: str) -> str:
    """What a metric that is off reads as in metrics.json and the tables (`OFF_IN_DEMO`, `OFF`): its reason's head."""
    return why.split(": ", 1)[0]


def build_metrics(names, device, fid_batch_size: int) -> tuple[dict, dict]:
    """({name: metric object} for the metrics of `names` that can be built here, {name: why not} for the
    others). PSNR needs no object."""
    from facepaint.evaluation import metrics as m

    factories = {
        "lpips": lambda: m.LPIPS(device=device),
        "fid": lambda: m.FID(device=device, batch_size=fid_batch_size),
        "pickscore": lambda: m.PickScore(device=device),
    }
    built, unavailable = {}, {}
    for name in names:
        if name == "psnr":
            continue
        try:
            built[name] = factories[name]()
        except m.MetricUnavailable as e:
            unavailable[name] = str(e)
    return built, unavailable


# ------------------------------------------------------------------------------------- per image


REGIONS = ("bg", "dilated", "outside_soft", "full")  # see the module docstring; bg is the headline


def regions(sample: Sample, dilation: int) -> dict[str, np.ndarray | None]:
    """The pixel regions the metrics are taken on (bool HxW; None: the whole image). An empty region
    (no pixel outside M_soft, say) is left out."""
    from facepaint.evaluation.metrics import background_region

    out = {
        "bg": ~sample.mask,
        "dilated": background_region(sample.mask, dilation),
        "outside_soft": sample.soft == 0,
        "full": None,
    }
    return {k: v for k, v in out.items() if v is None or v.any()}


def image_metrics(sample: Sample, output: np.ndarray, dilation: int, lpips=None) -> dict:
    """PSNR (and LPIPS when given) of `output` against the input in every region; NaN for an empty one."""
    from facepaint.evaluation.metrics import psnr

    found = regions(sample, dilation)
    row = {}
    for name in REGIONS:
        region = found.get(name, False)
        empty = region is False
        row[f"psnr_{name}"] = math.nan if empty else psnr(sample.image, output, region)
        if lpips is not None:
            row[f"lpips_{name}"] = math.nan if empty else lpips(sample.image, output, region)
    outside_soft = sample.soft == 0
    row["changed_outside_soft"] = int((output != sample.image).any(axis=2)[outside_soft].sum())
    return row


def mean_std(values) -> tuple[float, float, int]:
    """(mean, std, number of inf) over the finite values; (inf, nan, n) when every value is inf, (nan, nan, 0)
    when there is none."""
    v = np.asarray(pd.Series(values, dtype="float64").dropna())
    finite, n_inf = v[np.isfinite(v)], int(np.isinf(v).sum())
    if len(finite):
        return float(finite.mean()), float(finite.std()), n_inf
    return (math.inf if n_inf else math.nan), math.nan, n_inf


def summarise(table: pd.DataFrame) -> dict:
    """Per-method aggregates of the per-image table: `<metric>` the mean, `<metric>_std`, and for PSNR
    `<metric>_inf` the images reproduced exactly (see the module docstring)."""
    out = {}
    for method, g in table.groupby("method", sort=False):
        s = {"pairs": len(g)}
        for name in REGIONS:
            col = f"psnr_{name}"
            if col in g:
                s[col], s[f"{col}_std"], s[f"{col}_inf"] = mean_std(g[col])
        for col in [*(f"lpips_{r}" for r in REGIONS), "pickscore"]:
            if col in g and g[col].notna().any():
                s[col], s[f"{col}_std"], _ = mean_std(g[col])
        s["changed_outside_soft"] = int(g["changed_outside_soft"].sum())
        s["seconds_per_edit"] = float(g["seconds"].median())
        mem = g["peak_mem_mib"].dropna()
        s["peak_mem_mib"] = float(mem.max()) if len(mem) else None
        s["clock"] = g["clock"].iloc[0]
        out[method] = s
    return out


# ---------------------------------------------------------------------------------------- figures


# ------------------------------------------------------------------------------------------ table


def error_text(e: BaseException) -> str:
    """One line for a report: the exception and where it was raised."""
    tb = traceback.extract_tb(e.__traceback__)
    where = f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
    return f"{type(e).__name__}: {e}{where}"[:500]


# -------------------------------------------------------------------------------------------- run


def _face(s: Sample) -> np.ndarray:
    x0, y0, side = face_crop(s.mask, 0.1)
    return s.image[y0 : y0 + side, x0 : x0 + side]


@dataclass
class EvalResult:
    table: pd.DataFrame  # one row per (method, pair)
    summary: dict  # per method aggregates
    fid: dict  # per method FID (when available)
    outputs: dict  # method -> list of uint8 outputs, in pair order (None: a pair the method does not edit)
    failed: dict  # method -> error text
    skipped: dict = field(default_factory=dict)  # method -> why it edited no pair


def run(
    samples: list[Sample],
    pairs: pd.DataFrame,
    methods: dict,
    cfg: EvalConfig,
    device,
    lpips=None,
    pickscore=None,
    fid=None,
    fid_reference=None,
    progress: bool = True,
) -> EvalResult:
    """Every method on every pair (timed), then the metrics. A method that raises is reported in
    `failed` and the others go on."""
    # Paint-by-Example edits from an exemplar instead of text: the face of the next pair's photo.
    exemplars = [_face(samples[(k + 1) % len(samples)]) for k in range(len(samples))]
    inputs = [
        EditInput(s.image, s.mask, s.soft, s.beta, p, int(seed), exemplar=e)
        for s, p, seed, e in zip(samples, pairs["prompt"], pairs["seed"], exemplars)
    ]
    rows, outputs, failed, skipped = [], {}, {}, {}
    bar = tqdm(total=len(methods) * len(inputs), desc="evaluate", unit="edit", disable=not progress)
    for name, method in methods.items():
        bar.set_postfix(method=name)
        todo = [method.applies(x) for x in inputs]  # a method may edit only some pairs (MSaGAN: its attribute's)
        if not any(todo):
            skipped[name] = method.scope()
            bar.update(len(inputs))
            continue
        outs, timing = [], []
        try:
            for _ in range(cfg.warmup):
                method.edit(inputs[todo.index(True)])
            for x, do in zip(inputs, todo):
                out, t = measure(method, x, device) if do else (None, None)
                outs.append(out)
                timing.append(t)
                bar.update(1)
        except Exception as e:  # one method's failure must not lose the others' results
            failed[name] = error_text(e)
            bar.update(len(inputs) - len(outs))
            continue
        outputs[name] = outs  # in pair order; None for a pair it does not edit
        for k, (s, x, out, t) in enumerate(zip(samples, inputs, outs, timing)):
            if out is None:
                continue
            rows.append(
                {
                    "method": name,
                    "pair": k,
                    "id": s.id,
                    "prompt": x.prompt,
                    "seed": x.seed,
                    "beta": s.beta,
                    **image_metrics(s, out, cfg.background_dilation, lpips),
                    **t,
                }
            )
    bar.close()
    table = pd.DataFrame(rows)
    if pickscore is not None and len(table):
        scores = {}
        for name, outs in outputs.items():
            done = [k for k, o in enumerate(outs) if o is not None]
            got = pickscore([outs[k] for k in done], [pairs["prompt"].iloc[k] for k in done])
            scores.update({(name, k): v for k, v in zip(done, got)})
        table["pickscore"] = [scores[(m, k)] for m, k in zip(table["method"], table["pair"])]
    fids = {}
    if fid is not None and fid_reference is not None:
        for name, outs in outputs.items():
            done = [o for o in outs if o is not None]  # FID needs two images for a covariance
            fids[name] = fid.score(iter(done), fid_reference) if len(done) >= 2 else None
    summary = summarise(table) if len(table) else {}
    return EvalResult(table, summary, fids, outputs, failed, skipped)


# ------------------------------------------------------------------------- the stages' shared path


@dataclass
class Evaluation:
    """One evaluation: the pairs, their photos at the model's resolution, every method's results."""

    pairs: pd.DataFrame  # id, prompt, seed
    samples: list[Sample]
    result: EvalResult
    resolution: int
    device: str  # a description of the device ("CPU (2 threads, x86_64)", a GPU's name)
    unavailable_methods: dict = field(default_factory=dict)  # name -> why
    unavailable_metrics: dict = field(default_factory=dict)  # name -> why
    notes: list = field(default_factory=list)
    off_methods: dict = field(default_factory=dict)  # name -> why (switched_off): not attempted
    off_metrics: dict = field(default_factory=dict)  # name -> why (switched_off): not attempted
    method_notes: dict = field(default_factory=dict)  # name -> how it ran (Method.note)


def prepare(root, masks: pd.DataFrame, captions: pd.DataFrame, cfg: EvalConfig, resolution: int, sigma: float):
    """(pairs, their samples at `resolution` with M_soft of `sigma`, notes) from the masks and captions tables."""
    mask_table = masks.set_index("id", drop=False)
    pairs, notes = draw_pairs(captions, mask_table.index, cfg.n_pairs, cfg.seed)
    if not len(pairs):
        raise EvaluationError("no usable test images with evaluation prompts; check data/reports/*.json")
    samples = [load_sample(root, mask_table.loc[i], resolution, sigma) for i in pairs["id"]]
    return pairs, samples, notes


def evaluate_methods(
    root,
    masks: pd.DataFrame,
    captions: pd.DataFrame,
    artifact,
    cfg: EvalConfig,
    sampling: SamplingOptions,
    *,
    test_ids=(),
    fid_cache: Path | None = None,
    progress: bool = True,
) -> Evaluation:
    """Every method of `cfg.methods` for the artifact directory `artifact`, at its resolution, on the same pairs,
    with every metric of `cfg.metrics` that can be had here. FID compares with the Inception statistics of
    up to `fid_reference_size` of `test_ids` that are not pairs, cached in `fid_cache` (facepaint.evaluation.
    metrics.FID). Methods and metrics whose weights are missing are listed as unavailable, with the reason; those
    left out of `cfg.methods` / `cfg.metrics` are listed as off (`switched_off`), never attempted."""
    conditions = load_artifact(artifact).conditions
    resolution = conditions.resolution  # every method runs at the model's resolution
    pairs, samples, notes = prepare(root, masks, captions, cfg, resolution, sampling.sigma)
    device = pick_device(cfg.device)
    methods, unavailable_methods = _methods(cfg.methods, artifact, cfg, sampling, device)
    metric_objs, unavailable_metrics = build_metrics(cfg.metrics, device, cfg.fid_batch_size)
    reference = None
    if "fid" in metric_objs:
        ids = fid_reference_ids(test_ids, pairs["id"], cfg.fid_reference_size, cfg.seed)
        reference = fid_reference(metric_objs["fid"], root, ids, resolution, fid_cache)
    result = run(samples, pairs, methods, cfg, device, **metric_objs, fid_reference=reference, progress=progress)
    demo = conditions.model.demo_notice is not None
    return Evaluation(
        pairs,
        samples,
        result,
        resolution,
        device_name(device),
        unavailable_methods,
        unavailable_metrics,
        notes,
        off_methods=switched_off(cfg.methods, METHODS, "methods", demo),
        off_metrics=switched_off(cfg.metrics, METRICS, "metrics", demo, _downloads()),
        method_notes={n: m.note for n, m in methods.items() if m.note},
    )


def _downloads() -> dict:
    from facepaint.evaluation.metrics import DOWNLOADS

    return DOWNLOADS


def evaluate_variants(
    root, masks: pd.DataFrame, captions: pd.DataFrame, artifacts: dict, cfg: EvalConfig, sampling: SamplingOptions,
    *, progress: bool = True,
) -> Evaluation:  # fmt: skip
    """`ours` (pixel-blended) of each artifact of `artifacts` ({name: directory}, all trained at the first's
    resolution) on the same pairs, as `evaluate_methods` runs it; FID left out (a few pairs give no
    meaningful FID). A variant that fails raises EvaluationError: a comparison with a row missing says nothing."""
    conditions = load_artifact(next(iter(artifacts.values()))).conditions
    resolution = conditions.resolution
    pairs, samples, notes = prepare(root, masks, captions, cfg, resolution, sampling.sigma)
    device = pick_device(cfg.device)
    methods = {name: _methods(["ours"], path, cfg, sampling, device)[0]["ours"] for name, path in artifacts.items()}
    metric_objs, unavailable = build_metrics([m for m in cfg.metrics if m != "fid"], device, cfg.fid_batch_size)
    result = run(samples, pairs, methods, cfg, device, **metric_objs, progress=progress)
    if result.failed:
        raise EvaluationError(f"a variant failed: {result.failed}")
    demo = conditions.model.demo_notice is not None
    off = switched_off(cfg.metrics, [m for m in METRICS if m != "fid"], "metrics", demo, _downloads())
    return Evaluation(pairs, samples, result, resolution, device_name(device), {}, unavailable, notes, off_metrics=off)


def _methods(names: list[str], artifact, cfg: EvalConfig, sampling: SamplingOptions, device):
    """`build_methods` with the evaluate section's device, dtype and baselines' settings."""
    return build_methods(
        names,
        artifact,
        sampling,
        device=str(device),
        dtype=cfg.dtype,
        baselines=cfg.baselines,
        brushnet=cfg.brushnet,
        diptych=cfg.diptych,
        blended_latent=cfg.blended_latent,
        blended_diffusion=cfg.blended_diffusion,
    )


class EvaluationError(FacepaintError):
    """An evaluation that cannot give a result (no usable pairs, a failed ablation variant)."""


def fid_reference(fid, root, ids: list[int], resolution: int, cache: Path | None):
    """Inception statistics of the real test images `ids` at `resolution`, cached in `cache` (a directory)
    under a key naming the exact images, resolution and extractor; None for no cache."""
    dataset = as_dataset(root)
    files = [sha256_file(dataset.image_path(i)) for i in ids]  # the content: a folder's crops share their paths
    key = hashlib.sha256(
        json.dumps([str(Path(dataset.root).resolve()), ids, files, resolution, fid.name]).encode()
    ).hexdigest()
    path = None if cache is None else Path(cache) / f"{key[:16]}.npz"
    if path is not None and path.is_file():
        return fid.load_stats(path)
    images = (resize_rgb(load_rgb(dataset.image_path(i)).image, resolution) for i in ids)
    mu, sigma, n = fid.reference_stats(images)
    if path is None:
        return mu, sigma, n
    fid.save_stats(path, mu, sigma, n, {"ids": len(ids), "resolution": resolution, "root": str(root)})
    return fid.load_stats(path)


def device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({torch.get_num_threads()} threads, {platform.machine()})"
