"""`digitlab sweep`: search models and recipes on Optuna, one run directory per trial.

$ digitlab sweep examples/sweeps/small.toml --out sweeps/small --workers 2
$ digitlab sweep space.toml --out sweeps/big --storage postgresql://u:p@db/sweeps --join
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from digitlab.cli.app import DatasetFlag, JsonFlag, app, given_dataset, progress, reports_errors
from digitlab.errors import DigitlabError


def worker_command(space: Path, out: Path, trials: int | None, storage: str | None, limit) -> list:
    command = [sys.executable, "-m", "digitlab.cli", "sweep", str(space), "--out", str(out)]
    command += ["--join", "--worker"]
    command += ["--trials", str(trials)] if trials else []
    command += ["--storage", storage] if storage else []
    command += ["--limit", str(limit)] if limit else []
    return command


def run_workers(command: list, workers: int) -> list[int]:
    """K local worker processes, each with its share of the cores; their exit codes."""
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    env = os.environ | {"OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads}
    children = [subprocess.Popen(command, env=env) for _ in range(workers)]
    try:
        return [child.wait() for child in children]
    except BaseException:  # Ctrl-C or kill: the workers stop too (their trials are marked failed)
        for child in children:
            child.terminate()
        for child in children:
            child.wait()
        raise


def run_sweep(space: Path, out: Path, trials, workers: int, storage, join: bool, limit) -> dict:
    """The sweep in this process, or in `workers` local worker processes; its summary."""
    from digitlab.data import open_dataset
    from digitlab.jobs import sweep as sw
    from digitlab.jobs.sweep_report import LIMIT_MARK

    if workers < 1 or (trials is not None and trials < 1):
        raise DigitlabError("--workers and --trials must be at least 1")
    if workers > (cores := os.cpu_count() or 1):  # each would train on a share of no core
        raise DigitlabError(
            f"--workers {workers}: more than the {cores} cores here; more machines join with "
            "--storage URL --join"
        )
    plan = sw.load_space(space)
    if limit is not None and limit < 100:  # as the space file's limit: 10% held out to choose on
        raise DigitlabError(f"--limit {limit}: a sweep needs at least 100 images")
    if limit is not None and limit != plan.limit:  # the space's own limit again changes nothing
        # kept with the space, so a sweep is never continued on other data
        plan = sw.dataclasses.replace(plan, limit=limit, text=f"{plan.text}{LIMIT_MARK}{limit}\n")
    if workers > 1:
        sw.open_study(plan, out, storage, join)  # created once, before the workers join it
        codes = run_workers(worker_command(space, out, trials, storage, limit), workers)
        if any(codes):
            progress(f"warning: workers exited with {codes}; their running trials are failed")
        data = open_dataset("mnist", on_event=progress)
        study = sw.open_study(plan, out, storage, True)
        return sw.summarise(study, plan, out, data, trials=trials, storage=storage)
    data = open_dataset("mnist", on_event=progress)
    return sw.sweep(plan, out, data, trials, storage, join, on_event=progress)


@app.command("sweep", rich_help_panel="Train")
@reports_errors
def sweep_cmd(
    space: Annotated[
        Path, typer.Argument(help="The space file (TOML): model, \\[fixed], \\[search].")
    ],
    out: Annotated[Path, typer.Option(help="The sweep folder: trials/, sweep.json, sweep.html.")],
    trials: Annotated[
        int | None, typer.Option(help="Finished trials the study stops at (all workers).")
    ] = None,
    workers: Annotated[int, typer.Option(help="Local worker processes to start.")] = 1,
    storage: Annotated[
        str | None,
        typer.Option(help="A database URL Optuna supports (default: a journal file in --out)."),
    ] = None,
    join: Annotated[
        bool, typer.Option("--join", metavar="", help="Work on a sweep already started.")
    ] = False,
    limit: Annotated[
        int | None, typer.Option(help="Train every trial on the first N images.")
    ] = None,
    worker: Annotated[bool, typer.Option("--worker", hidden=True)] = False,
    json_out: JsonFlag = False,
) -> None:
    """Search models and training settings on Optuna; the best is scored on test once.

    Example: digitlab sweep examples/sweeps/small.toml --out sweeps/small --workers 2
    """
    summary = run_sweep(space, out, trials, workers, storage, join, limit)
    if worker:
        return
    if not summary["counts"]["COMPLETE"] and summary["counts"]["FAIL"]:
        raise DigitlabError(
            f"no trial completed ({summary['counts']['FAIL']} failed); their errors are in "
            f"{summary['report']}"
        )
    if json_out:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    counts = summary["counts"]
    typer.echo(
        f"{counts['COMPLETE']} complete, {counts['PRUNED']} pruned, {counts['FAIL']} failed; "
        f"epochs trained {summary['epochs']['trained']} of {summary['epochs']['planned']}"
    )
    best = summary["best"]
    if best:
        test = "" if best["test_acc"] is None else f", test {best['test_acc']:.2%}"
        typer.echo(f"best: trial {best['number']} {best['model']} {best['params']}")
        typer.echo(f"  validation {best['val_acc']:.2%}{test}; run {best['run']}")
    typer.echo(f"report: {summary['report']}")


@app.command("ensemble", rich_help_panel="Train")
@reports_errors
def ensemble_cmd(
    runs: Annotated[list[Path] | None, typer.Argument(help="Finished runs to combine.")] = None,
    out: Annotated[Path, typer.Option(help="The ensemble's run directory.")] = Path(
        "runs/ensemble"
    ),
    top: Annotated[
        int | None, typer.Option(help="Instead of RUNs: the best K trials of --sweep.")
    ] = None,
    sweep: Annotated[Path | None, typer.Option(help="A sweep folder, for --top.")] = None,
    seeds: Annotated[
        int | None, typer.Option(help="Instead of RUNs: train --model with seeds 0..N-1 first.")
    ] = None,
    model: Annotated[str | None, typer.Option(help="The preset or shorthand, for --seeds.")] = None,
    workers: Annotated[int, typer.Option(help="Local processes training --seeds.")] = 1,
    limit: Annotated[int | None, typer.Option(help="--seeds: train on the first N images.")] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", metavar="", help="Replace an earlier run in --out.")
    ] = False,
    dataset: DatasetFlag = None,
    json_out: JsonFlag = False,
) -> None:
    """Combine finished runs into one ensemble run: the mean of their calibrated probabilities.

    Example: digitlab ensemble runs/a runs/b runs/c --out runs/ens   (or --top 3 --sweep sweeps/x,
    or --seeds 5 --model cnn-vgg --workers 2)
    """
    from digitlab.ensemble import no_split_why
    from digitlab.jobs.ensemble import make_ensemble, seeds_space, top_of_sweep

    if sum([bool(runs), top is not None, seeds is not None]) != 1:
        raise DigitlabError("give the RUNs to combine, --top K with --sweep DIR, or --seeds N")
    if top is not None:
        if sweep is None or top < 2:
            raise DigitlabError("--top K needs --sweep DIR and K of at least 2")
        runs = top_of_sweep(sweep, top)
    if (out / "model.json").exists() and not overwrite:  # before any member is trained
        raise DigitlabError(f"{out}: already holds a run; pass --overwrite to replace it")
    if seeds is not None:  # a grid sweep over the seed: every member trained, none pruned
        if model is None or seeds < 2:
            raise DigitlabError("--seeds N needs --model and N of at least 2")
        folder = out.with_name(out.name + "-members")
        space = seeds_space(model, seeds, folder)
        summary = run_sweep(space, folder, seeds, workers, None, False, limit)
        runs = [t["run"] for t in summary["trials"] if t["state"] == "COMPLETE"]
    info = make_ensemble(runs, out, data=given_dataset(dataset), overwrite=overwrite)
    if json_out:
        typer.echo(json.dumps(info, indent=2, default=str))
        return
    for m in info["members"]:
        acc = (m.get("test") or {}).get("acc")
        typer.echo(f"  {m['name']}{f': test {acc:.2%}' if acc else ''}  ({m['run']})")
    test = (info.get("test") or {}).get("acc")
    scored = f"test {test:.2%}" if test is not None else "no labeled test split"
    typer.echo(f"ensemble of {len(info['members'])}: {scored}; run {out}")
    if "skipped" in info.get("calibration", {}):
        typer.echo(f"not calibrated: {info['calibration']['skipped']}")
    elif "calibration" in info:
        typer.echo(
            f"calibrated on the {info['calibration']['images']:,} validation images every member "
            f"held out: temperature {info['temperature']:.3f}"
        )
    else:
        temperatures = ", ".join(f"{m['temperature']:.3g}" for m in info["members"])
        typer.echo(
            f"no validation split: {no_split_why(info)}. It reads with its members' "
            f"temperatures ({temperatures}; 1 is uncalibrated)"
        )
