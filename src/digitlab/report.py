"""Self-contained HTML reports: figures inlined as data URIs, no script or style from outside.

    >>> html = render(title="cnn-small on mnist", subtitle="...", sections=[
    ...     section("Accuracy", table=(["metric", "value"], [["accuracy", "99.1%"]]),
    ...             figures=[("confusion matrix", png_bytes)])],
    ...     provenance=[("command", "digitlab evaluate runs/cnn")])

Sections are plain dicts, so evaluate and compare build them from numbers and PNG bytes.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

import jinja2

from digitlab.version import __version__

TEMPLATES = Path(__file__).parent / "templates"

# Headless Chromium (Debian's package) as the browser tests and README screenshots open reports;
# without the networking flags it keeps trying to reach Google's hosts.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def section(
    title: str,
    text: str = "",
    table: tuple[list, list] | None = None,
    figures: list[tuple[str, bytes]] = (),
    links: list[tuple[str, str]] = (),
) -> dict:
    """A report section: a paragraph, a table (header, rows), figures (caption, PNG bytes) and
    links (text, relative URL) to other reports."""
    return {
        "links": [{"text": t, "href": href} for t, href in links],
        "id": "".join(c if c.isalnum() else "-" for c in title.lower()),
        "title": title,
        "text": text,
        "table": {"header": table[0], "rows": table[1]} if table else None,
        "figures": [{"caption": caption, "uri": data_uri(png)} for caption, png in figures],
    }


def render(
    title: str,
    subtitle: str,
    sections: list[dict],
    provenance: list[tuple[str, str]],
    headline: list[tuple[str, str]] = (),
) -> str:
    """The report as one HTML string."""

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
    )
    return env.get_template("report.html.j2").render(
        title=title,
        subtitle=subtitle,
        sections=sections,
        provenance=provenance,
        headline=list(headline),
        version=__version__,
        date=time.strftime("%Y-%m-%d %H:%M"),
    )
