"""The web app's pages, for everyone in the loop: server-rendered (Jinja2, autoescaped), a few lines of
JavaScript for autosave, no build step.

| page | who | reads |
|---|---|---|
| `GET /my` | the signed-in person: the drafts, reviews, items and verdicts they owe | store, a Query per review |
| `GET /dashboard` | managers and leads: stalled postmortems and overdue items of the people they may see | store |
| `GET /postmortems/<id>` | anyone the postmortem involves, their managers, admins | the workflow's `state` Query |
| `GET/POST /postmortems/<id>/draft` | the owner: the editor; submit runs `submit_draft` | Query, store (autosave) |
| `POST /postmortems/<id>/review` | a reviewer: approve or request changes | `review` Update |
| `GET /postmortems/<id>/items/<item>` | an item's page; complete, won't do, verdict | the item's Query and Updates |
| `GET /go/<token>` | a signed link from a message: opens its page once, after sign-in | - |

Every action is the same Workflow Update the CLI runs, with the signed-in person as who acts: the workflow's
validator decides whether that person may, and its refusal is shown on the page. Every action, done or refused,
goes to the audit log with who, when and from where. Every route but `/static/*` needs a signed-in person;
every POST needs the session's CSRF token (closeloop.web.signin)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote, urlsplit

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import ValidationError
from temporalio.service import RPCError

from closeloop import contract, quality
from closeloop.client import Closeloop, workflow_not_found
from closeloop.config import Config
from closeloop.draft_markdown import DraftError, parse_draft
from closeloop.ids import BadId, parse_item_id, parse_postmortem_id, postmortem_of_item
from closeloop.links import item_url, postmortem_url
from closeloop.models import (
    ActionItemSpec,
    ActionItemState,
    CompleteItem,
    DraftSubmission,
    Person,
    PostmortemState,
    ReviewDecision,
    ReviewVote,
    TimelineEvent,
    VerdictInput,
    WontDoReason,
)
from closeloop.readmodel import AuditEntry, DashboardFilter, Insights, LibraryFilter, WebViews
from closeloop.secrets import Secrets
from closeloop.web import action_links, charts, updates
from closeloop.web.access import Viewer, team_of
from closeloop.web.signin import (
    CSRF_FIELD,
    CSRF_HEADER,
    Auth,
    SignInError,
    client_address,
    csrf_ok,
    csrf_token,
    safe_next,
)

log = structlog.get_logger("closeloop.web")

HERE = Path(__file__).parent
QUERY_TIMEOUT = 10.0
MAX_FORM_BYTES = 256 * 1024
MAX_TIMELINE_ROWS = 300
MAX_ITEMS = 50
DASHBOARD_ROWS = 100  # the most overdue of each list; the counts cover them all (bench/web_pages.py)
DRAFT_TEXT_FIELDS = ("summary", "impact", "impact_users", "impact_duration", "impact_money", "impact_customers",
                     "root_cause", "contributing_factors", "resolution", "recovery", "went_well", "went_badly",
                     "lucky")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

ClientGetter = Callable[[], Awaitable[Closeloop]]
ViewsGetter = Callable[[], Awaitable[WebViews]]
InsightsGetter = Callable[[], Awaitable[Insights]]


class PageError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _when(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M UTC") -> str:
    if value is None:
        return ""
    return value.astimezone(UTC).strftime(fmt)


def _ago(value: datetime | None, now: datetime | None = None) -> str:
    """`in 3 days`, `2 hours ago`."""
    if value is None:
        return ""
    delta = value - (now or datetime.now(UTC))
    past = delta.total_seconds() < 0
    seconds = abs(delta.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            text = f"{n} {unit}{'s' if n != 1 else ''}"
            return f"{text} ago" if past else f"in {text}"
    return "just now"


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["when"] = _when
    env.filters["ago"] = _ago
    env.filters["day"] = lambda v: _when(v, "%Y-%m-%d")
    env.globals["postmortem_path"] = _pm_path
    env.globals["item_path"] = _item_path
    return env


def mount_pages(app: FastAPI, config: Config, secrets: Secrets, client: ClientGetter, views: ViewsGetter,
                insights: InsightsGetter) -> None:
    """Add the pages to `app` (closeloop.web.app.create_app calls it)."""
    env = _environment()
    env.globals["charts"] = charts

    def people() -> dict[str, Person]:
        return dict(config.people_directory())

    auth = Auth(config, secrets, people)
    links = action_links.Signer(action_links.link_secret(secrets), config.web.auth.link_lifetime)
    app.state.auth = auth
    app.state.action_links = links

    def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        viewer = getattr(request.state, "viewer", None)
        html = env.get_template(template).render(
            request=request, me=viewer, csrf=csrf_token(request) if viewer else "", csrf_field=CSRF_FIELD,
            people=people(), now=datetime.now(UTC), **context)
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    def error_page(request: Request, status: int, message: str) -> Response:
        if _wants_json(request):
            return JSONResponse({"error": message}, status_code=status, headers=SECURITY_HEADERS)
        return render(request, "error.html", status=status, message=message)

    async def audit(request: Request, viewer: Viewer, action: str, target: str, outcome: str = "ok",
                    detail: str = "", via: str = "web") -> None:
        entry = AuditEntry(at=datetime.now(UTC), person=viewer.key, action=action, target=target, via=via,
                           address=client_address(request, config.web.auth), outcome=outcome[:500],
                           detail=detail[:500])
        try:
            store = await views()
            await asyncio.to_thread(store.record_audit, entry)
        except Exception as e:  # noqa: BLE001 - the action happened; the log keeps the record then
            log.error("audit_write_failed", person=viewer.key, action=action, target=target, error=type(e).__name__)
        log.info("web_action", person=viewer.key, action=action, target=target, outcome=outcome, via=via)

    # ------------------------------------------------------------------ sign-in and guards

    async def signed_in(request: Request) -> Viewer | Response:
        """The signed-in person, or the response that asks them to sign in."""
        if not auth.configured:
            return error_page(request, 503, auth.not_configured_reason())
        viewer = auth.current(request)
        if viewer is None:
            if _wants_json(request) or request.method != "GET":
                return error_page(request, 401, "sign in first")
            if config.web.auth.mode == "proxy":
                return error_page(request, 401, "your proxy did not say who you are")
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={_quote(target)}", status_code=303)
        request.state.viewer = viewer
        return viewer

    async def checked_post(request: Request) -> tuple[Viewer, dict[str, Any]] | Response:
        """A state-changing request: signed in, CSRF token right, form (or JSON) read within its limit."""
        who = await signed_in(request)
        if isinstance(who, Response):
            return who
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > MAX_FORM_BYTES:
            return error_page(request, 413, "the form is too large")
        content_type = request.headers.get("content-type", "")
        data: dict[str, Any]
        if content_type.startswith("application/json"):
            body = await request.body()
            if len(body) > MAX_FORM_BYTES:
                return error_page(request, 413, "the form is too large")
            try:
                loaded = json.loads(body or b"{}")
            except ValueError:
                return error_page(request, 400, "the body is not JSON")
            if not isinstance(loaded, dict):
                return error_page(request, 400, "the body must be a JSON object")
            data = loaded
        else:
            try:
                form = await request.form(max_files=0, max_fields=2000)
            except Exception:  # noqa: BLE001 - a malformed multipart body
                return error_page(request, 400, "the form could not be read")
            data = {}
            for key, value in form.multi_items():
                if isinstance(value, str):
                    data.setdefault(key, []).append(value)
            data = {k: v[0] if len(v) == 1 else v for k, v in data.items()}
        sent = request.headers.get(CSRF_HEADER) or (data.get(CSRF_FIELD) if isinstance(data.get(CSRF_FIELD), str)
                                                    else None)
        if not csrf_ok(request, sent):
            log.warning("csrf_refused", person=who.key, path=request.url.path)
            await audit(request, who, "csrf", request.url.path, outcome="refused: no valid CSRF token")
            return error_page(request, 403, "this form has expired or did not come from closeloop; reload the page "
                                            "and try again")
        data.pop(CSRF_FIELD, None)
        return who, data

    @app.exception_handler(PageError)
    async def _page_error(request: Request, e: PageError) -> Response:
        return error_page(request, e.status, e.message)

    @app.get("/login", name="login")
    async def login(request: Request, next: str = "/") -> Response:  # noqa: A002 - the parameter's name
        if not auth.configured:
            return error_page(request, 503, auth.not_configured_reason())
        if config.web.auth.mode == "proxy":
            return RedirectResponse(safe_next(next), status_code=303)
        try:
            response: Response = await auth.begin(request, next)
        except SignInError as e:
            return error_page(request, 503, str(e))
        return response

    @app.get("/auth/callback", name="auth_callback")
    async def auth_callback(request: Request) -> Response:
        if not auth.configured or config.web.auth.mode != "oidc":
            return error_page(request, 404, "no such page")
        try:
            person, next_path = await auth.finish(request)
        except SignInError as e:
            return error_page(request, 401, str(e))
        viewer = auth.current(request)
        if viewer is not None:
            request.state.viewer = viewer
            await audit(request, viewer, "signin", "", detail=f"oidc {config.web.auth.issuer}")
        log.info("signed_in", person=person.key)
        return RedirectResponse(next_path, status_code=303)

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        checked = await checked_post(request)
        if isinstance(checked, Response):
            return checked
        request.session.clear()
        return RedirectResponse("/signed-out", status_code=303)

    @app.get("/signed-out")
    async def signed_out(request: Request) -> Response:
        return render(request, "error.html", status=200, message="You are signed out.", signed_out=True)

    @app.get("/static/{name}")
    async def static(name: str) -> Response:
        kinds = {"app.css": "text/css", "app.js": "text/javascript"}
        if name not in kinds:
            return JSONResponse({"error": "no such file"}, status_code=404)
        return Response((HERE / "static" / name).read_bytes(), media_type=kinds[name],
                        headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"})

    # ------------------------------------------------------------------ reading workflows

    async def queried(ref: Any, workflow_id: str, unknown: str) -> Any:
        """A Query's answer; an unknown workflow is 404 with `unknown`, an unavailable engine or workers 503."""
        closeloop = await client()
        try:
            async with asyncio.timeout(QUERY_TIMEOUT):
                return await closeloop.query(ref, workflow_id)
        except RPCError as e:
            if workflow_not_found(e):
                raise PageError(404, unknown) from None
            raise PageError(503, "closeloop's workflow engine is unavailable; try again in a minute") from None
        except TimeoutError:
            raise PageError(503, "closeloop's workers are not answering; try again in a minute") from None

    async def postmortem_state(postmortem_id: str) -> PostmortemState:
        state = await queried(contract.POSTMORTEM_STATE, postmortem_id, "closeloop does not know this postmortem")
        if state is None:
            raise PageError(404, "this postmortem has not started yet")
        return cast(PostmortemState, state)

    async def item_state(item_id: str) -> ActionItemState:
        return cast(ActionItemState, await queried(contract.ITEM_STATE, item_id,
                                                   "closeloop does not follow this action item (yet)"))

    async def run_update(ref: Any, workflow_id: str, arg: Any) -> tuple[bool, str]:
        """(done, the workflow's answer or its refusal)."""
        outcome = await updates.run_update(client, ref, workflow_id, arg)
        return outcome.done, outcome.message

    def involved(state: PostmortemState) -> list[str]:
        return list(dict.fromkeys([state.owner, *state.plan.reviewers, *state.plan.attendees,
                                   *(i.owner for i in state.items)]))

    def may_see(viewer: Viewer, state: PostmortemState) -> None:
        """Anyone it involves (owner, reviewers, attendees, item owners) sees it; a manager
        also sees what the people below them own (the postmortem or one of its items), as on the dashboard."""
        if viewer.admin or viewer.key in involved(state):
            return
        if viewer.sees_any([state.owner, *(i.owner for i in state.items)]):
            return
        raise PageError(403, "this postmortem is not yours, nor your team's")

    # ------------------------------------------------------------------ pages

    @app.get("/")
    async def home(request: Request) -> Response:
        who = await signed_in(request)
        if isinstance(who, Response):
            return who
        return RedirectResponse("/dashboard" if who.manager or who.admin else "/my", status_code=303)

    @app.get("/my")
    async def my_work(request: Request) -> Response:
        who = await signed_in(request)
        if isinstance(who, Response):
            return who
        store = await views()
        now = datetime.now(UTC)
        work = await asyncio.to_thread(store.my_work, who.key, now)
        reviews = []
        for pm in work.in_review[:100]:
            try:
                state = await postmortem_state(pm.id)
            except PageError:
                continue
            voted = any(r.reviewer == who.key and r.round == state.review_round for r in state.reviews)
            if who.key in state.plan.reviewers and not voted:
                reviews.append((pm, state.review_chase.due_at if state.review_chase else None))
        return render(request, "my.html", work=work, reviews=reviews)

    @app.get("/dashboard")
    async def dashboard(request: Request, service: str = "", severity: str = "", group: str = "team") -> Response:
        who = await signed_in(request)
        if isinstance(who, Response):
            return who
        if group not in ("team", "manager", "owner", "service", "severity"):
            group = "team"
        store = await views()
        filters = DashboardFilter(owners=who.scope(), service=service[:200] or None, severity=severity[:32] or None,
                                  limit=DASHBOARD_ROWS)
        board = await asyncio.to_thread(store.dashboard, filters, datetime.now(UTC))
        directory = people()
        grouped: dict[str, list[int]] = {}
        if group in ("team", "manager", "owner"):
            for owner, counts in board.by_owner.items():
                if group == "team":
                    name = team_of(directory, owner)
                elif group == "manager":
                    manager = directory.get(owner).manager if owner in directory else None  # type: ignore[union-attr]
                    name = directory[manager].name if manager and manager in directory else (manager or "(none)")
                else:
                    name = directory[owner].name if owner in directory else owner
                row = grouped.setdefault(name, [0, 0])
                row[0] += counts.stalled
                row[1] += counts.overdue
        else:
            source = board.by_service if group == "service" else board.by_severity
            grouped = {k: [v.stalled, v.overdue] for k, v in source.items()}
        closed = board.closed_items
        share = round(100 * board.verified_effective / closed) if closed else None
        return render(request, "dashboard.html", board=board, grouped=sorted(grouped.items()), group=group,
                      service=service, severity=severity, effective_share=share)

    @app.get("/library")
    async def library(request: Request, q: str = "", service: str = "", severity: str = "", since: str = "",
                      until: str = "", page: int = 1) -> Response:
        who = await signed_in(request)
        if isinstance(who, Response):
            return who
        errors: dict[str, str] = {}
        bounds: dict[str, datetime | None] = {}
        for name, value in (("since", since), ("until", until)):
            bounds[name] = None
            if value:
                try:
                    bounds[name] = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
                except ValueError:
                    errors[name] = "a date like 2026-11-30"
        if bounds["until"] is not None:
            bounds["until"] += timedelta(days=1)  # the whole day
        page = max(1, min(page, 1000))
        per_page = 25
        filters = LibraryFilter(query=q[:200], service=service[:200] or None, severity=severity[:32] or None,
                                since=bounds["since"], until=bounds["until"], limit=per_page,
                                offset=(page - 1) * per_page)
        found = await asyncio.to_thread((await insights()).library, filters)
        return render(request, "library.html", found=found, q=q, service=service, severity=severity, since=since,
                      until=until, page=page, per_page=per_page, errors=errors,
                      status=422 if errors else 200)

    @app.get("/insights")  # the numbers for people; /metrics is Prometheus' (closeloop/web/app.py)
    async def insights_page(request: Request) -> Response:
        who = await signed_in(request)
        if isinstance(who, Response):
            return who
        numbers = await asyncio.to_thread((await insights()).metrics, who.scope(), datetime.now(UTC))
        return render(request, "insights.html", m=numbers)

    @app.get("/postmortems/{rest:path}")
    async def postmortem_pages(request: Request, rest: str) -> Response:
        who = await signed_in(request)
        if isinstance(who, Response):
            return who
        postmortem_id, page, item_ref = _route(rest)
        state = await postmortem_state(postmortem_id)
        may_see(who, state)
        if page == "draft":
            return await draft_page(request, who, postmortem_id, state)
        if page == "item":
            return await item_page(request, who, postmortem_id, state, item_ref or "")
        store = await views()
        notifications = await asyncio.to_thread(store.notifications, postmortem_id)
        related = await asyncio.to_thread((await insights()).related, postmortem_id)
        audit_log = await asyncio.to_thread(store.audit, postmortem_id)
        recurred = {i.id: i.recurred_in for i in await asyncio.to_thread(store.items, postmortem_id) if i.recurred_in}
        chain = _escalation(state, people())
        rounds: dict[int, list[Any]] = {}
        for review in state.reviews:
            rounds.setdefault(review.round, []).append(review)
        my_vote_due = (state.stage.value == "in_review" and who.key in state.plan.reviewers
                       and not any(r.reviewer == who.key and r.round == state.review_round for r in state.reviews))
        findings = []
        if state.draft is not None:  # what reviewers should look at: the items' quality, blame language
            directory = people()
            findings = quality.check_items(state.draft, state.plan.policy, set(directory)) + \
                quality.blameless_hints(state.draft, {k: p.name for k, p in directory.items()})
        return render(request, "postmortem.html", pm=state, pid=postmortem_id, notifications=notifications,
                      findings=findings, related=related, recurred=recurred,
                      audit=audit_log, chain=chain, rounds=sorted(rounds.items()), my_vote_due=my_vote_due,
                      flash=request.query_params.get("done", "")[:300])

    async def draft_page(request: Request, who: Viewer, postmortem_id: str, state: PostmortemState,
                         errors: dict[str, str] | None = None, values: dict[str, Any] | None = None,
                         refusal: str = "", status: int = 200, import_error: str = "", markdown: str = "",
                         notice: str = "") -> Response:
        store = await views()
        saved = await asyncio.to_thread(store.saved_draft, postmortem_id, who.key)
        related = await asyncio.to_thread((await insights()).related, postmortem_id)
        if values is None:
            values = _draft_values(state)
            if saved is not None:
                values.update(saved[0])
        return render(request, "draft.html", pm=state, pid=postmortem_id, v=values, errors=errors or {},
                      refusal=refusal, saved_at=saved[1] if saved else None, status=status,
                      import_error=import_error, markdown=markdown, notice=notice, related=related,
                      may_submit=who.key == state.owner and state.stage.value == "drafting")

    async def item_page(request: Request, who: Viewer, postmortem_id: str, state: PostmortemState,
                        item_ref: str, refusal: str = "", status: int = 200) -> Response:
        item_id = _item_id(postmortem_id, item_ref)
        item = next((i for i in state.items if i.id == item_id), None)
        if item is None:
            raise PageError(404, "this postmortem has no such action item")
        try:
            live = await item_state(item_id)
        except PageError:
            live = None
        current = live.item if live else item
        return render(request, "item.html", pm=state, pid=postmortem_id, item=current, live=live, refusal=refusal,
                      status=status, mine=who.key == current.owner,
                      flash=request.query_params.get("done", "")[:300])

    @app.post("/postmortems/{rest:path}")
    async def postmortem_actions(request: Request, rest: str) -> Response:
        checked = await checked_post(request)
        if isinstance(checked, Response):
            return checked
        who, data = checked
        postmortem_id, page, item_ref = _route(rest)
        if page == "autosave":
            return await autosave(request, who, postmortem_id, data)
        state = await postmortem_state(postmortem_id)
        may_see(who, state)
        if page == "import":
            return await import_markdown(request, who, postmortem_id, state, data)
        if page == "draft":
            return await submit_draft(request, who, postmortem_id, state, data)
        if page == "review":
            return await review(request, who, postmortem_id, state, data)
        if page == "item" and item_ref:
            ref, _, action = item_ref.rpartition("/")
            if action in ("complete", "wont-do", "verdict") and ref:
                return await item_action(request, who, postmortem_id, state, ref, action, data)
        return error_page(request, 404, "no such action")

    async def autosave(request: Request, who: Viewer, postmortem_id: str, data: dict[str, Any]) -> Response:
        state = await postmortem_state(postmortem_id)
        may_see(who, state)
        if who.key != state.owner:
            return error_page(request, 403, "only the postmortem's owner writes its draft")
        kept = {k: v for k, v in data.items() if k in _DRAFT_FORM_FIELDS or k.startswith(("item_", "tl_"))}
        at = datetime.now(UTC)
        store = await views()
        await asyncio.to_thread(store.save_draft, postmortem_id, who.key, kept, at)
        return JSONResponse({"saved_at": at.isoformat()}, headers=SECURITY_HEADERS)

    async def import_markdown(request: Request, who: Viewer, postmortem_id: str, state: PostmortemState,
                              data: dict[str, Any]) -> Response:
        """The Markdown draft (closeloop.draft_markdown, the CLI's parser) into the editor, to review and submit."""
        text = data.get("markdown", "")
        if not isinstance(text, str) or not text.strip():
            return await draft_page(request, who, postmortem_id, state, import_error="paste the Markdown draft first",
                                    status=422)
        try:
            imported = parse_draft(text, by=who.key, now=datetime.now(UTC))
        except DraftError as e:
            return await draft_page(request, who, postmortem_id, state, import_error=str(e), markdown=text,
                                    status=422)
        return await draft_page(request, who, postmortem_id, state, values=_draft_values(state, imported),
                                notice="Imported from Markdown: check it, then submit.")

    async def submit_draft(request: Request, who: Viewer, postmortem_id: str, state: PostmortemState,
                           data: dict[str, Any]) -> Response:
        errors, draft = _draft_from_form(data, who.key, people())
        if draft is None:
            await audit(request, who, "draft.submit", postmortem_id, outcome="refused: the form has errors",
                        detail="; ".join(f"{k}: {v}" for k, v in errors.items()))
            return await draft_page(request, who, postmortem_id, state, errors=errors, values=data, status=422)
        findings = quality.check_items(draft, state.plan.policy, set(people()))
        blocking = [f for f in findings if f.blocks]
        if blocking:  # the policy's blocking checks: shown next to their fields, nothing submitted
            errors = {_finding_field(f): f"{f.message}. {f.suggestion}".strip() for f in blocking}
            await audit(request, who, "draft.submit", postmortem_id, outcome="refused: the policy's quality checks",
                        detail="; ".join(f"{f.where}: {f.check}" for f in blocking))
            return await draft_page(request, who, postmortem_id, state, errors=errors, values=data, status=422)
        done, answer = await run_update(contract.SUBMIT_DRAFT, postmortem_id, draft)
        await audit(request, who, "draft.submit", postmortem_id, outcome="ok" if done else f"refused: {answer}")
        if not done:
            return await draft_page(request, who, postmortem_id, state, values=data, refusal=answer, status=409)
        store = await views()
        await asyncio.to_thread(store.discard_draft, postmortem_id, who.key)
        return RedirectResponse(f"{_pm_path(postmortem_id)}?done={_quote(answer)}", status_code=303)

    async def review(request: Request, who: Viewer, postmortem_id: str, state: PostmortemState,
                     data: dict[str, Any]) -> Response:
        decision = data.get("decision")
        comment = data.get("comment", "")
        if decision not in ("approve", "request_changes") or not isinstance(comment, str):
            return error_page(request, 400, "choose approve or request changes")
        if decision == "request_changes" and not comment.strip():
            return error_page(request, 422, "say what should change (a comment is needed to request changes)")
        try:
            vote = ReviewVote(reviewer=who.key, decision=ReviewDecision(decision), comment=comment)
        except ValidationError as e:
            return error_page(request, 422, _first_error(e))
        done, answer = await run_update(contract.REVIEW, postmortem_id, vote)
        await audit(request, who, f"review.{decision}", postmortem_id, outcome="ok" if done else f"refused: {answer}")
        if not done:
            return error_page(request, 409, answer)
        return RedirectResponse(f"{_pm_path(postmortem_id)}?done={_quote(answer)}", status_code=303)

    async def item_action(request: Request, who: Viewer, postmortem_id: str, state: PostmortemState, item_ref: str,
                          action: str, data: dict[str, Any]) -> Response:
        item_id = _item_id(postmortem_id, item_ref)
        if not any(i.id == item_id for i in state.items):
            return error_page(request, 404, "this postmortem has no such action item")
        note = data.get("note", "")
        if not isinstance(note, str):
            return error_page(request, 400, "the note must be text")
        ref: Any
        arg: Any
        try:
            if action == "complete":
                ref, arg = contract.COMPLETE_ITEM, CompleteItem(by=who.key, note=note)
            elif action == "wont-do":
                ref, arg = contract.EXPLAIN_WONT_DO, WontDoReason(by=who.key, reason=note)
            else:
                effective = data.get("effective")
                if effective not in ("yes", "no"):
                    return error_page(request, 400, "say whether the item worked (yes or no)")
                ref, arg = contract.VERDICT, VerdictInput(by=who.key, effective=effective == "yes", note=note)
        except ValidationError as e:
            return error_page(request, 422, _first_error(e))
        done, answer = await run_update(ref, item_id, arg)
        await audit(request, who, f"item.{action}", item_id, outcome="ok" if done else f"refused: {answer}")
        if not done:
            return error_page(request, 409, answer)
        target = _item_path(postmortem_id, item_id)
        return RedirectResponse(f"{target}?done={_quote(answer)}", status_code=303)

    # ------------------------------------------------------------------ links from messages

    @app.get("/go/{token}")
    async def go(request: Request, token: str) -> Response:
        who = await signed_in(request)
        if isinstance(who, Response):
            return who
        try:
            link = links.read(token)
        except action_links.LinkError as e:
            await audit(request, who, "link.open", "", outcome=f"refused: {e}", via="link")
            return error_page(request, 410, str(e))
        if link.person != who.key:
            await audit(request, who, "link.open", link.path, outcome="refused: the link is someone else's", via="link")
            return error_page(request, 403, "this link was sent to someone else")
        store = await views()
        if not await asyncio.to_thread(store.use_link, link.token_id, link.expires_at):
            await audit(request, who, "link.open", link.path, outcome="refused: used already", via="link")
            return error_page(request, 410, "this link was used already; open the page from the dashboard instead")
        await audit(request, who, "link.open", link.path, via="link")
        return RedirectResponse(safe_next(link.path), status_code=303)


