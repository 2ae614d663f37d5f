"""The machine and software a result was measured on, for reports and benchmarks.

>>> describe()["cpu"], describe()["cores"]
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import sys
from pathlib import Path

import numpy as np


def describe() -> dict:
    """CPU model, cores, memory, Python, NumPy and (if installed) PyTorch, and the GPU when this
    process has imported torch."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        memory = f"{os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} GiB"
    except (ValueError, OSError, AttributeError):
        memory = "unknown"
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": memory,
        "os": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    blas = blas_kernels()
    if blas:
        info["blas"] = blas
    torch = sys.modules.get("torch")  # the GPU only when this process uses torch: importing
    if torch is not None:  # it to ask would cost a numpy-only job 2 seconds
        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    else:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            info["torch"] = importlib.metadata.version("torch")
    return info


def blas_kernels() -> str | None:
    """Which kernels NumPy's OpenBLAS runs, and why, e.g. 'OpenBLAS 0.3.31, Haswell kernels
    (OPENBLAS_CORETYPE=Haswell)': a VM may be pinned below what its CPU can do, which halves
    float32 matrix products on an AVX-512 CPU. None when it cannot be told."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    for lib in threadpool_info():
        if lib.get("internal_api") == "openblas" and "numpy" in lib.get("filepath", ""):
            pinned = os.environ.get("OPENBLAS_CORETYPE")
            why = f" (OPENBLAS_CORETYPE={pinned})" if pinned else " (chosen by OpenBLAS)"
            return f"OpenBLAS {lib.get('version')}, {lib.get('architecture')} kernels{why}"
    return None


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where it cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


# OpenBLAS core types, best first, and the CPU flags their float32 kernels need
OPENBLAS_CORES = (
    ("Cooperlake", {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl", "avx512_bf16"}),
    ("SkylakeX", {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}),
    ("Haswell", {"avx2", "fma"}),
)


def native_openblas_core(flags: set[str] | None = None) -> str | None:
    """The best OpenBLAS core type this CPU's flags allow (what OPENBLAS_CORETYPE could name)."""
    flags = cpu_flags() if flags is None else flags
    return next((name for name, needs in OPENBLAS_CORES if needs <= flags), None)
