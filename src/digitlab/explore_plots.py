"""Figures for exploring a dataset (explore.py computes the numbers; nothing here prints).

>>> fig = class_balance_bars(balance, classes)
>>> fig = embedding_scatter({"PCA": xy_pca, "t-SNE": xy_tsne}, labels, classes)
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from digitlab.plots import subplots


def class_balance_bars(balance: dict, classes: Sequence[str]) -> Figure:
    k = len(classes)
    fig, ax = subplots(figsize=(max(6, 0.7 * k), 3.2))
    x = np.arange(k)
    ax.bar(x - 0.2, balance["train_share"], width=0.4, label="train")
    ax.bar(x + 0.2, balance["test_share"], width=0.4, label="test")
    ax.axhline(1 / k, color="gray", linestyle="--", linewidth=1, label="perfect balance")
    ax.set_xticks(x, classes, fontsize=8, rotation=45 if max(map(len, classes)) > 2 else 0)
    ax.set_ylabel("share of the split")
    ax.set_title("class balance", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def class_mean_images(means: np.ndarray, stds: np.ndarray, classes: Sequence[str]) -> Figure:
    k = len(classes)
    fig, axes = subplots(2, k, figsize=(1.1 * k, 2.6), squeeze=False)
    for c in range(k):
        for row, (images, cmap) in enumerate(((means, "gray"), (stds, "magma"))):
            axes[row, c].imshow(images[c], cmap=cmap, vmin=0, vmax=255 if row == 0 else None)
            axes[row, c].set_axis_off()
        axes[0, c].set_title(classes[c], fontsize=8)
    fig.suptitle("mean (top) and standard deviation (bottom) of each class", fontsize=9)
    fig.tight_layout()
    return fig


def similarity_heatmap(similarity: np.ndarray, classes: Sequence[str]) -> Figure:
    k = len(classes)
    fig, ax = subplots(figsize=(1.0 + 0.55 * k, 0.8 + 0.5 * k))
    im = ax.imshow(similarity, cmap="viridis")
    for i in range(k):
        for j in range(k):
            ax.text(
                j, i, f"{similarity[i, j]:.2f}", ha="center", va="center", fontsize=6, color="white"
            )
    ax.set_xticks(range(k), classes, fontsize=8, rotation=45 if max(map(len, classes)) > 2 else 0)
    ax.set_yticks(range(k), classes, fontsize=8)
    ax.set_title("cosine similarity of the class means", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


def pixel_figure(stats: dict) -> Figure:
    """Intensity histogram (log scale) and the map of pixels blank in every image."""
    fig, (hist, mask) = subplots(1, 2, figsize=(9, 3.2), gridspec_kw={"width_ratios": [2.2, 1]})
    hist.bar(np.arange(256), np.maximum(stats["histogram"], 1), width=1.0)
    hist.set_yscale("log")
    hist.set(xlabel="intensity (0 = background)", ylabel="pixels", xlim=(-2, 257))
    hist.set_title(f"intensities: {stats['blank_share']:.1%} of all pixels are 0", fontsize=10)
    mask.imshow(stats["always_blank_mask"], cmap="gray_r", vmin=0, vmax=1)
    mask.set_title(f"{stats['always_blank']} pixels blank in every image", fontsize=9)
    mask.set_axis_off()
    fig.tight_layout()
    return fig


def ink_distributions(
    stats: dict[str, np.ndarray], labels: np.ndarray, classes: Sequence[str], fields: Sequence[str]
) -> Figure:
    """One box plot per statistic, a box per class."""
    fig, axes = subplots(2, -(-len(fields) // 2), figsize=(14, 5.5), squeeze=False)
    for ax, name in zip(axes.flat, fields, strict=False):
        ax.boxplot(
            [stats[name][labels == c] for c in range(len(classes))], showfliers=False, widths=0.6
        )
        ax.set_xticks(range(1, len(classes) + 1), classes, fontsize=7)
        ax.set_title(name.replace("_", " "), fontsize=9)
    for ax in list(axes.flat)[len(fields) :]:
        ax.set_axis_off()
    fig.suptitle("ink statistics per class (boxes: quartiles; whiskers: 1.5 IQR)", fontsize=10)
    fig.tight_layout()
    return fig


def pca_variance(explained: np.ndarray, for_90: int, for_95: int) -> Figure:
    fig, ax = subplots(figsize=(5, 3.2))
    cumulative = np.cumsum(explained)
    ax.plot(np.arange(1, len(cumulative) + 1), cumulative)
    for n, level in ((for_90, 0.9), (for_95, 0.95)):
        ax.axhline(level, color="gray", linestyle=":", linewidth=1)
        ax.axvline(n, color="gray", linestyle=":", linewidth=1)
        ax.text(n, level - 0.06, f" {n} components: {level:.0%}", fontsize=7)
    ax.set(xscale="log", xlabel="principal components", ylabel="variance kept", ylim=(0, 1.01))
    ax.set_title("PCA: how much variance a few directions keep", fontsize=10)
    fig.tight_layout()
    return fig


def embedding_scatter(
    points: dict[str, np.ndarray], labels: np.ndarray, classes: Sequence[str]
) -> Figure:
    """2-D embeddings side by side, coloured by class."""
    fig, axes = subplots(1, len(points), figsize=(5.2 * len(points), 4.6), squeeze=False)
    cmap = matplotlib.colormaps["tab10" if len(classes) <= 10 else "tab20"]
    for ax, (name, xy) in zip(axes[0], points.items(), strict=True):
        for c in range(len(classes)):
            mask = labels == c
            ax.scatter(
                xy[mask, 0], xy[mask, 1], s=3, color=cmap(c % cmap.N), label=classes[c], alpha=0.7
            )
        ax.set_title(name, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, -1].legend(fontsize=7, markerscale=4, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.tight_layout()
    return fig


def image_pairs(left: np.ndarray, right: np.ndarray, captions: Sequence[str], title: str) -> Figure:
    """Pairs of images side by side (duplicates), a caption above each pair."""
    n = max(1, len(left))
    columns = min(4, n)
    rows = -(-n // columns)
    fig, axes = subplots(
        rows, 2 * columns, figsize=(2.2 * columns, 1.35 * rows + 0.4), squeeze=False
    )
    for ax in axes.flat:
        ax.set_axis_off()
    for k in range(len(left)):
        r, c = divmod(k, columns)
        axes[r, 2 * c].imshow(left[k], cmap="gray", vmin=0, vmax=255)
        axes[r, 2 * c + 1].imshow(right[k], cmap="gray", vmin=0, vmax=255)
        axes[r, 2 * c].set_title(captions[k], fontsize=7, loc="left")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
