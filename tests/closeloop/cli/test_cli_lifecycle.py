"""The real `closeloop` executable, in subprocesses, driving a lifecycle on the time-skipping server with a
real worker: resolve -> drafting -> draft with an item -> two approvals -> ticket -> ticket closed -> item done."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from closeloop.secrets import Secrets
from closeloop.web.app import create_app
from tests.serving import serving
from tests.temporal_env import App


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


OPERATOR_TOKEN = "cli-test-operator-token-0123456789"


@asynccontextmanager
async def web_for(app: App) -> AsyncIterator[str]:
    """The web app the CLI's --as goes through, with one operator credential (`ci`)."""
    async def client_factory() -> Any:
        return app.client

    secrets = Secrets({"CLOSELOOP_OPERATOR_TOKENS": f"ci:{OPERATOR_TOKEN}"})
    async with serving(create_app(app.config, client_factory, secrets=secrets, store=app.store)) as url:
        yield url


class Cli:
    def __init__(self, app: App, cwd: str, web_url: str = "http://127.0.0.1:9") -> None:
        self.cwd = cwd
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CLOSELOOP_")},
            "CLOSELOOP_CONFIG": app.config.source,
            "CLOSELOOP_TEMPORAL_ADDRESS": app.client.service_client.config.target_host,
            "CLOSELOOP_TASK_QUEUE": app.task_queue,
            "CLOSELOOP_DB_URL": app.config.db_url,
            "CLOSELOOP_URL": web_url,
            "CLOSELOOP_OPERATOR_TOKEN": OPERATOR_TOKEN,
        }

    def with_env(self, env: dict[str, str]) -> Cli:
        self.env = {**self.env, **env}
        return self

    async def __call__(self, *args: str, ok: bool = True) -> Run:
        # Async subprocess: the worker runs on this event loop and must keep running meanwhile.
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "closeloop.cli.main", *args, cwd=self.cwd, env=self.env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        run = Run(proc.returncode or 0, out.decode(), err.decode())
        assert "Traceback" not in run.err, run.err
        if ok:
            assert run.code == 0, (args, run)
        return run

    async def until(self, predicate: Callable[[Any], bool], *args: str, timeout: float = 45.0) -> Any:
        deadline = asyncio.get_running_loop().time() + timeout
        last: Any = None
        while asyncio.get_running_loop().time() < deadline:
            last = (await self(*args)).json()
            if last is not None and predicate(last):
                return last
            await asyncio.sleep(0.2)
        raise AssertionError(f"`closeloop {' '.join(args)}` never satisfied the condition; last: {last!r:.2000}")


def one_line(run: Run) -> str:
    lines = [line for line in run.err.splitlines() if line.strip()]
    assert len(lines) == 1, run.err
    return lines[0]


async def test_cli_drives_a_lifecycle(app: App, tmp_path: Any) -> None:
    async with web_for(app) as url:
        await drive_a_lifecycle(app, Cli(app, str(tmp_path), url), tmp_path)


