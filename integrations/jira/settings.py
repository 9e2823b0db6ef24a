"""The Jira plugin's settings: `[trackers.jira]` (and `[trackers.jira.services.NAME]` overrides) and
`[timeline.jira]`. Every default is written here, once. The account (e-mail and API token) comes only from
the environment: CLOSELOOP_JIRA_EMAIL and CLOSELOOP_JIRA_API_TOKEN."""

from __future__ import annotations

import string
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from closeloop.integrations.base import TICKET_TEMPLATE_FIELDS

ENV_EMAIL = "CLOSELOOP_JIRA_EMAIL"
ENV_API_TOKEN = "CLOSELOOP_JIRA_API_TOKEN"
ENV_WEBHOOK_SECRETS = "CLOSELOOP_JIRA_WEBHOOK_SECRET"  # the ticket webhook's signing secrets, comma-separated


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JiraServiceSettings(_Strict):
    """`[trackers.jira.services.NAME]`: what differs for one service's action items; unset keys inherit
    `[trackers.jira]`."""

    project: str | None = None
    issue_type: str | None = None
    priorities: dict[str, str] | None = None
    labels: list[str] | None = None
    components: list[str] | None = None
    due_date_field: str | None = None
    custom_fields: dict[str, Any] | None = None
    done_transition: str | None = None
    reopen_transition: str | None = None
    wont_do_resolutions: list[str] | None = None


class JiraSettings(_Strict):
    """`[trackers.jira]`: Jira Cloud through the `jira` library. The account's e-mail and API token come only
    from the environment: CLOSELOOP_JIRA_EMAIL and CLOSELOOP_JIRA_API_TOKEN."""

    url: str
    project: str
    issue_type: str = "Task"
    priorities: dict[str, str] = Field(default_factory=lambda: {"P1": "Highest", "P2": "High", "P3": "Medium",
                                                                "P4": "Low"})
    labels: list[str] = Field(default_factory=lambda: ["closeloop"])
    due_date_field: str = "duedate"
    done_transition: str = "Done"
    wont_do_resolutions: list[str] = Field(default_factory=lambda: ["Won't Do", "Duplicate", "Cannot Reproduce"])
    timeout: float = 30.0
    components: list[str] = Field(default_factory=list, description="component names set on every issue")
    custom_fields: dict[str, Any] = Field(default_factory=dict, description="field id -> value; strings may use "
                                          "{item_id}, {service}, {severity}, ... (TICKET_TEMPLATE_FIELDS)")
    reopen_transition: str = "To Do"
    services: dict[str, JiraServiceSettings] = Field(default_factory=dict,
                                                     description="per-service overrides of the keys above")

    @classmethod
    def default_wont_do_resolutions(cls) -> list[str]:
        """The resolutions that mean won't do when the config has no `[trackers.jira]` (the ticket webhook)."""
        default: list[str] = cls.model_fields["wont_do_resolutions"].get_default(call_default_factory=True)
        return default


class JiraTimelineSettings(_Strict):
    """`[timeline.jira]`: Jira issues that mention the incident's id or carry `label` ("{external_id}" and
    "{source}" are filled in). `url` defaults to [trackers.jira]; the account is CLOSELOOP_JIRA_EMAIL and
    CLOSELOOP_JIRA_API_TOKEN."""

    url: str | None = None
    project: str | None = None
    label: str | None = "incident-{external_id}"
    mention: bool = Field(default=True, description="also issues whose text mentions the incident id")
    page_size: int = Field(default=50, ge=1, le=100)
    timeout: float = Field(default=30.0, gt=0)


def _template_names(value: Any) -> list[str]:
    """The {names} a templated value uses (strings anywhere inside lists and tables); '?' when malformed."""
    if isinstance(value, str):
        try:
            return [name for _, name, _, _ in string.Formatter().parse(value) if name is not None]
        except ValueError:
            return ["?"]
    if isinstance(value, dict):
        return [n for v in value.values() for n in _template_names(v)]
    if isinstance(value, list):
        return [n for v in value for n in _template_names(v)]
    return []


def template_problems(settings: JiraSettings) -> list[str]:
    """Unknown {names} in the custom fields of `[trackers.jira]` and its services, one line each."""
    problems: list[str] = []
    for where, fields in [("trackers.jira", settings.custom_fields),
                          *((f"trackers.jira.services.{name}", s.custom_fields or {})
                            for name, s in settings.services.items())]:
        for fid, value in fields.items():
            bad = [n for n in _template_names(value) if n not in TICKET_TEMPLATE_FIELDS]
            if bad:
                problems.append(f"{where}.custom_fields.{fid}: unknown template field {{{bad[0]}}} (known: "
                                f"{', '.join(TICKET_TEMPLATE_FIELDS)})")
    return problems
