"""Rendering: the pre-filled draft, the published postmortem (Markdown + HTML) and the plain-text
notifications, all from Jinja2 templates.

Templates are looked up first in the user's template directory (if configured), then in the packaged
`closeloop/templates/`. User templates are untrusted, so every template renders in an immutable
sandbox; any problem with a template (syntax error, sandbox violation, undefined name, missing file)
raises `TemplateProblem` with a one-line message naming the template.

Variables available to `draft.md.j2`, `postmortem.md.j2` and `postmortem.html.j2`:

    postmortem_id, state (PostmortemState), plan (Plan), incident (Incident), owner (person key),
    timeline (list[TimelineEvent], sorted by time), durations (dict: time_to_detect,
    time_to_acknowledge, time_to_mitigate, time_to_resolve -> timedelta or None), meeting (Meeting or
    None), draft (DraftSubmission or None), items (list of dicts: id, title, description, owner,
    priority, kind, due_at, due_in, ticket_key, ticket_url, status), reviewers (list of person keys),
    reviews (list[ReviewRecord]), review_status (list of dicts: reviewer, decision, comment, at, round;
    the latest vote of each reviewer), approvals (the subset of review_status that approved)

Variables available to `notify/<kind>.txt.j2`: `kind` and `ctx` (the free-form context dict; use
`ctx.get('key', '')` so that a missing key never fails). The first line rendered is the subject.

Filters: `dt` (aware datetime -> "2026-11-22 14:05 UTC"), `duration` (timedelta -> "1h 25m"),
`cell` (one-line text safe for a Markdown table cell), `safe_url` (only http(s)/mailto/relative links).
The draft's filters, which closeloop.draft_markdown reads back exactly (the round trip of `draft.md.j2`):
`md_text` (a section's free text), `md_inline` (a table cell or list value, line breaks as `<br>`), `md_event`
(a timeline event's "What happened" cell: text, bold key moment, link), `md_time` (UTC, to the second if need be).

Escaping: HTML templates autoescape; Markdown templates (`*.md.j2`) escape `&`, `<` and `>` in every `{{ ... }}`
they print (`md_escape`), because a Markdown document is often shown as HTML and Markdown passes raw HTML
through (a `<script>` in a title would run). Plain-text notifications print values as they are.
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from jinja2 import ChoiceLoader, FileSystemLoader, PackageLoader, StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import TypeAdapter

from closeloop.draft_markdown import Escaped, block_text, event_text, exact_time, inline_text
from closeloop.durations import format_duration
from closeloop.integrations.base import Document
from closeloop.models import (
    Incident,
    PostmortemState,
    ReviewDecision,
    ReviewRecord,
    TimelineEvent,
    clamp_non_negative,
)

if TYPE_CHECKING:
    from closeloop.readmodel import EffectivenessReport, RelatedPostmortem

NOTIFICATION_KINDS = (
    "draft_requested",
    "reassigned",
    "reminder",
    "escalation",
    "invite",
    "review_request",
    "review_reminder",
    "changes_requested",
    "published",
    "item_opened",
    "item_reminder",
    "item_escalation",
    "verdict_request",
    "ineffective",
    "item_recurred",
    "ticket_recreated",
    "ticket_refused",
    "wont_do_reason_request",
    "wont_do_unexplained",
    "cancelled",
    "lifecycle_failed",
)
# Not about one postmortem, so not in the list above: the managers' digest (activities/digest.py) and the
# reminder digest of people who take reminders once a day (activities/notify.py).
DIGEST_KINDS = ("stalled_digest", "reminder_digest", "effectiveness_review")


class TemplateProblem(ValueError):
    """A template could not be loaded or rendered. The message is one line and names the template."""


# --------------------------------------------------------------------------- filters


def format_day(value: Any) -> str:
    """An aware datetime's UTC day, "2026-11-22"; None as ""."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).strftime("%Y-%m-%d")
    return str(value)


