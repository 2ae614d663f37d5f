"""The from-scratch layers: each a small class with a forward and a hand-written backward.

    >>> layer = Dense(784, S.Dense(256), rng, np.float32)
    >>> y = layer.forward(x, training=True)            # x float32 (N, 784)
    >>> dx = layer.backward(dy, need_dx=True)          # fills layer.params[...].grad

Parameters and buffers are named and laid out as PyTorch's (`weight` is (out, in)), so
weights move between this engine and torch_engine unchanged. `infer` is the evaluation-mode
forward that keeps nothing on the layer, so several threads may share one model.
test_gradcheck.py checks every backward against central differences, test_parity.py against
PyTorch with the same weights.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from digitlab import spec as S
from digitlab.engines.numpy_optim import Parameter

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
        xp = x
        if p:  # np.pad's generality cost 40 µs of a 1 ms single-image read
            xp = np.zeros((n, c, x.shape[2] + 2 * p, x.shape[3] + 2 * p), x.dtype)
            xp[:, :, p:-p, p:-p] = x
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
        k, s = self.k, self.stride
        h, w = x.shape[2:]
        if k != s or h < k or w < k:  # pool() says what is wrong with an input too small
            return self.pool(x)[0]
        # windows that tile the input: the elementwise max of its k*k strided views (no window
        # copy, no argmax; 4x faster than a reduction over two strided axes)
        ho, wo = h // k, w // k
        out = x[:, :, : ho * k : k, : wo * k : k].copy()
        for i in range(k):
            for j in range(k):
                if i or j:
                    np.maximum(out, x[:, :, i : ho * k : k, j : wo * k : k], out=out)
        return out

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
