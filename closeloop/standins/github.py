"""A GitHub REST stand-in: the part of the API that PyGithub, `GitHubTracker`, the GitHub timeline source and
`GitHubPublisher` use.

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
the default branch `main`; `since` / `until`), and for the Git publisher, on an in-memory Git model (branches
with their head commits, each commit's files and parent, blobs; a repository starts with an empty root commit
on its default branch): `GET /repos/{owner}/{repo}/git/ref/{ref}` (`heads/<branch>`; tags are not modelled),
`POST /repos/{owner}/{repo}/git/refs` (`refs/heads/<branch>` from a known commit; 422 "Reference already exists",
"Object does not exist", or a name `git check-ref-format --branch` refuses),
`GET /repos/{owner}/{repo}/contents/{path}` (`ref`: a branch or commit, default the default branch; a file's
content base64 in 60-column lines, its blob sha as `git hash-object` computes it; directories are not listed),
`PUT /repos/{owner}/{repo}/contents/{path}` (`message`, `content`, `branch`, `sha`: 201 created, 200 updated,
a commit every time as on GitHub even when nothing changed; 422 when the file exists and no `sha` is given, 409
when `sha` is not the file's current one, 404 for an unknown branch), `POST /repos/{owner}/{repo}/pulls` (`head`
as `branch` or `owner:branch`; 422 when head or base is no branch, an open pull request of that head and base
exists, or the head has no commits the base lacks), `GET /repos/{owner}/{repo}/pulls/{pull_number}`,
`POST .../pulls/{pull_number}/requested_reviewers` (collaborators only, never the author),
`GET .../pulls/{pull_number}/reviews` and `POST /repos/{owner}/{repo}/issues/{issue_number}/labels` (an issue's
or a pull request's). The listing's `head` filter takes GitHub's `owner:branch` form and, as GitHub does,
ignores a bare branch name. `{path}`, `{ref}` may hold `/`s (routes `{+name}`); such a path is validated as the
spec's single segment. Every response carries
`x-ratelimit-limit/remaining/reset/used/resource`. Errors come as GitHub's `{"message", "documentation_url"}`
(422 adds `errors`). Every URL in a response is built from the server's own address and prefix:
PyGithub follows `url` fields and refuses any outside its base URL.

Test hooks: `repos` ("owner/name" -> dict with `issues` number -> dict, `pulls`, `deployments`, `commits`,
and the Git model's `branches` name -> sha, `trees` sha -> (path -> blob sha), `parents`, `blobs`),
`requests` (Counter of "METHOD /route/{template}", without the prefix), `add_repo()`, `set_state()`,
`add_deployment()`, `add_pull()`, `add_commit()`, `add_file()` (a commit of one file, as a person pushing),
`files()` (a branch's files now), `branch_commits()`, `add_review()`, `delete_issue()` (gone from listings;
`GET` of it answers 410 as on GitHub), `add_issue()` (an issue straight into the state, no request: for
benchmarks), and faults, each consumed by the next matching request (`path` narrows it to a route template,
with or without the method):
`lose_next_create_response(path=...)` (the request is carried out, then the connection dropped without an
answer; by default an issue's create, or e.g. `"POST /repos/{owner}/{repo}/git/refs"`,
`"PUT /repos/{owner}/{repo}/contents/{path}"`, `"POST /repos/{owner}/{repo}/pulls"`),
`fail_next(n, status=500)`, `rate_limit_next(retry_after=1, status=403)` (403: primary limit, remaining 0
and `x-ratelimit-reset`; 403 with `secondary=True` or 429: `Retry-After`), `delay_next(seconds)`.
`clock` (default `time.time`) stamps issues and comments (`created`), so a test with a fake clock can
check pacing. `port` binds a fixed port (`closeloop standin github --port N`). `token`, when given, is the
only one accepted (`Authorization: token <t>` or `Bearer <t>`; else 401 "Bad credentials").
`validator(method, path, status, body)` is called on every JSON response before it is sent (path without
the prefix); whatever it raises is recorded in `violations` (tests fail on any).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

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
    # for the Git publisher: branches, files and pull requests
    ("GET", "/repos/{owner}/{repo}/git/ref/{+ref}", "get_ref"),
    ("POST", "/repos/{owner}/{repo}/git/refs", "create_ref"),
    ("GET", "/repos/{owner}/{repo}/contents/{+path}", "get_contents"),
    ("PUT", "/repos/{owner}/{repo}/contents/{+path}", "put_contents"),
    ("POST", "/repos/{owner}/{repo}/pulls", "create_pull"),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}", "get_pull"),
    ("POST", "/repos/{owner}/{repo}/pulls/{pull_number}/requested_reviewers", "request_reviewers"),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews", "list_reviews"),
    ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/labels", "add_labels"),
]
_ROUTES = compile_routes(ROUTES)
STATE_REASONS = ("completed", "not_planned", "reopened", "duplicate")
LABEL_COLOURS = ("ededed", "d73a4a", "0075ca", "a2eeef", "7057ff", "008672", "e4e669", "d876e3")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def blob_sha(data: bytes) -> str:
    """Git's object id of a file's content (`git hash-object`): what GitHub answers as a file's `sha`."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


