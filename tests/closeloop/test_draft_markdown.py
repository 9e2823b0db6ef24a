"""The Markdown draft's round trip: the pre-filled draft (draft.md.j2), edited as a person would, reads back as
the DraftSubmission they meant; a submission rendered and read back is the same; bad drafts are one line
naming the line."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from closeloop.draft_markdown import DraftError, normal_inline, normal_text, parse_draft
from closeloop.models import ActionItemSpec, DraftSubmission, PostmortemState, TimelineEvent
from closeloop.rendering import render_draft
from tests.closeloop.cli.test_cli_errors import config_path, invoke, one_line_error  # noqa: F401 (a fixture)
from tests.closeloop.test_rendering import T0, make_state

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def with_draft(draft: DraftSubmission, timeline: list[TimelineEvent] | None = None) -> PostmortemState:
    """The state after "request changes": the owner's previous draft is rendered back to them."""
    return make_state(draft=draft, timeline=timeline if timeline is not None else [])


def fill(md: str, replacements: list[tuple[str, str]]) -> str:
    for old, new in replacements:
        assert md.count(old) == 1, old
        md = md.replace(old, new)
    return md


# --------------------------------------------------------------------------- the person's round trip


def test_the_prefilled_draft_edited_by_a_person_reads_back() -> None:
    md = render_draft(make_state())
    edited = fill(md, [
        ("TODO: what happened, in two or three sentences.",
         "Deploy 812 broke checkout for 40 minutes.\nEvery *second* request failed."),
        ("TODO: e.g. 12% of checkouts", "12% of checkouts"),
        ("TODO: e.g. 42 minutes", "42 minutes"),
        ("TODO: e.g. about $18,000 in lost orders", "about $18,000"),
        ("TODO: e.g. 3 enterprise customers, SLA credits owed", "ACME \\| Globex (SLA credits)"),
        ("TODO: who was affected, how, and for how long.", "Buyers in the EU saw errors & gave up."),
        ("TODO: why it happened (the system, not who).", "A missing migration:\n\n```\n# the column\nALTER TABLE "
                                                          "orders ADD x;\n```"),
        ("TODO: what made it worse or more likely.", "- no canary\n- no alert on 5xx"),
        ("TODO: what stopped the impact.", "Rollback of deploy 812."),
        ("TODO: what is fixed for now, and what is fixed for good.", "Rolled back now; the migration runs first "
                                                                     "from now on."),
        ("TODO: what went well.", "The rollback took 2 minutes."),
        ("TODO: what went badly.", "Nobody was paged for 7 minutes."),
        # "Where we got lucky" stays TODO: empty.
        # the timeline: one row edited, one deleted
        ("| 2026-11-22 14:17 UTC | acknowledge | Acknowledged | alice | pagerduty |",
         "| 2026-11-22 14:16 UTC | acknowledge | Acknowledged by the on-call, fast | alice | pagerduty |"),
        ("| 2026-11-22 14:25 UTC | acknowledge | Re-acknowledged |  | pagerduty |\n", ""),
        # two action items instead of the placeholder row
        ("| TODO: what will stop this from happening again | | P3 | prevent | | |",
         "| Add a canary stage | bob | P1 | prevent | 14d | a bad deploy stops at 5% |\n"
         "| Alert on checkout 5xx | carol | p2 | Detect | 2026-12-24 | the alert fires in a game day |"),
    ])
    draft = parse_draft(edited, by="alice", now=NOW)
    assert draft.by == "alice"
    assert draft.summary == "Deploy 812 broke checkout for 40 minutes.\nEvery *second* request failed."
    assert draft.impact_users == "12% of checkouts"
    assert draft.impact_duration == "42 minutes"
    assert draft.impact_money == "about $18,000"
    assert draft.impact_customers == "ACME | Globex (SLA credits)"
    assert draft.impact == "Buyers in the EU saw errors & gave up."
    assert draft.root_cause == "A missing migration:\n\n```\n# the column\nALTER TABLE orders ADD x;\n```"
    assert draft.contributing_factors == "- no canary\n- no alert on 5xx"
    assert draft.resolution == "Rollback of deploy 812."
    assert draft.recovery == "Rolled back now; the migration runs first from now on."
    assert draft.lessons == ""
    assert draft.went_well == "The rollback took 2 minutes."
    assert draft.went_badly == "Nobody was paged for 7 minutes."
    assert draft.lucky == ""
    assert draft.timeline == [
        TimelineEvent(at=T0, source="deploy", kind="deploy", text="Deploy 812 | checkout v2.3"),
        TimelineEvent(at=T0 + timedelta(minutes=11), source="pagerduty", kind="acknowledge",
                      text="Acknowledged by the on-call, fast", actor="alice"),
        TimelineEvent(at=T0 + timedelta(minutes=30), source="slack", kind="mitigation", text="Rolled back deploy 812",
                      actor="bob", key_moment=True),
    ]
    # 2026-12-24 23:59 UTC is 23 days 13 h 59 min after NOW: whole hours, as the web editor counts them
    assert draft.action_items == [
        ActionItemSpec(title="Add a canary stage", owner="bob", priority="P1", kind="prevent",
                       due_in=timedelta(days=14), done_when="a bad deploy stops at 5%"),
        ActionItemSpec(title="Alert on checkout 5xx", owner="carol", priority="P2", kind="detect",
                       due_in=timedelta(hours=23 * 24 + 13), done_when="the alert fires in a game day"),
    ]
    # ... and submitted again after "request changes", it comes back the same
    assert parse_draft(render_draft(with_draft(draft)), by="alice", now=NOW) == draft


