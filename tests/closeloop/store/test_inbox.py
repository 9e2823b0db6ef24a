"""IncidentInbox against real databases (the `inbox` fixture: SQLite and PostgreSQL): "new" or "duplicate" is
exact under concurrency, a claim is exclusive, and rows end forwarded, refused, or due again."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from closeloop.store.inbox import IncidentInbox
from closeloop.store.store import Store
from tests.temporal_env import incident

LEASE = timedelta(seconds=60)


def test_the_first_delivery_is_new_and_a_repeat_is_a_duplicate(inbox: IncidentInbox) -> None:
    first = incident("INC-1", title="Checkout returns 500s")
    assert inbox.receive(first, "api") is True
    assert inbox.receive(incident("INC-1", title="Reworded"), "api") is False
    assert inbox.receive(incident("INC-1", source="pagerduty"), "pagerduty") is True  # ids are per source
    entry = inbox.entry("api", "INC-1")
    assert entry is not None
    assert (entry.state, entry.via, entry.attempts, entry.incident) == ("pending", "api", 0, first)
    assert inbox.entry("api", "INC-2") is None


def test_a_batch_commits_at_once_and_answers_each_arrival_in_order(inbox: IncidentInbox) -> None:
    """Group commit: one call, one transaction. Within the batch, only the first arrival of an incident can be
    new; an incident already there is a duplicate; the answers follow the arrivals' order."""
    assert inbox.receive(incident("OLD"), "api") is True
    arrivals = [(incident("A"), "api"), (incident("OLD"), "api"), (incident("B"), "api"),
                (incident("A", title="A again"), "api"), (incident("A", source="pagerduty"), "pagerduty")]
    assert inbox.receive_many(arrivals) == [True, False, True, False, True]
    assert inbox.receive_many([]) == []
    a = inbox.entry("api", "A")
    assert a is not None and a.incident.title == incident("A").title  # the first arrival's row stands
    assert inbox.counts() == {"pending": 4}


def test_a_row_the_database_refuses_fails_only_its_own_arrivals(store: Store) -> None:
    """One row PostgreSQL refuses (an id longer than the column; the edge never lets one through, this stands
    for any row-level refusal) fails its own arrivals only: the rest of the batch is committed and answered."""
    if store.db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite does not enforce VARCHAR lengths: it refuses no row of this batch")
    too_long = incident("X").model_copy(update={"external_id": "X" * 300})
    outcomes = store.inbox.receive_many([(incident("C"), "api"), (too_long, "api"), (incident("D"), "api"),
                                         (too_long, "api")])
    assert outcomes[0] is True and outcomes[2] is True
    assert isinstance(outcomes[1], Exception) and outcomes[3] is outcomes[1]
    assert "too long" in str(outcomes[1])
    assert store.inbox.counts() == {"pending": 2}


def test_concurrent_deliveries_of_one_incident_get_one_new(store: Store) -> None:
    """16 threads deliver the same incident at once: exactly one is told it is new."""
    answers: list[bool] = []
    barrier = threading.Barrier(16)

    def deliver() -> None:
        barrier.wait()
        answers.append(store.inbox.receive(incident("INC-RACE"), "pagerduty"))

    threads = [threading.Thread(target=deliver) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers) == [False] * 15 + [True]
    assert store.inbox.counts() == {"pending": 1}


def test_a_claim_is_a_lease_no_other_claim_gets_the_same_rows(inbox: IncidentInbox) -> None:
    for n in range(5):
        inbox.receive(incident(f"INC-{n}"), "api")
    now = datetime.now(UTC)
    first = inbox.claim(3, LEASE, now=now)
    assert [e.incident.external_id for e in first] == ["INC-0", "INC-1", "INC-2"]  # oldest first
    second = inbox.claim(10, LEASE, now=now)
    assert [e.incident.external_id for e in second] == ["INC-3", "INC-4"]
    assert inbox.claim(10, LEASE, now=now) == []
    # a lease that ran out (the replica died mid-forward) is claimed again
    again = inbox.claim(10, LEASE, now=now + LEASE + timedelta(seconds=1))
    assert len(again) == 5


def test_concurrent_claims_are_disjoint(store: Store) -> None:
    """Eight replicas claim at once: every row goes to exactly one of them."""
    for n in range(40):
        store.inbox.receive(incident(f"INC-{n}"), "api")
    claimed: list[int] = []
    barrier = threading.Barrier(8)

    def replica() -> None:
        barrier.wait()
        while rows := store.inbox.claim(3, LEASE):
            claimed.extend(e.id for e in rows)

    threads = [threading.Thread(target=replica) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(set(claimed))
    assert len(claimed) == 40


def test_forwarded_refused_and_retried_rows(inbox: IncidentInbox) -> None:
    for n in range(3):
        inbox.receive(incident(f"INC-{n}"), "api")
    now = datetime.now(UTC)
    ok, bad, later = inbox.claim(3, LEASE, now=now)
    inbox.forwarded([ok.id], now=now)
    inbox.refuse(bad.id, "Temporal refused it: search attribute too large")
    inbox.retry([later.id], "Temporal is unreachable", now + timedelta(seconds=5))

    assert inbox.counts() == {"forwarded": 1, "refused": 1, "pending": 1}
    assert inbox.claim(10, LEASE, now=now + timedelta(seconds=4)) == []  # backing off
    due = inbox.claim(10, LEASE, now=now + timedelta(seconds=6))
    assert [e.id for e in due] == [later.id]  # refused and forwarded rows are never claimed again
    assert (due[0].attempts, due[0].last_error) == (1, "Temporal is unreachable")

    listed = {e.incident.external_id: e for e in inbox.entries()}
    assert set(listed) == {"INC-1", "INC-2"}  # pending and refused, not forwarded
    assert listed["INC-1"].state == "refused"
    assert listed["INC-1"].last_error == "Temporal refused it: search attribute too large"
    forwarded = inbox.entry("api", "INC-0")
    assert forwarded is not None and forwarded.state == "forwarded" and forwarded.forwarded_at is not None
    inbox.retry([bad.id], "x" * 2000, now)  # a refused row stays refused; errors are bounded
    assert inbox.entry("api", "INC-1").state == "refused"  # type: ignore[union-attr]
    inbox.retry([later.id], "x" * 2000, now)
    assert len(inbox.entry("api", "INC-2").last_error or "") == 500  # type: ignore[union-attr]


def test_a_row_that_no_longer_reads_as_an_incident_is_refused_not_blocking(store: Store) -> None:
    """A row an older closeloop stored that the Incident model rejects now is refused with the reason; the
    rows beside it are still claimed."""
    from closeloop.store.tables import InboxRow

    now = datetime.now(UTC)
    with store.db.session() as s:
        s.add(InboxRow(source="api", external_id="OLD-1", incident={"source": "api", "external_id": "OLD-1"},
                       via="api", state="pending", received_at=now, due_at=now, attempts=0))
    store.inbox.receive(incident("INC-NEW"), "api")
    claimed = store.inbox.claim(10, LEASE)
    assert [e.incident.external_id for e in claimed] == ["INC-NEW"]
    assert store.inbox.counts() == {"pending": 1, "refused": 1}
    refused = store.inbox.entries(("refused",))
    assert [(e.incident.source, e.incident.external_id, e.state) for e in refused] == [("api", "OLD-1", "refused")]
    assert "the stored incident is no longer valid" in (refused[0].last_error or "")
    assert store.inbox.claim(10, LEASE, now=now + 2 * LEASE) != []  # the good row again, after its lease
