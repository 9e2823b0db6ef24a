"""The web app's secrets. They come only from the environment, never from the config file (which is
often committed): CLOSELOOP_API_TOKENS (comma-separated bearer tokens for /api/...) and
CLOSELOOP_PAGERDUTY_SECRETS (comma-separated webhook signing secrets; several during a rotation)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

ENV_API_TOKENS = "CLOSELOOP_API_TOKENS"
ENV_PAGERDUTY_SECRETS = "CLOSELOOP_PAGERDUTY_SECRETS"


@dataclass(frozen=True)
class WebSecrets:
    api_tokens: tuple[str, ...] = ()
    pagerduty_secrets: tuple[str, ...] = ()

    def __repr__(self) -> str:  # never print the values
        return f"WebSecrets(api_tokens={len(self.api_tokens)}, pagerduty_secrets={len(self.pagerduty_secrets)})"


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(dict.fromkeys(part.strip() for part in (value or "").split(",") if part.strip()))


def load_secrets(env: Mapping[str, str] | None = None) -> WebSecrets:
    env = os.environ if env is None else env
    return WebSecrets(api_tokens=_split(env.get(ENV_API_TOKENS)),
                      pagerduty_secrets=_split(env.get(ENV_PAGERDUTY_SECRETS)))
