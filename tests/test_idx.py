"""IDX reader and writer: round trips over shapes and dtypes, and every malformed file."""

from __future__ import annotations

import gzip
import os
import time
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from digitlab.data.idx import decode_idx, encode_idx, read_idx, write_idx
from digitlab.errors import DataError

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


@settings(max_examples=150, deadline=None)
@given(
    array=st.sampled_from(DTYPES).flatmap(
        lambda dt: arrays(dt, array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6))
    ),
    compress=st.booleans(),
)
def test_round_trip_any_shape_and_dtype(tmp_path_factory, array, compress):
    path = tmp_path_factory.mktemp("idx") / ("a.idx.gz" if compress else "a.idx")
    write_idx(path, array)
    back = read_idx(path)
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)  # NaN == NaN here
    assert back.flags.writeable


def test_header_is_big_endian_mnist_layout():
    raw = encode_idx(np.zeros((3, 28, 28), np.uint8))
    assert raw[:4] == b"\x00\x00\x08\x03"
    assert raw[4:16] == (3).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    assert len(raw) == 16 + 3 * 784
    assert encode_idx(np.array([1], ">i4"))[-4:] == b"\x00\x00\x00\x01"


def test_gzip_detected_by_magic_not_name(tmp_path):
    path = tmp_path / "labels.bin"
    path.write_bytes(gzip.compress(encode_idx(np.arange(5, dtype=np.uint8))))
    np.testing.assert_array_equal(read_idx(path), np.arange(5))


GOOD = encode_idx(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "file is empty"),
        (b"\x00\x00", "truncated"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not an IDX file (magic number 0x89504e47)"),
        (b"label,pixel0\n5,0\n", "not an IDX file"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x00", "unknown IDX dtype code 0x07"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x02", "16 header bytes expected, 8 found"),
        (GOOD[:-1], "truncated (40 bytes expected for shape (2, 3, 4), 39 found)"),
        (GOOD + b"\x00\x00", "2 unexpected bytes after the data"),
        (gzip.compress(GOOD, mtime=0)[:-8], "gzip data is corrupt or truncated"),
        (gzip.compress(b"", mtime=0), "empty (after gunzip)"),
    ],
)
def test_malformed_files_raise_data_error_naming_the_file(tmp_path, raw, message):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(raw)
    with pytest.raises(DataError) as info:
        read_idx(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_dimensions_that_do_not_match_the_byte_count():
    # the header claims 100 images of 28x28; the body holds one
    dims = (100).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    lying = b"\x00\x00\x08\x03" + dims + b"\x00" * 784
    with pytest.raises(DataError, match=r"x: file is truncated \(78416 bytes expected"):
        decode_idx(lying, "x")


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_idx(tmp_path / "nope.idx")
    with pytest.raises(DataError, match="is a directory"):
        read_idx(tmp_path)


def test_unsupported_dtype_refused_and_nothing_written(tmp_path):
    path = tmp_path / "a.idx"
    with pytest.raises(DataError, match="cannot store dtype uint16"):
        write_idx(path, np.zeros(3, np.uint16))
    assert list(tmp_path.iterdir()) == []


# ---- hostile files (issue 16): refused from the header, bounded gunzip, short messages ---------


def gzip_bomb(head: bytes, zeros_gib: int) -> bytes:
    """`head` then `zeros_gib` GiB of zeros as a gzip file of about 1 MB per GiB: the same
    64 MiB gzip member repeated (a gzip file may hold several members, read one after another)."""
    zeros = gzip.compress(bytes(2**26), compresslevel=9, mtime=0)
    return gzip.compress(head, mtime=0) + zeros * (16 * zeros_gib)


def short_error(call, match: str) -> str:
    with pytest.raises(DataError, match=match) as info:
        call()
    text = str(info.value)
    assert "\n" not in text and len(text) < 300, text
    return text


def test_a_header_declaring_ten_trillion_values_is_refused_before_reading(tmp_path):
    path = tmp_path / "big.idx"
    dims = (10**5).to_bytes(4, "big") * 2 + (1000).to_bytes(4, "big")  # 10**13 bytes of uint8
    path.write_bytes(b"\x00\x00\x08\x03" + dims + bytes(2**20))
    short_error(
        lambda: read_idx(path),
        r"big\.idx: IDX header declares shape \(100000, 100000, 1000\) uint8, 9\.1 TiB, "
        r"over the 2 GiB limit",
    )


def test_gzip_bomb_declaring_what_it_holds_is_refused_from_its_header(tmp_path):
    shape = (3_000_000, 28, 28)  # 2.2 GiB, honestly declared, over the limit
    header = b"\x00\x00\x08\x03" + b"".join(d.to_bytes(4, "big") for d in shape)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip_bomb(header, 3))
    started = time.monotonic()
    short_error(lambda: read_idx(path), r"2\.2 GiB, over the 2 GiB limit")
    assert time.monotonic() - started < 2


