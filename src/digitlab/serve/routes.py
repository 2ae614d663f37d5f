"""The routes, one module function each: read a digit, read a number, describe the model, say
it is alive, and the page and its docs.

    $ curl -s -H 'Content-Type: image/png' --data-binary @seven.png localhost:8000/api/predict

A route takes what it needs from the app's state (`Served`, through the `served` dependency).
A body is read asynchronously within the limits, then decoded and read by the model in a worker
thread (`answer`), so the event loop keeps answering other clients meanwhile.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, Response

from digitlab.serve import schemas
from digitlab.serve.errors import BadRequest
from digitlab.serve.inputs import ACCEPTED, media_type, parse_multipart, read_body
from digitlab.serve.reading import Reader, read_digit, read_number
from digitlab.serve.settings import Settings

STATIC = Path(__file__).parent / "static"
PAGE_HEADERS = {  # the page and the docs may load nothing from anywhere else
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
    "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
PIXELS_HELP = (
    "28 rows of 28 numbers 0..255, MNIST style: light ink on black, the digit fitted in 20x20 "
    "and centred (numbers that are all in 0..1, such as pixels / 255 or a 0/1 mask, are scaled "
    "to 0..255). Sent to the model as is (no ink.prepare); an all-dark array answers 'no digit "
    "found', and one whose median is 128 or more (dark ink on light paper) is refused with 422: "
    "send such an image as a PNG instead."
)
ERRORS = schemas.errors(400, 408, 413, 415, 422)


@dataclass
class Served:
    """What every request reads: the model, the limits, GET /api/model's answer, and the worker
    threads that decode images and run the model (as many as the cores, at least 2)."""

    reader: Reader
    settings: Settings
    about: dict
    threads: anyio.CapacityLimiter
    warnings: list[str] = field(default_factory=list)  # for run_server to say at start

    @property
    def max_pixels(self) -> int:
        return self.about["limits"]["max_pixels"]


def served(request: Request) -> Served:
    return request.app.state.served


def top_k(
    request: Request,
    top: Annotated[int, Query(ge=1, description="how many classes to list, most likely first")] = 3,
) -> int:
    """The `top` query parameter: 1 up to the model's number of classes, given at most once
    (`?top=1&top=5` answered 5 classes, the last one winning without a word)."""
    if len(request.query_params.getlist("top")) > 1:
        raise BadRequest(422, "top: given more than once; give it once")
    n_classes = len(served(request).reader.classes)
    if top > n_classes:
        raise BadRequest(422, f"top: Input should be less than or equal to {n_classes}")
    return top


ServedState = Annotated[Served, Depends(served)]
TopK = Annotated[int, Depends(top_k)]
router = APIRouter()


@router.post(
    "/api/predict",
    summary="Read one digit",
    response_model=None,
    responses={200: {"model": schemas.DigitAnswer, "description": "the digit read"}} | ERRORS,
    openapi_extra=schemas.request_body(PIXELS_HELP, (28, 28)),
)
async def predict(request: Request, state: ServedState, top: TopK) -> Response:
    """One image of one digit: label, confidence, top-k, every class's probability, the
    28x28 image the model saw, and timing."""
    return await answer(request, state, read_digit, top)


@router.post(
    "/api/predict/number",
    summary="Read a number (several digits in a row)",
    response_model=None,
    responses={200: {"model": schemas.NumberAnswer, "description": "the number read"}} | ERRORS,
    openapi_extra=schemas.request_body(
        "any 2-D array of numbers 0..255, either polarity (it is segmented like an image)", None
    ),
)
async def predict_number(request: Request, state: ServedState, top: TopK) -> Response:
    """An image of several digits in a row: the number, and each digit's answer and box,
    left to right."""
    return await answer(request, state, read_number, top)


@router.get("/api/model", response_model=schemas.ModelInfo, summary="The model being served")
def model(state: ServedState) -> dict:
    """The model's spec, classes, dataset, test accuracy and the digitlab versions."""
    return state.about


@router.get("/healthz", response_model=schemas.Health, summary="Liveness")
def healthz(state: ServedState) -> dict:
    """Answers as long as the server does."""
    return {"status": "ok", "model": state.about["name"]}


@router.head("/healthz", include_in_schema=False)
def healthz_head() -> Response:
    """Health checkers that send HEAD saw 405."""
    return Response()


@router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
def page() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)


@router.api_route("/docs", methods=["GET", "HEAD"], include_in_schema=False)
def docs() -> FileResponse:
    return FileResponse(STATIC / "docs.html", headers=PAGE_HEADERS)


async def answer(request: Request, state: Served, work: Callable[..., dict], top: int) -> Response:
    """Receive the body, then `work` on it in a worker thread; the answer as compact JSON (never
    NaN or Infinity: the reader refuses them), with the time spent reading and in all."""
    started = time.perf_counter()
    kind, body, read_ms = await receive(request, state.settings)
    read = functools.partial(work, state.reader, state.max_pixels, kind, body, top)
    result = await anyio.to_thread.run_sync(read, limiter=state.threads)
    result["timing"] |= {
        "read_ms": round(read_ms, 3),
        "total_ms": round((time.perf_counter() - started) * 1000, 3),
    }
    text = json.dumps(result, separators=(",", ":"), allow_nan=False)
    return Response(text, media_type="application/json")


async def receive(request: Request, settings: Settings) -> tuple[str, bytes, float]:
    """The body's media type and bytes (a multipart upload unwrapped), and ms spent reading."""
    started = time.perf_counter()
    kind = media_type(request)
    if kind not in ("multipart/form-data", "application/json") and not kind.startswith("image/"):
        raise BadRequest(415, f"Content-Type {kind or '(none)'!r}: send {ACCEPTED}")
    body = await read_body(request, settings.max_body_bytes, settings.timeout)
    if kind == "multipart/form-data":
        body = await parse_multipart(request.headers, body)
        if not body:
            raise BadRequest(422, "the uploaded file is empty")
    return kind, body, (time.perf_counter() - started) * 1000
