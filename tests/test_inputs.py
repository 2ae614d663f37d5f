"""The obvious calls a user makes with the images they have: read right, or refused in one line
naming what is wrong; never read as something else (a blank page, a different digit)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageDraw

import digitlab
from digitlab import ink, runs
from digitlab.errors import DigitlabError
from digitlab.predict import Predictor
from digitlab.preprocess import normalise, standardise, to_float


@pytest.fixture(scope="module")
def reader():
    return Predictor()  # the built-in reader


@pytest.fixture
def seven(mnist):
    assert mnist.test.labels[0] == 7
    return mnist.test.images[0]


def png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


def drawn_seven(ink_rgba, size=200, width=14) -> Image.Image:
    im = Image.new("RGBA", (size, size), (0, 0, 0, 0))  # a transparent canvas
    ImageDraw.Draw(im).line([(50, 40), (150, 40), (90, 170)], fill=ink_rgba, width=width)
    return im


AS_PEOPLE_HAVE_IT = {
    "floats 0..1 (matplotlib's imread)": lambda d: d / 255,
    "floats 0..255": lambda d: d.astype(np.float64),
    "floats 0..1 a resize left just past 1": lambda d: d / 255 * 1.02,  # was a blank page
    "a bool mask": lambda d: d > 128,
    "a 0/1 mask": lambda d: (d > 128).astype(np.uint8),
    "16-bit": lambda d: d.astype(np.uint16) * 257,
    "int64": lambda d: d.astype(np.int64),
    "(1, H, W)": lambda d: d[None],
    "(H, W, 1)": lambda d: d[..., None],
    "(H, W, 3)": lambda d: np.repeat(d[..., None], 3, axis=2),
    "a scan: dark ink on white": lambda d: 255 - d,
    "(H, W, 4), ink opaque on transparent": lambda d: np.dstack([np.zeros_like(d)] * 3 + [d]),
    "(H, W, 2), gray and alpha (PIL's LA)": lambda d: np.dstack([d, np.full_like(d, 255)]),
    "12-bit": lambda d: d.astype(np.uint16) * 16,
    "a PIL image of floats 0..1": lambda d: Image.fromarray(d.astype(np.float32) / 255),
    "a 16-bit PIL image holding 0..255": lambda d: Image.fromarray(d.astype(np.uint16)),
    "an open file": lambda d: io.BytesIO(png(255 - d)),
    "a bytearray": lambda d: bytearray(png(255 - d)),
}


@pytest.mark.parametrize("how", AS_PEOPLE_HAVE_IT)
def test_a_digit_reads_the_same_however_it_is_held(reader, seven, how):
    answer = reader.read(AS_PEOPLE_HAVE_IT[how](seven))
    assert (answer["status"], answer["label"]) == ("ok", "7"), how


@pytest.mark.parametrize("width", [14, 4])  # 4: 1.5% of the canvas inked, read as blank before
@pytest.mark.parametrize("colour", [(0, 0, 0, 255), (255, 255, 255, 255)])
def test_a_drawing_on_a_transparent_canvas_reads_in_dark_or_light_ink(reader, colour, width):
    drawing = drawn_seven(colour, width=width)
    assert reader.read(drawing)["label"] == "7"
    assert reader.read(np.asarray(drawing))["label"] == "7"  # the same, as an array
    assert reader.read(drawing)["image"] == "PIL image (RGBA 200x200)"


MISREAD_BEFORE = {
    "a batch as one image": (lambda d: np.stack([d] * 5), "looks like a batch of 5 images"),
    "flattened digits": (lambda d: np.stack([d] * 5).reshape(5, 784), "flattened 28x28"),
    "one flattened digit": (lambda d: d.reshape(1, 784), "flattened 28x28"),
    "int8, wrapped round": (lambda d: d.astype(np.int8), "values reach -"),
    "NaN": (lambda d: np.where(d > 0, np.nan, 0.0), "NaN or infinite"),
    "beyond 16 bits": (lambda d: d.astype(np.int64) * 70000, "values reach"),
    "not pixels": (lambda d: d.astype(object), "is not pixels"),
    "not an image at all": (lambda d: 7, "a int is not an image"),
    "colour channels first": (lambda d: np.stack([d] * 3), "np.moveaxis\\(x, 0, -1\\)"),
}


@pytest.mark.parametrize("case", MISREAD_BEFORE)
def test_what_would_be_misread_is_refused_in_one_line(reader, seven, case):
    make, why = MISREAD_BEFORE[case]
    with pytest.raises(ink.ImageError, match=why) as e:
        reader.read(make(seven))
    assert "\n" not in str(e.value)


def test_in_a_batch_a_bad_item_fails_alone(reader, mnist):
    good = mnist.test.images
    items = [good[0], None, io.BytesIO(png(255 - good[1])), ["x.png"], "/no/such.png", good[2]]
    answers = reader.read_many(items)
    assert [a["status"] for a in answers] == ["ok", "error", "ok", "error", "error", "ok"]
    assert [a["label"] for a in answers] == ["7", None, "2", None, None, "1"]
    assert "no such file" in answers[4]["error"] and "is not an image" in answers[1]["error"]
    assert [a["label"] for a in reader.read_many(x for x in good[:3])] == ["7", "2", "1"]
    rgb, encoded = np.dstack([good[0]] * 3), png(255 - good[0])
    # one image is not a list of them: each row of its pixels, or each line of its file, was
    # read as an image ('no digit found' 28 times)
    for one in ("seven.png", good[0], rgb, rgb[..., :1], io.BytesIO(encoded), bytearray(encoded)):
        with pytest.raises(DigitlabError, match="read one image with read"):
            reader.read_many(one)
    with pytest.raises(ink.ImageError, match="no such file"):  # read: one image, so it raises
        reader.read("/no/such.png")


def test_the_batch_helpers_refuse_what_they_would_misread(mnist):
    images = mnist.test.images[:4]
    for call, why in [
        (lambda: normalise(images / 255), "look like pixels / 255"),
        (lambda: to_float(images > 0), "got dtype bool"),
        (lambda: standardise(images.copy()), "normalise\\(\\) takes uint8"),
    ]:
        with pytest.raises(DigitlabError, match=why):
            call()
    model = runs.load_model("reader", engine="numpy")
    assert list(model.predict_proba(images.astype(np.int64)).argmax(1)) == [7, 2, 1, 0]
    with pytest.raises(DigitlabError, match="flattened digits"):
        model.predict_proba(images.reshape(4, 784))
    masks = (images > 127).astype(np.uint8)  # binarised: read as 0..255, 13% right
    for call, why in [
        (lambda: normalise(images.reshape(4, 784)), "flattened digits"),  # came back (4, 784)
        (lambda: normalise(images[0]), "got one image"),
        (lambda: model.predict_proba(masks), "every value is 0 or 1, a mask"),
        (lambda: digitlab.logits(model, masks), "every value is 0 or 1, a mask"),
        (lambda: model.predict_proba(images[:, ::2, ::2]), "reads 28x28 images, got shape"),
        (lambda: model.predict_proba(255 - images), "dark ink on white.*pass 255 - images"),
        (lambda: digitlab.logits(model, 255 - images), "dark ink on white"),  # read 1% right
    ]:
        with pytest.raises(DigitlabError, match=why):
            call()
    assert model.predict_proba(images[:0]).shape == (0, 10)  # not a concatenate error
    torch_model = runs.load_model("reader", engine="torch")
    assert torch_model.predict_proba(images[:0]).shape == (0, 10)
    with pytest.raises(DigitlabError, match="reads 28x28 images"):
        torch_model.predict_proba(images[:, ::2, ::2])


def test_a_device_or_a_pipe_is_refused_before_it_is_read(reader, tmp_path):
    """/dev/zero was read until memory ran out; a named pipe waited for a writer forever."""
    os.mkfifo(tmp_path / "pipe.png")
    answers = reader.read_many(["/dev/zero", tmp_path / "pipe.png"])
    assert [a["status"] for a in answers] == ["error", "error"]
    assert "is a character device, not a regular file" in answers[0]["error"]
    assert "is a named pipe (FIFO)" in answers[1]["error"]


def test_arguments_in_the_wrong_place_are_named(reader, seven):
    """An image where the run goes raised a TypeError about os.PathLike; a run where read's
    image name goes named the image and was otherwise ignored."""
    for call, why in [
        (lambda: digitlab.Predictor(seven), "run: expected a run folder .* got ndarray"),
        (lambda: digitlab.read(seven, 5), "run: expected a run folder .* got int"),
        (lambda: reader.read(seven, 5), "name: expected a str"),
        (lambda: reader.read(seven, top="3"), "top: expected a whole number"),
        (lambda: reader.read_number(seven, top=0), "top: expected a whole number"),
    ]:
        with pytest.raises(DigitlabError, match=why) as e:
            call()
        assert "\n" not in str(e.value)
    assert reader.read(seven, "mine.png", top=np.int64(2))["image"] == "mine.png"


def test_subpackages_are_there_after_import_digitlab():
    code = "import digitlab; print(digitlab.data.load.__module__, digitlab.ink.prepare.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["digitlab.data", "prepare"]
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        import digitlab

        digitlab.nope  # noqa: B018


def test_predict_json_keeps_one_entry_per_image_and_refuses_what_it_would_ignore(seven, tmp_path):
    from typer.testing import CliRunner

    from digitlab.cli import app

    (tmp_path / "seven.png").write_bytes(png(255 - seven))
    (tmp_path / "broken.png").write_bytes(b"not a png")
    good, bad = str(tmp_path / "seven.png"), str(tmp_path / "broken.png")
    result = CliRunner().invoke(app, ["predict", bad, good, "--json"])
    answers = json.loads(result.stdout)
    assert result.exit_code == 1 and [a["status"] for a in answers] == ["error", "ok"]
    assert answers[0]["image"] == bad and answers[1]["label"] == "7"
    numbers = CliRunner().invoke(app, ["predict", bad, good, "--number", "--json"])
    assert [a["status"] for a in json.loads(numbers.stdout)] == ["error", "ok"]
    for args, why in [
        (["runs/nope", good], "runs/nope: no such run"),  # not quietly the built-in reader
        ([good, "--number", "--deskew"], "--deskew straightens one digit"),
        ([good, "--number", "--tta"], "the line reader reads the row whole"),
    ]:
        refused = CliRunner().invoke(app, ["predict", *args])
        assert refused.exit_code == 1 and why in refused.output, refused.output


def test_noise_is_no_digit_and_two_digits_are_not_read_as_one(reader, mnist):
    """Random noise read as "8, 99.9%", and a 6 beside a 9 as "9, 66%, ok"."""
    noise = (np.random.default_rng(0).random((200, 200)) * 255).astype(np.uint8)
    assert reader.read(noise)["status"] == "no digit found"
    six, nine = (mnist.test.images[mnist.test.labels == d][0] for d in (6, 9))
    pair = reader.read(np.hstack([six, nine]))
    assert pair["status"] == "unsure" and "several digits" in pair["note"]
    assert reader.read_number(np.hstack([six, nine]))["number"] == "69"
    alone = reader.read(six)
    assert alone["status"] == "ok" and "note" not in alone


def test_a_numbers_digits_show_one_confidence_and_its_separators_theirs(reader, mnist):
    """--number --json showed each digit's confidence beside a different top[0].p, and its
    separators no confidence though they count in the number's."""
    from digitlab.ink import paper

    row = paper.written_text(mnist.test, "12/03/2026", np.random.default_rng(3))
    result = reader.read_number(png(row.astype(np.uint8)))
    assert result["number"] == "12/03/2026" and len(result["separators"]) == 2
    for d in result["digits"]:
        assert d["top"][0]["label"] == d["label"] and d["top"][0]["p"] == pytest.approx(
            d["confidence"]
        )
    product = np.prod([d["confidence"] for d in result["digits"]])
    product *= np.prod([s["confidence"] for s in result["separators"]])
    assert result["confidence"] == pytest.approx(product)


