"""A stand-in server whose every response is validated against the vendor's description, for a test.

    with validated(JiraStandin, "jira-platform-v3.json", project="CL", users={"acc-bob": "Bob"}) as jira:
        ...                                     # jira.url, jira.issues, jira.fail_next(...), ...

`validated(StandinClass, spec, **kwargs)` starts `StandinClass(validator=..., **kwargs)` with a validator
that checks each JSON response against `SPECS_DIR / spec` (closeloop/standins/spec.py), or with `spec`'s own
`check(method, path, status, body)` when it is a validator object rather than a file name (Google's discovery
documents: tests/standins/google_calendar.py), and counts it, and yields
the running server. When the block ends it fails if a violation was recorded, or if the server answered
requests but validated none of its responses; with `must_serve=True` also if it validated nothing at all.
A missing spec file skips the test.

`spec_validator(spec)` is the `ResponseValidator` for a spec file, loaded once per test run: Jira's with the
v2 -> v3 path alias, Confluence's with its `/wiki/api/v2` prefix taken off, the others with none.
`FakeClock` is a "now" the test moves (for a tracker's pacing and
a stand-in's `clock`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, Protocol, TypeVar

import pytest

from closeloop.standins.spec import SPECS_DIR, ResponseValidator

S = TypeVar("S")


class Checker(Protocol):
    def check(self, method: str, path: str, status: int, body: Any) -> None: ...


JIRA_SPEC, GITHUB_SPEC = "jira-platform-v3.json", "github-rest-api.json"
PAGERDUTY_SPEC, SLACK_SPEC = "pagerduty-rest.json", "slack-web-api.json"
CONFLUENCE_SPEC = "confluence-cloud-v2.json"
# The description's server URL is https://{domain}/wiki/api/v2: its paths start after that prefix.
PATH_ALIASES = {JIRA_SPEC: None, CONFLUENCE_SPEC: {"/wiki/api/v2/": "/"}}


@cache
def _load(spec: str) -> ResponseValidator:
    # Jira: the client speaks v2, the description is v3 (ResponseValidator's default alias); no other
    # vendor's paths start with /rest/api/2/. Confluence: its paths without the server URL's /wiki/api/v2.
    return ResponseValidator(SPECS_DIR / spec, path_aliases=PATH_ALIASES.get(spec, {}))


def spec_validator(spec: str) -> ResponseValidator:
    """The validator for `SPECS_DIR / spec`; skips the test when the file is missing."""
    path = SPECS_DIR / spec
    if not path.exists():
        pytest.skip(f"{path} is missing")
    return _load(spec)


@contextmanager
def validated(standin_class: type[S], spec: str | Checker, *, must_serve: bool = False,
              **kwargs: Any) -> Iterator[S]:
    """`standin_class(validator=..., **kwargs)`, running, with every response checked against `spec`."""
    validator: Checker = spec_validator(spec) if isinstance(spec, str) else spec
    checked: list[str] = []

    def check(method: str, path: str, status: int, body: object) -> None:
        checked.append(f"{method} {path} {status}")
        validator.check(method, path, status, body)

    with standin_class(validator=check, **kwargs) as server:  # type: ignore[call-arg]
        yield server
    s: Any = server
    assert s.violations == [], "\n".join(s.violations)
    assert checked or not s.requests, f"the {standin_class.__name__} served responses without validating them"
    if must_serve:
        assert checked, f"the {standin_class.__name__} served nothing validated"


class FakeClock:
    """What the tracker's pacing and the stand-in call "now": moved by the test, in step with the server."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
