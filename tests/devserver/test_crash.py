"""Crash tests on the real dev server: the worker is a separate `python worker.py` process that is SIGKILLed
in the middle of a lifecycle (no graceful shutdown) and replaced by a fresh one. The lifecycle must still
complete with exactly one ticket per action item and no notification delivered twice."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError

from closeloop.client import start_postmortem
from closeloop.models import (
    ActionItemSpec,
    CompleteItem,
    DraftSubmission,
    PostmortemState,
    PostmortemSummary,
    ReviewDecision,
    ReviewVote,
    Stage,
    VerdictInput,
)
from closeloop.workflows.action_item import ActionItemWorkflow
from closeloop.workflows.postmortem import PostmortemWorkflow
from tests.devserver.conftest import DevApp
from tests.temporal_env import incident

pytestmark = pytest.mark.devserver

T = TypeVar("T")

ITEMS = [
    ActionItemSpec(title="Validate config before push", owner="bob", priority="P1", kind="prevent"),
    ActionItemSpec(title="Alert on checkout 5xx", owner="erin", priority="P2", kind="detect"),
    ActionItemSpec(title="Runbook for config rollback", owner="alice", priority="P2", kind="mitigate"),
]
REVIEWERS = ("bob", "erin")
ATTENDEES = ("alice", "bob", "erin")  # owner, both reviewers, and the participant bob
EVERY = timedelta(seconds=3)  # FAST_POLICY's reminder_every
ITEM_REMINDERS_BEFORE = (timedelta(seconds=10), timedelta(seconds=3))
ESCALATION_TARGETS = ("owner", "manager", "skip_level")


def draft() -> DraftSubmission:
    return DraftSubmission(by="alice", summary="Checkout failed for 40 minutes.", root_cause="A bad config push.",
                           action_items=ITEMS)


# --------------------------------------------------------------------------- polling and driving


async def eventually(what: str, probe: Callable[[], Awaitable[T | None]], timeout: float,
                     diagnostics: Callable[[], str] = lambda: "") -> T:
    """Poll `probe` until it returns something truthy; fail with diagnostics after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = await asyncio.wait_for(probe(), timeout=5)
        except Exception:  # noqa: BLE001 - no worker to answer a query, workflow not started yet, ...
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{diagnostics()}")
        await asyncio.sleep(0.05)


async def query(handle: WorkflowHandle[Any, Any], timeout: float = 5.0) -> Any:
    q = ActionItemWorkflow.state if "/item-" in handle.id else PostmortemWorkflow.state
    try:
        return await asyncio.wait_for(handle.query(q), timeout=timeout)
    except Exception:  # noqa: BLE001
        return None


async def update(handle: WorkflowHandle[Any, Any], upd: Any, arg: Any, update_id: str, *,
                 timeout: float = 150.0) -> Any:
    """Execute an Update, retrying with the same update id (the server deduplicates by id) until it completes.
    While no worker runs it simply waits; a rejection by the validator is raised at once."""
    from temporalio.client import WorkflowUpdateFailedError

    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            return await asyncio.wait_for(handle.execute_update(upd, arg, id=update_id), timeout=20)
        except WorkflowUpdateFailedError:
            raise
        except RPCError as e:
            if "already completed" in str(e):
                raise
            last = e
            await asyncio.sleep(0.2)
        except Exception as e:  # noqa: BLE001 - our timeout, an RPC deadline, a poll that came back empty
            last = e
            await asyncio.sleep(0.2)
    raise AssertionError(f"update {update_id} on {handle.id} did not complete within {timeout}s: {last!r}")


