"""Digits and numbers written on paper and photographed, made from any labelled digits: the
reading benchmark's sets (from MNIST *test* digits), and the digits and rows that fit the
built-in reader's unsure threshold and its line reader's temperature (from the digits the
reader held out of training) come from here.

>>> items = paper.numbers(mnist.test, 200)       # [Written(image=JPEG bytes, text="40351"), ...]

- `numbers`: 4-6 digits in a row, from wide gaps to touching (1 in 4 has a pair pushed into
  each other; in the others each pair touches 1 time in 10: about half touch somewhere);
  `boxes`: the same written in a form's boxes (a digit may cross its box's line); `lines`: on a
  ruled line; `separators`: amounts and dates (`1,234.56`, `12/03/2026`, `12-03-26`) with
  hand-drawn punctuation.
- `photograph`: a drawing as a phone takes it: scaled, placed off-centre, half of them tilted,
  lit unevenly, with sensor noise and JPEG compression. `degrade_digit`: one digit with a
  phone's or scanner's faults (blur, low resolution, thick or thin pen, noise, faint ink, a
  tilted photo), `random_faults` a random mix of them.

Everything is drawn from the generator given, so a seed names a set.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from digitlab.data.dataset import Split


@dataclass
class Written:
    image: bytes  # JPEG
    text: str


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
    return jpeg(page, int(rng.integers(55, 90)))


# how a phone or a scanner spoils a digit written on paper: `degrade_digit` takes any of them
DEGRADATIONS = ("blur", "low resolution", "thick pen", "thin pen", "noise", "faint", "tilted")


def degrade_digit(digit: np.ndarray, how: tuple[str, ...], rng: np.random.Generator) -> bytes:
    """One MNIST-style digit (light on black) written on paper and photographed with the given
    faults (DEGRADATIONS)."""
    ink = digit.astype(np.float32)
    if "thick pen" in how:
        ink = ndimage.grey_dilation(ink, size=(3, 3))
    if "thin pen" in how:
        ink = np.clip((ink - 110) * 255 / 145, 0, 255)
    side = int(rng.integers(200, 600))
    drawing = Image.fromarray(255 - ink.astype(np.uint8))
    if "low resolution" in how:  # written small: 8-12 pixels high, then enlarged
        small = int(rng.integers(8, 13))
        drawing = drawing.resize((small, small), Image.Resampling.BOX)
    big = np.asarray(drawing.resize((side, side), Image.Resampling.BICUBIC), np.float32)
    if "blur" in how:  # out of focus, or photographed far
        big = ndimage.gaussian_filter(big, sigma=side * float(rng.uniform(0.025, 0.045)))
    if "faint" in how:  # a light pencil or a worn pen
        big = 255 - (255 - big) * float(rng.uniform(0.2, 0.4))
    angle = float(rng.uniform(-20, 20)) if "tilted" in how else 0.0
    if angle:
        big = np.asarray(
            Image.fromarray(big.astype(np.uint8)).rotate(
                angle, resample=Image.Resampling.BILINEAR, fillcolor=255
            ),
            np.float32,
        )
    height, width = side + int(rng.integers(60, 300)), side + int(rng.integers(60, 300))
    paper = float(rng.uniform(190, 240))
    page = np.full((height, width), paper, np.float32)
    top, left = int(rng.integers(0, height - side)), int(rng.integers(0, width - side))
    page[top : top + side, left : left + side] = big / 255 * paper
    noise = float(rng.uniform(12, 25)) if "noise" in how else float(rng.uniform(1, 4))
    page += rng.normal(0, noise, page.shape)
    if "noise" in how:  # paper grain: blotches a few pixels wide
        page += ndimage.gaussian_filter(rng.normal(0, noise * 2, page.shape), 3)
    return jpeg(page, int(rng.integers(50, 90)))


def random_faults(rng: np.random.Generator) -> tuple[str, ...]:
    """Faults for one digit of the combined set: each with probability 0.4 (thin pen: 0.2,
    never with a thick one)."""
    faults = [h for h in DEGRADATIONS if h != "thin pen" and rng.random() < 0.4]
    if rng.random() < 0.2 and "thick pen" not in faults:
        faults.append("thin pen")
    return tuple(faults)


def jpeg(page: np.ndarray, quality: int = 85) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.clip(page, 0, 255).astype(np.uint8)).save(
        buffer, format="JPEG", quality=quality
    )
    return buffer.getvalue()


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


def inked(digit: np.ndarray) -> np.ndarray:
    """A digit's columns that hold ink (all of them when it has none)."""
    cols = np.flatnonzero(digit.max(axis=0) > 0)
    return digit[:, cols[0] : cols[-1] + 1] if cols.size else digit


