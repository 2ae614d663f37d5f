"""One training loop for both engines: seeded shuffling, batches, schedule, validation.

    >>> model = numpy_engine.build(parse_shorthand("mlp:256-128-64"), seed=0)
    >>> history = fit(model, ds.train.images, ds.train.labels, TrainConfig(epochs=5))
    >>> history.rows[-1]["val_acc"]

The whole dataset stays a uint8 array; a batch is a slice of a seeded permutation,
converted to float32 and normalised on the fly (cifar10-airbench style).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from digitlab.engines import get_engine
from digitlab.engines.schedules import Schedule
from digitlab.preprocess import MNIST_MEAN, MNIST_STD, stratified_split


@dataclass
class TrainConfig:
    """Typed defaults for a training run; the CLI fills it from flags or a TOML file."""

    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"  # sgd, adam, adamw
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 0.0
    schedule: str = "onecycle"  # constant, step, cosine, onecycle
    warmup_epochs: float = 0.0
    step_epochs: int = 3  # "step" schedule: decay every this many epochs
    gamma: float = 0.1
    label_smoothing: float = 0.0
    val_split: float = 0.1  # stratified share of train held out; the test set is never used
    seed: int = 0
    mean: float = MNIST_MEAN  # input normalisation, stored with the model
    std: float = MNIST_STD
    drop_last: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class History:
    """One row per epoch: epoch, lr, train_loss, train_acc, val_loss, val_acc, seconds."""

    rows: list[dict] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(r["seconds"] for r in self.rows)


def batches(
    x_uint8: np.ndarray,
    order: np.ndarray,
    batch_size: int,
    mean: float,
    std: float,
    drop_last: bool = False,
):
    """Yield (index, float32 (B, 1, 28, 28) normalised) along `order`."""
    scale, shift = np.float32(1 / (255 * std)), np.float32(mean / std)
    stop = len(order) - (len(order) % batch_size if drop_last else 0)
    for start in range(0, stop, batch_size):
        idx = order[start : start + batch_size]
        x = x_uint8[idx].astype(np.float32)
        x *= scale
        x -= shift
        yield idx, x[:, None]


def evaluate_loss_acc(
    model, images: np.ndarray, labels: np.ndarray, config: TrainConfig, batch_size: int = 2048
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy in evaluation mode."""
    total_loss, correct = 0.0, 0
    for idx, x in batches(images, np.arange(len(images)), batch_size, config.mean, config.std):
        z = model.logits(x, batch_size)
        z = z - z.max(axis=1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        y = labels[idx]
        total_loss += float(-log_p[np.arange(len(y)), y].sum())
        correct += int((z.argmax(axis=1) == y).sum())
    return total_loss / len(labels), correct / len(labels)


def fit(
    model,
    images: np.ndarray,
    labels: np.ndarray,
    config: TrainConfig | None = None,
    callbacks: Sequence[Callable[[dict], None]] = (),
) -> History:
    """Train `model` (either engine) on uint8 images; returns the per-epoch History."""
    config = config or TrainConfig()
    engine = get_engine(model.engine)
    if config.val_split > 0:
        train_idx, val_idx = stratified_split(labels, config.val_split, config.seed)
        val_images, val_labels = images[val_idx], labels[val_idx]
        images, labels = images[train_idx], labels[train_idx]
    n = len(images)
    per_epoch = n // config.batch_size if config.drop_last else math.ceil(n / config.batch_size)
    total = per_epoch * config.epochs
    schedule = Schedule(
        config.schedule,
        base_lr=config.lr,
        total_steps=total,
        warmup_steps=round(config.warmup_epochs * per_epoch),
        step_size=max(1, config.step_epochs * per_epoch),
        gamma=config.gamma,
    )
    optimizer = engine.make_optimizer(
        model,
        config.optimizer,
        config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov,
        weight_decay=config.weight_decay,
    )
    rng = np.random.default_rng(config.seed)
    history, step = History(), 0
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        order = rng.permutation(n)
        loss_sum, correct, seen = 0.0, 0, 0
        for idx, x in batches(
            images, order, config.batch_size, config.mean, config.std, config.drop_last
        ):
            optimizer.lr = schedule.lr(step)
            loss, right = model.train_step(x, labels[idx], optimizer, config.label_smoothing)
            loss_sum += loss * len(idx)
            correct += right
            seen += len(idx)
            step += 1
        row = {
            "epoch": epoch,
            "lr": optimizer.lr,
            "train_loss": loss_sum / seen,
            "train_acc": correct / seen,
        }
        if config.val_split > 0:
            row["val_loss"], row["val_acc"] = evaluate_loss_acc(
                model, val_images, val_labels, config
            )
        else:
            row["val_loss"] = row["val_acc"] = float("nan")
        row["seconds"] = time.perf_counter() - started
        history.rows.append(row)
        for callback in callbacks:
            callback(row)
    model.eval()
    return history
