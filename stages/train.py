"""train: fine-tune the UNet's cross-attention k/v and the face-aware text adapter (SPEC section 3).

Inputs:  data/latents/ (cached latents), data/captions.parquet, params `model` and `train`
Outputs: data/model/ (the artifact: kv.safetensors, adapter.safetensors, facepaint.json),
         data/train/log.csv (loss, learning rates, samples/s per logged step: a DVC plot),
         data/train/metrics.json (DVC metrics), data/checkpoints/ (kept by DVC between runs)
Run:     dvc repro train        (or: python -m stages.train)
         N GPUs: accelerate launch --multi_gpu --num_processes N -m stages.train   (DDP; also on CPU,
         where it uses gloo: accelerate's --cpu flag alone starts one process unless mpirun exists)

A killed run resumes from its last checkpoint in data/checkpoints when rerun with the same params
and data (`dvc repro` reruns it, since it never finished); the checkpoints are removed once the
artifact is written.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from facepaint.io import atomic_path, write_json
from facepaint.models import ModelConfig, load_components
from facepaint.train import TrainConfig, TrainData, history_frame, train
from stages.captions import OUT as CAPTIONS
from stages.common import cli, load_params, section
from stages.latents import OUT as LATENTS

OUT = Path("data/model")
LOG = Path("data/train/log.csv")
METRICS = Path("data/train/metrics.json")
CHECKPOINTS = Path("data/checkpoints")


def run(model: ModelConfig, cfg: TrainConfig, latents: Path = LATENTS, captions: Path = CAPTIONS, out: Path = OUT,
        checkpoints: Path = CHECKPOINTS, log: Path = LOG, metrics: Path = METRICS, progress: bool = True,
        stop_after: int | None = None):
    data = TrainData.load(latents, captions)
    comps = load_components(model, parts=("unet", "text_encoder", "tokenizer", "scheduler"))
    result = train(comps, model, data, cfg, out, checkpoints, progress=progress, stop_after=stop_after)
    if result.artifact is None:
        return result
    with atomic_path(log) as tmp:
        history_frame(result.history).to_csv(tmp, index=False)
    write_json(result.metrics, metrics)
    track(result, model, cfg, out, log, metrics)
    m = result.metrics
    print(f"train: {m['steps']} steps ({m['epochs']} epochs of {m['train_images']} images), final loss "
          f"{m['final_loss']:.4f}, {m['samples_per_s']:.1f} samples/s; artifact {out} (version {result.artifact.version})")
    return result


def track(result, model: ModelConfig, cfg: TrainConfig, out: Path, log: Path, metrics: Path) -> None:
    """The MLflow run of this pipeline run: params, versions, the loss curve, the pyfunc model."""
    from facepaint.tracking import MODEL_URI_TAG, Tracker

    run = Tracker().start(artifact_version=result.artifact.version, run_name=f"facepaint {result.artifact.version}",
                          params={"train": asdict(cfg), "model": asdict(model)})
    run.history(result.history)
    run.metrics({"train": {k: v for k, v in result.metrics.items() if k != "trainable_parameters"}})
    run.artifacts(log, "train")
    run.artifacts(metrics, "train")
    uri = run.model(out)
    if uri:
        run.tag({MODEL_URI_TAG: uri})
    run.end()


def main() -> None:
    params = load_params()
    run(section(params, "model", ModelConfig), section(params, "train", TrainConfig))


if __name__ == "__main__":
    cli(main)
