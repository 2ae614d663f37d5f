"""The from-scratch engine: every layer's forward and backward written out in NumPy.

Each layer is a small class with `forward(x, training)` and `backward(dy, need_dx)`;
the model is the list of them. Names and layouts follow PyTorch (`layers.1.weight` is
(out, in)), so weights move between this engine and torch_engine unchanged. No torch here.

    >>> model = build(parse_shorthand("mlp:256-128-64"), seed=0)
    >>> opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    >>> loss, correct = model.train_step(x, labels, opt)    # x float32 (N, 1, 28, 28)
    >>> model.predict_proba(x_test).argmax(1)
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from digitlab import spec as S
from digitlab.augment import AUGMENTATIONS, augment
from digitlab.engines.numpy_optim import SGD, Adam, AdamW, Optimizer, Parameter

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


# ---- initialisation -----------------------------------------------------------------------


def init_weight(rng, shape, fan_in: int, fan_out: int, how: str, dtype) -> np.ndarray:
    """torch.nn's default (kaiming_uniform with a=√5, i.e. U(±1/√fan_in)), He or Glorot."""
    if how == "default":
        bound = 1 / math.sqrt(fan_in)
        w = rng.uniform(-bound, bound, shape)
    elif how == "he_uniform":
        w = rng.uniform(-math.sqrt(6 / fan_in), math.sqrt(6 / fan_in), shape)
    elif how == "he_normal":
        w = rng.normal(0, math.sqrt(2 / fan_in), shape)
    elif how == "glorot_uniform":
        bound = math.sqrt(6 / (fan_in + fan_out))
        w = rng.uniform(-bound, bound, shape)
    elif how == "glorot_normal":
        w = rng.normal(0, math.sqrt(2 / (fan_in + fan_out)), shape)
    else:
        raise ValueError(f"unknown init {how!r}")
    return w.astype(dtype)


def init_bias(rng, n: int, fan_in: int, how: str, dtype) -> np.ndarray:
    """torch's default bias is U(±1/√fan_in); with He/Glorot weights biases start at zero."""
    if how == "default":
        return rng.uniform(-1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in), n).astype(dtype)
    return np.zeros(n, dtype)


# ---- layers ----------------------------------------------------------------------------------


class Layer:
    """A layer without parameters; subclasses override forward/backward."""

    params: dict[str, Parameter] = {}  # noqa: RUF012  (overridden per instance where used)
    buffers: dict[str, np.ndarray] = {}  # noqa: RUF012

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        """The output, keeping on the layer what backward needs."""
        raise NotImplementedError

    def infer(self, x: np.ndarray) -> np.ndarray:
        """The evaluation-mode output, keeping nothing: safe from several threads at once."""
        raise NotImplementedError

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        raise NotImplementedError


class Flatten(Layer):
    def forward(self, x, training):
        self.shape = x.shape
        return self.infer(x)

    def infer(self, x):
        return x.reshape(len(x), -1)

    def backward(self, dy, need_dx=True):
        return dy.reshape(self.shape)


class Dense(Layer):
    """y = x Wᵀ + b, W (out, in) as in torch.nn.Linear."""

    def __init__(self, n_in, layer: S.Dense, rng, dtype):
        w = init_weight(rng, (layer.units, n_in), n_in, layer.units, layer.init, dtype)
        self.params = {"weight": Parameter(w)}
        if layer.bias:
            self.params["bias"] = Parameter(init_bias(rng, layer.units, n_in, layer.init, dtype))

    def forward(self, x, training):
        self.x = x  # (N, in)
        return self.infer(x)

    def infer(self, x):
        y = x @ self.params["weight"].data.T
        if "bias" in self.params:
            y += self.params["bias"].data
        return y

    def backward(self, dy, need_dx=True):  # dy (N, out)
        w = self.params["weight"]
        np.matmul(dy.T, self.x, out=w.grad)
        if "bias" in self.params:
            dy.sum(axis=0, out=self.params["bias"].grad)
        return dy @ w.data if need_dx else None


