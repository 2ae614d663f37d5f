"""The torch engine's augmentation: the on-device twin of digitlab.augment, on whole batches.

    >>> x = augment(x, gen, AUGMENTATIONS["affine"])   # (B, 1, 28, 28) in [0, 1], on its device

One affine map per image (and an elastic field, for "elastic"), resampled with grid_sample;
"real" then degrades a random share of the images as digitlab.augment.degrade does. The random
numbers come from `gen`, a torch.Generator on the images' device, so a seed fixes them.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from digitlab import augment as A
from digitlab.augment import Augmentation, gaussian_kernel


def augment(x: torch.Tensor, gen: torch.Generator, aug: Augmentation) -> torch.Tensor:
    """On-device twin of digitlab.augment.augment for x (B, 1, H, W) in [0, 1]."""
    b, _, h, w = x.shape
    dev = x.device

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
