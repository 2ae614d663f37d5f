"""`digitlab predict`, `serve` and `export`: using a trained model.

$ digitlab predict runs/cnn photo.jpg
$ digitlab serve runs/cnn
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from digitlab.cli.app import (
    DatasetFlag,
    JsonFlag,
    TtaFlag,
    app,
    given_dataset,
    one_line,
    progress,
    reports_errors,
)
from digitlab.errors import DigitlabError


@app.command("predict", rich_help_panel="Use a model")
@reports_errors
def predict(
    paths: Annotated[
        list[Path],
        typer.Argument(
            metavar="[RUN] IMAGE...",
            help="A run directory (or `reader`; none: the built-in reader), then image files "
            "(one digit each) or folders of them.",
        ),
    ],
    top: Annotated[int, typer.Option(help="How many classes to list per image.")] = 3,
    unsure: Annotated[
        float | None,
        typer.Option(help="Below this confidence say 'unsure' (default: the run's, else 0.6)."),
    ] = None,
    deskew: Annotated[
        bool, typer.Option("--deskew", metavar="", help="Undo slant before reading.")
    ] = False,
    number: Annotated[
        bool,
        typer.Option("--number", metavar="", help="Each image is a number: read all its digits."),
    ] = False,
    lines: Annotated[
        str | None,
        typer.Option(
            help="With --number: the line reader that reads the row whole (a folder from "
            "`digitlab train --recipe reader-lines`, or `reader`; default: the run's own if it "
            "has one, as the built-in reader does, else digits are cut apart and read one by one)."
        ),
    ] = None,
    show_steps: Annotated[
        Path | None,
        typer.Option(help="PNG of every preprocessing step (NAME-1.png, ... for several)."),
    ] = None,
    novelty: Annotated[
        bool,
        typer.Option(
            "--novelty/--no-novelty",
            help="Answer 'unsure' an image unlike every digit the run learned (a letter, a "
            "symbol), where the run has that check (runs trained for photos, the built-in "
            "reader); --no-novelty takes every image for a digit.",
        ),
    ] = True,
    tta: TtaFlag = False,
    json_out: JsonFlag = False,
) -> None:
    """Read the digit in each image (photos, scans, drawings), as MNIST-style preprocessing sees it.

    A folder stands for the images in it. An unreadable file gets a one-line error and the
    others are still read (exit status 1 if any failed).

    Example: digitlab predict my_seven.jpg      (the built-in reader)
             digitlab predict runs/cnn my_seven.jpg --show-steps steps.png
             digitlab predict postcode.jpg --number
             digitlab predict runs/cnn amount.jpg --number --lines reader
    """
    from digitlab import plots
    from digitlab.atomic import write_bytes
    from digitlab.predict import ERROR, Predictor

    if top < 1:
        raise DigitlabError(f"--top {top}: must be at least 1")
    if show_steps is not None and show_steps.suffix.lower() != ".png":
        raise DigitlabError(f"--show-steps {show_steps}: the pictures are PNG; name a .png file")
    run, images = split_run(paths)
    if lines is not None and not number:
        raise DigitlabError("--lines reads whole numbers: add --number")
    if number and deskew:
        raise DigitlabError("--deskew straightens one digit; --number reads a row as it is slanted")
    reader = Predictor(run, unsure, tta=tta, lines=lines, novelty=novelty)
    images = expand_folders(images)
    if number and tta and reader.lines is not None:
        raise DigitlabError(
            "--tta: the line reader reads the row whole, with no test-time augmentation; "
            "drop --tta (it applies to single digits and to digits cut apart)"
        )
    if number:
        failed = read_numbers(reader, images, top, show_steps, json_out)
        raise typer.Exit(1 if failed else 0)
    answers, failed, written = [], False, []
    paths = iter(steps_paths(show_steps, len(images)))
    for start in range(0, len(images), CHUNK):  # each answer is let go once it is given
        for r in reader.read_many(images[start : start + CHUNK], top, deskew):
            path = next(paths, None)
            if r["status"] == ERROR:
                failed = True
                error = error_of(r["image"], r["error"])
                typer.echo(f"error: {error}", err=True)
                if json_out:  # the array keeps one entry per image, in order
                    answers.append({"image": r["image"], "status": ERROR, "error": error})
                continue
            if path is not None:
                write_bytes(path, plots.figure_bytes(plots.steps_figure(r["steps"], r["image"])))
                written.append(path)
            if json_out:
                answers.append({k: v for k, v in r.items() if k not in ("steps", "digit")})
            else:
                typer.echo(one_line(answer_line(r)))
    if json_out:
        typer.echo(json.dumps(answers, indent=2))
    for path in written if not json_out else []:
        typer.echo(f"wrote {path}")
    raise typer.Exit(1 if failed else 0)


CHUNK = 64  # images read at once: one batch for the model, and all that is held in memory


def percent(p: float, places: int = 1) -> str:
    """p as a percentage, short of 100% unless it is 1: 0.99989 under a 0.9999 threshold
    printed "100.0%, unsure"."""
    text = f"{p:.{places}%}"
    return f"{1 - 10 ** -(places + 2):.{places}%}" if p < 1 and text.startswith("100") else text


def answer_line(r: dict) -> str:
    """One reading as the line `predict` prints."""
    if r["status"] == "no digit found":
        return f"{r['image']}: no digit found"
    others = ", ".join(f"{t['label']} {percent(t['p'])}" for t in r["top"][1:])
    note = ", unsure" if r["status"] == "unsure" else ""
    then = f"; then {others}" if others else ""
    from digitlab.predict import WIDE_NOTE  # loaded by then: the answer came from it

    advice = ": add --number" if r.get("note") == WIDE_NOTE else ""
    why = f" [{r['note']}{advice}]" if r.get("note") else ""
    return f"{r['image']}: {r['label']} ({percent(r['confidence'])}{note}){then}{why}"


def split_run(paths: list[Path]) -> tuple[Path | None, list[Path]]:
    """(RUN, images): the first path is the run when it is `reader` or a folder with a
    model.json; otherwise every path is an image and the run is the built-in reader (None)."""
    first = paths[0]
    if str(first) == "reader" or (first / "model.json").is_file():
        run, images = first, paths[1:]
    elif not first.exists() and not first.suffix and len(paths) > 1:  # meant as the run
        raise DigitlabError(
            f"{first}: no such run (a run is a folder with model.json); to read with the "
            "built-in reader, give only the images"
        )
    else:
        run, images = None, paths
    if not images:
        raise DigitlabError("give at least one image after the run")
    return run, images


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp"}


def expand_folders(paths: list[Path]) -> list[Path]:
    """Each folder replaced by the image files in it (sorted); files as given, and a folder
    with no images too, so that it fails alone (error_of) while the others are read."""
    out = []
    for path in paths:
        inside = path.is_dir() and [p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
        out += sorted(inside) if inside else [path]
    return out


def error_of(image, error) -> str:
    """The one-line error for an image that could not be read; a folder left in the list by
    expand_folders holds no images."""
    if Path(str(image)).is_dir():
        kinds = ", ".join(sorted(IMAGE_SUFFIXES))
        return f"{image}: a folder with no images ({kinds}) in it; its subfolders are not read"
    return one_line(str(error))


def steps_paths(show_steps: Path | None, n: int) -> list[Path]:
    """Where --show-steps pictures go: the file itself for one image, NAME-1.png ... for more."""
    if show_steps is None or n == 0:
        return []
    if n == 1:
        return [show_steps]
    return [
        show_steps.with_name(f"{show_steps.stem}-{i}{show_steps.suffix}") for i in range(1, n + 1)
    ]


@app.command("serve", rich_help_panel="Use a model")
@reports_errors
def serve(
    run: Annotated[
        Path | None,
        typer.Argument(help="A run directory (default: the built-in reader).", show_default=False),
    ] = None,
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

    Example: digitlab serve                 (the built-in reader)
             digitlab serve runs/cnn --port 8000
    """
    from digitlab.serve import run_server

    run_server(
        run,
        host=host,
        port=port,
        workers=workers,
        max_body_mb=max_body_mb,
        max_pixels=max_pixels,
        timeout=timeout,
        unsure_below=unsure,
        say=typer.echo,
    )


