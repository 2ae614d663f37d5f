"""Read an .npz file, a zip of .npy arrays, without trusting it.

No pickle ever runs (object arrays are refused), each .npy header's shape is checked against
`limits.MAX_ARRAY_BYTES` before anything is allocated, and no member is inflated past what its
header declares (plus a margin to see that it ends there). A file that is not a zip of .npy
arrays is called what it is, never "pickled data".

    >>> arrays = read_npz(Path("mnist.npz"))    # {"train_images": uint8 (60000, 28, 28), ...}
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from digitlab.data.contract import ROLES, as_images, as_labels
from digitlab.data.limits import check_declared, short
from digitlab.data.safe_io import bytes_after, open_regular, read_into, trailing_text
from digitlab.errors import DataError

NPZ_LAYOUTS = (  # (train images, train labels, test images, test labels)
    ("x_train", "y_train", "x_test", "y_test"),  # keras.datasets.mnist
    ("train_images", "train_labels", "test_images", "test_labels"),
    ("images", "labels", None, None),
)
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a member first, or an empty archive
NPY_MAGIC = b"\x93NUMPY"
NPY_VERSIONS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}
# What a damaged or hostile zip can raise inside zipfile and zlib, none of which may escape raw.
ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    EOFError,
    OSError,
    ValueError,
    NotImplementedError,  # an unsupported compression method
    RuntimeError,  # an encrypted member
    zlib.error,
    struct.error,
)


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Read an .npz in one of NPZ_LAYOUTS into role arrays (train_images, ...), checked."""
    with open_regular(path, "an NPZ file") as f:
        _check_is_zip(f.read(len(NPY_MAGIC)), path)
        f.seek(0)
        try:
            with zipfile.ZipFile(f) as z:
                members = _members(z, path)
                arrays = {role: _read_member(z, name, path) for role, name in members.items()}
        except ZIP_ERRORS as e:
            reason = short(str(e) or type(e).__name__)
            raise DataError(f"{path}: not a readable NPZ archive ({reason})") from None
    out = {}
    for split in ("train", "test"):
        if f"{split}_images" in arrays:
            out[f"{split}_images"] = as_images(arrays[f"{split}_images"], f"{path}:{split} images")
            n = len(out[f"{split}_images"])
            out[f"{split}_labels"] = as_labels(
                arrays[f"{split}_labels"], n, f"{path}:{split} labels"
            )
    return out


def _check_is_zip(head: bytes, path: Path) -> None:
    if not head:
        raise DataError(f"{path}: file is empty")
    if head.startswith(NPY_MAGIC):
        raise DataError(
            f"{path}: a single .npy array, not an NPZ archive (a zip of .npy arrays); "
            "np.savez writes one"
        )
    if not head.startswith(ZIP_MAGIC):
        raise DataError(f"{path}: not an NPZ archive (a zip of .npy arrays)")


def _members(z: zipfile.ZipFile, path: Path) -> dict[str, str]:
    """Role -> member name, for the first layout whose training pair the archive holds."""
    names = {n.removesuffix(".npy"): n for n in z.namelist()}
    for layout in NPZ_LAYOUTS:
        if set(layout[:2]) <= names.keys():  # the test pair is optional, but only as a pair
            break
    else:
        raise DataError(
            f"{path}: NPZ has arrays {short(str(sorted(names)))}; expected x_train/y_train"
            "[/x_test/y_test], train_images/train_labels/..., or images/labels"
        )
    images, labels = layout[2:]
    if images is not None and (images in names) != (labels in names):
        have, missing = (images, labels) if images in names else (labels, images)
        raise DataError(f"{path}: has {have} but no {missing}")
    return {role: names[key] for role, key in zip(ROLES, layout, strict=True) if key in names}


def _read_member(z: zipfile.ZipFile, name: str, path: Path) -> np.ndarray:
    """One .npy member: header checked first, then exactly the bytes it declares."""
    where = f"{path}: {name.removesuffix('.npy')}"
    with z.open(name) as member:
        dtype, shape, fortran = _read_npy_header(member, where, path)
        nbytes = check_declared(shape, dtype, f"{where}: .npy header")  # before allocating
        values = np.empty(nbytes, np.uint8)
        got = read_into(member, values)
        if got < nbytes:
            raise DataError(f"{where}: truncated ({nbytes} bytes of values expected, {got} found)")
        if extra := bytes_after(member):
            raise DataError(f"{where}: {trailing_text(extra)} after the array")
    if fortran:
        return values.view(dtype).reshape(shape[::-1]).T
    return values.view(dtype).reshape(shape)


def _read_npy_header(member, where: str, path: Path) -> tuple[np.dtype, tuple[int, ...], bool]:
    try:
        version = np.lib.format.read_magic(member)
    except ValueError:
        raise DataError(f"{where}: not a .npy array") from None
    if version not in NPY_VERSIONS:
        raise DataError(f"{where}: .npy format version {version} is not supported (1.0 or 2.0)")
    try:
        shape, fortran, dtype = NPY_VERSIONS[version](member)
    except ValueError:  # NumPy's own message may quote the header and suggest allow_pickle
        raise DataError(f"{where}: the .npy header is damaged") from None
    if any(side < 0 for side in shape):
        raise DataError(f"{where}: the .npy header declares a negative side {short(str(shape))}")
    if dtype.hasobject:
        raise DataError(f"{path}: holds Python objects (pickle), which digitlab refuses to load")
    if dtype.kind not in "biuf" or dtype.fields or dtype.subdtype:
        raise DataError(f"{where}: dtype {short(str(dtype))}, expected integers or floats")
    return dtype, tuple(shape), bool(fortran)
