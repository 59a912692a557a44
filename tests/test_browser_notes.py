"""Private notes and @mentions in headless Chromium against a real gunicorn: the box's Note mode
by keyboard, the teammates `@` offers, the note in the thread, and the mentioned person's bell
rising on their own screen at their next poll. Screenshots go to test-output/."""

import re

import pytest
from playwright.sync_api import expect
from test_browser_workflows import messente_env, screens, serious_accessibility_problems  # noqa: F401 (a fixture)

from browser_helpers import LIVE, deliver, log_in, open_row, row_for
from conftest import PASSWORD, add_user

pytestmark = pytest.mark.browser
CUSTOMER = "+37255664418"


def log_in_as(page, server, name: str) -> None:
    page.goto(server.url + "/login")
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(server.url + "/")


def test_a_note_with_a_mention_rings_the_teammates_bell(new_context, app, server, messente_env, backend):  # noqa: F811
    with app.app_context():
        add_user("bob", role="agent")
        add_user("mari.tamm", role="agent")
    deliver(server, sender=CUSTOMER, recipient="+37250000001", text="Kas mu pakk on teel? Tellimus 4711.")

    bob = new_context().new_page()
    log_in_as(bob, server, "bob")
    expect(bob.locator("#bell .badge")).to_have_count(0)
    mentions_tab = bob.get_by_role("navigation", name="Views").get_by_role("link", name=re.compile("^Mentions"))
    expect(mentions_tab).to_have_text("Mentions 0")

    alice = new_context().new_page()
    log_in(alice, server)
    open_row(alice, CUSTOMER)
    # Reply and Note are radio buttons: the arrow keys move between them.
    alice.get_by_role("radio", name="Reply").focus()
    alice.keyboard.press("ArrowRight")
    expect(alice.get_by_role("radio", name="Note")).to_be_checked()
    box = alice.locator("#reply-text")
    expect(box).to_have_attribute("placeholder", re.compile("^Note for your team"))
    expect(alice.get_by_role("button", name="Add note")).to_be_visible()
    expect(alice.get_by_role("button", name="Send", exact=True)).to_be_hidden()

    box.press_sequentially("Palun helista, @")
    suggestions = alice.get_by_role("listbox", name="Teammates to mention")
    expect(suggestions).to_be_visible()
    expect(suggestions.get_by_role("option")).to_have_text(["@bob", "@mari.tamm"])  # alice herself is not offered
    box.press("Escape")  # closes the list, and leaves the conversation open
    expect(suggestions).to_be_hidden()
    expect(alice.locator("#conversation-pane[data-conversation]")).to_be_visible()
    box.press_sequentially("b")
    expect(suggestions.get_by_role("option")).to_have_text(["@bob"])
    expect(box).to_have_attribute("aria-activedescendant", "mention-option-0")
    expect(suggestions.get_by_role("option", name="@bob")).to_have_attribute("aria-selected", "true")
    assert serious_accessibility_problems(alice) == []
    screens(alice, "note-mention-list", backend)
    box.press("Enter")  # picks bob
    expect(box).to_have_value("Palun helista, @bob ")
    expect(suggestions).to_be_hidden()
    box.press_sequentially("kliendile homme hommikul.")
    box.press("Control+Enter")

    note = alice.locator("#messages .message.note")
    expect(note.locator(".text")).to_have_text("Palun helista, @bob kliendile homme hommikul.", timeout=LIVE)
    expect(note).to_contain_text("Only your team sees this")
    expect(note.locator(".author")).to_have_text("alice")
    expect(box).to_have_value("")
    expect(alice.get_by_role("radio", name="Note")).to_be_checked()  # the next one is a note too
    # The list's row still shows what the customer wrote.
    expect(row_for(alice, CUSTOMER).locator(".preview")).to_have_text("Kas mu pakk on teel? Tellimus 4711.")

    # bob's own screen: his bell and his Mentions count rise at his next poll.
    expect(bob.locator("#bell .badge")).to_have_text("1", timeout=LIVE)
    expect(mentions_tab).to_have_text("Mentions 1", timeout=LIVE)
    mentions_tab.click()
    expect(row_for(bob, CUSTOMER)).to_be_visible()
    open_row(bob, CUSTOMER)
    expect(bob.locator("#messages .message.note .text")).to_have_text("Palun helista, @bob kliendile homme hommikul.")
    expect(bob.locator("#bell .badge")).to_have_count(0, timeout=LIVE)

    alice.locator(
        "label[for=composer-mode-reply]"
    ).click()  # what a pointer clicks: the radios hide behind their labels
    expect(alice.get_by_role("radio", name="Reply")).to_be_checked()
    expect(box).to_have_attribute("placeholder", re.compile("^Reply to"))
    expect(alice.get_by_role("button", name="Send", exact=True)).to_be_visible()
    alice.locator("label[for=composer-mode-note]").click()
    expect(alice.get_by_role("radio", name="Note")).to_be_checked()
    assert serious_accessibility_problems(alice) == []
    screens(alice, "thread-note", backend)
