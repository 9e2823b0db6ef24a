"""closeloop/standins/oidc.py: the OpenID Connect provider stand-in, driven by the relying party the web app uses
(authlib's Starlette client behind SessionMiddleware, in a Starlette TestClient) with the browser's redirects
followed by hand, and its endpoints called directly with httpx for the refusals."""

from __future__ import annotations

import base64
import os
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from authlib.integrations.starlette_client import OAuth
from joserfc import jwt
from joserfc.jwk import KeySet
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from closeloop.standins.oidc import ClientReg, OidcProvider, s256, subject

CLIENT_ID, SECRET = "closeloop", "s3cret-for-tests"
CALLBACK = "http://testserver/auth/callback"  # the TestClient app's callback
DIRECT = "http://127.0.0.1:9/cb"  # a registered redirect URI for the requests made without the app
USERS = {"alice@example.com": "Alice Owner", "bob@example.com": "Bob Reviewer"}


class Clock:
    """The provider's "now", moved by the test (starts at the real now, so authlib accepts the tokens)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def idp(clock: Clock) -> Iterator[OidcProvider]:
    clients = {CLIENT_ID: ClientReg(secret=SECRET, redirect_uris=[DIRECT]), "other": ClientReg(secret="other")}
    with OidcProvider(clients=clients, users=USERS, clock=clock) as provider:
        yield provider


def relying_party(idp: OidcProvider, secret: str = SECRET) -> TestClient:
    """A tiny web app signing people in as the real one does: authlib's client, the session in a cookie."""
    oauth = OAuth()
    oauth.register("idp", server_metadata_url=idp.discovery_url, client_id=CLIENT_ID, client_secret=secret,
                   client_kwargs={"scope": "openid email profile", "code_challenge_method": "S256"})

    async def login(request: Request) -> RedirectResponse:
        redirect: RedirectResponse = await oauth.idp.authorize_redirect(request, str(request.url_for("callback")))
        return redirect

    async def callback(request: Request) -> JSONResponse:
        try:
            token = await oauth.idp.authorize_access_token(request)
        except Exception as exc:  # noqa: BLE001 - the test reads which validation failed
            return JSONResponse({"error": type(exc).__name__, "detail": str(exc)}, status_code=401)
        info = await oauth.idp.userinfo(token=token)
        return JSONResponse({"claims": dict(token["userinfo"]), "userinfo": dict(info)})

    app = Starlette(routes=[Route("/login", login), Route("/auth/callback", callback, name="callback")],
                    middleware=[Middleware(SessionMiddleware, secret_key="test-session-key")])
    return TestClient(app)


