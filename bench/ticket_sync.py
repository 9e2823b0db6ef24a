"""How many tracker calls one ticket reconciliation sweep costs (activities/reconcile.py).

N open action items spread over one Jira project and two GitHub repositories, their tickets put straight
into the stand-ins' state (closeloop/standins/), the items into a SQLite store; then one sweep through the
real trackers (the `jira` and PyGithub clients over HTTP), with the signals going into a counter instead of
Temporal. The stand-ins count every request they receive, per endpoint; the figure is set beside what one
GET per item would cost. The goal is at most 25 calls for 1,000 items.

    python bench/ticket_sync.py                 # 1,000 items
    python bench/ticket_sync.py --items 5000 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from closeloop import logging as closeloop_logging  # noqa: E402
from closeloop.activities.reconcile import reconcile  # noqa: E402
from closeloop.integrations.base import Tracker  # noqa: E402
from closeloop.integrations.github.tracker import GitHubConfig, GitHubTracker, ticket_key  # noqa: E402
from closeloop.integrations.jira.tracker import JiraConfig, JiraTracker  # noqa: E402
from closeloop.models import ActionItem, Incident, TicketStatusEvent  # noqa: E402
from closeloop.standins.github import GitHubStandin  # noqa: E402
from closeloop.standins.jira import JiraStandin  # noqa: E402
from closeloop.store.store import Store  # noqa: E402

GOAL = 25
PROJECT = "OPS"
REPOS = ("acme/checkout", "acme/api")
# what any client pays once before its first real request (and would pay for one GET per item too)
STARTUP = {"GET /rest/api/2/serverInfo", "GET /rest/api/2/field", "GET /repos/{owner}/{repo}"}


def split(n: int, parts: int) -> list[int]:
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def run(items: int, changed: int, validate: bool) -> dict[str, Any]:
    validators: dict[str, Any] = {}
    if validate:
        from closeloop.standins.spec import SPECS_DIR, ResponseValidator

        validators = {"jira": ResponseValidator(SPECS_DIR / "jira-platform-v3.json").check,
                      "github": ResponseValidator(SPECS_DIR / "github-rest-api.json").check}
    with tempfile.TemporaryDirectory(prefix="closeloop-bench-sync-") as tmp, \
            JiraStandin(project=PROJECT, validator=validators.get("jira")) as jira, \
            GitHubStandin(validator=validators.get("github")) as github:
        store = Store(f"sqlite:///{Path(tmp) / 'bench.db'}")
        try:
            n_jira, *n_repos = split(items, 1 + len(REPOS))
            keys: list[tuple[str, str]] = []  # (tracker, key)
            keys += [("jira", jira.add_issue(f"item {i}", labels=["closeloop"])) for i in range(n_jira)]
            for repo, n in zip(REPOS, n_repos, strict=True):
                github.add_repo(repo)
                keys += [("github", ticket_key(repo, github.add_issue(repo, f"item {i}", labels=["closeloop"])))
                         for i in range(n)]
            # every (items // changed)-th ticket closed as done behind closeloop's back
            step = max(1, items // changed) if changed else 0
            for i in range(0, items, step) if step else []:
                tracker, key = keys[i]
                if tracker == "jira":
                    jira.set_status(key, "Done", "Done")
                else:
                    repo, _, number = key.partition("#")
                    github.set_state(repo, int(number), "closed", "completed")
            expected_changes = len(range(0, items, step)) if step else 0

            now = datetime.now(UTC)
            incident = Incident(source="bench", external_id="SYNC-1", title="ticket sync benchmark")
            pid = incident.workflow_id
            store.records.upsert_postmortem(pid, incident, owner="alice", stage="following_up", stalled=False,
                                            stage_due_at=None)
            for n, (tracker, key) in enumerate(keys, start=1):
                store.records.upsert_action_item(ActionItem(id=f"{pid}/item-{n}", postmortem_id=pid,
                                                            title=f"item {n}", owner="alice",
                                                            due_at=now + timedelta(days=30), tracker=tracker,
                                                            ticket_key=key))

            trackers: dict[str, Tracker] = {
                "jira": JiraTracker(JiraConfig(url=jira.url, project=PROJECT, timeout=30.0)),
                "github": GitHubTracker(GitHubConfig(repo=REPOS[0], token="bench", base_url=github.base_url)),
            }
            signals: Counter[str] = Counter()

            async def signal(workflow_id: str, event: TicketStatusEvent) -> bool:
                signals[event.status] += 1
                return True

            jira.requests.clear()
            github.requests.clear()
            started = time.perf_counter()
            summary = asyncio.run(reconcile(store, trackers.__getitem__, signal, now))
            wall = time.perf_counter() - started
        finally:
            store.close()
        violations = jira.violations + github.violations
    calls = {"jira": dict(sorted(jira.requests.items())), "github": dict(sorted(github.requests.items()))}
    total = sum(sum(c.values()) for c in calls.values())
    startup = sum(n for c in calls.values() for endpoint, n in c.items() if endpoint in STARTUP)
    if summary.failures or summary.signals != expected_changes or violations:
        raise SystemExit(f"bench: the sweep did not do what was expected: failures={summary.failures}, "
                         f"signals={summary.signals} (expected {expected_changes}), violations={violations[:3]}")
    return {
        "items": items, "jira_items": n_jira, "github_items": dict(zip(REPOS, n_repos, strict=True)),
        "changed": expected_changes, "calls": calls, "total_calls": total, "tracker_counted_calls": summary.calls,
        "startup_calls": startup, "one_get_per_item": items + startup, "goal": GOAL, "goal_met": total <= GOAL,
        "signals": dict(signals), "wall_s": round(wall, 3), "validated": validate,
    }


def table(r: dict[str, Any]) -> str:
    repos = " + ".join(f"{n} in {repo}" for repo, n in r["github_items"].items())
    lines = [f"ticket sync: {r['items']} open items (jira {r['jira_items']} in {PROJECT}, github {repos}), "
             f"{r['changed']} tickets closed behind closeloop's back", "",
             f"{'tracker':8} {'endpoint':45} {'calls':>6}"]
    for tracker, endpoints in r["calls"].items():
        for endpoint, n in endpoints.items():
            lines.append(f"{tracker:8} {endpoint:45} {n:>6}")
    lines += [
        f"{'total':54} {r['total_calls']:>6}   (goal <= {r['goal']}: {'met' if r['goal_met'] else 'NOT met'}; "
        f"the trackers counted {r['tracker_counted_calls']})",
        f"{'one GET per item instead':54} {r['one_get_per_item']:>6}   ({r['items']} + {r['startup_calls']} start-up)",
        "",
        f"signals: {sum(r['signals'].values())} ({', '.join(f'{k} {v}' for k, v in r['signals'].items()) or 'none'}); "
        f"wall time {r['wall_s']:.2f} s" + (" (responses validated against the specs)" if r["validated"] else ""),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1000, help="open action items in all (default 1000)")
    parser.add_argument("--changed", type=int, default=10,
                        help="of which this many tickets are closed before the sweep (default 10)")
    parser.add_argument("--validate", action="store_true",
                        help="validate every stand-in response against the specs (slower wall time)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--log-level", default="WARNING", help="closeloop logs, on stderr (default WARNING)")
    args = parser.parse_args(argv)
    closeloop_logging.configure(args.log_level, json=False, stream=sys.stderr)
    if args.items < 1 or not 0 <= args.changed <= args.items:
        print("bench: --items must be at least 1 and --changed between 0 and --items", file=sys.stderr)
        return 2
    result = run(args.items, args.changed, args.validate)
    print(json.dumps(result, indent=2) if args.json else table(result))
    return 0 if result["goal_met"] or args.items > 1000 else 1


if __name__ == "__main__":
    sys.exit(main())
