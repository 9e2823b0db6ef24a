"""A whole postmortem lifecycle through the browser: Debian's Chromium, driven by Playwright, against the web app
served by uvicorn on 127.0.0.1, signing in with OpenID Connect at the provider stand-in (closeloop/standins/
oidc.py, the real authlib flow), the real worker and store on the time-skipping server.

1. alice signs in, writes the draft in the editor (autosaved), and submits it;
2. bob signs in and requests changes with a comment;
3. alice sees the comment and resubmits;
4. bob and erin approve;
5. erin marks her action item done, and two weeks later gives her verdict;
6. carol, a manager, sees bob's stalled postmortem on her dashboard, and not frank's (another team's).

Screenshots of each page go to tests/artifacts/screenshots/<test>/ (tests/browser/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest_asyncio
from playwright.async_api import BrowserContext, Page, expect
from temporalio.testing import WorkflowEnvironment

from closeloop.models import Stage
from closeloop.secrets import Secrets
from closeloop.standins.oidc import ClientReg, OidcProvider
from closeloop.web.app import create_app
from tests.browser.conftest import NewContext, Shot
from tests.closeloop.web.conftest import ALL_SECRETS
from tests.serving import free_port, serving
from tests.temporal_env import App, incident, running_app

CLIENT_SECRET = "browser-test-client-secret"
SUMMARY = "Checkout failed for 40 minutes after a config push."
PEOPLE = """
[people.frank]
name = "Frank Payments"
email = "frank@example.com"
manager = "grace"

[people.grace]
name = "Grace Payments Lead"
email = "grace@example.com"

[services.search]
owner = "bob"

