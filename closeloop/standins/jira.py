"""A Jira Cloud stand-in: the part of the REST API (v2) that the `jira` client and `JiraTracker` use.

    with JiraStandin() as jira:          # 127.0.0.1, a free port; jira.url is the base URL
        JIRA(jira.url, basic_auth=("me@example.com", "token"))

Implemented (state in memory): `GET /rest/api/2/serverInfo` (deploymentType Cloud), `GET /rest/api/2/field`,
`GET /rest/api/2/myself`, `POST /rest/api/2/issue`, `GET /rest/api/2/issue/{key}`,
`GET|POST /rest/api/2/issue/{key}/comment`, `GET|POST /rest/api/2/issue/{key}/transitions`, and
`GET|POST /rest/api/2/search/jql` with a JQL subset (`key in (A, B)`, `labels = "x"`, `project = P`,
`text ~ "words"` (whole words in the summary, description and comments; the string is a Lucene query as on
Jira: `\\"a phrase\\"` matches literally, `\\`-escaped characters are literal, an unescaped `*` is a wildcard
and `OR` joins alternatives), JQL strings with `\\"` and `\\\\` escapes, joined by AND and OR with parentheses,
`ORDER BY` ignored) and `nextPageToken` / `isLast` paging (`maxResults`, capped at `max_results`). Errors come
as Jira's `ErrorCollection`. URLs are built from the server's own address.

More projects (`projects`, key -> name; issue keys count per project), components per project
(`components`, project key -> names; `fields.components` by name or id, an unknown one is refused with 400)
and custom fields (`custom_fields`, id -> name; listed by `/field`, any JSON value stored and returned as
set). Any other field on create is refused with 400, as on a screen without it. `port` binds a fixed port.

Test hooks: `issues` (key -> dict), `jql` (every JQL query searched, in order), `requests` (Counter of
"METHOD /route/{template}"), `users`
(accountId -> display name; an unknown assignee is refused with 400 as on Jira), `set_status()`,
`add_issue()` (an issue straight into the state, no request: as someone made it at a given time,
optionally resolved at another, or many for benchmarks), `move(key, project)` (a project move as on Jira:
the issue gets the next key of the other project and the old key stays resolvable, so `GET /issue/OLD-1`
and `key in (OLD-1)` answer with the issue under its new key), `delete(key)` (gone: 404, and searches no
longer return it), and
faults, each consumed by the next matching request (`path` narrows it to a route template):
`lose_next_create_response()` (the issue is created, then the connection dropped without an answer),
`fail_next(n, status=500)`, `rate_limit_next(retry_after=1)` (429 with Retry-After), `delay_next(seconds)`.
`validator(method, path, status, body)` is called on every JSON response before it is sent; whatever it
raises is recorded in `violations` (tests fail on any).
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from closeloop.standins._server import Fault, JsonHandler, StandinServer, Validator, compile_routes, match_route

STATUSES = {  # name -> (id, category id, category key, category name, colour)
    "To Do": ("10000", 2, "new", "To Do", "blue-gray"),
    "In Progress": ("3", 4, "indeterminate", "In Progress", "yellow"),
    "Done": ("10001", 3, "done", "Done", "green"),
}
TRANSITIONS = {"11": ("To Do", "To Do"), "21": ("In Progress", "In Progress"), "31": ("Done", "Done")}
PRIORITIES = {"Highest": "1", "High": "2", "Medium": "3", "Low": "4", "Lowest": "5"}
ISSUE_TYPES = {"Task": "10001", "Bug": "10002", "Story": "10003"}
RESOLUTIONS = {"Done": "10000", "Won't Do": "10001", "Duplicate": "10002", "Cannot Reproduce": "10003"}
FIELDS = [  # id, name, clause names, schema type
    ("summary", "Summary", ["summary"], "string"), ("description", "Description", ["description"], "string"),
    ("issuetype", "Issue Type", ["issuetype", "type"], "issuetype"), ("project", "Project", ["project"], "project"),
    ("priority", "Priority", ["priority"], "priority"), ("labels", "Labels", ["labels"], "array"),
    ("assignee", "Assignee", ["assignee"], "user"), ("duedate", "Due date", ["due", "duedate"], "date"),
    ("status", "Status", ["status"], "status"), ("resolution", "Resolution", ["resolution"], "resolution"),
    ("comment", "Comment", ["comment"], "comments-page"),
    ("created", "Created", ["created", "createdDate"], "datetime"),
    ("updated", "Updated", ["updated", "updatedDate"], "datetime"),
]
ROUTES = [  # (method, template, handler name)
    ("GET", "/rest/api/2/serverInfo", "serverInfo"), ("GET", "/rest/api/2/field", "field"),
    ("GET", "/rest/api/2/myself", "myself"), ("POST", "/rest/api/2/issue", "create"),
    ("GET", "/rest/api/2/search/jql", "search"), ("POST", "/rest/api/2/search/jql", "search"),
    ("GET", "/rest/api/2/issue/{key}", "get_issue"), ("GET", "/rest/api/2/issue/{key}/comment", "comments"),
    ("POST", "/rest/api/2/issue/{key}/comment", "add_comment"),
    ("GET", "/rest/api/2/issue/{key}/transitions", "transitions"),
    ("POST", "/rest/api/2/issue/{key}/transitions", "do_transition"),
]
_ROUTES = compile_routes(ROUTES)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


class HttpError(Exception):
    def __init__(self, status: int, messages: list[str] | None = None, errors: dict[str, str] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(status, messages, errors)
        self.status, self.headers = status, headers or {}
        self.body = {"errorMessages": messages or [], "errors": errors or {}}


class JiraStandin(StandinServer):
    thread_name = "jira-standin"

    def __init__(self, *, project: str = "CL", project_name: str = "Closeloop", max_results: int = 100,
                 users: dict[str, str] | None = None, validator: Validator | None = None,
                 projects: dict[str, str] | None = None, components: dict[str, list[str]] | None = None,
                 custom_fields: dict[str, str] | None = None, port: int = 0) -> None:
        super().__init__(validator)
        self.project, self.project_name, self.project_id = project, project_name, "10000"
        # key -> {"id", "name", "components": name -> id}: the default project and any others
        self.projects: dict[str, dict[str, Any]] = {}
        for n, (key, name) in enumerate({project: project_name, **(projects or {})}.items()):
            self.projects[key] = {"id": str(10000 + n), "name": name, "components": {}}
        for key, names in (components or {}).items():
            self.projects[key]["components"] = {c: str(10100 + 10 * list(self.projects).index(key) + i)
                                                for i, c in enumerate(names)}
        self.custom_fields = dict(custom_fields or {})  # "customfield_10010" -> field name
        self.max_results = max_results
        self.users = dict(users or {})
        self.issues: dict[str, dict[str, Any]] = {}
        self.aliases: dict[str, str] = {}  # old key -> current key, after a move
        self.jql: list[str] = []  # every query searched, as sent
        self._numbers: dict[str, int] = {}  # project key -> last issue number given
        self._next_id = 10000
        self._next_comment_id = 20000
        self._serve(_Handler, port=port)

    # ------------------------------------------------------------------ faults and hooks
    def lose_next_create_response(self) -> None:
        self._faults.append(Fault("lose", "/rest/api/2/issue"))

    def delay_next(self, seconds: float, path: str | None = None) -> None:
        self._faults.append(Fault("delay", path, seconds=seconds))

    def _fault_matches(self, fault: Fault, method: str, template: str) -> bool:
        return fault.path is None or fault.path == template  # Jira's faults name the template alone

    def set_status(self, key: str, status: str, resolution: str | None = None) -> None:
        with self._lock:
            issue = self.issues[key]
            issue["status"] = status
            issue["resolution"] = resolution if STATUSES[status][2] == "done" else None
            issue["updated"] = _now()

    def move(self, key: str, project: str) -> str:
        """Move the issue to another project, as Jira does: it gets that project's next key, and the old key
        keeps resolving (GET and JQL answer with the issue under its new key). Returns the new key."""
        with self._lock:
            current = self._find(key)
            issue = self.issues.pop(current)
            self.projects.setdefault(project, {"id": str(10000 + len(self.projects)), "name": project,
                                               "components": {}})
            new = self._new_key(project)
            issue["key"], issue["project"], issue["updated"] = new, project, _now()
            self.issues[new] = issue
            self.aliases[current] = new
            for old, target in list(self.aliases.items()):
                if target == current:
                    self.aliases[old] = new
            return new

    def delete(self, key: str) -> None:
        """Delete the issue: its key (and any old key of it) answers 404, searches no longer return it."""
        with self._lock:
            current = self._find(key)
            del self.issues[current]
            for old, target in list(self.aliases.items()):
                if target == current:
                    del self.aliases[old]

    def add_issue(self, summary: str, *, labels: list[str] | None = None, status: str | None = None,
                  resolution: str | None = None, description: str | None = None, created: datetime | None = None,
                  resolved: datetime | None = None) -> str:
        """Put an issue straight into the state (no request): as someone made it at `created` (and resolved
        at `resolved`, with `resolution`, default Done), or in `status` now. Returns its key."""
        stamp = lambda t: t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")  # noqa: E731
        status = status or ("Done" if resolved else "To Do")
        if resolved and resolution is None:
            resolution = "Done"
        with self._lock:
            self._next_id += 1
            key = self._new_key(self.project)
            made = stamp(created) if created else _now()
            self.issues[key] = {"id": str(self._next_id), "key": key, "project": self.project, "summary": summary,
                                "description": description, "issuetype": "Task", "priority": "Medium",
                                "labels": list(labels or []), "assignee": None, "duedate": None, "status": status,
                                "resolution": resolution if STATUSES[status][2] == "done" else None,
                                "comments": [], "created": made, "updated": stamp(resolved) if resolved else made,
                                "components": [], "custom": {}}
            return key

    def _new_key(self, project: str) -> str:
        with self._lock:
            number = self._numbers.get(project, 0) + 1
            while f"{project}-{number}" in self.issues or f"{project}-{number}" in self.aliases:
                number += 1
            self._numbers[project] = number
            return f"{project}-{number}"

    # ------------------------------------------------------------------ representations
    def _status(self, name: str) -> dict[str, Any]:
        sid, cid, ckey, cname, colour = STATUSES[name]
        return {"self": f"{self.url}/rest/api/2/status/{sid}", "id": sid, "name": name, "description": "",
                "iconUrl": f"{self.url}/images/icons/statuses/generic.png",
                "statusCategory": {"self": f"{self.url}/rest/api/2/statuscategory/{cid}", "id": cid, "key": ckey,
                                   "colorName": colour, "name": cname}}

    def _user(self, account_id: str) -> dict[str, Any]:
        return {"self": f"{self.url}/rest/api/2/user?accountId={account_id}", "accountId": account_id,
                "displayName": self.users.get(account_id, account_id), "active": True, "accountType": "atlassian",
                "timeZone": "UTC"}

    def _comment(self, key: str, c: dict[str, Any]) -> dict[str, Any]:
        issue_id = self.issues[key]["id"]
        return {"self": f"{self.url}/rest/api/2/issue/{issue_id}/comment/{c['id']}", "id": c["id"],
                "author": self._user(c["author"]), "updateAuthor": self._user(c["author"]), "body": c["body"],
                "created": c["created"], "updated": c["created"], "jsdPublic": True}

    def _comments_page(self, key: str, start: int = 0, limit: int = 5000) -> dict[str, Any]:
        comments = self.issues[key]["comments"]
        page = comments[start:start + limit]
        return {"comments": [self._comment(key, c) for c in page], "maxResults": limit, "total": len(comments),
                "startAt": start}

    def _issue(self, key: str, fields: list[str] | None = None) -> dict[str, Any]:
        i = self.issues[key]
        project = self.projects[i["project"]]
        res = i["resolution"]
        all_fields: dict[str, Any] = {
            "summary": i["summary"], "description": i["description"],
            "issuetype": {"self": f"{self.url}/rest/api/2/issuetype/{ISSUE_TYPES[i['issuetype']]}",
                          "id": ISSUE_TYPES[i["issuetype"]], "name": i["issuetype"], "subtask": False},
            "project": {"self": f"{self.url}/rest/api/2/project/{project['id']}", "id": project["id"],
                        "key": i["project"], "name": project["name"]},
            "components": [{"self": f"{self.url}/rest/api/2/component/{project['components'][c]}",
                            "id": project["components"][c], "name": c} for c in i["components"]],
            "priority": ({"self": f"{self.url}/rest/api/2/priority/{PRIORITIES[i['priority']]}",
                          "id": PRIORITIES[i["priority"]], "name": i["priority"]} if i["priority"] else None),
            "labels": list(i["labels"]),
            "assignee": self._user(i["assignee"]) if i["assignee"] else None,
            "duedate": i["duedate"], "status": self._status(i["status"]),
            "resolution": ({"self": f"{self.url}/rest/api/2/resolution/{RESOLUTIONS[res]}", "id": RESOLUTIONS[res],
                            "name": res, "description": ""} if res else None),
            "resolutiondate": i["updated"] if res else None,
            "comment": self._comments_page(key), "created": i["created"], "updated": i["updated"],
            **i["custom"],
        }
        wanted = fields or ["*all"]
        if not any(f in ("*all", "*navigable") for f in wanted):
            all_fields = {k: v for k, v in all_fields.items() if k in wanted}
        return {"expand": "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations",
                "id": i["id"], "self": f"{self.url}/rest/api/2/issue/{i['id']}", "key": key, "fields": all_fields}

    def _find(self, key_or_id: str) -> str:
        if key_or_id in self.issues:
            return key_or_id
        if self.aliases.get(key_or_id) in self.issues:  # a moved issue's old key
            return self.aliases[key_or_id]
        for key, issue in self.issues.items():
            if issue["id"] == key_or_id:
                return key
        raise HttpError(404, ["Issue does not exist or you do not have permission to see it."])

    # ------------------------------------------------------------------ handlers
    def h_serverInfo(self, req: _Request) -> tuple[int, Any]:
        return 200, {"baseUrl": self.url, "displayUrl": self.url, "version": "1001.0.0-SNAPSHOT",
                     "versionNumbers": [1001, 0, 0], "deploymentType": "Cloud", "buildNumber": 100285,
                     "buildDate": "2026-11-01T00:00:00.000+0000", "serverTime": _now(), "scmInfo": "standin",
                     "serverTitle": "Jira stand-in", "defaultLocale": {"locale": "en_US"}, "serverTimeZone": "Etc/UTC"}

    def h_field(self, req: _Request) -> tuple[int, Any]:
        system = [{"id": fid, "key": fid, "name": name, "custom": False, "orderable": True, "navigable": True,
                   "searchable": True, "clauseNames": clauses, "schema": {"type": typ, "system": fid}}
                  for fid, name, clauses, typ in FIELDS]
        custom = [{"id": fid, "key": fid, "name": name, "custom": True, "orderable": True, "navigable": True,
                   "searchable": True, "clauseNames": [f"cf[{fid.rsplit('_', 1)[-1]}]", name],
                   "schema": {"type": "any", "custom": "com.atlassian.jira.plugin.system.customfieldtypes:textfield",
                              "customId": int(fid.rsplit("_", 1)[-1])}}
                  for fid, name in self.custom_fields.items()]
        return 200, system + custom

    def h_myself(self, req: _Request) -> tuple[int, Any]:
        return 200, self._user("standin-bot")

    def h_create(self, req: _Request) -> tuple[int, Any]:
        fields = (req.json or {}).get("fields") or {}
        errors: dict[str, str] = {}
        project = fields.get("project") or {}
        project_key = next((k for k, p in self.projects.items() if project.get("key") == k
                            or (project.get("id") is not None and project.get("id") == p["id"])), None)
        if project_key is None:
            errors["project"] = "valid project is required"
        known = {"summary", "description", "issuetype", "project", "priority", "labels", "assignee", "duedate",
                 "components", *self.custom_fields}
        for fid in fields:
            if fid not in known:
                errors[fid] = f"Field '{fid}' cannot be set. It is not on the appropriate screen, or unknown."
        components: list[str] = []
        for c in fields.get("components") or []:
            offered = self.projects[project_key]["components"] if project_key else {}
            name = (c or {}).get("name") or {v: k for k, v in offered.items()}.get(str((c or {}).get("id")))
            if name not in offered:
                errors["components"] = f"Component name '{(c or {}).get('name') or (c or {}).get('id')}' is not valid"
            else:
                components.append(name)
        itype = fields.get("issuetype") or {}
        type_name = itype.get("name") or {v: k for k, v in ISSUE_TYPES.items()}.get(itype.get("id", ""))
        if type_name not in ISSUE_TYPES:
            errors["issuetype"] = "Specify an issue type"
        if not fields.get("summary"):
            errors["summary"] = "You must specify a summary of the issue."
        priority = (fields.get("priority") or {}).get("name")
        if priority is not None and priority not in PRIORITIES:
            errors["priority"] = "The priority selected is invalid."
        assignee = (fields.get("assignee") or {}).get("accountId")
        if assignee is not None and assignee not in self.users:
            errors["assignee"] = f"User '{assignee}' cannot be assigned issues."
        due = fields.get("duedate")
        if due is not None and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(due)):
            errors["duedate"] = "Error parsing date string: " + str(due)
        labels = fields.get("labels") or []
        if any(" " in label for label in labels):
            errors["labels"] = "The label can't contain spaces."
        if errors:
            raise HttpError(400, [], errors)
        description = fields.get("description")
        if isinstance(description, dict):
            raise HttpError(400, [], {"description": "Operation value must be a string"})
        with self._lock:
            self._next_id += 1
            issue_id = str(self._next_id)
            key = self._new_key(project_key)
            now = _now()
            self.issues[key] = {"id": issue_id, "key": key, "summary": fields["summary"], "description": description,
                                "issuetype": type_name, "priority": priority or "Medium", "labels": list(labels),
                                "assignee": assignee, "duedate": due, "status": "To Do", "resolution": None,
                                "comments": [], "created": now, "updated": now, "project": project_key,
                                "components": components,
                                "custom": {f: v for f, v in fields.items() if f in self.custom_fields}}
        return 201, {"id": issue_id, "key": key, "self": f"{self.url}/rest/api/2/issue/{issue_id}"}

    def h_get_issue(self, req: _Request) -> tuple[int, Any]:
        key = self._find(req.key)
        return 200, self._issue(key, req.list_param("fields"))

    def h_comments(self, req: _Request) -> tuple[int, Any]:
        key = self._find(req.key)
        start = int(req.param("startAt") or 0)
        limit = min(int(req.param("maxResults") or 100), 100)
        return 200, self._comments_page(key, start, limit)

    def h_add_comment(self, req: _Request) -> tuple[int, Any]:
        key = self._find(req.key)
        body = (req.json or {}).get("body")
        if not isinstance(body, str) or not body.strip():
            raise HttpError(400, [], {"comment": "Comment body can not be empty!"})
        with self._lock:
            self._next_comment_id += 1
            comment = {"id": str(self._next_comment_id), "body": body, "author": "standin-bot", "created": _now()}
            self.issues[key]["comments"].append(comment)
        return 201, self._comment(key, comment)

    def h_transitions(self, req: _Request) -> tuple[int, Any]:
        key = self._find(req.key)
        current = self.issues[key]["status"]
        return 200, {"expand": "transitions", "transitions": [
            {"id": tid, "name": name, "to": self._status(to), "hasScreen": False, "isGlobal": True,
             "isInitial": False, "isAvailable": True, "isConditional": False, "isLooped": False}
            for tid, (name, to) in TRANSITIONS.items() if to != current]}

    def h_do_transition(self, req: _Request) -> tuple[int, Any]:
        key = self._find(req.key)
        data = req.json or {}
        tid = str((data.get("transition") or {}).get("id"))
        if tid not in TRANSITIONS or TRANSITIONS[tid][1] == self.issues[key]["status"]:
            raise HttpError(400, [f"Transition id '{tid}' is not valid for this issue."])
        to = TRANSITIONS[tid][1]
        resolution = ((data.get("fields") or {}).get("resolution") or {}).get("name") or "Done"
        if resolution not in RESOLUTIONS:
            raise HttpError(400, [], {"resolution": "Resolution is invalid"})
        self.set_status(key, to, resolution)
        return 204, None

    def h_search(self, req: _Request) -> tuple[int, Any]:
        data = req.json if req.method == "POST" else None
        get = (lambda k: data.get(k)) if data is not None else req.param
        jql = get("jql") or ""
        with self._lock:
            self.jql.append(jql)
        token = get("nextPageToken")
        limit = int(get("maxResults") or 50)
        limit = max(1, min(limit, self.max_results))
        fields = (data.get("fields") if data is not None else req.list_param("fields")) or ["*navigable"]
        if isinstance(fields, str):
            fields = fields.split(",")
        offset = 0
        if token:
            try:
                seen_jql, offset = json.loads(base64.urlsafe_b64decode(token.encode()))
                assert seen_jql == jql
            except Exception:  # noqa: BLE001 - any bad token is a 400 on Jira too
                raise HttpError(400, ["The nextPageToken is invalid."]) from None
        keys = self._query(jql)
        page = keys[offset:offset + limit]
        body: dict[str, Any] = {"issues": [self._issue(k, fields) for k in page],
                                "isLast": offset + limit >= len(keys)}
        if not body["isLast"]:
            body["nextPageToken"] = base64.urlsafe_b64encode(json.dumps([jql, offset + limit]).encode()).decode()
        return 200, body

    def _query(self, jql: str) -> list[str]:
        text = re.split(r"\s+order\s+by\s+", jql.strip(), flags=re.I)[0].strip()
        tokens = re.findall(r'"(?:[^"\\]|\\.)*"|\(|\)|[^\s()"]+', text)
        pos = 0

        def clause_text(parts: list[str]) -> str:
            return " ".join(parts)

        def parse_or() -> Callable[[dict[str, Any]], bool]:
            nonlocal pos
            terms = [parse_and()]
            while pos < len(tokens) and tokens[pos].upper() == "OR":
                pos += 1
                terms.append(parse_and())
            return lambda i, ts=terms: any(t(i) for t in ts)

        def parse_and() -> Callable[[dict[str, Any]], bool]:
            nonlocal pos
            factors = [parse_factor()]
            while pos < len(tokens) and tokens[pos].upper() == "AND":
                pos += 1
                factors.append(parse_factor())
            return lambda i, fs=factors: all(f(i) for f in fs)

        def parse_factor() -> Callable[[dict[str, Any]], bool]:
            nonlocal pos
            if pos < len(tokens) and tokens[pos] == "(":
                pos += 1
                inner = parse_or()
                if pos >= len(tokens) or tokens[pos] != ")":
                    raise HttpError(400, ["Error in the JQL Query: expecting ')'."])
                pos += 1
                return inner
            parts: list[str] = []
            depth = 0
            while pos < len(tokens) and not (depth == 0 and (tokens[pos].upper() in ("AND", "OR")
                                                               or tokens[pos] == ")")):
                depth += {"(": 1, ")": -1}.get(tokens[pos], 0)
                parts.append(tokens[pos])
                pos += 1
            return self._clause(clause_text(parts).replace("( ", "(").replace(" )", ")").replace(" ,", ","))

        preds = parse_or() if tokens else (lambda i: True)
        if pos != len(tokens):
            raise HttpError(400, [f"Error in the JQL Query: the stand-in does not understand '{text}'."])
        with self._lock:
            issues = sorted(self.issues.values(), key=lambda i: int(i["id"]))
        return [i["key"] for i in issues if preds(i)]

    def _clause(self, clause: str) -> Callable[[dict[str, Any]], bool]:
        clause = clause.strip()
        if m := re.fullmatch(r"(?:key|issuekey)\s+in\s*\(([^)]*)\)", clause, re.I):
            wanted = {self._current(v.strip().strip('"')) for v in m.group(1).split(",") if v.strip()}
            return lambda i, w=wanted: i["key"].upper() in w
        if m := re.fullmatch(r"(?:key|issuekey)\s*=\s*\"?([^\"\s]+)\"?", clause, re.I):
            return lambda i, w=self._current(m.group(1)): i["key"].upper() == w
        if m := re.fullmatch(r"labels\s*=\s*(?:\"([^\"]*)\"|(\S+))", clause, re.I):
            return lambda i, w=(m.group(1) or m.group(2)): w in i["labels"]
        if m := re.fullmatch(r'text\s*~\s*"((?:[^"\\]|\\.)*)"', clause, re.I):
            return _lucene(re.sub(r"\\(.)", r"\1", m.group(1)))  # the JQL string's value is a Lucene query
        if m := re.fullmatch(r"project\s*=\s*(?:\"([^\"]*)\"|(\S+))", clause, re.I):
            wanted = m.group(1) or m.group(2)
            project = next((k for k, p in self.projects.items() if wanted in (k, p["id"], p["name"])), None)
            if project is None:
                raise HttpError(400, [f"The value '{wanted}' does not exist for the field 'project'."])
            return lambda i, p=project: i["project"] == p
        raise HttpError(400, [f"Error in the JQL Query: the stand-in does not understand '{clause}'."])

    def _current(self, key: str) -> str:
        """A key as JQL matches it: a moved issue's old key finds the issue under its new key."""
        key = key.upper()
        with self._lock:
            return self.aliases.get(key, key).upper()


