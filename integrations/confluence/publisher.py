"""The postmortem as a Confluence Cloud page, through the REST API v2 (`<base_url>/api/v2/...`) with httpx.

Finding the page again (idempotency). Confluence v2 has no search by content property (CQL is v1 only), so:
  - the page's title is unique per postmortem: "<document title> (<source>/<external id>)" (Confluence also
    refuses two pages of one title in a space);
  - the page carries the content property `closeloop-postmortem` = {"postmortem_id": ...}, set right after it
    is created (`POST /pages/{id}/properties`: v2 cannot set properties in the create request itself);
  - `publish` first lists the pages of the space with that exact title (`GET /pages?space-id=&title=`) and reads
    each candidate's property (`GET /pages/{id}/properties?key=closeloop-postmortem`). A candidate whose property
    names this postmortem is the page; one without the property is the page too, created by a publish whose
    answer was lost before the property was set: it is adopted (the property set now). A page of that title
    whose property names another postmortem is someone else's: an error no retry fixes.
So a retry after a lost create response (the page exists, the answer never came) updates that page and creates
no second one.

Updating: `GET /pages/{id}?body-format=storage` for the version, then `PUT /pages/{id}` with version + 1, the same
title and the new body (nothing when title and body are unchanged). A 409 (someone edited in between) re-reads the
version and tries once more.

The body is the document's HTML made into Confluence storage format (XHTML): the `<body>`'s content only
(no head, style or script), void elements closed (`<br />`), every tag closed, attributes quoted, text and
attribute values escaped, entities as characters (`storage_format`).

Errors become `ConfluenceError` (an HttpIntegrationError): 401/403 are not retryable (the message says which
secret and account to check; the token is never logged nor put in an error), nor are other 4xx; 408, 429
(with Retry-After), 5xx, timeouts and connection failures are. The client itself never retries: a POST whose
answer was lost is only ever repeated by the activity's retry, after looking the page up.
"""

from __future__ import annotations

import html
from html.parser import HTMLParser
from typing import Any

import httpx
import structlog

from closeloop.integrations.base import Document, HttpIntegrationError, Publisher
from closeloop.integrations.confluence.settings import ENV_API_TOKEN, ConfluenceSettings

PROPERTY_KEY = "closeloop-postmortem"
VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track",
                  "wbr"})
SKIPPED = frozenset({"head", "style", "script", "title", "template", "noscript"})
ROOTS = frozenset({"html", "body"})
BLOCKS = frozenset({"p", "div", "ul", "ol", "table", "pre", "blockquote", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
                    "dl", "section", "article", "header", "footer", "figure"})
# HTML's optional end tags: opening the key closes an open tag of the value, unless one of the scope's is nearer.
IMPLIED = {"li": ({"li"}, {"ul", "ol"}), "tr": ({"tr", "td", "th"}, {"table", "thead", "tbody", "tfoot"}),
           "td": ({"td", "th"}, {"tr"}), "th": ({"td", "th"}, {"tr"}), "dt": ({"dt", "dd"}, {"dl"}),
           "dd": ({"dt", "dd"}, {"dl"}), "option": ({"option"}, {"select"})}


class ConfluenceError(HttpIntegrationError):
    pass


