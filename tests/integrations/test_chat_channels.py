"""The chat-webhook channels (Microsoft Teams, Google Chat, Mattermost, Discord, the generic signed webhook)
against a local HTTP receiver standing in for each service's incoming webhook (tests/standins/chat.py): each
service's documented payload, mentions from incident titles neutralised, text cut to the service's limits,
links as buttons or links (and actions that would call back left out), the provider's message id, a 429 that is
retried after its Retry-After, a deleted webhook that fails for good without its URL in the message; the
generic webhook's signature; the notify activity's fallback to email when the Teams webhook is gone; and the
config: each section builds its channel, webhook URLs only from the environment."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio.testing import ActivityEnvironment

from closeloop.activities.notify import NotifyActivities, NotifyInput
from closeloop.config import ConfigError, NotifySettings
from closeloop.directory import Directory
from closeloop.integrations.base import HttpIntegrationError, IntegrationError, Notification, NotificationAction
from closeloop.integrations.chat import ZWSP, ChatWebhookChannel
from closeloop.integrations.discord.channel import DiscordChannel
from closeloop.integrations.discord.settings import DiscordSettings
from closeloop.integrations.email.channel import EmailChannel
from closeloop.integrations.email.settings import EmailSettings
from closeloop.integrations.googlechat.channel import GoogleChatChannel
from closeloop.integrations.googlechat.settings import GoogleChatSettings
from closeloop.integrations.local.notifier import LogNotifier
from closeloop.integrations.mattermost.channel import MattermostChannel
from closeloop.integrations.mattermost.settings import MattermostSettings
from closeloop.integrations.registry import build
from closeloop.integrations.teams.channel import TeamsChannel
from closeloop.integrations.teams.settings import TeamsSettings
from closeloop.integrations.webhook.channel import WebhookChannel
from closeloop.integrations.webhook.settings import WebhookSettings
from closeloop.models import Person
from closeloop.secrets import Secrets
from closeloop.store.store import Store
from tests.standins.chat import Receiver
from tests.standins.smtp import PASSWORD, USER, SmtpServer
from tests.temporal_env import make_config

AT = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
PM = "postmortem/pagerduty/PABC123"
PAGE = "https://closeloop.example.com/postmortems/postmortem/pagerduty/PABC123"
TOKEN = "tok3n-s3cret-0123456789abcdef"
ALICE = Person(key="alice", name="Alice Liddell", email="alice@example.com", handles={
    "teams": "platform", "googlechat": "platform", "mattermost": "platform", "discord": "platform",
    "webhook": "platform"})
SIGNING_SECRET = "whsec-0123456789"


def note(key: str = f"{PM}/reminder/1", **fields: object) -> Notification:
    values: dict[str, object] = dict(
        key=key, kind="review_request", recipient="alice",
        subject="Review: @channel checkout is down <!here>",
        body="Hi Alice,\n\n@everyone the draft for <@&123> is ready; ping alice@example.com.\n\n<at>Bob</at> "
             "and <users/all> too.\n",
        at=AT, postmortem_id=PM, links={"postmortem": PAGE},
        actions=[NotificationAction(action="open_postmortem", label="Read the draft", url=PAGE + "/draft"),
                 NotificationAction(action="approve", label="Approve", value=PM)])
    values.update(fields)
    return Notification.model_validate(values)


@pytest.fixture
def rx() -> Iterator[Receiver]:
    with Receiver() as receiver:
        yield receiver


def hook(rx: Receiver, path: str) -> str:
    """A webhook URL on the receiver whose path and query carry a token, as real ones do."""
    return rx.url(path) + f"?sig={TOKEN}"


def make(kind: str, rx: Receiver, path: str | None = None, **settings: object) -> ChatWebhookChannel:
    webhooks = {"platform": hook(rx, path or f"/{kind}/platform")}
    if kind == "teams":
        return TeamsChannel(TeamsSettings.model_validate(settings), webhooks)
    if kind == "googlechat":
        return GoogleChatChannel(GoogleChatSettings.model_validate(settings), webhooks)
    if kind == "mattermost":
        return MattermostChannel(MattermostSettings.model_validate(settings), webhooks)
    if kind == "discord":
        return DiscordChannel(DiscordSettings.model_validate(settings), webhooks)
    return WebhookChannel(WebhookSettings.model_validate(settings), webhooks, secrets=(SIGNING_SECRET, "old"))


def no_mentions(text: str) -> None:
    """Every mention syntax of the fixture is broken; the email address is intact."""
    for mention in ("@channel", "@everyone", "@here", "<!here>", "<@&123>", "<at>", "<users/all>"):
        assert mention not in text, mention
    assert f"@{ZWSP}channel" in text or f"@{ZWSP}everyone" in text or "<" + ZWSP in text


SERVICES = ["teams", "googlechat", "mattermost", "discord", "webhook"]


# --------------------------------------------------------------------------- the payloads


def test_teams_posts_an_adaptive_card_with_link_buttons(rx: Receiver) -> None:
    channel = make("teams", rx)
    rx.answer("/teams/platform", 202)
    message_id = channel.deliver(note(), ALICE, "platform")
    [request] = rx.requests
    assert request.query == {"sig": TOKEN} and request.headers["content-type"].startswith("application/json")
    body = request.json
    assert body["type"] == "message"
    [attachment] = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    heading, *lines = card["body"]
    assert heading["type"] == "TextBlock" and heading["weight"] == "Bolder" and heading["wrap"] is True
    assert heading["text"] == f"Review: @{ZWSP}channel checkout is down <{ZWSP}!here>"
    assert [b["text"] for b in lines][0] == "Hi Alice,"
    texts = "\n".join(b["text"] for b in card["body"])
    no_mentions(texts)
    assert "alice@example.com" in texts
    # links as buttons; the approve action (a callback) is not there
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "The postmortem", "url": PAGE},
                               {"type": "Action.OpenUrl", "title": "Read the draft", "url": PAGE + "/draft"}]
    assert message_id == "teams:" + hashlib.sha256(f"{PM}/reminder/1".encode()).hexdigest()[:32]

    channel.deliver(note(body="x" * 60_000 + "\nend"), ALICE, "platform")
    big = rx.requests[-1]
    assert len(big.body) <= 28_000
    assert big.json["attachments"][0]["content"]["body"][-1]["text"].endswith("(cut: too long for Teams)")


def test_google_chat_threads_by_postmortem_with_a_request_id(rx: Receiver) -> None:
    channel = make("googlechat", rx)
    rx.answer("/googlechat/platform", 200, {"name": "spaces/AAAA/messages/BBBB.CCCC",
                                            "thread": {"name": "spaces/AAAA/threads/DDDD"}})
    message_id = channel.deliver(note(), ALICE, "platform")
    assert message_id == "spaces/AAAA/messages/BBBB.CCCC"
    [request] = rx.requests
    assert request.query["messageReplyOption"] == "REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD"
    assert request.query["requestId"] == "closeloop-" + hashlib.sha256(f"{PM}/reminder/1".encode()).hexdigest()[:32]
    body = request.json
    assert body["thread"] == {"threadKey": PM}
    assert body["text"].startswith(f"*Review: @{ZWSP}channel checkout is down <{ZWSP}!here>*\n\nHi Alice,")
    no_mentions(body["text"])
    [card] = body["cardsV2"]
    buttons = card["card"]["sections"][0]["widgets"][0]["buttonList"]["buttons"]
    assert [(b["text"], b["onClick"]["openLink"]["url"]) for b in buttons] == [
        ("The postmortem", PAGE), ("Read the draft", PAGE + "/draft")]

    # the same notification again (a retry): the same request id, which Google answers with the first message
    channel.deliver(note(), ALICE, "platform")
    assert rx.requests[1].query["requestId"] == request.query["requestId"]
    channel.deliver(note("other", body="y" * 10_000, postmortem_id="postmortem/api/OTHER"), ALICE, "platform")
    other = rx.requests[2]
    assert other.json["thread"] == {"threadKey": "postmortem/api/OTHER"}
    assert other.query["requestId"] != request.query["requestId"]
    assert len(other.json["text"]) == 4096 and other.json["text"].endswith("(cut: too long for Google Chat)_")

    unthreaded = make("googlechat", rx, thread_per_postmortem=False)
    rx.answer("/googlechat/platform", 200, b"")
    assert unthreaded.deliver(note(), ALICE, "platform").startswith("googlechat:")  # no name: the key's hash
    assert "thread" not in rx.requests[-1].json and "messageReplyOption" not in rx.requests[-1].query


def test_mattermost_posts_markdown_with_props(rx: Receiver) -> None:
    channel = make("mattermost", rx, username="postmortems", icon_url="https://closeloop.example.com/icon.png")
    rx.answer("/mattermost/platform", 200, "ok")
    message_id = channel.deliver(note(), ALICE, "platform")
    assert message_id == "mattermost:" + hashlib.sha256(f"{PM}/reminder/1".encode()).hexdigest()[:32]
    body = rx.requests[0].json
    assert body["username"] == "postmortems" and body["icon_url"] == "https://closeloop.example.com/icon.png"
    assert body["props"] == {"closeloop": {"key": f"{PM}/reminder/1", "kind": "review_request",
                                           "postmortem_id": PM, "item_id": None}}
    text = body["text"]
    assert text.startswith(f"#### Review: @{ZWSP}channel checkout is down")
    no_mentions(text)
    assert "ping alice@example.com." in text
    assert text.endswith(f"[The postmortem]({PAGE}) · [Read the draft]({PAGE}/draft)")
    assert "Approve" not in text

    channel.deliver(note(body="z" * 20_000), ALICE, "platform")
    long_text = rx.requests[1].json["text"]
    assert len(long_text) == 16_383 and "(cut: too long for Mattermost)" in long_text
    assert long_text.endswith(f"({PAGE}/draft)")  # the links survive the cut


def test_discord_waits_for_the_message_and_pings_nobody(rx: Receiver) -> None:
    channel = make("discord", rx)
    rx.answer("/discord/platform", 200, {"id": "1234567890123456789", "channel_id": "42", "content": "..."})
    assert channel.deliver(note(), ALICE, "platform") == "1234567890123456789"
    [request] = rx.requests
    assert request.query == {"sig": TOKEN, "wait": "true"}
    body = request.json
    assert body["allowed_mentions"] == {"parse": []} and body["username"] == "closeloop"
    assert body["content"] == f"Review: @{ZWSP}channel checkout is down <{ZWSP}!here>"
    [embed] = body["embeds"]
    assert embed["title"] == body["content"] and embed["url"] == PAGE
    assert embed["timestamp"] == "2026-12-01T09:30:00+00:00"
    no_mentions(embed["description"])
    assert embed["description"].endswith(f"[Read the draft]({PAGE}/draft)")  # the postmortem is the title's link
    assert "Approve" not in embed["description"]

    channel.deliver(note(subject="s" * 3000, body="b" * 5000), ALICE, "platform")
    big = rx.requests[1].json
    assert len(big["content"]) == 2000 and len(big["embeds"][0]["title"]) == 256
    description = big["embeds"][0]["description"]
    assert len(description) <= 4096 and "(cut: too long for Discord)" in description
    assert len(big["embeds"][0]["title"]) + len(description) + len(big["embeds"][0]["footer"]["text"]) <= 6000


def test_the_generic_webhook_is_signed_and_carries_the_whole_notification(rx: Receiver) -> None:
    channel = make("webhook", rx)
    rx.answer("/webhook/platform", 202, {"id": "evt_42"})
    assert channel.deliver(note(item_id="item-1"), ALICE, "platform") == "evt_42"
    [request] = rx.requests
    body = request.json
    assert body == {"key": f"{PM}/reminder/1", "kind": "review_request", "recipient": "alice",
                    "subject": "Review: @channel checkout is down <!here>", "body": note().body,
                    "links": {"postmortem": PAGE},
                    "actions": [{"action": "open_postmortem", "label": "Read the draft", "url": PAGE + "/draft"}],
                    "postmortem_id": PM, "item_id": "item-1", "at": "2026-12-01T09:30:00+00:00"}
    # a receiver verifies the signature over the raw body with the shared secret (the first one signs)
    expected = hmac.new(SIGNING_SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["x-closeloop-signature"] == f"sha256={expected}"
    wrong = hmac.new(b"old", request.body, hashlib.sha256).hexdigest()
    assert request.headers["x-closeloop-signature"] != f"sha256={wrong}"
    assert request.headers["idempotency-key"] == f"{PM}/reminder/1"
    assert request.headers["x-closeloop-kind"] == "review_request"

    rx.answer("/webhook/platform", 204)
    assert channel.deliver(note("k2"), ALICE, "platform") == "webhook:" + hashlib.sha256(b"k2").hexdigest()[:32]

    unsigned = WebhookChannel(WebhookSettings(), {"platform": hook(rx, "/webhook/platform")})
    with pytest.raises(IntegrationError) as refused:
        unsigned.deliver(note(), ALICE, "platform")
    assert not refused.value.retryable and "CLOSELOOP_WEBHOOK_SECRET" in str(refused.value)
    assert len(rx.requests) == 2  # nothing sent unsigned


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("kind", SERVICES)
def test_a_429_is_retried_after_its_retry_after(rx: Receiver, kind: str) -> None:
    channel = make(kind, rx)
    rx.answer(f"/{kind}/platform", 429, {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED"}},
              headers={"Retry-After": "7"})
    with pytest.raises(HttpIntegrationError) as limited:
        channel.deliver(note(), ALICE, "platform")
    assert limited.value.retryable and limited.value.status == 429 and limited.value.retry_after == 7.0
    assert "'platform'" in str(limited.value) and TOKEN not in str(limited.value)


def test_mattermost_429_without_retry_after_waits_for_its_reset(rx: Receiver) -> None:
    channel = make("mattermost", rx)
    rx.answer("/mattermost/platform", 429, "limit exceeded", headers={"X-Ratelimit-Reset": "4"})
    with pytest.raises(HttpIntegrationError) as limited:
        channel.deliver(note(), ALICE, "platform")
    assert limited.value.retryable and limited.value.retry_after == 4.0
    rx.answer("/mattermost/platform", 429, "limit exceeded", headers={"X-Ratelimit-Reset": "1798000000"})
    with pytest.raises(HttpIntegrationError) as epoch:
        channel.deliver(note(), ALICE, "platform")
    assert epoch.value.retryable and epoch.value.retry_after is None  # an epoch time: the activity's backoff


def test_discord_429_waits_what_its_json_says(rx: Receiver) -> None:
    rx.answer("/discord/platform", 429, {"message": "You are being rate limited.", "retry_after": 2.5,
                                         "global": False}, headers={"Retry-After": "3"})
    with pytest.raises(HttpIntegrationError) as limited:
        make("discord", rx).deliver(note(), ALICE, "platform")
    assert limited.value.retryable and limited.value.retry_after == 2.5


@pytest.mark.parametrize("kind", SERVICES)
def test_a_deleted_webhook_fails_for_good_naming_it_without_its_url(rx: Receiver, kind: str) -> None:
    channel = make(kind, rx)
    rx.answer(f"/{kind}/platform", 404, {"message": "Unknown Webhook", "code": 10015})
    with pytest.raises(HttpIntegrationError) as gone:
        channel.deliver(note(), ALICE, "platform")
    message = str(gone.value)
    assert not gone.value.retryable and gone.value.status == 404 and gone.value.retry_after is None
    assert "webhook 'platform': HTTP 404" in message and "deleted" in message
    assert TOKEN not in message and str(rx.port) not in message and "127.0.0.1" not in message
    assert "\n" not in message

    rx.answer(f"/{kind}/platform", 503, "upstream down")
    with pytest.raises(HttpIntegrationError) as down:
        channel.deliver(note(), ALICE, "platform")
    assert down.value.retryable and down.value.status == 503


def test_a_refused_payload_and_a_dead_server(rx: Receiver) -> None:
    rx.answer("/discord/platform", 400, {"code": 50035, "message": "Invalid Form Body", "errors": {"embeds": {"0": {
        "description": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH",
                                     "message": "Must be 4096 or fewer in length."}]}}}}})
    with pytest.raises(HttpIntegrationError) as refused:
        make("discord", rx).deliver(note(), ALICE, "platform")
    assert not refused.value.retryable
    assert "Invalid Form Body: embeds.0.description: Must be 4096 or fewer in length." in str(refused.value)

    # a server that is not there: retryable, and the message has no URL either
    dead = TeamsChannel(TeamsSettings(timeout=2), {"platform": f"http://127.0.0.1:9/hook?sig={TOKEN}"})
    with pytest.raises(IntegrationError) as down:
        dead.deliver(note(), ALICE, "platform")
    assert down.value.retryable and "Microsoft Teams webhook 'platform'" in str(down.value)
    assert TOKEN not in str(down.value)


def test_addresses_are_webhook_names(rx: Receiver) -> None:
    webhooks = {"platform": hook(rx, "/teams/platform"), "sre": hook(rx, "/teams/sre")}
    channel = TeamsChannel(TeamsSettings(default_webhook="sre"), webhooks)
    assert channel.address(ALICE) == "platform"  # her handle
    bob = Person(key="bob", name="Bob", email="bob@example.com")
    assert channel.address(bob) == "sre"  # the team's default room
    assert TeamsChannel(TeamsSettings(), webhooks).address(bob) is None  # no handle, no default: not reached
    lost = Person(key="lost", name="Lost", email="l@example.com", handles={"teams": "nowhere"})
    with pytest.raises(IntegrationError) as unknown:
        channel.address(lost)
    assert not unknown.value.retryable
    assert str(unknown.value) == ("Microsoft Teams: lost's teams handle names the webhook 'nowhere', which "
                                  "CLOSELOOP_TEAMS_WEBHOOKS does not define (it has: platform, sre)")
    assert TOKEN not in repr(channel) and "platform" in repr(channel)


# --------------------------------------------------------------------------- routing (the notify activity)


ERIN = Person(key="erin", name="Erin", email="erin@example.com", handles={"teams": "gone"},
              channels=["teams", "email"])
OPS = Person(key="ops", name="Platform on-call", email="ops@example.com", channels=["teams", "email"])


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'closeloop.db'}")
    try:
        yield s
    finally:
        s.close()


def test_a_gone_teams_webhook_falls_back_to_email_and_the_operator_is_told_once(
        rx: Receiver, store: Store, tmp_path: Path) -> None:
    rx.answer("/teams/gone", 404, "")
    teams = TeamsChannel(TeamsSettings(), {"gone": hook(rx, "/teams/gone")})
    with SmtpServer(tmp_path) as smtp:
        email = EmailChannel(EmailSettings(host="127.0.0.1", port=smtp.port, security="starttls", username=USER,
                                           from_address="closeloop@example.com", ca_file=smtp.ca_file, timeout=10),
                             PASSWORD)
        acts = NotifyActivities(Directory({p.key: p for p in (ERIN, OPS)}), [LogNotifier(store)],
                                lambda name: None,  # type: ignore[arg-type,return-value]
                                None, channels={"teams": teams, "email": email}, deliveries=store.channel_deliveries,
                                settings=NotifySettings(channels=["teams", "email"], operator="ops"),
                                public_url="https://closeloop.example.com")
        for n in (1, 2):
            inp = NotifyInput(key=f"{PM}/reminder/{n}", kind="reminder", target="erin", relative_to="erin",
                              postmortem_id=PM, at=AT, context={"title": "Checkout errors", "due_at": AT})
            assert ActivityEnvironment().run(acts.notify, inp) == "erin"
        to = [m["To"].addresses[0].addr_spec for m in smtp.messages]
        report = smtp.messages[0]
    # each reminder tried Teams (404), then reached erin by email; the operator heard of it once, by email (ops
    # has no Teams room: no handle, no default_webhook)
    assert len(rx.at("/teams/gone")) == 2
    assert to == ["ops@example.com", "erin@example.com", "erin@example.com"]
    assert report["Subject"] == "closeloop cannot reach Erin through teams"
    text = report.get_body(("plain",)).get_content()
    assert "Microsoft Teams webhook 'gone': HTTP 404" in text and TOKEN not in text
    failed = store.channel_deliveries.get(f"{PM}/reminder/1", "teams")
    assert failed is not None and failed.status == "failed" and failed.address == "gone"
    assert TOKEN not in (failed.error or "")
    sent = store.channel_deliveries.get(f"{PM}/reminder/1", "email")
    assert sent is not None and sent.status == "sent"


# --------------------------------------------------------------------------- config


SECTIONS = """
[notifiers.teams]
default_webhook = "platform"

