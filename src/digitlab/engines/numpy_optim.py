"""Optimizers for the NumPy engine, written to match torch.optim step for step.

    >>> opt = AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    >>> model.backward(dlogits); opt.step()      # updates every Parameter.data in place

Each update mirrors the single-tensor code path of torch.optim (same order of
operations), so 10 steps here and there agree to float32 rounding.
"""

from __future__ import annotations

import math

import numpy as np


class Parameter:
    """A trainable array and its gradient (same shape and dtype)."""

    __slots__ = ("data", "grad")

    def __init__(self, data: np.ndarray):
        self.data = data
        self.grad = np.zeros_like(data)


class Optimizer:
    """Holds parameters and a learning rate that a schedule may change between steps."""

    def __init__(self, params, lr: float):
        self.params = list(params)
        self.lr = lr
        self.steps = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad[...] = 0

    def step(self) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, np.ndarray]:
        """Buffers by name (for checkpoints), plus the step count and lr."""
        out = {"steps": np.array(self.steps), "lr": np.array(self.lr)}
        for key, buffers in self._buffers().items():
            for i, b in enumerate(buffers):
                if b is not None:
                    out[f"{key}.{i}"] = b.copy()
        return out

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.steps, self.lr = int(state["steps"]), float(state["lr"])
        for key, buffers in self._buffers().items():
            for i in range(len(buffers)):
                if f"{key}.{i}" in state:
                    buffers[i] = np.array(state[f"{key}.{i}"], dtype=self.params[i].data.dtype)

    def _buffers(self) -> dict[str, list]:
        return {}


class SGD(Optimizer):
    """torch.optim.SGD: weight decay added to the gradient, momentum buffer, optional Nesterov."""

    def __init__(
        self, params, lr=0.01, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0
    ):
        super().__init__(params, lr)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        self.momentum, self.dampening, self.nesterov, self.weight_decay = (
            momentum,
            dampening,
            nesterov,
            weight_decay,
        )
        self.momentum_buffer: list[np.ndarray | None] = [None] * len(self.params)
        # scratch arrays, one per parameter, so that a step allocates nothing (the step was about
        # a fifth of an MLP epoch)
        self.scratch = [np.empty_like(p.data) for p in self.params]
        self.decayed = [np.empty_like(p.data) for p in self.params] if weight_decay else []

    def _buffers(self):
        return {"momentum_buffer": self.momentum_buffer}

    def step(self) -> None:
        self.steps += 1
        for i, p in enumerate(self.params):
            kind, t = p.data.dtype.type, self.scratch[i]
            d = p.grad  # the gradient, with weight decay added: d + wd * p
            if self.weight_decay:
                d = np.multiply(p.data, kind(self.weight_decay), out=self.decayed[i])
                d += p.grad
            g = d
            if self.momentum:
                buf = self.momentum_buffer[i]
                if buf is None:
                    buf = self.momentum_buffer[i] = d.copy()
                else:
                    buf *= kind(self.momentum)
                    buf += np.multiply(d, kind(1 - self.dampening), out=t) if self.dampening else d
                if self.nesterov:  # d + momentum * buf
                    g = np.multiply(buf, kind(self.momentum), out=t)
                    g += d
                else:
                    g = buf
            p.data -= np.multiply(g, kind(self.lr), out=t)


class Adam(Optimizer):
    """torch.optim.Adam: L2 weight decay added to the gradient, bias-corrected moments."""

    decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        self.betas, self.eps, self.weight_decay = betas, eps, weight_decay
        self.exp_avg = [np.zeros_like(p.data) for p in self.params]
        self.exp_avg_sq = [np.zeros_like(p.data) for p in self.params]

    def _buffers(self):
        return {"exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq}

    def step(self) -> None:
        self.steps += 1
        b1, b2 = self.betas
        bias1, bias2 = 1 - b1**self.steps, 1 - b2**self.steps
        step_size, bias2_sqrt = self.lr / bias1, math.sqrt(bias2)
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq, strict=True):
            g = p.grad
            if self.weight_decay:
                if self.decoupled:
                    p.data *= p.data.dtype.type(1 - self.lr * self.weight_decay)
                else:
                    g = g + self.weight_decay * p.data
            m += (1 - b1) * (g - m)  # torch: exp_avg.lerp_(grad, 1 - beta1)
            v *= b2
            v += (1 - b2) * g * g
            denom = np.sqrt(v) / bias2_sqrt + self.eps
            p.data -= (p.data.dtype.type(step_size) * m) / denom


class AdamW(Adam):
    """torch.optim.AdamW: weight decay applied to the weights directly (decoupled)."""

    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr, betas, eps, weight_decay)


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW}