def _lucene(query: str) -> Callable[[dict[str, Any]], bool]:
    """What Jira's `text ~` makes of a Lucene query, in part: `"a phrase"` matches its words in a row; outside
    a phrase, `OR` joins alternatives and an unescaped `*` ends a word prefix; `\\x` is a literal x."""
    query = query.strip()
    if len(query) >= 2 and query[0] == query[-1] == '"' and not re.search(r'(?<!\\)"', query[1:-1]):
        alternatives = [[re.escape(w) for w in re.findall(r"\w+", re.sub(r"\\(.)", r"\1", query[1:-1]).lower())]]
    else:
        alternatives = []
        for part in re.split(r"\s+OR\s+|(?<!\\)\|\|", query):
            marked = re.sub(r"(?<!\\)\*", "\0", part)  # an unescaped wildcard
            words = re.findall(r"[\w\0]+", re.sub(r"\\(.)", r"\1", marked).lower())
            alternatives.append([re.escape(w).replace("\0", r"\w*") for w in words])

    def mentions(i: dict[str, Any]) -> bool:
        body = re.findall(r"\w+", " ".join([i["summary"] or "", i["description"] or "",
                                            *(c["body"] for c in i["comments"])]).lower())
        return any(w and any(all(re.fullmatch(p, b) for p, b in zip(w, body[k:k + len(w)], strict=True))
                             for k in range(len(body) - len(w) + 1)) for w in alternatives)
    return mentions


