"""The stalled-work digest that a Temporal Schedule runs every weekday."""

from __future__ import annotations

from datetime import timedelta

from closeloop.models import ActionItemSpec, Stage
from closeloop.workflows.sweeps import StalledDigestWorkflow, SweepInput
from tests.temporal_env import DAY, App, incident
from tests.workflows.drive import to_following_up


async def wait_done(handle):  # type: ignore[no-untyped-def]
    import asyncio

    for _ in range(300):
        desc = await handle.describe()
        if desc.status and desc.status.name == "COMPLETED":
            return  # not result(): waiting on a result lets the test server skip time
        await asyncio.sleep(0.05)
    raise AssertionError("digest did not complete")


async def test_digest_tells_managers_about_stalled_postmortems_and_overdue_items(app: App) -> None:
    stalled = incident(title="Search down")
    h1 = await app.resolve(stalled)
    await app.wait_stage(h1, Stage.drafting)
    _h2, state = await to_following_up(app, incident(),
                                       ActionItemSpec(title="Add a canary", owner="bob", priority="P1"))
    await app.env.sleep(7 * DAY + timedelta(hours=2))  # draft due at 5d; the P1 item due at 7d
    await app.wait_for(h1, lambda s: s.stalled)

    # started, not executed: waiting on a result would let the test server skip time to the next timer
    handles = []
    for n in (1, 2):
        handle = await app.client.start_workflow(StalledDigestWorkflow.run, SweepInput(), id=f"digest-{n}",
                                                 task_queue=app.task_queue)
        await wait_done(handle)
        handles.append(handle)
        app.handles.append(handle)  # recorded for the replay tests
    digests = [n for n in app.store.local.notifications() if n.kind == "stalled_digest"]
    assert len(digests) == 1, [(d.key, d.at) for d in digests]  # one a day per manager, however often it runs
    body = digests[0].body
    assert f"postmortem {stalled.workflow_id} (drafting" in body and "owned by alice" in body
    assert f"action item {state.items[0].id} \"Add a canary\" owned by bob" in body
    assert digests[0].subject.endswith("(2)")
    first, again = [await h.result() for h in handles]
    assert (first.stalled_postmortems, first.overdue_items, first.managers_notified) == (1, 1, ["carol"])
    assert again.managers_notified == ["carol"]
