"""Training on a folder of your own: what `train` fits to it, what it refuses, and what it says
about the run's confidence."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from digitlab import jobs, runs
from digitlab import spec as S
from digitlab.cli import app
from digitlab.errors import DigitlabError
from digitlab.predict import Predictor, classify
from digitlab.train import TrainConfig


def folder_of(mnist, root, classes: dict[str, int], per_class: int):
    """root/<name>/*.png holding `per_class` MNIST training digits of each digit."""
    for name, digit in classes.items():
        (root / name).mkdir(parents=True)
        for i, image in enumerate(mnist.train.images[mnist.train.labels == digit][:per_class]):
            Image.fromarray(image).save(root / name / f"{i}.png")
    return root


def test_a_folder_of_two_named_classes_trains_a_model_with_two_outputs(mnist, tmp_path):
    """Ten outputs for two classes spread the probabilities over eight that never occur, and
    `predict --top 3` crashed on the third."""
    data = folder_of(mnist, tmp_path / "two", {"seven": 7, "three": 3}, 60)
    out = tmp_path / "run"
    config = TrainConfig(epochs=3, batch_size=16, val_split=0.2)
    jobs.start(out, S.parse_shorthand("mlp:16"), "numpy", config, str(data))
    spec = runs.read_info(out)["spec"]
    assert spec["num_classes"] == 2 and spec["layers"][-1]["units"] == 2
    answer = Predictor(out).read(mnist.test.images[0], top=3)  # a 7
    assert answer["label"] == "seven" and [t["label"] for t in answer["top"]] == ["seven", "three"]


def test_a_folder_of_one_class_is_refused_before_training(mnist, tmp_path):
    data = folder_of(mnist, tmp_path / "one", {"three": 3}, 30)
    with pytest.raises(DigitlabError, match="all of one class; it needs two"):
        jobs.start(tmp_path / "run", S.parse_shorthand("mlp:16"), "numpy", TrainConfig(), str(data))
    assert not (tmp_path / "run" / "model.json").exists()
    digits = folder_of(mnist, tmp_path / "digits", {"3": 3}, 30)  # ten classes, one of them here
    with pytest.raises(DigitlabError, match="all of one class"):
        jobs.start(
            tmp_path / "r2", S.parse_shorthand("mlp:16"), "numpy", TrainConfig(), str(digits)
        )


def test_a_spec_that_does_not_end_in_its_classes_dense_is_refused():
    spec = S.ModelSpec(layers=[S.Flatten(), S.Dense(10), S.ReLU()])
    with pytest.raises(S.SpecError, match=r"10 outputs for 3 classes: end it with Dense\(3\)"):
        spec.with_classes(3)
    assert S.parse_shorthand("mlp:16").with_classes(26).layers[-1] == S.Dense(26)


def test_too_few_held_out_images_fit_no_calibration_and_train_says_so(mnist, tmp_path):
    """With 10 held-out images one image set the unsure threshold, and "99.5% right" meant
    nothing; the run reads at temperature 1 and the default threshold, and says why."""
    data = folder_of(mnist, tmp_path / "few", {"0": 0, "1": 1}, 40)
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["train", "--model", "mlp:16", "--dataset", str(data), "--epochs", "2",
              "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "confidence not calibrated: 8 held-out images, too few" in result.output
    info = json.loads((out / "model.json").read_text())
    assert "temperature" not in info and "unsure_below" not in info
    assert info["calibration"]["images"] == 8 and "at least 100" in info["calibration"]["skipped"]
    assert Predictor(out).unsure_below == 0.6


def test_a_recipe_given_as_a_model_is_pointed_to_recipe():
    result = CliRunner().invoke(app, ["train", "--model", "cnn-fast", "--out", "/nonexistent/x"])
    assert result.exit_code != 0
    assert "--model 'cnn-fast' is a recipe: train it with --recipe cnn-fast" in result.output


def test_a_run_with_outputs_to_spare_is_read_over_its_classes_only(mnist):
    """A run trained before train fitted the last layer: ten outputs, two classes."""
    from digitlab.engines import numpy_engine

    model = numpy_engine.build(S.parse_shorthand("mlp:16"), seed=0)
    probs = classify(model, {"classes": ["a", "b"]}, mnist.test.images[:5])
    assert probs.shape == (5, 2) and np.allclose(probs.sum(axis=1), 1)


def test_an_mnist_run_fine_tunes_onto_a_folder_of_other_classes_with_a_new_last_layer(
    mnist, tmp_path
):
    from digitlab.engines import numpy_engine

    spec = S.parse_shorthand("mlp:16")
    jobs.start(tmp_path / "mnist", spec, "numpy", TrainConfig(epochs=1), mnist, limit=2000)
    source = runs.load_model(tmp_path / "mnist").state_dict()
    model = numpy_engine.build(spec.with_classes(2), seed=5)
    fresh = model.state_dict()
    runs.init_from(model, tmp_path / "mnist")
    weights, last = model.state_dict(), f"layers.{len(spec.layers) - 1}."
    for name, value in weights.items():  # the last layer starts afresh, the others as trained
        np.testing.assert_array_equal(value, (fresh if name.startswith(last) else source)[name])
    with pytest.raises(DigitlabError, match="fine-tuning needs the same spec"):
        runs.init_from(numpy_engine.build(S.parse_shorthand("mlp:32")), tmp_path / "mnist")
    data = folder_of(mnist, tmp_path / "two", {"seven": 7, "three": 3}, 30)
    config = TrainConfig(epochs=1, batch_size=16)
    jobs.start(tmp_path / "tuned", spec, "numpy", config, str(data), init_from=tmp_path / "mnist")
    assert runs.read_info(tmp_path / "tuned")["init_from"] == str(tmp_path / "mnist")


def test_the_last_layer_is_kept_only_for_the_same_classes(mnist, tmp_path):
    """Ten letters are not the ten digits: with as many classes but other names, the last layer
    once kept the digits' rows; the same digits in another order keep theirs, reordered."""
    from digitlab.engines import numpy_engine

    spec = S.parse_shorthand("mlp:16")
    jobs.start(tmp_path / "mnist", spec, "numpy", TrainConfig(epochs=1), mnist, limit=2000)
    source = runs.load_model(tmp_path / "mnist").state_dict()
    last = f"layers.{len(spec.layers) - 1}."
    letters = numpy_engine.build(spec, seed=5)
    fresh = letters.state_dict()
    runs.init_from(letters, tmp_path / "mnist", list("abcdefghij"))
    for name, value in letters.state_dict().items():
        np.testing.assert_array_equal(value, (fresh if name.startswith(last) else source)[name])
    reordered = numpy_engine.build(spec, seed=5)
    runs.init_from(reordered, tmp_path / "mnist", list("9876543210"))
    for name, value in reordered.state_dict().items():
        np.testing.assert_array_equal(
            value, source[name][::-1] if name.startswith(last) else source[name]
        )
    same = numpy_engine.build(spec, seed=5)
    runs.init_from(same, tmp_path / "mnist", list("0123456789"))
    for name, value in same.state_dict().items():
        np.testing.assert_array_equal(value, source[name])


def test_a_folder_is_known_by_its_images_not_by_its_name(mnist, tmp_path):
    """Another folder called tt/ was taken for the run's own and its metrics.json rewritten on
    other images; a copy of the run's own folder under another name was refused."""
    import shutil

    own = folder_of(mnist, tmp_path / "tt", {"0": 0, "1": 1}, 30)
    jobs.start(
        tmp_path / "run", S.parse_shorthand("mlp:16"), "numpy", TrainConfig(epochs=1), str(own)
    )
    assert len(runs.read_info(tmp_path / "run")["data"]["train_sha256"]) == 64
    shutil.copytree(own, tmp_path / "copy")
    assert jobs.evaluate_run(tmp_path / "run", split="val", data=str(tmp_path / "copy"))["n"] == 6
    other = folder_of(mnist, tmp_path / "other" / "tt", {"0": 2, "1": 3}, 30)  # the same name
    with pytest.raises(DigitlabError, match="not the training images the run trained on"):
        jobs.evaluate_run(tmp_path / "run", data=str(other))
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_a_run_on_a_folder_without_a_test_split_exports_checked_on_its_training_images(
    mnist, tmp_path
):
    pytest.importorskip("onnxruntime", reason="the export extra is not installed")
    own = folder_of(mnist, tmp_path / "own", {"0": 0, "1": 1}, 30)
    jobs.start(
        tmp_path / "run", S.parse_shorthand("mlp:16"), "numpy", TrainConfig(epochs=1), str(own)
    )
    done = jobs.export_onnx(tmp_path / "run", tmp_path / "m.onnx", data=str(own))
    assert done["agree"] and done["split"] == "train" and done["images"] == 60
    assert (tmp_path / "m.onnx").stat().st_size == done["bytes"]


def test_evaluate_calibrate_on_too_few_held_out_images_drops_what_it_cannot_fit(mnist, tmp_path):
    own = folder_of(mnist, tmp_path / "own", {"0": 0, "1": 1}, 40)
    jobs.start(
        tmp_path / "run", S.parse_shorthand("mlp:16"), "numpy", TrainConfig(epochs=1), str(own)
    )
    info = json.loads((tmp_path / "run" / "model.json").read_text())
    info |= {"temperature": 0.5, "unsure_below": 0.99}  # as a run calibrated on 10 images was
    (tmp_path / "run" / "model.json").write_text(json.dumps(info))
    m = jobs.evaluate_run(tmp_path / "run", split="val", calibrate=True, data=str(own))
    after = runs.read_info(tmp_path / "run")
    assert m["temperature"] == 1.0 and "temperature" not in after and "unsure_below" not in after
    assert "skipped" in after["calibration"]


def test_a_folder_named_like_a_built_in_dataset_is_known_by_its_images(mnist, tmp_path):
    jobs.start(
        tmp_path / "run",
        S.parse_shorthand("mlp:16"),
        "numpy",
        TrainConfig(epochs=1),
        mnist,
        limit=500,
    )
    impostor = folder_of(mnist, tmp_path / "x" / "mnist", {"seven": 7, "three": 3}, 20)
    with pytest.raises(
        DigitlabError, match="trained on 500 training images of mnist, the data given has 40"
    ):
        jobs.evaluate_run(tmp_path / "run", data=str(impostor))
    with pytest.raises(
        DigitlabError, match="trained on 500 training images of mnist, the data given has 40"
    ):
        jobs.export_onnx(tmp_path / "run", tmp_path / "m.onnx", data=str(impostor))
    from digitlab.data import load_files
    from digitlab.data.export import export

    with pytest.raises(DigitlabError, match="not the class names"):
        export(load_files(impostor), "csv", tmp_path / "csv")
    assert jobs.evaluate_run(tmp_path / "run", data=mnist)["n"] == 10_000  # the real one


def test_runs_on_a_folder_make_an_ensemble_from_the_cli(mnist, tmp_path):
    own = folder_of(mnist, tmp_path / "own", {"0": 0, "1": 1}, 40)
    for seed in (0, 1):
        config = TrainConfig(epochs=1, seed=seed)
        jobs.start(tmp_path / f"r{seed}", S.parse_shorthand("mlp:16"), "numpy", config, str(own))
    members = [str(tmp_path / "r0"), str(tmp_path / "r1")]
    result = CliRunner().invoke(app, ["ensemble", *members, "--out", str(tmp_path / "ens")])
    assert (
        result.exit_code == 1 and "--dataset" in result.output
    )  # a path is opened only when given
    result = CliRunner().invoke(
        app, ["ensemble", *members, "--out", str(tmp_path / "ens"), "--dataset", str(own)]
    )
    assert result.exit_code == 0, result.output
    assert "ensemble of 2: no labeled test split" in result.output  # the folder has no test/
