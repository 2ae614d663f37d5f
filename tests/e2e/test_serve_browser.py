"""The `digitlab serve` page in headless Chromium (Debian's package, driven by Playwright):
draw the strokes of a real MNIST 7 with the mouse and read 7 off the page; upload a photo; the
keyboard, a phone-sized screen, the API docs; nothing loaded from anywhere else.

DIGITLAB_SCREENSHOTS=1 writes the README's screenshot, docs/images/serve.png.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from digitlab.predict import Predictor

sys.path.insert(0, str(Path(__file__).parents[1]))
from photos import photo, strip

ROOT = Path(__file__).resolve().parents[2]
DIGITLAB = Path(sys.executable).with_name("digitlab")


@pytest.fixture(scope="module")
def url(mlp_run, tmp_path_factory):
    yield from served(mlp_run, tmp_path_factory)


@pytest.fixture(scope="module")
def reader_url(tmp_path_factory):
    """The built-in reader served: the run with a novelty check."""
    yield from served("reader", tmp_path_factory)


def served(run, tmp_path_factory):
    """A real `digitlab serve` process; stopped by its PID afterwards, its log free of errors."""
    log = tmp_path_factory.mktemp("serve") / "stderr.txt"
    server = subprocess.Popen(
        [str(DIGITLAB), "serve", str(run), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
    )
    found = re.search(r"http://127\.0\.0\.1:(\d+)", server.stdout.readline())
    assert found, log.read_text()
    url = f"http://127.0.0.1:{found.group(1)}"
    deadline = time.monotonic() + 30
    while not healthy(url):
        assert time.monotonic() < deadline and server.poll() is None, log.read_text()
        time.sleep(0.1)
    yield url
    server.terminate()
    server.wait(timeout=15)
    assert "Traceback" not in log.read_text()


def healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def page(browser, url):
    """A desktop-sized page at /, recording every request and every script error."""
    page = browser.new_page(viewport={"width": 1100, "height": 780})
    page.requests, page.errors = [], []
    page.on("request", lambda r: page.requests.append(r.url))
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.on(  # a refused upload is logged as a failed load: that one is expected
        "console",
        lambda m: (
            m.type == "error"
            and not m.text.startswith(
                "Failed to load resource: the server responded with a status of 4"
            )
            and page.errors.append(m.text)
        ),
    )
    page.goto(url + "/")
    page.wait_for_load_state("networkidle")
    yield page
    assert page.errors == []
    assert all(u.startswith((url, "data:", "blob:")) for u in page.requests), page.requests
    page.close()


# ---- strokes of an MNIST digit -------------------------------------------------------------


def thin(ink: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning: a one-pixel-wide skeleton of a boolean image."""
    image = np.pad(ink.astype(np.uint8), 1)
    changed = True
    while changed:
        changed = False
        for step in (0, 1):
            p = [
                np.roll(np.roll(image, -dr, 0), -dc, 1)
                for dr, dc in [(-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1)]
            ]  # P2..P9, clockwise from north
            neighbours = sum(p)
            transitions = sum((p[i] == 0) & (p[(i + 1) % 8] == 1) for i in range(8))
            if step == 0:
                ends = (p[0] * p[2] * p[4] == 0) & (p[2] * p[4] * p[6] == 0)
            else:
                ends = (p[0] * p[2] * p[6] == 0) & (p[0] * p[4] * p[6] == 0)
            remove = (
                (image == 1) & (neighbours >= 2) & (neighbours <= 6) & (transitions == 1) & ends
            )
            if remove.any():
                image[remove] = 0
                changed = True
    return image[1:-1, 1:-1].astype(bool)


def strokes(digit: np.ndarray) -> list[list[tuple[float, float]]]:
    """The pen's paths over an MNIST digit: its skeleton walked from an end, pixel to pixel."""
    skeleton = thin(digit > 96)
    left = {(int(r), int(c)) for r, c in np.argwhere(skeleton)}

    def around(point):
        r, c = point
        return [(r + dr, c + dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr or dc)]

    paths = []
    while left:
        ends = [p for p in left if sum(q in left for q in around(p)) == 1]
        here = min(ends or left)
        path = [here]
        left.discard(here)
        while nxt := [q for q in around(here) if q in left]:
            here = min(nxt, key=lambda q: abs(q[0] - here[0]) + abs(q[1] - here[1]))
            path.append(here)
            left.discard(here)
        paths.append(smooth([(c + 0.5, r + 0.5) for r, c in path]))  # (x, y), MNIST pixels
    return [p for p in paths if len(p) > 2]


