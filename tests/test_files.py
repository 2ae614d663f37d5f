"""Importing user data: Kaggle CSV, NPZ, IDX folders, image folders; bad rows name their line."""

from __future__ import annotations

import io
import os
import re
import struct
import subprocess
import sys
import time
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import Image

from digitlab.data import load_files
from digitlab.data.export import export
from digitlab.data.files import read_csv
from digitlab.data.idx import write_idx
from digitlab.errors import DataError

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, (12, 28, 28), dtype=np.uint8)
IMAGES[:, :4] = IMAGES[:, -4:] = IMAGES[:, :, :4] = IMAGES[:, :, -4:] = 0  # MNIST's blank border
LABELS = np.arange(12, dtype=np.uint8) % 10


def csv_text(images, labels=None, header=True) -> str:
    rows = images.reshape(len(images), -1).astype(int)
    lines = []
    if header:
        names = [f"pixel{i}" for i in range(784)]
        lines.append(",".join((["label"] if labels is not None else []) + names))
    for i, row in enumerate(rows):
        cells = ([str(labels[i])] if labels is not None else []) + [str(v) for v in row]
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("header", [True, False])
def test_kaggle_train_csv(tmp_path, header):
    path = tmp_path / "train.csv"
    path.write_text(csv_text(IMAGES, LABELS, header))
    images, labels = read_csv(path)
    np.testing.assert_array_equal(images, IMAGES)
    np.testing.assert_array_equal(labels, LABELS)


def test_kaggle_folder_with_unlabeled_test_csv(tmp_path):
    (tmp_path / "train.csv").write_text(csv_text(IMAGES, LABELS))
    (tmp_path / "test.csv").write_text(csv_text(IMAGES[:5]))
    ds = load_files(tmp_path)
    assert len(ds.train) == 12 and len(ds.test) == 5
    assert ds.test.labels is None
    np.testing.assert_array_equal(ds.test.images, IMAGES[:5])
    assert ds.summary()["splits"]["test"]["labeled"] is False


def bad_csv(tmp_path, mutate) -> str:
    lines = csv_text(IMAGES[:4], LABELS[:4]).splitlines()
    mutate(lines)
    path = tmp_path / "train.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as info:
        read_csv(path)
    assert str(path) in str(info.value)
    return str(info.value)


def test_csv_wrong_column_count_names_the_line(tmp_path):
    def drop_last_cell(lines):
        lines[3] = lines[3].rsplit(",", 1)[0]

    assert "line 4: 784 columns, expected 785" in bad_csv(tmp_path, drop_last_cell)

    def target_column(lines):
        lines[0] = "target" + lines[0][len("label") :]

    assert "name the first column 'label', not 'target'" in bad_csv(tmp_path, target_column)


def test_csv_value_out_of_range_names_line_and_pixel(tmp_path):
    def too_bright(lines):
        cells = lines[2].split(",")
        cells[11] = "300"
        lines[2] = ",".join(cells)

    assert "line 3: pixel10 = 300 is outside 0..255" in bad_csv(tmp_path, too_bright)


def test_csv_non_numeric_names_line_and_column(tmp_path):
    def word(lines):
        cells = lines[1].split(",")
        cells[5] = "abc"
        lines[1] = ",".join(cells)

    assert "line 2, column 6: 'abc' is not a whole number" in bad_csv(tmp_path, word)


def test_csv_negative_label_and_empty_file(tmp_path):
    def negative(lines):
        lines[1] = "-1" + lines[1][1:]

    assert "line 2: label -1 is outside 0..255" in bad_csv(tmp_path, negative)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match=r"empty\.csv: file is empty"):
        read_csv(empty)


