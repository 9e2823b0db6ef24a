"""What every stand-in server shares: a threaded HTTP server on a free loopback port, started and
stopped around a `with` block, and the queue of injected faults."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class Fault:
    """One injected fault: `kind` (lose, fail, rate, delay), for `path` (a route template, optionally
    prefixed with the method) or any path when None, with its parameters in `kw`."""

    def __init__(self, kind: str, path: str | None, **kw: Any) -> None:
        self.kind, self.path, self.kw = kind, path, kw

    def matches(self, method: str, template: str) -> bool:
        return self.path is None or self.path in (template, f"{method} {template}")


class JsonHandler(BaseHTTPRequestHandler):
    """Request handler base: every method goes to `_dispatch(method)`; `_send_json` validates the body
    with the stand-in's `validator` (recording any violation for the test) and writes it."""

    standin: Any
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes: no 40 ms delayed-ACK stalls
    content_type = "application/json; charset=utf-8"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        raise NotImplementedError

    def _send_json(self, status: int, body: Any, path: str, headers: dict[str, str] | None = None) -> None:
        s = self.standin
        data = b""
        if body is not None:
            if s.validator is not None:
                try:
                    s.validator(self.command, path, status, body)
                except Exception as exc:  # noqa: BLE001 - every violation is recorded for the test
                    s.violations.append(str(exc))
            data = json.dumps(body).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", self.content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class StandinServer:
    """Base of the stand-ins: `url`, `start()`, `stop()`, and use as a context manager."""

    thread_name = "standin"

    def _serve(self, handler: type[BaseHTTPRequestHandler], *, port: int = 0, host: str = "127.0.0.1") -> None:
        """Bind a server for `handler` (which reaches this object as `self.standin`) on host:port
        (127.0.0.1 and a free port unless told)."""
        bound = type("Handler", (handler,), {"standin": self})
        self._httpd = ThreadingHTTPServer((host, port), bound)
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name=self.thread_name,
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
