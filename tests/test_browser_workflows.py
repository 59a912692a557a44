"""Working the inbox in headless Chromium against a real gunicorn: naming a contact and finding
it by name, putting a conversation aside until the customer writes again, saved replies, and
two people answering one customer (the send guard).

Uses the browser fixtures in conftest.py (one Chromium per module, a watched context per test, a
server per test) and tests/browser_helpers.py; screenshots of these screens go to test-output/.
"""

import re

import pytest
from playwright.sync_api import expect

from browser_helpers import DESKTOP, LIVE, PHONE, deliver, log_in, open_row, overflow, row_for, screenshot
from conftest import PASSWORD, ROOT, add_user

pytestmark = pytest.mark.browser

AXE = (ROOT / "tests" / "vendor" / "axe-core-4.11.0.min.js").read_text()


def serious_accessibility_problems(page) -> list[str]:
    """axe-core's serious and critical findings on the page as it is now."""
    page.evaluate(AXE)  # evaluated by the driver, so the page's CSP does not apply
    found = page.evaluate("""async () => (await axe.run(document)).violations
        .filter(v => v.impact === "serious" || v.impact === "critical")
        .map(v => v.id + ": " + v.nodes.map(n => n.target.join(" ")).join(", "))""")
    return found


def screens(page, name: str, backend: str) -> None:
    """The page at a desktop and a phone size, light and dark; no sideways scrolling in any."""
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        for size in (DESKTOP, PHONE):
            page.set_viewport_size(size)
            assert overflow(page) <= 0, f"{name} at {size['width']}px, {scheme}"
            if backend == "sqlite":  # the same screens on either database: one set is enough
                screenshot(page, f"{name}-{size['width']}x{size['height']}-{scheme}.png")
    page.emulate_media(color_scheme="light")
    page.set_viewport_size(DESKTOP)


def test_name_a_contact_in_the_header_and_find_it_by_name(page, server, backend):
    deliver(server, sender="+37255664418", recipient="+37250000001", text="Kus mu pakk on?")
    deliver(server, sender="+44 7700 900123", recipient="+37250000002", text="Hello from London")
    log_in(page, server)
    expect(row_for(page, "+37255664418").locator("a.sender")).to_have_text("🇪🇪 +372 5566 4418")
    open_row(page, "+37255664418")

    page.get_by_text("Add name or note").click()
    page.get_by_label("Name", exact=True).fill("Ülle Tamm")
    page.get_by_label(re.compile(r"^Note \(only the team")).fill("Orders every Friday; prefers SMS.")
    page.get_by_role("button", name="Save contact").click()
    expect(page.locator("#conversation-heading")).to_have_text("Ülle Tamm")
    expect(page).to_have_title(re.compile("^\u2068Ülle Tamm\u2069 · "))
    expect(page.locator("#contact .contact-note")).to_have_text("Orders every Friday; prefers SMS.")
    # The list follows at once (the save asks it to poll), without a reload.
    expect(row_for(page, "+37255664418").locator("a.sender")).to_have_text("🇪🇪 Ülle Tamm", timeout=LIVE)
    expect(page).to_have_title(re.compile("^\u2068Ülle Tamm\u2069 · "))  # a list poll keeps the new name
    assert serious_accessibility_problems(page) == []
    screens(page, "contact-header", backend)
    page.get_by_text("Edit name and note").click()
    screens(page, "contact-editing", backend)

    page.get_by_role("searchbox").fill("ulle")
    expect(page.locator("#conversations li.conversation")).to_have_count(1)
    expect(row_for(page, "+37255664418")).to_be_visible()
    page.get_by_role("searchbox").fill("tamm")
    expect(page.locator("#conversations li.conversation")).to_have_count(1)


