"""The train job: train a plan (jobs.plan: what `digitlab train` was given, resolved) into a run
directory, or continue an unfinished one.

    >>> plan = plan_training(model="cnn-small", epochs=2)        # jobs.plan
    >>> model, history, test = start("runs/cnn", plan.spec, plan.engine, plan.config, ds)
    >>> model, history, test = resume("runs/cnn", ds)
    >>> with distributed.joined() as world:                      # under torchrun (--nproc N)
    ...     model, history, test = start("runs/cnn", ..., world=world)

The run directory's format is runs.py's; this module only decides what is trained.
In data-parallel training every process trains; rank 0 alone writes the run directory and
scores the test set, the others return (model, history, None).
"""

from __future__ import annotations

import hashlib
import os
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from digitlab import runs
from digitlab.atomic import write_json
from digitlab.data import DATASETS, Dataset, open_dataset
from digitlab.engines import build
from digitlab.errors import DigitlabError
from digitlab.jobs import calibrate
from digitlab.runs import (
    Checkpoint,
    RunError,
    clear_results,
    load_checkpoint,
    model_info,
    read_info,
    save_run,
    writing,
)
from digitlab.spec import ModelSpec
from digitlab.train import TrainConfig, Trainer, TrainingDiverged


def run_dataset(info: dict, data: Dataset | str | None = None, on_event=None) -> Dataset:
    """The dataset a run was trained on: `data` when the caller gives it; else opened by the
    ref in model.json, which may only name a known dataset. A run received from someone else
    must not make digitlab read a path of its choosing."""
    if data is not None:  # a Dataset, or a name or path to open, as `start` takes
        return data if isinstance(data, Dataset) else open_dataset(str(data), on_event=on_event)
    ref = info["data"]["ref"]
    if ref in DATASETS:
        return open_dataset(ref, on_event=on_event)
    raise DigitlabError(
        f"model.json: data.ref names a path ({ref!r:.80}), which digitlab does not open on a "
        "run's word; pass the data yourself (--dataset PATH)"
    )


def same_training_images(info: dict, given: dict) -> None:
    """Refuse other training images than the run trained on (`given`: what `training_data`
    records of them): a run trained on a Dataset made in Python, reopened by name, would go on
    with (or validate on) the whole named dataset; a folder is known by its images' digest, not
    by its name (another `tt/` was accepted)."""
    trained, name = info["data"].get("train_images"), info["data"]["dataset"]
    if trained is not None and trained != (count := given["train_images"]):
        raise DigitlabError(
            f"the run trained on {trained:,} training images of {name}, the data given has "
            f"{count:,}: pass the data it trained on (--dataset)"
        )
    recorded = info["data"].get("train_sha256")  # runs before it was recorded: by name only
    if recorded is not None and recorded != given["train_sha256"]:
        raise DigitlabError(f"these are not the training images the run trained on ({name}'s, "
                            "by their SHA-256): pass the data it trained on")  # fmt: skip


def images_digest(images: np.ndarray, labels: np.ndarray) -> str:
    """SHA-256 of training images and their labels, as model.json records it."""
    digest = hashlib.sha256(np.ascontiguousarray(images, np.uint8).data)
    digest.update(np.ascontiguousarray(labels, np.uint8).data)
    return digest.hexdigest()


