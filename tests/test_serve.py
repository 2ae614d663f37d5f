"""`digitlab serve` as a real process on 127.0.0.1: every route, every kind of bad input, slow
clients, the OpenAPI document under schemathesis, and a log with no server error in it."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import load_file, save_file

from digitlab import runs
from digitlab.errors import DigitlabError
from digitlab.predict import Predictor

sys.path.insert(0, str(Path(__file__).parent))
from photos import photo
from test_ink import broken_exif

DIGITLAB = Path(sys.executable).with_name("digitlab")
TIMEOUT = 2  # --timeout for the test server: seconds for a request's headers, then its body
SERVER_ERRORS: list[str] = []  # every 500 a test saw (each fails its test); the log must agree


def start_server(run: Path, log: Path, *options: str) -> tuple[subprocess.Popen, list[str], str]:
    """`digitlab serve RUN --port 0 ...`: the process, the lines it printed first, its URL."""
    server = subprocess.Popen(
        [str(DIGITLAB), "serve", str(run), "--port", "0", *options],
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
    )
    lines = [server.stdout.readline()]
    if "0.0.0.0" in options:
        lines.append(server.stdout.readline())
    found = re.search(r"http://([\d.]+):(\d+)", lines[0])
    assert found, (lines, log.read_text())
    url = f"http://127.0.0.1:{found.group(2)}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline and server.poll() is None, log.read_text()
        time.sleep(0.1)
    return server, lines, url


def stop(server: subprocess.Popen) -> None:
    """SIGTERM by PID; uvicorn shuts down and exits as a terminated process does (128 + 15)."""
    server.terminate()
    try:
        assert server.wait(timeout=15) in (0, 143, -15)
    finally:
        if server.poll() is None:
            server.kill()


@pytest.fixture(scope="module")
def served(mlp_run, tmp_path_factory):
    """A server for the whole module; afterwards its log must hold no error but the known ones."""
    log = tmp_path_factory.mktemp("serve") / "stderr.txt"
    server, lines, url = start_server(mlp_run, log, "--timeout", str(TIMEOUT))
    yield {"url": url, "lines": lines, "pid": server.pid, "log": log}
    stop(server)
    text = log.read_text()
    assert text.count("Traceback") == text.count("ERROR:") == len(SERVER_ERRORS), text


@pytest.fixture
def url(served) -> str:
    return served["url"]


@pytest.fixture(scope="module")
def reader(mlp_run) -> Predictor:
    return Predictor(mlp_run)


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def post(url: str, body: bytes | str, content_type: str | None, path="/api/predict", **kw):
    headers = {"Content-Type": content_type} if content_type else {}
    content = body.encode() if isinstance(body, str) else body
    response = httpx.post(url + path, content=content, headers=headers, timeout=30, **kw)
    if response.status_code == 500:
        SERVER_ERRORS.append(path)
    return response


def pixels_body(array) -> str:
    return json.dumps({"pixels": np.asarray(array).tolist()})


# ---- the routes ------------------------------------------------------------------------------


def test_it_says_where_it_listens_and_answers_health(served, mlp_run):
    assert served["lines"][0].startswith("digitlab serve: mlp-256-128-64")
    assert "http://127.0.0.1:" in served["lines"][0] and "/docs" in served["lines"][0]
    assert httpx.get(served["url"] + "/healthz").json() == {
        "status": "ok",
        "model": "mlp-256-128-64",
    }
    assert httpx.head(served["url"] + "/healthz").status_code == 200  # was 405
    lost = httpx.get(served["url"] + "/" + "a" * 20_000)  # the path was echoed whole
    assert lost.status_code == 404 and len(lost.text) < 400, len(lost.text)


def test_model_describes_the_run(url, mlp_run):
    info = runs.read_info(mlp_run)
    model = httpx.get(url + "/api/model").json()
    assert model["name"] == "mlp-256-128-64" and model["run"] == "mlp"
    assert model["classes"] == [str(i) for i in range(10)] and model["dataset"] == "mnist"
    assert model["accuracy"] == pytest.approx(info["test"]["acc"]) and model["accuracy"] > 0.97
    assert model["spec"] == info["spec"] and model["num_params"] == info["num_params"]
    assert model["digitlab_version"] == model["trained_with"] == info["digitlab_version"]
    assert model["limits"] == {
        "max_body_bytes": 5_000_000,
        "max_pixels": 25_000_000,
        "body_timeout_s": TIMEOUT,
    }


def test_pixels_go_to_the_model_as_they_are(url, mnist, reader):
    images, labels = mnist.test.images[:40], mnist.test.labels[:40]
    expected = reader.probabilities(images)
    for image, p in zip(images, expected, strict=True):
        answer = post(url, pixels_body(image), "application/json").json()
        assert answer["source"] == "pixels" and answer["input"] == image.tolist()
        assert answer["probabilities"] == pytest.approx(p.tolist(), abs=1e-6)
        assert answer["label"] == str(int(p.argmax())) == answer["top"][0]["label"]
        assert answer["confidence"] == pytest.approx(float(p.max()))
        assert [t["p"] for t in answer["top"]] == sorted(
            (t["p"] for t in answer["top"]), reverse=True
        )
        assert len(answer["top"]) == 3 and answer["status"] in ("ok", "unsure")
        timing = answer["timing"]
        assert 0 <= timing["model_ms"] <= timing["total_ms"] and timing["read_ms"] >= 0
    assert (expected.argmax(1) == labels).mean() > 0.95


def test_pixels_in_0_to_1_and_masks_read_as_digitlab_read_reads_them(url, mnist, reader):
    """Pixels / 255 and a 0/1 mask answered 'no digit found' (too faint for 0..255)."""
    seven = mnist.test.images[0]
    past_one = seven / 255 * 1.02  # a resize's overshoot: read as 0..255, a blank page
    for given in (seven / 255, (seven > 127).astype(int), past_one):
        body = json.dumps({"pixels": given.tolist()})
        answer = post(url, body, "application/json").json()
        assert answer["label"] == "7" and answer["status"] == "ok", answer["status"]
        expected = np.rint(np.minimum(given * 255, 255)).astype(np.uint8)
        assert answer["input"] == expected.tolist()


def test_four_ways_to_send_a_photo_read_it_as_digitlab_predict_does(url, mnist, reader):
    jpeg = photo(mnist.test.images[0], np.random.default_rng(3))  # a 7
    expected = reader.read(jpeg)
    encoded = base64.b64encode(jpeg).decode()
    answers = [
        httpx.post(url + "/api/predict", files={"file": ("seven.jpg", jpeg, "image/jpeg")}),
        post(url, jpeg, "image/jpeg"),
        post(url, json.dumps({"image": encoded}), "application/json"),
        post(url, json.dumps({"image": f"data:image/jpeg;base64,{encoded}"}), "application/json"),
    ]
    for response in answers:
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["source"] == "image" and answer["label"] == expected["label"] == "7"
        assert answer["confidence"] == pytest.approx(expected["confidence"])
        assert answer["input"] == expected["digit"].tolist()
        assert answer["timing"]["prepare_ms"] > 0


def test_a_png_of_a_drawing_is_prepared_like_a_photo(url, mnist, reader):
    drawing = np.asarray(Image.fromarray(255 - mnist.test.images[1]).resize((320, 320)))  # a 2
    answer = post(url, png(drawing), "image/png").json()
    expected = reader.read(png(drawing))
    assert answer["label"] == expected["label"] == "2"
    assert answer["input"] == expected["digit"].tolist()
    assert answer["status"] == "ok" and answer.get("note") is None
    # two digits drawn side by side in the one-digit mode: unsure, with why, as reader.read says
    pair = np.hstack([255 - mnist.test.images[1], 255 - mnist.test.images[0]])  # 2 then 7
    answer = post(url, png(pair), "image/png").json()
    expected = reader.read(png(pair))
    assert answer["status"] == expected["status"] == "unsure"
    assert answer["note"] == expected["note"] and "several digits" in answer["note"]


def test_blank_input_has_no_digit(url):
    for response in (
        post(url, pixels_body(np.zeros((28, 28), np.uint8)), "application/json"),
        post(url, png(np.full((200, 300), 255, np.uint8)), "image/png"),
    ):
        assert response.status_code == 200
        answer = response.json()
        assert answer["status"] == "no digit found" and answer["label"] is None
        assert answer["input"] is None and answer["top"] == [] and answer["probabilities"] == []


def test_top_k(url, mnist):
    body = pixels_body(mnist.test.images[0])
    answer = post(url + "", body, "application/json", params={"top": 10}).json()
    assert sorted(t["label"] for t in answer["top"]) == [str(i) for i in range(10)]
    for bad in ("0", "11", "three"):
        response = post(url, body, "application/json", params={"top": bad})
        assert response.status_code == 422 and response.json()["error"].startswith("top: ")
    for route in ("", "/number"):  # the last of two answered without a word
        response = post(
            url, body, "application/json", "/api/predict" + route, params=[("top", 1), ("top", 5)]
        )
        assert response.status_code == 422
        assert response.json()["error"] == "top: given more than once; give it once"


def test_page_and_docs_load_nothing_from_elsewhere(url):
    for path in ("/", "/docs"):
        page = httpx.get(url + path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in page.headers["content-security-policy"]
        links = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert links and all(link.startswith("/") and not link.startswith("//") for link in links)
        for link in links:
            assert httpx.get(url + link).status_code == 200, link
    document = httpx.get(url + "/openapi.json").json()
    assert set(document["paths"]) == {
        "/api/predict",
        "/api/predict/number",
        "/api/model",
        "/healthz",
    }


def test_unknown_routes_and_methods_answer_json(url):
    missing = httpx.get(url + "/api/nothing")
    assert missing.status_code == 404 and "not found" in missing.json()["error"]
    wrong = httpx.get(url + "/api/predict")
    assert wrong.status_code == 405 and "GET /api/predict" in wrong.json()["error"]


# ---- bad input: each answers 4xx with {"error": ...} naming the problem ----------------------

ROW = [0] * 28
DIGIT = [ROW] * 8 + [[0] * 10 + [255] * 8 + [0] * 10] * 12 + [ROW] * 8


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with no pixel data behind it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0"))


def multipart(*parts: tuple[str, str | None, bytes]) -> tuple[bytes, str]:
    boundary = "digitlab-test-boundary"
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += (
            f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
        )
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def bad_inputs() -> list:
    gray = np.zeros((60, 60), np.uint8)
    gray[10:50, 28:32] = 255
    real_png = png(255 - gray)
    buffer = io.BytesIO()
    Image.fromarray(255 - gray).save(buffer, format="JPEG")
    real_jpeg = buffer.getvalue()
    nested = "[" * 100_000 + "]" * 100_000
    two_files, two_files_type = multipart(("file", "a.png", real_png), ("other", "b.png", real_png))
    no_file, no_file_type = multipart(("note", None, b"hello"))
    cut_short = two_files[: len(two_files) // 3]  # the first file's part never closed
    empty_file, empty_file_type = multipart(("file", "a.png", b""))
    text_file, text_file_type = multipart(("file", "a.txt", b"just some text, no image"))
    J = "application/json"
    cases = [
        ("no content type", real_png, None, 415, "Content-Type '(none)'"),
        ("text/plain", "hello", "text/plain", 415, "'text/plain'"),
        ("form-urlencoded", "a=1", "application/x-www-form-urlencoded", 415, "send multipart"),
        ("empty PNG body", b"", "image/png", 400, "body is empty"),
        ("empty JSON body", b"", J, 400, "body is empty"),
        ("random bytes as PNG", bytes(range(256)) * 4, "image/png", 422, "not an image"),
        ("text as JPEG", "not a jpeg", "image/jpeg", 422, "not an image"),
        ("truncated PNG", truncated(real_png), "image/png", 422, "image"),
        ("truncated JPEG", truncated(real_jpeg), "image/jpeg", 422, "truncated"),
        ("malformed JSON", '{"pixels": [', J, 400, "malformed JSON"),
        ("JSON not UTF-8", b'{"pixels": "\xff\xfe"}', J, 400, "not UTF-8"),
        ("JSON nested too deeply", nested, J, 400, "nested too deeply"),
        ("JSON array", "[1, 2]", J, 422, "must be an object"),
        ("JSON without a key", "{}", J, 422, "exactly one of"),
        ("JSON with both keys", json.dumps({"pixels": DIGIT, "image": "x"}), J, 422, "exactly one"),
        ("JSON with another key", json.dumps({"pixel": DIGIT}), J, 422, "'pixel'"),
        ("pixels a string", json.dumps({"pixels": "0,0,0"}), J, 422, "got a string"),
        ("pixels empty", json.dumps({"pixels": []}), J, 422, "expected 28 rows"),
        ("27 rows", json.dumps({"pixels": DIGIT[:27]}), J, 422, "got 27 rows"),
        (
            "a short row",
            json.dumps({"pixels": [*DIGIT[:5], ROW[:27], *DIGIT[6:]]}),
            J,
            422,
            "pixels[5]: expected 28 numbers, got 27",
        ),
        ("a row that is a number", json.dumps({"pixels": [0] * 28}), J, 422, "pixels[0]"),
        ("28x28x3", json.dumps({"pixels": [[[0, 0, 0]] * 28] * 28}), J, 422, "got an array"),
        ("strings", json.dumps({"pixels": [["0"] * 28] * 28}), J, 422, "got a string"),
        ("booleans", json.dumps({"pixels": [[True] * 28] * 28}), J, 422, "got a boolean"),
        ("nulls", json.dumps({"pixels": [[None] * 28] * 28}), J, 422, "got null"),
        (
            "256",
            json.dumps({"pixels": [*DIGIT[:9], [256] * 28, *DIGIT[10:]]}),
            J,
            422,
            "pixels[9][0]: 256 is not a number in 0..255",
        ),
        ("negative", json.dumps({"pixels": [[-1] * 28] * 28}), J, 422, "not a number in 0..255"),
        (
            "NaN",
            '{"pixels": [' + ",".join(["[NaN" + ",0" * 27 + "]"] * 28) + "]}",
            J,
            422,
            "not a number in 0..255",
        ),
        (
            "dark on light",
            json.dumps({"pixels": (255 - np.array(DIGIT)).tolist()}),
            J,
            422,
            "dark ink on light paper",
        ),
        ("image not a string", json.dumps({"image": 12}), J, 422, "expected a base64 string"),
        (
            "JSON with a 5000-digit number",
            '{"pixels": ' + "1" * 5000 + "}",
            J,
            422,
            "a number of more than 4,300 digits",
        ),
        (
            "a pixel of 401 digits",
            json.dumps({"pixels": [*DIGIT[:9], [10**400, *ROW[1:]], *DIGIT[10:]]}),
            J,
            422,
            "pixels[9][0]: 1000000000... (401 digits) is not a number in 0..255",
        ),
        ("image a huge number", json.dumps({"image": 10**400}), J, 422, "got a number"),
        ("pixels a huge number", json.dumps({"pixels": 10**400}), J, 422, "got a number"),
        ("image empty", json.dumps({"image": ""}), J, 422, "empty"),
        ("image not base64", json.dumps({"image": "not base64!"}), J, 422, "not valid base64"),
        (
            "image base64 of text",
            json.dumps({"image": base64.b64encode(b"hi").decode()}),
            J,
            422,
            "not an image",
        ),
        ("multipart without boundary", b"--x\r\n", "multipart/form-data", 400, "multipart"),
        ("multipart without a file", no_file, no_file_type, 422, "'note'"),
        ("multipart with two files", two_files, two_files_type, 400, "more than one file"),
        ("multipart cut short", cut_short, two_files_type, 400, "was it cut short"),
        ("multipart empty file", empty_file, empty_file_type, 422, "file is empty"),
        ("multipart text file", text_file, text_file_type, 422, "not an image"),
        (
            "PNG claiming 6000x6000",
            png_header(6000, 6000),
            "image/png",
            413,
            "36,000,000 pixels; the limit is 25,000,000",
        ),
        (
            "PNG claiming 100000x100000",
            png_header(100_000, 100_000),
            "image/png",
            413,
            "before decoding: over 178,956,970 pixels; the limit is 25,000,000",
        ),
    ]
    return [pytest.param(*c[1:], id=c[0]) for c in cases]


@pytest.mark.parametrize(("body", "content_type", "status", "message"), bad_inputs())
def test_bad_input_answers_4xx_saying_what_is_wrong(url, body, content_type, status, message):
    started = time.perf_counter()
    response = post(url, body, content_type)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert message.lower() in response.json()["error"].lower(), response.json()
    assert time.perf_counter() - started < 2  # refused, not worked on (nothing was decoded)


def test_the_number_route_refuses_bad_input_the_same_way(url):
    assert post(url, "{}", "application/json", "/api/predict/number").status_code == 422
    too_big = post(url, png_header(6000, 6000), "image/png", "/api/predict/number")
    assert too_big.status_code == 413 and "pixels" in too_big.json()["error"]
    ragged = json.dumps({"pixels": [[0, 0, 0], [0, 0]]})
    response = post(url, ragged, "application/json", "/api/predict/number")
    assert response.status_code == 422 and "pixels[1]: expected 3 numbers" in response.text


def test_bodies_over_the_limit_are_refused_declared_or_streamed(url):
    declared = post(url, b"\0" * 5_000_001, "image/png")
    assert declared.status_code == 413
    assert "5,000,001 bytes; the limit is 5,000,000" in declared.json()["error"]

    def chunks():  # no Content-Length: the server counts while it reads
        for _ in range(100):
            yield b"\0" * 64_000

    streamed = httpx.post(
        url + "/api/predict", content=chunks(), headers={"Content-Type": "image/png"}, timeout=30
    )
    assert streamed.status_code == 413
    assert "exceeds the limit of 5,000,000 bytes" in streamed.json()["error"]
    trailing = post(url, png(np.zeros((28, 28), np.uint8)) + b"\0" * 100, "image/png")
    assert trailing.status_code == 200  # bytes after a PNG's end are no harm


# ---- slow clients and concurrency ------------------------------------------------------------


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def read_until_closed(sock: socket.socket) -> str:
    """Everything the server sends until it closes the connection (an answer may come in
    several TCP segments)."""
    received = b""
    while chunk := sock.recv(4096):
        received += chunk
    return received.decode()


def test_a_slow_body_gets_408_and_slow_headers_are_cut_off(url, mnist):
    body_stalled, headers_stalled = connect(url), connect(url)
    body_stalled.sendall(
        b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
        b"Content-Length: 1000\r\n\r\n" + b"\x89PNG"
    )
    headers_stalled.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Ty")
    started = time.perf_counter()
    # meanwhile, others are answered at once: no worker is held by the stalled clients
    answer = post(url, pixels_body(mnist.test.images[0]), "application/json")
    assert answer.status_code == 200 and time.perf_counter() - started < 1
    reply = read_until_closed(body_stalled)
    assert reply.startswith("HTTP/1.1 408"), reply
    assert f"did not arrive within {TIMEOUT} s" in reply
    assert headers_stalled.recv(4096) == b""  # closed without an answer
    assert TIMEOUT - 0.5 < time.perf_counter() - started < TIMEOUT + 3
    body_stalled.close()
    headers_stalled.close()


def test_concurrent_requests_each_get_their_own_answer(url, mnist, reader):
    """The NumPy layers keep state between forward and backward: unguarded, answers would mix."""
    images = mnist.test.images[:64]
    expected = [str(int(i)) for i in reader.probabilities(images).argmax(1)]

    async def ask_all():
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            responses = await asyncio.gather(
                *(
                    client.post(
                        "/api/predict",
                        content=pixels_body(image),
                        headers={"Content-Type": "application/json"},
                    )
                    for image in images
                )
            )
        return [r.json() for r in responses]

    answers = asyncio.run(ask_all())
    assert [a["label"] for a in answers] == expected
    assert [a["input"] for a in answers] == images.tolist()


def test_random_bodies_never_make_a_server_error(url, mnist):
    """Corrupted PNGs and JPEGs (bytes flipped, cut, spliced), for every content type."""
    rng = np.random.default_rng(7)
    sources = [png(255 - mnist.test.images[i]) for i in range(3)]
    sources += [photo(mnist.test.images[i], rng) for i in range(3)]
    for n in range(60):
        data = np.frombuffer(sources[n % len(sources)], np.uint8).copy()
        how = n % 3
        if how == 0:  # change some bytes past the signature
            where = rng.integers(8, len(data), size=int(rng.integers(1, 20)))
            data[where] = rng.integers(0, 256, size=len(where))
        elif how == 1:  # cut short
            data = data[: int(rng.integers(1, len(data)))]
        else:  # splice in noise
            cut = int(rng.integers(8, len(data)))
            noise = rng.integers(0, 256, size=200).astype(np.uint8)
            data = np.concatenate([data[:cut], noise, data[cut:]])
        for path in ("/api/predict", "/api/predict/number"):
            response = post(url, data.tobytes(), "image/png" if n % 2 else "image/jpeg", path)
            assert response.status_code in (200, 422), (n, response.status_code, response.text)


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def odd_images() -> list:
    """Images that are valid but strange: tiny, thin, empty, unusual modes and formats."""
    rng = np.random.default_rng(0)
    stripes = np.tile(np.array([0, 255], np.uint8), 2500)
    checker = np.array([[0, 255], [255, 0]], np.uint8)
    half = np.array([[0, 0], [255, 255]], np.uint8)
    cases = [
        ("1x1", encoded(Image.new("L", (1, 1), 0), "PNG"), ()),
        ("2x2 checker", encoded(Image.fromarray(checker), "PNG"), ()),
        ("2x2 half dark", encoded(Image.fromarray(half), "PNG"), ()),
        ("1x5000 stripes", encoded(Image.fromarray(stripes[None]), "PNG"), ()),
        ("5000x1 stripes", encoded(Image.fromarray(stripes[:, None]), "PNG"), ()),
        (
            "16-bit noise",
            encoded(Image.fromarray(rng.integers(0, 65535, (50, 50), np.uint16)), "PNG"),
            (),
        ),
        ("transparent", encoded(Image.new("RGBA", (40, 40), (0, 0, 0, 0)), "PNG"), ()),
        ("CMYK", encoded(Image.new("CMYK", (40, 40), (0, 0, 0, 255)), "JPEG"), ()),
        ("GIF", encoded(Image.new("P", (40, 40), 3), "GIF"), ()),
        ("BMP", encoded(Image.new("RGB", (40, 40), (10, 10, 10)), "BMP"), ()),
        ("WebP", encoded(Image.new("RGB", (40, 40), (250, 250, 250)), "WEBP"), ()),
        ("ICO", encoded(Image.new("RGB", (32, 32)), "ICO"), ()),
        (
            "float TIFF",
            encoded(Image.fromarray(rng.random((30, 30), np.float32) * 1e6), "TIFF"),
            (),
        ),
        (
            "NaN TIFF",
            encoded(Image.fromarray(np.full((30, 30), np.nan, np.float32)), "TIFF"),
            (),
        ),
        (
            "negative int TIFF",
            encoded(Image.fromarray(np.full((30, 30), -5, np.int32)), "TIFF"),
            (),
        ),
        ("1-bit noise", encoded(Image.fromarray(rng.random((300, 300)) > 0.5), "PNG"), ()),
    ]
    params = []
    for name, data, _ in cases:
        for route in ("digit", "number"):
            params.append(pytest.param(data, route, id=f"{name}-{route}"))
    return params


@pytest.mark.parametrize(("data", "route"), odd_images())
def test_odd_images_are_read_or_refused_never_a_server_error(url, data, route):
    path = "/api/predict" if route == "digit" else "/api/predict/number"
    response = post(url, data, "image/png", path)
    assert response.status_code in (200, 422), response.text


# ---- the OpenAPI document --------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/predict",
        "/api/predict/number",
        "/api/model",
        "/healthz",
    ],
)
def test_openapi_document_holds_for_generated_requests(url, path):
    """Requests generated from the document (valid and invalid) get answers that match it."""
    schemathesis = pytest.importorskip("schemathesis", reason="needs schemathesis (dev extra)")
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        negative_data_rejection,
        response_schema_conformance,
        status_code_conformance,
    )

    # positive_data_acceptance is left out: any bytes are a schema-valid "binary" image, and the
    # server rightly refuses most of them (422); that is what the document says.
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
        negative_data_rejection,
    ]
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    assert sorted(schema) == ["/api/model", "/api/predict", "/api/predict/number", "/healthz"]
    (operation,) = schema[path].values()
    statuses: dict[int, int] = {}
    modes = [GenerationMode.POSITIVE]
    if operation.method == "post":
        modes.append(GenerationMode.NEGATIVE)
    for mode in modes:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=40,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def check(case):
            response = case.call(timeout=30)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code == 500:
                SERVER_ERRORS.append(path)
            case.validate_response(response, checks=checks)

        check()
    assert statuses.get(200, 0) > 0, statuses  # the generated requests reached real answers
    if operation.method == "post":
        assert statuses.get(422, 0) > 5, statuses


# ---- numbers, the 500 handler, and a second server -------------------------------------------


def test_a_number_is_read_as_digitlab_predict_reads_it(url, mnist, reader):
    picks = [int(np.flatnonzero(mnist.test.labels == d)[3]) for d in (2, 0, 4, 9)]
    row = np.concatenate([mnist.test.images[i][:, 3:25] for i in picks], axis=1)
    image = np.pad(255 - row, 10, constant_values=255)
    big = png(np.asarray(Image.fromarray(image).resize((image.shape[1] * 6, image.shape[0] * 6))))
    expected = reader.read_number(big)
    answer = post(url, big, "image/png", "/api/predict/number").json()
    assert answer["number"] == expected["number"] and len(answer["digits"]) == 4
    assert answer["number"] == "2049"
    assert answer["boxes"] == [list(box) for box in expected["boxes"]]
    for digit, want in zip(answer["digits"], expected["digits"], strict=True):
        assert digit["label"] == want["label"] and digit["input"] == want["digit"].tolist()
    pixels = post(url, pixels_body(row), "application/json", "/api/predict/number").json()
    assert pixels["source"] == "pixels" and pixels["number"] == reader.read_number(row)["number"]


def test_an_unexpected_error_answers_500_json(mlp_run, monkeypatch):
    """In-process, with the model made to fail: the catch-all's answer (no real request above
    reached it; the module's server log is checked for that)."""
    from digitlab.serve import create_app
    from digitlab.serve.app import Reader

    def broken(self, call, digits):
        raise RuntimeError("the model broke")

    app = create_app(mlp_run)  # first: a model failing at start is refused there
    monkeypatch.setattr(Reader, "in_model", broken)  # the one door to the model
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)

    async def ask():
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post(
                "/api/predict",
                content=pixels_body(DIGIT),
                headers={"Content-Type": "application/json"},
            )

    response = asyncio.run(ask())
    assert response.status_code == 500
    assert response.json() == {"error": "internal error (logged by the server)"}
    assert response.headers["connection"] == "close"  # the connection's state is unknown


