"""The tutorial notebooks (notebooks/*.py, py:percent) run top to bottom in fast mode.

Each is converted with jupytext and executed with nbclient on an IPython kernel of this
interpreter, in a temporary folder, with DIGITLAB_FAST=1 and the session's MNIST cache;
`make notebooks` runs the same code in full mode and keeps the outputs in docs/notebooks/.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def runner():
    """notebooks/run.py, the executor `make notebooks` uses (it is not a package)."""
    spec = importlib.util.spec_from_file_location("notebook_runner", NOTEBOOKS / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def outputs(notebook) -> tuple[str, int]:
    """All printed text of an executed notebook, and how many images it displayed."""
    text, images = [], 0
    for cell in notebook.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                text.append(out["text"])
            images += "image/png" in out.get("data", {})
    return "".join(text), images


def percent(text: str, pattern: str) -> float:
    match = re.search(pattern + r"\s*([\d.]+)%", text)
    assert match, f"no match for {pattern!r} in the notebook's output:\n{text[-2000:]}"
    return float(match.group(1)) / 100


# name: (at least this many images displayed, [(pattern before a percentage, floor)])
EXPECTED = {
    "01_explore": (9, []),
    "02_neural_network_from_scratch": (4, [(r"^test accuracy:", 0.88)]),
    "03_train_evaluate_compare": (7, [(r"cnn-small\s+accuracy", 0.85)]),
    "04_your_own_digits": (4, [(r"cnn-small: \d+ epochs, test accuracy", 0.85)]),
}


def test_every_notebook_is_tested():
    assert sorted(EXPECTED) == runner().NOTEBOOKS


# Notebook 02 (the NumPy network from scratch, ~5 s) runs in make test; the other three take
# 20-50 s each on 2 cores even in fast mode (plots, a CNN, an export), so they run in
# make test-slow, and in full by make notebooks.
IN_FAST_SUITE = {"02_neural_network_from_scratch"}


@pytest.mark.parametrize(
    "name",
    [
        n if n in IN_FAST_SUITE else pytest.param(n, marks=pytest.mark.slow)
        for n in sorted(EXPECTED)
    ],
)
def test_notebook_runs_in_fast_mode(name, mnist_home):
    pytest.importorskip("jupytext", reason="the notebooks extra is not installed")
    pytest.importorskip("nbclient", reason="the notebooks extra is not installed")
    pytest.importorskip("ipykernel", reason="the notebooks extra is not installed")
    if name == "04_your_own_digits":
        pytest.importorskip("onnxruntime", reason="notebook 4 exports to ONNX (export extra)")
        pytest.importorskip("torch", reason="notebooks 3 and 4 train on the torch engine")
    if name == "03_train_evaluate_compare":
        pytest.importorskip("torch", reason="notebooks 3 and 4 train on the torch engine")
    env = {"DIGITLAB_FAST": "1", "DIGITLAB_HOME": str(mnist_home)}
    notebook = runner().execute(name, timeout=240, env=env)  # raises on a failing cell
    text, images = outputs(notebook)
    least_images, floors = EXPECTED[name]
    assert images >= least_images, f"{name}: {images} images displayed"
    for pattern, floor in floors:
        assert percent(text, "(?m)" + pattern) >= floor
    if name == "01_explore":
        assert "verified: True" in text
        assert "first labels: [5 0 4 1 9 2 1 3 1 4]" in text
    if name == "02_neural_network_from_scratch":
        worst = float(re.search(r"largest relative error: ([\d.e+-]+)", text).group(1))
        assert worst < 1e-5, "the live gradient check failed"
    if name == "04_your_own_digits":
        assert "0 disagreements" in text
        assert re.search(r"onnxruntime reads (\d).*\ndigitlab reads +\1", text)
