"""ablation: the publication's loss ablation (its Fig. 3): plain MSE vs mask-weighted loss, trained alike and
evaluated side by side on the same prompts.

Inputs:  data/model (the pipeline's model: the variant whose loss is `train.loss_weighting` is that model,
         not trained again), data/latents, data/captions.parquet, data/masks.parquet, data/split.parquet,
         data.root; params `ablation`, `model`, `train`, `sampling`, `evaluate`
Outputs: data/ablation/models/<variant>/ (the artifacts of the variants trained here),
         data/ablation/metrics.json (DVC metrics), data/ablation/table.md, data/ablation/per_image.parquet,
         data/ablation/plots/samples.png (input and every variant per prompt) and metrics.png (DVC plots;
         plots/off.png, a note, when the ablation is off),
         data/ablation/checkpoints/ (a killed run resumes from them)
Run:     dvc exp run $(python profiles/flags.py ablation)       (or with the paper's profile:
         dvc exp run $(python profiles/flags.py paper ablation) -S data.root=...)

Every variant trains with the `train` params but `loss_weighting` and is evaluated as `ours` (pixel-blended)
on the evaluate stage's pairs, seeds and sampling settings, with the per-image metrics (background PSNR and
LPIPS, PickScore; FID is left to the evaluate stage: a few pairs give no meaningful FID). Off by default
(`ablation.variants: []`: another full training at paper scale); then the stage only writes a note. The work
is facepaint.evaluation's (`ablation`, `run.evaluate_variants`, `outputs.write_ablation`).
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from facepaint.common.io import read_parquet
from facepaint.evaluation.ablation import OFF_NOTE, AblationConfig, variant_artifacts
from facepaint.evaluation.outputs import write_ablation, write_ablation_off
from facepaint.evaluation.run import EvalConfig, evaluate_variants
from facepaint.method.artifact import load_artifact
from facepaint.method.models import ModelConfig
from facepaint.method.options import SamplingOptions
from facepaint.method.train import TrainConfig
from stages.common import ABLATION, CAPTIONS, LATENTS, MASKS, MODEL, cli, dataset, keys, load_params, section

# The params.yaml keys this stage's outputs depend on (dvc.yaml lists exactly these).
PARAMS = (
    "data.root",
    "data.layout",
    "ablation",
    "model",
    "sampling",
    *keys("train", TrainConfig, except_=(*TrainConfig.SPEED_KNOBS, *TrainConfig.CHECKPOINTING)),
    # the evaluate settings that make the pairs and the edits (not its method list, FID or figure settings)
    *keys(
        "evaluate",
        EvalConfig,
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
            "blended_latent",
            "warmup",
        ),
    ),
)
BOOKKEEPING = ()


def run(
    root,  # a Dataset (stages.common.dataset), or the CelebAMask-HQ root
    cfg: AblationConfig,
    model: ModelConfig,
    train_cfg: TrainConfig,
    eval_cfg: EvalConfig,
    sampling: SamplingOptions,
    trained: Path = MODEL,
    masks: Path = MASKS,
    captions: Path = CAPTIONS,
    out: Path = ABLATION,
    progress: bool = True,
) -> dict:
    for d in ("plots", "models", "checkpoints"):  # DVC outs, also when the ablation is off
        (out / d).mkdir(parents=True, exist_ok=True)
    if not cfg.variants:
        for stale in [*(out / "plots").iterdir(), *(out / "models").iterdir()]:
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
        write_ablation_off(OFF_NOTE, out)
        print(f"ablation: {OFF_NOTE}")
        return {"variants": []}
    artifacts = variant_artifacts(
        cfg, model, train_cfg, trained, out / "models", out / "checkpoints", LATENTS, captions, progress
    )
    evaluation = evaluate_variants(
        root, read_parquet(masks), read_parquet(captions), artifacts, eval_cfg, sampling, progress=progress
    )
    versions = {v: load_artifact(p).version for v, p in artifacts.items()}
    metrics = write_ablation(evaluation, dataclasses.asdict(cfg), versions, out)
    print((out / "table.md").read_text())
    return metrics


def main() -> None:
    params = load_params()
    run(
        dataset(params),
        section(params, "ablation", AblationConfig),
        section(params, "model", ModelConfig),
        section(params, "train", TrainConfig),
        section(params, "evaluate", EvalConfig),
        section(params, "sampling", SamplingOptions),
    )


if __name__ == "__main__":
    cli(main)
