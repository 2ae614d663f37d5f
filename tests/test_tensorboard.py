"""--tensorboard writes event files that TensorBoard's own reader understands."""

from __future__ import annotations

import pytest

from digitlab import jobs
from digitlab.spec import mlp
from digitlab.tensorboard import EventWriter, crc32c
from digitlab.train import TrainConfig


def test_crc32c_known_value():
    assert crc32c(b"123456789") == 0xE3069283  # the standard check value for CRC-32C


def test_tensorboard_reads_our_scalars(mnist, tmp_path):
    accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator",
        reason="reading the files back needs tensorboard (the dev extra installs it)",
    )
    from digitlab.tensorboard import TensorBoard

    config = TrainConfig(epochs=3, val_split=0.1)
    _, history, _ = jobs.start(
        tmp_path / "r",
        mlp([16]),
        "numpy",
        config,
        limit=1500,
        callbacks=[TensorBoard(tmp_path / "r" / "tensorboard")],
    )
    reader = accumulator.EventAccumulator(str(tmp_path / "r" / "tensorboard"))
    reader.Reload()
    assert {"train/loss", "train/acc", "val/loss", "val/acc", "lr"} <= set(reader.Tags()["scalars"])
    loss = reader.Scalars("train/loss")
    assert [e.step for e in loss] == [1, 2, 3]
    assert [e.value for e in loss] == pytest.approx(
        [r["train_loss"] for r in history.rows], rel=1e-6
    )


def test_nan_values_are_left_out(tmp_path):
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    writer = EventWriter(tmp_path)
    writer.scalars({"a": 1.5, "b": float("nan")}, step=7)
    reader = accumulator.EventAccumulator(str(tmp_path))
    reader.Reload()
    assert reader.Tags()["scalars"] == ["a"] and reader.Scalars("a")[0].step == 7
