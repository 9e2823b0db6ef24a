"""deploy/healthcheck.py, the image's `closeloop-healthcheck`: the role read off the container's main process, the
web app's and the worker's /healthz (and /readyz with --ready), the worker's port from the environment or the
config, and, for a worker serving no HTTP (port 0), its connection to Temporal; healthy and unhealthy, on loopback."""

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
    """A stand-in for `closeloop serve` or the worker's telemetry port on a free loopback port: GET /healthz answers
    state["/healthz"], GET /readyz state["/readyz"], anything else 404."""
    state = {"/healthz": 200, "/readyz": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            status = state.get(self.path, 404)
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
    env = {"CLOSELOOP_WEB_PORT": str(port), "CLOSELOOP_WEB_HOST": "0.0.0.0"}
    assert hc.check("web", env) is None
    state["/healthz"] = 503
    assert "/healthz answered 503" in hc.check("web", env)
    assert hc.check("web", env, ready=True) is None
    state["/readyz"] = 503
    assert "/readyz answered 503" in hc.check("web", env, ready=True)
    assert "127.0.0.1" in hc.check("web", {"CLOSELOOP_WEB_PORT": str(_free_port())})


def test_the_worker_check_asks_its_telemetry_port(hc: ModuleType, web: tuple[int, dict[str, int]]) -> None:
    port, state = web
    env = {"CLOSELOOP_METRICS_PORT": str(port), "CLOSELOOP_METRICS_HOST": "0.0.0.0",
           # Temporal is not reachable here: the worker's own answer decides, not a connection to Temporal
           "CLOSELOOP_TEMPORAL_ADDRESS": f"127.0.0.1:{_free_port()}"}
    assert hc.check("worker", env) is None
    state["/readyz"] = 503  # Temporal or the database down: alive, not ready
    assert hc.check("worker", env) is None
    assert f"127.0.0.1:{port}/readyz answered 503" in hc.check("worker", env, ready=True)
    state["/healthz"] = 500
    assert f"127.0.0.1:{port}/healthz answered 500" in hc.check("worker", env)
    problem = hc.check("worker", {"CLOSELOOP_METRICS_PORT": str(_free_port())})
    assert problem is not None and "/healthz" in problem


def test_the_worker_port_comes_from_the_config_or_defaults(hc: ModuleType, tmp_path: Path,
                                                            web: tuple[int, dict[str, int]]) -> None:
    port, state = web
    config = tmp_path / "closeloop.toml"
    config.write_text(f"[telemetry]\nworker_port = {port}\n")
    assert hc.worker_port({"CLOSELOOP_CONFIG": str(config)}) == port
    assert hc.check("worker", {"CLOSELOOP_CONFIG": str(config)}) is None
    assert hc.worker_port({"CLOSELOOP_CONFIG": str(config), "CLOSELOOP_METRICS_PORT": "9999"}) == 9999
    assert hc.worker_port({}) == 9464
    config.write_text("[telemetry]\nworker_port = -1\n")
    assert "no metrics port" in hc.check("worker", {"CLOSELOOP_CONFIG": str(config)})


def test_a_worker_without_a_port_is_checked_by_its_connection_to_temporal(hc: ModuleType) -> None:
    off = {"CLOSELOOP_METRICS_PORT": "0"}
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        assert hc.check("worker", {**off, "CLOSELOOP_TEMPORAL_ADDRESS": address}) is None
    problem = hc.check("worker", {**off, "CLOSELOOP_TEMPORAL_ADDRESS": f"127.0.0.1:{_free_port()}"})
    assert problem is not None and "unreachable" in problem


def test_the_temporal_fallback_reads_the_config(hc: ModuleType, tmp_path: Path) -> None:
    port = _free_port()
    config = tmp_path / "closeloop.toml"
    config.write_text(f'[temporal]\naddress = "127.0.0.1:{port}"\n[telemetry]\nworker_port = 0\n')
    problem = hc.check("worker", {"CLOSELOOP_CONFIG": str(config)})
    assert problem is not None and f"127.0.0.1:{port}" in problem
    config.write_text('[temporal]\naddress = "no port"\n')
    assert "no Temporal address" in hc.check("worker", {"CLOSELOOP_CONFIG": str(config), "CLOSELOOP_METRICS_PORT": "0"})


@pytest.mark.parametrize(("host", "probed"), [(None, "127.0.0.1"), ("0.0.0.0", "127.0.0.1"), ("::", "127.0.0.1"),
                                              ("10.1.2.3", "10.1.2.3"), ("fd00::1", "[fd00::1]")])
def test_a_wildcard_address_is_probed_on_loopback(hc: ModuleType, host: str | None, probed: str) -> None:
    assert hc.probe_host(host) == probed


def test_main_exits_by_health(hc: ModuleType, web: tuple[int, dict[str, int]], monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    port, state = web
    monkeypatch.setenv("CLOSELOOP_WEB_PORT", str(port))
    monkeypatch.setenv("CLOSELOOP_METRICS_PORT", str(port))
    assert hc.main(["web"]) == 0
    assert hc.main(["worker"]) == 0
    state["/readyz"] = 503
    assert hc.main(["worker"]) == 0
    assert hc.main(["--ready", "worker"]) == 1
    assert "closeloop-healthcheck: worker:" in capsys.readouterr().err
    state["/healthz"] = 500
    assert hc.main(["web"]) == 1
    assert "closeloop-healthcheck: web:" in capsys.readouterr().err
    assert hc.main(["other"]) == 0
    assert hc.main(["--ready", "other"]) == 0
    assert hc.main(["database"]) == 2
    assert hc.main(["--live", "web"]) == 2
    assert hc.main(["web", "worker"]) == 2
