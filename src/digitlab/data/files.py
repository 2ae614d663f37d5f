"""Import digit images a user already has: IDX files, Kaggle CSV, NPZ, image folders.

Each reader returns arrays in the Dataset contract (uint8 images (N, 28, 28), 0 =
background) or raises `DataError` naming the file (and line) and what is wrong.

    >>> ds = load_files("digit-recognizer/")        # Kaggle train.csv (+ unlabeled test.csv)
    >>> ds = load_files("mnist.npz")                # Keras layout: x_train, y_train, ...
    >>> ds = load_files("my_digits/")               # my_digits/0/*.png, my_digits/1/*.png, ...
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np

from digitlab.data import limits
from digitlab.data.contract import as_images, as_labels, stray_labels
from digitlab.data.dataset import Dataset, Split
from digitlab.data.idx import read_idx
from digitlab.data.limits import check_declared, echo, short
from digitlab.data.npz import read_npz
from digitlab.data.safe_io import read_limited
from digitlab.errors import DataError

IDX_NAME = re.compile(r"^(train|t10k|test)-(images|labels)[-.]idx([13])-ubyte(\.gz)?$")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm"}
INTEGER = re.compile(r"[+-]?[0-9]+")  # a CSV cell NumPy reads as an integer: ASCII digits only


# ---- IDX ------------------------------------------------------------------------------


def find_idx_files(folder: Path) -> dict[str, Path]:
    """Map roles (train_images, ...) to IDX files in `folder`, by their usual names."""
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        m = IDX_NAME.match(p.name)
        if m and not p.is_dir():  # a FIFO or device is refused by read_idx, by name
            split = "train" if m.group(1) == "train" else "test"
            role = f"{split}_{m.group(2)}"
            if role not in found or p.suffix != ".gz":  # prefer the raw file when both exist
                found[role] = p
    return found


def read_idx_folder(folder: Path) -> dict[str, np.ndarray]:
    """Read MNIST-style IDX files of a folder; labels may be missing (unlabeled images)."""
    files = find_idx_files(folder)
    if "train_images" not in files:
        raise DataError(f"{folder}: no IDX file named like train-images-idx3-ubyte(.gz)")
    arrays = {}
    for split in ("train", "test"):
        if f"{split}_images" not in files:
            if f"{split}_labels" in files:
                raise DataError(f"{files[f'{split}_labels']}: labels without a {split} images file")
            continue
        images_path = files[f"{split}_images"]
        arrays[f"{split}_images"] = as_images(read_idx(images_path), str(images_path))
        if f"{split}_labels" in files:
            labels_path = files[f"{split}_labels"]
            n = len(arrays[f"{split}_images"])
            arrays[f"{split}_labels"] = as_labels(read_idx(labels_path), n, str(labels_path))
    return arrays


# ---- CSV (Kaggle digit-recognizer) -----------------------------------------------------


def read_csv(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Read `label,pixel0..pixel783` rows (or unlabeled `pixel0..pixel783`), header optional."""
    lines = _csv_lines(path)
    header = lines[0].split(",")
    has_header = not INTEGER.fullmatch(header[0].strip())
    labeled = header[0].strip().lower() == "label" if has_header else len(header) == 785
    expected = 785 if labeled else 784
    if len(header) != expected:
        what = "a label and 784 pixels" if labeled else "784 pixels"
        if has_header and len(header) == 785:  # a label column under another name
            what += f"; name the first column 'label', not {echo(header[0].strip())}"
        raise DataError(f"{path}: line 1: {len(header)} columns, expected {expected} ({what})")
    first = 2 if has_header else 1
    rows = [(i, line) for i, line in enumerate(lines[first - 1 :], start=first) if line.strip()]
    if not rows:
        raise DataError(f"{path}: has a header but no data rows")
    values = _parse_rows(rows, expected, path)
    pixels = values[:, 1:] if labeled else values
    bad = np.flatnonzero(((pixels < 0) | (pixels > 255)).any(axis=1))
    if bad.size:
        r = int(bad[0])
        col = int(np.flatnonzero((pixels[r] < 0) | (pixels[r] > 255))[0])
        raise DataError(
            f"{path}: line {rows[r][0]}: pixel{col} = {pixels[r, col]} is outside 0..255"
        )
    labels = None
    if labeled:
        labels = values[:, 0]
        bad = np.flatnonzero((labels < 0) | (labels > 255))
        if bad.size:
            r = int(bad[0])
            raise DataError(f"{path}: line {rows[r][0]}: label {labels[r]} is outside 0..255")
        labels = labels.astype(np.uint8)
    return pixels.astype(np.uint8).reshape(-1, 28, 28), labels


