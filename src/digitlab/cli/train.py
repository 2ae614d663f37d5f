"""`digitlab models`, `recipes` and `train`: what can be trained, and training it.

$ digitlab models
$ digitlab train --model cnn-small --epochs 2 --out runs/cnn
$ digitlab train --model mlp:256-128 --engine torch --nproc 2 --out runs/ddp   # 2 processes
"""

from __future__ import annotations

import inspect
import json
import os
import signal
import sys
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Annotated

import typer

from digitlab.atomic import json_safe
from digitlab.cli.app import JsonFlag, Progress, app, progress, reports_errors
from digitlab.engines import torchrun
from digitlab.errors import DigitlabError
from digitlab.train import TRAIN_FIELDS, TrainConfig, cli_flag


@app.command("models", rich_help_panel="Train")
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


@app.command("recipes", rich_help_panel="Train")
@reports_errors
def recipes(json_out: JsonFlag = False) -> None:
    """List the named recipes: a model and the settings that train it.

    Example: digitlab recipes   (then: digitlab train --recipe numpy-fast)
    """
    from digitlab.presets import RECIPES
    from digitlab.sequence_train import BATCH, EPOCHS, LR

    rows = [
        {"name": name, "model": spec.name, "params": spec.num_params()} | config.to_dict()
        for name, (spec, config) in RECIPES.items()
    ]
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return
    typer.echo(
        f"{'name':<22} {'model':<16} {'epochs':>6} {'batch':>6} {'held out':>8}  "
        "optimizer, lr, schedule"
    )
    for r in rows:  # held out: what calibrates its confidence (none: not calibrated)
        held = f"{r['val_split']:.0%}" if r["val_split"] else "none"
        typer.echo(
            f"{r['name']:<22} {r['model']:<16} {r['epochs']:>6} {r['batch_size']:>6} {held:>8}  "
            f"{r['optimizer']}, {r['lr']:g}, {r['schedule']}"
        )
    typer.echo(
        f"{LINES_RECIPE:<22} {'line reader':<16} {EPOCHS:>6} {BATCH:>6} {'':>8}  adamw, "
        f"{LR:g}, onecycle  (CTC on synthetic rows of MNIST digits)"
    )
    typer.echo(
        "held out: training images kept aside to calibrate confidence (none: not calibrated)"
    )


def config_options() -> list[inspect.Parameter]:
    """One `--flag` per TrainConfig field, typed and documented by the field itself: the list of
    training flags is written once, in train.py, and never typed again here."""
    params = []
    for name, f in TRAIN_FIELDS.items():
        kind = type(f.default)
        flag = "--" + name.replace("_", "-")
        decls = [f"{flag}/--no-{flag[2:]}"] if kind is bool else [flag]
        option = typer.Option(
            *decls,
            help=f"{f.metadata['help']} (default: the preset's, else {f.default})",
            show_default=False,
            metavar="" if kind is bool else None,
        )
        params.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[kind | None, option],
            )
        )
    return params


def leave_quietly() -> None:
    """End a worker rank now, its output flushed, skipping the interpreter's teardown: there gloo's
    C++ threads can be destroyed still joinable and abort the process ("terminate called
    without an active exception", seen under load after a finished run), failing torchrun."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def launch(nproc: int) -> int:
    """Run this `digitlab train` command again, without --nproc, as `nproc` processes under
    torchrun; returns its exit status."""
    args = sys.argv[1:]
    if not args or args[0] != "train":
        raise DigitlabError("--nproc: works from the command line (digitlab train ... --nproc N)")
    threads = {"OMP_NUM_THREADS": str(torchrun.threads_per_process(nproc))}
    command = torchrun.torchrun_command(without_nproc(args), nproc)
    launcher, relay = torchrun.start(command, threads | os.environ, sys.stderr.buffer)
    try:
        return launcher.wait()
    except KeyboardInterrupt:  # Ctrl-C: rank 0 marks the run stopped and says how to resume
        relay.stopping.set()
        launcher.send_signal(signal.SIGINT)
        launcher.wait()
        return 130
    except SystemExit:  # kill (SIGTERM)
        launcher.terminate()
        launcher.wait()
        raise
    finally:
        relay.join(timeout=10)  # the last lines, once every process writing them has ended


@contextmanager
def quiet_unless(main: bool):
    """In torchrun's other processes, Ctrl-C ends quietly: rank 0 says how to resume."""
    try:
        yield
    except KeyboardInterrupt:
        if main:
            raise
        raise typer.Exit(130) from None


