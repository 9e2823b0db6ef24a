"""Signing in with OpenID Connect, over HTTP: the web app's authlib client against the provider stand-in
(closeloop/standins/oidc.py, a real server on 127.0.0.1 with keys of its own), redirects followed by hand.
No workflow is needed: these pages are about who is who."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from closeloop.integrations.registry import load
from closeloop.secrets import Secrets
from closeloop.standins.oidc import ClientReg, OidcProvider
from closeloop.store.store import Store
from closeloop.web.app import create_app
from tests.closeloop.web.conftest import ALL_SECRETS, LifespanClient
from tests.temporal_env import TEST_CONFIG

BASE = "https://closeloop.test"
CALLBACK = f"{BASE}/auth/callback"
CLIENT_SECRET = "signin-test-secret"
SESSION_SECRET = "signin-test-session-secret"


@pytest.fixture
def idp() -> Iterator[OidcProvider]:
    with OidcProvider(clients={"closeloop": ClientReg(secret=CLIENT_SECRET, redirect_uris=[CALLBACK])},
                      users={"alice@example.com": "Alice", "stranger@example.com": "Stranger"}) as provider:
        yield provider


def web_for(tmp_path: Path, idp: OidcProvider, sqlite_store: Store, client_secret: str = CLIENT_SECRET,
            auth: str = "") -> Any:
    path = tmp_path / "closeloop.toml"
    path.write_text(f'data_dir = "{tmp_path / "data"}"\n' + TEST_CONFIG
                    + f'\n[web.auth]\nissuer = "{idp.issuer}"\nclient_id = "closeloop"\n{auth}\n')
    config = load(path)
    secrets = Secrets({**ALL_SECRETS._env, "CLOSELOOP_OIDC_CLIENT_SECRET": client_secret,  # noqa: SLF001
                       "CLOSELOOP_SESSION_SECRET": SESSION_SECRET})

    async def no_temporal() -> Any:
        raise RuntimeError("these tests need no workflow")

    return create_app(config, no_temporal, secrets=secrets, store=sqlite_store)


def session_of(http: httpx.AsyncClient) -> dict[str, Any]:
    """The session cookie's payload (signed, not encrypted: base64 JSON before the signature)."""
    value = http.cookies.get("closeloop_session")
    assert value, "no session cookie"
    payload = value.split(".")[0]
    return dict(json.loads(base64.b64decode(payload + "=" * (-len(payload) % 4))))


async def sign_in(http: LifespanClient, idp: OidcProvider, email: str, next_path: str = "/my") -> httpx.Response:
    """Start at /login, let the provider answer for `email`, and return the callback's response."""
    start = await http.get("/login", params={"next": next_path})
    assert start.status_code == 302, start.text
    to_provider = start.headers["location"]
    assert to_provider.startswith(idp.issuer + "/authorize?")
    query = parse_qs(urlsplit(to_provider).query)
    assert query["code_challenge_method"] == ["S256"] and query["nonce"] and query["state"]
    idp.sign_in_as(email)
    async with httpx.AsyncClient() as browser:
        back = await browser.get(to_provider)
    assert back.status_code == 302, back.text
    location = back.headers["location"]
    assert location.startswith(CALLBACK + "?")
    return await http.get(location.removeprefix(BASE))


async def test_signing_in_starts_a_new_session_and_goes_to_next(tmp_path: Path, idp: OidcProvider,
                                                                sqlite_store: Store) -> None:
    async with LifespanClient(web_for(tmp_path, idp, sqlite_store), base_url=BASE) as http:
        page = await http.get("/my")
        assert page.status_code == 303 and page.headers["location"] == "/login?next=%2Fmy"
        start = await http.get("/login", params={"next": "/my"})
        before = session_of(http)
        assert "person" not in before and any(k.startswith("_state_") for k in before)
        cookie = start.headers["set-cookie"].lower()
        assert "httponly" in cookie and "secure" in cookie and "samesite=lax" in cookie
        http.cookies.clear()
        done = await sign_in(http, idp, "alice@example.com", "/dashboard?group=service")
        assert done.status_code == 303 and done.headers["location"] == "/dashboard?group=service"
        after = session_of(http)
        assert after["person"] == "alice" and after["sid"] and after["csrf"]
        assert not any(k.startswith("_state_") for k in after)  # the pre-sign-in session is gone
        assert (await http.get("/my")).status_code == 200
        first_sid = after["sid"]
        again = await sign_in(http, idp, "alice@example.com")
        assert again.status_code == 303
        assert session_of(http)["sid"] != first_sid  # each sign-in, a new session id
        entries = sqlite_store.views.audit("")
        assert [(e.person, e.action, e.via) for e in entries] == [("alice", "signin", "web")] * 2


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/", "/\\evil.example"])
async def test_next_cannot_send_anyone_off_site(tmp_path: Path, idp: OidcProvider, sqlite_store: Store,
                                                target: str) -> None:
    async with LifespanClient(web_for(tmp_path, idp, sqlite_store), base_url=BASE) as http:
        done = await sign_in(http, idp, "alice@example.com", target)
        assert done.status_code == 303 and done.headers["location"] == "/"