async def drive_a_lifecycle(app: App, cli: Cli, tmp_path: Any) -> None:
    ext = f"INC-{uuid.uuid4().hex[:6]}"
    short = f"api/{ext}"
    wid = f"postmortem/api/{ext}"

    started = (await cli("incident", "resolve", "--source", "api", "--id", ext, "--title", "Checkout returns 500s",
                         "--severity", "SEV2", "--service", "checkout", "--commander", "alice",
                         "--participant", "bob", "--started-at", "2025-03-01T13:00:00Z",
                         "--link", "Dashboard=https://grafana.example/d/checkout", "--json")).json()
    assert started == {"workflow_id": wid, "new": True}
    app.handles.append(app.client.get_workflow_handle(wid))  # terminated after the test
    again = await cli("incident", "resolve", "--source", "api", "--id", ext, "--title", "Checkout returns 500s")
    assert again.out.strip() == f"{wid} already exists (duplicate trigger ignored)"

    state = await cli.until(lambda s: s["stage"] == "drafting", "status", f"api:{ext}", "--json")
    assert state["owner"] == "alice" and state["plan"]["reviewers"] == ["bob", "erin"]
    human = (await cli("status", short)).out
    assert "stage:      drafting" in human and "owner:      alice" in human

    # a validator rejection: only the owner may submit the draft
    rejected = await cli("draft", "submit", short, "--as", "bob", "--summary", "x", ok=False)
    assert rejected.code == 1
    assert one_line(rejected) == "closeloop: rejected: only the owner (alice) can submit the draft, not bob"

    # the policy's quality checks: an item nobody can tell is done is refused before the workflow sees it
    unmeasurable = await cli("draft", "submit", wid, "--as", "alice", "--summary", "Checkout failed.",
                             "--item", "Validate config before push|bob|P1|prevent", ok=False)
    assert unmeasurable.code == 2 and "quality checks: action item 1" in one_line(unmeasurable)
    assert "done_when" in one_line(unmeasurable)
    submitted = await cli("draft", "submit", wid, "--as", "alice", "--summary", "Checkout failed for 40 minutes.",
                          "--root-cause", "A bad config push.",
                          "--item", "Validate config before push|bob|P1|prevent||a push with an unknown key fails")
    assert submitted.out.strip() == "draft 1 accepted with 1 action item(s)"
    await cli.until(lambda s: s["stage"] == "in_review", "status", short, "--json")

    assert (await cli("review", "approve", short, "--as", "bob")).out.strip() == "approve recorded for round 1"
    twice = await cli("review", "approve", short, "--as", "bob", ok=False)
    assert twice.code == 1
    assert one_line(twice) == "closeloop: rejected: bob already voted in review round 1"
    await cli("review", "approve", short, "--as", "erin", "--comment", "clear")

    state = await cli.until(lambda s: s["stage"] == "following_up" and s["items"] and s["items"][0]["ticket_key"],
                            "status", short, "--json")
    item = state["items"][0]
    assert item["id"] == f"{wid}/item-1" and item["owner"] == "bob" and item["status"] == "open"
    key = item["ticket_key"]
    human = (await cli("status", short)).out
    assert "following_up" in human and key in human and "Validate config before push" in human
    assert "bob approved; erin approved (clear)" in human

    tickets = (await cli("tickets", "--json")).json()
    mine = [t for t in tickets if t["item_id"] == item["id"]]
    assert len(mine) == 1 and mine[0]["key"] == key and mine[0]["status"] == "open"

    closed = await cli("ticket", "close", key)
    assert closed.out.strip() == f"{key} is now done; told {item['id']}"
    await cli.until(lambda s: s["items"][0]["status"] == "done", "status", short, "--json")
    assert [t["status"] for t in (await cli("tickets", "--json")).json() if t["key"] == key] == ["done"]

    # the item is done now: completing it again is rejected with the validator's reason
    again = await cli("item", "complete", f"{short}/item-1", "--as", "bob", ok=False)
    assert again.code == 1 and one_line(again).startswith("closeloop: rejected: the item is not open")

    # every --as went through the web app's operator API: recorded as the operator's acts, refusals too
    audit = [(a.person, a.action, a.via, a.outcome.split(":")[0]) for a in reversed(app.store.views.audit(wid))]
    assert audit == [("bob", "operator.submit_draft", "operator:ci", "refused"),
                     ("alice", "operator.submit_draft", "operator:ci", "refused"),
                     ("alice", "operator.submit_draft", "operator:ci", "ok"),
                     ("bob", "operator.review", "operator:ci", "ok"),
                     ("bob", "operator.review", "operator:ci", "refused"),
                     ("erin", "operator.review", "operator:ci", "ok")]
    # without the operator credential, --as is refused before anything runs; with a wrong one, by the web app
    for env in ({"CLOSELOOP_OPERATOR_TOKEN": ""}, {"CLOSELOOP_OPERATOR_TOKEN": "not-the-operator-token-xyz"}):
        denied = await Cli(app, str(tmp_path), cli.env["CLOSELOOP_URL"]).with_env(env)(
            "item", "complete", f"{short}/item-1", "--as", "bob", ok=False)
        assert denied.code == 2 and ("operator" in one_line(denied)), denied
    assert len(app.store.views.audit(f"{wid}/item-1")) == 1  # the one refused "again" above, nothing more

    outbox = (await cli("notifications", short, "--json")).json()
    kinds = {(n["kind"], n["recipient"]) for n in outbox}
    assert {("draft_requested", "alice"), ("review_request", "bob"), ("item_opened", "bob")} <= kinds

    # unknown ids and a server without visibility are one-line runtime errors
    missing = await cli("status", "api/NOPE-404", ok=False)
    assert missing.code == 1 and one_line(missing) == "closeloop: no postmortem postmortem/api/NOPE-404"
    listing = await cli("status", ok=False)
    assert listing.code == 1 and "cannot list workflows" in one_line(listing)
    stalled = await cli("stalled", ok=False)
    assert stalled.code == 1 and "cannot list workflows" in one_line(stalled)
