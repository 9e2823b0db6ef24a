"""The Slack plugin's settings: `[timeline.slack]` and `[notifiers.slack]`. The bot token comes only from
CLOSELOOP_SLACK_TOKEN, the signing secret of the interactivity endpoint only from CLOSELOOP_SLACK_SIGNING_SECRET."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field

from closeloop.durations import Duration

ENV_TOKEN = "CLOSELOOP_SLACK_TOKEN"
ENV_SIGNING_SECRET = "CLOSELOOP_SLACK_SIGNING_SECRET"  # the app's signing secret: the interactivity endpoint's
DEFAULT_REACTIONS = {"rotating_light": "detection", "eyes": "acknowledge", "adhesive_bandage": "mitigation",
                     "white_check_mark": "resolution"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SlackTimelineSettings(_Strict):
    """`[timeline.slack]`: the incident channel's history (`conversations.history`). The channel is the
    service's (`service_channels`), else `channel`, else the incident link that is a Slack channel. The bot
    token comes only from CLOSELOOP_SLACK_TOKEN."""

    base_url: str = "https://slack.com/api/"
    channel: str | None = None
    service_channels: dict[str, str] = Field(default_factory=dict, description="service -> channel id")
    reactions: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_REACTIONS),
                                      description="reaction name -> timeline kind (a key moment)")
    slack_before: Duration = timedelta(minutes=30)
    page_size: int = Field(default=200, ge=1, le=999)
    max_pages: int = Field(default=50, ge=1)
    timeout: float = Field(default=30.0, gt=0)


class SlackNotifierSettings(_Strict):
    """`[notifiers.slack]`: notifications as direct messages from the closeloop app's bot (chat.postMessage), to
    the person's Slack user id (the directory's `slack` handle, else looked up by their email). The bot token
    comes only from CLOSELOOP_SLACK_TOKEN and is never logged."""

    base_url: str = Field(default="https://slack.com/api/", description="the Web API's base URL")
    timeout: float = Field(default=30.0, gt=0, le=300, description="seconds per Web API call")
    announce_channel: str | None = Field(default=None, pattern=r"^[CG][A-Z0-9]{2,}$",
                                         description="channel id (C…/G…) that announcements are posted to")
    lookup_by_email: bool = Field(default=True, description="find a person without a `slack` handle by their "
                                                            "email (users.lookupByEmail, scope users:read.email)")
    cache_ttl: Duration = Field(default=timedelta(hours=1),
                                description="how long an email -> user id and a user -> DM channel are kept")
    miss_ttl: Duration = Field(default=timedelta(minutes=10),
                               description="how long an email Slack does not know is kept as unknown")
    find_margin: Duration = Field(default=timedelta(minutes=10),
                                  description="after a crash, the DM history is searched from the "
                                              "notification's time minus this")
    find_pages: int = Field(default=3, ge=1, le=20, description="history pages (200 messages) searched at most")
