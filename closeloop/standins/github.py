"""A GitHub REST stand-in: the part of the API that PyGithub and `GitHubTracker` use.

    with GitHubStandin() as gh:                 # 127.0.0.1, a free port, under the prefix /api/v3
        Github(base_url=gh.base_url, auth=Auth.Token("t"))
        gh.add_repo("acme/checkout", collaborators=["bob"])

Implemented (state in memory), all under `prefix`: `GET /repos/{owner}/{repo}`,
`GET|POST /repos/{owner}/{repo}/issues` (list: `state`, `labels`, `since`, `sort`, `direction`, `per_page`,
`page`, with `Link` headers), `GET|PATCH /repos/{owner}/{repo}/issues/{issue_number}` (`state`
open/closed, `state_reason` completed/not_planned/reopened, title, body, labels, assignees, milestone),
`GET|POST /repos/{owner}/{repo}/issues/{issue_number}/comments`,
`GET /repos/{owner}/{repo}/milestones` (`state`, paged) and `/milestones/{milestone_number}`, and
`GET /search/issues` (a `q` subset:
`repo:`, `label:`, `is:issue`/`is:pr`, `is:open`/`is:closed`, `state:`, `in:title|body`, quoted phrases
and bare words; `total_count`, `incomplete_results`, `items`), and for timelines, newest first:
`GET /repos/{owner}/{repo}/deployments` (`sha`, `ref`, `task`, `environment`),
`GET /repos/{owner}/{repo}/pulls` (`state` open/closed/all, `base`, `head`, `sort` created/updated,
`direction`; `merged_at` on merged ones) and `GET /repos/{owner}/{repo}/commits` (`sha`: a branch, default
the default branch `main`; `since` / `until`). Every response carries
`x-ratelimit-limit/remaining/reset/used/resource`. Errors come as GitHub's `{"message", "documentation_url"}`
(422 adds `errors`). Every URL in a response is built from the server's own address and prefix:
PyGithub follows `url` fields and refuses any outside its base URL.

Test hooks: `repos` ("owner/name" -> dict with `issues` number -> dict, `pulls`, `deployments`, `commits`),
`requests` (Counter of "METHOD /route/{template}", without the prefix), `add_repo()`, `set_state()`,
`add_deployment()`, `add_pull()`, `add_commit()`, `delete_issue()` (gone from listings; `GET` of it answers
410 as on GitHub), `add_issue()` (an issue straight into the state, no request: for benchmarks), and faults,
each consumed by
the next matching request (`path` narrows it to a route template, with or without the method):
`lose_next_create_response()` (the issue is created, then the connection dropped without an answer),
`fail_next(n, status=500)`, `rate_limit_next(retry_after=1, status=403)` (403: primary limit, remaining 0
and `x-ratelimit-reset`; 403 with `secondary=True` or 429: `Retry-After`), `delay_next(seconds)`.
`clock` (default `time.time`) stamps issues and comments (`created`), so a test with a fake clock can
check pacing. `port` binds a fixed port (`closeloop standin github --port N`).
`validator(method, path, status, body)` is called on every JSON response before it is sent (path without
the prefix); whatever it raises is recorded in `violations` (tests fail on any).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from closeloop.standins._server import Fault, JsonHandler, StandinServer, Validator, compile_routes, match_route

DOCS = "https://docs.github.com/rest"
ROUTES = [  # (method, template, handler name)
    ("GET", "/repos/{owner}/{repo}", "get_repo"),
    ("GET", "/repos/{owner}/{repo}/issues", "list_issues"),
    ("POST", "/repos/{owner}/{repo}/issues", "create_issue"),
    ("GET", "/repos/{owner}/{repo}/issues/{issue_number}", "get_issue"),
    ("PATCH", "/repos/{owner}/{repo}/issues/{issue_number}", "edit_issue"),
    ("GET", "/repos/{owner}/{repo}/issues/{issue_number}/comments", "list_comments"),
    ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments", "add_comment"),
    ("GET", "/repos/{owner}/{repo}/milestones", "list_milestones"),
    ("GET", "/repos/{owner}/{repo}/milestones/{milestone_number}", "get_milestone"),
    ("GET", "/search/issues", "search_issues"),
    ("GET", "/repos/{owner}/{repo}/deployments", "list_deployments"),
    ("GET", "/repos/{owner}/{repo}/pulls", "list_pulls"),
    ("GET", "/repos/{owner}/{repo}/commits", "list_commits"),
]
_ROUTES = compile_routes(ROUTES)
STATE_REASONS = ("completed", "not_planned", "reopened", "duplicate")
LABEL_COLOURS = ("ededed", "d73a4a", "0075ca", "a2eeef", "7057ff", "008672", "e4e669", "d876e3")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class HttpError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None,
                 errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(status, message)
        self.status, self.headers = status, headers or {}
        self.body: dict[str, Any] = {"message": message, "documentation_url": DOCS, "status": str(status)}
        if errors is not None:
            self.body["errors"] = errors


class GitHubStandin(StandinServer):
    thread_name = "github-standin"

    def __init__(self, *, prefix: str = "/api/v3", login: str = "closeloop-bot", max_per_page: int = 100,
                 rate_limit: int = 5000, validator: Validator | None = None, port: int = 0,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(validator)
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.login = login
        self.max_per_page = max_per_page
        self.rate_limit = rate_limit
        self.rate_used = 0
        self.rate_reset = int(time.time()) + 3600
        self.clock = clock  # when issues and comments are created / changed (tests pass a fake clock)
        self.repos: dict[str, dict[str, Any]] = {}
        self.users: dict[str, int] = {}
        self._next_id = 1000
        self._user(login)
        self._serve(_Handler, port=port)

    # ------------------------------------------------------------------ lifecycle
    @property
    def base_url(self) -> str:
        """What PyGithub takes as `base_url`."""
        return self.url + self.prefix

    # ------------------------------------------------------------------ state
    def _new_id(self) -> int:
        with self._lock:
            self._next_id += 1
            return self._next_id

    def _user(self, login: str) -> int:
        with self._lock:
            if login not in self.users:
                self.users[login] = self._new_id()
            return self.users[login]

    def add_repo(self, full_name: str, *, collaborators: list[str] | tuple[str, ...] = (),
                 milestones: dict[int, str] | None = None, private: bool = True) -> dict[str, Any]:
        owner, name = full_name.split("/")
        with self._lock:
            self._user(owner)
            for login in collaborators:
                self._user(login)
            now = self.clock()
            repo = {"id": self._new_id(), "owner": owner, "name": name, "private": private,
                    "collaborators": {owner, self.login, *collaborators}, "issues": {}, "labels": {},
                    "milestones": {int(k): {"title": v, "id": self._new_id()} for k, v in (milestones or {}).items()},
                    "created": now, "pulls": {}, "deployments": [], "commits": []}
            self.repos[full_name] = repo
            return repo

    def add_deployment(self, full_name: str, at: datetime, *, sha: str, ref: str = "main",
                       environment: str = "production", description: str | None = None,
                       creator: str | None = None) -> int:
        """A deployment created at `at`; returns its id."""
        with self._lock:
            dep = {"id": self._new_id(), "sha": sha, "ref": ref, "environment": environment, "task": "deploy",
                   "description": description, "creator": creator or self.login, "created": at.timestamp()}
            self._user(dep["creator"])
            self.repos[full_name]["deployments"].append(dep)
            return int(dep["id"])

    def add_pull(self, full_name: str, title: str, *, created: datetime, merged_at: datetime | None = None,
                 closed_at: datetime | None = None, user: str | None = None, base: str = "main",
                 head: str = "feature", updated: datetime | None = None) -> int:
        """A pull request (merged when `merged_at` is given: closed then too); returns its number, which
        shares the issues' number space as on GitHub."""
        with self._lock:
            repo = self.repos[full_name]
            number = max([*repo["issues"], *repo["pulls"]], default=0) + 1
            closed = closed_at or merged_at
            last = updated or max(t for t in (created, closed) if t is not None)
            repo["pulls"][number] = {
                "id": self._new_id(), "number": number, "title": title, "user": user or self.login, "base": base,
                "head": head, "created": created.timestamp(), "updated": last.timestamp(),
                "closed_at": closed.timestamp() if closed else None,
                "merged_at": merged_at.timestamp() if merged_at else None,
                "sha": f"{number:040x}", "merge_sha": f"{number + 1_000_000:040x}" if merged_at else None}
            self._user(repo["pulls"][number]["user"])
            return number

    def add_commit(self, full_name: str, at: datetime, message: str, *, author: str | None = None,
                   branch: str = "main") -> str:
        """A commit on `branch`, committed at `at`; returns its sha."""
        with self._lock:
            commits = self.repos[full_name]["commits"]
            sha = hashlib.sha1(f"{full_name}/{self._new_id()}".encode()).hexdigest()
            commits.append({"sha": sha, "message": message, "author": author or self.login, "branch": branch,
                            "at": at.timestamp(), "parent": next((c["sha"] for c in reversed(commits)
                                                                  if c["branch"] == branch), None)})
            self._user(commits[-1]["author"])
            return sha

    def set_state(self, full_name: str, number: int, state: str, state_reason: str | None = None) -> None:
        """Close or reopen an issue as a person on GitHub would."""
        with self._lock:
            issue = self.repos[full_name]["issues"][number]
            self._apply_state(issue, state, state_reason)

    def delete_issue(self, full_name: str, number: int) -> None:
        """Delete an issue as a repository admin would: listings and searches no longer show it, and
        `GET` of it answers 410 Gone."""
        with self._lock:
            repo = self.repos[full_name]
            del repo["issues"][number]
            repo.setdefault("deleted", set()).add(number)

    def add_issue(self, full_name: str, title: str, *, body: str = "", labels: list[str] | tuple[str, ...] = (),
                  state: str = "open", state_reason: str | None = None) -> int:
        """Put an issue straight into the state (no request). Returns its number."""
        with self._lock:
            repo = self.repos[full_name]
            names = self._ensure_labels(full_name, list(labels))
            number = max([*repo["issues"], *repo.get("pulls", ()), *repo.get("deleted", ())], default=0) + 1
            now = time.time()
            repo["issues"][number] = {"id": self._new_id(), "number": number, "title": title, "body": body,
                                      "state": "open", "state_reason": None, "labels": names, "assignees": [],
                                      "milestone": None, "user": self.login, "comments": [], "created": now,
                                      "updated": now, "closed_at": None, "closed_by": None}
            if state != "open":
                self._apply_state(repo["issues"][number], state, state_reason)
            return number

    def _apply_state(self, issue: dict[str, Any], state: str, reason: str | None) -> None:
        now = self.clock()
        if state == "closed":
            issue["closed_at"] = issue["closed_at"] if issue["state"] == "closed" else now
            issue["state_reason"] = reason or "completed"
            issue["closed_by"] = issue.get("closed_by") or self.login
        else:
            if issue["state"] == "closed":
                issue["state_reason"] = "reopened"
            elif reason:
                issue["state_reason"] = reason
            issue["closed_at"] = None
            issue["closed_by"] = None
        issue["state"] = state
        issue["updated"] = now

    # ------------------------------------------------------------------ faults and hooks
    def lose_next_create_response(self) -> None:
        self._faults.append(Fault("lose", "POST /repos/{owner}/{repo}/issues"))

    def rate_limit_next(self, retry_after: int = 1, status: int = 403, *, secondary: bool = False,
                        path: str | None = None) -> None:
        self._faults.append(Fault("rate", path, retry_after=retry_after, status=status, secondary=secondary))

    def delay_next(self, seconds: float, path: str | None = None) -> None:
        self._faults.append(Fault("delay", path, seconds=seconds))

    def rate_headers(self) -> dict[str, str]:
        with self._lock:
            if time.time() >= self.rate_reset:
                self.rate_used, self.rate_reset = 0, int(time.time()) + 3600
            return {"x-ratelimit-limit": str(self.rate_limit),
                    "x-ratelimit-remaining": str(max(0, self.rate_limit - self.rate_used)),
                    "x-ratelimit-reset": str(self.rate_reset), "x-ratelimit-used": str(self.rate_used),
                    "x-ratelimit-resource": "core"}

    # ------------------------------------------------------------------ representations
    def api(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def simple_user(self, login: str) -> dict[str, Any]:
        uid = self._user(login)
        u = self.api(f"/users/{login}")
        return {"login": login, "id": uid, "node_id": f"U_{uid}", "avatar_url": f"{self.url}/avatars/u/{uid}",
                "gravatar_id": "", "url": u, "html_url": f"{self.url}/{login}", "followers_url": f"{u}/followers",
                "following_url": f"{u}/following{{/other_user}}", "gists_url": f"{u}/gists{{/gist_id}}",
                "starred_url": f"{u}/starred{{/owner}}{{/repo}}", "subscriptions_url": f"{u}/subscriptions",
                "organizations_url": f"{u}/orgs", "repos_url": f"{u}/repos", "events_url": f"{u}/events{{/privacy}}",
                "received_events_url": f"{u}/received_events", "type": "User", "user_view_type": "public",
                "site_admin": False}

    def _repo(self, full_name: str) -> dict[str, Any]:
        r = self.repos[full_name]
        base = self.api(f"/repos/{full_name}")
        created = _iso(r["created"])
        open_count = sum(1 for i in r["issues"].values() if i["state"] == "open")
        templated = {  # name -> suffix
            "archive_url": "/{archive_format}{/ref}", "assignees_url": "/assignees{/user}",
            "blobs_url": "/git/blobs{/sha}", "branches_url": "/branches{/branch}",
            "collaborators_url": "/collaborators{/collaborator}", "comments_url": "/comments{/number}",
            "commits_url": "/commits{/sha}", "compare_url": "/compare/{base}...{head}",
            "contents_url": "/contents/{+path}", "contributors_url": "/contributors", "deployments_url": "/deployments",
            "downloads_url": "/downloads", "events_url": "/events", "forks_url": "/forks",
            "git_commits_url": "/git/commits{/sha}", "git_refs_url": "/git/refs{/sha}",
            "git_tags_url": "/git/tags{/sha}",
            "hooks_url": "/hooks", "issue_comment_url": "/issues/comments{/number}",
            "issue_events_url": "/issues/events{/number}", "issues_url": "/issues{/number}",
            "keys_url": "/keys{/key_id}",
            "labels_url": "/labels{/name}", "languages_url": "/languages", "merges_url": "/merges",
            "milestones_url": "/milestones{/number}", "notifications_url": "/notifications{?since,all,participating}",
            "pulls_url": "/pulls{/number}", "releases_url": "/releases{/id}", "stargazers_url": "/stargazers",
            "statuses_url": "/statuses/{sha}", "subscribers_url": "/subscribers", "subscription_url": "/subscription",
            "tags_url": "/tags", "teams_url": "/teams", "trees_url": "/git/trees{/sha}",
        }
        out: dict[str, Any] = {k: base + v for k, v in templated.items()}
        out.update({
            "id": r["id"], "node_id": f"R_{r['id']}", "name": r["name"], "full_name": full_name,
            "owner": self.simple_user(r["owner"]), "private": r["private"], "html_url": f"{self.url}/{full_name}",
            "description": None, "fork": False, "url": base, "clone_url": f"{self.url}/{full_name}.git",
            "git_url": f"git://127.0.0.1/{full_name}.git", "ssh_url": f"git@127.0.0.1:{full_name}.git",
            "svn_url": f"{self.url}/{full_name}", "mirror_url": None, "homepage": None, "language": None,
            "forks_count": 0, "forks": 0, "stargazers_count": 0, "watchers_count": 0, "watchers": 0, "size": 0,
            "default_branch": "main", "open_issues_count": open_count, "open_issues": open_count, "is_template": False,
            "topics": [], "has_issues": True, "has_projects": False, "has_wiki": False, "has_pages": False,
            "has_downloads": False, "has_discussions": False, "archived": False, "disabled": False,
            "visibility": "private" if r["private"] else "public", "pushed_at": created, "created_at": created,
            "updated_at": created, "permissions": {"admin": False, "maintain": False, "push": True, "triage": True,
                                                   "pull": True},
            "allow_forking": False, "license": None, "network_count": 0, "subscribers_count": 1,
        })
        return out

    def _label(self, full_name: str, name: str) -> dict[str, Any]:
        label = self.repos[full_name]["labels"][name]
        return {"id": label["id"], "node_id": f"LA_{label['id']}",
                "url": self.api(f"/repos/{full_name}/labels/{name}"), "name": name, "description": None,
                "color": label["color"], "default": False}

    def _milestone(self, full_name: str, number: int) -> dict[str, Any]:
        m = self.repos[full_name]["milestones"][number]
        base = self.api(f"/repos/{full_name}/milestones/{number}")
        created = _iso(self.repos[full_name]["created"])
        issues = [i for i in self.repos[full_name]["issues"].values() if i["milestone"] == number]
        return {"url": base, "html_url": f"{self.url}/{full_name}/milestone/{number}", "labels_url": f"{base}/labels",
                "id": m["id"], "node_id": f"MI_{m['id']}", "number": number, "state": "open", "title": m["title"],
                "description": None, "creator": self.simple_user(self.repos[full_name]["owner"]),
                "open_issues": sum(1 for i in issues if i["state"] == "open"),
                "closed_issues": sum(1 for i in issues if i["state"] == "closed"), "created_at": created,
                "updated_at": created, "closed_at": None, "due_on": None}

    def _issue(self, full_name: str, number: int, *, search: bool = False) -> dict[str, Any]:
        i = self.repos[full_name]["issues"][number]
        repo_api = self.api(f"/repos/{full_name}")
        base = f"{repo_api}/issues/{number}"
        assignees = [self.simple_user(a) for a in i["assignees"]]
        out: dict[str, Any] = {
            "id": i["id"], "node_id": f"I_{i['id']}", "url": base, "repository_url": repo_api,
            "labels_url": f"{base}/labels{{/name}}", "comments_url": f"{base}/comments", "events_url": f"{base}/events",
            "html_url": f"{self.url}/{full_name}/issues/{number}", "number": number, "state": i["state"],
            "state_reason": i["state_reason"], "title": i["title"], "body": i["body"],
            "user": self.simple_user(i["user"]), "labels": [self._label(full_name, n) for n in i["labels"]],
            "assignee": assignees[0] if assignees else None, "assignees": assignees,
            "milestone": self._milestone(full_name, i["milestone"]) if i["milestone"] is not None else None,
            "locked": False, "active_lock_reason": None, "comments": len(i["comments"]),
            "closed_at": _iso(i["closed_at"]) if i["closed_at"] else None, "created_at": _iso(i["created"]),
            "updated_at": _iso(i["updated"]), "author_association": "CONTRIBUTOR",
            "reactions": {"url": f"{base}/reactions", "total_count": 0, "+1": 0, "-1": 0, "laugh": 0, "confused": 0,
                          "heart": 0, "hooray": 0, "eyes": 0, "rocket": 0},
            "timeline_url": f"{base}/timeline",
        }
        if not search:
            out["closed_by"] = self.simple_user(i["closed_by"]) if i.get("closed_by") else None
        else:
            out["score"] = 1.0
        return out

    def _deployment(self, full_name: str, d: dict[str, Any]) -> dict[str, Any]:
        repo_api = self.api(f"/repos/{full_name}")
        url = f"{repo_api}/deployments/{d['id']}"
        return {"url": url, "id": d["id"], "node_id": f"DE_{d['id']}", "sha": d["sha"], "ref": d["ref"],
                "task": d["task"], "payload": {}, "original_environment": d["environment"],
                "environment": d["environment"], "description": d["description"],
                "creator": self.simple_user(d["creator"]), "created_at": _iso(d["created"]),
                "updated_at": _iso(d["created"]), "statuses_url": f"{url}/statuses", "repository_url": repo_api,
                "transient_environment": False, "production_environment": d["environment"] == "production"}

    def _pull(self, full_name: str, p: dict[str, Any]) -> dict[str, Any]:
        repo_api = self.api(f"/repos/{full_name}")
        url = f"{repo_api}/pulls/{p['number']}"
        html = f"{self.url}/{full_name}/pull/{p['number']}"
        issue = f"{repo_api}/issues/{p['number']}"
        owner = self.repos[full_name]["owner"]

        def side(ref: str, sha: str) -> dict[str, Any]:
            return {"label": f"{owner}:{ref}", "ref": ref, "sha": sha, "user": self.simple_user(owner),
                    "repo": self._repo(full_name)}

        links = {"self": url, "html": html, "issue": issue, "comments": f"{issue}/comments",
                 "review_comments": f"{url}/comments", "review_comment": f"{repo_api}/pulls/comments{{/number}}",
                 "commits": f"{url}/commits", "statuses": f"{repo_api}/statuses/{p['sha']}"}
        return {
            "url": url, "id": p["id"], "node_id": f"PR_{p['id']}", "html_url": html, "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch", "issue_url": issue, "commits_url": f"{url}/commits",
            "review_comments_url": f"{url}/comments", "review_comment_url": f"{repo_api}/pulls/comments{{/number}}",
            "comments_url": f"{issue}/comments", "statuses_url": f"{repo_api}/statuses/{p['sha']}",
            "number": p["number"], "state": "closed" if p["closed_at"] else "open", "locked": False,
            "title": p["title"], "user": self.simple_user(p["user"]), "body": None, "labels": [], "milestone": None,
            "active_lock_reason": None, "created_at": _iso(p["created"]), "updated_at": _iso(p["updated"]),
            "closed_at": _iso(p["closed_at"]) if p["closed_at"] else None,
            "merged_at": _iso(p["merged_at"]) if p["merged_at"] else None, "merge_commit_sha": p["merge_sha"],
            "assignee": None, "assignees": [], "requested_reviewers": [], "requested_teams": [],
            "head": side(p["head"], p["sha"]), "base": side(p["base"], f"{p['number'] + 2_000_000:040x}"),
            "_links": {k: {"href": v} for k, v in links.items()}, "author_association": "MEMBER",
            "auto_merge": None, "draft": False,
        }

    def _commit(self, full_name: str, c: dict[str, Any]) -> dict[str, Any]:
        repo_api = self.api(f"/repos/{full_name}")
        when = _iso(c["at"])
        git_user = {"name": c["author"], "email": f"{c['author']}@users.noreply.example.com", "date": when}
        parents = ([{"sha": c["parent"], "url": f"{repo_api}/commits/{c['parent']}",
                     "html_url": f"{self.url}/{full_name}/commit/{c['parent']}"}] if c["parent"] else [])
        return {
            "url": f"{repo_api}/commits/{c['sha']}", "sha": c["sha"], "node_id": f"C_{c['sha'][:20]}",
            "html_url": f"{self.url}/{full_name}/commit/{c['sha']}",
            "comments_url": f"{repo_api}/commits/{c['sha']}/comments",
            "commit": {"url": f"{repo_api}/git/commits/{c['sha']}", "author": git_user, "committer": git_user,
                       "message": c["message"], "comment_count": 0,
                       "tree": {"sha": f"{int(c['sha'], 16) + 1:040x}",
                                "url": f"{repo_api}/git/trees/{int(c['sha'], 16) + 1:040x}"},
                       "verification": {"verified": False, "reason": "unsigned", "payload": None, "signature": None,
                                        "verified_at": None}},
            "author": self.simple_user(c["author"]), "committer": self.simple_user(c["author"]), "parents": parents,
        }

    def _comment(self, full_name: str, number: int, c: dict[str, Any]) -> dict[str, Any]:
        repo_api = self.api(f"/repos/{full_name}")
        return {"id": c["id"], "node_id": f"IC_{c['id']}", "url": f"{repo_api}/issues/comments/{c['id']}",
                "html_url": f"{self.url}/{full_name}/issues/{number}#issuecomment-{c['id']}", "body": c["body"],
                "user": self.simple_user(c["user"]), "created_at": _iso(c["created"]),
                "updated_at": _iso(c["created"]), "issue_url": f"{repo_api}/issues/{number}",
                "author_association": "CONTRIBUTOR"}

    # ------------------------------------------------------------------ helpers
    def _find_repo(self, req: _Request) -> str:
        full_name = f"{req.args['owner']}/{req.args['repo']}"
        if full_name not in self.repos:
            raise HttpError(404, "Not Found")
        return full_name

    def _find_issue(self, req: _Request) -> tuple[str, int]:
        full_name = self._find_repo(req)
        try:
            number = int(req.args["issue_number"])
        except ValueError:
            raise HttpError(404, "Not Found") from None
        if number not in self.repos[full_name]["issues"]:
            if number in self.repos[full_name].get("deleted", ()):
                raise HttpError(410, "This issue was deleted")
            raise HttpError(404, "Not Found")
        return full_name, number

    def _ensure_labels(self, full_name: str, names: list[Any]) -> list[str]:
        out: list[str] = []
        for raw in names:
            name = raw.get("name") if isinstance(raw, dict) else raw
            if not isinstance(name, str) or not name.strip() or len(name) > 50:
                raise HttpError(422, "Validation Failed",
                                errors=[{"resource": "Label", "field": "name", "code": "invalid", "value": name}])
            labels = self.repos[full_name]["labels"]
            if name not in labels:
                labels[name] = {"id": self._new_id(), "color": LABEL_COLOURS[len(labels) % len(LABEL_COLOURS)]}
            if name not in out:
                out.append(name)
        return out

    def _check_assignees(self, full_name: str, logins: list[Any]) -> list[str]:
        collaborators = self.repos[full_name]["collaborators"]
        for login in logins:
            if login not in collaborators:
                raise HttpError(422, "Validation Failed", errors=[
                    {"value": login, "resource": "Issue", "field": "assignees", "code": "invalid"}])
        return list(dict.fromkeys(logins))

    def _check_milestone(self, full_name: str, value: Any) -> int | None:
        if value is None:
            return None
        try:
            number = int(value)
        except (TypeError, ValueError):
            number = -1
        if number not in self.repos[full_name]["milestones"]:
            raise HttpError(422, "Validation Failed", errors=[
                {"value": value, "resource": "Issue", "field": "milestone", "code": "invalid"}])
        return number

    def _page(self, req: _Request, items: list[Any]) -> tuple[list[Any], dict[str, str]]:
        try:
            per_page = max(1, min(int(req.param("per_page") or 30), self.max_per_page))
            page = max(1, int(req.param("page") or 1))
        except ValueError:
            raise HttpError(400, "Invalid pagination parameters") from None
        last = max(1, math.ceil(len(items) / per_page))
        chunk = items[(page - 1) * per_page: page * per_page]
        links = []

        def link(p: int, rel: str) -> str:
            query = {k: v[-1] for k, v in req.query.items()}
            query.update({"per_page": str(per_page), "page": str(p)})
            return f'<{self.base_url}{req.path}?{urlencode(query)}>; rel="{rel}"'

        if page > 1:
            links += [link(page - 1, "prev"), link(1, "first")]
        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        return chunk, ({"Link": ", ".join(links)} if links else {})

    # ------------------------------------------------------------------ handlers
    def h_get_repo(self, req: _Request) -> tuple[int, Any, dict[str, str]]:
        return 200, self._repo(self._find_repo(req)), {}

    def h_list_milestones(self, req: _Request) -> tuple[int, Any, dict[str, str]]:
        full_name = self._find_repo(req)
        state = req.param("state") or "open"
        if state not in ("open", "closed", "all"):
            raise HttpError(422, "Validation Failed", errors=[{"resource": "Milestone", "field": "state",
                                                                "code": "invalid"}])
        with self._lock:
            numbers = sorted(self.repos[full_name]["milestones"]) if state != "closed" else []  # all are open
            page, headers = self._page(req, numbers)
            return 200, [self._milestone(full_name, n) for n in page], headers

    def h_get_milestone(self, req: _Request) -> tuple[int, Any, dict[str, str]]:
        full_name = self._find_repo(req)
        try:
            number = int(req.args["milestone_number"])
        except ValueError:
            raise HttpError(404, "Not Found") from None
        if number not in self.repos[full_name]["milestones"]:
            raise HttpError(404, "Not Found")
        return 200, self._milestone(full_name, number), {}

    def h_create_issue(self, req: _Request) -> tuple[int, Any, dict[str, str]]:
        full_name = self._find_repo(req)
        data = req.json if isinstance(req.json, dict) else {}
        title = data.get("title")
        if not isinstance(title, (str, int)) or not str(title).strip():
            raise HttpError(422, "Validation Failed",
                            errors=[{"resource": "Issue", "field": "title", "code": "missing_field"}])
        body = data.get("body")
        if body is not None and not isinstance(body, str):
            raise HttpError(422, "Invalid request.\n\nFor 'properties/body', is not a string or null.")
        with self._lock:
            logins = list(data.get("assignees") or [])
            if data.get("assignee"):
                logins.insert(0, data["assignee"])
            assignees = self._check_assignees(full_name, logins)
            milestone = self._check_milestone(full_name, data.get("milestone"))
            labels = self._ensure_labels(full_name, list(data.get("labels") or []))
            issues = self.repos[full_name]["issues"]
            number = max([*issues, *self.repos[full_name]["pulls"], *self.repos[full_name].get("deleted", ())],
                         default=0) + 1
            now = self.clock()
            issues[number] = {"id": self._new_id(), "number": number, "title": str(title), "body": body,
                              "state": "open", "state_reason": None, "labels": labels, "assignees": assignees,
                              "milestone": milestone, "user": self.login, "comments": [], "created": now,
                              "updated": now, "closed_at": None, "closed_by": None}
            out = self._issue(full_name, number)
        return 201, out, {"Location": out["url"]}

    def h_get_issue(self, req: _Request) -> tuple[int, Any, dict[str, str]]:
        full_name, number = self._find_issue(req)
        return 200, self._issue(full_name, number), {}

    def h_edit_issue(self, req: _Request) -> tuple[int, Any, dict[str, str]]:
        full_name, number = self._find_issue(req)
        data = req.json if isinstance(req.json, dict) else {}
        with self._lock:
            issue = self.repos[full_name]["issues"][number]
            state = data.get("state", issue["state"])
            reason = data.get("state_reason")
            if state not in ("open", "closed"):
                raise HttpError(422, "Validation Failed",
                                errors=[{"resource": "Issue", "field": "state", "code": "invalid"}])
            if reason is not None and reason not in STATE_REASONS:
                raise HttpError(422, "Validation Failed",
                                errors=[{"resource": "Issue", "field": "state_reason", "code": "invalid"}])
            if "title" in data:
                issue["title"] = str(data["title"])
            if "body" in data:
                issue["body"] = data["body"]
            if "labels" in data:
                issue["labels"] = self._ensure_labels(full_name, list(data["labels"] or []))
            if "assignees" in data:
                issue["assignees"] = self._check_assignees(full_name, list(data["assignees"] or []))
            if "milestone" in data:
                issue["milestone"] = self._check_milestone(full_name, data["milestone"])
            if state != issue["state"] or reason is not None:
                self._apply_state(issue, state, reason)
            issue["updated"] = self.clock()
            out = self._issue(full_name, number)
        return 200, out, {}

    def h_list_issues(self, req: _Request) -> tuple[int, Any, dict[str, str]]:
        full_name = self._find_repo(req)
        state = req.param("state") or "open"
        if state not in ("open", "closed", "all"):
            raise HttpError(422, "Validation Failed", errors=[{"resource": "Issue", "field": "state",
                                                                "code": "invalid"}])
        wanted_labels = [name for name in (req.param("labels") or "").split(",") if name]
        since = req.param("since")
        try:
            since_ts = _parse_iso(since) if since else None
        except ValueError:
            raise HttpError(422, "Validation Failed", errors=[{"resource": "Issue", "field": "since",
                                                                "code": "invalid"}]) from None
        sort = req.param("sort") or "created"
        direction = req.param("direction") or "desc"
        with self._lock:
            issues = list(self.repos[full_name]["issues"].values())
            chosen = [i for i in issues
                      if (state == "all" or i["state"] == state)
                      and all(label in i["labels"] for label in wanted_labels)
                      and (since_ts is None or i["updated"] >= since_ts)]
            key = {"updated": lambda i: (i["updated"], i["number"]),
                   "comments": lambda i: (len(i["comments"]), i["number"])}.get(sort, lambda i: i["number"])
            chosen.sort(key=key, reverse=direction != "asc")
            page, headers = self._page(req, chosen)
            return 200, [self._issue(full_name, i["number"]) for i in page], headers

    def h_list_comments(self, req: _Request) -> tuple[int, Any, dict[str, str]]:
        full_name, number = self._find_issue(req)
        with self._lock:
            comments = list(self.repos[full_name]["issues"][number]["comments"])
            page, headers = self._page(req, comments)
            return 200, [self._comment(full_name, number, c) for c in page], headers

    def h_add_comment(self, req: _Request) -> tuple[int, Any, dict[str, str]]:
        full_name, number = self._find_issue(req)
        body = (req.json or {}).get("body") if isinstance(req.json, dict) else None
        if not isinstance(body, str) or not body.strip():
            raise HttpError(422, "Validation Failed",
                            errors=[{"resource": "IssueComment", "field": "body", "code": "missing_field"}])
        with self._lock:
            comment = {"id": self._new_id(), "body": body, "user": self.login, "created": self.clock()}
            issue = self.repos[full_name]["issues"][number]
            issue["comments"].append(comment)
            issue["updated"] = comment["created"]
            out = self._comment(full_name, number, comment)
        return 201, out, {"Location": out["url"]}

    def _time_param(self, req: _Request, name: str, resource: str) -> float | None:
        value = req.param(name)
        try:
            return _parse_iso(value) if value else None
        except ValueError:
            raise HttpError(422, "Validation Failed", errors=[{"resource": resource, "field": name,
                                                                "code": "invalid"}]) from None

    def h_list_deployments(self, req: _Request) -> tuple[int, Any, dict[str, str]]:
        full_name = self._find_repo(req)
        wanted = {k: req.param(k) for k in ("sha", "ref", "task", "environment") if req.param(k)}
        with self._lock:
            chosen = [d for d in self.repos[full_name]["deployments"] if all(d[k] == v for k, v in wanted.items())]
            chosen.sort(key=lambda d: (d["created"], d["id"]), reverse=True)
            page, headers = self._page(req, chosen)
            return 200, [self._deployment(full_name, d) for d in page], headers

    def h_list_pulls(self, req: _Request) -> tuple[int, Any, dict[str, str]]:
        full_name = self._find_repo(req)
        state = req.param("state") or "open"
        sort = req.param("sort") or "created"
        if state not in ("open", "closed", "all") or sort not in ("created", "updated", "popularity",
                                                                   "long-running"):
            raise HttpError(422, "Validation Failed", errors=[{"resource": "PullRequest", "field": "state"
                                                                if state not in ("open", "closed", "all") else "sort",
                                                                "code": "invalid"}])
        direction = req.param("direction") or ("desc" if sort == "created" else "asc")
        base, head = req.param("base"), req.param("head")
        with self._lock:
            chosen = [p for p in self.repos[full_name]["pulls"].values()
                      if (state == "all" or (state == "closed") == (p["closed_at"] is not None))
                      and (base is None or p["base"] == base) and (head is None or head.split(":")[-1] == p["head"])]
            field = "updated" if sort == "updated" else "created"
            chosen.sort(key=lambda p: (p[field], p["number"]), reverse=direction != "asc")
            page, headers = self._page(req, chosen)
            return 200, [self._pull(full_name, p) for p in page], headers

    def h_list_commits(self, req: _Request) -> tuple[int, Any, dict[str, str]]:
        full_name = self._find_repo(req)
        since = self._time_param(req, "since", "Commit")
        until = self._time_param(req, "until", "Commit")
        ref = req.param("sha") or "main"
        with self._lock:
            commits = self.repos[full_name]["commits"]
            if ref not in {c["branch"] for c in commits} | {"main"} and ref not in {c["sha"] for c in commits}:
                raise HttpError(404, "No commit found for SHA: " + ref)
            chosen = [c for c in commits if (c["branch"] == ref or c["sha"] == ref)
                      and (since is None or c["at"] >= since) and (until is None or c["at"] <= until)]
            chosen.sort(key=lambda c: c["at"], reverse=True)
            page, headers = self._page(req, chosen)
            return 200, [self._commit(full_name, c) for c in page], headers

    def h_search_issues(self, req: _Request) -> tuple[int, Any, dict[str, str]]:
        q = req.param("q") or ""
        if not q.strip():
            raise HttpError(422, "Validation Failed", errors=[{"resource": "Search", "field": "q",
                                                                "code": "missing"}])
        repos: list[str] = []
        labels: list[str] = []
        kind, state = None, None
        fields = {"title", "body"}
        terms: list[str] = []
        for m in re.finditer(r'(-?)([\w.-]+):("[^"]*"|\S+)|"([^"]*)"|(\S+)', q):
            neg, qual, value, phrase, word = m.groups()
            if qual:
                value = value.strip('"')
                qual = qual.lower()
                if neg:
                    raise HttpError(422, f"The stand-in does not understand '-{qual}:{value}'.")
                if qual == "repo":
                    repos.append(value)
                elif qual == "label":
                    labels.append(value)
                elif qual in ("is", "type") and value in ("issue", "pr", "pull-request"):
                    kind = "issue" if value == "issue" else "pr"
                elif qual in ("is", "state") and value in ("open", "closed"):
                    state = value
                elif qual == "in":
                    fields = set(value.split(",")) & {"title", "body"}
                else:
                    raise HttpError(422, f"The stand-in does not understand the qualifier '{qual}:{value}'.")
            else:
                terms.append((phrase if phrase is not None else word).lower())
        if kind is None:
            raise HttpError(422, "Query must include 'is:issue' or 'is:pull-request'",
                            errors=[{"resource": "Search", "field": "q", "code": "invalid"}])
        for name in repos:
            if name not in self.repos:
                raise HttpError(422, "Validation Failed", errors=[{
                    "message": "The listed users and repositories cannot be searched either because the resources "
                               "do not exist or you do not have permission to view them.",
                    "resource": "Search", "field": "q", "code": "invalid"}])
        with self._lock:
            found: list[tuple[str, int]] = []
            if kind == "issue":
                for name in (repos or list(self.repos)):
                    for i in self.repos[name]["issues"].values():
                        text = " ".join(str(i[f] or "") for f in fields).lower()
                        if ((state is None or i["state"] == state) and all(label in i["labels"] for label in labels)
                                and all(t in text for t in terms)):
                            found.append((name, i["number"]))
            page, headers = self._page(req, found)
            items = [self._issue(name, number, search=True) for name, number in page]
        return 200, {"total_count": len(found), "incomplete_results": False, "items": items,
                     "search_type": "lexical"}, headers


class _Request:
    def __init__(self, method: str, path: str, query: dict[str, list[str]], args: dict[str, str],
                 json_body: Any) -> None:
        self.method, self.path, self.query, self.args, self.json = method, path, query, args, json_body

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None


class _Handler(JsonHandler):
    standin: GitHubStandin

    def _send(self, status: int, body: Any, path: str, headers: dict[str, str] | None = None) -> None:
        self._send_json(status, body, path, {**self.standin.rate_headers(), **(headers or {})})

    def _dispatch(self, method: str) -> None:
        s = self.standin
        parts = urlsplit(self.path)
        raw = self._read_body()
        path = parts.path
        if s.prefix and path.startswith(s.prefix + "/"):
            path = path[len(s.prefix):]
        elif s.prefix:
            path = "/<outside " + s.prefix + ">" + path
        try:
            if (route := match_route(_ROUTES, method, path)) is None:
                raise HttpError(404, "Not Found")
            template, name, args = route
            with s._lock:
                s.requests[f"{method} {template}"] += 1
                s.rate_used += 1
            if fault := s._take_fault(method, template, ("delay",)):
                time.sleep(fault.kw["seconds"])
            if fault := s._take_fault(method, template, ("fail", "rate")):
                if fault.kind == "rate":
                    wait = int(fault.kw["retry_after"])
                    if fault.kw["status"] == 403 and not fault.kw["secondary"]:
                        headers = {**s.rate_headers(), "x-ratelimit-remaining": "0",
                                   "x-ratelimit-reset": str(int(time.time()) + wait)}
                        raise HttpError(403, f"API rate limit exceeded for user ID {s.users[s.login]}.", headers)
                    raise HttpError(fault.kw["status"], "You have exceeded a secondary rate limit. Please wait a few "
                                    "minutes before you try again.", {"Retry-After": str(wait)})
                raise HttpError(fault.kw["status"], "Server Error (injected)")
            try:
                json_body = json.loads(raw) if raw else None
            except ValueError:
                raise HttpError(400, "Problems parsing JSON") from None
            req = _Request(method, path, parse_qs(parts.query), args, json_body)
            status, body, headers = getattr(s, f"h_{name}")(req)
            if s._take_fault(method, template, ("lose",)):
                self.close_connection = True  # done, but the answer never arrives
                return
            self._send(status, body, path, headers)
        except HttpError as err:
            try:
                self._send(err.status, err.body, path, err.headers)
            except OSError:
                pass
        except OSError:
            pass  # the client went away (timeouts)
