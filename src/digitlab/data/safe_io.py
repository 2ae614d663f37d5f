"""Opening files that may be hostile or broken, and saying what went wrong when writing one.

Only regular files are opened: a FIFO would block a reader forever, and /dev/zero never ends.
Reads stop at a size limit (digitlab.data.limits), gzip is inflated a chunk at a time up to a
limit, and an OS error names the file the user gave, never a temporary file beside it.

    >>> with open_regular(path, "an IDX file") as f:
    ...     header = f.read(4)
    >>> raw = read_limited(path, "a CSV file", "MAX_CSV_BYTES")
    >>> payload = gunzip_limited(raw, "mnist.pkl.gz", "MAX_PICKLE_BYTES")
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import stat
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from digitlab.data import limits
from digitlab.data.limits import short, size_text
from digitlab.errors import DataError

CHUNK = 2**20  # bytes per read: a gzip stream never inflates more than this at once
NOT_REGULAR = (  # what a path can be instead of a regular file, in the words a user knows
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _check_regular(path: Path, mode: int, what: str) -> None:
    if stat.S_ISDIR(mode):
        raise DataError(f"{path}: is a directory, expected {what}")
    for test, kind in NOT_REGULAR:
        if test(mode):
            raise DataError(f"{path}: is {kind}, not a regular file")
    if not stat.S_ISREG(mode):
        raise DataError(f"{path}: is not a regular file")


def _too_big(path: Path, size: int, what: str, limit_name: str) -> DataError:
    limit = getattr(limits, limit_name)
    return DataError(
        f"{path}: {size_text(size)} is over the {size_text(limit)} limit for {what} "
        f"(digitlab.data.limits.{limit_name})"
    )


@contextlib.contextmanager
def open_regular(
    path: str | os.PathLike[str], what: str, limit_name: str | None = None
) -> Iterator[BinaryIO]:
    """Open `path` for reading if it is a regular file (of at most limits.`limit_name` bytes)."""
    path = Path(path)
    try:
        mode, size = (s := os.stat(path)).st_mode, s.st_size
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    _check_regular(path, mode, what)  # before opening: opening a FIFO waits for a writer
    if limit_name is not None and size > getattr(limits, limit_name):
        raise _too_big(path, size, what, limit_name)
    try:  # O_NONBLOCK: should the path become a FIFO after the check, open still returns
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    with os.fdopen(fd, "rb") as f:
        _check_regular(path, os.fstat(fd).st_mode, what)  # the file opened is the one checked
        try:
            yield f
        except OSError as e:
            raise DataError(f"{path}: cannot read ({e.strerror or short(str(e))})") from None


def read_limited(path: str | os.PathLike[str], what: str, limit_name: str) -> bytes:
    """All bytes of regular file `path`, refused past limits.`limit_name` bytes."""
    with open_regular(path, what, limit_name) as f:
        raw = f.read(getattr(limits, limit_name) + 1)
    if len(raw) > getattr(limits, limit_name):  # it grew after the size check
        raise _too_big(Path(path), len(raw), what, limit_name)
    return raw


def gunzip_limited(raw: bytes, name: str, limit_name: str) -> bytes:
    """Gunzip `raw`, stopping (DataError) once the output would pass limits.`limit_name` bytes."""
    limit = getattr(limits, limit_name)
    out = bytearray()
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as stream:
            while len(out) <= limit and (chunk := stream.read(CHUNK)):
                out += chunk
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{name}: gzip data is corrupt or truncated ({short(str(e))})") from None
    if len(out) > limit:
        raise DataError(
            f"{name}: more than {size_text(limit)} after gunzip (digitlab.data.limits.{limit_name})"
        )
    return bytes(out)


def read_into(f: BinaryIO, buffer: np.ndarray) -> int:
    """Fill uint8 `buffer` from `f` a chunk at a time; the bytes read (fewer at end of file)."""
    view = memoryview(buffer).cast("B")
    got = 0
    while got < len(view):
        n = f.readinto(view[got : got + CHUNK])
        if not n:
            break
        got += n
    return got


def bytes_after(f: BinaryIO) -> int:
    """How many bytes follow in `f`, counting no further than limits.TRAILING_MARGIN + 1."""
    return len(f.read(limits.TRAILING_MARGIN + 1))


def trailing_text(extra: int) -> str:
    """'3 unexpected bytes' or 'more than 64 KiB of unexpected bytes' (for bytes_after)."""
    if extra > limits.TRAILING_MARGIN:
        return f"more than {size_text(limits.TRAILING_MARGIN)} of unexpected bytes"
    return f"{extra} unexpected bytes"


def write_error(e: OSError, target: str | os.PathLike[str], action: str = "write") -> str:
    """'PATH: problem' for an OSError met writing `target`, naming the real obstacle.

    A file where a folder must be, a folder where a file must be, a broken link, or else the
    OS's reason, always for `target` or its parent (the OS names the temporary file)."""
    target = Path(target)
    for parent in reversed(target.parents):  # from the root down: the first file in the way
        if parent.exists() and not parent.is_dir():
            return f"{parent}: is a file, not a folder"
    if target.is_dir() and action == "write":
        return f"{target}: is a folder, not a file"
    if target.is_symlink() and not target.exists():
        return f"{target}: is a broken symbolic link"
    return f"{target}: cannot {action} ({e.strerror or short(str(e))})"
