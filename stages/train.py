"""train: fine-tune the UNet's cross-attention k/v and the face-aware text adapter (SPEC section 3).

Inputs:  data/latents/ (cached latents), data/captions.parquet, params `model` and `train` (not `sampling`:
         how a model samples and blends is chosen at inference, so changing it does not retrain)
Outputs: data/model/ (the artifact: kv.safetensors, adapter.safetensors, facepaint.json),
         data/train/log.csv (loss, learning rates, samples/s per logged step), data/train/plots/loss.png
         (the loss curve: a DVC plot, a static image that shows offline),
         data/train/metrics.json (DVC metrics), data/checkpoints/ (kept by DVC between runs)
Run:     dvc repro train        (or: python -m stages.train)
         N GPUs: accelerate launch --multi_gpu --num_processes N -m stages.train   (DDP; also on CPU,
         where it uses gloo: accelerate's --cpu flag alone starts one process unless mpirun exists)

A killed run resumes from its last checkpoint in data/checkpoints when rerun with the same params
and data (`dvc repro` reruns it, since it never finished); the checkpoints are removed once the
artifact is written. The speed knobs of `train` (TrainConfig.SPEED_KNOBS) and its checkpoint cadence
are not DVC params of this stage: changing them cannot change the outputs, so it does not rerun.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from facepaint.common.charts import line_chart
from facepaint.common.io import atomic_path, write_json
from facepaint.data.training_set import load_training_set
from facepaint.method.models import ModelConfig, load_components
from facepaint.method.train import TrainConfig, conditions, history_frame, train
from stages.common import (
    CAPTIONS,
    CHECKPOINTS,
    LATENTS,
    MODEL,
    TRAIN_LOG,
    TRAIN_METRICS,
    cli,
    keys,
    load_params,
    section,
)

# The params.yaml keys this stage's outputs depend on (dvc.yaml lists exactly these).
PARAMS = (
    "model",
    *keys("train", TrainConfig, except_=(*TrainConfig.SPEED_KNOBS, *TrainConfig.CHECKPOINTING)),
)
# MLflow run tracking writes only to the tracking store and never fails the stage: its code cannot change
# the outputs, so it is not a DVC dep (tools/stage_deps.py does not follow it; editing it does not rerun).
BOOKKEEPING = ("tracking",)  # this stage uses tracking.runs only


def run(
    model: ModelConfig,
    cfg: TrainConfig,
    latents: Path = LATENTS,
    captions: Path = CAPTIONS,
    out: Path = MODEL,
    checkpoints: Path = CHECKPOINTS,
    log: Path = TRAIN_LOG,
    metrics: Path = TRAIN_METRICS,
    plots: Path | None = None,
    progress: bool = True,
    stop_after: int | None = None,
):
    data = load_training_set(latents, captions)
    comps = load_components(model, parts=("unet", "text_encoder", "tokenizer", "scheduler"))
    result = train(
        comps,
        data,
        cfg,
        conditions(model, data, cfg),
        out,
        checkpoints,
        progress=progress,
        stop_after=stop_after,
    )
    if result.artifact is None:
        return result
    frame = history_frame(result.history)
    with atomic_path(log) as tmp:
        frame.to_csv(tmp, index=False)
    plot_loss(frame, plots or log.parent / "plots")  # data/train/plots
    write_json(result.metrics, metrics)
    track(result, model, cfg, log, metrics)
    m = result.metrics
    print(
        f"train: {m['steps']} steps ({m['epochs']} epochs of {m['train_images']} images), final loss "
        f"{m['final_loss']:.4f}, {m['samples_per_s']:.1f} samples/s; "
        f"artifact {out} (version {result.artifact.version})"
    )
    return result


def plot_loss(frame, plots: Path) -> None:
    """plots/loss.png: the training loss per logged step (a static image: DVC shows it offline)."""
    smooth = max(1, len(frame) // 20)
    line_chart(
        frame["step"],
        {"loss": frame["loss"]},
        plots / "loss.png",
        "training loss (mask-weighted noise prediction)",
        "step",
        "loss",
        smooth=smooth,
    )


def track(result, model: ModelConfig, cfg: TrainConfig, log: Path, metrics: Path) -> None:
    """Open this pipeline run's MLflow run: params, versions, the loss curve (the model is logged by
    `register`, the stage that needs it)."""
    from tracking.runs import Tracker

    run = Tracker().start(
        artifact_version=result.artifact.version,
        run_name=f"facepaint {result.artifact.version}",
        params={"train": asdict(cfg), "model": asdict(model)},
    )
    run.history(result.history)
    run.metrics({"train": {k: v for k, v in result.metrics.items() if k != "trainable_parameters"}})
    run.artifacts(log, "train")
    run.artifacts(metrics, "train")
    run.end()


def main() -> None:
    params = load_params()
    run(
        section(params, "model", ModelConfig),
        section(params, "train", TrainConfig),
    )


if __name__ == "__main__":
    cli(main)