def read_numbers(
    reader, images: list[Path], top: int, show_steps: Path | None, json_out: bool
) -> bool:
    """predict --number: each image read as a row of digits, one at a time (nothing kept but
    the answer); an unreadable image gets its one-line error. Returns whether any failed."""
    from digitlab import ink, plots
    from digitlab.atomic import write_bytes

    results, failed, drawn = [], False, []
    for image in images:
        try:
            r = reader.read_number(image, str(image), top)
        except ink.ImageError as e:
            error = error_of(image, e)
            typer.echo(f"error: {error}", err=True)
            failed = True
            if json_out:  # the array keeps one entry per image, in order
                results.append({"image": str(image), "status": "error", "error": error})
            continue
        if show_steps is not None and r["digits"]:
            steps = {"input": ink.shrink(ink.load(image), 480)}
            steps |= {
                f"digit {i + 1}: read {d['label']}": d["digit"] for i, d in enumerate(r["digits"])
            }
            drawn.append(plots.figure_bytes(plots.steps_figure(steps, str(image))))
        digits = [{k: v for k, v in d.items() if k != "digit"} for d in r["digits"]]
        results.append(r | {"digits": digits})
    paths = steps_paths(show_steps, len(drawn))
    for path, png in zip(paths, drawn, strict=True):
        write_bytes(path, png)
    if json_out:
        typer.echo(json.dumps(results, indent=2))
        return failed
    for r in results:
        if r["number"] is None:
            typer.echo(one_line(f"{r['image']}: no digit found"))
            continue
        note = ", unsure" if r["status"] == "unsure" else ""
        each = " ".join(f"{d['label']}:{percent(d['confidence'], 0)}" for d in r["digits"])
        typer.echo(
            one_line(f"{r['image']}: {r['number']} ({percent(r['confidence'])}{note}; {each})")
        )
    for path in paths:
        typer.echo(f"wrote {path}")
    return failed


