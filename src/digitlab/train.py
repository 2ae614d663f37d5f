"""One training loop for both engines: seeded shuffling, batches, schedule, validation,
early stopping, a NaN guard, and a state that checkpoints capture exactly.

    >>> model = numpy_engine.build(parse_shorthand("mlp:256-128-64"), seed=0)
    >>> history = fit(model, ds.train.images, ds.train.labels, TrainConfig(epochs=5))
    >>> history.rows[-1]["val_acc"]

The whole dataset stays a uint8 array; a batch is a slice of a seeded permutation, turned
into float32 (and augmented) by the engine: NumPy arrays for numpy_engine, device tensors
for torch_engine. The permutation comes from the same NumPy RNG for both engines. Given a
`world` (engines.distributed.DataParallel, under torchrun), each process builds the same global
batch, trains on its slice and averages gradients, so N processes match one.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from digitlab.augment import AUGMENTATIONS
from digitlab.engines import get_engine
from digitlab.engines.schedules import SCHEDULES, Schedule
from digitlab.errors import DigitlabError
from digitlab.preprocess import MNIST_MEAN, MNIST_STD, check_images, check_labels, stratified_split

OPTIMIZER_NAMES = ("sgd", "adam", "adamw")


class TrainingDiverged(DigitlabError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def setting(default, help: str):
    """A TrainConfig field with its help text: the CLI's flags and docs come from these."""
    return field(default=default, metadata={"help": help})


def of_kind(value, kind: type) -> bool:
    """Whether `value` may stand for a setting of type `kind`: a bool only for a bool, an int
    (not a bool; NumPy's too) for an int, any real number but a bool for a float."""
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    return isinstance(value, kind)


def wrong_kind(name: str, value, kind: type) -> DigitlabError:
    shown = repr(value) if len(repr(value)) < 60 else repr(value)[:57] + "..."
    article = "an" if kind is int else "a"
    return DigitlabError(f"train config: {name} = {shown} is not {article} {kind.__name__}")


