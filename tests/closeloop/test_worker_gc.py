"""The worker process's collector (closeloop.worker.tune_gc), in a process of its own: what start-up built is
frozen, and collections run less often than CPython's default."""

from __future__ import annotations

import json
import subprocess
import sys

from closeloop.worker import GC_THRESHOLDS

PROBE = """
import gc, json
import closeloop.worker as w
before = gc.get_threshold()
w.tune_gc()
print(json.dumps({"before": before, "after": gc.get_threshold(), "frozen": gc.get_freeze_count()}))
"""


def test_tune_gc_freezes_start_up_and_collects_less_often() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True)
    seen = json.loads(out.stdout)
    assert seen["before"] == [700, 10, 10]  # CPython's default, what the worker ran with before
    assert seen["after"] == list(GC_THRESHOLDS)
    assert GC_THRESHOLDS[0] > 700
    assert seen["frozen"] > 10_000  # the imported modules, the workflows and the activities
