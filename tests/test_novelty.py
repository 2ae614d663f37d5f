"""Is it a digit at all (digitlab.novelty): the built-in reader answers letters and symbols
"unsure" instead of a confident digit, still answers real digits, and its check is a file of the
run directory, verified against model.json like the weights."""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from digitlab import novelty, reader, runs
from digitlab.cli import app
from digitlab.errors import DigitlabError
from digitlab.predict import Predictor

sys.path.insert(0, str(Path(__file__).parent))
from test_serve import start_server, stop

# non-digits as strokes (no font needed): each a letter or a symbol people write
SHAPES = {
    "#": [((30, 10), (30, 90)), ((60, 10), (60, 90)), ((10, 35), (80, 35)), ((10, 65), (80, 65))],
    "X": [((15, 15), (75, 85)), ((75, 15), (15, 85))],
    "*": [((45, 10), (45, 90)), ((15, 30), (75, 70)), ((75, 30), (15, 70))],
    "W": [((10, 15), (28, 85)), ((28, 85), (45, 35)), ((45, 35), (62, 85)), ((62, 85), (80, 15))],
    "M": [((15, 85), (15, 15)), ((15, 15), (45, 60)), ((45, 60), (75, 15)), ((75, 15), (75, 85))],
    "K": [((20, 10), (20, 90)), ((70, 10), (22, 55)), ((30, 48), (72, 90))],
    "+": [((45, 15), (45, 85)), ((10, 50), (80, 50))],
    "N": [((20, 85), (20, 20)), ((20, 20), (70, 85)), ((70, 85), (70, 20))],
    "E": [((70, 15), (20, 15)), ((20, 15), (20, 85)), ((20, 85), (70, 85)), ((20, 50), (60, 50))],
    "F": [((70, 15), (20, 15)), ((20, 15), (20, 85)), ((20, 50), (60, 50))],
}


def drawn(strokes, rng) -> bytes:
    """A PNG of the strokes in a pen of random width, each end moved a little, slightly turned."""
    image = Image.new("L", (100, 100), 255)
    pen, draw = int(rng.integers(4, 12)), ImageDraw.Draw(image)
    for a, b in strokes:
        draw.line([tuple(int(v + rng.integers(-5, 6)) for v in p) for p in (a, b)], 0, pen)
    image = image.rotate(float(rng.uniform(-10, 10)), fillcolor=255)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def test_the_reader_answers_far_fewer_letters_and_symbols_ok(mnist):
    rng = np.random.default_rng(0)
    shapes = [drawn(strokes, rng) for strokes in SHAPES.values() for _ in range(10)]
    checked = Predictor()
    assert checked.novelty is not None
    plain = Predictor(novelty=False)  # the same reader, taking every image for a digit
    assert plain.novelty is None
    ok = [
        sum(a["status"] == "ok" for a in predictor.read_many(shapes))
        for predictor in (checked, plain)
    ]
    assert ok[0] <= 0.6 * ok[1]  # measured: 14 of 100 answered "ok", against 35 without
    flagged = [a for a in checked.read_many(shapes) if a.get("note") == novelty.NOTE]
    assert len(flagged) >= 60 and all(a["status"] == "unsure" for a in flagged)
    # real digits: the threshold turns 1 in 100 held-out digits the reader answers "ok" unsure
    answers = checked.read_many(list(mnist.test.images[:500]))
    assert sum(a.get("note") == novelty.NOTE for a in answers) <= 15  # measured: 2 of 500


