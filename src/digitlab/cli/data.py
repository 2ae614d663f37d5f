"""`digitlab data ...`: fetch, info, show and export datasets.

$ digitlab data fetch mnist
$ digitlab data show mnist --index 0:16 --out grid.png
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from digitlab.cli.app import FromPath, JsonFlag, app, data_app, progress, reports_errors
from digitlab.errors import DigitlabError

app.add_typer(data_app, name="data", rich_help_panel="Data")

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
            ends = [int(end) if end else None for end in text.partition(":")[::2]]
            # a slice past the split would be cut short without a word (59990:60010 of 60,000
            # gives 10 images, not 20): each end must lie within the split, as an index does
            past = [end for end in ends if end is not None and not -n <= end <= n]
            if past:
                raise DigitlabError(f"--index {text!r}: {past[0]} is out of range for {n} images")
            indices = list(range(n))[slice(*ends)]
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
    force: Annotated[
        bool, typer.Option(metavar="", help="Discard the cache and fetch again.")
    ] = False,
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
    typer.echo(f"wrote {out} ({len(indices)} image{'s' * (len(indices) != 1)})")


@data_app.command("export")
@reports_errors
def data_export(
    name: Annotated[str, typer.Argument(help="mnist, fashion-mnist, or a path to your files.")],
    out: Annotated[Path, typer.Option(help="Folder to write into.")],
    fmt: Annotated[str, typer.Option("--format", help="idx, csv or png.")] = "idx",
    limit: Annotated[
        int | None, typer.Option(help="Only the first N images of each split.")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option(metavar="", help="Replace files that already exist.")
    ] = False,
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