def written_row(digits: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Digits side by side as one person writes a number: each cropped to its ink, with a gap of
    0..6 pixels between their boxes, and one pair in ten pushed together by a pixel so that
    they touch or overlap; light ink on black, 28 high."""
    parts = [inked(d) for d in digits]
    gaps = [-1 if rng.random() < 0.1 else int(rng.integers(1, 7)) for _ in parts[1:]]
    return side_by_side(parts, gaps)


def random_number(digits: Split, rng: np.random.Generator, length: int) -> tuple[list, str]:
    idx = rng.choice(len(digits), length, replace=False)
    return list(digits.images[idx]), "".join(str(int(y)) for y in digits.labels[idx])


def touching_row(digits: list[np.ndarray], rng: np.random.Generator, touch: bool) -> np.ndarray:
    """written_row, with (when `touch`) one neighbouring pair pushed into each other."""
    if not touch:
        return written_row(digits, np.random.default_rng(int(rng.integers(1 << 31))))
    parts = [d[:, np.flatnonzero(d.max(axis=0) > 0)] for d in digits]
    at = int(rng.integers(0, len(parts) - 1))
    gaps = [int(rng.integers(2, 9)) for _ in parts[1:]]
    gaps[at] = -int(rng.integers(1, 4))  # overlapping by 1-3 pixels: the strokes touch
    return side_by_side(parts, gaps)


def photographed(row: np.ndarray, rng: np.random.Generator, low: int, high: int) -> bytes:
    """A 28-high row of ink (light on black) written `low`..`high` pixels high and photographed."""
    height = int(rng.integers(low, high))
    return photograph(255 - row, (round(row.shape[1] * height / 28), height), rng)


def written_number(digits: Split, rng: np.random.Generator, k: int) -> tuple[np.ndarray, str]:
    """The k-th number of a set: 4-6 digits as a row of ink (`touching_row`, every fourth with a
    pair pushed together) and its text."""
    chosen, text = random_number(digits, rng, int(rng.integers(4, 7)))
    return touching_row(chosen, rng, touch=k % 4 == 0), text


def numbers(digits: Split, count: int, seed: int = 2) -> list[Written]:
    """4-6 digit numbers; one in four with a pair pushed into each other, the rest from tight
    to wide gaps (`written_row`: each pair touches 1 time in 10)."""
    rng = np.random.default_rng(seed)
    items = []
    for k in range(count):
        row, text = written_number(digits, rng, k)
        items.append(Written(photographed(row, rng, 120, 300), text))
    return items


def boxes(digits: Split, count: int, seed: int = 3) -> list[Written]:
    """4-6 digits in a form's row of boxes (a comb); a digit may touch or cross its box."""
    rng = np.random.default_rng(seed)
    items = []
    for _ in range(count):
        chosen, text = random_number(digits, rng, int(rng.integers(4, 7)))
        cell, line = int(rng.integers(90, 140)), int(rng.integers(2, 6))
        height = round(cell * float(rng.uniform(1.1, 1.4)))
        width = cell * len(chosen)
        page = np.full((height + 40, width + 40), 255, np.uint8)
        for i, digit in enumerate(chosen):
            side = round(min(height, cell) * float(rng.uniform(0.8, 1.05)))
            ink = np.asarray(Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC))
            top = 20 + (height - side) // 2 + int(rng.integers(-4, 5))
            left = 20 + i * cell + (cell - side) // 2 + int(rng.integers(-6, 7))
            region = page[top : top + side, left : left + side]
            np.minimum(region, 255 - ink, out=region)
        gray = int(rng.integers(0, 160))  # printed boxes: black to light gray
        page[20 : 20 + line, 20 : 20 + width + line] = gray
        page[20 + height : 20 + height + line, 20 : 20 + width + line] = gray
        for i in range(len(chosen) + 1):
            page[20 : 20 + height + line, 20 + i * cell : 20 + i * cell + line] = gray
        items.append(Written(photograph(page, (page.shape[1], page.shape[0]), rng), text))
    return items


