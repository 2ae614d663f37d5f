"""Read and write IDX files, the format MNIST ships in, raw or gzipped.

An IDX file is a 4-byte magic number (two zero bytes, a dtype code, the number of
dimensions), one big-endian uint32 per dimension, then the values, big-endian.
The reader is strict: anything that is not exactly that raises `DataError` with the
file name and the reason, never a NumPy traceback. It trusts nothing the header says:
the declared size is checked against `limits.MAX_ARRAY_BYTES` before anything is
allocated, and a gzip stream is inflated only up to that size (plus a small margin to
see whether the file ends there), so a 4 MB file cannot make it read 4 GB.

    >>> images = read_idx("train-images-idx3-ubyte.gz")   # uint8 (60000, 28, 28)
    >>> write_idx("copy.idx.gz", images)
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from digitlab.atomic import write_bytes
from digitlab.data import limits
from digitlab.data.limits import check_declared, short
from digitlab.data.safe_io import (
    bytes_after,
    open_regular,
    read_into,
    trailing_text,
    write_error,
)
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
    return read_idx_stream(io.BytesIO(raw), name)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (raw or .gz) from disk: a regular file, no more than its header declares."""
    with open_regular(path, "an IDX file") as f:
        return read_idx_stream(f, str(path))


def read_idx_stream(f: BinaryIO, name: str) -> np.ndarray:
    """Read one IDX file from the start of seekable binary stream `f` (gzip or not)."""
    magic = f.read(2)
    if not magic:
        raise DataError(f"{name}: file is empty")
    f.seek(0)
    if magic != GZIP_MAGIC:
        return _read_values(f, name, after="")
    try:
        with gzip.GzipFile(fileobj=f) as inflated:  # read() inflates only what it is asked for
            return _read_values(inflated, name, after=" (after gunzip)")
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{name}: gzip data is corrupt or truncated ({short(str(e))})") from None


def _read_header(f: BinaryIO, name: str, after: str) -> tuple[np.dtype, tuple[int, ...]]:
    head = f.read(4)
    if not head:
        raise DataError(f"{name}: file is empty{after}")
    if len(head) < 4:
        raise DataError(f"{name}: file is truncated ({len(head)} bytes, shorter than the header)")
    zero, code, ndim = head[0:2], head[2], head[3]
    magic = head.hex()
    if zero != b"\x00\x00":
        raise DataError(f"{name}: not an IDX file (magic number 0x{magic})")
    if code not in DTYPES:
        raise DataError(
            f"{name}: unknown IDX dtype code 0x{code:02x} (magic 0x{magic}); "
            f"expected one of {', '.join(f'0x{c:02x}' for c in DTYPES)}"
        )
    if ndim == 0:
        raise DataError(f"{name}: IDX header declares 0 dimensions (magic 0x{magic})")
    dims = f.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise DataError(
            f"{name}: file is truncated ({4 + 4 * ndim} header bytes expected, "
            f"{4 + len(dims)} found)"
        )
    return DTYPES[code], tuple(int(d) for d in np.frombuffer(dims, ">u4"))


def _read_values(f: BinaryIO, name: str, after: str) -> np.ndarray:
    dtype, shape = _read_header(f, name, after)
    header = 4 + 4 * len(shape)
    nbytes = check_declared(shape, dtype, f"{name}: IDX header")  # before allocating
    values = np.empty(nbytes, np.uint8)
    got = read_into(f, values)
    expected = header + nbytes
    if got < nbytes:
        raise DataError(
            f"{name}: file is truncated ({expected} bytes expected for shape "
            f"{short(str(shape))}, {header + got} found)"
        )
    extra = bytes_after(f)
    if extra:
        total = (
            f"file has {expected + extra}" if extra <= limits.TRAILING_MARGIN else "read no further"
        )
        raise DataError(
            f"{name}: {trailing_text(extra)} after the data "
            f"(shape {short(str(shape))} needs {expected} bytes, {total})"
        )
    array = values.view(dtype).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)  # native order, writable


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
    try:
        write_bytes(path, payload)
    except OSError as e:
        raise DataError(write_error(e, path)) from None
