"""The CalDAV plugin's settings: `[calendars.caldav]`. Every default is written here, once. The account's password
comes only from the environment: CLOSELOOP_CALDAV_PASSWORD."""

from __future__ import annotations

import string
from urllib.parse import urljoin, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

ENV_PASSWORD = "CLOSELOOP_CALDAV_PASSWORD"

# The names a `calendar_url` template may use: the person's key, e-mail, and the e-mail's part before the "@".
CALENDAR_URL_FIELDS = ("key", "email", "user")


class CalDAVSettings(BaseModel):
    """`[calendars.caldav]`: a CalDAV server (RFC 4791: Nextcloud, Radicale, SOGo, Fastmail, iCloud, ...) through
    the `caldav` library. Busy times are read from each attendee's calendar; the review meeting is created in
    the organiser's calendar, with one ATTENDEE per person."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="the server's base URL, e.g. https://cloud.example.com/remote.php/dav/; "
                                 "relative calendar URLs below are taken from here")
    username: str = Field(description="the account closeloop signs in as (its password: CLOSELOOP_CALDAV_PASSWORD)")
    organizer: str = Field(description="person key of the meeting's ORGANIZER; unless `organizer_calendar` is "
                                       "set, the events are created in that person's calendar")
    organizer_calendar: str | None = Field(default=None, description="the calendar URL the events are created "
                                           "in (e.g. a shared team calendar); default: the organizer's calendar")
    calendars: dict[str, str] = Field(default_factory=dict, description="person key -> that person's calendar "
                                      "URL (absolute, or relative to `url`); wins over `calendar_url`")
    calendar_url: str | None = Field(default=None, description="template of a person's calendar URL for people "
                                     "not in `calendars`, with {key}, {email} and {user} (the e-mail before the "
                                     "@), e.g. \"calendars/{email}/personal/\"; unset: only `calendars` count")
    timeout: float = Field(default=30.0, gt=0, description="seconds per HTTP request")
    verify_tls: bool = Field(default=True, description="check the server's TLS certificate (false only for a "
                                                       "test server with a self-signed certificate)")

    @field_validator("calendar_url")
    @classmethod
    def _known_fields(cls, value: str | None) -> str | None:
        if value is not None:
            names = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
            unknown = sorted(names - set(CALENDAR_URL_FIELDS))
            if unknown:
                raise ValueError(f"unknown field {{{unknown[0]}}} (known: {', '.join(CALENDAR_URL_FIELDS)})")
        return value

    @field_validator("url")
    @classmethod
    def _no_credentials(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http(s) URL")
        if parts.password is not None:
            raise ValueError(f"must not hold a password (it comes from {ENV_PASSWORD})")
        return value

    def absolute(self, url: str) -> str:
        """A calendar URL made absolute against `url`, ending with "/" (a collection)."""
        base = self.url if self.url.endswith("/") else self.url + "/"
        joined = urljoin(base, url)
        return joined if joined.endswith("/") else joined + "/"

    def calendar_for(self, key: str, email: str) -> str | None:
        """The calendar URL of a person, or None when the config gives them none."""
        if key in self.calendars:
            return self.absolute(self.calendars[key])
        if self.calendar_url is None:
            return None
        return self.absolute(self.calendar_url.format(key=key, email=email, user=email.partition("@")[0]))


def without_credentials(url: str) -> str:
    """`url` with any user:password@ removed, for messages."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=host))
