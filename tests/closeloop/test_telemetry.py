"""OpenTelemetry tracing through temporalio.contrib.opentelemetry: off by default; on, a lifecycle's start, its
workflow run and its activities are spans of one trace (into an in-memory exporter)."""

from __future__ import annotations

from pathlib import Path

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from closeloop.client import start_postmortem
from closeloop.config import TelemetrySettings
from closeloop.models import Stage
from closeloop.telemetry import install_tracer_provider, tracing_interceptors
from tests.temporal_env import incident, running_app


def test_tracing_is_off_by_default() -> None:
    settings = TelemetrySettings()
    assert settings.tracing is False and tracing_interceptors(settings) == []


async def test_a_traced_lifecycle_is_one_trace_of_workflow_and_activity_spans(time_env: WorkflowEnvironment,
                                                                              tmp_path: Path) -> None:
    spans = InMemorySpanExporter()
    settings = TelemetrySettings(tracing=True, traces_exporter="console", service_name="closeloop-test")
    install_tracer_provider(settings, exporter=spans)
    interceptors = tracing_interceptors(settings)
    assert [type(i) for i in interceptors] == [TracingInterceptor]
    traced = Client(time_env.client.service_client, namespace=time_env.client.namespace,
                    data_converter=pydantic_data_converter, interceptors=interceptors)
    async with running_app(time_env, tmp_path, client=traced) as app:
        inc = incident(title="Checkout returns 500s")
        started = await start_postmortem(traced, app.task_queue, inc)
        handle = app.client.get_workflow_handle(started.workflow_id)
        app.handles.append(handle)
        await app.wait_stage(handle, Stage.drafting)

    finished = spans.get_finished_spans()
    names = [s.name for s in finished]
    for expected in ("StartWorkflow:PostmortemWorkflow", "RunWorkflow:PostmortemWorkflow",
                     "StartActivity:record_incident", "RunActivity:record_incident",
                     "StartActivity:prepare_draft", "RunActivity:prepare_draft"):
        assert expected in names, (expected, sorted(set(names)))
    start = next(s for s in finished if s.name == "StartWorkflow:PostmortemWorkflow")
    run_activity = next(s for s in finished if s.name == "RunActivity:record_incident")
    assert run_activity.context.trace_id == start.context.trace_id  # one trace, from the start to the activities
    assert start.resource.attributes["service.name"] == "closeloop-test"