class Conv2D(Layer):
    """Cross-correlation by im2col: every k×k window becomes a row, then one matmul."""

    def __init__(self, c_in, layer: S.Conv2D, rng, dtype):
        k, f = layer.kernel_size, layer.filters
        self.k, self.stride, self.pad = k, layer.stride, layer.padding
        w = init_weight(rng, (f, c_in, k, k), c_in * k * k, f * k * k, layer.init, dtype)
        self.params = {"weight": Parameter(w)}
        if layer.bias:
            self.params["bias"] = Parameter(init_bias(rng, f, c_in * k * k, layer.init, dtype))

    def columns(self, x):
        """(cols (N*Ho*Wo, C*k*k), padded input shape, (Ho, Wo))."""
        n, c = x.shape[:2]
        k, s, p = self.k, self.stride, self.pad
        xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p))) if p else x
        windows = sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::s, ::s]  # (N,C,Ho,Wo,k,k)
        ho, wo = windows.shape[2:4]
        cols = windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, c * k * k)
        return cols, xp.shape, (ho, wo)

    def apply(self, cols, n, ho, wo):
        weight = self.params["weight"].data
        y = cols @ weight.reshape(len(weight), -1).T  # (N*Ho*Wo, F)
        if "bias" in self.params:
            y += self.params["bias"].data
        return np.ascontiguousarray(y.reshape(n, ho, wo, -1).transpose(0, 3, 1, 2))

    def forward(self, x, training):
        self.cols, self.in_shape, self.out_hw = self.columns(x)
        return self.apply(self.cols, len(x), *self.out_hw)

    def infer(self, x):
        cols, _, (ho, wo) = self.columns(x)
        return self.apply(cols, len(x), ho, wo)

    def backward(self, dy, need_dx=True):  # dy (N, F, Ho, Wo)
        weight = self.params["weight"]
        f = len(weight.data)
        dy2 = dy.transpose(0, 2, 3, 1).reshape(-1, f)  # (N*Ho*Wo, F)
        weight.grad[...] = (dy2.T @ self.cols).reshape(weight.data.shape)
        if "bias" in self.params:
            dy2.sum(axis=0, out=self.params["bias"].grad)
        if not need_dx:
            return None
        n, c, hp, wp = self.in_shape
        k, s, p = self.k, self.stride, self.pad
        ho, wo = self.out_hw
        dcols = (dy2 @ weight.data.reshape(f, -1)).reshape(n, ho, wo, c, k, k)
        dcols = dcols.transpose(0, 3, 4, 5, 1, 2)  # (N, C, k, k, Ho, Wo)
        dxp = np.zeros(self.in_shape, dy.dtype)
        for i in range(k):  # scatter each kernel offset back: k*k vector adds, no pixel loop
            for j in range(k):
                dxp[:, :, i : i + s * (ho - 1) + 1 : s, j : j + s * (wo - 1) + 1 : s] += dcols[
                    :, :, i, j
                ]
        return dxp[:, :, p : hp - p, p : wp - p] if p else dxp


class MaxPool2D(Layer):
    """Max over k×k windows; the gradient goes to the first maximum, as in torch."""

    def __init__(self, layer: S.MaxPool2D):
        self.k = layer.size
        self.stride = layer.size if layer.stride is None else layer.stride

    def pool(self, x):
        """(output, argmax within each window)."""
        k, s = self.k, self.stride
        n, c, h, w = x.shape
        ho, wo = (h - k) // s + 1, (w - k) // s + 1
        windows = sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s][:, :, :ho, :wo]
        flat = windows.reshape(n, c, ho, wo, k * k)
        argmax = flat.argmax(axis=-1)
        return np.take_along_axis(flat, argmax[..., None], axis=-1)[..., 0], argmax

    def forward(self, x, training):
        y, self.argmax = self.pool(x)
        self.x_shape = x.shape
        return y

    def infer(self, x):
        return self.pool(x)[0]

    def backward(self, dy, need_dx=True):
        k, s = self.k, self.stride
        ho, wo = dy.shape[2:]
        dx = np.zeros(self.x_shape, dy.dtype)
        for o in range(k * k):
            i, j = divmod(o, k)
            dx[:, :, i : i + s * (ho - 1) + 1 : s, j : j + s * (wo - 1) + 1 : s] += dy * (
                self.argmax == o
            )
        return dx


