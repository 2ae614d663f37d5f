"""`digitlab explore` on all 70,000 images: target ≤ 60 s on the 2-core CPU.

MNIST three times (median), Fashion-MNIST once (when Debian's package is installed).
Everything is counted: loading from the cache, statistics, PCA, neighbour searches over
all images, t-SNE of a 2,000-image stratified sample, figures and the report.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from benchmarks.common import save
from digitlab.jobs.explore import explore_dataset


def run() -> dict:
    results: dict = {"mnist": [], "fashion-mnist": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(3):
            results["mnist"].append(explore_dataset("mnist", Path(tmp) / f"m{i}")["seconds"])
        if Path("/usr/share/datasets/fashion-mnist").is_dir():
            results["fashion-mnist"].append(
                explore_dataset("fashion-mnist", Path(tmp) / "f")["seconds"]
            )
    rows = [
        f"| {name} | {len(t)} | {statistics.median(t):.1f} s | ≤ 60 s |"
        for name, t in results.items()
        if t
    ]
    md = "\n".join(
        [
            "## Exploring a dataset (`digitlab explore`, all 70,000 images)",
            "",
            "| dataset | runs | median time | target |",
            "|---|---:|---:|---|",
            *rows,
        ]
    )
    save("explore", results, md)
    return results
