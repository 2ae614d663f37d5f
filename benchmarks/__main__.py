"""`python -m benchmarks [--quick] [NAME ...]`: run benchmarks (default: the list below),
rebuild docs/benchmarks.md. `--quick` goes to the benchmarks that have a quick mode (peers)."""

from __future__ import annotations

import argparse
import importlib
import inspect
import json

from benchmarks.common import assemble

# `make bench`: about 55 minutes on 2 cores, the peer suite (~20), reading (~15), sweeps (~4),
# records (~13)
BENCHMARKS = [
    "data_load",
    "numpy_engine",
    "explore",
    "predict",
    "serve_load",
    "peers",
    "reading",
    "sweeps",
    "records",
]
# run these by name: cnn_best about 20 minutes; training about 6 (its cnn-small and Keras-recipe
# rows are measured again, against the peers, by `peers`); distributed about 3 (--nproc 1 vs 2);
# ensembles about 70 (five `reader` networks, reused once trained); cnn_vgg about 160 from
# scratch (fifteen `cnn-vgg` networks, reused once trained: the best single network and its
# ensembles)
# reader_choice about 2 (validation fonts fetched by npm once; scores runs/reader-*/)
# gpu: on a CUDA machine only (about 8 minutes on an H200; benchmarks/gpu.sh adds the CUDA tests)
SLOW = ["cnn_best", "training", "distributed", "ensembles", "cnn_vgg", "reader_choice", "gpu"]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", help="which to run")
    parser.add_argument("--quick", action="store_true", help="fewer runs, where a benchmark can")
    args = parser.parse_args()
    names = args.names or BENCHMARKS
    unknown = sorted(set(names) - set(BENCHMARKS) - set(SLOW))
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; known: {', '.join(BENCHMARKS + SLOW)}")
    for name in names:
        print(f"== {name}")
        run = importlib.import_module(f"benchmarks.{name}").run
        quick = (
            {"quick": True} if args.quick and "quick" in inspect.signature(run).parameters else {}
        )
        results = run(**quick)
        print(json.dumps(results.get("rows", results), indent=1, default=str)[:2000])
    print(f"wrote {assemble()}")


if __name__ == "__main__":
    main()