@app.command("export", rich_help_panel="Use a model")
@reports_errors
def export(
    run: Annotated[Path, typer.Argument(help="A run directory written by digitlab train.")],
    format: Annotated[str, typer.Option("--format", help="Only onnx for now.")] = "onnx",
    out: Annotated[
        Path | None,
        typer.Option(help="File to write (default RUN/model.onnx; for `reader`, reader.onnx)."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", metavar="", help="Replace an existing --out file.")
    ] = False,
    dataset: DatasetFlag = None,
    json_out: JsonFlag = False,
) -> None:
    """Export a trained model as one self-contained ONNX file, checked on the whole test set.

    Nothing is written unless onnxruntime, the NumPy engine and the PyTorch engine agree on every
    test image's label and on every probability within 1e-4.

    Example: digitlab export runs/cnn --format onnx --out cnn.onnx
    """
    from digitlab.jobs.export import export_onnx

    if format != "onnx":
        raise DigitlabError(f"--format {format}: only onnx is supported")
    ds = given_dataset(dataset)
    result = export_onnx(run, out, ds, on_event=progress, overwrite=overwrite)
    if json_out:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(
        f"wrote {result['path']} ({result['bytes'] / 1e6:.2f} MB, opset {result['opset']}): "
        f"onnxruntime, NumPy and PyTorch agree on all {result['images']:,} "
        f"{result['split']} images "
        f"(largest probability difference {result['max_prob_diff']:.1e})"
    )