# --------------------------------------------------------------------------- a submission's round trip

NASTY = "a | b \\| c * d ** # e ` f ``` <script>x</script> & &lt; \\ g _h_ [i](j) 🙂 Ünïcødé 漢字 -->"


def full_draft() -> DraftSubmission:
    return DraftSubmission(
        by="alice",
        summary=f"# Not a heading\n{NASTY}\n\n   ## indented\nTODO: stays, it is the author's\n\\# escaped already",
        impact=f"- Users affected: not a fact, the text\n{NASTY}",
        impact_users=f"12% | {NASTY}",
        impact_duration="TODO later",
        impact_money="$18,000 <approx>\nsecond line",
        impact_customers="\\TODO odd",
        root_cause="```\n# comment in code\n## Summary\n```\n<!-- not a comment -->",
        contributing_factors="* one\n* two\n\n1. three",
        resolution="Rolled back | twice",
        recovery="|col|\n|---|\n|cell|",
        lessons="Overall: `canary` deploys.",
        went_well="**bold**",
        went_badly="_it_ <b>did</b>",
        lucky="TODO: none, really\nok",
        timeline=[
            TimelineEvent(at=T0, source="deploy", kind="deploy", text=f"Deploy | {NASTY}", actor="<bob>",
                          url="https://ci.example/812?a=1&b=2|x"),
            TimelineEvent(at=T0 + timedelta(seconds=30), source="slack", kind="note", text="**not bold**",
                          key_moment=False),
            TimelineEvent(at=T0 + timedelta(minutes=1, microseconds=5), source="pd", kind="TODO", text="*star",
                          key_moment=True),
            TimelineEvent(at=T0 + timedelta(minutes=2), source="x", kind="note", text="ends like x ([link](y))"),
            TimelineEvent(at=T0 + timedelta(minutes=3), source="x", kind="note", text="two\nlines <br> here",
                          key_moment=True, url="/relative"),
        ],
        action_items=[
            ActionItemSpec(title=f"Fix | {NASTY}", owner="bob", priority="P1", kind="mitigate",
                           due_in=timedelta(days=1, hours=12, seconds=5), done_when="a\nb | c",
                           description="why:\n* because"),
            ActionItemSpec(title="TODO-list app", owner="carol", priority="P4", kind="process"),
            ActionItemSpec(title="**x**", owner="dave", due_in=timedelta(0)),
        ],
    )


def test_a_full_submission_round_trips() -> None:
    draft = full_draft()
    md = render_draft(with_draft(draft))
    assert "<script>" not in md and "<b>" not in md  # still escaped for a reader that shows it as HTML
    assert "| Title | Owner | Priority | Kind | Due | Done when | Description |" in md
    back = parse_draft(md, by="alice", now=NOW)
    for field in DraftSubmission.model_fields:
        assert getattr(back, field) == getattr(draft, field), field
    assert back == draft


_ALPHABET = st.sampled_from(list("ab Z09|*#`<>&\\-_()[]!:.TOD\té漢🙂\n") + ["TODO:", "<!--", "-->", "```", "<br>",
                                                                           "## Summary", "&lt;", "- Money: "])
texts = st.lists(_ALPHABET, max_size=12).map("".join)
lines = texts.map(normal_inline)
required_line = lines.filter(bool)
times = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC))
events = st.builds(TimelineEvent, at=times, source=required_line, kind=required_line, text=lines,
                   actor=st.none() | required_line, key_moment=st.booleans(),
                   url=st.none() | st.sampled_from(["https://x.example/a?b=1&c=2", "/p|q", "mailto:a@b.c"]))
items = st.builds(ActionItemSpec, title=required_line.filter(lambda t: not t.startswith("TODO")),
                  owner=required_line, description=lines, done_when=lines,
                  priority=st.sampled_from(["P1", "P2", "P3", "P4"]),
                  kind=st.sampled_from(["prevent", "detect", "mitigate", "process"]),
                  due_in=st.none() | st.integers(0, 10**7).map(lambda s: timedelta(seconds=s)))
