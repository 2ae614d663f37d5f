"""Test-time augmentation (`--tta`): the digit and its one-pixel shifts, logits averaged."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
from PIL import Image

from digitlab import runs
from digitlab.engines import TTA_SHIFTS, logits, shifted
from digitlab.jobs.evaluate import evaluate_run
from digitlab.predict import Predictor


def test_a_shift_moves_every_pixel_and_fills_with_background():
    images = np.arange(2 * 4 * 5, dtype=np.uint8).reshape(2, 4, 5) + 1
    down_right = shifted(images, 1, 2)
    assert (down_right[:, 1:, 2:] == images[:, :-1, :-2]).all()
    assert (down_right[:, 0, :] == 0).all() and (down_right[:, :, :2] == 0).all()
    up_left = shifted(images, -1, -1)
    assert (up_left[:, :-1, :-1] == images[:, 1:, 1:]).all()
    assert (shifted(images, 0, 0) == images).all() and images.dtype == np.uint8


def test_tta_logits_are_the_mean_over_the_five_views(mlp_run, mnist):
    model = runs.load_model(mlp_run)
    digits = mnist.test.images[:300]
    views = [logits(model, shifted(digits, dy, dx)) for dy, dx in TTA_SHIFTS]
    np.testing.assert_allclose(logits(model, digits, tta=True), np.mean(views, axis=0), rtol=1e-5)
    assert not np.allclose(logits(model, digits, tta=True), logits(model, digits))
    reader = Predictor(mlp_run, tta=True)
    plain = Predictor(mlp_run)
    both = reader.probabilities(digits), plain.probabilities(digits)
    agree = (both[0].argmax(1) == both[1].argmax(1)).mean()
    assert agree > 0.97  # the same reader, nudged: it changes few answers
    np.testing.assert_allclose(both[0].sum(1), 1, rtol=1e-5)


def test_evaluate_with_tta_writes_beside_the_plain_metrics(mlp_run, mnist, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(mlp_run, run)
    plain = evaluate_run(run, data=mnist)
    before = (run / "metrics.json").read_bytes()
    tta = evaluate_run(run, data=mnist, tta=True)
    assert (run / "metrics.json").read_bytes() == before  # the run's own figures stay
    written = json.loads((run / "metrics-tta.json").read_text())
    assert written["tta"] is True and plain["tta"] is False
    assert written["accuracy"] == tta["accuracy"] and (run / "report-tta.html").is_file()
    assert (run / "figures" / "confusion-tta.png").is_file()
    assert abs(tta["accuracy"] - plain["accuracy"]) < 0.01


def test_predict_takes_tta_on_the_command_line(mlp_run, mnist, tmp_path):
    image = tmp_path / "seven.png"
    Image.fromarray(255 - mnist.test.images[0]).resize((200, 200)).save(image)
    out = subprocess.run(
        [sys.executable, "-m", "digitlab.cli", "predict", str(mlp_run), str(image), "--tta"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"{image}: {mnist.test.labels[0]} (")
