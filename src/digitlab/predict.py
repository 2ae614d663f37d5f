"""Read digits and whole numbers from real images with a trained run (NumPy engine: no PyTorch).

>>> reader = Predictor("runs/cnn")
>>> answer = reader.read("a_seven.jpg")
>>> answer["label"], answer["confidence"], answer["status"]    # '7', 0.99, 'ok'
>>> reader.read_number("postcode.jpg")["number"]                # '90210'
"""

from __future__ import annotations

import functools
import itertools
import os

import numpy as np
from PIL import Image

from digitlab import evaluate as ev
from digitlab import ink, reader, runs, sequence
from digitlab import novelty as novelty_check
from digitlab.engines import logits
from digitlab.errors import DigitlabError
from digitlab.ink import forms
from digitlab.ink.synth import OTHER
from digitlab.preprocess import check_images

UNSURE_BELOW = 0.6  # default: below this top probability the answer is "unsure"
NO_DIGIT = "no digit found"
ERROR = "error"  # an unreadable image: its answer holds the one-line reason under "error"


# a digit's ink wider than this many times its height is read as 'unsure', with a note: of
# 4,500 held-out MNIST digits (raw, photographed, degraded) 0.07% were; of two side by side, 94%
WIDE = 1.6
WIDE_NOTE = "wider than one digit: several digits? read it as a number"


def width_note(steps: dict) -> dict:
    """{'status': 'unsure', 'note': ...} for a digit whose cropped ink (ink.prepare's steps) is
    wider than one digit, else {}: merged into its answer by every path that reads one digit."""
    crop = steps.get(ink.CROPPED)
    if crop is not None and crop.shape[1] > WIDE * crop.shape[0]:
        return {"status": "unsure", "note": WIDE_NOTE}
    return {}


def novelty_note(unlike: bool) -> dict:
    """{'status': 'unsure', 'note': ...} for a digit the run's novelty check finds unlike every
    digit it learned (digitlab.novelty), else {}."""
    return {"status": "unsure", "note": novelty_check.NOTE} if unlike else {}


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


def classify(model, info: dict, digits: np.ndarray, tta: bool = False) -> np.ndarray:
    """Probabilities (N, K) for prepared uint8 digits (N, 28, 28), as the run was trained;
    `tta`: averaged over the digit and its one-pixel shifts (engines.logits)."""
    return probabilities_of(logits(model, digits, tta=tta), info)


def probabilities_of(z: np.ndarray, info: dict) -> np.ndarray:
    """The run's probabilities (N, K) from its model's logits, at its fitted temperature."""
    z = z[:, : len(info["classes"])]  # a run with outputs to spare
    probs = ev.softmax(z, float(info.get("temperature", 1.0)))
    if not np.isfinite(probs).all():  # overflowing weights: never answer "nan%"
        raise DigitlabError(
            "the model gave NaN or infinite probabilities: its weights are unusable"
        )
    return probs


def one_image(sources) -> bool:
    """Whether what was passed for a list of images is one image: a path, bytes, a PIL image,
    an open file, or an array of one image, (H, W) or (H, W, channels). Iterated, it gave a
    reading per row of pixels, or per line of the file, each answered 'no digit found'."""
    if isinstance(sources, str | bytes | bytearray | memoryview | os.PathLike | Image.Image):
        return True
    if hasattr(sources, "read"):  # an open file, io.BytesIO
        return True
    if isinstance(sources, np.ndarray):
        h = sources.shape[0] if sources.ndim else 0
        channels = sources.ndim == 3 and sources.shape[2] in (1, 2, 3, 4) and h > 4
        return sources.ndim < 3 or channels
    return False


def check_top(top) -> int:
    """`top` (how many classes each answer lists) as an int, or a DigitlabError."""
    if isinstance(top, bool) or not isinstance(top, int | np.integer) or top < 1:
        raise DigitlabError(f"top: expected a whole number of classes, 1 or more; got {top!r}")
    return int(top)


def check_name(name) -> None:
    """`name` is the image's name in the answer: a str. A run passed there (read's second
    argument is `run` in digitlab.read) named the image instead, silently."""
    if not isinstance(name, str):
        raise DigitlabError(
            f"name: expected a str, the image's name in the answer; got {type(name).__name__} "
            "(the run goes to Predictor(run))"
        )


