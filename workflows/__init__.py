"""Deterministic orchestration only: no I/O, no wall clock, no randomness. Side effects are activities.

This package imports nothing: Temporal's sandbox imports a workflow's module afresh for every workflow run it
keeps, and its package with it, so an `__init__` that imported every workflow would execute all of them for each
run (about twice the memory of each cached workflow; tests/workflows/test_sandbox_imports.py). `all_workflows()`
is what the worker and the replayer register."""

from __future__ import annotations


def all_workflows() -> list[type]:
    """Every workflow the worker runs."""
    from closeloop.workflows.action_item import ActionItemWorkflow
    from closeloop.workflows.postmortem import PostmortemWorkflow
    from closeloop.workflows.sweeps import (
        EffectivenessReviewWorkflow,
        RetentionWorkflow,
        StalledDigestWorkflow,
        TicketSyncWorkflow,
    )

    return [PostmortemWorkflow, ActionItemWorkflow, StalledDigestWorkflow, TicketSyncWorkflow, RetentionWorkflow,
            EffectivenessReviewWorkflow]
