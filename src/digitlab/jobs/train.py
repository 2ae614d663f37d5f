"""The train job: resolve what `digitlab train` was given into a plan, then train it into a run
directory, or continue an unfinished one.

    >>> plan = plan_training(model="cnn-small", epochs=2)        # spec, config, engine, name
    >>> model, history, test = start("runs/cnn", plan.spec, plan.engine, plan.config, ds)
    >>> model, history, test = resume("runs/cnn", ds)
    >>> with distributed.joined() as world:                      # under torchrun (--nproc N)
    ...     model, history, test = start("runs/cnn", ..., world=world)

Flags layer in one order: the preset's (or recipe's) config, then a TOML file, then explicit
flags. The run directory's format is runs.py's; this module only decides what is trained.
In data-parallel training every process trains; rank 0 alone writes the run directory and
scores the test set, the others return (model, history, None).
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from digitlab import runs
from digitlab import spec as S
from digitlab.atomic import write_json
from digitlab.data import DATASETS, Dataset, open_dataset
from digitlab.engines import build
from digitlab.errors import DigitlabError
from digitlab.jobs import calibrate
from digitlab.presets import PRESETS, RECIPES, Preset
from digitlab.run_schema import read_regular
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
from digitlab.spec import ModelSpec, SpecError, parse_shorthand
from digitlab.train import TrainConfig, Trainer, TrainingDiverged

MAX_TEXT_BYTES = 10_000_000  # a spec or settings file is a few KB


def read_text(path: Path, what: str) -> str:
    """A small UTF-8 text file (`what`: "a model spec", "a settings file"), or a one-line
    error naming the file."""
    try:
        raw = read_regular(path, MAX_TEXT_BYTES, what)
    except RunError as e:
        raise DigitlabError(str(e)) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DigitlabError(f"{path}: not UTF-8 text") from None


def load_spec_file(path: str | os.PathLike[str]) -> ModelSpec:
    """A ModelSpec from a .json or .toml file (the layout of ModelSpec.to_dict()), or from a
    run's model.json (its "spec")."""
    path = Path(path)
    text = read_text(path, "a model spec (.json or .toml)")
    try:
        d = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise SpecError(f"{path}: not valid {path.suffix[1:].upper()} ({e})") from None
    except (ValueError, RecursionError) as e:  # a 5000-digit integer; 100k-deep nesting
        raise SpecError(f"{path}: not usable ({str(e)[:120]})") from None
    if isinstance(d, dict) and "spec" in d and "format" in d:  # a run's model.json
        d = d["spec"]
    try:
        spec = ModelSpec.from_dict(d)
    except SpecError as e:
        raise SpecError(f"{path}: {e}") from None
    return spec if spec.name else replace(spec, name=path.stem)


def resolve_model(text: str) -> tuple[ModelSpec, Preset | None]:
    """A preset name, a shorthand (mlp:512-256, cnn:32-64/128) or a .json/.toml spec file."""
    if text in PRESETS:
        return PRESETS[text].spec, PRESETS[text]
    if text.endswith((".json", ".toml")):
        return load_spec_file(text), None
    if ":" in text:
        return parse_shorthand(text), None
    if text in RECIPES:  # a recipe is a model and its settings
        raise SpecError(f"--model {text!r} is a recipe: train it with --recipe {text}")
    raise SpecError(
        f"--model {text!r}: not a preset ({', '.join(PRESETS)}), a shorthand like mlp:256-128 or "
        "cnn:32-64/128, or a .json/.toml spec file"
    )


@dataclass(frozen=True)
class Plan:
    """What `digitlab train` resolved its arguments to."""

    spec: ModelSpec
    config: TrainConfig
    engine: str
    name: str  # the run's default name
    preset: str | None  # the preset or recipe it came from


def load_config_file(path: str | os.PathLike[str], base: TrainConfig) -> TrainConfig:
    """`base` with the settings of a TOML file applied (keys of TrainConfig, or under [train])."""
    path = Path(path)
    try:
        loaded = tomllib.loads(read_text(path, "a settings file (.toml)"))
    except tomllib.TOMLDecodeError as e:
        raise DigitlabError(f"{path}: not valid TOML ({e})") from None
    except (ValueError, RecursionError) as e:
        raise DigitlabError(f"{path}: not usable ({str(e)[:120]})") from None
    settings = loaded.get("train", loaded)
    if not isinstance(settings, dict):
        raise DigitlabError(f"{path}: [train] must be a table of settings, got {settings!r:.40}")
    try:
        return TrainConfig.from_dict(base.to_dict() | settings)
    except DigitlabError as e:
        raise DigitlabError(f"{path}: {e}") from None


def plan_training(
    model: str | None = None,
    recipe: str | None = None,
    engine: str | None = None,
    config_file: str | os.PathLike[str] | None = None,
    **flags,
) -> Plan:
    """Resolve a model or recipe, then layer its recipe, a TOML file and explicit flags (None =
    not given) into one TrainConfig; pick the engine (the preset's, else torch for conv nets)."""
    if recipe is not None and model is not None:  # the recipe's own model would win unsaid
        raise DigitlabError(
            f"--recipe {recipe} trains its own model; give --model or --recipe, not both"
        )
    if recipe is not None:
        if recipe not in RECIPES:
            raise DigitlabError(f"--recipe {recipe!r}: known recipes are {', '.join(RECIPES)}")
        spec, config = RECIPES[recipe]
        preset, name = None, recipe
    elif model is not None:
        spec, preset = resolve_model(model)
        config = preset.config if preset else TrainConfig()
        name = preset.name if preset else (spec.name or "model").replace(":", "-").replace("/", "_")
    else:
        raise DigitlabError(
            "give --model (a preset, shorthand or spec file), --recipe, or --resume"
        )
    if config_file is not None:
        config = load_config_file(config_file, config)
    config = replace(config, **{k: v for k, v in flags.items() if v is not None}).validate()
    has_conv = any(isinstance(layer, S.Conv2D) for layer in spec.layers)
    if engine not in (None, "numpy", "torch"):  # refused here, not when training starts
        raise DigitlabError(f"--engine {engine!r}: numpy or torch")
    engine = engine or (preset.engine if preset else ("torch" if has_conv else "numpy"))
    return Plan(
        spec, config, engine, f"{name}-{engine}", recipe or (preset.name if preset else None)
    )


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
        raise DigitlabError(f"the run trained on {trained:,} training images, this {name} has "
                            f"{count:,}: pass the data it trained on (--dataset)")  # fmt: skip
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