def lines(digits: Split, count: int, seed: int = 4) -> list[Written]:
    """4-6 digits written on a ruled line (the ink sits on it or dips through it)."""
    rng = np.random.default_rng(seed)
    items = []
    for k in range(count):
        row, text = written_number(digits, rng, k)
        height = int(rng.integers(120, 240))
        width = round(row.shape[1] * height / 28)
        ink = np.asarray(Image.fromarray(row).resize((width, height), Image.Resampling.BICUBIC))
        page = np.full((height + 80, width + 80), 255, np.uint8)
        page[40 : 40 + height, 40 : 40 + width] = 255 - ink
        base = 40 + round(height * float(rng.uniform(0.82, 0.95)))  # MNIST digits end at ~ 0.85
        thick, gray = int(rng.integers(2, 6)), int(rng.integers(0, 160))
        np.minimum(page[base : base + thick], gray, out=page[base : base + thick])
        items.append(Written(photograph(page, (page.shape[1], page.shape[0]), rng), text))
    return items


def mark(char: str, height: int, rng: np.random.Generator) -> np.ndarray:
    """A hand-drawn separator (light on black), as wide as it needs, `height` high (the row's)."""
    width = {"/": round(0.6 * height), "-": round(0.45 * height)}.get(char, round(0.22 * height))
    image = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(image)
    pen = max(2, round(height * float(rng.uniform(0.08, 0.12))))
    if char == ".":
        r = pen * 0.7
        cx, cy = width / 2, height * 0.82
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    elif char == ",":
        r = pen * 0.7
        cx, cy = width / 2, height * 0.8
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        draw.line([(cx + r * 0.5, cy), (cx - r, height * 0.97)], fill=255, width=pen)
    elif char == "-":
        y = height * float(rng.uniform(0.45, 0.55))
        draw.line([(pen, y), (width - pen, y + rng.uniform(-2, 2))], fill=255, width=pen)
    elif char == "/":
        draw.line([(width - pen, height * 0.1), (pen, height * 0.9)], fill=255, width=pen)
    return np.asarray(image, np.uint8)


def written_text(digits: Split, text: str, rng: np.random.Generator) -> np.ndarray:
    """`text` (digits and separators) written by hand, 28 high, with digits of the right labels."""
    by_label = {d: np.flatnonzero(digits.labels == d) for d in range(10)}
    missing = sorted({c for c in text if c.isdigit() and not by_label[int(c)].size})
    if missing:
        raise ValueError(f"no digit labelled {', '.join(missing)} to write {text!r} with")
    parts = []
    for char in text:
        if char.isdigit():
            digit = digits.images[rng.choice(by_label[int(char)])]
            parts.append(digit[:, np.flatnonzero(digit.max(axis=0) > 0)])
        else:
            drawn = mark(char, 112, rng)  # drawn 4x, reduced like MNIST's anti-aliasing
            size = (max(3, drawn.shape[1] // 4), 28)
            parts.append(np.asarray(Image.fromarray(drawn).resize(size, Image.Resampling.BOX)))
    gaps = [int(rng.integers(2, 7)) for _ in parts[1:]]
    return side_by_side(parts, gaps)


def separators(digits: Split, count: int, seed: int = 5) -> list[Written]:
    """Amounts (1,234.56 and 45.90) and dates (12/03/2026 and 12-03-26)."""
    rng = np.random.default_rng(seed)
    items = []
    for k in range(count):
        kind = k % 4
        if kind == 0:
            text = f"{rng.integers(1, 10)},{rng.integers(0, 1000):03d}.{rng.integers(0, 100):02d}"
        elif kind == 1:
            text = f"{rng.integers(1, 1000)}.{rng.integers(0, 100):02d}"
        elif kind == 2:
            text = f"{rng.integers(1, 29):02d}/{rng.integers(1, 13):02d}/{rng.integers(1990, 2040)}"
        else:
            text = f"{rng.integers(1, 29):02d}-{rng.integers(1, 13):02d}-{rng.integers(0, 100):02d}"
        row = written_text(digits, text, rng)
        items.append(Written(photographed(row, rng, 120, 260), text))
    return items


def mixed(digits: Split, count: int, seed: int) -> list[Written]:
    """`count` rows of every kind, in the reading benchmark's proportions (2 numbers to 1 of
    each other kind), each kind from its own stream of `seed`."""
    fifth = count // 5
    return (
        numbers(digits, count - 3 * fifth, seed=seed)
        + boxes(digits, fifth, seed=seed + 1)
        + lines(digits, fifth, seed=seed + 2)
        + separators(digits, fifth, seed=seed + 3)
    )
