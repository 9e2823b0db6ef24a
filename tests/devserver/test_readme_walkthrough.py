"""The README's walkthrough, run verbatim: `./scripts/dev` with the demo config in one process, the
walkthrough's shell block in another. Only the ports differ (environment variables, so that a developer's
own `closeloop dev` on 7233 and 8080 does not collide); every command is the README's text, unchanged.
The start line serves the web app too: it answers /healthz (tests/devserver/test_dev_web.py does more)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _readme_commands() -> tuple[str, str]:
    """(the command that starts closeloop with the demo config, the walkthrough's shell block)."""
    start = next(line.strip() for line in README.splitlines()
                 if "./scripts/dev" in line and "CLOSELOOP_CONFIG=closeloop/examples/demo.toml" in line)
    block = re.search(r"<!-- walkthrough:start -->\s*```bash\n(.*?)```\s*<!-- walkthrough:end -->", README, re.S)
    assert block, "README has no walkthrough block"
    return start, block.group(1)


@pytest.mark.devserver
def test_readme_walkthrough_runs_verbatim(tmp_path: Path) -> None:
    start, walkthrough = _readme_commands()
    # scripts/_venv.sh reinstalls when the stamp is stale; from a temporary copy that would point the
    # editable install away from this checkout, so insist the venv is this checkout's, current install.
    import hashlib

    stamp = REPO / ".venv" / ".closeloop-installed"
    want = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()
    assert stamp.exists() and stamp.read_text().strip() == want, "run ./scripts/test (it installs .venv) first"
    # A checkout of our own, so the walkthrough's .closeloop-demo/ starts empty.
    for name in ("scripts", "closeloop", "pyproject.toml", ".venv"):
        (tmp_path / name).symlink_to(REPO / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOSELOOP_")}
    web_port = _free_port()
    env.update(CLOSELOOP_TEMPORAL_ADDRESS=f"127.0.0.1:{_free_port()}", CLOSELOOP_UI_PORT=str(_free_port()),
               CLOSELOOP_WEB_PORT=str(web_port))
    log = (tmp_path / "dev.log").open("w+")
    dev = subprocess.Popen(["bash", "-c", start], cwd=tmp_path, env=env, stdout=log,
                           stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while "worker running" not in (tmp_path / "dev.log").read_text():
            assert dev.poll() is None, (tmp_path / "dev.log").read_text()
            assert time.monotonic() < deadline, "closeloop dev did not start"
            time.sleep(0.5)
        # the start line serves the web app too (no secrets set: it still serves, 401s name the variable)
        assert f"web app on http://127.0.0.1:{web_port}" in (tmp_path / "dev.log").read_text()
        assert httpx.get(f"http://127.0.0.1:{web_port}/healthz", timeout=10).json() == {"ok": True}
        denied = httpx.post(f"http://127.0.0.1:{web_port}/webhooks/pagerduty", content=b"{}", timeout=10)
        assert denied.status_code == 401 and "CLOSELOOP_PAGERDUTY_SECRETS" in denied.json()["error"]
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", walkthrough], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)
        out = done.stdout + done.stderr
        assert done.returncode == 0, out[-4000:]
        for expected in [
            "started postmortem/api/INC-42",
            "postmortem/api/INC-42 already exists (duplicate trigger ignored)",
            "Postmortem draft needed",
            "Reminder: the postmortem for \"Checkout returns 500s\"",
            "rejected: extension of 5m refused: policy allows 2m in all",
            "draft 2 accepted with 2 action item(s)",
            "stage:      following_up",
            "LOCAL-1", "LOCAL-2", "postmortem_api_INC-42.html",
            "told postmortem/api/INC-42/item-2",
            "stage:      closed",
            "nothing is stalled",
        ]:
            assert expected in out, f"{expected!r} not in the walkthrough's output:\n{out[-4000:]}"
        final = out[out.rindex("stage:      closed"):]
        assert re.search(r"item-1 .* done\s+effective", final) and re.search(r"item-2 .* done\s+ineffective", final)
        assert "Traceback" not in out
    finally:
        if dev.poll() is None:
            os.killpg(dev.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the foreground process group
        try:
            code = dev.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(dev.pid, signal.SIGKILL)
            raise
        log.close()
    assert code == 0, (tmp_path / "dev.log").read_text()[-3000:]
    leftover = subprocess.run(["pgrep", "-f", f"--port {env['CLOSELOOP_TEMPORAL_ADDRESS'].split(':')[1]}"],
                              capture_output=True, text=True).stdout.strip()
    assert not leftover, f"dev server still running: {leftover}"
