"""The data the PostgreSQL read benchmarks (bench/dashboard.py, bench/library.py, bench/web_pages.py) fill a fresh
database with, by bulk inserts (one multi-row INSERT per 1,000 rows, not the store's one-transaction-per-row
writes): 200 people in teams of 20 under 10 managers, incidents of 40 services (1-3 each) and four severities,
postmortems across every stage (the open ones due within three weeks either side of now, some flagged stalled),
five action items each (open ones due from 200 days ago to 60 days ahead, done ones with and without a verdict),
owners skewed so a few people own much more than most.

The published, following-up and closed postmortems carry a published document as closeloop writes one
(closeloop/templates/postmortem.md.j2: the incident table, summary, impact, root cause, timeline and action item
tables, review), 1.5-5 KB of generated Markdown, plus `document_ref`, `published_at` and `late`. Their words:
a few hundred everyday incident words drawn with Zipf weights (so some are in nearly every document and some in
few), and each incident's cause from a weighted list of technical ones (a deploy and its rollback in about a
quarter of them, a connection pool, DNS, a certificate, kafka lag ... down to BGP and a leap second in a handful).
The documents come from a random generator of their own, so the other rows are the same as without them."""

from __future__ import annotations

import itertools
import random
import statistics
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import Engine, make_url

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PEOPLE, TEAM = 200, 20  # 10 managers (the first of each team of 20) and their reports
SERVICES = [f"service-{n:02d}" for n in range(40)]
SEVERITIES = (("SEV1", 10), ("SEV2", 30), ("SEV3", 45), ("SEV4", 15))
STAGES = (("closed", 55), ("following_up", 15), ("drafting", 10), ("in_review", 7), ("published", 3),
          ("scheduling", 3), ("collecting_timeline", 2), ("skipped", 3), ("cancelled", 2))
PUBLISHED_STAGES = ("published", "following_up", "closed")
VERDICTS = ((None, 25), ("effective", 60), ("ineffective", 10), ("unknown", 5))
BATCH = 1000

# ------------------------------------------------------------------ the documents' words

# Everyday incident words, most common first (drawn with weight 1/rank: the first few are in nearly every
# document, the last ones in about one in ten).
WORDS = """
service request error users traffic alert team database latency customers minutes response timeout page
engineer incident retry queue deploy cluster config server health check metrics dashboard checkout upstream
downstream client connection memory disk network cache region instance node pod container release version
change change-freeze monitoring logs oncall escalation runbook saturation throughput capacity load spike
backlog worker job batch schedule cron storage bucket replica primary failover index query slow lock
deadlock transaction migration schema table row column write read heap thread process restart crash loop
signal threshold budget objective availability degraded partial outage recovery mitigation workaround patch
hotfix review approval pipeline build artifact image registry rollout canary percentage flag toggle switch
endpoint gateway proxy ingress route header payload json parse validation limit quota throttle burst
session token auth login password secret rotation expiry vault key permission role policy audit compliance
vendor provider contract support ticket status update communication stakeholder announcement channel bridge
call pager acknowledgement handoff shift timezone weekend holiday night morning afternoon evening week
month quarter customer-facing internal external partner merchant payment invoice order cart search
recommendation notification email sms push mobile web browser frontend backend api graphql grpc socket
stream topic partition consumer producer offset broker zookeeper snapshot backup restore retention
compaction vacuum bloat autovacuum fragmentation allocation garbage collector pause jvm heap-dump profile
flamegraph trace span sampling cardinality label histogram percentile p99 average median baseline
regression benchmark test coverage staging production sandbox environment terraform ansible helm chart
manifest namespace quota eviction scheduler autoscaler hpa cpu throttling limits requests oom kernel
driver firmware hardware rack datacenter zone availability-zone cross-region replication consistency
quorum leader election heartbeat gossip membership partitioning hashing shard rebalance hot-spot skew
""".split()
# Each incident's cause: (words in the title and root cause, weight, what went wrong, what fixed it).
CAUSES: tuple[tuple[str, float, str, str], ...] = (
    ("deploy", 25, "a bad deploy shipped a config change that broke request routing",
     "rolled back the deploy, and the rollback restored traffic"),
    ("connection pool", 10, "the connection pool to the database was exhausted by slow queries and retries",
     "raised the connection pool size and added a statement timeout"),
    ("DNS", 8, "DNS resolution failed after a resolver change; lookups timed out",
     "reverted the resolver change and lowered the DNS cache TTL"),
    ("certificate", 6, "an expired TLS certificate on the load balancer broke the handshake for clients",
     "renewed the certificate and added expiry monitoring"),
    ("kafka lag", 6, "kafka lag grew on the orders topic as consumers fell behind a rebalance",
     "added consumers and paused the rebalance until kafka lag recovered"),
    ("disk full", 6, "the disk filled with logs and the database stopped accepting writes",
     "cleaned up logs and added disk usage alerts"),
    ("memory leak", 6, "a memory leak in the new client library got pods OOM-killed under load",
     "pinned the previous library version and restarted pods"),
    ("feature flag", 5, "a feature flag was switched on for all users instead of one percent",
     "turned the feature flag off and added a review step for flag changes"),
    ("cache stampede", 5, "a cache stampede after an eviction overloaded the database",
     "added request coalescing and jittered cache expiry"),
    ("rate limiter", 4, "the rate limiter rejected legitimate traffic after a limits update",
     "raised the limits and fixed the rate limiter's window"),
    ("load balancer", 4, "the load balancer health check marked every backend unhealthy",
     "fixed the health check path and drained traffic gradually"),
    ("replica lag", 3, "replica lag on the read replicas served stale data to customers",
     "moved reads to the primary until replica lag caught up"),
    ("schema migration", 3, "a schema migration took a table lock during peak traffic",
     "killed the migration and rewrote it to run online"),
    ("third-party outage", 3, "a third-party payment provider outage failed every checkout",
     "failed over to the secondary provider"),
    ("clock skew", 1, "clock skew between nodes invalidated signed tokens",
     "restarted the NTP daemons and alerted on clock skew"),
    ("split-brain", 0.6, "a network partition caused split-brain in the cluster with two leaders",
     "fenced the old leader and rebuilt the replica"),
    ("BGP", 0.4, "a BGP route leak at our transit provider black-holed traffic to one region",
     "withdrew the routes and shifted traffic to other regions"),
    ("leap second", 0.15, "the leap second smeared inconsistently and stalled the scheduler",
     "restarted the scheduler with monotonic clocks"),
)
KINDS = ("alert", "note", "action", "status", "deploy", "page")
WORD_WEIGHTS = list(itertools.accumulate(1 / (rank + 1) for rank in range(len(WORDS))))
CAUSE_WEIGHTS = list(itertools.accumulate(w for _, w, _, _ in CAUSES))


