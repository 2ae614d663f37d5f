"""The torch engine's augmentation: the on-device twin of digitlab.augment, on whole batches.

    >>> x = augment(x, gen, AUGMENTATIONS["affine"])   # (B, 1, 28, 28) in [0, 1], on its device

One affine map per image (and an elastic field, for "elastic"), resampled with grid_sample;
"real" then degrades a random share of the images as digitlab.augment.degrade does, and gives a
share of the 1s a flag (given the labels) as digitlab.ink.flags.flag_ones does. The random
numbers come from `gen`, a torch.Generator on the images' device, so a seed fixes them.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from digitlab import augment as A
from digitlab.augment import Augmentation, gaussian_kernel
from digitlab.ink import flags as FL


def augment(
    x: torch.Tensor, gen: torch.Generator, aug: Augmentation, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """On-device twin of digitlab.augment.augment for x (B, 1, H, W) in [0, 1]."""
    b, _, h, w = x.shape
    dev = x.device
    if aug.flag and labels is not None:
        x = flag_ones(x, labels, gen, aug.flag)

    def uniform(lo, hi, *shape):
        return torch.rand(*shape, generator=gen, device=dev) * (hi - lo) + lo

    angle = uniform(-aug.rotate, aug.rotate, b) * (math.pi / 180)
    zoom = uniform(1 - aug.scale, 1 + aug.scale, b)
    shift = uniform(-aug.shift, aug.shift, b, 2)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    # affine_grid works in [-1, 1] coordinates (x first): convert the pixel shift
    theta = torch.stack(
        [
            torch.stack([cos, -sin, shift[:, 1] * 2 / w], -1),
            torch.stack([sin, cos, shift[:, 0] * 2 / h], -1),
        ],
        1,
    )
    grid = F.affine_grid(theta, (b, 1, h, w), align_corners=False)
    if aug.elastic_alpha:
        k = torch.from_numpy(gaussian_kernel(aug.elastic_sigma)).to(dev)
        noise = uniform(-1, 1, b * 2, 1, h, w)
        noise = F.conv2d(noise, k.view(1, 1, 1, -1), padding=(0, len(k) // 2))
        noise = F.conv2d(noise, k.view(1, 1, -1, 1), padding=(len(k) // 2, 0))
        field = noise.view(b, 2, h, w) * aug.elastic_alpha  # pixels; (rows, cols)
        grid = grid + torch.stack([field[:, 1] * 2 / w, field[:, 0] * 2 / h], -1)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return degrade(x, gen, aug) if aug.real else x


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W), zero padding (as digitlab.augment.smooth)."""
    k = torch.from_numpy(gaussian_kernel(sigma)).to(x.device)
    c, r = x.shape[1], len(k) // 2
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), padding=(0, r), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), padding=(r, 0), groups=c)


def degrade(x: torch.Tensor, gen: torch.Generator, aug: Augmentation) -> torch.Tensor:
    """On-device twin of digitlab.augment.degrade: pen width, blur, faint ink, paper noise."""
    b, dev = x.shape[0], x.device

    def rand(*shape):
        return torch.rand(*shape, generator=gen, device=dev)

    def some(share: float) -> torch.Tensor:
        return (rand(b) < share).view(b, 1, 1, 1)

    if aug.pen:
        pick = rand(b).view(b, 1, 1, 1)
        thick, thin = pick < aug.pen / 2, (pick >= aug.pen / 2) & (pick < aug.pen)
        x = torch.where(thick, F.max_pool2d(x, 3, 1, 1), x)
        x = torch.where(thin, ((x - A.THIN_CUT) / (1 - A.THIN_CUT)).clamp(0, 1), x)
    if aug.blur:
        lo, hi = A.BLUR_SIGMAS
        sigma = float(rand(1)) * (hi - lo) + lo  # one sigma per batch, as in NumPy
        x = torch.where(some(aug.blur), blur(x, sigma), x)
    if aug.faint:
        scale = rand(b).view(b, 1, 1, 1) * (1 - A.FAINT_PEAK) + A.FAINT_PEAK
        x = torch.where(some(aug.faint), x * scale, x)
    if aug.noise:
        std = torch.where(some(aug.noise), rand(b).view(b, 1, 1, 1) * A.NOISE_STD, 0.0)
        texture = blur(torch.randn(x.shape, generator=gen, device=dev), 2.0) * 3
        grain = torch.randn(x.shape, generator=gen, device=dev)
        x = x + std * (texture + grain) / 2
    return x.clamp(0, 1)