def _csv_lines(path: Path) -> list[str]:
    """The lines of a CSV file that is a regular file of at most MAX_CSV_BYTES, as UTF-8."""
    raw = read_limited(path, "a CSV file", "MAX_CSV_BYTES")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text CSV file") from None
    if not text.strip():
        raise DataError(f"{path}: file is empty")
    return text.splitlines()


def _parse_rows(rows: list[tuple[int, str]], expected: int, path: Path) -> np.ndarray:
    """int64 (rows, expected): NumPy's C parser, or on any failure our own, which names the line.

    NumPy's parser sees ASCII only: NumPy 2.4's loadtxt can crash the process (SIGSEGV) on
    some characters outside the Basic Multilingual Plane, such as U+D0BF1."""
    lines = [line for _, line in rows]
    if all(line.isascii() for line in lines):
        try:
            values = np.loadtxt(lines, delimiter=",", dtype=np.int64, ndmin=2)
            if values.shape[1] == expected:
                return values
        except (ValueError, OverflowError):
            pass
    values = np.empty((len(rows), expected), np.int64)
    for r, (lineno, line) in enumerate(rows):
        cells = [cell.strip() for cell in line.split(",")]
        if len(cells) != expected:
            raise DataError(f"{path}: line {lineno}: {len(cells)} columns, expected {expected}")
        for col, cell in enumerate(cells):
            where = f"{path}: line {lineno}, column {col + 1}"
            if not INTEGER.fullmatch(cell):
                raise DataError(f"{where}: {echo(cell)} is not a whole number")
            if len(cell.lstrip("+-").lstrip("0")) > 3 or not -1 <= int(cell) <= 256:
                raise DataError(f"{where}: {short(cell, 21)} is outside 0..255")
        values[r] = [int(cell) for cell in cells]  # -1 and 256 are named by the range checks
    return values


# ---- a folder of images, one subfolder per class ----------------------------------------


def _gray(im, path: Path) -> np.ndarray:
    """Grayscale uint8; a transparent background is filled with the colour opposite the ink."""
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32)
        alpha = rgba[..., 3] / 255
        luma = np.asarray(im.convert("RGBA").convert("L"), dtype=np.float32)
        ink = (luma * alpha).sum() / max(alpha.sum(), 1e-6)  # mean brightness of what is drawn
        page = 255.0 if ink < 128 else 0.0  # dark ink goes on white paper, light ink on black
        return np.rint(luma * alpha + page * (1 - alpha)).astype(np.uint8)
    if im.mode.startswith(("I", "F")):  # deeper or float images: as predict scales them
        from digitlab.ink.prepare import ImageError, deep_gray

        try:
            return np.rint(deep_gray(im, str(path))).astype(np.uint8)
        except ImageError as e:
            raise DataError(str(e)) from None
    return np.asarray(im.convert("L"), dtype=np.uint8)


def read_image(path: Path) -> np.ndarray:
    """One image file as uint8 (28, 28), 0 = background (inverted when the page is light); an
    image of another size, prepared as predict prepares one (`prepared`)."""
    from PIL import Image, UnidentifiedImageError

    raw = read_limited(path, "an image file", "MAX_IMAGE_BYTES")
    try:
        with Image.open(io.BytesIO(raw)) as im:
            width, height = im.size  # from the header: nothing is decoded yet
            if width * height > limits.MAX_IMAGE_PIXELS:
                raise DataError(
                    f"{path}: {width}x{height} pixels, over the limit of "
                    f"{limits.MAX_IMAGE_PIXELS:,} (digitlab.data.limits.MAX_IMAGE_PIXELS)"
                )
            a = _gray(im, path)
    except UnidentifiedImageError:
        raise DataError(f"{path}: not a readable image (not a format Pillow knows)") from None
    except DataError:
        raise
    except Exception as e:  # Pillow's decoders fail on damaged files in many ways
        raise DataError(
            f"{path}: not a readable image ({short(str(e) or type(e).__name__)})"
        ) from None
    if a.shape != (28, 28):
        return prepared(a, path)
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    a = 255 - a if border.mean() > 127 else a  # dark ink on a light page: flip it
    return a if mnist_style(a) else prepared(255 - a, path)


