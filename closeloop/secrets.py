"""Every secret closeloop reads, and the one place it reads them: the environment, never the config file
(which is often committed). Each value may hold several comma-separated secrets, so a secret can rotate
(old and new accepted during the change).

The core's own are named here (ENV_API_TOKENS); each integration plugin declares the names it reads
(`Plugin.secrets`, e.g. CLOSELOOP_JIRA_API_TOKEN) and reads them through a Secrets object. The repr shows only
how many values each name has, never a value."""

from __future__ import annotations

import os
from collections.abc import Mapping

ENV_API_TOKENS = "CLOSELOOP_API_TOKENS"  # bearer tokens of /api/... (comma-separated)
ENV_SESSION_SECRET = "CLOSELOOP_SESSION_SECRET"  # signs the web app's session cookies and the links in messages
ENV_OIDC_CLIENT_SECRET = "CLOSELOOP_OIDC_CLIENT_SECRET"  # the web app's OpenID Connect client secret
ENV_OPERATOR_TOKENS = "CLOSELOOP_OPERATOR_TOKENS"  # the web app's: operators' name:token pairs (the CLI's --as)
ENV_OPERATOR_TOKEN = "CLOSELOOP_OPERATOR_TOKEN"  # the CLI's: its operator's token
ENV_METRICS_TOKEN = "CLOSELOOP_METRICS_TOKEN"  # bearer tokens of /metrics (the worker's and the web app's)


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(dict.fromkeys(part.strip() for part in (value or "").split(",") if part.strip()))


class Secrets:
    """The secrets of the environment (or of a given mapping, in tests)."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        source = os.environ if env is None else env
        self._env = {k: v for k, v in source.items() if k.startswith("CLOSELOOP_")}

    def values(self, name: str) -> tuple[str, ...]:
        """The comma-separated values of `name` (each once, in order); () when unset."""
        return _split(self._env.get(name))

    def value(self, name: str) -> str:
        """The whole value of `name` ("" when unset): for a single secret such as an API token."""
        return self._env.get(name, "").strip()

    def __repr__(self) -> str:  # never print the values
        counts = ", ".join(f"{k}={len(_split(v))}" for k, v in sorted(self._env.items()))
        return f"Secrets({counts})"

    __str__ = __repr__


def load_secrets(env: Mapping[str, str] | None = None) -> Secrets:
    return Secrets(env)
