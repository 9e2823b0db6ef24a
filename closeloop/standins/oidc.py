"""An OpenID Connect provider stand-in: the authorization code flow with PKCE, for the web app's sign-in in
tests and `closeloop standin oidc` (for `closeloop dev`), with no identity provider on the internet.

    with OidcProvider(clients={"closeloop": ClientReg(secret="s3cret", redirect_uris=[callback])},
                      users={"alice@example.com": "Alice Owner"}) as idp:     # 127.0.0.1, a free port
        oauth.register("idp", server_metadata_url=idp.discovery_url, client_id="closeloop",
                       client_secret="s3cret", client_kwargs={"scope": "openid email profile",
                                                           "code_challenge_method": "S256"})
        idp.sign_in_as("alice@example.com")   # the next /authorize redirects back at once, no form
        idp.add_redirect_uri("closeloop", "http://127.0.0.1:8123/auth/callback")   # registered later

The issuer is the server's base URL, `http://127.0.0.1:<port>` (known from construction: the port is bound
then). Each instance signs with its own RSA 2048 key (RS256, `kid` its RFC 7638 thumbprint; joserfc, which
authlib ships on); state is in memory. Implemented:

- `GET /.well-known/openid-configuration`: the discovery document (code flow only, S256 PKCE only,
  `client_secret_post` and `client_secret_basic`, RFC 9207's `iss` in the authorization response).
- `GET /jwks`: the public key.
- `GET /authorize`: checks `client_id` and `redirect_uri` (exactly one of the client's registered ones) and
  answers a 400 page when either is wrong, never redirecting there (RFC 6749 4.1.2.1). The other checks redirect
  back with `error=` (and `state`): `response_type` must be `code` (`unsupported_response_type`), `scope` must
  hold `openid` (`invalid_scope`), `state`, `nonce` and an S256 `code_challenge` are required
  (`invalid_request`). A valid request shows a sign-in page (an email field and a "Sign in" button), or, after
  `sign_in_as(email)`, redirects at once with a code. A parameter given twice is a 400 page.
- `POST /authorize` (the sign-in form): the same checks, then the email: an unknown one is a 400 page ("no
  such user"); a known one gets a one-time code bound to the client, redirect_uri, scope, nonce, code
  challenge and email, valid for `code_ttl` (60 s), and a 302 to `redirect_uri?code=...&state=...&iss=...`.
- `POST /token`, `grant_type=authorization_code`: client authentication by `client_secret_basic` or
  `client_secret_post` (not both; secrets compared with `hmac.compare_digest`), else 401 `invalid_client`; the
  code must be the client's, unused, unexpired, for the same `redirect_uri`, and `code_verifier` must match
  its challenge, else 400 `invalid_grant`. A code is spent by its first presentation (a failed one too), and
  presenting a spent code again also revokes the access token it bought (RFC 6749 4.1.2). The answer:
  `access_token`, `token_type` "Bearer", `expires_in`, `id_token`, `scope`, with `Cache-Control: no-store`.
  The ID token (RS256): `iss`, `sub` (the same for an email across instances and runs), `aud` (the client),
  `exp`, `iat`, `auth_time`, `nonce`, `at_hash`, and with the `email` scope `email` and `email_verified`
  (true), with `profile` `name`.
- `GET|POST /userinfo` with `Authorization: Bearer <access token>`: `sub`, and `email`, `email_verified`,
  `name` as the scope allows; 401 with `WWW-Authenticate: Bearer error="invalid_token"` otherwise.

Test hooks: `sign_in_as(email)`, `add_user(email, name)`, `add_redirect_uri(client_id, uri)`, `codes` and
`access_tokens` (what is outstanding), `sign_ins` (the emails signed in, in order), `requests` (Counter of
"METHOD /path"), `tamper_next_id_token()` (the next ID token's signature is corrupted, as a forger's would
be), and `clock` (the provider's "now", a timezone-aware datetime: codes expire and tokens are stamped by it).
Not implemented: refresh tokens, other grants and response types, `prompt`/`max_age`, consent, logout,
dynamic registration, CSRF protection of the sign-in form (it is a stand-in: anyone may sign in as anyone).

`claims="entra"` issues Microsoft Entra ID's v2.0 claims instead: `oid`, `tid`, `ver`, and with `profile` `name`
and `preferred_username` (the email), but no `email` and no `email_verified` (Entra sends `email` only as an
optional claim of the app registration): closeloop then reads `[web.auth] email_claim = "preferred_username"`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import re
import secrets
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import parse_qs, unquote_plus, urlencode, urlsplit, urlunsplit

from joserfc import jwt
from joserfc.jwk import RSAKey

from closeloop.standins._server import Fault, JsonHandler, StandinServer

SCOPES = ("openid", "email", "profile")
ENTRA_TENANT = "9a1c7a9e-5b0f-4d7e-8f43-2f6a1d9c0b11"  # the tenant id of claims="entra"
AUTHORIZE_PARAMS = ("client_id", "redirect_uri", "response_type", "scope", "state", "nonce", "code_challenge",
                    "code_challenge_method")
CODE_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")  # base64url of a SHA-256 digest, unpadded
CODE_VERIFIER = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")  # RFC 7636 4.1
SUB_SALT = b"closeloop oidc stand-in subject"


@dataclass
class ClientReg:
    """A registered client: its secret and the redirect URIs it may use (compared exactly)."""

    secret: str
    redirect_uris: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Code:
    client_id: str
    redirect_uri: str
    scope: tuple[str, ...]
    nonce: str
    code_challenge: str
    email: str
    expires_at: datetime
    auth_time: datetime


@dataclass(frozen=True)
class _AccessToken:
    client_id: str
    email: str
    scope: tuple[str, ...]
    expires_at: datetime


class _PageError(Exception):
    """A request the provider answers with an error page, not a redirect (400 unless told)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.status = message, status


