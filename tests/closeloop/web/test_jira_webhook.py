"""POST /webhooks/jira: Jira Cloud webhooks (signed `X-Hub-Signature: sha256=...`) tell a running
ActionItemWorkflow, whose ticket is an issue on the Jira stand-in, that the issue was done, won't be done,
reopened, deleted or moved; replays are acknowledged and not applied; every error is a JSON 4xx."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
from temporalio.client import Client

from closeloop.models import ActionItemSpec, WontDoReason
from closeloop.standins.jira import JiraStandin
from closeloop.web.app import create_app
from closeloop.workflows.action_item import ActionItemWorkflow
from closeloop.workflows.postmortem import PostmortemWorkflow
from tests.closeloop.web.conftest import secrets_of, webhook_limit
from tests.closeloop.web.tickets import (  # noqa: F401 - fixtures
    JIRA_SECRETS,
    SECRETS,
    Hooks,
    github,
    hooks,
    hub_sign,
    jira,
    jira_payload,
    resolution_item,
    signals,
    status_item,
)
from tests.temporal_env import incident
from tests.workflows.drive import to_following_up


def done(jira: JiraStandin, key: str, resolution: str = "Done") -> dict[str, Any]:
    """The issue resolved on Jira, and the webhook Jira sends for it."""
    jira.set_status(key, "Done", resolution)
    return jira_payload(jira, key, items=[status_item("To Do", "Done"), resolution_item(None, resolution)])


def reopened(jira: JiraStandin, key: str) -> dict[str, Any]:
    jira.set_status(key, "In Progress")
    return jira_payload(jira, key, items=[status_item("Done", "In Progress"), resolution_item("Done", None)])


async def test_done_issue_completes_the_item_within_seconds(hooks: Hooks, jira: JiraStandin) -> None:
    handle, item = await hooks.start_item("jira")
    assert item.ticket_key == "CL-1" and "CL-1" in jira.issues
    started = time.monotonic()
    r = await hooks.jira(done(jira, "CL-1"))
    assert r.status_code == 202, r.text
    assert r.json() == {"workflow_id": item.id, "ticket_key": "CL-1", "status": "done"}
    state = await hooks.app.wait_for(handle, lambda s: s.phase == "waiting_effectiveness", timeout=5)
    assert time.monotonic() - started < 5
    assert state.item.status.value == "done" and state.item.completed_at is not None
    assert state.sync_events == 1
    [event] = await signals(handle)
    assert event["ticket_key"] == "CL-1" and event["status"] == "done" and event["source"] == "jira-webhook"


async def test_in_a_whole_lifecycle_the_postmortem_sees_the_item_done(hooks: Hooks, jira: JiraStandin) -> None:
    """The item as a child of its PostmortemWorkflow (the `payments` service tracks its items on Jira)."""
    spec = ActionItemSpec(title="Add a canary stage", owner="bob", priority="P2", kind="prevent")
    handle, state = await to_following_up(hooks.app, incident(services=["payments"]), spec)
    item = state.items[0]
    assert item.tracker == "jira" and item.ticket_key == "CL-1"
    for _ in range(100):  # the webhook finds the item in the store, written by the child's save activity
        if hooks.app.store.records.action_item_by_ticket("jira", "CL-1"):
            break
        await asyncio.sleep(0.05)
    r = await hooks.jira(done(jira, "CL-1"))
    assert r.status_code == 202 and r.json()["workflow_id"] == item.id, r.text
    state = await hooks.app.wait_for(handle, lambda s: s.items[0].status.value == "done", timeout=5)
    assert state.items[0].completed_at is not None
    assert (await handle.query(PostmortemWorkflow.state)).items[0].status.value == "done"


async def test_reopened_issue_revokes_the_completion(hooks: Hooks, jira: JiraStandin) -> None:
    handle, _ = await hooks.start_item("jira")
    assert (await hooks.jira(done(jira, "CL-1"))).status_code == 202
    await hooks.app.wait_for(handle, lambda s: s.phase == "waiting_effectiveness", timeout=5)
    r = await hooks.jira(reopened(jira, "CL-1"))
    assert r.status_code == 202 and r.json()["status"] == "reopened", r.text
    state = await hooks.app.wait_for(handle, lambda s: s.phase == "tracking" and s.cycle == 1, timeout=5)
    assert state.item.status.value == "open" and state.item.completed_at is None


async def test_wont_do_resolution_asks_the_owner_why_then_ends_the_item_as_wont_do(
        hooks: Hooks, jira: JiraStandin) -> None:
    handle, _ = await hooks.start_item("jira")
    r = await hooks.jira(done(jira, "CL-1", resolution="Won't Do"))
    assert r.status_code == 202 and r.json()["status"] == "wont_do", r.text
    # a resolution is not a reason: the owner is asked for one
    state = await hooks.app.wait_for(handle, lambda s: s.phase == "awaiting_reason", timeout=5)
    assert state.item.status.value == "wont_do" and state.item.verdict_note == "Won't Do"
    await handle.execute_update(ActionItemWorkflow.explain_wont_do,
                                WontDoReason(by="bob", reason="the config service is being retired"))
    result = await handle.result()
    assert result.status.value == "wont_do"
    assert result.verdict_note == "the config service is being retired (closed as Won't Do)"
    # the workflow has ended: a later delivery is acknowledged, not a 500
    r = await hooks.jira(reopened(jira, "CL-1"))
    assert r.status_code == 202, r.text
    assert r.json()["ignored"] == "item closed"


async def test_replayed_delivery_is_acknowledged_and_not_applied_again(hooks: Hooks, jira: JiraStandin) -> None:
    handle, _ = await hooks.start_item("jira")
    close = json.dumps(done(jira, "CL-1")).encode()
    r = await hooks.jira(None, body=close, delivery="d-close")
    assert r.status_code == 202, r.text
    await hooks.app.wait_for(handle, lambda s: s.phase == "waiting_effectiveness", timeout=5)
    assert (await hooks.jira(reopened(jira, "CL-1"), delivery="d-reopen")).status_code == 202
    await hooks.app.wait_for(handle, lambda s: s.phase == "tracking" and s.cycle == 1, timeout=5)

    # Jira retries the old "done" (same identifier, correctly signed): acknowledged, nothing signalled
    r = await hooks.jira(None, body=close, delivery="d-close")
    assert r.status_code == 200, r.text
    assert r.json() == {"duplicate": True}
    state = await hooks.app.wait_for(handle, lambda s: True)
    assert state.phase == "tracking" and state.item.status.value == "open"
    assert state.sync_events == 2
    assert [e["status"] for e in await signals(handle)] == ["done", "reopened"]
    assert len(jira.issues) == 1  # and still exactly one ticket for the item


async def test_without_identifier_the_body_hash_is_the_delivery_id(hooks: Hooks, jira: JiraStandin) -> None:
    handle, _ = await hooks.start_item("jira")
    raw = json.dumps(done(jira, "CL-1")).encode()
    headers = {"X-Atlassian-Webhook-Identifier": ""}
    assert (await hooks.jira(None, body=raw, headers=headers)).status_code == 202
    r = await hooks.jira(None, body=raw, headers=headers)
    assert r.status_code == 200 and r.json() == {"duplicate": True}
    await hooks.app.wait_for(handle, lambda s: s.phase == "waiting_effectiveness")
    assert len(await signals(handle)) == 1


async def test_signature_from_either_rotating_secret(hooks: Hooks, jira: JiraStandin) -> None:
    handle, _ = await hooks.start_item("jira")
    r = await hooks.jira(done(jira, "CL-1"), secret=JIRA_SECRETS[1])
    assert r.status_code == 202, r.text
    await hooks.app.wait_for(handle, lambda s: s.phase == "waiting_effectiveness", timeout=5)


async def test_invalid_missing_or_altered_signature_401_and_no_signal(hooks: Hooks, jira: JiraStandin) -> None:
    handle, _ = await hooks.start_item("jira")
    payload = done(jira, "CL-1")
    raw = json.dumps(payload).encode()

    r = await hooks.jira(payload, secret="not-our-secret")
    assert r.status_code == 401 and r.json() == {"error": "invalid X-Hub-Signature"}
    for header in ["sha256=", "sha256=zz", "sha1=" + hub_sign(raw, JIRA_SECRETS[0])[7:], "garbage",
                   hub_sign(raw, JIRA_SECRETS[0])[7:]]:
        r = await hooks.jira(None, body=raw, signature=header)
        assert r.status_code == 401 and "error" in r.json(), header

    r = await hooks.jira(None, body=raw, signature="")  # the header left out
    assert r.status_code == 401 and r.json() == {"error": "missing X-Hub-Signature"}

    signature = hub_sign(raw, JIRA_SECRETS[0])
    altered = raw.replace(b'"Done"', b'"Dome"', 1)
    assert altered != raw
    r = await hooks.jira(None, body=altered, signature=signature)
    assert r.status_code == 401 and r.json() == {"error": "invalid X-Hub-Signature"}

    state = await hooks.app.wait_for(handle, lambda s: True)
    assert state.sync_events == 0 and state.phase == "tracking"
    assert await signals(handle) == []


async def test_unconfigured_secret_401_naming_the_variable(hooks: Hooks, jira: JiraStandin) -> None:
    async def factory() -> Client:
        return hooks.app.client

    app = create_app(hooks.app.config, factory, secrets=secrets_of(), store=hooks.app.store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        raw = b'{"webhookEvent": "jira:issue_deleted", "issue": {"key": "CL-1"}}'
        r = await http.post("/webhooks/jira", content=raw, headers={"X-Hub-Signature": hub_sign(raw, "x")})
    assert r.status_code == 401
    assert r.json() == {"error": "no Jira webhook secrets are configured on this server "
                                 "(set CLOSELOOP_JIRA_WEBHOOK_SECRET)"}


async def test_bad_json_and_bad_shape_are_4xx_json(hooks: Hooks) -> None:
    cases: list[tuple[bytes, int, str]] = [
        (b"{not json", 400, "malformed JSON"),
        (b"\xff\xfe", 400, "malformed JSON"),
        (b"[1, 2]", 400, "the body must be a JSON object"),
        (b"{}", 422, "missing field webhookEvent"),
        (b'{"webhookEvent": 7}', 422, "field webhookEvent must be a non-empty string"),
        (b'{"webhookEvent": "jira:issue_deleted"}', 422, "missing field issue"),
        (b'{"webhookEvent": "jira:issue_deleted", "issue": []}', 422, "field issue must be an object"),
        (b'{"webhookEvent": "jira:issue_deleted", "issue": {"id": "1"}}', 422, "missing field issue.key"),
        (b'{"webhookEvent": "jira:issue_updated", "issue": {"key": "CL-1"}, "changelog": {"items": '
         b'[{"field": "status"}]}}', 422, "missing field issue.fields"),
        (b'{"webhookEvent": "jira:issue_updated", "issue": {"key": "CL-1"}, "changelog": {"items": 3}}', 422,
         "field changelog.items must be a list"),
    ]
    for raw, status, message in cases:
        r = await hooks.jira(None, body=raw)
        assert r.status_code == status, (raw, r.text)
        assert r.json()["error"].startswith(message), (raw, r.text)


async def test_body_over_the_limit_413(hooks: Hooks) -> None:
    limit = webhook_limit("jira")  # the vendor's documented maximum, not [web] max_body_bytes (the API's)
    raw = b'{"webhookEvent": "jira:issue_deleted", "pad": "' + b"x" * limit + b'"}'
    r = await hooks.jira(None, body=raw)
    assert r.status_code == 413 and r.json() == {"error": f"body too large: the limit is {limit} bytes"}


async def test_untracked_tickets_other_events_and_other_changes_are_ignored(hooks: Hooks,
                                                                            jira: JiraStandin) -> None:
    handle, _ = await hooks.start_item("jira")
    jira.issues["CL-2"] = {**jira.issues["CL-1"], "id": "99999", "comments": []}  # an issue closeloop did not open
    r = await hooks.jira(done(jira, "CL-2"))
    assert r.status_code == 202 and r.json() == {"ignored": "CL-2 is not the ticket of a closeloop action item"}

    r = await hooks.jira(jira_payload(jira, "CL-1", event="jira:issue_created"))
    assert r.status_code == 202 and r.json() == {"ignored": "event jira:issue_created"}
    summary = {"field": "summary", "fieldtype": "jira", "fieldId": "summary", "from": None,
               "fromString": "Validate config before push", "to": None, "toString": "Validate config on push"}
    r = await hooks.jira(jira_payload(jira, "CL-1", items=[summary]))
    assert r.status_code == 202 and r.json() == {"ignored": "no status change"}
    r = await hooks.jira({**jira_payload(jira, "CL-1"), "changelog": None})  # e.g. a comment: no changelog
    assert r.status_code == 202 and r.json() == {"ignored": "no status change"}
    assert await signals(handle) == []


async def test_deleted_issue_is_signalled_as_deleted(hooks: Hooks, jira: JiraStandin) -> None:
    handle, _ = await hooks.start_item("jira")
    r = await hooks.jira(jira_payload(jira, "CL-1", event="jira:issue_deleted"))
    assert r.status_code == 202 and r.json()["status"] == "deleted", r.text
    await hooks.app.wait_for(handle, lambda s: s.sync_events == 1, timeout=5)
    [event] = await signals(handle)
    assert event["ticket_key"] == "CL-1" and event["status"] == "deleted" and event["moved_to"] is None


async def test_issue_moved_to_another_project_is_signalled_with_the_new_key(hooks: Hooks,
                                                                            jira: JiraStandin) -> None:
    handle, _ = await hooks.start_item("jira")
    payload = jira_payload(jira, "CL-1", items=[
        {"field": "project", "fieldtype": "jira", "fieldId": "project", "from": "10000", "fromString": "Closeloop",
         "to": "10001", "toString": "Operations"},
        {"field": "Key", "fieldtype": "jira", "from": None, "fromString": "CL-1", "to": None, "toString": "OPS-7"},
    ])
    payload["issue"]["key"] = "OPS-7"  # the webhook carries the issue as it is now
    r = await hooks.jira(payload)
    assert r.status_code == 202, r.text
    assert r.json() == {"workflow_id": handle.id, "ticket_key": "CL-1", "status": "open"}
    await hooks.app.wait_for(handle, lambda s: s.sync_events == 1, timeout=5)
    [event] = await signals(handle)
    assert event["ticket_key"] == "CL-1" and event["moved_to"] == "OPS-7" and event["status"] == "open"


async def test_temporal_unreachable_503_and_the_retry_is_applied(hooks: Hooks, jira: JiraStandin) -> None:
    handle, _ = await hooks.start_item("jira")

    async def unreachable() -> Client:
        return await Client.connect("127.0.0.1:1")  # nothing listens there

    down = create_app(hooks.app.config, unreachable, secrets=SECRETS, store=hooks.app.store)
    raw = json.dumps(done(jira, "CL-1")).encode()
    headers = {"Content-Type": "application/json", "X-Atlassian-Webhook-Identifier": "d-retry",
               "X-Hub-Signature": hub_sign(raw, JIRA_SECRETS[0])}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=down), base_url="http://t") as http:
        r = await http.post("/webhooks/jira", content=raw, headers=headers)
    assert r.status_code == 503 and "Temporal" in r.json()["error"]
    # the delivery was not recorded: Jira's retry (same identifier) goes through
    r = await hooks.jira(None, body=raw, delivery="d-retry")
    assert r.status_code == 202, r.text
    await hooks.app.wait_for(handle, lambda s: s.phase == "waiting_effectiveness", timeout=5)
    assert (await hooks.app.client.get_workflow_handle(handle.id).query(ActionItemWorkflow.state)).sync_events == 1


# --------------------------------------------------------------------------- stale replays (issue 9)


def at_ms(payload: dict[str, Any], timestamp: int) -> dict[str, Any]:
    """The delivery with Jira's `timestamp` (ms since the epoch, when Jira raised the event) set by the test,
    so that the order of events does not depend on how fast the test runs."""
    return {**payload, "timestamp": timestamp}


async def test_stale_done_replayed_under_a_new_identifier_is_ignored(hooks: Hooks, jira: JiraStandin) -> None:
    """A captured, correctly signed "done" replayed after the issue was reopened, under a new
    X-Atlassian-Webhook-Identifier (the header is not signed): older than the reopening, so ignored."""
    handle, item = await hooks.start_item("jira")
    t0 = int(time.time() * 1000)
    close = json.dumps(at_ms(done(jira, "CL-1"), t0)).encode()
    assert (await hooks.jira(None, body=close, delivery="d-close")).status_code == 202
    await hooks.app.wait_for(handle, lambda s: s.phase == "waiting_effectiveness", timeout=5)
    r = await hooks.jira(at_ms(reopened(jira, "CL-1"), t0 + 60_000), delivery="d-reopen")
    assert r.status_code == 202 and r.json()["status"] == "reopened", r.text
    await hooks.app.wait_for(handle, lambda s: s.phase == "tracking" and s.cycle == 1, timeout=5)

    r = await hooks.jira(None, body=close, delivery="d-replayed")
    assert r.status_code == 202, r.text
    assert r.json() == {"ignored": "stale", "workflow_id": item.id}
    state = await hooks.app.wait_for(handle, lambda s: True)
    assert state.phase == "tracking" and state.item.status.value == "open" and state.sync_events == 2
    assert [e["status"] for e in await signals(handle)] == ["done", "reopened"]

    # the same reopening again under another identifier: as old and the same, ignored too
    r = await hooks.jira(at_ms(reopened(jira, "CL-1"), t0 + 60_000), delivery="d-reopen-again")
    assert r.status_code == 202 and r.json()["ignored"] == "stale", r.text
    # a newer "done" is applied
    r = await hooks.jira(at_ms(done(jira, "CL-1"), t0 + 120_000), delivery="d-close-again")
    assert r.status_code == 202 and r.json()["status"] == "done", r.text
    state = await hooks.app.wait_for(handle, lambda s: s.phase == "waiting_effectiveness", timeout=5)
    assert [e["status"] for e in await signals(handle)] == ["done", "reopened", "done"]


async def test_without_timestamp_the_issue_updated_time_orders(hooks: Hooks, jira: JiraStandin) -> None:
    """A delivery without `timestamp` is ordered by `issue.fields.updated` (Jira's `...000+0000` format)."""
    handle, _ = await hooks.start_item("jira")
    close = done(jira, "CL-1")
    del close["timestamp"]
    close["issue"]["fields"]["updated"] = "2026-03-01T10:00:00.000+0000"
    raw = json.dumps(close).encode()
    assert (await hooks.jira(None, body=raw)).status_code == 202
    await hooks.app.wait_for(handle, lambda s: s.phase == "waiting_effectiveness", timeout=5)
    reopen = reopened(jira, "CL-1")
    del reopen["timestamp"]
    reopen["issue"]["fields"]["updated"] = "2026-03-01T11:00:00.000+0100"  # the same instant: reopened != done
    assert (await hooks.jira(reopen)).status_code == 202
    await hooks.app.wait_for(handle, lambda s: s.phase == "tracking" and s.cycle == 1, timeout=5)
    reopen["issue"]["fields"]["updated"] = "2026-03-01T10:00:01.000+0000"
    assert (await hooks.jira(reopen)).status_code == 202
    r = await hooks.jira(None, body=raw)  # new identifier, older than the last one applied
    assert r.status_code == 202 and r.json()["ignored"] == "stale", r.text
    state = await hooks.app.wait_for(handle, lambda s: True)
    assert state.phase == "tracking" and state.item.status.value == "open"


async def test_503_then_the_retry_is_not_stale_and_a_later_replay_is(hooks: Hooks, jira: JiraStandin) -> None:
    """The time is recorded only once the signal went out: Jira's retry after a 503 is applied."""
    handle, item = await hooks.start_item("jira")

    async def unreachable() -> Client:
        return await Client.connect("127.0.0.1:1")  # nothing listens there

    down = create_app(hooks.app.config, unreachable, secrets=SECRETS, store=hooks.app.store)
    t0 = int(time.time() * 1000)
    raw = json.dumps(at_ms(done(jira, "CL-1"), t0)).encode()
    headers = {"Content-Type": "application/json", "X-Atlassian-Webhook-Identifier": "d-retry",
               "X-Hub-Signature": hub_sign(raw, JIRA_SECRETS[0])}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=down), base_url="http://t") as http:
        r = await http.post("/webhooks/jira", content=raw, headers=headers)
    assert r.status_code == 503, r.text
    r = await hooks.jira(None, body=raw, delivery="d-retry")
    assert r.status_code == 202 and r.json()["status"] == "done", r.text
    await hooks.app.wait_for(handle, lambda s: s.phase == "waiting_effectiveness", timeout=5)
    assert (await hooks.jira(at_ms(reopened(jira, "CL-1"), t0 + 1))).status_code == 202
    await hooks.app.wait_for(handle, lambda s: s.phase == "tracking" and s.cycle == 1, timeout=5)
    r = await hooks.jira(None, body=raw, delivery="d-replayed")
    assert r.status_code == 202 and r.json() == {"ignored": "stale", "workflow_id": item.id}, r.text
    state = await hooks.app.wait_for(handle, lambda s: True)
    assert state.item.status.value == "open" and [e["status"] for e in await signals(handle)] == ["done", "reopened"]


async def test_concurrent_deliveries_for_one_item_take_turns(hooks: Hooks, jira: JiraStandin) -> None:
    """A reopening and an older "done" arriving at the same moment: whichever is taken first, the older one is
    never signalled after the newer, and the item ends open."""
    handle, _ = await hooks.start_item("jira")
    t0 = int(time.time() * 1000)
    close = at_ms(done(jira, "CL-1"), t0)
    reopen = at_ms(reopened(jira, "CL-1"), t0 + 60_000)
    answers = await asyncio.gather(hooks.jira(reopen), hooks.jira(close))
    assert all(r.status_code == 202 for r in answers), [r.text for r in answers]
    assert [e["status"] for e in await signals(handle)] in (["reopened"], ["done", "reopened"])
    state = await hooks.app.wait_for(handle, lambda s: s.sync_events >= 1, timeout=5)
    assert state.phase == "tracking" and state.item.status.value == "open"