# ---------------------------------------------------------------------- helpers (pure)

_DRAFT_FORM_FIELDS = set(DRAFT_TEXT_FIELDS)


def _quote(value: str) -> str:
    return quote(value, safe="")


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "") or \
        request.headers.get("content-type", "").startswith("application/json")


def _pm_path(postmortem_id: str) -> str:
    """The page's path; the same scheme as closeloop.links (the links in messages)."""
    return urlsplit(postmortem_url("http://x", postmortem_id) or "").path


def _item_path(postmortem_id: str, item_id: str) -> str:
    return urlsplit(item_url("http://x", postmortem_id, item_id) or "").path


def _route(rest: str) -> tuple[str, str, str | None]:
    """(postmortem id, page, item ref) of `/postmortems/<rest>`: page is "", "draft", "autosave", "review" or
    "item" (item ref: `<item id>` or `<item id>/<action>`). PageError(404) for anything else."""
    head, sep, item_ref = rest.partition("/items/")
    page = "item" if sep else ""
    if not sep:
        for suffix in ("/draft/autosave", "/draft/import", "/draft", "/review"):
            if head.endswith(suffix):
                head, page = head[: -len(suffix)], suffix.rsplit("/", 1)[1]
                break
    try:
        return parse_postmortem_id(head), page, item_ref or None
    except BadId:
        raise PageError(404, "no such postmortem") from None


