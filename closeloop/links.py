"""The web app's pages that messages link to, from `[web] public_url`: one place for the scheme, so the links
in emails and Slack messages and the web app's routes agree.

A message to a person carries signed, expiring, single-purpose links when the worker has the web app's key
(CLOSELOOP_SESSION_SECRET): `<public_url>/go/<token>`, where the token is itsdangerous' URL-safe timed signature
(HMAC-SHA256, a salt of its own, so a session cookie is never a link nor a link a session) of {person, the
page's path, a token id}. The web app asks the person to sign in, checks the link is theirs and unused and
unexpired (`[web.auth] link_lifetime`), records its use, and only then opens the page. Without the key, the
links are the pages' own addresses (which need a sign-in too)."""

from __future__ import annotations

import secrets as token_source
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlsplit

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from closeloop.secrets import ENV_SESSION_SECRET, Secrets

SALT = "closeloop.action-link"


class LinkError(Exception):
    """The link cannot be used; the message is for the person."""


@dataclass(frozen=True)
class Link:
    person: str
    path: str
    token_id: str
    expires_at: datetime


def link_secret(secrets: Secrets) -> str:
    """The signing key: CLOSELOOP_SESSION_SECRET's first value, or "" (then links are not signed)."""
    values = secrets.values(ENV_SESSION_SECRET)
    return values[0] if values else ""


class LinkSigner:
    def __init__(self, secret: str, lifetime: timedelta) -> None:
        self._secret = secret
        self.lifetime = lifetime
        self._serializer = URLSafeTimedSerializer(secret or token_source.token_urlsafe(32), salt=SALT)

    @property
    def enabled(self) -> bool:
        return bool(self._secret)

    def make(self, person: str, path: str) -> str:
        """A token for `person` to open `path` (a path of the web app, e.g. `/postmortems/...`)."""
        if not path.startswith("/") or path.startswith("//"):
            raise ValueError("a link opens a path of closeloop's web app")
        return str(self._serializer.dumps({"p": person, "u": path, "j": token_source.token_urlsafe(12)}))

    def read(self, token: str) -> Link:
        if not self._secret:
            raise LinkError("links from messages are off here (CLOSELOOP_SESSION_SECRET is unset)")
        try:
            data, signed_at = self._serializer.loads(token, max_age=int(self.lifetime.total_seconds()),
                                                     return_timestamp=True)
        except SignatureExpired:
            raise LinkError("this link has expired; open the page from the dashboard instead") from None
        except BadSignature:
            raise LinkError("this link is not one closeloop made") from None
        if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("p", "u", "j")):
            raise LinkError("this link is not one closeloop made")
        signed = signed_at if signed_at.tzinfo else signed_at.replace(tzinfo=UTC)
        return Link(person=data["p"], path=data["u"], token_id=data["j"], expires_at=signed + self.lifetime)

    def sign(self, public_url: str, url: str, person: str) -> str:
        """`url` (a page of the web app at `public_url`) as `<public_url>/go/<token>` for `person`."""
        if not self.enabled:
            return url
        return f"{public_url.rstrip('/')}/go/{self.make(person, urlsplit(url).path)}"


def postmortem_url(public_url: str | None, postmortem_id: str) -> str | None:
    """`<public_url>/postmortems/<postmortem id>`, or None when the web app's address is not configured."""
    if not public_url:
        return None
    return f"{public_url.rstrip('/')}/postmortems/{quote(postmortem_id, safe='/')}"


def item_url(public_url: str | None, postmortem_id: str, item_id: str) -> str | None:
    """`<postmortem page>/items/<item id>`, or None."""
    page = postmortem_url(public_url, postmortem_id)
    return f"{page}/items/{quote(item_id, safe='')}" if page else None


def links(public_url: str | None, postmortem_id: str, item_id: str | None, *, person: str | None = None,
          signer: LinkSigner | None = None) -> dict[str, str]:
    """The links a notification about this postmortem (and item) carries: `postmortem`, and `item`; signed for
    `person` when a signer with a key is given."""
    found = {"postmortem": postmortem_url(public_url, postmortem_id)}
    if item_id:
        found["item"] = item_url(public_url, postmortem_id, item_id)
    out = {k: v for k, v in found.items() if v}
    if public_url and person and signer is not None and signer.enabled:
        out = {k: signer.sign(public_url, v, person) for k, v in out.items()}
    return out
