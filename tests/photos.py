"""Real-looking photos of MNIST test digits, for testing `ink.prepare` and `predict`.

Each digit becomes dark ink on light paper, scaled to 200-800 px, placed off-centre on a
larger page, lit unevenly, tilted a little (as a hand-held photo), with sensor noise and
JPEG compression.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def photo(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    side = int(rng.integers(200, 801))
    ink = Image.fromarray(255 - digit).resize((side, side), Image.Resampling.BICUBIC)
    ink = ink.rotate(float(rng.uniform(-8, 8)), resample=Image.Resampling.BILINEAR, fillcolor=255)
    paper = float(rng.uniform(200, 245))
    height, width = side + int(rng.integers(60, 400)), side + int(rng.integers(60, 400))
    page = np.full((height, width), paper, np.float32)
    top, left = int(rng.integers(0, height - side)), int(rng.integers(0, width - side))
    page[top : top + side, left : left + side] = np.asarray(ink, np.float32) / 255 * paper
    yy, xx = np.mgrid[0:height, 0:width]
    direction = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(direction) * xx / width + np.sin(direction) * yy / height
    page *= 1 - float(rng.uniform(0.1, 0.35)) * (ramp - ramp.min()) / max(
        np.ptp(ramp), 1e-6
    )  # uneven light
    page += rng.normal(0, float(rng.uniform(2, 10)), page.shape)  # sensor noise
    buffer = io.BytesIO()
    Image.fromarray(np.clip(page, 0, 255).astype(np.uint8)).save(
        buffer, format="JPEG", quality=int(rng.integers(55, 90))
    )
    return buffer.getvalue()
