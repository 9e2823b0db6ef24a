"""The postmortem's Markdown as a file of a Git repository on GitHub (`[publishers.github]`), through PyGithub.

Where it goes. The file's path is the `path` template (default `postmortems/{year}/{stem}.md`: the year the
incident started, the postmortem id made file-safe by closeloop.ids.file_stem). The base branch is `base_branch`,
else the repository's default branch.

`mode = "pull_request"` (the default): every postmortem has one branch, `closeloop/<stem>` (`branch_name`: the
stem with `.` and `~` percent-encoded too, so it is a valid Git branch name and still injective), created from
the base branch when it is missing; the file is committed on it, and one pull request proposes it to the base
branch, found again by its head (`GET /pulls?state=open&head=<owner>:<branch>&base=<base>`) before one is created.
A revised document is one more commit on the same branch, in the same pull request. Configured `labels` are added
when the pull request lacks them, `reviewers` are asked unless they were asked already, have reviewed, or wrote
it. The reference is the pull request's `html_url`. Once it is merged (and no pull request is open) a publish
whose file the base branch already has changes nothing and returns the file's URL on the base branch; a revision
opens a new pull request from the branch (created again when GitHub deleted it after the merge).

`mode = "direct"`: the file is committed straight to the base branch; the reference is its `html_url` there.

Idempotency (an activity's retry after a lost answer). Every step looks before it acts: the branch by its ref
(`GET /git/ref/heads/<branch>`), the file by its contents on the branch (`GET /contents/<path>?ref=<branch>`,
whose blob sha is compared with the document's, `git hash-object` of its UTF-8 bytes: equal means no commit),
the pull request by its head. So a create whose answer was lost (the branch, the commit, the pull request) is
found by the retry and not made twice. A commit refused because the file changed in between (409 stale sha, 422
sha missing) reads the file again and tries once more.

Errors become `GitHubError`, as for the GitHub tracker (`_wrap`): 5xx, 408, 429, rate-limit 403s, timeouts and
connection failures are retryable (with Retry-After or the rate limit's reset); 401, other 403s, 404 of the
repository and other 4xx are not, with a message naming CLOSELOOP_GITHUB_TOKEN and the repository. The token is
never logged nor put in a message.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial

import structlog
from github import Github, GithubException
from github.ContentFile import ContentFile
from github.PullRequest import PullRequest
from github.Repository import Repository

from closeloop.ids import BadId, file_stem, incident_of
from closeloop.integrations.base import Document, Publisher
from closeloop.integrations.github.client import github_client
from closeloop.integrations.github.settings import ENV_TOKEN, GitHubPublisherSettings
from closeloop.integrations.github.tracker import GitHubError, github_errors, repo_path

BRANCH_PREFIX = "closeloop/"


def branch_name(postmortem_id: str) -> str:
    """The postmortem's branch: `closeloop/` + its file stem with `.` and `~` percent-encoded (Git refuses `..`,
    `~`, a trailing `.` and `.lock`; the stem's other characters are letters, digits, `-`, `_` and `%XX`).
    "postmortem/api/INC-7" -> "closeloop/postmortem_api_INC-7"."""
    return BRANCH_PREFIX + file_stem(postmortem_id).replace(".", "%2E").replace("~", "%7E")


def file_path(template: str, document: Document, now: datetime | None = None) -> str:
    """The document's path in the repository: `template` with {year}, {month}, {stem} and {source}. The date is
    the incident's start (Document.started_at); a document without one is dated `now` (default: the clock)."""
    when = document.started_at or now or datetime.now(UTC)
    when = when.astimezone(UTC) if when.tzinfo else when
    try:
        source = incident_of(document.postmortem_id)[0]
    except BadId:
        source = "unknown"
    return template.format(year=f"{when.year:04d}", month=f"{when.month:02d}",
                           stem=file_stem(document.postmortem_id), source=source)


