"""`digitlab serve` and `ink.prepare` fuzzed with hypothesis, the server as a real process.

The property, for every request: a correct answer (200, the documented schema, no NaN) or a
4xx with the documented `{"error": "..."}` body in one line; never a 5xx, never a hang (every
request has a client timeout), and the server's log holds no traceback and no error. For
`ink.prepare`: a uint8 (28, 28) digit, None (no ink), or a one-line ImageError.

What is generated: JSON bodies (wrong types, huge integers, deep nesting, NaN, pixel arrays of
every shape and value), multipart bodies (broken boundaries, missing or extra parts), content
types and raw HTTP requests (bad request lines, lengths, chunked bodies), and images (PNG, JPEG,
GIF, TIFF, WebP, BMP in many modes, with EXIF blocks, then bytes flipped, cut or spliced).

Two profiles: "fast" by default (100 examples per test, the whole file in about 10 s once the
run is trained) and "slow" (`HYPOTHESIS_PROFILE=slow`, 2000 examples per test, as
`make test-slow` runs every fuzz test).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import socket
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from digitlab import ink
from digitlab.serve import schemas

sys.path.insert(0, str(Path(__file__).parent))
from test_serve import multipart, start_server, stop, strict_json

settings.register_profile(
    "fast",
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
settings.register_profile("slow", settings.get_profile("fast"), max_examples=2000)
SLOW = os.environ.get("HYPOTHESIS_PROFILE") == "slow"
FUZZ = settings.get_profile("slow" if SLOW else "fast")
pytestmark = pytest.mark.timeout(1800 if SLOW else 60)  # a hang fails the test, with its stack
ROUTES = ("/api/predict", "/api/predict/number")
CLIENT_TIMEOUT = 15  # seconds: a request not answered by then is a hang


@pytest.fixture(scope="module")
def server(mlp_run, tmp_path_factory):
    """A real `digitlab serve`; afterwards its log must hold no traceback and no error."""
    log = tmp_path_factory.mktemp("fuzz") / "stderr.txt"
    process, _, url = start_server(mlp_run, log, "--timeout", "5")
    with httpx.Client(base_url=url, timeout=CLIENT_TIMEOUT) as client:
        yield client
    stop(process)
    text = log.read_text()
    assert "Traceback" not in text and "ERROR" not in text, text


def check(response: httpx.Response, path: str) -> None:
    """A documented answer or a documented refusal, never a server error."""
    assert response.status_code < 500, (path, response.status_code, response.text[:300])
    assert response.headers["content-type"] == "application/json", response.headers
    value = strict_json(response.text)
    if response.status_code == 200:
        answer = schemas.DigitAnswer if path == "/api/predict" else schemas.NumberAnswer
        answer.model_validate(value)
    else:
        assert response.status_code >= 400 and list(value) == ["error"], value
        assert isinstance(value["error"], str) and "\n" not in value["error"], value


def post(client: httpx.Client, path: str, body: bytes, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type is not None else {}
    check(client.post(path, content=body, headers=headers), path)


# ---- images: many formats and modes, EXIF blocks, then damage ------------------------------

MODES = {
    "PNG": ["L", "LA", "RGB", "RGBA", "P", "1", "I;16"],
    "JPEG": ["L", "RGB", "CMYK"],
    "GIF": ["P", "L"],
    "TIFF": ["L", "RGB", "I;16", "F", "1", "CMYK"],
    "WEBP": ["RGB", "RGBA", "L"],
    "BMP": ["L", "RGB", "P", "1"],
}
EXIF_FORMATS = ("JPEG", "PNG", "WEBP")


@st.composite
def exif_blocks(draw) -> bytes:
    """EXIF with an orientation (valid or not) and a few tags, then maybe damaged: a tag given
    another type or another tag's number (what made Pillow's exif_transpose raise), or bytes
    flipped, cut or spliced."""
    exif = Image.Exif()
    exif[0x0112] = draw(st.integers(0, 9))
    exif[0x010F] = draw(st.text(alphabet="abcXYZ 0", max_size=8))
    exif[0x011A] = draw(st.floats(0.5, 600))
    raw = bytearray(exif.tobytes())  # "Exif\0\0", TIFF header, count, 12-byte entries
    for _ in range(draw(st.integers(0, 2))):
        entry = 16 + 12 * draw(st.integers(0, 2))
        if draw(st.booleans()):
            raw[entry + 2 : entry + 4] = draw(st.integers(0, 13)).to_bytes(2, "big")
        else:
            raw[entry : entry + 2] = draw(st.sampled_from(RETAGS)).to_bytes(2, "big")
    return draw(damaged(bytes(raw), start=6))


RETAGS = [0x0106, 0x0112, 0x0128, 0x0213, 0x8769, 0x8825, 0xA005, 0x0201, 0x9286]


def damaged(data: bytes, start: int = 0) -> st.SearchStrategy[bytes]:
    """The bytes as they are, or with some flipped, cut short, or with noise spliced in."""
    n = len(data)
    flips = st.lists(st.tuples(st.integers(start, n - 1), st.integers(0, 255)), max_size=6)
    return st.one_of(
        st.just(data),
        flips.map(lambda fs: flip(data, fs)),
        st.integers(start, n).map(lambda cut: data[:cut]),
        st.tuples(st.integers(start, n), st.binary(max_size=64)).map(
            lambda cs: data[: cs[0]] + cs[1] + data[cs[0] :]
        ),
    )


def flip(data: bytes, changes: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for where, value in changes:
        out[where] = value
    return bytes(out)


@st.composite
def images(draw) -> bytes:
    """An encoded image of random strokes on paper (dark or light), maybe damaged after."""
    fmt = draw(st.sampled_from(sorted(MODES)))
    shape = (draw(st.integers(1, 48)), draw(st.integers(1, 48)))
    ink_values = st.sampled_from([0, 0, 0, 40, 255, 255, 255, 255, 128])
    gray = draw(arrays(np.uint8, shape, elements=ink_values))
    image = Image.fromarray(gray).convert(draw(st.sampled_from(MODES[fmt])))
    options = {"exif": draw(exif_blocks())} if fmt in EXIF_FORMATS and draw(st.booleans()) else {}
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return draw(damaged(buffer.getvalue(), start=draw(st.sampled_from([0, 8, 16]))))


@FUZZ
@given(images())
def test_ink_prepare_reads_or_refuses_in_one_line(data):
    try:
        digit, _ = ink.prepare(data, "fuzz")
    except ink.ImageError as e:
        assert "\n" not in str(e)
        return
    assert digit is None or (digit.shape == (28, 28) and digit.dtype == np.uint8)


@FUZZ
@given(data=images(), path=st.sampled_from(ROUTES), how=st.sampled_from(["body", "form", "b64"]))
def test_images_through_the_server(server, data, path, how):
    if how == "body":
        post(server, path, data, "image/png")
    elif how == "form":
        body, content_type = multipart(("file", "fuzz.png", data))
        post(server, path, body, content_type)
    else:
        post(server, path, json.dumps({"image": base64.b64encode(data).decode()}).encode(), JSON)


# ---- JSON bodies -----------------------------------------------------------------------------

JSON = "application/json"
HUGE = st.sampled_from([10**400, -(10**400), 10**4299, 2**64, -(2**63)])
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | HUGE
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
VALUES = st.recursive(
    LEAVES,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=16,
)
PIXEL = LEAVES | st.integers(-300, 300) | st.floats(-1, 256)


@st.composite
def pixel_rows(draw) -> list:
    """Rows of 0..255, 28x28 most often, with a few cells or rows then replaced by anything."""
    shapes = st.sampled_from([(28, 28), (28, 28), (27, 28), (28, 27), (1, 1), (3, 40)])
    shape = draw(shapes | st.tuples(st.integers(0, 31), st.integers(0, 31)))
    sparse = st.sampled_from([0, 0, 0, 0, 0, 0, 255, 200, 30])
    rows = draw(arrays(np.uint8, shape, elements=sparse)).tolist()
    for _ in range(draw(st.integers(0, 3)) if min(shape) > 0 else 0):
        i, j = draw(st.integers(0, shape[0] - 1)), draw(st.integers(0, shape[1] - 1))
        if draw(st.integers(0, 3)) and isinstance(rows[i], list) and j < len(rows[i]):
            rows[i][j] = draw(PIXEL)
        else:
            rows[i] = draw(VALUES)
    return rows


def nested(depth: int, key: str) -> bytes:
    return (f'{{"{key}": ' + "[" * depth + "]" * depth + "}").encode()


JSON_BODIES = st.one_of(
    VALUES.map(json.dumps).map(str.encode),
    st.builds(lambda rows: json.dumps({"pixels": rows}).encode(), pixel_rows()),
    st.builds(lambda v: json.dumps({"image": v}).encode(), VALUES),
    st.builds(
        lambda d: json.dumps(d).encode(),
        st.dictionaries(st.sampled_from(["pixels", "image", "Pixels", ""]), VALUES, max_size=3),
    ),
    st.builds(nested, st.integers(1, 200_000), st.sampled_from(["pixels", "image"])),
    st.integers(4_200, 6_000).map(lambda n: b'{"pixels": ' + b"7" * n + b"}"),
    st.binary(max_size=64),
)


@FUZZ
@given(body=JSON_BODIES, path=st.sampled_from(ROUTES))
def test_json_bodies(server, body, path):
    post(server, path, body, JSON)


# ---- content types, multipart, and raw HTTP ----------------------------------------------------

CONTENT_TYPES = st.sampled_from(
    [
        "image/png",
        "image/jpeg",
        "IMAGE/PNG",
        "image/",
        "image/svg+xml",
        "application/json; charset=utf-16",
        "APPLICATION/JSON",
        "multipart/form-data",
        "multipart/form-data; boundary=",
        "text/plain",
        "application/octet-stream",
        "",
    ]
) | st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40).map(
    str.strip  # a header value cannot begin or end with a space: the client refuses to send it
)


@FUZZ
@given(
    content_type=CONTENT_TYPES | st.none(),
    body=st.binary(max_size=200) | JSON_BODIES,
    path=st.sampled_from(ROUTES),
)
def test_any_content_type(server, content_type, body, path):
    post(server, path, body, content_type)


BOUNDARY_TEXT = st.text(alphabet="abcXYZ019'()+_,-./:=? ", min_size=1, max_size=72)


@st.composite
def multipart_bodies(draw) -> tuple[bytes, str]:
    """Parts named file or not, with filenames or not, image bytes or not; the whole body cut
    short sometimes, and a Content-Type whose boundary may not be the body's."""
    contents = st.binary(max_size=80) | images()
    parts = st.tuples(st.sampled_from(["file", "other", ""]), st.none() | st.text(max_size=8))
    chosen = draw(st.lists(st.tuples(parts, contents), max_size=3))
    body, content_type = multipart(*[(name, filename, data) for (name, filename), data in chosen])
    body = draw(damaged(body)) if draw(st.booleans()) else body
    if draw(st.booleans()):
        content_type = f"multipart/form-data; boundary={draw(BOUNDARY_TEXT)}".strip()
    return body, content_type


