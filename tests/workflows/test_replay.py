"""Replay every recorded history against today's workflow code: a change that would break a running
lifecycle (non-determinism) fails here, in CI, before it reaches a worker.

Histories are recorded from the lifecycle tests: CLOSELOOP_RECORD_HISTORIES=1 ./scripts/test tests/workflows
Never re-record to make a failing replay pass: guard the change with workflow.patched() instead."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from closeloop.workflows import all_workflows

HISTORIES = sorted((Path(__file__).parent.parent / "histories").glob("*.json"))


def test_histories_cover_every_scenario() -> None:
    names = " ".join(p.name for p in HISTORIES)
    for scenario in ("test_happy_path", "escalate_up_the_chain", "extension", "changes_requested",
                     "continues_as_new", "overdue_item", "recurrence", "without_recurrence", "needs_no_postmortem",
                     "duplicate_trigger", "reopened", "wont_do", "reassigning", "digest",
                     "wont_do_without_a_reason", "wont_do_left_unexplained", "reason_is_asked_goes_back",
                     "deleted_ticket_of_an_open_item", "moved_ticket", "move_that_comes_with_a_close",
                     "completing_in_closeloop_closes_the_ticket", "refused_ticket",
                     "cancel_update_cancels_open_items", "cancellation_request_cancels_the_lifecycle",
                     "failure_no_retry_fixes_stalls"):
        assert scenario in names, f"no recorded history for {scenario}"
    assert any("--run-" in p.name for p in HISTORIES), "no continued-as-new run recorded"
    assert any("_item-" in p.name for p in HISTORIES), "no action item history recorded"


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem[:120] for p in HISTORIES])
async def test_replay(path: Path) -> None:
    data = json.loads(path.read_text())
    history = WorkflowHistory.from_json(data["workflow_id"], data["history"])
    replayer = Replayer(workflows=all_workflows(), data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
