"""The Google Calendar plugin's settings: `[calendars.google]`. Every default is written here, once. The service
account's key comes only from the environment: CLOSELOOP_GOOGLE_SERVICE_ACCOUNT_JSON (the JSON key file's text)
or CLOSELOOP_GOOGLE_SERVICE_ACCOUNT_FILE (its path)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

ENV_SERVICE_ACCOUNT_JSON = "CLOSELOOP_GOOGLE_SERVICE_ACCOUNT_JSON"
ENV_SERVICE_ACCOUNT_FILE = "CLOSELOOP_GOOGLE_SERVICE_ACCOUNT_FILE"

# The Calendar API v3's base URL (its discovery document's rootUrl + servicePath) and Google's OAuth 2.0 token
# endpoint, where the service account trades its signed JWT for an access token.
DEFAULT_API_ENDPOINT = "https://www.googleapis.com/calendar/v3/"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
SCOPE = "https://www.googleapis.com/auth/calendar"


class GoogleCalendarSettings(BaseModel):
    """`[calendars.google]`: free/busy and the review meeting in Google Calendar, as a service account (with
    domain-wide delegation when `subject` is set)."""

    model_config = ConfigDict(extra="forbid")

    organizer_calendar: str = Field(min_length=1, description="the calendar id the meetings are created in, e.g. "
                                                              "the organiser's e-mail address")
    subject: str | None = Field(default=None, description="the user the service account acts as (domain-wide "
                                                          "delegation); unset: the service account itself")
    api_endpoint: str = Field(default=DEFAULT_API_ENDPOINT, min_length=1,
                              description="the Calendar API's base URL, ending in /calendar/v3/")
    token_uri: str = Field(default=DEFAULT_TOKEN_URI, min_length=1, description="the OAuth 2.0 token endpoint")
    timeout: float = Field(default=30.0, gt=0, description="seconds for one HTTP request")