drafts = st.builds(
    DraftSubmission, by=st.just("alice"), summary=texts.map(normal_text).filter(bool),
    **{name: texts.map(normal_text) for name in ("impact", "root_cause", "contributing_factors", "resolution",
                                                "recovery", "lessons", "went_well", "went_badly", "lucky")},
    **{name: lines for name in ("impact_users", "impact_duration", "impact_money", "impact_customers")},
    timeline=st.lists(events, max_size=3).map(lambda es: sorted(es, key=lambda e: e.at)),
    action_items=st.lists(items, max_size=3),
)


@settings(max_examples=int(os.environ.get("CLOSELOOP_HYPOTHESIS_EXAMPLES", "50")), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(drafts)
def test_any_submission_round_trips(draft: DraftSubmission) -> None:
    """Every draft in the normal form the parser gives (texts without spaces around them, lines without trailing
    spaces): rendered and read back, the same draft."""
    assert parse_draft(render_draft(with_draft(draft)), by="alice", now=NOW) == draft


# --------------------------------------------------------------------------- bad drafts

BASE = """\
# Postmortem draft: Checkout down

## Summary

Checkout failed.

## Timeline

| Time (UTC) | Kind | What happened | Who | Source |
|---|---|---|---|---|
| 2026-11-22 14:05 UTC | deploy | Deploy 812 | bob | deploy |

## Action items

| Title | Owner | Priority | Kind | Due | Done when |
|---|---|---|---|---|---|
| Add canary | bob | P1 | prevent | 14d | canary exists |
"""
ROW = "| Add canary | bob | P1 | prevent | 14d | canary exists |"
ITEMS = "## Action items"


def test_the_base_draft_reads() -> None:
    draft = parse_draft(BASE, by="alice", now=NOW)
    assert draft.summary == "Checkout failed."
    assert [i.title for i in draft.action_items] == ["Add canary"]
    assert [e.text for e in draft.timeline] == ["Deploy 812"]


BAD = [
    ("priority", ROW, ROW.replace("P1", "P9"), 'line 17: action items: priority "P9" is not one of P1-P4'),
    ("kind", ROW, ROW.replace("prevent", "fix"),
     'line 17: action items: kind "fix" is not one of prevent, detect, mitigate, process'),
    ("due", ROW, ROW.replace("14d", "soonish"),
     'line 17: action items: due "soonish" is neither a date like 2026-12-24 nor a duration like 14d'),
    ("due in the past", ROW, ROW.replace("14d", "2026-11-30"), "line 17: action items: due 2026-11-30 is not in "
                                                                "the future"),
    ("no owner", ROW, ROW.replace("| bob |", "|  |"), 'line 17: action items: "Add canary" has no owner'),
    ("title TODO", ROW, ROW.replace("Add canary", "TODO: a title"), "line 17: action items: the title still "
                                                                      "says TODO"),
    ("unescaped pipe", ROW, ROW.replace("canary exists", "canary | exists"),
     "line 17: action items: this row has 7 cells, expected 6: Title | Owner | Priority | Kind | Due | Done when "
     "(write a | inside a cell as \\|)"),
    ("5 columns", "| Title | Owner | Priority | Kind | Due | Done when |\n|---|---|---|---|---|---|",
     "| Title | Owner | Priority | Kind | Due |\n|---|---|---|---|---|",
     "line 15: the action items table has 5 columns, expected 6: Title | Owner | Priority | Kind | Due | Done when"),
    ("columns renamed", "| Title | Owner | Priority | Kind | Due | Done when |",
     "| Title | Priority | Owner | Kind | Due | Done when |",
     'line 15: the action items table\'s columns are "Title | Priority | Owner | Kind | Due | Done when", '
     "expected: Title | Owner | Priority | Kind | Due | Done when"),
    ("text instead of a table", ROW, ROW + "\nand one more thing",
     "line 18: action items: only the table is read here, and this line is not one of its rows"),
    ("summary TODO", "Checkout failed.", "TODO: what happened.",
     "line 3: the Summary section is empty (it still says TODO)"),
    ("summary empty", "Checkout failed.", "", "line 3: the Summary section is empty (write what happened"),
    ("no summary", "## Summary\n\nCheckout failed.\n", "", "the draft has no Summary section (## Summary)"),
    ("unknown section", ITEMS, "## Appendix\n\nmore\n\n" + ITEMS,
     'line 13: unknown section "Appendix"; the sections are: Summary, Impact, Timeline, Root cause, Contributing '
     "factors, Resolution, Recovery, Lessons learned, What went well, What went badly, Where we got lucky, Action "
     "items, Incident, Durations"),
    ("duplicated section", ITEMS, "## SUMMARY\n\nagain\n\n" + ITEMS,
     "line 13: the Summary section appears twice (also on line 3)"),
    ("bad time", "2026-11-22 14:05 UTC", "yesterday 14:05",
     'line 11: timeline: time "yesterday 14:05" is not a time like 2026-11-22 14:05 UTC'),
    ("no time", "| 2026-11-22 14:05 UTC |", "|  |", 'line 11: timeline: time "(empty)" is not a time'),
    ("timeline without a table", "| Time (UTC) | Kind | What happened | Who | Source |\n|---|---|---|---|---|\n",
     "- 14:05 deploy\n", "line 9: the timeline section holds text but no table; expected a table: Time (UTC) | "
                         "Kind | What happened | Who | Source"),
    ("unclosed comment", "Checkout failed.", "Checkout failed.\n<!-- a note", "line 6: an HTML comment (<!--) is "
                                                                             "never closed (-->)"),
]


@pytest.mark.parametrize(("old", "new", "error"), [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_drafts_name_the_line(old: str, new: str, error: str) -> None:
    assert BASE.count(old) == 1
    with pytest.raises(DraftError) as caught:
        parse_draft(BASE.replace(old, new), by="alice", now=NOW)
    message = str(caught.value)
    assert message.startswith(error), message
    assert "\n" not in message


# --------------------------------------------------------------------------- liberal in what it accepts


def test_crlf_lists_headings_and_tables_without_outer_pipes() -> None:
    text = """\
# Postmortem draft: Checkout down   \r
\r
<!-- a comment\r
   over lines -->\r
##   summary   ##  \r
\r
\r
Checkout failed.   \r
\r
\r
## IMPACT:\r
\r
* **Users affected:** all of them\r
\r
- money : none   \r
\r
People waited.\r
\r
## Timeline\r
\r
Time (UTC) | Kind | What happened | Who | Source\r
:--- | --- | --- | --- | ---\r
2026-11-22T14:05 | deploy | Deploy \\| 812 | bob |\r
\r
2026-11-22 14:07:30+01:00 |  | **Paged** ([link](https://pd.example/1)) | |\r
## Action Items\r
Title | Owner | Priority | Kind | Due | Done when\r
---|---|---|---|---|---\r
Add canary | bob | | | | \r
| Alert on 5xx | carol | P2 |\r
"""
    draft = parse_draft(text, by="alice", now=NOW)
    assert draft.summary == "Checkout failed."
    assert (draft.impact_users, draft.impact_money, draft.impact) == ("all of them", "none", "People waited.")
    assert draft.timeline == [
        TimelineEvent(at=datetime(2026, 11, 22, 13, 7, 30, tzinfo=UTC), source="author", kind="event", text="Paged",
                      key_moment=True, url="https://pd.example/1"),
        TimelineEvent(at=T0, source="author", kind="deploy", text="Deploy | 812", actor="bob"),
    ]
    assert draft.action_items == [ActionItemSpec(title="Add canary", owner="bob"),
                                  ActionItemSpec(title="Alert on 5xx", owner="carol", priority="P2")]


def test_the_untouched_placeholders_are_empty() -> None:
    md = render_draft(make_state(timeline=[]))
    assert "TODO: No timeline events were collected" in md
    draft = parse_draft(md.replace("TODO: what happened, in two or three sentences.", "It broke."), by="alice",
                        now=NOW)
    assert draft == DraftSubmission(by="alice", summary="It broke.")


# --------------------------------------------------------------------------- the CLI


def test_cli_bad_markdown_draft_is_one_line(tmp_path: Path, config_path: Path) -> None:  # noqa: F811
    bad = tmp_path / "bad.md"
    bad.write_text(BASE.replace(ROW, ROW.replace("P1", "P9")))
    line = one_line_error(invoke(["draft", "submit", "api/INC-1", "--as", "alice", "--file", str(bad)], config_path),
                          2, "line 17", 'priority "P9" is not one of P1-P4')
    assert str(bad) in line


def test_cli_reads_markdown_by_content_and_needs_as(tmp_path: Path, config_path: Path) -> None:  # noqa: F811
    bad = tmp_path / "draft.txt"  # not .md: Markdown because it does not start with "{"
    bad.write_text(BASE.replace("Checkout failed.", "TODO: write it"))
    one_line_error(invoke(["draft", "submit", "api/INC-1", "--as", "alice", "--file", str(bad)], config_path), 2,
                   "line 3: the Summary section is empty")
    one_line_error(invoke(["draft", "submit", "api/INC-1", "--file", str(bad)], config_path), 2, "missing --as")
