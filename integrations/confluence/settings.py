"""The Confluence plugin's settings: `[publishers.confluence]`. Every default is written here, once. The API
token comes only from the environment: CLOSELOOP_CONFLUENCE_API_TOKEN."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

ENV_API_TOKEN = "CLOSELOOP_CONFLUENCE_API_TOKEN"


class ConfluenceSettings(BaseModel):
    """`[publishers.confluence]`: the postmortem as a page of a Confluence Cloud space (REST API v2). The account is
    `email` with the API token of CLOSELOOP_CONFLUENCE_API_TOKEN (basic auth)."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(pattern=r"^https?://", description="the site's wiki URL, e.g. https://acme.atlassian.net/wiki")
    space_id: str | None = Field(default=None, description="the space's id; or space_key")
    space_key: str | None = Field(default=None, description="the space's key, e.g. ENG (its id is looked up once)")
    parent_id: str | None = Field(default=None, description="the page the postmortems go under (default: the "
                                  "space's homepage)")
    email: str = Field(min_length=1, description="the Atlassian account the API token belongs to")
    timeout: float = Field(default=30.0, gt=0, description="seconds per HTTP request")

    @model_validator(mode="after")
    def _one_space(self) -> ConfluenceSettings:
        if bool(self.space_id) == bool(self.space_key):
            raise ValueError("give exactly one of space_id and space_key")
        return self