class Lifecycle:
    """One incident's lifecycle on the dev server, driven like people would, with a diagnostics dump."""

    def __init__(self, app: DevApp) -> None:
        self.app = app
        self.inc = incident(started_at=datetime.now().astimezone() - timedelta(hours=2),
                            resolved_at=datetime.now().astimezone() - timedelta(minutes=5))
        self.pm = self.inc.workflow_id
        self.handle = app.env.client.get_workflow_handle_for(PostmortemWorkflow.run, self.pm)
        self.t0 = time.monotonic()
        self.marks: list[tuple[float, str]] = []
        self.lost_log_lines: list[str] = []
        self.in_flight_kills = 0

    def mark(self, what: str) -> None:
        self.marks.append((time.monotonic() - self.t0, what))
        print(f"+{self.marks[-1][0]:6.2f}s {what}", flush=True)

    def item_handle(self, n: int) -> WorkflowHandle[Any, Any]:
        return self.app.env.client.get_workflow_handle(f"{self.pm}/item-{n}")

    async def start(self) -> None:
        started = await start_postmortem(self.app.env.client, self.app.task_queue, self.inc)
        assert started.new
        self.mark("lifecycle started")

    def outbox(self) -> list[Any]:
        return self.app.store.local.notifications(self.pm)

    def has_key(self, suffix: str) -> bool:
        return any(n.key == f"{self.pm}/{suffix}" for n in self.outbox())

    def diagnostics(self) -> str:
        row = self.app.store.records.get_postmortem(self.pm)
        parts = [
            f"postmortem {self.pm}: stage in store {row.stage if row else None}",
            "test marks:", *(f"  +{t:6.2f}s {what}" for t, what in self.marks),
            "outbox:", *(f"  {n.at:%H:%M:%S.%f} {n.kind:16} {n.recipient:6} {n.key}" for n in self.outbox()),
            "tickets:", *(f"  {t.key} {t.marker} {t.status}" for t in self.app.store.local.tickets()),
            self.app.workers.diagnostics(),
        ]
        return "\n".join(parts)

    async def state(self) -> PostmortemState | None:
        return await query(self.handle)

    async def wait_store(self, what: str, pred: Callable[[], bool], timeout: float = 180) -> None:
        """Poll the store (what the workflows wrote through their activities): unlike a Query it needs no
        worker, so it answers at once while a killed worker's tasks wait out their timeouts."""
        async def probe() -> bool:
            return pred()

        await eventually(what, probe, timeout, self.diagnostics)
        self.mark(what)

    async def wait_stage(self, stage: Stage, timeout: float = 180) -> None:
        def there() -> bool:
            row = self.app.store.records.get_postmortem(self.pm)
            return row is not None and row.stage == stage.value

        await self.wait_store(f"stage {stage.value}", there, timeout)

    async def wait_tracking(self, n: int, timeout: float = 180) -> None:
        """The item's ticket is open and its owner notified: the item waits for completion."""
        await self.wait_store(f"item-{n} tracking", lambda: self.has_key(f"item-{n}/opened"), timeout)

    async def submit_draft(self) -> None:
        await update(self.handle, PostmortemWorkflow.submit_draft, draft(), "submit-draft-0")
        self.mark("draft submitted")

    async def approve(self, reviewer: str) -> None:
        await update(self.handle, PostmortemWorkflow.review,
                     ReviewVote(reviewer=reviewer, decision=ReviewDecision.approve), f"review-1-{reviewer}")
        self.mark(f"{reviewer} approved")

    async def complete(self, n: int) -> None:
        owner = ITEMS[n - 1].owner
        await update(self.item_handle(n), ActionItemWorkflow.complete, CompleteItem(by=owner), f"complete-{n}")
        self.mark(f"item-{n} completed")

    async def give_verdict(self, n: int) -> None:
        """The owner says it worked, unless the verdict timeout passed first (then the verdict is 'unknown')."""
        from temporalio.client import WorkflowUpdateFailedError

        owner = ITEMS[n - 1].owner
        item_id = f"{self.pm}/item-{n}"

        def asked_or_closed() -> bool:
            return self.has_key(f"item-{n}/c0/verdict_request") or any(
                i.id == item_id and i.verdict for i in self.app.store.records.action_items(self.pm))

        await self.wait_store(f"item-{n} verdict requested", asked_or_closed)
        try:
            await update(self.item_handle(n), ActionItemWorkflow.verdict,
                         VerdictInput(by=owner, effective=True, note="no repeats"), f"verdict-{n}")
            self.mark(f"item-{n} verdict given")
        except (WorkflowUpdateFailedError, RPCError) as e:  # the timeout passed, the item closed without it
            self.mark(f"item-{n} verdict refused: {getattr(e, 'cause', None) or e}")

    async def result(self, timeout: float = 150) -> PostmortemSummary:
        try:
            summary = await asyncio.wait_for(self.handle.result(), timeout=timeout)
        except TimeoutError:
            raise AssertionError(f"the lifecycle did not finish within {timeout}s\n{self.diagnostics()}") from None
        self.mark("lifecycle finished")
        return summary


