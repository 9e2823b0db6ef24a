"""The web app's pages that messages link to, from `[web] public_url`: one place for the scheme, so the links
in emails and Slack messages and the web app's routes agree."""

from __future__ import annotations

from urllib.parse import quote


def postmortem_url(public_url: str | None, postmortem_id: str) -> str | None:
    """`<public_url>/postmortems/<postmortem id>`, or None when the web app's address is not configured."""
    if not public_url:
        return None
    return f"{public_url.rstrip('/')}/postmortems/{quote(postmortem_id, safe='/')}"


def item_url(public_url: str | None, postmortem_id: str, item_id: str) -> str | None:
    """`<postmortem page>/items/<item id>`, or None."""
    page = postmortem_url(public_url, postmortem_id)
    return f"{page}/items/{quote(item_id, safe='')}" if page else None


def links(public_url: str | None, postmortem_id: str, item_id: str | None) -> dict[str, str]:
    """The links a notification about this postmortem (and item) carries: `postmortem`, and `item`."""
    found = {"postmortem": postmortem_url(public_url, postmortem_id)}
    if item_id:
        found["item"] = item_url(public_url, postmortem_id, item_id)
    return {k: v for k, v in found.items() if v}
