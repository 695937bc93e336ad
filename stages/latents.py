"""latents: VAE latents of each training image and its masked image, both flips, in fp16 shards.

The masked image has its face removed; the shards are safetensors.

Inputs:  data.root, data/split.parquet, data/masks.parquet, params `model` and `latents`
         (the mask resolution and latent factor come from the masks table's metadata)
Outputs: data/latents/ (shard-NNNNN.safetensors, index.json), data/reports/latents.json
Run:     dvc repro latents      (or: python -m stages.latents)
"""

from __future__ import annotations

from pathlib import Path

from facepaint.common.io import atomic_dir, read_parquet, read_parquet_metadata
from facepaint.data.latents import LatentConfig, compute_latents, vae_downsampling, write_index
from facepaint.method.models import ModelConfig, load_components
from stages.common import LATENTS, MASKS, SPLIT, cli, dataset, finish, keys, load_params, section

# The params.yaml keys this stage's outputs depend on (dvc.yaml lists exactly these): not its speed knobs.
PARAMS = ("data.root", "data.layout", "model", *keys("latents", LatentConfig, except_=LatentConfig.SPEED_KNOBS))


def run(
    root,  # a Dataset (stages.common.dataset), or the CelebAMask-HQ root
    model: ModelConfig,
    cfg: LatentConfig,
    split: Path = SPLIT,
    masks: Path = MASKS,
    out: Path = LATENTS,
    progress: bool = True,
) -> dict:
    train = read_parquet(split).query("split == 'train' and present")["id"]
    table = read_parquet(masks)
    table = table[table["id"].isin(train)]
    mask_params = read_parquet_metadata(masks).get("masks")
    if not mask_params:
        raise FileNotFoundError(
            f"{masks} records no mask settings: it was made by another facepaint version; "
            f"rerun the masks stage (`dvc repro masks`)"
        )
    resolution = int(mask_params["resolution"])
    vae = load_components(model, parts=("vae",)).vae
    factor = vae_downsampling(vae)
    if factor != mask_params["latent_factor"]:
        raise SystemExit(
            f"the VAE downsamples by {factor} but masks.latent_factor is {mask_params['latent_factor']}; "
            f"set it to {factor}"
        )
    with atomic_dir(out) as tmp:
        index, report = compute_latents(root, table, vae, tmp, cfg, resolution, progress=progress)
        index.update(model=model.name, masks=mask_params)
        finish(report, cfg.max_unusable_fraction)
        write_index(index, tmp)
    print(
        f"latents: {index['count']} training images x {len(index['flips'])} flips in {len(index['shards'])} shard(s), "
        f"latent {index['latent_shape']}"
    )
    return index


def main() -> None:
    params = load_params()
    run(dataset(params), section(params, "model", ModelConfig), section(params, "latents", LatentConfig))


if __name__ == "__main__":
    cli(main)