class Form(HTMLParser):
    """The sign-in page's form: its inputs (name -> attributes), labels (for -> text) and buttons' text."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.form: dict[str, str | None] = {}
        self.inputs: dict[str, dict[str, str | None]] = {}
        self.labels: dict[str, str] = {}
        self.buttons: list[str] = []
        self._in: tuple[str, str] | None = None
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self.form = a
        elif tag == "input":
            self.inputs[a["name"] or ""] = a
        elif tag == "label":
            self._in = ("label", a["for"] or "")
        elif tag == "button":
            self._in = ("button", "")

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in and self._in[0] == "label":
            self.labels[self._in[1]] = data.strip()
        elif self._in:
            self.buttons.append(data.strip())


def sign_in(rp: TestClient, idp: OidcProvider, *, email: str | None = None) -> httpx.Response:
    """The browser's walk: the app's /login, the provider (its form filled with `email`, or a preset sign-in),
    back to the app's callback; the callback's response."""
    start = rp.get("/login", follow_redirects=False)
    assert start.status_code == 302
    authorize = start.headers["location"]
    assert authorize.startswith(idp.url + "/authorize?")
    with httpx.Client(timeout=5) as browser:
        page = browser.get(authorize)
        if email is not None:
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
            form = Form(page.text)
            assert form.labels["email"] == "Email" and form.inputs["email"]["id"] == "email"
            fields = {name: a["value"] or "" for name, a in form.inputs.items() if a["type"] == "hidden"}
            page = browser.post(idp.url + (form.form["action"] or ""), data={**fields, "email": email})
        assert page.status_code == 302, page.text
        back = page.headers["location"]
    assert back.startswith(CALLBACK + "?")
    query = parse_qs(urlsplit(back).query)
    assert query["iss"] == [idp.issuer] and "code" in query and "state" in query
    done: httpx.Response = rp.get(back)
    return done


def code_for(idp: OidcProvider, email: str, verifier: str, *, redirect_uri: str = DIRECT,
             client_id: str = CLIENT_ID) -> str:
    """A code for `email`, asked for with httpx (a preset sign-in), bound to S256(verifier)."""
    idp.sign_in_as(email)
    params = {"client_id": client_id, "redirect_uri": redirect_uri, "response_type": "code",
              "scope": "openid email profile", "state": "st", "nonce": "n-0S6", "code_challenge": s256(verifier),
              "code_challenge_method": "S256"}
    r = httpx.get(idp.url + "/authorize", params=params)
    assert r.status_code == 302, r.text
    query = parse_qs(urlsplit(r.headers["location"]).query)
    assert query["state"] == ["st"]
    return query["code"][0]


def redeem(idp: OidcProvider, code: str, verifier: str, *, secret: str = SECRET, basic: bool = False,
           redirect_uri: str = DIRECT, client_id: str = CLIENT_ID) -> httpx.Response:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri, "code_verifier": verifier}
    if basic:
        auth = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        return httpx.post(idp.url + "/token", data=form, headers={"Authorization": f"Basic {auth}"})
    return httpx.post(idp.url + "/token", data={**form, "client_id": client_id, "client_secret": secret})


def verifier() -> str:
    return secrets.token_urlsafe(48)


# ---------------------------------------------------------------------- the authlib flow


def test_authlib_flow_through_the_sign_in_form(idp: OidcProvider) -> None:
    """The full code flow with PKCE and a nonce; the callback was registered after the provider started."""
    idp.add_redirect_uri(CLIENT_ID, CALLBACK)
    rp = relying_party(idp)
    done = sign_in(rp, idp, email="Alice@Example.com")
    assert done.status_code == 200, done.text
    claims, info = done.json()["claims"], done.json()["userinfo"]
    assert claims["email"] == info["email"] == "alice@example.com"
    assert claims["name"] == info["name"] == "Alice Owner"
    assert claims["email_verified"] is True and info["email_verified"] is True
    assert claims["sub"] == info["sub"] == subject("alice@example.com") != subject("bob@example.com")
    assert claims["iss"] == idp.issuer and claims["aud"] == CLIENT_ID
    assert idp.sign_ins == ["alice@example.com"] and idp.codes == {}


def test_entra_claims_name_the_person_in_preferred_username(clock: Clock) -> None:
    """claims="entra": Entra ID's v2.0 ID token and userinfo through authlib: `preferred_username`, `name`, `oid`,
    `tid`, `ver`; no `email`, no `email_verified`; the discovery document lists those claims."""
    clients = {CLIENT_ID: ClientReg(secret=SECRET, redirect_uris=[CALLBACK])}
    with OidcProvider(clients=clients, users=USERS, clock=clock, claims="entra") as entra:
        done = sign_in(relying_party(entra), entra, email="alice@example.com")
        assert done.status_code == 200, done.text
        claims, info = done.json()["claims"], done.json()["userinfo"]
        assert claims["preferred_username"] == info["preferred_username"] == "alice@example.com"
        assert claims["name"] == "Alice Owner" and claims["ver"] == "2.0" and claims["tid"] and claims["oid"]
        assert "email" not in claims and "email_verified" not in claims and "email" not in info
        supported = httpx.get(entra.discovery_url).json()["claims_supported"]
        assert "preferred_username" in supported and "email" not in supported


def test_sign_in_as_redirects_at_once_and_only_once(idp: OidcProvider) -> None:
    idp.add_redirect_uri(CLIENT_ID, CALLBACK)
    rp = relying_party(idp)
    idp.sign_in_as("bob@example.com")
    done = sign_in(rp, idp)  # no form: sign_in asserts the provider's first answer is the 302
    assert done.status_code == 200, done.text
    assert done.json()["claims"]["email"] == "bob@example.com"
    assert done.json()["claims"]["name"] == "Bob Reviewer"
    again = rp.get("/login", follow_redirects=False)
    page = httpx.get(again.headers["location"])
    assert page.status_code == 200 and "Sign in" in page.text  # the preset was spent: the form again
    with pytest.raises(ValueError, match="no such user"):
        idp.sign_in_as("mallory@example.com")


def test_a_tampered_id_token_signature_fails_authlibs_validation(idp: OidcProvider) -> None:
    idp.add_redirect_uri(CLIENT_ID, CALLBACK)
    rp = relying_party(idp)
    idp.sign_in_as("alice@example.com")
    idp.tamper_next_id_token()
    refused = sign_in(rp, idp)
    assert refused.status_code == 401
    assert refused.json()["error"] == "BadSignatureError"
    idp.sign_in_as("alice@example.com")  # the next one is signed properly again
    assert sign_in(rp, idp).json()["claims"]["email"] == "alice@example.com"


def test_the_id_token_is_rs256_signed_by_the_published_key_only(idp: OidcProvider) -> None:
    meta = httpx.get(idp.discovery_url).json()
    assert meta["issuer"] == idp.issuer == idp.url
    assert meta["jwks_uri"] == idp.url + "/jwks" and meta["token_endpoint"] == idp.url + "/token"
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["id_token_signing_alg_values_supported"] == ["RS256"]
    assert sorted(meta["token_endpoint_auth_methods_supported"]) == ["client_secret_basic", "client_secret_post"]
    jwks = httpx.get(meta["jwks_uri"]).json()
    (key,) = jwks["keys"]
    assert key["kty"] == "RSA" and key["alg"] == "RS256" and key["kid"] == idp.kid
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)  # the public half only
    v = verifier()
    token = redeem(idp, code_for(idp, "alice@example.com", v), v).json()
    decoded = jwt.decode(token["id_token"], KeySet.import_key_set(jwks), algorithms=["RS256"])
    assert decoded.header["kid"] == idp.kid and decoded.header["alg"] == "RS256"
    assert decoded.claims["nonce"] == "n-0S6" and decoded.claims["exp"] > decoded.claims["iat"]
    with OidcProvider(clients={CLIENT_ID: ClientReg(SECRET, [DIRECT])}, users=USERS) as other:
        assert other.kid != idp.kid  # a key per instance
        foreign = KeySet.import_key_set(httpx.get(other.url + "/jwks").json())
        with pytest.raises(Exception, match="kid|signature|key"):
            jwt.decode(token["id_token"], foreign, algorithms=["RS256"])


# ---------------------------------------------------------------------- the token endpoint's refusals


def test_a_code_is_single_use_and_its_reuse_revokes_the_token(idp: OidcProvider) -> None:
    v = verifier()
    code = code_for(idp, "alice@example.com", v)
    first = redeem(idp, code, v, basic=True)
    assert first.status_code == 200 and first.headers["cache-control"] == "no-store"
    access = first.json()["access_token"]
    assert first.json()["token_type"] == "Bearer" and first.json()["scope"] == "openid email profile"
    me = httpx.get(idp.url + "/userinfo", headers={"Authorization": f"Bearer {access}"})
    assert me.json() == {"sub": subject("alice@example.com"), "email": "alice@example.com",
                         "email_verified": True, "name": "Alice Owner"}
    assert code not in idp.codes
    again = redeem(idp, code, v, basic=True)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    revoked = httpx.get(idp.url + "/userinfo", headers={"Authorization": f"Bearer {access}"})
    assert revoked.status_code == 401 and 'error="invalid_token"' in revoked.headers["www-authenticate"]


@pytest.mark.parametrize("basic", [False, True], ids=["client_secret_post", "client_secret_basic"])
def test_a_wrong_client_secret_is_invalid_client(idp: OidcProvider, basic: bool) -> None:
    v = verifier()
    code = code_for(idp, "alice@example.com", v)
    wrong = redeem(idp, code, v, secret="not-the-secret", basic=basic)
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    assert "www-authenticate" in wrong.headers
    assert redeem(idp, code, v, basic=basic).status_code == 200  # the refused request did not spend the code


def test_a_code_is_for_the_client_it_was_issued_to(idp: OidcProvider) -> None:
    v = verifier()
    code = code_for(idp, "alice@example.com", v)
    stolen = redeem(idp, code, v, client_id="other", secret="other")
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant"


def test_a_wrong_pkce_verifier_is_invalid_grant(idp: OidcProvider) -> None:
    v = verifier()
    code = code_for(idp, "alice@example.com", v)
    wrong = redeem(idp, code, verifier())
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    assert "code_verifier" in wrong.json()["error_description"]


def test_the_redirect_uri_must_match_the_authorization_requests(idp: OidcProvider) -> None:
    idp.add_redirect_uri(CLIENT_ID, "http://127.0.0.1:9/other")
    v = verifier()
    code = code_for(idp, "alice@example.com", v)
    wrong = redeem(idp, code, v, redirect_uri="http://127.0.0.1:9/other")
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"


def test_an_expired_code_is_invalid_grant(idp: OidcProvider, clock: Clock) -> None:
    v = verifier()
    fresh = code_for(idp, "alice@example.com", v)
    clock.now += timedelta(seconds=59)
    assert redeem(idp, fresh, v).status_code == 200
    stale = code_for(idp, "alice@example.com", v)
    clock.now += timedelta(seconds=60)
    expired = redeem(idp, stale, v)
    assert expired.status_code == 400 and expired.json()["error"] == "invalid_grant"
    assert "expired" in expired.json()["error_description"]


def test_only_the_authorization_code_grant(idp: OidcProvider) -> None:
    r = httpx.post(idp.url + "/token", data={"grant_type": "password", "client_id": CLIENT_ID,
                                             "client_secret": SECRET, "username": "a", "password": "b"})
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"


# ---------------------------------------------------------------------- the authorization endpoint's refusals


def authorize_params(**overrides: str) -> dict[str, str]:
    params = {"client_id": CLIENT_ID, "redirect_uri": DIRECT, "response_type": "code", "scope": "openid email",
              "state": "xyz", "nonce": "n", "code_challenge": s256(verifier()), "code_challenge_method": "S256"}
    return {k: v for k, v in {**params, **overrides}.items() if v}


@pytest.mark.parametrize("overrides", [{"redirect_uri": "http://127.0.0.1:9/cb/evil"},
                                       {"redirect_uri": "https://attacker.example/cb"},
                                       {"redirect_uri": ""}, {"client_id": "nobody"}, {"client_id": ""}])
def test_an_unregistered_redirect_uri_or_client_is_a_400_page_not_a_redirect(
        idp: OidcProvider, overrides: dict[str, str]) -> None:
    idp.sign_in_as("alice@example.com")
    r = httpx.get(idp.url + "/authorize", params=authorize_params(response_type="token", **overrides))
    assert r.status_code == 400 and "location" not in r.headers
    assert r.headers["content-type"].startswith("text/html")
    assert idp.codes == {}


@pytest.mark.parametrize(("overrides", "error"), [
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"scope": "email profile"}, "invalid_scope"),
    ({"nonce": ""}, "invalid_request"),
    ({"code_challenge": ""}, "invalid_request"),
    ({"code_challenge_method": "plain"}, "invalid_request"),
    ({"code_challenge_method": ""}, "invalid_request"),
])
def test_bad_parameters_go_back_to_a_valid_redirect_uri_as_error(
        idp: OidcProvider, overrides: dict[str, str], error: str) -> None:
    idp.sign_in_as("alice@example.com")
    r = httpx.get(idp.url + "/authorize", params=authorize_params(**overrides))
    assert r.status_code == 302
    location = r.headers["location"]
    assert location.startswith(DIRECT + "?")
    query = parse_qs(urlsplit(location).query)
    assert query["error"] == [error] and query["state"] == ["xyz"] and "code" not in query


def test_an_unknown_email_at_the_form_is_a_400_page(idp: OidcProvider) -> None:
    form = {**authorize_params(), "email": "mallory@example.com"}
    r = httpx.post(idp.url + "/authorize", data=form)
    assert r.status_code == 400 and "location" not in r.headers
    assert "No such user" in r.text and idp.codes == {}
    ok = httpx.post(idp.url + "/authorize", data={**form, "email": "bob@example.com"})
    assert ok.status_code == 302 and "code=" in ok.headers["location"]


def test_the_form_escapes_what_the_request_carries(idp: OidcProvider) -> None:
    evil = '"><script>alert(1)</script>'
    r = httpx.get(idp.url + "/authorize", params=authorize_params(state=evil))
    assert r.status_code == 200
    assert "<script>" not in r.text
    assert Form(r.text).inputs["state"]["value"] == evil  # carried intact, as an attribute
    bad = httpx.get(idp.url + "/authorize?" + urlencode({**authorize_params(), "client_id": "<b>x</b>"}))
    assert bad.status_code == 400 and "<b>" not in bad.text


def test_userinfo_wants_a_valid_bearer_token(idp: OidcProvider, clock: Clock) -> None:
    assert httpx.get(idp.url + "/userinfo").status_code == 401
    assert httpx.get(idp.url + "/userinfo", headers={"Authorization": "Bearer nope"}).status_code == 401
    v = verifier()
    access = redeem(idp, code_for(idp, "bob@example.com", v), v).json()["access_token"]
    auth = {"Authorization": f"Bearer {access}"}
    assert httpx.get(idp.url + "/userinfo", headers=auth).json()["email"] == "bob@example.com"
    clock.now += timedelta(hours=1)
    assert httpx.get(idp.url + "/userinfo", headers=auth).status_code == 401  # expired


# ---------------------------------------------------------------------- closeloop standin oidc


def test_the_cli_serves_the_configs_people(tmp_path: Path) -> None:
    """`closeloop standin oidc`: the people of the config's [people] sign in, the secret comes from the
    environment, the issuer printed is the one served; SIGTERM stops it; no secret is exit 2."""
    config = tmp_path / "closeloop.toml"
    config.write_text('[people.alice]\nname = "Alice Owner"\nemail = "alice@example.com"\n')
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [sys.executable, "-m", "closeloop.cli.main", "--config", str(config), "standin", "oidc",
            "--port", str(port), "--client-id", "web", "--redirect-uri", DIRECT]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "CLOSELOOP_OIDC_CLIENT_SECRET": "from-env"}
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(5)]
        issuer = f"http://127.0.0.1:{port}"
        assert lines[0].startswith(f"oidc stand-in on {issuer} (client web; users alice@example.com)"), lines
        assert f'issuer = "{issuer}"\n' in lines and 'client_id = "web"\n' in lines
        assert httpx.get(issuer + "/.well-known/openid-configuration").json()["issuer"] == issuer
        v = verifier()
        signed_in = httpx.post(issuer + "/authorize", data={**authorize_params(client_id="web", scope="openid email"),
                                                           "code_challenge": s256(v), "email": "alice@example.com"})
        assert signed_in.status_code == 302, signed_in.text
        code = parse_qs(urlsplit(signed_in.headers["location"]).query)["code"][0]
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": DIRECT, "code_verifier": v}
        assert httpx.post(issuer + "/token", data=form, auth=("web", "wrong")).status_code == 401
        token = httpx.post(issuer + "/token", data=form, auth=("web", "from-env"))
        assert token.status_code == 200 and token.json()["scope"] == "openid email"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    del env["CLOSELOOP_OIDC_CLIENT_SECRET"]
    refused = subprocess.run(args, capture_output=True, text=True, env=env, timeout=30)
    assert refused.returncode == 2 and "CLOSELOOP_OIDC_CLIENT_SECRET" in refused.stderr
