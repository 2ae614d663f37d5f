"""The classic mnist.pkl.gz: ((train x, y), (valid x, y), (test x, y)), x = byte value / 256.

Unpickling can run code, so only what NumPy needs to rebuild a plain array is admitted; any
other class is refused before it is called.

    >>> payload = gunzip_limited(raw, "mnist.pkl.gz", "MAX_PICKLE_BYTES")   # safe_io: bounded
    >>> arrays = decode_mnist_pickle(payload, "mnist.pkl.gz")   # train 60000, test 10000
"""

from __future__ import annotations

import io
import pickle

import numpy as np

from digitlab.data.contract import Arrays
from digitlab.data.limits import short
from digitlab.errors import DataError


class _ArrayUnpickler(pickle.Unpickler):
    """Admits only what NumPy needs to rebuild a plain array; anything else is refused."""

    def find_class(self, module: str, name: str):
        import codecs

        from numpy._core.multiarray import _reconstruct

        allowed = {
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
            ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
            ("_codecs", "encode"): codecs.encode,  # Python 3 writes bytes this way (str -> bytes)
        }
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return allowed[(module, name)]


def decode_mnist_pickle(payload: bytes, name: str) -> Arrays:
    """Decode the classic mnist.pkl.gz: ((train x, y), (valid x, y), (test x, y)), x = value/256."""
    try:
        parts = _ArrayUnpickler(io.BytesIO(payload), encoding="latin1").load()
        (x1, y1), (x2, y2), (x3, y3) = parts
    except Exception as e:  # a pickle can fail in many ways; none may escape raw
        reason = short(f"{type(e).__name__}: {e}", 120)
        raise DataError(f"{name}: not the expected MNIST pickle ({reason})") from None
    train = [_pickle_part(x1, y1, name, "first"), _pickle_part(x2, y2, name, "second")]
    test_images, test_labels = _pickle_part(x3, y3, name, "third")
    return {
        "train_images": np.concatenate([train[0][0], train[1][0]]),
        "train_labels": np.concatenate([train[0][1], train[1][1]]),
        "test_images": test_images,
        "test_labels": test_labels,
    }


def _pickle_part(x, y, name: str, part: str) -> tuple[np.ndarray, np.ndarray]:
    """One (images, labels) pair of the pickle: (N, 784) values/256 and N integer labels."""
    if not isinstance(x, np.ndarray) or x.ndim != 2 or x.shape[1] != 784 or not len(x):
        raise DataError(f"{name}: the {part} images are not a non-empty (N, 784) array")
    if not isinstance(y, np.ndarray) or y.shape != (len(x),) or y.dtype.kind not in "iu":
        raise DataError(f"{name}: the {part} labels are not {len(x)} integers")
    scaled = np.asarray(x, np.float64) * 256
    pixels = np.rint(scaled)
    if pixels.min() < 0 or pixels.max() > 255 or not np.array_equal(pixels, scaled):
        raise DataError(f"{name}: the {part} pixel values are not value/256 for bytes 0..255")
    if y.min() < 0 or y.max() > 255:
        raise DataError(f"{name}: the {part} labels are outside 0..255")
    return pixels.astype(np.uint8).reshape(-1, 28, 28), y.astype(np.uint8)
