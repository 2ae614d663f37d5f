"""The robustness benchmark's test sets: digits and numbers from sources other than MNIST's
training images, as images on disk would be (JPEG or PNG bytes) with the text they hold.

- `degraded`: MNIST *test* digits photographed as a phone or scanner would, one degradation at a
  time (blur, low resolution, thick pen, thin pen, noise, faint ink, tilted photo) and combined.
- `printed` / `handwriting_fonts`: every digit in every font on the machine (Debian's packages;
  handwriting-style ones are installed by `.ci/run` or `apt install` with the names in
  HANDWRITING), photographed with light noise.
- `not_digits`: letters and symbols in the same fonts, photographed alike: what a reader should
  not answer with a confident digit.
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

from digitlab.ink.paper import (
    DEGRADATIONS,
    Written,
    boxes,
    degrade_digit,
    lines,
    numbers,
    photograph,
    random_faults,
    separators,
)

__all__ = [
    "boxes",
    "degraded",
    "font_digits",
    "font_files",
    "lines",
    "not_digits",
    "numbers",
    "separators",
]

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


Item = Written  # an image's bytes and the text it holds


# ---- degraded MNIST test digits --------------------------------------------------------------


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


# letters and symbols people write beside digits; not I, l, O and o, which many fonts draw
# exactly as 1 and 0
NOT_DIGITS_TEXT = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz#%&@?+=*<>$"


def not_digits(fonts: list[Path], per_font: int, seed: int) -> list[Item]:
    """`per_font` letters or symbols (NOT_DIGITS_TEXT) in each font, photographed as the
    digits are: what a reader should not answer with a confident digit."""
    rng = np.random.default_rng(seed)
    items = []
    for font in fonts:
        for char in rng.choice(list(NOT_DIGITS_TEXT), per_font, replace=False):
            drawing = render(str(char), font, int(rng.integers(60, 160)), rng)
            h, w = drawing.shape
            items.append(Item(photograph(drawing, (w, h), rng), str(char)))
    return items


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
