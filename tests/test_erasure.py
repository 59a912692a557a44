"""Erasure on request: an admin deletes a conversation and nothing about its number remains."""

import json
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from app import audit
from app.contacts import optouts
from app.db.models import AuditEvent, Conversation, DeadLetter, Message, OptOut, Suppression, UnmatchedDeliveryReport
from app.db.unit_of_work import write_transaction
from app.extensions import db
from app.privacy import erasure
from app.replies import reply_box
from conftest import PASSWORD, Browser, body_for, conversation_of, wait_until
from helpers import post

NUMBER = "+37255598765"
SECRET_TEXT = "Minu salajane tellimus 4711-zebra"
OTHER = "+37255500042"


@pytest.fixture
def customer(app, deliver):
    """A conversation with NUMBER: two messages in, a reply out with a delivery report waiting,
    an opt-out, a dead letter from the number; and another customer's conversation beside it."""
    for text in (SECRET_TEXT, "Teine sõnum 4711-zebra"):
        assert deliver(body_for(sender=NUMBER, text=text)).status_code == 200
    assert deliver(body_for(sender=OTHER, text="Kas pood on avatud?")).status_code == 200
    with app.app_context():
        conversation = conversation_of(NUMBER)
        now = datetime(2026, 3, 2, 9, 0)
        with write_transaction() as session:
            session.add(
                Message(
                    conversation_id=conversation.id,
                    msg_id="reply-1",
                    channel="sms",
                    sender="+3725000",
                    recipient=NUMBER,
                    text="Vastus 4711-zebra",
                    sent_at=now,
                    received_at=now,
                    legs=[],
                    raw_body=b"",
                    change_seq=0,
                    direction="out",
                    status="sent",
                    omnimessage_id="omni-erased",
                )
            )
            session.add(UnmatchedDeliveryReport(omnimessage_id="omni-erased", status="DELIVRD", received_at=now))
            session.add(UnmatchedDeliveryReport(omnimessage_id="omni-other", status="DELIVRD", received_at=now))
            session.add(
                DeadLetter(
                    received_at=now,
                    reason="bad time",
                    body_sha256="a" * 64,
                    raw_body=json.dumps({"sender": NUMBER, "text": "4711-zebra"}).encode(),
                )
            )
            session.add(
                DeadLetter(
                    received_at=now,
                    reason="bad time",
                    body_sha256="b" * 64,
                    raw_body=json.dumps({"sender": OTHER}).encode(),
                )
            )
            for n, spelling in enumerate(["372 5559 8765", "0037255598765", "(5559) 8765"]):
                session.add(
                    DeadLetter(
                        received_at=now,
                        reason="bad time",
                        body_sha256=f"{n}" * 64,
                        raw_body=json.dumps({"sender": spelling, "text": "x"}).encode(),
                    )
                )
        optouts.set_opted_out(conversation.id, True, 1)
        return conversation.id


def count(app, model, *where) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


def test_the_confirmation_says_how_many_messages_and_needs_a_post_with_csrf(app, admin, customer):
    page = admin.client.get(f"/admin/conversations/{customer}/delete")
    assert page.status_code == 200 and "<strong>3 messages</strong>" in page.text
    assert "replies to it stay blocked" in page.text
    assert admin.client.post(f"/admin/conversations/{customer}/delete").status_code == 400  # no CSRF token
    assert count(app, Message, Message.conversation_id == customer) == 3
    assert admin.client.get("/admin/conversations/999999/delete").status_code == 404


def test_erasure_deletes_everything_about_the_number_and_nothing_else(app, admin, customer):
    done = post(admin, f"/admin/conversations/{customer}/delete", f"/admin/conversations/{customer}/delete")
    assert done.status_code == 200 and "are gone" in done.text
    assert count(app, Message, Message.conversation_id == customer) == 0
    assert count(app, Conversation, Conversation.id == customer) == 0
    assert count(app, OptOut, OptOut.conversation_id == customer) == 0
    with app.app_context():
        assert list(db.session.scalars(sa.select(UnmatchedDeliveryReport.omnimessage_id))) == ["omni-other"]
        assert [json.loads(body)["sender"] for body in db.session.scalars(sa.select(DeadLetter.raw_body))] == [OTHER]
        assert conversation_of(OTHER).message_count == 1
        [event] = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "conversation_deleted"))
        assert (event.username, json.loads(event.details)) == (
            "alice",
            {
                "conversation": customer,
                "number_hash": audit.number_hash(NUMBER),
                "messages": 3,
                "dead_letters": 4,
                "was_opted_out": True,
                "audit_events_redacted": 0,
            },
        )
        assert not db.session.scalar(
            sa.select(sa.func.count()).select_from(AuditEvent).where(AuditEvent.details.contains("55598765"))
        )
    export = admin.client.get("/export.csv").text
    assert "4711-zebra" not in export and "55598765" not in export and OTHER in export
    assert "55598765" not in admin.client.get("/").text


