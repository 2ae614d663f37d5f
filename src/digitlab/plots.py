"""Figures drawn from numbers with matplotlib's Agg backend; nothing here prints.

>>> fig = sample_grid(ds.train.images[:32], ds.train.labels[:32], ds.classes)
>>> save_figure(fig, "grid.png")
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Sequence

import matplotlib
import matplotlib.ticker
import numpy as np
from matplotlib.figure import Figure

from digitlab.atomic import write_bytes
from digitlab.errors import DigitlabError

ASCII_RAMP = " .:-=+*#%@"  # dark to bright


def subplots(nrows: int = 1, ncols: int = 1, *, figsize=None, **kwargs):
    """(figure, axes) as pyplot.subplots gives, without pyplot: each figure stands alone (no
    global registry to close it from, safe in the server's threads), it draws with Agg when
    saved, and importing digitlab does not import pyplot (a third of a second)."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def mosaic(
    cells: Sequence[np.ndarray | None],
    captions: Sequence[str],
    columns: int,
    title: str | None = None,
    caption_lines: int = 1,
    row_labels: Sequence[str] | None = None,
) -> Figure:
    """Digits (uint8 (H, W); None leaves a cell empty) laid into one image on one axes, each
    under its caption, `columns` to a row, with an optional label left of each row. One axes
    per digit took 2 s to lay out for 80 digits, and about half of `digitlab compare`'s time."""
    n = len(cells)
    columns = max(1, min(columns, n))
    rows = max(1, -(-n // columns))
    h, w = next((c.shape[:2] for c in cells if c is not None), (28, 28))
    gap = max(2, w // 7)  # pixels between cells
    head = max(8, h // 3) * caption_lines  # a caption's room above each cell
    cell_h, cell_w = h + head, w + gap
    left = 2 * w if row_labels is not None else 0  # room for the row labels
    picture = np.full((rows * cell_h, left + columns * cell_w), np.nan)
    inch = 1.1 / cell_w  # each cell about 1.1 inches wide
    top = 0.35 if title else 0.0
    fig = Figure(figsize=(picture.shape[1] * inch, rows * cell_h * inch + top))
    ax = fig.add_axes((0, 0, 1, 1 - top / fig.get_figheight()))
    ax.set_axis_off()
    for k, cell in enumerate(cells):
        r, c = divmod(k, columns)
        y, x = r * cell_h + head, left + c * cell_w + gap // 2
        if cell is None:
            continue
        picture[y : y + h, x : x + w] = cell
        ax.text(x + w / 2, y - 1, captions[k], ha="center", va="bottom", fontsize=7)
    for r, label in enumerate(row_labels or ()):
        ax.text(left - gap, r * cell_h + head + h / 2, label, ha="right", va="center", fontsize=8)
    cmap = matplotlib.colormaps["gray"].with_extremes(bad="white")  # between cells: paper
    ax.imshow(picture, cmap=cmap, vmin=0, vmax=255, interpolation="nearest", aspect="equal")
    if title:
        fig.suptitle(title, fontsize=10, y=1 - 0.08 / fig.get_figheight())
    return fig


def sample_grid(
    images: np.ndarray,
    labels: np.ndarray | None,
    classes: Sequence[str],
    columns: int = 8,
    indices: Sequence[int] | None = None,
    title: str | None = None,
    captions: Sequence[str] | None = None,
) -> Figure:
    """A grid of digits (uint8 (N, H, W)), each titled with its label (and index)."""
    texts = []
    for k in range(len(images)):
        parts = [captions[k]] if captions is not None else []
        if indices is not None and captions is None:
            parts.append(f"#{indices[k]}")
        if labels is not None:
            parts.append(str(classes[int(labels[k])]))
        texts.append(" ".join(parts))
    return mosaic(list(images), texts, columns, title)


FIGURE_FORMATS = ("png", "jpg", "jpeg", "svg", "pdf")


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = 100) -> None:
    """Write a figure atomically in the format its suffix names (PNG when there is none)."""
    suffix = os.path.splitext(str(path))[1].lower().lstrip(".") or "png"
    if suffix not in FIGURE_FORMATS:
        raise DigitlabError(f"{path}: cannot write .{suffix}; use {', '.join(FIGURE_FORMATS)}")
    write_bytes(path, figure_bytes(fig, suffix, dpi))


def figure_bytes(fig: Figure, fmt: str = "png", dpi: int = 100) -> bytes:
    """The figure encoded as `fmt`; a figure pyplot made (a user's own) is closed too."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=dpi)
    if "matplotlib.pyplot" in sys.modules:  # only pyplot's figures are held by a registry
        sys.modules["matplotlib.pyplot"].close(fig)
    return buffer.getvalue()


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


# ---- evaluation figures -------------------------------------------------------------------------


def confusion_heatmap(confusion: np.ndarray, classes: Sequence[str], title: str = "") -> Figure:
    """Row-normalised confusion matrix with the counts written in each cell."""
    counts = np.asarray(confusion)
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    k = len(classes)
    fig, ax = subplots(figsize=(1.0 + 0.55 * k, 0.8 + 0.5 * k))
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            if counts[i, j]:
                ax.text(
                    j,
                    i,
                    str(counts[i, j]),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if share[i, j] > 0.5 else "black",
                )
    ax.set_xticks(range(k), classes, fontsize=8, rotation=45 if max(map(len, classes)) > 2 else 0)
    ax.set_yticks(range(k), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion matrix (colour: share of the true class)", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


def learning_curves(histories: dict[str, list[dict]]) -> Figure:
    """Loss and accuracy per epoch, train (dashed) vs validation (solid), one colour per run."""
    fig, (loss_ax, acc_ax) = subplots(1, 2, figsize=(10, 3.6))
    palette = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    for n, (name, rows) in enumerate(histories.items()):
        colour = palette[n % len(palette)]
        epochs = [r["epoch"] for r in rows]
        prefix = f"{name}: " if len(histories) > 1 else ""
        for ax, key in ((loss_ax, "loss"), (acc_ax, "acc")):
            ax.plot(
                epochs,
                [r[f"train_{key}"] for r in rows],
                "--",
                color=colour,
                label=f"{prefix}train",
            )
            val = [r.get(f"val_{key}") for r in rows]
            if any(v == v and v is not None for v in val):
                ax.plot(epochs, val, "-o", color=colour, markersize=3, label=f"{prefix}validation")
    loss_ax.set(title="loss", xlabel="epoch")
    acc_ax.set(title="accuracy", xlabel="epoch")
    acc_ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def per_class_accuracy(per_class: list[dict]) -> Figure:
    """Recall (the share of each class classified correctly) as bars, worst highlighted."""
    names = [c["class"] for c in per_class]
    recall = np.array([c["recall"] for c in per_class])
    fig, ax = subplots(figsize=(max(5, 0.6 * len(names)), 3.2))
    colours = ["tab:red" if r == recall.min() else "tab:blue" for r in recall]
    ax.bar(range(len(names)), recall, color=colours)
    ax.set_xticks(
        range(len(names)), names, fontsize=8, rotation=45 if max(map(len, names)) > 2 else 0
    )
    low = max(0.0, float(recall.min()) - 0.05)
    ax.set_ylim(low, 1.0)
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.set_title("accuracy per class (recall)", fontsize=10)
    for i, r in enumerate(recall):
        ax.text(i, r, f"{r:.1%}", ha="center", va="bottom", fontsize=7)
    fig.tight_layout()
    return fig


def mistakes_gallery(
    images: np.ndarray, mistakes: list[dict], classes: Sequence[str], columns: int = 8
) -> Figure:
    """The most confident mistakes: each digit titled 'true → predicted (confidence)'."""
    cells = [images[m["index"]] for m in mistakes] or [None]
    captions = [
        f"{classes[m['true']]} → {classes[m['predicted']]}\n{m['confidence']:.0%}" for m in mistakes
    ] or [""]
    title = "most confident mistakes (true → predicted, confidence)"
    return mosaic(cells, captions, columns, title, caption_lines=2)


def confusable_examples(
    images: np.ndarray,
    labels: np.ndarray,
    predicted: np.ndarray,
    pairs: list[dict],
    classes: Sequence[str],
    per_pair: int = 6,
) -> Figure:
    """One row per confusable pair a↔b: test images of one class predicted as the other."""
    cells: list[np.ndarray | None] = []
    captions: list[str] = []
    for pair in pairs or [None]:
        examples: np.ndarray = np.array([], int)
        if pair is not None:
            a, b = pair["a"], pair["b"]
            examples = np.flatnonzero(
                ((labels == a) & (predicted == b)) | ((labels == b) & (predicted == a))
            )[:per_pair]
        cells += [images[i] for i in examples] + [None] * (per_pair - len(examples))
        captions += [f"{classes[labels[i]]} → {classes[predicted[i]]}" for i in examples]
        captions += [""] * (per_pair - len(examples))
    row_labels = [f"{classes[p['a']]}↔{classes[p['b']]}\n{p['total']}×" for p in pairs]
    title = "the most confusable pairs, with examples"
    return mosaic(cells, captions, per_pair, title, row_labels=row_labels)


def reliability_diagram(bins: list[dict], ece: float, title: str = "") -> Figure:
    """Accuracy against confidence per bin; the diagonal is perfect calibration."""
    fig, ax = subplots(figsize=(4.2, 4))
    used = [b for b in bins if b["count"]]
    centres = [(b["low"] + b["high"]) / 2 for b in used]
    width = used[0]["high"] - used[0]["low"] if used else 0.1
    ax.bar(
        centres,
        [b["accuracy"] for b in used],
        width=width * 0.9,
        color="tab:blue",
        alpha=0.8,
        label="accuracy",
    )
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy")
    ax.set_title(title or f"reliability (ECE {ece:.2%})", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def steps_figure(steps: dict[str, np.ndarray], title: str = "") -> Figure:
    """Each preprocessing step of a real image, left to right (ink.prepare's steps)."""
    fig, axes = subplots(1, len(steps), figsize=(2.1 * len(steps), 2.5), squeeze=False)
    for ax, (name, image) in zip(axes[0], steps.items(), strict=True):
        ax.imshow(image, cmap="gray", interpolation="nearest")
        ax.set_title(name, fontsize=7)
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
