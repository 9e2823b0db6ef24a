"""A database outage answers 503 with Retry-After and a JSON reason on every route (the notes endpoint answered
500 while the ticket webhooks answered 503), and every other 503 (Temporal unreachable) says when to retry too.
The store is the real one, on a PostgreSQL URL whose port nothing listens on."""

from __future__ import annotations

from pathlib import Path

import httpx

from closeloop.store.store import Store
from closeloop.web.app import create_app
from tests.closeloop.web.conftest import TOKENS, secrets_of
from tests.temporal_env import make_config

CLOSED_PG = "postgresql+psycopg://postgres@127.0.0.1:1/closeloop"
AUTH = {"Authorization": f"Bearer {TOKENS[0]}"}


async def _no_temporal() -> object:
    raise RuntimeError("Failed client connect: connection refused")


async def test_a_database_outage_is_503_with_retry_after(tmp_path: Path) -> None:
    config = make_config(tmp_path, db_url=CLOSED_PG)
    web_app = create_app(config, _no_temporal, secrets=secrets_of(api_tokens=TOKENS), open_store=Store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=web_app), base_url="http://t") as http:
        for _ in range(2):  # and again: the outage is not remembered, the next request tries the database again
            r = await http.post("/api/incidents/api/INC-1/notes", json={"text": "rolled back"}, headers=AUTH)
            assert r.status_code == 503, r.text
            assert r.json() == {"error": "the database is unavailable; try again later"}
            assert r.headers["Retry-After"].isdigit()
            assert "127.0.0.1" not in r.text and "psycopg" not in r.text  # the driver's words stay in the log


async def test_temporal_unreachable_503_says_when_to_retry(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    web_app = create_app(config, _no_temporal, secrets=secrets_of(api_tokens=TOKENS), open_store=Store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=web_app), base_url="http://t") as http:
        # A new incident goes to the inbox without Temporal (202); asking about one closeloop has never seen
        # needs Temporal's answer (a lifecycle from before the inbox): 503, with when to ask again.
        r = await http.post("/api/incidents", json={"source": "api", "external_id": "INC-2", "title": "x"},
                            headers=AUTH)
        assert r.status_code == 202, r.text
        r = await http.post("/api/incidents/api/INC-3/resolve", json={}, headers=AUTH)
    assert r.status_code == 503 and r.headers["Retry-After"].isdigit(), r.text
    assert r.json() == {"error": "Temporal is unreachable; try again later"}
