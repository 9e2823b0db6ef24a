"""closeloop.quality: SMART findings on action items and blameless-language hints, with their policy
(`[policy.quality]`): real-world phrasings from postmortems, the false-positive traps, blocking versus warning,
team owners, the policy's due dates, and Policy JSON recorded before `quality` existed."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from closeloop.config import ConfigError, load_config
from closeloop.models import ActionItemSpec, DraftSubmission, Finding, Plan, TimelineEvent
from closeloop.planning import policy_for
from closeloop.policy import DEFAULT_ITEM_DUE, DEFAULT_VAGUE_PHRASES, Policy, QualityPolicy
from closeloop.quality import blameless_hints, check_items

PEOPLE = {"alice": "Alice Owner", "bob": "Bob Builder", "erin": "Erin", "will": "Will Turner", "a.nguyen": "An Nguyen"}
TEAMS = {"payments", "sre"}
HISTORIES = Path(__file__).resolve().parent.parent / "histories"


def item(title: str = "Reject configs with pool_size=0 in the deploy validator", **fields: Any) -> ActionItemSpec:
    values: dict[str, Any] = {"owner": "alice", "done_when": "a deploy with pool_size=0 is rejected in staging"}
    return ActionItemSpec(title=title, **{**values, **fields})


def draft(*items: ActionItemSpec, **sections: Any) -> DraftSubmission:
    return DraftSubmission(by="alice", summary=sections.pop("summary", "Checkout returned 500s for 42 minutes."),
                           action_items=list(items), **sections)


def checks(findings: list[Finding]) -> list[str]:
    return [f.check for f in findings]


# --------------------------------------------------------------------------- specific


@pytest.mark.parametrize(("title", "vague"), [
    # wishes, not changes
    ("Improve communication between teams", True),
    ("Be more careful when deploying", True),
    ("Add more tests", True),
    ("Monitor better", True),
    ("Investigate further", True),
    ("Improve monitoring", True),
    ("Improve the monitoring of checkout", True),
    ("Better alerting", True),
    ("Add more monitoring", True),
    ("Pay more attention to alerts", True),
    ("Increase awareness of the deploy freeze", True),
    ("Improve documentation", True),
    ("Update the docs", True),
    ("Look into the DNS TTL issue", True),
    ("Consider adding a circuit breaker to the payments client", True),  # the verb is the hedge's object
    ("Try to deploy less on Fridays", True),
    ("Double-check config changes before merging", True),
    ("Increase test coverage", True),
    ("Improve the reliability of the payments service", True),
    ("Ensure that monitoring is better", True),
    ("Be more careful and add more tests", True),
    ("Fix the bug", True),
    ("Monitoring", True),  # too short to act on
    ("TBD", True),
    # concrete changes, even with "monitor", "improve", "tests" in them
    ("Add an integration test that deploys a config with pool_size=0 and expects rejection", False),
    ("Page on-call when checkout p99 > 2s for 10 min", False),
    ("Document the failover runbook in the wiki with the exact kubectl commands", False),
    ("Add a monitor for checkout 5xx rate > 2% over 5 min", False),
    ("Improve monitoring: alert when checkout 5xx > 2% for 5 min", False),
    ("Improve monitoring by adding an alert on checkout error rate to the payments channel", False),
    ("Improve performance of the search query to under 100 ms", False),
    ("Investigate further and add a circuit breaker to the payments client", False),
    ("Rotate the leaked API key and revoke the old one", False),
    ("Enable autoscaling for the checkout deployment with max 20 replicas", False),
    ("Set connection pool max size to 50 in payments-api", False),
    ("Make the deploy pipeline reject configs that fail schema validation", False),
    ("Run a quarterly failover game day for the orders database", False),
    ("Migrate the cron jobs from the VM to Kubernetes CronJobs", False),
    ("Require two approvals for changes to the prod terraform", False),
    ("Add rate limiting to the public search API", False),
    ("Remove the manual DNS step from the release checklist", False),
    ("Add unit tests for the retry backoff in PaymentClient", False),
    ("Train on-call engineers on the new failover runbook", False),
    ("Enable autoscaling", False),
])
def test_specific_flags_wishes_and_passes_concrete_changes(title: str, vague: bool) -> None:
    findings = check_items(draft(item(title)), Policy(), PEOPLE)
    assert checks(findings) == (["specific"] if vague else []), findings
    if vague:
        assert findings[0].where == "action item 1" and title in findings[0].message
        assert findings[0].suggestion.startswith("name the change") and not findings[0].blocks  # warns by default


def test_the_specific_suggestion_fits_the_kind_of_item() -> None:
    detect, process = check_items(draft(item("Monitor better", kind="detect"), item("Improve communication",
                                                                                        kind="process")),
                                  Policy(), PEOPLE)
    assert '"Alert when checkout 5xx > 2% for 5 min"' in detect.suggestion and detect.where == "action item 1"
    assert "runbook" in process.suggestion and process.where == "action item 2"


def test_vague_phrases_come_from_the_policy_and_replace_the_defaults() -> None:
    policy = Policy(quality=QualityPolicy(vague_phrases=["synergize", "harden ... somehow"]))
    titles = ["Synergize the on-call rotations", "Harden the payments API somehow", "Be more careful when deploying"]
    assert checks(check_items(draft(*(item(t) for t in titles)), policy, PEOPLE)) == ["specific", "specific"]
    assert Policy().quality.vague_phrases == list(DEFAULT_VAGUE_PHRASES)
    no_phrases = Policy(quality=QualityPolicy(vague_phrases=[]))
    assert checks(check_items(draft(item("Be more careful when deploying")), no_phrases, PEOPLE)) == []


# --------------------------------------------------------------------------- measurable, assignable


@pytest.mark.parametrize(("done_when", "flagged"), [
    ("", True), ("   ", True), ("done", True), ("TBD", True), ("n/a", True), ("When it's done.", True),
    ("a deploy with pool_size=0 is rejected in staging", False),
    ("the alert fires in the next game day", False),
])
def test_measurable_wants_a_done_when_anyone_can_check(done_when: str, flagged: bool) -> None:
    findings = check_items(draft(item(done_when=done_when)), Policy(), PEOPLE)
    assert checks(findings) == (["measurable"] if flagged else [])
    if flagged:
        assert findings[0].blocks and "e.g." in findings[0].suggestion


def test_assignable_wants_a_person_of_the_directory_and_a_team_only_when_the_policy_allows() -> None:
    submission = draft(item(owner="alice"), item(owner="payments"), item(owner="Bob"), item(owner="zed"))
    findings = check_items(submission, Policy(), PEOPLE, TEAMS)
    assert [(f.check, f.where, f.blocks) for f in findings] == [
        ("assignable", "action item 2", True), ("assignable", "action item 3", True),
        ("assignable", "action item 4", True)]
    assert "'payments' is a team" in findings[0].message
    assert "did you mean 'bob'?" in findings[1].message
    assert "'zed' is not a person in the directory" in findings[2].message

    teams_allowed = Policy(quality=QualityPolicy(team_owners=True))
    assert [f.where for f in check_items(submission, teams_allowed, PEOPLE, TEAMS)] == [
        "action item 3", "action item 4"]
    # without the team aliases, a team is just an unknown owner
    assert [f.where for f in check_items(submission, teams_allowed, PEOPLE)] == [
        "action item 2", "action item 3", "action item 4"]


# --------------------------------------------------------------------------- realistic, time_bound


def test_realistic_compares_due_in_with_the_policys_due_for_the_priority() -> None:
    submission = draft(item(priority="P1", due_in="30d"), item(priority="P1", due_in="7d"),
                       item(priority="P2", due_in="3d"), item(priority="P4", due_in="400d"),
                       item(priority="P3"), item(priority="P2", due_in="0s"))
    findings = check_items(submission, Policy(), PEOPLE)
    assert [(f.check, f.where, f.blocks) for f in findings] == [
        ("realistic", "action item 1", False), ("realistic", "action item 4", False),
        ("realistic", "action item 6", False)]
    assert findings[0].message == "P1 items are due within 7d by the policy; this one asks 30d"
    assert "or make it P2 (due within 30d)" in findings[0].suggestion
    assert findings[1].message == "P4 items are due within 180d by the policy; this one asks 400d"
    assert "make it" not in findings[1].suggestion  # no priority allows that long

    stricter = Policy.model_validate({"item_due": {"P1": "2d"}})
    assert [f.message for f in check_items(draft(item(priority="P1", due_in="7d")), stricter, PEOPLE)] == [
        "P1 items are due within 2d by the policy; this one asks 7d"]


def test_an_item_without_due_in_is_time_bound_by_the_policy_unless_it_has_no_due_for_the_priority() -> None:
    every_priority = draft(*(item(priority=p) for p in ("P1", "P2", "P3", "P4")))
    assert check_items(every_priority, Policy(), PEOPLE) == []
    # a policy without a due for P4 (item_due is always complete once validated: model_construct skips that)
    gap = Policy().model_copy(update={"item_due": {k: v for k, v in DEFAULT_ITEM_DUE.items() if k != "P4"}})
    findings = check_items(draft(item(priority="P4"), item(priority="P4", due_in="60d")), gap, PEOPLE)
    assert [(f.check, f.where, f.blocks) for f in findings] == [("time_bound", "action item 1", True)]


# --------------------------------------------------------------------------- the policy: blocking, config, JSON


def test_blocking_follows_the_policy() -> None:
    bad = item("Monitor better", owner="zed", done_when="", priority="P1", due_in="30d")
    default = check_items(draft(bad), Policy(), PEOPLE)
    assert [(f.check, f.blocks) for f in default] == [
        ("specific", False), ("measurable", True), ("assignable", True), ("realistic", False)]
    strict = Policy(quality=QualityPolicy(block=["specific", "realistic"]))
    assert [(f.check, f.blocks) for f in check_items(draft(bad), strict, PEOPLE)] == [
        ("specific", True), ("measurable", False), ("assignable", False), ("realistic", True)]
    assert not any(f.blocks for f in check_items(draft(bad), Policy(quality=QualityPolicy(block=[])), PEOPLE))


@pytest.mark.parametrize(("block", "error"), [
    (["blameless"], "blameless hints never block"),
    (["smart"], "the checks are specific, measurable, assignable, realistic, time_bound, not ['smart']"),
])
def test_the_policy_refuses_checks_it_does_not_know(block: list[str], error: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(error)):
        QualityPolicy(block=block)
    with pytest.raises(ValidationError, match="has no words"):
        QualityPolicy(vague_phrases=["improve monitoring", " ... "])


def write_config(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "closeloop.toml"
    path.write_text('default_owner = "alice"\n[people.alice]\nname = "Alice Owner"\nemail = "alice@x.org"\n'
                    + extra, encoding="utf-8")
    return path


def test_policy_quality_merges_from_policy_severity_and_service(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, """
[policy.quality]
block = ["assignable", "specific"]
vague_phrases = ["be more careful"]