class BatchNorm(Layer):
    """Normalise per feature (dense) or per channel (conv) with batch statistics in training,
    running statistics in evaluation; running_var uses the unbiased batch variance, as torch."""

    def __init__(self, features, layer: S.BatchNorm, dtype):
        self.momentum, self.eps = layer.momentum, layer.eps
        self.params = {
            "weight": Parameter(np.ones(features, dtype)),
            "bias": Parameter(np.zeros(features, dtype)),
        }
        self.buffers = {
            "running_mean": np.zeros(features, dtype),
            "running_var": np.ones(features, dtype),
            "num_batches_tracked": np.zeros((), np.int64),
        }

    def forward(self, x, training):
        axes = (0,) if x.ndim == 2 else (0, 2, 3)
        shape = (1, -1) if x.ndim == 2 else (1, -1, 1, 1)
        b = self.buffers
        if training:
            mean, var = x.mean(axis=axes), x.var(axis=axes)
            n = x.size // x.shape[1]
            m = self.momentum
            b["running_mean"][...] = (1 - m) * b["running_mean"] + m * mean
            b["running_var"][...] = (1 - m) * b["running_var"] + m * var * (n / max(n - 1, 1))
            b["num_batches_tracked"] += 1
        else:
            mean, var = b["running_mean"], b["running_var"]
        self.training, self.axes, self.shape = training, axes, shape
        self.inv_std = (1 / np.sqrt(var + self.eps)).astype(x.dtype).reshape(shape)
        self.x_hat = (x - mean.reshape(shape)) * self.inv_std
        return self.x_hat * self.params["weight"].data.reshape(shape) + self.params[
            "bias"
        ].data.reshape(shape)

    def infer(self, x):
        shape = (1, -1) if x.ndim == 2 else (1, -1, 1, 1)
        b = self.buffers
        inv_std = (1 / np.sqrt(b["running_var"] + self.eps)).astype(x.dtype).reshape(shape)
        x_hat = (x - b["running_mean"].reshape(shape)) * inv_std
        return x_hat * self.params["weight"].data.reshape(shape) + self.params["bias"].data.reshape(
            shape
        )

    def backward(self, dy, need_dx=True):
        gamma, beta = self.params["weight"], self.params["bias"]
        dy.sum(axis=self.axes, out=beta.grad)
        (dy * self.x_hat).sum(axis=self.axes, out=gamma.grad)
        if not need_dx:
            return None
        scale = gamma.data.reshape(self.shape) * self.inv_std
        if not self.training:
            return dy * scale
        n = dy.size // dy.shape[1]
        return (
            scale
            / n
            * (n * dy - beta.grad.reshape(self.shape) - self.x_hat * gamma.grad.reshape(self.shape))
        )


class Dropout(Layer):
    """Inverted dropout: zero with probability p in training and scale the rest by 1/(1-p)."""

    def __init__(self, layer: S.Dropout, rng):
        self.p, self.rng = layer.p, rng
        self.mask = None

    def forward(self, x, training):
        if not training or self.p == 0:
            self.mask = None
            return x
        self.mask = (self.rng.random(x.shape, dtype=np.float32) >= self.p).astype(x.dtype) / (
            1 - self.p
        )
        return x * self.mask

    def infer(self, x):
        return x

    def backward(self, dy, need_dx=True):
        return dy if self.mask is None else dy * self.mask


class ReLU(Layer):
    def __init__(self, inplace: bool = False):
        self.inplace = inplace  # safe when the layer below keeps no reference to its output

    def forward(self, x, training):
        self.y = self.infer(x)
        return self.y

    def infer(self, x):
        return np.maximum(x, 0, out=x if self.inplace else None)

    def backward(self, dy, need_dx=True):
        return np.multiply(dy, self.y > 0, out=dy)  # dy is ours to overwrite


class LeakyReLU(Layer):
    def __init__(self, layer: S.LeakyReLU):
        self.slope = layer.negative_slope

    def forward(self, x, training):
        self.positive = x > 0
        return np.where(self.positive, x, x * x.dtype.type(self.slope))

    def infer(self, x):
        return np.where(x > 0, x, x * x.dtype.type(self.slope))

    def backward(self, dy, need_dx=True):
        return np.where(self.positive, dy, dy * dy.dtype.type(self.slope))


