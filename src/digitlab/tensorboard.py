"""Scalars in TensorBoard's event-file format, written without TensorBoard or TensorFlow.

    >>> writer = EventWriter("runs/cnn/tensorboard")
    >>> writer.scalars({"train/loss": 0.31, "val/acc": 0.98}, step=3)
    $ tensorboard --logdir runs/cnn/tensorboard

An event file is a sequence of TFRecords (length, CRC32C of the length, payload, CRC32C
of the payload), each payload an `Event` protocol buffer. Only the handful of fields a
scalar needs are encoded here, by hand.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from pathlib import Path

from digitlab.train import Callback


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1  # Castagnoli polynomial, reflected
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    key = _varint(number << 3 | wire)
    return key + (_varint(len(payload)) + payload if wire == 2 else payload)


def _event(
    wall_time: float, step: int, *, file_version: str = "", scalars: dict | None = None
) -> bytes:
    """Event{wall_time=1: double, step=2: int64, file_version=3: string, summary=5: Summary}."""
    body = _field(1, 1, struct.pack("<d", wall_time)) + _field(2, 0, _varint(step))
    if file_version:
        body += _field(3, 2, file_version.encode())
    if scalars:
        values = b"".join(  # Summary.Value{tag=1: string, simple_value=2: float}
            _field(1, 2, _field(1, 2, tag.encode()) + _field(2, 5, struct.pack("<f", value)))
            for tag, value in scalars.items()
        )
        body += _field(5, 2, values)
    return body


def _record(payload: bytes) -> bytes:
    length = struct.pack("<Q", len(payload))
    return (
        length
        + struct.pack("<I", _masked(crc32c(length)))
        + payload
        + struct.pack("<I", _masked(crc32c(payload)))
    )


class EventWriter:
    """Appends scalar events to one new event file in `folder`."""

    def __init__(self, folder: str | os.PathLike[str]):
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = (
            folder / f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.digitlab"
        )
        with self.path.open("ab") as f:
            f.write(_record(_event(time.time(), 0, file_version="brain.Event:2")))

    def scalars(self, values: dict[str, float], step: int) -> None:
        finite = {
            k: float(v) for k, v in values.items() if v == v
        }  # NaN (no validation) is left out
        with self.path.open("ab") as f:
            f.write(_record(_event(time.time(), step, scalars=finite)))


class TensorBoard(Callback):
    """Writes loss, accuracy and learning rate per epoch for `tensorboard --logdir`."""

    def __init__(self, folder: str | os.PathLike[str]):
        self.folder = folder
        self.writer: EventWriter | None = None

    def on_train_begin(self, trainer) -> None:
        self.writer = EventWriter(self.folder)

    def on_epoch_end(self, trainer, row: dict) -> None:
        self.writer.scalars(
            {
                "train/loss": row["train_loss"],
                "train/acc": row["train_acc"],
                "val/loss": row["val_loss"],
                "val/acc": row["val_acc"],
                "lr": row["lr"],
            },
            step=row["epoch"],
        )
