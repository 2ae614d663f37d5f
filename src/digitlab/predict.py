"""Read digits from real images with a trained run (on the NumPy engine: PyTorch not needed).

>>> results = read_images("runs/cnn", ["a_seven.jpg"], top=3)
>>> results[0]["label"], results[0]["confidence"], results[0]["status"]   # '7', 0.99, 'ok'
"""

from __future__ import annotations

import numpy as np

from digitlab import evaluate as ev
from digitlab import ink, runs
from digitlab.train import logits_of

UNSURE_BELOW = 0.6  # default: below this top probability the answer is "unsure"


def classify(model, info: dict, digits: np.ndarray) -> np.ndarray:
    """Probabilities (N, K) for prepared uint8 digits (N, 28, 28), as the run was trained."""
    pre = info["preprocessing"]
    logits = logits_of(model, digits, pre["mean"], pre["std"])
    return ev.softmax(logits, float(info.get("temperature", 1.0)))


def read_images(
    run, sources: list, top: int = 3, unsure_below: float | None = None, deskew: bool = False
) -> list[dict]:
    """Per image: status ('ok', 'unsure', 'no digit found'), label, confidence, top-k, steps."""
    info = runs.read_info(run)
    runs.require_finished(run, info)
    model = runs.load_model(run, engine="numpy")
    threshold = float(
        info.get("unsure_below", UNSURE_BELOW) if unsure_below is None else unsure_below
    )
    classes = info["classes"]
    prepared = [ink.prepare(source, str(source), deskew) for source in sources]
    found = [d for d, _ in prepared if d is not None]
    probs = iter(classify(model, info, np.stack(found)) if found else [])
    results = []
    for source, (digit, steps) in zip(sources, prepared, strict=True):
        entry = {"image": str(source), "steps": steps, "digit": digit}
        if digit is None:
            results.append(
                entry | {"status": "no digit found", "label": None, "confidence": 0.0, "top": []}
            )
            continue
        p = next(probs)
        order = np.argsort(-p)[:top]
        best = int(order[0])
        results.append(
            entry
            | {
                "status": "ok" if p[best] >= threshold else "unsure",
                "label": classes[best],
                "confidence": float(p[best]),
                "top": [{"label": classes[i], "p": float(p[i])} for i in order],
            }
        )
    return results
