"""The PyTorch engine: the same ModelSpec as torch.nn layers, with the NumPy engine's surface.

    >>> model = build(spec, seed=0)                  # device "auto": cuda, then mps, then cpu
    >>> model.load_state_dict(numpy_model.state_dict())
    >>> model.logits(x)                              # NumPy in, NumPy out

State dicts use the same names and layouts as the NumPy engine (`layers.1.weight`,
(out, in)), converted to and from NumPy arrays at the boundary.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from digitlab import spec as S


def pick_device(device: str = "auto") -> torch.device:
    """'auto' = cuda if present, then mps, then cpu; anything else is passed to torch."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


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
    return Net(layers)


class Model:
    """A torch module plus the engine surface shared with numpy_engine.Model."""

    engine = "torch"

    def __init__(self, spec: S.ModelSpec, module: Net, device: torch.device):
        self.spec, self.module, self.device = spec, module.to(device), device

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

    @torch.no_grad()
    def logits(self, x: np.ndarray, batch_size: int = 2048) -> np.ndarray:
        """Evaluation-mode logits (N, classes) as NumPy."""
        mode = self.module.training
        self.module.eval()
        try:
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


def build(spec: S.ModelSpec, seed: int = 0, device: str = "auto") -> Model:
    """A torch model for `spec`, initialised by torch from `seed`."""
    torch.manual_seed(seed)
    return Model(spec, to_module(spec), pick_device(device))
