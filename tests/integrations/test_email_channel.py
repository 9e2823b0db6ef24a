"""The email channel against a real SMTP server (aiosmtpd, tests/standins/smtp.py): STARTTLS or implicit TLS
with AUTH, multipart text and HTML from the same template, one thread per postmortem, a List-Id; and the notify
activity's routing on a real store: one delivery per key, a resend after a crash that is the same message, a
permanent failure that falls back to the person's next channel and is reported to the operator once, and a
transient one that is retried, never fallen back from."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import update
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from closeloop.activities.notify import NotifyActivities, NotifyInput
from closeloop.config import ConfigError, NotifySettings
from closeloop.directory import Directory
from closeloop.integrations.base import IntegrationError, Notification, NotificationAction
from closeloop.integrations.email.channel import EmailChannel
from closeloop.integrations.email.settings import EmailSettings
from closeloop.integrations.local.notifier import LogNotifier
from closeloop.integrations.registry import build
from closeloop.models import Person
from closeloop.store.store import Store
from closeloop.store.tables import ChannelDeliveryRow
from tests.standins.smtp import PASSWORD, USER, SmtpServer
from tests.temporal_env import make_config

AT = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
PM = "postmortem/pagerduty/PABC123"
ALICE = Person(key="alice", name="Alice Liddell", email="alice@example.com", timezone="Europe/London")
ERIN = Person(key="erin", name="Erin", email="bounce-erin@example.com", handles={"backup": "erin@backup.example"},
              channels=["email", "backup"])
OPS = Person(key="ops", name="Platform on-call", email="ops@example.com")


def settings(smtp: SmtpServer, **overrides: object) -> EmailSettings:
    values: dict[str, object] = dict(host="127.0.0.1", port=smtp.port, security=smtp.security, username=USER,
                                     from_address="closeloop@example.com", ca_file=smtp.ca_file, timeout=10)
    values.update(overrides)
    return EmailSettings.model_validate(values)


def note(key: str = f"{PM}/reminder/1", **fields: object) -> Notification:
    values: dict[str, object] = dict(
        key=key, kind="reminder", recipient="alice", subject="Reminder: the draft for PABC123 is due",
        body="Hi Alice,\n\nThe draft is due on 2026-12-03.\nThe <script>alert(1)</script> stays text.\n",
        at=AT, postmortem_id=PM,
        links={"postmortem": "https://closeloop.example.com/postmortems/postmortem/pagerduty/PABC123"},
        actions=[NotificationAction(action="open_draft", label="Open the draft",
                                    url="https://closeloop.example.com/postmortems/postmortem/pagerduty/PABC123/draft")])
    values.update(fields)
    return Notification.model_validate(values)


def test_a_message_is_multipart_threaded_and_listed(smtp: SmtpServer) -> None:
    channel = EmailChannel(settings(smtp), PASSWORD)
    message_id = channel.deliver(note(), ALICE, "alice@example.com")
    [mail] = smtp.messages
    assert mail["Message-ID"] == message_id == channel.message_id(f"{PM}/reminder/1")
    assert message_id.startswith("<closeloop-") and message_id.endswith("@example.com>")
    assert mail["In-Reply-To"] == mail["References"] == channel.thread_id(PM)
    assert mail["List-Id"] == "closeloop postmortems <postmortems.example.com>"
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail["To"] == "Alice Liddell <alice@example.com>"
    assert mail["Subject"] == "Reminder: the draft for PABC123 is due"
    assert mail.get_content_type() == "multipart/alternative"
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    assert "The draft is due on 2026-12-03." in text and "<script>alert(1)</script>" in text
    assert "The postmortem: https://closeloop.example.com/postmortems/postmortem/pagerduty/PABC123" in text
    assert "Open the draft: https://closeloop.example.com/" in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html  # escaped in HTML
    assert 'href="https://closeloop.example.com/postmortems/postmortem/pagerduty/PABC123/draft"' in html
    assert "Open the postmortem" in html

    # Another message about the same postmortem is in the same thread; another postmortem's is not.
    channel.deliver(note(f"{PM}/reminder/2"), ALICE, "alice@example.com")
    channel.deliver(note("postmortem/api/OTHER/reminder/1", postmortem_id="postmortem/api/OTHER"), ALICE,
                    "alice@example.com")
    threads = [m["References"] for m in smtp.messages]
    assert threads[0] == threads[1] != threads[2]
    assert len({m["Message-ID"] for m in smtp.messages}) == 3


def test_implicit_tls_with_authentication(tmp_path: Path) -> None:
    with SmtpServer(tmp_path, security="tls") as smtp:
        EmailChannel(settings(smtp), PASSWORD).deliver(note(), ALICE, "alice@example.com")
        assert [m["To"] for m in smtp.messages] == ["Alice Liddell <alice@example.com>"]


def test_failures_say_whether_a_retry_can_help(smtp: SmtpServer, tmp_path: Path) -> None:
    with pytest.raises(IntegrationError) as wrong:
        EmailChannel(settings(smtp), "not-the-password").deliver(note(), ALICE, "alice@example.com")
    assert not wrong.value.retryable and "login as 'closeloop' refused: 535" in str(wrong.value)
    assert "not-the-password" not in str(wrong.value)

    channel = EmailChannel(settings(smtp), PASSWORD)
    with pytest.raises(IntegrationError) as bounced:
        channel.deliver(note(), ALICE, "bounce-alice@example.com")
    assert not bounced.value.retryable and "refused bounce-alice@example.com: 550" in str(bounced.value)
    with pytest.raises(IntegrationError) as later:
        channel.deliver(note(), ALICE, "later-alice@example.com")
    assert later.value.retryable and "451" in str(later.value)

    with pytest.raises(IntegrationError) as untrusted:  # the system's CAs do not know the test CA
        EmailChannel(settings(smtp, ca_file=None), PASSWORD).deliver(note(), ALICE, "alice@example.com")
    assert not untrusted.value.retryable and "certificate" in str(untrusted.value)
    assert smtp.messages == []

    smtp.stop()
    with pytest.raises(IntegrationError) as down:
        channel.deliver(note(), ALICE, "alice@example.com")
    assert down.value.retryable and f"SMTP 127.0.0.1:{smtp.port}" in str(down.value)


# --------------------------------------------------------------------------- routing (the notify activity)


class BackupChannel(EmailChannel):
    """A second channel for the fallback: the same SMTP code, under another name and address."""

    name = "backup"

    def address(self, person: Person) -> str | None:
        return person.handles.get("backup")


@pytest.fixture
def store(sqlite_store: Store) -> Store:  # tests/conftest.py: one SQLite store
    return sqlite_store


def activities(store: Store, smtp: SmtpServer, channels: list[str] | None = None) -> NotifyActivities:
    email = EmailChannel(settings(smtp), PASSWORD)
    backup = BackupChannel(settings(smtp), PASSWORD)
    people = Directory({p.key: p for p in (ALICE, ERIN, OPS)})
    return NotifyActivities(people, [LogNotifier(store)], lambda name: None,  # type: ignore[arg-type,return-value]
                            None, channels={"email": email, "backup": backup}, deliveries=store.channel_deliveries,
                            settings=NotifySettings(channels=channels or ["email"], operator="ops"),
                            public_url="https://closeloop.example.com")


def notify(acts: NotifyActivities, key: str, target: str = "alice") -> str | None:
    inp = NotifyInput(key=key, kind="reminder", target=target, relative_to=target, postmortem_id=PM, at=AT,
                      context={"title": "Checkout errors", "due_at": AT})
    return ActivityEnvironment().run(acts.notify, inp)


def test_one_delivery_per_key_and_a_resend_after_a_crash_is_the_same_message(store: Store,
                                                                            smtp: SmtpServer) -> None:
    acts = activities(store, smtp)
    assert notify(acts, f"{PM}/reminder/1") == "alice"
    assert notify(acts, f"{PM}/reminder/1") == "alice"  # a retry: recorded as sent, nothing sent again
    [mail] = smtp.messages
    record = store.channel_deliveries.get(f"{PM}/reminder/1", "email")
    assert record is not None and (record.status, record.message_id) == ("sent", mail["Message-ID"])
    assert "https://closeloop.example.com/postmortems/postmortem/pagerduty/PABC123" in \
        mail.get_body(("plain",)).get_content()
    assert [n.channel for n in store.local.notifications(PM)] == ["log"]  # the outbox keeps every notification

    # A crash after SMTP took the message, before it was recorded (the row still says "sending"): SMTP cannot
    # be asked, so it is sent again, as the same message (the same Message-ID: mail clients show it once).
    with store.db.session() as s:
        s.execute(update(ChannelDeliveryRow).values(status="sending", message_id=None))
    notify(acts, f"{PM}/reminder/1")
    assert [m["Message-ID"] for m in smtp.messages] == [mail["Message-ID"]] * 2


def test_a_permanent_failure_falls_back_and_the_operator_is_told_once(store: Store, smtp: SmtpServer) -> None:
    acts = activities(store, smtp)
    assert notify(acts, f"{PM}/reminder/1", target="erin") == "erin"
    assert notify(acts, f"{PM}/reminder/2", target="erin") == "erin"
    to = [m["To"].addresses[0].addr_spec for m in smtp.messages]
    # erin's email bounces for good: the operator hears of it once, and both reminders reach her next channel
    assert to == ["ops@example.com", "erin@backup.example", "erin@backup.example"]
    failed = store.channel_deliveries.get(f"{PM}/reminder/1", "email")
    assert failed is not None and failed.status == "failed" and "550" in (failed.error or "")
    report = smtp.messages[0]
    assert report["Subject"] == "closeloop cannot reach Erin through email"
    assert "bounce-erin@example.com" in report.get_body(("plain",)).get_content()
    outbox = [(n.kind, n.recipient) for n in store.local.notifications(PM)]
    assert outbox == [("reminder", "erin"), ("channel_failed", "ops"), ("reminder", "erin")]

    # A retry of the first reminder sends nothing: the failure and the fallback's delivery are both recorded
    notify(acts, f"{PM}/reminder/1", target="erin")
    assert len(smtp.messages) == 3


def test_a_transient_failure_is_retried_and_never_falls_back(store: Store, smtp: SmtpServer) -> None:
    acts = activities(store, smtp, channels=["email", "backup"])
    later = Person(key="lee", name="Lee", email="later-lee@example.com", handles={"backup": "lee@backup.example"})
    acts.people = Directory({**dict(acts.people), "lee": later})
    with pytest.raises(ApplicationError) as raised:
        notify(acts, f"{PM}/reminder/1", target="lee")
    assert not raised.value.non_retryable and "451" in str(raised.value)
    tried = store.channel_deliveries.get(f"{PM}/reminder/1", "email")
    assert smtp.messages == [] and tried is not None and tried.status == "sending"  # not sent, not failed
    assert store.channel_deliveries.get(f"{PM}/reminder/1", "backup") is None


def test_the_config_names_known_channels(tmp_path: Path) -> None:
    section = ('\n[notifiers.email]\nhost = "smtp.example.com"\nfrom_address = "closeloop@example.com"\n')
    config = make_config(tmp_path, extra=section, notify='channels = ["email"]')
    assert config.notify.channels == ["email"]
    integrations = build(config)
    try:
        assert list(integrations.channels) == ["email"]
        assert integrations.channels["email"].settings.port == 587  # type: ignore[attr-defined]
    finally:
        integrations.store.close()
    with pytest.raises(ConfigError, match=r"notify.channels: unknown channel 'slack' \(configured: email\)"):
        make_config(tmp_path, extra=section, notify='channels = ["slack"]')
    with pytest.raises(ConfigError, match=r"notify.channels: unknown channel 'email' \(configured: none"):
        make_config(tmp_path, notify='channels = ["email"]')


def test_notifications_lists_what_each_channel_did(tmp_path: Path) -> None:
    """`closeloop notifications` shows, per notification, each of the recipient's channels in order: sent,
    failed for good, or not tried yet; and `outbox only` when no channel is configured."""
    from tests.closeloop.cli.test_cli_errors import invoke

    section = '\n[notifiers.email]\nhost = "smtp.example.com"\nfrom_address = "closeloop@example.com"\n'
    config = make_config(tmp_path, extra=section, notify='channels = ["email"]')
    store = Store(config.db_url)
    try:
        for n, key in enumerate(["k-sent", "k-failed", "k-pending"]):
            store.local.record_notification(key=key, kind="reminder", recipient="alice", subject=f"S{n}", body="b",
                                            at=AT, postmortem_id=PM, item_id=None)
        store.channel_deliveries.sent("k-sent", "email", "alice", "alice@example.com", "<m1@example.com>")
        store.channel_deliveries.failed("k-failed", "email", "alice", "alice@example.com", "550 no such user")
    finally:
        store.close()
    listing = invoke(["notifications"], Path(config.source))
    assert listing.exit_code == 0, listing.output
    lines = {next(w for w in line.split() if w[0] == "S" and w[1:].isdigit()): line
             for line in listing.output.splitlines()[1:] if line.strip()}
    assert lines["S0"].rstrip().endswith("email: sent")
    assert lines["S1"].rstrip().endswith("email: failed")
    assert lines["S2"].rstrip().endswith("email: would send")
    as_json = json.loads(invoke(["notifications", "--json"], Path(config.source)).output)
    assert [n["channels"] for n in as_json][:2] == [
        [{"channel": "email", "status": "sent", "address": "alice@example.com", "message_id": "<m1@example.com>",
          "error": None}],
        [{"channel": "email", "status": "failed", "address": "alice@example.com", "message_id": None,
          "error": "550 no such user"}]]

    (tmp_path / "plain").mkdir()
    plain = make_config(tmp_path / "plain")
    store = Store(plain.db_url)
    try:
        store.local.record_notification(key="k", kind="reminder", recipient="alice", subject="S", body="b", at=AT,
                                        postmortem_id=PM, item_id=None)
    finally:
        store.close()
    listing = invoke(["notifications"], Path(plain.source))
    assert listing.output.splitlines()[1].rstrip().endswith("outbox only")


def test_notify_test_sends_through_each_channel_and_says_what_happened(tmp_path: Path, smtp: SmtpServer) -> None:
    from click.testing import CliRunner

    from closeloop.cli.main import cli
    from tests.closeloop.cli.test_cli_errors import CLEAN_ENV

    section = (f'\n[notifiers.email]\nhost = "127.0.0.1"\nport = {smtp.port}\nusername = "{USER}"\n'
               f'from_address = "closeloop@example.com"\nca_file = "{smtp.ca_file}"\n'
               '\n[people.bounce]\nname = "Bea"\nemail = "bounce-bea@example.com"\n')
    config = make_config(tmp_path, extra=section, notify='channels = ["email"]')
    env = {**CLEAN_ENV, "CLOSELOOP_SMTP_PASSWORD": PASSWORD}
    ok = CliRunner().invoke(cli, ["--config", config.source, "notify", "test", "alice"], env=env)
    assert ok.exit_code == 0, ok.output
    [mail] = smtp.messages
    assert ok.output.strip() == f"email: sent to alice@example.com: {mail['Message-ID']}"
    assert mail["Subject"] == "closeloop test message"
    assert len(store_rows(config)) == 0  # a test message is not a notification: nothing in the outbox

    bad = CliRunner().invoke(cli, ["--config", config.source, "notify", "test", "bounce", "--json"], env=env)
    assert bad.exit_code == 1
    [result] = json.loads(bad.output)["channels"]
    assert result["status"] == "failed" and "550" in result["detail"]
    unknown = CliRunner().invoke(cli, ["--config", config.source, "notify", "test", "nobody"], env=env)
    assert unknown.exit_code == 1 and unknown.stderr.strip() == "closeloop: no person 'nobody' in the directory"


def store_rows(config: object) -> list[object]:
    store = Store(config.db_url)  # type: ignore[attr-defined]
    try:
        return list(store.local.notifications())
    finally:
        store.close()


def test_a_person_who_takes_reminders_as_a_digest_gets_one_message_a_day(store: Store, smtp: SmtpServer) -> None:
    acts = activities(store, smtp)
    acts.people = Directory({**dict(acts.people), "alice": ALICE.model_copy(update={"reminders": "digest"})})
    acts.outbox = store.local.notifications_by_key
    notify(acts, f"{PM}/draft/0/reminder/0")
    notify(acts, f"{PM}/review/1/reminder/0")
    inp = NotifyInput(key=f"{PM}/draft/0/requested", kind="draft_requested", target="alice", relative_to="alice",
                      postmortem_id=PM, at=AT, context={"incident_title": "Checkout errors"})
    ActivityEnvironment().run(acts.notify, inp)  # not a reminder: at once
    assert [m["X-Closeloop-Kind"] for m in smtp.messages] == ["draft_requested"]
    assert len(store.local.notifications(PM)) == 3  # the outbox has all three, as always

    from closeloop.activities.notify import ReminderDigestInput
    assert ActivityEnvironment().run(acts.send_reminder_digests, ReminderDigestInput(at=AT)) == 1
    assert [m["X-Closeloop-Kind"] for m in smtp.messages] == ["draft_requested", "reminder_digest"]
    digest = smtp.messages[1]
    assert digest["Subject"] == "2 postmortem reminders for 2026-12-01 09:30 UTC"
    text = digest.get_body(("plain",)).get_content()
    assert text.count("\n- ") == 2 and "https://closeloop.example.com/postmortems/" in text
    # the next run has nothing waiting; a retry of the same day's run sends nothing again
    assert ActivityEnvironment().run(acts.send_reminder_digests, ReminderDigestInput(at=AT)) == 0
    assert len(smtp.messages) == 2
    assert all(r.status == "sent" for r in store.channel_deliveries.of([f"{PM}/draft/0/reminder/0",
                                                                         f"{PM}/review/1/reminder/0"]))
