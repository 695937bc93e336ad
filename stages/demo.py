"""demo: generate the built-in synthetic dataset (drawn portraits) in the CelebAMask-HQ layout.

Inputs:  params `demo`
Outputs: data/demo/ (CelebA-HQ-img/, CelebAMask-HQ-mask-anno/, CelebAMask-HQ-attribute-anno.txt)
Run:     dvc repro demo         (or: python -m stages.demo)
The default params.yaml points data.root here, so `dvc repro` needs no download.
"""

from __future__ import annotations

from pathlib import Path

from facepaint.io import atomic_dir
from stages.common import DEMO, cli, load_params, section
from tools.demo import DemoConfig, generate

PARAMS = ("demo",)  # the params.yaml keys this stage's outputs depend on (dvc.yaml lists exactly these)


def run(cfg: DemoConfig, out: Path = DEMO, progress: bool = True) -> None:
    with atomic_dir(out) as tmp:
        generate(tmp, cfg, progress=progress)
    print(f"demo: {cfg.n_images} portraits at {cfg.size} px in {out}")


def main() -> None:
    run(section(load_params(), "demo", DemoConfig))


if __name__ == "__main__":
    cli(main)
