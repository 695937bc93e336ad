"""Evaluation (SPEC section 5): every method on the same image-prompt pairs, the paper's metrics, the
figures people expect.

Pairs. N test images drawn with a seed from the test split (ordered by SHA-256 of "<seed>:<id>", as
the split is, so the draw is the same on every machine and version), each with its canonical
evaluation prompt from the captions stage. Every method edits the same pairs with the same seeds.

Regions (`facepaint.metrics`; the publication does not say which region its background figures use):
- `bg`, the headline background: the complement of the binary face mask M. The published background
  PSNR (35.04 dB with blending, 34.59 dB without) is finite, so it must include pixels that the soft
  mask M_soft changes; outside M is the region those numbers imply (M_soft reaches about 3 sigma past M).
- `dilated`: outside M dilated by `background_dilation` pixels (keeps the blended seam out).
- `outside_soft`: where M_soft is exactly 0. A pixel-blended method returns the input there bit for
  bit (PSNR = inf), which `changed_outside_soft` counts.
- `full`: the whole image.
PSNR and LPIPS (VGG) are computed per image in each region.

Aggregates: mean and standard deviation over images (numpy's population std, ddof=0; the publication
gives mean +- std without saying which). An image whose region is reproduced exactly has PSNR = inf; it
is counted in `*_inf` and left out of the mean and std (a mean with inf in it says nothing).

Efficiency: seconds per edit (CUDA events around one edit on a GPU, CPU time without one) after
`warmup` untimed edits, and peak GPU memory, per method; the median over pairs is reported.
"""

from __future__ import annotations

import hashlib
import math
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy.ndimage import distance_transform_edt
from tqdm.auto import tqdm

from facepaint import MAX_SEED, celebamask, check_fields, check_number
from facepaint.images import load_rgb, resize_rgb
from facepaint.masks import decode_png, resize_binary, soft_mask

METHODS = (
    "ours",
    "ours_no_blend",
    "sd15_inpaint",
    "blended_latent_diffusion",
    "blended_latent_diffusion_9ch",
    "paint_by_example",
    "brushnet",
    "diptych_prompting",
)
METRICS = ("fid", "psnr", "lpips", "pickscore")
# What the reported numbers mean; recorded in metrics.json so that figures made under other definitions are
# never compared with these (the registry's gate). Change it whenever a metric's region or reference changes.
DEFINITIONS = "2: background = outside M (headline), dilated, M_soft == 0; FID reference excludes the pairs"

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


