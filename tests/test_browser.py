"""End to end in headless Chromium (Debian's, driven by Playwright) against a real gunicorn.

Each test starts its own server on the test's database (SQLite and PostgreSQL) and delivers
messages the way Messente does: signed POSTs to /callbacks/inbound. Every page of every test
is watched: a Content-Security-Policy violation or an uncaught script error fails the test.
Screenshots go to test-output/ at the repository root.
"""

import csv
import io
import json
import re
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import expect

from app import config
from app.callbacks import ingest
from browser_helpers import (
    DESKTOP,
    LIVE,
    PHONE,
    RECORD_NOTIFICATIONS,
    assert_same_page,
    conversation_rows,
    deliver,
    download_rows,
    export_csv,
    log_in,
    mark_page,
    open_row,
    overflow,
    row_for,
    screenshot,
    set_tab_hidden,
)
from conftest import PASSWORD, add_user, body_for, signed_headers

pytestmark = pytest.mark.browser

POLL_SECONDS = config.defaults("")["POLL_SECONDS"]
HIDDEN_POLL_SECONDS = 30  # static/js/polling.js: a hidden tab's interval
CSV_HEADER = [
    "time",
    "sender",
    "recipient",
    "channel",
    "text",
    "msg_id",
    "sub_msg_id",
    "received_at",
    "direction",
    "status",
    "contact_name",
    "agent",
    "assignee",
    "labels",
    "problem",
    "price",
    "parts",
    "conversation_id",
]


# The fixtures (browser, page, server, ...) are in conftest.py, the page helpers in browser_helpers.py.


# --- tests --------------------------------------------------------------------------------


def test_login_form_lands_on_inbox_and_anonymous_visitors_are_sent_to_login(page, server, backend):
    page.goto(server.url + "/")
    expect(page).to_have_url(re.compile(re.escape(server.url) + r"/login\?next=(/|%2F)$"))
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()

    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text("Invalid username or password.")

    log_in(page, server)
    expect(page.get_by_role("heading", name="Inbox")).to_be_visible()
    expect(page.get_by_text("Signed in as alice")).to_be_visible()
    expect(page.get_by_role("heading", name="No messages yet")).to_be_visible()
    expect(page.get_by_text(server.url + "/callbacks/inbound")).to_be_visible()
    screenshot(page, f"empty-inbox-{backend}.png")


def test_message_delivered_while_inbox_is_open_appears_without_reload(page, server):
    log_in(page, server)
    expect(page).to_have_title("Inbox · sms-inbox")
    mark_page(page)

    deliver(server, sender="+37255512345", text="Tere! Kas pood on täna avatud? 🙂")
    row = row_for(page, "+37255512345")
    expect(row).to_be_visible(timeout=LIVE)
    expect(row.locator(".preview")).to_have_text("Tere! Kas pood on täna avatud? 🙂")
    expect(row.locator(".badge")).to_have_text("1 unread")
    expect(page).to_have_title("(1) Inbox · sms-inbox")
    assert_same_page(page)


def test_a_hidden_tab_polls_slowly_notifies_if_asked_and_polls_at_once_when_shown_again(new_context, server):
    context = new_context(permissions=["notifications"])
    context.add_init_script(RECORD_NOTIFICATIONS)
    page = context.new_page()
    page.clock.install()  # the page's timers run when the test moves its clock, not by waiting
    log_in(page, server)
    notify = page.get_by_role("button", name="Desktop alerts")
    expect(notify).to_have_attribute("aria-pressed", "false")
    notify.click()  # asked only now, after a click
    expect(notify).to_have_attribute("aria-pressed", "true")
    polls = []
    page.on("request", lambda request: "since=" in request.url and polls.append(request.url))
    with page.expect_request(lambda request: "since=" in request.url):
        page.clock.run_for(POLL_SECONDS * 1000 + 100)  # the open inbox polls

    set_tab_hidden(page, True)
    page.wait_for_load_state("networkidle")  # the poll in flight has finished
    polls.clear()
    deliver(server, sender="+37255512345", text="arrived while hidden")
    page.clock.run_for(3 * POLL_SECONDS * 1000 + 500)  # three intervals pass: no poll yet
    page.wait_for_load_state("networkidle")
    assert polls == [], "a hidden tab waits for its slow interval"
    expect(row_for(page, "+37255512345")).to_have_count(0)
    # Its slow interval (30 s) brings the news, so the title's count and a notification keep up.
    page.clock.run_for(HIDDEN_POLL_SECONDS * 1000)
    expect(row_for(page, "+37255512345")).to_be_visible(timeout=LIVE)
    expect(page).to_have_title("(1) Inbox · sms-inbox")
    assert len(polls) == 1
    assert page.evaluate("window.__notifications") == ["1 new message"]

    deliver(server, sender="+37256600001", text="arrived while hidden, again")
    set_tab_hidden(page, False)  # shown again: one poll at once, not after the next interval
    expect(row_for(page, "+37256600001")).to_be_visible(timeout=2000)


