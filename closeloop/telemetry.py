"""What the worker and the web app tell the platform's monitoring (`[telemetry]`, closeloop.config.TelemetrySettings):

- `/metrics`: Prometheus text: closeloop's own (closeloop/metrics.py) and, in the worker, the Temporal SDK's. The
  SDK's runtime serves those on a private loopback port (its Prometheus exporter); the worker's `/metrics` reads
  them from there and appends them, so one scrape of one port gets both.
- `/healthz`: liveness, the process answers. `/readyz`: readiness, 503 while Temporal or the database cannot be
  reached (each checked with a short timeout), with which one in the answer.
- Tracing: OpenTelemetry spans through temporalio.contrib.opentelemetry's TracingInterceptor, when `tracing = true`.

`/metrics` needs `Authorization: Bearer <CLOSELOOP_METRICS_TOKEN>` (compared in constant time); without that secret
it answers this machine (loopback) only. The health paths are open: they say only ready or not, and which
dependency is down."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import structlog

from closeloop import secrets

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from temporalio.client import Client, Interceptor
    from temporalio.runtime import Runtime

    from closeloop.config import TelemetrySettings

log = structlog.get_logger("closeloop.telemetry")

ENV_METRICS_TOKEN = secrets.ENV_METRICS_TOKEN
CHECK_TIMEOUT = 3.0  # seconds per readiness check
_tracing_installed = False


# --------------------------------------------------------------------------- Temporal SDK runtime and tracing


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sdk_runtime(settings: TelemetrySettings) -> tuple[Runtime | None, str | None]:
    """A Temporal runtime whose Prometheus exporter serves the SDK's metrics on a private loopback port, and that
    port's URL; (None, None) when `sdk_metrics` is off or the worker serves no metrics (worker_port 0)."""
    if not settings.sdk_metrics or not settings.worker_port:
        return None, None
    from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

    address = f"127.0.0.1:{free_loopback_port()}"
    runtime = Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=address,
                                                                         durations_as_seconds=True)))
    return runtime, f"http://{address}/metrics"


def tracing_interceptors(settings: TelemetrySettings) -> list[Interceptor]:
    """[TracingInterceptor] when `tracing = true` (the process's tracer provider set up once, with the configured
    exporter), else []. A client made with it traces what it starts, and a worker made from that client traces
    the workflows and activities it runs."""
    if not settings.tracing:
        return []
    install_tracer_provider(settings)
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor()]


def install_tracer_provider(settings: TelemetrySettings, exporter: Any = None) -> None:
    """Set the global OpenTelemetry tracer provider once: `service.name` from the settings, spans batched to the
    exporter (`exporter`, for tests; else the configured one)."""
    global _tracing_installed
    if _tracing_installed:
        return
    from closeloop.config import ConfigError

    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor
    except ImportError:
        raise ConfigError("telemetry.tracing: the OpenTelemetry SDK is not installed: pip install "
                          "'closeloop[tracing]'") from None
    if exporter is None and settings.traces_exporter == "console":
        exporter = ConsoleSpanExporter()
    if exporter is None:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise ConfigError("telemetry.traces_exporter = \"otlp\": the OTLP exporter is not installed: pip install "
                              "'closeloop[tracing]'") from None
        exporter = OTLPSpanExporter(endpoint=settings.otlp_endpoint) if settings.otlp_endpoint else OTLPSpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
    processor = BatchSpanProcessor(exporter) if settings.traces_exporter == "otlp" else SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    _tracing_installed = True
    log.info("tracing on", exporter=settings.traces_exporter, endpoint=settings.otlp_endpoint or "default",
             service=settings.service_name)


# --------------------------------------------------------------------------- readiness


async def temporal_problem(client: Client, timeout: float = CHECK_TIMEOUT) -> str | None:
    """None when the Temporal frontend answers its health check, else why not."""
    try:
        ok = await asyncio.wait_for(client.service_client.check_health(timeout=timedelta(seconds=timeout)),
                                    timeout + 0.5)
    except Exception as e:  # noqa: BLE001 - any failure means not ready; its kind is the reason
        return f"temporal: unreachable ({type(e).__name__})"
    return None if ok else "temporal: not serving"


