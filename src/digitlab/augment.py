"""Data augmentation on whole batches in NumPy: shifts, rotations, scaling, elastic distortion,
and the ways real digits differ from MNIST's (pen width, blur, contrast, paper noise).

    >>> x = augment(images01, rng, AUGMENTATIONS["affine"])    # float32 (B, 28, 28) in [0, 1]

Every image gets its own random affine map (and, for "elastic", a smooth random
displacement field); pixels are resampled bilinearly, with background outside. "real" adds,
each to its own random share of the images: a thicker or thinner pen, the blur of a digit
written small or photographed far, faint ink, and paper texture with sensor noise; and, given
the labels, a share of the 1s are drawn as printed and European hands draw them, with a flag at
the top and sometimes a foot (MNIST's writers drew a bare bar, so a flagged 1 read as 7). The torch
engine does the same on its device (torch_engine.augment); the two use different random
streams, so they agree in distribution, not pixel for pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Augmentation:
    shift: float = 0.0  # pixels, uniform in ±shift
    rotate: float = 0.0  # degrees, uniform in ±rotate
    scale: float = 0.0  # relative, uniform in 1 ± scale
    elastic_alpha: float = 0.0  # scale of the smoothed uniform noise (Simard et al. 2003: 34)
    elastic_sigma: float = 4.0  # smoothness of the displacement field, pixels
    pen: float = 0.0  # share of images drawn with another pen: half thicker, half thinner
    blur: float = 0.0  # share blurred as if written small or photographed far (sigma 0.5-1.2 px)
    faint: float = 0.0  # share with fainter ink (peak 0.5-1.0 of full)
    noise: float = 0.0  # share with paper texture and sensor noise added (std up to 0.08)
    flag: float = 0.0  # share of the 1s given a flag (a third of those a foot too); needs labels

    @property
    def active(self) -> bool:
        return bool(
            self.shift or self.rotate or self.scale or self.elastic_alpha or self.real or self.flag
        )

    @property
    def real(self) -> bool:
        return bool(self.pen or self.blur or self.faint or self.noise)


AUGMENTATIONS = {
    "none": Augmentation(),
    "shift": Augmentation(shift=2.0),
    "affine": Augmentation(shift=2.0, rotate=10.0, scale=0.1),
    "elastic": Augmentation(
        shift=2.0, rotate=10.0, scale=0.1, elastic_alpha=6.0, elastic_sigma=3.0
    ),
    # the built-in reader's: elastic, plus the world outside MNIST, each on a share of images
    "real": Augmentation(
        shift=2.0,
        rotate=12.0,
        scale=0.12,
        elastic_alpha=6.0,
        elastic_sigma=3.0,
        pen=0.4,
        blur=0.25,
        faint=0.2,
        noise=0.2,
        flag=0.4,
    ),
}

BLUR_SIGMAS = (0.5, 1.2)  # pixels at 28x28
FAINT_PEAK = 0.5  # the faintest ink's peak
NOISE_STD = 0.08  # the noisiest paper's standard deviation, in [0, 1] units
THIN_CUT = 0.45  # a thinner pen: ink below this share of full is dropped, the rest stretched


def affine_params(
    rng: np.random.Generator, n: int, aug: Augmentation
) -> tuple[np.ndarray, np.ndarray]:
    """Per image: the 2x2 matrix that maps output to input coordinates, and the shift."""
    angle = np.deg2rad(rng.uniform(-aug.rotate, aug.rotate, n)) if aug.rotate else np.zeros(n)
    zoom = rng.uniform(1 - aug.scale, 1 + aug.scale, n) if aug.scale else np.ones(n)
    shift = rng.uniform(-aug.shift, aug.shift, (n, 2)) if aug.shift else np.zeros((n, 2))
    cos, sin = np.cos(angle) / zoom, np.sin(angle) / zoom
    matrix = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)  # (n, 2, 2)
    return matrix, shift


def gaussian_kernel(sigma: float) -> np.ndarray:
    radius = max(1, math.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


def smooth(field: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur over the last two axes (zero padding)."""
    k = gaussian_kernel(sigma)
    r = len(k) // 2
    for axis in (-1, -2):
        padded = np.pad(
            field,
            [(0, 0)] * (field.ndim - 1) + [(r, r)]
            if axis == -1
            else [(0, 0)] * (field.ndim - 2) + [(r, r), (0, 0)],
        )
        windows = np.lib.stride_tricks.sliding_window_view(padded, len(k), axis=axis)
        field = windows @ k
    return field


