"""`digitlab run`, `explore`, `evaluate`, `compare` and `bench`: the jobs.

$ digitlab run
$ digitlab evaluate runs/cnn
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from digitlab.cli.app import (
    DatasetFlag,
    JsonFlag,
    Progress,
    TtaFlag,
    app,
    given_dataset,
    progress,
    reports_errors,
)
from digitlab.errors import DigitlabError

# ---- explore ----------------------------------------------------------------------------------


def parse_models(text: str) -> list[tuple[str, str]]:
    """'mlp-32:numpy,lenet5' -> [(preset, engine), ...]; the engine defaults to the preset's."""
    from digitlab.engines import ENGINES
    from digitlab.presets import PRESETS

    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, engine = item.partition(":")
        if name not in PRESETS:
            raise DigitlabError(f"--models: {name!r} is not a preset; known: {', '.join(PRESETS)}")
        engine = engine or PRESETS[name].engine
        if engine not in ENGINES:
            raise DigitlabError(
                f"--models: engine {engine!r} for {name}; expected {' or '.join(ENGINES)}"
            )
        pairs.append((name, engine))
    if not pairs:
        raise DigitlabError("--models: give at least one PRESET[:ENGINE]")
    return pairs


@app.command("run", rich_help_panel="Start here")
@reports_errors
def run(
    out: Annotated[Path, typer.Option(help="Folder for everything the job writes.")] = Path(
        "runs/main"
    ),
    dataset: Annotated[str, typer.Option(help="mnist, fashion-mnist, or a path.")] = "mnist",
    quick: Annotated[
        bool,
        typer.Option(
            "--quick", metavar="", help="Half the epochs (at least 2), about half the time."
        ),
    ] = False,
    limit: Annotated[
        int | None, typer.Option(help="Train on the first N images (fast tries).")
    ] = None,
    models: Annotated[
        str, typer.Option(help="Comma-separated PRESET:ENGINE pairs to train and compare.")
    ] = "mlp-256-128-64:numpy,cnn-small:torch",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", metavar="", help="Replace an earlier job in --out.")
    ] = False,
    json_out: JsonFlag = False,
) -> None:
    """The main job: data overview, train a NumPy MLP and a PyTorch CNN, evaluate, compare, report.

    Example: digitlab run   (or: digitlab run --models mlp-32:numpy,lenet5:torch --quick)
    """
    from digitlab.jobs.main import main_job

    live = sys.stderr.isatty() and not json_out
    pairs = parse_models(models)
    result = main_job(
        out,
        dataset,
        quick=quick,
        limit=limit,
        models=pairs,
        overwrite=overwrite,
        callbacks=[Progress(live)],
        on_event=progress,
    )
    if json_out:
        typer.echo(json.dumps(result, indent=2))
        return
    for name, acc in result["accuracy"].items():
        typer.echo(f"{name}: test accuracy {acc:.2%}")
    typer.echo(f"done in {result['seconds']:.0f} s; report: {result['report']}")


@app.command("explore", rich_help_panel="Data")
@reports_errors
def explore_cmd(
    name: Annotated[str, typer.Argument(help="mnist, fashion-mnist, or a path to your files.")],
    out: Annotated[
        Path | None, typer.Option(help="Folder for report.html, figures/, summary.json.")
    ] = None,
    sample: Annotated[int, typer.Option(help="Images in the t-SNE embedding (stratified).")] = 2000,
    overwrite: Annotated[
        bool, typer.Option(help="Write into an --out that holds other files than an exploration.")
    ] = False,
    json_out: JsonFlag = False,
) -> None:
    """Explore a dataset: balance, class means, pixels, ink, PCA/t-SNE, duplicates, label suspects.

    Example: digitlab explore mnist --out runs/explore-mnist
    """
    from digitlab.jobs.explore import explore_dataset

    if sample < 50:
        raise DigitlabError(f"--sample {sample}: use at least 50 images for the embedding")
    folder = out or Path("runs") / f"explore-{Path(name).name or 'data'}"
    summary = explore_dataset(name, folder, sample, on_event=progress, overwrite=overwrite)
    if json_out:
        from digitlab.atomic import json_safe

        typer.echo(json.dumps(json_safe(summary), indent=2))
        return
    b = summary["class_balance"]["largest_imbalance"]
    d = summary["duplicates"]
    typer.echo(
        f"{summary['dataset']}: {summary['sizes']['train']:,} train, "
        f"{summary['sizes']['test']:,} test; "
        + (
            "every class as frequent"  # was "most/least frequent class 0/0 (1.00x)"
            if b["ratio"] == 1
            else f"most/least frequent class {b['most']}/{b['least']} "
            + (f"({b['ratio']:.2f}x)" if b["ratio"] else "(no images of it)")
        )
    )
    typer.echo(
        f"PCA: {summary['pca']['for_90']} components keep 90%, {summary['pca']['for_95']} keep 95%"
    )
    typer.echo(
        f"duplicates: {len(d['exact_within_train'])} exact groups, "
        f"{d['near_within_train_count']} near pairs "
        f"in train; {summary['label_suspects_count']} label suspects"
    )
    if summary["train_vs_test"]:
        t = summary["train_vs_test"]
        typer.echo(
            f"train vs test: largest difference in {t['largest']} (KS {t['largest_ks']:.3f})"
        )
    typer.echo(f"done in {summary['seconds']:.0f} s; wrote {folder}/report.html")


# ---- evaluate, compare, and the main job ----------------------------------------------------


