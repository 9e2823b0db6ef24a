"""Outbound URLs: every value that goes into a path is one quoted segment, so an id such as `a/b`, `..` or
`x?admin=1#` can never reach another resource, a query or a fragment of the vendor's API."""

from __future__ import annotations

from urllib.parse import quote

from closeloop.integrations.base import IntegrationError


def segment(value: object) -> str:
    """`value` as exactly one path segment, every reserved character percent-encoded (`/`, `?`, `#`, `%`...).
    An empty, `.` or `..` value is refused (IntegrationError, not retryable): clients resolve those as steps
    (requests even turns `%2E%2E` back into `..`), so no encoding keeps them one segment."""
    text = str(value)
    if text.strip(".") == "":
        raise IntegrationError(f"{text!r} is no id: it cannot be one segment of a URL path", retryable=False)
    return quote(text, safe="")
