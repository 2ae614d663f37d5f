"""Atomic file writes: write a temporary file beside the target, then rename.

A reader never sees a half-written file, and a crash leaves the old file intact.

    >>> with atomic_write("cache/labels.idx") as f:
    ...     f.write(payload)
    >>> write_json("runs/cnn/metrics.json", metrics)     # NumPy values and NaN made JSON-safe
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np

_UMASK = os.umask(0)  # read once at import (os.umask can only be read by setting it)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file next to `path`; on success fsync and rename it over `path`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:  # a folder that cannot hold it: name the file asked for
        raise OSError(e.errno, e.strerror, str(path)) from None
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; a normal file follows the umask
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:  # name the file the user asked for, not our temporary one
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise OSError(e.errno, e.strerror, str(path)) from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def leftovers(folder: str | os.PathLike[str], name: str = "*") -> list[Path]:
    """Temporary files `atomic_write` left in `folder` when its process was killed mid-write
    (for target `name`, or any): `.NAME.XXXX.tmp`. Remove them only while holding the lock
    every writer of that folder holds, so none of them is in use."""
    return [p for p in Path(folder).glob(f".{name}.*.tmp") if p.is_file() or p.is_symlink()]


def remove_leftovers(folder: str | os.PathLike[str], name: str, before: float) -> list[Path]:
    """Delete `leftovers(folder, name)` last changed before `before` (a time.time()): old
    enough that no writer still running owns them. Returns what was removed."""
    removed = []
    for path in leftovers(folder, name):
        with contextlib.suppress(FileNotFoundError):
            if path.lstat().st_mtime < before:
                path.unlink()
                removed.append(path)
    return removed


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Atomically replace `path` with `data`."""
    with atomic_write(path) as f:
        f.write(data)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Atomically replace `path` with `text` (UTF-8)."""
    write_bytes(path, text.encode("utf-8"))


def json_safe(value):
    """JSON-ready: NumPy arrays and scalars as Python values, NaN and infinities as null."""
    if isinstance(value, np.ndarray | np.generic):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def write_json(path: str | os.PathLike[str], value) -> None:
    """Atomically replace `path` with `value` as indented JSON (made safe by `json_safe`)."""
    write_text(path, json.dumps(json_safe(value), indent=2) + "\n")
