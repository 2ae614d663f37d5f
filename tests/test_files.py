"""Importing user data: Kaggle CSV, NPZ, IDX folders, image folders; bad rows name their line."""

from __future__ import annotations

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
    if fmt == "png":  # train/<class>/*.png and test/<class>/*.png, read back class by class
        order = np.argsort(LABELS, kind="stable")
        np.testing.assert_array_equal(back.train.images, IMAGES[order])
        np.testing.assert_array_equal(back.train.labels, LABELS[order])
        np.testing.assert_array_equal(back.test.labels, np.sort(LABELS[:4]))
        return
    np.testing.assert_array_equal(back.train.images, IMAGES)
    np.testing.assert_array_equal(back.test.labels, LABELS[:4])


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


def test_transparent_background_and_16_bit_images(tmp_path):
    (tmp_path / "1").mkdir()
    rgba = np.zeros((28, 28, 4), np.uint8)  # black ink on a fully transparent page
    rgba[..., 3] = stroke()
    Image.fromarray(rgba, "RGBA").save(tmp_path / "1" / "drawn.png")
    Image.fromarray(stroke().astype(np.uint16) * 257).save(tmp_path / "1" / "deep.png")
    ds = load_files(tmp_path)
    for image in ds.train.images:  # both: light ink on black, like MNIST
        assert image[0, 0] == 0 and image[14, 14] == 255


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
    with pytest.raises(DataError, match=r"line 3, column 4: 9{20} is outside 0..255"):
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