def test_gzip_bomb_stops_at_the_declared_size_plus_a_margin(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(gzip_bomb(encode_idx(np.arange(10, dtype=np.uint8)), 1))  # 1 GiB after
    tracemalloc.start()
    started = time.monotonic()
    try:
        short_error(lambda: read_idx(path), r"more than 64 KiB of unexpected bytes after the data")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 2 and peak < 16 * 2**20


def test_a_header_with_255_dimensions_gives_one_short_line(tmp_path):
    for size in (7, 1):  # 7**255 values (truncated), or 1 value in 255 dimensions
        raw = b"\x00\x00\x08\xff" + size.to_bytes(4, "big") * 255 + b"\x01"
        short_error(
            lambda raw=raw: decode_idx(raw, "x"),
            r"x: IDX header declares 255 dimensions, at most 32",
        )


@pytest.mark.timeout(20)
def test_fifos_and_devices_are_refused_without_reading(tmp_path):
    os.mkfifo(tmp_path / "fifo.idx")
    short_error(
        lambda: read_idx(tmp_path / "fifo.idx"),
        r"fifo\.idx: is a named pipe \(FIFO\), not a regular file",
    )
    (tmp_path / "zero.idx").symlink_to("/dev/zero")
    short_error(
        lambda: read_idx(tmp_path / "zero.idx"),
        r"zero\.idx: is a character device, not a regular file",
    )


def test_writing_over_a_folder_or_under_a_file_names_the_real_problem(tmp_path):
    (tmp_path / "existing_dir").mkdir()
    text = short_error(
        lambda: write_idx(tmp_path / "existing_dir", np.zeros(3, np.uint8)),
        r"existing_dir: is a folder, not a file",
    )
    assert ".tmp" not in text
    (tmp_path / "notes.txt").write_text("")
    for target in (tmp_path / "notes.txt" / "a.idx", tmp_path / "notes.txt" / "sub" / "a.idx"):
        short_error(
            lambda target=target: write_idx(target, np.zeros(3, np.uint8)),
            r"notes\.txt: is a file, not a folder",
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing_dir", "notes.txt"]


def test_an_empty_array_with_absurd_sides_is_refused(tmp_path):
    """Found by the fuzzing suite: no values at all, yet NumPy cannot even shape it."""
    raw = b"\x00\x00\x08\x04" + (0).to_bytes(4, "big") + (2**32 - 1).to_bytes(4, "big") * 3
    short_error(
        lambda: decode_idx(raw, "x"), r"x: IDX header declares shape \(0, 4294967295, .*over"
    )


def test_an_astronomical_size_is_written_short():
    """Found by the fuzzing suite: 32 sides of 2**31 printed a 54-digit number of TiB."""
    raw = b"\x00\x00\x08\x20" + (2**31).to_bytes(4, "big") * 32
    short_error(
        lambda: decode_idx(raw, "x"), r"x: IDX header declares shape .* 4\.1e298 bytes, over"
    )
