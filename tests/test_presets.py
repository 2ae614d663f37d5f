"""Every preset trains in fast mode (3 epochs, 3,000 images) above an accuracy floor."""

from __future__ import annotations

import dataclasses

import pytest

from digitlab.engines import get_engine
from digitlab.jobs.plan import resolve_model
from digitlab.presets import PRESETS
from digitlab.spec import SpecError
from digitlab.train import fit

# measured on 3 epochs of the first 3,000 training images, the first 1,000 test images,
# then lowered by about 0.07 so that another BLAS or CPU does not make them flaky
FLOORS = {
    "logreg": 0.80,
    "mlp-32": 0.80,
    "mlp-128-64-16": 0.80,
    "mlp-200-100-50": 0.80,
    "mlp-256-128-64": 0.80,
    "mlp-aug": 0.80,
    "lenet5": 0.70,
    "cnn-small": 0.85,
    "cnn-best": 0.85,
    "cnn-vgg": 0.85,
}


def test_every_preset_has_a_floor():
    assert set(FLOORS) == set(PRESETS)


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_trains_in_fast_mode(mnist, name):
    preset = PRESETS[name]
    if preset.engine == "torch":
        pytest.importorskip("torch", reason="torch presets need the torch extra")
    engine = get_engine(preset.engine)
    model = (
        engine.build(preset.spec, seed=0)
        if preset.engine == "numpy"
        else engine.build(preset.spec, seed=0, device="cpu")
    )
    config = dataclasses.replace(preset.config, epochs=3, val_split=0.0)
    fit(model, mnist.train.images[:3000], mnist.train.labels[:3000], config)
    _, accuracy = model.evaluate(
        mnist.test.images[:1000], mnist.test.labels[:1000], config.mean, config.std
    )
    print(f"{name}: {accuracy:.3f}")
    assert accuracy >= FLOORS[name]


def test_resolve_model_accepts_presets_shorthands_and_files(tmp_path):
    spec, preset = resolve_model("lenet5")
    assert preset.name == "lenet5" and spec.num_params() == 61706
    spec, preset = resolve_model("cnn:32-64/128")
    assert preset is None and spec.output_shapes()[-1] == (10,)
    (tmp_path / "m.toml").write_text(
        '[[layers]]\ntype = "Flatten"\n[[layers]]\ntype = "Dense"\nunits = 10\n'
    )
    spec, _ = resolve_model(str(tmp_path / "m.toml"))
    assert spec.num_params() == 7850 and spec.name == "m"
    with pytest.raises(SpecError, match="not a preset"):
        resolve_model("vgg16")


def test_a_presets_layers_cannot_be_changed_for_the_whole_process():
    """PRESETS["mlp-32"].spec.layers.append(...) changed the preset for every later use."""
    from digitlab import spec as S

    layers = PRESETS["mlp-32"].spec.layers
    with pytest.raises(AttributeError):
        layers.append(S.Dropout(0.5))
    mine = S.ModelSpec(layers=[*layers[:-1], S.Dropout(0.5), layers[-1]])  # a copy, changed
    assert len(mine.layers) == len(layers) + 1 and mine.validate()