[severity.SEV1.quality]
team_owners = true

[services.checkout.policy.quality]
block = []
"""), env={})
    sev3 = policy_for(config, "SEV3", None).quality
    assert sev3 == QualityPolicy(block=["assignable", "specific"], vague_phrases=["be more careful"])
    sev1 = policy_for(config, "SEV1", None).quality
    assert sev1.team_owners and sev1.block == ["assignable", "specific"]
    assert policy_for(config, "SEV1", "checkout").quality.block == []  # a list replaces, a table merges
    assert policy_for(config, "SEV3", "checkout").quality.vague_phrases == ["be more careful"]

    with pytest.raises(ConfigError, match="blameless hints never block"):
        load_config(write_config(tmp_path, '[severity.SEV1.quality]\nblock = ["blameless"]\n'), env={})
    with pytest.raises(ConfigError, match="quality"):
        load_config(write_config(tmp_path, "[policy.quality]\nteam_owner = true\n"), env={})


def recorded_policies() -> list[dict[str, Any]]:
    """The policies in the recorded histories' payloads (plans and action items' inputs), as recorded."""
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("item_due"), dict) and "escalation" in node:
                found.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    def payloads(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "data" and isinstance(value, str):
                    try:
                        walk(json.loads(base64.b64decode(value)))
                    except ValueError:
                        pass
                else:
                    payloads(value)
        elif isinstance(node, list):
            for value in node:
                payloads(value)

    for path in sorted(HISTORIES.glob("*.json"))[:5]:
        payloads(json.loads(path.read_text(encoding="utf-8")))
    return found


def test_policy_json_recorded_before_quality_existed_loads_with_the_defaults() -> None:
    recorded = recorded_policies()
    assert recorded and all("quality" not in p for p in recorded)
    for raw in recorded:
        policy = Policy.model_validate(raw)
        assert policy.quality == QualityPolicy()
        assert policy.quality.block == ["measurable", "assignable", "time_bound"] and not policy.quality.team_owners
    # and a policy with it goes through JSON (a workflow's state) unchanged
    custom = Policy(quality=QualityPolicy(vague_phrases=["synergize"], block=["specific"], team_owners=True))
    assert Policy.model_validate_json(custom.model_dump_json()) == custom
    plan_json = {"postmortem_id": "p", "incident": {"source": "api", "external_id": "INC-1", "title": "t"},
                 "policy": recorded[0], "owner": "alice", "reviewers": [], "attendees": [], "people": []}
    assert Plan.model_validate(plan_json).policy.quality == QualityPolicy()


def test_findings_travel_as_json() -> None:
    finding = check_items(draft(item(done_when="")), Policy(), PEOPLE)[0]
    assert Finding.model_validate_json(finding.model_dump_json()) == finding
    assert finding.check == "measurable" and finding.blocks


def test_a_big_draft_checks_every_item_in_order() -> None:
    titles = ["Monitor better", "Page on-call when checkout p99 > 2s for 10 min"] * 25
    findings = check_items(draft(*(item(t) for t in titles)), Policy(), PEOPLE)
    assert [f.where for f in findings] == [f"action item {n}" for n in range(1, 51, 2)]


# --------------------------------------------------------------------------- blameless


@pytest.mark.parametrize(("text", "hint"), [
    ("The outage was caused by human error.", '"human error" calls it human error'),
    ("It was Bob's fault.", "\"Bob's fault\" assigns fault"),
    ("It was the fault of the on-call engineer.", '"fault of the on-call" assigns fault'),
    ("Bob was at fault.", '"Bob was at fault" assigns fault'),
    ("Alice should have checked the dashboard before deploying.", '"Alice should have" judges'),
    ("The on-call engineer shouldn't have restarted the primary.", "\"engineer shouldn't have\" judges"),
    ("We should have caught this in code review.", '"We should have" judges'),
    ("The engineer was careless with the command.", '"careless" judges'),
    ("Negligent handling of the credentials.", '"Negligent" judges'),
    ("Bob failed to escalate the page.", '"Bob failed to" says a person failed'),
    ("Alice forgot to renew the certificate.", '"forgot to" says'),
    ("The on-call didn't bother to read the runbook.", "\"didn't bother\" says"),
    ("Erin is to blame for the outage.", '"to blame" speaks of blame'),
    ("The team was incompetent.", '"incompetent" judges'),
    ("The outage happened because alice pushed an untested config.", '"because alice" names a person as the cause'),
    ("Checkout broke because An Nguyen merged without review.", '"because An Nguyen" names'),
    ("Alice caused the outage.", '"Alice caused" names a person as the cause'),
    ("The outage was caused by bob.", '"caused by bob" names'),
    ("It was bob's mistake.", "\"bob's mistake\" names"),
    ("Alice's deploy caused the outage.", "\"Alice's deploy caused\" names"),
    ("The outage happened due to a.nguyen's change.", "\"due to a.nguyen's\" names"),
    # traps: not blame
    ("Alice Owner led the incident response.", None),
    ("The health check should have a timeout.", None),
    ("The config should not have been accepted by the deploy tool.", None),
    ("The health check failed to detect the stuck worker.", None),
    ("The fault injection test caught the regression.", None),
    ("The default timeout was 30s.", None),
    ("The fault-tolerant design kept reads up.", None),
    ("It was nobody's fault.", None),
    ("No one is to blame.", None),
    ("We ran git blame to find the commit.", None),
    ("Because alice noticed the spike, we rolled back quickly.", None),
    ("The deploy tool's error handling swallowed the failure.", None),
    ("Our error budget burned in an hour.", None),
    ("We paged Will at 02:10.", None),
    ("The pods will restart on their own.", None),
    ("The operator error rate was high.", None),
    ("The disk controller was at fault.", None),
    ("The rollout was blocked due to the freeze.", None),
    ("We run a blameless postmortem for every SEV1.", None),
])
def test_blameless_hints(text: str, hint: str | None) -> None:
    hints = blameless_hints(draft(root_cause=text), PEOPLE)
    if hint is None:
        assert hints == []
    else:
        assert len(hints) == 1, hints
        assert hint in hints[0].message
        assert hints[0].check == "blameless" and hints[0].where == "root cause" and not hints[0].blocks
        assert hints[0].suggestion


def test_blameless_hints_cover_every_section_and_the_timeline_and_never_block() -> None:
    submission = draft(
        summary="A config push caused 500s.", impact="Human error cost us 42 minutes.",
        contributing_factors="Bob forgot to run the linter.", resolution="Alice should have rolled back sooner.",
        lessons="Nobody is careless on purpose.", went_badly="It was the on-call's fault.",
        went_well="Because erin noticed the spike early, we rolled back. Thanks to bob we had a runbook.",
        lucky="Alice happened to be online because bob called her.",
        timeline=[TimelineEvent(at="2026-01-05T14:02:00Z", source="notes", text="bob deployed v42"),
                  TimelineEvent(at="2026-01-05T14:10:00Z", source="notes", text="Will's mistake: wrong cluster")])
    hints = blameless_hints(submission, PEOPLE)
    assert [h.where for h in hints] == ["impact", "contributing factors", "resolution", "lessons",
                                        "what went badly", "timeline entry 2"]
    assert not any(h.blocks for h in hints)
    assert all("e.g." in h.suggestion for h in hints)
    assert "What in the system allowed this?" in hints[-1].suggestion


def test_a_first_name_that_is_a_word_counts_only_written_as_a_name() -> None:
    text = "Deploys will fail if the pool is empty. Will's mistake was a typo"
    assert [h.message for h in blameless_hints(draft(root_cause=text), PEOPLE)] == [
        "\"Will's mistake\" names a person as the cause"]


def test_the_same_words_twice_in_a_section_are_one_hint() -> None:
    hints = blameless_hints(draft(root_cause="Human error. Then human error again.", lessons="human error"), PEOPLE)
    assert [h.where for h in hints] == ["root cause", "lessons"]
