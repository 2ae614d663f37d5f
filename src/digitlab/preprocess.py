"""From uint8 digits to what a network eats: THE normalisation, the input check, the split.

>>> x = normalise(ds.train.images)                # float32 (N, 1, 28, 28), mean 0, std 1
>>> train_idx, val_idx = stratified_split(ds.train.labels, 0.1, seed=0)

Images live as the dataset holds them, uint8 (N, 28, 28) with 0 = background, everywhere a
user can hand them over. They become floats in one place only: `normalise` (or `to_float`
then `standardise`, when augmentation works on [0, 1] pixels in between). Both engines and
every job call these; `standardise` works in place on NumPy arrays and torch tensors alike.
"""

from __future__ import annotations

import numpy as np

from digitlab.errors import DigitlabError

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # of the training pixels scaled to [0, 1]


def check_images(images, what: str = "images", side: int | None = 28) -> np.ndarray:
    """`images` as uint8 (N, H, W), or a DigitlabError saying what was given and what is wanted.

    Integer arrays holding only 0..255 are converted; floats are refused, because a float
    image is ambiguous (0..1, 0..255 or already normalised) and guessing gives wrong answers
    silently; so are integers that are all 0 or 1 (a binarised batch read as 0..255 is ink
    too faint to see: 13% right where the same masks times 255 read 99%)."""
    a = np.asarray(images)
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    shape = f"(N, {side}, {side})" if side else "(N, H, W)"
    if a.ndim == 2 and a.shape[1] == 784 and a.shape[0] != 784:
        raise DigitlabError(
            f"{what}: got shape {a.shape}, flattened digits; reshape to (N, 28, 28)"
        )
    if a.ndim == 2 and (side is None or a.shape == (side, side)):
        raise DigitlabError(f"{what}: got one image of shape {a.shape}; pass a batch {shape}")
    if a.ndim != 3 or (side is not None and a.shape[1:] != (side, side)):
        raise DigitlabError(f"{what}: expected uint8 {shape}, got an array of shape {a.shape}")
    if a.dtype.kind in "iu":
        if a.dtype != np.uint8 and a.size and (a.min() < 0 or a.max() > 255):
            raise DigitlabError(
                f"{what}: {a.dtype} values {a.min()}..{a.max()} do not fit pixels 0..255"
            )
        if a.size and a.max() == 1:
            raise DigitlabError(
                f"{what}: every value is 0 or 1, a mask, not pixels 0..255; pass "
                "(x * 255).astype(np.uint8)"
            )
        a = a if a.dtype == np.uint8 else a.astype(np.uint8)
        border = light_border(a)
        if border is not None:
            raise DigitlabError(
                f"{what}: their borders are light (median {border:.0f} of 255), dark ink on "
                "white paper; digitlab's images are light ink on black (0 = background): pass "
                "255 - images"
            )
        return a
    if a.dtype.kind == "f":
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        hint = (
            "they look like pixels / 255: pass (x * 255).round().astype(np.uint8)"
            if lo >= 0 and hi <= 1
            else "pass the dataset's own uint8 images; digitlab normalises them itself"
        )
        raise DigitlabError(
            f"{what}: expected uint8 pixels 0..255 (0 = background), got {a.dtype} values in "
            f"[{lo:.3g}, {hi:.3g}]; {hint}"
        )
    raise DigitlabError(f"{what}: expected uint8 pixels 0..255, got dtype {a.dtype}")


LIGHT_BORDER = 200  # median of the images' edge pixels past which a batch is dark on white


def light_border(images: np.ndarray) -> float | None:
    """The median over uint8 images (N, H, W) of each one's mean edge pixel, when it is past
    LIGHT_BORDER: scans, dark ink on white, whose every digit a model trained on MNIST (0 =
    background) read as the same class: 1% right, without a word. None for anything else
    (MNIST's edges are 0; random noise's 127)."""
    if not images.size or min(images.shape[1:]) < 3:
        return None
    edges = [images[:, 0], images[:, -1], images[:, 1:-1, 0], images[:, 1:-1, -1]]
    means = np.concatenate(edges, axis=1, dtype=np.float32).mean(axis=1)
    median = float(np.median(means))
    return median if median > LIGHT_BORDER else None


