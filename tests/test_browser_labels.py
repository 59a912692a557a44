"""Labels in headless Chromium against a real gunicorn: put on from the thread's header (by
mouse, and with `l` from the keyboard), shown on the list's rows without a reload, the list
filtered by them; the admin page. Screenshots of these screens go to test-output/.
"""

import re

import pytest
from playwright.sync_api import expect

from app.contacts import labels
from browser_helpers import DESKTOP, LIVE, PHONE, deliver, log_in, open_row, overflow, row_for, screenshot
from conftest import ROOT

pytestmark = pytest.mark.browser

AXE = (ROOT / "tests" / "vendor" / "axe-core-4.11.0.min.js").read_text()


def serious_accessibility_problems(page) -> list[str]:
    """axe-core's serious and critical findings on the page as it is now."""
    page.evaluate(AXE)  # evaluated by the driver, so the page's CSP does not apply
    return page.evaluate("""async () => (await axe.run(document)).violations
        .filter(v => v.impact === "serious" || v.impact === "critical")
        .map(v => v.id + ": " + v.nodes.map(n => n.target.join(" ")).join(", "))""")


def screens(page, name: str, backend: str) -> None:
    """The page at a desktop and a phone size, light and dark; no sideways scrolling in any
    (as tests/test_browser_workflows.py's)."""
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        for size in (DESKTOP, PHONE):
            page.set_viewport_size(size)
            assert overflow(page) <= 0, f"{name} at {size['width']}px, {scheme}"
            if backend == "sqlite":  # the same screens on either database: one set is enough
                screenshot(page, f"{name}-{size['width']}x{size['height']}-{scheme}.png")
    page.emulate_media(color_scheme="light")
    page.set_viewport_size(DESKTOP)


@pytest.fixture
def labelled(app):
    with app.app_context():
        for name, colour in (("refund", "red"), ("Spam", "grey"), ("VIP", "purple"), ("Wholesale", "teal")):
            labels.create(name, colour)


