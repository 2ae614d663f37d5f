"""Exploratory statistics of a digit dataset, as numbers (plots.py draws them).

    >>> balance = class_balance(ds)                      # counts, shares, the largest imbalance
    >>> ink = ink_stats(ds.train.images)         # per image: ink, box, centre, slant, thickness
    >>> dups = exact_duplicates(ds.train.images)         # groups of identical images
    >>> suspects = label_suspects(features, labels)      # neighbours mostly carry another label

Everything works on whole uint8 arrays (N, 28, 28) at once; neighbour searches run on
PCA features in blocks, so all 70,000 MNIST images take seconds.
"""

from __future__ import annotations

import numpy as np


def class_balance(
    train_labels: np.ndarray, test_labels: np.ndarray | None, classes: list[str]
) -> dict:
    """Counts and shares per class, and the most and least frequent class of train."""
    k = len(classes)
    train = np.bincount(train_labels, minlength=k)
    test = np.bincount(test_labels, minlength=k) if test_labels is not None else np.zeros(k, int)
    most, least = int(train.argmax()), int(train.argmin())
    return {
        "train": train.tolist(),
        "test": test.tolist(),
        "train_share": (train / max(train.sum(), 1)).tolist(),
        "test_share": (test / max(test.sum(), 1)).tolist(),
        "largest_imbalance": {
            "most": classes[most],
            "least": classes[least],
            "ratio": float(train[most] / train[least]) if train[least] else None,  # none of it
        },
    }