def segment_ink(
    grid: torch.Tensor, start: torch.Tensor, end: torch.Tensor, width: torch.Tensor
) -> torch.Tensor:
    """Twin of digitlab.ink.flags.segment_ink; grid (H, W, 2) of pixel centres (row, col)."""
    p = grid[None]
    a, d = start[:, None, None, :], (end - start)[:, None, None, :]
    t = (((p - a) * d).sum(-1) / (d * d).sum(-1).clamp_min(1e-6)).clamp(0, 1)
    distance = (p - (a + t[..., None] * d)).norm(dim=-1)
    return (width[:, None, None] / 2 + 0.5 - distance).clamp(0, 1)


def flag_ones(
    x: torch.Tensor, labels: torch.Tensor, gen: torch.Generator, share: float
) -> torch.Tensor:
    """Twin of digitlab.ink.flags.flag_ones on (B, 1, H, W): a flag, sometimes a foot, on 1s.
    It draws as many random numbers as the batch has chosen 1s, so on a GPU it waits once a
    batch to count them; drawing for every image instead would not reproduce the shipped
    reader's training stream."""
    b, _, h, w = x.shape
    dev = x.device
    labels = labels.reshape(-1)
    if len(labels) != b:
        raise ValueError(f"flag_ones: {len(labels)} labels for {b} images")

    def uniform(lo, hi, n):
        return torch.rand(n, generator=gen, device=dev) * (hi - lo) + lo

    pick = (labels == 1) & (torch.rand(b, generator=gen, device=dev) < share)
    pick &= (x[:, 0] > 0.5).flatten(1).any(1)
    chosen = pick.nonzero().flatten()
    n = len(chosen)
    if n == 0:
        return x
    ones = x[chosen, 0]
    ink_rows = (ones > 0.5).any(2)
    top = ink_rows.float().argmax(1)
    bottom = h - 1 - ink_rows.flip(1).float().argmax(1)
    height = (bottom - top + 1).float()
    pen = ((ones > 0.5).sum((1, 2)) / height).clamp(1.5, 4.0)
    cols = torch.arange(w, device=dev, dtype=torch.float32)
    every = torch.arange(n, device=dev)

    def centre(row):
        weights = ones[every, row] + 1e-6
        return (weights * cols).sum(1) / weights.sum(1)

    length = uniform(*FL.FLAG_LENGTH, n) * height
    angle = uniform(*FL.FLAG_ANGLE, n) * (math.pi / 180)
    start = torch.stack([top.float(), centre(top)], -1)
    end = start + torch.stack([torch.sin(angle), -torch.cos(angle)], -1) * length[:, None]
    rows = torch.arange(h, device=dev, dtype=torch.float32)
    grid = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), -1)
    stroke = segment_ink(grid, start, end, pen)
    footed = torch.rand(n, generator=gen, device=dev) < FL.FOOT_SHARE
    half = uniform(*FL.FOOT_HALF, n) * height
    base = torch.stack([bottom.float(), centre(bottom)], -1)
    across = torch.stack([torch.zeros_like(half), half], -1)
    foot = segment_ink(grid, base - across, base + across, pen) * footed[:, None, None]
    out = x.clone()
    out[chosen, 0] = torch.maximum(torch.maximum(ones, stroke), foot)
    return out
