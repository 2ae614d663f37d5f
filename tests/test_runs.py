"""Run directories: what train writes, resume after SIGKILL, the NaN guard, cross-engine loading."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from digitlab import data, jobs, runs
from digitlab import spec as S
from digitlab.train import Callback, TrainConfig, TrainingDiverged

SPEC = S.ModelSpec(
    name="tiny-cnn",
    layers=[
        S.Conv2D(4, 3, padding=1),
        S.ReLU(),
        S.MaxPool2D(2),
        S.Flatten(),
        S.Dropout(0.2),
        S.Dense(32),
        S.ReLU(),
        S.Dense(10),
    ],
)
CONFIG = TrainConfig(epochs=6, batch_size=64, lr=0.05, augment="affine", seed=3, val_split=0.1)


def weights(run: Path) -> dict[str, np.ndarray]:
    return load_file(str(run / "model.safetensors"))


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        np.testing.assert_array_equal(wa[key], wb[key], err_msg=key)


def test_a_run_directory_holds_everything(mnist, tmp_path):
    model, _, test = jobs.start(
        tmp_path / "r", SPEC, "numpy", dataclasses.replace(CONFIG, epochs=2), limit=1000
    )
    run = tmp_path / "r"
    info = json.loads((run / "model.json").read_text())
    assert (
        info["training"]["finished"]
        and info["engine"] == "numpy"
        and info["spec"]["name"] == "tiny-cnn"
    )
    digest = info["data"].pop("train_sha256")
    first = data.load("mnist").train
    assert (
        digest
        == hashlib.sha256(first.images[:1000].tobytes() + first.labels[:1000].tobytes()).hexdigest()
    )
    assert info["data"] == {
        "dataset": "mnist",
        "ref": "mnist",
        "source": "cache",
        "verified": True,
        "limit": 1000,
        "train_images": 1000,
    }
    assert info["preprocessing"]["mean"] == CONFIG.mean and info["test"]["acc"] == test["acc"]
    assert (run / "history.csv").read_text().splitlines()[
        0
    ] == "epoch,lr,train_loss,train_acc,val_loss,val_acc,seconds"
    assert len(runs.read_history(run).rows) == 2
    assert json.loads((run / "checkpoint" / "latest.json").read_text())["epoch"] == 2
    loaded = runs.load_model(run)
    x = np.random.default_rng(0).standard_normal((5, 1, 28, 28), dtype=np.float32)
    np.testing.assert_array_equal(loaded.logits(x), model.logits(x))
    assert not any(p.name.endswith(".tmp") for p in run.rglob("*"))


def test_weights_move_between_engines_through_a_run(mnist, tmp_path):
    pytest.importorskip("torch")
    model, _, _ = jobs.start(
        tmp_path / "t",
        SPEC,
        "torch",
        dataclasses.replace(CONFIG, epochs=1),
        limit=600,
        device="cpu",
    )
    as_numpy = runs.load_model(tmp_path / "t", engine="numpy")
    x = (mnist.test.images[:200].astype(np.float32)[:, None] / 255 - CONFIG.mean) / CONFIG.std
    np.testing.assert_allclose(as_numpy.predict_proba(x), model.predict_proba(x), atol=1e-5)
    assert (as_numpy.predict_proba(x).argmax(1) == model.predict_proba(x).argmax(1)).all()


KILLED_TRAIN = [
    sys.executable,
    "-m",
    "digitlab.cli",
    "train",
    "--engine",
    "numpy",
    "--limit",
    "1500",
    "--epochs",
    "8",
    "--batch-size",
    "64",
    "--lr",
    "0.05",
    "--augment",
    "affine",
    "--seed",
    "3",
]


def test_resume_after_sigkill_ends_with_the_same_weights(mnist_home, tmp_path):
    spec_file = tmp_path / "tiny.json"
    spec_file.write_text(SPEC.to_json())
    env = os.environ | {"DIGITLAB_HOME": str(mnist_home)}
    common = [*KILLED_TRAIN, "--model", str(spec_file)]
    whole = subprocess.run(
        [*common, "--out", str(tmp_path / "whole")], env=env, capture_output=True, text=True
    )
    assert whole.returncode == 0, whole.stderr

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [*common, "--out", str(killed)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    latest = killed / "checkpoint" / "latest.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if latest.exists() and json.loads(latest.read_text())["epoch"] >= 2:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    stopped_at = json.loads(latest.read_text())["epoch"]
    assert 2 <= stopped_at < 8
    assert not json.loads((killed / "model.json").read_text())["training"]["finished"]
    # what a kill in the middle of a write leaves: the resumed run removes it
    (killed / ".model.safetensors.stale.tmp").write_bytes(b"x" * 1000)
    (killed / "checkpoint" / ".epoch-0009.safetensors.stale.tmp").write_bytes(b"x")

    resumed = subprocess.run(
        [sys.executable, "-m", "digitlab.cli", "train", "--resume", str(killed)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {killed} after epoch {stopped_at} of 8" in resumed.stderr
    assert_same_weights(tmp_path / "whole", killed)
    info = json.loads((killed / "model.json").read_text())
    assert info["training"]["finished"] and info["resumed_from_epoch"] == stopped_at
    assert len(runs.read_history(killed).rows) == 8
    assert not list(killed.rglob("*.tmp"))


class StopAfter(Callback):
    """Interrupt training after `epoch`, as Ctrl-C would."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, trainer, row):
        if row["epoch"] == self.epoch:
            raise KeyboardInterrupt


