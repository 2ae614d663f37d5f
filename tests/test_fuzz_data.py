"""Fuzzing the data readers: whatever a file holds, reading it returns arrays in the documented
form or raises one short `DataError`; never another exception, never a hang, never a write
outside the test's folder.

Two Hypothesis profiles: "fast" (the default, for `make test`: well under 20 s in all) and
"slow" (`HYPOTHESIS_PROFILE=slow`, 2000 examples per test, for `make test-slow`).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import math
import os
import struct
import sys
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digitlab.data import load_files
from digitlab.data.files import read_csv
from digitlab.data.idx import DTYPES, decode_idx, read_idx
from digitlab.data.npz import NPY_MAGIC, NPZ_LAYOUTS, read_npz
from digitlab.errors import DataError

checks = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]
settings.register_profile("fast", max_examples=60, deadline=None, suppress_health_check=checks)
settings.register_profile("slow", max_examples=2000, deadline=None, suppress_health_check=checks)
SLOW = os.environ.get("HYPOTHESIS_PROFILE") == "slow"
FUZZ = settings.get_profile("slow" if SLOW else "fast")
pytestmark = pytest.mark.timeout(1800 if SLOW else 60)  # a hang fails the test, with its stack

# ---- the properties ---------------------------------------------------------------------------

WRITE_EVENTS = {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.truncate", "shutil.rmtree"}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
guard: dict = {"root": None, "writes": []}


def audit(event: str, args: tuple) -> None:
    """Record every write the code under test makes outside guard["root"] (while armed)."""
    root = guard["root"]
    if root is None:
        return
    if event == "open":
        path, mode, flags = args
        if not (set(mode or "") & set("wax+") or (flags or 0) & WRITE_FLAGS):
            return
        paths = [path]
    elif event in WRITE_EVENTS:
        paths = [a for a in args if isinstance(a, str | bytes | os.PathLike)]
    else:
        return
    for path in paths:
        if isinstance(path, str | os.PathLike):
            full = os.path.abspath(os.fspath(path))
            if not full.startswith(root + os.sep):
                guard["writes"].append((event, full))


sys.addaudithook(audit)  # permanent for the process, inert unless a test arms it


@contextlib.contextmanager
def confined_to(folder) -> None:
    guard["root"], guard["writes"] = os.path.abspath(folder), []
    try:
        yield
    finally:
        guard["root"] = None
    assert not guard["writes"], guard["writes"]


def outcome(call):
    """The value `call` returns, or None when it raised a DataError of one short line."""
    try:
        return call()
    except DataError as e:
        text = str(e)
        assert "\n" not in text and len(text) < 300, text
        return None


def assert_split(images, labels) -> None:
    assert images.dtype == np.uint8 and images.ndim == 3 and images.shape[1:] == (28, 28)
    assert labels is None or (labels.dtype == np.uint8 and labels.shape == (len(images),))


def assert_dataset(ds) -> None:
    for split in (ds.train, ds.test):
        assert_split(split.images, split.labels)
        if split.labels is not None and len(split.labels):
            assert int(split.labels.max()) < len(ds.classes)


# ---- IDX ------------------------------------------------------------------------------------

NATIVE = {dt.newbyteorder("=") for dt in DTYPES.values()}


@st.composite
def idx_files(draw) -> tuple[bytes, tuple[int, ...]]:
    """The bytes of an IDX file, mostly well-formed, and the shape its header declares."""
    magic = draw(st.sampled_from([b"\0\0"] * 6 + [b"\0\1", b"\x1f\x8b", b"PK"]))
    code = draw(st.sampled_from([*DTYPES] * 3 + [0x00, 0x07, 0x0A, 0xFF]))
    ndim = draw(st.one_of(st.integers(0, 4), st.integers(5, 40), st.just(255)))
    side = st.one_of(st.integers(0, 6), st.sampled_from([28, 60000, 2**31, 2**32 - 1]))
    dims = tuple(draw(st.lists(side, min_size=ndim, max_size=ndim)))
    header = magic + bytes([code, ndim]) + b"".join(d.to_bytes(4, "big") for d in dims)
    itemsize = DTYPES[code].itemsize if code in DTYPES else 1
    length = max(0, min(math.prod(dims) * itemsize, 4096) + draw(st.integers(-4, 4)))
    raw = header + draw(st.randoms(use_true_random=False)).randbytes(length)
    if draw(st.booleans()):
        raw = raw[: draw(st.integers(0, len(raw)))]
    if draw(st.booleans()):
        raw = gzip.compress(raw, mtime=0)
        raw = raw[: draw(st.integers(len(raw) // 2, len(raw)))] + draw(st.binary(max_size=4))
    return raw, dims


def assert_idx(array, dims) -> None:
    if array is not None:
        assert array.dtype in NATIVE and array.shape == dims and array.flags.writeable


@FUZZ
@given(file=idx_files())
def test_read_idx_returns_the_declared_array_or_a_short_error(tmp_path, file):
    raw, dims = file
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(raw)
    with confined_to(tmp_path):
        assert_idx(outcome(lambda: read_idx(path)), dims)
        assert_idx(outcome(lambda: decode_idx(raw, "x")), dims)


# ---- CSV ------------------------------------------------------------------------------------

CELLS = st.one_of(
    st.integers(0, 255).map(str),
    st.integers(-(10**30), 10**30).map(str),
    st.sampled_from(["--5", "²", "٣", "+5", " 7 ", "5.0", "1e3", "", "0x1F", "nan", "-0", '"5"']),
    st.text(max_size=6),
)


@st.composite
def csv_files(draw) -> bytes:
    """A Kaggle-style CSV, mostly well-formed, with a few cells, rows or lines damaged."""
    width = 785 if draw(st.booleans()) else 784
    rows = [["0"] * width for _ in range(draw(st.integers(0, 3)))]
    for _ in range(draw(st.integers(0, 4)) if rows else 0):
        row, col = draw(st.integers(0, len(rows) - 1)), draw(st.integers(0, width - 1))
        rows[row][col] = draw(CELLS)
    for row in rows:
        if draw(st.integers(0, 9)) == 0:  # a row a cell short or a cell long
            row[:] = row[:-1] if draw(st.booleans()) else [*row, "0"]
    names = [f"pixel{i}" for i in range(784)]
    header = draw(
        st.sampled_from(
            [None, ",".join(["label", *names]), ",".join(names), "label", draw(st.text(max_size=8))]
        )
    )
    lines = ([header] if header is not None else []) + [",".join(row) for row in rows]
    text = draw(st.sampled_from(["\n", "\r\n", "\r"])).join(lines) + draw(
        st.sampled_from(["", "\n", "\n\n"])
    )
    prefix = draw(st.sampled_from([b"", b"\xef\xbb\xbf", b"\xff\xfe"]))  # none, a BOM, not UTF-8
    return prefix + text.encode("utf-8", "surrogatepass")


@FUZZ
@given(raw=csv_files())
def test_read_csv_returns_images_and_labels_or_a_short_error(tmp_path, raw):
    path = tmp_path / "train.csv"
    path.write_bytes(raw)
    with confined_to(tmp_path):
        result = outcome(lambda: read_csv(path))
        if result is not None:
            assert_split(*result)
        ds = outcome(lambda: load_files(path))
        if ds is not None:
            assert_dataset(ds)


# ---- NPZ ------------------------------------------------------------------------------------

KEYS = sorted({k for layout in NPZ_LAYOUTS for k in layout if k} | {"junk"})
NPZ_DTYPES = ["u1", "i8", "f4", "f8", "?", ">i2", "f2", "U2", "c8", "O"]


@st.composite
def arrays_for_npz(draw) -> np.ndarray:
    n = draw(st.integers(0, 3))
    shape = draw(st.sampled_from([(n, 28, 28), (n, 784), (n,), (n, 10), (n, 1), (), (n, 27, 28)]))
    dtype = np.dtype(draw(st.sampled_from(NPZ_DTYPES)))
    values = draw(st.sampled_from([0, 1, 255, 256, -1, 0.5, np.nan, np.inf, 1e30]))
    if dtype.kind in "UO":
        return np.full(shape, str(values), dtype=dtype)
    with np.errstate(all="ignore"), contextlib.suppress(OverflowError, ValueError):
        return np.full(shape, values).astype(dtype)
    return np.zeros(shape, dtype)


@st.composite
def npy_members(draw) -> bytes:
    """A hand-made .npy member: any header NumPy might parse, and a body of about its size."""
    descr = draw(
        st.sampled_from(
            ["|u1", "<i8", ">f4", "<f8", "|b1", "<U2", "|O", "<c8", "|V4", [("a", "<i4")], "?!", 5]
        )
    )
    shape = draw(
        st.sampled_from(
            [(2, 28, 28), (2,), (2, 784), (), (0, 28, 28), (-1, 28, 28), (10**13,), [2], "2"]
        )
    )
    header = repr({"descr": descr, "fortran_order": draw(st.booleans()), "shape": shape}).encode()
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    version = draw(st.sampled_from([b"\x01\x00", b"\x02\x00", b"\x03\x00", b"\x09\x09"]))
    length = struct.pack("<H" if version == b"\x01\x00" else "<I", len(header))
    size = 2 * 784 * 8 if isinstance(shape, tuple) and shape and shape[0] == 2 else 8
    body = bytes(max(0, min(size, 12544) + draw(st.integers(-9, 9))))
    return NPY_MAGIC + version + length + header + body


@st.composite
def npz_files(draw) -> bytes:
    """An .npz from np.savez (any keys, dtypes, shapes), a zip of other things, or not a zip."""
    kind = draw(st.sampled_from(["savez", "savez", "compressed", "zip of other", "not a zip"]))
    keys = draw(st.lists(st.sampled_from(KEYS), unique=True, max_size=5))
    buffer = io.BytesIO()
    if kind == "not a zip":
        return draw(st.sampled_from([b"", b"hello\n", b"\x93NUMPY\x01\x00", b"PK\x03\x04"]))
    if kind == "zip of other":
        members = {k if draw(st.booleans()) else f"{k}.npy": k for k in keys}
        with zipfile.ZipFile(buffer, "w") as z:
            for name in members:
                z.writestr(name, draw(st.one_of(npy_members(), st.binary(max_size=80))))
        return buffer.getvalue()
    save = np.savez if kind == "savez" else np.savez_compressed
    save(buffer, **{key: draw(arrays_for_npz()) for key in keys})
    raw = buffer.getvalue()
    return raw[: draw(st.integers(0, len(raw)))] if draw(st.integers(0, 4)) == 0 else raw


@FUZZ
@given(raw=npz_files())
def test_read_npz_returns_checked_splits_or_a_short_error(tmp_path, raw):
    path = tmp_path / "data.npz"
    path.write_bytes(raw)
    with confined_to(tmp_path):
        arrays = outcome(lambda: read_npz(path))
        for split in ("train", "test"):
            if arrays is not None and f"{split}_images" in arrays:
                assert_split(arrays[f"{split}_images"], arrays[f"{split}_labels"])
        ds = outcome(lambda: load_files(path))
        if ds is not None:
            assert_dataset(ds)
