"""The API's answers and request bodies as OpenAPI sees them (documentation and schema checks).

The endpoints build plain dicts and send them as JSON themselves (no validation on the hot path);
these models describe those dicts, and tests check every answer against the document.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Status = Literal["ok", "unsure", "no digit found"]
Image28 = list[list[int]]


class Guess(BaseModel):
    label: str
    p: float = Field(ge=0, le=1)


class Timing(BaseModel):
    """Milliseconds spent in the server on this request."""

    read_ms: float = Field(description="receiving the body")
    prepare_ms: float = Field(description="decoding and preparing the image (ink.prepare)")
    model_ms: float = Field(description="the model's forward pass")
    total_ms: float


class DigitAnswer(BaseModel):
    status: Status = Field(description="'unsure' below the run's threshold; no digit: blank input")
    label: str | None = Field(description="the most likely class; null when no digit was found")
    confidence: float = Field(ge=0, le=1, description="the top probability")
    top: list[Guess] = Field(description="the `top` most likely classes, most likely first")
    note: str | None = Field(
        default=None,
        description="present when the status needs a reason: an uploaded image whose ink is "
        "wider than one digit is 'unsure' with a note to read it as a number; one unlike every "
        "digit the model learned (a letter or a symbol) is 'unsure' with a note saying so",
    )
    probabilities: list[float] = Field(
        description="every class's probability, in the order of /api/model's `classes` "
        "(empty when no digit was found)"
    )
    input: Image28 | None = Field(
        description="the 28x28 uint8 image the model saw (light ink on black), row by row"
    )
    source: Literal["pixels", "image"] = Field(
        description="pixels: a 28x28 array sent as is; image: an encoded image run through "
        "ink.prepare (paper removed, cropped, fitted in 20x20, centred by mass)"
    )
    timing: Timing


class NumberDigit(BaseModel):
    status: Status
    label: str
    confidence: float = Field(ge=0, le=1)
    top: list[Guess]
    box: list[int] = Field(description="where the digit is in the image, as ink.segment gives it")
    input: Image28


class Separator(BaseModel):
    char: Literal[",", ".", "-", "/", "?"]  # ?: a mark that is no digit nor separator ($, ()
    box: list[int] = Field(description="where the mark is in the image")


class NumberAnswer(BaseModel):
    status: Status = Field(
        description="'unsure' when any digit is unsure or the confidence is below the threshold"
    )
    number: str | None = Field(
        description="what is written, left to right, separators included (1,234.56; "
        "12/03/2026); null when no digit is found"
    )
    confidence: float = Field(
        ge=0,
        le=1,
        description="the chance that the whole number is right: the product of every symbol's "
        "calibrated probability, separators included",
    )
    digits: list[NumberDigit]
    separators: list[Separator]
    boxes: list[list[int]]
    source: Literal["pixels", "image"]
    timing: Timing


class Limits(BaseModel):
    max_body_bytes: int
    max_pixels: int
    body_timeout_s: float


class ModelInfo(BaseModel):
    name: str = Field(description="the model (preset or spec name)")
    run: str = Field(description="the run directory's name")
    classes: list[str]
    dataset: str
    accuracy: float | None = Field(description="test accuracy; null when never measured")
    accuracy_from: str | None = Field(description="where the accuracy comes from")
    num_params: int | None
    spec: dict = Field(description="the ModelSpec, as in the run's model.json")
    unsure_below: float
    trained_with: str | None = Field(description="the digitlab version that trained the run")
    digitlab_version: str = Field(description="the digitlab version serving it")
    limits: Limits


class Health(BaseModel):
    status: Literal["ok"]
    model: str


class ErrorBody(BaseModel):
    error: str = Field(description="what is wrong with the request, in one line")


def pixels_schema(shape: tuple[int, int] | None) -> dict:
    """JSON Schema of {"pixels": rows}: a fixed (rows, cols) array, or any 2-D one."""
    row: dict = {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 255}}
    rows: dict = {"type": "array", "items": row, "minItems": 1}
    if shape:
        row |= {"minItems": shape[1], "maxItems": shape[1]}
        rows |= {"minItems": shape[0], "maxItems": shape[0]}
    else:
        row |= {"minItems": 1}
    return {
        "type": "object",
        "properties": {"pixels": rows},
        "required": ["pixels"],
        "additionalProperties": False,
    }


IMAGE_JSON = {
    "type": "object",
    "properties": {
        "image": {
            "type": "string",
            "description": "a PNG or JPEG, base64 encoded (a data: URL is accepted too)",
        }
    },
    "required": ["image"],
    "additionalProperties": False,
}


def request_body(pixels_help: str, shape: tuple[int, int] | None) -> dict:
    """OpenAPI requestBody for the predict routes: four ways to send an image."""
    binary = {"type": "string", "format": "binary"}
    pixels = pixels_schema(shape) | {"description": pixels_help}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"file": binary},
                        "required": ["file"],
                    }
                },
                "image/png": {"schema": binary},
                "image/jpeg": {"schema": binary},
                "application/json": {"schema": {"oneOf": [pixels, IMAGE_JSON]}},
            },
        }
    }


def errors(*statuses: int) -> dict:
    """OpenAPI `responses` entries for the given error statuses, all {"error": "..."}."""
    meaning = {
        400: "malformed request: empty body, malformed JSON or multipart",
        408: "the body did not arrive in time",
        413: "body or image too large (checked before decoding)",
        415: "unsupported Content-Type",
        422: "well-formed but wrong: not an image, truncated, wrong array shape or type",
    }
    return {s: {"model": ErrorBody, "description": meaning[s]} for s in statuses}
