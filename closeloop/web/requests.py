"""What every HTTP endpoint of closeloop shares, the app's own and the vendors' webhooks (each in its plugin,
closeloop.integrations.<vendor>.webhook): reading a capped body, JSON objects, constant-time secret and
signature checks, field access that names the sender's field, and `Reject`, which ends a request with a JSON
`{"error": ...}` and a 4xx/5xx status. Nothing here knows a route."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from closeloop.ids import BadId, check_external_id
from closeloop.ids import check_source as check_source_name
from closeloop.models import Incident
from closeloop.secrets import ENV_API_TOKENS
from closeloop.validation import first_problem

log = structlog.get_logger("closeloop.web")

MAX_SIGNATURES = 16  # more than any rotation needs; bounds the work an unsigned request can cause


class Reject(Exception):
    """Ends a request with `status` and `{"error": message}` (plus optional headers)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def validation_message(e: ValidationError, prefix: str = "") -> str:
    return first_problem(e, base=prefix).line(prefix="invalid incident: ")


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing more than `limit` bytes: by Content-Length up front, and by what actually
    arrives (a chunked body, or one longer than its Content-Length said)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise Reject(400, "invalid Content-Length")
        if int(declared) > limit:
            raise Reject(413, f"body too large: the limit is {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Reject(413, f"body too large: the limit is {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        detail = f": {e.msg} (line {e.lineno}, column {e.colno})" if isinstance(e, json.JSONDecodeError) else ""
        raise Reject(400, f"malformed JSON{detail}") from None


def json_object(body: bytes, *, empty_ok: bool = False) -> dict[str, Any]:
    if empty_ok and not body.strip():
        return {}
    data = parse_json(body)
    if not isinstance(data, dict):
        raise Reject(400, "the body must be a JSON object")
    return data


def matches_any(given: bytes, candidates: tuple[str, ...]) -> bool:
    """Constant-time comparison with every candidate (no early exit)."""
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(given, candidate.encode("utf-8", "surrogateescape"))
    return matched


def incident_or_reject(fields: dict[str, Any], where: dict[str, str]) -> Incident:
    """Incident.model_validate, or Reject(422) naming the sender's field (`where` maps ours to theirs)."""
    try:
        return Incident.model_validate(fields)
    except ValidationError as e:
        loc = e.errors()[0]["loc"]
        name = str(loc[0]) if loc else ""
        raise Reject(422, f"invalid field {where.get(name, name)}: {first_problem(e).message}") from None


API_SOURCE = "api"  # the namespace of every incident the API starts, unless its token names other sources
_SOURCES = re.compile(r"(?:\*|[a-z][a-z0-9_-]{0,31})(?:\+(?:\*|[a-z][a-z0-9_-]{0,31}))*")


@dataclass(frozen=True)
class ApiToken:
    """A bearer token of /api/... and the named sources it may act on besides `api` (`*`: any)."""

    secret: str
    sources: frozenset[str] = frozenset()

    def __repr__(self) -> str:  # never print the secret
        return f"ApiToken(sources={sorted(self.sources)})"

    def may_use(self, source: str) -> bool:
        return source == API_SOURCE or "*" in self.sources or source in self.sources


def api_tokens(values: tuple[str, ...]) -> tuple[ApiToken, ...]:
    """CLOSELOOP_API_TOKENS entries: `TOKEN` (source `api` only) or `TOKEN:SOURCE+SOURCE...` (also those sources,
    e.g. `s3cret:pagerduty+opsgenie`; `*` for any). A bare token keeps working as before, for `api`."""
    tokens = []
    for value in values:
        secret, sep, named = value.rpartition(":")
        if sep and secret and _SOURCES.fullmatch(named):
            tokens.append(ApiToken(secret, frozenset(named.split("+"))))
        else:
            tokens.append(ApiToken(value))
    return tuple(tokens)


def check_source(token: ApiToken, source: object) -> None:
    """Reject(403) unless the token may act on incidents of `source` (a non-string is the model's to refuse)."""
    if isinstance(source, str) and not token.may_use(source):
        raise Reject(403, f"this API token may not act on source {source[:40]!r}: it is for source "
                          f"{API_SOURCE!r}{''.join(f', {s!r}' for s in sorted(token.sources))} "
                          f"(a token's sources are set in {ENV_API_TOKENS} as TOKEN:SOURCE+SOURCE)")


def check_incident_path(source: str, external_id: str) -> None:
    """Reject(422) unless `/api/incidents/{source}/{external_id}/...` names an incident closeloop could have."""
    try:
        check_source_name(source)
        check_external_id(external_id)
    except BadId as e:
        raise Reject(422, f"invalid incident: {e}") from None


def check_bearer(request: Request, tokens: tuple[ApiToken, ...]) -> ApiToken:
    """The token the request's `Authorization: Bearer` matches (every token compared, in constant time), or
    Reject(401)."""
    challenge = {"WWW-Authenticate": "Bearer"}
    if not tokens:
        raise Reject(401, f"no API tokens are configured on this server (set {ENV_API_TOKENS})", challenge)
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise Reject(401, "missing bearer token (Authorization: Bearer <token>)", challenge)
    presented = given.strip().encode("utf-8", "surrogateescape")
    matched: ApiToken | None = None
    for token in tokens:  # no early exit
        if hmac.compare_digest(presented, token.secret.encode("utf-8", "surrogateescape")) and matched is None:
            matched = token
    if matched is None:
        raise Reject(401, "invalid bearer token", challenge)
    return matched


def field(obj: Any, path: str) -> Any:
    """obj[a][b]... for "a.b...", or Reject(422) naming the missing field."""
    current = obj
    for name in path.split("."):
        if not isinstance(current, dict) or current.get(name) is None:
            raise Reject(422, f"missing field {path}")
        current = current[name]
    return current


def str_field(obj: Any, path: str) -> str:
    value = field(obj, path)
    if not isinstance(value, str) or not value.strip():
        raise Reject(422, f"field {path} must be a non-empty string")
    return value




def title_text(text: str) -> str:
    """A one-line title of at most 500 characters."""
    return " ".join(text.split())[:500]


def hub_signature_ok(body: bytes, header: str, secrets: tuple[str, ...]) -> bool:
    """True when the header's `sha256=<hex>` is the HMAC-SHA256 of the raw body under one of the secrets.
    Every secret is compared, in constant time (no early exit). Jira and GitHub sign the same way."""
    given = [part.strip()[7:].lower().encode("utf-8", "surrogateescape")
             for part in header.split(",")[:MAX_SIGNATURES] if part.strip().lower().startswith("sha256=")]
    matched = False
    for secret in secrets:
        expected = hmac.new(secret.encode("utf-8", "surrogateescape"), body, hashlib.sha256).hexdigest().encode()
        for signature in given:
            matched |= hmac.compare_digest(expected, signature)
    return matched


def check_hub_signature(request: Request, body: bytes, header_name: str, secrets: tuple[str, ...], what: str,
                     env: str, delivery: str | None) -> None:
    if not secrets:
        raise Reject(401, f"no {what} webhook secrets are configured on this server (set {env})")
    header = request.headers.get(header_name)
    if not header:
        raise Reject(401, f"missing {header_name}")
    if not hub_signature_ok(body, header, secrets):
        log.warning("webhook_bad_signature", source=what.lower(), delivery=(delivery or "")[:100])
        raise Reject(401, f"invalid {header_name}")


def delivery_id(request: Request, header: str, body: bytes) -> str:
    given = (request.headers.get(header) or "").strip()
    return given[:200] if given else "sha256:" + hashlib.sha256(body).hexdigest()


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def epoch_ms(value: Any) -> datetime | None:
    if type(value) is not int:
        return None
    try:
        return datetime.fromtimestamp(value / 1000, UTC)
    except (OverflowError, ValueError, OSError):
        return None


def iso_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def utc_now() -> datetime:
    return datetime.now(UTC)
