"""The feedback loop in the store, on SQLite and PostgreSQL: recurrence links (a later incident of the same kind
defeats the done items before it) and the effectiveness review built on them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from closeloop.models import Incident, Verdict
from closeloop.store.store import Store
from closeloop.store.tables import ActionItemRow, ItemRecurrenceRow
from tests.closeloop.store.helpers import item, lifecycle

NOV = datetime(2026, 11, 1, tzinfo=UTC)
DEC = datetime(2026, 12, 1, tzinfo=UTC)
LOOKBACK = timedelta(days=90)


def day(n: int, month: datetime = NOV) -> datetime:
    return month + timedelta(days=n - 1, hours=10)


def incident_of(key: str, services: list[str], at: datetime, title: str = "Checkout returns 500s") -> Incident:
    return Incident(source="api", external_id=key, title=title, services=services, started_at=at, resolved_at=at)


def a_month(store: Store) -> dict[str, str]:
    """checkout: A (October) with five items, then D and E in November; search: B and C in November."""
    a = lifecycle(store, "A", "Checkout returns 500s", resolved=datetime(2026, 10, 1, tzinfo=UTC))
    item(store, a, 1, owner="bob", due=day(20), completed=day(5), verdict=Verdict.effective)
    item(store, a, 2, owner="bob", kind="detect", due=day(20), completed=day(10), verdict=Verdict.ineffective,
         recurrences=1)
    item(store, a, 3, owner="erin", due=day(20), completed=datetime(2026, 10, 15, tzinfo=UTC),
         verdict=Verdict.effective)
    item(store, a, 4, owner="erin", due=day(20))  # open, 11 days overdue on December 1st
    item(store, a, 5, owner="erin", due=day(28), completed=day(25))  # its verdict still to come
    b = lifecycle(store, "B", "Search is slow", services=["search"], resolved=day(12))
    c = lifecycle(store, "C", "Search times out", services=["search"], resolved=day(20))
    d = lifecycle(store, "D", "Checkout times out at peak", services=["checkout", "payments"], resolved=day(22))
    e = lifecycle(store, "E", "Checkout 502s", resolved=day(26))
    return {"A": a, "B": b, "C": c, "D": d, "E": e}


def test_a_recurrence_links_the_done_items_before_it_once(store: Store) -> None:
    pm = a_month(store)
    later = incident_of("D", ["checkout", "payments"], day(22), "Checkout times out at peak")
    found = store.records.link_recurrences(pm["D"], later, within=LOOKBACK, at=day(22))
    # done before D started (item 5 was done after it, 4 is open), oldest completion first, why each matched
    assert [(d.item_id.rsplit("/", 1)[-1], d.owner, d.matched, d.verdict) for d in found] == [
        ("item-3", "erin", "service checkout", Verdict.effective),
        ("item-1", "bob", "service checkout", Verdict.effective),
        ("item-2", "bob", "service checkout", Verdict.ineffective)]
    assert found[0].completed_at == datetime(2026, 10, 15, tzinfo=UTC)

    # a retry links nothing twice, and the first time it was found stays
    again = store.records.link_recurrences(pm["D"], later, within=LOOKBACK, at=day(23))
    assert [d.item_id for d in again] == [d.item_id for d in found]
    with store.db.session() as s:
        assert s.scalar(select(func.count()).select_from(ItemRecurrenceRow)) == 3
        assert set(s.scalars(select(ItemRecurrenceRow.found_at))) == {day(22)}
        counts = {row.id: row.recurrences for row in s.execute(select(ActionItemRow.id, ActionItemRow.recurrences))}
    assert [counts[f"{pm['A']}/item-{n}"] for n in range(1, 6)] == [1, 1, 1, 0, 0]

    # saving an item again (its workflow's next save) keeps the count: links or its own check, whichever is more
    item(store, pm["A"], 1, owner="bob", due=day(20), completed=day(5), verdict=Verdict.effective)
    assert store.views.items(pm["A"])[0].recurred_in == [pm["D"]]
    assert [i.recurred_in for i in store.views.items(pm["A"])] == [[pm["D"]]] * 3 + [[], []]
    with store.db.session() as s:
        assert s.scalar(select(ActionItemRow.recurrences).where(ActionItemRow.id == f"{pm['A']}/item-1")) == 1

    # the lookback bounds it: 20 days before E, only the items done from November 6th
    short = store.records.link_recurrences(pm["E"], incident_of("E", ["checkout"], day(26)),
                                           within=timedelta(days=20), at=day(26))
    assert [d.item_id.rsplit("/", 1)[-1] for d in short] == ["item-2", "item-5"]


def test_the_same_fingerprint_matches_across_services_and_other_services_do_not(store: Store) -> None:
    first = Incident(source="api", external_id="F1", title="Disk full", services=["logs"], dedup_key="disk-full",
                     started_at=day(2), resolved_at=day(2))
    store.records.upsert_postmortem("postmortem/api/F1", first, owner="alice", stage="following_up", stalled=False,
                                    stage_due_at=None, at=day(2))
    item(store, "postmortem/api/F1", 1, owner="bob", due=day(10), completed=day(4))
    # another service but the same alert: the fingerprint is services + dedup key, so give it the same one
    later = Incident(source="api", external_id="F2", title="Disk full again", services=["metrics"],
                     fingerprint=first.fingerprint, started_at=day(9), resolved_at=day(9))
    store.records.upsert_postmortem("postmortem/api/F2", later, owner="alice", stage="drafting", stalled=False,
                                    stage_due_at=None, at=day(9))
    found = store.records.link_recurrences("postmortem/api/F2", later, within=LOOKBACK, at=day(9))
    assert [(d.item_id, d.matched) for d in found] == [("postmortem/api/F1/item-1", "fingerprint")]
    other = incident_of("S1", ["search"], day(9), "Search is slow")
    store.records.upsert_postmortem("postmortem/api/S1", other, owner="alice", stage="drafting", stalled=False,
                                    stage_due_at=None, at=day(9))
    assert store.records.link_recurrences("postmortem/api/S1", other, within=LOOKBACK, at=day(9)) == []


def test_the_effectiveness_review_of_a_month(store: Store) -> None:
    pm = a_month(store)
    store.records.link_recurrences(pm["D"], incident_of("D", ["checkout", "payments"], day(22)), within=LOOKBACK,
                                   at=day(22))
    report = store.insights.effectiveness(NOV, DEC, failing_after=2)

    # items 1, 2 and 5 were completed in November (3 in October); 5 awaits its verdict
    assert (report.items_done, report.awaiting_verdict) == (3, 1)
    assert (report.verdicts.effective, report.verdicts.ineffective, report.verdicts.unknown) == (1, 1, 0)
    assert report.verdicts.rate == 0.5
    # recurrences: item 1 by the link, item 2 by its own check and the same link (counted once)
    assert {k: (v.effective, v.ineffective, v.recurrences) for k, v in report.by_service.items()} == {
        "checkout": (1, 1, 2)}
    assert {k: (v.effective, v.ineffective, v.recurrences) for k, v in report.by_kind.items()} == {
        "detect": (0, 1, 1), "prevent": (1, 0, 1)}
    assert report.overdue_items == 1 and report.overdue_by_age["8-30 days"] == 1
    # recurrences found in November: the three items D defeated, item 3 (done in October) among them
    assert [(r.item.id.rsplit("/", 1)[-1], r.recurred_in, r.item.services) for r in report.recurred] == [
        (f"item-{n}", [pm["D"]], ["checkout"]) for n in (1, 2, 3)]
    # services that keep failing: two incidents each in November (A was in October), most first, then by name
    assert [(f.service, f.incidents, f.ineffective_items, f.recurrences, sorted(f.postmortems))
            for f in report.failing_services] == [
        ("checkout", 2, 1, 2, sorted([pm["D"], pm["E"]])), ("search", 2, 0, 0, sorted([pm["B"], pm["C"]]))]
    assert store.insights.effectiveness(NOV, DEC, failing_after=3).failing_services == []

    # the JSON the CLI prints: every figure, the rate included
    data = json.loads(report.model_dump_json())
    assert data["verdicts"] == {"effective": 1, "ineffective": 1, "unknown": 0, "recurrences": 2, "rate": 0.5}
    assert data["since"].startswith("2026-11-01") and data["until"].startswith("2026-12-01")

    # an empty period is an empty report, not an error
    empty = store.insights.effectiveness(DEC, DEC + timedelta(days=30))
    assert (empty.items_done, empty.recurred, empty.failing_services, empty.verdicts.rate) == (0, [], [], None)
