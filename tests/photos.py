"""Real-looking photos of MNIST test digits, for testing `ink.prepare`, `ink.segment` and predict.

`photo`: one digit becomes dark ink on light paper, scaled to 200-800 px, placed off-centre on
a larger page, lit unevenly, half of them tilted a little (a hand-held photo), with sensor noise
and JPEG compression. `strip`: 3-6 digits written in a row (one pair in ten touching),
photographed the same way.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def photo(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    side = int(rng.integers(200, 801))
    return photograph(255 - digit, (side, side), rng)


def written_row(digits: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Digits side by side as one person writes a number: each cropped to its ink, with a gap of
    0..6 pixels between their boxes, and one pair in ten pushed together by a pixel so that
    they touch or overlap; light ink on black, 28 high."""
    parts = []
    for d in digits:
        cols = np.flatnonzero(d.max(axis=0) > 0)
        parts.append(d[:, cols[0] : cols[-1] + 1] if cols.size else d)
    gaps = [-1 if rng.random() < 0.1 else int(rng.integers(1, 7)) for _ in parts[1:]]
    return side_by_side(parts, gaps)


def side_by_side(parts: list[np.ndarray], gaps: list[int]) -> np.ndarray:
    """28-high pieces of ink (light on black) in a row, `gaps[i]` pixels between piece i and
    i + 1 (negative: they overlap, the brighter ink wins), with a 4-pixel margin."""
    row = np.zeros((28, sum(p.shape[1] for p in parts) + sum(gaps) + 8), np.uint8)
    x = 4
    for i, part in enumerate(parts):
        region = row[:, x : x + part.shape[1]]
        np.maximum(region, part, out=region)
        x += part.shape[1] + (gaps[i] if i < len(gaps) else 0)
    return row


def strip(digits: list[np.ndarray], rng: np.random.Generator) -> bytes:
    """A photo of a number: the digits written in a row, each 150-400 px high."""
    row = written_row(digits, rng)
    height = int(rng.integers(150, 401))
    width = round(row.shape[1] * height / 28)
    return photograph(255 - row, (width, height), rng)


def photograph(drawing: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> bytes:
    """Dark-on-white `drawing` (uint8) at `size` (width, height), photographed as a JPEG."""
    ink = Image.fromarray(drawing).resize(size, Image.Resampling.BICUBIC)
    if rng.random() < 0.5:  # some photographed at a slight angle
        ink = ink.rotate(
            float(rng.uniform(-8, 8)), resample=Image.Resampling.BILINEAR, fillcolor=255
        )
    paper = float(rng.uniform(200, 245))
    height, width = size[1] + int(rng.integers(60, 400)), size[0] + int(rng.integers(60, 400))
    page = np.full((height, width), paper, np.float32)
    top, left = int(rng.integers(0, height - size[1])), int(rng.integers(0, width - size[0]))
    page[top : top + size[1], left : left + size[0]] = np.asarray(ink, np.float32) / 255 * paper
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