def test_done_leaves_the_open_view_and_a_new_message_brings_it_back(page, server, backend):
    deliver(server, sender="+37255664418", recipient="+37250000001", channel="sms", text="Aitäh!")
    deliver(server, sender="+3725550002", recipient="+37250000002", channel="whatsapp", text="Hi")
    log_in(page, server)
    tabs = page.get_by_role("navigation", name="Views")
    expect(tabs.get_by_role("link", name="Open 2")).to_have_attribute("aria-current", "page")
    open_row(page, "+37255664418")

    page.get_by_role("button", name="Mark done").click()
    expect(page.get_by_role("button", name="Reopen")).to_be_visible()
    expect(row_for(page, "+37255664418")).to_have_count(0, timeout=LIVE)  # left the Open view, no reload
    expect(tabs.get_by_role("link", name="Done 1")).to_be_visible()
    expect(tabs.get_by_role("link", name="Open 1")).to_be_visible()

    deliver(server, sender="+372 5566 4418", recipient="+37250000001", text="One more question")
    expect(row_for(page, "+37255664418")).to_be_visible(timeout=LIVE)  # back in Open by itself
    expect(tabs.get_by_role("link", name="Open 2")).to_be_visible()
    expect(page.get_by_role("button", name="Mark done")).to_be_visible(timeout=LIVE)  # the open thread too

    # The filters narrow the view; the choice stays in the URL and in the polls.
    page.get_by_label("To our number").select_option("+37250000002")
    expect(page).to_have_url(re.compile(r"to=%2B37250000002"))
    expect(page.locator("#conversations li.conversation")).to_have_count(1)
    expect(row_for(page, "+3725550002")).to_be_visible()
    assert "to=%2B37250000002" in page.get_attribute("#conversations", "hx-get")
    tabs.get_by_role("link", name=re.compile("^Done")).click()
    expect(page).to_have_url(re.compile(r"view=done.*to=%2B37250000002|to=%2B37250000002.*view=done"))
    assert serious_accessibility_problems(page) == []
    page.get_by_role("navigation", name="Views").get_by_role("link", name=re.compile("^All")).click()
    screens(page, "views", backend)


def test_saved_replies_are_managed_on_their_page_and_typed_with_a_slash(new_context, server, backend, messente_env):
    deliver(server, sender="+37255664418", recipient="+37250000001", text="When are you open?")
    page = new_context().new_page()
    log_in(page, server)
    page.get_by_role("link", name="Saved replies").click()
    page.get_by_label("Title").fill("Opening hours")
    page.get_by_label("Text").fill("Hi {name}, we are open 9–17 on weekdays.")
    page.get_by_role("button", name="Add saved reply").click()
    page.get_by_label("Title").fill("Thanks")
    page.get_by_label("Text").fill("Thank you for writing!")
    page.get_by_role("button", name="Add saved reply").click()
    expect(page.get_by_role("heading", name="2 saved replies")).to_be_visible()
    assert serious_accessibility_problems(page) == []
    screens(page, "saved-replies", backend)

    page.goto(server.url + "/")
    open_row(page, "+37255664418")
    page.get_by_label(re.compile("^Reply to")).fill("Tere! ")
    page.evaluate("localStorage.clear()")  # as in a browser that keeps no drafts
    page.get_by_text("Add name or note").click()
    page.get_by_label("Name", exact=True).fill("Ülle")
    page.get_by_role("button", name="Save contact").click()
    expect(page.locator("#conversation-heading")).to_have_text("Ülle")
    box = page.get_by_label("Reply to Ülle")  # the reply box follows the name, and keeps what was typed
    expect(box).to_have_value("Tere! ")
    box.fill("Tere! /open")
    expect(page.get_by_role("option", name="Opening hours")).to_be_visible()
    screens(page, "saved-reply-suggestions", backend)
    box.press("Enter")
    expect(box).to_have_value("Tere! Hi Ülle, we are open 9–17 on weekdays.")
    page.locator(".saved-replies-menu summary").click()
    page.get_by_role("link", name=re.compile("^Thanks")).click()
    expect(box).to_have_value("Tere! Hi Ülle, we are open 9–17 on weekdays.Thank you for writing!")


