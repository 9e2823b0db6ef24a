"""The email plugin's settings: `[notifiers.email]`. The SMTP password comes only from CLOSELOOP_SMTP_PASSWORD."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ENV_PASSWORD = "CLOSELOOP_SMTP_PASSWORD"


class EmailSettings(BaseModel):
    """`[notifiers.email]`: mail through an SMTP server (a relay such as Postfix, or a provider's SMTP
    endpoint: SES, SendGrid, Mailgun, Google Workspace)."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(description="the SMTP server")
    port: int | None = Field(default=None, ge=1, le=65535,
                             description="default: 587 with starttls, 465 with tls, 25 with none")
    security: Literal["starttls", "tls", "none"] = Field(
        default="starttls", description="starttls (upgrade a plain connection), tls (implicit TLS, \"SMTPS\"), "
                                        "or none (only for a relay on the same host or network)")
    username: str | None = Field(default=None, description="log in as this user (the password from "
                                                           f"{ENV_PASSWORD}); none: no authentication")
    from_address: str = Field(pattern=r"^[^@\s<>]+@[^@\s<>]+$", description="the sender, e.g. closeloop@example.com")
    from_name: str = Field(default="closeloop", max_length=100)
    reply_to: str | None = Field(default=None, pattern=r"^[^@\s<>]+@[^@\s<>]+$")
    list_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9.-]+$",
                                description="the List-Id (people filter on it); default: postmortems.<sender's "
                                            "domain>")
    ca_file: str | None = Field(default=None, description="a CA bundle to verify the server with (default: the "
                                                          "system's)")
    verify: bool = Field(default=True, description="verify the server's certificate and name")
    timeout: float = Field(default=30.0, gt=0, le=300)
    calendar_invites: bool = Field(
        default=False, description="e-mail an iCalendar invitation (METHOD:REQUEST, and METHOD:CANCEL when it is "
                                   "cancelled) for the review meeting to the attendees the booking calendar cannot "
                                   "reach: everyone with the built-in calendar, the people without a calendar URL "
                                   "with CalDAV")

    @model_validator(mode="after")
    def _port(self) -> EmailSettings:
        if self.port is None:
            self.port = {"starttls": 587, "tls": 465, "none": 25}[self.security]
        return self

    @property
    def domain(self) -> str:
        return self.from_address.rsplit("@", 1)[1]
