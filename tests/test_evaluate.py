"""Metrics against scikit-learn and hand-computed cases; McNemar against known tables."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    precision_score,
    top_k_accuracy_score,
)

from digitlab import evaluate as ev

CLASSES = ["a", "b", "c"]


def test_hand_computed_small_case():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.5, 0.4, 0.1], [0.2, 0.3, 0.5]])
    labels = np.array([0, 1, 1, 0])
    m = ev.metrics(probs, labels, CLASSES)
    assert m["accuracy"] == 0.5 and m["errors"] == 2
    assert m["top2_accuracy"] == 0.75  # the last image's true class is ranked third
    assert m["top3_accuracy"] == 1.0
    assert m["loss"] == pytest.approx(
        -(math.log(0.7) + math.log(0.6) + math.log(0.4) + math.log(0.2)) / 4
    )
    assert m["confusion"] == [[1, 0, 1], [1, 1, 0], [0, 0, 0]]
    assert m["confusion_normalised"][0] == [0.5, 0.0, 0.5]
    a = m["per_class"][0]  # class a: predicted for images 0 and 2, of which image 0 is right
    assert (a["precision"], a["recall"], a["support"]) == (0.5, 0.5, 2)
    assert m["per_class"][2] == {
        "class": "c",
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "support": 0,
    }


def test_metrics_agree_with_scikit_learn():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(500, 10)) * 2
    labels = np.where(rng.random(500) < 0.7, logits.argmax(1), rng.integers(0, 10, 500))
    probs = ev.softmax(logits)
    m = ev.metrics(probs, labels, [str(i) for i in range(10)])
    assert m["accuracy"] == pytest.approx(accuracy_score(labels, probs.argmax(1)))
    assert m["loss"] == pytest.approx(log_loss(labels, probs, labels=range(10)))
    assert m["top3_accuracy"] == pytest.approx(
        top_k_accuracy_score(labels, probs, k=3, labels=range(10))
    )
    assert m["macro_f1"] == pytest.approx(f1_score(labels, probs.argmax(1), average="macro"))
    per_class_precision = precision_score(labels, probs.argmax(1), average=None, zero_division=0)
    assert [c["precision"] for c in m["per_class"]] == pytest.approx(per_class_precision)


def test_expected_calibration_error_by_hand():
    # two images at 0.9 confidence (one right), two at 0.6 (both right)
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    labels = np.array([0, 1, 0, 1])
    r = ev.reliability(probs, labels, bins=10)
    assert r["ece"] == pytest.approx(0.5 * abs(0.5 - 0.9) + 0.5 * abs(1.0 - 0.6))
    assert sum(b["count"] for b in r["bins"]) == 4


def test_temperature_scaling_recovers_a_known_temperature():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(4000, 10)) * 1.5
    labels = np.array([rng.choice(10, p=p) for p in ev.softmax(z)])  # labels drawn from softmax(z)
    t = ev.fit_temperature(3.0 * z, labels)  # overconfident by a factor 3
    assert t == pytest.approx(3.0, rel=0.1)
    before = ev.reliability(ev.softmax(3.0 * z), labels)["ece"]
    after = ev.reliability(ev.softmax(3.0 * z, t), labels)["ece"]
    assert after < before / 2


@pytest.mark.parametrize(
    ("b", "c", "p"), [(10, 2, 79 / 2048), (0, 0, 1.0), (5, 5, 1.0), (0, 6, 1 / 32)]
)
def test_mcnemar_known_tables(b, c, p):
    a_right = np.array([True] * b + [False] * c + [True] * 50 + [False] * 7)
    b_right = np.array([False] * b + [True] * c + [True] * 50 + [False] * 7)
    result = ev.mcnemar(a_right, b_right)
    assert (result["b"], result["c"]) == (b, c)
    assert result["p_value"] == pytest.approx(p)


def test_mcnemar_matches_scipy_exact_binomial_test():
    from scipy.stats import binomtest

    for b, c in [(30, 12), (120, 95), (3, 17), (400, 330)]:
        ours = ev.mcnemar(np.array([True] * b + [False] * c), np.array([False] * b + [True] * c))
        assert ours["p_value"] == pytest.approx(binomtest(min(b, c), b + c, 0.5).pvalue, rel=1e-9)


def test_mistakes_and_confusable_pairs():
    probs = np.array([[0.1, 0.9], [0.4, 0.6], [0.8, 0.2], [0.99, 0.01]])
    labels = np.array([0, 0, 0, 1])
    mistakes = ev.confident_mistakes(probs, labels)
    assert [m["index"] for m in mistakes] == [3, 0, 1]  # most confident first
    assert mistakes[0] == {"index": 3, "true": 1, "predicted": 0, "confidence": 0.99}
    pairs = ev.confusable_pairs(np.array([[5, 2, 0], [7, 9, 1], [0, 3, 4]]))
    assert pairs[0] == {"a": 0, "b": 1, "a_as_b": 2, "b_as_a": 7, "total": 9}
    assert pairs[1]["total"] == 4


def test_mean_std():
    assert ev.mean_std([0.99, 0.991, 0.992]) == {
        "mean": pytest.approx(0.991),
        "std": pytest.approx(0.001),
        "n": 3,
    }
    assert ev.mean_std([0.5])["std"] == 0.0


def test_the_metrics_refuse_what_they_would_misreport():
    """Each of these gave a figure (an ECE of 3.08, accuracy over a broadcast label, p = 1.0
    for predicted labels) instead of an error."""
    from digitlab.errors import DigitlabError
    from digitlab.preprocess import stratified_split

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 3)) * 3
    labels = rng.integers(0, 3, 50)
    probs = ev.softmax(logits)
    classes = ["a", "b", "c"]
    for call, why in [
        (lambda: ev.metrics(logits, labels, classes), "rows are not probabilities"),
        (lambda: ev.metrics(probs, labels[:1], classes), "expected shape \\(50,\\)"),
        (lambda: ev.metrics(probs, labels + 1, classes), "outside the 3 classes"),
        (lambda: ev.metrics(probs, labels.astype(float), classes), "integer class ids"),
        (lambda: ev.metrics(ev.softmax(logits[:, :2]), labels % 2, classes), "2 columns for 3"),
        (lambda: ev.confusion_matrix(labels, labels + 1, 3), "predicted class 3 is outside"),
        (lambda: ev.confusion_matrix(labels - 1, labels, 3), "label -1 is outside"),
        (lambda: ev.confusion_matrix(labels[1:], labels, 3), "differ in shape"),
        (lambda: ev.confusion_matrix(labels, probs, 3), "got probabilities; pass their argmax"),
        (lambda: ev.log_loss(logits, labels), "rows are not probabilities"),  # gave 0.47
        (lambda: ev.log_loss(probs, labels[:10]), "expected shape \\(50,\\)"),
        (lambda: ev.log_loss(probs, labels + 0.7), "integer class ids"),
        (lambda: ev.softmax(logits, 0), "temperature must be above 0"),  # NaN
        (lambda: ev.softmax(logits, -1), "temperature must be above 0"),  # upside down
        (lambda: ev.reliability(probs, labels, bins=0), "bins must be a whole number"),
        (lambda: ev.risk_coverage(logits, labels), "not probabilities"),
        (lambda: ev.fit_temperature(probs, labels), "these rows are probabilities"),
        (lambda: ev.mcnemar(labels, labels[::-1]), "pass predicted == labels"),
        (lambda: ev.mcnemar(labels == 0, labels[:10] == 0), "paired outcomes"),
        (lambda: ev.mean_std([]), "no values"),
        (lambda: stratified_split(np.eye(3)[labels], 0.2), "expected class ids"),
        (lambda: stratified_split(labels, 1.0), "split fraction"),
    ]:
        with pytest.raises(DigitlabError, match=why):
            call()
    assert ev.metrics(probs, labels, classes)["n"] == 50  # the right call still answers


def test_a_run_trained_on_a_dataset_of_its_own_is_not_validated_on_the_whole(mnist, tmp_path):
    """Reopened by its name, a run trained on 1,500 of MNIST's images held out a 'validation'
    split of all 60,000, most of them never held out (and some trained on)."""
    import dataclasses

    from digitlab import jobs, runs
    from digitlab import spec as S
    from digitlab.data import Split
    from digitlab.errors import DigitlabError
    from digitlab.train import TrainConfig

    part = Split(mnist.train.images[20_000:21_500], mnist.train.labels[20_000:21_500])
    mine = dataclasses.replace(mnist, train=part)
    jobs.start(tmp_path / "r", S.mlp([16]), "numpy", TrainConfig(epochs=1), mine)
    with pytest.raises(
        DigitlabError, match="trained on 1,500 training images of mnist, the data given has"
    ):
        jobs.evaluate_run(tmp_path / "r", split="val")
    held_out = runs.read_info(tmp_path / "r")["calibration"]["images"]  # training's own split
    assert jobs.evaluate_run(tmp_path / "r", split="val", data=mine)["n"] == held_out
    assert jobs.evaluate_run(tmp_path / "r")["n"] == 10_000  # the test split is the same
