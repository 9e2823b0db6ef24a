"""What the chat-webhook plugins (teams, googlechat, mattermost, discord, webhook) share in their settings: the
`[notifiers.<name>]` fields every one has, the webhook table read from the environment, and the checks that
keep webhook URLs out of the config file. Loading it costs no HTTP client (closeloop.integrations.chat does the
sending).

A chat webhook posts to a room (a channel of the team), never to a person's DM, so a person's address on such
a channel is the *name* of a webhook, that is of a room:
- their handle for the channel (`[people.erin] handles = { teams = "sre" }`), else
- the section's `default_webhook`, else they are not reached on it.

The URLs behind the names are secrets (each embeds the token that lets anyone post): they come only from the
environment, `CLOSELOOP_<SERVICE>_WEBHOOKS="platform=https://...,sre=https://..."` (a bare URL is named
`default`), never from the config file or the directory, and errors and logs name the webhook, never its URL.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from closeloop.config import Config
    from closeloop.secrets import Secrets

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
URL = re.compile(r"^https?://[^\s,]+$", re.IGNORECASE)
LOOKS_LIKE_URL = re.compile(r"(^|\W)(https?:)?//|^[a-z][a-z0-9+.-]*:", re.IGNORECASE)
DEFAULT_NAME = "default"


class ChatWebhookSettings(BaseModel):
    """`[notifiers.<service>]` of a chat webhook: which room a person without a handle is reached in, and the
    HTTP timeout. The webhook URLs come only from `env_webhooks`."""

    model_config = ConfigDict(extra="forbid")
    env_webhooks: ClassVar[str]  # CLOSELOOP_<SERVICE>_WEBHOOKS
    section: ClassVar[str]  # notifiers.<service>

    default_webhook: str | None = Field(default=None, description="the webhook (room) of people without a handle "
                                                                  "for this channel; none: they are not reached on it")
    timeout: float = Field(default=15.0, gt=0, le=120, description="seconds per post")

    @model_validator(mode="before")
    @classmethod
    def _no_urls(cls, data: Any) -> Any:
        """A webhook URL in the config file is refused, with where it belongs instead."""
        if isinstance(data, dict):
            for key in ("webhooks", "url", "webhook_url", "urls"):
                if key in data:
                    raise ValueError(f"{key}: webhook URLs are secrets (they embed the token): set them in "
                                     f"{cls.env_webhooks} as name=URL pairs, never in the config file")
            default = data.get("default_webhook")
            if isinstance(default, str) and LOOKS_LIKE_URL.search(default):
                raise ValueError(f"default_webhook: a webhook URL is a secret (it embeds the token): set it in "
                                 f"{cls.env_webhooks} as name=URL and give the name here")
        return data

    @model_validator(mode="after")
    def _name(self) -> ChatWebhookSettings:
        if self.default_webhook is not None and not NAME.match(self.default_webhook):
            raise ValueError(f"default_webhook: {self.default_webhook!r} is not a webhook name (letters, digits, "
                             "_ . -)")
        return self


def parse_webhooks(env_name: str, values: tuple[str, ...]) -> dict[str, str]:
    """The `name=URL` entries of `env_name` (already split at commas) as name -> URL; a bare URL is named
    `default`. ValueError naming the entry's position, never its text, for one that is neither."""
    table: dict[str, str] = {}
    for i, entry in enumerate(values, 1):
        name, sep, url = entry.partition("=")
        if URL.match(entry):  # a bare URL (whose query may hold '=')
            name, url = DEFAULT_NAME, entry
        elif not sep:
            raise ValueError(f"{env_name}: entry {i} is neither name=URL nor a URL")
        name, url = name.strip(), url.strip()
        if not NAME.match(name):
            raise ValueError(f"{env_name}: entry {i}: the name is not letters, digits, _ . - (at most 64)")
        if not URL.match(url):
            raise ValueError(f"{env_name}: entry {i} ({name}): the value is not an http(s) URL")
        if name in table:
            raise ValueError(f"{env_name}: the name {name!r} is given twice")
        table[name] = url
    return table


def webhooks_from(secrets: Secrets, env_name: str) -> dict[str, str]:
    from closeloop.config import ConfigError

    try:
        return parse_webhooks(env_name, secrets.values(env_name))
    except ValueError as e:
        raise ConfigError(str(e)) from None


def handle_problems(config: Config, service: str) -> list[str]:
    """People whose handle for `service` is a URL rather than a webhook's name (the directory is configuration,
    often committed: the URL is a secret)."""
    try:
        people = config.people_directory()
    except Exception:  # noqa: BLE001 - the directory's own problem is reported by config.check
        return []
    settings = config.plugin_settings.get(("notifiers", service))
    env = getattr(type(settings), "env_webhooks", f"CLOSELOOP_{service.upper()}_WEBHOOKS")
    found = []
    for person in people.values():
        handle = person.handles.get(service)
        if handle is None:
            continue
        if LOOKS_LIKE_URL.search(handle):
            found.append(f"people.{person.key}.handles.{service}: a webhook URL is a secret: put it in {env} "
                         "(name=URL) and give the name here")
        elif not NAME.match(handle):
            found.append(f"people.{person.key}.handles.{service}: {handle!r} is not a webhook name")
    return found
