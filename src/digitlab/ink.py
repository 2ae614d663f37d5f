"""Real images to MNIST-style digits: light ink on black, fitted in 20x20, centred by mass.

    >>> digit, steps = prepare("photo_of_a_7.jpg")     # uint8 (28, 28), dict of named steps
    >>> digit is None                                  # True for a blank page ("no digit found")

A photo of dark ink on white paper, resized to 28x28, looks nothing like MNIST; that, not
the model, is why models "get my handwriting wrong". The steps, each kept for `--show-steps`:
load (EXIF orientation, alpha onto white, palette/16-bit/CMYK to gray) → background (a heavy
blur estimates the paper, so uneven lighting cancels) → ink (paper minus image, or image minus
paper for light ink) → mask (Otsu threshold, specks removed) → crop → 20x20 box (aspect kept,
anti-aliasing kept) → 28x28 centred by centre of mass, as LeCun et al. prepared MNIST.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy import ndimage

from digitlab.errors import DigitlabError

MAX_PIXELS = 50_000_000  # larger images are refused before they are decoded
WORK_SIDE = 320  # images are reduced to at most this side before any processing


class ImageError(DigitlabError):
    """An input that is not an image digitlab can read."""


def load(
    source: str | os.PathLike[str] | bytes | np.ndarray | Image.Image, name: str = ""
) -> np.ndarray:
    """Any image Pillow reads, as float32 gray (H, W) in 0..255, dark ink on light paper or not."""
    if isinstance(source, np.ndarray):
        a = np.asarray(source, np.float32)
        if a.ndim == 3:
            a = a[..., :3].mean(axis=2)
        if a.ndim != 2 or a.size == 0:
            raise ImageError(f"{name or 'array'}: expected a 2-D gray or (H, W, 3) color image")
        return a
    label = name or (str(source) if not isinstance(source, bytes | Image.Image) else "image")
    try:
        if isinstance(source, Image.Image):
            im = source
        else:
            data = source if isinstance(source, bytes) else Path(source).read_bytes()
            if not data:
                raise ImageError(f"{label}: file is empty")
            im = Image.open(io.BytesIO(data))
        if im.width * im.height > MAX_PIXELS:
            raise ImageError(
                f"{label}: {im.width}x{im.height} pixels is too large (limit {MAX_PIXELS:,})"
            )
        im.seek(0)  # animated images: the first frame
        im = ImageOps.exif_transpose(im)
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            rgba = im.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            im = Image.alpha_composite(white, rgba)
        if im.mode.startswith("I;16") or im.mode in ("I", "F"):
            a = np.asarray(im, np.float32)
            top = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
            gray = np.clip(a, 0, top) * (255 / top)
        else:
            gray = np.asarray(im.convert("L"), np.float32)
    except FileNotFoundError:
        raise ImageError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{label}: is a folder, not an image") from None
    except Image.DecompressionBombError:
        raise ImageError(
            f"{label}: too many pixels to be a digit (a decompression bomb?)"
        ) from None
    except UnidentifiedImageError:
        raise ImageError(f"{label}: not an image format Pillow can read") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise ImageError(f"{label}: not a readable image ({e})") from None
    if gray.size == 0:
        raise ImageError(f"{label}: the image has no pixels")
    return gray


def shrink(gray: np.ndarray, side: int = WORK_SIDE) -> np.ndarray:
    """Reduce so the longer side is at most `side` (area averaging); small images are kept."""
    h, w = gray.shape
    scale = side / max(h, w)
    if scale >= 1:
        return gray
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(gray).resize(size, Image.Resampling.BOX), np.float32)


def otsu(values: np.ndarray) -> float:
    """The threshold between two classes of values that maximises their between-class variance."""
    hist, edges = np.histogram(values, bins=256, range=(0, max(float(values.max()), 1e-6)))
    weights = hist.astype(np.float64)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(weights)
    w1 = w0[-1] - w0
    m0 = np.cumsum(weights * centres) / np.maximum(w0, 1e-12)
    m1 = (np.sum(weights * centres) - np.cumsum(weights * centres)) / np.maximum(w1, 1e-12)
    between = w0 * w1 * (m0 - m1) ** 2
    return float(centres[int(np.argmax(between))])


def to_mnist(ink: np.ndarray, box: int = 20, size: int = 28) -> np.ndarray:
    """Fit ink (light on black, cropped) into a box x box square keeping the aspect ratio, place it
    in size x size and shift it so its centre of mass is at the centre."""
    h, w = ink.shape
    scale = box / max(h, w)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = np.asarray(
        Image.fromarray(ink.astype(np.float32)).resize(new, Image.Resampling.LANCZOS), np.float32
    )
    small = np.clip(small, 0, 255)
    canvas = np.zeros((size, size), np.float32)
    top, left = (size - new[1]) // 2, (size - new[0]) // 2
    canvas[top : top + new[1], left : left + new[0]] = small
    if canvas.sum() > 0:
        cy, cx = ndimage.center_of_mass(canvas)
        canvas = ndimage.shift(
            canvas, ((size - 1) / 2 - cy, (size - 1) / 2 - cx), order=1, mode="constant"
        )
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


def deskew(digit: np.ndarray) -> np.ndarray:
    """Undo slant with a shear from the second moments (rows stay, columns shift)."""
    x = digit.astype(np.float32)
    if x.sum() == 0:
        return digit
    r, c = np.indices(x.shape)
    cy, cx = ndimage.center_of_mass(x)
    mu11 = ((r - cy) * (c - cx) * x).sum() / x.sum()
    mu02 = ((r - cy) ** 2 * x).sum() / x.sum()
    alpha = mu11 / max(mu02, 1e-6)
    matrix = np.array([[1.0, 0.0], [alpha, 1.0]])
    offset = np.array([cy, cx]) - matrix @ np.array([cy, cx])
    out = ndimage.affine_transform(x, matrix, offset=offset, order=1, mode="constant")
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def prepare(
    source, name: str = "", deskew_digit: bool = False
) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
    """An image of one digit as MNIST's uint8 (28, 28), or None when no ink is found; every step."""
    steps: dict[str, np.ndarray] = {}
    gray = shrink(load(source, name))
    steps["input (gray)"] = gray
    sigma = max(gray.shape) / 6
    background = ndimage.gaussian_filter(gray, sigma=sigma, mode="nearest")
    light_paper = np.median(gray) >= 128
    ink = (background - gray) if light_paper else (gray - background)
    ink = np.clip(
        ndimage.gaussian_filter(ink, sigma=max(gray.shape) / 250), 0, None
    )  # a little denoising
    steps["background (estimated paper)"] = background
    steps["ink (paper removed)"] = ink
    if ink.max() < 24:  # no stroke stands out from the paper: a blank page
        return None, steps
    threshold = otsu(ink)
    mask = ink > threshold
    labels, n = ndimage.label(mask)
    if n == 0:
        return None, steps
    sizes = ndimage.sum(mask, labels, index=np.arange(1, n + 1))
    keep = np.isin(labels, 1 + np.flatnonzero(sizes >= 0.1 * sizes.max()))  # drop specks
    steps["mask (Otsu, specks removed)"] = keep.astype(np.float32) * 255
    rows, cols = np.flatnonzero(keep.any(axis=1)), np.flatnonzero(keep.any(axis=0))
    pad = max(1, round(0.02 * max(gray.shape)))
    r0, r1 = max(rows[0] - pad, 0), min(rows[-1] + pad + 1, gray.shape[0])
    c0, c1 = max(cols[0] - pad, 0), min(cols[-1] + pad + 1, gray.shape[1])
    near_ink = ndimage.binary_dilation(keep, iterations=pad)
    level = np.percentile(ink[keep], 90)  # the ink's own strength maps to 255; anti-aliasing stays
    crop = np.where(near_ink, np.clip(ink / max(level, 1e-6) * 255, 0, 255), 0)[r0:r1, c0:c1]
    steps["cropped ink"] = crop
    digit = to_mnist(crop)
    if deskew_digit:
        digit = deskew(digit)
    steps["MNIST style (20x20 in 28x28, centred)"] = digit.astype(np.float32)
    return digit, steps
