"""A vendor is one folder and one registration: a notifier plugin written here, with its own settings section
(`[notifiers.memo]`) and secret name, reaches the worker without touching anything else in closeloop. Every
notification of a real lifecycle goes to it as well as to the built-in outbox; its section is validated by
its own model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from pydantic import BaseModel, ConfigDict
from temporalio.testing import WorkflowEnvironment

from closeloop.config import ConfigError
from closeloop.integrations.base import Notification, Notifier
from closeloop.integrations.plugin import PLUGINS, Plugin, PluginContext, register
from closeloop.integrations.registry import build
from closeloop.models import Person, Stage
from tests.temporal_env import eventually, incident, make_config, running_app

SENT: list[tuple[str, str, str]] = []  # (prefix, kind, recipient's e-mail)


class MemoSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prefix: str = "memo"


class MemoNotifier(Notifier):
    name = "memo"

    def __init__(self, settings: MemoSettings, token: str) -> None:
        self.settings, self.token = settings, token
        self.keys: set[str] = set()

    def send(self, notification: Notification, person: Person | None) -> bool:
        if notification.key in self.keys:
            return False
        self.keys.add(notification.key)
        SENT.append((self.settings.prefix, notification.kind, person.email if person else ""))
        return True


class MemoPlugin(Plugin):
    name = "memo"
    settings: ClassVar[dict[str, type[BaseModel]]] = {"notifiers": MemoSettings}
    secrets = ("CLOSELOOP_MEMO_TOKEN",)

    def notifiers(self, ctx: PluginContext) -> list[Notifier]:
        settings = ctx.settings("notifiers", self.name)
        return [MemoNotifier(settings, ctx.secrets.value("CLOSELOOP_MEMO_TOKEN"))] if settings else []


@pytest.fixture
def memo_plugin() -> Iterator[None]:
    register(MemoPlugin)  # the one registration; in a vendor folder, `@register` on the class
    SENT.clear()
    yield
    PLUGINS.pop("memo", None)


MEMO = '\n[notifiers.memo]\nprefix = "ops"\n'


def test_its_section_is_validated_by_its_own_model(memo_plugin: None, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as bad:
        make_config(tmp_path, extra='\n[notifiers.memo]\nprefx = "ops"\n')
    assert "notifiers.memo.prefx: Extra inputs are not permitted" in str(bad.value)
    integrations = build(make_config(tmp_path, extra=MEMO))
    try:
        assert [n.name for n in integrations.notifiers] == ["log", "memo"]
    finally:
        integrations.store.close()


async def test_a_lifecycles_notifications_reach_the_new_notifier(memo_plugin: None, time_env: WorkflowEnvironment,
                                                                 tmp_path: Path) -> None:
    async with running_app(time_env, tmp_path, extra=MEMO) as app:
        inc = incident()
        handle = await app.resolve(inc)
        await app.wait_stage(handle, Stage.drafting)
        await eventually(lambda: ("ops", "draft_requested", "alice@example.com") in SENT)
        outbox = [(kind, who) for kind, who, _key, _at in app.outbox(inc.workflow_id)]
        assert ("draft_requested", "alice") in outbox  # the built-in outbox still gets it, once
        assert sorted(k for _, k, _ in SENT) == sorted(kind for kind, _ in outbox)