@dataclass
class EvalConfig:  # params.yaml `evaluate`
    n_pairs: int
    seed: int
    methods: list
    metrics: list
    steps: int  # denoising steps per edit
    guidance_scale: float
    scheduler: str  # ddim | dpm
    strength: float
    negative_prompt: str
    background_dilation: int  # pixels at the evaluation resolution
    fid_reference_size: int  # real test images whose Inception statistics FID compares against
    fid_batch_size: int  # images per Inception forward
    warmup: int  # untimed edits per method before timing
    grid_photos: int
    profile_radius: int  # pixels on each side of the mask boundary in the profile plot
    device: str
    dtype: str  # fp16 | bf16 | fp32 on a GPU; the CPU uses fp32
    baselines: dict  # where each baseline's weights are (facepaint.methods.Baselines)
    brushnet: dict  # BrushNet's options (facepaint.methods.BrushNetSettings)
    diptych: dict  # Diptych Prompting's sampling (facepaint.methods.DiptychSettings)

    def inference(self):
        """How every method samples."""
        from facepaint.methods import InferenceConfig

        return InferenceConfig(
            steps=self.steps,
            guidance_scale=self.guidance_scale,
            scheduler=self.scheduler,
            strength=self.strength,
            negative_prompt=self.negative_prompt,
        )

    def __post_init__(self):
        from facepaint.edit import MAX_GUIDANCE, check_options
        from facepaint.generate import SCHEDULERS
        from facepaint.methods import Baselines, BrushNetSettings, DiptychSettings, settings
        from facepaint.speed import DTYPES

        check_fields(self, "evaluate", skip=("baselines", "brushnet", "diptych"))  # those: `settings`
        self.baselines = settings(Baselines, self.baselines, "evaluate.baselines")
        self.brushnet = settings(BrushNetSettings, self.brushnet, "evaluate.brushnet")
        self.diptych = settings(DiptychSettings, self.diptych, "evaluate.diptych")
        self.methods, self.metrics = list(self.methods), list(self.metrics)
        unknown = [m for m in self.methods if m not in METHODS] + [m for m in self.metrics if m not in METRICS]
        if unknown:
            raise ValueError(
                f"evaluate: unknown method(s)/metric(s) {unknown}; methods: {METHODS}, metrics: {METRICS}"
            )
        if self.n_pairs < 1 or self.background_dilation < 0 or self.warmup < 0:
            raise ValueError("evaluate.n_pairs must be >= 1, background_dilation and warmup >= 0")
        for name in ("fid_reference_size", "fid_batch_size", "grid_photos", "profile_radius"):
            check_number(f"evaluate.{name}", getattr(self, name), 1, whole=True)
        check_number("evaluate.seed", self.seed, 0, MAX_SEED, whole=True)
        try:
            check_options(self.steps, self.strength)
        except ValueError as e:
            raise ValueError(f"evaluate.{e}") from None
        check_number("evaluate.guidance_scale", self.guidance_scale, 0, MAX_GUIDANCE)
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"evaluate.scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"evaluate.dtype must be one of {DTYPES}, got {self.dtype!r}")


# -------------------------------------------------------------------------------------------- pairs


def hash_order(ids, seed: int) -> list[int]:
    return sorted((int(i) for i in ids), key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).digest())


def draw_pairs(captions: pd.DataFrame, usable_ids, n: int, seed: int) -> tuple[pd.DataFrame, list[str]]:
    """N (id, prompt) pairs from the test split's usable images; notes say when fewer are available."""
    test = captions[(captions["split"] == "test") & captions["eval_prompt"].notna()]
    test = test[test["id"].isin(set(int(i) for i in usable_ids))].set_index("id")
    chosen = hash_order(test.index, seed)[:n]
    notes = (
        []
        if len(chosen) == n
        else [f"only {len(chosen)} usable test images with prompts: evaluating {len(chosen)} pairs, not {n}"]
    )
    pairs = pd.DataFrame({"id": chosen, "prompt": [test.at[i, "eval_prompt"] for i in chosen]})
    pairs["seed"] = [
        seed * 1000 + k for k in range(len(chosen))
    ]  # one sampling seed per pair, the same for all methods
    return pairs, notes


def fid_reference_ids(test_ids, exclude, size: int, seed: int) -> list[int]:
    """FID's reference set: up to `size` test images, in the seeded hash order, none of them in `exclude`
    (the evaluated pairs)."""
    excluded = {int(i) for i in exclude}
    return [i for i in hash_order(test_ids, seed) if i not in excluded][:size]


@dataclass
class Sample:
    id: int
    image: np.ndarray  # uint8 (R, R, 3)
    mask: np.ndarray  # bool (R, R)
    soft: np.ndarray  # float32 (R, R)
    beta: float


def load_sample(root, row: pd.Series, resolution: int, sigma: float) -> Sample:
    """A test photo at the evaluation `resolution` (the model's) with its face mask M from the masks table
    and M_soft = G_sigma * M (`sigma` in pixels at `resolution`: the artifact's conditions)."""
    image = resize_rgb(load_rgb(celebamask.image_path(root, int(row["id"]))).image, resolution)
    mask = resize_binary(decode_png(row["mask"]), resolution)
    return Sample(int(row["id"]), image, mask, soft_mask(mask, sigma), float(mask.mean()))


