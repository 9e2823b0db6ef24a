"""The library's full-text search and the metrics, on SQLite (FTS5) and PostgreSQL (tsvector), with data written
through the store's own record methods, as the activities write it."""

from __future__ import annotations

from datetime import timedelta

from closeloop.models import Verdict
from closeloop.readmodel import LibraryFilter
from closeloop.store.insights import fts5_query
from closeloop.store.store import Store
from tests.closeloop.store.helpers import NOW, item, lifecycle


def test_library_finds_words_in_published_documents_with_filters(store: Store) -> None:
    a = lifecycle(store, "LIB-1", "Checkout returns 500s", published=NOW - timedelta(days=10),
                  document="The connection pool was exhausted by retries after a deploy.")
    b = lifecycle(store, "LIB-2", "Search is slow", severity="SEV1", services=["search"],
                  published=NOW - timedelta(days=3), document="Index rebuild saturated the disks; pools were fine.")
    lifecycle(store, "LIB-3", "Payments declined: connection pool", published=None)  # not published: never listed
    found = store.insights.library(LibraryFilter())
    assert [h.postmortem.id for h in found.hits] == [b, a] and found.total == 2  # newest first
    hits = store.insights.library(LibraryFilter(query="connection pools"))
    assert [h.postmortem.id for h in hits.hits] == [a] and hits.total == 1  # stemmed: pools ~ pool, both words
    assert "connection pool" in hits.hits[0].snippet
    assert [h.postmortem.id for h in store.insights.library(LibraryFilter(query="pool")).hits] in ([a, b], [b, a])
    assert store.insights.library(LibraryFilter(query="pool", severity="SEV1")).total == 1
    assert store.insights.library(LibraryFilter(query="pool", service="checkout")).total == 1
    assert store.insights.library(LibraryFilter(since=NOW - timedelta(days=5))).total == 1
    assert store.insights.library(LibraryFilter(until=NOW - timedelta(days=5))).total == 1
    assert store.insights.library(LibraryFilter(query="nothing-like-this")).total == 0
    assert store.insights.library(LibraryFilter(limit=1, offset=1)).hits[0].postmortem.id == a


def test_library_takes_any_text_as_words_never_as_query_syntax(store: Store) -> None:
    lifecycle(store, "LIB-Q", "Queue backlog", published=NOW, document="The queue NEAR the cache OR something")
    for query in ('"', "NEAR(", "queue OR", "*", "col:queue", "') DROP TABLE postmortems; --", "queue AND NOT"):
        result = store.insights.library(LibraryFilter(query=query))  # no error, whatever the words
        assert result.total in (0, 1)
    assert store.insights.library(LibraryFilter(query="queue")).total == 1
    assert fts5_query('a "b" c*') == '"a" "b" "c"'


def test_metrics_count_on_time_publication_completion_and_effectiveness(store: Store) -> None:
    on_time = lifecycle(store, "M-1", "one", severity="SEV1", resolved=NOW - timedelta(days=50),
                        published=NOW - timedelta(days=46))
    late = lifecycle(store, "M-2", "two", severity="SEV1", late=True, published=NOW - timedelta(days=5))
    other = lifecycle(store, "M-3", "three", severity="SEV2", services=["search"], published=NOW - timedelta(days=5),
                      resolved=NOW - timedelta(days=8))
    lifecycle(store, "M-4", "four", owner="frank", published=NOW - timedelta(days=5))
    item(store, on_time, 1, due=NOW - timedelta(days=10), completed=NOW - timedelta(days=12),
         verdict=Verdict.effective)
    item(store, on_time, 2, kind="detect", due=NOW - timedelta(days=10), completed=NOW - timedelta(days=2),
         verdict=Verdict.ineffective, recurrences=2)
    item(store, late, 1, due=NOW - timedelta(days=40))  # open, overdue 40 days
    item(store, other, 1, kind="detect", due=NOW - timedelta(days=3), completed=NOW - timedelta(days=4),
         verdict=Verdict.effective)
    old = lifecycle(store, "M-OLD", "old", severity="SEV1", resolved=NOW - timedelta(days=420),
                    published=NOW - timedelta(days=410))  # before the twelve months: not counted
    item(store, old, 1, due=NOW - timedelta(days=400), completed=NOW - timedelta(days=405), verdict=Verdict.effective)
    m = store.insights.metrics(["alice", "erin"], NOW)
    assert [mo.month for mo in m.months][0] == "2025-12" and m.months[-1].month == "2026-11" and len(m.months) == 12
    assert {k: (v.on_time, v.total) for k, v in m.published_by_severity.items()} == {"SEV1": (1, 2), "SEV2": (1, 1)}
    # published 4 and 15 days after resolution (SEV1), 3 days (SEV2)
    assert m.hours_to_publish_by_severity == {"SEV1": 228.0, "SEV2": 72.0}
    assert m.median_hours_to_publish == 96.0
    assert (m.items_on_time.on_time, m.items_on_time.total) == (2, 3)
    assert m.overdue_by_age == {"1-7 days": 0, "8-30 days": 0, "31-90 days": 1, "over 90 days": 0}
    kinds = m.effectiveness_by_kind
    assert (kinds["prevent"].effective, kinds["detect"].effective, kinds["detect"].ineffective) == (1, 1, 1)
    assert kinds["detect"].recurrences == 2 and kinds["detect"].rate == 0.5
    assert m.effectiveness_by_service["search"].effective == 1
    assert m.effectiveness_by_service["checkout"].ineffective == 1
    months = {mo.month: mo for mo in m.months}
    assert months["2026-11"].published.total == 2 and months["2026-10"].published.total == 1
    assert months["2026-11"].items_done.total == 3
    everyone = store.insights.metrics(None, NOW)
    assert everyone.published_by_severity["SEV2"].total == 2  # frank's too


def test_related_postmortems_share_a_service_or_the_fingerprint_and_came_before(store: Store) -> None:
    now_pm = lifecycle(store, "R-NOW", "Checkout 500s", resolved=NOW - timedelta(days=1))
    older = lifecycle(store, "R-OLD", "Checkout pool", resolved=NOW - timedelta(days=60))
    oldest = lifecycle(store, "R-OLDEST", "Checkout DNS", resolved=NOW - timedelta(days=90),
                       services=["checkout", "dns"])
    lifecycle(store, "R-OTHER", "Search slow", services=["search"], resolved=NOW - timedelta(days=10))
    lifecycle(store, "R-LATER", "Checkout again", resolved=NOW)  # after this one: not "earlier"
    item(store, older, 1, due=NOW - timedelta(days=30), completed=NOW - timedelta(days=40),
         verdict=Verdict.ineffective, recurrences=1)
    found = store.insights.related(now_pm)
    assert [r.postmortem.id for r in found] == [older, oldest]  # newest first
    assert [(i.title, i.status, i.verdict) for i in found[0].items] == [("item 1", "done", "ineffective")]
    assert found[1].postmortem.services == ["checkout", "dns"] and found[1].items == []
    assert store.insights.related("postmortem/api/NOPE") == []
    assert [r.postmortem.id for r in store.insights.related(now_pm, limit=1)] == [older]
