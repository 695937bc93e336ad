"""The publication's loss ablation (its Fig. 3): plain MSE vs the mask-weighted loss, trained alike.

Every variant trains with the `train` params but `loss_weighting` (masked: w = M_latent + alpha, the SPEC's
loss; uniform: w = 1, the plain MSE); the variant whose loss is the pipeline's own model's is that model,
not trained again (`variant_artifacts`). facepaint.evaluation.run.evaluate_variants then evaluates each as
`ours` on the evaluate stage's pairs and sampling.
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path

from facepaint.common.checks import check_fields
from facepaint.data.training_set import load_training_set
from facepaint.method.loss import WEIGHTINGS
from facepaint.method.models import ModelConfig, load_components
from facepaint.method.train import TrainConfig, conditions, train

OFF_NOTE = "off: set ablation.variants (profiles/ablation.yaml) to train and compare the loss variants"


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


def variant_artifacts(
    cfg: AblationConfig,
    model: ModelConfig,
    train_cfg: TrainConfig,
    trained: Path,
    models: Path,
    checkpoints: Path,
    latents: Path,
    captions: Path,
    progress: bool = True,
) -> dict[str, Path]:
    """{variant: its artifact directory}: `trained` (the pipeline's model) for its own loss, the others
    trained into `models`/<variant> (resuming from `checkpoints`/<variant>). A directory under `models` of a
    variant no longer compared is removed."""
    artifacts = {}
    for variant in cfg.variants:
        if variant == train_cfg.loss_weighting:
            artifacts[variant] = trained
            continue
        artifacts[variant] = models / variant
        variant_cfg = dataclasses.replace(train_cfg, loss_weighting=variant)
        data = load_training_set(latents, captions)
        comps = load_components(model, parts=("unet", "text_encoder", "tokenizer", "scheduler"))
        train(
            comps,
            data,
            variant_cfg,
            conditions(model, data, variant_cfg),
            artifacts[variant],
            checkpoints / variant,
            progress=progress,
        )
    for stale in models.iterdir():  # a variant now taken from the pipeline's model, or no longer compared
        if artifacts.get(stale.name) != stale:
            shutil.rmtree(stale)
    return artifacts
