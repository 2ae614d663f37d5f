"""Real images to MNIST-style digits: one digit (`prepare`) or a row of them (`segment`).

>>> digit, steps = ink.prepare("photo_of_a_7.jpg")      # uint8 (28, 28), the named steps
>>> found = ink.segment("postcode.jpg")                  # [Found(digit, box), ...]
"""

from digitlab.ink.prepare import MAX_PIXELS, ImageError, load, load_sized, prepare, shrink
from digitlab.ink.segment import Found, Judge, segment

__all__ = [
    "MAX_PIXELS",
    "Found",
    "ImageError",
    "Judge",
    "load",
    "load_sized",
    "prepare",
    "segment",
    "shrink",
]