def test_a_reply_after_a_teammates_is_held_until_send_anyway(new_context, app, server, messente_env):
    """bob answers while alice has the thread open and is typing: her Send is held with what bob
    wrote, her text kept, and "Send anyway" sends it."""
    with app.app_context():
        add_user("bob", role="agent")
    deliver(server, sender="+37255664418", recipient="+37250000001", text="Kas mu pakk on teel?")
    alice = new_context().new_page()
    log_in(alice, server)
    open_row(alice, "+37255664418")
    # Her polls find nothing new meanwhile (as when bob's reply lands between two of them), so
    # bob's reply is not on her screen when she sends.
    polls = lambda url: "since=" in url  # noqa: E731
    alice.route(polls, lambda route: route.fulfill(status=204))
    alice_box = alice.get_by_label(re.compile("^Reply to"))
    alice_box.fill("Jah, pakk jõuab homme.")

    bob = new_context().new_page()
    bob.goto(server.url + "/login")
    bob.get_by_label("Username").fill("bob")
    bob.get_by_label("Password").fill(PASSWORD)
    bob.get_by_role("button", name="Log in").click()
    open_row(bob, "+37255664418")
    bob.get_by_label(re.compile("^Reply to")).fill("Tere! Pakk on teel, jõuab homme hommikul.")
    bob.get_by_role("button", name="Send", exact=True).click()
    expect(bob.locator("#messages .message.out .text")).to_have_text(["Tere! Pakk on teel, jõuab homme hommikul."])

    alice.get_by_role("button", name="Send", exact=True).click()
    held = alice.locator("#reply-held")
    expect(held).to_contain_text("New since you started writing")
    expect(held).to_contain_text("bob")
    expect(held).to_contain_text("Tere! Pakk on teel, jõuab homme hommikul.")
    expect(alice_box).to_have_value("Jah, pakk jõuab homme.")
    expect(alice.locator("#messages .message.out")).to_have_count(0)  # nothing of hers was sent
    # (Its screenshots are test_accessibility.py's: screenshots leave empty style attributes that
    # the next swap of the reply box would copy, against the page's CSP.)
    assert serious_accessibility_problems(alice) == []

    alice.unroute(polls)  # her thread catches up at the next poll
    expect(alice.locator("#messages .message.out .text")).to_have_text(
        ["Tere! Pakk on teel, jõuab homme hommikul."], timeout=LIVE
    )
    alice.get_by_role("button", name="Send anyway").click()
    expect(alice.locator("#messages .message.out .text")).to_have_text(
        ["Tere! Pakk on teel, jõuab homme hommikul.", "Jah, pakk jõuab homme."], timeout=LIVE
    )
    expect(alice_box).to_have_value("")
    expect(alice.locator("#reply-held")).to_have_count(0)
    expect(alice.get_by_role("button", name="Send", exact=True)).to_be_visible()


@pytest.fixture
def messente_env(messente) -> dict:
    """Reply boxes are offered: the server has API credentials (of the fake Messente)."""
    return {
        "MESSENTE_API_URL": messente.url,
        "MESSENTE_API_USERNAME": "api-user",
        "MESSENTE_API_PASSWORD": "api-password",
    }


