"""Custom search attributes: how managers find stalled work with one visibility query, e.g.
`CloseloopStalled = true AND ExecutionStatus = "Running"`."""

from __future__ import annotations

import json
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

# Temporal refuses a search attribute value over 2 KB (limit.searchAttributeValueSize; the start of a
# lifecycle fails, and an upsert fails the workflow task again and again). Values are bounded well under it,
# so the six together stay far from the 40 KB per workflow too.
MAX_KEYWORD_BYTES = 200
MAX_LIST_BYTES = 1024  # the JSON of a keyword list


def keyword(value: str) -> str:
    """A keyword value cut to MAX_KEYWORD_BYTES of UTF-8 (on a character boundary)."""
    raw = value.encode("utf-8", "surrogatepass")
    if len(raw) <= MAX_KEYWORD_BYTES:
        return value
    return raw[:MAX_KEYWORD_BYTES].decode("utf-8", "ignore")


def keyword_list(values: list[str]) -> list[str]:
    """A keyword-list value within Temporal's limit: each value cut (keyword), duplicates dropped, in order, as
    many as fit in MAX_LIST_BYTES. The search attribute is for finding lifecycles; the incident keeps all of them.
    Deterministic: workflows call it."""
    out: list[str] = []
    size = 2  # []
    for value in dict.fromkeys(keyword(v) for v in values):
        grown = size + len(json.dumps(value).encode()) + (1 if out else 0)
        if grown > MAX_LIST_BYTES:
            break
        out.append(value)
        size = grown
    return out


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
