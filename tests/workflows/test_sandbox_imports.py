"""What Temporal's sandbox imports afresh for each workflow run the worker keeps in its cache: only the workflow's
own module and its packages (plus the stdlib modules the sandbox restricts, e.g. `datetime`). Everything else of
closeloop is passed through from the worker, imported once. A module re-imported per run costs memory for every
cached workflow and CPU for every replay: before this check, `from closeloop import contract` (the package's
attribute, which the sandbox cannot pass through) re-executed closeloop.contract and closeloop.search_attributes,
and the package's `__init__` every other workflow module, for every run: 289 KiB of allocations per cached
ActionItemWorkflow, now 88 (deploy/README.md: Capacity).

The runs are made by the SDK's own SandboxedWorkflowRunner with the worker's data converter, as the Worker makes
them (its `prepare_workflow` does the same with this fake info); its importer's `new_modules` are the sandbox's
sys.modules."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path

import pytest
import temporalio.converter
from temporalio import workflow
from temporalio.api.common.v1 import Payloads
from temporalio.api.failure.v1 import Failure
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker._workflow_instance import WorkflowInstanceDetails
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner
from temporalio.worker.workflow_sandbox import _runner as sandbox_runner

from closeloop.workflows import all_workflows

RESTRICTED_STDLIB = {"asyncio", "datetime"}  # the sandbox's restricted proxies of these, as it means to


def fresh_modules(cls: type) -> set[str]:
    """The modules a sandboxed run of `cls` holds that are not the worker's own (imported afresh)."""
    defn = workflow._Definition.must_from_class(cls)
    details = WorkflowInstanceDetails(
        payload_converter_factory=pydantic_data_converter._new_payload_converter,  # noqa: SLF001
        failure_converter_class=temporalio.converter.DataConverter.default.failure_converter_class,
        interceptor_classes=[], defn=defn, info=sandbox_runner._fake_info, randomness_seed=-1,  # noqa: SLF001
        extern_functions={}, disable_eager_activity_execution=False, worker_level_failure_exception_types=[],
        patch_activation_callback=None, last_completion_result=Payloads(), last_failure=Failure())

    async def create() -> set[str]:  # a workflow instance wants a running loop
        instance = SandboxedWorkflowRunner().create_instance(details)
        modules = instance.importer.new_modules  # type: ignore[attr-defined]
        return {name for name, module in modules.items()
                if sys.modules.get(name) is not module and not name.startswith("_")}

    return asyncio.run(create())


def packages_of(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


@pytest.mark.parametrize("cls", all_workflows(), ids=lambda c: c.__name__)
def test_a_run_imports_afresh_only_its_own_module(cls: type) -> None:
    assert fresh_modules(cls) - RESTRICTED_STDLIB == packages_of(cls.__module__)


def test_the_check_sees_a_module_imported_as_a_package_attribute(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The shape that cost memory: a workflow module inside a package importing a sibling as the package's
    attribute (`from closeloop import contract`), even among the passed-through imports."""
    package = tmp_path / "probepkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "helper.py").write_text("NAME = 'helper'\n")
    (package / "probe_workflow.py").write_text(textwrap.dedent('''
        from temporalio import workflow

        with workflow.unsafe.imports_passed_through():
            from probepkg import helper


        @workflow.defn
        class ProbeWorkflow:
            @workflow.run
            async def run(self) -> str:
                return helper.NAME
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    from probepkg.probe_workflow import ProbeWorkflow  # type: ignore[import-not-found]

    try:
        fresh = fresh_modules(ProbeWorkflow)
        assert "probepkg.helper" in fresh
        assert fresh - RESTRICTED_STDLIB != packages_of("probepkg.probe_workflow")
    finally:
        for name in ("probepkg", "probepkg.helper", "probepkg.probe_workflow"):
            sys.modules.pop(name, None)
