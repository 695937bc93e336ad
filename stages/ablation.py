"""ablation: the publication's loss ablation (its Fig. 3): plain MSE vs mask-weighted loss, trained alike and
evaluated side by side on the same prompts.

Inputs:  data/model (the pipeline's model: the variant whose loss is `train.loss_weighting` is that model,
         not trained again), data/latents, data/captions.parquet, data/masks.parquet, data/split.parquet,
         data.root; params `ablation`, `model`, `train`, `masks.sigma`, `evaluate`
Outputs: data/ablation/models/<variant>/ (the artifacts of the variants trained here),
         data/ablation/metrics.json (DVC metrics), data/ablation/table.md, data/ablation/per_image.parquet,
         data/ablation/plots/samples.png (input and every variant per prompt) and metrics.png (DVC plots),
         data/ablation/checkpoints/ (a killed run resumes from them)
Run:     dvc exp run $(python profiles/flags.py ablation)       (or with the paper's profile:
         dvc exp run $(python profiles/flags.py paper ablation) -S data.root=...)

Every variant trains with the `train` params but `loss_weighting` (masked: w = M_latent + alpha, the SPEC's
loss; uniform: w = 1, the plain MSE) and is evaluated as `ours` (pixel-blended) on the evaluate stage's
pairs, seeds and sampling settings, with the per-image metrics (background PSNR and LPIPS, PickScore; FID
is left to the evaluate stage: a few pairs give no meaningful FID). Off by default (`ablation.variants: []`:
another full training at paper scale); then the stage only writes a note.
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from facepaint import check_fields
from facepaint import evaluate as ev
from facepaint.artifact import load_artifact
from facepaint.io import atomic_path, read_parquet, write_json, write_parquet
from facepaint.loss import WEIGHTINGS
from facepaint.masks import MaskConfig
from facepaint.models import ModelConfig, load_components, pick_device
from facepaint.train import TrainConfig, TrainData, conditions, train
from stages.common import (
    ABLATION,
    CAPTIONS,
    LATENTS,
    MASKS,
    MODEL,
    cli,
    data_root,
    keys,
    load_params,
    section,
)


@dataclass
class AblationConfig:  # params.yaml `ablation`
    variants: list  # train.loss_weighting values to compare ([] = off)
    grid_photos: int  # rows of the sample grid

    def __post_init__(self):
        check_fields(self, "ablation")
        self.variants = list(self.variants)
        unknown = [v for v in self.variants if v not in WEIGHTINGS]
        if unknown or len(set(self.variants)) != len(self.variants):
            raise ValueError(f"ablation.variants must be distinct values of {WEIGHTINGS}, got {self.variants}")
        if self.grid_photos < 1:
            raise ValueError(f"ablation.grid_photos must be >= 1, got {self.grid_photos}")


# The params.yaml keys this stage's outputs depend on (dvc.yaml lists exactly these).
PARAMS = (
    "data.root",
    "ablation",
    "model",
    "masks.sigma",
    *keys("train", TrainConfig, except_=(*TrainConfig.SPEED_KNOBS, *TrainConfig.CHECKPOINTING)),
    # the evaluate settings that make the pairs and the edits (not its method list, FID or figure settings)
    *keys(
        "evaluate",
        ev.EvalConfig,
        except_=(
            "methods",
            "metrics",
            "grid_photos",
            "profile_radius",
            "fid_reference_size",
            "fid_batch_size",
            "baselines",
            "brushnet",
            "diptych",
            "warmup",
        ),
    ),
)
BOOKKEEPING = ()


def train_variant(model: ModelConfig, cfg: TrainConfig, sigma: float, out: Path, checkpoints: Path, progress: bool):
    """Train one variant's artifact into `out` (resuming from `checkpoints`)."""
    data = TrainData.load(LATENTS, CAPTIONS)
    comps = load_components(model, parts=("unet", "text_encoder", "tokenizer", "scheduler"))
    train(comps, data, cfg, conditions(model, data, cfg, sigma), out, checkpoints, progress=progress)


