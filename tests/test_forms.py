"""Numbers as forms hold them: printed boxes and ruled lines removed, separators read, dates."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from digitlab import ink
from digitlab.ink import forms
from digitlab.predict import Predictor

WHITE = 235


def on_paper(row: np.ndarray, height: int = 200) -> np.ndarray:
    """Light-on-black ink (28 high) enlarged to `height` as dark ink on white paper, with a
    margin."""
    width = round(row.shape[1] * height / 28)
    big = np.asarray(Image.fromarray(255 - row).resize((width, height)), np.uint8)
    page = np.full((height + 80, width + 80), WHITE, np.uint8)
    page[40 : 40 + height, 40 : 40 + width] = np.minimum(big, WHITE)
    return page


def cropped(digit: np.ndarray) -> np.ndarray:
    return digit[:, np.flatnonzero(digit.max(axis=0) > 0)]


def in_boxes(digits: list[np.ndarray], cell: int = 120, line: int = 4) -> np.ndarray:
    """Each digit in its own printed box of a comb, as a form has them."""
    height = round(cell * 1.2)
    page = np.full((height + 60, cell * len(digits) + 60), WHITE, np.uint8)
    for i, digit in enumerate(digits):
        big = np.asarray(Image.fromarray(digit).resize((cell - 10, cell - 10)), np.uint8)
        top, left = 30 + (height - cell) // 2 + 5, 30 + i * cell + 5
        region = page[top : top + cell - 10, left : left + cell - 10]
        np.minimum(region, 255 - big, out=region)
    width = cell * len(digits)
    page[30 : 30 + line, 30 : 30 + width + line] = 20
    page[30 + height : 30 + height + line, 30 : 30 + width + line] = 20
    for i in range(len(digits) + 1):
        page[30 : 30 + height + line, 30 + i * cell : 30 + i * cell + line] = 20
    return page


def test_a_row_of_boxes_is_read_box_by_box(mnist):
    idx = [0, 1, 2, 3, 4, 7]  # 7 2 1 0 4 9
    page = in_boxes([mnist.test.images[i] for i in idx])
    found = ink.segment(page)
    assert len(found) == 6 and all(f.digit is not None for f in found)
    lefts = [f.box[0] for f in found]
    assert lefts == sorted(lefts)
    for i, f in enumerate(found):  # each digit inside its own box, not on the lines
        assert 30 + i * 120 <= f.box[0] and f.box[2] <= 30 + (i + 1) * 120 + 4


def boxed(digits: list[np.ndarray], cell: int = 110, gap: int = 40, line: int = 4) -> np.ndarray:
    """Each digit in a box of its own, the boxes `gap` pixels apart (one box: a form's field)."""
    height = round(cell * 1.2)
    page = np.full((height + 60, (cell + gap) * len(digits) + 60), WHITE, np.uint8)
    for i, digit in enumerate(digits):
        left = 30 + i * (cell + gap)
        page[30 : 30 + line, left : left + cell + line] = 20
        page[30 + height : 30 + height + line, left : left + cell + line] = 20
        page[30 : 30 + height + line, left : left + line] = 20
        page[30 : 30 + height + line, left + cell : left + cell + line] = 20
        big = np.asarray(Image.fromarray(digit).resize((cell - 20, cell - 20)), np.uint8)
        region = page[45 : 45 + cell - 20, left + 10 : left + cell - 10]
        np.minimum(region, 255 - big, out=region)
    return page


def test_one_box_or_boxes_apart_are_taken_away_not_read_as_ones(mnist, mlp_run):
    """A boxed 8 read as a number was 18: only lines longer than the ink is high were removed,
    and a box's top is as long as the digit in it is high."""
    seven, two, eight = (mnist.test.images[i] for i in (0, 1, 61))
    assert mnist.test.labels[61] == 8
    for reader in (Predictor(), Predictor(mlp_run)):  # the line reader; digits cut apart
        assert reader.read_number(boxed([eight]))["number"] == "8"
        assert reader.read_number(boxed([seven, two, eight]))["number"] == "728"
    assert Predictor().read(boxed([eight]))["label"] == "8"  # one digit, in its box
    page = boxed([seven, two])
    assert len(ink.row_ink(page).cells) == 2  # one cell in each box, none between them


def test_printed_digits_straight_strokes_are_no_box():
    """A printed 0 has straight sides and a 2 a straight foot; they never make a box's four."""
    from PIL import ImageFont

    font = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 60)
    for text in ("03/2026", "1020", "7407"):
        image = Image.new("L", (60 * len(text), 110), 255)
        ImageDraw.Draw(image).text((30, 20), text, font=font, fill=0)
        assert ink.row_ink(image).cells == [], text


