"""The run directory: everything a trained model needs, and nothing that runs code when opened.

    runs/NAME/
      model.json          spec, classes, dataset, preprocessing, train config, version, engine
      model.safetensors   weights under PyTorch's names
      history.csv         one row per epoch
      checkpoint/         epoch-NNNN.safetensors (weights + optimizer) and latest.json (RNGs,
                          history, which file is latest), written after every epoch

    >>> save_run("runs/mlp", model, config, history, data_info)
    >>> model = load_model("runs/mlp", engine="numpy")        # weights move between engines

Every file is written atomically; a checkpoint's JSON is written after its weights and names
them with their SHA-256, so a kill at any moment leaves the previous epoch loadable.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from filelock import FileLock, Timeout
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from digitlab import reader
from digitlab.atomic import json_safe, write_bytes, write_json, write_text
from digitlab.augment import AUGMENTATIONS
from digitlab.engines import build
from digitlab.ensemble import KIND, Ensemble, member_weights
from digitlab.run_schema import (
    MAX_WEIGHTS_BYTES,
    RunError,
    check_latest_json,
    check_model_json,
    digest,
    read_json,
    read_regular,
    stale_temporaries,
)
from digitlab.spec import ModelSpec, SpecError
from digitlab.train import Callback, History, TrainConfig, Trainer
from digitlab.version import __version__

HISTORY_COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds")
FORMAT = 1


def _read_json(path: Path) -> dict:
    return read_json(path)


@contextlib.contextmanager
def writing(run: Path) -> Iterator[None]:
    """Hold the run folder's lock while writing it: a second process that tries to write the
    same folder is refused at once, instead of mixing its files with ours. Temporary files a
    killed writer left behind are removed once the lock is ours. A folder made here for a
    writer that failed before writing anything is removed again (it held only the lock)."""
    created = not run.exists()
    run.mkdir(parents=True, exist_ok=True)
    lock = FileLock(run / ".lock", timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise RunError(
            f"{run}: another digitlab process is writing this run; wait for it to finish, "
            "or choose another --out"
        ) from None
    failed = True
    try:
        for leftover in stale_temporaries(run):
            leftover.unlink(missing_ok=True)
        yield
        failed = False
    finally:
        lock.release()
        if failed and created and [p.name for p in run.iterdir()] == [".lock"]:
            with contextlib.suppress(OSError):
                (run / ".lock").unlink()
                run.rmdir()


def _save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> str:
    """Write safetensors atomically; return the file's SHA-256."""
    # np.ascontiguousarray would turn 0-d scalars (optimizer step, lr) into shape (1,)
    payload = st_save({k: np.require(v, requirements="C") for k, v in arrays.items()})
    write_bytes(path, payload)
    return hashlib.sha256(payload).hexdigest()


def _load_arrays(path: Path, sha256: str | None = None) -> dict[str, np.ndarray]:
    payload = read_regular(path, MAX_WEIGHTS_BYTES)
    if sha256 is not None and hashlib.sha256(payload).hexdigest() != sha256:
        raise RunError(f"{path}: does not match the checksum recorded beside it (damaged?)")
    try:
        return st_load(payload)
    except Exception as e:  # safetensors raises its own error types
        raise RunError(f"{path}: not a readable safetensors file ({e})") from None


