"""Deterministic orchestration only: no I/O, no wall clock, no randomness. Side effects are activities."""

from workflows.action_item import ActionItemWorkflow
from workflows.postmortem import PostmortemWorkflow
from workflows.sweeps import StalledDigestWorkflow, TicketSyncWorkflow

ALL = [PostmortemWorkflow, ActionItemWorkflow, StalledDigestWorkflow, TicketSyncWorkflow]
