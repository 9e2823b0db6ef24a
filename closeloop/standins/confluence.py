"""A Confluence Cloud stand-in: the part of the REST API v2 that `ConfluencePublisher` uses, under `/wiki/api/v2`.

    with ConfluenceStandin(email="me@example.com", token="t") as confluence:   # confluence.url + "/wiki" is the site
        ...

Implemented (state in memory): `GET /spaces` (`keys`, `ids`), `GET|POST /pages` (`space-id`, `title`, `status`
filters), `GET|PUT /pages/{id}` (`body-format=storage`; PUT needs version = current + 1, else 409, and a title
free in the space), `GET|POST /pages/{page-id}/properties` (`key` filter; a key set twice is 400). A page's
title is unique in its space (400 on create, as on Confluence). Every request needs basic auth with `email` and
`token` (else 401). Errors come as v2's `{"errors": [{status, code, title, detail}]}`.

Test hooks: `spaces` (id -> {key, name, homepage}), `pages` (id -> dict), `properties` (page id -> key -> dict),
`add_space()`, `add_page()`, `bump_version(id)` (someone else edits the page: a PUT with the old version gets 409);
faults, each consumed by the next matching request: `lose_next_create_response()` (the page is created, then the
connection is dropped without an answer), `fail_next(n, status=500, path=...)`, `rate_limit_next(retry_after=1)`.
`validator(method, path, status, body)` checks every JSON response (tests fail on any violation).
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from closeloop.standins._server import Fault, JsonHandler, StandinServer, Validator, compile_routes, match_route

PREFIX = "/wiki/api/v2"
ROUTES = [
    ("GET", f"{PREFIX}/spaces", "spaces"),
    ("GET", f"{PREFIX}/pages", "list_pages"), ("POST", f"{PREFIX}/pages", "create"),
    ("GET", f"{PREFIX}/pages/{{id}}", "get_page"), ("PUT", f"{PREFIX}/pages/{{id}}", "update"),
    ("GET", f"{PREFIX}/pages/{{id}}/properties", "properties"),
    ("POST", f"{PREFIX}/pages/{{id}}/properties", "add_property"),
]
_ROUTES = compile_routes(ROUTES)
AUTHOR = "557058:standin-bot"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class HttpError(Exception):
    def __init__(self, status: int, title: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status, title)
        self.status, self.headers = status, headers or {}
        code = {400: "INVALID_REQUEST_PARAMETER", 401: "UNAUTHORIZED", 404: "NOT_FOUND", 409: "CONFLICT",
                429: "TOO_MANY_REQUESTS"}.get(status, "INTERNAL_SERVER_ERROR")
        self.body = {"errors": [{"status": status, "code": code, "title": title, "detail": None}]}


class ConfluenceStandin(StandinServer):
    thread_name = "confluence-standin"

    def __init__(self, *, email: str = "closeloop@example.com", token: str = "secret-token",
                 validator: Validator | None = None, port: int = 0) -> None:
        super().__init__(validator)
        self.email, self.token = email, token
        self.spaces: dict[str, dict[str, Any]] = {}
        self.pages: dict[str, dict[str, Any]] = {}
        self.properties: dict[str, dict[str, dict[str, Any]]] = {}
        self._next_id = 65536
        self._serve(_Handler, port=port)
        self.add_space("ENG", "Engineering")

    @property
    def site(self) -> str:
        """The site's wiki URL: `[publishers.confluence] base_url`."""
        return self.url + "/wiki"

    # ------------------------------------------------------------------ hooks
    def _id(self) -> str:
        with self._lock:
            self._next_id += 1
            return str(self._next_id)

    def add_space(self, key: str, name: str) -> str:
        space_id = self._id()
        self.spaces[space_id] = {"key": key, "name": name, "homepage": None}
        self.spaces[space_id]["homepage"] = self.add_page(space_id, f"{name} Home", "<p>Welcome</p>", parent=None)
        return space_id

    def add_page(self, space_id: str, title: str, body: str, parent: str | None = "") -> str:
        """A page straight into the state (no request); `parent` "" means the space's homepage."""
        with self._lock:
            page_id = self._id()
            if parent == "":
                parent = self.spaces[space_id]["homepage"]
            self.pages[page_id] = {"id": page_id, "spaceId": space_id, "title": title, "body": body,
                                   "parentId": parent, "version": 1, "createdAt": _now(), "versionAt": _now(),
                                   "status": "current"}
            self.properties[page_id] = {}
            return page_id

    def space_id(self, key: str) -> str:
        return next(i for i, s in self.spaces.items() if s["key"] == key)

    def bump_version(self, page_id: str) -> None:
        with self._lock:
            self.pages[page_id]["version"] += 1

    def lose_next_create_response(self) -> None:
        self._faults.append(Fault("lose", f"POST {PREFIX}/pages"))

    # ------------------------------------------------------------------ representations
    def _page(self, page_id: str, body: bool = False) -> dict[str, Any]:
        p = self.pages[page_id]
        space_key = self.spaces[p["spaceId"]]["key"]
        out: dict[str, Any] = {
            "id": page_id, "status": p["status"], "title": p["title"], "spaceId": p["spaceId"],
            "parentType": "page", "position": 0, "authorId": AUTHOR, "ownerId": AUTHOR, "lastOwnerId": None,
            "createdAt": p["createdAt"],
            "version": {"createdAt": p["versionAt"], "message": "", "number": p["version"], "minorEdit": False,
                        "authorId": AUTHOR},
            "body": {"storage": {"representation": "storage", "value": p["body"]}} if body else {},
            "_links": {"webui": f"/spaces/{space_key}/pages/{page_id}/{quote(p['title'].replace(' ', '+'), safe='+')}",
                       "editui": f"/pages/resumedraft.action?draftId={page_id}", "tinyui": f"/x/{page_id}"},
        }
        if p["parentId"] is not None:
            out["parentId"] = p["parentId"]
        else:
            del out["parentType"]
        return out

    def _single(self, page_id: str, body: bool) -> dict[str, Any]:
        out = self._page(page_id, body)
        out["_links"]["base"] = self.site
        return out

    def _property(self, prop: dict[str, Any]) -> dict[str, Any]:
        return {"id": prop["id"], "key": prop["key"], "value": prop["value"],
                "version": {"createdAt": prop["at"], "message": "", "number": 1, "minorEdit": False,
                            "authorId": AUTHOR}}

    def _find(self, page_id: str) -> str:
        if page_id not in self.pages or self.pages[page_id]["status"] != "current":
            raise HttpError(404, "Page not found")
        return page_id

    def _title_taken(self, space_id: str, title: str, but: str | None = None) -> bool:
        return any(p["spaceId"] == space_id and p["title"] == title and i != but and p["status"] == "current"
                   for i, p in self.pages.items())

    # ------------------------------------------------------------------ handlers
    def h_spaces(self, req: _Request) -> tuple[int, Any]:
        keys = req.list_param("keys")
        ids = req.list_param("ids")
        results = [{"id": i, "key": s["key"], "name": s["name"], "type": "global", "status": "current",
                    "authorId": AUTHOR, "createdAt": _now(), "homepageId": s["homepage"],
                    "_links": {"webui": f"/spaces/{s['key']}"}}
                   for i, s in self.spaces.items() if (keys is None or s["key"] in keys) and (ids is None or i in ids)]
        return 200, {"results": results, "_links": {"base": self.site}}

    def h_list_pages(self, req: _Request) -> tuple[int, Any]:
        space, title, status = req.param("space-id"), req.param("title"), req.param("status") or "current"
        body = req.param("body-format") == "storage"
        with self._lock:
            found = [i for i, p in self.pages.items()
                     if (space is None or p["spaceId"] == space) and (title is None or p["title"] == title)
                     and p["status"] == status]
            results = [self._page(i, body) for i in found[:int(req.param("limit") or 25)]]
        return 200, {"results": results, "_links": {"base": self.site}}

    def h_create(self, req: _Request) -> tuple[int, Any]:
        data = req.json or {}
        space, title = str(data.get("spaceId") or ""), data.get("title")
        if space not in self.spaces:
            raise HttpError(400, "Space not found or you lack permission")
        if not title:
            raise HttpError(400, "Title is required for a page that is not a draft")
        body = data.get("body") or {}
        if body.get("representation") != "storage" or not isinstance(body.get("value"), str):
            raise HttpError(400, "The stand-in takes the storage representation only")
        parent = data.get("parentId")
        if parent is not None and (parent not in self.pages or self.pages[parent]["spaceId"] != space):
            raise HttpError(400, "Parent page not found in the space")
        with self._lock:
            if self._title_taken(space, title):
                raise HttpError(400, "A page with this title already exists")
            page_id = self.add_page(space, title, body["value"], parent=parent or "")
        return 200, self._single(page_id, True)

    def h_get_page(self, req: _Request) -> tuple[int, Any]:
        return 200, self._single(self._find(req.key), req.param("body-format") == "storage")

    def h_update(self, req: _Request) -> tuple[int, Any]:
        page_id = self._find(req.key)
        data = req.json or {}
        missing = [f for f in ("id", "status", "title", "body", "version") if f not in data]
        if missing:
            raise HttpError(400, f"missing {', '.join(missing)}")
        body = data["body"]
        if body.get("representation") != "storage" or not isinstance(body.get("value"), str):
            raise HttpError(400, "The stand-in takes the storage representation only")
        with self._lock:
            page = self.pages[page_id]
            number = (data.get("version") or {}).get("number")
            if number != page["version"] + 1:
                raise HttpError(409, f"Version must be incremented on update. Current version is: {page['version']}")
            if self._title_taken(page["spaceId"], data["title"], but=page_id):
                raise HttpError(400, "A page with this title already exists")
            page.update(title=data["title"], body=body["value"], version=number, versionAt=_now())
        return 200, self._single(page_id, True)

    def h_properties(self, req: _Request) -> tuple[int, Any]:
        page_id = self._find(req.key)
        key = req.param("key")
        results = [self._property(p) for k, p in self.properties[page_id].items() if key is None or k == key]
        return 200, {"results": results, "_links": {"base": self.site}}

    def h_add_property(self, req: _Request) -> tuple[int, Any]:
        page_id = self._find(req.key)
        data = req.json or {}
        key = data.get("key")
        if not isinstance(key, str) or not key or "value" not in data:
            raise HttpError(400, "key and value are required")
        with self._lock:
            if key in self.properties[page_id]:
                raise HttpError(400, f"A property with key {key} already exists")
            prop = {"id": self._id(), "key": key, "value": data["value"], "at": _now()}
            self.properties[page_id][key] = prop
        return 200, self._property(prop)


