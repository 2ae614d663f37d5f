"""Import digit images a user already has: IDX files, Kaggle CSV, NPZ, image folders.

Each reader returns arrays in the Dataset contract (uint8 images (N, 28, 28), 0 =
background) or raises `DataError` naming the file (and line) and what is wrong.

    >>> ds = load_files("digit-recognizer/")        # Kaggle train.csv (+ unlabeled test.csv)
    >>> ds = load_files("mnist.npz")                # Keras layout: x_train, y_train, ...
    >>> ds = load_files("my_digits/")               # my_digits/0/*.png, my_digits/1/*.png, ...
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path

import numpy as np

from digitlab.data.dataset import Dataset, Split
from digitlab.data.idx import read_idx
from digitlab.errors import DataError

ROLES = ("train_images", "train_labels", "test_images", "test_labels")
IDX_NAME = re.compile(r"^(train|t10k|test)-(images|labels)[-.]idx([13])-ubyte(\.gz)?$")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm"}
DIGIT_CLASSES = [str(d) for d in range(10)]
NPZ_LAYOUTS = (  # (train images, train labels, test images, test labels)
    ("x_train", "y_train", "x_test", "y_test"),  # keras.datasets.mnist
    ("train_images", "train_labels", "test_images", "test_labels"),
    ("images", "labels", None, None),
)


# ---- validation shared by every reader ------------------------------------------------


def as_images(array: np.ndarray, name: str) -> np.ndarray:
    """Check and convert to uint8 (N, 28, 28); accepts (N, 784), 0..255 ints or 0..1 floats."""
    a = np.asarray(array)
    if a.ndim == 2 and a.shape[1] == 784:
        a = a.reshape(-1, 28, 28)
    if a.ndim != 3 or a.shape[1:] != (28, 28):
        raise DataError(f"{name}: images have shape {a.shape}, expected (N, 28, 28) or (N, 784)")
    if a.dtype == np.uint8:
        return a
    if a.dtype.kind == "b" or a.dtype.kind not in "iuf":
        raise DataError(f"{name}: images have dtype {a.dtype}, expected integers or floats")
    if a.size and not np.isfinite(a).all():
        raise DataError(f"{name}: images contain NaN or infinite values")
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if lo < 0 or hi > 255:
        raise DataError(f"{name}: pixel values span {lo:g}..{hi:g}, expected 0..255 (or 0..1)")
    if a.dtype.kind == "f" and hi <= 1.0:
        a = a * 255.0
    return np.rint(a).astype(np.uint8)


def as_labels(array: np.ndarray, n: int, name: str) -> np.ndarray:
    """Check and convert to uint8 (n,) class ids."""
    y = np.asarray(array)
    if y.ndim == 2 and y.shape[1] > 1 and set(np.unique(y)) <= {0, 1}:
        y = y.argmax(axis=1)  # one-hot
    y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
    if y.ndim != 1 or len(y) != n:
        raise DataError(f"{name}: {y.shape} labels for {n} images")
    if y.dtype.kind == "f" and y.size and not (np.isfinite(y).all() and (y == np.rint(y)).all()):
        raise DataError(f"{name}: labels must be whole numbers")
    if y.dtype.kind not in "iuf":
        raise DataError(f"{name}: labels have dtype {y.dtype}, expected integers")
    if y.size and (y.min() < 0 or y.max() > 255):
        raise DataError(f"{name}: labels span {y.min()}..{y.max()}, expected 0..255")
    return y.astype(np.uint8)


# ---- IDX ------------------------------------------------------------------------------


def find_idx_files(folder: Path) -> dict[str, Path]:
    """Map roles (train_images, ...) to IDX files in `folder`, by their usual names."""
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        m = IDX_NAME.match(p.name)
        if m and p.is_file():
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


# ---- NPZ ------------------------------------------------------------------------------


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Read an .npz (no pickle) in one of NPZ_LAYOUTS."""
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            for layout in NPZ_LAYOUTS:
                if set(layout[:2]) <= keys:  # the test pair is optional
                    arrays = {
                        role: z[k] for role, k in zip(ROLES, layout, strict=True) if k in keys
                    }
                    break
            else:
                raise DataError(
                    f"{path}: NPZ has arrays {sorted(keys)}; expected x_train/y_train"
                    "[/x_test/y_test], train_images/train_labels/..., or images/labels"
                )
    except (zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"{path}: not a readable NPZ file ({e})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    except ValueError as e:
        if "pickle" in str(e) and zipfile.is_zipfile(path):  # object arrays: refused, never run
            raise DataError(
                f"{path}: holds Python objects (pickle), which digitlab refuses to load"
            ) from None
        raise DataError(f"{path}: not a readable NPZ file ({e})") from None
    out = {}
    for split in ("train", "test"):
        if f"{split}_images" in arrays:
            out[f"{split}_images"] = as_images(arrays[f"{split}_images"], f"{path}:{split} images")
            n = len(out[f"{split}_images"])
            out[f"{split}_labels"] = as_labels(
                arrays[f"{split}_labels"], n, f"{path}:{split} labels"
            )
    return out


# ---- CSV (Kaggle digit-recognizer) -----------------------------------------------------


def read_csv(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Read `label,pixel0..pixel783` rows (or unlabeled `pixel0..pixel783`), header optional."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text CSV file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    lines = text.splitlines()
    if not lines or not text.strip():
        raise DataError(f"{path}: file is empty")
    first = 1
    header = lines[0].split(",")
    has_header = not header[0].strip().lstrip("-").isdigit()
    if has_header:
        first = 2
        lines = lines[1:]
        labeled = header[0].strip().lower() == "label"
        columns = len(header)
    else:
        columns = len(header)
        labeled = columns == 785
    expected = 785 if labeled else 784
    if columns != expected:
        what = "a label and 784 pixels" if labeled else "784 pixels"
        raise DataError(f"{path}: line 1: {columns} columns, expected {expected} ({what})")
    rows = [(i, line) for i, line in enumerate(lines, start=first) if line.strip()]
    if not rows:
        raise DataError(f"{path}: has a header but no data rows")
    body = "\n".join(line for _, line in rows)
    try:  # fast path: NumPy's C parser; on any failure, find the bad line ourselves
        values = np.loadtxt(body.splitlines(), delimiter=",", dtype=np.int64, ndmin=2)
        if values.shape[1] != expected:
            raise ValueError
    except ValueError:
        values = None
        for lineno, line in rows:
            cells = line.split(",")
            if len(cells) != expected:
                raise DataError(
                    f"{path}: line {lineno}: {len(cells)} columns, expected {expected}"
                ) from None
            for col, cell in enumerate(cells):
                if not cell.strip().lstrip("-").isdigit():
                    raise DataError(
                        f"{path}: line {lineno}, column {col + 1}: {cell.strip()!r} is not "
                        "a whole number"
                    ) from None
                if not -1 <= int(cell) <= 256:  # too large for int64 reaches here
                    raise DataError(
                        f"{path}: line {lineno}, column {col + 1}: {cell.strip()[:20]} is "
                        "outside 0..255"
                    ) from None
        raise DataError(f"{path}: could not parse as CSV") from None
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


# ---- a folder of images, one subfolder per class ----------------------------------------


def _gray(im) -> np.ndarray:
    """Grayscale uint8; a transparent background is filled with the colour opposite the ink."""
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32)
        alpha = rgba[..., 3] / 255
        luma = np.asarray(im.convert("RGBA").convert("L"), dtype=np.float32)
        ink = (luma * alpha).sum() / max(alpha.sum(), 1e-6)  # mean brightness of what is drawn
        page = 255.0 if ink < 128 else 0.0  # dark ink goes on white paper, light ink on black
        return np.rint(luma * alpha + page * (1 - alpha)).astype(np.uint8)
    if im.mode.startswith(("I", "F")):  # 16-bit or float images: scale to 0..255
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
        return np.rint(np.clip(a, 0, top) * (255 / top)).astype(np.uint8)
    return np.asarray(im.convert("L"), dtype=np.uint8)


def read_image(path: Path) -> np.ndarray:
    """One image file as uint8 (28, 28), 0 = background (inverted when the page is light)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            a = _gray(im)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: not a readable image ({e})") from None
    if a.shape != (28, 28):
        a = np.asarray(Image.fromarray(a).resize((28, 28), Image.Resampling.LANCZOS))
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    return 255 - a if border.mean() > 127 else a  # dark ink on a light page: flip it


def read_image_folder(folder: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read `folder/<class>/*.png`. Digit-named folders give that digit as the label."""
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(f"{folder}: no class subfolders (expected {folder}/0/*.png, ...)")
    if all(p.name.isdigit() for p in class_dirs):
        ids = {p.name: int(p.name) for p in class_dirs}
        names = [str(i) for i in range(max(10, max(ids.values()) + 1))]
    else:
        names = [p.name for p in class_dirs]
        ids = {name: i for i, name in enumerate(names)}
    if len(names) > 256:
        raise DataError(f"{folder}: {len(names)} classes, at most 256 are supported")
    images, labels = [], []
    for class_dir in class_dirs:
        files = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(
                f"{class_dir}: holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                f"every subfolder of {folder} is read as one class"
            )
        images += [read_image(p) for p in files]
        labels += [ids[class_dir.name]] * len(files)
    return np.stack(images), np.array(labels, np.uint8), names


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
        if (path / "train.csv").is_file():  # Kaggle digit-recognizer layout
            images, labels = read_csv(path / "train.csv")
            if labels is None:
                raise DataError(f"{path / 'train.csv'}: has no label column")
            arrays = {"train_images": images, "train_labels": labels}
            if (path / "test.csv").is_file():
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
            raise DataError(f"{where}: class {unknown[0]!r} is not among the training classes")
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
