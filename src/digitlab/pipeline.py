"""The jobs that tie the modules together: evaluate a run, compare runs, and the main job.

    >>> evaluate_run("runs/cnn")                  # metrics.json, figures/*.png, report.html
    >>> compare_runs(["runs/mlp", "runs/cnn"], "runs/compare")
    >>> main_job("runs/main")                  # data, train two models, evaluate, compare, report

Numbers come from evaluate.py, pictures from plots.py, HTML from report.py; this module
only decides what goes where. It returns values; the CLI prints.
"""

from __future__ import annotations

import json
import time
from itertools import combinations
from pathlib import Path

import numpy as np

from digitlab import evaluate as ev
from digitlab import plots, report, runs
from digitlab.atomic import write_bytes, write_text
from digitlab.errors import DigitlabError
from digitlab.machine import describe
from digitlab.preprocess import stratified_split
from digitlab.train import TrainConfig, logits_of

SPLITS = ("test", "val")
TRAIN_FLAGS = (
    "epochs",
    "batch_size",
    "optimizer",
    "lr",
    "schedule",
    "warmup_epochs",
    "augment",
    "label_smoothing",
    "weight_decay",
    "seed",
    "val_split",
)


def split_data(info: dict, split: str, on_event=None):
    """(dataset, images, labels) of the run's `split`: the test set, or its own validation split."""
    from digitlab import data

    if split not in SPLITS:
        raise DigitlabError(f"--split {split!r}: expected one of {', '.join(SPLITS)}")
    ds = data.open_dataset(info["data"]["ref"], on_event=on_event)
    if split == "test":
        if ds.test.labels is None or not len(ds.test):
            raise DigitlabError(f"{info['data']['ref']}: has no labeled test split to evaluate on")
        return ds, ds.test.images, ds.test.labels
    config = TrainConfig.from_dict(info["train_config"])
    if config.val_split == 0:
        raise DigitlabError(
            "this run trained on all its training images: it has no validation split"
        )
    limit = info["data"].get("limit")
    images, labels = ds.train.images[:limit], ds.train.labels[:limit]
    _, val_idx = stratified_split(labels, config.val_split, config.seed)
    return ds, images[val_idx], labels[val_idx]


def provenance(run: Path, info: dict) -> list[tuple[str, str]]:
    machine = describe()
    config, data = info["train_config"], info["data"]
    recipe = ", ".join(
        f"{k}={config[k]}"
        for k in (
            "epochs",
            "batch_size",
            "optimizer",
            "lr",
            "schedule",
            "augment",
            "label_smoothing",
            "seed",
        )
    )
    model = info.get("preset") or "SPEC.json (the spec in model.json)"
    flags = " ".join(f"--{k.replace('_', '-')} {config[k]}" for k in TRAIN_FLAGS if k in config)
    limit = f" --limit {data['limit']}" if data.get("limit") else ""
    dataset = f" --dataset {data['ref']}" if data.get("ref", "mnist") != "mnist" else ""
    command = f"digitlab train --model {model} --engine {info['engine']} {flags}{limit}{dataset}"
    return [
        (
            "dataset",
            f"{data['dataset']} ({data['source']}, verified: {data['verified']})",
        ),
        ("model", f"{info['spec'].get('name') or 'custom'}: {info['num_params']:,} parameters"),
        ("engine", f"{info['engine']} on {info.get('device', 'cpu')}"),
        ("recipe", recipe),
        ("train again", command),
        ("machine", f"{machine['cpu']}, {machine['cores']} cores, {machine['memory']}"),
        (
            "software",
            f"Python {machine['python']}, NumPy {machine['numpy']}"
            + (f", PyTorch {machine['torch']}" if "torch" in machine else ""),
        ),
        ("digitlab", info["digitlab_version"]),
    ]


