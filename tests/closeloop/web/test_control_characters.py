"""Control characters at the edge: an incident field with a NUL byte ("NUL\\u0000X") used to make the lifecycle
retry forever (SQLite: `ValueError: embedded null byte` preparing the draft; PostgreSQL: `DataError` recording
the incident). Text fields are cleaned at the edge (closeloop.models.Incident, which every source goes
through); an id with one is refused with a JSON reason."""

from __future__ import annotations

from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from closeloop.models import Stage
from closeloop.workflows.postmortem import PostmortemWorkflow
from tests.closeloop.web.conftest import Web, make_web
from tests.temporal_env import running_app


async def test_a_nul_byte_in_an_incident_field_is_cleaned_and_the_lifecycle_runs(
        time_env: WorkflowEnvironment, tmp_path: Path, db_url: str) -> None:
    async with running_app(time_env, tmp_path, db_url=db_url) as app, make_web(app) as http:
        web = Web(http=http, app=app)
        r = await web.api("/api/incidents", {
            "external_id": "INC-NUL", "title": "NUL\u0000X", "severity": "SEV2", "services": ["check\u0000out"],
            "commander": "alice", "links": [{"title": "dash\u0000board", "url": "https://grafana.example/d/1"}]})
        assert r.status_code == 202, r.text
        handle = app.client.get_workflow_handle_for(PostmortemWorkflow.run, r.json()["workflow_id"])
        state = await app.wait_for(handle, lambda s: s.stage == Stage.drafting, timeout=20)
        incident = state.plan.incident
        assert (incident.title, incident.services, incident.links[0].title) == ("NULX", ["checkout"], "dashboard")
        assert state.draft_ref and "NULX" in Path(state.draft_ref).read_text()
        row = app.store.records.get_postmortem(handle.id)
        assert row is not None


async def test_a_nul_byte_in_an_id_is_refused_with_a_reason(web: Web) -> None:
    r = await web.api("/api/incidents", {"external_id": "INC-\u00001", "title": "Checkout returns 500s"})
    assert r.status_code == 422
    assert "external_id" in r.json()["error"]  # the one id rule (closeloop.ids): no control characters in it
    assert web.app.handles == []