def build_metrics(names, device, fid_batch_size: int) -> tuple[dict, dict]:
    """({name: metric object} for the metrics of `names` that can be built here, {name: why not} for the
    others). PSNR needs no object."""
    from facepaint import metrics as m

    factories = {
        "lpips": lambda: m.LPIPS(device=device),
        "fid": lambda: m.FID(device=device, batch_size=fid_batch_size),
        "pickscore": lambda: m.PickScore(device=device),
    }
    built, unavailable = {}, {}
    for name in names:
        if name == "psnr":
            continue
        try:
            built[name] = factories[name]()
        except m.MetricUnavailable as e:
            unavailable[name] = str(e)
    return built, unavailable


# ------------------------------------------------------------------------------------- per image


REGIONS = ("bg", "dilated", "outside_soft", "full")  # see the module docstring; bg is the headline


def regions(sample: Sample, dilation: int) -> dict[str, np.ndarray | None]:
    """The pixel regions the metrics are taken on (bool HxW; None: the whole image). An empty region
    (no pixel outside M_soft, say) is left out."""
    from facepaint.metrics import background_region

    out = {
        "bg": ~sample.mask,
        "dilated": background_region(sample.mask, dilation),
        "outside_soft": sample.soft == 0,
        "full": None,
    }
    return {k: v for k, v in out.items() if v is None or v.any()}


def image_metrics(sample: Sample, output: np.ndarray, dilation: int, lpips=None) -> dict:
    """PSNR (and LPIPS when given) of `output` against the input in every region; NaN for an empty one."""
    from facepaint.metrics import psnr

    found = regions(sample, dilation)
    row = {}
    for name in REGIONS:
        region = found.get(name, False)
        empty = region is False
        row[f"psnr_{name}"] = math.nan if empty else psnr(sample.image, output, region)
        if lpips is not None:
            row[f"lpips_{name}"] = math.nan if empty else lpips(sample.image, output, region)
    outside_soft = sample.soft == 0
    row["changed_outside_soft"] = int((output != sample.image).any(axis=2)[outside_soft].sum())
    return row


def mean_std(values) -> tuple[float, float, int]:
    """(mean, std, number of inf) over the finite values; (inf, nan, n) when every value is inf, (nan, nan, 0)
    when there is none."""
    v = np.asarray(pd.Series(values, dtype="float64").dropna())
    finite, n_inf = v[np.isfinite(v)], int(np.isinf(v).sum())
    if len(finite):
        return float(finite.mean()), float(finite.std()), n_inf
    return (math.inf if n_inf else math.nan), math.nan, n_inf


def summarise(table: pd.DataFrame) -> dict:
    """Per-method aggregates of the per-image table: `<metric>` the mean, `<metric>_std`, and for PSNR
    `<metric>_inf` the images reproduced exactly (see the module docstring)."""
    out = {}
    for method, g in table.groupby("method", sort=False):
        s = {"pairs": len(g)}
        for name in REGIONS:
            col = f"psnr_{name}"
            if col in g:
                s[col], s[f"{col}_std"], s[f"{col}_inf"] = mean_std(g[col])
        for col in [*(f"lpips_{r}" for r in REGIONS), "pickscore"]:
            if col in g and g[col].notna().any():
                s[col], s[f"{col}_std"], _ = mean_std(g[col])
        s["changed_outside_soft"] = int(g["changed_outside_soft"].sum())
        s["seconds_per_edit"] = float(g["seconds"].median())
        mem = g["peak_mem_mib"].dropna()
        s["peak_mem_mib"] = float(mem.max()) if len(mem) else None
        s["clock"] = g["clock"].iloc[0]
        out[method] = s
    return out


# ---------------------------------------------------------------------------------------- figures


