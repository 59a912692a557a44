"""The Reports page in headless Chromium against a real server: its figures, charts and tables
at a desktop and a phone size, light and dark, with axe-core; screenshots in test-output/."""

import uuid
from decimal import Decimal

import pytest
from playwright.sync_api import expect
from test_browser_workflows import screens, serious_accessibility_problems

from app import clock, tallies
from app.contacts import set_status
from app.db.unit_of_work import write_transaction
from app.replies import insert_reply
from browser_helpers import deliver, log_in
from conftest import conversation_of

pytestmark = pytest.mark.browser

OUR_NUMBER = "+37250000001"


def test_the_reports_page_reads_well_everywhere(page, server, backend, app):
    with app.app_context():
        now = clock.utc_iso(clock.now())
    for index, sender in enumerate(("+37255664418", "+37255664419", "+447700900123")):
        deliver(server, sender=sender, recipient=OUR_NUMBER, text=f"Tere {index}", time=now)
    with app.app_context():
        first = conversation_of("+37255664418").id
        with write_transaction() as session:
            insert_reply(
                session.connection(),
                first,
                "+37255664418",
                "Tere!",
                [{"channel": "sms", "sender": OUR_NUMBER}],
                1,
                f"reply-{uuid.uuid4().hex}",
            )
            tallies.add(
                session.connection(),
                clock.now(),
                "cost",
                Decimal("0.0475"),
                channel="sms",
                our_number=OUR_NUMBER,
                user_id=1,
            )
        set_status(first, "done", 1)
    log_in(page, server)
    page.get_by_role("link", name="Reports").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Reports")
    figures = page.locator(".figures")
    expect(figures.locator("div", has_text="Conversations started").locator("dd .value")).to_have_text("3")
    expect(figures.locator("div", has_text="Messages in").locator("dd .value")).to_have_text("3")
    expect(figures.locator("div", has_text="Cost").locator("dd .value")).to_have_text("0.0475 EUR")
    expect(page.get_by_role("img", name="Messages per day")).to_be_visible()
    expect(page.get_by_role("img", name="Busiest hours of the week")).to_be_visible()
    expect(page.get_by_role("row", name="alice")).to_be_visible()
    assert serious_accessibility_problems(page) == []
    screens(page, "reports", backend)

    page.get_by_label("Range").select_option("last_30")
    page.get_by_role("button", name="Show").click()
    expect(page.locator(".range-said")).to_contain_text("Last 30 days")
    page.get_by_text("The charts’ numbers").click()
    expect(page.get_by_role("table", name="Per day")).to_be_visible()
    assert serious_accessibility_problems(page) == []
    screens(page, "reports-30-days", backend)
