"""Serve the app with uvicorn: bind (loopback unless told), say where, and bound slow clients.

    >>> run_server("runs/mlp", port=8000, say=print)    # blocks until Ctrl+C or SIGTERM
    digitlab serve: mlp-256-128-64 (runs/mlp) at http://127.0.0.1:8000  (API docs at /docs)

Slow clients: the event loop never waits on a client in a worker thread (bodies are read
asynchronously), and every wait has a deadline. A request's headers must arrive within
`timeout` seconds of the connection opening or of the previous answer (GuardedH11 below;
uvicorn alone waits forever), its body within `timeout` more (the app answers 408), and an idle
keep-alive connection is closed after KEEP_ALIVE seconds. At most MAX_CONNECTIONS connections
are served at once per worker; beyond that uvicorn answers 503 at once.
"""

from __future__ import annotations

import gc
import ipaddress
import json
import os
import socket
from collections.abc import Callable
from pathlib import Path

import uvicorn
from threadpoolctl import threadpool_limits
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.supervisors import Multiprocess

from digitlab.errors import DigitlabError
from digitlab.serve.app import BODY_TIMEOUT, MAX_BODY_BYTES, MAX_PIXELS, create_app

KEEP_ALIVE = 5  # seconds an idle keep-alive connection stays open (uvicorn's default)
MAX_CONNECTIONS = 256  # per worker process
SETTINGS_ENV = "DIGITLAB_SERVE_SETTINGS"  # how worker processes learn what to serve


class GuardedH11(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's headers.

    Armed when the connection opens and after each answer; when it fires and no new request
    has started, the connection is closed. A client trickling its headers a byte at a time
    (slowloris) therefore holds a connection for `timeout` seconds at most.
    """

    _deadline = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def connection_lost(self, exc) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        seconds = getattr(self.config, "digitlab_timeout", BODY_TIMEOUT)
        self._deadline = self.loop.call_later(seconds, self._headers_late)

    def _headers_late(self) -> None:
        waiting = self.cycle is None or self.cycle.response_complete
        if waiting and not self.transport.is_closing():
            self.transport.close()


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
    settings = json.loads(os.environ[SETTINGS_ENV])
    app = create_app(**settings)
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


def run_server(
    run,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    max_body_bytes: int = MAX_BODY_BYTES,
    max_pixels: int = MAX_PIXELS,
    timeout: float = BODY_TIMEOUT,
    unsure_below: float | None = None,
    say: Callable[[str], object] = print,
) -> None:
    """Serve `run` until interrupted; `say` gets the line saying where, and any warning."""
    if workers < 1:
        raise DigitlabError(f"--workers {workers}: need at least 1")
    settings = {
        "run": str(Path(run).resolve()),
        "max_body_bytes": max_body_bytes,
        "max_pixels": max_pixels,
        "body_timeout": timeout,
        "unsure_below": unsure_below,
    }
    app = create_app(**settings)  # load the run here, so a bad one fails before we listen
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
    config = uvicorn.Config(
        "digitlab.serve.server:app_from_environment" if workers > 1 else app,
        factory=workers > 1,
        workers=workers,
        http=GuardedH11,
        ws="none",
        lifespan="off",
        log_level="warning",
        access_log=False,
        timeout_keep_alive=KEEP_ALIVE,
        limit_concurrency=MAX_CONNECTIONS,
        timeout_graceful_shutdown=5,
        server_header=False,
    )
    config.digitlab_timeout = timeout  # read by GuardedH11 (travels to worker processes)
    try:
        if workers > 1:
            os.environ[SETTINGS_ENV] = json.dumps(settings)
            Multiprocess(config, sockets=[sock]).run()
        else:
            uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
