"""What forms add to a row of digits: printed lines and boxes, and punctuation between digits.

    >>> ink, cells = remove_rules(ink)          # ruled lines and box edges gone; the boxes' columns
    >>> mark = separator(piece, box, row)       # ',', '.', '-' or None

Lines are found by what no handwritten stroke is: straight and much longer than a digit is
wide (a morphological opening with a long, one-pixel line). They are erased, and the ink of a
digit that crosses a line is put back where there is ink both just above and just below it.
A row of boxes (two long horizontal lines with straight verticals joining them) is also read
cell by cell: `cells` are the column ranges between the verticals.

Separators are told from digits by their size and place in the row: a dot or comma is small and
sits on the baseline (a comma reaches below it), a dash is short, flat and at mid-height, a slash
may be a long straight stroke leaning right; it is one only where the string then reads as a
date (`date_slashes`, `plausible_date`), since many handwritten 1s lean as far.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

LINE_SHARE = 0.25  # a horizontal line is at least this share of the ink's width
LINE_HEIGHTS = 1.5  # ... and at least this many times the ink's height
TILT = 1  # pixels a line may drift across over that length
BOX_SHARE = 0.85  # a box's side spans at least this share of the distance between its lines
SHORTEST = 25  # pixels: no shorter straight run is taken for a line
THIN = 0.15  # a box's edges are at most this share of its width and height thick
EDGE = 2  # pixels either side of a found line that go with it (its anti-aliased edge)
SLASH_SLANT = 10.0  # degrees from vertical past which a long straight stroke may be a slash
SLASH_SPREAD = 0.2  # ... when its width across is under this share of its length


@dataclass(frozen=True)
class Row:
    """Where the digits of a row sit: top and baseline (rows), and their typical height."""

    top: float
    base: float
    tall: float


def long_runs(mask: np.ndarray, length: int, axis: int) -> np.ndarray:
    """The pixels of `mask` on straight runs of at least `length` along `axis` (0: vertical),
    allowing a line to drift by a few pixels across (a photo taken a degree or two askew).
    This is a morphological opening with a one-pixel line, computed from run lengths."""
    across = (2 * TILT + 1, 1) if axis == 1 else (1, 2 * TILT + 1)
    wide = ndimage.binary_dilation(mask, structure=np.ones(across, bool))
    rows = wide if axis == 1 else wide.T
    n = rows.shape[1]
    index = np.arange(n)
    before = np.maximum.accumulate(np.where(rows, -1, index), axis=1)  # the last gap so far
    after = np.minimum.accumulate(np.where(rows, n, index)[:, ::-1], axis=1)[:, ::-1]
    long = rows & (after - before - 1 >= length)  # the whole run a pixel belongs to
    return (long if axis == 1 else long.T) & mask


def line_rows(lines: np.ndarray) -> list[tuple[int, int]]:
    """The (first, last) rows of each horizontal band of line pixels, top to bottom."""
    return runs_of(lines.any(axis=1))


def repair(kept: np.ndarray, removed: np.ndarray, reach: int) -> np.ndarray:
    """Removed pixels with kept ink within `reach` rows above and below: a stroke that crossed
    the line, joined again."""
    above, below = np.zeros_like(kept), np.zeros_like(kept)
    for k in range(1, reach + 1):
        above[k:] |= kept[:-k]
        below[:-k] |= kept[k:]
    return removed & above & below


def remove_rules(
    ink: np.ndarray, mask: np.ndarray, ruled: bool = True
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """(ink without ruled lines and box edges, the boxes' column ranges left to right or []).

    `mask` is the ink's stroke mask (Otsu); the ink is returned unchanged when no line is found.
    `ruled=False`: boxes only (`frames`), for an image of one digit, where a wide 2's foot can
    be longer than the digit is high.
    """
    cols, rows = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
    if cols.size == 0:
        return ink, []
    width, height = cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1
    # the ink's box and the reach of a line's edge (EDGE) around it: the work is done there (on
    # a photo of one digit, a third of the time over the whole page), with the same answer
    top, left = max(rows[0] - EDGE - 1, 0), max(cols[0] - EDGE - 1, 0)
    window = np.s_[top : rows[-1] + EDGE + 2, left : cols[-1] + EDGE + 2]
    mask = mask[window]
    # longer than any stroke of a digit: a share of the row, and more than the ink is high
    length = max(SHORTEST, round(LINE_SHARE * width), round(LINE_HEIGHTS * height))
    horizontal = long_runs(mask, length, axis=1) if ruled else np.zeros_like(mask)
    bands = line_rows(horizontal)
    if bands:
        vertical, cells = box_sides(mask, bands)
    else:  # no ruled line: perhaps boxes alone, each as short as a digit is wide
        horizontal, vertical, cells = frames(mask)
        bands = line_rows(horizontal)
        if not cells:
            return ink, []
    square = np.ones((2 * EDGE + 1, 2 * EDGE + 1), bool)
    flat = ndimage.binary_dilation(horizontal, structure=square)
    upright = ndimage.binary_dilation(vertical, structure=square) if cells else vertical
    thickness = max(last - first + 1 for first, last in bands) + 2 * EDGE
    kept = mask & ~flat & ~upright
    back = repair(kept, flat & ~upright, thickness + 1)
    out = ink.copy()
    out[window] = np.where((flat | upright) & ~back, 0, ink[window])
    return out, [(a + left, b + left) for a, b in cells]


def box_sides(
    mask: np.ndarray, bands: list[tuple[int, int]]
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """(the boxes' sides as a mask, the column ranges between them) when the first and last of
    the horizontal `bands` are the top and bottom of a row of boxes: straight verticals
    spanning most of the way between them; (empty, []) when they are not."""
    none: tuple[np.ndarray, list[tuple[int, int]]] = (np.zeros_like(mask), [])
    if len(bands) < 2:
        return none
    (t0, t1), (b0, b1) = bands[0], bands[-1]
    span = b0 - t1
    if span <= 10:
        return none
    found = long_runs(mask, max(5, round(BOX_SHARE * span)), axis=0)
    found[: max(t0 - EDGE, 0)] = False
    found[b1 + EDGE + 1 :] = False
    sides = sides_of(found)
    if len(sides) < 2:
        return none
    return found, [(a[1] + 1, b[0]) for a, b in itertools.pairwise(sides)]


def frames(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """(top and bottom edges, sides, the column ranges inside) of boxes drawn around digits
    where no line is long enough to be a ruled one (one box, or boxes spaced apart): a straight
    top and bottom of the same columns, joined at both ends by straight sides. A printed digit's
    straight strokes are never all four, thin, and holding ink between them (the hole of a big 0
    can look like an empty box)."""
    empty = np.zeros_like(mask)
    horizontal = long_runs(mask, SHORTEST, axis=1)
    bands = line_rows(horizontal)
    if len(bands) < 2:
        return empty, empty, []
    (t0, t1), (b0, b1) = bands[0], bands[-1]
    vertical, _ = box_sides(mask, [bands[0], bands[-1]])
    sides = [(a, b) for a, b in sides_of(vertical) if meets(vertical[:, a : b + 1], t1, b0)]
    edges, keep = np.zeros_like(mask), np.zeros_like(mask)
    found = []
    near = 2 * EDGE + 1
    bottoms = runs_of(horizontal[b0 : b1 + 1].any(axis=0))
    for x0, x1 in runs_of(horizontal[t0 : t1 + 1].any(axis=0)):
        below = [r for r in bottoms if abs(r[0] - x0) <= near]
        inside = [s for s in sides if x0 - near <= s[0] and s[1] <= x1 + near]
        if not below or abs(below[0][1] - x1) > near or len(inside) < 2:
            continue
        if inside[0][0] > x0 + near or inside[-1][1] < x1 - near:  # open at an end: no box
            continue
        thick = max(t1 - t0, b1 - b0, *(b - a for a, b in inside)) + 1
        held = mask[t1 + EDGE + 1 : b0 - EDGE, inside[0][1] + EDGE + 1 : inside[-1][0] - EDGE]
        if thick > THIN * min(x1 - x0, b0 - t1) or not held.any():  # a thick stroke; empty
            continue
        edges[t0 : t1 + 1, x0 : x1 + 1] = horizontal[t0 : t1 + 1, x0 : x1 + 1]
        edges[b0 : b1 + 1, x0 : x1 + 1] = horizontal[b0 : b1 + 1, x0 : x1 + 1]
        for a, b in inside:  # the sides that meet both edges: a straight 1 between them stays
            keep[:, a : b + 1] = vertical[:, a : b + 1]
        found += [(a[1] + 1, b[0]) for a, b in itertools.pairwise(inside)]
    return edges, keep, found


def meets(side: np.ndarray, top: int, bottom: int) -> bool:
    """Whether a vertical line's pixels reach from the line ending at row `top` to the one
    starting at row `bottom` (within EDGE): a box's side, where a straight 1 inside need not."""
    rows = np.flatnonzero(side.any(axis=1))
    return rows.size > 0 and rows[0] <= top + EDGE + 1 and rows[-1] >= bottom - EDGE - 1


def runs_of(on: np.ndarray) -> list[tuple[int, int]]:
    """The (first, last) indices of each run of True in a 1-D array."""
    at = np.flatnonzero(on)
    if at.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(at) > 1)
    return list(zip(np.r_[at[0], at[breaks + 1]].tolist(), np.r_[at[breaks], at[-1]].tolist(),
                    strict=True))  # fmt: skip


def sides_of(vertical: np.ndarray) -> list[tuple[int, int]]:
    """The (first, last) columns of each vertical line, left to right."""
    return runs_of(vertical.any(axis=0))


def row_of(bodies: list[tuple[int, int, int, int]]) -> Row:
    """The row's top, baseline and digit height from the digit-high pieces' boxes
    (top, bottom, left, right)."""
    tops = [b[0] for b in bodies]
    bottoms = [b[1] for b in bodies]
    top, base = float(np.median(tops)), float(np.median(bottoms))
    return Row(top, base, max(base - top, 1.0))


def slant_of(piece: np.ndarray) -> tuple[float, float]:
    """(degrees from vertical, leaning right positive; straightness: the spread across the
    stroke over its length) of a piece's pixels."""
    rows, cols = np.nonzero(piece)
    if rows.size < 5:
        return 0.0, 1.0
    cov = np.cov(np.stack([cols, rows]).astype(np.float64))
    values, vectors = np.linalg.eigh(cov)
    x, y = vectors[:, 1]
    angle = float(np.degrees(np.arctan2(x, -y) if y < 0 else np.arctan2(-x, y)))
    return angle, float(np.sqrt(max(values[0], 0)) / np.sqrt(max(values[1], 1e-9)))


def separator(piece: np.ndarray, box: tuple[int, int, int, int], row: Row) -> str | None:
    """',', '.' or '-' when a piece of ink (its mask, and box (top, bottom, left, right)
    in the row's pixels) is that mark; None when it may be (part of) a digit."""
    top, bottom, left, right = box
    h, w = bottom - top, right - left
    middle = (top + bottom) / 2
    relative = (middle - row.top) / row.tall  # 0 at the digits' top, 1 on the baseline
    low = bottom > row.base + 0.1 * row.tall  # reaching below the baseline: a comma's tail
    if h <= (0.5 if low else 0.35) * row.tall and w <= 0.35 * row.tall and relative > 0.6:
        fill = piece.sum() / max(h * w, 1)
        if fill < 0.3:
            return None
        return "," if low and h > 1.3 * w else "."
    if h <= 0.25 * row.tall and 0.18 * row.tall <= w <= 0.9 * row.tall and w >= 2 * h:
        return "-" if 0.25 < relative < 0.75 else None
    return None


def slash_like(piece: np.ndarray, tall: float) -> bool:
    """A long straight stroke leaning right: a '/' or a slanted '1' (a fifth of MNIST's 1s lean
    this far), which only the shape of the whole string can tell apart (see `date_slashes`)."""
    rows = np.flatnonzero(piece.any(axis=1))
    if rows.size == 0 or rows[-1] - rows[0] + 1 < 0.6 * tall:
        return False
    angle, spread = slant_of(piece)
    return angle >= SLASH_SLANT and spread < SLASH_SPREAD


def plausible_date(text: str) -> bool:
    """Whether `text` is a date written d/m/y (or m/d/y): 1-2 digits, 1-2 digits, then 2 or 4,
    its day and month both from 1 to 31 and one of them at most 12."""
    parts = text.split("/")
    if len(parts) != 3 or not all(part.isdigit() for part in parts):
        return False
    day, month, year = parts
    if not (1 <= len(day) <= 2 and 1 <= len(month) <= 2 and len(year) in (2, 4)):
        return False
    a, b = int(day), int(month)
    return 1 <= a <= 31 and 1 <= b <= 31 and min(a, b) <= 12


def part_date(text: str) -> bool:
    """Whether `text` is a date without its year or its day, as forms ask for them: day/month
    (12/03, 1/2) or month/year (03/26, 03/2026, a card's expiry)."""
    parts = text.split("/")
    if len(parts) != 2 or not all(part.isdigit() and len(part) <= 4 for part in parts):
        return False
    a, b = parts
    if len(a) <= 2 and len(b) in (2, 4) and 1 <= int(a) <= 12:
        return True  # month/year
    return len(a) <= 2 and len(b) <= 2 and 1 <= int(a) <= 31 and 1 <= int(b) <= 12


def date_slashes(text: str, candidates: list[int]) -> list[int]:
    """Which of the candidate positions in `text` (digits read from slash-like strokes, and any
    slash already read) are a date's slashes: exactly two, making the whole a `plausible_date`.
    Otherwise none: they were 1s."""
    for first, second in itertools.combinations(candidates, 2):
        amended = "".join("/" if i in (first, second) else c for i, c in enumerate(text))
        if plausible_date(amended):
            return [first, second]
    return []


def amount_commas(text: str) -> list[int]:
    """Which dots in `text` are an amount's thousands commas misread (a comma's tail is small):
    every dot but the last, when the string then reads as 1,234,567.89 (1-3 digits, groups of
    3, then 2 decimals). Read with the dots, it is a number in no locale. Otherwise none."""
    dots = [i for i, c in enumerate(text) if c == "."]
    if len(dots) < 2:
        return []
    amended = "".join("," if i in dots[:-1] else c for i, c in enumerate(text))
    return dots[:-1] if re.fullmatch(r"\d{1,3}(,\d{3})+\.\d{2}", amended) else []
