"""GET /healthz and the generic incident API (bearer tokens, idempotent starts, JSON errors)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from closeloop.client import Closeloop
from closeloop.secrets import load_secrets
from closeloop.web.app import create_app
from tests.closeloop.web.conftest import TOKENS, LifespanClient, Web, make_web, secrets_of
from tests.temporal_env import App, eventually


def incident_body(external_id: str = "INC-7", **extra: object) -> dict[str, object]:
    return {"external_id": external_id, "title": "Checkout returns 500s", "severity": "SEV2",
            "services": ["checkout"], "commander": "alice", **extra}


async def test_healthz_needs_no_auth(web: Web) -> None:
    r = await web.http.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"ok": True}


async def test_no_token_401(web: Web) -> None:
    r = await web.api("/api/incidents", incident_body(), token=None)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert "missing bearer token" in r.json()["error"]
    r = await web.post("/api/incidents", json=incident_body(), headers={"Authorization": f"Basic {TOKENS[0]}"})
    assert r.status_code == 401
    assert web.app.handles == []


async def test_wrong_token_401(web: Web) -> None:
    for token in ["nope", TOKENS[0] + "x", TOKENS[0][:-1], "ü-non-ascii"]:
        headers = {"Authorization": f"Bearer {token}".encode()}
        r = await web.post("/api/incidents", json=incident_body(), headers=headers)
        assert r.status_code == 401, token
        assert r.json() == {"error": "invalid bearer token"}
    assert web.app.handles == []


async def test_no_tokens_configured_401_for_everyone(app: App) -> None:
    async with make_web(app, secrets=secrets_of(pagerduty_secrets=("s",))) as http:
        r = await http.post("/api/incidents", json=incident_body(), headers={"Authorization": "Bearer "})
        assert r.status_code == 401
        assert "CLOSELOOP_API_TOKENS" in r.json()["error"]
        r = await http.post("/api/incidents", json=incident_body(), headers={"Authorization": "Bearer anything"})
        assert r.status_code == 401
        assert "no API tokens are configured" in r.json()["error"]


async def test_good_token_starts_the_lifecycle(web: Web) -> None:
    r = await web.api("/api/incidents", incident_body("INC-7"), token=TOKENS[1])
    assert r.status_code == 202, r.text
    assert r.json() == {"workflow_id": "postmortem/api/INC-7", "new": True}
    inc = (await web.state("postmortem/api/INC-7")).plan.incident
    assert inc.source == "api"  # the default
    assert inc.title == "Checkout returns 500s"
    assert inc.severity == "SEV2"
    assert inc.resolved_at is not None  # defaulted to now


async def test_duplicate_is_not_new(web: Web) -> None:
    first = await web.api("/api/incidents", incident_body("INC-8"))
    second = await web.api("/api/incidents", incident_body("INC-8", title="Same incident, reworded"))
    assert first.json() == {"workflow_id": "postmortem/api/INC-8", "new": True}
    assert second.status_code == 202
    assert second.json() == {"workflow_id": "postmortem/api/INC-8", "new": False}
    assert (await web.state("postmortem/api/INC-8")).plan.incident.title == "Checkout returns 500s"


async def test_invalid_incident_422_and_malformed_400(web: Web) -> None:
    r = await web.api("/api/incidents", {"title": "no id"})
    assert r.status_code == 422
    assert "external_id" in r.json()["error"]
    r = await web.api("/api/incidents", incident_body("has space"))
    assert r.status_code == 422
    assert "external_id" in r.json()["error"]
    r = await web.api("/api/incidents", incident_body(unknown_field=1))
    assert r.status_code == 422
    r = await web.post("/api/incidents", content=b"{nope", headers={"Authorization": f"Bearer {TOKENS[0]}"})
    assert r.status_code == 400
    assert r.json()["error"].startswith("malformed JSON")
    r = await web.api("/api/incidents", ["a list"])
    assert r.status_code == 400
    assert web.app.handles == []


async def test_resolve_endpoint(web: Web) -> None:
    url = "/api/incidents/api/INC-9/resolve"
    r = await web.api(url, token="wrong")
    assert r.status_code == 401
    r = await web.api(url)  # no body, unknown incident: the title is needed
    assert r.status_code == 422
    assert "title is required" in r.json()["error"]
    r = await web.api(url, {"title": "Search is slow", "services": ["search"], "severity": "SEV3"})
    assert r.status_code == 202, r.text
    assert r.json() == {"workflow_id": "postmortem/api/INC-9", "new": True}
    inc = (await web.state("postmortem/api/INC-9")).plan.incident
    assert (inc.source, inc.external_id, inc.title, inc.services) == ("api", "INC-9", "Search is slow", ["search"])
    r = await web.api(url)  # known now: no title needed, nothing new
    assert r.status_code == 202
    assert r.json() == {"workflow_id": "postmortem/api/INC-9", "new": False}
    r = await web.api(url, {"title": "x", "external_id": "INC-10"})
    assert r.status_code == 422
    assert "differs from the path" in r.json()["error"]
    r = await web.api("/api/incidents/Bad Source/INC-1/resolve", {"title": "x"})
    assert r.status_code == 422
    assert len(web.app.handles) == 1


async def test_oversized_api_body_413(app: App) -> None:
    async with make_web(app, max_body_bytes=100) as http:
        r = await http.post("/api/incidents", json=incident_body(title="x" * 200),
                            headers={"Authorization": f"Bearer {TOKENS[0]}"})
        assert r.status_code == 413


async def test_temporal_unreachable_still_202_and_forwarded_when_it_is_back(app: App) -> None:
    """While Temporal cannot be reached every incident is still accepted (202, new or duplicate, committed to
    the inbox); the forwarder keeps trying, and once Temporal answers every lifecycle starts, once."""
    calls, down = 0, True

    async def factory() -> object:
        nonlocal calls
        calls += 1
        if down:
            raise RuntimeError("Failed client connect: connection refused")
        return app.client

    web_app = create_app(app.config, factory, secrets=secrets_of(api_tokens=TOKENS), store=app.store)
    async with LifespanClient(web_app) as http:
        headers = {"Authorization": f"Bearer {TOKENS[0]}"}
        answers = [await http.post("/api/incidents", json=incident_body(f"INC-DOWN-{n}"), headers=headers)
                   for n in (1, 2, 3, 1)]
        assert [r.status_code for r in answers] == [202] * 4, answers[0].text
        assert [r.json()["new"] for r in answers] == [True, True, True, False]
        r = await http.post("/api/incidents/api/INC-DOWN-2/resolve", headers=headers)  # no title: known
        assert (r.status_code, r.json()) == (202, {"workflow_id": "postmortem/api/INC-DOWN-2", "new": False})
        for n in (1, 2, 3):
            app.handles.append(app.client.get_workflow_handle(f"postmortem/api/INC-DOWN-{n}"))
        await eventually(lambda: calls >= 2)  # the forwarder tried, and backs off
        entry = app.store.inbox.entry("api", "INC-DOWN-1")
        assert entry is not None and entry.state == "pending"
        assert entry.last_error is not None and "Temporal is unreachable" in entry.last_error
        assert not await Closeloop(app.client, app.task_queue).exists("postmortem/api/INC-DOWN-1")

        down = False  # Temporal is back: the forwarder's next try starts every lifecycle
        await eventually(lambda: app.store.inbox.counts() == {"forwarded": 3}, timeout=30)
        for n in (1, 2, 3):
            state = await app.wait_for(app.client.get_workflow_handle(f"postmortem/api/INC-DOWN-{n}"),
                                       lambda s: s is not None)
            assert state.plan.incident.external_id == f"INC-DOWN-{n}"


async def test_concurrent_duplicates_one_new_one_lifecycle(web: Web) -> None:
    """Twenty deliveries of one incident at once: exactly one is answered new, and one lifecycle starts."""
    answers = await asyncio.gather(*(web.api("/api/incidents", incident_body("INC-SAME")) for _ in range(20)))
    assert [r.status_code for r in answers] == [202] * 20
    assert sorted(r.json()["new"] for r in answers) == [False] * 19 + [True]
    assert {r.json()["workflow_id"] for r in answers} == {"postmortem/api/INC-SAME"}
    await web.state("postmortem/api/INC-SAME")
    await eventually(lambda: web.app.store.inbox.counts() == {"forwarded": 1})


async def test_deliveries_arriving_together_are_committed_in_groups(web: Web) -> None:
    """Group commit: 40 incidents, each delivered twice, all at once. Every request is answered only after its
    own incident is committed (the inbox holds it when the answer comes), exactly one of each pair is new, and
    the 80 deliveries took far fewer transactions than 80."""
    intake = web.http.app.state.intake  # type: ignore[attr-defined]
    before = intake.groups
    ids = [f"INC-GROUP-{n}" for n in range(40)]

    async def deliver(external_id: str) -> tuple[str, bool]:
        r = await web.api("/api/incidents", incident_body(external_id))
        assert r.status_code == 202, r.text
        assert web.app.store.inbox.entry("api", external_id) is not None  # committed before the answer
        return external_id, r.json()["new"]

    answers = await asyncio.gather(*(deliver(i) for i in ids + ids[::-1]))
    new = {i for i, is_new in answers if is_new}
    assert new == set(ids) and len([a for a in answers if a[1]]) == 40
    assert 1 <= intake.groups - before < 40, intake.groups - before
    await eventually(lambda: web.app.store.inbox.counts() == {"forwarded": 40}, timeout=60)


async def test_client_is_connected_once(app: App) -> None:
    calls = 0

    async def factory() -> object:
        nonlocal calls
        calls += 1
        return app.client

    web_app = create_app(app.config, factory, secrets=secrets_of(api_tokens=TOKENS), store=app.store)
    async with LifespanClient(web_app) as http:
        assert calls == 0  # lazily
        for n in range(3):
            r = await http.post("/api/incidents", json=incident_body(f"INC-ONCE-{n}"),
                                headers={"Authorization": f"Bearer {TOKENS[0]}"})
            assert r.status_code == 202
            app.handles.append(app.client.get_workflow_handle(r.json()["workflow_id"]))
        await eventually(lambda: app.store.inbox.counts() == {"forwarded": 3})
    assert calls == 1


async def test_no_store_no_start_503(app: App) -> None:
    """An app built without a store cannot accept an incident durably: 503 with a reason, nothing started."""
    async def factory() -> object:
        return app.client

    web_app = create_app(app.config, factory, secrets=secrets_of(api_tokens=TOKENS))
    async with LifespanClient(web_app) as http:
        r = await http.post("/api/incidents", json=incident_body(), headers={"Authorization": f"Bearer {TOKENS[0]}"})
    assert r.status_code == 503
    assert r.json() == {"error": "this server has no store configured"}


def test_secrets_come_from_the_environment() -> None:
    s = load_secrets({"CLOSELOOP_API_TOKENS": " tok1, tok2 ,,tok1", "CLOSELOOP_PAGERDUTY_SECRETS": "pdsec"})
    assert s.values("CLOSELOOP_API_TOKENS") == ("tok1", "tok2")
    assert s.values("CLOSELOOP_PAGERDUTY_SECRETS") == ("pdsec",)
    assert load_secrets({}).values("CLOSELOOP_API_TOKENS") == ()
    assert "tok1" not in repr(s) and "pdsec" not in repr(s)
    assert repr(s) == "Secrets(CLOSELOOP_API_TOKENS=2, CLOSELOOP_PAGERDUTY_SECRETS=1)"


def test_web_settings_in_config(tmp_path) -> None:
    from closeloop.config import ConfigError, load_config

    path = tmp_path / "c.toml"
    path.write_text("[web]\nport = 9000\nhost = '0.0.0.0'\n")
    cfg = load_config(path, env={})
    assert (cfg.web.host, cfg.web.port, cfg.web.max_body_bytes) == ("0.0.0.0", 9000, 256 * 1024)
    path.write_text("[web]\napi_tokens = ['x']\n")  # secrets never come from the file
    with pytest.raises(ConfigError, match="api_tokens"):
        load_config(path, env={})


def test_inbox_forward_in_setting(tmp_path) -> None:
    """`[inbox] forward_in`: the web app by default, or the worker; nothing else."""
    from closeloop.config import ConfigError, load_config

    path = tmp_path / "c.toml"
    path.write_text("")
    assert load_config(path, env={}).inbox.forward_in == "web"
    path.write_text("[inbox]\nforward_in = 'worker'\n")
    assert load_config(path, env={}).inbox.forward_in == "worker"
    path.write_text("[inbox]\nforward_in = 'both'\n")
    with pytest.raises(ConfigError, match="forward_in"):
        load_config(path, env={})


async def test_a_web_app_that_does_not_forward_still_answers_from_the_inbox(app: App) -> None:
    """With `forward_in = "worker"` the app runs no forwarder: it commits, answers new or duplicate, and starts
    nothing itself."""
    config = app.config.model_copy(update={"inbox": app.config.inbox.model_copy(update={"forward_in": "worker"})})

    async def factory() -> Any:
        return app.client

    web_app = create_app(config, factory, secrets=secrets_of(api_tokens=TOKENS), store=app.store)
    async with LifespanClient(web_app) as http:
        headers = {"Authorization": f"Bearer {TOKENS[0]}"}
        first = await http.post("/api/incidents", json=incident_body("INC-NOFW"), headers=headers)
        again = await http.post("/api/incidents", json=incident_body("INC-NOFW"), headers=headers)
        assert [(r.status_code, r.json()["new"]) for r in (first, again)] == [(202, True), (202, False)]
        assert web_app.state.forwarder._task is None  # never started
    assert app.store.inbox.counts() == {"pending": 1}


def test_serve_command_is_registered() -> None:
    from click.testing import CliRunner

    from closeloop.cli.main import cli

    result = CliRunner().invoke(cli, ["serve", "--help"])
    assert result.exit_code == 0, result.output
    assert "/webhooks/pagerduty" in result.output


# --------------------------------------------------------------------------- sources and ids (issue 9)

NAMED = "tok-named-0123456789"


def named_sources_web(app: App):  # type: ignore[no-untyped-def]
    from tests.closeloop.web.conftest import PD_SECRETS

    return make_web(app, secrets=secrets_of(api_tokens=(TOKENS[0], f"{NAMED}:pagerduty+opsgenie"),
                                            pagerduty_secrets=PD_SECRETS))


async def test_a_plain_token_cannot_claim_a_vendors_incident_first(web: Web) -> None:
    """Claiming PagerDuty's id first would make the real signed webhook answer {"new": false}: no postmortem."""
    from tests.closeloop.web.conftest import pd_envelope

    r = await web.api("/api/incidents", incident_body("PGR0VU2", source="pagerduty"))
    assert r.status_code == 403, r.text
    assert "may not act on source 'pagerduty'" in r.json()["error"]
    assert TOKENS[0] not in r.text
    real = await web.pagerduty(pd_envelope("PGR0VU2"))
    assert real.status_code == 202, real.text
    assert real.json() == {"workflow_id": "postmortem/pagerduty/PGR0VU2", "new": True}
    for url in ["/api/incidents/pagerduty/PGR0VU2/resolve", "/api/incidents/pagerduty/PGR0VU2/notes"]:
        r = await web.api(url, {"title": "x"} if url.endswith("resolve") else {"text": "claimed"})
        assert r.status_code == 403 and "may not act on source 'pagerduty'" in r.json()["error"], (url, r.text)
    r = await web.api("/api/incidents", incident_body("INC-OWN", source="api"))
    assert r.status_code == 202 and r.json()["workflow_id"] == "postmortem/api/INC-OWN"


