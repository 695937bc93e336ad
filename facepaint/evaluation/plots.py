"""The evaluation's figures (DVC plots): background PSNR and LPIPS per image, how far each method changes the
photo around the face-mask boundary, maps of where the background changed (the publication's Fig. 5), a grid of
the methods' edits, and the loss ablation's metrics."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from PIL import Image
from scipy.ndimage import distance_transform_edt

from facepaint.common.io import atomic_path
from facepaint.evaluation.methods.base import LABELS

if TYPE_CHECKING:
    from facepaint.evaluation.run import Sample


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
            if out is None:  # a pair the method does not edit
                continue
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


def plot_distributions(table: pd.DataFrame, path: Path) -> None:
    """Background PSNR and LPIPS per image, with and without blending (and every other method)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [c for c in ("psnr_bg", "lpips_bg") if c in table and table[c].notna().any()]
    fig, axes = plt.subplots(1, max(len(cols), 1), figsize=(6 * max(len(cols), 1), 4), squeeze=False)
    labels = LABELS
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

    labels = LABELS
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


def background_maps(samples: list[Sample], blended: list, unblended: list, path: Path, cell: int = 192) -> None:
    """Where each pixel changed, per photo (rows): the input with M outlined, |input - blended| (ours),
    |input - not blended| and |not blended - blended| (the decoded crop pasted as it is against the pixel-level
    blend: what blending restores), each mean |difference| over RGB on one colour scale with M and the soft
    mask's outer edge (M_soft > 0.01) outlined. The publication's Fig. 5 shows such background maps; it does not
    state their scale or colours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def diff(a, b):
        return np.abs(a.astype(np.float32) - b.astype(np.float32)).mean(axis=2)

    titles = ["input (M outlined)", "|input - blended|", "|input - not blended|", "|not blended - blended|"]
    fig, axes = plt.subplots(
        len(samples), 4, figsize=(2.4 * 4 + 0.8, 2.4 * len(samples)), squeeze=False, layout="constrained"
    )
    shown = None
    for r, (s, ours, plain) in enumerate(zip(samples, blended, unblended)):
        maps = [diff(s.image, ours), diff(s.image, plain), diff(plain, ours)]
        for c in range(4):
            ax = axes[r][c]
            if c == 0:
                ax.imshow(s.image)
            else:
                # a square-root scale from 0 to 64: a change of 1/255 is visible, a face's full change saturates
                shown = ax.imshow(np.sqrt(np.clip(maps[c - 1], 0, 64)), cmap="magma", vmin=0, vmax=8)
            ax.contour(s.mask, levels=[0.5], colors="cyan", linewidths=0.6)
            if c:
                ax.contour(s.soft > 0.01, levels=[0.5], colors="white", linewidths=0.4, linestyles="dotted")
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=8)
        axes[r][0].set_ylabel(f"image {s.id}", fontsize=7)
    if shown is not None:
        bar = fig.colorbar(shown, ax=axes[:, 1:], shrink=0.8, ticks=[0, 1, 2, 4, 8])
        bar.ax.set_yticklabels(["0", "1", "4", "16", "64+"])
        bar.set_label("mean |difference| over RGB (0-255; square-root scale)", fontsize=7)
    fig.suptitle("where the photo changed (cyan: M; dotted: M_soft's outer edge)", fontsize=9)
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

    labels = labels or LABELS
    cols = ["input", *outputs]
    fig, axes = plt.subplots(len(samples), len(cols), figsize=(2.2 * len(cols), 2.4 * len(samples)), squeeze=False)
    for r, (s, prompt) in enumerate(zip(samples, prompts)):
        for c, name in enumerate(cols):
            ax = axes[r][c]
            img = s.image if name == "input" else outputs[name][r]
            if img is None:  # a pair the method does not edit (MSaGAN: another attribute's prompt)
                ax.text(0.5, 0.5, "not edited\n(prompt not\nits attribute's)", ha="center", va="center", fontsize=7,
                        color="0.4", transform=ax.transAxes)  # fmt: skip
            else:
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

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def plot_metrics(summary: dict, path: Path) -> None:
    """One panel per metric: each variant's mean with its standard deviation over images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        (col, title)
        for col, title in (
            ("psnr_bg", "background PSNR (dB, outside M)"),
            ("psnr_full", "whole-image PSNR (dB)"),
            ("lpips_bg", "background LPIPS (outside M)"),
            ("pickscore", "PickScore"),
        )
        if any(isinstance(s.get(col), float) and np.isfinite(s[col]) for s in summary.values())
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.5 * len(panels), 3), squeeze=False)
    for ax, (col, title) in zip(axes[0], panels):
        names = list(summary)
        means = [summary[v].get(col, np.nan) for v in names]
        stds = [summary[v].get(f"{col}_std", 0.0) for v in names]
        ax.bar(names, means, yerr=stds, capsize=4, color=["tab:blue", "tab:orange", "tab:green"][: len(names)])
        ax.set_title(title, fontsize=9)
    fig.suptitle("loss ablation (mean ± std over images)", fontsize=10)
    fig.tight_layout()
    save_fig(fig, path)
