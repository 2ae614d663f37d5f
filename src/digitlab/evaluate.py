"""How good a model is, in numbers: accuracy, loss, per-class metrics, confusion, calibration,
mistakes, and statistics for comparing models. Computes only; plots.py draws.

    >>> m = metrics(probs, labels, classes)         # probs (N, K) float, labels (N,) int
    >>> m["accuracy"], m["top3_accuracy"], m["ece"], m["per_class"][3]["f1"]
    >>> t = fit_temperature(val_logits, val_labels)  # calibrate on the validation split
    >>> mcnemar(correct_a, correct_b)["p_value"]     # do two models differ on the same test set?
"""

from __future__ import annotations

import math
import statistics

import numpy as np

from digitlab.errors import DigitlabError


def paired(scores, labels, what: str = "probs") -> tuple[np.ndarray, np.ndarray]:
    """`scores` (N, K) and integer `labels` (N,) in 0..K-1, or a DigitlabError saying which is
    wrong: a label vector of another length broadcast, and a label past the classes was folded
    into the next row of the confusion matrix, without a word."""
    s, y = np.asarray(scores, np.float64), np.asarray(labels)
    if s.ndim != 2 or not s.shape[1]:
        raise DigitlabError(f"{what}: expected shape (N, classes), got {s.shape}")
    if y.shape != (len(s),):
        raise DigitlabError(f"labels: expected shape ({len(s)},) for {len(s)} rows, got {y.shape}")
    if y.dtype.kind not in "iu":
        raise DigitlabError(f"labels: expected integer class ids, got {y.dtype}")
    if len(y) and (y.min() < 0 or y.max() >= s.shape[1]):
        raise DigitlabError(f"labels: {y.min()}..{y.max()} outside the {s.shape[1]} classes")
    if not np.isfinite(s).all():
        raise DigitlabError(f"{what}: NaN or infinite values")
    return s, y.astype(np.int64)


def probabilities(probs, labels) -> tuple[np.ndarray, np.ndarray]:
    """`paired`, and rows that are probabilities: logits passed for probabilities gave a loss
    and an expected calibration error (3.08) that mean nothing."""
    p, y = paired(probs, labels)
    if p.size and (p.min() < 0 or p.max() > 1 or np.abs(p.sum(axis=1) - 1).max() > 1e-3):
        raise DigitlabError(
            "probs: rows are not probabilities (each in 0..1, summing to 1); logits? pass "
            "softmax(logits)"
        )
    return p, y


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of logits / temperature, computed stably."""
    if not 0 < temperature < math.inf:  # 0 gave NaN; -1 the classes upside down
        raise DigitlabError(f"softmax: temperature must be above 0, got {temperature}")
    z = np.asarray(logits, np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def log_loss(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy of rows of probabilities against integer labels (clipped at 1e-12);
    a DigitlabError for logits, labels of another length or labels that are no class ids."""
    p, y = probabilities(probs, labels)
    return float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1)).mean())


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, k: int) -> np.ndarray:
    """(k, k) int64 counts: row = true class, column = predicted class."""
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    if predicted.ndim == 2 and predicted.shape[0] == len(labels):
        raise DigitlabError("confusion matrix: got probabilities; pass their argmax(1)")
    if labels.ndim != 1 or labels.shape != predicted.shape:
        raise DigitlabError(
            f"confusion matrix: labels {labels.shape} and predicted classes {predicted.shape} "
            "differ in shape"
        )
    labels, predicted = labels.astype(np.int64), predicted.astype(np.int64)
    for what, values in (("label", labels), ("predicted class", predicted)):
        bad = values[(values < 0) | (values >= k)]  # folded into another row, without a word
        if bad.size:
            raise DigitlabError(f"confusion matrix: {what} {bad[0]} is outside the {k} classes")
    flat = labels * k + predicted
    return np.bincount(flat, minlength=k * k).reshape(k, k)


def per_class_scores(confusion: np.ndarray) -> tuple[np.ndarray, ...]:
    """Precision, recall, F1 and support per class from a confusion matrix (0 where undefined,
    as scikit-learn's zero_division=0)."""
    tp = np.diag(confusion).astype(np.float64)
    predicted, support = confusion.sum(axis=0), confusion.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        both = precision + recall
        f1 = np.where(both > 0, 2 * precision * recall / both, 0.0)
    return precision, recall, f1, support


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> dict:
    """Confidence vs accuracy in equal-width confidence bins, and the expected calibration error."""
    probs, labels = probabilities(probs, labels)
    return reliability_of(probs.max(axis=1), probs.argmax(axis=1) == labels, bins)


