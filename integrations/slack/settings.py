"""The Slack plugin's settings: `[timeline.slack]`. The bot token comes only from CLOSELOOP_SLACK_TOKEN."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field

from closeloop.durations import Duration

ENV_TOKEN = "CLOSELOOP_SLACK_TOKEN"
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
