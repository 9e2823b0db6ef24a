"""The CLI's `--as`: acting for a person is an operator's act, so it goes through the web app's operator API
(closeloop/web/operator.py), which checks the operator's credential, records who acted for whom in the audit
log, and runs the person's Update. The credential is CLOSELOOP_OPERATOR_TOKEN, or the file `operator.token` in
the data directory that `closeloop dev` writes for its own web app (readable by its owner only). The web app is
CLOSELOOP_URL, else `[web] public_url`, else `[web] host` and `port`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from closeloop.cli._common import EXIT_BAD_INPUT, CliError, bad_input, unavailable
from closeloop.secrets import ENV_OPERATOR_TOKEN

ENV_URL = "CLOSELOOP_URL"
TOKEN_FILE = "operator.token"
TIMEOUT = 40.0  # the web app waits up to 20 s for the workflow's answer


def web_url(config: Any) -> str:
    if os.environ.get(ENV_URL):
        return os.environ[ENV_URL].rstrip("/")
    if config.web.public_url:
        return str(config.web.public_url).rstrip("/")
    host = config.web.host
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else (f"[{host}]" if ":" in host else host)
    return f"http://{host}:{config.web.port}"


def operator_token(config: Any) -> str:
    token = os.environ.get(ENV_OPERATOR_TOKEN, "").strip()
    if token:
        return token
    path = Path(config.data_dir) / TOKEN_FILE
    try:
        return path.read_text().strip()
    except OSError:
        raise CliError(f"--as acts for someone else, which is an operator's act: set {ENV_OPERATOR_TOKEN} to your "
                       "operator token (one of the web app's CLOSELOOP_OPERATOR_TOKENS)", EXIT_BAD_INPUT) from None


def operator_update(config: Any, kind: str, workflow_id: str, update: str, arg: Any) -> str:
    """Run the Update `update` with `arg` on `workflow_id` through the web app; its answer, or a CliError."""
    import httpx

    url, token = web_url(config), operator_token(config)
    try:
        response = httpx.post(f"{url}/api/operator/updates", timeout=TIMEOUT,
                              headers={"Authorization": f"Bearer {token}"},
                              json={"workflow_id": workflow_id, "update": update,
                                    "input": arg.model_dump(mode="json")})
    except httpx.HTTPError as e:
        raise unavailable(f"cannot reach closeloop's web app at {url} ({type(e).__name__}): is it running? "
                          f"({ENV_URL} points elsewhere)") from None
    try:
        body = response.json()
    except ValueError:
        body = {}
    message = str(body.get("error") or body.get("result") or response.reason_phrase)
    if response.status_code == 200:
        return str(body.get("result", ""))
    if response.status_code == 409:
        raise CliError(f"rejected: {message}")
    if response.status_code == 404:
        raise CliError(f"no {kind} {workflow_id} (or it has finished)")
    if response.status_code in (401, 403):
        raise CliError(f"the web app at {url} refused the operator credential: {message}", EXIT_BAD_INPUT)
    if response.status_code in (400, 413, 422):
        raise bad_input(message)
    raise unavailable(f"closeloop's web app at {url} answered {response.status_code}: {message}")
