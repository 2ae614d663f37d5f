"""Figures drawn from numbers with matplotlib's Agg backend; nothing here prints.

>>> fig = sample_grid(ds.train.images[:32], ds.train.labels[:32], ds.classes)
>>> save_figure(fig, "grid.png")
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from digitlab.atomic import write_bytes
from digitlab.errors import DigitlabError

ASCII_RAMP = " .:-=+*#%@"  # dark to bright


def sample_grid(
    images: np.ndarray,
    labels: np.ndarray | None,
    classes: Sequence[str],
    columns: int = 8,
    indices: Sequence[int] | None = None,
    title: str | None = None,
) -> Figure:
    """A grid of digits (uint8 (N, 28, 28)), each titled with its label (and index)."""
    n = len(images)
    columns = max(1, min(columns, n))
    rows = max(1, -(-n // columns))
    fig, axes = plt.subplots(
        rows, columns, figsize=(columns * 1.1, rows * 1.25 + 0.3), squeeze=False
    )
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k >= n:
            continue
        ax.imshow(images[k], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        parts = []
        if indices is not None:
            parts.append(f"#{indices[k]}")
        if labels is not None:
            parts.append(str(classes[int(labels[k])]))
        ax.set_title(" ".join(parts), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


FIGURE_FORMATS = ("png", "jpg", "jpeg", "svg", "pdf")


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = 100) -> None:
    """Write a figure atomically in the format its suffix names (PNG when there is none)."""
    suffix = os.path.splitext(str(path))[1].lower().lstrip(".") or "png"
    if suffix not in FIGURE_FORMATS:
        plt.close(fig)
        raise DigitlabError(f"{path}: cannot write .{suffix}; use {', '.join(FIGURE_FORMATS)}")
    buffer = io.BytesIO()
    fig.savefig(buffer, format=suffix, dpi=dpi)
    plt.close(fig)
    write_bytes(path, buffer.getvalue())


def ascii_art(
    images: np.ndarray,
    captions: Sequence[str],
    width: int = 80,
) -> str:
    """Digits as text, side by side: each 28x28 image becomes 28 columns by 14 rows."""
    blocks = []
    for image, caption in zip(images, captions, strict=True):
        halves = image.astype(np.float32).reshape(14, 2, 28).mean(axis=1)  # 2 rows per line
        idx = np.minimum((halves / 256 * len(ASCII_RAMP)).astype(int), len(ASCII_RAMP) - 1)
        lines = ["".join(ASCII_RAMP[i] for i in row) for row in idx]
        blocks.append([caption[:28].ljust(28), *lines])
    per_row = max(1, (width + 1) // 29)
    groups = []
    for start in range(0, len(blocks), per_row):
        group = blocks[start : start + per_row]
        rows = (" ".join(block[r] for block in group).rstrip() for r in range(len(group[0])))
        groups.append("\n".join(rows))
    return "\n\n".join(groups)
