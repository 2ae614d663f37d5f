"""Real images to MNIST-style digits, and predict, on photos no model has seen."""

from __future__ import annotations

import importlib
import io
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from scipy import ndimage

from digitlab import ink, runs
from digitlab.predict import classify, read_images

sys.path.insert(0, str(Path(__file__).parent))
from photos import photo


def test_photos_keep_98_percent_of_plain_accuracy(mlp_run, mnist):
    n = 300
    rng = np.random.default_rng(0)
    images = [photo(mnist.test.images[i], rng) for i in range(n)]
    results = read_images(mlp_run, images)
    info, model = runs.read_info(mlp_run), runs.load_model(mlp_run, engine="numpy")
    plain = (classify(model, info, mnist.test.images[:n]).argmax(1) == mnist.test.labels[:n]).mean()
    read = np.mean(
        [r["label"] == str(y) for r, y in zip(results, mnist.test.labels[:n], strict=True)]
    )
    assert read >= 0.98 * plain, (read, plain)  # measured 0.980 vs 0.990


def test_prepared_digits_look_like_mnist(mnist):
    rng = np.random.default_rng(1)
    digit, steps = ink.prepare(photo(mnist.test.images[3], rng))
    assert digit.shape == (28, 28) and digit.dtype == np.uint8 and digit.max() > 200
    rows, cols = np.flatnonzero(digit.any(axis=1)), np.flatnonzero(digit.any(axis=0))
    assert max(rows[-1] - rows[0], cols[-1] - cols[0]) <= 22  # fitted in 20x20 (+ antialiasing)
    cy, cx = ndimage.center_of_mass(digit.astype(float))
    assert abs(cy - 13.5) < 0.6 and abs(cx - 13.5) < 0.6  # centred by mass
    assert digit[0].max() == 0 and digit[:, 0].max() == 0
    assert next(iter(steps)) == "input (gray)" and len(steps) == 6


@pytest.mark.parametrize("paper", [255, 0, 128])
def test_blank_pages_have_no_digit(paper):
    digit, _ = ink.prepare(np.full((200, 300), paper, np.uint8))
    assert digit is None


def test_light_ink_on_dark_paper_is_read_the_same_way(mnist):
    d = mnist.test.images[0]
    big = np.asarray(Image.fromarray(d).resize((280, 280)), np.uint8)
    dark_paper, _ = ink.prepare(big)
    light_paper, _ = ink.prepare(255 - big)
    assert np.abs(dark_paper.astype(int) - light_paper.astype(int)).mean() < 6


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def test_formats_orientation_alpha_16_bit_cmyk_and_animation(mnist):
    d = Image.fromarray(255 - np.asarray(Image.fromarray(mnist.test.images[0]).resize((140, 140))))
    reference, _ = ink.prepare(np.asarray(d))
    rotated = d.rotate(90, expand=True)  # stored turned 90° counter-clockwise...
    exif = Image.Exif()
    exif[0x0112] = 6  # ...and EXIF orientation 6 says "turn 90° clockwise to view"
    variants = {
        "exif": encode(rotated, "JPEG", exif=exif, quality=95),
        "rgba": encode(
            Image.merge(
                "RGBA", [Image.new("L", d.size, 0)] * 3 + [Image.eval(d, lambda v: 255 - v)]
            ),
            "PNG",
        ),
        "16-bit": encode(Image.fromarray(np.asarray(d, np.uint16) * 257), "PNG"),
        # the same pixels in a 16-bit file, as 0..255 and at a 12-bit scanner's depth, and as
        # 0..1 floats in a TIFF: each once read as a blank page by a fixed 65535 or 255
        "16-bit holding 0..255": encode(Image.fromarray(np.asarray(d, np.uint16)), "PNG"),
        "12-bit": encode(Image.fromarray(np.asarray(d, np.uint16) * 16), "PNG"),
        "floats 0..1": encode(Image.fromarray(np.asarray(d, np.float32) / 255), "TIFF"),
        "cmyk": encode(d.convert("CMYK"), "JPEG", quality=95),
        "gif": encode(
            d.convert("P"), "GIF", save_all=True, append_images=[Image.new("P", d.size, 0)]
        ),
    }
    for name, data in variants.items():
        digit, _ = ink.prepare(data, name)
        assert digit is not None, name
        assert np.abs(digit.astype(int) - reference.astype(int)).mean() < 12, name


def broken_exif(orientation: int) -> bytes:
    """An EXIF block whose Make tag (ASCII) is relabelled PhotometricInterpretation, a SHORT to
    Pillow: it reads, but writing it back (as ImageOps.exif_transpose does once it has turned the
    image) raises struct.error."""
    exif = Image.Exif()
    exif[0x0112], exif[0x010F] = orientation, "Canon"
    raw = exif.tobytes()  # big-endian ("MM"): tag, type, count, value
    assert b"\x01\x0f\x00\x02" in raw
    return raw.replace(b"\x01\x0f\x00\x02", b"\x01\x06\x00\x02")


@pytest.mark.parametrize(
    ("fmt", "options"), [("JPEG", {"quality": 95}), ("PNG", {}), ("WEBP", {"lossless": True})]
)
def test_a_broken_exif_block_still_loads_turned_by_its_orientation(mnist, fmt, options):
    d = Image.fromarray(255 - np.asarray(Image.fromarray(mnist.test.images[0]).resize((140, 140))))
    reference, _ = ink.prepare(np.asarray(d))
    data = encode(d.rotate(90, expand=True), fmt, exif=broken_exif(6), **options)
    digit, _ = ink.prepare(data, "broken-exif")  # struct.error from Pillow, before the fix
    assert digit is not None
    assert np.abs(digit.astype(int) - reference.astype(int)).mean() < 12


