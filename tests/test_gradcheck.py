"""Every layer's hand-written backward against central differences, in float64.

f = Σ R ⊙ model(x) for a fixed random R; the analytic gradient of f with respect to
the input and to every parameter must match (f(θ+h) - f(θ-h)) / 2h with a relative
error (‖a - n‖ / (‖a‖ + ‖n‖)) below 1e-6.
"""

from __future__ import annotations

import numpy as np
import pytest

from digitlab import spec as S
from digitlab.engines import numpy_engine as ne

H = 1e-6
TOLERANCE = 1e-6


def rel_error(a: np.ndarray, n: np.ndarray) -> float:
    """Relative error; absolute when the true gradient is zero (a bias just before BatchNorm)."""
    scale = np.linalg.norm(a) + np.linalg.norm(n)
    return float(np.linalg.norm(a - n) / (scale if scale > 1e-6 else 1.0))


def away_from_kinks(x: np.ndarray) -> np.ndarray:
    """Keep |x| ≥ 0.05 so ReLU/LeakyReLU kinks and max ties are not straddled by ±h."""
    return np.where(np.abs(x) < 0.05, np.sign(x + 1e-12) * 0.05 + x, x)


def check(
    spec: S.ModelSpec, x: np.ndarray, training: bool = True, seed: int = 0
) -> dict[str, float]:
    model = ne.build(spec, seed=seed, dtype=np.float64)
    model.train(training)
    out_shape = (len(x), *spec.output_shapes()[-1])
    r = np.random.default_rng(1).standard_normal(out_shape)

    def f() -> float:
        for layer in model.layers:  # the same dropout mask for every evaluation
            if isinstance(layer, ne.Dropout):
                layer.rng = np.random.default_rng(3)
        return float((model.forward(x) * r).sum())

    f()
    dx = model.input_gradient(r.copy())
    errors = {}
    targets = [("input", x, dx)]
    targets += [(name, p.data, p.grad.copy()) for name, p in model.named_parameters()]
    for name, array, analytic in targets:
        numeric = np.zeros_like(array)
        for i in np.ndindex(array.shape):
            old = array[i]
            array[i] = old + H
            up = f()
            array[i] = old - H
            down = f()
            array[i] = old
            numeric[i] = (up - down) / (2 * H)
        errors[name] = rel_error(analytic, numeric)
    return errors


RNG = np.random.default_rng(0)
FLAT = (1, 2, 3)  # 6 features
IMAGE = (2, 6, 6)

CASES = {
    "dense": (FLAT, [S.Flatten(), S.Dense(5)]),
    "dense-no-bias-he": (FLAT, [S.Flatten(), S.Dense(4, bias=False, init="he_normal")]),
    "relu": (FLAT, [S.Flatten(), S.Dense(5), S.ReLU(), S.Dense(3)]),
    "leaky-relu": (FLAT, [S.Flatten(), S.Dense(5), S.LeakyReLU(0.1), S.Dense(3)]),
    "sigmoid": (FLAT, [S.Flatten(), S.Dense(5), S.Sigmoid(), S.Dense(3)]),
    "tanh": (FLAT, [S.Flatten(), S.Dense(5), S.Tanh(), S.Dense(3)]),
    "dropout": (FLAT, [S.Flatten(), S.Dense(8), S.Dropout(0.4), S.Dense(3)]),
    "batchnorm-dense": (FLAT, [S.Flatten(), S.Dense(4), S.BatchNorm(), S.Dense(3)]),
    "conv": (IMAGE, [S.Conv2D(3, 3), S.Flatten()]),
    "conv-stride2-pad1": (IMAGE, [S.Conv2D(2, 3, stride=2, padding=1), S.Flatten()]),
    "conv-5x5-pad2-glorot": (
        IMAGE,
        [S.Conv2D(2, 5, padding=2, init="glorot_uniform"), S.Flatten()],
    ),
    "maxpool": (IMAGE, [S.MaxPool2D(2), S.Flatten()]),
    "maxpool-3-stride2": (IMAGE, [S.MaxPool2D(3, stride=2), S.Flatten()]),
    "batchnorm-conv": (IMAGE, [S.Conv2D(3, 3), S.BatchNorm(), S.Flatten()]),
    "small-cnn": (
        (1, 8, 8),
        [S.Conv2D(3, 3, padding=1), S.ReLU(), S.MaxPool2D(2), S.Flatten(), S.Dense(4)],
    ),
}


def spec_for(shape, layers) -> S.ModelSpec:
    """A spec whose "classes" are the last layer's outputs: the check needs no classifier head."""
    out = shape
    for i, layer in enumerate(layers):
        out = S.output_shape(layer, out, f"layer {i}")
    return S.ModelSpec(layers=layers, input_shape=shape, num_classes=out[0])


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("training", [True, False])
def test_layer_gradients_match_central_differences(name, training):
    shape, layers = CASES[name]
    spec = spec_for(shape, layers)
    x = RNG.standard_normal((3, *shape))
    if "maxpool" in name:  # distinct values, well separated: no ties within ±h
        x = RNG.permutation(np.arange(x.size, dtype=np.float64)).reshape(x.shape) * 0.1
    errors = check(spec, away_from_kinks(x), training=training)
    assert max(errors.values()) < TOLERANCE, errors


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_softmax_cross_entropy_gradient(smoothing):
    logits = RNG.standard_normal((5, 4)) * 3
    labels = np.array([0, 3, 1, 1, 2])
    _, analytic = ne.softmax_cross_entropy(logits, labels, smoothing)
    numeric = np.zeros_like(logits)
    for i in np.ndindex(logits.shape):
        old = logits[i]
        logits[i] = old + H
        up, _ = ne.softmax_cross_entropy(logits, labels, smoothing)
        logits[i] = old - H
        down, _ = ne.softmax_cross_entropy(logits, labels, smoothing)
        logits[i] = old
        numeric[i] = (up - down) / (2 * H)
    assert rel_error(analytic, numeric) < TOLERANCE


def test_loss_is_stable_for_huge_logits():
    logits = np.array([[1000.0, 0.0, -1000.0], [-1e30, 1e30, 0.0]], np.float32)
    loss, grad = ne.softmax_cross_entropy(logits, np.array([0, 1]))
    assert np.isfinite(loss) and loss == pytest.approx(0.0, abs=1e-6)
    assert np.isfinite(grad).all()
    loss, _ = ne.softmax_cross_entropy(logits, np.array([2, 0]))
    assert np.isfinite(loss) and loss > 100
