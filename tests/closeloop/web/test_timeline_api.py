"""The timeline's web inputs: `POST /api/incidents/{source}/{external_id}/notes` (a note by hand, bearer
auth) and the alerts the Alertmanager webhook stores for the "alertmanager" timeline source."""

from __future__ import annotations

from datetime import UTC, datetime

from closeloop.integrations.alertmanager.timeline import AlertmanagerSource
from closeloop.integrations.local.timeline import NotesSource
from closeloop.models import Incident
from tests.closeloop.web.conftest import Web
from tests.closeloop.web.test_alertmanager import am_group, wid
from tests.temporal_env import incident

AT = "2026-11-02T10:20:00Z"


async def test_a_note_is_stored_once_for_a_known_incident(web: Web) -> None:
    inc = incident()
    web.app.store.records.record_incident(inc)
    url = f"/api/incidents/{inc.source}/{inc.external_id}/notes"
    r = await web.api(url, {"text": "  Rolled back deploy 4711 ", "at": AT, "author": "bob"})
    assert r.status_code == 201, r.text
    assert r.json() == {"incident": f"{inc.source}/{inc.external_id}", "added": True,
                        "at": "2026-11-02T10:20:00+00:00"}
    again = await web.api(url, {"text": "Rolled back deploy 4711", "at": AT, "author": "bob"})
    assert again.status_code == 200 and again.json()["added"] is False
    notes = NotesSource(web.app.store).fetch(inc)
    assert [(n.at, n.kind, n.text, n.actor, n.source) for n in notes] == [
        (datetime(2026, 11, 2, 10, 20, tzinfo=UTC), "note", "Rolled back deploy 4711", "bob", "notes")]


async def test_note_errors_are_json(web: Web) -> None:
    inc = incident()
    web.app.store.records.record_incident(inc)
    url = f"/api/incidents/{inc.source}/{inc.external_id}/notes"
    unknown = await web.api("/api/incidents/api/INC-nope/notes", {"text": "hello"})
    assert unknown.status_code == 404 and "INC-nope" in unknown.json()["error"]
    for body, fragment in [({"text": ""}, "text"), ({"text": "x", "at": "yesterday"}, "at"),
                           ({"text": "x", "at": 5}, "at"), ({"text": "x", "author": ""}, "author"),
                           ({"text": "x", "colour": "red"}, "colour"), ({"text": "x" * 5001}, "text")]:
        r = await web.api(url, body)
        assert r.status_code == 422 and fragment in r.json()["error"], (body, r.text)
    assert (await web.post(url, content=b"[1]", headers={"Authorization": "Bearer tok-first-0123456789"})
            ).status_code == 400
    denied = await web.api(url, {"text": "x"}, token="wrong")
    assert denied.status_code == 401 and denied.json()["error"] == "invalid bearer token"
    assert NotesSource(web.app.store).fetch(inc) == []


async def test_alertmanager_alerts_become_the_incidents_timeline(web: Web) -> None:
    r = await web.alertmanager(am_group())
    assert r.status_code == 202, r.text
    external_id = wid().rsplit("/", 1)[1]
    inc = Incident(source="alertmanager", external_id=external_id, title="x")
    events = AlertmanagerSource(web.app.store).fetch(inc)
    assert [(e.at.isoformat(), e.kind, e.text, e.key_moment) for e in sorted(events, key=lambda e: e.at)] == [
        ("2024-05-01T10:00:00+00:00", "alert", "Alert firing: HighErrorRate on web-2: Checkout error rate above 5%",
         True),
        ("2024-05-01T10:02:00+00:00", "alert", "Alert firing: HighErrorRate on web-1: Checkout error rate above 5%",
         False),
        ("2024-05-01T10:40:00+00:00", "alert_resolved",
         "Alert resolved: HighErrorRate on web-1: Checkout error rate above 5%", False),
        ("2024-05-01T10:45:30+00:00", "alert_resolved",
         "Alert resolved: HighErrorRate on web-2: Checkout error rate above 5%", False),
    ]
    assert all(e.source == "alertmanager" for e in events)
    # the same delivery again stores nothing twice; the group firing again (flapping) adds its new alert
    await web.alertmanager(am_group())
    refire = am_group(status="firing")
    refire["alerts"] = [{**refire["alerts"][0], "startsAt": "2024-05-01T12:00:00Z", "endsAt": "0001-01-01T00:00:00Z"}]
    assert (await web.alertmanager(refire)).status_code == 202
    again = AlertmanagerSource(web.app.store).fetch(inc)
    assert len(again) == 5 and max(e.at for e in again).hour == 12


async def test_a_firing_group_of_an_unknown_incident_stores_nothing(web: Web) -> None:
    r = await web.alertmanager(am_group(group_key="{}:{alertname=\"Other\"}", status="firing"))
    assert r.status_code == 202 and r.json() == {"ignored": "firing"}
    assert web.app.store.records.incident_id("alertmanager", wid("{}:{alertname=\"Other\"}").rsplit("/", 1)[1]) is None