def test_someone_typing_in_a_thread_alice_has_open_shows_to_her(
    new_context, server, backend, messente_env, app, user_row
):
    """Presence: bob opens the conversation alice has open, then types in its reply box; her
    header says so within a poll or two, and again when he stops. Nobody sees themselves."""
    from conftest import PASSWORD

    with app.app_context():
        user_row("bob", role="agent")
    deliver(server, sender="+37255664418", recipient="+37250000001", text="Kas keegi on seal?")
    alice = new_context().new_page()
    log_in(alice, server)
    open_row(alice, "+37255664418")
    bob = new_context().new_page()
    bob.goto(server.url + "/login")
    bob.get_by_label("Username").fill("bob")
    bob.get_by_label("Password").fill(PASSWORD)
    bob.get_by_role("button", name="Log in").click()
    expect(bob).to_have_url(server.url + "/")
    open_row(bob, "+37255664418")

    line = alice.locator("#presence")
    expect(bob.locator("#presence")).to_have_text("alice is viewing")  # shown as his page opens
    expect(line).to_have_text("bob is viewing", timeout=LIVE)
    bob.get_by_label(re.compile("^Reply to")).press_sequentially("Tere, ")
    expect(line).to_have_text("bob is typing…", timeout=LIVE)
    assert serious_accessibility_problems(alice) == []
    screens(alice, "presence", backend)
    # He stops: typing ends 5 s after his last keystroke, and his next poll says so.
    expect(line).to_have_text("bob is viewing", timeout=LIVE + 5_000)
    expect(bob.locator("#presence")).to_have_text("alice is viewing")


def test_assigning_in_one_session_shows_in_the_others_list_within_a_poll(new_context, server, backend, app, user_row):
    """alice takes a conversation ("Assign to me"); bob, with the inbox open, sees her initials on
    its row at his next poll, and Mine/Unassigned follow for each of them."""
    with app.app_context():
        user_row("bob", role="agent")
    deliver(server, sender="+37255664418", recipient="+37250000001", text="Kes mind aitab?")
    bob = new_context().new_page()
    bob.goto(server.url + "/login")
    bob.get_by_label("Username").fill("bob")
    bob.get_by_label("Password").fill(PASSWORD)
    bob.get_by_role("button", name="Log in").click()
    expect(bob).to_have_url(server.url + "/")
    expect(row_for(bob, "+37255664418").locator(".owner")).to_have_count(0)

    alice = new_context().new_page()
    log_in(alice, server)
    open_row(alice, "+37255664418")
    alice.get_by_role("button", name="Assign to me").click()
    expect(alice.locator("#owner")).to_contain_text("Owner: alice (you)")

    expect(row_for(bob, "+37255664418").locator(".owner")).to_contain_text("owner: alice", timeout=LIVE)
    assert serious_accessibility_problems(bob) == []
    screens(bob, "owners-list", backend)
    screens(alice, "owners-thread", backend)
    bob.goto(server.url + "/?assignee=me")
    expect(row_for(bob, "+37255664418")).to_have_count(0)
    alice.goto(server.url + "/?assignee=me")
    expect(row_for(alice, "+37255664418")).to_have_count(1)