async def database_problem(ping: Callable[[], None], timeout: float = CHECK_TIMEOUT) -> str | None:
    """None when `ping` (a `SELECT 1` on the store) returns within `timeout`, else why not."""
    try:
        await asyncio.wait_for(asyncio.to_thread(ping), timeout)
    except TimeoutError:
        return "database: no answer"
    except Exception as e:  # noqa: BLE001
        return f"database: unreachable ({type(e).__name__})"
    return None


async def readiness(checks: Sequence[Callable[[], Awaitable[str | None]]]) -> list[str]:
    """The problems of every check, run together (an empty list: ready)."""
    found = await asyncio.gather(*(check() for check in checks))
    return [p for p in found if p]


# --------------------------------------------------------------------------- /metrics access


def metrics_allowed(request: Request, tokens: Sequence[str]) -> bool:
    """A scrape with one of the metrics tokens (constant-time compares; several during a rotation); without a
    token configured, from loopback only."""
    if tokens:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        given = value.strip().encode()
        matches = [hmac.compare_digest(given, token.encode()) for token in tokens]  # every one, whichever matches
        return scheme.lower() == "bearer" and any(matches)
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def sdk_metrics_text(url: str | None) -> str:
    """The Temporal SDK's metrics from its exporter's private port ("" when there is none or it fails)."""
    if not url:
        return ""
    import httpx

    try:
        async with httpx.AsyncClient(timeout=2.0) as http:
            response = await http.get(url)
        return response.text if response.status_code == 200 else ""
    except httpx.HTTPError:
        return ""


# --------------------------------------------------------------------------- the worker's HTTP server


class PortInUse(Exception):
    """The worker's metrics and health port cannot be listened on (in use, or not allowed)."""


def worker_app(*, metrics: Callable[[], Awaitable[bytes]], checks: Sequence[Callable[[], Awaitable[str | None]]],
               tokens: Sequence[str]) -> Starlette:
    """The worker's `/metrics`, `/healthz` and `/readyz` (nothing else)."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from closeloop.metrics import CONTENT_TYPE

    async def metrics_endpoint(request: Request) -> Response:
        if not metrics_allowed(request, tokens):
            return JSONResponse({"error": f"metrics need the bearer token of {ENV_METRICS_TOKEN}"}, status_code=401)
        return Response(await metrics(), media_type=CONTENT_TYPE)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def readyz(request: Request) -> Response:
        problems = await readiness(checks)
        return JSONResponse({"ready": not problems, "problems": problems}, status_code=503 if problems else 200)

    return Starlette(routes=[Route("/metrics", metrics_endpoint), Route("/healthz", healthz),
                             Route("/readyz", readyz)])


def _quiet_server_class() -> type[Any]:
    import uvicorn

    class QuietServer(uvicorn.Server):
        """uvicorn's server without its signal handling: the worker owns SIGTERM and SIGINT."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return QuietServer


def _QuietServer(config: Any) -> Any:  # noqa: N802 - a class, made on first use (uvicorn is imported lazily)
    return _quiet_server_class()(config)


async def serve_in_background(app: Starlette, host: str, port: int) -> tuple[Any, asyncio.Task[None]]:
    """Serve `app` with uvicorn in this event loop on a socket bound here (a port in use is an OSError that names
    it, raised before anything starts); returns the server (set `should_exit` to stop) and its task, once it
    listens."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise PortInUse(f"cannot listen on {host}:{port} for /metrics and the health checks: {e.strerror} (set "
                        f"[telemetry] worker_port or CLOSELOOP_METRICS_PORT to another port, or 0 for none)") from None
    import uvicorn

    server = _QuietServer(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError(f"the metrics server on {host}:{port} stopped at start")
        await asyncio.sleep(0.02)
    return server, task
