"""POST /webhooks/github: GitHub `issues` deliveries (signed `X-Hub-Signature-256: sha256=...`) tell a running
ActionItemWorkflow, whose ticket is an issue on the GitHub stand-in, that the issue was closed (completed or
not planned), reopened, deleted or transferred; `ping` answers 200; replays are acknowledged and not
applied; every error is a JSON 4xx. Every payload is validated against GitHub's webhook schemas."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client

from closeloop.integrations.github.webhook import github_change
from closeloop.models import WontDoReason
from closeloop.standins.github import GitHubStandin
from closeloop.web.app import create_app
from closeloop.workflows.action_item import ActionItemWorkflow
from tests.closeloop.web.conftest import secrets_of, webhook_limit
from tests.closeloop.web.tickets import (  # noqa: F401 - fixtures
    GH_SECRETS,
    REPO,
    SECRETS,
    Hooks,
    github,
    github_payload,
    github_schema_errors,
    hooks,
    hub_sign,
    jira,
    signals,
)

KEY = f"{REPO}#1"


def closed(gh: GitHubStandin, reason: str = "completed", number: int = 1) -> dict[str, Any]:
    """The issue closed on GitHub, and the delivery GitHub sends for it."""
    gh.set_state(REPO, number, "closed", reason)
    return github_payload(gh, f"{REPO}#{number}", "closed")


def reopened(gh: GitHubStandin) -> dict[str, Any]:
    gh.set_state(REPO, 1, "open")
    return github_payload(gh, KEY, "reopened")


def create_issue(gh: GitHubStandin, repo: str, title: str) -> int:
    r = httpx.post(f"{gh.base_url}/repos/{repo}/issues", json={"title": title},
                   headers={"Authorization": "token t", "Accept": "application/vnd.github+json"})
    assert r.status_code == 201, r.text
    return int(r.json()["number"])


async def test_closed_issue_completes_the_item_within_seconds(hooks: Hooks, github: GitHubStandin) -> None:
    handle, item = await hooks.start_item("github")
    assert item.ticket_key == KEY
    started = time.monotonic()
    r = await hooks.github(closed(github))
    assert r.status_code == 202, r.text
    assert r.json() == {"workflow_id": item.id, "ticket_key": KEY, "status": "done"}
    state = await hooks.app.wait_for(handle, lambda s: s.phase == "waiting_effectiveness", timeout=5)
    assert time.monotonic() - started < 5
    assert state.item.status.value == "done" and state.item.completed_at is not None
    [event] = await signals(handle)
    assert event["ticket_key"] == KEY and event["status"] == "done" and event["source"] == "github-webhook"


async def test_reopened_issue_revokes_the_completion(hooks: Hooks, github: GitHubStandin) -> None:
    handle, _ = await hooks.start_item("github")
    assert (await hooks.github(closed(github))).status_code == 202
    await hooks.app.wait_for(handle, lambda s: s.phase == "waiting_effectiveness", timeout=5)
    r = await hooks.github(reopened(github))
    assert r.status_code == 202 and r.json()["status"] == "reopened", r.text
    state = await hooks.app.wait_for(handle, lambda s: s.phase == "tracking" and s.cycle == 1, timeout=5)
    assert state.item.status.value == "open" and state.item.completed_at is None


async def test_closed_as_not_planned_asks_the_owner_why_then_ends_the_item_as_wont_do(
        hooks: Hooks, github: GitHubStandin) -> None:
    handle, _ = await hooks.start_item("github")
    r = await hooks.github(closed(github, "not_planned"))
    assert r.status_code == 202 and r.json()["status"] == "wont_do", r.text
    state = await hooks.app.wait_for(handle, lambda s: s.phase == "awaiting_reason", timeout=5)
    assert state.item.status.value == "wont_do" and state.item.verdict_note == "not planned"
    await handle.execute_update(ActionItemWorkflow.explain_wont_do,
                                WontDoReason(by="bob", reason="superseded by the new deploy pipeline"))
    result = await handle.result()
    assert result.verdict_note == "superseded by the new deploy pipeline (closed as not planned)"
    r = await hooks.github(reopened(github))  # the workflow has ended: acknowledged, not a 500
    assert r.status_code == 202 and r.json()["ignored"] == "item closed", r.text


async def test_replayed_delivery_is_acknowledged_and_not_applied_again(hooks: Hooks, github: GitHubStandin) -> None:
    handle, _ = await hooks.start_item("github")
    close = json.dumps(closed(github)).encode()
    assert (await hooks.github(None, body=close, delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958")).status_code == 202
    await hooks.app.wait_for(handle, lambda s: s.phase == "waiting_effectiveness", timeout=5)
    assert (await hooks.github(reopened(github), delivery="8a1c0b4e-cc78-11e3-81ab-4c9367dc0958")).status_code == 202
    await hooks.app.wait_for(handle, lambda s: s.phase == "tracking" and s.cycle == 1, timeout=5)

    # "Redeliver" in the hook's settings: the same X-GitHub-Delivery, correctly signed
    r = await hooks.github(None, body=close, delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958")
    assert r.status_code == 200 and r.json() == {"duplicate": True}, r.text
    state = await hooks.app.wait_for(handle, lambda s: True)
    assert state.phase == "tracking" and state.item.status.value == "open" and state.sync_events == 2
    assert [e["status"] for e in await signals(handle)] == ["done", "reopened"]
    assert len(github.repos[REPO]["issues"]) == 1  # and still exactly one ticket for the item


async def test_signature_from_either_rotating_secret(hooks: Hooks, github: GitHubStandin) -> None:
    handle, _ = await hooks.start_item("github")
    r = await hooks.github(closed(github), secret=GH_SECRETS[1])
    assert r.status_code == 202, r.text
    await hooks.app.wait_for(handle, lambda s: s.phase == "waiting_effectiveness", timeout=5)


async def test_invalid_missing_or_altered_signature_401_and_no_signal(hooks: Hooks, github: GitHubStandin) -> None:
    handle, _ = await hooks.start_item("github")
    payload = closed(github)
    raw = json.dumps(payload).encode()

    r = await hooks.github(payload, secret="not-our-secret")
    assert r.status_code == 401 and r.json() == {"error": "invalid X-Hub-Signature-256"}
    sha1 = "sha1=" + hub_sign(raw, GH_SECRETS[0])[7:]  # the legacy X-Hub-Signature format is not accepted here
    for header in ["sha256=", "sha256=0", sha1, "garbage", hub_sign(raw, GH_SECRETS[0])[7:]]:
        r = await hooks.github(None, body=raw, signature=header)
        assert r.status_code == 401 and "error" in r.json(), header

    r = await hooks.github(None, body=raw, signature="")
    assert r.status_code == 401 and r.json() == {"error": "missing X-Hub-Signature-256"}

    signature = hub_sign(raw, GH_SECRETS[0])
    altered = raw.replace(b'"completed"', b'"not_planned"', 1)
    assert altered != raw
    r = await hooks.github(None, body=altered, signature=signature)
    assert r.status_code == 401 and r.json() == {"error": "invalid X-Hub-Signature-256"}

    state = await hooks.app.wait_for(handle, lambda s: True)
    assert state.sync_events == 0 and state.phase == "tracking"
    assert await signals(handle) == []


async def test_unconfigured_secret_401_naming_the_variable(hooks: Hooks) -> None:
    async def factory() -> Client:
        return hooks.app.client

    app = create_app(hooks.app.config, factory, secrets=secrets_of(), store=hooks.app.store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        raw = b'{"zen": "Keep it logically awesome.", "hook_id": 1}'
        r = await http.post("/webhooks/github", content=raw,
                            headers={"X-GitHub-Event": "ping", "X-Hub-Signature-256": hub_sign(raw, "x")})
    assert r.status_code == 401
    assert r.json() == {"error": "no GitHub webhook secrets are configured on this server "
                                 "(set CLOSELOOP_GITHUB_WEBHOOK_SECRET)"}


async def test_ping_200_other_events_and_actions_202_ignored(hooks: Hooks, github: GitHubStandin) -> None:
    handle, _ = await hooks.start_item("github")
    ping = {"zen": "Design for failure.", "hook_id": 292430182,
            "hook": {"type": "Repository", "id": 292430182, "active": True, "events": ["issues"],
                     "config": {"content_type": "json", "insecure_ssl": "0", "url": "https://closeloop.example.com/webhooks/github"}},
            "repository": github._repo(REPO), "sender": github.simple_user("bob-gh")}
    r = await hooks.github(ping, event="ping")
    assert r.status_code == 200 and r.json() == {"ok": True}, r.text
    r = await hooks.github(ping, event="ping", secret="not-our-secret")
    assert r.status_code == 401

    r = await hooks.github({"ref": "refs/heads/main"}, event="push")
    assert r.status_code == 202 and r.json() == {"ignored": "event push"}
    labeled = github_payload(github, KEY, "labeled", label={"id": 1, "node_id": "LA_1", "url": "https://x",
                                                            "name": "bug", "color": "d73a4a", "default": True,
                                                            "description": None})
    r = await hooks.github(labeled)
    assert r.status_code == 202 and r.json() == {"ignored": "action labeled"}
    number = create_issue(github, REPO, "Not a closeloop issue")
    r = await hooks.github(closed(github, number=number))
    assert r.status_code == 202 and r.json() == {"ignored": f"{REPO}#{number} is not the ticket of a closeloop "
                                                            f"action item"}
    assert await signals(handle) == []


async def test_bad_json_bad_shape_and_missing_event_are_4xx_json(hooks: Hooks, github: GitHubStandin) -> None:
    await hooks.start_item("github")
    good = closed(github)
    cases: list[tuple[bytes, int, str]] = [
        (b"{not json", 400, "malformed JSON"),
        (b"[]", 400, "the body must be a JSON object"),
        (b"{}", 422, "missing field action"),
        (b'{"action": "closed"}', 422, "field repository must be an object"),
        (json.dumps({**good, "issue": "x"}).encode(), 422, "field issue must be an object"),
        (json.dumps({**good, "repository": {"full_name": "no-slash"}}).encode(), 422,
         "field repository.full_name must be a string owner/name"),
        (json.dumps({**good, "issue": {**good["issue"], "number": "1"}}).encode(), 422,
         "field issue.number must be a positive integer"),
        (json.dumps({**good, "issue": {**good["issue"], "number": True}}).encode(), 422,
         "field issue.number must be a positive integer"),
    ]
    for raw, status, message in cases:
        r = await hooks.github(None, body=raw)
        assert r.status_code == status, (raw[:80], r.text)
        assert r.json()["error"].startswith(message), (raw[:80], r.text)
    raw = json.dumps(good).encode()
    r = await hooks.github(None, body=raw, event="")  # no X-GitHub-Event header
    assert r.status_code == 400 and r.json() == {"error": "missing X-GitHub-Event"}


async def test_body_over_the_limit_413(hooks: Hooks) -> None:
    limit = webhook_limit("github")  # the vendor's documented maximum, not [web] max_body_bytes (the API's)
    r = await hooks.github(None, body=b'{"pad": "' + b"x" * limit + b'"}')
    assert r.status_code == 413 and r.json() == {"error": f"body too large: the limit is {limit} bytes"}


async def test_deleted_issue_is_signalled_as_deleted(hooks: Hooks, github: GitHubStandin) -> None:
    handle, _ = await hooks.start_item("github")
    r = await hooks.github(github_payload(github, KEY, "deleted"))
    assert r.status_code == 202 and r.json()["status"] == "deleted", r.text
    await hooks.app.wait_for(handle, lambda s: s.sync_events == 1, timeout=5)
    [event] = await signals(handle)
    assert event["ticket_key"] == KEY and event["status"] == "deleted" and event["moved_to"] is None


async def test_transferred_issue_is_signalled_as_moved(hooks: Hooks, github: GitHubStandin) -> None:
    handle, _ = await hooks.start_item("github")
    number = create_issue(github, "acme/platform", "Validate config before push")  # the issue after the move
    changes = {"new_issue": github._issue("acme/platform", number), "new_repository": github._repo("acme/platform")}
    payload = github_payload(github, KEY, "transferred", changes=changes)
    r = await hooks.github(payload)
    assert r.status_code == 202 and r.json()["status"] == "open", r.text
    await hooks.app.wait_for(handle, lambda s: s.sync_events == 1, timeout=5)
    [event] = await signals(handle)
    assert event["ticket_key"] == KEY and event["moved_to"] == f"acme/platform#{number}"

    # the item follows the issue to its new repository
    state = await hooks.app.wait_for(handle, lambda s: s.item.ticket_key == f"acme/platform#{number}", timeout=5)
    assert state.phase == "tracking" and state.item.status.value == "open"

    # a transfer whose payload does not say where the issue went: it left the repository, as if deleted
    other, item = await hooks.start_item("github", title="Alert on config drift")
    bare = {**github_payload(github, item.ticket_key, "transferred", changes=changes), "changes": {}}
    assert github_schema_errors("transferred", bare) != []  # GitHub always says; closeloop copes anyway
    r = await hooks.github(bare)
    assert r.status_code == 202 and r.json()["status"] == "deleted", r.text


async def test_temporal_unreachable_503_and_the_redelivery_is_applied(hooks: Hooks, github: GitHubStandin) -> None:
    handle, _ = await hooks.start_item("github")

    async def unreachable() -> Client:
        return await Client.connect("127.0.0.1:1")

    down = create_app(hooks.app.config, unreachable, secrets=SECRETS, store=hooks.app.store)
    raw = json.dumps(closed(github)).encode()
    headers = {"X-GitHub-Event": "issues", "X-GitHub-Delivery": "d-redeliver",
               "X-Hub-Signature-256": hub_sign(raw, GH_SECRETS[0])}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=down), base_url="http://t") as http:
        r = await http.post("/webhooks/github", content=raw, headers=headers)
    assert r.status_code == 503 and "Temporal" in r.json()["error"]
    r = await hooks.github(None, body=raw, delivery="d-redeliver")
    assert r.status_code == 202, r.text
    await hooks.app.wait_for(handle, lambda s: s.phase == "waiting_effectiveness", timeout=5)


# --------------------------------------------------------------------------- stale replays (issue 9)


def vendor_example(name: str) -> dict[str, Any]:
    return json.loads((Path(__file__).parents[2] / "payloads" / name).read_text())


def test_deliveries_are_ordered_by_the_issue_updated_at() -> None:
    """GitHub's own example (tests/payloads/github/issues.reopened.json, from @octokit/webhooks-examples):
    ordered by its `issue.updated_at`, not by `closed_at` (which a reopened issue still carries there)."""
    change = github_change("issues", vendor_example("github/issues.reopened.json"))
    assert not isinstance(change, str)
    assert change.status == "reopened"
    assert change.version == datetime(2021, 10, 11, 16, 40, 56, tzinfo=UTC)


async def test_stale_close_replayed_under_a_new_delivery_id_is_ignored(hooks: Hooks, github: GitHubStandin) -> None:
    """A captured, correctly signed `closed` replayed after the issue was reopened, under a new X-GitHub-Delivery
    (the header is not signed): its `issue.updated_at` is older than the reopening's, so it is ignored."""
    handle, item = await hooks.start_item("github")
    clock = [float(int(time.time()) + 60)]
    github.clock = lambda: clock[0]  # the stand-in stamps `updated_at` (whole seconds, as GitHub does)
    close = json.dumps(closed(github)).encode()
    assert (await hooks.github(None, body=close, delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958")).status_code == 202
    await hooks.app.wait_for(handle, lambda s: s.phase == "waiting_effectiveness", timeout=5)
    clock[0] += 60
    r = await hooks.github(reopened(github), delivery="8a1c0b4e-cc78-11e3-81ab-4c9367dc0958")
    assert r.status_code == 202 and r.json()["status"] == "reopened", r.text
    await hooks.app.wait_for(handle, lambda s: s.phase == "tracking" and s.cycle == 1, timeout=5)

    r = await hooks.github(None, body=close, delivery="9b2d1c5f-cc78-11e3-81ab-4c9367dc0958")
    assert r.status_code == 202, r.text
    assert r.json() == {"ignored": "stale", "workflow_id": item.id}
    state = await hooks.app.wait_for(handle, lambda s: True)
    assert state.phase == "tracking" and state.item.status.value == "open" and state.sync_events == 2
    assert [e["status"] for e in await signals(handle)] == ["done", "reopened"]

    clock[0] += 60  # closed again, later: applied
    r = await hooks.github(closed(github))
    assert r.status_code == 202 and r.json()["status"] == "done", r.text
    await hooks.app.wait_for(handle, lambda s: s.phase == "waiting_effectiveness", timeout=5)


async def test_503_then_the_redelivery_is_not_stale_and_a_later_replay_is(hooks: Hooks,
                                                                          github: GitHubStandin) -> None:
    handle, item = await hooks.start_item("github")
    clock = [float(int(time.time()) + 60)]
    github.clock = lambda: clock[0]

    async def unreachable() -> Client:
        return await Client.connect("127.0.0.1:1")

    down = create_app(hooks.app.config, unreachable, secrets=SECRETS, store=hooks.app.store)
    raw = json.dumps(closed(github)).encode()
    headers = {"X-GitHub-Event": "issues", "X-GitHub-Delivery": "d-redeliver",
               "X-Hub-Signature-256": hub_sign(raw, GH_SECRETS[0])}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=down), base_url="http://t") as http:
        r = await http.post("/webhooks/github", content=raw, headers=headers)
    assert r.status_code == 503, r.text
    r = await hooks.github(None, body=raw, delivery="d-redeliver")  # "Redeliver": applied, not stale
    assert r.status_code == 202 and r.json()["status"] == "done", r.text
    await hooks.app.wait_for(handle, lambda s: s.phase == "waiting_effectiveness", timeout=5)
    clock[0] += 1
    assert (await hooks.github(reopened(github))).status_code == 202
    await hooks.app.wait_for(handle, lambda s: s.phase == "tracking" and s.cycle == 1, timeout=5)
    r = await hooks.github(None, body=raw, delivery="d-replayed")
    assert r.status_code == 202 and r.json() == {"ignored": "stale", "workflow_id": item.id}, r.text
    state = await hooks.app.wait_for(handle, lambda s: True)
    assert state.item.status.value == "open" and [e["status"] for e in await signals(handle)] == ["done", "reopened"]