def test_the_check_is_verified_like_the_weights(tmp_path):
    info = runs.read_info("reader")
    assert info["novelty"]["file"] == novelty.FILE and 0 < info["novelty"]["threshold"] < 2
    run = tmp_path / "copy"
    shutil.copytree(reader.FOLDER, run, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    assert Predictor(run).novelty is not None
    damaged = bytearray((run / novelty.FILE).read_bytes())
    damaged[-1] ^= 1
    (run / novelty.FILE).write_bytes(bytes(damaged))
    with pytest.raises(DigitlabError, match=r"novelty\.safetensors: does not match the checksum"):
        Predictor(run)
    (run / novelty.FILE).unlink()
    with pytest.raises(DigitlabError, match=r"novelty\.safetensors: missing"):
        Predictor(run)
    result = CliRunner().invoke(app, ["predict", str(run), str(run / "model.json")])
    assert result.exit_code == 1 and "novelty.safetensors: missing" in result.output
    assert "Traceback" not in result.output
    # a run fitted without one (older runs, other recipes) reads every image as a digit
    info.pop("novelty")
    (run / "model.json").write_text(json.dumps(info))
    assert Predictor(run).novelty is None


def test_a_saved_check_gives_the_scores_it_was_fitted_with(mnist, tmp_path):
    """novelty.safetensors once held its directions transposed in the buffer: safetensors writes
    an array's memory as it lies, and a check read back answered every digit 'unlike'."""
    model = runs.load_model("reader", engine="numpy")
    digits = mnist.test.images[:300]
    check, record = novelty.fit(model, mnist.train.images[:2000], digits, np.ones(300, bool))
    assert record["kept"] == 2000 and record["dims"] == novelty.DIMS
    sha = novelty.save(tmp_path, check)
    again = novelty.load(tmp_path, {"novelty": record | {"sha256": sha}})
    feats = novelty.features(model, digits)
    assert np.allclose(again.scores(feats), check.scores(feats), atol=1e-6)
    assert np.mean(again.unlike(feats)) == pytest.approx(0.01, abs=0.01)  # the 99th percentile


PNG = {"Content-Type": "image/png"}


def test_the_page_is_told_why_too(mnist, tmp_path):
    """`digitlab serve` (the built-in reader, a real server): a drawn # is 'unsure' with the
    note the page shows; a drawn digit is still 'ok'."""
    server, _, url = start_server(Path("reader"), tmp_path / "stderr.txt")
    try:
        hash_sign = drawn(SHAPES["#"], np.random.default_rng(1))
        answer = httpx.post(f"{url}/api/predict", content=hash_sign, headers=PNG, timeout=30).json()
        assert answer["status"] == "unsure" and answer["note"] == novelty.NOTE
        seven = io.BytesIO()
        Image.fromarray(255 - mnist.test.images[0]).resize((200, 200)).save(seven, "PNG")
        body = seven.getvalue()
        answer = httpx.post(f"{url}/api/predict", content=body, headers=PNG, timeout=30).json()
        assert (answer["label"], answer["status"], answer.get("note")) == ("7", "ok", None)
    finally:
        stop(server)


def test_a_check_of_another_model_is_one_line(tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(reader.FOLDER, run, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    check = novelty.load(run, runs.read_info(run))
    narrow = novelty.Check(check.centre[:100], check.directions[:100], check.kept, 0.2)
    info = json.loads((run / "model.json").read_text())
    info["novelty"]["sha256"] = novelty.save(run, narrow)  # its digest is right: only its width
    (run / "model.json").write_text(json.dumps(info))
    with pytest.raises(DigitlabError, match=r"made for features 100 wide.*reads 1152"):
        Predictor(run)


def test_the_kept_sample_is_drawn_from_all_the_training_images(mnist, monkeypatch):
    """Images stored class by class (an NPZ, an IDX file sorted by label): the kept features
    once came from the first part alone, and the check then took most digits for strangers."""
    monkeypatch.setattr(novelty, "KEEP", 500)
    monkeypatch.setattr(novelty, "FIT_IMAGES", 2000)
    model = runs.load_model("reader", engine="numpy")
    images, labels = mnist.train.images[:4000], mnist.train.labels[:4000]
    held_out = mnist.test.images[:300]
    thresholds = [
        novelty.fit(model, images[order], held_out, np.ones(300, bool))[1]["threshold"]
        for order in (np.arange(4000), np.argsort(labels, kind="stable"))
    ]
    assert thresholds[1] == pytest.approx(thresholds[0], rel=0.25), thresholds


def test_too_few_held_out_digits_fit_no_check(mnist):
    model = runs.load_model("reader", engine="numpy")
    few = np.zeros(300, bool)
    few[: novelty.MIN_DIGITS - 1] = True  # 99 answered "ok": one digit would move the threshold
    assert novelty.fit(model, mnist.train.images[:1000], mnist.test.images[:300], few) is None


def test_the_readmes_letter_reads_as_the_readme_says():
    letter = Path(__file__).parents[1] / "docs" / "images" / "letter_m.png"
    result = CliRunner().invoke(app, ["predict", str(letter)])
    assert result.exit_code == 0, result.output
    assert "4 (97.0%, unsure)" in result.output and f"[{novelty.NOTE}]" in result.output
    plain = Predictor(novelty=False).read(letter)
    assert (plain["label"], plain["status"]) == ("4", "ok")  # what it said without the check
    result = CliRunner().invoke(app, ["predict", "--no-novelty", str(letter)])
    assert result.exit_code == 0 and result.output.endswith("4 (97.0%); then 0 2.3%, 7 0.3%\n")
