"""The Markdown draft, read back: the owner edits the pre-filled `draft.md.j2` in any editor and submits it
(`closeloop draft submit ID --file draft.md`); `parse_draft` turns it into a DraftSubmission.

Pure: no I/O. Both directions live here, so that they agree: the Markdown templates print the draft's texts
with the filters below (registered by closeloop.rendering), and `parse_draft` undoes exactly what they did, so a
draft rendered and parsed back is the same draft (the round trip).

What the parser reads, section by section (headings case-insensitive, any level; `#` title, `## Incident` and
`## Durations` are the pre-filled facts and are ignored, as are HTML comments):

    ## Summary                      summary (required)
    ## Impact                       a list "- Users affected: ...", "- Duration: ...", "- Money: ...",
                                    "- Customers: ..." first, then free text (impact)
    ## Timeline                     a table: Time (UTC) | Kind | What happened | Who | Source
    ## Root cause, ## Contributing factors, ## Resolution, ## Recovery
    ## Lessons learned              free text (lessons), and its parts:
    ### What went well, ### What went badly, ### Where we got lucky
    ## Action items                 a table: Title | Owner | Priority | Kind | Due | Done when [| Description]

A line starting with `TODO:` is the template's placeholder and never part of the draft: a section holding
nothing else is empty. Escapes (added by the filters, removed by the parser): a text line starting with `#` or
`TODO:` gets a backslash in front (`\\# not a heading`); in table cells and in the impact list `\\` is a
backslash and `\\|` a pipe (a backslash before any ASCII punctuation is that character, as in Markdown), a line
break is `<br>`, and a value starting with `TODO` gets a backslash in front. `&lt;`, `&gt;` and `&amp;` (the
Markdown templates' HTML escaping) read back as `<`, `>` and `&`.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import TypeAdapter, ValidationError

from closeloop.durations import Duration
from closeloop.models import ActionItemSpec, DraftSubmission, TimelineEvent
from closeloop.validation import first_problem


class DraftError(ValueError):
    """A Markdown draft that cannot be read. The message is one line: "line N: what is wrong"."""

    def __init__(self, line: int | None, message: str) -> None:
        self.line = line
        self.problem = message
        super().__init__(f"line {line}: {message}" if line else message)


class Escaped(str):
    """Text already escaped for a Markdown template (`&`, `<`, `>` as entities): printed as it is."""


# --------------------------------------------------------------------------- the escapes (render side)

_ENTITIES = re.compile(r"&(amp|lt|gt);")
_ENTITY_CHARS = {"amp": "&", "lt": "<", "gt": ">"}
_PUNCTUATION = re.escape(string.punctuation)
_BACKSLASH = re.compile(rf"\\([{_PUNCTUATION}])")
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
# A text line that would read as a heading or a placeholder (after its indentation and any backslashes).
_SPECIAL_LINE = re.compile(r"^([ \t]*)(\\*)(#|TODO:)")
_LINK_SUFFIX = re.compile(r"(?:^| )\(\[link\]\((\S*)\)\)$")


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _unhtml(text: str) -> str:
    return _ENTITIES.sub(lambda m: _ENTITY_CHARS[m.group(1)], text)


def normal_text(text: str) -> str:
    """A free text as the parser gives it back: line endings `\\n`, no trailing spaces on a line, no blank lines
    (or spaces) around it."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(line.rstrip() for line in lines).strip()


def normal_inline(text: str) -> str:
    """A value of a table cell or of the impact list as the parser gives it back: without spaces around it."""
    return text.replace("\r\n", "\n").replace("\r", "\n").strip()


def block_text(value: Any) -> str:
    """A free text for a section's body: a line starting with `#` or `TODO:` gets a backslash, so that it reads
    back as text (the Markdown template escapes `&`, `<` and `>` afterwards)."""
    if value is None:
        return ""
    return "\n".join(_SPECIAL_LINE.sub(r"\1\\\2\3", line) for line in normal_text(str(value)).split("\n"))


