"""The evaluation's tables: Table 2 (every method) and Table 1 (pixel-level blending) of a run beside the
published figures (SPEC sections 4-5), the other regions, the loss ablation's table; summaries as JSON."""

from __future__ import annotations

import math

from facepaint.evaluation.methods.base import LABELS

# SPEC section 5: the publication's table (CelebA-HQ, 100 pairs) and one 512x512 edit.
PUBLISHED = {
    "SD1.5 inpaint": dict(fid=91.785, psnr=30.779, lpips=0.266, pickscore=15.226, vram_mib=7532, seconds=1.37),
    "Blended Latent Diffusion": dict(
        fid=94.442, psnr=30.551, lpips=0.322, pickscore=9.177, vram_mib=3394, seconds=1.6
    ),
    "BrushNet": dict(fid=91.895, psnr=33.216, lpips=0.168, pickscore=17.449, vram_mib=4484, seconds=3.5),
    "Diptych Prompting": dict(fid=75.690, psnr=28.054, lpips=0.347, pickscore=33.842, vram_mib=46114, seconds=180),
    "the method (published)": dict(fid=63.981, psnr=33.538, lpips=0.143, pickscore=24.306, vram_mib=7794, seconds=2.5),
}


# SPEC section 4: the publication's Table 1 (background preservation with and without the pixel blend).
PUBLISHED_TABLE1 = {
    "ours": dict(psnr="35.04 ± 0.63", lpips="0.0134 ± 0.004"),
    "ours_no_blend": dict(psnr="34.59 ± 0.58", lpips="0.0142 ± 0.004"),
}


def _fmt(v, digits):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, str):
        return v
    if math.isinf(v):
        return "inf (exact)"
    return f"{v:,.{digits}f}"


def fmt_pm(s: dict, col: str, digits: int) -> str:
    """mean +- std of a summary column, with the images reproduced exactly (PSNR inf) counted beside it."""
    mean, std, n_inf = s.get(col), s.get(f"{col}_std"), s.get(f"{col}_inf", 0)
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "n/a"
    if math.isinf(mean):
        return f"inf (all {n_inf} exact)"
    text = _fmt(mean, digits) + ("" if std is None or math.isnan(std) else f" ± {std:.{digits}f}")
    return text + (f" (+{n_inf} exact)" if n_inf else "")