def boundary_profile(samples: list[Sample], outputs: dict[str, list[np.ndarray]], radius: int) -> pd.DataFrame:
    """Mean |output - input| (0-255, averaged over channels and pairs) against the signed distance to
    the mask boundary in pixels (negative inside the face): how far each method's change reaches."""
    rows = []
    dists = []
    for s in samples:
        inside = distance_transform_edt(s.mask)
        outside = distance_transform_edt(~s.mask)
        dists.append(np.where(s.mask, -np.ceil(inside) + 1, np.ceil(outside)).astype(int))
    for method, outs in outputs.items():
        sums, counts = np.zeros(2 * radius + 1), np.zeros(2 * radius + 1)
        for s, d, out in zip(samples, dists, outs):
            diff = np.abs(out.astype(np.float32) - s.image.astype(np.float32)).mean(axis=2)
            sel = np.abs(d) <= radius
            np.add.at(sums, d[sel] + radius, diff[sel])
            np.add.at(counts, d[sel] + radius, 1)
        for k in range(2 * radius + 1):
            rows.append(
                {
                    "distance": k - radius,
                    "method": method,
                    "mean_abs_change": sums[k] / counts[k] if counts[k] else math.nan,
                }
            )
    return pd.DataFrame(rows)


def _labels():
    from facepaint.methods import LABELS

    return LABELS


def plot_distributions(table: pd.DataFrame, path: Path) -> None:
    """Background PSNR and LPIPS per image, with and without blending (and every other method)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [c for c in ("psnr_bg", "lpips_bg") if c in table and table[c].notna().any()]
    fig, axes = plt.subplots(1, max(len(cols), 1), figsize=(6 * max(len(cols), 1), 4), squeeze=False)
    labels = _labels()
    for ax, col in zip(axes[0], cols):
        groups = [(m, g[col].replace([np.inf], np.nan).dropna()) for m, g in table.groupby("method", sort=False)]
        groups = [(m, v) for m, v in groups if len(v)]
        if groups:
            ax.boxplot([v for _, v in groups], showmeans=True)
            ax.set_xticks(range(1, len(groups) + 1), [labels.get(m, m) for m, _ in groups], rotation=20, ha="right")
        inf = {
            m: int(np.isinf(g[col]).sum()) for m, g in table.groupby("method", sort=False) if col.startswith("psnr")
        }
        note = ", ".join(f"{labels.get(m, m)}: {n} exact" for m, n in inf.items() if n)
        ax.set_title(
            f"{'background PSNR (dB, outside M)' if col == 'psnr_bg' else 'background LPIPS (VGG, outside M)'}"
            + (f"\n({note})" if note else ""),
            fontsize=9,
        )
    if not cols:
        axes[0][0].text(0.5, 0.5, "no background metric available", ha="center")
    fig.tight_layout()
    save_fig(fig, path)


def plot_profile(
    profile: pd.DataFrame, example: Sample | None, example_outputs: dict[str, np.ndarray], path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = _labels()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for method, g in profile.groupby("method", sort=False):
        axes[0].plot(g["distance"], g["mean_abs_change"], label=labels.get(method, method))
    axes[0].axvline(0, color="grey", lw=0.8, ls="--")
    axes[0].set(
        xlabel="signed distance to the face-mask boundary (px; < 0 inside the face)",
        ylabel="mean |output - input| (0-255)",
        title="how far each method changes the photo",
    )
    axes[0].legend(fontsize=8)
    if example is not None:
        ys, xs = np.nonzero(example.mask)
        y = int(np.median(ys))
        row = np.nonzero(example.mask[y])[0]
        x1 = int(row.max())  # the face's right edge on this row
        lo, hi = max(x1 - 32, 0), min(x1 + 32, example.image.shape[1])
        xs_ = np.arange(lo, hi) - x1
        axes[1].plot(xs_, example.image[y, lo:hi].mean(axis=1), color="black", lw=2, label="input")
        for method, out in example_outputs.items():
            axes[1].plot(xs_, out[y, lo:hi].mean(axis=1), label=labels.get(method, method))
        axes[1].axvline(0, color="grey", lw=0.8, ls="--")
        axes[1].set(
            xlabel="pixels from the face's edge along one row",
            ylabel="intensity (mean of RGB)",
            title=f"intensity across the boundary, image {example.id}, row {y}",
        )
        axes[1].legend(fontsize=8)
    fig.tight_layout()
    save_fig(fig, path)


def sample_grid(
    samples: list[Sample],
    prompts: list[str],
    outputs: dict[str, list[np.ndarray]],
    path: Path,
    cell: int = 192,
    labels: dict | None = None,
) -> None:
    """Rows: photos; columns: the input (face mask outlined) and every method (titled by `labels`, the
    methods' labels by default), same prompt per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = labels or _labels()
    cols = ["input", *outputs]
    fig, axes = plt.subplots(len(samples), len(cols), figsize=(2.2 * len(cols), 2.4 * len(samples)), squeeze=False)
    for r, (s, prompt) in enumerate(zip(samples, prompts)):
        for c, name in enumerate(cols):
            ax = axes[r][c]
            img = s.image if name == "input" else outputs[name][r]
            ax.imshow(np.asarray(Image.fromarray(img).resize((cell, cell))))
            if name == "input":
                ax.contour(
                    np.asarray(Image.fromarray(s.mask.astype(np.uint8) * 255).resize((cell, cell))) > 127,
                    levels=[0.5],
                    colors="yellow",
                    linewidths=0.6,
                )
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title("\n".join(_wrap(labels.get(name, name), 26)), fontsize=8)
        axes[r][0].set_ylabel("\n".join(_wrap(prompt, 34)), fontsize=6)
    fig.tight_layout()
    save_fig(fig, path)


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width)[:4]