def test_label_a_conversation_from_the_header_and_with_l_then_filter_the_list(page, server, backend, labelled):
    deliver(server, sender="+37255664418", recipient="+37250000001", text="Kus mu raha on? Tellimus 4411")
    deliver(server, sender="+44 7700 900123", recipient="+37250000002", text="Hello from London")
    deliver(server, sender="+3725550003", recipient="+37250000001", channel="whatsapp", text="Tere!")
    log_in(page, server)
    open_row(page, "+37255664418")

    page.get_by_text("Add label").click()
    menu = page.locator("#label-menu-list")
    expect(menu).to_be_visible()
    menu.get_by_role("button", name="refund").click()
    header_chips = page.locator("#labels .label-chips li")
    expect(header_chips).to_have_text(["refund"])
    expect(menu.get_by_role("button", name="refund")).to_have_attribute("aria-pressed", "true")
    expect(menu).to_be_visible()  # open for the next one
    # The list follows at once (the change asks it to poll), without a reload.
    expect(row_for(page, "+37255664418").locator(".label-chip")).to_have_text(["refund"], timeout=LIVE)
    page.keyboard.press("Escape")
    expect(menu).to_be_hidden()
    expect(page.locator("#label-menu summary")).to_be_focused()

    # `l` from the keyboard: the menu, its first choice focused; Tab to VIP, Enter.
    page.locator("#thread-scroll").focus()
    page.keyboard.press("l")
    expect(menu).to_be_visible()
    expect(menu.get_by_role("button", name="refund")).to_be_focused()
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    expect(menu.get_by_role("button", name="VIP")).to_be_focused()
    page.keyboard.press("Enter")
    expect(header_chips).to_have_text(["refund", "VIP"])
    expect(menu.get_by_role("button", name="VIP")).to_be_focused()  # focus stays on the choice
    expect(row_for(page, "+37255664418").locator(".label-chip")).to_have_text(["refund", "VIP"], timeout=LIVE)
    assert serious_accessibility_problems(page) == []
    screens(page, "labels-header-menu", backend)
    page.keyboard.press("Escape")

    open_row(page, "+3725550003")
    page.get_by_text("Add label").click()
    page.locator("#label-menu-list").get_by_role("button", name="VIP").click()
    expect(page.locator("#labels .label-chips li")).to_have_text(["VIP"])
    page.locator("#thread-scroll").click()  # a click elsewhere closes the menu
    expect(page.locator("#label-menu-list")).to_be_hidden()
    expect(row_for(page, "+3725550003").locator(".label-chip")).to_have_text(["VIP"], timeout=LIVE)

    # The list filtered by labels: VIP, then VIP and refund (both).
    page.goto(server.url + "/?view=all")
    page.locator("#label-filter summary").click()
    choices = page.locator("#label-filter .menu")
    expect(choices.locator(".label-choice")).to_have_text(
        [re.compile(r"refund\s+1"), re.compile(r"Spam\s+0"), re.compile(r"VIP\s+2"), re.compile(r"Wholesale\s+0")]
    )
    assert serious_accessibility_problems(page) == []
    screens(page, "labels-list-filter", backend)
    choices.get_by_label("VIP").check()
    choices.get_by_role("button", name="Show").click()
    expect(page).to_have_url(re.compile(r"label=VIP"))
    expect(page.locator("#conversations li.conversation")).to_have_count(2)
    expect(page.locator("#label-filter summary")).to_have_text("Filter by Labels: VIP")
    page.locator("#label-filter summary").click()
    page.locator("#label-filter .menu").get_by_label("refund").check()
    page.locator("#label-filter .menu").get_by_role("button", name="Show").click()
    expect(page.locator("#conversations li.conversation")).to_have_count(1)
    expect(row_for(page, "+37255664418")).to_be_visible()
    page.get_by_role("navigation", name="Views").get_by_role("link", name=re.compile("^Open")).click()
    expect(page).to_have_url(re.compile(r"label=refund.*label=vip|label=vip.*label=refund"))
    expect(page.locator("#conversations li.conversation")).to_have_count(1)

    page.goto(server.url + "/?view=all")
    expect(row_for(page, "+37255664418").locator(".label-chip")).to_have_text(["refund", "VIP"])
    screens(page, "labels-list-rows", backend)
    # The label filter takes no line of its own: the list's controls keep their height budget
    # (tests/test_browser.py), with the channel and number filters shown too.
    for size in (DESKTOP, PHONE):
        page.set_viewport_size(size)
        expect(page.get_by_label("Channel")).to_be_visible()
        pane = page.locator(".list-pane").bounding_box()
        first_row = page.locator("#conversations li.conversation >> nth=0").bounding_box()
        assert first_row["y"] - pane["y"] < 210, f"controls before the first row at {size['width']}px"
    page.set_viewport_size(DESKTOP)


def test_the_admin_labels_page_adds_renames_and_deletes(page, server, backend, labelled):
    log_in(page, server)
    page.goto(server.url + "/admin/labels")
    expect(page.get_by_role("heading", name="4 labels")).to_be_visible()
    page.get_by_label("Name", exact=True).last.fill("Late, again")
    page.get_by_role("button", name="Add label").click()
    expect(page.get_by_role("alert")).to_contain_text("cannot contain a comma")
    page.get_by_label("Name", exact=True).last.fill("Late delivery")
    page.locator("#new-label-colour").select_option("orange")
    page.get_by_role("button", name="Add label").click()
    expect(page.get_by_role("heading", name="5 labels")).to_be_visible()
    item = page.locator(".label-admin li", has=page.locator(".label-chip", has_text="Late delivery"))
    expect(item.locator(".label-chip")).to_have_class(re.compile(r"\blabel-orange\b"))
    item.get_by_label("Name").fill("Late")
    item.get_by_role("button", name=re.compile("^Save")).click()
    expect(page.locator(".label-admin .label-chip", has_text="Late")).to_have_text("Late")
    assert serious_accessibility_problems(page) == []
    screens(page, "labels-admin", backend)
    page.locator(".label-admin li", has=page.locator(".label-chip", has_text="Spam")).get_by_role(
        "button", name=re.compile("^Delete")
    ).click()
    expect(page.get_by_role("heading", name="4 labels")).to_be_visible()
    expect(page.locator(".label-admin .label-chip")).to_have_text(["Late", "refund", "VIP", "Wholesale"])