class _RedirectError(Exception):
    """An authorization request error sent back to the client's (valid) redirect_uri as `error=`."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error, self.description = error, description


class _TokenError(Exception):
    """An RFC 6749 5.2 error answer of the token endpoint (or RFC 6750 3.1 of userinfo)."""

    def __init__(self, error: str, description: str, status: int = 400,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(description)
        self.error, self.description, self.status, self.headers = error, description, status, headers or {}


def subject(email: str) -> str:
    """The `sub` of an email: stable across instances and runs (a web app may keep it), opaque."""
    return hmac.new(SUB_SALT, email.strip().lower().encode(), hashlib.sha256).hexdigest()[:32]


def s256(verifier: str) -> str:
    """RFC 7636's S256 code challenge of a code verifier."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()


def _half_hash(value: str) -> str:
    """OIDC's at_hash of an access token (RS256: the left half of its SHA-256, base64url)."""
    digest = hashlib.sha256(value.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()


def _with_query(uri: str, params: Mapping[str, str]) -> str:
    parts = urlsplit(uri)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def _check_redirect_uri(uri: str) -> None:
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
        raise ValueError(f"a redirect URI is an absolute http(s) URI without a fragment, got {uri!r}")


class OidcProvider(StandinServer):
    thread_name = "oidc-standin"

    def __init__(self, *, clients: Mapping[str, ClientReg] | None = None, users: Mapping[str, str] | None = None,
                 port: int = 0, clock: Callable[[], datetime] | None = None,
                 code_ttl: timedelta = timedelta(seconds=60), token_ttl: timedelta = timedelta(hours=1),
                 claims: Literal["standard", "entra"] = "standard") -> None:
        super().__init__()
        self.claims = claims
        self.clock = clock or (lambda: datetime.now(UTC))
        self.code_ttl, self.token_ttl = code_ttl, token_ttl
        self.clients: dict[str, ClientReg] = {}
        for client_id, reg in (clients or {}).items():
            for uri in reg.redirect_uris:
                _check_redirect_uri(uri)
            self.clients[client_id] = ClientReg(reg.secret, list(reg.redirect_uris))
        self.users: dict[str, str] = {}  # email (lowercase) -> name
        for email, name in (users or {}).items():
            self.add_user(email, name)
        self.codes: dict[str, _Code] = {}
        self.access_tokens: dict[str, _AccessToken] = {}
        self.sign_ins: list[str] = []
        self._spent: dict[str, str | None] = {}  # redeemed code -> the access token it bought
        self._next_email: str | None = None
        self.key = RSAKey.generate_key(2048, private=True)
        self.kid = self.key.thumbprint()
        self._serve(_Handler, port=port)

    # ------------------------------------------------------------------ addresses
    @property
    def issuer(self) -> str:
        return self.url

    @property
    def discovery_url(self) -> str:
        """What authlib's `server_metadata_url` takes."""
        return self.url + "/.well-known/openid-configuration"

    # ------------------------------------------------------------------ state
    def add_user(self, email: str, name: str) -> None:
        with self._lock:
            self.users[email.strip().lower()] = name

    def add_client(self, client_id: str, secret: str, redirect_uris: Iterable[str] = ()) -> None:
        with self._lock:
            self.clients[client_id] = ClientReg(secret)
            for uri in redirect_uris:
                self.add_redirect_uri(client_id, uri)

    def add_redirect_uri(self, client_id: str, uri: str) -> None:
        """Register one more redirect URI for a client (e.g. the web app's, once its port is known)."""
        _check_redirect_uri(uri)
        with self._lock:
            if client_id not in self.clients:
                raise KeyError(f"no client {client_id!r}")
            if uri not in self.clients[client_id].redirect_uris:
                self.clients[client_id].redirect_uris.append(uri)

    def sign_in_as(self, email: str) -> None:
        """The next valid authorization request signs this user in at once (a 302 with a code, no form)."""
        with self._lock:
            if email.strip().lower() not in self.users:
                raise ValueError(f"no such user: {email!r}")
            self._next_email = email.strip().lower()

    def tamper_next_id_token(self) -> None:
        """The next ID token the token endpoint issues has a corrupted signature."""
        with self._lock:
            self._faults.append(Fault("tamper", "POST /token"))

    def jwks(self) -> dict[str, Any]:
        return {"keys": [{**self.key.as_dict(private=False), "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def metadata(self) -> dict[str, Any]:
        base = self.issuer
        return {
            "issuer": base,
            "authorization_endpoint": base + "/authorize",
            "token_endpoint": base + "/token",
            "userinfo_endpoint": base + "/userinfo",
            "jwks_uri": base + "/jwks",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": list(SCOPES),
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "name",
                                 *(["preferred_username", "oid", "tid", "ver"] if self.claims == "entra"
                                   else ["email", "email_verified"])],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": True,
        }

    # ------------------------------------------------------------------ authorization endpoint
    def authorize(self, params: dict[str, str], email: str | None) -> tuple[str, str | None]:
        """("redirect", location) or ("page", None) for a sign-in page; raises _PageError. `email` is the
        sign-in form's (POST), None for a GET."""
        client_id, redirect_uri = params.get("client_id", ""), params.get("redirect_uri", "")
        with self._lock:
            client = self.clients.get(client_id)
            if client is None:
                raise _PageError("Unknown client_id." if client_id else "client_id is required.")
            if redirect_uri not in client.redirect_uris:
                raise _PageError("redirect_uri is not one registered for this client." if redirect_uri
                                 else "redirect_uri is required.")
        state = params.get("state", "")
        try:
            scope = self._check_authorization(params)
        except _RedirectError as err:
            error = {"error": err.error, "error_description": err.description}
            return "redirect", _with_query(redirect_uri, {**error, **({"state": state} if state else {})})
        with self._lock:
            if email is None:
                email, self._next_email = self._next_email, None
                if email is None:
                    return "page", None
            email = email.strip().lower()
            if not email:
                raise _PageError("An email is required.")
            if email not in self.users:
                raise _PageError(f"No such user: {email}.")
            now = self.clock()
            code = secrets.token_urlsafe(32)
            self.codes[code] = _Code(client_id, redirect_uri, scope, params["nonce"], params["code_challenge"],
                                     email, now + self.code_ttl, now)
            self.sign_ins.append(email)
        return "redirect", _with_query(redirect_uri, {"code": code, "state": state, "iss": self.issuer})

    @staticmethod
    def _check_authorization(params: dict[str, str]) -> tuple[str, ...]:
        """The granted scopes of a request whose client and redirect_uri are valid; raises _RedirectError."""
        if params.get("response_type") != "code":
            raise _RedirectError("unsupported_response_type", "only response_type=code is supported")
        requested = params.get("scope", "").split()
        if "openid" not in requested:
            raise _RedirectError("invalid_scope", "scope must include openid")
        for name in ("state", "nonce", "code_challenge"):
            if not params.get(name):
                raise _RedirectError("invalid_request", f"{name} is required")
        if params.get("code_challenge_method") != "S256":
            raise _RedirectError("invalid_request", "code_challenge_method must be S256")
        if not CODE_CHALLENGE.match(params["code_challenge"]):
            raise _RedirectError("invalid_request", "code_challenge is not an S256 challenge")
        return tuple(s for s in SCOPES if s in requested)

    # ------------------------------------------------------------------ token endpoint
    def token(self, form: dict[str, str], authorization: str) -> dict[str, Any]:
        """The token response for a token request; raises _TokenError."""
        client_id = self._authenticate(form, authorization)
        if form.get("grant_type") != "authorization_code":
            raise _TokenError("unsupported_grant_type", "only authorization_code is supported")
        code_value = form.get("code", "")
        with self._lock:
            if code_value in self._spent:
                revoked = self._spent[code_value]
                if revoked:
                    self.access_tokens.pop(revoked, None)
                raise _TokenError("invalid_grant", "the code was already used")
            code = self.codes.pop(code_value, None)
            if code is None:
                raise _TokenError("invalid_grant", "unknown code")
            self._spent[code_value] = None
            now = self.clock()
            if code.client_id != client_id:
                raise _TokenError("invalid_grant", "the code was issued to another client")
            if now >= code.expires_at:
                raise _TokenError("invalid_grant", "the code has expired")
            if form.get("redirect_uri") != code.redirect_uri:
                raise _TokenError("invalid_grant", "redirect_uri does not match the authorization request's")
            verifier = form.get("code_verifier", "")
            if not CODE_VERIFIER.match(verifier) or not hmac.compare_digest(s256(verifier), code.code_challenge):
                raise _TokenError("invalid_grant", "code_verifier does not match the code_challenge")
            access_token = secrets.token_urlsafe(32)
            self.access_tokens[access_token] = _AccessToken(client_id, code.email, code.scope, now + self.token_ttl)
            self._spent[code_value] = access_token
            name = self.users.get(code.email, code.email)
            tamper = self._take_fault("POST", "/token", ("tamper",)) is not None
        claims: dict[str, Any] = {
            "iss": self.issuer, "sub": subject(code.email), "aud": client_id, "iat": int(now.timestamp()),
            "exp": int((now + self.token_ttl).timestamp()), "auth_time": int(code.auth_time.timestamp()),
            "nonce": code.nonce, "at_hash": _half_hash(access_token), **self._claims(code.email, name, code.scope),
        }
        id_token = jwt.encode({"alg": "RS256", "typ": "JWT", "kid": self.kid}, claims, self.key, algorithms=["RS256"])
        if tamper:
            head, _, signature = id_token.rpartition(".")
            flipped = "A" if signature[0] != "A" else "B"
            id_token = f"{head}.{flipped}{signature[1:]}"
        return {"access_token": access_token, "token_type": "Bearer", "expires_in": int(self.token_ttl.total_seconds()),
                "id_token": id_token, "scope": " ".join(code.scope)}

    def _authenticate(self, form: dict[str, str], authorization: str) -> str:
        """The client id of a request authenticated by client_secret_basic or client_secret_post."""
        basic = authorization[6:].strip() if authorization[:6].lower() == "basic " else None
        if basic is not None and "client_secret" in form:
            raise _TokenError("invalid_request", "use one client authentication method")
        if basic is not None:
            try:
                raw_id, sep, raw_secret = base64.b64decode(basic, validate=True).decode().partition(":")
            except ValueError:
                raw_id, sep, raw_secret = "", "", ""
            if not sep:
                raise _TokenError("invalid_client", "malformed Basic credentials", 401,
                                  {"WWW-Authenticate": 'Basic realm="oidc-standin"'})
            client_id, secret = unquote_plus(raw_id), unquote_plus(raw_secret)  # RFC 6749 2.3.1
            if form.get("client_id", client_id) != client_id:
                raise _TokenError("invalid_request", "client_id differs from the authenticated client")
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        with self._lock:
            reg = self.clients.get(client_id)
        expected = reg.secret if reg else secrets.token_urlsafe(32)  # compared all the same: no timing tell
        if not hmac.compare_digest(secret.encode(), expected.encode()) or reg is None or not secret:
            raise _TokenError("invalid_client", "client authentication failed", 401,
                              {"WWW-Authenticate": 'Basic realm="oidc-standin"'})
        return client_id

    # ------------------------------------------------------------------ userinfo endpoint
    def userinfo(self, authorization: str) -> dict[str, Any]:
        challenge = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        if authorization[:7].lower() != "bearer ":
            raise _TokenError("invalid_request", "a Bearer access token is required", 401,
                              {"WWW-Authenticate": 'Bearer realm="oidc-standin"'})
        with self._lock:
            grant = self.access_tokens.get(authorization[7:].strip())
            if grant is None or self.clock() >= grant.expires_at:
                raise _TokenError("invalid_token", "unknown or expired access token", 401, challenge)
            name = self.users.get(grant.email, grant.email)
        return {"sub": subject(grant.email), **self._claims(grant.email, name, grant.scope)}

    def _claims(self, email: str, name: str, scope: tuple[str, ...]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.claims == "entra":
            # Microsoft Entra ID's v2.0 ID token: no `email` unless the app registration adds it as an optional
            # claim, never `email_verified`; with `profile`, `name` and `preferred_username` (the sign-in name, the
            # user principal name: usually the email address); `oid` and `tid` always
            out.update(oid=str(uuid.uuid5(uuid.NAMESPACE_URL, "oid:" + email)), tid=ENTRA_TENANT, ver="2.0")
            if "profile" in scope:
                out.update(name=name, preferred_username=email)
            return out
        if "email" in scope:
            out.update(email=email, email_verified=True)
        if "profile" in scope:
            out["name"] = name
        return out


# ---------------------------------------------------------------------- pages

_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>{title}</title></head>
<body>
<main>
<h1>{title}</h1>
{body}
</main>
</body>
</html>
"""


def sign_in_page(params: dict[str, str], client_id: str) -> str:
    """The sign-in form: an email field and a "Sign in" button, the authorization request in hidden fields."""
    hidden = "\n".join(f'<input type="hidden" name="{name}" value="{html.escape(params[name], quote=True)}">'
                       for name in AUTHORIZE_PARAMS if name in params)
    body = (f"<p>Sign in to <strong>{html.escape(client_id)}</strong> (OpenID Connect stand-in).</p>\n"
            '<form method="post" action="/authorize">\n'
            f"{hidden}\n"
            '<label for="email">Email</label>\n'
            '<input type="email" id="email" name="email" autocomplete="username" required autofocus>\n'
            '<button type="submit">Sign in</button>\n'
            "</form>")
    return _PAGE.format(title="Sign in", body=body)


def error_page(message: str) -> str:
    return _PAGE.format(title="Sign-in error", body=f"<p>{html.escape(message)}</p>")


class _Handler(JsonHandler):
    standin: OidcProvider

    def _dispatch(self, method: str) -> None:
        s = self.standin
        parts = urlsplit(self.path)
        route = f"{method} {parts.path}"
        try:
            raw = self._read_body()
            with s._lock:
                s.requests[route] += 1
            if route == "GET /.well-known/openid-configuration":
                self._send_json(200, s.metadata(), parts.path)
            elif route == "GET /jwks":
                self._send_json(200, s.jwks(), parts.path)
            elif route in ("GET /authorize", "POST /authorize"):
                self._authorize(method, parts.query, raw)
            elif route == "POST /token":
                self._token(raw)
            elif route in ("GET /userinfo", "POST /userinfo"):
                try:
                    body = s.userinfo(self.headers.get("Authorization", ""))
                except _TokenError as err:
                    self._send_json(err.status, {"error": err.error, "error_description": err.description},
                                    parts.path, err.headers)
                    return
                self._send_json(200, body, parts.path, {"Cache-Control": "no-store"})
            else:
                self._send_html(404, error_page(f"Not found: {method} {parts.path}"))
        except OSError:
            pass  # the client went away

    def _authorize(self, method: str, query: str, raw: bytes) -> None:
        s = self.standin
        if method == "POST" and "application/x-www-form-urlencoded" not in self.headers.get("Content-Type", ""):
            self._send_html(400, error_page("The sign-in form is posted as application/x-www-form-urlencoded."))
            return
        values = parse_qs(raw.decode("utf-8", "replace") if method == "POST" else query, keep_blank_values=True)
        twice = sorted(k for k, v in values.items() if len(v) > 1)
        if twice:
            self._send_html(400, error_page(f"Parameters given more than once: {', '.join(twice)}."))
            return
        params = {k: v[0] for k, v in values.items()}
        email = params.pop("email", "") if method == "POST" else None
        try:
            kind, location = s.authorize(params, email)
        except _PageError as err:
            self._send_html(err.status, error_page(err.message))
            return
        if kind == "page":
            self._send_html(200, sign_in_page(params, params["client_id"]))
        else:
            assert location is not None
            self._send_redirect(location)

    def _token(self, raw: bytes) -> None:
        s = self.standin
        no_store = {"Cache-Control": "no-store", "Pragma": "no-cache"}
        try:
            if "application/x-www-form-urlencoded" not in self.headers.get("Content-Type", ""):
                raise _TokenError("invalid_request", "the body is application/x-www-form-urlencoded")
            values = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
            if any(len(v) > 1 for v in values.values()):
                raise _TokenError("invalid_request", "a parameter is given more than once")
            body = s.token({k: v[0] for k, v in values.items()}, self.headers.get("Authorization", ""))
        except _TokenError as err:
            self._send_json(err.status, {"error": err.error, "error_description": err.description}, "/token",
                            {**err.headers, **no_store})
            return
        self._send_json(200, body, "/token", no_store)

    def _send_html(self, status: int, page: str) -> None:
        data = page.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def _send_redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
