"""demo: the built-in synthetic dataset and tiny random baseline models, so that nothing is downloaded.

The dataset is drawn portraits in the CelebAMask-HQ layout; the models are the baselines' architectures in
their public layouts (tools/demo_models.py).

Inputs:  params `demo`
Outputs: data/demo/ (CelebA-HQ-img/, CelebAMask-HQ-mask-anno/, CelebAMask-HQ-attribute-anno.txt),
         data/demo_models/ (the baselines' tiny random weights, which params.yaml `evaluate.baselines` names)
Run:     dvc repro demo         (or: python -m stages.demo)
The default params.yaml points data.root here, so `dvc repro` needs no download.
"""

from __future__ import annotations

from pathlib import Path

from facepaint.common.io import atomic_dir
from stages.common import DEMO, DEMO_MODELS, cli, load_params, section
from tools import demo_models
from tools.demo import DemoConfig, generate

PARAMS = ("demo",)  # the params.yaml keys this stage's outputs depend on (dvc.yaml lists exactly these)


def run(cfg: DemoConfig, out: Path = DEMO, models: Path | None = DEMO_MODELS, progress: bool = True) -> None:
    """The dataset into `out`, and the baselines' tiny models into `models` (None: not written)."""
    with atomic_dir(out) as tmp:
        generate(tmp, cfg, progress=progress)
    print(f"demo: {cfg.n_images} portraits at {cfg.size} px in {out}")
    if models is not None:
        with atomic_dir(models) as tmp:
            names = demo_models.write(tmp, cfg.seed)
        print(f"demo: tiny random baseline models ({', '.join(names)}) in {models}")


def main() -> None:
    run(section(load_params(), "demo", DemoConfig))


if __name__ == "__main__":
    cli(main)
