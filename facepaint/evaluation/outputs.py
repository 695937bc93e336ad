"""What the evaluate and ablation stages write, from an `Evaluation` (facepaint.evaluation.run): the DVC metrics
(metrics.json), the per-image table, the markdown tables beside the published figures and the figures.
Every file is written atomically (facepaint.common.io)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pandas as pd

from facepaint.common import charts
from facepaint.common.io import atomic_path, write_json, write_parquet
from facepaint.evaluation import plots, tables
from facepaint.evaluation.run import DEFINITIONS, REGIONS, EvalConfig, Evaluation, off_status


def _columns(metric: str) -> list[str]:
    """The summary columns of a metric with weights (LPIPS has one per region)."""
    return [f"lpips_{region}" for region in REGIONS] if metric == "lpips" else [metric]


def _mark(methods: dict, reasons: dict, value) -> None:
    """Every method's columns of each metric of `reasons` set to `value(reason)` (a word, never a number)."""
    for name, why in reasons.items():
        for s in methods.values():
            s.update(dict.fromkeys(_columns(name), value(why)))


def evaluation_metrics(ev: Evaluation, cfg: EvalConfig, artifact_version: str) -> dict:
    """The evaluate stage's metrics.json: per method its summary (FID beside it), what was unavailable, off or
    failed and why. A metric whose weights are missing is "unavailable", one the settings leave out "off in the
    demo profile" (or "off" for a model that is not a demo's): never a number."""
    r = ev.result
    fid = {}
    if "fid" in cfg.metrics:
        fid = {name: {"fid": r.fid[name]} if r.fid.get(name) is not None else {"fid": "unavailable"}
               for name in r.summary}  # fmt: skip
    metrics = {
        "definitions": DEFINITIONS,
        "pairs": len(ev.pairs),
        "device": ev.device,
        "resolution": ev.resolution,
        "artifact": artifact_version,
        "methods": {name: {**tables.jsonable(s), **fid.get(name, {})} for name, s in r.summary.items()},
        "unavailable_methods": ev.unavailable_methods,
        "unavailable_metrics": ev.unavailable_metrics,
        "off_methods": ev.off_methods,
        "off_metrics": ev.off_metrics,
        "failed_methods": r.failed,
        "skipped_methods": r.skipped,  # edited no pair (MSaGAN when no prompt asks for its attribute)
        "method_notes": ev.method_notes,
        "notes": ev.notes,
    }
    _mark(metrics["methods"], {m: w for m, w in ev.unavailable_metrics.items() if m != "fid"}, lambda w: "unavailable")
    _mark(metrics["methods"], ev.off_metrics, off_status)
    return metrics


def write_evaluation(
    ev: Evaluation,
    cfg: EvalConfig,
    sampling,
    artifact_version: str,
    out: Path,
    model_note: str | None = None,
    model_name: str | None = None,
) -> dict:
    """The evaluate stage's outputs under `out`: metrics.json (returned), per_image.parquet, table.md (Tables
    1 and 2 beside the published ones, headed by `model_note` when given: a demo model), profile.csv and
    plots/*.png."""
    r, plots_dir = ev.result, out / "plots"
    meta = {"evaluate": asdict(cfg), "sampling": asdict(sampling), "artifact": artifact_version}
    write_parquet(r.table, out / "per_image.parquet", metadata=meta)
    profile = plots.boundary_profile(ev.samples, r.outputs, cfg.profile_radius)
    wide = profile.pivot(index="distance", columns="method", values="mean_abs_change").reset_index()
    with atomic_path(out / "profile.csv") as tmp:
        wide.to_csv(tmp, index=False)
    if len(r.table):
        plots.plot_distributions(r.table, plots_dir / "background_distributions.png")
        blend_pair = {k: r.outputs[k][0] for k in ("ours", "ours_no_blend") if k in r.outputs}
        plots.plot_profile(profile, ev.samples[0], blend_pair, plots_dir / "boundary_profile.png")
        k = min(cfg.grid_photos, len(ev.samples))
        outputs = {m: o[:k] for m, o in r.outputs.items()}
        plots.sample_grid(ev.samples[:k], list(ev.pairs["prompt"][:k]), outputs, plots_dir / "samples.png")
        if "ours" in outputs and "ours_no_blend" in outputs:  # the publication's Fig. 5
            plots.background_maps(
                ev.samples[:k], outputs["ours"], outputs["ours_no_blend"], plots_dir / "background_maps.png"
            )
    table = tables.markdown_table(
        r.summary,
        r.fid,
        ev.unavailable_methods,
        ev.unavailable_metrics,
        r.failed,
        ev.device,
        len(ev.pairs),
        cfg.background_dilation,
        model_note=model_note,
        model_name=model_name,
        off_methods=ev.off_methods,
        off_metrics=ev.off_metrics,
        skipped=r.skipped,
        method_notes=ev.method_notes,
    )
    with atomic_path(out / "table.md") as tmp:
        tmp.write_text(table)
    metrics = evaluation_metrics(ev, cfg, artifact_version)
    write_json(metrics, out / "metrics.json")
    return metrics


def write_ablation(ev: Evaluation, ablation: dict, versions: dict, out: Path) -> dict:
    """The ablation stage's outputs under `out` (`ablation`: its params, variants and grid_photos; `versions`:
    each variant's artifact version): metrics.json (returned), table.md, per_image.parquet,
    plots/samples.png (the input and every variant per prompt) and plots/metrics.png."""
    r, variants = ev.result, ablation["variants"]
    write_parquet(r.table, out / "per_image.parquet", metadata={"ablation": ablation})
    k = min(ablation["grid_photos"], len(ev.samples))
    plots.sample_grid(
        ev.samples[:k],
        list(ev.pairs["prompt"][:k]),
        {v: o[:k] for v, o in r.outputs.items()},
        out / "plots" / "samples.png",
        labels={v: f"{v} loss" for v in variants},
    )
    plots.plot_metrics(r.summary, out / "plots" / "metrics.png")
    metrics = {
        "variants": variants,
        "pairs": len(ev.pairs),
        "artifacts": versions,
        "methods": {v: tables.jsonable(s) for v, s in r.summary.items()},
        "unavailable_metrics": ev.unavailable_metrics,
        "off_metrics": ev.off_metrics,
        "notes": ev.notes,
    }
    _mark(metrics["methods"], ev.off_metrics, off_status)
    write_json(metrics, out / "metrics.json")
    with atomic_path(out / "table.md") as tmp:
        tmp.write_text(tables.ablation_table(r.summary, ev.unavailable_metrics, len(ev.pairs), ev.off_metrics))
    return metrics


def write_ablation_off(note: str, out: Path) -> None:
    """The ablation stage's outputs when it is off (`ablation.variants: []`): a note in each, the plots folder's
    as a picture (plots/off.png), so that `dvc plots show` has a plot to show there, on a fresh clone too."""
    charts.note_card("Loss ablation: off", note, out / "plots" / "off.png")
    write_json({"variants": [], "note": note}, out / "metrics.json")
    with atomic_path(out / "table.md") as tmp:
        tmp.write_text(f"# Loss ablation\n\n{note}\n")
    write_parquet(pd.DataFrame(), out / "per_image.parquet")
