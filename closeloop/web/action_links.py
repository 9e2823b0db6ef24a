"""Signed, expiring, single-purpose links for messages: `/go/<token>` opens one page of the web app, for one
person, once. The token is itsdangerous' URL-safe timed signature (HMAC-SHA256 over the payload and its time)
of {person, path, token id}, keyed by CLOSELOOP_SESSION_SECRET with a salt of its own, so a session cookie is
never a link and a link never a session. The web app still asks the person to sign in, checks the link is
theirs, records its id as used (a second use is refused) and only then redirects to its page."""

from __future__ import annotations

import secrets as token_source
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

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
    """The signing key: CLOSELOOP_SESSION_SECRET's first value, or "" (then links cannot be made or opened)."""
    values = secrets.values(ENV_SESSION_SECRET)
    return values[0] if values else ""


class Signer:
    def __init__(self, secret: str, lifetime: timedelta) -> None:
        self._secret = secret
        self.lifetime = lifetime
        self._serializer = URLSafeTimedSerializer(secret or token_source.token_urlsafe(32), salt=SALT)

    def make(self, person: str, path: str) -> str:
        """A token for `person` to open `path` (a path of this site, e.g. `/postmortems/...`)."""
        if not path.startswith("/") or path.startswith("//"):
            raise ValueError("a link opens a path of closeloop's web app")
        return str(self._serializer.dumps({"p": person, "u": path, "j": token_source.token_urlsafe(12)}))

    def read(self, token: str) -> Link:
        if not self._secret:
            raise LinkError("links from messages are off here (CLOSELOOP_SESSION_SECRET is unset)")
        max_age = int(self.lifetime.total_seconds())
        try:
            data, signed_at = self._serializer.loads(token, max_age=max_age, return_timestamp=True)
        except SignatureExpired:
            raise LinkError("this link has expired; open the page from the dashboard instead") from None
        except BadSignature:
            raise LinkError("this link is not one closeloop made") from None
        if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("p", "u", "j")):
            raise LinkError("this link is not one closeloop made")
        signed = signed_at if signed_at.tzinfo else signed_at.replace(tzinfo=UTC)
        return Link(person=data["p"], path=data["u"], token_id=data["j"], expires_at=signed + self.lifetime)