# --------------------------------------------------------------------------- what exactly once means here


def _reminder_slot(base: datetime, index: int, due: datetime | None) -> datetime:
    """When reminder `index` is planned (closeloop.chase_plan.reminder_time): every EVERY from the chase start for
    drafts and reviews; ITEM_REMINDERS_BEFORE before the due time, then every EVERY after it, for items."""
    if due is None:
        return base + (index + 1) * EVERY
    offsets = sorted(ITEM_REMINDERS_BEFORE, reverse=True)
    if index < len(offsets):
        return due - offsets[index]
    return due + (index - len(offsets) + 1) * EVERY


# A SIGKILL holds a workflow up for at most an activity's start-to-close timeout plus its retry interval
# (60 s + 5 s for notify and open_ticket), plus a sticky-queue timeout (10 s); more than that is a defect.
OUTAGE = timedelta(seconds=80)


def check_reminders(scope: str, sent: dict[int, datetime], base: datetime, kills: list[datetime], *,
                    due: datetime | None = None, started: datetime | None = None) -> list[str]:
    """Reminder numbers never repeat (one outbox row per number), each goes out at its planned time (within one
    interval after it; or within the outage a SIGKILL causes, when a worker was killed shortly before), and they
    are contiguous, except where the chase
    skipped one on purpose: a reminder whose time had passed by a whole interval when a worker next ran
    (stale: skipped, never sent late in a flood) while a SIGKILL held the workflow up; or, for items, one
    planned before tracking began."""
    problems = []
    for i, at in sent.items():
        slot = _reminder_slot(base, i, due)
        # on time: within an interval of its slot; or, when a SIGKILL held the workflow up around then, within
        # the outage a kill may cause (the new worker's start, the sticky queue's timeout, a retried activity)
        held_up = any(slot - OUTAGE <= k <= at for k in kills)
        if not (slot - timedelta(milliseconds=50) <= at < slot + (OUTAGE if held_up else EVERY)):
            problems.append(f"{scope}: reminder {i} planned for {slot:%T.%f} was sent at {at:%T.%f}"
                            f"{' (a worker was killed shortly before)' if held_up else ''}")
    for j in range(max(sent, default=-1)):
        if j in sent:
            continue
        slot = _reminder_slot(base, j, due)
        if started is not None and slot <= started:
            continue
        next_at = sent[min(i for i in sent if i > j)]
        killed = any(slot - OUTAGE <= k <= slot + EVERY for k in kills)
        if not (next_at >= slot + EVERY and killed):
            problems.append(f"{scope}: reminder {j} (planned {slot:%T.%f}) is missing; the next one went out at "
                            f"{next_at:%T.%f}; {'a' if killed else 'no'} worker was killed shortly before")
    return problems


def check_escalations(scope: str, sent: dict[int, tuple[str, str]], owner_chain: dict[str, str]) -> list[str]:
    """Escalation steps are never skipped nor repeated: numbers 0..n-1, each to the next role of the chain."""
    problems = []
    if sorted(sent) != list(range(len(sent))):
        problems.append(f"{scope}: escalation steps {sorted(sent)} are not contiguous from 0")
    for i, (_kind, recipient) in sent.items():
        want = owner_chain[ESCALATION_TARGETS[i]]
        if recipient != want:
            problems.append(f"{scope}: escalation {i} went to {recipient}, not {want}")
    return problems


CHAIN = {  # TEST_CONFIG's directory: everyone reports to carol, carol to dave
    "alice": {"owner": "alice", "manager": "carol", "skip_level": "dave"},
    "bob": {"owner": "bob", "manager": "carol", "skip_level": "dave"},
    "erin": {"owner": "erin", "manager": "carol", "skip_level": "dave"},
}


