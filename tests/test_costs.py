"""Costs: a reply's price from its delivery reports' price_info, each leg's latest report counted
once; the tallies follow every change and outlive erasure and purge; thread, export, currency."""

import csv
import io
import json
import random
import re
from datetime import datetime, timedelta
from decimal import Decimal
from html import unescape

import pytest
import sqlalchemy as sa

from app import clock, replies, tallies
from app.callbacks import signing
from app.db.models import AuditEvent, Message, Tally, UnmatchedDeliveryReport
from app.db.unit_of_work import write_transaction
from app.extensions import db
from app.privacy import erasure, purge
from app.team import currency
from conftest import API_PASSWORD, AuthActions, body_for, conversation_of, csrf_token, signed_headers
from helpers import CUSTOMER, OUR_NUMBER

SENT = datetime(2024, 6, 1, 8, 0)  # dlr_app's clock: when the tests' replies are sent


def priced(
    status: str = "DELIVRD",
    omnimessage_id: str = "omni-1",
    total="0.1",
    parts=1,
    at: str | None = "2024-06-01T08:01:00",
    channel: str = "sms",
    price_info: object = None,
    sender: str = OUR_NUMBER,
) -> bytes:
    body = {
        "status": status,
        "sender": sender,
        "err": 0,
        "message_id": "m-1",
        "to": CUSTOMER,
        "channel": channel,
        "error": None,
        "omnimessage_id": omnimessage_id,
        "price_info": price_info
        if price_info is not None
        else {"part_price": str(Decimal(total) / parts) if parts else "0", "parts_count": parts, "total_price": total},
    }
    if at is not None:
        body["timestamp"] = at
    return json.dumps(body).encode()


def post_report(app, body: bytes):
    """A delivery report through the route, signed as Messente signs it."""
    headers = {"Content-Type": "application/json", "X-Messente-Signature": signing.sign(body, API_PASSWORD)}
    return app.test_client().post("/callbacks/delivery", data=body, headers=headers)


def a_reply(app, omnimessage_id: str | None = "omni-1", key: str = "a", author_id: int | None = 1, legs=None) -> int:
    """A reply Messente accepted (the customer wrote first), sent as `legs` when given."""
    body = body_for(msg_id=f"in-{key}", sender=CUSTOMER, recipient=OUR_NUMBER)
    assert app.test_client().post("/callbacks/inbound", data=body, headers=signed_headers(body)).status_code == 200
    with app.app_context():
        conversation = conversation_of(CUSTOMER)
        reply_id = replies.queue_reply(conversation, "Your order is on its way", "sms", None, author_id, key * 16)
        if legs is not None:
            with write_transaction() as session:
                session.execute(sa.update(Message).where(Message.id == reply_id).values(legs=legs))
        if omnimessage_id is not None:
            replies.record(reply_id, conversation.id, "sent", omnimessage_id=omnimessage_id)
    return reply_id


def cost_of(app, reply_id: int) -> tuple:
    with app.app_context():
        row = db.session.execute(sa.select(Message.price, Message.parts).where(Message.id == reply_id)).one()
    return tuple(row)


def tally(app, metric: str, **where) -> Decimal:
    with app.app_context():
        query = sa.select(sa.func.coalesce(sa.func.sum(Tally.value), 0)).where(Tally.metric == metric)
        for name, value in where.items():
            query = query.where(getattr(Tally, name) == value)
        return Decimal(db.session.scalar(query)).quantize(currency.SIX_PLACES)


def message_total(app) -> Decimal:
    with app.app_context():
        total = db.session.scalar(sa.select(sa.func.coalesce(sa.func.sum(Message.price), 0)))
    return Decimal(total).quantize(currency.SIX_PLACES)


def test_a_repeated_report_is_counted_once(dlr_app):
    reply_id = a_reply(dlr_app)
    for _ in range(3):
        assert post_report(dlr_app, priced(total="0.2", parts=2)).json == {"status": "applied"}
    assert cost_of(dlr_app, reply_id) == (Decimal("0.2"), 2)
    assert tally(dlr_app, "cost") == Decimal("0.2") and tally(dlr_app, "parts") == 2
    # Where it is counted: the reply's channel, our number, its author, the quarter hour it was sent in.
    with dlr_app.app_context():
        rows = db.session.execute(sa.select(Tally).where(Tally.metric == "cost")).scalars().all()
        assert [(row.bucket, row.channel, row.our_number, row.user_id) for row in rows] == [
            (tallies.bucket_of(SENT), "sms", OUR_NUMBER, 1)
        ]