@FUZZ
@given(form=multipart_bodies(), path=st.sampled_from(ROUTES))
def test_multipart_bodies(server, form, path):
    body, content_type = form
    post(server, path, body, content_type)


LINES = st.sampled_from(
    [
        b"POST /api/predict HTTP/1.1",
        b"POST /api/predict/number HTTP/1.0",
        b"POST /api/predict?top=99999999999999999999 HTTP/1.1",
        b"POST /api/predict?top=%ff HTTP/1.1",
        b"GET /static/..%2f..%2fetc%2fpasswd HTTP/1.1",
        b"GET /%00 HTTP/1.1",
        b"PUT /api/predict HTTP/1.1",
        b"POST /api/predict HTTP/2.0",
        b"POST  /api/predict HTTP/1.1",
        b"\xff\xfe /api/predict HTTP/1.1",
    ]
)
HEADERS = st.lists(
    st.sampled_from(
        [
            b"Content-Type: image/png",
            b"Content-Type: application/json",
            b"Content-Length: -1",
            b"Content-Length: 1e3",
            b"Content-Length: 99999999999999999999999",
            b"Content-Length: 3, 4",
            b"Transfer-Encoding: chunked",
            b"Transfer-Encoding: gzip",
            b"Expect: 100-continue",
            b"Connection: close",
            b"Host: \xff",
            b"X: " + b"a" * 20_000,
            b"no colon here",
            b" leading: space",
        ]
    ),
    max_size=4,
)


