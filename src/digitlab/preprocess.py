"""From uint8 digits to what a network eats, in NumPy: scale, normalise, one-hot, split.

>>> x = to_float(ds.train.images)                      # float32 (N, 1, 28, 28) in [0, 1]
>>> train_idx, val_idx = stratified_split(ds.train.labels, 0.1, seed=0)
"""

from __future__ import annotations

import numpy as np

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # of the training pixels scaled to [0, 1]


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28) in [0, 1]."""
    x = images.astype(np.float32)
    x *= np.float32(1 / 255)
    return x[:, None]


def normalise(x: np.ndarray, mean: float = MNIST_MEAN, std: float = MNIST_STD) -> np.ndarray:
    """(x - mean) / std, float32."""
    return ((x - np.float32(mean)) * np.float32(1 / std)).astype(np.float32, copy=False)


def one_hot(labels: np.ndarray, num_classes: int = 10) -> np.ndarray:
    """uint (N,) -> float32 (N, num_classes)."""
    out = np.zeros((len(labels), num_classes), np.float32)
    out[np.arange(len(labels)), labels] = 1
    return out


def stratified_split(
    labels: np.ndarray, fraction: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, held-out) with `fraction` of every class held out; both sorted."""
    if not 0 <= fraction < 1:
        raise ValueError(f"split fraction must be in [0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        held.append(rng.permutation(idx)[: round(len(idx) * fraction)])
    held_out = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
    keep = np.setdiff1d(np.arange(len(labels)), held_out, assume_unique=True)
    return keep, held_out