def test_a_colour_image_is_the_same_gray_as_an_array_and_as_a_pil_image(reader):
    """A green 7 on red: PIL made it gray by luma and read 7; the array was averaged plainly,
    green and red came out the same gray, and it read 'no digit found'."""
    drawing = Image.new("RGB", (120, 140), (200, 0, 0))
    ImageDraw.Draw(drawing).line([(25, 30), (95, 30), (50, 120)], fill=(0, 160, 0), width=12)
    as_pil, as_array = reader.read(drawing), reader.read(np.asarray(drawing))
    assert as_pil["label"] == as_array["label"] == "7"
    assert as_pil["confidence"] == pytest.approx(as_array["confidence"], abs=1e-3)


def test_floats_a_resize_left_a_little_outside_0_1_are_read_and_normalised_ones_refused(
    reader, seven
):
    """A bicubic resize of 0..1 floats dips below 0 as it overshoots past 1: the overshoot was
    read, the dip refused. A normalised image (mean 0) is still refused, saying so."""
    big = Image.fromarray((seven / 255).astype(np.float32)).resize((84, 84), Image.BICUBIC)
    floats = np.asarray(big)
    assert floats.min() < -0.01 and floats.max() > 1.0  # both ends overshot
    assert reader.read(floats)["label"] == "7"
    for normalised in ((seven / 255 - 0.1307) / 0.3081, seven / 127.5 - 1):
        with pytest.raises(ink.ImageError, match="undo the normalisation"):
            reader.read(normalised)


def test_read_many_names_flattened_digits(reader, seven):
    """(N, 784) given to read_many was told to use read(), which refused it too."""
    for flat in (np.stack([seven] * 3).reshape(3, 784), seven.reshape(1, 784)):
        with pytest.raises(DigitlabError, match=r"flattened 28x28 digits; pass x.reshape"):
            reader.read_many(flat)