def without_nproc(args: list[str]) -> list[str]:
    """The command line without --nproc N (or --nproc=N): what each process runs."""
    kept, skip = [], False
    for arg in args:
        if not skip and arg != "--nproc" and not arg.startswith("--nproc="):
            kept.append(arg)
        skip = arg == "--nproc" and not skip
    return kept


def train(
    model: Annotated[
        str | None,
        typer.Option(
            help="Preset (digitlab models), shorthand (mlp:512-256, cnn:32-64/128), a spec "
            ".json/.toml, or a run's model.json."
        ),
    ] = None,
    recipe: Annotated[
        str | None, typer.Option(help="A named recipe (digitlab recipes), e.g. numpy-fast.")
    ] = None,
    engine: Annotated[
        str | None,
        typer.Option(help="numpy or torch (default: the preset's; else torch for conv nets)"),
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="A TOML file of settings (TrainConfig fields).")
    ] = None,
    dataset: Annotated[
        str,
        typer.Option(help="mnist, fashion-mnist or a path (with --resume: the run's own data)."),
    ] = "mnist",
    limit: Annotated[
        int | None, typer.Option(help="Train on the first N images only (fast tries).")
    ] = None,
    init_from: Annotated[
        Path | None,
        typer.Option(help="Start from a finished run's weights (fine-tuning; same model)."),
    ] = None,
    device: Annotated[
        str, typer.Option(help="auto, cpu, cuda, cuda:1, mps (torch engine).")
    ] = "auto",
    compile: Annotated[
        bool, typer.Option("--compile", metavar="", help="torch.compile the model (torch engine).")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(help="Run directory (default: runs/MODEL-ENGINE).", show_default=False),
    ] = None,
    resume: Annotated[
        Path | None, typer.Option(help="Continue the unfinished run in this directory.")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", metavar="", help="Replace a finished run in --out.")
    ] = False,
    tensorboard: Annotated[
        bool,
        typer.Option("--tensorboard", metavar="", help="Also write scalars to RUN/tensorboard."),
    ] = False,
    nproc: Annotated[
        int,
        typer.Option(
            min=1,
            help="Data-parallel training in N processes, started with torchrun (torch engine; "
            "the batch size must divide by N).",
        ),
    ] = 1,
    json_out: JsonFlag = False,
    **settings,
) -> None:
    """Train a model into a run directory (model.json, model.safetensors, history.csv, checkpoint/).

    Settings layer in this order: the preset's or recipe's, then --config FILE, then flags.

    Examples:
      digitlab train --model cnn-small --out runs/cnn
      digitlab train --recipe numpy-fast --epochs 2
      digitlab train --model runs/cnn/model.json --init-from runs/cnn --lr 0.01 --out runs/tuned
      digitlab train --model mlp:256-128 --engine torch --nproc 2 --out runs/ddp
    """
    from digitlab import jobs
    from digitlab.data import open_dataset
    from digitlab.jobs.train import check_out, resumable

    if recipe == LINES_RECIPE:  # not a model spec: a line reader, trained on synthetic rows
        given = {"--model": model, "--engine": engine, "--config": config, "--resume": resume}
        given |= {"--init-from": init_from, "--nproc": nproc if nproc > 1 else None}
        given |= {cli_flag(k, v).split()[0]: v for k, v in settings.items()
                  if v is not None and k not in ("epochs", "seed")}  # fmt: skip
        clash = [flag for flag, value in given.items() if value is not None]
        if clash or compile or dataset != "mnist":
            flag = clash[0] if clash else "--compile" if compile else "--dataset"
            raise DigitlabError(f"--recipe {LINES_RECIPE} takes --out, --epochs, --seed and "
                                f"--limit only; drop {flag}")  # fmt: skip
        train_line_reader(out or Path("runs") / LINES_RECIPE, settings, limit, overwrite, json_out)
        return
    callbacks = [Progress(live=sys.stderr.isatty() and not json_out)]
    run_dir = resume if resume is not None else out
    under_torchrun = torchrun.started_by_torchrun()
    if nproc > 1 and under_torchrun:
        raise DigitlabError(f"--nproc {nproc}: this is already one of torchrun's processes")

    def with_tensorboard(run_dir: Path) -> list:
        from digitlab.tensorboard import TensorBoard

        return [*callbacks, TensorBoard(run_dir / "tensorboard")] if tensorboard else callbacks

    if resume is not None:
        given = {"--model": model, "--recipe": recipe, "--engine": engine, "--config": config}
        given |= {"--limit": limit, "--out": out, "--init-from": init_from}
        given |= {cli_flag(k, v).split()[0]: v for k, v in settings.items() if v is not None}
        clash = [flag for flag, value in given.items() if value is not None]
        if clash or compile:
            flag = clash[0] if clash else "--compile"
            raise DigitlabError(f"--resume continues with the run's own settings; drop {flag}")
        if nproc > 1:  # what would stop every process is refused here, in one line
            info = resumable(resume)
            batch_size = TrainConfig.from_dict(info["train_config"]).batch_size
            torchrun.check(info["engine"], batch_size, nproc, device)
            raise typer.Exit(launch(nproc))
    else:
        plan = jobs.plan_training(model, recipe, engine, config, **settings)
        run_dir = out or Path("runs") / plan.name
        if nproc > 1:  # what would stop every process is refused here, in one line
            torchrun.check(plan.engine, plan.config.batch_size, nproc, device)
            check_out(run_dir, overwrite)
            open_dataset(dataset, on_event=progress)  # fetched here once; each process reads it
            raise typer.Exit(launch(nproc))
    session = nullcontext()
    if under_torchrun:  # join the others; rank 0 writes the run and reports
        from digitlab.engines import distributed

        session = distributed.joined(device)
    with session as world, quiet_unless(main := world is None or world.is_main):
        report = progress if main else None
        if resume is not None:
            ds = open_dataset(dataset, on_event=report) if dataset != "mnist" else None
            model_obj, history, test = jobs.resume(
                resume,
                ds,
                device=device,
                callbacks=with_tensorboard(resume),
                on_event=report,
                world=world,
            )
        else:
            model_obj, history, test = jobs.start(
                run_dir,
                plan.spec,
                plan.engine,
                plan.config,
                open_dataset(dataset, on_event=report),
                limit=limit,
                device=device,
                compile=compile,
                overwrite=overwrite,
                init_from=init_from,
                callbacks=with_tensorboard(run_dir),
                on_event=report,
                preset=plan.preset,
                world=world,
            )
    if not main:  # rank 0 wrote and reports; this rank's group is left and it has nothing to keep
        leave_quietly()
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
        typer.echo(json.dumps(json_safe(summary), indent=2))
        return
    acc = f"test accuracy {test['acc']:.2%}" if test["acc"] is not None else "no labeled test split"
    typer.echo(
        f"trained {summary['epochs']} epoch{'s' * (summary['epochs'] != 1)} in "
        f"{history.seconds:.1f}s on {model_obj.engine}: {acc}"
    )
    typer.echo(f"wrote {run_dir}/ (model.json, model.safetensors, history.csv, checkpoint/)")
    from digitlab import runs

    typer.echo(calibration_note(runs.read_info(run_dir)))


