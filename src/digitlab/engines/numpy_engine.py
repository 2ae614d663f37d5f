"""The from-scratch engine: every layer's forward and backward written out in NumPy.

Each layer (numpy_layers.py) is a small class with `forward(x, training)` and
`backward(dy, need_dx)`; the model is the list of them. Names and layouts follow PyTorch
(`layers.1.weight` is (out, in)), so weights move between this engine and torch_engine
unchanged. No torch here.

    >>> model = build(parse_shorthand("mlp:256-128-64"), seed=0)
    >>> opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    >>> loss, correct = model.train_step(x, labels, opt)    # x float32 (N, 1, 28, 28)
    >>> model.predict_proba(x_test).argmax(1)
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from digitlab import spec as S
from digitlab.augment import AUGMENTATIONS, augment
from digitlab.engines.numpy_layers import (
    BatchNorm,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    Layer,
    LeakyReLU,
    MaxPool2D,
    ReLU,
    Sigmoid,
    Tanh,
    softmax_cross_entropy,
)
from digitlab.engines.numpy_optim import SGD, Adam, AdamW, Optimizer, Parameter
from digitlab.engines.numpy_threads import BlasThreads
from digitlab.preprocess import (
    MNIST_MEAN,
    MNIST_STD,
    as_normalised,
    model_input,
    standardise,
    to_float,
)

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "Model",
    "Optimizer",
    "Parameter",
    "build",
    "softmax_cross_entropy",
]


# ---- the model ---------------------------------------------------------------------------------


class Model:
    """Layers built from a ModelSpec, with torch-like train()/eval() and state_dict()."""

    engine = "numpy"

    def __init__(self, spec: S.ModelSpec, layers: list[Layer], rng, dtype):
        self.spec, self.layers, self.rng, self.dtype = spec, layers, rng, np.dtype(dtype)
        self.training = True
        self.mean, self.std = MNIST_MEAN, MNIST_STD  # the input normalisation it trains with
        self.threads: BlasThreads | None = None  # the BLAS threads, chosen while training
        # backward can stop at the first layer with parameters: nothing below needs a gradient
        self.first_trainable = (
            next(i for i, layer in enumerate(layers) if layer.params)
            if any(layer.params for layer in layers)
            else len(layers)
        )

    # torch-style surface
    def train(self, mode: bool = True) -> Model:
        self.training = mode
        if not mode and self.threads is not None:  # training's thread choice ends with it
            self.threads.restore()
            self.threads = None
        return self

    def eval(self) -> Model:
        return self.train(False)

    def named_parameters(self) -> list[tuple[str, Parameter]]:
        return [
            (f"layers.{i}.{name}", p)
            for i, layer in enumerate(self.layers)
            for name, p in layer.params.items()
        ]

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad[...] = 0

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of all parameters and buffers under PyTorch's names."""
        out = {}
        for i, layer in enumerate(self.layers):
            for name, p in layer.params.items():
                out[f"layers.{i}.{name}"] = p.data.copy()
            for name, b in layer.buffers.items():
                out[f"layers.{i}.{name}"] = b.copy()
        return out

    def load_state_dict(self, state: dict[str, np.ndarray], strict: bool = True) -> None:
        """Copy values in; every name and shape must match (names are torch's)."""
        targets = {}
        for i, layer in enumerate(self.layers):
            for name, p in layer.params.items():
                targets[f"layers.{i}.{name}"] = p.data
            for name, b in layer.buffers.items():
                targets[f"layers.{i}.{name}"] = b
        missing, unexpected = set(targets) - set(state), set(state) - set(targets)
        if strict and (missing or unexpected):
            raise KeyError(
                f"state_dict mismatch: missing {sorted(missing)}, unexpected {sorted(unexpected)}"
            )
        for name, value in state.items():
            if name not in targets:
                continue
            value = np.asarray(value)
            if value.shape != targets[name].shape:
                raise ValueError(
                    f"{name}: shape {value.shape}, model expects {targets[name].shape}"
                )
            targets[name][...] = value

    # computing
    def forward(self, x: np.ndarray) -> np.ndarray:
        """Logits (N, classes) for x (N, C, H, W), in the current train/eval mode."""
        if x.ndim == 3:
            x = x[:, None]
        x = np.asarray(x, self.dtype)
        for layer in self.layers:
            x = layer.forward(x, self.training)
        return x

    def backward(self, dlogits: np.ndarray) -> None:
        """Fill every parameter's .grad from the gradient of the loss w.r.t. the logits."""
        dy = dlogits
        for i in range(len(self.layers) - 1, self.first_trainable - 1, -1):
            dy = self.layers[i].backward(dy, need_dx=i > self.first_trainable)

    def input_gradient(self, dlogits: np.ndarray) -> np.ndarray:
        """Gradient w.r.t. the input of the last forward (for checks and saliency)."""
        dy = dlogits
        for layer in reversed(self.layers):
            dy = layer.backward(dy, need_dx=True)
        return dy

    def train_step(
        self, x: np.ndarray, labels: np.ndarray, optimizer: Optimizer, label_smoothing: float = 0.0
    ) -> tuple[float, int]:
        """One optimisation step on a batch; returns (mean loss, number correct)."""
        self.training = True
        if self.threads is None:
            self.threads = BlasThreads.for_this_process()
        with np.errstate(over="ignore", invalid="ignore"):  # the NaN guard reports divergence
            logits = self.forward(x)
            loss, dlogits = softmax_cross_entropy(logits, labels, label_smoothing)
            correct = int((logits.argmax(axis=1) == labels).sum())
            self.backward(dlogits)
            optimizer.step()
        self.threads.stepped()
        return loss, correct

    def batches(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        order: np.ndarray,
        batch_size: int,
        mean: float,
        std: float,
        augmentation: str = "none",
        rng=None,
        drop_last: bool = False,
    ):
        """Yield (x float32 (B, 1, 28, 28) normalised, labels (B,)) along `order`, augmented."""
        aug = AUGMENTATIONS[augmentation]
        stop = len(order) - (len(order) % batch_size if drop_last else 0)
        for start in range(0, stop, batch_size):
            idx = order[start : start + batch_size]
            x = to_float(images[idx])
            if aug.active:
                x = augment(x[:, 0], rng, aug, labels[idx])[:, None]
            yield standardise(x, mean, std), labels[idx]

    def evaluate(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        mean: float,
        std: float,
        batch_size: int = 2048,
    ) -> tuple[float, float]:
        """Mean cross-entropy and accuracy over uint8 images, evaluation mode."""
        total, correct = 0.0, 0
        for x, y in self.batches(images, labels, np.arange(len(images)), batch_size, mean, std):
            z = self.normalised_logits(x, batch_size)
            loss, _ = softmax_cross_entropy(z, y)
            total += loss * len(y)
            correct += int((z.argmax(axis=1) == y).sum())
        return total / max(len(labels), 1), correct / max(len(labels), 1)

    def rng_state(self) -> dict:
        """The dropout RNG, JSON-ready, for exact resume."""
        return self.rng.bit_generator.state

    def set_rng_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state

    def logits(self, x: np.ndarray, batch_size: int = 2048) -> np.ndarray:
        """Evaluation-mode logits, in batches to bound memory, of uint8 images (N, 28, 28)
        (normalised here, as the model was trained) or of normalised float32 (N, 1, 28, 28).
        Keeps nothing on the layers, so several threads may call it at once (the server does)."""
        x = model_input(as_normalised(x, self.mean, self.std), self.spec.input_shape)
        if not len(x):  # an empty batch: no rows, not an error deep in np.concatenate
            return np.zeros((0, self.spec.num_classes), self.dtype)
        return self.normalised_logits(x, batch_size)

    def normalised_logits(self, x: np.ndarray, batch_size: int = 2048) -> np.ndarray:
        """`logits` of input that is already normalised, unchecked (the loop and engines.logits)."""
        return np.concatenate(
            [self.infer(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        )

    def pixel_logits(
        self, images: np.ndarray, mean: float, std: float, batch_size: int = 8192
    ) -> np.ndarray | None:
        """Evaluation-mode logits of uint8 images (N, H, W) normalised as (x/255 - mean)/std,
        for a network that opens with Flatten then Dense: the normalisation is folded into that
        layer, x (W/(255 std))ᵀ + (b - mean/std ΣW), which saves two passes over the pixels.
        None for other networks, and for fewer images than the layer has units, where folding
        (a pass over the weights) costs more than it saves: normalise, then call `logits`.
        Thread-safe, like `logits`. 8,192 rows per product (26 MB of float32 pixels): on 2 cores
        10,000 images ran 13% faster than in products of 2,048 rows, as OpenBLAS's threads
        start fewer times."""
        if len(self.layers) < 2 or not isinstance(self.layers[0], Flatten):
            return None
        dense = self.layers[1]
        if not isinstance(dense, Dense):
            return None
        w = dense.params["weight"].data
        if len(images) < len(w):
            return None
        scaled = w * self.dtype.type(1 / (255 * std))
        bias = -(mean / std) * w.sum(axis=1, dtype=np.float64)
        if "bias" in dense.params:
            bias += dense.params["bias"].data
        bias = bias.astype(self.dtype)
        flat = images.reshape(len(images), math.prod(images.shape[1:]))
        out = []
        for i in range(0, len(flat), batch_size):
            x = flat[i : i + batch_size].astype(self.dtype) @ scaled.T
            x += bias
            for layer in self.layers[2:]:
                x = layer.infer(x)
            out.append(x)
        return np.concatenate(out) if out else None

    def infer(self, x: np.ndarray) -> np.ndarray:
        """Evaluation-mode logits of one batch, whatever the train/eval mode."""
        if x.ndim == 3:
            x = x[:, None]
        x = np.asarray(x, self.dtype)
        for layer in self.layers:
            x = layer.infer(x)
        return x

    def predict_proba(self, x: np.ndarray, batch_size: int = 2048) -> np.ndarray:
        """Class probabilities (N, classes), evaluation mode; `x` as for `logits`."""
        z = self.logits(x, batch_size)
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        return z


OWN_OUTPUT = (Dense, Conv2D, BatchNorm, MaxPool2D)  # forward returns a fresh array it won't reuse


def build(spec: S.ModelSpec, seed: int = 0, dtype=np.float32) -> Model:
    """A NumPy model for `spec`, initialised from `seed` (float64 is for gradient checks)."""
    rng = np.random.default_rng(seed)
    shapes = spec.validate().output_shapes()
    inputs = [spec.input_shape, *shapes[:-1]]
    layers: list[Layer] = []
    for layer, shape in zip(spec.layers, inputs, strict=True):
        match layer:
            case S.Flatten():
                layers.append(Flatten())
            case S.Dense():
                layers.append(Dense(shape[0], layer, rng, dtype))
            case S.Conv2D():
                layers.append(Conv2D(shape[0], layer, rng, dtype))
            case S.MaxPool2D():
                layers.append(MaxPool2D(layer))
            case S.BatchNorm():
                layers.append(BatchNorm(shape[0], layer, dtype))
            case S.Dropout():
                layers.append(Dropout(layer, rng))
            case S.ReLU():
                layers.append(ReLU())
            case S.LeakyReLU():
                layers.append(LeakyReLU(layer))
            case S.Sigmoid():
                layers.append(Sigmoid())
            case S.Tanh():
                layers.append(Tanh())
    layers = [layers[i] for i in S.run_order(spec.layers)]  # a ReLU before a pool runs after it
    for below, layer in itertools.pairwise(layers):
        if isinstance(layer, ReLU):  # Dense, Conv2D, BatchNorm and MaxPool2D keep no output
            layer.inplace = type(below) in OWN_OUTPUT
    return Model(spec, layers, rng, dtype)


def make_optimizer(
    model: Model,
    name: str,
    lr: float,
    momentum: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
) -> Optimizer:
    """An optimizer by name ("sgd", "adam", "adamw") over the model's parameters."""
    if name == "sgd":
        return SGD(
            model.parameters(),
            lr=lr,
            momentum=momentum,
            nesterov=nesterov and momentum > 0,
            weight_decay=weight_decay,
        )
    if name == "adam":
        return Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; expected sgd, adam or adamw")