def evaluate_run(
    run: str | Path, split: str = "test", calibrate: bool = False, on_event=None
) -> dict:
    """Metrics, figures and report.html for a run; returns what metrics.json holds."""
    run = Path(run)
    info = runs.read_info(run)
    runs.require_finished(run, info)
    model = runs.load_model(run)
    mean, std = info["preprocessing"]["mean"], info["preprocessing"]["std"]
    _, images, labels = split_data(info, split, on_event)
    classes = info["classes"]
    if calibrate:
        _, val_images, val_labels = split_data(info, "val", on_event)
        info["temperature"] = ev.fit_temperature(
            logits_of(model, val_images, mean, std), val_labels
        )
        write_text(run / "model.json", json.dumps(runs.json_safe(info), indent=2) + "\n")
    temperature = float(info.get("temperature", 1.0))
    logits_of(model, images[:256], mean, std)  # warm-up, so the timing below is steady
    started = time.perf_counter()
    logits = logits_of(model, images, mean, std)
    seconds = time.perf_counter() - started
    probs = ev.softmax(logits, temperature)
    m = ev.metrics(probs, labels, classes)
    uncalibrated = (
        ev.metrics(ev.softmax(logits), labels, classes)["ece"] if temperature != 1 else m["ece"]
    )
    m |= {
        "split": split,
        "run": str(run),
        "temperature": temperature,
        "ece_uncalibrated": uncalibrated,
        "inference_images_per_s": len(images) / max(seconds, 1e-9),
        "mistakes": ev.confident_mistakes(probs, labels),
        "confusable": ev.confusable_pairs(np.array(m["confusion"])),
    }
    suffix = "" if split == "test" else f"-{split}"  # metrics.json is always the test split's
    write_text(run / f"metrics{suffix}.json", json.dumps(runs.json_safe(m), indent=2) + "\n")
    figures = run_figures(run, m, images, labels, probs.argmax(axis=1), classes, suffix)
    write_text(run / f"report{suffix}.html", run_report(run, info, m, figures))
    return m


def run_figures(
    run: Path, m: dict, images, labels, predicted, classes, suffix: str = ""
) -> dict[str, bytes]:
    """Draw every figure of a run into run/figures/ and return their PNG bytes by name."""
    try:
        history = runs.read_history(run).rows
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
            write_bytes(run / "figures" / f"{name}{suffix}.png", out[name])
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


# ---- comparing runs ------------------------------------------------------------------------------


def compare_runs(run_dirs: list[str | Path], out: str | Path, on_event=None) -> dict:
    """Table, seed statistics, McNemar tests and overlaid learning curves for several runs."""
    if len(run_dirs) < 2:
        raise DigitlabError("compare needs at least two runs")
    if len({Path(r).resolve() for r in run_dirs}) < len(run_dirs):
        raise DigitlabError("compare: the same run is given twice")
    out = Path(out)
    if (out / "model.json").exists():
        raise DigitlabError(
            f"--out {out}: is a training run; choose another folder for the comparison"
        )
    infos = {Path(r): runs.read_info(r) for r in run_dirs}  # each model.json read once
    first, first_info = next(iter(infos.items()))
    for other, info in infos.items():
        if info["data"]["dataset"] != first_info["data"]["dataset"]:
            raise DigitlabError(
                f"compare: {other} was trained on {info['data']['dataset']}, "
                f"{first} on {first_info['data']['dataset']}"
            )
        runs.require_finished(other, info)
    _, images, labels = split_data(first_info, "test", on_event)  # one dataset: load it once
    entries = []
    for run, info in infos.items():
        metrics_file = run / "metrics.json"
        m = json.loads(metrics_file.read_text()) if metrics_file.exists() else None
        if m is None or m.get("split") != "test":
            m = evaluate_run(run, on_event=on_event)
        model = runs.load_model(run)
        pre = info["preprocessing"]
        correct = logits_of(model, images, pre["mean"], pre["std"]).argmax(axis=1) == labels
        entries.append(
            {
                "run": str(run),
                "name": run.name,
                "model": info["spec"].get("name") or run.name,
                "spec": info["spec"],
                "engine": info["engine"],
                "params": info["num_params"],
                "train_seconds": info["training"]["seconds"],
                "accuracy": m["accuracy"],
                "loss": m["loss"],
                "images_per_s": m["inference_images_per_s"],
                "history": runs.read_history(run).rows,
                "correct": correct,
            }
        )
    groups: dict[str, list[dict]] = {}
    for e in entries:
        key = json.dumps(e["spec"], sort_keys=True) + e["engine"]
        groups.setdefault(key, []).append(e)
    seeds = [
        {
            "model": g[0]["model"],
            "engine": g[0]["engine"],
            "runs": len(g),
            "accuracy": ev.mean_std([e["accuracy"] for e in g]),
            "loss": ev.mean_std([e["loss"] for e in g]),
        }
        for g in groups.values()
        if len(g) > 1
    ]
    tests = [
        {"first": a["name"], "second": b["name"], **ev.mcnemar(a["correct"], b["correct"])}
        for a, b in combinations(entries, 2)
    ]
    curves = plots.figure_bytes(plots.learning_curves({e["name"]: e["history"] for e in entries}))
    result = {
        "runs": [
            {k: v for k, v in e.items() if k not in ("history", "correct", "spec")} for e in entries
        ],
        "seeds": seeds,
        "mcnemar": tests,
    }
    out.mkdir(parents=True, exist_ok=True)
    write_bytes(out / "figures" / "learning_curves.png", curves)
    write_text(out / "comparison.json", json.dumps(runs.json_safe(result), indent=2) + "\n")
    write_text(
        out / "report.html",
        report.render(
            title="Comparison",
            subtitle=f"{len(entries)} runs on the same test set",
            sections=compare_sections(result, curves),
            provenance=[
                (
                    "compare again",
                    "digitlab compare " + " ".join(map(str, run_dirs)) + f" --out {out}",
                ),
                *[
                    (k, v)
                    for k, v in provenance(first, first_info)
                    if k in ("machine", "software", "digitlab")
                ],
            ],
        ),
    )
    return result


