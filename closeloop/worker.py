"""The closeloop worker: runs every workflow and activity on the configured task queue.

    python worker.py            # or: closeloop worker (worker.py at the top is its launcher)
    python worker.py --update-schedules   # also bring existing Schedules in line with the config
Config: closeloop.toml (or CLOSELOOP_CONFIG) plus CLOSELOOP_TEMPORAL_ADDRESS, CLOSELOOP_NAMESPACE,
CLOSELOOP_TASK_QUEUE, CLOSELOOP_DB_URL. SIGTERM or SIGINT shuts down gracefully: in-flight activities
get `graceful_shutdown_timeout` to finish, and anything unfinished is retried by the next worker."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.worker import Worker

import closeloop.activities as activities
from closeloop import logging as closeloop_logging
from closeloop.activities.support import ClassifyErrors
from closeloop.client import Closeloop, connect
from closeloop.config import Config, ConfigError, load_config
from closeloop.forwarder import Forwarder
from closeloop.integrations.registry import Integrations, build
from closeloop.metrics import LifecycleGauges, exposition, registry_with
from closeloop.secrets import Secrets
from closeloop.store.inbox import IncidentInbox
from closeloop.sweep_schedules import apply as apply_schedules
from closeloop.telemetry import (
    ENV_METRICS_TOKEN,
    PortInUse,
    database_problem,
    sdk_metrics_text,
    sdk_runtime,
    serve_in_background,
    temporal_problem,
    tracing_interceptors,
    worker_app,
)
from closeloop.workflows import all_workflows

log = structlog.get_logger("closeloop.worker")

# A worker's heap is large (each cached workflow keeps its own sandboxed copy of the workflow module), so with
# CPython's default thresholds (700, 10, 10) a full collection ran every 2-3 s and stopped every thread for
# 150-300 ms: an activity holding SQLite's write lock then held it that long, and every webhook waiting to
# commit to the inbox waited with it (bench/webhooks.py: p99 120-350 ms). Freezing what start-up built and
# collecting less often cut full collections to about one per 30 s under that load (bench/README.md).
GC_THRESHOLDS = (20_000, 20, 20)


def build_worker(client: Client, integrations: Integrations, task_queue: str, *,
                 executor: ThreadPoolExecutor | None = None, max_cached_workflows: int = 250) -> Worker:
    """A Worker with every workflow and activity registered. Blocking activities run in the thread pool."""
    executor = executor or ThreadPoolExecutor(max_workers=32, thread_name_prefix="closeloop-activity")
    return Worker(
        client,
        task_queue=task_queue,
        workflows=all_workflows(),
        activities=activities.build(integrations, Closeloop(client, task_queue)),
        activity_executor=executor,
        max_concurrent_activities=executor._max_workers,  # never more activities than threads to run them
        max_cached_workflows=max_cached_workflows,  # [temporal] max_cached_workflows: the sticky cache
        graceful_shutdown_timeout=timedelta(seconds=10),
        interceptors=[ClassifyErrors()],  # a failure no retry can fix is not retried (activities/support.py)
    )


async def run(config: Config, *, stop: asyncio.Event | None = None, update_schedules: bool = False,
              settle_gc: bool = False) -> None:
    """Run the worker until `stop` (or SIGTERM/SIGINT). Existing Schedules whose settings differ from the
    config's are left alone (a warning) unless `update_schedules`. `settle_gc`: the process is the worker's
    own (its entry points say so; a test running a worker in-process does not), so tune its collector."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await _run(config, stop, update_schedules, settle_gc)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def _run(config: Config, stop: asyncio.Event, update_schedules: bool, settle_gc: bool) -> None:
    # Before anything connects: which server, namespace and config this is (a worker started without a config
    # runs on the built-in defaults, 127.0.0.1:7233, and says so).
    log.info("worker starting", address=config.temporal.address, namespace=config.temporal.namespace,
             task_queue=config.temporal.task_queue, config=config_origin(config), store=_safe_url(config.db_url))
    integrations = build(config)
    runtime, sdk_metrics_url = sdk_runtime(config.telemetry)
    client = await connect(config.temporal, runtime=runtime, interceptors=tracing_interceptors(config.telemetry))
    http = await serve_telemetry(config, integrations, client, sdk_metrics_url)
    try:
        await _work(config, integrations, client, stop, update_schedules, settle_gc)
    finally:
        if http is not None:
            server, task = http
            server.should_exit = True
            await task
    integrations.store.close()
    log.info("worker stopped")


