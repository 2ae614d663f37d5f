"""What a run directory may hold, checked once when it is opened: a run may come from someone
else, so every field digitlab uses is checked before it is used, and files are read only when
they are regular files of a sane size.

    >>> info = check_model_json(json.loads(text), "runs/cnn/model.json")   # or a RunError
    >>> meta = check_latest_json(meta, "runs/cnn/checkpoint/latest.json")

Each message names the file and the field (`model.json: preprocessing.std = 0: must be a
positive finite number`), so the user knows what to fix or whom to distrust.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from pathlib import Path

from digitlab.atomic import leftovers
from digitlab.data.safe_io import open_regular
from digitlab.errors import DataError, DigitlabError

MAX_JSON_BYTES = 50_000_000  # model.json, latest.json, metrics.json: a long history fits in 1 MB
MAX_WEIGHTS_BYTES = 4_000_000_000  # safetensors: 1 billion float32 parameters (the spec's limit)
CHECKPOINT_NAME = re.compile(r"epoch-\d{4,}\.safetensors")  # the only names latest.json may give


class RunError(DigitlabError):
    """A run directory that is missing, incomplete or damaged."""


def read_regular(path: Path, limit: int, kind: str = "a file of a run") -> bytes:
    """The bytes of `path`, which must be a regular file of at most `limit` bytes: a FIFO, a
    device or a huge sparse file is refused before anything is read (data.safe_io's check)."""
    if not os.path.lexists(path):
        raise RunError(f"{path}: missing")
    try:
        with open_regular(path, kind) as f:
            size = os.fstat(f.fileno()).st_size
            if size > limit:
                raise RunError(f"{path}: {size:,} bytes, more than the {limit:,} allowed")
            data = f.read(limit + 1)
    except DataError as e:
        raise RunError(str(e)) from None
    if len(data) > limit:
        raise RunError(f"{path}: grew past {limit:,} bytes while being read")
    return data


def read_json(path: Path) -> dict:
    """A JSON object from a regular file, or a one-line RunError (bad UTF-8, bad JSON, a number
    too long to convert, nesting too deep)."""
    raw = read_regular(path, MAX_JSON_BYTES)
    try:
        value = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise RunError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise RunError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from None
    except (ValueError, RecursionError) as e:  # a 5000-digit integer; 100k-deep nesting
        raise RunError(f"{path}: not usable JSON ({str(e)[:120]})") from None
    if not isinstance(value, dict):
        raise RunError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


def digest(meta: dict) -> str:
    """SHA-256 of a JSON object's canonical form, without its own "meta_sha256"."""
    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _field(where: str, name: str, value, why: str) -> RunError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return RunError(f"{where}: {name} = {shown}: {why}")


def _number(where: str, name: str, value, positive: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or (positive and value <= 0):
        why = "must be a positive finite number" if positive else "must be a finite number"
        raise _field(where, name, value, why)
    return float(value)


def check_model_json(info: dict, where: str) -> dict:
    """model.json's fields that digitlab uses, each checked; returns `info` unchanged."""
    for key, kind in (
        ("engine", str),
        ("spec", dict),
        ("classes", list),
        ("preprocessing", dict),
        ("train_config", dict),
        ("data", dict),
        ("training", dict),
    ):
        if key not in info:
            raise RunError(f"{where}: has no {key!r}")
        if not isinstance(info[key], kind):
            raise _field(where, key, info[key], f"must be a JSON {kind.__name__}")
    if info["engine"] not in ("numpy", "torch"):
        raise _field(where, "engine", info["engine"], "must be numpy or torch")
    classes = info["classes"]
    if len(classes) < 2 or not all(isinstance(c, str) and c for c in classes):
        raise _field(where, "classes", classes, "must be a list of at least 2 names")
    if len(set(classes)) != len(classes):
        raise _field(where, "classes", classes, "names must differ")
    pre = info["preprocessing"]
    _number(where, "preprocessing.mean", pre.get("mean"))
    _number(where, "preprocessing.std", pre.get("std"), positive=True)
    if "temperature" in info:
        _number(where, "temperature", info["temperature"], positive=True)
    if "unsure_below" in info:
        value = _number(where, "unsure_below", info["unsure_below"])
        if not 0 <= value <= 1:
            raise _field(where, "unsure_below", value, "must be in [0, 1]")
    if not isinstance(info["training"].get("finished"), bool):
        raise _field(where, "training.finished", info["training"].get("finished"), "not a bool")
    ref = info["data"].get("ref")
    if not isinstance(ref, str) or not isinstance(info["data"].get("dataset"), str):
        raise _field(where, "data.ref", ref, "must name the dataset the run was trained on")
    limit = info["data"].get("limit")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise _field(where, "data.limit", limit, "must be null or a positive integer")
    if info.get("kind", "network") not in ("network", "ensemble"):
        raise _field(where, "kind", info.get("kind"), "must be network or ensemble")
    if info.get("kind") == "ensemble":
        members = info.get("members")
        if not isinstance(members, list) or len(members) < 2:
            raise _field(where, "members", members, "an ensemble lists at least 2 members")
        for i, member in enumerate(members):
            if not isinstance(member, dict) or not isinstance(member.get("spec"), dict):
                raise _field(where, f"members[{i}].spec", member, "must be a model spec")
            if member.get("engine") not in ("numpy", "torch"):
                raise _field(where, f"members[{i}].engine", member.get("engine"), "numpy or torch")
            _number(where, f"members[{i}].temperature", member.get("temperature"), positive=True)
    sha = info.get("weights_sha256")
    if sha is not None and not (isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha)):
        raise _field(where, "weights_sha256", sha, "must be a SHA-256 in hex")
    check = info.get("novelty")
    if check is not None:  # digitlab.novelty: its file's digest and the threshold it is read by
        if not isinstance(check, dict):
            raise _field(where, "novelty", check, "must be a JSON dict")
        _number(where, "novelty.threshold", check.get("threshold"))
        sha = check.get("sha256")
        if not (isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha)):
            raise _field(where, "novelty.sha256", sha, "must be a SHA-256 in hex")
    return info