def test_an_erased_number_in_a_recorded_export_search_is_redacted(app, admin, customer):
    admin.client.get(f"/export.csv?q={NUMBER[1:]}").close()
    post(admin, f"/admin/conversations/{customer}/delete", f"/admin/conversations/{customer}/delete")
    with app.app_context():
        [details] = db.session.scalars(sa.select(AuditEvent.details).where(AuditEvent.action == "export"))
    assert json.loads(details)["q"] == "[erased]"


def test_a_number_erased_after_opting_out_gets_no_replies_when_it_writes_again(app, admin, customer, deliver):
    post(admin, f"/admin/conversations/{customer}/delete", f"/admin/conversations/{customer}/delete")
    with app.app_context():
        assert db.session.scalar(sa.select(Suppression.number_hash)) == audit.number_hash(NUMBER)
    deliver(body_for(sender=NUMBER, text="Tere jälle"))
    with app.app_context():
        composer = reply_box.for_conversation(conversation_of(NUMBER))
        assert not composer.can_reply and "opted out before" in composer.note
        assert reply_box.for_conversation(conversation_of(OTHER)).note != composer.note
    deliver(body_for(sender=NUMBER, text="START"))  # asking for messages again lifts the block
    with app.app_context():
        assert "opted out before" not in reply_box.for_conversation(conversation_of(NUMBER)).note
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Suppression)) == 0


def test_the_sqlite_files_keep_no_copy_of_the_texts_or_the_number(app, admin, customer):
    url = sa.make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    if url.get_backend_name() != "sqlite":
        pytest.skip("PostgreSQL's dead rows go at its next (auto)vacuum: see docs/privacy.md")
    database = Path(url.database)
    wal = Path(f"{database}-wal")

    def files() -> bytes:
        return database.read_bytes() + (wal.read_bytes() if wal.exists() else b"")

    assert b"4711-zebra" in files() and b"55598765" in files()  # what the test looks for is there
    assert b"zeb" in files()
    post(admin, f"/admin/conversations/{customer}/delete", f"/admin/conversations/{customer}/delete")
    remaining = files()
    assert b"4711-zebra" not in remaining and b"salajane" not in remaining
    assert b"55598765" not in remaining
    assert "4711-zebra".encode("utf-16-le") not in remaining
    # The text index (FTS5 trigrams, where the database has it) holds "zeb" only for these texts.
    assert b"zeb" not in remaining


def test_access_log_lines_carry_no_query_strings_or_link_tokens(app, user, server_factory, tmp_path):
    access_log = tmp_path / "access.log"
    server = server_factory(workers=1, access_log=str(access_log))
    browser = Browser()
    assert browser.login(server.url, PASSWORD)[0] == 200
    browser.get(f"{server.url}/?q={NUMBER[1:]}")
    browser.get(f"{server.url}/export.csv?q=tellimus+4711")
    browser.get(f"{server.url}/conversations/{NUMBER}")  # an old link by number
    browser.get(f"{server.url}/conversations/1/export")
    browser.get(f"{server.url}/set-password/secret-link-token")
    # Each line is written after its response is sent, by the request's own thread: lines of
    # requests in a row can land in any order, so wait for all of them.
    paths = ("/export.csv", "/conversations/…", "/conversations/1/export", "/set-password/…")
    wait_until(lambda: all(f'"GET {path} ' in access_log.read_text() for path in paths), access_log.read_text)
    text = access_log.read_text()
    assert '"GET /export.csv HTTP/1.1" 200' in text and '"GET / HTTP/1.1" 200' in text
    assert "55598765" not in text and "tellimus" not in text and "secret-link-token" not in text
    assert "?" not in text
    assert '"GET /conversations/… HTTP/1.1" 404' in text and '"GET /conversations/1/export HTTP' in text


ERASED_NUMBER = "+37255577777"


@pytest.fixture
def named_customer(app, deliver, customer):
    """ERASED_NUMBER's conversation, its contact named Mari Maasikas (once Mari Tamm), beside
    NUMBER's and OTHER's; with the id of ERASED_NUMBER's conversation."""
    assert deliver(body_for(sender=ERASED_NUMBER, text="Minu kood on kaelkirjak 12")).status_code == 200
    assert deliver(body_for(sender=OTHER, text="Kas kaelkirjak on laos?")).status_code == 200  # not only theirs
    with app.app_context():
        conversation = conversation_of(ERASED_NUMBER)
        with write_transaction():
            conversation.contact_name, conversation.contact_key = "Mari Tamm", "mari tamm"
        return conversation.id