def reliability_of(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> dict:
    """`reliability` of any answers: each one's confidence, and whether it was right (a whole
    number read, say, whose confidence is that every digit is right)."""
    confidence, correct = np.asarray(confidence, np.float64), np.asarray(correct, bool)
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 1:
        raise DigitlabError(f"reliability: bins must be a whole number, 1 or more; got {bins!r}")
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        mask = which == b
        n = int(mask.sum())
        acc = float(correct[mask].mean()) if n else None
        conf = float(confidence[mask].mean()) if n else None
        if n:
            ece += n / len(correct) * abs(acc - conf)
        rows.append(
            {
                "low": float(edges[b]),
                "high": float(edges[b + 1]),
                "count": n,
                "accuracy": acc,
                "confidence": conf,
            }
        )
    return {"bins": rows, "ece": ece}


def metrics(probs: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict:
    """Everything `digitlab evaluate` reports, as JSON-ready values."""
    probs, labels = probabilities(probs, labels)
    k = len(classes)
    if probs.shape[1] < k:  # a model may have outputs to spare (10 for a 3-class folder)
        raise DigitlabError(f"probs: {probs.shape[1]} columns for {k} classes")
    predicted = probs.argmax(axis=1)
    ranked = np.argsort(-probs, axis=1)
    loss = log_loss(probs, labels)
    confusion = confusion_matrix(labels, predicted, k)
    precision, recall, f1, support = per_class_scores(confusion)
    row_sums = confusion.sum(axis=1, keepdims=True)
    calibration = reliability_of(probs.max(axis=1), predicted == labels)  # checked above
    return {
        "n": len(labels),
        "accuracy": float((predicted == labels).mean()),
        "loss": loss,
        "top2_accuracy": float((ranked[:, :2] == labels[:, None]).any(axis=1).mean()),
        "top3_accuracy": float((ranked[:, :3] == labels[:, None]).any(axis=1).mean()),
        "errors": int((predicted != labels).sum()),
        "per_class": [
            {
                "class": classes[i],
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i in range(k)
        ],
        "macro_f1": float(f1.mean()),
        "confusion": confusion.tolist(),
        "confusion_normalised": np.divide(confusion, np.maximum(row_sums, 1)).round(6).tolist(),
        "ece": calibration["ece"],
        "reliability": calibration["bins"],
    }


def confident_mistakes(probs: np.ndarray, labels: np.ndarray, limit: int = 32) -> list[dict]:
    """The misclassified images, most confident first: index, true, predicted, confidence."""
    predicted = probs.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    order = wrong[np.argsort(-probs[wrong, predicted[wrong]], kind="stable")][:limit]
    return [
        {
            "index": int(i),
            "true": int(labels[i]),
            "predicted": int(predicted[i]),
            "confidence": float(probs[i, predicted[i]]),
        }
        for i in order
    ]


def confusable_pairs(confusion: np.ndarray, limit: int = 5) -> list[dict]:
    """Class pairs confused most often, in either direction (a↔b counts a→b plus b→a)."""
    c = np.asarray(confusion)
    pairs = []
    for a in range(len(c)):
        for b in range(a + 1, len(c)):
            if c[a, b] + c[b, a]:
                pairs.append(
                    {
                        "a": a,
                        "b": b,
                        "a_as_b": int(c[a, b]),
                        "b_as_a": int(c[b, a]),
                        "total": int(c[a, b] + c[b, a]),
                    }
                )
    return sorted(pairs, key=lambda p: -p["total"])[:limit]


def risk_coverage(probs: np.ndarray, labels: np.ndarray, target: float = 0.995) -> dict:
    """The confidence threshold that answers as many images as possible while those answered
    are at least `target` accurate (the rest are "unsure"), and the share it answers."""
    probs, labels = probabilities(probs, labels)
    confidence = probs.max(axis=1)
    order = np.argsort(-confidence, kind="stable")
    right = (probs.argmax(axis=1) == labels)[order]
    accuracy = np.cumsum(right) / np.arange(1, len(right) + 1)  # of the k most confident
    ok = np.flatnonzero(accuracy >= target)
    if len(ok) == 0:
        return {"target": target, "threshold": 1.0, "coverage": 0.0}
    k = int(ok[-1]) + 1
    return {
        "target": target,
        "threshold": float(confidence[order][k - 1]),
        "coverage": k / len(right),
    }


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T > 0 minimising the NLL of softmax(logits / T): golden-section search
    on log T (the NLL is unimodal in T)."""
    logits, labels = paired(logits, labels, "logits")
    if logits.size and logits.min() >= 0 and np.abs(logits.sum(axis=1) - 1).max() < 1e-6:
        raise DigitlabError("logits: these rows are probabilities; fit the temperature on logits")
    rows = np.arange(len(labels))

    def nll(log_t: float) -> float:
        return float(
            -np.log(np.clip(softmax(logits, math.exp(log_t))[rows, labels], 1e-300, 1)).mean()
        )

    lo, hi = math.log(0.05), math.log(20.0)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = nll(a), nll(b)
    for _ in range(60):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = nll(b)
    return math.exp((lo + hi) / 2)


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> dict:
    """McNemar's exact test on paired outcomes: does model A err on different images than B
    more than chance allows? b = A right and B wrong, c = A wrong and B right."""
    a, b_ = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    for given in (correct_a, correct_b):  # predicted labels: every nonzero read as 'right'
        values = np.asarray(given)
        if values.dtype != bool and values.size and not np.isin(values, (0, 1)).all():
            raise DigitlabError(
                "mcnemar: expects whether each image was right (booleans), got other values; "
                "pass predicted == labels"
            )
    if a.ndim != 1 or a.shape != b_.shape:
        raise DigitlabError(f"mcnemar: paired outcomes of one test set, got {a.shape}, {b_.shape}")
    b = int((a & ~b_).sum())
    c = int((~a & b_).sum())
    n = b + c
    if n == 0:
        return {"b": b, "c": c, "p_value": 1.0}
    k = min(b, c)
    # two-sided exact binomial test with p = 1/2 (summed in log space for large n)
    log_terms = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2)
        for i in range(k + 1)
    ]
    top = max(log_terms)
    tail = math.exp(top) * sum(math.exp(t - top) for t in log_terms)
    return {"b": b, "c": c, "p_value": min(1.0, 2 * tail)}


def mean_std(values: list[float]) -> dict:
    """Mean and sample standard deviation (0 for a single value)."""
    if not len(values):
        raise DigitlabError("mean_std: no values")
    return {
        "mean": statistics.mean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
    }
