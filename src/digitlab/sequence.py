"""A line reader: a convolutional network that reads a whole row of writing at once (CTC).

    >>> lines = LineReader.load(reader.FOLDER)            # lines.json + lines.safetensors
    >>> lines.read(strip)                                 # [Char('1', p, top, (x0, x1)), ...]

Reading a number digit by digit needs the digits cut apart first, and touching, overlapping
or unevenly spaced digits are where that fails. A line reader is trained on whole rows
instead, with Connectionist Temporal Classification (Graves et al., 2006): it writes one
symbol or a blank for every four columns of the strip, and the string is those symbols with
repeats and blanks removed (greedy decoding). It never decides where one digit ends.

The network (CONV then HEAD, `build_torch`) is trained with PyTorch (`sequence_train`) and
run here in NumPy, so reading needs no PyTorch: 3x3 convolutions with their batch norm folded
in, max-pooling to a height of 2, then 1-D convolutions along the row. Its files, like a run's,
are safetensors and JSON: nothing in them runs code when opened.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load as load_arrays

from digitlab.errors import DigitlabError
from digitlab.ink import forms
from digitlab.ink.row import STRIP_HEIGHT

# the 2-D part: 3x3 convolutions (batch norm, ReLU), each with the max-pooling after it; the
# height goes 32 -> 2 and the width 4 times narrower
CONV = ((16, (2, 2)), (32, (2, 2)), (64, None), (64, (2, 1)), (96, (2, 1)))
HEAD = 192  # channels of the 1-D part along the row
STRIDE = 4  # strip columns per output frame
MEAN, STD = 0.13, 0.31  # the strip's pixels (0..1) are normalised with these
FILES = ("lines.json", "lines.safetensors")


@dataclass(frozen=True)
class Char:
    """One symbol read: the character, its probability, the top alternatives [(char, p)], and
    the columns (x0, x1) of the strip it was read from."""

    char: str
    p: float
    top: list[tuple[str, float]]
    span: tuple[float, float]


def build_torch(alphabet: str):
    """The network in PyTorch, for training: (B, 1, 32, W) -> logits (B, len(alphabet) + 1, W/4)."""
    from torch import nn

    class LineNet(nn.Module):
        def __init__(self):
            super().__init__()
            layers, c_in = [], 1
            for c_out, pool in CONV:
                layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)]
                layers += [nn.BatchNorm2d(c_out), nn.ReLU()]
                if pool:
                    layers.append(nn.MaxPool2d(pool))
                c_in = c_out
            self.conv = nn.Sequential(*layers)
            self.head = nn.Sequential(
                nn.Conv1d(CONV[-1][0] * 2, HEAD, 3, padding=1), nn.BatchNorm1d(HEAD), nn.ReLU(),
                nn.Conv1d(HEAD, HEAD, 3, padding=1), nn.BatchNorm1d(HEAD), nn.ReLU(),
                nn.Conv1d(HEAD, len(alphabet) + 1, 1),
            )  # fmt: skip

        def forward(self, x):
            y = self.conv(x)
            b, c, h, w = y.shape
            return self.head(y.reshape(b, c * h, w))

    return LineNet()


def fold(module) -> dict[str, np.ndarray]:
    """The trained network's weights for NumPy inference: every batch norm folded into the
    convolution before it (w * g / sqrt(v + eps), b = beta - mean * g / sqrt(v + eps))."""
    import torch

    arrays: dict[str, np.ndarray] = {}
    convs = [m for m in module.conv if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in module.conv if isinstance(m, torch.nn.BatchNorm2d)]
    heads = [m for m in module.head if isinstance(m, torch.nn.Conv1d)]
    head_norms = [m for m in module.head if isinstance(m, torch.nn.BatchNorm1d)]
    pairs = list(zip(convs + heads[:2], norms + head_norms, strict=True))
    for i, (conv, norm) in enumerate(pairs):
        g = (norm.weight / torch.sqrt(norm.running_var + norm.eps)).detach()
        w = conv.weight.detach() * g.reshape(-1, *[1] * (conv.weight.dim() - 1))
        b = norm.bias.detach() - norm.running_mean * g
        if conv.bias is not None:
            b = b + conv.bias.detach() * g
        arrays[f"w{i}"] = w.numpy().astype(np.float32)
        arrays[f"b{i}"] = b.numpy().astype(np.float32)
    last = heads[-1]
    arrays[f"w{len(pairs)}"] = last.weight.detach().numpy().astype(np.float32)
    arrays[f"b{len(pairs)}"] = last.bias.detach().numpy().astype(np.float32)
    return arrays


def conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(C, H, W) 3x3 convolution, padding 1, then ReLU: the nine shifted copies of the input
    side by side (channel-major, so each copy is one contiguous write), one matrix product."""
    c, h, width = x.shape
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    columns = np.empty((c, 3, 3, h, width), np.float32)
    for i in range(3):
        for j in range(3):
            columns[:, i, j] = padded[:, i : i + h, j : j + width]
    out = w.reshape(w.shape[0], -1) @ columns.reshape(c * 9, h * width)
    out += b[:, None]
    return np.maximum(out, 0, out=out).reshape(w.shape[0], h, width)


