"""A photo of a row of writing (a number, a date, an amount) to the ink of the row, level and
without a form's lines, and to the strip a line reader reads.

    >>> row = row_ink("cheque_amount.jpg")      # RowInk: ink, strokes, boxes, where it came from
    >>> image, place = strip(row.ink, row.mask)  # uint8 (32, W): the row, its ink BODY high

Steps: paper removed as in `prepare`; the row levelled at the angle whose row profile is
sharpest (projection-profile skew estimation, which a form's long lines make exact); printed
lines and boxes removed (`forms.remove_rules`). The strip crops the ink to its strokes, sets
the ink's own strength to 255 (as `crop_digit`) and scales it so the row is BODY pixels high,
in a STRIP_HEIGHT-high image: the same function prepares the synthetic rows a line reader
learns from (`ink.synth`), so what it reads looks like what it learned.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from digitlab.ink import forms
from digitlab.ink.prepare import ink_of, load_sized, shrink, strokes

NUMBER_SIDE = 600  # images of whole numbers are read at most this wide: ~80 px per digit of six
STRIP_HEIGHT = 32  # a line reader's input height
BODY = 24  # ... and the height of the row's ink in it (MNIST: a digit 20 high in 28)
MAX_SKEW = 12.0  # degrees: a row tilted further is read as it is
MAX_POINTS = 10_000  # ink pixels sampled to estimate the skew
WIDEST_GAP = 8  # strip columns: a wider gap between inks is narrowed to this (`narrow_gaps`)

Back = Callable[[float, float, float, float], tuple[int, int, int, int]]


@dataclass(frozen=True)
class RowInk:
    """A row's ink, level and without ruled lines (float32, light on black); its stroke labels
    (0 = none), their count and each label's size in pixels; the columns of a form's boxes ([]
    when none); and `back`, taking a box in these pixels (left, top, right, bottom) to the
    pixels of the image as given."""

    ink: np.ndarray
    labels: np.ndarray
    count: int
    sizes: np.ndarray
    cells: list[tuple[int, int]]
    back: Back

    @property
    def mask(self) -> np.ndarray:
        return self.labels > 0

    def symbol(self, left: int, right: int) -> tuple[np.ndarray, int]:
        """The strokes of one symbol read from columns left..right: the strokes at least half of
        which lie there (a neighbour's sliver is left out), cut at those columns; all the ink
        there when no stroke is (two digits written as one stroke). As (mask, first column): the
        mask covers the columns from that one to two past `right` (the margin a crop pads by)."""
        lo, hi = max(0, left - 2), min(self.labels.shape[1], right + 2)
        labels = self.labels[:, left:right]
        counts = np.bincount(labels.ravel(), minlength=len(self.sizes))
        mostly = np.flatnonzero((counts > 0) & (counts >= 0.5 * self.sizes))
        mostly = mostly[mostly > 0]
        keep = np.zeros((self.labels.shape[0], hi - lo), bool)
        keep[:, left - lo : right - lo] = np.isin(labels, mostly) if mostly.size else labels > 0
        return keep, lo

    def line(self) -> tuple[np.ndarray, Placement]:
        """The strip a line reader reads (wide gaps narrowed) and where its columns come from."""
        return narrow_gaps(*strip(self.ink, self.mask))


@dataclass(frozen=True)
class Placement:
    """Where a strip's columns come from: strip column x was column kept[x] before wide gaps
    were narrowed (all columns when none were), which is row-ink column
    left + (that - pad) / scale."""

    left: int
    scale: float
    pad: int
    kept: np.ndarray | None = None

    def columns(self, x0: float, x1: float) -> tuple[float, float]:
        """Row-ink columns of strip columns x0..x1."""
        if self.kept is not None:
            at = np.arange(len(self.kept))
            x0, x1 = (float(np.interp(x, at, self.kept)) for x in (x0, x1))
        return self.left + (x0 - self.pad) / self.scale, self.left + (x1 - self.pad) / self.scale


def skew(mask: np.ndarray, limit: float = MAX_SKEW) -> float:
    """Degrees to turn the image (counter-clockwise, as Pillow) so the row is level: the shear
    whose row profile of the ink is sharpest (largest sum of squares), to 1 degree, then 0.2."""
    rows, cols = np.nonzero(mask)
    if rows.size < 10:
        return 0.0
    if rows.size > MAX_POINTS:
        pick = np.random.default_rng(0).choice(rows.size, MAX_POINTS, replace=False)
        rows, cols = rows[pick], cols[pick]
    rows, cols = rows.astype(np.float64), cols.astype(np.float64)

    def sharpness(angle: float) -> float:
        y = np.rint(rows - np.tan(np.radians(angle)) * cols).astype(np.intp)
        profile = np.bincount(y - y.min()).astype(np.float64)
        return float(profile @ profile)

    coarse = max(np.arange(-limit, limit + 1e-9, 1.0), key=sharpness)
    fine = max(np.arange(coarse - 0.8, coarse + 0.8 + 1e-9, 0.2), key=sharpness)
    return float(fine)


def rotate(ink: np.ndarray, angle: float) -> np.ndarray:
    """Float ink turned by `angle` degrees counter-clockwise about its centre, the canvas grown
    to hold it (Pillow, bilinear: twice as fast as scipy's order-1 rotation, 8 ms against
    16 ms for a 600 x 300 image)."""
    image = Image.fromarray(np.asarray(ink, np.float32))
    turned = image.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True, fillcolor=0)
    return np.asarray(turned, np.float32)


def row_ink(source, name: str = "", side: int = NUMBER_SIDE) -> RowInk | None:
    """The row of writing in an image, level and without a form's lines; None without ink."""
    gray, size = load_sized(source, name, side)
    gray = shrink(gray, side)
    ink, _ = ink_of(gray)
    found = strokes(ink, min_share=0.03)
    if found is None:
        return None
    mask = found[0] > 0
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    margin = max(4, round(0.03 * max(gray.shape)))  # the rest of the page is paper: cut away
    top, left = max(rows[0] - margin, 0), max(cols[0] - margin, 0)
    ink = ink[top : rows[-1] + margin + 1, left : cols[-1] + margin + 1]
    mask = mask[top : rows[-1] + margin + 1, left : cols[-1] + margin + 1]
    cropped = ink.shape
    angle = skew(mask)
    if abs(angle) >= 0.3:  # the ink and its strokes turned alike (no second threshold)
        ink = rotate(ink, angle)
        turned = Image.fromarray(mask.view(np.uint8) * np.uint8(255)).rotate(
            angle, resample=Image.Resampling.BILINEAR, expand=True
        )
        mask = np.asarray(turned) >= 128
    else:
        angle = 0.0
    ink, cells = forms.remove_rules(ink, mask)
    found = strokes(ink, min_share=0.03)
    if found is None:
        return None
    labels, count, sizes = found
    back = rotation_back(ink.shape, cropped, angle, (left, top), gray.shape, size)
    return RowInk(ink, labels, count, sizes, cells, back)


def strip(ink: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, Placement]:
    """The row as a line reader sees it: uint8 (STRIP_HEIGHT, W), light ink on black, cropped to
    the strokes in `mask`, the ink's strength 255, scaled so the strokes are BODY high."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return np.zeros((STRIP_HEIGHT, 8), np.uint8), Placement(0, 1.0, 0)
    high = rows[-1] - rows[0] + 1
    pad = max(1, round(0.04 * high))
    r0, r1 = max(rows[0] - pad, 0), min(rows[-1] + pad + 1, ink.shape[0])
    c0, c1 = max(cols[0] - pad, 0), min(cols[-1] + pad + 1, ink.shape[1])
    keep, region = mask[r0:r1, c0:c1], ink[r0:r1, c0:c1]
    near = ndimage.maximum_filter(keep.view(np.uint8), size=2 * pad + 1) > 0
    level = max(float(np.percentile(region[keep], 60)), 1e-6)  # anti-aliasing stays below it
    crop = np.where(near, np.clip(region * (255 / level), 0, 255), 0).astype(np.float32)
    scale = BODY / high
    h, w = crop.shape
    new_h, new_w = min(STRIP_HEIGHT, max(1, round(h * scale))), max(4, round(w * scale))
    how = Image.Resampling.BILINEAR if scale > 1 else Image.Resampling.BOX
    small = np.asarray(Image.fromarray(crop).resize((new_w, new_h), how), np.float32)
    margin = 2
    out = np.zeros((STRIP_HEIGHT, new_w + 2 * margin), np.float32)
    top = (STRIP_HEIGHT - new_h) // 2
    out[top : top + new_h, margin : margin + new_w] = small
    image = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return image, Placement(int(c0), scale, margin)


def narrow_gaps(image: np.ndarray, place: Placement) -> tuple[np.ndarray, Placement]:
    """A strip whose blank gaps wider than WIDEST_GAP columns are narrowed to it: digits written
    one to a box, or far apart, are spaced as the line reader learned (its training rows have
    gaps up to about that); the placement still maps each column back."""
    blank = image.max(axis=0) == 0
    keep = np.ones(image.shape[1], bool)
    start = None
    for x, empty in enumerate(np.append(blank, False)):
        if empty and start is None:
            start = x
        elif not empty and start is not None:
            if x - start > WIDEST_GAP:
                keep[start + WIDEST_GAP // 2 : x - (WIDEST_GAP - WIDEST_GAP // 2)] = False
            start = None
    if keep.all():
        return image, place
    kept = np.flatnonzero(keep)
    return image[:, kept], dataclasses.replace(place, kept=kept.astype(np.float64))


def rotation_back(shape, turned_from, angle: float, corner, work_shape, size) -> Back:
    """A function taking a box in the levelled ink (`shape`, turned by `angle` from a crop of
    shape `turned_from` whose top-left `corner` (x, y) sits in the working image of
    `work_shape`) back to the pixels of the image as given, of `size` (width, height)."""
    (h, w), (ch, cw), (wh, ww) = shape, turned_from, work_shape
    theta = np.radians(angle)
    cos, sin = np.cos(theta), np.sin(theta)
    scale_x, scale_y = size[0] / ww, size[1] / wh

    def back(x0, y0, x1, y1) -> tuple[int, int, int, int]:
        corners = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]], np.float64)
        dx, dy = corners[:, 0] - w / 2, corners[:, 1] - h / 2
        # the crop was turned by `angle` counter-clockwise: turn the points back about the centre
        x = cos * dx - sin * dy + cw / 2 + corner[0]
        y = sin * dx + cos * dy + ch / 2 + corner[1]
        return (
            max(0, int(np.floor(x.min() * scale_x))),
            max(0, int(np.floor(y.min() * scale_y))),
            min(size[0], int(np.ceil(x.max() * scale_x))),
            min(size[1], int(np.ceil(y.max() * scale_y))),
        )

    return back