@app.command("evaluate", rich_help_panel="Evaluate")
@reports_errors
def evaluate(
    run: Annotated[Path, typer.Argument(help="A run directory written by digitlab train.")],
    split: Annotated[
        str, typer.Option(help="test, or val (the run's own validation split).")
    ] = "test",
    calibrate: Annotated[
        bool,
        typer.Option("--calibrate", metavar="", help="Fit a temperature on the validation split."),
    ] = False,
    tta: TtaFlag = False,
    dataset: DatasetFlag = None,
    json_out: JsonFlag = False,
) -> None:
    """Metrics, figures and report.html for a run.

    Example: digitlab evaluate runs/cnn
             digitlab evaluate runs/cnn --tta      (writes metrics-tta.json, report-tta.html)
    """
    from digitlab.jobs.evaluate import evaluate_run, file_suffix

    ds = given_dataset(dataset)
    m = evaluate_run(run, split, calibrate, ds, on_event=progress, tta=tta)
    if json_out:
        from digitlab.atomic import json_safe

        typer.echo(json.dumps(json_safe(m), indent=2))
        return
    typer.echo(
        f"{run}: {m['split']} accuracy {m['accuracy']:.2%} ({m['errors']} errors of {m['n']}), "
        f"loss {m['loss']:.4f}, top-3 {m['top3_accuracy']:.2%}, ECE {m['ece']:.2%}"
        + (f" (temperature {m['temperature']:.3f})" if m["temperature"] != 1 else "")
        + (", with test-time augmentation" if tta else "")
    )
    if calibrate:  # the output was the same as without it: say what it did
        typer.echo(
            f"calibrated on the validation split: temperature {m['temperature']:.3f}, "
            f"written to {Path(run) / 'model.json'}"
        )
    worst = min(m["per_class"], key=lambda c: c["recall"])
    typer.echo(f"hardest class: {worst['class']} ({worst['recall']:.2%} recall)")
    end = file_suffix(split, tta)
    typer.echo(f"wrote in {m['folder']}: metrics{end}.json, figures/*{end}.png, report{end}.html")


@app.command("compare", rich_help_panel="Evaluate")
@reports_errors
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="Two or more run directories.")],
    out: Annotated[Path, typer.Option(help="Folder for the comparison report.")] = Path(
        "runs/compare"
    ),
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", metavar="", help="Replace an earlier comparison in --out."),
    ] = False,
    dataset: DatasetFlag = None,
    json_out: JsonFlag = False,
) -> None:
    """Compare runs on the test set: table, seeds, McNemar's test, learning curves, report.

    Example: digitlab compare runs/mlp runs/cnn
    """
    from digitlab.atomic import json_safe
    from digitlab.jobs.compare import compare_runs

    ds = given_dataset(dataset)
    result = compare_runs(run_dirs, out, ds, overwrite=overwrite, on_event=progress)
    result.pop("figures")
    if json_out:
        typer.echo(json.dumps(json_safe(result), indent=2))
        return
    typer.echo(
        f"{'run':<24} {'model':<16} {'engine':<6} {'params':>9} {'train s':>8} {'img/s':>10} "
        f"{'test acc':>9} {'loss':>7}"
    )
    for r in result["runs"]:
        typer.echo(
            f"{r['name'][:24]:<24} {r['model'][:16]:<16} {r['engine']:<6} {r['params']:>9,} "
            f"{r['train_seconds']:>8.1f} {r['images_per_s']:>10,.0f} {r['accuracy']:>9.2%} "
            f"{r['loss']:>7.4f}"
        )
    for g in result["seeds"]:
        acc = g["accuracy"]
        typer.echo(f"{g['model']} ({g['runs']} runs): {acc['mean']:.2%} ± {acc['std']:.2%}")
    for t in result["mcnemar"]:
        pair = f"{t['first']} vs {t['second']}"
        typer.echo(f"McNemar {pair}: b={t['b']} c={t['c']} p={t['p_value']:.3g}")
    typer.echo(f"wrote {out}/report.html")


@app.command("bench", rich_help_panel="Evaluate")
@reports_errors
def bench(
    quick: Annotated[
        bool,
        typer.Option(
            "--quick", metavar="", help="One run per contender, fewer epochs: ≤ 5 minutes."
        ),
    ] = False,
    json_out: JsonFlag = False,
) -> None:
    """Benchmark digitlab against scikit-learn, Keras 3, a plain PyTorch loop and onnxruntime.

    Runs the peer suite of a source checkout's benchmarks/ folder (about 12 minutes on 2 cores,
    `--quick` under 5) and writes benchmarks/results/MACHINE-DATE.json and docs/benchmarks.md.

    Example: digitlab bench --quick
    """
    import digitlab

    roots = [Path(digitlab.__file__).resolve().parents[2], Path.cwd().resolve()]
    root = next((r for r in roots if (r / "benchmarks" / "peers" / "__init__.py").is_file()), None)
    if root is None:
        raise DigitlabError(
            "digitlab bench needs a source checkout (its benchmarks/ folder), and there is none "
            f"beside {roots[0]} or in {roots[1]}; run it in a clone of the digitlab repository"
        )
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from benchmarks import common, peers

    results = peers.run(quick=quick, on_event=progress)
    page = common.assemble()
    if json_out:
        typer.echo(json.dumps(results, indent=2, default=str))
        return
    for v in results["verdicts"]:
        met = {True: "met", False: "MISSED", None: "not measured"}[v["met"]]
        note = f" [{v['note']}]" if v["note"] else ""
        target = f"target ≥ {v['target']}×"
        typer.echo(f"case {v['case']}: {v['claim']}: {v['measured']} ({target}): {met}{note}")
    typer.echo(f"wrote {results['results_file']} and {page}")
