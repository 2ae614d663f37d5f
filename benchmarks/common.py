"""What every benchmark needs: the machine, a median timer, and where results go."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from digitlab.atomic import write_text
from digitlab.machine import describe

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "benchmarks"


def median_seconds(
    fn: Callable[[], object], repeats: int = 5, warmup: int = 1
) -> tuple[float, list[float]]:
    """Median wall-clock seconds of `fn()` over `repeats` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def save(name: str, results: dict, markdown: str) -> None:
    """Write docs/benchmarks/NAME.json and NAME.md (the section for docs/benchmarks.md)."""
    results = {
        "benchmark": name,
        "date": time.strftime("%Y-%m-%d"),
        "machine": describe(),
    } | results
    write_text(RESULTS / f"{name}.json", json.dumps(results, indent=2) + "\n")
    m = results["machine"]
    blas = f" ({m['blas']})" if m.get("blas") else ""
    quick = " --quick" if results.get("mode") == "quick" else ""
    footer = (
        f"\n\nMachine: {m['cpu']}, {m['cores']} cores, {m['memory']}; Python {m['python']}, "
        f"NumPy {m['numpy']}{blas}. Measured {results['date']} with "
        f"`python -m benchmarks{quick} {name}`.\n"
    )
    write_text(RESULTS / f"{name}.md", markdown.rstrip() + footer)


def assemble() -> Path:
    """Rebuild docs/benchmarks.md from every section in docs/benchmarks/."""
    sections = [p.read_text() for p in sorted(RESULTS.glob("*.md"))]
    intro = (
        "# Benchmarks\n\nWritten by `make bench` (`python -m benchmarks`); every figure is a "
        "median of several runs, with the machine it was measured on. Peers are measured in the "
        "same run, on the same data and machine, as digitlab.\n\n"
    )
    path = ROOT / "docs" / "benchmarks.md"
    write_text(path, intro + "\n".join(sections))
    return path
