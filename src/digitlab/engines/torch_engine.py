"""The PyTorch engine: the same ModelSpec as torch.nn layers, with the NumPy engine's surface.

    >>> model = build(spec, seed=0)                  # device "auto": cuda, then mps, then cpu
    >>> model.load_state_dict(numpy_model.state_dict())
    >>> model.logits(x)                              # NumPy in, NumPy out

State dicts use the same names and layouts as the NumPy engine (`layers.1.weight`,
(out, in)), converted to and from NumPy arrays at the boundary.
"""

from __future__ import annotations

import base64

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from digitlab import spec as S
from digitlab.augment import AUGMENTATIONS
from digitlab.engines.torch_augment import augment
from digitlab.errors import DigitlabError
from digitlab.preprocess import MNIST_MEAN, MNIST_STD, as_normalised, model_input, standardise

CPU_INFERENCE_BATCH = 512  # evaluation batches on the CPU: small enough to stay in cache


def pick_device(device: str = "auto") -> torch.device:
    """'auto' = cuda if present, then mps, then cpu; anything else is passed to torch."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise DigitlabError(
            f"--device {device!r}: not a device torch knows (auto, cpu, cuda, cuda:1, mps)"
        ) from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise DigitlabError(
            f"--device {device}: no CUDA device is available here; use --device cpu or auto"
        )
    if (
        chosen.type == "cuda"
        and chosen.index is not None
        and chosen.index >= torch.cuda.device_count()
    ):
        raise DigitlabError(
            f"--device {device}: there are only {torch.cuda.device_count()} CUDA devices"
        )
    mps = getattr(torch.backends, "mps", None)
    if chosen.type == "mps" and not (mps and mps.is_available()):
        raise DigitlabError(
            f"--device {device}: Apple's MPS is not available here; use --device cpu or auto"
        )
    if chosen.type not in ("cpu", "cuda", "mps"):
        raise DigitlabError(f"--device {device}: digitlab runs on cpu, cuda or mps")
    return chosen


class Net(nn.Module):
    """`layers` is an nn.Sequential, so parameter names read `layers.{i}.weight`."""

    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def to_module(spec: S.ModelSpec) -> Net:
    """The torch.nn equivalent of `spec` (torch's default initialisation)."""
    shapes = spec.validate().output_shapes()
    inputs = [spec.input_shape, *shapes[:-1]]
    layers: list[nn.Module] = []
    for layer, shape in zip(spec.layers, inputs, strict=True):
        match layer:
            case S.Flatten():
                layers.append(nn.Flatten())
            case S.Dense(units=units, bias=bias):
                layers.append(nn.Linear(shape[0], units, bias=bias))
            case S.Conv2D(filters=f, kernel_size=k, stride=s, padding=p, bias=bias):
                layers.append(nn.Conv2d(shape[0], f, k, stride=s, padding=p, bias=bias))
            case S.MaxPool2D(size=k, stride=s):
                layers.append(nn.MaxPool2d(k, stride=s))
            case S.BatchNorm(momentum=m, eps=eps):
                bn = nn.BatchNorm1d if len(shape) == 1 else nn.BatchNorm2d
                layers.append(bn(shape[0], eps=eps, momentum=m))
            case S.Dropout(p=p):
                layers.append(nn.Dropout(p))
            case S.ReLU():
                layers.append(nn.ReLU())
            case S.LeakyReLU(negative_slope=slope):
                layers.append(nn.LeakyReLU(slope))
            case S.Sigmoid():
                layers.append(nn.Sigmoid())
            case S.Tanh():
                layers.append(nn.Tanh())
    return Net([layers[i] for i in S.run_order(spec.layers)])


class Optimizer:
    """torch.optim underneath; `lr` settable like the NumPy optimizers; state as flat arrays."""

    def __init__(self, inner: torch.optim.Optimizer):
        self.inner = inner

    @property
    def lr(self) -> float:
        return self.inner.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        for group in self.inner.param_groups:
            group["lr"] = value

    def step(self) -> None:
        self.inner.step()

    def zero_grad(self) -> None:
        self.inner.zero_grad(set_to_none=True)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Per-parameter buffers as `{buffer}.{index}` arrays (no pickle), plus lr."""
        out = {"lr": np.array(self.lr)}
        params = self.inner.param_groups[0]["params"]
        for i, p in enumerate(params):
            for key, value in self.inner.state.get(p, {}).items():
                out[f"{key}.{i}"] = torch.as_tensor(value).detach().cpu().numpy().copy()
        return out

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.lr = float(state["lr"])
        params = self.inner.param_groups[0]["params"]
        for name, value in state.items():
            if name == "lr":
                continue
            key, _, index = name.rpartition(".")
            p = params[int(index)]
            tensor = torch.as_tensor(np.asarray(value))
            self.inner.state[p][key] = tensor if key == "step" else tensor.to(p.device)


def make_optimizer(
    model: Model,
    name: str,
    lr: float,
    momentum: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
) -> Optimizer:
    """The torch.optim optimizer of the same name and settings as numpy_engine.make_optimizer."""
    params = model.parameters()
    if name == "sgd":
        nesterov = nesterov and momentum > 0
        inner = torch.optim.SGD(
            params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay
        )
    elif name == "adam":
        inner = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    elif name == "adamw":
        inner = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    else:
        raise ValueError(f"unknown optimizer {name!r}; expected sgd, adam or adamw")
    return Optimizer(inner)


class Model:
    """A torch module plus the engine surface shared with numpy_engine.Model."""

    engine = "torch"

    def __init__(self, spec: S.ModelSpec, module: Net, device: torch.device, compile: bool = False):
        self.spec, self.module, self.device = spec, module.to(device), device
        if device.type == "cpu" and any(isinstance(layer, S.Conv2D) for layer in spec.layers):
            # convolution weights stored channels-last: oneDNN's faster kernels on the CPU (a
            # cnn-small step 2x sooner on one core, 1.35x on two). The state dict and its
            # names do not change. Not measured on CUDA yet, so kept to the CPU.
            self.module = self.module.to(memory_format=torch.channels_last)
        self.forward_module = torch.compile(self.module) if compile else self.module
        self.autocast = device.type == "cuda"  # bf16 matmuls and convs on CUDA
        self.aug_gen = torch.Generator(device=device)
        self.aug_gen.manual_seed(0)
        self._data: tuple[int, torch.Tensor, torch.Tensor] | None = None  # dataset on the device
        self.mean, self.std = MNIST_MEAN, MNIST_STD  # the input normalisation it trains with

    def seed(self, seed: int) -> None:
        """Seed everything random in training: dropout (torch's RNG) and augmentation."""
        torch.manual_seed(seed)
        self.aug_gen.manual_seed(seed)

    def _on_device(
        self, images: np.ndarray, labels: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole split on the device as uint8 images and int64 labels, moved once."""
        key = id(images)
        if self._data is None or self._data[0] != key:
            x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device)
            y = torch.from_numpy(labels.astype(np.int64)).to(self.device)
            self._data = (key, x, y)
        return self._data[1], self._data[2]

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
        """Yield (x (B, 1, 28, 28) float32, labels) as device tensors; indexing and augmentation
        happen on the device."""
        x_all, y_all = self._on_device(images, labels)
        order_t = torch.from_numpy(np.asarray(order, np.int64)).to(self.device)
        aug = AUGMENTATIONS[augmentation]
        stop = len(order) - (len(order) % batch_size if drop_last else 0)
        for start in range(0, stop, batch_size):
            idx = order_t[start : min(start + batch_size, stop)]
            x = x_all[idx].unsqueeze(1).float().div_(255)  # preprocess.to_float, on the device
            if aug.active:
                x = augment(x, self.aug_gen, aug, y_all[idx])
            yield standardise(x, mean, std), y_all[idx]

    def train_step(
        self,
        x: torch.Tensor,
        labels: torch.Tensor,
        optimizer: Optimizer,
        label_smoothing: float = 0.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step; returns (mean loss, number correct) as device tensors (no sync)."""
        self.module.train()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            logits = self.forward_module(x)
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.detach(), (logits.detach().argmax(1) == labels).sum()

    @torch.no_grad()
    def evaluate(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        mean: float,
        std: float,
        batch_size: int = 2048,
    ) -> tuple[float, float]:
        """Mean cross-entropy and accuracy over uint8 images, evaluation mode."""
        mode = self.module.training
        self.module.eval()
        total = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.int64)
        for x, y in self.batches(images, labels, np.arange(len(images)), batch_size, mean, std):
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                z = self.forward_module(x).float()
            total += F.cross_entropy(z, y, reduction="sum")
            correct += (z.argmax(1) == y).sum()
        self.module.train(mode)
        n = max(len(labels), 1)
        return float(total) / n, int(correct) / n

    def rng_state(self) -> dict:
        """torch's CPU (and CUDA) RNG and the augmentation generator, JSON-ready."""
        state = {"cpu": torch.get_rng_state(), "aug": self.aug_gen.get_state()}
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return {k: base64.b64encode(v.numpy().tobytes()).decode() for k, v in state.items()}

    def set_rng_state(self, state: dict) -> None:
        def tensor(key):
            return torch.frombuffer(bytearray(base64.b64decode(state[key])), dtype=torch.uint8)

        torch.set_rng_state(tensor("cpu"))
        self.aug_gen.set_state(tensor("aug"))
        if "cuda" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(tensor("cuda"), self.device)

    @property
    def training(self) -> bool:
        return self.module.training

    def train(self, mode: bool = True) -> Model:
        self.module.train(mode)
        return self

    def eval(self) -> Model:
        return self.train(False)

    def parameters(self):
        return list(self.module.parameters())

    def state_dict(self) -> dict[str, np.ndarray]:
        return {k: v.detach().cpu().numpy().copy() for k, v in self.module.state_dict().items()}

    def load_state_dict(self, state: dict[str, np.ndarray], strict: bool = True) -> None:
        tensors = {k: torch.as_tensor(np.asarray(v)) for k, v in state.items()}
        self.module.load_state_dict(tensors, strict=strict)

    def as_tensor(self, x: np.ndarray) -> torch.Tensor:
        x = np.asarray(x, np.float32)
        return torch.from_numpy(x[:, None] if x.ndim == 3 else x).to(self.device)

    def logits(self, x: np.ndarray, batch_size: int = 2048) -> np.ndarray:
        """Evaluation-mode logits (N, classes) as NumPy, of uint8 images (N, 28, 28) (normalised
        here, as the model was trained) or of normalised float32 (N, 1, 28, 28)."""
        x = model_input(as_normalised(x, self.mean, self.std), self.spec.input_shape)
        if not len(x):  # an empty batch: no rows, not an error deep in torch.cat
            return np.zeros((0, self.spec.num_classes), np.float32)
        return self.normalised_logits(x, batch_size)

    @torch.no_grad()
    def normalised_logits(self, x: np.ndarray, batch_size: int = 2048) -> np.ndarray:
        """`logits` of input that is already normalised, unchecked (engines.logits uses it)."""
        mode = self.module.training
        self.module.eval()
        if self.device.type == "cpu":  # activations of small batches stay in the CPU's caches:
            batch_size = min(batch_size, CPU_INFERENCE_BATCH)  # 2.5x faster for cnn-small
        try:
            with torch.inference_mode():  # no autograd graph: faster, less memory
                out = [
                    self.module(self.as_tensor(x[i : i + batch_size]))
                    for i in range(0, len(x), batch_size)
                ]
                return torch.cat(out).float().cpu().numpy()
        finally:
            self.module.train(mode)

    def predict_proba(self, x: np.ndarray, batch_size: int = 2048) -> np.ndarray:
        z = torch.from_numpy(self.logits(x, batch_size))
        return torch.softmax(z, dim=1).numpy()


def build(spec: S.ModelSpec, seed: int = 0, device: str = "auto", compile: bool = False) -> Model:
    """A torch model for `spec`, initialised by torch from `seed`; `compile` uses torch.compile."""
    torch.manual_seed(seed)
    model = Model(spec, to_module(spec), pick_device(device), compile=compile)
    model.seed(seed)
    return model
