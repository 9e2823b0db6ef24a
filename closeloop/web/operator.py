"""`POST /api/operator/updates`: a person's action run by an operator (the CLI's `--as`), authorized by an
operator credential and recorded in the audit log as the operator's.

The CLI does not run these Updates against Temporal itself any more: acting as someone else is an operator's
act, so it goes through the web app, which holds the operators' credentials (CLOSELOOP_OPERATOR_TOKENS,
`name:token` pairs, comma-separated so they can rotate), compares the bearer token in constant time, writes
who acted for whom, when and from where (`via = "operator:<name>"`), and only then runs the same Update a
person's own page runs. The workflow's validator still decides whether that person may.

Body: `{"workflow_id": ..., "update": <an Update name of closeloop.contract>, "input": {<its model's
fields>}}`. Answers: 200 `{"result"}`, 409 `{"error"}` (the workflow refused it), 401 (no or a wrong
credential), 404 (no such lifecycle), 422 (bad input), 503 (Temporal unavailable). Every error is JSON."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from closeloop import contract, quality
from closeloop.client import Closeloop
from closeloop.config import Config
from closeloop.ids import BadId, parse_item_id, parse_postmortem_id
from closeloop.readmodel import AuditEntry, WebViews
from closeloop.secrets import ENV_OPERATOR_TOKENS, Secrets
from closeloop.validation import first_problem
from closeloop.web.requests import Reject, error_response, json_object, read_body
from closeloop.web.signin import client_address
from closeloop.web.updates import Outcome, run_update

log = structlog.get_logger("closeloop.web")

POSTMORTEM_UPDATES: dict[str, contract.UpdateRef[Any, str]] = {
    ref.name: ref for ref in (contract.SUBMIT_DRAFT, contract.REQUEST_EXTENSION, contract.REASSIGN_OWNER,
                              contract.REVIEW, contract.CANCEL, contract.SNOOZE_DRAFT)}
ITEM_UPDATES: dict[str, contract.UpdateRef[Any, str]] = {
    ref.name: ref for ref in (contract.COMPLETE_ITEM, contract.VERDICT, contract.EXPLAIN_WONT_DO,
                              contract.SNOOZE_ITEM)}
MIN_TOKEN = 16


def operator_tokens(values: tuple[str, ...]) -> list[tuple[str, bytes]]:
    """(operator name, token) of each `name:token`; a value without a name, or with a short token, is skipped
    (and logged), never accepted."""
    out = []
    for value in values:
        name, sep, token = value.partition(":")
        if not sep or not name.strip() or len(token.strip()) < MIN_TOKEN:
            log.warning("operator_token_ignored", hint=f"{ENV_OPERATOR_TOKENS} takes name:token pairs, tokens of "
                                                       f"{MIN_TOKEN}+ characters")
            continue
        out.append((name.strip(), token.strip().encode()))
    return out


def operator_of(request: Request, tokens: list[tuple[str, bytes]]) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, sent = header.partition(" ")
    if scheme.lower() != "bearer" or not sent.strip():
        raise Reject(401, "an operator credential is needed (Authorization: Bearer <token>)",
                     {"WWW-Authenticate": "Bearer"})
    given = sent.strip().encode()
    found = None
    for name, token in tokens:  # every token compared, in constant time each
        if hmac.compare_digest(given, token):
            found = name
    if found is None:
        raise Reject(401, "the operator credential is not valid", {"WWW-Authenticate": "Bearer"})
    return found


def _person(arg: Any) -> str:
    return str(getattr(arg, "reviewer", None) or getattr(arg, "by", ""))


async def quality_gate(client: Callable[[], Awaitable[Closeloop]], config: Config, workflow_id: str,
                       draft: Any) -> None:
    """The lifecycle's policy's blocking quality checks (closeloop.quality), as the web editor applies them:
    Reject(422) naming the first finding and how many more."""
    try:
        state = await (await client()).query(contract.POSTMORTEM_STATE, workflow_id)
    except Exception:  # noqa: BLE001 - no state to judge by: the Update itself answers (404, 409, 503)
        return
    if state is None:
        return
    blocking = [f for f in quality.check_items(draft, state.plan.policy, set(config.people_directory()))
                if f.blocks]
    if blocking:
        first = blocking[0]
        more = f" (and {len(blocking) - 1} more)" if len(blocking) > 1 else ""
        raise Reject(422, f"the policy's quality checks: {first.where}: {first.message}; {first.suggestion}{more}")


def mount_operator(app: FastAPI, config: Config, secrets: Secrets, client: Callable[[], Awaitable[Closeloop]],
                   views: Callable[[], Awaitable[WebViews]]) -> None:
    tokens = operator_tokens(secrets.values(ENV_OPERATOR_TOKENS))

    @app.post("/api/operator/updates")
    async def operator_update(request: Request) -> JSONResponse:
        if not tokens:
            raise Reject(401, f"no operator may act here: set {ENV_OPERATOR_TOKENS} on the web app")
        operator = operator_of(request, tokens)
        data = json_object(await read_body(request, config.web.max_body_bytes))
        workflow_id, name, fields = data.get("workflow_id"), data.get("update"), data.get("input")
        if not isinstance(workflow_id, str) or not isinstance(name, str) or not isinstance(fields, dict):
            raise Reject(422, "expected {\"workflow_id\": str, \"update\": str, \"input\": {...}}")
        try:
            if "/item-" in workflow_id:
                workflow_id, refs = parse_item_id(workflow_id), ITEM_UPDATES
            else:
                workflow_id, refs = parse_postmortem_id(workflow_id), POSTMORTEM_UPDATES
        except BadId as e:
            raise Reject(422, f"workflow_id: {e}") from None
        ref = refs.get(name)
        if ref is None:
            raise Reject(422, f"update must be one of {', '.join(sorted(refs))} for this workflow")
        try:
            arg = ref.arg.model_validate(fields)
        except ValidationError as e:
            raise Reject(422, first_problem(e).line(prefix=f"invalid {name} input: ")) from None
        person = _person(arg)
        try:
            if ref is contract.SUBMIT_DRAFT:
                await quality_gate(client, config, workflow_id, arg)
        except Reject as e:
            outcome = Outcome(False, e.message, e.status)
        else:
            outcome = await run_update(client, ref, workflow_id, arg)
        entry = AuditEntry(at=datetime.now(UTC), person=person, action=f"operator.{name}", target=workflow_id,
                           via=f"operator:{operator}", address=client_address(request, config.web.auth),
                           outcome="ok" if outcome.done else f"refused: {outcome.message}"[:500],
                           detail=f"{operator} acted as {person}")
        try:
            await asyncio.to_thread((await views()).record_audit, entry)
        except Exception as e:  # noqa: BLE001 - the log keeps the record then
            log.error("audit_write_failed", operator=operator, person=person, error=type(e).__name__)
        log.info("operator_action", operator=operator, person=person, update=name, workflow_id=workflow_id,
                 done=outcome.done)
        if not outcome.done:
            return error_response(outcome.status, outcome.message)
        return JSONResponse({"result": outcome.message, "operator": operator, "as": person})
