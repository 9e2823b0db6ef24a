"""Fuzz the ticket status webhooks with hypothesis: the Jira and GitHub parsers on random near-valid
payloads (an answer or a 4xx Reject, never anything else), and both routes, validly signed, with random
bytes, random JSON and near-valid deliveries for a ticket a running ActionItemWorkflow owns: never a 5xx,
always a JSON object."""

from __future__ import annotations

import json
import string
from typing import Any

import hypothesis  # noqa: F401 - a test extra: a missing install fails loudly, never skips
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from closeloop.integrations.base import StatusChange
from closeloop.integrations.github.webhook import github_change
from closeloop.integrations.jira.webhook import jira_change
from closeloop.standins.github import GitHubStandin
from closeloop.standins.jira import JiraStandin
from closeloop.web.requests import Reject
from tests.closeloop.web.test_fuzz import json_values
from tests.closeloop.web.tickets import (  # noqa: F401 - fixtures
    GH_SECRETS,
    JIRA_SECRETS,
    Hooks,
    github,
    hooks,
    jira,
)

maybe = lambda s: st.one_of(st.none(), json_values, s)  # noqa: E731

jira_items = st.lists(maybe(st.fixed_dictionaries({}, optional={
    "field": maybe(st.sampled_from(["status", "resolution", "Key", "summary", "project"])),
    "fieldtype": maybe(st.just("jira")),
    "fromString": maybe(st.sampled_from(["CL-1", "Done", "To Do"]) | st.text(max_size=8)),
    "toString": maybe(st.sampled_from(["OPS-7", "In Progress", "Done"]) | st.text(max_size=8)),
})), max_size=3)
jira_payloads = st.fixed_dictionaries({
    "webhookEvent": maybe(st.sampled_from(["jira:issue_updated", "jira:issue_deleted", "jira:issue_created",
                                           "comment_created"])),
}, optional={
    "timestamp": maybe(st.integers() | st.sampled_from([1714557600000, 10**20, -10**18])),
    "issue": maybe(st.fixed_dictionaries({}, optional={
        "key": maybe(st.sampled_from(["CL-1", "CL-2", "OPS-7"]) | st.text(max_size=12)),
        "fields": maybe(st.fixed_dictionaries({}, optional={
            "status": maybe(st.fixed_dictionaries({}, optional={
                "name": json_values,
                "statusCategory": maybe(st.fixed_dictionaries({"key": maybe(st.sampled_from(
                    ["done", "new", "indeterminate", "DONE"]))})),
            })),
            "resolution": maybe(st.fixed_dictionaries({"name": maybe(st.sampled_from(
                ["Done", "Won't Do", "Duplicate", "won't do"]))})),
        })),
    })),
    "changelog": maybe(st.fixed_dictionaries({}, optional={"items": maybe(jira_items)})),
})
# mostly valid updates of the tracked issue, so the path that signals the workflow gets fuzzed too
jira_updates = st.fixed_dictionaries({
    "webhookEvent": st.sampled_from(["jira:issue_updated", "jira:issue_deleted"]),
    "timestamp": st.integers(min_value=-10**15, max_value=10**15),
    "issue": st.fixed_dictionaries({"key": st.sampled_from(["CL-1", "OPS-7"]), "fields": st.fixed_dictionaries({
        "status": st.fixed_dictionaries({"name": st.text(max_size=600), "statusCategory": st.fixed_dictionaries(
            {"key": st.sampled_from(["done", "new", "indeterminate"])})}),
        "resolution": st.one_of(st.none(), st.fixed_dictionaries({"name": st.text(max_size=600)})),
    })}),
    "changelog": st.fixed_dictionaries({"items": jira_items}),
})

