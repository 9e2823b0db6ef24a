"""Who is signed in to the web app (`[web.auth]`), and the protections every page shares.

- **OpenID Connect** (`mode = "oidc"`): `GET /login?next=/...` sends the person to the provider with
  authlib (authorization code, PKCE S256, state and nonce kept in the session); `GET /auth/callback` checks the
  ID token (signature from the provider's JWKS, issuer, audience, expiry, nonce), maps its email claim to a
  person of the directory, and starts a new session: the old one is dropped and a new session id and CSRF
  token are made, so a session fixed before sign-in is worthless after it.
- **Authenticating proxy** (`mode = "proxy"`): the proxy's header (`X-Forwarded-Email` by default) names the
  person, trusted only when the request comes from an address of `trusted_proxies`; from anywhere else the
  header is ignored.
- **Sessions** are Starlette's signed cookie (`closeloop_session`, itsdangerous, key CLOSELOOP_SESSION_SECRET):
  HttpOnly, SameSite=Lax, Secure unless `secure_cookies = false`, and ending after `session_lifetime`.
- **CSRF**: every state-changing request (each POST of the pages) carries the session's token, in the form's
  `csrf_token` field or the `X-CSRF-Token` header, compared in constant time; without it the request is
  refused (403) before anything runs.
- **`next=`** only ever leads to a path of this site (`safe_next`)."""

from __future__ import annotations

import hmac
import ipaddress
import secrets as token_source
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import structlog
from starlette.requests import Request

from closeloop.config import Config, WebAuthSettings
from closeloop.models import Person
from closeloop.secrets import ENV_OIDC_CLIENT_SECRET, ENV_SESSION_SECRET, Secrets
from closeloop.web.access import Viewer, person_by_email, viewer

log = structlog.get_logger("closeloop.web")

SESSION_COOKIE = "closeloop_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


class SignInError(Exception):
    """Sign-in failed; the message is for the person (no provider internals)."""


def session_secret(secrets: Secrets) -> str:
    """The session cookie's key: CLOSELOOP_SESSION_SECRET, or a random one for this process (sessions then end
    when it stops, and several web processes would not share them: a warning says so)."""
    value = secrets.value(ENV_SESSION_SECRET)
    if value:
        return value.split(",")[0].strip()
    log.warning("session_secret_unset", hint=f"set {ENV_SESSION_SECRET}: sessions and message links end when this "
                                             "process stops, and other web processes do not accept them")
    return token_source.token_urlsafe(32)


def safe_next(value: str | None) -> str:
    """A `next=` target that stays on this site: a path beginning with one `/`, no scheme, host or backslash;
    anything else is `/`."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    if any(ord(c) < 32 for c in value):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value


def csrf_token(request: Request) -> str:
    """The session's CSRF token (made on first use)."""
    token = request.session.get("csrf")
    if not isinstance(token, str) or len(token) < 20:
        token = token_source.token_urlsafe(32)
        request.session["csrf"] = token
    return token


def csrf_ok(request: Request, sent: str | None) -> bool:
    expected = request.session.get("csrf")
    if not isinstance(expected, str) or not expected or not sent:
        return False
    return hmac.compare_digest(expected.encode(), sent.encode())


def client_address(request: Request, auth: WebAuthSettings) -> str:
    """Where the request came from: the client's address, or the first X-Forwarded-For hop when the client is a
    trusted proxy."""
    host = request.client.host if request.client else ""
    if host and _trusted(host, auth.trusted_proxies):
        forwarded = request.headers.get("x-forwarded-for", "").split(",")[0].strip()
        if forwarded:
            return forwarded[:100]
    return host


def _trusted(host: str, networks: list[str]) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(n, strict=False) for n in networks)