async def test_a_token_with_named_sources_may_use_them_and_no_others(app: App) -> None:
    async with named_sources_web(app) as http:
        headers = {"Authorization": f"Bearer {NAMED}"}
        r = await http.post("/api/incidents", json=incident_body("PNAMED1", source="pagerduty"), headers=headers)
        assert r.status_code == 202, r.text
        app.handles.append(app.client.get_workflow_handle(r.json()["workflow_id"]))
        assert r.json() == {"workflow_id": "postmortem/pagerduty/PNAMED1", "new": True}
        r = await http.post("/api/incidents", json=incident_body("INC-N1"), headers=headers)  # api: always
        assert r.status_code == 202, r.text
        app.handles.append(app.client.get_workflow_handle(r.json()["workflow_id"]))
        r = await http.post("/api/incidents", json=incident_body("01X", source="incidentio"), headers=headers)
        assert r.status_code == 403 and "'api', 'opsgenie', 'pagerduty'" in r.json()["error"], r.text
        plain = {"Authorization": f"Bearer {TOKENS[0]}"}
        r = await http.post("/api/incidents", json=incident_body("PNAMED2", source="pagerduty"), headers=plain)
        assert r.status_code == 403, r.text
        r = await http.post("/api/incidents", json=incident_body(), headers={"Authorization": "Bearer tok-named"})
        assert r.status_code == 401  # the sources are no part of the secret


