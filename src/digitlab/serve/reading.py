"""A request body to an answer: decode it, prepare the digits, run the model, time each step.

    >>> answer = read_digit(reader, max_pixels, "image/png", png_bytes, top=3)  # a dict for JSON
    >>> answer = read_number(reader, max_pixels, "application/json", body, top=3)

These run in worker threads (the routes hand them over), so they may take their time; the model
itself runs in one thread at a time (Reader). Whatever the input, the answer holds only finite
numbers: a model answering NaN or infinity raises ModelFailure (a 500) instead.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from digitlab import ink
from digitlab.errors import DigitlabError
from digitlab.predict import NO_DIGIT, Predictor, novelty_note, width_note
from digitlab.serve.errors import BadRequest, ModelFailure
from digitlab.serve.inputs import BLANK_BELOW, Picture, Pixels, open_image, parse_json

NOT_NUMBERS = "the model's probabilities are NaN or infinite (its weights overflow)"


class Reader(Predictor):
    """A Predictor whose model runs in one thread at a time, timing each call per thread, and
    whose answers are always finite probabilities (checked once at start, then on every call).

    The NumPy layers keep their last input and output on themselves (for backward), so two
    forward passes at once would mix their answers; one 28x28 digit takes well under a
    millisecond, so a lock costs little. Images are decoded and prepared outside the lock.
    """

    def __init__(self, run, unsure_below: float | None = None) -> None:
        super().__init__(run, unsure_below)
        self._lock = threading.Lock()
        self._clock = threading.local()
        blank, full = np.zeros((28, 28), np.uint8), np.full((28, 28), 255, np.uint8)
        try:  # a model that fails on a blank page or a full one fails on most inputs
            self.probabilities(np.stack([blank, full]))
        except ModelFailure as e:
            raise DigitlabError(f"{run}/model.safetensors: {e}; it cannot be served") from None
        _ = self.lines  # loaded at start, like the model: a damaged one fails here

    def load_lines(self, folder):
        """The line reader is the model for numbers: timed alike."""
        return TimedLines(super().load_lines(folder), self._clock)

    def probabilities(self, digits: np.ndarray) -> np.ndarray:
        return self.in_model(super().probabilities, digits)

    def judged(self, digits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.in_model(super().judged, digits)

    def in_model(self, call, digits: np.ndarray):
        """`call(digits)` under the lock, its time on this thread's clock; a model that fails
        (or answers NaN) raises ModelFailure."""
        with self._lock:
            started = time.perf_counter()
            try:
                with np.errstate(over="ignore", invalid="ignore"):  # checked below, once
                    out = call(digits)
            except DigitlabError as e:  # the digits are checked already: the model failed
                raise ModelFailure(str(e)) from None
            self._clock.seconds = getattr(self._clock, "seconds", 0.0) + (
                time.perf_counter() - started
            )
        p = out[0] if isinstance(out, tuple) else out
        if not np.isfinite(p).all():
            raise ModelFailure(NOT_NUMBERS)
        return out

    def model_seconds(self) -> float:
        """Seconds this thread spent in the model since the last call, and reset."""
        seconds, self._clock.seconds = getattr(self._clock, "seconds", 0.0), 0.0
        return seconds


class TimedLines:
    """A line reader whose reading time counts as the model's (it holds no state between
    calls, so threads need no lock)."""

    def __init__(self, lines, clock: threading.local) -> None:
        self.lines, self._clock = lines, clock

    def read(self, strip: np.ndarray, top: int = 3):
        started = time.perf_counter()
        chars = self.lines.read(strip, top)
        spent = time.perf_counter() - started
        self._clock.seconds = getattr(self._clock, "seconds", 0.0) + spent
        return chars


def decode(kind: str, body: bytes, shape: tuple[int, int] | None, max_pixels: int):
    """The body as Pixels (JSON pixels) or a Picture (an image, its header checked only)."""
    parsed = parse_json(body, shape) if kind == "application/json" else body
    return open_image(parsed, max_pixels) if isinstance(parsed, bytes) else parsed


def read_digit(reader: Reader, max_pixels: int, kind: str, body: bytes, top: int) -> dict:
    """What POST /api/predict answers: one digit, as schemas.DigitAnswer describes it."""
    started = time.perf_counter()
    reader.model_seconds()
    given = decode(kind, body, (28, 28), max_pixels)
    digit, steps = (mnist_style(given), {}) if isinstance(given, Pixels) else prepare(given)
    if digit is None:
        answer = {"status": NO_DIGIT, "label": None, "confidence": 0.0, "top": []}
        answer |= {"probabilities": [], "input": None}
    else:
        p, unlike = reader.judged(digit[None])
        answer = reader.answer(p[0], top) | novelty_note(unlike[0]) | width_note(steps)
        answer["probabilities"] = p[0].tolist()
        answer["input"] = digit.tolist()
    return answer | {"source": source_of(given), "timing": timing(started, reader)}


def read_number(reader: Reader, max_pixels: int, kind: str, body: bytes, top: int) -> dict:
    """What POST /api/predict/number answers: the digits in a row, left to right."""
    started = time.perf_counter()
    reader.model_seconds()
    given = decode(kind, body, None, max_pixels)
    source = given.array if isinstance(given, Pixels) else given.image
    try:
        result = reader.read_number(source, "image", top)
    except ink.ImageError as e:
        raise BadRequest(422, str(e)) from None
    digits = [
        {k: d[k] for k in ("status", "label", "confidence", "top")}
        | {"box": [int(v) for v in d["box"]], "input": d["digit"].tolist()}
        for d in result["digits"]
    ]
    return {
        "status": result["status"],
        "number": result["number"],
        "confidence": float(result["confidence"]),
        "digits": digits,
        "separators": [
            {"char": m["char"], "box": [int(v) for v in m["box"]]} for m in result["separators"]
        ],
        "boxes": [[int(v) for v in box] for box in result["boxes"]],
        "source": source_of(given),
        "timing": timing(started, reader),
    }


def mnist_style(given: Pixels) -> np.ndarray | None:
    """A 28x28 array sent as is, None when nothing is drawn; dark ink on light paper refused."""
    digit = given.array
    if digit.max() < BLANK_BELOW:
        return None
    if np.median(digit) >= 128:
        raise BadRequest(
            422,
            "pixels: this looks like dark ink on light paper (median "
            f"{np.median(digit):g}); send light ink on black, or send it as an image",
        )
    return digit


def prepare(given: Picture) -> tuple[np.ndarray | None, dict]:
    """An uploaded image as MNIST's uint8 (28, 28) and the steps that made it, as `digitlab
    predict` prepares a photo."""
    try:
        return ink.prepare(given.image, "image")
    except ink.ImageError as e:
        raise BadRequest(422, str(e)) from None


def source_of(given: Pixels | Picture) -> str:
    return "pixels" if isinstance(given, Pixels) else "image"


def timing(started: float, reader: Reader) -> dict:
    work_ms = (time.perf_counter() - started) * 1000
    model_ms = reader.model_seconds() * 1000
    return {"prepare_ms": round(work_ms - model_ms, 3), "model_ms": round(model_ms, 3)}
