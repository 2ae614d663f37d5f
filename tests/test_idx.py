"""IDX reader and writer: round trips over shapes and dtypes, and every malformed file."""

from __future__ import annotations

import gzip

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
        (gzip.compress(GOOD)[:-8], "gzip data is corrupt or truncated"),
        (gzip.compress(b""), "empty (after gunzip)"),
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
