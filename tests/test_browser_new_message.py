"""New message and send later in headless Chromium against a real gunicorn: write to a new number
for tomorrow, see it scheduled in the thread and the list, edit it, cancel it; screenshots of the
New message form and of a thread with a scheduled message go to test-output/."""

import re

import pytest
from playwright.sync_api import expect
from test_browser_workflows import screens, serious_accessibility_problems

from browser_helpers import LIVE, deliver, log_in, row_for
from conftest import API_PASSWORD

pytestmark = pytest.mark.browser


@pytest.fixture
def messente_env(messente) -> dict:
    """The server sends through the fake Messente, from our own SMS sender, in Tallinn's time."""
    return {
        "MESSENTE_API_URL": messente.url,
        "MESSENTE_API_USERNAME": "api-user",
        "MESSENTE_API_PASSWORD": API_PASSWORD,
        "MESSENTE_SMS_SENDER": "Shop",
        "MESSENTE_VIBER_SENDER": "ShopViber",
        "MESSENTE_WHATSAPP_SENDER": "",
        "TEAM_TIME_ZONE": "Europe/Tallinn",
    }


def test_schedule_a_new_message_see_it_edit_it_cancel_it(messente_env, page, server, backend, messente):
    deliver(server, sender="+37255664418", text="Is my parcel on its way?")
    log_in(page, server)
    page.get_by_role("link", name="New message").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("New message")
    expect(page.get_by_text("only with a message template WhatsApp approved")).to_be_visible()
    page.get_by_label("To", exact=True).fill("+372 5557 7003")
    page.get_by_label("Message", exact=True).fill("Your order is ready for pickup from tomorrow.")
    page.get_by_text("Send later").click()
    page.get_by_role("radio", name=re.compile("Tomorrow")).check()
    assert serious_accessibility_problems(page) == []
    screens(page, "new-message", backend)

    page.get_by_role("button", name="Schedule").click()
    scheduled = page.locator("#scheduled li.pending")
    expect(scheduled).to_have_count(1)
    expect(scheduled.locator(".status")).to_have_text(re.compile(r"Scheduled for \w{3} 09:00"))
    expect(row_for(page, "+37255577003").locator(".scheduled-clock")).to_be_visible(timeout=LIVE)
    assert serious_accessibility_problems(page) == []
    screens(page, "scheduled-thread", backend)

    scheduled.get_by_role("link", name=re.compile("^Edit")).click()
    page.get_by_label("Message", exact=True).fill("Ready for pickup from tomorrow 10:00.")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#scheduled li.pending .text")).to_have_text("Ready for pickup from tomorrow 10:00.")

    page.locator("#scheduled").get_by_role("button", name=re.compile("^Cancel")).click()
    expect(page.locator("#scheduled li.pending")).to_have_count(0)
    expect(row_for(page, "+37255577003").locator(".scheduled-clock")).to_have_count(0, timeout=LIVE)
    assert messente.requests == []  # nothing was sent
