"""Every error the server sends is `{"error": "..."}` in JSON, whoever sends it.

    >>> raise BadRequest(422, "pixels: expected 28 rows, got 27")    # the client's mistake: 4xx
    >>> handle_errors(app)                                           # the app's handlers
    >>> error_body("the server is busy")                             # for the HTTP layer's own

The client's mistakes answer 4xx and keep the connection. A server error (the model failing, a
bug) answers 500 with `Connection: close`: what the connection was doing is unknown, so it is not
reused. The HTTP layer (protocol.py) answers a malformed request with 400 and a full server with
503, in the same format.
"""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

CLOSE = {"Connection": "close"}
log = logging.getLogger("uvicorn.error")  # the server's log, beside uvicorn's own lines


class BadRequest(Exception):
    """A request the server refuses: HTTP status and a message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class ModelFailure(Exception):
    """The model answered something that is not a probability (NaN, infinity)."""


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}, separators=(",", ":")).encode()


def error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    """{"error": message}; a 5xx also closes the connection."""
    headers = (headers or {}) | (CLOSE if status >= 500 else {})
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def refused(request: Request, exc: BadRequest) -> JSONResponse:
    return error_response(exc.status, exc.message)


async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
    message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
    path = request.url.path if len(request.url.path) <= 200 else f"{request.url.path[:200]}..."
    if exc.status_code == 404:  # a 20,000-character path was echoed whole
        message = f"{path}: not found (the API is under /api, its docs at /docs)"
    elif exc.status_code == 405:
        message = f"{request.method} {path}: method not allowed"
    return error_response(exc.status_code, message, exc.headers)


async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = [f"{e['loc'][-1]}: {e['msg']}" for e in exc.errors()]
    return error_response(422, "; ".join(problems))


async def model_failed(request: Request, exc: ModelFailure) -> JSONResponse:
    log.error("%s: %s", request.url.path, exc)  # one line: the run is broken, not the code
    return error_response(500, str(exc))


async def crashed(request: Request, exc: Exception) -> JSONResponse:
    # Starlette re-raises the exception after this answer, and uvicorn logs its traceback.
    return error_response(500, "internal error (logged by the server)")


def handle_errors(app: FastAPI) -> None:
    """Every error as {"error": "..."}: the client's with its 4xx, anything else a logged 500."""
    app.add_exception_handler(BadRequest, refused)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(ModelFailure, model_failed)
    app.add_exception_handler(Exception, crashed)


async def busy(scope, receive, send) -> None:
    """The ASGI answer when every connection is busy with a request (uvicorn's is plain text)."""
    body = error_body("the server is busy: every connection is serving a request; try again")
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})
