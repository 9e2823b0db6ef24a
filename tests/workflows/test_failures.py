"""A step that fails in a way no retry fixes: the activity is tried once (activities/support.classify, the worker's
interceptor), the lifecycle is marked stalled (CloseloopStalled, what `closeloop stalled` lists), the error is
logged and people are told, and it waits for an operator's `retry` signal: one more try per signal, never a
loop. The failure here is real: PostgreSQL refuses a severity longer than the store's column (32 characters),
which SQLite accepts; before, record_incident was retried forever."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from closeloop import search_attributes as sa
from closeloop.models import ActionItemSpec, Incident
from tests.temporal_env import App, eventually, incident, record_histories, running_app
from tests.workflows.drive import to_following_up


async def _failed_tries(handle: WorkflowHandle[Any, Any]) -> int:
    history = await handle.fetch_history()
    return sum(e.HasField("activity_task_failed_event_attributes") for e in history.events)


async def _stalled(app: App, handle: WorkflowHandle[Any, Any], timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if (await handle.describe()).typed_search_attributes.get(sa.STALLED) is True:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not stalled within {timeout}s; failed tries so far: {await _failed_tries(handle)}")


async def test_a_failure_no_retry_fixes_stalls_the_lifecycle_and_tells_people(
        time_env: WorkflowEnvironment, tmp_path: Path, pg_database_url: str) -> None:
    async with running_app(time_env, tmp_path, db_url=pg_database_url) as app:
        inc = incident(severity="SEV1-customer-facing-revenue-impacting")  # 38 characters; the column holds 32
        handle = await app.resolve(inc)
        await _stalled(app, handle)
        # the stalled flag is set first, then the people are told (a delivery-time step, then the notify
        # activity: between the two nothing is pending, so wait for the note itself), then it waits
        await eventually(lambda: len(app.outbox(inc.workflow_id)) >= 1, timeout=15)
        for _ in range(150):
            desc = (await handle.describe()).raw_description
            if not desc.pending_activities:
                break
            await asyncio.sleep(0.1)
        assert desc.workflow_execution_info.status == 1 and not desc.pending_activities  # waits, does not loop
        assert await _failed_tries(handle) == 1
        told = [(kind, who) for kind, who, *_ in app.outbox(inc.workflow_id)]
        assert told == [("lifecycle_failed", "alice")]  # the commander: no owner before the incident is recorded
        [note] = [n for n in app.store.local.notifications(inc.workflow_id) if n.kind == "lifecycle_failed"]
        assert "record_incident" in note.body and "value too long" in note.body and "--name retry" in note.body

        # an operator says retry: one more try (the cause is still there), one more note, still no loop
        await handle.signal("retry", {"by": "ops"})
        await eventually(lambda: len(app.outbox(inc.workflow_id)) == 2, timeout=15)
        assert await _failed_tries(handle) == 2
        await asyncio.sleep(1.5)
        assert await _failed_tries(handle) == 2
        if os.environ.get("CLOSELOOP_RECORD_HISTORIES") == "1":
            await record_histories(app, "test_a_failure_no_retry_fixes_stalls_the_lifecycle_and_tells_people")


def test_errors_no_retry_fixes_are_non_retryable() -> None:
    from pydantic import ValidationError
    from sqlalchemy import exc

    from closeloop.activities.support import classify

    class Orig(Exception):
        sqlstate = "22001"

    class Duplicate(Exception):
        sqlstate = "23505"

    refused = classify(exc.DataError("INSERT ...", {}, Orig("value too long for type character varying(32)")))
    assert refused is not None and refused.non_retryable and "value too long" in refused.message
    assert classify(exc.IntegrityError("INSERT ...", {}, Duplicate("duplicate key"))) is None  # a race: retried
    assert classify(exc.OperationalError("SELECT 1", {}, Orig("connection refused"))) is None  # transient
    nul = classify(exc.StatementError("bind", "INSERT ...", {}, ValueError("embedded null byte")))
    assert nul is not None and nul.non_retryable and "embedded null byte" in nul.message
    try:
        Incident(source="api", external_id="", title="x")
    except ValidationError as e:
        invalid = classify(e)
    assert invalid is not None and invalid.non_retryable
    long = classify(ValueError("x" * 10_000 + "\nsecond line"))
    assert long is not None and len(long.message) < 600 and "second line" not in long.message
    assert classify(ConnectionError("reset")) is None


async def test_a_nul_in_a_drafts_action_item_is_cleaned_and_the_item_is_stored(
        time_env: WorkflowEnvironment, tmp_path: Path, pg_database_url: str) -> None:
    """What people write goes to the store too: a NUL in an action item's title (pasted into `closeloop draft
    submit`) made PostgreSQL refuse the item for ever. Cleaned at the edge, the item is stored and tracked."""
    async with running_app(time_env, tmp_path, db_url=pg_database_url) as app:
        inc = incident()
        _handle, state = await to_following_up(
            app, inc, ActionItemSpec(title="Validate\u0000 config", description="see\u0000 runbook", owner="bob"))
        assert state.items[0].title == "Validate config"
        await eventually(lambda: [i.title for i in app.store.records.action_items(inc.workflow_id)]
                         == ["Validate config"], timeout=15)