_BAD_REF = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//|/\.|\.lock(/|$)|^/|/$|\.$|^@$")


def valid_branch_name(name: str) -> bool:
    """What `git check-ref-format --branch` accepts (the rules GitHub applies to a new branch)."""
    return bool(name) and not name.startswith((".", "-")) and not _BAD_REF.search(name)


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
                 clock: Callable[[], float] = time.time, token: str | None = None) -> None:
        super().__init__(validator)
        self.token = token  # when set, a request without `Authorization: token|Bearer <token>` gets 401
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
                 milestones: dict[int, str] | None = None, private: bool = True,
                 default_branch: str = "main") -> dict[str, Any]:
        owner, name = full_name.split("/")
        with self._lock:
            self._user(owner)
            for login in collaborators:
                self._user(login)
            now = self.clock()
            repo = {"id": self._new_id(), "owner": owner, "name": name, "private": private,
                    "collaborators": {owner, self.login, *collaborators}, "issues": {}, "labels": {},
                    "milestones": {int(k): {"title": v, "id": self._new_id()} for k, v in (milestones or {}).items()},
                    "created": now, "pulls": {}, "deployments": [], "commits": [],
                    # git: branch -> head commit sha; commit sha -> (path -> blob sha) and parent; blob sha -> bytes
                    "default_branch": default_branch, "branches": {}, "trees": {}, "parents": {}, "blobs": {}}
            root = hashlib.sha1(f"{full_name}/root/{self._new_id()}".encode()).hexdigest()
            repo["branches"][default_branch], repo["trees"][root], repo["parents"][root] = root, {}, None
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
            git = self.repos[full_name]
            head = git["branches"].get(branch)
            git["trees"][sha] = dict(git["trees"].get(head, {})) if head else {}
            git["parents"][sha] = head
            git["branches"][branch] = sha
            return sha

    def add_file(self, full_name: str, path: str, content: str | bytes, *, branch: str | None = None,
                 message: str = "Add a file") -> str:
        """Commit `path` with `content` on `branch` (default: the default branch), as a person pushing would;
        returns the commit's sha."""
        with self._lock:
            repo = self.repos[full_name]
            data = content.encode() if isinstance(content, str) else content
            return str(self._commit_file(full_name, branch or repo["default_branch"], path, data, message)["sha"])

    def files(self, full_name: str, branch: str | None = None) -> dict[str, bytes]:
        """The files of `branch` (default: the default branch) as they are now: path -> content."""
        with self._lock:
            repo = self.repos[full_name]
            tree = repo["trees"][repo["branches"][branch or repo["default_branch"]]]
            return {path: repo["blobs"][blob] for path, blob in tree.items()}

    def branch_commits(self, full_name: str, branch: str) -> list[dict[str, Any]]:
        """The commits made on `branch` itself (by the contents API or `add_commit`), oldest first."""
        with self._lock:
            return [c for c in self.repos[full_name]["commits"] if c["branch"] == branch]

    def add_review(self, full_name: str, number: int, login: str, state: str = "APPROVED") -> None:
        """`login` reviews pull request `number` (its review request, if any, is then answered)."""
        with self._lock:
            pull = self.repos[full_name]["pulls"][number]
            self._user(login)
            pull.setdefault("reviews", []).append({"id": self._new_id(), "user": login, "state": state,
                                                   "at": self.clock(), "commit": self._pull_sha(full_name, pull)})
            pull["reviewers"] = [r for r in pull.get("reviewers", []) if r != login]

    def _commit_file(self, full_name: str, branch: str, path: str, data: bytes, message: str) -> dict[str, Any]:
        """A new commit on `branch` whose tree is its head's with `path` = `data` (GitHub's contents API commits
        even when nothing changes). Call with the lock held."""
        repo = self.repos[full_name]
        head = repo["branches"][branch]
        blob = blob_sha(data)
        repo["blobs"][blob] = data
        sha = hashlib.sha1(f"{full_name}/{head}/{path}/{blob}/{self._new_id()}".encode()).hexdigest()
        repo["trees"][sha] = {**repo["trees"][head], path: blob}
        repo["parents"][sha] = head
        repo["branches"][branch] = sha
        commit = {"sha": sha, "message": message, "author": self.login, "branch": branch, "at": self.clock(),
                  "parent": head}
        repo["commits"].append(commit)
        return commit

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
    def lose_next_create_response(self, path: str = "POST /repos/{owner}/{repo}/issues") -> None:
        """The next matching request is carried out, then the connection dropped without an answer. `path` is a
        route template, with or without the method: by default an issue's create; e.g.
        `"POST /repos/{owner}/{repo}/git/refs"` (a branch), `"PUT /repos/{owner}/{repo}/contents/{path}"` (a
        file's commit) or `"POST /repos/{owner}/{repo}/pulls"` (a pull request)."""
        self._faults.append(Fault("lose", path))

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
            "default_branch": r["default_branch"], "open_issues_count": open_count, "open_issues": open_count,
            "is_template": False,
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

    def _pull_sha(self, full_name: str, p: dict[str, Any]) -> str:
        """The head commit: fixed for `add_pull`'s, the branch's current head for those created by request."""
        return str(p.get("sha") or self.repos[full_name]["branches"].get(p["head"]) or "0" * 40)

    def _pull(self, full_name: str, p: dict[str, Any], *, full: bool = False) -> dict[str, Any]:
        repo_api = self.api(f"/repos/{full_name}")
        url = f"{repo_api}/pulls/{p['number']}"
        html = f"{self.url}/{full_name}/pull/{p['number']}"
        issue = f"{repo_api}/issues/{p['number']}"
        owner = self.repos[full_name]["owner"]

        def side(ref: str, sha: str) -> dict[str, Any]:
            return {"label": f"{owner}:{ref}", "ref": ref, "sha": sha, "user": self.simple_user(owner),
                    "repo": self._repo(full_name)}

        head_sha = self._pull_sha(full_name, p)
        base_sha = (f"{p['number'] + 2_000_000:040x}" if p.get("sha")
                    else self.repos[full_name]["branches"].get(p["base"], "0" * 40))
        links = {"self": url, "html": html, "issue": issue, "comments": f"{issue}/comments",
                 "review_comments": f"{url}/comments", "review_comment": f"{repo_api}/pulls/comments{{/number}}",
                 "commits": f"{url}/commits", "statuses": f"{repo_api}/statuses/{head_sha}"}
        out: dict[str, Any] = {
            "url": url, "id": p["id"], "node_id": f"PR_{p['id']}", "html_url": html, "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch", "issue_url": issue, "commits_url": f"{url}/commits",
            "review_comments_url": f"{url}/comments", "review_comment_url": f"{repo_api}/pulls/comments{{/number}}",
            "comments_url": f"{issue}/comments", "statuses_url": f"{repo_api}/statuses/{head_sha}",
            "number": p["number"], "state": "closed" if p["closed_at"] else "open", "locked": False,
            "title": p["title"], "user": self.simple_user(p["user"]), "body": p.get("body"),
            # the description's pull request labels have a string `description` (an issue's label: nullable)
            "labels": [{**self._label(full_name, n), "description": ""} for n in p.get("labels", [])],
            "milestone": None,
            "active_lock_reason": None, "created_at": _iso(p["created"]), "updated_at": _iso(p["updated"]),
            "closed_at": _iso(p["closed_at"]) if p["closed_at"] else None,
            "merged_at": _iso(p["merged_at"]) if p["merged_at"] else None, "merge_commit_sha": p["merge_sha"],
            "assignee": None, "assignees": [],
            "requested_reviewers": [self.simple_user(login) for login in p.get("reviewers", [])],
            "requested_teams": [], "head": side(p["head"], head_sha), "base": side(p["base"], base_sha),
            "_links": {k: {"href": v} for k, v in links.items()}, "author_association": "MEMBER",
            "auto_merge": None, "draft": bool(p.get("draft")),
        }
        if full:  # `pull-request`, as one pull request is answered (not a listing's `pull-request-simple`)
            merged = p["merged_at"] is not None
            out.update({"merged": merged, "mergeable": None if merged else True, "rebaseable": None if merged else True,
                        "mergeable_state": "unknown" if merged else "clean",
                        "merged_by": self.simple_user(p["user"]) if merged else None, "comments": 0,
                        "review_comments": 0, "maintainer_can_modify": False,
                        "commits": len(self.branch_commits(full_name, p["head"])) if not p.get("sha") else 1,
                        "additions": 0, "deletions": 0, "changed_files": 0})
        return out

    def _git_ref(self, full_name: str, branch: str) -> dict[str, Any]:
        sha = self.repos[full_name]["branches"][branch]
        return {"ref": f"refs/heads/{branch}", "node_id": f"REF_{hashlib.sha1(branch.encode()).hexdigest()[:16]}",
                "url": self.api(f"/repos/{full_name}/git/refs/heads/{quote(branch)}"),
                "object": {"type": "commit", "sha": sha, "url": self.api(f"/repos/{full_name}/git/commits/{sha}")}}

    def _content(self, full_name: str, path: str, ref: str, blob: str) -> dict[str, Any]:
        data: bytes = self.repos[full_name]["blobs"][blob]
        api = self.api(f"/repos/{full_name}/contents/{quote(path)}?ref={quote(ref, safe='')}")
        html = f"{self.url}/{full_name}/blob/{quote(ref)}/{quote(path)}"
        git = self.api(f"/repos/{full_name}/git/blobs/{blob}")
        encoded = base64.b64encode(data).decode()
        return {"type": "file", "encoding": "base64", "size": len(data), "name": path.rsplit("/", 1)[-1],
                "path": path, "content": "".join(encoded[i:i + 60] + "\n" for i in range(0, len(encoded), 60)),
                "sha": blob, "url": api, "git_url": git, "html_url": html,
                "download_url": f"{self.url}/raw/{full_name}/{quote(ref)}/{quote(path)}",
                "_links": {"self": api, "git": git, "html": html}}

    def _file_commit(self, full_name: str, c: dict[str, Any]) -> dict[str, Any]:
        repo_api = self.api(f"/repos/{full_name}")
        git_user = {"name": c["author"], "email": f"{c['author']}@users.noreply.example.com", "date": _iso(c["at"])}
        parent = c["parent"]
        tree = hashlib.sha1(f"{c['sha']}:tree".encode()).hexdigest()
        return {"sha": c["sha"], "node_id": f"C_{c['sha'][:20]}", "url": f"{repo_api}/git/commits/{c['sha']}",
                "html_url": f"{self.url}/{full_name}/commit/{c['sha']}", "author": git_user, "committer": git_user,
                "message": c["message"],
                "tree": {"sha": tree, "url": f"{repo_api}/git/trees/{tree}"},
                "parents": [{"sha": parent, "url": f"{repo_api}/git/commits/{parent}",
                             "html_url": f"{self.url}/{full_name}/commit/{parent}"}] if parent else [],
                "verification": {"verified": False, "reason": "unsigned", "signature": None, "payload": None,
                                 "verified_at": None}}

    def _review(self, full_name: str, number: int, r: dict[str, Any]) -> dict[str, Any]:
        url = self.api(f"/repos/{full_name}/pulls/{number}")
        html = f"{self.url}/{full_name}/pull/{number}#pullrequestreview-{r['id']}"
        return {"id": r["id"], "node_id": f"PRR_{r['id']}", "user": self.simple_user(r["user"]), "body": "",
                "state": r["state"], "html_url": html, "pull_request_url": url, "commit_id": r["commit"],
                "submitted_at": _iso(r["at"]), "author_association": "COLLABORATOR",
                "_links": {"html": {"href": html}, "pull_request": {"href": url}}}

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
        owner = self.repos[full_name]["owner"]
        # `head` is "user:ref-name"; GitHub ignores one without the user (forks are not modelled: the user is
        # the repository's owner)
        head_user, _, head_ref = (head or "").rpartition(":")
        with self._lock:
            chosen = [p for p in self.repos[full_name]["pulls"].values()
                      if (state == "all" or (state == "closed") == (p["closed_at"] is not None))
                      and (base is None or p["base"] == base)
                      and (not head_user or (head_user == owner and head_ref == p["head"]))]
            field = "updated" if sort == "updated" else "created"
            chosen.sort(key=lambda p: (p[field], p["number"]), reverse=direction != "asc")
            page, headers = self._page(req, chosen)
            return 200, [self._pull(full_name, p) for p in page], headers

    def h_list_commits(self, req: _Request) -> tuple[int, Any, dict[str, str]]:
        full_name = self._find_repo(req)
        since = self._time_param(req, "since", "Commit")
        until = self._time_param(req, "until", "Commit")
        default = self.repos[full_name]["default_branch"]
        ref = req.param("sha") or default
        with self._lock:
            commits = self.repos[full_name]["commits"]
            known = {c["branch"] for c in commits} | set(self.repos[full_name]["branches"])
            if ref not in known and ref not in {c["sha"] for c in commits}:
                raise HttpError(404, "No commit found for SHA: " + ref)
            chosen = [c for c in commits if (c["branch"] == ref or c["sha"] == ref)
                      and (since is None or c["at"] >= since) and (until is None or c["at"] <= until)]
            chosen.sort(key=lambda c: c["at"], reverse=True)
            page, headers = self._page(req, chosen)
            return 200, [self._commit(full_name, c) for c in page], headers

    # ------------------------------------------------------------------ git: refs, contents, pull requests
    def _find_pull(self, req: _Request) -> tuple[str, int]:
        full_name = self._find_repo(req)
        try:
            number = int(req.args["pull_number"])
        except ValueError:
            raise HttpError(404, "Not Found") from None
        if number not in self.repos[full_name]["pulls"]:
            raise HttpError(404, "Not Found")
        return full_name, number

    def _commit_of(self, full_name: str, ref: str) -> str:
        """The commit a `ref` (a branch name or a commit sha) names; 404 as GitHub answers an unknown one."""
        repo = self.repos[full_name]
        if ref in repo["branches"]:
            return str(repo["branches"][ref])
        if ref.startswith("heads/") and ref[6:] in repo["branches"]:
            return str(repo["branches"][ref[6:]])
        if ref in repo["trees"]:
            return ref
        raise HttpError(404, f"No commit found for the ref {ref}")

    def h_get_ref(self, req: _Request) -> tuple[int, Any, dict[str, str]]:
        full_name = self._find_repo(req)
        ref = req.args["ref"]
        with self._lock:
            if not ref.startswith("heads/") or ref[6:] not in self.repos[full_name]["branches"]:
                raise HttpError(404, "Not Found")  # tags are not modelled
            return 200, self._git_ref(full_name, ref[6:]), {}

    def h_create_ref(self, req: _Request) -> tuple[int, Any, dict[str, str]]:
        full_name = self._find_repo(req)
        data = req.json if isinstance(req.json, dict) else {}
        ref, sha = data.get("ref"), data.get("sha")
        for name, value in (("ref", ref), ("sha", sha)):
            if not isinstance(value, str) or not value:
                raise HttpError(422, f"Invalid request.\n\n\"{name}\" wasn't supplied.")
        assert isinstance(ref, str) and isinstance(sha, str)
        if not ref.startswith("refs/") or ref.count("/") < 2:
            raise HttpError(422, "Reference name must start with 'refs/' and have at least two slashes.")
        if not ref.startswith("refs/heads/") or not valid_branch_name(ref[11:]):
            raise HttpError(422, f"{ref} is not a valid ref name.")
        branch = ref[11:]
        with self._lock:
            repo = self.repos[full_name]
            if sha not in repo["trees"]:
                raise HttpError(422, "Object does not exist")
            if branch in repo["branches"]:
                raise HttpError(422, "Reference already exists")
            repo["branches"][branch] = sha
            out = self._git_ref(full_name, branch)
        return 201, out, {"Location": out["url"]}

    def h_get_contents(self, req: _Request) -> tuple[int, Any, dict[str, str]]:
        full_name = self._find_repo(req)
        path = req.args["path"].strip("/")
        with self._lock:
            repo = self.repos[full_name]
            ref = req.param("ref") or repo["default_branch"]
            blob = repo["trees"][self._commit_of(full_name, ref)].get(path)
            if blob is None:  # directories are not listed: a file's path or 404
                raise HttpError(404, "Not Found")
            return 200, self._content(full_name, path, ref, blob), {}

    def h_put_contents(self, req: _Request) -> tuple[int, Any, dict[str, str]]:
        full_name = self._find_repo(req)
        path = req.args["path"].strip("/")
        data = req.json if isinstance(req.json, dict) else {}
        for name in ("message", "content"):
            if not isinstance(data.get(name), str):
                raise HttpError(422, f"Invalid request.\n\n\"{name}\" wasn't supplied.")
        try:
            content = base64.b64decode(data["content"], validate=True)
        except (binascii.Error, ValueError):
            raise HttpError(422, "content is not valid Base64") from None
        sha = data.get("sha")
        with self._lock:
            repo = self.repos[full_name]
            branch = data.get("branch") or repo["default_branch"]
            if branch not in repo["branches"]:
                raise HttpError(404, f"Branch {branch} not found")
            current = repo["trees"][repo["branches"][branch]].get(path)
            if current is not None and sha is None:
                raise HttpError(422, "Invalid request.\n\n\"sha\" wasn't supplied.")
            if sha is not None and sha != current:
                raise HttpError(409, f"{path} does not match {sha}")
            commit = self._commit_file(full_name, branch, path, content, str(data["message"]))
            out = {"content": self._content(full_name, path, branch, repo["trees"][commit["sha"]][path]),
                   "commit": self._file_commit(full_name, commit)}
        return (201 if current is None else 200), out, {}

    def _is_ancestor(self, full_name: str, sha: str, of: str) -> bool:
        parents = self.repos[full_name]["parents"]
        node: str | None = of
        while node is not None:
            if node == sha:
                return True
            node = parents.get(node)
        return False

    def h_create_pull(self, req: _Request) -> tuple[int, Any, dict[str, str]]:
        full_name = self._find_repo(req)
        data = req.json if isinstance(req.json, dict) else {}
        for name in ("head", "base"):
            if not isinstance(data.get(name), str) or not data[name]:
                raise HttpError(422, "Validation Failed",
                                errors=[{"resource": "PullRequest", "field": name, "code": "missing_field"}])
        title = data.get("title")
        if not isinstance(title, str) or not title.strip():
            raise HttpError(422, "Validation Failed",
                            errors=[{"resource": "PullRequest", "field": "title", "code": "missing_field"}])
        with self._lock:
            repo = self.repos[full_name]
            head_user, _, head = str(data["head"]).rpartition(":")
            base = str(data["base"])
            if head_user and head_user != repo["owner"] or head not in repo["branches"]:
                raise HttpError(422, "Validation Failed",
                                errors=[{"resource": "PullRequest", "field": "head", "code": "invalid"}])
            if base not in repo["branches"]:
                raise HttpError(422, "Validation Failed",
                                errors=[{"resource": "PullRequest", "field": "base", "code": "invalid"}])
            if any(p["head"] == head and p["base"] == base and p["closed_at"] is None and not p.get("sha")
                   for p in repo["pulls"].values()):
                raise HttpError(422, "Validation Failed", errors=[{
                    "resource": "PullRequest", "code": "custom",
                    "message": f"A pull request already exists for {repo['owner']}:{head}."}])
            if self._is_ancestor(full_name, repo["branches"][head], repo["branches"][base]):
                raise HttpError(422, "Validation Failed", errors=[{
                    "resource": "PullRequest", "code": "custom", "message": f"No commits between {base} and {head}"}])
            number = max([*repo["issues"], *repo["pulls"], *repo.get("deleted", ())], default=0) + 1
            now = self.clock()
            repo["pulls"][number] = {
                "id": self._new_id(), "number": number, "title": title, "user": self.login, "base": base,
                "head": head, "created": now, "updated": now, "closed_at": None, "merged_at": None, "sha": None,
                "merge_sha": None, "body": data.get("body"), "draft": bool(data.get("draft")), "labels": [],
                "reviewers": [], "reviews": []}
            out = self._pull(full_name, repo["pulls"][number], full=True)
        return 201, out, {"Location": out["url"]}

    def h_get_pull(self, req: _Request) -> tuple[int, Any, dict[str, str]]:
        full_name, number = self._find_pull(req)
        with self._lock:
            return 200, self._pull(full_name, self.repos[full_name]["pulls"][number], full=True), {}

    def h_request_reviewers(self, req: _Request) -> tuple[int, Any, dict[str, str]]:
        full_name, number = self._find_pull(req)
        data = req.json if isinstance(req.json, dict) else {}
        logins = [str(r) for r in data.get("reviewers") or []]
        with self._lock:
            repo = self.repos[full_name]
            pull = repo["pulls"][number]
            if pull["user"] in logins:
                raise HttpError(422, "Review cannot be requested from pull request author.")
            if any(login not in repo["collaborators"] for login in logins) or data.get("team_reviewers"):
                raise HttpError(422, "Reviews may only be requested from collaborators. One or more of the users "
                                f"or teams you specified is not a collaborator of the {full_name} repository.")
            pull["reviewers"] = list(dict.fromkeys([*pull.get("reviewers", []), *logins]))
            pull["updated"] = self.clock()
            return 201, self._pull(full_name, pull), {}

    def h_list_reviews(self, req: _Request) -> tuple[int, Any, dict[str, str]]:
        full_name, number = self._find_pull(req)
        with self._lock:
            page, headers = self._page(req, list(self.repos[full_name]["pulls"][number].get("reviews", [])))
            return 200, [self._review(full_name, number, r) for r in page], headers

    def h_add_labels(self, req: _Request) -> tuple[int, Any, dict[str, str]]:
        full_name = self._find_repo(req)
        data = req.json
        names = data.get("labels") if isinstance(data, dict) else data
        if not isinstance(names, list):
            raise HttpError(422, "Validation Failed", errors=[{"resource": "Label", "field": "labels",
                                                                "code": "missing_field"}])
        with self._lock:
            repo = self.repos[full_name]
            try:
                number = int(req.args["issue_number"])
            except ValueError:
                raise HttpError(404, "Not Found") from None
            target = repo["issues"].get(number) or repo["pulls"].get(number)  # a pull request is an issue too
            if target is None:
                raise HttpError(404, "Not Found")
            labels = self._ensure_labels(full_name, names)
            target["labels"] = list(dict.fromkeys([*target.get("labels", []), *labels]))
            target["updated"] = self.clock()
            return 200, [self._label(full_name, n) for n in target["labels"]], {}

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
            req_path = path
            if any("/" in value for value in args.values()):  # a {+path}: one segment of the spec's template
                path = re.sub(r"\{(\w+)\}", lambda m: quote(args[m.group(1)], safe=""), template)
            with s._lock:
                s.requests[f"{method} {template}"] += 1
                s.rate_used += 1
            if s.token is not None:
                kind, _, given = (self.headers.get("Authorization") or "").partition(" ")
                if kind.lower() not in ("token", "bearer") or given != s.token:
                    raise HttpError(401, "Bad credentials")
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
            req = _Request(method, req_path, parse_qs(parts.query), args, json_body)
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
