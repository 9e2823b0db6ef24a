"""PyGithub's `Github` client as every part of the GitHub plugin builds it (tracker, timeline source, publisher):
the configured base URL (GitHub Enterprise: `https://HOST/api/v3`), the token of CLOSELOOP_GITHUB_TOKEN (none:
anonymous), a whole-second timeout, and `retry=None`: no urllib3 retries, so the library never re-sends a POST
or PUT whose answer was lost. Retries belong to the activity's retry policy, where each caller looks up what an
earlier attempt made before making it again."""

from __future__ import annotations

from typing import Any

from github import Auth, Github


def github_client(base_url: str, token: str, *, timeout: float, **options: Any) -> Github:
    """`options` go to `Github` as they are (`per_page`, `seconds_between_requests`, `seconds_between_writes`)."""
    return Github(base_url=base_url, auth=Auth.Token(token) if token else None, timeout=int(timeout) or 1,
                  retry=None, **options)