class _Storage(HTMLParser):
    """HTML (the rendered postmortem page) -> well-formed XHTML for Confluence's storage format."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.open: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in SKIPPED:
            self.skipping += tag not in VOID
            return
        if self.skipping or tag in ROOTS:
            return
        self._close_implied(tag)
        text = "".join(f' {name}="{html.escape(value if value is not None else name, quote=True)}"'
                       for name, value in attrs if name.replace("-", "").replace("_", "").isalnum())
        if tag in VOID:
            self.out.append(f"<{tag}{text} />")
        else:
            self.out.append(f"<{tag}{text}>")
            self.open.append(tag)

    def _close_implied(self, tag: str) -> None:
        closes, scope = IMPLIED.get(tag, (set(), set()))
        if tag in BLOCKS:
            closes, scope = {"p"}, {"div", "td", "th", "li", "blockquote", "section", "article"}
        for depth in range(len(self.open) - 1, -1, -1):
            if self.open[depth] in scope:
                return
            if self.open[depth] in closes:
                self.out.extend(f"</{t}>" for t in reversed(self.open[depth:]))
                del self.open[depth:]
                return

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in VOID:
            self.handle_starttag(tag, attrs)
        else:
            self.handle_starttag(tag, attrs)
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in SKIPPED:
            self.skipping = max(0, self.skipping - 1)
            return
        if self.skipping or tag in ROOTS or tag in VOID or tag not in self.open:
            return  # a stray end tag
        while self.open:
            top = self.open.pop()
            self.out.append(f"</{top}>")
            if top == tag:
                break

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.out.append(html.escape(data, quote=False))

    def result(self) -> str:
        self.close()
        self.out.extend(f"</{tag}>" for tag in reversed(self.open))
        self.open.clear()
        return "".join(self.out).strip()


def storage_format(document_html: str) -> str:
    """The document's HTML as Confluence storage format: well-formed XHTML of the body's content."""
    parser = _Storage()
    parser.feed(document_html)
    return parser.result()


def page_title(document: Document) -> str:
    """The page's title, unique per postmortem: "Postmortem: <incident title> (<source>/<external id>)"."""
    ref = document.postmortem_id.removeprefix("postmortem/")
    return f"{document.title} ({ref})"[:255]


def _retry_after(response: httpx.Response) -> float | None:
    try:
        value = response.headers.get("Retry-After")
        return float(value) if value is not None else None
    except ValueError:
        return None


