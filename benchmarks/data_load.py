"""How fast a program gets MNIST as arrays: digitlab's verified cache vs the usual ways.

Peers: decoding the four published .gz IDX files (what torchvision's loader and most
notebooks do), and np.load of Keras's mnist.npz layout. digitlab also re-verifies the
SHA-256 of every array on every load, which the peers do not.
"""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import median_seconds, save
from digitlab import data
from digitlab.data.export import export


def run(repeats: int = 5) -> dict:
    ds = data.load("mnist")
    with tempfile.TemporaryDirectory() as tmp:
        export(ds, "idx", Path(tmp) / "idx")
        npz = Path(tmp) / "mnist.npz"
        np.savez(
            npz,
            x_train=ds.train.images,
            y_train=ds.train.labels,
            x_test=ds.test.images,
            y_test=ds.test.labels,
        )

        def gz_idx():
            out = []
            for name in [
                "train-images-idx3-ubyte.gz",
                "train-labels-idx1-ubyte.gz",
                "t10k-images-idx3-ubyte.gz",
                "t10k-labels-idx1-ubyte.gz",
            ]:
                with gzip.open(Path(tmp) / "idx" / name) as f:
                    raw = f.read()
                offset = 16 if "images" in name else 8
                out.append(np.frombuffer(raw, np.uint8, offset=offset))
            return out

        def keras_npz():
            with np.load(npz) as z:
                return [z[k] for k in z.files]

        rows = {
            "digitlab.load('mnist') from cache, SHA-256 verified": median_seconds(
                lambda: data.load("mnist"), repeats
            ),
            "gzip IDX decode (torchvision / notebooks), unverified": median_seconds(
                gz_idx, repeats
            ),
            "np.load of Keras mnist.npz, unverified": median_seconds(keras_npz, repeats),
        }
    ours = rows["digitlab.load('mnist') from cache, SHA-256 verified"][0]
    lines = [
        "## Loading MNIST (70,000 images) into arrays",
        "",
        f"Median of {repeats} runs after one warm-up (files in the OS page cache).",
        "",
        "| method | median s | vs digitlab |",
        "|---|---:|---:|",
    ]
    for name, (median, _) in rows.items():
        lines.append(f"| {name} | {median:.3f} | {median / ours:.2f}× |")
    results = {"rows": {k: {"median_s": m, "runs_s": t} for k, (m, t) in rows.items()}}
    save("data_load", results, "\n".join(lines))
    return results
