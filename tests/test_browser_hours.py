"""Business hours in headless Chromium against a real gunicorn: the list's "Outside hours" marker,
the away reply in the thread (sent by the server's own job runner through the fake Messente), and
the admin page; axe-core on each, screenshots at both sizes, light and dark, in test-output/."""

from datetime import date

import pytest
from playwright.sync_api import expect
from test_browser_workflows import screens, serious_accessibility_problems

from app import hours
from browser_helpers import deliver, log_in, open_row, row_for

pytestmark = pytest.mark.browser

CUSTOMER = "+37255664418"
OUR_NUMBER = "+37250000001"


@pytest.fixture
def messente_env(messente) -> dict:
    """The server sends replies through the fake Messente."""
    return {
        "MESSENTE_API_URL": messente.url,
        "MESSENTE_API_USERNAME": "api-user",
        "MESSENTE_API_PASSWORD": "api-password",
        "MESSENTE_SMS_SENDER": "",
    }


def test_outside_hours_the_list_says_so_the_away_reply_shows_and_the_admin_page_works(
    new_context, server, backend, messente_env, messente, app
):
    with app.app_context():  # closed every day: "now" is outside the hours whenever the test runs
        hours.set_away(True, 24)
        hours.save_hours(hours.ALL, ((),) * 7, {date(2026, 12, 24): "Christmas Eve"}, "Hi {name}, we are closed.")
    deliver(server, sender=CUSTOMER, recipient=OUR_NUMBER, text="Kas olete täna avatud?")
    [request] = messente.wait_for_requests(1, timeout=15)
    assert request.json["messages"][0]["text"] == "Hi, we are closed."

    page = new_context().new_page()
    log_in(page, server)
    expect(page.locator(".list-pane .outside-hours")).to_have_text("Outside hours")
    expect(row_for(page, CUSTOMER).locator(".preview")).to_have_text("Kas olete täna avatud?")
    assert serious_accessibility_problems(page) == []
    screens(page, "hours-list", backend)

    open_row(page, CUSTOMER)
    away = page.locator("#messages .message.out")
    expect(away.locator(".author")).to_have_text("Away reply")
    expect(away.locator(".text")).to_have_text("Hi, we are closed.")
    screens(page, "hours-thread", backend)

    page.goto(server.url + "/admin/hours")
    expect(page.get_by_role("heading", level=1)).to_have_text("Business hours")
    expect(
        page.get_by_role("checkbox", name="Send the away reply to customers who write outside the hours")
    ).to_be_checked()
    expect(page.get_by_label("Closed days (holidays)")).to_have_value("2026-12-24 Christmas Eve")
    assert serious_accessibility_problems(page) == []
    screens(page, "hours-admin", backend)

    page.get_by_label("Monday opens").fill("08:30")
    page.get_by_label("Monday closes").fill("16:00")
    page.get_by_role("button", name="Save hours").click()
    expect(page.get_by_role("status")).to_have_text("Saved.")
    expect(page.get_by_label("Monday opens")).to_have_value("08:30")

    page.get_by_label("Hours for", exact=True).select_option(OUR_NUMBER)
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_text("This number keeps the shared hours")).to_be_visible()
    expect(page.get_by_label("Away text from this number")).to_have_value("")  # empty: the shared one
    assert serious_accessibility_problems(page) == []
    screens(page, "hours-admin-number", backend)
    with app.app_context():
        assert hours.hours_for(None).weekly[0][0][0].strftime("%H:%M") == "08:30"
