"""structlog JSON logging for everything: our own loggers, the Temporal SDK's stdlib loggers (workflow.logger
and activity.logger carry the workflow and activity ids), the SDK's Rust core (forwarded to the
`temporalio.core` logger instead of its own coloured console lines), and third-party libraries. An exception
is logged structured (`exception`: type, message and frames of each exception in the chain) in JSON, as a
plain traceback in the console format."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from structlog.typing import Processor

_SECRET_WORDS = ("secret", "token", "password", "authorization", "api_key", "apikey")


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if any(word in key.lower() for word in _SECRET_WORDS):
            event[key] = "[redacted]"
    return event


def _temporal_extras(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    record = event.get("_record")
    if record is not None:
        for attr in ("temporal_workflow", "temporal_activity"):
            info = getattr(record, attr, None)
            if isinstance(info, dict):
                for k in ("workflow_id", "run_id", "workflow_type", "activity_id", "activity_type", "attempt"):
                    if k in info:
                        event.setdefault(k, info[k])
    return event


def configure(level: str = "INFO", *, json: bool = True, stream: object = None) -> None:
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(  # below the level, a call stops at its first processor (on every webhook's path)
        processors=[structlog.stdlib.filter_by_level, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    # Structured exceptions, without the frames' local variables (they can hold secrets).
    exceptions: Processor = (structlog.processors.ExceptionRenderer(
        structlog.tracebacks.ExceptionDictTransformer(show_locals=False)) if json
        else structlog.processors.format_exc_info)
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder(), _temporal_extras],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, exceptions, _drop_extras_objects,
                    renderer],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("alembic", "urllib3", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    forward_temporal_core("INFO" if root.level <= logging.DEBUG else "WARN")


CORE_LOGGER = "temporalio.core"
_forwarding: list[bool] = []


def forward_temporal_core(level: str = "WARN") -> None:
    """Send the Temporal SDK's Rust core logs (WARN and above) through Python logging, so they come out in our
    format: by default the core writes its own lines to stderr, with ANSI colours, even among JSON lines. Takes
    effect for the clients and workers created afterwards (the default Runtime); once per process."""
    if _forwarding:
        return
    from temporalio.runtime import LogForwardingConfig, LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

    core = LoggingConfig(filter=TelemetryFilter(core_level=level, other_level="ERROR"),
                         forwarding=LogForwardingConfig(logger=logging.getLogger(CORE_LOGGER)))
    Runtime.set_default(Runtime(telemetry=TelemetryConfig(logging=core)), error_if_already_set=False)
    _forwarding.append(True)


def _drop_extras_objects(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for k in ("temporal_workflow", "temporal_activity", "temporal_log"):
        event.pop(k, None)
    event.pop("exc_info", None)  # rendered into "exception" already; a raw tuple is no use to anyone
    plain = (str, int, float, bool, type(None), list, dict)
    return {k: (v if isinstance(v, plain) else str(v)) for k, v in event.items()}