def history_csv(history: History) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(
        out, fieldnames=HISTORY_COLUMNS, extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    for row in history.rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return out.getvalue()


def read_history(run: str | os.PathLike[str]) -> History:
    """history.csv back as a History (floats; NaN where a value is missing)."""
    path = Path(run) / "history.csv"
    try:
        rows = list(csv.DictReader(path.read_text().splitlines()))
    except FileNotFoundError:
        raise RunError(f"{path}: missing") from None
    return History(
        [{k: (int(v) if k == "epoch" else float(v or "nan")) for k, v in r.items()} for r in rows]
    )


# ---- checkpoints --------------------------------------------------------------------------------


def save_checkpoint(run: Path, trainer: Trainer) -> None:
    """Weights + optimizer (safetensors), then RNGs and history (JSON) naming that file."""
    folder = run / "checkpoint"
    arrays, meta = trainer.state_dict()
    name = f"epoch-{trainer.epoch:04d}.safetensors"
    meta |= {"weights": name, "sha256": _save_arrays(folder / name, arrays)}
    meta |= {"engine": trainer.model.engine}
    meta["meta_sha256"] = digest(json_safe(meta))  # the metadata is covered too
    write_json(folder / "latest.json", meta)
    for old in folder.glob("epoch-*.safetensors"):  # only the latest is needed
        if old.name != name:
            old.unlink(missing_ok=True)


def load_checkpoint(run: Path, engine: str) -> tuple[dict[str, np.ndarray], dict]:
    """The checkpoint's arrays and metadata, checked: its digest, the file it names (inside
    checkpoint/ only), and that it is not older than history.csv (a rewound latest.json)."""
    where = run / "checkpoint" / "latest.json"
    meta = check_latest_json(_read_json(where), str(where), engine)
    if (run / "history.csv").is_file():
        rows = len(read_history(run).rows)
        if rows > meta["epoch"]:
            raise RunError(
                f"{where}: is at epoch {meta['epoch']} but history.csv has {rows} epochs "
                "(rewound or mixed with another run)"
            )
    meta["best_val_loss"] = math.inf if meta.get("best_val_loss") is None else meta["best_val_loss"]
    return _load_arrays(run / "checkpoint" / meta["weights"], meta.get("sha256")), meta


class Checkpoint(Callback):
    """After every epoch: the checkpoint and history.csv."""

    def __init__(self, run: Path):
        self.run = Path(run)

    def on_epoch_end(self, trainer: Trainer, row: dict) -> None:
        save_checkpoint(self.run, trainer)
        write_text(self.run / "history.csv", history_csv(trainer.history))


# ---- the finished run ------------------------------------------------------------------------


def model_info(
    model,
    config: TrainConfig,
    data: dict,
    classes: list[str],
    finished: bool,
    history: History | None = None,
    extra: dict | None = None,
) -> dict:
    """What model.json holds."""
    history = history or History()
    return {
        "format": FORMAT,
        "digitlab_version": __version__,
        "engine": model.engine,
        "spec": model.spec.to_dict(),
        "num_params": model.spec.num_params(),
        "classes": list(classes),
        "data": data,
        "preprocessing": {
            "input": "uint8 28x28, 0 = background, 255 = ink",
            "scale": 1 / 255,
            "mean": config.mean,
            "std": config.std,
        },
        "train_config": config.to_dict(),
        **augmentation_of(config.augment),
        "training": {
            "finished": finished,
            "epochs": len(history.rows),
            "seconds": history.seconds,
            "final": history.rows[-1] if history.rows else None,
        },
        "saved": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(extra or {}),
    }


def augmentation_of(name: str) -> dict:
    """{"augmentation": its parameters} for a run trained with augmentation: the name alone
    would not say what a later digitlab means by it (issue 17 gave "real" a flag on 1s)."""
    if name == "none":
        return {}
    return {"augmentation": {"name": name, **dataclasses.asdict(AUGMENTATIONS[name])}}


RESULT_FILES = (
    "model.safetensors",
    "metrics.json",
    "metrics-val.json",
    "report.html",
    "report-val.html",
    "history.csv",
    "model.json",
)


def clear_results(run: Path) -> None:
    """Remove what an earlier run in this folder wrote (weights, metrics, reports, checkpoints)."""
    import shutil

    for name in RESULT_FILES:
        (run / name).unlink(missing_ok=True)
    for folder in ("checkpoint", "figures", "tensorboard"):
        shutil.rmtree(run / folder, ignore_errors=True)


def save_run(
    run: str | os.PathLike[str],
    model,
    config: TrainConfig,
    history: History,
    data: dict,
    classes: list[str],
    finished: bool = True,
    extra: dict | None = None,
) -> Path:
    """Write model.safetensors, history.csv and (last) model.json into `run`."""
    run = Path(run)
    extra = (extra or {}) | {
        "weights_sha256": _save_arrays(run / "model.safetensors", model.state_dict())
    }
    write_text(run / "history.csv", history_csv(history))
    write_json(
        run / "model.json", model_info(model, config, data, classes, finished, history, extra)
    )
    return run


def read_info(run: str | os.PathLike[str] | None) -> dict:
    """model.json of a run (None or "reader": the built-in reader), checked once."""
    run = reader.run_folder(run)
    if run == reader.FOLDER and not reader.installed():
        raise RunError("the built-in reader is not in this copy of digitlab; name a RUN")
    if not run.is_dir():
        raise RunError(f"{run}: no such run directory")
    where = run / "model.json"
    if not where.exists() and (run / "lines.json").exists():  # `--recipe reader-lines` writes it
        raise RunError(
            f"{run}: is a line reader (lines.json), not a run; read numbers with it: "
            f"digitlab predict --number --lines {run} IMAGE"
        )
    if not os.path.lexists(where):  # "model.json: missing" named the file, not the folder
        sweep = " (a sweep: its runs are in trials/)" if (run / "trials").is_dir() else ""
        raise RunError(f"{run}: not a digitlab run, no model.json in it{sweep}")
    return check_model_json(_read_json(where), str(where))


def require_finished(run: str | os.PathLike[str], info: dict) -> None:
    """Evaluating an unfinished run would report on weights that are not its result."""
    if not info.get("training", {}).get("finished"):
        raise RunError(
            f"{run}: training did not finish; continue it with digitlab train --resume {run}"
        )


def save_ensemble(run: str | os.PathLike[str], model: Ensemble, info: dict) -> Path:
    """An ensemble's run directory: every member's weights in one file, model.json last."""
    run = Path(run)
    with writing(run):
        clear_results(run)
        sha = _save_arrays(run / "model.safetensors", model.state_dict())
        write_text(run / "history.csv", history_csv(History()))
        write_json(run / "model.json", info | {"weights_sha256": sha})
    return run


def load_model(run: str | os.PathLike[str], engine: str | None = None, device: str = "auto"):
    """The trained model of a run (None or "reader": the built-in reader), on `engine` (default:
    the one it was trained with). An ensemble's members are each loaded this way. It is the
    network as trained, with its input normalisation: its `predict_proba` is before the run's
    fitted temperature, which `Predictor(run).probabilities` and `evaluate` apply."""
    run = reader.run_folder(run)
    info = read_info(run)
    weights = _load_arrays(run / "model.safetensors", info.get("weights_sha256"))
    pre = {"preprocessing": info["preprocessing"]}  # one normalisation, members included
    if info.get("kind") == KIND:
        members = [
            fit_weights(run, member | pre, member_weights(weights, i), engine, device)
            for i, member in enumerate(info["members"])
        ]
        temperatures = [float(m["temperature"]) for m in info["members"]]
        return Ensemble(members, temperatures, members[0].spec).eval()
    return fit_weights(run, info, weights, engine, device)


def fit_weights(run: Path, info: dict, weights: dict, engine: str | None, device: str):
    """A model built from `info`'s spec (model.json, or an ensemble member's entry) holding
    `weights`, each checked against it."""
    try:
        spec = ModelSpec.from_dict(info["spec"])
    except SpecError as e:
        raise RunError(f"{run / 'model.json'}: {e}") from None
    model = build(spec, engine or info["engine"], 0, "cpu" if engine == "numpy" else device)
    expected = model.state_dict()
    wrong = [k for k, v in weights.items() if k in expected and v.dtype != expected[k].dtype]
    if wrong:  # int8 or bool weights would be cast silently
        k = wrong[0]
        raise RunError(
            f"{run / 'model.safetensors'}: {k} is {weights[k].dtype}, the model holds "
            f"{expected[k].dtype}"
        )
    bad = [k for k, v in weights.items() if v.dtype.kind == "f" and not np.isfinite(v).all()]
    if bad:
        raise RunError(f"{run / 'model.safetensors'}: {bad[0]} holds NaN or infinite values")
    try:
        model.load_state_dict(weights)
    except (KeyError, ValueError, RuntimeError) as e:
        why = "; ".join(line.strip() for line in str(e).splitlines() if line.strip())[:300]
        raise RunError(
            f"{run / 'model.safetensors'}: does not fit the spec in model.json ({why})"
        ) from None
    pre = info["preprocessing"]
    model.mean, model.std = float(pre["mean"]), float(pre["std"])  # what logits() normalises with
    model.eval()
    return model


def init_from(model, run: str | os.PathLike[str], classes: list[str] | None = None) -> None:
    """Copy a finished run's weights into `model` (fine-tuning), whose spec must be the same,
    or differ only in its last Dense's outputs: an MNIST run fine-tuned on a folder of other
    classes, whose last layer then starts afresh. Given the new data's `classes`, the last
    layer keeps its rows only for the same classes: reordered to the new order when the names
    are the same, afresh when they differ (ten letters are not the ten digits)."""
    info = read_info(run)
    require_finished(run, info)
    source, spec = ModelSpec.from_dict(info["spec"]), model.spec
    try:
        fits = source.with_classes(spec.num_classes).layers == spec.layers
    except SpecError:
        fits = False
    if not fits:
        raise RunError(
            f"--init-from {run}: its model ({info['spec'].get('name') or 'custom'}) has other "
            f"layers than {spec.name or 'this model'}; fine-tuning needs the same spec"
        )
    weights = load_model(run, engine=model.engine, device="cpu").state_dict()
    head = f"layers.{len(spec.layers) - 1}."
    old, new = list(info["classes"]), list(classes) if classes is not None else None
    if new is not None and sorted(old) == sorted(new) and len(old) == source.num_classes:
        rows = [old.index(name) for name in new]  # the same classes, perhaps in another order
        weights = {k: v[rows] if k.startswith(head) else v for k, v in weights.items()}
    elif source.num_classes != spec.num_classes or new is not None:  # other classes: afresh
        fresh = {k: v for k, v in model.state_dict().items() if k.startswith(head)}
        weights = {k: v for k, v in weights.items() if not k.startswith(head)} | fresh
    model.load_state_dict(weights)