def training_data(ds: Dataset, limit: int | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """The first `limit` labeled training images of `ds`, and what model.json records of them."""
    if ds.train.labels is None or len(ds.train) == 0:
        raise DigitlabError(f"{ds.name}: training needs labeled training images")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise DigitlabError(f"--limit {limit!r}: must be a whole number, at least 1")
    images, labels = ds.train.images[:limit], ds.train.labels[:limit]
    info = {
        "dataset": ds.name,
        "ref": ds.ref,
        "source": ds.source,
        "verified": ds.verified,
        "limit": limit,
        "train_images": len(images),
        "train_sha256": images_digest(images, labels),
    }
    return images, labels, info


def _train(run: Path, model, trainer: Trainer, ds: Dataset, data_info: dict, extra: dict) -> tuple:
    if trainer.world is not None and not trainer.world.is_main:  # rank 0 writes and scores
        return model, trainer.run(), None
    try:
        history = trainer.run()
    except (TrainingDiverged, KeyboardInterrupt) as e:
        reason = str(e) or "interrupted"
        info = model_info(
            model, trainer.config, data_info, ds.classes, False, trainer.history, extra
        )
        write_json(run / "model.json", info | {"stopped": reason})
        raise
    extra = extra | calibration(model, trainer, run)
    extra |= {
        "test": calibrate.on_test(model, ds.test, extra.get("temperature", 1.0)),
        "stopped_early": trainer.stopped_early,
    }
    save_run(run, model, trainer.config, history, data_info, ds.classes, True, extra)
    return model, history, extra["test"]


def calibration(model, trainer: Trainer, run: Path) -> dict:
    """Fitted on the held-out validation images (never the test set): jobs.calibrate, with the
    novelty check of a run trained for photos. Nothing when the run holds no images out."""
    if trainer.val is None:
        return {}
    return calibrate.fitted(model, *trainer.val, trainer.config.augment, trainer.images, run)


def start(
    out: str | os.PathLike[str],
    spec: ModelSpec,
    engine: str,
    config: TrainConfig,
    data: Dataset | str = "mnist",
    *,
    limit: int | None = None,
    device: str = "auto",
    compile: bool = False,
    overwrite: bool = False,
    init_from: str | os.PathLike[str] | None = None,
    callbacks=(),
    on_event=None,
    preset: str | None = None,
    world=None,
) -> tuple:
    """Train a new model into run directory `out`; returns (model, history, test metrics).

    `data` is a Dataset (opened once by the caller) or a name to open; `init_from` starts from a
    finished run's weights (fine-tuning) instead of a random initialisation; `world` is this
    process's part in data-parallel training (engines.distributed.joined), on its device."""
    run = Path(out)
    if not isinstance(spec, ModelSpec):  # a shorthand string failed deep inside, as an attribute
        raise DigitlabError(
            f"spec: expected a ModelSpec, got {type(spec).__name__} (parse_shorthand('mlp:32') "
            "or PRESETS[name].spec make one)"
        )
    if not isinstance(config, TrainConfig):
        raise DigitlabError(
            f"config: expected a TrainConfig, got {type(config).__name__} "
            "(TrainConfig.from_dict reads a dict)"
        )
    main = world is None or world.is_main  # only rank 0 looks at and writes the run directory
    if main:
        check_out(run, overwrite)
    config.validate()
    spec.validate()
    ds = data if isinstance(data, Dataset) else open_dataset(data, on_event=on_event)
    images, labels, data_info = training_data(ds, limit)
    if len(np.unique(labels)) < 2:  # the model would answer that class, 100% sure, for anything
        raise DigitlabError(f"{ds.name}: its training images are all of one class; it needs two")
    if spec.input_shape != (1, 28, 28):
        raise DigitlabError(f"the model takes {spec.input_shape} images; {ds.name}: (1, 28, 28)")
    spec = spec.with_classes(len(ds.classes))  # a preset's ten outputs: one per folder class
    if world is not None:
        world.check(engine, config.batch_size)
        device = str(world.device)
    model = build(spec, engine, config.seed, device, compile)
    extra = {"preset": preset, "device": str(getattr(model, "device", "cpu"))}
    if world is not None:
        extra["processes"] = world.size
    if init_from is not None:
        runs.init_from(model, init_from, ds.classes)  # the parameter has the function's name
        extra["init_from"] = str(init_from)
    with writing(run) if main else nullcontext():  # a second writer is refused meanwhile
        if main:
            clear_results(run)  # --overwrite: nothing of the old run may mix with the new one
        checkpoints = [Checkpoint(run), *callbacks] if main else []
        trainer = Trainer(model, images, labels, config, checkpoints, world)
        if main:
            info = model_info(model, config, data_info, ds.classes, False, None, extra)
            write_json(run / "model.json", info)
        return _train(run, model, trainer, ds, data_info, extra)


def check_out(run: Path, overwrite: bool = False) -> None:
    """Refuse an --out that holds a run (unless `overwrite`) or files that are not a run's."""
    if (run / "model.json").exists() and not overwrite:
        try:
            finished = bool(read_info(run).get("training", {}).get("finished"))
        except RunError:  # unreadable: say what is always true
            finished = False
        raise RunError(
            f"{run}: already holds a finished run; pass --overwrite to replace it, or choose "
            "another --out"
            if finished
            else f"{run}: already holds a run; continue it with --resume {run}, "
            "or pass --overwrite to replace it"
        )
    if run.exists() and not run.is_dir():
        raise RunError(f"{run}: exists and is not a folder")
    theirs = [p.name for p in run.iterdir() if p.name != ".lock"] if run.is_dir() else []
    if theirs and not (run / "model.json").exists() and not overwrite:
        raise RunError(
            f"{run}: holds files that are not a digitlab run ({', '.join(sorted(theirs)[:3])}"
            f"{', ...' if len(theirs) > 3 else ''}); choose an empty or new --out, or pass "
            "--overwrite to let digitlab replace its own files there"
        )


def resume(
    run: str | os.PathLike[str],
    data: Dataset | None = None,
    *,
    device: str = "auto",
    callbacks=(),
    on_event=None,
    world=None,
) -> tuple:
    """Continue an unfinished run from its last checkpoint; same weights as if never stopped,
    whatever the number of processes before and now (`world`, as for `start`).
    `data` is the run's dataset when the caller has it open; else it is opened by its ref."""
    run = Path(run)
    info = resumable(run)
    main = world is None or world.is_main  # only rank 0 writes the run directory
    with writing(run) if main else nullcontext():
        arrays, meta = load_checkpoint(run, info["engine"])
        config = TrainConfig.from_dict(meta["config"])
        spec = ModelSpec.from_dict(info["spec"])
        data_info = info["data"]
        ds = run_dataset(info, data, on_event)
        images, labels, given = training_data(ds, data_info["limit"])
        same_training_images(info, given)
        if world is not None:
            world.check(info["engine"], config.batch_size)
            device = str(world.device)
        model = build(spec, info["engine"], config.seed, device)
        checkpoints = [Checkpoint(run), *callbacks] if main else []
        trainer = Trainer(model, images, labels, config, checkpoints, world)
        try:
            trainer.load_state_dict(arrays, meta)
        except (KeyError, ValueError, TypeError, RuntimeError, OverflowError, AttributeError) as e:
            raise RunError(
                f"{run / 'checkpoint'}: does not fit this run ({str(e).splitlines()[0][:150]})"
            ) from None
        if on_event is not None and main:
            on_event(f"resuming {run} after epoch {trainer.epoch} of {config.epochs}")
        extra = {k: info[k] for k in ("preset", "device", "init_from") if k in info} | {
            "resumed_from_epoch": trainer.epoch
        }
        if world is not None:
            extra["processes"] = world.size
        return _train(run, model, trainer, ds, data_info, extra)


def resumable(run: Path) -> dict:
    """The model.json of an unfinished run that has a checkpoint to continue from."""
    info = read_info(run)
    if info["training"]["finished"]:
        raise RunError(f"{run}: this run already finished; train a new one with --out")
    if not (run / "checkpoint" / "latest.json").exists():
        raise RunError(
            f"{run / 'checkpoint' / 'latest.json'}: missing, so there is nothing to resume from; "
            f"train it again with --out {run} --overwrite"
        )
    return info