def test_an_older_report_arriving_late_changes_nothing_and_a_newer_one_replaces_the_price(dlr_app):
    reply_id = a_reply(dlr_app)
    post_report(dlr_app, priced("DELIVRD", total="0.2", parts=2, at="2024-06-01T08:02:00"))
    post_report(dlr_app, priced("ACK", total="0.1", parts=1, at="2024-06-01T08:01:00"))  # older, late
    assert cost_of(dlr_app, reply_id) == (Decimal("0.2"), 2)
    post_report(dlr_app, priced("SEEN", total="0.0456", parts=1, at="2024-06-01T08:03:00"))  # newer: its price
    assert cost_of(dlr_app, reply_id) == (Decimal("0.0456"), 1)
    assert (tally(dlr_app, "cost"), tally(dlr_app, "parts")) == (Decimal("0.0456"), 1)
    post_report(dlr_app, priced("DELIVRD", total="0.3", parts=3, at=None))  # no time: not newer than one with
    assert cost_of(dlr_app, reply_id) == (Decimal("0.0456"), 1)


def test_each_leg_of_a_fallback_is_priced_and_counted_on_its_channel(dlr_app):
    legs = [{"channel": "whatsapp", "sender": None}, {"channel": "sms", "sender": OUR_NUMBER}]
    reply_id = a_reply(dlr_app, legs=legs)
    business = "+37250000009"  # the WhatsApp leg went without a sender of ours: Messente names it
    post_report(dlr_app, priced("FAILED", total="0.01", parts=1, channel="whatsapp", sender=business))
    post_report(dlr_app, priced("DELIVRD", total="0.0912", parts=2, channel="sms"))
    post_report(dlr_app, priced("FAILED", total="0.01", parts=1, channel="whatsapp", sender=business))  # again
    assert cost_of(dlr_app, reply_id) == (Decimal("0.1012"), 3)
    assert tally(dlr_app, "cost", channel="whatsapp", our_number=business) == Decimal("0.01")
    assert tally(dlr_app, "cost", channel="sms", our_number=OUR_NUMBER) == Decimal("0.0912")
    assert tally(dlr_app, "parts", channel="sms") == 2


def test_a_report_before_the_send_call_returned_keeps_its_price_and_channel(dlr_app):
    legs = [{"channel": "whatsapp", "sender": None}, {"channel": "sms", "sender": OUR_NUMBER}]
    assert post_report(dlr_app, priced("FAILED", "early", total="0.01", channel="whatsapp")).json == {
        "status": "kept until its reply is known"
    }
    post_report(dlr_app, priced("ACK", "early", total="0.05", at="2024-06-01T08:02:00"))
    post_report(dlr_app, priced("ACCEPTD", "early", total="0.04", at="2024-06-01T08:01:00"))  # older
    reply_id = a_reply(dlr_app, "early", legs=legs)
    # The WhatsApp leg's failure had a fallback after it: not the reply's status.
    with dlr_app.app_context():
        assert db.session.get(Message, reply_id).delivery == "ACK"
        assert db.session.scalar(sa.select(sa.func.count()).select_from(UnmatchedDeliveryReport)) == 0
    assert cost_of(dlr_app, reply_id) == (Decimal("0.06"), 2)
    assert tally(dlr_app, "cost") == Decimal("0.06")


@pytest.mark.parametrize(
    "price_info",
    [
        {"total_price": "abc", "parts_count": 1},
        {"total_price": "-0.1", "parts_count": 1},
        {"total_price": "1e12", "parts_count": 1},
        {"total_price": "NaN", "parts_count": 1},
        {"total_price": "Infinity", "parts_count": 1},
        {"total_price": True, "parts_count": 1},
        {"total_price": ["0.1"], "parts_count": 1},
        {"total_price": "9" * 100},
        "0.1",
        [],
    ],
)
def test_an_invalid_price_is_ignored_and_the_report_still_counts(dlr_app, price_info):
    reply_id = a_reply(dlr_app)
    assert post_report(dlr_app, priced(price_info=price_info)).json == {"status": "applied"}
    with dlr_app.app_context():
        reply = db.session.get(Message, reply_id)
        assert (reply.delivery, reply.price, reply.parts, reply.price_legs) == ("DELIVRD", None, None, None)
    assert tally(dlr_app, "cost") == 0


