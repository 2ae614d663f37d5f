"""The source chain against real servers on 127.0.0.1: good, wrong digest, 404, hanging."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import json
import os
import pickle
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from digitlab.data.idx import encode_idx, read_idx
from digitlab.data.sources import (
    CACHE_FILES,
    DatasetInfo,
    Mirror,
    UserFiles,
    decode_mnist_pickle,
    fetch,
    read_cache,
    sha256,
)
from digitlab.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(1)
ARRAYS = {
    "train_images": RNG.integers(0, 256, (20, 28, 28), dtype=np.uint8),
    "train_labels": RNG.integers(0, 10, 20, dtype=np.uint8),
    "test_images": RNG.integers(0, 256, (10, 28, 28), dtype=np.uint8),
    "test_labels": RNG.integers(0, 10, 10, dtype=np.uint8),
}
NAMES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
FILES = {NAMES[r]: gzip.compress(encode_idx(a), mtime=0) for r, a in ARRAYS.items()}


def tiny_info(mirrors: tuple[str, ...] = ()) -> DatasetInfo:
    return DatasetInfo(
        name="tiny",
        classes=tuple("0123456789"),
        files={r: (NAMES[r], hashlib.md5(FILES[NAMES[r]]).hexdigest()) for r in ARRAYS},
        mirrors=mirrors,
        digests={r: sha256(a) for r, a in ARRAYS.items()},
        sizes={"train": 20, "test": 10},
        hint="What to do: nothing, this is a test.",
    )


class Server:
    """A real HTTP server on 127.0.0.1 serving `files`, optionally slowly; counts requests."""

    def __init__(self, files: dict[str, bytes], delay: float = 0.0):
        self.files, self.delay, self.requests = files, delay, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append(self.path)
                time.sleep(outer.delay)
                body = outer.files.get(self.path.rsplit("/", 1)[-1])
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/data/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class HangingServer:
    """Accepts connections and never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/"

    def close(self):
        self.sock.close()


