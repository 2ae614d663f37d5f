"""The `digitlab` command, through Typer's CliRunner and as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from digitlab.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, list(args))


def test_data_info_json(mnist):
    result = invoke("data", "info", "mnist", "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["splits"]["train"]["size"] == 60000
    assert info["splits"]["test"]["size"] == 10000
    assert info["verified"] is True and info["source"] == "cache"
    assert info["splits"]["test"]["class_counts"][1] == 1135


def test_data_info_human(mnist):
    result = invoke("data", "info", "mnist")
    assert result.exit_code == 0
    assert "mnist: 60,000 train + 10,000 test images, 28x28, 10 classes" in result.stdout
    assert "verified against pinned SHA-256" in result.stdout


def test_show_png_grid(mnist, tmp_path):
    out = tmp_path / "grid.png"
    result = invoke(
        "data", "show", "mnist", "--split", "test", "--index", "0:12", "--out", str(out)
    )
    assert result.exit_code == 0, result.output
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 300
        pixels = np.asarray(im.convert("L"))
    assert pixels.std() > 20  # digits were drawn, not a blank canvas


def test_show_ascii(mnist):
    result = invoke("data", "show", "mnist", "--index", "0")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("#0 5")
    assert any("@" in line for line in lines) and len(lines) == 15


def test_export_csv_and_reimport_by_path(mnist, tmp_path):
    out = tmp_path / "csv"
    result = invoke(
        "data", "export", "mnist", "--format", "csv", "--limit", "50", "--out", str(out)
    )
    assert result.exit_code == 0, result.output
    info = json.loads(invoke("data", "info", str(out), "--json").stdout)
    assert info["splits"]["train"]["size"] == 50 and info["verified"] is False
    assert (
        info["splits"]["train"]["class_counts"]
        == np.bincount(mnist.train.labels[:50], minlength=10).tolist()
    )


def test_errors_are_one_line_with_nonzero_exit(mnist, tmp_path):
    bad = tmp_path / "train.csv"
    bad.write_text("label," + ",".join(f"pixel{i}" for i in range(784)) + "\n1,2,3\n")
    for args, needle in [
        (("data", "info", "no-such-thing"), "neither a known dataset"),
        (("data", "info", str(bad)), "line 2: 3 columns, expected 785"),
        (("data", "show", "mnist", "--index", "x"), "--index 'x'"),
        # a slice past the end is refused, not cut short to the images that exist
        (("data", "show", "mnist", "--index", "59999:60005"), "60005 is out of range"),
        (
            ("data", "export", "mnist", "--format", "tiff", "--out", str(tmp_path / "o")),
            "--format 'tiff'",
        ),
    ]:
        result = invoke(*args)
        assert result.exit_code == 1, args
        assert result.stderr.startswith("error: ") and needle in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert "Traceback" not in result.output


def test_run_main_job_fast_mode(mnist, tmp_path):
    # the job itself (both default models) is tested by test_report; here, the command's plumbing
    args = ["--models", "mlp-32", "--limit", "1500"]
    result = invoke("run", "--out", str(tmp_path / "main"), "--quick", *args, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert Path(summary["report"]).stat().st_size > 20_000
    assert set(summary["accuracy"]) == {"mlp-32-numpy"}
    again = invoke("run", "--out", str(tmp_path / "main"), "--quick", *args)
    assert again.exit_code == 1 and "earlier job" in again.output and "--overwrite" in again.output
    assert Path(summary["report"]).exists()  # the earlier job is kept
    human = invoke(  # one small model is enough to see the human summary
        "run",
        "--out",
        str(tmp_path / "main"),
        "--models",
        "mlp-32",
        "--limit",
        "1500",
        "--overwrite",
    )
    assert "test accuracy" in human.stdout and "report.html" in human.stdout


def test_installed_entry_point(mnist):
    done = subprocess.run(
        [sys.executable, "-m", "digitlab.cli", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.startswith("digitlab ")
    done = subprocess.run(
        [sys.executable, "-m", "digitlab.cli", "data", "fetch", "--help"],
        capture_output=True,
        text=True,
    )
    assert "Example: digitlab data fetch mnist" in done.stdout


def test_unwritable_outputs_and_bad_settings_are_one_line_errors(mnist, tmp_path, monkeypatch):
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    a_dir = tmp_path / "a-dir"
    a_dir.mkdir()
    cases = [
        (("data", "show", "mnist", "--index", "0", "--out", str(a_dir)), "a-dir"),
        (
            ("data", "show", "mnist", "--index", "0", "--out", str(tmp_path / "g.gif")),
            "cannot write .gif",
        ),
        (("run", "--out", str(a_file)), "a-file"),
        (("data", "export", "mnist", "--limit", "2", "--out", str(a_file / "sub")), "a-file"),
        (("data", "fetch", str(a_dir)), "fetch takes a dataset name"),
        (("data", "info", "mnist", "--from", str(tmp_path / "nowhere")), "no such file or folder"),
    ]
    for args, needle in cases:
        result = invoke(*args)
        assert result.exit_code == 1, (args, result.output)
        assert result.stderr.startswith("error: ") and needle in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
    monkeypatch.setenv("DIGITLAB_TIMEOUT", "abc")
    result = invoke("data", "info", "fashion-mnist")
    assert result.exit_code == 1 and "DIGITLAB_TIMEOUT='abc'" in result.stderr
    monkeypatch.setenv("DIGITLAB_HOME", str(a_file))
    monkeypatch.delenv("DIGITLAB_TIMEOUT")
    result = invoke("data", "info", "mnist")
    assert result.exit_code == 1 and "point DIGITLAB_HOME at a writable folder" in result.stderr


def test_run_picks_its_models(mnist, tmp_path):
    result = invoke(
        "run",
        "--models",
        "logreg",
        "--limit",
        "1000",
        "--quick",
        "--out",
        str(tmp_path / "m"),
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert list(json.loads(result.stdout)["accuracy"]) == ["logreg-numpy"]
    for bad, needle in (
        ("resnet:torch", "'resnet' is not a preset"),
        ("logreg:jax", "engine 'jax'"),
    ):
        result = invoke("run", "--models", bad, "--out", str(tmp_path / "x"))
        assert result.exit_code == 1 and needle in result.stderr


def test_run_on_unlabeled_data_is_a_clear_error(tmp_path):
    rows = ["pixel" + ",pixel".join(str(i) for i in range(784))]
    rows += [",".join(["0"] * 300 + ["200"] * 184 + ["0"] * 300)] * 3
    (tmp_path / "test.csv").write_text("\n".join(rows) + "\n")
    result = invoke("run", "--dataset", str(tmp_path / "test.csv"), "--out", str(tmp_path / "o"))
    assert result.exit_code == 1 and "training needs labeled training images" in result.stderr


def test_models_lists_presets_with_parameter_counts():
    result = invoke("models", "--json")
    assert result.exit_code == 0
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert {
        "logreg",
        "mlp-200-100-50",
        "mlp-128-64-16",
        "mlp-256-128-64",
        "mlp-32",
        "lenet5",
        "cnn-small",
        "cnn-best",
    } <= set(rows)
    assert rows["logreg"]["params"] == 7850 and rows["mlp-256-128-64"]["params"] == 242762
    assert "784-200-100-50-10" in rows["mlp-200-100-50"]["description"]
    assert "softmax regression" in invoke("models").stdout


def test_train_with_flags_and_a_toml_config(mnist, tmp_path):
    config = tmp_path / "train.toml"
    config.write_text('[train]\nepochs = 2\noptimizer = "adam"\nlr = 0.002\nschedule = "cosine"\n')
    out = tmp_path / "run"
    result = invoke(
        "train",
        "--model",
        "mlp:64",
        "--config",
        str(config),
        "--epochs",
        "3",
        "--limit",
        "1200",
        "--out",
        str(out),
        "--json",
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["epochs"] == 3 and summary["engine"] == "numpy"  # the flag beat the file
    info = json.loads((out / "model.json").read_text())
    assert (
        info["train_config"]["optimizer"] == "adam" and info["train_config"]["schedule"] == "cosine"
    )
    assert summary["test_acc"] > 0.7  # 1,080 images, 3 epochs (measured 0.80); chance is 0.1
    assert "epoch 3/3" in result.stderr or "epoch 3/3" in result.output


def test_train_a_named_recipe_keeps_its_settings(mnist, tmp_path):
    """`--recipe keras-128-64-16`: the seeds' Keras network and settings, plus digitlab's cosine
    decay and label smoothing, recorded in the run (shortened by flags to stay fast)."""
    out = tmp_path / "keras"
    result = invoke("train", "--recipe", "keras-128-64-16", "--epochs", "5", "--limit", "10000",
                    "--out", str(out), "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    info = json.loads((out / "model.json").read_text())
    config = info["train_config"]
    assert (config["optimizer"], config["batch_size"], config["schedule"]) == (
        "adam",
        1000,
        "cosine",
    )
    assert config["label_smoothing"] == 0.1 and config["epochs"] == 5
    assert [layer.get("units") for layer in info["spec"]["layers"] if layer["type"] == "Dense"] == [
        128,
        64,
        16,
        10,
    ]
    accuracy = json.loads(result.stdout)["test_acc"]
    assert accuracy > 0.7  # 9,000 images, 45 steps (measured 0.82); chance is 0.1


def test_train_errors_name_the_problem_before_training(mnist, tmp_path):
    bad_spec = tmp_path / "bad.json"
    bad_spec.write_text(
        json.dumps({"layers": [{"type": "Conv2D", "filters": 4}, {"type": "Dense", "units": 10}]})
    )
    bad_toml_types = tmp_path / "types.toml"
    bad_toml_types.write_text(
        '[[layers]]\ntype = "Flatten"\n[[layers]]\ntype = "Dense"\nunits = 1.5\n'
    )
    bad_config = tmp_path / "bad.toml"
    bad_config.write_text("epochs = 1.5\n")
    shrink = tmp_path / "shrink.toml"
    shrink.write_text('[[layers]]\ntype = "Conv2D"\nfilters = 4\nkernel_size = 30\n')
    cases = [
        (("--model", str(bad_spec)), "layer 1 (Dense): needs a flat input"),
        (("--model", str(shrink)), "does not fit the 28x28 input"),
        (("--model", "mlp:abc"), "expected a shorthand like"),
        (("--model", "resnet"), "not a preset"),
        (("--model", "mlp:8", "--optimizer", "rmsprop"), "optimizer = 'rmsprop' must be one of"),
        (("--model", "mlp:8", "--lr", "-1"), "lr = -1.0 must be a positive number"),
        (
            ("--model", "mlp:8", "--engine", "numpy", "--compile"),
            "--compile needs the torch engine",
        ),
        (("--recipe", "nope"), "known recipes are"),
        (("--recipe", "numpy-fast", "--model", "mlp:32"), "give --model or --recipe, not both"),
        (("--resume", str(tmp_path / "missing")), "no such run directory"),
        (
            ("--resume", str(tmp_path / "missing"), "--epochs", "9"),
            "--resume continues with the run's own settings; drop --epochs",
        ),
        (("--model", "mlp:8", "--seed", "-3"), "seed = -3 must be in"),
        (("--model", "mlp:8", "--engine", "torch", "--device", "cuda:7"), "--device cuda:7"),
        (("--model", str(bad_toml_types)), "units = 1.5 is not int"),
        (
            ("--model", "mlp:8", "--config", str(bad_config)),
            "bad.toml: train config: epochs = 1.5 is not an int",
        ),
    ]
    for args, needle in cases:
        extra = () if "--resume" in args else ("--limit", "100", "--out", str(tmp_path / "o"))
        result = invoke("train", *args, *extra)
        assert result.exit_code == 1, (args, result.output)
        assert needle in result.stderr and len(result.stderr.strip().splitlines()) == 1, (
            result.stderr
        )
    assert not (tmp_path / "o" / "model.safetensors").exists()


def test_explore_command_and_its_errors(mnist, tmp_path):
    np.savez(
        tmp_path / "d.npz", x_train=mnist.train.images[:1500], y_train=mnist.train.labels[:1500]
    )
    result = invoke(
        "explore", str(tmp_path / "d.npz"), "--out", str(tmp_path / "e"), "--sample", "200"
    )
    assert result.exit_code == 0, result.output
    assert "PCA:" in result.stdout and (tmp_path / "e" / "report.html").exists()
    result = invoke("explore", "mnist", "--sample", "10")
    assert result.exit_code == 1 and "--sample 10" in result.stderr
    rows = ["pixel" + ",pixel".join(str(i) for i in range(784)), ",".join(["0"] * 784)]
    (tmp_path / "u.csv").write_text("\n".join(rows) + "\n")
    result = invoke("explore", str(tmp_path / "u.csv"), "--out", str(tmp_path / "u"))
    assert result.exit_code == 1 and "exploring needs labeled training images" in result.stderr
    result = invoke("explore", str(tmp_path / "d.npz"), "--out", str(tmp_path / "u.csv"))
    assert result.exit_code == 1 and "u.csv: exists and is not a folder" in result.stderr


def test_a_file_name_with_a_newline_stays_one_line_in_every_message(mnist, tmp_path):
    """A name holding a newline (legal on Linux) is shown escaped: each answer and each error
    is still one line."""
    bad = tmp_path / "broken\nname.png"
    bad.write_bytes(b"not an image")
    good = tmp_path / "seven\nagain.png"
    Image.fromarray(255 - mnist.test.images[0]).resize((140, 140)).save(good)
    done = subprocess.run(
        [sys.executable, "-m", "digitlab.cli", "predict", str(good), str(bad)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stdout.count("\n") == 1 and "seven\\nagain.png: 7" in done.stdout
    assert done.stderr.count("\n") == 1 and "broken\\nname.png" in done.stderr
    assert done.stderr.startswith("error: ")


def test_a_confidence_short_of_1_is_never_printed_100_percent():
    """0.99989 under --unsure 0.9999 printed "100.0%, unsure"."""
    from digitlab.cli.read import percent

    assert [percent(0.99989), percent(0.1235), percent(1.0), percent(0.996, 0)] == [
        "99.9%", "12.3%", "100.0%", "99%"
    ]  # fmt: skip