def test_a_price_without_a_total_is_part_price_times_parts_and_bad_parts_leave_the_price(dlr_app):
    reply_id = a_reply(dlr_app)
    post_report(dlr_app, priced(price_info={"part_price": "0.0456", "parts_count": 3}, at="2024-06-01T08:01:00"))
    assert cost_of(dlr_app, reply_id) == (Decimal("0.1368"), 3)
    post_report(dlr_app, priced(price_info={"total_price": 0.2, "parts_count": "two"}, at="2024-06-01T08:02:00"))
    assert cost_of(dlr_app, reply_id) == (Decimal("0.2"), None)
    assert (tally(dlr_app, "cost"), tally(dlr_app, "parts")) == (Decimal("0.2"), 0)


def test_after_a_storm_of_repeated_and_shuffled_reports_the_tallies_equal_the_replies_prices(dlr_app):
    rng = random.Random(28)
    legs = [{"channel": "whatsapp", "sender": None}, {"channel": "sms", "sender": OUR_NUMBER}]
    sent = {}  # omnimessage id -> reply id
    reports, latest = [], {}  # latest: (omnimessage id, channel) -> (time, price, parts)
    for n in range(8):
        omnimessage_id = f"storm-{n}"
        for channel in ("whatsapp", "sms") if n % 2 else ("sms",):
            for step, second in enumerate(rng.sample(range(600), 4)):  # times out of step with statuses
                at = datetime(2024, 6, 1, 8, 1) + timedelta(seconds=second)
                price = Decimal(rng.randrange(1, 5000)) / 10_000
                parts = rng.randrange(1, 4)
                body = priced(
                    ["ACCEPTD", "ACK", "DELIVRD", "SEEN"][step],
                    omnimessage_id,
                    str(price),
                    parts,
                    at.isoformat(timespec="microseconds"),
                    channel,
                )
                reports += [body] * rng.randrange(1, 4)  # repeated
                known = latest.get((omnimessage_id, channel))
                if known is None or at > known[0]:
                    latest[omnimessage_id, channel] = (at, price, parts)
        author = None if n % 3 == 0 else 1  # the API's and the away reply's count as no one (0)
        early = n == 5  # its reports come before the send call returns
        sent[omnimessage_id] = (n, author, legs if n % 2 else None, early)
    for omnimessage_id, (n, author, reply_legs, early) in sent.items():
        if not early:
            sent[omnimessage_id] = a_reply(dlr_app, omnimessage_id, chr(ord("a") + n), author, reply_legs)
    rng.shuffle(reports)
    for body in reports:
        assert post_report(dlr_app, body).status_code == 200
    n, author, reply_legs, _ = sent["storm-5"]
    sent["storm-5"] = a_reply(dlr_app, "storm-5", chr(ord("a") + n), author, reply_legs)

    for omnimessage_id, reply_id in sent.items():
        expected = [value for (omni, _), value in latest.items() if omni == omnimessage_id]
        assert cost_of(dlr_app, reply_id) == (sum(price for _, price, _ in expected), sum(p for _, _, p in expected))
    expected_total = sum(price for _, price, _ in latest.values())
    assert tally(dlr_app, "cost") == message_total(dlr_app) == expected_total
    assert tally(dlr_app, "parts") == sum(parts for _, _, parts in latest.values())
    assert tally(dlr_app, "cost", user_id=0) == sum(
        price for (omni, _), (_, price, _) in latest.items() if int(omni.split("-")[1]) % 3 == 0
    )


def test_erasure_and_the_retention_purge_leave_the_cost_in_the_tallies(dlr_app):
    first = a_reply(dlr_app, "omni-1", "a")
    post_report(dlr_app, priced(total="0.2", parts=2))
    assert cost_of(dlr_app, first) == (Decimal("0.2"), 2)
    with dlr_app.app_context():
        erasure.erase_conversation(conversation_of(CUSTOMER).id)
        assert db.session.get(Message, first) is None
    assert tally(dlr_app, "cost") == Decimal("0.2")

    second = a_reply(dlr_app, "omni-2", "b")  # the customer writes again, is answered, then time passes
    post_report(dlr_app, priced(omnimessage_id="omni-2", total="0.0456", parts=1))
    dlr_app.moved(days=40)
    with dlr_app.app_context():
        assert purge.purge(clock.now(), 30, None).messages == 2
        assert db.session.get(Message, second) is None
    assert (tally(dlr_app, "cost"), tally(dlr_app, "parts")) == (Decimal("0.2456"), 3)


