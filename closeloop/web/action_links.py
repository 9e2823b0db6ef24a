"""Signed, expiring, single-purpose links for messages (`/go/<token>`): the signer is closeloop.links' (the
worker signs the links in messages with it; the web app reads them)."""

from __future__ import annotations

from closeloop.links import Link, LinkError, link_secret
from closeloop.links import LinkSigner as Signer

__all__ = ["Link", "LinkError", "Signer", "link_secret"]