def rename(app, conversation_id: int, name: str) -> None:
    with app.app_context():
        with write_transaction() as session:
            conversation = session.get(Conversation, conversation_id)
            conversation.contact_name, conversation.contact_key = name, name.lower()


def export_searches(app) -> list[tuple[str, str]]:
    with app.app_context():
        return [
            (details.get("q"), details.get("text"))
            for details in map(
                json.loads,
                db.session.scalars(
                    sa.select(AuditEvent.details).where(AuditEvent.action == "export").order_by(AuditEvent.id)
                ),
            )
        ]


def test_erasure_finds_the_person_in_every_recorded_export_search(app, admin, named_customer):
    """The finding: after erasing +37255577777, exports searched by other spellings of the number,
    the contact's name (current and past) and a word only their messages had still said whom."""
    searches = ["+372 5557 7777", "55577777", "5557-7777", "0037255577777", "(5557) 7777", "Mari Tamm"]
    for q in searches:
        admin.client.get("/export.csv", query_string={"q": q}).close()
    rename(app, named_customer, "Mari Maasikas")  # "Mari Tamm" is now a past name
    for q in ["maasikas", "5557777"]:  # a part of the name; a part of the number only they have
        admin.client.get("/export.csv", query_string={"q": q}).close()
    admin.client.get("/export.csv", query_string={"q": "kood on", "match": "text"}).close()  # only their text
    kept = [("Tere", ""), ("", "kaelkirjak"), ("5559", "")]  # match others too: say nothing of whom
    for q, text in kept:
        admin.client.get("/export.csv", query_string={"q": q or text, **({"match": "text"} if text else {})}).close()
    url = f"/admin/conversations/{named_customer}/delete"
    post(admin, url, url)
    assert export_searches(app) == [("[erased]", "")] * 8 + [("", "[erased]")] + kept
    with app.app_context():
        [event] = db.session.scalars(sa.select(AuditEvent.details).where(AuditEvent.action == "conversation_deleted"))
        assert json.loads(event)["audit_events_redacted"] == 9
    url = sa.make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    if url.get_backend_name() == "sqlite":  # nor do the files keep the searches' old bytes
        files = b"".join(path.read_bytes() for path in Path(url.database).parent.glob(Path(url.database).name + "*"))
        for typed in (b"5557 7777", b"5557-7777", b"Mari Tamm", b"kood on", b"maasikas"):
            assert typed not in files, typed


def test_erasure_removes_a_dead_letter_whose_number_is_written_with_json_escapes(app, admin, named_customer):
    escaped = b'{"sender": "\\u002b\\u0033\\u0037\\u0032\\u0035\\u0035\\u0035\\u0037\\u0037\\u0037\\u0037\\u0037"}'
    assert json.loads(escaped)["sender"] == ERASED_NUMBER
    named = json.dumps({"sender": "Shop", "text": "from Mari Tamm"}).encode()
    with app.app_context():
        with write_transaction() as session:
            for n, body in enumerate([escaped, named]):
                session.add(
                    DeadLetter(
                        received_at=datetime(2026, 3, 2), reason="bad time", body_sha256=f"e{n}" * 32, raw_body=body
                    )
                )
    url = f"/admin/conversations/{named_customer}/delete"
    post(admin, url, url)
    with app.app_context():
        bodies = set(db.session.scalars(sa.select(DeadLetter.raw_body)))
    assert escaped not in bodies and named not in bodies and len(bodies) == 5  # NUMBER's and OTHER's stay


def test_a_reason_given_for_lifting_their_stop_is_erased_with_them(app, admin, deliver, named_customer):
    deliver(body_for(sender=ERASED_NUMBER, text="STOP"))
    path = f"/conversations/{named_customer}"
    post(admin, path + "/opt-out", path, opted_out="no", reason="Mari called back")
    post(admin, f"/admin/conversations/{named_customer}/delete", f"/admin/conversations/{named_customer}/delete")
    with app.app_context():
        [reason] = [
            json.loads(details)["reason"]
            for details in db.session.scalars(sa.select(AuditEvent.details).where(AuditEvent.action == "opted_in"))
        ]
    assert reason == "[erased]"


