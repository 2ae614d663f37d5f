"""The contenders of the peer benchmarks, each trained the way its users would write it.

    >>> clock = EpochClock(evaluate=None, targets=(0.98,), max_epochs=15)
    >>> sklearn_mlp(d, seed=0, clock=clock)      # clock.epochs: [(seconds, test accuracy), ...]

Every trainer runs epoch by epoch and reports each epoch's wall-clock seconds to an
`EpochClock`, which then scores the test set *off the clock* and says when to stop (the last
target reached, or `max_epochs`). An epoch's seconds cover the training work only: shuffling,
batching, forward, backward and the optimizer step, plus whatever one-off set-up the library
does inside its first epoch (Keras' `fit` preparation, moving data to a device). Building the
model and preparing the float arrays happen before the clock starts, for every contender.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from digitlab.preprocess import MNIST_MEAN, MNIST_STD

MLP_HIDDEN = (256, 128, 64)  # case 1
KERAS_HIDDEN = (128, 64, 16)  # case 2, the seeds' Keras network
PEER_BATCH, PEER_LR = 64, 1e-3  # the tutorials' settings: Adam, batch 64
KERAS_OURS = "digitlab numpy, keras-128-64-16 recipe"  # case 2's verdict row


@dataclass
class Data:
    """MNIST as uint8 arrays: train (N, 28, 28), test (M, 28, 28), labels (N,), (M,)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def floats(self, mean: float, std: float, flat: bool) -> tuple[np.ndarray, np.ndarray]:
        """(train, test) float32, (x / 255 - mean) / std, shaped (N, 784) or (N, 1, 28, 28)."""
        shape = (-1, 784) if flat else (-1, 1, 28, 28)
        return tuple(
            ((x.astype(np.float32) / 255 - mean) / std).reshape(shape).astype(np.float32)
            for x in (self.x_train, self.x_test)
        )

    def head(self, n_train: int, n_test: int) -> Data:
        return Data(
            self.x_train[:n_train],
            self.y_train[:n_train],
            self.x_test[:n_test],
            self.y_test[:n_test],
        )


@dataclass
class EpochClock:
    """Collects (seconds, test accuracy) per epoch; scores off the clock; decides when to stop."""

    evaluate: Callable[[], float] | None
    targets: tuple[float, ...]
    max_epochs: int
    epochs: list[tuple[float, float | None]] = field(default_factory=list)

    def epoch_done(self, seconds: float) -> bool:
        """Record one epoch; True when training should stop."""
        last = len(self.epochs) + 1 >= self.max_epochs
        acc = self.evaluate() if (self.targets or last) and self.evaluate else None
        self.epochs.append((seconds, acc))
        reached = bool(self.targets) and acc is not None and acc >= max(self.targets)
        return last or reached


# ---- digitlab ----------------------------------------------------------------------------------


def digitlab(d: Data, seed: int, clock: EpochClock, spec, config, engine: str, device="cpu"):
    """digitlab's own `fit` with one of its engines; epochs stop early once the clock says so."""
    from digitlab.engines import get_engine
    from digitlab.train import Callback, fit

    module = get_engine(engine)
    model = module.build(spec, seed=seed) if engine == "numpy" else module.build(spec, seed, device)
    config = dataclasses.replace(config, seed=seed, val_split=0.0, epochs=clock.max_epochs)
    clock.evaluate = lambda: model.evaluate(d.x_test, d.y_test, config.mean, config.std)[1]

    class Stop(Callback):
        def on_epoch_end(self, trainer, row):  # row["seconds"] is already measured here
            trainer.stopped_early = clock.epoch_done(row["seconds"])

    fit(model, d.x_train, d.y_train, config, callbacks=[Stop()])


# ---- scikit-learn ------------------------------------------------------------------------------