def inline_text(value: Any) -> Escaped:
    """A value for a table cell or a list item that reads back exactly: backslashes doubled, pipes escaped,
    `&<>` as entities, line breaks as `<br>`, and a backslash in front of a leading `TODO`."""
    if value is None:
        return Escaped("")
    text = normal_inline(str(value)).replace("\\", "\\\\").replace("|", "\\|")
    text = _html(text).replace("\n", "<br>")
    # a leading TODO would read as a placeholder, a leading * or _ as the list item's bold label's end
    return Escaped("\\" + text if text.startswith(("TODO", "*", "_")) else text)


def event_text(event: Any, safe_url: Callable[[Any], str] = str) -> Escaped:
    """The "What happened" cell of a timeline event: its text, in bold for a key moment, then its link (made
    safe by `safe_url`: closeloop.rendering's)."""
    text = str(inline_text(event.text))
    if text.startswith("*"):
        text = "\\" + text
    suffix = _LINK_SUFFIX.search(text)
    if suffix and not event.url:  # text that would read back as a link: its "(" escaped
        at = text.index("(", suffix.start())
        text = f"{text[:at]}\\{text[at:]}"
    if event.key_moment:
        text = f"**{text}**"
    if event.url:
        text += f" ([link]({inline_text(safe_url(event.url))}))"
    return Escaped(text)


def exact_time(value: Any) -> str:
    """A timeline time in UTC to the minute ("2026-11-22 14:05 UTC"), with seconds (and microseconds) when it
    has them, so it reads back as the same instant."""
    if not isinstance(value, datetime):
        return "" if value is None else str(value)
    at = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    if at.microsecond:
        return at.strftime("%Y-%m-%d %H:%M:%S.%f UTC")
    if at.second:
        return at.strftime("%Y-%m-%d %H:%M:%S UTC")
    return at.strftime("%Y-%m-%d %H:%M UTC")


# --------------------------------------------------------------------------- reading values back


def _unblock_line(line: str) -> str:
    match = _SPECIAL_LINE.match(line)
    if match and match.group(2):
        return line[: match.end(1)] + match.group(2)[1:] + line[match.end(2):]
    return line


def _decode_inline(raw: str) -> str | None:
    """A cell's (or list value's) text; None for a `TODO` placeholder."""
    raw = raw.strip()
    if raw.startswith("TODO"):
        return None
    if raw.startswith("\\TODO"):
        raw = raw[1:]
    return _unhtml(_BACKSLASH.sub(r"\1", _BR.sub("\n", raw))).strip()


def _split_row(line: str) -> list[str]:
    """The raw cells of a table row (outer pipes optional; `\\|` stays inside its cell, still escaped)."""
    text = line.strip()
    cells: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if char == "|":
            cells.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    cells.append("".join(current))
    if text.startswith("|"):
        cells = cells[1:]
    if len(cells) > 1 and text.endswith("|") and not text.endswith("\\|"):
        cells = cells[:-1]
    return [c.strip() for c in cells]


def _is_row(line: str) -> bool:
    return len(_split_row(line)) > 1 or line.strip().startswith("|")


_DELIMITER_CELL = re.compile(r"^:?-+:?$")


def _is_delimiter(line: str) -> bool:
    cells = _split_row(line)
    return _is_row(line) and all(_DELIMITER_CELL.match(c.replace(" ", "")) for c in cells)


# --------------------------------------------------------------------------- sections

TIMELINE_COLUMNS = ("Time (UTC)", "Kind", "What happened", "Who", "Source")
ITEM_COLUMNS = ("Title", "Owner", "Priority", "Kind", "Due", "Done when")
PRIORITIES = ("P1", "P2", "P3", "P4")
KINDS = ("prevent", "detect", "mitigate", "process")
IMPACT_FACTS = {"users affected": "impact_users", "duration": "impact_duration", "money": "impact_money",
                "customers": "impact_customers"}

