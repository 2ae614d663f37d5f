"""Real-looking photos of MNIST test digits, for testing `ink.prepare`, `ink.segment` and predict.

`photo`: one digit becomes dark ink on light paper, scaled to 200-800 px, placed off-centre on
a larger page, lit unevenly, half of them tilted a little (a hand-held photo), with sensor noise
and JPEG compression. `strip`: 3-6 digits written in a row (one pair in ten touching),
photographed the same way (`digitlab.ink.paper`, which the reading benchmark uses too).
"""

from __future__ import annotations

import numpy as np

from digitlab.ink.paper import photograph, side_by_side, written_row

__all__ = ["photo", "photograph", "side_by_side", "strip", "written_row"]


def photo(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    side = int(rng.integers(200, 801))
    return photograph(255 - digit, (side, side), rng)


def strip(digits: list[np.ndarray], rng: np.random.Generator) -> bytes:
    """A photo of a number: the digits written in a row, each 150-400 px high."""
    row = written_row(digits, rng)
    height = int(rng.integers(150, 401))
    width = round(row.shape[1] * height / 28)
    return photograph(255 - row, (width, height), rng)