def sklearn_mlp(d: Data, seed: int, clock: EpochClock):
    """MLPClassifier, solver adam, batch 64, lr 1e-3, no L2 (as the others); one epoch per
    partial_fit (it shuffles each time)."""
    from sklearn.neural_network import MLPClassifier

    x, xt = d.floats(MNIST_MEAN, MNIST_STD, flat=True)
    clf = MLPClassifier(
        hidden_layer_sizes=MLP_HIDDEN,
        solver="adam",
        batch_size=PEER_BATCH,
        learning_rate_init=PEER_LR,
        alpha=0.0,
        random_state=seed,
    )
    clock.evaluate = lambda: float((clf.predict(xt) == d.y_test).mean())
    classes = np.arange(10)
    while True:
        start = time.perf_counter()
        clf.partial_fit(x, d.y_train, classes=classes)
        if clock.epoch_done(time.perf_counter() - start):
            return


# ---- Keras 3 on its PyTorch backend ------------------------------------------------------------


def keras_module():
    """Keras on the torch backend, or an ImportError/RuntimeError that says why not."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    if keras.backend.backend() != "torch":
        raise RuntimeError(
            f"Keras runs on its {keras.backend.backend()!r} backend here (KERAS_BACKEND is set); "
            "the benchmark needs KERAS_BACKEND=torch"
        )
    return keras


def keras_mlp(
    d: Data,
    seed: int,
    clock: EpochClock,
    hidden=MLP_HIDDEN,
    batch_size: int = PEER_BATCH,
    mean: float = MNIST_MEAN,
    std: float = MNIST_STD,
):
    """keras.Sequential of Dense layers, Adam 1e-3, one `fit` call; a callback times each epoch
    and scores the test set off the clock."""
    keras = keras_module()
    x, xt = d.floats(mean, std, flat=True)
    keras.utils.set_random_seed(seed)
    layers = [keras.layers.Dense(h, activation="relu") for h in hidden]
    model = keras.Sequential([keras.Input((784,)), *layers, keras.layers.Dense(10)])
    model.compile(
        optimizer=keras.optimizers.Adam(PEER_LR),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )

    def accuracy() -> float:
        logits = model.predict(xt, batch_size=2000, verbose=0)
        return float((logits.argmax(1) == d.y_test).mean())

    clock.evaluate = accuracy
    mark = [0.0]

    class Timer(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seconds = time.perf_counter() - mark[0]
            self.model.stop_training = clock.epoch_done(seconds)
            mark[0] = time.perf_counter()  # the scoring above stays off the clock

    y = d.y_train.astype(np.int64)
    mark[0] = time.perf_counter()
    model.fit(x, y, batch_size=batch_size, epochs=clock.max_epochs, shuffle=True, verbose=0,
              callbacks=[Timer()])  # fmt: skip


def keras_recipe(d: Data, seed: int, clock: EpochClock):
    """Case 2: the seeds' Keras project, 784-128-64-16-10, Adam, batch 1000, pixels / 255."""
    keras_mlp(d, seed, clock, KERAS_HIDDEN, batch_size=1000, mean=0.0, std=1.0)


# ---- a plain PyTorch loop, as the tutorials write it --------------------------------------------


