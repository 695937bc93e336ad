"""gan: MSaGAN, a spatial-attention GAN for one attribute trained with a guide-mask loss (SPEC section 6.2), the
evaluation's GAN neighbour: trained only on this dataset's faces, no pretrained prior.

Inputs:  data/faces/index.parquet (the images), data/split.parquet, data.root's attribute file and part masks,
         params `gan`
Outputs: data/gan/model/ (generator.safetensors, discriminator.safetensors, gan.json: settings, steps, held-out
         accuracy), data/gan/log.csv (losses per step), data/gan/plots/loss.png, data/gan/metrics.json (DVC
         metrics), data/gan_checkpoints/ (kept by DVC between runs: a killed run resumes from it)
Run:     dvc repro gan          (or: python -m stages.gan)

Trained on the train split's photos at `gan.image_size`; its attribute classifier (the critic's attribute head)
is scored on the test split's photos against chance (the majority class) and against itself before training.
A folder of photos has no CelebA attributes: then the stage writes only a note saying so.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from facepaint.common.charts import line_chart
from facepaint.common.io import atomic_dir, atomic_path, read_parquet, write_json
from facepaint.data import celebamask
from facepaint.data.faces import as_dataset
from facepaint.evaluation.msagan import (
    GanConfig,
    attribute_accuracy,
    load_gan_data,
    networks,
    train_gan,
)
from stages.common import SPLIT, cli, dataset, keys, load_params, section

GAN = Path("data/gan")
GAN_CHECKPOINTS = Path("data/gan_checkpoints")
PARAMS = ("data.root", "data.layout", *keys("gan", GanConfig, except_=GanConfig.SPEED_KNOBS))
BOOKKEEPING = ("tracking",)  # MLflow tracking only: it cannot change the outputs


def run(root, cfg: GanConfig, split: Path = SPLIT, out: Path = GAN, checkpoints: Path = GAN_CHECKPOINTS,
        progress: bool = True) -> dict:  # fmt: skip
    from safetensors.torch import save_file

    ds = as_dataset(root)
    checkpoints.mkdir(parents=True, exist_ok=True)  # a DVC out, also when off
    if ds.layout != "celebamask":
        note = {"off": "MSaGAN trains on CelebA attributes; a folder of photos (data.layout: folder) has none"}
        with atomic_dir(out / "model") as tmp:
            write_json(note, tmp / "gan.json")
        write_json(note, out / "metrics.json")
        pd.DataFrame({"step": []}).to_csv(out / "log.csv", index=False)
        (out / "plots").mkdir(parents=True, exist_ok=True)
        print(f"gan: {note['off']}")
        return note
    attrs = celebamask.read_attributes(Path(ds.root) / celebamask.ATTRIBUTE_FILE).table
    table = read_parquet(split).query("present")
    train_ids, test_ids = (table.loc[table.split == s, "id"].tolist() for s in ("train", "test"))
    data, skipped = load_gan_data(ds, train_ids, attrs, cfg)
    test, skipped_test = load_gan_data(ds, test_ids, attrs, cfg)
    rows = []
    G, D, steps = train_gan(data, cfg, checkpoints, progress=progress, log=lambda s, d: rows.append({"step": s, **d}))
    D0 = networks(cfg)[1]  # the critic before training, for the accuracy it started from
    positive = float(test.c.mean()) if len(test.c) else float("nan")
    result = {
        "attribute": cfg.attribute,
        "variant": cfg.variant,
        "mask_loss": cfg.mask_loss,
        "steps": steps,
        "train_images": len(data.x),
        "test_images": len(test.x),
        "skipped": [{"id": i, "reason": r} for i, r in skipped + skipped_test],
        "test_accuracy": attribute_accuracy(D, test.x, test.c) if len(test.x) else None,
        "test_accuracy_untrained": attribute_accuracy(D0, test.x, test.c) if len(test.x) else None,
        "chance": max(positive, 1 - positive) if len(test.x) else None,
    }
    with atomic_dir(out / "model") as tmp:
        save_file({k: v.contiguous() for k, v in G.state_dict().items()}, tmp / "generator.safetensors")
        save_file({k: v.contiguous() for k, v in D.state_dict().items()}, tmp / "discriminator.safetensors")
        write_json({"settings": asdict(cfg), **result}, tmp / "gan.json")
    write_json({k: v for k, v in result.items() if k != "skipped"}, out / "metrics.json")
    log = pd.DataFrame(rows)
    with atomic_path(out / "log.csv") as tmp:
        log.to_csv(tmp, index=False)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    if len(log):
        names = ("d_wasserstein", "d_cls", "d_gp", "g_adv", "g_cls", "g_cycle", "g_self", "g_mask")
        series = {k: log[k] for k in names}
        line_chart(log["step"], series, out / "plots" / "loss.png", "MSaGAN losses", "generator step", "loss",
                   panels=True)  # fmt: skip
    shutil.rmtree(checkpoints, ignore_errors=True)  # the run is complete: nothing to resume
    checkpoints.mkdir(parents=True, exist_ok=True)
    pct = lambda v: "n/a" if v is None else f"{v:.0%}"  # noqa: E731
    print(
        f"gan: {cfg.variant} ({cfg.mask_loss} mask loss), {steps} steps on {len(data.x)} photos; "
        f"{cfg.attribute} accuracy on {len(test.x)} held-out photos {pct(result['test_accuracy'])} "
        f"(untrained {pct(result['test_accuracy_untrained'])}, chance {pct(result['chance'])})"
    )
    track(result, cfg, out)
    return result


def track(result: dict, cfg: GanConfig, out: Path) -> None:
    """Log the GAN's run into MLflow (never fatal: tracking.runs.Tracker)."""
    from tracking.runs import Tracker

    run = Tracker().start(
        run_name=f"msagan {cfg.attribute} {cfg.variant} {cfg.mask_loss}", params={"gan": asdict(cfg)}
    )
    run.metrics({"gan": {k: v for k, v in result.items() if isinstance(v, (int, float)) and v is not None}})
    run.artifacts(out, "gan")
    run.end()


def main() -> None:
    params = load_params()
    run(dataset(params), section(params, "gan", GanConfig))


if __name__ == "__main__":
    cli(main)