def test_an_unreadable_exif_block_is_ignored():
    """EXIF that Pillow cannot parse at all (a bad TIFF header, a cut IFD): the pixels as stored."""
    d = Image.new("L", (64, 48), 255)
    good = broken_exif(6)
    for exif in (b"Exif\x00\x00MM\x00f" + good[10:], good[:24]):
        digit, _ = ink.prepare(encode(d, "PNG", exif=exif), "odd-exif")
        assert digit is None  # a blank page, read, not refused


def test_bad_images_are_one_line_errors(tmp_path, monkeypatch):
    good = encode(Image.new("L", (64, 64), 200), "PNG")
    cases = {
        "empty.png": (b"", "file is empty"),
        "text.png": (b"hello, not an image", "not an image format Pillow can read"),
        "truncated.png": (good[: len(good) // 2], "not a readable image"),
    }
    for name, (data, needle) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ink.ImageError, match=needle):
            ink.prepare(tmp_path / name)
    with pytest.raises(ink.ImageError, match="no such file"):
        ink.prepare(tmp_path / "missing.png")
    # the guard, without a 400-megapixel file (the module: `ink.prepare` is its function)
    monkeypatch.setattr(importlib.import_module("digitlab.ink.prepare"), "MAX_PIXELS", 100 * 100)
    with pytest.raises(ink.ImageError, match="too large"):
        ink.prepare(encode(Image.new("L", (200, 200), 255), "PNG"), "big.png")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.binary(max_size=2000)
    | st.builds(lambda b: b"\x89PNG\r\n\x1a\n" + b, st.binary(max_size=500))
)
def test_fuzzed_bytes_never_crash(data):
    try:
        digit, _ = ink.prepare(data, "fuzz")
    except ink.ImageError:
        return
    assert digit is None or digit.shape == (28, 28)


def test_predict_command(mlp_run, mnist, tmp_path):
    from typer.testing import CliRunner

    from digitlab.cli import app

    (tmp_path / "seven.jpg").write_bytes(photo(mnist.test.images[0], np.random.default_rng(2)))
    Image.new("L", (120, 90), 240).save(tmp_path / "blank.png")
    result = CliRunner().invoke(
        app,
        [
            "predict",
            str(mlp_run),
            str(tmp_path / "seven.jpg"),
            str(tmp_path / "blank.png"),
            "--show-steps",
            str(tmp_path / "steps.png"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "seven.jpg: 7 (" in result.stdout and "blank.png: no digit found" in result.stdout
    assert (tmp_path / "steps-1.png").stat().st_size > 10_000  # every image's steps
    assert (tmp_path / "steps-2.png").stat().st_size > 5_000
    result = CliRunner().invoke(
        app, ["predict", str(mlp_run), str(tmp_path / "seven.jpg"), "--unsure", "1.0", "--json"]
    )
    assert '"status": "unsure"' in result.stdout


def test_a_digits_strokes_fill_mnists_box_whatever_margin_the_crop_has(mnist, monkeypatch):
    """MNIST fitted each digit's strokes, not a margin around them, in 20x20: a crop with a
    wide margin is read at the size of one without; a speck in faint ink stays bounded."""
    digit = mnist.test.images[0].astype(np.float32)
    rows, cols = np.flatnonzero(digit.max(axis=1) > 127), np.flatnonzero(digit.max(axis=0) > 127)
    tight = digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    wide = np.pad(tight, 15)
    assert np.abs(ink.to_mnist(tight).astype(int) - ink.to_mnist(wide)).max() <= 2
    strokes = ink.to_mnist(wide) > 127
    height = np.flatnonzero(strokes.any(axis=1))
    assert 19 <= height[-1] - height[0] + 1 <= 21  # the strokes fill the box, as in MNIST
    speck = np.full((400, 400), 100, np.float32)
    speck[200, 200] = 255
    sizes = []
    resize = Image.Image.resize
    monkeypatch.setattr(Image.Image, "resize", lambda im, size, *a, **k: (
        sizes.append(size), resize(im, size, *a, **k))[1])  # fmt: skip
    assert ink.to_mnist(speck).shape == (28, 28)
    assert sizes and max(max(size) for size in sizes) <= 56  # not 8,000 px for one bright pixel


def test_an_mnist_digit_is_read_as_evaluate_reads_it(mlp_run, mnist, tmp_path):
    """A 28x28 digit that already sits as MNIST's do (a test image saved as PNG, or its
    negative) is read as it is, not blurred and refitted: predict agrees with the model's own
    answer on the array. A drawing scaled to fill the square is still prepared."""
    n = 200
    images, labels = mnist.test.images[:n], mnist.test.labels[:n]
    files = []
    for i, image in enumerate(images):
        path = tmp_path / f"{i}.png"
        Image.fromarray(255 - image if i % 2 else image).save(path)
        files.append(path)
    info, model = runs.read_info(mlp_run), runs.load_model(mlp_run, engine="numpy")
    plain = classify(model, info, images).argmax(1)
    results = read_images(mlp_run, files)
    assert [r["label"] for r in results] == [str(k) for k in plain]
    assert all(np.array_equal(r["digit"], image) for r, image in zip(results, images, strict=True))
    assert np.mean([r["label"] == str(y) for r, y in zip(results, labels, strict=True)]) > 0.95

    rows, cols = np.flatnonzero(images[0].any(axis=1)), np.flatnonzero(images[0].any(axis=0))
    big = Image.fromarray(images[0][rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])
    filled = np.asarray(big.resize((28, 28), Image.Resampling.LANCZOS))
    digit, _ = ink.prepare(filled)
    assert digit is not None and not np.array_equal(digit, filled)
    as_placed = importlib.import_module("digitlab.ink.place").as_placed
    assert as_placed(filled.astype(np.float32)) is None
