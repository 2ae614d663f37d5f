"""The robustness benchmark's test sets: digits and numbers from sources other than MNIST's
training images, as images on disk would be (JPEG or PNG bytes) with the text they hold.

- `degraded`: MNIST *test* digits photographed as a phone or scanner would, one degradation at a
  time (blur, low resolution, thick pen, thin pen, noise, faint ink, tilted photo) and combined.
- `printed` / `handwriting_fonts`: every digit in every font on the machine (Debian's packages;
  handwriting-style ones are installed by `.ci/run` or `apt install` with the names in
  HANDWRITING), photographed with light noise.
- `numbers`, `boxes`, `lines`, `separators` (`digitlab.ink.paper`, given MNIST's *test* split):
  4-6 digits in a row, from wide gaps to touching (1 in 4 numbers has a touching pair); in a
  form's boxes; on a ruled line; amounts and dates (`1,234.56`, `12/03/2026`, `12-03-26`) with
  hand-drawn punctuation. The line reader's temperature is fitted on rows made the same way
  from the digits the built-in reader held out of MNIST's training images, never from these.

Everything is drawn from fixed seeds, so every reader in a run sees the same images.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from digitlab.ink.paper import Written, boxes, jpeg, lines, numbers, photograph, separators

__all__ = ["boxes", "degraded", "font_digits", "font_files", "lines", "numbers", "separators"]

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


Item = Written  # an image's bytes and the text it holds


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


def random_faults(rng: np.random.Generator) -> tuple[str, ...]:
    """Faults for one digit of the combined set: each with probability 0.4 (thin pen: 0.2,
    never with a thick one)."""
    faults = [h for h in DEGRADATIONS if h != "thin pen" and rng.random() < 0.4]
    if rng.random() < 0.2 and "thick pen" not in faults:
        faults.append("thin pen")
    return tuple(faults)


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
        faults = random_faults(rng)
        combined.append(Item(degrade_digit(test.images[i], faults, rng), str(test.labels[i])))
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