def check_latest_json(meta: dict, where: str, engine: str) -> dict:
    """checkpoint/latest.json: its digest, the weights file it names (a plain name inside
    checkpoint/, never a path), and the fields resume uses."""
    if meta.get("meta_sha256") != digest(meta):
        raise RunError(f"{where}: its content does not match its digest (edited or damaged)")
    name = meta.get("weights")
    if not isinstance(name, str) or not CHECKPOINT_NAME.fullmatch(name):
        raise _field(where, "weights", name, "must be a file name like epoch-0003.safetensors")
    epoch, history = meta.get("epoch"), meta.get("history")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 1:
        raise _field(where, "epoch", epoch, "must be a positive integer")
    if not isinstance(history, list) or len(history) != epoch:
        raise _field(where, "history", "...", f"must hold one row for each of {epoch} epochs")
    for i, row in enumerate(history, start=1):
        check_history_row(row, f"{where}: history[{i - 1}]", i)
    if name != f"epoch-{epoch:04d}.safetensors":
        raise _field(where, "weights", name, f"is not the file of epoch {epoch}")
    for key in ("rng", "model_rng", "config"):
        if not isinstance(meta.get(key), dict):
            raise _field(where, key, meta.get(key), "must be a JSON object")
    if meta.get("engine", engine) != engine:
        raise _field(where, "engine", meta.get("engine"), f"the run trains on {engine}")
    if not isinstance(meta.get("stale"), int) or meta["stale"] < 0:
        raise _field(where, "stale", meta.get("stale"), "must be a non-negative integer")
    return meta


def check_history_row(row, where: str, epoch: int) -> None:
    """One epoch's row: its number, and finite numbers (validation ones may be null)."""
    if not isinstance(row, dict) or row.get("epoch") != epoch:
        raise RunError(f"{where}: must be the row of epoch {epoch}")
    for key in ("lr", "train_loss", "train_acc", "seconds"):
        _number(where, key, row.get(key))
    for key in ("val_loss", "val_acc"):
        if row.get(key) is not None:
            _number(where, key, row[key])


def stale_temporaries(folder: Path) -> list[Path]:
    """Temporary files an atomic write killed mid-way left in a run folder."""
    return [
        p for sub in (folder, folder / "checkpoint", folder / "figures") for p in leftovers(sub)
    ]
