"""The web app: a draw-a-digit page at /, a JSON API under /api, its docs at /docs, all offline.

    >>> app = create_app("runs/mlp")     # a FastAPI app; run_server() serves it with uvicorn
    $ curl -s -H 'Content-Type: image/png' --data-binary @seven.png localhost:8000/api/predict

One image per request, four ways to send it: a multipart upload (field `file`), a PNG or JPEG
body, JSON {"image": base64}, or JSON {"pixels": 28x28} (MNIST style, sent to the model as is).
Encoded images go through `ink.prepare`, exactly as `digitlab predict` reads a photo. Bad input
answers 4xx with {"error": "..."}; the body limit and the image's pixel count are checked before
anything is decoded. Decoding and the model run in worker threads, so the event loop keeps
answering other clients; the model itself is called by one thread at a time (see Reader).
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
from pathlib import Path

import anyio
import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from digitlab import ink
from digitlab.predict import NO_DIGIT, Predictor
from digitlab.serve import schemas
from digitlab.serve.inputs import (
    ACCEPTED,
    BLANK_BELOW,
    BadRequest,
    Picture,
    Pixels,
    media_type,
    open_image,
    parse_json,
    parse_multipart,
    read_body,
)
from digitlab.version import __version__

STATIC = Path(__file__).parent / "static"
PAGE_HEADERS = {  # the page and the docs may load nothing from anywhere else
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
    "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
MAX_BODY_BYTES = 5_000_000
MAX_PIXELS = 25_000_000  # a 25-megapixel photo; ink.MAX_PIXELS (50M) is the library's own limit
BODY_TIMEOUT = 20.0  # seconds for a whole body to arrive: 5 MB at 2 Mbit/s
PIXELS_HELP = (
    "28 rows of 28 numbers 0..255, MNIST style: light ink on black, the digit fitted in 20x20 "
    "and centred. Sent to the model as is (no ink.prepare); an all-dark array answers 'no digit "
    "found', and one whose median is 128 or more (dark ink on light paper) is refused with 422: "
    "send such an image as a PNG instead."
)


class Reader(Predictor):
    """A Predictor whose model runs in one thread at a time, timing each call per thread.

    The NumPy layers keep their last input and output on themselves (for backward), so two
    forward passes at once would mix their answers; one 28x28 digit takes well under a
    millisecond, so a lock costs little. Images are decoded and prepared outside the lock.
    """

    def __init__(self, run, unsure_below: float | None = None) -> None:
        super().__init__(run, unsure_below)
        self._lock = threading.Lock()
        self._clock = threading.local()

    def probabilities(self, digits: np.ndarray) -> np.ndarray:
        with self._lock:
            started = time.perf_counter()
            p = super().probabilities(digits)
            self._clock.seconds = getattr(self._clock, "seconds", 0.0) + (
                time.perf_counter() - started
            )
        return p

    def model_seconds(self) -> float:
        """Seconds this thread spent in the model since the last call, and reset."""
        seconds, self._clock.seconds = getattr(self._clock, "seconds", 0.0), 0.0
        return seconds


def model_info(run: Path, reader: Reader, limits: dict) -> dict:
    """What GET /api/model answers: the model, its data, its test accuracy, the versions."""
    info = reader.info
    accuracy, source = None, None
    metrics = run / "metrics.json"
    if metrics.is_file():
        m = json.loads(metrics.read_text())
        if m.get("split", "test") == "test" and "accuracy" in m:
            accuracy, source = float(m["accuracy"]), "metrics.json (digitlab evaluate)"
    if accuracy is None and (info.get("test") or {}).get("acc") is not None:
        accuracy, source = float(info["test"]["acc"]), "model.json (test split after training)"
    return {
        "name": info["spec"].get("name") or run.name,
        "run": run.name,
        "classes": reader.classes,
        "dataset": (info.get("data") or {}).get("dataset", "unknown"),
        "accuracy": accuracy,
        "accuracy_from": source,
        "num_params": info.get("num_params"),
        "spec": info["spec"],
        "unsure_below": reader.unsure_below,
        "trained_with": info.get("digitlab_version"),
        "digitlab_version": __version__,
        "limits": limits,
    }


def create_app(
    run,
    max_body_bytes: int = MAX_BODY_BYTES,
    max_pixels: int = MAX_PIXELS,
    body_timeout: float = BODY_TIMEOUT,
    unsure_below: float | None = None,
) -> FastAPI:
    """The ASGI app serving one finished run (loaded once, here, so a bad run fails at start)."""
    run = Path(run)
    reader = Reader(run, unsure_below)
    limits = {
        "max_body_bytes": max_body_bytes,
        "max_pixels": min(max_pixels, ink.MAX_PIXELS),
        "body_timeout_s": body_timeout,
    }
    about = model_info(run, reader, limits)
    n_classes = len(reader.classes)
    threads = anyio.CapacityLimiter(max(2, os.cpu_count() or 2))  # decoding takes CPU, memory
    app = FastAPI(
        title=f"digitlab: {about['name']}",
        version=__version__,
        description=(
            f"Reads handwritten digits with the run `{run.name}` ({about['name']}, trained on "
            f"{about['dataset']}). POST an image to `/api/predict` as {ACCEPTED}. "
            f"Bodies over {max_body_bytes:,} bytes and images over {limits['max_pixels']:,} "
            'pixels are refused before decoding. Every error answers `{"error": "..."}`.'
        ),
        docs_url=None,
        redoc_url=None,
    )
    handle_errors(app)

    async def receive(request: Request) -> tuple[str, bytes, float]:
        """The body's media type and bytes (a multipart upload unwrapped), and ms spent reading."""
        started = time.perf_counter()
        kind = media_type(request)
        if kind not in ("multipart/form-data", "application/json") and not kind.startswith(
            "image/"
        ):
            raise BadRequest(415, f"Content-Type {kind or '(none)'!r}: send {ACCEPTED}")
        body = await read_body(request, max_body_bytes, body_timeout)
        if kind == "multipart/form-data":
            body = await parse_multipart(request.headers, body)
            if not body:
                raise BadRequest(422, "the uploaded file is empty")
        return kind, body, (time.perf_counter() - started) * 1000

    def decode(kind: str, body: bytes, shape: tuple[int, int] | None) -> Pixels | Picture:
        parsed = parse_json(body, shape) if kind == "application/json" else body
        return open_image(parsed, limits["max_pixels"]) if isinstance(parsed, bytes) else parsed

    def read_digit(kind: str, body: bytes, top: int) -> dict:
        started = time.perf_counter()
        reader.model_seconds()
        given = decode(kind, body, (28, 28))
        if isinstance(given, Pixels):
            digit = given.array if given.array.max() >= BLANK_BELOW else None
            if digit is not None and np.median(digit) >= 128:
                raise BadRequest(
                    422,
                    "pixels: this looks like dark ink on light paper (median "
                    f"{np.median(digit):g}); send light ink on black, or send it as an image",
                )
        else:
            digit = prepare(given)
        if digit is None:
            answer = {"status": NO_DIGIT, "label": None, "confidence": 0.0, "top": []}
            answer |= {"probabilities": [], "input": None}
        else:
            p = reader.probabilities(digit[None])[0]
            answer = reader.answer(p, top) | {"probabilities": p.tolist()}
            answer["input"] = digit.tolist()
        return answer | {"source": source_of(given), "timing": timing(started, reader)}

    def read_number(kind: str, body: bytes, top: int) -> dict:
        started = time.perf_counter()
        reader.model_seconds()
        given = decode(kind, body, None)
        source = given.array if isinstance(given, Pixels) else given.image
        try:
            result = reader.read_number(source, "image", top)
        except ink.ImageError as e:
            raise BadRequest(422, str(e)) from None
        digits = [
            {k: d[k] for k in ("status", "label", "confidence", "top")}
            | {"box": [int(v) for v in d["box"]], "input": d["digit"].tolist()}
            for d in result["digits"]
        ]
        return {
            "status": result["status"],
            "number": result["number"],
            "confidence": float(result["confidence"]),
            "digits": digits,
            "boxes": [[int(v) for v in box] for box in result["boxes"]],
            "source": source_of(given),
            "timing": timing(started, reader),
        }

    async def answer(request: Request, work, top: int) -> Response:
        started = time.perf_counter()
        kind, body, read_ms = await receive(request)
        result = await anyio.to_thread.run_sync(
            functools.partial(work, kind, body, top), limiter=threads
        )
        result["timing"] |= {
            "read_ms": round(read_ms, 3),
            "total_ms": round((time.perf_counter() - started) * 1000, 3),
        }
        return Response(json.dumps(result, separators=(",", ":")), media_type="application/json")

    top_help = "how many classes to list, most likely first"

    @app.post(
        "/api/predict",
        summary="Read one digit",
        response_model=None,
        responses={200: {"model": schemas.DigitAnswer, "description": "the digit read"}}
        | schemas.errors(400, 408, 413, 415, 422),
        openapi_extra=schemas.request_body(PIXELS_HELP, (28, 28)),
    )
    async def predict(
        request: Request, top: int = Query(3, ge=1, le=n_classes, description=top_help)
    ) -> Response:
        """One image of one digit: label, confidence, top-k, every class's probability, the
        28x28 image the model saw, and timing."""
        return await answer(request, read_digit, top)

    @app.post(
        "/api/predict/number",
        summary="Read a number (several digits in a row)",
        response_model=None,
        responses={200: {"model": schemas.NumberAnswer, "description": "the number read"}}
        | schemas.errors(400, 408, 413, 415, 422),
        openapi_extra=schemas.request_body(
            "any 2-D array of numbers 0..255, either polarity (it is segmented like an image)",
            None,
        ),
    )
    async def predict_number(
        request: Request, top: int = Query(3, ge=1, le=n_classes, description=top_help)
    ) -> Response:
        """An image of several digits in a row: the number, and each digit's answer and box,
        left to right."""
        return await answer(request, read_number, top)

    @app.get("/api/model", response_model=schemas.ModelInfo, summary="The model being served")
    def model() -> dict:
        """The model's spec, classes, dataset, test accuracy and the digitlab versions."""
        return about

    @app.get("/healthz", response_model=schemas.Health, summary="Liveness")
    def healthz() -> dict:
        """Answers as long as the server does."""
        return {"status": "ok", "model": about["name"]}

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)

    @app.api_route("/docs", methods=["GET", "HEAD"], include_in_schema=False)
    def docs() -> FileResponse:
        return FileResponse(STATIC / "docs.html", headers=PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def prepare(given: Picture) -> np.ndarray | None:
    """An uploaded image as MNIST's uint8 (28, 28), as `digitlab predict` prepares a photo."""
    try:
        digit, _ = ink.prepare(given.image, "image")
    except ink.ImageError as e:
        raise BadRequest(422, str(e)) from None
    return digit


def source_of(given: Pixels | Picture) -> str:
    return "pixels" if isinstance(given, Pixels) else "image"


def timing(started: float, reader: Reader) -> dict:
    work_ms = (time.perf_counter() - started) * 1000
    model_ms = reader.model_seconds() * 1000
    return {"prepare_ms": round(work_ms - model_ms, 3), "model_ms": round(model_ms, 3)}


def handle_errors(app: FastAPI) -> None:
    """Every error as {"error": "..."}: the client's with its 4xx, anything else a logged 500."""

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, exc: BadRequest) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        if exc.status_code == 404:
            message = f"{request.url.path}: not found (the API is under /api, its docs at /docs)"
        elif exc.status_code == 405:
            message = f"{request.method} {request.url.path}: method not allowed"
        return JSONResponse({"error": message}, exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{e['loc'][-1]}: {e['msg']}" for e in exc.errors()]
        return JSONResponse({"error": "; ".join(problems)}, status_code=422)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        # Starlette re-raises the exception after this answer, and uvicorn logs its traceback.
        return JSONResponse({"error": "internal error (logged by the server)"}, status_code=500)