def md_rows(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def _heading(n_pairs: int, device: str, model_name: str | None, demo: bool) -> str:
    """The table's first line: what was evaluated, so that a demo's figures cannot be taken for the method's."""
    where = f"{n_pairs} image-prompt pairs on {device}"
    if demo:
        return f"# Evaluation of a demo model (random weights, {model_name or 'not pretrained'}): {where}"
    return f"# Evaluation of the model trained from {model_name}: {where}" if model_name else f"# Evaluation: {where}"


def markdown_table(
    summary: dict,
    fid: dict,
    unavailable_methods: dict,
    unavailable_metrics: dict,
    failed: dict,
    device: str,
    n_pairs: int,
    dilation: int,
    model_note: str | None = None,
    off_methods: dict | None = None,
    off_metrics: dict | None = None,
    model_name: str | None = None,
    skipped: dict | None = None,
    method_notes: dict | None = None,
) -> str:
    """Table 2 (every method) and Table 1 (blending) of our run beside the published figures, then the
    other regions (see the module docstring for what each region is). `model_note`: what a reader must know
    of the model first (a demo model with random weights: its figures are not the method's). `off_methods`,
    `off_metrics` ({name: why}): left out by the settings, never attempted; their cells read "off". `model_name`:
    what the evaluated model was trained from (ModelConfig.name), named in the heading. `skipped` ({name: why}):
    methods that edited no pair; `method_notes` ({name: text}): how a method ran, under the table. A method that
    edited fewer than `n_pairs` pairs says how many beside its name."""
    labels = LABELS
    label = lambda m: labels.get(m, m)  # noqa: E731
    skipped, method_notes = skipped or {}, method_notes or {}
    missing = {**unavailable_methods, **failed, **skipped}

    def row_label(m: str, s: dict) -> str:
        return label(m) + (f" ({s['pairs']} of {n_pairs} pairs)" if s.get("pairs", n_pairs) < n_pairs else "")

    off_metrics = off_metrics or {}
    cell = lambda metric, text: "off" if metric in off_metrics else text  # noqa: E731
    lines = [
        _heading(n_pairs, device, model_name, demo=bool(model_note)),
        "",
        *(
            [
                f"> **Demo model.** {model_note[0].upper()}{model_note[1:]}. Its figures show that the evaluation "
                "runs; they say nothing of the method and are not comparable with the published ones.",
                "",
            ]
            if model_note
            else []
        ),
        "Background = outside the binary face mask M ([ours]: the publication does not state the region of its",
        'background figures; the other regions are under "Other regions"); ± is the standard deviation over',
        "images; an image whose background is reproduced exactly (PSNR inf) is counted, not averaged.",
        "",
        "## Table 2: every method",
        "",
    ]
    header = ["method", "FID", "PSNR dB (outside M)", "LPIPS (outside M)", "PickScore", "seconds / edit", "peak MiB"]
    rows = [
        [
            row_label(m, s),
            cell("fid", _fmt(fid.get(m), 3)),
            fmt_pm(s, "psnr_bg", 3),
            cell("lpips", fmt_pm(s, "lpips_bg", 4)),
            cell("pickscore", fmt_pm(s, "pickscore", 3)),
            f"{s['seconds_per_edit']:.3f} ({s['clock']})",
            _fmt(s["peak_mem_mib"], 0),
        ]
        for m, s in summary.items()
    ]
    rows += [[label(m), *["n/a"] * (len(header) - 1)] for m in missing]
    lines += md_rows(header, rows)
    lines += ["", "Published (the paper's Table 2, 100 pairs, their GPU):", ""]
    lines += md_rows(
        ["method", "FID", "PSNR dB", "LPIPS", "PickScore", "seconds / edit", "VRAM MiB"],
        [
            [
                name,
                str(p["fid"]),
                str(p["psnr"]),
                str(p["lpips"]),
                str(p["pickscore"]),
                str(p["seconds"]),
                f"{p['vram_mib']:,}",
            ]
            for name, p in PUBLISHED.items()
        ],
    )
    blend = [m for m in ("ours", "ours_no_blend") if m in summary]
    if blend:
        lines += ["", "## Table 1: pixel-level blending (background outside M)", ""]
        lines += md_rows(
            ["", "PSNR dB", "LPIPS", "published PSNR dB", "published LPIPS"],
            [
                [
                    label(m),
                    fmt_pm(summary[m], "psnr_bg", 3),
                    cell("lpips", fmt_pm(summary[m], "lpips_bg", 4)),
                    PUBLISHED_TABLE1[m]["psnr"],
                    PUBLISHED_TABLE1[m]["lpips"],
                ]
                for m in blend
            ],
        )
    lines += ["", "## Other regions", ""]
    lines += md_rows(
        [
            "method",
            f"PSNR dB (outside M dilated {dilation} px)",
            "PSNR dB (where M_soft = 0)",
            "pixels changed where M_soft = 0",
            "PSNR dB (whole image)",
            f"LPIPS (outside M dilated {dilation} px)",
            "LPIPS (whole image)",
        ],
        [
            [
                row_label(m, s),
                fmt_pm(s, "psnr_dilated", 3),
                fmt_pm(s, "psnr_outside_soft", 3),
                f"{s['changed_outside_soft']:,}",
                fmt_pm(s, "psnr_full", 3),
                cell("lpips", fmt_pm(s, "lpips_dilated", 4)),
                cell("lpips", fmt_pm(s, "lpips_full", 4)),
            ]
            for m, s in summary.items()
        ],
    )
    notes = [f"- {label(m)}: not available: {why}" for m, why in unavailable_methods.items()]
    notes += [f"- {label(m)}: failed: {why}" for m, why in failed.items()]
    notes += [f"- {label(m)}: no pair edited: {why}" for m, why in skipped.items()]
    notes += [f"- {metric_label(m)}: unavailable: {why}" for m, why in unavailable_metrics.items()]
    if notes:
        lines += ["", "n/a:", *notes]
    how = [f"- {label(m)}: {text}" for m, text in method_notes.items() if m in summary or m in skipped]
    if how:
        lines += ["", "How they ran:", *how]
    off = [f"- {label(m)}: {why}" for m, why in (off_methods or {}).items()]
    off += [f"- {metric_label(m)}: {why}" for m, why in off_metrics.items()]
    if off:
        lines += ["", "Off (not attempted):", *off]
    return "\n".join(lines) + "\n"


def metric_label(name: str) -> str:
    return {"pickscore": "PickScore"}.get(name, name.upper())


def jsonable(d: dict) -> dict:
    """A summary for JSON: inf -> "inf" (JSON has no infinity), NaN -> None."""
    return {
        k: ("inf" if isinstance(v, float) and math.isinf(v) else None if isinstance(v, float) and math.isnan(v) else v)
        for k, v in d.items()
    }


def ablation_table(summary: dict, unavailable: dict, n_pairs: int, off: dict | None = None) -> str:
    """The loss ablation's table; `unavailable` and `off` ({metric: why}) as in `markdown_table`."""
    off = off or {}
    cell = lambda metric, text: "off" if metric in off else text  # noqa: E731
    rows = [
        [
            f"ours, {v} loss",
            fmt_pm(s, "psnr_bg", 3),
            cell("lpips", fmt_pm(s, "lpips_bg", 4)),
            cell("pickscore", fmt_pm(s, "pickscore", 3)),
            fmt_pm(s, "psnr_full", 3),
        ]
        for v, s in summary.items()
    ]
    lines = [f"# Loss ablation: {n_pairs} image-prompt pairs, pixel-blended", ""]
    lines += md_rows(
        ["variant", "PSNR dB (outside M)", "LPIPS (outside M)", "PickScore", "PSNR dB (whole image)"], rows
    )
    if unavailable:
        lines += ["", *(f"- {m}: unavailable: {why}" for m, why in unavailable.items())]
    if off:
        lines += ["", *(f"- {m}: {why}" for m, why in off.items())]
    return "\n".join(lines) + "\n"
