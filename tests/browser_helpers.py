"""What the browser tests share: Chromium's settings, the page watch and page helpers (their
fixtures, `browser`, `page`, `server` and the rest, are in conftest.py)."""

import csv
import io
import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect

from conftest import PASSWORD, ROOT, body_for, signed_headers

# Two test processes share two cores with their servers and browsers: an answer can take longer
# than Playwright's default of 5 s to arrive while the other process runs a storm.
expect.set_options(timeout=10_000)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
OUTPUT = ROOT / "test-output"
# The inbox polls every POLL_SECONDS (4 s); a live update may take one interval plus the request.
LIVE = 12_000
# Chromium's console wording for a blocked resource or script ("Refused to load/execute ...").
CSP_SIGNS = ("Content Security Policy", "Refused to")
# Reports a violation even where the browser's own console line would be missed.
REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  console.error("Content Security Policy violation: " + event.violatedDirective + " " + event.blockedURI);
});
"""


class PageWatch:
    """Console lines about CSP and uncaught page errors, from every page of every context."""

    def __init__(self):
        self.problems: list[str] = []

    def watch(self, context):
        context.add_init_script(REPORT_CSP_VIOLATIONS)
        context.on("console", self.on_console)
        context.on("weberror", lambda web_error: self.problems.append(f"page error: {web_error.error}"))

    def on_console(self, message):
        if any(sign in message.text for sign in CSP_SIGNS):
            self.problems.append(f"console {message.type}: {message.text} ({message.location.get('url')})")


def deliver(server, **fields) -> dict:
    """POST a signed callback as Messente would; returns the payload that was sent."""
    body = body_for(**fields)
    request = urllib.request.Request(
        server.url + "/callbacks/inbound", data=body, headers=signed_headers(body), method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.load(response) == {"status": "stored"}
    except urllib.error.HTTPError as error:
        error.close()
        pytest.fail(f"the callback answered {error.code}; server log:\n{server.output()[-3000:]}")
    return json.loads(body)


def set_tab_hidden(page, hidden: bool) -> None:
    """What the browser does when the tab goes to the background or comes back."""
    page.evaluate(
        """hidden => {
        Object.defineProperty(document, "hidden", {value: hidden, configurable: true});
        Object.defineProperty(document, "visibilityState",
                              {value: hidden ? "hidden" : "visible", configurable: true});
        document.dispatchEvent(new Event("visibilitychange"));
    }""",
        hidden,
    )


# Records the desktop notifications a page shows (the browser's own would need a display).
RECORD_NOTIFICATIONS = """
window.__notifications = [];
const Real = window.Notification;
window.Notification = function (title, options) { window.__notifications.push(title); return {}; };
window.Notification.requestPermission = () => Real.requestPermission();
Object.defineProperty(window.Notification, "permission", {get: () => Real.permission});
"""


def log_in(page, server):
    page.goto(server.url + "/login")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(server.url + "/")


def conversation_rows(page):
    return page.locator("#conversations li.conversation")


def row_for(page, sender: str):
    """A sender's row in the list, found by the sender as stored (the name shown may differ)."""
    return page.locator(f"#conversations li.conversation[data-sender={json.dumps(sender)}]")


def open_row(page, sender: str):
    """Click a sender's row: its conversation opens in the right pane (or as the phone's screen)."""
    row_for(page, sender).locator("a.sender").click()
    expect(page.locator("#conversation-pane[data-conversation]")).to_be_visible()
    expect(page.locator("#conversation-pane")).to_have_attribute(
        "data-conversation", row_for(page, sender).locator("a.sender").get_attribute("id").rsplit("-", 1)[1]
    )


def mark_page(page):
    """A flag that a reload or navigation would wipe: proves an update came without one."""
    page.evaluate("window.__sameDocument = true")


def assert_same_page(page):
    assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"


def export_csv(page):
    """From the list: Export…, then CSV in the export dialog, then Download; the download."""
    page.get_by_role("link", name="Export…").click()
    page.get_by_role("radio", name=re.compile(r"^CSV")).check()
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download").click()
    return download_info.value


def download_rows(page) -> list[list[str]]:
    """The list's export as CSV; the file's rows as the csv module reads them."""
    text = Path(export_csv(page).path()).read_text(encoding="utf-8-sig")
    return list(csv.reader(io.StringIO(text, newline="")))


def screenshot(page, name: str):
    OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=OUTPUT / name, full_page=True)
    # Playwright leaves empty `style` attributes behind, which a later htmx swap would copy against
    # the page's CSP (style-src 'self'): the page as it was before the screenshot.
    page.evaluate("document.querySelectorAll('[style=\"\"]').forEach(e => e.removeAttribute('style'))")


DESKTOP, PHONE = {"width": 1280, "height": 800}, {"width": 390, "height": 844}


def overflow(page) -> int:
    """How many pixels the page is wider than the window (0: no horizontal scrolling)."""
    return page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