@pytest.fixture
def servers():
    started = []

    def start(kind="good", **kwargs):
        if kind == "hang":
            server = HangingServer()
        elif kind == "wrong":  # right names, wrong bytes: one image flipped
            bad = dict(FILES)
            images = ARRAYS["train_images"].copy()
            images[0, 0, 0] ^= 1
            bad[NAMES["train_images"]] = gzip.compress(encode_idx(images), mtime=0)
            server = Server(bad, **kwargs)
        elif kind == "404":
            server = Server({}, **kwargs)
        else:
            server = Server(FILES, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


def test_good_mirror(tmp_path, servers):
    good = servers()
    arrays, source, _ = fetch(tiny_info((good.url,)), tmp_path)
    assert source == f"mirror {good.url}"
    for role, a in ARRAYS.items():
        np.testing.assert_array_equal(arrays[role], a)
        np.testing.assert_array_equal(read_idx(tmp_path / "datasets/tiny" / CACHE_FILES[role]), a)
    assert len(good.requests) == 4


def test_bad_mirrors_fall_through_with_their_reasons(tmp_path, servers):
    wrong, missing, hang, good = servers("wrong"), servers("404"), servers("hang"), servers()
    info = tiny_info((wrong.url, missing.url, hang.url, good.url))
    started = time.monotonic()
    _, source, attempts = fetch(info, tmp_path, timeout=0.5)
    assert time.monotonic() - started < 10  # the hanging server cost about one timeout
    assert source == f"mirror {good.url}"
    reasons = dict(attempts)
    assert "does not match the published" in reasons[f"mirror {wrong.url}"]
    assert "HTTP 404" in reasons[f"mirror {missing.url}"]
    assert "timed out after 0.5 s" in reasons[f"mirror {hang.url}"]


def test_all_sources_fail_one_error_lists_each(tmp_path, servers):
    wrong, missing = servers("wrong"), servers("404")
    info = tiny_info((wrong.url, missing.url))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as error:
        fetch(info, tmp_path, from_path=tmp_path / "empty", timeout=0.5)
    text = str(error.value)
    assert text.startswith("tiny: could not get the dataset from any source:")
    for expected in [
        "cache:",
        "user files",
        "no class subfolders",
        "MD5",
        "HTTP 404",
        "What to do",
    ]:
        assert expected in text
    assert not (tmp_path / "datasets/tiny/source.json").exists()  # nothing cached


def test_a_missing_from_path_fails_before_anything_else(tmp_path, servers):
    good = servers()
    with pytest.raises(DataError, match=r"--from .*nowhere: no such file or folder"):
        fetch(tiny_info((good.url,)), tmp_path, from_path=tmp_path / "nowhere")
    assert good.requests == []


def test_force_keeps_the_old_cache_until_a_new_copy_verifies(tmp_path, servers):
    good, missing = servers(), servers("404")
    fetch(tiny_info((good.url,)), tmp_path)
    with pytest.raises(DataError, match="HTTP 404"):
        fetch(tiny_info((missing.url,)), tmp_path, force=True)
    assert fetch(tiny_info((missing.url,)), tmp_path)[1] == "cache"  # still there, still valid


def test_a_step_that_crashes_is_one_reason_not_a_traceback(tmp_path, servers):
    class Broken:
        label = "broken step"

        def fetch(self, info, timeout):
            raise EOFError("compressed file ended before the end-of-stream marker")

    good = servers()
    _, source, attempts = fetch(tiny_info(), tmp_path, chain=[Broken(), Mirror(good.url)])
    assert source == f"mirror {good.url}"
    assert attempts[-1] == (
        "broken step",
        "EOFError: compressed file ended before the end-of-stream marker",
    )


def test_unusable_cache_folder_is_a_clear_error(tmp_path, servers):
    home = tmp_path / "home-is-a-file"
    home.write_text("")
    with pytest.raises(DataError) as error:
        fetch(tiny_info((servers().url,)), home)
    assert str(error.value) == (
        f"{home}: is a file, not a folder; point DIGITLAB_HOME at a writable folder"
    )


def test_user_files_that_are_not_the_dataset_are_rejected(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    for role, name in NAMES.items():
        a = ARRAYS[role].copy()
        if role == "test_labels":
            a[0] = (a[0] + 1) % 10  # one label changed
        (folder / name).write_bytes(gzip.compress(encode_idx(a)))
    with pytest.raises(DataError, match=r"test_labels differ from the official tiny"):
        fetch(tiny_info(), tmp_path, chain=[UserFiles(folder)])


def test_corrupted_cache_is_detected_discarded_and_fetched_again(tmp_path, servers):
    good = servers()
    info = tiny_info((good.url,))
    fetch(info, tmp_path)
    cached = tmp_path / "datasets/tiny" / CACHE_FILES["train_images"]
    raw = bytearray(cached.read_bytes())
    raw[100] ^= 0xFF
    cached.write_bytes(bytes(raw))
    _, source, attempts = fetch(info, tmp_path)
    assert source == f"mirror {good.url}"
    assert attempts[0][0] == "cache" and "did not verify" in attempts[0][1]
    np.testing.assert_array_equal(read_idx(cached), ARRAYS["train_images"])
    assert fetch(info, tmp_path)[1] == "cache"
    assert len(good.requests) == 8  # fetched twice, then served from the cache


def test_truncated_cache_file_is_replaced(tmp_path, servers):
    info = tiny_info((servers().url,))
    fetch(info, tmp_path)
    cached = tmp_path / "datasets/tiny" / CACHE_FILES["test_labels"]
    cached.write_bytes(cached.read_bytes()[:-3])
    _, source, attempts = fetch(info, tmp_path)
    assert source.startswith("mirror") and "truncated" in attempts[0][1]


CONCURRENT = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_sources import tiny_info
from digitlab.data.sources import fetch
arrays, source, _ = fetch(tiny_info(({url!r},)), Path({home!r}))
print(source)
"""


def test_two_processes_fetching_at_once_share_one_download(tmp_path, servers):
    slow = servers(delay=0.3)  # each request takes 0.3 s, so the two processes overlap
    script = CONCURRENT.format(tests=str(ROOT / "tests"), url=slow.url, home=str(tmp_path))
    procs = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert [p.returncode for p in procs] == [0, 0]
    assert outputs == sorted(["cache", f"mirror {slow.url}"])  # one downloaded, one waited
    assert len(slow.requests) == 4
    folder = tmp_path / "datasets/tiny"
    assert json.loads((folder / "source.json").read_text())["source"] == f"mirror {slow.url}"
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_a_malicious_pickle_is_refused_not_run(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    payload = pickle.dumps(((Exploit(), None), (None, None), (None, None)), protocol=2)
    with pytest.raises(DataError, match=r"refusing to load"):
        decode_mnist_pickle(payload, "evil.pkl")
    assert not (tmp_path / "pwned").exists()


def test_mnist_style_pickle_decodes_exactly(tmp_path):
    def part(n):
        x = RNG.integers(0, 256, (n, 784)).astype(np.float32) / 256
        return x, RNG.integers(0, 10, n).astype(np.int64)

    parts = (part(5), part(3), part(4))
    arrays = decode_mnist_pickle(pickle.dumps(parts, protocol=2), "p")
    assert arrays["train_images"].shape == (8, 28, 28)
    np.testing.assert_array_equal(
        arrays["train_images"].reshape(8, 784),
        np.rint(np.concatenate([parts[0][0], parts[1][0]]) * 256),
    )
    assert arrays["test_labels"].dtype == np.uint8
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(1))  # not a pickle of arrays at all
    with pytest.raises(DataError, match="not the expected MNIST pickle"):
        decode_mnist_pickle(buffer.getvalue(), "p")


# ---- a damaged cache, read-only folders, bombs (issue 16) -------------------------------------


def cached(tmp_path, servers):
    """A complete cache of `tiny` in tmp_path, and the info to fetch it again."""
    info = tiny_info((servers().url,))
    fetch(info, tmp_path)
    return info, tmp_path / "datasets/tiny"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("damage", ["folder", "fifo", "device"])
@pytest.mark.parametrize("name", ["test_labels", "source.json"])
def test_a_cache_file_replaced_by_something_else_is_detected_and_replaced(
    tmp_path, servers, damage, name
):
    info, folder = cached(tmp_path, servers)
    path = folder / CACHE_FILES.get(name, name)
    path.unlink()
    if damage == "folder":
        (path / "inside").mkdir(parents=True)
    elif damage == "fifo":
        os.mkfifo(path)  # a reader that opened it would wait forever for a writer
    else:
        path.symlink_to("/dev/zero")  # a reader that read it would never finish
    _, source, attempts = fetch(info, tmp_path)
    assert source.startswith("mirror"), attempts
    _, origin = read_cache(info, folder)
    assert origin == source and path.is_file() and not path.is_symlink()


def test_stale_temporary_files_of_a_killed_writer_are_removed_under_the_lock(tmp_path, servers):
    info, folder = cached(tmp_path, servers)
    (folder / "source.json").unlink()  # as a writer killed half-way leaves it
    stale = [folder / ".train-images-idx3-ubyte.a1b2c3d4.tmp", folder / ".source.json.x_9z.tmp"]
    for p in stale:
        p.write_bytes(b"half a file")
        os.utime(p, (time.time() - 60, time.time() - 60))
    mine = folder / ".notes.txt.k.tmp"  # not a name the cache writes: left alone
    mine.write_text("")
    fetch(info, tmp_path)
    assert not any(p.exists() for p in stale) and mine.exists()


def deny_writes(monkeypatch, folder: Path) -> None:
    """Make `folder` behave as read-only for atomic writes, as the OS reports it (the error
    names the temporary file that could not be created)."""
    real = tempfile.mkstemp

    def mkstemp(suffix=None, prefix=None, dir=None, text=False):
        if dir is not None and Path(dir) == folder:
            raise PermissionError(13, "Permission denied", f"{dir}/{prefix}k2j3h4ab{suffix}")
        return real(suffix=suffix, prefix=prefix, dir=dir, text=text)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


def test_a_read_only_cache_names_the_file_it_could_not_write(tmp_path, servers, monkeypatch):
    info, folder = cached(tmp_path, servers)
    (folder / "source.json").unlink()
    deny_writes(monkeypatch, folder)
    with pytest.raises(DataError) as error:
        fetch(info, tmp_path)
    text = str(error.value)
    assert text == (
        f"{folder / 'train-images-idx3-ubyte'}: cannot write (Permission denied); "
        "point DIGITLAB_HOME at a writable folder"
    )


def test_a_lock_that_cannot_be_created_is_named(tmp_path, servers, monkeypatch):
    from digitlab.data import sources

    info, folder = cached(tmp_path, servers)
    (folder / "source.json").unlink()

    class ReadOnlyLock:
        def __init__(self, path, timeout):
            self.path = path

        def acquire(self):
            raise PermissionError(13, "Permission denied", str(self.path))

    monkeypatch.setattr(sources, "FileLock", ReadOnlyLock)
    with pytest.raises(DataError, match=rf"^{re.escape(str(folder / '.lock'))}: cannot create "):
        fetch(info, tmp_path)


def test_a_gzipped_pickle_bomb_stops_at_the_limit(tmp_path, monkeypatch):
    from digitlab.data import limits

    monkeypatch.setattr(limits, "MAX_PICKLE_BYTES", 2**20)
    path = tmp_path / "mnist.pkl.gz"
    path.write_bytes(gzip.compress(bytes(2**26), compresslevel=9, mtime=0))  # 64 MiB inside
    with pytest.raises(DataError, match=r"mnist\.pkl\.gz: more than 1 MiB after gunzip"):
        UserFiles(path).fetch(tiny_info(), timeout=1)
