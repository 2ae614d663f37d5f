"""The main job: a look at the data, train each model with its recipe, evaluate, compare,
and one report.html.

    >>> result = main_job("runs/main")             # about 30 s for the MLP and the small CNN
    >>> result["accuracy"], result["report"]
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from digitlab import plots, report, runs
from digitlab.atomic import write_text
from digitlab.data import Dataset, open_dataset
from digitlab.errors import DigitlabError
from digitlab.jobs.compare import compare_runs, compare_sections
from digitlab.jobs.evaluate import _pct, evaluation, provenance
from digitlab.jobs.train import start
from digitlab.presets import PRESETS

MAIN_MODELS = (("mlp-256-128-64", "numpy"), ("cnn-small", "torch"))


def main_job(
    out: str | Path = "runs/main",
    data: Dataset | str = "mnist",
    *,
    quick: bool = False,
    limit: int | None = None,
    models=MAIN_MODELS,
    overwrite: bool = False,
    callbacks=(),
    on_event=None,
) -> dict:
    """Data overview, train each (preset, engine) with its recipe, evaluate, compare (when there
    are two or more), and write one report.html. The dataset is opened once, here or by the
    caller; an earlier job's folder is replaced only with `overwrite`."""
    out = Path(out)
    models = [tuple(m) for m in models]
    if twice := next((m for i, m in enumerate(models) if m in models[:i]), None):
        # found after training both into one folder, when the comparison refused them
        raise DigitlabError(f"--models: {twice[0]}:{twice[1]} is given twice")
    if out.exists() and not out.is_dir():
        raise DigitlabError(f"--out {out}: exists and is not a folder")
    if (out / "model.json").exists():
        raise DigitlabError(
            f"--out {out}: is a training run; the main job needs a folder of its own"
        )
    earlier = [
        out / "report.html",
        out / "compare",
        *(out / f"{name}-{engine}" for name, engine in models),
    ]
    found = next((p for p in earlier if p.exists()), None)
    if found is not None and not overwrite:
        raise DigitlabError(
            f"--out {out}: holds an earlier job ({found.name}); pass --overwrite to replace it, "
            "or choose another --out"
        )
    started = time.perf_counter()
    say = on_event or (lambda message: None)
    ds = data if isinstance(data, Dataset) else open_dataset(data, on_event=on_event)
    trained = []
    for i, (name, engine) in enumerate(models, start=1):
        preset = PRESETS[name]
        full = preset.config.epochs  # quick: half, but a one-cycle needs 2 to settle
        epochs = min(full, max(2, full // 2)) if quick else full
        config = replace(preset.config, epochs=epochs)
        say(f"[{i}/{len(models)}] training {name} on the {engine} engine, {epochs} epochs")
        start(
            out / f"{name}-{engine}",
            preset.spec,
            engine,
            config,
            ds,
            limit=limit,
            overwrite=True,
            callbacks=callbacks,
            on_event=on_event,
            preset=name,
        )
        trained.append(out / f"{name}-{engine}")
    say("evaluating on the test set")
    evaluated = {run: evaluation(run, data=ds) for run in trained}
    comparison = (
        compare_runs(trained, out / "compare", ds, overwrite=True, evaluated=evaluated)
        if len(trained) > 1
        else None
    )
    overview = data_overview(ds)
    sections = [overview]
    for run in trained:
        info = runs.read_info(run)
        figures, m = evaluated[run].figures, evaluated[run].metrics
        sections.append(
            report.section(
                f"{run.name}: {_pct(m['accuracy'])} test accuracy",
                text=f"{info['engine']} engine, {info['num_params']:,} parameters, trained in "
                f"{info['training']['seconds']:.1f} s.",
                links=[(f"{run.name}: its own report", f"{run.name}/report.html")],
                figures=[
                    ("confusion matrix", figures["confusion"]),
                    ("most confident mistakes", figures["mistakes"]),
                    ("learning curves", figures["learning_curves"]),
                ],
            )
        )
    if comparison is not None:
        sections += compare_sections(comparison, comparison["figures"]["learning_curves"])
    seconds = time.perf_counter() - started
    first = runs.read_info(trained[0])
    html = report.render(
        title=f"digitlab on {ds.name}",
        subtitle=f"the main job: data, {len(trained)} models, evaluation, "
        f"comparison ({seconds:.0f} s in all)",
        headline=[(run.name, _pct(e.metrics["accuracy"])) for run, e in evaluated.items()],
        sections=sections,
        provenance=[
            ("run again", run_command(out, ds, quick, limit, models)),
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
        "accuracy": {run.name: e.metrics["accuracy"] for run, e in evaluated.items()},
    }


def run_command(out: Path, ds: Dataset, quick: bool, limit: int | None, models) -> str:
    """The `digitlab run` command that does this job again, into the same folder."""
    pairs = ",".join(f"{name}:{engine}" for name, engine in models)
    return (
        f"digitlab run --out {out} --overwrite --models {pairs}"
        + (f" --dataset {ds.ref}" if ds.ref and ds.ref != "mnist" else "")
        + (" --quick" if quick else "")
        + (f" --limit {limit}" if limit else "")
    )


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