@pytest.mark.parametrize("bad", ["..", ".", ".hidden", "x?admin=1#", "a%2Fb", "a#b", "tab\there", "nul\x00",
                                 'x"OR"project!=CL"OR"x', "a*", "é", "x" * 201])
async def test_unsafe_external_ids_are_refused_422(web: Web, bad: str) -> None:
    r = await web.api("/api/incidents", incident_body(bad))
    assert r.status_code == 422, r.text
    assert "external_id" in r.json()["error"]
    if len(bad) <= 200:
        assert "external_id must be 1 to 200 of A-Z a-z 0-9 . _ : @ + -" in r.json()["error"]
    assert web.app.handles == []


@pytest.mark.parametrize("path_id", ["..%2F..", "x%3Fadmin%3D1%23", "%2E%2E", "a%25b"])
async def test_unsafe_ids_in_the_path_are_refused_422(web: Web, path_id: str) -> None:
    for action, body in [("resolve", {"title": "x"}), ("notes", {"text": "x"})]:
        r = await web.api(f"/api/incidents/api/{path_id}/{action}", body)
        assert r.status_code in (404, 422), r.text  # 404: a router that splits %2F; never a lookup of the id
        assert "error" in r.json()
        if r.status_code == 422:
            assert "external_id must be" in r.json()["error"]
    assert web.app.handles == []