[notifiers.googlechat]
thread_per_postmortem = true

[notifiers.mattermost]
username = "postmortems"

[notifiers.discord]
default_webhook = "sre"

[notifiers.webhook]
timeout = 5
"""
ENV = {"CLOSELOOP_TEAMS_WEBHOOKS": f"platform=https://example.webhook.office.com/workflows/1?sig={TOKEN}",
       "CLOSELOOP_GOOGLECHAT_WEBHOOKS": f"https://chat.googleapis.com/v1/spaces/AAAA/messages?key=k&token={TOKEN}",
       "CLOSELOOP_MATTERMOST_WEBHOOKS": f"platform=https://mm.example.com/hooks/{TOKEN}",
       "CLOSELOOP_DISCORD_WEBHOOKS": f"sre=https://discord.com/api/webhooks/1/{TOKEN}, "
                                     f"platform=https://discord.com/api/webhooks/2/{TOKEN}",
       "CLOSELOOP_WEBHOOK_URLS": "platform=https://hooks.example.com/closeloop",
       "CLOSELOOP_WEBHOOK_SECRET": SIGNING_SECRET}


def test_each_section_builds_its_channel_with_the_webhooks_from_the_environment(tmp_path: Path) -> None:
    config = make_config(tmp_path, extra=SECTIONS,
                         notify='channels = ["teams", "googlechat", "mattermost", "discord", "webhook"]')
    integrations = build(config, secrets=Secrets(ENV))
    try:
        channels = integrations.channels
        assert {name: type(c).__name__ for name, c in channels.items() if name != "email"} == {
            "teams": "TeamsChannel", "googlechat": "GoogleChatChannel", "mattermost": "MattermostChannel",
            "discord": "DiscordChannel", "webhook": "WebhookChannel"}
        assert channels["discord"].webhook_names == ["platform", "sre"]  # type: ignore[attr-defined]
        assert channels["googlechat"].webhook_names == ["default"]  # type: ignore[attr-defined]
        bob = Person(key="bob", name="Bob", email="bob@example.com")
        assert channels["teams"].address(bob) == "platform" and channels["discord"].address(bob) == "sre"
        assert channels["mattermost"].address(bob) is None
        assert TOKEN not in repr(channels["teams"])
    finally:
        integrations.store.close()

    with pytest.raises(ConfigError) as malformed:
        build(make_config(tmp_path, extra=SECTIONS), secrets=Secrets(
            {**ENV, "CLOSELOOP_DISCORD_WEBHOOKS": f"sre=ftp://discord.com/{TOKEN}"}))
    assert "CLOSELOOP_DISCORD_WEBHOOKS: entry 1 (sre): the value is not an http(s) URL" in str(malformed.value)
    assert TOKEN not in str(malformed.value)


@pytest.mark.parametrize("section", [
    '[notifiers.teams]\nwebhooks = { platform = "https://example.webhook.office.com/x" }',
    '[notifiers.discord]\ndefault_webhook = "https://discord.com/api/webhooks/1/abc"',
    '[notifiers.mattermost]\nurl = "https://mm.example.com/hooks/abc"',
])
def test_a_webhook_url_in_the_config_file_is_refused(tmp_path: Path, section: str) -> None:
    with pytest.raises(ConfigError, match=r"secret.*(CLOSELOOP_[A-Z]+_WEBHOOKS)"):
        make_config(tmp_path, extra="\n" + section + "\n")


def test_a_webhook_url_in_a_handle_is_refused(tmp_path: Path) -> None:
    people = ('\n[notifiers.googlechat]\n\n[people.zed]\nname = "Zed"\nemail = "zed@example.com"\n'
              'handles = { googlechat = "https://chat.googleapis.com/v1/spaces/A/messages?key=k&token=t" }\n')
    with pytest.raises(ConfigError, match=r"people\.zed\.handles\.googlechat: a webhook URL is a secret: put it in "
                                          r"CLOSELOOP_GOOGLECHAT_WEBHOOKS"):
        make_config(tmp_path, extra=people)
    ok = make_config(tmp_path, extra=people.replace(
        "https://chat.googleapis.com/v1/spaces/A/messages?key=k&token=t", "sre"))
    assert ok.people_directory()["zed"].handles == {"googlechat": "sre"}


def test_secrets_name_every_variable() -> None:
    from closeloop.integrations.plugin import discover

    plugins = discover()
    assert {name: plugins[name].secrets for name in SERVICES} == {
        "teams": ("CLOSELOOP_TEAMS_WEBHOOKS",), "googlechat": ("CLOSELOOP_GOOGLECHAT_WEBHOOKS",),
        "mattermost": ("CLOSELOOP_MATTERMOST_WEBHOOKS",), "discord": ("CLOSELOOP_DISCORD_WEBHOOKS",),
        "webhook": ("CLOSELOOP_WEBHOOK_URLS", "CLOSELOOP_WEBHOOK_SECRET")}


def test_notify_test_posts_to_the_room_and_names_a_missing_webhook(rx: Receiver, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from closeloop.cli.main import cli
    from tests.closeloop.cli.test_cli_errors import CLEAN_ENV

    rx.answer("/discord/platform", 200, {"id": "998877"})
    section = ('\n[notifiers.discord]\ndefault_webhook = "platform"\n'
               '\n[people.lost]\nname = "Lost"\nemail = "lost@example.com"\nhandles = { discord = "nowhere" }\n')
    config = make_config(tmp_path, extra=section, notify='channels = ["discord"]')
    env = {**CLEAN_ENV, "CLOSELOOP_DISCORD_WEBHOOKS": f"platform={hook(rx, '/discord/platform')}"}
    ok = CliRunner().invoke(cli, ["--config", config.source, "notify", "test", "alice"], env=env)
    assert ok.exit_code == 0, ok.output
    assert ok.output.strip() == "discord: sent to platform: 998877"
    [request] = rx.requests
    assert request.json["content"] == "closeloop test message"
    lost = CliRunner().invoke(cli, ["--config", config.source, "notify", "test", "lost"], env=env)
    assert lost.exit_code == 1
    assert lost.output.strip() == ("discord: failed: Discord: lost's discord handle names the webhook 'nowhere', "
                                   "which CLOSELOOP_DISCORD_WEBHOOKS does not define (it has: platform)")
    assert TOKEN not in ok.output + lost.output


def test_the_example_config_documents_the_chat_webhooks(tmp_path: Path) -> None:
    from closeloop.integrations.registry import load

    example = Path(__file__).resolve().parents[2] / "closeloop" / "examples" / "closeloop.toml"
    text = example.read_text()
    for env in ("CLOSELOOP_TEAMS_WEBHOOKS", "CLOSELOOP_GOOGLECHAT_WEBHOOKS", "CLOSELOOP_MATTERMOST_WEBHOOKS",
                "CLOSELOOP_DISCORD_WEBHOOKS", "CLOSELOOP_WEBHOOK_URLS", "CLOSELOOP_WEBHOOK_SECRET"):
        assert env in text
    # the commented sections, uncommented, are a valid config
    lines, inside = [], False
    for line in text.splitlines():
        if any(line.startswith(f"# [notifiers.{name}]") for name in SERVICES):
            inside = True
        elif not line.startswith("# ") or "=" not in line:
            inside = False
        lines.append(line[2:] if inside else line)
    path = tmp_path / "closeloop.toml"
    path.write_text("\n".join(lines).replace('data_dir = ".closeloop"', f'data_dir = "{tmp_path}"'))
    config = load(path, env={})
    assert {name for kind, name in config.plugin_settings if kind == "notifiers"} >= set(SERVICES)
