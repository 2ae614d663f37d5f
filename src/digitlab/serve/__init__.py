"""`digitlab serve`: a draw-a-digit page and a REST API over one trained run (FastAPI, uvicorn).

    >>> from digitlab.serve import create_app, run_server
    >>> app = create_app("runs/mlp")          # an ASGI app, for uvicorn or a test client
    >>> run_server("runs/mlp", port=8000)     # blocks; says where it listens

app.py holds the routes, inputs.py turns request bodies into digits (or 4xx errors), schemas.py
describes the answers for OpenAPI, server.py binds and runs uvicorn, static/ is the page and
the API docs (no external assets). Needs the `serve` extra.
"""

from digitlab.serve.app import create_app
from digitlab.serve.server import run_server

__all__ = ["create_app", "run_server"]
