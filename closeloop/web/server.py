"""The HTTP server's defences against slow and too many clients, for uvicorn (`closeloop serve` and
`closeloop dev`). uvicorn has a keep-alive timeout but no header or body timeout and no connection cap that
acts before a request arrives, so this subclass of its httptools protocol adds them from `[web]`:

- a connection's request line and headers must arrive within `header_timeout` (from the connection, or from
  the end of the previous response on a kept-alive one), else it gets 408 and is closed (an idle one is
  closed without a word);
- its body must be complete within `body_timeout` of the headers: closeloop/web/deadlines.py answers 408
  to the app reading it; here, a second later, the connection is closed whatever reads it (a client still
  sending a body after its answer, e.g. a 401, is not kept for ever);
- beyond `max_connections` open connections, a new one gets 503 at once and is closed, so an excess of
  clients costs a socket for a moment, never a buffer;
- a request head that cannot be parsed, or is over 16 KiB (h11's limit; httptools has none of its own), gets
  400 with a JSON reason (uvicorn's is plain text).

Cut-offs are logged at debug: a flood of them must not flood the log. httptools (llhttp, in C) rather than h11
(pure Python): bench/webhooks.py measured h11's parsing at about a sixth of the event loop's CPU per webhook.
httptools is a dependency, so the behaviour does not depend on what else is installed."""

from __future__ import annotations

import asyncio
import json
import resource
from typing import Any

import httptools
import structlog
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = structlog.get_logger("closeloop.web")

BODY_GRACE = 1.0  # seconds after body_timeout: the app's own 408 goes first
REFUSED_LINGER = 1.0  # seconds a refused connection stays to read and drop what its client sends
MAX_HEAD = 16 * 1024  # bytes of request line and headers at most (h11's default; httptools has no limit)


def _canned(status: int, reason: str, message: str, *extra: str) -> bytes:
    """A complete HTTP/1.1 response that closes the connection, with the usual JSON error body."""
    body = json.dumps({"error": message}).encode()
    head = [f"HTTP/1.1 {status} {reason}", "content-type: application/json", f"content-length: {len(body)}",
            "connection: close", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header deadline, a body deadline, a head size limit and a connection
    cap (class attributes, set by `guarded_protocol`)."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 2048

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._refused = False
        self._in_head = False  # between a request's first byte and the end of its headers
        self._head_bytes = 0
        self._in_body = False  # between the end of the headers and the end of the body

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
        self._arm_head()

    def data_received(self, data: bytes) -> None:
        """uvicorn's, without its warning per unparsable request (a flood of them must not flood the log)."""
        if self._refused or self.parser is None:
            return
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.send_400_response("upgrade")  # closeloop speaks no WebSocket
            return
        except httptools.HttpParserError:
            self.send_400_response("invalid")
            return
        if self._in_head:  # a head still unfinished: its bytes so far (the parser keeps no limit of its own)
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD:
                self.send_400_response("too large")

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head()
        self._cancel_body()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """A request head that cannot be parsed (malformed, or over MAX_HEAD bytes): 400 with a JSON reason,
        like every other error of closeloop's (uvicorn's own is plain text)."""
        self._cancel_head()
        self._cancel_body()
        self.transport.write(_canned(400, "Bad Request", "invalid HTTP request (malformed, or a head over 16 KiB)"))
        self.transport.close()

    # ------------------------------------------------------------------ the parser's callbacks

    def on_message_begin(self) -> None:
        self._in_head, self._head_bytes = True, 0
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_head()
        self._in_body = True  # until on_message_complete, which comes at once when there is no body
        self._body_timer = self.loop.call_later(self.body_timeout + BODY_GRACE, self._body_expired)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_body = False
        self._cancel_body()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head()  # the next request's head is due within header_timeout

    # ------------------------------------------------------------------ the deadlines

    def _arm_head(self) -> None:
        self._cancel_head()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_expired)

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
        in_request = self._in_body or (self.cycle is not None and not self.cycle.response_complete)
        if self.transport.is_closing() or in_request:
            return
        started = self._in_head  # part of a request head is waiting: say why it ends
        log.debug("http_header_timeout", client=_address(self.client), timeout=self.header_timeout, partial=started)
        if started:
            self.transport.write(_canned(408, "Request Timeout",
                                         f"the request headers did not arrive within {self.header_timeout:g}s"))
        self.transport.close()

    def _body_expired(self) -> None:
        self._body_timer = None
        if self.transport.is_closing() or not self._in_body:
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