def smooth(path: list[tuple[float, float]], k: int = 2) -> list[tuple[float, float]]:
    """A moving average over 2k+1 points (ends kept), so a hand, not a staircase, draws it."""
    xy = np.array(path)
    out = [tuple(xy[0])]
    for i in range(1, len(xy) - 1):
        near = xy[max(0, i - k) : i + k + 1]
        out.append(tuple(near.mean(axis=0)))
    return [*out, tuple(xy[-1])] if len(xy) > 1 else out


def draw(page, digit: np.ndarray) -> None:
    """Mouse strokes along the digit's skeleton, scaled from 28x28 to the pad on screen."""
    box = page.locator("#pad").bounding_box()
    scale = box["width"] / 28
    for path in strokes(digit):
        x, y = path[0]
        page.mouse.move(box["x"] + x * scale, box["y"] + y * scale)
        page.mouse.down()
        for x, y in path[1:]:
            page.mouse.move(box["x"] + x * scale, box["y"] + y * scale, steps=2)
        page.mouse.up()


def settled(page) -> dict:
    """Wait until the page shows the answer to what is on the pad now; that answer."""
    from playwright.sync_api import expect

    version = page.get_attribute("#pad", "data-version")
    expect(page.locator("#result")).to_have_attribute("data-answered", version, timeout=10_000)
    return {
        "label": page.inner_text("#label"),
        "confidence": page.inner_text("#confidence"),
        "bars": page.locator("#bars li").count(),
        "best": page.eval_on_selector_all("#bars li.best", "els => els.map(e => e.dataset.label)"),
    }


# ---- the tests -------------------------------------------------------------------------------


def test_drawing_the_strokes_of_an_mnist_seven_reads_seven(page, mnist, tmp_path):
    seven = mnist.test.images[0]
    assert mnist.test.labels[0] == 7
    assert len(strokes(seven)) >= 1
    draw(page, seven)
    shown = settled(page)
    assert shown["label"] == "7" and shown["best"] == ["7"] and shown["bars"] == 10
    assert re.fullmatch(r"\d+% sure", shown["confidence"])
    assert page.inner_text("#timing").startswith("Server: ")
    seen = page.evaluate(
        "() => Array.from(document.getElementById('seen').getContext('2d')"
        ".getImageData(0, 0, 28, 28).data.filter((_, i) => i % 4 === 0))"
    )
    seen = np.array(seen).reshape(28, 28)
    assert seen.max() > 200 and seen[0].max() == 0 and seen[:, 0].max() == 0  # a centred digit
    posted = [u for u in page.requests if u.endswith("/api/predict?top=3")]
    assert 1 <= len(posted) < 60  # live while drawing, but not a request per mouse move
    shot = ROOT / "docs/images/serve.png" if os.environ.get("DIGITLAB_SCREENSHOTS") else None
    page.screenshot(path=shot or tmp_path / "serve.png")
    assert (shot or tmp_path / "serve.png").stat().st_size > 10_000


def test_uploading_a_photo_reads_it_as_the_api_does(page, mnist, mlp_run):
    jpeg = photo(mnist.test.images[1], np.random.default_rng(11))  # a 2
    expected = Predictor(mlp_run).read(jpeg)
    page.set_input_files(
        "#upload", files=[{"name": "two.jpg", "mimeType": "image/jpeg", "buffer": jpeg}]
    )
    shown = settled(page)
    assert shown["label"] == expected["label"] == "2"
    assert shown["confidence"] == f"{round(expected['confidence'] * 100)}% sure"
    # two digits side by side in the one-digit mode: the page says why it is unsure
    pair = strip([mnist.test.images[1], mnist.test.images[0]], np.random.default_rng(1))
    assert "several digits" in Predictor(mlp_run).read(pair)["note"]  # ink 1.8 times as wide
    page.set_input_files(
        "#upload", files=[{"name": "pair.jpg", "mimeType": "image/jpeg", "buffer": pair}]
    )
    settled(page)
    assert "Unsure: wider than one digit: several digits?" in page.inner_text("#status")
    page.set_input_files(
        "#upload", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"no image"}]
    )
    settled(page)
    assert page.is_visible("#error") and "not an image" in page.inner_text("#error")