def calibration_note(info: dict) -> str:
    """One line on what the run's confidences mean: fitted on held-out images, or not, and why."""
    fit = info.get("calibration", {})
    if "temperature" in info:
        check = info.get("novelty")
        return (
            f"confidence calibrated on {fit.get('images', 0):,} held-out images: temperature "
            f"{info['temperature']:.3f}, unsure below {info['unsure_below']:.4g}"
        ) + (
            f"; images unlike its training digits answer unsure ({check['file']}, fitted on "
            f"{check['held_out_digits']:,} held-out digits)"
            if check
            else ""
        )
    from digitlab.predict import UNSURE_BELOW

    why = fit.get("skipped") or "it held no images out (--val-split 0)"
    return (
        f"confidence not calibrated: {why}; read at temperature 1, unsure below "
        f"{UNSURE_BELOW} (the default)"
    )


LINES_RECIPE = "reader-lines"


def train_line_reader(out: Path, settings: dict, limit, overwrite: bool, json_out: bool) -> None:
    """`digitlab train --recipe reader-lines`: the built-in reader's line reader (CTC)."""
    from digitlab import data
    from digitlab.sequence_train import EPOCHS, train_lines

    mnist = data.load("mnist", on_event=progress)
    info = train_lines(
        out, mnist, epochs=settings.get("epochs") or EPOCHS, seed=settings.get("seed") or 0,
        limit=limit, on_event=progress, overwrite=overwrite,
    )  # fmt: skip
    if json_out:
        typer.echo(json.dumps(json_safe({"out": str(out)} | info), indent=2))
        return
    v = info["validation"]
    typer.echo(
        f"trained a line reader ({len(info['members'])} members, seeds "
        f"{', '.join(map(str, info['train_config']['seeds']))}) in {info['seconds']:.0f}s: "
        f"{v['exact']:.2%} of {v['rows']:,} validation rows read exactly"
    )
    typer.echo(f"wrote {out}/ (lines.json, lines.safetensors; each member in {out}/members/)")


_signature = inspect.signature(train, eval_str=True)
_fixed = [p for p in _signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
train.__signature__ = _signature.replace(parameters=[*_fixed, *config_options()])
app.command("train", rich_help_panel="Train")(reports_errors(train))
