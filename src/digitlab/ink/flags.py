"""1s as print and European hands draw them: MNIST's writers mostly drew a bare bar, so a 1
with a flag at the top (and a foot) was read as 7. `flag_ones` draws them on MNIST 1s, for the
reader's augmentation (digitlab.augment, flag) and the line reader's rows (ink.synth).

    >>> flagged = flag_ones(images01, labels, rng, share=0.4)   # (B, H, W) float in [0, 1]
"""

from __future__ import annotations

import numpy as np

FLAG_LENGTH = (0.2, 0.45)  # a 1's flag, as a share of the digit's height
FLAG_ANGLE = (25.0, 60.0)  # degrees below the horizontal, pointing left
FOOT_HALF = (0.15, 0.3)  # half a foot's width, as a share of the digit's height
FOOT_SHARE = 1 / 3  # of the flagged 1s


def segment_ink(
    rows: np.ndarray, cols: np.ndarray, start: np.ndarray, end: np.ndarray, width: np.ndarray
) -> np.ndarray:
    """Anti-aliased ink of a straight pen stroke from start to end (n, 2) of the given widths (n,)
    at pixel centres rows, cols (H, W): 1 within half the width, fading to 0 a pixel beyond."""
    p = np.stack([rows, cols], -1)[None].astype(np.float32)  # (1, H, W, 2)
    a, d = start[:, None, None, :], (end - start)[:, None, None, :]
    t = np.clip(((p - a) * d).sum(-1) / np.maximum((d * d).sum(-1), 1e-6), 0, 1)
    distance = np.linalg.norm(p - (a + t[..., None] * d), axis=-1)
    return np.clip(width[:, None, None] / 2 + 0.5 - distance, 0, 1).astype(np.float32)


def flag_ones(
    x: np.ndarray, labels: np.ndarray, rng: np.random.Generator, share: float
) -> np.ndarray:
    """A share of the 1s (B, H, W float) drawn as print and European hands draw them: a flag
    from the top of the bar down to the left, and for a third of those a foot under it, each
    as wide as the digit's own pen."""
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != len(x):
        raise ValueError(f"flag_ones: {len(labels)} labels for {len(x)} images")
    chosen = np.flatnonzero((labels == 1) & (rng.random(len(x)) < share))
    chosen = chosen[(x[chosen] > 0.5).any(axis=(1, 2))]
    if chosen.size == 0:
        return x
    n, (h, w) = len(chosen), x.shape[1:]
    ones = x[chosen]
    ink_rows = (ones > 0.5).any(axis=2)
    top, bottom = ink_rows.argmax(1), h - 1 - ink_rows[:, ::-1].argmax(1)
    height = (bottom - top + 1).astype(np.float32)
    pen = np.clip((ones > 0.5).sum(axis=(1, 2)) / height, 1.5, 4.0)
    cols = np.arange(w, dtype=np.float32)

    def centre(row):  # the ink's mean column on a row
        weights = ones[np.arange(n), row] + 1e-6
        return (weights * cols).sum(1) / weights.sum(1)

    length = rng.uniform(*FLAG_LENGTH, n) * height
    angle = np.deg2rad(rng.uniform(*FLAG_ANGLE, n))
    start = np.stack([top, centre(top)], -1).astype(np.float32)
    end = start + np.stack([np.sin(angle), -np.cos(angle)], -1) * length[:, None]
    rows, cols2 = np.meshgrid(np.arange(h), cols, indexing="ij")
    stroke = segment_ink(rows, cols2, start, end, pen)
    footed = rng.random(n) < FOOT_SHARE
    half = rng.uniform(*FOOT_HALF, n) * height
    base = np.stack([bottom, centre(bottom)], -1).astype(np.float32)
    across = np.stack([np.zeros_like(half), half], -1).astype(np.float32)
    foot = segment_ink(rows, cols2, base - across, base + across, pen) * footed[:, None, None]
    out = x.copy()
    out[chosen] = np.maximum(np.maximum(ones, stroke), foot)
    return out
