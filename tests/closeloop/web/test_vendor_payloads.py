"""The vendors' own payloads (tests/payloads/, sources in its README), as they send them: every documented
incident.io shape, severities through each source's map (an unmapped name flagged on the lifecycle, never
silently the default), GitHub's form encoding, and per-route body limits from the vendors' documented maxima."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from temporalio.testing import WorkflowEnvironment

from closeloop.config import ConfigError
from closeloop.integrations.incidentio.webhook import IncidentioWebhook, incidentio_incident
from closeloop.integrations.pagerduty.webhook import pagerduty_severity
from closeloop.integrations.registry import webhooks
from closeloop.models import Link
from tests.closeloop.cli.test_cli_errors import invoke, one_line_error
from tests.closeloop.web.conftest import ALL_SECRETS, Web, make_web, secrets_of, sign
from tests.temporal_env import App, make_config, running_app

PAYLOADS = Path(__file__).resolve().parents[2] / "payloads"
IIO_ID = "01FDAG4SAP5TYPT98WGR2N7W91"
IIO_WID = f"postmortem/incidentio/{IIO_ID}"
GH_SECRET = "gh-hook-secret-0123456789"


def vendor(path: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PAYLOADS / path).read_text())
    return data


def iio(event_type: str) -> dict[str, Any]:
    return vendor(f"incidentio/{event_type.replace('.', '__')}.json")


PUBLIC = ["public_incident.incident_created_v2", "public_incident.incident_updated_v2",
          "public_incident.incident_status_updated_v2"]


# --------------------------------------------------------------------------- incident.io


@pytest.mark.parametrize("event_type", PUBLIC[:2])
async def test_incidentio_created_and_updated_carry_the_incident_directly(web: Web, event_type: str) -> None:
    """The documented examples are in triage: understood, and not a lifecycle by default (was 422 `missing
    field ....incident`, so incident.io retried for 24 h and disabled the endpoint)."""
    r = await web.incidentio(iio(event_type))
    assert r.status_code == 202, r.text
    assert r.json() == {"ignored": event_type, "status": "triage"}
    assert web.app.handles == []


async def test_incidentio_private_incident_is_ignored_with_a_reason(web: Web) -> None:
    r = await web.incidentio(iio("private_incident.incident_updated_v2"))
    assert r.status_code == 202, r.text
    assert r.json()["ignored"] == "private_incident.incident_updated_v2"
    assert "only their id" in r.json()["reason"]
    assert web.app.handles == []


async def test_incidentio_every_documented_shape_starts_the_lifecycle_on_a_configured_category(
        time_env: WorkflowEnvironment, tmp_path: Path) -> None:
    extra = '\n[webhooks.incidentio]\nstart_on = ["triage"]\nseverities = { minor = "SEV4" }\n'
    async with running_app(time_env, tmp_path, extra=extra) as app, make_web(app) as http:
        web = Web(http=http, app=app)
        answers = [await web.incidentio(iio(event_type)) for event_type in PUBLIC]
        assert [r.status_code for r in answers] == [202, 202, 202], [r.text for r in answers]
        assert [r.json() for r in answers] == [{"workflow_id": IIO_WID, "new": True},
                                               {"workflow_id": IIO_WID, "new": False},
                                               {"workflow_id": IIO_WID, "new": False}]
        plan = (await web.state(IIO_WID)).plan
        assert plan.incident.title == "Our database is sad"
        assert plan.incident.severity == "SEV4"  # "Minor", through the config's map (case-insensitive)
        assert plan.incident.unmapped_severity is None
        assert plan.policy.postmortem_required is False  # team.toml's [severity.SEV4]
        assert plan.incident.links == [Link(title="incident.io INC-123", url="https://app.incident.io/incidents/123")]


def test_incidentio_default_severity_map() -> None:
    incident = iio("public_incident.incident_status_updated_v2")["public_incident.incident_status_updated_v2"]
    parsed = incidentio_incident(incident["incident"])
    assert parsed.severity == "SEV3"  # "Minor"; was kept verbatim, so no [severity.*] policy ever applied
    assert parsed.unmapped_severity is None
    critical = copy.deepcopy(incident["incident"])
    critical["severity"]["name"] = "Critical"  # incident.io's other default severity names
    assert incidentio_incident(critical).severity == "SEV1"
    critical["severity"]["name"] = "Sev 0 (all hands)"  # an organisation's own name, unmapped
    flagged = incidentio_incident(critical)
    assert (flagged.severity, flagged.unmapped_severity) == ("SEV3", "Sev 0 (all hands)")


# --------------------------------------------------------------------------- PagerDuty


def pd_resolved(priority: str) -> dict[str, Any]:
    """PagerDuty's documented envelope, as it comes when that incident is resolved (event_type and status),
    in an account whose priorities have their own names."""
    envelope = vendor("pagerduty/incident.priority_updated.json")
    envelope["event"]["event_type"] = "incident.resolved"
    envelope["event"]["data"]["status"] = "resolved"
    envelope["event"]["data"]["priority"]["summary"] = priority
    return envelope


def test_pagerduty_documented_priority_and_urgency() -> None:
    data = vendor("pagerduty/incident.priority_updated.json")["event"]["data"]
    assert pagerduty_severity(data) == ("SEV1", None)  # P1
    assert pagerduty_severity({**data, "priority": None}) == ("SEV2", None)  # urgency high


async def test_pagerduty_unmapped_priority_is_flagged_on_the_lifecycle(web: Web) -> None:
    r = await web.pagerduty(pd_resolved("Critical"))
    assert r.status_code == 202, r.text
    incident = (await web.state("postmortem/pagerduty/PGR0VU2")).plan.incident
    assert incident.severity == "SEV2"  # not mapped: the urgency (high) decides, and the lifecycle says so
    assert incident.unmapped_severity == "Critical"
    notes = [e.text for e in web.app.store.records.timeline(incident, notes_only=True)]
    assert notes == ["severity 'Critical' from pagerduty is not mapped ([webhooks.pagerduty] severities): the "
                     "incident was given SEV2 and its policy"]


async def test_pagerduty_own_priority_names_map_through_the_config(time_env: WorkflowEnvironment,
                                                                  tmp_path: Path) -> None:
    extra = '\n[webhooks.pagerduty.severities]\nCritical = "SEV1"\n'
    async with running_app(time_env, tmp_path, extra=extra) as app, make_web(app) as http:
        web = Web(http=http, app=app)
        r = await web.pagerduty(pd_resolved("Critical"))
        assert r.status_code == 202, r.text
        incident = (await web.state("postmortem/pagerduty/PGR0VU2")).plan.incident
        assert (incident.severity, incident.unmapped_severity) == ("SEV1", None)
        assert web.app.store.records.timeline(incident, notes_only=True) == []


# --------------------------------------------------------------------------- config check


@pytest.mark.parametrize(("extra", "fragment"), [
    ('[webhooks.incidentio.severities]\nCritical = "SEV9"\n',
     "webhooks.incidentio.severities.Critical: unknown severity 'SEV9'"),
    ('[webhooks.pagerduty]\nurgencies = { high = "urgent" }\n',
     "webhooks.pagerduty.urgencies.high: unknown severity 'urgent'"),
    ('[webhooks.incidentio]\nstart_on = ["resolved"]\n', "webhooks.incidentio.start_on"),
    ('[webhooks.jira]\nseverities = {}\n', "webhooks.jira: no integration has [webhooks.jira] settings"),
])
def test_config_check_refuses_a_bad_webhooks_section(tmp_path: Path, extra: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match="webhooks"):
        make_config(tmp_path, extra="\n" + extra)
    one_line_error(invoke(["config", "check"], tmp_path / "closeloop.toml"), 2, fragment)


def test_webhooks_sections_reach_the_webhooks(tmp_path: Path) -> None:
    config = make_config(tmp_path, extra='\n[webhooks.incidentio]\nstart_on = ["Learning"]\n'
                                         '[webhooks.incidentio.severities]\n"SEV 0" = "SEV1"\n')
    [hook] = [w for w in webhooks(config).incident if isinstance(w, IncidentioWebhook)]
    assert hook.start_on == {"learning"}
    assert hook.severities is not None
    assert hook.severities.resolve("sev 0") == ("SEV1", None)
    assert hook.severities.resolve("Major") == ("SEV2", None)  # the defaults stay
    assert invoke(["config", "check"], tmp_path / "closeloop.toml").exit_code == 0


# --------------------------------------------------------------------------- GitHub form encoding, body limits


def gh_headers(body: bytes, content_type: str = "application/json", delivery: str = "d-1") -> dict[str, str]:
    return {"Content-Type": content_type, "X-GitHub-Event": "issues", "X-GitHub-Delivery": delivery,
            "X-Hub-Signature-256": "sha256=" + hmac.new(GH_SECRET.encode(), body, hashlib.sha256).hexdigest()}


GH_SECRETS = secrets_of(github_webhook_secrets=(GH_SECRET,))
UNTRACKED = {"ignored": "Codertocat/Hello-World#1 is not the ticket of a closeloop action item"}


# --------------------------------------------------------------------------- Alertmanager


async def test_alertmanager_recorded_deliveries(web: Web) -> None:
    """Deliveries recorded from a real Alertmanager (0.25.0, Debian's prometheus-alertmanager) on loopback,
    byte for byte: the firing one starts nothing, the resolved one starts the lifecycle of the group."""
    firing = (PAYLOADS / "alertmanager/firing.json").read_bytes()
    resolved = (PAYLOADS / "alertmanager/resolved.json").read_bytes()
    r = await web.alertmanager(None, body=firing)
    assert r.status_code == 202 and "workflow_id" not in r.json(), r.text
    r = await web.alertmanager(None, body=resolved)
    assert r.status_code == 202, r.text
    group_key = json.loads(resolved)["groupKey"]
    external_id = hashlib.sha256(group_key.encode()).hexdigest()[:16]
    assert r.json() == {"workflow_id": f"postmortem/alertmanager/{external_id}", "new": True}
    incident = (await web.state(r.json()["workflow_id"])).plan.incident
    assert (incident.title, incident.severity, incident.services) == ("Checkout 5xx above 5%", "SEV1", ["checkout"])
    assert incident.dedup_key == "HighErrorRate"
    assert incident.resolved_at is not None and incident.resolved_at.isoformat() == "2026-12-01T05:18:32+00:00"


async def test_opsgenie_documented_create_and_close(web: Web) -> None:
    """Opsgenie's own "alert action data" examples (tests/payloads/opsgenie/): Create starts nothing, Close
    starts the alert's lifecycle. The Close example carries no priority: the default severity, nothing flagged."""
    create = (PAYLOADS / "opsgenie/create.json").read_bytes()
    r = await web.opsgenie(None, body=create)
    assert (r.status_code, r.json()) == (202, {"ignored": "Create"})
    r = await web.opsgenie(None, body=(PAYLOADS / "opsgenie/close.json").read_bytes())
    assert r.status_code == 202, r.text
    assert r.json() == {"workflow_id": "postmortem/opsgenie/052652ac-5d1c-464a-812a-7dd18bbfba8c", "new": True}
    incident = (await web.state(r.json()["workflow_id"])).plan.incident
    assert (incident.title, incident.severity, incident.unmapped_severity) == ("test alert", "SEV3", None)
    assert (incident.services, incident.dedup_key) == ([], "aliastest")
    assert incident.started_at is not None and incident.started_at.isoformat() == "2015-01-05T10:03:11.104000+00:00"


async def test_opsgenie_priority_that_is_not_a_name_is_flagged(web: Web) -> None:
    """A delivery kept by another project shows `"priority": 3`; a number is not one of the documented names, so
    it is flagged on the lifecycle rather than silently given the default."""
    close = vendor("opsgenie/close.json")
    close["alert"]["priority"] = 3  # changed from the example: the example has no priority
    r = await web.opsgenie(close)
    assert r.status_code == 202, r.text
    incident = (await web.state(r.json()["workflow_id"])).plan.incident
    assert (incident.severity, incident.unmapped_severity) == ("SEV3", "3")


async def test_github_form_encoded_delivery_is_read(app: App) -> None:
    example = vendor("github/issues.reopened.json")
    form = urlencode({"payload": json.dumps(example)}).encode()
    async with make_web(app, secrets=GH_SECRETS) as http:
        r = await http.post("/webhooks/github", content=form,
                            headers=gh_headers(form, "application/x-www-form-urlencoded"))
        assert r.status_code == 202, r.text  # was 400 "malformed JSON"
        assert r.json() == UNTRACKED  # the key came from the form's payload
        for bad in [b"payload=%7Bnot+json", b"other=1", b"payload=1&payload=2", b"\xff"]:
            r = await http.post("/webhooks/github", content=bad,
                                headers=gh_headers(bad, "application/x-www-form-urlencoded", "d-bad"))
            assert r.status_code == 400, (bad, r.text)
            assert set(r.json()) == {"error"}


async def test_github_issue_body_at_its_documented_maximum_is_accepted(app: App) -> None:
    """65,536 characters, GitHub's limit for an issue body, as 4-byte emoji: over the API's 256 KiB."""
    example = vendor("github/issues.reopened.json")
    example["issue"]["body"] = "\N{FIRE}" * 65536
    body = json.dumps(example, ensure_ascii=False).encode()
    assert len(body) > app.config.web.max_body_bytes
    async with make_web(app, secrets=GH_SECRETS) as http:
        r = await http.post("/webhooks/github", content=body, headers=gh_headers(body))
        assert r.status_code == 202, r.text  # was 413
        assert r.json() == UNTRACKED


@pytest.mark.parametrize(("path", "limit"), [("incidentio", 5 * 1024 * 1024), ("pagerduty", 256 * 1024),
                                             ("opsgenie", 1024 * 1024), ("alertmanager", 10 * 1024 * 1024),
                                             ("jira", 10 * 1024 * 1024), ("github", 25 * 1024 * 1024),
                                             ("slack/interactions", 1024 * 1024)])
async def test_each_webhook_has_its_vendors_limit(app: App, path: str, limit: int) -> None:
    async with make_web(app, secrets=ALL_SECRETS, max_body_bytes=100) as http:
        r = await http.post(f"/webhooks/{path}", content=b" " * (limit + 1),
                            headers={"Content-Type": "application/json", "X-PagerDuty-Signature": sign(b"", "x")})
        assert r.status_code == 413, r.text
        assert r.json() == {"error": f"body too large: the limit is {limit} bytes"}
        # [web] max_body_bytes is the API's limit only
        r = await http.post(f"/webhooks/{path}", content=b" " * 1000, headers={"Content-Type": "application/json"})
        assert r.status_code != 413, r.text