def compare_sections(result: dict, curves: bytes) -> list[dict]:
    s = report.section
    rows = [
        [
            e["name"],
            e["model"],
            e["engine"],
            f"{e['params']:,}",
            f"{e['train_seconds']:.1f} s",
            f"{e['images_per_s']:,.0f}",
            _pct(e["accuracy"]),
            f"{e['loss']:.4f}",
        ]
        for e in result["runs"]
    ]
    sections = [
        s(
            "Runs",
            table=(
                [
                    "run",
                    "model",
                    "engine",
                    "parameters",
                    "training time",
                    "inference images/s",
                    "test accuracy",
                    "test loss",
                ],
                rows,
            ),
        )
    ]
    if result["seeds"]:
        sections.append(
            s(
                "Across seeds",
                table=(
                    ["model", "engine", "runs", "accuracy (mean ± sd)"],
                    [
                        [
                            g["model"],
                            g["engine"],
                            g["runs"],
                            f"{g['accuracy']['mean']:.2%} ± {g['accuracy']['std']:.2%}",
                        ]
                        for g in result["seeds"]
                    ],
                ),
            )
        )
    sections.append(
        s(
            "Do they differ? McNemar's test",
            text="b = images the first run gets right and the second wrong; c = the reverse. "
            "A small p "
            "(below 0.05) means the two models' errors differ by more than chance.",
            table=(
                ["first", "second", "b", "c", "p"],
                [
                    [t["first"], t["second"], t["b"], t["c"], f"{t['p_value']:.3g}"]
                    for t in result["mcnemar"]
                ],
            ),
        )
    )
    sections.append(
        s("Learning curves", figures=[("loss and accuracy per epoch, all runs", curves)])
    )
    return sections


# ---- the main job --------------------------------------------------------------------------

MAIN_MODELS = (("mlp-256-128-64", "numpy"), ("cnn-small", "torch"))