def check_exactly_once(life: Lifecycle, summary: PostmortemSummary, state: PostmortemState) -> None:
    app, pm = life.app, life.pm
    diag = life.diagnostics
    assert summary.stage == Stage.closed, diag()
    assert summary.review_rounds == 1, diag()
    assert len(summary.items) == len(ITEMS), diag()
    item_ids = [f"{pm}/item-{n}" for n in range(1, len(ITEMS) + 1)]
    assert sorted(i.id for i in summary.items) == item_ids, diag()

    # exactly one ticket per action item, found by its marker
    tickets = app.store.local.tickets()
    assert len(tickets) == len(ITEMS), diag()
    assert sorted(t.marker for t in tickets) == sorted(f"closeloop:{i}" for i in item_ids), diag()
    assert len({t.key for t in tickets}) == len(ITEMS), diag()
    by_marker = {t.marker: t.key for t in tickets}
    for item in summary.items:
        assert item.ticket_key == by_marker[f"closeloop:{item.id}"], diag()
        assert item.status.value == "done" and item.verdict is not None, diag()

    rows = life.outbox()
    keys = [n.key for n in rows]
    assert len(keys) == len(set(keys)), diag()  # the table's unique key, checked anyway
    rel = [(n.kind, n.recipient, n.key[len(pm) + 1:], n.at) for n in rows]
    counts = Counter((kind, who) for kind, who, _k, _at in rel)
    problems: list[str] = []

    def expect(kind: str, who: str, n: int) -> None:
        if counts[(kind, who)] != n:
            problems.append(f"{kind} to {who}: {counts[(kind, who)]} sent, {n} expected")

    for person in ATTENDEES:
        expect("invite", person, 1)
        expect("published", person, 1)
    expect("draft_requested", "alice", 1)
    for reviewer in REVIEWERS:
        expect("review_request", reviewer, 1)
    owners = Counter(spec.owner for spec in ITEMS)
    for person, n in owners.items():
        expect("item_opened", person, n)
        expect("verdict_request", person, n)
    per_item = Counter((kind, key.split("/")[0]) for kind, _w, key, _at in rel if key.startswith("item-"))
    for n in range(1, len(ITEMS) + 1):
        for kind in ("item_opened", "verdict_request"):
            if per_item[(kind, f"item-{n}")] != 1:
                problems.append(f"item-{n}: {per_item[(kind, f'item-{n}')]} {kind}, 1 expected")
    known = {"invite", "published", "draft_requested", "review_request", "item_opened", "verdict_request",
             "reminder", "review_reminder", "item_reminder", "escalation", "item_escalation"}
    for kind, who, key, _at in rel:
        if kind not in known:
            problems.append(f"unexpected {kind} to {who} ({key})")

    # reminders and escalations, per chase
    draft_rem: dict[int, datetime] = {}
    draft_esc: dict[int, tuple[str, str]] = {}
    review_rem: dict[str, dict[int, datetime]] = defaultdict(dict)
    review_esc: dict[str, dict[int, tuple[str, str]]] = defaultdict(dict)
    item_rem: dict[str, dict[int, datetime]] = defaultdict(dict)
    item_esc: dict[str, dict[int, tuple[str, str]]] = defaultdict(dict)
    for kind, who, key, at in rel:
        parts = key.split("/") + ["", "", "", ""]
        if parts[0] == "draft" and parts[2] == "reminder":
            draft_rem[int(parts[3])] = at
        elif parts[0] == "draft" and parts[2] == "escalation":
            draft_esc[int(parts[3])] = (kind, who)
        elif parts[0] == "review" and parts[2] == "reminder":
            review_rem[parts[4]][int(parts[3])] = at
        elif parts[0] == "review" and parts[2] == "escalation":
            review_esc[parts[4]][int(parts[3])] = (kind, who)
        elif parts[0].startswith("item-") and parts[2] == "reminder":
            item_rem[parts[0]][int(parts[3])] = at
        elif parts[0].startswith("item-") and parts[2] == "escalation":
            item_esc[parts[0]][int(parts[3])] = (kind, who)
    assert state.draft_chase is not None and state.review_chase is not None, diag()
    kills = [datetime.fromtimestamp(k, UTC) for _s, k in app.workers.lifetimes if k is not None]
    problems += check_reminders("draft", draft_rem, state.draft_chase.started_at, kills)
    problems += check_escalations("draft", draft_esc, CHAIN["alice"])
    for reviewer in REVIEWERS:
        problems += check_reminders(f"review/{reviewer}", review_rem[reviewer], state.review_chase.started_at,
                                    kills)
        problems += check_escalations(f"review/{reviewer}", review_esc[reviewer], CHAIN[reviewer])
    opened = {key.split("/")[0]: at for kind, _w, key, at in rel if kind == "item_opened"}
    for item in summary.items:
        name = item.id.rsplit("/", 1)[1]
        problems += check_reminders(name, item_rem[name], opened[name], kills, due=item.due_at,
                                    started=opened[name])
        problems += check_escalations(name, item_esc[name], CHAIN[item.owner])

    # The log notifier logs each first delivery once: one "notification" log line per outbox row, none twice.
    # It commits the outbox row before it writes the log line (integrations/local/notifier.py), so a SIGKILL
    # between the two loses that line for good (the retry finds the row and stays quiet): a row without a
    # log line is accepted only when the worker that ran it was killed right after the row was committed.
    logged = [r for r in app.workers.log_records() if r.get("event") == "notification"]
    logged_ids = Counter((r["kind"], r["to"], r.get("item_id"), r["event_time"]) for r in logged)
    dupes = [k for k, c in logged_ids.items() if c > 1]
    if dupes:
        problems.append(f"notifications logged more than once: {dupes}")
    row_by_id = {(n.kind, n.recipient, n.item_id, n.at.isoformat()): n for n in rows}
    if set(logged_ids) - set(row_by_id):
        problems.append(f"logged but not in the outbox: {sorted(set(logged_ids) - set(row_by_id))}")
    unlogged = [row_by_id[k] for k in sorted(set(row_by_id) - set(logged_ids))]
    for n in unlogged:
        if app.workers.killed_soon_after(n.sent_at.timestamp(), within=1.0):
            life.lost_log_lines.append(n.key)
        else:
            problems.append(f"{n.key} is in the outbox but was never logged, and no kill explains it")
    if life.lost_log_lines:
        print(f"\nrecorded in the outbox but not logged (worker killed between commit and log line): "
              f"{life.lost_log_lines}")
    assert not problems, "\n".join(problems) + "\n" + diag()