OFF_CENTRE = 3.0  # pixels between the ink's centre of mass and the middle: MNIST's are within 1


def mnist_style(digit: np.ndarray) -> bool:
    """Whether a 28x28 (light ink on dark) is placed as MNIST's digits are, or fills the square
    as Fashion-MNIST's pictures do. A small drawing away from the middle (its ink inside 20x20,
    its centre of mass more than OFF_CENTRE pixels off) trained a model on what `predict` never
    gives it, since predict centres every digit: it is prepared as a photo is. None of the
    first 20,000 training images of MNIST or Fashion-MNIST is."""
    from scipy import ndimage  # as ink.prepare centres a digit

    if not digit.any():
        return True  # a blank square: nothing to move (a blank page is refused elsewhere)
    rows, cols = np.flatnonzero(digit.any(axis=1)), np.flatnonzero(digit.any(axis=0))
    if rows[-1] - rows[0] >= 20 or cols[-1] - cols[0] >= 20:
        return True  # fills the square: a picture, not a digit to centre
    centre = np.array(ndimage.center_of_mass(digit.astype(np.float64)))
    return bool(np.hypot(*(centre - 13.5)) <= OFF_CENTRE)


def prepared(gray: np.ndarray, path: Path) -> np.ndarray:
    """An image of another size than MNIST's, prepared as `digitlab predict` prepares one
    (ink.prepare: the ink found on its page, cropped, fitted into 20x20 and centred as MNIST's
    digits are), so that a model trained on a folder sees what it will be asked to read. Squashed
    whole to 28x28 instead, a digit on a page trained a model that predict then fed another
    kind of image: 47% right on its test files by `evaluate`, 23% by `predict`."""
    from digitlab.ink.prepare import prepare

    digit, _ = prepare(gray, str(path))
    if digit is None:
        raise DataError(f"{path}: no digit found on it (a blank page, or ink too faint)")
    return digit


def _class_ids(folder: Path, class_dirs: list[Path]) -> tuple[dict[str, int], list[str]]:
    """Label of each class folder, and the class names. Digit-named folders keep their digit."""
    if len(class_dirs) > limits.MAX_CLASSES:
        raise DataError(
            f"{folder}: {len(class_dirs)} class folders, at most {limits.MAX_CLASSES} "
            "(labels are one byte)"
        )
    for p in class_dirs:
        if p.name.isnumeric() and not p.name.isascii():  # "²", "٣": which class is that?
            raise DataError(f"{p}: a class folder named by a number must use the digits 0-9")
    digits = [p.name for p in class_dirs if p.name.isdigit()]
    others = [p.name for p in class_dirs if not p.name.isdigit()]
    if digits and others:  # numbered in name order, '3' and '7' would become classes 0 and 1
        raise DataError(
            f"{folder}: class folders {echo(digits[0])} and {echo(others[0])}: name them all by "
            "their digit (a digit folder holds that digit), or none (classes in name order)"
        )
    if others:
        names = [p.name for p in class_dirs]
        return {name: i for i, name in enumerate(names)}, names
    ids = {p.name: int(p.name) for p in class_dirs}
    for p in class_dirs:
        if ids[p.name] >= limits.MAX_CLASSES:
            raise DataError(
                f"{p}: class id {ids[p.name]} is over {limits.MAX_CLASSES - 1} "
                "(labels are one byte)"
            )
    return ids, [str(i) for i in range(max(10, max(ids.values()) + 1))]


