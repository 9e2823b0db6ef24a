"""Workflow type names, and workflow ids both ways: an incident's lifecycle is
`postmortem/<source>/<external id>`, its action items
`<postmortem id>/item-N` (also their ActionItem.id). Pure string functions, cheap to import: part of
closeloop.contract, which re-exports them."""

from __future__ import annotations

import hashlib
import re

# Workflow types (recorded in every history: never rename).
POSTMORTEM_WORKFLOW = "PostmortemWorkflow"
ACTION_ITEM_WORKFLOW = "ActionItemWorkflow"
STALLED_DIGEST_WORKFLOW = "StalledDigestWorkflow"
TICKET_SYNC_WORKFLOW = "TicketSyncWorkflow"
RETENTION_WORKFLOW = "RetentionWorkflow"
EFFECTIVENESS_REVIEW_WORKFLOW = "EffectivenessReviewWorkflow"

POSTMORTEM_PREFIX = "postmortem/"
ITEM_PREFIX = "item-"


class BadId(ValueError):
    """A string that is no postmortem or action item id; the message says what one looks like."""


# An incident's id at its source: every real one passes (PagerDuty `Q1R2ABC`, incident.io `01FDAG4SAP...`,
# Opsgenie UUIDs, Alertmanager's hashed group key, `INC-42`), and it is safe in a workflow id, a URL path segment
# and a search: no `/`, `?`, `#`, `%`, quotes, spaces or control characters, and no leading `.` (so never `..`).
EXTERNAL_ID_RULE = "1 to 200 of A-Z a-z 0-9 . _ : @ + - (not starting with '.')"
_EXTERNAL_ID = re.compile(r"[A-Za-z0-9_:@+-][A-Za-z0-9._:@+-]{0,199}")


_SOURCE = re.compile(r"[a-z][a-z0-9_-]{0,31}")


def check_source(value: str) -> str:
    """`value` when it is a source name (`pagerduty`, `api`), else BadId."""
    if not _SOURCE.fullmatch(value):
        raise BadId("source must be a short lowercase name such as 'pagerduty' or 'api'")
    return value


def check_external_id(value: str) -> str:
    """`value` when it is a safe external id (EXTERNAL_ID_RULE), else BadId saying what one looks like."""
    if not _EXTERNAL_ID.fullmatch(value):
        raise BadId(f"external_id must be {EXTERNAL_ID_RULE}")
    return value


def postmortem_workflow_id(source: str, external_id: str) -> str:
    """The one workflow id of an incident's lifecycle: a second trigger never starts a second one."""
    return f"{POSTMORTEM_PREFIX}{source}/{external_id}"


def action_item_workflow_id(postmortem_id: str, item: str) -> str:
    """An action item's workflow id (and its ActionItem.id): `<postmortem id>/item-N`."""
    return f"{postmortem_id}/{item}"


def parse_postmortem_id(text: str) -> str:
    """"postmortem/api/INC-1", "api/INC-1" or "api:INC-1" -> "postmortem/api/INC-1"; BadId otherwise."""
    text = text.strip()
    if text.startswith(POSTMORTEM_PREFIX):
        rest = text[len(POSTMORTEM_PREFIX):]
    else:
        rest = text.replace(":", "/", 1) if ":" in text and "/" not in text else text
    parts = rest.split("/")
    if len(parts) != 2 or not all(parts):
        raise BadId(f"bad postmortem id {text!r}: use postmortem/SOURCE/ID, SOURCE/ID or SOURCE:ID (e.g. api/INC-1)")
    return postmortem_workflow_id(parts[0], parts[1])


def parse_item_id(text: str) -> str:
    """"postmortem/api/INC-1/item-2", "api/INC-1/item-2" or "api:INC-1/item-2" -> the full item id."""
    text = text.strip()
    head, sep, item = text.rpartition("/")
    problem = (f"bad action item id {text!r}: use postmortem/SOURCE/ID/item-N or SOURCE/ID/item-N "
               "(e.g. api/INC-1/item-2)")
    if not sep or not item.startswith(ITEM_PREFIX) or not head:
        raise BadId(problem)
    try:
        return action_item_workflow_id(parse_postmortem_id(head), item)
    except BadId:
        raise BadId(problem) from None


def incident_of(postmortem_id: str) -> tuple[str, str]:
    """(source, external id) of a postmortem id in any of the forms parse_postmortem_id takes."""
    _, source, external_id = parse_postmortem_id(postmortem_id).split("/")
    return source, external_id


def postmortem_of_item(item_id: str) -> str:
    """The postmortem id an action item id belongs to."""
    return parse_item_id(item_id).rpartition("/")[0]


_FILE_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-")
_FILE_STEM_MAX = 200  # bytes; file systems allow 255 per name, and a suffix (.md, .html, .tmp) follows


MEETING_SUFFIX = "/meeting"


def meeting_key(postmortem_id: str) -> str:
    """The idempotency key a postmortem's review meeting is booked under (and its e-mailed invitation's UID
    derived from)."""
    return postmortem_id + MEETING_SUFFIX


def event_uid(idempotency_key: str) -> str:
    """The stable iCalendar UID of the event booked under `idempotency_key`: `<sha256 of the key>@closeloop`
    (the CalDAV calendar's events and the e-mailed invitations share it)."""
    return f"{hashlib.sha256(idempotency_key.encode()).hexdigest()}@closeloop"


def postmortem_of_meeting(key: str) -> str | None:
    """The postmortem id in a `meeting_key`, or None when `key` is none."""
    return key.removesuffix(MEETING_SUFFIX) if key.endswith(MEETING_SUFFIX) and key != MEETING_SUFFIX else None


def file_stem(postmortem_id: str) -> str:
    """The file name (without suffix) of a postmortem's draft and document: injective, so two incidents never
    share a file. "/" becomes "_"; every other character outside [A-Za-z0-9.-] (so "_" and "%" too, and a
    leading ".") is percent-encoded (UTF-8). "postmortem/api/INC-7" -> "postmortem_api_INC-7" (as before),
    "postmortem/api/x_y" -> "postmortem_api_x%5Fy", "postmortem/api_x/y" -> "postmortem_api%5Fx_y". A name
    longer than the file system allows keeps its head and ends in "~" plus a hash of the whole id ("~" is
    always encoded, so such a name never equals an unshortened one)."""
    out: list[str] = []
    for n, c in enumerate(postmortem_id):
        if c == "/":
            out.append("_")
        elif c in _FILE_SAFE and not (n == 0 and c == "."):
            out.append(c)
        else:
            out.append("".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass")))
    stem = "".join(out) or "%"
    if len(stem) > _FILE_STEM_MAX:
        import hashlib

        digest = hashlib.sha256(postmortem_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        stem = f"{stem[:_FILE_STEM_MAX - 33]}~{digest}"
    return stem
