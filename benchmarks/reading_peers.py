"""The readers the reading benchmark (benchmarks/reading.py) sets side by side, each with
`digits(images) -> [(label, confidence)]` and, where it reads rows, `number(image) -> str`:
digitlab's Predictor, digit-recognizer-py 0.1.0 (its network and preprocessing, without
torchvision) and Tesseract 5 (its command line, digits whitelisted)."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from digitlab.predict import Predictor

DIGITS = "0123456789"
PEER_WHEEL = "digit-recognizer-py==0.1.0"


class Digitlab:
    def __init__(self, name: str, run=None, lines=None, single: bool = True):
        """`lines=False`: numbers cut into digits (ink.segment) even though the run has a line
        reader; `single=False`: numbers only (the single digits are another column's)."""
        self.name, self.predictor, self.single = name, Predictor(run, lines=lines), single

    def digits(self, images: list[bytes]) -> list[tuple[str, float]]:
        return [(label, confidence) for label, confidence, _ in self.answers(images)]

    def answers(self, images: list[bytes]) -> list[tuple[str, float, str]]:
        """(label, confidence, status) of each image, read 64 at a time."""
        out = []
        for start in range(0, len(images), 64):
            for a in self.predictor.read_many(images[start : start + 64]):
                out.append((a["label"] or "", a["confidence"], a["status"]))
        return out

    def number(self, image: bytes) -> str:
        return self.predictor.read_number(image)["number"] or ""


def peer_weights(home: Path) -> Path:
    """digit-recognizer-py's bundled weights, from its wheel on PyPI (downloaded once)."""
    folder = home / "peers" / "digit-recognizer-py"
    weights = folder / "handwriting_model.pth"
    if not weights.exists():
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "-q", "--no-deps", PEER_WHEEL, "-d", tmp],
                check=True,
            )
            wheel = next(Path(tmp).glob("*.whl"))
            with zipfile.ZipFile(wheel) as z:
                name = next(n for n in z.namelist() if n.endswith(".pth"))
                weights.with_suffix(".part").write_bytes(z.read(name))
        weights.with_suffix(".part").replace(weights)
    return weights


class DigitRecognizerPy:
    """digit-recognizer-py 0.1.0's network and preprocessing (its recognizer.py), without
    torchvision."""

    name = "digit-recognizer-py 0.1.0"

    def __init__(self, home: Path):
        import torch
        from torch import nn

        self.torch = torch
        self.model = nn.Sequential(  # the package's model.CNN, layer for layer
            nn.Sequential(
                nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),
                nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),
                nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),
            ),
            nn.Flatten(),
            nn.Sequential(nn.Linear(128 * 3 * 3, 256), nn.ReLU(), nn.Linear(256, 10)),
        )  # fmt: skip
        state = torch.load(peer_weights(home), map_location="cpu", weights_only=True)
        state = {
            k.replace("conv_layers.", "0.").replace("fc_layers.", "2."): v for k, v in state.items()
        }
        self.model.load_state_dict(state)
        self.model.eval()

    def tensor(self, image: bytes):
        im = Image.open(io.BytesIO(image)).convert("L")
        arr = np.asarray(im)
        h, w = arr.shape
        bh, bw = max(1, int(h * 0.05)), max(1, int(w * 0.05))
        border = np.concatenate(
            [arr[:bh].ravel(), arr[-bh:].ravel(), arr[:, :bw].ravel(), arr[:, -bw:].ravel()]
        )
        if border.mean() > 128:
            im = ImageOps.invert(im)
        # transforms.Resize((28, 28)) on a PIL image: Pillow's bilinear, antialiased
        x = np.asarray(im.resize((28, 28), Image.Resampling.BILINEAR), np.float32) / 255
        return self.torch.from_numpy((x - 0.1307) / 0.3081)[None, None]

    def digits(self, images: list[bytes]) -> list[tuple[str, float]]:
        with self.torch.no_grad():
            out = []
            for image in images:
                p = self.torch.softmax(self.model(self.tensor(image)), 1)[0].numpy()
                out.append((str(int(p.argmax())), float(p.max())))
        return out

    number = None  # reads one digit per image


class Tesseract:
    name = "Tesseract 5"

    def __init__(self):
        self.exe = shutil.which("tesseract")
        if self.exe is None:
            raise RuntimeError("tesseract is not installed (apt install tesseract-ocr)")
        version = subprocess.run([self.exe, "--version"], capture_output=True, text=True)
        self.version = (version.stdout or version.stderr).split("\n")[0]

    def ocr(self, image: bytes, psm: int, chars: str) -> str:
        done = subprocess.run(
            [
                self.exe,
                "stdin",
                "stdout",
                "--psm",
                str(psm),
                "-c",
                f"tessedit_char_whitelist={chars}",
            ],
            input=image,
            capture_output=True,
            timeout=60,
        )
        return "".join(done.stdout.decode("utf-8", "replace").split())

    def one(self, image: bytes) -> str:
        """psm 10 (one character); when it finds nothing, psm 8 (one word), as a user would."""
        return self.ocr(image, 10, DIGITS) or self.ocr(image, 8, DIGITS)

    def digits(self, images: list[bytes]) -> list[tuple[str, float]]:
        with ThreadPoolExecutor(2) as pool:
            return [(t, float("nan")) for t in pool.map(self.one, images)]

    def number(self, image: bytes, chars: str = "") -> str:
        """psm 7 (one line); when it finds nothing, psm 8 (one word)."""
        return self.ocr(image, 7, DIGITS + chars) or self.ocr(image, 8, DIGITS + chars)
