"""The closeloop worker: runs every workflow and activity on the configured task queue.

    python worker.py            # or: closeloop worker (worker.py at the top is its launcher)
Config: closeloop.toml (or CLOSELOOP_CONFIG) plus CLOSELOOP_TEMPORAL_ADDRESS, CLOSELOOP_NAMESPACE,
CLOSELOOP_TASK_QUEUE, CLOSELOOP_DB_URL. SIGTERM or SIGINT shuts down gracefully: in-flight activities
get `graceful_shutdown_timeout` to finish, and anything unfinished is retried by the next worker."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import structlog
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.worker import Worker

import closeloop.activities as activities
import closeloop.workflows as workflows
from closeloop import logging as closeloop_logging
from closeloop.activities.support import ClassifyErrors
from closeloop.client import Closeloop, connect
from closeloop.config import Config, ConfigError, load_config
from closeloop.integrations.registry import Integrations, build
from closeloop.sweep_schedules import apply as apply_schedules

log = structlog.get_logger("closeloop.worker")


def build_worker(client: Client, integrations: Integrations, task_queue: str, *,
                 executor: ThreadPoolExecutor | None = None) -> Worker:
    """A Worker with every workflow and activity registered. Blocking activities run in the thread pool."""
    executor = executor or ThreadPoolExecutor(max_workers=32, thread_name_prefix="closeloop-activity")
    return Worker(
        client,
        task_queue=task_queue,
        workflows=workflows.ALL,
        activities=activities.build(integrations, Closeloop(client, task_queue)),
        activity_executor=executor,
        max_concurrent_activities=executor._max_workers,  # never more activities than threads to run them
        graceful_shutdown_timeout=timedelta(seconds=10),
        interceptors=[ClassifyErrors()],  # a failure no retry can fix is not retried (activities/support.py)
    )


async def run(config: Config, *, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    integrations = build(config)
    client = await connect(config.temporal)
    with ThreadPoolExecutor(max_workers=32, thread_name_prefix="closeloop-activity") as executor:
        worker = build_worker(client, integrations, config.temporal.task_queue, executor=executor)
        try:
            schedules = await apply_schedules(client, config.temporal.task_queue, sync_every=config.sync.every)
            log.info("schedules applied", schedules=schedules)
        except RPCError as e:  # a server without schedules must not stop the worker
            log.warning("schedules not applied", error=str(e))
        log.info("worker started", address=config.temporal.address, namespace=config.temporal.namespace,
                 task_queue=config.temporal.task_queue, config=config.source)
        async with worker:
            await stop.wait()
            log.info("shutting down")
    integrations.store.close()
    log.info("worker stopped")


def main() -> int:
    closeloop_logging.configure()
    try:
        config = load_config()
    except ConfigError as e:
        print(f"closeloop worker: {e}", file=sys.stderr)
        return 2
    try:
        asyncio.run(run(config))
    except (ConnectionError, RuntimeError) as e:
        print(f"closeloop worker: cannot reach Temporal at {config.temporal.address}: {e}", file=sys.stderr)
        return 1
    return 0


def exit_now(code: int) -> None:
    """Exit without interpreter teardown. The SDK's Rust threads can outlive the event loop and abort
    CPython's finalisation ("PyGILState_Release: thread state ... must be current", SIGABRT; see
    temporalio/sdk-python#300); by now the worker has stopped and the store is closed, so skip it."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
