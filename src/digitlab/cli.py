"""The `digitlab` command: one thin verb per capability; the only place that prints.

$ digitlab data fetch mnist
$ digitlab data info mnist --json
$ digitlab data show mnist --index 0:16 --out grid.png
$ digitlab run
"""

from __future__ import annotations

import functools
import json
import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from digitlab.errors import DigitlabError

app = typer.Typer(
    help="digitlab: handwritten digits, from raw MNIST files to a trained, evaluated model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
data_app = typer.Typer(help="Get, inspect and convert datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead.")]
FromPath = Annotated[
    Path | None,
    typer.Option("--from", help="Your own copy: a folder of IDX files, an .npz or mnist.pkl.gz."),
]


def reports_errors(command):
    """Turn a DigitlabError into one line on stderr and exit status 1."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except DigitlabError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(1) from None
        except OSError as e:  # a path we could not read or write: name it, no traceback
            where = f"{e.filename}: " if e.filename else ""
            typer.echo(f"error: {where}{e.strerror or e}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            typer.echo(
                "interrupted (a stopped training run continues with: digitlab train --resume RUN)",
                err=True,
            )
            raise typer.Exit(130) from None

    return wrapper


def progress(message: str) -> None:
    typer.echo(message, err=True)


def version_callback(value: bool) -> None:
    if value:
        from digitlab import __version__

        typer.echo(f"digitlab {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=version_callback, is_eager=True, help="Show the version."
        ),
    ] = False,
) -> None:
    """digitlab: handwritten digits, from raw MNIST files to a trained, evaluated model."""
    # `kill` (SIGTERM) unwinds like Ctrl-C, so half-finished work is cleaned up, not left behind
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


# ---- presenting -------------------------------------------------------------------------


def format_summary(summary: dict) -> str:
    """The human-readable form of Dataset.summary()."""
    train, test = summary["splits"]["train"], summary["splits"]["test"]
    h, w = summary["image_shape"]
    lines = [
        f"{summary['name']}: {train['size']:,} train + {test['size']:,} test images, "
        f"{h}x{w}, {len(summary['classes'])} classes",
        f"source:   {summary['source']}"
        + ("  (verified against pinned SHA-256 digests)" if summary["verified"] else ""),
    ]
    if summary["cache_path"]:
        lines.append(f"cache:    {summary['cache_path']}")
    for failed in summary["failed_sources"]:
        lines.append(f"skipped:  {failed['source']}: {failed['reason']}")
    if train["class_counts"] or test["class_counts"]:
        width = max(5, *(len(c) for c in summary["classes"]))
        lines.append(f"{'class':<{width}}  {'train':>6}  {'test':>6}")
        for i, name in enumerate(summary["classes"]):
            tr = train["class_counts"][i] if train["class_counts"] else "-"
            te = test["class_counts"][i] if test["class_counts"] else "-"
            lines.append(f"{name:<{width}}  {tr:>6}  {te:>6}")
    return "\n".join(lines)


def parse_index(text: str, n: int) -> list[int]:
    """'0:32', '100:', '5', '3,7,9' -> a list of indices into a split of n images."""
    try:
        if ":" in text:
            start, _, stop = text.partition(":")
            indices = list(range(n))[
                slice(int(start) if start else None, int(stop) if stop else None)
            ]
        else:
            indices = [int(part) for part in text.split(",")]
    except ValueError:
        raise DigitlabError(f"--index {text!r}: expected START:STOP, N, or N,M,...") from None
    bad = [i for i in indices if not -n <= i < n]
    if bad:
        raise DigitlabError(f"--index {text!r}: {bad[0]} is out of range for {n} images")
    if not indices:
        raise DigitlabError(f"--index {text!r}: selects no images")
    return [i % n for i in indices]


# ---- data -------------------------------------------------------------------------------


@data_app.command("fetch")
@reports_errors
def data_fetch(
    name: Annotated[str, typer.Argument(help="mnist or fashion-mnist.")],
    from_path: FromPath = None,
    force: Annotated[bool, typer.Option(help="Discard the cache and fetch again.")] = False,
    json_out: JsonFlag = False,
) -> None:
    """Fetch a dataset into the cache and verify it.

    Example: digitlab data fetch mnist
    """
    from digitlab import data

    if name not in data.DATASETS and Path(name).exists():
        raise DigitlabError(
            f"{name}: fetch takes a dataset name ({', '.join(data.DATASETS)}); "
            f"to import your files, use `digitlab data info {name}`"
        )
    ds = data.load(name, from_path=from_path, force=force, on_event=progress)
    summary = ds.summary()
    typer.echo(json.dumps(summary, indent=2) if json_out else format_summary(summary))


@data_app.command("info")
@reports_errors
def data_info(
    name: Annotated[str, typer.Argument(help="mnist, fashion-mnist, or a path to your files.")],
    from_path: FromPath = None,
    json_out: JsonFlag = False,
) -> None:
    """Split sizes, class counts, source and cache.

    Example: digitlab data info mnist --json
    """
    from digitlab import data

    summary = data.open_dataset(name, from_path=from_path, on_event=progress).summary()
    typer.echo(json.dumps(summary, indent=2) if json_out else format_summary(summary))


@data_app.command("show")
@reports_errors
def data_show(
    name: Annotated[str, typer.Argument(help="mnist, fashion-mnist, or a path to your files.")],
    split: Annotated[str, typer.Option(help="train or test.")] = "train",
    index: Annotated[str, typer.Option(help="Which images: 0:32, 100:, 5 or 3,7,9.")] = "0:32",
    out: Annotated[
        Path | None, typer.Option(help="Write a PNG grid here instead of ASCII art.")
    ] = None,
) -> None:
    """Show digits as a PNG grid or ASCII art.

    Example: digitlab data show mnist --out grid.png
    """
    from digitlab import data, plots

    ds = data.open_dataset(name, on_event=progress)
    try:
        chosen = ds.split(split)
    except KeyError as e:
        raise DigitlabError(f"--split: {e.args[0]}") from None
    if len(chosen) == 0:
        raise DigitlabError(f"{name}: the {split} split is empty")
    indices = parse_index(index, len(chosen))
    images = chosen.images[indices]
    labels = None if chosen.labels is None else chosen.labels[indices]
    if out is None:
        captions = [
            f"#{i}" + ("" if labels is None else f" {ds.classes[int(y)]}")
            for i, y in zip(indices, labels if labels is not None else indices, strict=True)
        ]
        typer.echo(plots.ascii_art(images, captions))
        return
    if len(indices) > 400:
        raise DigitlabError(f"--index {index!r}: {len(indices)} images, at most 400 fit a grid")
    fig = plots.sample_grid(images, labels, ds.classes, indices=indices, title=f"{ds.name} {split}")
    plots.save_figure(fig, out)
    typer.echo(f"wrote {out} ({len(indices)} images)")


@data_app.command("export")
@reports_errors
def data_export(
    name: Annotated[str, typer.Argument(help="mnist, fashion-mnist, or a path to your files.")],
    out: Annotated[Path, typer.Option(help="Folder to write into.")],
    fmt: Annotated[str, typer.Option("--format", help="idx, csv or png.")] = "idx",
    limit: Annotated[
        int | None, typer.Option(help="Only the first N images of each split.")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace files that already exist.")] = False,
) -> None:
    """Write a dataset as IDX, CSV or PNG folders.

    Example: digitlab data export mnist --format csv --out mnist-csv
    """
    from digitlab import data
    from digitlab.data.export import export

    if limit is not None and limit < 1:
        raise DigitlabError(f"--limit {limit}: must be at least 1")
    ds = data.open_dataset(name, on_event=progress)
    paths = export(ds, fmt, out, limit=limit, overwrite=overwrite)
    for p in paths:
        typer.echo(f"wrote {p}")


# ---- explore ----------------------------------------------------------------------------------


@app.command("explore")
@reports_errors
def explore_cmd(
    name: Annotated[str, typer.Argument(help="mnist, fashion-mnist, or a path to your files.")],
    out: Annotated[
        Path | None, typer.Option(help="Folder for report.html, figures/, summary.json.")
    ] = None,
    sample: Annotated[int, typer.Option(help="Images in the t-SNE embedding (stratified).")] = 2000,
    json_out: JsonFlag = False,
) -> None:
    """Explore a dataset: balance, class means, pixels, ink, PCA/t-SNE, duplicates, label suspects.

    Example: digitlab explore mnist --out runs/explore-mnist
    """
    from digitlab.eda import explore_dataset

    if sample < 50:
        raise DigitlabError(f"--sample {sample}: use at least 50 images for the embedding")
    folder = out or Path("runs") / f"explore-{Path(name).name or 'data'}"
    summary = explore_dataset(name, folder, sample, on_event=progress)
    if json_out:
        from digitlab.runs import json_safe

        typer.echo(json.dumps(json_safe(summary), indent=2))
        return
    b = summary["class_balance"]["largest_imbalance"]
    d = summary["duplicates"]
    typer.echo(
        f"{summary['dataset']}: {summary['sizes']['train']:,} train, "
        f"{summary['sizes']['test']:,} test; "
        f"most/least frequent class {b['most']}/{b['least']} ({b['ratio']:.2f}x)"
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


# ---- models and training ------------------------------------------------------------------


@app.command("models")
@reports_errors
def models(json_out: JsonFlag = False) -> None:
    """List the preset models with parameter counts.

    Example: digitlab models
    """
    from digitlab.presets import PRESETS

    rows = [
        {
            "name": p.name,
            "params": p.spec.num_params(),
            "engine": p.engine,
            "epochs": p.config.epochs,
            "description": p.description,
        }
        for p in PRESETS.values()
    ]
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return
    typer.echo(f"{'name':<16} {'params':>9}  {'engine':<6}  description")
    for r in rows:
        typer.echo(f"{r['name']:<16} {r['params']:>9,}  {r['engine']:<6}  {r['description']}")
    typer.echo("\nAlso: shorthands like mlp:512-256 or cnn:32-64/128, or a .json/.toml spec file.")


class Progress:
    """Training progress: a Rich bar per epoch on a terminal, one plain line per epoch otherwise."""

    def __init__(self, live: bool):
        self.live, self.bar, self.task = live, None, None

    def on_train_begin(self, trainer) -> None:
        self.started = time.perf_counter()

    def on_epoch_begin(self, trainer, epoch: int, steps: int) -> None:
        self.epoch_started, self.total = time.perf_counter(), trainer.config.epochs
        if self.live:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn(f"epoch {epoch}/{self.total}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"),
                TimeRemainingColumn(),
                transient=True,
                console=Console(stderr=True),
            )
            self.task = self.bar.add_task("", total=steps, stats="")
            self.bar.start()

    def on_batch_end(self, trainer, batch: int, seen: int, loss: float, acc: float) -> None:
        if self.bar is not None:
            rate = seen / max(time.perf_counter() - self.epoch_started, 1e-9)
            stats = f"loss {loss:.4f}  acc {acc:.2%}  {rate:,.0f} img/s"
            self.bar.update(self.task, completed=batch, stats=stats)

    def on_epoch_end(self, trainer, row: dict) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
        val = (
            f"  val_loss {row['val_loss']:.4f}  val_acc {row['val_acc']:.2%}"
            if row["val_acc"] == row["val_acc"]
            else ""
        )
        loss, acc = row["train_loss"], row["train_acc"]
        typer.echo(
            f"epoch {row['epoch']}/{self.total}  loss {loss:.4f}  acc {acc:.2%}"
            f"{val}  lr {row['lr']:.3g}  {row['seconds']:.1f}s",
            err=True,  # stdout stays clean for --json
        )


@app.command("train")
@reports_errors
def train(
    model: Annotated[
        str | None,
        typer.Option(help="Preset, shorthand (mlp:512-256, cnn:32-64/128) or spec.json/.toml."),
    ] = None,
    engine: Annotated[
        str | None, typer.Option(help="numpy or torch (default: the preset's).")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Passes over the training data.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per step.")] = None,
    optimizer: Annotated[str | None, typer.Option(help="sgd, adam or adamw.")] = None,
    lr: Annotated[
        float | None, typer.Option(help="Learning rate (the peak, for onecycle).")
    ] = None,
    schedule: Annotated[
        str | None, typer.Option(help="constant, step, cosine or onecycle.")
    ] = None,
    warmup_epochs: Annotated[
        float | None, typer.Option(help="Linear warm-up length in epochs.")
    ] = None,
    augment: Annotated[str | None, typer.Option(help="none, shift, affine or elastic.")] = None,
    label_smoothing: Annotated[float | None, typer.Option(help="0 to <1.")] = None,
    weight_decay: Annotated[
        float | None, typer.Option(help="L2 (sgd, adam) or decoupled (adamw).")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seeds weights, shuffling, augmentation, dropout.")
    ] = None,
    val_split: Annotated[
        float | None, typer.Option(help="Share of train held out for validation.")
    ] = None,
    patience: Annotated[
        int | None, typer.Option(help="Early stopping after N epochs without progress.")
    ] = None,
    device: Annotated[
        str, typer.Option(help="auto, cpu, cuda, cuda:1, mps (torch engine).")
    ] = "auto",
    compile: Annotated[
        bool, typer.Option("--compile", help="torch.compile the model (torch engine).")
    ] = False,
    limit: Annotated[
        int | None, typer.Option(help="Train on the first N images only (fast tries).")
    ] = None,
    dataset: Annotated[str, typer.Option(help="mnist, fashion-mnist or a path.")] = "mnist",
    config: Annotated[
        Path | None, typer.Option(help="A TOML file of TrainConfig settings.")
    ] = None,
    recipe: Annotated[
        str | None, typer.Option(help="A named recipe, e.g. seed-keras-128-64-16.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Run directory (default runs/MODEL-ENGINE).")
    ] = None,
    resume: Annotated[
        Path | None, typer.Option(help="Continue the unfinished run in this directory.")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a finished run in --out.")] = False,
    tensorboard: Annotated[
        bool, typer.Option("--tensorboard", help="Also write scalars to RUN/tensorboard.")
    ] = False,
    json_out: JsonFlag = False,
) -> None:
    """Train a model into a run directory (model.json, model.safetensors, history.csv, checkpoint/).

    Example: digitlab train --model mlp-256-128-64 --out runs/mlp
    """
    from digitlab import runs
    from digitlab.presets import plan_training

    callbacks = [Progress(live=sys.stderr.isatty() and not json_out)]

    def with_tensorboard(run_dir: Path) -> list:
        from digitlab.tensorboard import TensorBoard

        return [*callbacks, TensorBoard(run_dir / "tensorboard")] if tensorboard else callbacks

    given = {
        "--model": model,
        "--recipe": recipe,
        "--engine": engine,
        "--config": config,
        "--limit": limit,
        "--out": out,
        "--epochs": epochs,
        "--batch-size": batch_size,
        "--optimizer": optimizer,
        "--lr": lr,
        "--schedule": schedule,
        "--warmup-epochs": warmup_epochs,
        "--augment": augment,
        "--label-smoothing": label_smoothing,
        "--weight-decay": weight_decay,
        "--seed": seed,
        "--val-split": val_split,
        "--patience": patience,
    }
    if resume is not None:
        clash = [flag for flag, value in given.items() if value is not None]
        if clash or compile or dataset != "mnist":
            flag = clash[0] if clash else ("--compile" if compile else "--dataset")
            raise DigitlabError(f"--resume continues with the run's own settings; drop {flag}")
        run_dir = resume
        model_obj, history, test = runs.resume(
            resume, device, with_tensorboard(resume), on_event=progress
        )
    else:
        flags = {
            "epochs": epochs,
            "batch_size": batch_size,
            "optimizer": optimizer,
            "lr": lr,
            "schedule": schedule,
            "warmup_epochs": warmup_epochs,
            "augment": augment,
            "label_smoothing": label_smoothing,
            "weight_decay": weight_decay,
            "seed": seed,
            "val_split": val_split,
            "patience": patience,
        }
        plan = plan_training(model, recipe, engine, config, **flags)
        run_dir = out or Path("runs") / plan.name
        model_obj, history, test = runs.start(
            run_dir,
            plan.spec,
            plan.engine,
            plan.config,
            dataset,
            limit,
            device,
            compile,
            overwrite,
            with_tensorboard(run_dir),
            progress,
            plan.preset,
        )
    final = history.rows[-1]
    summary = {
        "run": str(run_dir),
        "engine": model_obj.engine,
        "epochs": len(history.rows),
        "seconds": history.seconds,
        "val_acc": final["val_acc"],
        "test_acc": test["acc"],
        "test_loss": test["loss"],
    }
    if json_out:
        typer.echo(json.dumps(runs.json_safe(summary), indent=2))
        return
    acc = f"test accuracy {test['acc']:.2%}" if test["acc"] is not None else "no labeled test split"
    typer.echo(
        f"trained {summary['epochs']} epoch{'s' * (summary['epochs'] != 1)} in "
        f"{history.seconds:.1f}s on {model_obj.engine}: {acc}"
    )
    typer.echo(f"wrote {run_dir}/ (model.json, model.safetensors, history.csv, checkpoint/)")


@app.command("predict")
@reports_errors
def predict(
    run: Annotated[Path, typer.Argument(help="A run directory written by digitlab train.")],
    images: Annotated[list[Path], typer.Argument(help="Image files, one digit each.")],
    top: Annotated[int, typer.Option(help="How many classes to list per image.")] = 3,
    unsure: Annotated[
        float | None, typer.Option(help="Below this confidence say 'unsure'.")
    ] = None,
    deskew: Annotated[bool, typer.Option("--deskew", help="Undo slant before reading.")] = False,
    number: Annotated[
        bool, typer.Option("--number", help="Each image is a number: read all its digits.")
    ] = False,
    show_steps: Annotated[
        Path | None, typer.Option(help="PNG of every preprocessing step.")
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """Read the digit in each image (photos, scans, drawings), as MNIST-style preprocessing sees it.

    Example: digitlab predict runs/cnn my_seven.jpg --show-steps steps.png
             digitlab predict runs/cnn postcode.jpg --number
    """
    from digitlab import plots
    from digitlab.predict import Predictor

    if top < 1:
        raise DigitlabError(f"--top {top}: must be at least 1")
    reader = Predictor(run, unsure)
    if number:
        read_numbers(reader, images, top, show_steps, json_out)
        return
    results = reader.read_many(list(images), top, deskew)
    if show_steps is not None:
        figures = [
            plots.figure_bytes(plots.steps_figure(r["steps"], r["image"])) for r in results[:1]
        ]
        from digitlab.atomic import write_bytes

        write_bytes(show_steps, figures[0])
    if json_out:
        typer.echo(
            json.dumps(
                [{k: v for k, v in r.items() if k not in ("steps", "digit")} for r in results],
                indent=2,
            )
        )
        return
    for r in results:
        if r["status"] == "no digit found":
            typer.echo(f"{r['image']}: no digit found")
            continue
        others = ", ".join(f"{t['label']} {t['p']:.1%}" for t in r["top"][1:])
        note = ", unsure" if r["status"] == "unsure" else ""
        then = f"; then {others}" if others else ""
        typer.echo(f"{r['image']}: {r['label']} ({r['confidence']:.1%}{note}){then}")
    if show_steps is not None:
        typer.echo(f"wrote {show_steps}")


@app.command("serve")
@reports_errors
def serve(
    run: Annotated[Path, typer.Argument(help="A run directory written by digitlab train.")],
    host: Annotated[
        str, typer.Option(help="Address to bind; 0.0.0.0 exposes it to the network.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (0: any free port).")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    max_body_mb: Annotated[
        float, typer.Option(help="Largest request body, in MB (refused before it is read).")
    ] = 5.0,
    max_pixels: Annotated[
        int, typer.Option(help="Largest image, in pixels (refused before it is decoded).")
    ] = 25_000_000,
    timeout: Annotated[
        float,
        typer.Option(help="Seconds a client gets to send a request's headers, then its body."),
    ] = 20.0,
    unsure: Annotated[
        float | None, typer.Option(help="Answer 'unsure' below this top probability.")
    ] = None,
) -> None:
    """Serve a model: a draw-a-digit page at / and a REST API under /api (docs at /docs).

    Example: digitlab serve runs/cnn --port 8000
    """
    from digitlab.serve import run_server

    run_server(
        run,
        host=host,
        port=port,
        workers=workers,
        max_body_bytes=round(max_body_mb * 1_000_000),
        max_pixels=max_pixels,
        timeout=timeout,
        unsure_below=unsure,
        say=typer.echo,
    )


def read_numbers(reader, images: list[Path], top: int, show_steps: Path | None, json_out: bool):
    """predict --number: each image read as a row of digits."""
    from digitlab import plots
    from digitlab.atomic import write_bytes

    results = [reader.read_number(image, str(image), top) for image in images]
    if show_steps is not None and results and results[0]["digits"]:
        from digitlab import ink

        first = results[0]["digits"]
        steps = {"input": ink.shrink(ink.load(images[0]), 480)}
        steps |= {f"digit {i + 1}: read {d['label']}": d["digit"] for i, d in enumerate(first)}
        write_bytes(show_steps, plots.figure_bytes(plots.steps_figure(steps, str(images[0]))))
    if json_out:
        clean = [
            r | {"digits": [{k: v for k, v in d.items() if k != "digit"} for d in r["digits"]]}
            for r in results
        ]
        typer.echo(json.dumps(clean, indent=2))
        return
    for r in results:
        if r["number"] is None:
            typer.echo(f"{r['image']}: no digit found")
            continue
        note = ", unsure" if r["status"] == "unsure" else ""
        each = " ".join(f"{d['label']}:{d['confidence']:.0%}" for d in r["digits"])
        typer.echo(f"{r['image']}: {r['number']} ({r['confidence']:.1%}{note}; {each})")
    if show_steps is not None:
        typer.echo(f"wrote {show_steps}")


@app.command("export")
@reports_errors
def export(
    run: Annotated[Path, typer.Argument(help="A run directory written by digitlab train.")],
    format: Annotated[str, typer.Option("--format", help="Only onnx for now.")] = "onnx",
    out: Annotated[
        Path | None, typer.Option(help="File to write (default RUN/model.onnx).")
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """Export a trained model as one self-contained ONNX file, checked on the whole test set.

    Nothing is written unless onnxruntime, the NumPy engine and the PyTorch engine agree on every
    test image's label and on every probability within 1e-4.

    Example: digitlab export runs/cnn --format onnx --out cnn.onnx
    """
    from digitlab.export import export_onnx

    if format != "onnx":
        raise DigitlabError(f"--format {format}: only onnx is supported")
    result = export_onnx(run, out, on_event=progress)
    if json_out:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(
        f"wrote {result['path']} ({result['bytes'] / 1e6:.2f} MB, opset {result['opset']}): "
        f"onnxruntime, NumPy and PyTorch agree on all {result['images']:,} test images "
        f"(largest probability difference {result['max_prob_diff']:.1e})"
    )


@app.command("bench")
@reports_errors
def bench(
    quick: Annotated[
        bool, typer.Option("--quick", help="One run per contender, fewer epochs: ≤ 5 minutes.")
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


# ---- evaluate, compare, and the main job ----------------------------------------------------


@app.command("evaluate")
@reports_errors
def evaluate(
    run: Annotated[Path, typer.Argument(help="A run directory written by digitlab train.")],
    split: Annotated[
        str, typer.Option(help="test, or val (the run's own validation split).")
    ] = "test",
    calibrate: Annotated[
        bool, typer.Option("--calibrate", help="Fit a temperature on the validation split.")
    ] = False,
    json_out: JsonFlag = False,
) -> None:
    """Metrics, figures and report.html for a run.

    Example: digitlab evaluate runs/cnn
    """
    from digitlab.pipeline import evaluate_run

    m = evaluate_run(run, split, calibrate, on_event=progress)
    if json_out:
        from digitlab.runs import json_safe

        typer.echo(json.dumps(json_safe(m), indent=2))
        return
    typer.echo(
        f"{run}: {m['split']} accuracy {m['accuracy']:.2%} ({m['errors']} errors of {m['n']}), "
        f"loss {m['loss']:.4f}, top-3 {m['top3_accuracy']:.2%}, ECE {m['ece']:.2%}"
        + (f" (temperature {m['temperature']:.3f})" if m["temperature"] != 1 else "")
    )
    worst = min(m["per_class"], key=lambda c: c["recall"])
    typer.echo(f"hardest class: {worst['class']} ({worst['recall']:.2%} recall)")
    typer.echo(f"wrote {run}/metrics.json, {run}/figures/, {run}/report.html")


@app.command("compare")
@reports_errors
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="Two or more run directories.")],
    out: Annotated[Path, typer.Option(help="Folder for the comparison report.")] = Path(
        "runs/compare"
    ),
    json_out: JsonFlag = False,
) -> None:
    """Compare runs on the test set: table, seeds, McNemar's test, learning curves, report.

    Example: digitlab compare runs/mlp runs/cnn
    """
    from digitlab.pipeline import compare_runs
    from digitlab.runs import json_safe

    result = compare_runs(run_dirs, out, on_event=progress)
    if json_out:
        typer.echo(json.dumps(json_safe(result), indent=2))
        return
    typer.echo(
        f"{'run':<28} {'engine':<6} {'params':>9} {'train s':>8} {'img/s':>10} {'test acc':>9}"
    )
    for r in result["runs"]:
        typer.echo(
            f"{r['name'][:28]:<28} {r['engine']:<6} {r['params']:>9,} {r['train_seconds']:>8.1f} "
            f"{r['images_per_s']:>10,.0f} {r['accuracy']:>9.2%}"
        )
    for g in result["seeds"]:
        acc = g["accuracy"]
        typer.echo(f"{g['model']} ({g['runs']} runs): {acc['mean']:.2%} ± {acc['std']:.2%}")
    for t in result["mcnemar"]:
        pair = f"{t['first']} vs {t['second']}"
        typer.echo(f"McNemar {pair}: b={t['b']} c={t['c']} p={t['p_value']:.3g}")
    typer.echo(f"wrote {out}/report.html")


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


@app.command("run")
@reports_errors
def run(
    out: Annotated[Path, typer.Option(help="Folder for everything the job writes.")] = Path(
        "runs/main"
    ),
    dataset: Annotated[str, typer.Option(help="mnist, fashion-mnist, or a path.")] = "mnist",
    quick: Annotated[
        bool, typer.Option("--quick", help="Half the epochs, about half the time.")
    ] = False,
    limit: Annotated[
        int | None, typer.Option(help="Train on the first N images (fast tries).")
    ] = None,
    models: Annotated[
        str, typer.Option(help="Comma-separated PRESET:ENGINE pairs to train and compare.")
    ] = "mlp-256-128-64:numpy,cnn-small:torch",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an earlier job in --out.")
    ] = False,
    json_out: JsonFlag = False,
) -> None:
    """The main job: data overview, train a NumPy MLP and a PyTorch CNN, evaluate, compare, report.

    Example: digitlab run   (or: digitlab run --models mlp-32:numpy,lenet5:torch --quick)
    """
    from digitlab.pipeline import main_job

    live = sys.stderr.isatty() and not json_out
    pairs = parse_models(models)
    result = main_job(
        out,
        dataset,
        quick,
        limit,
        pairs,
        callbacks=[Progress(live)],
        on_event=progress,
        overwrite=overwrite,
    )
    if json_out:
        typer.echo(json.dumps(result, indent=2))
        return
    for name, acc in result["accuracy"].items():
        typer.echo(f"{name}: test accuracy {acc:.2%}")
    typer.echo(f"done in {result['seconds']:.0f} s; report: {result['report']}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