# heading (lower case) -> (its name, the field it fills)
SECTIONS: dict[str, tuple[str, str]] = {
    "summary": ("Summary", "summary"),
    "impact": ("Impact", "impact"),
    "timeline": ("Timeline", "timeline"),
    "root cause": ("Root cause", "root_cause"),
    "contributing factors": ("Contributing factors", "contributing_factors"),
    "resolution": ("Resolution", "resolution"),
    "recovery": ("Recovery", "recovery"),
    "lessons learned": ("Lessons learned", "lessons"),
    "what went well": ("What went well", "went_well"),
    "what went badly": ("What went badly", "went_badly"),
    "where we got lucky": ("Where we got lucky", "lucky"),
    "action items": ("Action items", "action_items"),
    "incident": ("Incident", ""),  # the pre-filled facts: not read
    "durations": ("Durations", ""),
    "related incidents": ("Related incidents", ""),  # filled in by closeloop: not read
}
KNOWN = ", ".join(name for name, _ in SECTIONS.values())

_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_TODO_LINE = re.compile(r"^[ \t]*TODO:")
_FACT = re.compile(r"^[ \t]*[-*+][ \t]+(?:\*\*|__)?[ \t]*(users affected|duration|money|customers)[ \t]*"
                   r"(?:(?:\*\*|__)[ \t]*:|:[ \t]*(?:\*\*|__)?)(.*)$", re.IGNORECASE)


@dataclass
class _Section:
    name: str
    field: str
    line: int  # the heading's
    body: list[tuple[int, str]]


def _heading_name(text: str) -> str:
    text = re.sub(r"[ \t]+#+$", "", text.strip()).strip().rstrip(":").strip()
    return " ".join(text.strip("*_").split()).lower()


def _without_comments(text: str) -> str:
    """The text with its HTML comments blanked out (their line breaks kept, so line numbers stay)."""
    start = text.find("<!--")
    while start != -1:
        end = text.find("-->", start + 4)
        if end == -1:
            raise DraftError(text.count("\n", 0, start) + 1, "an HTML comment (<!--) is never closed (-->)")
        comment = text[start : end + 3]
        text = text[:start] + "\n" * comment.count("\n") + text[end + 3:]
        start = text.find("<!--", start)
    return text


def _sections(lines: list[str]) -> dict[str, _Section]:
    sections: dict[str, _Section] = {}
    current: _Section | None = None
    fence: str | None = None
    for number, line in enumerate(lines, start=1):
        heading = _HEADING.match(line)
        key = _heading_name(heading.group(2) or "") if heading else ""
        if heading and key in SECTIONS:
            fence = None
            name, field = SECTIONS[key]
            if key in sections:
                raise DraftError(number, f"the {name} section appears twice (also on line {sections[key].line})")
            current = sections[key] = _Section(name, field, number, [])
            continue
        fence_match = _FENCE.match(line)
        if fence_match:
            mark = fence_match.group(1)
            if fence is None:
                fence = mark
            elif mark[0] == fence[0] and len(mark) >= len(fence) and not line.strip()[len(mark):].strip():
                fence = None
        elif heading and fence is None:
            if current is None and len(heading.group(1)) == 1:
                continue  # the draft's title
            if current is not None and not current.field and len(heading.group(1)) > 2:
                continue  # a sub-heading of a section closeloop fills in (Related incidents): not read
            shown = (heading.group(2) or "").strip()
            raise DraftError(number, f"unknown section \"{shown}\"; the sections are: {KNOWN}")
        if current is not None:
            current.body.append((number, line))
    return sections


def _text(body: list[tuple[int, str]]) -> tuple[str, bool]:
    """A free text section's text, and whether it held a TODO placeholder."""
    kept = [_unblock_line(line) for _, line in body if not _TODO_LINE.match(line)]
    return _unhtml(normal_text("\n".join(kept))), len(kept) < len(body)


