"""A row of digits (a number, a postcode, a date) to MNIST-style digits, left to right.

    >>> found = segment("postcode.jpg", judge=predictor.trust)   # [Found(digit, box), ...]
    >>> [f.box for f in found]                                    # (left, top, right, bottom)

The row's ink comes from `row.row_ink` (paper removed, row levelled, a form's lines gone);
connected strokes are grouped into digits; touching digits are cut at valleys of the column
profile, straight or along the usual slants. Given a judge (the classifier's trust in each
prepared digit), the cut is chosen recognition-based: the reading the model trusts most wins.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from digitlab.ink import forms
from digitlab.ink.place import crop_digit, deskew, to_mnist
from digitlab.ink.row import row_ink

DIGIT_WIDTH = 0.8  # a digit is at most this wide for its height; wider ink is several digits
WIDE = 1.2  # MNIST digits wider than this for their height are rare (3.5% of them)
SLANTS = (0.0, 0.3, -0.3)  # columns per row: straight cuts, and along the usual slants
EXTRA_DIGIT = 0.85  # the judge's odds against each extra digit: one digit unless two read well
THIN_CUT = 0.65  # a cut may cross at most this share of a typical column's ink
VALLEYS = 3  # cuts tried at the deepest valleys of a group's column profile
THIN = 0.25  # a column with less ink than this share of the median column is where digits touch


Judge = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Found:
    """One digit of a number: MNIST style, and where it is (left, top, right, bottom) in pixels
    of the image as given; or a separator (`char` one of , . - /, and `digit` None)."""

    digit: np.ndarray | None
    box: tuple[int, int, int, int]
    char: str = ""
    slash_like: bool = False  # a long straight stroke leaning right: '1', or a date's '/'


def groups_of(labels: np.ndarray, n: int) -> list[np.ndarray]:
    """Components (1..n, zeros dropped) grouped into digits, as masks from left to right.

    Digit-high pieces whose columns mostly overlap are one digit (the two parts of a 4, a
    broken loop). Small pieces (a 5's bar, a detached tail) join the nearest digit when close,
    and are dropped otherwise (a dot, dirt)."""
    slices = ndimage.find_objects(labels, max_label=n)
    pieces = [
        (s[1].start, s[1].stop, s[0].stop - s[0].start, i + 1)
        for i, s in enumerate(slices)
        if s is not None
    ]
    if not pieces:
        return []
    tall = float(np.max([h for *_, h, _ in pieces]))
    bodies = sorted(p for p in pieces if p[2] >= 0.5 * tall)
    groups: list[list[int]] = []
    bounds: list[list[int]] = []
    heights: list[int] = []
    for c0, c1, h, label in bodies:
        if bounds:
            g0, g1 = bounds[-1]
            overlap = min(c1, g1) - max(c0, g0)
            narrower = min(c1 - c0, g1 - g0)
            # two digit-high strokes side by side are two digits (a slanted 1 leaning over the
            # next digit); a shorter piece over a digit's columns is part of it
            if min(h, heights[-1]) < 0.75 * tall and overlap >= 0.5 * narrower:
                groups[-1].append(label)
                bounds[-1] = [min(c0, g0), max(c1, g1)]
                heights[-1] = max(h, heights[-1])
                continue
        groups.append([label])
        bounds.append([c0, c1])
        heights.append(h)
    for c0, c1, h, label in pieces:
        if h >= 0.5 * tall:
            continue
        gaps = [max(g0 - c1, c0 - g1, 0) for g0, g1 in bounds]
        nearest = int(np.argmin(gaps))
        if gaps[nearest] <= 0.15 * tall and h >= 0.1 * tall:
            groups[nearest].append(label)
    return [np.isin(labels, group) for group in groups]


def split_columns(mask: np.ndarray, pieces: int) -> list[int]:
    """Where to cut a run of `pieces` touching digits: near each even share of the width, the
    column with the least ink (the column profile's valley)."""
    profile = mask.sum(axis=0).astype(np.float64)
    width = mask.shape[1]
    cuts = []
    for i in range(1, pieces):
        centre = round(width * i / pieces)
        reach = max(1, round(width / pieces * 0.35))
        lo, hi = max(centre - reach, 1), min(centre + reach, width - 1)
        cuts.append(lo + int(np.argmin(profile[lo:hi])) if hi > lo else centre)
    return cuts


def split(mask: np.ndarray, tall: float) -> list[np.ndarray]:
    """A group of ink cut into the digits it holds by the column profile alone: at the valleys,
    into as many digits as the width says, or where two digits touch by a thin stroke. A cut
    that would leave a part under half a digit high is not made."""
    cols = np.flatnonzero(mask.any(axis=0))
    c0, c1 = cols[0], cols[-1] + 1
    width = c1 - c0
    count = round(width / (DIGIT_WIDTH * tall)) if width >= 1.5 * DIGIT_WIDTH * tall else 1
    if count < 2:
        valley = thin_join(mask[:, c0:c1], tall)
        return [mask] if valley is None else cut(mask, [c0, c0 + valley, c1], tall)
    return cut(mask, [c0, *(c0 + c for c in split_columns(mask[:, c0:c1], count)), c1], tall)


def shape_prior(mask: np.ndarray) -> float:
    """How plausible the ink's width is for one digit of its height: 1 up to WIDE, then falling
    fast (a "digit" 1.5 times as wide as high is nearly always two)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    aspect = (cols[-1] - cols[0] + 1) / (rows[-1] - rows[0] + 1)
    return float(min(1.0, np.exp(-(aspect - WIDE) / 0.15)))


def readings(mask: np.ndarray, tall: float) -> list[list[np.ndarray]]:
    """Every plausible way to cut a group of ink into digits, for a judge to choose from: whole;
    in two at each deep valley of the column profile, with straight and slanted cuts (a slanted
    1 leaning on the next digit is parted along the slant); in 2..4 even shares at valleys."""
    cols = np.flatnonzero(mask.any(axis=0))
    c0, c1 = cols[0], cols[-1] + 1
    width = c1 - c0
    options = [[mask]]
    if width < 0.6 * tall:
        return options
    rows, columns = np.nonzero(mask)
    middle = rows.mean()
    for slant in SLANTS:
        x = columns - slant * (rows - middle)  # columns along the slant
        lo = x.min()
        profile = np.bincount(np.rint(x - lo).astype(np.intp)).astype(np.float64)
        profile = ndimage.uniform_filter1d(profile, 3)
        span = len(profile)
        shallow = THIN_CUT * np.median(profile[profile > 0])  # a cut through a loop is not
        valleys = [
            c
            for c in range(max(1, round(0.15 * span)), min(span - 1, round(0.85 * span)))
            if profile[c] <= profile[c - 1]
            and profile[c] <= profile[c + 1]
            and profile[c] <= shallow
        ]
        for c in sorted(valleys, key=lambda c: profile[c])[:VALLEYS]:  # the deepest valleys
            parts = cut(mask, [-np.inf, lo + c, np.inf], tall, slant, middle)
            if len(parts) == 2:
                options.append(parts)
    most = min(4, max(2, round(width / (0.45 * tall))))
    for count in range(2, most + 1):
        edges = [c0, *(c0 + c for c in split_columns(mask[:, c0:c1], count)), c1]
        parts = cut(mask, edges, tall)
        if len(parts) == count:
            options.append(parts)
    return options


def thin_join(mask: np.ndarray, tall: float) -> int | None:
    """The column where two digits written close together touch (a 1 leaning on a 9): a valley
    in the column profile with little ink and a digit-high part on each side, or None."""
    profile = mask.sum(axis=0)
    width = mask.shape[1]
    edge = max(1, round(0.12 * tall))
    if width < 2 * edge + 1 or width < 0.6 * tall:
        return None
    inner = profile[edge : width - edge]
    at = edge + int(np.argmin(inner))
    if profile[at] > THIN * np.median(profile[profile > 0]):
        return None
    for part in (mask[:, :at], mask[:, at:]):
        rows = np.flatnonzero(part.any(axis=1))
        if rows.size == 0 or rows[-1] - rows[0] + 1 < 0.75 * tall:
            return None
    return at


def cut(
    mask: np.ndarray, edges: list, tall: float = 0.0, slant: float = 0.0, middle: float = 0.0
) -> list[np.ndarray]:
    """The mask cut at the given columns (along lines leaning by `slant` columns per row about
    row `middle`); unchanged when a part would be under 0.4 of a digit high."""
    r, c = np.indices(mask.shape, sparse=True)
    x = c - slant * (r - middle)
    parts = []
    for left, right in itertools.pairwise(edges):
        part = mask & (x >= left) & (x < right)
        if len(edges) > 2:  # slivers of the neighbour that the straight cut took along go
            labels, n = ndimage.label(part)
            if n > 1:
                sizes = np.bincount(labels.ravel())
                sizes[0] = 0
                part = np.isin(labels, np.flatnonzero(sizes >= 0.15 * sizes.max()))
        rows = np.flatnonzero(part.any(axis=1))
        if rows.size == 0 or rows[-1] - rows[0] + 1 < 0.4 * tall:
            return [mask]
        parts.append(part)
    return parts


def segment(
    source, name: str = "", deskew_digit: bool = False, judge: Judge | None = None
) -> list[Found]:
    """The digits of an image of several digits written in a row, left to right, each prepared
    as MNIST style, with its box in the image's pixels. An empty list when there is no ink.

    Steps: the row's ink, level and without a form's lines (`row.row_ink`); connected
    components grouped into digits (`groups_of`); groups cut where the column profile has a
    valley (`split`). With `judge` (prepared digits (N, 28, 28) -> the classifier's trust in
    each, 0..1, shape (N,)), segmentation is recognition-based (Casey & Lecolinet, 1996):
    overlapping neighbours are joined when they read better as one digit (`join_broken`), and
    every plausible cut of a group (`readings`) is read; the reading with the highest product
    of trust, times `shape_prior` per digit and `EXTRA_DIGIT` per extra digit, wins. Each digit
    is then cropped, fitted and centred like `prepare`."""
    row = row_ink(source, name)
    if row is None:
        return []
    ink, labels, n, cells, back = row.ink, row.labels, row.count, row.cells, row.back
    labels, marks = separators(labels, n, back)
    groups = in_cells(labels, cells) if cells else groups_of(labels, n)
    heights = [np.ptp(np.flatnonzero(m.any(axis=1))) + 1 for m in groups]
    tall = float(np.median(heights)) if heights else 0.0
    pad = max(1, round(0.05 * tall))
    if judge is not None and not cells:
        groups = join_broken(groups, ink, pad, judge)
    digits = []
    for whole in groups:
        rows, cols = np.flatnonzero(whole.any(axis=1)), np.flatnonzero(whole.any(axis=0))
        r0, c0 = max(rows[0] - pad, 0), max(cols[0] - pad, 0)
        window = np.s_[r0 : rows[-1] + pad + 1, c0 : cols[-1] + pad + 1]
        mask, region = whole[window], ink[window]  # the group and the ink around it
        if cells:  # one digit per box
            parts = [mask]
            prepared = [to_mnist(crop_digit(region, mask, pad))]
        elif judge is None:
            parts = split(mask, tall)
            prepared = [to_mnist(crop_digit(region, part, pad)) for part in parts]
        else:  # recognition-based: the cut whose parts the classifier trusts most
            options = readings(mask, tall)
            flat = [part for option in options for part in option]
            every = [to_mnist(crop_digit(region, part, pad)) for part in flat]
            trust = judge(np.stack(every)) * np.array([shape_prior(p) for p in flat])
            ends = np.cumsum([len(option) for option in options])
            scores = [
                np.prod(trust[e - len(o) : e]) * EXTRA_DIGIT ** (len(o) - 1)
                for o, e in zip(options, ends, strict=True)
            ]
            best = int(np.argmax(scores))
            parts, prepared = options[best], every[ends[best] - len(options[best]) : ends[best]]
        for part, digit in zip(parts, prepared, strict=True):
            rows, cols = np.flatnonzero(part.any(axis=1)), np.flatnonzero(part.any(axis=0))
            box = back(c0 + cols[0], r0 + rows[0], c0 + cols[-1] + 1, r0 + rows[-1] + 1)
            slash = forms.slash_like(part, tall)
            digits.append(Found(deskew(digit) if deskew_digit else digit, box, "", slash))
    return sorted(digits + marks, key=lambda f: f.box[0])


def separators(labels: np.ndarray, n: int, back) -> tuple[np.ndarray, list[Found]]:
    """(labels without the pieces that are separators, those separators as Found)."""
    slices = ndimage.find_objects(labels, max_label=n)
    boxes = {
        i + 1: (s[0].start, s[0].stop, s[1].start, s[1].stop)
        for i, s in enumerate(slices)
        if s is not None
    }
    if len(boxes) < 2:
        return labels, []
    tall = max(b[1] - b[0] for b in boxes.values())
    bodies = [b for b in boxes.values() if b[1] - b[0] >= 0.5 * tall]
    row = forms.row_of(bodies)
    marks, dropped = [], []
    for label, (r0, r1, c0, c1) in boxes.items():
        piece = labels[r0:r1, c0:c1] == label
        beside = [b for b in bodies if min(b[3], c1) - max(b[2], c0) > 0.6 * (c1 - c0)]
        if beside and r1 - r0 < 0.5 * tall:  # under or over a digit: part of it
            continue
        char = forms.separator(piece, (r0, r1, c0, c1), row)
        if char:
            marks.append(Found(None, back(c0, r0, c1, r1), char))
            dropped.append(label)
    if dropped:
        labels = np.where(np.isin(labels, dropped), 0, labels)
    return labels, marks


def in_cells(labels: np.ndarray, cells: list[tuple[int, int]]) -> list[np.ndarray]:
    """A form's boxes read one by one: the ink between each pair of sides (empty boxes skipped)."""
    mask = labels > 0
    groups = []
    for left, right in cells:
        inside = np.zeros_like(mask)
        inside[:, left:right] = mask[:, left:right]
        rows = np.flatnonzero(inside.any(axis=1))
        if rows.size and inside.sum() >= 0.02 * (right - left) * (rows[-1] - rows[0] + 1):
            groups.append(inside)
    return groups


def join_broken(groups: list[np.ndarray], ink: np.ndarray, pad: int, judge: Judge):
    """Neighbouring groups whose columns overlap, joined when the judge trusts them more as one
    digit than as two (a 0 or 9 whose loop broke into two digit-high strokes)."""
    if len(groups) < 2:
        return groups

    def span(mask):
        cols = np.flatnonzero(mask.any(axis=0))
        return cols[0], cols[-1] + 1

    joined = [groups[0]]
    for group in groups[1:]:
        (a0, a1), (b0, b1) = span(joined[-1]), span(group)
        if min(a1, b1) - max(a0, b0) > 0:
            both = joined[-1] | group
            masks = [joined[-1], group, both]
            trust = judge(np.stack([to_mnist(crop_digit(ink, m, pad)) for m in masks]))
            trust = trust * np.array([shape_prior(m) for m in masks])
            if trust[2] > trust[0] * trust[1] * EXTRA_DIGIT:
                joined[-1] = both
                continue
        joined.append(group)
    return joined