def check_labels(labels, n: int, num_classes: int, what: str = "labels") -> np.ndarray:
    """`labels` as int (N,) in 0..num_classes-1 for N images, or a DigitlabError that says why."""
    y = np.asarray(labels)
    if y.shape != (n,):
        raise DigitlabError(f"{what}: expected shape ({n},) for {n} images, got {y.shape}")
    if y.dtype.kind not in "iu":
        raise DigitlabError(f"{what}: expected integer class indices, got dtype {y.dtype}")
    if n and (y.min() < 0 or y.max() >= num_classes):
        raise DigitlabError(
            f"{what}: values {y.min()}..{y.max()} outside the model's classes 0..{num_classes - 1}"
        )
    return y


def pixels(images, what: str = "images") -> np.ndarray:
    """uint8 pixels as they are; other integers 0..255 converted; anything else (floats, which
    may be 0..1, 0..255 or normalised already; bools) a DigitlabError saying what was given."""
    a = np.asarray(images)
    if a.dtype == np.uint8 and (a.ndim == 3 or (a.ndim == 4 and a.shape[1] == 1)):
        return a  # a batch, as the caller checked it (a training step's): no pass over it
    return check_images(a, what, side=None)  # a batch (N, H, W), or refused saying why


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28) in [0, 1]; floats are refused (see pixels)."""
    x = pixels(images).astype(np.float32)
    x *= np.float32(1 / 255)
    return x[:, None] if x.ndim == 3 else x


def standardise(x, mean: float = MNIST_MEAN, std: float = MNIST_STD):
    """(x - mean) / std in place, for float32 pixels in [0, 1] (NumPy array or torch tensor)."""
    if isinstance(x, np.ndarray) and x.dtype.kind != "f":
        raise DigitlabError(
            f"standardise: expected float pixels in [0, 1], got {x.dtype}; normalise() takes "
            "uint8 images"
        )
    x -= np.float32(mean) if isinstance(x, np.ndarray) else mean
    x *= np.float32(1 / std) if isinstance(x, np.ndarray) else 1 / std
    return x


def normalise(images: np.ndarray, mean: float = MNIST_MEAN, std: float = MNIST_STD) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28), (x / 255 - mean) / std: what a model eats."""
    return standardise(to_float(images), mean, std)


def model_input(x: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    """Normalised input (N, C, H, W) for a model that reads `input_shape` (C, H, W), or a
    DigitlabError naming both shapes (14x14 digits failed deep in a matrix product)."""
    if x.shape[1:] != tuple(input_shape):
        want = "x".join(str(d) for d in input_shape[1:])
        raise DigitlabError(
            f"images: the model reads {want} images, got shape {tuple(x.shape[1:])}"
        )
    return x


def as_normalised(x, mean: float = MNIST_MEAN, std: float = MNIST_STD) -> np.ndarray:
    """What a model's `logits` accepts: uint8 images (N, H, W), normalised here, or floats that
    are already normalised (N, 1, H, W). Floats that cannot be normalised input (nothing below
    zero, where normalised background lies: raw pixels, or pixels / 255) are refused, not
    misread."""
    x = np.asarray(x)
    if x.dtype.kind in "iub":  # images 0..255 (N, H, W) or (N, 1, H, W), checked
        return normalise(check_images(x, "images", side=None), mean, std)
    if x.dtype.kind != "f":
        raise DigitlabError(f"expected uint8 images or normalised floats, got dtype {x.dtype}")
    background = -mean / std  # where a 0 pixel lands
    if mean > 0 and x.size and float(x.min()) >= 0 and float(x.max()) > 0:
        lo, hi = float(x.min()), float(x.max())
        raise DigitlabError(
            f"got {x.dtype} values in [{lo:.3g}, {hi:.3g}], which are not normalised input "
            f"(background would be {background:.3g}); pass the uint8 images 0..255 instead"
        )
    return x[:, None] if x.ndim == 3 else x


def one_hot(labels: np.ndarray, num_classes: int = 10) -> np.ndarray:
    """uint (N,) -> float32 (N, num_classes)."""
    out = np.zeros((len(labels), num_classes), np.float32)
    out[np.arange(len(labels)), labels] = 1
    return out


def stratified_split(
    labels: np.ndarray, fraction: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, held-out) with `fraction` of every class held out; both sorted."""
    if not 0 <= fraction < 1:
        raise DigitlabError(f"split fraction must be in [0, 1), got {fraction}")
    labels = np.asarray(labels)
    if labels.ndim != 1:  # one-hot rows held out indices past the end, without a word
        raise DigitlabError(f"labels: expected class ids (N,), got shape {labels.shape}")
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        held.append(rng.permutation(idx)[: round(len(idx) * fraction)])
    held_out = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
    keep = np.setdiff1d(np.arange(len(labels)), held_out, assume_unique=True)
    return keep, held_out
