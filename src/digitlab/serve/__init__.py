"""`digitlab serve`: a draw-a-digit page and a REST API over one trained run (FastAPI, uvicorn).

    >>> from digitlab.serve import create_app, run_server
    >>> app = create_app("runs/mlp")          # an ASGI app, for uvicorn or a test client
    >>> run_server("runs/mlp", port=8000)     # blocks; says where it listens

app.py loads the run and builds the app, routes.py holds the routes (one module function each),
reading.py turns a body into an answer (the model one thread at a time, never NaN), inputs.py
turns request bodies into digits (or 4xx errors), errors.py sends every error as
{"error": "..."}, schemas.py describes the answers for OpenAPI, settings.py checks the flags,
protocol.py guards each connection (deadlines, room for real clients), server.py binds and runs
uvicorn, static/ is the page and the API docs (no external assets). Needs the `serve` extra.
"""

from digitlab.serve.app import create_app
from digitlab.serve.server import run_server

__all__ = ["create_app", "run_server"]