class Sigmoid(Layer):
    def forward(self, x, training):
        self.y = self.infer(x)
        return self.y

    def infer(self, x):
        e = np.exp(-np.abs(x))  # never overflows
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e))

    def backward(self, dy, need_dx=True):
        return dy * self.y * (1 - self.y)


class Tanh(Layer):
    def forward(self, x, training):
        self.y = self.infer(x)
        return self.y

    def infer(self, x):
        return np.tanh(x)

    def backward(self, dy, need_dx=True):
        return dy * (1 - self.y * self.y)


# ---- the loss ----------------------------------------------------------------------------------


def softmax_cross_entropy(
    logits: np.ndarray, labels: np.ndarray, label_smoothing: float = 0.0
) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of softmax(logits) and its gradient, fused, via log-sum-exp.

    With smoothing ε the target is (1-ε)·one_hot + ε/K, as torch.nn.CrossEntropyLoss.
    """
    n, k = logits.shape
    z = logits - logits.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))  # (N, K)
    rows = np.arange(n)
    nll = -log_p[rows, labels]
    eps = label_smoothing
    loss = (1 - eps) * nll.mean() + eps * (-log_p.mean(axis=1)).mean() if eps else nll.mean()
    grad = np.exp(log_p)
    grad[rows, labels] -= 1 - eps
    if eps:
        grad -= eps / k
    grad /= n
    return float(loss), grad


# ---- the model ---------------------------------------------------------------------------------


class Model:
    """Layers built from a ModelSpec, with torch-like train()/eval() and state_dict()."""

    engine = "numpy"

    def __init__(self, spec: S.ModelSpec, layers: list[Layer], rng, dtype):
        self.spec, self.layers, self.rng, self.dtype = spec, layers, rng, np.dtype(dtype)
        self.training = True
        # backward can stop at the first layer with parameters: nothing below needs a gradient
        self.first_trainable = (
            next(i for i, layer in enumerate(layers) if layer.params)
            if any(layer.params for layer in layers)
            else len(layers)
        )

    # torch-style surface
    def train(self, mode: bool = True) -> Model:
        self.training = mode
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
        with np.errstate(
            over="ignore", invalid="ignore"
        ):  # divergence is reported by the NaN guard
            logits = self.forward(x)
            loss, dlogits = softmax_cross_entropy(logits, labels, label_smoothing)
            correct = int((logits.argmax(axis=1) == labels).sum())
            self.backward(dlogits)
            optimizer.step()
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
        scale, shift = np.float32(1 / std), np.float32(mean / std)
        stop = len(order) - (len(order) % batch_size if drop_last else 0)
        for start in range(0, stop, batch_size):
            idx = order[start : start + batch_size]
            x = images[idx].astype(np.float32)
            x *= np.float32(1 / 255)
            if aug.active:
                x = augment(x, rng, aug)
            x *= scale
            x -= shift
            yield x[:, None], labels[idx]

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
            z = self.logits(x, batch_size)
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
        """Evaluation-mode logits, in batches to bound memory. Keeps nothing on the layers, so
        several threads may call it at once (the web server does)."""
        return np.concatenate(
            [self.infer(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        )

    def pixel_logits(
        self, images: np.ndarray, mean: float, std: float, batch_size: int = 2048
    ) -> np.ndarray | None:
        """Evaluation-mode logits of uint8 images (N, H, W) normalised as (x/255 - mean)/std,
        for a network that opens with Flatten then Dense: the normalisation is folded into that
        layer, x (W/(255 std))ᵀ + (b - mean/std ΣW), which saves two passes over the pixels.
        None for other networks, and for fewer images than the layer has units, where folding
        (a pass over the weights) costs more than it saves: normalise, then call `logits`.
        Thread-safe, like `logits`."""
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
        """Class probabilities (N, classes), evaluation mode."""
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
            case S.ReLU():  # Dense, Conv2D, BatchNorm and MaxPool2D do not keep their outputs
                layers.append(ReLU(inplace=bool(layers) and type(layers[-1]) in OWN_OUTPUT))
            case S.LeakyReLU():
                layers.append(LeakyReLU(layer))
            case S.Sigmoid():
                layers.append(Sigmoid())
            case S.Tanh():
                layers.append(Tanh())
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