class ConfluencePublisher(Publisher):
    name = "confluence"

    def __init__(self, settings: ConfluenceSettings, *, api_token: str,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        self.base_url = settings.base_url.rstrip("/")
        self._token = api_token
        self._space_id = settings.space_id
        self.log = structlog.get_logger("closeloop.integrations.confluence")
        self.client = httpx.Client(
            base_url=f"{self.base_url}/api/v2", auth=httpx.BasicAuth(settings.email, api_token),
            timeout=httpx.Timeout(settings.timeout), headers={"Accept": "application/json"}, transport=transport,
            follow_redirects=False)

    def __repr__(self) -> str:  # never the token
        return f"ConfluencePublisher({self.base_url!r}, email={self.settings.email!r})"

    def close(self) -> None:
        self.client.close()

    # ------------------------------------------------------------------ HTTP
    def _redact(self, text: str) -> str:
        return text.replace(self._token, "<redacted>") if self._token else text

    def _call(self, method: str, path: str, what: str, *, params: dict[str, Any] | None = None,
              json: Any = None, ok: tuple[int, ...] = (200, 201)) -> Any:
        try:
            response = self.client.request(method, path, params=params, json=json)
        except httpx.TimeoutException as exc:
            raise ConfluenceError(f"Confluence {what}: timed out after {self.settings.timeout:g}s "
                                  f"({type(exc).__name__})", retryable=True) from None
        except httpx.HTTPError as exc:
            raise ConfluenceError(self._redact(f"Confluence {what}: {type(exc).__name__}: {exc}")[:500],
                                  retryable=True) from None
        if response.status_code in ok:
            return response.json() if response.content else None
        raise self._error(response, what)

    def _error(self, response: httpx.Response, what: str) -> ConfluenceError:
        status = response.status_code
        detail = ""
        try:
            errors = response.json().get("errors") or []
            detail = "; ".join(str(e.get("title") or e.get("detail") or e.get("code") or "") for e in errors)
        except (ValueError, AttributeError):
            detail = response.text[:200]
        if status in (401, 403):
            message = (f"Confluence {what}: HTTP {status}: "
                       + ("the API token or e-mail is not accepted" if status == 401 else "the account may not")
                       + f": check {ENV_API_TOKEN} and [publishers.confluence] email ({self.settings.email}), and "
                       "that the account can view and edit the space"
                       + (f" ({detail})" if detail else ""))
            return ConfluenceError(self._redact(message)[:1000], retryable=False, status=status)
        retry_after = _retry_after(response)
        return ConfluenceError(self._redact(f"Confluence {what}: HTTP {status}: {detail}".rstrip(": "))[:1000],
                               retryable=ConfluenceError.is_retryable(status), status=status, retry_after=retry_after)

    # ------------------------------------------------------------------ the space and the page
    def space_id(self) -> str:
        """The configured space's id (a space key is looked up once: `GET /spaces?keys=`)."""
        if self._space_id is None:
            key = self.settings.space_key or ""
            found = self._call("GET", "/spaces", f"find space {key}", params={"keys": key, "limit": 1})
            results = (found or {}).get("results") or []
            if not results:
                raise ConfluenceError(f"Confluence: no space with the key {key!r} (or the account "
                                      f"{self.settings.email} cannot see it)", retryable=False)
            self._space_id = str(results[0]["id"])
        return self._space_id

    def _property(self, page_id: str) -> dict[str, Any] | None:
        found = self._call("GET", f"/pages/{page_id}/properties", "read page properties",
                           params={"key": PROPERTY_KEY})
        results = (found or {}).get("results") or []
        return next((p for p in results if p.get("key") == PROPERTY_KEY), None)

    def _set_property(self, page_id: str, postmortem_id: str) -> None:
        self._call("POST", f"/pages/{page_id}/properties", "set the page property",
                   json={"key": PROPERTY_KEY, "value": {"postmortem_id": postmortem_id}})

    def find(self, space_id: str, title: str, postmortem_id: str) -> str | None:
        """The id of this postmortem's page (see the module docstring), its property set; None when none."""
        found = self._call("GET", "/pages", "find the page",
                           params={"space-id": space_id, "title": title, "status": "current", "limit": 25})
        for page in (found or {}).get("results") or []:
            page_id = str(page["id"])
            prop = self._property(page_id)
            if prop is None:
                self.log.info("confluence page adopted", page_id=page_id, postmortem_id=postmortem_id)
                self._set_property(page_id, postmortem_id)  # created by a publish whose answer was lost
                return page_id
            value = prop.get("value")
            if isinstance(value, dict) and value.get("postmortem_id") == postmortem_id:
                return page_id
            raise ConfluenceError(f"Confluence: the page {title!r} ({page_id}) belongs to another postmortem "
                                  f"({PROPERTY_KEY} = {value!r})", retryable=False)
        return None

    def _create(self, space_id: str, title: str, body: str, postmortem_id: str) -> dict[str, Any]:
        request: dict[str, Any] = {"spaceId": space_id, "status": "current", "title": title,
                                   "body": {"representation": "storage", "value": body}}
        if self.settings.parent_id:
            request["parentId"] = self.settings.parent_id
        page: dict[str, Any] = self._call("POST", "/pages", "create the page", json=request)
        self._set_property(str(page["id"]), postmortem_id)
        self.log.info("confluence page created", page_id=page["id"], postmortem_id=postmortem_id)
        return page

    def _update(self, page_id: str, title: str, body: str) -> dict[str, Any]:
        for attempt in (1, 2):
            current: dict[str, Any] = self._call("GET", f"/pages/{page_id}", "read the page",
                                                 params={"body-format": "storage"})
            stored = ((current.get("body") or {}).get("storage") or {}).get("value")
            if current.get("title") == title and stored == body:
                return current  # nothing changed
            number = int((current.get("version") or {}).get("number") or 0) + 1
            try:
                page: dict[str, Any] = self._call(
                    "PUT", f"/pages/{page_id}", "update the page",
                    json={"id": page_id, "status": "current", "title": title,
                          "body": {"representation": "storage", "value": body},
                          "version": {"number": number, "message": "published by closeloop"}})
            except ConfluenceError as exc:
                if exc.status == 409 and attempt == 1:
                    self.log.info("confluence version conflict, reading again", page_id=page_id)
                    continue
                raise
            self.log.info("confluence page updated", page_id=page_id, version=number)
            return page
        raise AssertionError("unreachable")

    def _web_url(self, page: dict[str, Any]) -> str:
        webui = str((page.get("_links") or {}).get("webui") or "")
        if not webui:
            return f"{self.base_url}/pages/viewpage.action?pageId={page['id']}"
        return webui if webui.startswith("http") else self.base_url + webui

    # ------------------------------------------------------------------ Publisher
    def publish(self, document: Document, idempotency_key: str) -> str:
        # Idempotent by the page's title and property, whatever the key: every publish of a postmortem updates
        # its one page.
        space_id = self.space_id()
        title = page_title(document)
        body = storage_format(document.html)
        page_id = self.find(space_id, title, document.postmortem_id)
        page = (self._create(space_id, title, body, document.postmortem_id) if page_id is None
                else self._update(page_id, title, body))
        return self._web_url(page)
