"""Delivery through worker SIGKILLs: lifecycles on the real dev server chase people on Slack (the stand-in) and
by email (a real SMTP server), while `python worker.py` is SIGKILLed at least 5 times, each time while a message
is being sent (a channel delivery recorded as `sending`). Both stand-ins answer late on purpose (the message is
already delivered when the kill lands), which is the worst case: delivered, never recorded. Afterwards every
Slack message exists once (the retry found it by its metadata instead of posting again) and every email the
store says was sent is in the mailbox (a resend is the same message: the same Message-ID)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from closeloop.client import start_postmortem
from closeloop.standins.slack import SlackStandin
from tests.devserver.conftest import dev_app_with
from tests.standins.fixtures import SLACK_SPEC, validated
from tests.standins.smtp import SmtpServer
from tests.temporal_env import incident

pytestmark = pytest.mark.devserver

TOKEN = "xoxb-kill-test"
KILLS = 6
LIFECYCLES = 3  # and 2 more after each kill: they send at once, while the killed sends wait out 30 s


class SlowSlack(SlackStandin):
    """Slack, answering chat.postMessage 0.4 s after it stored the message: a kill then lands between Slack
    taking the message and closeloop recording that it did."""

    def h_post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        answer = super().h_post_message(params)
        time.sleep(0.4)
        return answer


def slack_keys(slack: SlackStandin) -> Counter[str]:
    """How many messages carry each notification key, over every conversation."""
    keys: Counter[str] = Counter()
    for channel in list(slack.channels):
        for message in slack.messages(channel):
            payload = (message.get("metadata") or {}).get("event_payload") or {}
            if payload.get("key"):
                keys[payload["key"]] += 1
    return keys


async def test_no_duplicate_slack_message_and_every_email_through_sigkills(dev_env: WorkflowEnvironment,
                                                                          tmp_path: Path) -> None:
    with validated(SlowSlack, SLACK_SPEC, token=TOKEN) as slack, \
            SmtpServer(tmp_path, security="none", auth=False, delay=0.4) as smtp:
        slack.add_user("U0ALICE", "alice@example.com")
        slack.add_user("U0ERIN", "erin@example.com")  # bob, carol and dave are not on Slack: email
        config = (f'channels = ["slack", "email"]\n'  # into fast_config_text's last table, [notify]
                  f'\n[notifiers.slack]\nbase_url = "{slack.base_url}"\ntimeout = 10\n'
                  f'\n[notifiers.email]\nhost = "127.0.0.1"\nport = {smtp.port}\nsecurity = "none"\n'
                  f'from_address = "closeloop@example.com"\ntimeout = 10\n')
        with dev_app_with(dev_env, tmp_path, extra_config=config, extra_env={"CLOSELOOP_SLACK_TOKEN": TOKEN}) as app:
            deliveries = app.store.channel_deliveries

            def in_flight() -> list[Any]:
                with app.store.db.session() as s:
                    from sqlalchemy import select

                    from closeloop.store.tables import ChannelDeliveryRow
                    return list(s.scalars(select(ChannelDeliveryRow).where(ChannelDeliveryRow.status == "sending")))

            app.workers.start()
            app.workers.wait_ready()
            started = 0

            async def more(n: int) -> None:  # fresh lifecycles send at once; the killed ones wait out 30 s
                nonlocal started
                for _ in range(n):
                    inc = incident(f"KILL-{started}")
                    started += 1
                    assert (await start_postmortem(app.env.client, app.task_queue, inc)).new

            await more(LIFECYCLES)
            kills: list[tuple[str, str]] = []  # (channel, key) being sent when the worker died
            cut_off: set[tuple[str, str]] = set()  # every send in flight at a kill
            deadline = time.monotonic() + 150
            since = datetime.now(UTC)
            while len(kills) < KILLS:
                assert time.monotonic() < deadline, f"only {len(kills)} kills during sends\n" + \
                    app.workers.diagnostics()
                # a send this worker began (a killed worker's sends stay "sending" until their retry); alternate
                # channels so both are killed mid-send
                counts = Counter(channel for channel, _ in kills)
                wanted = {"slack", "email"} if len(kills) < KILLS - 2 else \
                    {c for c in ("slack", "email") if counts[c] < 2} or {"slack", "email"}
                sending = [r for r in in_flight() if r.updated_at > since and r.channel in wanted]
                if not sending:
                    await asyncio.sleep(0.01)
                    continue
                await asyncio.sleep(0.2)  # into the stand-ins' 0.4 s: delivered, not yet answered
                app.workers.kill(f"while sending {sending[0].channel} {sending[0].key}")
                cut_off |= {(r.channel, r.key) for r in in_flight()}
                kills.append((sending[0].channel, sending[0].key))
                app.workers.start()
                app.workers.wait_ready()
                since = datetime.now(UTC)
                await more(2)
            # The killed sends are retried once their activities time out (30 s) and back off (5 s).
            settle = time.monotonic() + 120
            while in_flight() and time.monotonic() < settle:
                await asyncio.sleep(0.5)
            worker = app.workers.current
            assert worker is not None
            worker.terminate()  # graceful: in-flight activities finish
            worker.wait(timeout=30)

            assert len(kills) >= 5 and {channel for channel, _ in kills} == {"slack", "email"}, kills
            assert in_flight() == [], "a delivery never finished after the kills"
            with app.store.db.session() as s:
                from sqlalchemy import select

                from closeloop.store.tables import ChannelDeliveryRow
                rows = list(s.scalars(select(ChannelDeliveryRow)))
            sent = {(r.channel, r.key): r for r in rows if r.status == "sent"}
            assert all(r.status == "sent" for r in rows), [(r.channel, r.key, r.status, r.error) for r in rows]

            keys = slack_keys(slack)
            duplicates = {k: n for k, n in keys.items() if n > 1}
            assert duplicates == {}, duplicates
            slack_sent = {key for channel, key in sent if channel == "slack"}
            assert slack_sent == set(keys), (slack_sent ^ set(keys))
            for channel, key in kills:
                if channel == "slack":
                    assert keys[key] == 1, key  # killed mid-send: found after, never posted twice

            mailbox = Counter(str(m["Message-ID"]) for m in smtp.messages)
            email_sent = {r.message_id for (channel, _), r in sent.items() if channel == "email"}
            assert email_sent and email_sent <= set(mailbox), email_sent - set(mailbox)
            resent = {mid: n for mid, n in mailbox.items() if n > 1}
            # A resend after a kill mid-send is the same message (same Message-ID): mail clients show it once.
            assert set(resent) <= email_sent
            cut_emails = {sent[("email", key)].message_id for channel, key in cut_off if channel == "email"}
            assert set(resent) <= cut_emails  # only what was in flight at a kill is ever sent twice

            outbox = app.store.local.notifications()
            people = {"alice", "bob", "erin", "carol", "dave"}
            unreached = [n.key for n in outbox if n.recipient in people
                         and not any((c, n.key) in sent for c in ("slack", "email"))]
            assert unreached == [], unreached
            print(f"kills during sends: {Counter(c for c, _ in kills)}; notifications {len(outbox)}; "
                  f"Slack messages {sum(keys.values())} (0 duplicates); emails {len(smtp.messages)} "
                  f"({sum(n - 1 for n in resent.values())} resent with the same Message-ID)")
            assert deliveries is app.store.channel_deliveries
