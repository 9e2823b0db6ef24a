"""Fixtures and payloads for the ticket status webhooks: a closeloop app whose action items are tickets on
the Jira or GitHub stand-in (the real worker, activities, trackers over HTTP, store and Temporal test
server), an ActionItemWorkflow started on it, and webhook deliveries built from the stand-in's own view of
the ticket, shaped as the vendors send them and checked against their descriptions:

- GitHub: `components/schemas/webhook-issues-<action>` of github-webhooks.json (OpenAPI 3.1: JSON Schema
  draft 2020-12, `$ref`s resolved by `referencing` against the whole file);
- Jira: Atlassian publishes no webhook description; the envelope follows the documented shape
  (`timestamp`, `webhookEvent`, `issue_event_type_name`, `user`, `issue`, `changelog.items`) and the issue
  object is the REST issue, checked against `IssueBean` of jira-platform-v3.json (with the v2/v3 quirks
  of closeloop/standins/spec.py)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from jsonschema import Draft202012Validator
from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from closeloop.contract import action_item_workflow_id
from closeloop.models import ActionItem, ActionItemInput
from closeloop.planning import policy_for
from closeloop.standins.github import GitHubStandin
from closeloop.standins.jira import JiraStandin
from closeloop.standins.spec import SPEC_URI, SPECS_DIR
from closeloop.web.app import create_app
from closeloop.workflows.action_item import ActionItemWorkflow
from tests.closeloop.web.conftest import TOKENS, LifespanClient, secrets_of
from tests.standins.fixtures import GITHUB_SPEC, JIRA_SPEC, spec_validator, validated
from tests.temporal_env import DAY, App, incident, running_app

JIRA_SECRETS = ("jira-hook-secret-old-0123", "jira-hook-secret-new-4567")
GH_SECRETS = ("gh-hook-secret-0123456789", "gh-hook-secret-rotated-xyz")
SECRETS = secrets_of(api_tokens=TOKENS, jira_webhook_secrets=JIRA_SECRETS, github_webhook_secrets=GH_SECRETS)
REPO = "acme/checkout"


def hub_sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------- vendor descriptions


@cache
def _github_registry() -> Registry:
    spec = json.loads((SPECS_DIR / "github-webhooks.json").read_text())
    return Registry().with_resource(SPEC_URI, Resource.from_contents(spec, default_specification=DRAFT202012))


def github_schema_errors(action: str, payload: dict[str, Any]) -> list[str]:
    validator = Draft202012Validator({"$ref": f"{SPEC_URI}#/components/schemas/webhook-issues-{action}"},
                                     registry=_github_registry())
    return [f"{'/'.join(map(str, e.absolute_path)) or '<payload>'}: {e.message}"
            for e in validator.iter_errors(payload)]


def jira_issue_errors(issue: dict[str, Any]) -> list[str]:
    validator = OAS30Validator({"$ref": f"{SPEC_URI}#/components/schemas/IssueBean"},
                               registry=spec_validator(JIRA_SPEC).registry)
    return [f"issue/{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(issue)]


# --------------------------------------------------------------------------- payloads


def jira_payload(jira: JiraStandin, key: str, event: str = "jira:issue_updated",
                 items: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A Jira Cloud webhook for the stand-in's issue as it is now (`items`: the changelog)."""
    issue = jira._issue(key)
    issue["fields"].pop("comment")  # webhooks leave the comments out
    errors = jira_issue_errors(issue)
    assert errors == [], errors
    body: dict[str, Any] = {
        "timestamp": int(time.time() * 1000), "webhookEvent": event,
        "issue_event_type_name": "issue_generic" if event == "jira:issue_updated" else "issue_deleted",
        "user": jira._user("acc-bob"), "issue": issue,
    }
    if event == "jira:issue_updated":
        body["changelog"] = {"id": str(10100 + len(items or [])), "items": items or []}
    return body


def status_item(from_name: str, to_name: str) -> dict[str, Any]:
    from closeloop.standins.jira import STATUSES

    return {"field": "status", "fieldtype": "jira", "fieldId": "status", "from": STATUSES[from_name][0],
            "fromString": from_name, "to": STATUSES[to_name][0], "toString": to_name}


def resolution_item(before: str | None, after: str | None) -> dict[str, Any]:
    from closeloop.standins.jira import RESOLUTIONS

    return {"field": "resolution", "fieldtype": "jira", "fieldId": "resolution",
            "from": RESOLUTIONS[before] if before else None, "fromString": before,
            "to": RESOLUTIONS[after] if after else None, "toString": after}


def github_payload(gh: GitHubStandin, key: str, action: str, **extra: Any) -> dict[str, Any]:
    """A GitHub `issues` delivery for the stand-in's issue as it is now, validated against the schema."""
    repo, number = key.split("#")
    body: dict[str, Any] = {"action": action, "issue": gh._issue(repo, int(number)), "repository": gh._repo(repo),
                            "sender": gh.simple_user("bob-gh"), **extra}
    errors = github_schema_errors(action, body)
    assert errors == [], errors
    return body


# --------------------------------------------------------------------------- the app under test


