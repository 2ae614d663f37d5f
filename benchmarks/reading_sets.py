"""The robustness benchmark's test sets: digits and numbers from sources other than MNIST's
training images, as images on disk would be (JPEG or PNG bytes) with the text they hold.

- `degraded`: MNIST *test* digits photographed as a phone or scanner would, one degradation at a
  time (blur, low resolution, thick pen, thin pen, noise, faint ink, tilted photo) and combined.
- `printed` / `handwriting_fonts`: every digit in every font on the machine (Debian's packages;
  handwriting-style ones are installed by `.ci/run` or `apt install` with the names in
  HANDWRITING), photographed with light noise.
- `numbers`: 4-6 MNIST test digits in a row, from wide gaps to touching (1 in 4 numbers has a
  touching pair); `boxes`: the same written in a form's boxes (a digit may cross its box's line);
  `lines`: written on a ruled line; `separators`: amounts and dates (`1,234.56`, `12/03/2026`,
  `12-03-26`) with hand-drawn punctuation.

Everything is drawn from fixed seeds, so every reader in a run sees the same images.
"""

from __future__ import annotations

import io
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from benchmarks.common import ROOT

sys.path.insert(0, str(ROOT / "tests"))
from photos import photograph, side_by_side, written_row

# Debian packages of handwriting-style fonts, and how their files are recognised
HANDWRITING = {
    "fonts-dkg-handwriting": "fifthhorseman",
    "fonts-breip": "breip",
    "fonts-femkeklaver": "femkeklaver",
    "fonts-rufscript": "rufscript",
    "fonts-bwht": "bwht",
    "fonts-dancingscript": "dancingscript",
    "fonts-comic-neue": "comic-neue",
    "fonts-humor-sans": "humor-sans",
}
NOT_DIGITS = ("Symbol", "D050000L", "Math", "Dingbat")  # fonts without ordinary digit shapes
DEGRADATIONS = ("blur", "low resolution", "thick pen", "thin pen", "noise", "faint", "tilted")


@dataclass
class Item:
    image: bytes
    text: str


def jpeg(page: np.ndarray, quality: int = 85) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.clip(page, 0, 255).astype(np.uint8)).save(
        buffer, format="JPEG", quality=quality
    )
    return buffer.getvalue()


# ---- degraded MNIST test digits --------------------------------------------------------------


def degrade_digit(digit: np.ndarray, how: tuple[str, ...], rng: np.random.Generator) -> bytes:
    """One MNIST test digit (light on black) written and photographed with the given faults."""
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


def degraded(mnist, per_set: int, seed: int = 1) -> dict[str, list[Item]]:
    """Each degradation alone on `per_set` test digits, and all of them mixed on twice as many
    (each fault on about half the digits)."""
    rng = np.random.default_rng(seed)
    test = mnist.test
    sets = {}
    for how in DEGRADATIONS:
        picks = rng.choice(len(test), per_set, replace=False)
        sets[f"MNIST test, {how}"] = [
            Item(degrade_digit(test.images[i], (how,), rng), str(test.labels[i])) for i in picks
        ]
    combined = []
    for i in rng.choice(len(test), 2 * per_set, replace=False):
        faults = [h for h in DEGRADATIONS if h != "thin pen" and rng.random() < 0.4]
        if rng.random() < 0.2 and "thick pen" not in faults:
            faults.append("thin pen")
        combined.append(
            Item(degrade_digit(test.images[i], tuple(faults), rng), str(test.labels[i]))
        )
    sets["MNIST test, degradations combined"] = combined
    return sets


# ---- fonts --------------------------------------------------------------------------------------


