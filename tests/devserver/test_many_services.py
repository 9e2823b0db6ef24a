"""An incident with many services still gets its lifecycle. On the real dev server: it enforces Temporal's
2 KB limit per search attribute value (the time-skipping test server does not)."""

from __future__ import annotations

import json
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from closeloop import search_attributes as sa
from closeloop.models import Stage
from closeloop.workflows.postmortem import PostmortemWorkflow
from tests.closeloop.web.conftest import Web, make_web
from tests.closeloop.web.test_alertmanager import am_group
from tests.temporal_env import running_app


async def test_an_alertmanager_group_of_40_services_starts_its_lifecycle(dev_env: WorkflowEnvironment,
                                                                          tmp_path: Path) -> None:
    """A group whose alerts name 40 services (a shared dependency failing under all of them). The whole list
    used to go into CloseloopService, Temporal refused the start, the webhook answered 422, and Alertmanager
    (which never retries a 4xx) dropped the incident. Now the attribute holds what fits; the incident all."""
    services = [f"payments-ledger-reconciliation-worker-eu-west-1-shard-{n:02d}" for n in range(40)]
    group = am_group("many-services")
    template = group["alerts"][0]
    group["alerts"] = [{**template, "labels": {**template["labels"], "service": service},
                        "fingerprint": f"{n:016x}"} for n, service in enumerate(services)]
    group["commonLabels"] = {k: v for k, v in group["commonLabels"].items() if k != "service"}
    assert len(json.dumps(services)) > 2048
    async with running_app(dev_env, tmp_path) as app, make_web(app) as http:
        web = Web(http=http, app=app)
        r = await web.alertmanager(group)
        assert r.status_code == 202, r.text
        handle = app.client.get_workflow_handle_for(PostmortemWorkflow.run, r.json()["workflow_id"])
        app.handles.append(handle)
        state = await app.wait_for(handle, lambda s: s.stage == Stage.drafting)  # the upserts went through too
        assert state.plan.incident.services == services  # the incident keeps every service
        kept = (await handle.describe()).typed_search_attributes.get(sa.SERVICE)
        assert kept and kept == services[:len(kept)]
        assert len(json.dumps(kept).encode()) <= sa.MAX_LIST_BYTES