def class_means(images: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard-deviation image per class, float32 (k, 28, 28) in 0..255."""
    x = images.astype(np.float32)
    means = np.stack(
        [
            x[labels == c].mean(axis=0) if (labels == c).any() else np.zeros(x.shape[1:])
            for c in range(k)
        ]
    )
    stds = np.stack(
        [
            x[labels == c].std(axis=0) if (labels == c).any() else np.zeros(x.shape[1:])
            for c in range(k)
        ]
    )
    return means.astype(np.float32), stds.astype(np.float32)


def cosine_similarity(vectors: np.ndarray) -> np.ndarray:
    v = vectors.reshape(len(vectors), -1).astype(np.float64)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    return v @ v.T


def most_similar_pairs(similarity: np.ndarray, classes: list[str], limit: int = 5) -> list[dict]:
    k = len(classes)
    pairs = [(similarity[a, b], a, b) for a in range(k) for b in range(a + 1, k)]
    return [
        {"a": classes[a], "b": classes[b], "similarity": float(s)}
        for s, a, b in sorted(pairs, reverse=True)[:limit]
    ]


def pixel_stats(images: np.ndarray) -> dict:
    """Intensity histogram, blank share, always-blank pixels, and the normalisation constants."""
    flat = images.reshape(len(images), -1)
    histogram = np.bincount(flat.ravel(), minlength=256)
    always_blank = (flat == 0).all(axis=0)
    scaled_mean = float(flat.mean() / 255)
    scaled_std = float(np.sqrt((flat.astype(np.float64) ** 2).mean() / 255**2 - scaled_mean**2))
    return {
        "histogram": histogram.tolist(),
        "blank_share": float(histogram[0] / flat.size),
        "always_blank": int(always_blank.sum()),
        "always_blank_mask": always_blank.reshape(images.shape[1:]),
        "mean": scaled_mean,
        "std": scaled_std,
    }


INK_FIELDS = ("ink", "height", "width", "centre_row", "centre_col", "slant", "thickness")


def ink_stats(images: np.ndarray, threshold: int = 128) -> dict[str, np.ndarray]:
    """Per image: ink (sum of intensities / 255), bounding box of pixels ≥ threshold, centre of mass
    (row, col), slant (horizontal shift per row of the ink, from second moments; positive leans
    right), and stroke thickness (2 × area / perimeter of the thresholded ink, in pixels)."""
    _, h, w = images.shape
    x = images.astype(np.float32) / 255
    mass = x.sum(axis=(1, 2))
    safe = np.maximum(mass, 1e-9)
    rows, cols = np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32)
    r = (x.sum(axis=2) * rows).sum(axis=1) / safe
    c = (x.sum(axis=1) * cols).sum(axis=1) / safe
    dr, dc = rows[None, :, None] - r[:, None, None], cols[None, None, :] - c[:, None, None]
    mu11 = (x * dr * dc).sum(axis=(1, 2)) / safe
    mu02 = (x * dr * dr).sum(axis=(1, 2)) / safe
    slant = -mu11 / np.maximum(mu02, 1e-9)  # rows grow downwards: a right lean has negative mu11
    on = images >= threshold
    any_row, any_col = on.any(axis=2), on.any(axis=1)
    height = np.where(
        any_row.any(axis=1), h - any_row[:, ::-1].argmax(axis=1) - any_row.argmax(axis=1), 0
    )
    width = np.where(
        any_col.any(axis=1), w - any_col[:, ::-1].argmax(axis=1) - any_col.argmax(axis=1), 0
    )
    padded = np.pad(on, ((0, 0), (1, 1), (1, 1)))
    inner = padded[:, :-2, 1:-1] & padded[:, 2:, 1:-1] & padded[:, 1:-1, :-2] & padded[:, 1:-1, 2:]
    area = on.sum(axis=(1, 2))
    perimeter = (on & ~inner).sum(axis=(1, 2))
    thickness = 2 * area / np.maximum(perimeter, 1)
    return {
        "ink": mass,
        "height": height.astype(np.float32),
        "width": width.astype(np.float32),
        "centre_row": r,
        "centre_col": c,
        "slant": slant,
        "thickness": thickness.astype(np.float32),
    }


def per_class_medians(
    stats: dict[str, np.ndarray], labels: np.ndarray, classes: list[str]
) -> list[dict]:
    return [
        {
            "class": name,
            **{
                f: float(np.median(stats[f][labels == c])) if (labels == c).any() else None
                for f in INK_FIELDS
            },
        }
        for c, name in enumerate(classes)
    ]


def pca(x: np.ndarray, components: int = 50) -> dict:
    """PCA of flattened images (float, N x D) by SVD of the centred data."""
    flat = x.reshape(len(x), -1).astype(np.float32)
    mean = flat.mean(axis=0)
    _, s, vt = np.linalg.svd(flat - mean, full_matrices=False)
    variance = s**2 / max(len(flat) - 1, 1)
    ratio = variance / variance.sum()
    cumulative = np.cumsum(ratio)
    return {
        "mean": mean,
        "components": vt[:components],
        "explained": ratio,
        "for_90": int(np.searchsorted(cumulative, 0.90) + 1),
        "for_95": int(np.searchsorted(cumulative, 0.95) + 1),
    }


def project(x: np.ndarray, fit: dict, dims: int | None = None) -> np.ndarray:
    comps = fit["components"][:dims] if dims else fit["components"]
    return (x.reshape(len(x), -1).astype(np.float32) - fit["mean"]) @ comps.T


def stratified_sample(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """About n indices with every class in proportion; sorted."""
    if n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    picks = [
        rng.permutation(np.flatnonzero(labels == c))[: max(1, round(n * (labels == c).mean()))]
        for c in np.unique(labels)
    ]
    return np.sort(np.concatenate(picks))


def exact_duplicates(images: np.ndarray, others: np.ndarray | None = None) -> list[list[int]]:
    """Groups of identical images within `images` (indices), or, with `others`, pairs
    [i in images, j in others] of identical images across the two."""
    n = len(images)
    pool = images if others is None else np.concatenate([images, others])
    keys = np.ascontiguousarray(pool.reshape(len(pool), -1)).view(
        np.dtype((np.void, pool[0].size))
    )[:, 0]
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    groups = []
    for g in np.flatnonzero(counts > 1):
        members = np.flatnonzero(inverse == g)
        if others is None:
            groups.append(members.tolist())
        else:
            left, right = members[members < n], members[members >= n] - n
            groups += [[int(i), int(j)] for i in left for j in right]
    return groups


def nearest_neighbours(
    queries: np.ndarray, base: np.ndarray, k: int, skip_self: bool, block: int = 2048
) -> tuple[np.ndarray, np.ndarray]:
    """k nearest rows of `base` for each row of `queries` (Euclidean), brute force in blocks."""
    base_sq = (base.astype(np.float32) ** 2).sum(axis=1)
    dist, idx = [], []
    for start in range(0, len(queries), block):
        q = queries[start : start + block].astype(np.float32)
        d = (q**2).sum(axis=1)[:, None] + base_sq[None, :] - 2 * q @ base.T
        if skip_self:
            d[np.arange(len(q)), np.arange(start, start + len(q))] = np.inf
        part = np.argpartition(d, k, axis=1)[:, :k]
        order = np.take_along_axis(d, part, axis=1).argsort(axis=1)
        idx.append(np.take_along_axis(part, order, axis=1))
        dist.append(np.sqrt(np.maximum(np.take_along_axis(d, idx[-1], axis=1), 0)))
    return np.concatenate(dist), np.concatenate(idx)


def near_duplicates(
    dist: np.ndarray,
    idx: np.ndarray,
    images: np.ndarray,
    base: np.ndarray | None = None,
    max_distance: float = 1.0,
) -> list[dict]:
    """Pairs that are not identical but whose pixels (0..1) lie within `max_distance` (Euclidean).

    `dist`, `idx` are nearest neighbours (in PCA space) of `images` among `base` (default: among
    `images` themselves); the closest candidate of each image is checked on the pixels."""
    cross = base is not None
    base = images if base is None else base
    pairs = []
    for i in np.flatnonzero(
        dist[:, 0] < max_distance * 1.2
    ):  # PCA distance ≤ pixel distance, roughly
        j = int(idx[i, 0])
        if not cross and j < i and idx[j, 0] == i:
            continue  # the same pair, seen from the other side
        d = float(
            np.linalg.norm(images[i].astype(np.float32) / 255 - base[j].astype(np.float32) / 255)
        )
        if 0 < d <= max_distance:
            pairs.append({"i": int(i), "j": j, "distance": d})
    return sorted(pairs, key=lambda p: p["distance"])


def label_suspects(idx: np.ndarray, labels: np.ndarray, agreement: float = 0.8) -> list[dict]:
    """Images whose nearest neighbours (`idx`, N x k) mostly (≥ agreement) carry one other label."""
    neighbour_labels = labels[idx]
    k = idx.shape[1]
    votes = np.stack(
        [(neighbour_labels == c).sum(axis=1) for c in range(int(labels.max()) + 1)], axis=1
    )
    votes[np.arange(len(labels)), labels] = -1  # only other labels count
    best = votes.argmax(axis=1)
    share = votes[np.arange(len(labels)), best] / k
    found = np.flatnonzero(share >= agreement)
    order = found[np.argsort(-share[found], kind="stable")]
    return [
        {
            "index": int(i),
            "label": int(labels[i]),
            "neighbours_say": int(best[i]),
            "share": float(share[i]),
        }
        for i in order
    ]


def split_shift(train: dict[str, np.ndarray], test: dict[str, np.ndarray]) -> dict:
    """Kolmogorov-Smirnov statistic of each ink statistic between train and test; the largest."""
    from scipy.stats import ks_2samp

    stats = {f: float(ks_2samp(train[f], test[f]).statistic) for f in INK_FIELDS}
    worst = max(stats, key=stats.get)
    return {"ks": stats, "largest": worst, "largest_ks": stats[worst]}
