"""One HTTP connection, guarded: deadlines for clients that send nothing, room for real ones.

    >>> config = uvicorn.Config(app, http=GuardedH11, ...)
    >>> config.digitlab_guards = Guards(timeout=20, idle=5, max_connections=256)

uvicorn's h11 protocol waits forever for a request's headers, answers 503 to every client once
`limit_concurrency` sockets are open (idle or not), and sends those errors as plain text. Here:

- Deadlines. A connection is idle from when it opens, and again after each answer: if it sends
  nothing for `idle` seconds it is closed. Once a request's first byte arrives, its headers must
  be complete within `timeout` seconds (a client trickling them, slowloris, is cut off), and the
  app gives its body `timeout` more (408).
- Room. At most `max_connections` connections are open at once per worker process. When one
  more arrives, the connection idle the longest is closed to make room for it; only when every
  connection is in the middle of a request does the newcomer's request get 503.
- Errors. The 400 for a malformed request and the 503 are `{"error": "..."}`, with
  `Connection: close`, like the app's own errors.
"""

from __future__ import annotations

from dataclasses import dataclass

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from digitlab.serve.errors import busy, error_body

KEEP_ALIVE = 5  # seconds a connection may stay idle, before its first request or between two
MAX_CONNECTIONS = 256  # per worker: each may hold a body of up to --max-body-mb in memory
HEADERS_LIMIT = 16 * 1024  # bytes of request line and headers (h11's own limit); 400 beyond


@dataclass(frozen=True)
class Guards:
    """The protocol's settings, carried on uvicorn's Config (to worker processes too)."""

    timeout: float  # seconds for a request's headers, from its first byte
    idle: float  # seconds a connection may send nothing
    max_connections: int


class GuardedH11(H11Protocol):
    """uvicorn's h11 protocol with deadlines, room for real clients, and JSON errors."""

    _deadline = None
    _idle_since: float | None = None  # loop time since which it has sent nothing; None: busy

    @property
    def guards(self) -> Guards:
        return self.config.digitlab_guards

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._wait_idle()
        self._make_room()

    def data_received(self, data: bytes) -> None:
        if self._idle_since is not None:  # a request begins: its headers have `timeout` seconds
            self._idle_since = None
            self._set_deadline(self.guards.timeout)
        super().data_received(data)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._wait_idle()

    def connection_lost(self, exc) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """A malformed request line, header or chunk, or headers over HEADERS_LIMIT: 400 as
        JSON, then close. The request being answered, if any, is dropped; if its answer has
        already begun (a chunk gone bad after it), the connection is only closed."""
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True  # the app's answer to it goes nowhere
            self.cycle.message_event.set()
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            body = error_body(
                "malformed HTTP request: a bad request line, header or chunk, or more than "
                f"{HEADERS_LIMIT:,} bytes of headers"
            )
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ]
            for event in (
                h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                h11.Data(data=body),
                h11.EndOfMessage(),
            ):
                self.transport.write(self.conn.send(event))
        self.transport.close()

    def is_idle(self) -> bool:
        """Open, and waiting for a request that has not begun."""
        waiting = self.cycle is None or self.cycle.response_complete
        return self._idle_since is not None and waiting and not self.transport.is_closing()

    def _wait_idle(self) -> None:
        self._idle_since = self.loop.time()
        self._set_deadline(self.guards.idle)

    def _set_deadline(self, seconds: float) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self.loop.call_later(seconds, self._deadline_passed)

    def _deadline_passed(self) -> None:
        """Close the connection unless a request is being answered (its body has its own)."""
        waiting = self.cycle is None or self.cycle.response_complete
        if waiting and not self.transport.is_closing():
            self.transport.close()

    def _make_room(self) -> None:
        """At the limit, close the connection idle the longest; if none is idle, answer 503."""
        others = [c for c in self.connections if c is not self and not c.transport.is_closing()]
        if len(others) < self.guards.max_connections:
            return
        idle = [c for c in others if isinstance(c, GuardedH11) and c.is_idle()]
        if idle:
            min(idle, key=lambda c: c._idle_since).transport.close()
        else:
            self.app = busy  # this connection's request answers 503 (and closes it)
