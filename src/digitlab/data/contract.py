"""The Dataset contract every reader converts to: uint8 images (N, 28, 28), uint8 labels (N,).

`as_images` and `as_labels` accept the forms people store digits in (flat rows of 784, 0..1
floats, one-hot labels) and refuse anything else with a `DataError` naming the source.

    >>> images = as_images(np.load("x.npy"), "x.npy")          # (N, 784) floats -> (N, 28, 28)
    >>> labels = as_labels(one_hot, len(images), "y.npy")      # (N, 10) one-hot -> (N,)
"""

from __future__ import annotations

import numpy as np

from digitlab.data.limits import short
from digitlab.errors import DataError

ROLES = ("train_images", "train_labels", "test_images", "test_labels")
Arrays = dict[str, np.ndarray]  # role ("train_images", ...) -> array


def as_images(array: np.ndarray, name: str) -> np.ndarray:
    """Check and convert to uint8 (N, 28, 28); accepts (N, 784), 0..255 ints, 0..1 floats and
    0/1 and bool masks (binarised digits, scaled to 0/255: read as 0..255 they are ink too faint to
    see)."""
    a = np.asarray(array)
    if a.ndim == 2 and a.shape[1] == 784:
        a = a.reshape(-1, 28, 28)
    if a.ndim != 3 or a.shape[1:] != (28, 28):
        raise DataError(
            f"{name}: images have shape {short(str(a.shape))}, expected (N, 28, 28) or (N, 784)"
        )
    if a.dtype == bool:  # a mask, as digitlab.read takes one
        a = a.astype(np.uint8)
    if a.dtype == np.uint8:
        return a * np.uint8(255) if a.size and a.max() == 1 else a
    if a.dtype.kind == "b" or a.dtype.kind not in "iuf":
        raise DataError(f"{name}: images have dtype {a.dtype}, expected integers or floats")
    if a.size and not np.isfinite(a).all():
        raise DataError(f"{name}: images contain NaN or infinite values")
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if lo < 0 or hi > 255:
        raise DataError(f"{name}: pixel values span {lo:g}..{hi:g}, expected 0..255 (or 0..1)")
    if 0 < hi <= 1.0:  # 0..1 floats, or a 0/1 mask
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


def stray_labels(path, labels: list[np.ndarray], classes: int) -> None:
    """Refuse numbered labels past 9 with a gap below them: one stray 11 among digits made
    12 classes, two of them empty, without a word (the model had outputs no image taught).
    Labels 1-10 (SVHN's, whose 10 means 0) made 11 classes, class 0 empty: refused alike."""
    counts = sum((np.bincount(y, minlength=classes) for y in labels), np.zeros(classes, int))
    gaps = [k for k in range(10, classes) if counts[k] == 0]
    if gaps:
        top = classes - 1
        raise DataError(
            f"{path}: label {top} is given to {int(counts[top])} image(s) but no image has label "
            f"{gaps[0]}: labels past 9 must follow on without a gap (a stray label?)"
        )
    if classes == 11 and counts[0] == 0:  # SVHN's labels run 1-10, its 10 meaning 0
        raise DataError(
            f"{path}: labels reach 10 but no image has label 0: labels must start at 0 "
            "(labels 1-10 as SVHN gives them? relabel 10 as 0)"
        )