def save_fig(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    from facepaint.io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------------------ table


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


def markdown_table(
    summary: dict,
    fid: dict,
    unavailable_methods: dict,
    unavailable_metrics: dict,
    failed: dict,
    device: str,
    n_pairs: int,
    dilation: int,
) -> str:
    """Table 2 (every method) and Table 1 (blending) of our run beside the published figures, then the
    other regions (see the module docstring for what each region is)."""
    labels = _labels()
    label = lambda m: labels.get(m, m)  # noqa: E731
    missing = {**unavailable_methods, **failed}
    lines = [
        f"# Evaluation: {n_pairs} image-prompt pairs on {device}",
        "",
        "Background = outside the binary face mask M (the region the published, finite background figures",
        "imply); ± is the standard deviation over images; an image whose background is reproduced exactly",
        "(PSNR inf) is counted, not averaged.",
        "",
        "## Table 2: every method",
        "",
    ]
    header = ["method", "FID", "PSNR dB (outside M)", "LPIPS (outside M)", "PickScore", "seconds / edit", "peak MiB"]
    rows = [
        [
            label(m),
            _fmt(fid.get(m), 3),
            fmt_pm(s, "psnr_bg", 3),
            fmt_pm(s, "lpips_bg", 4),
            fmt_pm(s, "pickscore", 3),
            f"{s['seconds_per_edit']:.3f} ({s['clock']})",
            _fmt(s["peak_mem_mib"], 0),
        ]
        for m, s in summary.items()
    ]
    rows += [[label(m), *["n/a"] * (len(header) - 1)] for m in missing]
    lines += md_rows(header, rows)
    lines += ["", "Published (SPEC section 5, 100 pairs, their GPU):", ""]
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
                    fmt_pm(summary[m], "lpips_bg", 4),
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
                label(m),
                fmt_pm(s, "psnr_dilated", 3),
                fmt_pm(s, "psnr_outside_soft", 3),
                f"{s['changed_outside_soft']:,}",
                fmt_pm(s, "psnr_full", 3),
                fmt_pm(s, "lpips_dilated", 4),
                fmt_pm(s, "lpips_full", 4),
            ]
            for m, s in summary.items()
        ],
    )
    notes = [f"- {label(m)}: not available: {why}" for m, why in unavailable_methods.items()]
    notes += [f"- {label(m)}: failed: {why}" for m, why in failed.items()]
    notes += [
        f"- {m.upper() if m != 'pickscore' else 'PickScore'}: unavailable: {why}"
        for m, why in unavailable_metrics.items()
    ]
    if notes:
        lines += ["", "n/a:", *notes]
    return "\n".join(lines) + "\n"


