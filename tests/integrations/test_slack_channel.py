"""The Slack channel through slack-sdk's WebClient, over HTTP, against the Slack stand-in (every JSON response
checked against Slack's Swagger 2.0 description; a test fails on any violation): a DM with Block Kit blocks,
a fallback text and the notification's key in the message metadata; the address from the `slack` handle or
users.lookupByEmail (cached); a crash between posting and recording found in the DM's history; and the notify
activity's routing on a real store with the email channel beside it (tests/standins/smtp.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from jsonschema import Draft4Validator
from slack_sdk import WebClient
from sqlalchemy import update
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from closeloop.activities.notify import NotifyActivities, NotifyInput
from closeloop.config import ConfigError, NotifySettings
from closeloop.directory import Directory
from closeloop.integrations.base import HttpIntegrationError, IntegrationError, Notification, NotificationAction
from closeloop.integrations.email.channel import EmailChannel
from closeloop.integrations.email.settings import EmailSettings
from closeloop.integrations.local.notifier import LogNotifier
from closeloop.integrations.registry import build
from closeloop.integrations.slack.channel import EVENT_TYPE, SlackChannel
from closeloop.integrations.slack.settings import SlackNotifierSettings
from closeloop.models import Person
from closeloop.secrets import Secrets
from closeloop.standins.slack import SlackStandin
from closeloop.standins.spec import SPEC_URI
from closeloop.store.store import Store
from closeloop.store.tables import ChannelDeliveryRow
from tests.standins.fixtures import SLACK_SPEC, spec_validator, validated
from tests.standins.smtp import PASSWORD, USER, SmtpServer
from tests.temporal_env import make_config

TOKEN = "xoxb-standin-secret-0123"
NOW = datetime.now(UTC).replace(microsecond=0)  # the stand-in stamps posted messages with the real clock
PM = "postmortem/pagerduty/PABC123"
BASE = "https://closeloop.example.com/postmortems/postmortem/pagerduty/PABC123"
ALICE = Person(key="alice", name="Alice Liddell", email="alice@example.com", handles={"slack": "U0ALICE"},
               channels=["slack", "email"])
BOB = Person(key="bob", name="Bob", email="Bob@Example.com")  # no handle: looked up by email
GONE = Person(key="gone", name="Gone Away", email="gone@example.com", handles={"slack": "U0GONE"},
              channels=["slack", "email"])
OPS = Person(key="ops", name="Platform on-call", email="ops@example.com", channels=["email"])


@pytest.fixture
def slack() -> Iterator[SlackStandin]:
    with validated(SlackStandin, SLACK_SPEC, token=TOKEN) as server:
        server.add_user("U0ALICE", "alice@example.com")
        server.add_user("U0BOB", "bob@example.com")
        server.add_user("U0GONE", "gone@example.com", deleted=True)
        server.add_channel("C0ANNOUNCE")
        yield server


def channel(slack: SlackStandin, token: str = TOKEN, **overrides: object) -> SlackChannel:
    values: dict[str, object] = dict(base_url=slack.base_url, timeout=5, announce_channel="C0ANNOUNCE")
    values.update(overrides)
    return SlackChannel(SlackNotifierSettings.model_validate(values), token)


def note(key: str = f"{PM}/reminder/1", **fields: object) -> Notification:
    values: dict[str, object] = dict(
        key=key, kind="reminder", recipient="alice", subject="Reminder: the draft for PABC123 is due",
        body="Hi Alice,\n\nThe draft is due on 2026-12-03.", at=NOW, postmortem_id=PM,
        links={"postmortem": BASE, "item": f"{BASE}/items/a1"},
        actions=[NotificationAction(action="open_draft", label="Open the draft", url=f"{BASE}/draft"),
                 NotificationAction(action="item_done", label="Mark done", value="a1")])
    values.update(fields)
    return Notification.model_validate(values)


def count(slack: SlackStandin, method: str) -> int:
    return slack.requests[f"GET /{method}"] + slack.requests[f"POST /{method}"]


def test_a_dm_with_blocks_a_fallback_text_and_the_key_in_its_metadata(slack: SlackStandin) -> None:
    message_id = channel(slack).deliver(note(), ALICE, "U0ALICE")
    dm = slack.dms["U0ALICE"]
    [message] = slack.messages(dm)
    assert message_id == f"{dm}:{message['ts']}" and dm.startswith("D")
    assert message["text"] == "Reminder: the draft for PABC123 is due\n\nHi Alice,\n\nThe draft is due on 2026-12-03."
    assert message["metadata"] == {"event_type": EVENT_TYPE, "event_payload": {
        "key": f"{PM}/reminder/1", "kind": "reminder", "postmortem_id": PM}}
    assert slack.channels[dm][0]["_unfurl_links"] is False
    header, body, context, actions = message["blocks"]
    assert header == {"type": "header", "text": {"type": "plain_text", "text": "Reminder: the draft for PABC123 is due",
                                                 "emoji": True}}
    assert body == {"type": "section", "text": {"type": "mrkdwn",
                                                "text": "Hi Alice,\n\nThe draft is due on 2026-12-03."}}
    assert context == {"type": "context", "elements": [
        {"type": "mrkdwn", "text": f"<{BASE}|The postmortem>"},
        {"type": "mrkdwn", "text": f"<{BASE}/items/a1|The action item>"}]}
    link, button = actions["elements"]
    assert link == {"type": "button", "text": {"type": "plain_text", "text": "Open the draft", "emoji": True},
                    "action_id": "open_draft", "url": f"{BASE}/draft"}
    assert button == {"type": "button", "text": {"type": "plain_text", "text": "Mark done", "emoji": True},
                      "action_id": "item_done", "value": "a1"}
    assert count(slack, "conversations.open") == 1 and count(slack, "chat.postMessage") == 1


def test_body_text_is_escaped_as_slack_requires(slack: SlackStandin) -> None:
    channel(slack).deliver(note(subject="R&D <b>review</b>", body="a <script>alert(1)</script> & <@U0BOB> > b",
                                links={}, actions=[]), ALICE, "U0ALICE")
    [message] = slack.messages(slack.dms["U0ALICE"])
    header, section = message["blocks"]  # no links, no actions: no context, no actions block
    assert section["text"]["text"] == "a &lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;@U0BOB&gt; &gt; b"
    assert header["text"] == {"type": "plain_text", "text": "R&D <b>review</b>", "emoji": True}  # plain: as is
    assert "<script>" not in message["text"] and "&lt;script&gt;" in message["text"]
    assert message["text"].startswith("R&amp;D &lt;b&gt;review&lt;/b&gt;")


def test_a_long_message_stays_within_slack_limits(slack: SlackStandin) -> None:
    body = "\n".join(f"line {i} & more " + "x" * 80 for i in range(2000))  # ~200 000 characters
    actions = [NotificationAction(action="snooze", label="Snooze for a very long while " * 5, value=str(i))
               for i in range(30)]
    channel(slack).deliver(note(subject="S" * 400, body=body, actions=actions), ALICE, "U0ALICE")  # accepted
    [message] = slack.messages(slack.dms["U0ALICE"])
    blocks = message["blocks"]
    assert len(blocks) == 50
    assert len(blocks[0]["text"]["text"]) == 150 and blocks[0]["text"]["text"].endswith("…")
    sections = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    assert all(len(s) <= 3000 for s in sections) and sections[-1].endswith("… _(cut: too long for Slack)_")
    assert sections[0].startswith("line 0 &amp; more ") and sections[1].startswith("line ")  # cut at a line break
    assert not any(re.search(r"&[a-z]{0,3}$", s.removesuffix("\n… _(cut: too long for Slack)_")) for s in sections)
    action_blocks = [b for b in blocks if b["type"] == "actions"]
    assert [len(b["elements"]) for b in action_blocks] == [25, 5]
    ids = [e["action_id"] for b in action_blocks for e in b["elements"]]
    assert len(set(ids)) == 30 and ids[:2] == ["snooze", "snooze#1"]
    assert all(len(e["text"]["text"]) <= 75 for b in action_blocks for e in b["elements"])
    assert len(message["text"]) <= 4000


def test_the_address_is_the_handle_else_the_email_looked_up_once(slack: SlackStandin) -> None:
    c = channel(slack)
    assert c.address(ALICE) == "U0ALICE" and count(slack, "users.lookupByEmail") == 0  # the handle wins
    assert c.address(BOB) == "U0BOB"  # case does not matter to Slack nor the cache
    c.deliver(note("k/1"), BOB, c.address(BOB) or "")
    c.deliver(note("k/2"), BOB, c.address(BOB) or "")
    assert count(slack, "users.lookupByEmail") == 1 and count(slack, "conversations.open") == 1
    assert len(slack.messages(slack.dms["U0BOB"])) == 2

    stranger = Person(key="carol", name="Carol", email="carol@elsewhere.example")
    assert c.address(stranger) is None and c.address(stranger) is None  # a miss is cached too
    assert c.address(GONE.model_copy(update={"handles": {}})) is None  # deactivated: users_not_found
    assert count(slack, "users.lookupByEmail") == 3
    not_an_id = Person(key="dan", name="Dan", email="dan@example.com", handles={"slack": "@dan"})
    assert channel(slack, lookup_by_email=False).address(not_an_id) is None
    assert count(slack, "users.lookupByEmail") == 3


def test_the_cache_expires(slack: SlackStandin) -> None:
    now = [0.0]
    c = SlackChannel(SlackNotifierSettings(base_url=slack.base_url, cache_ttl=timedelta(minutes=60),
                                           miss_ttl=timedelta(minutes=5)), TOKEN, clock=lambda: now[0])
    stranger = Person(key="carol", name="Carol", email="carol@example.com")
    assert c.address(BOB) == "U0BOB" and c.address(stranger) is None
    now[0] += 6 * 60  # the miss expired, the hit did not
    slack.add_user("U0CAROL", "carol@example.com")
    assert c.address(BOB) == "U0BOB" and c.address(stranger) == "U0CAROL"
    assert count(slack, "users.lookupByEmail") == 3
    now[0] += 61 * 60
    assert c.address(BOB) == "U0BOB" and count(slack, "users.lookupByEmail") == 4


def test_find_sent_finds_the_message_posted_before_a_crash(slack: SlackStandin) -> None:
    message_id = channel(slack).deliver(note(), ALICE, "U0ALICE")
    fresh = channel(slack)  # the worker after the crash: nothing cached
    assert fresh.find_sent(note(), ALICE, "U0ALICE") == message_id
    assert fresh.find_sent(note(f"{PM}/reminder/2"), ALICE, "U0ALICE") is None
    # (found at all: it asked for include_all_metadata, without which the stand-in, as Slack, hides metadata)
    # Another app's metadata with the key is not ours.
    dm = slack.dms["U0ALICE"]
    slack.post(dm, NOW, "hi", user="U0ALICE", metadata={"event_type": "other", "event_payload": {"key": "k/x"}})
    assert fresh.find_sent(note("k/x"), ALICE, "U0ALICE") is None


def test_find_sent_pages_through_a_busy_dm(slack: SlackStandin) -> None:
    c = channel(slack)
    first = c.deliver(note("k/first"), ALICE, "U0ALICE")
    for i in range(3):
        c.deliver(note(f"k/{i}", actions=[], links={}), ALICE, "U0ALICE")
    later = datetime.now(UTC) + timedelta(minutes=1)
    for i in range(450):  # newer: the first is on the third page, newest first
        slack.post(slack.dms["U0ALICE"], later, f"chatter {i}", user="U0ALICE")
    assert c.find_sent(note("k/first"), ALICE, "U0ALICE") == first  # the third page (200 a page)
    assert count(slack, "conversations.history") == 3
    assert channel(slack, find_pages=2).find_sent(note("k/first"), ALICE, "U0ALICE") is None
    # older than the notification's time minus the margin: not searched
    assert c.find_sent(note("k/first", at=NOW + timedelta(hours=1)), ALICE, "U0ALICE") is None


def test_errors_say_whether_a_retry_can_help(slack: SlackStandin) -> None:
    c = channel(slack)
    slack.rate_limit_next(retry_after=7, path="/chat.postMessage")
    with pytest.raises(HttpIntegrationError) as limited:
        c.deliver(note(), ALICE, "U0ALICE")
    assert limited.value.retryable and limited.value.retry_after == 7 and "ratelimited" in str(limited.value)

    slack.fail_next(1, status=503, path="/chat.postMessage")
    with pytest.raises(HttpIntegrationError) as down:
        c.deliver(note(), ALICE, "U0ALICE")
    assert down.value.retryable and down.value.status == 503

    slack.error_next("internal_error")
    with pytest.raises(IntegrationError) as internal:
        c.deliver(note(), ALICE, "U0ALICE")
    assert internal.value.retryable

    with pytest.raises(IntegrationError) as disabled:
        c.deliver(note(), GONE, "U0GONE")
    assert not disabled.value.retryable
    assert str(disabled.value) == ("Slack conversations.open with U0GONE: user_disabled (the Slack user is "
                                   "deactivated)")
    with pytest.raises(IntegrationError) as unknown:
        c.deliver(note(), ALICE, "U0NOBODY")
    assert not unknown.value.retryable and "user_not_found" in str(unknown.value)

    wrong = channel(slack, token="xoxb-wrong-token")
    with pytest.raises(IntegrationError) as denied:
        wrong.deliver(note(), ALICE, "U0ALICE")
    assert not denied.value.retryable and "invalid_auth" in str(denied.value)
    assert "xoxb" not in str(denied.value) and "xoxb" not in repr(wrong)

    slack.error_next("token_revoked", path="/users.lookupByEmail")
    with pytest.raises(IntegrationError) as revoked:
        c.address(BOB)
    assert not revoked.value.retryable and "token_revoked" in str(revoked.value)
    assert "bob@" not in str(revoked.value).lower()  # the address is not spelled out in logs

    with pytest.raises(IntegrationError) as refused:  # nothing listens there any more
        SlackChannel(SlackNotifierSettings(base_url="http://127.0.0.1:9/api/", timeout=1), TOKEN).deliver(
            note(), ALICE, "U0ALICE")
    assert refused.value.retryable
    assert [m["metadata"]["event_payload"]["key"] for m in slack.messages(slack.dms["U0ALICE"])] == []


def test_post_to_a_channel(slack: SlackStandin) -> None:
    c = channel(slack)
    message_id = c.post_to_channel(note(kind="announce"))
    [message] = slack.messages("C0ANNOUNCE")
    assert message_id == f"C0ANNOUNCE:{message['ts']}" and message["blocks"][0]["type"] == "header"
    slack.add_channel("C0ARCHIVED", archived=True)
    slack.add_channel("G0PRIVATE1", member=False)
    for where, error in (("C0ARCHIVED", "is_archived"), ("G0PRIVATE1", "not_in_channel"),
                         ("C0NOSUCH12", "channel_not_found")):
        with pytest.raises(IntegrationError) as refused:
            c.post_to_channel(note(), where)
        assert not refused.value.retryable and error in str(refused.value) and where in str(refused.value)
    with pytest.raises(IntegrationError, match="no announce_channel"):
        channel(slack, announce_channel=None).post_to_channel(note())


def test_the_standin_updates_messages_and_shapes_objects_as_slack_describes(slack: SlackStandin) -> None:
    message_id = channel(slack).deliver(note(), ALICE, "U0ALICE")
    dm, ts = message_id.split(":")
    client = WebClient(token=TOKEN, base_url=slack.base_url)
    answer = client.chat_update(channel=dm, ts=ts, text="Done, thanks", blocks=[
        {"type": "section", "text": {"type": "mrkdwn", "text": "*Done*, thanks"}}])
    assert answer["ts"] == ts and answer["message"]["text"] == "Done, thanks"
    [message] = slack.messages(dm)
    assert message["blocks"][0]["text"]["text"] == "*Done*, thanks" and message["metadata"]["event_type"] == EVENT_TYPE
    plain = client.conversations_history(channel=dm)["messages"][0]
    assert "metadata" not in plain  # only with include_all_metadata, as Slack does
    # The description's user and DM objects are tuple-`items` on an object, which a validator skips: check
    # them against the schemas they mean.
    validator = spec_validator(SLACK_SPEC)
    user = client.users_lookupByEmail(email="alice@example.com")["user"]
    opened = client.conversations_open(users="U0ALICE")
    assert opened["already_open"] is True and opened["channel"]["id"] == dm
    for pointer, body in (("objs_user/items/0", user), ("objs_message", message),
                          ("paths/~1conversations.open/post/responses/200/schema/properties/channel/items/1",
                           opened["channel"])):
        ref = f"{SPEC_URI}#/{pointer}" if pointer.startswith("paths") else f"{SPEC_URI}#/definitions/{pointer}"
        errors = [e.message for e in Draft4Validator({"$ref": ref}, registry=validator.registry).iter_errors(body)]
        assert errors == [], pointer


# --------------------------------------------------------------------------- routing (the notify activity)


@pytest.fixture
def store(sqlite_store: Store) -> Store:  # tests/conftest.py: one SQLite store
    return sqlite_store


def activities(store: Store, slack: SlackStandin, smtp: SmtpServer, token: str = TOKEN) -> NotifyActivities:
    email = EmailChannel(EmailSettings(host="127.0.0.1", port=smtp.port, security=smtp.security, username=USER,
                                       from_address="closeloop@example.com", ca_file=smtp.ca_file, timeout=10),
                         PASSWORD)
    people = Directory({p.key: p for p in (ALICE, BOB, GONE, OPS)})
    return NotifyActivities(people, [LogNotifier(store)], lambda name: None,  # type: ignore[arg-type,return-value]
                            None, channels={"slack": channel(slack, token), "email": email},
                            deliveries=store.channel_deliveries,
                            settings=NotifySettings(channels=["slack", "email"], operator="ops"),
                            public_url="https://closeloop.example.com")


def notify(acts: NotifyActivities, key: str, target: str = "alice") -> str | None:
    inp = NotifyInput(key=key, kind="reminder", target=target, relative_to=target, postmortem_id=PM, at=NOW,
                      context={"title": "Checkout errors", "due_at": NOW})
    return ActivityEnvironment().run(acts.notify, inp)


def test_a_person_on_slack_gets_a_dm_only(store: Store, slack: SlackStandin, smtp: SmtpServer) -> None:
    acts = activities(store, slack, smtp)
    assert notify(acts, f"{PM}/reminder/1") == "alice"
    assert notify(acts, f"{PM}/reminder/1") == "alice"  # a retry: recorded, nothing sent again
    [message] = slack.messages(slack.dms["U0ALICE"])
    assert smtp.messages == []
    record = store.channel_deliveries.get(f"{PM}/reminder/1", "slack")
    assert record is not None and record.status == "sent"
    assert record.message_id == f"{slack.dms['U0ALICE']}:{message['ts']}" and record.address == "U0ALICE"
    assert message["metadata"]["event_payload"]["key"] == f"{PM}/reminder/1"
    assert f"<{BASE}|The postmortem>" in str(message["blocks"])  # the links the activity made


def test_a_deactivated_slack_user_falls_back_to_email_and_the_operator_is_told_once(
        store: Store, slack: SlackStandin, smtp: SmtpServer) -> None:
    acts = activities(store, slack, smtp)
    assert notify(acts, f"{PM}/reminder/1", target="gone") == "gone"
    assert notify(acts, f"{PM}/reminder/2", target="gone") == "gone"
    to = [m["To"].addresses[0].addr_spec for m in smtp.messages]
    assert to == ["ops@example.com", "gone@example.com", "gone@example.com"]
    assert smtp.messages[0]["Subject"] == "closeloop cannot reach Gone Away through slack"
    assert "user_disabled" in smtp.messages[0].get_body(("plain",)).get_content()
    failed = store.channel_deliveries.get(f"{PM}/reminder/1", "slack")
    assert failed is not None and failed.status == "failed" and "user_disabled" in (failed.error or "")
    assert count(slack, "chat.postMessage") == 0


def test_a_rate_limit_is_retried_after_retry_after_and_never_falls_back(
        store: Store, slack: SlackStandin, smtp: SmtpServer) -> None:
    acts = activities(store, slack, smtp)
    slack.rate_limit_next(retry_after=42, path="/chat.postMessage")
    with pytest.raises(ApplicationError) as raised:
        notify(acts, f"{PM}/reminder/1")
    assert not raised.value.non_retryable and raised.value.next_retry_delay == timedelta(seconds=42)
    assert "ratelimited" in str(raised.value)
    tried = store.channel_deliveries.get(f"{PM}/reminder/1", "slack")
    assert smtp.messages == [] and tried is not None and tried.status == "sending"  # the retry looks first
    assert notify(acts, f"{PM}/reminder/1") == "alice"  # the retry
    assert len(slack.messages(slack.dms["U0ALICE"])) == 1 and smtp.messages == []


def test_looking_the_address_up_fails_as_delivering_does(store: Store, slack: SlackStandin,
                                                        smtp: SmtpServer) -> None:
    acts = activities(store, slack, smtp)
    slack.rate_limit_next(retry_after=5, path="/users.lookupByEmail")
    with pytest.raises(ApplicationError) as raised:  # throttled while finding bob: retried, no fallback
        notify(acts, f"{PM}/reminder/1", target="bob")
    assert not raised.value.non_retryable and raised.value.next_retry_delay == timedelta(seconds=5)
    assert smtp.messages == [] and store.channel_deliveries.get(f"{PM}/reminder/1", "slack") is None
    assert notify(acts, f"{PM}/reminder/1", target="bob") == "bob"
    assert len(slack.messages(slack.dms["U0BOB"])) == 1

    # A token Slack refuses: no retry fixes it; bob gets an email, the operator hears of it once.
    revoked = activities(store, slack, smtp, token="xoxb-revoked-token")
    notify(revoked, f"{PM}/reminder/2", target="bob")
    notify(revoked, f"{PM}/reminder/3", target="bob")
    assert [m["To"].addresses[0].addr_spec for m in smtp.messages] == ["ops@example.com", "Bob@Example.com",
                                                                       "Bob@Example.com"]
    report = smtp.messages[0].get_body(("plain",)).get_content()
    assert "invalid_auth" in report and "xoxb" not in report
    failed = store.channel_deliveries.get(f"{PM}/reminder/2", "slack")
    assert failed is not None and failed.status == "failed"


def test_a_retry_after_a_crash_posts_no_second_dm(store: Store, slack: SlackStandin, smtp: SmtpServer) -> None:
    acts = activities(store, slack, smtp)
    notify(acts, f"{PM}/reminder/1")
    first = store.channel_deliveries.get(f"{PM}/reminder/1", "slack")
    assert first is not None and first.message_id
    assert count(slack, "conversations.history") == 0  # a first try has nothing to look for: no search
    with store.db.session() as s:  # the crash: posted, never recorded (the row still says "sending")
        s.execute(update(ChannelDeliveryRow).values(status="sending", message_id=None))
    acts = activities(store, slack, smtp)  # a new worker: nothing cached
    assert notify(acts, f"{PM}/reminder/1") == "alice"
    assert len(slack.messages(slack.dms["U0ALICE"])) == 1 and count(slack, "chat.postMessage") == 1
    assert count(slack, "conversations.history") == 1
    again = store.channel_deliveries.get(f"{PM}/reminder/1", "slack")
    assert again is not None and (again.status, again.message_id) == ("sent", first.message_id)
    assert smtp.messages == []


def test_the_config_builds_the_slack_channel(tmp_path: Path) -> None:
    section = '\n[notifiers.slack]\nannounce_channel = "C0ANNOUNCE"\ncache_ttl = "2h"\n'
    config = make_config(tmp_path, extra=section, notify='channels = ["slack"]')
    integrations = build(config, secrets=Secrets({"CLOSELOOP_SLACK_TOKEN": "xoxb-from-the-env"}))
    try:
        assert list(integrations.channels) == ["slack"]
        slack = integrations.channels["slack"]
        assert isinstance(slack, SlackChannel) and slack.settings.cache_ttl == timedelta(hours=2)
        assert slack.settings.base_url == "https://slack.com/api/" and slack.settings.lookup_by_email is True
        assert "xoxb" not in repr(slack)
    finally:
        integrations.store.close()
    with pytest.raises(ConfigError, match="token"):
        make_config(tmp_path, extra='\n[notifiers.slack]\ntoken = "xoxb-in-the-file"\n')


def test_a_published_postmortem_is_announced_once_in_the_incidents_channel(store: Store, slack: SlackStandin,
                                                                          smtp: SmtpServer) -> None:
    """`[notify] announce = { published = ["slack"] }`: each person gets their own message, and the announce
    channel gets one post, however many people the postmortem was published to."""
    slack.add_channel("C0INCIDENTS")
    acts = activities(store, slack, smtp)
    acts.settings = acts.settings.model_copy(update={"announce": {"published": ["slack", "slack:C0INCIDENTS"]}})
    for who in ("alice", "bob"):
        inp = NotifyInput(key=f"{PM}/published/{who}", kind="published", target=who, relative_to=who,
                          postmortem_id=PM, at=NOW, context={"incident_title": "Checkout errors", "severity": "SEV2"})
        assert ActivityEnvironment().run(acts.notify, inp) == who
    [default_room] = slack.messages("C0ANNOUNCE")
    [incidents] = slack.messages("C0INCIDENTS")
    assert incidents["text"].startswith("Postmortem published: Checkout errors")
    assert "Hello everyone" in incidents["text"] and "Alice" not in incidents["text"]
    assert default_room["text"] == incidents["text"]
    assert len(slack.messages(slack.dms["U0ALICE"])) == 1 and len(slack.messages(slack.dms["U0BOB"])) == 1
    record = store.channel_deliveries.get(f"{PM}/announce/published/slack:C0INCIDENTS", "slack")
    assert record is not None and record.status == "sent" and record.message_id == f"C0INCIDENTS:{incidents['ts']}"


def test_announce_names_configured_channels(tmp_path: Path) -> None:
    section = '\n[notifiers.slack]\nannounce_channel = "C0ANNOUNCE"\n'
    config = make_config(tmp_path, extra=section, notify='announce = { published = ["slack:C0INCIDENTS"] }')
    assert config.notify.announce == {"published": ["slack:C0INCIDENTS"]}
    with pytest.raises(ConfigError, match=r"notify.announce.published: unknown channel 'teams'"):
        make_config(tmp_path, extra=section, notify='announce = { published = ["teams:ops"] }')


def test_notify_kinds_route_a_kind_to_its_own_channels(store: Store, slack: SlackStandin, smtp: SmtpServer,
                                                       tmp_path: Path) -> None:
    """`[notify] kinds = { draft_requested = ["email"] }`: alice's draft request arrives by email, her reminders
    as Slack DMs (her usual channels)."""
    acts = activities(store, slack, smtp)
    acts.settings = acts.settings.model_copy(update={"kinds": {"draft_requested": ["email"]}})
    for key, kind in ((f"{PM}/draft/0/requested", "draft_requested"), (f"{PM}/draft/0/reminder/0", "reminder")):
        inp = NotifyInput(key=key, kind=kind, target="alice", relative_to="alice", postmortem_id=PM, at=NOW,
                          context={"incident_title": "Checkout errors"})
        assert ActivityEnvironment().run(acts.notify, inp) == "alice"
    [mail] = smtp.messages
    assert mail["X-Closeloop-Kind"] == "draft_requested"
    [dm] = slack.messages(slack.dms["U0ALICE"])
    assert dm["metadata"]["event_payload"]["kind"] == "reminder"
    with pytest.raises(ConfigError, match=r"notify.kinds.reminder: unknown channel 'teams'"):
        make_config(tmp_path, extra='\n[notifiers.slack]\n', notify='kinds = { reminder = ["teams"] }')
