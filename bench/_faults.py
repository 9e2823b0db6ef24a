"""Fault injectors the chaos benchmark drives: a TCP proxy in front of PostgreSQL that can be cut off for a while
(an outage every client sees as connection resets, then refusals), and the Temporal dev server as a process
that can be SIGKILLed and started again on the same persistent database file."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from closeloop.cli.dev import stop_process
from closeloop.search_attributes import dev_server_flags


class TcpProxy:
    """Forwards 127.0.0.1:<port> to `upstream`, one pair of pump threads per connection. `outage(seconds)` closes
    every connection and the listening socket, and listens again on the same port when the time is up."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = 0
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        self.connections = 0
        self.down = threading.Event()

    def start(self) -> TcpProxy:
        self._listen()
        return self

    def _listen(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(256)
        self.port = sock.getsockname()[1]
        self._listener = sock
        threading.Thread(target=self._accept, args=(sock,), name="pg-proxy-accept", daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed: an outage or the end
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns.update((client, server))
                self.connections += 1
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), name="pg-proxy-pump", daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)

    def _cut(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            conns = list(self._conns)
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def outage(self, seconds: float) -> None:
        """Blocks for `seconds`: every connection reset at once, new ones refused, then listening again."""
        self.down.set()
        self._cut()
        time.sleep(seconds)
        if not self._closed:
            self._listen()
        self.down.clear()

    def close(self) -> None:
        self._closed = True
        self._cut()


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DevServerProcess:
    """`temporal server start-dev` on a persistent SQLite file (or in memory), as a process of its own that can
    be killed -9 and started again on the same port and file (what it had accepted survives). Its own session,
    so its own scheduling group where the kernel groups by session (autogroup): a benchmark's load generator
    never competes with the server for one group's share of the CPUs."""

    def __init__(self, binary: str, data: Path, port: int | None = None, *, in_memory: bool = False) -> None:
        self.binary, self.data, self.in_memory = binary, data, in_memory  # in memory: `data` holds the log only
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data / "temporal.log"
        self.restarts = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        store = [] if self.in_memory else ["--db-filename", str(self.data / "temporal.db")]
        cmd = [self.binary, "server", "start-dev", *store, "--ip", "127.0.0.1", "--port", str(self.port),
               "--headless", "--namespace", "default", "--log-level", "error", *dev_server_flags()]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while not port_open(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"the Temporal dev server exited with {self.proc.returncode} (log: {self.log})")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Temporal dev server did not listen within {timeout:.0f}s (log: {self.log})")
            time.sleep(0.1)

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def restart(self, down_for: float) -> None:
        self.kill9()
        time.sleep(down_for)
        self.restarts += 1
        self.start()

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 15, group=True)