def test_the_export_carries_price_and_parts(dlr_app):
    reply_id = a_reply(dlr_app)
    a_reply(dlr_app, "omni-2", "b")  # not priced
    post_report(dlr_app, priced(total="0.0912", parts=2))
    person = dlr_app.test_client()
    AuthActions(person).login()
    rows = list(csv.reader(io.StringIO(person.get("/export.csv").data.decode("utf-8-sig"), newline="")))
    header = rows[0]
    assert header[-3:] == ["price", "parts", "conversation_id"]
    by_id = {row[header.index("msg_id")]: row for row in rows[1:]}
    with dlr_app.app_context():
        msg_id = db.session.get(Message, reply_id).msg_id
    assert by_id[msg_id][-3:-1] == ["0.0912", "2"]
    assert [row[-3:-1] for key, row in by_id.items() if key != msg_id] == [["", ""]] * 3


def thread_of(person, app) -> str:
    with app.app_context():
        return person.get(f"/conversations/{conversation_of(CUSTOMER).id}").text


def test_the_thread_shows_each_price_and_the_conversation_total_in_the_account_currency(dlr_app):
    first = a_reply(dlr_app, "omni-1", "a")
    second = a_reply(dlr_app, "omni-2", "b")
    person = dlr_app.test_client()
    AuthActions(person).login()
    page = thread_of(person, dlr_app)
    assert 'class="price"' not in page and '<p id="thread-cost"></p>' in page  # nothing priced yet

    # An open thread's poll brings the price and the header's total.
    poll = unescape(re.search(r'id="thread-poller"[^>]*hx-get="([^"]+)"', page).group(1))
    post_report(dlr_app, priced(total="0.2", parts=2))
    update = person.get(poll, headers={"HX-Request": "true"}).text
    assert '<span class="price">€0.20 · 2 parts</span>' in update
    assert '<p id="thread-cost" hx-swap-oob="true">Cost €0.20</p>' in update

    post_report(dlr_app, priced(omnimessage_id="omni-2", total="0.0456", parts=1))
    page = thread_of(person, dlr_app)
    for reply_id, shown in ((first, "€0.20 · 2 parts"), (second, "€0.0456 · 1 part")):
        item = re.search(rf'<li id="message-{reply_id}".*?</li>', page, re.DOTALL).group(0)
        assert f'<span class="price">{shown}</span>' in item
    assert '<p id="thread-cost">Cost €0.2456</p>' in page

    settings = person.get("/admin/time-zone").text
    assert person.post("/admin/currency", data={"csrf_token": csrf_token(settings), "code": "EURO"}).status_code == 400
    assert person.post("/admin/currency", data={"csrf_token": csrf_token(settings), "code": "XYZ"}).status_code == 400
    saved = person.post("/admin/currency", data={"csrf_token": csrf_token(settings), "code": "sek"})
    assert saved.status_code == 200 and "Prices are shown in SEK now." in saved.text
    page = thread_of(person, dlr_app)
    assert '<span class="price">0.20 SEK · 2 parts</span>' in page and "Cost 0.2456 SEK" in page
    with dlr_app.app_context():
        audited = db.session.scalars(
            sa.select(AuditEvent.details).where(AuditEvent.action == "settings_changed").order_by(AuditEvent.id)
        ).all()
    assert [json.loads(details) for details in audited] == [{"currency": "SEK", "was": "EUR"}]
    person.post("/admin/currency", data={"csrf_token": csrf_token(settings), "code": "USD"})
    assert "Cost $0.2456" in thread_of(person, dlr_app)


@pytest.mark.parametrize(
    "amount, code, shown",
    [
        ("0.2", "EUR", "€0.20"),
        ("0.0456", "USD", "$0.0456"),
        ("12", "GBP", "£12.00"),
        ("0.123", "SEK", "0.123 SEK"),
        ("0.045612", "EUR", "€0.0456"),
    ],
)
def test_money_has_two_to_four_decimals_and_the_currency_sign_or_code(amount, code, shown):
    assert currency.money(Decimal(amount), code) == shown


def test_the_currency_defaults_to_the_setting_then_eur(dlr_app):
    with dlr_app.app_context():
        assert currency.currency() == "EUR"
        dlr_app.config["CURRENCY"] = "gbp"
        assert currency.currency() == "GBP"
        dlr_app.config["CURRENCY"] = "nonsense"
        assert currency.currency() == "EUR"
        with pytest.raises(ValueError):
            currency.set_currency("EU")