def test_snooze_from_the_header_leaves_open_and_sits_in_snoozed(page, server, backend):
    """The admin sets the team's zone; the snooze menu offers its times, says whose they are (the
    browser is in Tallinn), and a snoozed conversation leaves the Open list for Snoozed."""
    deliver(server, sender="+37255664418", recipient="+37250000001", text="Can you call me tomorrow?")
    deliver(server, sender="+3725550002", recipient="+37250000001", text="Hi")
    log_in(page, server)

    page.goto(server.url + "/admin/time-zone")
    page.get_by_label("The team's time zone").select_option("America/New_York")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("Saved.")
    expect(page.get_by_label("The team's time zone")).to_have_value("America/New_York")
    assert serious_accessibility_problems(page) == []
    screens(page, "admin-time-zone", backend)

    page.goto(server.url + "/")
    tabs = page.get_by_role("navigation", name="Views")
    expect(tabs.get_by_role("link", name="Open 2")).to_have_attribute("aria-current", "page")
    open_row(page, "+37255664418")
    page.locator("#snooze-menu summary").click()
    menu = page.locator("#snooze-menu-items")
    expect(menu.get_by_role("button", name=re.compile("^Tomorrow"))).to_be_visible()
    expect(menu.get_by_role("button", name="Until the customer replies")).to_be_visible()
    expect(menu.get_by_label(re.compile("^Date and time"))).to_be_visible()
    expect(menu.locator(".zone-note")).to_have_text(re.compile("America/New_York"))  # not the browser's zone
    assert serious_accessibility_problems(page) == []
    screens(page, "snooze-menu", backend)

    menu.get_by_role("button", name=re.compile("^Tomorrow")).click()
    expect(page.locator("#snooze-menu summary")).to_have_text(re.compile("Snoozed$"))  # the menu closed
    expect(row_for(page, "+37255664418")).to_have_count(0, timeout=LIVE)  # left the Open list, no reload
    expect(tabs.get_by_role("link", name="Snoozed 1")).to_be_visible()
    expect(tabs.get_by_role("link", name="Open 1")).to_be_visible()
    page.locator("#snooze-menu summary").click()
    expect(page.locator("#snooze .snoozed-tag")).to_contain_text("Snoozed until")
    expect(page.get_by_role("button", name="Unsnooze")).to_be_visible()
    screens(page, "snoozed-header", backend)

    tabs.get_by_role("link", name=re.compile("^Snoozed")).click()
    expect(page).to_have_url(re.compile(r"view=snoozed"))
    expect(row_for(page, "+37255664418").locator(".wakes")).to_contain_text("Wakes")
    assert serious_accessibility_problems(page) == []
    screens(page, "snoozed-view", backend)

    open_row(page, "+37255664418")
    page.locator("#snooze-menu summary").click()
    page.get_by_role("button", name="Unsnooze").click()
    expect(page.locator("#snooze-menu summary")).to_have_text(re.compile("Snooze$"))
    expect(row_for(page, "+37255664418")).to_have_count(0, timeout=LIVE)  # back in Open: out of Snoozed
    expect(tabs.get_by_role("link", name="Open 2")).to_be_visible()


def test_an_admin_subscribes_a_webhook_sees_its_secret_once_and_rotates_it(page, server, backend):
    log_in(page, server)
    page.goto(server.url + "/admin/webhooks")
    page.get_by_role("link", name="Webhooks").click()  # in the admin pages' navigation
    expect(page.get_by_role("heading", level=1)).to_have_text("Webhooks")
    page.get_by_label("URL").fill("https://localhost/hooks")
    page.get_by_role("button", name="Add endpoint").click()
    expect(page.get_by_role("alert")).to_contain_text("localhost resolves to")
    page.get_by_label("URL").fill("https://93.184.216.34/hooks/sms-inbox?team=support")
    page.get_by_role("checkbox", name=re.compile("^contact.opted_in")).uncheck()
    page.get_by_role("button", name="Add endpoint").click()
    secret = page.locator("code.webhook-secret")
    expect(secret).to_have_text(re.compile(r"^whsec_[A-Za-z0-9+/]{43}=$"))
    first = secret.inner_text()
    expect(
        page.get_by_role("heading", level=2, name="https://93.184.216.34/hooks/sms-inbox?team=support")
    ).to_be_visible()
    assert serious_accessibility_problems(page) == []
    screens(page, "webhooks-created", backend)

    page.get_by_role("button", name="Rotate secret").click()
    expect(secret).not_to_have_text(first)
    expect(page.get_by_text("Rotated: the previous one also signs until")).to_be_visible()
    page.goto(server.url + "/admin/webhooks")  # shown once: not on the page again
    expect(page.locator("code.webhook-secret")).to_have_count(0)
    page.get_by_role("button", name="Turn off").click()
    expect(page.locator(".webhook-facts dd").first).to_have_text("Off")
    assert serious_accessibility_problems(page) == []
    screens(page, "webhooks-off", backend)
    page.locator(".webhook-delete summary").click()  # deleting takes a second, deliberate step
    page.get_by_role("button", name="Delete this endpoint and its deliveries").click()
    expect(page.get_by_text("No endpoint yet.")).to_be_visible()
