"""Real images to MNIST-style digits: one digit (`prepare`) or a row of them (`segment`).

>>> digit, steps = ink.prepare("photo_of_a_7.jpg")      # uint8 (28, 28), the named steps
>>> found = ink.segment("postcode.jpg")                  # [Found(digit, box), ...]
>>> row = ink.row_ink("amount.jpg"); ink.strip(row.ink, row.mask)   # a line reader's input
"""

from digitlab.ink.place import crop_digit, to_mnist
from digitlab.ink.prepare import (
    CROPPED,
    MAX_PIXELS,
    ImageError,
    load,
    load_sized,
    prepare,
    shrink,
)
from digitlab.ink.row import RowInk, narrow_gaps, row_ink, strip
from digitlab.ink.segment import Found, Judge, segment

__all__ = [
    "CROPPED",
    "MAX_PIXELS",
    "Found",
    "ImageError",
    "Judge",
    "RowInk",
    "crop_digit",
    "load",
    "load_sized",
    "narrow_gaps",
    "prepare",
    "row_ink",
    "segment",
    "shrink",
    "strip",
    "to_mnist",
]
