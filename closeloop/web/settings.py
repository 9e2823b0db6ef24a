"""The web app's secrets. They come only from the environment, never from the config file (which is
often committed): CLOSELOOP_API_TOKENS (comma-separated bearer tokens for /api/...),
CLOSELOOP_PAGERDUTY_SECRETS (comma-separated webhook signing secrets; several during a rotation),
CLOSELOOP_INCIDENTIO_SECRETS (comma-separated `whsec_...` signing secrets), CLOSELOOP_ALERTMANAGER_TOKENS
(comma-separated bearer tokens), CLOSELOOP_ALERTMANAGER_BASIC (comma-separated `user:password` pairs) and
CLOSELOOP_OPSGENIE_TOKENS (comma-separated shared secrets for the X-Closeloop-Token header),
CLOSELOOP_JIRA_WEBHOOK_SECRET and CLOSELOOP_GITHUB_WEBHOOK_SECRET (the ticket status webhooks' signing
secrets; comma-separated, several during a rotation).
The repr shows only how many of each there are."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

ENV_API_TOKENS = "CLOSELOOP_API_TOKENS"
ENV_PAGERDUTY_SECRETS = "CLOSELOOP_PAGERDUTY_SECRETS"
ENV_INCIDENTIO_SECRETS = "CLOSELOOP_INCIDENTIO_SECRETS"
ENV_ALERTMANAGER_TOKENS = "CLOSELOOP_ALERTMANAGER_TOKENS"
ENV_ALERTMANAGER_BASIC = "CLOSELOOP_ALERTMANAGER_BASIC"
ENV_OPSGENIE_TOKENS = "CLOSELOOP_OPSGENIE_TOKENS"
ENV_JIRA_WEBHOOK_SECRETS = "CLOSELOOP_JIRA_WEBHOOK_SECRET"
ENV_GITHUB_WEBHOOK_SECRETS = "CLOSELOOP_GITHUB_WEBHOOK_SECRET"


@dataclass(frozen=True)
class WebSecrets:
    api_tokens: tuple[str, ...] = ()
    pagerduty_secrets: tuple[str, ...] = ()
    incidentio_secrets: tuple[str, ...] = ()
    alertmanager_tokens: tuple[str, ...] = ()
    alertmanager_basic: tuple[str, ...] = ()
    opsgenie_tokens: tuple[str, ...] = ()
    jira_webhook_secrets: tuple[str, ...] = ()
    github_webhook_secrets: tuple[str, ...] = ()

    def __repr__(self) -> str:  # never print the values
        counts = ", ".join(f"{f.name}={len(getattr(self, f.name))}" for f in fields(self))
        return f"WebSecrets({counts})"

    __str__ = __repr__


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(dict.fromkeys(part.strip() for part in (value or "").split(",") if part.strip()))


def load_secrets(env: Mapping[str, str] | None = None) -> WebSecrets:
    env = os.environ if env is None else env
    return WebSecrets(api_tokens=_split(env.get(ENV_API_TOKENS)),
                      pagerduty_secrets=_split(env.get(ENV_PAGERDUTY_SECRETS)),
                      incidentio_secrets=_split(env.get(ENV_INCIDENTIO_SECRETS)),
                      alertmanager_tokens=_split(env.get(ENV_ALERTMANAGER_TOKENS)),
                      alertmanager_basic=_split(env.get(ENV_ALERTMANAGER_BASIC)),
                      opsgenie_tokens=_split(env.get(ENV_OPSGENIE_TOKENS)),
                      jira_webhook_secrets=_split(env.get(ENV_JIRA_WEBHOOK_SECRETS)),
                      github_webhook_secrets=_split(env.get(ENV_GITHUB_WEBHOOK_SECRETS)))
