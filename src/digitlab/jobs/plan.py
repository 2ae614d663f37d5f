"""What `digitlab train` was given, resolved into a plan: the model (a preset, a shorthand, a
spec file or a recipe), its TrainConfig and the engine.

    >>> plan = plan_training(model="cnn-small", epochs=2)        # spec, config, engine, name

Flags layer in one order: the preset's (or recipe's) config, then a TOML file, then explicit
flags. jobs.train trains the plan.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

from digitlab import spec as S
from digitlab.errors import DigitlabError
from digitlab.presets import PRESETS, RECIPES, Preset
from digitlab.run_schema import read_regular
from digitlab.runs import RunError
from digitlab.spec import ModelSpec, SpecError, parse_shorthand
from digitlab.train import TrainConfig

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
    beside = sorted(k for k in loaded if k != "train") if "train" in loaded else []
    if beside:  # they were dropped without a word, a typo among them
        raise DigitlabError(
            f"{path}: {', '.join(beside[:3])} outside [train]; put every setting under [train], "
            "or drop the [train] header"
        )
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