def run(
    root: Path,
    cfg: AblationConfig,
    model: ModelConfig,
    train_cfg: TrainConfig,
    sigma: float,
    eval_cfg: ev.EvalConfig,
    trained: Path = MODEL,
    masks: Path = MASKS,
    captions: Path = CAPTIONS,
    out: Path = ABLATION,
    progress: bool = True,
) -> dict:
    from facepaint.methods import build_methods

    for d in ("plots", "models", "checkpoints"):  # DVC outs, also when the ablation is off
        (out / d).mkdir(parents=True, exist_ok=True)
    if not cfg.variants:
        note = "off: set ablation.variants (profiles/ablation.yaml) to train and compare the loss variants"
        for stale in [*(out / "plots").iterdir(), *(out / "models").iterdir()]:
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
        write_json({"variants": [], "note": note}, out / "metrics.json")
        with atomic_path(out / "table.md") as tmp:
            tmp.write_text(f"# Loss ablation\n\n{note}\n")
        write_parquet(pd.DataFrame(), out / "per_image.parquet")
        print(f"ablation: {note}")
        return {"variants": []}

    # 1. One artifact per variant: the pipeline's own model for its loss, a training run for the others
    artifacts = {}
    for variant in cfg.variants:
        if variant == train_cfg.loss_weighting:
            artifacts[variant] = trained
        else:
            artifacts[variant] = out / "models" / variant
            train_variant(
                model,
                dataclasses.replace(train_cfg, loss_weighting=variant),
                sigma,
                artifacts[variant],
                out / "checkpoints" / variant,
                progress,
            )
    for stale in (out / "models").iterdir():  # a variant now taken from data/model, or no longer compared
        if artifacts.get(stale.name) != stale:
            shutil.rmtree(stale)

    # 2. The evaluate stage's pairs, seeds and sampling, `ours` for every variant
    first = load_artifact(artifacts[cfg.variants[0]]).conditions
    mask_table = read_parquet(masks).set_index("id", drop=False)
    pairs, notes = ev.draw_pairs(read_parquet(captions), mask_table.index, eval_cfg.n_pairs, eval_cfg.seed)
    samples = [ev.load_sample(root, mask_table.loc[i], first.resolution, first.sigma) for i in pairs["id"]]
    device = pick_device(eval_cfg.device)
    methods = {}
    for variant, path in artifacts.items():
        built, _ = build_methods(
            ["ours"],
            path,
            eval_cfg.inference(),
            device=str(device),
            dtype=eval_cfg.dtype,
            baselines=eval_cfg.baselines,
            brushnet=eval_cfg.brushnet,
            diptych=eval_cfg.diptych,
        )
        methods[variant] = built["ours"]
    metric_objs, unavailable = ev.build_metrics(
        [m for m in eval_cfg.metrics if m != "fid"], device, eval_cfg.fid_batch_size
    )
    result = ev.run(
        samples,
        pairs,
        methods,
        eval_cfg,
        device,
        lpips=metric_objs.get("lpips"),
        pickscore=metric_objs.get("pickscore"),
        progress=progress,
    )
    if result.failed:
        raise SystemExit(f"ablation: a variant failed: {result.failed}")

    # 3. Outputs: the metrics (DVC metrics), the per-image table, the grid and the metric chart (DVC plots)
    write_parquet(result.table, out / "per_image.parquet", metadata={"ablation": dataclasses.asdict(cfg)})
    k = min(cfg.grid_photos, len(samples))
    ev.sample_grid(
        samples[:k],
        list(pairs["prompt"][:k]),
        {v: o[:k] for v, o in result.outputs.items()},
        out / "plots" / "samples.png",
        labels={v: f"{v} loss" for v in cfg.variants},
    )
    plot_metrics(result.summary, out / "plots" / "metrics.png")
    metrics = {
        "variants": cfg.variants,
        "pairs": len(pairs),
        "artifacts": {v: load_artifact(p).version for v, p in artifacts.items()},
        "methods": {v: ev.jsonable(s) for v, s in result.summary.items()},
        "unavailable_metrics": unavailable,
        "notes": notes,
    }
    write_json(metrics, out / "metrics.json")
    table = ablation_table(result.summary, unavailable, len(pairs))
    with atomic_path(out / "table.md") as tmp:
        tmp.write_text(table)
    print(table)
    return metrics


def ablation_table(summary: dict, unavailable: dict, n_pairs: int) -> str:
    rows = [
        [
            f"ours, {v} loss",
            ev.fmt_pm(s, "psnr_bg", 3),
            ev.fmt_pm(s, "lpips_bg", 4),
            ev.fmt_pm(s, "pickscore", 3),
            ev.fmt_pm(s, "psnr_full", 3),
        ]
        for v, s in summary.items()
    ]
    lines = [f"# Loss ablation: {n_pairs} image-prompt pairs, pixel-blended", ""]
    lines += ev.md_rows(
        ["variant", "PSNR dB (outside M)", "LPIPS (outside M)", "PickScore", "PSNR dB (whole image)"], rows
    )
    if unavailable:
        lines += ["", *(f"- {m}: unavailable: {why}" for m, why in unavailable.items())]
    return "\n".join(lines) + "\n"


def plot_metrics(summary: dict, path: Path) -> None:
    """One panel per metric: each variant's mean with its standard deviation over images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        (col, title)
        for col, title in (
            ("psnr_bg", "background PSNR (dB, outside M)"),
            ("psnr_full", "whole-image PSNR (dB)"),
            ("lpips_bg", "background LPIPS (outside M)"),
            ("pickscore", "PickScore"),
        )
        if any(isinstance(s.get(col), float) and np.isfinite(s[col]) for s in summary.values())
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.5 * len(panels), 3), squeeze=False)
    for ax, (col, title) in zip(axes[0], panels):
        names = list(summary)
        means = [summary[v].get(col, np.nan) for v in names]
        stds = [summary[v].get(f"{col}_std", 0.0) for v in names]
        ax.bar(names, means, yerr=stds, capsize=4, color=["tab:blue", "tab:orange", "tab:green"][: len(names)])
        ax.set_title(title, fontsize=9)
    fig.suptitle("loss ablation (mean ± std over images)", fontsize=10)
    fig.tight_layout()
    ev.save_fig(fig, path)


def main() -> None:
    params = load_params()
    run(
        data_root(params),
        section(params, "ablation", AblationConfig),
        section(params, "model", ModelConfig),
        section(params, "train", TrainConfig),
        section(params, "masks", MaskConfig).sigma,
        section(params, "evaluate", ev.EvalConfig),
    )


if __name__ == "__main__":
    cli(main)
