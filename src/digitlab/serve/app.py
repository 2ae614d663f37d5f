"""The web app: a draw-a-digit page at /, a JSON API under /api, its docs at /docs, all offline.

    >>> app = create_app("runs/mlp")     # a FastAPI app; run_server() serves it with uvicorn
    >>> app.state.served.about           # what GET /api/model answers

One image per request, four ways to send it: a multipart upload (field `file`), a PNG or JPEG
body, JSON {"image": base64}, or JSON {"pixels": 28x28} (MNIST style, sent to the model as is).
Encoded images go through `ink.prepare`, exactly as `digitlab predict` reads a photo. Bad input
answers 4xx with {"error": "..."}; the body limit and the image's pixel count are checked before
anything is decoded. create_app loads the run once and keeps what the routes need on
`app.state.served`; the routes are module functions in routes.py, the reading in reading.py.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import anyio
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError

from digitlab import ink
from digitlab.errors import DigitlabError
from digitlab.serve import schemas
from digitlab.serve.errors import handle_errors
from digitlab.serve.inputs import ACCEPTED
from digitlab.serve.reading import Reader
from digitlab.serve.routes import STATIC, Served, router
from digitlab.serve.settings import Settings
from digitlab.version import __version__


class DigitApp(FastAPI):
    """FastAPI, with the `top` parameter's maximum (the model's classes) in the OpenAPI document:
    the routes are written once for every model, so the schema cannot say it by itself."""

    def openapi(self) -> dict:
        document = super().openapi()
        n_classes = len(self.state.served.reader.classes)
        for operations in document["paths"].values():
            for operation in operations.values():
                for parameter in operation.get("parameters", []):
                    if parameter["name"] == "top":
                        parameter["schema"]["maximum"] = n_classes
        return document


def fraction(value) -> float | None:
    """An accuracy as a float in 0..1, or None for anything else (NaN, text, 7)."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if number and math.isfinite(value) and 0 <= value <= 1 else None


def measured_accuracy(run: Path) -> tuple[float | None, str | None]:
    """metrics.json's test accuracy (digitlab evaluate), None when there is none, and why not
    when the file is there but unusable (said once at start, not a traceback)."""
    path = run / "metrics.json"
    if not path.is_file():
        return None, None
    try:
        metrics = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError) as e:  # bad UTF-8 and JSON are ValueErrors
        return None, f"{path}: ignored, not readable JSON ({str(e)[:120]})"
    if not isinstance(metrics, dict) or metrics.get("split", "test") != "test":
        return None, None
    accuracy = fraction(metrics.get("accuracy"))
    if accuracy is None and "accuracy" in metrics:
        return None, f"{path}: ignored, its accuracy is not a number in 0..1"
    return accuracy, None


def model_info(run: Path, reader: Reader, settings: Settings) -> tuple[dict, list[str]]:
    """What GET /api/model answers (the model, its data, its test accuracy, the versions and
    limits), and the warnings met reading the run."""
    info = reader.info
    accuracy, warning = measured_accuracy(run)
    source = "metrics.json (digitlab evaluate)" if accuracy is not None else None
    if accuracy is None and (after := fraction((info.get("test") or {}).get("acc"))) is not None:
        accuracy, source = after, "model.json (test split after training)"
    about = {
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
        "limits": {
            "max_body_bytes": settings.max_body_bytes,
            "max_pixels": min(settings.max_pixels, ink.MAX_PIXELS),
            "body_timeout_s": settings.timeout,
        },
    }
    return about, [warning] if warning else []


FIELDS = {"name": "spec.name", "dataset": "data.dataset", "trained_with": "digitlab_version"}


def check_about(run: Path, about: dict) -> None:
    """Refuse, at start and in one line naming the model.json field, a run GET /api/model could
    not describe (it would answer 500 to every request)."""
    try:
        schemas.ModelInfo.model_validate(about)
    except ValidationError as e:
        problem = e.errors()[0]
        key = str(problem["loc"][0])
        shown = repr(about.get(key))[:60]
        raise DigitlabError(
            f"{run / 'model.json'}: {FIELDS.get(key, key)} = {shown}: {problem['msg']}"
        ) from None


def create_app(run, settings: Settings | None = None, unsure_below: float | None = None) -> FastAPI:
    """The ASGI app serving one finished run (loaded once, here, so a bad run fails at start)."""
    run, settings = Path(run), settings or Settings()
    reader = Reader(run, unsure_below)
    about, warnings = model_info(run, reader, settings)
    check_about(run, about)
    threads = anyio.CapacityLimiter(max(2, os.cpu_count() or 2))  # decoding takes CPU, memory
    app = DigitApp(
        title=f"digitlab: {about['name']}",
        version=__version__,
        description=(
            f"Reads handwritten digits with the run `{run.name}` ({about['name']}, trained on "
            f"{about['dataset']}). POST an image to `/api/predict` as {ACCEPTED}. "
            f"Bodies over {settings.max_body_bytes:,} bytes and images over "
            f"{about['limits']['max_pixels']:,} pixels are refused before decoding. Every "
            'error answers `{"error": "..."}`.'
        ),
        docs_url=None,
        redoc_url=None,
    )
    app.state.served = Served(reader, settings, about, threads, warnings)
    handle_errors(app)
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