def exchange(url: str, request: bytes) -> bytes:
    """Send raw bytes; everything the server answers until it closes (or 10 s of silence)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        with contextlib.suppress(OSError):  # the server may answer, close, before reading all
            sock.sendall(request)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
    return received


@FUZZ
@given(line=LINES, headers=HEADERS, body=st.binary(max_size=64) | JSON_BODIES)
def test_raw_requests(server, line, headers, body):
    """Whatever the request line and headers: an answer, a 4xx as JSON, or a plain close."""
    head = b"\r\n".join([line, b"Host: fuzz", *headers, b"Connection: close"])
    if not any(h.lower().startswith((b"content-length", b"transfer-encoding")) for h in headers):
        head += b"\r\nContent-Length: %d" % len(body)
    reply = exchange(str(server.base_url).rstrip("/"), head + b"\r\n\r\n" + body)
    while reply.startswith(b"HTTP/1.1 100 "):  # Expect: 100-continue, then the answer
        reply = reply.partition(b"\r\n\r\n")[2]
    if not reply:
        return  # closed: a body that never came to its declared length
    status_line, _, rest = reply.partition(b"\r\n")
    status = int(status_line.split()[1])
    assert status < 500, reply[:500]
    if status >= 400:
        headers_text, _, text = rest.partition(b"\r\n\r\n")
        assert b"application/json" in headers_text.lower(), reply[:500]
        assert list(strict_json(text.decode())) == ["error"], reply[:500]
