"""The one door to the two engines: build a ModelSpec on one, and ask any model for logits.

    >>> model = build(spec, "numpy", seed=0)                 # or "torch", device="cuda"
    >>> z = logits(model, ds.test.images)                   # uint8 (N, 28, 28) -> (N, classes)

Both engines' models expose `logits`, `predict_proba`, `train_step`, `state_dict` (PyTorch's
names and layouts), and optimizers with torch.optim's semantics. The NumPy engine imports no
torch. Every image that enters a model from outside passes through `preprocess.normalise`,
with the normalisation the model was trained with (`model.mean`, `model.std`).
"""

from __future__ import annotations

import importlib
from types import ModuleType

import numpy as np

from digitlab.errors import DigitlabError
from digitlab.preprocess import check_images, normalise

ENGINES = ("numpy", "torch")


def get_engine(name: str) -> ModuleType:
    """The engine module called `name` ("numpy" needs nothing; "torch" needs PyTorch)."""
    if name not in ENGINES:
        raise DigitlabError(f"--engine {name!r}: expected one of {', '.join(ENGINES)}")
    try:
        return importlib.import_module(f"digitlab.engines.{name}_engine")
    except ImportError as e:
        raise DigitlabError(
            f"engine {name!r} needs {e.name}: pip install 'digitlab[{name}]'"
        ) from None


def build(spec, engine: str = "numpy", seed: int = 0, device: str = "auto", compile: bool = False):
    """A freshly initialised model for `spec` on `engine`, seeded by `seed`."""
    module = get_engine(engine)
    if engine == "numpy":
        if compile:
            raise DigitlabError("--compile needs the torch engine (--engine torch)")
        if device not in ("auto", "cpu"):
            raise DigitlabError(f"--device {device}: the numpy engine runs on the CPU only")
        return module.build(spec, seed=seed)
    return module.build(spec, seed=seed, device=device, compile=compile)


# test-time augmentation: the image itself and the image moved by one pixel each way
TTA_SHIFTS = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))


def shifted(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """uint8 images (N, H, W) moved by (dy, dx) whole pixels; what moves in is background (0)."""
    out = np.zeros_like(images)
    h, w = images.shape[1:]
    out[:, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = images[
        :, max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def logits(model, images: np.ndarray, batch_size: int = 2048, tta: bool = False) -> np.ndarray:
    """Evaluation-mode logits (N, classes) of uint8 images (N, 28, 28), normalised as the model
    was trained. Anything but uint8 0..255 is refused with a message saying what it got.
    `tta`: test-time augmentation, the mean of the logits of the image and of the image moved
    one pixel up, down, left and right (five times the work). A NumPy-engine MLP runs in its
    own products of 8,192 rows whatever `batch_size` says (`Model.pixel_logits`)."""
    images = check_images(images, "images")
    if tta:
        views = [shifted(images, dy, dx) for dy, dx in TTA_SHIFTS]
        return np.mean([logits(model, view, batch_size) for view in views], axis=0)
    mean, std = model.mean, model.std
    fold = getattr(model, "pixel_logits", None)  # the NumPy engine, for an MLP
    z = fold(images, mean, std) if fold is not None else None  # in its own, larger products
    if z is not None:
        return z
    out = [
        model.normalised_logits(normalise(images[i : i + batch_size], mean, std), batch_size)
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(out) if out else np.zeros((0, model.spec.num_classes), np.float32)