def jsonable(d: dict) -> dict:
    """A summary for JSON: inf -> "inf" (JSON has no infinity), NaN -> None."""
    return {
        k: ("inf" if isinstance(v, float) and math.isinf(v) else None if isinstance(v, float) and math.isnan(v) else v)
        for k, v in d.items()
    }


def error_text(e: BaseException) -> str:
    """One line for a report: the exception and where it was raised."""
    tb = traceback.extract_tb(e.__traceback__)
    where = f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
    return f"{type(e).__name__}: {e}{where}"[:500]


# -------------------------------------------------------------------------------------------- run


def _face(s: Sample) -> np.ndarray:
    from facepaint.edit import face_crop

    x0, y0, side = face_crop(s.mask, 0.1)
    return s.image[y0 : y0 + side, x0 : x0 + side]


@dataclass
class EvalResult:
    table: pd.DataFrame  # one row per (method, pair)
    summary: dict  # per method aggregates
    fid: dict  # per method FID (when available)
    outputs: dict  # method -> list of uint8 outputs, in pair order
    failed: dict  # method -> error text


def run(
    samples: list[Sample],
    pairs: pd.DataFrame,
    methods: dict,
    cfg: EvalConfig,
    device,
    lpips=None,
    pickscore=None,
    fid=None,
    fid_reference=None,
    progress: bool = True,
) -> EvalResult:
    """Every method on every pair (timed), then the metrics. A method that raises is reported in
    `failed` and the others go on."""
    from facepaint.methods import EditInput, measure

    # Paint-by-Example edits from an exemplar instead of text: the face of the next pair's photo.
    exemplars = [_face(samples[(k + 1) % len(samples)]) for k in range(len(samples))]
    inputs = [
        EditInput(s.image, s.mask, s.soft, s.beta, p, int(seed), exemplar=e)
        for s, p, seed, e in zip(samples, pairs["prompt"], pairs["seed"], exemplars)
    ]
    rows, outputs, failed = [], {}, {}
    bar = tqdm(total=len(methods) * len(inputs), desc="evaluate", unit="edit", disable=not progress)
    for name, method in methods.items():
        bar.set_postfix(method=name)
        outs, timing = [], []
        try:
            for _ in range(cfg.warmup):
                method.edit(inputs[0])
            for x in inputs:
                out, t = measure(method, x, device)
                outs.append(out)
                timing.append(t)
                bar.update(1)
        except Exception as e:  # one method's failure must not lose the others' results
            failed[name] = error_text(e)
            bar.update(len(inputs) - len(outs))
            continue
        outputs[name] = outs
        for s, x, out, t in zip(samples, inputs, outs, timing):
            rows.append(
                {
                    "method": name,
                    "id": s.id,
                    "prompt": x.prompt,
                    "seed": x.seed,
                    "beta": s.beta,
                    **image_metrics(s, out, cfg.background_dilation, lpips),
                    **t,
                }
            )
    bar.close()
    table = pd.DataFrame(rows)
    if pickscore is not None and len(table):
        scores = {name: pickscore(outs, list(pairs["prompt"])) for name, outs in outputs.items()}
        table["pickscore"] = [scores[m][k % len(samples)] for k, m in enumerate(table["method"])]
    fids = {}
    if fid is not None and fid_reference is not None:
        for name, outs in outputs.items():
            fids[name] = fid.score(iter(outs), fid_reference)
    summary = summarise(table) if len(table) else {}
    return EvalResult(table, summary, fids, outputs, failed)
