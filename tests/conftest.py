"""Shared fixtures: an isolated DIGITLAB_HOME per test, and the real MNIST fetched once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from digitlab import data


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


def pytest_report_header(config):
    was = os.environ.get("DIGITLAB_HOME")
    return f"DIGITLAB_HOME for tests: a temporary folder per test (outside: {was})"