def test_npz_keras_layout_and_floats(tmp_path):
    path = tmp_path / "mnist.npz"
    floats = IMAGES.reshape(12, 784).astype(np.float32) / 255
    np.savez(path, x_train=floats, y_train=LABELS.astype(np.int64), x_test=IMAGES, y_test=LABELS)
    ds = load_files(path)
    np.testing.assert_array_equal(ds.train.images, IMAGES)
    np.testing.assert_array_equal(ds.test.labels, LABELS)
    masks = (IMAGES > 127).astype(np.uint8)  # binarised digits: 0/1, read as 0/255
    for given in (masks, masks.astype(np.int64), masks.astype(np.float32), masks.astype(bool)):
        np.savez(path, x_train=given, y_train=LABELS)
        np.testing.assert_array_equal(load_files(path).train.images, masks * 255)


def test_npz_with_pickled_objects_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, images=np.array([object()], dtype=object), labels=np.array([1]))
    with pytest.raises(DataError, match=r"evil\.npz"):
        load_files(path)


def test_npz_wrong_shape_and_mismatched_labels(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, images=np.zeros((3, 32, 32), np.uint8), labels=np.zeros(3, np.uint8))
    with pytest.raises(DataError, match=r"bad.npz:train images: images have shape \(3, 32, 32\)"):
        load_files(path)
    np.savez(path, images=IMAGES, labels=LABELS[:5])
    with pytest.raises(DataError, match=r"\(5,\) labels for 12 images"):
        load_files(path)


def test_idx_folder_and_separate_test_path(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", IMAGES)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", LABELS)
    ds = load_files(tmp_path)
    np.testing.assert_array_equal(ds.train.images, IMAGES)
    assert len(ds.test) == 0
    (tmp_path / "extra").mkdir()
    np.savez(tmp_path / "extra" / "t.npz", images=IMAGES[:3], labels=LABELS[:3])
    ds = load_files(tmp_path, test=tmp_path / "extra" / "t.npz")
    assert len(ds.test) == 3


def test_image_folder_per_class_resizes_and_inverts_dark_on_light(tmp_path):
    for cls in ["cat", "dog"]:
        (tmp_path / cls).mkdir()
    ink = np.zeros((56, 56), np.uint8)
    ink[10:40, 25:30] = 255  # a light stroke on black, twice MNIST's size
    Image.fromarray(ink).save(tmp_path / "cat" / "a.png")
    Image.fromarray(255 - ink).convert("RGB").save(tmp_path / "dog" / "b.jpg")  # dark on white
    (tmp_path / "dog" / "notes.txt").write_text("ignored")
    ds = load_files(tmp_path)
    assert ds.classes == ["cat", "dog"]
    assert ds.train.images.shape == (2, 28, 28)
    np.testing.assert_array_equal(ds.train.labels, [0, 1])
    for image in ds.train.images:  # both read as light ink on a dark background
        assert image[0, 0] < 30 and image[12, 13] > 200


def test_a_digit_on_a_page_is_imported_as_predict_will_read_it(tmp_path):
    from digitlab.ink import prepare

    (tmp_path / "7").mkdir()
    page = np.full((100, 160), 235, np.uint8)  # a light page, the digit small and off centre
    page[60:90, 120:124] = 20
    page[60:63, 110:124] = 20
    Image.fromarray(page).save(tmp_path / "7" / "page.png")
    ds = load_files(tmp_path)
    # what a model trained on the folder saw is what `digitlab predict page.png` gives it
    np.testing.assert_array_equal(ds.train.images[0], prepare(tmp_path / "7" / "page.png")[0])
    assert ds.train.images[0][4:24, 4:24].any() and not ds.train.images[0][:3].any()  # centred
    Image.fromarray(np.full((100, 160), 235, np.uint8)).save(tmp_path / "7" / "blank.png")
    with pytest.raises(DataError, match=r"blank.png: no digit found on it"):
        load_files(tmp_path)