def test_two_workers_on_all_interfaces_warn_and_serve(mlp_run, mnist, tmp_path):
    server, lines, url = start_server(
        mlp_run, tmp_path / "stderr.txt", "--host", "0.0.0.0", "--workers", "2"
    )
    try:
        assert "http://0.0.0.0:" in lines[0]
        assert (
            lines[1].startswith("warning: listening on 0.0.0.0") and "no authentication" in lines[1]
        )
        for image in mnist.test.images[:4]:
            assert post(url, pixels_body(image), "application/json").status_code == 200
    finally:
        stop(server)
    assert "Traceback" not in (tmp_path / "stderr.txt").read_text()


def test_a_bad_run_fails_before_listening(tmp_path):
    done = subprocess.run(
        [str(DIGITLAB), "serve", str(tmp_path / "missing"), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("error: ") and "missing" in done.stderr


# ---- nothing lost, nothing crashes, nothing hangs (issue 16) ---------------------------------


def strict_json(text: str):
    """JSON as the standard has it: NaN and Infinity are not numbers."""

    def refuse(constant):
        raise AssertionError(f"{constant} in JSON: {text[:200]}")

    return json.loads(text, parse_constant=refuse)


def test_a_jpeg_with_a_broken_exif_block_is_read_every_way(url, mnist):
    """Pillow's exif_transpose raised struct.error on it: HTTP 500 on both routes, every way."""
    seven = Image.open(io.BytesIO(photo(mnist.test.images[0], np.random.default_rng(3))))
    jpeg = encoded_with(seven.rotate(180), "JPEG", exif=broken_exif(3), quality=95)
    upload, upload_type = multipart(("file", "seven.jpg", jpeg))
    as_json = json.dumps({"image": base64.b64encode(jpeg).decode()})
    for path, field in (("/api/predict", "label"), ("/api/predict/number", "number")):
        for body, content_type in (
            (jpeg, "image/jpeg"),
            (upload, upload_type),
            (as_json, "application/json"),
        ):
            response = post(url, body, content_type, path)
            assert response.status_code == 200, (path, content_type, response.text)
            assert response.json()[field] == "7"


def encoded_with(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def ask_in_process(app, path: str, body: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)

    async def ask():
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post(
                path, content=body, headers={"Content-Type": "application/json"}
            )

    return asyncio.run(ask())


def test_a_model_answering_nan_gets_a_500_never_nan_in_json(mlp_run, monkeypatch):
    from digitlab.serve import create_app

    app = create_app(mlp_run)
    # the last step of every way to the probabilities (with or without the novelty check)
    monkeypatch.setattr(
        "digitlab.predict.probabilities_of", lambda z, info: np.full((len(z), 10), np.nan)
    )
    for path in ("/api/predict", "/api/predict/number"):
        response = ask_in_process(app, path, pixels_body(DIGIT))
        assert response.status_code == 500, response.text
        assert response.headers["connection"] == "close"
        assert "NaN or infinite" in strict_json(response.text)["error"]


def copy_run(run: Path, to: Path) -> Path:
    shutil.copytree(run, to, ignore=shutil.ignore_patterns("checkpoint"))
    return to


def rewrite_weights(run: Path, change) -> None:
    """Change a run's weights in place, and the checksum model.json keeps of them."""
    weights = load_file(run / "model.safetensors")
    change(weights)
    save_file(weights, run / "model.safetensors")
    info = json.loads((run / "model.json").read_text())
    info["weights_sha256"] = hashlib.sha256((run / "model.safetensors").read_bytes()).hexdigest()
    (run / "model.json").write_text(json.dumps(info))


def edit_model_json(run: Path, **fields) -> None:
    info = json.loads((run / "model.json").read_text())
    (run / "model.json").write_text(json.dumps(info | fields))


def overflowing(weights: dict) -> None:
    for name, w in weights.items():
        if name.endswith("weight"):
            w *= 1e30


def overflowing_at_the_corner(weights: dict) -> None:
    """Finite for a blank page and a full one (the two cancel), infinite once the top-left
    pixel alone is lit: 1e38 * 2.8 - 1e38 * -0.42 = 3.2e38, times 10 in the next layer."""
    first, second = weights["layers.1.weight"], weights["layers.3.weight"]
    first[0, 0], first[0, 1] = 1e38, -1e38
    second[:, 0] = 10


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        (lambda run: rewrite_weights(run, overflowing), "NaN or infinite"),
        (lambda run: edit_model_json(run, temperature=0), "temperature"),
        (lambda run: edit_model_json(run, temperature=float("nan")), "temperature"),
        (lambda run: edit_model_json(run, temperature="hot"), "temperature"),
        (lambda run: edit_model_json(run, num_params="many"), "num_params = 'many'"),
    ],
    ids=[
        "weights overflow",
        "temperature 0",
        "temperature NaN",
        "temperature a string",
        "num_params a string",
    ],
)
def test_a_run_whose_answers_cannot_be_numbers_is_refused_at_start(
    mlp_run, tmp_path, damage, needle
):
    from digitlab.serve import create_app

    run = copy_run(mlp_run, tmp_path / "mlp")
    damage(run)
    with pytest.raises(DigitlabError) as refused:
        create_app(run)
    message = str(refused.value)
    assert needle in message and "\n" not in message
    assert "model.json" in message or "model.safetensors" in message


@pytest.fixture(scope="module")
def damaged(mlp_run, tmp_path_factory):
    """A real server for a run whose metrics.json is not JSON and whose weights overflow when
    only the top-left pixel is lit (so it starts, and fails on that one input)."""
    run = copy_run(mlp_run, tmp_path_factory.mktemp("damaged") / "mlp")
    (run / "metrics.json").write_text('{"split": "test", "accuracy": ')
    rewrite_weights(run, overflowing_at_the_corner)
    log = run.parent / "stderr.txt"
    server, lines, url = start_server(run, log, "--timeout", str(TIMEOUT))
    lines.append(server.stdout.readline())
    served = {"url": url, "lines": lines, "errors": 0}  # errors: the failing requests sent
    yield served
    stop(server)
    text = log.read_text()  # each worker of `pytest -n 2` may start its own server
    assert "Traceback" not in text and text.count("ERROR:") == served["errors"], text


def test_a_malformed_metrics_json_is_one_warning_line(damaged):
    warning = damaged["lines"][1]
    assert warning.startswith("warning: ") and "metrics.json" in warning, damaged["lines"]
    model = httpx.get(damaged["url"] + "/api/model").json()
    assert model["accuracy_from"].startswith("model.json") and 0.9 < model["accuracy"] <= 1


def test_a_server_error_says_connection_close_and_closes(damaged, mnist):
    assert post(damaged["url"], pixels_body(mnist.test.images[0]), "application/json").is_success
    corner = np.zeros((28, 28), np.uint8)
    corner[0, 0] = 255
    body = pixels_body(corner).encode()
    damaged["errors"] += 1
    with connect(damaged["url"]) as sock:
        sock.sendall(
            b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body
        )
        reply = read_until_closed(sock)  # closed by the server, after the whole answer
    head, _, text = reply.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 500") and "connection: close" in head.lower(), head
    assert "NaN or infinite" in strict_json(text)["error"]


def test_idle_connections_do_not_crowd_out_real_clients(url, mnist):
    """About 260 connections that sent nothing made every client's request a 503."""
    idle = [connect(url) for _ in range(300)]
    try:
        started = time.perf_counter()
        answer = post(url, pixels_body(mnist.test.images[0]), "application/json")
        assert answer.status_code == 200, answer.text
        assert time.perf_counter() - started < 3
    finally:
        for sock in idle:
            sock.close()


def test_when_every_connection_is_busy_the_503_is_json(url):
    from digitlab.serve.protocol import MAX_CONNECTIONS

    stalled = []  # each has sent its headers and 4 bytes of a 1000-byte body
    try:
        for _ in range(MAX_CONNECTIONS + 4):
            sock = connect(url)
            sock.sendall(
                b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                b"Content-Length: 1000\r\n\r\n\x89PNG"
            )
            stalled.append(sock)
        time.sleep(0.3)
        busy = post(url, "{}", "application/json")
        assert busy.status_code == 503 and busy.headers["connection"] == "close"
        assert "busy" in strict_json(busy.text)["error"]
    finally:
        for sock in stalled:
            sock.close()


@pytest.mark.parametrize(
    "request_bytes",
    [b"GARBAGE\r\n\r\n", b"GET /\xff HTTP/1.1\r\nHost: x\r\n\r\n", b"GET / HTTP/9\r\n\r\n"],
    ids=["not HTTP", "a byte that is not ASCII", "HTTP/9"],
)
def test_a_malformed_request_gets_400_json(url, request_bytes):
    with connect(url) as sock:
        sock.sendall(request_bytes)
        reply = read_until_closed(sock)
    head, _, text = reply.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 400") and "application/json" in head, head
    assert "malformed HTTP request" in strict_json(text)["error"]


@pytest.mark.parametrize("pause", [0.0, 0.3], ids=["with the headers", "after the answer"])
def test_a_chunk_gone_bad_is_a_400_or_a_close_never_a_traceback(served, pause):
    """With the headers: 400, and the app's own answer (415) dropped, where it raised
    h11's LocalProtocolError; after the app answered: the connection closed, where the 400
    itself raised it, in uvicorn's data_received."""
    head = (
        b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    with connect(served["url"]) as sock:
        sock.sendall(head + (b"" if pause else b"zz\r\n"))
        time.sleep(pause)
        sock.sendall(b"zz\r\n" if pause else b"")
        reply = read_until_closed(sock)
    assert reply.count("HTTP/1.1 ") == 1, reply
    assert reply.startswith(("HTTP/1.1 415", "HTTP/1.1 400") if pause else "HTTP/1.1 400"), reply
    assert "Traceback" not in served["log"].read_text()


@pytest.mark.parametrize(
    ("flags", "flag"),
    [
        ({"max_body_mb": float("nan")}, "--max-body-mb nan"),
        ({"max_body_mb": float("inf")}, "--max-body-mb inf"),
        ({"max_body_mb": -1}, "--max-body-mb -1"),
        ({"max_body_mb": 1e-9}, "--max-body-mb 1e-09"),
        ({"timeout": float("nan")}, "--timeout nan"),
        ({"timeout": 0}, "--timeout 0"),
        ({"timeout": float("inf")}, "--timeout inf"),
        ({"port": 99999}, "--port 99999"),
        ({"port": -1}, "--port -1"),
        ({"max_pixels": 0}, "--max-pixels 0"),
        ({"workers": 0}, "--workers 0"),
    ],
    ids=lambda v: "" if isinstance(v, str) else ",".join(f"{k}={x}" for k, x in v.items()),
)
def test_bad_settings_are_refused_naming_the_flag(mlp_run, monkeypatch, flags, flag):
    import uvicorn

    from digitlab.serve import run_server

    def never(*args, **kwargs):
        raise AssertionError("it started serving")

    monkeypatch.setattr(uvicorn.Server, "run", never)
    with pytest.raises(DigitlabError) as refused:
        run_server(mlp_run, say=lambda line: None, **({"port": 0} | flags))
    assert str(refused.value).startswith(flag + ": "), str(refused.value)
    assert "\n" not in str(refused.value)


def test_the_command_refuses_bad_settings_in_one_line(mlp_run):
    for flags in (["--port", "99999"], ["--max-body-mb", "-1"]):
        done = subprocess.run(
            [str(DIGITLAB), "serve", str(mlp_run), *flags],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1 and done.stdout == "", (flags, done.stdout)
        assert done.stderr.startswith(f"error: {' '.join(flags)}: "), done.stderr
        assert done.stderr.count("\n") == 1, done.stderr
