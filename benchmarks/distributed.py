"""Data-parallel training (issue 18): `digitlab train --nproc N` on this machine's CPU, 1 against
2 processes (torchrun, gloo), the same model, data, seed and global batch.

The model is `mlp:256-128` on the torch engine, 3 epochs on all 60,000 images, batch 128. The
time is the whole command's wall clock (torchrun's start included), median of `repeats` runs;
the test accuracy shows both end at the same model.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import save

ARGS = ["--model", "mlp:256-128", "--engine", "torch", "--epochs", "3", "--batch-size", "128"]


def one(nproc: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        start = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "digitlab.cli",
                "train",
                *ARGS,
                "--nproc",
                str(nproc),
                "--out",
                str(out),
            ],
            check=True,
            capture_output=True,
        )
        seconds = time.perf_counter() - start
        acc = json.loads((out / "model.json").read_text())["test"]["acc"]
    return seconds, acc


def run(quick: bool = False) -> dict:
    repeats = 1 if quick else 3
    rows = []
    for nproc in (1, 2):
        times, accs = zip(*(one(nproc) for _ in range(repeats)), strict=True)
        rows.append(
            {"nproc": nproc, "seconds": statistics.median(times), "runs": list(times),
             "test_acc": accs[0]}
        )  # fmt: skip
    ratio = rows[1]["seconds"] / rows[0]["seconds"]
    lines = [
        "## Data-parallel training on the CPU (issue 18)",
        "",
        f"`digitlab train {' '.join(ARGS)} --nproc N` (median of {repeats}; the whole command, "
        "torchrun's start included).",
        "",
        "| processes | wall time | test accuracy |",
        "|---:|---:|---:|",
        *(f"| {r['nproc']} | {r['seconds']:.1f} s | {r['test_acc']:.2%} |" for r in rows),
        "",
        f"Two processes take {ratio:.2f}x the time of one on 2 cores: each process gets one core "
        "and the gradients cross between them every step, while one process already uses both "
        "cores in its matrix products. Data parallelism pays across machines or GPUs, not "
        "across the cores of one CPU. Not measured on a GPU: none was lent to this session.",
    ]
    save("distributed", {"mode": "quick" if quick else "full", "rows": rows}, "\n".join(lines))
    return {"rows": rows}
