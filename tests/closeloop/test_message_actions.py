"""What a notification offers to do, by kind (closeloop.message_actions), and the button values the
interactivity endpoint reads back."""

from __future__ import annotations

from closeloop.message_actions import CHANGING, actions_for, parse_value, value_of

PM = "postmortem/pagerduty/PABC123"
URL = "https://closeloop.example.com"


def test_each_kind_offers_what_its_reader_can_do() -> None:
    draft = actions_for("reminder", PM, None, URL)
    assert [(a.action, a.url, a.value) for a in draft] == [("open_draft", f"{URL}/postmortems/{PM}/draft", ""),
                                                          ("snooze", None, PM)]
    review = actions_for("review_request", PM, None, URL)
    assert [a.action for a in review] == ["open_postmortem", "approve", "request_changes"]
    assert {a.value for a in review if a.action in CHANGING} == {PM}
    item = actions_for("item_reminder", PM, "item-2", URL)
    assert [(a.action, a.url, a.value) for a in item] == [
        ("open_item", f"{URL}/postmortems/{PM}/items/item-2", ""), ("item_done", None, f"{PM}#item-2"),
        ("snooze", None, f"{PM}#item-2")]
    verdict = actions_for("verdict_request", PM, "item-2", None)
    assert [a.action for a in verdict] == ["effective", "ineffective"]
    assert all(a.action in CHANGING for a in verdict)


def test_links_need_the_public_url_and_other_kinds_offer_nothing() -> None:
    assert [a.action for a in actions_for("reminder", PM, None, None)] == ["snooze"]
    assert actions_for("escalation", PM, None, None) == []
    assert [a.action for a in actions_for("review_request", PM, None, None)] == ["approve", "request_changes"]
    assert actions_for("published", PM, None, URL) == []
    assert actions_for("item_reminder", PM, None, URL) == []  # an item kind without an item: nothing to act on


def test_a_value_reads_back_to_its_postmortem_and_item() -> None:
    assert parse_value(value_of(PM)) == (PM, None)
    assert parse_value(value_of(PM, "item-2")) == (PM, "item-2")
