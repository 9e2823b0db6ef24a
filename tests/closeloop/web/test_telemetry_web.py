"""The web app's /metrics, /healthz and /readyz: a scrape after real webhook traffic, asserting on named series;
the metrics token; readiness that fails while Temporal or the database cannot be reached."""

from __future__ import annotations

from typing import Any

import httpx
from prometheus_client import REGISTRY

from closeloop.config import load_config
from closeloop.models import Stage
from closeloop.secrets import Secrets
from closeloop.store.store import Store
from closeloop.web.app import create_app
from tests.closeloop.web.conftest import ALL_SECRETS, TOKENS, LifespanClient, Web
from tests.metrics_text import series as samples
from tests.metrics_text import value
from tests.temporal_env import App

METRICS_TOKEN = "metrics-token-0123456789"


async def test_a_scrape_after_traffic_has_the_named_series(web: Web, app: App) -> None:
    # the counters are the process's (other tests ran before): read them first; the first scrape must come after
    # the traffic, as the gauges are read from the store at most every 15 s
    before = REGISTRY.get_sample_value("closeloop_webhook_seconds_count", {"kind": "api"}) or 0.0
    # two incidents through the API: each answer is timed
    for n in (1, 2):
        response = await web.api("/api/incidents", {"external_id": f"MET-{n}", "title": "Checkout is down",
                                                      "severity": "SEV2", "services": ["checkout"]})
        assert response.status_code in (200, 201, 202), response.text
    for n in (1, 2):
        await app.wait_stage(app.client.get_workflow_handle(f"postmortem/api/MET-{n}"), Stage.drafting)
    response = await web.http.get("/metrics")  # from loopback (the ASGI client's address), no token configured
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    after = samples(response.text)
    count = "closeloop_webhook_seconds_count"
    assert value(after, count, kind="api") - before == 2
    assert value(after, "closeloop_webhook_seconds_bucket", kind="api", le="+Inf") >= 2
    # the lifecycle gauges, from the store: both lifecycles are drafting
    assert value(after, "closeloop_lifecycles", stage="drafting") == 2
    assert ("closeloop_stalled_postmortems", ()) in after and ("closeloop_overdue_items", ()) in after
    # the worker (in this process) recorded notifications: the counter is the process's
    assert value(after, "closeloop_notifications_total", channel="log", outcome="recorded") >= 2
    # and the process's own
    assert any(name == "process_resident_memory_bytes" for name, _ in after)


async def test_metrics_need_the_token_when_one_is_set(app: App) -> None:
    config = load_config(app.config.source)
    secrets = Secrets({"CLOSELOOP_API_TOKENS": ",".join(TOKENS), "CLOSELOOP_METRICS_TOKEN": METRICS_TOKEN})

    async def client_factory() -> Any:
        return app.client

    web_app = create_app(config, client_factory, secrets=secrets, store=app.store)
    async with LifespanClient(web_app) as http:
        assert (await http.get("/metrics")).status_code == 401  # loopback is not enough once a token is set
        wrong = await http.get("/metrics", headers={"Authorization": "Bearer metrics-token-wrong"})
        assert wrong.status_code == 401 and "CLOSELOOP_METRICS_TOKEN" in wrong.json()["error"]
        assert (await http.get("/metrics", headers={"Authorization": f"Basic {METRICS_TOKEN}"})).status_code == 401
        api = await http.get("/metrics", headers={"Authorization": f"Bearer {TOKENS[0]}"})
        assert api.status_code == 401  # an API token is not a metrics token
        ok = await http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert ok.status_code == 200 and "closeloop_lifecycles" in ok.text
    # without a token, only loopback
    web_app = create_app(config, client_factory, secrets=ALL_SECRETS, store=app.store)
    async with LifespanClient(web_app) as http:
        far = LifespanClient(web_app)
        far._transport = httpx.ASGITransport(app=web_app, client=("203.0.113.9", 4000))  # type: ignore[attr-defined]
        assert (await far.get("/metrics")).status_code == 401
        assert (await http.get("/metrics")).status_code == 200


async def test_readiness_fails_while_temporal_or_the_database_is_unreachable(app: App) -> None:
    config = load_config(app.config.source)

    async def temporal_up() -> Any:
        return app.client

    async def temporal_down() -> Any:
        raise ConnectionError("connection refused")

    ready = create_app(config, temporal_up, secrets=ALL_SECRETS, store=app.store)
    async with LifespanClient(ready) as http:
        assert (await http.get("/healthz")).json() == {"ok": True}
        response = await http.get("/readyz")
        assert response.status_code == 200 and response.json() == {"ready": True, "problems": []}

    no_temporal = create_app(config, temporal_down, secrets=ALL_SECRETS, store=app.store)
    async with LifespanClient(no_temporal) as http:
        response = await http.get("/readyz")
        assert response.status_code == 503 and response.json()["problems"] == ["temporal: unreachable"]
        assert (await http.get("/healthz")).status_code == 200  # alive all the same: not restarted for it

    closed = "postgresql+psycopg://postgres@127.0.0.1:1/closeloop?connect_timeout=1"  # nothing listens on port 1
    no_database_config = config.model_copy(update={"store": config.store.model_copy(update={"url": closed})})
    no_database = create_app(no_database_config, temporal_up, secrets=ALL_SECRETS, open_store=Store)
    async with LifespanClient(no_database) as http:
        response = await http.get("/readyz")
        assert response.status_code == 503
        [problem] = response.json()["problems"]
        assert problem.startswith("database: unreachable (")
