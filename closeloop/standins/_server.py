"""What every stand-in server shares: a threaded HTTP server on a free loopback port, started and
stopped around a `with` block, and the queue of injected faults."""

from __future__ import annotations

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


class StandinServer:
    """Base of the stand-ins: `url`, `start()`, `stop()`, and use as a context manager."""

    thread_name = "standin"

    def _serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        """Bind a server for `handler` (which reaches this object as `self.standin`) on 127.0.0.1:<free>."""
        bound = type("Handler", (handler,), {"standin": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), bound)
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
