"""Every screen, as people with different screens, settings and abilities meet it.

One seeded inbox and one server for the module (SQLite: the database changes nothing here), one
Chromium. Each screen at 1280x800 and 390x844, in the light and the dark scheme: no sideways
scrolling, no serious or critical axe-core violation (a pinned copy in tests/vendor, injected
by Playwright, no network), no console error or CSP violation, and a screenshot in test-output/.
"""

import hashlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from app.callbacks import ingest
from app.contacts import owners
from app.db.models import Conversation, Message, User
from app.db.unit_of_work import change_number, write_transaction
from app.extensions import db
from browser_helpers import REPORT_CSP_VIOLATIONS, overflow
from conftest import PASSWORD, ROOT, Server, add_user, body_for, close_app, create_tables, make_app

pytestmark = pytest.mark.browser

AXE = Path(__file__).parent / "vendor" / "axe-core-4.11.0.min.js"
AXE_SHA256 = "e9e5863c33a874f09bc01acd9234b7e3c871479f5eef8802fa582544465e6d01"  # tests/vendor/README.md
OUTPUT = ROOT / "test-output"
SIZES = {"1280x800": {"width": 1280, "height": 800}, "390x844": {"width": 390, "height": 844}}
BUSY = "+37255512345"  # a thread of 1,000 messages
LONG_TEXT = (
    "Tere! Tellisin eelmisel nädalal kolm paari saapaid ja tahaksin teada, millal need kohale jõuavad, "
    "sest tracking-number ei tööta: https://kauplus.example.com/tellimused/123456789?lang=et"
)