def test_an_off_centre_28x28_is_centred_as_predict_centres_a_photo(tmp_path):
    """A 28x28 drawn in a corner was taken as MNIST-style and trained as it was, though predict
    centres every digit it reads; one placed as MNIST's are is kept as it is, pixel for pixel."""
    from digitlab.data.files import mnist_style
    from digitlab.ink import prepare

    (tmp_path / "1").mkdir()
    corner = np.zeros((28, 28), np.uint8)
    corner[2:14, 3:6] = 255  # a short stroke, top left
    Image.fromarray(255 - corner).save(tmp_path / "1" / "corner.png")  # dark ink on white
    centred = np.zeros((28, 28), np.uint8)
    centred[8:20, 13:16] = 255
    Image.fromarray(centred).save(tmp_path / "1" / "centred.png")
    assert not mnist_style(corner) and mnist_style(centred)
    picture = np.zeros((28, 28), np.uint8)
    picture[1:27, 1:22] = 200  # a picture filling the square, weighted left (Fashion-MNIST's)
    assert mnist_style(picture)  # kept as it is: nothing to centre
    ds = load_files(tmp_path)
    got = dict(zip(["centred", "corner"], ds.train.images, strict=True))  # files in name order
    np.testing.assert_array_equal(got["centred"], centred)
    np.testing.assert_array_equal(got["corner"], prepare(tmp_path / "1" / "corner.png")[0])
    assert mnist_style(got["corner"])


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="no class subfolders"):
        load_files(tmp_path)
    (tmp_path / "3").mkdir()
    (tmp_path / "3" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"broken.png: not a readable image"):
        load_files(tmp_path)


def test_unknown_format_and_missing_path(tmp_path):
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(DataError, match=r"x\.json: unknown format"):
        load_files(tmp_path / "x.json")
    with pytest.raises(DataError, match="no such file or folder"):
        load_files(tmp_path / "missing")


@pytest.mark.parametrize("fmt", ["idx", "csv", "png"])
def test_export_then_import_round_trips(tmp_path, fmt):
    source = tmp_path / "src.npz"
    np.savez(source, x_train=IMAGES, y_train=LABELS, x_test=IMAGES[:4], y_test=LABELS[:4])
    ds = load_files(source)
    out = tmp_path / "out"
    written = export(ds, fmt, out)
    assert written and all(p.exists() for p in written)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging left behind
    back = load_files(out)
    if fmt == "png":  # train/<class>/*.png and test/<class>/*.png, read back classes in turns
        turn = [np.count_nonzero(LABELS[:i] == label) for i, label in enumerate(LABELS)]
        order = np.lexsort((LABELS, turn))
        np.testing.assert_array_equal(back.train.images, IMAGES[order])
        np.testing.assert_array_equal(back.train.labels, LABELS[order])
        np.testing.assert_array_equal(back.test.labels, np.sort(LABELS[:4]))
        return
    np.testing.assert_array_equal(back.train.images, IMAGES)
    np.testing.assert_array_equal(back.test.labels, LABELS[:4])


def test_named_classes_are_not_exported_as_numbers(tmp_path):
    for name in ("seven", "three"):
        (tmp_path / "in" / name).mkdir(parents=True)
        Image.fromarray(stroke()).save(tmp_path / "in" / name / "a.png")
    ds = load_files(tmp_path / "in")
    for fmt in ("csv", "idx"):  # read back, they were classes 0 and 1 of ten digits
        with pytest.raises(
            DataError, match=r"not the class names .*\(seven, three\); --format png"
        ):
            export(ds, fmt, tmp_path / fmt)
    export(ds, "png", tmp_path / "png")
    assert load_files(tmp_path / "png").classes == ["seven", "three"]


def test_export_never_overwrites_silently(tmp_path):
    source = tmp_path / "src.npz"
    np.savez(source, images=IMAGES, labels=LABELS)
    ds = load_files(source)
    out = tmp_path / "out"
    export(ds, "csv", out)
    before = (out / "train.csv").read_bytes()
    with pytest.raises(DataError, match=r"train\.csv: already exists; pass --overwrite"):
        export(ds, "csv", out, limit=2)
    assert (out / "train.csv").read_bytes() == before
    export(ds, "csv", out, limit=2, overwrite=True)
    assert len(load_files(out / "train.csv").train) == 2


