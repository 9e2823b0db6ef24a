"""Two workers on one task queue (issue 13, part 2): two `python worker.py` processes share the dev server's task
queue and one PostgreSQL database. Ten lifecycles with three action items each run on both; one worker is SIGKILLed
while they are in flight (after it ran activities and workflow tasks) and is not replaced: the other finishes every
lifecycle. Its in-flight activities are retried after their start-to-close timeout (activities/options.py), its
cached workflows move to the survivor after the sticky queue's schedule-to-start timeout.

The counts per worker (activity and workflow tasks, read from the histories' `ActivityTaskStarted.identity` and
`WorkflowTaskStarted.identity`, the SDK's default identity `pid@host`) are printed: `pytest -s` shows them."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from closeloop.ids import file_stem, meeting_key
from closeloop.models import PostmortemSummary, Stage
from closeloop.store.tables import MeetingRow, PostmortemRow
from tests.devserver.conftest import DevApp, dev_app_with
from tests.devserver.test_crash import ITEMS, REVIEWERS, Lifecycle, pending

pytestmark = [pytest.mark.devserver, pytest.mark.postgres]

LIFECYCLES = 10
# Every lifecycle books its meeting: the fast policy's meeting must fall in the few working hours alice, bob and
# erin share in the next 5 business days, which ten lifecycles would use up (then some skip the meeting).
MEETING = """
[severity.SEV2.meeting]
within_business_days = 30
duration = "15m"
slot_step = "15m"
working_hours = { start = 00:00:00, end = 23:59:00, days = [0, 1, 2, 3, 4, 5, 6] }
"""


async def drive(life: Lifecycle) -> PostmortemSummary:
    """One lifecycle as people would drive it: the draft, both approvals, then each item completed and judged."""
    await life.start()
    await life.wait_stage(Stage.drafting)
    await life.submit_draft()
    await life.wait_stage(Stage.in_review)
    for reviewer in REVIEWERS:
        await life.approve(reviewer)

    async def item(n: int) -> None:
        await life.wait_tracking(n)
        await life.complete(n)
        await life.give_verdict(n)

    await asyncio.gather(*(item(n) for n in range(1, len(ITEMS) + 1)))
    return await life.result(timeout=170)


async def task_counts(app: DevApp, lives: list[Lifecycle]) -> dict[tuple[str, str], list[datetime]]:
    """(worker identity, "activity" | "workflow") -> when each such task started, over every lifecycle's postmortem
    and item workflows. A history keeps the attempt that completed: a killed worker's lost attempt is not in it."""
    out: dict[tuple[str, str], list[datetime]] = {}
    for life in lives:
        for wf_id in [life.pm, *(f"{life.pm}/item-{n}" for n in range(1, len(ITEMS) + 1))]:
            history = await app.env.client.get_workflow_handle(wf_id).fetch_history()
            # The server leaves a WorkflowTaskStarted's identity empty now and then (for some tasks of a sticky
            # queue); the WorkflowTaskCompleted that follows it names the worker all the same.
            completed_by = {e.workflow_task_completed_event_attributes.started_event_id:
                            e.workflow_task_completed_event_attributes.identity
                            for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED}
            for event in history.events:
                if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                    key = (event.activity_task_started_event_attributes.identity, "activity")
                elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
                    identity = event.workflow_task_started_event_attributes.identity
                    key = (identity or completed_by.get(event.event_id, ""), "workflow")
                else:
                    continue
                out.setdefault(key, []).append(event.event_time.ToDatetime(tzinfo=UTC))
    return out


def check_effects(app: DevApp, lives: list[Lifecycle], summaries: list[PostmortemSummary], data_dir: Path,
                  diag: str) -> dict[str, int]:
    """No effect twice, read from the store's tables, the published files and both workers' logs."""
    store = app.store
    item_ids = sorted(f"{life.pm}/item-{n}" for life in lives for n in range(1, len(ITEMS) + 1))

    # every lifecycle closed, every item closed with a verdict (effective, or unknown if the verdict window passed)
    assert [s.stage for s in summaries] == [Stage.closed] * len(lives), diag
    assert sorted(i.id for s in summaries for i in s.items) == item_ids, diag
    assert all(i.status.value == "done" and i.verdict is not None for s in summaries for i in s.items), diag

    # exactly one local ticket per action item, and it is the one the item records
    tickets = store.local.tickets()
    assert sorted(t.marker for t in tickets) == [f"closeloop:{i}" for i in item_ids], diag
    by_marker = {t.marker: t.key for t in tickets}
    assert all(i.ticket_key == by_marker[f"closeloop:{i.id}"] for s in summaries for i in s.items), diag

    # one outbox row per notification key; per lifecycle, one invite and one announcement per attendee, one
    # "opened" and one verdict request per item
    rows = store.local.notifications()
    assert len({n.key for n in rows}) == len(rows), diag
    for life in lives:
        mine = Counter((n.kind, n.recipient) for n in rows if n.postmortem_id == life.pm)
        for person in ("alice", "bob", "erin"):
            assert mine[("invite", person)] == 1 and mine[("published", person)] == 1, (life.pm, mine, diag)
        per_item = Counter((n.kind, n.item_id) for n in rows if n.postmortem_id == life.pm and n.item_id)
        for n in range(1, len(ITEMS) + 1):
            for kind in ("item_opened", "verdict_request"):
                assert per_item[(kind, f"{life.pm}/item-{n}")] == 1, (life.pm, kind, n, per_item, diag)

    # the log notifier logs each first delivery once: no notification was delivered by both workers
    logged = Counter((r["kind"], r["to"], r.get("item_id"), r["event_time"])
                     for r in app.workers.log_records() if r.get("event") == "notification")
    assert not [k for k, c in logged.items() if c > 1], diag
    assert len(logged) <= len(rows), diag

    # one meeting per postmortem (under any key: a second booking would be a second row)
    with store.db.session() as s:
        meetings = list(s.scalars(select(MeetingRow.idempotency_key)))
        refs = {pm: ref for pm, ref in s.execute(select(PostmortemRow.id, PostmortemRow.document_ref))}
    assert sorted(meetings) == sorted(meeting_key(life.pm) for life in lives), (meetings, diag)

    # one published document per postmortem: the store's copy points at its files, the only ones of that
    # postmortem among the published documents (the drafts folder holds the drafts, not counted)
    published = sorted(data_dir.glob("documents/*.md"))
    assert len(published) == len(lives), (published, diag)
    for life in lives:
        assert refs[life.pm], (life.pm, diag)
        assert Path(refs[life.pm]).with_suffix(".md") == data_dir / "documents" / f"{file_stem(life.pm)}.md", diag
    return {"tickets": len(tickets), "notifications": len(rows), "logged": len(logged),
            "meetings": len(meetings), "documents": len(published)}


