"""Write a Dataset back out as IDX, Kaggle-style CSV, or PNG folders (one per class).

Files land in a temporary folder first and are moved into place only when all are
written, so an interrupted export leaves nothing half-written; existing files are
never overwritten unless asked.

    >>> paths = export(ds, "csv", "out/")     # out/train.csv, out/test.csv
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from digitlab.data.dataset import SPLITS, Dataset
from digitlab.data.idx import write_idx
from digitlab.data.safe_io import write_error
from digitlab.errors import DataError

FORMATS = ("idx", "csv", "png")
IDX_NAMES = {"train": "train", "test": "t10k"}


def _write_csv(path: Path, images: np.ndarray, labels: np.ndarray | None) -> None:
    pixels = images.reshape(len(images), -1).astype(np.int64)
    header = ",".join(f"pixel{i}" for i in range(pixels.shape[1]))
    if labels is not None:
        pixels = np.column_stack([labels.astype(np.int64), pixels])
        header = "label," + header
    np.savetxt(path, pixels, fmt="%d", delimiter=",", header=header, comments="")


def _write_pngs(folder: Path, images: np.ndarray, labels: np.ndarray | None, classes) -> None:
    from PIL import Image

    for i, image in enumerate(images):
        sub = folder / (_safe(classes[int(labels[i])]) if labels is not None else "unlabeled")
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, mode="L").save(sub / f"{i:05d}.png", optimize=False)


def _safe(name: str) -> str:
    """A class name usable as a folder name ("T-shirt/top" -> "T-shirt_top")."""
    return "".join(c if c.isalnum() or c in "-_. " else "_" for c in name)


def export(
    ds: Dataset,
    fmt: str,
    out: str | os.PathLike[str],
    *,
    limit: int | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Write `ds` to folder `out` in `fmt`; returns the top-level paths written."""
    if fmt not in FORMATS:
        raise DataError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    from digitlab.data import is_built_in  # whose numbered labels are their published ones

    named = [c for c in ds.classes if not c.isdigit()] if not is_built_in(ds) else []
    if fmt != "png" and named:  # read back, 'seven' and 'three' would be classes 0 and 1
        raise DataError(
            f"--format {fmt}: keeps labels as numbers, not the class names of {ds.name} "
            f"({', '.join(named[:3])}{', ...' if len(named) > 3 else ''}); --format png keeps them"
        )
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".digitlab-export-", dir=out))
    except OSError as e:
        raise DataError(write_error(e, out, "create the folder")) from None
    finished = False
    try:
        for split_name in SPLITS:
            split = ds.split(split_name)
            if len(split) == 0:
                continue
            images = split.images[:limit]
            labels = None if split.labels is None else split.labels[:limit]
            if fmt == "idx":
                write_idx(staging / f"{IDX_NAMES[split_name]}-images-idx3-ubyte.gz", images)
                if labels is not None:
                    write_idx(staging / f"{IDX_NAMES[split_name]}-labels-idx1-ubyte.gz", labels)
            elif fmt == "csv":
                _write_csv(staging / f"{split_name}.csv", images, labels)
            else:
                _write_pngs(staging / split_name, images, labels, ds.classes)
        written = sorted(staging.iterdir())
        clashes = [out / p.name for p in written if (out / p.name).exists()]
        if clashes and not overwrite:
            raise DataError(f"{clashes[0]}: already exists; pass --overwrite to replace it")
        for p in written:
            target = out / p.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(p, target)
        finished = True
        return [out / p.name for p in written]
    except OSError as e:
        raise DataError(f"{out}: export failed ({e.strerror or e})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created and not finished:
            shutil.rmtree(out, ignore_errors=True)  # it was ours, and holds nothing finished