def _impact(section: _Section) -> dict[str, Any]:
    values: dict[str, Any] = {}
    rest = list(section.body)
    while rest:
        number, line = rest[0]
        match = _FACT.match(line)
        if not line.strip():
            rest.pop(0)
            continue
        if not match or IMPACT_FACTS[match.group(1).lower()] in values:
            break
        rest.pop(0)
        values[IMPACT_FACTS[match.group(1).lower()]] = _decode_inline(match.group(2)) or ""
    values["impact"] = _text(rest)[0]
    return values


def _table(section: _Section, what: str, columns: tuple[str, ...],
           optional: tuple[str, ...] = ()) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """(the columns, the rows by line) of the one table of a section; anything else there is an error."""
    lines = [(n, line) for n, line in section.body if line.strip() and not _TODO_LINE.match(line)]
    expected = " | ".join(columns)
    if not lines:
        return list(columns), []
    number, header = lines[0]
    if len(lines) < 2 or not _is_row(header) or not _is_delimiter(lines[1][1]):
        raise DraftError(number, f"the {what} section holds text but no table; expected a table: {expected}")
    names = [_decode_inline(c) or "" for c in _split_row(header)]
    wanted = [c.lower() for c in columns]
    given = [" ".join(n.lower().replace("(utc)", "").split()) for n in names]
    plain = [" ".join(c.replace("(utc)", "").split()) for c in wanted]
    extra = [c.lower() for c in optional]
    if len(names) < len(columns) or len(names) > len(columns) + len(optional):
        raise DraftError(number, f"the {what} table has {len(names)} columns, expected {len(columns)}: {expected}")
    if given[: len(columns)] != plain or given[len(columns):] != extra[: len(given) - len(columns)]:
        raise DraftError(number, f"the {what} table's columns are \"{' | '.join(names)}\", expected: {expected}")
    rows: list[tuple[int, list[str]]] = []
    for number, line in lines[2:]:
        if not _is_row(line):
            raise DraftError(number, f"{what}: only the table is read here, and this line is not one of its rows "
                                     f"(write a table row: {expected})")
        if _is_delimiter(line):
            continue
        cells = _split_row(line)
        if len(cells) > len(names):
            raise DraftError(number, f"{what}: this row has {len(cells)} cells, expected {len(names)}: "
                                     f"{' | '.join(names)} (write a | inside a cell as \\|)")
        if any(cells):
            rows.append((number, cells + [""] * (len(names) - len(cells))))
    return [c for c in (*columns, *optional)][: len(names)], rows


def _time(raw: str, number: int) -> datetime:
    text = _decode_inline(raw) or ""
    try:
        at = datetime.fromisoformat(re.sub(r"\s*UTC$", "", text, flags=re.IGNORECASE).strip())
    except ValueError:
        shown = text or "(empty)"
        raise DraftError(number, f"timeline: time \"{shown}\" is not a time like 2026-11-22 14:05 UTC") from None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def _timeline(section: _Section) -> list[TimelineEvent]:
    _, rows = _table(section, "timeline", TIMELINE_COLUMNS)
    events: list[TimelineEvent] = []
    for number, (when, kind, what, who, source) in rows:
        at = _time(when, number)
        raw = what.strip()
        url: str | None = None
        link = _LINK_SUFFIX.search(raw)
        if link:
            url = _decode_inline(link.group(1)) or ""
            raw = raw[: link.start()]
        key_moment = len(raw) >= 4 and raw.startswith("**") and raw.endswith("**")
        if key_moment:
            raw = raw[2:-2]
        try:
            events.append(TimelineEvent(at=at, kind=_decode_inline(kind) or "event", text=_decode_inline(raw) or "",
                                        actor=_decode_inline(who) or None, source=_decode_inline(source) or "author",
                                        url=url or None, key_moment=key_moment))
        except ValidationError as e:
            raise DraftError(number, f"timeline: {first_problem(e).line()}") from None
    return sorted(events, key=lambda e: e.at)


