"""Rows of handwriting made from single MNIST digits, for a line reader to learn from.

    >>> maker = RowMaker(images, labels)              # MNIST training digits (light on black)
    >>> image, text = maker.sample(rng)                # uint8 (32, W) strip, e.g. '12/03/2026'

The text is a number as people write them on forms: plain digit strings (1-9 long), amounts
(`1,234.56`), dates (`12/03/2026`, `12-03-26`, `12.03.2026`), codes with a dash (`555-0142`)
and decimals. Each digit is an MNIST training image of that label (a share of the 1s given a
flag, `flagged_ones`: `ink.flags`); separators are drawn here
as pen strokes of random width, length and place. The row is written as people write: uneven
gaps from wide to overlapping (about one row in three has a touching pair), digits of uneven
size on a wandering baseline, then the whole row slanted, thickened or thinned, blurred,
written small, cut by a removed form line, noisy and faint. `ink.row.strip` then prepares it
exactly as it prepares a photo's row.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from digitlab.ink.flags import flag_ones
from digitlab.ink.prepare import otsu
from digitlab.ink.row import strip

OTHER = "?"  # what a line reader writes for a mark that is no digit and no separator ($12: ?12)
ALPHABET = "0123456789,./-" + OTHER  # what a line reader writes; index + 1 is its class (0: blank)
OTHER_SHARE = 0.08  # rows with such a mark: before, after or among the digits
# the marks drawn for OTHER: symbols written beside numbers, and scribbles
# ("s": a scribble; no [ ] or !, which many 1s are written like)
OTHER_MARKS = ("(", ")", "$", "+", "x", ":", "=", "*", "#", "%", "<", ">", "~", "s")
LENGTHS = (1, 2, 3, 4, 4, 5, 5, 6, 6, 7, 8, 9)  # plain digit strings: mostly 4-6 long
DRAW_SCALE = 4  # separators are drawn this much larger, then reduced (anti-aliased like MNIST)


def text(rng: np.random.Generator) -> str:
    """A random string of the kinds people write on forms; one in OTHER_SHARE has a mark that
    is no digit nor separator (a currency sign, a bracket, a colon, a scribble) at one end or
    among its symbols, written OTHER."""
    written = number_text(rng)
    if rng.random() < OTHER_SHARE:
        where = rng.random()  # before the number, after it, or among its symbols
        if where < 0.4:
            at = 0
        elif where < 0.7:
            at = len(written)
        else:
            at = int(rng.integers(1, len(written) + 1))
        written = written[:at] + OTHER + written[at:]
    return written


def number_text(rng: np.random.Generator) -> str:
    """A number, amount, date, code or decimal, as `text` writes them."""

    def digits(n: int) -> str:
        return "".join(str(d) for d in rng.integers(0, 10, n))

    kind = rng.random()
    if kind < 0.5:
        return digits(int(rng.choice(LENGTHS)))
    if kind < 0.65:  # an amount
        written = str(int(rng.integers(1, 1000)))
        for _ in range(int(rng.integers(0, 3))):
            written += "," + digits(3)
        return written + ("." + digits(2) if rng.random() < 0.7 else "")
    if kind < 0.82:  # a date
        sep = str(rng.choice(list("/-.")))
        year = digits(4) if rng.random() < 0.5 else digits(2)
        day, month = (digits(2), digits(2)) if rng.random() < 0.8 else (digits(1), digits(1))
        return sep.join([day, month, year])
    if kind < 0.92:  # a code with a dash
        return digits(int(rng.integers(2, 5))) + "-" + digits(int(rng.integers(2, 5)))
    return digits(int(rng.integers(1, 5))) + "." + digits(int(rng.integers(1, 4)))


def separator(char: str, rng: np.random.Generator) -> np.ndarray:
    """A hand-drawn , . / or - as light ink on black, 28 high like an MNIST digit (whose ink
    sits in rows 4..24): a dot or comma on the baseline, a dash at mid-height, a slash across."""
    s = DRAW_SCALE
    pen = float(rng.uniform(1.6, 3.2)) * s
    width = {"/": rng.integers(6, 19), "-": rng.integers(6, 14)}.get(char, rng.integers(3, 7))
    width = int(width)
    image = Image.new("L", (width * s, 28 * s), 0)
    draw = ImageDraw.Draw(image)
    base = float(rng.uniform(21, 25)) * s
    if char in ".,":
        r = pen * float(rng.uniform(0.4, 0.8))
        cx, cy = width * s / 2 + float(rng.uniform(-1, 1)) * s, base - r
        if char == "." or rng.random() < 0.6:
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        if char == ",":  # a tail down and to the left, from the dot or from above it
            start = (cx + r * 0.4, cy - (0 if rng.random() < 0.6 else 3 * s))
            end = (cx - r * 1.5 - float(rng.uniform(0, 2)) * s, base + float(rng.uniform(3, 6)) * s)
            draw.line([start, end], fill=255, width=int(pen))
    elif char == "-":
        y = float(rng.uniform(11, 17)) * s
        tilt = float(rng.uniform(-2, 2)) * s
        draw.line([(pen / 2, y), (width * s - pen / 2, y + tilt)], fill=255, width=int(pen))
    elif char == "/":
        top = (width * s - pen / 2 - float(rng.uniform(0, 2)) * s, float(rng.uniform(2, 7)) * s)
        bottom = (pen / 2 + float(rng.uniform(0, 2)) * s, float(rng.uniform(21, 26)) * s)
        draw.line([top, bottom], fill=255, width=int(pen))
    else:
        raise ValueError(f"no separator {char!r}")
    return np.asarray(image.resize((width, 28), Image.Resampling.BOX), np.uint8)


def curve(f, n: int = 12) -> list[tuple[float, float]]:
    return [f(t) for t in np.linspace(0, 1, n)]


def ring(cx: float, cy: float) -> list[tuple[float, float]]:
    return curve(lambda t: (cx + 0.15 * np.cos(2 * np.pi * t), cy + 0.12 * np.sin(2 * np.pi * t)))


def strokes_of(mark: str, rng: np.random.Generator) -> list[list[tuple[float, float]]]:
    """The pen strokes of one of OTHER_MARKS in a unit box (x right, y down)."""
    pi = np.pi
    if mark in "()":
        side = 1 if mark == "(" else -1
        return [curve(lambda t: (0.5 + side * (0.35 - 0.7 * np.sin(pi * t)), t))]
    if mark == "$":
        s = [(0.85, 0.18), (0.6, 0.08), (0.3, 0.1), (0.15, 0.28), (0.3, 0.45), (0.7, 0.55)]
        s += [(0.85, 0.72), (0.7, 0.9), (0.4, 0.93), (0.15, 0.82)]
        return [s, [(0.5, 0.0), (0.5, 1.0)]]
    if mark == "%":
        return [[(0.9, 0.05), (0.1, 0.95)], ring(0.25, 0.2), ring(0.75, 0.8)]
    lines = {
        "+": [[(0, 0.55), (1, 0.55)], [(0.5, 0.25), (0.5, 0.85)]],
        "x": [[(0, 0.35), (1, 1)], [(1, 0.35), (0, 1)]],
        "=": [[(0, 0.45), (1, 0.45)], [(0, 0.72), (1, 0.72)]],
        "*": [[(0.5, 0.2), (0.5, 0.8)], [(0.1, 0.3), (0.9, 0.7)], [(0.9, 0.3), (0.1, 0.7)]],
        "#": [
            [(0.4, 0), (0.25, 1)],
            [(0.8, 0), (0.65, 1)],
            [(0, 0.33), (1, 0.33)],
            [(0, 0.67), (1, 0.67)],
        ],
        "<": [[(1, 0.3), (0, 0.6), (1, 0.95)]],
        ">": [[(0, 0.3), (1, 0.6), (0, 0.95)]],
        ":": [[(0.5, 0.4), (0.5, 0.44)], [(0.5, 0.9), (0.5, 0.94)]],
        "~": [curve(lambda t: (t, 0.55 - 0.15 * np.sin(2 * pi * t)))],
    }
    if mark in lines:
        return lines[mark]
    return [[tuple(p) for p in rng.uniform(0, 1, (int(rng.integers(4, 8)), 2))]]  # a scribble


def other(rng: np.random.Generator) -> np.ndarray:
    """A hand-drawn mark that is no digit nor separator (OTHER_MARKS), light on black, 28 high:
    each stroke's points jittered, with a pen of random width."""
    mark = str(rng.choice(OTHER_MARKS))
    s = DRAW_SCALE
    pen = float(rng.uniform(1.6, 3.2)) * s
    narrow = mark in "():"
    width = int(rng.integers(4, 9) if narrow else rng.integers(10, 22))
    top, base = float(rng.uniform(2, 8)), float(rng.uniform(20, 26))
    image = Image.new("L", (width * s, 28 * s), 0)
    draw = ImageDraw.Draw(image)
    margin = pen / 2
    for stroke in strokes_of(mark, rng):
        points = np.asarray(stroke) + rng.normal(0, 0.03, (len(stroke), 2))
        xy = [
            (margin + x * (width * s - 2 * margin), (top + y * (base - top)) * s) for x, y in points
        ]
        draw.line(xy, fill=255, width=int(pen), joint="curve")
        if len(stroke) == 2 and np.allclose(stroke[0], stroke[1], atol=0.05):  # a dot
            (x, y), r = xy[0], pen * 0.7
            draw.ellipse([x - r, y - r, x + r, y + r], fill=255)
    return np.asarray(image.resize((width, 28), Image.Resampling.BOX), np.uint8)