async def final_state(life: Lifecycle) -> PostmortemState:
    """The closed workflow's state, through a query answered by the running worker."""
    return await eventually("the final state", life.state, 60, life.diagnostics)


# --------------------------------------------------------------------------- the tests


async def pending(life: Lifecycle, pid: int | None = None) -> list[str]:
    """Activities the server counts as pending for the lifecycle and its items. With `pid`: only those a
    worker process `pid` had started and not reported back; after that worker's SIGKILL each of them stays
    lost until its start-to-close timeout, then runs again on another worker."""
    from temporalio.api.enums.v1 import PendingActivityState

    out = []
    for h in [life.handle, *(life.item_handle(n) for n in range(1, len(ITEMS) + 1))]:
        try:
            desc = await asyncio.wait_for(h.describe(), timeout=5)
        except Exception:  # noqa: BLE001 - the child does not exist yet
            continue
        for a in desc.raw_description.pending_activities:
            if pid is None or (a.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
                               and a.last_worker_identity.startswith(f"{pid}@")):
                out.append(f"{h.id.rsplit('/', 1)[-1]}:{a.activity_type.name}")
    return out


async def kill(life: Lifecycle, why: str) -> None:
    """SIGKILL the worker, start a fresh one, and note what the dead one left unfinished."""
    workers = life.app.workers
    pid = workers.procs[-1].pid
    workers.restart(why)
    lost = await pending(life, pid)
    life.in_flight_kills += bool(lost)
    life.mark(f"SIGKILL ({why}); in flight: {', '.join(lost) or 'no activity'}")


async def kill_when(life: Lifecycle, why: str, pred: Callable[[], bool], timeout: float = 30) -> None:
    """SIGKILL the worker the moment `pred` (a look at the store) turns true, then start a fresh worker."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"no moment to kill ({why}) within {timeout}s\n{life.diagnostics()}")
        await asyncio.sleep(0.001)
    await kill(life, why)


async def kill_when_quiet(life: Lifecycle, why: str, timeout: float = 15) -> None:
    """SIGKILL at a moment when no activity is pending (best effort: one may start right then): the lost
    workflow tasks then cost a sticky-queue timeout (~10 s), not an activity's start-to-close timeout (~65 s)."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while quiet < 3 and time.monotonic() < deadline:
        quiet = 0 if await pending(life) else quiet + 1
        await asyncio.sleep(0.01)
    await kill(life, why)