def format_dt(value: Any) -> str:
    """An aware datetime as "2026-11-22 14:05 UTC"; None as ""; anything else as its text."""
    if value is None:
        return ""
    if isinstance(value, str):  # notification contexts cross Temporal as JSON: ISO strings
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return str(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return str(value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    return str(value)


def format_td(value: Any) -> str:
    """A timedelta as "1h 25m" (seconds too: "90" -> "1m 30s"); None as ""."""
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = timedelta(seconds=value)
    if isinstance(value, str):  # ISO 8601 ("P1DT2H") after a trip through JSON
        try:
            value = TypeAdapter(timedelta).validate_python(value)
        except ValueError:
            return str(value)
    if isinstance(value, timedelta):
        return format_duration(clamp_non_negative(value))
    return str(value)


def md_cell(value: Any) -> str:
    """Text that stays inside one Markdown table cell: one line, pipes escaped."""
    if value is None:
        return ""
    return " ".join(str(value).split()).replace("|", "\\|")


def md_escape(value: Any) -> Any:
    """What a Markdown template prints: `&`, `<`, `>` as entities, so no value becomes raw HTML (the rest of
    the Markdown stays readable: quotes and Markdown punctuation are kept)."""
    if value is None:
        return value
    if isinstance(value, Escaped):  # escaped by its filter already (md_inline, md_event)
        return str(value)
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def safe_url(value: Any) -> str:
    """A link target that cannot run script: http(s), mailto or relative links; anything else becomes "#"."""
    if value is None:
        return "#"
    url = str(value).strip()
    scheme = url.split(":", 1)[0].lower() if ":" in url.split("/", 1)[0] else ""
    if scheme and scheme not in ("http", "https", "mailto"):
        return "#"
    return url


# --------------------------------------------------------------------------- environments


def _loader(user_template_dir: Path | None) -> jinja2.BaseLoader:
    packaged = PackageLoader("closeloop", "templates")
    if user_template_dir is None:
        return packaged
    return ChoiceLoader([FileSystemLoader(str(user_template_dir)), packaged])


def _environment(user_template_dir: Path | None, *, autoescape: bool,
                 markdown: bool = False) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        loader=_loader(user_template_dir),
        autoescape=autoescape,
        finalize=md_escape if markdown else None,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=True,
    )
    env.filters["dt"] = format_dt
    env.filters["day"] = format_day
    env.filters["duration"] = format_td
    env.filters["cell"] = md_cell
    env.filters["safe_url"] = safe_url
    env.filters["md_text"] = block_text
    env.filters["md_inline"] = inline_text
    env.filters["md_event"] = partial(event_text, safe_url=safe_url)
    env.filters["md_time"] = exact_time
    return env


def make_environment(
    user_template_dir: Path | None,
) -> tuple[ImmutableSandboxedEnvironment, ImmutableSandboxedEnvironment]:
    """(Markdown environment, HTML environment). Both sandboxed; HTML autoescapes, Markdown escapes with
    `md_escape`."""
    return (_environment(user_template_dir, autoescape=False, markdown=True),
            _environment(user_template_dir, autoescape=True))


Envs = tuple[ImmutableSandboxedEnvironment, ImmutableSandboxedEnvironment, ImmutableSandboxedEnvironment]


@lru_cache(maxsize=16)
def _cached(key: str | None) -> Envs:
    template_dir = Path(key) if key is not None else None
    return (*make_environment(template_dir), _environment(template_dir, autoescape=False))


def _envs(template_dir: Path | str | None) -> Envs:
    """(Markdown, HTML, plain text) environments of a template directory, made once."""
    return _cached(str(Path(template_dir).absolute()) if template_dir is not None else None)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _where(error: BaseException) -> str:
    """The innermost template line an error came from, as " (at file:line)", if the traceback has one."""
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        if frame.filename.endswith(".j2"):
            return f" (at {Path(frame.filename).name}:{frame.lineno})"
    return ""


def _render(env: jinja2.Environment, name: str, variables: dict[str, Any]) -> str:
    try:
        template = env.get_template(name)
    except jinja2.TemplateSyntaxError as e:
        where = e.name or name
        raise TemplateProblem(f"template {where}: syntax error on line {e.lineno}: {_one_line(e.message or '')}") from e
    except jinja2.TemplateNotFound as e:
        raise TemplateProblem(f"template {name}: not found (missing {e.name})") from e
    except jinja2.TemplateError as e:
        raise TemplateProblem(f"template {name}: {_one_line(str(e))}") from e
    try:
        return template.render(**variables)
    except jinja2.TemplateSyntaxError as e:  # from an {% include %} / {% extends %}
        raise TemplateProblem(
            f"template {name}: syntax error in {e.name or '?'} on line {e.lineno}: {_one_line(e.message or '')}"
        ) from e
    except jinja2.TemplateNotFound as e:
        raise TemplateProblem(f"template {name}: includes a missing template {e.name}") from e
    except jinja2.exceptions.SecurityError as e:
        raise TemplateProblem(f"template {name}: not allowed by the sandbox: {_one_line(str(e))}{_where(e)}") from e
    except jinja2.UndefinedError as e:
        raise TemplateProblem(f"template {name}: undefined: {_one_line(str(e))}{_where(e)}") from e
    except jinja2.TemplateError as e:
        raise TemplateProblem(f"template {name}: {_one_line(str(e))}{_where(e)}") from e
    except (TypeError, ValueError, AttributeError, KeyError, IndexError, ArithmeticError, OverflowError) as e:
        raise TemplateProblem(
            f"template {name}: {type(e).__name__}: {_one_line(str(e))}{_where(e)}"
        ) from e


# --------------------------------------------------------------------------- derived facts


def _ts(event: TimelineEvent) -> datetime:
    return event.at


def incident_durations(incident: Incident, timeline: list[TimelineEvent]) -> dict[str, timedelta | None]:
    """Time to detect, acknowledge, mitigate and resolve; None where a timestamp is unknown."""

    def between(start: datetime | None, end: datetime | None) -> timedelta | None:
        if start is None or end is None:
            return None
        return clamp_non_negative(end - start)

    acks = sorted((e for e in timeline if e.kind == "acknowledge"), key=_ts)
    first_ack = acks[0].at if acks else None
    return {
        "time_to_detect": between(incident.started_at, incident.detected_at),
        "time_to_acknowledge": between(incident.detected_at or incident.started_at, first_ack),
        "time_to_mitigate": between(incident.started_at, incident.mitigated_at),
        "time_to_resolve": between(incident.started_at, incident.resolved_at),
    }


def _items(state: PostmortemState) -> list[dict[str, Any]]:
    """The action items as plain rows: the tracked items once they exist, else the draft's proposals."""
    if state.items:
        return [
            {
                "id": i.id, "title": i.title, "description": i.description, "owner": i.owner,
                "priority": i.priority, "kind": i.kind, "due_at": i.due_at, "due_in": None,
                "ticket_key": i.ticket_key, "ticket_url": i.ticket_url, "status": i.status.value,
                "done_when": i.done_when,
            }
            for i in state.items
        ]
    specs = state.draft.action_items if state.draft else []
    return [
        {
            "id": None, "title": s.title, "description": s.description, "owner": s.owner,
            "priority": s.priority, "kind": s.kind, "due_at": None,
            "due_in": s.due_in if s.due_in is not None else state.plan.policy.item_due.get(s.priority),
            "ticket_key": None, "ticket_url": None, "status": "proposed", "done_when": s.done_when,
        }
        for s in specs
    ]


def _review_status(state: PostmortemState) -> list[dict[str, Any]]:
    latest: dict[str, ReviewRecord] = {}
    for review in sorted(state.reviews, key=lambda r: (r.round, r.at)):
        latest[review.reviewer] = review
    order = list(dict.fromkeys([*state.plan.reviewers, *latest]))
    rows = []
    for reviewer in order:
        r = latest.get(reviewer)
        rows.append(
            {
                "reviewer": reviewer,
                "decision": r.decision.value if r else None,
                "comment": r.comment if r else "",
                "at": r.at if r else None,
                "round": r.round if r else None,
            }
        )
    return rows


def _variables(state: PostmortemState) -> dict[str, Any]:
    incident = state.plan.incident
    timeline = sorted(state.draft.timeline if state.draft and state.draft.timeline else state.timeline, key=_ts)
    review_status = _review_status(state)
    return {
        "postmortem_id": state.plan.postmortem_id,
        "state": state,
        "plan": state.plan,
        "incident": incident,
        "owner": state.owner,
        "timeline": timeline,
        "durations": incident_durations(incident, timeline),
        "meeting": state.meeting,
        "draft": state.draft,
        "items": _items(state),
        "reviewers": list(state.plan.reviewers),
        "reviews": list(state.reviews),
        "review_status": review_status,
        "approvals": [r for r in review_status if r["decision"] == ReviewDecision.approve.value],
    }


# --------------------------------------------------------------------------- public API


def render_draft(state: PostmortemState, *, template_dir: Path | None = None,
                 related: Sequence[RelatedPostmortem] = ()) -> str:
    """The Markdown draft handed to the owner: incident facts, related incidents (earlier postmortems of the same
    kind, with their items and how they went) and the timeline filled in, the rest to write."""
    env_md, _, _ = _envs(template_dir)
    return _render(env_md, "draft.md.j2", {**_variables(state), "related": list(related)})


def render_document(state: PostmortemState, *, template_dir: Path | None = None) -> Document:
    """The approved postmortem as Markdown and as a self-contained HTML page."""
    env_md, env_html, _ = _envs(template_dir)
    variables = _variables(state)
    incident = state.plan.incident
    return Document(
        postmortem_id=state.plan.postmortem_id,
        title=f"Postmortem: {incident.title}",
        markdown=_render(env_md, "postmortem.md.j2", variables),
        html=_render(env_html, "postmortem.html.j2", variables),
        started_at=incident.started_at or incident.detected_at or (state.stages[0].at if state.stages else None),
    )


def effectiveness_document_id(since: datetime, until: datetime) -> str:
    """The review's id as a document (publishers key pages and files by it): its period."""
    return f"reports/effectiveness/{format_day(since)}_{format_day(until)}"


def render_effectiveness(report: EffectivenessReport, *, generated_at: datetime, failing_after: int = 2,
                         template_dir: Path | None = None) -> Document:
    """The effectiveness review (closeloop.readmodel.EffectivenessReport) as Markdown and HTML, from
    `effectiveness.md.j2` and `effectiveness.html.j2` (overridable like the postmortem's)."""
    env_md, env_html, _ = _envs(template_dir)
    variables = {"report": report, "generated_at": generated_at, "failing_after": failing_after}
    return Document(
        postmortem_id=effectiveness_document_id(report.since, report.until),
        title=f"Effectiveness review: {format_day(report.since)} to {format_day(report.until)}",
        markdown=_render(env_md, "effectiveness.md.j2", variables),
        html=_render(env_html, "effectiveness.html.j2", variables),
        kind="report",
        started_at=report.since,
    )


def render_notification(kind: str, context: dict[str, Any], *, template_dir: Path | None = None) -> tuple[str, str]:
    """(subject, body) of a plain-text notification from `notify/<kind>.txt.j2` (first line = subject)."""
    if not kind or not all(c.isalnum() or c == "_" for c in kind):
        raise TemplateProblem(f"template notify/{kind}.txt.j2: invalid notification kind {kind!r}")
    name = f"notify/{kind}.txt.j2"
    _, _, env_text = _envs(template_dir)
    text = _render(env_text, name, {"kind": kind, "ctx": dict(context)})
    subject, _, body = text.lstrip("\n").partition("\n")
    subject = subject.strip()
    if not subject:
        raise TemplateProblem(f"template {name}: the first line (the subject) is empty")
    return subject, body.strip("\n") + "\n"


def render_notification_html(subject: str, body: str, links: dict[str, str],
                             actions: list[dict[str, str]], *, template_dir: Path | None = None) -> str:
    """The HTML of a notification (an email's HTML part) from `notify/message.html.j2`: the same subject and
    body the plain-text template rendered, escaped, in paragraphs, with the links and the actions that have a
    URL. Variables: `subject`, `paragraphs` (list of list of lines), `links` (dict name -> URL), `actions`
    (list of dicts: label, url)."""
    paragraphs = [p.splitlines() for p in body.strip("\n").split("\n\n") if p.strip()]
    _, env_html, _ = _envs(template_dir)
    return _render(env_html, "notify/message.html.j2", {"subject": subject, "paragraphs": paragraphs,
                                                        "links": dict(links), "actions": list(actions)})
