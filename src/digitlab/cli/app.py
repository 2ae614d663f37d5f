"""The `digitlab` command: one thin verb per capability; the only place that prints.

$ digitlab data fetch mnist
$ digitlab data info mnist --json
$ digitlab data show mnist --index 0:16 --out grid.png
$ digitlab run
"""

from __future__ import annotations

import functools
import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from digitlab.errors import DigitlabError

app = typer.Typer(
    help="digitlab: handwritten digits, from raw MNIST files to a trained, evaluated model.\n\n"
    "Start here: `digitlab run` fetches MNIST, trains a NumPy MLP and a PyTorch CNN, evaluates "
    "and compares them, and writes runs/main/report.html (about 25 seconds on 2 cores).",
    epilog="Examples:\n\n"
    "  digitlab run --quick\n\n"
    "  digitlab train --model cnn-small --out runs/cnn\n\n"
    "  digitlab predict runs/cnn photo.jpg --show-steps steps.png\n\n"
    "  digitlab serve runs/cnn\n\n"
    "Each command has --help with an example.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
data_app = typer.Typer(help="Get, inspect and convert datasets.", no_args_is_help=True)

JsonFlag = Annotated[
    bool, typer.Option("--json", metavar="", help="Print machine-readable JSON instead.")
]
DatasetFlag = Annotated[
    Path | None,
    typer.Option(
        "--dataset",
        help="The run's data, when model.json names a path (digitlab opens only known "
        "datasets on a run's word).",
    ),
]
TtaFlag = Annotated[
    bool,
    typer.Option(
        "--tta",
        metavar="",
        help="Test-time augmentation: also read each digit moved one pixel each way, and "
        "average (five times the work).",
    ),
]
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
            typer.echo(f"error: {one_line(str(e))}", err=True)
            raise typer.Exit(1) from None
        except OSError as e:  # a path we could not read or write: name it, no traceback
            where = f"{e.filename}: " if e.filename else ""
            typer.echo(f"error: {one_line(f'{where}{e.strerror or e}')}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            typer.echo(interrupted(command.__name__, kwargs), err=True)
            raise typer.Exit(130) from None

    return wrapper


def one_line(message: str) -> str:
    """A message kept on one line: a file name holding a newline or other control character
    shows it escaped (a\\nb.png), as the shell would quote it."""
    return "".join(
        ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode()
        for ch in message
    )


def interrupted(command: str, kwargs: dict) -> str:
    """What Ctrl-C leaves behind, and the command that continues it, with the real folder."""
    if command == "train":
        run = kwargs.get("resume") or kwargs.get("out")
        where = f"digitlab train --resume {run}" if run else "digitlab train --resume runs/NAME"
        return f"interrupted; the run continues from its last finished epoch with: {where}"
    if command == "run":
        out = kwargs.get("out")
        return f"interrupted; start the job again with: digitlab run --out {out} --overwrite"
    return "interrupted"


def given_dataset(dataset: Path | None):
    """The Dataset a --dataset flag names, opened once, or None when it was not given (the job
    then opens the run's own, if model.json names a known dataset)."""
    from digitlab.data import open_dataset

    return open_dataset(str(dataset), on_event=progress) if dataset is not None else None


def progress(message: str) -> None:
    typer.echo(message, err=True)


def version_callback(value: bool) -> None:
    if value:
        from digitlab.version import __version__

        typer.echo(f"digitlab {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            metavar="",
            callback=version_callback,
            is_eager=True,
            help="Show the version.",
        ),
    ] = False,
) -> None:
    """digitlab: handwritten digits, from raw MNIST files to a trained, evaluated model."""
    # `kill` (SIGTERM) unwinds like Ctrl-C, so half-finished work is cleaned up, not left behind
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


HEARTBEAT = 15.0  # seconds between plain progress lines within a long epoch


class Progress:
    """Training progress: a Rich bar per epoch on a terminal, one plain line per epoch otherwise."""

    def __init__(self, live: bool):
        self.live, self.bar, self.task = live, None, None

    def on_train_begin(self, trainer) -> None:
        self.started = time.perf_counter()

    def on_epoch_begin(self, trainer, epoch: int, steps: int) -> None:
        self.epoch_started, self.total = time.perf_counter(), trainer.config.epochs
        self.last_line, self.epoch, self.steps = self.epoch_started, epoch, steps
        self.name = f"{trainer.model.spec.name}: " if trainer.model.spec.name else ""
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
                TextColumn(f"{self.name}epoch {epoch}/{self.total}"),
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
        now = time.perf_counter()
        if self.bar is None and now - self.last_line >= HEARTBEAT:  # a log file, not a terminal
            self.last_line = now
            typer.echo(
                f"{self.name}epoch {self.epoch}/{self.total}: batch {batch}/{self.steps}, "
                f"loss {loss:.4f}, acc {acc:.2%}",
                err=True,
            )
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
            f"{self.name}epoch {row['epoch']}/{self.total}  loss {loss:.4f}  acc {acc:.2%}"
            f"{val}  lr {row['lr']:.3g}  {row['seconds']:.1f}s",
            err=True,  # stdout stays clean for --json
        )


def reflowed(doc: str) -> str:
    """A command's docstring as its --help: each paragraph of prose on one line, for the
    terminal to wrap at its own width (Typer keeps the source's line breaks, which break
    ragged on 80 columns); examples and indented blocks stay as written."""
    import inspect

    paragraphs = inspect.cleandoc(doc).split("\n\n")
    keep = ("Example", "$ ", "digitlab ")
    return "\n\n".join(
        p if p.startswith(keep) or any(line[:1].isspace() for line in p.splitlines()) else
        " ".join(line.strip() for line in p.splitlines())
        for p in paragraphs
    )  # fmt: skip


def reflow_help(*typers: typer.Typer) -> None:
    """Every command's --help from its docstring, reflowed (reflowed); an explicit help stays."""
    for t in typers:
        for command in t.registered_commands:
            if command.help is None and command.callback is not None and command.callback.__doc__:
                command.help = reflowed(command.callback.__doc__)
