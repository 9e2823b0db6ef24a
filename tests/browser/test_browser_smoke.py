"""The browser chain works: Debian's Chromium, driven by Playwright, loads a page from a local server (the
Receiver of tests/standins/chat.py, in a thread), a person fills a labelled field and clicks a button, the page's
script changes the page and posts the value back, and the screenshots land where the artifacts go."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import expect

from tests.browser import conftest
from tests.browser.conftest import NewPage, Shot, screenshots_dir
from tests.standins.chat import Receiver

PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>closeloop browser smoke</title></head>
<body>
  <form id="greet">
    <label for="name">Your name</label>
    <input id="name" name="name" autocomplete="off">
    <button type="submit">Greet</button>
  </form>
  <p id="greeting">Nobody greeted yet</p>
  <script>
    document.getElementById("greet").addEventListener("submit", async (event) => {
      event.preventDefault();
      const name = document.getElementById("name").value;
      await fetch("/greeted", {method: "POST", body: name});
      document.getElementById("greeting").textContent = "Hello, " + name;
    });
  </script>
</body>
</html>
"""


def serve_page(rx: Receiver) -> str:
    rx.answer("/", body=PAGE, headers={"Content-Type": "text/html; charset=utf-8"})
    return rx.url("/")


def assert_png(path: Path) -> None:
    assert path.is_file(), path
    data = path.read_bytes()
    assert len(data) > 1000 and data.startswith(b"\x89PNG\r\n\x1a\n"), (path, len(data))


async def test_fill_click_and_the_page_changes(new_page: NewPage, shot: Shot) -> None:
    with Receiver() as rx:
        page = await new_page()
        await page.goto(serve_page(rx))
        await expect(page.get_by_text("Nobody greeted yet")).to_be_visible()

        await page.get_by_label("Your name").fill("alice")
        await page.get_by_role("button", name="Greet").click()

        await expect(page.locator("#greeting")).to_have_text("Hello, alice")
        path = await shot(page, "greeted")
        assert [r.body for r in rx.at("/greeted")] == [b"alice"]

    assert path.name == "greeted.png" and path.parent.name == "test_fill_click_and_the_page_changes"
    assert_png(path)


async def test_each_person_has_own_cookies_and_a_phone_screen(new_page: NewPage, shot: Shot) -> None:
    with Receiver() as rx:
        url = serve_page(rx)
        alice, bob = await new_page(), await new_page(phone=True)
        await alice.goto(url)
        await bob.goto(url)
        await alice.evaluate("document.cookie = 'who=alice; path=/'")

        assert "who=alice" in await alice.evaluate("document.cookie")
        assert await bob.evaluate("document.cookie") == ""
        assert await alice.evaluate("window.innerWidth") == 1280
        assert await bob.evaluate("window.innerWidth") == 390
        assert_png(await shot(bob, "phone"))


def test_screenshot_folders_are_named_after_the_test(request, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("CLOSELOOP_ARTIFACTS", str(tmp_path))
    assert screenshots_dir(request.node) == tmp_path / "screenshots" / request.node.name


@pytest.mark.parametrize(("ci", "outcome"), [("", pytest.skip.Exception), ("true", pytest.fail.Exception)])
def test_without_chromium_they_skip_but_fail_in_ci(ci, outcome, monkeypatch) -> None:
    monkeypatch.setattr(conftest, "CHROMIUM_CANDIDATES", ("/nonexistent/chromium",))
    monkeypatch.delenv("CLOSELOOP_CHROMIUM", raising=False)
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="Chromium is not installed"):
        conftest.find_chromium()
