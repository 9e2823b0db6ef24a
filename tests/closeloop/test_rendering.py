"""Rendering: the draft, the published document, notifications, and the template sandbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from closeloop.models import (
    ActionItem,
    ActionItemSpec,
    DraftSubmission,
    Incident,
    Meeting,
    Plan,
    PostmortemState,
    ReviewDecision,
    ReviewRecord,
    Stage,
    TimelineEvent,
)
from closeloop.policy import Policy
from closeloop.rendering import (
    NOTIFICATION_KINDS,
    TemplateProblem,
    format_dt,
    format_td,
    incident_durations,
    make_environment,
    render_document,
    render_draft,
    render_notification,
)

T0 = datetime(2026, 11, 22, 14, 5, tzinfo=UTC)


def make_state(*, title: str = "Checkout API returns 500s", **changes) -> PostmortemState:
    incident = Incident(
        source="api",
        external_id="INC-42",
        title=title,
        severity="SEV2",
        services=["checkout"],
        started_at=T0,
        detected_at=T0 + timedelta(minutes=7),
        mitigated_at=T0 + timedelta(hours=1, minutes=25),
        resolved_at=T0 + timedelta(hours=2, minutes=3, seconds=30),
        commander="alice",
        participants=["bob"],
    )
    plan = Plan(
        postmortem_id=incident.workflow_id,
        incident=incident,
        policy=Policy(),
        owner="alice",
        reviewers=["bob", "carol"],
        attendees=["alice", "bob", "carol"],
        people=["alice", "bob", "carol"],
    )
    # Deliberately out of order: rendering must sort by time.
    timeline = [
        TimelineEvent(at=T0 + timedelta(minutes=30), source="slack", kind="mitigation", text="Rolled back deploy 812",
                      actor="bob", key_moment=True),
        TimelineEvent(at=T0 + timedelta(minutes=12), source="pagerduty", kind="acknowledge", text="Acknowledged",
                      actor="alice"),
        TimelineEvent(at=T0, source="deploy", kind="deploy", text="Deploy 812 | checkout v2.3"),
        TimelineEvent(at=T0 + timedelta(minutes=20), source="pagerduty", kind="acknowledge", text="Re-acknowledged"),
    ]
    state = PostmortemState(plan=plan, owner="alice", stage=Stage.drafting, timeline=timeline)
    return state.model_copy(update=changes)


def approved_state(**kw) -> PostmortemState:
    state = make_state(**kw)
    return state.model_copy(
        update={
            "stage": Stage.published,
            "meeting": Meeting(title="Postmortem review: checkout", start=T0 + timedelta(days=2),
                               end=T0 + timedelta(days=2, hours=1), attendees=["alice", "bob", "carol"]),
            "draft": DraftSubmission(
                by="alice", summary="Deploy 812 broke checkout.", impact="12% of checkouts failed.",
                root_cause="A missing migration.", resolution="Rollback.", lessons="Canary deploys.",
                action_items=[ActionItemSpec(title="Add canary stage", owner="bob", priority="P2")],
            ),
            "review_round": 2,
            "reviews": [
                ReviewRecord(round=1, reviewer="bob", decision=ReviewDecision.request_changes, comment="More detail",
                             at=T0 + timedelta(days=3)),
                ReviewRecord(round=2, reviewer="bob", decision=ReviewDecision.approve, comment="LGTM",
                             at=T0 + timedelta(days=4)),
                ReviewRecord(round=2, reviewer="carol", decision=ReviewDecision.approve, comment="",
                             at=T0 + timedelta(days=4, hours=1)),
            ],
            "items": [
                ActionItem(id="ai-1", postmortem_id=state.plan.postmortem_id, title="Add canary stage", owner="bob",
                           priority="P2", due_at=T0 + timedelta(days=30), ticket_key="LOCAL-7",
                           ticket_url="https://tickets.example/LOCAL-7", done_when="every deploy goes through it"),
            ],
        }
    )


# --------------------------------------------------------------------------- filters and durations


def test_filters() -> None:
    assert format_dt(T0) == "2026-11-22 14:05 UTC"
    assert format_dt(datetime(2026, 11, 22, 15, 5, tzinfo=timezone(timedelta(hours=1)))) == "2026-11-22 14:05 UTC"
    assert format_dt(None) == ""
    assert format_td(timedelta(hours=1, minutes=25)) == "1h 25m"
    assert format_td(None) == ""


def test_incident_durations() -> None:
    state = make_state()
    d = incident_durations(state.plan.incident, state.timeline)
    assert d == {
        "time_to_detect": timedelta(minutes=7),
        "time_to_acknowledge": timedelta(minutes=5),  # first acknowledge (14:17) - detected (14:12)
        "time_to_mitigate": timedelta(hours=1, minutes=25),
        "time_to_resolve": timedelta(hours=2, minutes=3, seconds=30),
    }
    bare = Incident(source="api", external_id="X", title="x")
    assert incident_durations(bare, []) == dict.fromkeys(d)
    # No detection time: acknowledge counts from the start.
    started = bare.model_copy(update={"started_at": T0})
    ack = [TimelineEvent(at=T0 + timedelta(minutes=3), source="pd", kind="acknowledge", text="ack")]
    assert incident_durations(started, ack)["time_to_acknowledge"] == timedelta(minutes=3)


# --------------------------------------------------------------------------- draft


def test_draft_has_sorted_timeline_and_durations() -> None:
    md = render_draft(make_state())
    assert md.startswith("# Postmortem draft: Checkout API returns 500s\n")
    assert "- Time to detect: 7m\n" in md
    assert "- Time to acknowledge: 5m\n" in md
    assert "- Time to mitigate: 1h 25m\n" in md
    assert "- Time to resolve: 2h 3m 30s\n" in md
    assert "| Started | 2026-11-22 14:05 UTC |" in md
    rows = [line for line in md.splitlines() if line.startswith("| 2026-")]
    assert rows == [
        "| 2026-11-22 14:05 UTC | deploy | Deploy 812 \\| checkout v2.3 |  | deploy |",
        "| 2026-11-22 14:17 UTC | acknowledge | Acknowledged | alice | pagerduty |",
        "| 2026-11-22 14:25 UTC | acknowledge | Re-acknowledged |  | pagerduty |",
        "| 2026-11-22 14:35 UTC | mitigation | **Rolled back deploy 812** | bob | slack |",
    ]
    for section in ("## Summary", "## Impact", "## Root cause", "## Resolution", "## Lessons learned",
                    "## Action items"):
        assert section in md
    assert md.count("TODO") >= 5


def test_draft_with_unknown_times() -> None:
    state = make_state()
    incident = Incident(source="api", external_id="INC-43", title="Mystery")
    state = state.model_copy(update={"plan": state.plan.model_copy(update={"incident": incident}), "timeline": []})
    md = render_draft(state)
    assert "- Time to detect: unknown\n" in md
    assert "| Started | unknown |" in md
    assert "No timeline events were collected" in md


def test_draft_prefills_a_previous_submission() -> None:
    md = render_draft(approved_state())
    assert "Deploy 812 broke checkout." in md
    # The draft's own action items (its due_in, empty: the policy's), as the owner proposed them, to edit again.
    assert "| Add canary stage | bob | P2 | prevent |  |  |" in md


# --------------------------------------------------------------------------- document


def test_document_contents() -> None:
    doc = render_document(approved_state())
    assert doc.postmortem_id == "postmortem/api/INC-42"
    assert doc.title == "Postmortem: Checkout API returns 500s"
    md = doc.markdown
    assert md.startswith("# Postmortem: Checkout API returns 500s\n")
    for text in ("## Summary\n\nDeploy 812 broke checkout.", "## Impact\n\n12% of checkouts failed.",
                 "## Root cause\n\nA missing migration.", "## Resolution\n\nRollback.",
                 "## Lessons learned\n\nCanary deploys.",
                 "| Review meeting | Postmortem review: checkout, 2026-11-24 14:05 UTC – 2026-11-24 15:05 UTC",
                 "- Time to mitigate: 1h 25m\n",
                 "| Add canary stage | bob | P2 | prevent | 2026-12-22 14:05 UTC | every deploy goes through it | "
                 "[LOCAL-7](https://tickets.example/LOCAL-7) | open |",
                 "Reviewers: bob, carol",
                 "- bob: approved (2026-11-26 14:05 UTC, round 2): LGTM\n",
                 "- carol: approved (2026-11-26 15:05 UTC, round 2)\n\nApproved by: bob, carol",
                 "Approved by: bob, carol"):
        assert text in md, text
    html = doc.html
    assert html.startswith("<!DOCTYPE html>")
    assert "<style>" in html and "</html>" in html
    assert ("<td>Add canary stage</td><td>bob</td><td>P2</td><td>prevent</td><td>2026-12-22 14:05 UTC</td>"
            "<td>every deploy goes through it</td>") in html
    assert '<a href="https://tickets.example/LOCAL-7">LOCAL-7</a>' in html
    assert "Approved by: bob, carol" in html


def test_document_lists_proposed_items_before_tickets_exist() -> None:
    state = approved_state().model_copy(update={"items": []})
    md = render_document(state).markdown
    assert "| Add canary stage | bob | P2 | prevent | within 30d |  |  | proposed |" in md


def test_html_escapes_and_markdown_keeps_raw_html_inert() -> None:
    evil = "<script>alert(1)</script>"
    state = approved_state(title=evil)
    state.timeline.append(TimelineEvent(at=T0, source="x", text="<b>bold</b>", url="javascript:alert(2)"))
    doc = render_document(state)
    assert "<script>" not in doc.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in doc.html
    assert "&lt;b&gt;bold&lt;/b&gt;" in doc.html
    assert "javascript:" not in doc.html
    assert doc.title == f"Postmortem: {evil}"  # a plain-text title; each publisher escapes it for its own format


def test_markdown_escapes_raw_html_in_titles_and_draft_fields() -> None:
    evil = '<script>alert(1)</script>'
    state = approved_state(title=f"Checkout & {evil}")
    assert state.draft is not None
    state = state.model_copy(update={"draft": state.draft.model_copy(update={
        "summary": f"Deploy 812 broke checkout {evil}", "root_cause": '<img src=x onerror="alert(2)">',
        "lessons": "Use `canary` deploys & *small* batches."})})
    state.timeline.append(TimelineEvent(at=T0, source="x", text="<b>bold</b>", actor="<i>eve</i>"))
    draft = render_draft(state)
    assert draft.startswith("# Postmortem draft: Checkout &amp; &lt;script&gt;")
    assert "<!--\n  Pre-filled by closeloop" in draft  # the template's own text is not escaped
    for markdown in (render_document(state).markdown, draft):
        assert "<script" not in markdown and "<img" not in markdown and "<b>" not in markdown and "<i>" not in markdown
        assert "# Postmortem" in markdown and "Checkout &amp; &lt;script&gt;alert(1)&lt;/script&gt;\n" in markdown
        assert "Deploy 812 broke checkout &lt;script&gt;alert(1)&lt;/script&gt;" in markdown
        assert "&lt;b&gt;bold&lt;/b&gt;" in markdown and "&lt;i&gt;eve&lt;/i&gt;" in markdown
    md = render_document(state).markdown
    assert '&lt;img src=x onerror="alert(2)"&gt;' in md  # quotes stay readable
    assert "Use `canary` deploys &amp; *small* batches." in md  # Markdown itself is kept
    # Plain-text notifications are no HTML: nothing is escaped there.
    subject, _ = render_notification("reminder", {"incident_title": "A & <B>"})
    assert '"A & <B>"' in subject


# --------------------------------------------------------------------------- user templates and the sandbox


def test_environments() -> None:
    env_md, env_html = make_environment(None)
    assert env_html.autoescape is True and env_md.autoescape is False
    assert env_md.trim_blocks and env_md.lstrip_blocks
    assert env_md.from_string("{{ x | dt }}").render(x=T0) == "2026-11-22 14:05 UTC"
    assert env_md.from_string("{{ x | duration }}").render(x=timedelta(minutes=85)) == "1h 25m"


def test_user_template_overrides_packaged(tmp_path: Path) -> None:
    (tmp_path / "draft.md.j2").write_text("Custom draft for {{ incident.title }} ({{ timeline | length }} events)\n")
    (tmp_path / "notify").mkdir()
    (tmp_path / "notify" / "reminder.txt.j2").write_text("Hey {{ ctx.get('recipient', 'you') }}\nWrite it.\n")
    assert render_draft(make_state(), template_dir=tmp_path) == \
        "Custom draft for Checkout API returns 500s (4 events)\n"
    assert render_notification("reminder", {"recipient": "Alice"}, template_dir=tmp_path) == \
        ("Hey Alice", "Write it.\n")
    # Templates not overridden still come from the package.
    assert render_notification("cancelled", {}, template_dir=tmp_path)[0].startswith("Cancelled:")
    assert render_document(approved_state(), template_dir=tmp_path).markdown.startswith("# Postmortem:")


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ incident.__class__.__init__.__globals__['os'] }}",
        "{% for c in ().__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
        "{{ state.timeline.append(1) }}",
        "{{ range(10**9) | list | length }}",
    ],
)
def test_malicious_user_template_is_refused(tmp_path: Path, source: str) -> None:
    (tmp_path / "draft.md.j2").write_text(source)
    with pytest.raises(TemplateProblem) as err:
        render_draft(make_state(), template_dir=tmp_path)
    message = str(err.value)
    assert "draft.md.j2" in message and "\n" not in message


def test_user_template_syntax_error(tmp_path: Path) -> None:
    (tmp_path / "postmortem.html.j2").write_text("<h1>{{ incident.title }}</h1>\n{% if %}\n")
    with pytest.raises(TemplateProblem) as err:
        render_document(approved_state(), template_dir=tmp_path)
    message = str(err.value)
    assert message.startswith("template postmortem.html.j2: syntax error on line 2")
    assert "\n" not in message


def test_user_template_undefined_name(tmp_path: Path) -> None:
    (tmp_path / "draft.md.j2").write_text("line one\n{{ no_such_thing }}\n")
    with pytest.raises(TemplateProblem, match=r"^template draft\.md\.j2: undefined: 'no_such_thing' is undefined"):
        render_draft(make_state(), template_dir=tmp_path)


def test_problem_in_included_template(tmp_path: Path) -> None:
    (tmp_path / "draft.md.j2").write_text("{% include 'part.j2' %}")
    (tmp_path / "part.j2").write_text("{% for %}")
    with pytest.raises(TemplateProblem, match=r"^template draft\.md\.j2: syntax error in part\.j2 on line 1"):
        render_draft(make_state(), template_dir=tmp_path)


# --------------------------------------------------------------------------- notifications


@pytest.mark.parametrize("kind", NOTIFICATION_KINDS)
def test_every_notification_renders_with_a_minimal_context(kind: str) -> None:
    subject, body = render_notification(kind, {"postmortem_id": "postmortem/api/INC-42"})
    assert subject.strip() and "\n" not in subject
    assert "postmortem/api/INC-42" in body
    assert "{{" not in subject + body and "{%" not in subject + body
    # Keys present but empty (as the notify activity passes item_id=None) never print "None".
    subject, body = render_notification(
        kind, {"postmortem_id": "postmortem/api/INC-42", "item_id": None, "role": "owner", "at": T0, "due": None}
    )
    assert "None" not in subject + body and '""' not in subject + body
    assert body.startswith("Hello ")
    # And with nothing at all.
    subject, _ = render_notification(kind, {})
    assert subject.strip()


@pytest.mark.parametrize("kind", NOTIFICATION_KINDS)
def test_every_notification_renders_with_a_full_context(kind: str) -> None:
    context = {
        "postmortem_id": "postmortem/api/INC-42", "incident_title": "Checkout down", "severity": "SEV2",
        "recipient": "Alice", "owner": "Alice", "reviewer": "Bob", "comment": "More detail please",
        "due": T0, "overdue": timedelta(hours=26), "reminder_number": 2, "round": 2, "stage": "draft",
        "role": "manager", "level": 2, "meeting_title": "Postmortem review", "meeting_start": T0,
        "meeting_end": T0 + timedelta(hours=1), "attendees": ["alice", "bob"], "item_id": "ai-1",
        "item_title": "Add canary", "priority": "P2", "ticket_key": "LOCAL-7", "ticket_url": "https://t/7",
        "completed_at": T0, "window": timedelta(days=28), "recurrences": ["api:INC-99 Checkout down again"],
        "by": "carol", "reason": "duplicate", "summary": "It broke.", "document_ref": "/srv/pm.html",
        "items": [{"title": "Add canary", "owner": "bob", "due": T0}], "due_in": timedelta(days=7),
    }
    subject, body = render_notification(kind, context)
    assert subject and "\n" not in subject
    text = subject + body
    assert "Checkout down" in text or "Add canary" in text
    assert "Alice" in body
    assert "None" not in text and "{{" not in text


def test_notification_subject_is_the_first_line() -> None:
    subject, body = render_notification(
        "reminder", {"incident_title": "Checkout down", "recipient": "Alice", "due": T0, "overdue": timedelta(hours=3)}
    )
    assert subject == 'Reminder: the postmortem for "Checkout down" is waiting for your draft'
    assert body.startswith("Hello Alice,\n")
    assert "is due 2026-11-22 14:05 UTC" in body
    assert "overdue by 3h" in body


def test_escalation_names_the_role() -> None:
    _, body = render_notification("escalation", {"role": "manager", "owner": "Alice"})
    assert "owner's manager" in body
    _, body = render_notification("escalation", {"role": "owner"})
    assert "owner's owner" not in body


def test_unknown_notification_kind() -> None:
    with pytest.raises(TemplateProblem, match="notify/nope.txt.j2"):
        render_notification("nope", {})
    with pytest.raises(TemplateProblem):
        render_notification("../draft", {})


def test_user_notification_with_empty_subject(tmp_path: Path) -> None:
    (tmp_path / "notify").mkdir()
    (tmp_path / "notify" / "invite.txt.j2").write_text("{{ ctx.get('nothing', '') }}\n")
    with pytest.raises(TemplateProblem, match="subject"):
        render_notification("invite", {}, template_dir=tmp_path)


def test_the_invite_says_who_cannot_make_the_best_effort_slot() -> None:
    base = {"meeting_start": datetime(2026, 3, 2, 15, tzinfo=UTC), "attendees": ["ana", "bo", "erin"],
            "recipient": "Bo"}
    _, body = render_notification("invite", {**base, "unavailable": ["bo", "erin"],
                                             "unavailable_names": ["Bo", "Erin"], "recipient_unavailable": True})
    assert "Bo and Erin are busy then" in body and "the review goes ahead without them" in body
    assert "That includes you" in body
    _, body = render_notification("invite", {**base, "unavailable": ["erin"], "unavailable_names": ["Erin"]})
    assert "Erin is busy then" in body and "That includes you" not in body
    _, body = render_notification("invite", base)
    assert "busy then" not in body
