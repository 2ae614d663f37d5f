"""Every limit on what digitlab reads from a file, in one place: the value, why, how to change it.

A file can claim anything: an IDX or .npy header can declare 10**13 values, a 4 MB gzip can
inflate to 4 GB, a "CSV" can be /dev/zero. Readers check what a header declares against these
limits before allocating anything, and never read past what was declared.

To change a limit, assign it before loading (readers look it up at each call), or edit it here:

    >>> from digitlab.data import limits
    >>> limits.MAX_ARRAY_BYTES = 8 * 2**30      # a machine with room for 8 GiB arrays
"""

from __future__ import annotations

import math

import numpy as np

from digitlab.errors import DataError

KiB, MiB, GiB = 2**10, 2**20, 2**30

# The largest array one file may declare (an IDX file, each array of an NPZ) and the largest
# image array an image folder may build. MNIST's training images take 47 MB; 2 GiB holds 2.7
# million 28x28 uint8 images (45x MNIST, 4x EMNIST ByClass). digitlab holds a dataset in memory
# and an import makes a copy or two, so this is about what a workstation can take.
MAX_ARRAY_BYTES = 2 * GiB

# A Kaggle-style CSV, read whole as text: Kaggle's train.csv (42,000 images) is 73 MB, and
# parsing text takes several times its size in memory. Bigger sets belong in NPZ or IDX files.
MAX_CSV_BYTES = 1 * GiB

# One file of an image folder: a phone photo is 2-10 MB, an MNIST-sized PNG under 1 KB.
MAX_IMAGE_BYTES = 64 * MiB

# Its pixels, read from its header before it is decoded: a 50-megapixel photo. (Pillow's own
# check refuses only past 179 million pixels, after a warning from 89 million.)
MAX_IMAGE_PIXELS = 50_000_000

# The classic mnist.pkl.gz after gunzip: 220 MB of float32 arrays.
MAX_PICKLE_BYTES = 1 * GiB

# The cache's record of where it came from (source.json): a few hundred bytes.
MAX_RECORD_BYTES = 1 * MiB

# After the data a header declares, how much more is read to tell "the file ends here" from
# "trailing bytes" (refused): never more than this, however much a gzip stream would inflate to.
TRAILING_MARGIN = 64 * KiB

# Dimensions of an array: MNIST uses 1 (labels) and 3 (images); NumPy 1 allows at most 32.
MAX_DIMS = 32

# Classes of a dataset: labels are stored as uint8, one byte.
MAX_CLASSES = 256


def size_text(n: int) -> str:
    """Bytes as a person reads them: '512 bytes', '64 KiB', '1.0 GiB', '9.1 TiB', '2.0e20 bytes'."""
    if n < KiB:
        return f"{n} bytes"
    if n >= 1024 * 2**40:  # past 1024 TiB, only the order of magnitude means anything
        digits = str(n)
        return f"{digits[0]}.{digits[1]}e{len(digits) - 1} bytes"
    for unit, scale in (("TiB", 2**40), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= scale:
            return f"{n // scale} {unit}" if n % scale == 0 else f"{n / scale:.1f} {unit}"
    raise AssertionError("unreachable")


def short(text: str, limit: int = 60) -> str:
    """`text` cut to `limit` characters (an ellipsis marks the cut): error lines stay short."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def echo(value: str, limit: int = 40) -> str:
    """A piece of a file's content, quoted and cut, for an error message: 'xxxx…'."""
    return repr(short(value, limit))


def check_declared(shape: tuple[int, ...], dtype: np.dtype, where: str) -> int:
    """The bytes an array of `shape` and `dtype` takes; DataError if a header declared too many."""
    if len(shape) > MAX_DIMS:
        raise DataError(
            f"{where} declares {len(shape)} dimensions, at most {MAX_DIMS} are supported"
        )
    nbytes = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
    # A side of 0 makes the array empty, but NumPy still refuses sides whose product overflows.
    span = math.prod(max(side, 1) for side in shape) * dtype.itemsize
    if span > MAX_ARRAY_BYTES:
        size = f"{size_text(nbytes)}, over" if nbytes else "empty, but its other sides are over"
        raise DataError(
            f"{where} declares shape {short(str(shape))} {dtype.newbyteorder('=').name}, "
            f"{size} the {size_text(MAX_ARRAY_BYTES)} limit (digitlab.data.limits.MAX_ARRAY_BYTES)"
        )
    return nbytes