@pytest.mark.parametrize("real", ["PGR0VU2", "Q1R2ABC3DEF4GH", "01FDAG4SAP5TYPT98WGR2N7W91",
                                  "8418d193-2dab-4490-b331-8c02cdd196b7",
                                  "70413a06-38d6-4c85-92b8-5ebc900d42e2-1574787869094", "INC-42", "3b7a1c0e9f2d4a51",
                                  "1234", "team:checkout@eu+1", "x" * 200])
def test_real_vendor_ids_pass(real: str) -> None:
    from closeloop.ids import check_external_id
    from closeloop.models import Incident

    assert check_external_id(real) == real
    assert Incident(source="pagerduty", external_id=real, title="x").external_id == real


def test_api_tokens_with_named_sources() -> None:
    from closeloop.web.requests import ApiToken, api_tokens

    parsed = api_tokens(("plain", "named:pagerduty+opsgenie", "any:*", "not:Sources", "a:b:api"))
    assert parsed == (ApiToken("plain"), ApiToken("named", frozenset({"pagerduty", "opsgenie"})),
                      ApiToken("any", frozenset({"*"})), ApiToken("not:Sources"), ApiToken("a:b", frozenset({"api"})))
    assert parsed[1].may_use("api") and parsed[1].may_use("opsgenie") and not parsed[1].may_use("incidentio")
    assert parsed[2].may_use("incidentio") and not parsed[0].may_use("pagerduty")
    assert "named" not in repr(parsed[1]) and "plain" not in repr(parsed)