def warp(images: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Bilinear sample images (B, H, W) at fractional source coordinates (B, H, W); 0 outside."""
    b, h, w = images.shape
    padded = np.zeros((b, h + 2, w + 2), images.dtype)  # a border of background
    padded[:, 1:-1, 1:-1] = images
    rows = np.clip(rows + 1, 0, h + 1)
    cols = np.clip(cols + 1, 0, w + 1)
    r0 = np.minimum(np.floor(rows).astype(np.intp), h)
    c0 = np.minimum(np.floor(cols).astype(np.intp), w)
    fr, fc = (rows - r0).astype(images.dtype), (cols - c0).astype(images.dtype)
    base = (np.arange(b) * (h + 2) * (w + 2))[:, None, None]
    flat = padded.reshape(-1)
    top_left = base + r0 * (w + 2) + c0
    a, bb = flat[top_left], flat[top_left + 1]
    c, d = flat[top_left + w + 2], flat[top_left + w + 3]
    return (a * (1 - fc) + bb * fc) * (1 - fr) + (c * (1 - fc) + d * fc) * fr


def augment(
    images: np.ndarray,
    rng: np.random.Generator,
    aug: Augmentation,
    labels: np.ndarray | None = None,
) -> np.ndarray:
    """Randomly transform a batch of float images (B, H, W); returns a new float32 array.
    `labels` (B,) let aug.flag find the 1s; without them no 1 gets a flag."""
    if not aug.active:
        return images
    if aug.flag and labels is not None:
        from digitlab.ink.flags import flag_ones  # digitlab.ink imports SciPy: only when needed

        images = flag_ones(images, labels, rng, aug.flag)
    b, h, w = images.shape
    matrix, shift = affine_params(rng, b, aug)
    centre = np.array([(h - 1) / 2, (w - 1) / 2])
    grid = (
        np.stack(np.meshgrid(np.arange(h), np.arange(w), indexing="ij"), -1) - centre
    )  # (H, W, 2)
    source = np.einsum("bij,hwj->bhwi", matrix, grid) + centre + shift[:, None, None, :]
    rows, cols = source[..., 0], source[..., 1]
    if aug.elastic_alpha:
        noise = rng.uniform(-1, 1, (2, b, h, w)).astype(np.float32)
        field = smooth(noise, aug.elastic_sigma) * aug.elastic_alpha  # typical shift ≈ 1.4 px
        rows, cols = rows + field[0], cols + field[1]
    out = warp(images.astype(np.float32, copy=False), rows, cols).astype(np.float32, copy=False)
    return degrade(out, rng, aug) if aug.real else out


def dilate(x: np.ndarray) -> np.ndarray:
    """A pen one pixel thicker all round: the maximum over each pixel's 3x3 neighbourhood."""
    padded = np.pad(x, [(0, 0), (1, 1), (1, 1)])
    h, w = x.shape[-2:]
    return np.max([padded[:, i : i + h, j : j + w] for i in range(3) for j in range(3)], axis=0)


def degrade(x: np.ndarray, rng: np.random.Generator, aug: Augmentation) -> np.ndarray:
    """Pen width, blur, faint ink and paper noise, each on its own random share of the batch
    (x is a fresh array from `warp`, changed in place where that is simpler)."""
    b = len(x)

    def some(share: float) -> np.ndarray:
        return rng.random(b) < share

    if aug.pen:
        pick = rng.random(b)
        thick, thin = pick < aug.pen / 2, (pick >= aug.pen / 2) & (pick < aug.pen)
        x[thick] = dilate(x[thick])
        x[thin] = np.clip((x[thin] - THIN_CUT) / (1 - THIN_CUT), 0, 1)
    if aug.blur:
        chosen = some(aug.blur)  # one sigma per batch: a batch is a small share of an epoch
        if chosen.any():
            x[chosen] = smooth(x[chosen], float(rng.uniform(*BLUR_SIGMAS)))
    if aug.faint:
        scale = np.where(some(aug.faint), rng.uniform(FAINT_PEAK, 1.0, b), 1.0)
        x = x * scale[:, None, None].astype(np.float32)
    if aug.noise:
        chosen = some(aug.noise)
        std = np.where(chosen, rng.uniform(0, NOISE_STD, b), 0.0)[:, None, None]
        texture = smooth(rng.normal(0, 1, x.shape).astype(np.float32), 2.0) * 3
        grain = rng.normal(0, 1, x.shape).astype(np.float32)
        x = x + (std * (texture + grain) / 2).astype(np.float32)
    return np.clip(x, 0, 1).astype(np.float32, copy=False)