def report(life: Lifecycle) -> None:
    workers = life.app.workers
    print(f"\n{life.pm}: closed after {time.monotonic() - life.t0:.0f}s; {len(workers.killed)} SIGKILLs "
          f"(return codes {sorted(set(workers.killed))}), {life.in_flight_kills} with activities in flight; "
          f"{len(life.app.store.local.tickets())} tickets; {len(life.outbox())} notifications, each delivered once; "
          f"log lines lost to a kill: {len(life.lost_log_lines)}")
    opened: dict[str, list[str]] = defaultdict(list)
    for r in workers.log_records():
        if r.get("event") == "ticket ready":
            opened[r["item"].rsplit("/", 1)[-1]].append(f"worker-{r['_worker']} attempt {r['attempt']}: {r['ticket']}")
    for item, runs in sorted(opened.items()):
        if len(runs) > 1:
            print(f"  {item}: open_ticket ran again after a kill and found its ticket: {'; '.join(runs)}")


async def test_sigkill_at_chosen_points(dev_app: DevApp) -> None:
    """SIGKILL the worker while a draft reminder is being sent, while the items' tickets are being opened,
    while the items wait for completion, and while they wait for the effectiveness review."""
    workers, store = dev_app.workers, dev_app.store
    life = Lifecycle(dev_app)
    try:
        workers.start()
        await asyncio.to_thread(workers.wait_ready)
        await life.start()

        # 1. drafting: the moment the first reminder is in the outbox (its activity not yet reported back)
        await life.wait_stage(Stage.drafting)
        await kill_when(life, "drafting, first reminder going out", lambda: life.has_key("draft/0/reminder/0"))
        await life.submit_draft()

        # 2. right after both approvals, the moment the first ticket exists: ticket creation is in flight
        await life.wait_stage(Stage.in_review)
        for reviewer in REVIEWERS:
            await life.approve(reviewer)
        await kill_when(life, "tickets being opened", lambda: len(store.local.tickets()) > 0)
        life.mark(f"tickets at the kill: {[t.key for t in store.local.tickets()]}")

        # 3. while the items wait for completion
        for n in range(1, len(ITEMS) + 1):
            await life.wait_tracking(n)
        await kill_when_quiet(life, "items waiting for completion")
        for n in range(1, len(ITEMS) + 1):
            await life.complete(n)

        # 4. while the items wait for the effectiveness review
        await asyncio.sleep(0.5)
        await kill_when_quiet(life, "items waiting for the effectiveness review")
        for n in range(1, len(ITEMS) + 1):
            await life.give_verdict(n)

        summary = await life.result()
        state = await final_state(life)
        assert workers.killed.count(-9) >= 3, workers.killed
        check_exactly_once(life, summary, state)
        report(life)
    finally:
        workers.stop_all()


async def test_sigkill_chaos(dev_app: DevApp) -> None:
    """Kill and restart the worker at random moments (0.3-1.5 s after each fresh worker is up) for up to a
    minute, through a whole lifecycle with three action items whose people take their time (seeded), acting
    through Updates; then let the last worker finish it."""
    workers = dev_app.workers
    life = Lifecycle(dev_app)
    rng = random.Random(20240611)
    think = random.Random(7)  # the people's pace, independent of the chaos
    done = asyncio.Event()

    async def chaos() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            await asyncio.to_thread(workers.wait_ready)
            try:
                await asyncio.wait_for(done.wait(), timeout=rng.uniform(0.3, 1.5))
                break
            except TimeoutError:
                pass
            await kill(life, "chaos")
        life.mark(f"chaos over after {len(workers.killed)} kills")

    async def item(n: int) -> None:
        await life.wait_tracking(n)
        await asyncio.sleep(think.uniform(1, 8))
        await life.complete(n)
        await asyncio.sleep(think.uniform(0, 2))
        await life.give_verdict(n)

    try:
        workers.start()
        await asyncio.to_thread(workers.wait_ready)
        await life.start()
        monkey = asyncio.create_task(chaos())
        try:
            await life.wait_stage(Stage.drafting)
            await asyncio.sleep(think.uniform(4, 8))
            await life.submit_draft()
            await life.wait_stage(Stage.in_review)
            for reviewer in REVIEWERS:
                await asyncio.sleep(think.uniform(1, 4))
                await life.approve(reviewer)
            await asyncio.gather(*(item(n) for n in range(1, len(ITEMS) + 1)))
            summary = await life.result(timeout=180)
        finally:
            done.set()
            await monkey
        state = await final_state(life)
        assert workers.killed.count(-9) >= 3, workers.killed
        check_exactly_once(life, summary, state)
        report(life)
    finally:
        workers.stop_all()
