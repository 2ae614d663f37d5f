"""The evaluate job: metrics.json, figures/*.png and report.html for a finished run.

    >>> m = evaluate_run("runs/cnn")                 # returns what metrics.json holds
    >>> m["accuracy"], m["ece"]

Numbers come from evaluate.py, pictures from plots.py, HTML from report.py; this module
only decides what goes where. It returns values; the CLI prints.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digitlab import evaluate as ev
from digitlab import plots, reader, report, runs
from digitlab.atomic import json_safe, write_bytes, write_text
from digitlab.data import Dataset, is_built_in
from digitlab.engines import logits
from digitlab.ensemble import no_split_why
from digitlab.errors import DigitlabError
from digitlab.jobs import calibrate as calibration
from digitlab.jobs.train import run_dataset, same_training_images, training_data
from digitlab.machine import describe
from digitlab.preprocess import stratified_split
from digitlab.presets import PRESETS
from digitlab.train import TRAIN_FIELDS, TrainConfig, cli_flag

SPLITS = ("test", "val")


@dataclass(frozen=True)
class Evaluation:
    """What evaluating a run gives: metrics.json's content, the figures drawn (PNG bytes by name)
    and the predicted class of every image of the split (for compare's McNemar tests)."""

    metrics: dict
    figures: dict[str, bytes]
    predicted: np.ndarray  # (N,) int


def same_data(info: dict, ds: Dataset, given: dict | None = None) -> None:
    """Refuse data the run was not trained on. A built-in dataset is known by its name, whatever
    part of its training images the run used, unless the caller took those very images (`given`:
    what `training_data` records of them); a folder by its images' digest, not by its name
    (another `tt/` was taken for the run's own)."""
    known = is_built_in(ds)
    if ds.name != info["data"]["dataset"] and ("train_sha256" not in info["data"] or known):
        raise DigitlabError(f"the run was trained on {info['data']['dataset']}, not on {ds.name}")
    if given is None and not known:
        given = training_data(ds, info["data"].get("limit"))[2]
    if given is not None:
        same_training_images(info, given)


def split_data(info: dict, split: str, ds: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of the run's `split` of `ds`: the test set, or its own validation split
    (the same stratified split of the same first `limit` images that training held out)."""
    if split not in SPLITS:
        raise DigitlabError(f"--split {split!r}: expected one of {', '.join(SPLITS)}")
    if split == "test":
        same_data(info, ds)
        if ds.test.labels is None or not len(ds.test):
            raise DigitlabError(f"{info['data']['ref']}: has no labeled test split to evaluate on")
        return ds.test.images, ds.test.labels
    images, labels, given = training_data(ds, info["data"].get("limit"))
    same_data(info, ds, given)
    config = TrainConfig.from_dict(info["train_config"])
    if (missing := no_validation(info)) is not None:
        raise DigitlabError(missing)
    _, val_idx = stratified_split(labels, config.val_split, config.val_seed)
    return images[val_idx], labels[val_idx]


def no_validation(info: dict) -> str | None:
    """Why a run has no validation split, or None when it has one."""
    if info.get("kind") == "ensemble":
        if (info.get("train_config") or {}).get("val_split", 0) > 0:
            return None
        return f"this ensemble has no validation split: {no_split_why(info)}"
    if TrainConfig.from_dict(info["train_config"]).val_split == 0:
        return "this run trained on all its training images (--val-split 0): no validation split"
    return None


def train_command(info: dict, run: Path) -> str:
    """The `digitlab train` command that trains this run again, every setting spelled out (for an
    ensemble, the `digitlab ensemble` command that made it)."""
    if info.get("kind") == "ensemble":
        return str(info.get("command", "digitlab ensemble ..."))
    config, data = info["train_config"], info["data"]
    model = info.get("preset") if info.get("preset") in PRESETS else str(run / "model.json")
    flags = " ".join(cli_flag(k, v) for k, v in config.items() if k in TRAIN_FIELDS)
    limit = f" --limit {data['limit']}" if data.get("limit") else ""
    dataset = f" --dataset {data['ref']}" if data.get("ref", "mnist") != "mnist" else ""
    return f"digitlab train --model {model} --engine {info['engine']} {flags}{limit}{dataset}"


def provenance(run: Path, info: dict) -> list[tuple[str, str]]:
    """(name, value) rows of where a run came from, for the reports' provenance table."""
    machine = describe()
    config, data = info["train_config"], info["data"]
    shown = ("epochs", "batch_size", "optimizer", "lr", "schedule", "augment", "seed")
    recipe = ", ".join(f"{k}={config[k]}" for k in (*shown, "label_smoothing") if k in config)
    if config.get("split_seed", -1) >= 0:  # held out another seed's images (an ensemble's)
        recipe += f", split_seed={config['split_seed']}"
    return [
        (
            "dataset",
            f"{data['dataset']} ({data['source']}, verified: {data['verified']})",
        ),
        ("model", f"{info['spec'].get('name') or 'custom'}: {info['num_params']:,} parameters"),
        ("engine", f"{info['engine']} on {info.get('device', 'cpu')}"),
        ("recipe", recipe),
        ("train again", train_command(info, run)),
        ("machine", f"{machine['cpu']}, {machine['cores']} cores, {machine['memory']}"),
        (
            "software",
            f"Python {machine['python']}, NumPy {machine['numpy']}"
            + (f", PyTorch {machine['torch']}" if "torch" in machine else ""),
        ),
        ("digitlab", info.get("digitlab_version", "?")),
    ]


def file_suffix(split: str, tta: bool) -> str:
    """What an evaluation's files add to their names: metrics.json, figures/*.png and
    report.html are always the test split's, read without test-time augmentation; the others
    are metrics-val.json, metrics-tta.json, metrics-val-tta.json and their figures and reports."""
    return ("" if split == "test" else f"-{split}") + ("-tta" if tta else "")


def evaluate_run(
    run: str | Path,
    split: str = "test",
    calibrate: bool = False,
    data: Dataset | None = None,
    on_event=None,
    tta: bool = False,
) -> dict:
    """Metrics, figures and report.html for a finished run; returns what metrics.json holds.
    `data` is the run's dataset when the caller has it open; else it is opened by its ref.
    `tta`: with test-time augmentation (engines.logits), written beside the plain figures as
    metrics-tta.json and report-tta.html, so the run's own metrics.json is never replaced."""
    return evaluation(run, split, calibrate, data, on_event, tta).metrics


BUILT_IN_REPORTS = "reader-evaluation"  # where `digitlab evaluate reader` writes, in the cwd


def evaluation(
    run: str | Path,
    split: str = "test",
    calibrate: bool = False,
    data: Dataset | None = None,
    on_event=None,
    tta: bool = False,
) -> Evaluation:
    """`evaluate_run`, returning the figures and the predictions as well as the metrics. The
    built-in reader's are written to ./reader-evaluation/, never into the installed package."""
    run = Path(run)
    built_in = reader.is_built_in(run)
    if built_in and calibrate:
        raise DigitlabError(
            "--calibrate: the built-in reader is calibrated already, on the images it held out"
        )
    out = Path(BUILT_IN_REPORTS) if built_in else run
    info = runs.read_info(run)
    runs.require_finished(run, info)
    if (split == "val" or calibrate) and (missing := no_validation(info)) is not None:
        raise DigitlabError(f"{run}: {missing}")  # before split_data, to name the run
    model = runs.load_model(run)
    ds = run_dataset(info, data, on_event)
    images, labels = split_data(info, split, ds)
    classes = info["classes"]
    if calibrate:
        val_images, val_labels = split_data(info, "val", ds)
        fit = calibration.fitted(model, val_images, val_labels, calibration.augment_of(info))
        stale = ("temperature", "unsure_below")  # too few images now fits none: not the old
        info = {k: v for k, v in info.items() if k not in stale} | fit
        if "test" in info:  # its loss is at the temperature, which has changed
            info["test"] = calibration.on_test(model, ds.test, info.get("temperature", 1.0))
        write_text(run / "model.json", json.dumps(json_safe(info), indent=2) + "\n")
    temperature = float(info.get("temperature", 1.0))
    logits(model, images[:256], tta=tta)  # warm-up, so the timing below is steady
    started = time.perf_counter()
    z = logits(model, images, tta=tta)
    seconds = time.perf_counter() - started
    probs = ev.softmax(z, temperature)
    m = ev.metrics(probs, labels, classes)
    uncalibrated = (
        ev.metrics(ev.softmax(z), labels, classes)["ece"] if temperature != 1 else m["ece"]
    )
    m |= {
        "split": split,
        "run": str(run),
        "folder": str(out),  # where the metrics, figures and report are written
        "temperature": temperature,
        "tta": tta,
        "ece_uncalibrated": uncalibrated,
        "inference_images_per_s": len(images) / max(seconds, 1e-9),
        "mistakes": ev.confident_mistakes(probs, labels),
        "confusable": ev.confusable_pairs(np.array(m["confusion"])),
    }
    suffix = file_suffix(split, tta)
    write_text(out / f"metrics{suffix}.json", json.dumps(json_safe(m), indent=2) + "\n")
    predicted = probs.argmax(axis=1)
    figures = run_figures(run, m, images, labels, predicted, classes, suffix, out)
    write_text(out / f"report{suffix}.html", run_report(run, info, m, figures))
    return Evaluation(m, figures, predicted)


def run_figures(
    run: Path, m: dict, images, labels, predicted, classes, suffix: str = "", folder=None
) -> dict[str, bytes]:
    """Draw every figure of a run into FOLDER/figures/ (default: the run's own) and return their
    PNG bytes by name."""
    folder = Path(folder) if folder is not None else run
    try:
        history = runs.read_history(reader.run_folder(run)).rows
    except runs.RunError:  # history.csv lost: everything else can still be drawn
        history = []
    drawn = {
        "confusion": plots.confusion_heatmap(np.array(m["confusion"]), classes),
        "learning_curves": plots.learning_curves({run.name: history}) if history else None,
        "per_class": plots.per_class_accuracy(m["per_class"]),
        "mistakes": plots.mistakes_gallery(images, m["mistakes"], classes),
        "confusable": plots.confusable_examples(
            images, labels, predicted, m["confusable"], classes
        ),
        "reliability": plots.reliability_diagram(m["reliability"], m["ece"]),
    }
    out = {}
    for name, fig in drawn.items():
        if fig is not None:
            out[name] = plots.figure_bytes(fig)
            write_bytes(folder / "figures" / f"{name}{suffix}.png", out[name])
    return out


def _pct(x: float) -> str:
    return f"{x:.2%}"


def run_sections(run: Path, info: dict, m: dict, figures: dict[str, bytes]) -> list[dict]:
    s = report.section
    per_class = [
        [c["class"], _pct(c["precision"]), _pct(c["recall"]), _pct(c["f1"]), c["support"]]
        for c in m["per_class"]
    ]
    pairs = ", ".join(
        f"{info['classes'][p['a']]}↔{info['classes'][p['b']]} ({p['total']})"
        for p in m["confusable"]
    )
    calibration = f"Expected calibration error {_pct(m['ece'])}" + (
        f" after temperature scaling (T = {m['temperature']:.3f}; "
        f"{_pct(m['ece_uncalibrated'])} before)."
        if m["temperature"] != 1
        else ". Run `digitlab evaluate RUN --calibrate` to fit a temperature."
    )
    return [
        s(
            "Metrics",
            table=(
                ["metric", "value"],
                [
                    ["accuracy", _pct(m["accuracy"])],
                    ["mean loss", f"{m['loss']:.4f}"],
                    ["top-2 accuracy", _pct(m["top2_accuracy"])],
                    ["top-3 accuracy", _pct(m["top3_accuracy"])],
                    ["errors", f"{m['errors']} of {m['n']}"],
                    ["macro F1", _pct(m["macro_f1"])],
                    ["inference", f"{m['inference_images_per_s']:,.0f} images/s"],
                ],
            ),
        ),
        s(
            "Per class",
            table=(["class", "precision", "recall", "F1", "support"], per_class),
            figures=[("accuracy per class", figures["per_class"])],
        ),
        s(
            "Confusion",
            text=f"Most confused pairs: {pairs or 'none'}.",
            figures=[
                ("confusion matrix", figures["confusion"]),
                ("the most confusable pairs", figures["confusable"]),
            ],
        ),
        s("Mistakes", figures=[("most confident mistakes", figures["mistakes"])]),
        s(
            "Learning curves",
            text="" if "learning_curves" in figures else "(history.csv is missing)",
            figures=[
                ("loss and accuracy per epoch", figures[k])
                for k in ["learning_curves"]
                if k in figures
            ],
        ),
        s(
            "Calibration",
            text=calibration,
            figures=[("reliability diagram", figures["reliability"])],
        ),
    ]


def run_report(run: Path, info: dict, m: dict, figures: dict[str, bytes]) -> str:
    name = info["spec"].get("name") or run.name
    return report.render(
        title=f"{name} on {info['data']['dataset']}",
        subtitle=f"{info['engine']} engine, {info['num_params']:,} parameters, evaluated on the "
        f"{m['split']} "
        f"split ({m['n']:,} images)",
        headline=[
            ("accuracy", _pct(m["accuracy"])),
            ("errors", str(m["errors"])),
            ("training time", f"{info['training']['seconds']:.1f} s"),
            ("ECE", _pct(m["ece"])),
        ],
        sections=run_sections(run, info, m, figures),
        provenance=[
            ("evaluate again", f"digitlab evaluate {run} --split {m['split']}"),
            *provenance(run, info),
        ],
    )