def test_a_letter_is_unsure_and_the_page_says_why(browser, reader_url):
    page = browser.new_page(viewport={"width": 1100, "height": 780})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(reader_url + "/")
    page.wait_for_load_state("networkidle")
    letter = (ROOT / "docs" / "images" / "letter_m.png").read_bytes()  # the README's M
    page.set_input_files(
        "#upload", files=[{"name": "m.png", "mimeType": "image/png", "buffer": letter}]
    )
    settled(page)
    status = page.inner_text("#status")
    assert status == "Unsure: unlike the digits it learned: a letter or a symbol?", status
    assert errors == []
    page.close()


def test_number_mode_reads_a_photographed_number_and_boxes_each_digit(page, mnist, mlp_run):
    jpeg = strip(list(mnist.test.images[:5]), np.random.default_rng(5))  # 7 2 1 0 4
    expected = Predictor(mlp_run).read_number(jpeg)
    page.check("#mode-number")
    assert page.inner_text("#draw-title") == "Write a number"
    assert page.get_attribute("#pad", "width") == "960"
    page.set_input_files(
        "#upload", files=[{"name": "number.jpg", "mimeType": "image/jpeg", "buffer": jpeg}]
    )
    shown = settled(page)
    assert shown["label"] == expected["number"] and len(expected["number"]) == 5
    assert shown["confidence"].endswith("sure of every digit")
    assert page.get_attribute("#marks", "data-boxes") == "5"
    assert page.locator("#digits li").count() == 5 and page.is_visible("#explain")
    assert page.get_attribute("#seen", "width") == str(28 * 5)
    assert any(u.endswith("/api/predict/number?top=3") for u in page.requests)
    if os.environ.get("DIGITLAB_SCREENSHOTS"):  # the README's picture of this mode
        page.screenshot(path=ROOT / "docs/images/serve-number.png")
    page.check("#mode-digit")  # back to one digit: the square pad, the bars
    assert page.get_attribute("#pad", "width") == "320" and page.is_visible("#bars")


def test_the_keyboard_reaches_every_control_and_escape_clears(page, mnist):
    draw(page, mnist.test.images[0])
    settled(page)
    focused = []
    for _ in range(8):
        page.keyboard.press("Tab")
        focused.append(page.evaluate("() => document.activeElement.id"))
    assert {"mode-digit", "pad", "clear", "upload-button"} <= set(focused), focused
    page.keyboard.press("Escape")
    assert page.inner_text("#label") == "?"
    assert page.locator("#bars li.best").count() == 0


def test_a_phone_screen_fits_and_a_finger_draws(browser, url):
    page = browser.new_page(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True)
    page.goto(url + "/")
    page.wait_for_load_state("networkidle")
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390  # no sideways scroll
    pad = page.locator("#pad").bounding_box()
    assert 300 <= pad["width"] <= 390
    result = page.locator("#result").bounding_box()
    assert result["y"] >= pad["y"] + pad["height"]  # one column: the answer below the pad
    page.touchscreen.tap(pad["x"] + pad["width"] / 2, pad["y"] + pad["height"] / 2)
    shown = settled(page)
    assert shown["bars"] == 10 and shown["label"] != "?"  # a dot was drawn, sent and read
    page.close()


def test_the_api_docs_work_offline(browser, url):
    page = browser.new_page()
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(url + "/docs")
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator("details.op").count() == 4
    model = page.locator("#get--api-model")
    model.locator("summary").click()
    model.locator("button[type=submit]").click()
    page.wait_for_selector("#get--api-model .reply-status.good")
    assert '"dataset": "mnist"' in model.locator("pre").last.inner_text()
    predict = page.locator("#post--api-predict")  # open first; its sample body is a drawn 1
    predict.locator("button[type=submit]").click()
    page.wait_for_selector("#post--api-predict .reply-status.good")
    assert '"label": "1"' in predict.locator("pre").last.inner_text()
    assert all(u.startswith(url) for u in requests), requests
    page.close()