[services.payments]
owner = "frank"
reviewers = ["grace"]
"""


UNLABELLED = """() => [...document.querySelectorAll('input, select, textarea, button')]
    .filter(el => el.type !== 'hidden')
    .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                  && !(el.tagName === 'BUTTON' && el.textContent.trim()))
    .map(el => el.outerHTML.slice(0, 120))"""


async def assert_accessible(page: Page) -> None:
    """Every control has a label (or is a button with text), and the page has one h1 and a main landmark."""
    assert await page.evaluate(UNLABELLED) == []
    await expect(page.get_by_role("main")).to_have_count(1)
    await expect(page.locator("h1")).to_have_count(1)


async def keyboard_to(page: Page, name: str, presses: int = 80) -> None:
    """Tab from the top of the page until the control named `name` has the focus."""
    await page.locator("body").focus()
    for _ in range(presses):
        await page.keyboard.press("Tab")
        focused = await page.evaluate("() => (document.activeElement.innerText || "
                                      "document.activeElement.getAttribute('aria-label') || '').trim()")
        if focused == name:
            return
    raise AssertionError(f"{name!r} cannot be reached with the Tab key")


class Site:
    def __init__(self, app: App, base: str, idp: OidcProvider) -> None:
        self.app, self.base, self.idp = app, base, idp

    async def sign_in(self, context: BrowserContext, email: str, path: str = "/my") -> Page:
        page = await context.new_page()
        await page.goto(self.base + path)
        await expect(page.get_by_label("Email")).to_be_visible()  # the provider's sign-in form
        await page.get_by_label("Email").fill(email)
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_url(self.base + path)
        return page


@pytest_asyncio.fixture
async def site(time_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Site]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with OidcProvider(clients={"closeloop": ClientReg(secret=CLIENT_SECRET, redirect_uris=[f"{base}/auth/callback"])},
                      users={f"{k}@example.com": k.title() for k in ("alice", "bob", "carol", "dave", "erin",
                                                                        "frank", "grace")}) as idp:
        extra = (f'\n[web]\npublic_url = "{base}"\n\n[web.auth]\nissuer = "{idp.issuer}"\nclient_id = "closeloop"\n'
                 + PEOPLE)
        async with running_app(time_env, tmp_path, extra=extra) as app:
            async def client_factory() -> Any:
                return app.client

            env = {**ALL_SECRETS._env, "CLOSELOOP_OIDC_CLIENT_SECRET": CLIENT_SECRET,  # noqa: SLF001
                   "CLOSELOOP_SESSION_SECRET": "browser-test-session-secret"}
            web_app = create_app(app.config, client_factory, secrets=Secrets(env), store=app.store)
            async with serving(web_app, port):
                yield Site(app, base, idp)


async def test_a_lifecycle_through_the_browser(site: Site, new_context: NewContext, shot: Shot,
                                              time_env: WorkflowEnvironment) -> None:
    app = site.app
    main = await app.resolve(incident("INC-WEB", title="Checkout returns 500s"))
    stalled = await app.resolve(incident("INC-SEARCH", title="Search times out", services=["search"],
                                         commander="bob"))
    other = await app.resolve(incident("INC-PAY", title="Payments declined", services=["payments"],
                                       commander="frank", participants=["grace"]))
    await app.wait_stage(main, Stage.drafting)
    await app.wait_stage(stalled, Stage.drafting)
    await app.wait_stage(other, Stage.drafting)
    pm = f"{site.base}/postmortems/{main.id}"

    # 1. alice signs in: the session cookie from before sign-in is replaced by a new one
    alice_ctx = await new_context()
    probe = await alice_ctx.new_page()
    await probe.goto(site.base + "/my")
    await expect(probe.get_by_label("Email")).to_be_visible()
    before = {c["name"]: c["value"] for c in await alice_ctx.cookies()}.get("closeloop_session")
    assert before, "the sign-in's state is kept in a session cookie"
    await probe.get_by_label("Email").fill("alice@example.com")
    await probe.get_by_role("button", name="Sign in").click()
    await probe.wait_for_url(site.base + "/my")
    cookies = {c["name"]: c for c in await alice_ctx.cookies()}
    session = cookies["closeloop_session"]
    assert session["value"] != before and session["httpOnly"] and session["sameSite"] == "Lax"
    await expect(probe.get_by_role("heading", name="My work")).to_be_visible()
    await expect(probe.get_by_role("link", name="Checkout returns 500s")).to_be_visible()
    await assert_accessible(probe)
    await shot(probe, "1-alice-my-work")

    # the editor: autosave keeps what she typed across a reload
    page = probe
    await page.get_by_role("link", name="Checkout returns 500s").click()
    await page.wait_for_url(f"{pm}/draft")
    await page.get_by_label("What happened", exact=True).fill(SUMMARY)
    await expect(page.locator("#autosave-status")).to_contain_text("Saved at ")
    await page.reload()
    await expect(page.get_by_label("What happened", exact=True)).to_have_value(SUMMARY)
    await page.get_by_label("Users affected").fill("12% of checkouts")
    await page.get_by_label("Duration", exact=True).fill("40 minutes")
    await page.get_by_label("Root cause", exact=True).fill("A config push with an invalid pool size.")
    await page.get_by_label("Contributing factors").fill("The config was not validated in CI.")
    await page.get_by_label("What went well").fill("Rollback took 4 minutes.")
    await page.get_by_label("Item 1: what will change").fill("Validate pool sizes in CI")
    await page.get_by_label("Owner").first.select_option("erin")
    await page.get_by_label("Priority").first.select_option("P2")
    await page.get_by_label("Done when").first.fill("A config with an invalid pool size fails CI")
    await assert_accessible(page)
    await shot(page, "2-alice-editor")
    await page.get_by_role("button", name="Submit for review").click()
    await page.wait_for_url(f"{pm}?done=*")
    await expect(page.get_by_role("status")).to_be_visible()
    await app.wait_stage(main, Stage.in_review)

    # 2. bob requests changes
    bob = await site.sign_in(await new_context(), "bob@example.com", f"/postmortems/{main.id}")
    await expect(bob.get_by_role("heading", name="Your review (round 1)")).to_be_visible()
    await bob.get_by_label("Comments").fill("Say why CI did not catch it.")
    await bob.get_by_role("button", name="Request changes").click()
    await bob.wait_for_url(f"{pm}?done=*")
    await app.wait_stage(main, Stage.drafting)

    # 3. alice sees bob's comment in the editor and resubmits
    await page.goto(f"{pm}/draft")
    await expect(page.get_by_text("Say why CI did not catch it.")).to_be_visible()
    await expect(page.get_by_label("What happened", exact=True)).to_have_value(SUMMARY)
    await page.get_by_label("Contributing factors").fill("CI validated the syntax of the config, not its values.")
    await page.get_by_role("button", name="Submit for review").click()
    await page.wait_for_url(f"{pm}?done=*")
    await app.wait_for(main, lambda s: s.stage == Stage.in_review and s.review_round == 2)

    # 4. bob and erin approve
    await bob.goto(pm)
    await bob.get_by_role("button", name="Approve").click()
    await bob.wait_for_url(f"{pm}?done=*")
    erin_ctx = await new_context()
    erin = await site.sign_in(erin_ctx, "erin@example.com", f"/postmortems/{main.id}")
    await keyboard_to(erin, "Approve")  # erin approves with the keyboard alone
    await erin.keyboard.press("Enter")
    await erin.wait_for_url(f"{pm}?done=*")
    state = await app.wait_for(main, lambda s: s.stage == Stage.following_up and s.items
                               and all(i.ticket_key for i in s.items))
    assert [(r.round, r.reviewer, r.decision.value) for r in state.reviews] == [
        (1, "bob", "request_changes"), (2, "bob", "approve"), (2, "erin", "approve")]
    assert state.draft.contributing_factors == "CI validated the syntax of the config, not its values."
    assert state.items[0].done_when == "A config with an invalid pool size fails CI"
    await erin.reload()
    await assert_accessible(erin)
    await shot(erin, "3-postmortem-page")

    # 5. erin marks her item done; after the effectiveness delay she says it worked
    await erin.goto(f"{site.base}/my")
    await erin.get_by_role("link", name="Validate pool sizes in CI").click()
    await erin.get_by_label("What was done").fill("Added a schema check to the config pipeline.")
    await erin.get_by_role("button", name="Mark done").click()
    await expect(erin.locator("#item-status")).to_have_text("done")
    item = app.client.get_workflow_handle(state.items[0].id)
    await time_env.sleep(timedelta(days=15))
    await app.wait_for(item, lambda s: s.phase == "awaiting_verdict")
    await erin.reload()
    await erin.get_by_label("Yes, it worked").check()
    await erin.get_by_label("Why you think so").fill("No pool-size incident since.")
    await erin.get_by_role("button", name="Give the verdict").click()
    await expect(erin.locator("#item-verdict")).to_contain_text("effective")

    # 6. carol sees bob's stalled postmortem, not frank's
    await app.wait_for(stalled, lambda s: s.stalled)
    await app.wait_for(other, lambda s: s.stalled)
    carol = await site.sign_in(await new_context(), "carol@example.com", "/dashboard")
    stalled_table = carol.locator("#stalled")
    await expect(stalled_table.get_by_role("link", name="Search times out")).to_be_visible()
    await expect(carol.get_by_text("Payments declined")).to_have_count(0)
    await assert_accessible(carol)
    await shot(carol, "4-carol-dashboard")
    await carol.goto(f"{site.base}/postmortems/{other.id}")
    await expect(carol.get_by_role("alert")).to_contain_text("not yours")
    # and on a phone, the dashboard still reads
    phone = await site.sign_in(await new_context(phone=True), "carol@example.com", "/dashboard")
    await expect(phone.get_by_role("link", name="Search times out")).to_be_visible()
    await shot(phone, "5-carol-dashboard-phone")

    # the library finds the published postmortem by the words of its document; the numbers count it
    await page.goto(f"{site.base}/library")
    await page.get_by_label("Search").fill("pool sizes")
    await page.get_by_role("button", name="Search").click()
    await expect(page.locator("#library-count")).to_contain_text("1 postmortem matching")
    await expect(page.get_by_role("link", name="Checkout returns 500s")).to_be_visible()
    await assert_accessible(page)
    await shot(page, "6-library-search")
    await carol.goto(f"{site.base}/insights")
    await expect(carol.get_by_role("heading", name="Postmortems published on time, by severity")).to_be_visible()
    await expect(carol.locator("#items-on-time")).to_have_text("100%")
    months = carol.locator("#months tbody tr").first
    await expect(months).to_contain_text("1")
    await assert_accessible(carol)
    await shot(carol, "7-carol-insights")


XSS = '<img src=x onerror="alert(1)"><script>alert(2)</script>'


async def test_what_people_type_never_runs_in_the_browser(site: Site, new_context: NewContext, shot: Shot) -> None:
    """Script in every field (the incident's title and services from a webhook, every field of the editor)
    shows as the text it is: no dialog opens, no element is injected, on any page that shows it."""
    app = site.app
    handle = await app.resolve(incident("INC-XSS", title=f"Checkout {XSS}", services=["checkout", XSS[:60]]))
    await app.wait_stage(handle, Stage.drafting)
    context = await new_context()
    dialogs: list[str] = []
    context.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page = await site.sign_in(context, "alice@example.com", f"/postmortems/{handle.id}/draft")
    for label in ("What happened", "Users affected", "Root cause", "Contributing factors", "Resolution",
                  "Recovery", "What went well", "What went badly", "Where we got lucky", "More about the impact"):
        await page.get_by_label(label, exact=True).fill(f"{label}: {XSS}")
    await page.get_by_label("What happened, event 1").fill(XSS)
    await page.get_by_label("Time of event 1").fill("2026-11-30T10:00")
    await page.get_by_label("Item 1: what will change").fill(f"Fix {XSS}")
    await page.get_by_label("Owner").first.select_option("erin")
    await page.get_by_label("Done when").first.fill(XSS)
    await page.get_by_role("button", name="Submit for review").click()
    await page.wait_for_url(f"{site.base}/postmortems/{handle.id}?done=*")
    await app.wait_stage(handle, Stage.in_review)
    for path in (f"/postmortems/{handle.id}", f"/postmortems/{handle.id}/draft", "/my", "/dashboard",
                 "/library?q=checkout"):
        await page.goto(site.base + path)
        assert await page.locator("img[src=x], main script").count() == 0, path
    await page.goto(f"{site.base}/postmortems/{handle.id}")
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"Checkout {XSS}")
    await expect(page.get_by_text(f"What happened: {XSS}")).to_be_visible()
    await shot(page, "xss-rendered-as-text")
    assert dialogs == []
