"""The web app's pages over HTTP (no browser), on the time-skipping server with the real worker, the real store
and the app behind an authenticating proxy (`[web.auth] mode = "proxy"`, the proxy at 127.0.0.1): who may see
and do what, CSRF, escaping, action links and `next=`. The browser runs the whole lifecycle in
tests/browser/test_lifecycle_in_browser.py; the OIDC sign-in is in test_signin.py."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from closeloop.models import ActionItemSpec, Stage
from closeloop.secrets import Secrets
from closeloop.web.app import create_app
from closeloop.web.signin import safe_next
from closeloop.workflows.postmortem import PostmortemWorkflow
from tests.closeloop.web.conftest import ALL_SECRETS, LifespanClient
from tests.temporal_env import App, incident, running_app

PROXY = """
[web.auth]
mode = "proxy"
trusted_proxies = ["127.0.0.1/32"]
admins = ["dave"]
link_lifetime = "2s"

[people.frank]
name = "Frank Payments"
email = "frank@example.com"
manager = "grace"

[people.grace]
name = "Grace Payments Lead"
email = "grace@example.com"
"""
XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


@pytest_asyncio.fixture
async def site(time_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[tuple[App, LifespanClient]]:
    async with running_app(time_env, tmp_path, extra=PROXY) as app:
        async def client_factory() -> Any:
            return app.client

        secrets = Secrets({**ALL_SECRETS._env, "CLOSELOOP_SESSION_SECRET": "test-session-secret"})  # noqa: SLF001
        web_app = create_app(app.config, client_factory, secrets=secrets, store=app.store)
        async with LifespanClient(web_app, base_url="https://closeloop.test") as http:
            yield app, http


def as_(email: str) -> dict[str, str]:
    return {"X-Forwarded-Email": email}


async def csrf_of(http: httpx.AsyncClient, path: str, email: str) -> str:
    page = await http.get(path, headers=as_(email))
    assert page.status_code == 200, page.text[:500]
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, "the page has no CSRF field"
    return found.group(1)


def pm_path(workflow_id: str) -> str:
    return f"/postmortems/{workflow_id}"


async def test_every_page_needs_a_signed_in_person(site: tuple[App, LifespanClient]) -> None:
    app, http = site
    handle = await app.resolve(incident("INC-AUTH"))
    await app.wait_stage(handle, Stage.drafting)
    # the probes (ready or not, nothing else); /metrics has its own bearer token (tests/closeloop/test_telemetry.py)
    open_routes = {"/healthz", "/readyz", "/metrics", "/static/{name}", "/login", "/auth/callback", "/signed-out"}
    checked = 0
    for route in http.app.routes:  # type: ignore[attr-defined]
        path = getattr(route, "path", "")
        if path in open_routes or path.startswith(("/webhooks/", "/api/")):
            continue
        concrete = path.replace("{rest:path}", f"{handle.id}").replace("{token}", "abc")
        for method in sorted(getattr(route, "methods", set()) - {"HEAD"}):
            # nobody, an unknown person, and a known person's header from an untrusted address
            for headers in ({}, as_("mallory@evil.example")):
                response = await http.request(method, concrete, headers=headers)
                assert response.status_code == 401, (method, concrete, response.status_code)
            checked += 1
    assert checked >= 6  # /, /my, /dashboard, /postmortems GET and POST, /logout, /go
    untrusted = LifespanClient(http.app, base_url="https://closeloop.test")  # type: ignore[arg-type]
    untrusted._transport = httpx.ASGITransport(app=http.app, client=("203.0.113.9", 4000))  # type: ignore[attr-defined]
    response = await untrusted.get("/my", headers=as_("alice@example.com"))
    assert response.status_code == 401
    assert (await http.get("/my", headers=as_("alice@example.com"))).status_code == 200


async def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(site: tuple[App, LifespanClient]) -> None:
    app, http = site
    handle = await app.resolve(incident("INC-CSRF"))
    await app.wait_stage(handle, Stage.drafting)
    form = {"summary": "Checkout failed.", "item_0_title": "Validate config in CI", "item_0_owner": "erin",
            "item_0_done_when": "a config with an unknown key fails CI"}
    refused = await http.post(f"{pm_path(handle.id)}/draft", data=form, headers=as_("alice@example.com"))
    assert refused.status_code == 403
    assert "csrf" not in refused.text.lower() or "did not come from closeloop" in refused.text
    wrong = await http.post(f"{pm_path(handle.id)}/draft", data={**form, "csrf_token": "x" * 43},
                            headers=as_("alice@example.com"))
    assert wrong.status_code == 403
    state = await handle.query(PostmortemWorkflow.state)
    assert state.stage == Stage.drafting and state.drafts_submitted == 0
    # another person's token is no good either
    bob_token = await csrf_of(http, pm_path(handle.id), "bob@example.com")
    alice_token = await csrf_of(http, pm_path(handle.id), "alice@example.com")
    assert bob_token != alice_token
    crossed = await http.post(f"{pm_path(handle.id)}/draft", data={**form, "csrf_token": bob_token},
                              headers=as_("alice@example.com"))
    assert crossed.status_code == 403
    done = await http.post(f"{pm_path(handle.id)}/draft", data={**form, "csrf_token": alice_token},
                           headers=as_("alice@example.com"))
    assert done.status_code == 303, done.text[:500]
    await app.wait_stage(handle, Stage.in_review)
    refusals = app.store.views.audit(f"{pm_path(handle.id)}/draft")
    assert [(a.person, a.action, a.outcome) for a in refusals] == [
        ("alice", "csrf", "refused: no valid CSRF token")] * 3
    done_entries = app.store.views.audit(handle.id)
    assert [(a.person, a.action, a.outcome, a.via, a.address) for a in done_entries] == [
        ("alice", "draft.submit", "ok", "web", "127.0.0.1")]


async def test_a_person_acts_only_as_themself(site: tuple[App, LifespanClient]) -> None:
    app, http = site
    handle = await app.resolve(incident("INC-ACT"))
    await app.wait_stage(handle, Stage.drafting)
    path = pm_path(handle.id)
    # bob may see alice's postmortem (he reviews it) but cannot submit her draft, whatever the form says
    token = await csrf_of(http, path, "bob@example.com")
    response = await http.post(f"{path}/draft", data={"csrf_token": token, "summary": "bob's", "by": "alice"},
                               headers=as_("bob@example.com"))
    assert response.status_code == 409
    assert "owner" in response.text
    assert (await handle.query(PostmortemWorkflow.state)).drafts_submitted == 0
    token = await csrf_of(http, path, "alice@example.com")
    assert (await http.post(f"{path}/draft", data={"csrf_token": token, "summary": "Checkout failed."},
                            headers=as_("alice@example.com"))).status_code == 303
    await app.wait_stage(handle, Stage.in_review)
    # bob votes with a form naming erin as the reviewer: the vote is bob's
    token = await csrf_of(http, path, "bob@example.com")
    response = await http.post(f"{path}/review", data={"csrf_token": token, "decision": "approve",
                                                        "reviewer": "erin"}, headers=as_("bob@example.com"))
    assert response.status_code == 303
    state = await handle.query(PostmortemWorkflow.state)
    assert [(r.reviewer, r.decision.value) for r in state.reviews] == [("bob", "approve")]
    # carol manages bob and erin: she sees the postmortem, but her vote is hers, and she is no reviewer
    token = await csrf_of(http, path, "carol@example.com")
    response = await http.post(f"{path}/review", data={"csrf_token": token, "decision": "approve"},
                               headers=as_("carol@example.com"))
    assert response.status_code == 409
    assert [r.reviewer for r in (await handle.query(PostmortemWorkflow.state)).reviews] == ["bob"]
    # frank is in another team: he may not even see it
    assert (await http.get(path, headers=as_("frank@example.com"))).status_code == 403
    assert (await http.post(f"{path}/review", data={"csrf_token": token, "decision": "approve"},
                            headers=as_("frank@example.com"))).status_code == 403


async def test_what_people_type_renders_inert(site: tuple[App, LifespanClient]) -> None:
    app, http = site
    handle = await app.resolve(incident("INC-XSS", title=f"Checkout {XSS}", services=[XSS[:60]]))
    await app.wait_stage(handle, Stage.drafting)
    path = pm_path(handle.id)
    token = await csrf_of(http, path, "alice@example.com")
    form = {"csrf_token": token, "summary": XSS, "root_cause": XSS, "went_well": XSS, "impact_users": XSS,
            "tl_0_at": "2026-11-30T10:00", "tl_0_kind": "note", "tl_0_text": XSS,
            "item_0_title": f"Fix {XSS}", "item_0_owner": "erin", "item_0_done_when": XSS}
    assert (await http.post(f"{path}/draft", data=form, headers=as_("alice@example.com"))).status_code == 303
    await app.wait_stage(handle, Stage.in_review)
    for page in (path, f"{path}/draft", "/my", "/dashboard"):
        html = (await http.get(page, headers=as_("alice@example.com"))).text
        assert "<script>alert" not in html and "<img src=x" not in html, page
        if page in (path, f"{path}/draft"):
            assert "&lt;script&gt;alert(" in html, page
    # autosaved text comes back escaped too
    token = await csrf_of(http, f"{path}/draft", "alice@example.com")
    saved = await http.post(f"{path}/draft/autosave", json={"summary": XSS},
                            headers={**as_("alice@example.com"), "X-CSRF-Token": token})
    assert saved.status_code == 200
    assert "Content-Security-Policy" in (await http.get(path, headers=as_("alice@example.com"))).headers


async def test_an_action_link_opens_its_page_once_for_its_person_until_it_expires(
        site: tuple[App, LifespanClient]) -> None:
    import asyncio

    app, http = site
    links = http.app.state.action_links  # type: ignore[attr-defined]
    target = "/postmortems/postmortem/api/INC-LINK"
    token = links.make("alice", target)
    assert (await http.get(f"/go/{token}", headers=as_("bob@example.com"))).status_code == 403
    first = await http.get(f"/go/{token}", headers=as_("alice@example.com"))
    assert first.status_code == 303 and first.headers["location"] == target
    again = await http.get(f"/go/{token}", headers=as_("alice@example.com"))
    assert again.status_code == 410 and "used already" in again.text
    forged = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    assert (await http.get(f"/go/{forged}", headers=as_("alice@example.com"))).status_code == 410
    old = links.make("alice", target)
    await asyncio.sleep(3.1)  # link_lifetime = "2s"
    expired = await http.get(f"/go/{old}", headers=as_("alice@example.com"))
    assert expired.status_code == 410 and "expired" in expired.text


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil.example", "\\\\evil",
                                    "javascript:alert(1)", "http:/evil.example", "/\t/evil.example", "", None])
def test_next_never_leaves_the_site(target: str | None) -> None:
    assert safe_next(target) == "/"


def test_next_keeps_a_path_of_the_site() -> None:
    assert safe_next("/postmortems/postmortem/api/INC-1?done=ok") == "/postmortems/postmortem/api/INC-1?done=ok"


async def test_the_draft_form_errors_are_shown_next_to_their_fields(site: tuple[App, LifespanClient]) -> None:
    app, http = site
    handle = await app.resolve(incident("INC-FORM"))
    await app.wait_stage(handle, Stage.drafting)
    path = pm_path(handle.id)
    token = await csrf_of(http, f"{path}/draft", "alice@example.com")
    response = await http.post(f"{path}/draft", headers=as_("alice@example.com"), data={
        "csrf_token": token, "summary": "", "item_0_title": "Add a canary", "item_0_owner": "nobody",
        "item_0_due": "2020-01-01", "tl_0_at": "yesterday", "tl_0_text": "paged"})
    assert response.status_code == 422
    for field, words in (("summary", "write a summary"), ("item_0_owner", "not a person in the directory"),
                         ("item_0_due", "in the future"), ("tl_0_at", "a time like")):
        assert re.search(rf'id="e-{field}"[^>]*>[^<]*{words}', response.text) or \
            (field == "tl_0_at" and words in response.text), field
    assert 'value="Add a canary"' in response.text  # what was typed is kept
    assert (await handle.query(PostmortemWorkflow.state)).drafts_submitted == 0
    _ = ActionItemSpec  # the editor builds these (closeloop.web.pages._draft_from_form)


async def test_the_links_in_a_persons_messages_open_their_page_after_sign_in(site: tuple[App, LifespanClient]) -> None:
    """What the worker puts in a message to alice (closeloop.links, signed with the same key) opens the page."""
    from datetime import timedelta

    from closeloop.links import LinkSigner, item_url, links

    app, http = site
    pid = "postmortem/api/INC-MSG"
    signer = LinkSigner("test-session-secret", timedelta(days=7))
    sent = links("https://closeloop.test", pid, f"{pid}/item-2", person="alice", signer=signer)
    assert set(sent) == {"postmortem", "item"} and all("/go/" in url for url in sent.values())
    response = await http.get(sent["item"].removeprefix("https://closeloop.test"), headers=as_("alice@example.com"))
    assert response.status_code == 303
    assert response.headers["location"] == (item_url("https://x", pid, f"{pid}/item-2") or "").removeprefix("https://x")
    # without the key, the links are the pages' own addresses
    plain = links("https://closeloop.test", pid, None, person="alice", signer=LinkSigner("", timedelta(days=7)))
    assert plain == {"postmortem": f"https://closeloop.test/postmortems/{pid}"}
    other = await http.get(sent["postmortem"].removeprefix("https://closeloop.test"), headers=as_("bob@example.com"))
    assert other.status_code == 403


async def test_the_editor_starts_from_the_collected_timeline(site: tuple[App, LifespanClient]) -> None:
    from datetime import UTC, datetime

    app, http = site
    t0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    handle = await app.resolve(incident("INC-TL", started_at=t0, detected_at=t0.replace(minute=4),
                                        mitigated_at=t0.replace(minute=31), resolved_at=t0.replace(minute=40)))
    state = await app.wait_for(handle, lambda s: s.stage == Stage.drafting and len(s.timeline) >= 3)
    page = (await http.get(f"{pm_path(handle.id)}/draft", headers=as_("alice@example.com"))).text
    collected = sorted(state.timeline, key=lambda e: e.at)
    for n, event in enumerate(collected):
        assert f'name="tl_{n}_at" type="datetime-local" value="{event.at:%Y-%m-%dT%H:%M}"' in page
        assert f'name="tl_{n}_kind" value="{event.kind}"' in page
    # submitted as it is, the edited timeline is the collected one, and the document's
    token = await csrf_of(http, f"{pm_path(handle.id)}/draft", "alice@example.com")
    form = dict(re.findall(r'name="(tl_\d+_(?:at|kind|text))"[^>]*value="([^"]*)"', page))
    assert (await http.post(f"{pm_path(handle.id)}/draft", headers=as_("alice@example.com"),
                            data={**form, "csrf_token": token, "summary": "Checkout failed."})).status_code == 303
    state = await app.wait_stage(handle, Stage.in_review)
    assert [(e.at, e.kind) for e in state.draft.timeline] == [(e.at, e.kind) for e in collected]


async def test_the_policys_quality_checks_block_or_warn_and_reviewers_see_them(
        site: tuple[App, LifespanClient]) -> None:
    app, http = site
    handle = await app.resolve(incident("INC-QUALITY"))
    await app.wait_stage(handle, Stage.drafting)
    path = pm_path(handle.id)
    token = await csrf_of(http, f"{path}/draft", "alice@example.com")
    form = {"csrf_token": token, "summary": "Checkout failed because bob forgot to run the linter.",
            "item_0_title": "Improve monitoring", "item_0_owner": "erin"}
    refused = await http.post(f"{path}/draft", data=form, headers=as_("alice@example.com"))
    # measurable blocks by default ([policy.quality] block): shown next to the item's "done when"; specific warns
    assert refused.status_code == 422
    assert re.search(r'id="e-item_0_done_when"[^>]*>[^<]*has no done_when', refused.text)
    assert 'id="e-item_0_title"' not in refused.text
    assert (await handle.query(PostmortemWorkflow.state)).drafts_submitted == 0
    done = await http.post(f"{path}/draft", headers=as_("alice@example.com"),
                           data={**form, "item_0_done_when": "checkout 5xx over 2% pages on-call within 5 minutes"})
    assert done.status_code == 303
    await app.wait_stage(handle, Stage.in_review)
    page = (await http.get(path, headers=as_("bob@example.com"))).text
    assert "For the reviewers: quality checks" in page
    assert "Improve monitoring" in page and "is a wish, not a change" in page  # a warning, not a block
    assert "names a person as the cause" in page or "forgot to" in page  # a blameless hint


MARKDOWN_DRAFT = """# Postmortem draft: Checkout returns 500s