def test_torch_engine_resume_is_exact_on_cpu(mnist, tmp_path):
    pytest.importorskip("torch")
    config = dataclasses.replace(CONFIG, epochs=4)
    jobs.start(tmp_path / "whole", SPEC, "torch", config, limit=800, device="cpu")
    with pytest.raises(KeyboardInterrupt):
        jobs.start(
            tmp_path / "cut",
            SPEC,
            "torch",
            config,
            limit=800,
            device="cpu",
            callbacks=[StopAfter(2)],
        )
    jobs.resume(tmp_path / "cut", device="cpu")
    assert_same_weights(tmp_path / "whole", tmp_path / "cut")


def test_nan_guard_stops_with_a_clear_message_and_keeps_the_last_good_epoch(mnist, tmp_path):
    # epoch 1 trains normally; then a step schedule multiplies the lr by 1e9
    config = TrainConfig(
        epochs=4, lr=0.05, schedule="step", step_epochs=1, gamma=1e9, val_split=0.0
    )
    with pytest.raises(
        TrainingDiverged, match=r"NaN or infinite in epoch 2.*checkpoint of epoch 1 is kept"
    ):
        jobs.start(tmp_path / "nan", S.mlp([32]), "numpy", config, limit=2000)
    latest = json.loads((tmp_path / "nan" / "checkpoint" / "latest.json").read_text())
    assert latest["epoch"] == 1 and np.isfinite(latest["history"][0]["train_loss"])
    info = json.loads((tmp_path / "nan" / "model.json").read_text())
    assert not info["training"]["finished"] and "NaN" in info["stopped"]


def test_existing_runs_are_never_overwritten_silently(mnist, tmp_path):
    config = TrainConfig(epochs=1, val_split=0.0)
    jobs.start(tmp_path / "r", S.mlp([8]), "numpy", config, limit=300)
    before = (tmp_path / "r" / "model.safetensors").read_bytes()
    with pytest.raises(runs.RunError, match=r"already holds a finished run; pass --overwrite"):
        jobs.start(tmp_path / "r", S.mlp([8]), "numpy", config, limit=300)
    assert (tmp_path / "r" / "model.safetensors").read_bytes() == before
    with pytest.raises(runs.RunError, match="already finished"):
        jobs.resume(tmp_path / "r")
    info = json.loads((tmp_path / "r" / "model.json").read_text())
    info["training"]["finished"] = False  # as a run stopped by Ctrl-C leaves it
    (tmp_path / "r" / "model.json").write_text(json.dumps(info))
    with pytest.raises(runs.RunError, match=r"already holds a run; continue it with --resume"):
        jobs.start(tmp_path / "r", S.mlp([8]), "numpy", config, limit=300)


def test_damaged_run_files_are_named(mnist, tmp_path):
    jobs.start(tmp_path / "r", S.mlp([8]), "numpy", TrainConfig(epochs=1, val_split=0.0), limit=300)
    (tmp_path / "r" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(runs.RunError, match=r"model.safetensors: does not match the checksum"):
        runs.load_model(tmp_path / "r")
    (tmp_path / "r" / "model.json").write_text("{")
    with pytest.raises(runs.RunError, match=r"model.json: not valid JSON"):
        runs.load_model(tmp_path / "r")
    with pytest.raises(runs.RunError, match="no such run directory"):
        runs.load_model(tmp_path / "nope")


def test_overwrite_clears_the_old_run_before_training(mnist, tmp_path):
    from digitlab import jobs

    run = tmp_path / "r"
    jobs.start(run, S.mlp([16]), "numpy", TrainConfig(epochs=1), limit=600)
    jobs.evaluate_run(run)
    with pytest.raises(KeyboardInterrupt):
        jobs.start(
            run,
            S.mlp([16]),
            "numpy",
            TrainConfig(epochs=3),
            limit=600,
            overwrite=True,
            callbacks=[StopAfter(1)],
        )
    leftovers = {"model.safetensors", "metrics.json", "report.html", "figures"} & {
        p.name for p in run.iterdir()
    }
    assert leftovers == set()  # nothing of the first run mixes with the second
    with pytest.raises(runs.RunError, match="training did not finish; continue it with"):
        jobs.evaluate_run(run)


def test_corrupted_final_weights_are_detected(mnist, tmp_path):
    run = tmp_path / "r"
    jobs.start(run, S.mlp([16]), "numpy", TrainConfig(epochs=1), limit=600)
    raw = bytearray((run / "model.safetensors").read_bytes())
    raw[-1000:-900] = b"\xff" * 100  # damage the weights, keep the header
    (run / "model.safetensors").write_bytes(bytes(raw))
    with pytest.raises(runs.RunError, match="does not match the checksum"):
        runs.load_model(run)


def test_a_validation_split_that_holds_nothing_is_an_error(mnist, tmp_path):
    from digitlab.errors import DigitlabError

    with pytest.raises(DigitlabError, match=r"--val-split 0\.1: holds out no image of 5"):
        jobs.start(tmp_path / "r", S.mlp([8]), "numpy", TrainConfig(epochs=1), limit=5)


def test_json_safe_handles_numpy_and_non_finite_values():
    from digitlab.atomic import json_safe

    value = {"a": np.array([1.5, np.nan]), "b": np.int64(3), "c": [np.float32(np.inf), 2.0]}
    assert json_safe(value) == {"a": [1.5, None], "b": 3, "c": [None, 2.0]}


def test_logits_of_empty_input_has_one_column_per_class():
    from digitlab.engines import build, logits

    model = build(S.mlp([8]), "numpy", seed=0)
    assert logits(model, np.zeros((0, 28, 28), np.uint8)).shape == (0, 10)
    assert logits(model, np.zeros((3, 28, 28), np.uint8)).shape == (3, 10)
