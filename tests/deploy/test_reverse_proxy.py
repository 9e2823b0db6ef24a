"""The nginx config deploy/reverse-proxy.md ships (deploy/nginx/closeloop.conf) is one nginx accepts: `nginx -t`
on it, inside a minimal main config, with a throwaway self-signed certificate in place of the real one.
Skipped, with the reason, where nginx or openssl is not installed (Debian: apt-get install nginx-light)."""

from __future__ import annotations

import re
import shutil
import subprocess
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
