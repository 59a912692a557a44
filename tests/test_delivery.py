"""Delivery reports for replies: signed with the API password, applied once, never backwards."""

import json
import re
from html import unescape

import pytest
import sqlalchemy as sa

from app import jobs
from app.callbacks import signing
from app.db.models import Message, UnmatchedDeliveryReport
from app.db.unit_of_work import write_transaction
from app.extensions import db
from conftest import API_PASSWORD, SECRET, AuthActions, conversation_of, make_app
from helpers import CUSTOMER, a_sent_reply


def report(status: str, omnimessage_id: str = "omni-1", err: int = 0, error=None, channel="sms") -> bytes:
    return json.dumps(
        {
            "status": status,
            "sender": "+37250000000",
            "err": err,
            "message_id": "m-1",
            "to": CUSTOMER,
            "channel": channel,
            "error": error,
            "omnimessage_id": omnimessage_id,
            "timestamp": "2024-06-01T08:09:42.389630",
            "price_info": {"part_price": "0.1", "parts_count": 1, "total_price": "0.1"},
        }
    ).encode()


def post_report(app, body: bytes, key: str = API_PASSWORD, signature: str | None = None):
    headers = {
        "Content-Type": "application/json",
        "X-Messente-Signature": signature if signature is not None else signing.sign(body, key),
    }
    return app.test_client().post("/callbacks/delivery", data=body, headers=headers)


def reply_row(app, reply_id: int) -> Message:
    with app.app_context():
        found = db.session.get(Message, reply_id)
        db.session.expunge(found)
        return found


@pytest.mark.parametrize("signature", ["", "0" * 64, "sign with the inbound secret"])
def test_an_unsigned_or_wrongly_signed_report_is_401_and_changes_nothing(dlr_app, signature):
    reply_id = a_sent_reply(dlr_app)
    body = report("DELIVRD")
    if signature == "sign with the inbound secret":
        signature = signing.sign(body, SECRET)  # the inbound callback's key is not this route's
    response = post_report(dlr_app, body, signature=signature)
    assert response.status_code == 401
    assert response.json == {"error": "missing or invalid X-Messente-Signature"}
    assert reply_row(dlr_app, reply_id).delivery is None


def test_a_report_moves_the_reply_forward_and_never_back(dlr_app):
    reply_id = a_sent_reply(dlr_app)
    assert post_report(dlr_app, report("ACK")).json == {"status": "applied"}
    assert reply_row(dlr_app, reply_id).delivery == "ACK"
    assert post_report(dlr_app, report("DELIVRD")).status_code == 200
    delivered = reply_row(dlr_app, reply_id)
    assert delivered.delivery == "DELIVRD"
    for late in ("ACK", "DELIVRD", "ACCEPTD"):  # late and repeated reports change nothing
        assert post_report(dlr_app, report(late)).status_code == 200
        assert reply_row(dlr_app, reply_id).change_seq == delivered.change_seq
    assert post_report(dlr_app, report("SEEN", err=10)).status_code == 200
    assert reply_row(dlr_app, reply_id).delivery == "SEEN"


def test_with_fallback_channels_the_best_leg_wins(dlr_app):
    reply_id = a_sent_reply(dlr_app)
    with dlr_app.app_context(), write_transaction() as session:  # sent as WhatsApp, then SMS
        session.execute(
            sa.update(Message)
            .where(Message.id == reply_id)
            .values(legs=[{"channel": "whatsapp", "sender": None}, {"channel": "sms", "sender": "+37250000000"}])
        )
    post_report(dlr_app, report("FAILED", err=1, channel="whatsapp"))  # the SMS leg is still to come
    assert reply_row(dlr_app, reply_id).delivery is None
    post_report(dlr_app, report("ACCEPTD", channel="sms"))
    assert reply_row(dlr_app, reply_id).delivery == "ACCEPTD"
    post_report(dlr_app, report("DELIVRD", channel="sms"))
    post_report(dlr_app, report("UNDELIV", err=3, channel="sms"))  # out of order: DELIVRD stands
    reply = reply_row(dlr_app, reply_id)
    assert (reply.delivery, reply.problem) == ("DELIVRD", None)


def test_a_failed_last_leg_is_a_failure(dlr_app):
    reply_id = a_sent_reply(dlr_app)  # one leg, SMS
    post_report(dlr_app, report("ACK"))
    post_report(dlr_app, report("FAILED", err=1))
    reply = reply_row(dlr_app, reply_id)
    assert (reply.delivery, reply.problem) == ("FAILED", "delivery failure")


