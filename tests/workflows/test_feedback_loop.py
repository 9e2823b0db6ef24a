"""The feedback loop across incidents: a second incident on the same service shows the first one's action items
and their verdicts in its draft ("Related incidents"), and as a recurrence it links to the item it defeated,
whose owner is told and which the first postmortem's page and the reports then show as recurred."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from closeloop.draft_markdown import parse_draft
from closeloop.models import ActionItemSpec, CompleteItem, Stage, VerdictInput
from closeloop.workflows.action_item import ActionItemWorkflow
from tests.temporal_env import DAY, App, eventually, incident
from tests.workflows.drive import to_following_up

POOL = ActionItemSpec(title="Cap the checkout DB pool at 80 connections", owner="bob", priority="P2",
                      kind="prevent", done_when="the pool limit is enforced in the deploy config")


async def test_a_second_incident_shows_the_first_ones_items_and_flags_the_one_it_defeated(app: App) -> None:
    first = incident(title="Checkout returns 500s", services=["checkout"])
    handle, state = await to_following_up(app, first, POOL)
    item = state.items[0]
    h = app.client.get_workflow_handle(item.id)
    await h.execute_update(ActionItemWorkflow.complete, CompleteItem(by="bob", note="limit shipped"))
    done = await app.wait_for(h, lambda s: s.phase == "waiting_effectiveness")
    completed = done.item.completed_at

    # the effectiveness review (team.toml: 14 days after completion): no recurrence yet, bob says it worked
    await app.env.sleep(14 * DAY + timedelta(hours=1))
    await app.wait_for(h, lambda s: s.phase == "awaiting_verdict")
    await h.execute_update(ActionItemWorkflow.verdict, VerdictInput(by="bob", effective=True, note="no pool alerts"))
    summary = await handle.result()
    assert [i.verdict.value for i in summary.items if i.verdict] == ["effective"]

    # two days later checkout fails again, another way (another title, so another fingerprint)
    await app.env.sleep(2 * DAY)
    second = incident(title="Checkout times out at peak", services=["checkout", "payments"],
                      started_at=await app.now())
    again = await app.resolve(second)
    st = await app.wait_stage(again, Stage.drafting)

    # the new incident links to the item it defeated
    assert [(d.item_id, d.owner, d.matched, d.verdict.value if d.verdict else None) for d in st.recurs_after] == [
        (item.id, "bob", "service checkout", "effective")]
    assert st.recurs_after[0].completed_at == completed

    # and bob is told, once, as the new postmortem's notification
    await eventually(lambda: any(k == "item_recurred" for k, *_ in app.outbox(second.workflow_id)))
    told = [(who, key) for k, who, key, _ in app.outbox(second.workflow_id) if k == "item_recurred"]
    assert told == [("bob", f"{second.workflow_id}/recurrence/{item.id}")]
    message = next(n for n in app.store.local.notifications(second.workflow_id) if n.kind == "item_recurred")
    assert POOL.title in message.subject and "Checkout times out at peak" in message.subject
    assert "same service checkout" in message.body

    # the draft's "Related incidents": the first postmortem, its item, its status and verdict, and the recurrence
    draft_md = Path(st.draft_ref).read_text()
    related = draft_md[draft_md.index("## Related incidents"):draft_md.index("## Timeline")]
    assert "This incident happened again after these action items were done:" in related
    assert f"### {first.title}" in related
    row = next(line for line in related.splitlines() if line.startswith(f"| {POOL.title} |"))
    assert [c.strip() for c in row.strip("|").split("|")] == [
        POOL.title, "bob", "prevent", "done", "effective", second.workflow_id]

    # the section is closeloop's: the draft, filled in and submitted back, parses without it
    filled = draft_md.replace("TODO: what happened, in two or three sentences.", "Checkout timed out at peak.")
    parsed = parse_draft(filled, by="alice", now=await app.now())
    assert parsed.summary == "Checkout timed out at peak."

    # the store flags the earlier item: its recurrence count, and where it recurred
    await eventually(lambda: app.store.views.items(first.workflow_id)[0].recurred_in == [second.workflow_id])
    rows = app.store.insights.related(second.workflow_id)
    assert [(r.postmortem.id, [(i.id, i.verdict, i.recurred_in) for i in r.items]) for r in rows] == [
        (first.workflow_id, [(item.id, "effective", [second.workflow_id])])]
    report = app.store.insights.effectiveness(since=completed - DAY, until=await app.now() + DAY)
    assert [(r.item.id, r.recurred_in) for r in report.recurred] == [(item.id, [second.workflow_id])]


async def test_an_incident_of_another_service_defeats_nothing(app: App) -> None:
    first = incident(title="Checkout returns 500s", services=["checkout"])
    handle, state = await to_following_up(app, first, POOL)
    h = app.client.get_workflow_handle(state.items[0].id)
    await h.execute_update(ActionItemWorkflow.complete, CompleteItem(by="bob"))
    await app.wait_for(h, lambda s: s.phase == "waiting_effectiveness")

    await app.env.sleep(2 * DAY)
    other = incident(title="Search is slow", services=["search"], started_at=await app.now())
    st = await app.wait_stage(await app.resolve(other), Stage.drafting)
    assert st.recurs_after == []
    draft_md = Path(st.draft_ref).read_text()
    assert "No earlier postmortem of these services or this fingerprint." in draft_md
    assert not any(k == "item_recurred" for k, *_ in app.outbox())