class _Request:
    def __init__(self, method: str, path: str, query: dict[str, list[str]], key: str | None, json_body: Any) -> None:
        self.method, self.path, self.query, self.key, self.json = method, path, query, key, json_body

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None

    def list_param(self, name: str) -> list[str] | None:
        values = self.query.get(name)
        return [v for value in values for v in value.split(",") if v] if values else None


class _Handler(JsonHandler):
    standin: JiraStandin
    content_type = "application/json;charset=UTF-8"

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self._send_json(status, body, urlsplit(self.path).path, headers)

    def _dispatch(self, method: str) -> None:
        s = self.standin
        parts = urlsplit(self.path)
        raw = self._read_body()
        try:
            if (route := match_route(_ROUTES, method, parts.path)) is None:
                raise HttpError(404, [f"No resource {method} {parts.path} in the stand-in."])
            template, name, args = route
            with s._lock:
                s.requests[f"{method} {template}"] += 1
            if fault := s._take_fault(method, template, ("delay",)):
                time.sleep(fault.kw["seconds"])
            if fault := s._take_fault(method, template, ("fail", "rate")):
                if fault.kind == "rate":
                    raise HttpError(429, ["Rate limit exceeded."],
                                    headers={"Retry-After": str(fault.kw["retry_after"])})
                raise HttpError(fault.kw["status"], ["Internal server error (injected)."])
            try:
                json_body = json.loads(raw) if raw else None
            except ValueError:
                raise HttpError(400, ["Unexpected character in the request body."]) from None
            req = _Request(method, parts.path, parse_qs(parts.query), args.get("key"), json_body)
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