def _due(raw: str, number: int, now: datetime) -> timedelta | None:
    text = (_decode_inline(raw) or "").strip()
    text = re.sub(r"^within\s+", "", text, flags=re.IGNORECASE)  # as the published document says it
    if not text:
        return None
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        try:
            day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC) + timedelta(hours=23, minutes=59)
        except ValueError:
            raise DraftError(number, f"action items: due \"{text}\" is not a date") from None
        hours = int((day - now).total_seconds() // 3600)
        if hours < 1:
            raise DraftError(number, f"action items: due {text} is not in the future")
        return timedelta(hours=hours)
    try:
        due_in = _DURATION.validate_python(text)
    except (ValidationError, ValueError):
        raise DraftError(number, f"action items: due \"{text}\" is neither a date like 2026-12-24 nor a duration "
                                 "like 14d (leave it empty for the policy's)") from None
    if due_in < timedelta(0):
        raise DraftError(number, f"action items: due \"{text}\" is not in the future")
    return due_in


_DURATION: TypeAdapter[timedelta] = TypeAdapter(Duration)


def _action_items(section: _Section, now: datetime) -> list[ActionItemSpec]:
    columns, rows = _table(section, "action items", ITEM_COLUMNS, ("Description",))
    items: list[ActionItemSpec] = []
    for number, cells in rows:
        title, owner, priority, kind, due, done_when, *rest = cells
        title_text = _decode_inline(title)
        owner_text = _decode_inline(owner) or ""
        if title_text is None:
            if not owner_text:
                continue  # the placeholder row
            raise DraftError(number, "action items: the title still says TODO")
        if not title_text:
            raise DraftError(number, "action items: the title is empty")
        if not owner_text:
            raise DraftError(number, f"action items: \"{title_text}\" has no owner (a person key, e.g. alice)")
        spec: dict[str, Any] = {"title": title_text, "owner": owner_text}
        level = (_decode_inline(priority) or "").upper()
        if level:
            if level not in PRIORITIES:
                raise DraftError(number, f"action items: priority \"{level}\" is not one of P1-P4")
            spec["priority"] = level
        sort = (_decode_inline(kind) or "").lower()
        if sort:
            if sort not in KINDS:
                raise DraftError(number, f"action items: kind \"{sort}\" is not one of {', '.join(KINDS)}")
            spec["kind"] = sort
        due_in = _due(due, number, now)
        if due_in is not None:
            spec["due_in"] = due_in
        spec["done_when"] = _decode_inline(done_when) or ""
        if rest:
            spec["description"] = _decode_inline(rest[0]) or ""
        try:
            items.append(ActionItemSpec.model_validate(spec))
        except ValidationError as e:
            raise DraftError(number, f"action items: {first_problem(e).line()}") from None
    return items


# --------------------------------------------------------------------------- the parser


def parse_draft(text: str, *, by: str, now: datetime) -> DraftSubmission:
    """The DraftSubmission of an edited Markdown draft, submitted by `by` at `now` (a due date counts from it).
    DraftError (one line, naming the line) for anything it cannot read."""
    now = now if now.tzinfo else now.replace(tzinfo=UTC)
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    lines = _without_comments(text).split("\n")
    sections = _sections(lines)
    if "summary" not in sections:
        raise DraftError(None, "the draft has no Summary section (## Summary): write what happened there")
    values: dict[str, Any] = {}
    for section in sections.values():
        if not section.field:
            continue
        if section.field == "impact":
            values.update(_impact(section))
        elif section.field == "timeline":
            values["timeline"] = _timeline(section)
        elif section.field == "action_items":
            values["action_items"] = _action_items(section, now)
        else:
            values[section.field], todo = _text(section.body)
            if section.field == "summary" and not values["summary"]:
                why = "it still says TODO" if todo else "write what happened, for a reader who was not there"
                raise DraftError(section.line, f"the Summary section is empty ({why})")
    try:
        return DraftSubmission(by=by, **values)
    except ValidationError as e:
        problem = first_problem(e)
        field = str(e.errors()[0]["loc"][0]) if e.errors()[0]["loc"] else ""
        where = next((s for s in sections.values() if s.field == field or
                      (field.startswith("impact") and s.field == "impact")), None)
        raise DraftError(where.line if where else None, problem.line()) from None
