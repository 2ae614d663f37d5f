"""Read digits and whole numbers from real images with a trained run (NumPy engine: no PyTorch).

>>> reader = Predictor("runs/cnn")
>>> answer = reader.read("a_seven.jpg")
>>> answer["label"], answer["confidence"], answer["status"]    # '7', 0.99, 'ok'
>>> reader.read_number("postcode.jpg")["number"]                # '90210'
"""

from __future__ import annotations

import os

import numpy as np

from digitlab import evaluate as ev
from digitlab import ink, reader, runs
from digitlab.engines import logits
from digitlab.errors import DigitlabError
from digitlab.preprocess import check_images

UNSURE_BELOW = 0.6  # default: below this top probability the answer is "unsure"
NO_DIGIT = "no digit found"
ERROR = "error"  # an unreadable image: its answer holds the one-line reason under "error"


def prepare_or_error(source, name: str, deskew: bool):
    """ink.prepare's (digit, steps), or (the ImageError, {}) for an image that cannot be read."""
    try:
        return ink.prepare(source, name, deskew)
    except ink.ImageError as e:
        return e, {}


class Reading(dict):
    """One answer (a plain dict: status, label, confidence, top, ...) whose repr leaves out the
    images it carries, so a notebook shows `Reading('7', 99.1%, ok)`, not 200 lines of arrays."""

    def __repr__(self) -> str:
        what = self["number"] if "number" in self else self.get("label")
        confidence = self.get("confidence") or 0.0
        status, image = self.get("status"), self.get("image")
        return f"Reading({what!r}, {confidence:.1%}, {status}, image={image!r})"


def classify(model, info: dict, digits: np.ndarray) -> np.ndarray:
    """Probabilities (N, K) for prepared uint8 digits (N, 28, 28), as the run was trained."""
    probs = ev.softmax(logits(model, digits), float(info.get("temperature", 1.0)))
    if not np.isfinite(probs).all():  # overflowing weights: never answer "nan%"
        raise DigitlabError(
            "the model gave NaN or infinite probabilities: its weights are unusable"
        )
    return probs


def describe(source) -> str:
    """A name for an image in messages: its path, or what kind of object it is."""
    if isinstance(source, bytes | bytearray):
        return "image"
    if isinstance(source, np.ndarray):
        return "array"
    # a file name that is not UTF-8 keeps its place, with U+FFFD for the bytes it cannot show
    return os.fsencode(str(source)).decode("utf-8", "replace")


