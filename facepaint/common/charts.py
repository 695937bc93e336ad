"""Static charts (PNG, matplotlib): what DVC shows offline, where its interactive Vega plots need a CDN."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facepaint.common.io import atomic_path


def line_chart(
    x,
    series: dict[str, object],
    path: Path,
    title: str,
    x_label: str,
    y_label: str,
    smooth: int = 0,
    log_y: bool = False,
    panels: bool = False,
) -> Path:
    """One PNG line chart of each named series against `x` (written atomically to `path`). `smooth` > 1 adds
    each series' running mean over that many points, drawn over the raw values in a lighter line. `panels`: one
    panel per series, one above the other with a shared x axis (for series of different scales)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.asarray(x, dtype=float)
    if panels:
        n = len(series)
        fig, axes = plt.subplots(n, 1, figsize=(7, 1.6 * n + 0.8), dpi=120, sharex=True, squeeze=False)
        for i, (ax, (name, y)) in enumerate(zip(axes[:, 0], series.items())):
            ax.plot(x, np.asarray(y, dtype=float), color=f"C{i}", linewidth=1)
            ax.set_ylabel(name, fontsize=8)
            ax.grid(alpha=0.3)
        axes[0, 0].set_title(title)
        axes[-1, 0].set_xlabel(x_label)
        return _save(fig, path)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    for i, (name, y) in enumerate(series.items()):
        y = np.asarray(y, dtype=float)
        colour = f"C{i}"
        if smooth > 1 and len(y) > smooth:
            ax.plot(x, y, color=colour, alpha=0.3, linewidth=1)
            kernel = np.ones(smooth) / smooth
            ax.plot(
                x[smooth - 1 :], np.convolve(y, kernel, mode="valid"), color=colour, label=f"{name} (mean of {smooth})"
            )
        else:
            ax.plot(x, y, color=colour, label=name, marker="o" if len(y) < 20 else None)
    if log_y:
        ax.set_yscale("log")
    ax.set(title=title, xlabel=x_label, ylabel=y_label)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    """Lay out `fig`, write it as a PNG atomically to `path`, close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def note_card(title: str, note: str, path: Path, width: int = 72) -> Path:
    """A PNG that says in words why a plot has nothing to show (e.g. a stage that is off), so that a plots page
    shows the reason where the chart would be (written atomically to `path`)."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = textwrap.wrap(note, width)
    fig = plt.figure(figsize=(7, 0.9 + 0.25 * len(lines)), dpi=120)
    fig.text(0.03, 0.93, title, fontsize=13, weight="bold", va="top")
    fig.text(0.03, 0.93 - 0.5 / fig.get_figheight(), "\n".join(lines), fontsize=10, va="top", linespacing=1.4)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
