"""Shared fixtures: an isolated DIGITLAB_HOME per test, the real MNIST fetched once, and a
trained MLP run shared by the tests that read digits, export or serve."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from threadpoolctl import threadpool_limits

from digitlab import data, jobs
from digitlab.engines.numpy_threads import ENV as BLAS_THREADS
from digitlab.engines.numpy_threads import BlasThreads
from digitlab.presets import PRESETS

# The suite asserts bit-exact reproducibility (the same seed twice, a run resumed after a kill),
# which holds for a fixed BLAS thread count. On a loaded machine the NumPy engine would change
# its count as it trains (engines/numpy_threads.py), so the suite fixes it at the count the BLAS
# starts with; tests/test_numpy_threads.py lifts this to test the choice itself.
os.environ.setdefault(BLAS_THREADS, str(BlasThreads.for_this_process().most))

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two workers on the 2-core machine (pytest -n 2). Each keeps to one
    # thread, it and the processes it starts: two workers with two spinning BLAS or OpenMP
    # threads each made the suite use half again as much CPU as one worker alone.
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", BLAS_THREADS):
        os.environ[variable] = "1"
    threadpool_limits(limits=1)  # NumPy's BLAS was loaded before this file ran


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch) -> Path:
    """Every test gets its own empty cache, so none depends on the machine's ~/.cache."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("DIGITLAB_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def mnist_home(tmp_path_factory) -> Path:
    """A cache holding the real MNIST, fetched once per session through the normal chain."""
    home = tmp_path_factory.mktemp("mnist-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DIGITLAB_HOME", str(home))
        data.load("mnist")
    return home


@pytest.fixture
def mnist(mnist_home, monkeypatch) -> data.Dataset:
    """The real MNIST from the session cache; DIGITLAB_HOME points there for this test."""
    monkeypatch.setenv("DIGITLAB_HOME", str(mnist_home))
    return data.load("mnist")


@pytest.fixture(scope="session")
def mlp_run(mnist_home, tmp_path_factory) -> Path:
    """The `mlp-256-128-64` preset trained on all of MNIST's training set (about 3 s), once per
    session for the tests that read digits, export or serve a model. Treat it as read-only."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DIGITLAB_HOME", str(mnist_home))
        run = tmp_path_factory.mktemp("runs") / "mlp"
        preset = PRESETS["mlp-256-128-64"]
        jobs.start(run, preset.spec, "numpy", dataclasses.replace(preset.config, val_split=0.0))
    return run


def pytest_report_header(config):
    was = os.environ.get("DIGITLAB_HOME")
    return f"DIGITLAB_HOME for tests: a temporary folder per test (outside: {was})"