def test_lines_are_removed_and_a_digit_crossing_one_is_kept_whole(mnist):
    digit = mnist.test.images[0]  # a 7: its bar is a long stroke, but not a line
    page = on_paper(np.concatenate([cropped(mnist.test.images[i]) for i in (0, 1, 3)], 1))
    mask = page < 128
    cleaned, cells = forms.remove_rules(mask.astype(np.float32), mask)
    assert cells == [] and (cleaned == mask).all()  # nothing to remove: digits only
    ruled = page.copy()
    ruled[190:194, :] = 20  # a ruled line through the digits' lower part
    mask = ruled < 128
    cleaned, cells = forms.remove_rules(mask.astype(np.float32), mask)
    assert cells == []
    assert cleaned[191, :30].max() == 0 and cleaned[191, -30:].max() == 0  # the line is gone
    crossing = mask[186] & mask[197]  # columns where a stroke runs across the line
    assert (cleaned[191][crossing] > 0).mean() > 0.8  # ... and those strokes are joined again
    single = on_paper(digit)
    m = single < 128
    kept, _ = forms.remove_rules(m.astype(np.float32), m)
    assert (kept > 0).sum() == m.sum()  # one 7: its bar stays


def mark(char: str) -> np.ndarray:
    """A separator drawn by hand, light on black, in a 28-high row."""
    image = Image.new("L", (10, 28), 0)
    draw = ImageDraw.Draw(image)
    if char == ".":
        draw.ellipse([3, 20, 7, 24], fill=255)
    elif char == "-":
        image = Image.new("L", (12, 28), 0)
        ImageDraw.Draw(image).line([(1, 14), (10, 14)], fill=255, width=3)
    return np.asarray(image, np.uint8)


def written(mnist, text: str) -> np.ndarray:
    by_label = {d: np.flatnonzero(mnist.test.labels == d) for d in range(10)}
    parts = []
    for k, char in enumerate(text):
        if char.isdigit():
            parts.append(cropped(mnist.test.images[by_label[int(char)][k]]))
        else:
            parts.append(mark(char))
        parts.append(np.zeros((28, 5), np.uint8))
    return np.concatenate(parts, 1)


def test_separators_are_read_between_digits(mnist, mlp_run):
    reader = Predictor(mlp_run)
    for text in ("35.80", "12-03"):
        found = ink.segment(on_paper(written(mnist, text)))
        chars = [f.char for f in found if f.digit is None]
        assert chars == [c for c in text if not c.isdigit()], (text, chars)
        assert [f.digit is None for f in found] == [not c.isdigit() for c in text]
        result = reader.read_number(on_paper(written(mnist, text)))
        assert [s["char"] for s in result["separators"]] == chars
        assert len(result["digits"]) == sum(c.isdigit() for c in text)
        assert result["number"][len(text) - 3] == text[-3]  # the mark, in its place


def test_slanted_strokes_are_a_dates_slashes_only_where_the_string_is_a_date():
    assert forms.date_slashes("1210312026", [2, 5]) == [2, 5]  # 12/03/2026
    assert forms.date_slashes("121031226", [2, 5]) == []  # a 3-digit year: not a date
    assert forms.date_slashes("7111", [1, 2]) == []  # 7/1/1: no year
    assert forms.date_slashes("31121999", [2]) == []  # one slash is not a date
    assert forms.date_slashes("311199", [1, 3]) == [1, 3]  # 3/1/99
    assert forms.date_slashes("12103112026", [2, 5]) == []  # ... but 12/03/12026 is not
    assert forms.date_slashes("019198", [1, 3]) == []  # 0/9/98: no day 0, so 019198
    assert forms.date_slashes("211107", [1, 3]) == [1, 3]  # 2/1/07
    assert forms.plausible_date("12/31/2026") and forms.plausible_date("31/12/26")  # m/d, d/m
    assert not forms.plausible_date("13/13/2026") and not forms.plausible_date("12/00/26")
    assert not forms.plausible_date("12-03-26") and not forms.plausible_date("1/2/3/04")
    for part in ("03/2026", "03/26", "12/03", "1/2", "31/12"):  # month/year, day/month
        assert forms.part_date(part), part
    for other in ("50/50", "13/2026", "0/12", "13/13", "1/234", "12/03/26", "3/", "12"):
        assert not forms.part_date(other), other


def test_long_runs_is_a_morphological_opening_with_a_line():
    """The run-length version (fast) keeps exactly what scipy's binary opening keeps."""
    from scipy import ndimage

    rng = np.random.default_rng(0)
    for _ in range(10):
        mask = rng.random((40, 70)) < 0.85
        for axis in (0, 1):
            length = int(rng.integers(2, 30))
            across = (2 * forms.TILT + 1, 1) if axis == 1 else (1, 2 * forms.TILT + 1)
            wide = ndimage.binary_dilation(mask, structure=np.ones(across, bool))
            line = np.ones((1, length) if axis == 1 else (length, 1), bool)
            expected = ndimage.binary_opening(wide, structure=line) & mask
            assert (forms.long_runs(mask, length, axis) == expected).all()
