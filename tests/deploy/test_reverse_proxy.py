"""The nginx config deploy/reverse-proxy.md ships (deploy/nginx/closeloop.conf) is one nginx accepts: `nginx -t`
on it, inside a minimal main config, with a throwaway self-signed certificate in place of the real one.
Skipped, with the reason, where nginx or openssl is not installed (Debian: apt-get install nginx-light)."""

from __future__ import annotations

import json
import re
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "deploy" / "nginx" / "closeloop.conf"
DOC = ROOT / "deploy" / "reverse-proxy.md"


@pytest.fixture
def nginx() -> str:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
    if found is None or shutil.which("openssl") is None:
        pytest.skip("nginx or openssl is not installed (apt-get install nginx-light openssl)")
    return found


def test_the_shipped_nginx_config_passes_nginx_t(nginx: str, tmp_path: Path) -> None:
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=closeloop.example.com", "-keyout", str(tmp_path / "privkey.pem"), "-out",
                    str(tmp_path / "fullchain.pem")], check=True, capture_output=True)
    site = SITE.read_text()
    assert site.count("/etc/ssl/closeloop/") == 2
    (tmp_path / "site.conf").write_text(site.replace("/etc/ssl/closeloop/", f"{tmp_path}/"))
    (tmp_path / "nginx.conf").write_text(f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
                                         f"events {{}}\nhttp {{\n    access_log off;\n"
                                         f"    include {tmp_path}/site.conf;\n}}\n")
    result = subprocess.run([nginx, "-t", "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_the_proxy_gives_up_on_slow_clients_before_closeloop_does() -> None:
    """nginx waits for slow clients and buffers bodies, so closeloop's own (longer) limits are the fallback."""
    site = SITE.read_text()
    timeouts = {name: int(value) for name, value in re.findall(r"^\s*(client_\w+_timeout) (\d+)s;", site, re.M)}
    assert timeouts == {"client_header_timeout": 10, "client_body_timeout": 10}
    assert "proxy_request_buffering on;" in site
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in site  # replaced, not appended to
    assert "(nginx/closeloop.conf)" in DOC.read_text()  # the doc links the file it explains


def _over_tls(port: int, context: ssl.SSLContext, request: bytes) -> bytes:
    """The whole answer to one request over TLS (for closeloop.example.com, on loopback)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="closeloop.example.com") as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


def test_the_shipped_nginx_config_serves_closeloop_over_tls(nginx: str, tmp_path: Path) -> None:
    """The site, on free loopback ports, in front of a real `closeloop serve`: /healthz through TLS, a body
    over the API's size answered by nginx as JSON, plain HTTP redirected with 308."""
    from tests.closeloop.web.test_slow_clients import _free_port, _serve

    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=closeloop.example.com", "-addext", "subjectAltName=DNS:closeloop.example.com",
                    "-keyout", str(tmp_path / "privkey.pem"), "-out", str(tmp_path / "fullchain.pem")],
                   check=True, capture_output=True)
    plain, tls = _free_port(), _free_port()
    (tmp_path / "app").mkdir()
    for served in _serve(tmp_path / "app", ""):
        site = (SITE.read_text().replace("/etc/ssl/closeloop/", f"{tmp_path}/")
                .replace("server 127.0.0.1:8080;", f"server 127.0.0.1:{served.port};")
                .replace("    listen 80;\n", f"    listen 127.0.0.1:{plain};\n")
                .replace("    listen 443 ssl;\n", f"    listen 127.0.0.1:{tls} ssl;\n")
                .replace("    listen [::]:80;\n", "").replace("    listen [::]:443 ssl;\n", ""))
        (tmp_path / "site.conf").write_text(site)
        (tmp_path / "nginx.conf").write_text(
            f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\nhttp {{\n"
            f"    access_log off;\n    client_body_temp_path {tmp_path}/body;\n"
            f"    proxy_temp_path {tmp_path}/proxy;\n    include {tmp_path}/site.conf;\n}}\n")
        proxy = subprocess.Popen([nginx, "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path), "-g",
                                  "daemon off; master_process off;"], stderr=subprocess.PIPE)
        try:
            context = ssl.create_default_context(cafile=str(tmp_path / "fullchain.pem"))
            deadline = time.monotonic() + 10

            while True:
                try:
                    answer = _over_tls(tls, context, b"GET /healthz HTTP/1.1\r\nHost: closeloop.example.com\r\n"
                                      b"Connection: close\r\n\r\n")
                    break
                except OSError:
                    assert proxy.poll() is None and time.monotonic() < deadline, "nginx did not start"
                    time.sleep(0.1)
            assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b'{"ok":true}'), answer

            body = b'{"title": "' + b"x" * (2 * 1024 * 1024) + b'"}'
            answer = _over_tls(tls, context, b"POST /api/incidents HTTP/1.1\r\nHost: closeloop.example.com\r\n"
                              b"Content-Type: application/json\r\nConnection: close\r\n"
                              b"Content-Length: %d\r\n\r\n" % len(body))
            head, _, text = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 413 "), head
            assert json.loads(text) == {"error": "body too large"}

            with socket.create_connection(("127.0.0.1", plain), timeout=10) as sock:
                sock.sendall(b"POST /webhooks/pagerduty HTTP/1.1\r\nHost: closeloop.example.com\r\n"
                             b"Content-Length: 0\r\nConnection: close\r\n\r\n")
                answer = sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 308 ")
            assert b"\r\nLocation: https://closeloop.example.com/webhooks/pagerduty\r\n" in answer
        finally:
            proxy.terminate()
            proxy.wait(10)