def read_image_folder(folder: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read `folder/<class>/*.png`, the classes in turns (one image of each, then the next of
    each, ...), so any first N images hold every class. Digit-named folders give that digit as
    the label."""
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(f"{folder}: no class subfolders (expected {folder}/0/*.png, ...)")
    ids, names = _class_ids(folder, class_dirs)
    files = {}
    for class_dir in class_dirs:
        files[class_dir] = sorted(
            p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not files[class_dir]:
            raise DataError(
                f"{class_dir}: holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                f"every subfolder of {folder} is read as one class"
            )
    count = sum(len(paths) for paths in files.values())
    check_declared((count, 28, 28), np.dtype(np.uint8), f"{folder}: {count:,} images")
    images, labels, turn = [], [], []
    for class_dir, paths in files.items():
        images += [read_image(p) for p in paths]
        labels += [ids[class_dir.name]] * len(paths)
        turn += range(len(paths))
    # the classes taken in turns, as MNIST's are mixed: read class by class, `--limit 500` of a
    # folder trained on its first class or two alone
    order = np.lexsort((np.array(labels), np.array(turn)))
    return np.stack(images)[order], np.array(labels, np.uint8)[order], names


# ---- one entry point ---------------------------------------------------------------------

Names = list[str] | None  # class names, when the source carries them (image folders)


def _split_folders(path: Path) -> bool:
    """True for the layout `data export --format png` writes: train/<class>/, test/<class>/."""
    subs = {p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")}
    return "train" in subs and subs <= {"train", "test"}


def read_any(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], Names]:
    """Read whatever `path` holds into role arrays (train_images, ...) and optional class names."""
    if str(path).strip() == "":
        raise DataError("empty path: give a file or folder to import")
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir():
        if find_idx_files(path):
            return read_idx_folder(path), None
        if (path / "train.csv").exists():  # Kaggle digit-recognizer layout
            images, labels = read_csv(path / "train.csv")
            if labels is None:
                raise DataError(f"{path / 'train.csv'}: has no label column")
            arrays = {"train_images": images, "train_labels": labels}
            if (path / "test.csv").exists():
                arrays["test_images"], test_labels = read_csv(path / "test.csv")
                if test_labels is not None:
                    arrays["test_labels"] = test_labels
            return arrays, None
        if _split_folders(path):
            arrays, names = read_any(path / "train")
            if (path / "test").is_dir():
                arrays |= _as_test(read_any(path / "test"), names, path / "test")
            return arrays, names
        images, labels, names = read_image_folder(path)
        return {"train_images": images, "train_labels": labels}, names
    suffix = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
    if suffix == ".npz":
        return read_npz(path), None
    if suffix == ".csv":
        images, labels = read_csv(path)
        arrays = {"train_images": images}
        if labels is not None:
            arrays["train_labels"] = labels
        return arrays, None
    if IDX_NAME.match(path.name) or suffix in {".idx", ".idx.gz", ".ubyte", ".ubyte.gz"}:
        raise DataError(f"{path}: point at the folder holding the IDX images and labels files")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        raise DataError(f"{path}: a single image; put images in one subfolder per class")
    raise DataError(
        f"{path}: unknown format; expected a folder (IDX files, Kaggle train.csv, or one "
        "subfolder of images per class), a .csv or a .npz file"
    )


def _as_test(read: tuple[dict[str, np.ndarray], Names], names: Names, where: Path) -> dict:
    """A second source's train split as the test split, its labels mapped onto `names`."""
    arrays, test_names = read
    out = {"test_images": arrays["train_images"]}
    labels = arrays.get("train_labels")
    if labels is not None and test_names is not None and names is not None and test_names != names:
        unknown = sorted(set(test_names[i] for i in np.unique(labels)) - set(names))
        if unknown:
            raise DataError(f"{where}: class {echo(unknown[0])} is not among the training classes")
        lookup = np.array([names.index(n) if n in names else 0 for n in test_names], np.uint8)
        labels = lookup[labels]
    if labels is not None:
        out["test_labels"] = labels
    return out


def load_files(path: str | os.PathLike[str], test: str | os.PathLike[str] | None = None) -> Dataset:
    """Import a user's data as a Dataset; `test` optionally names a separate test source.

    A single-split source (one CSV, one image folder) fills `train` and leaves `test` empty.
    """
    arrays, names = read_any(path)
    if test is not None:
        arrays |= _as_test(read_any(test), names, Path(test))
    labels = [arrays.get(f"{s}_labels") for s in ("train", "test")]
    if names is None:
        top = max((int(y.max()) for y in labels if y is not None and y.size), default=9)
        names = [str(i) for i in range(max(top + 1, 10))]
        stray_labels(path, [y for y in labels if y is not None], len(names))
    for y in labels:
        if y is not None and y.size and int(y.max()) >= len(names):
            raise DataError(f"{path}: label {int(y.max())} but only {len(names)} classes")
    empty = Split(np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.uint8))
    splits = {
        s: Split(arrays[f"{s}_images"], arrays.get(f"{s}_labels"))
        if f"{s}_images" in arrays
        else empty
        for s in ("train", "test")
    }
    return Dataset(
        name=Path(path).resolve().name or str(path),
        classes=names,
        train=splits["train"],
        test=splits["test"],
        source=str(path),
        verified=False,
        ref=str(path),
    )