def conv1d(x: np.ndarray, w: np.ndarray, b: np.ndarray, relu: bool) -> np.ndarray:
    """(C, T) convolution along the row (kernel k, padding k // 2), as one matrix product."""
    c, frames = x.shape
    k = w.shape[2]
    padded = np.pad(x, ((0, 0), (k // 2, k // 2)))
    columns = np.empty((c, k, frames), np.float32)
    for i in range(k):
        columns[:, i] = padded[:, i : i + frames]
    out = w.reshape(w.shape[0], -1) @ columns.reshape(c * k, frames)
    out += b[:, None]
    return np.maximum(out, 0, out=out) if relu else out


def pool(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    c, h, w = x.shape
    ph, pw = size
    x = x[:, : h - h % ph, : w - w % pw]
    return x.reshape(c, h // ph, ph, w // pw, pw).max(axis=(2, 4))


_blas = None  # threadpoolctl's controller of the BLAS libraries, found on first use


def one_blas_thread():
    """A context in which the BLAS uses one thread: the line reader's products are small, and
    a second BLAS thread only waits (spinning) for work (34-39 ms a 6-digit number, against
    32 ms on one thread, on 2 cores)."""
    global _blas
    if _blas is None:
        from threadpoolctl import ThreadpoolController

        _blas = ThreadpoolController()
    return _blas.limit(limits=1, user_api="blas")


class LineReader:
    """A trained line reader, loaded for reading (NumPy).

    It may be a small ensemble (lines.json `members`: each one's seed and temperature; its
    weights under `m0.`, `m1.`, ... in the one safetensors file): its scores are then the mean
    of the members' log-probabilities, each at its own temperature, and `temperature` is the
    ensemble's own, fitted on those means."""

    def __init__(self, info: dict, arrays: dict[str, np.ndarray], folder: Path) -> None:
        self.info, self.arrays, self.folder = info, arrays, folder
        self.alphabet: str = info["alphabet"]
        self.temperature = float(info.get("temperature", 1.0))
        self.members = [
            ({k.removeprefix(f"m{i}."): v for k, v in arrays.items() if k.startswith(f"m{i}.")},
             float(member["temperature"]))
            for i, member in enumerate(info.get("members", []))
        ]  # fmt: skip

    @classmethod
    def load(cls, folder) -> LineReader:
        folder = Path(folder)
        meta, weights = (folder / name for name in FILES)
        try:
            info = json.loads(meta.read_text(encoding="utf-8"))
            payload = weights.read_bytes()
        except FileNotFoundError as e:
            missing = Path(e.filename).name
            raise DigitlabError(f"{folder}: not a line reader ({missing} missing)") from None
        except (OSError, ValueError) as e:
            raise DigitlabError(f"{meta}: cannot be read as a line reader ({e})") from None
        if hashlib.sha256(payload).hexdigest() != info.get("weights_sha256"):
            raise DigitlabError(f"{weights}: does not match the SHA-256 in {meta.name}")
        return cls(info, load_arrays(payload), folder)

    @staticmethod
    def present(folder) -> bool:
        return all((Path(folder) / name).is_file() for name in FILES)

    def logits(self, strip: np.ndarray) -> np.ndarray:
        """(frames, len(alphabet) + 1) scores for a uint8 strip (32, W); class 0 is the blank."""
        if strip.ndim != 2 or strip.shape[0] != STRIP_HEIGHT:
            raise ValueError(f"a strip is ({STRIP_HEIGHT}, W), got {strip.shape}")
        width = max(STRIDE, strip.shape[1] // STRIDE * STRIDE)
        x = np.zeros((1, STRIP_HEIGHT, width), np.float32)
        x[0, :, : min(width, strip.shape[1])] = strip[:, :width]
        x = (x / 255 - MEAN) / STD
        with one_blas_thread():
            if not self.members:
                return self.forward(x, self.arrays)
            return np.mean([log_softmax(self.forward(x, a) / t) for a, t in self.members], axis=0)

    @staticmethod
    def forward(x: np.ndarray, a: dict[str, np.ndarray]) -> np.ndarray:
        for i, (_, size) in enumerate(CONV):
            x = conv2d(x, a[f"w{i}"], a[f"b{i}"])
            if size:
                x = pool(x, size)
        c, h, w = x.shape
        x = x.reshape(c * h, w)
        n = len(CONV)
        x = conv1d(x, a[f"w{n}"], a[f"b{n}"], relu=True)
        x = conv1d(x, a[f"w{n + 1}"], a[f"b{n + 1}"], relu=True)
        return conv1d(x, a[f"w{n + 2}"], a[f"b{n + 2}"], relu=False).T

    def read(self, strip: np.ndarray, top: int = 3) -> list[Char]:
        """The symbols in a strip, left to right (greedy CTC decoding): each with its calibrated
        probability (at its most certain frame), the top alternatives, and its columns."""
        return self.decode(self.logits(strip), top)

    def decode(self, logits: np.ndarray, top: int = 3) -> list[Char]:
        """`read` from the network's scores (frames, classes), at this reader's temperature."""
        z = logits / self.temperature
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        best = p.argmax(axis=1)
        runs: list[list[int]] = []  # [class, first frame, last frame]
        previous = 0
        for t, k in enumerate(best):
            if k and k == previous:
                runs[-1][2] = t
            elif k:
                runs.append([int(k), t, t])
            previous = k
        chars = []
        for k, t0, t1 in runs:
            peak = t0 + int(np.argmax(p[t0 : t1 + 1, k]))
            symbols = p[peak, 1:] / max(float(p[peak, 1:].sum()), 1e-12)
            order = np.argsort(-symbols)[: max(1, top)]
            alternatives = [(self.alphabet[i], float(symbols[i])) for i in order]
            span = (t0 * STRIDE, (t1 + 1) * STRIDE)
            chars.append(Char(self.alphabet[k - 1], float(p[peak, k]), alternatives, span))
        return chars


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Log-probabilities along the last axis."""
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def second(char: Char, read: str, then: str) -> bool:
    """Whether `char` was read as `read` with `then` among its next guesses (over 1%)."""
    return char.char == read and any(a == then and p > 0.01 for a, p in char.top[1:])


def amend(chars: list[Char]) -> dict[int, str]:
    """Symbols that the string's form says were misread, {position: symbol}: a date's slashes
    read as 1s (`forms.date_slashes`; a fifth of MNIST's 1s lean as far as a slash), an
    amount's commas read as dots (`forms.amount_commas`), and slashes between digits where the
    string is no date, nor a date without its day or year (`forms.plausible_date`,
    `forms.part_date`: 03/2026 keeps its slash): leaning 1s, read as the digit the network saw
    next, whose chance is then that digit's alone (`chance`). On held-out rows on paper, up to
    0.75 points more of each kind were read exactly, none fewer."""
    text = "".join(c.char for c in chars)
    slashes = [i for i, c in enumerate(chars) if c.char == "/" or second(c, "1", "/")]
    fixed = {i: "/" for i in forms.date_slashes(text, slashes)}
    fixed |= {i: "," for i in forms.amount_commas(text)}
    read = [fixed.get(i, c.char) for i, c in enumerate(chars)]
    digits = [i for i, s in enumerate(read) if s.isdigit()]
    written = "".join(read[digits[0] : digits[-1] + 1]) if digits else ""
    if digits and not (forms.plausible_date(written) or forms.part_date(written)):
        for i in range(digits[0], digits[-1] + 1):
            if read[i] == "/":
                digit = next((a for a, _ in chars[i].top if a.isdigit()), None)
                if digit is not None:
                    fixed[i] = digit
    return fixed


# the readings `amend` turns into each symbol and that still count for it: a date's slash read
# as a 1 is still its slash; a slash amended to a digit is as likely as that digit alone
AMENDED_FROM = {"/": "/1", ",": ",."}
ALTERNATIVES = 4  # how many of a symbol's readings `amend` and `chance` look at (decode's top)


def chance(char: Char, amended: str | None = None) -> float:
    """The probability that `char`, amended by the string's form to `amended`, is right: the mass
    of every reading the form turns into that symbol (a date's slash read as a 1 is still its
    slash), not only of the reading that won."""
    if amended is None:
        return char.p
    share = dict(char.top)
    won = share.get(char.char, 0.0)
    if won <= 0:
        return char.p
    readings = AMENDED_FROM.get(amended, amended)
    return min(1.0, char.p * sum(share.get(s, 0.0) for s in readings) / won)


def reading(chars: list[Char]) -> tuple[str, float, dict[int, str]]:
    """What a row's symbols say: the string (amended by its form, stray marks at its ends left
    out), the chance that all of it is right (the product of each symbol's `chance`), and the
    amendments {position: symbol}. Nothing read is sure of nothing: confidence 0."""
    fixed = amend(chars)
    text = "".join(fixed.get(i, c.char) for i, c in enumerate(chars))
    sure = float(np.prod([chance(c, fixed.get(i)) for i, c in enumerate(chars)])) if chars else 0.0
    return trimmed(text), sure, fixed


def trimmed(text: str) -> str:
    """A number without the stray marks at its ends: separators before its first digit but a
    decimal point (.75 stays .75), and any after its last."""
    text = text.rstrip(",.-/")
    start = 0
    while start < len(text) and text[start] in ",./":
        if text[start] == "." and text[start + 1 : start + 2].isdigit():
            break
        start += 1
    return text[start:]
