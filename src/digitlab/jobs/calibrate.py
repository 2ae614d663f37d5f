"""Calibration fitted after training on the images a run held out, never on the test set.

>>> info |= calibrate.fitted(model, val_images, val_labels, augment="real")
>>> info["temperature"], info["unsure_below"], info["calibration"]["paper"]["risk_coverage"]

- `temperature`: makes confidence mean what it says ("90% sure" right 9 times in 10), fitted on
  the validation images' logits (`evaluate.fit_temperature`).
- `unsure_below`: the lowest top probability at which the answers given are still 99.5% right
  (`evaluate.risk_coverage`); below it an answer is "unsure".

A run trained for the world outside MNIST (augmentation "real", the built-in reader's recipe)
is asked to read photos, so its threshold is fitted on its held-out digits as photos show them
(`on_paper`): a third read as they are, a third written on paper and photographed, a third with
a phone's or scanner's faults (`ink.paper`), each prepared as `digitlab predict` prepares an
image. On MNIST's own held-out digits almost every answer is right, so the threshold answered
them all, and a photo of a 2 touching a 7 read "3, 48%, ok".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from digitlab import evaluate as ev
from digitlab import novelty
from digitlab.engines import logits

TARGET = 0.995  # answered images at least this accurate
# fewer held-out images fit nothing: with 10, one image set the threshold, and "99.5% right"
# meant nothing (a run then reads with temperature 1 and the default threshold, and says so)
MIN_IMAGES = 100
PAPER_DIGITS = 3000  # held-out digits on paper that fit the reader's threshold (at most)


def fitted(
    model,
    images: np.ndarray,
    labels: np.ndarray,
    augment: str = "none",
    train_images: np.ndarray | None = None,
    run: Path | None = None,
) -> dict:
    """model.json's calibration fields for a model and its validation images and labels. A run
    trained for photos (augment "real") given its training images and folder also gets its
    check of "is it a digit at all" (digitlab.novelty), written there as novelty.safetensors."""
    info = calibration_of(logits(model, images), labels)
    if augment != "real" or "temperature" not in info:
        return info
    return on_paper(model, images, labels, info, train_images=train_images, run=run)


def on_test(model, test, temperature: float) -> dict:
    """model.json's `test` record: the test split's accuracy and loss as the model will be read,
    the loss of its probabilities at the fitted temperature (as `digitlab evaluate` reports it
    in metrics.json); nulls when the split has no labels."""
    if test.labels is None or not len(test):
        return {"loss": None, "acc": None}
    z = logits(model, test.images)
    loss = ev.log_loss(ev.softmax(z, temperature), test.labels)
    return {"loss": loss, "acc": float((z.argmax(axis=1) == test.labels).mean())}


def augment_of(info: dict) -> str:
    """The augmentation a run (model.json) trained with; an ensemble's, its members' when they
    share one ("mixed" when not)."""
    configs = [m.get("train_config") or {} for m in info.get("members", [])] or [
        info.get("train_config") or {}
    ]
    augments = {config.get("augment", "none") for config in configs}
    return augments.pop() if len(augments) == 1 else "mixed"


def calibration_of(z: np.ndarray, labels: np.ndarray) -> dict:
    """The calibration fields from validation logits and labels (the threshold on them); with
    fewer than MIN_IMAGES, only a record of why nothing was fitted."""
    if len(labels) < MIN_IMAGES:
        return {
            "calibration": {
                "split": "validation",
                "images": len(labels),
                "skipped": f"{len(labels)} held-out images, too few to fit a temperature and "
                f"an unsure threshold (at least {MIN_IMAGES})",
            }
        }
    temperature = ev.fit_temperature(z, labels)
    curve = ev.risk_coverage(ev.softmax(z, temperature), labels, TARGET)
    return {
        "temperature": temperature,
        "unsure_below": curve["threshold"],
        "calibration": {"split": "validation", "images": len(labels), "risk_coverage": curve},
    }


def paper_digits(
    images: np.ndarray, labels: np.ndarray, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prepared digits, their labels, which of the chosen held-out digits had ink found):
    up to PAPER_DIGITS held-out digits, a third as they are, a third photographed, a third with
    random faults, each prepared by ink.prepare as `digitlab predict` prepares a photo."""
    from digitlab import ink  # SciPy and Pillow: imported when a run trained for photos ends
    from digitlab.ink import paper

    rng = np.random.default_rng(seed)
    thirds = np.array_split(rng.permutation(len(labels))[:PAPER_DIGITS], 3)
    sources = [images[i] for i in thirds[0]]
    for i in thirds[1]:
        side = int(rng.integers(200, 801))
        sources.append(paper.photograph(255 - images[i], (side, side), rng))
    sources += [paper.degrade_digit(images[i], paper.random_faults(rng), rng) for i in thirds[2]]
    truth = labels[np.concatenate(thirds)]
    digits = [ink.prepare(source, "held-out digit")[0] for source in sources]
    found = np.array([digit is not None for digit in digits])
    return np.stack([d for d in digits if d is not None]), truth[found], found


def on_paper(
    model,
    images: np.ndarray,
    labels: np.ndarray,
    info: dict,
    seed: int = 0,
    train_images: np.ndarray | None = None,
    run: Path | None = None,
) -> dict:
    """`info` with its unsure threshold fitted again on up to PAPER_DIGITS of the held-out
    digits as photos show them (the temperature stays the one fitted on the images as they
    are). A digit in which no ink is found counts as not answered. With `train_images` and
    `run`: the novelty check too (`with_novelty`)."""
    digits, truth, found = paper_digits(images, labels, seed)
    probs = ev.softmax(logits(model, digits), info["temperature"])
    curve = ev.risk_coverage(probs, truth, TARGET)
    curve["coverage"] *= float(found.mean())
    record = {
        "images": len(found),
        "seed": seed,
        "how": "a third as they are, a third photographed, a third with random faults "
        "(ink.paper), each prepared by ink.prepare",
        "accuracy": float((probs.argmax(axis=1) == truth).sum() / len(found)),
        "risk_coverage": curve,
    }
    info = info | {
        "unsure_below": curve["threshold"],
        "calibration": info["calibration"] | {"paper": record},
    }
    if train_images is None or run is None:
        return info
    return with_novelty(info, model, train_images, digits, probs, run)


def with_novelty(info: dict, model, train_images, digits, probs, run: Path) -> dict:
    """`info` with the novelty check fitted on the training images, its threshold from the
    held-out `digits` the run answers "ok" (`probs` at the fitted temperature), written into
    `run` (model.json's `novelty` records it and its digest); `info` unchanged when the model
    has no last Dense layer to read features under."""
    answered = probs.max(axis=1) >= info["unsure_below"]
    done = novelty.fit(model, train_images, digits, answered)
    if done is None:
        return info
    check, record = done
    return info | {"novelty": record | {"sha256": novelty.save(run, check)}}
