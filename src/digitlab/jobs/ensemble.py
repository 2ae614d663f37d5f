"""`digitlab ensemble`: finished runs combined into one ensemble run directory.

>>> info = make_ensemble(["runs/a", "runs/b", "runs/c"], "runs/ens", data=ds)
>>> info["test"]["acc"], [m["test"]["acc"] for m in info["members"]]
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from digitlab import runs
from digitlab.atomic import write_text
from digitlab.data import Dataset
from digitlab.ensemble import KIND, Ensemble
from digitlab.errors import DigitlabError
from digitlab.jobs import calibrate
from digitlab.jobs.evaluate import split_data
from digitlab.jobs.train import check_out, run_dataset
from digitlab.spec import ModelSpec
from digitlab.train import TrainConfig
from digitlab.version import __version__


def seeds_space(model: str, seeds: int, folder: str | os.PathLike[str]) -> Path:
    """A sweep space (written into `folder`) that trains `model` once with each seed 0..N-1: a
    grid over the seed, nothing pruned, the same 10% of the images held out by every member (so
    the ensemble is calibrated on images none of them trained on)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "space.toml"
    text = (
        f"# digitlab ensemble --seeds {seeds} --model {model}\n"
        f'name = "seeds"\ntrials = {seeds}\nsampler = "grid"\nprune = false\n'
        f"model = {json.dumps(model)}\n[fixed]\nval_split = 0.1\nsplit_seed = 0\n"
        f"[search.seed]\nchoices = {list(range(seeds))}\n"
    )
    if path.exists() and path.read_text() != text:
        raise DigitlabError(
            f"{folder}: holds members trained for another ensemble (another --seeds or --model, "
            "or from before members shared one validation split); give another --out, or "
            "delete the folder to train them again"
        )
    if not path.exists():
        write_text(path, text)
    return path


def shared_split(infos: list[dict]) -> dict | None:
    """The validation split every member held out (as train_config fields), or None when they
    held out different images, or none: then no image is unseen by all of them."""
    splits = set()
    for info in infos:
        config = TrainConfig.from_dict(info["train_config"])
        data = info["data"]
        splits.add((config.val_split, config.val_seed, data.get("ref"), data.get("limit")))
    if len(splits) != 1:
        return None
    val_split, seed, _, _ = splits.pop()
    return {"val_split": val_split, "split_seed": seed} if val_split > 0 else None


def top_of_sweep(folder: str | os.PathLike[str], k: int) -> list[Path]:
    """The k finished trials of a sweep with the best validation accuracy (sweep.json)."""
    path = Path(folder) / "sweep.json"
    if not path.is_file():
        raise DigitlabError(f"--top: {path} is missing; run the sweep first")
    trials = json.loads(path.read_text()).get("trials", [])
    done = sorted(
        (t for t in trials if t.get("state") == "COMPLETE" and t.get("run")),
        key=lambda t: -t["val_acc"],
    )
    if len(done) < k:
        raise DigitlabError(f"--top {k}: the sweep has only {len(done)} complete trials")
    return [Path(t["run"]) for t in done[:k]]


def make_ensemble(
    runs_given: list[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    data: Dataset | None = None,
    overwrite: bool = False,
) -> dict:
    """Write an ensemble run directory from finished runs of one dataset and classes; returns
    its model.json. The members keep their calibrated temperatures; the ensemble's test accuracy
    is measured on `data` (default: the members' dataset, opened by its ref), as training does
    for one network. When the members held out the same validation images (`--split-seed`),
    the ensemble fits its own temperature and `unsure` threshold there."""
    if len(runs_given) < 2:
        raise DigitlabError("an ensemble needs at least two runs")
    paths = [Path(r) for r in runs_given]
    if len({p.resolve() for p in paths}) != len(paths):
        raise DigitlabError("the same run is given twice")
    out = Path(out)
    check_out(out, overwrite)  # a folder of the user's own files: writing it cleared them
    infos, models = [], []
    for path in paths:
        info = runs.read_info(path)
        runs.require_finished(path, info)
        if info.get("kind") == KIND:
            raise DigitlabError(f"{path}: is an ensemble; give its members instead")
        infos.append(info)
        models.append(runs.load_model(path, engine="numpy"))
    first = infos[0]
    for path, info in zip(paths[1:], infos[1:], strict=True):
        if info["data"]["dataset"] != first["data"]["dataset"]:
            raise DigitlabError(
                f"{path}: trained on {info['data']['dataset']}, {paths[0]} on "
                f"{first['data']['dataset']}; an ensemble's members share their dataset"
            )
        if info["classes"] != first["classes"]:
            raise DigitlabError(
                f"{path}: reads other classes than {paths[0]}; an ensemble's members read the "
                "same classes"
            )
        if info["preprocessing"] != first["preprocessing"]:
            raise DigitlabError(f"{path}: normalises its input unlike {paths[0]}")
    members = [
        {
            "run": str(path.resolve()),
            "name": info["spec"].get("name") or path.name,
            "spec": info["spec"],
            "engine": info["engine"],
            "temperature": float(info.get("temperature", 1.0)),
            "train_config": info.get("train_config"),  # how it was trained: seed, recipe
            "test": info.get("test"),
            "weights_sha256": info.get("weights_sha256"),
        }
        for path, info in zip(paths, infos, strict=True)
    ]
    names = sorted({m["name"] for m in members})
    spec = dict(first["spec"]) | {"name": f"ensemble of {len(members)}: {', '.join(names)}"}
    model = Ensemble(
        models, [m["temperature"] for m in members], ModelSpec.from_dict(first["spec"])
    )
    split = shared_split(infos)
    info = {
        "format": runs.FORMAT,
        "digitlab_version": __version__,
        "kind": KIND,
        "engine": first["engine"],
        "spec": spec,
        "classes": first["classes"],
        "preprocessing": first["preprocessing"],
        # the validation split the members share; none (val_split 0) when they do not
        "train_config": split or {"val_split": 0.0},
        "data": first["data"],
        "training": {
            "finished": True,
            "seconds": float(sum(i["training"].get("seconds") or 0 for i in infos)),
        },
        "members": members,
        "num_params": model.num_params,
        "temperature": 1.0,
        # without a shared split, the members' thresholds averaged (each fitted on its own)
        "unsure_below": float(np.mean([float(i.get("unsure_below", 0.6)) for i in infos])),
        "command": "digitlab ensemble " + " ".join(str(p) for p in paths) + f" --out {out}",
        "saved": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    data = run_dataset(first, data)  # the members' own data, or the Dataset, name or path given
    if split:
        images, labels = split_data(info, "val", data)
        # members trained for photos: its threshold is fitted on paper, as theirs were
        info |= calibrate.fitted(model, images, labels, calibrate.augment_of(info))
    if data.test.labels is not None and len(data.test):
        info["test"] = calibrate.on_test(model, data.test, info["temperature"])
    runs.save_ensemble(out, model, info)
    return runs.read_info(out)
