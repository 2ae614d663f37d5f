"""`python -m benchmarks [NAME ...]`: run benchmarks (default all), rebuild docs/benchmarks.md."""

from __future__ import annotations

import argparse
import importlib
import json

from benchmarks.common import assemble

BENCHMARKS = ["data_load", "numpy_engine", "training", "explore", "predict", "serve_load"]
SLOW = ["cnn_best"]  # about 45 minutes on 2 cores: run it by name


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", help="which to run")
    names = parser.parse_args().names or BENCHMARKS
    unknown = sorted(set(names) - set(BENCHMARKS) - set(SLOW))
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; known: {', '.join(BENCHMARKS + SLOW)}")
    for name in names:
        print(f"== {name}")
        results = importlib.import_module(f"benchmarks.{name}").run()
        print(json.dumps(results.get("rows", results), indent=1, default=str)[:2000])
    print(f"wrote {assemble()}")


if __name__ == "__main__":
    main()
