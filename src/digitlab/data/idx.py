"""Read and write IDX files, the format MNIST ships in, raw or gzipped.

An IDX file is a 4-byte magic number (two zero bytes, a dtype code, the number of
dimensions), one big-endian uint32 per dimension, then the values, big-endian.
The reader is strict: anything that is not exactly that raises `DataError` with the
file name and the reason, never a NumPy traceback.

    >>> images = read_idx("train-images-idx3-ubyte.gz")   # uint8 (60000, 28, 28)
    >>> write_idx("copy.idx.gz", images)
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

from digitlab.atomic import write_bytes
from digitlab.errors import DataError

# IDX dtype code -> big-endian NumPy dtype.
DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
CODES: dict[str, int] = {dt.str[1:]: code for code, dt in DTYPES.items()}  # "u1" -> 0x08
GZIP_MAGIC = b"\x1f\x8b"


def decode_idx(raw: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode the bytes of an IDX file (gzip detected by its magic) into a native-order array."""
    if len(raw) == 0:
        raise DataError(f"{name}: file is empty")
    if raw[:2] == GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{name}: gzip data is corrupt or truncated ({e})") from None
        if len(raw) == 0:
            raise DataError(f"{name}: file is empty (after gunzip)")
    if len(raw) < 4:
        raise DataError(f"{name}: file is truncated ({len(raw)} bytes, shorter than the header)")
    zero, code, ndim = raw[0:2], raw[2], raw[3]
    if zero != b"\x00\x00" or code not in DTYPES or ndim == 0:
        magic = raw[:4].hex()
        if zero != b"\x00\x00":
            raise DataError(f"{name}: not an IDX file (magic number 0x{magic})")
        if code not in DTYPES:
            raise DataError(
                f"{name}: unknown IDX dtype code 0x{code:02x} (magic 0x{magic}); "
                f"expected one of {', '.join(f'0x{c:02x}' for c in DTYPES)}"
            )
        raise DataError(f"{name}: IDX header declares 0 dimensions (magic 0x{magic})")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(
            f"{name}: file is truncated ({header} header bytes expected, {len(raw)} found)"
        )
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = DTYPES[code]
    expected = header + math.prod(shape) * dtype.itemsize  # Python ints: no overflow
    if len(raw) < expected:
        raise DataError(
            f"{name}: file is truncated ({expected} bytes expected for shape {shape}, "
            f"{len(raw)} found)"
        )
    if len(raw) > expected:
        raise DataError(
            f"{name}: {len(raw) - expected} unexpected bytes after the data "
            f"(shape {shape} needs {expected} bytes, file has {len(raw)})"
        )
    values = np.frombuffer(raw, dtype, offset=header).reshape(shape)
    return values.astype(dtype.newbyteorder("="))  # a native-order, writable copy


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (raw or .gz) from disk."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected an IDX file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    return decode_idx(raw, str(path))


def encode_idx(array: np.ndarray) -> bytes:
    """The bytes of an uncompressed IDX file holding `array`."""
    array = np.asarray(array)
    key = array.dtype.str[1:]
    if key not in CODES:
        raise DataError(
            f"cannot store dtype {array.dtype} in IDX; "
            "use uint8, int8, int16, int32, float32 or float64"
        )
    if array.ndim == 0 or array.ndim > 255:
        raise DataError(f"cannot store a {array.ndim}-dimensional array in IDX")
    if any(d >= 2**32 for d in array.shape):
        raise DataError(f"IDX dimensions must be below 2**32, got shape {array.shape}")
    header = bytes([0, 0, CODES[key], array.ndim]) + np.array(array.shape, ">u4").tobytes()
    return header + np.ascontiguousarray(array, dtype=array.dtype.newbyteorder(">")).tobytes()


def write_idx(
    path: str | os.PathLike[str], array: np.ndarray, compress: bool | None = None
) -> None:
    """Write `array` as IDX, atomically; gzipped when `compress` or the name ends in .gz."""
    path = Path(path)
    if compress is None:
        compress = path.suffix == ".gz"
    payload = encode_idx(array)
    if compress:
        payload = gzip.compress(payload, compresslevel=6, mtime=0)
    write_bytes(path, payload)