def test_error_codes_are_shown_in_words(dlr_app):
    reply_id = a_sent_reply(dlr_app)
    post_report(dlr_app, report("UNDELIV", err=3, error="Subscriber unknown"))
    assert reply_row(dlr_app, reply_id).problem == "invalid number: Subscriber unknown"
    person = dlr_app.test_client()
    AuthActions(person).login()
    with dlr_app.app_context():
        page = person.get(f"/conversations/{conversation_of(CUSTOMER).id}").text
    assert 'Not delivered: <span class="problem">invalid number: Subscriber unknown</span>' in page


def test_a_report_that_beats_the_send_call_is_kept_and_applied_when_the_id_is_known(dlr_app):
    assert post_report(dlr_app, report("DELIVRD", omnimessage_id="early")).json == {
        "status": "kept until its reply is known"
    }
    reply_id = a_sent_reply(dlr_app, omnimessage_id="early")
    assert reply_row(dlr_app, reply_id).delivery == "DELIVRD"
    with dlr_app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(UnmatchedDeliveryReport)) == 0


def test_unmatched_reports_are_dropped_after_a_day(dlr_app):
    post_report(dlr_app, report("DELIVRD", omnimessage_id="never-ours"))
    dlr_app.moved(hours=23)
    post_report(dlr_app, report("ACK", omnimessage_id="another"))
    dlr_app.moved(hours=2)
    with dlr_app.app_context():
        jobs.run_due()  # the hourly drop_stale_delivery_reports job is due
        kept = db.session.scalars(sa.select(UnmatchedDeliveryReport.omnimessage_id)).all()
    assert kept == ["another"]


def test_a_reply_reported_undelivered_can_be_sent_again(dlr_app):
    reply_id = a_sent_reply(dlr_app)
    post_report(dlr_app, report("UNDELIV", err=1))
    person = dlr_app.test_client()
    AuthActions(person).login()
    with dlr_app.app_context():
        path = f"/conversations/{conversation_of(CUSTOMER).id}"
    page = person.get(path).text
    assert 'class="message out trouble"' in page and "Send again" in page
    retry = re.search(r'action="([^"]+/retry)"', page).group(1)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert person.post(retry, data={"csrf_token": token}).status_code == 303
    reply = reply_row(dlr_app, reply_id)
    assert (reply.status, reply.delivery, reply.omnimessage_id) == ("queued", None, None)  # to be sent again


@pytest.mark.parametrize(
    "body, words",
    [
        (b"{not json", "JSON"),
        (b"[]", "object"),
        (json.dumps({"status": "DELIVRD"}).encode(), "omnimessage_id"),
        (json.dumps({"status": "GREAT", "omnimessage_id": "x"}).encode(), "status"),
    ],
)
def test_a_signed_report_we_cannot_read_is_400(dlr_app, body, words):
    response = post_report(dlr_app, body)
    assert response.status_code == 400 and words in response.json["error"]


def test_without_an_api_password_reports_are_refused_with_503(database_url):
    app = make_app(database_url)
    body = report("DELIVRD")
    response = app.test_client().post(
        "/callbacks/delivery", data=body, headers={"X-Messente-Signature": signing.sign(body, "")}
    )
    assert response.status_code == 503 and "MESSENTE_API_PASSWORD" in response.json["error"]
    with app.app_context():
        db.engine.dispose()


def test_an_open_thread_shows_the_delivery_at_its_next_poll(dlr_app):
    reply_id = a_sent_reply(dlr_app)
    person = dlr_app.test_client()
    AuthActions(person).login()
    with dlr_app.app_context():
        path = f"/conversations/{conversation_of(CUSTOMER).id}"
    page = person.get(path).text
    poll = unescape(re.search(r'id="thread-poller"[^>]*hx-get="([^"]+)"', page).group(1))
    assert person.get(poll, headers={"HX-Request": "true"}).status_code == 204
    post_report(dlr_app, report("DELIVRD"))
    update = person.get(poll, headers={"HX-Request": "true"})
    assert update.status_code == 200
    # The reply already on the page replaces itself; nothing is appended twice.
    assert re.search(rf'<li id="message-{reply_id}" class="message out"[^>]*hx-swap-oob="true">', update.text)
    assert ">Delivered<" in update.text
