"""A Slack press that the Update's validator refuses leaves no trace at all. On the real dev server: Temporal
Server drops a rejected Update's speculative workflow task, so the history does not grow by a single event (the
time-skipping test server keeps that task's three events; tests/closeloop/web/test_slack_interactions.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from closeloop.workflows.postmortem import PostmortemWorkflow
from tests.closeloop.web.test_slack_interactions import DAVE, in_review, settled_length, slack_env


async def test_a_refused_press_writes_no_event(dev_env: WorkflowEnvironment, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    async with slack_env(dev_env, tmp_path, monkeypatch) as env:
        handle = await in_review(env)
        approve = await env.button("U0BOB", "approve")
        assert (await env.press(approve, "U0BOB")).status_code == 200
        await env.app.wait_for(handle, lambda s: len(s.reviews) == 1)
        before = await settled_length(env.app, handle)
        for user in ("U0BOB", "U0CAROL", DAVE):  # a double click; no reviewer; no reviewer, found by email
            assert (await env.press(approve, user)).status_code == 200
        assert env.slack.ephemerals() == [
            "Nothing changed: bob already voted in review round 1",
            "Nothing changed: carol is not a reviewer of this postmortem (bob, erin)",
            "Nothing changed: dave is not a reviewer of this postmortem (bob, erin)"]
        assert await settled_length(env.app, handle) == before
        assert len((await handle.query(PostmortemWorkflow.state)).reviews) == 1