@dataclass(frozen=True)
class TrainConfig:
    """Typed defaults for a training run (frozen: change with dataclasses.replace); the CLI fills
    it from flags or a TOML file."""

    epochs: int = setting(10, "Passes over the training data.")
    batch_size: int = setting(128, "Images per step.")
    optimizer: str = setting("sgd", "sgd, adam or adamw.")
    lr: float = setting(0.05, "Learning rate (the peak, for onecycle).")
    momentum: float = setting(0.9, "SGD momentum.")
    nesterov: bool = setting(True, "Nesterov momentum (sgd).")
    weight_decay: float = setting(0.0, "L2 (sgd, adam) or decoupled (adamw).")
    schedule: str = setting("onecycle", "constant, step, cosine or onecycle.")
    warmup_epochs: float = setting(0.0, "Linear warm-up length in epochs.")
    step_epochs: int = setting(3, "step schedule: multiply the lr by gamma every N epochs.")
    gamma: float = setting(0.1, "step schedule: the factor.")
    label_smoothing: float = setting(0.0, "Label smoothing, 0 to <1.")
    augment: str = setting("none", "none, shift, affine, elastic or real (photos: the reader's).")
    val_split: float = setting(0.1, "Share of train held out for validation (stratified).")
    split_seed: int = setting(
        -1, "Seeds the validation split (-1: the seed); an ensemble's members share one."
    )
    patience: int = setting(0, "Early stopping after N epochs without progress (0: off).")
    seed: int = setting(0, "Seeds weights, shuffling, augmentation, dropout.")
    mean: float = setting(MNIST_MEAN, "Input normalisation: mean of pixels / 255.")
    std: float = setting(MNIST_STD, "Input normalisation: std of pixels / 255.")
    drop_last: bool = setting(False, "Drop the last, incomplete batch of every epoch.")

    def __post_init__(self):
        self.validate()

    def validate(self) -> TrainConfig:
        """Raise DigitlabError naming the first bad field."""
        for f in fields(self):  # types first: nesterov="false" trained as True, epochs=1.5 as 2
            value, kind = getattr(self, f.name), type(f.default)
            if not of_kind(value, kind):
                raise wrong_kind(f.name, value, kind)
        checks = [
            ("epochs", self.epochs >= 1, "must be at least 1"),
            ("batch_size", self.batch_size >= 1, "must be at least 1"),
            ("lr", self.lr > 0 and math.isfinite(self.lr), "must be a positive number"),
            (
                "optimizer",
                self.optimizer in OPTIMIZER_NAMES,
                f"must be one of {', '.join(OPTIMIZER_NAMES)}",
            ),
            ("schedule", self.schedule in SCHEDULES, f"must be one of {', '.join(SCHEDULES)}"),
            (
                "augment",
                self.augment in AUGMENTATIONS,
                f"must be one of {', '.join(AUGMENTATIONS)}",
            ),
            ("val_split", 0 <= self.val_split < 1, "must be in [0, 1)"),
            ("label_smoothing", 0 <= self.label_smoothing < 1, "must be in [0, 1)"),
            ("momentum", 0 <= self.momentum < 1, "must be in [0, 1)"),
            ("weight_decay", self.weight_decay >= 0, "must be ≥ 0"),
            ("std", self.std > 0, "must be positive"),
            ("patience", self.patience >= 0, "must be ≥ 0"),
            ("seed", 0 <= self.seed < 2**32, "must be in 0 .. 2**32-1"),
            ("split_seed", -1 <= self.split_seed < 2**32, "must be -1 or in 0 .. 2**32-1"),
            ("step_epochs", self.step_epochs >= 1, "must be at least 1"),
            ("warmup_epochs", 0 <= self.warmup_epochs <= self.epochs, "must be in 0 .. epochs"),
            ("gamma", self.gamma > 0, "must be positive"),
        ]
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise DigitlabError(f"train config: {f.name} = {value!r} must be a finite number")
        for name, ok, why in checks:
            if not ok:
                raise DigitlabError(f"train config: {name} = {getattr(self, name)!r} {why}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def val_seed(self) -> int:
        """What seeds the validation split: split_seed, or the seed when it is -1."""
        return self.seed if self.split_seed < 0 else self.split_seed

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Build from a dict (TOML, JSON); unknown keys are an error that names them."""
        if not isinstance(d, dict):
            raise DigitlabError(f"train config: expected a table of settings, got {d!r:.60}")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise DigitlabError(
                f"train config: unknown setting {unknown[0]!r}; known: {', '.join(known)}"
            )
        values = dict(d)  # types are checked by validate, as for any TrainConfig
        for name, value in d.items():
            if type(known[name].default) is float and of_kind(value, float):
                try:
                    values[name] = float(value)  # 1 from TOML is kept as 1.0
                except OverflowError:
                    raise DigitlabError(f"train config: {name} is too large a number") from None
        return cls(**values)


TRAIN_FIELDS = {f.name: f for f in fields(TrainConfig)}  # every setting is a `train` flag


def cli_flag(name: str, value) -> str:
    """A TrainConfig setting as the `digitlab train` flag that sets it."""
    flag = name.replace("_", "-")
    if isinstance(value, bool):
        return f"--{flag}" if value else f"--no-{flag}"
    return f"--{flag} {value}"


@dataclass
class History:
    """One row per epoch: epoch, lr, train_loss, train_acc, val_loss, val_acc, seconds."""

    rows: list[dict] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(r["seconds"] for r in self.rows)


class Callback:
    """Hooks into the loop; the CLI's progress bar and the run directory's checkpoints use them."""

    def on_train_begin(self, trainer: Trainer) -> None: ...
    def on_epoch_begin(self, trainer: Trainer, epoch: int, steps: int) -> None: ...
    def on_batch_end(
        self, trainer: Trainer, batch: int, seen: int, loss: float, acc: float
    ) -> None: ...
    def on_epoch_end(self, trainer: Trainer, row: dict) -> None: ...


class Trainer:
    """The loop and everything it carries between epochs, so that a checkpoint is exact."""

    def __init__(
        self,
        model,
        images: np.ndarray,
        labels: np.ndarray,
        config: TrainConfig,
        callbacks: Sequence[Callback] = (),
        world=None,
    ):
        """`world`: this process's part in data-parallel training (engines.distributed)."""
        self.model, self.config, self.callbacks = model, config.validate(), list(callbacks)
        self.world = world
        images = check_images(images, "training images", side=None)
        labels = check_labels(labels, len(images), model.spec.num_classes)
        model.mean, model.std = config.mean, config.std  # what logits() will normalise with
        self.engine = get_engine(model.engine)
        if config.val_split > 0:
            train_idx, val_idx = stratified_split(labels, config.val_split, config.val_seed)
            if len(val_idx) == 0:
                raise DigitlabError(
                    f"--val-split {config.val_split}: holds out no image of {len(labels)}; "
                    "train on more images or pass --val-split 0"
                )
            self.val = (images[val_idx], labels[val_idx])
            images, labels = images[train_idx], labels[train_idx]
        else:
            self.val = None
        if len(images) == 0:
            raise DigitlabError("no training images left after the validation split")
        self.images, self.labels = images, labels
        n = len(images)
        self.steps_per_epoch = (
            n // config.batch_size if config.drop_last else math.ceil(n / config.batch_size)
        )
        if self.steps_per_epoch == 0:
            raise DigitlabError(
                f"batch size {config.batch_size} is larger than the {n} training images"
            )
        self.schedule = Schedule(
            config.schedule,
            base_lr=config.lr,
            total_steps=self.steps_per_epoch * config.epochs,
            warmup_steps=round(config.warmup_epochs * self.steps_per_epoch),
            step_size=max(1, config.step_epochs * self.steps_per_epoch),
            gamma=config.gamma,
        )
        self.optimizer = self.engine.make_optimizer(
            model,
            config.optimizer,
            config.lr,
            momentum=config.momentum,
            nesterov=config.nesterov,
            weight_decay=config.weight_decay,
        )
        if world is not None:  # step() averages the gradients of all processes first
            self.optimizer = world.wrap(self.optimizer, model)
        self.rng = np.random.default_rng(config.seed)  # shuffling (and NumPy augmentation)
        self.history = History()
        self.epoch = 0  # epochs finished
        self.best_val_loss, self.stale = math.inf, 0
        self.stopped_early = False

    # -- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> tuple[dict[str, np.ndarray], dict]:
        """(arrays, JSON-ready metadata): weights, optimizer buffers, every RNG, the history."""
        arrays = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        arrays |= {f"optimizer.{k}": np.asarray(v) for k, v in self.optimizer.state_dict().items()}
        meta = {
            "epoch": self.epoch,
            "history": self.history.rows,
            "rng": self.rng.bit_generator.state,
            "model_rng": self.model.rng_state(),
            "best_val_loss": self.best_val_loss,
            "stale": self.stale,
            "config": self.config.to_dict(),
        }
        return arrays, meta

    def load_state_dict(self, arrays: dict[str, np.ndarray], meta: dict) -> None:
        self.model.load_state_dict({k[6:]: v for k, v in arrays.items() if k.startswith("model.")})
        self.optimizer.load_state_dict(
            {k[10:]: v for k, v in arrays.items() if k.startswith("optimizer.")}
        )
        self.epoch = int(meta["epoch"])
        self.history = History(list(meta["history"]))
        self.rng.bit_generator.state = meta["rng"]
        self.model.set_rng_state(meta["model_rng"])
        self.best_val_loss, self.stale = float(meta["best_val_loss"]), int(meta["stale"])

    # -- the loop --------------------------------------------------------------------------------
    def run(self) -> History:
        c = self.config
        for cb in self.callbacks:
            cb.on_train_begin(self)
        while self.epoch < c.epochs and not self.stopped_early:
            self._run_epoch()
        self.model.eval()
        return self.history

    def _run_epoch(self) -> None:
        c = self.config
        epoch = self.epoch + 1
        for cb in self.callbacks:
            cb.on_epoch_begin(self, epoch, self.steps_per_epoch)
        started = time.perf_counter()
        order = self.rng.permutation(len(self.images))
        step = self.epoch * self.steps_per_epoch
        loss_sum, correct, seen = 0.0, 0, 0
        batches = self.model.batches(
            self.images,
            self.labels,
            order,
            c.batch_size,
            c.mean,
            c.std,
            c.augment,
            self.rng,
            c.drop_last,
        )
        for batch, (x, y) in enumerate(batches, start=1):
            self.optimizer.lr = self.schedule.lr(step)
            if self.world is not None:  # this process's slice of the global batch
                x, y = self.world.shard(x, y)
            loss, right = self.model.train_step(x, y, self.optimizer, c.label_smoothing)
            step += 1
            if len(y) == 0:  # an empty slice of a last batch smaller than the processes
                continue
            loss_sum = loss_sum + loss * len(y)  # device tensors stay on the device until the end
            correct = correct + right
            seen += len(y)
            if isinstance(loss, float) and not math.isfinite(loss):
                self._diverged(epoch, batch)
            if self.callbacks and (batch % 20 == 0 or batch == self.steps_per_epoch):
                for cb in self.callbacks:
                    cb.on_batch_end(self, batch, seen, float(loss_sum) / seen, int(correct) / seen)
        if self.world is not None:  # the epoch's totals over every process's slices
            loss_sum, correct, seen = self.world.sum(loss_sum, correct, seen)
        train_loss = float(loss_sum) / seen
        if not math.isfinite(train_loss):
            self._diverged(epoch, None)
        row = {
            "epoch": epoch,
            "lr": self.optimizer.lr,
            "train_loss": train_loss,
            "train_acc": int(correct) / seen,
        }
        if self.val is not None and self.world is not None:  # every process scores a part
            row["val_loss"], row["val_acc"] = self.world.evaluate(
                self.model, *self.val, c.mean, c.std
            )
        elif self.val is not None:
            row["val_loss"], row["val_acc"] = self.model.evaluate(*self.val, c.mean, c.std)
        else:
            row["val_loss"] = row["val_acc"] = float("nan")
        row["seconds"] = time.perf_counter() - started
        self.history.rows.append(row)
        self.epoch = epoch
        if c.patience and self.val is not None:
            if row["val_loss"] < self.best_val_loss - 1e-6:
                self.best_val_loss, self.stale = row["val_loss"], 0
            else:
                self.stale += 1
                self.stopped_early = self.stale >= c.patience
        for cb in self.callbacks:
            cb.on_epoch_end(self, row)

    def _diverged(self, epoch: int, batch: int | None) -> None:
        where = f"epoch {epoch}" + (f", batch {batch}" if batch else "")
        kept = (
            f"the checkpoint of epoch {self.epoch} is kept" if self.epoch else "no epoch finished"
        )
        raise TrainingDiverged(
            f"the loss became NaN or infinite in {where} (lr {self.optimizer.lr:.3g}); "
            f"{kept}. Try a smaller --lr or a warm-up (--warmup-epochs 1)"
        )


def fit(
    model,
    images: np.ndarray,
    labels: np.ndarray,
    config: TrainConfig | None = None,
    callbacks: Sequence[Callback] = (),
) -> History:
    """Train `model` (either engine) on uint8 images (N, 28, 28); returns the per-epoch History."""
    return Trainer(model, images, labels, config or TrainConfig(), callbacks).run()


def evaluate_loss_acc(
    model, images: np.ndarray, labels: np.ndarray, config: TrainConfig, batch_size: int = 2048
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of `model` on uint8 images, normalised as in `config`."""
    return model.evaluate(images, labels, config.mean, config.std, batch_size)
