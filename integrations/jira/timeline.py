"""Timeline source: Jira issues linked to the incident, through the `jira` library.

It searches (`GET /rest/api/2/search/jql`, `nextPageToken` / `isLast` paging, as the Jira tracker does) for
issues whose text mentions the incident's id (`text ~ "\"<external_id>\""`: a Lucene phrase, every Lucene special
character escaped, so no id widens the search with an operator or a wildcard) or that carry the configured label
(`label`, with `{external_id}` and `{source}` filled in), optionally within one project, and yields one
`ticket` event when each was created and one when it was resolved (`resolutiondate`).

Errors become `JiraError` exactly as for the Jira tracker (429, 5xx and connection failures are retryable;
400, 401, 403, 404 are not).
"""

from __future__ import annotations

import re
import threading
from datetime import datetime
from typing import Any

import requests
from jira import JIRA
from jira.exceptions import JIRAError
from pydantic import Field

from closeloop.integrations.base import TimelineSource, report_progress
from closeloop.integrations.jira.settings import JiraTimelineSettings
from closeloop.integrations.jira.tracker import JiraError, _wrap, jql_string
from closeloop.models import Incident, TimelineEvent

FIELDS = "summary,created,resolutiondate,resolution,status"


class JiraTimelineConfig(JiraTimelineSettings):
    """`[timeline.*]` (JiraTimelineSettings, whose defaults are the only ones) plus what comes from the environment and
    tuning the config file does not expose."""

    url: str
    email: str = ""
    api_token: str = Field(default="", repr=False)
    max_pages: int = 20



def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    text = re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", value.strip().replace("Z", "+00:00"))
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _quoted(value: str) -> str:
    return '"' + re.sub(r'["\\]', " ", value).strip() + '"'


LUCENE_SPECIAL = frozenset('+-&|!(){}[]^"~*?:\\/')


def text_phrase(value: str) -> str:
    """The JQL operand of `text ~` that searches for `value` as one literal phrase: Jira passes the string to
    Lucene, where `OR`, `*`, `?`, `-` and the rest are syntax; inside a phrase, with every special character
    escaped, none of them is."""
    escaped = "".join("\\" + c if c in LUCENE_SPECIAL else c for c in " ".join(value.split()))
    return jql_string(f'"{escaped}"')


class JiraTimelineSource(TimelineSource):
    name = "jira"

    def __init__(self, config: JiraTimelineConfig) -> None:
        self.config = config
        self._client: JIRA | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> JIRA:
        with self._lock:
            if self._client is None:
                try:
                    self._client = JIRA(
                        self.config.url,
                        basic_auth=(self.config.email, self.config.api_token) if self.config.email else None,
                        max_retries=0, timeout=self.config.timeout, options={"check_update": False},
                        logging=False,
                    )
                except (JIRAError, requests.RequestException) as exc:
                    raise _wrap(exc, "connect") from exc
            return self._client

    def jql(self, incident: Incident) -> str | None:
        linked = []
        if self.config.mention:
            linked.append(f"text ~ {text_phrase(incident.external_id)}")
        if self.config.label:
            label = self.config.label.format(external_id=incident.external_id, source=incident.source)
            linked.append(f"labels = {_quoted(label.replace(' ', '-'))}")
        if not linked:
            return None
        query = " OR ".join(linked)
        if self.config.project:
            query = f"project = {_quoted(self.config.project)} AND ({query})"
        return f"{query} ORDER BY created ASC"

    def search(self, jql: str) -> list[dict[str, Any]]:
        issues: list[dict[str, Any]] = []
        token: str | None = None
        try:
            for _ in range(self.config.max_pages):
                page = self.client.enhanced_search_issues(jql, nextPageToken=token, maxResults=self.config.page_size,
                                                          fields=FIELDS, json_result=True)
                issues.extend(page.get("issues") or [])
                report_progress(len(issues))
                token = page.get("nextPageToken")
                if page.get("isLast", not token) or not token:
                    break
        except JiraError:
            raise
        except (JIRAError, requests.RequestException) as exc:
            raise _wrap(exc, "search") from exc
        return issues

    def fetch(self, incident: Incident) -> list[TimelineEvent]:
        jql = self.jql(incident)
        if jql is None:
            return []
        events: list[TimelineEvent] = []
        base = self.config.url.rstrip("/")
        for issue in self.search(jql):
            key = str(issue.get("key") or "")
            fields = issue.get("fields") or {}
            summary = " ".join(str(fields.get("summary") or "").split())
            url = f"{base}/browse/{key}"
            if created := _time(fields.get("created")):
                events.append(TimelineEvent(at=created, source="jira", kind="ticket",
                                            text=f"{key} created: {summary}", url=url))
            if resolved := _time(fields.get("resolutiondate")):
                resolution = (fields.get("resolution") or {}).get("name") or "resolved"
                events.append(TimelineEvent(at=resolved, source="jira", kind="ticket",
                                            text=f"{key} resolved ({resolution}): {summary}", url=url))
        return events