def arrive(at: datetime, payloads: list[dict]) -> None:
    ingest.store_messages(
        [ingest.parse_payload(body_for(**fields)) for fields in payloads],
        received_at=at.astimezone(UTC).replace(tzinfo=None),
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """An inbox as a team has it after a while, served as `make run` serves it."""
    url = f"sqlite:///{tmp_path_factory.mktemp('accessibility') / 'inbox.sqlite3'}"
    app = make_app(url)
    now = datetime.now(UTC)
    with app.app_context():
        create_tables()
        add_user()
        # 1,000 messages over ten days, a hundred a day.
        for day in range(10):
            arrive(
                now - timedelta(days=9 - day, minutes=30),
                [
                    {
                        "sender": BUSY,
                        "text": f"Sõnum {day * 100 + n}: kas tellimus 4{n:03} on teel?" + (" 🙂" if n % 7 == 0 else ""),
                    }
                    for n in range(100)
                ],
            )
        arrive(
            now - timedelta(minutes=20),
            [{"sender": "+4915112345678901", "channel": "whatsapp", "text": "Hallo aus Berlin 👋 " * 12}],
        )
        arrive(
            now - timedelta(minutes=15),
            [{"sender": "Kaubamaja-Info-Teenus", "channel": "viber", "text": "Teie pakk on teel"}],
        )
        # 30 messages: more than a screen holds, fewer than a page (no "Earlier messages" link).
        arrive(now - timedelta(days=2), [{"sender": "+37256600001", "text": f"Küsimus {n}"} for n in range(29)])
        arrive(now - timedelta(minutes=10), [{"sender": "+37256600001", "text": "שלום, מה שלומך?"}])
        arrive(now - timedelta(minutes=5), [{"sender": "+3725\u202e5566001", "text": "\u202eright-to-left override"}])
        arrive(now - timedelta(minutes=1), [{"sender": "+37253300002", "text": LONG_TEXT}])
        busy_id = ingest_conversation_id(BUSY)
        priced_reply(busy_id, now - timedelta(minutes=25))  # its price in the thread and the header
        short_id = ingest_conversation_id("+37256600001")
        # alice's notifications: a conversation bob gave her, and a new message in one she owns.
        add_user("bob", role="agent")
        alice_id, bob_id = (
            db.session.scalar(db.select(User.id).where(User.username == name)) for name in ("alice", "bob")
        )
        owners.assign(short_id, alice_id, bob_id)
        owners.assign(ingest_conversation_id("+37253300002"), alice_id, alice_id)
        arrive(now - timedelta(seconds=30), [{"sender": "+37253300002", "text": "Aitäh!"}])
    # Replies configured (the API is never called here), so the reply box is there to be seen.
    server = Server(
        url,
        workers=1,
        threads=4,
        env={
            "MESSENTE_API_URL": "http://127.0.0.1:9",
            "MESSENTE_API_USERNAME": "user",
            "MESSENTE_API_PASSWORD": "pass",
            "MESSENTE_SMS_SENDER": "",
            "MESSENTE_VIBER_SENDER": "",
            "MESSENTE_WHATSAPP_SENDER": "",
        },
    ).start()
    yield {"url": server.url, "busy": busy_id, "short": short_id, "app": app}
    server.stop()
    close_app(app)


def priced_reply(conversation_id: int, at: datetime) -> None:
    """A reply Messente delivered and priced (app/replies/delivery.py), as its reports leave it."""
    at = at.astimezone(UTC).replace(tzinfo=None)
    with write_transaction() as session:
        change = change_number()
        reply_id = session.execute(
            sa.insert(Message)
            .values(
                conversation_id=conversation_id,
                msg_id="reply-priced",
                channel="sms",
                sender="+37250000000",
                recipient=BUSY,
                text="Jah, see jõuab homme.",
                folded_text="jah, see jouab homme.",
                sent_at=at,
                received_at=at,
                raw_body=b"",
                change_seq=change,
                direction="out",
                author_id=1,
                status="sent",
                delivery="DELIVRD",
                legs=[{"channel": "sms", "sender": "+37250000000"}],
                price=Decimal("0.0912"),
                parts=2,
            )
            .returning(Message.id)
        ).scalar_one()
        session.execute(
            sa.update(Conversation)
            .where(Conversation.id == conversation_id)
            .values(last_message_id=reply_id, message_count=Conversation.message_count + 1, change_seq=change)
        )


def ingest_conversation_id(sender: str) -> int:
    return db.session.scalar(db.select(Conversation.id).where(Conversation.sender == sender))


@pytest.fixture(scope="module")
def axe_source() -> str:
    source = AXE.read_bytes()
    assert hashlib.sha256(source).hexdigest() == AXE_SHA256, "tests/vendor's axe-core is not the pinned copy"
    return source.decode()


def serious_violations(page, axe_source: str) -> list[str]:
    """axe-core's serious and critical findings on the page as it is now."""
    # evaluate() runs as the browser's own tooling does, outside the page's CSP (no inline script).
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(axe_source)
    results = page.evaluate("""() => axe.run(document, {resultTypes: ["violations"]}).then(result =>
        result.violations.filter(v => v.impact === "serious" || v.impact === "critical")
            .map(v => v.id + ": " + v.help + " [" + v.nodes.slice(0, 3).map(n => n.target.join(" ")).join(", ") + "]"))""")
    return results


def log_in(page, url: str) -> None:
    page.goto(url + "/login")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(url + "/")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_screen_fits_both_sizes_passes_axe_and_is_photographed(browser, site, axe_source, scheme):
    url = site["url"]
    context = browser.new_context(color_scheme=scheme, timezone_id="Europe/Tallinn", locale="en-GB")
    problems = []
    context.add_init_script(REPORT_CSP_VIOLATIONS)
    context.on("weberror", lambda error: problems.append(f"page error: {error.error}"))
    page = context.new_page()
    page.on(
        "console",
        lambda message: (
            message.type == "error"
            and "404 (NOT FOUND)" not in message.text
            and problems.append(f"console error on {page.url}: {message.text}")
        ),
    )
    failed = []  # every answer of 400 or more (a missing favicon included)
    page.on("response", lambda response: response.status >= 400 and failed.append(f"{response.status} {response.url}"))
    OUTPUT.mkdir(exist_ok=True)
    try:
        page.goto(url + "/login")
        for size_name, size in SIZES.items():
            page.set_viewport_size(size)
            check(page, axe_source, f"login-{size_name}-{scheme}")
        log_in(page, url)
        thread = f"{url}/conversations/{site['busy']}"
        screens = {
            "list": (url + "/", lambda: compact_rows(page)),
            # Before the threads are opened: opening one reads its notifications.
            "notifications": (
                url + "/notifications",
                lambda: expect(page.locator(".notification-list li")).to_have_count(2),
            ),
            "account": (
                url + "/account",
                lambda: expect(
                    page.get_by_role("checkbox", name="a customer writes in a conversation I own")
                ).to_be_checked(),
            ),
            "search": (
                url + "/?q=372",
                lambda: expect(page.locator("#conversations li.conversation")).to_have_count(4),
            ),
            "thread-1000": (thread, lambda: expect(page.locator("#messages .message").last).to_be_in_viewport()),
            "composer": (
                thread,
                lambda: page.locator("#reply-text").fill("Tere! Jah, tellimus on teel ja jõuab homme 🙂"),
            ),
            "composer-held": (thread, lambda: held_reply(page, site["app"])),
            # Nothing in the messages to focus: their scrolling region must take focus itself.
            "thread-30": (
                f"{url}/conversations/{site['short']}",
                lambda: expect(page.locator("#messages .message")).to_have_count(30),
            ),
            "thread-menu": (
                thread,
                lambda: (
                    page.locator("#more-actions summary").click(),
                    expect(page.locator("#more-actions-menu")).to_be_visible(),
                ),
            ),
            "snooze-menu": (
                thread,
                lambda: (
                    page.locator("#snooze-menu summary").click(),
                    expect(page.locator("#snooze-menu-items")).to_be_visible(),
                ),
            ),
            "admin-time-zone": (
                url + "/admin/time-zone",
                lambda: expect(page.get_by_label("The team's time zone")).to_be_visible(),
            ),
            "keyboard-help": (
                url + "/",
                lambda: (page.keyboard.press("?"), expect(page.locator("#keyboard-help")).to_be_visible()),
            ),
            "search-messages": (
                url + "/?q=Tellimus",
                lambda: expect(page.locator("#conversations li.found")).to_have_count(2),
            ),  # one entry a conversation
            "export": (
                url + "/export?view=open",
                lambda: expect(page.get_by_role("status")).to_contain_text("messages with these choices"),
            ),
            "reports": (
                url + "/reports?range=last_30",
                lambda: expect(page.get_by_role("img", name="Busiest hours of the week")).to_be_visible(),
            ),
            "admin-hours": (
                url + "/admin/hours",
                lambda: expect(page.get_by_role("group", name="Monday")).to_be_visible(),
            ),
            "webhooks": (
                url + "/admin/webhooks",
                lambda: (
                    webhook_endpoints(site["app"]),
                    page.reload(),
                    expect(page.locator("tbody tr")).to_have_count(3),
                ),
            ),
            "404": (
                url + "/conversations/123456789012345",
                lambda: expect(page.get_by_role("link", name="Back to the inbox")).to_be_visible(),
            ),
        }
        for name, (address, prepare) in screens.items():
            for size_name, size in SIZES.items():
                page.set_viewport_size(size)
                page.goto(address)
                prepare()
                check(page, axe_source, f"{name}-{size_name}-{scheme}")
    finally:
        context.close()
    assert problems == []
    assert set(failed) == {f"404 {screens['404'][0]}"}, "only the missing page is missing"


def webhook_endpoints(app) -> None:
    """Two endpoints (once): one with a delivered, a failed and a retrying delivery; one the app
    turned off after failing for days (every admin page's banner says so). No delivery is made:
    the first has taken every event there will be, its retry is hours away, the other is off."""
    from app.db.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
    from app.db.unit_of_work import write_transaction
    from app.webhooks import endpoints

    with app.app_context():
        if endpoints.listing():
            return
        live, _ = endpoints.create_endpoint(
            "https://93.184.216.34/hooks/sms-inbox?team=support-estonia-and-latvia", list(webhooks_types())
        )
        off, _ = endpoints.create_endpoint("https://93.184.216.35/receiver", ["message.created"])
        now = datetime.now(UTC).replace(tzinfo=None)
        with write_transaction() as session:
            session.get(WebhookEndpoint, live.id).position = 2**62
            failed_off = session.get(WebhookEndpoint, off.id)
            failed_off.enabled, failed_off.disabled_reason = False, "failing"
            failed_off.failing_since = failed_off.disabled_at = now - timedelta(days=5)
            for n, (kind, status, code, error) in enumerate(
                [
                    ("message.created", "delivered", 204, None),
                    ("conversation.updated", "failed", 400, "not tried again"),
                    ("message.updated", "pending", 503, None),
                ]
            ):
                event = WebhookEvent(
                    uid=f"msg_accessibility{n}", type=kind, body="{}", created_at=now - timedelta(minutes=3 - n)
                )
                session.add(event)
                session.flush()
                session.add(
                    WebhookDelivery(
                        endpoint_id=live.id,
                        event_id=event.id,
                        status=status,
                        attempts=1,
                        next_at=now + timedelta(hours=5),
                        last_attempt_at=now - timedelta(minutes=2 - n),
                        response_code=code,
                        error=error,
                        created_at=now,
                    )
                )


def webhooks_types():
    from app.webhooks import EVENT_TYPES

    return EVENT_TYPES


def held_reply(page, app) -> None:
    """The send guard's held reply box: the customer wrote again while the reply was typed."""
    page.locator("#reply-text").fill("Tere! Jah, see jõuab homme 🙂")
    page.evaluate("document.getElementById('thread-poller').remove()")  # no poll shows it first
    with app.app_context():
        arrive(datetime.now(UTC), [{"sender": BUSY, "text": "Veel üks küsimus: kas saab ka laupäeval?"}])
    page.get_by_role("button", name="Send", exact=True).click()
    expect(page.get_by_role("button", name="Send anyway")).to_be_visible()
    expect(page.locator("#reply-held")).to_contain_text("kas saab ka laupäeval?")


def compact_rows(page) -> None:
    """Each conversation is one compact row: sender, time, preview and badge all in view."""
    rows = page.locator("#conversations li.conversation")
    expect(rows).to_have_count(6)
    width = page.viewport_size["width"]
    for row in rows.all():
        for part in ("a.sender", ".when", ".preview"):
            box = row.locator(part).bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= width, part
        assert row.bounding_box()["height"] < 80


def check(page, axe_source: str, name: str) -> None:
    assert overflow(page) <= 0, f"{name} scrolls sideways"
    assert serious_violations(page, axe_source) == [], name
    page.screenshot(path=OUTPUT / f"{name}.png")