class _Request:
    def __init__(self, method: str, query: dict[str, list[str]], key: str | None, json_body: Any) -> None:
        self.method, self.query, self.key, self.json = method, query, key, json_body

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None

    def list_param(self, name: str) -> list[str] | None:
        values = self.query.get(name)
        return [v for value in values for v in value.split(",") if v] if values else None


class _Handler(JsonHandler):
    standin: ConfluenceStandin

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self._send_json(status, body, urlsplit(self.path).path, headers)

    def _authorized(self) -> bool:
        s = self.standin
        expected = "Basic " + base64.b64encode(f"{s.email}:{s.token}".encode()).decode()
        return self.headers.get("Authorization") == expected

    def _dispatch(self, method: str) -> None:
        s = self.standin
        parts = urlsplit(self.path)
        raw = self._read_body()
        try:
            if (route := match_route(_ROUTES, method, parts.path)) is None:
                raise HttpError(404, f"No resource {method} {parts.path} in the stand-in")
            template, name, args = route
            with s._lock:
                s.requests[f"{method} {template.removeprefix(PREFIX)}"] += 1
            if not self._authorized():
                raise HttpError(401, "Unauthorized; scope does not match")
            if fault := s._take_fault(method, template, ("fail", "rate")):
                if fault.kind == "rate":
                    raise HttpError(429, "Rate limit exceeded", headers={"Retry-After": str(fault.kw["retry_after"])})
                raise HttpError(fault.kw["status"], "Internal server error (injected)")
            try:
                json_body = json.loads(raw) if raw else None
            except ValueError:
                raise HttpError(400, "Unexpected character in the request body") from None
            req = _Request(method, parse_qs(parts.query), args.get("id"), json_body)
            status, body = getattr(s, f"h_{name}")(req)
            if name == "create" and s._take_fault(method, template, ("lose",)):
                self.close_connection = True  # created, but the answer never arrives
                return
            self._send(status, body)
        except HttpError as err:
            try:
                self._send(err.status, err.body, err.headers)
            except OSError:
                pass
        except OSError:
            pass  # the client went away (timeouts)
