"""Text search in headless Chromium against a real server: a word typed in the search box finds
the message, and its link opens the conversation at that message, however far back it is; the
export dialog then downloads what the list holds as a workbook."""

import io
import re
from pathlib import Path

import openpyxl
import pytest
from playwright.sync_api import expect

from app.callbacks import ingest
from app.extensions import db
from browser_helpers import log_in, screenshot
from conftest import body_for

pytestmark = pytest.mark.browser

SENDER = "+37255664418"


@pytest.fixture
def long_thread(app):
    """600 messages from one customer, the 100th the only one about a parcel machine; the id of it."""
    texts = [f"Sõnum {n}: kas kõik on korras?" for n in range(600)]
    texts[99] = "Kas PAKIAUTOMAAT Ülemistes on <b>avatud</b>? 📦"
    with app.app_context():
        ingest.store_messages(
            [ingest.parse_payload(body_for(msg_id=f"m{n}", sender=SENDER, text=text)) for n, text in enumerate(texts)]
        )
        from app.db.models import Message

        return db.session.scalar(db.select(Message.id).where(Message.msg_id == "m99"))


def test_a_word_typed_in_search_opens_its_message_in_the_thread_and_the_export_holds_it(
    long_thread, page, new_context, server, backend
):
    log_in(page, server)
    # 599 of the customer's messages hold "korras": one entry for the conversation, with the count.
    page.locator("#q").fill("korras")
    expect(page.locator("#conversations li.found")).to_have_count(1)
    expect(page.locator("#conversations li.found .matches")).to_have_text("599 messages")
    page.locator("#q").fill("pakiautomaat ulemistes")
    hit = page.locator("#conversations li.found")
    expect(hit).to_have_count(1)  # one entry for its conversation, with how many of its messages match
    expect(hit.locator(".matches")).to_have_text("1 message")
    # The text as sent, escaped, the match marked in it (accents and case aside).
    expect(hit.locator(".snippet")).to_have_text("Kas PAKIAUTOMAAT Ülemistes on <b>avatud</b>? 📦")
    expect(hit.locator("mark")).to_have_text("PAKIAUTOMAAT Ülemistes")
    expect(page).to_have_url(re.compile(r"\?q=pakiautomaat(\+|%20)ulemistes$"))
    screenshot(page, f"search-messages-{backend}.png")

    hit.locator("a.sender").click()
    target = page.locator(f"#message-{long_thread}")
    expect(target).to_have_class(re.compile(r"\btarget\b"))
    expect(target).to_be_in_viewport()
    expect(page).to_have_url(re.compile(rf"/conversations/\d+\?q=pakiautomaat(\+|%20)ulemistes&around={long_thread}$"))
    # 600 messages: the latest page (100) would not hold it; the page around it does.
    expect(page.locator("#message-" + str(long_thread - 1))).to_be_attached()
    screenshot(page, f"search-landed-{backend}.png")

    # The list's export link opens the dialog on its search; the workbook comes from the real server.
    page.locator("#export").click()  # the list's (the conversation has its own)
    expect(page.get_by_role("heading", name="Export messages")).to_be_visible()
    expect(page.get_by_label("Search", exact=True)).to_have_value("pakiautomaat ulemistes")
    page.get_by_label("Search", exact=True).fill("")
    page.get_by_role("button", name="Count again").click()
    expect(page.get_by_role("status")).to_contain_text("600 messages with these choices")
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download").click()
    expect(page.get_by_text("Building the workbook")).to_be_visible()  # a large one takes minutes
    assert download_info.value.suggested_filename.endswith(".xlsx")
    workbook = openpyxl.load_workbook(io.BytesIO(Path(download_info.value.path()).read_bytes()))
    rows = list(workbook.active.iter_rows(values_only=True))
    assert len(rows) == 601 and {row[1] for row in rows[1:]} == {SENDER}
    assert rows[100][4] == "Kas PAKIAUTOMAAT Ülemistes on <b>avatud</b>? 📦"

    # Without JavaScript: a plain form and a plain link, to the same place.
    plain = new_context(java_script_enabled=False).new_page()
    log_in(plain, server)
    plain.get_by_label("Search by sender").fill("pakiautomaat")
    plain.get_by_label("Search by sender").press("Enter")
    plain.locator("#conversations li.found a.sender").click()
    expect(plain).to_have_url(re.compile(rf"around={long_thread}#message-{long_thread}$"))
    expect(plain.locator(f"#message-{long_thread}")).to_have_class(re.compile(r"\btarget\b"))