def font_files() -> tuple[list[Path], list[Path]]:
    """(printed, handwriting-style): every TrueType/OpenType font file fontconfig knows."""
    try:
        listed = subprocess.run(
            ["fc-list", "--format", "%{file}\n"], capture_output=True, text=True, check=True
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        listed = []
    files = sorted({Path(f) for f in listed if f.endswith((".ttf", ".otf"))}, key=lambda p: p.name)
    files = [f for f in files if not any(bad in f.name for bad in NOT_DIGITS)]
    hand = [f for f in files if any(mark in str(f).lower() for mark in HANDWRITING.values())]
    return [f for f in files if f not in hand], hand


def render(text: str, font: Path, size: int, rng: np.random.Generator) -> np.ndarray:
    """Text in a font as dark ink on white (uint8), cropped with a margin, slightly rotated."""
    face = ImageFont.truetype(str(font), size)
    left, top, right, bottom = face.getbbox(text)
    canvas = Image.new("L", (right - left + size // 2, bottom - top + size // 2), 255)
    ImageDraw.Draw(canvas).text((size // 4 - left, size // 4 - top), text, font=face, fill=0)
    canvas = canvas.rotate(
        float(rng.uniform(-5, 5)), resample=Image.Resampling.BILINEAR, fillcolor=255
    )
    return np.asarray(canvas, np.uint8)


def font_digits(fonts: list[Path], variants: int, seed: int) -> list[Item]:
    rng = np.random.default_rng(seed)
    items = []
    for font in fonts:
        for digit in "0123456789":
            for _ in range(variants):
                drawing = render(digit, font, int(rng.integers(60, 160)), rng)
                h, w = drawing.shape
                items.append(Item(photograph(drawing, (w, h), rng), digit))
    return items


# ---- numbers --------------------------------------------------------------------------------


def random_number(mnist, rng: np.random.Generator, length: int) -> tuple[list, str]:
    idx = rng.choice(len(mnist.test), length, replace=False)
    return list(mnist.test.images[idx]), "".join(str(int(y)) for y in mnist.test.labels[idx])


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


def numbers(mnist, count: int, seed: int = 2) -> list[Item]:
    """4-6 digit numbers; one in four with a touching pair, the rest from tight to wide gaps."""
    rng = np.random.default_rng(seed)
    items = []
    for k in range(count):
        digits, text = random_number(mnist, rng, int(rng.integers(4, 7)))
        row = touching_row(digits, rng, touch=k % 4 == 0)
        items.append(Item(photographed(row, rng, 120, 300), text))
    return items


def boxes(mnist, count: int, seed: int = 3) -> list[Item]:
    """4-6 digits in a form's row of boxes (a comb); a digit may touch or cross its box."""
    rng = np.random.default_rng(seed)
    items = []
    for _ in range(count):
        digits, text = random_number(mnist, rng, int(rng.integers(4, 7)))
        cell, line = int(rng.integers(90, 140)), int(rng.integers(2, 6))
        height = round(cell * float(rng.uniform(1.1, 1.4)))
        width = cell * len(digits)
        page = np.full((height + 40, width + 40), 255, np.uint8)
        for i, digit in enumerate(digits):
            side = round(min(height, cell) * float(rng.uniform(0.8, 1.05)))
            ink = np.asarray(Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC))
            top = 20 + (height - side) // 2 + int(rng.integers(-4, 5))
            left = 20 + i * cell + (cell - side) // 2 + int(rng.integers(-6, 7))
            region = page[top : top + side, left : left + side]
            np.minimum(region, 255 - ink, out=region)
        gray = int(rng.integers(0, 160))  # printed boxes: black to light gray
        page[20 : 20 + line, 20 : 20 + width + line] = gray
        page[20 + height : 20 + height + line, 20 : 20 + width + line] = gray
        for i in range(len(digits) + 1):
            page[20 : 20 + height + line, 20 + i * cell : 20 + i * cell + line] = gray
        items.append(Item(photograph(page, (page.shape[1], page.shape[0]), rng), text))
    return items


def lines(mnist, count: int, seed: int = 4) -> list[Item]:
    """4-6 digits written on a ruled line (the ink sits on it or dips through it)."""
    rng = np.random.default_rng(seed)
    items = []
    for k in range(count):
        digits, text = random_number(mnist, rng, int(rng.integers(4, 7)))
        row = touching_row(digits, rng, touch=k % 4 == 0)
        height = int(rng.integers(120, 240))
        width = round(row.shape[1] * height / 28)
        ink = np.asarray(Image.fromarray(row).resize((width, height), Image.Resampling.BICUBIC))
        page = np.full((height + 80, width + 80), 255, np.uint8)
        page[40 : 40 + height, 40 : 40 + width] = 255 - ink
        base = 40 + round(height * float(rng.uniform(0.82, 0.95)))  # MNIST digits end at ~ 0.85
        thick, gray = int(rng.integers(2, 6)), int(rng.integers(0, 160))
        np.minimum(page[base : base + thick], gray, out=page[base : base + thick])
        items.append(Item(photograph(page, (page.shape[1], page.shape[0]), rng), text))
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


def written_text(mnist, text: str, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """`text` (digits and separators) written by hand, 28 high; digits from MNIST test with the
    right labels."""
    by_label = {d: np.flatnonzero(mnist.test.labels == d) for d in range(10)}
    parts = []
    for char in text:
        if char.isdigit():
            digit = mnist.test.images[rng.choice(by_label[int(char)])]
            parts.append(digit[:, np.flatnonzero(digit.max(axis=0) > 0)])
        else:
            drawn = mark(char, 112, rng)  # drawn 4x, reduced like MNIST's anti-aliasing
            size = (max(3, drawn.shape[1] // 4), 28)
            parts.append(np.asarray(Image.fromarray(drawn).resize(size, Image.Resampling.BOX)))
    gaps = [int(rng.integers(2, 7)) for _ in parts[1:]]
    return side_by_side(parts, gaps), text


def separators(mnist, count: int, seed: int = 5) -> list[Item]:
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
        row, _ = written_text(mnist, text, rng)
        items.append(Item(photographed(row, rng, 120, 260), text))
    return items
