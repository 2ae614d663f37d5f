"""What `digitlab serve` can be told, checked once, before the run is loaded or a port is bound.

    >>> settings = Settings(port=8000, max_body_mb=5, timeout=20)   # or a one-line DigitlabError
    >>> settings.max_body_bytes
    5000000

Each refusal names the `digitlab serve` flag and what it wants (`--timeout nan: must be a
positive number of seconds`), so the CLI passes its flags through and checks nothing itself.
The limits of the HTTP layer (idle connections, how many at once) are in protocol.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from digitlab.errors import DigitlabError

MAX_BODY_MB = 5.0  # a phone photo as JPEG fits; a body is held in memory whole while it is read
MAX_PIXELS = 25_000_000  # a 25-megapixel photo; ink.MAX_PIXELS (50M) is the library's own limit
TIMEOUT = 20.0  # seconds for a request's headers, then as many for its body: 5 MB at 2 Mbit/s


@dataclass(frozen=True)
class Settings:
    """Where to listen, and the limits every request is held to (see the module docstring)."""

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    max_body_mb: float = MAX_BODY_MB
    max_pixels: int = MAX_PIXELS
    timeout: float = TIMEOUT

    def __post_init__(self) -> None:
        whole("--port", self.port, lowest=0, highest=65535)
        whole("--workers", self.workers, lowest=1)
        whole("--max-pixels", self.max_pixels, lowest=1)
        positive("--timeout", self.timeout, "a positive number of seconds")
        positive("--max-body-mb", self.max_body_mb, "a positive number of MB")
        if self.max_body_bytes < 1:
            raise DigitlabError(f"--max-body-mb {shown(self.max_body_mb)}: allows no byte at all")

    @property
    def max_body_bytes(self) -> int:
        return round(self.max_body_mb * 1_000_000)


def whole(flag: str, value, lowest: int, highest: int | None = None) -> None:
    """Refuse anything but an integer in lowest..highest."""
    fits = isinstance(value, int) and not isinstance(value, bool) and value >= lowest
    if not fits or (highest is not None and value > highest):
        within = f"{lowest}..{highest}" if highest is not None else f"{lowest} or more"
        raise DigitlabError(f"{flag} {shown(value)}: must be a whole number, {within}")


def positive(flag: str, value, wanted: str) -> None:
    """Refuse anything but a finite number above zero (NaN, infinity, 0, negatives, text)."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value <= 0:
        raise DigitlabError(f"{flag} {shown(value)}: must be {wanted}")


def shown(value) -> str:
    """A value as the user typed it: 1, not 1.0; 1e-09; nan."""
    return f"{value:g}" if isinstance(value, float) else str(value)
