"""Deterministic orchestration only: no I/O, no wall clock, no randomness. Side effects are activities."""

from closeloop.workflows.action_item import ActionItemWorkflow
from closeloop.workflows.postmortem import PostmortemWorkflow
from closeloop.workflows.sweeps import (
    EffectivenessReviewWorkflow,
    RetentionWorkflow,
    StalledDigestWorkflow,
    TicketSyncWorkflow,
)

ALL = [PostmortemWorkflow, ActionItemWorkflow, StalledDigestWorkflow, TicketSyncWorkflow, RetentionWorkflow,
       EffectivenessReviewWorkflow]
