"""Merging what the timeline sources saw into one sorted, deduplicated timeline. Pure."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import ValidationError

from closeloop.models import Incident, TimelineEvent

KEY_KINDS = ("detection", "acknowledge", "escalation", "mitigation", "resolution")


def merge(batches: list[list[TimelineEvent]], *, limit: int = 500) -> list[TimelineEvent]:
    """Merge, sort by time and dedupe (same time, kind and text). Timelines longer than `limit` are
    summarised: every key moment and note is kept, the rest thinned evenly, and one note says so."""
    seen: set[tuple[str, str, str]] = set()
    merged: list[TimelineEvent] = []
    for batch in batches:
        for event in batch:
            key = event.dedup_key()
            if key not in seen:
                seen.add(key)
                merged.append(event)
    merged.sort(key=lambda e: (e.at, e.source, e.kind, e.text))
    if len(merged) <= limit:
        return merged
    keep = [e for e in merged if e.key_moment or e.kind in KEY_KINDS or e.kind == "note"]
    rest = [e for e in merged if not (e.key_moment or e.kind in KEY_KINDS or e.kind == "note")]
    room = max(limit - len(keep) - 1, 0)
    if room and rest:
        stride = len(rest) / room
        keep += [rest[int(i * stride)] for i in range(min(room, len(rest)))]
    dropped = len(merged) - len(keep)
    keep.sort(key=lambda e: (e.at, e.source, e.kind, e.text))
    summary = TimelineEvent(
        at=keep[0].at if keep else merged[0].at, source="closeloop", kind="note",
        text=f"timeline summarised: {dropped} of {len(merged)} routine events omitted; key moments kept",
    )
    return [summary, *keep]


def failure_note(source: str, error: str, at: datetime) -> TimelineEvent:
    return TimelineEvent(at=at, source="closeloop", kind="note", text=f"timeline source {source!r} failed: {error}")


def incident_window(incident: Incident, *, before: timedelta = timedelta(0),
                    now: datetime | None = None) -> tuple[datetime, datetime]:
    """Where a source looks for an incident's events: from its start (else its detection, else its
    resolution) minus `before`, to its resolution (else `now`). Raises ValueError when nothing is known."""
    end = incident.resolved_at or now
    start = incident.started_at or incident.detected_at or end
    if start is None or end is None:
        raise ValueError(f"incident {incident.key} has no start and no resolution time")
    return start - before, max(end, start)


class NoteError(ValueError):
    """A manual note that cannot be taken: the message names the field."""


MAX_NOTE = 5000
MAX_AUTHOR = 200


def note_event(text: str, *, at: datetime | str, author: str | None = None, key_moment: bool = False) -> TimelineEvent:
    """A manual timeline note (`closeloop timeline note`, `POST /api/incidents/.../notes`): the one way both
    build it (`at` may be an ISO 8601 string). NoteError when a field is wrong; its message names the field."""
    if not text.strip():
        raise NoteError("text must be a non-empty string")
    if len(text) > MAX_NOTE:
        raise NoteError(f"text must be at most {MAX_NOTE} characters")
    if author is not None and (not author.strip() or len(author) > MAX_AUTHOR):
        raise NoteError(f"author must be a non-empty string of at most {MAX_AUTHOR} characters")
    try:
        return TimelineEvent(at=at, source="notes", kind="note", text=text.strip(),
                             actor=author.strip() if author else None, key_moment=key_moment)
    except ValidationError:
        raise NoteError("at must be an ISO 8601 time") from None