def test_an_erased_conversations_id_goes_to_no_one_else(app, admin, deliver):
    """On SQLite an erased newest conversation's id went to the next new customer, so that old
    audit events (and a browser's draft for that id) pointed at them."""
    deliver(body_for(sender="+37255511111"))
    deliver(body_for(sender="+37255522222"))
    with app.app_context():
        newest = conversation_of("+37255522222")
        newest_id, newest_message = newest.id, newest.last_message_id
    post(admin, f"/admin/conversations/{newest_id}/delete", f"/admin/conversations/{newest_id}/delete")
    deliver(body_for(sender="+37255533333"))
    with app.app_context():
        new = conversation_of("+37255533333")
        assert new.id > newest_id and new.last_message_id > newest_message


SHORT_NAMED = {"+37255561111": "Ann", "+37255562222": "Min"}
UNRELATED_EVENTS = [  # the short names inside other words, and in the app's own details
    ("user_added", {"user": "joanna", "role": "admin"}),
    ("user_changed", {"user": "minna", "role": "admin", "was": "agent"}),
    ("export", {"q": "channel", "text": "", "format": "csv", "rows": 1}),
    ("opted_in", {"conversation": 999, "by": "user", "reason": "Joanna's channel was wrong"}),
]
UNRELATED_LETTERS = [
    {"channel": "sms", "text": "hello"},
    {"sender": "Shop", "text": "Joanna here"},
    {"sender": "Shop", "text": "admin"},
    {"Ann": "a key, not a value"},
]


def test_a_short_name_is_erased_as_a_whole_word_and_nothing_else_changes(app, admin, deliver):
    """A contact named "Ann" matched "joanna" and every dead letter with a "channel" field (which
    then went); "Min" turned {"role": "admin"} into "[erased]"."""
    ids = {}
    for number, name in SHORT_NAMED.items():
        assert deliver(body_for(sender=number, text="Tere")).status_code == 200
        with app.app_context():
            ids[name] = conversation_of(number).id
        rename(app, ids[name], name)
    mentions = {
        name: [
            ("opted_in", {"conversation": 999, "by": "user", "reason": f"{name} called back"}),
            ("export", {"q": "", "text": f"from {name.upper()}!", "format": "csv", "rows": 0}),
        ]
        for name in SHORT_NAMED.values()
    }
    with app.app_context():
        with write_transaction() as session:
            for action, details in UNRELATED_EVENTS + mentions["Ann"] + mentions["Min"]:
                audit.record(action, details)
            for n, body in enumerate(UNRELATED_LETTERS + [{"text": "Ann here"}, {"text": "hi, min"}]):
                session.add(
                    DeadLetter(
                        received_at=datetime(2026, 3, 2),
                        reason="bad time",
                        body_sha256=f"{n}" * 64,
                        raw_body=json.dumps(body).encode(),
                    )
                )

    def events() -> list:
        with app.app_context():
            return [
                (event.action, json.loads(event.details))
                for event in db.session.scalars(
                    sa.select(AuditEvent)
                    .where(AuditEvent.action.in_(["user_added", "user_changed", "export", "opted_in"]))
                    .order_by(AuditEvent.id)
                )
            ]

    def letters() -> list:
        with app.app_context():
            return [
                json.loads(body) for body in db.session.scalars(sa.select(DeadLetter.raw_body).order_by(DeadLetter.id))
            ]

    for name in SHORT_NAMED.values():
        url = f"/admin/conversations/{ids[name]}/delete"
        post(admin, url, url)
    erased = [
        (action, {**details, **{field: "[erased]" for field in ("reason", "text") if field in details}})
        for action, details in mentions["Ann"] + mentions["Min"]
    ]
    assert events() == UNRELATED_EVENTS + erased
    assert letters() == UNRELATED_LETTERS


def test_the_conversations_a_search_matched_are_all_recorded_when_few(app, admin, deliver):
    """A number-and-name search and a text search each matching many conversations, together only
    one: the last. Each was cut to four before they were combined, so that one went unseen."""
    numbers = [f"+3725557000{n}" for n in range(6)]
    for n, number in enumerate(numbers):
        assert deliver(body_for(sender=number, text="ainulaadne" if n == 5 else "Tere")).status_code == 200
    for n in range(5):
        assert deliver(body_for(sender=f"+3725558000{n}", text="ainulaadne")).status_code == 200
    with app.app_context():
        last = conversation_of(numbers[-1]).id
        assert erasure.search_subjects("5557000", "ainulaadne") == [last]
    admin.client.get("/export.csv").close()  # no search: nothing to say whom it matched
    admin.client.get("/export.csv", query_string={"q": "55570005"}).close()
    with app.app_context():
        recorded = [
            json.loads(details)
            for details in db.session.scalars(
                sa.select(AuditEvent.details).where(AuditEvent.action == "export").order_by(AuditEvent.id)
            )
        ]
    assert "matched_conversations" not in recorded[0]
    assert recorded[1]["matched_conversations"] == [last]