@pytest.fixture
def two_worker_app(dev_env: WorkflowEnvironment, tmp_path: Path, pg_database_url: str) -> Any:
    with dev_app_with(dev_env, tmp_path, extra_config=MEETING, db_url=pg_database_url) as app:
        yield app


async def test_two_workers_share_the_work_and_one_is_sigkilled(two_worker_app: DevApp, tmp_path: Path) -> None:
    app = two_worker_app
    workers, store = app.workers, app.store
    t0 = time.monotonic()
    first = workers.start()
    second = workers.start(alongside=True)
    for proc in (first, second):
        await asyncio.to_thread(workers.wait_ready, 30.0, proc)
    names = {first.pid: "worker-1", second.pid: "worker-2"}

    lives = [Lifecycle(app) for _ in range(LIFECYCLES)]
    runs = [asyncio.ensure_future(drive(life)) for life in lives]
    try:
        # The kill: once a third of the items have their ticket, while the rest are being opened.
        total = LIFECYCLES * len(ITEMS)
        deadline = time.monotonic() + 120
        while len(store.local.tickets()) < total // 3:
            for r in runs:
                if r.done() and r.exception():
                    await r  # a lifecycle failed before the kill: its error
            assert time.monotonic() < deadline, workers.diagnostics()
            await asyncio.sleep(0.05)
        tickets_at_kill = len(store.local.tickets())
        workers.kill("lifecycles in flight", proc=first)
        killed_at = datetime.now(UTC)  # once it is dead: a task handed to it just before the signal counts before
        lost = [x for life in lives for x in await pending(life, first.pid)]
        print(f"\nSIGKILL worker-1 (pid {first.pid}) at +{time.monotonic() - t0:.1f}s with {tickets_at_kill}/{total} "
              f"tickets opened; its activities in flight: {len(lost)} {lost}; no replacement started", flush=True)

        summaries = await asyncio.gather(*runs)
    finally:
        for r in runs:
            r.cancel()
        await asyncio.gather(*runs, return_exceptions=True)
    elapsed = time.monotonic() - t0
    assert second.poll() is None, "the surviving worker exited"
    diag = workers.diagnostics()

    counts = await task_counts(app, lives)
    table: dict[str, Counter[str]] = {name: Counter() for name in names.values()}
    before: dict[str, Counter[str]] = {name: Counter() for name in names.values()}
    for (identity, kind), times in counts.items():
        name = names.get(int(identity.split("@", 1)[0]), identity) if identity[:1].isdigit() else identity
        table.setdefault(name, Counter())[kind] += len(times)
        before.setdefault(name, Counter())[kind] += sum(1 for t in times if t < killed_at)
    print(f"{LIFECYCLES} lifecycles x {len(ITEMS)} items on 2 workers, worker-1 SIGKILLed: closed in {elapsed:.0f}s")
    print(f"{'worker':10}{'activity tasks':>16}{'workflow tasks':>16}{'(before the kill)':>22}")
    for name, c in sorted(table.items()):
        b = before[name]
        print(f"{name:10}{c['activity']:>16}{c['workflow']:>16}{b['activity']:>11} / {b['workflow']}")
    assert set(table) == {"worker-1", "worker-2"}, (table, diag)
    for name in ("worker-1", "worker-2"):
        assert before[name]["activity"] > 0 and before[name]["workflow"] > 0, (name, before, diag)
    assert table["worker-1"] == before["worker-1"], "a killed worker ran nothing after its kill"

    effects = check_effects(app, lives, list(summaries), tmp_path / "data", diag)
    verdicts = Counter(i.verdict.value for s in summaries for i in s.items if i.verdict)
    print(f"effects: {effects}; verdicts: {dict(verdicts)}; every lifecycle closed, no effect twice")