def _item_id(postmortem_id: str, ref: str) -> str:
    try:
        item_id = parse_item_id(ref if "/" in ref else f"{postmortem_id}/{ref}")
    except BadId:
        raise PageError(404, "no such action item") from None
    if postmortem_of_item(item_id) != postmortem_id:
        raise PageError(404, "no such action item")
    return item_id


def _finding_field(finding: Any) -> str:
    """The editor's field a quality finding is about (`action item 2`'s done_when: `item_1_done_when`)."""
    number = finding.where.removeprefix("action item ").strip()
    if not number.isdigit():
        return "summary"
    suffix = {"specific": "title", "measurable": "done_when", "assignable": "owner"}.get(finding.check, "due")
    return f"item_{int(number) - 1}_{suffix}"


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg']}" if where else str(err["msg"])


def _draft_values(state: PostmortemState, imported: DraftSubmission | None = None) -> dict[str, Any]:
    """The editor's fields: an imported draft, else the submitted draft (after "request changes"), else empty,
    with the collected timeline pre-filled."""
    values: dict[str, Any] = {}
    draft = imported or state.draft
    now = datetime.now(UTC)
    if draft is not None:
        for name in DRAFT_TEXT_FIELDS:
            values[name] = getattr(draft, name, "")
        if draft.lessons and not (draft.went_well or draft.went_badly or draft.lucky):
            values["went_well"] = draft.lessons
        for n, spec in enumerate(draft.action_items):
            values.update({f"item_{n}_title": spec.title, f"item_{n}_owner": spec.owner,
                           f"item_{n}_priority": spec.priority, f"item_{n}_kind": spec.kind,
                           f"item_{n}_done_when": spec.done_when,
                           f"item_{n}_due": f"{now + spec.due_in:%Y-%m-%d}" if spec.due_in else ""})
    events = draft.timeline if draft is not None and draft.timeline else sorted(state.timeline, key=lambda e: e.at)
    for n, event in enumerate(events[:MAX_TIMELINE_ROWS]):
        values.update({f"tl_{n}_at": event.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M"),
                       f"tl_{n}_kind": event.kind, f"tl_{n}_text": event.text})
    return values