class RowMaker:
    """Synthetic rows from a set of digit images (uint8 (N, 28, 28), light on black)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, flagged_ones: float = 0.0) -> None:
        """`flagged_ones`: the share of 1s written with a flag (ink.flags)."""
        self.images, self.flagged_ones = images, flagged_ones
        self.by_label = {d: np.flatnonzero(labels == d) for d in range(10)}
        if any(len(v) == 0 for v in self.by_label.values()):
            raise ValueError("synthetic rows need images of every digit 0-9")

    def piece(self, char: str, rng: np.random.Generator) -> np.ndarray:
        if char == OTHER:
            return other(rng).astype(np.float32)
        if not char.isdigit():
            return separator(char, rng).astype(np.float32)
        digit = self.images[rng.choice(self.by_label[int(char)])]
        if char == "1" and rng.random() < self.flagged_ones:
            ink = flag_ones(digit[None] / np.float32(255), np.ones(1, int), rng, 1.0)[0]
            digit = np.rint(ink * 255).astype(np.uint8)
        cols = np.flatnonzero(digit.max(axis=0) > 0)
        part = digit[:, cols[0] : cols[-1] + 1].astype(np.float32)
        size = float(rng.uniform(0.8, 1.12))
        if abs(size - 1) > 0.03:
            new = (max(2, round(part.shape[1] * size)), max(2, round(28 * size)))
            part = np.asarray(Image.fromarray(part).resize(new, Image.Resampling.BILINEAR))
        return part

    def write(self, written: str, rng: np.random.Generator) -> np.ndarray:
        """`written` as a row of ink (float32, light on black) at MNIST's scale."""
        parts = [self.piece(c, rng) for c in written]
        spacing = float(rng.uniform(0, 8))
        gaps = [max(-4, round(rng.normal(spacing, 1.5))) for _ in parts[1:]]
        if gaps and rng.random() < 0.3:  # a touching or overlapping pair
            gaps[int(rng.integers(len(gaps)))] = int(rng.integers(-4, 1))
        width = sum(p.shape[1] for p in parts) + sum(gaps) + 16
        row = np.zeros((44, max(width, 20)), np.float32)
        x, drift = 8, float(rng.uniform(-0.06, 0.06))  # a baseline that wanders up or down
        for i, part in enumerate(parts):
            h = part.shape[0]
            y = 8 + (28 - h) // 2 + round(rng.normal(0, 1.2)) + round(drift * (x - 8))
            y = min(max(y, 0), row.shape[0] - h)
            region = row[y : y + h, x : x + part.shape[1]]
            np.maximum(region, part[:, : region.shape[1]], out=region)
            x += part.shape[1] + (gaps[i] if i < len(gaps) else 0)
        return self.worn(row, rng)

    @staticmethod
    def worn(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Pen, slant, focus, size, a removed line, noise and faintness, each at random."""
        pen = rng.random()
        if pen < 0.2:  # a thick pen
            ink = ndimage.grey_dilation(ink, size=(2, 2) if rng.random() < 0.6 else (3, 3))
        elif pen < 0.35:  # a thin one
            t = float(rng.uniform(60, 140))
            ink = np.clip((ink - t) * 255 / (255 - t), 0, 255)
        slant = float(rng.uniform(-0.35, 0.35))  # columns per row
        if abs(slant) > 0.05:
            h = ink.shape[0]
            grow = int(abs(slant) * h) + 1
            ink = np.pad(ink, ((0, 0), (grow, grow)))
            matrix = np.array([[1.0, 0.0], [slant, 1.0]])
            ink = ndimage.affine_transform(ink, matrix, offset=(0, -slant * h / 2), order=1)
        if rng.random() < 0.25:  # out of focus
            ink = ndimage.gaussian_filter(ink, float(rng.uniform(0.5, 1.2)))
        if rng.random() < 0.15:  # written small, then enlarged
            f = float(rng.uniform(0.35, 0.7))
            h, w = ink.shape
            image = Image.fromarray(np.asarray(ink, np.float32))
            image = image.resize((max(2, round(w * f)), max(2, round(h * f))), Image.Resampling.BOX)
            ink = np.asarray(image.resize((w, h), Image.Resampling.BILINEAR), np.float32)
        ink = np.array(ink, np.float32)
        if rng.random() < 0.15:  # a form's line was removed across the strokes
            y = int(rng.integers(6, 38))
            ink[y : y + int(rng.integers(1, 3))] *= float(rng.uniform(0, 0.3))
        elif rng.random() < 0.1:  # ... or a piece of it was left under the writing
            y, w = int(rng.integers(30, 38)), ink.shape[1]
            x0 = int(rng.integers(0, w // 2))
            x1 = int(rng.integers(x0 + w // 4, w + 1))
            line = ink[y : y + int(rng.integers(1, 3)), x0:x1]
            np.maximum(line, float(rng.uniform(80, 255)), out=line)
        if rng.random() < 0.3:
            ink += rng.normal(0, float(rng.uniform(2, 20)), ink.shape).astype(np.float32)
        return np.clip(ink, 0, 255) * float(rng.uniform(0.3, 1.0))

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        """One synthetic row as a line reader's strip, and its text."""
        written = text(rng)
        ink = self.write(written, rng)
        mask = ink > otsu(ink) if ink.max() > 0 else ink > 0
        return strip(ink, mask)[0], written
