"""evaluate: every method on the same N test image-prompt pairs; FID, background PSNR and LPIPS,
PickScore, seconds and memory per edit; the comparison table and figures (SPEC section 5).

Inputs:  data/model (the trained artifact; its base model is the baselines' base), data.root,
         data/split.parquet, data/masks.parquet, data/captions.parquet, params `evaluate` and `sampling`
Outputs: data/evaluate/metrics.json (DVC metrics), data/evaluate/per_image.parquet,
         data/evaluate/table.md, data/evaluate/profile.csv and data/evaluate/plots/*.png (DVC plots),
         data/fid_stats/ (cached Inception statistics of the real test images; kept between runs)
Run:     dvc repro evaluate     (or: python -m stages.evaluate)

Metrics or methods whose weights cannot be had here are reported as unavailable, with the reason,
in metrics.json and table.md; they never get a number. The work is facepaint.evaluation's
(`run.evaluate_methods`, `outputs.write_evaluation`); this module reads the params and the paths.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from facepaint.common.io import read_parquet
from facepaint.evaluation.outputs import write_evaluation
from facepaint.evaluation.run import EvalConfig, evaluate_methods
from facepaint.method.artifact import load_artifact
from facepaint.method.options import SamplingOptions
from stages.common import CAPTIONS, EVALUATE, FID_STATS, MASKS, MODEL, SPLIT, cli, dataset, load_params, section

PARAMS = ("data.root", "data.layout", "evaluate", "sampling")  # the params.yaml keys this stage's outputs depend on
# MLflow run tracking writes only to the tracking store and never fails the stage: its code cannot change
# the outputs, so it is not a DVC dep (tools/stage_deps.py does not follow it; editing it does not rerun).
BOOKKEEPING = ("tracking",)  # this stage uses tracking.runs only


def run(
    root,  # a Dataset (stages.common.dataset), or the CelebAMask-HQ root
    cfg: EvalConfig,
    sampling: SamplingOptions,
    model: Path = MODEL,
    split: Path = SPLIT,
    masks: Path = MASKS,
    captions: Path = CAPTIONS,
    out: Path = EVALUATE,
    progress: bool = True,
) -> dict:
    artifact = load_artifact(model)
    version = artifact.version
    FID_STATS.mkdir(parents=True, exist_ok=True)  # a DVC out even when FID is unavailable
    test_ids = read_parquet(split).query("split == 'test' and present")["id"]
    evaluation = evaluate_methods(
        root,
        read_parquet(masks),
        read_parquet(captions),
        model,
        cfg,
        sampling,
        test_ids=test_ids,
        fid_cache=FID_STATS,
        progress=progress,
    )
    base = artifact.conditions.model
    metrics = write_evaluation(evaluation, cfg, sampling, version, out, base.demo_notice, base.name)
    track(metrics, cfg, sampling, out, version)
    print((out / "table.md").read_text())
    return metrics


def track(metrics: dict, cfg: EvalConfig, sampling: SamplingOptions, out: Path, artifact_version: str) -> None:
    """Log the evaluation into this artifact version's MLflow run (never fatal: tracking.runs.Tracker)."""
    from tracking.runs import Tracker

    run = Tracker().start(
        artifact_version=artifact_version, params={"evaluate": asdict(cfg), "sampling": asdict(sampling)}
    )
    run.metrics({"eval": metrics["methods"]})
    run.artifacts(out, "evaluate")
    run.end()


def main() -> None:
    params = load_params()
    run(dataset(params), section(params, "evaluate", EvalConfig), section(params, "sampling", SamplingOptions))


if __name__ == "__main__":
    cli(main)