class Predictor:
    """A finished run loaded once, for reading many images (the CLI and the web server use it).

    Answers are plain dicts: `status` ('ok', 'unsure' or 'no digit found'), `label`,
    `confidence`, `top` (list of {label, p}), `digit` (the prepared uint8 28x28 the model saw,
    None when no digit was found) and `steps` (ink.prepare's named intermediate images).
    """

    def __init__(self, run=None, unsure_below: float | None = None) -> None:
        run = reader.run_folder(run)  # None or "reader": the built-in reader
        self.run = "reader" if run == reader.FOLDER else str(run)
        self.info = runs.read_info(run)
        runs.require_finished(run, self.info)
        self.model = runs.load_model(run, engine="numpy")
        self.classes: list[str] = list(self.info["classes"])
        default = self.info.get("unsure_below", UNSURE_BELOW)
        self.unsure_below = float(default if unsure_below is None else unsure_below)
        if not 0 <= self.unsure_below <= 1:  # NaN fails this too
            raise DigitlabError(f"--unsure {unsure_below}: must be a probability in [0, 1]")

    def __repr__(self) -> str:
        name = self.info["spec"].get("name") or "custom"
        return f"Predictor({self.run!r}: {name}, {len(self.classes)} classes)"

    def probabilities(self, digits: np.ndarray) -> np.ndarray:
        """(N, K) probabilities for prepared uint8 digits (N, 28, 28), MNIST style (0 =
        background); anything else is refused with a message saying what it got."""
        return classify(self.model, self.info, check_images(digits, "digits"))

    def trust(self, digits: np.ndarray) -> np.ndarray:
        """How sure the model is of each prepared digit, on a 0..1 scale where 1 is as sure as it
        ever is (a model trained with label smoothing never goes above 1 - e + e/K): the judge
        that `ink.segment` uses to choose where to cut touching digits."""
        smoothing = float(self.info.get("train_config", {}).get("label_smoothing", 0.0))
        ceiling = 1 - smoothing + smoothing / len(self.classes)
        return np.minimum(self.probabilities(digits).max(axis=1) / ceiling, 1.0)

    def answer(self, p: np.ndarray, top: int = 3) -> dict:
        """One probability vector as status, label, confidence and the top-k classes."""
        order = np.argsort(-p)[: max(1, top)]
        best = int(order[0])
        return {
            "status": "ok" if p[best] >= self.unsure_below else "unsure",
            "label": self.classes[best],
            "confidence": float(p[best]),
            "top": [{"label": self.classes[i], "p": float(p[i])} for i in order],
        }

    def read_many(self, sources: list, top: int = 3, deskew: bool = False) -> list[dict]:
        """Each image read as one digit; the prepared digits go through the model as one batch.
        An unreadable image gets status 'error' and its reason; the others are still read."""
        names = [describe(source) for source in sources]
        prepared = [
            prepare_or_error(s, name, deskew) for s, name in zip(sources, names, strict=True)
        ]
        found = [d for d, _ in prepared if isinstance(d, np.ndarray)]
        probs = iter(self.probabilities(np.stack(found)) if found else [])
        results = []
        for name, (digit, steps) in zip(names, prepared, strict=True):
            entry = {"image": name, "steps": steps, "digit": digit}
            if isinstance(digit, ink.ImageError):  # this file alone fails; the batch goes on
                entry |= {"status": ERROR, "error": str(digit), "label": None, "digit": None}
                entry |= {"confidence": 0.0, "top": []}
            elif digit is None:
                entry |= {"status": NO_DIGIT, "label": None, "confidence": 0.0, "top": []}
            else:
                entry |= self.answer(next(probs), top)
            results.append(Reading(entry))
        return results

    def read(self, source, name: str = "", top: int = 3, deskew: bool = False) -> dict:
        """One image of one digit."""
        result = self.read_many([source], top, deskew)[0]
        if name:
            result["image"] = name
        return result

    def read_number(self, source, name: str = "", top: int = 3) -> dict:
        """An image of several digits in a row: the number, and each digit's answer, left to right.

        `status` is 'no digit found' when there is no ink, 'unsure' when any digit is unsure.
        `confidence` is the product of the digits' confidences (the chance all are right).
        """
        name = name or describe(source)
        found = ink.segment(source, name, judge=self.trust)
        result: dict = {"image": name, "boxes": [d.box for d in found]}
        if not found:
            return Reading(
                result | {"status": NO_DIGIT, "number": None, "confidence": 0.0, "digits": []}
            )
        digits = [
            self.answer(p, top) | {"digit": d.digit, "box": d.box}
            for d, p in zip(
                found, self.probabilities(np.stack([d.digit for d in found])), strict=True
            )
        ]
        unsure = any(d["status"] == "unsure" for d in digits)
        return Reading(
            result
            | {
                "status": "unsure" if unsure else "ok",
                "number": "".join(d["label"] for d in digits),
                "confidence": float(np.prod([d["confidence"] for d in digits])),
                "digits": digits,
            }
        )


def read_images(
    run, sources: list, top: int = 3, unsure_below: float | None = None, deskew: bool = False
) -> list[dict]:
    """Per image: status ('ok', 'unsure', 'no digit found'), label, confidence, top-k, steps."""
    return Predictor(run, unsure_below).read_many(sources, top, deskew)


def read(image, run=None, top: int = 3, number: bool = False) -> Reading:
    """Read one image (a path, bytes, or a uint8 array): one digit, or with `number` a row of
    digits; with a finished run, or without one the built-in reader. Load a Predictor once
    instead to read many images."""
    reader = Predictor(run)
    return reader.read_number(image, top=top) if number else reader.read(image, top=top)