## Summary

Checkout failed for 40 minutes after a config push.

## Root cause

A config push with pool_size=0.

## Action items

| Title | Owner | Priority | Kind | Due | Done when |
|---|---|---|---|---|---|
| Reject pool_size=0 in the deploy validator | erin | P1 | prevent | 7d | a push with pool_size=0 fails |
"""


async def test_the_editor_imports_the_markdown_draft(site: tuple[App, LifespanClient]) -> None:
    app, http = site
    handle = await app.resolve(incident("INC-MD"))
    await app.wait_stage(handle, Stage.drafting)
    path = pm_path(handle.id)
    token = await csrf_of(http, f"{path}/draft", "alice@example.com")
    page = await http.post(f"{path}/draft/import", headers=as_("alice@example.com"),
                           data={"csrf_token": token, "markdown": MARKDOWN_DRAFT})
    assert page.status_code == 200 and "Imported from Markdown" in page.text
    assert ">Checkout failed for 40 minutes after a config push.</textarea>" in page.text
    assert 'value="Reject pool_size=0 in the deploy validator"' in page.text
    assert '<option value="erin" selected>' in page.text and 'value="a push with pool_size=0 fails"' in page.text
    bad = MARKDOWN_DRAFT.replace("| P1 |", "| P9 |")
    refused = await http.post(f"{path}/draft/import", headers=as_("alice@example.com"),
                              data={"csrf_token": token, "markdown": bad})
    assert refused.status_code == 422
    assert re.search(r'id="import-error"[^>]*>line 15: [^<]*P9', refused.text), refused.text[-2000:]
    assert (await handle.query(PostmortemWorkflow.state)).drafts_submitted == 0  # importing submits nothing


async def test_related_incidents_show_earlier_postmortems_and_how_their_items_went(
        site: tuple[App, LifespanClient]) -> None:
    from datetime import UTC, datetime, timedelta

    from closeloop.models import ActionItem, ItemStatus, Verdict

    app, http = site
    earlier = incident("INC-EARLIER", title="Checkout pool exhausted",
                       resolved_at=datetime.now(UTC) - timedelta(days=40))
    other = incident("INC-OTHER", title="Search slow", services=["search"],
                     resolved_at=datetime.now(UTC) - timedelta(days=30))
    for inc in (earlier, other):  # earlier lifecycles, as their activities recorded them
        app.store.records.upsert_postmortem(inc.workflow_id, inc, owner="alice", stage="closed", stalled=False,
                                           stage_due_at=None)
    app.store.records.upsert_action_item(ActionItem(
        id=f"{earlier.workflow_id}/item-1", postmortem_id=earlier.workflow_id, title="Cap retries at 3", owner="erin",
        due_at=datetime.now(UTC) - timedelta(days=20), status=ItemStatus.done, verdict=Verdict.ineffective))
    handle = await app.resolve(incident("INC-NOW", title="Checkout returns 500s"))
    await app.wait_stage(handle, Stage.drafting)
    for page in (pm_path(handle.id), f"{pm_path(handle.id)}/draft"):
        html = (await http.get(page, headers=as_("alice@example.com"))).text
        section = html[html.index('id="related-h"'):]
        assert "Checkout pool exhausted" in section and "Cap retries at 3: done, did not work" in section
        assert "Search slow" not in section  # another service, another kind
