"""deploy/healthcheck.py, the image's `closeloop-healthcheck`: the role read off the container's main process, the
web app's /healthz, and the worker's connection to Temporal; healthy and unhealthy, on loopback."""

from __future__ import annotations

import importlib.util
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "healthcheck.py"


@pytest.fixture(scope="module")
def hc() -> ModuleType:
    spec = importlib.util.spec_from_file_location("closeloop_healthcheck", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def web() -> Iterator[tuple[int, dict[str, int]]]:
    """A stand-in for `closeloop serve` on a free loopback port: GET /healthz answers state["status"]."""
    state = {"status": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            status = state["status"] if self.path == "/healthz" else 404
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], state
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("argv", "role"), [
    (["/opt/closeloop/bin/python", "/opt/closeloop/bin/closeloop", "serve"], "web"),
    (["/opt/closeloop/bin/python", "/opt/closeloop/bin/closeloop", "worker"], "worker"),
    (["python", "worker.py", "--update-schedules"], "worker"),
    (["/opt/closeloop/bin/python", "/opt/closeloop/bin/closeloop", "db", "upgrade"], "other"),
    ([], "other"),
])
def test_the_role_is_read_off_the_main_command(hc: ModuleType, argv: list[str], role: str) -> None:
    assert hc.role_of(argv) == role


def test_the_main_command_is_read_from_proc(hc: ModuleType, tmp_path: Path) -> None:
    cmdline = tmp_path / "cmdline"
    cmdline.write_bytes(b"/opt/closeloop/bin/python\0/opt/closeloop/bin/closeloop\0worker\0")
    assert hc.main_command(cmdline) == ["/opt/closeloop/bin/python", "/opt/closeloop/bin/closeloop", "worker"]
    assert hc.main_command(tmp_path / "missing") == []


def test_the_web_check_asks_healthz(hc: ModuleType, web: tuple[int, dict[str, int]]) -> None:
    port, state = web
    env = {"CLOSELOOP_WEB_PORT": str(port)}
    assert hc.check("web", env) is None
    state["status"] = 503
    assert "answered 503" in hc.check("web", env)
    assert "127.0.0.1" in hc.check("web", {"CLOSELOOP_WEB_PORT": str(_free_port())})


def test_the_worker_check_connects_to_temporal(hc: ModuleType) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        assert hc.check("worker", {"CLOSELOOP_TEMPORAL_ADDRESS": address}) is None
    problem = hc.check("worker", {"CLOSELOOP_TEMPORAL_ADDRESS": f"127.0.0.1:{_free_port()}"})
    assert problem is not None and "unreachable" in problem


def test_the_worker_check_falls_back_to_the_config(hc: ModuleType, tmp_path: Path) -> None:
    port = _free_port()
    config = tmp_path / "closeloop.toml"
    config.write_text(f'[temporal]\naddress = "127.0.0.1:{port}"\n')
    problem = hc.check("worker", {"CLOSELOOP_CONFIG": str(config)})
    assert problem is not None and f"127.0.0.1:{port}" in problem
    config.write_text('[temporal]\naddress = "no port"\n')
    assert "no Temporal address" in hc.check("worker", {"CLOSELOOP_CONFIG": str(config)})


def test_main_exits_by_health(hc: ModuleType, web: tuple[int, dict[str, int]], monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    port, state = web
    monkeypatch.setenv("CLOSELOOP_WEB_PORT", str(port))
    assert hc.main(["web"]) == 0
    state["status"] = 500
    assert hc.main(["web"]) == 1
    assert "closeloop-healthcheck: web:" in capsys.readouterr().err
    assert hc.main(["other"]) == 0
    assert hc.main(["database"]) == 2