async def test_a_person_not_in_the_directory_is_not_signed_in(tmp_path: Path, idp: OidcProvider,
                                                              sqlite_store: Store) -> None:
    async with LifespanClient(web_for(tmp_path, idp, sqlite_store), base_url=BASE) as http:
        refused = await sign_in(http, idp, "stranger@example.com")
        assert refused.status_code == 401 and "is not in closeloop" in refused.text
        assert (await http.get("/my")).status_code == 303  # still signed out


async def test_a_forged_id_token_or_a_wrong_client_secret_signs_nobody_in(tmp_path: Path, idp: OidcProvider,
                                                                          sqlite_store: Store) -> None:
    async with LifespanClient(web_for(tmp_path, idp, sqlite_store), base_url=BASE) as http:
        idp.tamper_next_id_token()
        refused = await sign_in(http, idp, "alice@example.com")
        assert refused.status_code == 401 and "sign-in failed" in refused.text
        assert (await http.get("/my")).status_code == 303
    async with LifespanClient(web_for(tmp_path, idp, sqlite_store, client_secret="wrong"), base_url=BASE) as http:
        refused = await sign_in(http, idp, "alice@example.com")
        assert refused.status_code == 401
        assert (await http.get("/my")).status_code == 303


async def test_a_callback_without_a_sign_in_started_here_is_refused(tmp_path: Path, idp: OidcProvider,
                                                                    sqlite_store: Store) -> None:
    async with LifespanClient(web_for(tmp_path, idp, sqlite_store), base_url=BASE) as http:
        refused = await http.get("/auth/callback", params={"code": "x", "state": "y"})
        assert refused.status_code == 401
        assert (await http.get("/my")).status_code == 303


async def test_without_a_provider_configured_the_pages_say_so(tmp_path: Path, sqlite_store: Store) -> None:
    path = tmp_path / "closeloop.toml"
    path.write_text(f'data_dir = "{tmp_path / "data"}"\n' + TEST_CONFIG)

    async def no_temporal() -> Any:
        raise RuntimeError("not needed")

    app = create_app(load(path), no_temporal, secrets=ALL_SECRETS, store=sqlite_store)
    async with LifespanClient(app, base_url=BASE) as http:
        for page in ("/my", "/dashboard", "/login"):
            response = await http.get(page)
            assert response.status_code == 503 and "sign-in is not configured" in response.text


async def test_entra_id_names_the_person_in_preferred_username(tmp_path: Path, sqlite_store: Store) -> None:
    """Entra ID's v2.0 ID token has no `email` claim unless the app registration adds it: with the default
    `email_claim` nobody is signed in, and the page says which claim was missing; with `email_claim =
    "preferred_username"` (README: Signing in with OpenID Connect) alice is."""
    with OidcProvider(clients={"closeloop": ClientReg(secret=CLIENT_SECRET, redirect_uris=[CALLBACK])},
                      users={"alice@example.com": "Alice"}, claims="entra") as entra:
        async with LifespanClient(web_for(tmp_path, entra, sqlite_store), base_url=BASE) as http:
            refused = await sign_in(http, entra, "alice@example.com")
            assert refused.status_code == 401, refused.text
            assert "the provider did not say who you are (no &#39;email&#39; claim)" in refused.text
            assert "person" not in session_of(http)
        async with LifespanClient(web_for(tmp_path, entra, sqlite_store, auth='email_claim = "preferred_username"'),
                                  base_url=BASE) as http:
            done = await sign_in(http, entra, "alice@example.com", "/my")
            assert done.status_code == 303 and done.headers["location"] == "/my", done.text
            assert session_of(http)["person"] == "alice"
            assert (await http.get("/my")).status_code == 200