def stroke(size: int = 28) -> np.ndarray:
    a = np.zeros((size, size), np.uint8)
    a[size // 4 : 3 * size // 4, size // 2 - 2 : size // 2 + 2] = 255
    return a


def test_digit_named_folders_keep_their_digit_as_label(tmp_path):
    for digit in ("3", "7"):  # 0-2, 4-6, 8, 9 missing: labels must not shift
        (tmp_path / digit).mkdir()
        Image.fromarray(stroke()).save(tmp_path / digit / "a.png")
    ds = load_files(tmp_path)
    assert ds.train.labels.tolist() == [3, 7] and ds.classes[7] == "7" and len(ds.classes) == 10
    (tmp_path / "unsure").mkdir()  # one more folder made 3 and 7 classes 0 and 1
    Image.fromarray(stroke()).save(tmp_path / "unsure" / "a.png")
    with pytest.raises(DataError, match="class folders '3' and 'unsure': name them all by"):
        load_files(tmp_path)


def test_a_folders_classes_come_in_turns_so_any_first_images_hold_every_class(tmp_path):
    for digit, count in (("1", 4), ("5", 2), ("8", 3)):
        (tmp_path / digit).mkdir()
        for i in range(count):
            Image.fromarray(stroke()).save(tmp_path / digit / f"{i}.png")
    labels = load_files(tmp_path).train.labels  # --limit 3 took 1s alone
    assert labels.tolist() == [1, 5, 8, 1, 5, 8, 1, 8, 1]


def test_transparent_background_and_16_bit_images(tmp_path):
    (tmp_path / "1").mkdir()
    rgba = np.zeros((28, 28, 4), np.uint8)  # black ink on a fully transparent page
    rgba[..., 3] = stroke()
    Image.fromarray(rgba, "RGBA").save(tmp_path / "1" / "drawn.png")
    Image.fromarray(stroke().astype(np.uint16) * 257).save(tmp_path / "1" / "deep.png")
    ds = load_files(tmp_path)
    for image in ds.train.images:  # both: light ink on black, like MNIST
        assert image[0, 0] == 0 and image[14, 14] == 255


def test_deep_and_float_image_files_are_scaled_as_predict_scales_them(tmp_path):
    (tmp_path / "1").mkdir()
    Image.fromarray(stroke().astype(np.uint16)).save(tmp_path / "1" / "u16-0-255.png")
    Image.fromarray(stroke().astype(np.uint16) * 16).save(tmp_path / "1" / "12-bit.png")
    Image.fromarray(stroke().astype(np.float32) / 255).save(tmp_path / "1" / "floats.tif")
    ds = load_files(tmp_path)  # each once imported blank or nearly (max 1 or 16)
    assert ds.train.images.shape == (3, 28, 28)
    assert (ds.train.images[:, 14, 14] >= 250).all() and (ds.train.images[:, 0, 0] == 0).all()


def test_a_class_folder_without_images_is_an_error(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    Image.fromarray(stroke()).save(tmp_path / "a" / "x.png")
    with pytest.raises(DataError, match=r"/b: holds no images .*every subfolder"):
        load_files(tmp_path)


def test_separate_test_folder_labels_map_by_class_name(tmp_path):
    for split, classes in (("tr", ["cat", "dog"]), ("te", ["dog"])):
        for c in classes:
            (tmp_path / split / c).mkdir(parents=True)
            Image.fromarray(stroke()).save(tmp_path / split / c / "x.png")
    ds = load_files(tmp_path / "tr", test=tmp_path / "te")
    assert ds.classes == ["cat", "dog"] and ds.test.labels.tolist() == [1]


def test_npz_with_train_only_and_unlabeled_idx(tmp_path):
    np.savez(tmp_path / "k.npz", x_train=IMAGES, y_train=LABELS)
    assert len(load_files(tmp_path / "k.npz").train) == 12
    write_idx(tmp_path / "train-images-idx3-ubyte", IMAGES)
    ds = load_files(tmp_path)
    assert ds.train.labels is None and len(ds.train) == 12


def test_csv_value_too_large_for_any_integer_names_the_line(tmp_path):
    lines = csv_text(IMAGES[:2], LABELS[:2]).splitlines()
    cells = lines[2].split(",")
    cells[3] = "9" * 30
    lines[2] = ",".join(cells)
    (tmp_path / "t.csv").write_text("\n".join(lines))
    with pytest.raises(DataError, match=r"line 3, column 4: 9{20}… is outside 0..255"):
        read_csv(tmp_path / "t.csv")


def test_empty_path_is_refused_not_read_as_the_current_folder():
    with pytest.raises(DataError, match="empty path"):
        load_files("")


def test_failed_export_leaves_no_new_folder(tmp_path):
    np.savez(tmp_path / "s.npz", images=IMAGES, labels=LABELS)
    ds = load_files(tmp_path / "s.npz")
    with pytest.raises(DataError, match="--format 'tiff'"):
        export(ds, "tiff", tmp_path / "new")
    assert not (tmp_path / "new").exists()


# ---- hostile files (issue 16): one short DataError each, fast, never a hang ------------------

CSV_HEADER = "label," + ",".join(f"pixel{i}" for i in range(784))


def one_row_csv(tmp_path, first_cell: str):
    path = tmp_path / "train.csv"
    path.write_text(f"{CSV_HEADER}\n{first_cell}," + ",".join(["0"] * 784) + "\n")
    return path


def short_error(call, match: str) -> str:
    """The DataError `call` raises: it matches `match` and is one short line."""
    with pytest.raises(DataError, match=match) as info:
        call()
    text = str(info.value)
    assert "\n" not in text and len(text) < 300, text
    return text


@pytest.mark.parametrize("cell", ["--5", "²", "٣", "5_0", "+-5"])
def test_csv_cells_that_only_look_like_numbers(tmp_path, cell):
    path = one_row_csv(tmp_path, cell)
    short_error(lambda: read_csv(path), rf"line 2, column 1: '{re.escape(cell)}' is not a whole")


def test_csv_echoes_at_most_a_short_piece_of_a_bad_cell(tmp_path):
    path = one_row_csv(tmp_path, "x" * 100_000)
    short_error(lambda: read_csv(path), r"line 2, column 1: 'xxxx.*…' is not a whole number")


def test_image_folder_named_with_a_digit_that_is_not_0_to_9(tmp_path):
    (tmp_path / "²").mkdir()
    Image.fromarray(stroke()).save(tmp_path / "²" / "a.png")
    short_error(lambda: load_files(tmp_path), r"²: a class folder named by a number must use")


def test_a_stray_label_past_9_is_refused_not_made_into_empty_classes(tmp_path):
    labels = LABELS.copy()
    labels[5] = 11  # one typo among digits made 12 classes, 10 of them with images
    (tmp_path / "typo.csv").write_text(csv_text(IMAGES, labels))
    with pytest.raises(
        DataError,
        match=r"typo\.csv: label 11 is given to 1 image\(s\) but no "
        r"image has label 10: labels past 9 must follow on without a gap",
    ):
        load_files(tmp_path / "typo.csv")
    labels[6] = 10  # twelve classes in turn are a dataset of twelve classes
    (tmp_path / "twelve.csv").write_text(csv_text(IMAGES, labels))
    assert len(load_files(tmp_path / "twelve.csv").classes) == 12


def test_labels_1_to_10_as_svhn_gives_them_are_refused_not_made_into_11_classes(tmp_path):
    labels = np.where(LABELS == 0, 10, LABELS)  # SVHN's 10 means 0: class 0 left empty
    np.savez(tmp_path / "svhn.npz", x_train=IMAGES, y_train=labels)
    with pytest.raises(DataError, match=r"svhn\.npz: labels reach 10 but no image has label 0: "
                       r"labels must start at 0 \(labels 1-10 as SVHN"):  # fmt: skip
        load_files(tmp_path / "svhn.npz")


def test_an_absurd_class_id_is_refused_at_once(tmp_path):
    (tmp_path / "99999999999").mkdir()
    Image.fromarray(stroke()).save(tmp_path / "99999999999" / "a.png")
    started = time.monotonic()
    short_error(lambda: load_files(tmp_path), r"99999999999: class id 99999999999 is over 255")
    assert time.monotonic() - started < 2


def test_too_many_class_folders_are_refused_before_reading_any(tmp_path):
    for i in range(300):
        (tmp_path / f"c{i:03d}").mkdir()  # no images at all: the count alone is refused
    short_error(lambda: load_files(tmp_path), r"300 class folders, at most 256")


def test_an_npy_file_renamed_npz(tmp_path):
    np.save(tmp_path / "a.npy", IMAGES)
    (tmp_path / "a.npy").rename(tmp_path / "a.npz")
    short_error(
        lambda: load_files(tmp_path / "a.npz"),
        r"a\.npz: a single \.npy array, not an NPZ archive \(a zip of \.npy arrays\)",
    )


def test_a_text_file_named_npz_is_not_called_a_pickle(tmp_path):
    (tmp_path / "t.npz").write_text("hello, these are not arrays\n")
    text = short_error(
        lambda: load_files(tmp_path / "t.npz"), r"t\.npz: not an NPZ archive \(a zip of \.npy"
    )
    assert "pickle" not in text and "allow_pickle" not in text


def test_npz_test_images_without_test_labels(tmp_path):
    np.savez(tmp_path / "k.npz", x_train=IMAGES, y_train=LABELS, x_test=IMAGES)
    short_error(lambda: load_files(tmp_path / "k.npz"), r"k\.npz: has x_test but no y_test")
    np.savez(tmp_path / "k.npz", x_train=IMAGES, y_train=LABELS, y_test=LABELS)
    short_error(lambda: load_files(tmp_path / "k.npz"), r"k\.npz: has y_test but no x_test")


def npy_header(shape, descr="|u1") -> bytes:
    buffer = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


def member(head: bytes, zeros_mib: int = 0) -> tuple[bytes, int, int]:
    """A zip member holding `head` then `zeros_mib` MiB of zeros: (raw deflate stream, size, CRC).

    The stream repeats one fully flushed block of zeros, so a GiB costs milliseconds to build
    and about 1 MB to store."""
    flushed = zlib.compressobj(9, zlib.DEFLATED, -15)
    stream = flushed.compress(head) + flushed.flush(zlib.Z_FULL_FLUSH)
    zeros = zlib.compressobj(9, zlib.DEFLATED, -15)
    stream += (zeros.compress(bytes(2**20)) + zeros.flush(zlib.Z_FULL_FLUSH)) * zeros_mib
    stream += zlib.compressobj(9, zlib.DEFLATED, -15).flush()  # the final, empty block
    crc = zlib.crc32(head)
    for _ in range(zeros_mib):
        crc = zlib.crc32(bytes(2**20), crc)
    return stream, len(head) + zeros_mib * 2**20, crc


def raw_zip(members: dict[str, tuple[bytes, int, int]]) -> bytes:
    """A valid zip of deflated members, written by hand (zipfile would have to compress them)."""
    local, central = b"", b""
    for name, (stream, size, crc) in members.items():
        n, offset, sizes = name.encode(), len(local), (crc, len(stream), size, len(name))
        local += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, *sizes, 0) + n + stream
        central += struct.pack(
            "<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, *sizes, 0, 0, 0, 0, 0, offset
        )
        central += n
    count = len(members)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, len(central), len(local), 0)
    return local + central + end