def _sentence(rng: random.Random, low: int = 7, high: int = 16) -> str:
    words = rng.choices(WORDS, cum_weights=WORD_WEIGHTS, k=rng.randint(low, high))
    return " ".join(words).capitalize() + "."


def _paragraph(rng: random.Random, sentences: int) -> str:
    return " ".join(_sentence(rng) for _ in range(sentences))


def document(rng: random.Random, *, key: str, title: str, severity: str, services: list[str], owner: str,
             started: datetime, resolved: datetime, items: int) -> str:
    """A published postmortem's Markdown, 1.5-5 KB, shaped like closeloop/templates/postmortem.md.j2's."""
    cause, _, what, fix = rng.choices(CAUSES, cum_weights=CAUSE_WEIGHTS)[0]
    target = rng.randint(1500, 5000)
    dt = "%Y-%m-%d %H:%M UTC"
    head = [f"# Postmortem: {title}: {cause}", "", "| | |", "|---|---|", f"| Incident | pagerduty:{key} |",
            f"| Severity | {severity} |", f"| Services | {', '.join(services)} |", f"| Commander | {owner} |",
            f"| Started | {started:{dt}} |", f"| Resolved | {resolved:{dt}} |", f"| Postmortem owner | {owner} |", "",
            "## Durations", "", f"- Time to resolve: {int((resolved - started).total_seconds() // 60)}m", "",
            "## Summary", "", f"{services[0]} was degraded because {what}. {_paragraph(rng, 2)}", "",
            "## Impact", "", _paragraph(rng, rng.randint(1, 3)), "",
            "## Root cause", "", f"{what.capitalize()}. {_paragraph(rng, rng.randint(1, 3))}", "",
            "## Resolution", "", f"We {fix}. {_paragraph(rng, 1)}", ""]
    tail = ["## Action items", "", "| Title | Owner | Priority | Due | Ticket | Status |", "|---|---|---|---|---|---|"]
    for _ in range(items):
        tail.append(f"| {_sentence(rng, 3, 7)[:-1]} | {owner} | P{rng.randint(1, 4)} | "
                    f"{resolved + timedelta(days=rng.randint(7, 60)):%Y-%m-%d} | OPS-{rng.randint(1, 99999)} | open |")
    tail += ["", "## Review", "", "Reviewers: bob, erin", "", "Approved by: bob, erin", ""]
    timeline = ["## Timeline", "", "| Time (UTC) | Kind | What happened | Who | Source |", "|---|---|---|---|---|"]
    at = started
    size = sum(len(line) + 1 for line in head + tail + timeline)
    rows = 0
    while rows < 4 or (size < target - 600 and rows < 30):  # the rest of the size in lessons learned
        at += timedelta(minutes=rng.randint(1, 25))
        row = f"| {at:{dt}} | {rng.choice(KINDS)} | {_sentence(rng, 4, 12)[:-1]} | {owner} | pagerduty |"
        timeline.append(row)
        size += len(row) + 1
        rows += 1
    timeline.append("")
    lessons = ["## Lessons learned", "", "### What went badly", ""]
    body = []
    while size < target:
        sentence = _sentence(rng)
        body.append(sentence)
        size += len(sentence) + 1
    lessons += [" ".join(body), ""]
    return "\n".join(head + lessons + timeline + tail)[:5000]