def main_job(
    out: str | Path = "runs/main",
    dataset: str = "mnist",
    quick: bool = False,
    limit: int | None = None,
    models=MAIN_MODELS,
    callbacks=(),
    on_event=None,
    overwrite: bool = False,
) -> dict:
    """Data overview, train each (preset, engine) with its recipe, evaluate, compare (when there
    are two or more), and write one report.html. An earlier job's folder is replaced only with
    `overwrite`."""
    from dataclasses import replace

    from digitlab import data
    from digitlab.presets import PRESETS

    out = Path(out)
    if (out / "model.json").exists():
        raise DigitlabError(
            f"--out {out}: is a training run; the main job needs a folder of its own"
        )
    earlier = [out / "report.html", *(out / f"{name}-{engine}" for name, engine in models)]
    found = next((p for p in earlier if p.exists()), None)
    if found is not None and not overwrite:
        raise DigitlabError(
            f"--out {out}: holds an earlier job ({found.name}); pass --overwrite to replace it, "
            "or choose another --out"
        )
    started = time.perf_counter()
    ds = data.open_dataset(dataset, on_event=on_event)
    trained = []
    for name, engine in models:
        preset = PRESETS[name]
        config = (
            replace(preset.config, epochs=max(1, preset.config.epochs // 2))
            if quick
            else preset.config
        )
        runs.start(
            out / f"{name}-{engine}",
            preset.spec,
            engine,
            config,
            dataset,
            limit,
            "auto",
            False,
            True,
            callbacks,
            on_event,
            name,
        )
        trained.append(out / f"{name}-{engine}")
    evaluated = {run.name: evaluate_run(run, on_event=on_event) for run in trained}
    comparison = (
        compare_runs(trained, out / "compare", on_event=on_event) if len(trained) > 1 else None
    )
    overview = data_overview(ds)
    sections = [overview]
    for run in trained:
        info = runs.read_info(run)
        figures = {p.stem: p.read_bytes() for p in (run / "figures").glob("*.png")}
        m = evaluated[run.name]
        sections.append(
            report.section(
                f"{run.name}: {_pct(m['accuracy'])} test accuracy",
                text=f"{info['engine']} engine, {info['num_params']:,} parameters, trained in "
                f"{info['training']['seconds']:.1f} s. Its own report: {run.name}/report.html.",
                figures=[
                    ("confusion matrix", figures["confusion"]),
                    ("most confident mistakes", figures["mistakes"]),
                    ("learning curves", figures["learning_curves"]),
                ],
            )
        )
    if comparison is not None:
        curves = (out / "compare" / "figures" / "learning_curves.png").read_bytes()
        sections += compare_sections(comparison, curves)
    seconds = time.perf_counter() - started
    first = runs.read_info(trained[0])
    html = report.render(
        title=f"digitlab on {ds.name}",
        subtitle=f"the main job: data, {len(trained)} models, evaluation, "
        f"comparison ({seconds:.0f} s in all)",
        headline=[(name, _pct(m["accuracy"])) for name, m in evaluated.items()],
        sections=sections,
        provenance=[
            ("run again", f"digitlab run --out {out}" + (" --quick" if quick else "")),
            *[
                (k, v)
                for k, v in provenance(trained[0], first)
                if k in ("dataset", "machine", "software", "digitlab")
            ],
        ],
    )
    write_text(out / "report.html", html)
    return {
        "report": str(out / "report.html"),
        "seconds": seconds,
        "accuracy": {name: m["accuracy"] for name, m in evaluated.items()},
    }


def data_overview(ds) -> dict:
    """A section: split sizes, class balance and a sample grid."""
    n = len(ds.classes)
    counts = [
        [
            ds.classes[i],
            ds.train.class_counts(n)[i],
            ds.test.class_counts(n)[i] if ds.test.labels is not None else "-",
        ]
        for i in range(n)
    ]
    picks = [i for c in range(n) for i in np.flatnonzero(ds.train.labels == c)[:4]]
    grid = plots.figure_bytes(
        plots.sample_grid(ds.train.images[picks], ds.train.labels[picks], ds.classes)
    )
    return report.section(
        "The data",
        text=f"{ds.name}: {len(ds.train):,} training and {len(ds.test):,} test images "
        f"(source: {ds.source}; verified: {ds.verified}).",
        table=(["class", "train", "test"], counts),
        figures=[("four training images per class", grid)],
    )