def test_search_narrows_as_you_type_and_works_as_a_plain_form(page, server, new_context):
    for sender in ("+37255512345", "+37256600001", "+4915112345678"):
        deliver(server, sender=sender, text=f"from {sender}")
    log_in(page, server)
    expect(conversation_rows(page)).to_have_count(3)
    mark_page(page)

    page.get_by_label("Search by sender").press_sequentially("372 555", delay=40)
    expect(conversation_rows(page)).to_have_count(1)
    expect(row_for(page, "+37255512345")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/\?q=372(\+|%20)555$"))
    assert_same_page(page)

    page.get_by_label("Search by sender").fill("")
    expect(conversation_rows(page)).to_have_count(3)

    # The same search with JavaScript off: the form submits and the server filters.
    no_script = new_context(java_script_enabled=False, storage_state=page.context.storage_state())
    plain = no_script.new_page()
    plain.goto(server.url + "/")
    expect(conversation_rows(plain)).to_have_count(3)
    plain.get_by_label("Search by sender").fill("(555) 12")
    plain.get_by_role("button", name="Search").click()
    expect(plain).to_have_url(re.compile(r"/\?q=%28555%29(\+|%20)12$"))
    expect(conversation_rows(plain)).to_have_count(1)
    expect(row_for(plain, "+37255512345")).to_be_visible()
    expect(plain.get_by_label("Search by sender")).to_have_value("(555) 12")


def test_thread_is_oldest_first_clears_its_badge_and_updates_live(page, server, backend):
    sender = "+37255512345"
    for hour, text in ((8, "first"), (9, "second"), (10, "third")):
        deliver(server, sender=sender, text=text, time=f"2024-06-01T{hour:02}:00:00.000000Z")
    deliver(server, sender="+37256600001", text="Kas saame homme kokku?", time="2024-06-01T10:20:00Z")
    deliver(
        server, sender="+4915112345678", channel="whatsapp", text="Hallo aus Berlin 👋", time="2024-06-01T10:45:00Z"
    )
    log_in(page, server)
    expect(page).to_have_title("(3) Inbox · sms-inbox")
    expect(row_for(page, sender).locator(".badge")).to_have_text("3 unread")
    screenshot(page, f"inbox-{backend}.png")

    open_row(page, sender)
    messages = page.locator("#messages .message")
    expect(messages.locator(".text")).to_have_text(["first", "second", "third"])
    expect(page.get_by_text("3 messages", exact=True)).to_be_visible()
    # Times in the browser's zone, when each arrived; the exact UTC moment and the provider's
    # own time in the tooltip.
    first_time = messages.first.locator("time")
    expect(first_time).to_have_text(re.compile(r"^\d\d:\d\d$"))
    expect(first_time).to_have_attribute(
        "title",
        re.compile(
            r"^Arrived \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC; sent 2024-06-01 08:00:00 UTC by the provider's clock$"
        ),
    )

    mark_page(page)
    deliver(server, sender=sender, text="fourth, while the thread is open", time="2024-06-01T11:00:00Z")
    expect(messages.locator(".text")).to_have_text(
        ["first", "second", "third", "fourth, while the thread is open"], timeout=LIVE
    )
    expect(page.get_by_text("4 messages", exact=True)).to_be_visible()
    assert_same_page(page)
    screenshot(page, f"thread-{backend}.png")

    page.keyboard.press("Escape")  # back to the list (a phone's back link does the same)
    expect(page.locator("#conversation-pane")).not_to_have_attribute("data-conversation", re.compile("."))
    expect(page).to_have_title("(2) Inbox · sms-inbox")
    expect(row_for(page, sender)).not_to_have_class(re.compile(r"\bunread\b"))
    expect(row_for(page, sender).locator(".badge")).to_have_count(0)
    expect(row_for(page, "+37256600001").locator(".badge")).to_have_text("1 unread")


def test_export_downloads_a_csv_of_the_delivered_messages(page, server):
    sent = [
        deliver(server, sender="+37255512345", text="Tere, kuidas läheb? 🙂", time="2024-06-01T08:00:00.000000Z"),
        deliver(
            server,
            sender="+37256600001",
            channel="viber",
            text='Comma, "quotes"\nand a new line',
            time="2024-06-02T09:30:00.000000Z",
        ),
    ]
    log_in(page, server)

    download = export_csv(page)
    assert re.fullmatch(r"sms-inbox-\d{4}-\d{2}-\d{2}\.csv", download.suggested_filename)
    data = Path(download.path()).read_bytes()

    assert data.startswith(b"\xef\xbb\xbf")  # UTF-8's byte-order mark, for Excel
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert rows[0] == CSV_HEADER
    assert [row[:7] for row in rows[1:]] == [
        [m["time"], m["sender"], m["recipient"], m["channel"], m["text"], m["msg_id"], m["sub_msg_id"]] for m in sent
    ]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", row[7]) for row in rows[1:])

    # "These" conversations: after a search typed into the box, only the ones it found.
    page.goto(server.url + "/")
    page.get_by_label("Search by sender").press_sequentially("566", delay=40)
    expect(conversation_rows(page)).to_have_count(1)
    rows = download_rows(page)
    assert [row[1] for row in rows[1:]] == ["+37256600001"]


def test_html_in_a_message_is_shown_as_text_and_runs_nothing(page, server, page_watch):
    image = '<img src=x onerror="window.__pwned=1">'
    script = "<script>window.__pwned=1</script>"
    deliver(server, sender="+37255512345", text=image)
    log_in(page, server)
    mark_page(page)
    # The second arrives through an htmx swap, the path a page load doesn't take.
    deliver(server, sender="+37256600001", text=script)
    expect(row_for(page, "+37256600001")).to_be_visible(timeout=LIVE)

    expect(row_for(page, "+37255512345").locator(".preview")).to_have_text(image)
    expect(row_for(page, "+37256600001").locator(".preview")).to_have_text(script)
    assert page.locator("#conversations img, #conversations script").count() == 0
    assert page.evaluate("window.__pwned") is None
    assert_same_page(page)

    open_row(page, "+37255512345")
    expect(page.locator("#messages .text")).to_have_text([image])
    assert page.locator("#messages img").count() == 0
    assert page.evaluate("window.__pwned") is None

    # Defence in depth: a script that did get into the page is refused by the CSP, and the
    # watch every test relies on reports it (so it can fail).
    with page.expect_console_message(lambda message: "Content Security Policy" in message.text):
        page.evaluate("""() => {
            const script = document.createElement("script");
            script.textContent = "window.__pwned = 1";
            document.body.append(script);
        }""")
    assert page.evaluate("window.__pwned") is None
    assert any("Content Security Policy" in problem for problem in page_watch.problems), page_watch.problems
    page_watch.problems.clear()  # expected here; any other problem still fails this test


def test_a_control_answers_a_click_the_moment_it_is_swapped_in(page, server):
    deliver(server, sender="+37255512345", text="Tere!")
    page.clock.install()
    log_in(page, server)
    open_row(page, "+37255512345")
    expect(page.get_by_role("button", name="Mark unread")).to_be_visible()  # shown means read
    mark_page(page)
    # With the page's clock stopped, no timer runs between a swap and the next click: the new
    # control must work as it lands, or the click submits the form without htmx and reloads.
    page.clock.pause_at(datetime.now() + timedelta(seconds=1))
    page.get_by_role("button", name="Mark unread").click()
    page.get_by_role("button", name="Mark read").click()
    page.get_by_role("button", name="Mark unread").click()
    expect(page.get_by_role("button", name="Mark read")).to_be_visible()
    assert_same_page(page)


def test_a_conversation_marked_unread_in_one_session_shows_in_another_within_a_poll(page, server, new_context, backend):
    sender = "+37255512345"
    deliver(server, sender=sender, text="Tere! Kas tellimus on teel?")
    deliver(server, sender="+37256600001", text="Aitäh!")
    log_in(page, server)  # the first person watches the list
    mark_page(page)

    colleague = new_context().new_page()
    colleague.clock.install()  # its clock runs, and the test moves it on to bring a poll at once
    log_in(colleague, server)
    open_row(colleague, sender)
    # Shown means read: the thread marks itself read by a POST, and the list follows.
    expect(colleague.get_by_role("button", name="Mark unread")).to_be_visible()
    expect(row_for(page, sender).locator(".badge")).to_have_count(0, timeout=LIVE)
    for width, height in ((1280, 800), (390, 844)):
        colleague.set_viewport_size({"width": width, "height": height})
        screenshot(colleague, f"thread-read-{width}x{height}-{backend}.png")
    colleague.set_viewport_size(DESKTOP)  # where Mark unread sits beside Mark done (a phone has it under More)

    colleague.get_by_role("button", name="Mark unread").click()
    expect(colleague.get_by_role("button", name="Mark read")).to_be_visible()
    # No new message, only a change: the other session's poll brings it.
    expect(row_for(page, sender).locator(".badge")).to_have_text("1 unread", timeout=LIVE)
    expect(page).to_have_title("(2) Inbox · sms-inbox")
    assert_same_page(page)
    # And it stays unread in the colleague's open thread: polls do not mark it read again.
    with colleague.expect_response(lambda response: "since=" in response.url):
        colleague.clock.run_for(POLL_SECONDS * 1000 + 100)
    colleague.wait_for_load_state("networkidle")
    expect(colleague.get_by_role("button", name="Mark read")).to_be_visible()
    for width, height in ((1280, 800), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        screenshot(page, f"inbox-marked-unread-{width}x{height}-{backend}.png")


def test_a_poll_leaves_alone_the_header_buttons_whose_state_did_not_change(page, server, new_context):
    sender = "+37255512345"
    deliver(server, sender=sender, text="Tere!")
    page.clock.install()
    log_in(page, server)
    open_row(page, sender)
    expect(page.get_by_role("button", name="Mark unread")).to_be_visible()  # shown means read
    page.evaluate("window.heldButton = document.getElementById('read-state-button')")

    colleague = new_context().new_page()
    log_in(colleague, server)
    open_row(colleague, sender)
    colleague.get_by_role("button", name="Mark done").click()
    expect(colleague.get_by_role("button", name="Reopen")).to_be_visible()

    page.clock.run_for(POLL_SECONDS * 1000 + 100)
    expect(page.get_by_role("button", name="Reopen")).to_be_visible()  # the poll brought the change
    # ... and left the read button the element it was: a click landing as the poll did is kept.
    assert page.evaluate("document.getElementById('read-state-button') === window.heldButton")


def test_a_click_in_progress_lands_though_a_poll_brings_news_meanwhile(page, server):
    deliver(server, sender="+37255512345", text="Tere!")
    page.clock.install()
    log_in(page, server)
    page.evaluate("""() => document.addEventListener("htmx:beforeSwap", event => {
        if (event.detail.requestConfig.elt.hasAttribute("data-poll") && event.detail.shouldSwap)
            document.body.dataset.pollAnswers = Number(document.body.dataset.pollAnswers || 0) + 1;
    })""")
    link = row_for(page, "+37255512345").locator("a.sender").bounding_box()
    page.mouse.move(link["x"] + link["width"] / 2, link["y"] + link["height"] / 2)
    page.mouse.down()  # a click's press ...
    deliver(server, sender="+37256600001", text="Uus sõnum")
    page.clock.run_for(POLL_SECONDS * 1000 + 100)  # ... as the list's poll brings a new row
    expect(page.locator("body")).to_have_attribute("data-poll-answers", "1")
    page.mouse.up()  # ... and its release: the click lands on the row pressed
    expect(page.locator("#conversation-pane")).to_have_attribute(
        "data-conversation", row_for(page, "+37255512345").locator("a.sender").get_attribute("id").rsplit("-", 1)[1]
    )
    page.clock.run_for(POLL_SECONDS * 1000 + 100)  # the news comes with the next poll
    expect(row_for(page, "+37256600001")).to_be_visible()


# --- replies --------------------------------------------------------------------------------

CUSTOMER = "+37255512345"
OUR_NUMBER = "+37250000000"  # the number the customer wrote to: SMS replies go from it
API_PASSWORD = "api-password"  # the fake's; it also signs delivery reports
SMS_VECTORS = json.loads((Path(__file__).parent / "vectors" / "sms-length.json").read_text())["cases"]


@pytest.fixture
def messente_env(request, messente) -> dict:
    """The server's environment for sending through the fake Messente (see the `server` fixture);
    a test parametrizes it (indirect) to add settings of its own."""
    return {**messente_defaults(messente), **getattr(request, "param", {})}


def messente_defaults(messente) -> dict:
    return {
        "MESSENTE_API_URL": messente.url,
        "MESSENTE_API_USERNAME": "api-user",
        "MESSENTE_API_PASSWORD": API_PASSWORD,
        "MESSENTE_CONNECT_TIMEOUT": "2",
        "MESSENTE_READ_TIMEOUT": "2",
        "PUBLIC_URL": "https://inbox.example.com",
        # Empty is unset: replies go from the number the customer wrote to, whatever the shell has.
        "MESSENTE_SMS_SENDER": "",
        "MESSENTE_VIBER_SENDER": "",
        "MESSENTE_WHATSAPP_SENDER": "",
    }


def deliver_report(server, **fields) -> dict:
    """POST a delivery report as Messente does, signed with the API key's password; its answer."""
    report = {
        "status": "DELIVRD",
        "err": 0,
        "omnimessage_id": None,
        "message_id": None,
        "to": CUSTOMER,
        "channel": "sms",
        "sender": OUR_NUMBER,
        "timestamp": "2024-06-01T08:09:42.389630",
        "price_info": None,
        "error": None,
        **fields,
    }
    body = json.dumps(report).encode()
    request = urllib.request.Request(
        server.url + "/callbacks/delivery", data=body, headers=signed_headers(body, API_PASSWORD), method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def open_thread(page, server, sender: str = CUSTOMER):
    log_in(page, server)
    open_row(page, sender)


def screenshots(page, name: str, backend: str):
    """The page at a desktop and a phone size; the desktop size again afterwards."""
    for width, height in ((1280, 800), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        screenshot(page, f"{name}-{width}x{height}-{backend}.png")
    page.set_viewport_size({"width": 1280, "height": 800})


def test_a_reply_typed_in_the_browser_is_sent_once_and_its_delivery_report_shows_live(
    messente_env, messente, page, server, backend
):
    deliver(
        server,
        sender=CUSTOMER,
        recipient=OUR_NUMBER,
        text="Tere! Kas mu tellimus on juba teel?",
        time="2024-06-01T08:00:00.000000Z",
    )
    open_thread(page, server)
    mark_page(page)

    box = page.locator("#reply-text")
    counter = page.locator("#reply-length")
    box.press_sequentially("Tere!")
    expect(counter).to_have_text("5 characters · 1 SMS (GSM-7)")
    box.press_sequentially(" 👋")  # one emoji and the whole text goes as UCS-2
    expect(counter).to_have_text("7 characters · 1 SMS (UCS-2)")
    box.press("Enter")  # a new line, not a send
    box.press_sequentially("Jah, homme on kohal.")
    expect(box).to_have_value("Tere! 👋\nJah, homme on kohal.")
    expect(page.locator("#messages .message")).to_have_count(1)

    box.press("Control+Enter")
    reply = page.locator("#messages .message.out")
    expect(reply).to_have_count(1, timeout=LIVE)
    expect(reply.locator(".text")).to_have_text("Tere! 👋\nJah, homme on kohal.")
    expect(reply.locator(".author")).to_have_text("alice")
    expect(reply.locator(".status")).to_have_text("Sent", timeout=LIVE)
    expect(page.locator("#reply-text")).to_have_value("")  # a fresh box for the next one
    assert_same_page(page)
    # Ours on the right, the customer's on the left.
    theirs = page.locator("#messages .message.in").bounding_box()
    ours = reply.bounding_box()
    assert ours["x"] > theirs["x"] and ours["x"] + ours["width"] > theirs["x"] + theirs["width"]

    [request] = messente.requests
    assert (request.method, request.path, request.basic_auth) == ("POST", "/v1/omnimessage", ("api-user", API_PASSWORD))
    assert request.json == {
        "to": CUSTOMER,
        "messages": [
            {"channel": "sms", "text": "Tere! 👋\nJah, homme on kohal.", "sender": OUR_NUMBER, "autoconvert": "off"}
        ],
        "dlr_url": "https://inbox.example.com/callbacks/delivery",
    }

    [leg] = request.answer["messages"]
    answer = deliver_report(server, omnimessage_id=request.answer["omnimessage_id"], message_id=leg["message_id"])
    assert answer == {"status": "applied"}
    expect(reply.locator(".status")).to_have_text("Delivered", timeout=LIVE)
    assert_same_page(page)
    screenshots(page, "thread-replies", backend)

    deliver(server, sender=CUSTOMER, recipient=OUR_NUMBER, text="STOP", time="2024-06-01T08:20:00.000000Z")
    expect(page.locator("#composer .cannot-reply")).to_have_text(
        "This customer opted out: nothing can be sent to them until they write START or someone opts them back in.",
        timeout=LIVE,
    )
    expect(page.locator("#reply-text")).to_have_count(0)
    expect(page.locator("#opt-out-button")).to_have_text("Opt back in")  # in the header's More menu
    expect(page.locator("#messages .message .text")).to_have_text(
        ["Tere! Kas mu tellimus on juba teel?", "Tere! 👋\nJah, homme on kohal.", "STOP"]
    )
    assert_same_page(page)
    assert len(messente.requests) == 1
    screenshots(page, "thread-opted-out", backend)


def test_a_reply_box_a_script_has_sized_is_swapped_without_an_inline_style_the_policy_refuses(
    messente_env, messente, page, server
):
    """Where CSS cannot grow the reply box, composer.js sets its height: an inline style that htmx
    must not copy onto the fresh box it swaps in (the page watch fails the test on any CSP report)."""
    deliver(server, sender=CUSTOMER, recipient=OUR_NUMBER, text="Tere!", time="2024-06-01T08:00:00.000000Z")
    open_thread(page, server)
    mark_page(page)
    box = page.locator("#reply-text")
    box.evaluate("box => { box.style.height = '80px' }")  # as composer.js's grow() does
    box.fill("Tere, aitäh!")
    box.press("Control+Enter")
    expect(page.locator("#messages .message.out .status")).to_have_text("Sent", timeout=LIVE)
    expect(page.locator("#reply-text")).to_have_value("")
    expect(page.locator("#reply-text")).not_to_have_attribute("style", re.compile("."))
    assert_same_page(page)


def test_a_refused_reply_says_why_in_the_apis_words_and_retry_sends_it(messente_env, messente, page, server, backend):
    deliver(
        server, sender=CUSTOMER, recipient=OUR_NUMBER, text="Palun saatke arve.", time="2024-06-01T08:00:00.000000Z"
    )
    open_thread(page, server)
    mark_page(page)
    messente.behave("400", times=1)

    page.locator("#reply-text").fill("Arve on teel, aitäh!")
    page.get_by_role("button", name="Send", exact=True).click()
    reply = page.locator("#messages .message.out")
    expect(reply.locator(".status")).to_have_text(
        "Not sent: Invalid data: Invalid phone number (payload[to])", timeout=LIVE
    )
    expect(reply).to_have_class(re.compile(r"\btrouble\b"))
    retry = reply.get_by_role("button", name="Retry")
    expect(retry).to_be_visible()
    screenshots(page, "thread-reply-failed", backend)

    retry.click()
    expect(reply.locator(".status")).to_have_text("Sent", timeout=LIVE)
    expect(reply.get_by_role("button")).to_have_count(0)
    expect(reply).not_to_have_class(re.compile(r"\btrouble\b"))
    expect(page.locator("#messages .message.out")).to_have_count(1)
    assert_same_page(page)
    first, second = messente.requests
    assert (first.status, second.status) == (400, 201)
    assert first.json == second.json and second.json["messages"][0]["text"] == "Arve on teel, aitäh!"


def test_the_browser_counts_sms_parts_like_the_server(page, server):
    page.goto(server.url + "/login")  # every page has static/js/sms-length.js
    counted = page.evaluate(
        "texts => texts.map(text => window.smsLength(text))", [case["text"] for case in SMS_VECTORS]
    )
    assert {case["name"]: got for case, got in zip(SMS_VECTORS, counted, strict=True)} == {
        case["name"]: {key: case[key] for key in ("encoding", "units", "parts")} for case in SMS_VECTORS
    }


# --- an inbox people would choose (issue 11) ---------------------------------------------------


# Every screen's fit at both sizes, in both schemes, with axe-core: tests/test_accessibility.py.


def test_focus_stays_on_the_focused_row_across_a_poll_and_new_messages_are_announced(page, server):
    for n in range(4):
        deliver(server, sender=f"+3725551000{n}", text=f"message {n}")
    log_in(page, server)
    mark_page(page)
    third = conversation_rows(page).nth(2).locator("a.sender")
    third.focus()
    focused_id = page.evaluate("document.activeElement.id")
    assert focused_id.startswith("conversation-link-")

    deliver(server, sender="+37255519999", text="a new conversation")
    deliver(server, sender="+37255510000", text="and another message")
    expect(row_for(page, "+37255519999")).to_be_visible(timeout=LIVE)
    expect(page.locator("#announcer")).to_have_text("2 new messages")
    expect(page.locator("#announcer")).to_have_attribute("aria-live", "polite")
    assert page.evaluate("document.activeElement.id") == focused_id
    assert page.evaluate("document.activeElement.closest('li').dataset.sender") == "+37255510001"
    assert_same_page(page)


def test_the_skip_link_when_focused_takes_its_own_line_above_the_brand(page, server):
    log_in(page, server)
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    skip_box, brand_box = skip.bounding_box(), page.locator(".brand").bounding_box()
    assert skip_box["y"] + skip_box["height"] <= brand_box["y"]
    page.keyboard.press("Enter")
    assert page.evaluate("location.hash") == "#main"


def test_on_a_phone_new_messages_are_announced_while_a_conversation_is_open(new_context, server):
    """The list is hidden behind the open conversation there; its announcements are not."""
    page = new_context(viewport={"width": 390, "height": 844}).new_page()
    deliver(server, sender="+37255510000", text="the one being read")
    log_in(page, server)
    open_row(page, "+37255510000")
    expect(page.locator(".list-pane")).to_be_hidden()

    deliver(server, sender="+37255519999", text="meanwhile, elsewhere")
    expect(page.locator("#announcer")).to_have_text("1 new message", timeout=LIVE)
    assert page.evaluate("""() => {
        for (let node = document.getElementById("announcer"); node; node = node.parentElement)
            if (getComputedStyle(node).display === "none") return false;
        return true;
    }""")


def test_a_thread_opens_at_its_newest_message_and_new_ones_wait_behind_a_pill_when_scrolled_up(page, server):
    sender = "+37255512345"
    for n in range(60):
        deliver(server, sender=sender, text=f"message {n}\nwith a second line", time=f"2024-06-01T08:{n:02}:00Z")
    open_thread(page, server, sender)
    messages = page.locator("#messages .message")
    expect(messages.last).to_be_in_viewport()
    expect(messages.first).not_to_be_in_viewport()
    mark_page(page)

    # At the bottom: a new message scrolls into view.
    deliver(server, sender=sender, text="while reading the newest", time="2024-06-01T09:01:00Z")
    expect(messages.last.locator(".text")).to_have_text("while reading the newest", timeout=LIVE)
    expect(messages.last).to_be_in_viewport()
    expect(page.locator("#new-messages")).to_be_hidden()

    # Scrolled up: no jump, a pill instead; it takes the reader down.
    page.evaluate("document.getElementById('thread-scroll').scrollTop = 0")
    deliver(server, sender=sender, text="while reading older ones", time="2024-06-01T09:02:00Z")
    pill = page.get_by_role("button", name="New messages ↓")
    expect(pill).to_be_visible(timeout=LIVE)
    expect(messages.last.locator(".text")).to_have_text("while reading older ones")
    assert page.evaluate("document.getElementById('thread-scroll').scrollTop") == 0
    expect(messages.last).not_to_be_in_viewport()
    screenshot(page, "thread-new-messages-pill.png")
    pill.click()
    expect(messages.last).to_be_in_viewport()
    expect(pill).to_be_hidden()
    assert_same_page(page)


def arrive(app, at: datetime, **fields) -> None:
    """Store an inbound message as the callback does, as if it arrived at `at` (UTC)."""
    with app.app_context():
        ingest.store_messages([ingest.parse_payload(body_for(**fields))], received_at=at.replace(tzinfo=None))


def test_times_today_are_short_and_other_days_have_their_date(app, page, server):
    now = datetime.now(UTC)
    arrive(app, now, sender="+37255512345", text="today")
    arrive(app, datetime(2024, 6, 1, 8, tzinfo=UTC), sender="+37256600001", text="long ago")
    log_in(page, server)
    expect(row_for(page, "+37255512345").locator("time")).to_have_text(re.compile(r"^\d\d:\d\d$"))
    expect(row_for(page, "+37256600001").locator("time")).to_have_text("1 Jun 2024")
    open_row(page, "+37256600001")
    expect(page.locator("#messages time")).to_have_text("11:00")  # Tallinn's summer time
    expect(page.locator("#messages .day")).to_have_text([re.compile(r"^Saturday,? 1 June 2024$")])


def test_a_thread_reads_like_a_chat_with_day_separators_and_the_channel_where_it_changes(app, page, server):
    now = datetime.now(UTC)
    sender = "+37255512345"
    arrive(app, datetime(2024, 6, 1, 8, tzinfo=UTC), sender=sender, text="long ago")
    arrive(app, datetime(2024, 6, 1, 8, 5, tzinfo=UTC), sender=sender, text="long ago, again")
    arrive(app, now - timedelta(days=1), sender=sender, text="yesterday")
    arrive(app, now - timedelta(minutes=2), sender=sender, text="today by sms")
    arrive(app, now - timedelta(minutes=1), sender=sender, channel="whatsapp", text="today by whatsapp")
    open_thread(page, server, sender)
    days = page.locator("#messages .day")
    expect(days).to_have_count(3)
    expect(days.nth(0)).to_have_text(re.compile(r"^Saturday,? 1 June 2024$"))
    expect(days.nth(2)).to_have_text("Today")
    routes = page.locator("#messages .message .route")
    # The first of each day, and the one that came by another channel, say how it came.
    assert [route.is_visible() for route in routes.all()] == [True, False, True, True, True]
    expect(page.locator("#messages .message").last.locator("time")).to_have_text(re.compile(r"^\d\d:\d\d$"))
    read_state = page.locator("#read-state button")
    expect(read_state).to_have_text("Mark unread")  # shown means read
    read_state.focus()
    deliver(server, sender=sender, channel="whatsapp", text="and again")
    expect(page.locator("#messages .message")).to_have_count(6, timeout=LIVE)
    # The poll swapped the read control (and the new message marked itself read): focus stayed.
    expect(read_state).to_have_text("Mark unread")
    expect(read_state).to_be_focused()
    expect(days).to_have_count(3)
    assert not routes.last.is_visible()


def test_searching_replaces_the_history_entry_instead_of_adding_one_per_keystroke(page, server):
    deliver(server, sender="+37255512345")
    log_in(page, server)
    before = page.evaluate("history.length")
    page.get_by_label("Search by sender").press_sequentially("372 5", delay=300)
    expect(page).to_have_url(re.compile(r"/\?q=372(\+|%20)5$"))
    assert page.evaluate("history.length") == before


# --- two panes, paging, keyboard, drafts ---------------------------------------------------------

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the browser's part


def arrive_many(app, at: datetime, payloads: list[dict]) -> None:
    """Store many inbound messages at once, as one callback batch does."""
    with app.app_context():
        ingest.store_messages(
            [ingest.parse_payload(body_for(**fields)) for fields in payloads], received_at=at.replace(tzinfo=None)
        )


@SQLITE_ONLY
def test_two_panes_open_a_conversation_beside_the_list_and_a_phone_shows_one_at_a_time(app, page, server):
    now = datetime.now(UTC)
    arrive_many(
        app,
        now,
        [
            {"sender": "+37255512345", "text": "Tere!"},
            {"sender": "+37256600001", "text": "Hei"},
            {"sender": "+4915112345678", "text": "Hallo"},
        ],
    )
    log_in(page, server)
    page.goto(server.url + "/?q=372")
    expect(conversation_rows(page)).to_have_count(2)
    mark_page(page)
    open_row(page, "+37255512345")
    # Beside the list, without a reload; the URL is the conversation's and keeps the search.
    expect(page).to_have_url(re.compile(r"/conversations/\d+\?q=372$"))
    expect(conversation_rows(page)).to_have_count(2)
    assert page.locator(".list-pane").is_visible()
    expect(row_for(page, "+37255512345").locator("a.sender")).to_have_attribute("aria-current", "page")
    expect(page.locator("#messages .text")).to_have_text(["Tere!"])
    assert_same_page(page)
    url = page.url

    open_row(page, "+37256600001")  # another one replaces it in the pane
    expect(page.locator("#messages .text")).to_have_text(["Hei"])
    expect(row_for(page, "+37255512345").locator("a.sender")).not_to_have_attribute("aria-current", "page")
    page.go_back()  # the back button brings the previous conversation, list and search included
    expect(page).to_have_url(url)
    expect(page.locator("#messages .text")).to_have_text(["Tere!"])
    expect(conversation_rows(page)).to_have_count(2)

    page.reload()  # a full load of the URL draws both panes
    expect(page.locator("#messages .text")).to_have_text(["Tere!"])
    expect(conversation_rows(page)).to_have_count(2)
    expect(page.get_by_label("Search by sender")).to_have_value("372")
    # A search typed beside it keeps it open, in the URL too.
    page.get_by_label(re.compile("^Search by sender")).fill("3725551")
    expect(conversation_rows(page)).to_have_count(1)
    expect(page).to_have_url(re.compile(r"/conversations/\d+\?q=3725551$"))
    expect(page.locator("#messages .text")).to_have_text(["Tere!"])
    page.get_by_label(re.compile("^Search by sender")).fill("372")
    expect(conversation_rows(page)).to_have_count(2)
    # A poll that brings a new conversation keeps the open one's name in the title.
    deliver(server, sender="+37255599999", text="new")
    expect(conversation_rows(page)).to_have_count(3, timeout=LIVE)
    expect(page).to_have_title(re.compile(r"^\u2068\+372[ 0-9]+\u2069 · \(\d\) Inbox · sms-inbox$"))

    # A phone: the conversation alone, with a way back to the (searched) list.
    page.set_viewport_size(PHONE)
    assert not page.locator(".list-pane").is_visible()
    page.get_by_role("link", name="All conversations").click()
    expect(page).to_have_url(re.compile(r"/\?q=372$"))
    expect(conversation_rows(page)).to_have_count(3)
    assert not page.locator("#conversation-pane").is_visible()
    # Focus goes back to the row of the conversation that was open.
    assert page.evaluate("document.activeElement.closest('li').dataset.sender") == "+37255512345"
    open_row(page, "+37256600001")
    assert not page.locator(".list-pane").is_visible()
    expect(page.locator("#conversation-heading")).to_be_focused()


@SQLITE_ONLY
def test_paging_goes_both_ways_in_the_list_and_in_a_thread_and_a_thread_opens_around_a_message(app, page, server):
    now = datetime.now(UTC)
    arrive_many(
        app, now - timedelta(hours=1), [{"sender": f"+3725551{n:04}", "text": f"conversation {n}"} for n in range(55)]
    )
    sender = "+37255519999"
    arrive_many(app, now, [{"sender": sender, "text": f"message {n}"} for n in range(200)])
    log_in(page, server)

    # The list: older, newer, and back to the first page, which is live again.
    first = [row.get_attribute("data-sender") for row in conversation_rows(page).all()]
    assert len(first) == 50 and first[0] == sender
    page.get_by_role("link", name="Older conversations").click()
    expect(conversation_rows(page)).to_have_count(6)
    expect(page.locator("#conversations[data-poll]")).to_have_count(0)  # an older page stands still
    page.get_by_role("link", name="Newer", exact=True).click()
    expect(conversation_rows(page)).to_have_count(50)
    assert [row.get_attribute("data-sender") for row in conversation_rows(page).all()] == first
    expect(page.locator("#conversations[data-poll]")).to_have_count(1)
    page.get_by_role("link", name="Older conversations").click()
    page.get_by_role("link", name="Back to latest").click()
    expect(page.locator("#conversations[data-poll]")).to_have_count(1)

    # A thread of 200: its latest 100 at their newest; earlier, newer, and back to latest.
    open_row(page, sender)
    texts = page.locator("#messages .message .text")
    expect(texts).to_have_count(100)
    expect(texts.last).to_have_text("message 199")
    expect(page.locator("#messages .message").last).to_be_in_viewport()
    # Earlier messages load above without moving what the reader sees; the thread stays live.
    page.evaluate("document.getElementById('thread-scroll').scrollTop = 0")
    reading = page.locator("#messages .message").first.get_attribute("id")  # message 100
    page.get_by_role("link", name="Earlier messages").click()
    expect(texts).to_have_count(200)
    expect(texts.first).to_have_text("message 0")
    expect(page.locator("#" + reading)).to_be_in_viewport()
    assert page.evaluate("document.getElementById('thread-scroll').scrollTop") > 0
    expect(page.get_by_role("link", name="Earlier messages")).to_have_count(0)  # that was the first
    expect(page.locator("#thread-poller")).to_have_count(1)
    expect(page.locator("#messages .day")).to_have_count(1)  # one separator, not one per load

    # Around one message (a search hit's link): it is in view and marked, with paging both ways.
    target = page.locator("#messages .message").nth(120).get_attribute("id")
    around = target.split("-")[1]
    page.goto(page.url.split("?")[0] + f"?around={around}")
    expect(page.locator(f"#{target}")).to_be_in_viewport()
    expect(page.locator(f"#{target}")).to_have_class(re.compile(r"\btarget\b"))
    expect(texts.first).to_have_text("message 71")  # 50 up to it, 50 after it
    expect(texts.last).to_have_text("message 170")
    expect(page.locator("#thread-poller")).to_have_count(0)  # a page in the middle stands still
    reading = page.locator("#messages .message").first.get_attribute("id")  # message 71
    page.get_by_role("link", name="Earlier messages").click()
    expect(texts.first).to_have_text("message 0")
    expect(page.locator("#" + reading)).to_be_in_viewport()
    expect(page.locator(".htmx-request, .htmx-settling, .htmx-swapping")).to_have_count(0)
    asked = []  # what the page asks for and its answers, listed if the newer page never comes
    page.on("request", lambda request: asked.append(f"sent {request.method} {request.url}"))
    page.on(
        "requestfinished", lambda request: asked.append(f"{request.method} {request.url} {request.response().status}")
    )
    page.on("requestfailed", lambda request: asked.append(f"{request.method} {request.url} {request.failure}"))
    # Enter, as a keyboard user pages. A mouse click here sent no request at all in some loaded
    # whole-suite runs (never alone or under load alone); the cause is not found.
    page.get_by_role("link", name="Newer messages").press("Enter")  # the rest, the newest page
    try:
        expect(page).to_have_url(re.compile(r"/conversations/\d+\?after=\d+$"))
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nrequests after the click: {asked}") from None
    expect(texts.first).to_have_text("message 100")
    expect(texts.last).to_have_text("message 199")
    expect(page.locator("#thread-poller")).to_have_count(1)  # live again
    expect(page.locator("#messages .message").last).to_be_in_viewport()
    page.go_back()
    page.get_by_role("link", name="Back to latest").click()
    expect(texts.last).to_have_text("message 199")
    expect(page.locator("#messages .message").last).to_be_in_viewport()
    screenshot(page, "thread-200-after-paging.png")


@SQLITE_ONLY
def test_keyboard_shortcuts_work_never_while_typing_and_can_be_turned_off(app, page, server):
    arrive_many(app, datetime.now(UTC), [{"sender": f"+3725551000{n}", "text": f"message {n}"} for n in range(3)])
    log_in(page, server)
    senders = [row.get_attribute("data-sender") for row in conversation_rows(page).all()]

    def focused():
        return page.evaluate(
            "document.activeElement.closest('li') && document.activeElement.closest('li').dataset.sender"
        )

    page.keyboard.press("j")
    assert focused() == senders[0]
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("k")
    assert focused() == senders[1]
    page.keyboard.press("Enter")
    expect(page.locator("#conversation-pane")).to_have_attribute("data-conversation", re.compile(r"\d+"))
    expect(page.locator("#messages .text")).to_have_text(["message 1"])
    page.keyboard.press("j")  # from the open conversation's row
    assert focused() == senders[2]

    page.keyboard.press("Escape")  # back to the list; focus stays where it was
    expect(page.locator("#conversation-pane")).not_to_have_attribute("data-conversation", re.compile("."))
    assert focused() == senders[2]
    page.keyboard.press("/")  # typing: the search box keeps its keys
    expect(page.get_by_label("Search by sender")).to_be_focused()
    page.keyboard.type("j/k?")
    expect(page.get_by_label("Search by sender")).to_have_value("j/k?")
    expect(page.locator("#keyboard-help")).not_to_be_visible()
    page.get_by_label("Search by sender").fill("")
    page.evaluate("document.activeElement.blur()")

    # `?` lists them; the switch turns single keys off, and that is remembered.
    page.keyboard.press("?")
    help_dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(help_dialog).to_be_visible()
    screenshot(page, "keyboard-help.png")
    help_dialog.get_by_label(re.compile("Single-key shortcuts")).uncheck()
    help_dialog.get_by_role("button", name="Close").click()
    expect(help_dialog).not_to_be_visible()
    page.reload()
    page.keyboard.press("j")
    page.keyboard.press("/")
    page.keyboard.press("?")
    assert focused() is None
    expect(page.get_by_label("Search by sender")).not_to_be_focused()
    expect(help_dialog).not_to_be_visible()
    # The button still opens the help, where they can be turned on again.
    page.get_by_role("button", name="Keyboard shortcuts").click()
    expect(help_dialog.get_by_label(re.compile("Single-key shortcuts"))).not_to_be_checked()


@SQLITE_ONLY
def test_a_draft_survives_switching_conversations_a_reload_and_a_new_login_and_goes_when_sent(
    messente_env, messente, app, page, server
):
    arrive_many(
        app,
        datetime.now(UTC),
        [
            {"sender": CUSTOMER, "recipient": OUR_NUMBER, "text": "Tere!"},
            {"sender": "+37256600001", "recipient": OUR_NUMBER, "text": "Hei"},
        ],
    )
    open_thread(page, server, CUSTOMER)
    page.locator("#reply-text").fill("Tere! Pakk jõuab homme.")
    open_row(page, "+37256600001")
    expect(page.locator("#reply-text")).to_have_value("")  # each conversation has its own
    open_row(page, CUSTOMER)
    expect(page.locator("#reply-text")).to_have_value("Tere! Pakk jõuab homme.")
    expect(page.locator("#reply-length")).to_have_text("23 characters · 1 SMS (UCS-2)")
    page.reload()
    expect(page.locator("#reply-text")).to_have_value("Tere! Pakk jõuab homme.")

    # Logged out (a session ended elsewhere would do the same): the draft is still in this browser.
    page.context.clear_cookies()
    page.reload()
    expect(page).to_have_url(re.compile(r"/login"))
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#reply-text")).to_have_value("Tere! Pakk jõuab homme.")

    page.locator("#reply-text").press("Control+Enter")
    expect(page.locator("#messages .message.out .text")).to_have_text(["Tere! Pakk jõuab homme."], timeout=LIVE)
    expect(page.locator("#reply-text")).to_have_value("")
    page.reload()
    expect(page.locator("#reply-text")).to_have_value("")


# --- drafts, the phone thread, the compact list (issue 22) ------------------------------------


def log_in_as(page, server, username: str):
    page.goto(server.url + "/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(server.url + "/")


def drafts_kept(page) -> dict:
    return page.evaluate("""() => Object.fromEntries(Object.keys(localStorage)
        .filter(key => key.startsWith("sms-inbox:draft:")).map(key => [key, localStorage.getItem(key)]))""")


@SQLITE_ONLY
def test_a_draft_belongs_to_its_writer_and_leaves_the_browser_with_them(messente_env, app, page, server):
    with app.app_context():
        add_user("carol", "agent")
    arrive_many(app, datetime.now(UTC), [{"sender": CUSTOMER, "recipient": OUR_NUMBER, "text": "Tere!"}])
    open_thread(page, server, CUSTOMER)  # alice
    page.locator("#reply-text").fill("Alice's half-written answer")
    assert list(drafts_kept(page).values()) == ["Alice's half-written answer"]
    # A draft kept by conversation only, without its writer, is nobody's: it goes too.
    page.evaluate("""() => localStorage.setItem("sms-inbox:draft:7", "whose?")""")

    page.get_by_role("button", name="Log out").click()  # logging out takes her drafts along
    expect(page).to_have_url(re.compile(r"/login"))
    page.wait_for_load_state()
    assert drafts_kept(page) == {}
    log_in_as(page, server, "carol")  # the next person on the same browser
    open_row(page, CUSTOMER)
    expect(page.locator("#reply-text")).to_have_value("")

    # A session that ends without "Log out" (it expired): the next person's first page removes
    # the drafts of everyone else, before any reply box could show them.
    page.locator("#reply-text").fill("Carol's draft")
    page.context.clear_cookies()
    log_in_as(page, server, "alice")
    page.wait_for_load_state()  # static/js's modules have run
    assert drafts_kept(page) == {}
    open_row(page, CUSTOMER)
    expect(page.locator("#reply-text")).to_have_value("")


def test_mark_unread_updates_the_lists_badge_and_the_views_counts_at_once(page, server):
    deliver(server, sender=CUSTOMER, text="Tere!")
    deliver(server, sender="+37256600001", text="Hei")
    page.clock.install()
    log_in(page, server)
    open_row(page, CUSTOMER)
    expect(page.get_by_role("button", name="Mark unread")).to_be_visible()  # shown means read
    tabs = page.get_by_role("navigation", name="Views")
    page.clock.run_for(POLL_SECONDS * 1000 + 100)  # a poll shows it read in the list
    expect(row_for(page, CUSTOMER).locator(".badge")).to_have_count(0)
    expect(tabs.get_by_role("link", name="Unread 1")).to_be_visible()
    page.clock.pause_at(datetime.now() + timedelta(seconds=10))  # no poll from here on

    page.get_by_role("button", name="Mark unread").click()
    expect(row_for(page, CUSTOMER).locator(".badge")).to_have_text("1 unread")
    expect(tabs.get_by_role("link", name="Unread 2")).to_be_visible()
    expect(page).to_have_title(re.compile(r"\(2\) Inbox"))


@SQLITE_ONLY
@pytest.mark.parametrize("messente_env", [{"MESSENTE_WHATSAPP_SENDER": "MyShop"}], indirect=True)
def test_the_counter_counts_sms_parts_only_when_the_reply_may_go_by_sms(messente_env, page, server):
    deliver(server, sender=CUSTOMER, recipient=OUR_NUMBER, channel="whatsapp", text="Hallo!")
    open_thread(page, server, CUSTOMER)
    route = page.get_by_label("Send by")
    expect(route).to_have_value("whatsapp")
    page.locator("#reply-text").fill("Tere! 👋")
    expect(page.locator("#reply-length")).to_have_text("7 characters")
    route.select_option("whatsapp+sms")  # WhatsApp, then SMS if that fails: parts matter again
    expect(page.locator("#reply-length")).to_have_text("7 characters · 1 SMS (UCS-2)")
    route.select_option("whatsapp")
    expect(page.locator("#reply-length")).to_have_text("7 characters")


def box_of(page, selector: str) -> dict:
    return page.locator(selector).bounding_box()


@SQLITE_ONLY
def test_on_a_phone_the_messages_get_most_of_the_screen_and_a_short_thread_sits_by_the_reply_box(
    messente_env, app, new_context, server
):
    now = datetime.now(UTC)
    for n in range(40):
        arrive_many(
            app,
            now - timedelta(minutes=60 - n),
            [{"sender": CUSTOMER, "recipient": OUR_NUMBER, "text": f"Sõnum {n}: kas tellimus on teel?"}],
        )
    arrive_many(app, now, [{"sender": "+37256600001", "recipient": OUR_NUMBER, "text": "Tere!"}])
    page = new_context(viewport=PHONE).new_page()
    log_in(page, server)
    open_row(page, CUSTOMER)
    expect(page.locator("#messages .message").last).to_be_in_viewport()
    header, composer = box_of(page, ".thread-header"), box_of(page, "#composer")
    messages, site = box_of(page, "#thread-scroll"), box_of(page, "header.site")
    assert messages["height"] > header["height"] + composer["height"] + site["height"], (
        messages,
        header,
        composer,
        site,
    )
    screenshot(page, "thread-phone-long.png")

    # The actions are one menu: Done stays out, the rest (read/unread included) are under More.
    expect(page.get_by_role("button", name="Mark done")).to_be_visible()
    expect(page.get_by_role("button", name="Mark unread")).to_be_hidden()
    page.locator("#more-actions summary").focus()
    page.keyboard.press("Enter")  # a disclosure: opens by keyboard, without script too
    expect(page.get_by_role("button", name="Mark unread")).to_be_visible()
    expect(page.get_by_role("button", name="Opt out")).to_be_visible()
    expect(page.get_by_role("link", name="Export…")).to_be_visible()
    screenshot(page, "thread-phone-menu.png")
    page.get_by_role("button", name="Mark unread").click()
    expect(page.locator("#more-actions")).not_to_have_attribute("open", "")  # sent: the menu closes
    expect(page.locator("#read-state-button")).to_have_text("Mark read")
    page.locator("#more-actions summary").click()
    page.keyboard.press("Escape")
    expect(page.locator("#more-actions")).not_to_have_attribute("open", "")
    expect(page.locator("#conversation-pane")).to_have_attribute("data-conversation", re.compile("."))  # still here

    # A short thread sits at the bottom, next to the reply box, at either size.
    for size in (PHONE, DESKTOP):
        page.set_viewport_size(size)
        page.goto(server.url + "/")
        open_row(page, "+37256600001")
        last, reply_box = box_of(page, "#messages .message >> nth=-1"), box_of(page, "#composer")
        assert 0 <= reply_box["y"] - (last["y"] + last["height"]) < 48, (last, reply_box)
        screenshot(page, f"thread-short-{size['width']}x{size['height']}.png")


def test_unread_rows_are_bold_with_a_badge_and_not_tinted(page, server):
    deliver(server, sender=CUSTOMER, text="Tere!")
    log_in(page, server)
    row = row_for(page, CUSTOMER)
    expect(row).to_have_class(re.compile(r"\bunread\b"))
    expect(row.locator(".badge")).to_have_text("1 unread")
    page.mouse.move(0, 0)  # no hover colour
    assert row.evaluate("row => getComputedStyle(row).backgroundColor") == "rgba(0, 0, 0, 0)"  # the pane's own
    assert row.locator("a.sender").evaluate("link => Number(getComputedStyle(link).fontWeight)") >= 700


@pytest.mark.parametrize("size", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_the_lists_controls_are_compact(new_context, server, size):
    for n, channel in enumerate(("sms", "whatsapp")):
        deliver(server, sender=f"+3725551000{n}", recipient=f"+3725000000{n}", channel=channel, text="Tere!")
    page = new_context(viewport=size).new_page()
    log_in(page, server)
    expect(page.get_by_label("Channel")).to_be_visible()  # filters are offered
    tabs = page.get_by_role("navigation", name="Views").get_by_role("link")
    expect(tabs).to_have_count(7)
    assert len({round(tab.bounding_box()["y"]) for tab in tabs.all()}) == 1, "the views on one line"
    pane, first_row = box_of(page, ".list-pane"), box_of(page, "#conversations li.conversation >> nth=0")
    # The heading, search, the views, and the owner tabs sharing a line with the filters.
    assert first_row["y"] - pane["y"] < 210, f"controls before the first row: {first_row['y'] - pane['y']}"
    assert overflow(page) <= 0
    # htmx adds no <style> of its own (the CSP would refuse it): style.css styles its indicator.
    assert page.evaluate("document.querySelectorAll('style').length") == 0


def test_times_other_than_arrivals_say_at_in_their_tooltip(page, server):
    log_in(page, server)
    page.goto(server.url + "/admin/audit")
    expect(page.locator("table.audit time").first).to_have_attribute(
        "title", re.compile(r"^At \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$")
    )