# ------------------------------------------------------------------ the rows


def people() -> list[str]:
    return [f"person-{n:03d}" for n in range(PEOPLE)]


def team_of(manager: int) -> list[str]:
    """The manager's people (themselves included): a block of TEAM."""
    start = manager * TEAM
    return people()[start:start + TEAM]


def pick(rng: random.Random, weighted: tuple[tuple[Any, int], ...]) -> Any:
    return rng.choices([v for v, _ in weighted], [w for _, w in weighted])[0]


def owner(rng: random.Random, everyone: list[str]) -> str:
    """Skewed: a few people own a lot (on-call heavy teams), most own a little."""
    return everyone[min(int(rng.paretovariate(1.2)) * 7 + rng.randrange(7), len(everyone)) - 1] \
        if rng.random() < 0.3 else rng.choice(everyone)


def rows(postmortems: int, items: int, now: datetime, seed: int) -> Iterator[tuple[Any, list[dict[str, Any]]]]:
    """(table, rows) in insert order, in batches."""
    from closeloop.store.tables import ActionItemRow, IncidentRow, IncidentServiceRow, PostmortemRow

    rng = random.Random(seed)
    docs = random.Random(seed + 1)  # the documents' own: the other rows do not depend on them
    everyone = people()
    incidents: list[dict[str, Any]] = []
    services: list[dict[str, Any]] = []
    pms: list[dict[str, Any]] = []
    stages: list[str] = []
    per_postmortem = max(1, -(-items // postmortems))
    for n in range(1, postmortems + 1):
        started = now - timedelta(days=rng.uniform(0, 730))
        severity = pick(rng, SEVERITIES)
        own = rng.sample(SERVICES, rng.choice((1, 1, 1, 2, 2, 3)))
        resolved = started + timedelta(hours=rng.uniform(0.2, 12))
        title = f"{own[0]} returns errors ({n})"
        incidents.append(dict(id=n, source="pagerduty", external_id=f"P{n:06d}",
                              title=title, severity=severity, fingerprint=f"fp-{n % 500}",
                              started_at=started, resolved_at=resolved,
                              postmortem_required=True, recorded_at=started,
                              payload={"source": "pagerduty", "external_id": f"P{n:06d}", "title": f"{own[0]} ({n})",
                                       "severity": severity, "services": own}))
        services += [dict(incident_id=n, service=s) for s in own]
        stage = pick(rng, STAGES)
        stages.append(stage)
        waiting = stage in ("drafting", "in_review")
        due = now + timedelta(days=rng.uniform(-21, 21)) if waiting or stage == "scheduling" else None
        who = owner(rng, everyone)
        stalled = waiting and rng.random() < 0.2
        updated = started + timedelta(days=rng.uniform(1, 30))
        pm: dict[str, Any] = dict(id=f"postmortem/pagerduty/P{n:06d}", incident_id=n, owner=who, stage=stage,
                                  stalled=stalled, stage_due_at=due, document_ref=None, document_markdown=None,
                                  published_at=None, late=False, updated_at=updated)
        if stage in PUBLISHED_STAGES:
            published = min(resolved + timedelta(days=docs.uniform(1, 12)), updated)
            pm.update(document_ref=f"documents/P{n:06d}.md", published_at=published,
                      late=published - resolved > timedelta(days=8) or docs.random() < 0.1,
                      document_markdown=document(docs, key=f"P{n:06d}", title=title, severity=severity,
                                                 services=own, owner=who, started=started, resolved=resolved,
                                                 items=per_postmortem))
        pms.append(pm)
    yield from ((IncidentRow, incidents[i:i + BATCH]) for i in range(0, len(incidents), BATCH))
    yield from ((IncidentServiceRow, services[i:i + BATCH]) for i in range(0, len(services), BATCH))
    yield from ((PostmortemRow, pms[i:i + BATCH]) for i in range(0, len(pms), BATCH))

    batch: list[dict[str, Any]] = []
    for k in range(items):
        n = k % postmortems  # five per postmortem with the defaults
        pm, stage = pms[n], stages[n]
        number = k // postmortems + 1
        item_id = f"{pm['id']}/item-{number}"
        if stage in ("closed", "skipped"):
            status = pick(rng, (("done", 88), ("wont_do", 12)))
        elif stage == "cancelled":
            status = "cancelled"
        elif stage == "following_up":
            status = pick(rng, (("open", 60), ("done", 35), ("wont_do", 5)))
        else:
            status = "open"
        due = now + timedelta(days=rng.uniform(-200, 60))
        done = status == "done"
        verdict = pick(rng, VERDICTS) if done and stage != "following_up" else None
        ticket = f"OPS-{k + 1}" if rng.random() < 0.7 else None
        priority, kind = rng.choice(("P1", "P2", "P2", "P3", "P3", "P4")), rng.choice(("prevent", "detect",
                                                                                        "mitigate", "process"))
        who = owner(rng, everyone)
        title = f"Follow-up {number} of {pm['id']}"
        payload = {"id": item_id, "postmortem_id": pm["id"], "title": title, "description": "", "owner": who,
                   "priority": priority, "kind": kind, "due_at": due.isoformat(), "tracker": "jira",
                   "ticket_key": ticket, "ticket_url": f"https://jira.example.com/browse/{ticket}" if ticket else None,
                   "status": status, "verdict": verdict}
        batch.append(dict(id=item_id, postmortem_id=pm["id"], title=title, owner=who, priority=priority, kind=kind,
                          due_at=due, tracker="jira", ticket_key=ticket, status=status,
                          completed_at=due - timedelta(days=rng.uniform(0, 10)) if done else None, verdict=verdict,
                          payload=payload, updated_at=now - timedelta(days=rng.uniform(0, 100))))
        if len(batch) == BATCH:
            yield ActionItemRow, batch
            batch = []
    if batch:
        yield ActionItemRow, batch


def fill(engine: Engine, postmortems: int, items: int, now: datetime, seed: int) -> float:
    """Insert the rows, then VACUUM ANALYZE (as autovacuum would have by then); the seconds it took."""
    started = time.perf_counter()
    with engine.begin() as conn:
        for table, batch in rows(postmortems, items, now, seed):
            conn.execute(insert(table), batch)
        conn.execute(text("SELECT setval(pg_get_serial_sequence('incidents', 'id'), (SELECT max(id) FROM incidents))"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")
    return time.perf_counter() - started


def busiest(engine: Engine) -> tuple[str, int]:
    """The person with the most open items (the slowest "person" case) and their count."""
    with engine.connect() as conn:
        row = conn.execute(text("SELECT owner, count(*) FROM action_items WHERE status = 'open' "
                                "GROUP BY owner ORDER BY count(*) DESC, owner LIMIT 1")).one()
    return row[0], int(row[1])


def commonest_service(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text("SELECT service FROM incident_services GROUP BY service "
                                     "ORDER BY count(*) DESC, service LIMIT 1")).scalar_one())


class Database:
    """A fresh database `name` on the server of `pg_url` (dropped first if there); `drop()` at the end."""

    def __init__(self, pg_url: str, name: str) -> None:
        self.admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
        self.name = name
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        self.url = make_url(pg_url).set(database=name).render_as_string(hide_password=False)

    def drop(self, keep: bool = False) -> None:
        if not keep:
            with self.admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        self.admin.dispose()


def summary(ms: list[float]) -> dict[str, float]:
    ms = sorted(ms)
    return {"p50": round(statistics.median(ms), 1), "p95": round(ms[max(0, int(len(ms) * 0.95) - 1)], 1),
            "max": round(ms[-1], 1)}


def timed(call: Callable[[], Any], runs: int, warmup: int) -> dict[str, float]:
    """p50, p95 and max milliseconds of `runs` calls, one after another, after `warmup` untimed ones."""
    for _ in range(warmup):
        call()
    ms: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        ms.append((time.perf_counter() - started) * 1000)
    return summary(ms)


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
