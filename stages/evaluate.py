"""evaluate: every method on the same N test image-prompt pairs; FID, background PSNR and LPIPS,
PickScore, seconds and memory per edit; the comparison table and figures (SPEC section 5).

Inputs:  data/model (the trained artifact; its base model is the baselines' base), data.root,
         data/split.parquet, data/masks.parquet, data/captions.parquet, params `evaluate`
Outputs: data/evaluate/metrics.json (DVC metrics), data/evaluate/per_image.parquet,
         data/evaluate/table.md, data/evaluate/profile.csv and data/evaluate/plots/*.png (DVC plots),
         data/fid_stats/ (cached Inception statistics of the real test images; kept between runs)
Run:     dvc repro evaluate     (or: python -m stages.evaluate)

Metrics or methods whose weights cannot be had here are reported as unavailable, with the reason,
in metrics.json and table.md; they never get a number.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import asdict
from pathlib import Path

import torch

from facepaint import evaluate as ev
from facepaint.artifact import load_artifact
from facepaint.images import load_rgb, resize_rgb
from facepaint.io import atomic_path, read_parquet, write_json, write_parquet
from facepaint.models import pick_device
from stages.common import CAPTIONS, EVALUATE, FID_STATS, MASKS, MODEL, SPLIT, cli, data_root, load_params, section

PARAMS = (
    "data.root",
    "evaluate",
)  # the params.yaml keys this stage's outputs depend on (dvc.yaml lists exactly these)
# MLflow run tracking writes only to the tracking store and never fails the stage: its code cannot change
# the outputs, so it is not a DVC dep (tools/stage_deps.py does not follow it; editing it does not rerun).
BOOKKEEPING = ("tracking",)  # this stage uses tracking.runs only


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({torch.get_num_threads()} threads, {platform.machine()})"


def fid_reference(fid, root: Path, split: Path, resolution: int, cfg: ev.EvalConfig, extractor: str, exclude=()):
    """Inception statistics of `fid_reference_size` real test images that are not among the evaluated
    pairs (`exclude`: an edited photo's own original in the reference would pull its FID down), cached in
    data/fid_stats under a key naming the exact images, resolution and extractor."""
    test = read_parquet(split).query("split == 'test' and present")["id"]
    ids = ev.fid_reference_ids(test, exclude, cfg.fid_reference_size, cfg.seed)
    key = hashlib.sha256(json.dumps([str(root.resolve()), ids, resolution, extractor]).encode()).hexdigest()[:16]
    path = FID_STATS / f"{key}.npz"
    if path.is_file():
        return fid.load_stats(path)
    images = (resize_rgb(load_rgb(root / "CelebA-HQ-img" / f"{i}.jpg").image, resolution) for i in ids)
    mu, sigma, n = fid.reference_stats(images)
    fid.save_stats(path, mu, sigma, n, {"ids": len(ids), "resolution": resolution, "root": str(root)})
    return fid.load_stats(path)


def run(
    root: Path,
    cfg: ev.EvalConfig,
    model: Path = MODEL,
    split: Path = SPLIT,
    masks: Path = MASKS,
    captions: Path = CAPTIONS,
    out: Path = EVALUATE,
    progress: bool = True,
) -> dict:
    from facepaint.methods import build_methods

    artifact = load_artifact(model)
    FID_STATS.mkdir(parents=True, exist_ok=True)  # a DVC out even when FID is unavailable
    trained = artifact.conditions  # every method runs at the model's resolution; ours blends with its sigma
    resolution = trained.resolution
    mask_table = read_parquet(masks).set_index("id", drop=False)
    pairs, notes = ev.draw_pairs(read_parquet(captions), mask_table.index, cfg.n_pairs, cfg.seed)
    if not len(pairs):
        raise SystemExit("evaluate: no usable test images with evaluation prompts; check data/reports/*.json")
    samples = [ev.load_sample(root, mask_table.loc[i], resolution, trained.sigma) for i in pairs["id"]]

    device = pick_device(cfg.device)
    methods, unavailable_methods = build_methods(
        cfg.methods,
        model,
        cfg.inference(),
        device=str(device),
        dtype=cfg.dtype,
        baselines=cfg.baselines,
        brushnet=cfg.brushnet,
        diptych=cfg.diptych,
    )
    metric_objs, unavailable_metrics = ev.build_metrics(cfg.metrics, device, cfg.fid_batch_size)
    ref = None
    if "fid" in metric_objs:
        ref = fid_reference(
            metric_objs["fid"], root, split, resolution, cfg, metric_objs["fid"].name, exclude=pairs["id"]
        )
    result = ev.run(
        samples,
        pairs,
        methods,
        cfg,
        device,
        lpips=metric_objs.get("lpips"),
        pickscore=metric_objs.get("pickscore"),
        fid=metric_objs.get("fid"),
        fid_reference=ref,
        progress=progress,
    )

    device_name = _device_name(device)
    plots = out / "plots"
    write_parquet(
        result.table, out / "per_image.parquet", metadata={"evaluate": asdict(cfg), "artifact": artifact.version}
    )
    profile = ev.boundary_profile(samples, result.outputs, cfg.profile_radius)
    wide = profile.pivot(index="distance", columns="method", values="mean_abs_change").reset_index()
    with atomic_path(out / "profile.csv") as tmp:
        wide.to_csv(tmp, index=False)
    if len(result.table):
        ev.plot_distributions(result.table, plots / "background_distributions.png")
        blend_pair = {k: result.outputs[k][0] for k in ("ours", "ours_no_blend") if k in result.outputs}
        ev.plot_profile(profile, samples[0], blend_pair, plots / "boundary_profile.png")
        k = min(cfg.grid_photos, len(samples))
        ev.sample_grid(
            samples[:k],
            list(pairs["prompt"][:k]),
            {m: o[:k] for m, o in result.outputs.items()},
            plots / "samples.png",
        )
    table = ev.markdown_table(
        result.summary,
        result.fid,
        unavailable_methods,
        unavailable_metrics,
        result.failed,
        device_name,
        len(pairs),
        cfg.background_dilation,
    )
    with atomic_path(out / "table.md") as tmp:
        tmp.write_text(table)

    metrics = {
        "definitions": ev.DEFINITIONS,
        "pairs": len(pairs),
        "device": device_name,
        "resolution": resolution,
        "artifact": artifact.version,
        "methods": {
            name: {
                **ev.jsonable(s),
                **(
                    {"fid": result.fid[name]}
                    if name in result.fid
                    else {"fid": "unavailable"}
                    if "fid" in cfg.metrics
                    else {}
                ),
            }
            for name, s in result.summary.items()
        },
        "unavailable_methods": unavailable_methods,
        "unavailable_metrics": unavailable_metrics,
        "failed_methods": result.failed,
        "notes": notes,
    }
    for name in ("lpips", "pickscore"):
        if name in unavailable_metrics:
            cols = [f"lpips_{r}" for r in ev.REGIONS] if name == "lpips" else [name]
            for s in metrics["methods"].values():
                s.update(dict.fromkeys(cols, "unavailable"))
    write_json(metrics, out / "metrics.json")
    track(metrics, cfg, out, artifact.version)
    print(table)
    return metrics


def track(metrics: dict, cfg: ev.EvalConfig, out: Path, artifact_version: str) -> None:
    """Log the evaluation into this artifact version's MLflow run (never fatal: tracking.runs.Tracker)."""
    from tracking.runs import Tracker

    run = Tracker().start(artifact_version=artifact_version, params={"evaluate": asdict(cfg)})
    run.metrics({"eval": metrics["methods"]})
    run.artifacts(out, "evaluate")
    run.end()


def main() -> None:
    params = load_params()
    run(data_root(params), section(params, "evaluate", ev.EvalConfig))


if __name__ == "__main__":
    cli(main)