class Auth:
    """Resolves the signed-in person of a request, and runs the OIDC sign-in."""

    def __init__(self, config: Config, secrets: Secrets, people: Callable[[], Mapping[str, Person]]) -> None:
        self.settings = config.web.auth
        self.public_url = config.web.public_url
        self._people = people
        self._client_secret = secrets.value(ENV_OIDC_CLIENT_SECRET)
        self._oauth: Any = None

    @property
    def configured(self) -> bool:
        if self.settings.mode == "proxy":
            return bool(self.settings.trusted_proxies)
        return bool(self.settings.issuer and self.settings.client_id)

    def not_configured_reason(self) -> str:
        if self.settings.mode == "proxy":
            return "sign-in is not configured: [web.auth] trusted_proxies is empty"
        return "sign-in is not configured: set [web.auth] issuer and client_id (and CLOSELOOP_OIDC_CLIENT_SECRET)"

    # ------------------------------------------------------------------ who is it

    def current(self, request: Request) -> Viewer | None:
        """The signed-in person, or None. Roles are read from the directory on every request, so a change of
        manager or admin takes effect at once."""
        if self.settings.mode == "proxy":
            return self._from_proxy(request)
        key = request.session.get("person")
        expires = request.session.get("expires", 0)
        if not isinstance(key, str) or not isinstance(expires, int | float) or expires < time.time():
            return None
        return viewer(self._people(), key, self.settings.admins)

    def _from_proxy(self, request: Request) -> Viewer | None:
        host = request.client.host if request.client else ""
        if not host or not _trusted(host, self.settings.trusted_proxies):
            return None
        email = request.headers.get(self.settings.proxy_header, "")
        person = person_by_email(self._people(), email)
        if person is None:
            return None
        if request.session.get("person") != person.key:  # a new session for a new person
            request.session.clear()
            request.session.update({"person": person.key, "sid": token_source.token_urlsafe(16)})
            csrf_token(request)
        return viewer(self._people(), person.key, self.settings.admins)

    # ------------------------------------------------------------------ OIDC

    def _client(self) -> Any:
        if self._oauth is None:
            from authlib.integrations.starlette_client import OAuth

            oauth = OAuth()
            issuer = (self.settings.issuer or "").rstrip("/")
            oauth.register(name="oidc", client_id=self.settings.client_id, client_secret=self._client_secret,
                           server_metadata_url=f"{issuer}/.well-known/openid-configuration",
                           client_kwargs={"scope": self.settings.scopes, "code_challenge_method": "S256",
                                          "timeout": 10.0})
            self._oauth = oauth
        return self._oauth.oidc

    def callback_url(self, request: Request) -> str:
        if self.public_url:
            return f"{self.public_url.rstrip('/')}/auth/callback"
        return str(request.url_for("auth_callback"))

    async def begin(self, request: Request, next_path: str) -> Any:
        """The redirect to the provider (state, nonce and the PKCE verifier go in the session)."""
        request.session["next"] = safe_next(next_path)
        try:
            return await self._client().authorize_redirect(request, self.callback_url(request))
        except Exception as e:  # noqa: BLE001 - the provider's discovery document could not be read
            log.warning("oidc_unreachable", issuer=self.settings.issuer, error=type(e).__name__)
            raise SignInError("the sign-in provider cannot be reached; try again in a minute") from None

    async def finish(self, request: Request) -> tuple[Person, str]:
        """Check the provider's answer; the person and where to go next. A new session holds them."""
        from authlib.integrations.base_client.errors import OAuthError

        try:
            token = await self._client().authorize_access_token(request)
        except OAuthError as e:
            log.info("signin_refused", error=e.error)
            raise SignInError(f"sign-in failed ({e.error})") from None
        except Exception as e:  # noqa: BLE001 - a bad ID token, an unreachable provider
            log.warning("signin_failed", error=type(e).__name__)
            raise SignInError("sign-in failed: the provider's answer could not be checked") from None
        claims = token.get("userinfo") or {}
        email = claims.get(self.settings.email_claim)
        if not isinstance(email, str) or not email:
            raise SignInError(f"the provider did not say who you are (no {self.settings.email_claim!r} claim)")
        if claims.get("email_verified") is False:
            raise SignInError("the provider says this email address is not verified")
        person = person_by_email(self._people(), email)
        if person is None:
            log.info("signin_unknown_person", email_domain=email.rpartition("@")[2])
            raise SignInError(f"{email} is not in closeloop's directory; ask the platform team to add you")
        next_path = safe_next(request.session.get("next"))
        request.session.clear()  # a new session: the one from before sign-in is worthless now
        request.session.update({"person": person.key, "sid": token_source.token_urlsafe(16),
                                "expires": int(time.time() + self.settings.session_lifetime.total_seconds())})
        csrf_token(request)
        return person, next_path