@dataclass
class Hooks:
    http: httpx.AsyncClient
    app: App

    async def jira(self, payload: Any, *, body: bytes | None = None, secret: str = JIRA_SECRETS[0],
                   signature: str | None = None, delivery: str | None = None,
                   headers: dict[str, str] | None = None) -> httpx.Response:
        raw = body if body is not None else json.dumps(payload).encode()
        h = {"Content-Type": "application/json", "User-Agent": "Atlassian Webhook HTTP Client",
             "X-Atlassian-Webhook-Identifier": delivery or str(uuid.uuid4()),
             "X-Hub-Signature": signature if signature is not None else hub_sign(raw, secret), **(headers or {})}
        return await self.http.post("/webhooks/jira", content=raw, headers={k: v for k, v in h.items() if v})

    async def github(self, payload: Any, *, event: str = "issues", body: bytes | None = None,
                     secret: str = GH_SECRETS[0], signature: str | None = None, delivery: str | None = None,
                     headers: dict[str, str] | None = None) -> httpx.Response:
        raw = body if body is not None else json.dumps(payload).encode()
        h = {"Content-Type": "application/json", "User-Agent": "GitHub-Hookshot/5f2e8b1", "X-GitHub-Event": event,
             "X-GitHub-Delivery": delivery or str(uuid.uuid4()), "X-GitHub-Hook-ID": "292430182",
             "X-Hub-Signature-256": signature if signature is not None else hub_sign(raw, secret),
             **(headers or {})}
        return await self.http.post("/webhooks/github", content=raw, headers={k: v for k, v in h.items() if v})

    async def start_item(self, tracker: str, title: str = "Validate config before push") -> tuple[
            WorkflowHandle[Any, Any], ActionItem]:
        """An ActionItemWorkflow (no parent) whose ticket is open on the tracker; returns it once tracking."""
        app = self.app
        inc = incident()
        pm_id = inc.workflow_id
        app.store.records.upsert_postmortem(pm_id, inc, owner="alice", stage="following_up", stalled=False,
                                            stage_due_at=None)
        item = ActionItem(id=action_item_workflow_id(pm_id, "item-1"), postmortem_id=pm_id, title=title,
                          owner="bob", priority="P1", due_at=await app.now() + 7 * DAY, tracker=tracker)
        inp = ActionItemInput(item=item, policy=policy_for(app.config, inc.severity, inc.services[0]), incident=inc,
                              postmortem_owner="alice")
        handle = await app.client.start_workflow(ActionItemWorkflow.run, inp, id=item.id, task_queue=app.task_queue)
        app.handles.append(handle)
        state = await app.wait_for(handle, lambda s: s.phase == "tracking" and s.item.ticket_key, timeout=60)
        # the webhook finds the item by its ticket in the store, written by the workflow's save activity
        for _ in range(200):
            if app.store.records.action_item_by_ticket(tracker, state.item.ticket_key):
                break
            await asyncio.sleep(0.05)
        return handle, state.item

    async def state(self, handle: WorkflowHandle[Any, Any], predicate: Any = lambda s: True) -> Any:
        return await self.app.wait_for(handle, predicate)


def _web(app: App) -> httpx.AsyncClient:
    async def client_factory() -> Any:
        return app.client

    web_app = create_app(app.config, client_factory, secrets=SECRETS, store=app.store)
    return LifespanClient(web_app)


@pytest.fixture
def jira() -> Iterator[JiraStandin]:
    with validated(JiraStandin, JIRA_SPEC, project="CL", users={"acc-bob": "Bob Reviewer"}) as server:
        yield server


@pytest.fixture
def github() -> Iterator[GitHubStandin]:
    with validated(GitHubStandin, GITHUB_SPEC) as server:
        server.add_repo(REPO, collaborators=["bob-gh"])
        server.add_repo("acme/platform", collaborators=["bob-gh"])
        yield server


@pytest_asyncio.fixture
async def hooks(time_env: WorkflowEnvironment, tmp_path: Path, jira: JiraStandin,
                github: GitHubStandin) -> AsyncIterator[Hooks]:
    """A closeloop app with both trackers on their stand-ins, its worker, and the web app on its store."""
    extra = f"""
[services.payments.policy]
tracker = "jira"

[people.bob.handles]
jira = "acc-bob"
github = "bob-gh"

[trackers.jira]
url = "{jira.url}"
project = "CL"
timeout = 2.0

[trackers.github]
base_url = "{github.base_url}"
repo = "{REPO}"
timeout = 2.0
"""
    async with running_app(time_env, tmp_path, extra=extra) as app:
        async with _web(app) as http:
            yield Hooks(http=http, app=app)


async def signals(handle: WorkflowHandle[Any, Any]) -> list[dict[str, Any]]:
    """The TicketStatusEvents the workflow received, from its event history (as sent, decoded)."""
    history = await handle.fetch_history()
    return [json.loads(e.workflow_execution_signaled_event_attributes.input.payloads[0].data)
            for e in history.events
            if e.HasField("workflow_execution_signaled_event_attributes")
            and e.workflow_execution_signaled_event_attributes.signal_name == "ticket_status"]