def test_npz_header_declaring_ten_trillion_values_is_refused_from_the_header(tmp_path):
    huge = npy_header((10**13 // 784, 28, 28))
    (tmp_path / "big.npz").write_bytes(
        raw_zip({"images.npy": member(huge), "labels.npy": member(huge)})
    )
    started = time.monotonic()
    short_error(
        lambda: load_files(tmp_path / "big.npz"), r"big\.npz: images: .*TiB, over the .* limit"
    )
    assert time.monotonic() - started < 2


def test_npz_bomb_stops_at_the_declared_size(tmp_path):
    images = member(
        npy_header((12, 28, 28)) + IMAGES.tobytes(), zeros_mib=1024
    )  # + 1 GiB undeclared
    labels = member(npy_header((12,)) + LABELS.tobytes())
    (tmp_path / "bomb.npz").write_bytes(raw_zip({"images.npy": images, "labels.npy": labels}))
    tracemalloc.start()
    started = time.monotonic()
    try:
        short_error(
            lambda: load_files(tmp_path / "bomb.npz"), r"bomb\.npz: images: .*after the array"
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 2 and peak < 16 * 2**20


def special_files(tmp_path):
    """A FIFO (would block a reader forever) and /dev/zero (would never end)."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    zero = tmp_path / "zero"
    zero.symlink_to("/dev/zero")
    return {
        "fifo": (fifo, r"is a named pipe \(FIFO\), not a regular file"),
        "zero": (zero, r"is a character device, not a regular file"),
    }


@pytest.mark.timeout(20)
@pytest.mark.parametrize("kind", ["fifo", "zero"])
@pytest.mark.parametrize("name", ["train.csv", "mnist.npz", "3/a.png"])
def test_fifos_and_devices_are_refused_without_reading(tmp_path, kind, name):
    source, message = special_files(tmp_path)[kind]
    target = tmp_path / "data" / name
    target.parent.mkdir(parents=True)
    os.rename(source, target)
    path = target if name != "3/a.png" else tmp_path / "data"
    short_error(lambda: load_files(path), rf"{re.escape(target.name)}: {message}")


def test_a_csv_larger_than_the_limit_is_refused_from_its_size(tmp_path):
    from digitlab.data import limits

    path = tmp_path / "huge.csv"
    with open(path, "wb") as f:
        f.truncate(limits.MAX_CSV_BYTES + 1)  # sparse: no disk used, nothing read
    short_error(
        lambda: read_csv(path), r"huge\.csv: 1\.0 GiB is over the 1 GiB limit for a CSV file"
    )


def png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def test_an_image_declaring_too_many_pixels_is_refused_before_decoding(tmp_path):
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "wide.png").write_bytes(png_header_only(8000, 8000))
    short_error(lambda: load_files(tmp_path), r"wide\.png: 8000x8000 pixels, over the limit")


def test_export_under_a_file_names_that_file(tmp_path):
    np.savez(tmp_path / "s.npz", images=IMAGES, labels=LABELS)
    ds = load_files(tmp_path / "s.npz")
    (tmp_path / "notes.txt").write_text("")
    for out in (tmp_path / "notes.txt" / "out", tmp_path / "notes.txt" / "a" / "out"):
        short_error(lambda out=out: export(ds, "csv", out), r"notes\.txt: is a file, not a folder")


NON_ASCII_CELLS = """
import sys
from pathlib import Path
from digitlab.data.files import read_csv
from digitlab.errors import DataError
for _ in range(300):
    try:
        read_csv(Path(sys.argv[1]))
    except DataError as e:
        message = str(e)
print(message)
"""


def test_a_non_ascii_cell_never_reaches_numpys_parser(tmp_path):
    """Found by the fuzzing suite: NumPy 2.4's loadtxt crashes the process (SIGSEGV), now and
    then, on a cell like U+D0BF1. Run in a child process, so a crash fails only this test."""
    path = one_row_csv(tmp_path, "\U000d0bf1")
    done = subprocess.run(
        [sys.executable, "-c", NON_ASCII_CELLS, str(path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-500:]
    assert r"line 2, column 1: '\U000d0bf1' is not a whole number" in done.stdout  # escaped
