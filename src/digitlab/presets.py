"""Named models, each a ModelSpec with a sensible default engine and training recipe.

    >>> preset = PRESETS["mlp-256-128-64"]
    >>> preset.spec.num_params(), preset.engine, preset.config.epochs
    (242762, 'numpy', 4)
    >>> spec, name = resolve_model("cnn:32-64/128")      # a preset, a shorthand or a spec file

`digitlab models` lists them; `digitlab train --model NAME` trains one with its recipe.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

from digitlab import spec as S
from digitlab.errors import DigitlabError
from digitlab.spec import ModelSpec, SpecError, mlp, parse_shorthand
from digitlab.train import TrainConfig


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    spec: ModelSpec
    engine: str  # the engine it trains fastest on, on a CPU
    config: TrainConfig


# MLPs train fastest on the NumPy engine on a CPU: SGD + Nesterov, one-cycle, label smoothing
MLP_RECIPE = TrainConfig(
    epochs=4,
    batch_size=128,
    optimizer="sgd",
    lr=0.1,
    momentum=0.9,
    nesterov=True,
    schedule="onecycle",
    label_smoothing=0.1,
)


def conv_block(filters: int, pool: bool = True) -> list:
    """Conv 3x3 (no bias: batch norm follows) - BatchNorm - ReLU (- MaxPool 2)."""
    layers = [S.Conv2D(filters, 3, padding=1, bias=False), S.BatchNorm(), S.ReLU()]
    return [*layers, S.MaxPool2D(2)] if pool else layers


def _presets() -> dict[str, Preset]:
    presets = [
        Preset(
            "logreg",
            "softmax regression: one Dense layer, the linear baseline",
            mlp([], name="logreg"),
            "numpy",
            replace(MLP_RECIPE, epochs=5, lr=0.05, label_smoothing=0.0),
        ),
        Preset(
            "mlp-32",
            "784-32-10, the smallest network of the seeds' projects",
            mlp([32], name="mlp-32"),
            "numpy",
            replace(MLP_RECIPE, epochs=8),
        ),
        Preset(
            "mlp-128-64-16",
            "784-128-64-16-10 (ReLU), the seeds' Keras network",
            mlp([128, 64, 16], name="mlp-128-64-16"),
            "numpy",
            replace(MLP_RECIPE, epochs=6),
        ),
        Preset(
            "mlp-200-100-50",
            "784-200-100-50-10 (ReLU)",
            mlp([200, 100, 50], name="mlp-200-100-50"),
            "numpy",
            MLP_RECIPE,
        ),
        Preset(
            "mlp-256-128-64",
            "784-256-128-64-10 (ReLU), the seeds' from-scratch network",
            mlp([256, 128, 64], name="mlp-256-128-64"),
            "numpy",
            MLP_RECIPE,
        ),
        Preset(
            "mlp-aug",
            "784-800-800-10 (ReLU, dropout) with elastic augmentation, aimed at ≥ 99.0%",
            ModelSpec(
                name="mlp-aug",
                layers=[
                    S.Flatten(),
                    S.Dense(800),
                    S.ReLU(),
                    S.Dropout(0.2),
                    S.Dense(800),
                    S.ReLU(),
                    S.Dropout(0.2),
                    S.Dense(10),
                ],
            ),
            "torch",
            replace(MLP_RECIPE, epochs=30, lr=0.05, augment="elastic"),
        ),
        Preset(
            "lenet5",
            "LeNet-5 (ReLU and max-pooling): conv 6@5x5, conv 16@5x5, 120, 84",
            ModelSpec(
                name="lenet5",
                layers=[
                    S.Conv2D(6, 5, padding=2),
                    S.ReLU(),
                    S.MaxPool2D(2),
                    S.Conv2D(16, 5),
                    S.ReLU(),
                    S.MaxPool2D(2),
                    S.Flatten(),
                    S.Dense(120),
                    S.ReLU(),
                    S.Dense(84),
                    S.ReLU(),
                    S.Dense(10),
                ],
            ),
            "torch",
            replace(MLP_RECIPE, epochs=6, lr=0.05),
        ),
        Preset(
            "cnn-small",
            "a small fast CNN: conv 12, conv 24 (3x3, max-pool), dense 64; ≥ 99% in seconds",
            ModelSpec(
                name="cnn-small",
                layers=[
                    S.Conv2D(12, 3, padding=1),
                    S.ReLU(),
                    S.MaxPool2D(2),
                    S.Conv2D(24, 3, padding=1),
                    S.ReLU(),
                    S.MaxPool2D(2),
                    S.Flatten(),
                    S.Dense(64),
                    S.ReLU(),
                    S.Dense(10),
                ],
            ),
            "torch",
            replace(MLP_RECIPE, epochs=4, lr=0.05),
        ),
        Preset(
            "cnn-best",
            "the best-accuracy CNN: conv blocks 32, 64, 128 with batch norm, affine augmentation, "
            "aimed at ≥ 99.6%",
            ModelSpec(
                name="cnn-best",
                layers=[
                    *conv_block(32),
                    *conv_block(64),
                    *conv_block(128),
                    S.Flatten(),
                    S.Dropout(0.3),
                    S.Dense(10),
                ],
            ),
            "torch",
            replace(MLP_RECIPE, epochs=20, lr=0.1, weight_decay=5e-4, augment="affine"),
        ),
    ]
    return {p.name: p for p in presets}


PRESETS = _presets()


def load_spec_file(path: str | os.PathLike[str]) -> ModelSpec:
    """A ModelSpec from a .json or .toml file (the layout of ModelSpec.to_dict())."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise SpecError(f"{path}: cannot read ({e.strerror})") from None
    try:
        d = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise SpecError(f"{path}: not valid {path.suffix[1:].upper()} ({e})") from None
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
        loaded = tomllib.loads(path.read_text())
    except OSError as e:
        raise DigitlabError(f"{path}: cannot read ({e.strerror})") from None
    except tomllib.TOMLDecodeError as e:
        raise DigitlabError(f"{path}: not valid TOML ({e})") from None
    try:
        return TrainConfig.from_dict(base.to_dict() | loaded.get("train", loaded))
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
    from digitlab.recipes import RECIPES

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
    engine = engine or (preset.engine if preset else ("torch" if has_conv else "numpy"))
    return Plan(
        spec, config, engine, f"{name}-{engine}", recipe or (preset.name if preset else None)
    )
