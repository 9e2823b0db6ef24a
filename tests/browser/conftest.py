"""Fixtures for the browser tests: Playwright driving Debian's Chromium (`apt-get install chromium`,
/usr/bin/chromium), never a browser Playwright downloads (`playwright install` is never run; it needs the internet).

Playwright's async API, on pytest-asyncio's session loop. Browser tests are `async def` functions:

    async def test_something(new_page, shot):
        page = await new_page()                    # a person: their own BrowserContext (cookies, storage)
        phone = await new_page(phone=True)         # another person, on a phone-sized screen
        await page.goto(url)
        await page.get_by_label("Name").fill("alice")
        await expect(page.get_by_text("Hello, alice")).to_be_visible()
        await shot(page, "greeted")                # tests/artifacts/screenshots/test_something/greeted.png

Why not the sync API: between two calls, sync Playwright leaves its own event loop marked as the running loop
of the main thread (playwright/_impl/_greenlets.py, wait_for_future), so every pytest-asyncio test or fixture
that runs while it is alive fails with "Runner.run() cannot be called from a running event loop". That rules
out a session-scoped sync browser in this suite (asyncio_mode = "auto", its async tests on one session loop),
and also any async fixture in a browser test, e.g. tests/temporal_env.py's `app` (a Temporal worker and store).
The async API runs on the session loop itself, next to those fixtures. A server under test can run in a thread
(tests/standins/chat.py's Receiver, uvicorn) or as a task on the same loop (`uvicorn.Server(...).serve()`):
Playwright's calls are awaited, so the loop keeps serving while the browser waits.

- `browser` (session): one headless Chromium for the whole run; `--no-sandbox` when running as root.
- `new_context(phone=False, **options)` / `new_page(phone=False, **options)`: a fresh BrowserContext per call
  (per person), desktop-sized (DESKTOP) or phone-sized (PHONE), default timeout TIMEOUT_MS (also `expect`'s);
  closed after the test.
- `shot(page, name)`: a full-page PNG at <artifacts>/screenshots/<test name>/<name>.png, returned as a Path.
  <artifacts> is $CLOSELOOP_ARTIFACTS, else tests/artifacts (gitignored). A test's folder is emptied when it
  starts. When a test fails, every page it opened is saved there as failure-<n>.png.

Chromium is CLOSELOOP_CHROMIUM, else /usr/bin/chromium, else `chromium`/`chromium-browser` on PATH. scripts/test
and .ci/run install Debian's package when it is missing (scripts/_chromium.sh). Without a Chromium the browser
tests skip and say why; in CI (CI=true) they fail instead: a browser test that silently skips in CI is a defect.
Every test under tests/browser gets the `browser` marker (`-m "not browser"` leaves them out).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn

import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
TIMEOUT_MS = 10_000
DESKTOP: dict[str, Any] = {"viewport": {"width": 1280, "height": 800}}
PHONE: dict[str, Any] = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()

NewContext = Callable[..., Awaitable[BrowserContext]]
NewPage = Callable[..., Awaitable[Page]]
Shot = Callable[[Page, str], Awaitable[Path]]


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def unavailable(reason: str) -> NoReturn:
    """Skip the browser tests with `reason`, or fail them in CI."""
    if in_ci():
        pytest.fail(f"{reason}\nCI=true: the browser tests must run in CI, not skip.", pytrace=False)
    pytest.skip(reason)


def find_chromium() -> str:
    """The Chromium to drive: $CLOSELOOP_CHROMIUM, else Debian's (see the module's docstring)."""
    given = os.environ.get("CLOSELOOP_CHROMIUM")
    if given:
        if not os.access(given, os.X_OK):
            pytest.fail(f"CLOSELOOP_CHROMIUM={given} is not an executable file", pytrace=False)
        return given
    for candidate in CHROMIUM_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    unavailable("Chromium is not installed (/usr/bin/chromium): `apt-get install chromium` (scripts/test and "
                ".ci/run do it when they can), or point CLOSELOOP_CHROMIUM at a Chromium")


def artifacts_dir() -> Path:
    return Path(os.environ.get("CLOSELOOP_ARTIFACTS") or ROOT / "tests" / "artifacts")


def screenshots_dir(item: pytest.Item) -> Path:
    """<artifacts>/screenshots/<test name>, the name made safe for a folder (test_x[phone] -> test_x-phone)."""
    name = re.sub(r"[^\w.-]+", "-", item.name).strip("-")
    return artifacts_dir() / "screenshots" / name


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the item, for the failure screenshots taken in the fixtures' teardown."""
    report = yield
    item.stash.setdefault(REPORTS, {})[report.when] = report
    return report


def failed(item: pytest.Item) -> bool:
    reports = item.stash.get(REPORTS, {})
    return any(r.failed for when, r in reports.items() if when in ("setup", "call"))


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    executable = find_chromium()
    args = ["--disable-dev-shm-usage"]  # containers' /dev/shm is often 64 MB: renderers crash on a big page
    if os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium refuses to start its sandbox as root
    expect.set_options(timeout=TIMEOUT_MS)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=executable, headless=True, args=args)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
def screenshots(request: pytest.FixtureRequest) -> Path:
    """This test's screenshot folder, emptied (a PNG a previous run left must not pass for this run's)."""
    folder = screenshots_dir(request.node)
    shutil.rmtree(folder, ignore_errors=True)
    return folder


@pytest_asyncio.fixture(loop_scope="session")
async def new_context(browser: Browser, screenshots: Path,
                      request: pytest.FixtureRequest) -> AsyncIterator[NewContext]:
    """A factory of BrowserContexts, one per person (own cookies and storage): `await new_context()` on a
    desktop screen, `await new_context(phone=True)` on a phone's; other keyword arguments go to
    Browser.new_context (e.g. locale, timezone_id, base_url). On a failure, every open page is saved."""
    opened: list[BrowserContext] = []

    async def make(*, phone: bool = False, **options: Any) -> BrowserContext:
        context = await browser.new_context(**{**(PHONE if phone else DESKTOP), **options})
        context.set_default_timeout(TIMEOUT_MS)
        opened.append(context)
        return context

    try:
        yield make
    finally:
        if failed(request.node):
            pages = [page for context in opened for page in context.pages if not page.is_closed()]
            for n, page in enumerate(pages, 1):
                try:
                    await page.screenshot(path=screenshots / f"failure-{n}.png", full_page=True)
                except Exception as exc:  # noqa: BLE001 - a page that cannot be shot must not hide the failure
                    print(f"failure screenshot {n} of {request.node.nodeid} not taken: {exc}")
        for context in opened:
            await context.close()


@pytest_asyncio.fixture(loop_scope="session")
async def new_page(new_context: NewContext) -> NewPage:
    """A factory of pages, each in a context of its own (a person): `await new_page()`, `await
    new_page(phone=True)`; keyword arguments as new_context's."""

    async def make(*, phone: bool = False, **options: Any) -> Page:
        context = await new_context(phone=phone, **options)
        return await context.new_page()

    return make


@pytest.fixture
def shot(screenshots: Path) -> Shot:
    """`await shot(page, name)`: a full-page PNG of `page` at <this test's screenshot folder>/<name>.png."""

    async def take(page: Page, name: str) -> Path:
        path = screenshots / f"{name}.png"
        await page.screenshot(path=path, full_page=True)
        return path

    return take