def _indexed(data: dict[str, Any], prefix: str, limit: int) -> list[int]:
    found = set()
    for key in data:
        if key.startswith(prefix):
            head = key[len(prefix):].split("_", 1)[0]
            if head.isdigit() and int(head) < limit:
                found.add(int(head))
    return sorted(found)


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key, "")
    return value if isinstance(value, str) else ""


def _draft_from_form(data: dict[str, Any], person: str, directory: dict[str, Person],
                     now: datetime | None = None) -> tuple[dict[str, str], DraftSubmission | None]:
    """The editor's form as a DraftSubmission, or the errors by field name (shown next to each field)."""
    now = now or datetime.now(UTC)
    errors: dict[str, str] = {}
    fields: dict[str, Any] = {name: _text(data, name).strip() for name in DRAFT_TEXT_FIELDS}
    if not fields["summary"]:
        errors["summary"] = "write a summary: what happened, for a reader who was not there"
    items: list[ActionItemSpec] = []
    for n in _indexed(data, "item_", MAX_ITEMS):
        title, owner = _text(data, f"item_{n}_title").strip(), _text(data, f"item_{n}_owner").strip()
        if not title and not owner:
            continue  # an empty row
        spec: dict[str, Any] = {"title": title, "owner": owner,
                                "priority": _text(data, f"item_{n}_priority") or "P3",
                                "kind": _text(data, f"item_{n}_kind") or "prevent",
                                "done_when": _text(data, f"item_{n}_done_when").strip()}
        if not title:
            errors[f"item_{n}_title"] = "give the item a title"
        if owner not in directory:
            errors[f"item_{n}_owner"] = f"{owner!r} is not a person in the directory" if owner else "choose an owner"
        due = _text(data, f"item_{n}_due").strip()
        if due:
            try:
                day = datetime.strptime(due, "%Y-%m-%d").replace(tzinfo=UTC) + timedelta(hours=23, minutes=59)
            except ValueError:
                errors[f"item_{n}_due"] = "a date like 2026-12-24"
            else:
                hours = int((day - now).total_seconds() // 3600)
                if hours < 1:
                    errors[f"item_{n}_due"] = "the due date must be in the future"
                else:
                    spec["due_in"] = timedelta(hours=hours)
        try:
            items.append(ActionItemSpec.model_validate(spec))
        except ValidationError as e:
            for err in e.errors():
                errors.setdefault(f"item_{n}_{err['loc'][0]}", str(err["msg"]))
    timeline: list[TimelineEvent] = []
    for n in _indexed(data, "tl_", MAX_TIMELINE_ROWS):
        text = _text(data, f"tl_{n}_text").strip()
        at = _text(data, f"tl_{n}_at").strip()
        if not text and not at:
            continue
        try:
            when = datetime.fromisoformat(at)
            when = when.replace(tzinfo=UTC) if when.tzinfo is None else when
            timeline.append(TimelineEvent(at=when, source="author", kind=_text(data, f"tl_{n}_kind") or "event",
                                          text=text, actor=person))
        except ValueError:
            errors[f"tl_{n}_at"] = "a time like 2026-12-01T14:05 (UTC)"
        except ValidationError as e:
            errors[f"tl_{n}_text"] = str(e.errors()[0]["msg"])
    if errors:
        return errors, None
    try:
        return {}, DraftSubmission(by=person, action_items=items, timeline=timeline, **fields)
    except ValidationError as e:
        for err in e.errors():
            errors.setdefault(str(err["loc"][0]) if err["loc"] else "summary", str(err["msg"]))
        return errors, None


def _escalation(state: PostmortemState, directory: dict[str, Person]) -> list[dict[str, Any]]:
    """The escalation chain of the stage being chased: each step, who it reaches, when, and whether it fired."""
    chase = state.review_chase if state.stage.value == "in_review" else state.draft_chase
    owner_entry = directory.get(state.owner)
    manager = owner_entry.manager if owner_entry else None
    manager_entry = directory.get(manager) if manager else None
    roles = {"owner": state.owner, "manager": manager, "skip_level": manager_entry.manager if manager_entry else None}
    steps = []
    for n, step in enumerate(state.plan.policy.escalation):
        who = roles.get(step.notify, step.notify)
        at = chase.due_at + step.after if chase else None
        steps.append({"role": step.notify.replace("_", "-"), "person": who,
                      "name": directory[who].name if who and who in directory else (who or "nobody"),
                      "at": at, "sent": bool(chase and n < chase.escalations_sent)})
    return steps
