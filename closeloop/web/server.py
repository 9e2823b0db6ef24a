"""The HTTP server's defences against slow and too many clients, for uvicorn (`closeloop serve` and
`closeloop dev`). uvicorn has a keep-alive timeout but no header or body timeout and no connection cap that
acts before a request arrives, so this subclass of its h11 protocol adds them from `[web]`:

- a connection's request line and headers must arrive within `header_timeout` (from the connection, or from
  the end of the previous response on a kept-alive one), else it gets 408 and is closed (an idle one is
  closed without a word);
- its body must be complete within `body_timeout` of the headers: closeloop/web/deadlines.py answers 408
  to the app reading it; here, a second later, the connection is closed whatever reads it (a client still
  sending a body after its answer, e.g. a 401, is not kept for ever);
- beyond `max_connections` open connections, a new one gets 503 at once and is closed, so an excess of
  clients costs a socket for a moment, never a buffer;
- a request head h11 cannot parse gets 400 with a JSON reason (uvicorn's is plain text).

Cut-offs are logged at debug: a flood of them must not flood the log. The h11 protocol is used whether or not
httptools is installed, so the behaviour does not depend on what else is."""

from __future__ import annotations

import asyncio
import json
import resource
from typing import Any

import h11
import structlog
from uvicorn.protocols.http.h11_impl import H11Protocol

log = structlog.get_logger("closeloop.web")

BODY_GRACE = 1.0  # seconds after body_timeout: the app's own 408 goes first
REFUSED_LINGER = 1.0  # seconds a refused connection stays to read and drop what its client sends


def _canned(status: int, reason: str, message: str, *extra: str) -> bytes:
    """A complete HTTP/1.1 response that closes the connection, with the usual JSON error body."""
    body = json.dumps({"error": message}).encode()
    head = [f"HTTP/1.1 {status} {reason}", "content-type: application/json", f"content-length: {len(body)}",
            "connection: close", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class GuardedProtocol(H11Protocol):
    """uvicorn's h11 protocol with a header deadline, a body deadline and a connection cap (class attributes,
    set by `guarded_protocol`)."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 2048

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            # 503 and our end closed at once; what the client sends meanwhile is read and dropped (closing with
            # it unread would reset the connection, and the client might never see the 503), for a second.
            log.debug("http_connection_refused", open=len(self.connections) - 1, limit=self.max_connections)
            self._refused = True
            transport.write(_canned(503, "Service Unavailable", "too many connections; try again later",
                                    "retry-after: 1"))
            if transport.can_write_eof():
                transport.write_eof()
            self.loop.call_later(REFUSED_LINGER, transport.close)
            return
        self._track()

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head()
        self._cancel_body()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """A request h11 cannot parse (a malformed or over 16 KiB head): 400 with a JSON reason, like every
        other error of closeloop's (uvicorn's own is plain text)."""
        self.transport.write(_canned(400, "Bad Request", "invalid HTTP request (malformed, or a head over 16 KiB)"))
        self.transport.close()

    def handle_events(self) -> None:
        super().handle_events()
        self._track()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._track()

    # ------------------------------------------------------------------ the deadlines

    def _track(self) -> None:
        """Arm or cancel the deadlines for where the client is: waiting for a request head, or sending a body."""
        if self.transport is None or self.transport.is_closing():
            return
        state = self.conn.their_state
        if state is h11.IDLE:
            self._cancel_body()
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(self.header_timeout, self._head_expired)
        elif state is h11.SEND_BODY:
            self._cancel_head()
            if self._body_timer is None:
                self._body_timer = self.loop.call_later(self.body_timeout + BODY_GRACE, self._body_expired)
        else:
            self._cancel_head()
            self._cancel_body()

    def _cancel_head(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _cancel_body(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        started = bool(self.conn.trailing_data[0])  # part of a request head is waiting: say why it ends
        log.debug("http_header_timeout", client=_address(self.client), timeout=self.header_timeout, partial=started)
        if started:
            self.transport.write(_canned(408, "Request Timeout",
                                         f"the request headers did not arrive within {self.header_timeout:g}s"))
        self.transport.close()

    def _body_expired(self) -> None:
        self._body_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.SEND_BODY:
            return
        log.debug("http_body_timeout", client=_address(self.client), timeout=self.body_timeout)
        self.transport.close()


def _address(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else ""


def guarded_protocol(*, header_timeout: float, body_timeout: float, max_connections: int) -> type[GuardedProtocol]:
    """The protocol class to give uvicorn (`http=`), with these limits."""
    return type("GuardedProtocol", (GuardedProtocol,), {
        "header_timeout": header_timeout, "body_timeout": body_timeout, "max_connections": max_connections})


def raise_open_files(connections: int, spare: int = 256) -> int:
    """Raise this process's soft limit of open files (up to the hard one) so `connections` sockets fit beside
    the files it needs: past the limit, accept() fails and asyncio logs an error on every try. The new soft
    limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + spare
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    return soft