async def serve_telemetry(config: Config, integrations: Integrations, client: Client,
                          sdk_metrics_url: str | None) -> tuple[Any, asyncio.Task[None]] | None:
    """The worker's `/metrics` (closeloop's, the lifecycle gauges from the store, the Temporal SDK's), `/healthz`
    and `/readyz` (Temporal and the database answer) on `[telemetry] worker_host:worker_port` (None when 0)."""
    settings = config.telemetry
    if not settings.worker_port:
        return None
    store = integrations.store
    gauges = LifecycleGauges(lambda: store.insights.live_counts(datetime.now(UTC)))
    own = registry_with(gauges)

    async def metrics() -> bytes:
        extra = await sdk_metrics_text(sdk_metrics_url)
        return await asyncio.to_thread(exposition, own, extra)

    async def temporal() -> str | None:
        return await temporal_problem(client)

    async def database() -> str | None:
        return await database_problem(store.ping)

    app = worker_app(metrics=metrics, checks=[temporal, database], tokens=Secrets().values(ENV_METRICS_TOKEN))
    served = await serve_in_background(app, settings.worker_host, settings.worker_port)
    port = served[0].servers[0].sockets[0].getsockname()[1]
    log.info("metrics and health checks served", address=f"{settings.worker_host}:{port}",
             paths=["/metrics", "/healthz", "/readyz"], sdk_metrics=bool(sdk_metrics_url))
    return served


async def _work(config: Config, integrations: Integrations, client: Client, stop: asyncio.Event,
                update_schedules: bool, settle_gc: bool) -> None:
    with ThreadPoolExecutor(max_workers=32, thread_name_prefix="closeloop-activity") as executor:
        worker = build_worker(client, integrations, config.temporal.task_queue, executor=executor,
                              max_cached_workflows=config.temporal.max_cached_workflows)
        try:
            await apply_schedules(client, config.temporal.task_queue, sync_every=config.sync.every,
                                  retention_every=config.retention.every,
                                  review_cron=config.reports.effectiveness_cron, update=update_schedules)
        except RPCError as e:  # a server without schedules must not stop the worker
            log.warning("schedules not applied", error=e.message)
        log.info("worker started", address=config.temporal.address, namespace=config.temporal.namespace,
                 task_queue=config.temporal.task_queue, config=config_origin(config),
                 forwards_inbox=config.inbox.forward_in == "worker")
        forwarder = None
        if config.inbox.forward_in == "worker":  # the inbox's forwarder runs here, not in the web app
            forwarder = inbox_forwarder(integrations, Closeloop(client, config.temporal.task_queue))
            forwarder.start()
        if settle_gc:
            tune_gc(rarely=config.db_url.startswith("sqlite"))
        async with worker:
            await stop.wait()
            log.info("shutting down")
            if forwarder is not None:
                await forwarder.stop()  # rows it did not get to stay pending: the next start forwards them


def tune_gc(*, rarely: bool = True) -> None:
    """Collect once and freeze what survives (start-up's modules, the registered workflows and activities) so no
    later collection walks it again. `rarely`: also collect less often (GC_THRESHOLDS), for a store on SQLite, whose
    one write lock an activity may hold through a collection's pause while a webhook waits (above). On PostgreSQL a
    pause blocks nobody else, and CPython's own thresholds free evicted workflows' sandboxes (cyclic garbage) sooner:
    a worker that had run 1,000 action items through a cache of 100 held 200 MiB with CPython's collector as it
    comes, 645 MiB with this tuning (bench/capacity.py, deploy/README.md: Capacity)."""
    gc.collect()
    gc.freeze()
    if rarely:
        gc.set_threshold(*GC_THRESHOLDS)


def inbox_forwarder(integrations: Integrations, closeloop: Closeloop) -> Forwarder:
    """The forwarder of `[inbox] forward_in = "worker"`: the store's inbox, this worker's client."""
    async def inbox() -> IncidentInbox:
        return integrations.store.inbox

    async def client() -> Closeloop:
        return closeloop

    return Forwarder(inbox, client)


def config_origin(config: Config) -> str:
    """The config file the worker runs on, or that it runs on the built-in defaults."""
    return config.source if not config.source.startswith("<") else f"built-in defaults {config.source}"


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only for the log
        return "<unparsable URL>"


def main(argv: list[str] | None = None) -> int:
    """`python worker.py [--update-schedules]`: every failure is one line on stderr, with the exit codes of the
    `closeloop` commands (2 bad config, 3 Temporal or the database unreachable)."""
    from sqlalchemy.exc import SQLAlchemyError

    from closeloop.db_errors import db_reason, unreachable_database

    args = sys.argv[1:] if argv is None else argv
    unknown = [a for a in args if a != "--update-schedules"]
    if unknown:
        print(f"closeloop worker: unknown argument {unknown[0]!r} (only --update-schedules)", file=sys.stderr)
        return 2
    closeloop_logging.configure()
    try:
        config = load_config()
    except ConfigError as e:
        print(f"closeloop worker: {e}", file=sys.stderr)
        return 2
    try:
        asyncio.run(run(config, update_schedules="--update-schedules" in args, settle_gc=True))
    except PortInUse as e:
        print(f"closeloop worker: {e}", file=sys.stderr)
        return 2
    except (ConnectionError, RuntimeError) as e:
        print(f"closeloop worker: cannot reach Temporal at {config.temporal.address}: {e}", file=sys.stderr)
        return 3
    except SQLAlchemyError as e:
        what = "cannot reach the database" if unreachable_database(e) else "database error"
        print(f"closeloop worker: {what}: {db_reason(e)}", file=sys.stderr)
        return 3 if unreachable_database(e) else 1
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
