"""Request bodies to digits: read within limits, then decode by content type, or say what is wrong.

    >>> body = await read_body(request, max_bytes=5_000_000, timeout=20)   # 413, 408 on abuse
    >>> digit = parse_json(body, pixel_shape=(28, 28))                     # Pixels or Image
    >>> image = open_image(png_bytes, max_pixels=25_000_000)               # header checked only

Every refusal is a `BadRequest` with an HTTP status and a one-line message naming the field and
the problem; the app turns it into `{"error": message}`. Nothing here decodes pixels before the
body size and the image header's pixel count have been checked.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import math
import sys
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request

from digitlab.ink.prepare import pixel_scale
from digitlab.serve.errors import BadRequest

IMAGE_TYPES = ("image/png", "image/jpeg")  # documented; any image/* Pillow reads is accepted
ACCEPTED = "multipart/form-data, image/png, image/jpeg (any image/*), or application/json"
BLANK_BELOW = 24  # as ink.prepare: no pixel this bright means nothing was drawn


@dataclass
class Pixels:
    """An MNIST-style array sent as JSON: light ink on black, 0..255, uint8."""

    array: np.ndarray


@dataclass
class Picture:
    """An encoded image (PNG, JPEG, ...) opened lazily: its header is read, its pixels are not."""

    image: Image.Image


def media_type(request: Request) -> str:
    """The Content-Type without parameters, lower case ('' when absent)."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_body(request: Request, max_bytes: int, timeout: float) -> bytes:
    """The whole body, refused as soon as it is known to exceed `max_bytes` or takes `timeout` s.

    The declared Content-Length is checked before a byte is read; a chunked body is counted while
    it streams, so a client cannot make the server buffer more than `max_bytes` (plus one chunk).
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise BadRequest(400, f"Content-Length {declared!r} is not a number of bytes")
        if int(declared) > max_bytes:
            raise BadRequest(
                413, f"request body is {int(declared):,} bytes; the limit is {max_bytes:,}"
            )
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_bytes:
                    raise BadRequest(413, f"request body exceeds the limit of {max_bytes:,} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise BadRequest(408, f"the request body did not arrive within {timeout:g} s") from None
    except ClientDisconnect:
        raise BadRequest(400, "the client disconnected before sending the whole body") from None
    if size == 0:
        raise BadRequest(400, f"the request body is empty; send an image or JSON ({ACCEPTED})")
    return b"".join(chunks)


async def parse_multipart(headers: Headers, body: bytes) -> bytes:
    """The bytes of the one uploaded file in a multipart/form-data body (field 'file')."""

    async def stream() -> AsyncIterator[bytes]:
        yield body

    try:
        form = await MultiPartParser(headers, stream(), max_files=1, max_fields=8).parse()
    except MultiPartException as e:
        message = e.message
        if message.startswith("Too many files"):  # well formed: more than the one image read
            message = "more than one file; send one image, in a field named 'file'"
        raise BadRequest(400, f"malformed multipart body: {message}") from None
    try:
        files = [(k, v) for k, v in form.multi_items() if isinstance(v, UploadFile)]
        if not files and not form:  # a part cut short (its closing boundary missing) is no part
            raise BadRequest(400, "multipart body has no complete part: was it cut short?")
        if not files:
            fields = ", ".join(repr(k) for k in form)
            raise BadRequest(
                422,
                f"multipart body has no file; send the image in a field named 'file' "
                f"(fields found: {fields})",
            )
        return await files[0][1].read()
    finally:
        await form.close()


def parse_json(body: bytes, pixel_shape: tuple[int, int] | None) -> Pixels | bytes:
    """{"pixels": rows} as Pixels, or {"image": base64} as the image's bytes.

    `pixel_shape` fixes the array's shape ((28, 28) for one digit); None allows any 2-D shape.
    """
    try:
        value = json.loads(body)
    except UnicodeDecodeError:
        raise BadRequest(400, "malformed JSON: the body is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise BadRequest(400, f"malformed JSON: {e}") from None
    except RecursionError:
        raise BadRequest(400, "malformed JSON: nested too deeply") from None
    except ValueError:  # Python reads integers of at most 4,300 digits (the int-string limit)
        raise BadRequest(
            422, f"JSON holds a number of more than {sys.get_int_max_str_digits():,} digits"
        ) from None
    if not isinstance(value, dict):
        raise BadRequest(422, 'JSON body must be an object: {"pixels": [...]} or {"image": "..."}')
    keys = set(value)
    if keys not in ({"pixels"}, {"image"}):
        found = ", ".join(sorted(repr(k) for k in keys)) or "none"
        raise BadRequest(
            422, f'JSON body needs exactly one of "pixels" or "image" (keys found: {found})'
        )
    if "image" in value:
        return decode_base64(value["image"])
    return Pixels(pixel_array(value["pixels"], pixel_shape))


def decode_base64(text) -> bytes:
    """The bytes of a base64 string, with or without a data: URL prefix."""
    if not isinstance(text, str):
        raise BadRequest(422, f"image: expected a base64 string, got {json_type(text)}")
    if text.startswith("data:"):
        header, _, text = text.partition(",")
        if not header.endswith(";base64"):
            raise BadRequest(422, "image: a data: URL must be base64 (data:image/png;base64,...)")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise BadRequest(422, f"image: not valid base64 ({e})") from None
    if not data:
        raise BadRequest(422, "image: the base64 string is empty")
    return data


def pixel_array(rows, shape: tuple[int, int] | None) -> np.ndarray:
    """Nested lists of numbers 0..255 as uint8 (H, W), or a message naming what is wrong."""
    want = f"{shape[0]} rows of {shape[1]} numbers" if shape else "rows of numbers"
    if not isinstance(rows, list) or not rows:
        raise BadRequest(422, f"pixels: expected {want}, got {json_type(rows)}")
    if shape and len(rows) != shape[0]:
        raise BadRequest(422, f"pixels: expected {want}, got {len(rows)} rows")
    width = shape[1] if shape else len(rows[0]) if isinstance(rows[0], list) else -1
    for i, row in enumerate(rows):
        if not isinstance(row, list):
            raise BadRequest(422, f"pixels[{i}]: expected a row of numbers, got {json_type(row)}")
        if len(row) != width or width == 0:
            raise BadRequest(
                422,
                f"pixels[{i}]: expected {width if width > 0 else 'some'} numbers, got {len(row)}",
            )
        for j, v in enumerate(row):
            if type(v) not in (int, float):  # bool is an int subclass: refused here
                raise BadRequest(422, f"pixels[{i}][{j}]: expected a number, got {json_type(v)}")
            if type(v) is int and not 0 <= v <= 255:  # before a 401-digit one overflows a float
                raise BadRequest(422, f"pixels[{i}][{j}]: {shown(v)} is not a number in 0..255")
    a = np.array(rows, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        bad = ~((a >= 0) & (a <= 255))  # NaN compares false: refused here too
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise BadRequest(422, f"pixels[{i}][{j}]: {rows[i][j]} is not a number in 0..255")
    # pixels / 255 (a resize may leave some just past 1) or a 0/1 mask scaled as digitlab.read
    # scales them, not read as a blank page ("no digit found") of ink too faint to see
    scale = pixel_scale("f", float(a.max()))  # 0..255 here: never None
    return np.rint(np.minimum(a * scale, 255)).astype(np.uint8)


def shown(number: int) -> str:
    """An integer for a message: in full, or its first digits and how many there are."""
    text = str(number)
    return text if len(text) <= 12 else f"{text[:10]}... ({len(text.lstrip('-'))} digits)"


def json_type(value) -> str:
    """JSON's name for a decoded value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "a number"  # math.isfinite would overflow on a 400-digit one
    if isinstance(value, float):
        return "a number" if math.isfinite(value) else str(value)
    return {str: "a string", list: "an array", dict: "an object"}.get(type(value), "a value")


def open_image(data: bytes, max_pixels: int) -> Picture:
    """Read an encoded image's header only, and refuse it before decoding if it is too large
    (Pillow's own bomb warning is silenced: `max_pixels` is the limit that applies here)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise BadRequest(
            422, "the body is not an image Pillow can read (send a PNG or JPEG)"
        ) from None
    except Image.DecompressionBombError:  # over twice Pillow's own limit: no size is given
        raise BadRequest(
            413,
            f"image refused before decoding: over {2 * (Image.MAX_IMAGE_PIXELS or 0):,} pixels; "
            f"the limit is {max_pixels:,} (scale it down first)",
        ) from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise BadRequest(422, f"not a readable image ({e})") from None
    width, height = image.size
    if width * height > max_pixels:
        raise BadRequest(
            413,
            f"image is {width}x{height} = {width * height:,} pixels; the limit is "
            f"{max_pixels:,} (scale it down first)",
        )
    return Picture(image)
