"""Custom search attributes: how managers find stalled work with one visibility query, e.g.
`CloseloopStalled = true AND ExecutionStatus = "Running"`."""

from __future__ import annotations

from typing import Any

from temporalio.client import Client
from temporalio.common import SearchAttributeKey

STAGE = SearchAttributeKey.for_keyword("CloseloopStage")
STAGE_DUE = SearchAttributeKey.for_datetime("CloseloopStageDue")
OWNER = SearchAttributeKey.for_keyword("CloseloopOwner")
SEVERITY = SearchAttributeKey.for_keyword("CloseloopSeverity")
SERVICE = SearchAttributeKey.for_keyword_list("CloseloopService")
STALLED = SearchAttributeKey.for_bool("CloseloopStalled")

ALL: list[SearchAttributeKey[Any]] = [STAGE, STAGE_DUE, OWNER, SEVERITY, SERVICE, STALLED]

_CLI_TYPES = {1: "Text", 2: "Keyword", 3: "Int", 4: "Double", 5: "Bool", 6: "Datetime", 7: "KeywordList"}


def dev_server_flags() -> list[str]:
    """`--search-attribute Name=Type` flags for `temporal server start-dev`."""
    out: list[str] = []
    for key in ALL:
        out += ["--search-attribute", f"{key.name}={_CLI_TYPES[int(key.indexed_value_type)]}"]
    return out


async def register(client: Client, namespace: str = "default") -> None:
    """Register the attributes on a server that lacks them (test server, self-hosted cluster)."""
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
    from temporalio.service import RPCError, RPCStatusCode

    try:
        existing = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
        have = set(existing.custom_attributes)
    except RPCError as e:  # the time-skipping test server cannot list, only add
        if e.status != RPCStatusCode.UNIMPLEMENTED:
            raise
        have = set()
    missing = {k.name: IndexedValueType.ValueType(int(k.indexed_value_type)) for k in ALL if k.name not in have}
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )
