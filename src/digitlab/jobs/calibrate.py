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

import numpy as np

from digitlab import evaluate as ev
from digitlab.engines import logits

TARGET = 0.995  # answered images at least this accurate
# fewer held-out images fit nothing: with 10, one image set the threshold, and "99.5% right"
# meant nothing (a run then reads with temperature 1 and the default threshold, and says so)
MIN_IMAGES = 100
PAPER_DIGITS = 3000  # held-out digits on paper that fit the reader's threshold (at most)


def fitted(model, images: np.ndarray, labels: np.ndarray, augment: str = "none") -> dict:
    """model.json's calibration fields for a model and its validation images and labels."""
    info = calibration_of(logits(model, images), labels)
    fit = augment == "real" and "temperature" in info
    return on_paper(model, images, labels, info) if fit else info


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


def on_paper(model, images: np.ndarray, labels: np.ndarray, info: dict, seed: int = 0) -> dict:
    """`info` with its unsure threshold fitted again on up to PAPER_DIGITS of the held-out
    digits as photos show them (the temperature stays the one fitted on the images as they
    are). A digit in which no ink is found counts as not answered."""
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
    probs = ev.softmax(
        logits(model, np.stack([d for d in digits if d is not None])), info["temperature"]
    )
    curve = ev.risk_coverage(probs, truth[found], TARGET)
    curve["coverage"] *= float(found.mean())
    record = {
        "images": len(truth),
        "seed": seed,
        "how": "a third as they are, a third photographed, a third with random faults "
        "(ink.paper), each prepared by ink.prepare",
        "accuracy": float((probs.argmax(axis=1) == truth[found]).sum() / len(truth)),
        "risk_coverage": curve,
    }
    return info | {
        "unsure_below": curve["threshold"],
        "calibration": info["calibration"] | {"paper": record},
    }