def describe(source) -> str:
    """A name for an image in messages: its path, or what kind of object it is."""
    if isinstance(source, bytes | bytearray):
        return "image"
    if isinstance(source, np.ndarray):
        return "array"
    if isinstance(source, Image.Image):
        return f"PIL image ({source.mode} {source.width}x{source.height})"
    if not isinstance(source, str | os.PathLike):  # an open file, or something unreadable
        return str(getattr(source, "name", type(source).__name__))
    # a file name that is not UTF-8 keeps its place, with U+FFFD for the bytes it cannot show
    return os.fsencode(str(source)).decode("utf-8", "replace")


class Predictor:
    """A finished run loaded once, for reading many images (the CLI and the web server use it).

    Answers are plain dicts: `status` ('ok', 'unsure' or 'no digit found'), `label`,
    `confidence`, `top` (list of {label, p}), `digit` (the prepared uint8 28x28 the model saw,
    None when no digit was found) and `steps` (ink.prepare's named intermediate images).
    """

    def __init__(
        self,
        run=None,
        unsure_below: float | None = None,
        tta: bool = False,
        lines=None,
        novelty: bool = True,
    ) -> None:
        """`tta`: test-time augmentation, every digit read with its four one-pixel shifts too
        and their logits averaged (five times the work). `lines`: the line reader that reads
        whole numbers (a folder with lines.json, or "reader" for the built-in one); by default
        the run's own when its folder has one (the built-in reader does), else (or with False)
        numbers are cut into digits (`ink.segment`) and each is read by the run's model.
        `novelty=False`: every image is taken for a digit, even where the run has a check of
        what looks like one (digitlab.novelty)."""
        self.tta = tta
        run = reader.run_folder(run)  # None or "reader": the built-in reader
        if lines is None and sequence.LineReader.present(run):
            lines = run
        # False: cut numbers into digits even where a line reader is there
        self.lines_folder = None if lines is None or lines is False else reader.run_folder(lines)
        if self.lines_folder is not None and not sequence.LineReader.present(self.lines_folder):
            sequence.LineReader.load(self.lines_folder)  # says in one line what is missing
        self.run = "reader" if run == reader.FOLDER else str(run)
        self.info = runs.read_info(run)
        runs.require_finished(run, self.info)
        self.model = runs.load_model(run, engine="numpy")
        self.classes: list[str] = list(self.info["classes"])
        default = self.info.get("unsure_below", UNSURE_BELOW)
        self.unsure_below = float(default if unsure_below is None else unsure_below)
        if not 0 <= self.unsure_below <= 1:  # NaN fails this too
            raise DigitlabError(f"--unsure {unsure_below}: must be a probability in [0, 1]")
        # None: every image is taken for a digit
        self.novelty = novelty_check.load(run, self.info, self.model) if novelty else None

    @functools.cached_property
    def lines(self) -> sequence.LineReader | None:
        """The line reader, loaded when a number is first read (reading digits never needs it)."""
        return None if self.lines_folder is None else self.load_lines(self.lines_folder)

    def load_lines(self, folder) -> sequence.LineReader:
        return sequence.LineReader.load(folder)

    def __repr__(self) -> str:
        name = self.info["spec"].get("name") or "custom"
        return f"Predictor({self.run!r}: {name}, {len(self.classes)} classes)"

    def probabilities(self, digits: np.ndarray) -> np.ndarray:
        """(N, K) probabilities for prepared uint8 digits (N, 28, 28), MNIST style (0 =
        background); anything else is refused with a message saying what it got."""
        return classify(self.model, self.info, check_images(digits, "digits"), self.tta)

    def judged(self, digits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities (N, K), whether each digit is unlike the digits the model learned)
        for prepared uint8 digits; the second is all False for a run without a novelty check.
        Without --tta the check reads the features the probabilities come from: one pass."""
        digits = check_images(digits, "digits")
        feats = None if self.novelty is None else novelty_check.features(self.model, digits)
        if feats is None or self.tta:
            probs = classify(self.model, self.info, digits, self.tta)
        else:
            probs = probabilities_of(self.model.layers[-1].infer(feats), self.info)
        unlike = np.zeros(len(digits), bool) if feats is None else self.novelty.unlike(feats)
        return probs, unlike

    def trust(self, digits: np.ndarray) -> np.ndarray:
        """How sure the model is of each prepared digit, on a 0..1 scale where 1 is as sure as it
        ever is (a model trained with label smoothing never goes above 1 - e + e/K): the judge
        that `ink.segment` uses to choose where to cut touching digits. It reads the network's
        own probabilities, before the fitted temperature: a temperature below 1 sharpens every
        answer towards 1, and the judge could no longer tell one digit from two run together."""
        smoothing = float(self.info.get("train_config", {}).get("label_smoothing", 0.0))
        ceiling = 1 - smoothing + smoothing / len(self.classes)
        raw = ev.softmax(logits(self.model, check_images(digits, "digits")), 1.0)
        return np.minimum(raw.max(axis=1) / ceiling, 1.0)

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
        if isinstance(sources, np.ndarray) and sources.ndim == 2 and sources.shape[-1] == 784:
            raise DigitlabError(
                f"read_many: shape {sources.shape} looks like flattened 28x28 digits; pass "
                "x.reshape(-1, 28, 28)"
            )
        if one_image(sources):
            raise DigitlabError("read_many takes a list of images; read one image with read()")
        top = check_top(top)
        sources = list(sources)
        names = [describe(source) for source in sources]
        prepared = [
            prepare_or_error(s, name, deskew) for s, name in zip(sources, names, strict=True)
        ]
        found = [d for d, _ in prepared if isinstance(d, np.ndarray)]
        probs, unlike = self.judged(np.stack(found)) if found else ([], [])
        judged = iter(zip(probs, unlike, strict=True))
        results = []
        for name, (digit, steps) in zip(names, prepared, strict=True):
            entry = {"image": name, "steps": steps, "digit": digit}
            if isinstance(digit, ink.ImageError):  # this file alone fails; the batch goes on
                entry |= {"status": ERROR, "error": str(digit), "label": None, "digit": None}
                entry |= {"confidence": 0.0, "top": []}
            elif digit is None:
                entry |= {"status": NO_DIGIT, "label": None, "confidence": 0.0, "top": []}
            else:
                p, strange = next(judged)
                entry |= self.answer(p, top) | novelty_note(strange) | width_note(steps)
            results.append(Reading(entry))
        return results

    def read(self, source, name: str = "", top: int = 3, deskew: bool = False) -> dict:
        """One image of one digit; an image that cannot be read raises ink.ImageError (in a
        batch, read_many answers it with status 'error' and reads the others)."""
        check_name(name)
        result = self.read_many([source], top, deskew)[0]
        if result["status"] == ERROR:
            raise ink.ImageError(result["error"])
        if name:
            result["image"] = name
        return result

    def read_number(self, source, name: str = "", top: int = 3) -> dict:
        """An image of several digits in a row: the number, and each digit's answer, left to right.

        The number keeps the separators written between digits (`1,234.56`, `12/03/2026`, `-`);
        they are listed under `separators` with their boxes. A form's printed lines and boxes
        are removed first (a row of boxes is read box by box). `status` is 'no digit found'
        when there is no ink, 'unsure' when any digit is unsure or when `confidence` is below
        the unsure threshold. `confidence` is the chance that the whole number is right: with a
        line reader, the product of every symbol's calibrated probability, separators included
        (`sequence.reading`); cut into digits, the product of the digits' confidences (with a
        calibrated model: the chance every digit is right).
        """
        check_name(name)
        top, name = check_top(top), name or describe(source)
        if self.lines is not None:
            return self.read_row(source, name, top)
        found = ink.segment(source, name, judge=self.trust)
        numerals = [f for f in found if f.digit is not None]
        if not numerals:
            return Reading(
                {"image": name, "boxes": [], "status": NO_DIGIT, "number": None}
                | {"confidence": 0.0, "digits": [], "separators": []}
            )
        probs = iter(self.probabilities(np.stack([f.digit for f in numerals])))
        tokens = []  # [character, the digit's answer or None for a separator, Found]
        for f in found:
            answer = None
            if f.digit is not None:
                answer = self.answer(next(probs), top) | {"digit": f.digit, "box": f.box}
            tokens.append([f.char if answer is None else answer["label"], answer, f])
        text = "".join(t[0] for t in tokens)
        slashes = [i for i, (c, _, f) in enumerate(tokens) if f.slash_like and c == "1"]
        for i in forms.date_slashes(text, slashes):  # 12/03/2026, not 12103112026
            tokens[i][:2] = ["/", None]
        digits = [a for _, a, _ in tokens if a is not None]
        sure = float(np.prod([d["confidence"] for d in digits]))
        return Reading(
            {
                "image": name,
                "boxes": [d["box"] for d in digits],
                "status": self.number_status(sure, digits),
                "number": sequence.trimmed("".join(c for c, _, _ in tokens)),
                "confidence": sure,
                "digits": digits,
                "separators": [{"char": c, "box": f.box} for c, a, f in tokens if a is None],
            }
        )

    def number_status(self, sure: float, digits: list[dict], marks: list[dict] = ()) -> str:
        """'ok' when the chance that the whole number is right reaches the unsure threshold, no
        digit is unsure and no mark is one the line reader cannot read (synth.OTHER: $12 is
        ?12), else 'unsure' (a digit read ok can sit beside an unsure mark)."""
        unsure = sure < self.unsure_below or any(d["status"] == "unsure" for d in digits)
        return "unsure" if unsure or any(m["char"] == OTHER for m in marks) else "ok"

    def read_row(self, source, name: str, top: int = 3) -> dict:
        """`read_number` with the line reader: the row read whole (no cutting into digits); each
        symbol's box holds the strokes mostly between the midpoints to its neighbours."""
        row = ink.row_ink(source, name)
        empty = {"image": name, "boxes": [], "status": NO_DIGIT, "number": None}
        empty |= {"confidence": 0.0, "digits": [], "separators": []}
        if row is None:
            return Reading(empty)
        image, place = row.line()
        chars = self.lines.read(image, top=max(top, sequence.ALTERNATIVES))
        _, sure, fixed = sequence.reading(chars)  # 12/03/2026, not 12103112026; 1,234.56 ...
        centres = [(c.span[0] + c.span[1]) / 2 for c in chars]
        edges = [0.0, *((a + b) / 2 for a, b in itertools.pairwise(centres)), image.shape[1]]
        digits, marks = [], []
        for i, c in enumerate(chars):
            x0, x1 = place.columns(edges[i], edges[i + 1])
            keep, lo = row.symbol(max(0, round(x0)), max(0, round(x1)))
            rows, cols = np.flatnonzero(keep.any(axis=1)), np.flatnonzero(keep.any(axis=0))
            if cols.size == 0:
                continue
            box = row.back(lo + cols[0], rows[0], lo + cols[-1] + 1, rows[-1] + 1)
            label = fixed.get(i, c.char)
            if label.isdigit():  # read as a digit, or a slash where the string is no date
                # the alternatives' shares among symbols, scaled so that the first is the
                # digit's calibrated confidence (which also counts the chance of no symbol)
                sure_of = sequence.chance(c, fixed.get(i))
                scale = sure_of / max(dict(c.top).get(label, 0.0), 1e-12)
                alternatives = [(a, p * scale) for a, p in c.top if a.isdigit() and a != label]
                alternatives = [(label, sure_of), *alternatives][:top]
                answer = {
                    "status": "ok" if sure_of >= self.unsure_below else "unsure",
                    "label": label,
                    "confidence": sure_of,
                    "top": [{"label": a, "p": p} for a, p in alternatives],
                    "digit": ink.to_mnist(ink.crop_digit(row.ink[:, lo:], keep, 2)),
                    "box": box,
                }
                digits.append((i, answer))
            else:
                chance = sequence.chance(c, fixed.get(i))  # counted in the number's confidence
                marks.append((i, {"char": label, "box": box, "confidence": chance}))
        if not digits:
            return Reading(empty)
        order = sorted([(i, d["label"]) for i, d in digits] + [(i, m["char"]) for i, m in marks])
        return Reading(
            {
                "image": name,
                "boxes": [d["box"] for _, d in digits],
                "status": self.number_status(sure, [d for _, d in digits], [m for _, m in marks]),
                "number": sequence.trimmed("".join(ch for _, ch in order)),
                "confidence": sure,
                "digits": [d for _, d in digits],
                "separators": [m for _, m in marks],
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
