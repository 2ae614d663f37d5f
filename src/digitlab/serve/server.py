"""Serve the app with uvicorn: check the settings, load the run, bind, say where, and serve.

    >>> run_server("runs/mlp", port=8000, say=print)    # blocks until Ctrl+C or SIGTERM
    digitlab serve: mlp-256-128-64 (runs/mlp) at http://127.0.0.1:8000  (API docs at /docs)

Everything that can be refused is refused before a port is bound, in one line: the settings
(settings.py), then the run (a damaged model.json, a model whose answers are not numbers).
Slow and idle clients are the protocol's business (protocol.py): the event loop never waits on a
client in a worker thread, and every wait has a deadline.
"""

from __future__ import annotations

import dataclasses
import gc
import ipaddress
import json
import os
import socket
from collections.abc import Callable

import uvicorn
from threadpoolctl import threadpool_limits
from uvicorn.supervisors import Multiprocess

from digitlab import reader
from digitlab.errors import DigitlabError
from digitlab.serve.app import create_app
from digitlab.serve.protocol import HEADERS_LIMIT, KEEP_ALIVE, MAX_CONNECTIONS, GuardedH11, Guards
from digitlab.serve.settings import MAX_BODY_MB, MAX_PIXELS, TIMEOUT, Settings

SETTINGS_ENV = "DIGITLAB_SERVE_SETTINGS"  # how worker processes learn what to serve


def settle() -> None:
    """Set a serving process up for steady latency, once its app is loaded.

    One BLAS thread: a request is one small image, so more threads only spin and take the cores
    from the requests themselves (measured: 1.2 -> 0.8 ms of CPU per request). And the objects
    loaded so far (FastAPI, NumPy, the model) are frozen out of the garbage collector, so a full
    collection no longer walks them all, which stalled every request for tens of milliseconds.
    """
    threadpool_limits(limits=1, user_api="blas")
    gc.collect()
    gc.freeze()


def app_from_environment():
    """The app a worker process serves (with --workers N), from the settings run_server left."""
    given = json.loads(os.environ[SETTINGS_ENV])
    app = create_app(given["run"], Settings(**given["settings"]), given["unsure_below"])
    settle()
    return app


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: any free port)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as e:
        raise DigitlabError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        raise DigitlabError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock


def is_loopback(sock: socket.socket) -> bool:
    return ipaddress.ip_address(sock.getsockname()[0]).is_loopback


def uvicorn_config(app, settings: Settings) -> uvicorn.Config:
    """uvicorn serving `app` (or, with several workers, the factory each worker calls)."""
    several = settings.workers > 1
    config = uvicorn.Config(
        "digitlab.serve.server:app_from_environment" if several else app,
        factory=several,
        workers=settings.workers,
        http=GuardedH11,
        ws="none",
        lifespan="off",
        log_level="warning",
        access_log=False,
        timeout_keep_alive=KEEP_ALIVE,
        limit_concurrency=None,  # GuardedH11 makes room, and answers 503 itself, in JSON
        h11_max_incomplete_event_size=HEADERS_LIMIT,
        timeout_graceful_shutdown=5,
        server_header=False,
    )
    idle = min(KEEP_ALIVE, settings.timeout)
    config.digitlab_guards = Guards(settings.timeout, idle, MAX_CONNECTIONS)  # to workers too
    return config


def run_server(
    run,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    max_body_mb: float = MAX_BODY_MB,
    max_pixels: int = MAX_PIXELS,
    timeout: float = TIMEOUT,
    unsure_below: float | None = None,
    say: Callable[[str], object] = print,
    max_body_bytes: int | None = None,
) -> None:
    """Serve `run` until interrupted; `say` gets the line saying where, and any warning.

    Each setting is checked first (a bad one is a DigitlabError naming its flag);
    `max_body_bytes`, when given, is the body limit in bytes instead of `max_body_mb`."""
    if max_body_bytes is not None:
        max_body_mb = max_body_bytes / 1_000_000
    settings = Settings(host, port, workers, max_body_mb, max_pixels, timeout)
    run = reader.run_folder(run)  # None or "reader": the built-in reader
    app = create_app(run.resolve(), settings, unsure_below)  # a bad run fails before we listen
    settle()
    sock = listen(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    name = app.title.removeprefix("digitlab: ")
    say(
        f"digitlab serve: {name} ({run}) at http://{shown}:{bound_port}  "
        f"(API docs at /docs; Ctrl+C stops)"
    )
    if not is_loopback(sock):
        say(
            f"warning: listening on {bound_host}, reachable from other machines: anyone who "
            "can connect can use the model (no authentication, no TLS)"
        )
    for warning in app.state.served.warnings:
        say(f"warning: {warning}")
    serve(app, settings, sock, {"run": str(run.resolve()), "unsure_below": unsure_below})


def serve(app, settings: Settings, sock: socket.socket, run: dict) -> None:
    """Run uvicorn on the bound socket until Ctrl+C or SIGTERM, in one process or several."""
    config = uvicorn_config(app, settings)
    try:
        if settings.workers > 1:
            given = run | {"settings": dataclasses.asdict(settings)}
            os.environ[SETTINGS_ENV] = json.dumps(given)
            Multiprocess(config, sockets=[sock]).run()
        else:
            uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