def torch_net(kind: str):
    """ "mlp": 784-256-128-64-10; "cnn": cnn-small, layer for layer; "cnn-fast": the same with
    the first convolution 8 wide (the cnn-fast recipe's network)."""
    from torch import nn

    if kind == "mlp":
        sizes = (784, *MLP_HIDDEN)
        layers = [m for a, b in itertools.pairwise(sizes) for m in (nn.Linear(a, b), nn.ReLU())]
        return nn.Sequential(*layers, nn.Linear(sizes[-1], 10))
    first = 8 if kind == "cnn-fast" else 12
    return nn.Sequential(
        nn.Conv2d(1, first, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(first, 24, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(24 * 7 * 7, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


def torch_loop(d: Data, seed: int, clock: EpochClock, kind: str = "mlp", device: str = "cpu"):
    """TensorDataset + DataLoader(batch 64, shuffle), Adam 1e-3, cross-entropy: pytorch/examples'
    shape of loop. On a GPU each batch is moved as the tutorials do and the clock waits for it."""
    import torch
    from torch.nn import functional as F
    from torch.utils.data import DataLoader, TensorDataset

    x, xt = d.floats(MNIST_MEAN, MNIST_STD, flat=kind == "mlp")
    torch.manual_seed(seed)
    net = torch_net(kind).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=PEER_LR)
    dataset = TensorDataset(torch.from_numpy(x), torch.from_numpy(d.y_train.astype(np.int64)))
    loader = DataLoader(dataset, batch_size=PEER_BATCH, shuffle=True)
    xt_t = torch.from_numpy(xt)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def accuracy() -> float:
        net.eval()
        with torch.no_grad():
            preds = [
                net(xt_t[i : i + 2000].to(device)).argmax(1).cpu()
                for i in range(0, len(xt_t), 2000)
            ]
        return float((torch.cat(preds).numpy() == d.y_test).mean())

    clock.evaluate = accuracy
    while True:
        start = time.perf_counter()
        net.train()
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            opt.zero_grad()
            loss = F.cross_entropy(net(xb), yb)
            loss.backward()
            opt.step()
        sync()
        if clock.epoch_done(time.perf_counter() - start):
            return


# ---- case 4: inference over the test set and one image at a time -------------------------------


def inference(d: Data, repeats: int, latency_calls: int, seed: int = 0) -> dict:
    """MLP 784-256-128-64-10 trained with `numpy-fast`, then read by the NumPy engine, the
    PyTorch engine (CPU) and onnxruntime: uint8 in, probabilities out, normalisation included."""
    import onnxruntime
    import torch

    from benchmarks.common import median_seconds
    from digitlab.engines import numpy_engine, torch_engine
    from digitlab.jobs.export import onnx_model
    from digitlab.predict import classify
    from digitlab.presets import RECIPES
    from digitlab.train import fit

    spec, config = RECIPES["numpy-fast"]
    model = numpy_engine.build(spec, seed=seed)
    fit(model, d.x_train, d.y_train, dataclasses.replace(config, seed=seed, val_split=0.0))
    info = {
        "preprocessing": {"mean": config.mean, "std": config.std},
        "classes": list("0123456789"),
    }
    twin = torch_engine.build(spec, seed=seed, device="cpu")
    twin.load_state_dict(model.state_dict())
    twin.eval()
    session = onnxruntime.InferenceSession(
        onnx_model(spec, model.state_dict(), info).SerializeToString(),
        providers=["CPUExecutionProvider"],
    )

    def onnx_read(images: np.ndarray):
        pixels = images.astype(np.float32)[:, None]  # the conversion counts, as for the others
        return session.run(["probabilities"], {"pixels": pixels})[0]

    readers = {
        "numpy": lambda images: classify(model, info, images),
        "torch": lambda images: classify(twin, info, images),
        "onnxruntime": onnx_read,
    }
    out = {"test_acc": model.evaluate(d.x_test, d.y_test, config.mean, config.std)[1]}
    n = len(d.x_test)
    picks = d.x_test[np.arange(latency_calls) % n]
    with torch.inference_mode():
        for name, read in readers.items():
            _, times = median_seconds(lambda read=read: read(d.x_test), repeats=repeats)
            for image in picks[:20]:  # warm-up
                read(image[None])
            single = []
            for image in picks:
                start = time.perf_counter()
                read(image[None])
                single.append(time.perf_counter() - start)
            rates = sorted(n / t for t in times)
            out[name] = {
                "images_per_s": float(np.median(rates)),
                "images_per_s_min": rates[0],
                "images_per_s_max": rates[-1],
                "latency_p50_ms": float(np.percentile(single, 50) * 1000),
                "latency_p90_ms": float(np.percentile(single, 90) * 1000),
            }
    return out
