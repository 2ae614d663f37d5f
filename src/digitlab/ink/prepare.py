"""Real images to MNIST-style digits: light ink on black, fitted in 20x20, centred by mass.

    >>> digit, steps = prepare("photo_of_a_7.jpg")     # uint8 (28, 28), dict of named steps
    >>> digit is None                                  # True for a blank page ("no digit found")

A photo of dark ink on white paper, resized to 28x28, looks nothing like MNIST; that, not
the model, is why models "get my handwriting wrong". The steps, each kept for `--show-steps`:
load (EXIF orientation, alpha onto white, palette/16-bit/CMYK to gray) → background (a heavy
blur estimates the paper, so uneven lighting cancels) → ink (paper minus image, or image minus
paper for light ink) → mask (Otsu threshold, specks removed) → crop → strokes fitted in 20x20
(aspect kept, anti-aliasing kept) → 28x28 centred by centre of mass, as LeCun et al. prepared
MNIST.
"""

from __future__ import annotations

import io
import os
import stat

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError
from scipy import ndimage

from digitlab.data import safe_io
from digitlab.errors import DataError, DigitlabError
from digitlab.ink import forms
from digitlab.ink.place import as_placed, crop_digit, deskew, to_mnist

MAX_PIXELS = 50_000_000  # larger images are refused before they are decoded
WORK_SIDE = 160  # images are reduced to at most this side before any processing
SPECK_SHARE = 0.1  # a digit's ink pieces smaller than this share of its largest are specks
# ink in more pieces than this (after specks are removed) is noise or texture, not a digit: of
# 4,500 held-out MNIST digits, raw, photographed or degraded, none had more than 2; a photo of
# random noise has about 100
MAX_PIECES = 8
CROPPED = "cropped ink"  # the step whose shape is the digit's ink box (Predictor reads it)
TURNS = {  # EXIF orientation -> the turn that shows the image upright (as exif_transpose)
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class ImageError(DigitlabError):
    """An input that is not an image digitlab can read."""


def load(
    source: str | os.PathLike[str] | bytes | np.ndarray | Image.Image,
    name: str = "",
    side: int | None = None,
) -> np.ndarray:
    """Any image Pillow reads, as float32 gray (H, W) in 0..255 (see `load_sized`)."""
    return load_sized(source, name, side)[0]


def load_sized(
    source: str | os.PathLike[str] | bytes | np.ndarray | Image.Image,
    name: str = "",
    side: int | None = None,
) -> tuple[np.ndarray, tuple[int, int]]:
    """Any image Pillow reads, as float32 gray (H, W) in 0..255, dark ink on light paper or not,
    and the image's (width, height) as stored, after EXIF orientation.

    With `side`, a JPEG is decoded at the smallest of 1/2, 1/4, 1/8 scale that keeps its longer
    side at least `side` pixels (much faster than decoding in full and then shrinking)."""
    if isinstance(source, np.ndarray):
        a = array_gray(source, name or "array")
        return a, (a.shape[1], a.shape[0])
    if isinstance(source, bytearray | memoryview):
        source = bytes(source)
    if hasattr(source, "read") and not isinstance(source, Image.Image):  # an open file
        label = name or str(getattr(source, "name", "file"))
        try:
            source = source.read()
        except (OSError, ValueError) as e:
            raise ImageError(f"{label}: cannot be read ({e})") from None
        if not isinstance(source, bytes):
            raise ImageError(f"{label}: opened as text; open it with 'rb'")
    elif not isinstance(source, str | os.PathLike | bytes | Image.Image):
        raise ImageError(
            f"{name or type(source).__name__}: a {type(source).__name__} is not an image; give "
            "a file path, bytes, a NumPy array or a PIL image"
        )
    else:
        label = name or (str(source) if not isinstance(source, bytes | Image.Image) else "image")
    try:
        if isinstance(source, Image.Image):
            im = source
        else:
            data = source if isinstance(source, bytes) else file_bytes(source)
            if not data:
                raise ImageError(f"{label}: file is empty")
            im = Image.open(io.BytesIO(data))
        if im.width * im.height > MAX_PIXELS:
            raise ImageError(
                f"{label}: {im.width}x{im.height} pixels is too large (limit {MAX_PIXELS:,})"
            )
        im.seek(0)  # animated images: the first frame
        size = im.size
        if side is not None and im.format == "JPEG" and max(im.size) > side:
            scale = 0.75 * side / max(im.size)  # DCT scaling: 1/2, 1/4, 1/8
            im.draft("L", (max(1, int(im.width * scale)), max(1, int(im.height * scale))))
        stored = im.size
        im = upright(im)
        if im.size != stored:  # turned a quarter by its EXIF orientation
            size = size[::-1]
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            rgba = im.convert("RGBA")
            alpha = np.asarray(rgba.getchannel("A"), np.float32) / 255
            gray = on_backing(np.asarray(rgba.convert("L"), np.float32), alpha).round()
        elif im.mode.startswith("I;16") or im.mode in ("I", "F"):
            gray = deep_gray(im, label)
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
    return gray, size


def file_bytes(path) -> bytes:
    """An image file's bytes: a regular file of at most limits.MAX_IMAGE_BYTES. /dev/zero was
    read until memory ran out, and a named pipe waited for a writer forever."""
    if stat.S_ISDIR(os.stat(path).st_mode):  # missing: FileNotFoundError, said by the caller
        raise IsADirectoryError(path)
    try:
        return safe_io.read_limited(path, "an image", "MAX_IMAGE_BYTES")
    except DataError as e:
        raise ImageError(str(e)) from None


def on_backing(gray: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """A transparent image's gray (0..255) laid on paper it shows on: white behind dark ink,
    black behind light ink (a drawing in white on a transparent canvas, however thin its
    strokes). An image mostly opaque is paper with ink on it: white behind it."""
    opaque = alpha > 0.5
    light_ink = opaque.any() and opaque.mean() < 0.95 and gray[opaque].mean() > 127
    return gray * alpha + (0.0 if light_ink else 255.0) * (1 - alpha)


def array_gray(source: np.ndarray, label: str) -> np.ndarray:
    """A NumPy image as float32 gray (H, W) in 0..255, or an ImageError saying why not.

    Accepted: (H, W), (H, W, 1), (H, W, 2) and (H, W, 4) (with alpha, as PIL's LA and RGBA
    give), (H, W, 3) and (1, H, W);
    uint8 and other integers 0..255, 10- to 16-bit integers (scaled by the smallest of those
    depths that holds them), floats 0..255 or 0..1 (as matplotlib's imread gives; a resize's
    overshoot a little past either end is clipped), and masks (bool, or integers 0 and 1).
    Colour is made gray by luma, as PIL does. Refused rather than misread: negative values
    (but 0..1 floats' overshoot), non-finite values, batches (N, H, W) and flattened digits
    (N, 784)."""
    a = np.asarray(source)
    if a.ndim == 3 and a.shape[0] == 1 and a.shape[2] not in (1, 2, 3, 4):
        a = a[0]  # (1, H, W): one image, channel first
    if a.ndim == 3 and a.shape[2] not in (1, 2, 3, 4):
        colour = (
            f"; or, if it is one image with {a.shape[0]} channels first, np.moveaxis(x, 0, -1)"
            if a.shape[0] in (2, 3, 4)
            else ""
        )
        raise ImageError(
            f"{label}: shape {a.shape} looks like a batch of {a.shape[0]} images; read them "
            f"with read_many, one image each{colour}"
        )
    if a.ndim == 2 and 784 in a.shape and min(a.shape) < 28:
        raise ImageError(
            f"{label}: shape {a.shape} looks like flattened 28x28 digits; reshape each to (28, 28)"
        )
    if a.ndim not in (2, 3) or a.size == 0:
        raise ImageError(f"{label}: expected a 2-D gray or (H, W, 3) color image, got {a.shape}")
    if a.dtype.kind not in "biuf":
        raise ImageError(f"{label}: dtype {a.dtype} is not pixels")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise ImageError(f"{label}: has NaN or infinite values")
    lo, hi = float(a.min()), float(a.max())
    if lo < 0 and not (a.dtype.kind == "f" and hi <= FLOAT_OVERSHOOT and lo >= 1 - FLOAT_OVERSHOOT):
        raise ImageError(
            f"{label}: {a.dtype} values reach {lo:.3g}; pixels are 0..255 or 0..1 (a normalised "
            "image? undo the normalisation first)"
        )
    if lo < 0:
        a = np.maximum(a, 0)  # 0..1 floats a cubic resize left a little below 0
    scale = pixel_scale(a.dtype.kind, hi)
    if scale is None:
        raise ImageError(f"{label}: {a.dtype} values reach {hi:.6g}; pixels are 0..255")
    a = np.minimum(a.astype(np.float32) * np.float32(scale), 255)
    if a.ndim == 3:  # gray, gray and alpha, colour, colour and alpha
        alpha = a[..., -1] / 255 if a.shape[2] in (2, 4) else None
        a = a[..., 0] if a.shape[2] < 3 else a[..., :3] @ LUMA  # as PIL's convert("L")
        if alpha is not None:
            a = on_backing(a, alpha)
    return a


# red, green and blue's shares of gray (ITU-R 601-2 luma), as PIL converts: one image read as
# an array and as a PIL image is the same gray (a plain mean lost a green digit on red)
LUMA = np.array([0.299, 0.587, 0.114], np.float32)
BIT_DEPTHS = (1023, 4095, 16383, 65535)  # what 10-, 12-, 14- and 16-bit sensors give
# floats 0..1 a cubic resize or a sharpening left a little past 1 (a 0..255 image that dark
# has no ink to read): 1.0000001 read as 0..255 was a blank page
FLOAT_OVERSHOOT = 1.5


def pixel_scale(kind: str, hi: float) -> float | None:
    """The factor that brings pixels of dtype kind `kind` ("b", "i", "u", "f") whose largest
    value is `hi` to 0..255; None when no depth holds them. Masks (bool, or 0 and 1) and
    intensities 0..1 are scaled up, 0..255 is kept, deeper integers are scaled by the smallest
    depth that holds them. The same rule for arrays, PIL images and image files: a 16-bit file
    holding 0..255, or 0..1 floats in a TIFF, read as blank by a fixed 65535 or 255."""
    if kind == "b" or hi <= 1 or (kind == "f" and hi <= FLOAT_OVERSHOOT):
        return 255.0
    if hi <= 255:
        return 1.0
    if kind not in "iu":  # floats past 255 are no pixels anyone means
        return None
    top = next((t for t in BIT_DEPTHS if hi <= t), None)
    return None if top is None else 255 / top


def deep_gray(im: Image.Image, label: str) -> np.ndarray:
    """A 16-bit, 32-bit or float PIL image (modes I;16, I, F) as float32 gray 0..255, by
    `pixel_scale`; an ImageError when its values are no pixels."""
    a = np.clip(np.nan_to_num(np.asarray(im, np.float32), nan=0.0), 0, None)
    hi = float(a.max(initial=0))  # a float TIFF past 255: a deeper scan's integers
    scale = pixel_scale("f" if im.mode == "F" and hi <= 255 else "u", hi)
    if scale is None:
        raise ImageError(f"{label}: values reach {hi:.6g}; pixels are 0..255")
    return np.minimum(a * np.float32(scale), 255)


def upright(im: Image.Image) -> Image.Image:
    """The image turned as its EXIF orientation says; a broken EXIF block is ignored.

    Not ImageOps.exif_transpose: after turning, it writes the EXIF block back without the
    orientation, and Pillow raises struct.error (TypeError, ...) on a tag that does not fit its
    type. Reading the block raises SyntaxError, struct.error, ... when it is damaged."""
    try:
        orientation = im.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # metadata only: whatever is wrong with it, the pixels are still there
        return im
    turn = TURNS.get(orientation) if type(orientation) is int else None
    return im if turn is None else im.transpose(turn)


def shrink(gray: np.ndarray, side: int = WORK_SIDE) -> np.ndarray:
    """Reduce so the longer side is at most `side` (area averaging); small images are kept."""
    h, w = gray.shape
    scale = side / max(h, w)
    if scale >= 1:
        return gray
    return resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BOX)


def resize(a: np.ndarray, size: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
    """A float image resized to size = (width, height) by Pillow (fast, in C)."""
    image = Image.fromarray(np.asarray(a, np.float32))
    return np.asarray(image.resize(size, resample), np.float32)


def paper(gray: np.ndarray, light: bool) -> np.ndarray:
    """The paper without the ink: on a 32-pixel copy, strokes are filtered out (a max filter for
    dark ink, min for light), a wide blur keeps only the lighting, and it is scaled back up."""
    h, w = gray.shape
    step = max(1, max(h, w) // 32)
    small = resize(gray, (max(1, -(-w // step)), max(1, -(-h // step))), Image.Resampling.BOX)
    rank = ndimage.maximum_filter if light else ndimage.minimum_filter
    small = ndimage.gaussian_filter(rank(small, size=3), sigma=max(small.shape) / 6, mode="nearest")
    return resize(small, (w, h), Image.Resampling.BILINEAR)


def ink_of(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ink, paper): how far each pixel stands out from the estimated paper, lightly denoised."""
    light = float(np.median(gray[::4, ::4])) >= 128
    background = paper(gray, light)
    ink = (background - gray) if light else (gray - background)
    ink = ndimage.gaussian_filter(ink, sigma=max(max(gray.shape) / 250, 0.5), truncate=2.5)
    return np.maximum(ink, 0, out=ink), background


def otsu(values: np.ndarray) -> float:
    """The threshold between two classes of values that maximises their between-class variance."""
    top = max(float(values.max()), 1e-6)
    bins = np.minimum((values * (255.0 / top)).astype(np.intp), 255)
    weights = np.bincount(bins.ravel(), minlength=256).astype(np.float64)
    centres = (np.arange(256) + 0.5) * (top / 255)
    w0 = np.cumsum(weights)
    w1 = w0[-1] - w0
    m0 = np.cumsum(weights * centres) / np.maximum(w0, 1e-12)
    m1 = (np.sum(weights * centres) - np.cumsum(weights * centres)) / np.maximum(w1, 1e-12)
    between = w0 * w1 * (m0 - m1) ** 2
    return float(centres[int(np.argmax(between))])


def strokes(ink: np.ndarray, min_share: float) -> tuple[np.ndarray, int, np.ndarray] | None:
    """Otsu's mask of the ink as labelled components, without specks smaller than min_share of
    the largest: (labels, count, sizes), or None when there is no ink to speak of."""
    if ink.max() < 24:  # nothing stands out from the paper: a blank page
        return None
    mask = ink > otsu(ink)
    labels, n = ndimage.label(mask)
    if n == 0:
        return None
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    sizes[0] = 0
    small = sizes < min_share * sizes.max()
    small[0] = True
    lookup = np.arange(n + 1)
    lookup[small] = 0
    return lookup[labels], n, sizes


def prepare(
    source, name: str = "", deskew_digit: bool = False
) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
    """An image of one digit as MNIST's uint8 (28, 28), or None when no ink is found; every step."""
    steps: dict[str, np.ndarray] = {}
    gray = shrink(load(source, name, WORK_SIDE), WORK_SIDE)
    steps["input (gray)"] = gray
    placed = as_placed(gray)
    if placed is not None:  # an MNIST digit already: read as evaluate reads it, not re-prepared
        rows, cols = np.flatnonzero(placed.any(axis=1)), np.flatnonzero(placed.any(axis=0))
        steps[CROPPED] = placed[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].astype(np.float32)
        digit = deskew(placed) if deskew_digit else placed
        steps["MNIST style (20x20 in 28x28, centred)"] = digit.astype(np.float32)
        return digit, steps
    ink, background = ink_of(gray)
    steps["background (estimated paper)"] = background
    steps["ink (paper removed)"] = ink
    found = strokes(ink, min_share=SPECK_SHARE)
    if found is None:
        return None, steps
    unruled, _ = forms.remove_rules(ink, found[0] > 0, ruled=False)  # a digit in a form's box
    if unruled is not ink:
        steps["box removed"] = ink = unruled
        found = strokes(ink, min_share=SPECK_SHARE)
        if found is None:
            return None, steps
    keep = found[0] > 0
    steps["mask (Otsu, specks removed)"] = keep.astype(np.float32) * 255
    sizes = found[2]
    if np.count_nonzero(sizes >= SPECK_SHARE * sizes.max()) > MAX_PIECES:  # noise or texture
        return None, steps
    crop = crop_digit(ink, keep, pad=max(1, round(0.02 * max(gray.shape))))
    steps[CROPPED] = crop
    digit = to_mnist(crop)
    if deskew_digit:
        digit = deskew(digit)
    steps["MNIST style (20x20 in 28x28, centred)"] = digit.astype(np.float32)
    return digit, steps
