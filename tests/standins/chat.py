"""A local HTTP receiver standing in for chat services' incoming webhooks (Teams Workflows, Google Chat,
Mattermost, Discord, a generic receiver): stdlib `http.server` in a thread, on 127.0.0.1, recording every
request and answering per path with what the test configured.

    with Receiver() as rx:
        rx.answer("/discord/gone", 404, {"message": "Unknown Webhook", "code": 10015})
        url = rx.url("/discord/gone")          # http://127.0.0.1:<port>/discord/gone
        ...
        [request] = rx.requests                # .path, .query, .headers, .body (bytes), .json

A path with no answer configured gets 200 with an empty body. GET is answered (and recorded) like POST, so a
browser test can load a page from it (tests/browser/test_browser_smoke.py)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class Receiver:
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._answers: dict[str, Answer] = {}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's name (GET is answered the same way)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                with receiver._lock:
                    receiver.requests.append(Request(self.command, parts.path, query,
                                                     {k.lower(): v for k, v in self.headers.items()}, body))
                    answer = receiver._answers.get(parts.path, Answer())
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            do_GET = do_POST  # a page a browser test loads (tests/browser)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, path: str, status: int = 200, body: Any = b"", headers: dict[str, str] | None = None) -> None:
        """How `path` answers from now on: `body` as bytes, str or JSON (a dict or list)."""
        headers = dict(headers or {})
        if isinstance(body, dict | list):
            body = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            body = body.encode()
            headers.setdefault("Content-Type", "text/plain")
        with self._lock:
            self._answers[path] = Answer(status, body, headers)

    def at(self, path: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
