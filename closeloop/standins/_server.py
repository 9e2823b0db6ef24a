"""What every stand-in server shares: a threaded HTTP server on a free loopback port, started and
stopped around a `with` block, the state every test reads (`requests`, `paths`, `violations`), the queue of injected
faults (`fail_next`, `rate_limit_next`, each consumed by the next matching request), and the routing of a
request to a handler by route template (`compile_routes`, `match_route`)."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import unquote

Validator = Callable[[str, str, int, Any], None]
Route = tuple[str, str, re.Pattern[str], str]  # (method, template, regex, handler name)


class Fault:
    """One injected fault: `kind` (lose, fail, rate, delay), for `path` (a route template, optionally
    prefixed with the method) or any path when None, with its parameters in `kw`."""

    def __init__(self, kind: str, path: str | None, **kw: Any) -> None:
        self.kind, self.path, self.kw = kind, path, kw

    def matches(self, method: str, template: str) -> bool:
        return self.path is None or self.path in (template, f"{method} {template}")


def compile_routes(routes: list[tuple[str, str, str]]) -> list[Route]:
    """(method, template, handler name) -> routes whose regex captures each `{name}` segment of the template. A
    `{+name}` (RFC 6570's reserved expansion, as in GitHub's `contents_url`) captures the rest of the path, `/`s
    and all (a file's path, a branch name like `feature/x`); the route's template names it `{name}`."""
    out: list[Route] = []
    for m, t, h in routes:
        pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", re.sub(r"\{\+(\w+)\}", r"(?P<\1>.+)", t))
        out.append((m, t.replace("{+", "{"), re.compile("^" + pattern + "$"), h))
    return out


def match_route(routes: list[Route], method: str, path: str) -> tuple[str, str, dict[str, str]] | None:
    """(template, handler name, captured segments) of the first route for `method` and `path`, else None. A
    captured segment is percent-decoded, as a server reads it (`%2F` is a `/` inside one segment)."""
    for m, template, regex, name in routes:
        match = regex.match(path)
        if m == method and match:
            return template, name, {k: unquote(v) for k, v in match.groupdict().items()}
    return None


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
        self._record("GET")

    def do_POST(self) -> None:
        self._record("POST")

    def do_PUT(self) -> None:
        self._record("PUT")

    def do_PATCH(self) -> None:
        self._record("PATCH")

    def do_DELETE(self) -> None:
        self._record("DELETE")

    def _record(self, method: str) -> None:
        with self.standin._lock:
            self.standin.paths.append(f"{method} {self.path}")
        self._dispatch(method)

    def _dispatch(self, method: str) -> None:
        raise NotImplementedError

    def _read_body(self) -> bytes:
        """The request body (Content-Length bytes; empty without one)."""
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

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
    """Base of the stand-ins: `url`, `start()`, `stop()`, and use as a context manager; `requests` (Counter of
    "METHOD /route/{template}"), `paths` (every request as "METHOD /raw/path?query", as it arrived), `violations`
    (what `validator` raised), and the fault queue."""

    thread_name = "standin"

    def __init__(self, validator: Validator | None = None) -> None:
        self.validator = validator
        self.requests: Counter[str] = Counter()
        self.paths: list[str] = []
        self.violations: list[str] = []
        self._faults: list[Fault] = []
        self._lock = threading.RLock()
        self._down_until = 0.0  # time.monotonic() until which every request fails (an outage)
        self.outage_failures = 0  # requests failed by outages

    # ------------------------------------------------------------------ faults
    def fail_next(self, n: int = 1, status: int = 500, path: str | None = None) -> None:
        self._faults.extend(Fault("fail", path, status=status) for _ in range(n))

    def rate_limit_next(self, retry_after: int = 1, path: str | None = None) -> None:
        self._faults.append(Fault("rate", path, retry_after=retry_after))

    def outage(self, seconds: float, status: int = 503) -> None:
        """Every request fails with `status` for the next `seconds` (the vendor is down), then all is well."""
        with self._lock:
            self._down_until = time.monotonic() + seconds
            self._down_status = status

    def restore(self) -> None:
        """End an outage now."""
        with self._lock:
            self._down_until = 0.0

    @property
    def down(self) -> bool:
        return time.monotonic() < self._down_until

    def _fault_matches(self, fault: Fault, method: str, template: str) -> bool:
        return fault.matches(method, template)

    def _take_fault(self, method: str, template: str, kinds: tuple[str, ...] | None = None) -> Fault | None:
        """The first queued fault of one of `kinds` (any kind when None) for this request, removed; during an
        outage, a failure for every request."""
        with self._lock:
            if (kinds is None or "fail" in kinds) and time.monotonic() < self._down_until:
                self.outage_failures += 1
                return Fault("fail", None, status=self._down_status)
            for fault in self._faults:
                if (kinds is None or fault.kind in kinds) and self._fault_matches(fault, method, template):
                    self._faults.remove(fault)
                    return fault
        return None

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