def blob_sha(data: bytes) -> str:
    """Git's object id of a file's content (`git hash-object`), which GitHub answers as the file's `sha`."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class GitHubPublisher(Publisher):
    name = "github"

    def __init__(self, settings: GitHubPublisherSettings, *, token: str) -> None:
        self.settings = settings
        self._token = token
        self._client: Github | None = None
        self._repo: Repository | None = None
        self._lock = threading.Lock()
        self.log = structlog.get_logger("closeloop.integrations.github.publisher")

    def __repr__(self) -> str:  # never the token
        return f"GitHubPublisher({self.settings.repo!r}, mode={self.settings.mode!r})"

    # ------------------------------------------------------------------ plumbing
    @property
    def client(self) -> Github:
        with self._lock:
            if self._client is None:
                # PyGithub's own pacing off: a publish is a handful of requests, and the activity retries
                self._client = github_client(self.settings.base_url, self._token, timeout=self.settings.timeout,
                                             seconds_between_requests=None, seconds_between_writes=None)
            return self._client

    def _redact(self, text: str) -> str:
        return text.replace(self._token, "<redacted>") if self._token else text

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        with github_errors(what, partial(self._hinted, what)):
            yield

    def _hinted(self, what: str, error: GitHubError) -> GitHubError:
        """The error with what to check for a bad token, a token without rights, or no such repository; no token
        in the text."""
        repo = self.settings.repo
        if error.status == 401:
            hint = f"the token is not accepted: check {ENV_TOKEN}"
        elif error.status == 403 and not error.retryable:
            hint = (f"the token may not do this in {repo}: {ENV_TOKEN} needs write access to its contents and "
                    "pull requests")
        elif error.status == 404 and what.startswith("get repository"):
            hint = f"no repository {repo}, or the token cannot see it: check [publishers.github] repo and {ENV_TOKEN}"
        else:
            hint = ""
        message = f"{error}: {hint}" if hint else str(error)
        return GitHubError(self._redact(message)[:1000], retryable=error.retryable, status=error.status,
                           retry_after=error.retry_after)

    def repo(self) -> Repository:
        if self._repo is None:
            with self._errors(f"get repository {self.settings.repo}"):
                self._repo = self.client.get_repo(repo_path(self.settings.repo))
        return self._repo

    def base_branch(self) -> str:
        return self.settings.base_branch or self.repo().default_branch

    # ------------------------------------------------------------------ branch, file, pull request
    def _branch_sha(self, branch: str) -> str | None:
        """The head commit of `branch`, or None when there is no such branch."""
        with self._errors(f"read branch {branch}"):
            try:
                return str(self.repo().get_git_ref(f"heads/{branch}").object.sha)
            except GithubException as exc:
                if exc.status == 404:
                    return None
                raise

    def _ensure_branch(self, branch: str, base: str) -> None:
        if self._branch_sha(branch) is not None:
            return
        base_sha = self._branch_sha(base)
        if base_sha is None:
            raise GitHubError(f"GitHub: {self.settings.repo} has no branch {base!r} to publish to (check "
                              "[publishers.github] base_branch)", retryable=False)
        with self._errors(f"create branch {branch}"):
            try:
                self.repo().create_git_ref(f"refs/heads/{branch}", base_sha)
            except GithubException as exc:
                if exc.status != 422 or self._branch_sha(branch) is None:  # 422: made meanwhile, e.g. by a retry
                    raise
        self.log.info("github publish branch created", repo=self.settings.repo, branch=branch, base=base)

    def _file(self, path: str, ref: str) -> ContentFile | None:
        with self._errors(f"read {path} on {ref}"):
            try:
                found = self.repo().get_contents(path, ref=ref)
            except GithubException as exc:
                if exc.status == 404:
                    return None
                raise
        if isinstance(found, list):
            raise GitHubError(f"GitHub: {path} is a directory in {self.settings.repo} (check [publishers.github] "
                              "path)", retryable=False)
        return found

    def _commit(self, path: str, content: bytes, branch: str, message: str) -> str:
        """Commit `content` as `path` on `branch` unless the file there has it already; the file's html_url."""
        sha = blob_sha(content)
        for attempt in (1, 2):
            current = self._file(path, branch)
            if current is not None and current.sha == sha:
                return str(current.html_url)
            with self._errors(f"commit {path} on {branch}"):
                try:
                    if current is None:
                        made = self.repo().create_file(path, message, content, branch=branch)
                    else:
                        made = self.repo().update_file(path, message, content, current.sha, branch=branch)
                except GithubException as exc:
                    if exc.status in (409, 422) and attempt == 1:  # changed in between: read it again
                        self.log.info("github publish file changed meanwhile, reading again", path=path,
                                      branch=branch, status=exc.status)
                        continue
                    raise
            commit = made["commit"]
            self.log.info("github publish committed", repo=self.settings.repo, path=path, branch=branch,
                          commit=getattr(commit, "sha", None))
            content_file = made["content"]
            return str(getattr(content_file, "html_url", "") or "")
        raise AssertionError("unreachable")

    def _open_pull(self, branch: str, base: str) -> PullRequest | None:
        owner = self.repo().owner.login
        with self._errors("find the pull request"):
            for pull in self.repo().get_pulls(state="open", head=f"{owner}:{branch}", base=base):
                if pull.head.ref == branch:  # GitHub ignores a `head` it cannot read: check
                    return pull
        return None

    def _create_pull(self, document: Document, branch: str, base: str, path: str) -> PullRequest:
        ref = document.postmortem_id.removeprefix("postmortem/")
        body = (f"The postmortem of {ref}, published by closeloop as `{path}`.\n\n"
                "Merging publishes it on the base branch. While this pull request is open, closeloop commits "
                "each revision of the document to its branch.")
        with self._errors("create the pull request"):
            try:
                pull = self.repo().create_pull(base=base, head=branch, title=document.title[:256], body=body)
            except GithubException as exc:
                found = self._open_pull(branch, base) if exc.status == 422 else None
                if found is None:  # 422 "already exists": made meanwhile
                    raise
                return found
        self.log.info("github publish pull request opened", repo=self.settings.repo, number=pull.number,
                      branch=branch, base=base)
        return pull

    def _dress(self, pull: PullRequest) -> None:
        """Add the configured labels it lacks; ask the configured reviewers not asked yet (nor done, nor its
        author). A reviewer GitHub refuses (not a collaborator) is logged: the document is published all the
        same."""
        have = {label.name for label in pull.labels}
        missing = [label for label in self.settings.labels if label not in have]
        if missing:
            with self._errors("label the pull request"):
                pull.add_to_labels(*missing)
        if not self.settings.reviewers:
            return
        with self._errors("read the pull request's reviews"):
            asked = {user.login for user in pull.requested_reviewers}
            done = {review.user.login for review in pull.get_reviews() if review.user is not None}
            author = pull.user.login
        ask = [r for r in self.settings.reviewers if r not in asked | done and r != author]
        if not ask:
            return
        try:
            with self._errors("request reviewers"):
                pull.create_review_request(reviewers=ask)
        except GitHubError as exc:
            if exc.status != 422:
                raise
            self.log.warning("github publish reviewers refused", repo=self.settings.repo, number=pull.number,
                             reviewers=ask, error=str(exc))

    # ------------------------------------------------------------------ Publisher
    def publish(self, document: Document, idempotency_key: str) -> str:
        # Idempotent by the postmortem's branch, path and pull request, whatever the key.
        path = file_path(self.settings.path, document)
        content = document.markdown.encode("utf-8")
        base = self.base_branch()
        ref = document.postmortem_id.removeprefix("postmortem/")
        if self.settings.mode == "direct":
            return self._commit(path, content, base, f"{document.title} ({ref})")
        branch = branch_name(document.postmortem_id)
        pull = self._open_pull(branch, base)
        if pull is None:
            on_base = self._file(path, base)
            if on_base is not None and on_base.sha == blob_sha(content):
                return str(on_base.html_url)  # merged already: nothing to propose
        self._ensure_branch(branch, base)
        self._commit(path, content, branch, f"{document.title} ({ref})")
        if pull is None:
            pull = self._create_pull(document, branch, base, path)
        self._dress(pull)
        return str(pull.html_url)
