"""structlog JSON logging for everything: our own loggers, the Temporal SDK's stdlib loggers (workflow.logger
and activity.logger carry the workflow and activity ids), and third-party libraries."""

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
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder(), _temporal_extras],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, _drop_extras_objects, renderer],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("alembic", "urllib3", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _drop_extras_objects(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for k in ("temporal_workflow", "temporal_activity"):
        event.pop(k, None)
    plain = (str, int, float, bool, type(None), list, dict)
    return {k: (v if isinstance(v, plain) else str(v)) for k, v in event.items()}