gh_issues = st.fixed_dictionaries({}, optional={
    "number": maybe(st.sampled_from([1, 2, 0, -1]) | st.integers()),
    "state": maybe(st.sampled_from(["open", "closed"])),
    "state_reason": maybe(st.sampled_from(["completed", "not_planned", "duplicate", "reopened"])),
    "closed_at": maybe(st.sampled_from(["2024-05-01T10:00:00Z", "nope", "2024-05-01T10:00:00+99:00"])),
    "updated_at": maybe(st.sampled_from(["2024-05-01T10:00:00Z", "2024-13-01"])),
})
gh_repos = st.fixed_dictionaries({}, optional={
    "full_name": maybe(st.sampled_from(["acme/checkout", "acme/platform", "noslash"]) | st.text(max_size=20)),
})
gh_payloads = st.fixed_dictionaries({}, optional={
    "action": maybe(st.sampled_from(["closed", "reopened", "deleted", "transferred", "labeled", "opened"])),
    "issue": maybe(gh_issues),
    "repository": maybe(gh_repos),
    "changes": maybe(st.fixed_dictionaries({}, optional={"new_issue": maybe(gh_issues),
                                                         "new_repository": maybe(gh_repos)})),
})
gh_deliveries = st.fixed_dictionaries({
    "action": st.sampled_from(["closed", "reopened", "deleted", "transferred"]),
    "issue": st.fixed_dictionaries({"number": st.just(1), "state": st.sampled_from(["open", "closed"]),
                                    "state_reason": st.one_of(st.none(), st.sampled_from(
                                        ["completed", "not_planned", "duplicate", "reopened"]))},
                                   optional={"updated_at": json_values, "closed_at": json_values}),
    "repository": st.fixed_dictionaries({"full_name": st.just("acme/checkout")}),
}, optional={"changes": st.fixed_dictionaries({"new_issue": gh_issues, "new_repository": gh_repos})})
gh_events = st.one_of(st.sampled_from(["issues", "ping", "push", "issue_comment"]),
                      st.text(alphabet=string.ascii_letters + "_-", min_size=1, max_size=20))


def _bodies(structured: st.SearchStrategy[Any], valid: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        valid.map(lambda v: json.dumps(v).encode()),
        st.binary(max_size=300),
        json_values.map(lambda v: json.dumps(v).encode()),
        structured.map(lambda v: json.dumps(v).encode()),
        structured.map(lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8")),
    )


def _parsed(fn: Any, *args: Any) -> None:
    try:
        out = fn(*args)
    except Reject as e:
        assert 400 <= e.status < 500 and e.message, (e.status, e.message)
        return
    assert isinstance(out, (StatusChange, str)), out
    if isinstance(out, StatusChange):
        assert out.status in ("open", "done", "wont_do", "reopened", "deleted") and out.keys
        assert all(isinstance(k, str) and k for k in out.keys) and len(out.reason) <= 500


@settings(max_examples=400, deadline=None)
@given(payload=st.one_of(jira_payloads, jira_updates))
def test_jira_parser_answers_or_rejects_with_4xx(payload: dict[str, Any]) -> None:
    _parsed(jira_change, payload, ["Won't Do", "Duplicate"])


@settings(max_examples=400, deadline=None)
@given(event=gh_events, payload=st.one_of(gh_payloads, gh_deliveries))
def test_github_parser_answers_or_rejects_with_4xx(event: str, payload: dict[str, Any]) -> None:
    _parsed(github_change, event, payload)


http_settings = settings(max_examples=80, deadline=None,
                         suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _check(r: Any) -> None:
    assert r.status_code < 500, (r.status_code, r.text)
    payload: Any = r.json()
    assert isinstance(payload, dict)
    assert r.status_code in (200, 202, 400, 413, 422), (r.status_code, r.text)
    if r.status_code >= 400:
        assert isinstance(payload.get("error"), str)


async def _tracked(hooks: Hooks, tracker: str) -> None:
    """One running item per test (not per example): its ticket is CL-1 / acme/checkout#1."""
    if not hooks.app.handles:
        await hooks.start_item(tracker)


@http_settings
@given(body=_bodies(jira_payloads, jira_updates), secret=st.sampled_from(JIRA_SECRETS),
       delivery=st.one_of(st.none(), st.sampled_from(["d-1", "d-2"]), st.text(string.ascii_letters, max_size=300)))
async def test_jira_signed_random_deliveries_never_5xx(hooks: Hooks, jira: JiraStandin, body: bytes, secret: str,
                                                       delivery: str | None) -> None:
    await _tracked(hooks, "jira")
    headers = {"X-Atlassian-Webhook-Identifier": ""} if delivery is None else {}
    _check(await hooks.jira(None, body=body, secret=secret, delivery=delivery, headers=headers))


@http_settings
@given(body=_bodies(gh_payloads, gh_deliveries), event=gh_events, secret=st.sampled_from(GH_SECRETS))
async def test_github_signed_random_deliveries_never_5xx(hooks: Hooks, github: GitHubStandin, body: bytes,
                                                         event: str, secret: str) -> None:
    await _tracked(hooks, "github")
    _check(await hooks.github(None, body=body, event=event, secret=secret))
